//! Cluster mode comes up (the members of `cargo xtask up --cluster`, as a
//! scratch cluster on free ports): every ClickHouse server knows the
//! cluster as 2 shards × 2 replicas with its own macros, a
//! ReplicatedMergeTree table created `ON CLUSTER` copies a row to the other
//! replica of its shard (and only there), a `Distributed` table reads both
//! shards, and a Kafka topic has three in-sync replicas with
//! `min.insync.replicas` 2 from the brokers' defaults.
#![cfg(test)]

use std::time::{Duration, Instant};

use local_stack::{
    ScratchCluster,
    cluster::{self, NODES},
    probe,
};
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication},
    client::DefaultClientContext,
};

/// Replication and ZooKeeper-coordinated DDL on a busy two-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

async fn query(url: &str, sql: &str) -> String {
    probe::clickhouse_query(url, sql).await.unwrap_or_else(|err| panic!("{url}: {sql}: {err:#}"))
}

/// Polls `sql` on `url` until it answers `expected`.
async fn until_answers(url: &str, sql: &str, expected: &str) {
    probe::clickhouse_until(url, sql, expected, DEADLINE).await.unwrap();
}

#[tokio::test]
async fn the_cluster_comes_up_replicates_and_shards() {
    let started = Instant::now();
    let cluster = ScratchCluster::start().await.unwrap();
    eprintln!("cluster answering after {:.1}s in {}", started.elapsed().as_secs_f64(), cluster.dir().display());

    // Every server: the same cluster definition, its own shard and replica.
    for node in 0..NODES {
        let url = cluster.clickhouse_url(node);
        let summary = cluster::check_clickhouse(&url).await.unwrap();
        let (shard, replica) = cluster::shard_and_replica(node);
        assert!(summary.starts_with(&format!("s{shard}r{replica} ")), "{url}: {summary}");
        assert_eq!(
            query(&url, "SELECT substitution FROM system.macros WHERE macro = 'shard'").await,
            shard.to_string(),
            "{url}"
        );
    }

    // ON CLUSTER DDL reaches all four servers through ZooKeeper.
    let first = cluster.clickhouse_url(0);
    query(
        &first,
        "CREATE TABLE default.replicated ON CLUSTER analytics (shard String, x UInt32) \
         ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/default/replicated', '{replica}') ORDER BY x",
    )
    .await;
    query(
        &first,
        "CREATE TABLE default.everywhere ON CLUSTER analytics AS default.replicated \
         ENGINE = Distributed(analytics, default, replicated, x)",
    )
    .await;
    for node in 0..NODES {
        until_answers(
            &cluster.clickhouse_url(node),
            "SELECT count() FROM system.tables WHERE database = 'default' AND name IN ('replicated', 'everywhere')",
            "2",
        )
        .await;
    }

    // A row written to one replica appears on the other replica of its shard, not on the other shard.
    query(&cluster.clickhouse_url(0), "INSERT INTO default.replicated VALUES ('s1', 1)").await;
    query(&cluster.clickhouse_url(3), "INSERT INTO default.replicated VALUES ('s2', 2)").await;
    until_answers(&cluster.clickhouse_url(1), "SELECT groupArray(shard) FROM default.replicated", "['s1']").await;
    until_answers(&cluster.clickhouse_url(2), "SELECT groupArray(shard) FROM default.replicated", "['s2']").await;
    assert_eq!(query(&cluster.clickhouse_url(0), "SELECT groupArray(shard) FROM default.replicated").await, "['s1']");

    // The Distributed table reads one replica of each shard.
    for node in 0..NODES {
        assert_eq!(
            query(&cluster.clickhouse_url(node), "SELECT arraySort(groupArray(shard)) FROM default.everywhere").await,
            "['s1','s2']",
            "node {node}"
        );
    }

    // Kafka: a topic created without a replication factor gets the brokers' defaults.
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", cluster.bootstrap()).create().unwrap();
    let topic = "cluster-check";
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let created = admin.create_topics(&[NewTopic::new(topic, 4, TopicReplication::Fixed(-1))], &options).await.unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let started = Instant::now();
    loop {
        let metadata = admin.inner().fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        let in_sync: Vec<(usize, usize)> = (metadata.topics().iter().filter(|t| t.name() == topic))
            .flat_map(|t| t.partitions().iter().map(|p| (p.replicas().len(), p.isr().len())))
            .collect();
        if in_sync.len() == 4 && in_sync.iter().all(|&(replicas, isr)| replicas == 3 && isr == 3) {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "partitions' (replicas, in-sync replicas): {in_sync:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let configs = admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &options).await.unwrap();
    let config = configs.into_iter().next().unwrap().unwrap();
    let min_insync = config.get("min.insync.replicas").and_then(|e| e.value.clone());
    assert_eq!(min_insync.as_deref(), Some("2"));
}
