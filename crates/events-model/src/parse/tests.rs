//! Unit tests for every validation rule.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::limits::{
    MAX_EVENT_BYTES, MAX_EXTRA_PROPERTIES_BYTES, MAX_ID_CHARS, MAX_METADATA_BYTES, MAX_REPORTED_ERRORS,
};
use crate::{DERIVED_SESSION_PREFIX, ErrorCode, Event, EventType, ROOT_FIELD, ValidationErrors};

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// The server receive time used throughout.
fn received() -> DateTime<Utc> {
    time("2024-05-01T12:00:00.500Z")
}

/// A valid event of the given type with its required properties.
fn valid(event_type: EventType) -> Value {
    let properties = match event_type {
        EventType::VideoProgress => json!({"position_seconds": 10.0}),
        EventType::Seek => json!({"seek_from_seconds": 10.0, "seek_to_seconds": 60.0}),
        EventType::VideoBuffer => json!({"buffer_duration_ms": 1200}),
        EventType::QualityChange => json!({"to_quality": "1080p"}),
        _ => json!({}),
    };
    json!({
        "event_type": event_type.as_str(),
        "session_id": "s1",
        "video_id": "v1",
        "properties": properties,
    })
}

/// A `video_start` with `key` set (or replaced) to `value`.
fn start_with(key: &str, value: Value) -> Value {
    let mut body = valid(EventType::VideoStart);
    body[key] = value;
    body
}

/// A `video_start` whose properties contain `name: value`.
fn start_with_property(name: &str, value: Value) -> Value {
    let mut body = valid(EventType::VideoStart);
    body["properties"][name] = value;
    body
}

fn without(mut body: Value, key: &str) -> Value {
    if let Some(object) = body.as_object_mut() {
        object.remove(key);
    }
    body
}

fn parse(body: Value) -> Result<Event, ValidationErrors> {
    Event::from_value(body, received())
}

fn ok(body: Value) -> Event {
    match parse(body) {
        Ok(event) => event,
        Err(errors) => panic!("expected a valid event, got: {errors}"),
    }
}

fn errors(body: Value) -> ValidationErrors {
    match parse(body) {
        Ok(event) => panic!("expected errors, got {event:?}"),
        Err(errors) => {
            assert!(!errors.is_empty());
            errors
        }
    }
}

/// Asserts the body fails with exactly one problem, and returns its message.
#[track_caller]
fn single_error(body: Value, field: &str, code: ErrorCode) -> String {
    let errors = errors(body);
    assert_eq!(errors.len(), 1, "{errors}");
    let error = &errors.as_slice()[0];
    assert_eq!((error.field.as_str(), error.code), (field, code), "{errors}");
    error.message.clone()
}

mod envelope {
    use super::*;

    #[test]
    fn every_type_with_its_required_properties_is_valid() {
        for event_type in EventType::ALL {
            let event = ok(valid(event_type));
            assert_eq!(event.event_type, event_type);
            assert_eq!(event.session_id, "s1");
            assert_eq!(event.video_id, "v1");
        }
    }

    #[test]
    fn defaults_are_applied() {
        let event = ok(without(valid(EventType::VideoStart), "properties"));
        assert_eq!(event.event_id.get_version_num(), 7, "server assigns a v7 id");
        assert_eq!(event.timestamp, received());
        assert_eq!(event.received_at, received());
        assert_eq!(event.user_id, None);
        assert_eq!(event.metadata, None);
        assert_eq!(event.properties, crate::Properties::default());
    }

    #[test]
    fn received_at_is_truncated_to_milliseconds() {
        let precise = time("2024-05-01T12:00:00.123456789Z");
        let event = Event::from_value(valid(EventType::VideoStart), precise).unwrap();
        assert_eq!(event.received_at, time("2024-05-01T12:00:00.123Z"));
        assert_eq!(event.timestamp, event.received_at);
    }

    #[test]
    fn null_optional_fields_count_as_absent() {
        let mut body = valid(EventType::VideoStart);
        for key in ["event_id", "user_id", "timestamp", "properties", "metadata"] {
            body[key] = Value::Null;
        }
        let event = ok(body);
        assert_eq!(event.user_id, None);
        assert_eq!(event.metadata, None);
        assert_eq!(event.timestamp, received());
    }

    #[test]
    fn assigned_event_ids_are_unique() {
        let a = ok(valid(EventType::VideoStart));
        let b = ok(valid(EventType::VideoStart));
        assert_ne!(a.event_id, b.event_id);
    }

    #[test]
    fn client_event_id_is_kept_so_retries_deduplicate() {
        let id = "0190a6a0-1234-7abc-8def-0123456789ab";
        let first = ok(start_with("event_id", json!(id)));
        let retry = ok(start_with("event_id", json!(id)));
        assert_eq!(first.event_id.to_string(), id);
        assert_eq!(first.event_id, retry.event_id);
    }

    #[test]
    fn event_id_accepts_any_version_and_notation() {
        let v4 = Uuid::new_v4();
        assert_eq!(ok(start_with("event_id", json!(v4.to_string()))).event_id, v4);
        let upper = v4.to_string().to_uppercase();
        assert_eq!(ok(start_with("event_id", json!(upper))).event_id, v4);
        let simple = v4.simple().to_string();
        assert_eq!(ok(start_with("event_id", json!(simple))).event_id, v4);
    }

    #[test]
    fn event_id_must_be_a_non_nil_uuid_string() {
        single_error(start_with("event_id", json!("not-a-uuid")), "event_id", ErrorCode::InvalidFormat);
        single_error(start_with("event_id", json!(42)), "event_id", ErrorCode::WrongType);
        let message =
            single_error(start_with("event_id", json!(Uuid::nil().to_string())), "event_id", ErrorCode::InvalidFormat);
        assert!(message.contains("nil"), "{message}");
    }

    #[test]
    fn event_type_is_required() {
        single_error(without(valid(EventType::VideoStart), "event_type"), "event_type", ErrorCode::Missing);
        single_error(start_with("event_type", Value::Null), "event_type", ErrorCode::Missing);
    }

    #[test]
    fn event_type_must_be_known() {
        let message =
            single_error(start_with("event_type", json!("video_stop")), "event_type", ErrorCode::UnknownEventType);
        assert!(message.contains("video_stop"), "{message}");
        assert!(message.contains("quality_change"), "{message}");
        single_error(start_with("event_type", json!(1)), "event_type", ErrorCode::WrongType);
    }

    #[test]
    fn session_and_video_ids_are_required() {
        for field in ["session_id", "video_id"] {
            let message = single_error(without(valid(EventType::VideoStart), field), field, ErrorCode::Missing);
            let expected =
                if field == "session_id" { "is required when the event has no user_id" } else { "is required" };
            assert_eq!(message, expected);
            single_error(start_with(field, Value::Null), field, ErrorCode::Missing);
        }
    }

    #[test]
    fn an_event_without_session_gets_one_derived_from_its_user() {
        // The product description's own "Track Event" example.
        let body =
            json!({"event_type": "video_start", "user_id": "user_123", "video_id": "video_456", "properties": {}});
        let event = ok(body.clone());
        assert_eq!(event.session_id, "user:user_123");
        assert_eq!(ok(body).session_id, event.session_id, "stable");
        let mut with_null = without(start_with("user_id", json!("u9")), "session_id");
        with_null["session_id"] = Value::Null;
        assert_eq!(ok(with_null).session_id, "user:u9");
        // A sent session is kept as sent.
        assert_eq!(ok(start_with("user_id", json!("u9"))).session_id, "s1");
        // The derived id survives the wire even for the longest user id.
        let longest = without(start_with("user_id", json!("u".repeat(MAX_ID_CHARS))), "session_id");
        let event = ok(longest);
        assert_eq!(event.session_id.chars().count(), MAX_ID_CHARS + DERIVED_SESSION_PREFIX.len());
        assert_eq!(Event::from_wire(&event.to_wire()), Ok(event));
        // Only a derived id may be that long.
        single_error(start_with("session_id", json!("s".repeat(MAX_ID_CHARS + 1))), "session_id", ErrorCode::TooLong);
    }

    #[test]
    fn ids_must_be_non_empty_short_clean_strings() {
        for field in ["session_id", "video_id", "user_id"] {
            let message = single_error(start_with(field, json!(7)), field, ErrorCode::WrongType);
            assert_eq!(message, "expected a string, got number");
            single_error(start_with(field, json!("")), field, ErrorCode::InvalidFormat);
            single_error(start_with(field, json!("x".repeat(257))), field, ErrorCode::TooLong);
            single_error(start_with(field, json!("a\u{0}b")), field, ErrorCode::InvalidCharacters);
            single_error(start_with(field, json!("a\nb")), field, ErrorCode::InvalidCharacters);
            ok(start_with(field, json!("é".repeat(256))));
        }
    }

    #[test]
    fn user_id_is_optional() {
        assert_eq!(ok(start_with("user_id", json!("u-1"))).user_id.as_deref(), Some("u-1"));
        assert_eq!(ok(start_with("user_id", Value::Null)).user_id, None);
    }

    #[test]
    fn received_at_is_not_accepted_from_clients() {
        let message = single_error(
            start_with("received_at", json!("2024-05-01T12:00:00Z")),
            "received_at",
            ErrorCode::UnknownField,
        );
        assert!(message.contains("server"), "{message}");
    }

    #[test]
    fn unknown_top_level_fields_are_rejected() {
        let message = single_error(start_with("campaign", json!("spring")), "campaign", ErrorCode::UnknownField);
        assert!(message.contains("metadata"), "{message}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let body = json!({
            "event_type": "seek",
            "session_id": "",
            "timestamp": "yesterday",
            "properties": {"seek_from_seconds": "10"},
            "metadata": [],
            "extra_field": 1
        });
        let errors = errors(body);
        let found: Vec<(&str, ErrorCode)> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            found,
            vec![
                ("session_id", ErrorCode::InvalidFormat),
                ("video_id", ErrorCode::Missing),
                ("timestamp", ErrorCode::InvalidFormat),
                ("properties.seek_from_seconds", ErrorCode::WrongType),
                ("metadata", ErrorCode::WrongType),
                ("properties.seek_to_seconds", ErrorCode::Missing),
                ("extra_field", ErrorCode::UnknownField),
            ]
        );
    }

    #[test]
    fn number_of_reported_problems_is_bounded() {
        let mut body = valid(EventType::VideoStart);
        for i in 0..200 {
            body[format!("f{i}")] = json!(i);
        }
        assert_eq!(errors(body).len(), MAX_REPORTED_ERRORS);
    }

    #[test]
    fn kafka_key_is_the_session_id() {
        let event = ok(start_with("session_id", json!("sess-9")));
        assert_eq!(event.kafka_key(), "sess-9");
    }

    #[test]
    fn fatal_error_detection() {
        let mut body = valid(EventType::VideoError);
        assert!(ok(body.clone()).is_fatal_error());
        body["properties"]["fatal"] = json!(false);
        assert!(!ok(body).is_fatal_error());
        assert!(!ok(valid(EventType::VideoStart)).is_fatal_error());
    }
}

mod timestamps {
    use super::*;

    fn timestamp_of(value: Value) -> DateTime<Utc> {
        ok(start_with("timestamp", value)).timestamp
    }

    #[test]
    fn rfc3339_with_offset_is_normalised_to_utc() {
        assert_eq!(timestamp_of(json!("2024-05-01T14:00:00+02:00")), time("2024-05-01T12:00:00Z"));
        assert_eq!(timestamp_of(json!("2024-05-01T07:30:00.5-04:30")), time("2024-05-01T12:00:00.500Z"));
        assert_eq!(timestamp_of(json!("2024-05-01t12:00:00z")), time("2024-05-01T12:00:00Z"));
    }

    #[test]
    fn sub_millisecond_precision_is_truncated() {
        assert_eq!(timestamp_of(json!("2024-05-01T12:00:00.123999999Z")), time("2024-05-01T12:00:00.123Z"));
    }

    #[test]
    fn epoch_milliseconds_are_accepted() {
        assert_eq!(timestamp_of(json!(1_714_564_800_250_i64)), time("2024-05-01T12:00:00.250Z"));
        assert_eq!(timestamp_of(json!(1_714_564_800_250.0)), time("2024-05-01T12:00:00.250Z"));
    }

    #[test]
    fn malformed_timestamps_are_rejected() {
        single_error(start_with("timestamp", json!("2024-05-01 noon")), "timestamp", ErrorCode::InvalidFormat);
        single_error(start_with("timestamp", json!("2024-05-01T12:00:00")), "timestamp", ErrorCode::InvalidFormat);
        single_error(start_with("timestamp", json!(1_714_564_800_250.5)), "timestamp", ErrorCode::InvalidFormat);
        single_error(start_with("timestamp", json!(true)), "timestamp", ErrorCode::WrongType);
        single_error(start_with("timestamp", json!(u64::MAX)), "timestamp", ErrorCode::OutOfRange);
        single_error(start_with("timestamp", json!(i64::MAX)), "timestamp", ErrorCode::OutOfRange);
        single_error(start_with("timestamp", json!(1e300)), "timestamp", ErrorCode::OutOfRange);
    }

    #[test]
    fn epoch_seconds_are_too_old_with_a_hint() {
        let message = single_error(start_with("timestamp", json!(1_714_564_800)), "timestamp", ErrorCode::TooOld);
        assert!(message.contains("milliseconds"), "{message}");
        single_error(start_with("timestamp", json!(-1)), "timestamp", ErrorCode::TooOld);
        single_error(start_with("timestamp", json!("1999-12-31T23:59:59.999Z")), "timestamp", ErrorCode::TooOld);
        assert_eq!(timestamp_of(json!("2000-01-01T00:00:00Z")), time("2000-01-01T00:00:00Z"));
    }

    #[test]
    fn at_most_a_day_in_the_future() {
        let limit = received() + TimeDelta::hours(24);
        assert_eq!(timestamp_of(json!(limit.timestamp_millis())), limit);
        let beyond = limit + TimeDelta::milliseconds(1);
        single_error(start_with("timestamp", json!(beyond.timestamp_millis())), "timestamp", ErrorCode::InFuture);
    }

    #[test]
    fn old_but_plausible_timestamps_are_kept() {
        // Offline playback uploaded much later is legitimate.
        assert_eq!(timestamp_of(json!("2001-01-01T00:00:00Z")), time("2001-01-01T00:00:00Z"));
    }
}

mod properties {
    use super::*;

    #[test]
    fn known_properties_are_typed() {
        let mut body = valid(EventType::VideoError);
        body["properties"] = json!({
            "position_seconds": 12.5,
            "duration_seconds": 600,
            "quality": "720p",
            "bitrate_kbps": 2500,
            "buffer_duration_ms": 0,
            "startup_time_ms": 850.0,
            "error_code": "E42",
            "error_message": "line one\nline two\tend",
            "fatal": false,
            "seek_from_seconds": 1,
            "seek_to_seconds": 2.25,
            "from_quality": "480p",
            "to_quality": "720p",
            "device_type": "tv",
            "browser": "Chrome",
            "os": "Linux",
            "country": "DE",
            "player": "shaka 4.9",
            "cdn": "edge-1",
        });
        let props = ok(body).properties;
        assert_eq!(props.position_seconds, Some(12.5));
        assert_eq!(props.duration_seconds, Some(600.0));
        assert_eq!(props.quality.as_deref(), Some("720p"));
        assert_eq!(props.bitrate_kbps, Some(2500));
        assert_eq!(props.buffer_duration_ms, Some(0));
        assert_eq!(props.startup_time_ms, Some(850));
        assert_eq!(props.error_code.as_deref(), Some("E42"));
        assert_eq!(props.error_message.as_deref(), Some("line one\nline two\tend"));
        assert_eq!(props.fatal, Some(false));
        assert_eq!(props.seek_from_seconds, Some(1.0));
        assert_eq!(props.seek_to_seconds, Some(2.25));
        assert_eq!(props.from_quality.as_deref(), Some("480p"));
        assert_eq!(props.to_quality.as_deref(), Some("720p"));
        assert_eq!(props.device_type.as_deref(), Some("tv"));
        assert_eq!(props.browser.as_deref(), Some("Chrome"));
        assert_eq!(props.os.as_deref(), Some("Linux"));
        assert_eq!(props.country.as_deref(), Some("DE"));
        assert_eq!(props.player.as_deref(), Some("shaka 4.9"));
        assert_eq!(props.cdn.as_deref(), Some("edge-1"));
        assert!(props.extra.is_empty());
        for name in crate::Properties::KNOWN {
            assert!(props.is_set(name), "{name}");
        }
    }

    #[test]
    fn properties_must_be_an_object() {
        let message = single_error(start_with("properties", json!([1])), "properties", ErrorCode::WrongType);
        assert_eq!(message, "expected an object, got array");
    }

    #[test]
    fn numbers_sent_as_strings_are_rejected() {
        let message = single_error(
            start_with_property("position_seconds", json!("12.5")),
            "properties.position_seconds",
            ErrorCode::WrongType,
        );
        assert_eq!(message, "expected a number, got string");
        single_error(
            start_with_property("bitrate_kbps", json!("2500")),
            "properties.bitrate_kbps",
            ErrorCode::WrongType,
        );
    }

    #[test]
    fn seconds_must_be_non_negative_and_bounded() {
        for name in ["position_seconds", "duration_seconds", "seek_from_seconds", "seek_to_seconds"] {
            let field = format!("properties.{name}");
            single_error(start_with_property(name, json!(-0.5)), &field, ErrorCode::OutOfRange);
            single_error(start_with_property(name, json!(10_000_000.5)), &field, ErrorCode::OutOfRange);
            single_error(start_with_property(name, json!(true)), &field, ErrorCode::WrongType);
            ok(start_with_property(name, json!(10_000_000)));
            ok(start_with_property(name, json!(0)));
        }
    }

    #[test]
    fn negative_zero_is_normalised() {
        let props = ok(start_with_property("position_seconds", json!(-0.0))).properties;
        assert!(props.position_seconds.is_some_and(|v| v == 0.0 && v.is_sign_positive()));
    }

    #[test]
    fn counters_must_be_whole_and_bounded() {
        let cases =
            [("bitrate_kbps", 1_000_000_u64), ("buffer_duration_ms", 86_400_000), ("startup_time_ms", 86_400_000)];
        for (name, max) in cases {
            let field = format!("properties.{name}");
            ok(start_with_property(name, json!(max)));
            single_error(start_with_property(name, json!(max + 1)), &field, ErrorCode::OutOfRange);
            single_error(start_with_property(name, json!(u64::MAX)), &field, ErrorCode::OutOfRange);
            single_error(start_with_property(name, json!(1e12)), &field, ErrorCode::OutOfRange);
            single_error(start_with_property(name, json!(-1)), &field, ErrorCode::OutOfRange);
            single_error(start_with_property(name, json!(-1.0)), &field, ErrorCode::OutOfRange);
            let message = single_error(start_with_property(name, json!(1.5)), &field, ErrorCode::WrongType);
            assert!(message.contains("whole number"), "{message}");
        }
    }

    #[test]
    fn fatal_must_be_a_boolean() {
        let message =
            single_error(start_with_property("fatal", json!("true")), "properties.fatal", ErrorCode::WrongType);
        assert_eq!(message, "expected a boolean, got string");
        single_error(start_with_property("fatal", json!(1)), "properties.fatal", ErrorCode::WrongType);
    }

    #[test]
    fn fatal_defaults_by_event_type() {
        let error = ok(valid(EventType::VideoError));
        assert_eq!(error.properties.fatal, None);
        assert!(error.properties.fatal_or_default(error.event_type));
        let pause = ok(valid(EventType::VideoPause));
        assert!(!pause.properties.fatal_or_default(pause.event_type));
    }

    #[test]
    fn dimension_strings_are_bounded_and_clean() {
        let dimensions = [
            "quality",
            "device_type",
            "browser",
            "os",
            "country",
            "player",
            "cdn",
            "from_quality",
            "to_quality",
            "error_code",
        ];
        for name in dimensions {
            let field = format!("properties.{name}");
            ok(start_with_property(name, json!("x".repeat(128))));
            single_error(start_with_property(name, json!("x".repeat(129))), &field, ErrorCode::TooLong);
            single_error(start_with_property(name, json!("a\nb")), &field, ErrorCode::InvalidCharacters);
            single_error(start_with_property(name, json!(5)), &field, ErrorCode::WrongType);
        }
    }

    #[test]
    fn error_message_allows_line_breaks_but_not_other_controls() {
        let field = "properties.error_message";
        ok(start_with_property("error_message", json!("x".repeat(2048))));
        single_error(start_with_property("error_message", json!("x".repeat(2049))), field, ErrorCode::TooLong);
        ok(start_with_property("error_message", json!("a\r\n\tb")));
        single_error(start_with_property("error_message", json!("bell\u{7}")), field, ErrorCode::InvalidCharacters);
    }

    #[test]
    fn empty_strings_and_nulls_count_as_absent() {
        let mut body = valid(EventType::VideoStart);
        body["properties"] = json!({"quality": "", "cdn": null, "position_seconds": null, "fatal": null});
        let props = ok(body).properties;
        assert_eq!(props, crate::Properties::default());
    }

    #[test]
    fn required_properties_per_type() {
        let cases = [
            (EventType::VideoProgress, vec!["position_seconds"]),
            (EventType::Seek, vec!["seek_from_seconds", "seek_to_seconds"]),
            (EventType::VideoBuffer, vec!["buffer_duration_ms"]),
            (EventType::QualityChange, vec!["to_quality"]),
        ];
        for (event_type, required) in cases {
            let body = without(valid(event_type), "properties");
            let errors = errors(body);
            let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
            let expected: Vec<String> = required.iter().map(|name| format!("properties.{name}")).collect();
            assert_eq!(fields, expected, "{event_type}");
            assert!(errors.iter().all(|e| e.code == ErrorCode::Missing));
            assert!(errors.iter().all(|e| e.message.contains(event_type.as_str())));
        }
    }

    #[test]
    fn empty_required_string_counts_as_missing() {
        let mut body = valid(EventType::QualityChange);
        body["properties"]["to_quality"] = json!("");
        single_error(body, "properties.to_quality", ErrorCode::Missing);
    }

    #[test]
    fn invalid_required_property_is_reported_once() {
        let mut body = valid(EventType::VideoProgress);
        body["properties"]["position_seconds"] = json!("12");
        single_error(body, "properties.position_seconds", ErrorCode::WrongType);
    }

    #[test]
    fn unknown_properties_are_kept_verbatim() {
        let mut body = valid(EventType::VideoStart);
        body["properties"] = json!({"ab_variant": "b", "nested": {"x": [1, null, "y"]}, "n": 1.5});
        let props = ok(body).properties;
        assert_eq!(props.extra.get("ab_variant"), Some(&json!("b")));
        assert_eq!(props.extra.get("nested"), Some(&json!({"x": [1, null, "y"]})));
        assert_eq!(props.extra.get("n"), Some(&json!(1.5)));
        assert_eq!(props.extra.len(), 3);
    }

    #[test]
    fn unknown_properties_are_size_limited() {
        let filler = "x".repeat(MAX_EXTRA_PROPERTIES_BYTES);
        let message = single_error(start_with_property("blob", json!(filler)), "properties", ErrorCode::TooLarge);
        assert!(message.contains("8192"), "{message}");
        // Known properties do not count against the limit.
        let mut body = start_with_property("blob", json!("x".repeat(MAX_EXTRA_PROPERTIES_BYTES - 20)));
        body["properties"]["error_message"] = json!("y".repeat(2000));
        ok(body);
    }
}

mod metadata {
    use super::*;

    #[test]
    fn metadata_object_is_kept() {
        let event = ok(start_with("metadata", json!({"page": "/watch", "exp": [1, 2]})));
        let metadata = event.metadata.unwrap();
        assert_eq!(Value::Object(metadata), json!({"page": "/watch", "exp": [1, 2]}));
    }

    #[test]
    fn empty_metadata_object_is_not_absent() {
        assert_eq!(ok(start_with("metadata", json!({}))).metadata, Some(serde_json::Map::new()));
    }

    #[test]
    fn metadata_must_be_an_object() {
        let message = single_error(start_with("metadata", json!("x")), "metadata", ErrorCode::WrongType);
        assert_eq!(message, "expected an object, got string");
    }

    #[test]
    fn metadata_is_size_limited() {
        let body = start_with("metadata", json!({"blob": "x".repeat(MAX_METADATA_BYTES)}));
        single_error(body, "metadata", ErrorCode::TooLarge);
    }
}

mod body {
    use super::*;

    fn parse_bytes(bytes: &[u8]) -> ValidationErrors {
        match Event::parse_json(bytes, received()) {
            Ok(event) => panic!("expected errors, got {event:?}"),
            Err(errors) => errors,
        }
    }

    #[track_caller]
    fn single_body_error(bytes: &[u8], code: ErrorCode) -> String {
        let errors = parse_bytes(bytes);
        assert_eq!(errors.len(), 1, "{errors}");
        assert_eq!(errors.as_slice()[0].field, ROOT_FIELD);
        assert_eq!(errors.as_slice()[0].code, code);
        errors.as_slice()[0].message.clone()
    }

    #[test]
    fn valid_json_body_parses() {
        let body = br#"{"event_type":"video_pause","session_id":"s","video_id":"v","user_id":"u"}"#;
        let event = Event::parse_json(body, received()).unwrap();
        assert_eq!(event.event_type, EventType::VideoPause);
        assert_eq!(event.user_id.as_deref(), Some("u"));
    }

    #[test]
    fn body_must_be_an_object() {
        let message = single_body_error(b"[1,2]", ErrorCode::NotAnObject);
        assert_eq!(message, "expected a json object, got array");
        single_body_error(b"\"video_start\"", ErrorCode::NotAnObject);
        single_body_error(b"null", ErrorCode::NotAnObject);
        let errors = parse(json!(3)).unwrap_err();
        assert_eq!(errors.primary_code(), Some(ErrorCode::NotAnObject));
    }

    #[test]
    fn invalid_json_reports_serde_message() {
        let message = single_body_error(b"{\"event_type\": ", ErrorCode::InvalidJson);
        assert!(message.contains("line 1"), "{message}");
        single_body_error(b"", ErrorCode::InvalidJson);
        single_body_error(b"{} {}", ErrorCode::InvalidJson);
    }

    #[test]
    fn invalid_utf8_is_reported() {
        let message = single_body_error(b"{\"session_id\":\"\xff\"}", ErrorCode::InvalidUtf8);
        assert!(message.contains("byte 15"), "{message}");
    }

    #[test]
    fn oversized_body_is_rejected_before_parsing() {
        let mut body = vec![b' '; MAX_EVENT_BYTES + 1];
        body[0] = b'{';
        let message = single_body_error(&body, ErrorCode::TooLarge);
        assert!(message.contains("32768"), "{message}");
        // Exactly at the limit is fine size-wise.
        let mut at_limit = br#"{"event_type":"video_start","session_id":"s","video_id":"v"}"#.to_vec();
        at_limit.resize(MAX_EVENT_BYTES, b' ');
        assert!(Event::parse_json(&at_limit, received()).is_ok());
    }

    #[test]
    fn oversized_value_is_rejected() {
        let mut body = valid(EventType::VideoStart);
        for i in 0..5 {
            body["metadata"][format!("k{i}")] = json!("x".repeat(7000));
        }
        let errors = parse(body).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors.as_slice()[0].field, ROOT_FIELD);
        assert_eq!(errors.as_slice()[0].code, ErrorCode::TooLarge);
    }
}

mod wire {
    use super::*;

    fn full_event() -> Event {
        let body = json!({
            "event_id": "0190a6a0-1234-7abc-8def-0123456789ab",
            "event_type": "video_progress",
            "user_id": "u1",
            "session_id": "s1",
            "video_id": "v1",
            "timestamp": "2024-05-01T14:00:00.25+02:00",
            "properties": {"position_seconds": 12, "quality": "720p", "ab": [1, "x"]},
            "metadata": {"page": "/watch"}
        });
        ok(body)
    }

    #[test]
    fn wire_format_is_compact_normalised_json() {
        let wire = String::from_utf8(full_event().to_wire()).unwrap();
        assert_eq!(
            wire,
            concat!(
                r#"{"event_id":"0190a6a0-1234-7abc-8def-0123456789ab","event_type":"video_progress","#,
                r#""user_id":"u1","session_id":"s1","video_id":"v1","#,
                r#""timestamp":"2024-05-01T12:00:00.250Z","received_at":"2024-05-01T12:00:00.500Z","#,
                r#""properties":{"position_seconds":12.0,"quality":"720p","ab":[1,"x"]},"#,
                r#""metadata":{"page":"/watch"}}"#
            )
        );
    }

    #[test]
    fn absent_optionals_are_written_as_null() {
        let event = ok(valid(EventType::VideoStart));
        let wire: Value = serde_json::from_slice(&event.to_wire()).unwrap();
        assert_eq!(wire["user_id"], Value::Null);
        assert_eq!(wire["metadata"], Value::Null);
        assert_eq!(wire["properties"], json!({}));
    }

    #[test]
    fn wire_round_trip_is_exact() {
        for event in [full_event(), ok(valid(EventType::VideoError)), ok(valid(EventType::Seek))] {
            assert_eq!(Event::from_wire(&event.to_wire()), Ok(event));
        }
    }

    #[test]
    fn serialize_matches_the_wire_format() {
        let event = full_event();
        assert_eq!(serde_json::to_vec(&event).unwrap(), event.to_wire());
    }

    #[test]
    fn client_json_parses_back_to_the_same_event() {
        let event = full_event();
        let client = event.to_client_json();
        let client_value: Value = serde_json::from_slice(&client).unwrap();
        assert!(client_value.get("received_at").is_none());
        assert_eq!(Event::parse_json(&client, event.received_at), Ok(event));
    }

    #[test]
    fn wire_requires_event_id_and_received_at() {
        let mut wire: Value = serde_json::from_slice(&full_event().to_wire()).unwrap();
        let object = wire.as_object_mut().unwrap();
        object.remove("event_id");
        object.remove("received_at");
        let errors = Event::from_wire(&serde_json::to_vec(&wire).unwrap()).unwrap_err();
        assert!(errors.has("event_id", ErrorCode::Missing), "{errors}");
        assert!(errors.has("received_at", ErrorCode::Missing), "{errors}");
    }

    #[test]
    fn wire_checks_timestamp_against_its_own_received_at() {
        // Years old: replaying a topic must not reject old events.
        let old = br#"{"event_id":"0190a6a0-1234-7abc-8def-0123456789ab","event_type":"video_start",
            "session_id":"s","video_id":"v","timestamp":"2020-01-01T00:00:00.000Z",
            "received_at":"2020-01-01T00:00:01.000Z","properties":{}}"#;
        let event = Event::from_wire(old).unwrap();
        assert_eq!(event.received_at, time("2020-01-01T00:00:01Z"));
        let future = br#"{"event_id":"0190a6a0-1234-7abc-8def-0123456789ab","event_type":"video_start",
            "session_id":"s","video_id":"v","timestamp":"2020-01-03T00:00:00.000Z",
            "received_at":"2020-01-01T00:00:00.000Z"}"#;
        let errors = Event::from_wire(future).unwrap_err();
        assert!(errors.has("timestamp", ErrorCode::InFuture), "{errors}");
    }

    #[test]
    fn wire_received_at_must_be_plausible() {
        let template = r#"{"event_id":"0190a6a0-1234-7abc-8def-0123456789ab","event_type":"video_start",
            "session_id":"s","video_id":"v","received_at":RECEIVED}"#;
        let check = |received: &str, code: ErrorCode| {
            let body = template.replace("RECEIVED", received);
            let errors = Event::from_wire(body.as_bytes()).unwrap_err();
            assert!(errors.has("received_at", code), "{received}: {errors}");
        };
        check("\"1990-01-01T00:00:00Z\"", ErrorCode::TooOld);
        check("\"2200-01-01T00:00:00Z\"", ErrorCode::OutOfRange);
        check("\"soon\"", ErrorCode::InvalidFormat);
        check("null", ErrorCode::Missing);
    }

    #[test]
    fn poison_messages_are_rejected_with_a_reason() {
        assert_eq!(Event::from_wire(b"\x00\x01binary").unwrap_err().primary_code(), Some(ErrorCode::InvalidJson));
        assert_eq!(Event::from_wire(b"\xff").unwrap_err().primary_code(), Some(ErrorCode::InvalidUtf8));
        let mut wire: Value = serde_json::from_slice(&full_event().to_wire()).unwrap();
        wire["properties"]["position_seconds"] = json!(-3);
        wire["injected"] = json!(true);
        let errors = Event::from_wire(&serde_json::to_vec(&wire).unwrap()).unwrap_err();
        assert!(errors.has("properties.position_seconds", ErrorCode::OutOfRange), "{errors}");
        assert!(errors.has("injected", ErrorCode::UnknownField), "{errors}");
    }

    #[test]
    fn normalised_event_near_the_client_limit_fits_the_wire_limit() {
        let mut body = valid(EventType::VideoStart);
        body["metadata"] = json!({"m": "x".repeat(MAX_METADATA_BYTES - 10)});
        body["properties"]["blob"] = json!("y".repeat(MAX_EXTRA_PROPERTIES_BYTES - 14));
        body["properties"]["error_message"] = json!("\"".repeat(2048));
        for name in ["quality", "device_type", "browser", "os", "country", "player", "cdn"] {
            body["properties"][name] = json!("\\".repeat(128));
        }
        let event = ok(body);
        assert_eq!(Event::from_wire(&event.to_wire()), Ok(event));
    }
}

/// Every [`ErrorCode`] is produced by some input.
#[test]
fn every_error_code_is_reachable() {
    let bad_values = vec![
        without(valid(EventType::VideoStart), "session_id"),
        start_with("session_id", json!(1)),
        start_with("event_type", json!("nope")),
        start_with("bogus", json!(1)),
        start_with_property("bitrate_kbps", json!(-1)),
        start_with("video_id", json!("v".repeat(300))),
        start_with("event_id", json!("x")),
        start_with("timestamp", json!("2999-01-01T00:00:00Z")),
        start_with("timestamp", json!(1)),
        start_with("video_id", json!("\u{1b}[31m")),
        json!([]),
        start_with("metadata", json!({"x": "y".repeat(MAX_METADATA_BYTES)})),
    ];
    let mut codes = BTreeSet::new();
    for body in bad_values {
        codes.extend(errors(body).iter().map(|e| e.code));
    }
    for bytes in [&b"{"[..], &b"\xc3\x28"[..]] {
        if let Err(errors) = Event::parse_json(bytes, received()) {
            codes.extend(errors.iter().map(|e| e.code));
        }
    }
    // `duplicate_event_id` (a batch's) and `too_late` (against the lateness
    // horizon) are the gateway's checks, not the validator's.
    let all: BTreeSet<ErrorCode> =
        ErrorCode::ALL.into_iter().filter(|c| !matches!(c, ErrorCode::DuplicateEventId | ErrorCode::TooLate)).collect();
    assert_eq!(codes, all);
}

#[test]
fn odd_unknown_field_names_are_quoted_and_bounded() {
    let field_of = |key: &str| {
        let errors = errors(start_with(key, json!(1)));
        assert_eq!(errors.len(), 1, "{errors}");
        assert_eq!(errors.as_slice()[0].code, ErrorCode::UnknownField);
        errors.as_slice()[0].field.clone()
    };
    assert_eq!(field_of("campaign"), "campaign");
    assert_eq!(field_of(""), "\"\"");
    assert_eq!(field_of("a\u{1}b"), "\"a\\u0001b\"");
    let long = field_of(&"k".repeat(1000));
    assert!(long.starts_with("\"kkk") && long.ends_with('…'), "{long}");
    assert_eq!(long.chars().count(), 65);
}

/// Ids of events sent without `event_id` (`parse/derived_id.rs`).
mod derived_ids {
    use super::*;
    use crate::Arrival;

    const KEY: &str = "ak_0123abcd";

    fn arrival(key_id: Option<&str>) -> Arrival<'_> {
        Arrival { received_at: received(), key_id }
    }

    /// The id the ingest path gives `body` sent with `key_id`.
    fn id_by(body: Value, key_id: Option<&str>) -> Uuid {
        match Event::from_client_value(body, arrival(key_id)) {
            Ok(event) => event.event_id,
            Err(errors) => panic!("expected a valid event, got: {errors}"),
        }
    }

    fn id(body: Value) -> Uuid {
        id_by(body, Some(KEY))
    }

    /// A progress event using every kind of field.
    fn full() -> Value {
        json!({
            "event_type": "video_progress",
            "user_id": "u1",
            "session_id": "s1",
            "video_id": "v1",
            "timestamp": "2024-05-01T11:59:00.250Z",
            "properties": {
                "position_seconds": 30.5, "duration_seconds": 600, "quality": "720p", "bitrate_kbps": 2500,
                "buffer_duration_ms": 10, "startup_time_ms": 900, "error_code": "E1", "error_message": "m",
                "fatal": false, "seek_from_seconds": 1, "seek_to_seconds": 2, "from_quality": "480p",
                "to_quality": "720p", "device_type": "tv", "browser": "b", "os": "o", "country": "FR",
                "player": "p", "cdn": "c", "ab_variant": "b", "tags": ["x", 1, null, {"k": true}],
            },
            "metadata": {"player_version": "1.2.3", "nested": {"a": 1, "b": [1.5, "z"]}},
        })
    }

    #[test]
    fn the_same_body_from_the_same_key_gets_the_same_id() {
        let first = id(full());
        assert_eq!(first.get_version_num(), 8, "a name-based uuid (v8 over sha-256)");
        assert_eq!(id(full()), first);
        // The receive time is not part of it: a retry arrives later.
        let later = Arrival { received_at: received() + TimeDelta::minutes(5), key_id: Some(KEY) };
        assert_eq!(Event::from_client_value(full(), later).unwrap().event_id, first);
        // Raw bytes and an already parsed value give the same id.
        let bytes = serde_json::to_vec(&full()).unwrap();
        assert_eq!(Event::parse_client_json(&bytes, arrival(Some(KEY))).unwrap().event_id, first);
    }

    #[test]
    fn the_rule_is_pinned() {
        // The canonical form is versioned (`v1`); an accidental change would
        // give every resent event a new id. Changing it on purpose means a
        // new version and a new value here. (The value was checked against
        // a separate implementation of the documented encoding: sha-256 of
        // the domain, `+`, the key and the fields, tagged and length-prefixed
        // as in `Canonical`.)
        let body = json!({"event_type": "video_start", "session_id": "s1", "video_id": "v1"});
        assert_eq!(id(body).to_string(), "c1b78f02-a737-863b-87e4-87e2970173a5");
    }

    #[test]
    fn another_key_or_no_key_gets_another_id() {
        let ids: BTreeSet<Uuid> =
            [Some(KEY), Some("ak_99999999"), Some(""), None].into_iter().map(|key| id_by(full(), key)).collect();
        assert_eq!(ids.len(), 4, "{ids:?}");
        assert_eq!(id_by(full(), None), id_by(full(), None), "no key: one fixed namespace");
    }

    #[test]
    fn any_change_of_a_sent_field_changes_the_id() {
        let mut variants = vec![full()];
        let mut change = |path: &[&str], value: Value| {
            let mut body = full();
            let mut slot = &mut body;
            for key in path {
                slot = &mut slot[*key];
            }
            *slot = value;
            variants.push(body);
        };
        change(&["event_type"], json!("video_pause"));
        change(&["user_id"], json!("u2"));
        change(&["user_id"], Value::Null);
        change(&["session_id"], json!("s2"));
        change(&["video_id"], json!("v2"));
        change(&["timestamp"], json!("2024-05-01T11:59:00.251Z"));
        change(&["timestamp"], Value::Null);
        for (name, value) in [
            ("position_seconds", json!(30.25)),
            ("duration_seconds", json!(601)),
            ("quality", json!("1080p")),
            ("bitrate_kbps", json!(2501)),
            ("buffer_duration_ms", json!(11)),
            ("startup_time_ms", json!(901)),
            ("error_code", json!("E2")),
            ("error_message", json!("n")),
            ("fatal", json!(true)),
            ("seek_from_seconds", json!(1.5)),
            ("seek_to_seconds", json!(3)),
            ("from_quality", json!("360p")),
            ("to_quality", json!("1080p")),
            ("device_type", json!("mobile")),
            ("browser", json!("B")),
            ("os", json!("O")),
            ("country", json!("DE")),
            ("player", json!("P")),
            ("cdn", json!("C")),
            ("ab_variant", json!("a")),
            ("ab_variant", json!(1)),
            ("tags", json!(["x", 1, null, {"k": false}])),
            ("tags", json!([1, "x", null, {"k": true}])),
            ("new_one", json!("")),
        ] {
            change(&["properties", name], value);
        }
        for name in crate::Properties::KNOWN.into_iter().filter(|name| *name != "position_seconds") {
            change(&["properties", name], Value::Null);
        }
        change(&["metadata", "player_version"], json!("1.2.4"));
        change(&["metadata", "nested", "b"], json!([1.5, "y"]));
        change(&["metadata", "nested", "a"], json!(1.5));
        change(&["metadata"], Value::Null);
        change(&["metadata"], json!({}));
        // The same unknown data under properties or under metadata differs.
        change(&["properties", "player_version"], json!("1.2.3"));

        let count = variants.len();
        let ids: BTreeSet<Uuid> = variants.into_iter().map(id).collect();
        assert_eq!(ids.len(), count, "every variant has its own id");
    }

    #[test]
    fn an_absent_timestamp_stays_absent() {
        // Without a timestamp the receive time stands in, but is not hashed:
        // the id does not depend on when the event arrived ...
        let untimed = without(full(), "timestamp");
        let early = Event::from_client_value(untimed.clone(), arrival(Some(KEY))).unwrap();
        let later = Arrival { received_at: received() + TimeDelta::seconds(30), key_id: Some(KEY) };
        let late = Event::from_client_value(untimed, later).unwrap();
        assert_ne!(early.timestamp, late.timestamp);
        assert_eq!(early.event_id, late.event_id);
        // ... and differs from the same event stamped with that very time.
        let stamped = start_with("timestamp", json!("2024-05-01T12:00:00.500Z"));
        let unstamped = valid(EventType::VideoStart);
        assert_eq!(Event::from_client_value(stamped.clone(), arrival(None)).unwrap().timestamp, received());
        assert_ne!(id(stamped), id(unstamped));
    }

    #[test]
    fn notation_and_key_order_do_not_matter() {
        let a = br#"{"event_type":"video_progress","session_id":"s1","video_id":"v1",
            "timestamp":"2024-05-01T13:59:00.250+02:00",
            "properties":{"position_seconds":30,"quality":"720p","x":{"b":1,"a":[2,{"d":1,"c":2}]}},
            "metadata":{"z":1,"y":{"q":null,"p":"t"}}}"#;
        let b = br#"{"metadata":{"y":{"p":"t","q":null},"z":1},
            "properties":{"x":{"a":[2,{"c":2,"d":1}],"b":1},"quality":"720p","position_seconds":30.0},
            "video_id":"v1","timestamp":1714564740250,"session_id":"s1","event_type":"video_progress"}"#;
        let parse = |bytes: &[u8]| Event::parse_client_json(bytes, arrival(Some(KEY))).unwrap();
        let (a, b) = (parse(a), parse(b));
        assert_eq!(a, b, "the same event");
        // Array order is content, not notation.
        let c = br#"{"event_type":"video_progress","session_id":"s1","video_id":"v1",
            "timestamp":1714564740250,"properties":{"position_seconds":30,"quality":"720p",
            "x":{"a":[{"d":1,"c":2},2],"b":1}},"metadata":{"z":1,"y":{"q":null,"p":"t"}}}"#;
        assert_ne!(parse(c).event_id, a.event_id);
    }

    #[test]
    fn a_derived_session_is_the_same_event_as_sending_it() {
        let derived = json!({"event_type": "video_start", "user_id": "u1", "video_id": "v1"});
        let mut sent = derived.clone();
        sent["session_id"] = json!(format!("{DERIVED_SESSION_PREFIX}u1"));
        assert_eq!(id(derived), id(sent), "identical stored events");
    }

    #[test]
    fn a_client_event_id_is_kept() {
        let client = Uuid::new_v4();
        let body = start_with("event_id", json!(client.to_string()));
        assert_eq!(id(body), client);
    }

    #[test]
    fn tools_still_get_random_ids() {
        let body = valid(EventType::VideoStart);
        let (a, b) = (ok(body.clone()), ok(body));
        assert_ne!(a.event_id, b.event_id);
        assert_eq!(a.event_id.get_version_num(), 7);
    }
}
