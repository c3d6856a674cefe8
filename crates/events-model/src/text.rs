//! Which characters identifiers and dimensions may hold.
//!
//! Besides control characters (Unicode category Cc), ids (`user_id`,
//! `session_id`, `video_id`) and dimension properties (`country`,
//! `device_type`, …) refuse the characters that change how text is shown
//! without being seen: bidirectional embeddings, overrides, isolates and
//! marks (a `user_id` of `admin\u{202E}nimda` would read as another one on a
//! dashboard) and zero-width and other default-ignorable format characters
//! (`video\u{200B}1` would look like `video1` but count apart). Free text
//! (`error_message`) keeps them: right-to-left marks belong in real
//! messages. The set is the Basic Multilingual Plane's part of Unicode's
//! `Default_Ignorable_Code_Point` plus U+061C ARABIC LETTER MARK; the same
//! set is the JSON Schema pattern [`PLAIN_TEXT`] of the API documents.

/// A character that is not shown but changes how text around it is shown,
/// or makes equal-looking strings differ.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
    )
}

/// A character an identifier or a dimension may contain: neither a control
/// character nor [`is_invisible`].
pub fn is_plain(c: char) -> bool {
    !c.is_control() && !is_invisible(c)
}

/// [`is_plain`] for every character, as a JSON Schema (ECMA 262) pattern.
pub const PLAIN_TEXT: &str = r"^[^\u0000-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8]*$";

#[cfg(test)]
mod tests {
    use super::*;

    /// The ranges of `PLAIN_TEXT`'s negated class, read back from the pattern.
    fn pattern_ranges() -> Vec<(u32, u32)> {
        let class = PLAIN_TEXT.strip_prefix("^[^").and_then(|p| p.strip_suffix("]*$")).expect("a negated class");
        let mut points = Vec::new();
        let mut rest = class;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("\\u") {
                points.push(Some(u32::from_str_radix(&after[..4], 16).expect("four hex digits")));
                rest = &after[4..];
            } else if let Some(after) = rest.strip_prefix('-') {
                points.push(None);
                rest = after;
            } else {
                panic!("unexpected {rest:?} in PLAIN_TEXT");
            }
        }
        let mut ranges = Vec::new();
        let mut i = 0;
        while i < points.len() {
            let lo = points[i].expect("a code point");
            if points.get(i + 1) == Some(&None) {
                ranges.push((lo, points[i + 2].expect("a range end")));
                i += 3;
            } else {
                ranges.push((lo, lo));
                i += 1;
            }
        }
        ranges
    }

    #[test]
    fn the_pattern_refuses_exactly_what_the_validator_refuses() {
        let ranges = pattern_ranges();
        for c in (0u32..0x1_0000).filter_map(char::from_u32) {
            let in_pattern = ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&u32::from(c)));
            assert_eq!(in_pattern, !is_plain(c), "U+{:04X}", u32::from(c));
        }
        // Outside the Basic Multilingual Plane only control characters would
        // count, and there are none.
        assert!((0x1_0000u32..0x11_0000).filter_map(char::from_u32).all(|c| !c.is_control()));
    }

    #[test]
    fn scripts_and_symbols_are_plain() {
        for text in ["video_456", "日本語", "ñandú", "🎬", "\u{05E9}\u{05DC}\u{05D5}\u{05DD}", "a b"] {
            assert!(text.chars().all(is_plain), "{text}");
        }
        for c in ['\u{202E}', '\u{200B}', '\u{200D}', '\u{2066}', '\u{FEFF}', '\u{00AD}', '\0', '\n'] {
            assert!(!is_plain(c), "U+{:04X}", u32::from(c));
        }
    }
}
