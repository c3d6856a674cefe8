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

use std::{
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use dlq::DeadLetters;
use events_model::Topics;
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    producer::FutureProducer,
    types::RDKafkaErrorCode,
};
use serde::{Deserialize, Serialize};
use service_kit::{
    ClickHouseConfig, HttpConfig, KafkaConfig, LogConfig, Probe, Readiness, Shutdown,
    deps::{
        clickhouse::ClickHouseProbe,
        kafka::{self, KafkaProbe, TopicSpec},
    },
    impl_service_config,
    ops::ProbeFuture,
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

impl_service_config!(Config, problems: [http, kafka, clickhouse, processor]);

/// Batching, retry and consumer tuning (`STREAM_PROCESSOR__PROCESSOR__BATCH_MAX_EVENTS=…`).
///
/// The processor creates the dead-letter and realtime partials topics; the
/// raw events topic belongs to the ingest-gateway (`ingest.raw_topic_partitions`),
/// and the processor waits for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessorConfig {
    /// A batch is inserted when it holds this many events…
    pub batch_max_events: usize,
    /// …or when its oldest event has waited this long. It bounds how late the
    /// realtime partials are: the realtime metrics must show a change within
    /// 2 s end to end (this wait + insert + commit + the hub's 1 s tick), so
    /// keep it at `"500ms"` or less.
    #[serde(with = "humantime_serde")]
    pub batch_max_wait: Duration,
    /// One INSERT may take this long before it counts as failed and is retried (`"30s"`).
    #[serde(with = "humantime_serde")]
    pub insert_timeout: Duration,
    /// First retry delay (`"100ms"`); doubles per attempt (with jitter) up to
    /// `retry_max`. Attempts are unlimited.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest retry delay (`"10s"`).
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// After SIGTERM, the last batch may keep retrying this long before it is
    /// left for redelivery (`"3s"`).
    #[serde(with = "humantime_serde")]
    pub shutdown_flush: Duration,
    /// Partitions of the dead-letter topic when this service creates it.
    pub dead_letter_topic_partitions: i32,
    /// A replica silent this long loses its partitions to the others (`"10s"`;
    /// librdkafka's `session.timeout.ms`, whole milliseconds).
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// How often librdkafka reports statistics (consumer lag), `"5s"`.
    #[serde(with = "humantime_serde")]
    pub statistics_interval: Duration,
    /// Publish realtime window partials (per source partition and
    /// receive-second) to the partials topic after each committed batch.
    pub realtime_partials: bool,
    /// Partitions of the realtime partials topic when this service creates it.
    pub realtime_partials_topic_partitions: i32,
    /// Retention of the realtime partials topic when this service creates it
    /// (the realtime window is 60 s; `"1h"` leaves room for a hub restart).
    #[serde(with = "humantime_serde")]
    pub realtime_partials_retention: Duration,
    /// Partials waiting for delivery, at most (librdkafka's
    /// `queue.buffering.max.messages`); beyond it they are dropped and counted.
    pub realtime_partials_queue_max_messages: u32,
    /// The same bound in KiB (`queue.buffering.max.kbytes`).
    pub realtime_partials_queue_max_kbytes: u32,
    /// A partial not delivered within this time is dropped and counted
    /// (`message.timeout.ms`), `"5s"`.
    #[serde(with = "humantime_serde")]
    pub realtime_partials_timeout: Duration,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            batch_max_events: 50_000,
            batch_max_wait: Duration::from_millis(500),
            insert_timeout: Duration::from_secs(30),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            shutdown_flush: Duration::from_secs(3),
            dead_letter_topic_partitions: 1,
            session_timeout: Duration::from_secs(10),
            statistics_interval: Duration::from_secs(5),
            realtime_partials: true,
            realtime_partials_topic_partitions: 3,
            realtime_partials_retention: Duration::from_secs(3600),
            realtime_partials_queue_max_messages: 10_000,
            realtime_partials_queue_max_kbytes: 65_536,
            realtime_partials_timeout: Duration::from_secs(5),
        }
    }
}

impl ProcessorConfig {
    /// The settings the processor cannot work with, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value) in [
            ("batch_max_events", i64::try_from(self.batch_max_events).unwrap_or(i64::MAX)),
            ("dead_letter_topic_partitions", i64::from(self.dead_letter_topic_partitions)),
            ("realtime_partials_topic_partitions", i64::from(self.realtime_partials_topic_partitions)),
            ("realtime_partials_queue_max_messages", i64::from(self.realtime_partials_queue_max_messages)),
            ("realtime_partials_queue_max_kbytes", i64::from(self.realtime_partials_queue_max_kbytes)),
        ] {
            if value < 1 {
                problems.push(format!("processor.{key} must be at least 1"));
            }
        }
        for (key, value) in [
            ("batch_max_wait", self.batch_max_wait),
            ("insert_timeout", self.insert_timeout),
            ("retry_initial", self.retry_initial),
            ("session_timeout", self.session_timeout),
            ("statistics_interval", self.statistics_interval),
            ("realtime_partials_retention", self.realtime_partials_retention),
            ("realtime_partials_timeout", self.realtime_partials_timeout),
        ] {
            if value.is_zero() {
                problems.push(format!("processor.{key} must be above 0"));
            }
        }
        if self.retry_initial > self.retry_max {
            problems.push(format!(
                "processor.retry_initial ({}) must not exceed processor.retry_max ({})",
                humantime_serde::re::humantime::format_duration(self.retry_initial),
                humantime_serde::re::humantime::format_duration(self.retry_max)
            ));
        }
        problems
    }
}

/// `duration` in whole milliseconds, as librdkafka's settings take it.
fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}

/// Consumes until `shutdown`, serving the ops endpoints meanwhile; ready while
/// Kafka and ClickHouse answer, once the raw topic exists.
/// The descriptions shown as `# HELP` on `/metrics` of every metric the
/// processor writes (`pipeline`, `partials`, `context`; listed in
/// docs/observability.md).
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "analytics_service_events_processed_total",
        "events stored in ClickHouse (offsets committed after) or sent to the dead-letter topic, by outcome"
    );
    describe_histogram!(
        "analytics_service_event_processing_duration_seconds",
        Unit::Seconds,
        "per stored batch: ClickHouse insert (with retries) plus offset commit"
    );
    describe_histogram!("analytics_service_processor_batch_size", Unit::Count, "rows per stored batch");
    describe_histogram!(
        "analytics_service_event_ingest_to_store_seconds",
        Unit::Seconds,
        "per stored batch: age of its oldest event, from gateway receipt to stored"
    );
    describe_gauge!("analytics_service_kafka_consumer_lag", "messages behind the end of each assigned partition");
    describe_counter!(
        "analytics_service_clickhouse_insert_retries_total",
        "failed ClickHouse inserts retried with backoff (transient failures)"
    );
    describe_counter!(
        "analytics_service_clickhouse_insert_failures_total",
        "failed ClickHouse inserts by class: transient (retried) or permanent (bisected, refusing rows dead-lettered)"
    );
    describe_gauge!("analytics_service_processor_paused", "1 while consumption is paused waiting for ClickHouse");
    describe_counter!(
        "analytics_service_kafka_commit_failures_total",
        "offset commits refused (e.g. during a rebalance); the batch may be redelivered and is counted once"
    );
    describe_counter!("analytics_service_dead_letters_total", "messages sent to the dead-letter topic, by reason");
    describe_counter!(
        "analytics_service_realtime_partials_published_total",
        "realtime partial messages acknowledged by Kafka"
    );
    describe_counter!(
        "analytics_service_realtime_partials_failed_total",
        "realtime partials dropped, by reason (queue_full, produce, delivery); their events miss the realtime window only"
    );
}

pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let timeout = config.http.probe_timeout;
    let raw_topic = RawTopic::new(Topics::new(&config.kafka.topic_prefix).raw_events);
    let readiness = Readiness::new(SERVICE, timeout)
        .with_probe(KafkaProbe::new(&config.kafka, timeout)?)
        .with_probe(ClickHouseProbe::new(&config.clickhouse))
        .with_probe(raw_topic.clone());

    // The recorder first, so the counters the pipeline registers at zero are exported.
    service_kit::ops::describe_metrics(describe_metrics);
    let pipeline = build_pipeline(&config, shutdown.clone())?;
    let worker_shutdown = shutdown.clone();
    let worker_config = config.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let outcome = ensure_topics_blocking(&worker_config, &worker_shutdown)
            .and_then(|()| wait_for_raw_topic_blocking(&worker_config, &raw_topic, &worker_shutdown))
            .and_then(|()| if worker_shutdown.is_triggered() { Ok(()) } else { pipeline.run() });
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
        .set("session.timeout.ms", millis(p.session_timeout))
        .set("statistics.interval.ms", millis(p.statistics_interval))
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
            delivery_timeout: p.realtime_partials_timeout,
        };
        Some(PartialsPublisher::new(&config.kafka, &settings).context("cannot create the realtime partials producer")?)
    } else {
        tracing::info!("realtime partials disabled");
        None
    };
    Ok(Pipeline {
        consumer,
        sink: ClickHouseSink::new(config.clickhouse.client(), p.insert_timeout),
        dead_letters: DeadLetters::new(producer, topics.dead_letters.clone(), Duration::from_secs(30)),
        partials,
        source_topic: topics.raw_events,
        settings: LoopSettings {
            batch_max_events: p.batch_max_events,
            batch_max_wait: p.batch_max_wait,
            retry_initial: p.retry_initial,
            retry_max: p.retry_max,
            shutdown_flush: p.shutdown_flush,
            lag_refresh: p.statistics_interval,
            partials_flush: PARTIALS_SHUTDOWN_FLUSH,
        },
        runtime: tokio::runtime::Handle::current(),
        shutdown,
    })
}

/// At shutdown, how long the last partials may take to be delivered.
const PARTIALS_SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// The topics this service creates: dead letters and (when enabled) realtime
/// partials. The raw events topic is the ingest-gateway's; the processor
/// waits for it ([`RawTopic`]).
pub fn topic_specs(config: &Config) -> Vec<TopicSpec> {
    let p = &config.processor;
    let topics = Topics::new(&config.kafka.topic_prefix);
    let mut specs =
        vec![TopicSpec { name: topics.dead_letters, partitions: p.dead_letter_topic_partitions, retention_ms: None }];
    if p.realtime_partials {
        specs.push(TopicSpec {
            name: topics.realtime_partials,
            partitions: p.realtime_partials_topic_partitions,
            retention_ms: Some(i64::try_from(p.realtime_partials_retention.as_millis()).unwrap_or(i64::MAX)),
        });
    }
    specs
}

/// Whether the raw events topic exists yet, and the readiness probe that
/// fails until it does.
#[derive(Debug, Clone)]
pub struct RawTopic {
    name: String,
    exists: Arc<AtomicBool>,
}

impl RawTopic {
    fn new(name: String) -> Self {
        Self { name, exists: Arc::new(AtomicBool::new(false)) }
    }
}

impl Probe for RawTopic {
    fn name(&self) -> &'static str {
        "raw_topic"
    }

    fn check(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            if self.exists.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(format!("topic {} does not exist yet (the ingest-gateway creates it)", self.name))
            }
        })
    }
}

/// How often the raw topic is looked for while it does not exist.
const RAW_TOPIC_POLL: Duration = Duration::from_secs(1);

/// Waits until the raw events topic exists (the ingest-gateway creates it),
/// logging once, or until shutdown.
fn wait_for_raw_topic_blocking(config: &Config, raw: &RawTopic, shutdown: &Shutdown) -> anyhow::Result<()> {
    // A consumer that may not create topics: a metadata request from a
    // producer-type client (the admin client) can auto-create the topic with
    // the broker's defaults, which would take the gateway's place as its owner.
    let client: BaseConsumer = kafka::client_config(&config.kafka)
        .set("allow.auto.create.topics", "false")
        .create()
        .context("cannot create the kafka metadata client")?;
    let runtime = tokio::runtime::Handle::current();
    let mut logged = false;
    while !shutdown.is_triggered() {
        let found = client.fetch_metadata(Some(&raw.name), RAW_TOPIC_POLL * 5).map(|metadata| {
            metadata
                .topics()
                .iter()
                .any(|topic| topic.name() == raw.name && topic.error().is_none() && !topic.partitions().is_empty())
        });
        match found {
            Ok(true) => {
                raw.exists.store(true, Ordering::SeqCst);
                if logged {
                    tracing::info!(topic = %raw.name, "raw events topic found");
                }
                return Ok(());
            }
            Ok(false) if !logged => {
                tracing::info!(topic = %raw.name, "waiting for the raw events topic (the ingest-gateway creates it)");
                logged = true;
            }
            Ok(false) => {}
            Err(error) => {
                let code = error.rdkafka_error_code();
                if code != Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
                    tracing::warn!(topic = %raw.name, error = %error, "cannot look for the raw events topic; retrying");
                }
            }
        }
        runtime.block_on(async {
            tokio::select! {
                () = tokio::time::sleep(RAW_TOPIC_POLL) => {}
                () = shutdown.wait() => {}
            }
        });
    }
    Ok(())
}

/// Creates this service's topics if missing, retrying while Kafka is down;
/// a topic less durable than configured is an error at once.
fn ensure_topics_blocking(config: &Config, shutdown: &Shutdown) -> anyhow::Result<()> {
    let p = &config.processor;
    let specs = topic_specs(config);
    let runtime = tokio::runtime::Handle::current();
    let mut backoff = Backoff::new(p.retry_initial, p.retry_max);
    loop {
        match runtime.block_on(kafka::ensure_topics(&config.kafka, &specs)) {
            Ok(()) => return Ok(()),
            Err(error) if kafka::DurabilityError::is_cause_of(&error) => return Err(error),
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
    use service_kit::ServiceConfig as _;

    use super::*;

    #[test]
    fn defaults_keep_realtime_latency_within_budget() {
        let config = Config::default();
        assert!(
            config.processor.batch_max_wait <= Duration::from_millis(500),
            "the batch age bounds the realtime latency"
        );
        config.validate().unwrap();
        assert!(config.processor.realtime_partials);
    }

    #[test]
    fn the_partials_topic_is_created_only_when_partials_are_on() {
        let mut config = Config::default();
        let names = |config: &Config| topic_specs(config).into_iter().map(|t| t.name).collect::<Vec<_>>();
        assert_eq!(names(&config), ["analytics.events.dlq", "analytics.realtime.partials"]);
        let partials = &topic_specs(&config)[1];
        assert_eq!((partials.partitions, partials.retention_ms), (3, Some(3_600_000)));
        config.processor.realtime_partials = false;
        assert_eq!(names(&config), ["analytics.events.dlq"]);
    }

    #[test]
    fn unusable_settings_are_all_listed_with_their_keys() {
        let mut config = Config::default();
        config.processor.batch_max_events = 0;
        config.processor.retry_initial = Duration::from_secs(20);
        config.processor.batch_max_wait = Duration::ZERO;
        let problems = config.validate().unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("processor.batch_max_events")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("processor.batch_max_wait ")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("processor.retry_initial (20s)")), "{problems:?}");
    }

    #[test]
    fn the_raw_topic_has_one_owner_the_gateway() {
        let err = service_kit::config::load_from::<Config>(
            SERVICE,
            None,
            &std::collections::HashMap::from([(
                "STREAM_PROCESSOR__PROCESSOR__RAW_TOPIC_PARTITIONS".to_string(),
                "3".to_string(),
            )]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown key `processor.raw_topic_partitions`"), "{err}");
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
