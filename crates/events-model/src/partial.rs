//! Realtime window partials: what the stream-processor publishes to the
//! realtime partials topic and the realtime-hub merges.
//!
//! A partial covers one receive-second of one Kafka partition: the stored
//! events of that partition received in that second, as compact facts, with
//! the views they belong to listed once. Partitions are disjoint, so the
//! partials of any number of processor replicas together cover every stored
//! event; each fact carries its `event_id`, so a consumer that keeps the ids
//! of its window counts an event once however often it is delivered
//! (redelivery after a rebalance, a client retry). Realtime figures are
//! computed from the facts with the definitions of docs/metrics.md.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, EventType};

/// One receive-second of one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealtimePartial {
    /// The raw-events partition the events were read from.
    pub partition: i32,
    /// Epoch second of receipt (`received_at`) shared by every event here.
    pub second: u64,
    /// The views (session, video) the events belong to, each once.
    pub views: Vec<PartialView>,
    pub events: Vec<PartialEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartialView {
    pub session_id: String,
    pub video_id: String,
}

/// The facts of one event the realtime metrics need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialEvent {
    pub event_id: Uuid,
    /// Index into [`RealtimePartial::views`].
    pub view: u32,
    pub event_type: EventType,
    /// A fatal `video_error` (the per-type default applied).
    pub fatal: bool,
    /// Client time, epoch milliseconds.
    pub timestamp_ms: u64,
    /// Server receive time, epoch milliseconds.
    pub received_at_ms: u64,
    pub bitrate_kbps: Option<u32>,
}

impl RealtimePartial {
    /// Groups `events` (of one partition) into one partial per receive-second,
    /// in ascending second order.
    pub fn group(partition: i32, events: &[&Event]) -> Vec<RealtimePartial> {
        let mut by_second: std::collections::BTreeMap<u64, RealtimePartial> = std::collections::BTreeMap::new();
        let mut view_index: std::collections::HashMap<(u64, PartialView), u32> = std::collections::HashMap::new();
        for event in events {
            let received_at_ms = u64::try_from(event.received_at.timestamp_millis()).unwrap_or(0);
            let second = received_at_ms / 1000;
            let partial = by_second.entry(second).or_insert_with(|| RealtimePartial {
                partition,
                second,
                views: Vec::new(),
                events: Vec::new(),
            });
            let view = PartialView { session_id: event.session_id.clone(), video_id: event.video_id.clone() };
            let index = *view_index.entry((second, view.clone())).or_insert_with(|| {
                partial.views.push(view);
                (partial.views.len() - 1) as u32
            });
            partial.events.push(PartialEvent {
                event_id: event.event_id,
                view: index,
                event_type: event.event_type,
                fatal: event.properties.fatal_or_default(event.event_type),
                timestamp_ms: u64::try_from(event.timestamp.timestamp_millis()).unwrap_or(0),
                received_at_ms,
                bitrate_kbps: event.properties.bitrate_kbps,
            });
        }
        by_second.into_values().collect()
    }

    /// The JSON message.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a partial always serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<RealtimePartial, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};

    use super::*;

    fn event(json: &str, received_ms: i64) -> Event {
        Event::parse_json(json.as_bytes(), Utc.timestamp_millis_opt(received_ms).unwrap()).unwrap()
    }

    #[test]
    fn events_group_by_receive_second_with_views_listed_once() {
        let a = event(
            r#"{"event_type":"video_start","session_id":"s1","video_id":"v1","properties":{"bitrate_kbps":900}}"#,
            1_000_100,
        );
        let b = event(r#"{"event_type":"video_error","session_id":"s1","video_id":"v1"}"#, 1_000_900);
        let c = event(
            r#"{"event_type":"video_progress","session_id":"s2","video_id":"v1","properties":{"position_seconds":3}}"#,
            1_001_000,
        );
        let partials = RealtimePartial::group(3, &[&a, &b, &c]);
        assert_eq!(partials.len(), 2);
        assert_eq!((partials[0].partition, partials[0].second), (3, 1_000));
        assert_eq!(partials[0].views.len(), 1, "one view for two events");
        assert_eq!(partials[0].events.iter().map(|e| e.view).collect::<Vec<_>>(), vec![0, 0]);
        assert_eq!(partials[0].events[0].bitrate_kbps, Some(900));
        assert!(partials[0].events[1].fatal, "video_error is fatal by default");
        assert_eq!(partials[1].second, 1_001);
        assert_eq!(partials[1].events[0].event_id, c.event_id);
        let round_trip = RealtimePartial::from_json(&partials[0].to_json()).unwrap();
        assert_eq!(round_trip, partials[0]);
    }
}
