//! The metric endpoints: per video, per user, top videos and realtime
//! (definitions: docs/metrics.md; SQL: the `metrics-sql` crate).
//!
//! Range endpoints answer from the pre-aggregated tables for the windows the
//! aggregator has up to date and from the raw events for the others
//! ([`freshness`]), and go through the Redis cache.

pub mod freshness;
pub mod params;

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
};

use actix_web::{HttpRequest, web};
use chrono::{DateTime, NaiveDate, Utc};
use metrics_sql::{
    read::{self, RealtimeRow, TopMetric, TopVideoRow, UserDayRow, VideoSummaryRow},
    views::Scope,
    windows::{Job, Split},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use utoipa::{IntoParams, ToSchema};

use crate::{cache, catalog, error::ApiError, handlers::AppState};
use params::{DayRange, day_range, parse_query, truncate};

pub const VIDEO_METRICS_PATH: &str = "/api/metrics/video/{videoId}";
pub const USER_METRICS_PATH: &str = "/api/metrics/user/{userId}";
pub const TOP_VIDEOS_PATH: &str = "/api/metrics/videos/top";
pub const REALTIME_PATH: &str = "/api/metrics/realtime";

/// Seconds of the realtime window.
pub const REALTIME_WINDOW_SECS: u64 = 60;
pub const DEFAULT_TOP_LIMIT: u32 = 10;
pub const MAX_TOP_LIMIT: u32 = 100;

const RANGE_PARAMS: &[&str] = &["startDate", "endDate"];

/// `startDate` and `endDate`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(non_snake_case, dead_code)]
pub struct RangeQuery {
    /// First UTC day, `YYYY-MM-DD`; default: 6 days before `endDate`.
    startDate: Option<String>,
    /// Last UTC day (inclusive), `YYYY-MM-DD`; default: today. At most 366 days in all.
    endDate: Option<String>,
}

/// Nearest-rank percentiles of the views' startup times; null without any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StartupTime {
    pub median: Option<u64>,
    pub p95: Option<u64>,
}

/// How an answer was computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Freshness {
    /// Windows read from the pre-aggregated table.
    pub aggregated_windows: usize,
    /// Windows computed from the raw events (not aggregated yet, or changed since).
    pub raw_windows: usize,
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
    pub avg_watch_percentage: f64,
    /// 0..1
    pub completion_rate: f64,
    /// 0..10
    pub engagement_score: f64,
    pub startup_time_ms: StartupTime,
    pub rebuffer_percentage: f64,
    pub playback_failure_percentage: f64,
    pub exits_before_video_start_percentage: f64,
    /// The duration the watch percentages use.
    pub duration_seconds: Option<f64>,
    /// `catalog`, `events`, or null when unknown.
    pub duration_source: Option<String>,
    pub freshness: Freshness,
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

/// `GET /api/metrics/realtime` (and the hub's `realtime_metrics` payload).
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

/// The 0–10 engagement score of docs/metrics.md, rounded to 2 decimals.
pub fn engagement_score(
    views: u64,
    unique_viewers: u64,
    avg_watch_percentage: f64,
    completion_rate: f64,
    rebuffer_percentage: f64,
) -> f64 {
    if views == 0 {
        return 0.0;
    }
    let watched = avg_watch_percentage / 100.0;
    let rebuffering = (rebuffer_percentage / 10.0).min(1.0);
    let repeat = views.saturating_sub(unique_viewers) as f64 / views as f64;
    let score = 10.0 * (0.4 * watched + 0.3 * completion_rate + 0.2 * (1.0 - rebuffering) + 0.1 * repeat);
    (score * 100.0).round() / 100.0
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// The video fields from a summary row and the duration in force.
pub fn video_metrics(
    video_id: &str,
    range: DayRange,
    row: &VideoSummaryRow,
    catalog_duration: Option<f64>,
    freshness: Freshness,
) -> VideoMetrics {
    let (duration_seconds, duration_source) = match (catalog_duration, row.events_duration) {
        (Some(d), _) => (Some(d), Some("catalog".to_string())),
        (None, Some(d)) if d > 0.0 => (Some(d), Some("events".to_string())),
        _ => (None, None),
    };
    let views = row.views;
    let avg_watch_percentage =
        if views > 0 && duration_seconds.is_some() { row.watch_percentage_sum / views as f64 } else { 0.0 };
    let completion_rate = ratio(row.completed_views, views);
    let rebuffer_percentage = if row.watch_time_seconds > 0.0 {
        row.buffer_ms as f64 / (1000.0 * row.watch_time_seconds) * 100.0
    } else {
        0.0
    };
    let startup = |v: u64| (row.startup_count > 0).then_some(v);
    VideoMetrics {
        video_id: video_id.to_string(),
        start_date: range.start,
        end_date: range.end,
        views,
        unique_viewers: row.unique_viewers,
        watch_time_seconds: row.watch_time_seconds,
        avg_watch_percentage,
        completion_rate,
        engagement_score: engagement_score(
            views,
            row.unique_viewers,
            avg_watch_percentage,
            completion_rate,
            rebuffer_percentage,
        ),
        startup_time_ms: StartupTime { median: startup(row.startup_median_ms), p95: startup(row.startup_p95_ms) },
        rebuffer_percentage,
        playback_failure_percentage: ratio(row.failed_views, views) * 100.0,
        exits_before_video_start_percentage: ratio(row.exits_before_start, views) * 100.0,
        duration_seconds,
        duration_source,
        freshness,
    }
}

/// The value with the largest total watch time; ties go to the smallest value.
fn favourite<K: Ord + Clone>(watch: &BTreeMap<K, f64>) -> Option<K> {
    let mut best: Option<(&K, f64)> = None;
    for (key, &seconds) in watch {
        if best.is_none_or(|(_, most)| seconds > most) {
            best = Some((key, seconds));
        }
    }
    best.map(|(key, _)| key.clone())
}

/// The user fields from the user's day rows and the catalog categories of their videos.
pub fn user_metrics(
    user_id: &str,
    range: DayRange,
    days: &[UserDayRow],
    categories: &std::collections::HashMap<String, String>,
    freshness: Freshness,
) -> UserMetrics {
    let mut sessions = BTreeSet::new();
    let (mut views, mut completed, mut watch) = (0u64, 0u64, 0.0);
    let mut quality = BTreeMap::<String, f64>::new();
    let mut device = BTreeMap::<String, f64>::new();
    let mut category = BTreeMap::<String, f64>::new();
    let mut hour = BTreeMap::<u8, f64>::new();
    for day in days {
        sessions.extend(day.sessions.iter().cloned());
        views += u64::from(day.views);
        completed += u64::from(day.completed_views);
        watch += day.watch_time_seconds;
        for (i, &seconds) in day.view_watch_seconds.iter().enumerate() {
            if let Some(q) = day.view_qualities.get(i).filter(|q| !q.is_empty()) {
                *quality.entry(q.clone()).or_default() += seconds;
            }
            if let Some(d) = day.view_device_types.get(i).filter(|d| !d.is_empty()) {
                *device.entry(d.clone()).or_default() += seconds;
            }
            if let Some(c) = day.view_video_ids.get(i).and_then(|v| categories.get(v)) {
                *category.entry(c.clone()).or_default() += seconds;
            }
            if let Some(&h) = day.view_hours.get(i) {
                *hour.entry(h).or_default() += seconds;
            }
        }
    }
    UserMetrics {
        user_id: user_id.to_string(),
        start_date: range.start,
        end_date: range.end,
        sessions: sessions.len() as u64,
        views,
        watch_time_seconds: watch,
        completion_rate: ratio(completed, views),
        preferences: Preferences {
            quality: favourite(&quality),
            device_type: favourite(&device),
            category: favourite(&category),
            hour_of_day: favourite(&hour),
        },
        freshness,
    }
}

fn freshness_of(split: &metrics_sql::windows::Split) -> Freshness {
    Freshness { aggregated_windows: split.aggregated.len(), raw_windows: split.raw.len() }
}

/// What a range endpoint needs besides its own parameters.
struct RangeRequest {
    params: BTreeMap<String, String>,
    range: DayRange,
    now: DateTime<Utc>,
}

impl RangeRequest {
    /// The windows of `job` in the range, split into aggregated and raw for `scope`.
    async fn split(&self, state: &AppState, job: Job, scope: Scope<'_>) -> Result<Split, ApiError> {
        let windows = self.range.windows(job.grain());
        freshness::split(&state.clickhouse, job, scope, &windows, self.now, state.freshness.lateness()).await
    }
}

/// Reads the query string (only `allowed` names, plus `startDate` and
/// `endDate`), then answers from the cache or with `compute`, cached for as
/// long as the range cannot change (`cache::ttl_for_days`).
async fn answer_range<T, F, Fut>(
    state: &AppState,
    req: &HttpRequest,
    allowed: &[&str],
    compute: F,
) -> Result<T, ApiError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce(RangeRequest) -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let names: Vec<&str> = RANGE_PARAMS.iter().chain(allowed).copied().collect();
    let params = parse_query(req.query_string(), &names)?;
    let now = Utc::now();
    let range = day_range(&params, now)?;
    let key = cache::query_key(req.path(), req.query_string())
        .map_err(|e| ApiError::BadRequest { field: None, message: format!("unreadable query string: {e}") })?;
    let ttl = cache::ttl_for_days(range.start, range.end, now, state.freshness.lateness(), state.cache.config());
    state.cache.get_or_compute(&key, ttl, || compute(RangeRequest { params, range, now })).await
}

/// Metrics of one video over a range of days.
#[utoipa::path(
    get,
    path = "/api/metrics/video/{videoId}",
    tag = "metrics",
    params(("videoId" = String, Path, description = "1 to 256 characters, no control characters"), RangeQuery),
    responses(
        (status = 200, description = "the video's metrics (docs/metrics.md)", body = VideoMetrics),
        (status = 400, description = "bad videoId, bad date, startDate after endDate, range too long, unknown parameter", body = crate::error::ErrorBody),
        (status = 503, description = "clickhouse or postgresql unavailable", body = crate::error::ErrorBody),
    )
)]
pub async fn get_video_metrics(
    state: web::Data<AppState>,
    video_id: web::Path<String>,
    req: HttpRequest,
) -> Result<web::Json<VideoMetrics>, ApiError> {
    catalog::validate_video_id(&video_id)?;
    let (state, video_id) = (&**state, video_id.as_str());
    let answer = answer_range(state, &req, &[], |request| async move {
        // The catalog (PostgreSQL) and the windows' freshness (ClickHouse) at once.
        let (entry, split) = tokio::try_join!(
            state.catalog.get(video_id),
            request.split(state, Job::VideoMetrics, Scope::Video(video_id))
        )?;
        let catalog_duration = entry.and_then(|v| v.duration_seconds);
        let row = read::video_summary(video_id, &split, catalog_duration)
            .query(&state.clickhouse)
            .fetch_one::<VideoSummaryRow>()
            .await?;
        Ok(video_metrics(video_id, request.range, &row, catalog_duration, freshness_of(&split)))
    })
    .await?;
    Ok(web::Json(answer))
}

/// Engagement of one user over a range of days.
#[utoipa::path(
    get,
    path = "/api/metrics/user/{userId}",
    tag = "metrics",
    params(("userId" = String, Path, description = "1 to 256 characters, no control characters"), RangeQuery),
    responses(
        (status = 200, description = "the user's engagement and preferences (docs/metrics.md)", body = UserMetrics),
        (status = 400, description = "bad userId, bad date, startDate after endDate, range too long, unknown parameter", body = crate::error::ErrorBody),
        (status = 503, description = "clickhouse or postgresql unavailable", body = crate::error::ErrorBody),
    )
)]
pub async fn get_user_metrics(
    state: web::Data<AppState>,
    user_id: web::Path<String>,
    req: HttpRequest,
) -> Result<web::Json<UserMetrics>, ApiError> {
    catalog::validate_id("userId", &user_id)?;
    let (state, user_id) = (&**state, user_id.as_str());
    let answer = answer_range(state, &req, &[], |request| async move {
        let split = request.split(state, Job::UserEngagementDaily, Scope::User(user_id)).await?;
        let days = read::user_days(user_id, &split).query(&state.clickhouse).fetch_all::<UserDayRow>().await?;
        let videos: BTreeSet<String> = days.iter().flat_map(|d| d.view_video_ids.iter().cloned()).collect();
        let categories = state.catalog.categories(&videos.into_iter().collect::<Vec<_>>()).await?;
        Ok(user_metrics(user_id, request.range, &days, &categories, freshness_of(&split)))
    })
    .await?;
    Ok(web::Json(answer))
}

/// `metric` and `limit` besides the range.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(non_snake_case, dead_code)]
pub struct TopQuery {
    /// `views` (default), `watch_time` or `completion_rate`.
    metric: Option<String>,
    /// 1 to 100, default 10.
    limit: Option<u32>,
    startDate: Option<String>,
    endDate: Option<String>,
}

fn top_metric(text: &str) -> Result<TopMetric, ApiError> {
    match text {
        "views" => Ok(TopMetric::Views),
        "watch_time" => Ok(TopMetric::WatchTime),
        "completion_rate" => Ok(TopMetric::CompletionRate),
        other => Err(ApiError::bad_field(
            "metric",
            format!("unknown metric {:?}; expected views, watch_time or completion_rate", truncate(other)),
        )),
    }
}

fn top_limit(text: Option<&str>) -> Result<u32, ApiError> {
    let Some(text) = text else { return Ok(DEFAULT_TOP_LIMIT) };
    match text.parse::<u32>() {
        Ok(limit) if (1..=MAX_TOP_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(ApiError::bad_field(
            "limit",
            format!("limit must be an integer from 1 to {MAX_TOP_LIMIT}, got {:?}", truncate(text)),
        )),
    }
}

/// The videos with the most views, watch time or completion over a range of days.
#[utoipa::path(
    get,
    path = "/api/metrics/videos/top",
    tag = "metrics",
    params(TopQuery),
    responses(
        (status = 200, description = "the top videos, best first; ties by video_id", body = TopVideos),
        (status = 400, description = "unknown metric, bad limit, bad date, unknown parameter", body = crate::error::ErrorBody),
        (status = 503, description = "clickhouse unavailable", body = crate::error::ErrorBody),
    )
)]
pub async fn get_top_videos(state: web::Data<AppState>, req: HttpRequest) -> Result<web::Json<TopVideos>, ApiError> {
    let state = &**state;
    let answer = answer_range(state, &req, &["metric", "limit"], |request| async move {
        let metric_name = request.params.get("metric").map_or("views", String::as_str).to_string();
        let metric = top_metric(&metric_name)?;
        let limit = top_limit(request.params.get("limit").map(String::as_str))?;
        let split = request.split(state, Job::VideoMetrics, Scope::All).await?;
        let rows = read::top_videos(&split, metric, limit).query(&state.clickhouse).fetch_all::<TopVideoRow>().await?;
        let videos = rows
            .into_iter()
            .map(|r| TopVideo {
                completion_rate: ratio(r.completed_views, r.views),
                video_id: r.video_id,
                views: r.views,
                watch_time_seconds: r.watch_time_seconds,
            })
            .collect();
        Ok(TopVideos {
            metric: metric_name,
            start_date: request.range.start,
            end_date: request.range.end,
            limit,
            videos,
            freshness: freshness_of(&split),
        })
    })
    .await?;
    Ok(web::Json(answer))
}

/// The realtime figures from the figures of a window's row.
pub fn realtime_metrics(row: &RealtimeRow, as_of: DateTime<Utc>) -> RealtimeMetrics {
    RealtimeMetrics {
        concurrent_viewers: row.concurrent_viewers,
        active_streams: row.active_streams,
        bandwidth_gbps: row.bandwidth_kbps as f64 / 1_000_000.0,
        events_per_second: row.events as f64 / REALTIME_WINDOW_SECS as f64,
        error_rate: ratio(row.errors, row.events),
        window_seconds: REALTIME_WINDOW_SECS,
        as_of,
    }
}

/// The platform right now: the last 60 seconds of received events.
#[utoipa::path(
    get,
    path = "/api/metrics/realtime",
    tag = "metrics",
    responses(
        (status = 200, description = "realtime metrics over the last 60 s (docs/metrics.md)", body = RealtimeMetrics),
        (status = 400, description = "unknown parameter", body = crate::error::ErrorBody),
        (status = 503, description = "clickhouse unavailable", body = crate::error::ErrorBody),
    )
)]
pub async fn get_realtime(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<web::Json<RealtimeMetrics>, ApiError> {
    parse_query(req.query_string(), &[])?;
    let now = Utc::now();
    let to_ms = now.timestamp_millis().max(0) as u64;
    let row = read::realtime(to_ms.saturating_sub(REALTIME_WINDOW_SECS * 1000), to_ms)
        .query(&state.clickhouse)
        .fetch_one::<RealtimeRow>()
        .await?;
    Ok(web::Json(realtime_metrics(&row, now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engagement_weighs_watch_completion_rebuffering_and_repeat_viewing() {
        assert_eq!(engagement_score(0, 0, 0.0, 0.0, 0.0), 0.0);
        // Everything watched and completed, no rebuffering, nobody came back: 10 × (0.4 + 0.3 + 0.2).
        assert_eq!(engagement_score(4, 4, 100.0, 1.0, 0.0), 9.0);
        // Half watched, no completion, 5 % rebuffering, 1 of 4 views a repeat.
        assert_eq!(engagement_score(4, 3, 50.0, 0.0, 5.0), 3.25);
        // Rebuffering beyond 10 % costs no more than 10 %.
        assert_eq!(engagement_score(1, 1, 0.0, 0.0, 50.0), engagement_score(1, 1, 0.0, 0.0, 10.0));
    }

    #[test]
    fn video_fields_follow_the_definitions() {
        let row = VideoSummaryRow {
            views: 3,
            unique_viewers: 2,
            completed_views: 1,
            failed_views: 1,
            exits_before_start: 1,
            buffer_ms: 700,
            startup_count: 2,
            watch_time_seconds: 66.0,
            watch_percentage_sum: 66.0,
            events_duration: Some(100.0),
            startup_median_ms: 800,
            startup_p95_ms: 1500,
        };
        let range = DayRange { start: "2025-11-24".parse().unwrap(), end: "2025-11-24".parse().unwrap() };
        let fresh = Freshness { aggregated_windows: 0, raw_windows: 24 };
        let m = video_metrics("v1", range, &row, None, fresh.clone());
        assert_eq!(m.avg_watch_percentage, 22.0);
        assert_eq!(m.completion_rate, 1.0 / 3.0);
        assert_eq!(m.rebuffer_percentage, 700.0 / 66_000.0 * 100.0);
        assert_eq!(m.playback_failure_percentage, 1.0 / 3.0 * 100.0);
        assert_eq!(m.exits_before_video_start_percentage, 1.0 / 3.0 * 100.0);
        assert_eq!(m.startup_time_ms, StartupTime { median: Some(800), p95: Some(1500) });
        assert_eq!((m.duration_seconds, m.duration_source.as_deref()), (Some(100.0), Some("events")));
        let m = video_metrics("v1", range, &row, Some(50.0), fresh.clone());
        assert_eq!(m.duration_source.as_deref(), Some("catalog"));

        let empty = VideoSummaryRow {
            views: 0,
            unique_viewers: 0,
            completed_views: 0,
            failed_views: 0,
            exits_before_start: 0,
            buffer_ms: 0,
            startup_count: 0,
            watch_time_seconds: 0.0,
            watch_percentage_sum: 0.0,
            events_duration: None,
            startup_median_ms: 0,
            startup_p95_ms: 0,
        };
        let m = video_metrics("v1", range, &empty, None, fresh);
        assert_eq!((m.views, m.completion_rate, m.engagement_score), (0, 0.0, 0.0));
        assert_eq!(m.startup_time_ms, StartupTime { median: None, p95: None });
        assert_eq!(m.duration_source, None);
    }

    #[test]
    fn preferences_go_to_the_most_watched_value_ties_to_the_smallest() {
        let day = UserDayRow {
            sessions: vec!["s1".into(), "s2".into()],
            views: 3,
            completed_views: 1,
            watch_time_seconds: 70.0,
            view_video_ids: vec!["a".into(), "b".into(), "c".into()],
            view_qualities: vec!["720p".into(), "1080p".into(), String::new()],
            view_device_types: vec!["tv".into(), "mobile".into(), "mobile".into()],
            view_hours: vec![20, 8, 9],
            view_watch_seconds: vec![30.0, 30.0, 10.0],
        };
        let categories = [("a".to_string(), "news".to_string()), ("c".to_string(), "sport".to_string())].into();
        let range = DayRange { start: "2025-11-24".parse().unwrap(), end: "2025-11-24".parse().unwrap() };
        let m = user_metrics(
            "u1",
            range,
            &[day.clone(), day],
            &categories,
            Freshness { aggregated_windows: 1, raw_windows: 0 },
        );
        assert_eq!((m.sessions, m.views, m.watch_time_seconds), (2, 6, 140.0));
        assert_eq!(m.completion_rate, 2.0 / 6.0);
        assert_eq!(
            m.preferences,
            Preferences {
                quality: Some("1080p".into()),      // tie 60/60: smallest string
                device_type: Some("mobile".into()), // 80 against 60
                category: Some("news".into()),
                hour_of_day: Some(8), // tie 60/60 with 20: smallest hour
            }
        );
    }

    #[test]
    fn top_parameters_are_checked() {
        assert_eq!(top_metric("views").unwrap(), TopMetric::Views);
        assert!(top_metric("likes").is_err());
        assert_eq!(top_limit(None).unwrap(), DEFAULT_TOP_LIMIT);
        for bad in ["0", "101", "-1", "ten", "1e3"] {
            assert!(top_limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
