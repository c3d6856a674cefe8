//! Realtime window partials: after a batch is stored and committed, its
//! events are published to the realtime partials topic as
//! [`RealtimePartial`]s (one per source partition and receive-second), which
//! the realtime-hub merges into the platform-wide realtime metrics.
//!
//! Why after the commit: the partition's next owner re-reads only uncommitted
//! offsets, so a replica that takes a partition over never republishes what
//! the previous owner published. Every fact carries its `event_id`, so the
//! hub counts an event once whatever copies reach it (a client retry, a batch
//! redelivered after a failed commit). The price: a crash between the commit
//! and the delivery of the partials loses those events from the realtime
//! window only; ClickHouse has them and every other metric counts them.
//!
//! Partials are a realtime view, not the record, so publishing never holds
//! up storage: messages go to librdkafka's bounded queue and the consumer
//! loop moves on; delivery reports arrive on the producer's own thread.
//! A full queue drops the partial, a failed delivery is not retried beyond
//! librdkafka's own retries within `message.timeout.ms`; both are logged
//! (at most every few seconds) and counted.
//!
//! Keys are the source partition number, so the partials of one raw-events
//! partition stay in order in one partials partition. A receive-second of a
//! partition may span several messages: consecutive batches can share a
//! second, and a large second is split (at most [`MAX_EVENTS_PER_PARTIAL`]
//! events and [`MAX_PARTIAL_BYTES`] of JSON per message). Consumers merge
//! partials by `event_id`, never by (partition, second).

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use events_model::{Event, RealtimePartial};
use rdkafka::{
    ClientContext, Message as _,
    error::{KafkaError, KafkaResult},
    producer::{BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer},
    types::RDKafkaErrorCode,
};
use service_kit::{KafkaConfig, deps::kafka::client_config};

/// Largest number of events in one partial message.
pub const MAX_EVENTS_PER_PARTIAL: usize = 1_000;
/// Largest partial message (JSON bytes), well below Kafka's default 1 MB
/// message limit; a partial above it is split in halves.
pub const MAX_PARTIAL_BYTES: usize = 512 * 1024;
/// Small, so partials reach the hub quickly; concurrent partials of one batch
/// still share broker requests.
const LINGER_MS: &str = "5";
/// Failures are logged at most this often (the counters see every one).
const LOG_EVERY: Duration = Duration::from_secs(5);

const PUBLISHED: &str = "analytics_service_realtime_partials_published_total";
const FAILED: &str = "analytics_service_realtime_partials_failed_total";

/// One partial, serialised and ready to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedPartial {
    pub partition: i32,
    pub second: u64,
    pub events: usize,
    pub json: Vec<u8>,
}

/// The partials of `events` (one partition's, in offset order): one per
/// receive-second, split so none exceeds [`MAX_EVENTS_PER_PARTIAL`] events or
/// [`MAX_PARTIAL_BYTES`] (a single event always fits: ids are bounded).
pub fn encode(partition: i32, events: &[&Event]) -> Vec<EncodedPartial> {
    let mut encoded = Vec::new();
    for chunk in events.chunks(MAX_EVENTS_PER_PARTIAL) {
        encode_into(partition, chunk, MAX_PARTIAL_BYTES, &mut encoded);
    }
    encoded
}

fn encode_into(partition: i32, events: &[&Event], max_bytes: usize, encoded: &mut Vec<EncodedPartial>) {
    for partial in RealtimePartial::group(partition, events) {
        let json = partial.to_json();
        if json.len() <= max_bytes || partial.events.len() <= 1 {
            encoded.push(EncodedPartial { partition, second: partial.second, events: partial.events.len(), json });
            continue;
        }
        let of_second: Vec<&Event> = events.iter().copied().filter(|e| receive_second(e) == partial.second).collect();
        let (first, rest) = of_second.split_at(of_second.len() / 2);
        encode_into(partition, first, max_bytes, encoded);
        encode_into(partition, rest, max_bytes, encoded);
    }
}

/// The receive-second of an event, as [`RealtimePartial::group`] computes it.
fn receive_second(event: &Event) -> u64 {
    u64::try_from(event.received_at.timestamp_millis()).unwrap_or(0) / 1000
}

/// Producer settings (from `ProcessorConfig`).
#[derive(Debug, Clone)]
pub struct PartialsSettings {
    pub topic: String,
    /// librdkafka's `queue.buffering.max.messages`: partials waiting for
    /// delivery; beyond it new ones are dropped.
    pub queue_max_messages: u32,
    /// librdkafka's `queue.buffering.max.kbytes`, the same bound in size.
    pub queue_max_kbytes: u32,
    /// `message.timeout.ms`: a partial not delivered by then has failed.
    pub delivery_timeout: Duration,
}

/// Produces partials without waiting for their delivery.
pub struct PartialsPublisher {
    producer: ThreadedProducer<DeliveryReports>,
    topic: String,
    queue_full_log: Throttle,
}

/// What [`PartialsPublisher::publish`] did with a batch's partials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Handed to librdkafka (delivery is reported later).
    pub queued: usize,
    /// Refused at once (queue full, too large) and dropped.
    pub dropped: usize,
}

impl PartialsPublisher {
    pub fn new(kafka: &KafkaConfig, settings: &PartialsSettings) -> KafkaResult<Self> {
        let producer: ThreadedProducer<DeliveryReports> = client_config(kafka)
            .set("acks", "1")
            .set("enable.idempotence", "false")
            .set("linger.ms", LINGER_MS)
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", settings.queue_max_messages.max(1).to_string())
            .set("queue.buffering.max.kbytes", settings.queue_max_kbytes.max(1).to_string())
            .set("message.timeout.ms", settings.delivery_timeout.as_millis().max(1).to_string())
            .set("allow.auto.create.topics", "false")
            .create_with_context(DeliveryReports::default())?;
        metrics::counter!(PUBLISHED).increment(0);
        for reason in [Reason::QueueFull, Reason::Produce, Reason::Delivery] {
            metrics::counter!(FAILED, "reason" => reason.as_str()).increment(0);
        }
        Ok(Self { producer, topic: settings.topic.clone(), queue_full_log: Throttle::default() })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends the partials of a stored and committed batch (its events per
    /// source partition). Never blocks: what librdkafka's queue cannot take
    /// is dropped and counted.
    pub fn publish(&self, events_by_partition: &BTreeMap<i32, Vec<&Event>>) -> Outcome {
        let mut outcome = Outcome::default();
        for (&partition, events) in events_by_partition {
            let key = partition.to_string();
            for partial in encode(partition, events) {
                let record = BaseRecord::to(&self.topic).key(&key).payload(&partial.json);
                match self.producer.send(record) {
                    Ok(()) => outcome.queued += 1,
                    Err((error, _)) => {
                        outcome.dropped += 1;
                        let reason = match error {
                            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => Reason::QueueFull,
                            _ => Reason::Produce,
                        };
                        metrics::counter!(FAILED, "reason" => reason.as_str()).increment(1);
                        if let Some(suppressed) = self.queue_full_log.admit() {
                            tracing::warn!(
                                error = %error,
                                reason = reason.as_str(),
                                partition,
                                second = partial.second,
                                events = partial.events,
                                suppressed,
                                "realtime partial dropped"
                            );
                        }
                    }
                }
            }
        }
        outcome
    }

    /// Waits up to `timeout` for the partials still queued (at shutdown);
    /// what is left then is abandoned and counted as failed.
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(
                error = %error,
                in_flight = self.producer.in_flight_count(),
                "realtime partials not all delivered before shutdown"
            );
        }
    }
}

/// Bounded values of the `reason` label of the failure counter.
#[derive(Debug, Clone, Copy)]
enum Reason {
    /// librdkafka's queue was full: dropped without being sent.
    QueueFull,
    /// Refused at once for another reason (e.g. too large).
    Produce,
    /// Sent but not acknowledged within `message.timeout.ms` (or purged at shutdown).
    Delivery,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::QueueFull => "queue_full",
            Reason::Produce => "produce",
            Reason::Delivery => "delivery",
        }
    }
}

/// Counts delivery reports (on the producer's polling thread).
#[derive(Default)]
pub struct DeliveryReports {
    failure_log: Throttle,
}

impl ClientContext for DeliveryReports {}

impl ProducerContext for DeliveryReports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => metrics::counter!(PUBLISHED).increment(1),
            Err((error, message)) => {
                metrics::counter!(FAILED, "reason" => Reason::Delivery.as_str()).increment(1);
                if let Some(suppressed) = self.failure_log.admit() {
                    tracing::warn!(
                        error = %error,
                        topic = message.topic(),
                        suppressed,
                        "realtime partial not delivered; dropped"
                    );
                }
            }
        }
    }
}

/// Lets one log line through per [`LOG_EVERY`], counting the ones held back.
#[derive(Default)]
struct Throttle {
    /// Milliseconds since the Unix epoch of the last admitted line.
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    /// `Some(lines suppressed since the last admitted one)` when this one may be logged.
    fn admit(&self) -> Option<u64> {
        let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let last = self.last_ms.load(Ordering::Relaxed);
        let every = u64::try_from(LOG_EVERY.as_millis()).unwrap_or(u64::MAX);
        if (last == 0 || now.saturating_sub(last) >= every)
            && self.last_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};

    use super::*;

    fn event(session: &str, received_ms: i64) -> Event {
        let body = format!(r#"{{"event_type":"video_pause","session_id":"{session}","video_id":"v1"}}"#);
        Event::parse_json(body.as_bytes(), Utc.timestamp_millis_opt(received_ms).unwrap()).unwrap()
    }

    fn decode(encoded: &[EncodedPartial]) -> Vec<RealtimePartial> {
        encoded.iter().map(|e| RealtimePartial::from_json(&e.json).unwrap()).collect()
    }

    #[test]
    fn one_partial_per_receive_second() {
        let events = [event("a", 1_000_000), event("b", 1_000_999), event("a", 1_001_000)];
        let refs: Vec<&Event> = events.iter().collect();
        let encoded = encode(2, &refs);
        assert_eq!(
            encoded.iter().map(|e| (e.partition, e.second, e.events)).collect::<Vec<_>>(),
            [(2, 1_000, 2), (2, 1_001, 1)]
        );
        let partials = decode(&encoded);
        assert_eq!(partials[0].views.len(), 2);
        assert_eq!(partials[1].events[0].event_id, events[2].event_id);
    }

    #[test]
    fn large_seconds_are_split_and_every_event_kept_once() {
        let events: Vec<Event> = (0..2_500).map(|i| event(&format!("s{}", i % 40), 5_000_000 + i % 900)).collect();
        let refs: Vec<&Event> = events.iter().collect();
        let encoded = encode(0, &refs);
        assert_eq!(encoded.len(), 3, "chunks of at most {MAX_EVENTS_PER_PARTIAL}");
        assert!(encoded.iter().all(|e| e.events <= MAX_EVENTS_PER_PARTIAL && e.second == 5_000));
        let ids: Vec<_> = decode(&encoded).iter().flat_map(|p| p.events.iter().map(|f| f.event_id)).collect();
        assert_eq!(ids, events.iter().map(|e| e.event_id).collect::<Vec<_>>(), "all, once, in order");
    }

    #[test]
    fn partials_above_the_byte_limit_are_halved() {
        let long = "x".repeat(events_model::limits::MAX_ID_CHARS - 2);
        let events: Vec<Event> = (0..64).map(|i| event(&format!("{long}{i}"), 7_000_000 + i)).collect();
        let refs: Vec<&Event> = events.iter().collect();
        let mut encoded = Vec::new();
        encode_into(1, &refs, 4_096, &mut encoded);
        assert!(encoded.len() > 1);
        assert!(encoded.iter().all(|e| e.json.len() <= 4_096), "{:?}", encoded.iter().map(|e| e.json.len()));
        let count: usize = decode(&encoded).iter().map(|p| p.events.len()).sum();
        assert_eq!(count, 64);
    }

    #[test]
    fn worst_case_partials_fit_the_default_message_limit() {
        // Ids of the longest allowed length, every event its own view.
        let long = "é".repeat(events_model::limits::MAX_ID_CHARS - 8);
        let events: Vec<Event> =
            (0..MAX_EVENTS_PER_PARTIAL).map(|i| event(&format!("{long}{i:08}"), 9_000_000)).collect();
        let refs: Vec<&Event> = events.iter().collect();
        let encoded = encode(0, &refs);
        assert!(encoded.len() > 1, "split by size");
        assert!(encoded.iter().all(|e| e.json.len() <= MAX_PARTIAL_BYTES));
        assert_eq!(encoded.iter().map(|e| e.events).sum::<usize>(), MAX_EVENTS_PER_PARTIAL);
    }

    #[test]
    fn throttle_admits_the_first_line_then_counts() {
        let throttle = Throttle::default();
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), None);
        assert_eq!(throttle.admit(), None);
        assert_eq!(throttle.suppressed.load(Ordering::Relaxed), 2);
    }
}
