//! The client event as a JSON Schema (draft 2020-12, the dialect of
//! OpenAPI 3.1), for the ingest API's document.
//!
//! The validator ([`crate::Event::from_value`]) is the authority; this
//! schema says the same thing field by field, so that a body the schema
//! admits is one the validator accepts and one it refuses is refused (the
//! ingest-gateway's contract test checks both ways). Two rules are not
//! expressible and are stated in descriptions instead: `timestamp` at most
//! [`MAX_FUTURE_SKEW`] after the server's receive time, and the size limits
//! in bytes of JSON ([`MAX_EVENT_BYTES`], [`MAX_EXTRA_PROPERTIES_BYTES`],
//! [`MAX_METADATA_BYTES`]).

use serde_json::{Map, Value, json};

use crate::limits::{
    MAX_BITRATE_KBPS, MAX_DIMENSION_CHARS, MAX_DURATION_MS, MAX_ERROR_MESSAGE_CHARS, MAX_EVENT_BYTES,
    MAX_EXTRA_PROPERTIES_BYTES, MAX_FUTURE_SKEW, MAX_ID_CHARS, MAX_METADATA_BYTES, MAX_SECONDS, MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
};
use crate::{DERIVED_SESSION_PREFIX, EventType};

/// Ids and dimensions: no control and no invisible or bidirectional
/// formatting character ([`crate::text`]).
pub use crate::text::PLAIN_TEXT;

/// No control character except tab, line feed and carriage return.
pub const NO_CONTROLS_BUT_WHITESPACE: &str = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$";

/// How a known property is checked.
#[derive(Clone, Copy)]
enum Kind {
    /// 0 to [`MAX_SECONDS`].
    Seconds,
    /// A whole number from 0 to the bound.
    Whole(u32),
    /// Text of at most [`MAX_DIMENSION_CHARS`], no control characters.
    Dimension,
    /// Text of at most [`MAX_ERROR_MESSAGE_CHARS`]; tabs and line breaks allowed.
    Message,
    Flag,
}

/// Every known property, in the order of `Properties`.
const KNOWN: &[(&str, Kind)] = &[
    ("position_seconds", Kind::Seconds),
    ("duration_seconds", Kind::Seconds),
    ("quality", Kind::Dimension),
    ("bitrate_kbps", Kind::Whole(MAX_BITRATE_KBPS)),
    ("buffer_duration_ms", Kind::Whole(MAX_DURATION_MS)),
    ("startup_time_ms", Kind::Whole(MAX_DURATION_MS)),
    ("error_code", Kind::Dimension),
    ("error_message", Kind::Message),
    ("fatal", Kind::Flag),
    ("seek_from_seconds", Kind::Seconds),
    ("seek_to_seconds", Kind::Seconds),
    ("from_quality", Kind::Dimension),
    ("to_quality", Kind::Dimension),
    ("device_type", Kind::Dimension),
    ("browser", Kind::Dimension),
    ("os", Kind::Dimension),
    ("country", Kind::Dimension),
    ("player", Kind::Dimension),
    ("cdn", Kind::Dimension),
];

/// The schema of a property's value. `required`: a required property must
/// be present and not null; a text one not empty either (an empty string
/// counts as absent).
fn property(kind: Kind, required: bool) -> Value {
    let (json_type, mut schema) = match kind {
        Kind::Seconds => ("number", json!({"minimum": 0, "maximum": MAX_SECONDS})),
        Kind::Whole(max) => ("integer", json!({"minimum": 0, "maximum": max})),
        Kind::Dimension => ("string", json!({"maxLength": MAX_DIMENSION_CHARS, "pattern": PLAIN_TEXT})),
        Kind::Message => {
            ("string", json!({"maxLength": MAX_ERROR_MESSAGE_CHARS, "pattern": NO_CONTROLS_BUT_WHITESPACE}))
        }
        Kind::Flag => ("boolean", json!({})),
    };
    if required {
        schema["type"] = json!(json_type);
        if json_type == "string" {
            schema["minLength"] = json!(1);
        }
    } else {
        schema["type"] = json!([json_type, "null"]);
    }
    schema
}

fn id(max_chars: usize) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": PLAIN_TEXT})
}

/// The `properties` object: every known property typed, unknown ones kept.
fn properties(required: &[&str]) -> Value {
    let mut known = Map::new();
    for &(name, kind) in KNOWN {
        known.insert(name.to_owned(), property(kind, required.contains(&name)));
    }
    let mut schema = json!({
        "type": "object",
        "properties": known,
        "additionalProperties": true,
    });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

/// One branch per event type with required properties, one for the rest.
fn by_event_type() -> Vec<Value> {
    let free: Vec<&str> =
        EventType::ALL.iter().filter(|t| t.required_properties().is_empty()).map(|t| t.as_str()).collect();
    let mut branches = vec![json!({"properties": {"event_type": {"enum": free}}})];
    for event_type in EventType::ALL.iter().filter(|t| !t.required_properties().is_empty()) {
        let required = event_type.required_properties();
        branches.push(json!({
            "properties": {
                "event_type": {"const": event_type.as_str()},
                "properties": properties(required),
            },
            "required": ["properties"],
        }));
    }
    branches
}

/// The JSON Schema of one client event (`POST /api/events`, and each item
/// of a batch).
pub fn client_event() -> Value {
    let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    let derived_session = json!({
        "type": "string",
        "maxLength": MAX_ID_CHARS + DERIVED_SESSION_PREFIX.len(),
        // PLAIN_TEXT after the prefix: the same characters as any id.
        "pattern": PLAIN_TEXT.replacen('^', &format!("^{DERIVED_SESSION_PREFIX}"), 1),
    });
    let mut user_id = id(MAX_ID_CHARS);
    user_id["type"] = json!(["string", "null"]);
    user_id["description"] = json!("the viewer; null or absent for anonymous viewers");
    let description = format!(
        "A playback event. At most {MAX_EVENT_BYTES} bytes of JSON. Needs a session_id or a user_id: \
         without a session_id the event's session is \"{DERIVED_SESSION_PREFIX}<user_id>\". \
         Custom data goes in properties (unknown properties are kept, at most {MAX_EXTRA_PROPERTIES_BYTES} \
         bytes of JSON in all) or metadata."
    );
    json!({
        "type": "object",
        "description": description,
        "properties": {
            "event_type": {"type": "string", "enum": names},
            "event_id": {
                "description": "a client-chosen uuid (not nil) for deduplication; when absent, the ingest API derives one from the event's fields as sent and the API key (the same event sent again gets the same id)",
                "type": ["string", "null"],
                "format": "uuid",
                "not": {"const": "00000000-0000-0000-0000-000000000000"},
            },
            "user_id": user_id,
            "session_id": {
                "description": "the playback session; a view is one (session, video)",
                "anyOf": [id(MAX_ID_CHARS), derived_session, {"type": "null"}],
            },
            "video_id": id(MAX_ID_CHARS),
            "timestamp": {
                "description": format!(
                    "when the event happened, RFC 3339 or integer epoch milliseconds, from 2000-01-01 \
                     to {} hours after the server receives it; the receive time when absent",
                    MAX_FUTURE_SKEW.num_hours()
                ),
                "anyOf": [
                    {"type": "string", "format": "date-time"},
                    {"type": "integer", "minimum": MIN_TIMESTAMP_MS, "maximum": MAX_TIMESTAMP_MS},
                    {"type": "null"},
                ],
            },
            "properties": {
                "description": "typed known properties (per event type, some are required) and free ones",
                "anyOf": [properties(&[]), {"type": "null"}],
            },
            "metadata": {
                "description": format!("free-form, at most {MAX_METADATA_BYTES} bytes of JSON"),
                "type": ["object", "null"],
            },
        },
        "required": ["event_type", "video_id"],
        "additionalProperties": false,
        "allOf": [
            {"anyOf": [
                {"properties": {"session_id": {"type": "string"}}, "required": ["session_id"]},
                {"properties": {"user_id": {"type": "string"}}, "required": ["user_id"]},
            ]},
            {"anyOf": by_event_type()},
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_property_is_in_the_schema_once() {
        let props = crate::Properties::default();
        for &(name, _) in KNOWN {
            assert!(!props.is_set(name), "{name}");
        }
        let mut names: Vec<&str> = KNOWN.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KNOWN.len());
        // Every required property of every type is a known one.
        for event_type in EventType::ALL {
            for name in event_type.required_properties() {
                assert!(names.contains(name), "{event_type}: {name}");
            }
        }
    }

    #[test]
    fn the_schema_names_every_event_type_and_the_required_fields() {
        let schema = client_event();
        assert_eq!(schema["properties"]["event_type"]["enum"].as_array().unwrap().len(), EventType::ALL.len());
        assert_eq!(schema["required"], json!(["event_type", "video_id"]));
        let branches = schema["allOf"][1]["anyOf"].as_array().unwrap();
        let progress = branches.iter().find(|b| b["properties"]["event_type"]["const"] == "video_progress").unwrap();
        assert_eq!(progress["properties"]["properties"]["required"], json!(["position_seconds"]));
    }
}
