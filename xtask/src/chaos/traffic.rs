//! A drill's traffic: live playback from `loadgen` (what `cargo xtask load`
//! sends) on videos of the drill's own (`<prefix>video_0001`, …), with a
//! journal of every event the gateway accepted; and the extra clients some
//! drills add (a marked batch, a hot session). Every client retries a 5xx,
//! a 429 or a transport error with the same body, as the ingest contract asks.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use loadgen::CancellationToken;
use loadgen::{Journal, LoadRun, Options, SimConfig, Summary};
use serde_json::{Value, json};
use uuid::Uuid;

/// What the clients of one drill sent and what the gateway said.
pub struct Traffic {
    run: Option<LoadRun>,
    summary: Option<Summary>,
    journal: Arc<Journal>,
    /// Events accepted outside `loadgen` (marked batch, hot session).
    extra: Arc<Mutex<Vec<Value>>>,
    pub video_prefix: String,
}

/// The load of a drill.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    pub rate: f64,
    pub videos: usize,
    pub seed: u64,
}

impl Traffic {
    /// Starts `loadgen` against `gateway` with `key`, every video id after `video_prefix`.
    pub fn start(gateway: &str, key: &str, video_prefix: &str, load: &LoadSettings) -> Self {
        let journal = Arc::new(Journal::new());
        let options = Options {
            sim: SimConfig {
                seed: load.seed,
                salt: loadgen::epoch_ms() as u64,
                rate: load.rate,
                videos: load.videos,
                users: 200,
                ..SimConfig::default()
            },
            duration: None,
            gateway: gateway.to_string(),
            batch_max: 200,
            batch_interval: Duration::from_millis(100),
            concurrency: 4,
            api_key: Some(key.to_string()),
            request_timeout: Duration::from_secs(10),
            // A batch still refused when the load stops keeps being retried this long.
            drain_timeout: Duration::from_secs(60),
            video_prefix: video_prefix.to_string(),
            journal: Some(journal.clone()),
            ..Options::default()
        };
        Self {
            run: Some(loadgen::start(options)),
            summary: None,
            journal,
            extra: Arc::default(),
            video_prefix: video_prefix.to_string(),
        }
    }

    /// Events accepted so far (load and extra clients).
    pub fn accepted_count(&self) -> usize {
        self.journal.accepted_count() + self.extra.lock().expect("extra lock").len()
    }

    /// Waits until the gateway accepted at least one event, for at most `deadline`.
    pub async fn wait_flowing(&self, deadline: Duration) -> Result<()> {
        let until = Instant::now() + deadline;
        while self.accepted_count() == 0 {
            if Instant::now() > until {
                let reason = self.run.as_ref().and_then(|r| r.snapshot().last_retry_reason).unwrap_or_default();
                bail!("the gateway accepted nothing within {deadline:?} ({reason})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Stops generating and waits until every batch is answered (or given up
    /// after the drain timeout). Idempotent.
    pub async fn stop(&mut self) -> Result<&Summary> {
        if let Some(run) = self.run.take() {
            run.stop();
            self.summary = Some(run.wait().await?);
        }
        self.summary.as_ref().context("the load was never started")
    }

    /// The journal of the load (append-only: a prefix is what was accepted up to a moment).
    pub fn journal(&self) -> Arc<Journal> {
        self.journal.clone()
    }

    /// Whether the load was stopped.
    pub fn is_stopped(&self) -> bool {
        self.run.is_none()
    }

    /// A handle for extra clients to record what they got accepted.
    pub fn extra(&self) -> Arc<Mutex<Vec<Value>>> {
        self.extra.clone()
    }

    /// Every accepted event, as JSON objects.
    pub fn accepted(&self) -> Result<Vec<Value>> {
        let mut events = parse_all(self.journal.accepted())?;
        events.extend(self.extra.lock().expect("extra lock").iter().cloned());
        Ok(events)
    }

    /// Events sent but never answered 202 (the load stopped while they were retried).
    pub fn unresolved(&self) -> Result<Vec<Value>> {
        parse_all(self.journal.unresolved())
    }
}

fn parse_all(events: Vec<Vec<u8>>) -> Result<Vec<Value>> {
    events.iter().map(|e| serde_json::from_slice(e).context("an event the generator sent")).collect()
}

/// POSTs `batch` until the gateway answers 202 (retrying 5xx, 429 and
/// transport errors with the same body), for at most `deadline`; returns
/// the accepted events (all of them: the batch is valid).
pub async fn post_until_accepted(
    http: &reqwest::Client,
    gateway: &str,
    key: &str,
    batch: &[Value],
    deadline: Duration,
) -> Result<Vec<Value>> {
    let url = format!("{gateway}/api/events/batch");
    let body = serde_json::to_vec(batch)?;
    let until = Instant::now() + deadline;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let sent = http
            .post(&url)
            .header("x-api-key", key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let last = match sent {
            Ok(answer) if answer.status().as_u16() == 202 => {
                let answer: Value = answer.json().await.unwrap_or(Value::Null);
                let rejected = answer["rejected"].as_array().map_or(0, Vec::len);
                if rejected > 0 {
                    bail!("the gateway rejected {rejected} events of a drill batch: {answer}");
                }
                return Ok(batch.to_vec());
            }
            Ok(answer) if answer.status().is_server_error() || answer.status().as_u16() == 429 => {
                format!("answered {}", answer.status())
            }
            Ok(answer) => {
                let status = answer.status();
                bail!("the gateway answered {status} to a drill batch: {}", answer.text().await.unwrap_or_default());
            }
            Err(err) => format!("{err}"),
        };
        if Instant::now() > until {
            bail!("a drill batch was not accepted within {deadline:?} (last: {last})");
        }
        tokio::time::sleep(loadgen::backoff(attempt, None, u64::from(attempt))).await;
    }
}

/// One view of `video_id` in `session_id` played live: a `video_start`, then
/// a `video_progress` per event with the playhead following the wall clock.
pub struct LiveView {
    pub session_id: String,
    pub video_id: String,
    started_ms: i64,
    sent: u64,
}

impl LiveView {
    pub fn new(session_id: String, video_id: String) -> Self {
        Self { session_id, video_id, started_ms: loadgen::epoch_ms(), sent: 0 }
    }

    /// The next event, stamped now; `player` names the client.
    pub fn next(&mut self, player: &str) -> Value {
        let now = loadgen::epoch_ms();
        let position = (now - self.started_ms).max(0) as f64 / 1000.0;
        let (event_type, properties) = if self.sent == 0 {
            ("video_start", json!({"position_seconds": 0.0, "duration_seconds": 3600.0, "player": player}))
        } else {
            ("video_progress", json!({"position_seconds": position, "quality": "720p", "player": player}))
        };
        self.sent += 1;
        json!({
            "event_id": Uuid::new_v4().to_string(),
            "event_type": event_type,
            "session_id": self.session_id,
            "video_id": self.video_id,
            "timestamp": now,
            "properties": properties,
            "metadata": {"source": "chaos"},
        })
    }
}

/// One session sending `rate` events per second (batches every 100 ms) until
/// `stop`; what the gateway accepted goes to `accepted`.
pub async fn flood(
    http: reqwest::Client,
    gateway: String,
    key: String,
    mut view: LiveView,
    rate: f64,
    accepted: Arc<Mutex<Vec<Value>>>,
    stop: CancellationToken,
) -> Result<u64> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut owed = 0.0;
    let mut sent = 0u64;
    while !stop.is_cancelled() {
        tick.tick().await;
        owed += rate / 10.0;
        let n = owed.floor() as usize;
        owed -= n as f64;
        if n == 0 {
            continue;
        }
        let batch: Vec<Value> = (0..n).map(|_| view.next("chaos-hot-key")).collect();
        let events = post_until_accepted(&http, &gateway, &key, &batch, Duration::from_secs(60)).await?;
        sent += events.len() as u64;
        accepted.lock().expect("extra lock").extend(events);
    }
    Ok(sent)
}
