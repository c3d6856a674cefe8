//! Migrations against the real local stack (`cargo xtask up --no-services`, or
//! `cargo xtask test`, which starts it). The stack is found through
//! `CLICKHOUSE_URL` and `DATABASE_URL`, defaulting to the brief's addresses.
//!
//! Each test works in its own database `test_<uuid>`, dropped at the end.
#![cfg(test)]

use std::{collections::BTreeSet, path::PathBuf, process::Command, time::Duration};

use service_kit::{
    ClickHouseConfig, PostgresConfig,
    migrate::{self, MigrateError, Migration},
};

const DEFAULT_CLICKHOUSE_URL: &str = "http://127.0.0.1:8123";
const DEFAULT_DATABASE_URL: &str = "postgres://analytics:analytics@127.0.0.1:5432/analytics";

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn unique_database() -> String {
    format!("test_{}", uuid::Uuid::new_v4().simple())
}

// ------------------------------------------------------------ no server ---

/// Every `schemas/<engine>/*.sql` file is embedded, in order, byte for byte.
#[test]
fn embedded_migrations_match_schema_files() {
    for (engine, embedded) in
        [("clickhouse", migrate::clickhouse_migrations()), ("postgres", migrate::postgres_migrations())]
    {
        let dir = workspace_root().join("schemas").join(engine);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
            .collect();
        files.sort();
        let names: Vec<String> = files.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
        let embedded_names: Vec<&str> = embedded.iter().map(|m| m.name).collect();
        assert_eq!(
            names, embedded_names,
            "schemas/{engine}/ and the list in crates/service-kit/src/migrate.rs differ: add new files to the list"
        );
        for (path, migration) in files.iter().zip(embedded) {
            assert_eq!(std::fs::read_to_string(path).unwrap(), migration.sql, "{}", path.display());
            let number: u32 = migration.name[..4].parse().expect("file names start with a 4-digit number");
            assert_eq!(number, migration.version, "{}", migration.name);
        }
    }
}

// ----------------------------------------------------------- ClickHouse ---

fn clickhouse_config(database: &str) -> ClickHouseConfig {
    let url = std::env::var("CLICKHOUSE_URL").ok().filter(|u| !u.is_empty());
    ClickHouseConfig {
        url: url.unwrap_or_else(|| DEFAULT_CLICKHOUSE_URL.to_string()),
        database: database.to_string(),
        ..ClickHouseConfig::default()
    }
}

#[derive(Debug, PartialEq, clickhouse::Row, serde::Deserialize)]
struct RecordedMigration {
    version: u32,
    name: String,
    checksum: String,
    applied_at: u32,
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct TableName {
    name: String,
}

async fn clickhouse_snapshot(cfg: &ClickHouseConfig) -> (Vec<String>, Vec<RecordedMigration>) {
    let client = cfg.server_client();
    let tables = client
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(cfg.database.as_str())
        .fetch_all::<TableName>()
        .await
        .expect("listing tables")
        .into_iter()
        .map(|t| t.name)
        .collect();
    let recorded = cfg
        .client()
        .query("SELECT version, name, checksum, toUInt32(applied_at) AS applied_at FROM schema_migrations ORDER BY version")
        .fetch_all::<RecordedMigration>()
        .await
        .expect("reading schema_migrations");
    (tables, recorded)
}

async fn drop_clickhouse_database(cfg: &ClickHouseConfig) {
    cfg.server_client()
        .query_raw(&format!("DROP DATABASE IF EXISTS `{}`", cfg.database))
        .execute()
        .await
        .expect("dropping the test database");
}

/// Runs `body` and drops the database afterwards, also when `body` panics.
async fn with_clickhouse_database<F, Fut>(body: F)
where
    F: FnOnce(ClickHouseConfig) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let cfg = clickhouse_config(&unique_database());
    let outcome = tokio::spawn(body(cfg.clone())).await;
    drop_clickhouse_database(&cfg).await;
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

#[tokio::test]
async fn clickhouse_migrations_applied_twice_change_nothing_the_second_time() {
    with_clickhouse_database(|cfg| async move {
        let first = migrate::apply_clickhouse(&cfg).await.expect("first run");
        let all: Vec<(u32, String)> =
            migrate::clickhouse_migrations().iter().map(|m| (m.version, m.name.to_string())).collect();
        assert_eq!(first.applied, all);
        assert_eq!(first.already, 0);
        let before = clickhouse_snapshot(&cfg).await;
        assert!(before.0.contains(&"events".to_string()), "tables after the first run: {:?}", before.0);
        assert!(before.0.contains(&"schema_migrations".to_string()));
        assert_eq!(before.1.len(), all.len());
        for (row, migration) in before.1.iter().zip(migrate::clickhouse_migrations()) {
            assert_eq!((row.version, row.name.as_str()), (migration.version, migration.name));
            assert_eq!(row.checksum, migration.checksum());
        }

        tokio::time::sleep(Duration::from_millis(1100)).await; // a re-insert would show a new applied_at
        let second = migrate::apply_clickhouse(&cfg).await.expect("second run");
        assert_eq!(second.applied, Vec::<(u32, String)>::new());
        assert_eq!(second.already, all.len());
        assert_eq!(clickhouse_snapshot(&cfg).await, before);
    })
    .await;
}

/// Upgrading a database that holds events: 0012 copies the recent days into
/// `events_by_time_v2` with every column, then drops `events_by_time`; rows
/// inserted afterwards reach the new copy through its view.
#[tokio::test]
async fn the_time_clustered_copy_is_replaced_keeping_the_recent_days_of_a_database_with_events() {
    with_clickhouse_database(|cfg| async move {
        let client = apply_before(&cfg, "0012_events_by_time_v2").await;
        let insert = |id: &str, days_ago: u32| {
            format!(
                "INSERT INTO events (event_id, event_type, session_id, video_id, timestamp, timestamp_ms, \
                 received_at_ms, bitrate_kbps, browser, os, country, cdn) \
                 SELECT toUUID('{id}'), 'video_start', 's1', 'v1', now() - {days_ago} * 86400, \
                 toUInt64(now() - {days_ago} * 86400) * 1000, toUInt64(now()) * 1000, 2500, 'Firefox', 'Linux', \
                 'DE', 'cdn-a'"
            )
        };
        for (id, days_ago) in
            [("00000000-0000-4000-8000-000000000001", 1), ("00000000-0000-4000-8000-000000000002", 10)]
        {
            client.query(&insert(id, days_ago)).execute().await.expect("inserting an event");
        }
        migrate::apply_clickhouse(&cfg).await.expect("0012 and later");
        let copied = |client: clickhouse::Client| async move {
            client
                .query(
                    "SELECT toString(event_id), toString(ifNull(bitrate_kbps, 0)), browser, os, country, cdn \
                     FROM events_by_time_v2 ORDER BY event_id",
                )
                .fetch_all::<(String, String, String, String, String, String)>()
                .await
                .expect("reading events_by_time_v2")
        };
        let row =
            |id: &str| (id.to_string(), "2500".into(), "Firefox".into(), "Linux".into(), "DE".into(), "cdn-a".into());
        // The day-old event is backfilled with every column; the ten-day-old one is past the copy's days.
        assert_eq!(copied(client.clone()).await, vec![row("00000000-0000-4000-8000-000000000001")]);
        let tables = clickhouse_snapshot(&cfg).await.0;
        assert!(!tables.iter().any(|t| t == "events_by_time" || t == "events_by_time_mv"), "{tables:?}");
        client.query(&insert("00000000-0000-4000-8000-000000000003", 0)).execute().await.expect("a new event");
        assert_eq!(
            copied(client.clone()).await,
            vec![row("00000000-0000-4000-8000-000000000001"), row("00000000-0000-4000-8000-000000000003")]
        );
    })
    .await;
}

/// Upgrading a database that holds events: 0014 copies the recent days'
/// key states of `keys_by_day` into `keys_by_day_v2` (start times and last
/// inserts intact), then drops `keys_by_day`; rows inserted afterwards reach
/// the new index through its view, merged with the copied states.
#[tokio::test]
async fn the_key_index_is_replaced_keeping_the_recent_days_states() {
    with_clickhouse_database(|cfg| async move {
        let client = apply_before(&cfg, "0014_keys_by_day_v2").await;
        let insert = |id: u32, event_type: &str, session: &str, days_ago: u32, ms: u32| {
            format!(
                "INSERT INTO events (event_id, event_type, session_id, video_id, timestamp, timestamp_ms, received_at_ms) \
                 SELECT toUUID('00000000-0000-4000-8000-{id:012}'), '{event_type}', '{session}', 'v1', \
                 toDateTime(today() - {days_ago}) + 3600, toUInt64(toDateTime(today() - {days_ago}) + 3600) * 1000 + {ms}, \
                 toUInt64(now()) * 1000"
            )
        };
        for (id, event_type, session, days_ago, ms) in
            [(1, "video_start", "s1", 1, 0), (2, "heartbeat", "s1", 1, 500), (3, "video_start", "s2", 10, 0)]
        {
            client.query(&insert(id, event_type, session, days_ago, ms)).execute().await.expect("inserting an event");
        }
        migrate::apply_clickhouse(&cfg).await.expect("0014 and later");
        let keys = |client: clickhouse::Client| async move {
            client
                .query(
                    "SELECT session_id, toUInt32(length(groupUniqArrayArrayMerge(start_times))) AS starts, \
                     toUInt32(maxMerge(inserted_max) > toDateTime(0)) AS inserted \
                     FROM keys_by_day_v2 GROUP BY session_id, date ORDER BY session_id",
                )
                .fetch_all::<(String, u32, u32)>()
                .await
                .expect("reading keys_by_day_v2")
        };
        // The day-old key is copied with its start and last insert; the ten-day-old one is past the index's days.
        assert_eq!(keys(client.clone()).await, vec![("s1".to_string(), 1, 1)]);
        let tables = clickhouse_snapshot(&cfg).await.0;
        assert!(!tables.iter().any(|t| t == "keys_by_day" || t == "keys_by_day_mv"), "{tables:?}");
        // A later start of the same key and day merges with the copied state.
        client.query(&insert(4, "video_start", "s1", 1, 90_000)).execute().await.expect("a new event");
        assert_eq!(keys(client.clone()).await, vec![("s1".to_string(), 2, 1)]);
    })
    .await;
}

/// Upgrading a database with stored view facts: 0015 copies every row of
/// `view_facts` into `view_facts_v2` and drops the old table; a pass's
/// insert afterwards lands in the new one.
#[tokio::test]
async fn the_view_facts_are_moved_to_their_smaller_granules_whole() {
    with_clickhouse_database(|cfg| async move {
        let client = apply_before(&cfg, "0015_view_facts_v2").await;
        let insert = |table: &str, session: &str, version: u32| {
            format!(
                "INSERT INTO {table} (date, video_id, session_id, start_ms, is_view, watch_seconds, view_user, viewer, version) \
                 VALUES (today(), 'v1', '{session}', 1000, 1, 12.5, 'u1', 'u:u1', {version})"
            )
        };
        for (session, version) in [("s1", 3), ("s2", 4)] {
            client.query(&insert("view_facts", session, version)).execute().await.expect("storing a fact");
        }
        migrate::apply_clickhouse(&cfg).await.expect("0015 and later");
        let stored = |client: clickhouse::Client| async move {
            client
                .query(
                    "SELECT session_id, watch_seconds, assumeNotNull(view_user), version FROM view_facts_v2 \
                     ORDER BY session_id, version",
                )
                .fetch_all::<(String, f64, String, u64)>()
                .await
                .expect("reading view_facts_v2")
        };
        let row = |session: &str, version: u64| (session.to_string(), 12.5, "u1".to_string(), version);
        assert_eq!(stored(client.clone()).await, vec![row("s1", 3), row("s2", 4)]);
        let tables = clickhouse_snapshot(&cfg).await.0;
        assert!(!tables.iter().any(|t| t == "view_facts" || t == "view_facts_v2_mv"), "{tables:?}");
        client.query(&insert("view_facts_v2", "s1", 5)).execute().await.expect("a later pass's fact");
        assert_eq!(stored(client.clone()).await, vec![row("s1", 3), row("s1", 5), row("s2", 4)]);
    })
    .await;
}

/// Upgrading a database with aggregated windows: 0016 copies every row of
/// `video_metrics` and `user_engagement_daily` into their lookup copies, and
/// a later run's rows reach the copies through their views.
#[tokio::test]
async fn the_aggregates_are_copied_into_their_lookups_and_kept_in_step() {
    with_clickhouse_database(|cfg| async move {
        let client = apply_before(&cfg, "0016_aggregate_lookups").await;
        let video = |version: u32, views: u32| {
            format!(
                "INSERT INTO video_metrics (video_id, hour, date, views, viewers, version) \
                 VALUES ('v1', toDateTime('2026-11-20 10:00:00'), '2026-11-20', {views}, ['u:u1'], {version})"
            )
        };
        let user = |version: u32, views: u32| {
            format!(
                "INSERT INTO user_engagement_daily (user_id, date, sessions, views, version) \
                 VALUES ('u1', '2026-11-20', ['s1'], {views}, {version})"
            )
        };
        for statement in [video(3, 2), user(3, 2)] {
            client.query(&statement).execute().await.expect("an aggregation run's row");
        }
        migrate::apply_clickhouse(&cfg).await.expect("0016 and later");
        let copied = |client: clickhouse::Client| async move {
            let videos = client
                .query(
                    "SELECT version, views, arrayStringConcat(viewers, ',') FROM video_metrics_lookup WHERE video_id = 'v1' ORDER BY version",
                )
                .fetch_all::<(u64, u32, String)>()
                .await
                .expect("reading video_metrics_lookup");
            let users = client
                .query(
                    "SELECT version, views, arrayStringConcat(sessions, ',') FROM user_engagement_lookup WHERE user_id = 'u1' ORDER BY version",
                )
                .fetch_all::<(u64, u32, String)>()
                .await
                .expect("reading user_engagement_lookup");
            (videos, users)
        };
        let row = |version: u64, views: u32, key: &str| (version, views, key.to_string());
        assert_eq!(copied(client.clone()).await, (vec![row(3, 2, "u:u1")], vec![row(3, 2, "s1")]));
        for statement in [video(5, 7), user(5, 7)] {
            client.query(&statement).execute().await.expect("a later run's row");
        }
        assert_eq!(
            copied(client.clone()).await,
            (vec![row(3, 2, "u:u1"), row(5, 7, "u:u1")], vec![row(3, 2, "s1"), row(5, 7, "s1")])
        );
    })
    .await;
}

/// Applies every ClickHouse migration before the one named `name` (which
/// must be listed) to `cfg`'s database, and returns a client of it.
async fn apply_before(cfg: &ClickHouseConfig, name: &str) -> clickhouse::Client {
    let all = migrate::clickhouse_migrations();
    let before = all.iter().position(|m| m.name == name).unwrap_or_else(|| panic!("{name} is not listed"));
    migrate::apply_clickhouse_migrations(cfg, &all[..before])
        .await
        .unwrap_or_else(|e| panic!("migrations before {name}: {e}"));
    cfg.client()
}

/// Upgrading a database with events: 0017 records every stored hour's last
/// insert, and later inserts reach the record through its view.
#[tokio::test]
async fn the_hours_last_inserts_are_recorded_for_the_stored_events_and_kept_in_step() {
    with_clickhouse_database(|cfg| async move {
        let client = apply_before(&cfg, "0017_events_hourly").await;
        let insert = |id: u32, hour: u32, inserted_at: &str| {
            format!(
                "INSERT INTO events (event_id, event_type, session_id, video_id, timestamp, timestamp_ms, inserted_at) \
                 VALUES (toUUID('00000000-0000-0000-0000-{id:012}'), 'video_start', 's', 'v', \
                 toDateTime('2026-11-20 {hour:02}:30:00'), 0, toDateTime('{inserted_at}'))"
            )
        };
        for statement in [
            insert(1, 10, "2026-11-20 10:31:00"),
            insert(2, 10, "2026-11-20 12:00:00"),
            insert(3, 11, "2026-11-20 11:40:00"),
        ] {
            client.query(&statement).execute().await.expect("an event stored before the upgrade");
        }
        migrate::apply_clickhouse(&cfg).await.expect("0017 and later");
        let recorded = |client: clickhouse::Client| async move {
            client
                .query(
                    "SELECT toString(hour), toString(max(last_inserted_at)) FROM event_hour_inserts \
                     GROUP BY hour ORDER BY hour",
                )
                .fetch_all::<(String, String)>()
                .await
                .expect("reading event_hour_inserts")
        };
        let row = |hour: &str, at: &str| (format!("2026-11-20 {hour}:00:00"), at.to_string());
        let stored = vec![row("10", "2026-11-20 12:00:00"), row("11", "2026-11-20 11:40:00")];
        assert_eq!(recorded(client.clone()).await, stored);
        client.query(&insert(4, 11, "2026-11-21 08:00:00")).execute().await.expect("a later insert");
        let later = vec![row("10", "2026-11-20 12:00:00"), row("11", "2026-11-21 08:00:00")];
        assert_eq!(recorded(client.clone()).await, later);
    })
    .await;
}

fn edited(migrations: &[Migration], version: u32, sql: &'static str) -> Vec<Migration> {
    migrations.iter().map(|m| if m.version == version { Migration { sql, ..*m } } else { *m }).collect()
}

#[tokio::test]
async fn clickhouse_refuses_an_edited_applied_migration_naming_the_file() {
    with_clickhouse_database(|cfg| async move {
        migrate::apply_clickhouse(&cfg).await.expect("first run");
        let tampered =
            edited(migrate::clickhouse_migrations(), 1, "CREATE TABLE IF NOT EXISTS other (x UInt8) ENGINE = Memory;");
        let err = migrate::apply_clickhouse_migrations(&cfg, &tampered).await.expect_err("edited migration accepted");
        assert!(matches!(err, MigrateError::ChecksumMismatch { .. }), "{err:?}");
        let first_file = format!("schemas/clickhouse/{}.sql", migrate::clickhouse_migrations()[0].name);
        assert!(err.to_string().contains(&first_file), "{err}");
    })
    .await;
}

#[tokio::test]
async fn clickhouse_failure_names_the_file_and_is_not_recorded() {
    with_clickhouse_database(|cfg| async move {
        let mut list = migrate::clickhouse_migrations().to_vec();
        list.push(Migration {
            version: 9999,
            name: "9999_broken",
            sql: "CREATE TABLE IF NOT EXISTS fine (x UInt8) ENGINE = Memory;\nCREATE TABLE broken (x NoSuchType) ENGINE = Memory;\n",
        });
        let err = migrate::apply_clickhouse_migrations(&cfg, &list).await.expect_err("broken migration accepted");
        let text = err.to_string();
        assert!(text.contains("schemas/clickhouse/9999_broken.sql") && text.contains("statement 2 of 2"), "{text}");
        let (_, recorded) = clickhouse_snapshot(&cfg).await;
        assert!(recorded.iter().all(|r| r.version != 9999), "{recorded:?}");
    })
    .await;
}

/// Every ClickHouse migration (and the runner's bookkeeping table) also runs on
/// chDB, the current ClickHouse engine; a missing chdb module fails the test.
#[test]
fn clickhouse_migrations_run_on_current_clickhouse_via_chdb() {
    let root = workspace_root();
    let output = Command::new("python3")
        .arg(root.join("schemas/check_chdb.py"))
        .arg("--statement")
        .arg(migrate::CLICKHOUSE_SCHEMA_MIGRATIONS_DDL)
        .current_dir(&root)
        .output()
        .expect("running python3 schemas/check_chdb.py (is python3 installed?)");
    assert!(
        output.status.success(),
        "schemas/check_chdb.py failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

// ----------------------------------------------------------- PostgreSQL ---

fn admin_url() -> String {
    std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string())
}

/// `url` with its database name replaced (keeps user, password, host, options).
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (location, query) = match rest.split_once('?') {
        Some((location, query)) => (location, format!("?{query}")),
        None => (rest, String::new()),
    };
    let authority = location.split_once('/').map(|(authority, _)| authority).unwrap_or(location);
    format!("{scheme}://{authority}/{database}{query}")
}

async fn admin_client() -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await.expect("connecting with DATABASE_URL");
    tokio::spawn(connection);
    client
}

async fn postgres_snapshot(url: &str) -> (Vec<String>, Vec<(i32, String, String, String)>) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connecting");
    tokio::spawn(connection);
    let tables = client
        .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1", &[])
        .await
        .expect("listing tables")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let recorded = client
        .query("SELECT version, name, checksum, applied_at::text FROM schema_migrations ORDER BY version", &[])
        .await
        .expect("reading schema_migrations")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    (tables, recorded)
}

/// Creates a fresh database (the analytics role has CREATEDB), runs `body`
/// with its config, drops it afterwards, also when `body` panics.
async fn with_postgres_database<F, Fut>(body: F)
where
    F: FnOnce(PostgresConfig) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let database = unique_database();
    let admin = admin_client().await;
    admin.batch_execute(&format!("CREATE DATABASE {database}")).await.expect("CREATE DATABASE (needs CREATEDB)");
    let cfg = PostgresConfig { url: with_database(&admin_url(), &database), ..PostgresConfig::default() };
    let outcome = tokio::spawn(body(cfg)).await;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await.expect("DROP DATABASE");
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

#[tokio::test]
async fn postgres_migrations_applied_twice_change_nothing_the_second_time() {
    with_postgres_database(|cfg| async move {
        let first = migrate::apply_postgres(&cfg).await.expect("first run");
        let all: Vec<(u32, String)> =
            migrate::postgres_migrations().iter().map(|m| (m.version, m.name.to_string())).collect();
        assert_eq!(first.applied, all);
        assert_eq!(first.already, 0);
        let before = postgres_snapshot(&cfg.url).await;
        let tables: BTreeSet<&str> = before.0.iter().map(String::as_str).collect();
        assert!(tables.contains("videos") && tables.contains("schema_migrations"), "{tables:?}");
        for (row, migration) in before.1.iter().zip(migrate::postgres_migrations()) {
            assert_eq!(
                (row.0 as u32, row.1.as_str(), row.2.as_str()),
                (migration.version, migration.name, migration.checksum().as_str())
            );
        }

        let second = migrate::apply_postgres(&cfg).await.expect("second run");
        assert_eq!(second.applied, Vec::<(u32, String)>::new());
        assert_eq!(second.already, all.len());
        assert_eq!(postgres_snapshot(&cfg.url).await, before);
    })
    .await;
}

#[tokio::test]
async fn postgres_failure_rolls_back_and_names_the_file() {
    with_postgres_database(|cfg| async move {
        let mut list = migrate::postgres_migrations().to_vec();
        list.push(Migration {
            version: 9999,
            name: "9999_broken",
            sql: "CREATE TABLE half_done (x INT);\nSELECT no_such_function();\n",
        });
        let err = migrate::apply_postgres_migrations(&cfg, &list).await.expect_err("broken migration accepted");
        let text = err.to_string();
        assert!(text.contains("schemas/postgres/9999_broken.sql") && text.contains("no_such_function"), "{text}");
        let (tables, recorded) = postgres_snapshot(&cfg.url).await;
        assert!(!tables.contains(&"half_done".to_string()), "the failed migration was not rolled back: {tables:?}");
        assert!(recorded.iter().all(|r| r.0 != 9999));

        let tampered = edited(migrate::postgres_migrations(), 1, "CREATE TABLE other (x INT);");
        let err = migrate::apply_postgres_migrations(&cfg, &tampered).await.expect_err("edited migration accepted");
        assert!(matches!(err, MigrateError::ChecksumMismatch { .. }), "{err:?}");
    })
    .await;
}

#[test]
fn database_urls_are_rewritten_keeping_credentials_and_options() {
    assert_eq!(with_database("postgres://a:b@h:5432/analytics", "test_x"), "postgres://a:b@h:5432/test_x");
    assert_eq!(with_database("postgres://a:b@h/analytics?sslmode=disable", "t"), "postgres://a:b@h/t?sslmode=disable");
    assert_eq!(with_database("postgres://a@h", "t"), "postgres://a@h/t");
}
