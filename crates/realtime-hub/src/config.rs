//! The hub's configuration: the shared sections plus `[hub]`.
//!
//! Every key can be set in `config/realtime-hub.toml` or through the
//! environment, e.g. `REALTIME_HUB__HUB__CLIENT_MAX_EVENTS_PER_SEC=100`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::{HttpConfig, KafkaConfig, LogConfig, impl_service_config};

pub const DEFAULT_PORT: u16 = 3002;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub http: HttpConfig,
    pub log: LogConfig,
    /// Brokers and `topic_prefix`; `consumer_group` is not used: every hub
    /// reads every partition with a group id of its own and commits nothing.
    pub kafka: KafkaConfig,
    pub hub: HubConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpConfig::with_port(DEFAULT_PORT),
            log: LogConfig::default(),
            kafka: KafkaConfig::default(),
            hub: HubConfig::default(),
        }
    }
}

impl_service_config!(Config);

/// `[hub]`: the realtime window and the WebSocket clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HubConfig {
    /// How often `realtime_metrics` and `top_videos` are computed and pushed,
    /// aligned to the wall clock (1000: on every whole second).
    pub metrics_interval_ms: u64,
    /// Length of the realtime window.
    pub window_secs: u64,
    /// How far back the partials topic is read at start (by message time),
    /// so that a (re)started hub has a full window at once.
    pub lookback_secs: u64,
    /// Entries of `top_videos`.
    pub top_videos: usize,
    /// History of `realtime_metrics` kept for the dashboard's charts, sent on connect.
    pub history_secs: u64,
    /// Events a second one client receives at most before it gets a sample;
    /// 0 sends every matching event.
    pub client_max_events_per_sec: u64,
    /// Messages queued for one client; past it events are dropped (and counted).
    pub client_queue_size: usize,
    /// How often the server pings each client.
    pub ping_interval_ms: u64,
    /// A client that sent nothing (not even a pong) for this long is closed.
    pub client_timeout_ms: u64,
    /// WebSocket connections at most; more are answered 503.
    pub max_connections: usize,
    /// Events buffered between the raw-events consumer and the client tasks;
    /// a client task that falls further behind loses (and counts) the excess.
    pub feed_buffer: usize,
    /// Event ids remembered to show a retried event (one id, two Kafka
    /// messages) once in the feed; 0 turns the check off.
    pub feed_dedupe_ids: usize,
    /// Facts the window holds at most (a guard against memory exhaustion).
    pub max_window_facts: usize,
    /// How often the topics' partition lists are re-read (new partitions are
    /// assigned); every second while a topic does not exist yet.
    pub metadata_refresh_ms: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            metrics_interval_ms: 1000,
            window_secs: 60,
            lookback_secs: 70,
            top_videos: 10,
            history_secs: 900,
            client_max_events_per_sec: 50,
            client_queue_size: 256,
            ping_interval_ms: 10_000,
            client_timeout_ms: 30_000,
            max_connections: 10_000,
            feed_buffer: 4096,
            feed_dedupe_ids: 200_000,
            max_window_facts: 5_000_000,
            metadata_refresh_ms: 10_000,
        }
    }
}

impl HubConfig {
    pub fn metrics_interval(&self) -> Duration {
        Duration::from_millis(self.metrics_interval_ms.max(10))
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms.max(10))
    }

    pub fn client_timeout(&self) -> Duration {
        Duration::from_millis(self.client_timeout_ms.max(10))
    }

    /// Snapshots kept for the history.
    pub fn history_len(&self) -> usize {
        usize::try_from(self.history_secs * 1000 / self.metrics_interval_ms.max(10)).unwrap_or(usize::MAX)
    }

    /// Rejects values that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.window_secs > 0, "hub.window_secs must be at least 1");
        anyhow::ensure!(
            self.lookback_secs >= self.window_secs,
            "hub.lookback_secs ({}) must cover hub.window_secs ({})",
            self.lookback_secs,
            self.window_secs
        );
        anyhow::ensure!(self.client_queue_size > 0, "hub.client_queue_size must be at least 1");
        anyhow::ensure!(self.feed_buffer > 0, "hub.feed_buffer must be at least 1");
        anyhow::ensure!(
            self.client_timeout_ms > self.ping_interval_ms,
            "hub.client_timeout_ms ({}) must exceed hub.ping_interval_ms ({})",
            self.client_timeout_ms,
            self.ping_interval_ms
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn defaults_are_valid_and_env_overrides_hub_keys() {
        HubConfig::default().validate().unwrap();
        let env: HashMap<String, String> = [
            ("REALTIME_HUB__HUB__CLIENT_MAX_EVENTS_PER_SEC", "5"),
            ("REALTIME_HUB__HUB__PING_INTERVAL_MS", "200"),
            ("PORT", "4002"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config: Config = service_kit::config::load_from(crate::SERVICE, None, &env).unwrap();
        assert_eq!(config.hub.client_max_events_per_sec, 5);
        assert_eq!(config.hub.ping_interval_ms, 200);
        assert_eq!(config.hub.window_secs, 60);
        assert_eq!(config.http.port, 4002);
        assert_eq!(config.hub.history_len(), 900);
    }

    #[test]
    fn impossible_values_are_refused() {
        let bad = HubConfig { lookback_secs: 30, ..HubConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("lookback_secs"));
        let bad = HubConfig { client_timeout_ms: 1000, ping_interval_ms: 1000, ..HubConfig::default() };
        assert!(bad.validate().is_err());
        let bad = HubConfig { client_queue_size: 0, ..HubConfig::default() };
        assert!(bad.validate().is_err());
    }
}
