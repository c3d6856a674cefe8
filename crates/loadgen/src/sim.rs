//! The population of live sessions and the control of its size.
//!
//! [`Simulator::poll`] is the event stream: given the wall clock, it starts
//! the sessions the [`RateController`] asks for and returns every event due
//! by then, in time order. It is a pure function of its configuration and the
//! sequence of `poll` times: the same seed polled at the same times gives the
//! same events.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
    sync::Arc,
};

use events_model::EventType;

use crate::catalog::Catalog;
use crate::event::GeneratedEvent;
use crate::rng::{Rng, mix};
use crate::session::Session;

/// What the simulated audience looks like.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Decides the catalog and every session's behaviour.
    pub seed: u64,
    /// Decides the session and event ids together with the seed; give every
    /// run its own (e.g. its start time), so that two runs with the same
    /// seed never send the same ids (the pipeline would drop them as
    /// duplicates).
    pub salt: u64,
    /// Target events per second.
    pub rate: f64,
    pub videos: usize,
    pub users: usize,
    /// Share of sessions without a `user_id`.
    pub anonymous_share: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self { seed: 1, salt: 0, rate: 200.0, videos: 200, users: 2_000, anonymous_share: 0.2 }
    }
}

/// Events per second one session sends, on average, before any was measured:
/// a heartbeat every 10 s of playback, plus starts, ends and incidents,
/// minus paused time (measured: about 0.105 in steady state).
pub const PRIOR_EVENTS_PER_SESSION_SECOND: f64 = 0.105;

/// Events a new session sends within its first seconds: `video_start`, then
/// the first frame's `video_progress`.
const EVENTS_PER_START: f64 = 2.0;
/// The window over which the recent rate is compared with the target.
const RECENT_MS: i64 = 1_000;
/// How long after the start the per-session rate starts being measured
/// (the first sessions' heartbeats begin after 10 s).
const WARMUP_MS: i64 = 20_000;
/// One measurement window of the per-session rate.
const WINDOW_MS: i64 = 10_000;
/// Weight of a new window in the estimate.
const SMOOTHING: f64 = 0.3;

/// Sizes the session population so that it sends `rate` events per second.
///
/// *Target.* A session sends about [`PRIOR_EVENTS_PER_SESSION_SECOND`] events
/// per second, so the population is capped at `rate / per_session` sessions
/// (≈ rate × 10 s of heartbeat interval); finished sessions are replaced.
///
/// *Ramp.* A new session sends two events at once (`video_start`, then the
/// first frame) but its first heartbeat only 10 s later, so starting the
/// whole population at a constant pace would overshoot the rate about
/// twofold. Instead, sessions are started only while the events of the last
/// second (first frames counted at their start) fall short of the target:
/// the rate is at the target from the first second, and the population
/// climbs as the early sessions' heartbeats take over (≈ 95 % after 40 s).
///
/// *Calibration.* From 20 s on, the per-session rate is measured over 10 s
/// windows and smoothed into the estimate, so the cap, and with it the
/// achieved rate, converges on the target (the ramp's rule alone would drift
/// upwards: it adds sessions when a second falls short, and never removes
/// any when one runs over). Windows
/// in which the simulator fell behind the clock (events left undelivered)
/// are discarded, since they measure the sender, not the sessions; no
/// session is started while behind.
#[derive(Debug, Clone)]
pub struct RateController {
    target_rate: f64,
    start_ms: i64,
    per_session: f64,
    /// Events per poll over the last [`RECENT_MS`].
    recent: VecDeque<(i64, u64)>,
    recent_events: u64,
    behind: bool,
    last_ms: i64,
    window_start_ms: i64,
    window_events: u64,
    window_session_ms: f64,
    window_behind: bool,
}

impl RateController {
    pub fn new(target_rate: f64, start_ms: i64) -> Self {
        Self {
            target_rate: target_rate.max(0.0),
            start_ms,
            per_session: PRIOR_EVENTS_PER_SESSION_SECOND,
            recent: VecDeque::new(),
            recent_events: 0,
            behind: false,
            last_ms: start_ms,
            window_start_ms: start_ms,
            window_events: 0,
            window_session_ms: 0.0,
            window_behind: false,
        }
    }

    /// The current estimate of events per second per session.
    pub fn per_session_rate(&self) -> f64 {
        self.per_session
    }

    /// Sessions needed for the target rate at the current estimate.
    pub fn target_sessions(&self) -> usize {
        (self.target_rate / self.per_session).ceil() as usize
    }

    /// How many sessions to start at `now_ms` when `active` run.
    pub fn sessions_to_start(&self, now_ms: i64, active: usize) -> usize {
        let room = self.target_sessions().saturating_sub(active);
        if room == 0 || self.behind {
            return 0;
        }
        let span = (now_ms - self.start_ms).clamp(0, RECENT_MS) as f64 / 1000.0;
        let due = self.target_rate * span - self.recent_events as f64;
        if due <= 0.0 {
            return 0;
        }
        room.min((due / EVENTS_PER_START).ceil() as usize)
    }

    /// Records that `events` were sent since the last call, `active`
    /// sessions running; `behind` when due events were left for later.
    /// `credited` is `events` with each first frame counted at its view's
    /// start instead (a playing view's `video_start` counts twice, its
    /// first frame not at all), so that the ramp does not start sessions
    /// for first frames already on their way.
    pub fn observe(&mut self, now_ms: i64, events: u64, credited: u64, active: usize, behind: bool) {
        self.behind = behind;
        self.recent.push_back((now_ms, credited));
        self.recent_events += credited;
        while let Some(&(at, n)) = self.recent.front() {
            if at > now_ms - RECENT_MS {
                break;
            }
            self.recent.pop_front();
            self.recent_events -= n;
        }

        let dt = (now_ms - self.last_ms).max(0);
        self.last_ms = now_ms;
        if now_ms - self.start_ms < WARMUP_MS {
            self.window_start_ms = now_ms;
            return;
        }
        self.window_events += events;
        self.window_session_ms += active as f64 * dt as f64;
        self.window_behind |= behind;
        if now_ms - self.window_start_ms < WINDOW_MS {
            return;
        }
        if !self.window_behind && self.window_session_ms > 0.0 {
            let measured = self.window_events as f64 / (self.window_session_ms / 1000.0);
            self.per_session += SMOOTHING * (measured - self.per_session);
            self.per_session = self.per_session.clamp(0.02, 0.5);
        }
        self.window_start_ms = now_ms;
        self.window_events = 0;
        self.window_session_ms = 0.0;
        self.window_behind = false;
    }
}

/// What one [`Simulator::poll`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Poll {
    /// Events appended to the output.
    pub events: usize,
    /// Sessions started.
    pub started: usize,
    /// Whether due events remain (the output limit was reached).
    pub behind: bool,
}

/// Counters since the simulator began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCounters {
    pub sessions_started: u64,
    pub sessions_ended: u64,
    pub events: u64,
    /// Events by type, in [`EventType::ALL`] order.
    pub by_type: [u64; 9],
}

/// The live audience: sessions started on demand, stepped when due.
#[derive(Debug)]
pub struct Simulator {
    config: SimConfig,
    catalog: Arc<Catalog>,
    seeds: Rng,
    slots: Vec<Option<Session>>,
    free: Vec<u32>,
    /// (due, session serial, slot): earliest first, ties by creation order.
    due: BinaryHeap<Reverse<(i64, u64, u32)>>,
    serial: u64,
    controller: RateController,
    last_poll_ms: i64,
    counters: SimCounters,
}

impl Simulator {
    /// An empty audience at `start_ms` (epoch milliseconds); sessions start
    /// from the first [`poll`](Self::poll) on.
    pub fn new(config: SimConfig, start_ms: i64) -> Self {
        let catalog = Arc::new(Catalog::new(config.seed, config.videos, config.users));
        let controller = RateController::new(config.rate, start_ms);
        Self {
            seeds: Rng::new(mix(config.seed ^ 0x5345_5353_494F_4E53)), // "SESSIONS"
            config,
            catalog,
            slots: Vec::new(),
            free: Vec::new(),
            due: BinaryHeap::new(),
            serial: 0,
            controller,
            last_poll_ms: start_ms,
            counters: SimCounters::default(),
        }
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    pub fn controller(&self) -> &RateController {
        &self.controller
    }

    /// Sessions running now.
    pub fn active_sessions(&self) -> usize {
        self.due.len()
    }

    pub fn counters(&self) -> SimCounters {
        self.counters
    }

    /// The earliest due step, if any session runs.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.due.peek().map(|Reverse((due, _, _))| *due)
    }

    /// Starts the sessions the controller asks for (spread evenly since the
    /// previous poll; their `video_start` is due at once), then appends to `out` every event due at `now_ms`, in
    /// time order, at most `max_events` of them; the rest stay due.
    pub fn poll(&mut self, now_ms: i64, max_events: usize, out: &mut Vec<GeneratedEvent>) -> Poll {
        let now_ms = now_ms.max(self.last_poll_ms);
        let starts = self.controller.sessions_to_start(now_ms, self.active_sessions());
        let span = now_ms - self.last_poll_ms;
        for i in 0..starts {
            let at = self.last_poll_ms + span * (i as i64 + 1) / starts as i64;
            self.start_session(at);
        }
        self.last_poll_ms = now_ms;

        let mut events = 0;
        let mut credited = 0;
        while events < max_events {
            let Some(&Reverse((due, serial, slot))) = self.due.peek() else { break };
            if due > now_ms {
                break;
            }
            self.due.pop();
            let session = self.slots[slot as usize].as_mut().expect("a due session is live");
            let was_awaiting = session.awaiting_first_frame();
            let stepped = session.step(&self.catalog);
            if let Some(event) = stepped {
                match event.event_type {
                    EventType::VideoStart if was_awaiting => credited += 2,
                    EventType::VideoProgress if was_awaiting => {}
                    _ => credited += 1,
                }
                self.counters.events += 1;
                let kind = EventType::ALL.iter().position(|t| *t == event.event_type).unwrap_or(0);
                self.counters.by_type[kind] += 1;
                out.push(event);
                events += 1;
            }
            match session.due_ms() {
                Some(next) => self.due.push(Reverse((next, serial, slot))),
                None => {
                    self.slots[slot as usize] = None;
                    self.free.push(slot);
                    self.counters.sessions_ended += 1;
                }
            }
        }
        let behind = self.next_due_ms().is_some_and(|due| due <= now_ms);
        self.controller.observe(now_ms, events as u64, credited, self.active_sessions(), behind);
        Poll { events, started: starts, behind }
    }

    fn start_session(&mut self, at_ms: i64) {
        let seed = self.seeds.next_u64();
        let session = Session::new(seed, self.config.salt, at_ms, &self.catalog, self.config.anonymous_share);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(session);
                slot
            }
            None => {
                self.slots.push(Some(session));
                (self.slots.len() - 1) as u32
            }
        };
        self.due.push(Reverse((at_ms, self.serial, slot)));
        self.serial += 1;
        self.counters.sessions_started += 1;
    }
}
