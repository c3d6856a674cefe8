//! Small helpers for inspecting `serde_json` values.

use std::io;

use serde::Serialize;
use serde_json::Value;

use crate::error::ErrorCode;

/// The JSON type of `value`, as used in "got ..." messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// "expected {expected}, got {type}" message.
pub(crate) fn wrong_type(expected: &str, got: &Value) -> String {
    format!("expected {expected}, got {}", type_name(got))
}

/// Drops JSON `null`: for optional fields null means absent.
pub(crate) fn non_null(value: Option<Value>) -> Option<Value> {
    value.filter(|v| !v.is_null())
}

/// Length in bytes of the compact JSON serialisation of `value`, computed
/// without allocating the text. Saturates at `usize::MAX` if serialisation
/// fails (it does not for `serde_json` values).
pub(crate) fn compact_len<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = ByteCounter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

/// An `io::Write` that only counts bytes.
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Which control characters a string may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Controls {
    /// None at all.
    Forbidden,
    /// Only line feed, carriage return and tab (multi-line text).
    Whitespace,
}

/// Checks a string's length in characters and its characters.
pub(crate) fn check_text(text: &str, max_chars: usize, controls: Controls) -> Result<(), (ErrorCode, String)> {
    let chars = text.chars().count();
    if chars > max_chars {
        return Err((ErrorCode::TooLong, format!("must be at most {max_chars} characters, got {chars}")));
    }
    let allowed = |c: char| controls == Controls::Whitespace && matches!(c, '\n' | '\r' | '\t');
    if let Some(c) = text.chars().find(|&c| c.is_control() && !allowed(c)) {
        let position = text.chars().take_while(|&x| x != c).count();
        return Err((
            ErrorCode::InvalidCharacters,
            format!("must not contain control characters, found U+{:04X} at character {position}", u32::from(c)),
        ));
    }
    if controls == Controls::Forbidden
        && let Some(c) = text.chars().find(|&c| crate::text::is_invisible(c))
    {
        let position = text.chars().take_while(|&x| x != c).count();
        return Err((
            ErrorCode::InvalidCharacters,
            format!(
                "must not contain invisible or bidirectional formatting characters, found U+{:04X} at character {position}",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn compact_len_matches_serialisation() {
        let value = json!({"a": [1, 2.5, "x\"y"], "b": null, "ü": true});
        assert_eq!(compact_len(&value), serde_json::to_vec(&value).unwrap().len());
    }

    #[test]
    fn check_text_reports_length_then_characters() {
        assert!(check_text("abc", 3, Controls::Forbidden).is_ok());
        assert_eq!(check_text("abcd", 3, Controls::Forbidden).unwrap_err().0, ErrorCode::TooLong);
        // Characters, not bytes.
        assert!(check_text("ééé", 3, Controls::Forbidden).is_ok());
        let (code, message) = check_text("a\u{1}b", 10, Controls::Forbidden).unwrap_err();
        assert_eq!(code, ErrorCode::InvalidCharacters);
        assert!(message.contains("U+0001 at character 1"), "{message}");
        assert!(check_text("a\nb\tc\r\n", 10, Controls::Whitespace).is_ok());
        assert!(check_text("a\nb", 10, Controls::Forbidden).is_err());
        assert!(check_text("a\u{7f}", 10, Controls::Whitespace).is_err());
        // Identifiers and dimensions: no bidirectional overrides or zero-width characters.
        for sneaky in ["user\u{202E}321", "a\u{200B}b", "\u{FEFF}x", "x\u{2066}y", "\u{061C}", "a\u{00AD}b"] {
            let (code, message) = check_text(sneaky, 64, Controls::Forbidden).unwrap_err();
            assert_eq!(code, ErrorCode::InvalidCharacters, "{sneaky:?}");
            assert!(message.contains("invisible or bidirectional"), "{message}");
        }
        // Free text keeps right-to-left marks; scripts and emoji stay valid everywhere.
        assert!(check_text("\u{05E9}\u{05DC}\u{05D5}\u{05DD}\u{200F}", 64, Controls::Whitespace).is_ok());
        assert!(check_text("日本語-ñ-🎬", 64, Controls::Forbidden).is_ok());
    }
}
