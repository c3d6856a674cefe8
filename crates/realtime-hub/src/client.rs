//! One WebSocket client: its filter, sampler, bounded outbox and keepalive.
//!
//! Two tasks on the actix worker that accepted the connection: the session
//! task reads the client's frames, the feed and the figures, and queues what
//! the client should get in its [`Outbox`]; the writer task drains the outbox
//! into the socket at whatever pace the client reads. A client that reads
//! too slowly only fills its own bounded outbox.

use std::{cell::RefCell, rc::Rc, sync::Arc, time::Duration};

use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use metrics::counter;
use tokio::{
    sync::{Notify, broadcast::error::RecvError},
    time::Instant,
};

use crate::{
    feed::{Sampler, Subscription},
    hub::{ConnectionGuard, Hub},
    outbox::{Frame, Kind, Outbox, Text},
    protocol::{self, ClientMessage},
    telemetry::{self, DISCONNECTS, DropReason, SENT},
};

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    ClientClosed,
    ClientGone,
    KeepaliveTimeout,
    ProtocolError,
    SendFailed,
    Shutdown,
}

impl Ending {
    fn label(self) -> &'static str {
        match self {
            Ending::ClientClosed => "client_closed",
            Ending::ClientGone => "client_gone",
            Ending::KeepaliveTimeout => "keepalive_timeout",
            Ending::ProtocolError => "protocol_error",
            Ending::SendFailed => "send_failed",
            Ending::Shutdown => "shutdown",
        }
    }

    /// The close frame the server sends, if any.
    fn close_reason(self) -> Option<CloseReason> {
        let (code, description) = match self {
            Ending::ClientClosed => (CloseCode::Normal, None),
            Ending::ClientGone | Ending::SendFailed => return None,
            Ending::KeepaliveTimeout => (CloseCode::Policy, Some("keepalive timeout")),
            Ending::ProtocolError => (CloseCode::Protocol, Some("protocol error")),
            Ending::Shutdown => (CloseCode::Away, Some("server shutting down")),
        };
        Some(CloseReason { code, description: description.map(String::from) })
    }
}

/// The queue shared by the session task and the writer task (same thread).
struct Shared {
    outbox: RefCell<Outbox>,
    wake: Notify,
}

impl Shared {
    fn push(&self, kind: Kind, text: Text) {
        let dropped = self.outbox.borrow_mut().push(kind, text);
        telemetry::dropped(DropReason::QueueFull, dropped);
        self.wake.notify_one();
    }

    fn control(&self, change: impl FnOnce(&mut Outbox)) {
        change(&mut self.outbox.borrow_mut());
        self.wake.notify_one();
    }
}

/// Serves one upgraded connection until it ends; `_slot` is released after.
pub async fn serve(hub: Arc<Hub>, _slot: ConnectionGuard, session: Session, mut stream: MessageStream) {
    let config = &hub.config;
    let shared = Rc::new(Shared { outbox: RefCell::new(Outbox::new(config.client_queue_size)), wake: Notify::new() });
    let mut writer = actix_web::rt::spawn(write(session.clone(), shared.clone()));
    let (mut events, mut snapshots) = hub.subscribe();

    shared.push(Kind::Reply, Text::Owned(hub.history_message()));
    if let Some(snapshot) = snapshots.borrow_and_update().clone() {
        shared.push(Kind::Metrics, Text::Shared(snapshot.metrics_message.clone()));
        shared.push(Kind::TopVideos, Text::Shared(snapshot.top_videos_message.clone()));
    }

    let mut subscription = Subscription::default();
    let mut sampler = Sampler::new(config.client_max_events_per_sec);
    let started = Instant::now();
    let mut last_heard = Instant::now();
    let ping_interval = config.ping_interval;
    let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let ending = loop {
        tokio::select! {
            () = hub.shutdown.wait() => break Ending::Shutdown,
            _ = &mut writer => break Ending::SendFailed,
            frame = stream.recv() => {
                let frame = match frame {
                    None => break Ending::ClientGone,
                    Some(Err(error)) => {
                        tracing::debug!(error = %error, "websocket protocol error");
                        break Ending::ProtocolError;
                    }
                    Some(Ok(frame)) => frame,
                };
                last_heard = Instant::now();
                match frame {
                    Message::Text(text) => {
                        let reply = match protocol::parse_client_message(&text) {
                            Ok(ClientMessage::Subscribe(wanted)) => {
                                subscription = wanted;
                                sampler = Sampler::new(config.client_max_events_per_sec);
                                protocol::subscribed(&subscription)
                            }
                            Ok(ClientMessage::Unsubscribe) => {
                                subscription = Subscription::default();
                                sampler = Sampler::new(config.client_max_events_per_sec);
                                protocol::subscribed(&subscription)
                            }
                            Err(message) => protocol::error(&message),
                        };
                        shared.push(Kind::Reply, Text::Owned(reply));
                    }
                    Message::Binary(_) | Message::Continuation(_) => shared.push(
                        Kind::Reply,
                        Text::Owned(protocol::error("only unfragmented JSON text messages are understood")),
                    ),
                    Message::Ping(payload) => shared.control(|outbox| outbox.pong(payload)),
                    Message::Pong(_) | Message::Nop => {}
                    Message::Close(_) => break Ending::ClientClosed,
                }
            }
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break Ending::Shutdown;
                }
                let snapshot = snapshots.borrow_and_update().clone();
                if let Some(snapshot) = snapshot {
                    shared.push(Kind::Metrics, Text::Shared(snapshot.metrics_message.clone()));
                    shared.push(Kind::TopVideos, Text::Shared(snapshot.top_videos_message.clone()));
                }
            }
            event = events.recv() => match event {
                Ok(event) => {
                    if subscription.matches(&event) {
                        let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                        if let Some(rate) = sampler.sample(event.id_hash(), now_ms) {
                            shared.push(Kind::Event, Text::Owned(protocol::analytics_event(&event, rate)));
                        }
                    }
                }
                Err(RecvError::Lagged(skipped)) => telemetry::dropped(DropReason::Lagged, skipped),
                Err(RecvError::Closed) => break Ending::Shutdown,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > config.client_timeout {
                    break Ending::KeepaliveTimeout;
                }
                shared.control(Outbox::ping);
            }
        }
    };

    writer.abort();
    counter!(DISCONNECTS, "reason" => ending.label()).increment(1);
    tracing::debug!(reason = ending.label(), "websocket session ended");
    if let Some(reason) = ending.close_reason() {
        // A client that reads nothing may never take the close frame: bounded.
        let _ = tokio::time::timeout(Duration::from_secs(1), session.close(Some(reason))).await;
    }
}

/// Drains the outbox into the socket until the session is closed.
async fn write(mut session: Session, shared: Rc<Shared>) {
    loop {
        let next = shared.outbox.borrow_mut().pop();
        let sent = match next {
            None => {
                shared.wake.notified().await;
                continue;
            }
            Some(Frame::Text(kind, text)) => {
                let sent = session.text(text.into_string()).await;
                if sent.is_ok() {
                    counter!(SENT, "type" => kind.label()).increment(1);
                }
                sent
            }
            Some(Frame::Ping) => session.ping(b"").await,
            Some(Frame::Pong(payload)) => session.pong(&payload).await,
        };
        if sent.is_err() {
            return;
        }
    }
}
