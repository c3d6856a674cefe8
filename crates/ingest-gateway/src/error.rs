//! Why a request is refused, and the JSON answer for each reason.
//!
//! Every answer is `{"error": <code>, "message": <text>, ...}`; `code` is a
//! short, stable snake_case name, also used as the `reason` label of
//! `analytics_service_ingest_events_rejected_total`.

use actix_web::{
    HttpResponse, ResponseError,
    http::{StatusCode, header},
};
use events_model::ValidationErrors;
use serde_json::{Value, json};

use crate::report::BatchReport;

/// Why a 503's body may be resent as is, in its message: every event keeps
/// its id across attempts, the client's `event_id` or the one derived from
/// the event and the key (`events_model::Event::from_client_value`).
const RESEND_WHY: &str = "every event keeps its event_id (the one sent, or the one derived from the event and the \
                          key when none was sent), so events already stored are counted once";

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("request body exceeds the limit of {limit} bytes{}", if *.decompressed { " once decompressed" } else { "" })]
    PayloadTooLarge { limit: usize, decompressed: bool },

    #[error("batch holds {count} events; the limit is {limit} per request")]
    TooManyEvents { count: usize, limit: usize },

    #[error("{0}")]
    UnsupportedMediaType(String),

    #[error("content-encoding {0:?} is not supported; send the body uncompressed or with content-encoding gzip")]
    UnsupportedEncoding(String),

    #[error("body is not valid gzip: {0}")]
    InvalidGzip(String),

    #[error("could not read the request body: {0}")]
    InvalidBody(String),

    #[error("the request body did not arrive within {0:?}; send it at once")]
    BodyTimeout(std::time::Duration),

    #[error("body is not valid utf-8: invalid byte sequence at byte {valid_up_to}")]
    InvalidUtf8 { valid_up_to: usize },

    #[error("body is not valid json: {0}")]
    InvalidJson(String),

    #[error("{0}")]
    InvalidBatch(String),

    #[error("batch holds no events")]
    EmptyBatch,

    #[error("event is invalid: {0}")]
    InvalidEvent(ValidationErrors),

    #[error("every event of the batch is invalid")]
    AllInvalid(BatchReport),

    /// `queued` of the request's `events` are stored; resending the same
    /// body is safe.
    #[error(
        "{reason}: kafka acknowledged {queued} of {events} events, so the request is not accepted. Resend the same \
         body unchanged, with the same key, after {retry_after} s: {RESEND_WHY}"
    )]
    KafkaUnavailable { reason: &'static str, retry_after: u32, events: usize, queued: usize },

    #[error(
        "the gateway's queue towards kafka is full: kafka acknowledged {queued} of {events} events, so the request \
         is not accepted. Resend the same body unchanged, with the same key, after {retry_after} s: {RESEND_WHY}"
    )]
    KafkaQueueFull { retry_after: u32, events: usize, queued: usize },

    #[error("over this key's limit of events per second; no event of this request was accepted")]
    RateLimited { limited: service_kit::rate::Limited, events: usize },
}

impl IngestError {
    /// The stable name sent as `error`.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::PayloadTooLarge { .. } => "payload_too_large",
            IngestError::TooManyEvents { .. } => "too_many_events",
            IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngestError::UnsupportedEncoding(_) => "unsupported_encoding",
            IngestError::InvalidGzip(_) => "invalid_gzip",
            IngestError::InvalidBody(_) => "invalid_body",
            IngestError::BodyTimeout(_) => "request_timeout",
            IngestError::InvalidUtf8 { .. } => "invalid_utf8",
            IngestError::InvalidJson(_) => "invalid_json",
            IngestError::InvalidBatch(_) => "invalid_batch",
            IngestError::EmptyBatch => "empty_batch",
            IngestError::InvalidEvent(_) => "invalid_event",
            IngestError::AllInvalid(_) => "invalid_events",
            IngestError::KafkaUnavailable { .. } => "kafka_unavailable",
            IngestError::KafkaQueueFull { .. } => "kafka_queue_full",
            IngestError::RateLimited { .. } => "rate_limited",
        }
    }

    /// What the rejected-events counter should add for this refusal:
    /// `(reason, count)`. `None` when the events were already counted one by
    /// one during validation. A request refused as a whole counts once,
    /// because how many events it held is unknown.
    pub fn rejected_events(&self) -> Option<(&'static str, u64)> {
        match self {
            IngestError::InvalidEvent(_) | IngestError::AllInvalid(_) => None,
            IngestError::KafkaUnavailable { events, .. }
            | IngestError::KafkaQueueFull { events, .. }
            | IngestError::RateLimited { events, .. } => {
                Some((self.code(), u64::try_from(*events).unwrap_or(u64::MAX)))
            }
            _ => Some((self.code(), 1)),
        }
    }

    fn retry_after(&self) -> Option<u32> {
        match self {
            IngestError::KafkaUnavailable { retry_after, .. } | IngestError::KafkaQueueFull { retry_after, .. } => {
                Some(*retry_after)
            }
            IngestError::RateLimited { limited, .. } => {
                Some(u32::try_from(limited.retry_after_secs()).unwrap_or(u32::MAX))
            }
            _ => None,
        }
    }

    fn body(&self) -> Value {
        let mut body = json!({ "error": self.code(), "message": self.to_string() });
        match self {
            IngestError::PayloadTooLarge { limit, .. } | IngestError::TooManyEvents { limit, .. } => {
                body["limit"] = json!(limit);
            }
            IngestError::RateLimited { limited, .. } => body["limit"] = json!(limited.limit),
            // The validator lists at most `events_model::limits::MAX_REPORTED_ERRORS`.
            IngestError::InvalidEvent(errors) => body["errors"] = json!(errors),
            IngestError::AllInvalid(report) => {
                body["accepted"] = json!(report.accepted);
                body["event_ids"] = json!(report.event_ids);
                body["rejected"] = json!(report.rejected);
                body["rejected_count"] = json!(report.rejected_count);
            }
            IngestError::KafkaUnavailable { events, queued, .. }
            | IngestError::KafkaQueueFull { events, queued, .. } => {
                body["queued"] = json!(queued);
                body["not_queued"] = json!(events.saturating_sub(*queued));
                body["resend_same_body"] = json!(true);
            }
            _ => {}
        }
        if let Some(seconds) = self.retry_after() {
            body["retry_after_seconds"] = json!(seconds);
        }
        body
    }
}

impl ResponseError for IngestError {
    fn status_code(&self) -> StatusCode {
        match self {
            IngestError::PayloadTooLarge { .. } | IngestError::TooManyEvents { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::UnsupportedMediaType(_) | IngestError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            IngestError::KafkaUnavailable { .. } | IngestError::KafkaQueueFull { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            IngestError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            IngestError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            IngestError::InvalidGzip(_)
            | IngestError::InvalidBody(_)
            | IngestError::InvalidUtf8 { .. }
            | IngestError::InvalidJson(_)
            | IngestError::InvalidBatch(_)
            | IngestError::EmptyBatch
            | IngestError::InvalidEvent(_)
            | IngestError::AllInvalid(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(self.body())
    }
}

#[cfg(test)]
mod tests {
    use events_model::ErrorCode;

    use super::*;
    use crate::report::Rejection;

    #[test]
    fn every_refusal_has_a_status_and_a_json_body_with_its_code() {
        let cases = [
            (IngestError::PayloadTooLarge { limit: 10, decompressed: true }, 413),
            (IngestError::TooManyEvents { count: 3, limit: 2 }, 413),
            (IngestError::UnsupportedMediaType("x".into()), 415),
            (IngestError::UnsupportedEncoding("br".into()), 415),
            (IngestError::InvalidJson("eof".into()), 400),
            (IngestError::InvalidUtf8 { valid_up_to: 4 }, 400),
            (IngestError::EmptyBatch, 400),
            (IngestError::BodyTimeout(std::time::Duration::from_secs(10)), 408),
            (IngestError::KafkaQueueFull { retry_after: 2, events: 3, queued: 0 }, 503),
        ];
        for (error, status) in cases {
            assert_eq!(error.status_code().as_u16(), status, "{error}");
            let body = error.body();
            assert_eq!(body["error"], error.code());
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        }
    }

    #[test]
    fn unavailable_kafka_answers_retry_after_and_tells_how_to_retry() {
        let error =
            IngestError::KafkaUnavailable { reason: "kafka did not answer", retry_after: 7, events: 4, queued: 3 };
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "7");
        let message = error.to_string();
        assert!(message.starts_with("kafka did not answer: kafka acknowledged 3 of 4 events"), "{message}");
        assert!(message.contains("Resend the same body unchanged, with the same key, after 7 s"), "{message}");
        assert_eq!(error.rejected_events(), Some(("kafka_unavailable", 4)));
        let body = error.body();
        assert_eq!(body["queued"], 3);
        assert_eq!(body["not_queued"], 1);
        assert_eq!(body["resend_same_body"], true);
        assert_eq!(body["retry_after_seconds"], 7);
        // Nothing is accepted: `accepted` and `event_ids` belong to 2xx answers.
        assert!(body.get("accepted").is_none() && body.get("event_ids").is_none());

        let full = IngestError::KafkaQueueFull { retry_after: 2, events: 5, queued: 0 }.body();
        assert_eq!((full["queued"].as_u64(), full["not_queued"].as_u64()), (Some(0), Some(5)));
        assert_eq!(full["resend_same_body"], true);
    }

    #[test]
    fn invalid_events_carry_their_problems() {
        let errors = ValidationErrors::single("session_id", ErrorCode::Missing, "is required");
        let single = IngestError::InvalidEvent(errors.clone()).body();
        assert_eq!(single["error"], "invalid_event");
        assert_eq!(single["errors"][0]["field"], "session_id");

        let report = BatchReport {
            accepted: 0,
            event_ids: vec![],
            rejected: vec![Rejection { index: 2, errors }],
            rejected_count: 1,
        };
        let batch = IngestError::AllInvalid(report).body();
        assert_eq!(batch["accepted"], 0);
        assert_eq!(batch["event_ids"], json!([]));
        assert_eq!(batch["rejected"][0]["index"], 2);
        assert_eq!(batch["rejected"][0]["errors"][0]["code"], "missing");
    }
}
