//! stream-processor: consumes raw events from Kafka and stores them in ClickHouse.
//!
//! Any number of replicas join one consumer group. Each batches its
//! partitions' events, inserts them into ClickHouse, and commits the offsets
//! only once the insert is acknowledged; undecodable messages go to the
//! dead-letter topic with their reason. See [`pipeline`] for the order of
//! effects that makes this lossless.
//!
//! This crate holds everything testable; `main.rs` only calls [`run`].

pub mod backoff;
pub mod batch;
pub mod context;
pub mod dlq;
pub mod pipeline;
pub mod sink;

use std::{net::TcpListener, sync::Arc, time::Duration};

use anyhow::Context as _;
use events_model::Topics;
use rdkafka::{consumer::BaseConsumer, producer::FutureProducer};
use serde::{Deserialize, Serialize};
use service_kit::{
    ClickHouseConfig, HttpConfig, KafkaConfig, LogConfig, Readiness, Shutdown,
    deps::{
        clickhouse::ClickHouseProbe,
        kafka::{self, KafkaProbe, TopicSpec},
    },
    impl_service_config,
};

use crate::{
    backoff::Backoff,
    context::ProcessorContext,
    dlq::DeadLetters,
    pipeline::{LoopSettings, Pipeline},
    sink::ClickHouseSink,
};

pub const SERVICE: &str = "stream-processor";
pub const DEFAULT_PORT: u16 = 9101;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub http: HttpConfig,
    pub log: LogConfig,
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
    pub processor: ProcessorConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpConfig::with_port(DEFAULT_PORT),
            log: LogConfig::default(),
            kafka: KafkaConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            processor: ProcessorConfig::default(),
        }
    }
}

impl_service_config!(Config);

/// Batching, retry and consumer tuning (`STREAM_PROCESSOR__PROCESSOR__BATCH_MAX_EVENTS=…`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessorConfig {
    /// A batch is inserted when it holds this many events…
    pub batch_max_events: usize,
    /// …or when its oldest event has waited this long.
    pub batch_max_wait_ms: u64,
    /// One INSERT may take this long before it counts as failed and is retried.
    pub insert_timeout_ms: u64,
    /// First retry delay; doubles per attempt (with jitter) up to `retry_max_ms`. Attempts are unlimited.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// After SIGTERM, the last batch may keep retrying this long before it is left for redelivery.
    pub shutdown_flush_ms: u64,
    /// Partitions of the raw and dead-letter topics when this service creates them.
    pub raw_topic_partitions: i32,
    pub dead_letter_topic_partitions: i32,
    /// A replica silent this long loses its partitions to the others.
    pub session_timeout_ms: u64,
    /// How often librdkafka reports statistics (consumer lag).
    pub statistics_interval_ms: u64,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            batch_max_events: 50_000,
            batch_max_wait_ms: 1_000,
            insert_timeout_ms: 30_000,
            retry_initial_ms: 100,
            retry_max_ms: 10_000,
            shutdown_flush_ms: 3_000,
            raw_topic_partitions: 6,
            dead_letter_topic_partitions: 1,
            session_timeout_ms: 10_000,
            statistics_interval_ms: 5_000,
        }
    }
}

/// Consumes until `shutdown`, serving the ops endpoints meanwhile; ready while
/// Kafka and ClickHouse answer.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let timeout = config.http.probe_timeout();
    let readiness = Readiness::new(SERVICE, timeout)
        .with_probe(KafkaProbe::new(&config.kafka, timeout)?)
        .with_probe(ClickHouseProbe::new(&config.clickhouse));

    let pipeline = build_pipeline(&config, shutdown.clone())?;
    let topics = Topics::new(&config.kafka.topic_prefix);
    let worker_shutdown = shutdown.clone();
    let worker_config = config.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let outcome = ensure_topics_blocking(&worker_config, &topics, &worker_shutdown).and_then(|()| pipeline.run());
        // Whatever ended the loop ends the service.
        worker_shutdown.trigger();
        outcome
    });

    service_kit::ops::serve(listener, &config.http, Arc::new(readiness), shutdown, |_| {}).await?;
    worker.await.context("consumer thread panicked")?
}

fn build_pipeline(config: &Config, shutdown: Shutdown) -> anyhow::Result<Pipeline> {
    let p = &config.processor;
    let topics = Topics::new(&config.kafka.topic_prefix);
    let consumer: BaseConsumer<ProcessorContext> = kafka::client_config(&config.kafka)
        .set("group.id", &config.kafka.consumer_group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", p.session_timeout_ms.to_string())
        .set("statistics.interval.ms", p.statistics_interval_ms.to_string())
        .create_with_context(ProcessorContext::default())
        .context("cannot create the kafka consumer")?;
    let producer: FutureProducer = kafka::client_config(&config.kafka)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "30000")
        .create()
        .context("cannot create the dead-letter producer")?;
    Ok(Pipeline {
        consumer,
        sink: ClickHouseSink::new(config.clickhouse.client(), Duration::from_millis(p.insert_timeout_ms)),
        dead_letters: DeadLetters::new(producer, topics.dead_letters.clone(), Duration::from_secs(30)),
        source_topic: topics.raw_events,
        settings: LoopSettings {
            batch_max_events: p.batch_max_events,
            batch_max_wait: Duration::from_millis(p.batch_max_wait_ms),
            retry_initial: Duration::from_millis(p.retry_initial_ms),
            retry_max: Duration::from_millis(p.retry_max_ms),
            shutdown_flush: Duration::from_millis(p.shutdown_flush_ms),
            lag_refresh: Duration::from_millis(p.statistics_interval_ms),
        },
        runtime: tokio::runtime::Handle::current(),
        shutdown,
    })
}

/// Creates the raw and dead-letter topics if missing, retrying while Kafka is down.
fn ensure_topics_blocking(config: &Config, topics: &Topics, shutdown: &Shutdown) -> anyhow::Result<()> {
    let p = &config.processor;
    let specs = [
        TopicSpec { name: topics.raw_events.clone(), partitions: p.raw_topic_partitions, retention_ms: None },
        TopicSpec { name: topics.dead_letters.clone(), partitions: p.dead_letter_topic_partitions, retention_ms: None },
    ];
    let runtime = tokio::runtime::Handle::current();
    let mut backoff = Backoff::new(Duration::from_millis(p.retry_initial_ms), Duration::from_millis(p.retry_max_ms));
    loop {
        match runtime.block_on(kafka::ensure_topics(&config.kafka, &specs)) {
            Ok(()) => return Ok(()),
            Err(error) if !shutdown.is_triggered() => {
                tracing::warn!(error = %format!("{error:#}"), "cannot ensure kafka topics; retrying");
                let delay = backoff.next_delay();
                runtime.block_on(async {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.wait() => {}
                    }
                });
            }
            Err(_) => return Ok(()),
        }
    }
}
