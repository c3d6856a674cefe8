//! What the handlers share.

use std::sync::Arc;

use service_kit::{KafkaConfig, Readiness};

use crate::{cache::QueryCache, catalog::Catalog, config::FreshnessConfig};

/// The handlers' shared state, built once by [`crate::run`].
pub struct AppState {
    pub catalog: Catalog,
    /// ClickHouse, bound to the `analytics` database, with the metric
    /// endpoints' limits (`limits.metrics`).
    pub clickhouse: clickhouse::Client,
    /// The same, with the custom queries' limits (`limits.custom`).
    pub custom_clickhouse: clickhouse::Client,
    /// The result cache of the metric endpoints.
    pub cache: QueryCache,
    pub freshness: FreshnessConfig,
    /// Where `/api/metrics/health` reads the stream processor's consumer lag.
    pub kafka: KafkaConfig,
    pub readiness: Arc<Readiness>,
}
