//! The ingest endpoints end to end: HTTP in, Kafka out, against the local stack.
//! Each test runs its own gateway in-process with a unique topic prefix and
//! reads the raw topic back to check exactly the valid events arrived.
#![cfg(test)]

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::{Gateway, JSON, NDJSON, event_ids, expected, gzip, progress};
use events_model::{SCHEMA_VERSION_HEADER, WIRE_SCHEMA_VERSION};
use ingest_gateway::IngestConfig;
use serde_json::{Value, json};
use service_kit::{KafkaConfig, testing};

fn small_topic() -> IngestConfig {
    IngestConfig { raw_topic_partitions: 3, ..IngestConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_event_is_stored_once_kafka_acknowledged_it() {
    let gateway = Gateway::start(small_topic()).await;
    let sent = json!({
        "event_type": "video_start",
        "user_id": "user-7",
        "session_id": "session-single",
        "video_id": "video-9",
        "properties": {"startup_time_ms": 850, "device_type": "tv"},
    });
    let before = Utc::now();
    let answer = gateway.post_json("/api/events", &sent).await;
    let after = Utc::now();
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let ids = event_ids(&answer);
    assert_eq!(answer.body, json!({"accepted": 1, "event_ids": ids}));
    let id = uuid::Uuid::parse_str(&ids[0]).unwrap();
    assert_eq!(id.get_version_num(), 8, "an id derived from the event and the key (uuid v8)");

    let stored = gateway.stored(1).await;
    let message = &stored[0];
    assert_eq!(message.key, "session-single");
    assert_eq!(
        message.headers,
        vec![(SCHEMA_VERSION_HEADER.to_string(), WIRE_SCHEMA_VERSION.to_string().into_bytes())]
    );
    assert_eq!(message.event.event_id, id);
    let received = message.event.received_at;
    assert!(received >= before - chrono::TimeDelta::milliseconds(1) && received <= after, "{received}");
    assert_eq!(message.event.timestamp, received, "no client timestamp: the receive time");
    assert_eq!(message.event, expected(sent, &ids[0], &message.event));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_batch_stores_exactly_the_valid_events_and_reports_the_others_by_index() {
    let gateway = Gateway::start(small_topic()).await;
    let client_id = uuid::Uuid::new_v4().to_string();
    let mut with_id = progress("session-batch", 30.0);
    with_id["event_id"] = json!(client_id);
    // Neither session_id nor user_id (with a user_id the session is derived).
    let mut missing_session = progress("session-batch", 5.0);
    missing_session.as_object_mut().unwrap().remove("session_id");
    missing_session.as_object_mut().unwrap().remove("user_id");
    let mut unknown_type = progress("session-batch", 6.0);
    unknown_type["event_type"] = json!("video_stop");
    let mut bad_position = progress("session-batch", 7.0);
    bad_position["properties"]["position_seconds"] = json!("ten");
    let batch = vec![
        progress("session-batch", 10.0),
        missing_session,
        progress("session-batch", 20.0),
        unknown_type,
        with_id,
        bad_position,
    ];

    let answer = gateway.post_json("/api/events/batch", &Value::Array(batch.clone())).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["accepted"], 3);
    let ids = event_ids(&answer);
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[2], client_id, "client-supplied event_id kept");
    let rejected = answer.body["rejected"].as_array().unwrap();
    let summary: Vec<(u64, &str, &str)> = rejected
        .iter()
        .map(|r| {
            let first = &r["errors"][0];
            (r["index"].as_u64().unwrap(), first["field"].as_str().unwrap(), first["code"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "session_id", "missing"),
            (3, "event_type", "unknown_event_type"),
            (5, "properties.position_seconds", "wrong_type"),
        ]
    );
    assert!(rejected.iter().all(|r| r["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty())));

    // One session, one partition: stored in the order sent.
    let stored = gateway.stored(3).await;
    let stored_ids: Vec<String> = stored.iter().map(|s| s.event.event_id.to_string()).collect();
    assert_eq!(stored_ids, ids);
    for ((message, sent), id) in stored.iter().zip([&batch[0], &batch[2], &batch[4]]).zip(&ids) {
        assert_eq!(message.key, "session-batch");
        assert_eq!(message.event, expected(sent.clone(), id, &message.event));
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_batch_reports_a_malformed_line_and_stores_its_neighbours() {
    let gateway = Gateway::start(small_topic()).await;
    let first = progress("session-a", 1.0);
    let last = progress("session-b", 2.0);
    let body = format!("{first}\r\n{{\"event_type\": \"video_start\",\n\n{last}\n");
    let answer = gateway.post("/api/events/batch", Some(NDJSON), body.into_bytes(), &[]).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["accepted"], 2);
    assert_eq!(answer.body["rejected"].as_array().unwrap().len(), 1);
    assert_eq!(answer.body["rejected"][0]["index"], 1);
    assert_eq!(answer.body["rejected"][0]["errors"][0]["field"], "$");
    assert_eq!(answer.body["rejected"][0]["errors"][0]["code"], "invalid_json");

    let ids = event_ids(&answer);
    let mut stored = gateway.stored(2).await;
    stored.sort_by_key(|s| s.key.clone());
    assert_eq!(stored[0].event, expected(first, &ids[0], &stored[0].event));
    assert_eq!(stored[1].event, expected(last, &ids[1], &stored[1].event));
    assert_eq!((stored[0].key.as_str(), stored[1].key.as_str()), ("session-a", "session-b"));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_are_accepted_and_bombs_refused() {
    let gateway = Gateway::start(IngestConfig { max_body_bytes: 64 * 1024, ..small_topic() }).await;
    let batch: Vec<Value> = (0..3).map(|i| progress("session-gzip", f64::from(i))).collect();
    let compressed = gzip(&serde_json::to_vec(&batch).unwrap());
    let answer = gateway.post("/api/events/batch", Some(JSON), compressed, &[("content-encoding", "gzip")]).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["accepted"], 3);

    let single = gzip(&serde_json::to_vec(&progress("session-gzip", 9.0)).unwrap());
    let answer = gateway.post("/api/events", Some(JSON), single, &[("content-encoding", "gzip")]).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);

    // 10 MiB of spaces compress to a few KiB, far under the 64 KiB limit.
    let mut bomb_text = b"[".to_vec();
    bomb_text.extend(std::iter::repeat_n(b' ', 10 * 1024 * 1024));
    bomb_text.push(b']');
    let bomb = gzip(&bomb_text);
    assert!(bomb.len() < 64 * 1024);
    let answer = gateway.post("/api/events/batch", Some(JSON), bomb, &[("content-encoding", "gzip")]).await;
    assert_eq!(answer.status, 413, "{:?}", answer.body);
    assert_eq!(answer.body["error"], "payload_too_large");

    let answer = gateway.post("/api/events", Some(JSON), b"not gzip".to_vec(), &[("content-encoding", "gzip")]).await;
    assert_eq!((answer.status, answer.body["error"].as_str()), (400, Some("invalid_gzip")));

    gateway.stored(4).await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_and_count_limits_answer_413_and_store_nothing() {
    let gateway =
        Gateway::start(IngestConfig { max_body_bytes: 16 * 1024, max_batch_events: 5, ..small_topic() }).await;

    let mut big = progress("session-big", 1.0);
    big["metadata"]["padding"] = json!("x".repeat(20 * 1024));
    let answer = gateway.post_json("/api/events", &big).await;
    assert_eq!(answer.status, 413, "{:?}", answer.body);
    assert_eq!(answer.body["error"], "payload_too_large");
    assert_eq!(answer.body["limit"], 16 * 1024);
    assert!(answer.body["message"].as_str().unwrap().contains("16384"), "{:?}", answer.body);

    let six: Vec<Value> = (0..6).map(|i| progress("session-many", f64::from(i))).collect();
    let answer = gateway.post_json("/api/events/batch", &Value::Array(six.clone())).await;
    assert_eq!(answer.status, 413, "{:?}", answer.body);
    assert_eq!(answer.body["error"], "too_many_events");
    assert_eq!(answer.body["limit"], 5);
    assert!(answer.body["message"].as_str().unwrap().contains("6 events"), "{:?}", answer.body);

    let lines: String = six.iter().map(|e| format!("{e}\n")).collect();
    let answer = gateway.post("/api/events/batch", Some(NDJSON), lines.into_bytes(), &[]).await;
    assert_eq!((answer.status, answer.body["error"].as_str()), (413, Some("too_many_events")));

    // Exactly at the limit is accepted.
    let answer = gateway.post_json("/api/events/batch", &Value::Array(six[..5].to_vec())).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    gateway.stored(5).await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_get_a_json_reason_and_store_nothing() {
    let gateway = Gateway::start(small_topic()).await;
    let event = serde_json::to_vec(&progress("session-x", 1.0)).unwrap();
    let batch = serde_json::to_vec(&json!([progress("session-x", 1.0)])).unwrap();

    const SINGLE: &str = "/api/events";
    const BATCH: &str = "/api/events/batch";
    let latin1 = "application/json; charset=iso-8859-1";
    // (path, content type, body, status, error code)
    let cases = [
        (SINGLE, Some("text/html"), &event[..], 415, "unsupported_media_type"),
        (SINGLE, None, &event[..], 415, "unsupported_media_type"),
        (SINGLE, Some(NDJSON), &event[..], 415, "unsupported_media_type"),
        (SINGLE, Some(latin1), &event[..], 415, "unsupported_media_type"),
        (BATCH, Some("application/xml"), &batch[..], 415, "unsupported_media_type"),
        (SINGLE, Some(JSON), b"{\"event_type\": ", 400, "invalid_json"),
        (BATCH, Some(JSON), b"[{\"event_type\": \"video_start\"", 400, "invalid_json"),
        (SINGLE, Some(JSON), b"{\"video_id\": \"\xff\xfe\"}", 400, "invalid_utf8"),
        (BATCH, Some(JSON), b"[\"\xc3\x28\"]", 400, "invalid_utf8"),
        (BATCH, Some(JSON), b"[]", 400, "empty_batch"),
        (BATCH, Some(JSON), &event[..], 400, "invalid_batch"),
        (SINGLE, Some(JSON), b"[]", 400, "invalid_event"),
    ];
    for (path, content_type, body, status, code) in cases {
        let answer = gateway.post(path, content_type, body.to_vec(), &[]).await;
        let context = format!("{path} {content_type:?} {:?}: {:?}", String::from_utf8_lossy(body), answer.body);
        assert_eq!(answer.status, status, "{context}");
        assert_eq!(answer.body["error"], code, "{context}");
        assert!(answer.body["message"].as_str().is_some_and(|m| m.len() > 10), "{context}");
    }
    let answer = gateway.post(SINGLE, Some(JSON), event.clone(), &[("content-encoding", "br")]).await;
    assert_eq!((answer.status, answer.body["error"].as_str()), (415, Some("unsupported_encoding")));

    // A single invalid event names its fields.
    let answer = gateway.post_json("/api/events", &json!({"event_type": "video_start", "video_id": 5})).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["error"], "invalid_event");
    let errors: Vec<(&str, &str)> = answer.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(errors, vec![("session_id", "missing"), ("video_id", "wrong_type")]);

    // A batch of only invalid events is a 400 with the per-index report.
    let answer = gateway.post_json("/api/events/batch", &json!([{"event_type": "nope"}, 42])).await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_eq!(answer.body["error"], "invalid_events");
    assert_eq!(answer.body["accepted"], 0);
    assert_eq!(answer.body["event_ids"], json!([]));
    let indexes: Vec<u64> =
        answer.body["rejected"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, vec![0, 1]);
    assert_eq!(answer.body["rejected"][1]["errors"][0]["code"], "not_an_object");

    let answer = gateway.http.get(gateway.url("/api/events")).send().await.unwrap();
    assert_eq!(answer.status(), 405);
    assert_eq!(answer.headers()["allow"], "POST");
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");

    assert_eq!(gateway.stored_count().await, 0, "nothing refused reached kafka");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_strings_are_stored_verbatim_or_rejected_by_field() {
    let gateway = Gateway::start(small_topic()).await;
    let quotes = r#"she said "hi" \ 'x'; DROP TABLE events; -- {"#;
    let emoji = "🎬 clip ✓ 日本語 👍🏽";
    let mut hostile = progress(quotes, 3.0);
    hostile["video_id"] = json!(emoji);
    hostile["user_id"] = json!("user \\ \"quoted\" ' ; --");
    hostile["metadata"] = json!({"note": "line\nbreak \"quoted\" </script>"});
    let mut nul_session = progress("ok", 1.0);
    nul_session["session_id"] = json!("abc\u{0000}def");
    let mut nul_quality = progress("ok", 1.0);
    nul_quality["properties"]["quality"] = json!("720p\u{0000}");

    // Shown as something else on a dashboard: refused like control characters.
    let mut bidi_user = progress("ok", 1.0);
    bidi_user["user_id"] = json!("\u{202e}nimda");
    let mut zero_width_video = progress("ok", 1.0);
    zero_width_video["video_id"] = json!("video\u{200b}1");

    let batch = json!([hostile.clone(), nul_session, nul_quality, bidi_user, zero_width_video]);
    let answer = gateway.post_json("/api/events/batch", &batch).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["accepted"], 1);
    let rejected = &answer.body["rejected"];
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["errors"][0]["field"], "session_id");
    assert_eq!(rejected[0]["errors"][0]["code"], "invalid_characters");
    assert_eq!(rejected[1]["index"], 2);
    assert_eq!(rejected[1]["errors"][0]["field"], "properties.quality");
    assert_eq!(rejected[1]["errors"][0]["code"], "invalid_characters");
    assert_eq!(rejected[2]["index"], 3);
    assert_eq!(rejected[2]["errors"][0]["field"], "user_id");
    assert_eq!(rejected[2]["errors"][0]["code"], "invalid_characters");
    assert_eq!(rejected[3]["index"], 4);
    assert_eq!(rejected[3]["errors"][0]["field"], "video_id");
    assert_eq!(rejected[3]["errors"][0]["code"], "invalid_characters");

    let ids = event_ids(&answer);
    let stored = gateway.stored(1).await;
    assert_eq!(stored[0].key, quotes);
    assert_eq!(stored[0].event.video_id, emoji);
    assert_eq!(stored[0].event, expected(hostile, &ids[0], &stored[0].event));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_id_in_one_batch_is_refused_by_index_and_the_first_stored_once() {
    let gateway = Gateway::start(small_topic()).await;
    let id = uuid::Uuid::new_v4().to_string();
    let mut first = progress("session-dup", 1.0);
    first["event_id"] = json!(id);
    let mut again = progress("session-dup", 2.0);
    again["event_id"] = json!(id);
    // The same id again after an invalid event with that id: still the second valid one.
    let mut invalid_with_id = progress("session-dup", 3.0);
    invalid_with_id["event_id"] = json!(id);
    invalid_with_id["properties"]["position_seconds"] = json!(-1);
    let batch = json!([first, progress("session-dup", 4.0), invalid_with_id, again]);

    let answer = gateway.post_json("/api/events/batch", &batch).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["accepted"], 2, "{:?}", answer.body);
    assert_eq!(event_ids(&answer)[0], id);
    let rejected = answer.body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[0]["index"], 2);
    assert_eq!(rejected[0]["errors"][0]["field"], "properties.position_seconds");
    assert_eq!(rejected[1]["index"], 3);
    assert_eq!(rejected[1]["errors"][0]["field"], "event_id");
    assert_eq!(rejected[1]["errors"][0]["code"], "duplicate_event_id");
    assert!(rejected[1]["errors"][0]["message"].as_str().unwrap().contains("event 0"), "{rejected:?}");

    let stored = gateway.stored(2).await;
    assert_eq!(stored.iter().filter(|s| s.event.event_id.to_string() == id).count(), 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_on_another_origin_passes_the_preflight_and_beacons_text_plain() {
    let gateway = Gateway::start(small_topic()).await;
    let origin = "https://player.example";
    let http = reqwest::Client::new();
    for path in ["/api/events", "/api/events/batch"] {
        let preflight = http
            .request(reqwest::Method::OPTIONS, gateway.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, x-api-key")
            .send()
            .await
            .unwrap();
        assert_eq!(preflight.status(), 204, "{path}");
        let headers = preflight.headers();
        assert_eq!(headers["access-control-allow-origin"], origin);
        assert_eq!(headers["access-control-allow-methods"], "POST");
        let allowed = headers["access-control-allow-headers"].to_str().unwrap();
        assert!(allowed.contains("content-type") && allowed.contains("x-api-key"), "{allowed}");
        assert!(headers.contains_key("access-control-max-age"));
    }
    // A plain OPTIONS (no preflight) is still a method this route does not serve.
    let plain = http.request(reqwest::Method::OPTIONS, gateway.url("/api/events")).send().await.unwrap();
    assert_eq!(plain.status(), 405);

    // navigator.sendBeacon: a text/plain JSON body, the page's origin, the
    // key in the URL (a beacon cannot set headers).
    let beacon = progress("session-beacon", 8.0);
    let answer = http
        .post(gateway.url(&format!("/api/events?api_key={}", gateway.keys.ingest)))
        .header("origin", origin)
        .header("content-type", "text/plain;charset=UTF-8")
        .body(beacon.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    assert_eq!(answer.headers()["access-control-allow-origin"], origin);
    assert!(answer.headers().get_all("vary").iter().any(|v| v.to_str().unwrap().contains("Origin")));
    let stored = gateway.stored(1).await;
    assert_eq!(stored[0].event.session_id, "session-beacon");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_dripping_in_is_cut_at_the_body_timeout_with_408() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let timeout = Duration::from_millis(1500);
    let gateway = Gateway::start_with_http(testing::kafka_config(), small_topic(), |http| {
        http.request_body_timeout = timeout;
    })
    .await;
    let addr = gateway.url("").trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/events HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {}\r\ncontent-type: application/json\r\n\
         content-length: 200\r\n\r\n{{",
        gateway.keys.ingest
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    // One more byte now and then, never the whole body.
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        tokio::select! {
            read = socket.read(&mut buffer) => {
                let n = read.unwrap_or(0);
                if n == 0 { break; }
                answer.extend_from_slice(&buffer[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") { break; }
            }
            () = tokio::time::sleep(Duration::from_millis(400)) => {
                if socket.write_all(b" ").await.is_err() { break; }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no answer after {:?}", started.elapsed());
    }
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(elapsed >= timeout && elapsed < timeout + Duration::from_secs(3), "answered after {elapsed:?}");
    assert_eq!(gateway.stored_count().await, 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_a_thousand_bad_events_answers_a_bounded_report() {
    let gateway = Gateway::start(small_topic()).await;
    let mut bad = progress("session-bad", 1.0);
    bad["event_type"] = json!("video_stop");
    bad["properties"]["position_seconds"] = json!("ten");
    let batch = Value::Array(vec![bad; 1000]);
    let answer = gateway.post_json("/api/events/batch", &batch).await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_eq!(answer.body["rejected_count"], 1000);
    let rejected = answer.body["rejected"].as_array().unwrap();
    let listed: usize = rejected.iter().map(|r| r["errors"].as_array().unwrap().len()).sum();
    assert_eq!(listed, 100, "the first 100 problems");
    assert_eq!(rejected.len(), 50, "two problems per event");
    assert_eq!(rejected[49]["index"], 49);

    // One event with a thousand unknown fields: the validator's first problems only.
    let mut noisy = progress("session-bad", 2.0);
    for i in 0..1000 {
        noisy[format!("extra_{i}")] = json!(1);
    }
    let answer = gateway.post_json("/api/events", &noisy).await;
    assert_eq!(answer.status, 400);
    let listed = answer.body["errors"].as_array().unwrap().len();
    assert_eq!(listed, events_model::limits::MAX_REPORTED_ERRORS);
    assert_eq!(gateway.stored_count().await, 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_the_lateness_horizon_are_refused_too_late() {
    let gateway = Gateway::start(small_topic()).await;
    let at = |ago: chrono::TimeDelta| {
        let mut event = progress("session-late", 1.0);
        event["timestamp"] = json!((Utc::now() - ago).to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        event
    };
    // Inside the default 48 h, just outside it, and a batch spanning a century.
    let batch = json!([
        at(chrono::TimeDelta::hours(47)),
        at(chrono::TimeDelta::hours(49)),
        at(chrono::TimeDelta::days(365 * 20)),
        at(chrono::TimeDelta::minutes(1)),
    ]);
    let answer = gateway.post_json("/api/events/batch", &batch).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["accepted"], 2);
    let rejected: Vec<(u64, &str, &str)> = answer.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["errors"][0]["field"].as_str().unwrap(),
                r["errors"][0]["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(rejected, [(1, "timestamp", "too_late"), (2, "timestamp", "too_late")]);

    let single = gateway.post_json("/api/events", &at(chrono::TimeDelta::hours(72))).await;
    assert_eq!(single.status, 400);
    assert_eq!(single.body["errors"][0]["code"], "too_late", "{:?}", single.body);
    assert_eq!(gateway.stored(2).await.len(), 2);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_event_id_is_kept_across_retries() {
    let gateway = Gateway::start(small_topic()).await;
    let id = uuid::Uuid::new_v4().to_string();
    let mut event = progress("session-retry", 12.5);
    event["event_id"] = json!(id);
    // A client retrying after a lost answer sends the same id again; both are
    // stored and the pipeline counts the id once.
    for _ in 0..2 {
        let answer = gateway.post_json("/api/events", &event).await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        assert_eq!(answer.body, json!({"accepted": 1, "event_ids": [id]}));
    }
    let stored = gateway.stored(2).await;
    assert!(stored.iter().all(|s| s.event.event_id.to_string() == id));
    assert_eq!(stored[0].partition, stored[1].partition, "same key, same partition");

    let mut malformed_id = event.clone();
    malformed_id["event_id"] = json!("not-a-uuid");
    let answer = gateway.post_json("/api/events", &malformed_id).await;
    assert_eq!(answer.status, 400);
    assert!(answer.body["errors"].as_array().unwrap().iter().any(|e| e["field"] == "event_id"));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_kafka_answers_503_with_retry_after_and_accepts_nothing() {
    let dead = testing::ClosedPort::new();
    let kafka = KafkaConfig { brokers: dead.addr(), ..testing::kafka_config() };
    let ingest = IngestConfig {
        produce_timeout: Duration::from_millis(800),
        producer_queue_max_messages: 1,
        retry_after: Duration::from_secs(3),
        ..IngestConfig::default()
    };
    let gateway = Gateway::start_with(kafka, ingest).await;
    let ready = gateway.http.get(gateway.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready without kafka");

    // The delivery deadline passes: 503 soon after it.
    let started = Instant::now();
    let answer = gateway.post_json("/api/events", &progress("session-down", 1.0)).await;
    let elapsed = started.elapsed();
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert!(elapsed >= Duration::from_millis(700) && elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(answer.retry_after.as_deref(), Some("3"));
    assert_eq!(answer.body["error"], "kafka_unavailable");
    assert!(answer.body["message"].as_str().unwrap().contains("Resend the same body unchanged"), "{:?}", answer.body);
    assert!(answer.body.get("accepted").is_none() && answer.body.get("event_ids").is_none());
    assert_eq!((answer.body["queued"].as_u64(), answer.body["not_queued"].as_u64()), (Some(0), Some(1)));
    assert_eq!(answer.body["resend_same_body"], true);

    // The producer queue (1 message here) overflows: 503 at once.
    let batch: Vec<Value> = (0..3).map(|i| progress("session-down", f64::from(i))).collect();
    let started = Instant::now();
    let answer = gateway.post_json("/api/events/batch", &Value::Array(batch)).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    assert_eq!(answer.retry_after.as_deref(), Some("3"));
    assert_eq!(answer.body["error"], "kafka_queue_full");
    assert!(answer.body.get("accepted").is_none());
    assert_eq!((answer.body["queued"].as_u64(), answer.body["not_queued"].as_u64()), (Some(0), Some(3)));
    gateway.stop().await;
}
