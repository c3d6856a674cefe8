//! Against the local stack: ops endpoints answer; after SIGTERM `/ready` is
//! 503 while the API still serves for the drain delay, then the process
//! exits 0.
#![cfg(test)]

#[tokio::test]
async fn serves_ops_endpoints_drains_and_exits_cleanly_on_sigterm() {
    service_kit::testing::assert_lifecycle_serving(env!("CARGO_BIN_EXE_query-api"), &[], Some("/api/openapi.json"))
        .await
        .unwrap();
}
