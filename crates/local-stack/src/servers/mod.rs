//! The servers of the native stack: Kafka, ClickHouse, PostgreSQL, Redis,
//! and ZooKeeper for a replicated ClickHouse ([`crate::cluster`]).
//!
//! Each is described by a value holding where its state and log live and
//! which ports it listens on; [`spawn`] writes its configuration and starts
//! it in the background. `cargo xtask up` uses them with the standard ports
//! and `.stack/`; [`crate::scratch`] with free ports and a temporary directory.

pub mod clickhouse;
pub mod kafka;
pub mod postgres;
pub mod redis;
pub mod zookeeper;

use std::{future::Future, path::Path, process::Command};

use anyhow::Result;

use crate::process::{self, Detach};

/// What names a kind of server and finds its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// `kafka`, `clickhouse`, … (directory, log and pid file names).
    pub name: &'static str,
    /// Text that the server process's command line contains.
    pub marker: &'static str,
    /// The request that proves it answers, for messages.
    pub request: &'static str,
}

/// A server run as a native background process.
pub trait NativeServer {
    const KIND: Kind;
    /// Every port it listens on, the one clients use first.
    fn ports(&self) -> Vec<u16>;
    /// Where its output goes.
    fn log(&self) -> &Path;
    /// Writes its configuration, prepares its storage and returns the command
    /// that runs it in the foreground.
    fn command(&self) -> Result<Command>;
    /// Sends the real request to it.
    fn probe(&self) -> impl Future<Output = Result<String>> + Send;
    /// What must happen after the process `pid` started and before the
    /// probe can pass (PostgreSQL: creating the `analytics` role and
    /// database); waits at most `deadline`. Nothing by default.
    fn prepare(&self, pid: u32, deadline: std::time::Duration) -> impl Future<Output = Result<()>> + Send {
        let _ = (pid, deadline);
        async { Ok(()) }
    }
}

/// Prepares `server` and starts it in the background with its output appended
/// to its log; returns the pid.
pub fn spawn(server: &impl NativeServer, detach: Detach) -> Result<u32> {
    let mut cmd = server.command()?;
    process::spawn_logged(&mut cmd, server.log(), detach)
}

/// `&`, `<` and `>` escaped for XML text.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
