//! The ClickHouse migrations in their cluster form
//! (`service_kit::migrate::cluster`): applied to a scratch cluster of four
//! ClickHouse 18.16 servers (2 shards × 2 replicas, ZooKeeper), and checked
//! on chDB, the current ClickHouse engine.
//!
//! On the cluster: every table is where its placement says on every server,
//! a second run through another server applies nothing, and rows written
//! through the `Distributed` tables land by their sharding key: every event
//! of a session (copies included) and its materialized-view copies on one
//! shard, on both of its replicas; `FINAL` over a `Distributed` table keeps
//! the newest version of each key. A database made on a single server is
//! refused by a cluster's server.
#![cfg(test)]

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use local_stack::{ScratchCluster, cluster, probe};
use service_kit::{
    ClickHouseConfig,
    migrate::{
        self, MigrateError, Topology,
        cluster::{PLACEMENTS, Placement, RETIRED},
    },
    testing,
};

const DATABASE: &str = "analytics";
/// Replication on a busy two-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

fn config(url: String) -> ClickHouseConfig {
    ClickHouseConfig { url, database: DATABASE.to_string(), ..ClickHouseConfig::default() }
}

async fn query(url: &str, sql: &str) -> String {
    probe::clickhouse_query(url, sql).await.unwrap_or_else(|err| panic!("{url}: {sql}: {err:#}"))
}

/// The lines of `sql`'s answer on `url`, as a set.
async fn set(url: &str, sql: &str) -> BTreeSet<String> {
    query(url, sql).await.lines().map(str::to_string).collect()
}

/// Polls `sql` on `url` until it answers `expected`.
async fn until_answers(url: &str, sql: &str, expected: &str) {
    probe::clickhouse_until(url, sql, expected, DEADLINE).await.unwrap();
}

/// Each shard's answer to `sql` on its first replica, after both of its
/// replicas hold the same rows of `local`.
async fn per_shard(cluster: &ScratchCluster, local: &str, sql: &str) -> Vec<BTreeSet<String>> {
    let mut shards = Vec::new();
    for shard in 0..cluster::SHARDS {
        let first = cluster.clickhouse_url(shard * cluster::REPLICAS);
        let second = cluster.clickhouse_url(shard * cluster::REPLICAS + 1);
        for url in [&first, &second] {
            query(url, &format!("SYSTEM SYNC REPLICA {DATABASE}.{local}")).await;
        }
        let (a, b) = (set(&first, sql).await, set(&second, sql).await);
        assert_eq!(a, b, "the replicas of shard {} differ on {sql}", shard + 1);
        shards.push(a);
    }
    shards
}

#[tokio::test]
async fn migrations_build_a_sharded_replicated_schema_and_rows_land_by_their_keys() {
    let cluster = ScratchCluster::start().await.unwrap();
    let first = config(cluster.clickhouse_url(0));
    assert_eq!(migrate::clickhouse_topology(&first).await.unwrap(), Topology::Cluster("analytics".into()));

    let report = migrate::apply_clickhouse(&first).await.unwrap();
    assert_eq!(report.applied.len(), migrate::clickhouse_migrations().len());

    // Every server: each table where its placement says.
    for node in 0..cluster::NODES {
        let url = cluster.clickhouse_url(node);
        let tables: BTreeMap<String, String> = query(
            &url,
            &format!("SELECT name, engine_full FROM system.tables WHERE database = '{DATABASE}' AND engine != 'MaterializedView'"),
        )
        .await
        .lines()
        .filter_map(|line| line.split_once('\t').map(|(n, e)| (n.to_string(), e.to_string())))
        .collect();
        let placed = || PLACEMENTS.iter().filter(|(table, _)| !RETIRED.contains(table));
        for (table, placement) in placed() {
            match placement {
                Placement::Sharded(key) => {
                    let front = &tables[*table];
                    let local = format!("{table}_local");
                    assert!(
                        front.starts_with(&format!("Distributed(analytics, {DATABASE}, {local}, {key})")),
                        "node {node}: {table} is {front}"
                    );
                    let stored = &tables[&local];
                    assert!(
                        stored.starts_with("Replicated")
                            && stored.contains(&format!("/clickhouse/tables/{{cluster}}/{{shard}}/{DATABASE}/{local}")),
                        "node {node}: {local} is {stored}"
                    );
                }
                Placement::Everywhere => {
                    let stored = &tables[*table];
                    assert!(
                        stored.starts_with("Replicated") && stored.contains("/clickhouse/tables/{cluster}/all/"),
                        "node {node}: {table} is {stored}"
                    );
                }
            }
        }
        assert_eq!(tables.len(), placed().map(|(_, p)| 1 + matches!(p, Placement::Sharded(_)) as usize).sum::<usize>());
        // The migrations' record reaches every server.
        until_answers(
            &url,
            &format!("SELECT count() FROM {DATABASE}.schema_migrations"),
            &report.applied.len().to_string(),
        )
        .await;
    }
    // The ALTER of `events` (0002) reached its Distributed table too.
    assert_eq!(query(&cluster.clickhouse_url(3), "SELECT count() FROM system.columns WHERE database = 'analytics' AND table = 'events' AND name = 'inserted_at'").await, "1");

    // A second run, through another server, finds everything applied.
    let last = config(cluster.clickhouse_url(3));
    let again = migrate::apply_clickhouse(&last).await.unwrap();
    assert_eq!((again.applied.len(), again.already), (0, report.applied.len()));

    // Events through the Distributed table, one insert per server, a redelivered copy of each
    // session's first event in a later insert: 24 sessions of 3 events.
    let insert_url =
        |node: usize| format!("{}/?database={DATABASE}&insert_distributed_sync=1", cluster.clickhouse_url(node));
    let event = |session: usize, n: usize| {
        let id = format!("00000000-0000-0000-{session:04}-{n:012}");
        let kind = if n == 0 { "video_start" } else { "video_progress" };
        format!(
            "('{id}', '{kind}', 'user-{}', 'session-{session}', 'video-{}', toDateTime('2026-01-0{} 12:00:00'), \
             {}, 1767268800000, 10, 600, '720p', 2500, NULL, NULL, '', '', 0, NULL, NULL, '', '', 'tv', '', '', '', '', '', '{{}}', NULL)",
            session % 5,
            session % 3,
            1 + session % 2,
            1767268800000u64 + n as u64 * 10_000
        )
    };
    let columns = "event_id, event_type, user_id, session_id, video_id, timestamp, timestamp_ms, received_at_ms, \
                   position_seconds, duration_seconds, quality, bitrate_kbps, buffer_duration_ms, startup_time_ms, \
                   error_code, error_message, fatal, seek_from_seconds, seek_to_seconds, from_quality, to_quality, \
                   device_type, browser, os, country, player, cdn, properties, metadata";
    let client = reqwest::Client::new();
    for node in 0..cluster::NODES {
        let rows: Vec<String> = (node * 6..node * 6 + 6).flat_map(|s| (0..3).map(move |n| event(s, n))).collect();
        let copies: Vec<String> = (node * 6..node * 6 + 6).map(|s| event(s, 0)).collect();
        for batch in [rows, copies] {
            let sql = format!("INSERT INTO events ({columns}) VALUES {}", batch.join(", "));
            let answer = client.post(insert_url(node)).body(sql).send().await.unwrap();
            assert!(answer.status().is_success(), "{}", answer.text().await.unwrap());
        }
    }
    let sessions: BTreeSet<String> = (0..24).map(|s| format!("session-{s}")).collect();

    // Each session on one shard, on both replicas; the shards share none and both hold some.
    let by_shard = per_shard(&cluster, "events_local", "SELECT DISTINCT session_id FROM analytics.events_local").await;
    assert!(by_shard.iter().all(|s| !s.is_empty()), "{by_shard:?}");
    assert!(by_shard[0].is_disjoint(&by_shard[1]), "{by_shard:?}");
    assert_eq!(&by_shard[0] | &by_shard[1], sessions);
    // Every copy of an event is on its session's shard: no event id on two shards.
    let ids =
        per_shard(&cluster, "events_local", "SELECT DISTINCT toString(event_id) FROM analytics.events_local").await;
    assert!(ids[0].is_disjoint(&ids[1]));
    assert_eq!(ids[0].len() + ids[1].len(), 72);
    // The materialized views' copies are on the shard of their session.
    for (local, column) in [
        ("events_by_receipt_local", "session_id"),
        ("keys_by_day_v2_local", "session_id"),
        ("keys_by_insert_local", "session_id"),
        ("events_by_time_v2_local", "session_id"),
        ("views_by_user_local", "session_id"),
    ] {
        let placed = per_shard(&cluster, local, &format!("SELECT DISTINCT {column} FROM analytics.{local}")).await;
        assert_eq!(placed, by_shard, "{local}");
    }
    // Any server reads every shard through the Distributed tables.
    for node in 0..cluster::NODES {
        let url = cluster.clickhouse_url(node);
        // 96 rows were inserted; ReplacingMergeTree may have merged copies away meanwhile.
        assert_eq!(
            query(&url, "SELECT uniqExact(event_id), count() >= 72, count() <= 96 FROM analytics.events").await,
            "72\t1\t1"
        );
        assert_eq!(query(&url, "SELECT uniqExact(session_id, video_id) FROM analytics.keys_by_day_v2").await, "24");
    }

    // FINAL over a Distributed table: every version of a key is on one shard.
    for (version, views) in [(1, 10), (2, 20), (3, 30)] {
        for video in 0..6 {
            let sql = format!(
                "INSERT INTO video_hour_totals (hour, video_id, views, completed_views, watch_time_seconds, version) \
                 VALUES (toDateTime('2026-01-01 12:00:00'), 'video-{video}', {views}, 0, 0, {version})"
            );
            let answer = client.post(insert_url(version % cluster::NODES)).body(sql).send().await.unwrap();
            assert!(answer.status().is_success(), "{}", answer.text().await.unwrap());
        }
    }
    // (Replication may still be fetching the newest versions: polled.)
    for node in 0..cluster::NODES {
        let sql = "SELECT count(), sum(views), min(version) FROM analytics.video_hour_totals FINAL";
        until_answers(&cluster.clickhouse_url(node), sql, "6\t180\t3").await;
    }

    // A database keeps the form it was created with: one made as on a single server is refused here.
    let url = cluster.clickhouse_url(1);
    query(&url, "CREATE DATABASE single_form").await;
    let ddl =
        migrate::CLICKHOUSE_SCHEMA_MIGRATIONS_DDL.replacen("schema_migrations", "single_form.schema_migrations", 1);
    query(&url, &ddl).await;
    let cfg = ClickHouseConfig { url, database: "single_form".into(), ..ClickHouseConfig::default() };
    let err = migrate::apply_clickhouse(&cfg).await.unwrap_err();
    assert!(matches!(err, MigrateError::TopologyMismatch { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("migrated on a single server, but the server is a server of cluster analytics"), "{text}");
}

/// The cluster form of every migration (and of the runner's bookkeeping
/// table) is accepted by chDB, the current ClickHouse engine: parsed as
/// written and executed without `ON CLUSTER` (schemas/check_chdb.py).
#[test]
fn the_cluster_form_runs_on_current_clickhouse_via_chdb() {
    testing::run_cluster_form_on_chdb("chdb_cluster_check", &[]).unwrap_or_else(|e| panic!("{e}"));
}
