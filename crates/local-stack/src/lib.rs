//! The native servers of the local stack, written once for `cargo xtask` and
//! for tests.
//!
//! - [`servers`]: Kafka (KRaft), ClickHouse, PostgreSQL, Redis and ZooKeeper as values
//!   that say where their state and log live and which ports they use;
//!   [`servers::spawn`] writes their configuration and starts them.
//! - [`cluster`]: cluster mode on one machine: three Kafka nodes, ClickHouse
//!   as 2 shards × 2 replicas, ZooKeeper.
//! - [`process`]: background processes with a log file, pid files, liveness, stopping.
//! - [`probe`]: the real requests that prove a server answers, and waiting for them.
//! - [`scratch`]: servers of a test's own (free ports, a temporary directory)
//!   that the test may stop and start again without disturbing the shared stack,
//!   PostgreSQL and Kafka among them also with TLS.
//! - [`tls`]: a throwaway CA and server certificate (and an unrelated CA) made with `openssl`.

pub mod cluster;
pub mod probe;
pub mod process;
pub mod scratch;
pub mod servers;
pub mod tls;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use scratch::{Scratch, ScratchClickHouse, ScratchCluster, ScratchKafka, ScratchPostgres};
pub use servers::{
    Kind, NativeServer, clickhouse::ClickHouse, kafka::Kafka, postgres::Postgres, redis::Redis, spawn,
    zookeeper::ZooKeeper,
};
pub use tls::TestPki;

/// The repository root (the workspace directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().and_then(Path::parent).unwrap_or(manifest).to_path_buf()
}

/// `~/.cache/analytics-stack/`: downloads shared by every clone.
pub fn cache_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set; cannot locate ~/.cache")?;
    Ok(PathBuf::from(home).join(".cache").join("analytics-stack"))
}
