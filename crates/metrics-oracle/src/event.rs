//! The oracle's own reading of an ingest event (the JSON a player POSTs).
//!
//! Deliberately independent of `events-model`: only what the metric
//! definitions need, read straight from the JSON. Input is assumed valid
//! (the generator only produces valid events); anything the oracle cannot
//! read is an error rather than a guess.

use serde_json::Value;

/// One event as the metric definitions see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Lower-case hyphenated UUID text.
    pub event_id: String,
    pub event_type: String,
    pub user_id: Option<String>,
    pub session_id: String,
    pub video_id: String,
    /// Client time, epoch milliseconds.
    pub at_ms: i64,
    pub position: Option<f64>,
    pub duration: Option<f64>,
    pub quality: Option<String>,
    pub to_quality: Option<String>,
    pub bitrate_kbps: Option<u64>,
    pub buffer_ms: Option<u64>,
    pub startup_ms: Option<u64>,
    /// As sent; see [`Event::is_fatal_error`] for the default.
    pub fatal: Option<bool>,
    pub seek_from: Option<f64>,
    pub seek_to: Option<f64>,
    pub device_type: Option<String>,
}

impl Event {
    /// Reads an event in the ingest JSON format. `timestamp` must be present
    /// (epoch milliseconds or RFC 3339): the oracle cannot know receive times.
    pub fn from_json(value: &Value) -> Result<Event, String> {
        let object = value.as_object().ok_or_else(|| format!("not an object: {value}"))?;
        let text = |name: &str| -> Result<Option<String>, String> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(format!("{name} is not a string: {other}")),
            }
        };
        let required =
            |name: &str| -> Result<String, String> { text(name)?.ok_or_else(|| format!("{name} missing in {value}")) };
        let event_id = uuid::Uuid::parse_str(&required("event_id")?)
            .map_err(|e| format!("event_id: {e}"))?
            .hyphenated()
            .to_string();
        let at_ms = match object.get("timestamp") {
            Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("timestamp not whole ms: {n}"))?,
            Some(Value::String(s)) => {
                chrono::DateTime::parse_from_rfc3339(s).map_err(|e| format!("timestamp {s}: {e}"))?.timestamp_millis()
            }
            _ => return Err(format!("timestamp missing in {value}")),
        };
        let empty = serde_json::Map::new();
        let props = match object.get("properties") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(map)) => map,
            Some(other) => return Err(format!("properties is not an object: {other}")),
        };
        let float = |name: &str| -> Result<Option<f64>, String> {
            match props.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => Ok(n.as_f64()),
                Some(other) => Err(format!("properties.{name} is not a number: {other}")),
            }
        };
        let whole = |name: &str| -> Result<Option<u64>, String> {
            match float(name)? {
                None => Ok(None),
                Some(x) if x >= 0.0 && x.fract() == 0.0 => Ok(Some(x as u64)),
                Some(x) => Err(format!("properties.{name} is not a whole number: {x}")),
            }
        };
        let prop_text = |name: &str| -> Result<Option<String>, String> {
            match props.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(format!("properties.{name} is not a string: {other}")),
            }
        };
        let fatal = match props.get("fatal") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => return Err(format!("properties.fatal is not a bool: {other}")),
        };
        Ok(Event {
            event_id,
            event_type: required("event_type")?,
            user_id: text("user_id")?,
            session_id: required("session_id")?,
            video_id: required("video_id")?,
            at_ms,
            position: float("position_seconds")?,
            duration: float("duration_seconds")?,
            quality: prop_text("quality")?,
            to_quality: prop_text("to_quality")?,
            bitrate_kbps: whole("bitrate_kbps")?,
            buffer_ms: whole("buffer_duration_ms")?,
            startup_ms: whole("startup_time_ms")?,
            fatal,
            seek_from: float("seek_from_seconds")?,
            seek_to: float("seek_to_seconds")?,
            device_type: prop_text("device_type")?,
        })
    }

    /// A `video_error` is fatal unless it says `"fatal": false`; no other type is an error.
    pub fn is_fatal_error(&self) -> bool {
        self.event_type == "video_error" && self.fatal.unwrap_or(true)
    }

    /// Where the segment before this event ends (`None`: the event has no playhead).
    pub fn playhead_from(&self) -> Option<f64> {
        if self.event_type == "seek" { self.seek_from.or(self.position) } else { self.position }
    }

    /// Where the segment after this event starts.
    pub fn playhead_to(&self) -> Option<f64> {
        if self.event_type == "seek" { self.seek_to.or(self.position) } else { self.position }
    }

    /// The rendition this event names: `to_quality` of a `quality_change`, else `quality`.
    pub fn rendition(&self) -> Option<&str> {
        if self.event_type == "quality_change" {
            self.to_quality.as_deref().or(self.quality.as_deref())
        } else {
            self.quality.as_deref()
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_every_field_the_metrics_use() {
        let event = Event::from_json(&json!({
            "event_id": "0000002A-0000-0001-0000-000100000007",
            "event_type": "seek",
            "user_id": "u1",
            "session_id": "s1",
            "video_id": "v1",
            "timestamp": 1_764_000_600_123_i64,
            "properties": {"position_seconds": 3.5, "seek_from_seconds": 4, "seek_to_seconds": 90.25,
                           "duration_seconds": 100, "quality": "720p", "bitrate_kbps": 2500,
                           "device_type": "", "fatal": true, "startup_time_ms": 900.0, "browser": "x"}
        }))
        .unwrap();
        assert_eq!(event.event_id, "0000002a-0000-0001-0000-000100000007");
        assert_eq!(event.at_ms, 1_764_000_600_123);
        assert_eq!((event.playhead_from(), event.playhead_to()), (Some(4.0), Some(90.25)));
        assert_eq!(event.device_type, None, "an empty string counts as absent");
        assert_eq!((event.startup_ms, event.bitrate_kbps), (Some(900), Some(2500)));
        assert!(!event.is_fatal_error(), "only a video_error can be fatal");
        assert_eq!(event.rendition(), Some("720p"));
    }

    #[test]
    fn rfc3339_times_defaults_and_missing_fields() {
        let mut value = json!({
            "event_id": uuid::Uuid::from_u128(5).to_string(),
            "event_type": "video_error",
            "session_id": "s",
            "video_id": "v",
            "timestamp": "2025-11-24T17:10:00.250+01:00",
        });
        let event = Event::from_json(&value).unwrap();
        assert_eq!(event.at_ms, 1_764_000_600_250);
        assert!(event.is_fatal_error(), "fatal by default");
        assert_eq!((event.user_id.as_deref(), event.position, event.playhead_from()), (None, None, None));
        value["properties"] = json!({"fatal": false});
        assert!(!Event::from_json(&value).unwrap().is_fatal_error());
        value.as_object_mut().unwrap().remove("timestamp");
        assert!(Event::from_json(&value).unwrap_err().contains("timestamp"));
    }

    #[test]
    fn a_quality_change_names_its_target() {
        let value = json!({
            "event_id": uuid::Uuid::from_u128(6).to_string(), "event_type": "quality_change",
            "session_id": "s", "video_id": "v", "timestamp": 946_684_800_000_i64,
            "properties": {"quality": "480p", "from_quality": "480p", "to_quality": "1080p"}
        });
        assert_eq!(Event::from_json(&value).unwrap().rendition(), Some("1080p"));
    }
}
