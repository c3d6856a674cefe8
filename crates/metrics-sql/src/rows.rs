//! The rows of the pre-aggregated tables, computed from view facts: what
//! aggregator-cron inserts and what the query API computes for windows not
//! (yet) aggregated. Both use the same statements, so they cannot disagree.

use serde::Deserialize;

use crate::{
    Statement,
    facts::{self, StoredFacts},
    views::{Keys, Scope},
    windows::{Grain, Job},
};

/// Columns of `video_metrics` that [`video_metric_rows`] produces, in order.
pub const VIDEO_METRICS_COLUMNS: &str = "video_id, hour, date, views, unique_viewers, watch_time_seconds, \
    avg_watch_percentage, completion_rate, completed_views, failed_views, exits_before_start, buffer_ms, viewers, \
    view_watch_seconds, startup_times_ms, duration_seconds";

/// Columns of `user_engagement_daily` that [`user_engagement_rows`] produces, in order.
pub const USER_ENGAGEMENT_COLUMNS: &str = "user_id, date, sessions, views, completed_views, watch_time_seconds, \
    view_video_ids, view_qualities, view_device_types, view_hours, view_watch_seconds";

/// Where a read's view facts may come from besides `events` (the raw windows
/// of a [`crate::windows::Split`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sources<'a> {
    /// The newest facts pass, used when it covers the windows.
    pub stored: Option<&'a StoredFacts>,
    /// [`crate::EVENTS_BY_TIME_TABLE`] holds every event row from this client
    /// time on (epoch ms); a rebuild of every video's views starting no
    /// earlier reads it.
    pub by_time_from_ms: Option<u64>,
}

/// The view facts of `scope` for `windows`: from the stored facts when given
/// and they cover the windows, otherwise rebuilt from the raw events.
fn facts_of(scope: Scope<'_>, grain: Grain, windows: &[u32], sources: Sources<'_>) -> Statement {
    match sources.stored {
        Some(stored) if stored.covers(grain, windows) => {
            facts::view_facts(scope, grain, windows, stored, sources.by_time_from_ms)
        }
        _ => crate::views::view_facts(scope, grain, windows, Keys::All, sources.by_time_from_ms),
    }
}

/// `video_metrics` rows (see [`VIDEO_METRICS_COLUMNS`]) of the views of
/// `scope` that started in the hours `windows`, from `stored` facts where
/// they cover the hours.
pub fn video_metric_rows(scope: Scope<'_>, windows: &[u32], sources: Sources<'_>) -> Statement {
    let mut sql = Statement::new(&format!("SELECT {} FROM (", video_metric_aggregates(None, &as_named)));
    sql.append(&facts_of(scope, Grain::Hour, windows, sources)).sql(") GROUP BY video_id, window");
    sql
}

/// The select list of a `video_metrics` row ([`VIDEO_METRICS_COLUMNS`])
/// aggregated over view-fact rows (the columns of
/// [`crate::views::view_facts`]) grouped by `video_id, window` (the hour):
/// over every row, or with `view` over the rows where that condition holds
/// (the others count for nothing; a group without any gives zeros, empty
/// arrays and a `NULL` duration). `column` names the view-fact column to
/// read for each (`window` included). One definition for the aggregator's
/// rows, a read's raw hours, a settled read of stored facts
/// ([`crate::facts::settled_video_hours`]) and a facts pass's hour rows
/// ([`crate::facts::insert_pass_metrics`]).
pub(crate) fn video_metric_aggregates(view: Option<&str>, column: &dyn Fn(&str) -> String) -> String {
    let (window, video) = (column("window"), column("video_id"));
    let [viewer, watch_seconds, view_duration, completed, failed, exited, view_buffer, startup] =
        VIDEO_METRIC_INPUTS.map(column);
    // `name(args)`, or `nameIf(args, view)`.
    let agg = |name: &str, args: &str| match (view, args) {
        (None, _) => format!("{name}({args})"),
        (Some(view), "") => format!("{name}If({view})"),
        (Some(view), _) => format!("{name}If({args}, {view})"),
    };
    // A condition of an `…If` aggregate, and the view's condition too when given.
    let and_view = |cond: &str| view.map_or(cond.to_string(), |view| format!("({view}) AND {cond}"));
    let count_if = |cond: &str| format!("countIf({})", and_view(cond));
    let count = agg("count", "");
    let duration = agg("max", &view_duration);
    let watch = agg("groupArray", &watch_seconds);
    // A group without views (only with `view`) divides by one, not zero.
    let views = match view {
        None => count.clone(),
        Some(_) => format!("greatest({count}, 1)"),
    };
    format!(
        "{video}, toDateTime({window} * 3600) AS hour, toDate(intDiv({window}, 24)) AS date, \
         toUInt32({count}) AS views, toUInt32({uniq}) AS unique_viewers, \
         {watch_sum} AS watch_time_seconds, \
         toFloat32(if(ifNull({duration}, 0) > 0, \
             arraySum(arrayMap(w -> least(100., 100. * w / assumeNotNull({duration})), {watch})) / {views}, 0)) \
             AS avg_watch_percentage, \
         toFloat32({completed} / {views}) AS completion_rate, \
         toUInt32({completed}) AS completed_views, toUInt32({failed}) AS failed_views, \
         toUInt32({exits}) AS exits_before_start, toUInt64({buffer}) AS buffer_ms, \
         {viewers} AS viewers, {watch} AS view_watch_seconds, \
         groupArrayIf(toUInt64({startup}), {startup_if}) AS startup_times_ms, \
         {duration} AS duration_seconds",
        uniq = agg("uniqExact", &viewer),
        watch_sum = agg("sum", &watch_seconds),
        completed = count_if(&completed),
        failed = count_if(&failed),
        exits = count_if(&exited),
        buffer = agg("sum", &view_buffer),
        viewers = agg("groupUniqArray", &viewer),
        startup_if = and_view(&format!("{startup} >= 0")),
    )
}

/// The view-fact columns [`video_metric_aggregates`] reads besides the key
/// (`video_id`) and `window`.
pub(crate) const VIDEO_METRIC_INPUTS: [&str; 8] = [
    "viewer",
    "watch_seconds",
    "view_duration",
    "completed",
    "failed",
    "exited_before_start",
    "view_buffer_ms",
    "startup_ms",
];

/// The view-fact columns [`user_engagement_aggregates`] reads besides the
/// key (`video_id`, `session_id`, `start_ms`).
pub(crate) const USER_ENGAGEMENT_INPUTS: [&str; 4] = ["completed", "watch_seconds", "view_quality", "view_device"];

/// The view-fact columns by their own names (see [`video_metric_aggregates`]).
pub(crate) fn as_named(column: &str) -> String {
    column.to_string()
}

/// `user_engagement_daily` rows (see [`USER_ENGAGEMENT_COLUMNS`]) of the
/// views of `scope` that started in the days `windows`; views without a
/// `user_id` belong to no user and are left out. From `stored` facts where
/// they cover the days.
pub fn user_engagement_rows(scope: Scope<'_>, windows: &[u32], sources: Sources<'_>) -> Statement {
    let aggregates = user_engagement_aggregates(&as_named);
    let mut sql = Statement::new(&format!(
        "SELECT assumeNotNull(view_user) AS user_id, toDate(window) AS date, {aggregates} FROM ("
    ));
    sql.append(&facts_of(scope, Grain::Day, windows, sources))
        .sql(") WHERE isNotNull(view_user) GROUP BY view_user, window");
    sql
}

/// The select list of a `user_engagement_daily` row without its key
/// (`sessions` … `view_watch_seconds` of [`USER_ENGAGEMENT_COLUMNS`]),
/// aggregated over one user's views of one day. `column` names the view-fact
/// column (of [`crate::views::view_facts`]) to read for each: one definition
/// for the rows above and a settled read of stored facts
/// ([`crate::facts::settled_user_days`]), whose columns carry other names.
pub(crate) fn user_engagement_aggregates(column: &dyn Fn(&str) -> String) -> String {
    let [session, video, start] = ["session_id", "video_id", "start_ms"].map(column);
    let [completed, watch, quality, device] = USER_ENGAGEMENT_INPUTS.map(column);
    // `per_view` is named inside the first array, not as a column of its own,
    // so the list has exactly the table's columns.
    format!(
        "groupUniqArray({session}) AS sessions, toUInt32(count()) AS views, \
         toUInt32(countIf({completed})) AS completed_views, sum({watch}) AS watch_time_seconds, \
         arrayMap(x -> tupleElement(x, 1), groupArray(tuple({video}, {quality}, {device}, \
             toUInt8(intDiv({start}, 3600000) % 24), {watch})) AS per_view) AS view_video_ids, \
         arrayMap(x -> tupleElement(x, 2), per_view) AS view_qualities, \
         arrayMap(x -> tupleElement(x, 3), per_view) AS view_device_types, \
         arrayMap(x -> tupleElement(x, 4), per_view) AS view_hours, \
         arrayMap(x -> tupleElement(x, 5), per_view) AS view_watch_seconds"
    )
}

/// Recomputes one window of `job` from the raw events and inserts its rows
/// with `version` (larger than any before, so they replace the window's
/// previous rows). The custom query's rollup reads `events` here, every row
/// inserted so far; aggregator-cron gives it its record's time and the
/// time-clustered copy where that holds the hour ([`crate::hourly::insert_hour`]).
pub fn insert_window(job: Job, window: u32, version: u64) -> Statement {
    let (columns, rows) = match job {
        Job::VideoMetrics => (VIDEO_METRICS_COLUMNS, video_metric_rows(Scope::All, &[window], Sources::default())),
        Job::UserEngagementDaily => {
            (USER_ENGAGEMENT_COLUMNS, user_engagement_rows(Scope::All, &[window], Sources::default()))
        }
        Job::EventsHourly => return crate::hourly::insert_hour(window, version, None, u32::MAX),
    };
    let table = job.name();
    let mut sql = Statement::new(&format!("INSERT INTO {table} ({columns}, version, computed_at) SELECT {columns}, "));
    sql.bind(version).sql(" AS version, now() AS computed_at FROM (");
    sql.append(&rows).sql(")");
    sql
}

/// Replaces, with an empty row of `version`, every row of `window` that the
/// run `version` did not rewrite: a key whose views all left the window (a
/// late, earlier `video_start` moved its view to another window, or a view's
/// first user changed). Run right after [`insert_window`] with the same
/// version; without it such a key would keep its old numbers under `FINAL`.
pub fn retire_vanished_rows(job: Job, window: u32, version: u64) -> Statement {
    let (key, window_column, empty, columns, key_columns) = match job {
        Job::VideoMetrics => (
            "video_id",
            "hour",
            "video_id, hour, date, toUInt32(0), toUInt32(0), 0., toFloat32(0), toFloat32(0), toUInt32(0), \
             toUInt32(0), toUInt32(0), toUInt64(0), emptyArrayString(), emptyArrayFloat64(), emptyArrayUInt64(), \
             CAST(NULL AS Nullable(Float64))",
            VIDEO_METRICS_COLUMNS,
            "hour, date",
        ),
        Job::UserEngagementDaily => (
            "user_id",
            "toDateTime(date)",
            "user_id, date, emptyArrayString(), toUInt32(0), toUInt32(0), 0., emptyArrayString(), \
             emptyArrayString(), emptyArrayString(), emptyArrayUInt8(), emptyArrayFloat64()",
            USER_ENGAGEMENT_COLUMNS,
            "date",
        ),
        Job::EventsHourly => return crate::hourly::retire_vanished(window, version),
    };
    let table = job.name();
    let mut sql = Statement::new(&format!("INSERT INTO {table} ({columns}, version, computed_at) SELECT {empty}, "));
    sql.bind(version).sql(&format!(" AS version, now() AS computed_at FROM (SELECT {key}, {key_columns}"));
    sql.sql(&format!(" FROM {table} FINAL WHERE {window_column} = toDateTime("));
    sql.bind(job.grain().start_of(window)).sql(") AND version < ").bind(version).sql(" AND views > 0)");
    sql
}

/// The number of rows with views that `version` wrote for `window` of `job`.
pub fn count_window_rows(job: Job, window: u32, version: u64) -> Statement {
    let key = match job {
        Job::VideoMetrics => "hour",
        Job::UserEngagementDaily => "toDateTime(date)",
        Job::EventsHourly => return crate::hourly::count_hour_rows(window, version),
    };
    let mut sql = Statement::new(&format!("SELECT count() FROM {} WHERE {key} = toDateTime(", job.name()));
    sql.bind(job.grain().start_of(window)).sql(") AND version = ").bind(version).sql(" AND views > 0");
    sql
}

/// Records that `version` holds every row of `window` for the events
/// inserted up to `covered_until` (epoch seconds). Written after the rows.
pub fn insert_marker(job: Job, window: u32, version: u64, covered_until: u32, rows: u64) -> Statement {
    let mut sql = Statement::new(
        "INSERT INTO aggregation_windows (job, window_start, version, covered_until, rows, computed_at) \
         SELECT ",
    );
    sql.bind(job.name()).sql(", toDateTime(").bind(job.grain().start_of(window)).sql("), ").bind(version);
    sql.sql(", toDateTime(").bind(covered_until).sql("), ").bind(rows).sql(", now()");
    sql
}

/// The markers of `job` for windows in `[from, to)`: columns `window`
/// (UInt32), `covered_until` (UInt32), `version` (UInt64) of the newest run.
pub fn markers(job: Job, from: u32, to: u32) -> Statement {
    let grain = job.grain();
    let mut sql = Statement::new(&format!(
        "SELECT toUInt32(intDiv(toUInt32(start), {secs})) AS window, toUInt32(covered) AS covered_until, \
         newest AS version FROM (SELECT window_start AS start, argMax(covered_until, version) AS covered, \
         max(version) AS newest FROM aggregation_windows WHERE job = ",
        secs = grain.secs()
    ));
    sql.bind(job.name()).sql(" AND window_start >= toDateTime(").bind(grain.start_of(from));
    sql.sql(") AND window_start < toDateTime(")
        .bind(grain.start_of(to))
        .sql(") GROUP BY window_start) ORDER BY window");
    sql
}

/// The records of `job`'s windows in `[from, to)`, by window.
pub async fn fetch_markers(
    client: &clickhouse::Client,
    job: Job,
    from: u32,
    to: u32,
) -> Result<std::collections::BTreeMap<u32, crate::windows::Marker>, clickhouse::error::Error> {
    let rows = markers(job, from, to).query(client).fetch_all::<MarkerRow>().await?;
    Ok(rows
        .into_iter()
        .map(|m| (m.window, crate::windows::Marker { covered_until: m.covered_until, version: m.version }))
        .collect())
}

/// A row of [`markers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct MarkerRow {
    pub window: u32,
    pub covered_until: u32,
    pub version: u64,
}
