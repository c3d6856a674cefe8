//! The four servers of the native stack: Kafka, ClickHouse, PostgreSQL, Redis;
//! and the members of cluster mode ([`cluster`]).
//!
//! Each runs as a background process with its state in `.stack/<name>/`, its
//! output in `.stack/logs/<name>.log` and its pid in `.stack/pids/<name>.pid`,
//! on the standard ports (the cluster's under `.stack/cluster/`). How each is
//! configured, started and probed is `local_stack`'s; this module decides
//! what to start and reports progress.

pub mod cluster;

use std::{future::Future, time::Duration};

use anyhow::{Result, bail};
use local_stack::{
    ClickHouse, Kafka, Kind, NativeServer, Postgres, Redis,
    probe::{self, NotAnswering},
    process::{self, Detach},
    servers::{clickhouse, kafka, postgres, redis},
};
use tokio::task::JoinSet;

use crate::{install, layout::Layout, stack, ui::Step};

/// A server process xtask starts, waits for and stops: one of the
/// single-node stack's [`Server`]s or a member of the cluster ([`cluster::Member`]).
pub trait Managed: Copy + Send + Sync + 'static {
    /// Its name: state directory, log and pid file.
    fn name(self) -> &'static str;
    /// Every port it listens on, the one clients use first.
    fn ports(self) -> Vec<u16>;
    /// Text that its process's command line contains.
    fn marker(self) -> &'static str;
    /// The request that proves it answers, for messages.
    fn request(self) -> &'static str;
    /// How long it may take to answer after its start.
    fn deadline(self) -> Duration;
    /// Sends the real request to its address.
    fn probe(self) -> impl Future<Output = Result<String>> + Send;
    /// Prepares state and configuration and starts the process; returns its pid.
    fn spawn(self, layout: &Layout) -> Result<u32>;
    /// The PostgreSQL server it is, if it is one: bootstrapped after its
    /// start (role and database), stopped with `pg_ctl`.
    fn postgres(self, layout: &Layout) -> Option<Postgres>;

    /// The port clients use.
    fn port(self) -> u16 {
        self.ports()[0]
    }

    /// Its pid if xtask started it and it still runs.
    fn live_pid(self, layout: &Layout) -> Option<u32> {
        process::live_pid(&layout.pid_file(self.name()), self.marker())
    }
}

/// How long each kind of server may take to answer after its start.
fn deadline_of(kind: Kind) -> Duration {
    match kind.name {
        "kafka" => Duration::from_secs(120),
        "redis" => Duration::from_secs(30),
        _ => Duration::from_secs(60),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Kafka,
    ClickHouse,
    Postgres,
    Redis,
}

impl Server {
    pub const ALL: [Server; 4] = [Server::Kafka, Server::ClickHouse, Server::Postgres, Server::Redis];

    /// Its name, process marker and proof of life, as `local_stack` defines them.
    fn kind(self) -> Kind {
        match self {
            Server::Kafka => Kafka::KIND,
            Server::ClickHouse => ClickHouse::KIND,
            Server::Postgres => Postgres::KIND,
            Server::Redis => Redis::KIND,
        }
    }

    pub fn name(self) -> &'static str {
        self.kind().name
    }

    /// The port clients use (shown by `status`).
    pub fn port(self) -> u16 {
        self.ports()[0]
    }

    /// Every port the server listens on.
    pub fn ports(self) -> &'static [u16] {
        match self {
            Server::Kafka => &[kafka::BROKER_PORT, kafka::CONTROLLER_PORT],
            Server::ClickHouse => &[clickhouse::HTTP_PORT, clickhouse::TCP_PORT],
            Server::Postgres => &[postgres::PORT],
            Server::Redis => &[redis::PORT],
        }
    }

    /// Text that the server process's command line contains.
    pub fn marker(self) -> &'static str {
        self.kind().marker
    }

    /// The request that proves it answers, for messages.
    pub fn request(self) -> &'static str {
        self.kind().request
    }

    /// Sends the real request to the stack's address.
    pub async fn probe(self) -> Result<String> {
        if !probe::port_in_use(self.port()).await {
            bail!("nothing listens on 127.0.0.1:{}", self.port());
        }
        match self {
            Server::Kafka => probe::kafka(stack::KAFKA_ADDR).await,
            Server::ClickHouse => probe::clickhouse(stack::CLICKHOUSE_URL).await,
            Server::Postgres => probe::postgres(stack::DATABASE_URL).await,
            Server::Redis => probe::redis(stack::REDIS_ADDR).await,
        }
    }

    /// The pid of this server if xtask started it and it still runs.
    pub fn live_pid(self, layout: &Layout) -> Option<u32> {
        process::live_pid(&layout.pid_file(self.name()), self.marker())
    }
}

impl Managed for Server {
    fn name(self) -> &'static str {
        Server::name(self)
    }

    fn ports(self) -> Vec<u16> {
        Server::ports(self).to_vec()
    }

    fn marker(self) -> &'static str {
        Server::marker(self)
    }

    fn request(self) -> &'static str {
        Server::request(self)
    }

    fn deadline(self) -> Duration {
        deadline_of(self.kind())
    }

    fn probe(self) -> impl Future<Output = Result<String>> + Send {
        Server::probe(self)
    }

    fn spawn(self, layout: &Layout) -> Result<u32> {
        match self {
            Server::Kafka => local_stack::spawn(&kafka_server(layout)?, Detach::Yes),
            Server::ClickHouse => local_stack::spawn(&clickhouse_server(layout), Detach::Yes),
            Server::Postgres => local_stack::spawn(&postgres_server(layout), Detach::Yes),
            Server::Redis => local_stack::spawn(&redis_server(layout), Detach::Yes),
        }
    }

    fn postgres(self, layout: &Layout) -> Option<Postgres> {
        (self == Server::Postgres).then(|| postgres_server(layout))
    }
}

/// The stack's ClickHouse: `.stack/clickhouse`, ports 8123 and 9000.
fn clickhouse_server(layout: &Layout) -> ClickHouse {
    ClickHouse {
        dir: layout.state_dir("clickhouse"),
        log: layout.log("clickhouse"),
        http_port: clickhouse::HTTP_PORT,
        tcp_port: clickhouse::TCP_PORT,
        replica: None,
    }
}

/// The stack's Kafka: `.stack/kafka`, ports 9092 and 9093, a 512 MB heap.
fn kafka_server(layout: &Layout) -> Result<Kafka> {
    Ok(Kafka {
        jars: install::kafka_jars(layout)?,
        dir: layout.state_dir("kafka"),
        log: layout.log("kafka"),
        broker_port: kafka::BROKER_PORT,
        controller_port: kafka::CONTROLLER_PORT,
        java_options: vec!["-Xmx512m".into(), "-Xms256m".into()],
        extra_properties: Vec::new(),
        quorum: None,
    })
}

/// The stack's PostgreSQL: `.stack/postgres` (or a directory it links to), port 5432.
fn postgres_server(layout: &Layout) -> Postgres {
    Postgres {
        dir: layout.state_dir("postgres"),
        log: layout.log("postgres"),
        port: postgres::PORT,
        tag: postgres::short_hash(&layout.root),
    }
}

/// The stack's Redis: `.stack/redis`, port 6379.
fn redis_server(layout: &Layout) -> Redis {
    Redis { dir: layout.state_dir("redis"), log: layout.log("redis"), port: redis::PORT }
}

/// Starts every server of `servers` that does not answer yet and waits until
/// all answer. Servers this call started are pushed to `started` as soon as
/// they are spawned (so a caller can stop them even when waiting fails).
pub async fn start_missing<S: Managed>(layout: &Layout, servers: &[S], started: &mut Vec<S>) -> Result<()> {
    let mut waiting = Vec::new();
    for &server in servers {
        let step = Step::start(server.name());
        if let Some(pid) = server.live_pid(layout) {
            if let Ok(detail) = server.probe().await {
                step.skip(format!("already running (pid {pid}, started by xtask), answering ({detail})"));
                continue;
            }
            step.set_message(format!("started earlier by xtask (pid {pid}); waiting for it to answer"));
            waiting.push((server, Some(pid), step));
            continue;
        }
        let _ = std::fs::remove_file(layout.pid_file(server.name()));
        step.set_message("checking whether it already runs");
        if let Ok(detail) = server.probe().await {
            step.skip(format!("already answering on port {} ({detail}); not started by xtask", server.port()));
            continue;
        }
        for port in server.ports() {
            if probe::port_in_use(port).await {
                step.fail(format!("port {port} is taken"));
                bail!(
                    "{name} cannot start: port {port} is in use by a process that does not answer {request} \
                     (see `ss -ltnp 'sport = :{port}'`); stop that process, then rerun",
                    name = server.name(),
                    request = server.request(),
                );
            }
        }
        step.set_message("preparing and starting");
        match server.spawn(layout).and_then(|pid| {
            process::write_pid(&layout.pid_file(server.name()), pid)?;
            Ok(pid)
        }) {
            Ok(pid) => {
                started.push(server);
                step.set_message(format!("pid {pid}; waiting for it to answer {}", server.request()));
                waiting.push((server, Some(pid), step));
            }
            Err(err) => {
                step.fail("could not start");
                return Err(err.context(format!(
                    "starting {}; read {}",
                    server.name(),
                    layout.show(&layout.log(server.name()))
                )));
            }
        }
    }

    let mut tasks = JoinSet::new();
    for (server, pid, step) in waiting {
        let layout = layout.clone();
        tasks.spawn(async move {
            let outcome = wait_ready(&layout, server, pid, &step).await;
            match &outcome {
                Ok(detail) => step.ok(format!("answering on port {} ({detail})", server.port())),
                Err(_) => step.fail("did not become ready"),
            }
            outcome.map(|_| ())
        });
    }
    crate::ui::join_all(tasks).await
}

/// Polls the server until it answers its real request, failing early when its
/// process exits and late at its deadline, naming the log in both cases.
async fn wait_ready<S: Managed>(layout: &Layout, server: S, pid: Option<u32>, step: &Step) -> Result<String> {
    if let (Some(postgres), Some(pid)) = (server.postgres(layout), pid) {
        postgres.bootstrap(pid, server.deadline(), |message| step.set_message(message)).await?;
    }
    let log = layout.log(server.name());
    let waiting = |last_error: &str| step.set_message(format!("waiting for {} ({last_error})", server.request()));
    match probe::until_answers(pid, server.deadline(), || server.probe(), waiting).await {
        Ok(detail) => Ok(detail),
        Err(NotAnswering::Exited) => bail!(
            "{} (pid {}) exited before answering {}; read {}\n{}",
            server.name(),
            pid.unwrap_or_default(),
            server.request(),
            layout.show(&log),
            process::indent_tail(&log, 30)
        ),
        Err(NotAnswering::TimedOut(last_error)) => bail!(
            "{} did not answer {} within {}s (last error: {last_error}); read {}\n{}",
            server.name(),
            server.request(),
            server.deadline().as_secs(),
            layout.show(&log),
            process::indent_tail(&log, 30)
        ),
    }
}

/// Stops a server xtask started (by its pid file). Returns the pid stopped, if any.
pub fn stop<S: Managed>(layout: &Layout, server: S) -> Result<Option<u32>> {
    let pid_file = layout.pid_file(server.name());
    let Some(pid) = server.live_pid(layout) else {
        let _ = std::fs::remove_file(&pid_file);
        return Ok(None);
    };
    process::log_marker(&layout.log(server.name()), &format!("stopping pid {pid}"));
    match server.postgres(layout) {
        Some(postgres) => {
            // A fast shutdown by pg_ctl as the cluster owner; SIGINT (the same) by pid if that fails.
            if let Err(err) = postgres.pg_ctl_stop() {
                crate::ui::line(format!("  pg_ctl stop failed ({err:#}); signalling pid {pid}"));
                process::terminate(pid, libc::SIGINT, Duration::from_secs(10))?;
            }
            // Reaps it when it is our child (`cargo xtask test`).
            process::wait_exit(pid, Duration::from_secs(5));
        }
        None => {
            process::terminate(pid, libc::SIGTERM, Duration::from_secs(10))?;
        }
    }
    let _ = std::fs::remove_file(&pid_file);
    Ok(Some(pid))
}
