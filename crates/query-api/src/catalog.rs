//! The video catalog in PostgreSQL (table `videos`): validation of what is
//! stored and every SQL statement that touches it, parameterised only.
//!
//! The metric endpoints read it through [`Catalog::video_for_metrics`] and
//! [`Catalog::categories_for_metrics`], which answer
//! [`CatalogRead::Unavailable`] instead of an error while PostgreSQL is down
//! (each read bounded by [`METRICS_READ_TIMEOUT`], then PostgreSQL left alone
//! for [`RETRY_AFTER`]): the metrics are answered from ClickHouse with the
//! catalog's fields marked unavailable. The catalog endpoints themselves
//! answer 503.

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::{breaker::Breaker, error::ApiError};

/// How long a metric answer waits for its catalog read before it is given
/// without it.
pub const METRICS_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// After a failed catalog read, metric answers skip the catalog this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

const UNAVAILABLE: &str = "analytics_service_catalog_unavailable_total";

/// Registers the counter's description (and makes it appear at 0).
pub fn describe_metrics() {
    metrics::describe_counter!(
        UNAVAILABLE,
        "metric answers given without the video catalog because postgresql failed or was being skipped"
    );
    metrics::counter!(UNAVAILABLE).increment(0);
}

/// A catalog read of a metric endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogRead<T> {
    Read(T),
    /// PostgreSQL failed, did not answer in time, or failed less than
    /// [`RETRY_AFTER`] ago.
    Unavailable,
}

pub use crate::contract::{
    MAX_CATEGORY_CHARS, MAX_DURATION_SECONDS, MAX_TITLE_CHARS, MAX_VIDEO_ID_CHARS, MIN_DURATION_SECONDS,
};

const UPSERT: &str = "\
INSERT INTO videos (video_id, title, duration_seconds, category)
VALUES ($1, $2, $3, $4)
ON CONFLICT (video_id) DO UPDATE
SET title = EXCLUDED.title,
    duration_seconds = EXCLUDED.duration_seconds,
    category = EXCLUDED.category,
    updated_at = now()
RETURNING video_id, title, duration_seconds, category, created_at, updated_at";

const SELECT_CATEGORIES: &str = "\
SELECT video_id, category
FROM videos
WHERE video_id = ANY($1) AND category IS NOT NULL";

const SELECT_ONE: &str = "\
SELECT video_id, title, duration_seconds, category, created_at, updated_at
FROM videos
WHERE video_id = $1";

/// A catalog entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Video {
    pub video_id: String,
    pub title: String,
    /// Length of the video in seconds; the denominator of watch percentages.
    pub duration_seconds: Option<f64>,
    pub category: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The body of `PUT /api/videos/{videoId}`: the whole entry (an omitted
/// optional field is stored as null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VideoInput {
    /// Required, 1 to 512 characters, not only whitespace, no NUL.
    #[schema(schema_with = crate::contract::title)]
    pub title: String,
    /// From a millisecond to the longest duration players may report
    /// (10 000 000 s), or null when unknown.
    #[serde(default)]
    #[schema(minimum = 0.001, maximum = 10_000_000.0)]
    pub duration_seconds: Option<f64>,
    /// At most 128 characters, no NUL, or null.
    #[serde(default)]
    #[schema(schema_with = crate::contract::category)]
    pub category: Option<String>,
}

impl VideoInput {
    /// Reads and validates a request body; the error names the first field at fault.
    pub fn from_json(body: &Value) -> Result<Self, ApiError> {
        let Value::Object(object) = body else {
            return Err(ApiError::BadRequest { field: None, message: "request body must be a json object".into() });
        };
        if let Some(unknown) = object.keys().find(|k| !matches!(k.as_str(), "title" | "duration_seconds" | "category"))
        {
            return Err(ApiError::bad_field(
                unknown.as_str(),
                format!("unknown field {unknown:?}; expected title, duration_seconds, category"),
            ));
        }
        let title = match object.get("title") {
            None | Some(Value::Null) => return Err(ApiError::bad_field("title", "title is required")),
            Some(Value::String(title)) => title.clone(),
            Some(_) => return Err(ApiError::bad_field("title", "title must be a string")),
        };
        if title.trim().is_empty() {
            return Err(ApiError::bad_field("title", "title must not be empty"));
        }
        check_text("title", &title, MAX_TITLE_CHARS)?;

        let duration_seconds = match object.get("duration_seconds") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(d) if (MIN_DURATION_SECONDS..=MAX_DURATION_SECONDS).contains(&d) => Some(d),
                _ => {
                    return Err(ApiError::bad_field(
                        "duration_seconds",
                        format!(
                            "duration_seconds must be from {MIN_DURATION_SECONDS} to {MAX_DURATION_SECONDS} (seconds)"
                        ),
                    ));
                }
            },
            Some(_) => return Err(ApiError::bad_field("duration_seconds", "duration_seconds must be a number")),
        };

        let category = optional_string(object, "category")?;
        if let Some(category) = &category {
            check_text("category", category, MAX_CATEGORY_CHARS)?;
        }
        Ok(Self { title, duration_seconds, category })
    }
}

fn optional_string(object: &Map<String, Value>, field: &'static str) -> Result<Option<String>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_field(field, format!("{field} must be a string or null"))),
    }
}

/// Length in characters, and no NUL (PostgreSQL text cannot hold it).
fn check_text(field: &'static str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    if value.chars().count() > max_chars {
        return Err(ApiError::bad_field(field, format!("{field} must be at most {max_chars} characters")));
    }
    if value.contains('\0') {
        return Err(ApiError::bad_field(field, format!("{field} must not contain NUL characters")));
    }
    Ok(())
}

/// A video id from the path: 1 to 256 characters, no control, invisible or
/// bidirectional formatting characters.
pub fn validate_video_id(video_id: &str) -> Result<(), ApiError> {
    validate_id("videoId", video_id)
}

/// An id taken from a path (`videoId`, `userId`): 1 to 256 characters, no
/// control, invisible or bidirectional formatting characters.
pub fn validate_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::bad_field(field, format!("{field} must not be empty")));
    }
    if id.chars().count() > MAX_VIDEO_ID_CHARS {
        return Err(ApiError::bad_field(field, format!("{field} must be at most {MAX_VIDEO_ID_CHARS} characters")));
    }
    if let Some(c) = id.chars().find(|&c| !events_model::text::is_plain(c)) {
        return Err(ApiError::bad_field(
            field,
            format!(
                "{field} must not contain control, invisible or bidirectional formatting characters, found U+{:04X}",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// The catalog's PostgreSQL access.
#[derive(Clone)]
pub struct Catalog {
    pool: Pool,
    breaker: Arc<Breaker>,
}

impl Catalog {
    pub fn new(pool: Pool) -> Self {
        Self { pool, breaker: Arc::new(Breaker::new("postgres", RETRY_AFTER)) }
    }

    /// [`Self::get`] for a metric answer: unavailable rather than an error
    /// while PostgreSQL cannot be reached.
    pub async fn video_for_metrics(&self, video_id: &str) -> Result<CatalogRead<Option<Video>>, ApiError> {
        self.degradable(self.get(video_id)).await
    }

    /// [`Self::categories`] for a metric answer: unavailable rather than an
    /// error while PostgreSQL cannot be reached.
    pub async fn categories_for_metrics(
        &self,
        video_ids: &[String],
    ) -> Result<CatalogRead<HashMap<String, String>>, ApiError> {
        if video_ids.is_empty() {
            return Ok(CatalogRead::Read(HashMap::new()));
        }
        self.degradable(self.categories(video_ids)).await
    }

    async fn degradable<T>(&self, read: impl Future<Output = Result<T, ApiError>>) -> Result<CatalogRead<T>, ApiError> {
        if !self.breaker.allow() {
            metrics::counter!(UNAVAILABLE).increment(1);
            return Ok(CatalogRead::Unavailable);
        }
        let outcome = match tokio::time::timeout(METRICS_READ_TIMEOUT, read).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ApiError::Unavailable {
                dependency: "postgres",
                cause: format!("no answer within {} ms", METRICS_READ_TIMEOUT.as_millis()),
            }),
        };
        match outcome {
            Ok(value) => {
                self.breaker.succeeded();
                Ok(CatalogRead::Read(value))
            }
            Err(ApiError::Unavailable { cause, .. }) => {
                self.breaker.failed(&cause);
                metrics::counter!(UNAVAILABLE).increment(1);
                Ok(CatalogRead::Unavailable)
            }
            Err(error) => Err(error),
        }
    }

    /// Inserts or replaces the entry of `video_id` and returns what is stored.
    pub async fn upsert(&self, video_id: &str, input: &VideoInput) -> Result<Video, ApiError> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(UPSERT).await?;
        let row =
            client.query_one(&statement, &[&video_id, &input.title, &input.duration_seconds, &input.category]).await?;
        video_from_row(&row)
    }

    pub async fn get(&self, video_id: &str) -> Result<Option<Video>, ApiError> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(SELECT_ONE).await?;
        let row = client.query_opt(&statement, &[&video_id]).await?;
        row.as_ref().map(video_from_row).transpose()
    }

    /// The category of each of `video_ids` that has one.
    pub async fn categories(&self, video_ids: &[String]) -> Result<HashMap<String, String>, ApiError> {
        if video_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(SELECT_CATEGORIES).await?;
        let rows = client.query(&statement, &[&video_ids]).await?;
        rows.iter().map(|row| Ok((row.try_get("video_id")?, row.try_get("category")?))).collect()
    }
}

fn video_from_row(row: &tokio_postgres::Row) -> Result<Video, ApiError> {
    Ok(Video {
        video_id: row.try_get("video_id")?,
        title: row.try_get("title")?,
        duration_seconds: row.try_get("duration_seconds")?,
        category: row.try_get("category")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field_of(body: Value) -> String {
        match VideoInput::from_json(&body) {
            Err(ApiError::BadRequest { field, .. }) => field.unwrap_or_default(),
            other => panic!("expected a bad request for {body}, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_full_and_a_minimal_entry() {
        let full = VideoInput::from_json(&json!({"title": "T", "duration_seconds": 12.5, "category": "c"})).unwrap();
        assert_eq!(full, VideoInput { title: "T".into(), duration_seconds: Some(12.5), category: Some("c".into()) });
        let minimal = VideoInput::from_json(&json!({"title": "T", "duration_seconds": null})).unwrap();
        assert_eq!(minimal, VideoInput { title: "T".into(), duration_seconds: None, category: None });
    }

    #[test]
    fn names_the_field_at_fault() {
        assert_eq!(field_of(json!({})), "title");
        assert_eq!(field_of(json!({"title": "  "})), "title");
        assert_eq!(field_of(json!({"title": 5})), "title");
        assert_eq!(field_of(json!({"title": "x".repeat(513)})), "title");
        assert_eq!(field_of(json!({"title": "a\u{0}b"})), "title");
        assert_eq!(field_of(json!({"title": "t", "duration_seconds": 0})), "duration_seconds");
        assert_eq!(field_of(json!({"title": "t", "duration_seconds": -1.5})), "duration_seconds");
        assert_eq!(field_of(json!({"title": "t", "duration_seconds": "10"})), "duration_seconds");
        assert_eq!(field_of(json!({"title": "t", "category": "c".repeat(129)})), "category");
        assert_eq!(field_of(json!({"title": "t", "category": 3})), "category");
        assert_eq!(field_of(json!({"title": "t", "duration": 3})), "duration");
        assert_eq!(field_of(json!([1])), "");
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        assert!(VideoInput::from_json(&json!({"title": "é".repeat(512)})).is_ok());
        assert!(validate_video_id(&"é".repeat(256)).is_ok());
        assert!(validate_video_id(&"v".repeat(257)).is_err());
    }

    #[test]
    fn video_ids_refuse_control_characters() {
        assert!(validate_video_id("video-1 'x\"; --").is_ok());
        assert!(validate_video_id("a\nb").is_err());
        assert!(validate_video_id("a\u{7f}").is_err());
        assert!(validate_video_id("").is_err());
    }
}
