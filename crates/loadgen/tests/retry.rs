//! Delivery against a scripted HTTP server: a 503 (or a dropped connection)
//! makes the sender repeat the very same batch, a stop gives up cleanly, the
//! API key goes with every request and a 401 stops the run; the catalog is
//! stored with the admin token, through 429s.
#![cfg(test)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use loadgen::{CancellationToken, Options, SimConfig};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// What the server does with request number `n` (0-based).
#[derive(Clone, Copy)]
enum Reply {
    Unavailable,
    Drop,
    Accept,
    Unauthorized,
    Limited,
}

struct Server {
    url: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    keys: Credentials,
}

/// The `x-api-key` and `authorization` headers of each request, in order
/// (`None`: absent).
type Credentials = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

/// A minimal HTTP/1.1 server: `script(n)` decides the answer to request `n`.
async fn serve(script: fn(usize) -> Reply) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let keys = Arc::new(Mutex::new(Vec::new()));
    let (seen, seen_keys) = (bodies.clone(), keys.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(connection(stream, seen.clone(), seen_keys.clone(), script));
        }
    });
    Server { url, bodies, keys }
}

async fn connection(
    mut stream: TcpStream,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    keys: Credentials,
    script: fn(usize) -> Reply,
) {
    let mut buffer = Vec::new();
    loop {
        let Some(head_end) = read_until_head(&mut stream, &mut buffer).await else { return };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 65536];
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
        let body = buffer[head_end..head_end + length].to_vec();
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let header = |wanted: &str| {
            head.lines()
                .find_map(|l| l.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case(wanted)))
                .map(|(_, value)| value.trim().to_string())
        };
        let key = (header("x-api-key"), header("authorization"));
        buffer.drain(..head_end + length);
        let n = {
            let mut bodies = bodies.lock().unwrap();
            bodies.push(body.clone());
            keys.lock().unwrap().push(key);
            bodies.len() - 1
        };
        // A batch (JSON array), or one video of the catalog (an object).
        let events = serde_json::from_slice::<Vec<serde_json::Value>>(&body).map_or(1, |events| events.len());
        let (status, extra, json) = match script(n) {
            Reply::Drop => return,
            Reply::Unavailable => (
                "503 Service Unavailable",
                "retry-after: 0\r\n",
                r#"{"error":"kafka_unavailable","message":"try later","retry_after_seconds":0}"#.to_string(),
            ),
            Reply::Accept => ("202 Accepted", "", format!(r#"{{"accepted":{events},"event_ids":[]}}"#)),
            Reply::Limited => (
                "429 Too Many Requests",
                "retry-after: 0\r\n",
                r#"{"error":"rate_limited","message":"over the requests per second limit"}"#.to_string(),
            ),
            Reply::Unauthorized => (
                "401 Unauthorized",
                "www-authenticate: Bearer realm=\"analytics\"\r\n",
                r#"{"error":"invalid_credentials","message":"the key is not valid (unknown or revoked)"}"#.to_string(),
            ),
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n{json}",
            json.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn read_until_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 65536];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn options(url: &str, duration_ms: u64) -> Options {
    Options {
        sim: SimConfig { rate: 200.0, seed: 9, salt: 1, ..SimConfig::default() },
        duration: Some(Duration::from_millis(duration_ms)),
        gateway: url.to_string(),
        batch_max: 1000,
        batch_interval: Duration::from_millis(300),
        concurrency: 1,
        drain_timeout: Duration::from_secs(5),
        ..Options::default()
    }
}

#[tokio::test]
async fn a_503_and_a_dropped_connection_are_retried_with_the_same_batch() {
    let server = serve(|n| match n {
        0 => Reply::Unavailable,
        1 => Reply::Drop,
        _ => Reply::Accept,
    })
    .await;
    let summary = loadgen::run(options(&server.url, 500), CancellationToken::new()).await.unwrap();
    assert!(summary.is_clean(), "{summary:#?}");
    assert_eq!(summary.retries, 2, "{summary:#?}");
    let bodies = server.bodies.lock().unwrap();
    assert_eq!(bodies[0], bodies[1], "a retry resends the same bytes, event ids included");
    assert_eq!(bodies[1], bodies[2]);
    let total: usize =
        bodies[2..].iter().map(|b| serde_json::from_slice::<Vec<serde_json::Value>>(b).unwrap().len()).sum();
    assert_eq!(total as u64, summary.accepted);
    assert_eq!(summary.accepted, summary.generated);
}

#[tokio::test]
async fn a_stop_gives_up_on_a_gateway_that_never_accepts() {
    let server = serve(|_| Reply::Unavailable).await;
    let mut options = options(&server.url, 300);
    options.drain_timeout = Duration::from_millis(700);
    let summary = loadgen::run(options, CancellationToken::new()).await.unwrap();
    assert_eq!(summary.accepted, 0);
    assert!(summary.retries >= 2, "{summary:#?}");
    assert_eq!(summary.failed + summary.unsent, summary.generated, "{summary:#?}");
    assert!(!summary.is_clean());
}

#[tokio::test]
async fn the_api_key_goes_with_every_request_retries_included() {
    let server = serve(|n| if n == 0 { Reply::Unavailable } else { Reply::Accept }).await;
    let with_key = Options { api_key: Some("ak_0123456789".to_string()), ..options(&server.url, 700) };
    let summary = loadgen::run(with_key, CancellationToken::new()).await.unwrap();
    assert!(summary.is_clean(), "{summary:#?}");
    let keys = server.keys.lock().unwrap().clone();
    assert!(keys.len() >= 2, "{keys:?}");
    assert!(keys.iter().all(|(k, _)| k.as_deref() == Some("ak_0123456789")), "{keys:?}");

    // Without a key configured, no header is sent.
    let bare = serve(|_| Reply::Accept).await;
    loadgen::run(options(&bare.url, 300), CancellationToken::new()).await.unwrap();
    let keys = bare.keys.lock().unwrap();
    assert!(!keys.is_empty() && keys.iter().all(|(k, _)| k.is_none()), "{keys:?}");
}

#[tokio::test]
async fn a_401_rejects_the_batch_and_stops_a_run_without_end() {
    let server = serve(|_| Reply::Unauthorized).await;
    let endless = Options { duration: None, api_key: Some("ak_revoked000".to_string()), ..options(&server.url, 1) };
    let summary = tokio::time::timeout(Duration::from_secs(20), loadgen::run(endless, CancellationToken::new()))
        .await
        .expect("the run stops by itself")
        .unwrap();
    assert_eq!(summary.accepted, 0);
    assert_eq!(summary.retries, 0, "a refused key is not retried: {summary:#?}");
    assert_eq!(summary.rejected + summary.failed + summary.unsent, summary.generated, "{summary:#?}");
    assert!(summary.rejected > 0);
    assert!(!summary.is_clean());
    let reason = &summary.rejection_reasons[0];
    assert!(reason.contains("HTTP 401 invalid_credentials") && reason.contains(loadgen::KEY_REFUSED), "{reason}");
}

#[tokio::test]
async fn the_catalog_is_stored_with_the_admin_token_through_rate_limits() {
    let server = serve(|n| if n % 3 == 1 { Reply::Limited } else { Reply::Accept }).await;
    let catalog = loadgen::Catalog::new(3, 5, 10);
    let stats = loadgen::Stats::default();
    loadgen::put_catalog(
        &reqwest::Client::new(),
        &server.url,
        Some("ak_admin00000"),
        &catalog,
        &stats,
        &CancellationToken::new(),
    )
    .await
    .expect("every video stored, the 429s waited out");
    assert_eq!(stats.catalog_videos.load(std::sync::atomic::Ordering::Relaxed), 5);
    let keys = server.keys.lock().unwrap().clone();
    assert!(keys.len() > 5, "some requests were answered 429 and sent again: {keys:?}");
    assert!(keys.iter().all(|(_, auth)| auth.as_deref() == Some("Bearer ak_admin00000")), "{keys:?}");

    let refusing = serve(|_| Reply::Unauthorized).await;
    let err =
        loadgen::put_catalog(&reqwest::Client::new(), &refusing.url, None, &catalog, &stats, &CancellationToken::new())
            .await
            .unwrap_err()
            .to_string();
    assert!(err.contains("401") && err.contains("admin scope"), "{err}");
}
