//! A generated event and its JSON form (the ingest API's client format).

use std::fmt;

use events_model::EventType;
use serde::{Serialize, Serializer};
use uuid::Uuid;

/// `video_0001` for index 0: the catalog's video ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoId(pub u32);

/// `user_00001` for index 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub u32);

/// `sess_` and 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub u64);

impl fmt::Display for VideoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "video_{:04}", u64::from(self.0) + 1)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user_{:05}", u64::from(self.0) + 1)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sess_{:016x}", self.0)
    }
}

macro_rules! serialize_as_display {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    )*};
}
serialize_as_display!(VideoId, UserId, SessionId);

/// The properties a generated event carries (a subset of the known ones).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Props {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitrate_kbps: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_duration_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_time_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fatal: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seek_from_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seek_to_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_quality: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_quality: Option<&'static str>,
    pub device_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<&'static str>,
    pub os: &'static str,
    pub country: &'static str,
    pub player: &'static str,
    pub cdn: &'static str,
}

/// The `metadata` object of every generated event, so that synthetic traffic
/// can be told apart in a shared database.
#[derive(Debug, Clone, Copy, Serialize)]
struct Metadata {
    source: &'static str,
}

const METADATA: Metadata = Metadata { source: "loadgen" };

/// One event of a simulated session, ready to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedEvent {
    /// Derived from the seed and the run's salt, so a retry resends the same
    /// id and two runs never share one.
    pub event_id: Uuid,
    pub event_type: EventType,
    /// Client time, epoch milliseconds (sent as a number).
    pub timestamp_ms: i64,
    /// `None` for an anonymous viewer.
    pub user: Option<UserId>,
    pub session: SessionId,
    pub video: VideoId,
    pub properties: Props,
}

#[derive(Serialize)]
struct Wire<'a> {
    event_id: Uuid,
    event_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<UserId>,
    session_id: SessionId,
    video_id: VideoName<'a>,
    timestamp: i64,
    properties: &'a Props,
    metadata: Metadata,
}

/// A video id as sent: the catalog's (`video_0001`) after an optional
/// prefix ([`crate::Options::video_prefix`]).
struct VideoName<'a> {
    prefix: &'a str,
    video: VideoId,
}

impl Serialize for VideoName<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}{}", self.prefix, self.video))
    }
}

impl GeneratedEvent {
    fn wire(&self) -> Wire<'_> {
        self.wire_prefixed("")
    }

    fn wire_prefixed<'a>(&'a self, video_prefix: &'a str) -> Wire<'a> {
        Wire {
            event_id: self.event_id,
            event_type: self.event_type.as_str(),
            user_id: self.user,
            session_id: self.session,
            video_id: VideoName { prefix: video_prefix, video: self.video },
            timestamp: self.timestamp_ms,
            properties: &self.properties,
            metadata: METADATA,
        }
    }

    /// Appends the event's compact JSON object to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Serialising plain structs of numbers and strings into a Vec cannot fail.
        serde_json::to_writer(out, &self.wire()).expect("serialising a generated event");
    }

    /// Appends the event's compact JSON object to `out`, its video id after `video_prefix`.
    pub fn write_json_prefixed(&self, out: &mut Vec<u8>, video_prefix: &str) {
        serde_json::to_writer(out, &self.wire_prefixed(video_prefix)).expect("serialising a generated event");
    }

    /// The event as compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_json(&mut out);
        out
    }

    /// The event as a JSON value (as a batch element).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self.wire()).expect("serialising a generated event")
    }

    pub fn session_id(&self) -> String {
        self.session.to_string()
    }

    pub fn video_id(&self) -> String {
        self.video.to_string()
    }

    pub fn user_id(&self) -> Option<String> {
        self.user.map(|u| u.to_string())
    }
}

impl Serialize for GeneratedEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.wire().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_formatted_for_people() {
        assert_eq!(VideoId(0).to_string(), "video_0001");
        assert_eq!(VideoId(11_999).to_string(), "video_12000");
        assert_eq!(UserId(41).to_string(), "user_00042");
        assert_eq!(SessionId(0xab).to_string(), "sess_00000000000000ab");
    }

    #[test]
    fn json_is_the_client_format() {
        let event = GeneratedEvent {
            event_id: Uuid::from_u128(0x0123_4567_89ab_4def_8123_4567_89ab_cdef),
            event_type: EventType::VideoProgress,
            timestamp_ms: 1_750_000_000_123,
            user: None,
            session: SessionId(1),
            video: VideoId(2),
            properties: Props {
                position_seconds: Some(10.5),
                quality: Some("720p"),
                device_type: "tv",
                os: "tvOS",
                country: "US",
                player: "tvos-app/2.1.0",
                cdn: "fastly",
                ..Props::default()
            },
        };
        let value: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(value, event.to_value());
        let mut prefixed = Vec::new();
        event.write_json_prefixed(&mut prefixed, "drill-");
        let prefixed: serde_json::Value = serde_json::from_slice(&prefixed).unwrap();
        assert_eq!(prefixed["video_id"], "drill-video_0003");
        assert_eq!(
            value,
            serde_json::json!({
                "event_id": "01234567-89ab-4def-8123-456789abcdef",
                "event_type": "video_progress",
                "session_id": "sess_0000000000000001",
                "video_id": "video_0003",
                "timestamp": 1_750_000_000_123_i64,
                "properties": {
                    "position_seconds": 10.5, "quality": "720p", "device_type": "tv", "os": "tvOS",
                    "country": "US", "player": "tvos-app/2.1.0", "cdn": "fastly"
                },
                "metadata": {"source": "loadgen"}
            })
        );
    }
}
