//! Custom aggregations: `POST /api/metrics/query` (see `docs/custom-query.md`).
//!
//! A JSON body names metrics, group-by dimensions, filters, a time range and
//! a granularity, all from fixed lists ([`lists`]); it is read by
//! [`QueryRequest::from_json`], validated and turned into parameterised SQL by
//! [`compile`], and run by [`execute::run`]. Every rejection is a 400 naming
//! the field (`metrics[2]`, `filters[0].op`, ...) and is decided before
//! ClickHouse is contacted. No string from a request is ever part of the SQL
//! text: names select `&'static str` fragments, values are bound.
//!
//! Events are read through [`metrics_sql::first_copies_of_events`] (the
//! first received copy of each `event_id`, by grouping, which can spill to
//! disk on long ranges), so an event stored twice counts once; a range of
//! the recent days from the time-clustered copy of `events`
//! ([`metrics_sql::EVENTS_BY_TIME_TABLE`]), an older one from `events`.
//! Whole hours that aggregator-cron rolled up ([`metrics_sql::hourly`]) are
//! read from the rollup instead, plus the rows inserted after their run, when
//! the query allows it ([`CompiledQuery::rollup_hours`]); the answer is the same.

pub mod compile;
pub mod execute;
/// The custom-query vocabulary lives in the metrics core.
pub use metrics_sql::custom as lists;
pub mod request;

use actix_web::web;
use chrono::Utc;
use sha2::{Digest as _, Sha256};

pub use compile::{CompiledQuery, OutputColumn, Param, compile};
pub use execute::QueryResponse;
pub use request::{Filter, QueryRequest};

use crate::{
    error::{ApiError, ErrorBody},
    state::AppState,
};

/// The namespace of custom answers in the result cache (the path they are
/// asked at, so existing cache entries keep their keys).
const QUERY_CACHE_KEY: &str = "/api/metrics/query";

/// Rows returned when the request gives no `limit`.
pub const DEFAULT_LIMIT: usize = 1000;
/// Largest `limit`.
pub const MAX_LIMIT: usize = 10_000;
/// Most filters in one request.
pub const MAX_FILTERS: usize = 20;
/// Most entries in a filter's `values`.
pub const MAX_FILTER_VALUES: usize = 100;
/// Longest filter value, in characters.
pub const MAX_FILTER_VALUE_CHARS: usize = 256;

/// Aggregates deduplicated events by the requested dimensions (and time buckets).
#[utoipa::path(
    post,
    path = "/api/metrics/query",
    tag = "metrics",
    request_body(
        content = QueryRequest,
        example = json!({
            "metrics": ["event_count", "unique_users"],
            "group_by": ["country", "hour"],
            "filters": [
                {"dimension": "device_type", "op": "eq", "value": "mobile"},
                {"dimension": "event_type", "op": "in", "values": ["video_start", "seek"]}
            ],
            "start": "2026-11-01T00:00:00Z",
            "end": "2026-11-02T00:00:00Z",
            "granularity": "hour",
            "limit": 100,
            "order_by": "event_count"
        })
    ),
    responses(
        (status = 200, description = "the aggregated rows", body = QueryResponse),
        (status = 400, description = "unknown name, invalid value or limit exceeded (the input is named in `field`), \
                                      or malformed json", body = ErrorBody),
        (status = 408, description = "the body did not arrive within the body timeout", body = ErrorBody),
        (status = 413, description = "body over 64 KiB", body = ErrorBody),
        (status = 415, description = "body is not application/json", body = ErrorBody),
        (status = 503, description = "clickhouse unavailable", body = ErrorBody),
    )
)]
pub async fn post_query(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> Result<web::Json<QueryResponse>, ApiError> {
    let now = Utc::now();
    let by_time_from_ms = metrics_sql::by_time_holds_from_ms(
        u64::try_from(now.timestamp_millis()).unwrap_or(0),
        u64::try_from(state.freshness.lateness.as_millis()).unwrap_or(u64::MAX),
    );
    let compiled = QueryRequest::from_json(&body)
        .and_then(|request| compile(&request, now, by_time_from_ms))
        .inspect_err(|error| {
            if let ApiError::BadRequest { field, message } = error {
                tracing::debug!(field = field.as_deref().unwrap_or(""), message, "custom query refused");
            }
        })?;
    // The cache key is the SQL with its values (the normalised query): two
    // bodies that ask the same thing share an entry.
    let key = format!("{QUERY_CACHE_KEY}#{:x}", Sha256::digest(compiled.render_sql().as_bytes()));
    // Held while the answer is computed or waited for.
    let _permit = match service_kit::auth::Caller::of(&req) {
        Some(caller) => {
            Some(state.custom_per_key.try_acquire(&caller.id, &caller.name).map_err(ApiError::RateLimited)?)
        }
        None => None,
    };
    let (start, end) = compiled.range();
    let ttl = crate::cache::ttl_for_range(&(start..end), now, state.freshness.lateness, state.cache.config());
    let response = state
        .cache
        .get_or_compute(&key, ttl, || execute::run(&state.custom_clickhouse, &compiled, state.freshness.custom_rollup))
        .await?;
    tracing::debug!(
        columns = response.columns.len(),
        rows = response.rows.len(),
        truncated = response.truncated,
        sql_ms = response.sql_ms,
        "custom query answered"
    );
    Ok(web::Json(response))
}

#[cfg(test)]
mod tests;
