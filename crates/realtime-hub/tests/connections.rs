//! Against the local Kafka: the connections gauge, ping/pong keepalive and
//! the connection limit. Alone in its test binary, so the process-wide
//! gauge is this hub's alone.
#![cfg(test)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use common::{Client, Stack, scrape};
use futures::StreamExt as _;
use realtime_hub::HubConfig;
use service_kit::testing::{InProcess, eventually};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::{self, Message};

const GAUGE: &str = "analytics_service_websocket_connections";

/// Reads a client in the background (so it answers pings) until told to close.
struct Live {
    metrics: Arc<AtomicU64>,
    close: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn keep_reading(mut client: Client) -> Live {
    let metrics = Arc::new(AtomicU64::new(0));
    let (close, mut closing) = oneshot::channel();
    let counter = metrics.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut closing => {
                    let _ = client.ws.close(None).await;
                    // Until the server's close frame ends the handshake.
                    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(3), client.ws.next()).await {}
                    return;
                }
                frame = client.ws.next() => match frame {
                    Some(Ok(Message::Text(text))) if text.as_str().contains("\"realtime_metrics\"") => {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
        }
    });
    Live { metrics, close, task }
}

async fn gauge_is(hub: &InProcess, expected: f64) {
    eventually(Duration::from_secs(10), || async {
        let value = scrape(hub, GAUGE, "").await;
        anyhow::ensure!(value == expected, "{GAUGE} is {value}, expected {expected}");
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_counted_dead_clients_closed_and_the_limit_enforced() {
    let stack = Stack::new().await;
    let hub = stack
        .start_hub(HubConfig {
            ping_interval: Duration::from_millis(250),
            client_timeout: Duration::from_millis(1500),
            max_connections: 3,
            ..HubConfig::default()
        })
        .await;
    gauge_is(&hub, 0.0).await;

    let first = keep_reading(Client::connect(&hub, &stack.keys.read).await);
    let second = keep_reading(Client::connect(&hub, &stack.keys.read).await);
    // Connected, then silent: it never reads, so it never answers a ping.
    let mut dead = Client::connect(&hub, &stack.keys.read).await;
    gauge_is(&hub, 3.0).await;

    // Full: the next one is refused.
    match tokio_tungstenite::connect_async(format!("ws://{}/ws?token={}", hub.addr, stack.keys.read)).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("a fourth connection was not refused: {:?}", other.map(|(_, r)| r.status())),
    }
    let rejected = scrape(&hub, "analytics_service_websocket_connections_rejected_total", "").await;
    assert_eq!(rejected, 1.0);

    // The silent client is closed after the keepalive timeout; the others stay.
    gauge_is(&hub, 2.0).await;
    let timeouts = scrape(&hub, "analytics_service_websocket_disconnects_total", "reason=\"keepalive_timeout\"").await;
    assert_eq!(timeouts, 1.0);
    // When it reads at last, its connection has ended (the close frame says
    // "keepalive timeout"; tungstenite may first fail to answer the old pings).
    let ended = format!("{:#}", dead.wait_for(Duration::from_secs(5), |_| false).await.unwrap_err());
    assert!(!ended.contains("no message within"), "the dead client's connection is still open: {ended}");

    let seen = first.metrics.load(Ordering::SeqCst);
    eventually(Duration::from_secs(5), || async {
        let now = first.metrics.load(Ordering::SeqCst);
        anyhow::ensure!(now >= seen + 2, "the live client got {now} figures, {seen} before");
        anyhow::ensure!(second.metrics.load(Ordering::SeqCst) >= 2, "the second live client starves");
        Ok(())
    })
    .await
    .unwrap();

    // A slot is free again.
    let mut another = Client::connect(&hub, &stack.keys.read).await;
    another.next_of("realtime_metrics", Duration::from_secs(3)).await.unwrap();
    gauge_is(&hub, 3.0).await;
    another.ws.close(None).await.unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(3), another.ws.next()).await {}

    // Closing goes down to zero.
    for live in [first, second] {
        live.close.send(()).unwrap();
        live.task.await.unwrap();
    }
    gauge_is(&hub, 0.0).await;
    let closed = scrape(&hub, "analytics_service_websocket_disconnects_total", "reason=\"client_closed\"").await;
    assert_eq!(closed, 3.0);

    hub.stop().await.unwrap();
    stack.cleanup().await;
}
