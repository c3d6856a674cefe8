//! Per-day totals of final hours: what top videos reads for whole days
//! instead of their 24 hours of `video_metrics` rows
//! (`schemas/clickhouse/0011_video_day_totals.sql`).
//!
//! aggregator-cron rolls a UTC day up once all 24 of its hours are aggregated
//! and past the lateness horizon: one row per video from the newest
//! `video_metrics` row of each of its hours, under a new version (a video
//! whose views left the day gets zeros from its hours' retired rows). It
//! then records the rollup with the newest hour marker it saw (the day's
//! *source version*). A read uses a day's rollup only when every hour
//! of the day is answered from `video_metrics` and the recorded source
//! version equals the newest marker of those hours now, so an hour run again
//! later (a backfill) sends the day back to its hours until it is rolled up
//! again: the answer is the one the 24 hours would give.

use std::{collections::BTreeMap, ops::Range};

use serde::Deserialize;

use crate::{
    Statement,
    windows::{Grain, Marker, Split, TimeColumn, in_windows},
};

/// Per video and UTC day, the day's views, completed views and watch time.
pub const DAY_TOTALS_TABLE: &str = "video_day_totals";

/// One row per rollup of a day: the source version it was computed from.
pub const ROLLUPS_TABLE: &str = "video_day_rollups";

pub const HOURS_PER_DAY: u32 = 24;

/// The hours (window indexes) of `day`.
pub fn hours_of(day: u32) -> Range<u32> {
    day * HOURS_PER_DAY..(day + 1) * HOURS_PER_DAY
}

/// The days the hours `hours` fall in (those of the first to the last hour).
pub fn days_of(hours: Range<u32>) -> Range<u32> {
    hours.start / HOURS_PER_DAY..hours.end.div_ceil(HOURS_PER_DAY)
}

/// The newest marker version among the hours of `day`, when all 24 have a marker.
pub fn source_version(markers: &BTreeMap<u32, Marker>, day: u32) -> Option<u64> {
    hours_of(day).try_fold(0u64, |newest, hour| markers.get(&hour).map(|m| newest.max(m.version)))
}

/// The days among `days` to roll up: every hour aggregated (24 markers) and
/// before `horizon`, and no rollup recorded for the newest of those markers.
/// With each day, the source version to record.
pub fn due(
    days: &[u32],
    markers: &BTreeMap<u32, Marker>,
    rollups: &BTreeMap<u32, u64>,
    horizon: u32,
) -> Vec<(u32, u64)> {
    days.iter()
        .filter(|&&day| hours_of(day).end <= horizon)
        .filter_map(|&day| source_version(markers, day).map(|source| (day, source)))
        .filter(|(day, source)| rollups.get(day) != Some(source))
        .collect()
}

/// Moves to `split.days` every day whose 24 hours `split` reads from
/// `video_metrics` and whose recorded rollup (`rollups`: source version by
/// day) is of the markers' newest version of those hours.
pub fn use_rollups(split: &mut Split, markers: &BTreeMap<u32, Marker>, rollups: &BTreeMap<u32, u64>) {
    let mut by_day: BTreeMap<u32, u32> = BTreeMap::new();
    for &hour in &split.aggregated {
        *by_day.entry(hour / HOURS_PER_DAY).or_default() += 1;
    }
    let days: Vec<u32> = by_day
        .into_iter()
        .filter(|&(day, hours)| {
            hours == HOURS_PER_DAY && rollups.get(&day).is_some_and(|&r| source_version(markers, day) == Some(r))
        })
        .map(|(day, _)| day)
        .collect();
    if days.is_empty() {
        return;
    }
    split.aggregated.retain(|hour| !days.contains(&(hour / HOURS_PER_DAY)));
    split.days = days;
}

/// Rolls `day` up under `version`: one row per video of its hours, from the
/// newest `video_metrics` row of each hour. A video whose views all left the
/// day still has a row, of zeros: its hours' newest rows are the zeros
/// [`crate::rows::retire_vanished_rows`] wrote, so the rollup replaces any
/// earlier total of the video.
pub fn insert_day_totals(day: u32, version: u64) -> Statement {
    let start = Grain::Day.start_of(day);
    let mut sql = Statement::new(&format!(
        "INSERT INTO {DAY_TOTALS_TABLE} (date, video_id, views, completed_views, watch_time_seconds, version) \
         SELECT toDate(toDateTime("
    ));
    sql.bind(start).sql(
        ")) AS date, video_id, toUInt64(sum(hour_views)) AS views, toUInt64(sum(hour_completed)) AS completed_views, \
         sum(hour_watch) AS watch_time_seconds, ",
    );
    sql.bind(version).sql(
        " AS version FROM (SELECT video_id, argMax(views, version) AS hour_views, \
         argMax(completed_views, version) AS hour_completed, argMax(watch_time_seconds, version) AS hour_watch \
         FROM video_metrics WHERE hour >= toDateTime(",
    );
    sql.bind(start).sql(") AND hour < toDateTime(").bind(start + Grain::Day.secs());
    sql.sql(") GROUP BY video_id, hour) GROUP BY video_id");
    sql
}

/// The rows with views that the rollup `version` of `day` wrote.
pub fn count_day_rows(day: u32, version: u64) -> Statement {
    let mut sql = Statement::new(&format!("SELECT count() FROM {DAY_TOTALS_TABLE} WHERE date = toDate(toDateTime("));
    sql.bind(Grain::Day.start_of(day)).sql(")) AND version = ").bind(version).sql(" AND views > 0");
    sql
}

/// Records the rollup `version` of `day`, computed from hours whose newest
/// marker was `source_version`. Written after its rows.
pub fn insert_record(day: u32, source_version: u64, version: u64, rows: u64) -> Statement {
    let mut sql = Statement::new(&format!(
        "INSERT INTO {ROLLUPS_TABLE} (date, source_version, version, rows, computed_at) SELECT toDate(toDateTime("
    ));
    sql.bind(Grain::Day.start_of(day)).sql(")), ").bind(source_version).sql(", ").bind(version);
    sql.sql(", ").bind(rows).sql(", now()");
    sql
}

/// The newest rollup record of each day in `[from, to)`: `day` (UInt32),
/// `source_version` (UInt64).
pub fn records(from: u32, to: u32) -> Statement {
    let mut sql = Statement::new(&format!(
        "SELECT toUInt32(toUInt16(date)) AS day, argMax(source_version, version) AS source_version \
         FROM {ROLLUPS_TABLE} WHERE date >= toDate(toDateTime("
    ));
    sql.bind(Grain::Day.start_of(from)).sql(")) AND date < toDate(toDateTime(").bind(Grain::Day.start_of(to));
    sql.sql(")) GROUP BY date ORDER BY day");
    sql
}

/// Rolls `day` up under `version` from hours whose newest marker is
/// `source_version` (see [`due`]): rows, their count, then the record.
/// Returns the rows with views; on failure the step that failed.
pub async fn run_rollup(
    client: &clickhouse::Client,
    day: u32,
    source_version: u64,
    version: u64,
) -> Result<u64, (&'static str, clickhouse::error::Error)> {
    let failed = |step: &'static str| move |error| (step, error);
    insert_day_totals(day, version).query(client).execute().await.map_err(failed("write the day's totals"))?;
    let rows: u64 =
        count_day_rows(day, version).query(client).fetch_one().await.map_err(failed("count the day's rows"))?;
    insert_record(day, source_version, version, rows)
        .query(client)
        .execute()
        .await
        .map_err(failed("record the day's rollup"))?;
    Ok(rows)
}

#[derive(Debug, Clone, Copy, clickhouse::Row, Deserialize)]
struct RecordRow {
    day: u32,
    source_version: u64,
}

/// [`records`]: the source version of each rolled-up day in `[from, to)`.
pub async fn fetch_records(
    client: &clickhouse::Client,
    from: u32,
    to: u32,
) -> Result<BTreeMap<u32, u64>, clickhouse::error::Error> {
    let rows = records(from, to).query(client).fetch_all::<RecordRow>().await?;
    Ok(rows.into_iter().map(|r| (r.day, r.source_version)).collect())
}

/// The rows of `video_metrics`' `video_id, views, completed_views,
/// watch_time_seconds` (with its types) for the days `days` (ascending),
/// from the newest rollup row of each (day, video).
pub fn day_totals(days: &[u32]) -> Statement {
    let (Some(&first), Some(&last)) = (days.first(), days.last()) else {
        panic!("day_totals needs at least one day");
    };
    // FINAL, as in `facts::pass_totals`: sorted by (date, video_id), four
    // days of the bench's fixture read in 17–24 ms against 54–102 ms grouped.
    let mut sql = Statement::new(&format!(
        "SELECT video_id, toUInt32(views) AS views, toUInt32(completed_views) AS completed_views, \
         watch_time_seconds FROM {DAY_TOTALS_TABLE} FINAL WHERE date >= toDate(toDateTime("
    ));
    sql.bind(Grain::Day.start_of(first)).sql(")) AND date <= toDate(toDateTime(").bind(Grain::Day.start_of(last));
    sql.sql(")) AND ");
    in_windows(&mut sql, "date", TimeColumn::Date, Grain::Day, days);
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    fn markers(hours: std::ops::Range<u32>, version: impl Fn(u32) -> u64) -> BTreeMap<u32, Marker> {
        hours.map(|h| (h, Marker { covered_until: 1, version: version(h) })).collect()
    }

    #[test]
    fn hours_fall_in_their_utc_days() {
        assert_eq!(days_of(hours_of(10)), 10..11);
        assert_eq!(days_of(hours_of(10).start + 5..hours_of(12).start + 1), 10..13);
    }

    #[test]
    fn a_day_has_a_source_version_only_with_all_its_hours() {
        let all = markers(hours_of(10), u64::from);
        assert_eq!(source_version(&all, 10), Some(u64::from(hours_of(10).end - 1)));
        let mut missing = all.clone();
        missing.remove(&(10 * 24 + 5));
        assert_eq!(source_version(&missing, 10), None);
        assert_eq!(source_version(&all, 11), None);
    }

    #[test]
    fn days_are_due_when_final_complete_and_not_rolled_up_at_their_newest_marker() {
        let m = markers(hours_of(10).start..hours_of(13).end, |_| 7);
        // Day 12 is not before the horizon; day 11 is rolled up at 7, day 10 at an older run.
        let rollups = BTreeMap::from([(10, 6), (11, 7)]);
        assert_eq!(due(&[9, 10, 11, 12], &m, &rollups, hours_of(12).end - 1), vec![(10, 7)]);
        assert_eq!(due(&[12], &m, &rollups, hours_of(12).end), vec![(12, 7)]);
    }

    #[test]
    fn a_read_uses_a_rollup_only_for_whole_aggregated_days_at_their_newest_marker() {
        let m = markers(hours_of(10).start..hours_of(13).end, |_| 7);
        let rollups = BTreeMap::from([(10, 7), (11, 7), (12, 6)]);
        let mut split = Split {
            // Day 10 whole, day 11 missing an hour (read raw), day 12 whole but rolled up before a rerun.
            aggregated: hours_of(10).chain(hours_of(11).skip(1)).chain(hours_of(12)).collect(),
            raw: vec![hours_of(11).start],
            ..Split::default()
        };
        use_rollups(&mut split, &m, &rollups);
        assert_eq!(split.days, vec![10]);
        assert_eq!(split.aggregated, hours_of(11).skip(1).chain(hours_of(12)).collect::<Vec<_>>());
        assert_eq!(split.raw, vec![hours_of(11).start]);
    }
}
