//! Cluster mode on one machine: a three-node KRaft Kafka whose topics have
//! three replicas (`min.insync.replicas` 2), and ClickHouse as 2 shards × 2
//! replicas (four servers) coordinated by one ZooKeeper — the engines' own
//! replication, each member a native process on its own ports.
//!
//! [`Cluster`] describes the members; [`crate::servers::spawn`] starts each
//! one like a single server. `cargo xtask up --cluster` uses
//! [`Ports::STANDARD`] and `.stack/cluster/`; [`crate::ScratchCluster`]
//! free ports and a temporary directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use crate::{
    probe,
    servers::{
        clickhouse::{ClickHouse, Replica},
        kafka::{Kafka, Quorum},
        zookeeper::ZooKeeper,
    },
};

/// The ClickHouse cluster's name in `remote_servers`: `ON CLUSTER analytics`,
/// `Distributed(analytics, …)`, and the `{cluster}` macro.
pub const NAME: &str = "analytics";
pub const SHARDS: usize = 2;
pub const REPLICAS: usize = 2;
/// ClickHouse servers: shard by shard, replica by replica.
pub const NODES: usize = SHARDS * REPLICAS;
/// Kafka nodes, each broker and controller.
pub const BROKERS: usize = 3;
/// Replicas of every topic, and how many must have an event before
/// Kafka acknowledges it to an `acks=all` producer.
pub const REPLICATION_FACTOR: i32 = 3;
pub const MIN_INSYNC_REPLICAS: i32 = 2;

/// Member names (directories, logs, pid files).
pub const ZOOKEEPER_NAME: &str = "zookeeper";
pub const KAFKA_NAMES: [&str; BROKERS] = ["kafka-1", "kafka-2", "kafka-3"];
pub const CLICKHOUSE_NAMES: [&str; NODES] =
    ["clickhouse-s1r1", "clickhouse-s1r2", "clickhouse-s2r1", "clickhouse-s2r2"];

/// Broker settings that make every topic durable, the internal ones
/// included: topics created without an explicit replication factor (the
/// consumer offsets, a topic made by a tool) get three replicas and
/// `min.insync.replicas` 2 too.
pub const KAFKA_PROPERTIES: [&str; 7] = [
    "default.replication.factor=3",
    "min.insync.replicas=2",
    "offsets.topic.replication.factor=3",
    "transaction.state.log.replication.factor=3",
    "transaction.state.log.min.isr=2",
    "share.coordinator.state.topic.replication.factor=3",
    "share.coordinator.state.topic.min.isr=2",
];

/// Every port of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub zookeeper: u16,
    pub kafka_broker: [u16; BROKERS],
    pub kafka_controller: [u16; BROKERS],
    pub clickhouse_http: [u16; NODES],
    pub clickhouse_tcp: [u16; NODES],
    pub clickhouse_interserver: [u16; NODES],
}

impl Ports {
    /// `cargo xtask up --cluster`'s ports: apart from the single-node
    /// stack's (9092/9093, 8123/9000, 5432, 6379), so both may run.
    pub const STANDARD: Ports = Ports {
        zookeeper: 12181,
        kafka_broker: [19092, 19192, 19292],
        kafka_controller: [19093, 19193, 19293],
        clickhouse_http: [18123, 18124, 18125, 18126],
        clickhouse_tcp: [19000, 19001, 19002, 19003],
        clickhouse_interserver: [19010, 19011, 19012, 19013],
    };

    /// How many ports a cluster takes.
    pub const COUNT: usize = 1 + 2 * BROKERS + 3 * NODES;

    /// The ports in the order [`Ports::all`] lists them.
    pub fn from_list(ports: [u16; Self::COUNT]) -> Self {
        let take = |from: usize| -> [u16; NODES] { std::array::from_fn(|i| ports[from + i]) };
        let brokers = |from: usize| -> [u16; BROKERS] { std::array::from_fn(|i| ports[from + i]) };
        let nodes = 1 + 2 * BROKERS;
        Ports {
            zookeeper: ports[0],
            kafka_broker: brokers(1),
            kafka_controller: brokers(1 + BROKERS),
            clickhouse_http: take(nodes),
            clickhouse_tcp: take(nodes + NODES),
            clickhouse_interserver: take(nodes + 2 * NODES),
        }
    }

    pub fn all(&self) -> Vec<u16> {
        let mut all = vec![self.zookeeper];
        for group in [&self.kafka_broker[..], &self.kafka_controller, &self.clickhouse_http, &self.clickhouse_tcp] {
            all.extend_from_slice(group);
        }
        all.extend_from_slice(&self.clickhouse_interserver);
        all
    }

    /// `127.0.0.1:<port>` of every broker, comma-separated (`bootstrap.servers`).
    pub fn bootstrap(&self) -> String {
        self.kafka_broker.iter().map(|port| format!("127.0.0.1:{port}")).collect::<Vec<_>>().join(",")
    }

    /// The HTTP endpoint of ClickHouse server `node` (shard by shard).
    pub fn clickhouse_url(&self, node: usize) -> String {
        format!("http://127.0.0.1:{}", self.clickhouse_http[node])
    }
}

/// The shard and replica (counted from 1) of ClickHouse server `node`.
pub fn shard_and_replica(node: usize) -> (usize, usize) {
    (node / REPLICAS + 1, node % REPLICAS + 1)
}

/// Where the members keep their state and write their logs.
pub trait Places {
    /// A member's data and generated configuration.
    fn dir(&self, member: &str) -> PathBuf;
    /// A member's log.
    fn log(&self, member: &str) -> PathBuf;
}

/// The members of one cluster: what to start, where, on which ports.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub ports: Ports,
    pub zookeeper: ZooKeeper,
    /// Node 1, 2, 3.
    pub kafka: Vec<Kafka>,
    /// Shard 1 replica 1, shard 1 replica 2, shard 2 replica 1, shard 2 replica 2.
    pub clickhouse: Vec<ClickHouse>,
}

impl Cluster {
    /// The members on `ports`, kept where `places` says; `jars` are the
    /// Kafka broker jars and `kafka_java_options` each broker's JVM options
    /// (its heap). The brokers' shared cluster id is kept in the first
    /// broker's directory.
    pub fn new(ports: Ports, places: &impl Places, jars: &Path, kafka_java_options: &[&str]) -> Self {
        let zookeeper = ZooKeeper {
            dir: places.dir(ZOOKEEPER_NAME),
            log: places.log(ZOOKEEPER_NAME),
            port: ports.zookeeper,
            java_options: ["-Xmx128m", "-Xms32m"].map(String::from).to_vec(),
        };
        let kafka = KAFKA_NAMES
            .iter()
            .enumerate()
            .map(|(index, name)| Kafka {
                jars: jars.to_path_buf(),
                dir: places.dir(name),
                log: places.log(name),
                broker_port: ports.kafka_broker[index],
                controller_port: ports.kafka_controller[index],
                java_options: kafka_java_options.iter().map(|o| o.to_string()).collect(),
                extra_properties: KAFKA_PROPERTIES.map(String::from).to_vec(),
                quorum: Some(Quorum {
                    node_id: index + 1,
                    controller_ports: ports.kafka_controller.to_vec(),
                    cluster_id_dir: places.dir(KAFKA_NAMES[0]),
                }),
            })
            .collect();
        let shards: Vec<Vec<u16>> = ports.clickhouse_tcp.chunks(REPLICAS).map(<[u16]>::to_vec).collect();
        let clickhouse = CLICKHOUSE_NAMES
            .iter()
            .enumerate()
            .map(|(node, name)| {
                let (shard, replica) = shard_and_replica(node);
                ClickHouse {
                    dir: places.dir(name),
                    log: places.log(name),
                    http_port: ports.clickhouse_http[node],
                    tcp_port: ports.clickhouse_tcp[node],
                    replica: Some(Replica {
                        cluster: NAME.to_string(),
                        shards: shards.clone(),
                        shard,
                        replica,
                        interserver_port: ports.clickhouse_interserver[node],
                        zookeeper_port: ports.zookeeper,
                    }),
                }
            })
            .collect();
        Self { ports, zookeeper, kafka, clickhouse }
    }

    /// `127.0.0.1:<port>` of every broker, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.ports.bootstrap()
    }
}

/// Checks what one ClickHouse server of the cluster knows of it: the
/// cluster definition lists [`SHARDS`] × [`REPLICAS`] servers, its macros
/// name its replica, and its ZooKeeper session answers. Returns a summary
/// such as `s1r2 of 2 shards × 2 replicas, zookeeper answers`.
pub async fn check_clickhouse(url: &str) -> Result<String> {
    let clusters = probe::clickhouse_query(
        url,
        &format!(
            "SELECT count(), uniqExact(shard_num), max(replica_num) FROM system.clusters WHERE cluster = '{NAME}'"
        ),
    )
    .await?;
    let expected = format!("{NODES}\t{SHARDS}\t{REPLICAS}");
    ensure!(
        clusters == expected,
        "system.clusters for {NAME}: servers, shards, replicas per shard = {clusters:?}; expected {expected:?}"
    );
    let replica = probe::clickhouse_query(url, "SELECT substitution FROM system.macros WHERE macro = 'replica'")
        .await
        .context("reading the replica macro")?;
    ensure!(!replica.is_empty(), "the replica macro is not defined");
    probe::clickhouse_query(url, "SELECT count() FROM system.zookeeper WHERE path = '/'")
        .await
        .context("ClickHouse cannot read ZooKeeper")?;
    Ok(format!("{replica} of {SHARDS} shards × {REPLICAS} replicas, zookeeper answers"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servers::{clickhouse, kafka, postgres, redis};

    #[test]
    fn standard_ports_are_distinct_and_apart_from_the_single_node_stack() {
        let all = Ports::STANDARD.all();
        assert_eq!(all.len(), Ports::COUNT);
        let mut unique = all.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), all.len(), "{all:?}");
        let single = [
            kafka::BROKER_PORT,
            kafka::CONTROLLER_PORT,
            clickhouse::HTTP_PORT,
            clickhouse::TCP_PORT,
            postgres::PORT,
            redis::PORT,
        ];
        assert!(single.iter().all(|port| !all.contains(port)), "{all:?} meets {single:?}");
        assert_eq!(Ports::from_list(all.try_into().unwrap()), Ports::STANDARD);
    }

    #[test]
    fn servers_are_numbered_shard_by_shard() {
        let placed: Vec<(usize, usize)> = (0..NODES).map(shard_and_replica).collect();
        assert_eq!(placed, [(1, 1), (1, 2), (2, 1), (2, 2)]);
        for (node, name) in CLICKHOUSE_NAMES.iter().enumerate() {
            let (shard, replica) = shard_and_replica(node);
            assert_eq!(*name, format!("clickhouse-s{shard}r{replica}"));
        }
    }
}
