//! Round trips through each real server of the local stack with the chosen clients,
//! and the readiness probes against live and dead endpoints.
#![cfg(test)]

use std::time::Duration;

use rdkafka::{
    Message,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
};
use service_kit::{
    ClickHouseConfig, KafkaConfig, PostgresConfig, Probe, Readiness, RedisConfig,
    deps::{clickhouse::ClickHouseProbe, kafka, postgres, redis},
    ops::ReadyStatus,
    testing,
};

/// Payload, key, partition and offset of a consumed message.
type Received = (Vec<u8>, Option<Vec<u8>>, i32, i64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_message_produced_is_consumed_back() {
    let cfg = testing::kafka_config();
    let topic = format!("{}roundtrip", cfg.topic_prefix);
    kafka::ensure_topics(&cfg, &[kafka::TopicSpec { name: topic.clone(), partitions: 2, retention_ms: None }])
        .await
        .unwrap();

    let producer: FutureProducer = kafka::client_config(&cfg).set("acks", "all").create().unwrap();
    let payload = format!("payload-{}", testing::unique_name("msg"));
    let rdkafka::producer::future_producer::Delivery { partition, offset, .. } = producer
        .send(FutureRecord::to(&topic).key("session-1").payload(&payload), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    assert!(offset >= 0);

    // A plain consumer polled on a blocking thread, as the stream-processor will do.
    let consumer_cfg = kafka::client_config(&cfg)
        .set("group.id", &cfg.consumer_group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .clone();
    let topic_name = topic.clone();
    let received = tokio::task::spawn_blocking(move || -> anyhow::Result<Received> {
        let consumer: BaseConsumer = consumer_cfg.create()?;
        consumer.subscribe(&[&topic_name])?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                let message = message?;
                return Ok((
                    message.payload().unwrap_or_default().to_vec(),
                    message.key().map(<[u8]>::to_vec),
                    message.partition(),
                    message.offset(),
                ));
            }
        }
        anyhow::bail!("no message within 30 s")
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(received, (payload.into_bytes(), Some(b"session-1".to_vec()), partition, offset));

    kafka::delete_topics(&cfg, &[&topic]).await.unwrap();
}

#[tokio::test]
async fn ensure_topics_is_idempotent() {
    let cfg = testing::kafka_config();
    let spec =
        kafka::TopicSpec { name: format!("{}twice", cfg.topic_prefix), partitions: 3, retention_ms: Some(3_600_000) };
    kafka::ensure_topics(&cfg, std::slice::from_ref(&spec)).await.unwrap();
    kafka::ensure_topics(&cfg, std::slice::from_ref(&spec)).await.unwrap();

    let admin = kafka::admin(&cfg).unwrap();
    let name = spec.name.clone();
    let partitions = tokio::task::spawn_blocking(move || {
        let metadata = admin.inner().fetch_metadata(Some(&name), Duration::from_secs(10)).unwrap();
        metadata.topics()[0].partitions().len()
    })
    .await
    .unwrap();
    assert_eq!(partitions, 3);

    // Retention can only act when segments roll at least as often.
    let admin = kafka::admin(&cfg).unwrap();
    let resource = rdkafka::admin::ResourceSpecifier::Topic(&spec.name);
    let described = admin.describe_configs([&resource], &rdkafka::admin::AdminOptions::new()).await.unwrap();
    let config = described.into_iter().next().unwrap().unwrap();
    let value = |key: &str| config.get(key).and_then(|entry| entry.value.clone());
    assert_eq!(value("retention.ms").as_deref(), Some("3600000"));
    assert_eq!(value("segment.ms").as_deref(), Some("3600000"));
    kafka::delete_topics(&cfg, &[&spec.name]).await.unwrap();
}

#[tokio::test]
async fn postgres_query_through_the_pool() {
    let db = testing::TestPostgres::create().await.unwrap();
    let pool = db.pool().unwrap();
    {
        let client = pool.get().await.unwrap();
        client
            .execute(
                "INSERT INTO videos (video_id, title, duration_seconds, category) VALUES ($1, $2, $3, $4)",
                &[&"v1", &"It's a \"title\"; DROP TABLE videos; --", &Some(120.5_f64), &Some("sports")],
            )
            .await
            .unwrap();
        let row =
            client.query_one("SELECT title, duration_seconds FROM videos WHERE video_id = $1", &[&"v1"]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "It's a \"title\"; DROP TABLE videos; --");
        assert_eq!(row.get::<_, Option<f64>>(1), Some(120.5));
    }
    drop(pool);
    db.drop().await.unwrap();
}

#[tokio::test]
async fn redis_round_trip() {
    use fred::prelude::{Expiration, KeysInterface};
    let cfg = testing::redis_config();
    let client = redis::client(&cfg).unwrap();
    let key = format!("{}greeting", cfg.key_prefix);
    testing::eventually(Duration::from_secs(10), || async {
        Ok(client.set::<(), _, _>(&key, "hello ✓", Some(Expiration::EX(60)), None, false).await?)
    })
    .await
    .unwrap();
    let value: Option<String> = client.get(&key).await.unwrap();
    assert_eq!(value.as_deref(), Some("hello ✓"));
    let deleted: u32 = client.del(&key).await.unwrap();
    assert_eq!(deleted, 1);
}

#[tokio::test]
async fn probes_pass_against_the_stack() {
    let timeout = Duration::from_secs(5);
    let readiness = Readiness::new("probe-test", timeout)
        .with_probe(kafka::KafkaProbe::new(&testing::kafka_config(), timeout).unwrap())
        .with_probe(ClickHouseProbe::new(&testing::clickhouse_config()))
        .with_probe(postgres::PostgresProbe::new(postgres::pool(&testing::postgres_config()).unwrap()))
        .with_probe(redis::RedisProbe::new(redis::client(&testing::redis_config()).unwrap()));
    let report = testing::eventually(Duration::from_secs(10), || async {
        let report = readiness.check().await;
        anyhow::ensure!(report.status == ReadyStatus::Ready, "{report:?}");
        Ok(report)
    })
    .await
    .unwrap();
    assert_eq!(report.checks.keys().copied().collect::<Vec<_>>(), ["clickhouse", "kafka", "postgres", "redis"]);

    readiness.begin_shutdown();
    assert_eq!(readiness.check().await.status, ReadyStatus::ShuttingDown);
}

#[tokio::test]
async fn probes_fail_within_their_timeout_when_dependencies_are_down() {
    let timeout = Duration::from_millis(1500);
    let dead = service_kit::testing::ClosedPort::new();
    let port = dead.port();
    let kafka_cfg = KafkaConfig { brokers: format!("127.0.0.1:{port}"), ..KafkaConfig::default() };
    let ch_cfg = ClickHouseConfig { url: format!("http://127.0.0.1:{port}"), ..ClickHouseConfig::default() };
    let pg_cfg = PostgresConfig { url: format!("postgres://a:b@127.0.0.1:{port}/x"), ..PostgresConfig::default() };
    let redis_cfg = RedisConfig { url: format!("redis://127.0.0.1:{port}"), ..RedisConfig::default() };

    let probes: Vec<Box<dyn Probe>> = vec![
        Box::new(kafka::KafkaProbe::new(&kafka_cfg, timeout).unwrap()),
        Box::new(ClickHouseProbe::new(&ch_cfg)),
        Box::new(postgres::PostgresProbe::new(postgres::pool(&pg_cfg).unwrap())),
        Box::new(redis::RedisProbe::new(redis::client(&redis_cfg).unwrap())),
    ];
    let mut readiness = Readiness::new("probe-test", timeout);
    for probe in probes {
        readiness = readiness.with_probe(probe);
    }
    let started = std::time::Instant::now();
    let report = readiness.check().await;
    assert!(started.elapsed() < timeout + Duration::from_secs(1), "probes ran concurrently under the timeout");
    assert_eq!(report.status, ReadyStatus::NotReady);
    let body = serde_json::to_string(&report).unwrap();
    for (name, check) in &report.checks {
        assert!(!check.ok, "{name} should be down");
        let error = check.error.as_deref().unwrap_or_default();
        assert!(!error.is_empty(), "{name} names a reason, for the log");
        assert!(!body.contains(error), "{name}'s reason stays out of the /ready body: {body}");
    }
    assert!(!body.contains(&port.to_string()), "no address in the body: {body}");
}
