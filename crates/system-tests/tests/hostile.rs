//! The hostile-request suite (issue 13): every service of the pipeline
//! started on topics and databases of its own and attacked over HTTP and
//! WebSocket only, as an outsider would: missing, wrong, revoked and
//! wrong-scope keys on every route, a WebSocket upgrade from a foreign page,
//! gzip bombs, bodies dripping in, floods of the most expensive custom
//! query and of realtime reads. Each case asserts the exact status; valid
//! events sent by a player meanwhile must be stored exactly once.
#![cfg(test)]

#[path = "../../realtime-hub/tests/common/mod.rs"]
mod common;
mod pipeline;
mod support;

use std::{
    io::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::http;
use pipeline::Pipeline;
use realtime_hub::HubConfig;
use reqwest::Method;
use serde_json::{Value, json};
use service_kit::testing::{InProcess, eventually};
use uuid::Uuid;

/// Where a route lives and what it needs.
#[derive(Clone, Copy)]
enum Service {
    Gateway,
    Api,
    Hub,
}

/// Every protected route: service, method, path, the scope it needs and a body.
fn protected_routes() -> Vec<(Service, Method, &'static str, &'static str, Option<Value>)> {
    let event = json!({"event_type": "video_start", "session_id": "hostile", "video_id": "v-hostile"});
    let query = json!({"metrics": ["event_count"], "start": "2026-11-01", "end": "2026-11-02"});
    vec![
        (Service::Gateway, Method::POST, "/api/events", "ingest", Some(event.clone())),
        (Service::Gateway, Method::POST, "/api/events/batch", "ingest", Some(json!([event]))),
        (Service::Api, Method::GET, "/api/metrics/video/v1", "read", None),
        (Service::Api, Method::GET, "/api/metrics/user/u1", "read", None),
        (Service::Api, Method::GET, "/api/metrics/videos/top", "read", None),
        (Service::Api, Method::GET, "/api/metrics/realtime", "read", None),
        (Service::Api, Method::GET, "/api/metrics/health", "read", None),
        (Service::Api, Method::POST, "/api/metrics/query", "read", Some(query)),
        (Service::Api, Method::GET, "/api/videos/v1", "read", None),
        (
            Service::Api,
            Method::PUT,
            "/api/videos/v1",
            "admin",
            Some(json!({"title": "hijacked", "duration_seconds": 1e-300})),
        ),
        (Service::Hub, Method::GET, "/api/metrics/realtime", "read", None),
        (Service::Hub, Method::GET, "/ws", "read", None),
    ]
}

/// Sends `request` with the credential in the place each service reads it.
async fn send(
    service: &InProcess,
    kind: Service,
    method: Method,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> (u16, Value) {
    let mut request = http().request(method, service.url(path));
    if let Some(body) = body {
        request = request.json(body);
    }
    if let Some(key) = key {
        request = match kind {
            Service::Gateway => request.header("x-api-key", key),
            Service::Api | Service::Hub => request.bearer_auth(key),
        };
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Sends the head of a POST announcing 200 bytes, then one byte every 2 s;
/// returns the answer's status line, or "closed" when the server hung up
/// without one, and how long it took.
async fn drip(addr: std::net::SocketAddr, path: &str, auth: &str) -> (String, Duration) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{{"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        tokio::select! {
            read = socket.read(&mut buffer) => {
                let n = read.unwrap_or(0);
                if n == 0 { break; }
                answer.extend_from_slice(&buffer[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") { break; }
            }
            () = tokio::time::sleep(Duration::from_secs(2)) => {
                if socket.write_all(b" ").await.is_err() { break; }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(40), "{path}: still open after {:?}", started.elapsed());
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().filter(|l| !l.is_empty()).unwrap_or("closed").to_owned();
    (status, started.elapsed())
}

/// Valid events a player keeps sending while the suite runs; every
/// accepted one must be stored once.
struct Player {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Player {
    fn start(gateway: String, key: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), sent.clone());
        let task = tokio::spawn(async move {
            let client = http();
            let mut ids = Vec::new();
            let mut n = 0usize;
            while !flag.load(Ordering::SeqCst) {
                let batch: Vec<Value> = (0..10)
                    .map(|i| {
                        n += 1;
                        json!({"event_id": Uuid::new_v4(), "event_type": "video_progress", "session_id": format!("player-{}", i),
                               "video_id": "v-player", "properties": {"position_seconds": n as f64}})
                    })
                    .collect();
                let answer = client
                    .post(format!("{gateway}/api/events/batch"))
                    .header("x-api-key", &key)
                    .json(&batch)
                    .send()
                    .await
                    .expect("the player's request is answered");
                assert_eq!(answer.status(), 202, "valid traffic is accepted during the attack");
                ids.extend(batch.iter().map(|e| e["event_id"].as_str().unwrap().to_owned()));
                count.fetch_add(batch.len(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await; // the player's pace, not a wait for anything
            }
            ids
        });
        Self { stop, sent, task }
    }

    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        let ids = self.task.await.expect("the player ran to its end");
        assert_eq!(ids.len(), self.sent.load(Ordering::SeqCst));
        ids
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_their_exact_refusal_and_valid_traffic_is_stored_once() {
    let pipeline = Pipeline::start(HubConfig::default()).await;
    let Pipeline { gateway, hub, api, stack, clickhouse, .. } = &pipeline;
    let keys = &stack.keys;
    let player = Player::start(gateway.url("").trim_end_matches('/').to_owned(), keys.ingest.clone());

    // Keys: missing, unknown, wrong scope, right scope, on every route.
    let key_of = |scope: &str| match scope {
        "ingest" => keys.ingest.as_str(),
        "read" => keys.read.as_str(),
        _ => keys.admin.as_str(),
    };
    let unknown = service_kit::auth::generate_secret();
    for (kind, method, path, scope, body) in protected_routes() {
        let service = match kind {
            Service::Gateway => gateway,
            Service::Api => api,
            Service::Hub => hub,
        };
        let what = format!("{method} {path} ({scope})");
        let (status, answer) = send(service, kind, method.clone(), path, body.as_ref(), None).await;
        assert_eq!((status, answer["error"].as_str()), (401, Some("missing_credentials")), "{what}: {answer}");
        let (status, answer) = send(service, kind, method.clone(), path, body.as_ref(), Some(&unknown)).await;
        assert_eq!((status, answer["error"].as_str()), (401, Some("invalid_credentials")), "{what}: {answer}");
        let wrong = if scope == "ingest" { keys.read.as_str() } else { keys.ingest.as_str() };
        let (status, answer) = send(service, kind, method.clone(), path, body.as_ref(), Some(wrong)).await;
        assert_eq!((status, answer["error"].as_str()), (403, Some("insufficient_scope")), "{what}: {answer}");
        if scope == "admin" {
            let (status, answer) = send(service, kind, method.clone(), path, body.as_ref(), Some(&keys.read)).await;
            assert_eq!(status, 403, "{what} with a read token: {answer}");
            let (status, _) = send(api, Service::Api, Method::GET, "/api/videos/v1", None, Some(&keys.admin)).await;
            assert_eq!(status, 404, "the refused catalog writes stored nothing");
        }
        let (status, answer) = send(service, kind, method.clone(), path, body.as_ref(), Some(key_of(scope))).await;
        assert!(![401, 403, 429].contains(&status) && status < 500, "{what} with its key: {status} {answer}");
    }

    // A revoked key stops working everywhere within 30 s.
    let pool = stack.postgres.pool().unwrap();
    let client = pool.get().await.unwrap();
    let doomed =
        service_kit::auth::create_key(&client, "doomed", &[service_kit::auth::Scope::Read], &[]).await.unwrap();
    let doomed_ingest =
        service_kit::auth::create_key(&client, "doomed-ingest", &[service_kit::auth::Scope::Ingest], &[])
            .await
            .unwrap();
    assert_eq!(send(api, Service::Api, Method::GET, "/api/metrics/realtime", None, Some(&doomed.secret)).await.0, 200);
    service_kit::auth::revoke_key(&client, &doomed.id).await.unwrap();
    service_kit::auth::revoke_key(&client, &doomed_ingest.id).await.unwrap();
    eventually(Duration::from_secs(30), || async {
        let api_status =
            send(api, Service::Api, Method::GET, "/api/metrics/realtime", None, Some(&doomed.secret)).await.0;
        let hub_status =
            send(hub, Service::Hub, Method::GET, "/api/metrics/realtime", None, Some(&doomed.secret)).await.0;
        let event = json!({"event_type": "video_start", "session_id": "revoked", "video_id": "v-revoked"});
        let gateway_status =
            send(gateway, Service::Gateway, Method::POST, "/api/events", Some(&event), Some(&doomed_ingest.secret))
                .await
                .0;
        anyhow::ensure!(
            [api_status, hub_status, gateway_status] == [401, 401, 401],
            "revoked keys still answer {api_status}, {hub_status}, {gateway_status}"
        );
        Ok(())
    })
    .await
    .unwrap();

    // A foreign page opening the live feed, even with a valid token.
    {
        use tokio_tungstenite::tungstenite::{client::IntoClientRequest as _, http::HeaderValue};
        let mut request = format!("ws://{}/ws?token={}", hub.addr, keys.read).into_client_request().unwrap();
        request.headers_mut().insert("origin", HeaderValue::from_static("https://evil.example"));
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
            other => panic!("a foreign origin opened the feed: {:?}", other.map(|(_, r)| r.status())),
        }
    }

    // Gzip bombs: 64 MiB of zeros in ~64 KiB, on ingest and on the query API.
    let bomb = gzip(&vec![b' '; 64 << 20]);
    let answer = http()
        .post(gateway.url("/api/events/batch"))
        .header("x-api-key", &keys.ingest)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 413, "ingest gzip bomb");
    let answer = http()
        .post(api.url("/api/metrics/query"))
        .bearer_auth(&keys.read)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 413, "query gzip bomb");

    // Bodies dripping in: cut at the body timeout (10 s) with 408 or a close.
    let bearer = format!("authorization: Bearer {}", keys.read);
    let ingest = format!("x-api-key: {}", keys.ingest);
    let (dripped_ingest, dripped_query) =
        tokio::join!(drip(gateway.addr, "/api/events", &ingest), drip(api.addr, "/api/metrics/query", &bearer));
    for (what, (status, took)) in [("ingest", dripped_ingest), ("query", dripped_query)] {
        assert!(status.contains(" 408") || status == "closed", "{what} drip answered {status}");
        assert!(took < Duration::from_secs(20), "{what} drip held for {took:?}");
    }

    // 20 concurrent maximal custom queries with one token: 200 or 429, never 5xx.
    let now = chrono::Utc::now();
    let maximal = json!({
        "metrics": metrics_sql::custom::METRICS.iter().map(|m| m.name).collect::<Vec<_>>(),
        "group_by": ["video_id", "device_type", "country", "event_type"],
        "start": (now - chrono::Duration::days(365)).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "end": now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "limit": 10_000,
    });
    let answers =
        futures::future::join_all(
            (0..20).map(|_| {
                let body = maximal.clone();
                async move {
                    send(api, Service::Api, Method::POST, "/api/metrics/query", Some(&body), Some(&keys.read)).await
                }
            }),
        )
        .await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}: {:?}", answers.iter().find(|a| a.0 >= 500));
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&429), "two run at once per token, the others wait their turn: {statuses:?}");
    eprintln!("20 concurrent maximal custom queries: {statuses:?}");
    // Ingest kept flowing meanwhile: what the player had sent by the end of
    // the flood is stored within seconds, not after a backlog.
    let sent_by_now = player.sent.load(Ordering::SeqCst) as u64;
    let db = clickhouse.client();
    eventually(Duration::from_secs(15), || async {
        let stored: u64 = db.query("SELECT count() FROM events WHERE video_id = 'v-player'").fetch_one().await?;
        anyhow::ensure!(
            stored >= sent_by_now,
            "{stored} of the {sent_by_now} events sent before the flood ended stored"
        );
        Ok(())
    })
    .await
    .unwrap();

    // 200 concurrent realtime GETs on the hub: all answered.
    let answers = futures::future::join_all(
        (0..200).map(|_| send(hub, Service::Hub, Method::GET, "/api/metrics/realtime", None, Some(&keys.read))),
    )
    .await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{:?}", answers.iter().find(|a| a.0 != 200));

    // The player's events: each stored exactly once.
    let ids = player.finish().await;
    assert!(ids.len() >= 50, "the player sent {} events", ids.len());
    let expected = ids.len() as u64;
    eventually(Duration::from_secs(60), || async {
        let (rows, distinct): (u64, u64) =
            db.query("SELECT count(), uniqExact(event_id) FROM events WHERE video_id = 'v-player'").fetch_one().await?;
        anyhow::ensure!(rows == expected && distinct == expected, "{rows} rows, {distinct} ids, {expected} sent");
        Ok(())
    })
    .await
    .unwrap();
    let stored: Vec<String> = db
        .query("SELECT toString(event_id) FROM events WHERE video_id = 'v-player' ORDER BY event_id")
        .fetch_all()
        .await
        .unwrap();
    let mut sent = ids;
    sent.sort();
    let mut stored = stored;
    stored.sort();
    assert_eq!(stored, sent, "exactly the accepted events");

    drop(client);
    pipeline.stop().await;
}
