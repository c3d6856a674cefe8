//! The simulation as a whole, on a virtual clock: validity of every event,
//! session invariants, rate control and determinism.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::DateTime;
use events_model::{Event, EventType};

use super::*;

const START_MS: i64 = 1_750_000_000_000;

/// Polls a fresh simulator every `step_ms` for `seconds`, collecting every event.
fn simulate(config: SimConfig, seconds: i64, step_ms: i64) -> (Vec<GeneratedEvent>, Simulator) {
    let mut sim = Simulator::new(config, START_MS);
    let mut events = Vec::new();
    let mut now = START_MS;
    while now < START_MS + seconds * 1000 {
        now += step_ms;
        sim.poll(now, usize::MAX, &mut events);
    }
    (events, sim)
}

fn config(rate: f64, seed: u64) -> SimConfig {
    SimConfig { seed, salt: 99, rate, ..SimConfig::default() }
}

/// A long run at a modest rate, shared by several tests.
fn long_run() -> &'static (Vec<GeneratedEvent>, Vec<Event>) {
    static RUN: std::sync::OnceLock<(Vec<GeneratedEvent>, Vec<Event>)> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let (generated, _) = simulate(config(150.0, 7), 20 * 60, 250);
        let parsed = generated
            .iter()
            .map(|g| {
                let received_at = DateTime::from_timestamp_millis(g.timestamp_ms).unwrap();
                Event::from_value(g.to_value(), received_at)
                    .unwrap_or_else(|err| panic!("invalid event {}: {err:?}", String::from_utf8_lossy(&g.to_json())))
            })
            .collect();
        (generated, parsed)
    })
}

#[test]
fn every_generated_event_passes_validation_and_every_type_occurs() {
    let (generated, parsed) = long_run();
    assert!(generated.len() > 100_000, "{}", generated.len());
    let mut by_type: BTreeMap<EventType, usize> = BTreeMap::new();
    for (g, e) in generated.iter().zip(parsed) {
        *by_type.entry(e.event_type).or_default() += 1;
        assert_eq!(e.event_id, g.event_id);
        assert_eq!(e.timestamp.timestamp_millis(), g.timestamp_ms);
        assert_eq!(e.session_id, g.session_id());
        // Also as raw bytes, the way the gateway's single-event endpoint reads them.
        if g.event_id.as_bytes()[0] < 8 {
            let received_at = DateTime::from_timestamp_millis(g.timestamp_ms + 5).unwrap();
            let mut from_bytes = Event::parse_json(&g.to_json(), received_at).unwrap();
            from_bytes.received_at = e.received_at;
            assert_eq!(&from_bytes, e);
        }
    }
    for t in EventType::ALL {
        assert!(by_type.get(&t).copied().unwrap_or(0) > 0, "no {t} in {by_type:?}");
    }
    let progress = by_type[&EventType::VideoProgress] as f64 / generated.len() as f64;
    assert!(progress > 0.7, "heartbeats should dominate: {by_type:?}");
}

#[test]
fn event_ids_are_unique() {
    let (generated, _) = long_run();
    let ids: HashSet<_> = generated.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), generated.len());
}

/// Every invariant of one session's event sequence.
fn check_session(events: &[&Event]) {
    let session = &events[0].session_id;
    assert_eq!(events[0].event_type, EventType::VideoStart, "{session} does not open with video_start");
    let mut previous: Option<&Event> = None;
    let mut seen_videos = HashSet::new();
    let mut playing = false;
    let mut paused = false;
    let mut ended = false;
    let mut quality: Option<String> = None;
    for e in events {
        let p = &e.properties;
        let position = p.position_seconds.expect("every event has a position");
        let duration = p.duration_seconds.expect("every event has a duration");
        assert!((0.0..=duration).contains(&position), "{session}: position {position} outside 0..={duration}");
        assert_eq!(e.user_id, events[0].user_id, "{session}: one user per session");
        assert_eq!(p.device_type, events[0].properties.device_type);
        if let Some(prev) = previous {
            assert!(e.timestamp > prev.timestamp, "{session}: timestamps must increase");
        }
        if e.event_type == EventType::VideoStart {
            assert!(previous.is_none() || ended, "{session}: a new view before the previous one ended");
            assert!(seen_videos.insert(e.video_id.clone()), "{session}: the same video twice in one session");
            assert_eq!(position, 0.0);
            if let Some(startup) = p.startup_time_ms {
                assert!((300..=3000).contains(&startup), "startup {startup}");
            }
            (playing, paused, ended) = (false, false, false);
            quality = p.quality.clone();
        } else {
            let prev = previous.expect("not first");
            assert!(!ended, "{session}: {} after the view ended", e.event_type);
            assert_eq!(e.video_id, prev.video_id, "{session}: video changed without video_start");
            let wall = (e.timestamp - prev.timestamp).num_milliseconds() as f64 / 1000.0;
            let prev_position = prev.properties.seek_to_seconds.unwrap_or(prev.properties.position_seconds.unwrap());
            let advance = position - prev_position;
            if e.event_type == EventType::Seek {
                assert_eq!(p.seek_to_seconds, Some(position));
                let from = p.seek_from_seconds.unwrap();
                assert!(from - prev_position >= 0.0 && from - prev_position <= wall + 1e-6, "{session}: seek from");
            } else {
                assert!(advance >= -1e-9, "{session}: playhead went back without a seek ({advance})");
                assert!(advance <= wall + 1e-6, "{session}: played {advance}s in {wall}s of wall time");
            }
            if paused {
                assert_eq!(e.event_type, EventType::VideoResume, "{session}: {} while paused", e.event_type);
            }
            if matches!(e.event_type, EventType::VideoBuffer | EventType::Seek | EventType::QualityChange) {
                assert!(playing, "{session}: {} before the first frame", e.event_type);
            }
            if e.event_type == EventType::VideoProgress && prev.event_type == EventType::VideoProgress {
                assert!(advance <= crate::HEARTBEAT_SECONDS + 1e-6, "{session}: heartbeat gap {advance}");
            }
            if e.event_type == EventType::VideoBuffer {
                let stall = f64::from(p.buffer_duration_ms.unwrap()) / 1000.0;
                assert!(advance <= wall - stall + 1e-6, "{session}: a stall plays nothing");
            }
            if e.event_type == EventType::QualityChange {
                assert_eq!(p.from_quality, quality, "{session}: from_quality is the current rendition");
                assert_ne!(p.from_quality, p.to_quality);
                quality = p.to_quality.clone();
            }
            if e.event_type == EventType::VideoComplete {
                assert_eq!(position, duration);
            }
        }
        if let Some(q) = &p.quality {
            assert_eq!(Some(q), quality.as_ref(), "{session}: quality changed without quality_change");
        }
        match e.event_type {
            EventType::VideoProgress => playing = true,
            EventType::VideoPause => paused = true,
            EventType::VideoResume => paused = false,
            EventType::VideoComplete => ended = true,
            EventType::VideoError if e.is_fatal_error() => ended = true,
            _ => {}
        }
        if e.event_type == EventType::VideoError && !e.is_fatal_error() {
            assert_eq!(p.fatal, Some(false));
        }
        if e.is_fatal_error() {
            assert!(std::ptr::eq(*e, *events.last().unwrap()), "{session}: events after a fatal error");
        }
        previous = Some(e);
    }
}

#[test]
fn sessions_follow_the_player_state_machine() {
    let (_, parsed) = long_run();
    let mut sessions: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in parsed {
        sessions.entry(&e.session_id).or_default().push(e);
    }
    assert!(sessions.len() > 1000, "{}", sessions.len());
    for events in sessions.values() {
        check_session(events);
    }
}

#[test]
fn the_audience_looks_like_the_brief() {
    let (generated, parsed) = long_run();
    let mut views: HashMap<(&str, &str), Vec<&Event>> = HashMap::new();
    for e in parsed {
        views.entry((&e.session_id, &e.video_id)).or_default().push(e);
    }
    let count = views.len() as f64;
    let share = |f: &dyn Fn(&[&Event]) -> bool| views.values().filter(|v| f(v)).count() as f64 / count;

    let exits = share(&|v| !v.iter().any(|e| e.event_type == EventType::VideoProgress || e.is_fatal_error()));
    let failures = share(&|v| v.iter().any(|e| e.is_fatal_error()));
    let completed = share(&|v| v.iter().any(|e| e.event_type == EventType::VideoComplete));
    let without_startup = share(&|v| v[0].properties.startup_time_ms.is_none());
    let anonymous = share(&|v| v[0].user_id.is_none());
    // The run is cut after 20 minutes, so long views are still running.
    assert!((0.02..0.12).contains(&exits), "exits before start {exits}");
    assert!((0.005..0.05).contains(&failures), "playback failures {failures}");
    assert!((0.15..0.6).contains(&completed), "completions {completed}");
    assert!((0.15..0.3).contains(&without_startup), "no startup_time_ms {without_startup}");
    assert!((0.15..0.25).contains(&anonymous), "anonymous {anonymous}");

    // Zipf-like popularity: the top video has far more views than the 50th.
    let mut per_video: HashMap<&str, usize> = HashMap::new();
    for (_, video) in views.keys() {
        *per_video.entry(video).or_default() += 1;
    }
    assert!(per_video["video_0001"] > 10 * per_video.get("video_0050").copied().unwrap_or(0).max(1) / 2);
    assert!(per_video["video_0001"] >= per_video.values().copied().max().unwrap() / 2);

    let countries: HashSet<_> = generated.iter().map(|e| e.properties.country).collect();
    let devices: HashSet<_> = generated.iter().map(|e| e.properties.device_type).collect();
    assert!(countries.len() > 10 && devices.len() == 4, "{countries:?} {devices:?}");
}

#[test]
fn the_same_seed_and_poll_times_give_the_same_events() {
    let (a, _) = simulate(config(200.0, 3), 90, 37);
    let (b, _) = simulate(config(200.0, 3), 90, 37);
    assert_eq!(a, b);

    // Another salt: the same behaviour with other ids.
    let (c, _) = simulate(SimConfig { salt: 100, ..config(200.0, 3) }, 90, 37);
    assert_eq!(a.len(), c.len());
    for (x, y) in a.iter().zip(&c) {
        assert_ne!(x.event_id, y.event_id);
        assert_ne!(x.session, y.session);
        assert_eq!((x.event_type, x.timestamp_ms, &x.properties), (y.event_type, y.timestamp_ms, &y.properties));
    }

    let (d, _) = simulate(config(200.0, 4), 90, 37);
    assert_ne!(
        a.iter().map(|e| &e.properties).collect::<Vec<_>>(),
        d.iter().map(|e| &e.properties).collect::<Vec<_>>()
    );
}

#[test]
fn events_come_out_in_time_order_and_never_before_they_are_due() {
    let mut sim = Simulator::new(config(300.0, 5), START_MS);
    let mut now = START_MS;
    let mut last = 0;
    for _ in 0..600 {
        now += 100;
        let mut out = Vec::new();
        sim.poll(now, usize::MAX, &mut out);
        for e in out {
            assert!(e.timestamp_ms <= now && e.timestamp_ms >= last);
            last = e.timestamp_ms;
        }
    }
}

#[test]
fn a_limited_poll_leaves_the_rest_due() {
    let mut sim = Simulator::new(config(1000.0, 6), START_MS);
    let mut out = Vec::new();
    sim.poll(START_MS + 1_000, usize::MAX, &mut out);
    let first = sim.poll(START_MS + 30_000, 100, &mut out);
    assert_eq!(first.events, 100);
    assert!(first.behind);
    let mut total = out.len();
    loop {
        let poll = sim.poll(START_MS + 30_000, 100, &mut out);
        total += poll.events;
        if !poll.behind {
            break;
        }
    }
    assert_eq!(out.len(), total);
    assert!(out.windows(2).all(|w| w[0].timestamp_ms <= w[1].timestamp_ms));
}

#[test]
fn the_achieved_rate_converges_on_the_target() {
    for rate in [100.0, 1000.0] {
        let (events, sim) = simulate(config(rate, 11), 240, 50);
        // After the ramp, the warm-up and a few measurement windows.
        let from = START_MS + 120_000;
        let late = events.iter().filter(|e| e.timestamp_ms > from).count() as f64 / 120.0;
        assert!((late / rate - 1.0).abs() < 0.06, "rate {rate}: achieved {late}");
        let per_session = sim.controller().per_session_rate();
        assert!((0.08..0.14).contains(&per_session), "{per_session}");
        let sessions = sim.active_sessions() as f64;
        assert!(
            (sessions / (rate / per_session) - 1.0).abs() < 0.02,
            "{sessions} sessions, {per_session} events/s each, achieved {late}"
        );
    }
}

#[test]
fn the_rate_is_on_target_from_the_first_seconds() {
    let rate = 1000.0;
    let (events, sim) = simulate(config(rate, 12), 60, 20);
    let per_second: Vec<usize> = (0..60)
        .map(|s| {
            let (from, to) = (START_MS + s * 1000, START_MS + (s + 1) * 1000);
            events.iter().filter(|e| e.timestamp_ms > from && e.timestamp_ms <= to).count()
        })
        .collect();
    // The first frames of the first sessions come 0.3 to 3 s after their start.
    assert!(per_second[0] as f64 > 0.5 * rate, "{per_second:?}");
    for (s, n) in per_second.iter().enumerate().skip(2) {
        let r = *n as f64;
        assert!((0.85 * rate..1.15 * rate).contains(&r), "second {s}: {per_second:?}");
    }
    // The population climbs towards rate / 0.105 sessions as heartbeats take over.
    let target = rate / PRIOR_EVENTS_PER_SESSION_SECOND;
    assert!(sim.active_sessions() as f64 > 0.8 * target, "{} of {target}", sim.active_sessions());
}

#[test]
fn the_controller_fills_the_last_second_then_follows_measurements() {
    let mut controller = RateController::new(1050.0, 0);
    assert_eq!(controller.target_sessions(), 10_000);
    // Nothing sent yet: enough sessions for the first 100 ms, two events each.
    assert_eq!(controller.sessions_to_start(100, 0), 53);
    // 53 starts: 53 events now and 53 first frames to come, credited now.
    controller.observe(100, 53, 106, 53, false);
    assert_eq!(controller.sessions_to_start(100, 53), 0);
    controller.observe(200, 20, 20, 53, false);
    assert_eq!(controller.sessions_to_start(200, 53), 42);
    // Never more than the target, never while behind.
    controller.observe(2_000, 0, 0, 9_990, false);
    assert_eq!(controller.sessions_to_start(2_000, 9_990), 10);
    controller.observe(2_100, 0, 0, 9_000, true);
    assert_eq!(controller.sessions_to_start(2_100, 9_000), 0);

    // Measurements during the warm-up are ignored.
    for t in (2_200..20_000).step_by(100) {
        controller.observe(t, 500, 500, 5_000, false);
    }
    assert_eq!(controller.per_session_rate(), PRIOR_EVENTS_PER_SESSION_SECOND);
    // 0.15 events/s per session, measured over many windows.
    for t in (20_000..300_000).step_by(100) {
        controller.observe(t, 150, 150, 10_000, false);
    }
    assert!((controller.per_session_rate() - 0.15).abs() < 0.001, "{}", controller.per_session_rate());
    assert!((7_000..=7_001).contains(&controller.target_sessions()), "{}", controller.target_sessions());
    // A window in which the simulator fell behind measures the sender: ignored.
    let before = controller.per_session_rate();
    for t in (300_100..320_100).step_by(100) {
        controller.observe(t, 10, 10, 10_000, t == 305_000 || t == 315_000);
    }
    assert_eq!(controller.per_session_rate(), before);
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("60s"), Ok(Some(Duration::from_secs(60))));
    assert_eq!(parse_duration("5m"), Ok(Some(Duration::from_secs(300))));
    assert_eq!(parse_duration("1h"), Ok(Some(Duration::from_secs(3600))));
    assert_eq!(parse_duration("1.5s"), Ok(Some(Duration::from_millis(1500))));
    assert_eq!(parse_duration("250ms"), Ok(Some(Duration::from_millis(250))));
    assert_eq!(parse_duration("90"), Ok(Some(Duration::from_secs(90))));
    assert_eq!(parse_duration("forever"), Ok(None));
    assert!(parse_duration("0s").is_err());
    assert!(parse_duration("5 days").is_err());
    assert!(parse_duration("soon").is_err());
}
