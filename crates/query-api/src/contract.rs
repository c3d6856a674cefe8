//! Exact JSON Schemas for the fields of the OpenAPI document whose rules
//! plain types do not carry: patterns, lengths and formats that say what the
//! handlers accept, so that a request valid under the document is one the
//! server takes and an invalid one is refused (`schemathesis` checks both
//! ways in CI, see `tests/contract/`).
//!
//! Rules that tie fields together (an end after its start, a range of at
//! most 366 days, `order_by` among the requested metrics) cannot be written
//! in JSON Schema; they are in each field's description, and the contract
//! test's hooks (`tests/contract/hooks.py`) keep generated requests within
//! them.

use utoipa::openapi::{
    KnownFormat, ObjectBuilder, RefOr, Schema, SchemaFormat, Type,
    schema::{AnyOfBuilder, SchemaType},
};

/// Longest path id (`videoId`, `userId`), in characters.
pub const MAX_VIDEO_ID_CHARS: usize = 256;
/// Longest catalog title, in characters.
pub const MAX_TITLE_CHARS: usize = 512;
/// Shortest catalog duration: a millisecond.
pub const MIN_DURATION_SECONDS: f64 = 0.001;
/// Longest catalog duration, the bound of the players' own
/// (`events_model::limits::MAX_SECONDS`).
pub const MAX_DURATION_SECONDS: f64 = events_model::limits::MAX_SECONDS;
/// Longest catalog category, in characters.
pub const MAX_CATEGORY_CHARS: usize = 128;

/// No control character and no invisible or bidirectional formatting
/// character (`events_model::text`), the rule of event ids too.
pub use events_model::schema::PLAIN_TEXT;

/// No NUL (PostgreSQL text cannot hold one).
pub const NO_NUL: &str = r"^[^\u0000]*$";

/// At least one character that is not whitespace (Rust's
/// `char::is_whitespace`, the Unicode White_Space set), and no NUL.
pub const SOME_TEXT_NO_NUL: &str =
    r"^[^\u0000]*[^\u0000\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$";

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// A path id (`videoId`, `userId`): 1 to 256 characters, no control,
/// invisible or bidirectional formatting characters.
pub fn path_id() -> impl Into<RefOr<Schema>> {
    string().min_length(Some(1)).max_length(Some(MAX_VIDEO_ID_CHARS)).pattern(Some(PLAIN_TEXT))
}

/// A catalog title: 1 to 512 characters, not only whitespace, no NUL.
pub fn title() -> impl Into<RefOr<Schema>> {
    string().min_length(Some(1)).max_length(Some(MAX_TITLE_CHARS)).pattern(Some(SOME_TEXT_NO_NUL))
}

/// A catalog category: at most 128 characters, no NUL, or null.
pub fn category() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(nullable(Type::String, true))
        .max_length(Some(MAX_CATEGORY_CHARS))
        .pattern(Some(NO_NUL))
}

/// A UTC day of a metric range, `YYYY-MM-DD`, from 2000-01-01 to 2099-12-31
/// (`metric_api::params::MIN_DAY`, `MAX_DAY`).
pub fn day() -> impl Into<RefOr<Schema>> {
    string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
        .pattern(Some(METRIC_DAY))
        .description(Some("a UTC day from 2000-01-01 to 2099-12-31"))
}

/// The years a metric range may name (the rest of the date is `format: date`).
pub const METRIC_DAY: &str = r"^20[0-9]{2}-[0-9]{2}-[0-9]{2}$";

/// An RFC 3339 time or a `YYYY-MM-DD` day.
pub fn time_or_day(nullable: bool) -> RefOr<Schema> {
    let mut any = AnyOfBuilder::new()
        .item(string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))))
        .item(string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))));
    if nullable {
        any = any.item(ObjectBuilder::new().schema_type(Type::Null));
    }
    RefOr::T(Schema::AnyOf(any.build()))
}

/// `text` as a schema type, made nullable when asked.
pub fn nullable(schema_type: Type, nullable: bool) -> SchemaType {
    if nullable { SchemaType::from_iter([schema_type, Type::Null]) } else { SchemaType::Type(schema_type) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patterns say what the handlers check, character by character.
    #[test]
    fn patterns_match_the_rust_character_classes() {
        let controls: Vec<char> = (0u32..0x3000).filter_map(char::from_u32).filter(|c| c.is_control()).collect();
        assert_eq!(controls.len(), 0x20 + 0x21);
        assert!(controls.iter().all(|&c| c <= '\u{1f}' || ('\u{7f}'..='\u{9f}').contains(&c)));
        let listed = ['\u{85}', '\u{a0}', '\u{1680}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}'];
        for c in (0u32..0x11_0000).filter_map(char::from_u32).filter(|c| c.is_whitespace()) {
            let in_pattern = ('\u{9}'..='\u{d}').contains(&c)
                || c == ' '
                || ('\u{2000}'..='\u{200a}').contains(&c)
                || listed.contains(&c);
            assert!(in_pattern, "U+{:04X} is whitespace but not in SOME_TEXT_NO_NUL", u32::from(c));
        }
        for c in listed {
            assert!(c.is_whitespace(), "U+{:04X}", u32::from(c));
            assert!(SOME_TEXT_NO_NUL.contains(&format!("\\u{:04x}", u32::from(c))));
        }
    }
}
