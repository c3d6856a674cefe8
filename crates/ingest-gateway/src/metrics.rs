//! The gateway's Prometheus metrics. Labels are bounded: event types, error
//! codes, endpoint names and status codes are closed sets.
//!
//! Counters are added once per request with the request's totals rather than
//! once per event.

use std::time::Duration;

use events_model::{ErrorCode, EventType, ValidationErrors};

pub const EVENTS_RECEIVED: &str = "analytics_service_ingest_events_received_total";
pub const EVENTS_REJECTED: &str = "analytics_service_ingest_events_rejected_total";
pub const EVENTS_ACCEPTED: &str = "analytics_service_ingest_events_accepted_total";
pub const REQUESTS: &str = "analytics_service_ingest_requests_total";
pub const PRODUCE_DURATION: &str = "analytics_service_kafka_produce_duration_seconds";
pub const IN_FLIGHT: &str = "analytics_service_http_requests_in_flight";

/// The descriptions shown as `# HELP` on `/metrics` (through
/// `service_kit::ops::describe_metrics`, first thing in `run`).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(EVENTS_RECEIVED, "valid events received, by event type");
    describe_counter!(EVENTS_ACCEPTED, "events acknowledged by Kafka and answered 202");
    describe_counter!(
        EVENTS_REJECTED,
        "events refused, by reason: an invalid event's first error code, or the request-level refusal"
    );
    describe_counter!(REQUESTS, "ingest requests by endpoint (single, batch) and answered status");
    describe_histogram!(
        PRODUCE_DURATION,
        Unit::Seconds,
        "time from the first enqueue of a request's events to Kafka's last acknowledgement, by outcome"
    );
    describe_gauge!(IN_FLIGHT, "ingest requests being handled");
}

/// Which ingest endpoint served a request (the `endpoint` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Single,
    Batch,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Single => "single",
            Endpoint::Batch => "batch",
        }
    }
}

/// Per-request tallies of valid events by type and invalid events by reason.
#[derive(Debug, Default)]
pub struct Tally {
    by_type: [u64; EventType::ALL.len()],
    by_reason: [u64; ErrorCode::ALL.len()],
}

impl Tally {
    pub fn valid(&mut self, event_type: EventType) {
        if let Some(i) = EventType::ALL.iter().position(|t| *t == event_type) {
            self.by_type[i] += 1;
        }
    }

    /// An invalid event, counted under its first problem's code (the
    /// validator never returns an empty list of problems).
    pub fn invalid(&mut self, errors: &ValidationErrors) {
        let reason = errors.primary_code().unwrap_or(ErrorCode::InvalidFormat);
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == reason) {
            self.by_reason[i] += 1;
        }
    }

    /// Adds the tallies to `..._received_total{event_type}` and `..._rejected_total{reason}`.
    pub fn record(&self) {
        for (event_type, &n) in EventType::ALL.iter().zip(&self.by_type).filter(|(_, n)| **n > 0) {
            metrics::counter!(EVENTS_RECEIVED, "event_type" => event_type.as_str()).increment(n);
        }
        for (code, &n) in ErrorCode::ALL.iter().zip(&self.by_reason).filter(|(_, n)| **n > 0) {
            rejected(code.as_str(), n);
        }
    }
}

/// Events refused for `reason` (an [`ErrorCode`] name or a request-level reason).
pub fn rejected(reason: &'static str, events: u64) {
    metrics::counter!(EVENTS_REJECTED, "reason" => reason).increment(events);
}

/// Events Kafka acknowledged (answered 202).
pub fn accepted(events: usize) {
    metrics::counter!(EVENTS_ACCEPTED).increment(u64::try_from(events).unwrap_or(u64::MAX));
}

/// One produce of a request's events: from the first enqueue to the last acknowledgement.
pub fn produce_duration(elapsed: Duration, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::histogram!(PRODUCE_DURATION, "outcome" => outcome).record(elapsed.as_secs_f64());
}

/// A finished ingest request, by endpoint and HTTP status.
pub fn request(endpoint: Endpoint, status: u16) {
    metrics::counter!(REQUESTS, "endpoint" => endpoint.as_str(), "status" => status_label(status)).increment(1);
}

/// The status as a `&'static str` label (the gateway answers a handful of codes).
fn status_label(status: u16) -> &'static str {
    match status {
        202 => "202",
        400 => "400",
        405 => "405",
        413 => "413",
        415 => "415",
        503 => "503",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// Counts a request in `analytics_service_http_requests_in_flight` while alive.
pub struct InFlight;

impl InFlight {
    pub fn enter() -> Self {
        metrics::gauge!(IN_FLIGHT).increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(IN_FLIGHT).decrement(1.0);
    }
}
