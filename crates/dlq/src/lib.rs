//! The dead-letter topic: messages that can never be stored, with the reason in headers.
//!
//! Written by the stream-processor ([`DeadLetters`]), read and replayed by
//! operators (`cargo xtask dlq`: [`read`], [`replay`]); one crate, so the
//! header format has one owner and xtask needs no service crate.

use std::time::Duration;

use events_model::{
    DLQ_DETAIL_HEADER, DLQ_FAILED_AT_HEADER, DLQ_REASON_HEADER, DLQ_SOURCE_OFFSET_HEADER, DLQ_SOURCE_PARTITION_HEADER,
    DLQ_SOURCE_TOPIC_HEADER,
};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

/// A message that failed, and why.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// Bounded, snake_case (`invalid_json`, `missing`, `empty_payload`): a metric label.
    pub reason: &'a str,
    pub detail: String,
    pub source_topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl DeadLetters {
    pub fn new(producer: FutureProducer, topic: String, timeout: Duration) -> Self {
        Self { producer, topic, timeout }
    }

    /// Produces the dead letter and waits for Kafka's acknowledgement.
    pub async fn send(&self, letter: &DeadLetter<'_>) -> Result<(), rdkafka::error::KafkaError> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let failed_at = events_model::format_time(chrono::Utc::now());
        let headers = OwnedHeaders::new()
            .insert(Header { key: DLQ_REASON_HEADER, value: Some(letter.reason) })
            .insert(Header { key: DLQ_DETAIL_HEADER, value: Some(letter.detail.as_str()) })
            .insert(Header { key: DLQ_SOURCE_TOPIC_HEADER, value: Some(letter.source_topic) })
            .insert(Header { key: DLQ_SOURCE_PARTITION_HEADER, value: Some(partition.as_str()) })
            .insert(Header { key: DLQ_SOURCE_OFFSET_HEADER, value: Some(offset.as_str()) })
            .insert(Header { key: DLQ_FAILED_AT_HEADER, value: Some(failed_at.as_str()) });
        let mut record = FutureRecord::to(&self.topic).payload(letter.payload).headers(headers);
        if let Some(key) = letter.key {
            record = record.key(key);
        }
        self.producer.send(record, self.timeout).await.map(|_| ()).map_err(|(error, _)| error)
    }
}

/// A dead letter as read back from the topic (for `cargo xtask dlq`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredDeadLetter {
    /// Position in the dead-letter topic.
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
    pub detail: String,
    pub source_topic: String,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub failed_at: String,
    #[serde(skip)]
    pub key: Option<Vec<u8>>,
    #[serde(skip)]
    pub payload: Vec<u8>,
    /// The payload as text (lossy), for display.
    pub payload_preview: String,
}

/// Which dead letters to list or replay.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub reason: Option<String>,
    /// Inclusive range of offsets in the dead-letter topic.
    pub from_offset: Option<i64>,
    pub to_offset: Option<i64>,
    pub partition: Option<i32>,
}

impl Selection {
    pub fn matches(&self, letter: &StoredDeadLetter) -> bool {
        self.reason.as_deref().is_none_or(|r| r == letter.reason)
            && self.partition.is_none_or(|p| p == letter.partition)
            && self.from_offset.is_none_or(|from| letter.offset >= from)
            && self.to_offset.is_none_or(|to| letter.offset <= to)
    }
}

/// Reads every dead letter currently in `topic` that `selection` matches.
///
/// Blocking; reads each partition from its start to its high watermark
/// without joining a consumer group, so it commits nothing.
pub fn read(
    cfg: &service_kit::KafkaConfig,
    topic: &str,
    selection: &Selection,
) -> anyhow::Result<Vec<StoredDeadLetter>> {
    use rdkafka::{
        Message, Offset, TopicPartitionList,
        consumer::{BaseConsumer, Consumer},
        message::Headers,
    };
    let consumer: BaseConsumer = service_kit::deps::kafka::client_config(cfg)
        .set("group.id", "analytics-dlq-reader")
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let Some(topic_meta) = metadata.topics().iter().find(|t| t.name() == topic && t.error().is_none()) else {
        anyhow::bail!("dead-letter topic {topic} does not exist");
    };
    let mut ends = std::collections::BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in topic_meta.partitions() {
        let id = partition.id();
        let (low, high) = consumer.fetch_watermarks(topic, id, timeout)?;
        if high > low {
            ends.insert(id, high);
            assignment.add_partition_offset(topic, id, Offset::Offset(low))?;
        }
    }
    let mut letters = Vec::new();
    if ends.is_empty() {
        return Ok(letters);
    }
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        anyhow::ensure!(std::time::Instant::now() < deadline, "timed out reading {topic}");
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message?;
        let header = |name: &str| -> String {
            message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let payload = message.payload().unwrap_or_default().to_vec();
        let letter = StoredDeadLetter {
            partition: message.partition(),
            offset: message.offset(),
            reason: header(DLQ_REASON_HEADER),
            detail: header(DLQ_DETAIL_HEADER),
            source_topic: header(DLQ_SOURCE_TOPIC_HEADER),
            source_partition: header(DLQ_SOURCE_PARTITION_HEADER).parse().ok(),
            source_offset: header(DLQ_SOURCE_OFFSET_HEADER).parse().ok(),
            failed_at: header(DLQ_FAILED_AT_HEADER),
            key: message.key().map(<[u8]>::to_vec),
            payload_preview: String::from_utf8_lossy(&payload[..payload.len().min(200)]).into_owned(),
            payload,
        };
        if selection.matches(&letter) {
            letters.push(letter);
        }
        if ends.get(&message.partition()).is_some_and(|&end| message.offset() + 1 >= end) {
            ends.remove(&message.partition());
        }
    }
    Ok(letters)
}

/// Sends `letters` back to `raw_topic` (original key and payload) and waits for
/// every acknowledgement. Events keep their `event_id`, so a replayed event
/// that was somehow stored before is still counted once.
pub async fn replay(
    cfg: &service_kit::KafkaConfig,
    raw_topic: &str,
    letters: &[StoredDeadLetter],
) -> anyhow::Result<usize> {
    let producer: FutureProducer = service_kit::deps::kafka::client_config(cfg)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("allow.auto.create.topics", "false")
        .create()?;
    let replayed_from: Vec<String> = letters.iter().map(|l| format!("{}:{}", l.partition, l.offset)).collect();
    let sends = letters.iter().zip(&replayed_from).map(|(letter, from)| {
        let headers = OwnedHeaders::new().insert(Header { key: "dlq.replayed_from", value: Some(from.as_str()) });
        let mut record = FutureRecord::to(raw_topic).payload(&letter.payload).headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key);
        }
        producer.send(record, Duration::from_secs(30))
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(error, _)| error)?;
    }
    Ok(letters.len())
}
