//! The custom query's hourly rollup (`events_hourly`, migration 0017): per
//! UTC hour of client time and combination of every dimension but the
//! video, the additive parts of the custom metrics ([`crate::custom::PARTS`])
//! over the deduplicated events.
//!
//! aggregator-cron's `events_hourly` job writes an hour's rows (those
//! inserted up to the run's `covered_until`) under the run's version and
//! records the hour in `aggregation_windows` ([`insert_hour`],
//! [`retire_vanished`], [`count_hour_rows`]); it runs the current hour too,
//! every few minutes. A reader takes an hour with a record from the rollup
//! ([`rolled_hours`], from [`last_inserts`]) and adds the events first
//! inserted after that record ([`delta_events`]: the current hour's last
//! minutes, a late event), so answers stay exact at once; an hour never
//! rolled up is read raw.

use std::{collections::BTreeMap, ops::Range};

use crate::{
    Param, Statement,
    custom::{PARTS, Rolled},
    first_copies_of_events,
    views::LastInsertedRow,
    windows::{Grain, Marker, TimeColumn, in_windows},
};

/// The rollup (0017).
pub const EVENTS_HOURLY_TABLE: &str = "events_hourly";

/// The last insert time of any event row per hour of client time, filled by
/// a view from `events` (0017).
pub const EVENT_HOUR_INSERTS_TABLE: &str = "event_hour_inserts";

/// The event columns the rollup keeps as dimensions, in its sorting-key order.
pub const DIMENSIONS: [&str; 7] = ["event_type", "device_type", "browser", "os", "country", "quality", "cdn"];

/// The rollup's value columns, each with the part it holds.
fn stored_parts() -> impl Iterator<Item = (&'static str, &'static crate::custom::PartDef)> {
    PARTS.iter().filter_map(|part| match part.rolled {
        Rolled::Column(column) => Some((column, part)),
        Rolled::EventsOfType(_) => None,
    })
}

/// Rolls up hour `hour` (index of [`Grain::Hour`]) from the raw events (the
/// time-clustered copy when it holds the hour from `by_time_from_ms` on,
/// [`crate::events_table_from`]): one row per
/// combination of [`DIMENSIONS`] among the hour's deduplicated events whose
/// rows were inserted up to `covered_until` (epoch seconds, the run's
/// record), with `version`. Rows inserted later are left out even when the
/// run sees them, so that a reader can add exactly those ([`delta_events`]).
pub fn insert_hour(hour: u32, version: u64, by_time_from_ms: Option<u64>, covered_until: u32) -> Statement {
    let (start, end) = (Grain::Hour.start_of(hour), Grain::Hour.start_of(hour + 1));
    let table = crate::events_table_from(start * 1000, by_time_from_ms);
    let dimensions = DIMENSIONS.join(", ");
    let mut read: Vec<&str> = vec!["event_id"];
    for column in DIMENSIONS.iter().chain(stored_parts().flat_map(|(_, part)| part.columns)) {
        if !read.contains(column) {
            read.push(column);
        }
    }
    let names: Vec<&str> = stored_parts().map(|(column, _)| column).collect();
    let values: Vec<String> = stored_parts().map(|(column, part)| format!("{} AS {column}", part.raw)).collect();
    let mut sql = Statement::new(&format!(
        "INSERT INTO {EVENTS_HOURLY_TABLE} (hour, {dimensions}, {}, version, computed_at) SELECT hour, {dimensions}, {}, ",
        names.join(", "),
        values.join(", ")
    ));
    sql.bind(version).sql(" AS version, now() AS computed_at FROM (SELECT toDateTime(").bind(start);
    sql.sql(") AS hour, * FROM (");
    let filter = "timestamp >= toDateTime(?) AND timestamp < toDateTime(?) AND inserted_at <= toDateTime(?)";
    sql.append(&Statement::from_parts(
        first_copies_of_events(table, &read, filter),
        vec![Param::U64(start), Param::U64(end), Param::U64(u64::from(covered_until))],
    ));
    sql.sql(&format!(")) GROUP BY hour, {dimensions}"));
    sql
}

/// Replaces, with an empty row of `version`, every combination of `hour`
/// that the run `version` did not rewrite (its events' copies changed), so
/// that a combination's newest row is always the run's. Run right after
/// [`insert_hour`] with the same version.
pub fn retire_vanished(hour: u32, version: u64) -> Statement {
    let dimensions = DIMENSIONS.join(", ");
    let mut sql = Statement::new(&format!(
        "INSERT INTO {EVENTS_HOURLY_TABLE} (hour, {dimensions}, version, computed_at) SELECT hour, {dimensions}, "
    ));
    sql.bind(version).sql(&format!(
        " AS version, now() AS computed_at FROM (SELECT hour, {dimensions} FROM {EVENTS_HOURLY_TABLE} FINAL \
         WHERE hour = toDateTime("
    ));
    sql.bind(Grain::Hour.start_of(hour)).sql(") AND version < ").bind(version).sql(" AND event_count > 0)");
    sql
}

/// The combinations with events that `version` wrote for `hour`.
pub fn count_hour_rows(hour: u32, version: u64) -> Statement {
    let mut sql = Statement::new(&format!("SELECT count() FROM {EVENTS_HOURLY_TABLE} WHERE hour = toDateTime("));
    sql.bind(Grain::Hour.start_of(hour)).sql(") AND version = ").bind(version).sql(" AND event_count > 0");
    sql
}

/// The last insert time of the event rows of each hour in `[from, to)`
/// (hour indexes) that has any: columns `window`, `last_inserted` (epoch
/// seconds), as [`crate::views::last_inserted_by_window`] gives them for views.
pub fn last_inserts(from: u32, to: u32) -> Statement {
    let mut sql = Statement::new(&format!(
        "SELECT toUInt32(intDiv(toUInt32(hour), 3600)) AS window, toUInt32(max(last_inserted_at)) AS last_inserted \
         FROM {EVENT_HOUR_INSERTS_TABLE} WHERE hour >= toDateTime("
    ));
    sql.bind(Grain::Hour.start_of(from)).sql(") AND hour < toDateTime(").bind(Grain::Hour.start_of(to));
    sql.sql(") GROUP BY hour");
    sql
}

/// [`last_inserts`], by hour.
pub async fn fetch_last_inserts(
    client: &clickhouse::Client,
    hours: Range<u32>,
) -> Result<BTreeMap<u32, u32>, clickhouse::error::Error> {
    let rows = last_inserts(hours.start, hours.end).query(client).fetch_all::<LastInsertedRow>().await?;
    Ok(rows.into_iter().map(|r| (r.window, r.last_inserted)).collect())
}

/// An hour the rollup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolledHour {
    pub hour: u32,
    /// `None` when the rollup holds every row of the hour; otherwise its
    /// record's `covered_until`, after which the hour got rows (a late
    /// event, or the current hour's last minutes) that [`delta_events`] adds.
    pub rows_after: Option<u32>,
}

/// The hours of `hours` that the rollup holds (a record among `markers` of
/// the `events_hourly` job), each with whether rows were inserted into it
/// after its run (`last_inserted`, from [`last_inserts`]).
pub fn rolled_hours(
    hours: Range<u32>,
    markers: &BTreeMap<u32, Marker>,
    last_inserted: &BTreeMap<u32, u32>,
) -> Vec<RolledHour> {
    hours
        .filter_map(|hour| {
            let covered = markers.get(&hour)?.covered_until;
            let rows_after = last_inserted.get(&hour).is_some_and(|&last| last > covered).then_some(covered);
            Some(RolledHour { hour, rows_after })
        })
        .collect()
}

/// The deduplicated events (`columns`, as [`first_copies_of_events`] gives
/// them) of `hour` that match `filter` (conditions on event columns, or
/// empty) and were first inserted after `after` (epoch seconds): what a
/// rollup run recorded with `covered_until = after` left out. An event with
/// a copy inserted up to `after` is in the rollup, not here. The hour's rows
/// are scanned for the ids inserted after `after`, and only those grouped.
pub fn delta_events(table: &str, columns: &[&str], hour: u32, after: u32, filter: &Statement) -> Statement {
    let (start, end) = (Grain::Hour.start_of(hour), Grain::Hour.start_of(hour + 1));
    let in_hour = "timestamp >= toDateTime(?) AND timestamp < toDateTime(?)";
    let mut condition = Statement::from_parts(in_hour.to_string(), vec![Param::U64(start), Param::U64(end)]);
    if !filter.text().is_empty() {
        condition.sql(" AND ").append(filter);
    }
    condition.sql(&format!(" AND event_id IN (SELECT event_id FROM {table} WHERE "));
    condition.append(&Statement::from_parts(in_hour.to_string(), vec![Param::U64(start), Param::U64(end)]));
    condition.sql(" AND inserted_at > toDateTime(").bind(u64::from(after)).sql("))");
    let mut params = condition.params().to_vec();
    params.push(Param::U64(u64::from(after)));
    Statement::from_parts(
        crate::first_copies_having(table, columns, condition.text(), "first_inserted_at > toDateTime(?)"),
        params,
    )
}

/// The newest rows of the rolled-up `hours` (ascending hour indexes) that
/// match `filter` (conditions on [`DIMENSIONS`], or empty), as a subquery
/// with `timestamp` (the hour, so that time buckets and the time dimensions
/// compute as over events), the dimensions, and `r_<column>` for each value
/// column in `columns`. Each combination's newest version is taken with
/// `argMax`, as the aggregates' reads do.
pub fn newest_rows(hours: &[u32], columns: &[&str], filter: &Statement) -> Statement {
    let dimensions = DIMENSIONS.join(", ");
    let values: Vec<String> = columns.iter().map(|c| format!("argMax({c}, version) AS r_{c}")).collect();
    let mut sql = Statement::new(&format!(
        "SELECT hour AS timestamp, {dimensions}, {} FROM {EVENTS_HOURLY_TABLE} WHERE ",
        values.join(", ")
    ));
    in_windows(&mut sql, "hour", TimeColumn::DateTime, Grain::Hour, hours);
    if !filter.text().is_empty() {
        sql.sql(" AND ").append(filter);
    }
    sql.sql(&format!(" GROUP BY hour, {dimensions}"));
    sql
}

/// A part's aggregate over [`newest_rows`], and the value column it reads.
pub fn rolled_part(part: &crate::custom::PartDef) -> (String, &'static str) {
    match part.rolled {
        Rolled::Column(column) => (format!("sum(r_{column})"), column),
        Rolled::EventsOfType(event_type) => {
            (format!("sumIf(r_event_count, event_type = '{event_type}')"), "event_count")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::custom::{self, METRICS};

    #[test]
    fn every_part_counts_by_type_as_its_raw_aggregate_does_and_every_metric_names_its_parts() {
        for part in PARTS {
            if let Rolled::EventsOfType(event_type) = part.rolled {
                assert_eq!(part.raw, format!("countIf(event_type = '{event_type}')"), "{}", part.name);
            }
        }
        for metric in METRICS {
            let Some(formula) = metric.from_parts else {
                assert!(metric.parts.is_empty(), "{}", metric.name);
                assert!(metric.sql.contains("uniqExact"), "only the distinct counts have no parts: {}", metric.name);
                continue;
            };
            for name in metric.parts {
                assert!(custom::part(name).is_some(), "{}: unknown part {name}", metric.name);
                assert!(formula.contains(&format!("sum({name})")), "{}: {formula} does not add up {name}", metric.name);
            }
            let mentioned = PARTS.iter().filter(|p| formula.contains(&format!("sum({})", p.name))).count();
            assert_eq!(mentioned, metric.parts.len(), "{}: {formula}", metric.name);
        }
    }

    #[test]
    fn an_hour_with_a_record_is_rolled_up_and_its_rows_after_the_record_are_named() {
        let marker = |covered_until| Marker { covered_until, version: 1 };
        let markers = BTreeMap::from([(10, marker(100)), (11, marker(100)), (12, marker(100)), (14, marker(100))]);
        // 10: newest row at the record's time; 11: a row inserted after it;
        // 12: no rows; 13: no record; 14: covered.
        let last = BTreeMap::from([(10, 100), (11, 101), (13, 50), (14, 20)]);
        let rolled = |hour, rows_after| RolledHour { hour, rows_after };
        let expected = [rolled(10, None), rolled(11, Some(100)), rolled(12, None), rolled(14, None)];
        assert_eq!(rolled_hours(9..16, &markers, &last), expected);
    }

    #[test]
    fn a_run_groups_the_hours_deduplicated_events_by_every_dimension() {
        let sql = insert_hour(500_000, 7, Some(0), 1_800_000_000);
        let text = sql.text();
        assert!(text.starts_with(
            "INSERT INTO events_hourly (hour, event_type, device_type, browser, os, country, quality, cdn, event_count, \
             fatal_errors, buffer_ms_sum, bitrate_sum, bitrate_count, startup_sum, startup_count, version, computed_at)"
        ));
        assert!(text.contains(
            "FROM events_by_time_v2 WHERE timestamp >= toDateTime(?) AND timestamp < toDateTime(?) \
             AND inserted_at <= toDateTime(?)"
        ));
        assert!(text.ends_with("GROUP BY hour, event_type, device_type, browser, os, country, quality, cdn"), "{text}");
        assert_eq!(text.matches('?').count(), sql.params().len());
    }
}
