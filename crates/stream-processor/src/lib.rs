//! stream-processor: consumes raw events from Kafka and stores them in ClickHouse.
//!
//! Any number of replicas join one consumer group. Each batches its
//! partitions' events, inserts them into ClickHouse, and commits the offsets
//! only once the insert is acknowledged; undecodable messages go to the
//! dead-letter topic with their reason. After the commit, the batch's
//! realtime window partials go to the partials topic ([`partials`]). See
//! [`pipeline`] for the order of effects that makes this lossless.
//!
//! This crate holds everything testable; `main.rs` only calls [`run`].

pub mod backoff;
pub mod batch;
pub mod context;
pub mod partials;
pub mod pipeline;
pub mod sink;

use std::{net::TcpListener, sync::Arc, time::Duration};

use anyhow::Context as _;
use dlq::DeadLetters;
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
    partials::{PartialsPublisher, PartialsSettings},
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
    /// …or when its oldest event has waited this long. It bounds how late the
    /// realtime partials are: the realtime metrics must show a change within
    /// 2 s end to end (this wait + insert + commit + the hub's 1 s tick), so
    /// keep it at 500 ms or less.
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
    /// Publish realtime window partials (per source partition and
    /// receive-second) to the partials topic after each committed batch.
    pub realtime_partials: bool,
    /// Partitions of the realtime partials topic when this service creates it.
    pub realtime_partials_topic_partitions: i32,
    /// Retention of the realtime partials topic when this service creates it
    /// (the realtime window is 60 s; an hour leaves room for a hub restart).
    pub realtime_partials_retention_ms: i64,
    /// Partials waiting for delivery, at most (librdkafka's
    /// `queue.buffering.max.messages`); beyond it they are dropped and counted.
    pub realtime_partials_queue_max_messages: u32,
    /// The same bound in KiB (`queue.buffering.max.kbytes`).
    pub realtime_partials_queue_max_kbytes: u32,
    /// A partial not delivered within this time is dropped and counted (`message.timeout.ms`).
    pub realtime_partials_timeout_ms: u64,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            batch_max_events: 50_000,
            batch_max_wait_ms: 500,
            insert_timeout_ms: 30_000,
            retry_initial_ms: 100,
            retry_max_ms: 10_000,
            shutdown_flush_ms: 3_000,
            raw_topic_partitions: 6,
            dead_letter_topic_partitions: 1,
            session_timeout_ms: 10_000,
            statistics_interval_ms: 5_000,
            realtime_partials: true,
            realtime_partials_topic_partitions: 3,
            realtime_partials_retention_ms: 3_600_000,
            realtime_partials_queue_max_messages: 10_000,
            realtime_partials_queue_max_kbytes: 65_536,
            realtime_partials_timeout_ms: 5_000,
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

    // The recorder first, so the counters the pipeline registers at zero are exported.
    let _ = service_kit::ops::metrics_handle();
    let pipeline = build_pipeline(&config, shutdown.clone())?;
    let worker_shutdown = shutdown.clone();
    let worker_config = config.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let outcome = ensure_topics_blocking(&worker_config, &worker_shutdown).and_then(|()| pipeline.run());
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
        .set("allow.auto.create.topics", "false")
        .create_with_context(ProcessorContext::default())
        .context("cannot create the kafka consumer")?;
    let producer: FutureProducer = kafka::client_config(&config.kafka)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "30000")
        .set("allow.auto.create.topics", "false")
        .create()
        .context("cannot create the dead-letter producer")?;
    let partials = if p.realtime_partials {
        let settings = PartialsSettings {
            topic: topics.realtime_partials.clone(),
            queue_max_messages: p.realtime_partials_queue_max_messages,
            queue_max_kbytes: p.realtime_partials_queue_max_kbytes,
            delivery_timeout: Duration::from_millis(p.realtime_partials_timeout_ms),
        };
        Some(PartialsPublisher::new(&config.kafka, &settings).context("cannot create the realtime partials producer")?)
    } else {
        tracing::info!("realtime partials disabled");
        None
    };
    Ok(Pipeline {
        consumer,
        sink: ClickHouseSink::new(config.clickhouse.client(), Duration::from_millis(p.insert_timeout_ms)),
        dead_letters: DeadLetters::new(producer, topics.dead_letters.clone(), Duration::from_secs(30)),
        partials,
        source_topic: topics.raw_events,
        settings: LoopSettings {
            batch_max_events: p.batch_max_events,
            batch_max_wait: Duration::from_millis(p.batch_max_wait_ms),
            retry_initial: Duration::from_millis(p.retry_initial_ms),
            retry_max: Duration::from_millis(p.retry_max_ms),
            shutdown_flush: Duration::from_millis(p.shutdown_flush_ms),
            lag_refresh: Duration::from_millis(p.statistics_interval_ms),
            partials_flush: PARTIALS_SHUTDOWN_FLUSH,
        },
        runtime: tokio::runtime::Handle::current(),
        shutdown,
    })
}

/// At shutdown, how long the last partials may take to be delivered.
const PARTIALS_SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// The topics this service creates: raw events, dead letters and (when
/// enabled) realtime partials.
pub fn topic_specs(config: &Config) -> Vec<TopicSpec> {
    let p = &config.processor;
    let topics = Topics::new(&config.kafka.topic_prefix);
    let mut specs = vec![
        TopicSpec { name: topics.raw_events, partitions: p.raw_topic_partitions, retention_ms: None },
        TopicSpec { name: topics.dead_letters, partitions: p.dead_letter_topic_partitions, retention_ms: None },
    ];
    if p.realtime_partials {
        specs.push(TopicSpec {
            name: topics.realtime_partials,
            partitions: p.realtime_partials_topic_partitions,
            retention_ms: Some(p.realtime_partials_retention_ms),
        });
    }
    specs
}

/// Creates this service's topics if missing, retrying while Kafka is down.
fn ensure_topics_blocking(config: &Config, shutdown: &Shutdown) -> anyhow::Result<()> {
    let p = &config.processor;
    let specs = topic_specs(config);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_keep_realtime_latency_within_budget() {
        let config = Config::default();
        assert!(config.processor.batch_max_wait_ms <= 500, "the batch age bounds the realtime latency");
        assert!(config.processor.realtime_partials);
    }

    #[test]
    fn the_partials_topic_is_created_only_when_partials_are_on() {
        let mut config = Config::default();
        let names = |config: &Config| topic_specs(config).into_iter().map(|t| t.name).collect::<Vec<_>>();
        assert_eq!(names(&config), ["analytics.events.raw", "analytics.events.dlq", "analytics.realtime.partials"]);
        let partials = &topic_specs(&config)[2];
        assert_eq!((partials.partitions, partials.retention_ms), (3, Some(3_600_000)));
        config.processor.realtime_partials = false;
        assert_eq!(names(&config), ["analytics.events.raw", "analytics.events.dlq"]);
    }

    #[test]
    fn partials_settings_come_from_the_environment() {
        let env = std::collections::HashMap::from([
            ("STREAM_PROCESSOR__PROCESSOR__REALTIME_PARTIALS".to_string(), "false".to_string()),
            ("STREAM_PROCESSOR__PROCESSOR__REALTIME_PARTIALS_TOPIC_PARTITIONS".to_string(), "6".to_string()),
        ]);
        let config: Config = service_kit::config::load_from(SERVICE, None, &env).unwrap();
        assert!(!config.processor.realtime_partials);
        assert_eq!(config.processor.realtime_partials_topic_partitions, 6);
    }
}
