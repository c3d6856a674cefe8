//! Views and their per-view facts (docs/metrics.md, "Views"), over a plain
//! list of events.

use std::collections::{BTreeMap, HashSet};

use crate::event::Event;

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;
/// A view's events are those of its key within `[start, start + SPAN_MS]`.
pub const SPAN_MS: i64 = DAY_MS;

/// Who watched: a user, or for anonymous views the session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Viewer {
    User(String),
    Session(String),
}

/// One playback of one video in one session, with its facts.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub session_id: String,
    pub video_id: String,
    /// Client time of the earliest `video_start`, epoch ms.
    pub start_ms: i64,
    pub viewer: Viewer,
    /// The view's events (deduplicated, within the span), in order.
    pub events: Vec<Event>,
    pub watch_seconds: f64,
    pub completed: bool,
    pub failed: bool,
    pub exited_before_start: bool,
    pub startup_ms: Option<u64>,
    pub buffer_ms: u64,
    /// Largest reported `duration_seconds`.
    pub duration: Option<f64>,
    pub quality: Option<String>,
    pub device_type: Option<String>,
}

impl View {
    /// Index of the UTC hour the view started in (epoch-aligned).
    pub fn hour(&self) -> i64 {
        self.start_ms.div_euclid(HOUR_MS)
    }

    /// Index of the UTC day the view started on (days since 1970-01-01).
    pub fn day(&self) -> i64 {
        self.start_ms.div_euclid(DAY_MS)
    }

    /// The UTC hour of day of the start, 0..=23.
    pub fn hour_of_day(&self) -> u32 {
        (self.start_ms.rem_euclid(DAY_MS) / HOUR_MS) as u32
    }

    pub fn user_id(&self) -> Option<&str> {
        match &self.viewer {
            Viewer::User(user) => Some(user),
            Viewer::Session(_) => None,
        }
    }

    /// Whether `event` (by key and client time) belongs to this view.
    pub fn contains(&self, event: &Event) -> bool {
        event.session_id == self.session_id
            && event.video_id == self.video_id
            && (self.start_ms..=self.start_ms + SPAN_MS).contains(&event.at_ms)
    }
}

/// Keeps the first copy of each `event_id`.
pub fn dedupe(events: &[Event]) -> Vec<Event> {
    let mut seen = HashSet::new();
    events.iter().filter(|e| seen.insert(e.event_id.clone())).cloned().collect()
}

/// Every view of `events` (duplicates are removed first), ordered by key and start.
pub fn views(events: &[Event]) -> Vec<View> {
    let mut by_key: BTreeMap<(String, String), Vec<Event>> = BTreeMap::new();
    for event in dedupe(events) {
        by_key.entry((event.session_id.clone(), event.video_id.clone())).or_default().push(event);
    }
    let mut views = Vec::new();
    for ((session_id, video_id), events) in by_key {
        for start_ms in view_starts(&events) {
            views.push(view(session_id.clone(), video_id.clone(), start_ms, &events));
        }
    }
    views
}

/// A key's view starts: its `video_start`s in order (time, then id), each
/// more than [`SPAN_MS`] after the `video_start` before it (the first always).
pub fn view_starts(events: &[Event]) -> Vec<i64> {
    let mut starts: Vec<&Event> = events.iter().filter(|e| e.event_type == "video_start").collect();
    starts.sort_by(|a, b| a.at_ms.cmp(&b.at_ms).then_with(|| a.event_id.cmp(&b.event_id)));
    let mut views = Vec::new();
    let mut previous: Option<i64> = None;
    for start in starts {
        if previous.is_none_or(|p| start.at_ms - p > SPAN_MS) {
            views.push(start.at_ms);
        }
        previous = Some(start.at_ms);
    }
    views
}

fn view(session_id: String, video_id: String, start_ms: i64, events: &[Event]) -> View {
    let mut events: Vec<Event> =
        events.iter().filter(|e| (start_ms..=start_ms + SPAN_MS).contains(&e.at_ms)).cloned().collect();
    events.sort_by(|a, b| a.at_ms.cmp(&b.at_ms).then_with(|| a.event_id.cmp(&b.event_id)));

    let viewer = match events.iter().find_map(|e| e.user_id.clone()) {
        Some(user) => Viewer::User(user),
        None => Viewer::Session(session_id.clone()),
    };
    let completed = events.iter().any(|e| e.event_type == "video_complete");
    let failed = events.iter().any(Event::is_fatal_error);
    let has_progress = events.iter().any(|e| e.event_type == "video_progress");
    let startup_ms = events
        .iter()
        .find_map(|e| e.startup_ms)
        .or_else(|| events.iter().find(|e| e.event_type == "video_progress").map(|e| (e.at_ms - start_ms) as u64));
    let buffer_ms = events.iter().filter(|e| e.event_type == "video_buffer").filter_map(|e| e.buffer_ms).sum();
    let duration = events.iter().filter_map(|e| e.duration).reduce(f64::max);
    let quality = events.iter().rev().find_map(|e| e.rendition().map(str::to_owned));
    let device_type = events.iter().rev().find_map(|e| e.device_type.clone());
    View {
        watch_seconds: watch_seconds(&events),
        session_id,
        video_id,
        start_ms,
        viewer,
        completed,
        failed,
        exited_before_start: !has_progress && !failed,
        startup_ms,
        buffer_ms,
        duration,
        quality,
        device_type,
        events,
    }
}

/// Forward playhead movement while playing, per consecutive pair of the
/// events that have a playhead, each pair capped at twice its wall-clock time.
pub fn watch_seconds(ordered: &[Event]) -> f64 {
    let with_playhead: Vec<&Event> = ordered.iter().filter(|e| e.playhead_from().is_some()).collect();
    let mut total = 0.0;
    for pair in with_playhead.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let stopped = a.event_type == "video_pause" || a.event_type == "video_complete" || a.is_fatal_error();
        if stopped {
            continue;
        }
        let advance = b.playhead_from().expect("filtered to events with a playhead")
            - a.playhead_to().expect("an event with a playhead has one after it");
        let cap = 2.0 * (b.at_ms - a.at_ms) as f64 / 1000.0;
        total += advance.min(cap).max(0.0);
    }
    total
}
