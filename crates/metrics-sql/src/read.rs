//! The query API's reads: each answers a range by merging the pre-aggregated
//! rows of the windows the aggregator has up to date with rows computed from
//! the raw events for the others (a [`Split`]), in one statement.

use serde::Deserialize;

use crate::{
    EVENTS_BY_RECEIPT_TABLE, Statement, USER_ENGAGEMENT_LOOKUP_TABLE, VIDEO_METRICS_LOOKUP_TABLE, days,
    deduplicated_rows, facts,
    rows::{VIDEO_METRICS_COLUMNS, user_engagement_rows, video_metric_rows},
    views::Scope,
    windows::{Grain, Split, TimeColumn, in_windows},
};

/// `SELECT {columns}` over the table rows of `split.aggregated` and the
/// rows computed for `split.raw`, as one `UNION ALL` (without parentheses).
fn merged_rows(table: &str, columns: &str, scope: Scope<'_>, split: &Split) -> Statement {
    assert!(split.reads_tables(), "a read needs at least one aggregated or raw window to read");
    let mut sql = Statement::default();
    if !split.aggregated.is_empty() {
        sql.append(&newest_rows(table, columns, scope, &split.aggregated));
    }
    if !split.raw.is_empty() {
        if !split.aggregated.is_empty() {
            sql.sql(" UNION ALL ");
        }
        let rows = match table {
            "video_metrics" => video_metric_rows(scope, &split.raw, split.sources()),
            _ => user_engagement_rows(scope, &split.raw, split.sources()),
        };
        // `video_metric_rows` has exactly the table's columns, in order: a
        // level that only picks columns is needed for a subset (and for the
        // user rows, which carry a helper column).
        if columns == VIDEO_METRICS_COLUMNS {
            sql.append(&rows);
        } else {
            sql.sql(&format!("SELECT {columns} FROM (")).append(&rows).sql(")");
        }
    }
    sql
}

/// `SELECT {columns}` of the newest version of each row of `table` (keyed
/// by video and hour, or by user and day) in `windows` for `scope`.
pub(crate) fn newest_rows(table: &str, columns: &str, scope: Scope<'_>, windows: &[u32]) -> Statement {
    // The key and the window column.
    let (key, column, time, grain) = match table {
        "user_engagement_daily" => ("user_id", "date", TimeColumn::Date, Grain::Day),
        _ => ("video_id", "hour", TimeColumn::DateTime, Grain::Hour),
    };
    let (outer, inner, group) = newest_version_columns(table, columns);
    // One key's rows come from the aggregate's copy in small granules: a key
    // costs a granule of every part it lies in, 8,192 rows of the aggregate
    // itself (56,620 rows for a small video's 168 hours, BENCHMARKS.md).
    let stored = match (table, scope) {
        ("video_metrics", Scope::Video(_)) => VIDEO_METRICS_LOOKUP_TABLE,
        ("user_engagement_daily", Scope::User(_)) => USER_ENGAGEMENT_LOOKUP_TABLE,
        _ => table,
    };
    // The ranges of the windows: they prune partitions and, after the key, granules.
    let mut sql = Statement::new(&format!("SELECT {outer} FROM (SELECT {inner} FROM {stored} WHERE "));
    in_windows(&mut sql, column, time, grain, windows);
    match scope {
        Scope::All => {}
        Scope::Video(id) | Scope::User(id) => {
            sql.sql(&format!(" AND {key} = ")).bind(id);
        }
    }
    sql.sql(&format!(" GROUP BY {group})"));
    sql
}

/// The sorting key of an aggregated table: one row per key and version.
fn sorting_key(table: &str) -> [&'static str; 2] {
    match table {
        "user_engagement_daily" => ["user_id", "date"],
        _ => ["video_id", "hour"],
    }
}

/// How [`merged_rows`] reads the newest version of each row of `table`
/// without `FINAL`: the outer select list, the inner one and its `GROUP BY`.
///
/// Each key's newest version is unique (a run writes a key once, under a
/// version larger than every earlier run's, [`crate::rows::insert_window`]
/// and [`crate::rows::retire_vanished_rows`]), so `argMax(column, version)`
/// gives exactly the row `FINAL` would keep. It is much cheaper: on
/// ClickHouse 18.16 `FINAL` merges every part's rows of the key range,
/// measured at 110–130 ms for one small video over 7 parts against 17–26 ms
/// for the grouping (BENCHMARKS.md). Inner columns are renamed (`newest_…`)
/// because an alias equal to a column name would be read inside its own
/// aggregate.
fn newest_version_columns(table: &str, columns: &str) -> (String, String, String) {
    let keys = sorting_key(table);
    let mut outer = Vec::new();
    let mut inner: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    for column in columns.split(',').map(str::trim) {
        if keys.contains(&column) {
            outer.push(column.to_string());
        } else {
            inner.push(format!("argMax({column}, version) AS newest_{column}"));
            outer.push(format!("newest_{column} AS {column}"));
        }
    }
    (outer.join(", "), inner.join(", "), keys.join(", "))
}

/// One row summarising the views of `video_id` over the hours of `split`:
/// `views`, `unique_viewers`, `completed_views`, `failed_views`,
/// `exits_before_start`, `buffer_ms`, `startup_count` (UInt64);
/// `watch_time_seconds`, `watch_percentage_sum` (Float64: Σ over views of
/// min(100, 100 × watch ÷ duration), 0 without a duration);
/// `events_duration` (Nullable(Float64)); `startup_median_ms`,
/// `startup_p95_ms` (UInt64, nearest rank; 0 when `startup_count` is 0).
///
/// `duration_seconds` is the catalog's duration; without it the largest
/// duration the players reported is used.
pub fn video_summary(video_id: &str, split: &Split, duration_seconds: Option<f64>) -> Statement {
    // One level: on 18.16 every level of subqueries analyses the levels
    // below it again (measured about 8–10 ms per level for these reads), so
    // the finishing expressions are written over the aggregates directly.
    let mut sql = Statement::new(
        "SELECT toUInt64(sum(views)) AS views, toUInt64(uniqExactArray(viewers)) AS unique_viewers, \
         toUInt64(sum(completed_views)) AS completed_views, toUInt64(sum(failed_views)) AS failed_views, \
         toUInt64(sum(exits_before_start)) AS exits_before_start, toUInt64(sum(buffer_ms)) AS buffer_ms, \
         length(arraySort(groupArrayArray(startup_times_ms)) AS startups) AS startup_count, \
         sum(watch_time_seconds) AS watch_time_seconds, \
         if((if(",
    );
    let catalog = duration_seconds.unwrap_or(0.0);
    sql.bind(catalog).sql(" > 0, ").bind(catalog);
    sql.sql(
        ", ifNull(max(duration_seconds), 0.)) AS d) > 0, \
             arraySum(arrayMap(w -> least(100., 100. * w / d), groupArrayArray(view_watch_seconds))), 0.) \
             AS watch_percentage_sum, \
         max(duration_seconds) AS events_duration, \
         if(startup_count = 0, toUInt64(0), arrayElement(startups, intDiv(startup_count * 50 + 99, 100))) \
             AS startup_median_ms, \
         if(startup_count = 0, toUInt64(0), arrayElement(startups, intDiv(startup_count * 95 + 99, 100))) \
             AS startup_p95_ms \
         FROM (",
    );
    let scope = Scope::Video(video_id);
    let mut parts = Vec::new();
    if settled_raw(split, Grain::Hour) {
        // Nothing of the raw hours' views is newer than the pass: their rows
        // come straight from the stored facts, in the shallower statement.
        if !split.aggregated.is_empty() {
            parts.push(newest_rows("video_metrics", VIDEO_METRICS_COLUMNS, scope, &split.aggregated));
        }
        parts.push(facts::settled_video_hours(video_id, &split.raw));
    } else if split.reads_tables() {
        parts.push(merged_rows("video_metrics", VIDEO_METRICS_COLUMNS, scope, split));
    }
    if !split.from_pass.is_empty() {
        parts.push(facts::pass_video_rows(video_id, &split.from_pass));
    }
    union_all(&mut sql, &parts);
    sql.sql(")");
    sql
}

/// Whether `split` has raw windows (of `grain`) that its stored facts answer
/// alone: they [`facts::StoredFacts::covers`] them and nothing of the
/// read's views is newer than the pass
/// ([`facts::StoredFacts::touches_nothing`]). Such windows are read by the
/// two-level settled statements of [`facts`], not through the view rebuild's
/// layers.
fn settled_raw(split: &Split, grain: Grain) -> bool {
    !split.raw.is_empty() && split.facts.as_ref().is_some_and(|f| f.touches_nothing() && f.covers(grain, &split.raw))
}

/// Appends `parts` to `sql`, joined by `UNION ALL`.
fn union_all(sql: &mut Statement, parts: &[Statement]) {
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            sql.sql(" UNION ALL ");
        }
        sql.append(part);
    }
}

/// What [`top_videos`] ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopMetric {
    Views,
    WatchTime,
    CompletionRate,
}

impl TopMetric {
    pub const ALL: [TopMetric; 3] = [TopMetric::Views, TopMetric::WatchTime, TopMetric::CompletionRate];

    /// The name in requests and answers (`metric=`).
    pub fn name(self) -> &'static str {
        match self {
            TopMetric::Views => "views",
            TopMetric::WatchTime => "watch_time",
            TopMetric::CompletionRate => "completion_rate",
        }
    }

    pub fn from_name(name: &str) -> Option<TopMetric> {
        TopMetric::ALL.into_iter().find(|metric| metric.name() == name)
    }

    fn order(self) -> &'static str {
        match self {
            TopMetric::Views => "views DESC",
            TopMetric::WatchTime => "watch_time_seconds DESC",
            TopMetric::CompletionRate => "completed_views / views DESC, views DESC",
        }
    }
}

/// The `limit` videos with the most `metric` over the hours of `split`:
/// `video_id`, `views`, `completed_views` (UInt64), `watch_time_seconds`
/// (Float64); ties by video_id. Videos without views in the range are left
/// out. The hours come from `video_metrics` (or the raw events), the newest
/// facts pass's totals (`split.from_pass`) and whole days' rollups
/// (`split.days`).
pub fn top_videos(split: &Split, metric: TopMetric, limit: u32) -> Statement {
    let mut sql = Statement::new(
        "SELECT video_id, toUInt64(sum(views)) AS views, toUInt64(sum(completed_views)) AS completed_views, \
         sum(watch_time_seconds) AS watch_time_seconds FROM (",
    );
    let columns = "video_id, views, completed_views, watch_time_seconds";
    let mut parts = Vec::new();
    if split.reads_tables() {
        parts.push(merged_rows("video_metrics", columns, Scope::All, split));
    }
    if !split.from_pass.is_empty() {
        parts.push(facts::pass_totals(&split.from_pass));
    }
    if !split.days.is_empty() {
        parts.push(days::day_totals(&split.days));
    }
    union_all(&mut sql, &parts);
    sql.sql(&format!(") GROUP BY video_id HAVING views > 0 ORDER BY {}, video_id LIMIT ", metric.order()));
    sql.bind(limit);
    sql
}

/// The user's rows over the days of `split`, one per day with views (see
/// [`USER_ENGAGEMENT_COLUMNS`] minus `user_id` and `date`).
pub fn user_days(user_id: &str, split: &Split) -> Statement {
    // The merged rows' own column list: no level that only picks columns
    // (each level costs 18.16 another analysis of everything below it).
    let columns = "sessions, views, completed_views, watch_time_seconds, view_video_ids, view_qualities, \
                   view_device_types, view_hours, view_watch_seconds";
    if !settled_raw(split, Grain::Day) {
        return merged_rows("user_engagement_daily", columns, Scope::User(user_id), split);
    }
    // As for a video's settled hours (see `video_summary`).
    let mut parts = Vec::new();
    if !split.aggregated.is_empty() {
        parts.push(newest_rows("user_engagement_daily", columns, Scope::User(user_id), &split.aggregated));
    }
    parts.push(facts::settled_user_days(user_id, &split.raw));
    let mut sql = Statement::default();
    union_all(&mut sql, &parts);
    sql
}

/// The realtime figures over events received in `(from_ms, to_ms]`: `events`,
/// `errors`, `concurrent_viewers`, `active_streams`, `bandwidth_kbps`
/// (UInt64). A view is live when its latest event in the window (by client
/// time, then receive time, then id) is neither a `video_complete` nor a
/// fatal `video_error`; its bitrate is its latest reported one.
pub fn realtime(from_ms: u64, to_ms: u64) -> Statement {
    let mut filter = Statement::new("received_at_ms > ");
    filter.bind(from_ms).sql(" AND received_at_ms <= ").bind(to_ms);
    let events = deduplicated_rows(
        EVENTS_BY_RECEIPT_TABLE,
        "event_id, event_type, session_id, video_id, timestamp_ms, received_at_ms, fatal, bitrate_kbps",
        filter.text(),
    );
    let mut sql = Statement::new(
        "SELECT toUInt64(sum(n)) AS events, toUInt64(sum(errors)) AS errors, toUInt64(countIf(live)) AS concurrent_viewers, \
         toUInt64(uniqExactIf(video_id, live)) AS active_streams, toUInt64(sumIf(bitrate, live)) AS bandwidth_kbps \
         FROM (SELECT video_id, count() AS n, countIf(event_type = 'video_error') AS errors, \
         argMax(event_type, (timestamp_ms, received_at_ms, toString(event_id))) AS last_type, \
         argMax(fatal, (timestamp_ms, received_at_ms, toString(event_id))) AS last_fatal, \
         NOT (last_type = 'video_complete' OR (last_type = 'video_error' AND last_fatal = 1)) AS live, \
         argMaxIf(assumeNotNull(bitrate_kbps), (timestamp_ms, received_at_ms, toString(event_id)), \
             isNotNull(bitrate_kbps)) AS bitrate FROM (",
    );
    sql.append(&Statement::from_parts(events, filter.params().to_vec())).sql(") GROUP BY session_id, video_id)");
    sql
}

/// A row of [`video_summary`]; the default is the summary of no views (a
/// [`Split::reads_nothing`]).
#[derive(Debug, Clone, Default, PartialEq, clickhouse::Row, Deserialize)]
pub struct VideoSummaryRow {
    pub views: u64,
    pub unique_viewers: u64,
    pub completed_views: u64,
    pub failed_views: u64,
    pub exits_before_start: u64,
    pub buffer_ms: u64,
    pub startup_count: u64,
    pub watch_time_seconds: f64,
    pub watch_percentage_sum: f64,
    pub events_duration: Option<f64>,
    pub startup_median_ms: u64,
    pub startup_p95_ms: u64,
}

/// A row of [`top_videos`].
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub struct TopVideoRow {
    pub video_id: String,
    pub views: u64,
    pub completed_views: u64,
    pub watch_time_seconds: f64,
}

/// A row of [`user_days`]: one day of a user's views; the `view_*` arrays
/// have one entry per view, in the same order.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub struct UserDayRow {
    pub sessions: Vec<String>,
    pub views: u32,
    pub completed_views: u32,
    pub watch_time_seconds: f64,
    pub view_video_ids: Vec<String>,
    pub view_qualities: Vec<String>,
    pub view_device_types: Vec<String>,
    pub view_hours: Vec<u8>,
    pub view_watch_seconds: Vec<f64>,
}

/// The row of [`realtime`]: the counts of a realtime window, from which
/// [`crate::formulas::realtime_metrics`] finishes the figures (realtime-hub
/// fills it from the processor's partials).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub struct RealtimeRow {
    pub events: u64,
    pub errors: u64,
    pub concurrent_viewers: u64,
    pub active_streams: u64,
    pub bandwidth_kbps: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_keys_aggregated_windows_are_read_from_the_lookup_copies() {
        let cols = VIDEO_METRICS_COLUMNS;
        let text = |t: &str, scope| newest_rows(t, cols, scope, &[5, 6]).text().to_string();
        assert!(text("video_metrics", Scope::Video("v1")).contains("FROM video_metrics_lookup WHERE"));
        assert!(text("video_metrics", Scope::All).contains("FROM video_metrics WHERE"));
        let user = newest_rows("user_engagement_daily", "user_id, date, views", Scope::User("u1"), &[5]);
        assert!(user.text().contains("FROM user_engagement_lookup WHERE"), "{}", user.text());
    }

    #[test]
    fn every_videos_rebuild_reads_the_time_clustered_copy_when_it_covers_the_scan() {
        let hour = 500_000; // 2027: its scan starts a day earlier
        let from_ms = (u64::from(hour) * 3600 - 86_400) * 1000;
        let split = |by_time_from_ms| Split { raw: vec![hour], by_time_from_ms, ..Split::default() };
        let reads = |sql: &Statement, table: &str| sql.text().contains(&format!("FROM {table} WHERE"));
        let top = top_videos(&split(Some(from_ms)), TopMetric::Views, 5);
        assert!(reads(&top, "events_by_time_v2") && !reads(&top, "events"), "{}", top.text());
        // A copy that starts later than the scan, or a single video's rebuild: `events`.
        let top = top_videos(&split(Some(from_ms + 1)), TopMetric::Views, 5);
        assert!(!reads(&top, "events_by_time_v2") && reads(&top, "events"), "{}", top.text());
        let video = video_summary("v1", &split(Some(from_ms)), None);
        assert!(!reads(&video, "events_by_time_v2"), "{}", video.text());
    }

    #[test]
    fn aggregated_rows_are_read_by_newest_version_not_final() {
        let split = Split { aggregated: vec![10, 11], ..Split::default() };
        let sql = top_videos(&split, TopMetric::Views, 5);
        let text = sql.text();
        assert!(!text.contains("FINAL"), "{text}");
        assert!(text.contains("argMax(views, version) AS newest_views"), "{text}");
        assert!(text.contains("newest_views AS views"), "{text}");
        assert!(text.contains("GROUP BY video_id, hour)"), "{text}");
        let (outer, _, group) = newest_version_columns("user_engagement_daily", crate::rows::USER_ENGAGEMENT_COLUMNS);
        assert!(outer.starts_with("user_id, date, newest_sessions AS sessions"), "{outer}");
        assert_eq!(group, "user_id, date");
    }
}
