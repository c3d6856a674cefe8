//! The original product description's request examples, replayed as written
//! against the real services (in-process, on topics and databases of their
//! own): "Track Event", "Get Video Metrics", "Real-time Metrics", the
//! WebSocket "Connect to Dashboard" and both health checks.
//!
//! The examples are copied verbatim below (the description's ids and dates);
//! each must succeed with the answer shape the description shows, and the
//! tracked event must then be counted: in the video's metrics for the day it
//! was sent, in the realtime metrics, and on the WebSocket feed.
#![cfg(test)]

// The hub's own test helpers (topics, WebSocket client).
#[path = "../../realtime-hub/tests/common/mod.rs"]
mod common;
mod pipeline;
mod support;

use std::time::Duration;

use common::{Client, http};
use pipeline::Pipeline;
use realtime_hub::HubConfig;
use serde_json::Value;
use service_kit::testing::{InProcess, eventually};

/// Deadline of each wait.
const WAIT: Duration = Duration::from_secs(30);

/// "Track Event": `POST /api/events`, no `session_id` and no timestamp.
const TRACK_EVENT: &str = r#"{
  "event_type": "video_start",
  "user_id": "user_123",
  "video_id": "video_456",
  "properties": {}
}"#;

/// "Get Video Metrics", path and query as written.
const GET_VIDEO_METRICS: &str = "/api/metrics/video/video_456?startDate=2024-01-01&endDate=2024-01-31";

/// The fields of the description's video metrics response.
const VIDEO_METRICS_FIELDS: [&str; 7] = [
    "video_id",
    "views",
    "unique_viewers",
    "watch_time_seconds",
    "avg_watch_percentage",
    "completion_rate",
    "engagement_score",
];

/// "Real-time Metrics".
const GET_REALTIME: &str = "/api/metrics/realtime";

/// The fields of the description's realtime response.
const REALTIME_FIELDS: [&str; 5] =
    ["concurrent_viewers", "active_streams", "bandwidth_gbps", "events_per_second", "error_rate"];

/// `GET path` with a `read` token (the description's examples predate keys).
async fn get(service: &InProcess, token: &str, path: &str) -> (u16, Value) {
    let response = http().get(service.url(path)).bearer_auth(token).send().await.expect("GET");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

fn assert_fields(body: &Value, fields: &[&str], what: &str) {
    for field in fields {
        assert!(body.get(field).is_some_and(|v| !v.is_null()), "{what}: no `{field}` in {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_example_of_the_product_description_works_as_written() {
    let pipeline = Pipeline::start(HubConfig { client_max_events_per_sec: 0, ..HubConfig::default() }).await;
    let Pipeline { gateway, processor, hub, api, stack, .. } = &pipeline;
    let token = stack.keys.read.as_str();

    // "Connect to Dashboard": a client connected before the event is tracked.
    let mut client = Client::connect(hub, token).await;

    // "Track Event", with the player's ingest key.
    let response = http()
        .post(gateway.url("/api/events"))
        .header("x-api-key", &stack.keys.ingest)
        .header("content-type", "application/json")
        .body(TRACK_EVENT)
        .send()
        .await
        .expect("POST /api/events");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("json answer");
    assert_eq!(status, 202, "Track Event: {body}");
    assert_eq!(body["accepted"], 1, "{body}");
    let event_id = body["event_ids"][0].as_str().expect("an event id").to_string();
    let today = chrono::Utc::now().date_naive().to_string();

    // "Get Video Metrics" as written (January 2024: the event is not in it).
    let (status, january) = get(api, token, GET_VIDEO_METRICS).await;
    assert_eq!(status, 200, "Get Video Metrics: {january}");
    assert_fields(&january, &VIDEO_METRICS_FIELDS, "Get Video Metrics");
    assert_eq!(january["video_id"], "video_456", "{january}");
    assert_eq!(january["views"], 0, "{january}");

    // The same request for the day the event was tracked counts its view.
    let path = format!("/api/metrics/video/video_456?startDate={today}&endDate={today}");
    let metrics = eventually(WAIT, || async {
        let (status, body) = get(api, token, &path).await;
        anyhow::ensure!(status == 200 && body["views"] == 1, "{status} {body}");
        Ok(body)
    })
    .await
    .expect("the tracked view counted in the video's metrics");
    assert_fields(&metrics, &VIDEO_METRICS_FIELDS, "Get Video Metrics, today");
    assert_eq!(metrics["unique_viewers"], 1, "{metrics}");

    // "Real-time Metrics" on query-api (the description's API) and on the hub.
    for service in [api, hub] {
        let realtime = eventually(WAIT, || async {
            let (status, body) = get(service, token, GET_REALTIME).await;
            anyhow::ensure!(status == 200 && body["concurrent_viewers"] == 1, "{status} {body}");
            Ok(body)
        })
        .await
        .expect("the tracked view in the realtime metrics");
        assert_fields(&realtime, &REALTIME_FIELDS, "Real-time Metrics");
        assert_eq!(realtime["active_streams"], 1, "{realtime}");
    }

    // The WebSocket client's `switch(type)`: both kinds arrive, the event is ours.
    let event = client
        .wait_for(WAIT, |m| m["type"] == "analytics_event" && m["payload"]["event_id"] == event_id.as_str())
        .await
        .expect("the tracked event on the feed");
    assert_eq!(event["payload"]["event_type"], "video_start", "{event}");
    assert_eq!(event["payload"]["video_id"], "video_456", "{event}");
    let pushed = client.next_of("realtime_metrics", WAIT).await.expect("realtime_metrics pushed");
    assert_fields(&pushed["payload"], &REALTIME_FIELDS, "realtime_metrics payload");

    // "Health Checks": GET /health everywhere, GET /api/metrics/health on the API.
    for service in [gateway, processor, hub, api] {
        let (status, body) = get(service, token, "/health").await;
        assert_eq!(status, 200, "GET /health: {body}");
    }
    let (status, health) = get(api, token, "/api/metrics/health").await;
    assert_eq!(status, 200, "GET /api/metrics/health: {health}");

    drop(client);
    pipeline.stop().await;
}
