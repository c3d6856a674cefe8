//! Batches of events and their delivery to `POST /api/events/batch`.
//!
//! A batch is sent until the gateway answers for it: after a 503 (Kafka not
//! acknowledging), another 5xx, a 429 or a connection error it is sent again,
//! byte for byte, with the same `event_id`s, so the pipeline counts every
//! event once however often it is retried. The pause grows exponentially and
//! is never shorter than the answer's `Retry-After`.
//!
//! With an API key ([`crate::Options::api_key`]) every request carries it as
//! `X-API-Key`. A 401 or 403 (no key, an unknown or revoked key, a key
//! without the `ingest` scope) rejects the batch and halts the run: every
//! later batch would be refused too.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use events_model::EventType;
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::event::GeneratedEvent;
use crate::rng::mix;
use crate::stats::Stats;

/// Largest batch body; the gateway's default limit is 1 MiB.
pub const MAX_BODY_BYTES: usize = 768 * 1024;

/// Events serialised as one JSON array.
#[derive(Debug, Clone)]
pub struct Batch {
    body: Vec<u8>,
    /// Byte range of each event in `body`, for rejection reports.
    spans: Vec<(u32, u32)>,
    types: Vec<EventType>,
    oldest_ms: i64,
    opened: Instant,
}

impl Batch {
    fn new() -> Self {
        let mut body = Vec::with_capacity(64 * 1024);
        body.push(b'[');
        Self { body, spans: Vec::new(), types: Vec::new(), oldest_ms: i64::MAX, opened: Instant::now() }
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The request body: a JSON array.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Timestamp of the earliest event (epoch ms).
    pub fn oldest_ms(&self) -> i64 {
        self.oldest_ms
    }

    fn push(&mut self, event: &GeneratedEvent, video_prefix: &str) {
        if !self.types.is_empty() {
            self.body.push(b',');
        }
        let start = self.body.len();
        event.write_json_prefixed(&mut self.body, video_prefix);
        self.spans.push((start as u32, self.body.len() as u32));
        self.types.push(event.event_type);
        self.oldest_ms = self.oldest_ms.min(event.timestamp_ms);
    }

    fn close(mut self) -> Self {
        self.body.push(b']');
        self
    }

    /// The JSON of event `index`, cut to `max` bytes.
    fn event_text(&self, index: usize, max: usize) -> String {
        let Some(&(start, end)) = self.spans.get(index) else { return String::new() };
        let text = String::from_utf8_lossy(&self.body[start as usize..end as usize]);
        if text.len() <= max {
            return text.into_owned();
        }
        let cut = (0..=max).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        format!("{}…", &text[..cut])
    }

    /// The JSON of every event whose index is not in `skip`.
    fn events_except(&self, skip: &[usize]) -> Vec<Vec<u8>> {
        self.spans
            .iter()
            .enumerate()
            .filter(|(index, _)| !skip.contains(index))
            .map(|(_, &(start, end))| self.body[start as usize..end as usize].to_vec())
            .collect()
    }
}

/// Collects events into batches of at most `max_events` events and
/// [`MAX_BODY_BYTES`] bytes.
#[derive(Debug)]
pub struct BatchBuilder {
    max_events: usize,
    max_bytes: usize,
    video_prefix: String,
    current: Batch,
}

impl BatchBuilder {
    pub fn new(max_events: usize) -> Self {
        Self::with_max_bytes(max_events, MAX_BODY_BYTES)
    }

    pub fn with_max_bytes(max_events: usize, max_bytes: usize) -> Self {
        Self { max_events: max_events.max(1), max_bytes, video_prefix: String::new(), current: Batch::new() }
    }

    /// Every video id sent after `prefix` (`drill-video_0001`).
    pub fn with_video_prefix(mut self, prefix: &str) -> Self {
        self.video_prefix = prefix.to_string();
        self
    }

    pub fn push(&mut self, event: &GeneratedEvent) {
        if self.current.is_empty() {
            self.current.opened = Instant::now();
        }
        self.current.push(event, &self.video_prefix);
    }

    pub fn len(&self) -> usize {
        self.current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// Events that still fit by count.
    pub fn room(&self) -> usize {
        if self.current.body.len() >= self.max_bytes { 0 } else { self.max_events.saturating_sub(self.current.len()) }
    }

    pub fn is_full(&self) -> bool {
        self.room() == 0
    }

    /// Time since the first event of the open batch was added.
    pub fn age(&self) -> Duration {
        if self.current.is_empty() { Duration::ZERO } else { self.current.opened.elapsed() }
    }

    /// The open batch, closed; `None` when it is empty.
    pub fn take(&mut self) -> Option<Batch> {
        if self.current.is_empty() {
            return None;
        }
        Some(std::mem::replace(&mut self.current, Batch::new()).close())
    }
}

/// How a gateway answer is handled.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The gateway decided on every event: `accepted` of them accepted, the
    /// listed ones rejected (index in the batch, reason).
    Answered { accepted: u64, rejected: Vec<(usize, String)> },
    /// No event was accepted; send the same batch again, not before `after`.
    Retry { after: Option<Duration>, reason: String },
    /// The whole request was refused (4xx other than 429): every event is
    /// rejected for `reason`.
    Refused { reason: String },
    /// The key was refused (401: missing, unknown or revoked; 403: not
    /// allowed): every event is rejected, and so would every later batch be.
    Unauthorized { reason: String },
}

#[derive(Debug, Deserialize)]
struct BatchAnswer {
    #[serde(default)]
    accepted: Option<u64>,
    #[serde(default)]
    rejected: Vec<RejectedEvent>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RejectedEvent {
    index: usize,
    #[serde(default)]
    errors: Vec<FieldError>,
}

#[derive(Debug, Deserialize)]
struct FieldError {
    #[serde(default)]
    field: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Reads an answer to a batch of `len` events (see the gateway's README).
pub fn classify(status: u16, retry_after: Option<&str>, body: &[u8], len: usize) -> Outcome {
    let answer: Option<BatchAnswer> = serde_json::from_slice(body).ok();
    let describe = |answer: &Option<BatchAnswer>| match answer {
        Some(BatchAnswer { error: Some(error), message, .. }) => {
            format!("HTTP {status} {error}: {}", message.as_deref().unwrap_or(""))
        }
        _ => format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)])),
    };
    let rejected = |answer: &BatchAnswer| {
        answer
            .rejected
            .iter()
            .map(|r| {
                let reasons: Vec<String> =
                    r.errors.iter().map(|e| format!("{} {}: {}", e.field, e.code, e.message)).collect();
                (r.index, reasons.join("; "))
            })
            .collect::<Vec<_>>()
    };
    match status {
        200..=299 => match &answer {
            Some(a) => Outcome::Answered {
                accepted: a.accepted.unwrap_or((len - a.rejected.len().min(len)) as u64),
                rejected: rejected(a),
            },
            // A success without the documented body: trust the status.
            None => Outcome::Answered { accepted: len as u64, rejected: Vec::new() },
        },
        400 if answer.as_ref().is_some_and(|a| a.error.as_deref() == Some("invalid_events")) => {
            let answer = answer.expect("checked above");
            Outcome::Answered { accepted: 0, rejected: rejected(&answer) }
        }
        408 | 429 | 500..=599 => Outcome::Retry {
            after: retry_after.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs),
            reason: describe(&answer),
        },
        401 | 403 => Outcome::Unauthorized { reason: describe(&answer) },
        _ => Outcome::Refused { reason: describe(&answer) },
    }
}

/// Pause before retry number `attempt` (1, 2, …): 100 ms doubling to 10 s,
/// ±25 % so that many senders do not retry in step, and never shorter than
/// the server's `Retry-After`.
pub fn backoff(attempt: u32, retry_after: Option<Duration>, jitter_seed: u64) -> Duration {
    let base = 100.0 * 2f64.powi(attempt.saturating_sub(1).min(20) as i32);
    let jitter = 0.75 + 0.5 * (mix(jitter_seed ^ u64::from(attempt)) >> 11) as f64 / (1u64 << 53) as f64;
    let backoff = Duration::from_millis((base.min(10_000.0) * jitter) as u64);
    backoff.max(retry_after.unwrap_or_default())
}

/// Where and how batches are sent.
#[derive(Debug, Clone)]
pub struct Target {
    pub client: reqwest::Client,
    /// The full URL of the batch endpoint.
    pub url: String,
    /// Sent as `X-API-Key` with every request.
    pub api_key: Option<String>,
    /// Cancelled when the gateway refuses the key ([`Outcome::Unauthorized`]).
    pub refused: CancellationToken,
    /// Where accepted and unresolved events are recorded, if anywhere.
    pub journal: Option<Arc<crate::Journal>>,
}

/// Receives batches and sends up to `concurrency` of them at a time; returns
/// once the channel is closed and every batch is answered (or `abort` fires).
pub async fn dispatch(
    mut batches: mpsc::Receiver<Batch>,
    target: Target,
    concurrency: usize,
    stats: Arc<Stats>,
    abort: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut serial = 0u64;
    loop {
        // A free slot first, then a batch: while every slot is busy, batches
        // wait in the bounded channel and the simulator waits for room.
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let Some(batch) = batches.recv().await else { break };
        serial += 1;
        let (target, stats, abort) = (target.clone(), stats.clone(), abort.clone());
        tasks.spawn(async move {
            send(&target, &batch, &stats, &abort, serial).await;
            drop(slot);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Sends one batch until it is answered, or `abort` fires.
pub async fn send(target: &Target, batch: &Batch, stats: &Stats, abort: &CancellationToken, serial: u64) {
    let len = batch.len() as u64;
    stats.sent.fetch_add(len, Relaxed);
    stats.batches_in_flight.fetch_add(1, Relaxed);
    stats.record_lag(crate::epoch_ms() - batch.oldest_ms);
    let mut attempt = 0;
    loop {
        let started = Instant::now();
        let mut request = target
            .client
            .post(&target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(batch.body.clone());
        if let Some(key) = &target.api_key {
            request = request.header("x-api-key", key);
        }
        let request = request.send();
        let answer = tokio::select! {
            answer = async {
                let response = request.await?;
                let status = response.status().as_u16();
                let retry_after =
                    response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, retry_after, body))
            } => answer,
            () = abort.cancelled() => break,
        };
        let (after, reason) = match answer {
            Ok((status, retry_after, body)) => {
                stats.record_latency(started.elapsed());
                match classify(status, retry_after.as_deref(), &body, batch.len()) {
                    Outcome::Answered { accepted, rejected } => {
                        if let Some(journal) = &target.journal {
                            let skip: Vec<usize> = rejected.iter().map(|(index, _)| *index).collect();
                            journal.record_accepted(batch.events_except(&skip));
                        }
                        stats.accepted.fetch_add(accepted, Relaxed);
                        stats.rejected.fetch_add(rejected.len() as u64, Relaxed);
                        for (index, reason) in rejected {
                            let kind = batch.types.get(index).map_or("?", |t| t.as_str());
                            stats.record_rejection_reason(format!(
                                "{kind} rejected: {reason}; event: {}",
                                batch.event_text(index, 400)
                            ));
                        }
                        stats.batches_in_flight.fetch_sub(1, Relaxed);
                        return;
                    }
                    Outcome::Refused { reason } => {
                        stats.rejected.fetch_add(len, Relaxed);
                        stats.record_rejection_reason(format!("the whole batch of {len} events: {reason}"));
                        stats.batches_in_flight.fetch_sub(1, Relaxed);
                        return;
                    }
                    Outcome::Unauthorized { reason } => {
                        stats.rejected.fetch_add(len, Relaxed);
                        stats.record_rejection_reason(format!(
                            "the whole batch of {len} events: {reason} (the run stops: {})",
                            crate::KEY_REFUSED
                        ));
                        stats.batches_in_flight.fetch_sub(1, Relaxed);
                        target.refused.cancel();
                        return;
                    }
                    Outcome::Retry { after, reason } => (after, reason),
                }
            }
            Err(err) => (None, describe_error(&err)),
        };
        attempt += 1;
        stats.record_retry(reason);
        tokio::select! {
            () = tokio::time::sleep(backoff(attempt, after, serial)) => {}
            () = abort.cancelled() => break,
        }
    }
    if let Some(journal) = &target.journal {
        journal.record_unresolved(batch.events_except(&[]));
    }
    stats.failed.fetch_add(len, Relaxed);
    stats.batches_in_flight.fetch_sub(1, Relaxed);
}

/// A reqwest error with its causes ("error sending request" alone says little).
fn describe_error(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::{Props, SessionId, VideoId};

    fn event(n: u32) -> GeneratedEvent {
        GeneratedEvent {
            event_id: uuid::Uuid::from_u128(u128::from(n) + 1),
            event_type: EventType::VideoStart,
            timestamp_ms: 1_750_000_000_000 + i64::from(n),
            user: None,
            session: SessionId(u64::from(n)),
            video: VideoId(n),
            properties: Props {
                device_type: "tv",
                os: "tvOS",
                country: "US",
                player: "p",
                cdn: "c",
                ..Props::default()
            },
        }
    }

    #[test]
    fn a_batch_is_a_json_array_of_its_events() {
        let mut builder = BatchBuilder::new(3);
        assert!(builder.take().is_none());
        for n in 0..3 {
            assert!(!builder.is_full());
            builder.push(&event(n));
        }
        assert!(builder.is_full());
        let batch = builder.take().unwrap();
        assert!(builder.is_empty() && builder.room() == 3);
        let array: Vec<serde_json::Value> = serde_json::from_slice(batch.body()).unwrap();
        assert_eq!(array, (0..3).map(|n| event(n).to_value()).collect::<Vec<_>>());
        assert_eq!(batch.oldest_ms(), 1_750_000_000_000);
        assert_eq!(batch.event_text(1, 1000), String::from_utf8(event(1).to_json()).unwrap());
        assert!(batch.event_text(1, 10).ends_with('…'));
    }

    #[test]
    fn a_batch_closes_at_the_byte_limit() {
        let mut builder = BatchBuilder::with_max_bytes(1000, 1000);
        while !builder.is_full() {
            builder.push(&event(1));
        }
        assert!(builder.len() < 1000);
        assert!(builder.take().unwrap().body().len() < 1000 + 600);
    }

    #[test]
    fn answers_are_classified() {
        let accepted = json!({"accepted": 2, "event_ids": ["a", "b"], "rejected": [
            {"index": 1, "errors": [{"field": "properties.position_seconds", "code": "missing", "message": "is required"}]}
        ]});
        assert_eq!(
            classify(202, None, accepted.to_string().as_bytes(), 3),
            Outcome::Answered {
                accepted: 2,
                rejected: vec![(1, "properties.position_seconds missing: is required".into())]
            }
        );
        let all_invalid = json!({"error": "invalid_events", "message": "m", "accepted": 0, "event_ids": [],
            "rejected": [{"index": 0, "errors": [{"field": "video_id", "code": "missing", "message": "is required"}]}]});
        assert!(matches!(
            classify(400, None, all_invalid.to_string().as_bytes(), 1),
            Outcome::Answered { accepted: 0, ref rejected } if rejected.len() == 1
        ));
        let busy = json!({"error": "kafka_unavailable", "message": "later", "retry_after_seconds": 2});
        assert_eq!(
            classify(503, Some("2"), busy.to_string().as_bytes(), 5),
            Outcome::Retry { after: Some(Duration::from_secs(2)), reason: "HTTP 503 kafka_unavailable: later".into() }
        );
        assert!(matches!(classify(502, None, b"<html>", 5), Outcome::Retry { after: None, .. }));
        let too_large = json!({"error": "too_many_events", "message": "at most 1000", "limit": 1000});
        assert_eq!(
            classify(413, None, too_large.to_string().as_bytes(), 5),
            Outcome::Refused { reason: "HTTP 413 too_many_events: at most 1000".into() }
        );
        let unknown = json!({"error": "invalid_credentials", "message": "the key is not valid (unknown or revoked)"});
        assert_eq!(
            classify(401, None, unknown.to_string().as_bytes(), 5),
            Outcome::Unauthorized {
                reason: "HTTP 401 invalid_credentials: the key is not valid (unknown or revoked)".into()
            }
        );
        let scope = json!({"error": "insufficient_scope", "message": "the key does not have the ingest scope"});
        assert!(matches!(classify(403, None, scope.to_string().as_bytes(), 5), Outcome::Unauthorized { .. }));
        let limited = json!({"error": "rate_limited", "message": "over the requests per second limit"});
        assert!(matches!(classify(429, Some("1"), limited.to_string().as_bytes(), 5), Outcome::Retry { .. }));
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_honours_retry_after() {
        let plain: Vec<Duration> = (1..=12).map(|a| backoff(a, None, 7)).collect();
        assert!(plain[0] >= Duration::from_millis(75) && plain[0] <= Duration::from_millis(125));
        assert!(plain[3] >= Duration::from_millis(600) && plain[3] <= Duration::from_millis(1000));
        assert!(plain.iter().all(|d| *d <= Duration::from_millis(12_500)));
        assert!(plain[11] >= Duration::from_millis(7_500));
        assert_eq!(backoff(1, Some(Duration::from_secs(2)), 7), Duration::from_secs(2));
        assert_ne!(backoff(3, None, 1), backoff(3, None, 2));
    }
}
