//! `kill -9` of the real stream-processor binary in the middle of a 200,000-event
//! load, then a restart: ClickHouse ends with exactly the 200,000 distinct events,
//! and the deduplicating count agrees.
#![cfg(test)]

use std::time::Duration;

use chrono::Utc;
use events_model::{Event, Topics};
use rdkafka::producer::{FutureProducer, FutureRecord};
use service_kit::{
    KafkaConfig,
    deps::kafka,
    testing::{self, ServiceProcess},
};

const TOTAL: usize = 200_000;

fn wire_event(i: usize) -> (String, Vec<u8>) {
    let body = format!(
        r#"{{"event_type":"video_progress","session_id":"s{}","video_id":"v{}","properties":{{"position_seconds":{}}}}}"#,
        i % 997,
        i % 13,
        i % 3600
    );
    let event = Event::parse_json(body.as_bytes(), Utc::now()).unwrap();
    (event.kafka_key().to_string(), event.to_wire())
}

async fn produce_range(cfg: &KafkaConfig, topic: &str, range: std::ops::Range<usize>) {
    let producer: FutureProducer = kafka::client_config(cfg)
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    for chunk in range.collect::<Vec<_>>().chunks(20_000) {
        let messages: Vec<_> = chunk.iter().map(|&i| wire_event(i)).collect();
        let sends = messages.iter().map(|(key, payload)| {
            producer.send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(60))
        });
        for result in futures::future::join_all(sends).await {
            result.map_err(|(e, _)| e).unwrap();
        }
    }
}

async fn counts(client: &clickhouse::Client) -> anyhow::Result<(u64, u64)> {
    Ok(client.query("SELECT count(), uniqExact(event_id) FROM events").fetch_one::<(u64, u64)>().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_then_restart_stores_each_event_exactly_once() {
    let kafka_cfg = testing::kafka_config();
    let db = testing::TestClickHouse::create().await.unwrap();
    let topics = Topics::new(&kafka_cfg.topic_prefix);
    kafka::ensure_topics(
        &kafka_cfg,
        &[kafka::TopicSpec { name: topics.raw_events.clone(), partitions: 4, retention_ms: None }],
    )
    .await
    .unwrap();

    let env = [
        ("KAFKA_TOPIC_PREFIX", kafka_cfg.topic_prefix.as_str()),
        ("KAFKA_CONSUMER_GROUP", kafka_cfg.consumer_group.as_str()),
        ("CLICKHOUSE_DATABASE", db.config.database.as_str()),
        ("STREAM_PROCESSOR__PROCESSOR__BATCH_MAX_EVENTS", "5000"),
        ("STREAM_PROCESSOR__PROCESSOR__BATCH_MAX_WAIT", "200ms"),
        ("STREAM_PROCESSOR__PROCESSOR__SESSION_TIMEOUT", "6s"),
    ];
    let binary = env!("CARGO_BIN_EXE_stream-processor");
    let client = db.client();

    produce_range(&kafka_cfg, &topics.raw_events, 0..TOTAL / 2).await;
    let mut first = ServiceProcess::spawn(binary, &env).unwrap();
    // Kill it as soon as it has stored part of the load, with more still to come.
    let stored_before_kill = testing::eventually(Duration::from_secs(60), || async {
        let (rows, _) = counts(&client).await?;
        anyhow::ensure!(rows > 0, "nothing stored yet");
        Ok(rows)
    })
    .await
    .unwrap();
    first.signal("KILL").unwrap();
    first.wait_exit(Duration::from_secs(5)).unwrap();
    assert!(stored_before_kill < TOTAL as u64, "the crash happened mid-load");

    produce_range(&kafka_cfg, &topics.raw_events, TOTAL / 2..TOTAL).await;
    let mut second = ServiceProcess::spawn(binary, &env).unwrap();
    let (rows, distinct) = testing::eventually(Duration::from_secs(120), || async {
        let (rows, distinct) = counts(&client).await?;
        anyhow::ensure!(distinct == TOTAL as u64, "{distinct} distinct events stored so far ({rows} rows)");
        Ok((rows, distinct))
    })
    .await
    .unwrap();
    assert_eq!(distinct, TOTAL as u64);
    assert!(rows >= distinct);

    // Counting through the deduplicating engine gives exactly the load, whatever was redelivered.
    let deduplicated: u64 = client.query("SELECT count() FROM events FINAL").fetch_one().await.unwrap();
    assert_eq!(deduplicated, TOTAL as u64, "{rows} physical rows");

    second.signal("TERM").unwrap();
    assert!(second.wait_exit(Duration::from_secs(5)).unwrap().success());
    kafka::delete_topics(&kafka_cfg, &[&topics.raw_events, &topics.dead_letters, &topics.realtime_partials])
        .await
        .unwrap();
    db.drop().await.unwrap();
}
