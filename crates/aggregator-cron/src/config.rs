//! The service's typed configuration: defaults < TOML file < environment
//! (`AGGREGATOR_CRON__AGGREGATION__LATENESS=72h`), loaded by
//! `service_kit::config` like every other service.

use std::time::Duration;

use chrono::NaiveTime;
use humantime_serde::re::humantime::format_duration;
use metrics_sql::windows::Job;
use serde::{Deserialize, Serialize};
use service_kit::{ClickHouseConfig, HttpConfig, LogConfig, PostgresConfig, impl_service_config};

use crate::retention::RetentionTable;

pub const DEFAULT_PORT: u16 = 9102;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub http: HttpConfig,
    pub log: LogConfig,
    pub clickhouse: ClickHouseConfig,
    pub postgres: PostgresConfig,
    pub aggregation: AggregationConfig,
    pub facts: FactsConfig,
    pub retention: RetentionConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpConfig::with_port(DEFAULT_PORT),
            log: LogConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            postgres: PostgresConfig::default(),
            aggregation: AggregationConfig::default(),
            facts: FactsConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

impl_service_config!(Config, problems: [http, clickhouse, postgres, aggregation, facts, retention], warnings: Config::config_warnings);

impl Config {
    /// Settings that work but are probably not meant (`ServiceConfig::warnings`).
    pub fn config_warnings(&self) -> Vec<String> {
        let mut warnings = self.aggregation.warnings();
        warnings.extend(self.retention.warnings());
        let lateness_days = self.aggregation.lateness.as_secs().div_ceil(24 * 3600);
        if u64::from(self.retention.events_by_time_days) < lateness_days + 2 {
            warnings.push(format!(
                "retention.events_by_time_days ({}) is under aggregation.lateness ({}) plus two days: reads of \
                 the oldest open windows and facts passes would miss events that retention already dropped",
                self.retention.events_by_time_days,
                format_duration(self.aggregation.lateness)
            ));
        }
        if u64::from(self.retention.facts_days) <= lateness_days {
            warnings.push(format!(
                "retention.facts_days ({}) does not exceed aggregation.lateness ({}): facts passes write views \
                 whose days retention then drops, and reads of those windows fall back to the raw events",
                self.retention.facts_days,
                format_duration(self.aggregation.lateness)
            ));
        }
        if u64::from(self.retention.events_days) <= lateness_days {
            warnings.push(format!(
                "retention.events_days ({}) does not exceed aggregation.lateness ({}): late windows may be \
                 recomputed from events that are already gone",
                self.retention.events_days,
                format_duration(self.aggregation.lateness)
            ));
        }
        warnings
    }
}

/// `[facts]`: the facts pass (metrics_sql::facts), which keeps the facts of
/// the views still open to late events up to date so that reads rebuild only
/// the views that changed since the last pass.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FactsConfig {
    /// Whether the service runs facts passes (`true`). Without them, reads
    /// rebuild every view of a window open to late events from the raw
    /// events (exact either way), which at a steady 2,000 events/s outgrows
    /// the query memory limit for top videos within the hour (BENCHMARKS.md);
    /// with them such a read rebuilds only the views touched since the last
    /// pass. A pass costs background CPU in proportion to the live traffic.
    pub enabled: bool,
    /// Time between the end of a pass and the start of the next (`"5s"`).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A pass covers the rows inserted up to ClickHouse's clock minus this
    /// margin (`"10s"`, whole seconds): an insert still in flight is not
    /// assumed visible. Each pass also redoes the keys of one margin before
    /// the previous pass's cover.
    #[serde(with = "humantime_serde")]
    pub margin: Duration,
    /// When the newest pass covers less than this (`"30m"`), the next pass
    /// rebuilds every view of the lateness horizon instead of the touched keys.
    #[serde(with = "humantime_serde")]
    pub full_after: Duration,
}

impl Default for FactsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(5),
            margin: Duration::from_secs(10),
            full_after: Duration::from_secs(30 * 60),
        }
    }
}

impl FactsConfig {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.interval < Duration::from_millis(100) {
            problems.push("facts.interval must be at least 100ms".to_owned());
        }
        if self.margin.as_secs() == 0 {
            problems
                .push("facts.margin must be at least 1s: rows inserted in a pass's second may be missed".to_owned());
        }
        if self.full_after <= self.margin + self.interval {
            problems.push("facts.full_after must exceed facts.margin + facts.interval".to_owned());
        }
        problems
    }
}

/// `[aggregation]`: windows, schedule, lateness.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AggregationConfig {
    /// Whether the service runs the scheduler (the ops endpoints are served either way).
    pub enabled: bool,
    /// A window is recomputed when its views receive rows up to this long after it ended (`"48h"`).
    #[serde(with = "humantime_serde")]
    pub lateness: Duration,
    /// `covered_until` = ClickHouse server time at the start of a run minus
    /// this margin (`"60s"`, whole seconds).
    #[serde(with = "humantime_serde")]
    pub safety_margin: Duration,
    /// An hour window is due this long after it ends (`"5m"`: at `:05`).
    #[serde(with = "humantime_serde")]
    pub hourly_offset: Duration,
    /// A day window is due this long after it ends (`"15m"`: at `00:15` UTC).
    #[serde(with = "humantime_serde")]
    pub daily_offset: Duration,
    /// Without any recorded run, catching up starts this long ago (`"48h"`).
    #[serde(with = "humantime_serde")]
    pub initial_lookback: Duration,
    /// How often the scheduler looks for late windows between the scheduled times (`"5m"`).
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// A stale window is recomputed at most once per this interval (`"15m"`,
    /// whole seconds). Windows whose views are still playing get rows at every
    /// tick; without a floor each of them would be recomputed every
    /// `tick_interval`. Answers stay exact either way: query-api reads a stale
    /// window from the raw events. `"0s"` turns the floor off.
    #[serde(with = "humantime_serde")]
    pub min_recompute_interval: Duration,
    /// The custom query's hourly rollup (`events_hourly`) also rolls up the
    /// current hour, at the ticks at least this long after its previous run
    /// (`"5m"`, whole seconds, less a tenth of it for the ticks' jitter; the
    /// ticks come every `tick_interval`), so that a
    /// custom query reads from the raw events only the rows inserted since
    /// (the minutes since, not the hour). `"0s"` leaves the current hour raw.
    #[serde(with = "humantime_serde")]
    pub open_hour_interval: Duration,
    /// On shutdown, a window in progress may finish within this time (`"2s"`);
    /// after it, it is abandoned (recorded as failed and run again at the next start).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// ClickHouse's `max_bytes_before_external_group_by` for the window
    /// statements: beyond this much memory, a window's GROUP BY of view keys
    /// spills to disk instead of failing at the server's per-query memory
    /// limit (a day of about 2.9 M events needed more than 3.7 GiB). Keep it
    /// below half of `max_memory_usage`. 0 turns spilling off.
    pub external_group_by_bytes: u64,
    /// Each tick rolls up into `video_day_totals` the final days (every hour
    /// aggregated and past the lateness horizon) of this long before now that
    /// are not rolled up at their hours' newest run (`"31days"`; top videos
    /// reads whole days there). A backfill rolls up the days it touched.
    #[serde(with = "humantime_serde")]
    pub rollup_lookback: Duration,
    /// A window whose run failed is tried again this long after the failure
    /// (`"30s"`), doubled after each further failure in a row up to
    /// `retry_backoff_max`; meanwhile later windows go ahead.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// The longest wait between two attempts of a failing window (`"15m"`).
    #[serde(with = "humantime_serde")]
    pub retry_backoff_max: Duration,
}

impl Default for AggregationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            lateness: events_model::limits::DEFAULT_LATENESS,
            safety_margin: Duration::from_secs(60),
            hourly_offset: Duration::from_secs(5 * 60),
            daily_offset: Duration::from_secs(15 * 60),
            initial_lookback: Duration::from_secs(48 * 3600),
            tick_interval: Duration::from_secs(300),
            min_recompute_interval: Duration::from_secs(900),
            open_hour_interval: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(2),
            external_group_by_bytes: 1_500_000_000,
            rollup_lookback: Duration::from_secs(31 * 86_400),
            retry_backoff: Duration::from_secs(30),
            retry_backoff_max: Duration::from_secs(15 * 60),
        }
    }
}

impl AggregationConfig {
    /// How long after its end a window of `job` is due.
    pub fn offset(&self, job: Job) -> Duration {
        match job {
            Job::VideoMetrics | Job::EventsHourly => self.hourly_offset,
            Job::UserEngagementDaily => self.daily_offset,
        }
    }

    /// `client` with the window statements' spilling setting.
    pub fn spilling(&self, client: clickhouse::Client) -> clickhouse::Client {
        match self.external_group_by_bytes {
            0 => client,
            bytes => client.with_setting("max_bytes_before_external_group_by", bytes.to_string()),
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.tick_interval < Duration::from_secs(1) {
            problems.push("aggregation.tick_interval must be at least 1s".to_owned());
        }
        if self.hourly_offset >= Duration::from_secs(3600) {
            problems
                .push(format!("aggregation.hourly_offset ({}) must be below 1h", format_duration(self.hourly_offset)));
        }
        if self.daily_offset >= Duration::from_secs(24 * 3600) {
            problems
                .push(format!("aggregation.daily_offset ({}) must be below 24h", format_duration(self.daily_offset)));
        }
        if self.retry_backoff.is_zero() {
            problems.push("aggregation.retry_backoff must be above 0".to_owned());
        }
        if self.retry_backoff_max < self.retry_backoff {
            problems.push(format!(
                "aggregation.retry_backoff_max ({}) must be at least aggregation.retry_backoff ({})",
                format_duration(self.retry_backoff_max),
                format_duration(self.retry_backoff)
            ));
        }
        problems
    }

    fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.safety_margin.as_secs() == 0 {
            warnings.push(
                "aggregation.safety_margin is under 1s: rows inserted in the second a run starts may be missed \
                 until the next late-event check"
                    .to_owned(),
            );
        }
        warnings
    }
}

/// `[retention]`: how long each table keeps its partitions, and when
/// the daily retention run happens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RetentionConfig {
    /// Whether the service runs retention daily (the `retention` command works either way).
    pub enabled: bool,
    /// UTC time of day of the daily run, `HH:MM`.
    pub time_utc: String,
    pub events_days: u32,
    pub video_metrics_days: u32,
    pub user_engagement_daily_days: u32,
    pub aggregation_windows_days: u32,
    /// The receive-time copy the realtime metrics read (60 s of it), by day.
    pub events_by_receipt_days: u32,
    /// The facts pass's tables (`view_facts`, `keys_by_insert`,
    /// `view_facts_passes`), by day: only the lateness horizon is read.
    pub facts_days: u32,
    /// The time-clustered copy of `events`, by day. Reads and facts passes
    /// use it for the lateness horizon and the day before it, so it must
    /// keep at least the lateness plus two days.
    pub events_by_time_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            time_utc: "00:30".into(),
            events_days: 90,
            video_metrics_days: 90,
            user_engagement_daily_days: 90,
            aggregation_windows_days: 90,
            events_by_receipt_days: 2,
            facts_days: 4,
            events_by_time_days: 4,
        }
    }
}

impl RetentionConfig {
    /// Days `table` keeps its data.
    pub fn days(&self, table: RetentionTable) -> u32 {
        self.setting(table).1
    }

    /// The setting (`retention.<name>`) that holds `table`'s retention, and its value.
    fn setting(&self, table: RetentionTable) -> (&'static str, u32) {
        match table {
            RetentionTable::Events
            | RetentionTable::ViewsByUser
            | RetentionTable::EventsHourly
            | RetentionTable::EventHourInserts => ("events_days", self.events_days),
            RetentionTable::VideoMetrics
            | RetentionTable::VideoMetricsLookup
            | RetentionTable::DayTotals
            | RetentionTable::DayRollups => ("video_metrics_days", self.video_metrics_days),
            RetentionTable::UserEngagementDaily | RetentionTable::UserEngagementLookup => {
                ("user_engagement_daily_days", self.user_engagement_daily_days)
            }
            RetentionTable::AggregationWindows => ("aggregation_windows_days", self.aggregation_windows_days),
            RetentionTable::EventsByReceipt => ("events_by_receipt_days", self.events_by_receipt_days),
            RetentionTable::ViewFacts
            | RetentionTable::KeysByInsert
            | RetentionTable::FactsPasses
            | RetentionTable::HourTotals
            | RetentionTable::HourMetrics => ("facts_days", self.facts_days),
            RetentionTable::EventsByTime | RetentionTable::KeysByDay => {
                ("events_by_time_days", self.events_by_time_days)
            }
        }
    }

    /// The parsed [`Self::time_utc`].
    pub fn time_of_day(&self) -> anyhow::Result<NaiveTime> {
        NaiveTime::parse_from_str(&self.time_utc, "%H:%M")
            .map_err(|e| anyhow::anyhow!("retention.time_utc {:?} is not HH:MM: {e}", self.time_utc))
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(error) = self.time_of_day() {
            problems.push(error.to_string());
        }
        let settings: std::collections::BTreeSet<_> = RetentionTable::ALL.map(|t| self.setting(t)).into();
        for (name, _) in settings.into_iter().filter(|&(_, days)| days == 0) {
            problems.push(format!("retention.{name} must be at least 1"));
        }
        problems
    }

    fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let aggregates = self.video_metrics_days.max(self.user_engagement_daily_days);
        if self.aggregation_windows_days < aggregates {
            warnings.push(format!(
                "retention.aggregation_windows_days ({}) is shorter than the aggregate tables' retention ({aggregates}): \
                 their older windows lose their records and are read from the raw events",
                self.aggregation_windows_days
            ));
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use service_kit::ServiceConfig as _;

    use super::*;

    #[test]
    fn environment_overrides_nested_keys() {
        let env: HashMap<String, String> = [
            ("AGGREGATOR_CRON__AGGREGATION__LATENESS", "72h"),
            ("AGGREGATOR_CRON__RETENTION__EVENTS_DAYS", "30"),
            ("AGGREGATOR_CRON__RETENTION__TIME_UTC", "01:45"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config: Config = service_kit::config::load_from(crate::SERVICE, None, &env).unwrap();
        assert_eq!(config.aggregation.lateness, Duration::from_secs(72 * 3600));
        assert_eq!(config.aggregation.safety_margin, Duration::from_secs(60));
        assert_eq!(config.retention.days(RetentionTable::Events), 30);
        assert_eq!(config.retention.days(RetentionTable::VideoMetrics), 90);
        assert_eq!(config.retention.time_of_day().unwrap(), NaiveTime::from_hms_opt(1, 45, 0).unwrap());
        assert_eq!(config.http.port, DEFAULT_PORT);
    }

    #[test]
    fn defaults_are_valid_and_nonsense_is_refused() {
        Config::default().validate().unwrap();
        assert_eq!(Config::default().warnings(), Vec::<String>::new());
        let mut config = Config::default();
        config.retention.time_utc = "25:00".into();
        config.retention.video_metrics_days = 0;
        config.retention.events_days = 0;
        config.aggregation.hourly_offset = Duration::from_secs(3600);
        let problems = config.validate().unwrap_err();
        assert_eq!(problems.len(), 4, "one problem per setting, not per table: {problems:?}");
        assert!(problems.iter().any(|p| p.contains("retention.events_days")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("time_utc")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("retention.video_metrics_days")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("aggregation.hourly_offset (1h)")), "{problems:?}");
        let mut config = Config::default();
        config.retention.aggregation_windows_days = 30;
        config.validate().unwrap();
        assert_eq!(config.warnings().len(), 1);
    }
}
