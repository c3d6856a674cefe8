//! The dead-letter topic: messages that can never be stored, with the reason in headers.

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
