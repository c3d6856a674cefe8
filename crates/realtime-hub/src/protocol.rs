//! The WebSocket protocol: JSON text messages `{"type": …, "payload": …}`.
//!
//! Server to client: `realtime_metrics`, `top_videos`, `metrics_history`,
//! `analytics_event` (with `sample_rate`), `subscribed`, `error`.
//! Client to server: `subscribe`, `unsubscribe`. See the crate README.

use std::collections::HashSet;

use events_model::{EventType, limits::MAX_ID_CHARS};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{
    feed::{FeedEvent, Subscription},
    window::{RealtimeMetrics, TopVideo},
};

/// Most video ids one subscription may name.
pub const MAX_SUBSCRIBED_VIDEOS: usize = 1000;
/// Largest client message, in bytes.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 64 * 1024;

pub const REALTIME_METRICS: &str = "realtime_metrics";
pub const TOP_VIDEOS: &str = "top_videos";
pub const METRICS_HISTORY: &str = "metrics_history";
pub const ANALYTICS_EVENT: &str = "analytics_event";
pub const SUBSCRIBED: &str = "subscribed";
pub const ERROR: &str = "error";

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Subscribe(Subscription),
    Unsubscribe,
}

/// Reads one client text message; `Err` is the text of the `error` reply.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, String> {
    if text.len() > MAX_CLIENT_MESSAGE_BYTES {
        return Err(format!("message larger than {MAX_CLIENT_MESSAGE_BYTES} bytes"));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| format!("message is not valid JSON: {e}"))?;
    let Value::Object(mut message) = value else {
        return Err("message must be a JSON object {\"type\": …, \"payload\": …}".into());
    };
    let kind = match message.remove("type") {
        Some(Value::String(kind)) => kind,
        Some(_) => return Err("type must be a string".into()),
        None => return Err("type is required".into()),
    };
    let payload = message.remove("payload").unwrap_or(Value::Null);
    if let Some(key) = message.keys().next() {
        return Err(format!("unknown field {:?}; a message has type and payload", truncate(key)));
    }
    match kind.as_str() {
        "subscribe" => subscription(payload).map(ClientMessage::Subscribe),
        "unsubscribe" => Ok(ClientMessage::Unsubscribe),
        other => Err(format!("unknown message type {:?}; expected subscribe or unsubscribe", truncate(other))),
    }
}

fn subscription(payload: Value) -> Result<Subscription, String> {
    let mut payload = match payload {
        Value::Null => Map::new(),
        Value::Object(map) => map,
        _ => return Err("payload of subscribe must be an object {\"video_ids\": […], \"event_types\": […]}".into()),
    };
    let video_ids = strings(payload.remove("video_ids"), "video_ids")?;
    let event_types = strings(payload.remove("event_types"), "event_types")?;
    if let Some(key) = payload.keys().next() {
        return Err(format!("unknown field {:?} in subscribe; expected video_ids and event_types", truncate(key)));
    }
    if video_ids.len() > MAX_SUBSCRIBED_VIDEOS {
        return Err(format!("video_ids names {} videos; at most {MAX_SUBSCRIBED_VIDEOS}", video_ids.len()));
    }
    for id in &video_ids {
        let chars = id.chars().count();
        if chars == 0 || chars > MAX_ID_CHARS || !id.chars().all(events_model::text::is_plain) {
            return Err(format!(
                "video_ids: {:?} is not a video id (1 to {MAX_ID_CHARS} characters, no control, invisible or \
                 bidirectional formatting characters)",
                truncate(id)
            ));
        }
    }
    let mut types = HashSet::new();
    for name in &event_types {
        let event_type = name.parse::<EventType>().map_err(|_| {
            let valid: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            format!("event_types: unknown event type {:?}; expected one of: {}", truncate(name), valid.join(", "))
        })?;
        types.insert(event_type);
    }
    Ok(Subscription {
        video_ids: (!video_ids.is_empty()).then(|| video_ids.into_iter().collect()),
        event_types: (!types.is_empty()).then_some(types),
    })
}

/// A missing or null list is empty; anything else must be an array of strings.
fn strings(value: Option<Value>, field: &str) -> Result<Vec<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                other => Err(format!("{field} must be an array of strings, found {}", kind_of(&other))),
            })
            .collect(),
        Some(other) => Err(format!("{field} must be an array of strings, found {}", kind_of(&other))),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most 64 characters of client text in a reply.
fn truncate(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

fn message<T: Serialize + ?Sized>(kind: &str, payload: &T) -> String {
    #[derive(Serialize)]
    struct Message<'a, T: ?Sized> {
        r#type: &'a str,
        payload: &'a T,
    }
    serde_json::to_string(&Message { r#type: kind, payload }).unwrap_or_default()
}

pub fn realtime_metrics(metrics: &RealtimeMetrics) -> String {
    message(REALTIME_METRICS, metrics)
}

pub fn top_videos(videos: &[TopVideo]) -> String {
    message(TOP_VIDEOS, videos)
}

/// The realtime metrics of the last minutes, oldest first (sent on connect).
pub fn metrics_history<'a>(history: impl IntoIterator<Item = &'a RealtimeMetrics>) -> String {
    message(METRICS_HISTORY, &history.into_iter().collect::<Vec<_>>())
}

/// `{"type":"analytics_event","sample_rate":…,"payload":{the event}}`.
pub fn analytics_event(event: &FeedEvent, sample_rate: f64) -> String {
    let rate = serde_json::Number::from_f64(sample_rate).unwrap_or_else(|| 1.into());
    format!(r#"{{"type":"{ANALYTICS_EVENT}","sample_rate":{rate},"payload":{}}}"#, event.json)
}

/// The filter now in force; empty lists mean every value.
pub fn subscribed(subscription: &Subscription) -> String {
    let mut video_ids: Vec<&str> = subscription.video_ids.iter().flatten().map(String::as_str).collect();
    video_ids.sort_unstable();
    let mut event_types: Vec<EventType> = subscription.event_types.iter().flatten().copied().collect();
    event_types.sort_unstable();
    message(SUBSCRIBED, &json!({ "video_ids": video_ids, "event_types": event_types }))
}

pub fn error(text: &str) -> String {
    message(ERROR, &json!({ "message": text }))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn subscribe(text: &str) -> Result<Subscription, String> {
        match parse_client_message(text)? {
            ClientMessage::Subscribe(s) => Ok(s),
            ClientMessage::Unsubscribe => panic!("unsubscribe"),
        }
    }

    #[test]
    fn subscribe_reads_both_lists_and_empty_means_all() {
        let s = subscribe(
            r#"{"type":"subscribe","payload":{"video_ids":["v1","v2"],"event_types":["video_start","seek"]}}"#,
        )
        .unwrap();
        assert_eq!(s.video_ids, Some(["v1".to_string(), "v2".to_string()].into()));
        assert_eq!(s.event_types, Some([EventType::VideoStart, EventType::Seek].into()));
        assert_eq!(subscribe(r#"{"type":"subscribe"}"#).unwrap(), Subscription::default());
        assert_eq!(subscribe(r#"{"type":"subscribe","payload":null}"#).unwrap(), Subscription::default());
        assert_eq!(
            subscribe(r#"{"type":"subscribe","payload":{"video_ids":[],"event_types":null}}"#).unwrap(),
            Subscription::default()
        );
        let s = subscribe(r#"{"type":"subscribe","payload":{"event_types":["video_error"]}}"#).unwrap();
        assert_eq!((s.video_ids, s.event_types), (None, Some([EventType::VideoError].into())));
        assert_eq!(parse_client_message(r#"{"type":"unsubscribe"}"#), Ok(ClientMessage::Unsubscribe));
    }

    #[test]
    fn invalid_messages_name_the_problem() {
        let cases = [
            ("not json", "not valid JSON"),
            ("[1]", "must be a JSON object"),
            (r#"{"payload":{}}"#, "type is required"),
            (r#"{"type":7}"#, "type must be a string"),
            (r#"{"type":"hello"}"#, "unknown message type \"hello\""),
            (r#"{"type":"subscribe","extra":1}"#, "unknown field \"extra\""),
            (r#"{"type":"subscribe","payload":[]}"#, "payload of subscribe must be an object"),
            (r#"{"type":"subscribe","payload":{"video_id":["v1"]}}"#, "unknown field \"video_id\""),
            (
                r#"{"type":"subscribe","payload":{"video_ids":"v1"}}"#,
                "video_ids must be an array of strings, found a string",
            ),
            (r#"{"type":"subscribe","payload":{"video_ids":[1]}}"#, "found a number"),
            (r#"{"type":"subscribe","payload":{"video_ids":[""]}}"#, "is not a video id"),
            (r#"{"type":"subscribe","payload":{"event_types":["video_stop"]}}"#, "unknown event type \"video_stop\""),
        ];
        for (text, expected) in cases {
            let error = parse_client_message(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        let error = parse_client_message(r#"{"type":"subscribe","payload":{"event_types":["x"]}}"#).unwrap_err();
        for t in EventType::ALL {
            assert!(error.contains(t.as_str()), "{error}");
        }
        let many: Vec<String> = (0..=MAX_SUBSCRIBED_VIDEOS).map(|i| format!("v{i}")).collect();
        let text = json!({"type": "subscribe", "payload": {"video_ids": many}}).to_string();
        assert!(parse_client_message(&text).unwrap_err().contains("at most 1000"));
        let long = "x".repeat(MAX_CLIENT_MESSAGE_BYTES + 1);
        assert!(parse_client_message(&long).unwrap_err().contains("larger than"));
        let long_type = json!({"type": "y".repeat(500)}).to_string();
        assert!(parse_client_message(&long_type).unwrap_err().len() < 200, "client text is truncated");
    }

    #[test]
    fn server_messages_have_type_and_payload() {
        let metrics = RealtimeMetrics {
            concurrent_viewers: 2,
            active_streams: 1,
            bandwidth_gbps: 0.003,
            events_per_second: 0.1,
            error_rate: 0.0,
            window_seconds: 60,
            as_of: crate::window::as_of(1_700_000_000_000),
        };
        let value: Value = serde_json::from_str(&realtime_metrics(&metrics)).unwrap();
        assert_eq!(value["type"], "realtime_metrics");
        assert_eq!(value["payload"]["as_of"], "2023-11-14T22:13:20Z");
        let mut keys: Vec<&str> = value["payload"].as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "active_streams",
                "as_of",
                "bandwidth_gbps",
                "concurrent_viewers",
                "error_rate",
                "events_per_second",
                "window_seconds"
            ]
        );
        let value: Value =
            serde_json::from_str(&top_videos(&[TopVideo { video_id: "v1".into(), viewers: 3 }])).unwrap();
        assert_eq!(value, json!({"type": "top_videos", "payload": [{"video_id": "v1", "viewers": 3}]}));

        let event = FeedEvent {
            event_id: Uuid::nil(),
            event_type: EventType::Seek,
            video_id: "v1".into(),
            json: r#"{"event_id":"x"}"#.into(),
        };
        let value: Value = serde_json::from_str(&analytics_event(&event, 0.25)).unwrap();
        assert_eq!(value, json!({"type": "analytics_event", "sample_rate": 0.25, "payload": {"event_id": "x"}}));
        let value: Value = serde_json::from_str(&analytics_event(&event, 1.0)).unwrap();
        assert_eq!(value["sample_rate"], 1.0);

        let sub = Subscription {
            video_ids: Some(["b".to_string(), "a".to_string()].into()),
            event_types: Some([EventType::Seek, EventType::VideoStart].into()),
        };
        let value: Value = serde_json::from_str(&subscribed(&sub)).unwrap();
        assert_eq!(
            value,
            json!({"type": "subscribed", "payload": {"video_ids": ["a", "b"], "event_types": ["video_start", "seek"]}})
        );
        let value: Value = serde_json::from_str(&error("bad \"x\"")).unwrap();
        assert_eq!(value, json!({"type": "error", "payload": {"message": "bad \"x\""}}));
    }
}
