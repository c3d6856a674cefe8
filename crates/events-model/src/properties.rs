//! Typed playback properties plus the unknown ones, kept verbatim.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::EventType;

/// The properties of an event.
///
/// Known properties are typed and validated; every one is optional.
/// Properties this crate does not know are kept in [`Properties::extra`]
/// unchanged and stored as one JSON string.
///
/// Serialises as a single flat JSON object: known properties that are set,
/// followed by the extra ones (an extra key that collides with a known
/// property name is skipped; the validator never produces one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    /// Playhead position, seconds from the start of the video.
    pub position_seconds: Option<f64>,
    /// Length of the video, seconds.
    pub duration_seconds: Option<f64>,
    /// Current rendition, e.g. `720p`.
    pub quality: Option<String>,
    /// Current bitrate, kbit/s.
    pub bitrate_kbps: Option<u32>,
    /// How long a stall lasted, milliseconds (`video_buffer`).
    pub buffer_duration_ms: Option<u32>,
    /// Time from play request to first frame as measured by the player,
    /// milliseconds.
    pub startup_time_ms: Option<u32>,
    /// Player or CDN error code (`video_error`).
    pub error_code: Option<String>,
    /// Human-readable error text (`video_error`).
    pub error_message: Option<String>,
    /// Whether the error ended playback; see [`Properties::fatal_or_default`].
    pub fatal: Option<bool>,
    /// Playhead before a seek, seconds.
    pub seek_from_seconds: Option<f64>,
    /// Playhead after a seek, seconds.
    pub seek_to_seconds: Option<f64>,
    /// Rendition before a quality change.
    pub from_quality: Option<String>,
    /// Rendition after a quality change.
    pub to_quality: Option<String>,
    /// Device class, e.g. `desktop`, `mobile`, `tv`.
    pub device_type: Option<String>,
    /// Browser name.
    pub browser: Option<String>,
    /// Operating system name.
    pub os: Option<String>,
    /// Country, typically an ISO 3166-1 code.
    pub country: Option<String>,
    /// Player software and version.
    pub player: Option<String>,
    /// Content delivery network.
    pub cdn: Option<String>,
    /// Every property not listed above, verbatim.
    pub extra: Map<String, Value>,
}

impl Properties {
    /// Names of the known (typed) properties, in declaration order.
    pub const KNOWN: [&'static str; 19] = [
        "position_seconds",
        "duration_seconds",
        "quality",
        "bitrate_kbps",
        "buffer_duration_ms",
        "startup_time_ms",
        "error_code",
        "error_message",
        "fatal",
        "seek_from_seconds",
        "seek_to_seconds",
        "from_quality",
        "to_quality",
        "device_type",
        "browser",
        "os",
        "country",
        "player",
        "cdn",
    ];

    /// Whether `name` is one of [`Properties::KNOWN`].
    pub fn is_known(name: &str) -> bool {
        Properties::KNOWN.contains(&name)
    }

    /// Whether the known property `name` has a value. Unknown names are
    /// looked up in [`Properties::extra`].
    pub fn is_set(&self, name: &str) -> bool {
        match name {
            "position_seconds" => self.position_seconds.is_some(),
            "duration_seconds" => self.duration_seconds.is_some(),
            "quality" => self.quality.is_some(),
            "bitrate_kbps" => self.bitrate_kbps.is_some(),
            "buffer_duration_ms" => self.buffer_duration_ms.is_some(),
            "startup_time_ms" => self.startup_time_ms.is_some(),
            "error_code" => self.error_code.is_some(),
            "error_message" => self.error_message.is_some(),
            "fatal" => self.fatal.is_some(),
            "seek_from_seconds" => self.seek_from_seconds.is_some(),
            "seek_to_seconds" => self.seek_to_seconds.is_some(),
            "from_quality" => self.from_quality.is_some(),
            "to_quality" => self.to_quality.is_some(),
            "device_type" => self.device_type.is_some(),
            "browser" => self.browser.is_some(),
            "os" => self.os.is_some(),
            "country" => self.country.is_some(),
            "player" => self.player.is_some(),
            "cdn" => self.cdn.is_some(),
            other => self.extra.contains_key(other),
        }
    }

    /// `fatal` with its default applied: an error without `fatal` ended
    /// playback (true for `video_error`); any other event type defaults to
    /// false.
    pub fn fatal_or_default(&self, event_type: EventType) -> bool {
        self.fatal.unwrap_or(event_type == EventType::VideoError)
    }

    /// The unknown properties as compact JSON, `{}` when there are none (the
    /// ClickHouse `properties` column).
    pub fn extra_json(&self) -> String {
        serde_json::to_string(&self.extra).unwrap_or_else(|_| String::from("{}"))
    }
}

impl Serialize for Properties {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        macro_rules! known {
            ($($name:ident),* $(,)?) => {
                $(
                    if let Some(value) = &self.$name {
                        map.serialize_entry(stringify!($name), value)?;
                    }
                )*
            };
        }
        known!(
            position_seconds,
            duration_seconds,
            quality,
            bitrate_kbps,
            buffer_duration_ms,
            startup_time_ms,
            error_code,
            error_message,
            fatal,
            seek_from_seconds,
            seek_to_seconds,
            from_quality,
            to_quality,
            device_type,
            browser,
            os,
            country,
            player,
            cdn,
        );
        for (key, value) in &self.extra {
            if !Properties::is_known(key) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fatal_defaults_to_true_only_for_errors() {
        let props = Properties::default();
        assert!(props.fatal_or_default(EventType::VideoError));
        for t in EventType::ALL.into_iter().filter(|t| *t != EventType::VideoError) {
            assert!(!props.fatal_or_default(t), "{t}");
        }
        let non_fatal = Properties { fatal: Some(false), ..Properties::default() };
        assert!(!non_fatal.fatal_or_default(EventType::VideoError));
        let fatal = Properties { fatal: Some(true), ..Properties::default() };
        assert!(fatal.fatal_or_default(EventType::VideoPause));
    }

    #[test]
    fn serialises_known_and_extra_flat() {
        let mut extra = Map::new();
        extra.insert("ab_variant".into(), json!("b"));
        extra.insert("quality".into(), json!("shadowed"));
        let props = Properties {
            position_seconds: Some(12.5),
            bitrate_kbps: Some(2500),
            quality: Some("720p".into()),
            fatal: Some(false),
            extra,
            ..Properties::default()
        };
        assert_eq!(
            serde_json::to_value(&props).unwrap(),
            json!({
                "position_seconds": 12.5,
                "quality": "720p",
                "bitrate_kbps": 2500,
                "fatal": false,
                "ab_variant": "b"
            })
        );
    }

    #[test]
    fn every_known_name_is_recognised_by_is_set() {
        let props = Properties::default();
        for name in Properties::KNOWN {
            assert!(Properties::is_known(name));
            assert!(!props.is_set(name));
        }
        assert!(!Properties::is_known("ab_variant"));
    }

    #[test]
    fn extra_json_is_compact_and_defaults_to_empty_object() {
        let mut props = Properties::default();
        assert_eq!(props.extra_json(), "{}");
        props.extra.insert("a".into(), json!([1, 2]));
        assert_eq!(props.extra_json(), r#"{"a":[1,2]}"#);
    }
}
