//! Browsers send `Origin` on a WebSocket handshake and CORS does not apply
//! to WebSockets: the hub itself refuses pages of foreign origins, and keeps
//! serving its own dashboard, listed origins and clients that are not
//! browsers.
#![cfg(test)]

mod common;

use std::time::Duration;

use common::Stack;
use realtime_hub::HubConfig;
use service_kit::testing::InProcess;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest as _, http::HeaderValue};

/// The handshake's answer status for `origin` (`None`: no `Origin` header).
async fn handshake(hub: &InProcess, token: &str, origin: Option<&str>) -> u16 {
    let mut request = format!("ws://{}/ws?token={token}", hub.addr).into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("handshake failed: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_hubs_own_and_listed_origins_may_open_the_feed() {
    let stack = Stack::new().await;
    let mut config = stack.config(HubConfig::default());
    config.http.cors_allowed_origins = vec!["https://ops.example".to_owned()];
    let hub = InProcess::spawn(config, realtime_hub::run);
    hub.wait_ready(Duration::from_secs(30)).await.expect("hub ready");

    let own = format!("http://{}", hub.addr);
    let token = &stack.keys.read;
    assert_eq!(handshake(&hub, token, None).await, 101, "not a browser");
    assert_eq!(handshake(&hub, token, Some(&own)).await, 101, "the dashboard the hub serves");
    assert_eq!(handshake(&hub, token, Some("https://ops.example")).await, 101, "listed");
    assert_eq!(handshake(&hub, token, Some("https://evil.example")).await, 403, "a valid token does not help");
    assert_eq!(handshake(&hub, token, Some("null")).await, 403);

    let refused = reqwest::Client::new()
        .get(hub.url("/ws"))
        .bearer_auth(token)
        .header("origin", "https://evil.example")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "origin_not_allowed", "{body}");

    hub.stop().await.unwrap();
    stack.cleanup().await;
}
