//! The catalog endpoints and `/api/metrics/health`; the metric endpoints
//! are in [`crate::metric_api`], custom queries in [`crate::custom_query`],
//! and [`crate::routes`] lists them all.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use service_kit::{KafkaConfig, ops::ReadyReport};
use utoipa::ToSchema;

use crate::{
    catalog::{self, Video, VideoInput},
    error::{ApiError, ErrorBody},
    state::AppState,
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
    /// `ok` when every dependency answered, else `unavailable`.
    pub status: &'static str,
    pub service: &'static str,
    /// By name: `clickhouse`, `postgres`, `redis`.
    pub dependencies: BTreeMap<String, DependencyHealth>,
    /// How far the stream processor is behind the raw topic.
    pub consumer_lag: ConsumerLag,
}

/// Messages of the raw topic the stream processor's group has not committed yet.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsumerLag {
    pub topic: String,
    pub group: String,
    /// Null when Kafka could not be asked (see `error`).
    pub messages: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ConsumerLag {
    /// Asks the broker, within the readiness probe timeout.
    pub async fn read(kafka: &KafkaConfig, timeout: std::time::Duration) -> Self {
        let topic = events_model::Topics::new(&kafka.topic_prefix).raw_events;
        let group = kafka.consumer_group.clone();
        let (cfg, t, g) = (kafka.clone(), topic.clone(), group.clone());
        let asked =
            tokio::task::spawn_blocking(move || service_kit::deps::kafka::consumer_group_lag(&cfg, &g, &t, timeout));
        let (messages, error) = match tokio::time::timeout(timeout + timeout, asked).await {
            Ok(Ok(Ok(lag))) => (Some(lag), None),
            Ok(Ok(Err(e))) => (None, Some(e.to_string())),
            Ok(Err(e)) => (None, Some(e.to_string())),
            Err(_) => (None, Some(format!("kafka did not answer within {} ms", (timeout + timeout).as_millis()))),
        };
        Self { topic, group, messages, error }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyHealth {
    /// `up` or `down`.
    pub status: &'static str,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl MetricsHealth {
    pub fn from_report(report: ReadyReport, consumer_lag: ConsumerLag) -> Self {
        let all_up = report.checks.values().all(|c| c.ok);
        let dependencies = report
            .checks
            .into_iter()
            .map(|(name, check)| {
                let status = if check.ok { "up" } else { "down" };
                (name.to_string(), DependencyHealth { status, latency_ms: check.latency_ms, error: check.error })
            })
            .collect();
        Self { status: if all_up { "ok" } else { "unavailable" }, service: report.service, dependencies, consumer_lag }
    }
}

/// Status of the query API's dependencies, each checked with a real request.
#[utoipa::path(
    get,
    path = "/api/metrics/health",
    tag = "operations",
    responses(
        (status = 200, description = "every dependency answered", body = MetricsHealth),
        (status = 503, description = "at least one dependency is down", body = MetricsHealth),
    )
)]
pub async fn metrics_health(state: web::Data<AppState>) -> HttpResponse {
    let (report, lag) =
        tokio::join!(state.readiness.check(), ConsumerLag::read(&state.kafka, state.readiness.timeout()));
    let health = MetricsHealth::from_report(report, lag);
    if health.status == "ok" {
        HttpResponse::Ok().json(health)
    } else {
        HttpResponse::ServiceUnavailable().json(health)
    }
}
