//! What `bench realtime` measures: by default its own ingest-gateway,
//! stream-processor and realtime-hub (built in release), on topics, a
//! consumer group and a ClickHouse database of their own, next to the local
//! stack's servers; with `--stack`, the running local stack's services. And
//! the background traffic: `xtask load` (release build) as a child process.
//!
//! Either way the services check keys against the local stack's PostgreSQL:
//! the benchmark sends the local stack's ingest key and read token
//! (`.stack/credentials.env`, made sure of as `cargo xtask up` does for its
//! own services; read from the environment or the file with `--stack`).

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use events_model::Topics;
use local_stack::{
    probe::{self, NotAnswering},
    process::{self, Detach},
};
use serde_json::Value;
use service_kit::{ClickHouseConfig, KafkaConfig};

use super::report::Background;
use crate::{
    keys,
    layout::Layout,
    servers::Server,
    services::SERVICES,
    stack,
    ui::{self, Step},
};

/// The three services on the realtime path, in start order.
const REALTIME_SERVICES: [&str; 3] = ["stream-processor", "ingest-gateway", "realtime-hub"];

/// How the services of the benchmark are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    Release,
    Debug,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Debug => "debug",
        }
    }
}

/// `cargo build [--release] --bins -p …`: the services (unless `stack`) and,
/// always in release, the load generator (`xtask`).
pub async fn build(layout: &Layout, profile: Profile, stack: bool) -> Result<()> {
    let mut builds: Vec<(Profile, Vec<&str>)> = Vec::new();
    let mut release = vec!["xtask"];
    if !stack {
        match profile {
            Profile::Release => release.extend(REALTIME_SERVICES),
            Profile::Debug => builds.push((Profile::Debug, REALTIME_SERVICES.to_vec())),
        }
    }
    builds.push((Profile::Release, release));
    for (profile, packages) in builds {
        cargo_build(layout, profile, &packages).await?;
    }
    Ok(())
}

/// `cargo build --bins [--release] -p <packages>…`, with a progress line.
pub(crate) async fn cargo_build(layout: &Layout, profile: Profile, packages: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build", "--bins"];
    if profile == Profile::Release {
        args.push("--release");
    }
    for package in packages {
        args.extend(["-p", package]);
    }
    let step = Step::start(format!("building {} ({})", packages.join(", "), profile.as_str()));
    let status = tokio::process::Command::new(&cargo)
        .args(&args)
        .current_dir(&layout.root)
        .status()
        .await
        .with_context(|| format!("running {cargo} {}", args.join(" ")))?;
    if !status.success() {
        step.fail(format!("cargo exited with {status}"));
        bail!("`cargo {}` failed ({status}); its errors are printed above", args.join(" "));
    }
    step.ok("");
    Ok(())
}

pub(crate) fn binary(layout: &Layout, profile: Profile, name: &str) -> PathBuf {
    layout.target_dir().join(profile.as_str()).join(name)
}

/// A process this benchmark started: stopped (SIGTERM, then SIGKILL after
/// 10 s) when dropped.
pub(crate) struct Spawned {
    pub name: String,
    pub pid: u32,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Err(err) = process::terminate(self.pid, libc::SIGTERM, Duration::from_secs(10)) {
            ui::line(format!("✗ stopping {} (pid {}): {err:#}", self.name, self.pid));
        }
    }
}

/// The services under measurement.
pub struct Target {
    pub gateway: String,
    pub hub_ws: String,
    /// Sent to the gateway as `X-API-Key`.
    pub ingest_key: String,
    /// Sent to the hub as `Authorization: Bearer`.
    pub read_token: String,
    /// (service, `/metrics` URL).
    pub metrics: Vec<(&'static str, String)>,
    /// (process, pid): whose CPU time is reported.
    pub pids: Vec<(String, u32)>,
    /// What the report says about them.
    pub description: String,
    own: Option<Own>,
}

/// Resources of the benchmark's own services, removed at the end.
struct Own {
    children: Vec<Spawned>,
    kafka: KafkaConfig,
    clickhouse: ClickHouseConfig,
    keep: bool,
}

impl Target {
    /// The running local stack's services (`cargo xtask up`).
    pub async fn stack(layout: &Layout) -> Result<Self> {
        let mut pids = Vec::new();
        let mut service = |name: &str| {
            let service = *SERVICES.iter().find(|s| s.name == name).expect("a known service");
            if let Some(pid) = service.live_pid(layout) {
                pids.push((name.to_string(), pid));
            }
            service
        };
        let services = [service("ingest-gateway"), service("stream-processor"), service("realtime-hub")];
        for service in services {
            let (name, port) = (service.name, service.ops_port);
            probe::ready(port).await.with_context(|| {
                format!("{name} is not ready on port {port}; start the stack with `cargo xtask up` or drop --stack")
            })?;
        }
        let [gateway, processor, hub] = services;
        pids.extend(server_pids(layout));
        let credentials = keys::Credentials::load(layout)?;
        Ok(Self {
            gateway: format!("http://127.0.0.1:{}", gateway.port),
            hub_ws: format!("ws://127.0.0.1:{}/ws", hub.port),
            ingest_key: credentials.ingest()?.to_owned(),
            read_token: credentials.read()?.to_owned(),
            metrics: metrics_urls(gateway.ops_port, processor.ops_port, hub.ops_port),
            pids,
            description: "the local stack's".to_string(),
            own: None,
        })
    }

    /// Starts the three services of the realtime path from `target/<profile>/`
    /// on free ports, isolated from the local stack's data: topics
    /// `bench-<run>.…`, consumer group `bench-<run>-processor`, ClickHouse
    /// database `bench_<run>` (migrated here). `settings` are extra
    /// environment variables for all three.
    pub async fn start_own(
        layout: &Layout,
        run: &str,
        profile: Profile,
        settings: &[(String, String)],
        keep: bool,
    ) -> Result<Self> {
        for server in [Server::Kafka, Server::ClickHouse, Server::Postgres] {
            server.probe().await.with_context(|| {
                format!("{} does not answer; start the servers with `cargo xtask up --no-services`", server.name())
            })?;
        }
        let keys = keys::ensure_stack(layout).await?;
        let kafka = KafkaConfig {
            brokers: stack::KAFKA_ADDR.to_string(),
            topic_prefix: format!("bench-{run}."),
            consumer_group: format!("bench-{run}-processor"),
            client_id: "xtask-bench".to_string(),
            ..KafkaConfig::default()
        };
        let clickhouse = ClickHouseConfig {
            url: stack::CLICKHOUSE_URL.to_string(),
            database: format!("bench_{run}"),
            ..ClickHouseConfig::default()
        };
        let step = Step::start(format!("ClickHouse database {} (migrations)", clickhouse.database));
        match service_kit::migrate::apply_clickhouse(&clickhouse).await {
            Ok(_) => step.ok(""),
            Err(err) => {
                step.fail("failed");
                return Err(anyhow::Error::new(err).context("migrating the benchmark's ClickHouse database"));
            }
        }
        let mut own = Own { children: Vec::new(), kafka, clickhouse, keep };

        let mut env = stack::service_env(layout);
        env.retain(|(key, _)| key != "LOG_LEVEL");
        env.extend([
            ("KAFKA_TOPIC_PREFIX".to_string(), own.kafka.topic_prefix.clone()),
            ("KAFKA_CONSUMER_GROUP".to_string(), own.kafka.consumer_group.clone()),
            ("CLICKHOUSE_DATABASE".to_string(), own.clickhouse.database.clone()),
            ("LOG_LEVEL".to_string(), std::env::var("LOG_LEVEL").unwrap_or_else(|_| "warn".to_string())),
        ]);
        env.extend(keys::unlimited_env());
        env.extend(settings.iter().cloned());

        let mut ports = Vec::new();
        let mut pids = Vec::new();
        // The processor first: it creates the topics the hub reads.
        for name in REALTIME_SERVICES {
            match start_service(layout, name, profile, &env, &format!("bench-{name}"), &format!("bench-{run}")).await {
                Ok((child, port)) => {
                    pids.push((name.to_string(), child.pid));
                    own.children.push(child);
                    ports.push(port);
                }
                Err(err) => {
                    own.cleanup().await;
                    return Err(err);
                }
            }
        }
        pids.extend(server_pids(layout));
        let (processor, gateway, hub) = (ports[0], ports[1], ports[2]);
        Ok(Self {
            gateway: format!("http://127.0.0.1:{gateway}"),
            hub_ws: format!("ws://127.0.0.1:{hub}/ws"),
            ingest_key: keys.ingest,
            read_token: keys.read,
            metrics: metrics_urls(gateway, processor, hub),
            pids,
            description: "own".to_string(),
            own: Some(own),
        })
    }

    /// Stops what was started and removes its topics and database (unless kept).
    pub async fn stop(mut self) {
        if let Some(own) = self.own.take() {
            own.cleanup().await;
        }
    }
}

impl Own {
    async fn cleanup(mut self) {
        // Gateway and hub before the processor (reverse start order).
        while let Some(child) = self.children.pop() {
            drop(child);
        }
        if self.keep {
            ui::line(format!(
                "• kept topics {}* and ClickHouse database {}",
                self.kafka.topic_prefix, self.clickhouse.database
            ));
            return;
        }
        let topics = Topics::new(&self.kafka.topic_prefix);
        let names = [&topics.raw_events, &topics.dead_letters, &topics.realtime_partials];
        if let Err(err) = service_kit::deps::kafka::delete_topics(&self.kafka, &names.map(String::as_str)).await {
            ui::line(format!("✗ deleting the benchmark's topics {}*: {err:#}", self.kafka.topic_prefix));
        }
        let sql = format!("DROP DATABASE IF EXISTS {}", self.clickhouse.database);
        if let Err(err) = self.clickhouse.server_client().query(&sql).execute().await {
            ui::line(format!("✗ dropping the ClickHouse database {}: {err:#}", self.clickhouse.database));
        }
    }
}

/// The write path a benchmark feeds: a release ingest-gateway and
/// stream-processor started with `env`, logging to
/// `.stack/logs/<log>-ingest-gateway.log` and `…-stream-processor.log`.
pub(super) struct WritePathServices {
    pub gateway: Spawned,
    pub processor: Spawned,
    /// The gateway's `POST /api/events/batch`.
    pub batch_url: String,
}

/// Starts [`WritePathServices`]: the gateway first, since it creates the raw
/// topic the processor waits for.
pub(super) async fn start_write_path(
    layout: &Layout,
    env: &[(String, String)],
    log: &str,
    what: &str,
) -> Result<WritePathServices> {
    let gateway_log = format!("{log}-ingest-gateway");
    let (gateway, port) = start_service(layout, "ingest-gateway", Profile::Release, env, &gateway_log, what).await?;
    let processor_log = format!("{log}-stream-processor");
    let (processor, _) = start_service(layout, "stream-processor", Profile::Release, env, &processor_log, what).await?;
    Ok(WritePathServices { gateway, processor, batch_url: format!("http://127.0.0.1:{port}/api/events/batch") })
}

/// Starts one service from `target/<profile>/` on a free port with `env`
/// (logging to `.stack/logs/<log>.log`) and waits for its `GET /ready`;
/// `what` names the run in the progress line. Stopped when the returned
/// handle is dropped.
pub(super) async fn start_service(
    layout: &Layout,
    name: &str,
    profile: Profile,
    env: &[(String, String)],
    log: &str,
    what: &str,
) -> Result<(Spawned, u16)> {
    let port = free_port()?;
    let child = start_service_on(layout, name, profile, env, log, what, port).await?;
    Ok((child, port))
}

/// [`start_service`] on a given port (a service started again where its
/// clients expect it).
pub(crate) async fn start_service_on(
    layout: &Layout,
    name: &str,
    profile: Profile,
    env: &[(String, String)],
    log: &str,
    what: &str,
    port: u16,
) -> Result<Spawned> {
    let step = Step::start(format!("{name} ({}, {what})", profile.as_str()));
    let exe = binary(layout, profile, name);
    let log = layout.log(log);
    let mut cmd = Command::new(&exe);
    // The ops endpoints on the same port (OPS_PORT = PORT): one free port each.
    cmd.current_dir(&layout.root)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PORT", port.to_string())
        .env("OPS_PORT", port.to_string());
    // In xtask's process group: Ctrl-C stops them too.
    let pid = match process::spawn_logged(&mut cmd, &log, Detach::No) {
        Ok(pid) => pid,
        Err(err) => {
            step.fail("not started");
            return Err(err.context(format!("starting {}", exe.display())));
        }
    };
    let child = Spawned { name: name.to_string(), pid };
    step.set_message(format!("pid {pid}, port {port}; waiting for GET /ready"));
    match probe::until_answers(Some(pid), Duration::from_secs(60), || probe::ready(port), |_| {}).await {
        Ok(_) => {
            step.ok(format!("ready on port {port} (log {})", layout.show(&log)));
            Ok(child)
        }
        Err(not) => {
            step.fail("not ready");
            drop(child);
            let why = match not {
                NotAnswering::Exited => "exited".to_string(),
                NotAnswering::TimedOut(last) => format!("not ready within 60 s ({last})"),
            };
            bail!("{name} {why}; read {}\n{}", layout.show(&log), process::indent_tail(&log, 30));
        }
    }
}

fn metrics_urls(gateway: u16, processor: u16, hub: u16) -> Vec<(&'static str, String)> {
    vec![
        ("ingest-gateway", format!("http://127.0.0.1:{gateway}/metrics")),
        ("stream-processor", format!("http://127.0.0.1:{processor}/metrics")),
        ("realtime-hub", format!("http://127.0.0.1:{hub}/metrics")),
    ]
}

/// Kafka's and ClickHouse's pids when xtask started them.
pub(super) fn server_pids(layout: &Layout) -> Vec<(String, u32)> {
    [Server::Kafka, Server::ClickHouse]
        .into_iter()
        .filter_map(|server| Some((server.name().to_string(), server.live_pid(layout)?)))
        .collect()
}

/// A port nothing listens on now (the service binds it right after).
pub(crate) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("looking for a free port")?;
    Ok(listener.local_addr()?.port())
}

// ----------------------------------------------------------- the traffic ---

/// `xtask load --duration forever` (release build) sending background
/// traffic until stopped; its JSON summary is read at the end.
pub struct Generator {
    child: tokio::process::Child,
    pub pid: u32,
    target_rate: f64,
}

impl Generator {
    pub fn start(layout: &Layout, gateway: &str, ingest_key: &str, rate: f64, seed: u64) -> Result<Self> {
        let exe = binary(layout, Profile::Release, "xtask");
        let log = layout.log("bench-load");
        process::log_marker(&log, &format!("bench: {rate} events/s to {gateway}"));
        let stderr = process::open_log(&log)?;
        let child = tokio::process::Command::new(&exe)
            .args(["load", "--rate", &rate.to_string(), "--duration", "forever", "--gateway", gateway])
            .args(["--seed", &seed.to_string(), "--quiet", "--json-summary"])
            .current_dir(&layout.root)
            .env("NO_COLOR", "1")
            .env(keys::INGEST_VAR, ingest_key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} load", exe.display()))?;
        let pid = child.id().context("the load generator exited at once")?;
        Ok(Self { child, pid, target_rate: rate })
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM (the generator delivers what is in flight), then its summary.
    pub async fn stop(mut self) -> Result<Background> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let mut stdout = self.child.stdout.take().context("the generator's stdout")?;
        let read = async {
            use tokio::io::AsyncReadExt as _;
            let mut text = String::new();
            stdout.read_to_string(&mut text).await?;
            let status = self.child.wait().await?;
            Ok::<_, std::io::Error>((text, status))
        };
        let (text, status) = tokio::time::timeout(Duration::from_secs(40), read)
            .await
            .context("the load generator did not stop within 40 s of SIGTERM")?
            .context("reading the load generator's summary")?;
        let summary: Value = serde_json::from_str(text.trim()).with_context(|| {
            format!("the load generator ({status}) printed no JSON summary; read .stack/logs/bench-load.log")
        })?;
        Ok(background(&summary, self.target_rate))
    }
}

/// The generator's figures from its JSON summary (`loadgen::Summary`).
pub fn background(summary: &Value, target_rate: f64) -> Background {
    let count = |key: &str| summary[key].as_u64().unwrap_or(0);
    Background {
        target_rate,
        measured_rate: 0.0,
        generator_rate: summary["achieved_rate"].as_f64().unwrap_or(0.0),
        rejected: count("rejected"),
        lost: count("failed") + count("unsent"),
        retries: count("retries"),
        post_p99_ms: summary["latency_p99_ms"].as_f64(),
        max_lag_ms: summary["max_lag_ms"].as_i64().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_summary_is_read() {
        let summary: Value = serde_json::from_str(
            r#"{"seed":1,"salt":2,"target_rate":5000.0,"duration_seconds":71.2,"generated":356000,
                "sent":356000,"accepted":355990,"rejected":10,"failed":3,"unsent":2,"retries":4,
                "requests":7000,"achieved_rate":4999.9,"latency_p50_ms":20.5,"latency_p99_ms":150.25,
                "latency_max_ms":300.0,"max_lag_ms":120}"#,
        )
        .unwrap();
        let b = background(&summary, 5000.0);
        assert_eq!((b.rejected, b.lost, b.retries, b.max_lag_ms), (10, 5, 4, 120));
        assert_eq!(b.post_p99_ms, Some(150.25));
        assert_eq!(b.generator_rate, 4999.9);
        assert_eq!(b.target_rate, 5000.0);
    }
}
