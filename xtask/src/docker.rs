//! Docker Compose, used instead of native processes when a Docker engine answers.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use local_stack::process;

use crate::layout::Layout;

pub const COMPOSE_FILE: &str = "deploy/docker-compose.yml";

/// Whether `docker info` succeeds (within 20 s).
pub fn engine_available() -> bool {
    if process::find_executable("docker").is_none() {
        return false;
    }
    let Ok(mut child) =
        Command::new("docker").arg("info").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// `docker compose -f deploy/docker-compose.yml <args>` (or `docker-compose`),
/// output to the terminal.
pub fn compose(layout: &Layout, args: &[&str]) -> Result<()> {
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let mut cmd = if plugin {
        let mut cmd = Command::new("docker");
        cmd.arg("compose");
        cmd
    } else if process::find_executable("docker-compose").is_some() {
        Command::new("docker-compose")
    } else {
        bail!("a Docker engine answers but neither `docker compose` nor `docker-compose` is installed");
    };
    cmd.arg("-f").arg(layout.root.join(COMPOSE_FILE)).args(args).current_dir(&layout.root);
    let shown = process::describe(&cmd);
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status}); see its output above and `docker compose -f {COMPOSE_FILE} logs`");
    }
    Ok(())
}
