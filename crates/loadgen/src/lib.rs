//! Realistic live playback traffic for the ingest-gateway.
//!
//! * [`Simulator`]: the event stream. Viewer sessions on the wall clock
//!   (`video_start`, heartbeats every 10 s of playhead, stalls, seeks,
//!   pauses, quality switches, errors, abandons, completions), as many as
//!   the target rate needs. Pure and deterministic: the same [`SimConfig`]
//!   polled at the same times gives the same events.
//! * [`run`] / [`start`]: the generator. The simulator feeds batches through
//!   a bounded channel to concurrent senders that `POST /api/events/batch`,
//!   retry 503s and connection errors with the same event ids, and count what
//!   the gateway accepted and rejected; [`Summary`] reports the run.
//!   [`Options::api_key`] is sent as `X-API-Key` (the gateway needs a key
//!   with the `ingest` scope; one it refuses halts the run), and
//!   [`Options::admin_token`] as `Authorization: Bearer` with the catalog.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use std::time::Duration;
//! let options = loadgen::Options {
//!     sim: loadgen::SimConfig { rate: 500.0, ..Default::default() },
//!     duration: Some(Duration::from_secs(30)),
//!     ..Default::default()
//! };
//! let summary = loadgen::run(options, tokio_util::sync::CancellationToken::new()).await?;
//! assert!(summary.is_clean(), "{summary:?}");
//! # Ok(()) }
//! ```

mod catalog;
mod event;
mod journal;
use seeded_rng as rng;
mod sender;
mod session;
mod sim;
mod stats;

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use tokio::{sync::mpsc, task::JoinHandle};
pub use tokio_util::sync::CancellationToken;

pub use catalog::{Catalog, Video, Zipf};
pub use event::{GeneratedEvent, Props, SessionId, UserId, VideoId};
pub use journal::Journal;
pub use rng::Rng;
pub use sender::{Batch, BatchBuilder, MAX_BODY_BYTES, Outcome, backoff, classify};
pub use session::{HEARTBEAT_SECONDS, Session};
pub use sim::{PRIOR_EVENTS_PER_SESSION_SECOND, Poll, RateController, SimConfig, SimCounters, Simulator};
pub use stats::{LatencyHistogram, MAX_REJECTION_REASONS, Snapshot, Stats, Summary};

/// Default ingest-gateway address.
pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:3001";
/// Default query-api address (for the catalog).
pub const DEFAULT_QUERY_API: &str = "http://127.0.0.1:3000";
/// In the rejection reason of a batch refused for its key (401 or 403),
/// after which the run stops.
pub const KEY_REFUSED: &str = "the gateway refuses the key";

/// A whole run: the audience, how long, where to and how to send.
#[derive(Debug, Clone)]
pub struct Options {
    pub sim: SimConfig,
    /// `None`: until stopped.
    pub duration: Option<Duration>,
    /// Base URL of the ingest-gateway.
    pub gateway: String,
    /// Most events per request.
    pub batch_max: usize,
    /// Longest an event waits for its batch to fill.
    pub batch_interval: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Base URL of the query-api: when set, every video of the catalog is
    /// stored there (`PUT /api/videos/{id}`) before the traffic begins.
    pub catalog: Option<String>,
    /// API key with the `ingest` scope, sent as `X-API-Key` with every batch
    /// (`INGEST_API_KEY` of `.stack/credentials.env` on the local stack).
    pub api_key: Option<String>,
    /// Token with the `admin` scope for the catalog's `PUT /api/videos/{id}`,
    /// sent as `Authorization: Bearer` (`ADMIN_TOKEN`).
    pub admin_token: Option<String>,
    /// Deadline of one HTTP request.
    pub request_timeout: Duration,
    /// After the stop, how long batches in flight may take to be answered
    /// before they are given up.
    pub drain_timeout: Duration,
    /// Sent before every video id (`drill-video_0001`), so that a run's
    /// videos are its own; the catalog, when stored, gets the same ids.
    pub video_prefix: String,
    /// Records every event the gateway accepted (and those left undecided).
    pub journal: Option<Arc<Journal>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sim: SimConfig::default(),
            duration: Some(Duration::from_secs(60)),
            gateway: DEFAULT_GATEWAY.to_string(),
            batch_max: 500,
            batch_interval: Duration::from_millis(100),
            concurrency: 4,
            catalog: None,
            api_key: None,
            admin_token: None,
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(15),
            video_prefix: String::new(),
            journal: None,
        }
    }
}

/// The current time in epoch milliseconds.
pub fn epoch_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Parses `60s`, `5m`, `1h`, `500ms`, `90` (seconds) or `forever` (`None`).
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if matches!(text, "forever" | "inf" | "infinite") {
        return Ok(None);
    }
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 60s, 5m or forever"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" | "mins" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?}; use ms, s, m or h")),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(Some(Duration::from_secs_f64(seconds)))
}

/// A generator running in the background; see [`start`].
#[derive(Debug)]
pub struct LoadRun {
    stats: Arc<Stats>,
    stop: CancellationToken,
    abort: CancellationToken,
    task: JoinHandle<anyhow::Result<Summary>>,
}

impl LoadRun {
    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        self.stats.snapshot()
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Stops generating; batches in flight are still delivered (up to the
    /// drain timeout).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Stops at once: batches in flight are given up (counted as failed).
    pub fn abort(&self) {
        self.stop.cancel();
        self.abort.cancel();
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the end of the run (its duration, or a stop).
    pub async fn wait(self) -> anyhow::Result<Summary> {
        self.task.await.context("the load generator task failed")?
    }
}

/// Starts a run on the current Tokio runtime.
pub fn start(options: Options) -> LoadRun {
    let stats = Arc::new(Stats::default());
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let task = tokio::spawn(generate(options, stats.clone(), stop.clone(), abort.clone()));
    LoadRun { stats, stop, abort, task }
}

/// Runs until the duration ends or `stop` is cancelled, then delivers what is
/// in flight and reports.
pub async fn run(options: Options, stop: CancellationToken) -> anyhow::Result<Summary> {
    let run = start(options);
    let outer = stop.clone();
    tokio::select! {
        () = outer.cancelled() => run.stop(),
        () = wait_finished(&run) => {}
    }
    run.wait().await
}

async fn wait_finished(run: &LoadRun) {
    while !run.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn validate(options: &Options) -> anyhow::Result<()> {
    if !(options.sim.rate.is_finite() && options.sim.rate > 0.0) {
        bail!("the rate must be a positive number of events per second");
    }
    if options.batch_max == 0 || options.concurrency == 0 || options.sim.videos == 0 || options.sim.users == 0 {
        bail!("batch size, concurrency, videos and users must be at least 1");
    }
    if !(0.0..=1.0).contains(&options.sim.anonymous_share) {
        bail!("the anonymous share must be between 0 and 1");
    }
    Ok(())
}

async fn generate(
    options: Options,
    stats: Arc<Stats>,
    stop: CancellationToken,
    abort: CancellationToken,
) -> anyhow::Result<Summary> {
    validate(&options)?;
    let client = reqwest::Client::builder()
        .timeout(options.request_timeout)
        .pool_max_idle_per_host(options.concurrency)
        .build()
        .context("building the HTTP client")?;

    let mut catalog = Catalog::new(options.sim.seed, options.sim.videos, options.sim.users);
    for video in &mut catalog.videos {
        video.video_id.insert_str(0, &options.video_prefix);
    }
    if let Some(query_api) = &options.catalog {
        put_catalog(&client, query_api, options.admin_token.as_deref(), &catalog, &stats, &stop).await?;
    }

    let start_ms = epoch_ms();
    let started = Instant::now();
    stats.mark_traffic_start();
    let deadline = options.duration.map(|d| tokio::time::Instant::now() + d);
    let mut sim = Simulator::new(options.sim.clone(), start_ms);
    let (tx, rx) = mpsc::channel::<Batch>(options.concurrency * 2);
    let refused = CancellationToken::new();
    let target = sender::Target {
        client,
        url: format!("{}/api/events/batch", options.gateway.trim_end_matches('/')),
        api_key: options.api_key.clone(),
        refused: refused.clone(),
        journal: options.journal.clone(),
    };
    let dispatcher = tokio::spawn(sender::dispatch(rx, target, options.concurrency, stats.clone(), abort.clone()));

    // The duration, a stop, or the gateway refusing the key ends the traffic.
    let ended = async {
        match deadline {
            Some(deadline) => tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = stop.cancelled() => {}
                () = refused.cancelled() => {}
            },
            None => tokio::select! {
                () = stop.cancelled() => {}
                () = refused.cancelled() => {}
            },
        }
    };
    tokio::pin!(ended);

    let tick = Duration::from_millis(5).min(options.batch_interval);
    let mut builder = BatchBuilder::new(options.batch_max).with_video_prefix(&options.video_prefix);
    let mut events = Vec::new();
    let mut leftover: Option<Batch> = None;
    loop {
        let poll = sim.poll(epoch_ms(), builder.room(), &mut events);
        for event in events.drain(..) {
            builder.push(&event);
        }
        stats.generated.fetch_add(poll.events as u64, Relaxed);
        stats.sessions_started.fetch_add(poll.started as u64, Relaxed);
        stats.active_sessions.store(sim.active_sessions() as u64, Relaxed);

        if builder.is_full() || builder.age() >= options.batch_interval {
            if let Some(batch) = builder.take() {
                // Waits while every sender is busy and the channel is full:
                // the simulator falls behind the clock instead of buffering.
                tokio::select! {
                    permit = tx.reserve() => match permit {
                        Ok(permit) => permit.send(batch),
                        Err(_) => bail!("the senders stopped unexpectedly"),
                    },
                    () = &mut ended => {
                        leftover = Some(batch);
                        break;
                    }
                }
            }
        }
        if poll.behind && !builder.is_full() {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = &mut ended => break,
        }
    }
    let traffic = started.elapsed();

    // Deliver what was generated, within the drain timeout.
    let mut unsent = 0u64;
    let drain_deadline = tokio::time::Instant::now() + options.drain_timeout;
    for batch in leftover.into_iter().chain(builder.take()) {
        let len = batch.len() as u64;
        let sent = tokio::select! {
            sent = tx.send(batch) => sent.is_ok(),
            () = tokio::time::sleep_until(drain_deadline) => false,
            () = abort.cancelled() => false,
        };
        if !sent {
            unsent += len;
        }
    }
    drop(tx);
    let mut dispatcher = dispatcher;
    tokio::select! {
        _ = &mut dispatcher => {}
        () = tokio::time::sleep_until(drain_deadline) => {
            abort.cancel();
            let _ = dispatcher.await;
        }
        () = abort.cancelled() => { let _ = dispatcher.await; }
    }

    let snapshot = stats.snapshot();
    let latency = stats.latency();
    let counters = sim.counters();
    Ok(Summary {
        seed: options.sim.seed,
        salt: options.sim.salt,
        target_rate: options.sim.rate,
        duration_seconds: traffic.as_secs_f64(),
        generated: snapshot.generated,
        sent: snapshot.sent,
        accepted: snapshot.accepted,
        rejected: snapshot.rejected,
        failed: snapshot.failed,
        unsent,
        retries: snapshot.retries,
        requests: snapshot.requests,
        achieved_rate: snapshot.accepted as f64 / traffic.as_secs_f64().max(1e-3),
        sessions_started: snapshot.sessions_started,
        sessions_active_at_end: snapshot.active_sessions,
        catalog_videos: stats.catalog_videos.load(Relaxed),
        latency_p50_ms: stats::millis(latency.quantile(0.5)),
        latency_p99_ms: stats::millis(latency.quantile(0.99)),
        latency_max_ms: stats::millis(latency.max()),
        max_lag_ms: stats.max_lag_ms.load(Relaxed),
        events_by_type: events_model::EventType::ALL
            .iter()
            .zip(counters.by_type)
            .map(|(t, n)| (t.as_str().to_string(), n))
            .collect(),
        rejection_reasons: snapshot.rejection_reasons,
    })
}

/// Stores every video of `catalog` in the query API (`PUT /api/videos/{id}`
/// with title, duration and category, `admin_token` as `Authorization:
/// Bearer`), eight at a time, retrying server errors and connection failures
/// a few times.
pub async fn put_catalog(
    client: &reqwest::Client,
    query_api: &str,
    admin_token: Option<&str>,
    catalog: &Catalog,
    stats: &Stats,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let base = query_api.trim_end_matches('/').to_string();
    let slots = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for video in catalog.videos.iter().cloned() {
        if stop.is_cancelled() {
            break;
        }
        let slot = slots.clone().acquire_owned().await.context("catalog upload")?;
        let (client, url) = (client.clone(), format!("{base}/api/videos/{}", video.video_id));
        let token = admin_token.map(str::to_owned);
        tasks.spawn(async move {
            let _slot = slot;
            put_video(&client, &url, token.as_deref(), &video).await
        });
        while let Some(done) = tasks.try_join_next() {
            done.context("catalog upload task")??;
            stats.catalog_videos.fetch_add(1, Relaxed);
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.context("catalog upload task")??;
        stats.catalog_videos.fetch_add(1, Relaxed);
    }
    Ok(())
}

async fn put_video(client: &reqwest::Client, url: &str, token: Option<&str>, video: &Video) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "title": video.title,
        "duration_seconds": video.duration_seconds,
        "category": video.category,
    });
    let mut last_error = String::new();
    // Failures (5xx, connection errors) are tried 5 times; a 429 (the
    // token's request rate) waits its Retry-After without counting, up to a
    // minute's worth.
    let (mut failures, mut limited) = (0u32, 0u32);
    while failures < 5 && limited < 60 {
        let mut request = client.put(url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let retry_after = match request.send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                last_error = "answered 429 (rate limited)".to_string();
                let after = response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok());
                Some(Duration::from_secs(after.and_then(|v| v.trim().parse().ok()).unwrap_or(1)))
            }
            Ok(response) if matches!(response.status().as_u16(), 401 | 403) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                bail!("PUT {url} answered {status}: {text} (the catalog needs a token with the admin scope)");
            }
            Ok(response) if response.status().is_client_error() => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                bail!("PUT {url} answered {status}: {text}");
            }
            Ok(response) => {
                failures += 1;
                last_error = format!("answered {}", response.status());
                None
            }
            Err(err) => {
                failures += 1;
                last_error = err.to_string();
                None
            }
        };
        let attempt = failures.max(1);
        tokio::time::sleep(backoff(attempt, retry_after, u64::from(attempt + limited))).await;
    }
    bail!("PUT {url} failed {} times (last: {last_error}); is the query-api running?", failures + limited)
}

#[cfg(test)]
mod tests;
