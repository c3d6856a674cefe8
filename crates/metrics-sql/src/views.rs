//! Views and their facts: the per-view SQL every metric is built from
//! (docs/metrics.md, "Views").

use events_model::EVENTS_TABLE;
use serde::Deserialize;

use crate::{
    EVENTS_BY_TIME_TABLE, KEYS_BY_DAY_TABLE, Statement, VIEWS_BY_USER_TABLE,
    windows::{Grain, TimeColumn, VIEW_SPAN_MS, in_windows},
};

/// Whose views a statement reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    All,
    Video(&'a str),
    /// The views whose first `user_id` is this one.
    User(&'a str),
}

/// Per view (one row per `(session_id, video_id)` with a `video_start`), for
/// the views whose start falls in one of `windows` (ascending indexes of
/// `grain`), these columns:
///
/// `session_id`, `video_id`, `start_ms`, `window` (index of the start's
/// window), `watch_seconds`, `completed`, `failed`, `exited_before_start`
/// (UInt8), `startup_ms` (Int64, -1 when unknown), `view_buffer_ms`,
/// `view_duration` (Nullable), `view_quality`, `view_device`, `view_user`
/// (Nullable), `viewer` (`u:<user_id>` or `s:<session_id>`), `last_inserted`.
///
/// The `view_` names differ from every events column on purpose: ClickHouse
/// resolves a name to a same-named alias of the enclosing SELECT first.
///
/// Of the keys `keys` names ([`Keys`]). With `by_time_from_ms`
/// (the time from which [`EVENTS_BY_TIME_TABLE`] holds every event row) at
/// or before the scan's start, a rebuild of every video's views reads that
/// time-clustered copy instead of `events`, which is sorted by video: a time
/// range of `events` prunes little.
pub fn view_facts(
    scope: Scope<'_>,
    grain: Grain,
    windows: &[u32],
    keys: Keys<'_>,
    by_time_from_ms: Option<u64>,
) -> Statement {
    let (Some(&first), Some(&last)) = (windows.first(), windows.last()) else {
        panic!("view_facts needs at least one window");
    };
    // Events of a view lie within VIEW_SPAN_MS after its start, and whether a
    // video_start opens a view depends on the video_start before it, which
    // can be up to VIEW_SPAN_MS earlier: of the day before the first window
    // only the video_starts are kept. The other rows of that day (nine in
    // ten, with every column) are filtered before the grouping builds its
    // arrays, which is most of a rebuild's cost; the open hour's rebuild
    // no longer processes the platform's whole previous day.
    let from = grain.start_of(first);
    let scan_to = grain.start_of(last) + grain.secs() + VIEW_SPAN_MS / 1000;
    let scan_from_ms = from.saturating_sub(VIEW_SPAN_MS / 1000) * 1000;
    let table = match scope {
        Scope::All => crate::events_table_from(scan_from_ms, by_time_from_ms),
        _ => EVENTS_TABLE,
    };
    let mut filter = scan_filter(from, Some(scan_to));
    match scope {
        Scope::All => {}
        Scope::Video(video_id) => {
            filter.sql(" AND video_id = ").bind(video_id);
        }
        Scope::User(user_id) => {
            user_keys(&mut filter, KeyOrder::Video, user_id, from.saturating_sub(VIEW_SPAN_MS / 1000), Some(scan_to))
        }
    }
    // Only keys with a video_start in one of the windows can have a view
    // starting there: the ±VIEW_SPAN_MS scan reads those keys' rows, not the
    // whole platform's (an empty or future window reads almost nothing). A
    // user's keys are already narrowed by the index above, and listed keys
    // are few: the set of the windows' starts would cost more than it saves
    // (it reads the event types of every row of the video's windows; 104 →
    // 48 ms for a busy video's 133 listed keys, BENCHMARKS.md). A listed key
    // without a start there yields no view of the windows anyway.
    if !matches!(scope, Scope::User(_)) && !matches!(keys, Keys::Listed(_)) {
        starts_in_windows(&mut filter, table, scope, grain, windows);
    }
    if let Keys::Selected(keys) | Keys::Listed(keys) = keys {
        filter.sql(" AND (video_id, session_id) IN (").append(keys).sql(")");
    }

    let window_ms = grain.millis();
    let mut sql = Statement::new(&format!(
        "SELECT session_id, video_id, start_ms, intDiv(start_ms, {window_ms}) AS window, {SPAN_EVENTS}, {FACTS} FROM ("
    ));
    sql.append(&keys_events(table, &filter, "")).sql(") ARRAY JOIN view_starts AS start_ms WHERE ");
    in_windows(&mut sql, "start_ms", TimeColumn::Millis, grain, windows);
    if let Scope::User(user_id) = scope {
        sql.sql(" AND view_user = ").bind(user_id);
    }
    sql
}

/// Which view keys [`view_facts`] rebuilds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Keys<'a> {
    /// Every key of the scope.
    All,
    /// Those a `SELECT video_id, session_id …` statement selects.
    Selected(&'a Statement),
    /// Exactly these pairs, written out (`(?, ?), (?, ?)…`, the right side
    /// of an `IN`): few, named by the reader.
    Listed(&'a Statement),
}

/// The rows of `events` a rebuild of the views starting at or after `from`
/// (epoch seconds) reads, up to `to` when given: everything from `from`, and
/// of the [`VIEW_SPAN_MS`] before it only the `video_start`s.
fn scan_filter(from: u64, to: Option<u64>) -> Statement {
    let mut filter = Statement::new("(timestamp >= toDateTime(");
    filter.bind(from).sql(") OR (event_type = 'video_start' AND timestamp >= toDateTime(");
    filter.bind(from.saturating_sub(VIEW_SPAN_MS / 1000)).sql(")))");
    if let Some(to) = to {
        filter.sql(" AND timestamp <= toDateTime(").bind(to).sql(")");
    }
    filter
}

/// Per key with a `video_start` among the rows of `table` (`events` or
/// [`EVENTS_BY_TIME_TABLE`]) that `filter` selects: its
/// deduplicated events `evs` ([`EVENTS_ARRAY`]), `view_starts`
/// ([`VIEW_STARTS`]), `extra` (select items, each with a leading comma) and
/// `last_inserted`.
///
/// Copies of an event share its key, so each key deduplicates its own
/// events in the GROUP BY that builds its views: the rows scanned are read
/// once, never sorted as a whole.
fn keys_events(table: &str, filter: &Statement, extra: &str) -> Statement {
    let mut sql = Statement::new(&format!(
        "SELECT session_id, video_id, {EVENTS_ARRAY} AS evs, {VIEW_STARTS} AS view_starts{extra}, \
         max(inserted_at) AS last_inserted FROM {table} WHERE "
    ));
    sql.append(filter).sql(" GROUP BY session_id, video_id HAVING countIf(event_type = 'video_start') > 0");
    sql
}

/// The facts a pass stores in [`crate::facts::VIEW_FACTS_TABLE`]: for every
/// distinct `video_start` time at or after `from_ms` of the keys `keys`
/// selects (a `SELECT video_id, session_id …` statement; every key with such
/// a start when `None`), [`view_facts`]' columns without `window`, and
/// `is_view` (UInt8): whether the start opens a view (the facts of a start
/// that does not are meaningless; its row is a tombstone). Read from
/// [`EVENTS_BY_TIME_TABLE`], which covers the lateness horizon and the day
/// before it.
pub(crate) fn stored_view_facts(from_ms: u64, keys: Option<&Statement>) -> Statement {
    let from = from_ms / 1000;
    let mut filter = scan_filter(from, None);
    if let Some(keys) = keys {
        // The touched keys of an incremental pass are mostly live sessions
        // that began minutes ago: the scan starts at the earliest
        // `video_start` any of them has from the rows' span on (from
        // `keys_by_day_v2`, which holds every key's start times), not at the
        // horizon. Before its first start a key's rows belong to no view, and
        // whether a start opens one depends on the starts before it only, so
        // this drops nothing a fact is built from. A whole day's scan at the
        // bench's 2,000 events/s read 1.4 M rows a pass (BENCHMARKS.md). A
        // late row of an old view brings the start back to that view's;
        // with no start at all the bound lies past every row and the scan
        // reads nothing.
        let span_from = from.saturating_sub(VIEW_SPAN_MS / 1000);
        filter
            .sql(" AND timestamp >= (SELECT toDateTime(intDiv(arrayReduce('min', arrayPushBack(arrayFilter(t -> t >= ");
        filter.bind(span_from * 1000).sql(", groupUniqArrayArrayMerge(start_times)), toUInt64(").bind(NO_START_MS);
        filter.sql(&format!("))), 1000)) FROM {KEYS_BY_DAY_TABLE} WHERE date >= toDate(toDateTime("));
        filter.bind(span_from).sql(")) AND (video_id, session_id) IN (");
        filter.append(keys).sql("))");
    }
    filter.sql(" AND (video_id, session_id) IN (");
    match keys {
        Some(keys) => {
            filter.append(keys);
        }
        None => {
            filter.sql(&format!(
                "SELECT video_id, session_id FROM {EVENTS_BY_TIME_TABLE} WHERE event_type = 'video_start' \
                 AND timestamp >= toDateTime("
            ));
            filter.bind(from).sql(") AND timestamp_ms >= ").bind(from_ms);
        }
    }
    filter.sql(")");
    let mut sql = Statement::new(&format!(
        "SELECT session_id, video_id, start_ms, toUInt8(has(view_starts, start_ms)) AS is_view, {SPAN_EVENTS}, {FACTS} FROM ("
    ));
    sql.append(&keys_events(EVENTS_BY_TIME_TABLE, &filter, ", arrayDistinct(ts) AS start_times"));
    sql.sql(") ARRAY JOIN start_times AS start_ms WHERE start_ms >= ").bind(from_ms);
    sql
}

/// The scan bound of a pass whose touched keys have no start (2100-01-01,
/// epoch ms): past every row, so the scan reads nothing.
const NO_START_MS: u64 = 4_102_444_800_000;

/// How a table's sorting key begins, for [`user_keys`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyOrder {
    /// `(video_id, session_id, …)` (`keys_by_day_v2`, `view_facts`): the
    /// primary key uses a set of `(video_id, session_id)` pairs directly.
    VideoSession,
    /// `video_id` then other columns (`events`): only the videos prune.
    Video,
}

/// `AND` the key is one of `user_id`'s views between `from` and `to` (epoch
/// seconds, `to` open-ended when `None`), from the [`VIEWS_BY_USER_TABLE`]
/// index. For a table sorted by video then session the pairs alone prune
/// its granules; otherwise first the videos, so that only their granules
/// are read, then the keys themselves. (A set of videos besides the pairs
/// read the same 490,000 `view_facts` rows in 47 ms against 25 ms for the
/// pairs alone on the bench's fixture: one more subquery for nothing.)
pub(crate) fn user_keys(filter: &mut Statement, order: KeyOrder, user_id: &str, from: u64, to: Option<u64>) {
    let sets: &[&str] = match order {
        KeyOrder::VideoSession => &["(video_id, session_id)"],
        KeyOrder::Video => &["video_id", "(video_id, session_id)"],
    };
    for &columns in sets {
        let selected = columns.trim_matches(|c| c == '(' || c == ')');
        filter.sql(&format!(" AND {columns} IN (SELECT {selected} FROM {VIEWS_BY_USER_TABLE} WHERE user_id = "));
        filter.bind(user_id).sql(" AND date >= toDate(toDateTime(").bind(from).sql("))");
        if let Some(to) = to {
            filter.sql(" AND date <= toDate(toDateTime(").bind(to).sql("))");
        }
        filter.sql(")");
    }
}

/// `AND (video_id, session_id) IN (the keys with a video_start in one of
/// `windows`)`, of `scope`'s video when it names one.
fn starts_in_windows(filter: &mut Statement, table: &str, scope: Scope<'_>, grain: Grain, windows: &[u32]) {
    let (Some(&first), Some(&last)) = (windows.first(), windows.last()) else { return };
    filter.sql(&format!(
        " AND (video_id, session_id) IN (SELECT video_id, session_id FROM {table} \
         WHERE event_type = 'video_start' AND timestamp >= toDateTime("
    ));
    filter.bind(grain.start_of(first)).sql(") AND timestamp < toDateTime(");
    filter.bind(grain.start_of(last) + grain.secs()).sql(") AND ");
    in_windows(filter, "timestamp_ms", TimeColumn::Millis, grain, windows);
    if let Scope::Video(video_id) = scope {
        filter.sql(" AND video_id = ").bind(video_id);
    }
    filter.sql(")");
}

/// The starts of a key's views: its `video_start` times in order (client
/// time, then event id), keeping each that comes more than [`VIEW_SPAN_MS`]
/// after the `video_start` before it. Read from `evs`, the key's
/// deduplicated events ([`EVENTS_ARRAY`]).
///
/// Every comparison with the element before goes through a shifted copy of
/// the array (`arrayPopBack(arrayPushFront(a, default))`) passed beside it,
/// never through `a[i - 1]` inside the lambda: ClickHouse copies a captured
/// array once per element, so indexing it costs memory quadratic in the
/// array's length (a view of 3,000 events needed over 2 GiB).
const VIEW_STARTS: &str = "arrayFilter((t, prev, i) -> i = 1 OR t - prev > 86400000, \
    arrayMap(x -> tupleElement(x, 1), arrayFilter(x -> tupleElement(x, 3) = 'video_start', evs)) AS ts, \
    arrayPopBack(arrayPushFront(ts, 0)), arrayEnumerate(ts))";

/// A key's events, one copy of each `event_id` (the first received; copies
/// of an event share its key), sorted by client time then event id, as
/// tuples of 1 timestamp_ms, 2 event_id, 3 event_type, 4 playhead when the
/// event happened, 5 playhead after it (they differ for a seek), 6 fatal,
/// 7 startup_time_ms, 8 buffer_duration_ms, 9 duration_seconds,
/// 10 rendition in effect after the event, 11 device_type, 12 user_id,
/// 13 inserted_at, 14 received_at_ms.
const EVENTS_ARRAY: &str = "arraySort(x -> (tupleElement(x, 1), tupleElement(x, 2)), \
    arrayFilter((x, prev_id) -> tupleElement(x, 2) != prev_id, \
    arraySort(x -> (tupleElement(x, 2), tupleElement(x, 14)), groupArray(tuple(\
    timestamp_ms, toString(event_id), event_type, \
    if(event_type = 'seek', coalesce(seek_from_seconds, position_seconds), position_seconds), \
    if(event_type = 'seek', coalesce(seek_to_seconds, position_seconds), position_seconds), \
    fatal, startup_time_ms, buffer_duration_ms, duration_seconds, \
    if(event_type = 'quality_change' AND to_quality != '', to_quality, quality), \
    device_type, user_id, inserted_at, received_at_ms))) AS copies, \
    arrayPopBack(arrayPushFront(arrayMap(x -> tupleElement(x, 2), copies), ''))))";

/// The events `e` of the view starting at `start_ms` of a key with events
/// `evs` ([`keys_events`]): those of its [`VIEW_SPAN_MS`], which [`FACTS`] reads.
const SPAN_EVENTS: &str = "arrayFilter(x -> tupleElement(x, 1) >= start_ms \
    AND tupleElement(x, 1) <= start_ms + 86400000, evs) AS e";

/// The facts of a view from its span's events `e` (see [`EVENTS_ARRAY`]).
///
/// Watch time: consecutive events that both carry a playhead form a segment;
/// it adds the playhead advance from the first's position after the event to
/// the second's position when it happened, clamped to [0, 2 × wall-clock
/// seconds between them], and nothing when the first paused or ended playback.
const FACTS: &str = "\
    arrayFilter(x -> isNotNull(tupleElement(x, 4)) AND isNotNull(tupleElement(x, 5)), e) AS p, \
    arraySum(arrayMap((cur, prev, i) -> if(i = 1 \
            OR has(['video_pause', 'video_complete'], tupleElement(prev, 3)) \
            OR (tupleElement(prev, 3) = 'video_error' AND tupleElement(prev, 6) = 1), \
        0., \
        greatest(0., least(assumeNotNull(tupleElement(cur, 4)) - assumeNotNull(tupleElement(prev, 5)), \
            2. * (toInt64(tupleElement(cur, 1)) - toInt64(tupleElement(prev, 1))) / 1000.))), \
        p, arrayPopBack(arrayPushFront(p, p[1])), arrayEnumerate(p))) AS watch_seconds, \
    arrayExists(x -> tupleElement(x, 3) = 'video_complete', e) AS completed, \
    arrayExists(x -> tupleElement(x, 3) = 'video_error' AND tupleElement(x, 6) = 1, e) AS failed, \
    arrayExists(x -> tupleElement(x, 3) = 'video_progress', e) AS progressed, \
    (NOT progressed) AND (NOT failed) AS exited_before_start, \
    coalesce(toInt64(tupleElement(arrayFirst(x -> isNotNull(tupleElement(x, 7)), e), 7)), \
        if(progressed, \
            toInt64(tupleElement(arrayFirst(x -> tupleElement(x, 3) = 'video_progress', e), 1)) - toInt64(start_ms), \
            -1)) AS startup_ms, \
    arraySum(arrayMap(x -> if(tupleElement(x, 3) = 'video_buffer', \
        toUInt64(ifNull(tupleElement(x, 8), 0)), toUInt64(0)), e)) AS view_buffer_ms, \
    arrayReduce('max', arrayMap(x -> tupleElement(x, 9), e)) AS view_duration, \
    tupleElement(arrayFirst(x -> tupleElement(x, 10) != '', arrayReverse(e)), 10) AS view_quality, \
    tupleElement(arrayFirst(x -> tupleElement(x, 11) != '', arrayReverse(e)), 11) AS view_device, \
    tupleElement(arrayFirst(x -> isNotNull(tupleElement(x, 12)), e), 12) AS view_user, \
    if(isNull(view_user), concat('s:', session_id), concat('u:', assumeNotNull(view_user))) AS viewer, \
    last_inserted";

/// Per window of `grain` at or after `horizon_ms`, the latest insert time
/// (epoch seconds) that can change it: columns `window` (UInt32) and
/// `last_inserted` (UInt32).
///
/// A view's window gets the latest insert among the rows of the view's key.
/// Besides, the window of every `video_start` of a key gets the latest
/// insert of a `video_start` of that key: a late `video_start` can move a view
/// to another window, and the window it left must be recomputed too.
///
/// Every window at or after the horizon where a `video_start` of the scope
/// is stored has a row, so a window without one holds no view of the scope
/// ([`crate::windows::split`] skips it). For a user, every key the user
/// appears in counts, whoever its views' first user is: more windows than
/// the user's own views, never fewer.
///
/// Not deduplicated on purpose: a redelivered copy is an insert too, and
/// treating it as a change only costs a recomputation.
pub fn last_inserted_by_window(scope: Scope<'_>, grain: Grain, horizon_ms: u64) -> Statement {
    let window_ms = grain.millis();
    // Read from the per-key index (schemas/clickhouse/0014_keys_by_day_v2.sql),
    // not from `events`: one merged row per key and day. Its days start at
    // the horizon's day, so a key's `video_start`s may begin a little before
    // the horizon: whether a start opens a view depends only on the start
    // before it, so more history can only turn a start that looked like a
    // view's into what it really is, and windows before the horizon are
    // dropped below.
    let mut sql = Statement::new(&format!(
        "SELECT toUInt32(tupleElement(p, 1)) AS window, toUInt32(max(tupleElement(p, 2))) AS last_inserted \
         FROM (SELECT arrayFilter((t, prev, i) -> i = 1 OR t - prev > {VIEW_SPAN_MS}, \
             arraySort(groupUniqArrayArrayMerge(start_times)) AS ts, arrayPopBack(arrayPushFront(ts, 0)), \
             arrayEnumerate(ts)) AS view_starts, \
         arrayConcat( \
             arrayMap((s, t) -> tuple(intDiv(s, {window_ms}), t), view_starts, \
                 arrayResize(emptyArrayDateTime(), length(view_starts), maxMerge(inserted_max))), \
             arrayMap((s, t) -> tuple(intDiv(s, {window_ms}), t), ts, \
                 arrayResize(emptyArrayDateTime(), length(ts), maxMerge(start_inserted_max)))) \
             AS pairs \
         FROM {KEYS_BY_DAY_TABLE} WHERE date >= toDate(toDateTime("
    ));
    sql.bind(horizon_ms / 1000).sql("))");
    match scope {
        Scope::All => {}
        Scope::Video(video_id) => {
            sql.sql(" AND video_id = ").bind(video_id);
        }
        Scope::User(user_id) => user_keys(&mut sql, KeyOrder::VideoSession, user_id, horizon_ms / 1000, None),
    }
    sql.sql(" GROUP BY video_id, session_id HAVING length(ts) > 0");
    sql.sql(") ARRAY JOIN pairs AS p WHERE tupleElement(p, 1) >= ");
    sql.bind(horizon_ms / window_ms).sql(" GROUP BY window ORDER BY window");
    sql
}

/// [`last_inserted_by_window`] run on `client`, by window.
pub async fn fetch_last_inserted(
    client: &clickhouse::Client,
    scope: Scope<'_>,
    grain: Grain,
    horizon: u32,
) -> Result<std::collections::BTreeMap<u32, u32>, clickhouse::error::Error> {
    let rows = last_inserted_by_window(scope, grain, grain.start_of(horizon) * 1000)
        .query(client)
        .fetch_all::<LastInsertedRow>()
        .await?;
    Ok(rows.into_iter().map(|r| (r.window, r.last_inserted)).collect())
}

/// A row of [`last_inserted_by_window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct LastInsertedRow {
    pub window: u32,
    pub last_inserted: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_freshness_probe_keeps_the_start_bench_queries_recognises() {
        // xtask/src/bench/queries.rs, FRESHNESS_PREFIX
        let sql = last_inserted_by_window(Scope::All, Grain::Hour, 0);
        assert!(sql.text().starts_with("SELECT toUInt32(tupleElement(p, 1)) AS window"), "{}", sql.text());
    }

    #[test]
    fn view_starts_use_the_view_span() {
        assert!(VIEW_STARTS.contains(&format!("> {VIEW_SPAN_MS}")));
        assert!(SPAN_EVENTS.contains(&format!("<= start_ms + {VIEW_SPAN_MS},")));
        let probe = last_inserted_by_window(Scope::All, Grain::Hour, 0);
        assert!(probe.text().contains(&format!("> {VIEW_SPAN_MS}")), "{}", probe.text());
    }
}
