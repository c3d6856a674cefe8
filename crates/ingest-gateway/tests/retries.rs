//! Retries that cannot double count, against the local stack: an event sent
//! without `event_id` gets an id derived from the event and the key, so a
//! resent body yields the same ids; and a batch that Kafka stored only in
//! part answers a 503 saying so, after which resending the same body stores
//! every event with its one id.
#![cfg(test)]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use chrono::Utc;
use common::{Gateway, event_ids, progress};
use events_model::{Arrival, Event, Topics};
use ingest_gateway::IngestConfig;
use rdkafka::{
    admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication},
    client::DefaultClientContext,
};
use serde_json::{Value, json};
use service_kit::{
    auth::{Scope, create_key},
    deps::kafka,
    testing,
};
use uuid::Uuid;

/// The id of an ingest key: its secret's first 11 characters
/// (`service_kit::auth`, `ak_` and 8 hex digits).
fn key_id(secret: &str) -> &str {
    &secret[..11]
}

/// The id the gateway should derive for `sent` from the key `key_id`.
fn derived(sent: &Value, key_id: &str) -> Uuid {
    let arrival = Arrival { received_at: Utc::now(), key_id: Some(key_id) };
    Event::from_client_value(sent.clone(), arrival).expect("sent event is valid").event_id
}

/// How many times each id is in `stored`.
fn copies(stored: &[common::Stored]) -> BTreeMap<Uuid, usize> {
    let mut copies = BTreeMap::new();
    for message in stored {
        *copies.entry(message.event.event_id).or_insert(0) += 1;
    }
    copies
}

fn uuids(answer: &common::Answer) -> Vec<Uuid> {
    event_ids(answer).iter().map(|id| Uuid::parse_str(id).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_without_ids_resent_reaches_kafka_with_the_same_ids() {
    let gateway = Gateway::start(IngestConfig { raw_topic_partitions: 3, ..IngestConfig::default() }).await;
    let client_id = Uuid::new_v4();
    let mut with_id = progress("session-resend-b", 3.0);
    with_id["event_id"] = json!(client_id.to_string());
    let untimed = json!({"event_type": "video_start", "session_id": "session-resend-c", "video_id": "video-1"});
    let once = progress("session-resend-a", 1.0);
    let batch = json!([
        once,
        progress("session-resend-a", 2.0),
        with_id,
        untimed,
        // The first event again, byte for byte: the same derived id, so one
        // event; refused by index like any repeated id.
        once,
    ]);

    let first = gateway.post_json("/api/events/batch", &batch).await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    assert_eq!(first.body["accepted"], 4, "{:?}", first.body);
    let rejected = first.body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["index"], 4);
    assert_eq!(rejected[0]["errors"][0]["code"], "duplicate_event_id");
    assert!(rejected[0]["errors"][0]["message"].as_str().unwrap().contains("event 0"), "{rejected:?}");
    let ids = uuids(&first);
    assert_eq!(ids[2], client_id, "a client's id is kept");
    // The others are derived from the event and the sending key.
    let key = key_id(&gateway.keys.ingest);
    for (index, id) in [(0, ids[0]), (1, ids[1]), (3, ids[3])] {
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(id, derived(&batch[index], key), "event {index}");
    }

    // A client that lost the answer sends the same body again, later.
    let second = gateway.post_json("/api/events/batch", &batch).await;
    assert_eq!(second.status, 202, "{:?}", second.body);
    assert_eq!(uuids(&second), ids, "the same ids");

    // Another key sending the same body: other derived ids (the key scopes them).
    let other = {
        let pool = gateway.postgres.pool().unwrap();
        let client = pool.get().await.unwrap();
        create_key(&client, "second-ingest", &[Scope::Ingest], &[]).await.unwrap()
    };
    // (A client of its own: the gateway's sends the first key with every request.)
    let answer = reqwest::Client::new()
        .post(gateway.url("/api/events/batch"))
        .header("x-api-key", &other.secret)
        .json(&batch)
        .send()
        .await
        .unwrap();
    let answer =
        common::Answer { status: answer.status().as_u16(), retry_after: None, body: answer.json().await.unwrap() };
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let other_ids = uuids(&answer);
    assert_eq!(other_ids[2], client_id);
    for index in [0, 1, 3] {
        assert_ne!(other_ids[index], ids[index], "event {index}");
        assert_eq!(other_ids[index], derived(&batch[index], &other.id), "event {index}");
    }

    // Kafka holds each attempt's copies under the same ids: the pipeline,
    // which counts an event_id once, counts the first body's 4 events once.
    let stored = gateway.stored(12).await;
    let copies = copies(&stored);
    for id in [ids[0], ids[1], ids[3]] {
        assert_eq!(copies[&id], 2, "{id}");
    }
    assert_eq!(copies[&client_id], 3);
    for id in [other_ids[0], other_ids[1], other_ids[3]] {
        assert_eq!(copies[&id], 1, "{id}");
    }
    assert_eq!(copies.len(), 7);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_event_without_id_resent_gets_the_same_id() {
    let gateway = Gateway::start(IngestConfig { raw_topic_partitions: 3, ..IngestConfig::default() }).await;
    let event = progress("session-resend-single", 42.0);
    let first = gateway.post_json("/api/events", &event).await;
    let second = gateway.post_json("/api/events", &event).await;
    assert_eq!((first.status, second.status), (202, 202), "{:?} {:?}", first.body, second.body);
    assert_eq!(first.body, second.body);
    let id = uuids(&first)[0];
    assert_eq!(id, derived(&event, key_id(&gateway.keys.ingest)));
    let stored = gateway.stored(2).await;
    assert!(stored.iter().all(|s| s.event.event_id == id));
    gateway.stop().await;
}

/// Topic-level limit on a record batch, small enough that one event of
/// random text cannot be stored while ordinary events can.
const SMALL_MESSAGE_BYTES: &str = "2048";

/// Text that compresses badly (lz4 finds few repeats in it): `chars` long.
fn incompressible(chars: usize) -> String {
    let mut text = String::with_capacity(chars + 32);
    while text.len() < chars {
        text.push_str(&Uuid::new_v4().simple().to_string());
    }
    text.truncate(chars);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_stored_batch_answers_how_much_and_resending_it_counts_nothing_twice() {
    // The raw topic exists before the gateway starts (the gateway leaves an
    // existing topic as it is), with a `max.message.bytes` that refuses one
    // oversized event (MSG_SIZE_TOO_LARGE) and stores the others: Kafka
    // really stores part of the request.
    let kafka_config = testing::kafka_config();
    let topic = Topics::new(&kafka_config.topic_prefix).raw_events;
    let admin: AdminClient<DefaultClientContext> = kafka::client_config(&kafka_config).create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let spec = NewTopic::new(&topic, 6, TopicReplication::Fixed(1)).set("max.message.bytes", SMALL_MESSAGE_BYTES);
    for result in admin.create_topics([&spec], &options).await.unwrap() {
        result.unwrap();
    }
    let ingest = IngestConfig { retry_after: Duration::from_secs(1), ..IngestConfig::default() };
    let gateway = Gateway::start_ready(kafka_config, ingest).await;

    let mut events: Vec<Value> = (0..8).map(|i| progress(&format!("session-partial-{i}"), f64::from(i))).collect();
    let mut big = progress("session-partial-big", 5.0);
    big["metadata"] = json!({"blob": incompressible(7_000)});
    events.insert(3, big);
    let batch = Value::Array(events);

    let refused = gateway.post_json("/api/events/batch", &batch).await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.body["error"], "kafka_unavailable");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert_eq!(refused.body["resend_same_body"], true);
    let queued = refused.body["queued"].as_u64().unwrap();
    let not_queued = refused.body["not_queued"].as_u64().unwrap();
    assert_eq!(queued + not_queued, 9, "{:?}", refused.body);
    assert!(queued >= 1 && not_queued >= 1, "partly stored: {:?}", refused.body);
    let message = refused.body["message"].as_str().unwrap();
    assert!(message.contains(&format!("kafka acknowledged {queued} of 9 events")), "{message}");
    assert!(refused.body.get("event_ids").is_none(), "nothing is accepted");
    // Exactly the acknowledged events are in Kafka.
    let first_attempt = gateway.stored_all().await;
    assert_eq!(first_attempt.len(), usize::try_from(queued).unwrap());

    // The operator raises the limit; the client resends the same body, as the
    // answer says, until it is accepted.
    let raise = AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("max.message.bytes", "1048588");
    for result in admin.alter_configs([&raise], &options).await.unwrap() {
        result.unwrap();
    }
    let accepted = testing::eventually(Duration::from_secs(30), || async {
        let answer = gateway.post_json("/api/events/batch", &batch).await;
        anyhow::ensure!(answer.status == 202, "{}: {}", answer.status, answer.body);
        Ok(answer)
    })
    .await
    .unwrap();
    assert_eq!(accepted.body["accepted"], 9);
    let ids = uuids(&accepted);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 9);

    // Every event is stored at least once, always under its one id: 9
    // distinct ids for 9 events, so the pipeline counts each once.
    let stored = gateway.stored_all().await;
    let copies = copies(&stored);
    assert_eq!(copies.keys().copied().collect::<BTreeSet<_>>(), ids.iter().copied().collect());
    assert!(stored.len() > 9, "the first attempt's events are stored twice: {}", stored.len());
    for message in &first_attempt {
        assert!(ids.contains(&message.event.event_id), "the retry kept the id {}", message.event.event_id);
    }
    gateway.stop().await;
}
