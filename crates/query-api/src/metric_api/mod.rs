//! The metric endpoints: per video, per user, top videos and realtime
//! (definitions: docs/metrics.md). A thin adapter over the metrics core
//! (`metrics-sql`): it reads the parameters, runs the core's statements
//! (`metrics_sql::read`), finishes the answer with its formulas
//! (`metrics_sql::formulas`) and sends its types (`metrics_sql::responses`).
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
use chrono::{DateTime, Utc};
use metrics_sql::responses::{RealtimeMetrics, TopVideos, UserMetrics, VideoMetrics};
use metrics_sql::{
    formulas::{self, REALTIME_WINDOW_SECS},
    read::{self, RealtimeRow, TopMetric, TopVideoRow, UserDayRow, VideoSummaryRow},
    views::Scope,
    windows::{DayRange, Job, Split},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use utoipa::IntoParams;

use crate::{
    cache,
    catalog::{self, CatalogRead},
    error::ApiError,
    state::AppState,
};
use metrics_sql::responses::CatalogStatus;
use params::{day_range, parse_query, truncate};

pub const VIDEO_METRICS_PATH: &str = "/api/metrics/video/{videoId}";
pub const USER_METRICS_PATH: &str = "/api/metrics/user/{userId}";
pub const TOP_VIDEOS_PATH: &str = "/api/metrics/videos/top";
pub const REALTIME_PATH: &str = "/api/metrics/realtime";

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

/// What a range endpoint needs besides its own parameters.
struct RangeRequest {
    params: BTreeMap<String, String>,
    range: DayRange,
    now: DateTime<Utc>,
}

impl RangeRequest {
    /// `read`'s answer for `scope` (a video or a user) from the split of the
    /// range's windows of `job`, and that split ([`freshness::read_scoped`]).
    async fn read_scoped<T, F, Fut>(
        &self,
        state: &AppState,
        job: Job,
        scope: Scope<'_>,
        read: F,
    ) -> Result<(Split, T), ApiError>
    where
        F: Fn(Split) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let windows = self.range.windows(job.grain());
        freshness::read_scoped(&state.clickhouse, job, scope, &windows, self.now, &state.freshness, read).await
    }
}

/// Whether an answer holds every field: one given without the catalog is
/// not, and is never cached (the next request tries the catalog again).
trait Complete {
    fn is_complete(&self) -> bool;
}

impl Complete for VideoMetrics {
    fn is_complete(&self) -> bool {
        self.catalog == CatalogStatus::Available
    }
}

impl Complete for UserMetrics {
    fn is_complete(&self) -> bool {
        self.catalog == CatalogStatus::Available
    }
}

impl Complete for TopVideos {
    fn is_complete(&self) -> bool {
        true
    }
}

/// Reads the query string (only `allowed` names, plus `startDate` and
/// `endDate`), then answers from the cache or with `compute`, cached for as
/// long as the range cannot change (`cache::ttl_for_days`) when complete.
async fn answer_range<T, F, Fut>(
    state: &AppState,
    req: &HttpRequest,
    allowed: &[&str],
    compute: F,
) -> Result<T, ApiError>
where
    T: Serialize + DeserializeOwned + Complete,
    F: FnOnce(RangeRequest) -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let names: Vec<&str> = RANGE_PARAMS.iter().chain(allowed).copied().collect();
    let params = parse_query(req.query_string(), &names)?;
    let now = Utc::now();
    let range = day_range(&params, now)?;
    let key = cache::query_key(req.path(), req.query_string())
        .map_err(|e| ApiError::BadRequest { field: None, message: format!("unreadable query string: {e}") })?;
    let ttl = cache::ttl_for_days(range.start, range.end, now, state.freshness.lateness, state.cache.config());
    state.cache.get_or_compute_if(&key, ttl, || compute(RangeRequest { params, range, now }), T::is_complete).await
}

/// Metrics of one video over a range of days.
#[utoipa::path(
    get,
    path = "/api/metrics/video/{videoId}",
    tag = "metrics",
    params(("videoId" = String, Path, description = "1 to 256 characters, no control, invisible or bidirectional formatting characters"), RangeQuery),
    responses(
        (status = 200, description = "the video's metrics (docs/metrics.md); while postgresql is down, from clickhouse alone with `catalog: unavailable` and the catalog's fields null (listed in `unavailable_fields`)", body = VideoMetrics),
        (status = 400, description = "bad videoId, bad date, startDate after endDate, range too long, unknown parameter", body = crate::error::ErrorBody),
        (status = 503, description = "clickhouse unavailable", body = crate::error::ErrorBody),
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
        // The catalog (PostgreSQL) and the windows' freshness (ClickHouse) at
        // once; the statement needs the catalog's duration.
        let catalog = tokio::sync::OnceCell::new();
        let entry = || catalog.get_or_try_init(|| state.catalog.video_for_metrics(video_id));
        let summary = |split: Split| async move {
            let catalog_duration = match entry().await? {
                CatalogRead::Read(entry) => entry.as_ref().and_then(|v| v.duration_seconds),
                CatalogRead::Unavailable => None,
            };
            if split.reads_nothing() {
                return Ok((VideoSummaryRow::default(), catalog_duration));
            }
            let row = read::video_summary(video_id, &split, catalog_duration)
                .query(&state.clickhouse)
                .fetch_one::<VideoSummaryRow>()
                .await?;
            Ok((row, catalog_duration))
        };
        let (entry, (split, (row, catalog_duration))) =
            tokio::try_join!(entry(), request.read_scoped(state, Job::VideoMetrics, Scope::Video(video_id), summary))?;
        let freshness = formulas::freshness(&split);
        Ok(match entry {
            CatalogRead::Read(_) => formulas::video_metrics(video_id, request.range, &row, catalog_duration, freshness),
            CatalogRead::Unavailable => {
                formulas::video_metrics_without_catalog(video_id, request.range, &row, freshness)
            }
        })
    })
    .await?;
    Ok(web::Json(answer))
}

/// Engagement of one user over a range of days.
#[utoipa::path(
    get,
    path = "/api/metrics/user/{userId}",
    tag = "metrics",
    params(("userId" = String, Path, description = "1 to 256 characters, no control, invisible or bidirectional formatting characters"), RangeQuery),
    responses(
        (status = 200, description = "the user's engagement and preferences (docs/metrics.md); while postgresql is down, from clickhouse alone with `catalog: unavailable` and `preferences.category` null", body = UserMetrics),
        (status = 400, description = "bad userId, bad date, startDate after endDate, range too long, unknown parameter", body = crate::error::ErrorBody),
        (status = 503, description = "clickhouse unavailable", body = crate::error::ErrorBody),
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
        let user_days = |split: Split| async move {
            if split.reads_nothing() {
                return Ok(Vec::new());
            }
            Ok(read::user_days(user_id, &split).query(&state.clickhouse).fetch_all::<UserDayRow>().await?)
        };
        let (split, days) =
            request.read_scoped(state, Job::UserEngagementDaily, Scope::User(user_id), user_days).await?;
        let videos: BTreeSet<String> = days.iter().flat_map(|d| d.view_video_ids.iter().cloned()).collect();
        let freshness = formulas::freshness(&split);
        Ok(match state.catalog.categories_for_metrics(&videos.into_iter().collect::<Vec<_>>()).await? {
            CatalogRead::Read(categories) => {
                formulas::user_metrics(user_id, request.range, &days, &categories, freshness)
            }
            CatalogRead::Unavailable => {
                formulas::user_metrics_without_catalog(user_id, request.range, &days, freshness)
            }
        })
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
    TopMetric::from_name(text).ok_or_else(|| {
        ApiError::bad_field(
            "metric",
            format!("unknown metric {:?}; expected views, watch_time or completion_rate", truncate(text)),
        )
    })
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
        let metric = top_metric(request.params.get("metric").map_or("views", String::as_str))?;
        let limit = top_limit(request.params.get("limit").map(String::as_str))?;
        let windows = request.range.windows(Job::VideoMetrics.grain());
        let split = freshness::split_all(&state.clickhouse, &windows, request.now, &state.freshness).await?;
        let rows = if split.reads_nothing() {
            Vec::new()
        } else {
            read::top_videos(&split, metric, limit).query(&state.clickhouse).fetch_all::<TopVideoRow>().await?
        };
        Ok(formulas::top_videos(metric, request.range, limit, &rows, formulas::freshness(&split)))
    })
    .await?;
    Ok(web::Json(answer))
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
    Ok(web::Json(formulas::realtime_metrics(&row, REALTIME_WINDOW_SECS, now)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
