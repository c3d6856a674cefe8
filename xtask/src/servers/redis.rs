//! Debian's `redis-server`, in the foreground, data in `.stack/redis/`.

use std::process::Command;

use anyhow::{Context, Result};

use crate::{layout::Layout, process};

pub fn spawn(layout: &Layout) -> Result<u32> {
    let server = process::find_executable("redis-server")
        .context("redis-server not found (install the redis-server package)")?;
    let dir = layout.state_dir("redis");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Command::new(server);
    cmd.args([
        "--bind",
        "127.0.0.1",
        "--port",
        "6379",
        "--daemonize",
        "no",
        "--logfile",
        "",
        "--protected-mode",
        "yes",
    ])
    .arg("--dir")
    .arg(&dir)
    .current_dir(&dir);
    process::spawn_background(&mut cmd, &layout.log("redis"))
}
