//! The request-body deadline every service has (`service_kit::deadline`)
//! must not cut WebSocket connections: an upgraded connection's "body" is
//! the socket's frames, for as long as the client stays.
#![cfg(test)]

mod common;

use std::time::{Duration, Instant};

use common::{Client, Stack};
use realtime_hub::HubConfig;
use service_kit::testing::InProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_outlives_the_request_body_timeout() {
    let stack = Stack::new().await;
    let mut config = stack.config(HubConfig::default());
    config.http.request_body_timeout = Duration::from_millis(500);
    let hub = InProcess::spawn(config, realtime_hub::run);
    hub.wait_ready(Duration::from_secs(30)).await.expect("hub ready");

    let mut client = Client::connect(&hub, &stack.keys.read).await;
    // Four times the body timeout later the socket still delivers the pushes,
    // and still reads what the client sends.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        client.next_of("realtime_metrics", Duration::from_secs(5)).await.expect("metrics keep coming");
    }
    client.send(serde_json::json!({"type": "subscribe", "payload": {"video_ids": ["v1"]}})).await;
    let ack = client.next_of("subscribed", Duration::from_secs(5)).await.expect("the client's message was read");
    assert_eq!(ack["payload"]["video_ids"][0], "v1", "{ack}");

    drop(client);
    hub.stop().await.unwrap();
    stack.cleanup().await;
}
