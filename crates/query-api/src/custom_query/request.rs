//! The request body of `POST /api/metrics/query`, read from JSON with an
//! error naming the field at fault (`metrics[2]`, `filters[0].op`, ...).
//!
//! Reading only checks the JSON shape (keys, types); names are checked
//! against the lists, and values against the limits, by
//! [`compile`](super::compile).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{
    MAX_FILTER_VALUES, MAX_FILTERS, MAX_LIMIT,
    lists::{self},
};
use crate::error::ApiError;

/// The body of `POST /api/metrics/query`. Unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// Metrics to compute, at least one, each at most once.
    #[schema(schema_with = schema::metric_list)]
    pub metrics: Vec<String>,
    /// Dimensions to group by, each at most once; none (or null) gives one row (or one per time bucket).
    #[serde(default)]
    #[schema(schema_with = schema::dimension_list)]
    pub group_by: Vec<String>,
    /// Conditions every counted event meets (all of them), at most 20; null is none.
    #[serde(default)]
    #[schema(schema_with = schema::filter_list)]
    pub filters: Vec<Filter>,
    /// Inclusive start of the range on the event time: RFC 3339, or `YYYY-MM-DD` (midnight UTC);
    /// not before 1970-01-01.
    #[schema(schema_with = schema::start, example = "2026-11-01T00:00:00Z")]
    pub start: String,
    /// Exclusive end, after `start` (same formats), not after 2100-01-01; the current time when
    /// absent. The range spans at most 366 days.
    #[serde(default)]
    #[schema(schema_with = schema::end, example = "2026-11-02")]
    pub end: Option<String>,
    /// Time bucket of each row (`time` column, rows ordered by it): minute (range ≤ 24 hours),
    /// hour (≤ 31 days) or day (≤ 366 days). Without it the range may span 366 days.
    #[serde(default)]
    #[schema(schema_with = schema::granularity)]
    pub granularity: Option<String>,
    /// Most rows returned, 1 to 10000 (default 1000); `truncated` tells when more existed.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10000)]
    pub limit: Option<u64>,
    /// A requested metric to sort rows by, largest first (within each time bucket).
    #[serde(default)]
    #[schema(schema_with = schema::order_by)]
    pub order_by: Option<String>,
}

/// One condition on a dimension: `value` with `eq`/`neq`, `values` with `in`/`not_in`
/// (its schema, a `oneOf` of the two shapes, is [`schema::filter`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// A dimension other than `hour` and `day`.
    pub dimension: String,
    pub op: String,
    /// For `eq` and `neq`: at most 256 characters, no control, invisible or
    /// bidirectional formatting characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// For `in` and `not_in`: 1 to 100 strings, each like `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

impl utoipa::PartialSchema for Filter {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        schema::filter()
    }
}

impl ToSchema for Filter {}

const REQUEST_KEYS: &[&str] = &["metrics", "group_by", "filters", "start", "end", "granularity", "limit", "order_by"];
const FILTER_KEYS: &[&str] = &["dimension", "op", "value", "values"];

/// Longest piece of client input echoed in an error, in characters.
pub const MAX_ECHO_CHARS: usize = 64;

/// `text` as a JSON string, cut to [`MAX_ECHO_CHARS`] characters (`…` marks a cut).
pub fn quoted(text: &str) -> String {
    let cut: String = text.chars().take(MAX_ECHO_CHARS).collect();
    let mut quoted = serde_json::to_string(&cut).unwrap_or_else(|_| "\"?\"".into());
    if cut.len() < text.len() {
        quoted.push('…');
    }
    quoted
}

/// An unknown key as the `field` of an error: cut like [`quoted`], without quotes.
fn key_field(prefix: &str, key: &str) -> String {
    let cut: String = key.chars().take(MAX_ECHO_CHARS).collect();
    format!("{prefix}{cut}")
}

fn reject_unknown_keys(object: &Map<String, Value>, prefix: &str, known: &[&str]) -> Result<(), ApiError> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(unknown) => Err(ApiError::bad_field(
            key_field(prefix, unknown),
            format!("unknown field {}; expected {}", quoted(unknown), known.join(", ")),
        )),
    }
}

/// `None` for an absent or null key.
fn present<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

fn string(value: &Value, field: &str, what: &str) -> Result<String, ApiError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(ApiError::bad_field(field, format!("{field} must be {what}"))),
    }
}

fn optional_string(object: &Map<String, Value>, key: &str, what: &str) -> Result<Option<String>, ApiError> {
    present(object, key).map(|v| string(v, key, what)).transpose()
}

/// An array of strings; `max` bounds its length before the items are copied.
fn string_list(value: &Value, field: &str, what: &str, max: usize) -> Result<Vec<String>, ApiError> {
    let Value::Array(items) = value else {
        return Err(ApiError::bad_field(field, format!("{field} must be an array of {what}")));
    };
    if items.len() > max {
        return Err(ApiError::bad_field(
            field,
            format!("{field} holds {} entries; at most {max} are allowed", items.len()),
        ));
    }
    items.iter().enumerate().map(|(i, item)| string(item, &format!("{field}[{i}]"), "a string")).collect()
}

impl QueryRequest {
    /// Reads a request body; the error names the first field at fault.
    pub fn from_json(body: &Value) -> Result<Self, ApiError> {
        let Value::Object(object) = body else {
            return Err(ApiError::BadRequest { field: None, message: "request body must be a json object".into() });
        };
        reject_unknown_keys(object, "", REQUEST_KEYS)?;
        let metrics = match present(object, "metrics") {
            None => {
                return Err(ApiError::bad_field(
                    "metrics",
                    format!("metrics is required: a list of one or more of {}", lists::metric_names()),
                ));
            }
            Some(value) => string_list(value, "metrics", "metric names", lists::METRICS.len())?,
        };
        let group_by = match present(object, "group_by") {
            None => Vec::new(),
            Some(value) => string_list(value, "group_by", "dimension names", lists::DIMENSIONS.len())?,
        };
        let filters = match present(object, "filters") {
            None => Vec::new(),
            Some(Value::Array(items)) if items.len() > MAX_FILTERS => {
                return Err(ApiError::bad_field(
                    "filters",
                    format!("filters holds {} entries; at most {MAX_FILTERS} are allowed", items.len()),
                ));
            }
            Some(Value::Array(items)) => {
                items.iter().enumerate().map(|(i, item)| Filter::from_json(item, i)).collect::<Result<_, _>>()?
            }
            Some(_) => return Err(ApiError::bad_field("filters", "filters must be an array of filter objects")),
        };
        let time = "an RFC 3339 time (2026-11-01T00:00:00Z) or a date (2026-11-01)";
        let start = optional_string(object, "start", time)?
            .ok_or_else(|| ApiError::bad_field("start", format!("start is required: {time}")))?;
        let end = optional_string(object, "end", time)?;
        let granularity = optional_string(object, "granularity", &format!("one of {}", lists::granularity_names()))?;
        let limit = match present(object, "limit") {
            None => None,
            Some(value) => Some(whole_number(value).ok_or_else(|| {
                ApiError::bad_field("limit", format!("limit must be an integer from 1 to {MAX_LIMIT}"))
            })?),
        };
        let order_by = optional_string(object, "order_by", "the name of a requested metric")?;
        Ok(Self { metrics, group_by, filters, start, end, granularity, limit, order_by })
    }
}

/// A non-negative whole number: `467` or, as JSON Schema's `integer` allows,
/// `467.0` (up to 2^53, where floats stop being exact).
fn whole_number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value.as_f64().filter(|f| f.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(f)).map(|f| f as u64)
    })
}

impl Filter {
    fn from_json(value: &Value, index: usize) -> Result<Self, ApiError> {
        let prefix = format!("filters[{index}]");
        let Value::Object(object) = value else {
            return Err(ApiError::bad_field(
                &prefix,
                format!("{prefix} must be an object {{\"dimension\", \"op\", \"value\" or \"values\"}}"),
            ));
        };
        reject_unknown_keys(object, &format!("{prefix}."), FILTER_KEYS)?;
        let required = |key: &str, what: &str| -> Result<String, ApiError> {
            let field = format!("{prefix}.{key}");
            match present(object, key) {
                None => Err(ApiError::bad_field(&field, format!("{field} is required: {what}"))),
                Some(value) => string(value, &field, what),
            }
        };
        let dimension = required("dimension", &format!("one of {}", lists::filterable_dimension_names()))?;
        let op = required("op", &format!("one of {}", lists::op_names()))?;
        let value = match present(object, "value") {
            None => None,
            Some(value) => Some(string(value, &format!("{prefix}.value"), "a string")?),
        };
        let values = match present(object, "values") {
            None => None,
            Some(value) => Some(string_list(value, &format!("{prefix}.values"), "strings", MAX_FILTER_VALUES)?),
        };
        Ok(Self { dimension, op, value, values })
    }
}

/// OpenAPI schemas whose allowed values come from [`lists`].
mod schema {
    use utoipa::openapi::{
        ArrayBuilder, ObjectBuilder, OneOfBuilder, RefOr, Schema, Type,
        schema::{AdditionalProperties, SchemaType},
    };

    use super::{MAX_FILTER_VALUES, MAX_FILTERS, lists};
    use crate::contract;
    use crate::custom_query::MAX_FILTER_VALUE_CHARS;

    fn described<T>(table: &[T], name: impl Fn(&T) -> &'static str, doc: impl Fn(&T) -> String) -> String {
        table.iter().map(|t| format!("- `{}`: {}", name(t), doc(t))).collect::<Vec<_>>().join("\n")
    }

    fn names_schema(names: Vec<&'static str>, description: String) -> ObjectBuilder {
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names)).description(Some(description))
    }

    pub fn metric_list() -> impl Into<RefOr<Schema>> {
        let item = names_schema(
            lists::METRICS.iter().map(|m| m.name).collect(),
            described(lists::METRICS, |m| m.name, |m| m.doc.to_string()),
        );
        ArrayBuilder::new().items(item).min_items(Some(1)).max_items(Some(lists::METRICS.len())).unique_items(true)
    }

    pub fn dimension_list() -> impl Into<RefOr<Schema>> {
        let item = names_schema(
            lists::DIMENSIONS.iter().map(|d| d.name).collect(),
            described(lists::DIMENSIONS, |d| d.name, |d| d.doc.to_string()),
        );
        ArrayBuilder::new()
            .schema_type(contract::nullable(Type::Array, true))
            .items(item)
            .max_items(Some(lists::DIMENSIONS.len()))
            .unique_items(true)
    }

    pub fn filter_list() -> impl Into<RefOr<Schema>> {
        ArrayBuilder::new()
            .schema_type(contract::nullable(Type::Array, true))
            .items(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Filter")))
            .max_items(Some(MAX_FILTERS))
    }

    pub fn start() -> RefOr<Schema> {
        contract::time_or_day(false)
    }

    pub fn end() -> RefOr<Schema> {
        contract::time_or_day(true)
    }

    pub fn order_by() -> impl Into<RefOr<Schema>> {
        nullable_names(lists::METRICS.iter().map(|m| m.name).collect(), "one of the requested metrics".into())
    }

    fn filter_value() -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(MAX_FILTER_VALUE_CHARS))
            .pattern(Some(contract::PLAIN_TEXT))
    }

    /// One shape per kind of op: `eq`/`neq` take `value`, `in`/`not_in` `values`.
    pub fn filter() -> RefOr<Schema> {
        let shape = |list: bool| {
            let ops: Vec<_> = lists::OPS.iter().filter(|o| o.takes_list == list).collect();
            let op =
                names_schema(ops.iter().map(|o| o.name).collect(), described(&ops, |o| o.name, |o| o.doc.to_string()));
            let (given, absent) = if list { ("values", "value") } else { ("value", "values") };
            let given_schema: RefOr<Schema> = if list {
                ArrayBuilder::new().items(filter_value()).min_items(Some(1)).max_items(Some(MAX_FILTER_VALUES)).into()
            } else {
                filter_value().into()
            };
            ObjectBuilder::new()
                .property("dimension", filter_dimension())
                .property("op", op)
                .property(given, given_schema)
                .property(absent, ObjectBuilder::new().schema_type(SchemaType::Type(Type::Null)))
                .required("dimension")
                .required("op")
                .required(given)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        OneOfBuilder::new()
            .item(shape(false))
            .item(shape(true))
            .description(Some("One condition on a dimension: `value` with `eq`/`neq`, `values` with `in`/`not_in`."))
            .into()
    }

    fn filter_dimension() -> ObjectBuilder {
        let filterable: Vec<_> = lists::DIMENSIONS.iter().filter(|d| d.filterable).collect();
        names_schema(
            filterable.iter().map(|d| d.name).collect(),
            described(&filterable, |d| d.name, |d| d.doc.to_string()),
        )
    }

    pub fn granularity() -> impl Into<RefOr<Schema>> {
        nullable_names(
            lists::GRANULARITIES.iter().map(|g| g.name).collect(),
            described(lists::GRANULARITIES, |g| g.name, |g| format!("range at most {}", g.max_range_text)),
        )
    }

    /// One of `names`, or null (taken as absent).
    fn nullable_names(names: Vec<&'static str>, description: String) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(contract::nullable(Type::String, true))
            .enum_values(Some(names.into_iter().map(Some).chain([None]).collect::<Vec<_>>()))
            .description(Some(description))
    }
}
