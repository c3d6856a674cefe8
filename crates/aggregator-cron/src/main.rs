//! aggregator-cron: hourly and daily aggregations, retention and backfill.
//!
//! - `aggregator-cron [--config PATH]`: serves `/health`, `/ready`, `/metrics` and runs the scheduler;
//! - `aggregator-cron run --job JOB --from FROM --to TO`: backfills the windows in [FROM, TO);
//! - `aggregator-cron retention [--dry-run]`: drops (or lists) the partitions past their retention.
//!
//! Configuration: defaults < `config/aggregator-cron.toml` (or `--config PATH`) < environment.

use std::process::ExitCode;

use aggregator_cron::cli::{Cli, Command};
use clap::Parser as _;

fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        None => service_kit::run_main(aggregator_cron::SERVICE, aggregator_cron::run).map(|()| ExitCode::SUCCESS),
        Some(Command::Run(args)) => aggregator_cron::cli::backfill(args),
        Some(Command::Retention(args)) => aggregator_cron::cli::retention(args),
    }
}
