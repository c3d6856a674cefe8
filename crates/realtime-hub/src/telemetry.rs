//! The hub's Prometheus metrics (listed in docs/observability.md).

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

pub const CONNECTIONS: &str = "analytics_service_websocket_connections";
pub const CONNECTIONS_REJECTED: &str = "analytics_service_websocket_connections_rejected_total";
pub const DISCONNECTS: &str = "analytics_service_websocket_disconnects_total";
pub const DROPPED: &str = "analytics_service_websocket_dropped_messages_total";
pub const SENT: &str = "analytics_service_websocket_messages_sent_total";
pub const CONSUMED: &str = "analytics_service_hub_messages_consumed_total";
pub const FACTS: &str = "analytics_service_hub_partial_facts_total";
pub const WINDOW_FACTS: &str = "analytics_service_hub_window_facts";
pub const WINDOW_VIEWS: &str = "analytics_service_hub_window_views";
pub const COMPUTE: &str = "analytics_service_hub_window_compute_duration_seconds";

/// Why a message meant for a client was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The client's queue was full (the client reads too slowly).
    QueueFull,
    /// The client's task fell behind the event feed's buffer.
    Lagged,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Lagged => "lagged",
        }
    }
}

pub fn describe() {
    describe_gauge!(CONNECTIONS, "open websocket connections");
    describe_counter!(CONNECTIONS_REJECTED, "websocket connections refused (max_connections reached)");
    describe_counter!(DISCONNECTS, "websocket connections ended, by reason");
    describe_counter!(DROPPED, "messages meant for a websocket client and not sent, by reason");
    describe_counter!(SENT, "messages sent to websocket clients, by type");
    describe_counter!(
        CONSUMED,
        "kafka messages read, by topic (raw, partials) and outcome (ok, invalid, unread, duplicate)"
    );
    describe_counter!(FACTS, "facts of realtime partials, by outcome");
    describe_gauge!(WINDOW_FACTS, "facts held by the realtime window");
    describe_gauge!(WINDOW_VIEWS, "views held by the realtime window");
    describe_histogram!(COMPUTE, Unit::Seconds, "time to compute the realtime figures from the window");
    // Present from the start (0), not only after the first connection or
    // drop, so alert rules see the first drop as an increase.
    gauge!(CONNECTIONS).increment(0.0);
    for reason in [DropReason::QueueFull, DropReason::Lagged] {
        counter!(DROPPED, "reason" => reason.as_str()).increment(0);
    }
}

pub fn dropped(reason: DropReason, count: u64) {
    if count > 0 {
        counter!(DROPPED, "reason" => reason.as_str()).increment(count);
    }
}

pub fn connection_opened() {
    gauge!(CONNECTIONS).increment(1.0);
}

pub fn connection_closed() {
    gauge!(CONNECTIONS).decrement(1.0);
}
