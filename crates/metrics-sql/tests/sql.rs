//! The metric SQL against the local stack's ClickHouse 18.16 (own database
//! per test) and, rendered with its values, against chDB (current
//! ClickHouse). A small scenario with answers worked out by hand checks the
//! definitions; the aggregated, raw and mixed reads of the same windows must
//! agree exactly.
#![cfg(test)]

use events_model::EventRow;
use metrics_sql::{
    Statement, days,
    facts::{self, StoredFacts, Touched},
    read::{self, RealtimeRow, TopMetric, TopVideoRow, UserDayRow, VideoSummaryRow},
    rows::{self, MarkerRow},
    views::{self, LastInsertedRow, Scope},
    windows::{Grain, Job, Split},
};
use service_kit::testing::TestClickHouse;

/// 2025-11-24T16:10:00Z
const T: u64 = 1_764_000_600_000;
const HOUR: u32 = (T / 3_600_000) as u32;
const DAY: u32 = (T / 86_400_000) as u32;

fn event(event_type: &str, at_ms: u64, session: &str, user: Option<&str>) -> EventRow {
    let mut row = EventRow::new(event_type, session, "v1", at_ms);
    row.user_id = user.map(Into::into);
    row.received_at_ms = at_ms + 5;
    row
}

fn at(mut row: EventRow, position: f64) -> EventRow {
    row.position_seconds = Some(position);
    row
}

/// Three views of v1: s1 (u1, hour 0): 61 s watched through a seek, a
/// buffer and a pause, completed, startup 1500 ms from its first progress;
/// s2 (anonymous, hour 0): exits before start; s3 (u1 again, hour 1): 5 s
/// watched, startup 800 ms as reported, then a fatal error.
fn scenario() -> Vec<EventRow> {
    let u1 = Some("u1");
    let mut start = at(event("video_start", T, "s1", u1), 0.0);
    start.duration_seconds = Some(100.0);
    start.quality = "720p".into();
    start.device_type = "tv".into();
    let mut seek = event("seek", T + 12_000, "s1", u1);
    seek.seek_from_seconds = Some(11.0);
    seek.seek_to_seconds = Some(50.0);
    let mut buffer = at(event("video_buffer", T + 12_500, "s1", u1), 50.0);
    buffer.buffer_duration_ms = Some(700);
    let mut quality = at(event("quality_change", T + 81_000, "s1", u1), 58.0);
    quality.to_quality = "1080p".into();
    let progress = at(event("video_progress", T + 1_500, "s1", u1), 0.5);
    let s3 = T + 3_600_000;
    let mut s3_start = at(event("video_start", s3, "s3", u1), 0.0);
    s3_start.startup_time_ms = Some(800);
    s3_start.device_type = "mobile".into();
    vec![
        start,
        progress.clone(),
        progress, // a redelivered copy: same event_id
        at(event("video_progress", T + 11_500, "s1", u1), 10.5),
        seek,
        buffer,
        at(event("video_pause", T + 20_000, "s1", u1), 57.0),
        at(event("video_resume", T + 80_000, "s1", u1), 57.0),
        quality,
        at(event("video_complete", T + 130_000, "s1", u1), 100.0),
        at(event("video_start", T + 5_000, "s2", None), 0.0),
        event("video_pause", T + 6_000, "s2", None),
        s3_start,
        at(event("video_progress", s3 + 5_000, "s3", u1), 5.0),
        event("video_error", s3 + 6_000, "s3", u1),
    ]
}

async fn insert(db: &TestClickHouse, rows: &[EventRow]) {
    let client = db.client();
    let mut insert = client.insert::<EventRow>("events").await.unwrap();
    for row in rows {
        insert.write(row).await.unwrap();
    }
    insert.end().await.unwrap();
}

async fn one<T>(db: &TestClickHouse, statement: &Statement) -> T
where
    T: clickhouse::RowOwned + clickhouse::RowRead,
{
    statement.query(&db.client()).fetch_one::<T>().await.unwrap_or_else(|e| panic!("{e}\n{}", statement.text()))
}

async fn all<T>(db: &TestClickHouse, statement: &Statement) -> Vec<T>
where
    T: clickhouse::RowOwned + clickhouse::RowRead,
{
    statement.query(&db.client()).fetch_all::<T>().await.unwrap_or_else(|e| panic!("{e}\n{}", statement.text()))
}

async fn aggregate(db: &TestClickHouse, job: Job, windows: &[u32], version: u64) {
    for &window in windows {
        for step in [rows::insert_window(job, window, version), rows::retire_vanished_rows(job, window, version)] {
            step.query(&db.client()).execute().await.unwrap_or_else(|e| panic!("{e}\n{}", step.text()));
        }
        let count: u64 = one(db, &rows::count_window_rows(job, window, version)).await;
        rows::insert_marker(job, window, version, u32::MAX - 1, count).query(&db.client()).execute().await.unwrap();
    }
}

fn splits(windows: &[u32]) -> Vec<Split> {
    vec![
        Split { aggregated: vec![], raw: windows.to_vec(), ..Split::default() },
        Split { aggregated: windows.to_vec(), raw: vec![], ..Split::default() },
        Split { aggregated: windows[..1].to_vec(), raw: windows[1..].to_vec(), ..Split::default() },
        // Every video's rebuilds (top videos) read the time-clustered copy.
        Split { raw: windows.to_vec(), by_time_from_ms: Some(0), ..Split::default() },
    ]
}

#[tokio::test]
async fn video_metrics_match_the_definitions_from_raw_and_aggregated_windows() {
    let db = TestClickHouse::create().await.unwrap();
    insert(&db, &scenario()).await;
    aggregate(&db, Job::VideoMetrics, &[HOUR, HOUR + 1], 1).await;
    // A second run of the same windows replaces, never adds.
    aggregate(&db, Job::VideoMetrics, &[HOUR, HOUR + 1], 2).await;

    let expected = VideoSummaryRow {
        views: 3,
        unique_viewers: 2,
        completed_views: 1,
        failed_views: 1,
        exits_before_start: 1,
        buffer_ms: 700,
        startup_count: 2,
        watch_time_seconds: 66.0,
        watch_percentage_sum: 66.0,
        events_duration: Some(100.0),
        startup_median_ms: 800,
        startup_p95_ms: 1500,
    };
    for split in splits(&[HOUR, HOUR + 1]) {
        let got: VideoSummaryRow = one(&db, &read::video_summary("v1", &split, None)).await;
        assert_eq!(got, expected, "{split:?}");
    }
    // A catalog duration of 50 s caps s1 at 100 %: (100 + 0 + 10) over the views.
    let got: VideoSummaryRow = one(
        &db,
        &read::video_summary(
            "v1",
            &Split { aggregated: vec![HOUR], raw: vec![HOUR + 1], ..Split::default() },
            Some(50.0),
        ),
    )
    .await;
    assert_eq!(got.watch_percentage_sum, 110.0);

    for split in splits(&[HOUR, HOUR + 1]) {
        let top: Vec<TopVideoRow> = all(&db, &read::top_videos(&split, TopMetric::WatchTime, 10)).await;
        assert_eq!(
            top,
            vec![TopVideoRow { video_id: "v1".into(), views: 3, completed_views: 1, watch_time_seconds: 66.0 }]
        );
    }

    let last: Vec<LastInsertedRow> =
        all(&db, &views::last_inserted_by_window(Scope::Video("v1"), Grain::Hour, T - 3_600_000)).await;
    assert_eq!(last.iter().map(|r| r.window).collect::<Vec<_>>(), vec![HOUR, HOUR + 1]);
    let markers: Vec<MarkerRow> = all(&db, &rows::markers(Job::VideoMetrics, HOUR, HOUR + 2)).await;
    assert_eq!(markers.iter().map(|m| (m.window, m.version)).collect::<Vec<_>>(), vec![(HOUR, 2), (HOUR + 1, 2)]);
    db.drop().await.unwrap();
}

/// One view with thousands of events (a player flooding its session) is
/// computed in memory proportional to its events: the view SQL compares each
/// event with the one before through shifted arrays, never by indexing a
/// captured array inside a lambda (quadratic: this view needed over 2 GiB).
#[tokio::test]
async fn a_view_of_thousands_of_events_needs_memory_linear_in_them() {
    const EVENTS: u64 = 6_000;
    let db = TestClickHouse::create().await.unwrap();
    let mut rows = vec![at(event("video_start", T, "hot", Some("u1")), 0.0)];
    for i in 1..EVENTS {
        rows.push(at(event("video_progress", T + i * 1_000, "hot", Some("u1")), i as f64));
    }
    let copy = rows[100].clone(); // a redelivered copy: counted once
    rows.push(copy);
    insert(&db, &rows).await;
    // 64 MiB: the quadratic form needed about (6,000 events)² × a tuple's bytes.
    let client = db.client().with_setting("max_memory_usage", (64u64 << 20).to_string());
    let split = Split { raw: vec![HOUR, HOUR + 1, HOUR + 2], ..Split::default() };
    let statement = read::video_summary("v1", &split, None);
    let got: VideoSummaryRow =
        statement.query(&client).fetch_one().await.unwrap_or_else(|e| panic!("{e}\n{}", statement.text()));
    assert_eq!((got.views, got.unique_viewers), (1, 1));
    assert_eq!(got.watch_time_seconds, (EVENTS - 1) as f64, "one second per progress event");
    assert_eq!(got.startup_p95_ms, 1_000, "the first progress, a second after the start");
    db.drop().await.unwrap();
}

#[tokio::test]
async fn user_days_match_from_raw_and_aggregated_windows() {
    let db = TestClickHouse::create().await.unwrap();
    insert(&db, &scenario()).await;
    aggregate(&db, Job::UserEngagementDaily, &[DAY], 7).await;
    // Settled stored facts (nothing newer than the pass) read in their own,
    // shallower statement: alone, and beside aggregated days with and
    // without rows.
    facts_pass(&db, None, 8).await;
    let settled = Some(StoredFacts::settled(server_now(&db).await + 100, u64::from(DAY) * 86_400_000));
    for split in [
        Split { aggregated: vec![], raw: vec![DAY], ..Split::default() },
        Split { aggregated: vec![DAY], raw: vec![], ..Split::default() },
        Split { raw: vec![DAY], facts: settled.clone(), ..Split::default() },
        Split { aggregated: vec![DAY - 1], raw: vec![DAY], facts: settled.clone(), ..Split::default() },
        Split { aggregated: vec![DAY], raw: vec![DAY + 1], facts: settled.clone(), ..Split::default() },
    ] {
        let mut days: Vec<UserDayRow> = all(&db, &read::user_days("u1", &split)).await;
        assert_eq!(days.len(), 1, "{split:?}");
        let mut day = days.remove(0);
        day.sessions.sort();
        assert_eq!(day.sessions, vec!["s1", "s3"]);
        assert_eq!((day.views, day.completed_views, day.watch_time_seconds), (2, 1, 66.0));
        let mut per_view: Vec<_> = (0..day.view_video_ids.len())
            .map(|i| {
                (
                    day.view_video_ids[i].clone(),
                    day.view_qualities[i].clone(),
                    day.view_device_types[i].clone(),
                    day.view_hours[i],
                    day.view_watch_seconds[i],
                )
            })
            .collect();
        per_view.sort_by_key(|v| v.3);
        assert_eq!(
            per_view,
            vec![
                ("v1".into(), "1080p".into(), "tv".into(), 16, 61.0),
                ("v1".into(), String::new(), "mobile".into(), 17, 5.0)
            ]
        );
    }
    let anonymous: Vec<UserDayRow> =
        all(&db, &read::user_days("s2", &Split { aggregated: vec![], raw: vec![DAY], ..Split::default() })).await;
    assert!(anonymous.is_empty(), "an anonymous view belongs to no user");
    db.drop().await.unwrap();
}

#[tokio::test]
async fn realtime_counts_live_views_and_errors_in_the_window() {
    let db = TestClickHouse::create().await.unwrap();
    let rows = scenario();
    insert(&db, &rows).await;
    // Received in (T + 4 s, T + 3_600_000 + 10 s]: s1 from its progress at 11.5 s on (completed at the end, so
    // not live), s2's pause (live: paused is still watching), all of s3 (ends in a fatal error: not live).
    let row: RealtimeRow = one(&db, &read::realtime(T + 6_000, T + 3_610_000)).await;
    let in_window = rows[..]
        .iter()
        .filter(|r| r.received_at_ms > T + 6_000)
        .map(|r| r.event_id)
        .collect::<std::collections::HashSet<_>>();
    assert_eq!(row.events, in_window.len() as u64);
    assert_eq!(row.errors, 1);
    assert_eq!((row.concurrent_viewers, row.active_streams, row.bandwidth_kbps), (1, 1, 0));
    db.drop().await.unwrap();
}

/// The realtime window reads a key range of `events_by_receipt`, not the
/// history: with 200,000 older rows stored, the query answers under a server
/// limit of 40,000 rows read (a few granules), which a scan would exceed.
#[tokio::test]
async fn realtime_reads_only_the_window_not_the_history() {
    let db = TestClickHouse::create().await.unwrap();
    let old: Vec<EventRow> = (0..200_000u64)
        .map(|i| event("video_progress", T - 86_400_000 + i * 100, &format!("old{}", i % 500), None))
        .collect();
    insert(&db, &old).await;
    let recent = [event("video_start", T, "s1", None), event("video_error", T + 1_000, "s2", None)];
    insert(&db, &recent).await;
    let statement = read::realtime(T - 60_000, T + 60_000);
    let limited = db.client().with_setting("max_rows_to_read", "40000").with_setting("read_overflow_mode", "throw");
    let row: RealtimeRow = statement
        .query(&limited)
        .fetch_one()
        .await
        .unwrap_or_else(|e| panic!("the realtime window read more than a key range: {e}"));
    assert_eq!((row.events, row.errors, row.concurrent_viewers), (2, 1, 1));
    // The same limit does stop a scan of the history: the limit is real.
    let scan = limited.query("SELECT count() FROM events WHERE received_at_ms > 0").fetch_one::<u64>().await;
    assert!(scan.is_err(), "a full scan under the limit should fail: {scan:?}");
    db.drop().await.unwrap();
}

#[tokio::test]
async fn a_view_moved_to_an_earlier_window_leaves_the_later_one() {
    let db = TestClickHouse::create().await.unwrap();
    let later = T + 3_600_000;
    insert(&db, &[at(event("video_start", later, "s9", Some("u9")), 0.0)]).await;
    aggregate(&db, Job::VideoMetrics, &[HOUR, HOUR + 1], 1).await;
    aggregate(&db, Job::UserEngagementDaily, &[DAY], 1).await;
    // A late video_start an hour earlier: the view now starts in HOUR.
    insert(&db, &[at(event("video_start", T, "s9", Some("u9")), 0.0)]).await;
    let last: Vec<LastInsertedRow> =
        all(&db, &views::last_inserted_by_window(Scope::All, Grain::Hour, T - 3_600_000)).await;
    assert_eq!(last.iter().map(|r| r.window).collect::<Vec<_>>(), vec![HOUR, HOUR + 1], "both windows flagged");
    aggregate(&db, Job::VideoMetrics, &[HOUR, HOUR + 1], 2).await;
    for split in splits(&[HOUR, HOUR + 1]) {
        let got: VideoSummaryRow = one(&db, &read::video_summary("v1", &split, None)).await;
        assert_eq!(got.views, 1, "{split:?}");
    }
    let moved: u64 = one(&db, &rows::count_window_rows(Job::VideoMetrics, HOUR + 1, 2)).await;
    assert_eq!(moved, 0, "the later hour kept no view");
    db.drop().await.unwrap();
}

#[tokio::test]
async fn a_restart_more_than_a_day_later_is_a_new_view_and_a_chain_of_restarts_is_not() {
    let db = TestClickHouse::create().await.unwrap();
    let h = 3_600_000;
    insert(
        &db,
        &[
            // s1: starts at 0 h and 30 h: two views.
            at(event("video_start", T, "s1", None), 0.0),
            at(event("video_start", T + 30 * h, "s1", None), 0.0),
            // s2: starts at 0 h, 20 h and 40 h: one view (each start is within a day of the one before;
            // the one at 40 h is past the first view's day).
            at(event("video_start", T, "s2", None), 0.0),
            at(event("video_start", T + 20 * h, "s2", None), 0.0),
            at(event("video_start", T + 40 * h, "s2", None), 0.0),
        ],
    )
    .await;
    let hours: Vec<u32> = (HOUR..HOUR + 48).collect();
    for split in [Split { aggregated: vec![], raw: hours.clone(), ..Split::default() }] {
        let got: VideoSummaryRow = one(&db, &read::video_summary("v1", &split, None)).await;
        assert_eq!(got.views, 3, "{split:?}");
    }
    // Computed one hour at a time, the same views land in the same hours.
    let mut views = 0;
    for hour in hours {
        let got: VideoSummaryRow = one(
            &db,
            &read::video_summary("v1", &Split { aggregated: vec![], raw: vec![hour], ..Split::default() }, None),
        )
        .await;
        views += got.views;
    }
    assert_eq!(views, 3);
    db.drop().await.unwrap();
}

fn with_facts(split: &Split) -> Split {
    let stored = StoredFacts { covered_until: 1_764_000_000, from_ms: 0, touched: Touched::Before(1_764_000_100) };
    Split { facts: Some(stored), ..split.clone() }
}

fn settled(split: &Split) -> Split {
    Split { facts: Some(StoredFacts::settled(1_764_000_000, 0)), ..split.clone() }
}

/// Every statement, values written in, runs on chDB against the migrations.
#[test]
fn every_statement_runs_on_current_clickhouse() {
    let split = Split { aggregated: vec![HOUR], raw: vec![HOUR + 1], ..Split::default() };
    let days = Split { aggregated: vec![DAY], raw: vec![DAY + 1], ..Split::default() };
    let statements = [
        rows::insert_window(Job::VideoMetrics, HOUR, 1),
        rows::insert_window(Job::UserEngagementDaily, DAY, 1),
        rows::retire_vanished_rows(Job::VideoMetrics, HOUR, 2),
        rows::retire_vanished_rows(Job::UserEngagementDaily, DAY, 2),
        rows::count_window_rows(Job::VideoMetrics, HOUR, 1),
        rows::count_window_rows(Job::UserEngagementDaily, DAY, 1),
        rows::insert_marker(Job::VideoMetrics, HOUR, 1, 1_764_000_000, 3),
        rows::markers(Job::UserEngagementDaily, DAY, DAY + 3),
        rows::insert_window(Job::EventsHourly, HOUR, 1),
        metrics_sql::hourly::insert_hour(HOUR, 1, Some(0), 1_764_000_000),
        metrics_sql::hourly::delta_events(
            metrics_sql::EVENTS_BY_TIME_TABLE,
            &["event_id", "event_type", "country"],
            HOUR,
            1_764_000_000,
            &Statement::new(""),
        ),
        rows::retire_vanished_rows(Job::EventsHourly, HOUR, 2),
        rows::count_window_rows(Job::EventsHourly, HOUR, 1),
        metrics_sql::hourly::last_inserts(HOUR, HOUR + 24),
        views::last_inserted_by_window(Scope::All, Grain::Hour, T),
        views::last_inserted_by_window(Scope::User("u'1"), Grain::Day, T),
        read::video_summary("v'1", &split, Some(10.0)),
        read::top_videos(&split, TopMetric::CompletionRate, 5),
        read::user_days("u1", &days),
        read::realtime(T, T + 60_000),
        facts::insert_pass_facts(u64::from(HOUR) * 3_600_000, None, 1),
        facts::insert_pass_facts(u64::from(HOUR) * 3_600_000, Some(1_764_000_000), 2),
        facts::pass_written(2, 1_764_000_000_000),
        facts::insert_pass_metrics(u64::from(HOUR) * 3_600_000, 2),
        facts::insert_pass_totals(u64::from(HOUR) * 3_600_000, 2),
        facts::video_pass_views("v'1", u64::from(HOUR) * 3600),
        read::video_summary("v'1", &Split { from_pass: vec![HOUR + 1], as_of: Some(1), ..split.clone() }, Some(9.0)),
        read::video_summary("v'1", &Split { from_pass: vec![HOUR], as_of: Some(1), ..Split::default() }, None),
        facts::totals_views(&[HOUR, HOUR + 1]),
        facts::insert_pass(&facts::PassRecord {
            version: 2,
            covered_until: 1_764_000_000,
            from_ms: 1_764_000_000_000,
            full: false,
            rows: 3,
            open_views: 4,
        }),
        facts::newest_pass(),
        read::top_videos(
            &Split { from_pass: vec![HOUR, HOUR + 1], as_of: Some(1), ..split.clone() },
            TopMetric::WatchTime,
            5,
        ),
        read::top_videos(&Split { from_pass: vec![HOUR], as_of: Some(1), ..Split::default() }, TopMetric::Views, 5),
        read::video_summary("v'1", &with_facts(&split), None),
        read::top_videos(&with_facts(&split), TopMetric::Views, 5),
        read::top_videos(&Split { by_time_from_ms: Some(0), ..with_facts(&split) }, TopMetric::Views, 5),
        read::top_videos(&Split { by_time_from_ms: Some(0), ..split.clone() }, TopMetric::Views, 5),
        read::user_days("u1", &with_facts(&days)),
        read::video_summary("v'1", &settled(&split), None),
        read::user_days("u1", &settled(&days)),
        read::user_days("u1", &Split { aggregated: vec![], ..settled(&days) }),
        days::insert_day_totals(DAY, 3),
        days::count_day_rows(DAY, 3),
        days::insert_record(DAY, 2, 3, 1),
        days::records(DAY - 2, DAY + 1),
        read::top_videos(&Split { days: vec![DAY - 1, DAY], ..split.clone() }, TopMetric::Views, 5),
        read::top_videos(
            &Split { days: vec![DAY], from_pass: vec![HOUR], as_of: Some(1), ..Split::default() },
            TopMetric::CompletionRate,
            5,
        ),
    ];
    let queries: Vec<String> = statements.iter().map(Statement::render).collect();
    service_kit::testing::run_on_chdb(&queries).unwrap_or_else(|e| panic!("{e}"));
}

/// Whole days read from their rollup like their 24 hours from
/// `video_metrics`, beside hours of another day; a video whose views left the
/// day has a zero row in the day's next rollup, so it is not counted.
#[tokio::test]
async fn a_days_rollup_reads_like_its_hours() {
    let db = TestClickHouse::create().await.unwrap();
    let midnight = u64::from(DAY) * 86_400_000;
    let mut v2 = at(event("video_start", midnight + 60_000, "s7", Some("u7")), 0.0);
    v2.video_id = "v2".into();
    let mut v2_progress = at(event("video_progress", midnight + 90_000, "s7", Some("u7")), 30.0);
    v2_progress.video_id = "v2".into();
    let mut events = scenario();
    events.extend([v2.clone(), v2_progress]);
    insert(&db, &events).await;
    let day: Vec<u32> = days::hours_of(DAY).collect();
    let next_day: Vec<u32> = days::hours_of(DAY + 1).collect();
    aggregate(&db, Job::VideoMetrics, &[day.as_slice(), &next_day].concat(), 1).await;
    let rows = days::run_rollup(&db.client(), DAY, 1, 2).await.unwrap_or_else(|(step, e)| panic!("{step}: {e}"));
    assert_eq!(rows, 2, "v1 and v2");
    assert_eq!(days::fetch_records(&db.client(), DAY - 1, DAY + 2).await.unwrap(), [(DAY, 1)].into());

    let hourly = Split { aggregated: [day.as_slice(), &next_day].concat(), ..Split::default() };
    let daily = Split { aggregated: next_day.clone(), days: vec![DAY], ..Split::default() };
    let only_day = Split { days: vec![DAY], ..Split::default() };
    for metric in TopMetric::ALL {
        let exact: Vec<TopVideoRow> = all(&db, &read::top_videos(&hourly, metric, 10)).await;
        assert_eq!(exact.len(), 2, "{metric:?}");
        assert_eq!(all::<TopVideoRow>(&db, &read::top_videos(&daily, metric, 10)).await, exact, "{metric:?}");
        assert_eq!(all::<TopVideoRow>(&db, &read::top_videos(&only_day, metric, 10)).await, exact, "{metric:?}");
    }

    // A late, earlier video_start moves v2's view to the day before.
    let mut earlier = at(event("video_start", midnight - 600_000, "s7", Some("u7")), 0.0);
    earlier.video_id = "v2".into();
    insert(&db, &[earlier]).await;
    aggregate(&db, Job::VideoMetrics, &day[..1], 3).await;
    days::run_rollup(&db.client(), DAY, 3, 4).await.unwrap_or_else(|(step, e)| panic!("{step}: {e}"));
    let exact: Vec<TopVideoRow> = all(&db, &read::top_videos(&hourly, TopMetric::Views, 10)).await;
    assert_eq!(exact.iter().map(|r| r.video_id.as_str()).collect::<Vec<_>>(), ["v1"]);
    assert_eq!(all::<TopVideoRow>(&db, &read::top_videos(&only_day, TopMetric::Views, 10)).await, exact);
    assert_eq!(days::fetch_records(&db.client(), DAY, DAY + 1).await.unwrap(), [(DAY, 3)].into());
    db.drop().await.unwrap();
}

/// ClickHouse's clock, epoch seconds.
async fn server_now(db: &TestClickHouse) -> u32 {
    db.client().query("SELECT toUInt32(now())").fetch_one().await.unwrap()
}

/// A facts pass of the views starting from `HOUR` on: of every key when
/// `since` is `None`, else of the keys with rows inserted after it.
async fn facts_pass(db: &TestClickHouse, since: Option<u32>, version: u64) -> facts::PassRecord {
    let from_ms = u64::from(HOUR) * 3_600_000;
    let plan = facts::PassPlan { version, from_ms, since, covered_until: server_now(db).await };
    let record = facts::run_pass(&db.client(), plan).await.unwrap_or_else(|(step, e)| panic!("{step}: {e}"));
    assert!(record.rows > 0, "pass {version} wrote nothing");
    record
}

/// Raw splits of `windows` read through stored facts: every key as stored
/// (nothing touched since `covered_until`), every key touched (all
/// rebuilt from the raw events), by the bounded subquery and listed, one
/// key listed, and the stored facts alone (settled: no rebuild part at all).
async fn facts_splits(db: &TestClickHouse, windows: &[u32]) -> Vec<Split> {
    let now = server_now(db).await;
    let from_ms = u64::from(HOUR) * 3_600_000;
    let keys = |sessions: &[&str]| sessions.iter().map(|s| ("v1".to_string(), s.to_string())).collect();
    [
        StoredFacts { covered_until: now + 100, from_ms, touched: Touched::Before(now + 200) },
        StoredFacts { covered_until: 1, from_ms, touched: Touched::Before(now + 200) },
        StoredFacts { covered_until: 1, from_ms, touched: Touched::Listed(keys(&["s1", "s2", "s3", "s9"])) },
        StoredFacts { covered_until: 1, from_ms, touched: Touched::Listed(keys(&["s1"])) },
        StoredFacts::settled(now + 100, from_ms),
    ]
    .into_iter()
    .flat_map(|stored| {
        [None, Some(0)].map(|by_time_from_ms| Split {
            raw: windows.to_vec(),
            facts: Some(stored.clone()),
            by_time_from_ms,
            ..Split::default()
        })
    })
    .collect()
}

#[tokio::test]
async fn stored_facts_and_touched_keys_read_like_the_raw_rebuild() {
    let db = TestClickHouse::create().await.unwrap();
    insert(&db, &scenario()).await;
    facts_pass(&db, None, 1).await;
    let expected: VideoSummaryRow =
        one(&db, &read::video_summary("v1", &Split { raw: vec![HOUR, HOUR + 1], ..Split::default() }, None)).await;
    assert_eq!((expected.views, expected.watch_time_seconds), (3, 66.0));
    let expected_days: Vec<UserDayRow> =
        all(&db, &read::user_days("u1", &Split { raw: vec![DAY], ..Split::default() })).await;
    for split in facts_splits(&db, &[HOUR, HOUR + 1]).await {
        let got: VideoSummaryRow = one(&db, &read::video_summary("v1", &split, None)).await;
        assert_eq!(got, expected, "{split:?}");
        let top: Vec<TopVideoRow> = all(&db, &read::top_videos(&split, TopMetric::Views, 10)).await;
        assert_eq!((top.len(), top[0].views, top[0].watch_time_seconds), (1, 3, 66.0), "{split:?}");
    }
    // The pass's hour totals answer top videos like the rebuild, whichever
    // metric ranks, alone or beside an aggregated-or-raw hour.
    for metric in TopMetric::ALL {
        let exact: Vec<TopVideoRow> =
            all(&db, &read::top_videos(&Split { raw: vec![HOUR, HOUR + 1], ..Split::default() }, metric, 10)).await;
        let from_pass = Split { from_pass: vec![HOUR, HOUR + 1], as_of: Some(1), ..Split::default() };
        assert_eq!(all::<TopVideoRow>(&db, &read::top_videos(&from_pass, metric, 10)).await, exact, "{metric:?}");
        let mixed = Split { raw: vec![HOUR], from_pass: vec![HOUR + 1], as_of: Some(1), ..Split::default() };
        assert_eq!(all::<TopVideoRow>(&db, &read::top_videos(&mixed, metric, 10)).await, exact, "{metric:?}");
    }
    // The pass's hour rows answer a video's metrics like the rebuild, every
    // field (viewers, startup percentiles, watch percentages) included,
    // alone, beside a raw hour, and beside an aggregated one.
    aggregate(&db, Job::VideoMetrics, &[HOUR], 5).await;
    for duration in [None, Some(100.0)] {
        let exact: VideoSummaryRow =
            one(&db, &read::video_summary("v1", &Split { raw: vec![HOUR, HOUR + 1], ..Split::default() }, duration))
                .await;
        // Settled stored facts (nothing newer than the pass) read in their
        // own, shallower statement, beside an aggregated hour too.
        let settled = Some(StoredFacts::settled(server_now(&db).await + 100, u64::from(HOUR) * 3_600_000));
        for split in [
            Split { from_pass: vec![HOUR, HOUR + 1], as_of: Some(1), ..Split::default() },
            Split { raw: vec![HOUR], from_pass: vec![HOUR + 1], as_of: Some(1), ..Split::default() },
            Split { aggregated: vec![HOUR], from_pass: vec![HOUR + 1], as_of: Some(1), ..Split::default() },
            Split { aggregated: vec![HOUR], raw: vec![HOUR + 1], facts: settled.clone(), ..Split::default() },
            Split { raw: vec![HOUR, HOUR + 1], facts: settled.clone(), ..Split::default() },
        ] {
            assert_eq!(one::<VideoSummaryRow>(&db, &read::video_summary("v1", &split, duration)).await, exact);
        }
    }
    let views_from = |hour: u32| facts::video_pass_views("v1", u64::from(hour) * 3600);
    let hours = |views, hours: &[u32]| facts::VideoPassHours { views, hours: hours.to_vec() };
    assert_eq!(one::<facts::VideoPassHours>(&db, &views_from(HOUR)).await, hours(3, &[HOUR, HOUR + 1]));
    assert_eq!(one::<facts::VideoPassHours>(&db, &views_from(HOUR + 1)).await.hours, [HOUR + 1]);
    assert_eq!(one::<facts::VideoPassHours>(&db, &views_from(HOUR + 2)).await, hours(0, &[]));
    let other = facts::video_pass_views("v2", u64::from(HOUR) * 3600);
    assert_eq!(one::<facts::VideoPassHours>(&db, &other).await, hours(0, &[]));
    let day_from = u64::from(DAY) * 86_400_000;
    for mut split in facts_splits(&db, &[DAY]).await {
        split.facts.as_mut().unwrap().from_ms = day_from;
        let got: Vec<UserDayRow> = all(&db, &read::user_days("u1", &split)).await;
        assert_eq!(got.len(), 1, "{split:?}");
        assert_eq!((got[0].views, got[0].watch_time_seconds), (expected_days[0].views, 66.0), "{split:?}");
    }

    // One key touched after the pass and the others not: s1 is rebuilt, the
    // rest read as stored, and s1's stored row is left out (not counted twice).
    let now = server_now(&db).await;
    db.client()
        .query("INSERT INTO keys_by_insert (inserted_at, video_id, session_id) VALUES (toDateTime(?), 'v1', 's1')")
        .bind(now + 50)
        .execute()
        .await
        .unwrap();
    let stored = StoredFacts {
        covered_until: now + 10,
        from_ms: u64::from(HOUR) * 3_600_000,
        touched: Touched::Before(now + 100),
    };
    let split = Split { raw: vec![HOUR, HOUR + 1], facts: Some(stored), ..Split::default() };
    let got: VideoSummaryRow = one(&db, &read::video_summary("v1", &split, None)).await;
    assert_eq!(got, expected);
    db.drop().await.unwrap();
}

#[tokio::test]
async fn a_pass_retires_a_start_that_no_longer_opens_a_view() {
    let db = TestClickHouse::create().await.unwrap();
    let later = T + 3_600_000;
    insert(&db, &[at(event("video_start", later, "s9", Some("u9")), 0.0)]).await;
    facts_pass(&db, None, 1).await;
    // A late video_start an hour earlier: the view now starts in HOUR.
    insert(&db, &[at(event("video_start", T, "s9", Some("u9")), 0.0)]).await;
    let hours = |split: &Split| (split.raw.clone(), split.facts.clone());
    // Touched keys are rebuilt (the second split); the stored facts (first) are stale until the next pass.
    let splits = facts_splits(&db, &[HOUR + 1]).await;
    let got: VideoSummaryRow = one(&db, &read::video_summary("v1", &splits[2], None)).await;
    assert_eq!(got.views, 0, "{:?}", hours(&splits[2]));
    facts_pass(&db, Some(0), 2).await;
    for split in facts_splits(&db, &[HOUR + 1]).await {
        let got: VideoSummaryRow = one(&db, &read::video_summary("v1", &split, None)).await;
        assert_eq!(got.views, 0, "the later hour keeps no view: {split:?}");
    }
    for split in facts_splits(&db, &[HOUR]).await {
        let got: VideoSummaryRow = one(&db, &read::video_summary("v1", &split, None)).await;
        assert_eq!(got.views, 1, "{split:?}");
    }
    // The totals moved with the view: the later hour's pair was rewritten
    // with zeros (no longer listed), the earlier one holds the view.
    let top_of =
        |hour: u32| read::top_videos(&Split { from_pass: vec![hour], ..Split::default() }, TopMetric::Views, 5);
    assert!(all::<TopVideoRow>(&db, &top_of(HOUR + 1)).await.is_empty());
    let earlier: Vec<TopVideoRow> = all(&db, &top_of(HOUR)).await;
    assert_eq!(earlier.iter().map(|r| (r.video_id.as_str(), r.views)).collect::<Vec<_>>(), [("v1", 1)]);
    let zeros: u64 =
        one(&db, &Statement::new("SELECT count() FROM video_hour_totals WHERE version = 2 AND views = 0")).await;
    assert_eq!(zeros, 1, "the later hour's pair rewritten with zeros");
    // So is its hour row for a busy video's read: the view is read in the
    // earlier hour only, as the rebuild has it.
    let empty = "SELECT count() FROM video_hour_metrics WHERE version = 2 AND views = 0 \
                 AND empty(viewers) AND empty(startup_times_ms) AND isNull(duration_seconds)";
    assert_eq!(one::<u64>(&db, &Statement::new(empty)).await, 1);
    let exact: VideoSummaryRow =
        one(&db, &read::video_summary("v1", &Split { raw: vec![HOUR, HOUR + 1], ..Split::default() }, None)).await;
    let from_pass = Split { from_pass: vec![HOUR, HOUR + 1], as_of: Some(1), ..Split::default() };
    assert_eq!(one::<VideoSummaryRow>(&db, &read::video_summary("v1", &from_pass, None)).await, exact);
    assert_eq!(exact.views, 1);
    db.drop().await.unwrap();
}

/// Waits until ClickHouse's clock is past `covered_until`, so that the next
/// rows count as inserted after that pass.
async fn after_pass(db: &TestClickHouse, covered_until: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server_now(db).await <= covered_until {
        assert!(std::time::Instant::now() < deadline, "ClickHouse's clock did not move");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn an_incremental_pass_scans_from_its_keys_first_start_and_keeps_every_view_whole() {
    let db = TestClickHouse::create().await.unwrap();
    // s9 begins at T, in the pass's first hour; s7 an hour later, s8 twenty
    // minutes after s7.
    let (s7, s8) = (T + 3_600_000, T + 80 * 60_000);
    insert(
        &db,
        &[
            at(event("video_start", T, "s9", None), 0.0),
            at(event("video_start", s7, "s7", Some("u7")), 0.0),
            at(event("video_start", s8, "s8", None), 0.0),
        ],
    )
    .await;
    let first = facts_pass(&db, None, 1).await;
    after_pass(&db, first.covered_until).await;
    // New rows of all three keys: s7 and s8 progress, and s9 starts again
    // forty minutes in, inside its view's span, so that start opens no view.
    // The pass must read s7 from its start, before s8's rows, and s9 from T.
    insert(
        &db,
        &[
            at(event("video_progress", s7 + 30 * 60_000, "s7", Some("u7")), 1800.0),
            at(event("video_progress", s8 + 5 * 60_000, "s8", None), 300.0),
            at(event("video_start", T + 40 * 60_000, "s9", None), 0.0),
        ],
    )
    .await;
    facts_pass(&db, Some(first.covered_until), 2).await;
    let hours = [HOUR, HOUR + 1];
    let exact: VideoSummaryRow =
        one(&db, &read::video_summary("v1", &Split { raw: hours.to_vec(), ..Split::default() }, None)).await;
    assert_eq!((exact.views, exact.watch_time_seconds), (3, 2100.0));
    let stored = StoredFacts::settled(server_now(&db).await, u64::from(HOUR) * 3_600_000);
    let split = Split { raw: hours.to_vec(), facts: Some(stored), ..Split::default() };
    assert_eq!(one::<VideoSummaryRow>(&db, &read::video_summary("v1", &split, None)).await, exact);
    // A pass with no key touched since succeeds and writes nothing.
    let now = server_now(&db).await;
    let plan =
        facts::PassPlan { version: 3, from_ms: u64::from(HOUR) * 3_600_000, since: Some(now), covered_until: now };
    let record = facts::run_pass(&db.client(), plan).await.unwrap_or_else(|(step, e)| panic!("{step}: {e}"));
    assert_eq!(record.rows, 0);
    db.drop().await.unwrap();
}

#[tokio::test]
async fn an_incremental_pass_rebuilds_a_view_that_began_the_day_before_its_new_row() {
    let db = TestClickHouse::create().await.unwrap();
    let midnight = (u64::from(DAY) + 1) * 86_400_000;
    let start = midnight - 10 * 60_000;
    insert(&db, &[at(event("video_start", start, "s7", Some("u7")), 0.0)]).await;
    let first = facts_pass(&db, None, 1).await;
    // The next row must be inserted in a later second than the pass covers.
    after_pass(&db, first.covered_until).await;
    // Twenty minutes in, after midnight: the pass's touched key has rows on
    // two days, and its scan must begin on the first (the start's).
    insert(&db, &[at(event("video_progress", midnight + 10 * 60_000, "s7", Some("u7")), 600.0)]).await;
    facts_pass(&db, Some(first.covered_until), 2).await;
    let hour = (start / 3_600_000) as u32;
    let rebuilt: VideoSummaryRow =
        one(&db, &read::video_summary("v1", &Split { raw: vec![hour], ..Split::default() }, None)).await;
    assert_eq!((rebuilt.views, rebuilt.watch_time_seconds), (1, 600.0));
    let stored = StoredFacts::settled(server_now(&db).await, u64::from(HOUR) * 3_600_000);
    let split = Split { raw: vec![hour], facts: Some(stored), ..Split::default() };
    assert_eq!(one::<VideoSummaryRow>(&db, &read::video_summary("v1", &split, None)).await, rebuilt);
    db.drop().await.unwrap();
}
