//! What the outage drills share (`clickhouse_outage.rs` here and
//! `crates/system-tests/tests/kafka_outage.rs`, which includes this file): the
//! stream-processor started in-process, events with ids of the test's
//! choosing, and values read from `/metrics`.
#![allow(dead_code)]

use std::time::Duration;

use chrono::Utc;
use events_model::Event;
use serde_json::{Value, json};
use service_kit::testing::InProcess;
use uuid::Uuid;

/// The Prometheus text of a service's `GET /metrics`.
pub async fn metrics(http: &reqwest::Client, service: &InProcess) -> anyhow::Result<String> {
    let response = http.get(service.url("/metrics")).send().await?;
    anyhow::ensure!(response.status() == 200, "/metrics answered {}", response.status());
    Ok(response.text().await?)
}

/// The stream-processor, consuming until stopped.
pub fn start_processor(config: stream_processor::Config) -> InProcess {
    let _ = service_kit::telemetry::init(&service_kit::LogConfig::default());
    InProcess::spawn(config, stream_processor::run)
}

/// An HTTP client without idle keep-alive connections (which would hold up a graceful stop).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(15)).pool_max_idle_per_host(0).build().unwrap()
}

/// A valid `video_progress` event with `id` as its `event_id`; `i` spreads
/// events over sessions (so over partitions) and videos.
pub fn event_json(id: Uuid, i: usize) -> Value {
    json!({
        "event_id": id.to_string(),
        "event_type": "video_progress",
        "user_id": format!("u{}", i % 101),
        "session_id": format!("s{}", i % 499),
        "video_id": format!("v{}", i % 13),
        "properties": {"position_seconds": (i % 3_600) as f64, "bitrate_kbps": 2_500},
    })
}

/// [`event_json`] validated as the gateway would, ready for the raw topic.
pub fn event(id: Uuid, i: usize) -> Event {
    Event::from_value(event_json(id, i), Utc::now()).expect("valid event")
}

/// The samples of metric `name` in Prometheus text whose labels include every
/// `key="value"` of `labels`: (label text, value).
pub fn samples(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(String, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels_text, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            Some((labels_text.to_string(), value.trim().parse::<f64>().ok()?))
        })
        .filter(|(labels_text, _)| labels.iter().all(|(k, v)| labels_text.contains(&format!("{k}=\"{v}\""))))
        .collect()
}

/// The sum of [`samples`]; `None` when there is none.
pub fn total(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found = samples(text, name, labels);
    (!found.is_empty()).then(|| found.iter().map(|(_, v)| v).sum())
}

#[test]
fn samples_select_by_name_and_labels() {
    let text = "# TYPE lag gauge\n\
                lag{topic=\"a\",partition=\"0\"} 3\n\
                lag{topic=\"a\",partition=\"1\"} 4\n\
                lag{topic=\"b\",partition=\"0\"} 100\n\
                lag_other 7\n\
                retries_total 5\n";
    assert_eq!(total(text, "lag", &[("topic", "a")]), Some(7.0));
    assert_eq!(samples(text, "lag", &[("topic", "b")]), [("topic=\"b\",partition=\"0\"".to_string(), 100.0)]);
    assert_eq!(total(text, "retries_total", &[]), Some(5.0));
    assert_eq!(total(text, "lag", &[("topic", "c")]), None);
}
