//! Turning untrusted JSON into validated [`Event`]s.
//!
//! Every problem is collected (not only the first) and names its field.

mod derived_id;
mod envelope;
pub use envelope::DERIVED_SESSION_PREFIX;
mod json;
mod problems;
mod properties;
mod time;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::Event;
use crate::error::{ErrorCode, ROOT_FIELD, ValidationErrors};
use crate::limits::{MAX_EVENT_BYTES, MAX_WIRE_EVENT_BYTES};

/// Where an event comes from, which decides a few rules.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    /// A player, through the ingest API. `received_at` is the server's clock;
    /// a missing `event_id` is assigned as `missing_id` says.
    Client { received_at: DateTime<Utc>, missing_id: MissingId<'a> },
    /// A Kafka message written by [`Event::to_wire`]: `event_id` and
    /// `received_at` are required and taken from the message.
    Wire,
}

/// The id a client event sent without `event_id` gets.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MissingId<'a> {
    /// Derived from the event and the sender's key (see [`derived_id`]):
    /// the same body from the same key gets the same ids.
    Derived { key_id: Option<&'a str> },
    /// A fresh UUIDv7 each time (tools and tests that make many events from
    /// one template).
    Random,
}

impl Source<'_> {
    fn max_bytes(self) -> usize {
        match self {
            Source::Client { .. } => MAX_EVENT_BYTES,
            Source::Wire => MAX_WIRE_EVENT_BYTES,
        }
    }
}

/// Parses and validates raw bytes.
pub(crate) fn parse_bytes(bytes: &[u8], source: Source<'_>) -> Result<Event, ValidationErrors> {
    let max = source.max_bytes();
    if bytes.len() > max {
        return Err(too_large(bytes.len(), max));
    }
    let text = std::str::from_utf8(bytes).map_err(|err| {
        ValidationErrors::single(
            ROOT_FIELD,
            ErrorCode::InvalidUtf8,
            format!("body is not valid utf-8: invalid byte sequence at byte {}", err.valid_up_to()),
        )
    })?;
    let value: Value = serde_json::from_str(text)
        .map_err(|err| ValidationErrors::single(ROOT_FIELD, ErrorCode::InvalidJson, format!("invalid json: {err}")))?;
    parse_value_unchecked(value, source)
}

/// Validates an already parsed value, checking its serialised size first.
pub(crate) fn parse_value(value: Value, source: Source<'_>) -> Result<Event, ValidationErrors> {
    let max = source.max_bytes();
    let bytes = json::compact_len(&value);
    if bytes > max {
        return Err(too_large(bytes, max));
    }
    parse_value_unchecked(value, source)
}

fn parse_value_unchecked(value: Value, source: Source<'_>) -> Result<Event, ValidationErrors> {
    match value {
        Value::Object(object) => envelope::parse_envelope(object, source),
        other => {
            Err(ValidationErrors::single(ROOT_FIELD, ErrorCode::NotAnObject, json::wrong_type("a json object", &other)))
        }
    }
}

fn too_large(bytes: usize, max: usize) -> ValidationErrors {
    ValidationErrors::single(ROOT_FIELD, ErrorCode::TooLarge, format!("event is {bytes} bytes; the limit is {max}"))
}
