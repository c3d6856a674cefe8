//! The event model shared by every service of the video analytics platform.
//!
//! * [`EventType`], [`Properties`] and [`Event`]: what a player reports.
//! * [`Event::parse_client_json`] / [`Event::from_client_value`]: validation
//!   of client input as the ingest API receives it ([`Arrival`]); every
//!   problem is reported as a [`ValidationError`] naming the field, an
//!   [`ErrorCode`] and a readable message. An event without `event_id` gets
//!   one derived from its fields and the sender's key, so a resent body
//!   yields the same ids. [`Event::parse_json`] / [`Event::from_value`]
//!   apply the same rules with random ids instead (tools and tests).
//! * [`Event::to_wire`] / [`Event::from_wire`]: the Kafka message format
//!   (exact round trip), keyed by [`Event::kafka_key`].
//! * [`Topics`] and the `DLQ_*_HEADER` names: Kafka topology.
//! * [`EventRow`]: the ClickHouse `events` row.
//! * [`RealtimePartial`]: the realtime window partials the stream-processor
//!   publishes and the realtime-hub merges.
//! * [`limits`]: every bound the validator enforces.
//!
//! ```
//! use chrono::Utc;
//! use events_model::{Event, EventType};
//!
//! let body = br#"{"event_type":"video_start","session_id":"s1","video_id":"v1"}"#;
//! let event = Event::parse_json(body, Utc::now()).unwrap();
//! assert_eq!(event.event_type, EventType::VideoStart);
//! assert_eq!(Event::from_wire(&event.to_wire()).unwrap(), event);
//! ```

mod error;
mod event;
mod event_type;
pub mod limits;
mod parse;
pub use parse::DERIVED_SESSION_PREFIX;
mod partial;
mod properties;
mod row;
pub mod schema;
pub mod text;
mod topics;
mod wire;

pub use error::{ErrorCode, ROOT_FIELD, ValidationError, ValidationErrors};
pub use event::{Arrival, Event};
pub use event_type::{EventType, UnknownEventTypeError};
pub use partial::{PartialEvent, PartialView, RealtimePartial};
pub use properties::Properties;
pub use row::{EVENT_ROW_COLUMNS, EVENTS_TABLE, EventRow};
pub use topics::{
    DEFAULT_TOPIC_PREFIX, DLQ_DETAIL_HEADER, DLQ_FAILED_AT_HEADER, DLQ_REASON_HEADER, DLQ_SOURCE_OFFSET_HEADER,
    DLQ_SOURCE_PARTITION_HEADER, DLQ_SOURCE_TOPIC_HEADER, Topics,
};
pub use wire::{SCHEMA_VERSION_HEADER, WIRE_SCHEMA_VERSION, format_time};
