//! Producing validated events to the raw topic and waiting for Kafka's acknowledgement.
//!
//! Producer settings and why:
//! - `acks=all` + `enable.idempotence=true`: an acknowledged event is on every
//!   in-sync replica, and librdkafka's internal retries neither duplicate nor
//!   reorder messages of a partition.
//! - `compression.type=lz4`: cheap on CPU and effective on repetitive JSON.
//! - `linger.ms` (default 2): concurrent requests share broker batches, at
//!   the cost of at most that much added latency per request. Measured
//!   against 0 and 5 ms, 2 ms gave the best throughput and tail latency for
//!   both single events and batches (figures in the crate README).
//! - `message.timeout.ms` = the request deadline, so every delivery future
//!   resolves (delivered or failed) within the time a client waits.
//! - `allow.auto.create.topics=false`: the topic is created by the gateway
//!   with its configured partitions (see [`crate::topic`]), never by a racing
//!   produce with the broker's defaults.

use std::time::{Duration, Instant};

use events_model::{Event, SCHEMA_VERSION_HEADER, WIRE_SCHEMA_VERSION};
use futures::{StreamExt as _, stream::FuturesUnordered};
use rdkafka::{
    ClientConfig,
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer as _},
    types::RDKafkaErrorCode,
};
use service_kit::{KafkaConfig, deps::kafka::client_config};

use crate::config::IngestConfig;

/// Extra wait beyond `message.timeout.ms` before giving up on a delivery
/// report librdkafka should already have sent.
const REPORT_GRACE: Duration = Duration::from_secs(1);

/// A request's events were not all acknowledged: why, and how many were.
#[derive(Debug, thiserror::Error)]
#[error("kafka acknowledged {acknowledged} of {events} events: {error}")]
pub struct ProduceFailure {
    pub error: ProduceError,
    /// Events Kafka acknowledged: stored, whatever happened to the others.
    pub acknowledged: usize,
    /// Events the request produced.
    pub events: usize,
}

/// Why a request's events were not all acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("the producer queue is full")]
    QueueFull,
    #[error("no delivery report within the deadline")]
    NoReport,
    #[error("kafka did not store an event: {0}")]
    Failed(#[source] KafkaError),
}

impl ProduceError {
    /// A short explanation for clients (details go to the logs).
    pub fn client_reason(&self) -> &'static str {
        match self {
            ProduceError::QueueFull => "the gateway's queue towards kafka is full",
            ProduceError::NoReport => "kafka did not acknowledge every event in time",
            ProduceError::Failed(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut) => {
                "kafka did not acknowledge every event in time"
            }
            ProduceError::Failed(_) => "kafka could not store every event",
        }
    }
}

/// The settings of the gateway's producer (see the module documentation);
/// public so that `cargo xtask bench pipeline` measures its raw-produce
/// baseline with exactly these.
pub fn producer_config(kafka: &KafkaConfig, ingest: &IngestConfig) -> ClientConfig {
    let mut config = client_config(kafka);
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", ingest.linger.as_millis().to_string())
        .set("message.timeout.ms", ingest.produce_timeout.as_millis().to_string())
        .set("queue.buffering.max.messages", ingest.producer_queue_max_messages.to_string())
        .set("allow.auto.create.topics", "false");
    config
}

/// The gateway's producer of the raw events topic.
pub struct EventProducer {
    producer: FutureProducer,
    topic: String,
    deadline: Duration,
    headers: OwnedHeaders,
}

impl EventProducer {
    pub fn new(kafka: &KafkaConfig, ingest: &IngestConfig, topic: String) -> Result<Self, KafkaError> {
        let producer: FutureProducer = producer_config(kafka, ingest).create()?;
        let version = WIRE_SCHEMA_VERSION.to_string();
        let headers =
            OwnedHeaders::new_with_capacity(1).insert(Header { key: SCHEMA_VERSION_HEADER, value: Some(&version) });
        Ok(Self { producer, topic, deadline: ingest.produce_timeout, headers })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends `events` in order (keyed by session, so a view's events keep
    /// their order) and resolves once Kafka acknowledged every one of them.
    ///
    /// On error some events may still have been stored: the failure says how
    /// many Kafka acknowledged (others, refused, unanswered or not sent, may
    /// be stored too). Clients resend the same body; every event keeps its
    /// `event_id` (sent, or derived from the event and the key), and the
    /// pipeline counts each id once.
    pub async fn produce(&self, events: &[Event]) -> Result<(), ProduceFailure> {
        let started = Instant::now();
        let outcome = self.send_all(events).await;
        crate::metrics::produce_duration(started.elapsed(), outcome.is_ok());
        outcome
    }

    async fn send_all(&self, events: &[Event]) -> Result<(), ProduceFailure> {
        let failure = |error, acknowledged| ProduceFailure { error, acknowledged, events: events.len() };
        let mut deliveries = FuturesUnordered::new();
        for event in events {
            let payload = event.to_wire();
            let record =
                FutureRecord::to(&self.topic).key(event.kafka_key()).payload(&payload).headers(self.headers.clone());
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                // The answer comes at once, without waiting for the events
                // already queued: none counts as acknowledged (they may still
                // be stored).
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    return Err(failure(ProduceError::QueueFull, 0));
                }
                Err((error, _)) => return Err(failure(ProduceError::Failed(error), 0)),
            }
        }
        // Every report is awaited (not only up to the first failure), so the
        // answer says how many events are stored.
        let deadline = tokio::time::Instant::now() + self.deadline + REPORT_GRACE;
        let mut acknowledged = 0;
        let mut first_error = None;
        loop {
            match tokio::time::timeout_at(deadline, deliveries.next()).await {
                Ok(Some(Ok(Ok(_)))) => acknowledged += 1,
                Ok(Some(Ok(Err((error, _))))) => {
                    first_error.get_or_insert(ProduceError::Failed(error));
                }
                Ok(Some(Err(_))) => {
                    first_error.get_or_insert(ProduceError::Failed(KafkaError::Canceled));
                }
                Ok(None) => break,
                Err(_) => return Err(failure(first_error.unwrap_or(ProduceError::NoReport), acknowledged)),
            }
        }
        match first_error {
            None => Ok(()),
            Some(error) => Err(failure(error, acknowledged)),
        }
    }

    /// Waits (blocking, up to `timeout`) for queued events to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}
