//! The metric definitions of `docs/metrics.md` as ClickHouse SQL.
//!
//! One place for the SQL that aggregator-cron and query-api must agree on, so
//! that a pre-aggregated window and the same window computed from the raw
//! events give the same numbers:
//!
//! - [`views`]: the per-view facts every metric is built from;
//! - [`rows`]: the rows of `video_metrics` and `user_engagement_daily`, and
//!   the statements aggregator-cron runs to (re)build a window;
//! - [`read`]: the query API's reads, merging aggregated and raw windows;
//! - [`windows`]: jobs, window grain, and which windows are up to date.
//!
//! Every statement runs on ClickHouse 18.16 and on a current ClickHouse (the
//! tests run them on both). Values are never spliced into SQL: a
//! [`Statement`] carries `?` placeholders with their values and binds them
//! through `clickhouse::Query::bind`.

pub mod read;
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

/// Which `(session_id, video_id)` keys each user had, by day
/// (`schemas/clickhouse/0005_views_by_user.sql`): the user scope's index.
pub const VIEWS_BY_USER_TABLE: &str = "views_by_user";

/// [`deduplicated_events`] from `table`: `events` or [`EVENTS_BY_RECEIPT_TABLE`].
pub fn deduplicated_rows(table: &str, columns: &str, filter: &str) -> String {
    format!(
        "SELECT {columns} FROM {table} WHERE {filter} \
         ORDER BY event_id, received_at_ms LIMIT 1 BY event_id"
    )
}
