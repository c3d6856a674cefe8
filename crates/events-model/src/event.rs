//! The validated, normalised event envelope.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::ValidationErrors;
use crate::parse::{self, MissingId, Source};
use crate::{EventType, Properties};

/// One playback event after validation and normalisation.
///
/// Obtain one from client input with [`Event::parse_json`] or
/// [`Event::from_value`], or from Kafka with [`Event::from_wire`]. Fields are
/// public so services and tests can build events directly; such hand-built
/// events are not re-checked until they pass through [`Event::from_wire`].
///
/// `Serialize` produces the wire object (see [`Event::to_wire`]), so an event
/// can be embedded in other JSON, e.g. a WebSocket message.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique id; the deduplication key. When the client sent none, the
    /// ingest path ([`Event::from_client_value`]) derives one from the
    /// event and the sender's key (a UUIDv8, the same for the same event
    /// resent), and [`Event::from_value`] assigns a random UUIDv7.
    pub event_id: Uuid,
    /// What happened.
    pub event_type: EventType,
    /// The viewer, when known.
    pub user_id: Option<String>,
    /// The player session.
    pub session_id: String,
    /// The video being played.
    pub video_id: String,
    /// Client time (server receive time when the client sent none), UTC,
    /// millisecond precision.
    pub timestamp: DateTime<Utc>,
    /// When the ingest server received the event, UTC, millisecond precision.
    pub received_at: DateTime<Utc>,
    /// Known and unknown properties.
    pub properties: Properties,
    /// Free-form client data.
    pub metadata: Option<Map<String, Value>>,
}

/// How a client event reached the ingest API: what the server knows about
/// it besides its fields.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// The server's receive time: it becomes `received_at`, and the
    /// timestamp when the client sent none, and anchors the "in future"
    /// check. Truncated to milliseconds.
    pub received_at: DateTime<Utc>,
    /// The id of the API key that sent the event (`None` when the request
    /// carries no key, authentication being off). It scopes the ids
    /// derived for events sent without `event_id`.
    pub key_id: Option<&'a str>,
}

impl Event {
    /// Parses and validates one client event from a JSON body, as the
    /// ingest API does.
    ///
    /// An event sent without `event_id` gets one derived from its fields as
    /// sent and `arrival.key_id`: a UUIDv8 from a SHA-256 of their canonical
    /// form, never of `received_at` (nor of the receive time standing in for
    /// an absent timestamp). Resending the same event with the same key
    /// therefore yields the same id, and the pipeline, which counts each id
    /// once, does not count a retry twice. Two events equal in every field
    /// sent are one event. The canonical form and the choice of v8 are
    /// documented in the source (`parse/derived_id.rs`).
    ///
    /// # Errors
    ///
    /// Every problem found, each naming its field: a body larger than
    /// [`MAX_EVENT_BYTES`](crate::limits::MAX_EVENT_BYTES), not UTF-8, not
    /// JSON, not an object, or any field failing its rule.
    pub fn parse_client_json(bytes: &[u8], arrival: Arrival<'_>) -> Result<Event, ValidationErrors> {
        parse::parse_bytes(bytes, arrival.source())
    }

    /// Validates one client event already parsed as JSON (e.g. one element
    /// of a batch array). Same rules and ids as [`Event::parse_client_json`];
    /// the size limit applies to the value's compact serialisation.
    ///
    /// # Errors
    ///
    /// Every problem found, each naming its field.
    pub fn from_client_value(value: Value, arrival: Arrival<'_>) -> Result<Event, ValidationErrors> {
        parse::parse_value(value, arrival.source())
    }

    /// Parses and validates one client event from a JSON body, giving an
    /// event sent without `event_id` a fresh random UUIDv7: for tools and
    /// tests that build many distinct events from one template. The ingest
    /// API uses [`Event::parse_client_json`], whose ids are deterministic.
    ///
    /// `received_at` is the server's receive time; it becomes the timestamp
    /// when the client sent none and anchors the "in future" check. Both
    /// times are truncated to milliseconds.
    ///
    /// # Errors
    ///
    /// As [`Event::parse_client_json`].
    pub fn parse_json(bytes: &[u8], received_at: DateTime<Utc>) -> Result<Event, ValidationErrors> {
        parse::parse_bytes(bytes, Source::Client { received_at, missing_id: MissingId::Random })
    }

    /// [`Event::parse_json`] for a value already parsed as JSON: the same
    /// rules as [`Event::from_client_value`] except that a missing
    /// `event_id` is a fresh random UUIDv7.
    ///
    /// # Errors
    ///
    /// Every problem found, each naming its field.
    pub fn from_value(value: Value, received_at: DateTime<Utc>) -> Result<Event, ValidationErrors> {
        parse::parse_value(value, Source::Client { received_at, missing_id: MissingId::Random })
    }

    /// Decodes and re-validates a Kafka message value written by
    /// [`Event::to_wire`].
    ///
    /// Same rules as client input, except that `event_id` and `received_at`
    /// are required and taken from the message, and `timestamp` is checked
    /// against that `received_at` rather than the current time. For any
    /// event produced by this crate's parsers,
    /// `Event::from_wire(&event.to_wire()) == Ok(event)`.
    ///
    /// # Errors
    ///
    /// Every problem found, so that a poison message can be dead-lettered
    /// with a reason.
    pub fn from_wire(bytes: &[u8]) -> Result<Event, ValidationErrors> {
        parse::parse_bytes(bytes, Source::Wire)
    }

    /// The Kafka message key: the session id, so that every event of a view
    /// lands in the same partition, in order.
    pub fn kafka_key(&self) -> &str {
        &self.session_id
    }

    /// Whether this event reports an error that ended playback.
    pub fn is_fatal_error(&self) -> bool {
        self.event_type == EventType::VideoError && self.properties.fatal_or_default(self.event_type)
    }
}

impl<'a> Arrival<'a> {
    fn source(self) -> Source<'a> {
        Source::Client { received_at: self.received_at, missing_id: MissingId::Derived { key_id: self.key_id } }
    }
}
