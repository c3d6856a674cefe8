//! The five services' `/metrics` after real traffic, for the checks that
//! read it (promtool_metrics, dashboards). The services run in-process: one
//! recorder for the process, so one page holds every service's series. A
//! test that declares this module also declares `common` (the hub's test
//! helpers), `pipeline` and `support`.
#![allow(dead_code)]

use std::{collections::BTreeMap, time::Duration};

use chrono::Utc;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use realtime_hub::HubConfig;
use serde_json::{Value, json};
use service_kit::testing::{InProcess, TestKeys, eventually};

use crate::{
    common::{self, Client},
    pipeline::Pipeline,
};

/// Which service's section of docs/observability.md lists each metric
/// (`every service` for the shared ones).
pub fn owners() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/observability.md"))
        .expect("docs/observability.md");
    let mut section = String::from("every service");
    let mut owners = BTreeMap::new();
    for line in doc.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading.trim().to_lowercase();
        } else if let Some(rest) = line.strip_prefix("| `analytics_service_") {
            if let Some((name, _)) = rest.split_once('`') {
                owners.entry(format!("analytics_service_{name}")).or_insert_with(|| section.clone());
            }
        }
    }
    owners
}

/// The metric a series or finding names: its first word without a
/// histogram's `_bucket`, `_count` or `_sum` suffix.
pub fn metric_of(finding: &str) -> &str {
    let name = finding.split(|c: char| c.is_whitespace() || c == '{').next().unwrap_or("");
    ["_bucket", "_count", "_sum"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(name)
}

/// The series names of a Prometheus text page, as written (`_bucket` kept).
pub fn series_names(page: &str) -> std::collections::BTreeSet<String> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(|c: char| c == '{' || c.is_whitespace()).next())
        .map(str::to_owned)
        .collect()
}

fn event(video: &str, session: &str, event_type: &str, properties: Value) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "event_type": event_type,
        "user_id": format!("{session}-user"),
        "session_id": session,
        "video_id": video,
        "timestamp": Utc::now().to_rfc3339(),
        "properties": properties,
    })
}

async fn start_aggregator(pipeline: &Pipeline) -> InProcess {
    let mut config = aggregator_cron::Config {
        clickhouse: pipeline.clickhouse.config.clone(),
        postgres: pipeline.stack.postgres.config.clone(),
        ..aggregator_cron::Config::default()
    };
    config.facts.interval = Duration::from_secs(1);
    let aggregator = InProcess::spawn(config, aggregator_cron::run);
    aggregator.wait_ready(Duration::from_secs(30)).await.expect("aggregator-cron ready");
    aggregator
}

/// Starts the five services on their own topics and databases, sends real
/// traffic through them and returns the `/metrics` page, then stops them:
/// events ingested and stored, an invalid event (400), a request without a
/// key (401), a message on the raw topic that is no event (dead-lettered),
/// queries (a route with a parameter, an unknown route), the hub's realtime
/// figures, a WebSocket client that receives a message and disconnects, and
/// a facts pass of the aggregator.
pub async fn page_after_traffic() -> String {
    let pipeline = Pipeline::start(HubConfig::default()).await;
    let aggregator = start_aggregator(&pipeline).await;
    let keys = &pipeline.stack.keys;
    let mut dashboard = Client::connect(&pipeline.hub, &keys.read).await;

    // Ingest: a valid batch, an invalid event (400), a request without a key (401).
    let run = uuid::Uuid::new_v4().simple().to_string();
    let video = format!("observed-{run}");
    let batch: Vec<Value> = (0..5)
        .flat_map(|s| {
            let session = format!("observed-{run}-{s}");
            [
                event(&video, &session, "video_start", json!({"startup_time_ms": 300, "bitrate_kbps": 2000})),
                event(&video, &session, "video_progress", json!({"position_seconds": 5})),
            ]
        })
        .collect();
    let ingest = keys.ingest_client();
    let answer = ingest.post(pipeline.gateway.url("/api/events/batch")).json(&batch).send().await.unwrap();
    assert_eq!(answer.status(), 202, "{}", answer.text().await.unwrap());
    let invalid = json!({"event_type": "video_start", "video_id": video});
    let answer = ingest.post(pipeline.gateway.url("/api/events")).json(&invalid).send().await.unwrap();
    assert_eq!(answer.status(), 400);
    let answer = common::http().post(pipeline.gateway.url("/api/events")).json(&batch[0]).send().await.unwrap();
    assert_eq!(answer.status(), 401);

    // A message on the raw topic that is not an event: the processor dead-letters it.
    let producer: BaseProducer =
        service_kit::deps::kafka::client_config(&pipeline.stack.kafka).create().expect("kafka producer");
    producer
        .send(BaseRecord::to(&pipeline.stack.topics.raw_events).key("observed").payload("not an event"))
        .map_err(|(error, _)| error)
        .expect("produce a message that is no event");
    producer.flush(Duration::from_secs(10)).expect("flush");

    // Reads: the stored views through query-api (a route with a parameter),
    // an unknown route, the hub's realtime figures and its WebSocket.
    let reader = TestKeys::client(&keys.read);
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let url = pipeline.api.url(&format!("/api/metrics/video/{video}?startDate={today}&endDate={today}"));
    eventually(Duration::from_secs(60), || async {
        let answer = reader.get(&url).send().await?;
        let status = answer.status();
        let body: Value = answer.json().await?;
        anyhow::ensure!(status == 200 && body["views"] == 5, "{status}: {body}");
        Ok(())
    })
    .await
    .expect("the batch stored and answered");
    let answer = reader.get(pipeline.api.url("/api/no-such-route")).send().await.unwrap();
    assert_eq!(answer.status(), 404);
    let answer = reader.get(pipeline.hub.url("/api/metrics/realtime")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    dashboard.next_of("realtime_metrics", Duration::from_secs(10)).await.expect("a realtime_metrics message");
    drop(dashboard);

    // The aggregator has run a facts pass, the processor has dead-lettered
    // the message and the hub has seen its client go.
    let page = eventually(Duration::from_secs(60), || async {
        let page = common::http().get(aggregator.url("/metrics")).send().await?.text().await?;
        for expected in [
            "analytics_service_facts_passes_total",
            "analytics_service_dead_letters_total",
            "analytics_service_websocket_disconnects_total",
        ] {
            anyhow::ensure!(page.contains(expected), "no {expected} yet");
        }
        Ok(page)
    })
    .await
    .expect("a facts pass, a dead letter and a websocket disconnect");

    // The series the traffic must have produced, so the checks cover them.
    for expected in [
        "analytics_service_ingest_requests_total{",
        "analytics_service_kafka_produce_duration_seconds_bucket{",
        "analytics_service_processor_batch_size_bucket{le=\"50000\"}",
        "analytics_service_event_processing_duration_seconds_bucket{le=\"600\"}",
        "analytics_service_http_request_duration_seconds_bucket{route=\"/api/metrics/video/{videoId}\",status=\"200\"",
        "analytics_service_http_request_duration_seconds_bucket{route=\"unmatched\",status=\"404\"",
        "analytics_service_http_request_duration_seconds_bucket{route=\"/api/events\",status=\"401\"",
        "analytics_service_websocket_messages_sent_total{",
        "analytics_service_hub_window_compute_duration_seconds_bucket{",
        "analytics_service_facts_passes_total{",
        "analytics_service_dependency_up{",
    ] {
        assert!(page.contains(expected), "/metrics lacks {expected}:\n{page}");
    }

    aggregator.stop().await.expect("aggregator stopped");
    pipeline.stop().await;
    page
}
