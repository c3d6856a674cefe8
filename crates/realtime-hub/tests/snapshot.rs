//! Against the local Kafka: `GET /api/metrics/realtime` is served from the
//! snapshot the last tick computed. 200 concurrent requests all answer the
//! pushed payload, byte for byte the same within a tick, and the window is
//! computed once per tick, not once per request.
//!
//! Its own test binary, so the process-wide Prometheus recorder counts the
//! computations of this test's hub only.
#![cfg(test)]

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::{Client, Stack, http, now_ms, scrape};
use realtime_hub::{HubConfig, telemetry::COMPUTE};
use serde_json::Value;

const REQUESTS: usize = 200;

fn as_of_ms(payload: &Value) -> u64 {
    chrono::DateTime::parse_from_rfc3339(payload["as_of"].as_str().unwrap()).unwrap().timestamp_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_gets_answer_the_last_tick_without_computing_the_window() {
    let stack = Stack::new().await;
    let hub = stack.start_hub(HubConfig::default()).await;
    let mut client = Client::connect(&hub, &stack.keys.read).await;
    let expected = stack.produce_scenario();
    client
        .wait_for(Duration::from_secs(15), |m| m["type"] == "realtime_metrics" && expected.matches(&m["payload"]))
        .await
        .unwrap();

    let computations = format!("{COMPUTE}_count");
    let http = http();
    let url = hub.url("/api/metrics/realtime");
    let token = stack.keys.read.as_str();
    let mut attempts = 0;
    loop {
        attempts += 1;
        // Right after a tick (not a message queued earlier), so the requests
        // most likely fall within one.
        let pushed = client
            .wait_for(Duration::from_secs(5), |m| {
                m["type"] == "realtime_metrics" && as_of_ms(&m["payload"]) >= now_ms() / 1000 * 1000
            })
            .await
            .unwrap()["payload"]
            .clone();
        let started_ms = now_ms();
        let before = scrape(&hub, &computations, "").await;
        let answers = futures::future::join_all((0..REQUESTS).map(|_| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let response = http.get(url).bearer_auth(token).send().await.unwrap();
                let status = response.status().as_u16();
                let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
                (status, content_type, response.bytes().await.unwrap())
            }
        }))
        .await;
        let after = scrape(&hub, &computations, "").await;
        let ended_ms = now_ms();
        // Ticks (each one computation) that may have run between the two scrapes.
        let ticks = ended_ms / 1000 - started_ms / 1000;

        let mut bodies: BTreeMap<&[u8], usize> = BTreeMap::new();
        for (status, content_type, body) in &answers {
            assert_eq!(*status, 200, "{}", String::from_utf8_lossy(body));
            assert_eq!(content_type, "application/json");
            *bodies.entry(body.as_ref()).or_default() += 1;
        }
        assert!(
            after - before <= ticks as f64,
            "{REQUESTS} GETs within {ticks} tick(s) computed the window {} times",
            after - before
        );
        assert!(bodies.len() as u64 <= ticks + 1, "{} distinct bodies within {ticks} tick(s)", bodies.len());
        for body in bodies.keys() {
            let payload: Value = serde_json::from_slice(body).unwrap();
            assert!(expected.matches(&payload), "{payload} vs {expected:?}");
            if payload["as_of"] == pushed["as_of"] {
                assert_eq!(payload, pushed, "the pushed realtime_metrics payload");
            }
        }
        if ticks == 0 {
            assert_eq!(bodies.len(), 1, "one tick, one body");
            assert_eq!(serde_json::from_slice::<Value>(bodies.keys().next().unwrap()).unwrap(), pushed);
            eprintln!(
                "{REQUESTS} concurrent GETs in {} ms: one body, {} computations",
                ended_ms - started_ms,
                after - before
            );
            break;
        }
        // A slow machine crossed a second: the checks above held; try again for one tick.
        assert!(attempts < 5, "{attempts} attempts never fit {REQUESTS} GETs within one tick");
    }

    hub.stop().await.unwrap();
    stack.cleanup().await;
}
