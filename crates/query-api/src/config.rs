//! The query API's configuration: the shared sections plus `[cache]`.
//!
//! Every key can be set in `config/query-api.toml` or through the environment,
//! e.g. `QUERY_API__CACHE__SHORT_TTL_SECS=5`.

use serde::{Deserialize, Serialize};
use service_kit::{
    ClickHouseConfig, HttpConfig, KafkaConfig, LogConfig, PostgresConfig, RedisConfig, impl_service_config,
};

pub const DEFAULT_PORT: u16 = 3000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub http: HttpConfig,
    pub log: LogConfig,
    pub clickhouse: ClickHouseConfig,
    pub postgres: PostgresConfig,
    pub redis: RedisConfig,
    pub cache: CacheConfig,
    pub freshness: FreshnessConfig,
    pub limits: LimitsConfig,
    /// Only read for `/api/metrics/health`'s consumer lag: the raw topic
    /// (`topic_prefix`) and the stream processor's `consumer_group`.
    pub kafka: KafkaConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpConfig::with_port(DEFAULT_PORT),
            log: LogConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            postgres: PostgresConfig::default(),
            redis: RedisConfig::default(),
            cache: CacheConfig::default(),
            freshness: FreshnessConfig::default(),
            limits: LimitsConfig::default(),
            kafka: KafkaConfig::default(),
        }
    }
}

impl_service_config!(Config);

/// The Redis cache of query results.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CacheConfig {
    /// `false` computes every answer (nothing is read from or written to Redis).
    pub enabled: bool,
    /// Prepended to every cache key, after `redis.key_prefix`.
    pub key_prefix: String,
    /// TTL of answers whose range includes the current hour (still changing).
    pub short_ttl_secs: u64,
    /// TTL of answers whose range ended before the current hour.
    pub long_ttl_secs: u64,
    /// Budget of one Redis command; past it the answer is computed uncached.
    pub timeout_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { enabled: true, key_prefix: "query:".into(), short_ttl_secs: 10, long_ttl_secs: 3600, timeout_ms: 200 }
    }
}

/// How the metric endpoints combine aggregated and raw windows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FreshnessConfig {
    /// How long after a window ends late events may still change it; keep it
    /// equal to aggregator-cron's `aggregation.lateness_hours` (a larger value
    /// only costs more freshness checks, a smaller one can serve stale windows).
    pub lateness_hours: u64,
}

impl Default for FreshnessConfig {
    fn default() -> Self {
        Self { lateness_hours: 48 }
    }
}

impl FreshnessConfig {
    pub fn lateness(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lateness_hours * 3600)
    }
}

/// Bounds on what one query may cost ClickHouse, per query class. The server
/// stops a query that crosses one, and the request answers 503 naming it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LimitsConfig {
    /// ClickHouse's `max_execution_time` for every query of the API.
    pub max_execution_secs: u64,
    /// The metric endpoints (video, user, top videos, realtime).
    pub metrics: QueryLimits,
    /// `POST /api/metrics/custom`.
    pub custom: QueryLimits,
}

/// ClickHouse settings that bound one class of queries; 0 means no limit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct QueryLimits {
    /// `max_memory_usage`: bytes one query may hold.
    pub max_memory_bytes: u64,
    /// `max_rows_to_read`: rows one query may read from its tables.
    pub max_rows_to_read: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_execution_secs: 30,
            metrics: QueryLimits { max_memory_bytes: 2 << 30, max_rows_to_read: 0 },
            custom: QueryLimits { max_memory_bytes: 1 << 30, max_rows_to_read: 100_000_000 },
        }
    }
}

impl Default for QueryLimits {
    fn default() -> Self {
        LimitsConfig::default().metrics
    }
}

impl LimitsConfig {
    /// `client` with the limits of `class` as ClickHouse settings.
    pub fn apply(&self, client: clickhouse::Client, class: &QueryLimits) -> clickhouse::Client {
        client
            .with_setting("max_execution_time", self.max_execution_secs.to_string())
            .with_setting("max_memory_usage", class.max_memory_bytes.to_string())
            .with_setting("max_rows_to_read", class.max_rows_to_read.to_string())
    }
}
