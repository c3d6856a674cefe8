//! Debian's `redis-server`, in the foreground, data in its directory.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use super::{Kind, NativeServer};
use crate::{probe, process};

pub const PORT: u16 = 6379;

/// One Redis server on loopback.
#[derive(Debug, Clone)]
pub struct Redis {
    pub dir: PathBuf,
    pub log: PathBuf,
    pub port: u16,
}

impl Redis {
    /// `127.0.0.1:<port>`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl NativeServer for Redis {
    const KIND: Kind = Kind { name: "redis", marker: "redis-server", request: "PING" };

    fn ports(&self) -> Vec<u16> {
        vec![self.port]
    }

    fn log(&self) -> &Path {
        &self.log
    }

    fn command(&self) -> Result<Command> {
        let server = process::find_executable("redis-server")
            .context("redis-server not found (install the redis-server package)")?;
        let dir = &self.dir;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut cmd = Command::new(server);
        cmd.args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--daemonize", "no", "--logfile", "", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(dir)
            .current_dir(dir);
        Ok(cmd)
    }

    async fn probe(&self) -> Result<String> {
        probe::redis(&self.addr()).await
    }
}
