//! aggregator-cron: hourly and daily aggregations, retention and backfill.
//! Configuration: defaults < `config/aggregator-cron.toml` (or `--config PATH`) < environment.

fn main() -> anyhow::Result<()> {
    service_kit::run_main(aggregator_cron::SERVICE, aggregator_cron::run)
}
