//! Delivery against a scripted HTTP server: a 503 (or a dropped connection)
//! makes the sender repeat the very same batch, and a stop gives up cleanly.
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
}

struct Server {
    url: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// A minimal HTTP/1.1 server: `script(n)` decides the answer to request `n`.
async fn serve(script: fn(usize) -> Reply) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(connection(stream, seen.clone(), script));
        }
    });
    Server { url, bodies }
}

async fn connection(mut stream: TcpStream, bodies: Arc<Mutex<Vec<Vec<u8>>>>, script: fn(usize) -> Reply) {
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
        buffer.drain(..head_end + length);
        let n = {
            let mut bodies = bodies.lock().unwrap();
            bodies.push(body.clone());
            bodies.len() - 1
        };
        let events: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        let (status, extra, json) = match script(n) {
            Reply::Drop => return,
            Reply::Unavailable => (
                "503 Service Unavailable",
                "retry-after: 0\r\n",
                r#"{"error":"kafka_unavailable","message":"try later","retry_after_seconds":0}"#.to_string(),
            ),
            Reply::Accept => ("202 Accepted", "", format!(r#"{{"accepted":{},"event_ids":[]}}"#, events.len())),
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
