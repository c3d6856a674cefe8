//! The hub's configuration: the shared sections plus `[hub]`.
//!
//! Every key can be set in `config/realtime-hub.toml` or through the
//! environment, e.g. `REALTIME_HUB__HUB__CLIENT_MAX_EVENTS_PER_SEC=100`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::{AuthConfig, HttpConfig, KafkaConfig, LogConfig, PostgresConfig, impl_service_config};

pub const DEFAULT_PORT: u16 = 3002;
/// `/health`, `/ready` and `/metrics` (`http.ops_port`).
pub const DEFAULT_OPS_PORT: u16 = 9104;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub http: HttpConfig,
    pub log: LogConfig,
    /// Brokers and `topic_prefix`; `consumer_group` is not used: every hub
    /// reads every partition with a group id of its own and commits nothing.
    pub kafka: KafkaConfig,
    /// Where the API keys live (`service_kit::auth`).
    pub postgres: PostgresConfig,
    /// A `read` token on `/ws` and `/api/metrics/realtime`.
    pub auth: AuthConfig,
    pub hub: HubConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpConfig::with_ports(DEFAULT_PORT, DEFAULT_OPS_PORT),
            log: LogConfig::default(),
            kafka: KafkaConfig::default(),
            // Keys are cached; two connections serve the refreshes.
            postgres: PostgresConfig { pool_size: 2, ..PostgresConfig::default() },
            // The realtime answer is a copy of the last tick: cheap to serve often.
            auth: AuthConfig { requests_per_second: 1_000, ..AuthConfig::default() },
            hub: HubConfig::default(),
        }
    }
}

impl_service_config!(Config, problems: [http, postgres, auth, hub]);

/// `[hub]`: the realtime window and the WebSocket clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HubConfig {
    /// How often `realtime_metrics` and `top_videos` are computed and pushed,
    /// aligned to the wall clock (`"1s"`: on every whole second); at least 10 ms.
    #[serde(with = "humantime_serde")]
    pub metrics_interval: Duration,
    /// Length of the realtime window, in whole seconds (`"60s"`).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How far back the partials topic is read at start (by message time),
    /// so that a (re)started hub has a full window at once (`"70s"`, at least `window`).
    #[serde(with = "humantime_serde")]
    pub lookback: Duration,
    /// Entries of `top_videos`.
    pub top_videos: usize,
    /// History of `realtime_metrics` kept for the dashboard's charts, sent on connect (`"15m"`).
    #[serde(with = "humantime_serde")]
    pub history: Duration,
    /// Events a second one client receives at most before it gets a sample;
    /// 0 sends every matching event.
    pub client_max_events_per_sec: u64,
    /// Messages queued for one client; past it events are dropped (and counted).
    pub client_queue_size: usize,
    /// How often the server pings each client (`"10s"`); at least 10 ms.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A client that sent nothing (not even a pong) for this long is closed
    /// (`"30s"`, more than `ping_interval`).
    #[serde(with = "humantime_serde")]
    pub client_timeout: Duration,
    /// WebSocket connections at most; more are answered 503.
    pub max_connections: usize,
    /// WebSocket connections one token may hold open on this replica; more
    /// are answered 429. 0: no limit.
    pub max_connections_per_token: usize,
    /// WebSocket connections one client IP may hold open on this replica;
    /// more are answered 429. 0: no limit.
    pub max_connections_per_ip: usize,
    /// Events buffered between the raw-events consumer and the client tasks;
    /// a client task that falls further behind loses (and counts) the excess.
    pub feed_buffer: usize,
    /// Event ids remembered to show a retried event (one id, two Kafka
    /// messages) once in the feed; 0 turns the check off.
    pub feed_dedupe_ids: usize,
    /// Facts the window holds at most (a guard against memory exhaustion).
    pub max_window_facts: usize,
    /// How often the topics' partition lists are re-read (new partitions are
    /// assigned), `"10s"`, at least 100 ms; every second while a topic does
    /// not exist yet.
    #[serde(with = "humantime_serde")]
    pub metadata_refresh: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            metrics_interval: Duration::from_secs(1),
            window: Duration::from_secs(60),
            lookback: Duration::from_secs(70),
            top_videos: 10,
            history: Duration::from_secs(900),
            client_max_events_per_sec: 50,
            client_queue_size: 256,
            ping_interval: Duration::from_secs(10),
            client_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_token: 100,
            max_connections_per_ip: 50,
            feed_buffer: 4096,
            feed_dedupe_ids: 200_000,
            max_window_facts: 5_000_000,
            metadata_refresh: Duration::from_secs(10),
        }
    }
}

/// The shortest `metrics_interval` and `ping_interval`.
const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The shortest `metadata_refresh`.
const MIN_METADATA_REFRESH: Duration = Duration::from_millis(100);

impl HubConfig {
    /// Snapshots kept for the history.
    pub fn history_len(&self) -> usize {
        let interval = self.metrics_interval.as_millis().max(1);
        usize::try_from(self.history.as_millis() / interval).unwrap_or(usize::MAX)
    }

    /// The values that cannot work, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        use humantime_serde::re::humantime::format_duration;
        let mut problems = Vec::new();
        if self.window < Duration::from_secs(1) || self.window.subsec_nanos() != 0 {
            problems.push(format!(
                "hub.window ({}) must be a whole number of seconds, at least 1s",
                format_duration(self.window)
            ));
        }
        if self.lookback < self.window {
            problems.push(format!(
                "hub.lookback ({}) must cover hub.window ({})",
                format_duration(self.lookback),
                format_duration(self.window)
            ));
        }
        for (key, value) in [("metrics_interval", self.metrics_interval), ("ping_interval", self.ping_interval)] {
            if value < MIN_INTERVAL {
                problems.push(format!("hub.{key} ({}) must be at least 10ms", format_duration(value)));
            }
        }
        if self.metadata_refresh < MIN_METADATA_REFRESH {
            problems.push(format!(
                "hub.metadata_refresh ({}) must be at least 100ms",
                format_duration(self.metadata_refresh)
            ));
        }
        if self.client_queue_size == 0 {
            problems.push("hub.client_queue_size must be at least 1".to_owned());
        }
        if self.feed_buffer == 0 {
            problems.push("hub.feed_buffer must be at least 1".to_owned());
        }
        if self.client_timeout <= self.ping_interval {
            problems.push(format!(
                "hub.client_timeout ({}) must exceed hub.ping_interval ({})",
                format_duration(self.client_timeout),
                format_duration(self.ping_interval)
            ));
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
    fn defaults_are_valid_and_env_overrides_hub_keys() {
        Config::default().validate().unwrap();
        let env: HashMap<String, String> = [
            ("REALTIME_HUB__HUB__CLIENT_MAX_EVENTS_PER_SEC", "5"),
            ("REALTIME_HUB__HUB__PING_INTERVAL", "200ms"),
            ("PORT", "4002"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config: Config = service_kit::config::load_from(crate::SERVICE, None, &env).unwrap();
        assert_eq!(config.hub.client_max_events_per_sec, 5);
        assert_eq!(config.hub.ping_interval, Duration::from_millis(200));
        assert_eq!(config.hub.window, Duration::from_secs(60));
        assert_eq!(config.http.port, 4002);
        assert_eq!(config.http.separate_ops_port(), Some(9104), "the ops endpoints keep their own port");
        assert_eq!(config.hub.history_len(), 900);
    }

    #[test]
    fn impossible_values_are_refused() {
        let bad = HubConfig { lookback: Duration::from_secs(30), ..HubConfig::default() };
        assert!(bad.problems()[0].contains("hub.lookback (30s)"), "{:?}", bad.problems());
        let bad = HubConfig {
            client_timeout: Duration::from_secs(1),
            ping_interval: Duration::from_secs(1),
            ..HubConfig::default()
        };
        assert_eq!(bad.problems().len(), 1);
        let bad = HubConfig { client_queue_size: 0, ..HubConfig::default() };
        assert_eq!(bad.problems().len(), 1);
    }

    #[test]
    fn intervals_below_10_ms_are_refused_not_raised() {
        let bad = HubConfig { metrics_interval: Duration::from_millis(5), ..HubConfig::default() };
        assert_eq!(bad.problems(), ["hub.metrics_interval (5ms) must be at least 10ms"]);
        let mut config = Config::default();
        config.hub.metrics_interval = Duration::from_millis(1);
        config.hub.window = Duration::from_millis(1500);
        assert_eq!(config.validate().unwrap_err().len(), 2);
    }
}
