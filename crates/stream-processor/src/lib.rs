//! stream-processor: consumes raw events from Kafka and stores them in ClickHouse.
//!
//! This crate holds everything testable; `main.rs` only calls [`run`].

use std::{net::TcpListener, sync::Arc};

use serde::{Deserialize, Serialize};
use service_kit::{
    ClickHouseConfig, HttpConfig, KafkaConfig, LogConfig, Readiness, Shutdown,
    deps::{clickhouse::ClickHouseProbe, kafka::KafkaProbe},
    impl_service_config,
};

pub const SERVICE: &str = "stream-processor";
pub const DEFAULT_PORT: u16 = 9101;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub http: HttpConfig,
    pub log: LogConfig,
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpConfig::with_port(DEFAULT_PORT),
            log: LogConfig::default(),
            kafka: KafkaConfig::default(),
            clickhouse: ClickHouseConfig::default(),
        }
    }
}

impl_service_config!(Config);

/// Serves the ops endpoints until `shutdown`; ready while Kafka and ClickHouse answer.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let timeout = config.http.probe_timeout();
    let readiness = Readiness::new(SERVICE, timeout)
        .with_probe(KafkaProbe::new(&config.kafka, timeout)?)
        .with_probe(ClickHouseProbe::new(&config.clickhouse));
    service_kit::ops::serve(listener, &config.http, Arc::new(readiness), shutdown, |_| {}).await?;
    Ok(())
}
