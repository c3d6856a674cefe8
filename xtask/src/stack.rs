//! The commands: `up`, `down`, `status`, `migrate`, `test`, `logs`.

use std::{collections::HashMap, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, Result, bail};
use local_stack::process;
use serde::{Deserialize, Serialize};
use service_kit::{ClickHouseConfig, PostgresConfig};

use crate::{
    docker, install, keys,
    layout::Layout,
    load,
    servers::{self, Server},
    services::{self, SERVICES},
    ui::{self, Step},
};

pub const KAFKA_ADDR: &str = "127.0.0.1:9092";
pub const CLICKHOUSE_URL: &str = "http://127.0.0.1:8123";
pub const CLICKHOUSE_DATABASE: &str = "analytics";
pub const DATABASE_URL: &str = "postgres://analytics:analytics@127.0.0.1:5432/analytics";
pub const REDIS_ADDR: &str = "127.0.0.1:6379";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Environment pointing a process at the local stack (the binaries get a
/// `PORT` on top; `cargo xtask test` hands it to the tests). `LOG_LEVEL` and
/// `LOG_FORMAT` pass through when set; `.stack/credentials.env` is added when
/// it exists.
pub fn stack_env(layout: &Layout) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("KAFKA_BROKERS", KAFKA_ADDR),
        ("CLICKHOUSE_URL", CLICKHOUSE_URL),
        ("CLICKHOUSE_DATABASE", CLICKHOUSE_DATABASE),
        ("DATABASE_URL", DATABASE_URL),
        ("REDIS_URL", REDIS_URL),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (name, default) in [("LOG_LEVEL", "info"), ("LOG_FORMAT", "text")] {
        env.push((name.to_string(), std::env::var(name).unwrap_or_else(|_| default.to_string())));
    }
    if let Ok(text) = std::fs::read_to_string(layout.credentials_file()) {
        for (key, value) in text.lines().filter_map(keys::parse_line) {
            env.push((key.to_string(), value.to_string()));
        }
    }
    env
}

/// [`stack_env`] for the five binaries; their output goes to log files, so
/// no terminal colours.
pub fn service_env(layout: &Layout) -> Vec<(String, String)> {
    let mut env = stack_env(layout);
    env.push(("NO_COLOR".to_string(), "1".to_string()));
    env
}

fn uses_docker(layout: &Layout) -> bool {
    std::fs::read_to_string(layout.mode_file()).map(|m| m.trim() == "docker").unwrap_or(false)
}

fn choose_docker(native: bool) -> bool {
    if native {
        return false;
    }
    let step = Step::start("looking for a Docker engine");
    if docker::engine_available() {
        step.ok("found: using deploy/docker-compose.yml");
        true
    } else {
        step.skip("none answers; running the servers as native processes");
        false
    }
}

// ------------------------------------------------------------------- up ---

/// `demo`: the rate of the background demo traffic to start once the services are ready.
pub async fn up(layout: &Layout, no_services: bool, native: bool, demo: Option<f64>) -> Result<()> {
    layout.ensure_dirs()?;
    if choose_docker(native) {
        std::fs::write(layout.mode_file(), "docker\n")?;
        let mut args = vec!["up", "-d", "--build"];
        if no_services {
            args.extend(["kafka", "clickhouse", "postgres", "redis"]);
        }
        docker::compose(layout, &args)?;
        wait_for_answers().await?;
        migrate_stack(layout).await?;
        keys::ensure_stack(layout).await?;
        if !no_services {
            services::wait_all_ready("docker compose -f deploy/docker-compose.yml logs").await?;
        }
        start_demo(layout, demo).await?;
        print_urls(layout, no_services);
        print_demo(layout, demo);
        return Ok(());
    }
    std::fs::write(layout.mode_file(), "native\n")?;

    install::ensure_packages(layout)?;
    install::ensure_chdb(layout)?;
    install::kafka_jars(layout)?;
    let mut started = Vec::new();
    servers::start_missing(layout, &Server::ALL, &mut started).await?;
    migrate_stack(layout).await?;
    keys::ensure_stack(layout).await?;
    if !no_services {
        services::build(layout).await?;
        services::start_all(layout).await?;
    }
    start_demo(layout, demo).await?;
    print_urls(layout, no_services);
    print_demo(layout, demo);
    Ok(())
}

async fn start_demo(layout: &Layout, demo: Option<f64>) -> Result<()> {
    match demo {
        Some(rate) => load::start_demo(layout, rate).await,
        None => Ok(()),
    }
}

fn print_demo(layout: &Layout, demo: Option<f64>) {
    if demo.is_none() {
        return;
    }
    let Some(pid) = load::demo_pid(layout) else { return };
    let rate = load::demo_rate(pid).unwrap_or_else(|| "?".to_string());
    ui::line(format!(
        "\nDemo traffic is flowing: ~{rate} events/s of simulated viewers (pid {pid}; `cargo xtask logs {} -f`).\n\
         Watch it live on the dashboard: http://127.0.0.1:3002/   (`cargo xtask down` stops it with the rest)",
        load::DEMO
    ));
}

/// For Docker: polls the four servers through their published ports.
async fn wait_for_answers() -> Result<()> {
    for server in Server::ALL {
        let step = Step::start(server.name());
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            match server.probe().await {
                Ok(detail) => {
                    step.ok(format!("answering on port {} ({detail})", server.port()));
                    break;
                }
                Err(err) if std::time::Instant::now() > deadline => {
                    step.fail("not answering");
                    bail!(
                        "{} (Docker) did not answer {} on port {}: {err:#}; read `docker compose -f {} logs {}`",
                        server.name(),
                        server.request(),
                        server.port(),
                        docker::COMPOSE_FILE,
                        server.name()
                    );
                }
                Err(err) => step.set_message(format!("{err:#}")),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

fn print_urls(layout: &Layout, no_services: bool) {
    let mut out = String::from("\nThe stack is up.\n");
    if !no_services {
        out.push_str(
            "  dashboard          http://127.0.0.1:3002/\n\
             \x20 live WebSocket     ws://127.0.0.1:3002/ws\n\
             \x20 query API          http://127.0.0.1:3000   (GET /api/metrics/realtime, /api/metrics/video/:id)\n\
             \x20 ingest             http://127.0.0.1:3001/api/events\n\
             \x20 stream-processor   http://127.0.0.1:9101/metrics\n\
             \x20 aggregator-cron    http://127.0.0.1:9102/metrics\n",
        );
    }
    out.push_str(&format!(
        "  Kafka              {KAFKA_ADDR}\n\
         \x20 ClickHouse         {CLICKHOUSE_URL}  (database {CLICKHOUSE_DATABASE}, user default)\n\
         \x20 PostgreSQL         {DATABASE_URL}\n\
         \x20 Redis              {REDIS_URL}\n\
         \x20 keys               {}   (source it: {})\n\
         \x20 logs               {}/<component>.log   (cargo xtask logs <component>)\n\
         \x20 stop               cargo xtask down\n",
        layout.show(&layout.credentials_file()),
        keys::SOURCE_HINT,
        layout.show(&layout.logs_dir())
    ));
    ui::line(out);
}

// ----------------------------------------------------------------- down ---

pub async fn down(layout: &Layout, purge: bool) -> Result<()> {
    // The demo traffic first: it feeds the services. Mentioned only when it ran.
    let mut failures = Vec::new();
    match load::stop_demo(layout) {
        Ok(None) => {}
        outcome => report_stop(load::DEMO, outcome, &mut failures),
    }
    if uses_docker(layout) {
        docker::compose(layout, if purge { &["down", "--volumes"] } else { &["down"] })?;
        let _ = std::fs::remove_file(layout.mode_file());
        ui::line("✓ Docker Compose stack stopped");
        if !failures.is_empty() {
            bail!("{}", failures.join("\n"));
        }
        return Ok(());
    }
    for service in SERVICES.iter().rev() {
        report_stop(service.name, services::stop(layout, *service), &mut failures);
    }
    for server in Server::ALL {
        report_stop(server.name(), servers::stop(layout, server), &mut failures);
    }
    let _ = std::fs::remove_file(layout.mode_file());

    // What still answers was not started by xtask: say so rather than touch it.
    for server in Server::ALL {
        if server.probe().await.is_ok() {
            ui::line(format!(
                "  note: {} still answers on port {}; xtask did not start it",
                server.name(),
                server.port()
            ));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    if purge {
        purge_state(layout)?;
    }
    Ok(())
}

/// Deletes the servers' data (`.stack/<server>/`, and the PostgreSQL directory
/// outside the checkout when `.stack/postgres` links to one). Logs stay.
fn purge_state(layout: &Layout) -> Result<()> {
    for server in Server::ALL {
        let dir = layout.state_dir(server.name());
        if dir.is_symlink() {
            if let Ok(target) = std::fs::read_link(&dir) {
                remove_tree(&target)?;
                if let Some(parent) = target.parent().filter(|p| p.starts_with("/var/tmp")) {
                    let _ = std::fs::remove_dir(parent);
                }
            }
            std::fs::remove_file(&dir).with_context(|| format!("removing {}", dir.display()))?;
        } else {
            remove_tree(&dir)?;
        }
        ui::line(format!("✓ {:<16} data removed ({})", server.name(), layout.show(&dir)));
    }
    Ok(())
}

fn remove_tree(dir: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("removing {}", dir.display())),
    }
}

fn report_stop(name: &str, outcome: Result<Option<u32>>, failures: &mut Vec<String>) {
    match outcome {
        Ok(Some(pid)) => ui::line(format!("✓ {name:<16} stopped (pid {pid})")),
        Ok(None) => ui::line(format!("• {name:<16} not running (no live pid file)")),
        Err(err) => {
            ui::line(format!("✗ {name:<16} {err:#}"));
            failures.push(format!("stopping {name}: {err:#}"));
        }
    }
}

// --------------------------------------------------------------- status ---

pub async fn status(layout: &Layout) -> Result<ExitCode> {
    let docker = uses_docker(layout);
    let mut rows = Vec::new();
    let mut checks = tokio::task::JoinSet::new();
    for (index, server) in Server::ALL.into_iter().enumerate() {
        let pid = server.live_pid(layout);
        rows.push((server.name(), pid, server.port()));
        checks.spawn(async move { (index, server.probe().await) });
    }
    for (offset, service) in SERVICES.into_iter().enumerate() {
        let pid = service.live_pid(layout);
        rows.push((service.name, pid, service.port));
        checks.spawn(async move { (Server::ALL.len() + offset, service.probe().await) });
    }
    let mut results: Vec<Option<Result<String>>> = (0..rows.len()).map(|_| None).collect();
    while let Some(joined) = checks.join_next().await {
        let (index, outcome) = joined.context("status probe task failed")?;
        results[index] = Some(outcome);
    }

    ui::out(format!("{:<18} {:>8} {:>6}  STATE", "COMPONENT", "PID", "PORT"));
    let mut down = 0;
    for ((name, pid, port), outcome) in rows.into_iter().zip(results) {
        let pid = match (pid, docker) {
            (Some(pid), _) => pid.to_string(),
            (None, true) => "docker".to_string(),
            (None, false) => "-".to_string(),
        };
        let state = match outcome {
            Some(Ok(detail)) => format!("answering ({detail})"),
            Some(Err(err)) => {
                down += 1;
                format!("NOT ANSWERING: {}", one_line(&format!("{err:#}")))
            }
            None => {
                down += 1;
                "NOT CHECKED".to_string()
            }
        };
        ui::out(format!("{name:<18} {pid:>8} {port:>6}  {state}"));
    }
    if let Some(pid) = load::demo_pid(layout) {
        let rate = load::demo_rate(pid).unwrap_or_else(|| "?".to_string());
        ui::out(format!(
            "{:<18} {pid:>8} {:>6}  running (~{rate} events/s to the ingest-gateway; log {})",
            load::DEMO,
            "-",
            layout.show(&layout.log(load::DEMO))
        ));
    }
    if down > 0 {
        ui::out(format!("\n{down} of 9 components do not answer; logs are in {}/", layout.show(&layout.logs_dir())));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn one_line(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 140 { format!("{}…", flat.chars().take(140).collect::<String>()) } else { flat }
}

// -------------------------------------------------------------- migrate ---

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct DatabasesConfig {
    clickhouse: ClickHouseConfig,
    postgres: PostgresConfig,
}

/// `cargo xtask migrate`: databases from the environment (`CLICKHOUSE_URL`,
/// `CLICKHOUSE_HOST`, `CLICKHOUSE_DATABASE`, `DATABASE_URL`, …), defaults = local stack.
pub async fn migrate(_layout: &Layout) -> Result<()> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let cfg: DatabasesConfig =
        service_kit::config::load_from("xtask", None, &env).context("reading the database configuration")?;
    apply(&cfg).await
}

/// Migrations against the local stack's databases.
async fn migrate_stack(layout: &Layout) -> Result<()> {
    let env: HashMap<String, String> = stack_env(layout).into_iter().collect();
    let cfg: DatabasesConfig = service_kit::config::load_from("xtask", None, &env)?;
    apply(&cfg).await
}

/// A failed migration, with a way out when an applied migration was edited.
fn migration_error(err: service_kit::migrate::MigrateError, engine: &str, dir: &str) -> anyhow::Error {
    let hint = if matches!(err, service_kit::migrate::MigrateError::ChecksumMismatch { .. }) {
        " (on a local development stack, `cargo xtask down --purge` then `cargo xtask up` starts from empty databases)"
    } else {
        ""
    };
    anyhow::Error::new(err).context(format!("applying {engine} migrations ({dir}){hint}"))
}

async fn apply(cfg: &DatabasesConfig) -> Result<()> {
    let step = Step::start(format!(
        "ClickHouse migrations ({}, database {})",
        cfg.clickhouse.endpoint(),
        cfg.clickhouse.database
    ));
    match service_kit::migrate::apply_clickhouse(&cfg.clickhouse).await {
        Ok(report) => step.ok(describe_report(&report)),
        Err(err) => {
            step.fail("failed");
            return Err(migration_error(err, "ClickHouse", "schemas/clickhouse"));
        }
    }
    let step = Step::start("PostgreSQL migrations");
    match service_kit::migrate::apply_postgres(&cfg.postgres).await {
        Ok(report) => step.ok(describe_report(&report)),
        Err(err) => {
            step.fail("failed");
            return Err(migration_error(err, "PostgreSQL", "schemas/postgres"));
        }
    }
    Ok(())
}

fn describe_report(report: &service_kit::migrate::Report) -> String {
    if report.applied.is_empty() {
        return format!("up to date ({} already applied)", report.already);
    }
    let names: Vec<String> = report.applied.iter().map(|(_, name)| name.clone()).collect();
    format!("applied {} ({} already applied)", names.join(", "), report.already)
}

// ----------------------------------------------------------------- test ---

/// `cargo xtask test`: the workspace's tests against a running stack, started
/// for the occasion when needed and then stopped again.
pub async fn test(layout: &Layout, native: bool, cargo_args: &[String]) -> Result<ExitCode> {
    layout.ensure_dirs()?;
    // Ctrl-C reaches `cargo test` (same terminal); xtask survives it to clean up.
    let interrupted = tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
    });

    let mut missing = Vec::new();
    for server in Server::ALL {
        if server.probe().await.is_err() {
            missing.push(server);
        }
    }
    install::ensure_chdb(layout)?;
    // crates/chart-tests runs helm/tests: helm lint/template and strict decoding of every chart.
    let (helm, go) = install::ensure_helm(layout)?;

    let mut started = Vec::new();
    let mut docker_started = false;
    let outcome = async {
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|s| s.name()).collect();
            ui::line(format!("Not answering: {}; starting them for this test run.", names.join(", ")));
            if !uses_docker(layout) && choose_docker(native) {
                docker_started = true;
                docker::compose(layout, &{
                    let mut args = vec!["up", "-d"];
                    args.extend(names.iter().copied());
                    args
                })?;
                wait_for_answers().await?;
            } else {
                install::ensure_packages(layout)?;
                install::kafka_jars(layout)?;
                servers::start_missing(layout, &missing, &mut started).await?;
            }
        } else {
            ui::line("All four servers answer; using them.");
        }
        // After the packages (npm among them) are installed.
        install::ensure_web_modules(layout);
        migrate_stack(layout).await?;
        // The tests get the local stack's keys in their environment (the
        // README's examples use them), as after `up`.
        keys::ensure_stack(layout).await?;

        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = tokio::process::Command::new(&cargo);
        // --no-fail-fast: one run reports every failing test binary, not only the first.
        cmd.args(["test", "--workspace", "--no-fail-fast"])
            .args(cargo_args)
            .current_dir(&layout.root)
            .envs(stack_env(layout))
            .env("HELM", &helm)
            .env("GO", &go);
        ui::line(format!("Running: {cargo} test --workspace --no-fail-fast {}", cargo_args.join(" ")));
        let status = cmd.status().await.with_context(|| format!("running {cargo} test"))?;
        Ok::<_, anyhow::Error>(status)
    }
    .await;

    // Stop exactly what this run started, whatever happened above.
    if docker_started {
        let names: Vec<&str> = missing.iter().map(|s| s.name()).collect();
        let mut args = vec!["stop"];
        args.extend(names);
        if let Err(err) = docker::compose(layout, &args) {
            ui::line(format!("✗ stopping the Docker servers: {err:#}"));
        }
    }
    for server in started.iter().rev() {
        match servers::stop(layout, *server) {
            Ok(Some(pid)) => ui::line(format!("✓ stopped {} (pid {pid}), started for this test run", server.name())),
            Ok(None) => {}
            Err(err) => ui::line(format!("✗ stopping {}: {err:#}", server.name())),
        }
    }
    interrupted.abort();

    let status = outcome?;
    if status.success() {
        ui::line("✓ cargo test passed");
        Ok(ExitCode::SUCCESS)
    } else {
        ui::line(format!("✗ cargo test failed ({status})"));
        Ok(ExitCode::from(status.code().and_then(|c| u8::try_from(c).ok()).filter(|c| *c != 0).unwrap_or(1)))
    }
}

// ----------------------------------------------------------------- logs ---

pub fn logs(layout: &Layout, component: &str, lines: usize, follow: bool) -> Result<()> {
    let path: PathBuf = layout.log(component);
    if !path.exists() {
        let known: Vec<String> = std::fs::read_dir(layout.logs_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log").map(str::to_string))
            .collect();
        bail!(
            "no log for {component:?} at {}; logs present: {}",
            layout.show(&path),
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        );
    }
    ui::out(process::tail(&path, lines));
    if follow {
        follow_file(&path)?;
    }
    Ok(())
}

fn follow_file(path: &std::path::Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut file = std::fs::File::open(path)?;
    let mut position = file.seek(SeekFrom::End(0))?;
    let mut buf = Vec::new();
    loop {
        let len = std::fs::metadata(path)?.len();
        if len < position {
            // Truncated or rotated: start over.
            file = std::fs::File::open(path)?;
            position = 0;
        }
        if len > position {
            file.seek(SeekFrom::Start(position))?;
            buf.clear();
            file.read_to_end(&mut buf)?;
            position += buf.len() as u64;
            std::io::stdout().write_all(&buf)?;
            std::io::stdout().flush()?;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
