//! Window runs and scheduler ticks against the local stack's ClickHouse 18.16
//! and PostgreSQL, each test in databases of its own. Ticks get an injected
//! `now`, so nothing here waits for the wall clock to reach a schedule.
#![cfg(test)]

mod common;

use std::{sync::Arc, time::Duration};

use aggregator_cron::{Aggregator, Trigger, runs::TICK_LOCK_KEY, scheduler};
use common::*;
use events_model::EventRow;
use metrics_sql::{
    Statement, days,
    read::{self, TopMetric, TopVideoRow, VideoSummaryRow},
    rows,
    windows::{Job, Split},
};
use serde::Deserialize;
use service_kit::{Shutdown, testing::eventually};

/// `video_metrics` as read by the query API (FINAL), minus the run's own columns.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
struct VideoMetricsRow {
    video_id: String,
    hour: u32,
    views: u32,
    unique_viewers: u32,
    watch_time_seconds: f64,
    completed_views: u32,
    failed_views: u32,
    exits_before_start: u32,
    buffer_ms: u64,
    viewers: Vec<String>,
    view_watch_seconds: Vec<f64>,
    startup_times_ms: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
struct UserDayRow {
    user_id: String,
    date: String,
    sessions: Vec<String>,
    views: u32,
    completed_views: u32,
    watch_time_seconds: f64,
    view_video_ids: Vec<String>,
}

async fn video_metrics(env: &Env) -> Vec<VideoMetricsRow> {
    env.clickhouse
        .client()
        .query(
            "SELECT video_id, toUInt32(hour) AS hour, views, unique_viewers, watch_time_seconds, completed_views, \
             failed_views, exits_before_start, buffer_ms, arraySort(viewers) AS viewers, \
             arraySort(view_watch_seconds) AS view_watch_seconds, arraySort(startup_times_ms) AS startup_times_ms \
             FROM video_metrics FINAL ORDER BY video_id, hour",
        )
        .fetch_all()
        .await
        .unwrap()
}

async fn user_days(env: &Env) -> Vec<UserDayRow> {
    env.clickhouse
        .client()
        .query(
            "SELECT user_id, toString(date) AS date, arraySort(sessions) AS sessions, views, completed_views, \
             watch_time_seconds, arraySort(view_video_ids) AS view_video_ids \
             FROM user_engagement_daily FINAL ORDER BY user_id, date",
        )
        .fetch_all()
        .await
        .unwrap()
}

async fn summary(env: &Env, split: &Split) -> VideoSummaryRow {
    let statement: Statement = read::video_summary("v1", split, None);
    statement.query(&env.clickhouse.client()).fetch_one().await.unwrap()
}

/// Views s1 (hour H, 2 minutes watched, completed), s2 (hour H, anonymous,
/// exits before start) and s3 (hour H+1).
fn scenario() -> Vec<EventRow> {
    let mut rows = view("s1", T);
    rows.push(at("video_progress", T + 2 * MINUTE, "s1", Some("user-s1"), 120.0));
    rows.push(at("video_complete", T + 2 * MINUTE + 1000, "s1", Some("user-s1"), 120.0));
    rows.push(at("video_start", T + 5 * MINUTE, "s2", None, 0.0));
    rows.extend(view("s3", T + HOUR_MS));
    rows
}

#[tokio::test]
async fn rerunning_a_window_replaces_it_and_both_runs_are_recorded() {
    let env = Env::new(|_| {}).await;
    env.insert(&scenario()).await;
    let agg = &env.aggregator;

    let mut first = Vec::new();
    for window in [H, H + 1] {
        first.push(agg.run_window(Job::VideoMetrics, window, Trigger::Manual).await.unwrap());
    }
    first.push(agg.run_window(Job::UserEngagementDaily, D, Trigger::Manual).await.unwrap());
    let (metrics_before, days_before) = (video_metrics(&env).await, user_days(&env).await);
    let aggregated = Split { aggregated: vec![H, H + 1], raw: vec![], ..Split::default() };
    let raw = Split { aggregated: vec![], raw: vec![H, H + 1], ..Split::default() };
    let summary_before = summary(&env, &aggregated).await;
    assert_eq!(summary_before, summary(&env, &raw).await, "aggregated and raw reads agree");
    assert_eq!((summary_before.views, summary_before.unique_viewers), (3, 3));
    assert_eq!(summary_before.watch_time_seconds, 180.0);
    assert_eq!(metrics_before.len(), 2);
    assert_eq!(days_before.len(), 2, "one row per user with a user_id: user-s1 and user-s3");

    let mut second = Vec::new();
    for window in [H, H + 1] {
        second.push(agg.run_window(Job::VideoMetrics, window, Trigger::Manual).await.unwrap());
    }
    second.push(agg.run_window(Job::UserEngagementDaily, D, Trigger::Manual).await.unwrap());

    assert_eq!(video_metrics(&env).await, metrics_before);
    assert_eq!(user_days(&env).await, days_before);
    assert_eq!(summary(&env, &aggregated).await, summary_before);
    for (a, b) in first.iter().zip(&second) {
        assert!(b.version > a.version, "a rerun writes a newer version: {a:?} then {b:?}");
        assert_eq!(a.rows, b.rows);
    }
    let markers = env.markers(Job::VideoMetrics, H, H + 2).await;
    assert_eq!(markers[&H].version, second[0].version);
    assert_eq!(markers[&(H + 1)].version, second[1].version);

    let runs = env.runs("video_metrics").await;
    let got: Vec<_> =
        runs.iter().map(|r| (r.window_start.timestamp(), r.status.as_str(), r.trigger.as_str())).collect();
    let h = |w: u32| i64::from(w) * 3600;
    assert_eq!(
        got,
        vec![
            (h(H), "succeeded", "manual"),
            (h(H + 1), "succeeded", "manual"),
            (h(H), "succeeded", "manual"),
            (h(H + 1), "succeeded", "manual")
        ]
    );
    for (run, done) in runs.iter().zip(first[..2].iter().chain(&second[..2])) {
        assert_eq!(run.version, Some(i64::try_from(done.version).unwrap()));
        assert_eq!(run.rows, Some(i64::try_from(done.rows).unwrap()));
        assert!(run.duration_ms.is_some() && run.finished_at.is_some() && run.error.is_none());
        assert_eq!(run.window_end.timestamp() - run.window_start.timestamp(), 3600);
    }
    let days = env.runs("user_engagement_daily").await;
    assert_eq!(days.len(), 2);
    assert!(days.iter().all(|r| r.status == "succeeded" && r.rows == Some(2)));
    env.drop().await;
}

#[tokio::test]
async fn a_late_event_is_folded_into_exactly_the_window_of_its_view() {
    let env = Env::new(|c| {
        c.aggregation.safety_margin = Duration::ZERO;
        c.aggregation.initial_lookback = Duration::from_secs(3 * 3600);
        c.aggregation.min_recompute_interval = Duration::ZERO;
        c.retention.enabled = false;
    })
    .await;
    let mut rows = view("s1", T);
    rows.extend(view("s2", T + HOUR_MS));
    rows.extend(view("s3", T + 2 * HOUR_MS));
    env.insert(&rows).await;
    let agg = &env.aggregator;

    // 19:05: hours H..H+2 are due; nothing was ever run, so the lookback (3 h) starts at H.
    let now = instant(hour_ms(H + 3) + 5 * MINUTE);
    let report = agg.tick(now).await.unwrap();
    assert_eq!(report.windows(Job::VideoMetrics, Trigger::CatchUp), vec![H, H + 1, H + 2]);
    // The custom query's rollup, by the hours of the events' own times.
    assert_eq!(report.windows(Job::EventsHourly, Trigger::CatchUp), vec![H, H + 1, H + 2]);
    // …and its current hour, not closed yet.
    assert_eq!(report.windows(Job::EventsHourly, Trigger::OpenHour), vec![H + 3]);
    assert_eq!(report.runs.len(), 7, "{report:?}");
    assert_eq!(report.failures().count(), 0);
    let before = env.markers(Job::VideoMetrics, H, H + 3).await;
    let rolled_up_before = env.markers(Job::EventsHourly, H, H + 3).await;
    // Past every run's record, the rollup's runs (after the views') and the
    // open hour's included: an insert within a later run's covered_until
    // would not be late for it.
    let open_hour = env.markers(Job::EventsHourly, H + 3, H + 4).await;
    let covered = before
        .values()
        .chain(rolled_up_before.values())
        .chain(open_hour.values())
        .map(|m| m.covered_until)
        .max()
        .unwrap();
    let (events, progress) = rolled_up(&env, H + 1).await;
    assert_eq!((events, progress), (deduplicated(&env, H + 1).await, 1), "s2's start and progress");

    // A progress event of s1 (started in H), stamped in H+1, inserted after the runs.
    env.insert_after(covered, &[at("video_progress", T + 70 * MINUTE, "s1", Some("user-s1"), 120.0)]).await;

    let report = agg.tick(now + chrono::Duration::minutes(10)).await.unwrap();
    assert_eq!(report.windows(Job::VideoMetrics, Trigger::LateEvents), vec![H]);
    // The rollup recomputes the event's own hour, not its view's.
    assert_eq!(report.windows(Job::EventsHourly, Trigger::LateEvents), vec![H + 1]);
    assert_eq!(report.runs.len(), 2, "only the view's window and the event's hour are recomputed: {report:?}");
    let rolled_up_after = env.markers(Job::EventsHourly, H, H + 3).await;
    assert!(rolled_up_after[&(H + 1)].version > rolled_up_before[&(H + 1)].version);
    assert_eq!(rolled_up_after[&H], rolled_up_before[&H]);
    assert_eq!(rolled_up(&env, H + 1).await, (events + 1, progress + 1), "the late event is in its hour");
    assert_eq!(deduplicated(&env, H + 1).await, events + 1);
    let after = env.markers(Job::VideoMetrics, H, H + 3).await;
    assert!(after[&H].version > before[&H].version);
    assert_eq!(after[&(H + 1)], before[&(H + 1)], "H+1 untouched though the event's timestamp is in it");
    assert_eq!(after[&(H + 2)], before[&(H + 2)]);

    let aggregated = Split { aggregated: vec![H, H + 1, H + 2], raw: vec![], ..Split::default() };
    let got = summary(&env, &aggregated).await;
    assert_eq!(got, summary(&env, &Split { aggregated: vec![], raw: vec![H, H + 1, H + 2], ..Split::default() }).await);
    assert_eq!(got.watch_time_seconds, 240.0, "s1 now watched 120 s");

    let report = agg.tick(now + chrono::Duration::minutes(15)).await.unwrap();
    assert!(report.runs.is_empty(), "everything is fresh: {report:?}");
    let late: Vec<_> = env.runs("video_metrics").await.into_iter().filter(|r| r.trigger == "late_events").collect();
    assert_eq!(late.len(), 1);
    env.drop().await;
}

/// The events of `hour` in its newest `events_hourly` rows, and their
/// `video_progress` events.
async fn rolled_up(env: &Env, hour: u32) -> (u64, u64) {
    env.clickhouse
        .client()
        .query(
            "SELECT sum(c), sumIf(c, event_type = 'video_progress') FROM (SELECT event_type, \
             argMax(event_count, version) AS c FROM events_hourly WHERE hour = toDateTime(?) \
             GROUP BY event_type, device_type, browser, os, country, quality, cdn)",
        )
        .bind(u64::from(hour) * 3600)
        .fetch_one()
        .await
        .unwrap()
}

/// The distinct events stamped in `hour`.
async fn deduplicated(env: &Env, hour: u32) -> u64 {
    env.clickhouse
        .client()
        .query("SELECT uniqExact(event_id) FROM events WHERE intDiv(toUInt32(timestamp), 3600) = ?")
        .bind(hour)
        .fetch_one()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stale_window_recomputed_within_the_interval_waits_and_is_reported_deferred() {
    let env = Env::new(|c| {
        c.aggregation.safety_margin = Duration::ZERO;
        c.aggregation.initial_lookback = Duration::from_secs(3600);
        c.aggregation.min_recompute_interval = Duration::from_secs(3600);
        c.retention.enabled = false;
    })
    .await;
    env.insert(&view("s1", T)).await;
    let agg = &env.aggregator;
    let now = instant(hour_ms(H + 1) + 5 * MINUTE);
    let report = agg.tick(now).await.unwrap();
    assert_eq!(report.windows(Job::VideoMetrics, Trigger::Schedule), vec![H]);
    let before = env.markers(Job::VideoMetrics, H, H + 1).await;
    let covered = before[&H].covered_until;
    env.insert_after(covered, &[at("video_progress", T + 70 * MINUTE, "s1", Some("user-s1"), 120.0)]).await;

    // Stale, but recomputed seconds ago: left for a later tick, and said so.
    let report = agg.tick(now + chrono::Duration::minutes(10)).await.unwrap();
    assert!(report.runs.is_empty(), "{report:?}");
    assert_eq!(report.deferred[&Job::VideoMetrics], 1);
    assert_eq!(env.markers(Job::VideoMetrics, H, H + 1).await, before);
    env.drop().await;
}

#[tokio::test]
async fn a_tick_resumes_after_the_last_recorded_window_and_retries_failed_ones_after_their_backoff() {
    let env = Env::new(|c| {
        c.aggregation.safety_margin = Duration::ZERO;
        c.retention.enabled = false;
    })
    .await;
    let rows: Vec<EventRow> = (0..6u64).flat_map(|i| view(&format!("s{i}"), T + i * HOUR_MS)).collect();
    env.insert(&rows).await;
    let agg = &env.aggregator;
    agg.run_window(Job::VideoMetrics, H, Trigger::Schedule).await.unwrap();

    // Down from H+1 to H+5:05; the table is unavailable for the first tick:
    // every window fails, each is tried once.
    let now = instant(hour_ms(H + 5) + 5 * MINUTE);
    let hide = "RENAME TABLE video_metrics TO video_metrics_hidden";
    env.clickhouse.client().query(hide).execute().await.unwrap();
    let report = agg.tick(now).await.unwrap();
    let video: Vec<_> = report.runs.iter().filter(|r| r.job == Job::VideoMetrics).collect();
    assert_eq!(video.iter().map(|r| r.window).collect::<Vec<_>>(), vec![H + 1, H + 2, H + 3, H + 4], "{report:?}");
    assert!(video.iter().all(|r| r.trigger == Trigger::CatchUp), "{video:?}");
    assert!(video[0].result.as_ref().unwrap_err().contains("insert the window's rows"), "{video:?}");
    assert_eq!(report.windows_behind[&Job::VideoMetrics], 4);
    let retry = now + chrono::Duration::seconds(30);
    assert!(report.failing[&Job::VideoMetrics].values().all(|at| *at == retry), "{report:?}");

    let restore = "RENAME TABLE video_metrics_hidden TO video_metrics";
    env.clickhouse.client().query(restore).execute().await.unwrap();
    // Before the backoff ends nothing is retried; at its end all are.
    let report = agg.tick(now + chrono::Duration::seconds(10)).await.unwrap();
    assert_eq!(report.runs.iter().filter(|r| r.job == Job::VideoMetrics).count(), 0, "{report:?}");
    assert_eq!(report.windows_behind[&Job::VideoMetrics], 4);
    let report = agg.tick(retry).await.unwrap();
    assert_eq!(report.windows(Job::VideoMetrics, Trigger::Retry), vec![H + 1, H + 2, H + 3, H + 4]);
    assert_eq!(report.failures().count(), 0, "{report:?}");
    assert_eq!(report.windows_behind[&Job::VideoMetrics], 0);
    assert!(report.failing[&Job::VideoMetrics].is_empty());

    let runs = env.runs("video_metrics").await;
    let got: Vec<_> = runs
        .iter()
        .map(|r| ((r.window_start.timestamp() / 3600) as u32 - H, r.trigger.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "schedule", "succeeded"),
            (1, "catch_up", "failed"),
            (2, "catch_up", "failed"),
            (3, "catch_up", "failed"),
            (4, "catch_up", "failed"),
            (1, "retry", "succeeded"),
            (2, "retry", "succeeded"),
            (3, "retry", "succeeded"),
            (4, "retry", "succeeded"),
        ]
    );
    assert!(runs[1].error.as_deref().unwrap().contains("video_metrics"), "{:?}", runs[1].error);

    // On time at H+6:05: just the window that became due, as `schedule`.
    let report = agg.tick(instant(hour_ms(H + 6) + 5 * MINUTE)).await.unwrap();
    assert_eq!(report.windows(Job::VideoMetrics, Trigger::Schedule), vec![H + 5]);
    env.drop().await;
}

#[tokio::test]
async fn one_failing_window_is_retried_with_growing_backoff_while_later_windows_go_on() {
    service_kit::ops::metrics_handle();
    let env = Env::new(|c| {
        c.aggregation.safety_margin = Duration::ZERO;
        c.aggregation.initial_lookback = Duration::from_secs(5 * 3600);
        c.retention.enabled = false;
    })
    .await;
    let rows: Vec<EventRow> = (0..5u64).flat_map(|i| view(&format!("s{i}"), T + i * HOUR_MS)).collect();
    env.insert(&rows).await;
    let agg = &env.aggregator;
    // A real ClickHouse error for the rows of H+2 only: a materialized view
    // on video_metrics that throws for that hour (inserts of other hours pass).
    let fault = format!(
        "CREATE MATERIALIZED VIEW fault_injected_h2 ENGINE = Null AS \
         SELECT throwIf(hour = toDateTime({})) AS injected FROM video_metrics",
        hour_ms(H + 2) / 1000
    );
    env.clickhouse.client().query(&fault).execute().await.unwrap();
    let failures_before = service_kit::testing::metric_value(
        "analytics_service_aggregation_window_failures_total{job=\"video_metrics\"}",
    );

    let now = instant(hour_ms(H + 5) + 5 * MINUTE);
    let report = agg.tick(now).await.unwrap();
    let video: Vec<_> = report.runs.iter().filter(|r| r.job == Job::VideoMetrics).collect();
    assert_eq!(video.iter().map(|r| r.window).collect::<Vec<_>>(), vec![H, H + 1, H + 2, H + 3, H + 4]);
    let failed: Vec<_> = report.failures().map(|r| r.window).collect();
    assert_eq!(failed, vec![H + 2], "only H+2 fails, the windows after it are aggregated: {report:?}");
    assert_eq!(report.windows_behind[&Job::VideoMetrics], 1);
    let first_retry = now + chrono::Duration::seconds(30);
    assert_eq!(report.failing[&Job::VideoMetrics], [(H + 2, first_retry)].into());
    assert!(
        service_kit::testing::metric_value(
            "analytics_service_aggregation_window_failures_total{job=\"video_metrics\"}"
        ) >= failures_before + 1.0
    );
    let runs = env.runs("video_metrics").await;
    let failed_run = runs.iter().find(|r| r.status == "failed").unwrap();
    assert_eq!(failed_run.window_start.timestamp(), i64::from(H + 2) * 3600);
    assert!(failed_run.error.as_deref().unwrap().contains("insert the window's rows"), "{failed_run:?}");

    // Readers decide per window: H+2 has no record, so it is read raw, and
    // the mixed read equals the full recomputation.
    let markers = env.markers(Job::VideoMetrics, H, H + 5).await;
    assert_eq!(markers.keys().copied().collect::<Vec<_>>(), vec![H, H + 1, H + 3, H + 4]);
    let mixed = Split { aggregated: vec![H, H + 1, H + 3, H + 4], raw: vec![H + 2], ..Split::default() };
    let raw = Split { raw: (H..H + 5).collect(), ..Split::default() };
    let expected = summary(&env, &raw).await;
    assert_eq!(expected.views, 5);
    assert_eq!(summary(&env, &mixed).await, expected);

    // Still failing at its retry: the next wait doubles.
    let report = agg.tick(first_retry).await.unwrap();
    assert_eq!(report.windows(Job::VideoMetrics, Trigger::Retry), vec![H + 2]);
    assert_eq!(report.failures().count(), 1, "{report:?}");
    let second_retry = first_retry + chrono::Duration::seconds(60);
    assert_eq!(report.failing[&Job::VideoMetrics], [(H + 2, second_retry)].into());
    let early = agg.tick(second_retry - chrono::Duration::seconds(1)).await.unwrap();
    assert!(early.runs.iter().all(|r| r.job != Job::VideoMetrics), "waits for its backoff: {early:?}");

    // Fixed: the retry succeeds and nothing is behind.
    env.clickhouse.client().query("DROP TABLE fault_injected_h2").execute().await.unwrap();
    let report = agg.tick(second_retry).await.unwrap();
    assert_eq!(report.windows(Job::VideoMetrics, Trigger::Retry), vec![H + 2]);
    assert_eq!((report.failures().count(), report.windows_behind[&Job::VideoMetrics]), (0, 0), "{report:?}");
    assert!(report.failing[&Job::VideoMetrics].is_empty());
    let aggregated = Split { aggregated: (H..H + 5).collect(), ..Split::default() };
    assert_eq!(summary(&env, &aggregated).await, expected);
    env.drop().await;
}

async fn top(env: &Env, split: &Split) -> Vec<TopVideoRow> {
    read::top_videos(split, TopMetric::Views, 10).query(&env.clickhouse.client()).fetch_all().await.unwrap()
}

#[tokio::test]
async fn a_tick_rolls_up_each_final_day_once_and_again_after_an_hour_is_rerun() {
    let env = Env::new(|c| {
        c.aggregation.safety_margin = Duration::ZERO;
        c.aggregation.initial_lookback = Duration::from_secs(4 * 86_400);
        c.retention.enabled = false;
    })
    .await;
    let day_ms = u64::from(D) * 86_400_000;
    let mut rows = scenario();
    rows.extend(view("s8", day_ms + 30 * MINUTE)); // the day's first hour
    rows.extend(view("s9", day_ms + 86_400_000 + 30 * MINUTE)); // the next day's
    let mut other = view("s7", day_ms + 3 * HOUR_MS);
    other.iter_mut().for_each(|row| row.video_id = "v2".into());
    rows.extend(other);
    env.insert(&rows).await;
    let agg = &env.aggregator;

    // D+3 at 02:05: every hour of D is aggregated and past the 48 h horizon; D−1 lacks its
    // first two hours (before the lookback) and D+1 is not final yet.
    let now = instant(u64::from(D + 3) * 86_400_000 + 2 * HOUR_MS + 5 * MINUTE);
    let report = agg.tick(now).await.unwrap();
    assert_eq!(report.failures().count(), 0, "{report:?}");
    let rolled: Vec<_> = report.rollups.iter().map(|r| (r.day, r.result.clone())).collect();
    assert_eq!(rolled, vec![(D, Ok(2))], "v1 and v2 on D");

    let hours: Vec<u32> = days::hours_of(D).collect();
    let markers =
        rows::fetch_markers(&env.clickhouse.client(), Job::VideoMetrics, hours[0], hours[23] + 1).await.unwrap();
    let records = days::fetch_records(&env.clickhouse.client(), D, D + 1).await.unwrap();
    let mut split = Split { aggregated: hours.clone(), ..Split::default() };
    days::use_rollups(&mut split, &markers, &records);
    assert_eq!((split.days.clone(), split.aggregated.len()), (vec![D], 0), "the day reads its rollup");
    let exact = top(&env, &Split { aggregated: hours.clone(), ..Split::default() }).await;
    assert_eq!(exact.iter().map(|r| (r.video_id.as_str(), r.views)).collect::<Vec<_>>(), [("v1", 4), ("v2", 1)]);
    assert_eq!(top(&env, &split).await, exact);

    // Nothing to do at the next tick; after an hour of D runs again (a backfill), the
    // day reads its hours until the next tick rolls it up again, with that run counted.
    assert!(agg.tick(now).await.unwrap().rollups.is_empty());
    env.insert(&view("s10", T + 10 * MINUTE)).await;
    agg.run_window(Job::VideoMetrics, H, Trigger::Backfill).await.unwrap();
    let markers =
        rows::fetch_markers(&env.clickhouse.client(), Job::VideoMetrics, hours[0], hours[23] + 1).await.unwrap();
    let mut split = Split { aggregated: hours.clone(), ..Split::default() };
    days::use_rollups(&mut split, &markers, &records);
    assert!(split.days.is_empty(), "a rollup older than the day's newest run is not read");
    let report = agg.tick(now).await.unwrap();
    assert_eq!(report.rollups.iter().map(|r| r.day).collect::<Vec<_>>(), vec![D]);
    let records = days::fetch_records(&env.clickhouse.client(), D, D + 1).await.unwrap();
    let mut split = Split { aggregated: hours.clone(), ..Split::default() };
    days::use_rollups(&mut split, &markers, &records);
    assert_eq!(split.days, vec![D]);
    let exact = top(&env, &Split { aggregated: hours, ..Split::default() }).await;
    assert_eq!(exact[0].views, 5, "s10 counted");
    assert_eq!(top(&env, &split).await, exact);
    env.drop().await;
}

#[tokio::test]
async fn only_one_replica_ticks_at_a_time() {
    let env = Env::new(|c| {
        c.aggregation.initial_lookback = Duration::from_secs(3600);
        c.retention.enabled = false;
    })
    .await;
    let other = env.postgres.pool().unwrap().get().await.unwrap();
    other.query_one("SELECT pg_advisory_lock($1)", &[&TICK_LOCK_KEY]).await.unwrap();
    let now = instant(hour_ms(H + 1) + 5 * MINUTE);
    let report = env.aggregator.tick(now).await.unwrap();
    assert!(report.skipped && report.runs.is_empty(), "{report:?}");

    other.query_one("SELECT pg_advisory_unlock($1)", &[&TICK_LOCK_KEY]).await.unwrap();
    let report = env.aggregator.tick(now).await.unwrap();
    assert!(!report.skipped);
    assert_eq!(report.windows(Job::VideoMetrics, Trigger::Schedule), vec![H]);
    drop(other);
    env.drop().await;
}

#[tokio::test]
async fn the_scheduler_stops_promptly_on_shutdown() {
    let env = Env::new(|c| c.retention.enabled = false).await;
    let aggregator = Arc::new(Aggregator::connect(&env.config).await.unwrap());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(scheduler::run(aggregator, shutdown.clone()));
    // Let it start on its catch-up (48 empty hours of the wall clock), then stop it.
    eventually(Duration::from_secs(10), || async {
        anyhow::ensure!(!env.runs("video_metrics").await.is_empty(), "no run started yet");
        Ok(())
    })
    .await
    .unwrap();
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("stopped within 5 s").unwrap();
    let runs = env.runs("video_metrics").await;
    assert!(runs.iter().all(|r| r.status != "running"), "every started run is finished: {runs:?}");
    env.drop().await;
}
