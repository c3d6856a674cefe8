//! Against the local stack: ops endpoints answer and SIGTERM exits 0 within 5 s.
#![cfg(test)]

#[tokio::test]
async fn serves_ops_endpoints_and_exits_cleanly_on_sigterm() {
    service_kit::testing::assert_lifecycle(env!("CARGO_BIN_EXE_stream-processor"), &[]).await.unwrap();
}
