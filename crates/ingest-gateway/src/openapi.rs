//! The OpenAPI 3.1 document served at `/api/openapi.json`: the ingest
//! operations of the routes table ([`crate::handlers::routes`]) and the
//! operational endpoints, with the event's exact JSON Schema from
//! `events-model` ([`events_model::schema::client_event`]) and the limits
//! this instance runs with.

use events_model::{ErrorCode, schema::client_event};
use serde_json::{Value, json};
use service_kit::routes::Routes;
use utoipa::openapi::{InfoBuilder, OpenApiBuilder, path::Operation};

use crate::config::IngestConfig;

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// The refusals every ingest operation may answer.
fn refusals(limits: &IngestConfig) -> Value {
    let error = || json_content(schema_ref("Error"));
    let mut refusals = service_kit::auth::openapi_refusals(&schema_ref("Error"));
    refusals["429"]["description"] = json!(
        "over the key's requests or events per second, or too many failed keys from one address; retry after `Retry-After` seconds"
    );
    let own = json!({
        "400": {"description": "malformed json, invalid utf-8, or an invalid event (each problem in `errors`)", "content": error()},
        "413": {"description": format!("body over {} bytes (before or after gzip), or a batch of more than {} events", limits.max_body_bytes, limits.max_batch_events), "content": error()},
        "415": {"description": "a content type or encoding this endpoint does not read", "content": error()},
        "503": {
            "description": "Kafka did not acknowledge every event, so the request is not accepted; `queued` of its \
                            events may already be stored. Resend the same body unchanged, with the same key, after \
                            `Retry-After` seconds: every event keeps its `event_id` (the one sent, or the one derived \
                            from the event and the key), so nothing is counted twice.",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": error(),
        },
    });
    for (status, answer) in own.as_object().into_iter().flatten() {
        refusals[status] = answer.clone();
    }
    refusals
}

fn operation(value: Value) -> Operation {
    // The values below are written to the shape utoipa reads.
    serde_json::from_value(value).unwrap_or_else(|e| panic!("an ingest operation does not parse: {e}"))
}

/// `POST /api/events`.
pub fn post_event(limits: &IngestConfig) -> Operation {
    let mut responses = refusals(limits);
    responses["202"] = json!({"description": "the event is in Kafka", "content": json_content(schema_ref("Accepted"))});
    operation(json!({
        "tags": ["ingest"],
        "summary": "track one playback event",
        "description": "Validates the event, stamps `received_at`, and answers 202 once Kafka has it. \
                        An event without `event_id` gets one derived from its fields as sent and the API key \
                        (a UUIDv8 from SHA-256; `received_at` is not part of it), so sending the same event again \
                        yields the same id and it is counted once. `Content-Encoding: gzip` is accepted.",
        "operationId": "post_event",
        "security": service_kit::auth::openapi_security(crate::CREDENTIALS),
        "requestBody": {"required": true, "content": json_content(schema_ref("Event"))},
        "responses": responses,
    }))
}

/// `POST /api/events/batch`.
pub fn post_batch(limits: &IngestConfig) -> Operation {
    let mut responses = refusals(limits);
    responses["202"] = json!({
        "description": "the valid events are in Kafka; invalid ones are listed in `rejected` by position",
        "content": json_content(schema_ref("BatchReport")),
    });
    operation(json!({
        "tags": ["ingest"],
        "summary": "track a batch of playback events",
        "description": format!(
            "A JSON array of 1 to {} events (or `application/x-ndjson`, one event per line). \
             Each event is validated on its own: the valid ones are stored and the invalid ones \
             reported, so one bad event loses nothing else; a batch with no valid event is answered 400. \
             An event without `event_id` gets one derived from its fields as sent and the API key, so \
             resending the same body yields the same ids: retrying after a 503 or a lost answer counts \
             nothing twice. Two events of one batch with the same `event_id`, sent or derived (identical \
             events without one), are one event: the later one is refused by index (`duplicate_event_id`). \
             `Content-Encoding: gzip` is accepted.",
            limits.max_batch_events
        ),
        "operationId": "post_batch",
        "security": service_kit::auth::openapi_security(crate::CREDENTIALS),
        "requestBody": {"required": true, "content": json_content(schema_ref("Batch"))},
        "responses": responses,
    }))
}

/// `GET /api/openapi.json`.
pub fn get_document() -> Operation {
    operation(json!({
        "tags": ["operations"],
        "summary": "this document",
        "operationId": "openapi_document",
        "responses": {"200": {"description": "the OpenAPI 3 document of this service", "content": json_content(json!({"type": "object"}))}},
    }))
}

/// The component schemas: the event, the batch, the answers.
fn schemas(limits: &IngestConfig) -> Value {
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let uuid = || json!({"type": "string", "format": "uuid"});
    json!({
        "Event": client_event(),
        "Batch": {
            "type": "array",
            "minItems": 1,
            "maxItems": limits.max_batch_events,
            "items": schema_ref("Event"),
        },
        "Accepted": {
            "type": "object",
            "properties": {
                "accepted": {"type": "integer", "const": 1},
                "event_ids": {"type": "array", "items": uuid(), "minItems": 1, "maxItems": 1},
            },
            "required": ["accepted", "event_ids"],
        },
        "BatchReport": {
            "type": "object",
            "properties": {
                "accepted": {"type": "integer", "minimum": 0},
                "event_ids": {"type": "array", "items": uuid(), "description": "of the accepted events, in batch order"},
                "rejected": {"type": "array", "items": schema_ref("Rejection"), "description": "the first invalid events, by position: at most 100 problems in all"},
                "rejected_count": {"type": "integer", "minimum": 0, "description": "every invalid event, listed or not"},
            },
            "required": ["accepted", "event_ids", "rejected", "rejected_count"],
        },
        "Rejection": {
            "type": "object",
            "properties": {
                "index": {"type": "integer", "minimum": 0, "description": "0-based position in the batch"},
                "errors": {"type": "array", "items": schema_ref("ValidationError")},
            },
            "required": ["index", "errors"],
        },
        "ValidationError": {
            "type": "object",
            "properties": {
                "field": {"type": "string", "description": "dotted path, e.g. properties.position_seconds; $ for the whole body"},
                "code": {"type": "string", "enum": codes},
                "message": {"type": "string"},
            },
            "required": ["field", "code", "message"],
        },
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string", "description": "stable snake_case code"},
                "message": {"type": "string"},
                "errors": {"type": "array", "items": schema_ref("ValidationError"), "maxItems": events_model::limits::MAX_REPORTED_ERRORS, "description": "an invalid single event's problems (the first ones)"},
                "limit": {"type": ["integer", "string"], "description": "the limit a 413 exceeded (a number), or the name of the rate limit a 429 exceeded"},
                "accepted": {"type": "integer", "const": 0},
                "event_ids": {"type": "array", "maxItems": 0},
                "rejected": {"type": "array", "items": schema_ref("Rejection"), "description": "a batch with no valid event: the first events' problems, at most 100 in all"},
                "rejected_count": {"type": "integer", "minimum": 0, "description": "a batch with no valid event: every event"},
                "retry_after_seconds": {"type": "integer"},
                "queued": {"type": "integer", "minimum": 0, "description": "a 503: events of the request Kafka acknowledged (stored)"},
                "not_queued": {"type": "integer", "minimum": 0, "description": "a 503: events Kafka did not acknowledge (refused, unanswered or not sent; some may still be stored)"},
                "resend_same_body": {"type": "boolean", "const": true, "description": "a 503: the whole body may be resent unchanged with the same key; every event keeps its event_id (sent, or derived from the event and the key), so events already stored are counted once"},
            },
            "required": ["error", "message"],
        },
    })
}

/// The whole document for `routes` (which should include the operational ones).
pub fn document(routes: &Routes, limits: &IngestConfig) -> Value {
    let info = InfoBuilder::new()
        .title(crate::SERVICE)
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some("The write API: players send playback events, one or a batch."))
        .build();
    let doc = OpenApiBuilder::new().info(info).paths(routes.paths()).build();
    let mut doc = serde_json::to_value(doc).unwrap_or_else(|e| panic!("the document does not serialise: {e}"));
    doc["components"] = json!({
        "schemas": schemas(limits),
        "securitySchemes": service_kit::auth::openapi_security_schemes(crate::CREDENTIALS),
    });
    doc["tags"] = json!([
        {"name": "ingest", "description": "playback events in"},
        {"name": "operations", "description": "liveness, readiness, metrics"},
    ]);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_keep_their_request_bodies_and_answers() {
        let limits = IngestConfig::default();
        let op = serde_json::to_value(post_batch(&limits)).unwrap();
        assert_eq!(op["requestBody"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Batch");
        for status in ["202", "400", "413", "415", "503"] {
            assert!(op["responses"][status].is_object(), "{status}: {op}");
        }
        let single = serde_json::to_value(post_event(&limits)).unwrap();
        assert_eq!(
            single["responses"]["202"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Accepted"
        );
    }

    #[test]
    fn the_batch_limit_is_the_configured_one() {
        let limits = IngestConfig { max_batch_events: 7, ..IngestConfig::default() };
        let doc = document(&Routes::new(), &limits);
        assert_eq!(doc["components"]["schemas"]["Batch"]["maxItems"], 7);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    }
}
