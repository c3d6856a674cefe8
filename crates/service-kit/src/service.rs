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
    fn http_mut(&mut self) -> &mut HttpConfig;
    fn log(&self) -> &LogConfig;

    /// Every problem that keeps the service from working, each naming its
    /// key; [`run_main`] lists them all and exits non-zero before anything
    /// starts. The default checks the shared `http` section only.
    fn validate(&self) -> Result<(), Vec<String>> {
        config::problems_to_result(self.http().problems())
    }

    /// Settings that work but are probably not meant; logged at start.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Implements [`ServiceConfig`] for a struct with `http` and `log` fields.
///
/// - `impl_service_config!(Config)`: the default validation (the `http`
///   section only);
/// - `impl_service_config!(Config, problems: [http, ingest])`: `validate`
///   lists the `problems()` of each named section (every problem of every
///   section, not the first);
/// - `…, warnings: path::to::fn`: and `warnings` is `fn(&Config) -> Vec<String>`.
#[macro_export]
macro_rules! impl_service_config {
    ($config:ty) => {
        impl $crate::ServiceConfig for $config {
            fn http(&self) -> &$crate::HttpConfig {
                &self.http
            }
            fn http_mut(&mut self) -> &mut $crate::HttpConfig {
                &mut self.http
            }
            fn log(&self) -> &$crate::LogConfig {
                &self.log
            }
        }
    };
    ($config:ty, problems: [$($section:ident),+ $(,)?] $(, warnings: $warnings:path)? $(,)?) => {
        impl $crate::ServiceConfig for $config {
            fn http(&self) -> &$crate::HttpConfig {
                &self.http
            }
            fn http_mut(&mut self) -> &mut $crate::HttpConfig {
                &mut self.http
            }
            fn log(&self) -> &$crate::LogConfig {
                &self.log
            }
            fn validate(&self) -> ::std::result::Result<(), ::std::vec::Vec<::std::string::String>> {
                let mut problems = ::std::vec::Vec::new();
                $(problems.extend(self.$section.problems());)+
                $crate::config::problems_to_result(problems)
            }
            $(
                fn warnings(&self) -> ::std::vec::Vec<::std::string::String> {
                    $warnings(self)
                }
            )?
        }
    };
}

/// Loads `service`'s configuration ([`config::load`]) and validates it
/// ([`ServiceConfig::validate`]); the error lists every problem. Returns the
/// configuration and the warnings to log once logging is set up.
pub fn load_valid<C: ServiceConfig>(service: &str) -> anyhow::Result<(C, Vec<String>)> {
    let loaded = config::load::<C>(service).with_context(|| format!("{service}: cannot load configuration"))?;
    if let Err(problems) = loaded.config.validate() {
        let list: Vec<String> = problems.iter().map(|problem| format!("  - {problem}")).collect();
        anyhow::bail!("{service}: invalid configuration:\n{}", list.join("\n"));
    }
    let mut warnings = loaded.warnings;
    warnings.extend(loaded.config.warnings());
    Ok((loaded.config, warnings))
}

/// Runs a service: config (defaults < file < env), validated before anything
/// starts, tracing, a bound listener, a shutdown token tied to SIGTERM/SIGINT,
/// then `run` until it returns.
///
/// Unknown keys and invalid values are all listed and give a non-zero exit
/// without binding or connecting to anything. Start-up errors are printed
/// with their cause chain and give a non-zero exit; a clean shutdown returns
/// `Ok(())`, so the process exits 0.
pub fn run_main<C, F, Fut>(service: &'static str, run: F) -> anyhow::Result<()>
where
    C: ServiceConfig,
    F: FnOnce(C, TcpListener, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let (config, warnings) = load_valid::<C>(service)?;
    telemetry::init(config.log())?;
    for warning in &warnings {
        tracing::warn!(service, warning = %warning, "configuration");
    }
    // The Prometheus recorder before anything records: a metric written (or
    // described) before it exists would be lost.
    ops::metrics_handle();
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
