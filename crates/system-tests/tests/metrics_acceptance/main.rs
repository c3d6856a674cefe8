//! The metrics acceptance scenario ([`scenario`]) on the local stack.
#![cfg(test)]

#[path = "../support/mod.rs"]
mod support;

mod scenario;

use service_kit::testing::{self, TestClickHouse};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_endpoints_match_the_definitions_raw_aggregated_rerun_and_after_a_late_event() {
    let db = scenario::run(testing::kafka_config(), TestClickHouse::create().await.unwrap()).await;
    db.drop().await.unwrap();
}
