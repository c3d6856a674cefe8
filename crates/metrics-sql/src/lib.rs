//! The metrics core: every metric of `docs/metrics.md`, defined once.
//!
//! query-api, aggregator-cron and realtime-hub are thin adapters over this
//! crate: it holds each metric's ClickHouse SQL, the formulas that finish a
//! metric after its SQL returns, and the answer types the endpoints send, so
//! that a pre-aggregated window and the same window computed from the raw
//! events, and the API's and the hub's realtime figures, cannot disagree:
//!
//! - [`views`]: the per-view facts every metric is built from;
//! - [`facts`]: those facts stored by aggregator-cron's facts pass for the
//!   windows still open to late events, and the reads over them;
//! - [`rows`]: the rows of `video_metrics` and `user_engagement_daily`, and
//!   the statements aggregator-cron runs to (re)build a window (built on
//!   [`views`]);
//! - [`read`]: the query API's reads, merging aggregated and raw windows;
//! - [`days`]: per-day totals of final hours, rolled up by aggregator-cron
//!   for top videos' whole days;
//! - [`windows`]: jobs, window grain, day ranges, and which windows are up
//!   to date;
//! - [`custom`]: the custom-query vocabulary (metrics, dimensions,
//!   granularities, filter operators, the metrics' additive parts) and the
//!   static SQL of each;
//! - [`hourly`]: the custom query's exact hourly rollup by dimension, built
//!   by aggregator-cron, and which hours a read may take from it;
//! - [`formulas`]: the finishing formulas (engagement score, ratios,
//!   averages, preferences, realtime rates) from a read's rows to an answer;
//! - [`responses`]: the answers themselves (the JSON of the metric endpoints
//!   and of the hub's realtime payload, with their OpenAPI schemas).
//!
//! Every statement runs on ClickHouse 18.16 and on a current ClickHouse (the
//! tests run them on both). Values are never spliced into SQL: a
//! [`Statement`] carries `?` placeholders with their values and binds them
//! through `clickhouse::Query::bind`.

pub mod custom;
pub mod days;
pub mod facts;
pub mod formulas;
pub mod hourly;
pub mod read;
pub mod responses;
pub mod rows;
mod statement;
pub mod views;
pub mod windows;

use events_model::EVENTS_TABLE;

pub use statement::{Param, Statement};

/// `SELECT {columns} FROM events WHERE {filter}`, keeping one copy of each
/// `event_id` (the first received). Storage is at-least-once, so every query
/// that counts reads events through this.
///
/// `columns` must include nothing computed from other rows; `filter` is a
/// static SQL condition (with `?` placeholders for values).
pub fn deduplicated_events(columns: &str, filter: &str) -> String {
    deduplicated_rows(EVENTS_TABLE, columns, filter)
}

/// The copy of `events`' realtime columns sorted by receive time
/// (`schemas/clickhouse/0004_events_by_receipt.sql`), for receive-time ranges.
pub const EVENTS_BY_RECEIPT_TABLE: &str = "events_by_receipt";

/// A copy of `events`' view-fact and custom-query columns clustered by client
/// time, for the lateness horizon and the day before it
/// (`schemas/clickhouse/0012_events_by_time_v2.sql`, which replaced 0008's
/// `events_by_time`): rebuilds of every video's open windows, the facts pass
/// and custom queries over recent ranges read a time range of it.
pub const EVENTS_BY_TIME_TABLE: &str = "events_by_time_v2";

/// Which `(session_id, video_id)` keys each user had, by day
/// (`schemas/clickhouse/0005_views_by_user.sql`): the user scope's index.
pub const VIEWS_BY_USER_TABLE: &str = "views_by_user";

/// Per view key and day, its `video_start` times and last insert times
/// (`schemas/clickhouse/0014_keys_by_day_v2.sql`): the freshness check's index.
pub const KEYS_BY_DAY_TABLE: &str = "keys_by_day_v2";

/// `video_metrics` in granules of 256 rows, filled from it by a view
/// (`schemas/clickhouse/0016_aggregate_lookups.sql`): one video's hours.
pub const VIDEO_METRICS_LOOKUP_TABLE: &str = "video_metrics_lookup";

/// `user_engagement_daily` in granules of 256 rows, likewise: one user's days.
pub const USER_ENGAGEMENT_LOOKUP_TABLE: &str = "user_engagement_lookup";

/// The client time (epoch ms) from which [`EVENTS_BY_TIME_TABLE`] holds
/// every event, at `now_ms` with the lateness horizon `lateness_ms`: a day
/// before the horizon. aggregator-cron keeps the copy for at least the
/// lateness plus two days (`retention.events_by_time_days`, checked at its
/// start), and the migration that made it copied the four days before it
/// (enough for the default 48 h lateness and for 72 h).
pub fn by_time_holds_from_ms(now_ms: u64, lateness_ms: u64) -> u64 {
    now_ms.saturating_sub(lateness_ms.saturating_add(windows::VIEW_SPAN_MS))
}

/// The table a scan of raw events starting at client time `scan_from_ms`
/// reads: [`EVENTS_BY_TIME_TABLE`], where a time range is a key range, when
/// the copy holds every event from there on (`by_time_from_ms`, from
/// [`by_time_holds_from_ms`]; `None` when the caller cannot tell), else
/// `events`.
pub fn events_table_from(scan_from_ms: u64, by_time_from_ms: Option<u64>) -> &'static str {
    match by_time_from_ms {
        Some(by_time) if scan_from_ms >= by_time => EVENTS_BY_TIME_TABLE,
        _ => events_model::EVENTS_TABLE,
    }
}

/// The first received copy of each `event_id` among the rows of `table`
/// (`events`, or [`EVENTS_BY_TIME_TABLE`] for a time range it holds) matching
/// `filter`, as `SELECT {columns}`: the rows of
/// [`deduplicated_events`], found by grouping by `event_id` (each column
/// taken with `argMin(…, received_at_ms)`) instead of sorting every row.
/// Faster for large scans (about ×2 on 2 M rows here), and the grouping can
/// spill to disk (`max_bytes_before_external_group_by`) where the sort's
/// `LIMIT 1 BY` holds every id in memory: custom queries over long ranges
/// use it. `columns` must include `event_id`.
pub fn first_copies_of_events(table: &str, columns: &[&str], filter: &str) -> String {
    first_copies_having(table, columns, filter, "")
}

/// [`first_copies_of_events`] of the events whose copies meet `having`, a
/// condition on `first_inserted_at` (the earliest `inserted_at` of the
/// event's copies matching `filter`); none when empty.
pub fn first_copies_having(table: &str, columns: &[&str], filter: &str, having: &str) -> String {
    assert!(columns.contains(&"event_id"), "the copies are told apart by event_id");
    // Inner names differ from the columns': on 18.16 an alias equal to a
    // column's name would be read inside its own aggregate.
    let (mut inner, mut outer) = (vec!["event_id".to_string()], Vec::new());
    for &c in columns {
        if c == "event_id" {
            outer.push(c.to_string());
        } else {
            inner.push(format!("argMin({c}, received_at_ms) AS first_{c}"));
            outer.push(format!("first_{c} AS {c}"));
        }
    }
    let having = if having.is_empty() {
        String::new()
    } else {
        inner.push("min(inserted_at) AS first_inserted_at".to_string());
        format!(" HAVING {having}")
    };
    format!(
        "SELECT {} FROM (SELECT {} FROM {table} WHERE {filter} GROUP BY event_id{having})",
        outer.join(", "),
        inner.join(", ")
    )
}

/// [`deduplicated_events`] from `table`: `events` or [`EVENTS_BY_RECEIPT_TABLE`].
pub fn deduplicated_rows(table: &str, columns: &str, filter: &str) -> String {
    format!(
        "SELECT {columns} FROM {table} WHERE {filter} \
         ORDER BY event_id, received_at_ms LIMIT 1 BY event_id"
    )
}
