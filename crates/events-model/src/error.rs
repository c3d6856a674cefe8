//! Validation problems: which field, what kind, and a readable explanation.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The `field` used for problems with the body as a whole (not JSON, not an
/// object, too large, not UTF-8).
pub const ROOT_FIELD: &str = "$";

/// The kind of a validation problem.
///
/// The set is closed and small, so [`ErrorCode::as_str`] is safe to use as a
/// metrics label (`reason`) or a dead-letter header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A required field or property is absent (or null).
    Missing,
    /// The JSON type is wrong, e.g. a string where a number belongs.
    WrongType,
    /// `event_type` is not one of the nine known types.
    UnknownEventType,
    /// A top-level field that the envelope does not have.
    UnknownField,
    /// A number outside its allowed range (negative, too large, ...).
    OutOfRange,
    /// A string longer than its limit.
    TooLong,
    /// A string that does not parse (UUID, RFC 3339 time, empty id, ...).
    InvalidFormat,
    /// `timestamp` lies too far after `received_at`.
    InFuture,
    /// A time before 2000-01-01 (often epoch seconds instead of milliseconds).
    TooOld,
    /// A string containing control characters.
    InvalidCharacters,
    /// The body is JSON but not an object.
    NotAnObject,
    /// The body is not JSON.
    InvalidJson,
    /// The body, the unknown properties or `metadata` exceed their size limit.
    TooLarge,
    /// The body is not valid UTF-8.
    InvalidUtf8,
    /// `timestamp` is older than the lateness horizon (the gateway's check:
    /// windows that old are no longer recomputed, so the event would count
    /// nowhere).
    TooLate,
    /// An `event_id` an earlier event of the same batch already has; the
    /// first is kept, the later ones are refused (the gateway's batch check:
    /// one event alone cannot have it).
    DuplicateEventId,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::Missing,
        ErrorCode::WrongType,
        ErrorCode::UnknownEventType,
        ErrorCode::UnknownField,
        ErrorCode::OutOfRange,
        ErrorCode::TooLong,
        ErrorCode::InvalidFormat,
        ErrorCode::InFuture,
        ErrorCode::TooOld,
        ErrorCode::InvalidCharacters,
        ErrorCode::NotAnObject,
        ErrorCode::InvalidJson,
        ErrorCode::TooLarge,
        ErrorCode::InvalidUtf8,
        ErrorCode::TooLate,
        ErrorCode::DuplicateEventId,
    ];

    /// The snake_case name, identical to the serialised form.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Missing => "missing",
            ErrorCode::WrongType => "wrong_type",
            ErrorCode::UnknownEventType => "unknown_event_type",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::OutOfRange => "out_of_range",
            ErrorCode::TooLong => "too_long",
            ErrorCode::InvalidFormat => "invalid_format",
            ErrorCode::InFuture => "in_future",
            ErrorCode::TooOld => "too_old",
            ErrorCode::InvalidCharacters => "invalid_characters",
            ErrorCode::NotAnObject => "not_an_object",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::TooLate => "too_late",
            ErrorCode::DuplicateEventId => "duplicate_event_id",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one field of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Dotted path of the offending field, e.g. `event_type` or
    /// `properties.position_seconds`; [`ROOT_FIELD`] for the whole body.
    pub field: String,
    /// The kind of problem.
    pub code: ErrorCode,
    /// Human-readable explanation in lowercase, e.g.
    /// `expected a number, got string`.
    pub message: String,
}

impl ValidationError {
    /// Creates a problem report.
    pub fn new(field: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        ValidationError { field: field.into(), code, message: message.into() }
    }
}

/// Every problem found in one event (never empty when returned by this
/// crate's parsers). Serialises as a JSON array of [`ValidationError`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    /// A list holding exactly one problem.
    pub fn single(field: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        ValidationErrors(vec![ValidationError::new(field, code, message)])
    }

    /// The problems, in the order they were found.
    pub fn as_slice(&self) -> &[ValidationError] {
        &self.0
    }

    /// Iterates over the problems.
    pub fn iter(&self) -> std::slice::Iter<'_, ValidationError> {
        self.0.iter()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no problems.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first problem's code: a single bounded label for metrics or a
    /// dead-letter `dlq.reason` header.
    pub fn primary_code(&self) -> Option<ErrorCode> {
        self.0.first().map(|e| e.code)
    }

    /// Whether any problem concerns `field` (exact match).
    pub fn has(&self, field: &str, code: ErrorCode) -> bool {
        self.0.iter().any(|e| e.field == field && e.code == code)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no validation errors");
        }
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

impl From<ValidationError> for ValidationErrors {
    fn from(error: ValidationError) -> Self {
        ValidationErrors(vec![error])
    }
}

impl IntoIterator for ValidationErrors {
    type Item = ValidationError;
    type IntoIter = std::vec::IntoIter<ValidationError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ValidationErrors {
    type Item = &'a ValidationError;
    type IntoIter = std::slice::Iter<'a, ValidationError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_their_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn errors_serialise_as_an_array_of_objects() {
        let errors = ValidationErrors(vec![
            ValidationError::new("event_type", ErrorCode::Missing, "is required"),
            ValidationError::new("properties.position_seconds", ErrorCode::WrongType, "expected a number, got string"),
        ]);
        let json = serde_json::to_value(&errors).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"field": "event_type", "code": "missing", "message": "is required"},
                {
                    "field": "properties.position_seconds",
                    "code": "wrong_type",
                    "message": "expected a number, got string"
                }
            ])
        );
        let back: ValidationErrors = serde_json::from_value(json).unwrap();
        assert_eq!(back, errors);
    }

    #[test]
    fn display_joins_every_problem() {
        let errors = ValidationErrors(vec![
            ValidationError::new("a", ErrorCode::Missing, "is required"),
            ValidationError::new("b", ErrorCode::TooLong, "too long"),
        ]);
        assert_eq!(errors.to_string(), "a: is required; b: too long");
        assert_eq!(errors.primary_code(), Some(ErrorCode::Missing));
        assert!(errors.has("b", ErrorCode::TooLong));
        assert!(!errors.has("b", ErrorCode::Missing));
    }
}
