//! Against the local stack: ops endpoints answer and SIGTERM exits 0 within 5 s.
#![cfg(test)]

use events_model::Topics;
use service_kit::{deps::kafka, testing};

#[tokio::test]
async fn serves_ops_endpoints_and_exits_cleanly_on_sigterm() {
    // The raw topic is the ingest-gateway's and the processor is not ready
    // without it, so the test creates it, as the gateway would.
    let kafka_cfg = testing::kafka_config();
    let topics = Topics::new(&kafka_cfg.topic_prefix);
    let raw = kafka::TopicSpec { name: topics.raw_events.clone(), partitions: 1, retention_ms: None };
    kafka::ensure_topics(&kafka_cfg, &[raw]).await.unwrap();
    let env = [("KAFKA_TOPIC_PREFIX", kafka_cfg.topic_prefix.as_str())];
    let outcome = testing::assert_lifecycle(env!("CARGO_BIN_EXE_stream-processor"), &env).await;
    kafka::delete_topics(&kafka_cfg, &[&topics.raw_events, &topics.dead_letters, &topics.realtime_partials])
        .await
        .unwrap();
    outcome.unwrap();
}
