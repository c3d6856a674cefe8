//! The HTTP contract, against the local Kafka: `GET /api/openapi.json`
//! answers the document, whose paths are the routes table's; undeclared
//! methods answer 405 with `Allow`, unknown paths a JSON 404, and `GET /ws`
//! without a handshake its documented 400 (the messages' schemas are tested
//! in `src/openapi.rs`).
//!
//! Schemathesis is not run here: it passes every operation of the document
//! but `GET /ws`, whose valid request is answered `101 Switching Protocols`
//! (which its checks count as a failure unless the operation is configured
//! to expect it) and then speaks WebSocket on a connection the HTTP client
//! reuses (a network error). Neither is a fault of the hub.
#![cfg(test)]

mod common;

use std::collections::BTreeSet;

use common::{Stack, http};
use realtime_hub::HubConfig;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_api_keeps_its_openapi_document() {
    let stack = Stack::new().await;
    let config = HubConfig::default();
    let hub = stack.start_hub(config.clone()).await;
    let client = http();

    let response = client.get(hub.url("/api/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    let described: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |method| (method.clone(), path.clone())))
        .collect();
    let table: BTreeSet<(String, String)> = realtime_hub::routes::routes(&config)
        .merge(service_kit::ops::operational_routes())
        .table()
        .into_iter()
        .collect();
    assert_eq!(described, table);
    for path in ["/ws", "/api/metrics/realtime", "/", "/assets/app.js", "/api/openapi.json", "/health"] {
        assert!(table.contains(&("get".to_string(), path.to_string())), "{path}");
    }
    for name in ["ServerMessage", "ClientMessage", "RealtimeMetrics", "AnalyticsEventMessage", "SubscribeMessage"] {
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }

    for (method, path) in [
        (reqwest::Method::POST, "/api/metrics/realtime"),
        (reqwest::Method::DELETE, "/ws"),
        (reqwest::Method::PUT, "/"),
        (reqwest::Method::POST, "/assets/app.js"),
        (reqwest::Method::POST, "/api/openapi.json"),
    ] {
        let response = client.request(method.clone(), hub.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], "GET", "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
    }
    for path in ["/nope", "/assets/missing.js", "/api/metrics/realtime/x"] {
        let response = client.get(hub.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{path}");
    }
    let response = client.get(hub.url("/ws")).send().await.unwrap();
    assert_eq!(response.status(), 401, "no token");
    assert!(doc["paths"]["/ws"]["get"]["responses"]["401"].is_object());
    assert!(doc["paths"]["/ws"]["get"]["security"].is_array());
    let response = client.get(hub.url("/ws")).bearer_auth(&stack.keys.read).send().await.unwrap();
    assert_eq!(response.status(), 400, "not a handshake");
    assert!(doc["paths"]["/ws"]["get"]["responses"]["400"].is_object());
    assert!(response.bytes().await.unwrap().is_empty(), "documented without a body");

    hub.stop().await.unwrap();
    stack.cleanup().await;
}
