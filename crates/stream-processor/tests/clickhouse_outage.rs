//! ClickHouse stopped for 30 s in the middle of a load: the stream-processor
//! backs off (its insert retries grow), the consumer lag grows, and once
//! ClickHouse is back the lag drains to zero with every event stored exactly once.
//!
//! ClickHouse is a scratch server of this test (the shared one stays up for
//! the other tests); Kafka is the shared stack's, with topics of our own.
#![cfg(test)]

mod drill;

use std::time::{Duration, Instant};

use events_model::Topics;
use local_stack::ScratchClickHouse;
use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord, future_producer::OwnedDeliveryResult},
};
use service_kit::{
    ClickHouseConfig, KafkaConfig, Shutdown,
    deps::kafka::{self, TopicSpec},
    testing::{self, eventually},
};
use tokio::task::JoinHandle;

/// Events produced every 50 ms while the load runs (≈ 500 a second).
const EVENTS_PER_TICK: usize = 25;
const OUTAGE: Duration = Duration::from_secs(30);
const PARTITIONS: i32 = 3;
const RETRIES: &str = "analytics_service_clickhouse_insert_retries_total";
const LAG: &str = "analytics_service_kafka_consumer_lag";

/// Produces events to the raw topic at a steady pace until stopped.
struct Load {
    stop: Shutdown,
    task: JoinHandle<usize>,
}

impl Load {
    fn start(kafka: &KafkaConfig, topic: &str) -> Self {
        let producer: FutureProducer =
            kafka::client_config(kafka).set("acks", "all").set("linger.ms", "5").create().unwrap();
        let (stop, topic) = (Shutdown::new(), topic.to_string());
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut deliveries = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stopped.is_triggered() {
                tokio::select! {
                    () = stopped.wait() => break,
                    _ = tick.tick() => {}
                }
                for _ in 0..EVENTS_PER_TICK {
                    let event = drill::event(uuid::Uuid::new_v4(), deliveries.len());
                    let payload = event.to_wire();
                    let record = FutureRecord::to(&topic).key(event.kafka_key()).payload(&payload);
                    deliveries.push(producer.send_result(record).map_err(|(e, _)| e).expect("queued for kafka"));
                }
            }
            let produced = deliveries.len();
            for delivery in deliveries {
                let delivered: OwnedDeliveryResult = delivery.await.expect("delivery report");
                delivered.map_err(|(e, _)| e).expect("kafka acknowledged the event");
            }
            produced
        });
        Self { stop, task }
    }

    /// Stops producing; returns how many events Kafka acknowledged (all of them).
    async fn finish(self) -> usize {
        self.stop.trigger();
        self.task.await.expect("load task")
    }
}

/// The consumer group's lag as Kafka sees it: Σ over the partitions of the
/// high watermark minus the committed offset.
///
/// (The processor's own gauge comes from librdkafka's statistics, which go
/// stale while consumption is paused; the processor then asks the broker
/// itself. This is the independent check.)
async fn kafka_lag(cfg: &KafkaConfig, topic: &str) -> anyhow::Result<i64> {
    let (cfg, topic) = (cfg.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = kafka::client_config(&cfg).set("group.id", &cfg.consumer_group).create()?;
        let timeout = Duration::from_secs(5);
        let mut partitions = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            partitions.add_partition(&topic, partition);
        }
        let committed = consumer.committed_offsets(partitions, timeout)?;
        let mut lag = 0;
        for partition in 0..PARTITIONS {
            let (_, high) = consumer.fetch_watermarks(&topic, partition, timeout)?;
            let done = match committed.find_partition(&topic, partition).map(|p| p.offset()) {
                Some(Offset::Offset(offset)) => offset,
                _ => 0, // nothing committed yet: the topic is new, so it starts at 0
            };
            lag += high - done;
        }
        Ok(lag)
    })
    .await?
}

async fn stored(client: &clickhouse::Client) -> anyhow::Result<(u64, u64)> {
    Ok(client.query("SELECT count(), uniqExact(event_id) FROM events").fetch_one::<(u64, u64)>().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_outage_backs_off_then_drains_the_lag_with_nothing_lost() {
    let began = Instant::now();
    let mut scratch = ScratchClickHouse::start().await.unwrap();
    let clickhouse =
        ClickHouseConfig { url: scratch.url(), database: "analytics".into(), ..ClickHouseConfig::default() };
    service_kit::migrate::apply_clickhouse(&clickhouse).await.unwrap();

    let kafka_cfg = testing::kafka_config();
    let topics = Topics::new(&kafka_cfg.topic_prefix);
    let raw = topics.raw_events.clone();
    kafka::ensure_topics(
        &kafka_cfg,
        &[
            TopicSpec { name: raw.clone(), partitions: PARTITIONS, retention_ms: None },
            TopicSpec { name: topics.dead_letters.clone(), partitions: 1, retention_ms: None },
        ],
    )
    .await
    .unwrap();

    let mut config =
        stream_processor::Config { kafka: kafka_cfg.clone(), clickhouse: clickhouse.clone(), ..Default::default() };
    let p = &mut config.processor;
    let ms = Duration::from_millis;
    (p.batch_max_events, p.batch_max_wait, p.insert_timeout) = (2_000, ms(200), ms(5_000));
    (p.retry_initial, p.retry_max, p.statistics_interval) = (ms(100), ms(1_000), ms(500));
    let processor = drill::start_processor(config);
    let http = drill::client();
    let metric = |name: &'static str, labels: &'static [(&'static str, &'static str)]| {
        let (http, processor) = (&http, &processor);
        async move { anyhow::Ok(drill::total(&drill::metrics(http, processor).await?, name, labels).unwrap_or(0.0)) }
    };
    let topic_lag = || {
        let (http, processor, raw) = (&http, &processor, raw.as_str());
        async move { anyhow::Ok(drill::samples(&drill::metrics(http, processor).await?, LAG, &[("topic", raw)])) }
    };

    // The load flows into ClickHouse and offsets are committed.
    let load = Load::start(&kafka_cfg, &raw);
    let client = clickhouse.client();
    eventually(Duration::from_secs(30), || async {
        let (rows, _) = stored(&client).await?;
        anyhow::ensure!(rows >= 1_000, "{rows} rows stored so far");
        Ok(())
    })
    .await
    .unwrap();
    let retries_before = metric(RETRIES, &[]).await.unwrap();

    let stopping = Instant::now();
    scratch.stop().await.unwrap();
    let down_since = Instant::now();

    // The processor backs off: its retries keep growing, once per backoff interval…
    let mut retries = retries_before;
    for _ in 0..3 {
        retries = eventually(Duration::from_secs(10), || async {
            let now = metric(RETRIES, &[]).await?;
            anyhow::ensure!(now > retries, "{RETRIES} still {now}");
            Ok(now)
        })
        .await
        .unwrap();
    }
    // The lag shows on /metrics and grows while the load goes on (nothing is
    // committed), both on /metrics and as Kafka sees it.
    let metrics_lag = || async {
        let lag = topic_lag().await?;
        anyhow::Ok(lag.iter().map(|(_, v)| *v).sum::<f64>())
    };
    let metrics_lag_at_outage = eventually(Duration::from_secs(10), || async {
        let lag = metrics_lag().await?;
        anyhow::ensure!(lag > 0.0, "{LAG} of {raw}: {lag}");
        Ok(lag)
    })
    .await
    .unwrap();
    let lag_at_outage = kafka_lag(&kafka_cfg, &raw).await.unwrap();
    eventually(Duration::from_secs(20), || async {
        let lag = kafka_lag(&kafka_cfg, &raw).await?;
        anyhow::ensure!(lag >= lag_at_outage + 2_500, "lag {lag}, {lag_at_outage} when ClickHouse stopped");
        let on_metrics = metrics_lag().await?;
        anyhow::ensure!(
            on_metrics >= metrics_lag_at_outage + 2_500.0,
            "{LAG} {on_metrics}, {metrics_lag_at_outage} when ClickHouse stopped"
        );
        Ok(())
    })
    .await
    .unwrap();
    assert!(down_since.elapsed() < OUTAGE, "the backoff and the lag showed only after {:?}", down_since.elapsed());

    // The outage lasts its 30 s, the load going on all along.
    tokio::time::sleep_until((down_since + OUTAGE).into()).await;
    let outage_retries = metric(RETRIES, &[]).await.unwrap() - retries_before;
    let outage_lag = kafka_lag(&kafka_cfg, &raw).await.unwrap();
    scratch.start_again().await.unwrap();
    let produced = load.finish().await as u64;
    eprintln!(
        "ClickHouse stopped in {:?}, down {:?}: {outage_retries} insert retries, lag {lag_at_outage} → {outage_lag}; \
         {produced} events",
        down_since - stopping,
        down_since.elapsed()
    );
    assert!(outage_retries >= 10.0, "only {outage_retries} retries in 30 s with retry_max = 1s");

    // Everything arrives, exactly once, and the lag drains to zero on every
    // partition, on Kafka and on /metrics.
    eventually(Duration::from_secs(60), || async {
        let (rows, distinct) = stored(&client).await?;
        anyhow::ensure!(distinct == produced, "{distinct} of {produced} events stored ({rows} rows)");
        Ok(())
    })
    .await
    .unwrap();
    let deduplicated: u64 = client.query("SELECT count() FROM events FINAL").fetch_one().await.unwrap();
    assert_eq!(deduplicated, produced, "count() FINAL");
    eventually(Duration::from_secs(30), || async {
        let lag = topic_lag().await?;
        anyhow::ensure!(
            lag.len() == PARTITIONS as usize && lag.iter().all(|(_, v)| *v == 0.0),
            "{LAG} of {raw}: {lag:?}"
        );
        anyhow::ensure!(kafka_lag(&kafka_cfg, &raw).await? == 0, "lag on Kafka");
        Ok(())
    })
    .await
    .unwrap();

    processor.stop().await.unwrap();
    kafka::delete_topics(&kafka_cfg, &[&raw, &topics.dead_letters, &topics.realtime_partials]).await.unwrap();
    eprintln!("ClickHouse outage drill took {:?}", began.elapsed());
}
