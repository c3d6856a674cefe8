//! Retention by monthly (and daily) partitions against ClickHouse 18.16 (the library with
//! an injected `now`, and the real binary), and its statements on chDB.
#![cfg(test)]

mod common;

use std::{collections::BTreeMap, process::Command};

use aggregator_cron::{RetentionTable, Trigger, retention};
use common::*;
use metrics_sql::windows::Job;

/// The four months of events: one view each.
const MONTHS: [&str; 4] =
    ["2025-06-15T10:10:00Z", "2025-07-15T10:10:00Z", "2025-08-15T10:10:00Z", "2025-11-20T10:10:00Z"];

/// Active partitions per table.
async fn partitions(env: &Env) -> BTreeMap<String, Vec<String>> {
    let rows: Vec<(String, String)> = env
        .clickhouse
        .client()
        .query(
            "SELECT table, partition_id FROM system.parts WHERE database = currentDatabase() AND active = 1 \
             AND table IN ('events', 'video_metrics', 'user_engagement_daily', 'aggregation_windows', \
             'events_by_receipt', 'views_by_user', 'keys_by_day_v2', 'view_facts_v2', 'keys_by_insert', \
             'view_facts_passes', 'video_hour_totals', 'video_day_totals', 'video_day_rollups', 'events_by_time_v2', \
             'video_metrics_lookup', 'user_engagement_lookup', 'events_hourly', 'event_hour_inserts') \
             GROUP BY table, partition_id ORDER BY table, partition_id",
        )
        .fetch_all()
        .await
        .unwrap();
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, partition) in rows {
        map.entry(table).or_default().push(partition);
    }
    map
}

async fn events_per_month(env: &Env) -> Vec<(u32, u64)> {
    env.clickhouse
        .client()
        .query("SELECT toUInt32(toYYYYMM(timestamp)) AS m, count() FROM events GROUP BY m ORDER BY m")
        .fetch_all()
        .await
        .unwrap()
}

fn all_four() -> Vec<String> {
    ["202506", "202507", "202508", "202511"].map(String::from).to_vec()
}

#[tokio::test]
async fn retention_drops_exactly_the_months_past_each_tables_limit() {
    let env = Env::new(|c| {
        c.retention.user_engagement_daily_days = 150;
        c.retention.events_by_receipt_days = 5;
        // The hourly rollup holds the rows inserted up to its record.
        c.aggregation.safety_margin = std::time::Duration::ZERO;
    })
    .await;
    for (i, month) in MONTHS.iter().enumerate() {
        let start = ms(month);
        env.insert(&view(&format!("s{i}"), start)).await;
        let hour = u32::try_from(start / HOUR_MS).unwrap();
        env.aggregator.run_window(Job::VideoMetrics, hour, Trigger::Manual).await.unwrap();
        env.aggregator.run_window(Job::UserEngagementDaily, hour / 24, Trigger::Manual).await.unwrap();
        env.aggregator.run_window(Job::EventsHourly, hour, Trigger::Manual).await.unwrap();
    }
    // The facts pass's tables keep 4 days by day: a day before the cutoff and one after, written directly (a
    // pass takes its horizon from the real clock).
    for statement in [
        "INSERT INTO view_facts_v2 (date, video_id, session_id, start_ms, version) VALUES \
         ('2025-11-15', 'v1', 'f1', 1763200000000, 1), ('2025-11-23', 'v1', 'f2', 1763900000000, 1)",
        "INSERT INTO keys_by_insert (inserted_at, video_id, session_id) VALUES ('2025-11-15 10:00:00', 'v1', 'f1')",
        "INSERT INTO view_facts_passes (version, covered_until, from_ms, computed_at) VALUES \
         (1, '2025-11-15 10:00:00', 0, '2025-11-15 10:00:00')",
        "INSERT INTO video_hour_totals (hour, video_id, views, version) VALUES \
         ('2025-11-15 10:00:00', 'v1', 1, 1), ('2025-11-23 10:00:00', 'v1', 1, 1)",
        // Top videos' day rollups, one in each month, kept like video_metrics.
        "INSERT INTO video_day_totals (date, video_id, views, version) VALUES \
         ('2025-06-15', 'v1', 1, 1), ('2025-07-15', 'v1', 1, 1), ('2025-08-15', 'v1', 1, 1), ('2025-11-20', 'v1', 1, 1)",
        "INSERT INTO video_day_rollups (date, source_version, version) VALUES \
         ('2025-06-15', 1, 1), ('2025-07-15', 1, 1), ('2025-08-15', 1, 1), ('2025-11-20', 1, 1)",
    ] {
        env.clickhouse.client().query(statement).execute().await.unwrap();
    }
    let before = partitions(&env).await;
    assert_eq!(before["view_facts_v2"], ["20251115", "20251123"].map(String::from).to_vec());
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    assert_eq!(before["keys_by_insert"], vec!["20251115".to_string(), today.clone()]);
    for table in [
        "events",
        "video_metrics",
        "user_engagement_daily",
        "aggregation_windows",
        "views_by_user",
        "video_day_totals",
        "video_day_rollups",
        "video_metrics_lookup",
        "user_engagement_lookup",
        "events_hourly",
        "event_hour_inserts",
    ] {
        assert_eq!(before[table], all_four(), "{table}");
    }
    // The receive-time copy, by day (each event was received at its own time).
    let days = ["20250615", "20250715", "20250815", "20251120"].map(String::from).to_vec();
    assert_eq!(before["events_by_receipt"], days);
    // The freshness check's per-key index and the time-clustered copy, by day of client time.
    assert_eq!(before["keys_by_day_v2"], days);
    assert_eq!(before["events_by_time_v2"], days);
    let now = instant(ms("2025-11-24T12:00:00Z"));
    // 90 days before: 2025-08-26T12:00, so June and July are past it, August is not (it ends on 09-01);
    // user_engagement_daily keeps 150 days: 2025-06-27, not even June has ended before it;
    // events_by_receipt keeps 5 days: 2025-11-19T12:00, every day but the 20th ended before it.
    let expected = vec![
        (RetentionTable::Events, 202_506),
        (RetentionTable::Events, 202_507),
        (RetentionTable::VideoMetrics, 202_506),
        (RetentionTable::VideoMetrics, 202_507),
        (RetentionTable::AggregationWindows, 202_506),
        (RetentionTable::AggregationWindows, 202_507),
        (RetentionTable::EventsByReceipt, 20_250_615),
        (RetentionTable::EventsByReceipt, 20_250_715),
        (RetentionTable::EventsByReceipt, 20_250_815),
        (RetentionTable::ViewsByUser, 202_506),
        (RetentionTable::ViewsByUser, 202_507),
        // keys_by_day_v2 keeps events_by_time_v2's 4 days, by day: everything up to 2025-08-15.
        (RetentionTable::KeysByDay, 20_250_615),
        (RetentionTable::KeysByDay, 20_250_715),
        (RetentionTable::KeysByDay, 20_250_815),
        // The facts pass's tables keep 4 days: 2025-11-20T12:00.
        (RetentionTable::ViewFacts, 20_251_115),
        (RetentionTable::KeysByInsert, 20_251_115),
        (RetentionTable::FactsPasses, 20_251_115),
        (RetentionTable::HourTotals, 20_251_115),
        // The day rollups keep video_metrics' 90 days.
        (RetentionTable::DayTotals, 202_506),
        (RetentionTable::DayTotals, 202_507),
        (RetentionTable::DayRollups, 202_506),
        (RetentionTable::DayRollups, 202_507),
        // events_by_time_v2 keeps 4 days too.
        (RetentionTable::EventsByTime, 20_250_615),
        (RetentionTable::EventsByTime, 20_250_715),
        (RetentionTable::EventsByTime, 20_250_815),
        // video_metrics' lookup copy with it; user_engagement_lookup keeps user_engagement_daily's 150 days.
        (RetentionTable::VideoMetricsLookup, 202_506),
        (RetentionTable::VideoMetricsLookup, 202_507),
        // The custom query's hourly rollup and its insert times keep events' 90 days.
        (RetentionTable::EventsHourly, 202_506),
        (RetentionTable::EventsHourly, 202_507),
        (RetentionTable::EventHourInserts, 202_506),
        (RetentionTable::EventHourInserts, 202_507),
    ];
    let sorted = |drops: &[retention::PartitionDrop]| {
        let mut got: Vec<_> = drops.iter().map(|d| (d.table, d.partition)).collect();
        got.sort();
        got
    };

    // The command's dry run lists them and drops nothing.
    let output = Command::new(env!("CARGO_BIN_EXE_aggregator-cron"))
        .args(["retention", "--dry-run", "--now", "2025-11-24T12:00:00Z"])
        .envs(env.binary_env())
        .env("AGGREGATOR_CRON__RETENTION__USER_ENGAGEMENT_DAILY_DAYS", "150")
        .env("AGGREGATOR_CRON__RETENTION__EVENTS_BY_RECEIPT_DAYS", "5")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for (table, partition) in &expected {
        let line = stdout.lines().find(|l| l.starts_with(table.name()) && l.contains(&partition.to_string()));
        assert!(line.is_some(), "{} {partition} not listed:\n{stdout}", table.name());
    }
    assert!(stdout.contains("would drop 31 partition(s), 47 row(s)"), "{stdout}");
    let dry = env.aggregator.retention(now, true).await.unwrap();
    assert_eq!(sorted(&dry), expected);
    assert_eq!(partitions(&env).await, before, "a dry run drops nothing");
    assert!(env.runs("retention").await.is_empty(), "a dry run is not recorded");

    let dropped = env.aggregator.retention(now, false).await.unwrap();
    assert_eq!(sorted(&dropped), expected);
    let after = partitions(&env).await;
    for table in [
        "events",
        "video_metrics",
        "video_metrics_lookup",
        "aggregation_windows",
        "views_by_user",
        "video_day_totals",
        "video_day_rollups",
    ] {
        assert_eq!(after[table], ["202508", "202511"].map(String::from).to_vec(), "{table}");
    }
    assert_eq!(after["user_engagement_daily"], all_four());
    assert_eq!(after["user_engagement_lookup"], all_four());
    assert_eq!(after["events_by_receipt"], vec!["20251120".to_string()]);
    assert_eq!(after["keys_by_day_v2"], vec!["20251120".to_string()]);
    assert_eq!(after["view_facts_v2"], vec!["20251123".to_string()]);
    assert_eq!(after["video_hour_totals"], vec!["20251123".to_string()]);
    assert_eq!(after["events_by_time_v2"], vec!["20251120".to_string()]);
    assert_eq!(after["keys_by_insert"], vec![today]);
    assert!(!after.contains_key("view_facts_passes"));
    assert_eq!(events_per_month(&env).await, vec![(202_508, 2), (202_511, 2)]);
    let runs = env.runs("retention").await;
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].trigger.as_str(), runs[0].status.as_str()), ("manual", "succeeded"));
    assert_eq!(runs[0].rows, Some(i64::try_from(dropped.iter().map(|d| d.rows).sum::<u64>()).unwrap()));
    assert!(env.aggregator.retention(now, false).await.unwrap().is_empty(), "nothing left to drop");

    // The command without --dry-run drops now: user_engagement_daily kept just long enough for August.
    let days_since_august_15 = (chrono::Utc::now() - instant(ms("2025-08-15T00:00:00Z"))).num_days();
    let output = Command::new(env!("CARGO_BIN_EXE_aggregator-cron"))
        .arg("retention")
        .envs(env.binary_env())
        .env("AGGREGATOR_CRON__RETENTION__USER_ENGAGEMENT_DAILY_DAYS", days_since_august_15.to_string())
        .env("AGGREGATOR_CRON__RETENTION__EVENTS_DAYS", "100000")
        .env("AGGREGATOR_CRON__RETENTION__VIDEO_METRICS_DAYS", "100000")
        .env("AGGREGATOR_CRON__RETENTION__AGGREGATION_WINDOWS_DAYS", "100000")
        .env("AGGREGATOR_CRON__RETENTION__EVENTS_BY_RECEIPT_DAYS", "100000")
        .env("AGGREGATOR_CRON__RETENTION__FACTS_DAYS", "100000")
        .env("AGGREGATOR_CRON__RETENTION__EVENTS_BY_TIME_DAYS", "100000")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // The two months of user_engagement_daily and of its lookup copy.
    assert!(stdout.contains("dropped 4 partition(s)"), "{stdout}");
    let after = partitions(&env).await;
    for table in ["user_engagement_daily", "user_engagement_lookup"] {
        assert_eq!(after[table], ["202508", "202511"].map(String::from).to_vec(), "{table}");
    }
    env.drop().await;
}

#[tokio::test]
async fn the_scheduler_runs_retention_once_a_day_after_its_time() {
    let env = Env::new(|c| c.aggregation.initial_lookback = std::time::Duration::from_secs(3600)).await;
    let day = ms("2025-11-24T00:00:00Z");
    let tick = |offset_minutes: u64| env.aggregator.tick(instant(day + offset_minutes * MINUTE));

    let report = tick(20).await.unwrap();
    assert!(report.retention.is_none(), "not before 00:30: {report:?}");
    let report = tick(31).await.unwrap();
    assert_eq!(report.retention, Some(Ok(vec![])), "nothing to drop, but it ran");
    let report = tick(45).await.unwrap();
    assert!(report.retention.is_none(), "once a day");
    let report = tick(24 * 60 + 31).await.unwrap();
    assert_eq!(report.retention, Some(Ok(vec![])), "again the next day");

    let runs = env.runs("retention").await;
    let got: Vec<_> =
        runs.iter().map(|r| (r.window_start.to_rfc3339(), r.trigger.as_str(), r.status.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("2025-11-24T00:00:00+00:00".to_owned(), "schedule", "succeeded"),
            ("2025-11-25T00:00:00+00:00".to_owned(), "schedule", "succeeded"),
        ]
    );
    env.drop().await;
}

/// The retention statements, values written in, run on chDB (current ClickHouse).
#[test]
fn retention_statements_run_on_current_clickhouse() {
    let queries = vec![
        retention::partitions_sql(None),
        // check_chdb.py stores one event in May 2024 before running these.
        retention::drop_partition_sql(RetentionTable::Events, 202_405, None),
        retention::drop_partition_sql(RetentionTable::VideoMetrics, 202_511, None),
        retention::drop_partition_sql(RetentionTable::AggregationWindows, 202_511, None),
        retention::drop_partition_sql(RetentionTable::ViewsByUser, 202_405, None),
        // ... received on 2024-05-01, the day of its receive-time copy.
        retention::drop_partition_sql(RetentionTable::EventsByReceipt, 20_240_501, None),
        // ... and of its per-key index, by client day.
        retention::drop_partition_sql(RetentionTable::KeysByDay, 20_240_501, None),
        "SELECT count() FROM events".to_owned(),
        "SELECT count() FROM events_by_receipt".to_owned(),
        "SELECT toUInt32(now())".to_owned(),
    ];
    service_kit::testing::run_on_chdb(&queries).unwrap_or_else(|e| panic!("{e}"));
}

/// The cluster form of the retention statements (a sharded table's
/// partitions listed from every shard and dropped `ON CLUSTER`, an
/// everywhere table's here) on chDB, after the migrations' cluster form.
#[test]
fn cluster_retention_statements_run_on_current_clickhouse() {
    let database = "chdb_retention_check";
    let cluster = Some(("analytics", database));
    let mut queries = vec![retention::partitions_sql(cluster)];
    queries.extend(RetentionTable::ALL.map(|table| {
        let partition = match table.period() {
            retention::Period::Month => 202_405,
            retention::Period::Day => 20_240_501,
        };
        retention::drop_partition_sql(table, partition, cluster)
    }));
    service_kit::testing::run_cluster_form_on_chdb(database, &queries).unwrap_or_else(|e| panic!("{e}"));
}
