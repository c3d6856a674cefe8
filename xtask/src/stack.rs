//! The commands: `up`, `down`, `status`, `migrate`, `test`, `logs`; each of
//! the first three also for cluster mode (`--cluster`).

use std::{
    collections::HashMap,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::future::BoxFuture;
use local_stack::{cluster, process};
use serde::{Deserialize, Serialize};
use service_kit::{ClickHouseConfig, KafkaConfig, PostgresConfig};

use crate::{
    docker, install, keys,
    layout::Layout,
    load,
    servers::{self, Managed, Server, cluster::Member},
    services::{self, SERVICES, Service},
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
    let servers = [
        ("KAFKA_BROKERS", KAFKA_ADDR),
        ("CLICKHOUSE_URL", CLICKHOUSE_URL),
        ("CLICKHOUSE_DATABASE", CLICKHOUSE_DATABASE),
        ("DATABASE_URL", DATABASE_URL),
        ("REDIS_URL", REDIS_URL),
    ];
    env_with(layout, servers.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// `servers` (where the servers are), `LOG_LEVEL` and `LOG_FORMAT`, and
/// `layout`'s credentials file when it exists.
fn env_with(layout: &Layout, servers: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut env = servers;
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

/// [`service_env`] of cluster mode (`layout` is the cluster's): its servers
/// ([`servers::cluster::env`]), its credentials, and the durability the
/// services with a Kafka section then require of their topics (three
/// replicas, two in sync).
pub fn cluster_service_env(cluster_layout: &Layout) -> Vec<(String, String)> {
    let mut env = env_with(cluster_layout, servers::cluster::env());
    env.push(("NO_COLOR".to_string(), "1".to_string()));
    for service in ["INGEST_GATEWAY", "STREAM_PROCESSOR", "QUERY_API", "REALTIME_HUB"] {
        env.push((format!("{service}__KAFKA__REPLICATION_FACTOR"), cluster::REPLICATION_FACTOR.to_string()));
        env.push((format!("{service}__KAFKA__MIN_INSYNC_REPLICAS"), cluster::MIN_INSYNC_REPLICAS.to_string()));
    }
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

    note_still_answering(&Server::ALL).await;
    note_cluster(layout, "`cargo xtask down --cluster` stops it");
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    if purge {
        purge_state(layout, Server::ALL.map(Server::name))?;
    }
    Ok(())
}

/// What still answers was not started by xtask: says so rather than touch it.
async fn note_still_answering<S: Managed>(servers: &[S]) {
    for &server in servers {
        if server.probe().await.is_ok() {
            ui::line(format!(
                "  note: {} still answers on port {}; xtask did not start it",
                server.name(),
                server.port()
            ));
        }
    }
}

/// When members of the cluster run, says so and how to `act` on them.
fn note_cluster(layout: &Layout, act: &str) {
    let cluster = Member::layout(layout);
    let running = Member::ALL.iter().filter(|member| member.live_pid(&cluster).is_some()).count();
    if running > 0 {
        ui::line(format!("  note: cluster mode runs too ({running} of {} members); {act}", Member::ALL.len()));
    }
}

/// Deletes the servers' data (`.stack/<server>/`, and the PostgreSQL directory
/// outside the checkout when `.stack/postgres` links to one). Logs stay.
fn purge_state<'a>(layout: &Layout, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    for name in names {
        let dir = layout.state_dir(name);
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
        ui::line(format!("✓ {name:<16} data removed ({})", layout.show(&dir)));
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
    let mut checks: Vec<BoxFuture<'static, Result<String>>> = Vec::new();
    for server in Server::ALL {
        rows.push((server.name(), server.live_pid(layout), server.port()));
        checks.push(Box::pin(server.probe()));
    }
    for service in SERVICES {
        rows.push((service.name, service.live_pid(layout), service.port));
        checks.push(Box::pin(service.probe()));
    }
    let down = print_status(rows, futures::future::join_all(checks).await, docker);
    if let Some(pid) = load::demo_pid(layout) {
        let rate = load::demo_rate(pid).unwrap_or_else(|| "?".to_string());
        ui::out(format!(
            "{:<18} {pid:>8} {:>6}  running (~{rate} events/s to the ingest-gateway; log {})",
            load::DEMO,
            "-",
            layout.show(&layout.log(load::DEMO))
        ));
    }
    note_cluster(layout, "`cargo xtask status --cluster` shows it");
    if down > 0 {
        ui::out(format!("\n{down} of 9 components do not answer; logs are in {}/", layout.show(&layout.logs_dir())));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints one line per component (name, pid, port) with what its probe
/// found; returns how many do not answer.
fn print_status(rows: Vec<(&str, Option<u32>, u16)>, outcomes: Vec<Result<String>>, docker: bool) -> usize {
    ui::out(format!("{:<18} {:>8} {:>6}  STATE", "COMPONENT", "PID", "PORT"));
    let mut down = 0;
    for ((name, pid, port), outcome) in rows.into_iter().zip(outcomes) {
        let pid = match (pid, docker) {
            (Some(pid), _) => pid.to_string(),
            (None, true) => "docker".to_string(),
            (None, false) => "-".to_string(),
        };
        let state = match outcome {
            Ok(detail) => format!("answering ({detail})"),
            Err(err) => {
                down += 1;
                format!("NOT ANSWERING: {}", one_line(&format!("{err:#}")))
            }
        };
        ui::out(format!("{name:<18} {pid:>8} {port:>6}  {state}"));
    }
    down
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
    apply_postgres(&cfg.postgres).await
}

async fn apply_postgres(postgres: &PostgresConfig) -> Result<()> {
    let step = Step::start("PostgreSQL migrations");
    match service_kit::migrate::apply_postgres(postgres).await {
        Ok(report) => {
            step.ok(describe_report(&report));
            Ok(())
        }
        Err(err) => {
            step.fail("failed");
            Err(migration_error(err, "PostgreSQL", "schemas/postgres"))
        }
    }
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
    let mut cluster_started = Vec::new();
    let mut docker_started = false;
    let outcome = async {
        // The cluster drill of xtask/src/chaos/tests.rs runs on cluster mode's servers.
        let mut cluster_down = false;
        for member in Member::ALL {
            cluster_down |= member.probe().await.is_err();
        }
        if cluster_down {
            ui::line("Cluster mode does not answer; starting its servers for this test run.");
            start_cluster_servers(layout, &mut cluster_started).await?;
        }
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
    let cluster_layout = Member::layout(layout);
    for member in cluster_started.iter().rev() {
        match servers::stop(&cluster_layout, *member) {
            Ok(Some(pid)) => ui::line(format!("✓ stopped {} (pid {pid}), started for this test run", member.name())),
            Ok(None) => {}
            Err(err) => ui::line(format!("✗ stopping {}: {err:#}", member.name())),
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

/// `cluster`: a member of cluster mode (`.stack/cluster/logs/`).
pub fn logs(layout: &Layout, component: &str, lines: usize, follow: bool, cluster: bool) -> Result<()> {
    let layout = if cluster { &Member::layout(layout) } else { layout };
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

// -------------------------------------------------------------- cluster ---

/// `cargo xtask up --cluster`: ZooKeeper, three Kafka nodes, four ClickHouse
/// servers (2 shards × 2 replicas), PostgreSQL and Redis as native processes
/// under `.stack/cluster/`; the product's topics with three replicas; the
/// migrations (ClickHouse's in their cluster form). Idempotent.
pub async fn up_cluster(layout: &Layout, no_services: bool) -> Result<()> {
    let begun = Instant::now();
    let cluster_layout = Member::layout(layout);
    ui::line(format!(
        "Cluster mode: native processes with their state in {} (Docker Compose runs the single-node stack only).",
        layout.show(&cluster_layout.stack)
    ));
    start_cluster_servers(layout, &mut Vec::new()).await?;
    keys::ensure_stack_at(&cluster_layout, servers::cluster::DATABASE_URL).await?;
    if !no_services {
        services::build(layout).await?;
        services::start(&cluster_layout, SERVICES.map(Service::in_cluster), &cluster_service_env(&cluster_layout))
            .await?;
    }
    print_cluster(layout, begun.elapsed(), no_services);
    Ok(())
}

/// The servers of cluster mode, those not running started (and added to
/// `started`), the cluster checked on every ClickHouse server, the topics
/// and the migrations applied, `.stack/cluster/cluster.env` written.
async fn start_cluster_servers(layout: &Layout, started: &mut Vec<Member>) -> Result<()> {
    layout.ensure_dirs()?;
    let cluster_layout = Member::layout(layout);
    cluster_layout.ensure_dirs()?;
    install::ensure_packages(layout)?;
    install::kafka_jars(layout)?;
    // ZooKeeper first: ClickHouse's replicated tables and ON CLUSTER DDL need it.
    servers::start_missing(&cluster_layout, &Member::ALL[..1], started).await?;
    servers::start_missing(&cluster_layout, &Member::ALL[1..], started).await?;

    let step = Step::start(format!("ClickHouse cluster {} on every server", cluster::NAME));
    match servers::cluster::wait_clickhouse_cluster().await {
        Ok(_) => step.ok(format!(
            "{} shards × {} replicas, macros and ZooKeeper sessions on all {} servers",
            cluster::SHARDS,
            cluster::REPLICAS,
            cluster::NODES
        )),
        Err(err) => {
            step.fail("not ready");
            return Err(err.context(format!("read {}/clickhouse-*.log", layout.show(&cluster_layout.logs_dir()))));
        }
    }
    cluster_topics().await?;
    let env: HashMap<String, String> = servers::cluster::env().into_iter().collect();
    let cfg: DatabasesConfig = service_kit::config::load_from("xtask", None, &env)?;
    // The server defines the cluster macro: the migrations take their cluster form.
    apply(&cfg).await?;
    let env_file = cluster_layout.stack.join("cluster.env");
    let text: String = servers::cluster::env().iter().map(|(name, value)| format!("{name}={value}\n")).collect();
    std::fs::write(&env_file, text).with_context(|| format!("writing {}", env_file.display()))
}

/// The product's topics on the cluster, with the partitions the services
/// create them with, three replicas and `min.insync.replicas` 2 (checked
/// after creation, existing topics included).
async fn cluster_topics() -> Result<()> {
    let kafka = KafkaConfig {
        brokers: cluster::Ports::STANDARD.bootstrap(),
        client_id: "xtask".to_string(),
        replication_factor: cluster::REPLICATION_FACTOR,
        min_insync_replicas: cluster::MIN_INSYNC_REPLICAS,
        ..KafkaConfig::default()
    };
    let topics = events_model::Topics::new(&kafka.topic_prefix);
    let raw = service_kit::deps::kafka::TopicSpec {
        name: topics.raw_events,
        partitions: ingest_gateway::IngestConfig::default().raw_topic_partitions,
        retention_ms: None,
    };
    let mut specs = vec![raw];
    specs.extend(stream_processor::topic_specs(&stream_processor::Config::default()));
    let names: Vec<String> = specs.iter().map(|spec| format!("{} ({})", spec.name, spec.partitions)).collect();
    let step = Step::start("Kafka topics");
    match service_kit::deps::kafka::ensure_topics(&kafka, &specs).await {
        Ok(()) => {
            step.ok(format!(
                "{}: {} replicas, min.insync.replicas {}",
                names.join(", "),
                kafka.replication_factor,
                kafka.min_insync_replicas
            ));
            Ok(())
        }
        Err(err) => {
            step.fail("failed");
            Err(err.context("creating the topics on the cluster"))
        }
    }
}

fn print_cluster(layout: &Layout, took: Duration, no_services: bool) {
    let cluster_layout = Member::layout(layout);
    let mut out = format!("\nThe cluster is up ({:.0} s).\n", took.as_secs_f64());
    for member in Member::ALL {
        out.push_str(&format!("  {:<18} {}\n", member.name(), member.address()));
    }
    if !no_services {
        for service in SERVICES.map(Service::in_cluster) {
            out.push_str(&format!("  {:<18} http://127.0.0.1:{}\n", service.name, service.port));
        }
    }
    let env: Vec<String> = servers::cluster::env().iter().map(|(name, value)| format!("{name}={value}")).collect();
    out.push_str(&format!(
        "  ClickHouse         cluster {name}, database {database}: <table>_local (Replicated*MergeTree) on \
         every server behind the Distributed <table>; bookkeeping replicated everywhere (schemas/README.md)\n\
         \x20 environment        {}   (the same in {})\n\
         \x20 logs               {}/<member>.log   (cargo xtask logs --cluster <member>)\n\
         \x20 status / stop      cargo xtask status --cluster / cargo xtask down --cluster\n\
         \x20 API keys           {}\n",
        env.join(" "),
        layout.show(&cluster_layout.stack.join("cluster.env")),
        layout.show(&cluster_layout.logs_dir()),
        layout.show(&cluster_layout.credentials_file()),
        name = cluster::NAME,
        database = CLICKHOUSE_DATABASE,
    ));
    ui::line(out);
}

/// `cargo xtask down --cluster`: stops the members xtask started, ClickHouse
/// first and ZooKeeper after the brokers (the members of a group together).
pub async fn down_cluster(layout: &Layout, purge: bool) -> Result<()> {
    let cluster_layout = Member::layout(layout);
    let groups: [&[Member]; 4] = [&Member::ALL[4..8], &Member::ALL[1..4], &Member::ALL[..1], &Member::ALL[8..]];
    let mut failures = Vec::new();
    // The services first: they finish their work while the servers still answer.
    for service in SERVICES.map(Service::in_cluster) {
        report_stop(service.name, services::stop(&cluster_layout, service), &mut failures);
    }
    for group in groups {
        let stops = group.iter().map(|&member| {
            let cluster_layout = cluster_layout.clone();
            tokio::task::spawn_blocking(move || (member, servers::stop(&cluster_layout, member)))
        });
        for joined in futures::future::join_all(stops).await {
            let (member, outcome) = joined.context("stopping task failed")?;
            report_stop(member.name(), outcome, &mut failures);
        }
    }
    note_still_answering(&Member::ALL).await;
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    if purge {
        purge_state(&cluster_layout, Member::ALL.map(Member::name))?;
        let _ = std::fs::remove_file(cluster_layout.stack.join("cluster.env"));
    }
    Ok(())
}

/// `cargo xtask status --cluster`: every member, a ClickHouse server with
/// what it knows of the cluster; non-zero exit if any does not answer.
pub async fn status_cluster(layout: &Layout) -> Result<ExitCode> {
    let cluster_layout = Member::layout(layout);
    let mut rows = Member::ALL.map(|member| (member.name(), member.live_pid(&cluster_layout), member.port())).to_vec();
    let mut checks: Vec<BoxFuture<'static, Result<String>>> = Member::ALL
        .into_iter()
        .map(|member| -> BoxFuture<'static, Result<String>> { Box::pin(member.describe()) })
        .collect();
    for service in SERVICES.map(Service::in_cluster) {
        rows.push((service.name, service.live_pid(&cluster_layout), service.port));
        checks.push(Box::pin(service.probe()));
    }
    let components = rows.len();
    let down = print_status(rows, futures::future::join_all(checks).await, false);
    if down > 0 {
        ui::out(format!(
            "\n{down} of {components} components do not answer; logs are in {}/",
            layout.show(&cluster_layout.logs_dir())
        ));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
