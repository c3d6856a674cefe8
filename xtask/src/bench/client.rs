//! The measuring side of `bench realtime`: WebSocket clients of the hub that
//! stamp every message on arrival, probe events posted one by one, and bursts
//! of views whose effect on the pushed `active_streams` is timed.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::{
    sync::{broadcast, watch},
    task::{JoinHandle, JoinSet},
};
use tokio_tungstenite::tungstenite::Message;

use super::report::Change;

/// One `realtime_metrics` message as it arrived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsSample {
    pub at: Instant,
    pub active_streams: u64,
    pub concurrent_viewers: u64,
}

/// A WebSocket client of the hub, read by a task of its own.
pub struct HubClient {
    /// `analytics_event` arrivals by event id (filtered clients only).
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    /// `analytics_event` messages received.
    pub events: Arc<AtomicU64>,
    /// Events whose `sample_rate` was below 1 (should stay 0 on a filtered client).
    pub sampled: Arc<AtomicU64>,
    latest: watch::Receiver<Option<MetricsSample>>,
    metrics: broadcast::Sender<MetricsSample>,
    closed: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl HubClient {
    /// Connects to `url` (`ws://…/ws`) with `token` (a key with the `read`
    /// scope, as `Authorization: Bearer`); with `video_ids`, subscribes to
    /// them and waits for the hub's `subscribed`.
    pub async fn connect(url: &str, token: &str, video_ids: Option<&[String]>) -> Result<Self> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut request = url.into_client_request().with_context(|| format!("a WebSocket request to {url}"))?;
        let bearer = format!("Bearer {token}").parse().context("a key must be printable ASCII")?;
        request.headers_mut().insert("authorization", bearer);
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.map_err(|err| match err {
            tokio_tungstenite::tungstenite::Error::Http(response)
                if matches!(response.status().as_u16(), 401 | 403) =>
            {
                let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned();
                anyhow::anyhow!(
                    "the hub refused the token ({}: {body}); check QUERY_API_TOKEN or run `cargo xtask up`",
                    response.status()
                )
            }
            other => anyhow::Error::new(other).context(format!("connecting to {url}")),
        })?;
        if let Some(video_ids) = video_ids {
            let subscribe = json!({"type": "subscribe", "payload": {"video_ids": video_ids}});
            ws.send(Message::Text(subscribe.to_string().into())).await.context("sending subscribe")?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let frame = tokio::time::timeout_at(deadline, ws.next())
                    .await
                    .map_err(|_| anyhow::anyhow!("the hub did not confirm the subscription within 10 s"))?;
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        let message: Value = serde_json::from_str(text.as_str()).context("a JSON message")?;
                        match message["type"].as_str() {
                            Some("subscribed") => break,
                            Some("error") => bail!("the hub refused the subscription: {message}"),
                            _ => {}
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => bail!("websocket error before the subscription: {err}"),
                    None => bail!("the hub closed the connection before confirming the subscription"),
                }
            }
        }
        let arrivals = Arc::new(Mutex::new(HashMap::new()));
        let events = Arc::new(AtomicU64::new(0));
        let sampled = Arc::new(AtomicU64::new(0));
        let (latest_tx, latest) = watch::channel(None);
        let (metrics, _) = broadcast::channel(256);
        let closed = Arc::new(AtomicBool::new(false));
        let record_ids = video_ids.is_some();
        let task = tokio::spawn({
            let (arrivals, events, sampled, metrics, closed) =
                (arrivals.clone(), events.clone(), sampled.clone(), metrics.clone(), closed.clone());
            async move {
                // Reading also answers the hub's pings (tungstenite queues the pong).
                while let Some(Ok(frame)) = ws.next().await {
                    let at = Instant::now();
                    let Message::Text(text) = frame else { continue };
                    let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                    match message["type"].as_str() {
                        Some("analytics_event") => {
                            events.fetch_add(1, Relaxed);
                            if message["sample_rate"].as_f64().is_some_and(|r| r < 1.0) {
                                sampled.fetch_add(1, Relaxed);
                            }
                            if record_ids {
                                if let Some(id) = message["payload"]["event_id"].as_str() {
                                    lock(&arrivals).entry(id.to_string()).or_insert(at);
                                }
                            }
                        }
                        Some("realtime_metrics") => {
                            let payload = &message["payload"];
                            let sample = MetricsSample {
                                at,
                                active_streams: payload["active_streams"].as_u64().unwrap_or(0),
                                concurrent_viewers: payload["concurrent_viewers"].as_u64().unwrap_or(0),
                            };
                            let _ = latest_tx.send(Some(sample));
                            let _ = metrics.send(sample);
                        }
                        _ => {}
                    }
                }
                closed.store(true, Relaxed);
            }
        });
        Ok(Self { arrivals, events, sampled, latest, metrics, closed, task })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// When the event arrived, if it did.
    pub fn arrival(&self, event_id: &str) -> Option<Instant> {
        lock(&self.arrivals).get(event_id).copied()
    }

    /// The latest `realtime_metrics`, waiting (up to 5 s) for one younger than 2 s.
    pub async fn fresh_metrics(&self) -> Result<MetricsSample> {
        let mut latest = self.latest.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(sample) = *latest.borrow_and_update() {
                if sample.at.elapsed() < Duration::from_secs(2) {
                    return Ok(sample);
                }
            }
            if tokio::time::timeout_at(deadline, latest.changed()).await.is_err() || self.is_closed() {
                bail!("no realtime_metrics from the hub for 5 s");
            }
        }
    }

    pub fn subscribe_metrics(&self) -> broadcast::Receiver<MetricsSample> {
        self.metrics.subscribe()
    }
}

impl Drop for HubClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ------------------------------------------------------------ the probes ---

/// One probe event posted on its own.
#[derive(Debug, Clone)]
pub struct ProbeSend {
    pub event_id: String,
    pub sent: Instant,
    pub returned: Instant,
    pub accepted: bool,
}

/// Ids and names of one phase's probes.
#[derive(Debug, Clone)]
pub struct ProbeNames {
    /// `bench-<run>-<phase>`: every id of the phase starts with it.
    pub prefix: String,
}

impl ProbeNames {
    pub fn new(run: &str, phase: &str) -> Self {
        Self { prefix: format!("bench-{run}-{}", phase.replace(' ', "")) }
    }

    /// The video the feed probes are about (the client subscribes to it).
    pub fn feed_video(&self) -> String {
        format!("{}-feed", self.prefix)
    }
}

fn single_url(gateway: &str) -> String {
    format!("{gateway}/api/events")
}

fn batch_url(gateway: &str) -> String {
    format!("{gateway}/api/events/batch")
}

/// Posts one feed probe every `1 / rate` seconds until `until`: a
/// `video_complete` of one view of the feed video (a view that is over counts
/// in no realtime figure but `events_per_second`), each a single
/// `POST /api/events` with a fresh `event_id`.
pub async fn feed_probes(
    http: reqwest::Client,
    gateway: String,
    names: ProbeNames,
    rate: f64,
    until: Instant,
) -> Vec<ProbeSend> {
    let records = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = JoinSet::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let video = names.feed_video();
    let session = format!("{}-feed-session", names.prefix);
    let user = format!("{}-user", names.prefix);
    loop {
        ticker.tick().await;
        if Instant::now() >= until {
            break;
        }
        let event_id = uuid::Uuid::new_v4().to_string();
        let body = json!({
            "event_id": event_id,
            "event_type": "video_complete",
            "user_id": user,
            "session_id": session,
            "video_id": video,
            "timestamp": loadgen::epoch_ms(),
            "properties": {"position_seconds": 60, "duration_seconds": 60},
        })
        .to_string();
        let (http, url, records) = (http.clone(), single_url(&gateway), records.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let accepted = post(&http, &url, body).await.is_ok();
            let returned = Instant::now();
            lock(&records).push(ProbeSend { event_id, sent, returned, accepted });
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    std::mem::take(&mut *lock(&records))
}

/// POSTs a JSON body; `Ok` on 202 (the body read, so the exchange is over).
async fn post(http: &reqwest::Client, url: &str, body: String) -> Result<()> {
    let response = http.post(url).header("content-type", "application/json").body(body).send().await.context("POST")?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.as_u16() != 202 {
        bail!("POST {url} answered {status}: {text}");
    }
    Ok(())
}

/// Settings of the change probes.
#[derive(Debug, Clone, Copy)]
pub struct ChangeSettings {
    /// Views per burst.
    pub burst: usize,
    /// One cycle (open a burst, then end it) starts every this long.
    pub every: Duration,
    /// A burst not shown within this long counts as missed.
    pub deadline: Duration,
}

/// Until `until`, every `settings.every`: opens `burst` views of fresh videos
/// (one batch of `video_start`), times the first `realtime_metrics` whose
/// `active_streams` shows them (see [`shown_threshold`]), then ends them
/// (`video_complete`) and times the message that shows them gone. Each POST is sent at a random
/// point of the hub's one-second tick. Returns the samples and the misses.
pub async fn change_probes(
    http: reqwest::Client,
    gateway: String,
    client: Arc<HubClient>,
    names: ProbeNames,
    settings: ChangeSettings,
    until: Instant,
    seed: u64,
) -> (Vec<Change>, usize, Vec<String>) {
    let mut rng = loadgen::Rng::new(seed);
    let (mut changes, mut missed, mut problems) = (Vec::new(), 0, Vec::new());
    let mut cycle = 0usize;
    let mut next = Instant::now();
    while next < until {
        tokio::time::sleep_until(next.into()).await;
        next += settings.every;
        let prefix = format!("{}-c{cycle}", names.prefix);
        cycle += 1;
        let views: Vec<(String, String)> =
            (0..settings.burst).map(|i| (format!("{prefix}-s{i}"), format!("{prefix}-v{i}"))).collect();
        for opened in [true, false] {
            // A random phase of the tick: the hub pushes on the whole second.
            tokio::time::sleep(Duration::from_millis(rng.below(1000))).await;
            let event_type = if opened { "video_start" } else { "video_complete" };
            match change(&http, &gateway, &client, &views, event_type, opened, settings.deadline).await {
                Ok(ms) => changes.push(Change { opened, ms }),
                Err(err) => {
                    missed += 1;
                    problems.push(format!("{event_type} burst {prefix}: {err:#}"));
                    break; // the next cycle uses fresh views
                }
            }
        }
    }
    (changes, missed, problems)
}

async fn change(
    http: &reqwest::Client,
    gateway: &str,
    client: &HubClient,
    views: &[(String, String)],
    event_type: &str,
    opened: bool,
    deadline: Duration,
) -> Result<f64> {
    let before = client.fresh_metrics().await?.active_streams;
    let shown = shown_threshold(views.len());
    let wanted = |streams: u64| if opened { streams >= before + shown } else { streams + shown <= before };
    let mut updates = client.subscribe_metrics();
    let now = loadgen::epoch_ms();
    let events: Vec<Value> = views
        .iter()
        .map(|(session, video)| {
            let properties = if opened {
                json!({"bitrate_kbps": 2500, "startup_time_ms": 800, "quality": "720p"})
            } else {
                json!({"position_seconds": 30})
            };
            json!({
                "event_id": uuid::Uuid::new_v4().to_string(),
                "event_type": event_type,
                "session_id": session,
                "video_id": video,
                "timestamp": if opened { now } else { now + 1 },
                "properties": properties,
            })
        })
        .collect();
    let sent = Instant::now();
    post(http, &batch_url(gateway), Value::Array(events).to_string()).await?;
    let returned = Instant::now();
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, updates.recv()).await {
            Err(_) => bail!("not shown within {deadline:?} (active_streams was {before})"),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(broadcast::error::RecvError::Closed)) => bail!("the WebSocket closed"),
            Ok(Ok(sample)) if sample.at >= sent && wanted(sample.active_streams) => {
                return Ok(signed_ms(sample.at, returned));
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// How far `active_streams` must move for a burst of `burst` views to count
/// as shown: 90 % of it. The background's own drift is a few videos at most
/// (none at 5,000 events/s, where every video of the catalog is watched), and
/// the margin keeps a video of the background appearing or leaving meanwhile
/// from hiding the burst.
pub fn shown_threshold(burst: usize) -> u64 {
    (burst - burst / 10) as u64
}

/// `later − earlier` in milliseconds, negative when `later` came first.
pub fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(earlier.duration_since(later).as_secs_f64() * 1e3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_milliseconds() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(250);
        assert!((signed_ms(t1, t0) - 250.0).abs() < 1e-9);
        assert!((signed_ms(t0, t1) + 250.0).abs() < 1e-9);
    }

    #[test]
    fn probe_names_are_per_phase() {
        let names = ProbeNames::new("1a2b", "run 2");
        assert_eq!(names.prefix, "bench-1a2b-run2");
        assert_eq!(names.feed_video(), "bench-1a2b-run2-feed");
        assert_eq!(batch_url("http://127.0.0.1:3001"), "http://127.0.0.1:3001/api/events/batch");
        assert_eq!((shown_threshold(100), shown_threshold(20), shown_threshold(5)), (90, 18, 5));
    }
}
