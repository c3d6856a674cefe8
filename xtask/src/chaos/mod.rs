//! `cargo xtask chaos`: failure drills under live load (issue 14, item 5).
//!
//! Each drill runs `loadgen` traffic (what `cargo xtask load` sends) on
//! videos of its own, breaks one thing mid-load ([`drills`]), heals it,
//! stops the load, waits for the pipeline to catch up, and checks
//! ([`verify`]): every event the gateway accepted is stored once (or, for the
//! poison drill, in the dead-letter topic), users are shown each event once,
//! and the query API's video metrics for the drill's videos equal
//! `metrics-oracle` over the accepted events. One table row per drill
//! ([`report`]); the exit code is non-zero when a drill lost an event,
//! counted one twice, disagreed with the oracle or failed to recover.
//!
//! The services are the run's own ([`stack`]); the servers are the local
//! stack's, so the `stop-*` drills interrupt everyone using it
//! (`--no-servers` skips them). See docs/chaos.md.

mod drills;
mod latency;
mod report;
mod stack;
mod traffic;
mod verify;

use std::{
    collections::{BTreeMap, BTreeSet},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use serde_json::Value;

use self::{
    drills::{Drill, Fault},
    report::Row,
    stack::ChaosStack,
    traffic::{LoadSettings, Traffic},
};
use crate::{
    bench::target::{Profile, cargo_build},
    layout::Layout,
    ui::{self, Step},
};

fn parse_length(text: &str) -> Result<Duration, String> {
    loadgen::parse_duration(text)?.ok_or_else(|| format!("{text:?}: a drill needs a finite duration"))
}

#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// List the drills and what each does, then exit.
    #[arg(long)]
    list: bool,
    /// Run only these drills (repeat, or separate with commas); all by default.
    #[arg(long = "drill", value_delimiter = ',')]
    drills: Vec<String>,
    /// Skip the drills that stop one of the local stack's servers (shared with everything using the stack).
    #[arg(long)]
    no_servers: bool,
    /// The cluster drills instead (kill-kafka-broker, kill-clickhouse-replica, stop-zookeeper), with the
    /// services on the servers of `cargo xtask up --cluster`.
    #[arg(long, conflicts_with = "no_servers")]
    cluster: bool,
    /// Events per second of each drill's load.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Videos per drill (each compared with the oracle).
    #[arg(long, default_value_t = 12)]
    videos: usize,
    /// Load before the fault.
    #[arg(long, default_value = "10s", value_parser = parse_length)]
    lead: Duration,
    /// How long a killed service stays down before it is started again.
    #[arg(long, default_value = "3s", value_parser = parse_length)]
    down: Duration,
    /// How long a server stays stopped.
    #[arg(long, default_value = "30s", value_parser = parse_length)]
    outage: Duration,
    /// Load after the fault ended.
    #[arg(long, default_value = "10s", value_parser = parse_length)]
    tail: Duration,
    /// Longest wait, after the load stopped, for every accepted event to be stored.
    #[arg(long, default_value = "120s", value_parser = parse_length)]
    catch_up: Duration,
    /// How long the hot session floods its partition.
    #[arg(long, default_value = "20s", value_parser = parse_length)]
    hot_for: Duration,
    /// The hot session's rate as a multiple of one partition's share of the load.
    #[arg(long, default_value_t = 10.0)]
    hot_factor: f64,
    /// Seed of the simulated viewers (random when absent; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the run's topics and databases for inspection.
    #[arg(long)]
    keep: bool,
    /// Use the binaries in target/debug as they are (no `cargo build --bins` first).
    #[arg(long)]
    no_build: bool,
}

/// The timings and load of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub load: LoadSettings,
    pub lead: Duration,
    pub down: Duration,
    pub outage: Duration,
    pub tail: Duration,
    pub catch_up: Duration,
    pub hot_for: Duration,
    pub hot_factor: f64,
}

impl ChaosArgs {
    fn settings(&self) -> Settings {
        let seed = self.seed.unwrap_or_else(|| loadgen::epoch_ms() as u64 % 1_000_000);
        Settings {
            load: LoadSettings { rate: self.rate, videos: self.videos.max(1), seed },
            lead: self.lead,
            down: self.down,
            outage: self.outage,
            tail: self.tail,
            catch_up: self.catch_up,
            hot_for: self.hot_for,
            hot_factor: self.hot_factor,
        }
    }

    /// The drills to run, in suite order.
    fn selected(&self) -> Result<Vec<Drill>> {
        let all = if self.cluster { drills::cluster_all() } else { drills::all() };
        for name in &self.drills {
            if !all.iter().any(|d| d.name == name) {
                let names: Vec<&str> = all.iter().map(|d| d.name).collect();
                bail!("no drill {name:?}; the drills are {}", names.join(", "));
            }
        }
        Ok(all
            .into_iter()
            .filter(|d| self.drills.is_empty() || self.drills.iter().any(|n| n == d.name))
            .filter(|d| !(self.no_servers && d.stops_a_server()))
            .collect())
    }
}

/// What a drill works with.
pub struct Ctx {
    pub layout: Layout,
    pub stack: ChaosStack,
    pub settings: Settings,
    pub http: reqwest::Client,
    /// The fault-injecting ClickHouse proxy while the poison drill runs.
    pub proxy: Option<clickhouse_faults::ClickHouseFaults>,
}

pub async fn run(layout: &Layout, args: ChaosArgs) -> Result<ExitCode> {
    let selected = args.selected()?;
    if args.list {
        for drill in drills::all() {
            let shared = if drill.stops_a_server() { " [stops a shared server]" } else { "" };
            ui::out(format!("{:<22} {}{shared}", drill.name, drill.about));
        }
        for drill in drills::cluster_all() {
            ui::out(format!("{:<22} {} [--cluster]", drill.name, drill.about));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if selected.is_empty() {
        bail!("no drill selected");
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be a positive number of events per second");
    }
    if selected.iter().any(Drill::stops_a_server) && !args.cluster {
        ui::line(
            "note: the stop-* drills stop the local stack's servers; everything using them notices (--no-servers skips them)",
        );
    }
    if !args.no_build {
        cargo_build(layout, Profile::Debug, &stack::SERVICES).await?;
    }
    let settings = args.settings();
    let rows = run_drills(layout, &selected, settings, args.keep, args.cluster).await?;
    ui::out(format!("\n{}", report::table(&rows)));
    let details = report::details(&rows);
    if !details.is_empty() {
        ui::out(format!("\n{details}"));
    }
    let failed: Vec<&str> = rows.iter().filter(|r| !r.passed()).map(|r| r.drill.as_str()).collect();
    if failed.is_empty() {
        ui::out(format!("\nAll {} drills passed: nothing lost, nothing counted twice.", rows.len()));
        Ok(ExitCode::SUCCESS)
    } else {
        ui::out(format!("\n{} of {} drills failed: {}", failed.len(), rows.len(), failed.join(", ")));
        Ok(ExitCode::FAILURE)
    }
}

/// Starts the run's services, runs `drills` one after the other, removes
/// what it made; one row per drill.
/// With `cluster`, on the servers of `cargo xtask up --cluster`.
pub async fn run_drills(
    layout: &Layout,
    drills: &[Drill],
    settings: Settings,
    keep: bool,
    cluster: bool,
) -> Result<Vec<Row>> {
    let run = chrono::Utc::now().format("%m%d%H%M%S").to_string();
    ui::line(format!(
        "chaos run {run}: {} drills, {} events/s on {} videos each (seed {})",
        drills.len(),
        settings.load.rate,
        settings.load.videos,
        settings.load.seed
    ));
    let stack = ChaosStack::start(layout, &run, Profile::Debug, keep, cluster).await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let mut ctx = Ctx { layout: layout.clone(), stack, settings, http, proxy: None };
    let mut rows = Vec::new();
    for drill in drills {
        let step = Step::start(format!("drill {}", drill.name));
        let started = Instant::now();
        let row = run_drill(&mut ctx, drill).await;
        let summary = format!(
            "{} accepted, {} lost, {} counted twice, {}/{} videos equal the oracle ({:.0} s)",
            row.accepted,
            row.lost,
            row.counted_twice,
            row.videos - row.differences.min(row.videos),
            row.videos,
            started.elapsed().as_secs_f64()
        );
        if row.passed() {
            step.ok(summary)
        } else {
            step.fail(summary)
        }
        rows.push(row);
        // A drill that left a service down would fail every later one.
        for name in stack::SERVICES {
            if local_stack::probe::ready(ctx.stack.port(name)).await.is_err()
                && ctx.stack.start_service(name).await.is_err()
            {
                ui::line(format!("✗ {name} could not be started again after {}", drill.name));
            }
        }
    }
    ctx.stack.stop().await;
    Ok(rows)
}

async fn run_drill(ctx: &mut Ctx, drill: &Drill) -> Row {
    let mut row = Row { drill: drill.name.to_string(), ..Row::default() };
    let outcome = async {
        drills::prepare(ctx, drill).await?;
        let outcome = drive(ctx, drill, &mut row).await;
        let restored = drills::restore(ctx, drill).await;
        outcome.and(restored)
    }
    .await;
    if let Err(err) = outcome {
        row.problems.push(format!("{err:#}"));
    }
    row
}

/// Load, fault, catch-up, checks.
async fn drive(ctx: &mut Ctx, drill: &Drill, row: &mut Row) -> Result<()> {
    let prefix = format!("{}-", drill.name);
    let mut traffic = Traffic::start(&ctx.stack.gateway_url(), &ctx.stack.keys.ingest, &prefix, &ctx.settings.load);
    let faulted = async {
        traffic.wait_flowing(Duration::from_secs(60)).await?;
        tokio::time::sleep(ctx.settings.lead).await;
        drills::exercise(ctx, drill, &mut traffic).await
    }
    .await;
    let exercised = match faulted {
        Ok(exercised) => exercised,
        Err(err) => {
            // Never leave the load running.
            let _ = traffic.stop().await;
            return Err(err);
        }
    };
    row.notes.extend(exercised.notes.iter().cloned());
    row.problems.extend(exercised.problems.iter().cloned());
    let healed_at = exercised.healed_at.unwrap_or_else(Instant::now);
    let clickhouse = ctx.stack.clickhouse.client();
    let (journal, require_new) = (traffic.journal(), !traffic.is_stopped());
    let stack = &ctx.stack;
    let recovering = verify::recovery(
        &clickhouse,
        &prefix,
        verify::Backlog { journal: &journal, dead: &exercised.dead_letters, require_new },
        healed_at,
        ctx.settings.tail + ctx.settings.catch_up,
        || stack.not_ready(),
    );
    let tail = async {
        tokio::time::sleep(ctx.settings.tail).await;
        traffic.stop().await.cloned()
    };
    let (recovered, summary) = tokio::join!(recovering, tail);
    let summary = summary?;
    row.recovery = recovered;
    if recovered.is_none() {
        row.problems
            .push(format!("not recovered within {:?} of the fault's end", ctx.settings.tail + ctx.settings.catch_up));
    }

    let accepted = traffic.accepted()?;
    let accepted_ids = drills::ids(&accepted);
    let expected: BTreeSet<String> = accepted_ids.difference(&exercised.dead_letters).cloned().collect();
    let (caught, stored, waiting) =
        verify::wait_caught_up(&clickhouse, &prefix, &expected, ctx.settings.catch_up, || stack.not_ready()).await;
    if caught.is_none() {
        row.problems.push(format!("not caught up within {:?} of the load's end ({waiting:?})", ctx.settings.catch_up));
    }

    // Storage.
    row.accepted = accepted_ids.len();
    let stored_expected = expected.iter().filter(|id| stored.contains_key(*id)).count();
    row.duplicate_rows = stored.iter().filter(|(id, rows)| **rows > 1 && accepted_ids.contains(*id)).count();
    if row.duplicate_rows > 0 {
        row.notes.push(format!("{} events have duplicate rows (deduplicated when read)", row.duplicate_rows));
    }
    let unresolved = traffic.unresolved()?;
    let unresolved_ids = drills::ids(&unresolved);
    if !unresolved.is_empty() {
        row.notes.push(format!(
            "{} events were never answered 202 (the load stopped while they were retried; {} failed, {} unsent)",
            unresolved_ids.len(),
            summary.failed,
            summary.unsent
        ));
    }
    let strangers: Vec<&String> =
        stored.keys().filter(|id| !accepted_ids.contains(*id) && !unresolved_ids.contains(*id)).collect();
    if !strangers.is_empty() {
        row.problems.push(format!("{} stored events nobody sent, e.g. {}", strangers.len(), strangers[0]));
    }
    if exercised.dead_letters.is_empty() {
        row.stored = stored_expected;
    } else {
        check_dead_letters(ctx, &exercised.dead_letters, &stored, row).await?;
        row.stored = stored_expected + row.dead_lettered;
    }
    row.lost = row.accepted.saturating_sub(row.stored);

    // What users see: the accepted events (and those never answered that were stored anyway), minus dead letters.
    let mut seen: Vec<Value> =
        accepted.into_iter().filter(|e| e["event_id"].as_str().is_some_and(|id| expected.contains(id))).collect();
    seen.extend(unresolved.into_iter().filter(|e| e["event_id"].as_str().is_some_and(|id| stored.contains_key(id))));
    seen = dedup(seen);
    if let Some((_, from, to)) = verify::days_of(&seen) {
        let videos = verify::videos_of(&seen);
        let counted =
            verify::counted_per_video(&ctx.http, &ctx.stack.query_api_url(), &ctx.stack.keys.read, &videos, from, to)
                .await?;
        let mut per_video: BTreeMap<String, u64> = BTreeMap::new();
        for event in &seen {
            *per_video.entry(event["video_id"].as_str().unwrap_or_default().to_string()).or_default() += 1;
        }
        for (video, expected) in &per_video {
            let got = counted.get(video).copied().unwrap_or(0);
            if got > *expected {
                row.counted_twice += got - expected;
            } else if got < *expected {
                row.problems.push(format!("{video}: the custom query counts {got} events of {expected}"));
            }
        }
        let (compared, differences) =
            verify::compare_with_oracle(&ctx.http, &ctx.stack.query_api_url(), &ctx.stack.keys.read, &seen).await?;
        row.videos = compared;
        let differing: BTreeSet<&str> = differences.iter().filter_map(|d| d.split(':').next()).collect();
        row.differences = differing.len();
        row.problems.extend(differences.iter().take(10).map(|d| format!("oracle: {d}")));
    }

    if let Some((session, from, to)) = &exercised.flood {
        let partitions = ingest_gateway::IngestConfig::default().raw_topic_partitions;
        let latencies = latency::per_partition(&clickhouse, &prefix, *from, *to, partitions).await?;
        row.notes.extend(latency::describe(&latencies, latency::partition_of(session, partitions)));
    }
    if drill.fault == Fault::Poison {
        match drills::chdb_refuses_120_months(&ctx.layout.root) {
            Some(Ok(())) => row.notes.push(
                "chDB (a current ClickHouse) refuses an INSERT of 120 monthly partitions with the same code 252"
                    .to_string(),
            ),
            Some(Err(err)) => row.problems.push(err),
            None => row
                .notes
                .push("chDB is not installed here: the code-252 check on a current ClickHouse was skipped".into()),
        }
    }
    Ok(())
}

/// The poison drill's expected dead letters: exactly them, with ClickHouse's code.
async fn check_dead_letters(
    ctx: &Ctx,
    expected: &BTreeSet<String>,
    stored: &std::collections::HashMap<String, u64>,
    row: &mut Row,
) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(30);
    let letters = loop {
        let letters = drills::dead_letters(ctx).await.unwrap_or_default();
        if letters.len() >= expected.len() || Instant::now() > until {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (id, reason, detail) in &letters {
        if !expected.contains(id) {
            row.problems.push(format!("an unexpected dead letter: {id} ({reason}: {detail})"));
        } else if reason != "clickhouse_refused" || !detail.starts_with("clickhouse code 252") {
            row.problems.push(format!("dead letter {id} has reason {reason:?}, detail {detail:?}"));
        } else {
            row.dead_lettered += 1;
            row.notes.push(format!(
                "{id} is in the dead-letter topic: {reason}, {}",
                detail.chars().take(70).collect::<String>()
            ));
        }
    }
    for id in expected {
        if stored.contains_key(id) {
            row.problems.push(format!("the refused event {id} was stored"));
        }
        if !letters.iter().any(|(letter, _, _)| letter == id) {
            row.problems.push(format!("the refused event {id} is not in the dead-letter topic"));
        }
    }
    if let Some(proxy) = &ctx.proxy {
        row.notes.push(format!(
            "the proxy refused {} INSERTs (bisection) and passed {} requests on",
            proxy.refused(),
            proxy.forwarded()
        ));
    }
    Ok(())
}

/// One copy per `event_id` (the journal of a retried batch holds it once, but be sure).
fn dedup(events: Vec<Value>) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    events.into_iter().filter(|e| seen.insert(e["event_id"].as_str().unwrap_or_default().to_string())).collect()
}

#[cfg(test)]
mod tests;
