//! Against the local Kafka: the live event feed (filters, errors, sampling,
//! a slow client) and the dashboard page.
#![cfg(test)]

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use common::{Client, Stack, event, http, now_ms, scrape};
use events_model::{Event, EventType};
use realtime_hub::HubConfig;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

fn event_id(message: &Value) -> String {
    message["payload"]["event_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_filters_the_feed_by_video_and_event_type() {
    let stack = Stack::new().await;
    let hub = stack.start_hub(HubConfig::default()).await;
    let mut client = Client::connect(&hub, &stack.keys.read).await;
    client
        .send(json!({"type": "subscribe", "payload": {
            "video_ids": ["video-b", "video-a"], "event_types": ["video_error", "video_start"]}}))
        .await;
    let ack = client.next_of("subscribed", WAIT).await.unwrap();
    assert_eq!(
        ack["payload"],
        json!({"video_ids": ["video-a", "video-b"], "event_types": ["video_start", "video_error"]})
    );

    let sessions = ["s1", "s2", "s3", "s4"];
    let mut events = Vec::new();
    let mut wanted = HashSet::new();
    for session in sessions {
        for video in ["video-a", "video-b", "video-c"] {
            for event_type in [EventType::VideoStart, EventType::VideoProgress, EventType::VideoError, EventType::Seek]
            {
                let e = event(event_type, session, video);
                if video != "video-c" && matches!(event_type, EventType::VideoStart | EventType::VideoError) {
                    wanted.insert(e.event_id.to_string());
                }
                events.push(e);
            }
        }
    }
    // Last, one matching event per session (so per partition): when it has
    // arrived, every event before it in its partition has been through the filter.
    let sentinels: Vec<Event> = sessions.iter().map(|s| event(EventType::VideoStart, s, "video-a")).collect();
    wanted.extend(sentinels.iter().map(|e| e.event_id.to_string()));
    stack.produce_events(&events);
    stack.produce_events(&sentinels);

    let mut received: HashMap<String, Value> = HashMap::new();
    while received.len() < wanted.len() {
        let message = client
            .next_of("analytics_event", WAIT)
            .await
            .unwrap_or_else(|e| panic!("{} of {} events: {e:#}", received.len(), wanted.len()));
        let id = event_id(&message);
        assert!(wanted.contains(&id), "an event the filter excludes arrived: {message}");
        assert_eq!(message["sample_rate"], 1.0, "{message}");
        received.insert(id, message);
    }
    // The payload is the event.
    let sent = &events[0];
    let message = &received[&sent.event_id.to_string()];
    let payload = &message["payload"];
    for field in
        ["event_id", "event_type", "user_id", "session_id", "video_id", "timestamp", "received_at", "properties"]
    {
        assert!(payload.get(field).is_some(), "payload lacks {field}: {payload}");
    }
    assert_eq!(payload, &serde_json::to_value(sent).unwrap());

    // Unsubscribing brings every event back.
    client.send(json!({"type": "unsubscribe"})).await;
    let ack = client.next_of("subscribed", WAIT).await.unwrap();
    assert_eq!(ack["payload"], json!({"video_ids": [], "event_types": []}));
    let other = event(EventType::Seek, "s9", "video-z");
    stack.produce_events(std::slice::from_ref(&other));
    let id = other.event_id.to_string();
    client.wait_for(WAIT, |m| m["type"] == "analytics_event" && event_id(m) == id).await.unwrap();

    hub.stop().await.unwrap();
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_event_is_shown_once() {
    let stack = Stack::new().await;
    let hub = stack.start_hub(HubConfig::default()).await;
    let mut client = Client::connect(&hub, &stack.keys.read).await;
    // A client retry the gateway accepted twice: one id, two messages (the
    // second stamped on receipt a little later), then a sentinel after them
    // in the same partition.
    let first = event(EventType::VideoStart, "s-retry", "video-r");
    let mut retry = first.clone();
    retry.received_at += chrono::Duration::milliseconds(800);
    let sentinel = event(EventType::VideoProgress, "s-retry", "video-r");
    stack.produce_events(&[first.clone(), retry, sentinel.clone()]);

    let (first_id, sentinel_id) = (first.event_id.to_string(), sentinel.event_id.to_string());
    let mut shown = Vec::new();
    loop {
        let message = client.next_of("analytics_event", WAIT).await.unwrap();
        let id = event_id(&message);
        if id == sentinel_id {
            break;
        }
        shown.push(id);
    }
    assert_eq!(shown, vec![first_id], "the retry is not shown again");
    let duplicates = scrape(&hub, "analytics_service_hub_messages_consumed_total", "outcome=\"duplicate\"").await;
    assert!(duplicates >= 1.0, "counted as a duplicate: {duplicates}");

    hub.stop().await.unwrap();
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_subscribe_gets_an_error_and_the_connection_stays() {
    let stack = Stack::new().await;
    let hub = stack.start_hub(HubConfig::default()).await;
    let mut client = Client::connect(&hub, &stack.keys.read).await;

    client.send(json!({"type": "subscribe", "payload": {"event_types": ["video_start", "video_stop"]}})).await;
    let error = client.next_of("error", WAIT).await.unwrap();
    let text = error["payload"]["message"].as_str().unwrap();
    assert!(text.contains("\"video_stop\"") && text.contains("video_start"), "{text}");

    client.send(json!({"type": "subscribe", "payload": {"video_ids": "video-a"}})).await;
    let error = client.next_of("error", WAIT).await.unwrap();
    assert!(error["payload"]["message"].as_str().unwrap().contains("video_ids"), "{error}");
    client.send(json!({"type": "dance"})).await;
    client.next_of("error", WAIT).await.unwrap();

    // Still connected: figures keep coming and a valid subscribe works.
    client.next_of("realtime_metrics", Duration::from_secs(3)).await.unwrap();
    client.send(json!({"type": "subscribe", "payload": {"video_ids": ["video-a"]}})).await;
    let ack = client.next_of("subscribed", WAIT).await.unwrap();
    assert_eq!(ack["payload"], json!({"video_ids": ["video-a"], "event_types": []}));

    hub.stop().await.unwrap();
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_above_its_rate_gets_a_deterministic_sample() {
    const RATE: u64 = 5;
    const SECONDS: u64 = 4;
    let stack = Stack::new().await;
    let hub = stack.start_hub(HubConfig { client_max_events_per_sec: RATE, ..HubConfig::default() }).await;
    let mut hot = Client::connect(&hub, &stack.keys.read).await;
    let mut cold = Client::connect(&hub, &stack.keys.read).await;
    hot.send(json!({"type": "subscribe", "payload": {"video_ids": ["hot"]}})).await;
    cold.send(json!({"type": "subscribe", "payload": {"video_ids": ["cold"]}})).await;
    hot.next_of("subscribed", WAIT).await.unwrap();
    cold.next_of("subscribed", WAIT).await.unwrap();

    // 50 matching events a second for the hot client, 2 for the cold one, for 4 s.
    // One hot session: its events share a partition, in order.
    let hot_session = "hot-session";
    let mut cold_ids = HashSet::new();
    let started = Instant::now();
    for tick in 0..SECONDS * 10 {
        let mut batch: Vec<Event> = (0..5).map(|_| event(EventType::VideoProgress, hot_session, "hot")).collect();
        if tick % 5 == 0 {
            let e = event(EventType::VideoProgress, "cold-session", "cold");
            cold_ids.insert(e.event_id.to_string());
            batch.push(e);
        }
        stack.produce_events(&batch);
        // Pacing the load (not synchronisation): one batch every 100 ms.
        tokio::time::sleep_until((started + Duration::from_millis((tick + 1) * 100)).into()).await;
    }
    // A cold event in the hot partition, last: when it is in, so is every hot event.
    let sentinel = event(EventType::VideoPause, hot_session, "cold");
    cold_ids.insert(sentinel.event_id.to_string());
    stack.produce_events(std::slice::from_ref(&sentinel));

    // The cold client is under the rate: everything, unsampled.
    let mut cold_seen = HashSet::new();
    while cold_seen.len() < cold_ids.len() {
        let message = cold.next_of("analytics_event", WAIT).await.unwrap();
        assert_eq!(message["sample_rate"], 1.0, "{message}");
        cold_seen.insert(event_id(&message));
    }
    assert_eq!(cold_seen, cold_ids);
    let done_ms = now_ms() as i64;

    // The hot client: everything it was sent until two ticks after that.
    let mut rates = Vec::new();
    let mut ticks_after = 0;
    while ticks_after < 2 {
        let message = hot.next(WAIT).await.unwrap();
        match message["type"].as_str().unwrap() {
            "analytics_event" => {
                assert_eq!(message["payload"]["video_id"], "hot");
                rates.push(message["sample_rate"].as_f64().unwrap());
            }
            "realtime_metrics" => {
                let as_of =
                    chrono::DateTime::parse_from_rfc3339(message["payload"]["as_of"].as_str().unwrap()).unwrap();
                if as_of.timestamp_millis() > done_ms {
                    ticks_after += 1;
                }
            }
            _ => {}
        }
    }
    let sent = rates.len() as u64;
    assert!(
        (RATE * SECONDS / 4..=RATE * SECONDS * 2).contains(&sent),
        "{sent} events for about {}: {rates:?}",
        RATE * SECONDS
    );
    let unsampled = rates.iter().filter(|&&r| r == 1.0).count() as u64;
    assert!(unsampled <= RATE, "at most the first {RATE} go unsampled: {rates:?}");
    assert!(rates.iter().skip(RATE as usize).all(|&r| r < 1.0), "{rates:?}");
    for rate in &rates {
        let k = 1.0 / rate;
        assert!((k - k.round()).abs() < 1e-9 && k <= 20.0, "a sample rate is 1 in k: {rate}");
    }

    hub.stop().await.unwrap();
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_costs_bounded_memory_and_others_stay_served() {
    const FLOOD: usize = 40_000;
    let stack = Stack::new().await;
    let hub = stack
        .start_hub(HubConfig { client_queue_size: 16, client_max_events_per_sec: 0, ..HubConfig::default() })
        .await;
    // Takes every event and never reads.
    let slow = Client::connect(&hub, &stack.keys.read).await;
    let mut fast = Client::connect(&hub, &stack.keys.read).await;
    fast.send(json!({"type": "subscribe", "payload": {"video_ids": ["marker"]}})).await;
    fast.next_of("subscribed", WAIT).await.unwrap();
    let dropped_before = scrape(&hub, "analytics_service_websocket_dropped_messages_total", "").await;

    let sessions: Vec<String> = (0..6).map(|i| format!("flood-{i}")).collect();
    let flood: Vec<Event> =
        (0..FLOOD).map(|i| event(EventType::VideoProgress, &sessions[i % sessions.len()], "flood")).collect();
    let markers: Vec<Event> = sessions.iter().map(|s| event(EventType::VideoStart, s, "marker")).collect();
    let marker_ids: HashSet<String> = markers.iter().map(|e| e.event_id.to_string()).collect();
    let producer = tokio::task::spawn_blocking(move || {
        stack.produce_events(&flood);
        stack.produce_events(&markers);
        stack
    });

    // Meanwhile the other client gets its figures every second and then the markers.
    let mut seen = HashSet::new();
    let mut last_metrics = Instant::now();
    while seen.len() < marker_ids.len() {
        let message = fast.next(Duration::from_secs(20)).await.unwrap();
        match message["type"].as_str().unwrap() {
            "realtime_metrics" => {
                assert!(last_metrics.elapsed() < Duration::from_millis(2500), "figures late during the flood");
                last_metrics = Instant::now();
            }
            "analytics_event" => {
                seen.insert(event_id(&message));
            }
            _ => {}
        }
    }
    let stack = producer.await.unwrap();
    assert_eq!(seen, marker_ids);

    // The slow client's share was dropped and counted, not held.
    let dropped = scrape(&hub, "analytics_service_websocket_dropped_messages_total", "").await - dropped_before;
    assert!(dropped >= (FLOOD / 4) as f64, "only {dropped} of {FLOOD} dropped for the slow client");
    let queue_full = scrape(&hub, "analytics_service_websocket_dropped_messages_total", "reason=\"queue_full\"").await;
    assert!(queue_full > 0.0);

    // And the hub answers a newcomer at once.
    assert_eq!(http().get(hub.url("/health")).send().await.unwrap().status(), 200);
    let mut newcomer = Client::connect(&hub, &stack.keys.read).await;
    newcomer.next_of("metrics_history", Duration::from_secs(3)).await.unwrap();
    newcomer.next_of("realtime_metrics", Duration::from_secs(3)).await.unwrap();

    drop(slow);
    hub.stop().await.unwrap();
    stack.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_with_content_types_cache_headers_and_csp() {
    let stack = Stack::new().await;
    let hub = stack.start_hub(HubConfig::default()).await;
    let http = http();

    let page = http.get(hub.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("style-src 'self';") && !csp.contains("unsafe"), "{csp}");
    assert!(csp.contains(&format!("ws://{}", hub.addr)), "{csp}");
    let body = page.text().await.unwrap();
    assert!(body.contains(r#"<script src="/assets/app.js" defer></script>"#));
    assert!(body.contains(r#"id="concurrent-viewers""#));

    for (path, content_type) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/app.css", "text/css; charset=utf-8"),
        ("/assets/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("/assets/uPlot.min.css", "text/css; charset=utf-8"),
        ("/assets/uPlot.LICENSE.txt", "text/plain; charset=utf-8"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let response = http.get(hub.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        assert!(response.headers()["cache-control"].to_str().unwrap().contains("max-age"), "{path}");
        let etag = response.headers()["etag"].clone();
        assert!(!response.bytes().await.unwrap().is_empty());
        let again = http.get(hub.url(path)).header("if-none-match", etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{path} revalidates");
    }
    assert_eq!(http.get(hub.url("/assets/missing.js")).send().await.unwrap().status(), 404);
    // /ws is for WebSocket upgrades only.
    let not_upgrading = http.get(hub.url("/ws")).bearer_auth(&stack.keys.read).send().await.unwrap();
    assert_eq!(not_upgrading.status(), 400);

    hub.stop().await.unwrap();
    stack.cleanup().await;
}
