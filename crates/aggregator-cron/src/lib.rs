//! aggregator-cron: builds the hourly and daily tables, applies retention, backfills.
//!
//! This crate holds everything testable; `main.rs` only calls [`run`].

use std::{net::TcpListener, sync::Arc};

use serde::{Deserialize, Serialize};
use service_kit::{
    ClickHouseConfig, HttpConfig, LogConfig, PostgresConfig, Readiness, Shutdown,
    deps::{clickhouse::ClickHouseProbe, postgres},
    impl_service_config,
};

pub const SERVICE: &str = "aggregator-cron";
pub const DEFAULT_PORT: u16 = 9102;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub http: HttpConfig,
    pub log: LogConfig,
    pub clickhouse: ClickHouseConfig,
    pub postgres: PostgresConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpConfig::with_port(DEFAULT_PORT),
            log: LogConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            postgres: PostgresConfig::default(),
        }
    }
}

impl_service_config!(Config);

/// Serves the ops endpoints until `shutdown`; ready while ClickHouse and PostgreSQL answer.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let timeout = config.http.probe_timeout();
    let readiness = Readiness::new(SERVICE, timeout)
        .with_probe(ClickHouseProbe::new(&config.clickhouse))
        .with_probe(postgres::PostgresProbe::new(postgres::pool(&config.postgres)?));
    service_kit::ops::serve(listener, &config.http, Arc::new(readiness), shutdown, |_| {}).await?;
    Ok(())
}
