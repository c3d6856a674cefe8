//! Validation of the `properties` object.

use serde_json::{Map, Number, Value};

use super::json::{Controls, check_text, compact_len, non_null, wrong_type};
use super::problems::Problems;
use crate::error::ErrorCode;
use crate::limits::{
    MAX_BITRATE_KBPS, MAX_DIMENSION_CHARS, MAX_DURATION_MS, MAX_ERROR_MESSAGE_CHARS, MAX_EXTRA_PROPERTIES_BYTES,
    MAX_SECONDS,
};
use crate::{EventType, Properties};

/// Field name of the properties object in problem reports.
pub(crate) const FIELD: &str = "properties";

/// Validates the known properties of `map`, keeps the rest as extras.
pub(crate) fn parse_properties(mut map: Map<String, Value>, problems: &mut Problems) -> Properties {
    let mut props = Properties::default();

    // The field path is a constant: nothing is allocated for a valid property.
    macro_rules! parse {
        ($name:ident, $parser:expr) => {{
            let value = non_null(map.remove(stringify!($name)));
            let field: &str = concat!("properties.", stringify!($name));
            props.$name = value.and_then(|v| $parser(v, field, &mut *problems));
        }};
    }

    let seconds = |v, f: &str, p: &mut Problems| number_property(v, f, p, parse_seconds);
    let bitrate = |v, f: &str, p: &mut Problems| number_property(v, f, p, |n| parse_whole(n, MAX_BITRATE_KBPS));
    let millis = |v, f: &str, p: &mut Problems| number_property(v, f, p, |n| parse_whole(n, MAX_DURATION_MS));
    let dimension = |v, f: &str, p: &mut Problems| text_property(v, f, p, MAX_DIMENSION_CHARS, Controls::Forbidden);
    let message = |v, f: &str, p: &mut Problems| text_property(v, f, p, MAX_ERROR_MESSAGE_CHARS, Controls::Whitespace);

    parse!(position_seconds, seconds);
    parse!(duration_seconds, seconds);
    parse!(quality, dimension);
    parse!(bitrate_kbps, bitrate);
    parse!(buffer_duration_ms, millis);
    parse!(startup_time_ms, millis);
    parse!(error_code, dimension);
    parse!(error_message, message);
    parse!(fatal, bool_property);
    parse!(seek_from_seconds, seconds);
    parse!(seek_to_seconds, seconds);
    parse!(from_quality, dimension);
    parse!(to_quality, dimension);
    parse!(device_type, dimension);
    parse!(browser, dimension);
    parse!(os, dimension);
    parse!(country, dimension);
    parse!(player, dimension);
    parse!(cdn, dimension);

    // `{}` is 2 bytes: only unknown properties cost a serialisation.
    let extra_bytes = if map.is_empty() { 2 } else { compact_len(&map) };
    if extra_bytes > MAX_EXTRA_PROPERTIES_BYTES {
        problems.add(
            FIELD,
            ErrorCode::TooLarge,
            format!(
                "unknown properties take {extra_bytes} bytes of json; \
                 the limit is {MAX_EXTRA_PROPERTIES_BYTES}"
            ),
        );
    }
    props.extra = map;
    props
}

/// Reports the properties `event_type` requires but `props` lacks, unless a
/// problem with that property was already reported.
pub(crate) fn check_required(event_type: EventType, props: &Properties, problems: &mut Problems) {
    for name in event_type.required_properties() {
        if props.is_set(name) {
            continue;
        }
        let field = field_path(name);
        if !problems.mentions(&field) {
            problems.add(&field, ErrorCode::Missing, format!("is required for {event_type} events"));
        }
    }
}

/// `properties.{name}`.
pub(crate) fn field_path(name: &str) -> String {
    format!("{FIELD}.{name}")
}

fn number_property<T>(
    value: Value,
    field: &str,
    problems: &mut Problems,
    parse: impl FnOnce(&Number) -> Result<T, (ErrorCode, String)>,
) -> Option<T> {
    let result = match &value {
        Value::Number(number) => parse(number),
        other => Err((ErrorCode::WrongType, wrong_type("a number", other))),
    };
    result.map_err(|(code, message)| problems.add(field, code, message)).ok()
}

/// A non-negative, finite number of seconds up to [`MAX_SECONDS`].
fn parse_seconds(number: &Number) -> Result<f64, (ErrorCode, String)> {
    let value = number.as_f64().unwrap_or(f64::NAN);
    if !value.is_finite() {
        return Err((ErrorCode::OutOfRange, "must be a finite number".to_owned()));
    }
    if value < 0.0 {
        return Err((ErrorCode::OutOfRange, "must not be negative".to_owned()));
    }
    if value > MAX_SECONDS {
        return Err((ErrorCode::OutOfRange, format!("must be at most {MAX_SECONDS}")));
    }
    // Adding zero turns -0.0 into 0.0.
    Ok(value + 0.0)
}

/// A whole, non-negative number up to `max`. A float holding a whole number
/// (such as `2500.0`) is accepted.
fn parse_whole(number: &Number, max: u32) -> Result<u32, (ErrorCode, String)> {
    let too_large = || (ErrorCode::OutOfRange, format!("must be at most {max}"));
    let negative = || (ErrorCode::OutOfRange, "must not be negative".to_owned());
    if let Some(value) = number.as_u64() {
        return u32::try_from(value).ok().filter(|v| *v <= max).ok_or_else(too_large);
    }
    if number.is_i64() {
        return Err(negative());
    }
    let value = number.as_f64().unwrap_or(f64::NAN);
    if !value.is_finite() || value.fract() != 0.0 {
        return Err((ErrorCode::WrongType, "expected a whole number, got a fraction".to_owned()));
    }
    if value < 0.0 {
        return Err(negative());
    }
    if value > f64::from(max) {
        return Err(too_large());
    }
    // Whole and within 0..=max, so the conversion is exact.
    Ok(value as u32)
}

fn bool_property(value: Value, field: &str, problems: &mut Problems) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(flag),
        other => {
            problems.add(field, ErrorCode::WrongType, wrong_type("a boolean", &other));
            None
        }
    }
}

/// A string property; the empty string counts as absent.
fn text_property(
    value: Value,
    field: &str,
    problems: &mut Problems,
    max_chars: usize,
    controls: Controls,
) -> Option<String> {
    match value {
        Value::String(text) if text.is_empty() => None,
        Value::String(text) => match check_text(&text, max_chars, controls) {
            Ok(()) => Some(text),
            Err((code, message)) => {
                problems.add(field, code, message);
                None
            }
        },
        other => {
            problems.add(field, ErrorCode::WrongType, wrong_type("a string", &other));
            None
        }
    }
}
