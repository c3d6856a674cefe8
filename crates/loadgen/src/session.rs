//! One simulated viewer session: a small state machine on the wall clock.
//!
//! A session plays one video, sometimes several in a row (autoplay), each a
//! *view* opened by `video_start`. While playing it sends `video_progress`
//! every [`HEARTBEAT_SECONDS`] of playhead; incidents (stalls, quality
//! switches, seeks, pauses, errors) arrive at random with fixed rates per
//! second of playback; the viewer leaves at the end (`video_complete`), at a
//! point they chose when the view began (abandon), on a fatal error, or before
//! playback even started.
//!
//! [`Session::step`] performs the step due at [`Session::due_ms`] and
//! schedules the next one. Everything comes from the session's own generators,
//! so a session's events depend only on its seed and its start time, never on
//! when it is polled or on other sessions.

use events_model::EventType;

use crate::catalog::{
    CDN_WEIGHTS, CDNS, COUNTRIES, COUNTRY_WEIGHTS, Catalog, FATAL_ERRORS, LADDER, PLATFORM_WEIGHTS, PLATFORMS,
    RECOVERABLE_ERRORS,
};
use crate::event::{GeneratedEvent, Props, SessionId, UserId, VideoId};
use crate::rng::{Rng, mix};

/// Seconds of playhead between two `video_progress` heartbeats.
pub const HEARTBEAT_SECONDS: f64 = 10.0;
const HEARTBEAT_MS: i64 = 10_000;

/// Most views one session plays back to back.
const MAX_VIEWS: u8 = 5;

/// Behaviour probabilities and rates; see the module documentation.
mod odds {
    /// Share of views the viewer leaves before the first frame.
    pub const EXIT_BEFORE_START: f64 = 0.05;
    /// Share of views that fail fatally before the first frame.
    pub const STARTUP_FAILURE: f64 = 0.012;
    /// Share of started views whose `video_start` carries `startup_time_ms`.
    pub const STARTUP_REPORTED: f64 = 0.85;
    /// Share of views watched to the end, by video length.
    pub const WATCH_TO_END: [(f64, f64); 3] = [(300.0, 0.45), (1500.0, 0.30), (f64::INFINITY, 0.15)];
    /// Share of completed views followed by another video (autoplay).
    pub const AUTOPLAY: f64 = 0.3;
    /// Share of abandons that send a `video_pause` (the page closes).
    pub const PAUSE_ON_LEAVE: f64 = 0.35;
    /// Share of pauses the viewer never comes back from.
    pub const LEAVE_WHILE_PAUSED: f64 = 0.15;
    /// Share of seeks followed by a short stall.
    pub const STALL_AFTER_SEEK: f64 = 0.4;
    /// Share of fatal errors that leave `fatal` out (it defaults to true).
    pub const FATAL_IMPLICIT: f64 = 0.3;

    /// Incidents per second of playback.
    pub const BUFFER: f64 = 1.0 / 600.0;
    /// Stalls are ten times as frequent above the sustainable rendition.
    pub const BUFFER_OVERSHOOT: f64 = 1.0 / 60.0;
    pub const SWITCH_TOWARDS_NETWORK: f64 = 1.0 / 20.0;
    pub const SWITCH_NETWORK_CHANGE: f64 = 1.0 / 400.0;
    pub const SEEK: f64 = 1.0 / 500.0;
    pub const PAUSE: f64 = 1.0 / 700.0;
    pub const RECOVERABLE_ERROR: f64 = 1.0 / 4000.0;
    pub const FATAL_ERROR: f64 = 1.0 / 30_000.0;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Incident {
    Buffer,
    QualityChange,
    Seek,
    Pause,
    RecoverableError,
    FatalError,
}

/// What happens at [`Session::due_ms`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// `video_start` of a new view.
    Start,
    /// The first frame: `video_progress` at position 0.
    FirstFrame,
    /// `video_error` (fatal) before the first frame.
    StartupFailure,
    /// `video_progress`.
    Heartbeat,
    /// Something happens while playing.
    Incident(Incident),
    /// A stall ends: `video_buffer` with its length.
    BufferEnd { stall_ms: u32 },
    /// `video_resume` after a pause.
    Resume,
    /// The playhead reaches the end: `video_complete`.
    Complete,
    /// The viewer leaves mid-video.
    Abandon,
    /// Nothing more: the session has ended.
    Done,
}

/// How a view begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    Plays,
    ExitsBeforeStart,
    FailsToStart,
}

/// One viewer's session. Create with [`Session::new`], then call
/// [`Session::step`] whenever [`Session::due_ms`] has come.
#[derive(Debug, Clone)]
pub struct Session {
    /// Behaviour: depends on the seed only.
    rng: Rng,
    /// Event ids: depends on the seed and the run's salt.
    ids: Rng,
    id: SessionId,
    user: Option<UserId>,
    platform: u8,
    country: u8,
    cdn: u8,
    /// Best rendition the connection sustains, index into [`LADDER`].
    network_rung: u8,
    /// Current rendition.
    rung: u8,
    video: VideoId,
    duration_ms: i64,
    views: u8,
    opening: Opening,
    startup_ms: u32,
    report_startup: bool,
    /// Playhead at `due_ms`, milliseconds of content.
    position_ms: i64,
    /// Playhead at the last heartbeat (or seek).
    last_beat_ms: i64,
    /// Milliseconds of playback before the viewer leaves (`i64::MAX`: to the end).
    watch_left_ms: i64,
    due_ms: i64,
    next: Next,
}

impl Session {
    /// A session beginning at `start_ms` (its `video_start`). `seed` decides
    /// its behaviour; `salt` (different for every run) its session and event
    /// ids, so that two runs with the same seed never share an id.
    pub fn new(seed: u64, salt: u64, start_ms: i64, catalog: &Catalog, anonymous_share: f64) -> Self {
        let mut rng = Rng::new(seed);
        let mut ids = Rng::new(mix(seed ^ mix(salt ^ 0x0049_4453))); // "IDS"
        let id = SessionId(ids.next_u64());
        let (user, platform, country) = if rng.chance(anonymous_share) {
            (None, rng.weighted(&PLATFORM_WEIGHTS) as u8, rng.weighted(&COUNTRY_WEIGHTS) as u8)
        } else {
            let user = catalog.pick_user(&mut rng);
            let profile = catalog.user_profile(user);
            // People mostly watch on their usual device.
            let platform = if rng.chance(0.8) { profile.platform } else { rng.weighted(&PLATFORM_WEIGHTS) as u8 };
            (Some(UserId(user)), platform, profile.country)
        };
        let max_rung = PLATFORMS[usize::from(platform)].max_rung;
        let network_rung = (1 + rng.below(u64::from(max_rung))) as u8;
        let mut session = Session {
            cdn: rng.weighted(&CDN_WEIGHTS) as u8,
            rng,
            ids,
            id,
            user,
            platform,
            country,
            network_rung,
            // Players start low and climb.
            rung: network_rung.min(2),
            video: VideoId(0),
            duration_ms: 0,
            views: 0,
            opening: Opening::Plays,
            startup_ms: 0,
            report_startup: false,
            position_ms: 0,
            last_beat_ms: 0,
            watch_left_ms: 0,
            due_ms: start_ms,
            next: Next::Start,
        };
        let video = catalog.pick_video(&mut session.rng);
        session.begin_view(video, catalog, start_ms);
        session
    }

    pub fn id(&self) -> SessionId {
        self.id
    }

    /// When the next step is due (epoch ms); `None` once the session ended.
    pub fn due_ms(&self) -> Option<i64> {
        (self.next != Next::Done).then_some(self.due_ms)
    }

    pub fn is_done(&self) -> bool {
        self.next == Next::Done
    }

    /// Whether the view has begun (or is about to) and its first frame is
    /// still to come.
    pub fn awaiting_first_frame(&self) -> bool {
        matches!(self.next, Next::Start | Next::FirstFrame) && self.opening == Opening::Plays
    }

    /// Performs the step due now, returning its event (a step may send
    /// nothing, e.g. when a stall begins or the viewer leaves silently), and
    /// schedules the next one strictly later.
    pub fn step(&mut self, catalog: &Catalog) -> Option<GeneratedEvent> {
        match self.next {
            Next::Done => None,
            Next::Start => {
                let mut props = self.playing_props();
                if self.report_startup {
                    props.startup_time_ms = Some(self.startup_ms);
                }
                let event = self.event(EventType::VideoStart, props);
                match self.opening {
                    Opening::ExitsBeforeStart => self.next = Next::Done,
                    Opening::FailsToStart => {
                        let wait = self.rng.between(1_500.0, 8_000.0) as i64;
                        self.schedule(wait, Next::StartupFailure);
                    }
                    Opening::Plays => self.schedule(i64::from(self.startup_ms), Next::FirstFrame),
                }
                Some(event)
            }
            Next::FirstFrame | Next::Heartbeat => {
                let mut props = self.playing_props();
                props.bitrate_kbps = Some(self.measured_bitrate());
                let event = self.event(EventType::VideoProgress, props);
                self.last_beat_ms = self.position_ms;
                self.schedule_playing();
                Some(event)
            }
            Next::StartupFailure => {
                let event = self.fatal_error();
                self.next = Next::Done;
                Some(event)
            }
            Next::Incident(incident) => self.incident(incident),
            Next::BufferEnd { stall_ms } => {
                let mut props = self.playing_props();
                props.buffer_duration_ms = Some(stall_ms);
                let event = self.event(EventType::VideoBuffer, props);
                self.schedule_playing();
                Some(event)
            }
            Next::Resume => {
                let event = self.event(EventType::VideoResume, self.playing_props());
                self.schedule_playing();
                Some(event)
            }
            Next::Complete => {
                let mut props = self.base_props();
                props.quality = Some(LADDER[usize::from(self.rung)].0);
                let event = self.event(EventType::VideoComplete, props);
                if self.views < MAX_VIEWS && self.rng.chance(odds::AUTOPLAY) {
                    let countdown = self.rng.between(3_000.0, 10_000.0) as i64;
                    let mut video = catalog.pick_video(&mut self.rng);
                    if video == self.video.0 {
                        video = (video + 1) % catalog.videos.len() as u32;
                    }
                    if video == self.video.0 {
                        // A one-video catalog: a second view would merge with the first.
                        self.next = Next::Done;
                    } else {
                        self.begin_view(video, catalog, self.due_ms + countdown);
                    }
                } else {
                    self.next = Next::Done;
                }
                Some(event)
            }
            Next::Abandon => {
                self.next = Next::Done;
                if self.rng.chance(odds::PAUSE_ON_LEAVE) {
                    Some(self.event(EventType::VideoPause, self.paused_props()))
                } else {
                    None
                }
            }
        }
    }

    fn incident(&mut self, incident: Incident) -> Option<GeneratedEvent> {
        match incident {
            Incident::Buffer => {
                let stall_ms = self.rng.exp(1_800.0).clamp(200.0, 15_000.0) as u32;
                self.schedule(i64::from(stall_ms), Next::BufferEnd { stall_ms });
                None
            }
            Incident::QualityChange => {
                let from = self.rung;
                if from == self.network_rung {
                    // The connection changed.
                    let max = PLATFORMS[usize::from(self.platform)].max_rung;
                    let up = self.network_rung < max && (self.network_rung == 0 || self.rng.chance(0.5));
                    self.network_rung = if up { self.network_rung + 1 } else { self.network_rung - 1 };
                }
                self.rung = if self.network_rung > from { from + 1 } else { from - 1 };
                let mut props = self.playing_props();
                props.from_quality = Some(LADDER[usize::from(from)].0);
                props.to_quality = Some(LADDER[usize::from(self.rung)].0);
                let event = self.event(EventType::QualityChange, props);
                self.schedule_playing();
                Some(event)
            }
            Incident::Seek => {
                let from = self.position_ms;
                let forward = self.duration_ms - from > 30_000 && self.rng.chance(0.7);
                let to = if forward {
                    (from + self.rng.between(10_000.0, 300_000.0) as i64).min(self.duration_ms - 5_000)
                } else {
                    (from - self.rng.between(5_000.0, 120_000.0) as i64).max(0)
                };
                let mut props = self.playing_props();
                props.seek_from_seconds = Some(seconds(from));
                props.seek_to_seconds = Some(seconds(to));
                props.position_seconds = Some(seconds(to));
                self.position_ms = to;
                self.last_beat_ms = to;
                let event = self.event(EventType::Seek, props);
                if self.rng.chance(odds::STALL_AFTER_SEEK) {
                    let stall_ms = self.rng.between(150.0, 1_500.0) as u32;
                    self.schedule(i64::from(stall_ms), Next::BufferEnd { stall_ms });
                } else {
                    self.schedule_playing();
                }
                Some(event)
            }
            Incident::Pause => {
                let event = self.event(EventType::VideoPause, self.paused_props());
                if self.rng.chance(odds::LEAVE_WHILE_PAUSED) {
                    self.next = Next::Done;
                } else {
                    let pause_ms = self.rng.exp(25_000.0).clamp(1_000.0, 900_000.0) as i64;
                    self.schedule(pause_ms, Next::Resume);
                }
                Some(event)
            }
            Incident::RecoverableError => {
                let (code, message) = RECOVERABLE_ERRORS[self.rng.below(RECOVERABLE_ERRORS.len() as u64) as usize];
                let mut props = self.playing_props();
                props.error_code = Some(code);
                props.error_message = Some(message);
                props.fatal = Some(false);
                let event = self.event(EventType::VideoError, props);
                self.schedule_playing();
                Some(event)
            }
            Incident::FatalError => {
                let event = self.fatal_error();
                self.next = Next::Done;
                Some(event)
            }
        }
    }

    /// Starts view number `views + 1` of `video` at `at_ms`.
    fn begin_view(&mut self, video: u32, catalog: &Catalog, at_ms: i64) {
        self.views += 1;
        self.video = VideoId(video);
        self.duration_ms = (catalog.video(video).duration_seconds * 1000.0) as i64;
        self.position_ms = 0;
        self.last_beat_ms = 0;
        self.opening = match self.rng.unit() {
            u if u < odds::EXIT_BEFORE_START => Opening::ExitsBeforeStart,
            u if u < odds::EXIT_BEFORE_START + odds::STARTUP_FAILURE => Opening::FailsToStart,
            _ => Opening::Plays,
        };
        // 300 to 3000 ms, most of them short.
        self.startup_ms = (300.0 + 2_700.0 * self.rng.unit().powf(2.5)).round() as u32;
        self.report_startup = self.opening == Opening::Plays && self.rng.chance(odds::STARTUP_REPORTED);
        let duration = self.duration_ms as f64 / 1000.0;
        let to_end = odds::WATCH_TO_END.iter().find(|(below, _)| duration < *below).map_or(0.15, |(_, p)| *p);
        self.watch_left_ms = if self.rng.chance(to_end) {
            i64::MAX
        } else {
            // Most abandons come early.
            ((duration * (0.02 + 0.93 * self.rng.unit().powf(1.3))).max(5.0) * 1000.0) as i64
        };
        self.due_ms = at_ms;
        self.next = Next::Start;
    }

    /// While playing from `due_ms` at `position_ms`: the next heartbeat, the
    /// end, the viewer leaving, or an incident, whichever comes first (ties in
    /// that order).
    fn schedule_playing(&mut self) {
        let rates = self.incident_rates();
        let total: f64 = rates.iter().map(|(_, rate)| rate).sum();
        let to_incident = (self.rng.exp(1.0 / total) * 1000.0).round().min(1e15) as i64;
        let mut next = (self.duration_ms - self.position_ms, Next::Complete);
        for candidate in [
            (self.watch_left_ms, Next::Abandon),
            (self.last_beat_ms + HEARTBEAT_MS - self.position_ms, Next::Heartbeat),
            (to_incident, Next::Incident(Incident::Buffer)),
        ] {
            if candidate.0 < next.0 {
                next = candidate;
            }
        }
        let (played_ms, mut what) = next;
        if matches!(what, Next::Incident(_)) {
            let mut x = self.rng.unit() * total;
            let mut chosen = rates[0].0;
            for (incident, rate) in rates {
                chosen = incident;
                if x < rate {
                    break;
                }
                x -= rate;
            }
            what = Next::Incident(chosen);
        }
        let played_ms = played_ms.max(0);
        self.position_ms += played_ms;
        self.watch_left_ms = self.watch_left_ms.saturating_sub(played_ms);
        self.schedule(played_ms, what);
    }

    fn incident_rates(&self) -> [(Incident, f64); 6] {
        let overshoot = self.rung > self.network_rung;
        [
            (Incident::Buffer, if overshoot { odds::BUFFER_OVERSHOOT } else { odds::BUFFER }),
            (
                Incident::QualityChange,
                if self.rung == self.network_rung { odds::SWITCH_NETWORK_CHANGE } else { odds::SWITCH_TOWARDS_NETWORK },
            ),
            (Incident::Seek, if self.duration_ms - self.position_ms > 10_000 { odds::SEEK } else { 0.0 }),
            (Incident::Pause, odds::PAUSE),
            (Incident::RecoverableError, odds::RECOVERABLE_ERROR),
            (Incident::FatalError, odds::FATAL_ERROR),
        ]
    }

    fn schedule(&mut self, after_ms: i64, next: Next) {
        self.due_ms += after_ms.max(1);
        self.next = next;
    }

    fn fatal_error(&mut self) -> GeneratedEvent {
        let (code, message) = FATAL_ERRORS[self.rng.below(FATAL_ERRORS.len() as u64) as usize];
        let mut props = self.paused_props();
        props.error_code = Some(code);
        props.error_message = Some(message);
        props.fatal = if self.rng.chance(odds::FATAL_IMPLICIT) { None } else { Some(true) };
        self.event(EventType::VideoError, props)
    }

    /// The bitrate a heartbeat reports: the rendition's, give or take.
    fn measured_bitrate(&mut self) -> u32 {
        let nominal = f64::from(LADDER[usize::from(self.rung)].1);
        (nominal * self.rng.between(0.85, 1.1)).round() as u32
    }

    /// Device, position and duration: on every event.
    fn base_props(&self) -> Props {
        let platform = &PLATFORMS[usize::from(self.platform)];
        Props {
            position_seconds: Some(seconds(self.position_ms)),
            duration_seconds: Some(seconds(self.duration_ms)),
            device_type: platform.device_type,
            browser: platform.browser,
            os: platform.os,
            player: platform.player,
            country: COUNTRIES[usize::from(self.country)],
            cdn: CDNS[usize::from(self.cdn)],
            ..Props::default()
        }
    }

    /// While the stream flows: rendition and its bitrate too.
    fn playing_props(&self) -> Props {
        let (quality, bitrate) = LADDER[usize::from(self.rung)];
        Props { quality: Some(quality), bitrate_kbps: Some(bitrate), ..self.base_props() }
    }

    /// Paused or stopped: the rendition, but no bitrate (nothing flows).
    fn paused_props(&self) -> Props {
        Props { quality: Some(LADDER[usize::from(self.rung)].0), ..self.base_props() }
    }

    fn event(&mut self, event_type: EventType, properties: Props) -> GeneratedEvent {
        GeneratedEvent {
            event_id: self.ids.uuid(),
            event_type,
            timestamp_ms: self.due_ms,
            user: self.user,
            session: self.id,
            video: self.video,
            properties,
        }
    }
}

/// Milliseconds as seconds (exact to the millisecond in JSON).
fn seconds(millis: i64) -> f64 {
    millis as f64 / 1000.0
}
