//! A deterministic generator of playback sessions in the ingest JSON format.
//!
//! Each session is one user (or an anonymous viewer) watching one to three
//! videos. Every view follows a scenario drawn from the list in
//! [`FEATURES`]: linear playback, seeks, stalls, rendition switches, pauses,
//! errors (fatal or not), exits before start, abandons, startup times
//! reported or not, odd players (fast, jumping or drifting playheads, equal
//! timestamps), events outside the view's span, restarts and keys without a
//! `video_start`. Sessions are laid out over several days before an end
//! time, some across an hour or day boundary and some in the last hour.
//!
//! The output contains each event once, in playback order; shuffle it and
//! send some batches twice to exercise deduplication.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::rng::Rng;
use crate::views::{DAY_MS, HOUR_MS, SPAN_MS};

/// Everything a generated view can exercise; [`Generated::features`] counts the views (or keys) using each.
pub const FEATURES: &[&str] = &[
    "complete",
    "abandon",
    "abandon_paused",
    "fatal_error",
    "fatal_by_default",
    "fatal_without_position",
    "progress_after_fatal_error",
    "seek_forward",
    "seek_backward",
    "seek_with_position",
    "buffer",
    "quality_change",
    "quality_on_progress",
    "pause_resume",
    "pause_without_position",
    "long_pause",
    "nonfatal_error",
    "exit_start_only",
    "exit_after_pause",
    "exit_after_buffer",
    "exit_after_nonfatal_error",
    "exit_after_quality_change",
    "fatal_before_start",
    "startup_reported_on_start",
    "startup_reported_later",
    "startup_derived",
    "duration_on_start",
    "duration_on_progress_only",
    "duration_not_reported",
    "duration_reported_differently",
    "speed_1_5x",
    "playhead_jump_clamped",
    "playhead_backwards_without_seek",
    "equal_timestamps",
    "event_before_start",
    "events_at_span_edge",
    "second_video_start",
    "video_start_after_span",
    "key_without_video_start",
    "anonymous",
    "user_id_not_on_first_event",
    "repeat_viewer",
    "several_videos_in_session",
    "crosses_hour",
    "crosses_day",
    "in_last_hour",
];

/// A video the generator may play.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoSpec {
    pub video_id: String,
    /// True length of the video.
    pub duration_seconds: f64,
    /// Whether players report `duration_seconds` for it at all.
    pub reports_duration: bool,
}

/// `n` videos `video-00`, `video-01`, … of 30 s to 30 min (millisecond
/// precision); the last one never has its duration reported.
pub fn videos(n: usize, rng: &mut Rng) -> Vec<VideoSpec> {
    (0..n)
        .map(|i| VideoSpec {
            video_id: format!("video-{i:02}"),
            duration_seconds: rng.range(30_000, 1_800_000) as f64 / 1000.0,
            reports_duration: i + 1 != n,
        })
        .collect()
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    /// No event is later than this (epoch ms); use the current time.
    pub end_ms: i64,
    /// Sessions start within the `days` × 24 h before `end_ms`.
    pub days: u32,
    pub sessions: usize,
    /// Size of the pool of named users (repeat viewers come from there).
    pub users: usize,
    pub videos: Vec<VideoSpec>,
    /// Prefix of session and user ids.
    pub prefix: String,
}

/// Generated events with what they cover.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Each event once, sessions in order of generation, a session's events in playback order.
    pub events: Vec<Value>,
    /// How many views (or keys) use each of [`FEATURES`].
    pub features: BTreeMap<&'static str, usize>,
    /// The ids to use for further events (late events), so they never collide.
    pub ids: EventIds,
}

/// Event ids: distinct, never nil, and whose text order is also their order as
/// 128-bit numbers in either half-first order, namely the order of creation.
#[derive(Debug, Clone)]
pub struct EventIds {
    tag: u32,
    next: u32,
}

impl EventIds {
    pub fn new(seed: u64) -> Self {
        Self { tag: (seed as u32) | 1, next: 0 }
    }

    pub fn next_id(&mut self) -> String {
        let n = self.next;
        self.next += 1;
        let high = (u64::from(self.tag) << 32) | u64::from(n);
        let low = (u64::from(n) << 32) | u64::from(self.tag);
        uuid::Uuid::from_u64_pair(high, low).hyphenated().to_string()
    }
}

/// One event in the ingest format.
pub fn event(
    event_id: String,
    event_type: &str,
    user_id: Option<&str>,
    session_id: &str,
    video_id: &str,
    at_ms: i64,
    properties: Value,
) -> Value {
    let mut object = Map::new();
    object.insert("event_id".into(), json!(event_id));
    object.insert("event_type".into(), json!(event_type));
    if let Some(user) = user_id {
        object.insert("user_id".into(), json!(user));
    }
    object.insert("session_id".into(), json!(session_id));
    object.insert("video_id".into(), json!(video_id));
    object.insert("timestamp".into(), json!(at_ms));
    object.insert("properties".into(), properties);
    Value::Object(object)
}

const QUALITIES: [&str; 5] = ["360p", "480p", "720p", "1080p", "2160p"];
const DEVICES: [&str; 4] = ["desktop", "mobile", "tv", "tablet"];

fn bitrate(quality: &str) -> u32 {
    match quality {
        "360p" => 800,
        "480p" => 1_400,
        "720p" => 2_800,
        "1080p" => 5_000,
        _ => 16_000,
    }
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// One step of a view: relative time, type, properties.
#[derive(Debug, Clone)]
struct Step {
    at: i64,
    event_type: &'static str,
    props: Map<String, Value>,
}

/// A view (or a key without `video_start`) being drafted in relative time.
struct Draft<'a> {
    rng: &'a mut Rng,
    steps: Vec<Step>,
    features: Vec<&'static str>,
    t: i64,
    pos: i64,
    length: i64,
    speed_pct: i64,
    quality: &'static str,
    device: &'static str,
    quality_on_progress: bool,
    duration_on_progress: bool,
    duration_reported: f64,
}

impl Draft<'_> {
    fn emit(&mut self, event_type: &'static str, props: Value) {
        let Value::Object(props) = props else { unreachable!("properties are objects") };
        self.steps.push(Step { at: self.t, event_type, props });
    }

    fn feature(&mut self, name: &'static str) {
        debug_assert!(FEATURES.contains(&name), "{name}");
        if !self.features.contains(&name) {
            self.features.push(name);
        }
    }

    fn progress(&mut self) {
        let mut props = json!({"position_seconds": seconds(self.pos), "bitrate_kbps": bitrate(self.quality)});
        if self.quality_on_progress {
            props["quality"] = json!(self.quality);
        }
        if self.duration_on_progress {
            props["duration_seconds"] = json!(self.duration_reported);
        }
        self.emit("video_progress", props);
    }

    /// Plays for up to `ms` of wall-clock time with heartbeats every ~10 s; stops at the end of the video.
    fn play(&mut self, ms: i64) {
        let mut left = ms;
        while left > 0 && self.pos < self.length {
            let step = self.rng.range(8_000, 12_000).min(left);
            self.t += step;
            self.pos = (self.pos + step * self.speed_pct / 100).min(self.length);
            left -= step;
            self.progress();
        }
    }
}

/// Generates sessions as configured.
pub fn generate(config: &Config) -> Generated {
    assert!(!config.videos.is_empty() && config.days > 0);
    let mut rng = Rng::new(config.seed);
    let mut ids = EventIds::new(config.seed);
    let mut features: BTreeMap<&'static str, usize> = FEATURES.iter().map(|f| (*f, 0)).collect();
    let mut events = Vec::new();
    let mut users_seen: BTreeMap<String, usize> = BTreeMap::new();

    for s in 0..config.sessions {
        let session_id = format!("{}s{s:04}", config.prefix);
        let user = if rng.chance(0.2) {
            None
        } else {
            Some(format!("{}u{:03}", config.prefix, rng.below(config.users as u64)))
        };
        let user_not_on_first = user.is_some() && rng.chance(0.1);
        let count = 1 + (rng.below(10) / 6 + rng.below(10) / 8) as usize;
        let mut session_features: Vec<&'static str> = Vec::new();
        if user.is_none() {
            session_features.push("anonymous");
        }
        if count > 1 {
            session_features.push("several_videos_in_session");
        }
        if let Some(user) = &user {
            let seen = users_seen.entry(user.clone()).or_default();
            if *seen > 0 {
                session_features.push("repeat_viewer");
            }
            *seen += 1;
        }

        // Draft the views back to back in relative time.
        let mut keys: Vec<(String, Vec<Step>, Vec<&'static str>)> = Vec::new();
        let mut chosen: Vec<usize> = Vec::new();
        let mut t = 0;
        for _ in 0..count {
            let mut index = rng.below(config.videos.len() as u64) as usize;
            while chosen.contains(&index) && chosen.len() < config.videos.len() {
                index = rng.below(config.videos.len() as u64) as usize;
            }
            chosen.push(index);
            let video = &config.videos[index];
            let (mut steps, view_features) = draft_view(&mut rng, video);
            for step in &mut steps {
                step.at += t;
            }
            t = steps.iter().map(|s| s.at).max().unwrap_or(t) + rng.range(1_000, 30_000);
            keys.push((video.video_id.clone(), steps, view_features));
        }
        if rng.chance(0.03) {
            // Heartbeats of a key that never had a video_start: no view.
            let video = rng.pick(&config.videos).video_id.clone();
            if !keys.iter().any(|(v, _, _)| *v == video) {
                let mut at = rng.range(0, t.max(1));
                let mut steps = Vec::new();
                for i in 0..3 {
                    at += 10_000;
                    steps.push(Step {
                        at,
                        event_type: "video_progress",
                        props: json!({"position_seconds": 10.0 * f64::from(i)})
                            .as_object()
                            .expect("a JSON object literal")
                            .clone(),
                    });
                }
                keys.push((video, steps, vec!["key_without_video_start"]));
            }
        }

        // Lay the session out in absolute time.
        let first = keys.iter().flat_map(|(_, s, _)| s).map(|s| s.at).min().unwrap_or(0);
        let last = keys.iter().flat_map(|(_, s, _)| s).map(|s| s.at).max().unwrap_or(0);
        let length = last - first;
        let earliest = config.end_ms - i64::from(config.days) * DAY_MS;
        let latest = config.end_ms - length;
        let this_hour = config.end_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let lowest = earliest.min(latest);
        let uniform = |rng: &mut Rng| if latest > earliest { rng.range(earliest, latest) } else { latest };
        let start = match rng.below(100) {
            0..8 if latest > this_hour => rng.range(this_hour, latest + 1),
            8..25 => {
                let boundary = (uniform(&mut rng) + HOUR_MS).div_euclid(HOUR_MS) * HOUR_MS;
                (boundary - rng.range(0, length.max(1))).clamp(lowest, latest)
            }
            25..30 => {
                let boundary = (uniform(&mut rng) + DAY_MS).div_euclid(DAY_MS) * DAY_MS;
                (boundary - rng.range(0, length.max(1))).clamp(lowest, latest)
            }
            _ => uniform(&mut rng),
        } - first;

        for (video_id, steps, mut view_features) in keys {
            let view_start = steps.iter().find(|s| s.event_type == "video_start").map(|s| s.at + start);
            if view_start.is_some() {
                view_features.extend(session_features.iter().copied());
            }
            let view_end = steps.iter().map(|s| s.at + start).filter(|&at| view_start.is_none_or(|v| at < v + SPAN_MS));
            let view_end = view_end.max().unwrap_or(0);
            if let Some(view_start) = view_start {
                if view_start.div_euclid(HOUR_MS) != view_end.div_euclid(HOUR_MS) {
                    view_features.push("crosses_hour");
                }
                if view_start.div_euclid(DAY_MS) != view_end.div_euclid(DAY_MS) {
                    view_features.push("crosses_day");
                }
                if view_start >= this_hour {
                    view_features.push("in_last_hour");
                }
            }
            if user_not_on_first {
                view_features.push("user_id_not_on_first_event");
            }
            for feature in view_features {
                *features.get_mut(feature).expect("known feature") += 1;
            }
            for (i, step) in steps.into_iter().enumerate() {
                let user = if user_not_on_first && i == 0 { None } else { user.as_deref() };
                let at = step.at + start;
                assert!(at <= config.end_ms, "generated an event after the end");
                events.push(event(
                    ids.next_id(),
                    step.event_type,
                    user,
                    &session_id,
                    &video_id,
                    at,
                    Value::Object(step.props),
                ));
            }
        }
    }
    Generated { events, features, ids }
}

/// One view of `video` in relative time (its `video_start` at 0, unless an
/// event precedes it).
fn draft_view(rng: &mut Rng, video: &VideoSpec) -> (Vec<Step>, Vec<&'static str>) {
    let length = (video.duration_seconds * 1000.0).round() as i64;
    let quality = *rng.pick(&QUALITIES);
    let device = *rng.pick(&DEVICES);
    let mut draft = Draft {
        steps: Vec::new(),
        features: Vec::new(),
        t: 0,
        pos: 0,
        length,
        speed_pct: 100,
        quality,
        device,
        quality_on_progress: rng.chance(0.5),
        duration_on_progress: false,
        duration_reported: video.duration_seconds,
        rng,
    };

    // The start.
    let mut start = json!({
        "position_seconds": 0.0,
        "quality": draft.quality,
        "bitrate_kbps": bitrate(draft.quality),
        "device_type": draft.device,
        "browser": "firefox",
        "os": "linux",
        "country": "FR",
        "player": "oracle-player",
        "cdn": "cdn-a",
    });
    if video.reports_duration {
        match draft.rng.below(10) {
            0 => {
                draft.duration_on_progress = true;
                draft.feature("duration_on_progress_only");
            }
            1 => {
                // This player reports a slightly longer duration on its start; the largest one counts.
                start["duration_seconds"] = json!(video.duration_seconds + 0.5);
                draft.feature("duration_reported_differently");
                draft.feature("duration_on_start");
            }
            _ => {
                start["duration_seconds"] = json!(video.duration_seconds);
                draft.feature("duration_on_start");
            }
        }
    } else {
        draft.feature("duration_not_reported");
    }
    let startup_report = match draft.rng.below(10) {
        0..4 => {
            let reported = draft.rng.range(150, 6_000);
            start["startup_time_ms"] = json!(reported);
            Some(true)
        }
        4 => Some(false),
        _ => None,
    };
    if draft.rng.chance(0.03) {
        // A rendition switch reported 3 s before playback was asked for: outside the view.
        draft.t = -3_000;
        draft.emit("quality_change", json!({"from_quality": "360p", "to_quality": "2160p", "position_seconds": 0.0}));
        draft.t = 0;
        draft.feature("event_before_start");
    }
    draft.emit("video_start", start);

    if draft.rng.chance(0.13) {
        exit_before_start(&mut draft, startup_report == Some(true));
        return (draft.steps, draft.features);
    }
    match startup_report {
        Some(true) => draft.feature("startup_reported_on_start"),
        Some(false) => draft.feature("startup_reported_later"),
        None => draft.feature("startup_derived"),
    }

    // Startup, then the first heartbeat.
    draft.t += draft.rng.range(200, 5_000);
    if draft.rng.below(20) < 2 {
        draft.speed_pct = 150;
        draft.feature("speed_1_5x");
    }
    let first = draft.rng.range(2_000, 10_000);
    draft.t += first;
    draft.pos = first * draft.speed_pct / 100;
    if startup_report == Some(false) {
        let reported = draft.rng.range(150, 6_000);
        let mut props = json!({"position_seconds": seconds(draft.pos), "startup_time_ms": reported});
        if draft.duration_on_progress {
            props["duration_seconds"] = json!(draft.duration_reported);
        }
        draft.emit("video_progress", props);
    } else {
        draft.progress();
    }
    if draft.quality_on_progress {
        draft.feature("quality_on_progress");
    }

    let segments = draft.rng.range(0, 6);
    for _ in 0..segments {
        let ms = draft.rng.range(5_000, 120_000);
        draft.play(ms);
        if draft.pos >= draft.length {
            break;
        }
        interlude(&mut draft);
    }

    // The ending.
    match draft.rng.below(100) {
        0..45 => {
            let left = (draft.length - draft.pos) * 100 / draft.speed_pct + 1;
            draft.play(left);
            draft.t += draft.rng.range(0, 1_000);
            let props = json!({"position_seconds": seconds(draft.length)});
            draft.emit("video_complete", props);
            draft.feature("complete");
        }
        45..75 => {
            let ms = draft.rng.range(0, 60_000);
            draft.play(ms);
            draft.feature("abandon");
            match draft.rng.below(10) {
                0 => {
                    draft.t += draft.rng.range(100, 5_000);
                    let props = json!({"position_seconds": seconds(draft.pos)});
                    draft.emit("video_pause", props);
                    draft.feature("abandon_paused");
                }
                1 => span_edge(&mut draft),
                2 => second_start(&mut draft),
                3 => start_after_span(&mut draft),
                _ => {}
            }
        }
        _ => {
            let ms = draft.rng.range(0, 60_000);
            draft.play(ms);
            draft.t += draft.rng.range(100, 3_000);
            let mut props = json!({"error_code": "MEDIA_ERR_DECODE", "error_message": "decoder failed"});
            if draft.rng.chance(0.8) {
                props["position_seconds"] = json!(seconds(draft.pos));
            } else {
                draft.feature("fatal_without_position");
            }
            if draft.rng.chance(0.5) {
                props["fatal"] = json!(true);
            } else {
                draft.feature("fatal_by_default");
            }
            draft.emit("video_error", props);
            draft.feature("fatal_error");
            if draft.rng.chance(0.25) {
                // The player limps on: the pair after the error counts nothing, later pairs count again.
                draft.t += draft.rng.range(2_000, 20_000);
                draft.pos = (draft.pos + 15_000).min(draft.length);
                draft.progress();
                draft.play(20_000);
                draft.feature("progress_after_fatal_error");
            }
        }
    }
    (draft.steps, draft.features)
}

/// Something between two stretches of playback.
fn interlude(draft: &mut Draft<'_>) {
    match draft.rng.below(20) {
        0..4 => {
            // The playhead moved a little since the last heartbeat before the seek.
            let drift = draft.rng.range(0, 800);
            draft.t += drift;
            let from = (draft.pos + drift).min(draft.length);
            let forward = draft.rng.chance(0.6);
            let to = if forward {
                (from + draft.rng.range(5_000, 60_000)).min(draft.length - 1_000).max(from)
            } else {
                (from - draft.rng.range(5_000, 60_000)).max(0)
            };
            let mut props = json!({"seek_from_seconds": seconds(from), "seek_to_seconds": seconds(to)});
            if draft.rng.chance(0.5) {
                props["position_seconds"] = json!(seconds(to));
                draft.feature("seek_with_position");
            }
            draft.emit("seek", props);
            draft.pos = to;
            draft.feature(if forward { "seek_forward" } else { "seek_backward" });
        }
        4..8 => {
            let stall = draft.rng.range(200, 8_000);
            let props = json!({"position_seconds": seconds(draft.pos), "buffer_duration_ms": stall});
            if draft.rng.chance(0.5) {
                draft.emit("video_buffer", props);
                draft.t += stall;
            } else {
                draft.t += stall;
                draft.emit("video_buffer", props);
            }
            draft.feature("buffer");
        }
        8..10 => {
            let to = *draft.rng.pick(&QUALITIES);
            let mut props = json!({
                "from_quality": draft.quality,
                "to_quality": to,
                "position_seconds": seconds(draft.pos),
                "bitrate_kbps": bitrate(to),
            });
            let wall = draft.rng.range(500, 2_000);
            draft.t += wall;
            draft.pos = (draft.pos + wall * draft.speed_pct / 100).min(draft.length);
            props["position_seconds"] = json!(seconds(draft.pos));
            draft.emit("quality_change", props);
            draft.quality = to;
            draft.feature("quality_change");
        }
        10..14 => {
            let with_position = draft.rng.chance(0.85);
            let props = if with_position { json!({"position_seconds": seconds(draft.pos)}) } else { json!({}) };
            draft.emit("video_pause", props.clone());
            let pause = if draft.rng.chance(0.1) {
                draft.feature("long_pause");
                draft.rng.range(HOUR_MS, 3 * HOUR_MS)
            } else {
                draft.rng.range(2_000, 1_200_000)
            };
            draft.t += pause;
            draft.emit("video_resume", props);
            draft.feature("pause_resume");
            if !with_position {
                draft.feature("pause_without_position");
            }
        }
        14..16 => {
            draft.t += draft.rng.range(0, 3_000);
            let props = json!({"error_code": "NET_RETRY", "error_message": "segment retried", "fatal": false,
                               "position_seconds": seconds(draft.pos)});
            draft.emit("video_error", props);
            draft.feature("nonfatal_error");
        }
        16 | 17 => {
            // A rendition switch at the very millisecond of a heartbeat; the event ids decide their order.
            let to = *draft.rng.pick(&QUALITIES);
            draft.progress();
            let props =
                json!({"from_quality": draft.quality, "to_quality": to, "position_seconds": seconds(draft.pos)});
            draft.emit("quality_change", props);
            draft.quality = to;
            draft.feature("equal_timestamps");
        }
        18 => {
            // The playhead runs far ahead of the clock without a seek: capped at twice the wall-clock time.
            let wall = draft.rng.range(5_000, 10_000);
            draft.t += wall;
            draft.pos = (draft.pos + 5 * wall).min(draft.length);
            draft.progress();
            draft.feature("playhead_jump_clamped");
        }
        _ => {
            // The playhead goes back a little without a seek: nothing counts for that pair.
            draft.t += draft.rng.range(5_000, 10_000);
            draft.pos = (draft.pos - 2_500).max(0);
            draft.progress();
            draft.feature("playhead_backwards_without_seek");
        }
    }
}

/// A view that never reaches a heartbeat.
fn exit_before_start(draft: &mut Draft<'_>, startup_reported: bool) {
    if startup_reported {
        draft.feature("startup_reported_on_start");
    }
    draft.t += draft.rng.range(500, 20_000);
    match draft.rng.below(6) {
        0 => draft.feature("exit_start_only"),
        1 => {
            draft.emit("video_pause", json!({}));
            draft.feature("exit_after_pause");
        }
        2 => {
            let stall = draft.rng.range(500, 15_000);
            draft.emit("video_buffer", json!({"position_seconds": 0.0, "buffer_duration_ms": stall}));
            draft.feature("exit_after_buffer");
        }
        3 => {
            let props = json!({"error_code": "NET_RETRY", "fatal": false});
            draft.emit("video_error", props);
            draft.feature("exit_after_nonfatal_error");
        }
        4 => {
            let props = json!({"from_quality": draft.quality, "to_quality": "360p", "position_seconds": 0.0});
            draft.emit("quality_change", props);
            draft.feature("exit_after_quality_change");
        }
        _ => {
            let mut props = json!({"error_code": "MEDIA_ERR_SRC_NOT_SUPPORTED", "position_seconds": 0.0});
            if draft.rng.chance(0.5) {
                props["fatal"] = json!(true);
            }
            draft.emit("video_error", props);
            draft.feature("fatal_before_start");
        }
    }
}

/// After an abandon, one heartbeat exactly 24 h after the start (inside the
/// span: its advance counts) and one a millisecond later (outside).
fn span_edge(draft: &mut Draft<'_>) {
    if draft.pos + 60_000 > draft.length {
        return;
    }
    draft.t = SPAN_MS;
    draft.pos += 30_000;
    draft.progress();
    draft.t = SPAN_MS + 1;
    draft.pos += 30_000;
    draft.progress();
    draft.feature("events_at_span_edge");
}

/// After an abandon, the viewer starts the same video again in the same
/// session: the same view (its start is the earliest `video_start`).
fn second_start(draft: &mut Draft<'_>) {
    draft.t += draft.rng.range(10_000, 600_000);
    draft.pos = 0;
    let props = json!({"position_seconds": 0.0, "quality": draft.quality, "device_type": draft.device});
    draft.emit("video_start", props);
    draft.t += draft.rng.range(500, 3_000);
    draft.play(30_000);
    draft.feature("second_video_start");
}

/// A `video_progress` for `view` that arrives late: 4 s after the view's last
/// event with a playhead, 4 s further on, so it adds 4 s of watch time when
/// that event left the player playing. `None` when it would fall outside the
/// view's span or the view has no playhead.
pub fn late_progress(view: &crate::views::View, ids: &mut EventIds) -> Option<Value> {
    let last = view.events.iter().rev().find(|e| e.playhead_to().is_some())?;
    let at_ms = last.at_ms + 4_000;
    if at_ms > view.start_ms + SPAN_MS {
        return None;
    }
    let position = last.playhead_to()? + 4.0;
    Some(event(
        ids.next_id(),
        "video_progress",
        view.user_id(),
        &view.session_id,
        &view.video_id,
        at_ms,
        json!({"position_seconds": position}),
    ))
}

/// After an abandon, the same key starts again more than 24 h after the view
/// began: outside the view's span, and no new view (a key has one view).
fn start_after_span(draft: &mut Draft<'_>) {
    draft.t = SPAN_MS + draft.rng.range(1, HOUR_MS);
    draft.pos = 0;
    let props = json!({"position_seconds": 0.0, "quality": draft.quality, "device_type": draft.device});
    draft.emit("video_start", props);
    draft.t += draft.rng.range(500, 3_000);
    draft.play(20_000);
    draft.feature("video_start_after_span");
}
