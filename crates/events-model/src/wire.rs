//! The Kafka message format: compact JSON of the normalised event.
//!
//! ```json
//! {"event_id":"0190…","event_type":"video_progress","user_id":null,
//!  "session_id":"s1","video_id":"v1","timestamp":"2024-05-01T12:00:00.250Z",
//!  "received_at":"2024-05-01T12:00:00.300Z",
//!  "properties":{"position_seconds":12.5,"ab_variant":"b"},"metadata":null}
//! ```

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::Event;

/// Version of the wire format written by [`Event::to_wire`]; producers send
/// it in the [`SCHEMA_VERSION_HEADER`] Kafka header.
pub const WIRE_SCHEMA_VERSION: u32 = 1;

/// Kafka header carrying [`WIRE_SCHEMA_VERSION`] as decimal text.
pub const SCHEMA_VERSION_HEADER: &str = "schema_version";

/// Formats a time as RFC 3339 in UTC with milliseconds and a `Z` suffix,
/// e.g. `2024-05-01T12:00:00.250Z`.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Event {
    /// The Kafka message value: compact JSON with every envelope field,
    /// times as RFC 3339 with milliseconds and `Z`, known and unknown
    /// properties in one object, and `null` for an absent `user_id` or
    /// `metadata`.
    pub fn to_wire(&self) -> Vec<u8> {
        to_json_bytes(&WireView { event: self, with_received_at: true })
    }

    /// The event in the client format accepted by [`Event::parse_json`]:
    /// the wire object without `received_at`. Useful for load generators
    /// and tests.
    pub fn to_client_json(&self) -> Vec<u8> {
        to_json_bytes(&WireView { event: self, with_received_at: false })
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireView { event: self, with_received_at: true }.serialize(serializer)
    }
}

/// Serialises into memory. `serde_json` only fails for non-string map keys
/// or a failing `Serialize` impl, neither of which occurs in this crate's
/// types, so the empty fallback is never used; if it were, the consumer
/// would reject the message as invalid JSON rather than crash.
fn to_json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

struct WireView<'a> {
    event: &'a Event,
    with_received_at: bool,
}

impl Serialize for WireView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let e = self.event;
        let len = if self.with_received_at { 9 } else { 8 };
        let mut out = serializer.serialize_struct("Event", len)?;
        out.serialize_field("event_id", &e.event_id.hyphenated().to_string())?;
        out.serialize_field("event_type", e.event_type.as_str())?;
        out.serialize_field("user_id", &e.user_id)?;
        out.serialize_field("session_id", &e.session_id)?;
        out.serialize_field("video_id", &e.video_id)?;
        out.serialize_field("timestamp", &format_time(e.timestamp))?;
        if self.with_received_at {
            out.serialize_field("received_at", &format_time(e.received_at))?;
        }
        out.serialize_field("properties", &e.properties)?;
        out.serialize_field("metadata", &e.metadata)?;
        out.end()
    }
}
