//! Versioned ClickHouse and PostgreSQL migrations from `schemas/`.
//!
//! The SQL files are embedded at compile time, so every binary (and `cargo
//! xtask migrate`) carries exactly the schema it was built with. Each engine keeps
//! a `schema_migrations` table of applied versions with the SHA-256 of the file;
//! applying is idempotent, and a file edited after it was applied is refused
//! (add a new numbered file instead). The rules are in `schemas/README.md`.
//!
//! ClickHouse has no transactional DDL, so its migrations are applied statement
//! by statement and recorded once all statements succeeded; write them with
//! `IF NOT EXISTS` so that a retry after a partial failure works. PostgreSQL
//! migrations run whole inside one transaction each, together with their record.
//!
//! A ClickHouse server that defines the `cluster` macro is one server of a
//! cluster: the migrations are then applied to the whole cluster in their
//! [`cluster`] form (`ON CLUSTER`, replicated local tables, `Distributed`
//! tables), from the same files.

pub mod cluster;

use std::{collections::BTreeMap, fmt::Write as _};

use sha2::{Digest, Sha256};

use crate::config::{ClickHouseConfig, PostgresConfig};

/// One numbered SQL file of `schemas/<engine>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The file's number (`0001_events.sql` → 1).
    pub version: u32,
    /// The file name without `.sql` (`0001_events`).
    pub name: &'static str,
    /// The file's contents.
    pub sql: &'static str,
}

impl Migration {
    /// Hex SHA-256 of the SQL, line endings normalised to `\n`.
    pub fn checksum(&self) -> String {
        checksum(self.sql)
    }
}

macro_rules! migration {
    ($engine:literal, $version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../../schemas/", $engine, "/", $name, ".sql")),
        }
    };
}

/// ClickHouse migrations, in version order. A new file must be added here too
/// (the `migrations` integration test checks the list against the directory).
static CLICKHOUSE: &[Migration] = &[
    migration!("clickhouse", 1, "0001_events"),
    migration!("clickhouse", 2, "0002_events_inserted_at"),
    migration!("clickhouse", 3, "0003_aggregates"),
    migration!("clickhouse", 4, "0004_events_by_receipt"),
    migration!("clickhouse", 5, "0005_views_by_user"),
    migration!("clickhouse", 6, "0006_keys_by_day"),
    migration!("clickhouse", 7, "0007_view_facts"),
    migration!("clickhouse", 8, "0008_events_by_time"),
    migration!("clickhouse", 9, "0009_video_hour_totals"),
    migration!("clickhouse", 10, "0010_facts_pass_open_views"),
    migration!("clickhouse", 11, "0011_video_day_totals"),
    migration!("clickhouse", 12, "0012_events_by_time_v2"),
    migration!("clickhouse", 13, "0013_video_hour_metrics"),
    migration!("clickhouse", 14, "0014_keys_by_day_v2"),
    migration!("clickhouse", 15, "0015_view_facts_v2"),
    migration!("clickhouse", 16, "0016_aggregate_lookups"),
    migration!("clickhouse", 17, "0017_events_hourly"),
];

/// PostgreSQL migrations, in version order.
static POSTGRES: &[Migration] = &[
    migration!("postgres", 1, "0001_video_catalog"),
    migration!("postgres", 2, "0002_aggregation_runs"),
    migration!("postgres", 3, "0003_api_keys"),
];

/// The embedded ClickHouse migrations, in version order.
pub fn clickhouse_migrations() -> &'static [Migration] {
    CLICKHOUSE
}

/// The embedded PostgreSQL migrations, in version order.
pub fn postgres_migrations() -> &'static [Migration] {
    POSTGRES
}

/// DDL of the ClickHouse bookkeeping table, unqualified (run it with the target
/// database selected). Valid on ClickHouse 18.16 and current releases.
pub const CLICKHOUSE_SCHEMA_MIGRATIONS_DDL: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
     (version UInt32, name String, checksum String, applied_at DateTime) \
     ENGINE = MergeTree() ORDER BY version";

/// DDL of the PostgreSQL bookkeeping table.
pub const POSTGRES_SCHEMA_MIGRATIONS_DDL: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
     version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, \
     applied_at TIMESTAMPTZ NOT NULL DEFAULT now())";

/// Arbitrary constant key of the advisory lock serialising concurrent
/// PostgreSQL migration runs on one database.
const POSTGRES_LOCK_KEY: i64 = 0x616e_616c_7974_6963; // "analytic"

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Migrations applied by this run: (version, name), in order.
    pub applied: Vec<(u32, String)>,
    /// Migrations found already applied (checksum verified).
    pub already: usize,
}

/// Why migrations could not be applied. Every variant names the engine, and the
/// migration file when one is involved.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{engine}: database name {name:?} is not a plain identifier ([A-Za-z0-9_], not starting with a digit)")]
    InvalidDatabaseName { engine: &'static str, name: String },

    #[error("ClickHouse at {endpoint}: {context}: {source}")]
    ClickHouse {
        endpoint: String,
        context: String,
        #[source]
        source: clickhouse::error::Error,
    },

    /// `postgres.url`'s TLS settings (`sslmode`, a CA file) are unusable.
    #[error("PostgreSQL: {0}")]
    PostgresSettings(String),

    #[error("PostgreSQL: {context}: {message}")]
    Postgres {
        context: String,
        message: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("{file}: statement {statement} of {statements} failed on ClickHouse at {endpoint}: {source}")]
    ClickHouseMigration {
        file: String,
        endpoint: String,
        statement: usize,
        statements: usize,
        #[source]
        source: clickhouse::error::Error,
    },

    #[error("{file}: failed on PostgreSQL (rolled back): {message}")]
    PostgresMigration {
        file: String,
        message: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("{file}: contains no SQL statement")]
    Empty { file: String },

    #[error("{file}: statement {statement} has no cluster form: {reason}")]
    ClusterForm { file: String, statement: usize, reason: String },

    #[error(
        "ClickHouse at {endpoint}: database {database} was migrated {recorded}, but the server is {server}; \
         a database keeps the form it was created with (migrate a new database, or move the data)"
    )]
    TopologyMismatch { endpoint: String, database: String, recorded: String, server: String },

    #[error(
        "{file} was edited after it was applied to {engine} (recorded checksum {recorded}, file now {current}); \
         applied migrations are immutable: restore the file and add a new numbered migration instead"
    )]
    ChecksumMismatch { engine: &'static str, file: String, recorded: String, current: String },
}

/// Applies the embedded ClickHouse migrations to `cfg.database`, creating the
/// database and its `schema_migrations` table when missing.
pub async fn apply_clickhouse(cfg: &ClickHouseConfig) -> Result<Report, MigrateError> {
    apply_clickhouse_migrations(cfg, CLICKHOUSE).await
}

/// Applies the embedded PostgreSQL migrations to the database of `cfg.url`.
pub async fn apply_postgres(cfg: &PostgresConfig) -> Result<Report, MigrateError> {
    apply_postgres_migrations(cfg, POSTGRES).await
}

/// Where the ClickHouse migrations go: one server, or every server of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    Single,
    /// The `remote_servers` cluster the server's `cluster` macro names.
    Cluster(String),
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Topology::Single => f.write_str("a single server"),
            Topology::Cluster(name) => write!(f, "a server of cluster {name}"),
        }
    }
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct TextRow {
    text: String,
}

/// The topology of the ClickHouse server `cfg` points at: a cluster when
/// its configuration defines the `cluster` macro (besides `shard` and
/// `replica`), else a single server.
pub async fn clickhouse_topology(cfg: &ClickHouseConfig) -> Result<Topology, MigrateError> {
    server_topology(&cfg.server_client()).await.map_err(|source| MigrateError::ClickHouse {
        endpoint: cfg.endpoint(),
        context: "reading the server's macros (system.macros)".to_string(),
        source,
    })
}

/// Drops `cfg`'s database, `ON CLUSTER` on a server of a cluster (tests,
/// drills: the product never drops its database).
pub async fn drop_clickhouse_database(cfg: &ClickHouseConfig) -> Result<(), MigrateError> {
    let on_cluster = match clickhouse_topology(cfg).await? {
        Topology::Single => String::new(),
        Topology::Cluster(name) => format!(" ON CLUSTER {name}"),
    };
    let sql = format!("DROP DATABASE IF EXISTS {}{on_cluster}", cfg.database);
    match cfg.server_client().query(&sql).execute().await {
        // 18.16 leaves the directory of a Distributed table created as
        // `<t>__swap` and renamed (a column change, schemas/README.md) and
        // reports it, having dropped the database from every server.
        Err(clickhouse::error::Error::BadResponse(text))
            if !on_cluster.is_empty() && text.contains("Directory not empty") =>
        {
            Ok(())
        }
        outcome => outcome.map_err(|source| MigrateError::ClickHouse {
            endpoint: cfg.endpoint(),
            context: format!("dropping database {}", cfg.database),
            source,
        }),
    }
}

/// [`clickhouse_topology`] of the server `client` talks to.
pub async fn server_topology(client: &clickhouse::Client) -> Result<Topology, clickhouse::error::Error> {
    let rows: Vec<TextRow> =
        client.query("SELECT substitution AS text FROM system.macros WHERE macro = 'cluster'").fetch_all().await?;
    Ok(match rows.into_iter().next() {
        Some(row) if !row.text.is_empty() => Topology::Cluster(row.text),
        _ => Topology::Single,
    })
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct AppliedRow {
    version: u32,
    name: String,
    checksum: String,
}

/// [`apply_clickhouse`] with an explicit migration list (tests, tools).
pub async fn apply_clickhouse_migrations(
    cfg: &ClickHouseConfig,
    migrations: &[Migration],
) -> Result<Report, MigrateError> {
    let endpoint = cfg.endpoint();
    let database = checked_identifier("ClickHouse", &cfg.database)?;
    let ch_err = |context: String| {
        let endpoint = endpoint.clone();
        move |source| MigrateError::ClickHouse { endpoint, context, source }
    };

    let topology = clickhouse_topology(cfg).await?;
    let target = match &topology {
        Topology::Single => None,
        Topology::Cluster(cluster) => Some(cluster::Target { cluster, database }),
    };
    // The statements that apply one statement of a file here.
    let forms = |statement: &str| match &target {
        None => Ok(vec![statement.to_string()]),
        Some(target) => target.statements(statement),
    };
    let on_cluster = target.as_ref().map(|t| format!(" ON CLUSTER {}", t.cluster)).unwrap_or_default();
    cfg.server_client()
        .query_raw(&format!("CREATE DATABASE IF NOT EXISTS `{database}`{on_cluster}"))
        .execute()
        .await
        .map_err(ch_err(format!("creating database {database}")))?;

    // A backfill through a Distributed table is stored when the INSERT
    // returns (insert_distributed_sync, one of the client's defaults).
    let client = cfg.client();
    let bookkeeping = forms(CLICKHOUSE_SCHEMA_MIGRATIONS_DDL).map_err(|reason| MigrateError::ClusterForm {
        file: "schema_migrations".to_string(),
        statement: 1,
        reason,
    })?;
    for ddl in bookkeeping {
        client.query_raw(&ddl).execute().await.map_err(ch_err(format!("creating {database}.schema_migrations")))?;
    }
    let engine: Vec<TextRow> = client
        .query("SELECT engine AS text FROM system.tables WHERE database = currentDatabase() AND name = 'schema_migrations'")
        .fetch_all()
        .await
        .map_err(ch_err(format!("reading the engine of {database}.schema_migrations")))?;
    let replicated = engine.first().is_some_and(|row| row.text.starts_with("Replicated"));
    if replicated != target.is_some() {
        return Err(MigrateError::TopologyMismatch {
            endpoint: endpoint.clone(),
            database: database.to_string(),
            recorded: if replicated { "for a cluster" } else { "on a single server" }.to_string(),
            server: topology.to_string(),
        });
    }
    if target.is_some() {
        // What another server of the cluster recorded is read here once it has been fetched.
        client
            .query_raw("SYSTEM SYNC REPLICA schema_migrations")
            .execute()
            .await
            .map_err(ch_err(format!("syncing {database}.schema_migrations with its replicas")))?;
    }

    let rows: Vec<AppliedRow> = client
        .query("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        .fetch_all()
        .await
        .map_err(ch_err(format!("reading {database}.schema_migrations")))?;
    let applied: BTreeMap<u32, (String, String)> =
        rows.into_iter().map(|r| (r.version, (r.name, r.checksum))).collect();

    let mut report = Report::default();
    for migration in sorted(migrations) {
        let file = file_name("clickhouse", migration);
        let current = migration.checksum();
        if let Some((_, recorded)) = applied.get(&migration.version) {
            verify_checksum("ClickHouse", &file, recorded, &current)?;
            report.already += 1;
            continue;
        }

        let written = split_statements(migration.sql);
        if written.is_empty() {
            return Err(MigrateError::Empty { file });
        }
        let mut statements = Vec::new();
        for (index, statement) in written.iter().enumerate() {
            let form = forms(statement).map_err(|reason| MigrateError::ClusterForm {
                file: file.clone(),
                statement: index + 1,
                reason,
            })?;
            statements.extend(form);
        }
        let total = statements.len();
        for (index, statement) in statements.iter().enumerate() {
            client.query_raw(statement).execute().await.map_err(|source| MigrateError::ClickHouseMigration {
                file: file.clone(),
                endpoint: endpoint.clone(),
                statement: index + 1,
                statements: total,
                source,
            })?;
        }

        client
            .query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, now())")
            .bind(migration.version)
            .bind(migration.name)
            .bind(current.as_str())
            .execute()
            .await
            .map_err(ch_err(format!("recording {file} in {database}.schema_migrations")))?;
        tracing::info!(engine = "clickhouse", %database, %topology, file = %file, "migration applied");
        report.applied.push((migration.version, migration.name.to_string()));
    }
    Ok(report)
}

/// [`apply_postgres`] with an explicit migration list (tests, tools).
pub async fn apply_postgres_migrations(cfg: &PostgresConfig, migrations: &[Migration]) -> Result<Report, MigrateError> {
    let pg_err = |context: &str| {
        let context = context.to_string();
        move |source: tokio_postgres::Error| MigrateError::Postgres {
            context,
            message: postgres_message(&source),
            source,
        }
    };

    let settings = crate::tls::postgres::settings(&cfg.url, cfg.ca_file.as_deref())
        .map_err(|e| MigrateError::PostgresSettings(format!("DATABASE_URL (postgres.url): {e:#}")))?;
    let (mut pg_config, tls) = (settings.config, settings.tls);
    if !cfg.connect_timeout.is_zero() {
        pg_config.connect_timeout(cfg.connect_timeout);
    }
    let target = describe_postgres(&pg_config);
    let (mut client, connection) = pg_config.connect(tls).await.map_err(pg_err(&format!("connecting to {target}")))?;
    let connection = tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %err, "PostgreSQL migration connection ended with an error");
        }
    });

    let result = async {
        client
            .batch_execute(POSTGRES_SCHEMA_MIGRATIONS_DDL)
            .await
            .map_err(pg_err(&format!("creating schema_migrations in {target}")))?;
        // Serialise concurrent runners (several services starting at once).
        client
            .execute("SELECT pg_advisory_lock($1)", &[&POSTGRES_LOCK_KEY])
            .await
            .map_err(pg_err("taking the migration advisory lock"))?;

        let outcome = async {
            let rows = client
                .query("SELECT version, checksum FROM schema_migrations ORDER BY version", &[])
                .await
                .map_err(pg_err(&format!("reading schema_migrations in {target}")))?;
            let applied: BTreeMap<u32, String> =
                rows.iter().map(|row| (row.get::<_, i32>(0) as u32, row.get::<_, String>(1))).collect();

            let mut report = Report::default();
            for migration in sorted(migrations) {
                let file = file_name("postgres", migration);
                let current = migration.checksum();
                if let Some(recorded) = applied.get(&migration.version) {
                    verify_checksum("PostgreSQL", &file, recorded, &current)?;
                    report.already += 1;
                    continue;
                }
                if split_statements(migration.sql).is_empty() {
                    return Err(MigrateError::Empty { file });
                }

                let migration_err = |source: tokio_postgres::Error| MigrateError::PostgresMigration {
                    file: file.clone(),
                    message: postgres_message(&source),
                    source,
                };
                let tx = client.transaction().await.map_err(migration_err)?;
                tx.batch_execute(migration.sql).await.map_err(migration_err)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    &[&(migration.version as i32), &migration.name, &current],
                )
                .await
                .map_err(migration_err)?;
                tx.commit().await.map_err(migration_err)?;
                tracing::info!(engine = "postgres", file = %file, "migration applied");
                report.applied.push((migration.version, migration.name.to_string()));
            }
            Ok(report)
        }
        .await;

        // Released with the session anyway; unlocking explicitly keeps it short.
        let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&POSTGRES_LOCK_KEY]).await;
        outcome
    }
    .await;

    drop(client);
    let _ = connection.await;
    result
}

/// Splits SQL text into statements, dropping comments.
///
/// A statement ends at `;` outside string literals, quoted identifiers and
/// comments (the rule in `schemas/README.md` is: end each statement with `;` at
/// the end of a line). `--` and `/* */` comments are removed, blank statements
/// skipped. `schemas/check_chdb.py` splits the same way.
pub fn split_statements(sql: &str) -> Vec<String> {
    let bytes = sql.as_bytes();
    let n = bytes.len();
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut i = 0;

    fn finish(current: &mut String, statements: &mut Vec<String>) {
        let statement = current.trim();
        if !statement.is_empty() {
            statements.push(statement.to_string());
        }
        current.clear();
    }

    // Every byte the scan stops at is ASCII, so each slice is whole characters.
    while i < n {
        match bytes[i] {
            b'\'' | b'"' | b'`' => {
                let end = end_of_quoted(bytes, i);
                current.push_str(&sql[i..end]);
                i = end;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < n && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut j = i + 2;
                while j + 1 < n && !(bytes[j] == b'*' && bytes[j + 1] == b'/') {
                    j += 1;
                }
                i = (j + 2).min(n);
                current.push(' ');
            }
            b';' => {
                finish(&mut current, &mut statements);
                i += 1;
            }
            _ => {
                let special = |b: &u8| matches!(b, b'\'' | b'"' | b'`' | b'-' | b'/' | b';');
                let end = bytes[i + 1..].iter().position(special).map_or(n, |p| i + 1 + p);
                current.push_str(&sql[i..end]);
                i = end;
            }
        }
    }
    finish(&mut current, &mut statements);
    statements
}

/// The index past the quoted literal that starts at `start` (a doubled
/// quote or a backslash escape stays inside; unterminated: the end).
fn end_of_quoted(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn checksum(sql: &str) -> String {
    let normalised = sql.replace("\r\n", "\n");
    let digest = Sha256::digest(normalised.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn verify_checksum(engine: &'static str, file: &str, recorded: &str, current: &str) -> Result<(), MigrateError> {
    if recorded == current {
        return Ok(());
    }
    Err(MigrateError::ChecksumMismatch {
        engine,
        file: file.to_string(),
        recorded: recorded.to_string(),
        current: current.to_string(),
    })
}

fn sorted(migrations: &[Migration]) -> Vec<&Migration> {
    let mut list: Vec<&Migration> = migrations.iter().collect();
    list.sort_by_key(|m| m.version);
    list
}

fn file_name(engine: &str, migration: &Migration) -> String {
    format!("schemas/{engine}/{}.sql", migration.name)
}

fn checked_identifier<'a>(engine: &'static str, name: &'a str) -> Result<&'a str, MigrateError> {
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if valid { Ok(name) } else { Err(MigrateError::InvalidDatabaseName { engine, name: name.to_string() }) }
}

/// The server's message (with detail and hint) rather than tokio-postgres's
/// terse "db error".
fn postgres_message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut message = format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                let _ = write!(message, "; detail: {detail}");
            }
            if let Some(hint) = db.hint() {
                let _ = write!(message, "; hint: {hint}");
            }
            message
        }
        None => {
            let mut message = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(inner) = source {
                let _ = write!(message, ": {inner}");
                source = inner.source();
            }
            message
        }
    }
}

/// `analytics@127.0.0.1:5432/analytics`, without the password.
fn describe_postgres(cfg: &tokio_postgres::Config) -> String {
    let host = cfg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        cfg.get_user().unwrap_or("?"),
        cfg.get_dbname().unwrap_or(cfg.get_user().unwrap_or("?"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_outside_literals_and_drops_comments() {
        let sql = "-- header; not a statement\nCREATE TABLE a (x String DEFAULT ';') ENGINE = Memory; -- trailing\n\n\
                   /* block; comment */ SELECT 'it''s;' , `we;ird`;\n-- only a comment\n";
        assert_eq!(
            split_statements(sql),
            vec!["CREATE TABLE a (x String DEFAULT ';') ENGINE = Memory", "SELECT 'it''s;' , `we;ird`"]
        );
    }

    #[test]
    fn non_ascii_text_stays_whole() {
        assert_eq!(
            split_statements("SELECT 'é;ü' AS «x», y - 1 / 2 -- ü;\n; SELECT ü"),
            vec!["SELECT 'é;ü' AS «x», y - 1 / 2", "SELECT ü"]
        );
    }

    #[test]
    fn statement_without_final_semicolon_is_kept() {
        assert_eq!(split_statements("SELECT 1"), vec!["SELECT 1"]);
        assert!(split_statements("-- nothing\n\n  ;\n").is_empty());
    }

    #[test]
    fn embedded_migrations_are_numbered_in_order() {
        for list in [clickhouse_migrations(), postgres_migrations()] {
            for (index, migration) in list.iter().enumerate() {
                assert_eq!(migration.version as usize, index + 1, "{}", migration.name);
                assert!(migration.name.starts_with(&format!("{:04}_", migration.version)), "{}", migration.name);
                assert!(!split_statements(migration.sql).is_empty(), "{} is empty", migration.name);
            }
        }
    }

    #[test]
    fn checksum_is_hex_sha256_and_ignores_crlf() {
        assert_eq!(checksum(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(checksum("a\r\nb"), checksum("a\nb"));
    }

    #[test]
    fn database_names_must_be_plain_identifiers() {
        assert!(checked_identifier("ClickHouse", "analytics").is_ok());
        assert!(checked_identifier("ClickHouse", "test_0af3").is_ok());
        for bad in ["", "a-b", "a`b", "1abc", "a b"] {
            assert!(checked_identifier("ClickHouse", bad).is_err(), "{bad}");
        }
    }
}
