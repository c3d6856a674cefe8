//! `/metrics` counts what the gateway received, rejected and produced.
//!
//! Alone in its test binary, so the process-wide counters hold exactly what
//! this test did.
#![cfg(test)]

mod common;

use common::{Gateway, JSON, progress};
use ingest_gateway::IngestConfig;
use serde_json::{Value, json};
use service_kit::{KafkaConfig, testing};

/// The value of the sample `name{labels...}` in a Prometheus text page.
fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let present: Vec<&str> = if series_labels.is_empty() { Vec::new() } else { series_labels.split(',').collect() };
        let matches = series_name == name
            && present.len() == wanted.len()
            && wanted.iter().all(|w| present.contains(&w.as_str()));
        if matches { value.parse().ok() } else { None }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_received_rejected_and_produced_events() {
    let gateway = Gateway::start(IngestConfig { raw_topic_partitions: 2, ..IngestConfig::default() }).await;
    let start = |session: &str| json!({"event_type": "video_start", "session_id": session, "video_id": "v"});
    let batch = json!([start("a"), start("b"), progress("c", 4.0), {"event_type": "video_start", "video_id": "v"}]);
    assert_eq!(gateway.post_json("/api/events/batch", &batch).await.status, 202);
    assert_eq!(gateway.post("/api/events", Some("text/html"), b"{}".to_vec(), &[]).await.status, 415);
    assert_eq!(gateway.post("/api/events", Some(JSON), b"{".to_vec(), &[]).await.status, 400);

    let closed = testing::ClosedPort::new();
    let dead = KafkaConfig { brokers: closed.addr(), ..testing::kafka_config() };
    let down = Gateway::start_with(
        dead,
        IngestConfig { produce_timeout: std::time::Duration::from_millis(300), ..IngestConfig::default() },
    )
    .await;
    let two = Value::Array(vec![start("d"), start("e")]);
    assert_eq!(down.post_json("/api/events/batch", &two).await.status, 503);
    down.stop().await;

    let page = gateway.http.get(gateway.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&page, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{page}"))
    };
    let received = "analytics_service_ingest_events_received_total";
    assert_eq!(value(received, &[("event_type", "video_start")]), 4.0, "2 stored, 2 refused by kafka");
    assert_eq!(value(received, &[("event_type", "video_progress")]), 1.0);
    let rejected = "analytics_service_ingest_events_rejected_total";
    assert_eq!(value(rejected, &[("reason", "missing")]), 1.0);
    assert_eq!(value(rejected, &[("reason", "unsupported_media_type")]), 1.0);
    assert_eq!(value(rejected, &[("reason", "invalid_json")]), 1.0);
    assert_eq!(value(rejected, &[("reason", "kafka_unavailable")]), 2.0);
    assert_eq!(value("analytics_service_ingest_events_accepted_total", &[]), 3.0);
    let produce = "analytics_service_kafka_produce_duration_seconds_count";
    assert_eq!(value(produce, &[("outcome", "ok")]), 1.0);
    assert_eq!(value(produce, &[("outcome", "error")]), 1.0);
    let requests = "analytics_service_ingest_requests_total";
    assert_eq!(value(requests, &[("endpoint", "batch"), ("status", "202")]), 1.0);
    assert_eq!(value(requests, &[("endpoint", "batch"), ("status", "503")]), 1.0);
    assert_eq!(value(requests, &[("endpoint", "single"), ("status", "415")]), 1.0);
    assert_eq!(value(requests, &[("endpoint", "single"), ("status", "400")]), 1.0);
    assert_eq!(value("analytics_service_http_requests_in_flight", &[]), 0.0);
    assert!(page.contains("analytics_service_kafka_produce_duration_seconds_bucket"), "a histogram:\n{page}");

    gateway.stored(3).await;
    gateway.stop().await;
}
