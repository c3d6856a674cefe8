//! The gateway's configuration: the shared sections plus `[ingest]`.
//!
//! Every key can be set in `config/ingest-gateway.toml` or through the
//! environment, e.g. `INGEST_GATEWAY__INGEST__MAX_BATCH_EVENTS=500` or
//! `INGEST_GATEWAY__INGEST__PRODUCE_TIMEOUT=1500ms`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::{AuthConfig, HttpConfig, KafkaConfig, LogConfig, PostgresConfig, impl_service_config};

pub const DEFAULT_PORT: u16 = 3001;
/// `/health`, `/ready` and `/metrics` (`http.ops_port`).
pub const DEFAULT_OPS_PORT: u16 = 9103;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub http: HttpConfig,
    pub log: LogConfig,
    pub kafka: KafkaConfig,
    /// Where the API keys live (`service_kit::auth`).
    pub postgres: PostgresConfig,
    pub auth: AuthConfig,
    pub ingest: IngestConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // Players are embedded on any site: every origin may send events.
            http: HttpConfig {
                cors_allowed_origins: vec!["*".to_owned()],
                ..HttpConfig::with_ports(DEFAULT_PORT, DEFAULT_OPS_PORT)
            },
            log: LogConfig::default(),
            kafka: KafkaConfig::default(),
            // Keys are cached; two connections serve the refreshes.
            postgres: PostgresConfig { pool_size: 2, ..PostgresConfig::default() },
            // One ingest key is shared by every player of a platform.
            auth: AuthConfig { requests_per_second: 10_000, ..AuthConfig::default() },
            ingest: IngestConfig::default(),
        }
    }
}

impl_service_config!(Config, problems: [http, postgres, auth, kafka, ingest]);

/// Limits of the ingest endpoints and settings of the Kafka producer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct IngestConfig {
    /// Most events one batch request may carry; more is answered 413.
    pub max_batch_events: usize,
    /// Largest request body in bytes, checked on the bytes received and again
    /// after gzip decompression; larger is answered 413.
    pub max_body_bytes: usize,
    /// How long a request may wait for Kafka to acknowledge its events before
    /// it is answered 503 (also the producer's `message.timeout.ms`), e.g. `"5s"`.
    #[serde(with = "humantime_serde")]
    pub produce_timeout: Duration,
    /// Partitions of the raw events topic when the gateway creates it. The
    /// gateway is the raw topic's only owner: the stream processor waits for it.
    pub raw_topic_partitions: i32,
    /// The producer's `linger.ms`: how long it waits to fill a batch (`"2ms"`
    /// measured best here; see the crate README).
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// The producer's `queue.buffering.max.messages`: events waiting for Kafka
    /// across all requests; when it is full requests are answered 503.
    pub producer_queue_max_messages: u32,
    /// The `Retry-After` value of 503 answers, in whole seconds (`"2s"`).
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Events whose `timestamp` is older than this before their arrival are
    /// refused (`too_late`): the aggregated tables no longer recompute
    /// windows that old, so such an event would count nowhere. Keep it equal
    /// to aggregator-cron's `aggregation.lateness` and query-api's
    /// `freshness.lateness` (all three default to 48 h; raise all three for a
    /// backfill).
    #[serde(with = "humantime_serde")]
    pub lateness: Duration,
    /// Events per second one key may send to this replica (bursts up to
    /// one second's worth; a batch counts its accepted events); over it a
    /// request is answered 429 with `Retry-After`. 0: no limit.
    pub events_per_second_per_key: u32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_batch_events: 1_000,
            max_body_bytes: 1024 * 1024,
            produce_timeout: Duration::from_secs(5),
            raw_topic_partitions: 6,
            linger: Duration::from_millis(2),
            producer_queue_max_messages: 100_000,
            retry_after: Duration::from_secs(2),
            lateness: events_model::limits::DEFAULT_LATENESS,
            events_per_second_per_key: 50_000,
        }
    }
}

impl IngestConfig {
    /// [`Self::retry_after`] in seconds, as the `Retry-After` header says it.
    pub fn retry_after_secs(&self) -> u32 {
        u32::try_from(self.retry_after.as_secs()).unwrap_or(u32::MAX)
    }

    /// The settings the gateway cannot work with, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_batch_events == 0 {
            problems.push("ingest.max_batch_events must be at least 1".to_owned());
        }
        if self.events_per_second_per_key != 0 && (self.events_per_second_per_key as usize) < self.max_batch_events {
            problems.push(format!(
                "ingest.events_per_second_per_key ({}) must be 0 (no limit) or at least ingest.max_batch_events ({}): \
                 a full batch could never pass",
                self.events_per_second_per_key, self.max_batch_events
            ));
        }
        if self.max_body_bytes == 0 {
            problems.push("ingest.max_body_bytes must be at least 1".to_owned());
        }
        if self.raw_topic_partitions < 1 {
            problems.push("ingest.raw_topic_partitions must be at least 1".to_owned());
        }
        if self.producer_queue_max_messages == 0 {
            problems.push("ingest.producer_queue_max_messages must be at least 1".to_owned());
        }
        if self.produce_timeout <= self.linger {
            problems.push(format!(
                "ingest.produce_timeout ({}) must be greater than ingest.linger ({})",
                humantime_serde::re::humantime::format_duration(self.produce_timeout),
                humantime_serde::re::humantime::format_duration(self.linger)
            ));
        }
        if self.lateness < Duration::from_secs(60) {
            problems.push("ingest.lateness must be at least 1m".to_owned());
        }
        if self.retry_after < Duration::from_secs(1) || self.retry_after.subsec_nanos() != 0 {
            problems.push("ingest.retry_after must be a whole number of seconds, at least 1s".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use service_kit::ServiceConfig as _;

    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let config: Config = service_kit::config::load_from("ingest-gateway", None, &HashMap::new()).unwrap();
        assert_eq!(config.http.port, 3001);
        assert_eq!(config.http.separate_ops_port(), Some(9103), "the ops endpoints on their own port");
        assert_eq!(config.ingest, IngestConfig::default());
        assert_eq!(config.ingest.max_batch_events, 1_000);
        assert_eq!(config.ingest.max_body_bytes, 1_048_576);
        assert_eq!(config.ingest.produce_timeout, Duration::from_secs(5));
        assert_eq!(config.ingest.raw_topic_partitions, 6);
        config.validate().unwrap();
    }

    #[test]
    fn ingest_keys_come_from_the_prefixed_environment() {
        let env: HashMap<String, String> = [
            ("INGEST_GATEWAY__INGEST__MAX_BATCH_EVENTS", "50"),
            ("INGEST_GATEWAY__INGEST__PRODUCE_TIMEOUT", "1500ms"),
            ("KAFKA_BROKERS", "kafka:9092"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config: Config = service_kit::config::load_from("ingest-gateway", None, &env).unwrap();
        assert_eq!(config.ingest.max_batch_events, 50);
        assert_eq!(config.ingest.produce_timeout, Duration::from_millis(1500));
        assert_eq!(config.kafka.brokers, "kafka:9092");
    }

    #[test]
    fn unusable_settings_are_refused_with_their_key() {
        let mut config = Config::default();
        config.ingest.max_batch_events = 0;
        config.ingest.produce_timeout = Duration::from_millis(5);
        config.ingest.linger = Duration::from_millis(5);
        config.ingest.retry_after = Duration::from_millis(1500);
        let problems = config.validate().unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("ingest.max_batch_events"), "{problems:?}");
        assert!(problems[1].contains("ingest.linger (5ms)"), "{problems:?}");
        assert!(problems[2].contains("ingest.retry_after"), "{problems:?}");
    }
}
