//! `cargo xtask bench pipeline`: the write path's throughput against its raw
//! limits, and how soon a posted event can be queried (issue 11, item 1):
//!
//! - A ([`gateway`]): events/s the ingest-gateway accepts (batch endpoint,
//!   then the single-event endpoint; keep-alive clients, pre-built bodies) ÷
//!   a raw rdkafka producer with the gateway's exact settings
//!   (`ingest_gateway::producer_config`) sending the same serialised events
//!   to the same topic;
//! - B ([`processor`]): rows/s the stream-processor stores (fresh consumer
//!   group reading a topic pre-filled with the fixture from the earliest
//!   offset; realtime partials on, then off) ÷ a raw RowBinary insert of the
//!   same rows through the `clickhouse` crate, each into a fresh database with
//!   the migrations (materialized views included) applied;
//! - C: query latency, a separate command (`cargo xtask bench queries`);
//! - D ([`visible`]): POST → queryable latency at 5,000 events/s.
//!
//! Every pair is measured in the same run, round by round, alternating which
//! goes first; the table shows medians. The services are release builds
//! started here on topics, consumer groups and ClickHouse databases of their
//! own (`bench-pipe-<run>…`, `bench_pipe_<run>…`), removed at the end, so the
//! running stack's data is never touched. The gateway checks keys against the
//! local stack's PostgreSQL: parts A and D send the local stack's ingest key
//! (made sure of as `cargo xtask up` does), with no per-key request rate limit.

mod fixture;
pub(super) mod gateway;
mod processor;
mod report;
mod visible;

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use service_kit::{ClickHouseConfig, KafkaConfig};

use self::report::{Case, Goal, Period, Report, Unit};
use super::{
    machine,
    report::{Meta, replace_block},
    stats::CpuSnapshot,
    target::{Profile, Spawned, cargo_build, server_pids},
};
use crate::{
    keys,
    layout::Layout,
    servers::Server,
    stack,
    ui::{self, Step},
};

/// The block of `BENCHMARKS.md` this benchmark owns.
pub const BLOCK: &str = "bench:pipeline";
const HEADING: &str = "Pipeline throughput and POST → queryable (`cargo xtask bench pipeline`)";

fn parse_length(text: &str) -> Result<Duration, String> {
    loadgen::parse_duration(text)?.ok_or_else(|| format!("{text:?}: a benchmark needs a finite duration"))
}

#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    /// A short run (about 2 minutes): 1 round, 3 s per throughput figure, 150 k rows, 15 s of D.
    #[arg(long)]
    pub quick: bool,
    /// Rounds of each ours/baseline pair (default 3; 1 with --quick).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Length of each A measurement (default 10s; 3s with --quick).
    #[arg(long, value_parser = parse_length)]
    pub duration: Option<Duration>,
    /// Events of the B fixture (default 400000; 150000 with --quick).
    #[arg(long)]
    pub rows: Option<usize>,
    /// Events per batch request (A and D).
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Concurrent batch requests in A.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Concurrent single-event requests in A.
    #[arg(long, default_value_t = 32)]
    pub single_concurrency: usize,
    /// D: events per second posted while probing.
    #[arg(long, default_value_t = 5000.0)]
    pub rate: f64,
    /// D: measured period (default 60s; 15s with --quick).
    #[arg(long, value_parser = parse_length)]
    pub visible_duration: Option<Duration>,
    /// Run only these parts (A, B, D; repeatable or comma-separated). Default: all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Write the figures into BENCHMARKS.md (the block between its bench:pipeline markers).
    #[arg(long)]
    pub record: bool,
    /// Use the binaries already built.
    #[arg(long)]
    pub no_build: bool,
    /// Keep the benchmark's topics and ClickHouse databases.
    #[arg(long)]
    pub keep: bool,
    /// Seed of the fixture's traffic.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// The settings of one run, defaults and --quick applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub rounds: usize,
    pub duration: Duration,
    pub rows: usize,
    pub visible: Duration,
    pub warmup: Duration,
    pub parts: [bool; 3],
}

impl PipelineArgs {
    pub fn plan(&self) -> Result<Plan> {
        let rounds = self.rounds.unwrap_or(if self.quick { 1 } else { 3 });
        let duration = self.duration.unwrap_or(Duration::from_secs(if self.quick { 3 } else { 10 }));
        let rows = self.rows.unwrap_or(if self.quick { 150_000 } else { 400_000 });
        let visible = self.visible_duration.unwrap_or(Duration::from_secs(if self.quick { 15 } else { 60 }));
        if rounds == 0 {
            bail!("--rounds must be at least 1");
        }
        if duration < Duration::from_secs(1) || visible < Duration::from_secs(1) {
            bail!("--duration and --visible-duration must be at least 1s");
        }
        if rows < 10_000 {
            bail!("--rows must be at least 10000 (B measures from its first stored batch on)");
        }
        if self.batch == 0 || self.batch > 1000 {
            bail!("--batch must be between 1 and 1000 (the gateway's max_batch_events)");
        }
        if self.concurrency == 0 || self.single_concurrency == 0 {
            bail!("--concurrency and --single-concurrency must be at least 1");
        }
        if !(self.rate.is_finite() && self.rate >= 10.0) {
            bail!("--rate must be at least 10 events per second");
        }
        let mut parts = [self.only.is_empty(); 3];
        for part in &self.only {
            match part.trim().to_ascii_uppercase().as_str() {
                "A" => parts[0] = true,
                "B" => parts[1] = true,
                "D" => parts[2] = true,
                "C" => bail!("part C (query latency) is `cargo xtask bench queries`"),
                other => bail!("--only {other:?}: the parts are A, B and D"),
            }
        }
        let warmup = Duration::from_secs(if self.quick { 2 } else { 5 });
        Ok(Plan { rounds, duration, rows, visible, warmup, parts })
    }
}

/// What every part shares.
pub(super) struct Ctx<'a> {
    pub layout: &'a Layout,
    pub args: &'a PipelineArgs,
    pub plan: Plan,
    pub run: String,
    pub periods: Vec<Period>,
    pub notes: Vec<String>,
    /// (process, peak resident bytes) of the processes measured, the largest seen.
    pub peak_rss: Vec<(String, f64)>,
    pub cleanup: Cleanup,
    /// The local stack's ingest key (parts A and D post to the gateway).
    pub ingest_key: Option<String>,
}

impl Ctx<'_> {
    /// Kafka settings of one part: topics `bench-pipe-<run>-<part>.…`.
    pub fn kafka(&self, part: &str) -> KafkaConfig {
        KafkaConfig {
            brokers: stack::KAFKA_ADDR.to_string(),
            topic_prefix: format!("bench-pipe-{}-{part}.", self.run),
            consumer_group: format!("bench-pipe-{}-{part}", self.run),
            client_id: "xtask-bench-pipeline".to_string(),
            ..KafkaConfig::default()
        }
    }

    /// A fresh ClickHouse database `bench_pipe_<run>_<name>` with the migrations applied.
    pub async fn database(&mut self, name: &str) -> Result<ClickHouseConfig> {
        let clickhouse = ClickHouseConfig {
            url: stack::CLICKHOUSE_URL.to_string(),
            database: format!("bench_pipe_{}_{name}", self.run),
            ..ClickHouseConfig::default()
        };
        self.cleanup.databases.push(clickhouse.clone());
        let step = Step::start(format!("ClickHouse database {} (migrations)", clickhouse.database));
        match service_kit::migrate::apply_clickhouse(&clickhouse).await {
            Ok(_) => step.ok(""),
            Err(err) => {
                step.fail("failed");
                return Err(anyhow::Error::new(err)
                    .context(format!("migrating the benchmark's ClickHouse database {}", clickhouse.database)));
            }
        }
        Ok(clickhouse)
    }

    /// The environment of a service the benchmark starts.
    pub fn service_env(&self, kafka: &KafkaConfig, clickhouse: Option<&ClickHouseConfig>) -> Vec<(String, String)> {
        let mut env = stack::service_env(self.layout);
        env.retain(|(key, _)| key != "LOG_LEVEL");
        env.extend([
            ("KAFKA_TOPIC_PREFIX".to_string(), kafka.topic_prefix.clone()),
            ("KAFKA_CONSUMER_GROUP".to_string(), kafka.consumer_group.clone()),
            ("LOG_LEVEL".to_string(), std::env::var("LOG_LEVEL").unwrap_or_else(|_| "warn".to_string())),
        ]);
        if let Some(clickhouse) = clickhouse {
            env.push(("CLICKHOUSE_DATABASE".to_string(), clickhouse.database.clone()));
        }
        env.extend(keys::unlimited_env());
        env
    }

    /// A client sending the ingest key as `X-API-Key` with every request.
    pub fn gateway_client(&self) -> Result<reqwest::ClientBuilder> {
        let key = self.ingest_key.as_deref().context("no ingest key: parts A and D need one")?;
        Ok(reqwest::Client::builder().default_headers(keys::ingest_headers(key)?))
    }

    /// Records the peak RSS (`VmHWM`) of a process about to be stopped.
    pub fn note_peak_rss(&mut self, name: &str, pid: u32) {
        if let Some(bytes) = peak_rss_bytes(pid) {
            record_peak(&mut self.peak_rss, name, bytes);
        }
    }

    /// The pids whose CPU a period reports: `own` plus Kafka, ClickHouse and this process.
    pub fn pids(&self, own: &[&Spawned]) -> Vec<(String, u32)> {
        let mut pids: Vec<(String, u32)> = own.iter().map(|s| (s.name.clone(), s.pid)).collect();
        pids.extend(server_pids(self.layout));
        pids.push(("xtask (clients)".to_string(), std::process::id()));
        pids
    }
}

/// Measures CPU over one period.
pub(super) struct Meter {
    pids: Vec<(String, u32)>,
    before: CpuSnapshot,
    started: Instant,
}

impl Meter {
    pub fn start(pids: Vec<(String, u32)>) -> Self {
        let before = CpuSnapshot::take(&pids);
        Self { pids, before, started: Instant::now() }
    }

    /// The period, over `seconds` (the measured time, which may be shorter than since `start`).
    pub fn finish(self, name: String, figure: String) -> Period {
        let seconds = self.started.elapsed().as_secs_f64();
        let after = CpuSnapshot::take(&self.pids);
        let names: Vec<String> = self.pids.iter().map(|(n, _)| n.clone()).collect();
        let mut cpu = after.cores_since(&self.before, seconds, &names);
        let machine_cores = after.machine_cores_since(&self.before, machine::cores());
        if let Some(busy) = machine_cores {
            let ours: f64 = cpu.iter().map(|(_, c)| c).sum();
            cpu.push((OTHER.to_string(), (busy - ours).max(0.0)));
        }
        Period { name, seconds, figure, cpu, machine_cores }
    }
}

/// The CPU figure of everything the benchmark did not start or measure.
pub(super) const OTHER: &str = "rest of the machine";

/// Topics and databases to remove at the end.
#[derive(Default)]
pub(super) struct Cleanup {
    pub topics: Vec<(KafkaConfig, Vec<String>)>,
    pub databases: Vec<ClickHouseConfig>,
}

impl Cleanup {
    async fn run(self, keep: bool) {
        if keep {
            for (kafka, _) in &self.topics {
                ui::line(format!("• kept topics {}*", kafka.topic_prefix));
            }
            for db in &self.databases {
                ui::line(format!("• kept ClickHouse database {}", db.database));
            }
            return;
        }
        let step = Step::start("removing the benchmark's topics and databases");
        let mut problems = Vec::new();
        for (kafka, names) in &self.topics {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            if let Err(err) = service_kit::deps::kafka::delete_topics(kafka, &names).await {
                problems.push(format!("topics {}*: {err:#}", kafka.topic_prefix));
            }
        }
        for db in &self.databases {
            if let Err(err) = drop_database(db).await {
                problems.push(format!("database {}: {err:#}", db.database));
            }
        }
        if problems.is_empty() {
            step.ok("");
        } else {
            step.fail(problems.join("; "));
        }
    }
}

pub(super) async fn drop_database(db: &ClickHouseConfig) -> Result<()> {
    let sql = format!("DROP DATABASE IF EXISTS {}", db.database);
    db.server_client().query(&sql).execute().await.with_context(|| sql.clone())
}

pub async fn run(layout: &Layout, args: PipelineArgs) -> Result<ExitCode> {
    let plan = args.plan()?;
    let gateway_parts = plan.parts[0] || plan.parts[2];
    let servers: &[Server] = if gateway_parts {
        &[Server::Kafka, Server::ClickHouse, Server::Postgres]
    } else {
        &[Server::Kafka, Server::ClickHouse]
    };
    for server in servers {
        server.probe().await.with_context(|| {
            format!("{} does not answer; start the servers with `cargo xtask up --no-services`", server.name())
        })?;
    }
    let ingest_key = match gateway_parts {
        true => Some(keys::ensure_stack(layout).await?.ingest),
        false => None,
    };
    if !args.no_build {
        cargo_build(layout, Profile::Release, &["ingest-gateway", "stream-processor"]).await?;
    }
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let mut ctx = Ctx {
        layout,
        args: &args,
        plan: plan.clone(),
        run,
        periods: Vec::new(),
        notes: Vec::new(),
        peak_rss: Vec::new(),
        cleanup: Cleanup::default(),
        ingest_key,
    };
    let started = Instant::now();
    // Ctrl-C: the services of our process group stop by themselves; clean up the rest.
    let outcome = tokio::select! {
        outcome = measure(&mut ctx) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let Ctx { cleanup, periods, mut notes, mut peak_rss, .. } = ctx;
    cleanup.run(args.keep).await;
    let (cases, visible_ms) = outcome?;

    for (name, pid) in server_pids(layout) {
        if let Some(bytes) = peak_rss_bytes(pid) {
            record_peak(&mut peak_rss, &format!("{name} (since it started)"), bytes);
        }
    }
    peak_rss.sort_by(|a, b| b.1.total_cmp(&a.1));
    let busy: Vec<f64> =
        periods.iter().filter_map(|p| p.cpu.iter().find(|(name, _)| name == OTHER).map(|(_, c)| *c)).collect();
    if let Some(max) = busy.iter().copied().reduce(f64::max).filter(|m| *m >= 0.2) {
        notes.push(format!(
            "other processes on the machine (others' test runs, the local stack's services) used up to {max:.2} \
             cores during a measured period (`{OTHER}` in the CPU figures)."
        ));
    }
    notes.push(format!(
        "figures taken on a shared {}-core machine: the benchmark's clients, Kafka, ClickHouse and the services \
         share it, with the local stack and other people's test runs; total run time {:.0} s.",
        machine::cores(),
        started.elapsed().as_secs_f64()
    ));
    let report = Report { meta: meta(&args, &plan, notes), cases, visible_ms, peak_rss, periods };
    ui::out(report.table());
    if !report.all_met() {
        ui::out("Some goals are not met (or not measured); see the verdict column.");
    }
    if args.record {
        let path = layout.root.join("BENCHMARKS.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_string());
        std::fs::write(&path, replace_block(&doc, BLOCK, HEADING, &report.markdown()))
            .with_context(|| format!("writing {}", path.display()))?;
        ui::out(format!("\nRecorded in {}.", layout.show(&path)));
    }
    Ok(ExitCode::SUCCESS)
}

/// The parts in order; a part that fails leaves its cases unmeasured (with the reason) and the others run.
async fn measure(ctx: &mut Ctx<'_>) -> Result<(Vec<Case>, Vec<f64>)> {
    let mut cases = Vec::new();
    let mut visible_ms = Vec::new();
    let parts = ctx.plan.parts;
    if parts[0] {
        match gateway::measure(ctx).await {
            Ok(mut measured) => cases.append(&mut measured),
            Err(err) => {
                ui::line(format!("✗ A failed: {err:#}"));
                cases.extend(gateway::empty_cases(&format!("failed: {err}")));
                ctx.notes.push(format!("A failed: {err:#}"));
            }
        }
    }
    if parts[1] {
        match processor::measure(ctx).await {
            Ok(mut measured) => cases.append(&mut measured),
            Err(err) => {
                ui::line(format!("✗ B failed: {err:#}"));
                cases.extend(processor::empty_cases(&format!("failed: {err}")));
                ctx.notes.push(format!("B failed: {err:#}"));
            }
        }
    }
    let mut c = Case::new("C query latency", Unit::Milliseconds, Goal::None);
    c.missing = Some("run `cargo xtask bench queries`".to_string());
    cases.push(c);
    if parts[2] {
        match visible::measure(ctx).await {
            Ok((mut measured, samples)) => {
                cases.append(&mut measured);
                visible_ms = samples;
            }
            Err(err) => {
                ui::line(format!("✗ D failed: {err:#}"));
                cases.extend(visible::empty_cases(&format!("failed: {err}")));
                ctx.notes.push(format!("D failed: {err:#}"));
            }
        }
    }
    Ok((cases, visible_ms))
}

/// `VmHWM` of `/proc/<pid>/status`, in bytes.
pub(super) fn peak_rss_bytes(pid: u32) -> Option<f64> {
    peak_rss_of(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn peak_rss_of(status: &str) -> Option<f64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

fn record_peak(peaks: &mut Vec<(String, f64)>, name: &str, bytes: f64) {
    match peaks.iter_mut().find(|(n, _)| n == name) {
        Some((_, peak)) => *peak = peak.max(bytes),
        None => peaks.push((name.to_string(), bytes)),
    }
}

fn meta(args: &PipelineArgs, plan: &Plan, notes: Vec<String>) -> Meta {
    let command = format!("cargo xtask {}", std::env::args().skip(1).collect::<Vec<_>>().join(" "));
    let config = vec![
        ("rounds".to_string(), format!("{} (ours and baseline alternate which goes first)", plan.rounds)),
        (
            "A".to_string(),
            format!(
                "{} s per figure, batches of {} events at concurrency {}, single events at concurrency {}",
                plan.duration.as_secs(),
                args.batch,
                args.concurrency,
                args.single_concurrency
            ),
        ),
        ("B".to_string(), format!("{} events per run", plan.rows)),
        (
            "D".to_string(),
            format!(
                "{} events/s for {} s after {} s of warm-up",
                args.rate,
                plan.visible.as_secs(),
                plan.warmup.as_secs()
            ),
        ),
        ("service settings".to_string(), "defaults".to_string()),
    ];
    Meta {
        command,
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M").to_string(),
        commit: machine::commit(),
        cpu_model: machine::cpu_model(),
        cores: machine::cores(),
        ram_gib: machine::ram_gib(),
        rustc: machine::rustc(),
        profile: "release".to_string(),
        services: "own ingest-gateway and stream-processor".to_string(),
        config,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: PipelineArgs,
    }

    #[test]
    fn defaults_and_quick_plans() {
        let plan = Cli::parse_from(["pipeline"]).args.plan().unwrap();
        assert_eq!((plan.rounds, plan.duration, plan.rows), (3, Duration::from_secs(10), 400_000));
        assert_eq!(plan.visible, Duration::from_secs(60));
        assert_eq!(plan.parts, [true; 3]);
        let quick = Cli::parse_from(["pipeline", "--quick"]).args.plan().unwrap();
        assert_eq!((quick.rounds, quick.duration, quick.rows), (1, Duration::from_secs(3), 150_000));
        let explicit = Cli::parse_from(["pipeline", "--quick", "--rounds", "2", "--only", "a,D"]).args.plan().unwrap();
        assert_eq!((explicit.rounds, explicit.parts), (2, [true, false, true]));
        for bad in [&["pipeline", "--only", "C"][..], &["pipeline", "--rounds", "0"], &["pipeline", "--batch", "5000"]]
        {
            assert!(Cli::parse_from(bad).args.plan().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn peak_rss_is_read_and_kept_at_its_maximum() {
        let status = "Name:\tx\nVmPeak:\t  9999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(peak_rss_of(status), Some(2048.0 * 1024.0));
        assert_eq!(peak_rss_of("Name: x\n"), None);
        let mut peaks = Vec::new();
        record_peak(&mut peaks, "gw", 10.0);
        record_peak(&mut peaks, "gw", 5.0);
        record_peak(&mut peaks, "p", 7.0);
        assert_eq!(peaks, vec![("gw".to_string(), 10.0), ("p".to_string(), 7.0)]);
    }
}
