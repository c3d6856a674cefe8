//! Keys on the ingest routes: where they are accepted, what is refused and
//! how, revocation, origins, rate limits; refused requests store nothing.
#![cfg(test)]

mod common;

use std::time::Duration;

use common::{Gateway, JSON};
use ingest_gateway::IngestConfig;
use serde_json::{Value, json};
use service_kit::{
    AuthConfig,
    auth::{self, Scope},
    testing,
};

fn start_event(session: &str) -> Value {
    json!({"event_type": "video_start", "session_id": session, "video_id": "v-auth", "user_id": "u"})
}

/// A request with exactly these headers (no default key).
async fn send(
    gateway: &Gateway,
    path: &str,
    content_type: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request =
        reqwest::Client::new().post(gateway.url(path)).header("content-type", content_type).body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.json().await.unwrap(), headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_key_is_taken_from_a_header_a_bearer_or_the_url_and_anything_else_is_refused() {
    let gateway = Gateway::start(IngestConfig { raw_topic_partitions: 1, ..IngestConfig::default() }).await;
    let ingest = gateway.keys.ingest.clone();

    let (status, body, headers) = send(&gateway, "/api/events", JSON, &start_event("s0"), &[]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("missing_credentials")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("X-API-Key"), "{body}");
    assert!(headers.get("www-authenticate").is_some());

    let unknown = auth::generate_secret();
    let (status, body, _) = send(&gateway, "/api/events", JSON, &start_event("s0"), &[("x-api-key", &unknown)]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_credentials")), "{body}");
    let (status, body, _) =
        send(&gateway, "/api/events/batch", JSON, &json!([start_event("s0")]), &[("x-api-key", "not-a-key")]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_credentials")), "{body}");

    let bearer = format!("Bearer {}", gateway.keys.read);
    let (status, body, _) =
        send(&gateway, "/api/events", JSON, &start_event("s0"), &[("authorization", &bearer)]).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("insufficient_scope")), "{body}");
    let (status, _, _) =
        send(&gateway, "/api/events", JSON, &start_event("s0"), &[("x-api-key", &gateway.keys.admin)]).await;
    assert_eq!(status, 403, "an admin key does not send events");

    let (status, body, _) = send(&gateway, "/api/events", JSON, &start_event("s1"), &[("x-api-key", &ingest)]).await;
    assert_eq!(status, 202, "{body}");
    let bearer = format!("Bearer {ingest}");
    let (status, body, _) =
        send(&gateway, "/api/events/batch", JSON, &json!([start_event("s2")]), &[("authorization", &bearer)]).await;
    assert_eq!(status, 202, "{body}");
    // navigator.sendBeacon: the key in the URL, the body as text/plain.
    let url = format!("/api/events?api_key={ingest}");
    let (status, body, _) = send(&gateway, &url, "text/plain;charset=UTF-8", &start_event("s3"), &[]).await;
    assert_eq!(status, 202, "{body}");

    // The ops routes and the document stay open.
    for path in ["/health", "/api/openapi.json"] {
        assert_eq!(reqwest::get(gateway.url(path)).await.unwrap().status(), 200, "{path}");
    }
    let stored = gateway.stored(3).await;
    let mut sessions: Vec<String> = stored.iter().map(|s| s.event.session_id.clone()).collect();
    sessions.sort();
    assert_eq!(sessions, ["s1", "s2", "s3"], "only the admitted events are stored");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_working_a_new_one_works_at_once_and_keys_outlive_a_postgres_outage() {
    let gateway = Gateway::start_configured(
        testing::kafka_config(),
        IngestConfig { raw_topic_partitions: 1, ..IngestConfig::default() },
        |config| config.auth.refresh_interval = Duration::from_secs(1),
    )
    .await;
    let client = gateway.postgres.pool().unwrap().get().await.unwrap();
    let fresh = auth::create_key(&client, "fresh", &[Scope::Ingest], &[]).await.unwrap();
    let (status, body, _) =
        send(&gateway, "/api/events", JSON, &start_event("f1"), &[("x-api-key", &fresh.secret)]).await;
    assert_eq!(status, 202, "a key created a moment ago works: {body}");

    assert_eq!(auth::revoke_key(&client, &fresh.id).await.unwrap(), 1);
    // Until the refresh, the revoked key still works (these are stored).
    let accepted_meanwhile = std::sync::atomic::AtomicUsize::new(0);
    testing::eventually(Duration::from_secs(30), || async {
        let (status, _, _) =
            send(&gateway, "/api/events", JSON, &start_event("f2"), &[("x-api-key", &fresh.secret)]).await;
        if status == 202 {
            accepted_meanwhile.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        anyhow::ensure!(status == 401, "the revoked key still answers {status}");
        Ok(())
    })
    .await
    .unwrap();

    // PostgreSQL gone: the keys read before keep working.
    client.batch_execute("ALTER TABLE api_keys RENAME TO api_keys_gone").await.unwrap();
    testing::eventually(Duration::from_secs(10), || async {
        let page = reqwest::get(gateway.url("/metrics")).await?.text().await?;
        anyhow::ensure!(page.contains("analytics_service_auth_refresh_failures_total"), "no failed refresh yet");
        Ok(())
    })
    .await
    .unwrap();
    let (status, body, _) =
        send(&gateway, "/api/events", JSON, &start_event("f3"), &[("x-api-key", &gateway.keys.ingest)]).await;
    assert_eq!(status, 202, "{body}");
    let ready = reqwest::get(gateway.url("/ready")).await.unwrap();
    assert_eq!(ready.status(), 200, "a postgres outage does not make the gateway unready");
    client.batch_execute("ALTER TABLE api_keys_gone RENAME TO api_keys").await.unwrap();

    let meanwhile = accepted_meanwhile.into_inner();
    let stored = gateway.stored(2 + meanwhile).await;
    let mut sessions: Vec<String> =
        stored.iter().map(|s| s.event.session_id.clone()).filter(|session| session != "f2").collect();
    sessions.sort();
    assert_eq!(sessions, ["f1", "f3"]);
    drop(client);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_limited_to_origins_is_refused_from_any_other_page() {
    let gateway = Gateway::start(IngestConfig { raw_topic_partitions: 1, ..IngestConfig::default() }).await;
    let client = gateway.postgres.pool().unwrap().get().await.unwrap();
    let player = "https://player.example";
    let key = auth::create_key(&client, "web-player", &[Scope::Ingest], &[player.to_owned()]).await.unwrap();

    let (status, body, _) = send(
        &gateway,
        "/api/events",
        JSON,
        &start_event("o1"),
        &[("x-api-key", &key.secret), ("origin", "https://evil.example")],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("origin_not_allowed")), "{body}");
    let (status, body, headers) =
        send(&gateway, "/api/events", JSON, &start_event("o2"), &[("x-api-key", &key.secret), ("origin", player)])
            .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(headers.get("access-control-allow-origin").unwrap(), player);
    // Not from a browser (no Origin): the key works.
    let (status, _, _) = send(&gateway, "/api/events", JSON, &start_event("o3"), &[("x-api-key", &key.secret)]).await;
    assert_eq!(status, 202);

    // The preflight carries no key: it is answered for any origin.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, gateway.url("/api/events"))
        .header("origin", "https://any.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type, x-api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let stored = gateway.stored(2).await;
    let mut sessions: Vec<String> = stored.iter().map(|s| s.event.session_id.clone()).collect();
    sessions.sort();
    assert_eq!(sessions, ["o2", "o3"]);
    drop(client);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_rate_limit_a_request_is_answered_429_with_retry_after_and_counted_by_key() {
    let gateway = Gateway::start_configured(
        testing::kafka_config(),
        IngestConfig {
            raw_topic_partitions: 1,
            max_batch_events: 5,
            events_per_second_per_key: 5,
            ..IngestConfig::default()
        },
        |config| {
            config.auth =
                AuthConfig { requests_per_second: 1_000, failures_per_minute_per_ip: 3, ..AuthConfig::default() }
        },
    )
    .await;
    let batch = |prefix: &str| Value::Array((0..5).map(|i| start_event(&format!("{prefix}{i}"))).collect());
    let first = gateway.post_json("/api/events/batch", &batch("a")).await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let second = gateway.post_json("/api/events/batch", &batch("b")).await;
    assert_eq!(second.status, 429, "{:?}", second.body);
    assert_eq!(second.body["error"], "rate_limited");
    assert_eq!(second.body["limit"], "events_per_second");
    let wait: u64 = second.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");

    // Unknown keys from one address: the fourth failure in a minute is 429.
    for _ in 0..3 {
        let (status, _, _) = send(&gateway, "/api/events", JSON, &start_event("x"), &[("x-api-key", "wrong")]).await;
        assert_eq!(status, 401);
    }
    let (status, body, headers) =
        send(&gateway, "/api/events", JSON, &start_event("x"), &[("x-api-key", "wrong")]).await;
    assert_eq!((status, body["limit"].as_str()), (429, Some("auth_failures_per_minute")), "{body}");
    assert!(headers.get("retry-after").is_some());

    let page = reqwest::get(gateway.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        page.lines().any(|l| l.starts_with("analytics_service_rate_limited_total")
            && l.contains("key=\"test-ingest\"")
            && l.contains("limit=\"events_per_second\"")),
        "{page}"
    );
    assert!(page.lines().any(|l| l.starts_with("analytics_service_ingest_events_rejected_total")
        && l.contains("reason=\"rate_limited\"")
        && l.ends_with(" 5")));
    assert_eq!(gateway.stored(5).await.len(), 5, "the refused batch stored nothing");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_switched_off_explicitly_no_key_is_needed() {
    let gateway = Gateway::start_configured(
        testing::kafka_config(),
        IngestConfig { raw_topic_partitions: 1, ..IngestConfig::default() },
        |config| config.auth.enabled = false,
    )
    .await;
    let (status, body, _) = send(&gateway, "/api/events", JSON, &start_event("n1"), &[]).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(gateway.stored(1).await[0].event.session_id, "n1");
    gateway.stop().await;
}
