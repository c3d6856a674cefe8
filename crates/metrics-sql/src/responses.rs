//! The metric answers: the JSON objects the metric endpoints return
//! (docs/metrics.md), defined once for query-api (`/api/metrics/*`, its
//! OpenAPI schemas) and realtime-hub (`realtime_metrics` WebSocket payload,
//! `GET /api/metrics/realtime`). [`crate::formulas`] computes them.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Nearest-rank percentiles of the views' startup times; null without any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StartupTime {
    pub median: Option<u64>,
    pub p95: Option<u64>,
}

/// How an answer was computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Freshness {
    /// Windows read from the pre-aggregated table (for top videos, the hours
    /// of whole final days read from their per-day rollup included).
    pub aggregated_windows: usize,
    /// Windows computed from the raw events (not aggregated yet, or changed since).
    pub raw_windows: usize,
    /// Top videos on a busy platform, or a busy video: hours still open to
    /// late events read from the newest facts pass's per-video hour rows
    /// instead of rebuilt from the raw events. Absent when none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_windows: Option<usize>,
    /// With `pass_windows`: the answer holds every event stored up to this
    /// time (and perhaps later ones, not necessarily all of them). Absent
    /// when the answer holds every event stored when the request ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
}

/// Whether the video catalog (PostgreSQL) could be read for an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatalogStatus {
    /// The catalog answered: every field is as docs/metrics.md defines it.
    #[default]
    Available,
    /// The catalog could not be read: the fields listed in
    /// `unavailable_fields` are null, every other field is exact.
    Unavailable,
}

/// `GET /api/metrics/video/{videoId}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VideoMetrics {
    pub video_id: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub views: u64,
    pub unique_viewers: u64,
    pub watch_time_seconds: f64,
    /// Null only when the catalog is unavailable (the duration it divides
    /// by may be the catalog's).
    pub avg_watch_percentage: Option<f64>,
    /// 0..1
    pub completion_rate: f64,
    /// 0..10; null only when the catalog is unavailable (it weighs
    /// `avg_watch_percentage`).
    pub engagement_score: Option<f64>,
    pub startup_time_ms: StartupTime,
    pub rebuffer_percentage: f64,
    pub playback_failure_percentage: f64,
    pub exits_before_video_start_percentage: f64,
    /// The duration the watch percentages use.
    pub duration_seconds: Option<f64>,
    /// `catalog`, `events`, or null when unknown (or the catalog unavailable).
    pub duration_source: Option<String>,
    pub freshness: Freshness,
    /// `unavailable` when PostgreSQL could not be read: the answer then
    /// comes from ClickHouse alone, with `unavailable_fields` null.
    #[serde(default)]
    pub catalog: CatalogStatus,
    /// The fields left null because the catalog was unavailable; absent
    /// when it was read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable_fields: Vec<String>,
}

/// A user's favourite dimension values, by watch time; null when none qualifies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Preferences {
    pub quality: Option<String>,
    pub device_type: Option<String>,
    pub category: Option<String>,
    /// UTC hour of day, 0..23.
    pub hour_of_day: Option<u8>,
}

/// `GET /api/metrics/user/{userId}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserMetrics {
    pub user_id: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub sessions: u64,
    pub views: u64,
    pub watch_time_seconds: f64,
    pub completion_rate: f64,
    pub preferences: Preferences,
    pub freshness: Freshness,
    /// `unavailable` when PostgreSQL could not be read: `preferences.category`
    /// is then null, every other field is exact.
    #[serde(default)]
    pub catalog: CatalogStatus,
    /// The fields left null because the catalog was unavailable; absent
    /// when it was read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable_fields: Vec<String>,
}

/// One entry of the top list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopVideo {
    pub video_id: String,
    pub views: u64,
    pub watch_time_seconds: f64,
    pub completion_rate: f64,
}

/// `GET /api/metrics/videos/top`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopVideos {
    /// `views`, `watch_time` or `completion_rate`.
    pub metric: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub limit: u32,
    pub videos: Vec<TopVideo>,
    pub freshness: Freshness,
}

/// `GET /api/metrics/realtime` (query-api and realtime-hub) and the hub's
/// `realtime_metrics` WebSocket payload: the same object, field for field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RealtimeMetrics {
    pub concurrent_viewers: u64,
    pub active_streams: u64,
    pub bandwidth_gbps: f64,
    pub events_per_second: f64,
    /// 0..1
    pub error_rate: f64,
    pub window_seconds: u64,
    /// End of the window.
    pub as_of: DateTime<Utc>,
}
