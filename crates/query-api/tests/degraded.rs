//! Degraded modes against the local stack: the query API stays ready and
//! answers while its optional dependencies fail for real. Redis is a port
//! nobody listens on (stopped) or a listener that accepts and never answers
//! (blackholed); PostgreSQL is reached through a TCP proxy the test cuts
//! after the start (the keys are loaded by then, as in production), so the
//! driver sees its connections closed and new ones refused.
#![cfg(test)]

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use events_model::EventRow;
use query_api::{CacheConfig, Config};
use reqwest::Client;
use serde_json::Value;
use service_kit::{
    PostgresConfig,
    testing::{self, ClosedPort, InProcess, TestClickHouse, TestKeys, TestPostgres},
};
use tokio::{net::TcpListener, task::JoinSet};

/// 2025-11-24: long past, so a cached answer would be kept for the long TTL.
const DAY: &str = "2025-11-24";
const DAY_MS: u64 = 1_763_942_400_000;
const HOUR_MS: u64 = 3_600_000;

fn counter(name: &str) -> f64 {
    testing::metric_value(name)
}

/// A TCP proxy to `upstream` on a port of its own, which the test can cut.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        Self::listen(TcpListener::bind("127.0.0.1:0").await.unwrap(), upstream)
    }

    fn listen(listener: TcpListener, upstream: SocketAddr) -> Self {
        let addr = listener.local_addr().unwrap();
        let accepting = tokio::spawn(async move {
            // Dropped with this task: aborting it closes every proxied connection.
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { addr, upstream, accepting }
    }

    /// Closes every connection and the listener: new connections are refused.
    async fn cut(self) -> (SocketAddr, SocketAddr) {
        self.accepting.abort();
        let _ = self.accepting.await;
        (self.addr, self.upstream)
    }

    /// Listens again on the address of a cut proxy.
    async fn resume((addr, upstream): (SocketAddr, SocketAddr)) -> Self {
        Self::listen(TcpListener::bind(addr).await.unwrap(), upstream)
    }
}

/// `config` reaching its server through `127.0.0.1:port`, and the server's address.
fn through_port(config: &PostgresConfig, port: u16) -> (PostgresConfig, SocketAddr) {
    let url = &config.url;
    let at = url.rfind('@').map_or(url.find("://").unwrap() + 3, |i| i + 1);
    let end = at + url[at..].find('/').unwrap_or(url.len() - at);
    let server: SocketAddr = url[at..end].replace("localhost", "127.0.0.1").parse().expect("host:port in the url");
    (PostgresConfig { url: format!("{}127.0.0.1:{port}{}", &url[..at], &url[end..]), ..config.clone() }, server)
}

/// A listener that accepts connections and never answers (a blackholed server).
async fn blackhole() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

fn event(event_type: &str, session: &str, user: &str, video: &str, at_ms: u64, position: f64) -> EventRow {
    let mut row = EventRow::new(event_type, session, video, at_ms);
    row.user_id = Some(user.to_owned());
    row.position_seconds = Some(position);
    row
}

/// On DAY: u1 watches 20 s of v1 and completes; u2 watches 10 s of v1.
fn scenario() -> Vec<EventRow> {
    let (a, b) = (DAY_MS + 10 * HOUR_MS, DAY_MS + 11 * HOUR_MS);
    let mut a_start = event("video_start", "s1", "u1", "v1", a, 0.0);
    a_start.duration_seconds = Some(80.0);
    vec![
        a_start,
        event("video_progress", "s1", "u1", "v1", a + 10_000, 10.0),
        event("video_complete", "s1", "u1", "v1", a + 20_000, 20.0),
        event("video_start", "s2", "u2", "v1", b, 0.0),
        event("video_progress", "s2", "u2", "v1", b + 10_000, 10.0),
    ]
}

struct Api {
    service: InProcess,
    clickhouse: TestClickHouse,
    postgres: TestPostgres,
    http: Client,
}

impl Api {
    /// The API on its own databases, with `tune` applied last.
    async fn start(tune: impl FnOnce(&mut Config)) -> Self {
        let clickhouse = TestClickHouse::create().await.unwrap();
        let postgres = TestPostgres::create().await.unwrap();
        let client = clickhouse.client();
        let mut insert = client.insert::<EventRow>("events").await.unwrap();
        for row in scenario() {
            insert.write(&row).await.unwrap();
        }
        insert.end().await.unwrap();
        let mut config = Config {
            postgres: postgres.config.clone(),
            clickhouse: clickhouse.config.clone(),
            redis: testing::redis_config(),
            kafka: testing::kafka_config(),
            ..Config::default()
        };
        tune(&mut config);
        let service = InProcess::spawn(config, query_api::run);
        let http = TestKeys::client(&postgres.keys().await.unwrap().admin);
        Self { service, clickhouse, postgres, http }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.service.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: {status}: not json: {text}")))
    }

    async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    async fn stop(self) {
        self.service.stop().await.unwrap();
        self.clickhouse.drop().await.unwrap();
        self.postgres.drop().await.unwrap();
    }
}

fn video_path() -> String {
    format!("/api/metrics/video/v1?startDate={DAY}&endDate={DAY}")
}

/// The API with Redis at `redis_url` is ready, and ten metric requests are
/// answered, exact, without waiting on Redis.
async fn answers_without_redis(redis_url: &str) {
    let url = redis_url.to_owned();
    let api = Api::start(move |c| {
        c.redis.url = url;
        c.cache = CacheConfig { timeout: Duration::from_millis(200), ..CacheConfig::default() };
    })
    .await;
    api.service.wait_ready(Duration::from_secs(20)).await.unwrap();
    let bypassed = counter("analytics_service_query_cache_bypassed_total");
    let started = Instant::now();
    for _ in 0..10 {
        let body = api.ok(&video_path()).await;
        assert_eq!((body["views"].as_u64(), body["catalog"].as_str()), (Some(2), Some("available")), "{body}");
    }
    let took = started.elapsed();
    // At most one request waits for Redis (`cache.timeout`); the others do not ask it.
    assert!(counter("analytics_service_query_cache_bypassed_total") >= bypassed + 9.0);
    assert!(took < Duration::from_secs(5), "ten answers took {took:?}");

    let (status, health) = api.get("/api/metrics/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("degraded")), "{health}");
    assert_eq!(health["dependencies"]["redis"]["status"], "down", "{health}");
    assert_eq!(health["dependencies"]["redis"]["optional"], true, "{health}");
    let ready = reqwest::get(api.service.url("/ready")).await.unwrap();
    assert_eq!(ready.status(), 200, "redis is optional");
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["redis"]["ok"], false, "{ready}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_the_api_stays_ready_and_answers_uncached() {
    let closed = ClosedPort::new();
    answers_without_redis(&format!("redis://{}", closed.addr())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_blackholed_the_api_stays_ready_and_answers_uncached() {
    let (addr, task) = blackhole().await;
    answers_without_redis(&format!("redis://{addr}")).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_metrics_answer_from_clickhouse_with_the_catalog_fields_unavailable() {
    let (_, server) = through_port(&testing::postgres_config(), 0);
    let proxy = Proxy::start(server).await;
    let port = proxy.addr.port();
    let api = Api::start(move |c| c.postgres = through_port(&c.postgres, port).0).await;
    api.service.wait_ready(Duration::from_secs(20)).await.unwrap();
    let stored = api.http.put(api.service.url("/api/videos/v1")).json(&serde_json::json!({
        "title": "v1", "duration_seconds": 40.0, "category": "news"
    }));
    assert_eq!(stored.send().await.unwrap().status(), 200);
    let user_path = format!("/api/metrics/user/u1?startDate={DAY}&endDate={DAY}");

    let full = api.ok(&video_path()).await;
    assert_eq!((full["catalog"].as_str(), full["duration_source"].as_str()), (Some("available"), Some("catalog")));
    assert_eq!(full["avg_watch_percentage"], 37.5, "(20/40 + 10/40) / 2 × 100: {full}");
    assert!(full.get("unavailable_fields").is_none(), "{full}");
    let full_user = api.ok(&user_path).await;
    assert_eq!(full_user["preferences"]["category"], "news", "{full_user}");

    let cut = proxy.cut().await;
    let unavailable = counter("analytics_service_catalog_unavailable_total");
    // A fresh range (not cached) and the cached one: both answered.
    for path in [video_path(), format!("/api/metrics/video/v1?startDate=2025-11-23&endDate={DAY}")] {
        let body = api.ok(&path).await;
        if path == video_path() {
            assert_eq!(body, full, "an answer cached before the outage is still served");
            continue;
        }
        assert_eq!(body["catalog"], "unavailable", "{path}: {body}");
        let fields: Vec<&str> =
            body["unavailable_fields"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert_eq!(fields, ["duration_seconds", "duration_source", "avg_watch_percentage", "engagement_score"]);
        for field in &fields {
            assert!(body[*field].is_null(), "{field} must be null: {body}");
        }
        for field in ["views", "unique_viewers", "watch_time_seconds", "completion_rate", "startup_time_ms"] {
            assert_eq!(body[field], full[field], "{field} comes from clickhouse: {body}");
        }
    }
    let user_path2 = format!("/api/metrics/user/u1?startDate=2025-11-23&endDate={DAY}");
    let user = api.ok(&user_path2).await;
    assert_eq!((user["catalog"].as_str(), user["views"].as_u64()), (Some("unavailable"), Some(1)), "{user}");
    assert!(user["preferences"]["category"].is_null(), "{user}");
    assert_eq!(user["unavailable_fields"], serde_json::json!(["preferences.category"]));
    assert!(counter("analytics_service_catalog_unavailable_total") >= unavailable + 2.0);

    let (status, health) = api.get("/api/metrics/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("degraded")), "{health}");
    assert_eq!(health["dependencies"]["postgres"]["status"], "down", "{health}");
    let ready = reqwest::get(api.service.url("/ready")).await.unwrap();
    assert_eq!(ready.status(), 200, "the catalog is optional for readiness");
    let (status, body) = api.get("/api/videos/v1").await;
    assert_eq!((status, body["error"].as_str()), (503, Some("unavailable")), "the catalog endpoint itself: {body}");

    // PostgreSQL back: the degraded answer was not cached, the next complete one is.
    let proxy = Proxy::resume(cut).await;
    let body = testing::eventually(Duration::from_secs(20), || async {
        let body = api.ok(&format!("/api/metrics/video/v1?startDate=2025-11-23&endDate={DAY}")).await;
        anyhow::ensure!(body["catalog"] == "available", "still degraded: {body}");
        Ok(body)
    })
    .await
    .unwrap();
    assert_eq!(body["avg_watch_percentage"], 37.5, "{body}");
    let user = api.ok(&user_path2).await;
    assert_eq!(user["preferences"]["category"], "news", "{user}");
    api.stop().await;
    proxy.cut().await;
}
