//! The OpenAPI 3.1 document served at `/api/openapi.json`: the hub's routes
//! table ([`crate::routes::routes`]) and the operational endpoints, and the
//! WebSocket protocol of `GET /ws` ([`crate::protocol`]) as JSON Schemas under
//! `components.schemas`: every server message (`ServerMessage`, one of
//! `RealtimeMetricsMessage`, `TopVideosMessage`, `MetricsHistoryMessage`,
//! `AnalyticsEventMessage`, `SubscribedMessage`, `ErrorMessage`) and every
//! client message (`ClientMessage`, one of `SubscribeMessage`,
//! `UnsubscribeMessage`), with the limits this instance runs with.
//!
//! [`crate::protocol::parse_client_message`] is the authority on client
//! messages; the schemas say the same thing, so a message they admit is one
//! the hub accepts and one they refuse is refused (the tests below check
//! both ways). One rule is not expressible and is stated in a description
//! instead: a message is at most [`MAX_CLIENT_MESSAGE_BYTES`] bytes.

use events_model::{EventType, limits::MAX_ID_CHARS, schema::client_event};
use serde_json::{Value, json};
use service_kit::routes::Routes;
use utoipa::{
    PartialSchema as _,
    openapi::{InfoBuilder, OpenApiBuilder, path::Operation},
};

use crate::{
    HubConfig,
    protocol::{
        ANALYTICS_EVENT, ERROR, MAX_CLIENT_MESSAGE_BYTES, MAX_SUBSCRIBED_VIDEOS, METRICS_HISTORY, REALTIME_METRICS,
        SUBSCRIBED, TOP_VIDEOS,
    },
    window::RealtimeMetrics,
};

/// The server messages: `type` and the component schema of the message.
pub const SERVER_MESSAGES: [(&str, &str); 6] = [
    (REALTIME_METRICS, "RealtimeMetricsMessage"),
    (TOP_VIDEOS, "TopVideosMessage"),
    (METRICS_HISTORY, "MetricsHistoryMessage"),
    (ANALYTICS_EVENT, "AnalyticsEventMessage"),
    (SUBSCRIBED, "SubscribedMessage"),
    (ERROR, "ErrorMessage"),
];

/// The client messages: `type` and the component schema of the message.
pub const CLIENT_MESSAGES: [(&str, &str); 2] =
    [("subscribe", "SubscribeMessage"), ("unsubscribe", "UnsubscribeMessage")];

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn operation(value: Value) -> Operation {
    // The values below are written to the shape utoipa reads.
    serde_json::from_value(value).unwrap_or_else(|e| panic!("a hub operation does not parse: {e}"))
}

/// `GET /ws`: the handshake, its answers, and where the messages are described.
pub fn websocket(config: &HubConfig) -> Operation {
    let header = |name: &str, schema: Value, description: &str| json!({"name": name, "in": "header", "required": true, "schema": schema, "description": description});
    let server: Vec<String> = SERVER_MESSAGES.iter().map(|(kind, schema)| format!("`{kind}` ({schema})")).collect();
    let client: Vec<String> = CLIENT_MESSAGES.iter().map(|(kind, schema)| format!("`{kind}` ({schema})")).collect();
    let description = format!(
        "Upgrades to a WebSocket (RFC 6455); no query parameters. Every message either way is a JSON text frame \
         `{{\"type\": …, \"payload\": …}}`.\n\n\
         Server → client: `#/components/schemas/ServerMessage`, one of {server}. On connect: `metrics_history`, \
         then the latest `realtime_metrics` and `top_videos`; then both every metrics interval, an \
         `analytics_event` for each ingested event that matches the client's filter (every event until it \
         subscribes; sampled above {per_sec} events a second, see `sample_rate`), and one reply (`subscribed` or \
         `error`) to each client message.\n\n\
         Client → server: `#/components/schemas/ClientMessage`, one of {client}; at most \
         {MAX_CLIENT_MESSAGE_BYTES} bytes, unfragmented text. A message the hub cannot use (malformed JSON, \
         unknown type or field, a binary or fragmented frame) is answered with `error`, and the connection and \
         the previous filter stay; a frame over {MAX_CLIENT_MESSAGE_BYTES} bytes closes the connection (1002, \
         \"protocol error\").\n\n\
         The server pings; a client it has heard nothing from (pongs included) for the client timeout is \
         closed (1008, \"keepalive timeout\"); on shutdown every client gets 1001 (\"server shutting down\").",
        server = server.join(", "),
        client = client.join(", "),
        per_sec = config.client_max_events_per_sec,
    );
    operation(json!({
        "tags": ["realtime"],
        "summary": "the live feed: realtime metrics and ingested events over a websocket",
        "description": description,
        "operationId": "websocket",
        "parameters": [
            header("Upgrade", json!({"type": "string", "enum": ["websocket"]}), "`websocket` (any case)"),
            header("Connection", json!({"type": "string", "enum": ["Upgrade"]}), "`Upgrade` (any case)"),
            header(
                "Sec-WebSocket-Version",
                json!({"type": "string", "enum": ["13", "8", "7"]}),
                "13 (RFC 6455); 8 and 7 are accepted too",
            ),
            header(
                "Sec-WebSocket-Key",
                json!({"type": "string"}),
                "the client's nonce (RFC 6455: 16 random bytes, base64); the hub requires it and does not read it",
            ),
        ],
        "responses": {
            "101": {
                "description": "switching protocols: the connection is a websocket from now on (messages: \
                                `ServerMessage` and `ClientMessage` in components.schemas)",
                "headers": {
                    "Upgrade": {"schema": {"type": "string", "enum": ["websocket"]}},
                    "Sec-WebSocket-Accept": {"schema": {"type": "string"}, "description": "RFC 6455's answer to the key"},
                },
            },
            "400": {
                "description": "not a websocket handshake (a missing or wrong Upgrade, Connection, \
                                Sec-WebSocket-Version or Sec-WebSocket-Key header); no body, the reason phrase \
                                names the problem",
            },
            "403": {
                "description": "the handshake's `Origin` is a web page of another origin than the hub's own and \
                                not in `http.cors_allowed_origins` (a handshake without `Origin`, from a player \
                                or a tool, is not checked)",
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {"error": {"type": "string", "const": "origin_not_allowed"}, "message": {"type": "string"}},
                    "required": ["error", "message"],
                }}},
            },
            "503": {
                "description": format!(
                    "{} websocket connections are open (the configured maximum); retry after `Retry-After` seconds",
                    config.max_connections
                ),
                "headers": {"Retry-After": {"schema": {"type": "integer", "const": 5}}},
                "content": json_content(schema_ref("ConnectionsFull")),
            },
        },
        "x-websocket-messages": {
            "server": schema_ref("ServerMessage"),
            "client": schema_ref("ClientMessage"),
        },
    }))
}

/// `GET /api/metrics/realtime`.
pub fn realtime() -> Operation {
    operation(json!({
        "tags": ["realtime"],
        "summary": "the realtime metrics of the window at the last tick",
        "description": "The same object as query-api's `GET /api/metrics/realtime`: the last pushed \
                        `realtime_metrics` payload, computed from this hub's window at the last tick (every \
                        `metrics_interval`, 1 s by default), so at most one interval old; `as_of` is the end of \
                        its window. A request computes nothing. Takes no query parameters.",
        "operationId": "realtime_metrics",
        "responses": {
            "200": {"description": "the figures", "content": json_content(schema_ref("RealtimeMetrics"))},
            "400": {
                "description": "a query parameter (this endpoint takes none); `field` names the first",
                "content": json_content(schema_ref("Error")),
            },
        },
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

/// `GET {path}` of one embedded dashboard file.
pub fn asset(path: &str, content_type: &str, cache_control: &str) -> Operation {
    let html = content_type.starts_with("text/html");
    let text = |description: &str| json!({"schema": {"type": "string"}, "description": description});
    let mut headers = json!({
        "ETag": text("strong, of the file's bytes"),
        "Cache-Control": {"schema": {"type": "string", "const": cache_control}},
        "X-Content-Type-Options": {"schema": {"type": "string", "const": "nosniff"}},
        "Referrer-Policy": {"schema": {"type": "string", "const": "no-referrer"}},
        "X-Frame-Options": {"schema": {"type": "string", "const": "DENY"}},
    });
    if html {
        headers["Content-Security-Policy"] =
            text("no inline script or style, nothing from elsewhere; WebSocket to this host only");
    }
    let (summary, operation_id) = if path == "/" {
        ("the live dashboard".to_owned(), "dashboard".to_owned())
    } else {
        let name = path.trim_start_matches("/assets/");
        (format!("the dashboard's {name}"), format!("asset_{}", name.replace(['.', '-'], "_")))
    };
    operation(json!({
        "tags": ["dashboard"],
        "summary": summary,
        "operationId": operation_id,
        "parameters": [{
            "name": "If-None-Match",
            "in": "header",
            "required": false,
            "schema": {"type": "string"},
            "description": "ETags (comma-separated) or `*`; 304 when one is the file's",
        }],
        "responses": {
            "200": {
                "description": "the file, embedded in the binary",
                "headers": headers,
                "content": {content_type: {"schema": {"type": "string"}}},
            },
            "304": {"description": "not modified: `If-None-Match` names the file's ETag", "headers": {"ETag": text("the file's")}},
        },
    }))
}

/// A message `{"type": kind, "payload": payload}` (both required, nothing else).
fn message(kind: &str, description: &str, payload: Value) -> Value {
    json!({
        "type": "object",
        "description": description,
        "properties": {"type": {"type": "string", "const": kind}, "payload": payload},
        "required": ["type", "payload"],
        "additionalProperties": false,
    })
}

/// `oneOf` the component schemas of `messages`, told apart by `type`.
fn one_of(description: &str, messages: &[(&str, &str)]) -> Value {
    let mapping: serde_json::Map<String, Value> = messages
        .iter()
        .map(|(kind, name)| ((*kind).to_owned(), json!(format!("#/components/schemas/{name}"))))
        .collect();
    json!({
        "description": description,
        "oneOf": messages.iter().map(|(_, name)| schema_ref(name)).collect::<Vec<_>>(),
        "discriminator": {"propertyName": "type", "mapping": mapping},
    })
}

/// The event as stored (the Kafka wire object, `events_model::Event`'s
/// serialisation): the client event's fields as the validator left them.
fn stored_event() -> Value {
    let client = client_event();
    let field = |name: &str| client["properties"][name].clone();
    let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    let time = |description: &str| json!({"type": "string", "format": "date-time", "description": description});
    json!({
        "type": "object",
        "description": "an ingested event as stored: validated, with its id, session and receive time",
        "properties": {
            "event_id": {"type": "string", "format": "uuid"},
            "event_type": {"type": "string", "enum": names},
            "user_id": field("user_id"),
            "session_id": {"type": "string", "minLength": 1, "description": "the client's, or derived from user_id"},
            "video_id": field("video_id"),
            "timestamp": time("client time (the receive time when the client sent none), UTC, milliseconds"),
            "received_at": time("when the ingest-gateway received it, UTC, milliseconds"),
            // The client's `properties` object, without its null alternative.
            "properties": client["properties"]["properties"]["anyOf"][0].clone(),
            "metadata": field("metadata"),
        },
        "required": [
            "event_id", "event_type", "user_id", "session_id", "video_id", "timestamp", "received_at",
            "properties", "metadata",
        ],
        "additionalProperties": false,
    })
}

/// A video id as the ingest API takes it (the hub checks subscribed ids the same way).
fn video_id() -> Value {
    let mut schema = client_event()["properties"]["video_id"].clone();
    schema["description"] =
        json!(format!("a video id as the ingest API takes it: 1 to {MAX_ID_CHARS} characters matching `pattern`"));
    schema
}

/// The component schemas: the realtime answer, the protocol, the errors.
fn schemas(config: &HubConfig) -> Value {
    let realtime_metrics = serde_json::to_value(RealtimeMetrics::schema())
        .unwrap_or_else(|e| panic!("the realtime metrics schema does not serialise: {e}"));
    let event_type =
        || json!({"type": "string", "enum": EventType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>()});
    let list = |items: Value, description: &str| {
        json!({
            "type": ["array", "null"],
            "items": items,
            "description": description,
        })
    };
    let mut video_ids = list(
        video_id(),
        &format!(
            "the videos whose events are sent; at most {MAX_SUBSCRIBED_VIDEOS}; missing, null or empty: every video"
        ),
    );
    video_ids["maxItems"] = json!(MAX_SUBSCRIBED_VIDEOS);
    json!({
        "RealtimeMetrics": realtime_metrics,
        "TopVideo": {
            "type": "object",
            "properties": {
                "video_id": {"type": "string"},
                "viewers": {"type": "integer", "minimum": 1, "description": "concurrent viewers of the video"},
            },
            "required": ["video_id", "viewers"],
            "additionalProperties": false,
        },
        "StoredEvent": stored_event(),
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string", "description": "stable snake_case code"},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "the query parameter refused"},
            },
            "required": ["error", "message"],
        },
        "ConnectionsFull": {
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
            "additionalProperties": false,
        },
        "RealtimeMetricsMessage": message(
            REALTIME_METRICS,
            "the realtime metrics of the window ending `as_of`; every metrics interval, and on connect",
            schema_ref("RealtimeMetrics"),
        ),
        "TopVideosMessage": message(
            TOP_VIDEOS,
            "the videos with the most concurrent viewers (ties by video_id); right after each realtime_metrics",
            json!({"type": "array", "items": schema_ref("TopVideo"), "maxItems": config.top_videos}),
        ),
        "MetricsHistoryMessage": message(
            METRICS_HISTORY,
            "the realtime_metrics payloads this hub computed lately, oldest first; once, on connect",
            json!({"type": "array", "items": schema_ref("RealtimeMetrics"), "maxItems": config.history_len()}),
        ),
        "AnalyticsEventMessage": {
            "type": "object",
            "description": "an ingested event matching the client's filter",
            "properties": {
                "type": {"type": "string", "const": ANALYTICS_EVENT},
                "sample_rate": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 1,
                    "description": format!(
                        "the share of the matching events this client is sent: 1 means every one, 1/k one of \
                         every k (chosen by a hash of event_id, the same on every replica), once more than {} \
                         match a second",
                        config.client_max_events_per_sec
                    ),
                },
                "payload": schema_ref("StoredEvent"),
            },
            "required": ["type", "sample_rate", "payload"],
            "additionalProperties": false,
        },
        "SubscribedMessage": message(
            SUBSCRIBED,
            "the reply to subscribe and unsubscribe: the filter now in force (empty lists: every value)",
            json!({
                "type": "object",
                "properties": {
                    "video_ids": {
                        "type": "array",
                        "items": video_id(),
                        "maxItems": MAX_SUBSCRIBED_VIDEOS,
                        "uniqueItems": true,
                        "description": "sorted",
                    },
                    "event_types": {"type": "array", "items": event_type(), "uniqueItems": true},
                },
                "required": ["video_ids", "event_types"],
                "additionalProperties": false,
            }),
        ),
        "ErrorMessage": message(
            ERROR,
            "the reply to a client message the hub could not use; the connection and the previous filter stay",
            json!({
                "type": "object",
                "properties": {"message": {"type": "string", "description": "what is wrong, naming the field"}},
                "required": ["message"],
                "additionalProperties": false,
            }),
        ),
        "ServerMessage": one_of("every message the hub sends on /ws", &SERVER_MESSAGES),
        "SubscribeMessage": {
            "type": "object",
            "description": format!(
                "sets the client's filter of analytics_event (replacing the previous one); answered with \
                 subscribed. At most {MAX_CLIENT_MESSAGE_BYTES} bytes."
            ),
            "properties": {
                "type": {"type": "string", "const": "subscribe"},
                "payload": {
                    "type": ["object", "null"],
                    "description": "missing or null: every event",
                    "properties": {
                        "video_ids": video_ids,
                        "event_types": list(event_type(), "the event types sent; missing, null or empty: every type"),
                    },
                    "additionalProperties": false,
                },
            },
            "required": ["type"],
            "additionalProperties": false,
        },
        "UnsubscribeMessage": {
            "type": "object",
            "description": format!(
                "resets the filter to every event; answered with subscribed. A payload is ignored. At most \
                 {MAX_CLIENT_MESSAGE_BYTES} bytes."
            ),
            "properties": {
                "type": {"type": "string", "const": "unsubscribe"},
                "payload": {"description": "ignored"},
            },
            "required": ["type"],
            "additionalProperties": false,
        },
        "ClientMessage": one_of(
            &format!("every message a client may send on /ws, as one JSON text frame of at most {MAX_CLIENT_MESSAGE_BYTES} bytes"),
            &CLIENT_MESSAGES,
        ),
    })
}

/// The whole document for `routes` (which should include the operational ones).
pub fn document(routes: &Routes, config: &HubConfig) -> Value {
    let info = InfoBuilder::new()
        .title(crate::SERVICE)
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The live view: realtime metrics and the ingested events pushed over the WebSocket `/ws` (its \
             messages: `ServerMessage` and `ClientMessage` in components.schemas), the realtime metrics on \
             request, and the dashboard.",
        ))
        .build();
    let doc = OpenApiBuilder::new().info(info).paths(routes.paths()).build();
    let mut doc = serde_json::to_value(doc).unwrap_or_else(|e| panic!("the document does not serialise: {e}"));
    doc["components"] = json!({
        "schemas": schemas(config),
        "securitySchemes": service_kit::auth::openapi_security_schemes(crate::CREDENTIALS),
    });
    // The protected operations: the token and the answers refusing one.
    let error = json!({
        "type": "object",
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        "required": ["error", "message"],
    });
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            if crate::rules(&actix_web::http::Method::GET, path).is_none() {
                continue;
            }
            if let Some(get) = item.get_mut("get") {
                get["security"] = service_kit::auth::openapi_security(crate::CREDENTIALS);
                for (status, answer) in service_kit::auth::openapi_refusals(&error).as_object().into_iter().flatten() {
                    if get["responses"].get(status).is_none() {
                        get["responses"][status] = answer.clone();
                    }
                }
            }
        }
    }
    doc["tags"] = json!([
        {"name": "realtime", "description": "the live figures and events"},
        {"name": "dashboard", "description": "the page and its files"},
        {"name": "operations", "description": "liveness, readiness, metrics, this document"},
    ]);
    doc
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};
    use events_model::Event;

    use super::*;
    use crate::{
        feed::{FeedEvent, Subscription},
        protocol::{self, ClientMessage, parse_client_message},
        window::{TopVideo, as_of},
    };

    fn doc() -> Value {
        document(&Routes::new(), &HubConfig::default())
    }

    /// A validator of the component `name` of `doc` (draft 2020-12, formats checked).
    fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
        let schema = json!({"$ref": format!("#/components/schemas/{name}"), "components": doc["components"]});
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{name} is not a valid schema: {e}"))
    }

    fn errors(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
        validator.iter_errors(value).map(|e| format!("{} at {}", e, e.instance_path())).collect()
    }

    fn metrics(now_ms: u64, viewers: u64) -> RealtimeMetrics {
        RealtimeMetrics {
            concurrent_viewers: viewers,
            active_streams: viewers.min(3),
            bandwidth_gbps: 0.0215,
            events_per_second: 1.0 / 60.0,
            error_rate: 0.0667,
            window_seconds: 60,
            as_of: as_of(now_ms),
        }
    }

    fn events() -> Vec<Event> {
        let received_at = Utc.timestamp_millis_opt(1_764_278_000_250).unwrap();
        [
            json!({"event_type": "video_start", "user_id": "user_123", "session_id": "session_456",
                   "video_id": "video_789", "properties": {"quality": "720p", "device_type": "desktop"}}),
            json!({"event_type": "video_progress", "user_id": "user_1", "video_id": "v",
                   "timestamp": 1_764_277_999_000_i64, "properties": {"position_seconds": 12.5, "custom": [1, 2]},
                   "metadata": {"experiment": "b"}}),
            json!({"event_type": "video_error", "session_id": "s", "video_id": "v",
                   "event_id": "01936f5e-0000-7000-8000-000000000001",
                   "properties": {"error_code": "E1", "error_message": "line\nbreak", "fatal": true}}),
            json!({"event_type": "seek", "session_id": "s", "video_id": "v",
                   "properties": {"seek_from_seconds": 1, "seek_to_seconds": 30}}),
            json!({"event_type": "quality_change", "session_id": "s", "video_id": "v",
                   "properties": {"to_quality": "1080p", "bitrate_kbps": 4500}}),
        ]
        .into_iter()
        .map(|body| Event::from_value(body, received_at).unwrap())
        .collect()
    }

    /// Every message `protocol` produces, with the component it must match.
    fn server_messages() -> Vec<(&'static str, String)> {
        let now_ms = 1_764_278_000_000;
        let history = [metrics(now_ms - 2000, 1), metrics(now_ms - 1000, 2), metrics(now_ms, 0)];
        let top =
            [TopVideo { video_id: "video_789".into(), viewers: 3 }, TopVideo { video_id: "v".into(), viewers: 1 }];
        let mut messages = vec![
            ("RealtimeMetricsMessage", protocol::realtime_metrics(&metrics(now_ms, 8))),
            ("RealtimeMetricsMessage", protocol::realtime_metrics(&metrics(now_ms, 0))),
            ("TopVideosMessage", protocol::top_videos(&top)),
            ("TopVideosMessage", protocol::top_videos(&[])),
            ("MetricsHistoryMessage", protocol::metrics_history(&history)),
            ("MetricsHistoryMessage", protocol::metrics_history(&[])),
            ("SubscribedMessage", protocol::subscribed(&Subscription::default())),
        ];
        for event in events() {
            for rate in [1.0, 0.25, 1.0 / 3.0] {
                messages.push(("AnalyticsEventMessage", protocol::analytics_event(&FeedEvent::new(&event), rate)));
            }
        }
        for text in [
            r#"{"type":"subscribe","payload":{"video_ids":["v2","v1","v1"],"event_types":["seek","video_start"]}}"#,
            r#"{"type":"subscribe","payload":{"event_types":["video_error"]}}"#,
        ] {
            let Ok(ClientMessage::Subscribe(subscription)) = parse_client_message(text) else { panic!("{text}") };
            messages.push(("SubscribedMessage", protocol::subscribed(&subscription)));
        }
        for text in ["not json", r#"{"type":"hello"}"#, r#"{"type":"subscribe","payload":{"event_types":["x"]}}"#] {
            messages.push(("ErrorMessage", protocol::error(&parse_client_message(text).unwrap_err())));
        }
        messages
    }

    #[test]
    fn every_server_message_matches_its_schema_and_only_it() {
        let doc = doc();
        let any = validator(&doc, "ServerMessage");
        let each: Vec<(&str, jsonschema::Validator)> =
            SERVER_MESSAGES.iter().map(|&(_, name)| (name, validator(&doc, name))).collect();
        let produced = server_messages();
        for &(_, name) in &SERVER_MESSAGES {
            assert!(produced.iter().any(|(n, _)| *n == name), "no {name} is built by this test");
        }
        for (name, text) in produced {
            let value: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(errors(&any, &value), Vec::<String>::new(), "{text}");
            for (other, schema) in &each {
                assert_eq!(schema.is_valid(&value), *other == name, "{other} and {text}");
            }
            let kind = value["type"].as_str().unwrap();
            let mapped = &doc["components"]["schemas"]["ServerMessage"]["discriminator"]["mapping"][kind];
            assert_eq!(mapped, &json!(format!("#/components/schemas/{name}")));
        }
    }

    #[test]
    fn the_schemas_refuse_what_the_hub_never_sends() {
        let doc = doc();
        let any = validator(&doc, "ServerMessage");
        let now = protocol::realtime_metrics(&metrics(1_764_278_000_000, 1));
        let mut value: Value = serde_json::from_str(&now).unwrap();
        value["payload"]["as_of"] = json!("yesterday");
        assert!(!any.is_valid(&value), "as_of is a date-time");
        let event = protocol::analytics_event(&FeedEvent::new(&events()[0]), 0.5);
        let event: Value = serde_json::from_str(&event).unwrap();
        for (pointer, bad) in [
            ("/sample_rate", json!(0)),
            ("/sample_rate", json!(1.5)),
            ("/payload/event_id", json!("x")),
            ("/payload/received_at", json!(null)),
            ("/type", json!("event")),
        ] {
            let mut changed = event.clone();
            *changed.pointer_mut(pointer).unwrap() = bad;
            assert!(!any.is_valid(&changed), "{pointer}: {changed}");
        }
        let top_videos = validator(&doc, "TopVideosMessage");
        let many: Vec<TopVideo> =
            (0..=HubConfig::default().top_videos).map(|i| TopVideo { video_id: format!("v{i}"), viewers: 1 }).collect();
        let value: Value = serde_json::from_str(&protocol::top_videos(&many)).unwrap();
        assert!(!top_videos.is_valid(&value), "more than top_videos entries");
    }

    #[test]
    fn client_messages_validate_exactly_when_the_hub_accepts_them() {
        let doc = doc();
        let schema = validator(&doc, "ClientMessage");
        let long_id = "é".repeat(MAX_ID_CHARS);
        let too_long_id = "x".repeat(MAX_ID_CHARS + 1);
        let all: Vec<String> = (0..MAX_SUBSCRIBED_VIDEOS).map(|i| format!("v{i}")).collect();
        let too_many: Vec<String> = (0..=MAX_SUBSCRIBED_VIDEOS).map(|i| format!("v{i}")).collect();
        let types: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        let cases = [
            json!({"type": "subscribe", "payload": {"video_ids": ["v1", "v2"], "event_types": ["video_start", "seek"]}}),
            json!({"type": "subscribe"}),
            json!({"type": "subscribe", "payload": null}),
            json!({"type": "subscribe", "payload": {}}),
            json!({"type": "subscribe", "payload": {"video_ids": [], "event_types": null}}),
            json!({"type": "subscribe", "payload": {"video_ids": [long_id], "event_types": types}}),
            json!({"type": "subscribe", "payload": {"video_ids": ["v1", "v1"]}}),
            json!({"type": "subscribe", "payload": {"video_ids": all}}),
            json!({"type": "unsubscribe"}),
            json!({"type": "unsubscribe", "payload": {"anything": [1]}}),
            json!({"type": "unsubscribe", "payload": null}),
            // Refused:
            json!([1]),
            json!("subscribe"),
            json!({"payload": {}}),
            json!({"type": 7}),
            json!({"type": "hello"}),
            json!({"type": "Subscribe"}),
            json!({"type": "subscribe", "extra": 1}),
            json!({"type": "unsubscribe", "extra": 1}),
            json!({"type": "subscribe", "payload": []}),
            json!({"type": "subscribe", "payload": "all"}),
            json!({"type": "subscribe", "payload": {"video_id": ["v1"]}}),
            json!({"type": "subscribe", "payload": {"video_ids": "v1"}}),
            json!({"type": "subscribe", "payload": {"video_ids": [1]}}),
            json!({"type": "subscribe", "payload": {"video_ids": [null]}}),
            json!({"type": "subscribe", "payload": {"video_ids": [""]}}),
            json!({"type": "subscribe", "payload": {"video_ids": [too_long_id]}}),
            json!({"type": "subscribe", "payload": {"video_ids": ["a\u{7}b"]}}),
            json!({"type": "subscribe", "payload": {"video_ids": ["a\u{85}"]}}),
            json!({"type": "subscribe", "payload": {"video_ids": ["video\u{200B}1"]}}),
            json!({"type": "subscribe", "payload": {"video_ids": ["admin\u{202E}nimda"]}}),
            json!({"type": "subscribe", "payload": {"video_ids": too_many}}),
            json!({"type": "subscribe", "payload": {"event_types": ["video_stop"]}}),
            json!({"type": "subscribe", "payload": {"event_types": "seek"}}),
            json!({"type": "subscribe", "payload": {"event_types": [{}]}}),
        ];
        let (mut accepted, mut refused) = (0, 0);
        for case in cases {
            let parsed = parse_client_message(&case.to_string());
            let valid = schema.is_valid(&case);
            assert_eq!(
                valid,
                parsed.is_ok(),
                "{case}: the hub says {parsed:?}, the schema {:?}",
                errors(&schema, &case)
            );
            if valid {
                accepted += 1
            } else {
                refused += 1
            }
            if let Ok(message) = parsed {
                let kind = case["type"].as_str().unwrap();
                let name = CLIENT_MESSAGES.iter().find(|(k, _)| *k == kind).unwrap().1;
                assert!(validator(&doc, name).is_valid(&case), "{name}: {case}");
                assert_eq!(matches!(message, ClientMessage::Subscribe(_)), kind == "subscribe");
            }
        }
        // The last two refusals depend on events-model's id rule; the schema follows it either way.
        assert!(accepted == 11 && refused >= 22, "{accepted} accepted, {refused} refused");
    }

    #[test]
    fn the_websocket_operation_points_at_the_messages() {
        let config = HubConfig { max_connections: 7, top_videos: 4, ..HubConfig::default() };
        let op = serde_json::to_value(websocket(&config)).unwrap();
        for status in ["101", "400", "503"] {
            assert!(op["responses"][status].is_object(), "{status}: {op}");
        }
        assert!(op["responses"]["503"]["description"].as_str().unwrap().starts_with("7 "));
        assert_eq!(op["x-websocket-messages"]["server"]["$ref"], "#/components/schemas/ServerMessage");
        assert_eq!(op["x-websocket-messages"]["client"]["$ref"], "#/components/schemas/ClientMessage");
        let description = op["description"].as_str().unwrap();
        for (kind, name) in SERVER_MESSAGES.iter().chain(&CLIENT_MESSAGES) {
            assert!(description.contains(&format!("`{kind}` ({name})")), "{kind}: {description}");
        }
        let doc = document(&Routes::new(), &config);
        assert_eq!(doc["components"]["schemas"]["TopVideosMessage"]["properties"]["payload"]["maxItems"], 4);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document(&crate::routes::routes(&HubConfig::default()), &HubConfig::default());
        fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
            match value {
                Value::Object(map) => {
                    for (key, value) in map {
                        match (key.as_str(), value) {
                            ("$ref", Value::String(target)) => found.push(target),
                            _ => refs(value, found),
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 10, "{found:?}");
        for target in found {
            let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("{target} is not local"));
            assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
        }
        for name in doc["components"]["schemas"].as_object().unwrap().keys() {
            validator(&doc, name);
        }
    }
}
