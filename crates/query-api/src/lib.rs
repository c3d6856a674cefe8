//! query-api: the REST API over ClickHouse, the PostgreSQL catalog and the Redis cache.
//!
//! This crate holds everything testable; `main.rs` only calls [`run`].

use std::{net::TcpListener, sync::Arc};

use serde::{Deserialize, Serialize};
use service_kit::{
    ClickHouseConfig, HttpConfig, LogConfig, PostgresConfig, Readiness, RedisConfig, Shutdown,
    deps::{clickhouse::ClickHouseProbe, postgres, redis},
    impl_service_config,
};

pub const SERVICE: &str = "query-api";
pub const DEFAULT_PORT: u16 = 3000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub http: HttpConfig,
    pub log: LogConfig,
    pub clickhouse: ClickHouseConfig,
    pub postgres: PostgresConfig,
    pub redis: RedisConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpConfig::with_port(DEFAULT_PORT),
            log: LogConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            postgres: PostgresConfig::default(),
            redis: RedisConfig::default(),
        }
    }
}

impl_service_config!(Config);

/// Serves until `shutdown`; ready while ClickHouse, PostgreSQL and Redis answer.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let timeout = config.http.probe_timeout();
    let readiness = Readiness::new(SERVICE, timeout)
        .with_probe(ClickHouseProbe::new(&config.clickhouse))
        .with_probe(postgres::PostgresProbe::new(postgres::pool(&config.postgres)?))
        .with_probe(redis::RedisProbe::new(redis::client(&config.redis)?));
    service_kit::ops::serve(listener, &config.http, Arc::new(readiness), shutdown, |_| {}).await?;
    Ok(())
}
