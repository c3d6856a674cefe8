//! The API contract: schemathesis, every check, against the document this
//! query-api serves (`tests/contract/` at the workspace root holds its
//! settings and the hooks for the rules JSON Schema cannot state). Needs
//! `st` (PyPI `schemathesis`) and the local stack.

use std::time::Duration;

use query_api::Config;
use service_kit::testing::{self, InProcess, TestClickHouse, TestPostgres};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_api_keeps_its_openapi_document() {
    let postgres = TestPostgres::create().await.expect("test postgres database");
    let clickhouse = TestClickHouse::create().await.expect("test clickhouse database");
    let config = Config {
        postgres: postgres.config.clone(),
        redis: testing::redis_config(),
        clickhouse: clickhouse.config.clone(),
        ..Config::default()
    };
    let service = InProcess::spawn(config, query_api::run);
    service.wait_ready(Duration::from_secs(30)).await.expect("query-api ready");
    let url = service.url("/api/openapi.json");
    let outcome = tokio::task::spawn_blocking(move || testing::schemathesis(&url)).await.unwrap();
    service.stop().await.unwrap();
    postgres.drop().await.unwrap();
    clickhouse.drop().await.unwrap();
    outcome.unwrap();
}
