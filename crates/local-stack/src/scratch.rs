//! Servers of a test's own, which it may stop and start again (an outage
//! drill) without disturbing the shared local stack other tests use.
//!
//! Each lives in a fresh directory under `<temp>/local-stack-scratch/` (data,
//! generated configuration, its log) and listens on loopback ports the system
//! handed out as free. [`Scratch::stop`] ends the process and keeps the data;
//! [`Scratch::start_again`] runs it again on the same directory and ports, so
//! databases, topics and committed offsets survive. Dropping the value kills
//! the process and removes the directory (kept when the test is panicking, so
//! its log can be read). Errors carry the end of the server's log.
//!
//! ```no_run
//! # async fn drill() -> anyhow::Result<()> {
//! let mut clickhouse = local_stack::ScratchClickHouse::start().await?;
//! println!("{}", clickhouse.url());
//! clickhouse.stop().await?;
//! clickhouse.start_again().await?;
//! # Ok(())
//! # }
//! ```

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{
    cluster::{self, Cluster, Places, Ports},
    probe::{self, NotAnswering},
    process::{self, Detach},
    servers::{
        self, NativeServer,
        clickhouse::ClickHouse,
        kafka::Kafka,
        postgres::{Configured, Postgres},
        zookeeper::ZooKeeper,
    },
    tls::TestPki,
};

/// A scratch ClickHouse (`start`, `url`, and [`Scratch`]'s stop and restart).
pub type ScratchClickHouse = Scratch<ClickHouse>;
/// A scratch single-node Kafka in KRaft mode (`start`, `bootstrap`, and [`Scratch`]'s stop and restart).
pub type ScratchKafka = Scratch<Kafka>;
/// A scratch PostgreSQL cluster with the `analytics` role and database
/// (`start`, `start_tls`, `url`, and [`Scratch`]'s stop and restart).
pub type ScratchPostgres = Scratch<Configured>;

/// How long a ClickHouse start may take until it answers `SELECT 1`.
const CLICKHOUSE_DEADLINE: Duration = Duration::from_secs(30);
/// A JVM start plus the KRaft election, on a busy machine.
const KAFKA_DEADLINE: Duration = Duration::from_secs(60);
/// `initdb`, the first start and creating the role and database.
const POSTGRES_DEADLINE: Duration = Duration::from_secs(60);
/// A JVM start of a small server.
const ZOOKEEPER_DEADLINE: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// A scratch broker's JVM: a small heap, quick start.
const KAFKA_JAVA_OPTIONS: [&str; 3] = ["-Xmx256m", "-Xms64m", "-XX:TieredStopAtLevel=1"];
/// The file in a scratch directory holding the server's pid.
const PID_FILE: &str = "server.pid";

/// A server of the test's own; see the module documentation.
pub struct Scratch<S: NativeServer> {
    server: S,
    dir: PathBuf,
    deadline: Duration,
    pid: Option<u32>,
    /// Further listeners by name (a TLS Kafka's `SSL`, `SASL_SSL`) and their `host:port`.
    listeners: Vec<(String, String)>,
}

impl Scratch<ClickHouse> {
    /// Starts a ClickHouse on free ports in a new directory and waits (up to
    /// 30 s) until it answers `SELECT 1`.
    pub async fn start() -> Result<Self> {
        let dir = new_dir("clickhouse")?;
        let [http_port, tcp_port] = free_ports()?;
        let server =
            ClickHouse { log: dir.join("clickhouse.log"), dir: dir.clone(), http_port, tcp_port, replica: None };
        Self::launch_new(server, dir, CLICKHOUSE_DEADLINE, Vec::new()).await
    }

    /// The HTTP endpoint, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.server.url()
    }
}

impl Scratch<Kafka> {
    /// Starts a single KRaft node (broker and controller, small heap) on free
    /// ports in a new directory, fetching the broker jars first if they are
    /// not cached yet, and waits (up to 60 s) until it answers a metadata request.
    pub async fn start() -> Result<Self> {
        Self::start_with(None).await
    }

    /// [`Self::start`] with two more listeners that speak TLS with `pki`'s
    /// server certificate (PEM keystore): `SSL` and `SASL_SSL`, the latter
    /// with SASL/PLAIN and the accounts `users` (name, password). The
    /// plaintext listener stays for the readiness probe; a client that
    /// bootstraps from a TLS listener is told only that listener's address.
    pub async fn start_tls(pki: &TestPki, users: &[(&str, &str)]) -> Result<Self> {
        Self::start_with(Some((pki, users))).await
    }

    /// `127.0.0.1:<port>` of the `SSL` listener of [`Self::start_tls`].
    pub fn ssl_bootstrap(&self) -> Option<String> {
        self.listener("SSL")
    }

    /// `127.0.0.1:<port>` of the `SASL_SSL` listener of [`Self::start_tls`].
    pub fn sasl_ssl_bootstrap(&self) -> Option<String> {
        self.listener("SASL_SSL")
    }

    async fn start_with(tls: Option<(&TestPki, &[(&str, &str)])>) -> Result<Self> {
        let dir = new_dir("kafka")?;
        let jars = kafka_jars(&dir).await?;
        let [broker_port, controller_port, ssl_port, sasl_ssl_port] = free_ports()?;
        // One partition for the internal topics: a fresh node is ready sooner.
        let mut extra_properties: Vec<String> =
            ["offsets.topic.num.partitions=1", "transaction.state.log.num.partitions=1"].map(String::from).to_vec();
        let mut listeners = Vec::new();
        if let Some((pki, users)) = tls {
            let ssl = format!("127.0.0.1:{ssl_port}");
            let sasl_ssl = format!("127.0.0.1:{sasl_ssl_port}");
            let accounts: String =
                users.iter().map(|(name, password)| format!(" user_{name}=\"{password}\"")).collect();
            // Later lines of a properties file win: these replace the generated listeners.
            extra_properties.extend([
                format!(
                    "listeners=PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port},\
                     SSL://{ssl},SASL_SSL://{sasl_ssl}"
                ),
                format!("advertised.listeners=PLAINTEXT://127.0.0.1:{broker_port},SSL://{ssl},SASL_SSL://{sasl_ssl}"),
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL"
                    .into(),
                "ssl.keystore.type=PEM".into(),
                format!("ssl.keystore.location={}", pki.server_keystore.display()),
                "ssl.truststore.type=PEM".into(),
                format!("ssl.truststore.location={}", pki.ca_cert.display()),
                "ssl.client.auth=none".into(),
                "sasl.enabled.mechanisms=PLAIN".into(),
                format!(
                    "listener.name.sasl_ssl.plain.sasl.jaas.config=\
                     org.apache.kafka.common.security.plain.PlainLoginModule required{accounts};"
                ),
            ]);
            listeners = vec![("SSL".to_owned(), ssl), ("SASL_SSL".to_owned(), sasl_ssl)];
        }
        let server = Kafka {
            jars,
            log: dir.join("kafka.log"),
            dir: dir.clone(),
            broker_port,
            controller_port,
            java_options: KAFKA_JAVA_OPTIONS.map(String::from).to_vec(),
            extra_properties,
            quorum: None,
        };
        Self::launch_new(server, dir, KAFKA_DEADLINE, listeners).await
    }

    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.server.bootstrap()
    }
}

impl Scratch<Configured> {
    /// Starts a PostgreSQL cluster (`initdb`, then the server) on a free
    /// port in a new directory with `settings` (`-c name=value`), creates the
    /// `analytics` role and database, and waits (up to 60 s) until it answers
    /// a query as `analytics`.
    pub async fn start(settings: &[(&str, &str)]) -> Result<Self> {
        let postgres = Self::postgres()?;
        let settings = settings.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        let dir = postgres.dir.clone();
        Self::launch_new(Configured { postgres, settings, files: Vec::new() }, dir, POSTGRES_DEADLINE, Vec::new()).await
    }

    /// [`Self::start`] with `ssl=on` and `pki`'s server certificate and key.
    /// Clients may still connect without TLS (`host` lines in `pg_hba.conf`).
    pub async fn start_tls(pki: &TestPki) -> Result<Self> {
        let postgres = Self::postgres()?;
        let dir = postgres.dir.clone();
        let server = Configured::tls(postgres, &pki.server_cert, &pki.server_key);
        Self::launch_new(server, dir, POSTGRES_DEADLINE, Vec::new()).await
    }

    fn postgres() -> Result<Postgres> {
        let dir = new_dir("postgres")?;
        let [port] = free_ports()?;
        let tag = servers::postgres::short_hash(&dir);
        Ok(Postgres { log: dir.join("postgres.log"), dir, port, tag })
    }

    /// `postgres://analytics:analytics@127.0.0.1:<port>/analytics`
    pub fn url(&self) -> String {
        self.server.postgres.url()
    }
}

impl<S: NativeServer + Clone + Send + Sync + 'static> Scratch<S> {
    async fn launch_new(server: S, dir: PathBuf, deadline: Duration, listeners: Vec<(String, String)>) -> Result<Self> {
        let mut scratch = Self { server, dir, deadline, pid: None, listeners };
        // On failure the value is dropped here: the process is killed and the directory removed.
        scratch.launch().await?;
        Ok(scratch)
    }

    /// Ends the server with SIGTERM and waits for it to exit (SIGKILL after
    /// 30 s); its data stays for [`Self::start_again`]. Does nothing when stopped.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(pid) = self.pid.take() else {
            return Ok(());
        };
        let log = self.server.log().to_path_buf();
        process::log_marker(&log, &format!("stopping pid {pid}"));
        let killed = tokio::task::spawn_blocking(move || process::terminate(pid, libc::SIGTERM, STOP_GRACE))
            .await
            .context("the stopping task failed")??;
        if killed {
            process::log_marker(&log, &format!("pid {pid} ignored SIGTERM for {STOP_GRACE:?} and was killed"));
        }
        let _ = std::fs::remove_file(self.dir.join(PID_FILE));
        Ok(())
    }

    /// Starts the stopped server again on the same directory and ports and
    /// waits until it answers.
    pub async fn start_again(&mut self) -> Result<()> {
        if let Some(pid) = self.pid.filter(|pid| process::is_running(*pid)) {
            bail!("scratch {} is still running (pid {pid}); stop it first", S::KIND.name);
        }
        self.launch().await
    }

    /// `host:port` of the further listener `name` (see [`Scratch::<Kafka>::start_tls`]).
    pub fn listener(&self, name: &str) -> Option<String> {
        self.listeners.iter().find(|(n, _)| n == name).map(|(_, addr)| addr.clone())
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid.filter(|pid| process::is_running(*pid))
    }

    /// The directory holding its data, configuration and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log file.
    pub fn log(&self) -> &Path {
        self.server.log()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        process::tail(self.server.log(), lines)
    }

    /// Every port it listens on.
    pub fn ports(&self) -> Vec<u16> {
        self.server.ports()
    }

    async fn launch(&mut self) -> Result<()> {
        self.spawn().await?;
        self.wait().await
    }

    /// A server started in `dir` but not waited for (see [`Self::wait`]).
    async fn spawned(server: S, dir: PathBuf, deadline: Duration) -> Result<Self> {
        let mut scratch = Self { server, dir, deadline, pid: None, listeners: Vec::new() };
        scratch.spawn().await?;
        Ok(scratch)
    }

    /// Prepares the server's state and starts its process.
    async fn spawn(&mut self) -> Result<()> {
        let name = S::KIND.name;
        let server = self.server.clone();
        let spawned = tokio::task::spawn_blocking(move || servers::spawn(&server, Detach::No))
            .await
            .context("the start task failed")?;
        let pid = spawned.with_context(|| format!("starting scratch {name} in {}", self.dir.display()))?;
        self.pid = Some(pid);
        process::write_pid(&self.dir.join(PID_FILE), pid)?;
        Ok(())
    }

    /// Waits until the started server answers its real request, failing
    /// early when it exits and late at its deadline.
    async fn wait(&mut self) -> Result<()> {
        let name = S::KIND.name;
        let Some(pid) = self.pid else { bail!("scratch {name} was not started") };
        let server = &self.server;
        if let Err(error) = server.prepare(pid, self.deadline).await {
            return Err(error.context(format!("preparing scratch {name} (pid {pid})")));
        }
        match probe::until_answers(Some(pid), self.deadline, || server.probe(), |_| {}).await {
            Ok(_) => Ok(()),
            Err(NotAnswering::Exited) => {
                self.pid = None;
                bail!(
                    "scratch {name} (pid {pid}) exited before answering {}\n{}",
                    S::KIND.request,
                    process::indent_tail(server.log(), 30)
                )
            }
            Err(NotAnswering::TimedOut(last_error)) => bail!(
                "scratch {name} (pid {pid}) did not answer {} within {:?} (last error: {last_error})\n{}",
                S::KIND.request,
                self.deadline,
                process::indent_tail(server.log(), 30)
            ),
        }
    }
}

impl<S: NativeServer> Drop for Scratch<S> {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            kill_now(pid);
        }
        if std::thread::panicking() {
            eprintln!("scratch {}: kept {} for its log", S::KIND.name, self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A scratch cluster ([`crate::cluster`]): ZooKeeper, three Kafka nodes
/// and four ClickHouse servers (2 shards × 2 replicas) on free ports in one
/// new directory, each member a [`Scratch`] server the test may stop and
/// start again (a drill). Dropping it kills every member and removes the
/// directory (kept when the test is panicking).
pub struct ScratchCluster {
    dir: PathBuf,
    ports: Ports,
    zookeeper: Option<Scratch<ZooKeeper>>,
    kafka: Vec<Scratch<Kafka>>,
    clickhouse: Vec<Scratch<ClickHouse>>,
}

/// A scratch cluster's members live in `<dir>/<member>/`, their logs inside.
struct ScratchPlaces<'a>(&'a Path);

impl Places for ScratchPlaces<'_> {
    fn dir(&self, member: &str) -> PathBuf {
        self.0.join(member)
    }

    fn log(&self, member: &str) -> PathBuf {
        self.0.join(member).join(format!("{member}.log"))
    }
}

impl ScratchCluster {
    /// Starts ZooKeeper, then the three brokers and four ClickHouse servers
    /// together (the brokers elect a controller once two of them run), and
    /// waits until every member answers: a broker once the cluster has a
    /// controller, a ClickHouse server `SELECT 1`.
    pub async fn start() -> Result<Self> {
        let dir = new_dir("cluster")?;
        let jars = kafka_jars(&dir).await?;
        let ports = Ports::from_list(free_ports()?);
        let members = Cluster::new(ports, &ScratchPlaces(&dir), &jars, &KAFKA_JAVA_OPTIONS);
        // On failure the value is dropped: what started is killed, the directory removed.
        let mut cluster = Self { dir, ports, zookeeper: None, kafka: Vec::new(), clickhouse: Vec::new() };
        let member_dir = |name: &str| cluster.dir.join(name);
        let mut zookeeper =
            Scratch::spawned(members.zookeeper, member_dir(cluster::ZOOKEEPER_NAME), ZOOKEEPER_DEADLINE).await?;
        zookeeper.wait().await?;
        cluster.zookeeper = Some(zookeeper);
        for (server, name) in members.kafka.into_iter().zip(cluster::KAFKA_NAMES) {
            let scratch = Scratch::spawned(server, member_dir(name), KAFKA_DEADLINE).await?;
            cluster.kafka.push(scratch);
        }
        for (server, name) in members.clickhouse.into_iter().zip(cluster::CLICKHOUSE_NAMES) {
            let scratch = Scratch::spawned(server, member_dir(name), CLICKHOUSE_DEADLINE).await?;
            cluster.clickhouse.push(scratch);
        }
        // All run already: waiting one after the other takes as long as the slowest.
        for member in &mut cluster.kafka {
            member.wait().await?;
        }
        for member in &mut cluster.clickhouse {
            member.wait().await?;
        }
        Ok(cluster)
    }

    /// Every port of the cluster.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// `127.0.0.1:<port>` of every broker, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.ports.bootstrap()
    }

    /// The HTTP endpoint of ClickHouse server `node`: 0 and 1 are shard 1's
    /// replicas, 2 and 3 shard 2's.
    pub fn clickhouse_url(&self, node: usize) -> String {
        self.ports.clickhouse_url(node)
    }

    /// ZooKeeper, to stop and start again.
    pub fn zookeeper(&mut self) -> &mut Scratch<ZooKeeper> {
        self.zookeeper.as_mut().expect("a started cluster has its ZooKeeper")
    }

    /// Kafka node `index + 1`, to stop and start again.
    pub fn kafka(&mut self, index: usize) -> &mut Scratch<Kafka> {
        &mut self.kafka[index]
    }

    /// ClickHouse server `node`, to stop and start again.
    pub fn clickhouse(&mut self, node: usize) -> &mut Scratch<ClickHouse> {
        &mut self.clickhouse[node]
    }

    /// The cluster's directory (a subdirectory per member, its log inside).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        // Clients first, ZooKeeper last; each member kills its process.
        self.clickhouse.clear();
        self.kafka.clear();
        self.zookeeper = None;
        if std::thread::panicking() {
            eprintln!("scratch cluster: kept {} for its logs", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The Kafka broker jars, fetched with Maven the first time (its output in `<dir>/kafka-download.log`).
async fn kafka_jars(dir: &Path) -> Result<PathBuf> {
    let download_log = dir.join("kafka-download.log");
    tokio::task::spawn_blocking(move || -> Result<PathBuf> {
        let jars = servers::kafka::Jars::standard()?;
        Ok(jars.ensure(&download_log)?.to_path_buf())
    })
    .await
    .context("the jar fetching task failed")?
    .context("fetching the Kafka jars")
}

fn kill_now(pid: u32) {
    if let Ok(raw) = i32::try_from(pid) {
        if process::is_running(pid) {
            // SAFETY: kill(2) on the pid of a server this process started and has not reaped.
            unsafe { libc::kill(raw, libc::SIGKILL) };
            process::wait_exit(pid, Duration::from_secs(5));
        }
    }
}

/// `<temp>/local-stack-scratch`
fn scratch_root() -> PathBuf {
    std::env::temp_dir().join("local-stack-scratch")
}

/// A new directory `<root>/<kind>-<our pid>-<n>`, after clearing what dead
/// test processes left behind.
fn new_dir(kind: &str) -> Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let root = scratch_root();
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    sweep(&root);
    let dir = root.join(format!("{kind}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    // A leftover of an earlier process that had our pid.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Removes the directories of test processes that no longer run, killing a
/// server still running from one (a test killed before its `Drop`).
fn sweep(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let owner = entry.file_name().to_str().and_then(|name| name.split('-').nth(1)?.parse::<u32>().ok());
        if owner.is_none_or(process::is_running) {
            continue;
        }
        // A scratch server's pid file is in its directory; a cluster's members' one level down.
        let members = std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|member| member.path());
        for pid_file in std::iter::once(dir.join(PID_FILE)).chain(members.map(|member| member.join(PID_FILE))) {
            if let Some(pid) = process::read_pid(&pid_file) {
                // Only a process whose command line names this directory is ours to kill.
                let ours = process::cmdline(pid).is_some_and(|cmd| cmd.contains(&*dir.to_string_lossy()));
                if ours {
                    kill_now(pid);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `N` distinct loopback ports that were free a moment ago (bound to port 0
/// together, then released for the server to take).
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("binding 127.0.0.1:0 to find free ports")?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let ports: [u16; 3] = free_ports().unwrap();
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2], "{ports:?}");
        for port in ports {
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }

    #[test]
    fn sweep_removes_directories_of_dead_owners_only() {
        let root = std::env::temp_dir().join(format!("local-stack-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        // A child that has exited: its pid is certainly not running.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let gone = root.join(format!("kafka-{dead}-0"));
        let kept = root.join(format!("kafka-{}-0", std::process::id()));
        for dir in [&gone, &kept] {
            std::fs::create_dir_all(dir).unwrap();
        }
        sweep(&root);
        assert!(!gone.exists() && kept.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
