//! Stored view facts (`schemas/clickhouse/0007_view_facts.sql`, the table
//! now `0015_view_facts_v2.sql`): the facts
//! of every view still open to late events, kept up to date by
//! aggregator-cron's facts pass, so that a read of an open window rebuilds
//! from the raw events only the views whose keys received rows since the
//! last pass, not every view of the window (ARCHITECTURE.md, "Read path").
//!
//! A pass rebuilds the keys that received rows since the previous pass's
//! `covered_until` (less an overlap) from all their events, and writes one
//! row per distinct `video_start` time at or after its horizon under a new
//! version: the view's facts, or a tombstone for a start that no longer opens
//! a view. A read takes, for the keys not touched since the newest pass, the
//! newest stored row of each start, and rebuilds the touched keys.

use serde::Deserialize;

use crate::{
    Statement,
    rows::VIDEO_METRICS_COLUMNS,
    views::{self, KeyOrder, Keys, Scope, stored_view_facts, user_keys},
    windows::{Grain, TimeColumn, in_windows},
};

/// Per view start, its facts: written by the facts pass, read by the query API.
pub const VIEW_FACTS_TABLE: &str = "view_facts_v2";

/// Which view keys received rows, by insert time.
pub const KEYS_BY_INSERT_TABLE: &str = "keys_by_insert";

/// One row per facts pass.
pub const PASSES_TABLE: &str = "view_facts_passes";

/// Per video and hour, the totals top videos ranks by, as of a facts pass.
pub const HOUR_TOTALS_TABLE: &str = "video_hour_totals";

/// Per video and hour, the hour's whole `video_metrics` row as of a facts
/// pass: what a busy video's read takes its open hours from.
pub const HOUR_METRICS_TABLE: &str = "video_hour_metrics";

/// The columns both sources of a read's view facts produce, in order and with
/// these types (a `UNION ALL` needs them equal): the columns of
/// [`crate::views::view_facts`] that the rows are built from.
const READ_COLUMNS: &str = "session_id, video_id, start_ms, toUInt64(window) AS window, \
    toFloat64(watch_seconds) AS watch_seconds, toUInt8(completed) AS completed, toUInt8(failed) AS failed, \
    toUInt8(exited_before_start) AS exited_before_start, toInt64(startup_ms) AS startup_ms, \
    toUInt64(view_buffer_ms) AS view_buffer_ms, CAST(view_duration AS Nullable(Float64)) AS view_duration, \
    view_quality, view_device, CAST(view_user AS Nullable(String)) AS view_user, viewer, last_inserted";

/// The stored columns besides the key (`video_id`, `session_id`, `start_ms`)
/// and `version`, in [`VIEW_FACTS_TABLE`]'s order.
const STORED_COLUMNS: [&str; 13] = [
    "is_view",
    "watch_seconds",
    "completed",
    "failed",
    "exited_before_start",
    "startup_ms",
    "view_buffer_ms",
    "view_duration",
    "view_quality",
    "view_device",
    "view_user",
    "viewer",
    "last_inserted",
];

/// What a read needs of the newest facts pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFacts {
    /// The stored facts hold every events row inserted up to this time
    /// (epoch seconds, inclusive)…
    pub covered_until: u32,
    /// …for the views starting at or after this time (epoch milliseconds).
    pub from_ms: u64,
    /// The keys rebuilt from the raw events; every other key of the read's
    /// scope is read as the pass stored it.
    pub touched: Touched,
}

/// Which view keys a read over stored facts rebuilds from the raw events.
///
/// Both halves of the read (the stored rows of the keys not touched, the
/// rebuild of those touched) must agree on the set, whatever arrives while
/// the statement runs, or a key would count twice or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    /// The keys with a row inserted after `covered_until` and before this
    /// time (epoch seconds, exclusive; ClickHouse's clock when the request
    /// began, less a margin), selected by the statement itself: a key whose
    /// first row since the pass is younger is read as the pass stored it.
    /// The bound makes both halves' subqueries select the same keys.
    /// Top videos of a quiet platform reads this way: its touched keys can
    /// be too many to list.
    Before(u32),
    /// Exactly these `(video_id, session_id)` keys, listed by the reader
    /// after its freshness check ([`touched_keys_of`]): every other key of
    /// the scope had no row inserted after `covered_until` when they were
    /// listed, so the answer holds every row inserted before the request,
    /// exact at once with no margin. Empty: the stored facts alone answer
    /// ([`StoredFacts::settled`]).
    Listed(Vec<(String, String)>),
}

impl StoredFacts {
    /// Stored facts that answer a read alone: the freshness check found no
    /// row of the read's views inserted after `covered_until`, so the pass
    /// holds every row of them and no key needs a rebuild. Exact at once,
    /// with no read margin.
    pub fn settled(covered_until: u32, from_ms: u64) -> StoredFacts {
        StoredFacts { covered_until, from_ms, touched: Touched::Listed(Vec::new()) }
    }

    /// Whether no key can count as touched: none listed, or no whole second
    /// between the bounds (`inserted_at` is in whole seconds). The read
    /// takes the stored rows of every key and rebuilds none.
    pub fn touches_nothing(&self) -> bool {
        match &self.touched {
            Touched::Before(until) => *until <= self.covered_until.saturating_add(1),
            Touched::Listed(keys) => keys.is_empty(),
        }
    }

    /// Whether the stored facts can answer every window of `windows`.
    pub fn covers(&self, grain: Grain, windows: &[u32]) -> bool {
        windows.first().is_some_and(|&first| grain.start_of(first) * 1000 >= self.from_ms)
    }

    /// The touched keys as the right side of `(video_id, session_id) IN`:
    /// a subquery ([`Keys::Selected`]), or the listed pairs
    /// ([`Keys::Listed`]). Not for [`Self::touches_nothing`].
    fn touched_set(&self, video_id: Option<&str>) -> Statement {
        match &self.touched {
            Touched::Before(until) => touched_keys(self.covered_until, Some(*until), video_id),
            Touched::Listed(keys) => {
                let mut set = Statement::default();
                for (i, (video, session)) in keys.iter().enumerate() {
                    set.sql(if i == 0 { "(" } else { ", (" }).bind(video.as_str()).sql(", ");
                    set.bind(session.as_str()).sql(")");
                }
                set
            }
        }
    }
}

/// `SELECT video_id, session_id` of the keys with an events row inserted in
/// `(after, before)` (epoch seconds), of `video_id` when given.
fn touched_keys(after: u32, before: Option<u32>, video_id: Option<&str>) -> Statement {
    let mut sql = Statement::new(&format!(
        "SELECT video_id, session_id FROM {KEYS_BY_INSERT_TABLE} WHERE inserted_at > toDateTime("
    ));
    sql.bind(after).sql(")");
    if let Some(before) = before {
        sql.sql(" AND inserted_at < toDateTime(").bind(before).sql(")");
    }
    if let Some(video_id) = video_id {
        sql.sql(" AND video_id = ").bind(video_id);
    }
    sql
}

/// The keys of `scope` (a video or a user, whose views start from `from` on,
/// epoch seconds) with an events row inserted after `after` (epoch seconds):
/// `video_id, session_id` rows ([`KeyRow`]), at most `limit`. A read lists
/// them once, after its freshness check, for [`Touched::Listed`].
pub fn touched_keys_of(scope: Scope<'_>, after: u32, from: u64, limit: u32) -> Statement {
    let mut sql = touched_keys(after, None, None);
    match scope {
        Scope::All => {}
        Scope::Video(video_id) => {
            sql.sql(" AND video_id = ").bind(video_id);
        }
        Scope::User(user_id) => user_keys(&mut sql, KeyOrder::VideoSession, user_id, from, None),
    }
    sql.sql(" GROUP BY video_id, session_id LIMIT ").bind(limit);
    sql
}

/// A row of [`touched_keys_of`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct KeyRow {
    pub video_id: String,
    pub session_id: String,
}

/// The most bytes of identifiers a read lists ([`fetch_touched_keys`]). A
/// statement writes them twice, escaped (at most doubled): a reader's
/// `max_query_size` must allow [`MAX_LISTED_QUERY_BYTES`].
pub const MAX_LISTED_BYTES: usize = 2 << 20;

/// A `max_query_size` that fits a statement listing [`MAX_LISTED_BYTES`].
pub const MAX_LISTED_QUERY_BYTES: usize = 4 * MAX_LISTED_BYTES + (1 << 20);

/// [`touched_keys_of`] on `client`: the keys, or `None` when there are more
/// than `limit` or their identifiers exceed [`MAX_LISTED_BYTES`].
pub async fn fetch_touched_keys(
    client: &clickhouse::Client,
    scope: Scope<'_>,
    after: u32,
    from: u64,
    limit: u32,
) -> Result<Option<Vec<(String, String)>>, clickhouse::error::Error> {
    let rows: Vec<KeyRow> =
        touched_keys_of(scope, after, from, limit.saturating_add(1)).query(client).fetch_all().await?;
    let bytes: usize = rows.iter().map(|r| r.video_id.len() + r.session_id.len()).sum();
    let fits = rows.len() <= limit as usize && bytes <= MAX_LISTED_BYTES;
    Ok(fits.then(|| rows.into_iter().map(|r| (r.video_id, r.session_id)).collect()))
}

/// The select lists that take the newest stored row of each start: the
/// inner `argMax(c, version) AS newest_c` (grouped by the start) and the
/// outer `newest_c AS c` (an alias equal to a column name would be read
/// inside its own aggregate on 18.16, hence two levels).
fn newest_stored_columns() -> (String, String) {
    let newest = STORED_COLUMNS.map(|c| format!("argMax({c}, version) AS newest_{c}")).join(", ");
    let renamed = STORED_COLUMNS.map(|c| format!("newest_{c} AS {c}")).join(", ");
    (newest, renamed)
}

/// [`crate::views::view_facts`]' rows for `windows` (restricted to
/// [`READ_COLUMNS`]) from the stored facts and the rebuilt touched keys: the
/// newest stored row of each start of the keys not [`StoredFacts::touched`],
/// and the views of the touched keys rebuilt
/// from the raw events (from the time-clustered copy when `by_time_from_ms`
/// allows, see [`crate::views::view_facts`]); only the stored rows when
/// `facts` [`StoredFacts::touches_nothing`]. `facts` must
/// [`StoredFacts::covers`] the windows.
pub fn view_facts(
    scope: Scope<'_>,
    grain: Grain,
    windows: &[u32],
    facts: &StoredFacts,
    by_time_from_ms: Option<u64>,
) -> Statement {
    let (Some(&first), Some(&last)) = (windows.first(), windows.last()) else {
        panic!("view_facts needs at least one window");
    };
    let video = match scope {
        Scope::Video(video_id) => Some(video_id),
        _ => None,
    };
    let window_ms = grain.millis();
    let (from, to) = (grain.start_of(first), grain.start_of(last) + grain.secs());

    let (newest, renamed) = newest_stored_columns();
    let mut sql = Statement::new(&format!(
        "SELECT {READ_COLUMNS} FROM (SELECT session_id, video_id, start_ms, \
         intDiv(start_ms, {window_ms}) AS window, {renamed} FROM (SELECT video_id, session_id, start_ms, {newest} \
         FROM {VIEW_FACTS_TABLE} WHERE date >= toDate(toDateTime("
    ));
    sql.bind(from).sql(")) AND date <= toDate(toDateTime(").bind(to).sql(")) AND start_ms >= ");
    sql.bind(from * 1000).sql(" AND start_ms < ").bind(to * 1000);
    match scope {
        Scope::All => {}
        Scope::Video(video_id) => {
            sql.sql(" AND video_id = ").bind(video_id);
        }
        Scope::User(user_id) => {
            user_keys(&mut sql, KeyOrder::VideoSession, user_id, from, Some(to));
        }
    }
    let touched = (!facts.touches_nothing()).then(|| facts.touched_set(video));
    if let Some(touched) = &touched {
        sql.sql(" AND (video_id, session_id) NOT IN (").append(touched).sql(")");
    }
    sql.sql(" GROUP BY video_id, session_id, start_ms) WHERE newest_is_view = 1 AND ");
    in_windows(&mut sql, "start_ms", TimeColumn::Millis, grain, windows);
    if let Scope::User(user_id) = scope {
        sql.sql(" AND newest_view_user = ").bind(user_id);
    }
    sql.sql(")");
    if let Some(touched) = &touched {
        let keys = match facts.touched {
            Touched::Listed(_) => Keys::Listed(touched),
            Touched::Before(_) => Keys::Selected(touched),
        };
        sql.sql(&format!(" UNION ALL SELECT {READ_COLUMNS} FROM ("));
        sql.append(&views::view_facts(scope, grain, windows, keys, by_time_from_ms)).sql(")");
    }
    sql
}

/// A user's rows of `user_engagement_daily` for the days `windows` (see
/// [`crate::read::user_days`]' columns) from the stored facts alone, for a
/// read whose facts [`StoredFacts::touches_nothing`] and
/// [`StoredFacts::covers`] the days ([`settled_groups`]).
pub fn settled_user_days(user_id: &str, windows: &[u32]) -> Statement {
    let aggregates = crate::rows::user_engagement_aggregates(&newest_named);
    settled_groups(Scope::User(user_id), Grain::Day, windows, &aggregates, &crate::rows::USER_ENGAGEMENT_INPUTS)
}

/// A video's `video_metrics` rows (the table's columns, in order) for the
/// hours `windows` from the stored facts alone, for a read whose facts
/// [`StoredFacts::touches_nothing`] and [`StoredFacts::covers`] the hours
/// ([`settled_groups`]).
pub fn settled_video_hours(video_id: &str, windows: &[u32]) -> Statement {
    let aggregates = crate::rows::video_metric_aggregates(None, &newest_named);
    settled_groups(Scope::Video(video_id), Grain::Hour, windows, &aggregates, &crate::rows::VIDEO_METRIC_INPUTS)
}

/// A view-fact column as [`settled_groups`] names it: the key columns as
/// they are, the others `newest_…`, and the window computed from the start.
fn newest_named(column: &str) -> String {
    match column {
        "video_id" | "session_id" | "start_ms" => column.to_string(),
        "window" => "window_of_start".to_string(),
        _ => format!("newest_{column}"),
    }
}

/// `SELECT {select} … GROUP BY` window (and video) over the newest stored
/// row of each start of `scope` (a video or a user) in `windows`, whose
/// `inputs` (the view-fact columns `select` reads besides the key) are named
/// by [`newest_named`]; only the starts that still open a view (`is_view`)
/// and, for a user, whose view is the user's (`view_user`). Two levels where
/// [`view_facts`] and the rows above it take four: on 18.16 each level
/// analyses the ones below it again, and for the bench's median user the
/// four took 47 ms against 21 ms for these two (BENCHMARKS.md).
fn settled_groups(scope: Scope<'_>, grain: Grain, windows: &[u32], select: &str, inputs: &[&str]) -> Statement {
    let (Some(&first), Some(&last)) = (windows.first(), windows.last()) else {
        panic!("a settled read needs at least one window");
    };
    let (from, to) = (grain.start_of(first), grain.start_of(last) + grain.secs());
    let filters: &[&str] = match scope {
        Scope::User(_) => &["is_view", "view_user"],
        _ => &["is_view"],
    };
    let newest = filters
        .iter()
        .chain(inputs)
        .map(|c| format!("argMax({c}, version) AS newest_{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = Statement::new(&format!(
        "SELECT {select} FROM (SELECT video_id, session_id, start_ms, intDiv(start_ms, {}) AS window_of_start, \
         {newest} FROM {VIEW_FACTS_TABLE} WHERE date >= toDate(toDateTime(",
        grain.millis()
    ));
    sql.bind(from).sql(")) AND date <= toDate(toDateTime(").bind(to).sql(")) AND start_ms >= ");
    sql.bind(from * 1000).sql(" AND start_ms < ").bind(to * 1000);
    match scope {
        Scope::Video(video_id) => {
            sql.sql(" AND video_id = ").bind(video_id);
        }
        Scope::User(user_id) => user_keys(&mut sql, KeyOrder::VideoSession, user_id, from, Some(to)),
        Scope::All => panic!("a settled read is of one video or user"),
    }
    sql.sql(" GROUP BY video_id, session_id, start_ms) WHERE newest_is_view = 1 AND ");
    in_windows(&mut sql, "start_ms", TimeColumn::Millis, grain, windows);
    match scope {
        Scope::User(user_id) => {
            sql.sql(" AND newest_view_user = ").bind(user_id).sql(" GROUP BY window_of_start");
        }
        _ => {
            sql.sql(" GROUP BY video_id, window_of_start");
        }
    }
    sql
}

/// A facts pass: inserts under `version` the stored facts of every start at
/// or after `from_ms` of the keys with an events row inserted after `since`
/// (epoch seconds), or of every key with such a start when `since` is `None`
/// (a full pass).
pub fn insert_pass_facts(from_ms: u64, since: Option<u32>, version: u64) -> Statement {
    let keys = since.map(|since| touched_keys(since, None, None));
    let stored = STORED_COLUMNS.join(", ");
    let mut sql = Statement::new(&format!(
        "INSERT INTO {VIEW_FACTS_TABLE} (date, video_id, session_id, start_ms, {stored}, version) \
         SELECT toDate(toDateTime(intDiv(start_ms, 1000))), video_id, session_id, start_ms, {stored}, "
    ));
    sql.bind(version).sql(" FROM (").append(&stored_view_facts(from_ms, keys.as_ref())).sql(")");
    sql
}

/// `FROM view_facts WHERE` the rows pass `version` wrote (their starts are at
/// or after `from_ms`).
fn written_by(columns: &str, from_ms: u64, version: u64) -> Statement {
    let mut sql = Statement::new(&format!("SELECT {columns} FROM {VIEW_FACTS_TABLE} WHERE date >= toDate(toDateTime("));
    sql.bind(from_ms / 1000).sql(")) AND version = ").bind(version);
    sql
}

/// After pass `version` stored its facts: rewrites, under `version`, the
/// [`HOUR_METRICS_TABLE`] row of every (video, hour) the pass wrote a start
/// for, from the newest stored row of each start of the pair (the views of
/// the starts that still open one, by [`crate::rows::video_metric_aggregates`];
/// zeros and empty arrays when none does any more).
pub fn insert_pass_metrics(from_ms: u64, version: u64) -> Statement {
    let (newest, renamed) = newest_stored_columns();
    let aggregates = crate::rows::video_metric_aggregates(Some("is_view = 1"), &crate::rows::as_named);
    let mut sql = Statement::new(&format!(
        "INSERT INTO {HOUR_METRICS_TABLE} ({VIDEO_METRICS_COLUMNS}, version) SELECT {aggregates}, "
    ));
    sql.bind(version).sql(&format!(
        " AS version FROM (SELECT video_id, intDiv(start_ms, 3600000) AS window, {renamed} FROM \
         (SELECT video_id, session_id, start_ms, {newest} FROM {VIEW_FACTS_TABLE} WHERE date >= toDate(toDateTime("
    ));
    sql.bind(from_ms / 1000).sql(")) AND start_ms >= ").bind(from_ms);
    // The videos first (the table's sorting key leads with video_id), then the pairs.
    // GLOBAL: on a cluster a pair's starts lie on every shard (view_facts is
    // sharded by session), while the pass may have written on one of them;
    // each shard must filter by the whole cluster's pairs. (One server reads
    // GLOBAL IN as IN.)
    sql.sql(" AND video_id GLOBAL IN (").append(&written_by("video_id", from_ms, version)).sql(")");
    sql.sql(" AND (video_id, intDiv(start_ms, 3600000)) GLOBAL IN (");
    sql.append(&written_by("video_id, intDiv(start_ms, 3600000)", from_ms, version));
    sql.sql(") GROUP BY video_id, session_id, start_ms)) GROUP BY video_id, window");
    sql
}

/// After [`insert_pass_metrics`]: copies the views, completed views and watch
/// time of the hour rows pass `version` wrote into [`HOUR_TOTALS_TABLE`]
/// (top videos reads every video's hours from there, sorted by hour).
pub fn insert_pass_totals(from_ms: u64, version: u64) -> Statement {
    let mut sql = Statement::new(&format!(
        "INSERT INTO {HOUR_TOTALS_TABLE} (hour, video_id, views, completed_views, watch_time_seconds, version) \
         SELECT hour, video_id, toUInt64(views), toUInt64(completed_views), watch_time_seconds, version \
         FROM {HOUR_METRICS_TABLE} WHERE hour >= toDateTime("
    ));
    sql.bind(Grain::Hour.start_of(Grain::Hour.index_of(from_ms / 1000))).sql(") AND version = ").bind(version);
    sql
}

/// The `video_metrics` rows ([`VIDEO_METRICS_COLUMNS`]) of `video_id` for the
/// hours `windows`, from the newest [`HOUR_METRICS_TABLE`] row of each hour:
/// the hours as of the newest facts pass that wrote them.
pub fn pass_video_rows(video_id: &str, windows: &[u32]) -> Statement {
    crate::read::newest_rows(HOUR_METRICS_TABLE, VIDEO_METRICS_COLUMNS, Scope::Video(video_id), windows)
}

/// What the facts passes stored of one video from a time on
/// ([`video_pass_views`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, clickhouse::Row, Deserialize)]
pub struct VideoPassHours {
    /// The views of its newest [`HOUR_METRICS_TABLE`] row of each hour: the
    /// size of what an exact read of the video's open hours groups and
    /// rebuilds.
    pub views: u64,
    /// The hours (ascending indexes of [`Grain::Hour`]) with a row: those
    /// where a pass stored a start of the video (a view's or not). A pass
    /// stores every start of the keys it rebuilds from its `from_ms` on, and
    /// the first pass rebuilds every key, so an hour from there on without a
    /// row had no start of the video inserted up to the newest pass.
    pub hours: Vec<u32>,
}

/// [`VideoPassHours`] of `video_id` in the hours from `from` on (epoch
/// seconds), by the newest [`HOUR_METRICS_TABLE`] row of each hour.
pub fn video_pass_views(video_id: &str, from: u64) -> Statement {
    let mut sql = Statement::new(&format!(
        "SELECT toUInt64(sum(newest_views)) AS views, \
         arraySort(groupArray(toUInt32(intDiv(toUInt32(hour), 3600)))) AS hours \
         FROM (SELECT hour, argMax(views, version) AS newest_views FROM {HOUR_METRICS_TABLE} WHERE video_id = "
    ));
    sql.bind(video_id).sql(" AND hour >= toDateTime(").bind(from).sql(") GROUP BY hour)");
    sql
}

/// [`video_pass_views`] on `client`.
pub async fn fetch_video_pass_views(
    client: &clickhouse::Client,
    video_id: &str,
    from: u64,
) -> Result<VideoPassHours, clickhouse::error::Error> {
    video_pass_views(video_id, from).query(client).fetch_one().await
}

/// The views of the hours `windows`, by the newest [`HOUR_TOTALS_TABLE`]
/// row of each (video, hour) ([`pass_totals`]): one `UInt64`.
pub fn totals_views(windows: &[u32]) -> Statement {
    let mut sql = Statement::new("SELECT toUInt64(sum(views)) FROM (");
    sql.append(&pass_totals(windows)).sql(")");
    sql
}

/// The rows of `video_metrics`' `video_id, views, completed_views,
/// watch_time_seconds` (with its types) for the hours `windows`, from the
/// newest [`HOUR_TOTALS_TABLE`] row of each (video, hour): the totals as of
/// the newest facts pass that wrote the pair.
pub fn pass_totals(windows: &[u32]) -> Statement {
    let (Some(&first), Some(&last)) = (windows.first(), windows.last()) else {
        panic!("pass_totals needs at least one window");
    };
    // FINAL rather than argMax grouping: the table is sorted by (hour,
    // video_id), so FINAL merges the hours' sorted parts in one stream; on
    // 57 hours (216,000 pairs) of the bench's fixture, 45–67 ms against
    // 160 ms for the grouping (BENCHMARKS.md). The filter is on the sorting
    // key only, so it cannot separate a pair's versions.
    let mut sql = Statement::new(&format!(
        "SELECT video_id, toUInt32(views) AS views, toUInt32(completed_views) AS completed_views, \
         watch_time_seconds FROM {HOUR_TOTALS_TABLE} FINAL WHERE hour >= toDateTime("
    ));
    sql.bind(Grain::Hour.start_of(first)).sql(") AND hour < toDateTime(").bind(Grain::Hour.start_of(last) + 3600);
    sql.sql(") AND ");
    in_windows(&mut sql, "hour", TimeColumn::DateTime, Grain::Hour, windows);
    sql
}

/// The rows `version` wrote (a pass's size, for its record and logs) and
/// the earliest start among them: a [`PassWritten`].
pub fn pass_written(version: u64, from_ms: u64) -> Statement {
    written_by("count() AS rows, min(start_ms) AS first_start_ms", from_ms, version)
}

/// A row of [`pass_written`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct PassWritten {
    pub rows: u64,
    /// The earliest start written (epoch ms; 0 when no row was).
    pub first_start_ms: u64,
}

impl PassWritten {
    /// Where the pass's hour rows and totals look for what it wrote: the hour
    /// of its earliest start, not the horizon (`from_ms`). Every (video,
    /// hour) pair it wrote, and every start of those pairs, lies at or after
    /// that hour; an incremental pass of live sessions wrote this hour's or
    /// the last, so the steps after it read today's partition of
    /// [`VIEW_FACTS_TABLE`], not the whole horizon's.
    pub fn hours_from_ms(&self, from_ms: u64) -> u64 {
        let first_hour_ms = Grain::Hour.start_of(Grain::Hour.index_of(self.first_start_ms / 1000)) * 1000;
        first_hour_ms.max(from_ms)
    }
}

/// A finished pass, as recorded in [`PASSES_TABLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassRecord {
    pub version: u64,
    pub covered_until: u32,
    pub from_ms: u64,
    pub full: bool,
    /// `view_facts` rows written.
    pub rows: u64,
    /// The views of the hour of `covered_until` and the hour before it, by
    /// the totals after the pass ([`totals_views`]).
    pub open_views: u64,
}

/// Records a finished pass.
pub fn insert_pass(pass: &PassRecord) -> Statement {
    let mut sql = Statement::new(&format!(
        "INSERT INTO {PASSES_TABLE} (version, covered_until, from_ms, full_pass, rows, open_views, computed_at) SELECT "
    ));
    sql.bind(pass.version).sql(", toDateTime(").bind(pass.covered_until).sql("), ").bind(pass.from_ms);
    sql.sql(", ").bind(u64::from(pass.full)).sql(", ").bind(pass.rows).sql(", ").bind(pass.open_views);
    sql.sql(", now()");
    sql
}

/// The newest pass of the last day (`version`, `covered_until`, `from_ms`,
/// `open_views`) and ClickHouse's clock (`now`, epoch seconds); no row
/// without one (an older pass is of no use to a read, and the next pass is
/// full anyway).
pub fn newest_pass() -> Statement {
    Statement::new(&format!(
        "SELECT version, toUInt32(covered_until) AS covered_until, from_ms, open_views, toUInt32(now()) AS now \
         FROM {PASSES_TABLE} WHERE computed_at >= now() - 86400 ORDER BY version DESC LIMIT 1"
    ))
}

/// A row of [`newest_pass`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct PassRow {
    pub version: u64,
    pub covered_until: u32,
    pub from_ms: u64,
    pub open_views: u64,
    pub now: u32,
}

/// What a pass is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassPlan {
    /// Larger than every earlier pass's (and aggregation run's) version.
    pub version: u64,
    /// The views starting at or after this time (epoch ms)…
    pub from_ms: u64,
    /// …of the keys with a row inserted after this time (epoch seconds), or
    /// of every key (a full pass) when `None`.
    pub since: Option<u32>,
    /// What the pass's record promises: every row inserted up to here is in
    /// its facts (epoch seconds; `since` must be old enough for that).
    pub covered_until: u32,
}

/// Runs a whole pass on `client`: stores the facts, rewrites the hour totals
/// of the pairs it touched, measures the open hours' views, and records the
/// pass last (a pass that fails half-way is not recorded, so the next one
/// covers its keys again). On failure, the step that failed and its error.
pub async fn run_pass(
    client: &clickhouse::Client,
    plan: PassPlan,
) -> Result<PassRecord, (&'static str, clickhouse::error::Error)> {
    let PassPlan { version, from_ms, since, covered_until } = plan;
    let failed = |step: &'static str| move |error| (step, error);
    insert_pass_facts(from_ms, since, version)
        .query(client)
        .execute()
        .await
        .map_err(failed("store the touched views' facts"))?;
    let written: PassWritten =
        pass_written(version, from_ms).query(client).fetch_one().await.map_err(failed("count the pass's rows"))?;
    if written.rows > 0 {
        let hours_from_ms = written.hours_from_ms(from_ms);
        insert_pass_metrics(hours_from_ms, version)
            .query(client)
            .execute()
            .await
            .map_err(failed("rewrite the touched hours' metrics"))?;
        insert_pass_totals(hours_from_ms, version)
            .query(client)
            .execute()
            .await
            .map_err(failed("rewrite the touched hours' totals"))?;
    }
    let rows = written.rows;
    let newest = Grain::Hour.index_of(u64::from(covered_until));
    let open_views = totals_views(&[newest.saturating_sub(1), newest])
        .query(client)
        .fetch_one()
        .await
        .map_err(failed("sum the open hours' views"))?;
    let record = PassRecord { version, covered_until, from_ms, full: since.is_none(), rows, open_views };
    insert_pass(&record).query(client).execute().await.map_err(failed("record the facts pass"))?;
    Ok(record)
}

/// [`newest_pass`] on `client`.
pub async fn fetch_newest_pass(client: &clickhouse::Client) -> Result<Option<PassRow>, clickhouse::error::Error> {
    newest_pass().query(client).fetch_optional().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_halves_of_a_read_use_the_same_bounded_key_set() {
        let facts = StoredFacts { covered_until: 1_000, from_ms: 0, touched: Touched::Before(1_010) };
        let sql = view_facts(Scope::All, Grain::Hour, &[5, 6], &facts, None);
        let text = sql.text();
        let set = "SELECT video_id, session_id FROM keys_by_insert WHERE inserted_at > toDateTime(?) \
                   AND inserted_at < toDateTime(?)";
        assert_eq!(text.matches(set).count(), 2, "{text}");
        assert!(text.contains("NOT IN (SELECT video_id, session_id FROM keys_by_insert"), "{text}");
        assert!(!text.contains("FINAL"), "{text}");
    }

    #[test]
    fn listed_keys_are_written_into_both_halves_and_nothing_selects_them_again() {
        let keys = vec![("v1".to_string(), "s1".to_string()), ("v1".to_string(), "s'2".to_string())];
        let facts = StoredFacts { covered_until: 1_000, from_ms: 0, touched: Touched::Listed(keys) };
        for scope in [Scope::Video("v1"), Scope::User("u1")] {
            let sql = view_facts(scope, Grain::Hour, &[5, 6], &facts, None);
            let text = sql.text();
            assert!(!text.contains(KEYS_BY_INSERT_TABLE), "{text}");
            assert!(text.contains("(video_id, session_id) NOT IN ((?, ?), (?, ?))"), "{text}");
            assert!(text.contains("(video_id, session_id) IN ((?, ?), (?, ?))"), "{text}");
            // No set of the windows' starts: the listed keys are narrower.
            assert!(!text.contains("IN (SELECT video_id, session_id FROM events WHERE event_type = 'video_start'"));
            assert!(sql.render().contains(r"'s\'2'"), "{}", sql.render());
        }
    }

    #[test]
    fn settled_facts_read_the_stored_rows_alone() {
        let settled = StoredFacts::settled(1_000, 0);
        assert!(settled.touches_nothing());
        // One second between the bounds holds no whole second either; two do.
        assert!(StoredFacts { touched: Touched::Before(1_001), ..settled.clone() }.touches_nothing());
        assert!(!StoredFacts { touched: Touched::Before(1_002), ..settled.clone() }.touches_nothing());
        for scope in [Scope::Video("v1"), Scope::User("u1"), Scope::All] {
            let text = view_facts(scope, Grain::Hour, &[5, 6], &settled, None).text().to_string();
            assert!(!text.contains(KEYS_BY_INSERT_TABLE), "{text}");
            assert!(!text.contains("UNION ALL") && !text.contains("FROM events"), "{text}");
            assert!(text.contains(&format!("FROM {VIEW_FACTS_TABLE} WHERE")), "{text}");
        }
    }

    #[test]
    fn a_pass_rewrites_hours_from_its_earliest_start_on_never_before_its_horizon() {
        let written = |first_start_ms| PassWritten { rows: 1, first_start_ms };
        assert_eq!(written(3 * 3_600_000 + 1_234).hours_from_ms(3_600_000), 3 * 3_600_000);
        assert_eq!(written(3 * 3_600_000).hours_from_ms(3_600_000), 3 * 3_600_000);
        assert_eq!(written(5_000).hours_from_ms(3_600_000), 3_600_000);
        assert_eq!(written(0).hours_from_ms(7_200_000), 7_200_000);
    }

    #[test]
    fn facts_cover_windows_from_their_horizon_only() {
        let facts = StoredFacts { covered_until: 1_000, from_ms: 7_200_000, touched: Touched::Before(1_010) };
        assert!(facts.covers(Grain::Hour, &[2, 3]));
        assert!(!facts.covers(Grain::Hour, &[1, 2]));
        assert!(!facts.covers(Grain::Day, &[0]));
    }
}
