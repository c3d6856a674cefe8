//! Helpers for integration tests against the real local stack.
//!
//! Tests find the servers through the same environment names the services use
//! (`KAFKA_BROKERS`, `CLICKHOUSE_URL`, `DATABASE_URL`, `REDIS_URL`), defaulting to
//! the brief's local ports. Each test isolates itself: its own topic prefix,
//! ClickHouse database, PostgreSQL database or Redis key prefix.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::config::{ClickHouseConfig, KafkaConfig, PostgresConfig, RedisConfig};

/// `prefix_<32 hex digits>`: a name no other test run uses.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// Kafka of the local stack with a topic prefix unique to this test.
pub fn kafka_config() -> KafkaConfig {
    KafkaConfig {
        brokers: env_or("KAFKA_BROKERS", "127.0.0.1:9092"),
        topic_prefix: format!("{}.", unique_name("test")),
        consumer_group: unique_name("test-group"),
        client_id: "analytics-tests".into(),
        ..KafkaConfig::default()
    }
}

/// ClickHouse of the local stack with a database name unique to this test (not created).
pub fn clickhouse_config() -> ClickHouseConfig {
    ClickHouseConfig {
        url: env_or("CLICKHOUSE_URL", "http://127.0.0.1:8123"),
        database: unique_name("test"),
        ..ClickHouseConfig::default()
    }
}

/// PostgreSQL of the local stack (the shared development database).
pub fn postgres_config() -> PostgresConfig {
    PostgresConfig { url: env_or("DATABASE_URL", &PostgresConfig::default().url), ..PostgresConfig::default() }
}

/// Redis of the local stack with a key prefix unique to this test.
pub fn redis_config() -> RedisConfig {
    RedisConfig {
        url: env_or("REDIS_URL", "redis://127.0.0.1:6379"),
        key_prefix: format!("{}:", unique_name("test")),
        ca_file: None,
    }
}

/// A ClickHouse database of its own, with every migration applied.
/// A loopback port that nothing listens on, held for as long as the value
/// lives: the socket is bound but never listens, so connecting is refused and
/// no concurrent test can be handed the same port (as it could after a
/// bind-and-drop).
pub struct ClosedPort {
    socket: tokio::net::TcpSocket,
}

impl ClosedPort {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("tcp socket");
        socket.bind(([127, 0, 0, 1], 0).into()).expect("bind 127.0.0.1:0");
        Self { socket }
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().expect("bound address").port()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

pub struct TestClickHouse {
    pub config: ClickHouseConfig,
}

impl TestClickHouse {
    pub async fn create() -> anyhow::Result<Self> {
        Self::create_with(clickhouse_config()).await
    }

    /// The database `config` names on its server, migrated (in the cluster
    /// form on a server of a cluster).
    pub async fn create_with(config: ClickHouseConfig) -> anyhow::Result<Self> {
        crate::migrate::apply_clickhouse(&config).await?;
        Ok(Self { config })
    }

    pub fn client(&self) -> clickhouse::Client {
        self.config.client()
    }

    /// Drops the database (on every server of a cluster). Call at the end of the test.
    pub async fn drop(self) -> anyhow::Result<()> {
        Ok(crate::migrate::drop_clickhouse_database(&self.config).await?)
    }
}

/// A PostgreSQL database of its own (created by the `analytics` role), with every migration applied.
pub struct TestPostgres {
    pub config: PostgresConfig,
    admin: PostgresConfig,
    name: String,
}

impl TestPostgres {
    pub async fn create() -> anyhow::Result<Self> {
        let admin = postgres_config();
        let name = unique_name("test");
        let config = crate::deps::postgres::create_database(&admin, &name).await?;
        crate::migrate::apply_postgres(&config).await?;
        Ok(Self { config, admin, name })
    }

    pub fn pool(&self) -> anyhow::Result<deadpool_postgres::Pool> {
        crate::deps::postgres::pool(&self.config)
    }

    /// One new key per scope in this database (what `cargo xtask up` makes
    /// for the local stack).
    pub async fn keys(&self) -> anyhow::Result<TestKeys> {
        let client = self.pool()?.get().await?;
        let make = async |name: &str, scope| -> anyhow::Result<String> {
            Ok(crate::auth::create_key(&client, name, &[scope], &[]).await?.secret)
        };
        Ok(TestKeys {
            ingest: make("test-ingest", crate::auth::Scope::Ingest).await?,
            read: make("test-read", crate::auth::Scope::Read).await?,
            admin: make("test-admin", crate::auth::Scope::Admin).await?,
        })
    }

    /// Drops the database. Call at the end of the test.
    pub async fn drop(self) -> anyhow::Result<()> {
        crate::deps::postgres::drop_database(&self.admin, &self.name).await
    }
}

/// The secrets of one key per scope ([`TestPostgres::keys`]).
#[derive(Debug, Clone)]
pub struct TestKeys {
    pub ingest: String,
    pub read: String,
    pub admin: String,
}

impl TestKeys {
    /// A client sending the ingest key as `X-API-Key` with every request
    /// (no idle pooled connection, so it never holds up a service's stop).
    pub fn ingest_client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = reqwest::header::HeaderValue::from_str(&self.ingest).expect("a key is ascii");
        headers.insert("x-api-key", value);
        reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(0)
            .build()
            .expect("a reqwest client builds")
    }

    /// A client sending `Authorization: Bearer <secret>` with every request.
    pub fn client(secret: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {secret}")).expect("a key is ascii");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a reqwest client builds")
    }
}

/// A service binary started by a test, listening on a port it chose itself.
pub struct ServiceProcess {
    child: Child,
    pub addr: SocketAddr,
    name: String,
}

impl ServiceProcess {
    /// Starts `binary` with `PORT=0` (and `OPS_PORT=0`: the ops endpoints on
    /// the same listener), JSON logs, no drain delay after SIGTERM
    /// (`http.drain_delay`, [`drain_delay_env`]) and `env`, and waits (up to
    /// 30 s) for its `listening` log line to learn the address.
    pub fn spawn(binary: &str, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let name = std::path::Path::new(binary).file_name().map_or(binary.into(), |n| n.to_string_lossy().to_string());
        let mut command = Command::new(binary);
        command
            .env(drain_delay_env(binary), "0s")
            .env("PORT", "0")
            .env("OPS_PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "info")
            .env("KAFKA_TOPIC_PREFIX", format!("{}.", unique_name("test")))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().map_err(|e| anyhow::anyhow!("cannot start {binary}: {e}"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        let log_name = name.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(addr) = listening_addr(&line) {
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
                eprintln!("[{log_name}] {line}");
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => Ok(Self { child, addr, name }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                anyhow::bail!("{name} did not log `listening` within 30 s (exit status: {status:?})")
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {} failed", self.pid());
        Ok(())
    }

    /// Waits for the process to exit, polling until `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> anyhow::Result<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > deadline {
                anyhow::bail!("{} still running {:?} after the signal", self.name, deadline);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The service's name: the file name of its binary.
fn service_name(binary: &str) -> String {
    std::path::Path::new(binary).file_name().map_or(binary.into(), |n| n.to_string_lossy().to_string())
}

/// The environment variable setting `http.drain_delay` of the service
/// `binary` (a path whose file name is the service's name):
/// `QUERY_API__HTTP__DRAIN_DELAY` for `.../query-api`.
pub fn drain_delay_env(binary: &str) -> String {
    let name = std::path::Path::new(binary).file_name().map_or(binary.into(), |n| n.to_string_lossy().to_string());
    format!("{}__HTTP__DRAIN_DELAY", crate::config::env_prefix(&name))
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.get("message")?.as_str()? != "listening" {
        return None;
    }
    value.get("addr")?.as_str()?.parse().ok()
}

/// A service's `run` function started in-process on `127.0.0.1:0`.
///
/// Shutdown is triggered when it is stopped or dropped, so a failing test
/// never leaves a worker thread holding the runtime open.
pub struct InProcess {
    pub addr: SocketAddr,
    shutdown: crate::Shutdown,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    pub fn spawn<C, F, Fut>(config: C, run: F) -> Self
    where
        C: crate::ServiceConfig,
        F: FnOnce(C, std::net::TcpListener, crate::Shutdown) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        Self::spawn_on(listener, config, run)
    }

    /// [`InProcess::spawn`] on a listener of the caller's: e.g. a restart on
    /// the address of a stopped instance (`TcpListener::bind` sets
    /// `SO_REUSEADDR` on Unix, so the address is free again at once).
    ///
    /// The ops endpoints are served on that listener too (`http.ops_port` is
    /// cleared): a default ops port would be one fixed port for every test.
    /// There is no drain delay (`http.drain_delay` is cleared), so a test's
    /// `stop` does not wait for one.
    pub fn spawn_on<C, F, Fut>(listener: std::net::TcpListener, mut config: C, run: F) -> Self
    where
        C: crate::ServiceConfig,
        F: FnOnce(C, std::net::TcpListener, crate::Shutdown) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        config.http_mut().ops_port = None;
        config.http_mut().drain_delay = Duration::ZERO;
        let addr = listener.local_addr().expect("bound address");
        let shutdown = crate::Shutdown::new();
        let task = tokio::spawn(run(config, listener, shutdown.clone()));
        Self { addr, shutdown, task: Some(task) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Polls `GET /ready` until it answers 200 (its dependencies reachable),
    /// or fails with the last answer after `deadline`.
    pub async fn wait_ready(&self, deadline: Duration) -> anyhow::Result<()> {
        // No idle keep-alive connection: it would hold up a graceful stop.
        let http = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
        eventually(deadline, || async {
            let response = http.get(self.url("/ready")).send().await?;
            let status = response.status();
            anyhow::ensure!(status == 200, "{} /ready answered {status}: {}", self.addr, response.text().await?);
            Ok(())
        })
        .await
    }

    /// Triggers shutdown and waits (up to 15 s) for `run` to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        let Some(task) = self.task.take() else { return Ok(()) };
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .map_err(|_| anyhow::anyhow!("service still running 15 s after shutdown"))??
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Polls `check` until it returns `Ok`, or fails with its last error after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(error) if started.elapsed() >= deadline => {
                return Err(error.context(format!("still failing after {deadline:?}")));
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// The drain delay [`assert_lifecycle`] gives the binary: long enough to
/// observe the drain, short enough for a quick test.
pub const LIFECYCLE_DRAIN_DELAY: Duration = Duration::from_secs(2);

/// The lifecycle every binary must honour, checked against the real stack:
/// `/health`, `/ready` (eventually 200) and `/metrics` answer on the ops
/// port (`OPS_PORT`) and not on the main one; after SIGTERM `/ready` turns
/// 503 while the main port still answers requests for the drain delay
/// (`http.drain_delay`, set to [`LIFECYCLE_DRAIN_DELAY`]), and the process
/// exits with status 0 no sooner than that delay and within 5 s after it.
pub async fn assert_lifecycle(binary: &str, env: &[(&str, &str)]) -> anyhow::Result<()> {
    assert_lifecycle_serving(binary, env, None).await
}

/// [`assert_lifecycle`]; with `api_path`, during the drain `GET api_path`
/// on the main port must answer 200 (an API route open without a key, such
/// as the OpenAPI document), else any answer shows the port still serves.
pub async fn assert_lifecycle_serving(
    binary: &str,
    env: &[(&str, &str)],
    api_path: Option<&str>,
) -> anyhow::Result<()> {
    // A free port for the ops listener (released just before the binary binds it).
    let ops_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let drain_env = drain_delay_env(binary);
    let drain = format!("{}ms", LIFECYCLE_DRAIN_DELAY.as_millis());
    let mut env = env.to_vec();
    env.push(("OPS_PORT", &ops_port));
    env.push((&drain_env, &drain));
    let mut service = ServiceProcess::spawn(binary, &env)?;
    let ops = |path: &str| format!("http://127.0.0.1:{ops_port}{path}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;

    for path in ["/health", "/ready", "/metrics"] {
        let api = http.get(service.url(path)).send().await?.status();
        anyhow::ensure!(api == 404, "{path} on the main port answered {api}: the ops routes belong to the ops port");
    }
    let health = http.get(ops("/health")).send().await?;
    anyhow::ensure!(health.status() == 200, "/health answered {}", health.status());
    let body: serde_json::Value = health.json().await?;
    anyhow::ensure!(body["status"] == "ok", "/health body {body}");

    eventually(Duration::from_secs(30), || async {
        let ready = http.get(ops("/ready")).send().await?;
        let status = ready.status();
        let body = ready.text().await?;
        anyhow::ensure!(status == 200, "/ready answered {status}: {body}");
        Ok(())
    })
    .await?;

    let metrics = http.get(ops("/metrics")).send().await?;
    anyhow::ensure!(metrics.status() == 200, "/metrics answered {}", metrics.status());
    let text = metrics.text().await?;
    anyhow::ensure!(text.contains("analytics_service_build_info"), "/metrics lacks build info:\n{text}");
    anyhow::ensure!(
        text.contains("analytics_service_http_request_duration_seconds_bucket"),
        "/metrics lacks the HTTP request durations:\n{text}"
    );
    promtool_check_metrics(&service_name(binary), &text)?;

    // No idle pooled connection: a fresh one for each request shows that the
    // listener still accepts during the drain.
    let fresh = reqwest::Client::builder().timeout(Duration::from_secs(5)).pool_max_idle_per_host(0).build()?;
    service.signal("TERM")?;
    let signalled = Instant::now();
    eventually(LIFECYCLE_DRAIN_DELAY, || async {
        let ready = fresh.get(ops("/ready")).send().await?;
        let status = ready.status();
        let body: serde_json::Value = ready.json().await?;
        anyhow::ensure!(status == 503, "/ready answered {status} after SIGTERM: {body}");
        anyhow::ensure!(body["status"] == "shutting_down", "/ready body after SIGTERM: {body}");
        Ok(())
    })
    .await?;
    let answer = fresh.get(service.url(api_path.unwrap_or("/"))).send().await;
    anyhow::ensure!(
        signalled.elapsed() < LIFECYCLE_DRAIN_DELAY,
        "the checks took longer than the drain delay; nothing is shown about the drain"
    );
    let answer = answer.map_err(|e| anyhow::anyhow!("the main port stopped serving during the drain: {e}"))?;
    if let Some(path) = api_path {
        anyhow::ensure!(answer.status() == 200, "GET {path} during the drain answered {}", answer.status());
    }
    let status = service.wait_exit(LIFECYCLE_DRAIN_DELAY + Duration::from_secs(5))?;
    let took = signalled.elapsed();
    anyhow::ensure!(status.success(), "exit status after SIGTERM: {status}");
    anyhow::ensure!(took >= LIFECYCLE_DRAIN_DELAY, "exited {took:?} after SIGTERM, before the drain delay ended");
    Ok(())
}

/// [`assert_config_refused`] for the `clickhouse.ca_file` checks every
/// service with a `clickhouse` section runs at start: a CA file that cannot
/// be read stops `binary` naming the key and the file.
pub fn assert_unreadable_clickhouse_ca_file_refused(binary: &str) -> anyhow::Result<()> {
    let stderr = assert_config_refused(
        binary,
        "[clickhouse]\nurl = \"https://clickhouse.example.com:8443\"\nca_file = \"/nonexistent/clickhouse-ca.pem\"\n",
        "clickhouse.ca_file",
    )?;
    anyhow::ensure!(stderr.contains("/nonexistent/clickhouse-ca.pem"), "{stderr}");
    Ok(())
}

/// …and a CA file for a plain `http://` endpoint stops it too.
pub fn assert_clickhouse_ca_file_for_http_refused(binary: &str) -> anyhow::Result<()> {
    assert_config_refused(
        binary,
        "[clickhouse]\nurl = \"http://clickhouse:8123\"\nca_file = \"/nonexistent/clickhouse-ca.pem\"\n",
        "clickhouse.ca_file is set (/nonexistent/clickhouse-ca.pem) but the endpoint http://clickhouse:8123 is not https://",
    )
    .map(drop)
}

/// Starts `binary --config FILE` with a TOML file holding `contents` and
/// asserts that it exits non-zero within 10 s (before binding or connecting
/// to anything) with `expected` on stderr; returns stderr.
///
/// For the acceptance "a misspelt key makes the service exit non-zero naming
/// the key": every service has a test that calls this.
pub fn assert_config_refused(binary: &str, contents: &str, expected: &str) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(unique_name("config-refused"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("service.toml");
    std::fs::write(&path, contents)?;
    let mut command = Command::new(binary);
    // The file alone configures the binary: the seed's environment names
    // (`CLICKHOUSE_URL`, `REDIS_URL`, … set by `cargo xtask test` for the
    // stack) would override what the test wrote.
    for (name, _) in crate::config::WELL_KNOWN_ENV {
        command.env_remove(name);
    }
    let mut child = command
        .arg("--config")
        .arg(&path)
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {binary}: {e}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            anyhow::bail!("{binary} still running 10 s after start with {}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_dir_all(&dir);
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr)?;
    }
    anyhow::ensure!(!status.success(), "{binary} exited with {status} although its config was wrong:\n{stderr}");
    anyhow::ensure!(stderr.contains(expected), "{binary}'s stderr does not name {expected:?}:\n{stderr}");
    Ok(stderr)
}

/// Runs `queries` on chDB (a current ClickHouse, in-process) after every
/// migration, through `schemas/check_chdb.py --queries-json`; the error holds
/// the script's output, naming the failing query. The local stack's server is
/// ClickHouse 18.16, so SQL tests run their statements here too.
pub fn run_on_chdb(queries: &[String]) -> Result<(), String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let file = std::env::temp_dir().join(format!("chdb-queries-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, serde_json::to_string(queries).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let output = std::process::Command::new("python3")
        .arg(root.join("schemas/check_chdb.py"))
        .arg("--queries-json")
        .arg(&file)
        .output();
    std::fs::remove_file(&file).ok();
    let output = output.map_err(|e| format!("running python3 schemas/check_chdb.py: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "chDB rejected a query:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Runs the cluster form of every migration (and of the runner's
/// bookkeeping table) for `database` on cluster `analytics`, then `queries`
/// (statements a service sends to a cluster's server), on chDB through
/// `schemas/check_chdb.py --cluster-json`: each parsed as written, executed
/// without `ON CLUSTER` on a cluster of one server (chDB itself), replicated
/// tables created as written, then unreplicated. Ok holds the script's
/// output; the error names the failing statement.
pub fn run_cluster_form_on_chdb(database: &str, queries: &[String]) -> Result<String, String> {
    use crate::migrate::{self, cluster::Target};
    let target = Target { cluster: "analytics", database };
    let mut statements = target.statements(migrate::CLICKHOUSE_SCHEMA_MIGRATIONS_DDL)?;
    for migration in migrate::clickhouse_migrations() {
        for statement in migrate::split_statements(migration.sql) {
            statements.extend(target.statements(&statement).map_err(|e| format!("{}: {e}", migration.name))?);
        }
    }
    statements.extend_from_slice(queries);
    let spec = serde_json::json!({ "cluster": target.cluster, "database": database, "statements": statements });
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let file = std::env::temp_dir().join(format!("cluster-form-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, spec.to_string()).map_err(|e| e.to_string())?;
    let child = Command::new("python3")
        .arg(root.join("schemas/check_chdb.py"))
        .arg("--cluster-json")
        .arg(&file)
        .current_dir(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let outcome = child.map_err(|e| format!("running python3 schemas/check_chdb.py: {e}")).and_then(|mut child| {
        let started = Instant::now();
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if started.elapsed() > Duration::from_secs(120) {
                child.kill().ok();
                return Err("schemas/check_chdb.py --cluster-json did not finish within 120 s".to_string());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.wait_with_output().map_err(|e| e.to_string())
    });
    std::fs::remove_file(&file).ok();
    let output = outcome?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() && stdout.contains(&format!("ok  {} cluster statements", statements.len())) {
        Ok(stdout)
    } else {
        Err(format!(
            "schemas/check_chdb.py --cluster-json failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Runs `promtool` (Debian's `prometheus` package, installed by `.ci/run`
/// and `cargo xtask up`) with `args` and `stdin`; a missing promtool is an
/// error saying how to install it, never a skipped check.
pub fn promtool(args: &[&str], stdin: &str) -> anyhow::Result<std::process::Output> {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run `promtool` ({e}): install Debian's `prometheus` package \
                 (`apt-get install prometheus`; .ci/run and `cargo xtask up` do)"
            )
        })?;
    let mut input = child.stdin.take().ok_or_else(|| anyhow::anyhow!("no stdin for promtool"))?;
    input.write_all(stdin.as_bytes())?;
    drop(input);
    Ok(child.wait_with_output()?)
}

/// What `promtool check metrics` reports on `exposition` (one line per
/// finding: missing HELP text, counter suffixes, units, ...), plus every
/// histogram exported as a summary (no buckets configured for it in
/// `service_kit::ops`). `Err` when promtool cannot run or fails otherwise.
pub fn promtool_metric_findings(exposition: &str) -> anyhow::Result<Vec<String>> {
    let output = promtool(&["check", "metrics"], exposition)?;
    let mut findings: Vec<String> = [&output.stdout, &output.stderr]
        .iter()
        .flat_map(|bytes| String::from_utf8_lossy(bytes).lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| !line.trim().is_empty())
        .collect();
    // Exit status 3 means lint findings (listed); anything else but 0 is a failure of its own.
    anyhow::ensure!(
        output.status.success() || output.status.code() == Some(3),
        "promtool check metrics failed ({}): {}",
        output.status,
        findings.join("\n")
    );
    if !output.status.success() && findings.is_empty() {
        findings.push(format!("promtool check metrics exited with {} and no finding", output.status));
    }
    findings.extend(
        exposition
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|line| line.strip_suffix(" summary"))
            .map(|name| {
                format!(
                    "{name} a histogram without buckets (name its unit as a suffix, or add it to ops::BUCKETS_BY_NAME)"
                )
            }),
    );
    Ok(findings)
}

/// `promtool check metrics` on `exposition` (a `/metrics` page of
/// `service`): `Ok` only when promtool reports nothing; the error names the
/// service and every finding ([`promtool_metric_findings`]).
pub fn promtool_check_metrics(service: &str, exposition: &str) -> anyhow::Result<()> {
    let findings = promtool_metric_findings(exposition)?;
    anyhow::ensure!(
        findings.is_empty(),
        "promtool check metrics on {service}'s /metrics: {} finding(s):\n  {}\n--- the page ---\n{exposition}",
        findings.len(),
        findings.join("\n  ")
    );
    Ok(())
}

/// The current value of a counter or gauge in this process's Prometheus
/// recorder (0 when it was never set).
pub fn metric_value(name: &str) -> f64 {
    let text = crate::ops::metrics_handle().expect("prometheus recorder").render();
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.trim().parse().unwrap_or(0.0))
}

/// The schemathesis settings and hooks of the API contract test
/// (`tests/contract/` at the workspace root).
fn contract_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/contract")
}

/// Runs `schemathesis` (`st run … --checks all`, PyPI) against the OpenAPI
/// document at `document_url`, with the contract's settings and hooks; `Ok`
/// only when it found no failure. `CONTRACT_SEED` picks the seed (default
/// fixed, so a run is reproducible); `CONTRACT_MAX_EXAMPLES` the examples
/// per operation.
/// `headers` (`("Authorization", "Bearer …")`) go with every request.
pub fn schemathesis(document_url: &str, headers: &[(&str, &str)]) -> anyhow::Result<()> {
    let dir = contract_dir();
    let seed = env_or("CONTRACT_SEED", "20261205");
    let max_examples = env_or("CONTRACT_MAX_EXAMPLES", "100");
    let output = Command::new("st")
        .arg("--no-color")
        .arg("--config-file")
        .arg(dir.join("schemathesis.toml"))
        .args(["run", document_url, "--checks", "all", "--seed", &seed, "--max-examples", &max_examples])
        // Test data holds no secret: show failing requests whole (ids such as
        // `session_id` would otherwise print as "[Filtered]").
        .args(["--output-sanitize", "false"])
        .args(headers.iter().flat_map(|(name, value)| ["--header".to_owned(), format!("{name}: {value}")]))
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", &dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            anyhow::anyhow!("cannot run `st` ({e}): install schemathesis (`pip install schemathesis`, as .ci/run does)")
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let tail = lines[lines.len().saturating_sub(200)..].join("\n");
    anyhow::bail!(
        "schemathesis found failures against {document_url} ({}, seed {seed}):\n{tail}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_listening_address_in_json_logs() {
        let line = r#"{"timestamp":"x","level":"INFO","message":"listening","service":"s","addr":"127.0.0.1:4321"}"#;
        assert_eq!(listening_addr(line), Some("127.0.0.1:4321".parse().unwrap()));
        assert_eq!(listening_addr(r#"{"message":"starting"}"#), None);
        assert_eq!(listening_addr("not json"), None);
    }
}
