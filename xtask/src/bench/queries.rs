//! `cargo xtask bench queries`: part C of the pipeline benchmark (issue 11),
//! the query API's latency at volume against the same SQL run directly.
//!
//! 1. A fixture in a ClickHouse database of its own (`bench_queries`, every
//!    migration applied): `--events` events (10 M by default) over the last
//!    7 days, written with `INSERT … SELECT` from `system.numbers` in chunks
//!    of 1 M, the materialized views included. Sessions of ten events (a
//!    `video_start`, progress, a stall on one in seven, a completion on one
//!    in three), 30 s apart; video popularity skewed (`u³` over 20,000
//!    videos, so the hottest video has ~4 % of the views); 50,000 users.
//! 2. The closed windows aggregated by the release `aggregator-cron run`
//!    (a PostgreSQL database of its own), as the scheduler would have done.
//! 3. The release aggregator-cron as a service, as deployed: its facts passes
//!    (every 5 s, after a first full pass) and its scheduler (up to date
//!    after step 2; it rolls the current hour up for custom queries every
//!    5 minutes, and runs the windows falling due), and the release query-api on that
//!    database, cache off, `log_queries` on (three of them: top videos with
//!    the defaults, exact, and exact without stored facts or hourly rollup),
//!    while `--ingest-rate` events/s (2,000 by default) of live sessions are
//!    posted every second to a release ingest-gateway and stored by a
//!    release stream-processor on topics of their own ([`live`]; with
//!    `--direct-ingest`, inserted straight into `events`): the current hour
//!    and day stay open, and the services' CPU competes with the queries.
//! 4. Per case (a hot, a median and a tail video over 1 and 7 days, top
//!    videos over 1 and 7 days, a median user over 7 days, a custom query
//!    grouping a day by device, realtime): one request whose statements are
//!    read back from `system.query_log` (rows read, peak memory), then
//!    `--requests` requests sequentially and `--requests` at concurrency 4,
//!    each interleaved with the same statements sent straight to ClickHouse
//!    over HTTP (its probes concurrently, then its main statements, as
//!    query-api runs them).
//! 5. Unless `--no-scale`: another `--events` events of other videos and
//!    users (double the background), aggregated, and the sequential cases
//!    again, the live inserts now of other videos: the rows a fixed video's
//!    request reads must stay within 10 %;
//!    the two sizes give a linear projection to 100 M and 1 B events.
//!
//! Its services check keys against its own PostgreSQL database, where it
//! creates its keys (`bench-queries-ingest` for the live traffic,
//! `bench-queries-read` for the requests, `bench-queries-admin`); their
//! per-key rate limits are lifted.
//!
//! What it does not do: the fixture of step 1 (and the current hour's fill
//! before measuring) is written straight into ClickHouse, not through the
//! gateway and processor (bench pipeline A, B and D measure their rates).

use std::{
    collections::HashSet,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Days, NaiveDate, Timelike as _, Utc};
use futures::future::join_all;
use serde::Deserialize;
use service_kit::deps::postgres;

use super::{
    machine,
    report::replace_block,
    stats::{Distribution, median},
    target::{Profile, cargo_build, start_service},
};

use crate::{layout::Layout, stack, ui::Step};

/// The block of `BENCHMARKS.md` this benchmark owns.
pub const BLOCK: &str = "bench:queries";
const HEADING: &str = "Query latency at volume (`cargo xtask bench queries`)";
const DATABASE: &str = "bench_queries";
const CHUNK: u64 = 1_000_000;
const EVENTS_PER_SESSION: u64 = 10;
const VIDEOS: u64 = 20_000;
const USERS: u64 = 50_000;
const SPAN_SECS: u64 = 7 * 86_400;
/// `freshness.top_from_pass_min_views` no platform reaches: exact top videos.
const NEVER_FROM_PASS: u64 = 1_000_000_000_000;

#[derive(Debug, clap::Args)]
pub struct QueriesArgs {
    /// Events in the fixture, spread over the 7 days ending now.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Requests per case, sequentially and again at concurrency 4 (each as many direct runs).
    #[arg(long, default_value_t = 40)]
    pub requests: usize,
    /// Live events inserted per second while measuring.
    #[arg(long, default_value_t = 2000)]
    pub ingest_rate: u64,
    /// Skip the doubled-background scale check.
    #[arg(long)]
    pub no_scale: bool,
    /// Do not fill the current hour, before measuring, with the live traffic
    /// it would hold had `--ingest-rate` been arriving since it began.
    #[arg(long)]
    pub no_warm_hour: bool,
    /// Keep the fixture database afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Do not write the figures into BENCHMARKS.md.
    #[arg(long)]
    pub no_write: bool,
    /// Insert the live traffic straight into ClickHouse (`INSERT … SELECT`)
    /// instead of posting it to a release ingest-gateway and stream-processor.
    #[arg(long)]
    pub direct_ingest: bool,
    /// Run only the cases whose name contains one of these (comma-separated,
    /// e.g. `video,user`); a partial run is for checking a change and should
    /// not be recorded (use it with `--no-write`).
    #[arg(long, value_delimiter = ',')]
    pub cases: Vec<String>,
}

mod live;

// ------------------------------------------------------------ ClickHouse ---

/// ClickHouse over HTTP, as a user with `curl` would send it.
#[derive(Clone)]
struct Ch {
    http: reqwest::Client,
    database: String,
}

impl Ch {
    fn new(database: &str) -> Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(900)).build()?;
        Ok(Self { http, database: database.to_string() })
    }

    async fn run(&self, sql: &str) -> Result<String> {
        self.run_with(sql, &[]).await
    }

    /// [`Self::run`] with ClickHouse `settings` as URL parameters.
    async fn run_with(&self, sql: &str, settings: &[(String, String)]) -> Result<String> {
        let params = std::iter::once(("database", self.database.as_str()))
            .chain(settings.iter().map(|(name, value)| (name.as_str(), value.as_str())));
        let url = reqwest::Url::parse_with_params(&format!("{}/", stack::CLICKHOUSE_URL), params)?;
        let response = self
            .http
            .post(url)
            .body(sql.to_string())
            .send()
            .await
            .with_context(|| format!("sending to ClickHouse: {}", first_line(sql)))?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            bail!("ClickHouse answered {status} to {}: {}", first_line(sql), body.trim());
        }
        Ok(body)
    }

    async fn rows<T: for<'de> Deserialize<'de>>(&self, sql: &str) -> Result<Vec<T>> {
        let body = self.run(&format!("{sql} FORMAT JSONEachRow")).await?;
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("row {l}")))
            .collect()
    }

    async fn number(&self, sql: &str) -> Result<u64> {
        let text = self.run(sql).await?;
        text.trim().parse().with_context(|| format!("{:?} from {sql}", text.trim()))
    }
}

fn first_line(sql: &str) -> String {
    let line = sql.trim().lines().next().unwrap_or_default();
    line.chars().take(100).collect()
}

// --------------------------------------------------------------- fixture ---

/// Which traffic a generated session belongs to.
#[derive(Debug, Clone, Copy)]
struct Traffic {
    /// Prefix of video ids (`bv`: the fixture's, `ov`: the doubled background's).
    videos: &'static str,
    users: &'static str,
    sessions: &'static str,
    salt: u64,
}

const BASE: Traffic = Traffic { videos: "bv", users: "bu", sessions: "bs", salt: 1 };
const OTHER: Traffic = Traffic { videos: "ov", users: "ou", sessions: "os", salt: 2 };
const LIVE: Traffic = Traffic { videos: "bv", users: "bu", sessions: "ls", salt: 3 };
/// The live traffic of the scale check: other videos, so that the fixed
/// videos' rows differ between the two sizes only by what the background does.
const LIVE_OTHER: Traffic = Traffic { videos: "ov", users: "ou", sessions: "lo", salt: 4 };
/// The current hour's live traffic before measuring (`--no-warm-hour` skips it).
const WARM: Traffic = Traffic { videos: "bv", users: "bu", sessions: "ws", salt: 5 };

/// `INSERT … SELECT` of events `first..first + count` of `traffic`: session
/// `s = n / 10` starts at `start + (s − origin) × span ÷ sessions` and its
/// event `k = n % 10` comes `30 k` seconds later. The fixture's chunks share
/// `origin` 0, so its `sessions` spread over the whole span (until
/// 2026-12-06 each chunk restarted at `start`, which put the whole fixture
/// in the span's first 17 hours); a second of live traffic has its own.
fn insert_sql(traffic: Traffic, first: u64, count: u64, start: u64, span: u64, sessions: u64, origin: u64) -> String {
    let Traffic { videos, users, sessions: session_prefix, salt } = traffic;
    format!(
        "INSERT INTO events (event_id, event_type, user_id, session_id, video_id, timestamp, timestamp_ms, \
         received_at_ms, position_seconds, duration_seconds, quality, bitrate_kbps, buffer_duration_ms, \
         startup_time_ms, error_code, error_message, fatal, seek_from_seconds, seek_to_seconds, from_quality, \
         to_quality, device_type, browser, os, country, player, cdn, properties, metadata) \
         SELECT generateUUIDv4(), \
           multiIf(k = 0, 'video_start', k = 9 AND s % 3 = 0, 'video_complete', k = 8 AND s % 7 = 0, 'video_buffer', 'video_progress'), \
           toNullable(concat('{users}-', toString(cityHash64(s, {salt}, 1) % {USERS}))), \
           concat('{session_prefix}-', toString(s)), \
           concat('{videos}-', toString(toUInt32(pow((cityHash64(s, {salt}) % 1000000) / 1000000., 3) * {VIDEOS}))), \
           toDateTime(ts), ts * 1000, ts * 1000 + 400, \
           toNullable(toFloat64(k * 30)), toNullable(600.), \
           if(s % 2 = 0, '1080p', '720p'), toNullable(toUInt32(if(s % 2 = 0, 5000, 2500))), \
           if(k = 8 AND s % 7 = 0, toUInt32(1500), NULL), \
           if(k = 0, toUInt32(300 + s % 2000), NULL), \
           '', '', 0, NULL, NULL, '', '', \
           arrayElement(['desktop', 'mobile', 'tv', 'tablet'], s % 4 + 1), 'chrome', 'linux', \
           arrayElement(['US', 'GB', 'DE', 'FR', 'BR'], s % 5 + 1), 'bench/1', 'cdn-a', '{{}}', NULL \
         FROM (SELECT n, s, k, toUInt32({start} + intDiv((s - {origin}) * {span}, {sessions}) + k * 30) AS ts \
               FROM (SELECT number + {first} AS n, intDiv(n, {EVENTS_PER_SESSION}) AS s, n % {EVENTS_PER_SESSION} AS k \
                     FROM system.numbers LIMIT {count}))"
    )
}

/// Inserts `events` events of `traffic` over the 7 days ending at `end`.
async fn insert_traffic(ch: &Ch, traffic: Traffic, events: u64, end: u64) -> Result<()> {
    let events = events / EVENTS_PER_SESSION * EVENTS_PER_SESSION;
    let sessions = events / EVENTS_PER_SESSION;
    // The last session's last event lands by `end`.
    let span = SPAN_SECS - 300;
    let start = end - SPAN_SECS;
    let step = Step::start(format!("inserting {} events ({}-… videos)", thousands(events), traffic.videos));
    let started = Instant::now();
    let mut done = 0;
    while done < events {
        let count = CHUNK.min(events - done);
        step.set_message(format!("{} of {}", thousands(done), thousands(events)));
        ch.run(&insert_sql(traffic, done, count, start, span, sessions, 0)).await?;
        done += count;
    }
    step.ok(format!("{:.0} s", started.elapsed().as_secs_f64()));
    Ok(())
}

/// Fills `[start, end]` with live traffic at `rate` events/s (sessions of
/// ten events over 270 s, the last ending by `end`): the steady state of the
/// current hour under continuous ingest.
async fn insert_warm(ch: &Ch, rate: u64, start: u64, end: u64) -> Result<u64> {
    let span = end.saturating_sub(start).saturating_sub(9 * 30);
    let events = rate * span / EVENTS_PER_SESSION * EVENTS_PER_SESSION;
    if events == 0 {
        return Ok(0);
    }
    let step = Step::start(format!("filling the current hour: {} live events since its start", thousands(events)));
    let started = Instant::now();
    let mut done = 0;
    while done < events {
        let count = CHUNK.min(events - done);
        ch.run(&insert_sql(WARM, done, count, start, span, events / EVENTS_PER_SESSION, 0)).await?;
        done += count;
    }
    step.ok(format!("{:.0} s", started.elapsed().as_secs_f64()));
    Ok(events)
}

/// `aggregator-cron run` for every job up to the current hour / day.
async fn aggregate(layout: &Layout, env: &[(String, String)], now: DateTime<Utc>, days: u64) -> Result<()> {
    let hour = now.with_minute(0).and_then(|t| t.with_second(0)).context("the hour")?.with_nanosecond(0);
    let hour = hour.context("the hour")?;
    let today = now.date_naive();
    let from = today.checked_sub_days(Days::new(days)).context("the first day")?;
    let jobs = [
        ("video_metrics", from.to_string(), hour.to_rfc3339()),
        ("user_engagement_daily", from.to_string(), today.to_string()),
        ("events_hourly", from.to_string(), hour.to_rfc3339()),
    ];
    for (job, from, to) in jobs {
        let step = Step::start(format!("aggregator-cron run --job {job} --from {from} --to {to}"));
        let started = Instant::now();
        let log = layout.log("bench-queries-aggregator");
        let status = tokio::process::Command::new(super::target::binary(layout, Profile::Release, "aggregator-cron"))
            .args(["run", "--job", job, "--from", &from, "--to", &to])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(layout.log("bench-queries-aggregator.err"))?)
            .status()
            .await?;
        if !status.success() {
            step.fail(format!("{status}"));
            bail!("aggregator-cron run failed ({status}); read {}", layout.show(&log));
        }
        step.ok(format!("{:.0} s", started.elapsed().as_secs_f64()));
    }
    Ok(())
}

/// `count` live events (sessions of ten events whose last one is now), as
/// the processor would insert a second's worth.
fn live_sql(traffic: Traffic, first: u64, count: u64, now: u64) -> String {
    let sessions = (count / EVENTS_PER_SESSION).max(1);
    insert_sql(traffic, first, count, now - 9 * 30, 1, sessions, first / EVENTS_PER_SESSION)
}

/// Inserts `rate` live events every second until `stop`; counts what it inserted.
fn spawn_ingest(
    ch: Ch,
    traffic: Traffic,
    rate: u64,
    stop: Arc<AtomicBool>,
    inserted: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let (mut next, mut failed) = (0, 0);
        while !stop.load(Relaxed) {
            tick.tick().await;
            let now = Utc::now().timestamp() as u64;
            match ch.run(&live_sql(traffic, next, rate, now)).await {
                Ok(_) => {
                    inserted.fetch_add(rate, Relaxed);
                }
                Err(_) => failed += 1,
            }
            next += rate;
        }
        failed
    })
}

// ----------------------------------------------------------------- cases ---

/// The bench's three query-apis, as configured for top videos.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiMode {
    /// The defaults: a busy platform's (and a busy video's) open hours as of
    /// the newest facts pass.
    Default,
    /// Exact at once (`freshness.top_from_pass_min_views` and
    /// `video_from_pass_min_views` out of reach): the stored facts plus a
    /// rebuild of the views touched since the pass.
    Exact,
    /// Exact, rebuilding every view of the open windows
    /// (`freshness.stored_facts = "off"` too), and custom queries reading
    /// every hour raw (`freshness.custom_rollup = false`).
    Rebuild,
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    /// `p99 ≤ goal_ms` (issue 11); `None` when no latency goal is set.
    goal_ms: Option<f64>,
    /// Whether the rows it reads must not grow with other videos' traffic.
    fixed: bool,
    /// Which of the bench's query-apis answers it.
    api: ApiMode,
    path: String,
    body: Option<String>,
}

fn cases(today: NaiveDate, hot: &str, median_video: &str, tail: &str, user: &str) -> Vec<Case> {
    let week = today.checked_sub_days(Days::new(6)).unwrap_or(today);
    let range = |days: u32| {
        if days == 1 {
            format!("startDate={today}&endDate={today}")
        } else {
            format!("startDate={week}&endDate={today}")
        }
    };
    let mut out = Vec::new();
    for (label, id) in [("hot", hot), ("median", median_video), ("tail", tail)] {
        for days in [1, 7] {
            out.push(Case {
                name: format!("video {label} {days}d"),
                goal_ms: Some(100.0),
                fixed: true,
                api: ApiMode::Default,
                path: format!("/api/metrics/video/{id}?{}", range(days)),
                body: None,
            });
        }
    }
    // The same-run baselines of the hot video: exact at once (stored facts
    // plus the views touched since the pass rebuilt), and its open windows
    // rebuilt whole (what every video read did before stored facts served
    // them).
    out.push(Case {
        name: "video hot 1d, exact".into(),
        goal_ms: Some(100.0),
        fixed: true,
        api: ApiMode::Exact,
        path: format!("/api/metrics/video/{hot}?{}", range(1)),
        body: None,
    });
    out.push(Case {
        name: "video hot 1d, no stored facts".into(),
        goal_ms: Some(100.0),
        fixed: true,
        api: ApiMode::Rebuild,
        path: format!("/api/metrics/video/{hot}?{}", range(1)),
        body: None,
    });
    for days in [1, 7] {
        out.push(Case {
            name: format!("top videos {days}d"),
            goal_ms: Some(300.0),
            fixed: false,
            api: ApiMode::Default,
            path: format!("/api/metrics/videos/top?{}&limit=10", range(days)),
            body: None,
        });
    }
    out.push(Case {
        name: "top videos 1d, exact".into(),
        goal_ms: Some(300.0),
        fixed: false,
        api: ApiMode::Exact,
        path: format!("/api/metrics/videos/top?{}&limit=10", range(1)),
        body: None,
    });
    out.push(Case {
        name: "top videos 1d, exact, no stored facts".into(),
        goal_ms: Some(300.0),
        fixed: false,
        api: ApiMode::Rebuild,
        path: format!("/api/metrics/videos/top?{}&limit=10", range(1)),
        body: None,
    });
    out.push(Case {
        name: "user median 7d".into(),
        goal_ms: Some(100.0),
        fixed: true,
        api: ApiMode::Default,
        path: format!("/api/metrics/user/{user}?{}", range(7)),
        body: None,
    });
    let tomorrow = today.checked_add_days(Days::new(1)).unwrap_or(today);
    let custom = |from: NaiveDate| {
        format!(
            r#"{{"metrics":["views","event_count","avg_bitrate_kbps"],"group_by":["device_type"],"start":"{from}T00:00:00Z","end":"{tomorrow}T00:00:00Z"}}"#
        )
    };
    // The hours from the hourly rollup (the current one completed by the
    // events inserted since its run).
    out.push(Case {
        name: "custom by device 1d".into(),
        goal_ms: None,
        fixed: false,
        api: ApiMode::Default,
        path: "/api/metrics/query".into(),
        body: Some(custom(today)),
    });
    out.push(Case {
        name: "custom by device 7d".into(),
        goal_ms: None,
        fixed: false,
        api: ApiMode::Default,
        path: "/api/metrics/query".into(),
        body: Some(custom(week)),
    });
    // Every hour raw (`freshness.custom_rollup = false`), as before the rollup.
    out.push(Case {
        name: "custom by device 1d, raw".into(),
        goal_ms: None,
        fixed: false,
        api: ApiMode::Rebuild,
        path: "/api/metrics/query".into(),
        body: Some(custom(today)),
    });
    out.push(Case {
        name: "realtime".into(),
        goal_ms: None,
        fixed: false,
        api: ApiMode::Default,
        path: "/api/metrics/realtime".into(),
        body: None,
    });
    out
}

/// One statement query-api ran for a request, from `system.query_log`.
#[derive(Debug, Clone, Deserialize)]
struct Logged {
    query_id: String,
    query: String,
    #[serde(deserialize_with = "de_u64")]
    read_rows: u64,
    #[serde(deserialize_with = "de_u64")]
    memory_usage: u64,
    /// The settings the statement was sent with (`Settings.Names`/`Values`).
    setting_names: Vec<String>,
    setting_values: Vec<String>,
}

/// ClickHouse 18.16 quotes 64-bit integers in JSON.
fn de_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Number(u64),
        Text(String),
    }
    match N::deserialize(d)? {
        N::Number(n) => Ok(n),
        N::Text(t) => t.parse().map_err(serde::de::Error::custom),
    }
}

/// Polls until the aggregator recorded a full facts pass and, after it, one
/// covering every insert up to now (at most 10 minutes).
async fn wait_for_passes(ch: &Ch) -> Result<()> {
    // A pass covering inserts up to now: the fixture's last inserts (the
    // warm hour) are then in the stored facts, not among the keys a read
    // finds touched since the pass (thousands of them right after the full
    // pass, which covers up to its start less its margin).
    let now = ch.number("SELECT toUInt32(now())").await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let caught_up = format!(
        "SELECT count() FROM view_facts_passes WHERE covered_until >= toDateTime({now}) \
         AND version > (SELECT min(version) FROM view_facts_passes WHERE full_pass = 1)"
    );
    loop {
        if ch.number(&caught_up).await? > 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no facts pass caught up with the fixture within 10 minutes; read the aggregator's log");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The facts passes the aggregator ran, from its `/metrics`: count and mean
/// duration by kind.
async fn facts_passes(port: u16) -> Result<String> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await?.text().await?;
    let value = |name: &str, kind: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(&format!("kind=\"{kind}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let mut parts = Vec::new();
    for kind in ["full", "incremental"] {
        let count = value("analytics_service_facts_pass_duration_seconds_count", kind);
        let sum = value("analytics_service_facts_pass_duration_seconds_sum", kind);
        let rows = value("analytics_service_facts_rows_written_total", kind);
        if count > 0.0 {
            parts.push(format!(
                "{count:.0} {kind} (mean {:.0} ms, {:.0} rows each)",
                1000.0 * sum / count,
                rows / count
            ));
        }
    }
    Ok(format!("Facts passes during the run: {}.", parts.join(", ")))
}

/// How `metrics_sql::views::last_inserted_by_window` begins. The metric
/// statements mention `last_inserted` too (a view's facts carry it), so the
/// probe is told apart by its start.
const FRESHNESS_PREFIX: &str = "SELECT toUInt32(tupleElement(p, 1)) AS window";

/// A request's statements: the probes (window markers, freshness) that run
/// first and concurrently, and the statements that read the metric.
#[derive(Debug, Clone, Default, PartialEq)]
struct Plan {
    probes: Vec<String>,
    main: Vec<String>,
    /// The ClickHouse settings query-api sent with each statement (its
    /// limits: memory, spilling, time), so the direct runs use them too.
    settings: std::collections::HashMap<String, Vec<(String, String)>>,
}

impl Plan {
    fn of(statements: &[String]) -> Self {
        let (probes, main) = statements.iter().cloned().partition(|sql| {
            sql.contains("FROM aggregation_windows")
                || sql.contains("FROM view_facts_passes")
                || sql.contains("FROM event_hour_inserts")
                || sql.starts_with(FRESHNESS_PREFIX)
        });
        Self { probes, main, settings: Default::default() }
    }

    fn of_logged(logged: &[Logged]) -> Self {
        let mut plan = Self::of(&logged.iter().map(|l| l.query.clone()).collect::<Vec<_>>());
        for l in logged {
            let pairs = l.setting_names.iter().cloned().zip(l.setting_values.iter().cloned());
            // Settings only the log needs (its own switch) are left out.
            let pairs = pairs.filter(|(name, _)| name != "log_queries").collect();
            plan.settings.insert(l.query.clone(), pairs);
        }
        plan
    }
}

/// What one case measured.
#[derive(Debug, Clone, Default)]
struct Measured {
    seq_ours: Vec<f64>,
    seq_direct: Vec<f64>,
    c4_ours: Vec<f64>,
    c4_direct: Vec<f64>,
    read_rows: u64,
    /// Of `read_rows`, what the probes read.
    probe_rows: u64,
    peak_memory: u64,
    statements: usize,
    /// Answers of ours other than 200, by status (0: no answer).
    non_200: std::collections::BTreeMap<u16, usize>,
    /// Direct runs ClickHouse refused (e.g. its 30 s `max_execution_time`),
    /// and the first refusal: a result of the case, not the bench's failure.
    direct_errors: usize,
    direct_error: Option<String>,
    /// The case's first request was not answered 200: its status and body
    /// (the case is reported with it instead of latencies).
    refused: Option<String>,
    /// The captured answer came from a facts pass: how far its `as_of` lay
    /// behind the request (seconds).
    as_of_lag_s: Option<i64>,
}

/// A request answered with a status other than 200.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

struct Bench {
    http: reqwest::Client,
    ch: Ch,
    api: String,
    /// The same query-api, exact at once ([`ApiMode::Exact`]).
    api_exact: String,
    /// The same query-api, rebuilding open windows whole ([`ApiMode::Rebuild`]).
    api_rebuild: String,
    seen: HashSet<String>,
}

impl Bench {
    async fn request(&self, case: &Case) -> Result<(u16, String)> {
        let api = match case.api {
            ApiMode::Default => &self.api,
            ApiMode::Exact => &self.api_exact,
            ApiMode::Rebuild => &self.api_rebuild,
        };
        let url = format!("{api}{}", case.path);
        let request = match &case.body {
            Some(body) => self.http.post(url).header("content-type", "application/json").body(body.clone()),
            None => self.http.get(url),
        };
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    /// One request and the statements it ran.
    async fn capture(&mut self, case: &Case) -> Result<(Vec<Logged>, String)> {
        // query_log's start times have second resolution: wait for the next
        // second, so statements still running from the previous case (its
        // direct runs) cannot be taken for this request's.
        let previous = self.ch.number("SELECT toUInt32(now())").await?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let since = loop {
            let now = self.ch.number("SELECT toUInt32(now())").await?;
            if now > previous || Instant::now() >= deadline {
                break now;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (status, body) = self.request(case).await?;
        if status != 200 {
            return Err(Refused(format!("{status}: {}", body.chars().take(300).collect::<String>())).into());
        }
        // The server logs a statement once it has finished sending it, which
        // can be after the client has its answer: read the log until two
        // reads in a row find the same statements (a first capture once
        // missed the request's main statement and kept only its probes).
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut rows: Vec<Logged> = Vec::new();
        loop {
            self.ch.run("SYSTEM FLUSH LOGS").await?;
            let read: Vec<Logged> = self
                .ch
                .rows(&format!(
                    "SELECT query_id, query, read_rows, memory_usage, `Settings.Names` AS setting_names, \
                     `Settings.Values` AS setting_values FROM system.query_log \
                     WHERE type = 2 AND event_date >= yesterday() AND query_start_time >= toDateTime({since}) \
                     AND query NOT LIKE 'SELECT 1%' ORDER BY event_time"
                ))
                .await?;
            let settled = !read.is_empty() && read.len() == rows.len();
            rows = read;
            if settled || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let new: Vec<Logged> = rows.into_iter().filter(|r| !self.seen.contains(&r.query_id)).collect();
        self.seen.extend(new.iter().map(|r| r.query_id.clone()));
        Ok((new, body))
    }

    /// Milliseconds, and the status when it was not 200 (0: no answer).
    async fn ours(&self, case: &Case) -> (f64, Option<u16>) {
        let started = Instant::now();
        let status = match self.request(case).await {
            Ok((200, _)) => None,
            Ok((status, _)) => Some(status),
            Err(_) => Some(0),
        };
        (started.elapsed().as_secs_f64() * 1000.0, status)
    }

    async fn direct(&self, plan: &Plan) -> Result<f64> {
        let started = Instant::now();
        for stage in [&plan.probes, &plan.main] {
            let settings = |sql: &String| plan.settings.get(sql).map_or(&[][..], Vec::as_slice);
            for result in join_all(stage.iter().map(|sql| self.ch.run_with(sql, settings(sql)))).await {
                result?;
            }
        }
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    }

    /// `n` of ours and `n` direct, alternating, at `concurrency`.
    async fn measure(&self, case: &Case, plan: &Plan, n: usize, concurrency: usize, m: &mut Measured) -> Result<()> {
        let rounds = n.div_ceil(concurrency);
        for _ in 0..rounds {
            let ours = join_all((0..concurrency).map(|_| self.ours(case))).await;
            let direct = join_all((0..concurrency).map(|_| self.direct(plan))).await;
            let (o, d) = if concurrency == 1 {
                (&mut m.seq_ours, &mut m.seq_direct)
            } else {
                (&mut m.c4_ours, &mut m.c4_direct)
            };
            for (ms, status) in ours {
                o.push(ms);
                if let Some(status) = status {
                    *m.non_200.entry(status).or_default() += 1;
                }
            }
            for result in direct {
                match result {
                    Ok(ms) => d.push(ms),
                    Err(err) => {
                        m.direct_errors += 1;
                        m.direct_error.get_or_insert_with(|| format!("{err:#}").chars().take(200).collect());
                    }
                }
            }
        }
        Ok(())
    }

    async fn run_case(&mut self, case: &Case, n: usize, concurrent: bool) -> Result<Measured> {
        let step = Step::start(format!("{} ({})", case.name, case.path));
        let asked = chrono::Utc::now();
        let (logged, body) = match self.capture(case).await {
            Ok(c) => c,
            // An endpoint that refuses at this volume is a result, not the bench's failure.
            Err(err) if err.downcast_ref::<Refused>().is_some() => {
                step.fail(format!("answered {err}"));
                return Ok(Measured { refused: Some(err.to_string()), ..Measured::default() });
            }
            Err(err) => {
                step.fail("request failed");
                return Err(err);
            }
        };
        let plan = Plan::of_logged(&logged);
        let mut m = Measured {
            read_rows: logged.iter().map(|l| l.read_rows).sum(),
            probe_rows: logged.iter().filter(|l| plan.probes.contains(&l.query)).map(|l| l.read_rows).sum(),
            peak_memory: logged.iter().map(|l| l.memory_usage).max().unwrap_or(0),
            statements: logged.len(),
            as_of_lag_s: as_of_lag(&body, asked),
            ..Measured::default()
        };
        self.measure(case, &plan, n, 1, &mut m).await?;
        if concurrent {
            self.measure(case, &plan, n, 4, &mut m).await?;
        }
        let p = |v: &[f64]| Distribution::of(v).map_or("-".into(), |d| format!("{:.0}/{:.0} ms", d.p50, d.p99));
        step.ok(format!(
            "ours {} direct {} · {} statements, {} rows, {:.0} MiB",
            p(&m.seq_ours),
            p(&m.seq_direct),
            m.statements,
            thousands(m.read_rows),
            m.peak_memory as f64 / 1048576.0
        ));
        Ok(m)
    }
}

/// How far an answer's `freshness.as_of` lies behind `asked`, in seconds;
/// `None` when the answer has none (it is exact at the request).
fn as_of_lag(body: &str, asked: chrono::DateTime<chrono::Utc>) -> Option<i64> {
    let answer: serde_json::Value = serde_json::from_str(body).ok()?;
    let as_of = chrono::DateTime::parse_from_rfc3339(answer["freshness"]["as_of"].as_str()?).ok()?;
    Some((asked - as_of.with_timezone(&chrono::Utc)).num_seconds())
}

// ---------------------------------------------------------------- report ---

/// `ours ≤ 1.2 × direct + 5 ms` on the median, and the p99 goal.
fn verdict(case: &Case, m: &Measured) -> (bool, String) {
    if let Some(refused) = &m.refused {
        return (false, format!("answered {}", refused.replace('|', "/")));
    }
    let (Some(ours), Some(direct)) = (Distribution::of(&m.seq_ours), Distribution::of(&m.seq_direct)) else {
        let why = m
            .direct_error
            .as_ref()
            .map(|e| format!("{} direct runs failed ({})", m.direct_errors, e.replace('|', "/")));
        return (false, why.unwrap_or_else(|| "no samples".into()));
    };
    let mut reasons = Vec::new();
    if ours.p50 > 1.2 * direct.p50 + 5.0 {
        reasons.push(format!("p50 {:.0} > 1.2 × {:.0} + 5 ms", ours.p50, direct.p50));
    }
    if let Some(goal) = case.goal_ms.filter(|&goal| ours.p99 > goal) {
        reasons.push(format!("p99 {:.0} > {goal:.0} ms", ours.p99));
    }
    if !m.non_200.is_empty() {
        let by_status: Vec<String> = m.non_200.iter().map(|(status, n)| format!("{n} × {status}")).collect();
        reasons.push(format!("non-200 answers: {}", by_status.join(", ")));
    }
    if let Some(error) = &m.direct_error {
        reasons.push(format!("{} direct runs failed ({})", m.direct_errors, error.replace('|', "/")));
    }
    if reasons.is_empty() { (true, "met".into()) } else { (false, reasons.join("; ")) }
}

/// `y = a + b·x` through two points, evaluated at `x`.
fn project(x1: f64, y1: f64, x2: f64, y2: f64, x: f64) -> f64 {
    if (x2 - x1).abs() < f64::EPSILON {
        return y1;
    }
    let slope = (y2 - y1) / (x2 - x1);
    (y1 + slope * (x - x1)).max(0.0)
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn dist(v: &[f64]) -> String {
    Distribution::of(v).map_or("-".into(), |d| format!("{:.0} / {:.0}", d.p50, d.p99))
}

fn table(cases: &[Case], base: &[Measured]) -> String {
    let mut out = String::from(
        "| case | ours seq p50 / p99 ms | direct seq p50 / p99 ms | ratio p50 | ours c4 p50 / p99 ms | direct c4 p50 / p99 ms | rows read | peak memory | goal | verdict |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (case, m) in cases.iter().zip(base) {
        let ratio = match (median(&m.seq_ours), median(&m.seq_direct)) {
            (Some(o), Some(d)) if d > 0.0 => format!("×{:.2}", o / d),
            _ => "-".into(),
        };
        let goal = case.goal_ms.map_or("≤ 1.2× + 5 ms".into(), |g| format!("p99 ≤ {g:.0} ms, ≤ 1.2× + 5 ms"));
        let (_, verdict) = verdict(case, m);
        let name = match m.as_of_lag_s {
            Some(lag) => format!("{} (as of {lag} s before)", case.name),
            None => case.name.clone(),
        };
        out.push_str(&format!(
            "| {name} | {} | {} | {ratio} | {} | {} | {} ({} probes) | {:.1} MiB | {goal} | {verdict} |\n",
            dist(&m.seq_ours),
            dist(&m.seq_direct),
            dist(&m.c4_ours),
            dist(&m.c4_direct),
            thousands(m.read_rows),
            thousands(m.probe_rows),
            m.peak_memory as f64 / 1048576.0,
        ));
    }
    out
}

fn scale_table(cases: &[Case], base: &[Measured], doubled: &[Measured], x1: f64, x2: f64) -> String {
    let mut out = String::from(
        "| case | rows read at N | at 2N background | growth | p50 ms at N | at 2N | rows at 100 M (projected) | at 1 B | p50 at 100 M / 1 B (projected) | bounded by its own rows |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for ((case, a), b) in cases.iter().zip(base).zip(doubled) {
        let growth = b.read_rows as f64 / a.read_rows.max(1) as f64;
        let (pa, pb) = (median(&a.seq_ours).unwrap_or(0.0), median(&b.seq_ours).unwrap_or(0.0));
        let rows = |x| project(x1, a.read_rows as f64, x2, b.read_rows as f64, x) as u64;
        let p = |x| project(x1, pa, x2, pb, x);
        let bounded = if case.fixed {
            if growth <= 1.10 { format!("yes (×{growth:.2})") } else { format!("NO (×{growth:.2})") }
        } else {
            "n/a (reads every video)".into()
        };
        out.push_str(&format!(
            "| {} | {} | {} | ×{growth:.2} | {pa:.0} | {pb:.0} | {} | {} | {:.0} / {:.0} | {bounded} |\n",
            case.name,
            thousands(a.read_rows),
            thousands(b.read_rows),
            thousands(rows(1e8)),
            thousands(rows(1e9)),
            p(1e8),
            p(1e9),
        ));
    }
    out
}

// ------------------------------------------------------------------- run ---

#[derive(Deserialize)]
struct Counted {
    id: String,
    #[serde(deserialize_with = "de_u64")]
    c: u64,
}

/// The ids at the middle and at the 5th percentile (the tail) of `rows`
/// sorted by count, least first.
fn pick(rows: &[Counted]) -> Option<(String, String)> {
    let median = rows.get(rows.len() / 2)?;
    let tail = rows.get(rows.len() / 20)?;
    Some((median.id.clone(), tail.id.clone()))
}

pub async fn run(layout: &Layout, args: QueriesArgs) -> Result<ExitCode> {
    let server = Ch::new("default")?;
    server.run("SELECT 1").await.context("ClickHouse does not answer; start the stack with `cargo xtask up`")?;
    let mut services = vec!["query-api", "aggregator-cron"];
    if !args.direct_ingest {
        services.extend(["ingest-gateway", "stream-processor"]);
    }
    // The commit the binaries are built from, read before the build (the
    // tree may change during a run of half an hour).
    let commit = machine::commit();
    cargo_build(layout, Profile::Release, &services).await?;

    let now = Utc::now();
    let end = now.timestamp() as u64 - 60;
    server.run(&format!("DROP DATABASE IF EXISTS {DATABASE}")).await?;
    let clickhouse = service_kit::ClickHouseConfig {
        url: stack::CLICKHOUSE_URL.to_string(),
        database: DATABASE.to_string(),
        ..Default::default()
    };
    service_kit::migrate::apply_clickhouse(&clickhouse).await.context("migrating the fixture database")?;
    // A PostgreSQL database of its own on the stack's server (same name as the ClickHouse one).
    let admin = service_kit::PostgresConfig { url: stack::DATABASE_URL.to_string(), ..Default::default() };
    postgres::drop_database(&admin, DATABASE).await.context("PostgreSQL does not answer")?;
    let postgres = postgres::create_database(&admin, DATABASE).await.context("a PostgreSQL database for the bench")?;
    service_kit::migrate::apply_postgres(&postgres).await.context("migrating the bench's PostgreSQL database")?;
    let ch = Ch::new(DATABASE)?;
    let outcome = match crate::keys::create_bench_keys(&postgres, "bench-queries").await {
        Ok(keys) => measure_all(layout, &args, &ch, &postgres.url, &keys, now, end, &commit).await,
        Err(err) => Err(err),
    };
    if !args.keep {
        let _ = server.run(&format!("DROP DATABASE IF EXISTS {DATABASE}")).await;
    }
    let _ = postgres::drop_database(&admin, DATABASE).await;
    let markdown = outcome?;
    if !args.no_write {
        let path = layout.root.join("BENCHMARKS.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, replace_block(&doc, BLOCK, HEADING, &markdown))?;
        println!("figures written to BENCHMARKS.md");
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
async fn measure_all(
    layout: &Layout,
    args: &QueriesArgs,
    ch: &Ch,
    postgres_url: &str,
    keys: &crate::keys::Keys,
    now: DateTime<Utc>,
    end: u64,
    commit: &str,
) -> Result<String> {
    let mut env = stack::service_env(layout);
    env.retain(|(key, _)| !matches!(key.as_str(), "CLICKHOUSE_DATABASE" | "DATABASE_URL" | "LOG_LEVEL"));
    env.extend([
        ("CLICKHOUSE_DATABASE".to_string(), DATABASE.to_string()),
        ("DATABASE_URL".to_string(), postgres_url.to_string()),
        ("LOG_LEVEL".to_string(), "warn".to_string()),
    ]);
    env.extend(crate::keys::unlimited_env());
    insert_traffic(ch, BASE, args.events, end).await?;
    aggregate(layout, &env, now, 8).await?;
    let hour_start = now.timestamp() as u64 / 3600 * 3600;
    let warm = if args.no_warm_hour { 0 } else { insert_warm(ch, args.ingest_rate, hour_start, end).await? };

    let videos: Vec<Counted> = ch
        .rows("SELECT video_id AS id, count() AS c FROM events WHERE video_id LIKE 'bv-%' GROUP BY id ORDER BY c, id")
        .await?;
    let users: Vec<Counted> = ch
        .rows("SELECT assumeNotNull(user_id) AS id, count() AS c FROM events WHERE user_id LIKE 'bu-%' GROUP BY id ORDER BY c, id")
        .await?;
    let hot = videos.last().context("the fixture has no videos")?.id.clone();
    let events_of = |id: &str| videos.iter().find(|v| v.id == id).map_or(0, |v| v.c);
    let (median_video, tail) = pick(&videos).context("the fixture has no videos")?;
    let (user, _) = pick(&users).context("the fixture has no users")?;
    let mut cases = cases(now.date_naive(), &hot, &median_video, &tail, &user);
    if !args.cases.is_empty() {
        cases.retain(|case| args.cases.iter().any(|wanted| case.name.contains(wanted.as_str())));
        anyhow::ensure!(!cases.is_empty(), "no case matches --cases {}", args.cases.join(","));
    }

    // The aggregator as a service, as deployed: its facts passes every 5 s
    // and its scheduler (the windows aggregated above are up to date; it
    // rolls the current hour up for custom queries every 5 minutes, and
    // runs the windows that fall due while measuring).
    let mut aggregator_env = env.clone();
    aggregator_env.extend([
        ("AGGREGATOR_CRON__AGGREGATION__ENABLED".to_string(), "true".to_string()),
        ("AGGREGATOR_CRON__RETENTION__ENABLED".to_string(), "false".to_string()),
        ("AGGREGATOR_CRON__FACTS__ENABLED".to_string(), "true".to_string()),
    ]);
    let (_aggregator, aggregator_port) = start_service(
        layout,
        "aggregator-cron",
        Profile::Release,
        &aggregator_env,
        "bench-queries-aggregator-service",
        "facts passes",
    )
    .await?;
    let step =
        Step::start("facts passes: the first (every view of the lateness horizon), then one covering the fixture");
    let full_pass = wait_for_passes(ch).await;
    match &full_pass {
        Ok(()) => step.ok("done"),
        Err(err) => step.fail(format!("{err:#}")),
    }
    full_pass?;

    let mut api_env = env.clone();
    api_env.extend([
        ("QUERY_API__CACHE__ENABLED".to_string(), "false".to_string()),
        ("QUERY_API__CLICKHOUSE__SETTINGS__LOG_QUERIES".to_string(), "1".to_string()),
        // Concurrency 4 from one key measures the custom query, not the
        // per-key limit of concurrent custom queries (2 by default: 429).
        ("QUERY_API__LIMITS__CUSTOM_CONCURRENT_PER_KEY".to_string(), "4".to_string()),
    ]);
    let (_api, port) =
        start_service(layout, "query-api", Profile::Release, &api_env, "bench-queries-query-api", "bench queries")
            .await?;
    api_env.push(("QUERY_API__FRESHNESS__TOP_FROM_PASS_MIN_VIEWS".to_string(), NEVER_FROM_PASS.to_string()));
    api_env.push(("QUERY_API__FRESHNESS__VIDEO_FROM_PASS_MIN_VIEWS".to_string(), NEVER_FROM_PASS.to_string()));
    let (_api_exact, exact_port) = start_service(
        layout,
        "query-api",
        Profile::Release,
        &api_env,
        "bench-queries-query-api-exact",
        "bench queries, exact top videos",
    )
    .await?;
    api_env.push(("QUERY_API__FRESHNESS__STORED_FACTS".to_string(), "off".to_string()));
    api_env.push(("QUERY_API__FRESHNESS__CUSTOM_ROLLUP".to_string(), "false".to_string()));
    let (_api_rebuild, rebuild_port) = start_service(
        layout,
        "query-api",
        Profile::Release,
        &api_env,
        "bench-queries-query-api-rebuild",
        "bench queries, no stored facts",
    )
    .await?;
    let mut bench = Bench {
        http: reqwest::Client::builder()
            .default_headers(crate::keys::bearer_headers(&keys.read)?)
            .timeout(Duration::from_secs(120))
            .build()?,
        ch: ch.clone(),
        api: format!("http://127.0.0.1:{port}"),
        api_exact: format!("http://127.0.0.1:{exact_port}"),
        api_rebuild: format!("http://127.0.0.1:{rebuild_port}"),
        seen: HashSet::new(),
    };

    let write_path = match args.direct_ingest {
        true => None,
        false => Some(live::WritePath::start(layout, &env, &keys.ingest, &now.timestamp().to_string()).await?),
    };
    let live_traffic = |traffic: Traffic, stop: Arc<AtomicBool>, inserted: Arc<AtomicU64>| match &write_path {
        Some(path) => path.spawn(traffic, args.ingest_rate, stop, inserted),
        None => spawn_ingest(ch.clone(), traffic, args.ingest_rate, stop, inserted),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let inserted = Arc::new(AtomicU64::new(0));
    let ingest = live_traffic(LIVE, stop.clone(), inserted.clone());
    let started = Instant::now();
    let mut base = Vec::new();
    let mut failure = None;
    for case in &cases {
        match bench.run_case(case, args.requests, true).await {
            Ok(m) => base.push(m),
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    let live = inserted.load(Relaxed);
    if let Some(err) = failure {
        stop.store(true, Relaxed);
        let _ = ingest.await;
        if let Some(path) = &write_path {
            path.delete_topics().await;
        }
        return Err(err);
    }
    let mut failed_inserts = 0;
    let events_n = ch.number("SELECT count() FROM events").await? as f64;

    let mut scale = None;
    if !args.no_scale {
        stop.store(true, Relaxed);
        failed_inserts += ingest.await.unwrap_or(0);
        insert_traffic(ch, OTHER, args.events, end).await?;
        aggregate(layout, &env, now, 8).await?;
        let stop2 = Arc::new(AtomicBool::new(false));
        let ingest2 = live_traffic(LIVE_OTHER, stop2.clone(), inserted.clone());
        let mut doubled = Vec::new();
        for case in &cases {
            doubled.push(bench.run_case(case, args.requests / 2, false).await?);
        }
        stop2.store(true, Relaxed);
        failed_inserts += ingest2.await.unwrap_or(0);
        let events_2n = ch.number("SELECT count() FROM events").await? as f64;
        scale = Some(scale_table(&cases, &base, &doubled, events_n, events_2n));
    } else {
        stop.store(true, Relaxed);
        failed_inserts += ingest.await.unwrap_or(0);
    }
    if let Some(path) = &write_path {
        path.delete_topics().await;
    }
    if failed_inserts > 0 {
        println!(
            "note: {failed_inserts} seconds of live traffic ({} events each) were not all stored",
            args.ingest_rate
        );
    }
    let ingest_path = match write_path {
        Some(_) => "posted to a release ingest-gateway (batches of 500) and stored by a release stream-processor",
        None => "inserted straight into `events`",
    };

    let passes = facts_passes(aggregator_port).await.unwrap_or_else(|err| format!("facts passes: unknown ({err:#})"));
    let table = table(&cases, &base);
    println!("\n{table}\n{passes}");
    if let Some(scale) = &scale {
        println!("{scale}");
    }
    let met = cases.iter().zip(&base).filter(|(c, m)| verdict(c, m).0).count();
    println!("{met} of {} cases met their goals", cases.len());

    let mut md = format!(
        "Command: `cargo xtask {}` · {} UTC · commit {} · {} ({} cores, {:.0} GiB) · {} · release query-api, cache off\n\n\
         Fixture: {} events over 7 days (sessions of 10 events, {VIDEOS} videos with `u³` popularity, {USERS} users), \
         closed windows aggregated; {} live events/s {ingest_path} while measuring ({} in {:.0} s; {failed_inserts} seconds not \
         all accepted). \
         Cases: hot `{hot}` ({} events), median `{median_video}` ({}), tail `{tail}` ({}) video, median user `{user}`. \
         `direct` = the statements the request ran (from `system.query_log`) sent straight to ClickHouse over HTTP with the settings query-api sent (its limits, spilling), \
         probes concurrently then the main statements; each case alternates ours and direct, {} requests each, \
         sequentially and at concurrency 4 (`limits.custom_concurrent_per_key` raised to 4 for it). Rows read and peak memory: the request's statements in `system.query_log`. \
         The current hour was first filled with {} events of live traffic since it began ({} minutes in), as if \
         the ingest rate had been arriving all along. The release aggregator-cron runs throughout as deployed: its facts \
         passes (every 5 s) and its scheduler (the current hour's custom-query rollup every 5 minutes). Top videos answer with the defaults: the open hours of a platform this busy from the newest facts \
         pass's per-video totals, as of that pass (`freshness.as_of`, 10–20 s behind); so does a video with at least \
         `freshness.video_from_pass_min_views` (5,000) views from the lateness horizon on, from the pass's hour rows. The `exact` cases ask a second \
         query-api that answers exactly at once (`freshness.top_from_pass_min_views` and `video_from_pass_min_views` out of reach: stored facts plus \
         a rebuild of the views touched since the pass), `exact, no stored facts` and `video hot 1d, no stored facts` a third \
         that rebuilds every view of the open windows (`freshness.stored_facts = \"off\"` too).\n\n{table}\n{passes}\n",
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        now.format("%Y-%m-%d %H:%M"),
        commit,
        machine::cpu_model(),
        machine::cores(),
        machine::ram_gib(),
        machine::rustc(),
        thousands(events_n as u64),
        args.ingest_rate,
        thousands(live),
        ingest_secs,
        thousands(events_of(&hot)),
        thousands(events_of(&median_video)),
        thousands(events_of(&tail)),
        args.requests,
        thousands(warm),
        (now.timestamp() as u64 - hour_start) / 60,
    );
    if let Some(scale) = scale {
        md.push_str(&format!(
            "\nScale: another {} events of other videos and users (`ov-`, `ou-`) over the same 7 days, aggregated, \
             then the cases again sequentially ({} requests). Projection: the straight line through the two sizes.\n\n{scale}",
            thousands(args.events),
            args.requests / 2
        ));
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_run_first_and_the_metric_after() {
        let plan = Plan::of(&[
            "SELECT job, window, max(version) FROM aggregation_windows".to_string(),
            format!("{FRESHNESS_PREFIX}, toUInt32(max(tupleElement(p, 2))) AS last_inserted FROM (SELECT 1)"),
            "SELECT video_id, max(inserted_at) AS last_inserted FROM events".to_string(),
            "SELECT toUInt32(intDiv(toUInt32(hour), 3600)) AS window FROM event_hour_inserts".to_string(),
        ]);
        assert_eq!(plan.probes.len(), 3);
        assert_eq!(plan.main, ["SELECT video_id, max(inserted_at) AS last_inserted FROM events"]);
    }

    #[test]
    fn direct_runs_carry_the_settings_query_api_sent() {
        let logged = |query: &str, names: &[&str], values: &[&str]| Logged {
            query_id: query.into(),
            query: query.into(),
            read_rows: 0,
            memory_usage: 0,
            setting_names: names.iter().map(|n| n.to_string()).collect(),
            setting_values: values.iter().map(|v| v.to_string()).collect(),
        };
        let plan = Plan::of_logged(&[
            logged("SELECT 2", &["log_queries", "max_memory_usage"], &["1", "1024"]),
            logged("SELECT 3", &[], &[]),
        ]);
        assert_eq!(plan.settings["SELECT 2"], [("max_memory_usage".to_string(), "1024".to_string())]);
        assert!(plan.settings["SELECT 3"].is_empty());
        assert_eq!(plan.main, ["SELECT 2", "SELECT 3"]);
    }

    #[test]
    fn an_answer_as_of_a_pass_reports_its_lag() {
        let asked = chrono::DateTime::parse_from_rfc3339("2026-12-06T10:00:15Z").unwrap().with_timezone(&chrono::Utc);
        let body = r#"{"videos":[],"freshness":{"aggregated_windows":0,"raw_windows":0,"pass_windows":24,"as_of":"2026-12-06T10:00:02Z"}}"#;
        assert_eq!(as_of_lag(body, asked), Some(13));
        assert_eq!(as_of_lag(r#"{"freshness":{"aggregated_windows":1,"raw_windows":0}}"#, asked), None);
    }

    #[test]
    fn the_verdict_needs_the_ratio_and_the_p99_goal() {
        let case = Case {
            name: "v".into(),
            goal_ms: Some(100.0),
            fixed: true,
            api: ApiMode::Default,
            path: "/".into(),
            body: None,
        };
        let m = |ours: f64, direct: f64| Measured {
            seq_ours: vec![ours; 5],
            seq_direct: vec![direct; 5],
            ..Default::default()
        };
        assert!(verdict(&case, &m(20.0, 15.0)).0);
        // 1.2 × 10 + 5 = 17 < 20.
        assert!(!verdict(&case, &m(20.0, 10.0)).0);
        assert!(!verdict(&case, &m(150.0, 140.0)).0);
        let mut errors = m(20.0, 15.0);
        errors.non_200.insert(429, 2);
        assert_eq!(verdict(&case, &errors), (false, "non-200 answers: 2 × 429".to_string()));
    }

    #[test]
    fn projection_is_the_line_through_two_sizes() {
        assert!((project(1e7, 100.0, 2e7, 200.0, 1e8) - 1000.0).abs() < 1e-6);
        assert!((project(1e7, 50.0, 2e7, 50.0, 1e9) - 50.0).abs() < 1e-6);
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }

    #[test]
    fn median_and_tail_are_picked_by_count() {
        let rows: Vec<Counted> = (1..=100).map(|i| Counted { id: format!("v{i}"), c: i }).collect();
        assert_eq!(pick(&rows), Some(("v51".to_string(), "v6".to_string())));
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn generated_sessions_fit_the_span() {
        // The third chunk of a 10 M fixture: its sessions are placed from
        // session 0, so they land in the span's third tenth, not its first.
        let sql = insert_sql(BASE, 2_000_000, 1_000_000, 1_000, 600_000, 1_000_000, 0);
        assert!(sql.contains("LIMIT 1000000"), "{sql}");
        assert!(sql.contains("number + 2000000"), "{sql}");
        assert!(sql.contains("intDiv((s - 0) * 600000, 1000000)"), "{sql}");
        assert!(!sql.contains('?'));
        // A second of live traffic: its sessions start at its own first one.
        assert!(live_sql(LIVE, 2_000, 2_000, 100_000).contains("(s - 200)"));
    }
}
