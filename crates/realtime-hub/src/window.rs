//! The realtime window: the facts of the realtime partials of the last
//! `window` seconds, merged into the realtime metrics of docs/metrics.md.
//!
//! Facts are kept in per-second buckets by receive second. An event can reach
//! the hub more than once: the same fact again (a redelivered partial) is
//! dropped on arrival; a copy with another receive time (a client retry the
//! gateway received twice) is kept, and only the earliest copy inside the
//! window counts, as `metrics_sql::read::realtime` does with
//! `ORDER BY event_id, received_at_ms LIMIT 1 BY event_id`. Buckets that left
//! the window are evicted with their ids and views, so memory is bounded by
//! the facts of one window.

use std::{
    collections::{BTreeMap, HashMap, hash_map::Entry},
    sync::Arc,
};

use chrono::{DateTime, TimeZone as _, Utc};
use events_model::{EventType, PartialView, RealtimePartial};
use metrics_sql::{formulas, read::RealtimeRow};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The realtime metrics, defined once in the metrics core: the same object
/// as query-api's `GET /api/metrics/realtime` and the `realtime_metrics`
/// WebSocket payload.
pub use metrics_sql::responses::RealtimeMetrics;

/// A video and its concurrent viewers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopVideo {
    pub video_id: String,
    pub viewers: u64,
}

/// What one computation of the window gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub metrics: RealtimeMetrics,
    /// The videos with the most concurrent viewers, most first, ties by
    /// `video_id`; at most the configured number.
    pub top_videos: Vec<TopVideo>,
    /// Facts counted (distinct events in the window).
    pub events: u64,
}

/// What became of the facts of one partial.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    /// New facts kept.
    pub kept: u64,
    /// Facts already held (same event id and receive time).
    pub duplicates: u64,
    /// Facts received before the window (or too far in the future).
    pub outside: u64,
    /// Facts naming a view the partial does not list.
    pub invalid: u64,
    /// Facts refused because the window holds `max_facts` already.
    pub over_capacity: u64,
}

/// One event as the metrics need it.
#[derive(Debug, Clone)]
struct Fact {
    event_id: Uuid,
    view: u32,
    event_type: EventType,
    fatal: bool,
    timestamp_ms: u64,
    received_at_ms: u64,
    bitrate_kbps: Option<u32>,
    /// Another copy of this event id, with another receive time, is held.
    copied: bool,
}

impl Fact {
    /// The order of "latest": client time, then receive time, then id (the
    /// byte order of a UUID is the order of its hyphenated lowercase text,
    /// which is what the SQL compares).
    fn order(&self) -> (u64, u64, Uuid) {
        (self.timestamp_ms, self.received_at_ms, self.event_id)
    }
}

/// Receive times of the copies of one event id that the window holds.
#[derive(Debug, Default)]
struct Copies {
    first: u64,
    others: Vec<u64>,
}

impl Copies {
    fn contains(&self, received_at_ms: u64) -> bool {
        self.first == received_at_ms || self.others.contains(&received_at_ms)
    }

    /// Removes one receive time; true when no copy is left.
    fn remove(&mut self, received_at_ms: u64) -> bool {
        if self.first == received_at_ms {
            match self.others.pop() {
                Some(next) => self.first = next,
                None => return true,
            }
        } else {
            self.others.retain(|&r| r != received_at_ms);
        }
        false
    }

    /// Whether a copy received at `received_at_ms` is the earliest copy received after `from_ms`.
    fn earliest_after(&self, from_ms: u64, received_at_ms: u64) -> bool {
        std::iter::once(self.first).chain(self.others.iter().copied()).all(|r| r <= from_ms || r >= received_at_ms)
    }
}

/// Views interned as small integers, each freed with its last fact. Each
/// slot also carries its video's interned index, so the per-tick count by
/// video reads a contiguous array instead of chasing every view's heap
/// allocation (which, once the allocator has recycled memory for a while,
/// is a cache miss per view: the hub's tick was 3–4 times slower in a
/// process that had run for minutes than in a fresh one).
#[derive(Debug, Default)]
struct Views {
    index: HashMap<Arc<PartialView>, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    videos: Videos,
}

#[derive(Debug)]
struct Slot {
    key: Option<Arc<PartialView>>,
    refs: u32,
    video: u32,
}

impl Views {
    fn acquire(&mut self, view: &PartialView) -> u32 {
        if let Some(&id) = self.index.get(view) {
            self.slots[id as usize].refs += 1;
            return id;
        }
        let key = Arc::new(view.clone());
        let slot = Slot { key: Some(key.clone()), refs: 1, video: self.videos.acquire(&view.video_id) };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, id);
        id
    }

    fn release(&mut self, id: u32) {
        let slot = &mut self.slots[id as usize];
        slot.refs -= 1;
        if slot.refs == 0 {
            if let Some(key) = slot.key.take() {
                self.index.remove(&*key);
                self.videos.release(slot.video);
            }
            self.free.push(id);
        }
    }

    /// The interned index of view `id`'s video.
    fn video(&self, id: u32) -> u32 {
        self.slots[id as usize].video
    }

    fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn len(&self) -> usize {
        self.index.len()
    }
}

/// Video ids interned as small integers, each freed with its last view.
#[derive(Debug, Default)]
struct Videos {
    index: HashMap<Arc<str>, u32>,
    /// Per index: the id and the views referencing it.
    slots: Vec<(Option<Arc<str>>, u32)>,
    free: Vec<u32>,
}

impl Videos {
    fn acquire(&mut self, video_id: &str) -> u32 {
        if let Some(&id) = self.index.get(video_id) {
            self.slots[id as usize].1 += 1;
            return id;
        }
        let key: Arc<str> = video_id.into();
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = (Some(key.clone()), 1);
                id
            }
            None => {
                self.slots.push((Some(key.clone()), 1));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, id);
        id
    }

    fn release(&mut self, id: u32) {
        let slot = &mut self.slots[id as usize];
        slot.1 -= 1;
        if slot.1 == 0 {
            if let Some(key) = slot.0.take() {
                self.index.remove(&key);
            }
            self.free.push(id);
        }
    }

    fn name(&self, id: u32) -> &str {
        self.slots[id as usize].0.as_deref().expect("a video referenced by a view is interned")
    }

    fn capacity(&self) -> usize {
        self.slots.len()
    }
}

/// The latest facts of one view in the window.
#[derive(Debug, Clone, Copy)]
struct ViewState {
    latest: (u64, u64, Uuid),
    event_type: EventType,
    fatal: bool,
    bitrate: Option<((u64, u64, Uuid), u32)>,
}

/// The facts of the last `window_ms`, by receive second.
#[derive(Debug)]
pub struct Window {
    window_ms: u64,
    max_facts: usize,
    top_videos: usize,
    buckets: BTreeMap<u64, Vec<Fact>>,
    ids: HashMap<Uuid, Copies>,
    views: Views,
    facts: usize,
}

impl Window {
    /// A window of `window_secs` holding at most `max_facts` facts, reporting
    /// the `top_videos` videos with most viewers.
    pub fn new(window_secs: u64, max_facts: usize, top_videos: usize) -> Self {
        Self {
            window_ms: window_secs.max(1) * 1000,
            max_facts,
            top_videos,
            buckets: BTreeMap::new(),
            ids: HashMap::new(),
            views: Views::default(),
            facts: 0,
        }
    }

    pub fn window_secs(&self) -> u64 {
        self.window_ms / 1000
    }

    /// Facts held (including copies and facts not yet in the window).
    pub fn len(&self) -> usize {
        self.facts
    }

    pub fn is_empty(&self) -> bool {
        self.facts == 0
    }

    /// Views held.
    pub fn views(&self) -> usize {
        self.views.len()
    }

    /// Adds the facts of `partial`, as seen at `now_ms`. Facts received before
    /// the window are dropped, and so are facts more than one window ahead of
    /// `now_ms` (a clock far off), which would otherwise be held unbounded.
    pub fn merge(&mut self, partial: &RealtimePartial, now_ms: u64) -> Merged {
        let from_ms = now_ms.saturating_sub(self.window_ms);
        let mut merged = Merged::default();
        for event in &partial.events {
            let Some(view) = partial.views.get(event.view as usize) else {
                merged.invalid += 1;
                continue;
            };
            let received_at_ms = event.received_at_ms;
            if received_at_ms <= from_ms || received_at_ms > now_ms + self.window_ms {
                merged.outside += 1;
                continue;
            }
            let copied = match self.ids.entry(event.event_id) {
                Entry::Occupied(entry) if entry.get().contains(received_at_ms) => {
                    merged.duplicates += 1;
                    continue;
                }
                _ if self.facts >= self.max_facts => {
                    merged.over_capacity += 1;
                    continue;
                }
                Entry::Occupied(mut entry) => {
                    let copies = entry.get_mut();
                    copies.others.push(received_at_ms);
                    let times: Vec<u64> = std::iter::once(copies.first).chain(copies.others.iter().copied()).collect();
                    self.mark_copied(event.event_id, &times);
                    true
                }
                Entry::Vacant(entry) => {
                    entry.insert(Copies { first: received_at_ms, others: Vec::new() });
                    false
                }
            };
            let view = self.views.acquire(view);
            self.buckets.entry(received_at_ms / 1000).or_default().push(Fact {
                event_id: event.event_id,
                view,
                event_type: event.event_type,
                fatal: event.fatal,
                timestamp_ms: event.timestamp_ms,
                received_at_ms,
                bitrate_kbps: event.bitrate_kbps,
                copied,
            });
            self.facts += 1;
            merged.kept += 1;
        }
        merged
    }

    /// Flags every held copy of `event_id` (received at one of `times`).
    fn mark_copied(&mut self, event_id: Uuid, times: &[u64]) {
        for &time in times {
            if let Some(bucket) = self.buckets.get_mut(&(time / 1000)) {
                for fact in bucket.iter_mut().filter(|f| f.event_id == event_id) {
                    fact.copied = true;
                }
            }
        }
    }

    /// Drops the buckets whose every fact was received at or before `now_ms − window`.
    pub fn evict(&mut self, now_ms: u64) {
        let from_ms = now_ms.saturating_sub(self.window_ms);
        // Bucket `s` holds receive times s*1000 ..= s*1000+999: gone when that last one is <= from_ms.
        let keep_from = (from_ms + 1) / 1000;
        let kept = self.buckets.split_off(&keep_from);
        let gone = std::mem::replace(&mut self.buckets, kept);
        for fact in gone.into_values().flatten() {
            if let Entry::Occupied(mut copies) = self.ids.entry(fact.event_id) {
                if copies.get_mut().remove(fact.received_at_ms) {
                    copies.remove();
                }
            }
            self.views.release(fact.view);
            self.facts -= 1;
        }
    }

    /// The realtime metrics over the events received in `(now_ms − window, now_ms]`
    /// (after evicting what left the window).
    pub fn figures(&mut self, now_ms: u64) -> Figures {
        self.evict(now_ms);
        let from_ms = now_ms.saturating_sub(self.window_ms);
        let (mut events, mut errors) = (0u64, 0u64);
        let mut states: Vec<Option<ViewState>> = vec![None; self.views.capacity()];
        for fact in self.buckets.range(..=now_ms / 1000).flat_map(|(_, facts)| facts) {
            if fact.received_at_ms <= from_ms || fact.received_at_ms > now_ms {
                continue;
            }
            if fact.copied
                && !self.ids.get(&fact.event_id).is_some_and(|c| c.earliest_after(from_ms, fact.received_at_ms))
            {
                continue;
            }
            events += 1;
            if fact.event_type == EventType::VideoError {
                errors += 1;
            }
            let order = fact.order();
            let bitrate = fact.bitrate_kbps.map(|b| (order, b));
            let state = &mut states[fact.view as usize];
            match state {
                None => {
                    *state = Some(ViewState { latest: order, event_type: fact.event_type, fatal: fact.fatal, bitrate })
                }
                Some(s) => {
                    if order > s.latest {
                        s.latest = order;
                        s.event_type = fact.event_type;
                        s.fatal = fact.fatal;
                    }
                    if let Some((order, kbps)) = bitrate {
                        if s.bitrate.is_none_or(|(latest, _)| order > latest) {
                            s.bitrate = Some((order, kbps));
                        }
                    }
                }
            }
        }

        let (mut viewers, mut bandwidth_kbps) = (0u64, 0u64);
        let mut per_video = vec![0u64; self.views.videos.capacity()];
        for (id, state) in states.iter().enumerate() {
            let Some(state) = state else { continue };
            let ended = state.event_type == EventType::VideoComplete
                || (state.event_type == EventType::VideoError && state.fatal);
            if ended {
                continue;
            }
            viewers += 1;
            bandwidth_kbps += state.bitrate.map_or(0, |(_, kbps)| u64::from(kbps));
            per_video[self.views.video(id as u32) as usize] += 1;
        }
        let mut top: Vec<(&str, u64)> = (0..)
            .zip(&per_video)
            .filter(|&(_, &viewers)| viewers > 0)
            .map(|(video, &viewers)| (self.views.videos.name(video), viewers))
            .collect();
        let active_streams = top.len() as u64;
        top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        top.truncate(self.top_videos);

        let window_seconds = self.window_ms / 1000;
        Figures {
            metrics: formulas::realtime_metrics(
                &RealtimeRow { events, errors, concurrent_viewers: viewers, active_streams, bandwidth_kbps },
                window_seconds,
                as_of(now_ms),
            ),
            top_videos: top
                .into_iter()
                .map(|(video_id, viewers)| TopVideo { video_id: video_id.into(), viewers })
                .collect(),
            events,
        }
    }
}

/// Epoch milliseconds as a UTC time.
pub fn as_of(now_ms: u64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(i64::try_from(now_ms).unwrap_or(i64::MAX)).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use events_model::PartialEvent;

    use super::*;

    const NOW: u64 = 1_700_000_060_000;

    /// A fact builder: `(session, video, type, timestamp_ms, received_at_ms)`.
    struct F {
        id: Uuid,
        session: &'static str,
        video: &'static str,
        event_type: EventType,
        fatal: bool,
        ts: u64,
        rx: u64,
        bitrate: Option<u32>,
    }

    fn f(session: &'static str, video: &'static str, event_type: EventType, ts: u64, rx: u64) -> F {
        F {
            id: Uuid::new_v4(),
            session,
            video,
            event_type,
            fatal: event_type == EventType::VideoError,
            ts,
            rx,
            bitrate: None,
        }
    }

    impl F {
        fn bitrate(mut self, kbps: u32) -> Self {
            self.bitrate = Some(kbps);
            self
        }
        fn id(mut self, id: Uuid) -> Self {
            self.id = id;
            self
        }
        fn non_fatal(mut self) -> Self {
            self.fatal = false;
            self
        }
    }

    fn partial(facts: &[F]) -> RealtimePartial {
        let mut views: Vec<PartialView> = Vec::new();
        let mut events = Vec::new();
        for fact in facts {
            let view = PartialView { session_id: fact.session.into(), video_id: fact.video.into() };
            let index = views.iter().position(|v| *v == view).unwrap_or_else(|| {
                views.push(view);
                views.len() - 1
            });
            events.push(PartialEvent {
                event_id: fact.id,
                view: index as u32,
                event_type: fact.event_type,
                fatal: fact.fatal,
                timestamp_ms: fact.ts,
                received_at_ms: fact.rx,
                bitrate_kbps: fact.bitrate,
            });
        }
        RealtimePartial { partition: 0, second: facts.first().map_or(0, |f| f.rx / 1000), views, events }
    }

    fn window() -> Window {
        Window::new(60, 1_000_000, 10)
    }

    fn figures(facts: &[F], now: u64) -> Figures {
        let mut w = window();
        w.merge(&partial(facts), now);
        w.figures(now)
    }

    use EventType::*;

    #[test]
    fn empty_window_is_all_zero() {
        let fig = window().figures(NOW);
        let m = fig.metrics;
        assert_eq!((m.concurrent_viewers, m.active_streams, m.bandwidth_gbps), (0, 0, 0.0));
        assert_eq!((m.events_per_second, m.error_rate, m.window_seconds), (0.0, 0.0, 60));
        assert_eq!(m.as_of, as_of(NOW));
        assert!(fig.top_videos.is_empty());
    }

    #[test]
    fn counts_follow_the_definitions() {
        let fig = figures(
            &[
                f("s1", "v1", VideoStart, NOW - 5000, NOW - 5000).bitrate(2000),
                f("s1", "v1", VideoProgress, NOW - 4000, NOW - 4000),
                f("s2", "v1", VideoStart, NOW - 3000, NOW - 3000).bitrate(1000),
                f("s3", "v2", VideoStart, NOW - 3000, NOW - 3000).bitrate(500),
                f("s3", "v2", VideoComplete, NOW - 2000, NOW - 2000),
                f("s4", "v3", VideoError, NOW - 1000, NOW - 1000),
            ],
            NOW,
        );
        let m = &fig.metrics;
        assert_eq!(m.concurrent_viewers, 2, "s3 completed, s4 failed");
        assert_eq!(m.active_streams, 1);
        assert_eq!(m.bandwidth_gbps, 3000.0 / 1e6);
        assert_eq!(m.events_per_second, 6.0 / 60.0);
        assert_eq!(m.error_rate, 1.0 / 6.0);
        assert_eq!(fig.top_videos, vec![TopVideo { video_id: "v1".into(), viewers: 2 }]);
        assert_eq!(fig.events, 6);
    }

    #[test]
    fn a_view_counts_without_its_start_in_the_window() {
        let fig = figures(&[f("s1", "v1", VideoProgress, NOW - 100, NOW - 100)], NOW);
        assert_eq!(fig.metrics.concurrent_viewers, 1);
    }

    #[test]
    fn duplicates_count_once_within_and_across_partials() {
        let start = f("s1", "v1", VideoStart, NOW - 5000, NOW - 5000).bitrate(800);
        let id = start.id;
        let mut w = window();
        let first = w.merge(&partial(&[start, f("s1", "v1", VideoError, NOW - 4000, NOW - 4000)]), NOW);
        assert_eq!(first.kept, 2);
        // The same partial redelivered, and the same fact inside another partial.
        let again = w.merge(
            &partial(&[
                f("s1", "v1", VideoStart, NOW - 5000, NOW - 5000).bitrate(800).id(id),
                f("s2", "v1", VideoStart, NOW - 3000, NOW - 3000),
            ]),
            NOW,
        );
        assert_eq!((again.kept, again.duplicates), (1, 1));
        let fig = w.figures(NOW);
        assert_eq!(fig.events, 3);
        assert_eq!(fig.metrics.error_rate, 1.0 / 3.0);
        assert_eq!(fig.metrics.concurrent_viewers, 1, "s1 ended with a fatal error, s2 watches");
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn a_copy_with_another_receive_time_counts_once_as_its_earliest_copy_in_the_window() {
        // A client retry received twice by the gateway: same id, two receive times.
        let id = Uuid::new_v4();
        let first = NOW - 59_500;
        let retry = NOW - 30_000;
        let mut w = window();
        // The later copy arrives first (another processor), then the earlier one.
        w.merge(&partial(&[f("s1", "v1", VideoError, retry, retry).id(id)]), NOW);
        w.merge(&partial(&[f("s1", "v1", VideoError, first, first).id(id)]), NOW);
        assert_eq!(w.len(), 2);
        let fig = w.figures(NOW);
        assert_eq!(fig.events, 1, "one event, counted once");
        // Once the first copy left the window, the retry is the earliest copy inside it.
        let later = NOW + 1_000;
        let fig = w.figures(later);
        assert_eq!(fig.events, 1);
        assert_eq!(w.len(), 1, "the first copy was evicted");
        // And after that one left too, nothing.
        assert_eq!(w.figures(retry + 60_000).events, 0);
        // Its bucket goes once the whole second has left.
        assert_eq!(w.len(), 1);
        w.evict(retry + 60_999);
        assert!(w.is_empty());
        assert_eq!(w.views(), 0);
        assert!(w.ids.is_empty());
    }

    #[test]
    fn window_is_open_at_the_start_and_closed_at_the_end() {
        let facts = [
            f("s1", "v1", VideoStart, NOW - 60_000, NOW - 60_000), // exactly now - 60 s: out
            f("s2", "v1", VideoStart, NOW - 59_999, NOW - 59_999), // in
            f("s3", "v1", VideoStart, NOW, NOW),                   // exactly now: in
            f("s4", "v1", VideoStart, NOW + 1, NOW + 1),           // after now: not yet
        ];
        let mut w = window();
        let merged = w.merge(&partial(&facts), NOW);
        assert_eq!((merged.kept, merged.outside), (3, 1));
        let fig = w.figures(NOW);
        assert_eq!((fig.events, fig.metrics.concurrent_viewers), (2, 2));
        // One millisecond later s2 has left and s4 has come in.
        let fig = w.figures(NOW + 1);
        assert_eq!(fig.events, 2);
        assert_eq!(w.views(), 3, "s2's second is still partly in the window");
        w.evict(NOW + 999);
        assert_eq!(w.views(), 2, "s2's view was freed with its bucket");
    }

    #[test]
    fn facts_far_in_the_future_are_refused() {
        let mut w = window();
        let merged = w.merge(&partial(&[f("s1", "v1", VideoStart, NOW, NOW + 60_001)]), NOW);
        assert_eq!((merged.kept, merged.outside), (0, 1));
        let merged = w.merge(&partial(&[f("s1", "v1", VideoStart, NOW, NOW + 60_000)]), NOW);
        assert_eq!(merged.kept, 1);
    }

    #[test]
    fn eviction_keeps_a_partly_covered_bucket() {
        let mut w = window();
        // NOW - 60_000 is a whole second: the bucket of NOW - 59_500 starts at it.
        w.merge(
            &partial(&[
                f("s1", "v1", VideoStart, 0, NOW - 60_500),
                f("s2", "v1", VideoStart, 0, NOW - 59_500),
                f("s3", "v1", VideoStart, 0, NOW - 58_000),
            ]),
            NOW - 1000,
        );
        w.evict(NOW);
        assert_eq!(w.len(), 2, "the bucket of NOW - 60.5 s went, the one starting at the window edge stayed");
        w.evict(NOW + 999);
        assert_eq!(w.len(), 1);
        assert_eq!(w.views(), 1);
    }

    #[test]
    fn latest_fact_is_by_client_time_then_receive_time_then_id() {
        // Client time wins over receive time: the complete happened before the progress.
        let fig = figures(
            &[
                f("s1", "v1", VideoProgress, NOW - 1000, NOW - 5000),
                f("s1", "v1", VideoComplete, NOW - 2000, NOW - 1000),
            ],
            NOW,
        );
        assert_eq!(fig.metrics.concurrent_viewers, 1);
        // Same client time: the later receive time wins.
        let fig = figures(
            &[f("s1", "v1", VideoProgress, NOW - 1000, NOW - 900), f("s1", "v1", VideoComplete, NOW - 1000, NOW - 800)],
            NOW,
        );
        assert_eq!(fig.metrics.concurrent_viewers, 0);
        // Same client and receive time: the larger id (as text) wins.
        let small = Uuid::parse_str("00000000-0000-4000-8000-000000000000").unwrap();
        let large = Uuid::parse_str("ffffffff-0000-4000-8000-000000000000").unwrap();
        assert!(small.hyphenated().to_string() < large.hyphenated().to_string());
        let fig = figures(
            &[
                f("s1", "v1", VideoComplete, NOW - 1000, NOW - 900).id(small),
                f("s1", "v1", VideoProgress, NOW - 1000, NOW - 900).id(large),
            ],
            NOW,
        );
        assert_eq!(fig.metrics.concurrent_viewers, 1);
        let fig = figures(
            &[
                f("s1", "v1", VideoComplete, NOW - 1000, NOW - 900).id(large),
                f("s1", "v1", VideoProgress, NOW - 1000, NOW - 900).id(small),
            ],
            NOW,
        );
        assert_eq!(fig.metrics.concurrent_viewers, 0);
    }

    #[test]
    fn uuid_order_is_the_order_of_its_text() {
        let mut ids: Vec<Uuid> = (0..200).map(|_| Uuid::new_v4()).collect();
        ids.extend((0..200).map(|_| Uuid::now_v7()));
        let mut by_bytes = ids.clone();
        by_bytes.sort();
        let mut by_text = ids;
        by_text.sort_by_key(|id| id.hyphenated().to_string());
        assert_eq!(by_bytes, by_text);
    }

    #[test]
    fn latest_state_only_looks_inside_the_window() {
        // The complete left the window; the view's latest event inside it is a progress.
        let mut w = window();
        w.merge(
            &partial(&[
                f("s1", "v1", VideoComplete, NOW + 10_000, NOW - 30_000),
                f("s1", "v1", VideoProgress, NOW - 5000, NOW - 5000),
            ]),
            NOW,
        );
        assert_eq!(w.figures(NOW).metrics.concurrent_viewers, 0);
        assert_eq!(w.figures(NOW + 30_000).metrics.concurrent_viewers, 1);
    }

    #[test]
    fn bitrate_is_the_latest_reported_one_carried_over_later_events() {
        let fig = figures(
            &[
                f("s1", "v1", VideoStart, NOW - 5000, NOW - 5000).bitrate(1000),
                f("s1", "v1", QualityChange, NOW - 4000, NOW - 4000).bitrate(4500),
                f("s1", "v1", VideoProgress, NOW - 3000, NOW - 3000),
                f("s1", "v1", VideoBuffer, NOW - 2000, NOW - 2000),
                // An older report received later does not replace the newer one.
                f("s1", "v1", VideoProgress, NOW - 4500, NOW - 1000).bitrate(300),
                f("s2", "v1", VideoStart, NOW - 5000, NOW - 5000),
            ],
            NOW,
        );
        assert_eq!(fig.metrics.concurrent_viewers, 2);
        assert_eq!(fig.metrics.bandwidth_gbps, 4500.0 / 1e6, "s2 reported none: 0");
        // An ended view's bitrate does not count.
        let fig = figures(
            &[
                f("s1", "v1", VideoStart, NOW - 5000, NOW - 5000).bitrate(1000),
                f("s1", "v1", VideoComplete, NOW - 4000, NOW - 4000),
            ],
            NOW,
        );
        assert_eq!(fig.metrics.bandwidth_gbps, 0.0);
    }

    #[test]
    fn only_a_fatal_error_ends_a_view_but_every_error_counts_in_the_error_rate() {
        let fig = figures(
            &[
                f("s1", "v1", VideoStart, NOW - 5000, NOW - 5000),
                f("s1", "v1", VideoError, NOW - 4000, NOW - 4000).non_fatal(),
                f("s2", "v2", VideoStart, NOW - 5000, NOW - 5000),
                f("s2", "v2", VideoError, NOW - 4000, NOW - 4000),
            ],
            NOW,
        );
        assert_eq!(fig.metrics.concurrent_viewers, 1);
        assert_eq!(fig.metrics.active_streams, 1);
        assert_eq!(fig.metrics.error_rate, 0.5);
        // A fatal flag on another event type does not end the view.
        let mut progress = f("s3", "v3", VideoProgress, NOW - 1000, NOW - 1000);
        progress.fatal = true;
        assert_eq!(figures(&[progress], NOW).metrics.concurrent_viewers, 1);
        // Playback after a fatal error (a new attempt in the same view) is live again.
        let fig = figures(
            &[f("s4", "v4", VideoError, NOW - 3000, NOW - 3000), f("s4", "v4", VideoResume, NOW - 2000, NOW - 2000)],
            NOW,
        );
        assert_eq!(fig.metrics.concurrent_viewers, 1);
    }

    #[test]
    fn a_session_watching_two_videos_is_two_views() {
        let fig = figures(
            &[f("s1", "v1", VideoStart, NOW - 3000, NOW - 3000), f("s1", "v2", VideoStart, NOW - 2000, NOW - 2000)],
            NOW,
        );
        assert_eq!((fig.metrics.concurrent_viewers, fig.metrics.active_streams), (2, 2));
    }

    #[test]
    fn top_videos_are_by_viewers_then_id_and_limited() {
        let mut w = Window::new(60, 1000, 2);
        let facts = [
            f("a", "v2", VideoStart, NOW - 1000, NOW - 1000),
            f("b", "v2", VideoStart, NOW - 1000, NOW - 1000),
            f("c", "v3", VideoStart, NOW - 1000, NOW - 1000),
            f("d", "v1", VideoStart, NOW - 1000, NOW - 1000),
            f("e", "v9", VideoStart, NOW - 1000, NOW - 1000),
            f("e", "v9", VideoComplete, NOW - 500, NOW - 500),
        ];
        w.merge(&partial(&facts), NOW);
        let fig = w.figures(NOW);
        assert_eq!(
            fig.top_videos,
            vec![TopVideo { video_id: "v2".into(), viewers: 2 }, TopVideo { video_id: "v1".into(), viewers: 1 }]
        );
        assert_eq!(fig.metrics.active_streams, 3, "the limit applies to the list only");
    }

    #[test]
    fn invalid_view_index_and_capacity_are_counted() {
        let mut p = partial(&[f("s1", "v1", VideoStart, NOW, NOW)]);
        p.events[0].view = 7;
        let mut w = Window::new(60, 2, 10);
        assert_eq!(w.merge(&p, NOW).invalid, 1);
        let merged = w.merge(
            &partial(&[
                f("s1", "v1", VideoStart, NOW, NOW),
                f("s2", "v1", VideoStart, NOW, NOW),
                f("s3", "v1", VideoStart, NOW, NOW),
            ]),
            NOW,
        );
        assert_eq!((merged.kept, merged.over_capacity), (2, 1));
    }

    #[test]
    fn memory_is_bounded_by_the_window() {
        let mut w = window();
        // Ten minutes of 20 events a second over 50 rotating views, merged and evicted as time passes.
        for second in 0..600u64 {
            let now = NOW + second * 1000;
            let facts: Vec<F> = (0..20)
                .map(|i| {
                    let session = ["a", "b", "c", "d", "e"][((second + i) % 5) as usize];
                    let video = ["v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9"][(i % 10) as usize];
                    f(session, video, VideoProgress, now - i, now - i)
                })
                .collect();
            w.merge(&partial(&facts), now);
            let fig = w.figures(now);
            assert!(w.len() <= 61 * 20, "{} facts held", w.len());
            if second >= 60 {
                assert_eq!(fig.events, 1200);
            }
        }
        assert!(w.views() <= 50);
        assert!(w.ids.len() <= 61 * 20);
        assert!(w.buckets.len() <= 61);
        assert!(w.views.videos.index.len() <= 10 && w.views.videos.capacity() <= 10);
    }

    #[test]
    fn views_and_videos_are_freed_with_their_last_fact_and_their_slots_reused() {
        let mut w = window();
        w.merge(
            &partial(&[
                f("s1", "v1", VideoStart, NOW - 5000, NOW - 5000),
                f("s2", "v1", VideoStart, NOW - 5000, NOW - 5000),
                f("s3", "v2", VideoStart, NOW - 1000, NOW - 1000),
            ]),
            NOW,
        );
        assert_eq!((w.views(), w.views.videos.index.len()), (3, 2));
        // s1 and s2 leave the window, and v1 with them; s3 and v2 stay.
        let later = NOW + 56_000;
        let fig = w.figures(later);
        assert_eq!(fig.top_videos, vec![TopVideo { video_id: "v2".into(), viewers: 1 }]);
        assert_eq!((w.views(), w.views.videos.index.len()), (1, 1));
        // A new video takes the freed slot, and counts under its own name.
        w.merge(&partial(&[f("s4", "v3", VideoStart, later - 10, later - 10)]), later);
        assert_eq!(w.views.videos.capacity(), 2, "the slot of v1 is reused");
        let fig = w.figures(later);
        assert_eq!(
            fig.top_videos,
            vec![TopVideo { video_id: "v2".into(), viewers: 1 }, TopVideo { video_id: "v3".into(), viewers: 1 }]
        );
        assert_eq!(fig.metrics.active_streams, 2);
    }
}
