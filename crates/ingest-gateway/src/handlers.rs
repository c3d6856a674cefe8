//! `POST /api/events`, `POST /api/events/batch` and the routes table.
//!
//! A request is read and decoded ([`crate::body`]), every event validated by
//! `events-model` with `received_at` = now and the caller's key (an event
//! without `event_id` gets one derived from its fields and the key, so a
//! resent body yields the same ids), the valid ones produced to Kafka, and
//! 202 answered only once Kafka acknowledged all of them. Otherwise the 503
//! says how many Kafka acknowledged and that the same body may be resent.

use std::{borrow::Cow, collections::HashMap};

use actix_web::{
    HttpRequest, HttpResponse, ResponseError as _,
    http::header::{self, HeaderName},
    web,
};
use chrono::Utc;
use events_model::{Arrival, ErrorCode, Event, ValidationErrors};
use service_kit::{auth::Caller, rate::KeyedLimit, routes::Routes};
use utoipa::openapi::HttpMethod;

use crate::{
    body::{self, BodyFormat},
    config::IngestConfig,
    error::IngestError,
    metrics::{self, Endpoint, InFlight, Tally},
    openapi,
    producer::{EventProducer, ProduceError, ProduceFailure},
    report::{Rejections, SingleAccepted},
};

/// What the handlers share.
pub struct AppState {
    pub producer: EventProducer,
    pub limits: IngestConfig,
    /// The server's body deadline (`http.request_body_timeout`), named in the 408.
    pub body_timeout: std::time::Duration,
    /// `ingest.events_per_second_per_key`, by key id.
    pub events_per_key: KeyedLimit<String>,
}

/// The ingest API's routes table: each route with its OpenAPI operation.
pub fn routes(limits: &IngestConfig) -> Routes {
    Routes::new()
        .described(HttpMethod::Post, "/api/events", openapi::post_event(limits), || web::post().to(post_event))
        .described(HttpMethod::Post, "/api/events/batch", openapi::post_batch(limits), || web::post().to(post_batch))
        .described(HttpMethod::Get, "/api/openapi.json", openapi::get_document(), || web::get().to(openapi_document))
}

/// The served document, built once from the routes and the limits.
struct Document(serde_json::Value);

/// Mounts [`routes`], a JSON 404 for unknown paths, and the document.
pub fn configure(state: web::Data<AppState>) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    let routes = routes(&state.limits);
    let document = openapi::document(&routes.clone().merge(service_kit::ops::operational_routes()), &state.limits);
    let document = web::Data::new(Document(document));
    move |cfg| {
        cfg.app_data(state.clone()).app_data(document.clone());
        routes.register(cfg);
        cfg.default_service(web::to(service_kit::routes::not_found));
    }
}

async fn openapi_document(document: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok().json(&document.0)
}

async fn post_event(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let _in_flight = InFlight::enter();
    finish(Endpoint::Single, single_event(&req, payload, &state).await)
}

async fn post_batch(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let _in_flight = InFlight::enter();
    finish(Endpoint::Batch, batch(&req, payload, &state).await)
}

async fn single_event(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Result<HttpResponse, IngestError> {
    let (_, bytes) = read_body(req, payload, &state.limits, false, state.body_timeout).await?;
    let value = body::single(&bytes)?;
    let mut tally = Tally::default();
    let caller = Caller::of(req);
    let arrival = Arrival { received_at: Utc::now(), key_id: caller.as_deref().map(|key| key.id.as_str()) };
    let validated =
        Event::from_client_value(value, arrival).and_then(|event| body::within_lateness(event, state.limits.lateness));
    match &validated {
        Ok(event) => tally.valid(event.event_type),
        Err(errors) => tally.invalid(errors),
    }
    tally.record();
    let event = validated.map_err(IngestError::InvalidEvent)?;

    take_events(req, state, 1)?;
    produce(state, std::slice::from_ref(&event)).await?;
    metrics::accepted(1);
    Ok(HttpResponse::Accepted().json(SingleAccepted { accepted: 1, event_ids: [event.event_id] }))
}

async fn batch(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Result<HttpResponse, IngestError> {
    let (format, bytes) = read_body(req, payload, &state.limits, true, state.body_timeout).await?;
    let raw_events = body::batch(&bytes, format, state.limits.max_batch_events)?;

    let caller = Caller::of(req);
    let arrival = Arrival { received_at: Utc::now(), key_id: caller.as_deref().map(|key| key.id.as_str()) };
    let mut tally = Tally::default();
    let mut events = Vec::with_capacity(raw_events.len());
    let mut rejected = Rejections::default();
    // Where each accepted event_id first appeared in this batch. The rule is
    // the same for sent and derived ids: two events without `event_id` that
    // are equal in every field have the same derived id, are one event, and
    // the second is refused here, so `accepted` counts what will be counted.
    let mut first_index: HashMap<uuid::Uuid, usize> = HashMap::with_capacity(raw_events.len());
    for (index, raw) in raw_events.into_iter().enumerate() {
        match raw.validate(arrival).and_then(|event| body::within_lateness(event, state.limits.lateness)) {
            Ok(event) => {
                if let Some(first) = first_index.get(&event.event_id) {
                    let errors = ValidationErrors::single(
                        "event_id",
                        ErrorCode::DuplicateEventId,
                        format!(
                            "event {first} of this batch has the same event_id (as sent, or derived from identical \
                             fields when none was sent); each is stored once"
                        ),
                    );
                    tally.invalid(&errors);
                    rejected.push(index, errors);
                    continue;
                }
                first_index.insert(event.event_id, index);
                tally.valid(event.event_type);
                events.push(event);
            }
            Err(errors) => {
                tally.invalid(&errors);
                rejected.push(index, errors);
            }
        }
    }
    tally.record();
    if events.is_empty() {
        return Err(IngestError::AllInvalid(rejected.report(Vec::new())));
    }

    take_events(req, state, events.len())?;
    produce(state, &events).await?;
    metrics::accepted(events.len());
    let event_ids = events.iter().map(|e| e.event_id).collect();
    Ok(HttpResponse::Accepted().json(rejected.report(event_ids)))
}

/// Takes `count` events of the caller's per-second budget (checked once the
/// batch is validated, so refused events cost nothing).
fn take_events(req: &HttpRequest, state: &AppState, count: usize) -> Result<(), IngestError> {
    let Some(key) = Caller::of(req) else { return Ok(()) };
    let n = u32::try_from(count).unwrap_or(u32::MAX);
    state
        .events_per_key
        .check(&key.id, n, &key.name)
        .map_err(|limited| IngestError::RateLimited { limited, events: count })
}

/// Checks the headers, then reads and decodes the body within the size limit.
async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limits: &IngestConfig,
    allow_ndjson: bool,
    body_timeout: std::time::Duration,
) -> Result<(BodyFormat, web::Bytes), IngestError> {
    let format = body::body_format(header_text(req, header::CONTENT_TYPE).as_deref(), allow_ndjson)?;
    let encoding = body::content_encoding(header_text(req, header::CONTENT_ENCODING).as_deref())?;
    let declared = header_text(req, header::CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok());
    let raw = body::read_limited(payload, declared, limits.max_body_bytes, body_timeout).await?;
    Ok((format, body::decode(raw, encoding, limits.max_body_bytes)?))
}

fn header_text(req: &HttpRequest, name: HeaderName) -> Option<Cow<'_, str>> {
    req.headers().get(name).map(|v| String::from_utf8_lossy(v.as_bytes()))
}

async fn produce(state: &AppState, events: &[Event]) -> Result<(), IngestError> {
    let Err(ProduceFailure { error, acknowledged, events }) = state.producer.produce(events).await else {
        return Ok(());
    };
    tracing::warn!(
        topic = state.producer.topic(),
        events,
        acknowledged,
        error = %error,
        "kafka did not acknowledge every event; answering 503"
    );
    let retry_after = state.limits.retry_after_secs();
    Err(match error {
        ProduceError::QueueFull => IngestError::KafkaQueueFull { retry_after, events, queued: acknowledged },
        other => {
            IngestError::KafkaUnavailable { reason: other.client_reason(), retry_after, events, queued: acknowledged }
        }
    })
}

/// Turns the outcome into the answer, counting refusals and the request.
fn finish(endpoint: Endpoint, outcome: Result<HttpResponse, IngestError>) -> HttpResponse {
    let response = match outcome {
        Ok(response) => response,
        Err(error) => {
            if let Some((reason, events)) = error.rejected_events() {
                metrics::rejected(reason, events);
            }
            tracing::debug!(endpoint = endpoint.as_str(), code = error.code(), error = %error, "request refused");
            error.error_response()
        }
    };
    metrics::request(endpoint, response.status().as_u16());
    response
}
