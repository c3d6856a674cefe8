//! The query API served in-process against the local stack: the video
//! catalog (own PostgreSQL database), error answers, dependency health and
//! the OpenAPI document.
#![cfg(test)]

use std::time::Duration;

use query_api::Config;
use reqwest::{Client, Response};
use serde_json::{Value, json};
use service_kit::testing::{self, InProcess, TestKeys, TestPostgres};

struct Api {
    service: InProcess,
    postgres: TestPostgres,
    /// One key per scope in `postgres`.
    keys: TestKeys,
    /// Sends the `admin` token (which includes `read`).
    http: Client,
}

impl Api {
    async fn start() -> Self {
        let postgres = TestPostgres::create().await.expect("test postgres database");
        let config = Config {
            postgres: postgres.config.clone(),
            redis: testing::redis_config(),
            clickhouse: testing::clickhouse_config(),
            ..Config::default()
        };
        let service = InProcess::spawn(config, query_api::run);
        let keys = postgres.keys().await.expect("test keys");
        let http = TestKeys::client(&keys.admin);
        Self { service, postgres, keys, http }
    }

    fn video_url(&self, video_id: &str) -> String {
        self.service.url(&format!("/api/videos/{}", encode(video_id)))
    }

    async fn put(&self, video_id: &str, body: &Value) -> (u16, Value) {
        read(self.http.put(self.video_url(video_id)).json(body).send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        read(self.http.get(self.service.url(path)).send().await.unwrap()).await
    }

    async fn get_video(&self, video_id: &str) -> (u16, Value) {
        read(self.http.get(self.video_url(video_id)).send().await.unwrap()).await
    }

    async fn stop(self) {
        self.service.stop().await.unwrap();
        self.postgres.drop().await.unwrap();
    }
}

async fn read(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("status {status}, body is not json: {text:?}"));
    (status, body)
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_is_stored_read_back_and_replaced() {
    let api = Api::start().await;
    let (status, stored) =
        api.put("video-1", &json!({"title": "Intro", "duration_seconds": 120.5, "category": "tutorial"})).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["video_id"], "video-1");
    assert_eq!(stored["title"], "Intro");
    assert_eq!(stored["duration_seconds"], 120.5);
    assert_eq!(stored["category"], "tutorial");
    let created_at = stored["created_at"].as_str().unwrap().to_string();
    chrono::DateTime::parse_from_rfc3339(&created_at).expect("rfc 3339 created_at");

    let (status, read_back) = api.get_video("video-1").await;
    assert_eq!(status, 200);
    assert_eq!(read_back, stored);

    let (status, replaced) = api.put("video-1", &json!({"title": "Intro, second cut"})).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["title"], "Intro, second cut");
    assert_eq!(replaced["duration_seconds"], Value::Null, "a put replaces the whole entry");
    assert_eq!(replaced["category"], Value::Null);
    assert_eq!(replaced["created_at"], created_at.as_str(), "creation time kept");
    assert!(replaced["updated_at"].as_str().unwrap() >= stored["updated_at"].as_str().unwrap());
    assert_eq!(api.get_video("video-1").await, (200, replaced));

    let rows: i64 = api
        .postgres
        .pool()
        .unwrap()
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM videos", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "an update does not add a row");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_video_is_a_json_404() {
    let api = Api::start().await;
    let (status, body) = api.get_video("never-stored").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    assert!(body["message"].as_str().unwrap().contains("never-stored"), "{body}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invalid_field_is_a_400_naming_it() {
    let api = Api::start().await;
    let cases = [
        ("ok-id", json!({}), "title"),
        ("ok-id", json!({"title": ""}), "title"),
        ("ok-id", json!({"title": "   "}), "title"),
        ("ok-id", json!({"title": null}), "title"),
        ("ok-id", json!({"title": 7}), "title"),
        ("ok-id", json!({"title": "t".repeat(513)}), "title"),
        ("ok-id", json!({"title": "nul \u{0} inside"}), "title"),
        ("ok-id", json!({"title": "t", "duration_seconds": 0}), "duration_seconds"),
        ("ok-id", json!({"title": "t", "duration_seconds": -3}), "duration_seconds"),
        ("ok-id", json!({"title": "t", "duration_seconds": "90"}), "duration_seconds"),
        ("ok-id", json!({"title": "t", "duration_seconds": 1e-9}), "duration_seconds"),
        ("ok-id", json!({"title": "t", "duration_seconds": 1e8}), "duration_seconds"),
        ("ok-id", json!({"title": "t", "category": "c".repeat(129)}), "category"),
        ("ok-id", json!({"title": "t", "category": ["a"]}), "category"),
        ("ok-id", json!({"title": "t", "views": 1}), "views"),
        (&"v".repeat(257), json!({"title": "t"}), "videoId"),
        ("tab\there", json!({"title": "t"}), "videoId"),
        ("newline\n", json!({"title": "t"}), "videoId"),
    ];
    for (video_id, body, field) in cases {
        let (status, answer) = api.put(video_id, &body).await;
        assert_eq!(status, 400, "{body} for {video_id:?}: {answer}");
        assert_eq!(answer["error"], "bad_request", "{answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| m.contains(field)), "{answer}");
    }
    let (status, answer) = api.get_video("tab\there").await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("videoId")));

    // Limits are inclusive.
    let longest = "v".repeat(256);
    let (status, stored) = api
        .put(&longest, &json!({"title": "t".repeat(512), "category": "c".repeat(128), "duration_seconds": 0.001}))
        .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["video_id"], longest.as_str());

    let rows: i64 = api
        .postgres
        .pool()
        .unwrap()
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM videos", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "nothing invalid was stored");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_strings_are_stored_verbatim() {
    let api = Api::start().await;
    let hostile = [
        ("'; DROP TABLE videos; --", "Robert'); DROP TABLE videos;--", "\" OR 1=1 --"),
        ("quote\"and'apostrophe", "backslash \\ and $1 and %s", "/* comment */"),
        ("ünïcödé-ビデオ-🎬", "Ταινία 🎬 fin\u{301}", "카테고리"),
        ("a/b?c#d%25e+f&g=h", "  spaces kept  ", ";"),
    ];
    for (video_id, title, category) in hostile {
        let body = json!({"title": title, "category": category, "duration_seconds": 10});
        let (status, stored) = api.put(video_id, &body).await;
        assert_eq!(status, 200, "{video_id:?}: {stored}");
        assert_eq!(stored["video_id"], video_id);
        assert_eq!(stored["title"], title);
        assert_eq!(stored["category"], category);
        let (status, read_back) = api.get_video(video_id).await;
        assert_eq!(status, 200, "{video_id:?}: {read_back}");
        assert_eq!(read_back, stored);
    }
    let client = api.postgres.pool().unwrap().get().await.unwrap();
    let rows: i64 = client.query_one("SELECT count(*) FROM videos", &[]).await.unwrap().get(0);
    assert_eq!(rows, hostile.len() as i64, "the table survived and holds each video once");
    let title: String = client
        .query_one("SELECT title FROM videos WHERE video_id = $1", &[&"'; DROP TABLE videos; --"])
        .await
        .unwrap()
        .get(0);
    assert_eq!(title, "Robert'); DROP TABLE videos;--");
    drop(client);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_bodies_unknown_routes_and_methods_get_json_errors() {
    let api = Api::start().await;
    let url = api.video_url("video-1");
    let send = |request: reqwest::RequestBuilder| async move { read(request.send().await.unwrap()).await };

    let malformed = api.http.put(&url).header("content-type", "application/json").body("{\"title\": ");
    let (status, body) = send(malformed).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("json"), "{body}");

    let (status, body) = send(api.http.put(&url).header("content-type", "application/json").body("[1, 2]")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")), "{body}");

    let (status, body) = send(api.http.put(&url).header("content-type", "text/plain").body("{\"title\":\"t\"}")).await;
    assert_eq!((status, body["error"].as_str()), (415, Some("unsupported_media_type")), "{body}");

    let huge = json!({"title": "t", "category": "x".repeat(100 * 1024)});
    let (status, body) = send(api.http.put(&url).json(&huge)).await;
    assert_eq!((status, body["error"].as_str()), (413, Some("payload_too_large")), "{body}");

    let (status, body) = api.get("/api/no/such/route").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")), "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("no route"), "{body}");

    let (status, body) = send(api.http.delete(&url)).await;
    assert_eq!((status, body["error"].as_str()), (405, Some("method_not_allowed")), "{body}");

    let (status, _) = api.get_video("video-1").await;
    assert_eq!(status, 404, "nothing was stored by the refused requests");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_reports_each_dependency() {
    let api = Api::start().await;
    let body = testing::eventually(Duration::from_secs(20), || async {
        let (status, body) = api.get("/api/metrics/health").await;
        anyhow::ensure!(status == 200, "answered {status}: {body}");
        Ok(body)
    })
    .await
    .unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["service"], "query-api");
    let dependencies = body["dependencies"].as_object().unwrap();
    let mut names: Vec<&str> = dependencies.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["api_keys", "clickhouse", "postgres", "redis"]);
    for (name, check) in dependencies {
        assert_eq!(check["status"], "up", "{name}: {check}");
        assert!(check["latency_ms"].is_u64(), "{name}: {check}");
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_names_a_dependency_that_is_down_and_is_503_only_for_a_required_one() {
    let postgres = TestPostgres::create().await.unwrap();
    let keys = postgres.keys().await.unwrap();
    let http = TestKeys::client(&keys.admin);
    let config = Config {
        postgres: postgres.config.clone(),
        redis: service_kit::RedisConfig { url: "redis://127.0.0.1:1".into(), ..testing::redis_config() },
        clickhouse: testing::clickhouse_config(),
        ..Config::default()
    };
    let service = InProcess::spawn(config, query_api::run);
    let (status, body) = read(http.get(service.url("/api/metrics/health")).send().await.unwrap()).await;
    assert_eq!(status, 200, "redis is optional: {body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["dependencies"]["redis"]["status"], "down", "{body}");
    assert_eq!(body["dependencies"]["redis"]["optional"], true, "{body}");
    assert!(body["dependencies"]["clickhouse"].get("optional").is_none(), "{body}");
    assert!(body["dependencies"]["redis"].get("error").is_none(), "the reason goes to the log: {body}");
    assert!(!body.to_string().contains("127.0.0.1:1"), "no address in the answer: {body}");
    assert_eq!(body["dependencies"]["postgres"]["status"], "up", "{body}");

    // The catalog does not need redis.
    let url = service.url("/api/videos/v");
    let stored = http.put(&url).json(&json!({"title": "t"})).send().await.unwrap();
    assert_eq!(stored.status(), 200);
    drop(http);
    service.stop().await.unwrap();

    // ClickHouse is required: without it the report is 503.
    let closed = testing::ClosedPort::new();
    let config = Config {
        postgres: postgres.config.clone(),
        redis: testing::redis_config(),
        clickhouse: service_kit::ClickHouseConfig {
            url: format!("http://{}", closed.addr()),
            ..testing::clickhouse_config()
        },
        ..Config::default()
    };
    let service = InProcess::spawn(config, query_api::run);
    let http = TestKeys::client(&keys.admin);
    let (status, body) = read(http.get(service.url("/api/metrics/health")).send().await.unwrap()).await;
    assert_eq!((status, body["status"].as_str()), (503, Some("unavailable")), "{body}");
    assert_eq!(body["dependencies"]["clickhouse"]["status"], "down", "{body}");
    drop(http);
    service.stop().await.unwrap();
    postgres.drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_covers_every_route_and_each_route_is_served() {
    let api = Api::start().await;
    let (status, doc) = api.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in query_api::routes::routes().table() {
        assert!(paths.get(&path).and_then(|item| item.get(&method)).is_some(), "{method} {path} is not documented");
    }
    for path in ["/api/videos/{videoId}", "/api/metrics/health", "/api/openapi.json", "/health", "/ready", "/metrics"] {
        assert!(paths.contains_key(path), "{path} missing from the document");
    }

    // Every documented operation reaches a handler (not the unknown-route or
    // wrong-method answer).
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let url = api.service.url(&path.replace("{videoId}", "doc-check").replace("{userId}", "doc-check"));
            let request = match method.as_str() {
                "get" => api.http.get(&url),
                "put" => api.http.put(&url).json(&json!({"title": "t"})),
                "post" => api.http.post(&url).json(&json!({"metrics": ["event_count"], "start": "2026-11-01"})),
                other => panic!("unexpected method {other} on {path}"),
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            assert!(status != 405 && !text.contains("no route for"), "{method} {path}: {status} {text}");
        }
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_needs_a_read_token_and_catalog_writes_an_admin_one() {
    let api = Api::start().await;
    let anonymous = Client::new();
    let with = |secret: &str| TestKeys::client(secret);
    let read_routes = [
        "/api/metrics/video/v1",
        "/api/metrics/user/u1",
        "/api/metrics/videos/top",
        "/api/metrics/realtime",
        "/api/metrics/health",
        "/api/videos/v1",
    ];
    for path in read_routes {
        let (status, body) = read(anonymous.get(api.service.url(path)).send().await.unwrap()).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("missing_credentials")), "{path}: {body}");
        let unknown = service_kit::auth::generate_secret();
        let (status, body) = read(with(&unknown).get(api.service.url(path)).send().await.unwrap()).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_credentials")), "{path}: {body}");
        let (status, body) = read(with(&api.keys.ingest).get(api.service.url(path)).send().await.unwrap()).await;
        assert_eq!((status, body["error"].as_str()), (403, Some("insufficient_scope")), "{path}: {body}");
        let (status, body) = read(with(&api.keys.read).get(api.service.url(path)).send().await.unwrap()).await;
        assert!(status != 401 && status != 403, "{path} with a read token: {status} {body}");
    }
    // The API key header of the gateway is not a query-api credential.
    let header = anonymous.get(api.service.url("/api/metrics/realtime")).header("x-api-key", &api.keys.read);
    assert_eq!(read(header.send().await.unwrap()).await.0, 401);
    let custom = json!({"metrics": ["event_count"], "start": "2026-11-01", "end": "2026-11-02"});
    let url = api.service.url("/api/metrics/query");
    assert_eq!(read(anonymous.post(&url).json(&custom).send().await.unwrap()).await.0, 401);

    // Catalog writes: admin only; nothing is written by a refused request.
    let url = api.video_url("v-auth");
    let (status, body) = read(with(&api.keys.read).put(&url).json(&json!({"title": "x"})).send().await.unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("insufficient_scope")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("admin"), "{body}");
    assert_eq!(api.get_video("v-auth").await.0, 404);
    let (status, body) = read(with(&api.keys.admin).put(&url).json(&json!({"title": "x"})).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");

    // Open: the document and the ops routes.
    for path in ["/api/openapi.json", "/health", "/metrics"] {
        assert_eq!(anonymous.get(api.service.url(path)).send().await.unwrap().status(), 200, "{path}");
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_request_rate_gets_429_with_retry_after_and_others_are_untouched() {
    let postgres = TestPostgres::create().await.unwrap();
    let keys = postgres.keys().await.unwrap();
    let mut config = Config {
        postgres: postgres.config.clone(),
        redis: testing::redis_config(),
        clickhouse: testing::clickhouse_config(),
        ..Config::default()
    };
    config.auth.requests_per_second = 3;
    let service = InProcess::spawn(config, query_api::run);
    let read_client = TestKeys::client(&keys.read);
    let url = service.url("/api/openapi.json");
    assert_eq!(read_client.get(&url).send().await.unwrap().status(), 200, "the document is not counted");
    let video = service.url("/api/videos/none");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = read_client.get(&video).send().await.unwrap();
        statuses.push((response.status().as_u16(), response.headers().get("retry-after").cloned()));
    }
    assert_eq!(statuses.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [404, 404, 404, 429], "{statuses:?}");
    assert_eq!(statuses[3].1.as_ref().unwrap(), "1");
    let admin = TestKeys::client(&keys.admin);
    assert_eq!(admin.get(&video).send().await.unwrap().status(), 404, "another token has its own budget");
    drop((read_client, admin));
    service.stop().await.unwrap();
    postgres.drop().await.unwrap();
}
