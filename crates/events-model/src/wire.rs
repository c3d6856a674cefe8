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

/// [`format_time`] written into a stack buffer: the wire format writes two
/// times per event, and this path allocates nothing. Years outside
/// 0000–9999 (which chrono writes with a sign) take [`format_time`].
struct TimeText(DateTime<Utc>);

impl Serialize for TimeText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use chrono::{Datelike as _, Timelike as _};
        let t = self.0;
        let year = t.year();
        if !(0..=9999).contains(&year) {
            return serializer.serialize_str(&format_time(t));
        }
        // Leap seconds (nanosecond ≥ 1e9) print as second 60, as chrono does.
        let (second, millis) = match t.nanosecond() / 1_000_000 {
            ms if ms >= 1000 => (t.second() + 1, ms - 1000),
            ms => (t.second(), ms),
        };
        let mut buf = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, digits: usize, mut value: u32| {
            for i in (at..at + digits).rev() {
                buf[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year as u32);
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        put(17, 2, second);
        put(20, 3, millis);
        // Only ASCII digits and separators were written.
        serializer.serialize_str(std::str::from_utf8(&buf).unwrap_or_default())
    }
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
    // Most events fit in 512 bytes: one allocation, no regrowth.
    let mut out = Vec::with_capacity(512);
    match serde_json::to_writer(&mut out, value) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
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
        let mut id = uuid::Uuid::encode_buffer();
        out.serialize_field("event_id", e.event_id.hyphenated().encode_lower(&mut id))?;
        out.serialize_field("event_type", e.event_type.as_str())?;
        out.serialize_field("user_id", &e.user_id)?;
        out.serialize_field("session_id", &e.session_id)?;
        out.serialize_field("video_id", &e.video_id)?;
        out.serialize_field("timestamp", &TimeText(e.timestamp))?;
        if self.with_received_at {
            out.serialize_field("received_at", &TimeText(e.received_at))?;
        }
        out.serialize_field("properties", &e.properties)?;
        out.serialize_field("metadata", &e.metadata)?;
        out.end()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn the_stack_formatter_writes_what_chrono_writes() {
        let times = [
            Utc.timestamp_millis_opt(0).unwrap(),
            Utc.timestamp_millis_opt(1_714_564_800_250).unwrap(),
            Utc.timestamp_millis_opt(1_714_564_800_999).unwrap(),
            Utc.timestamp_millis_opt(253_402_300_799_999).unwrap(), // 9999-12-31T23:59:59.999
            Utc.timestamp_millis_opt(-62_135_596_800_001).unwrap(), // before year 1
            Utc.timestamp_millis_opt(253_402_300_800_000).unwrap(), // year 10000
            Utc.timestamp_opt(1_483_228_799, 1_500_000_000).unwrap(), // a leap second
        ];
        for time in times {
            let ours = serde_json::to_string(&TimeText(time)).unwrap();
            assert_eq!(ours, serde_json::to_string(&format_time(time)).unwrap(), "{time:?}");
        }
    }
}
