//! The hub's shared state: the realtime window, the event feed, the latest
//! figures and their history, and the connection count.
//!
//! Data flow: the partials reader merges into the [`Window`]; every
//! `metrics_interval` (aligned to the wall clock, so replicas compute the
//! same windows) the ticker computes the figures and publishes a
//! [`Snapshot`] on a `watch` channel; the raw-events reader publishes each
//! event once on a bounded `broadcast` channel. Client tasks subscribe to
//! both, and `GET /api/metrics/realtime` answers the last snapshot's
//! pre-serialised payload ([`Hub::realtime_body`]): a request never
//! computes the window once the first tick has run.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::web::Bytes;
use events_model::{Event, RealtimePartial};
use metrics::{counter, gauge, histogram};
use service_kit::{Probe, Shutdown, ops::ProbeFuture};
use tokio::sync::{broadcast, watch};

use crate::{
    config::HubConfig,
    consumer::{ReaderStatus, now_ms},
    feed::{FeedEvent, RecentIds},
    protocol,
    telemetry::{self, COMPUTE, CONNECTIONS_REJECTED, CONSUMED, FACTS, WINDOW_FACTS, WINDOW_VIEWS},
    window::{Figures, RealtimeMetrics, TopVideo, Window},
};

/// The figures of one tick, with their messages serialised once for all clients.
#[derive(Debug)]
pub struct Snapshot {
    pub metrics: RealtimeMetrics,
    pub top_videos: Vec<TopVideo>,
    /// The `realtime_metrics` WebSocket message.
    pub metrics_message: Arc<str>,
    /// The `top_videos` WebSocket message.
    pub top_videos_message: Arc<str>,
    /// The `realtime_metrics` payload alone (the JSON of `metrics`): the body
    /// of `GET /api/metrics/realtime`, shared by every request until the next tick.
    pub metrics_body: Bytes,
}

pub struct Hub {
    pub config: HubConfig,
    pub shutdown: Shutdown,
    window: Mutex<Window>,
    feed: broadcast::Sender<Arc<FeedEvent>>,
    recent_ids: Mutex<RecentIds>,
    snapshot: watch::Sender<Option<Arc<Snapshot>>>,
    history: Mutex<VecDeque<RealtimeMetrics>>,
    connections: AtomicUsize,
    computations: AtomicU64,
    pub raw_status: Arc<ReaderStatus>,
    pub partials_status: Arc<ReaderStatus>,
}

impl Hub {
    pub fn new(
        config: HubConfig,
        shutdown: Shutdown,
        raw_status: Arc<ReaderStatus>,
        partials_status: Arc<ReaderStatus>,
    ) -> Self {
        let window = Window::new(config.window.as_secs(), config.max_window_facts, config.top_videos);
        let (feed, _) = broadcast::channel(config.feed_buffer);
        let (snapshot, _) = watch::channel(None);
        Self {
            window: Mutex::new(window),
            feed,
            recent_ids: Mutex::new(RecentIds::new(config.feed_dedupe_ids)),
            snapshot,
            history: Mutex::new(VecDeque::with_capacity(config.history_len().min(100_000))),
            connections: AtomicUsize::new(0),
            computations: AtomicU64::new(0),
            config,
            shutdown,
            raw_status,
            partials_status,
        }
    }

    /// Merges one message of the partials topic.
    pub fn merge_partial(&self, bytes: &[u8]) {
        let partial = match RealtimePartial::from_json(bytes) {
            Ok(partial) => partial,
            Err(error) => {
                counter!(CONSUMED, "topic" => "partials", "outcome" => "invalid").increment(1);
                tracing::warn!(error = %error, "invalid realtime partial skipped");
                return;
            }
        };
        counter!(CONSUMED, "topic" => "partials", "outcome" => "ok").increment(1);
        let merged = {
            let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
            window.merge(&partial, now_ms())
        };
        for (outcome, count) in [
            ("kept", merged.kept),
            ("duplicate", merged.duplicates),
            ("outside_window", merged.outside),
            ("invalid", merged.invalid),
            ("over_capacity", merged.over_capacity),
        ] {
            if count > 0 {
                counter!(FACTS, "outcome" => outcome).increment(count);
            }
        }
    }

    /// Publishes one message of the raw events topic to the connected clients.
    pub fn publish_event(&self, bytes: &[u8]) {
        if self.feed.receiver_count() == 0 {
            counter!(CONSUMED, "topic" => "raw", "outcome" => "unread").increment(1);
            return;
        }
        match Event::from_wire(bytes) {
            Ok(event) => {
                let first = self.recent_ids.lock().unwrap_or_else(|e| e.into_inner()).first_time(event.event_id);
                if !first {
                    counter!(CONSUMED, "topic" => "raw", "outcome" => "duplicate").increment(1);
                    return;
                }
                counter!(CONSUMED, "topic" => "raw", "outcome" => "ok").increment(1);
                // Err only when every client left meanwhile.
                let _ = self.feed.send(Arc::new(FeedEvent::new(&event)));
            }
            Err(errors) => {
                counter!(CONSUMED, "topic" => "raw", "outcome" => "invalid").increment(1);
                tracing::debug!(error = %errors, "invalid raw event not forwarded");
            }
        }
    }

    /// The figures of the window ending at `now_ms`.
    pub fn figures(&self, now_ms: u64) -> Figures {
        self.computations.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let (figures, facts, views) = {
            let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
            let figures = window.figures(now_ms);
            (figures, window.len(), window.views())
        };
        histogram!(COMPUTE).record(started.elapsed().as_secs_f64());
        gauge!(WINDOW_FACTS).set(facts as f64);
        gauge!(WINDOW_VIEWS).set(views as f64);
        figures
    }

    /// Computes the figures at `now_ms`, records them in the history and
    /// publishes them to every client.
    pub fn tick(&self, now_ms: u64) -> Arc<Snapshot> {
        let figures = self.figures(now_ms);
        let metrics_body = match serde_json::to_vec(&figures.metrics) {
            Ok(body) => Bytes::from(body),
            // Plain numbers and a time: not expected; the message below says the same.
            Err(error) => {
                tracing::error!(error = %error, "cannot serialise the realtime metrics");
                Bytes::from_static(b"{}")
            }
        };
        let snapshot = Arc::new(Snapshot {
            metrics_body,
            metrics_message: protocol::realtime_metrics(&figures.metrics).into(),
            top_videos_message: protocol::top_videos(&figures.top_videos).into(),
            metrics: figures.metrics,
            top_videos: figures.top_videos,
        });
        {
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            if history.len() >= self.config.history_len() {
                history.pop_front();
            }
            if self.config.history_len() > 0 {
                history.push_back(snapshot.metrics.clone());
            }
        }
        self.snapshot.send_replace(Some(snapshot.clone()));
        snapshot
    }

    /// The body of `GET /api/metrics/realtime`: the last tick's
    /// `realtime_metrics` payload, at most one `metrics_interval` old, as
    /// bytes shared by every request. `None` before the first tick; the
    /// caller then computes the window itself (see [`Hub::figures`]).
    pub fn realtime_body(&self) -> Option<Bytes> {
        self.snapshot.borrow().as_ref().map(|snapshot| snapshot.metrics_body.clone())
    }

    /// How many times this hub computed the figures of its window: once per
    /// tick, plus once per `GET /api/metrics/realtime` answered before the
    /// first tick.
    pub fn figure_computations(&self) -> u64 {
        self.computations.load(Ordering::Relaxed)
    }

    /// The `metrics_history` message: every snapshot kept, oldest first.
    pub fn history_message(&self) -> String {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        protocol::metrics_history(history.iter())
    }

    /// A client's feed and figures.
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<FeedEvent>>, watch::Receiver<Option<Arc<Snapshot>>>) {
        (self.feed.subscribe(), self.snapshot.subscribe())
    }

    /// A connection slot, or `None` when `max_connections` are open.
    pub fn try_connect(self: &Arc<Self>) -> Option<ConnectionGuard> {
        let previous = self.connections.fetch_add(1, Ordering::SeqCst);
        if previous >= self.config.max_connections {
            self.connections.fetch_sub(1, Ordering::SeqCst);
            counter!(CONNECTIONS_REJECTED).increment(1);
            return None;
        }
        telemetry::connection_opened();
        Some(ConnectionGuard { hub: self.clone() })
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Readiness of the realtime data: both topics assigned and the partials
    /// of the last `lookback` read.
    pub fn data_probe(self: &Arc<Self>) -> DataProbe {
        DataProbe { hub: self.clone() }
    }
}

/// Holds one connection slot; released on drop.
pub struct ConnectionGuard {
    hub: Arc<Hub>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.hub.connections.fetch_sub(1, Ordering::SeqCst);
        telemetry::connection_closed();
    }
}

/// `/ready` check `realtime_data`.
pub struct DataProbe {
    hub: Arc<Hub>,
}

impl Probe for DataProbe {
    fn name(&self) -> &'static str {
        "realtime_data"
    }

    fn check(&self) -> ProbeFuture<'_> {
        let outcome = if !self.hub.partials_status.is_ready() {
            Err("still reading the realtime window from the partials topic".to_string())
        } else if !self.hub.raw_status.is_ready() {
            Err("the raw events topic is not assigned yet".to_string())
        } else {
            Ok(())
        };
        Box::pin(async move { outcome })
    }
}

/// Ticks on every multiple of `metrics_interval` (wall clock) until shutdown.
pub async fn run_ticker(hub: Arc<Hub>) {
    let interval = u64::try_from(hub.config.metrics_interval.as_millis()).unwrap_or(u64::MAX).max(1);
    loop {
        let now = now_ms();
        let next = (now / interval + 1) * interval;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(next - now)) => {}
            () = hub.shutdown.wait() => return,
        }
        hub.tick(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        Hub::new(HubConfig::default(), Shutdown::new(), Arc::default(), Arc::default())
    }

    #[test]
    fn the_realtime_body_is_the_last_ticks_payload_and_costs_no_computation() {
        let hub = hub();
        assert!(hub.realtime_body().is_none(), "nothing before the first tick");
        let now = 1_763_942_400_000;
        let snapshot = hub.tick(now);
        assert_eq!(hub.figure_computations(), 1);

        let body = hub.realtime_body().unwrap();
        let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let message: serde_json::Value = serde_json::from_str(&snapshot.metrics_message).unwrap();
        assert_eq!(payload, message["payload"], "the pushed payload");
        for _ in 0..1000 {
            assert_eq!(hub.realtime_body().unwrap(), body);
        }
        assert_eq!(hub.figure_computations(), 1, "reading the snapshot computes nothing");

        hub.tick(now + 1000);
        assert_eq!(hub.figure_computations(), 2);
        let next: serde_json::Value = serde_json::from_slice(&hub.realtime_body().unwrap()).unwrap();
        assert_ne!(next["as_of"], payload["as_of"], "the next tick's");
    }
}
