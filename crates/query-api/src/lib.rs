//! query-api: the REST API over ClickHouse, the PostgreSQL catalog and the Redis cache.
//!
//! Served (the table: [`routes::routes`]):
//! - `GET /api/metrics/video/{videoId}`, `/api/metrics/user/{userId}`,
//!   `/api/metrics/videos/top`, `/api/metrics/realtime`: the metrics of
//!   docs/metrics.md ([`metric_api`]), merging aggregated and raw windows;
//! - `POST /api/metrics/query`: custom aggregations over the deduplicated
//!   events: metrics, group-by dimensions and filters from fixed lists, a
//!   time range and granularity, compiled to parameterised SQL
//!   ([`custom_query`], `docs/custom-query.md`);
//! - `PUT`/`GET /api/videos/{videoId}`: the video catalog ([`catalog`]);
//! - `GET /api/metrics/health`: status of ClickHouse, PostgreSQL, Redis and the consumer lag
//!   (read every 5 s by one background client, [`state::LagReader`]);
//! - `GET /api/openapi.json`: the OpenAPI 3 document;
//! - `GET /health`, `/ready`, `/metrics` from `service_kit::ops`.
//!
//! Answers go through the Redis result cache ([`cache`]).
//! This crate holds everything testable; `main.rs` only calls [`run`].

mod breaker;
pub mod cache;
pub mod catalog;
mod config;
pub mod contract;
pub mod custom_query;
pub mod error;
pub mod handlers;
pub mod metric_api;
pub mod openapi;
pub mod routes;
pub mod state;

use std::{net::TcpListener, sync::Arc};

use actix_web::web;
use anyhow::Context as _;
use service_kit::{
    Readiness, Shutdown,
    auth::{Credential, Guard, Scope},
    deps::{clickhouse::ClickHouseProbe, postgres, redis},
};

pub use config::{CacheConfig, Config, DEFAULT_PORT, FreshnessConfig, LimitsConfig, StoredFactsUse};

pub const SERVICE: &str = "query-api";

/// Where clients put their token.
pub const CREDENTIALS: &[Credential] = &[Credential::Bearer];

/// Every `/api/*` route needs a `read` token, catalog writes an `admin` one;
/// the document and the ops routes are open.
pub fn rules(method: &actix_web::http::Method, path: &str) -> Option<Scope> {
    if path == "/api/openapi.json" || !path.starts_with("/api/") {
        None
    } else if method == actix_web::http::Method::PUT && path.starts_with("/api/videos/") {
        Some(Scope::Admin)
    } else {
        Some(Scope::Read)
    }
}

/// Serves until `shutdown`; ready while ClickHouse answers and the key store
/// has been read. PostgreSQL (the catalog) and Redis (the cache) are probed
/// and reported but optional: without them the metric endpoints answer from
/// ClickHouse, uncached and with the catalog's fields marked unavailable.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    service_kit::ops::describe_metrics(|| {
        cache::describe_metrics();
        catalog::describe_metrics();
        metric_api::freshness::describe_metrics();
    });
    let timeout = config.http.probe_timeout;
    let pool = postgres::pool(&config.postgres)?;
    let redis_client = redis::client(&config.redis)?;
    let (guard, keys_probe) = Guard::start(&config.auth, &config.postgres, &shutdown, CREDENTIALS, rules)?;
    let readiness = Arc::new(
        Readiness::new(SERVICE, timeout)
            .with_probe(ClickHouseProbe::new(&config.clickhouse))
            .with_optional_probe(postgres::PostgresProbe::new(pool.clone()))
            .with_optional_probe(redis::RedisProbe::new(redis_client.clone()))
            .with_probes(keys_probe),
    );
    let cache = cache::QueryCache::new(redis_client, &config.redis.key_prefix, config.cache.clone());
    tracing::info!(
        cache_enabled = config.cache.enabled,
        short_ttl = ?config.cache.short_ttl,
        long_ttl = ?config.cache.long_ttl,
        "query api configured"
    );

    // One Kafka client for the consumer lag of /api/metrics/health, read in the background.
    let consumer_lag = Arc::new(state::LagReader::new(&config.kafka, timeout));
    let state = web::Data::new(state::AppState {
        catalog: catalog::Catalog::new(pool),
        clickhouse: config.limits.apply(config.clickhouse.client(), &config.limits.metrics),
        custom_clickhouse: config.limits.apply(config.clickhouse.client(), &config.limits.custom),
        cache,
        freshness: config.freshness.clone(),
        consumer_lag: consumer_lag.clone(),
        readiness: readiness.clone(),
        custom_per_key: service_kit::rate::ConcurrencyLimit::new(
            "concurrent_custom_queries",
            config.limits.custom_concurrent_per_key,
        ),
    });
    let lag_refresh = tokio::spawn(consumer_lag.run(shutdown.clone(), state::LAG_REFRESH_INTERVAL));
    let served = service_kit::ops::serve_guarded(
        listener,
        &config.http,
        readiness,
        shutdown.clone(),
        Some(guard),
        routes::configure(state),
    )
    .await;
    // However serving ended, the lag reader stops with it.
    shutdown.trigger();
    lag_refresh.await.context("consumer lag reader panicked")?;
    served?;
    Ok(())
}
