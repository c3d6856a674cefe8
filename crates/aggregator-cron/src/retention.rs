//! Retention by whole partitions.
//!
//! The tables the aggregator cleans are partitioned by month (`toYYYYMM`),
//! except `events_by_receipt`, `keys_by_day_v2`, `events_by_time_v2` and
//! the facts pass's tables, by day (`toYYYYMMDD`);
//! `views_by_user` keeps `events`' retention, `keys_by_day_v2`
//! `events_by_time_v2`'s, top videos' day rollups `video_metrics`', the
//! aggregates' lookup copies their sources', and the custom query's hourly
//! rollup and its insert times `events`'. A partition is dropped
//! once its whole month (or day) ended before `now − retention` of its table.
//! Partitions are listed from `system.parts` (active parts of the configured
//! database; the columns used exist on ClickHouse 18.16 and current
//! releases), and a partition id only reaches SQL after it parsed as a valid
//! `YYYYMM` (or `YYYYMMDD`) integer.

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};
use serde::Deserialize;
use service_kit::migrate::cluster as placement;

/// The tables under retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetentionTable {
    Events,
    VideoMetrics,
    UserEngagementDaily,
    AggregationWindows,
    EventsByReceipt,
    /// The user → views index; kept as long as `events`.
    ViewsByUser,
    /// The freshness check's per-key index; kept as long as `events`.
    KeysByDay,
    /// The facts pass's tables, by day (`retention.facts_days`).
    ViewFacts,
    KeysByInsert,
    FactsPasses,
    HourTotals,
    HourMetrics,
    /// Top videos' per-day rollups and their records; kept as long as `video_metrics`.
    DayTotals,
    DayRollups,
    /// The time-clustered copy of `events` (`retention.events_by_time_days`).
    EventsByTime,
    /// The small-granule copies of the aggregates for one key's reads; kept
    /// as long as their sources.
    VideoMetricsLookup,
    UserEngagementLookup,
    /// The custom query's hourly rollup and the last insert per hour; kept
    /// as long as `events`.
    EventsHourly,
    EventHourInserts,
}

/// How a table is partitioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// `toYYYYMM(…)`: ids `YYYYMM`.
    Month,
    /// `toYYYYMMDD(…)`: ids `YYYYMMDD`.
    Day,
}

impl Period {
    /// A partition id of this period as its integer (`"202511"` → 202511,
    /// `"20251124"` → 20251124); `None` for anything else (wrong length, not
    /// digits, no such month or day).
    pub fn parse(self, id: &str) -> Option<u32> {
        let digits = match self {
            Period::Month => 6,
            Period::Day => 8,
        };
        if id.len() != digits || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: u32 = id.parse().ok()?;
        self.end(value).map(|_| value)
    }

    /// The first instant after the month `YYYYMM` or day `YYYYMMDD`.
    pub fn end(self, partition: u32) -> Option<DateTime<Utc>> {
        match self {
            Period::Month => month_end(partition),
            Period::Day => {
                let year = i32::try_from(partition / 10_000).ok()?;
                let day = NaiveDate::from_ymd_opt(year, partition / 100 % 100, partition % 100)?;
                Some(day.succ_opt()?.and_hms_opt(0, 0, 0)?.and_utc())
            }
        }
    }
}

impl RetentionTable {
    pub const ALL: [RetentionTable; 19] = [
        RetentionTable::Events,
        RetentionTable::VideoMetrics,
        RetentionTable::UserEngagementDaily,
        RetentionTable::AggregationWindows,
        RetentionTable::EventsByReceipt,
        RetentionTable::ViewsByUser,
        RetentionTable::KeysByDay,
        RetentionTable::ViewFacts,
        RetentionTable::KeysByInsert,
        RetentionTable::FactsPasses,
        RetentionTable::HourTotals,
        RetentionTable::HourMetrics,
        RetentionTable::DayTotals,
        RetentionTable::DayRollups,
        RetentionTable::EventsByTime,
        RetentionTable::VideoMetricsLookup,
        RetentionTable::UserEngagementLookup,
        RetentionTable::EventsHourly,
        RetentionTable::EventHourInserts,
    ];

    /// How the table is partitioned (see its migration).
    pub fn period(self) -> Period {
        match self {
            RetentionTable::EventsByReceipt
            | RetentionTable::KeysByDay
            | RetentionTable::ViewFacts
            | RetentionTable::KeysByInsert
            | RetentionTable::FactsPasses
            | RetentionTable::HourTotals
            | RetentionTable::HourMetrics
            | RetentionTable::EventsByTime => Period::Day,
            _ => Period::Month,
        }
    }

    /// The table's name, also the `table` label of the retention metric.
    pub fn name(self) -> &'static str {
        match self {
            RetentionTable::Events => events_model::EVENTS_TABLE,
            RetentionTable::VideoMetrics => "video_metrics",
            RetentionTable::UserEngagementDaily => "user_engagement_daily",
            RetentionTable::AggregationWindows => "aggregation_windows",
            RetentionTable::EventsByReceipt => metrics_sql::EVENTS_BY_RECEIPT_TABLE,
            RetentionTable::ViewsByUser => metrics_sql::VIEWS_BY_USER_TABLE,
            RetentionTable::KeysByDay => metrics_sql::KEYS_BY_DAY_TABLE,
            RetentionTable::ViewFacts => metrics_sql::facts::VIEW_FACTS_TABLE,
            RetentionTable::KeysByInsert => metrics_sql::facts::KEYS_BY_INSERT_TABLE,
            RetentionTable::FactsPasses => metrics_sql::facts::PASSES_TABLE,
            RetentionTable::HourTotals => metrics_sql::facts::HOUR_TOTALS_TABLE,
            RetentionTable::HourMetrics => metrics_sql::facts::HOUR_METRICS_TABLE,
            RetentionTable::DayTotals => metrics_sql::days::DAY_TOTALS_TABLE,
            RetentionTable::DayRollups => metrics_sql::days::ROLLUPS_TABLE,
            RetentionTable::EventsByTime => metrics_sql::EVENTS_BY_TIME_TABLE,
            RetentionTable::VideoMetricsLookup => metrics_sql::VIDEO_METRICS_LOOKUP_TABLE,
            RetentionTable::UserEngagementLookup => metrics_sql::USER_ENGAGEMENT_LOOKUP_TABLE,
            RetentionTable::EventsHourly => metrics_sql::hourly::EVENTS_HOURLY_TABLE,
            RetentionTable::EventHourInserts => metrics_sql::hourly::EVENT_HOUR_INSERTS_TABLE,
        }
    }

    pub fn from_name(name: &str) -> Option<RetentionTable> {
        RetentionTable::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether a cluster spreads the table over its shards (`<table>_local`
    /// behind a `Distributed` table) rather than keeping a replica of it on
    /// every server.
    pub fn sharded(self) -> bool {
        matches!(placement::placement(self.name()), Some(placement::Placement::Sharded(_)))
    }
}

/// A partition past its table's retention: dropped, or to drop on a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDrop {
    pub table: RetentionTable,
    /// The month, `YYYYMM`, or for a daily table the day, `YYYYMMDD`.
    pub partition: u32,
    /// Rows and bytes of its active parts when listed.
    pub rows: u64,
    pub bytes: u64,
    /// `now − retention` of the table: the month (day) ended at or before it.
    pub cutoff: DateTime<Utc>,
}

/// One partition of `system.parts` (active parts summed).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct PartitionRow {
    pub table: String,
    pub partition_id: String,
    pub rows: u64,
    pub bytes: u64,
}

impl PartitionRow {
    /// The table readers and writers name: `table` without the `_local` of
    /// a sharded table's local table on a cluster.
    pub fn table_name(&self) -> &str {
        self.table.strip_suffix("_local").unwrap_or(&self.table)
    }
}

/// The active partitions of the tables under retention in the client's
/// database: columns of [`PartitionRow`].
///
/// On a cluster (`cluster` names it, `database` is the client's) a sharded
/// table's rows are in `<table>_local` on every shard: those are listed from
/// one replica of every shard (`cluster(…, system, parts)`), rows summed over
/// the shards and the table named `<table>_local` ([`PartitionRow::table_name`]
/// reads it as `<table>`); a table with a replica on every server is listed
/// from this server alone.
pub fn partitions_sql(cluster: Option<(&str, &str)>) -> String {
    let listed = |tables: Vec<String>, from: &str, database: &str| {
        format!(
            "SELECT table, partition_id, toUInt64(sum(rows)) AS rows, toUInt64(sum(bytes_on_disk)) AS bytes \
             FROM {from} WHERE database = {database} AND active = 1 AND table IN ({}) \
             GROUP BY table, partition_id",
            tables.join(", ")
        )
    };
    let quoted = |name: &str| format!("'{name}'");
    let Some((cluster, database)) = cluster else {
        let tables = RetentionTable::ALL.iter().map(|t| quoted(t.name())).collect();
        return format!("{} ORDER BY table, partition_id", listed(tables, "system.parts", "currentDatabase()"));
    };
    let (sharded, everywhere): (Vec<RetentionTable>, Vec<RetentionTable>) =
        RetentionTable::ALL.into_iter().partition(|t| t.sharded());
    let sharded = sharded.iter().map(|t| quoted(&placement::local_name(t.name()))).collect();
    let everywhere = everywhere.iter().map(|t| quoted(t.name())).collect();
    let from = format!("cluster('{cluster}', system, parts)");
    format!(
        "SELECT table, partition_id, rows, bytes FROM ({} UNION ALL {}) ORDER BY table, partition_id",
        listed(sharded, &from, &quoted(database)),
        listed(everywhere, "system.parts", "currentDatabase()")
    )
}

/// `ALTER TABLE … DROP PARTITION YYYYMM[DD]`: the table is one of a fixed list
/// and the partition a validated integer, so nothing unchecked reaches the SQL.
/// On a cluster (`cluster` names it, `database` is the client's) a sharded
/// table's partition is dropped from `<table>_local` `ON CLUSTER` (one
/// replica of each shard runs it, replication the other); a table with a
/// replica on every server drops it here and replication everywhere.
pub fn drop_partition_sql(table: RetentionTable, partition: u32, cluster: Option<(&str, &str)>) -> String {
    debug_assert!(table.period().end(partition).is_some(), "{partition} is not a partition of {}", table.name());
    match cluster {
        Some((cluster, database)) if table.sharded() => format!(
            "ALTER TABLE {database}.{} ON CLUSTER {cluster} DROP PARTITION {partition}",
            placement::local_name(table.name())
        ),
        _ => format!("ALTER TABLE {} DROP PARTITION {partition}", table.name()),
    }
}

/// The first day of month `YYYYMM`.
pub fn month_start(yyyymm: u32) -> Option<NaiveDate> {
    let year = i32::try_from(yyyymm / 100).ok()?;
    NaiveDate::from_ymd_opt(year, yyyymm % 100, 1)
}

/// The first instant after month `YYYYMM`.
pub fn month_end(yyyymm: u32) -> Option<DateTime<Utc>> {
    let start = month_start(yyyymm)?;
    let next = if start.month() == 12 {
        NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1)?
    };
    Some(next.and_hms_opt(0, 0, 0)?.and_utc())
}

/// Whether the whole month (or day) `partition` ended at or before `cutoff`.
pub fn expired(period: Period, partition: u32, cutoff: DateTime<Utc>) -> bool {
    period.end(partition).is_some_and(|end| end <= cutoff)
}

/// The partitions of `listed` past their table's retention at `now`; rows
/// whose partition id is not a month (day) are reported to `skip` and left alone.
pub fn plan(
    listed: &[PartitionRow],
    now: DateTime<Utc>,
    days: impl Fn(RetentionTable) -> u32,
    mut skip: impl FnMut(&PartitionRow),
) -> Vec<PartitionDrop> {
    let mut drops = Vec::new();
    for row in listed {
        let Some((table, partition)) = RetentionTable::from_name(row.table_name())
            .and_then(|table| Some((table, table.period().parse(&row.partition_id)?)))
        else {
            skip(row);
            continue;
        };
        let cutoff = now - chrono::Duration::days(i64::from(days(table)));
        if expired(table.period(), partition, cutoff) {
            drops.push(PartitionDrop { table, partition, rows: row.rows, bytes: row.bytes, cutoff });
        }
    }
    drops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn only_month_ids_are_accepted() {
        assert_eq!(Period::Month.parse("202511"), Some(202_511));
        assert_eq!(Period::Month.parse("199912"), Some(199_912));
        for bad in ["all", "202513", "202500", "20251", "2025111", "2025-1", "20251'", "-20251", " 202511", ""] {
            assert_eq!(Period::Month.parse(bad), None, "{bad:?}");
        }
        assert_eq!(Period::Month.parse("20251124"), None, "a day is not a month");
    }

    #[test]
    fn only_day_ids_are_accepted_for_daily_tables() {
        assert_eq!(Period::Day.parse("20251124"), Some(20_251_124));
        assert_eq!(Period::Day.parse("20240229"), Some(20_240_229), "a leap day");
        for bad in ["202511", "20250229", "20251131", "20251300", "20251100", "2025112a", "120251124", "all", ""] {
            assert_eq!(Period::Day.parse(bad), None, "{bad:?}");
        }
        assert_eq!(Period::Day.end(20_251_231), Some(at("2026-01-01T00:00:00Z")));
        assert!(expired(Period::Day, 20_251_122, at("2025-11-23T00:00:00Z")));
        assert!(!expired(Period::Day, 20_251_122, at("2025-11-22T23:59:59Z")));
    }

    #[test]
    fn a_month_expires_once_it_ended_before_the_cutoff() {
        assert_eq!(month_end(202_512), Some(at("2026-01-01T00:00:00Z")));
        assert_eq!(month_end(202_502), Some(at("2025-03-01T00:00:00Z")));
        assert!(expired(Period::Month, 202_507, at("2025-08-01T00:00:00Z")));
        assert!(!expired(Period::Month, 202_507, at("2025-07-31T23:59:59Z")));
        assert!(!expired(Period::Month, 202_508, at("2025-08-26T12:00:00Z")), "a month with recent days stays");
    }

    #[test]
    fn each_table_has_its_own_cutoff() {
        let row =
            |table: &str, id: &str| PartitionRow { table: table.into(), partition_id: id.into(), rows: 1, bytes: 2 };
        let listed = vec![
            row("events", "202506"),
            row("events", "202507"),
            row("events", "202508"),
            row("events", "202511"),
            row("user_engagement_daily", "202506"),
            row("video_metrics", "all"),
            row("events_by_receipt", "20251121"),
            row("events_by_receipt", "20251122"),
            row("events_by_receipt", "20251123"),
            row("events_by_receipt", "202511"),
        ];
        let now = at("2025-11-24T12:00:00Z");
        let mut skipped = Vec::new();
        let drops = plan(
            &listed,
            now,
            |t| match t {
                RetentionTable::UserEngagementDaily => 150,
                RetentionTable::EventsByReceipt => 2,
                _ => 90,
            },
            |r| skipped.push(r.partition_id.clone()),
        );
        let got: Vec<_> = drops.iter().map(|d| (d.table, d.partition)).collect();
        assert_eq!(
            got,
            vec![
                (RetentionTable::Events, 202_506),
                (RetentionTable::Events, 202_507),
                (RetentionTable::EventsByReceipt, 20_251_121),
            ]
        );
        assert_eq!(drops[0].cutoff, at("2025-08-26T12:00:00Z"));
        assert_eq!(drops[2].cutoff, at("2025-11-22T12:00:00Z"), "the 22nd ends after the cutoff and stays");
        assert_eq!(skipped, vec!["all", "202511"]);
    }

    #[test]
    fn statements_name_only_known_tables_and_integers() {
        assert_eq!(
            drop_partition_sql(RetentionTable::VideoMetrics, 202_506, None),
            "ALTER TABLE video_metrics DROP PARTITION 202506"
        );
        let cluster = Some(("analytics", "db"));
        assert_eq!(
            drop_partition_sql(RetentionTable::VideoMetrics, 202_506, cluster),
            "ALTER TABLE db.video_metrics_local ON CLUSTER analytics DROP PARTITION 202506"
        );
        assert_eq!(
            drop_partition_sql(RetentionTable::FactsPasses, 20_250_601, cluster),
            "ALTER TABLE view_facts_passes DROP PARTITION 20250601"
        );
        let listed = partitions_sql(cluster);
        assert!(listed.contains("FROM cluster('analytics', system, parts) WHERE database = 'db'"), "{listed}");
        assert!(listed.contains("'events_local', 'video_metrics_local'"), "{listed}");
        assert!(listed.contains("system.parts WHERE database = currentDatabase() AND active = 1 AND table IN ('aggregation_windows', 'view_facts_passes'"), "{listed}");
        assert!(partitions_sql(None).contains(
            "table IN ('events', 'video_metrics', 'user_engagement_daily', 'aggregation_windows', 'events_by_receipt', \
             'views_by_user', 'keys_by_day_v2', 'view_facts_v2', 'keys_by_insert', 'view_facts_passes', 'video_hour_totals', 'video_hour_metrics', \
             'video_day_totals', 'video_day_rollups', 'events_by_time_v2', 'video_metrics_lookup', 'user_engagement_lookup', \
             'events_hourly', 'event_hour_inserts')"
        ));
    }
}
