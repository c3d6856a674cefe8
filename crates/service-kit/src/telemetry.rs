//! Logging: a `tracing` subscriber honouring `LOG_LEVEL`, as text or JSON.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Call once, first thing in `main`.
///
/// `level` accepts a bare level (`debug`) or a full filter directive
/// (`info,rdkafka=warn`). An invalid filter is an error, not a silent default.
pub fn init(log: &LogConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::builder()
        .parse(&log.level)
        .map_err(|e| anyhow::anyhow!("invalid LOG_LEVEL {:?}: {e}", log.level))?;
    let registry = tracing_subscriber::registry().with(filter);
    match log.format {
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true).with_current_span(false).with_target(true))
            .try_init()?,
        LogFormat::Text => registry.with(fmt::layer().with_target(true)).try_init()?,
    }
    Ok(())
}
