//! The metrics acceptance scenario (`metrics_acceptance/scenario.rs`) on a
//! scratch cluster (issue 16): the services' topics with three replicas on
//! three brokers (two in sync), ClickHouse as 2 shards × 2 replicas with
//! the migrations in their cluster form; PostgreSQL and Redis of the local
//! stack. Every endpoint must answer as the metrics oracle says, as on one
//! server.
#![cfg(test)]

mod support;

#[path = "metrics_acceptance/scenario.rs"]
mod scenario;

use std::time::Duration;

use aggregator_cron::{Aggregator, RetentionTable};
use chrono::Utc;
use local_stack::ScratchCluster;
use service_kit::{
    ClickHouseConfig, KafkaConfig,
    testing::{self, TestClickHouse, TestPostgres},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_endpoints_match_the_definitions_on_a_cluster() {
    let cluster = ScratchCluster::start().await.unwrap();
    let kafka = KafkaConfig {
        brokers: cluster.bootstrap(),
        replication_factor: local_stack::cluster::REPLICATION_FACTOR,
        min_insync_replicas: local_stack::cluster::MIN_INSYNC_REPLICAS,
        ..testing::kafka_config()
    };
    // A server of shard 1: the migrations find the cluster macro there.
    let clickhouse = ClickHouseConfig { url: cluster.clickhouse_url(0), ..testing::clickhouse_config() };
    let db = TestClickHouse::create_with(clickhouse).await.unwrap();
    let db = scenario::run(kafka, db).await;
    retention_empties_every_server(&cluster, &db).await;
    db.drop().await.unwrap();
    drop(cluster);
}

/// Retention far in the future drops every partition of every table under
/// retention: the sharded tables' on both shards and both replicas of each,
/// the bookkeeping tables' on every server.
async fn retention_empties_every_server(cluster: &ScratchCluster, db: &TestClickHouse) {
    let pg = TestPostgres::create().await.unwrap();
    let config = aggregator_cron::Config {
        clickhouse: db.config.clone(),
        postgres: pg.config.clone(),
        ..aggregator_cron::Config::default()
    };
    let aggregator = Aggregator::connect(&config).await.unwrap();
    let server_parts = |node: usize| {
        let client = ClickHouseConfig { url: cluster.clickhouse_url(node), ..db.config.clone() }.client();
        async move {
            let sql = format!(
                "SELECT table, toUInt64(sum(rows)) FROM system.parts WHERE database = currentDatabase() \
                 AND active = 1 AND table IN ({}) GROUP BY table ORDER BY table",
                RetentionTable::ALL.map(|t| format!("'{}', '{}_local'", t.name(), t.name())).join(", ")
            );
            client.query(&sql).fetch_all::<(String, u64)>().await.unwrap()
        }
    };
    for node in 0..local_stack::cluster::NODES {
        let parts = server_parts(node).await;
        assert!(parts.iter().any(|(table, _)| table == "events_local"), "server {node}: {parts:?}");
        assert!(parts.iter().any(|(table, _)| table == "aggregation_windows"), "server {node}: {parts:?}");
    }
    let dropped = aggregator.retention(Utc::now() + chrono::Duration::days(3650), false).await.unwrap();
    assert!(dropped.iter().any(|d| d.table == RetentionTable::Events), "{dropped:?}");
    // ON CLUSTER statements and replication reach the other servers soon after.
    for node in 0..local_stack::cluster::NODES {
        testing::eventually(Duration::from_secs(60), || async move {
            let parts = server_parts(node).await;
            anyhow::ensure!(parts.is_empty(), "server {node} still has {parts:?}");
            Ok(())
        })
        .await
        .unwrap();
    }
    pg.drop().await.unwrap();
}
