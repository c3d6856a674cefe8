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
//!
//! With `--cluster` ([`cluster`]) every part runs on the single node and on
//! cluster mode's servers (`cargo xtask up --cluster --no-services`: topics
//! with three replicas, two in sync; databases in the migrations' cluster
//! form, dropped `ON CLUSTER`), round by round, alternating which goes first,
//! and the report adds cluster ÷ single-node ratios; it is recorded in a block
//! of its own (`bench:pipeline-cluster`).

mod cluster;
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
    servers::{self, Managed, Server, cluster::Member},
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
    /// Also on cluster mode's servers (`cargo xtask up --cluster --no-services`): every part on the single node
    /// and on the cluster, alternating round by round, with cluster ÷ single-node ratios (block
    /// bench:pipeline-cluster of BENCHMARKS.md).
    #[arg(long)]
    pub cluster: bool,
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

/// Which servers a part runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The single-node stack (`cargo xtask up`).
    Single,
    /// Cluster mode's servers (`cargo xtask up --cluster`).
    Cluster,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Single => "single node",
            Target::Cluster => "cluster",
        }
    }

    /// What the names of a target's topics and databases carry (none on the single node: unchanged names).
    fn tag(self) -> &'static str {
        match self {
            Target::Single => "",
            Target::Cluster => "c",
        }
    }

    /// Kafka bootstrap, ClickHouse URL and the durability topics need.
    fn servers(self) -> (String, String, (i32, i32)) {
        match self {
            Target::Single => (stack::KAFKA_ADDR.to_string(), stack::CLICKHOUSE_URL.to_string(), (1, 1)),
            Target::Cluster => {
                let ports = local_stack::cluster::Ports::STANDARD;
                let durability = (local_stack::cluster::REPLICATION_FACTOR, local_stack::cluster::MIN_INSYNC_REPLICAS);
                (ports.bootstrap(), ports.clickhouse_url(0), durability)
            }
        }
    }
}

/// What every part shares.
pub(super) struct Ctx<'a> {
    pub layout: &'a Layout,
    pub args: &'a PipelineArgs,
    pub plan: Plan,
    /// The servers the parts run on now.
    pub target: Target,
    /// The number of the first round the parts run (with `--cluster` each call runs one round).
    pub first_round: usize,
    pub run: String,
    pub periods: Vec<Period>,
    pub notes: Vec<String>,
    /// (process, peak resident bytes) of the processes measured, the largest seen.
    pub peak_rss: Vec<(String, f64)>,
    pub cleanup: Cleanup,
    /// The ingest key of each target's stack (parts A and D post to the gateway).
    pub ingest_keys: Vec<(Target, String)>,
}

impl Ctx<'_> {
    /// The rounds a part runs now.
    pub fn rounds(&self) -> std::ops::RangeInclusive<usize> {
        self.first_round..=self.first_round + self.plan.rounds - 1
    }

    /// `name` of a topic or database: as given without `--cluster`; with it, `c` before it on the cluster and
    /// the round after it (each round of a part is a call of its own there, on resources of its own).
    fn resource_name(&self, name: &str) -> String {
        match self.args.cluster {
            false => name.to_string(),
            true => format!("{}{name}{}", self.target.tag(), self.first_round),
        }
    }

    /// Kafka settings of one part: topics `bench-pipe-<run>-<part>.…` (see [`Self::resource_name`]).
    pub fn kafka(&self, part: &str) -> KafkaConfig {
        let (brokers, _, (replication_factor, min_insync_replicas)) = self.target.servers();
        let part = self.resource_name(part);
        KafkaConfig {
            brokers,
            topic_prefix: format!("bench-pipe-{}-{part}.", self.run),
            consumer_group: format!("bench-pipe-{}-{part}", self.run),
            client_id: "xtask-bench-pipeline".to_string(),
            replication_factor,
            min_insync_replicas,
            ..KafkaConfig::default()
        }
    }

    /// A fresh ClickHouse database `bench_pipe_<run>_<name>` (see [`Self::resource_name`]) with the migrations
    /// applied (in their cluster form on the cluster: the runner asks the server).
    pub async fn database(&mut self, name: &str) -> Result<ClickHouseConfig> {
        let (_, url, _) = self.target.servers();
        let clickhouse = ClickHouseConfig {
            url,
            database: format!("bench_pipe_{}_{}", self.run, self.resource_name(name)),
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
        let mut env = match self.target {
            Target::Single => stack::service_env(self.layout),
            // The cluster's servers and credentials, and topics of three replicas, two in sync.
            Target::Cluster => stack::cluster_service_env(&Member::layout(self.layout)),
        };
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
        let key = self
            .ingest_keys
            .iter()
            .find(|(target, _)| *target == self.target)
            .map(|(_, key)| key.as_str())
            .context("no ingest key: parts A and D need one")?;
        Ok(reqwest::Client::builder().default_headers(keys::ingest_headers(key)?))
    }

    /// Records the peak RSS (`VmHWM`) of a process about to be stopped.
    pub fn note_peak_rss(&mut self, name: &str, pid: u32) {
        if let Some(bytes) = peak_rss_bytes(pid) {
            let name = match self.args.cluster {
                true => format!("{name} ({})", self.target.name()),
                false => name.to_string(),
            };
            record_peak(&mut self.peak_rss, &name, bytes);
        }
    }

    /// The pids whose CPU a period reports: `own` plus Kafka, ClickHouse (with `--cluster`: the target's, and
    /// ZooKeeper on the cluster) and this process.
    pub fn pids(&self, own: &[&Spawned]) -> Vec<(String, u32)> {
        let mut pids: Vec<(String, u32)> = own.iter().map(|s| (s.name.clone(), s.pid)).collect();
        match self.target {
            Target::Single => pids.extend(server_pids(self.layout)),
            Target::Cluster => pids.extend(cluster_server_pids(self.layout)),
        }
        pids.push(("xtask (clients)".to_string(), std::process::id()));
        pids
    }
}

/// The cluster's Kafka brokers, ClickHouse servers and ZooKeeper, one figure per kind.
fn cluster_server_pids(layout: &Layout) -> Vec<(String, u32)> {
    let cluster_layout = Member::layout(layout);
    Member::ALL
        .into_iter()
        .filter(|m| matches!(m, Member::ZooKeeper | Member::Kafka(_) | Member::ClickHouse(_)))
        .filter_map(|m| Some((m.name().to_string(), m.live_pid(&cluster_layout)?)))
        .collect()
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

/// Drops a benchmark database (`ON CLUSTER` on the cluster).
pub(super) async fn drop_database(db: &ClickHouseConfig) -> Result<()> {
    service_kit::migrate::drop_clickhouse_database(db)
        .await
        .with_context(|| format!("dropping ClickHouse database {} at {}", db.database, db.url))
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
    if args.cluster {
        for member in Member::ALL {
            if member == Member::Redis || (member == Member::Postgres && !gateway_parts) {
                continue;
            }
            member.probe().await.with_context(|| {
                format!(
                    "{} does not answer; start cluster mode's servers with `cargo xtask up --cluster --no-services`",
                    member.name()
                )
            })?;
        }
    }
    let mut ingest_keys = Vec::new();
    if gateway_parts {
        ingest_keys.push((Target::Single, keys::ensure_stack(layout).await?.ingest));
        if args.cluster {
            let cluster_layout = Member::layout(layout);
            let keys = keys::ensure_stack_at(&cluster_layout, servers::cluster::DATABASE_URL).await?;
            ingest_keys.push((Target::Cluster, keys.ingest));
        }
    }
    if !args.no_build {
        cargo_build(layout, Profile::Release, &["ingest-gateway", "stream-processor"]).await?;
    }
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let mut ctx = Ctx {
        layout,
        args: &args,
        plan: plan.clone(),
        target: Target::Single,
        first_round: 1,
        run,
        periods: Vec::new(),
        notes: Vec::new(),
        peak_rss: Vec::new(),
        cleanup: Cleanup::default(),
        ingest_keys,
    };
    let started = Instant::now();
    // Ctrl-C: the services of our process group stop by themselves; clean up the rest.
    let outcome = tokio::select! {
        outcome = measure_all(&mut ctx) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let Ctx { cleanup, periods, mut notes, mut peak_rss, .. } = ctx;
    cleanup.run(args.keep).await;
    let outcome = outcome?;

    for (name, pid) in server_pids(layout) {
        if let Some(bytes) = peak_rss_bytes(pid) {
            record_peak(&mut peak_rss, &format!("{name} (since it started)"), bytes);
        }
    }
    if args.cluster {
        for (name, pid) in cluster_server_pids(layout) {
            if let Some(bytes) = peak_rss_bytes(pid) {
                record_peak(&mut peak_rss, &format!("{name} (since it started)"), bytes);
            }
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
    if args.cluster {
        notes.push(format!(
            "both stacks' servers run throughout (the idle one's processes are in `{OTHER}`); the cluster is 3 Kafka \
             brokers (topics of 3 replicas, min.insync.replicas 2), 4 ClickHouse 18.16 servers (2 shards × 2 \
             replicas, tables in the migrations' cluster form) and ZooKeeper, all on the same {} cores.",
            machine::cores()
        ));
    }
    notes.push(format!(
        "figures taken on a shared {}-core machine: the benchmark's clients, Kafka, ClickHouse and the services \
         share it, with the local stack and other people's test runs; total run time {:.0} s.",
        machine::cores(),
        started.elapsed().as_secs_f64()
    ));
    let meta = meta(&args, &plan, notes);
    let (text, all_met, block, heading, markdown) = match outcome {
        Outcome::Single(cases, visible_ms) => {
            let report = Report { meta, cases, visible_ms, peak_rss, periods };
            (report.table(), report.all_met(), BLOCK, HEADING, report.markdown())
        }
        Outcome::Cluster(measured) => {
            let report = cluster::ClusterReport { meta, measured, peak_rss, periods };
            (report.table(), true, cluster::BLOCK, cluster::HEADING, report.markdown())
        }
    };
    ui::out(text);
    if !all_met {
        ui::out("Some goals are not met (or not measured); see the verdict column.");
    }
    if args.record {
        let path = layout.root.join("BENCHMARKS.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_string());
        std::fs::write(&path, replace_block(&doc, block, heading, &markdown))
            .with_context(|| format!("writing {}", path.display()))?;
        ui::out(format!("\nRecorded in {}.", layout.show(&path)));
    }
    Ok(ExitCode::SUCCESS)
}

/// What a run measured: the single node's cases, or both targets' (`--cluster`).
enum Outcome {
    Single(Vec<Case>, Vec<f64>),
    Cluster(cluster::Measured),
}

async fn measure_all(ctx: &mut Ctx<'_>) -> Result<Outcome> {
    if ctx.args.cluster {
        Ok(Outcome::Cluster(cluster::measure(ctx).await?))
    } else {
        let (cases, visible_ms) = measure(ctx).await?;
        Ok(Outcome::Single(cases, visible_ms))
    }
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
    let rounds = match args.cluster {
        false => format!("{} (ours and baseline alternate which goes first)", plan.rounds),
        true => format!(
            "{} (each part once per round on each target, single node first in odd rounds, cluster first in even \
             ones; within a part ours and baseline alternate which goes first)",
            plan.rounds
        ),
    };
    let config = vec![
        ("rounds".to_string(), rounds),
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
        services: match args.cluster {
            false => "own ingest-gateway and stream-processor".to_string(),
            true => "own ingest-gateway and stream-processor on each target; the cluster's with cluster mode's \
                     environment (`.stack/cluster/cluster.env`, `kafka.replication_factor` 3, \
                     `kafka.min_insync_replicas` 2)"
                .to_string(),
        },
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
    fn cluster_runs_name_their_resources_per_target_and_round() {
        let layout = Layout { root: "/nowhere".into(), stack: "/nowhere/.stack".into() };
        let single_args = Cli::parse_from(["pipeline"]).args;
        let cluster_args = Cli::parse_from(["pipeline", "--cluster", "--quick"]).args;
        assert!(cluster_args.cluster && !single_args.cluster);
        let ctx = |args| Ctx {
            layout: &layout,
            args,
            plan: single_args.plan().unwrap(),
            target: Target::Single,
            first_round: 2,
            run: "0123abcd".to_string(),
            periods: Vec::new(),
            notes: Vec::new(),
            peak_rss: Vec::new(),
            cleanup: Cleanup::default(),
            ingest_keys: Vec::new(),
        };
        // Without --cluster: the names as they always were.
        let mut single = ctx(&single_args);
        single.first_round = 1;
        assert_eq!(single.kafka("b").topic_prefix, "bench-pipe-0123abcd-b.");
        assert_eq!((single.kafka("b").replication_factor, single.rounds()), (1, 1..=3));
        let mut on_cluster = ctx(&cluster_args);
        assert_eq!(on_cluster.kafka("b").topic_prefix, "bench-pipe-0123abcd-b2.");
        on_cluster.target = Target::Cluster;
        let kafka = on_cluster.kafka("d");
        assert_eq!(
            (kafka.topic_prefix.as_str(), kafka.consumer_group.as_str()),
            ("bench-pipe-0123abcd-cd2.", "bench-pipe-0123abcd-cd2")
        );
        assert_eq!((kafka.replication_factor, kafka.min_insync_replicas), (3, 2));
        assert_eq!(kafka.brokers, local_stack::cluster::Ports::STANDARD.bootstrap());
        assert_eq!(on_cluster.resource_name("b2_on"), "cb2_on2");
        on_cluster.plan.rounds = 1;
        assert_eq!(on_cluster.rounds(), 2..=2);
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
