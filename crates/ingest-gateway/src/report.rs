//! The bodies of successful answers, and of a batch whose events were all invalid.

use events_model::ValidationErrors;
use serde::Serialize;
use uuid::Uuid;

/// `202` for `POST /api/events`: `{"accepted":1,"event_ids":[id]}`.
#[derive(Debug, Clone, Serialize)]
pub struct SingleAccepted {
    pub accepted: usize,
    pub event_ids: [Uuid; 1],
}

/// `202` for `POST /api/events/batch` (and, with every event rejected, the
/// fields of its `400`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchReport {
    /// Events now in Kafka.
    pub accepted: usize,
    /// Their ids, in the order they were sent.
    pub event_ids: Vec<Uuid>,
    /// Every invalid event, by its position in the batch.
    pub rejected: Vec<Rejection>,
}

/// One invalid event of a batch.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rejection {
    /// 0-based position: the array index, or the event's line among the
    /// non-blank lines of an NDJSON body.
    pub index: usize,
    /// Every problem found, each naming its field.
    pub errors: ValidationErrors,
}
