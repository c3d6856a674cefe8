//! Kafka topic names and dead-letter headers.

/// Default prefix of every topic name.
pub const DEFAULT_TOPIC_PREFIX: &str = "analytics.";

/// Dead-letter header: why the message failed, an
/// [`ErrorCode`](crate::ErrorCode) name or another short snake_case reason.
pub const DLQ_REASON_HEADER: &str = "dlq.reason";
/// Dead-letter header: the full, human-readable explanation (validation errors as JSON).
pub const DLQ_DETAIL_HEADER: &str = "dlq.detail";
/// Dead-letter header: topic the message was read from.
pub const DLQ_SOURCE_TOPIC_HEADER: &str = "dlq.source_topic";
/// Dead-letter header: partition the message was read from (decimal).
pub const DLQ_SOURCE_PARTITION_HEADER: &str = "dlq.source_partition";
/// Dead-letter header: offset of the message in its partition (decimal).
pub const DLQ_SOURCE_OFFSET_HEADER: &str = "dlq.source_offset";
/// Dead-letter header: when processing gave up (RFC 3339, UTC).
pub const DLQ_FAILED_AT_HEADER: &str = "dlq.failed_at";

/// The names of the Kafka topics the services share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Validated events from the ingest gateway (wire format, keyed by
    /// session id).
    pub raw_events: String,
    /// Messages the stream processor could not handle, with `dlq.*` headers.
    pub dead_letters: String,
    /// Realtime window partial aggregates for the realtime hub.
    pub realtime_partials: String,
}

impl Topics {
    /// Topic names under `prefix`: `{prefix}events.raw`,
    /// `{prefix}events.dlq` and `{prefix}realtime.partials`.
    pub fn new(prefix: &str) -> Topics {
        Topics {
            raw_events: format!("{prefix}events.raw"),
            dead_letters: format!("{prefix}events.dlq"),
            realtime_partials: format!("{prefix}realtime.partials"),
        }
    }
}

impl Default for Topics {
    /// Topic names under [`DEFAULT_TOPIC_PREFIX`].
    fn default() -> Topics {
        Topics::new(DEFAULT_TOPIC_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_topics_use_the_analytics_prefix() {
        let topics = Topics::default();
        assert_eq!(topics.raw_events, "analytics.events.raw");
        assert_eq!(topics.dead_letters, "analytics.events.dlq");
        assert_eq!(topics.realtime_partials, "analytics.realtime.partials");
    }

    #[test]
    fn custom_prefix_is_prepended_verbatim() {
        let topics = Topics::new("test-42.");
        assert_eq!(topics.raw_events, "test-42.events.raw");
        assert_eq!(Topics::new("").dead_letters, "events.dlq");
    }

    #[test]
    fn dlq_header_names() {
        assert_eq!(DLQ_REASON_HEADER, "dlq.reason");
        assert_eq!(DLQ_SOURCE_TOPIC_HEADER, "dlq.source_topic");
        assert_eq!(DLQ_SOURCE_PARTITION_HEADER, "dlq.source_partition");
        assert_eq!(DLQ_SOURCE_OFFSET_HEADER, "dlq.source_offset");
        assert_eq!(DLQ_FAILED_AT_HEADER, "dlq.failed_at");
    }
}
