//! Retention by whole monthly partitions.
//!
//! Every table the aggregator cleans is partitioned by `toYYYYMM(...)`. A
//! month's partition is dropped once the whole month ended before
//! `now − retention` of its table. Partitions are listed from `system.parts`
//! (active parts of the configured database; the columns used exist on
//! ClickHouse 18.16 and current releases), and a partition id only reaches SQL
//! after it parsed as a valid `YYYYMM` integer.

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};
use serde::Deserialize;

/// The tables under retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetentionTable {
    Events,
    VideoMetrics,
    UserEngagementDaily,
    AggregationWindows,
}

impl RetentionTable {
    pub const ALL: [RetentionTable; 4] = [
        RetentionTable::Events,
        RetentionTable::VideoMetrics,
        RetentionTable::UserEngagementDaily,
        RetentionTable::AggregationWindows,
    ];

    /// The table's name, also the `table` label of the retention metric.
    pub fn name(self) -> &'static str {
        match self {
            RetentionTable::Events => events_model::EVENTS_TABLE,
            RetentionTable::VideoMetrics => "video_metrics",
            RetentionTable::UserEngagementDaily => "user_engagement_daily",
            RetentionTable::AggregationWindows => "aggregation_windows",
        }
    }

    pub fn from_name(name: &str) -> Option<RetentionTable> {
        RetentionTable::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// A partition past its table's retention: dropped, or to drop on a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDrop {
    pub table: RetentionTable,
    /// The month, `YYYYMM`.
    pub partition: u32,
    /// Rows and bytes of its active parts when listed.
    pub rows: u64,
    pub bytes: u64,
    /// `now − retention` of the table: the month ended at or before it.
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

/// The active partitions of the tables under retention in the client's
/// database: columns of [`PartitionRow`].
pub fn partitions_sql() -> String {
    let tables: Vec<String> = RetentionTable::ALL.iter().map(|t| format!("'{}'", t.name())).collect();
    format!(
        "SELECT table, partition_id, toUInt64(sum(rows)) AS rows, toUInt64(sum(bytes_on_disk)) AS bytes \
         FROM system.parts WHERE database = currentDatabase() AND active = 1 AND table IN ({}) \
         GROUP BY table, partition_id ORDER BY table, partition_id",
        tables.join(", ")
    )
}

/// `ALTER TABLE … DROP PARTITION YYYYMM`: the table is one of a fixed list and
/// the partition a validated integer, so nothing unchecked reaches the SQL.
pub fn drop_partition_sql(table: RetentionTable, partition: u32) -> String {
    debug_assert!(month_start(partition).is_some(), "{partition} is not a YYYYMM month");
    format!("ALTER TABLE {} DROP PARTITION {partition}", table.name())
}

/// A `toYYYYMM` partition id (`"202511"`) as the integer `202511`; `None` for
/// anything else (not six digits, month not 01–12).
pub fn month_partition(id: &str) -> Option<u32> {
    if id.len() != 6 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u32 = id.parse().ok()?;
    month_start(value).map(|_| value)
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

/// Whether the whole month `YYYYMM` ended at or before `cutoff`.
pub fn expired(yyyymm: u32, cutoff: DateTime<Utc>) -> bool {
    month_end(yyyymm).is_some_and(|end| end <= cutoff)
}

/// The partitions of `listed` past their table's retention at `now`; rows
/// whose partition id is not a month are reported to `skip` and left alone.
pub fn plan(
    listed: &[PartitionRow],
    now: DateTime<Utc>,
    days: impl Fn(RetentionTable) -> u32,
    mut skip: impl FnMut(&PartitionRow),
) -> Vec<PartitionDrop> {
    let mut drops = Vec::new();
    for row in listed {
        let (Some(table), Some(partition)) =
            (RetentionTable::from_name(&row.table), month_partition(&row.partition_id))
        else {
            skip(row);
            continue;
        };
        let cutoff = now - chrono::Duration::days(i64::from(days(table)));
        if expired(partition, cutoff) {
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
        assert_eq!(month_partition("202511"), Some(202_511));
        assert_eq!(month_partition("199912"), Some(199_912));
        for bad in ["all", "202513", "202500", "20251", "2025111", "2025-1", "20251'", "-20251", " 202511", ""] {
            assert_eq!(month_partition(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_month_expires_once_it_ended_before_the_cutoff() {
        assert_eq!(month_end(202_512), Some(at("2026-01-01T00:00:00Z")));
        assert_eq!(month_end(202_502), Some(at("2025-03-01T00:00:00Z")));
        assert!(expired(202_507, at("2025-08-01T00:00:00Z")));
        assert!(!expired(202_507, at("2025-07-31T23:59:59Z")));
        assert!(!expired(202_508, at("2025-08-26T12:00:00Z")), "a month with recent days stays");
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
        ];
        let now = at("2025-11-24T12:00:00Z");
        let mut skipped = Vec::new();
        let drops = plan(
            &listed,
            now,
            |t| if t == RetentionTable::UserEngagementDaily { 150 } else { 90 },
            |r| skipped.push(r.partition_id.clone()),
        );
        let got: Vec<_> = drops.iter().map(|d| (d.table, d.partition)).collect();
        assert_eq!(got, vec![(RetentionTable::Events, 202_506), (RetentionTable::Events, 202_507)]);
        assert_eq!(drops[0].cutoff, at("2025-08-26T12:00:00Z"));
        assert_eq!(skipped, vec!["all"]);
    }

    #[test]
    fn statements_name_only_known_tables_and_integers() {
        assert_eq!(
            drop_partition_sql(RetentionTable::VideoMetrics, 202_506),
            "ALTER TABLE video_metrics DROP PARTITION 202506"
        );
        assert!(
            partitions_sql()
                .contains("table IN ('events', 'video_metrics', 'user_engagement_daily', 'aggregation_windows')")
        );
    }
}
