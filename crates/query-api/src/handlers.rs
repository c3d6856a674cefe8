//! The catalog endpoints and `/api/metrics/health`; the metric endpoints
//! are in [`crate::metric_api`], custom queries in [`crate::custom_query`],
//! and [`crate::routes`] lists them all.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use service_kit::ops::ReadyReport;
use utoipa::ToSchema;

use crate::{
    catalog::{self, Video, VideoInput},
    error::{ApiError, ErrorBody},
    state::{AppState, LagReader, LagReading},
};

/// Creates or replaces a catalog entry.
#[utoipa::path(
    put,
    path = "/api/videos/{videoId}",
    tag = "catalog",
    params(("videoId" = String, Path, description = "1 to 256 characters, no control, invisible or bidirectional formatting characters")),
    request_body = VideoInput,
    responses(
        (status = 200, description = "the entry as stored", body = Video),
        (status = 400, description = "invalid field (named in `field`) or malformed json", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 503, description = "postgresql unavailable", body = ErrorBody),
    )
)]
pub async fn put_video(
    state: web::Data<AppState>,
    video_id: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<web::Json<Video>, ApiError> {
    catalog::validate_video_id(&video_id)?;
    let input = VideoInput::from_json(&body)?;
    let video = state.catalog.upsert(&video_id, &input).await?;
    tracing::debug!(video_id = %video.video_id, "video stored");
    Ok(web::Json(video))
}

/// One catalog entry.
#[utoipa::path(
    get,
    path = "/api/videos/{videoId}",
    tag = "catalog",
    params(("videoId" = String, Path, description = "1 to 256 characters, no control, invisible or bidirectional formatting characters")),
    responses(
        (status = 200, description = "the entry", body = Video),
        (status = 400, description = "invalid videoId", body = ErrorBody),
        (status = 404, description = "no such video in the catalog", body = ErrorBody),
        (status = 503, description = "postgresql unavailable", body = ErrorBody),
    )
)]
pub async fn get_video(state: web::Data<AppState>, video_id: web::Path<String>) -> Result<web::Json<Video>, ApiError> {
    catalog::validate_video_id(&video_id)?;
    match state.catalog.get(&video_id).await? {
        Some(video) => Ok(web::Json(video)),
        None => Err(ApiError::NotFound(format!("video {:?} is not in the catalog", video_id.as_str()))),
    }
}

/// The body of `GET /api/metrics/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsHealth {
    /// `ok` when every dependency answered; `degraded` when only optional
    /// ones are down (PostgreSQL: metrics without the catalog's fields, the
    /// catalog endpoints 503; Redis: answers uncached); `unavailable` when a
    /// required one (ClickHouse, the key store) is down.
    pub status: &'static str,
    pub service: &'static str,
    /// By name: `clickhouse`, `postgres`, `redis`.
    pub dependencies: BTreeMap<String, DependencyHealth>,
    /// How far the stream processor is behind the raw topic.
    pub consumer_lag: ConsumerLag,
}

/// Messages of the raw topic the stream processor's group has not committed
/// yet, as last read by the background reader ([`crate::state::LagReader`],
/// every 5 s).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsumerLag {
    pub topic: String,
    pub group: String,
    /// The lag read at `as_of`; null until Kafka could be asked (see `error`).
    pub messages: Option<i64>,
    /// When `messages` was read (every 5 s while Kafka answers); null until then.
    pub as_of: Option<DateTime<Utc>>,
    /// Why the latest read failed (then `messages`, if any, is older: see `as_of`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ConsumerLag {
    /// The reader's last reading; asks nothing of Kafka.
    pub fn latest(reader: &LagReader) -> Self {
        let LagReading { messages, as_of, error } = reader.latest();
        Self { topic: reader.topic.clone(), group: reader.group.clone(), messages, as_of, error }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyHealth {
    /// `up` or `down`.
    pub status: &'static str,
    pub latency_ms: u64,
    /// The service answers without this dependency (degraded); absent for
    /// the required ones.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl MetricsHealth {
    pub fn from_report(report: ReadyReport, consumer_lag: ConsumerLag) -> Self {
        let status = if report.checks.values().all(|c| c.ok) {
            "ok"
        } else if report.checks.values().all(|c| c.ok || c.optional) {
            "degraded"
        } else {
            "unavailable"
        };
        let dependencies = report
            .checks
            .into_iter()
            .map(|(name, check)| {
                let up = if check.ok { "up" } else { "down" };
                (
                    name.to_string(),
                    DependencyHealth { status: up, latency_ms: check.latency_ms, optional: check.optional },
                )
            })
            .collect();
        Self { status, service: report.service, dependencies, consumer_lag }
    }
}

/// Status of the query API's dependencies, each checked with a real request.
#[utoipa::path(
    get,
    path = "/api/metrics/health",
    tag = "operations",
    responses(
        (status = 200, description = "every required dependency answered (`ok`, or `degraded` when an optional one is down)", body = MetricsHealth),
        (status = 503, description = "at least one required dependency is down", body = MetricsHealth),
    )
)]
pub async fn metrics_health(state: web::Data<AppState>) -> HttpResponse {
    let report = state.readiness.check().await;
    let health = MetricsHealth::from_report(report, ConsumerLag::latest(&state.consumer_lag));
    if health.status != "unavailable" {
        HttpResponse::Ok().json(health)
    } else {
        HttpResponse::ServiceUnavailable().json(health)
    }
}
