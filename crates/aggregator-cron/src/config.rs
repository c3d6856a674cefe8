//! The service's typed configuration: defaults < TOML file < environment
//! (`AGGREGATOR_CRON__AGGREGATION__LATENESS_HOURS=72`), loaded by
//! `service_kit::config` like every other service.

use std::time::Duration;

use chrono::NaiveTime;
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
            retention: RetentionConfig::default(),
        }
    }
}

impl_service_config!(Config);

impl Config {
    /// Refuses settings that cannot work; returns warnings about settings
    /// that work but are probably not meant.
    pub fn validate(&self) -> anyhow::Result<Vec<String>> {
        let mut warnings = self.aggregation.validate()?;
        warnings.extend(self.retention.validate()?);
        let lateness_days = self.aggregation.lateness_hours.div_ceil(24);
        if u64::from(self.retention.events_days) <= lateness_days {
            warnings.push(format!(
                "retention.events_days ({}) does not exceed the lateness ({} h): late windows may be recomputed \
                 from events that are already gone",
                self.retention.events_days, self.aggregation.lateness_hours
            ));
        }
        Ok(warnings)
    }
}

/// `[aggregation]`: windows, schedule, lateness.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AggregationConfig {
    /// Whether the service runs the scheduler (the ops endpoints are served either way).
    pub enabled: bool,
    /// A window is recomputed when its views receive rows up to this long after it ended.
    pub lateness_hours: u64,
    /// `covered_until` = ClickHouse server time at the start of a run minus this margin.
    pub safety_margin_secs: u64,
    /// An hour window is due this long after it ends (`:05`).
    pub hourly_offset_minutes: u64,
    /// A day window is due this long after it ends (`00:15` UTC).
    pub daily_offset_minutes: u64,
    /// Without any recorded run, catching up starts this long ago.
    pub initial_lookback_hours: u64,
    /// How often the scheduler looks for late windows between the scheduled times.
    pub tick_interval_secs: u64,
    /// A stale window is recomputed at most once per this interval. Windows whose
    /// views are still playing get rows at every tick; without a floor each of
    /// them would be recomputed every `tick_interval_secs`. Answers stay exact
    /// either way: query-api reads a stale window from the raw events. 0 turns
    /// the floor off.
    pub min_recompute_interval_secs: u64,
    /// On shutdown, a window in progress may finish within this time; after it, it is abandoned
    /// (recorded as failed and run again at the next start).
    pub shutdown_grace_secs: u64,
    /// ClickHouse's `max_bytes_before_external_group_by` for the window
    /// statements: beyond this much memory, a window's GROUP BY of view keys
    /// spills to disk instead of failing at the server's per-query memory
    /// limit (a day of about 2.9 M events needed more than 3.7 GiB). Keep it
    /// below half of `max_memory_usage`. 0 turns spilling off.
    pub external_group_by_bytes: u64,
}

impl Default for AggregationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            lateness_hours: 48,
            safety_margin_secs: 60,
            hourly_offset_minutes: 5,
            daily_offset_minutes: 15,
            initial_lookback_hours: 48,
            tick_interval_secs: 300,
            min_recompute_interval_secs: 900,
            shutdown_grace_secs: 2,
            external_group_by_bytes: 1_500_000_000,
        }
    }
}

impl AggregationConfig {
    /// How long after its end a window of `job` is due.
    pub fn offset(&self, job: Job) -> Duration {
        let minutes = match job {
            Job::VideoMetrics => self.hourly_offset_minutes,
            Job::UserEngagementDaily => self.daily_offset_minutes,
        };
        Duration::from_secs(minutes * 60)
    }

    pub fn lateness(&self) -> Duration {
        Duration::from_secs(self.lateness_hours * 3600)
    }

    pub fn initial_lookback(&self) -> Duration {
        Duration::from_secs(self.initial_lookback_hours * 3600)
    }

    pub fn tick_interval(&self) -> Duration {
        Duration::from_secs(self.tick_interval_secs)
    }

    pub fn min_recompute_interval(&self) -> Duration {
        Duration::from_secs(self.min_recompute_interval_secs)
    }

    /// `client` with the window statements' spilling setting.
    pub fn spilling(&self, client: clickhouse::Client) -> clickhouse::Client {
        match self.external_group_by_bytes {
            0 => client,
            bytes => client.with_setting("max_bytes_before_external_group_by", bytes.to_string()),
        }
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    fn validate(&self) -> anyhow::Result<Vec<String>> {
        anyhow::ensure!(self.tick_interval_secs > 0, "aggregation.tick_interval_secs must be at least 1");
        anyhow::ensure!(self.hourly_offset_minutes < 60, "aggregation.hourly_offset_minutes must be below 60");
        anyhow::ensure!(self.daily_offset_minutes < 24 * 60, "aggregation.daily_offset_minutes must be below 1440");
        let mut warnings = Vec::new();
        if self.safety_margin_secs == 0 {
            warnings.push(
                "aggregation.safety_margin_secs is 0: rows inserted in the second a run starts may be missed \
                 until the next late-event check"
                    .to_owned(),
            );
        }
        Ok(warnings)
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
        }
    }
}

impl RetentionConfig {
    /// Days `table` keeps its data.
    pub fn days(&self, table: RetentionTable) -> u32 {
        match table {
            RetentionTable::Events | RetentionTable::ViewsByUser => self.events_days,
            RetentionTable::VideoMetrics => self.video_metrics_days,
            RetentionTable::UserEngagementDaily => self.user_engagement_daily_days,
            RetentionTable::AggregationWindows => self.aggregation_windows_days,
            RetentionTable::EventsByReceipt => self.events_by_receipt_days,
        }
    }

    /// The parsed [`Self::time_utc`].
    pub fn time_of_day(&self) -> anyhow::Result<NaiveTime> {
        NaiveTime::parse_from_str(&self.time_utc, "%H:%M")
            .map_err(|e| anyhow::anyhow!("retention.time_utc {:?} is not HH:MM: {e}", self.time_utc))
    }

    fn validate(&self) -> anyhow::Result<Vec<String>> {
        self.time_of_day()?;
        for table in RetentionTable::ALL {
            anyhow::ensure!(self.days(table) > 0, "retention.{}_days must be at least 1", table.name());
        }
        let mut warnings = Vec::new();
        let aggregates = self.video_metrics_days.max(self.user_engagement_daily_days);
        if self.aggregation_windows_days < aggregates {
            warnings.push(format!(
                "retention.aggregation_windows_days ({}) is shorter than the aggregate tables' retention ({aggregates}): \
                 their older windows lose their records and are read from the raw events",
                self.aggregation_windows_days
            ));
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn environment_overrides_nested_keys() {
        let env: HashMap<String, String> = [
            ("AGGREGATOR_CRON__AGGREGATION__LATENESS_HOURS", "72"),
            ("AGGREGATOR_CRON__RETENTION__EVENTS_DAYS", "30"),
            ("AGGREGATOR_CRON__RETENTION__TIME_UTC", "01:45"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config: Config = service_kit::config::load_from(crate::SERVICE, None, &env).unwrap();
        assert_eq!(config.aggregation.lateness_hours, 72);
        assert_eq!(config.aggregation.safety_margin_secs, 60);
        assert_eq!(config.retention.days(RetentionTable::Events), 30);
        assert_eq!(config.retention.days(RetentionTable::VideoMetrics), 90);
        assert_eq!(config.retention.time_of_day().unwrap(), NaiveTime::from_hms_opt(1, 45, 0).unwrap());
        assert_eq!(config.http.port, DEFAULT_PORT);
    }

    #[test]
    fn defaults_are_valid_and_nonsense_is_refused() {
        assert_eq!(Config::default().validate().unwrap(), Vec::<String>::new());
        let mut config = Config::default();
        config.retention.time_utc = "25:00".into();
        assert!(config.validate().unwrap_err().to_string().contains("time_utc"));
        let mut config = Config::default();
        config.retention.video_metrics_days = 0;
        assert!(config.validate().unwrap_err().to_string().contains("video_metrics_days"));
        let mut config = Config::default();
        config.retention.aggregation_windows_days = 30;
        assert_eq!(config.validate().unwrap().len(), 1);
    }
}
