//! One client's bounded queue of outgoing messages.
//!
//! Events beyond the capacity are dropped (and counted); a newer
//! `realtime_metrics` or `top_videos` replaces the one still queued, and
//! makes room by dropping the oldest event when the queue is full; pings and
//! pongs are kept apart (at most one of each), so the queue never grows past
//! its capacity whatever the client does.

use std::{collections::VecDeque, sync::Arc};

use actix_web::web::Bytes;

/// What a queued text message is, for replacement and drop rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Metrics,
    TopVideos,
    Event,
    /// `subscribed`, `error`, `metrics_history`: answers and state, never replaced.
    Reply,
}

impl Kind {
    /// Label of the sent-messages counter.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Metrics => "realtime_metrics",
            Kind::TopVideos => "top_videos",
            Kind::Event => "analytics_event",
            Kind::Reply => "reply",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    Shared(Arc<str>),
    Owned(String),
}

impl Text {
    pub fn into_string(self) -> String {
        match self {
            Text::Shared(text) => text.to_string(),
            Text::Owned(text) => text,
        }
    }
}

/// The next frame to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(Kind, Text),
    Ping,
    Pong(Bytes),
}

#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<(Kind, Text)>,
    capacity: usize,
    ping: bool,
    pong: Option<Bytes>,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self { queue: VecDeque::new(), capacity: capacity.max(1), ping: false, pong: None }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && !self.ping && self.pong.is_none()
    }

    /// Queues a text message; returns how many messages were dropped (0 or 1).
    pub fn push(&mut self, kind: Kind, text: Text) -> u64 {
        if matches!(kind, Kind::Metrics | Kind::TopVideos) {
            if let Some(slot) = self.queue.iter_mut().find(|(k, _)| *k == kind) {
                slot.1 = text;
                return 0;
            }
            if self.queue.len() >= self.capacity {
                let Some(oldest_event) = self.queue.iter().position(|(k, _)| *k == Kind::Event) else {
                    return 1;
                };
                self.queue.remove(oldest_event);
                self.queue.push_back((kind, text));
                return 1;
            }
        } else if self.queue.len() >= self.capacity {
            return 1;
        }
        self.queue.push_back((kind, text));
        0
    }

    /// Queues a ping unless one is pending.
    pub fn ping(&mut self) {
        self.ping = true;
    }

    /// Queues the answer to a client's ping (a newer one replaces a pending one).
    pub fn pong(&mut self, payload: Bytes) {
        self.pong = Some(payload);
    }

    /// The next frame: control frames first.
    pub fn pop(&mut self) -> Option<Frame> {
        if let Some(payload) = self.pong.take() {
            return Some(Frame::Pong(payload));
        }
        if std::mem::take(&mut self.ping) {
            return Some(Frame::Ping);
        }
        self.queue.pop_front().map(|(kind, text)| Frame::Text(kind, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(text: &str) -> Text {
        Text::Owned(text.into())
    }

    #[test]
    fn events_beyond_the_capacity_are_dropped() {
        let mut outbox = Outbox::new(3);
        assert_eq!(outbox.push(Kind::Event, owned("e1")), 0);
        assert_eq!(outbox.push(Kind::Event, owned("e2")), 0);
        assert_eq!(outbox.push(Kind::Reply, owned("r1")), 0);
        assert_eq!(outbox.push(Kind::Event, owned("e3")), 1);
        assert_eq!(outbox.push(Kind::Reply, owned("r2")), 1);
        assert_eq!(outbox.len(), 3);
        assert_eq!(outbox.pop(), Some(Frame::Text(Kind::Event, owned("e1"))));
    }

    #[test]
    fn newer_metrics_replace_queued_ones_in_place() {
        let mut outbox = Outbox::new(10);
        outbox.push(Kind::Metrics, owned("m1"));
        outbox.push(Kind::TopVideos, owned("t1"));
        outbox.push(Kind::Event, owned("e1"));
        assert_eq!(outbox.push(Kind::Metrics, owned("m2")), 0);
        assert_eq!(outbox.push(Kind::TopVideos, owned("t2")), 0);
        assert_eq!(outbox.len(), 3);
        assert_eq!(outbox.pop(), Some(Frame::Text(Kind::Metrics, owned("m2"))));
        assert_eq!(outbox.pop(), Some(Frame::Text(Kind::TopVideos, owned("t2"))));
        assert_eq!(outbox.pop(), Some(Frame::Text(Kind::Event, owned("e1"))));
        assert_eq!(outbox.pop(), None);
    }

    #[test]
    fn metrics_make_room_by_dropping_the_oldest_event() {
        let mut outbox = Outbox::new(2);
        outbox.push(Kind::Event, owned("e1"));
        outbox.push(Kind::Event, owned("e2"));
        assert_eq!(outbox.push(Kind::Metrics, owned("m1")), 1);
        assert_eq!(outbox.pop(), Some(Frame::Text(Kind::Event, owned("e2"))));
        assert_eq!(outbox.pop(), Some(Frame::Text(Kind::Metrics, owned("m1"))));
        // Full of replies: the metrics message is the one dropped.
        let mut outbox = Outbox::new(1);
        outbox.push(Kind::Reply, owned("r1"));
        assert_eq!(outbox.push(Kind::Metrics, owned("m1")), 1);
        assert_eq!(outbox.len(), 1);
    }

    #[test]
    fn control_frames_go_first_and_never_pile_up() {
        let mut outbox = Outbox::new(1);
        outbox.push(Kind::Event, owned("e1"));
        for _ in 0..100 {
            outbox.ping();
            outbox.pong(Bytes::from_static(b"x"));
        }
        assert_eq!(outbox.pop(), Some(Frame::Pong(Bytes::from_static(b"x"))));
        assert_eq!(outbox.pop(), Some(Frame::Ping));
        assert_eq!(outbox.pop(), Some(Frame::Text(Kind::Event, owned("e1"))));
        assert!(outbox.is_empty());
    }
}
