//! The gateway's configuration: the shared sections plus `[ingest]`.
//!
//! Every key can be set in `config/ingest-gateway.toml` or through the
//! environment, e.g. `INGEST_GATEWAY__INGEST__MAX_BATCH_EVENTS=500`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::{HttpConfig, KafkaConfig, LogConfig, impl_service_config};

pub const DEFAULT_PORT: u16 = 3001;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub http: HttpConfig,
    pub log: LogConfig,
    pub kafka: KafkaConfig,
    pub ingest: IngestConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpConfig::with_port(DEFAULT_PORT),
            log: LogConfig::default(),
            kafka: KafkaConfig::default(),
            ingest: IngestConfig::default(),
        }
    }
}

impl_service_config!(Config);

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
    /// it is answered 503 (also the producer's `message.timeout.ms`).
    pub produce_timeout_ms: u64,
    /// Partitions of the raw events topic when the gateway creates it.
    pub raw_topic_partitions: i32,
    /// The producer's `linger.ms`: how long it waits to fill a batch (2 ms
    /// measured best here; see the crate README).
    pub linger_ms: u64,
    /// The producer's `queue.buffering.max.messages`: events waiting for Kafka
    /// across all requests; when it is full requests are answered 503.
    pub producer_queue_max_messages: u32,
    /// The `Retry-After` value (seconds) of 503 answers.
    pub retry_after_secs: u32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_batch_events: 1_000,
            max_body_bytes: 1024 * 1024,
            produce_timeout_ms: 5_000,
            raw_topic_partitions: 6,
            linger_ms: 2,
            producer_queue_max_messages: 100_000,
            retry_after_secs: 2,
        }
    }
}

impl IngestConfig {
    pub fn produce_timeout(&self) -> Duration {
        Duration::from_millis(self.produce_timeout_ms)
    }

    /// Rejects settings the gateway cannot work with, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_batch_events >= 1, "ingest.max_batch_events must be at least 1");
        anyhow::ensure!(self.max_body_bytes >= 1, "ingest.max_body_bytes must be at least 1");
        anyhow::ensure!(self.raw_topic_partitions >= 1, "ingest.raw_topic_partitions must be at least 1");
        anyhow::ensure!(self.producer_queue_max_messages >= 1, "ingest.producer_queue_max_messages must be at least 1");
        anyhow::ensure!(
            self.produce_timeout_ms > self.linger_ms,
            "ingest.produce_timeout_ms ({}) must be greater than ingest.linger_ms ({})",
            self.produce_timeout_ms,
            self.linger_ms
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let config: Config = service_kit::config::load_from("ingest-gateway", None, &HashMap::new()).unwrap();
        assert_eq!(config.http.port, 3001);
        assert_eq!(config.ingest, IngestConfig::default());
        assert_eq!(config.ingest.max_batch_events, 1_000);
        assert_eq!(config.ingest.max_body_bytes, 1_048_576);
        assert_eq!(config.ingest.produce_timeout(), Duration::from_secs(5));
        assert_eq!(config.ingest.raw_topic_partitions, 6);
        config.ingest.validate().unwrap();
    }

    #[test]
    fn ingest_keys_come_from_the_prefixed_environment() {
        let env: HashMap<String, String> = [
            ("INGEST_GATEWAY__INGEST__MAX_BATCH_EVENTS", "50"),
            ("INGEST_GATEWAY__INGEST__PRODUCE_TIMEOUT_MS", "1500"),
            ("KAFKA_BROKERS", "kafka:9092"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config: Config = service_kit::config::load_from("ingest-gateway", None, &env).unwrap();
        assert_eq!(config.ingest.max_batch_events, 50);
        assert_eq!(config.ingest.produce_timeout_ms, 1500);
        assert_eq!(config.kafka.brokers, "kafka:9092");
    }

    #[test]
    fn unusable_settings_are_refused_with_their_key() {
        let zero_batch = IngestConfig { max_batch_events: 0, ..IngestConfig::default() };
        assert!(zero_batch.validate().unwrap_err().to_string().contains("max_batch_events"));
        let linger = IngestConfig { produce_timeout_ms: 5, linger_ms: 5, ..IngestConfig::default() };
        assert!(linger.validate().unwrap_err().to_string().contains("linger_ms"));
    }
}
