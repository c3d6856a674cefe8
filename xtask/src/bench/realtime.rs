//! `cargo xtask bench realtime`: how long after `POST /api/events` returns an
//! event reaches a subscribed WebSocket client, and how long the pushed
//! realtime metrics take to show a change, under background traffic and
//! without it (the same-run baseline).
//!
//! Phases, in one invocation: the baseline (probes only), then `--runs`
//! loaded runs (the generator at `--rate`, `--warmup` before measuring).
//! During each measured period:
//!
//! - feed probes: `--probe-rate` single `POST /api/events` a second, each a
//!   fresh `event_id` on the phase's probe video, which one WebSocket client
//!   subscribes to (so the hub's per-client sampling, 50 events/s, never
//!   applies to it); latency = arrival of its `analytics_event` − the POST's
//!   return, both stamped in this process;
//! - change probes: every `--change-every`, a batch of `--burst`
//!   `video_start`s of fresh videos, then their `video_complete`s, each at a
//!   random point of the hub's one-second tick; latency = the first
//!   `realtime_metrics` whose `active_streams` shows the burst (90 % of it,
//!   against background drift) − the POST's return. The generator's catalog (200 videos) is all active at
//!   5,000 events/s, so the background does not move `active_streams`.
//!
//! An unfiltered client (a dashboard, sampled by the hub) stays connected
//! throughout. The services' `/metrics` and `/proc` CPU times are read at
//! both ends of each measured period.

use std::{
    collections::HashMap,
    process::ExitCode,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    client::{ChangeSettings, HubClient, ProbeNames, change_probes, feed_probes, signed_ms},
    machine,
    report::{Internals, Meta, Phase, Report, replace_block},
    stats::{CpuSnapshot, Scrape},
    target::{Generator, Profile, Target, build},
};
use crate::{
    layout::Layout,
    ui::{self, Step},
};

/// The block of `BENCHMARKS.md` this benchmark owns.
pub const BLOCK: &str = "bench:realtime";
const HEADING: &str = "Realtime latency (`cargo xtask bench realtime`)";
/// How long after the measured period a probe may still arrive (and count).
const GRACE: Duration = Duration::from_secs(5);

fn parse_length(text: &str) -> Result<Duration, String> {
    loadgen::parse_duration(text)?.ok_or_else(|| format!("{text:?}: a benchmark needs a finite duration"))
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct RealtimeArgs {
    /// Background events per second during the loaded runs.
    #[arg(long, default_value_t = 5000.0)]
    pub rate: f64,
    /// Measured period of each loaded run: 60s, 2m, …
    #[arg(long, default_value = "60s", value_parser = parse_length)]
    pub duration: Duration,
    /// Background traffic before each measured period.
    #[arg(long, default_value = "10s", value_parser = parse_length)]
    pub warmup: Duration,
    /// Loaded runs.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Measured period of the baseline (no background traffic); default: --duration.
    #[arg(long, value_parser = parse_length)]
    pub baseline: Option<Duration>,
    /// Feed probes per second (keep it under the hub's client_max_events_per_sec, 50).
    #[arg(long, default_value_t = 20.0)]
    pub probe_rate: f64,
    /// Views opened (then ended) by each change probe.
    #[arg(long, default_value_t = 100)]
    pub burst: usize,
    /// A change probe cycle starts every this long.
    #[arg(long, default_value = "5s", value_parser = parse_length)]
    pub change_every: Duration,
    /// Build profile of the services the benchmark starts.
    #[arg(long, value_enum, default_value = "release")]
    pub profile: Profile,
    /// Measure the running local stack's services (`cargo xtask up`, debug builds) instead of starting its own.
    #[arg(long)]
    pub stack: bool,
    /// Extra environment for the services the benchmark starts, e.g.
    /// `--set STREAM_PROCESSOR__PROCESSOR__BATCH_MAX_WAIT=250ms` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// Write the figures into BENCHMARKS.md (the block between its bench:realtime markers).
    #[arg(long)]
    pub record: bool,
    /// Use the binaries already built.
    #[arg(long)]
    pub no_build: bool,
    /// Keep the benchmark's topics and ClickHouse database.
    #[arg(long)]
    pub keep: bool,
    /// Seed of the background traffic.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl RealtimeArgs {
    fn validate(&self) -> Result<()> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!("--rate must be a positive number of events per second");
        }
        if self.runs == 0 {
            bail!("--runs must be at least 1");
        }
        if !(self.probe_rate > 0.0 && self.probe_rate <= 45.0) {
            bail!("--probe-rate must be above 0 and at most 45 (the hub samples a client above 50 events/s)");
        }
        if self.burst == 0 || self.burst > 1000 {
            bail!("--burst must be between 1 and 1000 (one batch request)");
        }
        if self.stack && !self.settings.is_empty() {
            bail!("--set applies to the services the benchmark starts, not to the local stack's (--stack)");
        }
        Ok(())
    }

    fn baseline_duration(&self) -> Duration {
        self.baseline.unwrap_or(self.duration)
    }
}

pub async fn run(layout: &Layout, args: RealtimeArgs) -> Result<ExitCode> {
    args.validate()?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    if !args.no_build {
        build(layout, args.profile, args.stack).await?;
    }
    let target = if args.stack {
        Target::stack(layout).await?
    } else {
        Target::start_own(layout, &run, args.profile, &args.settings, args.keep).await?
    };
    // Ctrl-C: the services of our process group stop by themselves; clean up the rest.
    let outcome = tokio::select! {
        outcome = measure(layout, &args, &target, &run) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let step = Step::start("stopping the benchmark's services");
    target.stop().await;
    step.ok("");
    let report = outcome?;
    ui::out(report.table());
    if args.record {
        let path = layout.root.join("BENCHMARKS.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_string());
        std::fs::write(&path, replace_block(&doc, BLOCK, HEADING, &report.markdown()))
            .with_context(|| format!("writing {}", path.display()))?;
        ui::out(format!("\nRecorded in {}.", layout.show(&path)));
    }
    Ok(ExitCode::SUCCESS)
}

/// What every phase shares.
struct Bench<'a> {
    layout: &'a Layout,
    args: &'a RealtimeArgs,
    target: &'a Target,
    run: &'a str,
    http: reqwest::Client,
    dashboard: HubClient,
}

async fn measure(layout: &Layout, args: &RealtimeArgs, target: &Target, run: &str) -> Result<Report> {
    // The ingest key on every request: the probes go to the gateway (the
    // services' /metrics need none).
    let http = reqwest::Client::builder()
        .default_headers(crate::keys::ingest_headers(&target.ingest_key)?)
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .build()
        .context("building the HTTP client")?;
    let dashboard =
        HubClient::connect(&target.hub_ws, &target.read_token, None).await.context("the dashboard client")?;
    let bench = Bench { layout, args, target, run, http, dashboard };

    let mut notes = Vec::new();
    let baseline = bench.phase("baseline", None, Duration::from_secs(2), args.baseline_duration(), &mut notes).await?;
    let mut runs = Vec::new();
    for index in 1..=args.runs {
        let seed = args.seed + index as u64;
        let phase = bench.phase(&format!("run {index}"), Some(seed), args.warmup, args.duration, &mut notes).await?;
        runs.push(phase);
    }
    let other_load: Vec<f64> = [&baseline]
        .into_iter()
        .chain(&runs)
        .filter_map(|p| p.cpu.iter().find(|(name, _)| name == OTHER).map(|(_, c)| *c))
        .collect();
    if let Some(max) = other_load.iter().copied().reduce(f64::max).filter(|m| *m >= 0.2) {
        notes.push(format!(
            "other processes on the machine (tests run by others, the build) used up to {max:.2} cores during a \
             measured period (`{OTHER}` in the CPU figures)."
        ));
    }
    Ok(Report { meta: meta(args, target, notes), baseline, runs })
}

/// The CPU figure of everything the benchmark did not start or measure.
const OTHER: &str = "rest of the machine";

impl Bench<'_> {
    /// One phase: background traffic (when `seed` is given) for `warmup`,
    /// then probes for `duration`.
    async fn phase(
        &self,
        name: &str,
        seed: Option<u64>,
        warmup: Duration,
        duration: Duration,
        notes: &mut Vec<String>,
    ) -> Result<Phase> {
        let args = self.args;
        let names = ProbeNames::new(self.run, name);
        let step = Step::start(match seed {
            Some(_) => {
                let (rate, warmup, measured) = (args.rate, warmup.as_secs(), duration.as_secs());
                format!("{name}: {rate} events/s, {warmup}s warm-up, {measured}s measured")
            }
            None => format!("{name}: no background traffic, {}s measured", duration.as_secs()),
        });
        let client = Arc::new(
            HubClient::connect(&self.target.hub_ws, &self.target.read_token, Some(&[names.feed_video()])).await?,
        );
        let mut generator = match seed {
            Some(seed) => {
                Some(Generator::start(self.layout, &self.target.gateway, &self.target.ingest_key, args.rate, seed)?)
            }
            None => None,
        };
        step.set_message("warming up");
        tokio::time::sleep(warmup).await;
        if let Some(generator) = generator.as_mut() {
            if !generator.is_running() {
                step.fail("the load generator exited");
                bail!("the load generator exited during the warm-up; read .stack/logs/bench-load.log");
            }
        }

        let mut pids = self.target.pids.clone();
        pids.push(("xtask (probes)".to_string(), std::process::id()));
        if let Some(generator) = &generator {
            pids.push(("load generator".to_string(), generator.pid));
        }
        let before = (self.scrape().await?, CpuSnapshot::take(&pids), self.dashboard.events.load(Relaxed));
        let started = Instant::now();
        let until = started + duration;
        step.set_message("measuring");
        let feed = tokio::spawn(feed_probes(
            self.http.clone(),
            self.target.gateway.clone(),
            names.clone(),
            args.probe_rate,
            until,
        ));
        let settings =
            ChangeSettings { burst: args.burst, every: args.change_every, deadline: Duration::from_secs(10) };
        let changes = tokio::spawn(change_probes(
            self.http.clone(),
            self.target.gateway.clone(),
            client.clone(),
            names.clone(),
            settings,
            until,
            seed.unwrap_or(7),
        ));
        let sends = feed.await.context("the feed probe task")?;
        let seconds = started.elapsed().as_secs_f64();
        let after = (self.scrape().await?, CpuSnapshot::take(&pids), self.dashboard.events.load(Relaxed));
        step.set_message("last change probe and late arrivals");
        let (changes, changes_missed, problems) = changes.await.context("the change probe task")?;
        let grace_end = Instant::now() + GRACE;
        while Instant::now() < grace_end && sends.iter().any(|s| s.accepted && client.arrival(&s.event_id).is_none()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let background = match generator {
            Some(generator) => Some(generator.stop().await?),
            None => None,
        };
        if client.is_closed() {
            notes.push(format!("{name}: the hub closed the probe client's WebSocket."));
        }
        if client.sampled.load(Relaxed) > 0 {
            notes.push(format!("{name}: the hub sampled the probe client's feed (sample_rate < 1)."));
        }
        for problem in problems.iter().take(3) {
            notes.push(format!("{name}: {problem}"));
        }

        let mut phase = Phase {
            name: name.to_string(),
            measured_secs: seconds,
            probes_sent: sends.len(),
            probes_failed: sends.iter().filter(|s| !s.accepted).count(),
            changes_missed,
            ..Phase::default()
        };
        for send in sends.iter().filter(|s| s.accepted) {
            phase.post_ms.push(signed_ms(send.returned, send.sent));
            match client.arrival(&send.event_id) {
                Some(arrived) => phase.feed_ms.push(signed_ms(arrived, send.returned)),
                None => phase.probes_lost += 1,
            }
        }
        phase.changes = changes;

        let (scrape_before, cpu_before, dashboard_before) = before;
        let (scrape_after, cpu_after, dashboard_after) = after;
        phase.dashboard_events_per_sec = (dashboard_after - dashboard_before) as f64 / seconds;
        phase.internals = internals(&scrape_before, &scrape_after);
        let names: Vec<String> = pids.iter().map(|(name, _)| name.clone()).collect();
        phase.cpu = cpu_after.cores_since(&cpu_before, seconds, &names);
        phase.machine_cores = cpu_after.machine_cores_since(&cpu_before, machine::cores());
        if let Some(busy) = phase.machine_cores {
            let ours: f64 = phase.cpu.iter().map(|(_, c)| c).sum();
            phase.cpu.push((OTHER.to_string(), (busy - ours).max(0.0)));
        }
        if let Some(mut background) = background {
            let accepted = scrape_after["ingest-gateway"].delta(&scrape_before["ingest-gateway"], ACCEPTED, &[]);
            // The probes' own events (feed probes, and about one burst per change) are not background.
            let probes = (phase.probes_sent - phase.probes_failed) as f64
                + ((phase.changes.len() + phase.changes_missed) * args.burst) as f64;
            background.measured_rate = ((accepted - probes) / seconds).max(0.0);
            phase.background = Some(background);
        }
        let feed = phase.feed();
        step.ok(format!(
            "feed p50 {} p99 {} ({} probes, {} lost); change p50 {} max {} ({} bursts, {} missed)",
            super::report::ms(feed.map(|d| d.p50)),
            super::report::ms(feed.map(|d| d.p99)),
            phase.feed_ms.len(),
            phase.probes_lost + phase.probes_failed,
            super::report::ms(phase.change().map(|d| d.p50)),
            super::report::ms(phase.change().map(|d| d.max)),
            phase.changes.len(),
            phase.changes_missed,
        ));
        drop(client);
        // Let the pipeline drain before the next phase.
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(phase)
    }

    /// `/metrics` of the three services.
    async fn scrape(&self) -> Result<Scrapes> {
        let mut scrapes = HashMap::new();
        for (service, url) in &self.target.metrics {
            let text = self
                .http
                .get(url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .with_context(|| format!("GET {url}"))?
                .text()
                .await
                .with_context(|| format!("GET {url}"))?;
            scrapes.insert(*service, Scrape::parse(&text));
        }
        Ok(Scrapes(scrapes))
    }
}

const ACCEPTED: &str = "analytics_service_ingest_events_accepted_total";

/// `/metrics` of each service at one moment.
struct Scrapes(HashMap<&'static str, Scrape>);

impl std::ops::Index<&str> for Scrapes {
    type Output = Scrape;

    fn index(&self, service: &str) -> &Scrape {
        static EMPTY: std::sync::OnceLock<Scrape> = std::sync::OnceLock::new();
        self.0.get(service).unwrap_or_else(|| EMPTY.get_or_init(Scrape::default))
    }
}

fn internals(before: &Scrapes, after: &Scrapes) -> Internals {
    let mean = |service: &str, name: &str| after[service].mean_since(&before[service], name);
    let ms = |service: &str, name: &str| mean(service, name).map(|s| s * 1e3);
    Internals {
        batch_events: mean("stream-processor", "analytics_service_processor_batch_size"),
        flush_ms: ms("stream-processor", "analytics_service_event_processing_duration_seconds"),
        store_age_ms: ms("stream-processor", "analytics_service_event_ingest_to_store_seconds"),
        hub_compute_ms: ms("realtime-hub", "analytics_service_hub_window_compute_duration_seconds"),
        produce_ms: ms("ingest-gateway", "analytics_service_kafka_produce_duration_seconds"),
        window_facts: Some(after["realtime-hub"].sum("analytics_service_hub_window_facts", &[])),
        window_views: Some(after["realtime-hub"].sum("analytics_service_hub_window_views", &[])),
        hub_dropped: after["realtime-hub"].delta(
            &before["realtime-hub"],
            "analytics_service_websocket_dropped_messages_total",
            &[],
        ),
    }
}

fn meta(args: &RealtimeArgs, target: &Target, notes: Vec<String>) -> Meta {
    let command = format!("cargo xtask {}", std::env::args().skip(1).collect::<Vec<_>>().join(" "));
    let mut config = vec![
        ("background".to_string(), format!("{} events/s (loadgen, 200 videos, 2000 users)", args.rate)),
        (
            "runs".to_string(),
            format!("{} × ({}s warm-up + {}s measured)", args.runs, args.warmup.as_secs(), args.duration.as_secs()),
        ),
        ("baseline".to_string(), format!("{}s without background traffic", args.baseline_duration().as_secs())),
        ("feed probes".to_string(), format!("{}/s", args.probe_rate)),
        (
            "change probes".to_string(),
            format!("{} views opened then ended every {}s", args.burst, args.change_every.as_secs()),
        ),
    ];
    if args.settings.is_empty() && !args.stack {
        config.push(("service settings".to_string(), "defaults".to_string()));
    }
    for (key, value) in &args.settings {
        config.push(("set".to_string(), format!("{key}={value}")));
    }
    Meta {
        command,
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M").to_string(),
        commit: machine::commit(),
        cpu_model: machine::cpu_model(),
        cores: machine::cores(),
        ram_gib: machine::ram_gib(),
        rustc: machine::rustc(),
        profile: if args.stack { "debug (xtask up)".to_string() } else { args.profile.as_str().to_string() },
        services: format!("{} gateway, processor and hub", target.description),
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
        args: RealtimeArgs,
    }

    #[test]
    fn defaults_are_the_issue_s_figures() {
        let args = Cli::parse_from(["realtime"]).args;
        assert_eq!(args.rate, 5000.0);
        assert_eq!((args.duration, args.warmup, args.runs), (Duration::from_secs(60), Duration::from_secs(10), 3));
        assert_eq!(args.baseline_duration(), Duration::from_secs(60));
        assert_eq!((args.probe_rate, args.burst), (20.0, 100));
        assert_eq!(args.profile, Profile::Release);
        assert!(!args.stack && !args.record);
        args.validate().unwrap();
    }

    #[test]
    fn options_are_parsed_and_checked() {
        let args = Cli::parse_from([
            "realtime",
            "--rate",
            "1000",
            "--duration",
            "2m",
            "--baseline",
            "30s",
            "--set",
            "STREAM_PROCESSOR__PROCESSOR__BATCH_MAX_WAIT=250ms",
            "--set",
            "A=b=c",
        ])
        .args;
        assert_eq!(args.duration, Duration::from_secs(120));
        assert_eq!(args.baseline_duration(), Duration::from_secs(30));
        assert_eq!(args.settings[0], ("STREAM_PROCESSOR__PROCESSOR__BATCH_MAX_WAIT".into(), "250ms".into()));
        assert_eq!(args.settings[1], ("A".into(), "b=c".into()));
        assert!(Cli::try_parse_from(["realtime", "--duration", "forever"]).is_err());
        assert!(Cli::try_parse_from(["realtime", "--set", "novalue"]).is_err());
        assert!(Cli::parse_from(["realtime", "--probe-rate", "60"]).args.validate().is_err());
        assert!(Cli::parse_from(["realtime", "--runs", "0"]).args.validate().is_err());
        assert!(Cli::parse_from(["realtime", "--stack", "--set", "A=1"]).args.validate().is_err());
    }
}
