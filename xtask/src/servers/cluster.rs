//! Cluster mode (`cargo xtask up --cluster`): ZooKeeper, three Kafka nodes
//! and ClickHouse as 2 shards × 2 replicas ([`local_stack::cluster`]), plus a
//! PostgreSQL and a Redis of its own, each on ports apart from the
//! single-node stack's so both may run. State, logs and pid files are under
//! `.stack/cluster/`, laid out as `.stack/` is for the single-node stack.

use std::{future::Future, time::Duration};

use anyhow::{Result, bail};
use local_stack::{
    ClickHouse, Kafka, NativeServer, Postgres, Redis, ZooKeeper,
    cluster::{self, Cluster, Places, Ports},
    probe::{self, NotAnswering},
    process::Detach,
    servers::postgres,
};

use super::{Managed, deadline_of};
use crate::{install, layout::Layout};

/// The cluster's own PostgreSQL and Redis.
pub const POSTGRES_PORT: u16 = 15432;
pub const REDIS_PORT: u16 = 16379;
pub const DATABASE_URL: &str = "postgres://analytics:analytics@127.0.0.1:15432/analytics";
pub const REDIS_URL: &str = "redis://127.0.0.1:16379";
/// Each broker's JVM: three of them share two cores.
const KAFKA_JAVA_OPTIONS: [&str; 2] = ["-Xmx384m", "-Xms128m"];

/// One process of the cluster stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    ZooKeeper,
    /// Kafka node `index + 1`.
    Kafka(usize),
    /// ClickHouse server `index`: shard `index / 2 + 1`, replica `index % 2 + 1`.
    ClickHouse(usize),
    Postgres,
    Redis,
}

impl Member {
    /// Start order: ZooKeeper (ClickHouse's replicated tables need it), the
    /// brokers, the ClickHouse servers, PostgreSQL, Redis.
    pub const ALL: [Member; 10] = [
        Member::ZooKeeper,
        Member::Kafka(0),
        Member::Kafka(1),
        Member::Kafka(2),
        Member::ClickHouse(0),
        Member::ClickHouse(1),
        Member::ClickHouse(2),
        Member::ClickHouse(3),
        Member::Postgres,
        Member::Redis,
    ];

    /// `.stack/cluster`'s layout: state in `.stack/cluster/<member>/`, logs
    /// in `.stack/cluster/logs/`, pid files in `.stack/cluster/pids/`.
    pub fn layout(layout: &Layout) -> Layout {
        Layout { root: layout.root.clone(), stack: layout.stack.join("cluster") }
    }

    fn kind(self) -> local_stack::Kind {
        match self {
            Member::ZooKeeper => ZooKeeper::KIND,
            Member::Kafka(_) => Kafka::KIND,
            Member::ClickHouse(_) => ClickHouse::KIND,
            Member::Postgres => Postgres::KIND,
            Member::Redis => Redis::KIND,
        }
    }

    /// `host:port` or URL clients use, for messages.
    pub fn address(self) -> String {
        let ports = Ports::STANDARD;
        match self {
            Member::ZooKeeper => format!("127.0.0.1:{}", ports.zookeeper),
            Member::Kafka(index) => format!("127.0.0.1:{}", ports.kafka_broker[index]),
            Member::ClickHouse(node) => {
                format!("{} (native {})", ports.clickhouse_url(node), ports.clickhouse_tcp[node])
            }
            Member::Postgres => DATABASE_URL.to_string(),
            Member::Redis => REDIS_URL.to_string(),
        }
    }

    /// [`Managed::probe`], and for a ClickHouse server what it knows of
    /// the cluster ([`cluster::check_clickhouse`]): `status` shows it.
    pub async fn describe(self) -> Result<String> {
        let detail = self.probe().await?;
        match self {
            Member::ClickHouse(node) => {
                let cluster = cluster::check_clickhouse(&Ports::STANDARD.clickhouse_url(node)).await?;
                Ok(format!("{detail}; {cluster}"))
            }
            _ => Ok(detail),
        }
    }
}

/// Members live where `.stack/cluster`'s layout says.
struct StackPlaces<'a>(&'a Layout);

impl Places for StackPlaces<'_> {
    fn dir(&self, member: &str) -> std::path::PathBuf {
        self.0.state_dir(member)
    }

    fn log(&self, member: &str) -> std::path::PathBuf {
        self.0.log(member)
    }
}

/// The members' descriptions on the standard ports (`layout` is the cluster's).
fn members(layout: &Layout) -> Result<Cluster> {
    let jars = install::kafka_jars(layout)?;
    Ok(Cluster::new(Ports::STANDARD, &StackPlaces(layout), &jars, &KAFKA_JAVA_OPTIONS))
}

fn postgres_server(layout: &Layout) -> Postgres {
    Postgres {
        dir: layout.state_dir("postgres"),
        log: layout.log("postgres"),
        port: POSTGRES_PORT,
        tag: postgres::short_hash(&layout.stack),
    }
}

impl Managed for Member {
    fn name(self) -> &'static str {
        match self {
            Member::ZooKeeper => cluster::ZOOKEEPER_NAME,
            Member::Kafka(index) => cluster::KAFKA_NAMES[index],
            Member::ClickHouse(node) => cluster::CLICKHOUSE_NAMES[node],
            Member::Postgres => Postgres::KIND.name,
            Member::Redis => Redis::KIND.name,
        }
    }

    fn ports(self) -> Vec<u16> {
        let ports = Ports::STANDARD;
        match self {
            Member::ZooKeeper => vec![ports.zookeeper],
            Member::Kafka(index) => vec![ports.kafka_broker[index], ports.kafka_controller[index]],
            Member::ClickHouse(node) => {
                vec![ports.clickhouse_http[node], ports.clickhouse_tcp[node], ports.clickhouse_interserver[node]]
            }
            Member::Postgres => vec![POSTGRES_PORT],
            Member::Redis => vec![REDIS_PORT],
        }
    }

    fn marker(self) -> &'static str {
        self.kind().marker
    }

    fn request(self) -> &'static str {
        self.kind().request
    }

    fn deadline(self) -> Duration {
        deadline_of(self.kind())
    }

    fn probe(self) -> impl Future<Output = Result<String>> + Send {
        let port = self.port();
        let ports = Ports::STANDARD;
        async move {
            anyhow::ensure!(probe::port_in_use(port).await, "nothing listens on 127.0.0.1:{port}");
            match self {
                Member::ZooKeeper => probe::zookeeper(&format!("127.0.0.1:{port}")).await,
                Member::Kafka(_) => probe::kafka(&format!("127.0.0.1:{port}")).await,
                Member::ClickHouse(node) => probe::clickhouse(&ports.clickhouse_url(node)).await,
                Member::Postgres => probe::postgres(DATABASE_URL).await,
                Member::Redis => probe::redis(&format!("127.0.0.1:{port}")).await,
            }
        }
    }

    fn spawn(self, layout: &Layout) -> Result<u32> {
        match self {
            Member::ZooKeeper => local_stack::spawn(&members(layout)?.zookeeper, Detach::Yes),
            Member::Kafka(index) => local_stack::spawn(&members(layout)?.kafka[index], Detach::Yes),
            Member::ClickHouse(node) => local_stack::spawn(&members(layout)?.clickhouse[node], Detach::Yes),
            Member::Postgres => local_stack::spawn(&postgres_server(layout), Detach::Yes),
            Member::Redis => local_stack::spawn(
                &Redis { dir: layout.state_dir("redis"), log: layout.log("redis"), port: REDIS_PORT },
                Detach::Yes,
            ),
        }
    }

    fn postgres(self, layout: &Layout) -> Option<Postgres> {
        (self == Member::Postgres).then(|| postgres_server(layout))
    }
}

/// Environment pointing a process at the cluster (also written to
/// `.stack/cluster/cluster.env`). ClickHouse is reached through shard 1's
/// first replica; every server answers for the whole cluster through
/// `Distributed` tables.
pub fn env() -> Vec<(String, String)> {
    let ports = Ports::STANDARD;
    [
        ("KAFKA_BROKERS", ports.bootstrap()),
        ("CLICKHOUSE_URL", ports.clickhouse_url(0)),
        ("CLICKHOUSE_DATABASE", crate::stack::CLICKHOUSE_DATABASE.to_string()),
        ("DATABASE_URL", DATABASE_URL.to_string()),
        ("REDIS_URL", REDIS_URL.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

/// Waits until every ClickHouse server knows the cluster and reaches
/// ZooKeeper (a fresh server opens its ZooKeeper session a moment after it
/// answers `SELECT 1`); returns each server's summary.
pub async fn wait_clickhouse_cluster() -> Result<Vec<String>> {
    let mut summaries = Vec::new();
    for node in 0..cluster::NODES {
        let url = Ports::STANDARD.clickhouse_url(node);
        let deadline = Duration::from_secs(60);
        match probe::until_answers(None, deadline, || cluster::check_clickhouse(&url), |_| {}).await {
            Ok(summary) => summaries.push(summary),
            Err(not_answering) => {
                let error = match not_answering {
                    NotAnswering::TimedOut(error) => error,
                    NotAnswering::Exited => "it exited".to_string(),
                };
                bail!(
                    "{} ({url}) does not serve the cluster within {deadline:?}: {error}",
                    Member::ClickHouse(node).name()
                );
            }
        }
    }
    Ok(summaries)
}
