//! The command line: `aggregator-cron` serves (scheduler + ops endpoints);
//! `aggregator-cron run …` backfills a range; `aggregator-cron retention …`
//! applies retention now or lists what it would drop.
//!
//! The commands load the same configuration as the service (defaults <
//! `--config PATH` / `CONFIG_FILE` / `config/aggregator-cron.toml` < environment).

use std::{
    io::{IsTerminal as _, Write as _},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use metrics_sql::windows::{Grain, Job};
use service_kit::{LogConfig, Shutdown, config::LogFormat};

use crate::{Aggregator, BackfillPlan, BackfillReport, Config, PartitionDrop, SERVICE, schedule};

#[derive(Debug, Parser)]
#[command(name = "aggregator-cron", version, about = "Hourly and daily aggregations, retention and backfill")]
pub struct Cli {
    /// Configuration file (TOML). Default: `CONFIG_FILE`, else `config/aggregator-cron.toml` when present.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Without a command, serves the ops endpoints and runs the scheduler.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Recompute every window of a job in [FROM, TO) (backfill); exits non-zero if a window failed.
    Run(RunArgs),
    /// Drop the monthly (and daily) partitions past their retention, or list them with --dry-run.
    Retention(RetentionArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// video_metrics (hour windows) or user_engagement_daily (UTC day windows).
    #[arg(long, value_parser = parse_job)]
    pub job: Job,
    /// Start of the range: a date (2025-11-01, midnight UTC) or RFC 3339 (2025-11-01T06:00:00Z).
    #[arg(long, value_parser = parse_instant)]
    pub from: DateTime<Utc>,
    /// End of the range, exclusive; same forms as --from.
    #[arg(long, value_parser = parse_instant)]
    pub to: DateTime<Utc>,
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// List the partitions that would be dropped; drop nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: evaluate as of this time instead of now (a date or RFC 3339).
    #[arg(long, requires = "dry_run", value_parser = parse_instant)]
    pub now: Option<DateTime<Utc>>,
}

fn parse_job(name: &str) -> Result<Job, String> {
    Job::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Job::ALL.iter().map(|j| j.name()).collect();
        format!("unknown job {name:?}; expected one of {}", names.join(", "))
    })
}

/// A date (`2025-11-01`, midnight UTC) or an RFC 3339 time.
pub fn parse_instant(value: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(value) {
        return Ok(time.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(|date| date.and_time(chrono::NaiveTime::MIN).and_utc())
        .map_err(|_| format!("{value:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time"))
}

/// The service's configuration, validated; its warnings go to stderr (the
/// commands set up logging after reading it).
fn load_config() -> anyhow::Result<Config> {
    let (config, warnings) = service_kit::load_valid::<Config>(SERVICE)?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    Ok(config)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the tokio runtime")
}

/// `aggregator-cron run --job … --from … --to …`.
pub fn backfill(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = load_config()?;
    let interactive = std::io::stderr().is_terminal();
    let bar = interactive.then(|| {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:40}] {pos}/{len} windows, {elapsed} elapsed, eta {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar
    });
    init_logging(&config.log, bar.as_ref())?;
    runtime()?.block_on(async {
        let aggregator = Aggregator::connect(&config).await?;
        let stop = Shutdown::on_signals();
        let plan = BackfillPlan::new(args.job, args.from, args.to, Utc::now())?;
        tracing::info!(job = args.job.name(), from = %args.from, to = %args.to, windows = plan.total(),
            open = plan.open, "backfill started");
        if let Some(bar) = &bar {
            bar.set_length(plan.total());
            bar.set_message(args.job.name());
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        let started = std::time::Instant::now();
        let report = aggregator
            .run_backfill(&plan, &stop, |progress| match &bar {
                Some(bar) => bar.inc(1),
                None => {
                    let elapsed = started.elapsed().as_secs_f64();
                    let eta = elapsed / progress.done as f64 * (progress.total - progress.done) as f64;
                    tracing::info!(job = args.job.name(), done = progress.done, total = progress.total,
                        window_start = %schedule::window_start(args.job.grain(), progress.window),
                        ok = progress.result.is_ok(), eta_secs = eta.round() as u64, "backfill progress");
                }
            })
            .await;
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        print_backfill_summary(&report);
        Ok(if report.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

fn print_backfill_summary(report: &BackfillReport) {
    let job = report.job;
    println!(
        "backfill {}: {} of {} windows succeeded, {} failed, {} not run, {} rows written in {:.1} s",
        job.name(),
        report.succeeded,
        report.total,
        report.failed.len(),
        report.not_run,
        report.rows,
        report.duration.as_secs_f64()
    );
    if report.open > 0 {
        println!("  {} window(s) of the range are not closed yet and were left out", report.open);
    }
    for (window, error) in &report.failed {
        println!(
            "  failed {}: {error}",
            schedule::window_start(job.grain(), *window).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    match &report.rollups {
        Ok(days) if days.is_empty() => {}
        Ok(days) => {
            let failed: Vec<_> = days.iter().filter_map(|d| d.result.as_ref().err().map(|e| (d.day, e))).collect();
            println!("  {} final day(s) rolled up into video_day_totals, {} failed", days.len(), failed.len());
            for (day, error) in failed {
                println!("  rollup of {} failed: {error}", schedule::window_start(Grain::Day, day).date_naive());
            }
        }
        Err(error) => println!("  the day rollups could not be planned: {error}"),
    }
}

/// `aggregator-cron retention [--dry-run [--now TIME]]`.
pub fn retention(args: RetentionArgs) -> anyhow::Result<ExitCode> {
    let config = load_config()?;
    service_kit::telemetry::init(&config.log)?;
    runtime()?.block_on(async {
        let aggregator = Aggregator::connect(&config).await?;
        let now = args.now.unwrap_or_else(Utc::now);
        match aggregator.retention(now, args.dry_run).await {
            Ok(drops) => {
                print_partitions(&drops, args.dry_run);
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => {
                eprintln!("retention failed: {error:#}");
                Ok(ExitCode::FAILURE)
            }
        }
    })
}

fn print_partitions(drops: &[PartitionDrop], dry_run: bool) {
    let verb = if dry_run { "would drop" } else { "dropped" };
    if drops.is_empty() {
        println!("nothing to drop: no partition is past its retention");
        return;
    }
    println!("{:<24} {:>9} {:>12} {:>14}  cutoff", "table", "partition", "rows", "bytes");
    for drop in drops {
        println!(
            "{:<24} {:>9} {:>12} {:>14}  {}",
            drop.table.name(),
            drop.partition,
            drop.rows,
            drop.bytes,
            drop.cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    let rows: u64 = drops.iter().map(|d| d.rows).sum();
    println!("{verb} {} partition(s), {rows} row(s)", drops.len());
}

/// Logging for the commands: service-kit's, except that while a progress bar
/// is drawn each line is written with the bar suspended, so they do not mix.
fn init_logging(log: &LogConfig, bar: Option<&ProgressBar>) -> anyhow::Result<()> {
    use tracing_subscriber::{EnvFilter, fmt, prelude::*};

    let Some(bar) = bar else { return service_kit::telemetry::init(log) };
    let filter = EnvFilter::builder()
        .parse(&log.level)
        .map_err(|e| anyhow::anyhow!("invalid LOG_LEVEL {:?}: {e}", log.level))?;
    let writer = BarWriter(bar.clone());
    let registry = tracing_subscriber::registry().with(filter);
    match log.format {
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true).with_writer(writer)).try_init()?,
        LogFormat::Text => registry.with(fmt::layer().with_writer(writer)).try_init()?,
    }
    Ok(())
}

struct BarWriter(ProgressBar);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BarWriter {
    type Writer = BarLine;

    fn make_writer(&'a self) -> BarLine {
        BarLine { bar: self.0.clone(), buf: Vec::new() }
    }
}

/// One log event, written to stdout with the bar suspended when dropped.
struct BarLine {
    bar: ProgressBar,
    buf: Vec<u8>,
}

impl std::io::Write for BarLine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for BarLine {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.bar.suspend(|| {
            let _ = std::io::stdout().write_all(&buf);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_dates_or_rfc3339() {
        assert_eq!(parse_instant("2025-11-01").unwrap().to_rfc3339(), "2025-11-01T00:00:00+00:00");
        assert_eq!(parse_instant("2025-11-01T06:30:00+02:00").unwrap().to_rfc3339(), "2025-11-01T04:30:00+00:00");
        assert!(parse_instant("yesterday").unwrap_err().contains("neither"));
    }

    #[test]
    fn commands_parse_and_config_is_accepted_anywhere() {
        let cli = Cli::try_parse_from([
            "aggregator-cron",
            "run",
            "--job",
            "video_metrics",
            "--from",
            "2025-11-01",
            "--to",
            "2025-11-02T00:00:00Z",
            "--config",
            "x.toml",
        ])
        .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
        let Some(Command::Run(args)) = cli.command else { panic!("not run: {cli:?}") };
        assert_eq!(args.job, Job::VideoMetrics);

        let cli = Cli::try_parse_from(["aggregator-cron", "--config", "x.toml"]).unwrap();
        assert!(cli.command.is_none());
        assert!(Cli::try_parse_from(["aggregator-cron", "run", "--job", "nope", "--from", "2025-01-01"]).is_err());
        assert!(Cli::try_parse_from(["aggregator-cron", "retention", "--now", "2025-01-01"]).is_err());
        let cli = Cli::try_parse_from(["aggregator-cron", "retention", "--dry-run", "--now", "2025-01-01"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Retention(RetentionArgs { dry_run: true, now: Some(_) }))));
    }
}
