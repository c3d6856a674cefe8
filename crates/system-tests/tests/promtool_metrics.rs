//! `promtool check metrics` (Debian's `prometheus` package) finds nothing on
//! the metrics of the five services after real traffic: every series has
//! HELP text, counters end in `_total`, histograms have buckets.
//!
//! The services run in-process (one recorder for the process, so one page
//! holds every service's series); each finding is attributed to the service
//! whose section of docs/observability.md lists the metric. Each service's
//! own page, from its real binary, is checked the same way by its lifecycle
//! test (`service_kit::testing::assert_lifecycle`). A missing promtool fails
//! the test.
#![cfg(test)]

#[path = "../../realtime-hub/tests/common/mod.rs"]
mod common;
mod pipeline;
mod support;

use std::{collections::BTreeMap, time::Duration};

use chrono::Utc;
use common::Client;
use pipeline::Pipeline;
use realtime_hub::HubConfig;
use serde_json::{Value, json};
use service_kit::testing::{self, InProcess, TestKeys, eventually};

/// Which service's section of docs/observability.md lists each metric.
fn owners() -> BTreeMap<String, String> {
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

/// The metric a finding line is about (promtool starts the line with it).
fn metric_of(finding: &str) -> &str {
    let name = finding.split_whitespace().next().unwrap_or("");
    ["_bucket", "_count", "_sum"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(name)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_on_the_services_metrics_after_traffic() {
    let pipeline = Pipeline::start(HubConfig::default()).await;
    let aggregator = start_aggregator(&pipeline).await;
    let keys = &pipeline.stack.keys;
    let mut dashboard = Client::connect(&pipeline.hub, &keys.read).await;

    // Ingest: a valid batch, an invalid event (400), a request without a key (401).
    let run = uuid::Uuid::new_v4().simple().to_string();
    let video = format!("promtool-{run}");
    let batch: Vec<Value> = (0..5)
        .flat_map(|s| {
            let session = format!("promtool-{run}-{s}");
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

    // The aggregator has run at least one facts pass.
    let page = eventually(Duration::from_secs(60), || async {
        let page = common::http().get(aggregator.url("/metrics")).send().await?.text().await?;
        anyhow::ensure!(page.contains("analytics_service_facts_passes_total"), "no facts pass yet");
        Ok(page)
    })
    .await
    .expect("a facts pass");

    // The series the traffic must have produced, so the check below covers them.
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

    let findings = testing::promtool_metric_findings(&page).expect("promtool runs");
    let owners = owners();
    let attributed: Vec<String> = findings
        .iter()
        .map(|finding| {
            let owner = owners.get(metric_of(finding)).map_or("a metric docs/observability.md does not list", |o| o);
            format!("[{owner}] {finding}")
        })
        .collect();
    assert!(
        attributed.is_empty(),
        "promtool check metrics found:\n  {}\n--- the page ---\n{page}",
        attributed.join("\n  ")
    );

    drop(dashboard);
    aggregator.stop().await.expect("aggregator stopped");
    pipeline.stop().await;
}

/// The check is not vacuous: a page with an undescribed counter, a counter
/// without `_total` and a histogram without buckets gives one finding each.
#[test]
fn the_check_reports_missing_help_bad_names_and_bucketless_histograms() {
    let page = "# TYPE analytics_service_x_total counter\nanalytics_service_x_total 1\n\
                # HELP analytics_service_y a counter\n# TYPE analytics_service_y counter\nanalytics_service_y 1\n\
                # HELP analytics_service_z_seconds a summary\n# TYPE analytics_service_z_seconds summary\n\
                analytics_service_z_seconds_sum 1\nanalytics_service_z_seconds_count 1\n";
    let findings = testing::promtool_metric_findings(page).expect("promtool runs");
    let has = |metric: &str, what: &str| findings.iter().any(|f| metric_of(f) == metric && f.contains(what));
    assert!(has("analytics_service_x_total", "no help text"), "{findings:?}");
    assert!(has("analytics_service_y", "_total"), "{findings:?}");
    assert!(has("analytics_service_z_seconds", "without buckets"), "{findings:?}");
    assert!(testing::promtool_check_metrics("a test page", page).is_err());
}
