//! Against the local Kafka: the realtime figures the hub pushes every second
//! equal the definitions computed here from the partials produced (with
//! duplicates), on every replica and after a restart.
#![cfg(test)]

mod common;

use std::time::Duration;

use chrono::DateTime;
use common::{Client, Expected, Stack, http, now_ms, scenario};
use realtime_hub::HubConfig;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

fn as_of_ms(payload: &Value) -> i64 {
    DateTime::parse_from_rfc3339(payload["as_of"].as_str().unwrap()).unwrap().timestamp_millis()
}

/// Waits for a `realtime_metrics` showing `expected` and the `top_videos` that follows it.
async fn wait_for_figures(client: &mut Client, expected: &Expected) -> Value {
    let message = client
        .wait_for(WAIT, |m| m["type"] == "realtime_metrics" && expected.matches(&m["payload"]))
        .await
        .unwrap_or_else(|e| panic!("no realtime_metrics showing {expected:?}: {e:#}"));
    let top = client.next_of("top_videos", Duration::from_secs(3)).await.unwrap();
    assert!(expected.matches_top(&top["payload"]), "top_videos {top} but expected {:?}", expected.top);
    message["payload"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_metrics_arrive_every_second_and_match_the_partials() {
    let stack = Stack::new().await;
    let hub = stack.start_hub(HubConfig::default()).await;
    let mut client = Client::connect(&hub, &stack.keys.read).await;

    let history = client.next(WAIT).await.unwrap();
    assert_eq!(history["type"], "metrics_history", "{history}");
    assert!(history["payload"].is_array());

    // Every second, on the second, an empty window to begin with (a busy
    // machine may coalesce one tick into the next: at most one is skipped).
    let mut previous: Option<i64> = None;
    let mut elapsed = 0;
    for _ in 0..4 {
        let message = client.next_of("realtime_metrics", Duration::from_secs(3)).await.unwrap();
        let payload = &message["payload"];
        assert_eq!(payload["concurrent_viewers"], 0, "{payload}");
        assert_eq!(payload["window_seconds"], 60);
        let as_of = as_of_ms(payload);
        assert_eq!(as_of % 1000, 0, "aligned to the second: {payload}");
        if let Some(previous) = previous {
            assert!(as_of > previous && (as_of - previous) % 1000 == 0, "{previous} then {as_of}");
            elapsed += as_of - previous;
        }
        previous = Some(as_of);
        let top = client.next(Duration::from_secs(3)).await.unwrap();
        assert_eq!(top, serde_json::json!({"type": "top_videos", "payload": []}));
    }

    assert!(elapsed <= 4000, "three ticks took {elapsed} ms");

    let partials = scenario(now_ms());
    stack.produce_partials(&partials);
    let payload = wait_for_figures(&mut client, &Expected::of(&partials, now_ms())).await;
    let expected = Expected::of(&partials, as_of_ms(&payload) as u64);
    assert!(expected.matches(&payload), "{payload} vs {expected:?}");
    // The scenario is not trivial: duplicates were dropped, ends and errors seen.
    assert_eq!(expected.events, 12 * 5, "each of the 12 views has 5 distinct events");
    assert_eq!(expected.viewers, 8, "2 completed and 2 fatal errors of 12 views");
    assert!(expected.errors == 4 && expected.bandwidth_kbps > 0, "{expected:?}");

    // The REST endpoint answers from the same state.
    let rest: Value = http()
        .get(hub.url("/api/metrics/realtime"))
        .bearer_auth(&stack.keys.read)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut keys: Vec<&String> = rest.as_object().unwrap().keys().collect();
    keys.sort();
    let mut ws_keys: Vec<&String> = payload.as_object().unwrap().keys().collect();
    ws_keys.sort();
    assert_eq!(keys, ws_keys, "the same object");
    assert!(Expected::of(&partials, as_of_ms(&rest) as u64).matches(&rest), "{rest}");
    // It takes no parameters, like query-api's: a 400 that names the one given.
    let refused =
        http().get(hub.url("/api/metrics/realtime?window=30")).bearer_auth(&stack.keys.read).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!((body["error"].as_str(), body["field"].as_str()), (Some("bad_request"), Some("window")), "{body}");

    // Another second later the figures are the same (nothing left the window).
    let next = client.next_of("realtime_metrics", Duration::from_secs(3)).await.unwrap();
    assert!(as_of_ms(&next["payload"]) > as_of_ms(&payload));
    assert!(expected.matches(&next["payload"]), "{next}");

    hub.stop().await.unwrap();
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_give_the_same_realtime_metrics() {
    let stack = Stack::new().await;
    let first = stack.start_hub(HubConfig::default()).await;
    let second = stack.start_hub(HubConfig::default()).await;
    let mut a = Client::connect(&first, &stack.keys.read).await;
    let mut b = Client::connect(&second, &stack.keys.read).await;

    let expected = stack.produce_scenario();
    wait_for_figures(&mut a, &expected).await;
    wait_for_figures(&mut b, &expected).await;

    // Ticks are aligned to the wall clock: both compute the same windows.
    let mut seen_a = std::collections::HashMap::new();
    let mut common = None;
    for _ in 0..5 {
        let message = a.next_of("realtime_metrics", Duration::from_secs(3)).await.unwrap();
        seen_a.insert(as_of_ms(&message["payload"]), message["payload"].clone());
        let message = b.next_of("realtime_metrics", Duration::from_secs(3)).await.unwrap();
        if let Some(same_second) = seen_a.get(&as_of_ms(&message["payload"])) {
            common = Some((same_second.clone(), message["payload"].clone()));
            break;
        }
    }
    let (from_a, from_b) = common.expect("both replicas reported the same second");
    assert_eq!(from_a, from_b);
    assert!(expected.matches(&from_a));

    first.stop().await.unwrap();
    second.stop().await.unwrap();
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hub_refills_its_window_from_the_partials_topic() {
    let stack = Stack::new().await;
    let hub = stack.start_hub(HubConfig::default()).await;
    let mut client = Client::connect(&hub, &stack.keys.read).await;
    let expected = stack.produce_scenario();
    let before = wait_for_figures(&mut client, &expected).await;

    // Stopping says goodbye to the client.
    hub.stop().await.unwrap();
    let closed = format!("{:#}", client.wait_for(WAIT, |_| false).await.unwrap_err());
    assert!(!closed.contains("no message within"), "the connection outlived the hub: {closed}");

    // A new hub (another port): the client reconnects and gets the same figures at once.
    let restarted = stack.start_hub(HubConfig::default()).await;
    let mut client = Client::connect(&restarted, &stack.keys.read).await;
    let after = wait_for_figures(&mut client, &expected).await;
    for field in ["concurrent_viewers", "active_streams", "bandwidth_gbps", "events_per_second", "error_rate"] {
        assert_eq!(before[field], after[field], "{field}");
    }
    restarted.stop().await.unwrap();
    stack.cleanup().await;
}
