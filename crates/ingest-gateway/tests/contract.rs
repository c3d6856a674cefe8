//! The API contract: schemathesis, every check, against the document this
//! ingest-gateway serves (`tests/contract/` at the workspace root holds its
//! settings and the hooks for the rules JSON Schema cannot state). Needs
//! `st` (PyPI `schemathesis`) and the local stack's Kafka.
#![cfg(test)]

use std::time::Duration;

use service_kit::testing::{self, InProcess, TestPostgres};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_api_keeps_its_openapi_document() {
    let postgres = TestPostgres::create().await.unwrap();
    let keys = postgres.keys().await.unwrap();
    let config = ingest_gateway::Config {
        kafka: testing::kafka_config(),
        postgres: postgres.config.clone(),
        ..ingest_gateway::Config::default()
    };
    let gateway = InProcess::spawn(config, ingest_gateway::run);
    gateway.wait_ready(Duration::from_secs(30)).await.expect("ingest-gateway ready");
    let url = gateway.url("/api/openapi.json");
    let outcome =
        tokio::task::spawn_blocking(move || testing::schemathesis(&url, &[("X-API-Key", &keys.ingest)])).await.unwrap();
    gateway.stop().await.unwrap();
    postgres.drop().await.unwrap();
    outcome.unwrap();
}
