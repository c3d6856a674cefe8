//! Why a request failed, and the JSON answer for each reason.
//!
//! Every error answer is `{"error": <code>, "message": <text>}`, plus `field`
//! when one input field is to blame. Internal causes are logged, never sent.

use actix_web::{HttpResponse, ResponseError, error::JsonPayloadError, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is invalid; `field` names the input at fault when there is one.
    #[error("{message}")]
    BadRequest { field: Option<String>, message: String },

    #[error("{0}")]
    NotFound(String),

    #[error("{0}")]
    UnsupportedMediaType(String),

    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },

    /// The body did not arrive within `http.request_body_timeout`.
    #[error("the request body did not arrive within the server's body timeout; send it at once")]
    RequestTimeout,

    /// A dependency (PostgreSQL, ClickHouse, Redis) cannot be reached.
    #[error("{dependency} is unavailable")]
    Unavailable { dependency: &'static str, cause: String },

    /// ClickHouse stopped the query at one of the limits of `limits` (config).
    #[error(
        "the query was stopped by its {limit} limit (query-api setting {setting}); ask for a shorter range or fewer groups"
    )]
    TooExpensive { limit: &'static str, setting: &'static str },

    /// Over a limit of the caller's key (`Retry-After` says when to retry).
    #[error("over this key's limit of {}; retry after {} s", .0.limit.replace('_', " "), .0.retry_after_secs())]
    RateLimited(service_kit::rate::Limited),

    /// Anything else; the cause is logged, the client only learns that it failed.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case code: `bad_request`, `not_found`,
    /// `unsupported_media_type`, `payload_too_large`, `unavailable`,
    /// `query_too_expensive`, `rate_limited`, `missing_credentials`,
    /// `invalid_credentials`, `insufficient_scope`, `internal`.
    pub error: &'static str,
    pub message: String,
    /// The input field at fault, for `bad_request`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest { field: Some(field.into()), message: message.into() }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::TooExpensive { .. } => "query_too_expensive",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn body(&self) -> ErrorBody {
        let field = match self {
            ApiError::BadRequest { field, .. } => field.clone(),
            _ => None,
        };
        ErrorBody { error: self.code(), message: self.to_string(), field }
    }

    /// The error for a JSON body actix could not read (wrong content type, too
    /// large, not JSON).
    pub fn from_json_payload(error: &JsonPayloadError) -> Self {
        match error {
            JsonPayloadError::ContentType => {
                ApiError::UnsupportedMediaType("the request body must be json (content-type: application/json)".into())
            }
            JsonPayloadError::OverflowKnownLength { limit, .. } | JsonPayloadError::Overflow { limit } => {
                ApiError::PayloadTooLarge { limit: *limit }
            }
            JsonPayloadError::Payload(payload) if service_kit::deadline::is_timeout(payload) => {
                ApiError::RequestTimeout
            }
            JsonPayloadError::Deserialize(e) => {
                ApiError::BadRequest { field: None, message: format!("request body is not valid json: {e}") }
            }
            other => ApiError::BadRequest { field: None, message: format!("cannot read the request body: {other}") },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } | ApiError::TooExpensive { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) => tracing::error!(error = format!("{cause:#}"), "request failed"),
            ApiError::Unavailable { dependency, cause } => {
                tracing::warn!(dependency, error = %cause, "dependency unavailable")
            }
            ApiError::TooExpensive { limit, .. } => tracing::warn!(limit, "query stopped at a limit"),
            ApiError::RateLimited(limited) => return limited.response(),
            _ => {}
        }
        HttpResponse::build(self.status_code()).json(self.body())
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        ApiError::Unavailable { dependency: "postgres", cause: error.to_string() }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> Self {
        let io_failure = std::error::Error::source(&error).is_some_and(|s| s.is::<std::io::Error>());
        if error.is_closed() || io_failure {
            ApiError::Unavailable { dependency: "postgres", cause: error.to_string() }
        } else {
            ApiError::Internal(anyhow::Error::new(error).context("postgres query failed"))
        }
    }
}

impl From<clickhouse::error::Error> for ApiError {
    /// ClickHouse out of reach is `Unavailable` (503), a query it stopped at
    /// a limit `TooExpensive` (503); anything else, such as a query the
    /// server rejected, is `Internal` (500).
    fn from(error: clickhouse::error::Error) -> Self {
        if let Some((limit, setting)) = server_error_code(&error.to_string()).and_then(limit_of_code) {
            return ApiError::TooExpensive { limit, setting };
        }
        match error {
            clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut => {
                ApiError::Unavailable { dependency: "clickhouse", cause: error.to_string() }
            }
            other => ApiError::Internal(anyhow::Error::new(other).context("clickhouse query failed")),
        }
    }
}

/// The ClickHouse exception code in an error text (`Code: 241. DB::Exception: …`).
fn server_error_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

/// The limit an exception code reports (ClickHouse `ErrorCodes.cpp`), with
/// the `limits` setting that sets it: 241 MEMORY_LIMIT_EXCEEDED, 158
/// TOO_MANY_ROWS, 307 TOO_MANY_BYTES, 159 TIMEOUT_EXCEEDED, 160 TOO_SLOW.
fn limit_of_code(code: u32) -> Option<(&'static str, &'static str)> {
    match code {
        241 => Some(("memory (max_memory_usage)", "limits.{metrics,custom}.max_memory_bytes")),
        158 | 307 => Some(("rows read (max_rows_to_read)", "limits.{metrics,custom}.max_rows_to_read")),
        159 | 160 => Some(("execution time (max_execution_time)", "limits.max_execution")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody as _;

    use super::*;

    fn answer(error: &ApiError) -> (u16, serde_json::Value) {
        let response = error.error_response();
        let status = response.status().as_u16();
        let bytes = response.into_body().try_into_bytes().unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn each_error_has_its_status_and_code() {
        let cases = [
            (ApiError::bad_field("title", "title is required"), 400, "bad_request"),
            (ApiError::NotFound("no video".into()), 404, "not_found"),
            (ApiError::UnsupportedMediaType("json only".into()), 415, "unsupported_media_type"),
            (ApiError::PayloadTooLarge { limit: 10 }, 413, "payload_too_large"),
            (ApiError::Unavailable { dependency: "postgres", cause: "refused".into() }, 503, "unavailable"),
            (
                ApiError::TooExpensive { limit: "memory", setting: "metrics.max_memory_bytes" },
                503,
                "query_too_expensive",
            ),
            (ApiError::Internal(anyhow::anyhow!("boom")), 500, "internal"),
        ];
        for (error, status, code) in cases {
            let (got_status, body) = answer(&error);
            assert_eq!(got_status, status, "{error}");
            assert_eq!(body["error"], code);
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        }
    }

    #[test]
    fn bad_request_names_the_field() {
        let (_, body) = answer(&ApiError::bad_field("duration_seconds", "must be greater than 0"));
        assert_eq!(body["field"], "duration_seconds");
        let (_, body) = answer(&ApiError::NotFound("x".into()));
        assert!(body.get("field").is_none(), "{body}");
    }

    #[test]
    fn internal_and_unavailable_causes_stay_out_of_the_answer() {
        let (_, body) = answer(&ApiError::Internal(anyhow::anyhow!("password=secret in connection string")));
        assert_eq!(body["message"], "internal error");
        let (_, body) = answer(&ApiError::Unavailable { dependency: "postgres", cause: "10.0.0.5 refused".into() });
        assert_eq!(body["message"], "postgres is unavailable");
    }

    #[test]
    fn clickhouse_limit_errors_name_the_limit() {
        let memory = clickhouse::error::Error::BadResponse(
            "Code: 241. DB::Exception: Memory limit (for query) exceeded: would use 3.73 GiB".into(),
        );
        let (status, body) = answer(&ApiError::from(memory));
        assert_eq!((status, body["error"].as_str()), (503, Some("query_too_expensive")));
        assert!(body["message"].as_str().unwrap().contains("max_memory_usage"), "{body}");
        let rows = clickhouse::error::Error::BadResponse("Code: 158. DB::Exception: Limit for rows exceeded".into());
        assert!(matches!(
            ApiError::from(rows),
            ApiError::TooExpensive { setting: "limits.{metrics,custom}.max_rows_to_read", .. }
        ));
        let time = clickhouse::error::Error::BadResponse(
            "Code: 159, e.displayText() = DB::Exception: Timeout exceeded".into(),
        );
        assert!(matches!(ApiError::from(time), ApiError::TooExpensive { setting: "limits.max_execution", .. }));
        let syntax = clickhouse::error::Error::BadResponse("Code: 62. DB::Exception: Syntax error".into());
        assert_eq!(answer(&ApiError::from(syntax)).0, 500);
    }
}
