//! Client and server times: parsing, normalisation and plausibility.

use chrono::{DateTime, Utc};
use serde_json::{Number, Value};

use super::json::wrong_type;
use super::problems::Problems;
use crate::error::ErrorCode;
use crate::limits::{MAX_FUTURE_SKEW, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS};

/// Truncates to whole milliseconds (the precision we store and transmit).
/// Leap seconds are folded into the following second.
pub(crate) fn truncate_to_millis(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap_or(time)
}

/// A time as sent, remembering its notation for better messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParsedTime {
    pub(crate) time: DateTime<Utc>,
    pub(crate) was_number: bool,
}

/// Parses an RFC 3339 string (any offset) or integer epoch milliseconds,
/// normalised to UTC and truncated to milliseconds. Records a problem and
/// returns `None` otherwise.
pub(crate) fn parse_time(value: &Value, field: &str, problems: &mut Problems) -> Option<ParsedTime> {
    let parsed = match value {
        Value::String(text) => parse_rfc3339(text).map(|time| ParsedTime { time, was_number: false }),
        Value::Number(number) => parse_epoch_millis(number).map(|time| ParsedTime { time, was_number: true }),
        other => Err((ErrorCode::WrongType, wrong_type("an rfc 3339 string or integer epoch milliseconds", other))),
    };
    match parsed {
        Ok(parsed) => Some(parsed),
        Err((code, message)) => {
            problems.add(field, code, message);
            None
        }
    }
}

fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, (ErrorCode, String)> {
    DateTime::parse_from_rfc3339(text).map(|time| truncate_to_millis(time.to_utc())).map_err(|err| {
        (ErrorCode::InvalidFormat, format!("expected an rfc 3339 time such as 2024-05-01T12:00:00.000Z ({err})"))
    })
}

fn parse_epoch_millis(number: &Number) -> Result<DateTime<Utc>, (ErrorCode, String)> {
    let millis = if let Some(millis) = number.as_i64() {
        millis
    } else if number.is_u64() {
        return Err((ErrorCode::OutOfRange, "is too large for epoch milliseconds".to_owned()));
    } else {
        // A float: accepted only when it holds a whole number.
        let value = number.as_f64().unwrap_or(f64::NAN);
        if value.fract() != 0.0 || !value.is_finite() {
            return Err((ErrorCode::InvalidFormat, "epoch milliseconds must be a whole number".to_owned()));
        }
        if !(-9.0e15..=9.0e15).contains(&value) {
            return Err((ErrorCode::OutOfRange, "is out of range for epoch milliseconds".to_owned()));
        }
        // In range and integral, so the conversion is exact.
        value as i64
    };
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| (ErrorCode::OutOfRange, "is out of range for epoch milliseconds".to_owned()))
}

/// Rejects times before [`MIN_TIMESTAMP_MS`]. Returns whether it passed.
pub(crate) fn check_not_too_old(parsed: ParsedTime, field: &str, problems: &mut Problems) -> bool {
    if parsed.time.timestamp_millis() >= MIN_TIMESTAMP_MS {
        return true;
    }
    let message = if parsed.was_number {
        "is before 2000-01-01T00:00:00Z; epoch timestamps must be in milliseconds, not seconds"
    } else {
        "is before 2000-01-01T00:00:00Z"
    };
    problems.add(field, ErrorCode::TooOld, message);
    false
}

/// Rejects a client `timestamp` more than [`MAX_FUTURE_SKEW`] after
/// `received_at`.
pub(crate) fn check_not_in_future(
    time: DateTime<Utc>,
    received_at: DateTime<Utc>,
    field: &str,
    problems: &mut Problems,
) -> bool {
    match received_at.checked_add_signed(MAX_FUTURE_SKEW) {
        Some(latest) if time > latest => {
            problems.add(
                field,
                ErrorCode::InFuture,
                format!(
                    "is more than {} hours after the server's receive time {}",
                    MAX_FUTURE_SKEW.num_hours(),
                    crate::wire::format_time(received_at)
                ),
            );
            false
        }
        _ => true,
    }
}

/// Rejects a server time after [`MAX_TIMESTAMP_MS`].
pub(crate) fn check_not_beyond_max(time: DateTime<Utc>, field: &str, problems: &mut Problems) -> bool {
    if time.timestamp_millis() <= MAX_TIMESTAMP_MS {
        return true;
    }
    problems.add(field, ErrorCode::OutOfRange, "must not be after 2100-01-01T00:00:00Z");
    false
}
