//! The cluster form of the ClickHouse migrations: one set of files in
//! `schemas/clickhouse/`, written for one server, and the rule that turns
//! each statement into the statements a sharded, replicated cluster needs.
//!
//! The runner uses this form when the server it is connected to defines
//! the `cluster` macro (its `remote_servers` cluster, with `shard` and
//! `replica` macros per server): every statement then runs `ON CLUSTER
//! <cluster>` and reaches every server through ZooKeeper.
//!
//! Where a table's rows live is its [`Placement`] ([`PLACEMENTS`]):
//!
//! - [`Placement::Sharded`]: `CREATE TABLE t … ENGINE = XMergeTree(args)`
//!   becomes `t_local`, `ReplicatedXMergeTree('/clickhouse/tables/{cluster}/{shard}/<db>/t_local',
//!   '{replica}', args)` on every server (the two replicas of a shard hold
//!   the same rows), and `t`, `Distributed(<cluster>, <db>, t_local, <key>)`
//!   in front of it: writers and readers keep using `t`, an insert sends each
//!   row to one replica of the shard its key chooses, a read asks one replica
//!   of every shard.
//! - [`Placement::Everywhere`]: `t` itself becomes
//!   `ReplicatedXMergeTree('/clickhouse/tables/{cluster}/all/<db>/t', '{replica}', args)`
//!   with a replica on every server: small tables every server reads whole
//!   (bookkeeping), with no `Distributed` table.
//!
//! The other statements follow the tables:
//!
//! - `CREATE MATERIALIZED VIEW v TO t AS SELECT … FROM s`: on every server,
//!   from `s_local` into `t_local` (a view runs on the replica that receives
//!   an insert; replication copies its output like any insert). A view's
//!   target must be sharded by the same key as its source (or be everywhere),
//!   so that its rows stay where the view writes them.
//! - `ALTER TABLE t …` of a sharded table: on `t_local` `ON CLUSTER` (run by
//!   one replica per shard, replicated to the other); a column change also
//!   swaps in a new `Distributed` table with the new columns (created beside,
//!   then `RENAME`d over the old one, so `t` never disappears). Of an
//!   everywhere table: on `t` on this server, replicated to all.
//! - `INSERT INTO t SELECT … FROM s` (a backfill): unchanged, through the
//!   `Distributed` tables, run with `insert_distributed_sync = 1`.
//! - `DROP TABLE t`: the table (and its `_local`) `ON CLUSTER`.
//!
//! Anything else is refused with the reason, rather than guessed at.

use super::end_of_quoted;

/// The sharding key of the tables of views: every copy of an event and
/// every event of a view (`video_id`, `session_id`) share the `session_id`,
/// so deduplication by `event_id` and the reconstruction of a view read one
/// shard's rows.
pub const VIEW_KEY: &str = "cityHash64(session_id)";
/// The sharding key of per-video aggregates: every version of a row keyed by
/// video lives on one shard, so `FINAL` and `argMax` per key are exact.
pub const VIDEO_KEY: &str = "cityHash64(video_id)";
/// The sharding key of per-user aggregates.
pub const USER_KEY: &str = "cityHash64(user_id)";
/// The sharding key of per-hour tables (the custom query's rollup): every
/// version of an hour's rows lives on one shard.
pub const HOUR_KEY: &str = "cityHash64(hour)";

/// Where a table's rows live in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Spread over the shards by this expression: `<table>_local` on every
    /// server and a `Distributed` `<table>` in front.
    Sharded(&'static str),
    /// A replica of the whole table on every server.
    Everywhere,
}

/// Every table the migrations create, and where its rows live. A migration
/// that creates a table must add it here (a test checks).
pub static PLACEMENTS: &[(&str, Placement)] = &[
    // Events and their copies made by materialized views: by session.
    ("events", Placement::Sharded(VIEW_KEY)),
    ("events_by_receipt", Placement::Sharded(VIEW_KEY)),
    ("views_by_user", Placement::Sharded(VIEW_KEY)),
    ("keys_by_day", Placement::Sharded(VIEW_KEY)),
    ("keys_by_day_v2", Placement::Sharded(VIEW_KEY)),
    ("keys_by_insert", Placement::Sharded(VIEW_KEY)),
    ("events_by_time", Placement::Sharded(VIEW_KEY)),
    ("events_by_time_v2", Placement::Sharded(VIEW_KEY)),
    // Facts of views, every version of a view beside the view's events.
    ("view_facts", Placement::Sharded(VIEW_KEY)),
    ("view_facts_v2", Placement::Sharded(VIEW_KEY)),
    // Aggregates, each by its key.
    ("video_metrics", Placement::Sharded(VIDEO_KEY)),
    ("video_hour_totals", Placement::Sharded(VIDEO_KEY)),
    ("video_hour_metrics", Placement::Sharded(VIDEO_KEY)),
    ("video_day_totals", Placement::Sharded(VIDEO_KEY)),
    ("user_engagement_daily", Placement::Sharded(USER_KEY)),
    // Their copies for one key's reads, beside their sources (0016).
    ("video_metrics_lookup", Placement::Sharded(VIDEO_KEY)),
    ("user_engagement_lookup", Placement::Sharded(USER_KEY)),
    // The custom query's hourly rollup, and the last insert per hour: its
    // view writes on the shard that stored the events, into a replica on
    // every server, so any server holds every hour's newest insert (0017).
    ("events_hourly", Placement::Sharded(HOUR_KEY)),
    ("event_hour_inserts", Placement::Everywhere),
    // Bookkeeping: a few rows per window or pass, read whole.
    ("aggregation_windows", Placement::Everywhere),
    ("view_facts_passes", Placement::Everywhere),
    ("video_day_rollups", Placement::Everywhere),
    ("schema_migrations", Placement::Everywhere),
];

/// Tables of [`PLACEMENTS`] that a later migration drops: their creating
/// migrations still run on a new cluster, but no server has them once every
/// migration ran (`0012_events_by_time_v2` replaced `events_by_time`,
/// `0014_keys_by_day_v2` replaced `keys_by_day`, `0015_view_facts_v2`
/// replaced `view_facts`).
pub static RETIRED: &[&str] = &["events_by_time", "keys_by_day", "view_facts"];

/// Where `table`'s rows live, if it is one of the migrations' tables.
pub fn placement(table: &str) -> Option<Placement> {
    PLACEMENTS.iter().find(|(name, _)| *name == table).map(|(_, placement)| *placement)
}

/// The table holding a sharded table's rows on each server: `<table>_local`.
pub fn local_name(table: &str) -> String {
    format!("{table}_local")
}

/// The cluster a migration runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The `remote_servers` cluster (`ON CLUSTER`, `Distributed`).
    pub cluster: &'a str,
    /// The database the migrations are applied to.
    pub database: &'a str,
}

impl Target<'_> {
    /// The statements that apply `statement` (one statement of a migration
    /// file, as [`super::split_statements`] returns it) to the cluster, in order.
    pub fn statements(&self, statement: &str) -> Result<Vec<String>, String> {
        let words = Words::new(statement);
        match words.keywords(3).as_slice() {
            [create, table, ..] if create == "CREATE" && table == "TABLE" => self.create_table(statement),
            [create, materialized, view] if create == "CREATE" && materialized == "MATERIALIZED" && view == "VIEW" => {
                self.create_view(statement)
            }
            [alter, table, ..] if alter == "ALTER" && table == "TABLE" => self.alter_table(statement),
            [insert, into, ..] if insert == "INSERT" && into == "INTO" => Ok(vec![statement.to_string()]),
            [drop, table, ..] if drop == "DROP" && table == "TABLE" => self.drop_table(statement),
            _ => Err("only CREATE TABLE, CREATE MATERIALIZED VIEW, ALTER TABLE, INSERT INTO and DROP TABLE \
                      statements have a cluster form (schemas/README.md, \"Cluster mode\")"
                .to_string()),
        }
    }

    fn on_cluster(&self) -> String {
        format!("ON CLUSTER {}", self.cluster)
    }

    /// `<database>.<name>`: a statement run `ON CLUSTER` names its tables
    /// fully, since each server runs it outside this session.
    fn qualified(&self, name: &str) -> String {
        format!("{}.{name}", self.database)
    }

    /// `name`: a `Distributed` table over `table`'s local tables.
    fn distributed(&self, name: &str, table: &str, key: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} {} AS {} ENGINE = Distributed({}, {}, {local}, {key})",
            self.qualified(name),
            self.on_cluster(),
            self.qualified(&local_name(table)),
            self.cluster,
            self.database,
            local = local_name(table)
        )
    }

    /// `CREATE TABLE [IF NOT EXISTS] t (…) ENGINE = XMergeTree(args) rest`.
    fn create_table(&self, statement: &str) -> Result<Vec<String>, String> {
        let (table, after) = object_name(statement, &["CREATE", "TABLE"])?;
        let placement = known(&table)?;
        let engine_at = find_keyword(after, "ENGINE").ok_or("no ENGINE clause")?;
        let (columns, engine_clause) = after.split_at(engine_at);
        let engine_clause = engine_clause["ENGINE".len()..].trim_start();
        let engine_clause = engine_clause.strip_prefix('=').ok_or("ENGINE without `=`")?.trim_start();
        let name_end =
            engine_clause.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(engine_clause.len());
        let (engine, rest) = engine_clause.split_at(name_end);
        if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
            return Err(format!("table {table}: engine {engine} is not a plain *MergeTree engine"));
        }
        let (arguments, tail) = match rest.trim_start().strip_prefix('(') {
            Some(open) => {
                let close = closing_parenthesis(open).ok_or("unbalanced parentheses after the engine")?;
                (open[..close].trim(), &open[close + 1..])
            }
            None => ("", rest),
        };
        let (name, path) = match placement {
            Placement::Sharded(_) => {
                (local_name(&table), format!("{{shard}}/{}/{}", self.database, local_name(&table)))
            }
            Placement::Everywhere => (table.clone(), format!("all/{}/{table}", self.database)),
        };
        let mut replicated = format!("'/clickhouse/tables/{{cluster}}/{path}', '{{replica}}'");
        if !arguments.is_empty() {
            replicated.push_str(", ");
            replicated.push_str(arguments);
        }
        let mut statements = vec![format!(
            "CREATE TABLE IF NOT EXISTS {} {} {} ENGINE = Replicated{engine}({replicated}) {}",
            self.qualified(&name),
            self.on_cluster(),
            columns.trim(),
            tail.trim()
        )];
        if let Placement::Sharded(key) = placement {
            statements.push(self.distributed(&table, &table, key));
        }
        Ok(statements)
    }

    /// `CREATE MATERIALIZED VIEW [IF NOT EXISTS] v TO t AS SELECT … FROM s …`.
    fn create_view(&self, statement: &str) -> Result<Vec<String>, String> {
        let (view, after) = object_name(statement, &["CREATE", "MATERIALIZED", "VIEW"])?;
        let after = after.trim_start();
        let to = Words::new(after);
        if to.keywords(1) != ["TO"] {
            return Err(format!("materialized view {view}: only `TO <table>` views have a cluster form"));
        }
        let (target, select) = object_name(after, &["TO"])?;
        let target_placement = known(&target)?;
        let select = select.trim_start();
        if Words::new(select).keywords(1) != ["AS"] {
            return Err(format!("materialized view {view}: `AS SELECT` expected after `TO {target}`"));
        }
        let mut sources = Vec::new();
        let select = self.rename_sources(select, &mut sources)?;
        for source in &sources {
            let source_placement = known(source)?;
            match (source_placement, target_placement) {
                (_, Placement::Everywhere) => {}
                (Placement::Sharded(from), Placement::Sharded(to)) if from == to => {}
                _ => {
                    return Err(format!(
                        "materialized view {view}: it writes on the shard of each row of {source} ({source_placement:?}), \
                         so its target {target} must be placed the same way or everywhere, not {target_placement:?}"
                    ));
                }
            }
        }
        let target = match target_placement {
            Placement::Sharded(_) => local_name(&target),
            Placement::Everywhere => target,
        };
        Ok(vec![format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {} {} TO {} {select}",
            self.qualified(&view),
            self.on_cluster(),
            self.qualified(&target)
        )])
    }

    /// The `FROM` and `JOIN` sources of a view's query, fully named and
    /// renamed to their `_local` tables where sharded; `sources` receives
    /// the names as written.
    fn rename_sources(&self, select: &str, sources: &mut Vec<String>) -> Result<String, String> {
        let words = Words::new(select);
        let mut out = String::with_capacity(select.len() + 16);
        let mut copied = 0;
        for pair in words.spans.windows(2) {
            let (keyword, name) = (&select[pair[0].0..pair[0].1], &select[pair[1].0..pair[1].1]);
            if !(keyword.eq_ignore_ascii_case("FROM") || keyword.eq_ignore_ascii_case("JOIN")) {
                continue;
            }
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("a view may read tables only, by plain name (found `{keyword} {name}`)"));
            }
            sources.push(name.to_string());
            let stored = match known(name)? {
                Placement::Sharded(_) => local_name(name),
                Placement::Everywhere => name.to_string(),
            };
            out.push_str(&select[copied..pair[1].0]);
            out.push_str(&self.qualified(&stored));
            copied = pair[1].1;
        }
        out.push_str(&select[copied..]);
        Ok(out)
    }

    /// `ALTER TABLE t …`.
    fn alter_table(&self, statement: &str) -> Result<Vec<String>, String> {
        let (table, change) = object_name(statement, &["ALTER", "TABLE"])?;
        let change = change.trim();
        match known(&table)? {
            // Replicated: ZooKeeper carries it to every replica.
            Placement::Everywhere => Ok(vec![format!("ALTER TABLE {} {change}", self.qualified(&table))]),
            Placement::Sharded(key) => {
                let local = self.qualified(&local_name(&table));
                let mut statements = vec![format!("ALTER TABLE {local} {} {change}", self.on_cluster())];
                let upper = change.to_ascii_uppercase();
                let columns_change =
                    ["ADD COLUMN", "DROP COLUMN", "MODIFY COLUMN", "RENAME COLUMN"].iter().any(|c| upper.contains(c));
                if columns_change {
                    // ClickHouse 18.16 refuses ALTER ON CLUSTER of a Distributed table on a cluster
                    // with internal replication; a new one is swapped in instead. Every step may
                    // be repeated after a failure.
                    let on_cluster = self.on_cluster();
                    let (swap, old) = (format!("{table}__swap"), format!("{table}__old"));
                    let [table_q, swap_q, old_q] = [&table, &swap, &old].map(|name| self.qualified(name));
                    statements.extend([
                        format!("DROP TABLE IF EXISTS {old_q} {on_cluster}"),
                        format!("DROP TABLE IF EXISTS {swap_q} {on_cluster}"),
                        self.distributed(&swap, &table, key),
                        format!("RENAME TABLE {table_q} TO {old_q}, {swap_q} TO {table_q} {on_cluster}"),
                        format!("DROP TABLE IF EXISTS {old_q} {on_cluster}"),
                    ]);
                }
                Ok(statements)
            }
        }
    }

    /// `DROP TABLE [IF EXISTS] t`.
    fn drop_table(&self, statement: &str) -> Result<Vec<String>, String> {
        let (table, rest) = object_name(statement, &["DROP", "TABLE"])?;
        if !rest.trim().is_empty() {
            return Err(format!("DROP TABLE {table}: nothing may follow the table's name"));
        }
        let drop = |name: &str| format!("DROP TABLE IF EXISTS {} {}", self.qualified(name), self.on_cluster());
        Ok(match placement(&table) {
            Some(Placement::Sharded(_)) => vec![drop(&table), drop(&local_name(&table))],
            Some(Placement::Everywhere) | None => vec![drop(&table)],
        })
    }
}

fn known(table: &str) -> Result<Placement, String> {
    placement(table).ok_or_else(|| {
        format!(
            "table {table} has no placement: add it to PLACEMENTS in crates/service-kit/src/migrate/cluster.rs \
             (sharded by which key, or everywhere)"
        )
    })
}

/// After the keywords `prefix` (and an optional `IF [NOT] EXISTS`), the
/// object's name and the text after it.
fn object_name<'a>(statement: &'a str, prefix: &[&str]) -> Result<(String, &'a str), String> {
    let mut rest = statement.trim_start();
    for keyword in prefix.iter().copied().chain(["IF", "NOT", "EXISTS"]) {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if rest[..word_end].eq_ignore_ascii_case(keyword) {
            rest = rest[word_end..].trim_start();
        } else if prefix.contains(&keyword) {
            return Err(format!("`{keyword}` expected"));
        }
    }
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
    let name = &rest[..end];
    let qualified = rest[end..].starts_with(['.', '`', '"']);
    if name.is_empty() || qualified || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("a plain table name expected after {} (no database, no quotes)", prefix.join(" ")));
    }
    Ok((name.to_string(), &rest[end..]))
}

/// The top-level words of a statement (outside quotes and parentheses; a
/// parenthesised group is one word), with their byte spans.
struct Words<'a> {
    text: &'a str,
    spans: Vec<(usize, usize)>,
}

impl<'a> Words<'a> {
    fn new(text: &'a str) -> Self {
        let bytes = text.as_bytes();
        let mut spans = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                match bytes[i] {
                    b'(' => i = start_of_rest(text, i),
                    b'\'' | b'"' | b'`' => i = end_of_quoted(bytes, i),
                    _ => i += 1,
                }
            }
            spans.push((start, i));
        }
        Self { text, spans }
    }

    /// The first `n` words, upper-cased.
    fn keywords(&self, n: usize) -> Vec<String> {
        self.spans.iter().take(n).map(|&(s, e)| self.text[s..e].to_ascii_uppercase()).collect()
    }
}

/// After the group opened at `open`: the index past its closing parenthesis.
fn start_of_rest(text: &str, open: usize) -> usize {
    closing_parenthesis(&text[open + 1..]).map_or(text.len(), |close| open + 1 + close + 1)
}

/// The index of the `)` closing a group whose `(` precedes `text`.
fn closing_parenthesis(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' | b'`' => {
                i = end_of_quoted(bytes, i);
                continue;
            }
            b'(' => depth += 1,
            b')' if depth == 0 => return Some(i),
            b')' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The byte index of `keyword` as a top-level word of `text`.
fn find_keyword(text: &str, keyword: &str) -> Option<usize> {
    Words::new(text).spans.iter().find(|&&(s, e)| text[s..e].eq_ignore_ascii_case(keyword)).map(|&(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::{clickhouse_migrations, split_statements};

    const TARGET: Target<'static> = Target { cluster: "analytics", database: "db" };

    fn one_line(sql: &str) -> String {
        sql.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn a_sharded_table_becomes_replicated_local_tables_and_a_distributed_table() {
        let sql = "CREATE TABLE IF NOT EXISTS view_facts\n(\n    video_id String,\n    version UInt64\n)\n\
                   ENGINE = ReplacingMergeTree(version)\nPARTITION BY toYYYYMMDD(date)\nORDER BY (video_id, version)";
        let out: Vec<String> = TARGET.statements(sql).unwrap().iter().map(|s| one_line(s)).collect();
        assert_eq!(
            out,
            [
                "CREATE TABLE IF NOT EXISTS db.view_facts_local ON CLUSTER analytics ( video_id String, version UInt64 ) \
                 ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{cluster}/{shard}/db/view_facts_local', \
                 '{replica}', version) PARTITION BY toYYYYMMDD(date) ORDER BY (video_id, version)",
                "CREATE TABLE IF NOT EXISTS db.view_facts ON CLUSTER analytics AS db.view_facts_local \
                 ENGINE = Distributed(analytics, db, view_facts_local, cityHash64(session_id))",
            ]
        );
    }

    #[test]
    fn an_everywhere_table_is_one_replicated_table_on_every_server() {
        let sql = "CREATE TABLE IF NOT EXISTS aggregation_windows (job String) ENGINE = MergeTree() ORDER BY job";
        assert_eq!(
            TARGET.statements(sql).unwrap(),
            ["CREATE TABLE IF NOT EXISTS db.aggregation_windows ON CLUSTER analytics (job String) \
              ENGINE = ReplicatedMergeTree('/clickhouse/tables/{cluster}/all/db/aggregation_windows', '{replica}') \
              ORDER BY job"]
        );
        assert_eq!(TARGET.statements("ALTER TABLE aggregation_windows ADD COLUMN x UInt8").unwrap().len(), 1);
    }

    #[test]
    fn a_view_reads_and_writes_the_local_tables() {
        let sql = "CREATE MATERIALIZED VIEW IF NOT EXISTS keys_by_insert_mv TO keys_by_insert\n\
                   AS SELECT inserted_at, video_id, session_id\nFROM events\nGROUP BY inserted_at, video_id, session_id";
        assert_eq!(
            one_line(&TARGET.statements(sql).unwrap()[0]),
            "CREATE MATERIALIZED VIEW IF NOT EXISTS db.keys_by_insert_mv ON CLUSTER analytics \
             TO db.keys_by_insert_local AS SELECT inserted_at, video_id, session_id FROM db.events_local \
             GROUP BY inserted_at, video_id, session_id"
        );
        let elsewhere = "CREATE MATERIALIZED VIEW v TO video_metrics AS SELECT video_id FROM events";
        let err = TARGET.statements(elsewhere).unwrap_err();
        assert!(err.contains("must be placed the same way"), "{err}");
    }

    #[test]
    fn a_column_change_swaps_in_a_new_distributed_table() {
        let out = TARGET.statements("ALTER TABLE events ADD COLUMN inserted_at DateTime DEFAULT now()").unwrap();
        assert_eq!(
            out[0],
            "ALTER TABLE db.events_local ON CLUSTER analytics ADD COLUMN inserted_at DateTime DEFAULT now()"
        );
        assert!(
            out[3].starts_with("CREATE TABLE IF NOT EXISTS db.events__swap ON CLUSTER analytics AS db.events_local ")
        );
        assert_eq!(
            out[4],
            "RENAME TABLE db.events TO db.events__old, db.events__swap TO db.events ON CLUSTER analytics"
        );
        assert_eq!(out.len(), 6);
        let partition = TARGET.statements("ALTER TABLE events DROP PARTITION 202401").unwrap();
        assert_eq!(partition, ["ALTER TABLE db.events_local ON CLUSTER analytics DROP PARTITION 202401"]);
    }

    #[test]
    fn what_has_no_cluster_form_is_refused_with_the_reason() {
        for (sql, reason) in [
            ("CREATE TABLE novel (x UInt8) ENGINE = MergeTree() ORDER BY x", "has no placement"),
            ("CREATE TABLE events (x UInt8) ENGINE = Memory", "not a plain *MergeTree"),
            ("CREATE TABLE analytics.events (x UInt8) ENGINE = MergeTree() ORDER BY x", "plain table name"),
            ("OPTIMIZE TABLE events FINAL", "only CREATE TABLE"),
            ("CREATE MATERIALIZED VIEW v ENGINE = MergeTree() ORDER BY x AS SELECT 1", "only `TO <table>`"),
        ] {
            let err = TARGET.statements(sql).unwrap_err();
            assert!(err.contains(reason), "{sql}: {err}");
        }
    }

    /// Every statement of every migration has a cluster form, and every
    /// table a migration creates has a placement.
    #[test]
    fn every_migration_has_a_cluster_form() {
        for migration in clickhouse_migrations() {
            for statement in split_statements(migration.sql) {
                let out =
                    TARGET.statements(&statement).unwrap_or_else(|e| panic!("{}: {e}\n{statement}", migration.name));
                assert!(!out.is_empty());
            }
        }
        let created: Vec<String> = clickhouse_migrations()
            .iter()
            .flat_map(|m| split_statements(m.sql))
            .filter_map(|s| object_name(&s, &["CREATE", "TABLE"]).ok().map(|(name, _)| name))
            .collect();
        for (name, _) in PLACEMENTS.iter().filter(|(name, _)| *name != "schema_migrations") {
            assert!(created.iter().any(|c| c == name), "{name} is placed but no migration creates it");
        }
        let dropped: Vec<String> = clickhouse_migrations()
            .iter()
            .flat_map(|m| split_statements(m.sql))
            .filter_map(|s| object_name(&s, &["DROP", "TABLE"]).ok().map(|(name, _)| name))
            .collect();
        for name in RETIRED {
            assert!(placement(name).is_some(), "{name} is retired but was never placed");
            assert!(dropped.iter().any(|d| d == name), "{name} is retired but no migration drops it");
        }
    }
}
