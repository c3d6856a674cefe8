//! Tokens on the live feed and the realtime API: where they are taken,
//! what is refused and how, and the connection limits per token and per IP.
#![cfg(test)]

mod common;

use std::time::Duration;

use common::{Client, Stack, http};
use realtime_hub::HubConfig;
use tokio_tungstenite::tungstenite;

/// The status a refused `/ws` handshake got, and its body.
async fn refused(url: &str) -> (u16, String) {
    match tokio_tungstenite::connect_async(url).await {
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.into_body().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            (status, body)
        }
        other => panic!("{url}: the handshake was not refused: {:?}", other.map(|(_, r)| r.status())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_and_the_realtime_api_need_a_read_token() {
    let stack = Stack::new().await;
    let hub = stack.start_hub(HubConfig::default()).await;
    let ws = format!("ws://{}/ws", hub.addr);

    let (status, body) = refused(&ws).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("missing_credentials") && body.contains("?token="), "{body}");
    let unknown = service_kit::auth::generate_secret();
    assert_eq!(refused(&format!("{ws}?token={unknown}")).await.0, 401);
    let (status, body) = refused(&format!("{ws}?token={}", stack.keys.ingest)).await;
    assert_eq!(status, 403, "an ingest key does not read: {body}");
    assert!(body.contains("insufficient_scope"), "{body}");

    // A read token in the URL or as a Bearer header opens the feed.
    let mut client = Client::connect(&hub, &stack.keys.read).await;
    client.next_of("realtime_metrics", Duration::from_secs(5)).await.unwrap();
    {
        use tungstenite::client::IntoClientRequest as _;
        let mut request = ws.as_str().into_client_request().unwrap();
        let bearer = format!("Bearer {}", stack.keys.admin);
        request.headers_mut().insert("authorization", bearer.parse().unwrap());
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("bearer upgrade");
        socket.close(None).await.unwrap();
    }

    let url = hub.url("/api/metrics/realtime");
    let status = |response: reqwest::Response| response.status().as_u16();
    assert_eq!(status(http().get(&url).send().await.unwrap()), 401);
    assert_eq!(status(http().get(&url).bearer_auth(&stack.keys.ingest).send().await.unwrap()), 403);
    assert_eq!(status(http().get(&url).bearer_auth(&stack.keys.read).send().await.unwrap()), 200);
    let with_token = format!("{url}?token={}", stack.keys.read);
    assert_eq!(status(http().get(&with_token).send().await.unwrap()), 200, "the token parameter is not refused");
    // The page, its files and the document stay open: the page asks for a token.
    for path in ["/", "/assets/app.js", "/api/openapi.json", "/health"] {
        assert_eq!(status(http().get(hub.url(path)).send().await.unwrap()), 200, "{path}");
    }
    client.ws.close(None).await.unwrap();
    hub.stop().await.unwrap();
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_and_one_address_hold_a_bounded_number_of_sockets() {
    let stack = Stack::new().await;
    let hub = stack
        .start_hub(HubConfig { max_connections_per_token: 2, max_connections_per_ip: 3, ..HubConfig::default() })
        .await;
    let ws = format!("ws://{}/ws", hub.addr);
    let mut a = Client::connect(&hub, &stack.keys.read).await;
    let b = Client::connect(&hub, &stack.keys.read).await;
    let (status, body) = refused(&format!("{ws}?token={}", stack.keys.read)).await;
    assert_eq!(status, 429, "a third socket of one token: {body}");
    assert!(body.contains("connections_per_token"), "{body}");

    // Another token from the same address: the address's third, then its limit.
    let c = Client::connect(&hub, &stack.keys.admin).await;
    let (status, body) = refused(&format!("{ws}?token={}", stack.keys.admin)).await;
    assert_eq!(status, 429, "a fourth socket of one address: {body}");
    assert!(body.contains("connections_per_ip"), "{body}");

    // A closed socket frees its places.
    drop(b);
    common::eventually_connects(&hub, &stack.keys.read).await;
    a.next_of("realtime_metrics", Duration::from_secs(5)).await.unwrap();
    drop((a, c));
    hub.stop().await.unwrap();
    stack.cleanup().await;
}
