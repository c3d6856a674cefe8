//! The oracle on hand-made sessions whose answers are worked out by hand, and
//! the generator's determinism, validity and coverage.

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::*;
use crate::generate::{self, EventIds};
use crate::metrics::{DurationSource, epoch_day, nearest_rank};

/// 2025-11-24T16:10:00Z
const T: i64 = 1_764_000_600_000;

fn day() -> Days {
    Days::day(NaiveDate::from_ymd_opt(2025, 11, 24).unwrap())
}

struct Script {
    ids: EventIds,
    events: Vec<Value>,
}

impl Script {
    fn new() -> Self {
        Self { ids: EventIds::new(42), events: Vec::new() }
    }

    fn add(&mut self, event_type: &str, at_ms: i64, session: &str, user: Option<&str>, props: Value) -> Value {
        let event = generate::event(self.ids.next_id(), event_type, user, session, "v1", at_ms, props);
        self.events.push(event.clone());
        event
    }
}

/// The scenario of crates/metrics-sql/tests/sql.rs, as ingest JSON: s1 (u1)
/// watches 61 s through a seek, a stall and a pause and completes, startup
/// 1500 ms from its first heartbeat; s2 (anonymous) exits before start; s3
/// (u1 again, an hour later) reports startup 800 ms, watches 5 s and fails.
fn scenario() -> Vec<Value> {
    let mut s = Script::new();
    let u1 = Some("u1");
    s.add(
        "video_start",
        T,
        "s1",
        u1,
        json!({"position_seconds": 0.0, "duration_seconds": 100.0, "quality": "720p", "device_type": "tv"}),
    );
    let progress = s.add("video_progress", T + 1_500, "s1", u1, json!({"position_seconds": 0.5}));
    s.events.push(progress); // a redelivered copy: same event_id
    s.add("video_progress", T + 11_500, "s1", u1, json!({"position_seconds": 10.5}));
    s.add("seek", T + 12_000, "s1", u1, json!({"seek_from_seconds": 11.0, "seek_to_seconds": 50.0}));
    s.add("video_buffer", T + 12_500, "s1", u1, json!({"position_seconds": 50.0, "buffer_duration_ms": 700}));
    s.add("video_pause", T + 20_000, "s1", u1, json!({"position_seconds": 57.0}));
    s.add("video_resume", T + 80_000, "s1", u1, json!({"position_seconds": 57.0}));
    s.add("quality_change", T + 81_000, "s1", u1, json!({"position_seconds": 58.0, "to_quality": "1080p"}));
    s.add("video_complete", T + 130_000, "s1", u1, json!({"position_seconds": 100.0}));
    s.add("video_start", T + 5_000, "s2", None, json!({"position_seconds": 0.0}));
    s.add("video_pause", T + 6_000, "s2", None, json!({}));
    let s3 = T + 3_600_000;
    s.add(
        "video_start",
        s3,
        "s3",
        u1,
        json!({"position_seconds": 0.0, "startup_time_ms": 800, "device_type": "mobile"}),
    );
    s.add("video_progress", s3 + 5_000, "s3", u1, json!({"position_seconds": 5.0}));
    s.add("video_error", s3 + 6_000, "s3", u1, json!({}));
    s.events
}

fn catalog(entries: &[(&str, Option<f64>, Option<&str>)]) -> Catalog {
    entries
        .iter()
        .map(|(id, duration, category)| {
            let entry = CatalogEntry {
                title: format!("title of {id}"),
                duration_seconds: *duration,
                category: category.map(str::to_owned),
            };
            (id.to_string(), entry)
        })
        .collect()
}

fn view<'a>(oracle: &'a Oracle, session: &str) -> &'a View {
    oracle.views.iter().find(|v| v.session_id == session).unwrap()
}

fn assert_close(got: f64, expected: f64) {
    assert!(compare::close(got, expected), "got {got}, expected {expected}");
}

#[test]
fn the_documented_scenario_view_by_view() {
    let oracle = Oracle::new(&scenario(), Catalog::new()).unwrap();
    assert_eq!(oracle.views.len(), 3);
    assert_eq!(oracle.distinct_event_ids(), 14);

    let s1 = view(&oracle, "s1");
    // 0.5 + 10 + 0.5 (to the seek's from) + 0 (from the seek's to) + 7 + 0 (paused) + 1 + 42
    assert_close(s1.watch_seconds, 61.0);
    assert!(s1.completed && !s1.failed && !s1.exited_before_start);
    assert_eq!((s1.startup_ms, s1.buffer_ms, s1.duration), (Some(1_500), 700, Some(100.0)));
    assert_eq!((s1.quality.as_deref(), s1.device_type.as_deref()), (Some("1080p"), Some("tv")));
    assert_eq!((s1.viewer.clone(), s1.hour_of_day()), (Viewer::User("u1".into()), 16));

    let s2 = view(&oracle, "s2");
    assert_eq!(s2.watch_seconds, 0.0);
    assert!(s2.exited_before_start && !s2.completed && !s2.failed);
    assert_eq!((s2.startup_ms, s2.viewer.clone()), (None, Viewer::Session("s2".into())));

    let s3 = view(&oracle, "s3");
    assert_close(s3.watch_seconds, 5.0);
    assert!(s3.failed && !s3.exited_before_start, "a fatal error before any heartbeat is a failure, not an exit");
    assert_eq!((s3.startup_ms, s3.quality.clone(), s3.hour()), (Some(800), None, s1.hour() + 1));
}

#[test]
fn the_documented_scenario_video_summary() {
    let oracle = Oracle::new(&scenario(), Catalog::new()).unwrap();
    let got = oracle.video("v1", day());
    assert_eq!((got.views, got.unique_viewers), (3, 2));
    assert_close(got.watch_time_seconds, 66.0);
    assert_eq!((got.startup_median_ms, got.startup_p95_ms), (Some(800), Some(1_500)));
    assert_close(got.completion_rate, 1.0 / 3.0);
    assert_close(got.playback_failure_percentage, 100.0 / 3.0);
    assert_close(got.exits_before_video_start_percentage, 100.0 / 3.0);
    assert_close(got.rebuffer_percentage, 700.0 / 66_000.0 * 100.0);
    // Duration from the events (100 s): (61 + 0 + 5) / 3.
    assert_eq!((got.duration_seconds, got.duration_source), (Some(100.0), Some(DurationSource::Events)));
    assert_close(got.avg_watch_percentage, 22.0);
    // 10 × (0.4 × 0.22 + 0.3 × 1/3 + 0.2 × (1 − 0.10606…) + 0.1 × 1/3) = 4.00121…
    assert_close(got.engagement_score_exact, 4.001_212_121_212_121);
    assert_eq!(got.engagement_score, 4.0);

    // A catalog duration of 50 s wins and caps s1 at 100 %: (100 + 0 + 10) / 3.
    let with_catalog = Oracle::new(&scenario(), catalog(&[("v1", Some(50.0), Some("tutorial"))])).unwrap();
    let got = with_catalog.video("v1", day());
    assert_eq!((got.duration_seconds, got.duration_source), (Some(50.0), Some(DurationSource::Catalog)));
    assert_close(got.avg_watch_percentage, 110.0 / 3.0);

    // A catalog entry without a duration falls back to the events.
    let untimed = Oracle::new(&scenario(), catalog(&[("v1", None, None)])).unwrap();
    assert_eq!(untimed.video("v1", day()).duration_source, Some(DurationSource::Events));

    // Another day: nothing, every ratio 0, no startup, no duration from events.
    let next = Days::day(NaiveDate::from_ymd_opt(2025, 11, 25).unwrap());
    let empty = oracle.video("v1", next);
    assert_eq!((empty.views, empty.unique_viewers, empty.startup_median_ms), (0, 0, None));
    assert_eq!((empty.watch_time_seconds, empty.completion_rate, empty.engagement_score), (0.0, 0.0, 0.0));
    assert_eq!((empty.duration_seconds, empty.duration_source), (None, None));
    assert_eq!(
        empty.to_json(),
        json!({
            "video_id": "v1", "start_date": "2025-11-25", "end_date": "2025-11-25", "views": 0,
            "unique_viewers": 0, "watch_time_seconds": 0.0, "avg_watch_percentage": 0.0, "completion_rate": 0.0,
            "engagement_score": 0.0, "startup_time_ms": {"median": null, "p95": null}, "rebuffer_percentage": 0.0,
            "playback_failure_percentage": 0.0, "exits_before_video_start_percentage": 0.0,
            "duration_seconds": null, "duration_source": null,
        })
    );
}

#[test]
fn the_documented_scenario_user_and_top() {
    let oracle = Oracle::new(&scenario(), catalog(&[("v1", Some(50.0), Some("tutorial"))])).unwrap();
    let u1 = oracle.user("u1", day());
    assert_eq!((u1.sessions, u1.views), (2, 2));
    assert_close(u1.watch_time_seconds, 66.0);
    assert_close(u1.completion_rate, 0.5);
    assert_eq!(u1.quality.as_deref(), Some("1080p"), "s3 names no rendition");
    assert_eq!(u1.device_type.as_deref(), Some("tv"), "61 s on tv, 5 s on mobile");
    assert_eq!(u1.category.as_deref(), Some("tutorial"));
    assert_eq!(u1.hour_of_day, Some(16));
    assert_eq!(oracle.user_ids(), vec!["u1"]);
    let nobody = oracle.user("s2", day());
    assert_eq!((nobody.views, nobody.quality, nobody.hour_of_day), (0, None, None), "anonymous views have no user");

    let top = oracle.top(TopMetric::WatchTime, day(), 10);
    assert_eq!(top.videos.len(), 1);
    assert_eq!((top.videos[0].video_id.as_str(), top.videos[0].views), ("v1", 3));
    assert_eq!(top.to_json()["metric"], "watch_time");
    assert!(top.check(&top.to_json()).is_empty());
}

#[test]
fn watch_time_pairs_follow_the_rules() {
    let mut s = Script::new();
    let u = Some("u");
    let p = |x: f64| json!({"position_seconds": x});
    s.add("video_start", T, "a", u, p(0.0));
    s.add("video_progress", T + 10_000, "a", u, p(10.0)); // +10
    s.add("video_progress", T + 12_000, "a", u, p(30.0)); // +20 capped at 2 × 2 s = 4
    s.add("video_progress", T + 20_000, "a", u, p(25.0)); // backwards: 0
    s.add("video_pause", T + 21_000, "a", u, json!({})); // no playhead: skipped
    s.add("video_progress", T + 31_000, "a", u, p(35.0)); // +10 (the pause without playhead does not stop)
    s.add("video_pause", T + 32_000, "a", u, p(36.0)); // +1
    s.add("video_resume", T + 90_000, "a", u, p(36.0)); // paused: 0
    s.add("video_error", T + 95_000, "a", u, json!({"position_seconds": 41.0, "fatal": false})); // +5
    s.add(
        "seek",
        T + 96_000,
        "a",
        u,
        json!({"position_seconds": 99.0, "seek_from_seconds": 42.0, "seek_to_seconds": 70.0}),
    ); // +1
    s.add("video_progress", T + 106_000, "a", u, p(80.0)); // +10 from the seek's to
    s.add(
        "seek",
        T + 107_000,
        "a",
        u,
        json!({"position_seconds": 81.0, "seek_from_seconds": 81.0, "seek_to_seconds": 60.0}),
    ); // +1
    s.add("video_buffer", T + 117_000, "a", u, json!({"position_seconds": 60.0, "buffer_duration_ms": 10_000})); // 0
    s.add("video_error", T + 120_000, "a", u, p(63.0)); // +3, fatal by default
    s.add("video_progress", T + 150_000, "a", u, p(90.0)); // after a fatal error: 0
    s.add("video_progress", T + 160_000, "a", u, p(100.0)); // +10
    s.add("video_complete", T + 161_000, "a", u, p(100.0)); // 0
    s.add("video_progress", T + 171_000, "a", u, p(110.0)); // after complete: 0
    let oracle = Oracle::new(&s.events, Catalog::new()).unwrap();
    let a = view(&oracle, "a");
    assert_close(a.watch_seconds, 10.0 + 4.0 + 10.0 + 1.0 + 5.0 + 1.0 + 10.0 + 1.0 + 3.0 + 10.0);
    assert!(a.completed && a.failed && !a.exited_before_start);
    assert_eq!(a.buffer_ms, 10_000);
    assert_eq!(a.startup_ms, Some(10_000), "derived from the first heartbeat");
}

#[test]
fn the_span_the_earliest_start_and_the_order() {
    let mut s = Script::new();
    let u = Some("u");
    let p = |x: f64| json!({"position_seconds": x});
    let span = views::SPAN_MS;
    s.add("video_progress", T - 1, "a", u, json!({"position_seconds": 0.0, "startup_time_ms": 5, "quality": "240p"}));
    s.add("video_start", T + 60_000, "a", u, json!({"position_seconds": 0.0, "quality": "480p"})); // a restart
    s.add("video_start", T, "a", u, p(0.0));
    s.add("video_progress", T + 10_000, "a", u, p(10.0));
    s.add("video_progress", T + span, "a", u, p(40.0)); // exactly 24 h later: inside, +30
    s.add("video_progress", T + span + 1, "a", u, p(70.0)); // outside
    s.add("video_complete", T + span + 1, "a", u, p(70.0)); // outside
    // Equal times: the event ids (creation order here) decide, so 720p is the later one.
    s.add("quality_change", T + 20_000, "a", u, json!({"position_seconds": 20.0, "to_quality": "1080p"}));
    s.add("quality_change", T + 20_000, "a", u, json!({"position_seconds": 20.0, "to_quality": "720p"}));
    let oracle = Oracle::new(&s.events, Catalog::new()).unwrap();
    let a = view(&oracle, "a");
    assert_eq!(a.start_ms, T);
    assert_eq!(a.events.len(), 6, "the progress before the start and the two events after the span are left out");
    // 0→10, 10→20, 20→20, 20→0 (the restart), 0→40 (capped by 24 h of wall clock? no: 40 s) = 10 + 10 + 0 + 0 + 40.
    assert_close(a.watch_seconds, 60.0);
    assert!(!a.completed);
    assert_eq!(a.startup_ms, Some(10_000), "the report before the start is not part of the view");
    assert_eq!(a.quality.as_deref(), Some("480p"), "the restart at 60 s is the last event naming one");
    let shuffled: Vec<Value> = s.events.iter().rev().cloned().collect();
    assert_eq!(Oracle::new(&shuffled, Catalog::new()).unwrap().views, oracle.views, "arrival order is irrelevant");

    // Without the restart, the later of the two equal-time switches wins.
    let without_restart: Vec<Value> =
        s.events.iter().filter(|e| e["timestamp"] != json!(T + 60_000)).cloned().collect();
    let a = Oracle::new(&without_restart, Catalog::new()).unwrap().views.remove(0);
    assert_eq!(a.quality.as_deref(), Some("720p"));
    // 10 + 10 + 0 + 20 (20→40 over 24 h)
    assert_close(a.watch_seconds, 40.0);

    // A key without a video_start is no view.
    let mut orphan = Script::new();
    orphan.add("video_progress", T, "b", u, p(1.0));
    orphan.add("video_complete", T + 1_000, "b", u, p(2.0));
    assert!(Oracle::new(&orphan.events, Catalog::new()).unwrap().views.is_empty());
}

#[test]
fn viewers_are_users_or_sessions_kept_apart() {
    let mut s = Script::new();
    s.add("video_start", T, "x", None, json!({}));
    s.add("video_progress", T + 1_000, "x", Some("late-login"), json!({"position_seconds": 1.0}));
    s.add("video_start", T, "y", None, json!({}));
    s.add("video_start", T, "z", Some("y"), json!({})); // user "y" is not session "y"
    s.add("video_start", T + 5, "w", Some("y"), json!({}));
    let oracle = Oracle::new(&s.events, Catalog::new()).unwrap();
    assert_eq!(view(&oracle, "x").viewer, Viewer::User("late-login".into()), "the first non-null user_id");
    let summary = oracle.video("v1", day());
    assert_eq!((summary.views, summary.unique_viewers), (4, 3));
    let user = oracle.user("y", day());
    assert_eq!((user.sessions, user.views), (2, 2));
}

#[test]
fn percentiles_are_nearest_rank() {
    assert_eq!(nearest_rank(&[], 50), None);
    assert_eq!(nearest_rank(&[7], 50), Some(7));
    assert_eq!(nearest_rank(&[7], 95), Some(7));
    assert_eq!(nearest_rank(&[1, 2], 50), Some(1));
    assert_eq!(nearest_rank(&[1, 2], 95), Some(2));
    let twenty: Vec<u64> = (1..=20).collect();
    assert_eq!((nearest_rank(&twenty, 50), nearest_rank(&twenty, 95)), (Some(10), Some(19)));
    let hundred_one: Vec<u64> = (1..=101).collect();
    assert_eq!((nearest_rank(&hundred_one, 50), nearest_rank(&hundred_one, 95)), (Some(51), Some(96)));
}

#[test]
fn preferences_take_the_most_watched_and_break_ties_low() {
    let mut s = Script::new();
    let u = Some("u");
    // Views at 09:xx and 10:xx UTC with 10 s each: the hour tie goes to 9 (numerically, not "10" < "9").
    let nine = 1_764_061_200_000; // 2025-11-25T09:00:00Z
    for (session, at, quality, device, video) in
        [("a", nine, "720p", "tv", "v1"), ("b", nine + 3_600_000, "480p", "mobile", "v2")]
    {
        let props = json!({"position_seconds": 0.0, "quality": quality, "device_type": device});
        let start = generate::event(s.ids.next_id(), "video_start", u, session, video, at, props);
        let progress = generate::event(
            s.ids.next_id(),
            "video_progress",
            u,
            session,
            video,
            at + 10_000,
            json!({"position_seconds": 10.0}),
        );
        s.events.extend([start, progress]);
    }
    let days = Days::day(NaiveDate::from_ymd_opt(2025, 11, 25).unwrap());
    let catalog = catalog(&[("v1", None, Some("news")), ("v2", None, Some("drama"))]);
    let oracle = Oracle::new(&s.events, catalog.clone()).unwrap();
    let user = oracle.user("u", days);
    assert_eq!(user.hour_of_day, Some(9));
    assert_eq!(user.quality.as_deref(), Some("480p"));
    assert_eq!(user.device_type.as_deref(), Some("mobile"));
    assert_eq!(user.category.as_deref(), Some("drama"));
    // A video outside the catalog gives no category.
    let partial = Oracle::new(&s.events, self::catalog(&[("v1", None, None)])).unwrap();
    assert_eq!(partial.user("u", days).category, None);
    // More watching on v1 tips every preference its way.
    let more = generate::event(
        s.ids.next_id(),
        "video_progress",
        u,
        "a",
        "v1",
        nine + 20_000,
        json!({"position_seconds": 20.0}),
    );
    let tipped = oracle.with_events(&[more]).unwrap().user("u", days);
    assert_eq!(
        (tipped.hour_of_day, tipped.quality.as_deref(), tipped.device_type.as_deref(), tipped.category.as_deref()),
        (Some(9), Some("720p"), Some("tv"), Some("news"))
    );
}

#[test]
fn top_lists_rank_and_break_ties() {
    let mut s = Script::new();
    let mut add_view = |video: &str, session: &str, watched: f64, complete: bool| {
        let start =
            generate::event(s.ids.next_id(), "video_start", None, session, video, T, json!({"position_seconds": 0.0}));
        let progress = generate::event(
            s.ids.next_id(),
            "video_progress",
            None,
            session,
            video,
            T + 100_000,
            json!({"position_seconds": watched}),
        );
        s.events.extend([start, progress]);
        if complete {
            let done = generate::event(s.ids.next_id(), "video_complete", None, session, video, T + 100_001, json!({}));
            s.events.push(done);
        }
    };
    // vb: 2 views, 1 complete, 30 s; va: 2 views, 1 complete, 30 s; vc: 1 view, complete, 50 s; vd: 3 views, 0 s.
    add_view("vb", "1", 10.0, true);
    add_view("vb", "2", 20.0, false);
    add_view("va", "3", 15.0, false);
    add_view("va", "4", 15.0, true);
    add_view("vc", "5", 50.0, true);
    for session in ["6", "7", "8"] {
        add_view("vd", session, 0.0, false);
    }
    let oracle = Oracle::new(&s.events, Catalog::new()).unwrap();
    let ids = |metric, limit| -> Vec<String> {
        oracle.top(metric, day(), limit).videos.into_iter().map(|v| v.video_id).collect()
    };
    assert_eq!(ids(TopMetric::Views, 10), ["vd", "va", "vb", "vc"]);
    assert_eq!(ids(TopMetric::WatchTime, 10), ["vc", "va", "vb", "vd"]);
    assert_eq!(ids(TopMetric::CompletionRate, 10), ["vc", "va", "vb", "vd"]);
    assert_eq!(ids(TopMetric::CompletionRate, 2), ["vc", "va"]);
    let top = oracle.top(TopMetric::Views, day(), 1);
    assert_eq!(
        top.to_json(),
        json!({"metric": "views", "start_date": "2025-11-24", "end_date": "2025-11-24", "limit": 1,
               "videos": [{"video_id": "vd", "views": 3, "watch_time_seconds": 0.0, "completion_rate": 0.0}]})
    );
}

#[test]
fn days_are_utc_and_inclusive() {
    let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
    assert_eq!(epoch_day(d(1970, 1, 2)), 1);
    assert_eq!(metrics::date_of_ms(T), d(2025, 11, 24));
    assert_eq!(Days::new(d(2025, 11, 1), d(2025, 11, 24)).query(), "startDate=2025-11-01&endDate=2025-11-24");
    let mut s = Script::new();
    let midnight = 1_764_028_800_000; // 2025-11-25T00:00:00Z
    s.add("video_start", midnight - 1, "late", None, json!({}));
    s.add("video_start", midnight, "early", None, json!({}));
    let oracle = Oracle::new(&s.events, Catalog::new()).unwrap();
    assert_eq!(oracle.video("v1", Days::day(d(2025, 11, 24))).views, 1);
    assert_eq!(oracle.video("v1", Days::day(d(2025, 11, 25))).views, 1);
    assert_eq!(oracle.video("v1", Days::new(d(2025, 11, 24), d(2025, 11, 25))).views, 2);
}

#[test]
fn engagement_check_tolerates_only_rounding_at_a_boundary() {
    let oracle = Oracle::new(&scenario(), Catalog::new()).unwrap();
    let mut expected = oracle.video("v1", day());
    let mut got = expected.to_json();
    got["freshness"] = json!({"aggregated_hours": 1, "raw_hours": 23});
    assert!(expected.check(&got).is_empty(), "extra fields are not compared");
    got["engagement_score"] = json!(4.01);
    assert_eq!(expected.check(&got), ["$.engagement_score: expected 4.0, got 4.01"]);
    expected.engagement_score_exact = 4.005;
    expected.engagement_score = 4.01;
    got["engagement_score"] = json!(4.0);
    assert!(expected.check(&got).is_empty(), "4.005 may round either way");
}

fn config(seed: u64, sessions: usize) -> generate::Config {
    let mut rng = rng::Rng::new(seed);
    generate::Config {
        seed,
        end_ms: T,
        days: 4,
        sessions,
        users: sessions / 8 + 1,
        videos: generate::videos(12, &mut rng),
        prefix: "g-".into(),
    }
}

#[test]
fn the_generator_is_deterministic() {
    let a = generate::generate(&config(11, 50));
    let b = generate::generate(&config(11, 50));
    assert_eq!(a.events, b.events);
    assert_ne!(a.events, generate::generate(&config(12, 50)).events);
}

#[test]
fn generated_events_are_valid_ingest_events_before_the_end() {
    let generated = generate::generate(&config(5, 400));
    let received_at = chrono::DateTime::from_timestamp_millis(T).unwrap();
    let mut ids = std::collections::HashSet::new();
    for value in &generated.events {
        if let Err(errors) = events_model::Event::from_value(value.clone(), received_at) {
            panic!("{value} is rejected: {errors:?}");
        }
        assert!(value["timestamp"].as_i64().unwrap() <= T);
        assert!(ids.insert(value["event_id"].as_str().unwrap().to_owned()), "duplicate id in {value}");
    }
}

#[test]
fn the_generator_covers_every_feature() {
    let generated = generate::generate(&config(2024, 400));
    eprintln!("{:?}", generated.features);
    let missing: Vec<&str> = generated.features.iter().filter(|(_, n)| **n == 0).map(|(f, _)| *f).collect();
    assert!(missing.is_empty(), "not covered: {missing:?}\n{:?}", generated.features);
    let oracle = Oracle::new(&generated.events, Catalog::new()).unwrap();
    assert!(oracle.views.len() >= 400, "{} views", oracle.views.len());
    let days: std::collections::BTreeSet<i64> = oracle.views.iter().map(View::day).collect();
    assert!(days.len() >= 4, "views on {} days", days.len());
    assert!(oracle.views.iter().any(|v| v.hour() == T.div_euclid(views::HOUR_MS)), "no view in the last hour");
    for flag in [|v: &View| v.completed, |v: &View| v.failed, |v: &View| v.exited_before_start] {
        let n = oracle.views.iter().filter(|v| flag(v)).count();
        assert!(n > 20, "only {n} views of a kind");
    }
    assert!(oracle.views.iter().filter(|v| v.startup_ms.is_none()).count() > 5);
}

#[test]
fn a_late_progress_adds_four_seconds_to_an_abandoned_view() {
    let generated = generate::generate(&config(9, 100));
    let oracle = Oracle::new(&generated.events, Catalog::new()).unwrap();
    let mut ids = generated.ids.clone();
    let (abandoned, late) = oracle
        .views
        .iter()
        .filter(|v| {
            !v.completed
                && !v.failed
                && !v.exited_before_start
                && v.events.last().unwrap().position.is_some()
                && v.events.last().unwrap().event_type == "video_progress"
        })
        .find_map(|v| Some((v, generate::late_progress(v, &mut ids)?)))
        .unwrap();
    assert_eq!(oracle.view_of(&late).map(|v| v.start_ms), Some(abandoned.start_ms));
    let after = oracle.with_events(&[late]).unwrap();
    let changed = after.views.iter().find(|v| v.session_id == abandoned.session_id && v.video_id == abandoned.video_id);
    assert_close(changed.unwrap().watch_seconds, abandoned.watch_seconds + 4.0);
    let changed_views = after.views.iter().zip(&oracle.views).filter(|(a, b)| a != b).count();
    assert_eq!(changed_views, 1);
}

#[test]
fn a_start_more_than_a_day_after_the_previous_one_opens_a_second_view() {
    let mut s = Script::new();
    let p = |x: f64| json!({"position_seconds": x});
    s.add("video_start", T, "a", None, p(0.0));
    s.add("video_progress", T + 10_000, "a", None, p(10.0));
    s.add("video_start", T + views::SPAN_MS + 60_000, "a", None, p(0.0));
    s.add("video_progress", T + views::SPAN_MS + 70_000, "a", None, p(10.0));
    let oracle = Oracle::new(&s.events, Catalog::new()).unwrap();
    assert_eq!(oracle.views.len(), 2);
    assert_eq!((oracle.views[0].start_ms, oracle.views[0].events.len()), (T, 2));
    assert_eq!(oracle.views[1].start_ms, T + views::SPAN_MS + 60_000);
    assert_close(oracle.views[0].watch_seconds, 10.0);
    let next_day = Days::day(NaiveDate::from_ymd_opt(2025, 11, 25).unwrap());
    assert_eq!(oracle.video("v1", next_day).views, 1, "the later start opens a view on its own day");
}

#[test]
fn a_chain_of_starts_each_within_a_day_of_the_last_is_one_view() {
    let mut s = Script::new();
    let p = |x: f64| json!({"position_seconds": x});
    s.add("video_start", T, "a", None, p(0.0));
    s.add("video_start", T + 20 * views::HOUR_MS, "a", None, p(0.0));
    s.add("video_start", T + 40 * views::HOUR_MS, "a", None, p(0.0));
    let oracle = Oracle::new(&s.events, Catalog::new()).unwrap();
    assert_eq!(oracle.views.len(), 1);
    assert_eq!(oracle.views[0].events.len(), 2, "the start at 40 h is past the view's day");
}
