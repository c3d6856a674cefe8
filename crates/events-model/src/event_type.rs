//! The closed set of playback event types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What happened in the player. Serialised as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A view begins: the player was asked to play this video.
    VideoStart,
    /// Periodic heartbeat while playing; carries the playhead position.
    VideoProgress,
    /// The viewer paused.
    VideoPause,
    /// Playback resumed after a pause.
    VideoResume,
    /// Playback reached the end of the video.
    VideoComplete,
    /// The player reported an error (fatal unless stated otherwise).
    VideoError,
    /// Playback stalled to refill the buffer.
    VideoBuffer,
    /// The rendition (quality level) changed.
    QualityChange,
    /// The viewer moved the playhead.
    Seek,
}

impl EventType {
    /// Every event type, in declaration order.
    pub const ALL: [EventType; 9] = [
        EventType::VideoStart,
        EventType::VideoProgress,
        EventType::VideoPause,
        EventType::VideoResume,
        EventType::VideoComplete,
        EventType::VideoError,
        EventType::VideoBuffer,
        EventType::QualityChange,
        EventType::Seek,
    ];

    /// The snake_case name used in JSON, Kafka and ClickHouse.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::VideoStart => "video_start",
            EventType::VideoProgress => "video_progress",
            EventType::VideoPause => "video_pause",
            EventType::VideoResume => "video_resume",
            EventType::VideoComplete => "video_complete",
            EventType::VideoError => "video_error",
            EventType::VideoBuffer => "video_buffer",
            EventType::QualityChange => "quality_change",
            EventType::Seek => "seek",
        }
    }

    /// Properties this event type must carry, by their property names.
    ///
    /// `video_progress` needs `position_seconds`, `seek` needs
    /// `seek_from_seconds` and `seek_to_seconds`, `video_buffer` needs
    /// `buffer_duration_ms` and `quality_change` needs `to_quality`.
    pub const fn required_properties(self) -> &'static [&'static str] {
        match self {
            EventType::VideoProgress => &["position_seconds"],
            EventType::Seek => &["seek_from_seconds", "seek_to_seconds"],
            EventType::VideoBuffer => &["buffer_duration_ms"],
            EventType::QualityChange => &["to_quality"],
            EventType::VideoStart
            | EventType::VideoPause
            | EventType::VideoResume
            | EventType::VideoComplete
            | EventType::VideoError => &[],
        }
    }

    /// The valid names joined by ", ", for error messages.
    pub(crate) fn valid_names() -> String {
        let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        names.join(", ")
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returned by [`EventType::from_str`] for a name that is not one of
/// [`EventType::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type \"{value}\"; expected one of: {}", EventType::valid_names())]
pub struct UnknownEventTypeError {
    /// The rejected name, as given.
    pub value: String,
}

impl FromStr for EventType {
    type Err = UnknownEventTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownEventTypeError { value: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
        }
    }

    #[test]
    fn all_names_are_distinct() {
        let mut names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 9);
    }

    #[test]
    fn unknown_name_is_reported_with_the_valid_ones() {
        let err = "video_stop".parse::<EventType>().unwrap_err();
        assert_eq!(err.value, "video_stop");
        let message = err.to_string();
        assert!(message.contains("\"video_stop\""), "{message}");
        for t in EventType::ALL {
            assert!(message.contains(t.as_str()), "{message}");
        }
    }

    #[test]
    fn parsing_is_case_sensitive() {
        assert!("Video_Start".parse::<EventType>().is_err());
        assert!(" video_start".parse::<EventType>().is_err());
    }

    #[test]
    fn serde_uses_snake_case_names() {
        for t in EventType::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            let back: EventType = serde_json::from_str(&json).unwrap();
            assert_eq!(back, t);
        }
    }
}
