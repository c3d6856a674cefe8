//! Against the local stack, each test with its own topics, consumer group and
//! ClickHouse database: events written to the raw topic end up in ClickHouse
//! exactly once, poison messages end up in the dead-letter topic, and offsets
//! are committed so a restart does not store anything twice.
#![cfg(test)]

use std::time::Duration;

use chrono::Utc;
use events_model::{Event, Topics};
use rdkafka::producer::{FutureProducer, FutureRecord};
use service_kit::{
    KafkaConfig,
    deps::kafka,
    testing::{self, InProcess},
};
use stream_processor::Config;

fn event(i: usize) -> Event {
    let body = format!(
        r#"{{"event_type":"video_progress","user_id":"u{}","session_id":"s{}","video_id":"v{}",
            "properties":{{"position_seconds":{i}}}}}"#,
        i % 7,
        i % 50,
        i % 3
    );
    Event::parse_json(body.as_bytes(), Utc::now()).unwrap()
}

async fn produce(cfg: &KafkaConfig, topic: &str, payloads: &[(String, Vec<u8>)]) {
    let producer: FutureProducer = kafka::client_config(cfg).set("acks", "all").set("linger.ms", "5").create().unwrap();
    let sends = payloads.iter().map(|(key, payload)| {
        producer.send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(30))
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(e, _)| e).unwrap();
    }
}

fn start(config: Config) -> InProcess {
    let _ = service_kit::telemetry::init(&service_kit::LogConfig::default());
    InProcess::spawn(config, stream_processor::run)
}

/// Polls the dead-letter topic until `at_least` letters match `selection`.
async fn read_dead_letters(
    cfg: &KafkaConfig,
    topic: &str,
    selection: &dlq::Selection,
    at_least: usize,
) -> Vec<dlq::StoredDeadLetter> {
    testing::eventually(Duration::from_secs(30), || async {
        let (cfg, topic, selection) = (cfg.clone(), topic.to_string(), selection.clone());
        let letters = tokio::task::spawn_blocking(move || dlq::read(&cfg, &topic, &selection)).await??;
        anyhow::ensure!(letters.len() >= at_least, "{} dead letters so far", letters.len());
        Ok(letters)
    })
    .await
    .unwrap()
}

async fn stored(client: &clickhouse::Client) -> anyhow::Result<(u64, u64)> {
    Ok(client.query("SELECT count(), uniqExact(event_id) FROM events").fetch_one::<(u64, u64)>().await?)
}

fn test_config(kafka: &KafkaConfig, clickhouse: &service_kit::ClickHouseConfig) -> Config {
    let mut config = Config { kafka: kafka.clone(), clickhouse: clickhouse.clone(), ..Config::default() };
    config.processor.batch_max_events = 500;
    config.processor.batch_max_wait = Duration::from_millis(200);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_every_event_once_and_dead_letters_poison() {
    let kafka_cfg = testing::kafka_config();
    let db = testing::TestClickHouse::create().await.unwrap();
    let topics = Topics::new(&kafka_cfg.topic_prefix);
    let config = test_config(&kafka_cfg, &db.config);

    let events: Vec<Event> = (0..2_000).map(event).collect();
    let mut payloads: Vec<(String, Vec<u8>)> =
        events.iter().map(|e| (e.kafka_key().to_string(), e.to_wire())).collect();
    payloads.insert(1000, ("s1".into(), b"{not json".to_vec()));
    payloads.insert(10, ("s1".into(), br#"{"event_type":"video_start","session_id":"s1"}"#.to_vec()));

    kafka::ensure_topics(
        &kafka_cfg,
        &[kafka::TopicSpec { name: topics.raw_events.clone(), partitions: 3, retention_ms: None }],
    )
    .await
    .unwrap();
    let running = start(config.clone());
    produce(&kafka_cfg, &topics.raw_events, &payloads).await;

    let client = db.client();
    testing::eventually(Duration::from_secs(60), || async {
        let (rows, distinct) = stored(&client).await?;
        anyhow::ensure!(rows == 2_000, "{rows} rows stored so far");
        Ok(distinct)
    })
    .await
    .map(|distinct| assert_eq!(distinct, 2_000))
    .unwrap();

    // Both poison messages are in the dead-letter topic, with their reasons and origin.
    let everything = dlq::Selection::default();
    let letters = read_dead_letters(&kafka_cfg, &topics.dead_letters, &everything, 2).await;
    let mut reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    reasons.sort();
    assert_eq!(reasons, ["invalid_json", "missing"]);
    assert!(letters.iter().all(|l| l.source_topic == topics.raw_events && l.source_offset.is_some()));
    let missing = letters.iter().find(|l| l.reason == "missing").unwrap();
    assert!(missing.detail.contains("video_id"), "detail names the field: {}", missing.detail);
    assert_eq!(missing.payload, br#"{"event_type":"video_start","session_id":"s1"}"#);

    // Replaying by reason sends exactly that message back through the pipeline
    // (still invalid, so it returns to the dead-letter topic).
    let by_reason = dlq::Selection { reason: Some("missing".into()), ..Default::default() };
    let selected = read_dead_letters(&kafka_cfg, &topics.dead_letters, &by_reason, 1).await;
    assert_eq!(dlq::replay(&kafka_cfg, &topics.raw_events, &selected).await.unwrap(), 1);
    let letters = read_dead_letters(&kafka_cfg, &topics.dead_letters, &by_reason, 2).await;
    assert_eq!(letters.len(), 2);
    assert_eq!(stored(&client).await.unwrap(), (2_000, 2_000));

    running.stop().await.unwrap();

    // A restart with the same group resumes after the committed offsets: new
    // events are stored, old ones are not stored again.
    let more: Vec<(String, Vec<u8>)> =
        (2_000..2_100).map(event).map(|e| (e.kafka_key().to_string(), e.to_wire())).collect();
    produce(&kafka_cfg, &topics.raw_events, &more).await;
    let running = start(config);
    testing::eventually(Duration::from_secs(60), || async {
        let (rows, distinct) = stored(&client).await?;
        anyhow::ensure!(rows == 2_100 && distinct == 2_100, "{rows} rows, {distinct} distinct");
        Ok(())
    })
    .await
    .unwrap();
    running.stop().await.unwrap();

    kafka::delete_topics(&kafka_cfg, &[&topics.raw_events, &topics.dead_letters, &topics.realtime_partials])
        .await
        .unwrap();
    db.drop().await.unwrap();
}
