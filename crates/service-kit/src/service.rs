//! The `main` every binary shares: load config, start logging, bind, run until a signal.

use std::{future::Future, net::TcpListener};

use anyhow::Context as _;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    config::{self, HttpConfig, LogConfig},
    ops,
    shutdown::Shutdown,
    telemetry,
};

/// What the shared start-up needs from a service's configuration.
pub trait ServiceConfig: Serialize + DeserializeOwned + Default + Send + 'static {
    fn http(&self) -> &HttpConfig;
    fn log(&self) -> &LogConfig;
}

/// Implements [`ServiceConfig`] for a struct with `http` and `log` fields.
#[macro_export]
macro_rules! impl_service_config {
    ($config:ty) => {
        impl $crate::ServiceConfig for $config {
            fn http(&self) -> &$crate::HttpConfig {
                &self.http
            }
            fn log(&self) -> &$crate::LogConfig {
                &self.log
            }
        }
    };
}

/// Runs a service: config (defaults < file < env), tracing, a bound listener,
/// a shutdown token tied to SIGTERM/SIGINT, then `run` until it returns.
///
/// Start-up errors are printed with their cause chain and give a non-zero
/// exit; a clean shutdown returns `Ok(())`, so the process exits 0.
pub fn run_main<C, F, Fut>(service: &'static str, run: F) -> anyhow::Result<()>
where
    C: ServiceConfig,
    F: FnOnce(C, TcpListener, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config: C = config::load(service).with_context(|| format!("{service}: cannot load configuration"))?;
    telemetry::init(config.log())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(service)
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let shutdown = Shutdown::on_signals();
        let listener = ops::bind(config.http())?;
        tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "starting");
        let outcome = run(config, listener, shutdown).await;
        match &outcome {
            Ok(()) => tracing::info!(service, "stopped"),
            Err(error) => tracing::error!(service, error = %format!("{error:#}"), "stopped on error"),
        }
        outcome
    })
}
