//! The query API's configuration: the shared sections plus `[cache]`.
//!
//! Every key can be set in `config/query-api.toml` or through the environment,
//! e.g. `QUERY_API__CACHE__SHORT_TTL=5s`.

use std::time::Duration;

use humantime_serde::re::humantime::format_duration;
use serde::{Deserialize, Serialize};
use service_kit::{
    AuthConfig, ClickHouseConfig, HttpConfig, KafkaConfig, LogConfig, PostgresConfig, RedisConfig, impl_service_config,
};

pub const DEFAULT_PORT: u16 = 3000;
/// `/health`, `/ready` and `/metrics` (`http.ops_port`).
pub const DEFAULT_OPS_PORT: u16 = 9100;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub http: HttpConfig,
    pub log: LogConfig,
    pub clickhouse: ClickHouseConfig,
    pub postgres: PostgresConfig,
    pub redis: RedisConfig,
    /// Bearer tokens: `read` for every `/api/*` route, `admin` for catalog writes.
    pub auth: AuthConfig,
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
            http: HttpConfig::with_ports(DEFAULT_PORT, DEFAULT_OPS_PORT),
            log: LogConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            postgres: PostgresConfig::default(),
            redis: RedisConfig::default(),
            auth: AuthConfig::default(),
            cache: CacheConfig::default(),
            freshness: FreshnessConfig::default(),
            limits: LimitsConfig::default(),
            kafka: KafkaConfig::default(),
        }
    }
}

impl_service_config!(Config, problems: [http, clickhouse, postgres, redis, auth, cache, limits]);

/// The Redis cache of query results.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CacheConfig {
    /// `false` computes every answer (nothing is read from or written to Redis).
    pub enabled: bool,
    /// Prepended to every cache key, after `redis.key_prefix`.
    pub key_prefix: String,
    /// TTL of answers whose range may still change (`"10s"`, whole seconds).
    #[serde(with = "humantime_serde")]
    pub short_ttl: Duration,
    /// TTL of answers whose range cannot change any more (`"1h"`, whole
    /// seconds, at least `short_ttl`).
    #[serde(with = "humantime_serde")]
    pub long_ttl: Duration,
    /// Budget of one Redis command; past it the answer is computed uncached (`"200ms"`).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// After a failed or timed-out Redis command, Redis is not asked again
    /// for this long (`"5s"`): answers are computed uncached meanwhile, then
    /// one request tries Redis again.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            key_prefix: "query:".into(),
            short_ttl: Duration::from_secs(10),
            long_ttl: Duration::from_secs(3600),
            timeout: Duration::from_millis(200),
            retry_after: Duration::from_secs(5),
        }
    }
}

impl CacheConfig {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, ttl) in [("short_ttl", self.short_ttl), ("long_ttl", self.long_ttl)] {
            if ttl < Duration::from_secs(1) || ttl.subsec_nanos() != 0 {
                problems.push(format!(
                    "cache.{key} ({}) must be a whole number of seconds, at least 1s",
                    format_duration(ttl)
                ));
            }
        }
        if self.long_ttl < self.short_ttl {
            problems.push(format!(
                "cache.long_ttl ({}) must be at least cache.short_ttl ({})",
                format_duration(self.long_ttl),
                format_duration(self.short_ttl)
            ));
        }
        if self.timeout.is_zero() {
            problems.push("cache.timeout must be above 0".to_owned());
        }
        if self.retry_after.is_zero() {
            problems.push("cache.retry_after must be above 0".to_owned());
        }
        problems
    }
}

/// How the metric endpoints combine aggregated and raw windows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FreshnessConfig {
    /// How long after a window ends late events may still change it (`"48h"`);
    /// keep it equal to aggregator-cron's `aggregation.lateness` (a larger value
    /// only costs more freshness checks, a smaller one can serve stale windows).
    #[serde(with = "humantime_serde")]
    pub lateness: Duration,
    /// Whether reads take windows still open to late events from
    /// aggregator-cron's stored view facts, rebuilding from the raw events only
    /// the views whose keys received rows since its newest facts pass
    /// (`"top"`, the default, `"all"`, or `"off"`: every view of such a
    /// window is rebuilt, which grows with the platform's traffic).
    ///
    /// Unless `"off"`, a video or user read lists the keys of its views
    /// touched since a recent pass (`facts_max_staleness`) once and rebuilds
    /// those: exact at once, and none when nothing is newer than the pass
    /// (whatever its age). With more than `facts_listed_keys_max` of them it
    /// rebuilds every view of its open windows, or with `"all"` the keys
    /// touched up to `facts_read_margin` ago (a view whose first row since
    /// the pass is younger is read as the pass left it).
    ///
    /// Top videos, exact (below `top_from_pass_min_views`), always uses the
    /// margin: a platform's touched keys are too many to list.
    pub stored_facts: StoredFactsUse,
    /// See `stored_facts` (`2000`): the most touched keys a video or user
    /// read lists and writes into its statement (about 0.1 KB each, twice).
    pub facts_listed_keys_max: u32,
    /// See `stored_facts` (`"1s"`, whole seconds): rows inserted this
    /// recently are assumed possibly still in flight, so both halves of a
    /// read would not agree on them.
    #[serde(with = "humantime_serde")]
    pub facts_read_margin: Duration,
    /// The newest facts pass is used only while it covers inserts up to this
    /// long ago (`"2m"`); older, the aggregator is behind or down, and the
    /// keys touched since would cost more than a rebuild.
    #[serde(with = "humantime_serde")]
    pub facts_max_staleness: Duration,
    /// Top videos answers the hours still open to late events from the
    /// newest facts pass's per-video totals, as of that pass (the answer's
    /// `freshness.as_of`, typically 10–20 s behind), when the pass counted at
    /// least this many views in its two newest hours (`20000`): on a platform
    /// that busy an exact read must filter every row of the open hours, and
    /// takes seconds. Below it, or with `0` views counted, the answer is
    /// exact at once. `0` always answers from a recent pass; a value above
    /// any platform's traffic (`1000000000000`) never does.
    pub top_from_pass_min_views: u64,
    /// …and only while the pass covers inserts up to this long ago (`"30s"`;
    /// the pass's own margin is 10 s and it runs every 5 s). Older, top
    /// videos reads exactly.
    #[serde(with = "humantime_serde")]
    pub top_from_pass_max_lag: Duration,
    /// A video's metrics answer the hours still open to late events from the
    /// newest facts pass's hour rows of that video, as of that pass (the
    /// answer's `freshness.as_of`, typically 10–20 s behind), when those rows
    /// count at least this many views of the video from the lateness horizon
    /// on (`5000`: about a view every 35 s over 48 h): an exact read of such
    /// a video groups every stored view of its open hours and rebuilds the
    /// views touched since the pass from the raw events, hundreds of
    /// milliseconds for the busiest. Below it the answer is exact at once.
    /// A value above any video's views (`1000000000000`) never answers as of
    /// a pass; with `stored_facts = "off"` no read does.
    pub video_from_pass_min_views: u64,
    /// …and only while the pass covers inserts up to this long ago (`"30s"`).
    #[serde(with = "humantime_serde")]
    pub video_from_pass_max_lag: Duration,
    /// Whether custom queries read whole hours from aggregator-cron's hourly
    /// rollup (`events_hourly`), with the rows inserted after each hour's run
    /// from the raw events (`true`); the rest of the range, and queries the
    /// rollup cannot answer (distinct counts, the video, minute buckets),
    /// read the raw events.
    /// The answers are the same either way; `false` reads everything raw.
    pub custom_rollup: bool,
    /// Whether video and user reads run beside their freshness check on the
    /// guess that nothing of theirs is newer than the windows' runs and the
    /// newest facts pass (`true`), the check then confirming the guess or
    /// the read running again exactly; `false` runs the check first. The
    /// answers are the same either way.
    pub settled_guess: bool,
}

impl Default for FreshnessConfig {
    fn default() -> Self {
        Self {
            lateness: events_model::limits::DEFAULT_LATENESS,
            stored_facts: StoredFactsUse::Top,
            facts_read_margin: Duration::from_secs(1),
            facts_listed_keys_max: 2_000,
            facts_max_staleness: Duration::from_secs(120),
            top_from_pass_min_views: 20_000,
            top_from_pass_max_lag: Duration::from_secs(30),
            video_from_pass_min_views: 5_000,
            video_from_pass_max_lag: Duration::from_secs(30),
            custom_rollup: true,
            settled_guess: true,
        }
    }
}

/// `freshness.stored_facts`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoredFactsUse {
    Off,
    Top,
    All,
}

/// Bounds on what one query may cost ClickHouse, per query class. The server
/// stops a query that crosses one, and the request answers 503 naming it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LimitsConfig {
    /// ClickHouse's `max_execution_time` for every query of the API (`"30s"`,
    /// whole seconds; `"0s"` means no limit).
    #[serde(with = "humantime_serde")]
    pub max_execution: Duration,
    /// The metric endpoints (video, user, top videos, realtime).
    pub metrics: QueryLimits,
    /// `POST /api/metrics/custom`.
    pub custom: QueryLimits,
    /// Custom queries one key may have running at once on this replica;
    /// more are answered 429 with `Retry-After`. 0: no limit.
    pub custom_concurrent_per_key: usize,
}

/// ClickHouse settings that bound one class of queries; 0 means no limit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct QueryLimits {
    /// `max_memory_usage`: bytes one query may hold.
    pub max_memory_bytes: u64,
    /// `max_rows_to_read`: rows one query may read from its tables.
    pub max_rows_to_read: u64,
    /// `max_bytes_before_external_sort` and `…_group_by`: past this much
    /// memory a query's sort (the deduplication by `event_id`) or grouping
    /// (the views of a rebuild) spills to disk, slower but answering, instead
    /// of stopping at `max_memory_bytes`. Unset: half of `max_memory_bytes`
    /// (merging what spilled needs as much again); 0: never spill.
    pub spill_bytes: Option<u64>,
}

impl QueryLimits {
    /// [`Self::spill_bytes`] with its default applied.
    pub fn spill_bytes(&self) -> u64 {
        self.spill_bytes.unwrap_or(self.max_memory_bytes / 2)
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_execution: Duration::from_secs(30),
            metrics: QueryLimits { max_memory_bytes: 2 << 30, max_rows_to_read: 0, spill_bytes: None },
            custom: QueryLimits { max_memory_bytes: 1 << 30, max_rows_to_read: 100_000_000, spill_bytes: None },
            custom_concurrent_per_key: 2,
        }
    }
}

impl Default for QueryLimits {
    fn default() -> Self {
        LimitsConfig::default().metrics
    }
}

impl LimitsConfig {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, class) in [("metrics", &self.metrics), ("custom", &self.custom)] {
            if class.max_memory_bytes > 0 && class.spill_bytes() > class.max_memory_bytes / 2 {
                problems.push(format!(
                    "limits.{name}.spill_bytes ({}) must be at most half of limits.{name}.max_memory_bytes ({}): \
                     a sort or grouping that spills needs as much memory again to merge",
                    class.spill_bytes(),
                    class.max_memory_bytes
                ));
            }
        }
        if self.max_execution.subsec_nanos() != 0 {
            problems.push(format!(
                "limits.max_execution ({}) must be a whole number of seconds",
                format_duration(self.max_execution)
            ));
        }
        problems
    }

    /// `client` with the limits of `class` as ClickHouse settings.
    pub fn apply(&self, client: clickhouse::Client, class: &QueryLimits) -> clickhouse::Client {
        client
            .with_setting("max_execution_time", self.max_execution.as_secs().to_string())
            .with_setting("max_memory_usage", class.max_memory_bytes.to_string())
            .with_setting("max_rows_to_read", class.max_rows_to_read.to_string())
            .with_setting("max_bytes_before_external_sort", class.spill_bytes().to_string())
            .with_setting("max_bytes_before_external_group_by", class.spill_bytes().to_string())
            // Video and user reads write the keys touched since the facts pass into their statement.
            .with_setting("max_query_size", metrics_sql::facts::MAX_LISTED_QUERY_BYTES.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use service_kit::ServiceConfig as _;

    use super::*;

    #[test]
    fn defaults_are_valid_and_durations_come_from_the_environment() {
        Config::default().validate().unwrap();
        let env: HashMap<String, String> =
            [("QUERY_API__CACHE__SHORT_TTL", "5s"), ("QUERY_API__FRESHNESS__LATENESS", "72h")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        let config: Config = service_kit::config::load_from(crate::SERVICE, None, &env).unwrap();
        assert_eq!(config.cache.short_ttl, Duration::from_secs(5));
        assert_eq!(config.freshness.lateness, Duration::from_secs(72 * 3600));
        assert_eq!((config.http.port, config.http.separate_ops_port()), (3000, Some(9100)));
    }

    #[test]
    fn unusable_settings_are_all_listed_with_their_keys() {
        let mut config = Config::default();
        config.cache.short_ttl = Duration::from_secs(7200);
        config.cache.timeout = Duration::ZERO;
        config.limits.max_execution = Duration::from_millis(1500);
        config.limits.custom.spill_bytes = Some(600 << 20);
        let problems = config.validate().unwrap_err();
        assert_eq!(
            problems,
            [
                "cache.long_ttl (1h) must be at least cache.short_ttl (2h)",
                "cache.timeout must be above 0",
                "limits.custom.spill_bytes (629145600) must be at most half of limits.custom.max_memory_bytes \
                 (1073741824): a sort or grouping that spills needs as much memory again to merge",
                "limits.max_execution (1s 500ms) must be a whole number of seconds",
            ]
        );
    }

    #[test]
    fn queries_spill_at_half_their_memory_limit_unless_told_otherwise() {
        let limits = LimitsConfig::default();
        assert_eq!(limits.custom.spill_bytes(), 512 << 20);
        assert_eq!(limits.metrics.spill_bytes(), 1 << 30);
        let off = QueryLimits { spill_bytes: Some(0), ..limits.custom.clone() };
        assert_eq!(off.spill_bytes(), 0);
    }
}
