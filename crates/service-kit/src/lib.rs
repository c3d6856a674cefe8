//! Service plumbing written once and shared by every binary of the workspace.
//!
//! - [`config`]: typed configuration (defaults < file < environment).
//! - [`telemetry`]: `tracing` subscriber honouring `LOG_LEVEL`, text or JSON.
//! - [`ops`]: `GET /health`, `GET /ready` (real dependency probes with timeouts)
//!   and `GET /metrics` (Prometheus text), mountable on an API server or served alone.
//! - [`routes`]: one table of a service's routes, giving both its actix
//!   routes (with 405 + `Allow`) and its OpenAPI paths.
//! - [`shutdown`]: SIGTERM/SIGINT turned into a cancellation token.
//! - [`auth`]: API keys and tokens (scopes, PostgreSQL rows, cached store,
//!   middleware); [`rate`]: rate limits per key or client IP.
//! - [`deps`]: clients for Kafka, ClickHouse, PostgreSQL and Redis, and their probes.
//! - [`tls`]: rustls client configurations (CA file or system store, libpq's
//!   `sslmode`) for PostgreSQL, ClickHouse over HTTPS and Redis over TLS.
//! - [`migrate`]: versioned ClickHouse and PostgreSQL migrations from `schemas/`.
//! - [`service`]: the shared `main`: config, logging, bind, run until a signal.
//! - the global allocator (mimalloc) of every binary that links this crate.
//! - `testing` (feature `testing`, for tests only): helpers for integration
//!   tests against the local stack.

mod allocator;
pub mod auth;
pub mod config;
pub mod cors;
pub mod deadline;
pub mod deps;
/// The fault-injecting ClickHouse proxy (crate `clickhouse-faults`), for tests.
#[cfg(feature = "testing")]
pub use clickhouse_faults as faults;
pub mod migrate;
pub mod ops;
pub mod rate;
pub mod routes;
pub mod service;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

pub use config::{AuthConfig, ClickHouseConfig, HttpConfig, KafkaConfig, LogConfig, PostgresConfig, RedisConfig};
pub use ops::{Probe, Readiness};
pub use service::{ServiceConfig, load_valid, run_main};
pub use shutdown::Shutdown;
