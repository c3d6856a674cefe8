//! The five binaries of the workspace, run from `target/debug/<name>`.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use local_stack::{
    probe::{self, NotAnswering},
    process,
};
use tokio::task::JoinSet;

use crate::{layout::Layout, stack, ui::Step};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub name: &'static str,
    pub port: u16,
    /// `/health`, `/ready` and `/metrics`: their own port for the three
    /// services with an API, `port` for the two workers.
    pub ops_port: u16,
}

pub const SERVICES: [Service; 5] = [
    Service { name: "ingest-gateway", port: 3001, ops_port: 9103 },
    Service { name: "stream-processor", port: 9101, ops_port: 9101 },
    Service { name: "aggregator-cron", port: 9102, ops_port: 9102 },
    Service { name: "query-api", port: 3000, ops_port: 9100 },
    Service { name: "realtime-hub", port: 3002, ops_port: 9104 },
];

const READY_DEADLINE: Duration = Duration::from_secs(60);

/// Cluster mode's services (`up --cluster`) listen this far above the
/// single-node ones (query-api 13000, stream-processor 19101, …).
pub const CLUSTER_PORT_OFFSET: u16 = 10_000;

impl Service {
    /// The same binary in cluster mode: its ports [`CLUSTER_PORT_OFFSET`] higher.
    pub const fn in_cluster(self) -> Service {
        Service { port: self.port + CLUSTER_PORT_OFFSET, ops_port: self.ops_port + CLUSTER_PORT_OFFSET, ..self }
    }

    /// The pid of this binary if xtask started it and it still runs.
    pub fn live_pid(self, layout: &Layout) -> Option<u32> {
        process::live_pid(&layout.pid_file(self.name), self.name)
    }

    pub async fn probe(self) -> Result<String> {
        probe::ready(self.ops_port).await
    }
}

/// `cargo build --bins`, output straight to the terminal.
pub async fn build(layout: &Layout) -> Result<()> {
    let step = Step::start("building the binaries (cargo build --bins)");
    step.set_message("cargo output follows");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = tokio::process::Command::new(&cargo)
        .args(["build", "--bins"])
        .current_dir(&layout.root)
        .status()
        .await
        .with_context(|| format!("running {cargo} build --bins"))?;
    if !status.success() {
        step.fail(format!("cargo exited with {status}"));
        bail!("`cargo build --bins` failed ({status}); its errors are printed above");
    }
    step.ok("");
    Ok(())
}

/// Starts every binary that is not running yet and waits for each `/ready`.
pub async fn start_all(layout: &Layout) -> Result<()> {
    start(layout, SERVICES, &stack::service_env(layout)).await
}

/// Starts `services` that are not running yet with `env` (their pid files
/// and logs in `layout`) and waits for each `/ready`.
pub async fn start(layout: &Layout, services: [Service; 5], env: &[(String, String)]) -> Result<()> {
    let mut waiting = Vec::new();
    for service in services {
        let step = Step::start(service.name);
        if let Some(pid) = service.live_pid(layout) {
            if service.probe().await.is_ok() {
                step.skip(format!("already running (pid {pid}, started by xtask), ready"));
                continue;
            }
            step.set_message(format!("started earlier by xtask (pid {pid}); waiting for GET /ready"));
            waiting.push((service, pid, step));
            continue;
        }
        let _ = std::fs::remove_file(layout.pid_file(service.name));
        if probe::port_in_use(service.port).await {
            match service.probe().await {
                Ok(_) => {
                    step.skip(format!("already answering on port {}; not started by xtask", service.port));
                    continue;
                }
                Err(err) => {
                    step.fail(format!("port {} is taken", service.port));
                    bail!(
                        "{} cannot start: port {} is in use by a process that does not answer /ready ({err:#}); \
                         see `ss -ltnp 'sport = :{}'`",
                        service.name,
                        service.port,
                        service.port
                    );
                }
            }
        }
        let binary = layout.binary(service.name);
        if !binary.exists() {
            step.fail("not built");
            bail!("{} does not exist; `cargo build --bins` did not produce it", binary.display());
        }
        let mut cmd = Command::new(&binary);
        cmd.current_dir(&layout.root)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("PORT", service.port.to_string())
            .env("OPS_PORT", service.ops_port.to_string());
        let log = layout.log(service.name);
        let pid = process::spawn_background(&mut cmd, &log)
            .with_context(|| format!("starting {}; read {}", service.name, layout.show(&log)))?;
        process::write_pid(&layout.pid_file(service.name), pid)?;
        step.set_message(format!("pid {pid}; waiting for GET /ready"));
        waiting.push((service, pid, step));
    }

    let mut tasks = JoinSet::new();
    for (service, pid, step) in waiting {
        let layout = layout.clone();
        tasks.spawn(async move {
            let outcome = wait_ready(&layout, service, pid, &step).await;
            match &outcome {
                Ok(()) => step.ok(format!("ready on http://127.0.0.1:{}", service.port)),
                Err(_) => step.fail("not ready"),
            }
            outcome
        });
    }
    crate::ui::join_all(tasks).await
}

async fn wait_ready(layout: &Layout, service: Service, pid: u32, step: &Step) -> Result<()> {
    let log = layout.log(service.name);
    let waiting = |last_error: &str| step.set_message(format!("waiting for GET /ready ({last_error})"));
    match probe::until_answers(Some(pid), READY_DEADLINE, || service.probe(), waiting).await {
        Ok(_) => Ok(()),
        Err(NotAnswering::Exited) => bail!(
            "{} (pid {pid}) exited before becoming ready; read {}\n{}",
            service.name,
            layout.show(&log),
            process::indent_tail(&log, 30)
        ),
        Err(NotAnswering::TimedOut(last_error)) => bail!(
            "{} did not answer GET /ready with 200 within {}s (last: {last_error}); read {}\n{}",
            service.name,
            READY_DEADLINE.as_secs(),
            layout.show(&log),
            process::indent_tail(&log, 30)
        ),
    }
}

/// SIGTERM (then SIGKILL after 10 s) to a binary xtask started.
pub fn stop(layout: &Layout, service: Service) -> Result<Option<u32>> {
    let pid_file = layout.pid_file(service.name);
    let Some(pid) = service.live_pid(layout) else {
        let _ = std::fs::remove_file(&pid_file);
        return Ok(None);
    };
    process::log_marker(&layout.log(service.name), &format!("stopping pid {pid}"));
    let killed = process::terminate(pid, libc::SIGTERM, Duration::from_secs(10))?;
    if killed {
        crate::ui::line(format!("  {} ignored SIGTERM for 10 s and was killed", service.name));
    }
    let _ = std::fs::remove_file(&pid_file);
    Ok(Some(pid))
}

/// Waits for every binary's `/ready` when something else (Docker Compose)
/// started them; `logs_hint` says where their output is.
pub async fn wait_all_ready(logs_hint: &str) -> Result<()> {
    for service in SERVICES {
        let step = Step::start(service.name);
        let started = Instant::now();
        loop {
            match service.probe().await {
                Ok(_) => {
                    step.ok(format!("ready on http://127.0.0.1:{}", service.port));
                    break;
                }
                Err(err) if started.elapsed() > Duration::from_secs(180) => {
                    step.fail("not ready");
                    bail!(
                        "{} did not answer GET /ready with 200 ({err:#}); read `{logs_hint} {}`",
                        service.name,
                        service.name
                    );
                }
                Err(err) => step.set_message(format!("{err:#}")),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}
