//! ingest-gateway: accepts playback events over HTTP and produces them to Kafka.
//!
//! This crate holds everything testable; `main.rs` only calls [`run`].

use std::{net::TcpListener, sync::Arc};

use serde::{Deserialize, Serialize};
use service_kit::{
    HttpConfig, KafkaConfig, LogConfig, Readiness, Shutdown, deps::kafka::KafkaProbe, impl_service_config,
};

pub const SERVICE: &str = "ingest-gateway";
pub const DEFAULT_PORT: u16 = 3001;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub http: HttpConfig,
    pub log: LogConfig,
    pub kafka: KafkaConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self { http: HttpConfig::with_port(DEFAULT_PORT), log: LogConfig::default(), kafka: KafkaConfig::default() }
    }
}

impl_service_config!(Config);

/// Serves until `shutdown`; ready while Kafka answers.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let timeout = config.http.probe_timeout();
    let readiness = Readiness::new(SERVICE, timeout).with_probe(KafkaProbe::new(&config.kafka, timeout)?);
    service_kit::ops::serve(listener, &config.http, Arc::new(readiness), shutdown, |_| {}).await?;
    Ok(())
}
