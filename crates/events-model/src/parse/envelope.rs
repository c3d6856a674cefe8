//! Validation of the event envelope (the top-level object).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::derived_id::derived_event_id;
use super::json::{Controls, check_text, compact_len, non_null, wrong_type};
use super::problems::Problems;
use super::properties::{self, parse_properties};
use super::time::{check_not_beyond_max, check_not_in_future, check_not_too_old, parse_time, truncate_to_millis};
use super::{MissingId, Source};
use crate::error::{ErrorCode, ValidationErrors};
use crate::limits::{MAX_ID_CHARS, MAX_METADATA_BYTES};
use crate::{Event, EventType, Properties};

/// Validates and normalises one event object.
pub(crate) fn parse_envelope(mut object: Map<String, Value>, source: Source<'_>) -> Result<Event, ValidationErrors> {
    let mut problems = Problems::default();

    let received_at = match source {
        Source::Client { received_at, .. } => Some(truncate_to_millis(received_at)),
        Source::Wire => wire_received_at(object.remove("received_at"), &mut problems),
    };
    let event_id = event_id(non_null(object.remove("event_id")), source, &mut problems);
    let event_type = event_type(object.remove("event_type"), &mut problems);
    let user_id = non_null(object.remove("user_id")).and_then(|v| id(v, "user_id", &mut problems));
    let session_id = session_id(non_null(object.remove("session_id")), user_id.as_deref(), &mut problems);
    let video_id =
        required(object.remove("video_id"), "video_id", &mut problems).and_then(|v| id(v, "video_id", &mut problems));
    let sent_timestamp = non_null(object.remove("timestamp"));
    let timestamp_sent = sent_timestamp.is_some();
    let timestamp = timestamp(sent_timestamp, received_at, &mut problems);
    let properties = properties(non_null(object.remove("properties")), &mut problems);
    let metadata = metadata(non_null(object.remove("metadata")), &mut problems);

    if let (Some(event_type), Some(properties)) = (event_type, &properties) {
        properties::check_required(event_type, properties, &mut problems);
    }
    for field in object.keys() {
        let message = if field == "received_at" {
            "is set by the server and must not be sent by clients"
        } else {
            "is not an event field; send custom data inside \"metadata\" or \"properties\""
        };
        problems.add(&unknown_field_name(field), ErrorCode::UnknownField, message);
    }

    match (event_id, event_type, session_id, video_id, timestamp, received_at, properties, metadata) {
        (
            Some(event_id),
            Some(event_type),
            Some(session_id),
            Some(video_id),
            Some(timestamp),
            Some(received_at),
            Some(properties),
            Some(metadata),
        ) if problems.is_empty() => {
            let mut event = Event {
                event_id: event_id.unwrap_or_else(Uuid::nil),
                event_type,
                user_id,
                session_id,
                video_id,
                timestamp,
                received_at,
                properties,
                metadata,
            };
            if event_id.is_none() {
                event.event_id = match source {
                    Source::Client { missing_id: MissingId::Derived { key_id }, .. } => {
                        derived_event_id(&event, timestamp_sent.then_some(timestamp), key_id)
                    }
                    // A wire message without `event_id` was refused above.
                    Source::Client { missing_id: MissingId::Random, .. } | Source::Wire => Uuid::now_v7(),
                };
            }
            Ok(event)
        }
        _ => Err(problems.into_errors()),
    }
}

/// Longest unknown field name echoed back verbatim.
const MAX_ECHOED_FIELD_CHARS: usize = 64;

/// How an unknown field is named in a problem report: as sent when that is
/// readable; otherwise (empty, very long or containing control characters)
/// JSON-quoted and shortened, so the name is never empty or unbounded.
fn unknown_field_name(key: &str) -> String {
    let readable = !key.is_empty() && check_text(key, MAX_ECHOED_FIELD_CHARS, Controls::Forbidden).is_ok();
    if readable {
        return key.to_owned();
    }
    let quoted = serde_json::to_string(key).unwrap_or_else(|_| String::from("\"?\""));
    if quoted.chars().count() <= MAX_ECHOED_FIELD_CHARS {
        return quoted;
    }
    let mut short: String = quoted.chars().take(MAX_ECHOED_FIELD_CHARS).collect();
    short.push('…');
    short
}

/// Null counts as absent; absent is reported as missing.
fn required(value: Option<Value>, field: &str, problems: &mut Problems) -> Option<Value> {
    let value = non_null(value);
    if value.is_none() {
        problems.add(field, ErrorCode::Missing, "is required");
    }
    value
}

/// Prefix of the session derived for an event sent without `session_id`
/// (see [`session_id`]).
pub const DERIVED_SESSION_PREFIX: &str = "user:";

/// The event's session: as sent, or, when absent and the event names its
/// viewer, one derived from the `user_id` (`user:<user_id>`), so the product
/// description's own example (`event_type`, `user_id`, `video_id`) is
/// accepted. The derived id is stable, so every such event of a user and a
/// video forms one key, and views follow the usual rule (docs/metrics.md,
/// "Events without a session"). Without either field the event is refused,
/// naming `session_id`.
fn session_id(value: Option<Value>, user_id: Option<&str>, problems: &mut Problems) -> Option<String> {
    const FIELD: &str = "session_id";
    match (value, user_id) {
        (Some(value), _) => {
            // A derived id travels on the wire and is validated again there:
            // it may exceed MAX_ID_CHARS by its prefix.
            let derived = matches!(&value, Value::String(text) if text.starts_with(DERIVED_SESSION_PREFIX));
            let max = if derived { MAX_ID_CHARS + DERIVED_SESSION_PREFIX.len() } else { MAX_ID_CHARS };
            id_of_at_most(value, FIELD, max, problems)
        }
        (None, Some(user_id)) => Some(format!("{DERIVED_SESSION_PREFIX}{user_id}")),
        (None, None) => {
            problems.add(FIELD, ErrorCode::Missing, "is required when the event has no user_id");
            None
        }
    }
}

/// The server's receive time as carried by a wire message.
fn wire_received_at(value: Option<Value>, problems: &mut Problems) -> Option<DateTime<Utc>> {
    const FIELD: &str = "received_at";
    let parsed = parse_time(&required(value, FIELD, problems)?, FIELD, problems)?;
    let plausible = check_not_too_old(parsed, FIELD, problems) && check_not_beyond_max(parsed.time, FIELD, problems);
    plausible.then_some(parsed.time)
}

/// The id as sent: `Some(None)` when a client sent none (the caller assigns
/// one once the event is valid), `None` when invalid.
fn event_id(value: Option<Value>, source: Source<'_>, problems: &mut Problems) -> Option<Option<Uuid>> {
    const FIELD: &str = "event_id";
    let value = match (value, source) {
        (Some(value), _) => value,
        (None, Source::Client { .. }) => return Some(None),
        (None, Source::Wire) => {
            problems.add(FIELD, ErrorCode::Missing, "is required in wire messages");
            return None;
        }
    };
    let Value::String(text) = value else {
        problems.add(FIELD, ErrorCode::WrongType, wrong_type("a uuid string", &value));
        return None;
    };
    match Uuid::parse_str(&text) {
        Ok(uuid) if uuid.is_nil() => {
            problems.add(FIELD, ErrorCode::InvalidFormat, "must not be the nil uuid");
            None
        }
        Ok(uuid) => Some(Some(uuid)),
        Err(err) => {
            problems.add(FIELD, ErrorCode::InvalidFormat, format!("expected a uuid ({err})"));
            None
        }
    }
}

fn event_type(value: Option<Value>, problems: &mut Problems) -> Option<EventType> {
    const FIELD: &str = "event_type";
    match required(value, FIELD, problems)? {
        Value::String(name) => match name.parse::<EventType>() {
            Ok(event_type) => Some(event_type),
            Err(err) => {
                problems.add(FIELD, ErrorCode::UnknownEventType, err.to_string());
                None
            }
        },
        other => {
            problems.add(FIELD, ErrorCode::WrongType, wrong_type("a string", &other));
            None
        }
    }
}

/// A non-empty identifier of at most [`MAX_ID_CHARS`] without control characters.
fn id(value: Value, field: &str, problems: &mut Problems) -> Option<String> {
    id_of_at_most(value, field, MAX_ID_CHARS, problems)
}

fn id_of_at_most(value: Value, field: &str, max_chars: usize, problems: &mut Problems) -> Option<String> {
    let Value::String(text) = value else {
        problems.add(field, ErrorCode::WrongType, wrong_type("a string", &value));
        return None;
    };
    if text.is_empty() {
        problems.add(field, ErrorCode::InvalidFormat, "must not be empty");
        return None;
    }
    match check_text(&text, max_chars, Controls::Forbidden) {
        Ok(()) => Some(text),
        Err((code, message)) => {
            problems.add(field, code, message);
            None
        }
    }
}

/// The client time, defaulting to the receive time.
fn timestamp(
    value: Option<Value>,
    received_at: Option<DateTime<Utc>>,
    problems: &mut Problems,
) -> Option<DateTime<Utc>> {
    const FIELD: &str = "timestamp";
    let Some(value) = value else {
        return received_at;
    };
    let parsed = parse_time(&value, FIELD, problems)?;
    if !check_not_too_old(parsed, FIELD, problems) {
        return None;
    }
    match received_at {
        Some(received_at) => check_not_in_future(parsed.time, received_at, FIELD, problems).then_some(parsed.time),
        // received_at itself is invalid (already reported); the event fails anyway.
        None => None,
    }
}

fn properties(value: Option<Value>, problems: &mut Problems) -> Option<Properties> {
    match value {
        None => Some(Properties::default()),
        Some(Value::Object(map)) => Some(parse_properties(map, problems)),
        Some(other) => {
            problems.add(properties::FIELD, ErrorCode::WrongType, wrong_type("an object", &other));
            None
        }
    }
}

/// `Some(None)` when absent, `None` when invalid.
fn metadata(value: Option<Value>, problems: &mut Problems) -> Option<Option<Map<String, Value>>> {
    const FIELD: &str = "metadata";
    match value {
        None => Some(None),
        Some(Value::Object(map)) => {
            let bytes = compact_len(&map);
            if bytes > MAX_METADATA_BYTES {
                problems.add(
                    FIELD,
                    ErrorCode::TooLarge,
                    format!("takes {bytes} bytes of json; the limit is {MAX_METADATA_BYTES}"),
                );
                return None;
            }
            Some(Some(map))
        }
        Some(other) => {
            problems.add(FIELD, ErrorCode::WrongType, wrong_type("an object", &other));
            None
        }
    }
}
