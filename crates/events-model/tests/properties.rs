//! Property tests: exact round trips for valid events, and no panics (and
//! well-formed errors) for arbitrary input.
#![cfg(test)]

use chrono::{DateTime, TimeDelta, Utc};
use events_model::limits::{
    MAX_BITRATE_KBPS, MAX_DURATION_MS, MAX_FUTURE_SKEW, MAX_SECONDS, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS,
};
use events_model::{Arrival, Event, EventRow, EventType, Properties, ValidationErrors};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use uuid::Uuid;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

// ---------------------------------------------------------------------------
// Strategies for valid events
// ---------------------------------------------------------------------------

fn event_type() -> impl Strategy<Value = EventType> {
    proptest::sample::select(EventType::ALL.to_vec())
}

/// Text of `events_model::text::is_plain` characters only (no control,
/// invisible or bidirectional formatting character).
fn plain(pattern: &'static str) -> impl Strategy<Value = String> {
    pattern.prop_filter("plain characters", |s: &String| s.chars().all(events_model::text::is_plain))
}

/// Identifiers: plain characters, 1..=64 of them.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![plain("[a-zA-Z0-9_.:-]{1,64}"), plain("\\PC{1,64}")]
}

/// A non-empty dimension string of plain characters.
fn dimension() -> impl Strategy<Value = String> {
    prop_oneof![plain("[a-zA-Z0-9 _.-]{1,16}"), plain("\\PC{1,128}")]
}

fn error_message() -> impl Strategy<Value = String> {
    "[\\PC\n\r\t]{1,300}"
}

fn seconds() -> impl Strategy<Value = f64> {
    prop_oneof![0.0..=MAX_SECONDS, (0u32..100_000).prop_map(f64::from), Just(0.0), Just(MAX_SECONDS),]
}

/// Scalar and nested JSON values for unknown properties and metadata.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", Number::from_f64).prop_map(Value::Number),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_map(key: impl Strategy<Value = String>) -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map(key, json_value(), 0..5).prop_map(|m| m.into_iter().collect())
}

/// Unknown property names: anything that is not a known property.
fn extra_properties() -> impl Strategy<Value = Map<String, Value>> {
    json_map("[a-z_]{1,12}|.{0,12}".prop_filter("not a known property", |k| !Properties::is_known(k)))
}

prop_compose! {
    fn properties()(
        position_seconds in proptest::option::of(seconds()),
        duration_seconds in proptest::option::of(seconds()),
        quality in proptest::option::of(dimension()),
        bitrate_kbps in proptest::option::of(0..=MAX_BITRATE_KBPS),
        buffer_duration_ms in proptest::option::of(0..=MAX_DURATION_MS),
        startup_time_ms in proptest::option::of(0..=MAX_DURATION_MS),
        error_code in proptest::option::of(dimension()),
        error_message in proptest::option::of(error_message()),
        fatal in proptest::option::of(any::<bool>()),
        seek_from_seconds in proptest::option::of(seconds()),
        seek_to_seconds in proptest::option::of(seconds()),
        from_quality in proptest::option::of(dimension()),
        to_quality in proptest::option::of(dimension()),
        (device_type, browser, os) in (
            proptest::option::of(dimension()),
            proptest::option::of(dimension()),
            proptest::option::of(dimension()),
        ),
        (country, player, cdn) in (
            proptest::option::of(dimension()),
            proptest::option::of(dimension()),
            proptest::option::of(dimension()),
        ),
        extra in extra_properties(),
    ) -> Properties {
        Properties {
            position_seconds, duration_seconds, quality, bitrate_kbps, buffer_duration_ms,
            startup_time_ms, error_code, error_message, fatal, seek_from_seconds,
            seek_to_seconds, from_quality, to_quality, device_type, browser, os, country,
            player, cdn, extra,
        }
    }
}

/// Fills in whatever `event_type` requires, deterministically from `seed`.
fn with_required(event_type: EventType, mut props: Properties, seed: u32) -> Properties {
    let value = f64::from(seed % 10_000);
    match event_type {
        EventType::VideoProgress => {
            props.position_seconds.get_or_insert(value);
        }
        EventType::Seek => {
            props.seek_from_seconds.get_or_insert(value);
            props.seek_to_seconds.get_or_insert(value / 2.0);
        }
        EventType::VideoBuffer => {
            props.buffer_duration_ms.get_or_insert(seed % MAX_DURATION_MS);
        }
        EventType::QualityChange => {
            props.to_quality.get_or_insert_with(|| format!("{}p", seed % 2160));
        }
        _ => {}
    }
    props
}

fn millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

prop_compose! {
    /// `(timestamp, received_at)`, both plausible, at millisecond precision.
    fn times()(received_ms in MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS)(
        received_ms in Just(received_ms),
        timestamp_ms in MIN_TIMESTAMP_MS..=received_ms + MAX_FUTURE_SKEW.num_milliseconds(),
    ) -> (DateTime<Utc>, DateTime<Utc>) {
        (millis(timestamp_ms), millis(received_ms))
    }
}

prop_compose! {
    fn valid_event()(
        event_id in any::<u128>().prop_filter("not nil", |v| *v != 0).prop_map(Uuid::from_u128),
        event_type in event_type(),
        user_id in proptest::option::of(id()),
        session_id in id(),
        video_id in id(),
        (timestamp, received_at) in times(),
        props in properties(),
        seed in any::<u32>(),
        metadata in proptest::option::of(json_map(".{0,10}")),
    ) -> Event {
        Event {
            event_id,
            event_type,
            user_id,
            session_id,
            video_id,
            timestamp,
            received_at,
            properties: with_required(event_type, props, seed),
            metadata,
        }
    }
}

// ---------------------------------------------------------------------------
// Strategies for hostile input
// ---------------------------------------------------------------------------

/// Objects that look like events: envelope and property names with values
/// that are sometimes right and often wrong.
fn event_like_object() -> impl Strategy<Value = Value> {
    let envelope_key = proptest::sample::select(vec![
        "event_id",
        "event_type",
        "user_id",
        "session_id",
        "video_id",
        "timestamp",
        "received_at",
        "metadata",
        "bogus",
    ]);
    let plausible = prop_oneof![
        json_value(),
        proptest::sample::select(EventType::ALL.to_vec()).prop_map(|t| Value::from(t.as_str())),
        Just(Value::from(Uuid::now_v7().to_string())),
        (MIN_TIMESTAMP_MS - 10..MAX_TIMESTAMP_MS).prop_map(Value::from),
        Just(Value::from("2024-05-01T12:00:00.000+02:00")),
        (-1.0e12..1.0e12f64).prop_map(Value::from),
        "\\PC{0,300}".prop_map(Value::from),
        Just(Value::from("")),
    ];
    let property_key =
        prop_oneof![proptest::sample::select(Properties::KNOWN.to_vec()).prop_map(str::to_owned), "[a-z]{1,6}",];
    let properties = proptest::collection::btree_map(property_key, plausible.clone(), 0..8)
        .prop_map(|m| Value::Object(m.into_iter().collect()));
    (
        proptest::collection::btree_map(envelope_key.prop_map(str::to_owned), plausible, 0..9),
        proptest::option::of(prop_oneof![properties, json_value()]),
    )
        .prop_map(|(envelope, properties)| {
            let mut object: Map<String, Value> = envelope.into_iter().collect();
            if let Some(properties) = properties {
                object.insert("properties".to_owned(), properties);
            }
            Value::Object(object)
        })
}

fn received_at() -> DateTime<Utc> {
    millis(1_714_564_800_000)
}

fn assert_well_formed(result: &Result<Event, ValidationErrors>) -> Result<(), TestCaseError> {
    if let Err(errors) = result {
        prop_assert!(!errors.is_empty(), "an error result must name at least one problem");
        for error in errors {
            prop_assert!(!error.field.is_empty(), "empty field name in {errors}");
            prop_assert!(!error.message.is_empty(), "empty message in {errors}");
        }
    }
    Ok(())
}

/// `event` sent without its `event_id` gets a derived id (v8), the same
/// when resent `later` as bytes, and another one from another key.
fn check_derived_id(event: &Event, later: TimeDelta) -> Result<(), TestCaseError> {
    let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(e.to_string());
    let mut value: Value = serde_json::from_slice(&event.to_client_json()).map_err(|e| fail(&e))?;
    value.as_object_mut().map(|object| object.remove("event_id"));
    let first = Arrival { received_at: event.received_at, key_id: Some("ak_0000beef") };
    let derived = Event::from_client_value(value.clone(), first).map_err(|e| fail(&e))?;
    prop_assert_eq!(derived.event_id.get_version_num(), 8);
    // The rest of the event is what the client sent.
    prop_assert_eq!(&Event { event_id: event.event_id, ..derived.clone() }, event);
    // A resend, later, as bytes: the same id.
    let resend = Arrival { received_at: event.received_at + later, ..first };
    let bytes = serde_json::to_vec(&value).map_err(|e| fail(&e))?;
    let again = Event::parse_client_json(&bytes, resend).map_err(|e| fail(&e))?;
    prop_assert_eq!(again.event_id, derived.event_id);
    // Another key: another id.
    let other = Arrival { key_id: Some("ak_0000cafe"), ..first };
    let elsewhere = Event::from_client_value(value, other).map_err(|e| fail(&e))?;
    prop_assert_ne!(elsewhere.event_id, derived.event_id);
    Ok(())
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn valid_events_round_trip_through_the_wire_format(event in valid_event()) {
        let wire = event.to_wire();
        prop_assert_eq!(Event::from_wire(&wire), Ok(event.clone()));
        // Re-encoding is stable byte for byte.
        prop_assert_eq!(Event::from_wire(&wire).map(|e| e.to_wire()), Ok(wire));
    }

    #[test]
    fn valid_events_round_trip_through_the_client_format(event in valid_event()) {
        let client = event.to_client_json();
        prop_assert_eq!(Event::parse_json(&client, event.received_at), Ok(event.clone()));
        let value: Value = serde_json::from_slice(&client).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(Event::from_value(value, event.received_at), Ok(event.clone()));
    }

    #[test]
    fn an_event_resent_without_id_gets_the_same_derived_id(event in valid_event()) {
        // (One strategy only: a second argument overflows the test thread's
        // stack while proptest builds the value trees.)
        check_derived_id(&event, TimeDelta::milliseconds(1))?;
        check_derived_id(&event, TimeDelta::hours(6))?;
    }

    #[test]
    fn valid_events_convert_to_rows(event in valid_event()) {
        let row = EventRow::from(&event);
        prop_assert_eq!(row.event_id, event.event_id);
        prop_assert_eq!(i64::try_from(row.timestamp_ms).ok(), Some(event.timestamp.timestamp_millis()));
        prop_assert_eq!(i64::from(row.timestamp), event.timestamp.timestamp());
        prop_assert_eq!(row.fatal == 1, event.properties.fatal_or_default(event.event_type));
        let extra: Value = serde_json::from_str(&row.properties).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(extra, Value::Object(event.properties.extra.clone()));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let result = Event::parse_json(&bytes, received_at());
        assert_well_formed(&result)?;
        assert_well_formed(&Event::from_wire(&bytes))?;
    }

    #[test]
    fn json_like_text_never_panics(text in "[{}\\[\\]\":,0-9a-z_ .eE+-]{0,256}") {
        assert_well_formed(&Event::parse_json(text.as_bytes(), received_at()))?;
        assert_well_formed(&Event::from_wire(text.as_bytes()))?;
    }

    #[test]
    fn arbitrary_json_values_never_panic(value in json_value()) {
        assert_well_formed(&Event::from_value(value, received_at()))?;
    }

    #[test]
    fn event_like_objects_never_panic(value in event_like_object()) {
        let bytes = serde_json::to_vec(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let from_value = Event::from_value(value, received_at());
        assert_well_formed(&from_value)?;
        // Bytes and value entry points agree.
        prop_assert_eq!(
            Event::parse_json(&bytes, received_at()).map(|e| (e.event_type, e.session_id)),
            from_value.clone().map(|e| (e.event_type, e.session_id))
        );
        assert_well_formed(&Event::from_wire(&bytes))?;
        // Whatever is accepted survives the wire unchanged.
        if let Ok(event) = from_value {
            prop_assert_eq!(Event::from_wire(&event.to_wire()), Ok(event));
        }
    }
}

#[test]
fn far_future_skew_constant_is_one_day() {
    assert_eq!(MAX_FUTURE_SKEW, TimeDelta::hours(24));
}
