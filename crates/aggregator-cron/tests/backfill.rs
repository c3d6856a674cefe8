//! `aggregator-cron run …`: the real binary backfills a range against the
//! local stack, each window once, and its exit code tells whether all succeeded.
#![cfg(test)]

mod common;

use std::process::{Command, Output};

use common::*;
use metrics_sql::windows::Job;

fn aggregator_cron(env: &Env, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_aggregator-cron"))
        .args(args)
        .envs(env.binary_env())
        .output()
        .expect("running aggregator-cron");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

#[tokio::test]
async fn backfill_runs_each_window_of_the_range_once_and_exits_0() {
    let env = Env::new(|_| {}).await;
    let mut rows = view("s1", T);
    rows.extend(view("s2", T + 2 * HOUR_MS));
    env.insert(&rows).await;

    let output = aggregator_cron(
        &env,
        &["run", "--job", "video_metrics", "--from", "2025-11-24T16:00:00Z", "--to", "2025-11-24T19:00:00Z"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}\n{stdout}", output.status);
    assert!(stdout.contains("backfill video_metrics: 3 of 3 windows succeeded, 0 failed"), "{stdout}");
    assert!(stdout.contains("backfill progress"), "plain progress lines without a terminal: {stdout}");

    let runs = env.runs("video_metrics").await;
    let windows: Vec<_> = runs.iter().map(|r| (r.window_start.timestamp() / 3600) as u32).collect();
    assert_eq!(windows, vec![H, H + 1, H + 2], "each window once, in order");
    assert!(runs.iter().all(|r| r.trigger == "backfill" && r.status == "succeeded"), "{runs:?}");
    assert_eq!(runs.iter().map(|r| r.rows.unwrap()).collect::<Vec<_>>(), vec![1, 0, 1]);
    assert_eq!(env.markers(Job::VideoMetrics, H, H + 3).await.len(), 3);

    // Dates for the daily job: [2025-11-24, 2025-11-25) is one day.
    let output =
        aggregator_cron(&env, &["run", "--job", "user_engagement_daily", "--from", "2025-11-24", "--to", "2025-11-25"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    let days = env.runs("user_engagement_daily").await;
    assert_eq!(days.len(), 1);
    assert_eq!(((days[0].window_start.timestamp() / 86_400) as u32, days[0].rows), (D, Some(2)));

    // A whole final day of hours: rolled up for top videos afterwards.
    let output =
        aggregator_cron(&env, &["run", "--job", "video_metrics", "--from", "2025-11-24", "--to", "2025-11-25"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("24 of 24 windows succeeded"), "{stdout}");
    assert!(stdout.contains("1 final day(s) rolled up into video_day_totals, 0 failed"), "{stdout}");
    let records = metrics_sql::days::fetch_records(&env.clickhouse.client(), D, D + 1).await.unwrap();
    assert_eq!(records.keys().copied().collect::<Vec<_>>(), vec![D]);
    env.drop().await;
}

#[tokio::test]
async fn backfill_exits_non_zero_when_a_window_fails() {
    let env = Env::new(|_| {}).await;
    env.clickhouse.client().query("DROP TABLE video_metrics").execute().await.unwrap();
    let output = aggregator_cron(
        &env,
        &["run", "--job", "video_metrics", "--from", "2025-11-24T16:00:00Z", "--to", "2025-11-24T18:00:00Z"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("0 of 2 windows succeeded, 2 failed"), "{stdout}");
    assert!(stdout.contains("failed 2025-11-24T16:00:00Z"), "{stdout}");
    let runs = env.runs("video_metrics").await;
    assert_eq!(runs.len(), 2, "a failed window does not stop a backfill");
    assert!(runs.iter().all(|r| r.status == "failed" && r.error.is_some()), "{runs:?}");

    let output =
        aggregator_cron(&env, &["run", "--job", "video_metrics", "--from", "2025-11-24", "--to", "2025-11-24"]);
    assert_eq!(output.status.code(), Some(1), "an empty range is refused");
    assert!(String::from_utf8_lossy(&output.stderr).contains("the range is empty"));
    env.drop().await;
}
