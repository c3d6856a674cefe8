//! The ClickHouse `events` table row.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// Name of the raw events table.
pub const EVENTS_TABLE: &str = "events";

/// Columns of [`EVENTS_TABLE`], in table (and [`EventRow`] field) order,
/// as the `clickhouse::Row` derive lists them.
pub const EVENT_ROW_COLUMNS: &[&str] = <EventRow as clickhouse::Row>::COLUMN_NAMES;

/// One row of the `events` table. The comment on each field is its
/// ClickHouse column type. Absent string dimensions are stored as `''`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct EventRow {
    /// `UUID`
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    /// `String`: the event type name.
    pub event_type: String,
    /// `Nullable(String)`
    pub user_id: Option<String>,
    /// `String`
    pub session_id: String,
    /// `String`
    pub video_id: String,
    /// `DateTime`: client time, epoch seconds.
    pub timestamp: u32,
    /// `UInt64`: client time, epoch milliseconds.
    pub timestamp_ms: u64,
    /// `UInt64`: server receive time, epoch milliseconds.
    pub received_at_ms: u64,
    /// `Nullable(Float64)`
    pub position_seconds: Option<f64>,
    /// `Nullable(Float64)`
    pub duration_seconds: Option<f64>,
    /// `String`
    pub quality: String,
    /// `Nullable(UInt32)`
    pub bitrate_kbps: Option<u32>,
    /// `Nullable(UInt32)`
    pub buffer_duration_ms: Option<u32>,
    /// `Nullable(UInt32)`
    pub startup_time_ms: Option<u32>,
    /// `String`
    pub error_code: String,
    /// `String`
    pub error_message: String,
    /// `UInt8`: 1 when fatal, with the per-type default applied
    /// ([`Properties::fatal_or_default`](crate::Properties::fatal_or_default)).
    pub fatal: u8,
    /// `Nullable(Float64)`
    pub seek_from_seconds: Option<f64>,
    /// `Nullable(Float64)`
    pub seek_to_seconds: Option<f64>,
    /// `String`
    pub from_quality: String,
    /// `String`
    pub to_quality: String,
    /// `String`
    pub device_type: String,
    /// `String`
    pub browser: String,
    /// `String`
    pub os: String,
    /// `String`
    pub country: String,
    /// `String`
    pub player: String,
    /// `String`
    pub cdn: String,
    /// `String`: the unknown properties as compact JSON, `{}` when none.
    pub properties: String,
    /// `Nullable(String)`: metadata as compact JSON.
    pub metadata: Option<String>,
}

impl EventRow {
    /// A row with only the envelope set: a new random `event_id`, no user,
    /// received when it happened, no properties (`fatal` by the type's
    /// default). Tests and tools fill in the fields they need.
    pub fn new(event_type: &str, session_id: &str, video_id: &str, timestamp_ms: u64) -> EventRow {
        EventRow {
            event_id: Uuid::new_v4(),
            event_type: event_type.to_owned(),
            user_id: None,
            session_id: session_id.to_owned(),
            video_id: video_id.to_owned(),
            timestamp: epoch_seconds((timestamp_ms / 1000) as i64),
            timestamp_ms,
            received_at_ms: timestamp_ms,
            position_seconds: None,
            duration_seconds: None,
            quality: String::new(),
            bitrate_kbps: None,
            buffer_duration_ms: None,
            startup_time_ms: None,
            error_code: String::new(),
            error_message: String::new(),
            fatal: u8::from(event_type == crate::EventType::VideoError.as_str()),
            seek_from_seconds: None,
            seek_to_seconds: None,
            from_quality: String::new(),
            to_quality: String::new(),
            device_type: String::new(),
            browser: String::new(),
            os: String::new(),
            country: String::new(),
            player: String::new(),
            cdn: String::new(),
            properties: "{}".to_owned(),
            metadata: None,
        }
    }
}

impl From<&Event> for EventRow {
    fn from(event: &Event) -> EventRow {
        let props = &event.properties;
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        EventRow {
            event_id: event.event_id,
            event_type: event.event_type.as_str().to_owned(),
            user_id: event.user_id.clone(),
            session_id: event.session_id.clone(),
            video_id: event.video_id.clone(),
            timestamp: epoch_seconds(event.timestamp.timestamp()),
            timestamp_ms: epoch_millis(event.timestamp.timestamp_millis()),
            received_at_ms: epoch_millis(event.received_at.timestamp_millis()),
            position_seconds: props.position_seconds,
            duration_seconds: props.duration_seconds,
            quality: text(&props.quality),
            bitrate_kbps: props.bitrate_kbps,
            buffer_duration_ms: props.buffer_duration_ms,
            startup_time_ms: props.startup_time_ms,
            error_code: text(&props.error_code),
            error_message: text(&props.error_message),
            fatal: u8::from(props.fatal_or_default(event.event_type)),
            seek_from_seconds: props.seek_from_seconds,
            seek_to_seconds: props.seek_to_seconds,
            from_quality: text(&props.from_quality),
            to_quality: text(&props.to_quality),
            device_type: text(&props.device_type),
            browser: text(&props.browser),
            os: text(&props.os),
            country: text(&props.country),
            player: text(&props.player),
            cdn: text(&props.cdn),
            properties: props.extra_json(),
            metadata: event.metadata.as_ref().and_then(|metadata| serde_json::to_string(metadata).ok()),
        }
    }
}

/// Clamps epoch seconds into ClickHouse `DateTime` range (validated events
/// are always inside it).
fn epoch_seconds(seconds: i64) -> u32 {
    u32::try_from(seconds.max(0)).unwrap_or(u32::MAX)
}

/// Clamps epoch milliseconds into `UInt64` (validated events are never
/// before 2000).
fn epoch_millis(millis: i64) -> u64 {
    u64::try_from(millis).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use clickhouse::Row;
    use serde_json::json;

    use super::*;

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn column_list_matches_the_row_fields() {
        assert_eq!(EVENT_ROW_COLUMNS, <EventRow as Row>::COLUMN_NAMES);
        assert_eq!(EVENT_ROW_COLUMNS.len(), 29);
    }

    #[test]
    fn error_event_becomes_a_row() {
        let body = json!({
            "event_id": "0190a6a0-0000-7000-8000-000000000001",
            "event_type": "video_error",
            "session_id": "s1",
            "video_id": "v1",
            "timestamp": "2024-05-01T12:00:00.250Z",
            "properties": {
                "error_code": "MEDIA_ERR_DECODE",
                "error_message": "decoder\nfailed",
                "bitrate_kbps": 2500,
                "position_seconds": 3.5,
                "ab_variant": "b"
            },
            "metadata": {"page": "/watch"}
        });
        let event = Event::from_value(body, time("2024-05-01T12:00:01.000Z")).unwrap();
        let row = EventRow::from(&event);
        assert_eq!(row.event_id.to_string(), "0190a6a0-0000-7000-8000-000000000001");
        assert_eq!(row.event_type, "video_error");
        assert_eq!(row.user_id, None);
        assert_eq!(row.timestamp, 1_714_564_800);
        assert_eq!(row.timestamp_ms, 1_714_564_800_250);
        assert_eq!(row.received_at_ms, 1_714_564_801_000);
        assert_eq!(row.position_seconds, Some(3.5));
        assert_eq!(row.bitrate_kbps, Some(2500));
        assert_eq!(row.error_code, "MEDIA_ERR_DECODE");
        assert_eq!(row.error_message, "decoder\nfailed");
        assert_eq!(row.fatal, 1, "video_error defaults to fatal");
        assert_eq!(row.quality, "");
        assert_eq!(row.cdn, "");
        assert_eq!(row.seek_to_seconds, None);
        assert_eq!(row.properties, r#"{"ab_variant":"b"}"#);
        assert_eq!(row.metadata.as_deref(), Some(r#"{"page":"/watch"}"#));
    }

    #[test]
    fn non_error_event_row_defaults() {
        let body = json!({
            "event_id": "0190a6a0-0000-7000-8000-000000000002",
            "event_type": "quality_change",
            "user_id": "u1",
            "session_id": "s1",
            "video_id": "v1",
            "properties": {"from_quality": "480p", "to_quality": "1080p"}
        });
        let received_at = time("2024-05-01T12:00:00.999Z");
        let event = Event::from_value(body, received_at).unwrap();
        let row = EventRow::from(&event);
        assert_eq!(row.user_id.as_deref(), Some("u1"));
        assert_eq!(row.fatal, 0);
        assert_eq!(row.from_quality, "480p");
        assert_eq!(row.to_quality, "1080p");
        assert_eq!(row.timestamp_ms, row.received_at_ms, "timestamp defaults to received_at");
        assert_eq!(row.properties, "{}");
        assert_eq!(row.metadata, None);
    }

    #[test]
    fn explicit_non_fatal_error_is_stored_as_zero() {
        let body = json!({
            "event_type": "video_error",
            "session_id": "s1",
            "video_id": "v1",
            "properties": {"fatal": false}
        });
        let event = Event::from_value(body, time("2024-05-01T12:00:00Z")).unwrap();
        assert_eq!(EventRow::from(&event).fatal, 0);
    }

    #[test]
    fn out_of_range_times_are_clamped_not_panicking() {
        assert_eq!(epoch_seconds(-5), 0);
        assert_eq!(epoch_seconds(i64::MAX), u32::MAX);
        assert_eq!(epoch_millis(-1), 0);
    }
}
