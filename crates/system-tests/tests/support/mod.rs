//! The services started in-process for the system tests (each test's own
//! topics and databases come from `service_kit::testing`).
#![allow(dead_code)]

use std::time::Duration;

use service_kit::{
    ClickHouseConfig, HttpConfig, KafkaConfig, PostgresConfig,
    testing::{self, InProcess},
};

/// The ingest-gateway with `workers` HTTP workers, its keys in `postgres`, once ready.
pub async fn start_gateway(kafka: &KafkaConfig, postgres: &PostgresConfig, workers: usize) -> InProcess {
    start_gateway_with_lateness(kafka, postgres, workers, events_model::limits::DEFAULT_LATENESS).await
}

/// [`start_gateway`] accepting timestamps up to `lateness` old, as a
/// deployment backfilling older events would run it.
pub async fn start_gateway_with_lateness(
    kafka: &KafkaConfig,
    postgres: &PostgresConfig,
    workers: usize,
    lateness: Duration,
) -> InProcess {
    let mut config = ingest_gateway::Config {
        // The gateway's own HTTP defaults (CORS for every origin) on a free port.
        http: HttpConfig { workers, port: 0, ..ingest_gateway::Config::default().http },
        kafka: kafka.clone(),
        postgres: postgres.clone(),
        ..ingest_gateway::Config::default()
    };
    config.ingest.lateness = lateness;
    let gateway = InProcess::spawn(config, ingest_gateway::run);
    gateway.wait_ready(Duration::from_secs(30)).await.expect("ingest-gateway ready");
    gateway
}

/// The stream-processor with small, quick batches (not waited for). It waits
/// for the raw topic, which the gateway creates: start the gateway first.
pub fn start_processor(kafka: &KafkaConfig, clickhouse: &ClickHouseConfig) -> InProcess {
    let mut config =
        stream_processor::Config { kafka: kafka.clone(), clickhouse: clickhouse.clone(), ..Default::default() };
    config.processor.batch_max_events = 10_000;
    config.processor.batch_max_wait = Duration::from_millis(250);
    config.processor.session_timeout = Duration::from_secs(6);
    InProcess::spawn(config, stream_processor::run)
}

/// The stream-processor in-process with its production batching (it bounds
/// the realtime latency), once ready.
pub async fn start_realtime_processor(kafka: &KafkaConfig, clickhouse: &ClickHouseConfig) -> InProcess {
    let mut config =
        stream_processor::Config { kafka: kafka.clone(), clickhouse: clickhouse.clone(), ..Default::default() };
    config.http.workers = 1;
    config.processor.session_timeout = Duration::from_secs(6);
    let processor = InProcess::spawn(config, stream_processor::run);
    processor.wait_ready(Duration::from_secs(30)).await.expect("stream-processor ready");
    processor
}

/// The query-api with one HTTP worker on the given stack, once ready.
pub async fn start_api(kafka: &KafkaConfig, clickhouse: &ClickHouseConfig, postgres: &PostgresConfig) -> InProcess {
    let config = query_api::Config {
        http: HttpConfig { workers: 1, ..HttpConfig::default() },
        clickhouse: clickhouse.clone(),
        postgres: postgres.clone(),
        redis: testing::redis_config(),
        kafka: kafka.clone(),
        ..query_api::Config::default()
    };
    let api = InProcess::spawn(config, query_api::run);
    api.wait_ready(Duration::from_secs(30)).await.expect("query-api ready");
    api
}
