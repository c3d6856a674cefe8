//! Rows that ClickHouse refuses for good do not wedge the pipeline: the
//! processor isolates them by bisection, sends exactly those to the
//! dead-letter topic with ClickHouse's code and message, stores the rest and
//! goes on.
//!
//! The local stack's ClickHouse 18.16 has no `max_partitions_per_insert_block`,
//! so the refusal comes from a fault-injecting proxy in front of it
//! (`service_kit::faults`) that answers an INSERT containing a marked row with
//! the exception a current ClickHouse sends for that limit; the message
//! itself is checked against a current ClickHouse (chDB) below.
#![cfg(test)]

use std::{collections::BTreeSet, time::Duration};

use chrono::Utc;
use events_model::{Event, Topics};
use rdkafka::producer::{FutureProducer, FutureRecord};
use service_kit::{
    KafkaConfig,
    deps::kafka,
    faults::ClickHouseFaults,
    testing::{self, InProcess},
};
use stream_processor::{
    Config,
    sink::{Failure, Refusal, classify_server_error},
};

const MARKER: &str = "poison-row";

fn event(i: usize, video: &str) -> Event {
    let body = format!(
        r#"{{"event_type":"video_progress","session_id":"s{}","video_id":"{video}","properties":{{"position_seconds":{i}}}}}"#,
        i % 40
    );
    Event::parse_json(body.as_bytes(), Utc::now()).unwrap()
}

async fn produce(cfg: &KafkaConfig, topic: &str, events: &[Event]) {
    let producer: FutureProducer = kafka::client_config(cfg).set("acks", "all").set("linger.ms", "5").create().unwrap();
    let payloads: Vec<_> = events.iter().map(|e| (e.kafka_key().to_string(), e.to_wire())).collect();
    let sends = payloads.iter().map(|(key, payload)| {
        producer.send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(30))
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(e, _)| e).unwrap();
    }
}

async fn stored_ids(client: &clickhouse::Client) -> anyhow::Result<BTreeSet<uuid::Uuid>> {
    let ids = client.query("SELECT DISTINCT toString(event_id) FROM events").fetch_all::<String>().await?;
    Ok(ids.iter().map(|id| id.parse()).collect::<Result<_, _>>()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_go_to_the_dead_letter_topic_and_the_rest_is_stored() {
    let _ = service_kit::telemetry::init(&service_kit::LogConfig::default());
    let kafka_cfg = testing::kafka_config();
    let db = testing::TestClickHouse::create().await.unwrap();
    let topics = Topics::new(&kafka_cfg.topic_prefix);
    kafka::ensure_topics(
        &kafka_cfg,
        &[kafka::TopicSpec { name: topics.raw_events.clone(), partitions: 3, retention_ms: None }],
    )
    .await
    .unwrap();
    let faults = ClickHouseFaults::refusing_rows_containing(&db.config.endpoint(), MARKER.as_bytes()).unwrap();
    let mut config = Config { kafka: kafka_cfg.clone(), clickhouse: db.config.clone(), ..Config::default() };
    config.clickhouse.url = faults.url().to_string();
    config.processor.batch_max_events = 500;
    config.processor.batch_max_wait = Duration::from_millis(200);
    let running = InProcess::spawn(config, stream_processor::run);

    // 1,500 events, three of them refused, spread over batches and partitions.
    let events: Vec<Event> = (0..1_500)
        .map(|i| match i {
            7 | 731 | 1_402 => event(i, &format!("{MARKER}-{i}")),
            _ => event(i, &format!("v{}", i % 5)),
        })
        .collect();
    let poison: BTreeSet<_> = events.iter().filter(|e| e.video_id.contains(MARKER)).map(|e| e.event_id).collect();
    let healthy: BTreeSet<_> = events.iter().filter(|e| !e.video_id.contains(MARKER)).map(|e| e.event_id).collect();
    produce(&kafka_cfg, &topics.raw_events, &events).await;

    let client = db.client();
    let stored = testing::eventually(Duration::from_secs(60), || async {
        let ids = stored_ids(&client).await?;
        anyhow::ensure!(ids.len() >= healthy.len(), "{} of {} stored so far", ids.len(), healthy.len());
        Ok(ids)
    })
    .await
    .unwrap();
    assert_eq!(stored, healthy, "every healthy event is stored, no refused one");

    // Exactly the refused events are dead letters, each with the code, the
    // message and its origin in the raw topic.
    let letters = testing::eventually(Duration::from_secs(30), || async {
        let (cfg, topic) = (kafka_cfg.clone(), topics.dead_letters.clone());
        let letters =
            tokio::task::spawn_blocking(move || dlq::read(&cfg, &topic, &dlq::Selection::default())).await??;
        anyhow::ensure!(letters.len() >= poison.len(), "{} dead letters so far", letters.len());
        Ok(letters)
    })
    .await
    .unwrap();
    assert_eq!(letters.len(), poison.len(), "one letter per refused event: {letters:#?}");
    let lettered: BTreeSet<_> =
        letters.iter().map(|l| Event::from_wire(&l.payload).expect("a dead letter holds the event").event_id).collect();
    assert_eq!(lettered, poison);
    for letter in &letters {
        assert_eq!(letter.reason, "clickhouse_refused");
        assert!(letter.detail.starts_with("clickhouse code 252: "), "{}", letter.detail);
        assert!(letter.detail.contains("Too many partitions for single INSERT block"), "{}", letter.detail);
        assert_eq!(letter.source_topic, topics.raw_events);
        assert!(letter.source_offset.is_some() && letter.source_partition.is_some());
    }
    // Every refused INSERT (a batch's, then the bisection's) is counted: at
    // least the three single-row ones, however the rows fell into batches.
    assert!(faults.refused() >= 3, "the proxy refused the marked blocks");
    let permanent = testing::metric_value("analytics_service_clickhouse_insert_failures_total{class=\"permanent\"}");
    assert_eq!(permanent, faults.refused() as f64, "each refusal counted once");

    // The pipeline goes on: later events are stored too, without retries of the refused rows.
    let later: Vec<Event> = (0..100).map(|i| event(i, "v-later")).collect();
    produce(&kafka_cfg, &topics.raw_events, &later).await;
    testing::eventually(Duration::from_secs(30), || async {
        let ids = stored_ids(&client).await?;
        anyhow::ensure!(ids.len() == healthy.len() + later.len(), "{} stored so far", ids.len());
        Ok(())
    })
    .await
    .unwrap();
    let refused_before = faults.refused();
    assert_eq!(stored_ids(&client).await.unwrap().len(), healthy.len() + later.len());
    assert_eq!(faults.refused(), refused_before, "nothing refused is retried");
    running.stop().await.unwrap();
}

/// The refusal the proxy imitates is what a current ClickHouse answers for
/// an INSERT into our `events` spanning 120 monthly partitions, and the sink
/// classifies that answer as permanent.
#[test]
fn a_current_clickhouse_refuses_a_block_of_120_months_with_a_permanent_error() {
    let insert = "INSERT INTO events (event_id, event_type, session_id, video_id, timestamp, timestamp_ms) \
                  SELECT generateUUIDv4(), 'video_progress', 's', 'v', toDateTime('2000-01-01 00:00:00') + toIntervalMonth(number), 0 \
                  FROM numbers(120)";
    let answer = testing::run_on_chdb(&[insert.to_string()]).expect_err("chDB refuses the block");
    let exception = &answer[answer.find("Code: 252").expect("code 252 in chDB's answer")..];
    match classify_server_error(exception) {
        Failure::Permanent(Refusal { code: Some(252), .. }) => {}
        other => panic!("{other:?} for {exception}"),
    }
    assert!(
        answer.contains(&service_kit::faults::PARTITION_LIMIT_EXCEPTION[..120]),
        "the proxy's exception is chDB's: {answer}"
    );
}
