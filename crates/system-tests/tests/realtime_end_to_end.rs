//! The realtime path end to end: events POSTed to the real ingest-gateway,
//! stored by the real stream-processor (which publishes the realtime
//! partials), merged by the real realtime-hub and computed from ClickHouse by
//! the real query-api; all in-process, on topics, a ClickHouse database and a
//! PostgreSQL database of their own.
//!
//! - a subscribed WebSocket client receives every posted event of its videos
//!   as an `analytics_event`, and none of the others;
//! - the hub's `realtime_metrics` (WebSocket), the hub's
//!   `GET /api/metrics/realtime` and query-api's `GET /api/metrics/realtime`
//!   agree, and equal the figures computed here from the posted events,
//!   a client retry (the same `event_id`s again) counted once;
//! - the realtime metrics show a POSTed batch soon after the POST returns
//!   (measured; a generous 5 s bound as a sanity check: latency figures
//!   belong to `cargo xtask bench`).
#![cfg(test)]

// The hub's own test helpers (topics, WebSocket client, expected figures).
#[path = "../../realtime-hub/tests/common/mod.rs"]
mod common;
mod pipeline;
mod support;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    time::{Duration, Instant},
};

use chrono::{SecondsFormat, TimeZone as _, Utc};
use common::{Client, Expected, http, now_ms};
use events_model::Event;
use futures::StreamExt as _;
use pipeline::Pipeline;
use realtime_hub::HubConfig;
use serde_json::{Value, json};
use service_kit::testing::InProcess;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Deadline of each wait (all of them together stay well inside the 60 s window).
const WAIT: Duration = Duration::from_secs(20);
/// Sanity bound on POST-returned → figures shown (the product's target is 2 s).
const LATENCY_BOUND: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// The services.

// ---------------------------------------------------------------------------
// The events and the figures they imply.

/// Sessions of this run: each watches one video of `videos` (some first watch
/// `other`, which the WebSocket client does not subscribe to), with start and
/// progress events and one of eight endings.
struct Scenario {
    videos: Vec<String>,
    other: String,
    first: Vec<Value>,
    second: Vec<Value>,
}

impl Scenario {
    fn new() -> Self {
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let videos: Vec<String> = (0..6).map(|v| format!("e2e-{run}-video-{v}")).collect();
        let other = format!("e2e-{run}-other");
        let base = now_ms() - 20_000;
        let mut sessions: Vec<Vec<Value>> = Vec::new();
        for s in 0..24u64 {
            let session = format!("e2e-{run}-session-{s}");
            let user = format!("e2e-{run}-user-{}", s % 10);
            let mut at = base + s * 200;
            let mut events = Vec::new();
            let mut push = |video: &str, event_type: &str, properties: Value| {
                at += 10;
                let timestamp =
                    Utc.timestamp_millis_opt(at as i64).unwrap().to_rfc3339_opts(SecondsFormat::Millis, true);
                events.push(json!({
                    "event_id": uuid::Uuid::new_v4().to_string(),
                    "event_type": event_type,
                    "user_id": user,
                    "session_id": session,
                    "video_id": video,
                    "timestamp": timestamp,
                    "properties": properties,
                }));
            };
            if s % 6 == 0 {
                // A view of a video the client does not follow, ended, before the followed one.
                push(&other, "video_start", json!({"bitrate_kbps": 900}));
                push(&other, "video_progress", json!({"position_seconds": 3, "bitrate_kbps": 900}));
                push(&other, "video_complete", json!({"position_seconds": 4}));
            }
            // Uneven audiences: video 5 gets the sessions 5, 6, 7 and 8 of every nine.
            let video = &videos[(s % 9).min(5) as usize];
            push(video, "video_start", json!({"bitrate_kbps": 1000 + 250 * (s % 5), "startup_time_ms": 400}));
            push(video, "video_progress", json!({"position_seconds": 5}));
            let bitrate = if s % 3 == 0 {
                json!({"position_seconds": 10, "bitrate_kbps": 4000})
            } else {
                json!({"position_seconds": 10})
            };
            push(video, "video_progress", bitrate);
            match s % 8 {
                0 => push(video, "video_complete", json!({"position_seconds": 12})),
                1 => push(video, "video_error", json!({"error_code": "DECODE"})), // fatal by default
                2 => push(video, "video_error", json!({"error_code": "RETRY", "fatal": false})),
                3 => push(video, "quality_change", json!({"to_quality": "1080p", "bitrate_kbps": 6000})),
                4 => push(video, "video_buffer", json!({"buffer_duration_ms": 300})),
                5 => push(video, "seek", json!({"seek_from_seconds": 10, "seek_to_seconds": 40})),
                6 => push(video, "video_pause", json!({"position_seconds": 10})),
                _ => {}
            }
            sessions.push(events);
        }
        let (first, second) = sessions.split_at(12);
        let first: Vec<Value> = first.concat();
        let mut second: Vec<Value> = second.concat();
        // A client that did not get its answer sends part of the first batch again.
        second.extend(first.iter().step_by(3).cloned());
        Self { videos, other, first, second }
    }

    fn all(&self) -> impl Iterator<Item = &Value> {
        self.first.iter().chain(&self.second)
    }
}

fn text<'a>(event: &'a Value, field: &str) -> &'a str {
    event[field].as_str().unwrap()
}

/// The realtime figures of docs/metrics.md for `events` (all inside the
/// window), each `event_id` once.
fn expected<'a>(events: impl IntoIterator<Item = &'a Value>) -> Expected {
    let mut unique: BTreeMap<&str, &Value> = BTreeMap::new();
    for event in events {
        unique.entry(text(event, "event_id")).or_insert(event);
    }
    let mut views: BTreeMap<(&str, &str), Vec<&Value>> = BTreeMap::new();
    for event in unique.values() {
        views.entry((text(event, "session_id"), text(event, "video_id"))).or_default().push(event);
    }
    let (mut viewers, mut bandwidth_kbps) = (0, 0);
    let mut per_video: BTreeMap<String, u64> = BTreeMap::new();
    for ((_, video), mut events) in views {
        // RFC 3339 in UTC with the same precision: text order is time order.
        events.sort_by_key(|e| text(e, "timestamp").to_string());
        let last = events.last().unwrap();
        let fatal = text(last, "event_type") == "video_error" && last["properties"]["fatal"] != false;
        if text(last, "event_type") == "video_complete" || fatal {
            continue;
        }
        viewers += 1;
        bandwidth_kbps += events.iter().rev().find_map(|e| e["properties"]["bitrate_kbps"].as_u64()).unwrap_or(0);
        *per_video.entry(video.to_string()).or_default() += 1;
    }
    let errors = unique.values().filter(|e| text(e, "event_type") == "video_error").count() as u64;
    let streams = per_video.len() as u64;
    let mut top: Vec<(String, u64)> = per_video.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(10);
    Expected { events: unique.len() as u64, errors, viewers, streams, bandwidth_kbps, top }
}

// ---------------------------------------------------------------------------
// Helpers.

async fn post_batch(gateway: &InProcess, key: &str, batch: &[Value]) {
    let answer =
        http().post(gateway.url("/api/events/batch")).header("x-api-key", key).json(batch).send().await.unwrap();
    let status = answer.status();
    let body: Value = answer.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], batch.len(), "{body}");
}

async fn get_json(url: &str, token: &str) -> anyhow::Result<Value> {
    let response = http().get(url).bearer_auth(token).send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status == 200, "{url} answered {status}: {body}");
    Ok(body)
}

/// The figures of a `realtime_metrics` payload, without `as_of`.
fn figures(payload: &Value) -> Value {
    let mut figures = payload.clone();
    if let Some(object) = figures.as_object_mut() {
        object.remove("as_of");
    }
    figures
}

/// Messages of the WebSocket client, each with the moment it arrived, read by
/// a task of their own so that nothing waits on the test.
fn read_in_background(client: Client) -> mpsc::UnboundedReceiver<(Instant, Value)> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let mut ws = client.ws;
    tokio::spawn(async move {
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Text(text) = frame {
                let message: Value = serde_json::from_str(text.as_str()).expect("JSON message");
                if sender.send((Instant::now(), message)).is_err() {
                    break;
                }
            }
        }
    });
    receiver
}

/// The ids of `events` the client follows (every video but `other`).
fn followed_ids<'a>(scenario: &Scenario, events: impl IntoIterator<Item = &'a Value>) -> HashSet<&'a str> {
    events.into_iter().filter(|e| text(e, "video_id") != scenario.other).map(|e| text(e, "event_id")).collect()
}

/// What the WebSocket client has received so far.
#[derive(Default)]
struct Observed {
    /// `analytics_event` messages by event id.
    events: HashMap<String, Vec<Value>>,
    /// The latest `realtime_metrics` and `top_videos` payloads.
    metrics: Value,
    top: Value,
    /// From the first POST's return to the first `realtime_metrics` showing it.
    pushed_latency: Option<Duration>,
}

impl Observed {
    fn drain(&mut self, messages: &mut mpsc::UnboundedReceiver<(Instant, Value)>, posted: Instant, first: &Expected) {
        while let Ok((at, message)) = messages.try_recv() {
            match message["type"].as_str() {
                Some("analytics_event") => {
                    let id = message["payload"]["event_id"].as_str().unwrap().to_string();
                    self.events.entry(id).or_default().push(message);
                }
                Some("realtime_metrics") => {
                    if self.pushed_latency.is_none() && first.matches(&message["payload"]) {
                        self.pushed_latency = Some(at.saturating_duration_since(posted));
                    }
                    self.metrics = message["payload"].clone();
                }
                Some("top_videos") => self.top = message["payload"].clone(),
                Some("error") => panic!("the hub answered an error: {message}"),
                _ => {}
            }
        }
    }

    fn missing(&self, ids: &HashSet<&str>) -> usize {
        ids.iter().filter(|id| !self.events.contains_key(**id)).count()
    }
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_events_reach_websocket_clients_and_every_realtime_view_agrees() {
    // No feed sampling: every event is checked.
    let pipeline = Pipeline::start(HubConfig { client_max_events_per_sec: 0, ..HubConfig::default() }).await;
    let (gateway, hub, api) = (&pipeline.gateway, &pipeline.hub, &pipeline.api);
    let scenario = Scenario::new();

    // A client following the six videos (not `other`).
    let keys = &pipeline.stack.keys;
    let mut client = Client::connect(hub, &keys.read).await;
    client.send(json!({"type": "subscribe", "payload": {"video_ids": scenario.videos}})).await;
    let ack = client.next_of("subscribed", WAIT).await.unwrap();
    let listed: BTreeSet<&str> =
        ack["payload"]["video_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(listed, scenario.videos.iter().map(String::as_str).collect::<BTreeSet<_>>(), "{ack}");
    let mut messages = read_in_background(client);

    // Nothing posted yet: every view shows an empty window.
    let empty = expected(std::iter::empty());
    let hub_now = get_json(&hub.url("/api/metrics/realtime"), &keys.read).await.unwrap();
    let api_now = get_json(&api.url("/api/metrics/realtime"), &keys.read).await.unwrap();
    assert!(empty.matches(&hub_now), "hub before any event: {hub_now}");
    assert!(empty.matches(&api_now), "query-api before any event: {api_now}");

    // 1. The first batch: how soon after the POST returns do the figures show it?
    let after_first = expected(&scenario.first);
    post_batch(gateway, &keys.ingest, &scenario.first).await;
    let posted = Instant::now();
    let get_latency = loop {
        let last = get_json(&hub.url("/api/metrics/realtime"), &keys.read).await.unwrap();
        if after_first.matches(&last) {
            break posted.elapsed();
        }
        assert!(
            posted.elapsed() < WAIT,
            "the hub's GET never showed the first batch: {last}, expected {after_first:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // The feed and the pushed metrics, as they came.
    let mut seen = Observed::default();
    let first_ids: HashSet<&str> = followed_ids(&scenario, &scenario.first);
    let deadline = Instant::now() + WAIT;
    loop {
        seen.drain(&mut messages, posted, &after_first);
        if seen.missing(&first_ids) == 0 && seen.pushed_latency.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {WAIT:?}: {} of {} first-batch events not received; pushed metrics {}",
            seen.missing(&first_ids),
            first_ids.len(),
            seen.metrics
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pushed_latency = seen.pushed_latency.unwrap();
    eprintln!(
        "first batch ({} events) shown {get_latency:?} after the POST returned by GET /api/metrics/realtime, \
         {pushed_latency:?} by the pushed realtime_metrics",
        scenario.first.len()
    );
    assert!(get_latency < LATENCY_BOUND, "GET /api/metrics/realtime showed the batch after {get_latency:?}");
    assert!(pushed_latency < LATENCY_BOUND, "realtime_metrics showed the batch after {pushed_latency:?}");

    // 2. The second batch, with part of the first sent again (a retry).
    let after_all = expected(scenario.all());
    assert!(after_all.events < (scenario.first.len() + scenario.second.len()) as u64, "the scenario has no retry");
    post_batch(gateway, &keys.ingest, &scenario.second).await;

    // Every followed event reaches the client (a retried one may come twice: the
    // feed shows what is ingested); none of the other video's.
    let followed = followed_ids(&scenario, scenario.all());
    let deadline = Instant::now() + WAIT;
    loop {
        seen.drain(&mut messages, posted, &after_first);
        if seen.missing(&followed) == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {WAIT:?}: {} of {} followed events not received",
            seen.missing(&followed),
            followed.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received_at = Utc::now();
    let posted_by_id: HashMap<&str, &Value> = scenario.all().map(|e| (text(e, "event_id"), e)).collect();
    for (id, copies) in &seen.events {
        assert!(followed.contains(id.as_str()), "an event the client does not follow arrived: {}", copies[0]);
        // What the gateway stores: the posted event, validated and normalised.
        let sent = posted_by_id[id.as_str()];
        let stored = serde_json::to_value(Event::from_value(sent.clone(), received_at).unwrap()).unwrap();
        for message in copies {
            let payload = &message["payload"];
            assert_eq!(message["sample_rate"], 1.0, "{message}");
            for field in ["event_id", "event_type", "user_id", "session_id", "video_id", "timestamp", "properties"] {
                assert_eq!(payload[field], stored[field], "{field} of {message}");
            }
            assert!(payload["received_at"].is_string(), "{message}");
        }
    }

    // 3. Once quiet: the pushed metrics, the hub's GET and query-api's GET
    //    (from ClickHouse) all equal the figures computed here.
    let deadline = Instant::now() + WAIT;
    loop {
        seen.drain(&mut messages, posted, &after_first);
        let (latest_metrics, latest_top) = (&seen.metrics, &seen.top);
        let hub_get = get_json(&hub.url("/api/metrics/realtime"), &keys.read).await.unwrap();
        let api_get = get_json(&api.url("/api/metrics/realtime"), &keys.read).await.unwrap();
        let agreed = after_all.matches(latest_metrics)
            && after_all.matches(&hub_get)
            && after_all.matches(&api_get)
            && after_all.matches_top(latest_top);
        if agreed {
            assert_eq!(figures(&hub_get), figures(&api_get));
            assert_eq!(figures(latest_metrics), figures(&api_get));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {WAIT:?} the realtime views still differ from {after_all:?}:\n  pushed    {latest_metrics}\n  \
             hub GET   {hub_get}\n  query-api {api_get}\n  top       {latest_top}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    drop(messages);
    pipeline.stop().await;
}
