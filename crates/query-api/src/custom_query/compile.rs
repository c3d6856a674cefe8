//! From a [`QueryRequest`] to parameterised ClickHouse SQL.
//!
//! Every identifier and expression in the SQL text is a `&'static str` from
//! [`lists`]; every value from the request (filter values, times, the limit)
//! is a `?` placeholder filled by `clickhouse::Query::bind`, which escapes it.
//! So the SQL text depends only on which names were chosen, never on the
//! values, and a name outside the lists is a 400 before any SQL exists.
//!
//! The shape (`g_*` are group keys, `m_*` metrics):
//!
//! ```text
//! SELECT <bucket> AS g_time, <dimension> AS g_<name>, ..., <aggregate> AS m_<name>, ...
//! FROM (<metrics_sql::first_copies_of_events(table, columns, time range AND filters)>)
//! GROUP BY g_time, g_<name>, ...
//! ORDER BY g_time, m_<order_by> DESC, g_<name>, ...
//! LIMIT <limit + 1>
//! ```
//!
//! The time range and the filters go inside the deduplicating subquery, so
//! ClickHouse prunes partitions and reads less; copies of one event carry the
//! same dimensions, so filtering before or after deduplication is the same.
//! `table` is the time-clustered copy of `events` when it holds the whole
//! range (the recent days), where the range is a key range; else `events`.

use chrono::{DateTime, NaiveDate, Utc};
use clickhouse::{Client, query::Query};
use events_model::EVENTS_TABLE;
use metrics_sql::EVENTS_BY_TIME_TABLE;

use super::{
    DEFAULT_LIMIT, MAX_FILTER_VALUE_CHARS, MAX_LIMIT, QueryRequest,
    lists::{self, GranularityDef, MetricDef, ValueKind},
    request::quoted,
};
use crate::error::ApiError;

/// Earliest `start`: ClickHouse `DateTime` starts at the epoch.
const MIN_TIME: i64 = 0;
/// Latest `end` (2100-01-01T00:00:00Z), well inside ClickHouse `DateTime`.
const MAX_TIME: i64 = 4_102_444_800;

pub use metrics_sql::Param;
use metrics_sql::Statement;

/// One column of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputColumn {
    pub name: &'static str,
    pub kind: ValueKind,
}

/// A validated query, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledQuery {
    statement: Statement,
    columns: Vec<OutputColumn>,
    limit: usize,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl CompiledQuery {
    /// The SQL text with a `?` for each bound value (no request value in it).
    pub fn sql(&self) -> &str {
        self.statement.text()
    }

    pub fn params(&self) -> &[Param] {
        self.statement.params()
    }

    /// The answer's columns in order: `time` (with a granularity), the
    /// `group_by` dimensions, the metrics.
    pub fn columns(&self) -> &[OutputColumn] {
        &self.columns
    }

    /// Most rows returned; the SQL fetches one more to detect truncation.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The half-open range `[start, end)` on the event time.
    pub fn range(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.start, self.end)
    }

    /// The query on `client` with every value bound.
    pub fn query(&self, client: &Client) -> Query {
        self.statement.query(client)
    }

    /// The final SQL with the values substituted exactly as the client does
    /// it when running the query. For tests and debugging only: queries run
    /// through [`Self::query`].
    pub fn render_sql(&self) -> String {
        self.statement.render()
    }
}

/// Validates `request` against the lists and limits and builds its SQL;
/// `now` is the end of the range when the request gives none. A range
/// starting at or after `by_time_from_ms` (the client time from which the
/// time-clustered copy holds every event, [`metrics_sql::by_time_holds_from_ms`])
/// reads that copy, where the range is a key range; an older one reads
/// `events`, sorted by video, where a time range prunes little.
pub fn compile(request: &QueryRequest, now: DateTime<Utc>, by_time_from_ms: u64) -> Result<CompiledQuery, ApiError> {
    let metrics = resolve_names("metrics", &request.metrics, "metric", lists::metric, lists::metric_names)?;
    if metrics.is_empty() {
        return Err(ApiError::bad_field(
            "metrics",
            format!("metrics must name at least one metric: {}", lists::metric_names()),
        ));
    }
    let dimensions =
        resolve_names("group_by", &request.group_by, "dimension", lists::dimension, lists::dimension_names)?;

    let mut params = Vec::new();
    let (start, end) = time_range(request, now)?;
    let granularity = match &request.granularity {
        None => None,
        Some(name) => Some(lists::granularity(name).ok_or_else(|| {
            ApiError::bad_field(
                "granularity",
                format!("unknown granularity {}; expected one of {}", quoted(name), lists::granularity_names()),
            )
        })?),
    };
    check_range_length(start, end, granularity)?;
    let start_ms = start.timestamp_millis();
    let end_ms = end.timestamp_millis();
    // `timestamp` (seconds, widened to whole seconds) selects partitions and
    // index ranges; `timestamp_ms` is exact.
    let mut conditions: Vec<String> =
        ["timestamp >= toDateTime(?)", "timestamp < toDateTime(?)", "timestamp_ms >= ?", "timestamp_ms < ?"]
            .map(String::from)
            .into();
    params.extend([
        Param::U64(non_negative(start_ms.div_euclid(1000))),
        Param::U64(non_negative((end_ms + 999).div_euclid(1000))),
        Param::U64(non_negative(start_ms)),
        Param::U64(non_negative(end_ms)),
    ]);

    let mut columns_read: Vec<&'static str> = vec!["event_id"];
    let mut read = |columns: &[&'static str]| {
        for column in columns {
            if !columns_read.contains(column) {
                columns_read.push(column);
            }
        }
    };

    for (i, filter) in request.filters.iter().enumerate() {
        let field = format!("filters[{i}]");
        let dimension = lists::dimension(&filter.dimension)
            .filter(|d| d.filterable)
            .ok_or_else(|| unfilterable_dimension(&field, &filter.dimension))?;
        let op = lists::op(&filter.op).ok_or_else(|| {
            ApiError::bad_field(
                format!("{field}.op"),
                format!("unknown op {}; expected one of {}", quoted(&filter.op), lists::op_names()),
            )
        })?;
        let param = if op.takes_list {
            if filter.value.is_some() {
                return Err(ApiError::bad_field(
                    format!("{field}.value"),
                    format!("{field}.value does not go with op {}: give values (a list)", op.name),
                ));
            }
            let values = filter.values.as_ref().ok_or_else(|| {
                ApiError::bad_field(
                    format!("{field}.values"),
                    format!("{field}.values is required with op {}: a list of 1 to 100 strings", op.name),
                )
            })?;
            if values.is_empty() {
                return Err(ApiError::bad_field(
                    format!("{field}.values"),
                    format!("{field}.values must hold at least one value"),
                ));
            }
            for (j, value) in values.iter().enumerate() {
                check_value(&format!("{field}.values[{j}]"), value)?;
            }
            Param::Strs(values.clone())
        } else {
            if filter.values.is_some() {
                return Err(ApiError::bad_field(
                    format!("{field}.values"),
                    format!("{field}.values does not go with op {}: give value (a string)", op.name),
                ));
            }
            let value = filter.value.as_ref().ok_or_else(|| {
                ApiError::bad_field(
                    format!("{field}.value"),
                    format!("{field}.value is required with op {}: a string", op.name),
                )
            })?;
            check_value(&format!("{field}.value"), value)?;
            Param::Str(value.clone())
        };
        read(dimension.columns);
        conditions.push(format!("{}{}{}", op.sql_prefix, dimension.sql, op.sql_suffix));
        params.push(param);
    }

    let limit = match request.limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::bad_field("limit", format!("limit must be from 1 to {MAX_LIMIT}, got {n}")));
        }
    };
    let order_by = match &request.order_by {
        None => None,
        Some(name) => Some(order_metric(name, &metrics)?),
    };

    // Output columns and the outer SELECT.
    let mut columns = Vec::new();
    let mut select = Vec::new();
    let mut group_keys = Vec::new();
    if let Some(granularity) = granularity {
        read(&["timestamp"]);
        select.push(format!("{} AS g_time", granularity.sql));
        group_keys.push("g_time".to_string());
        columns.push(OutputColumn { name: "time", kind: ValueKind::Time });
    }
    for dimension in &dimensions {
        read(dimension.columns);
        select.push(format!("{} AS g_{}", dimension.sql, dimension.name));
        group_keys.push(format!("g_{}", dimension.name));
        columns.push(OutputColumn { name: dimension.name, kind: dimension.kind });
    }
    for metric in &metrics {
        read(metric.columns);
        select.push(format!("{} AS m_{}", metric.sql, metric.name));
        columns.push(OutputColumn { name: metric.name, kind: metric.kind });
    }

    let mut order = Vec::new();
    if granularity.is_some() {
        order.push("g_time".to_string());
    }
    if let Some(metric) = order_by {
        order.push(format!("m_{} DESC", metric.name));
    }
    order.extend(dimensions.iter().map(|d| format!("g_{}", d.name)));

    let table = if non_negative(start_ms) >= by_time_from_ms { EVENTS_BY_TIME_TABLE } else { EVENTS_TABLE };
    let inner = metrics_sql::first_copies_of_events(table, &columns_read, &conditions.join(" AND "));
    let mut sql = format!("SELECT {} FROM ({inner})", select.join(", "));
    if !group_keys.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", group_keys.join(", ")));
    }
    if !order.is_empty() {
        sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
    }
    sql.push_str(" LIMIT ?");
    params.push(Param::U64(limit as u64 + 1));

    Ok(CompiledQuery { statement: Statement::from_parts(sql, params), columns, limit, start, end })
}

fn non_negative(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Looks up each name of `list` (field `field`), refusing unknown and repeated names.
fn resolve_names<T>(
    field: &str,
    list: &[String],
    what: &str,
    lookup: impl Fn(&str) -> Option<&'static T>,
    expected: impl Fn() -> String,
) -> Result<Vec<&'static T>, ApiError> {
    let mut resolved = Vec::with_capacity(list.len());
    for (i, name) in list.iter().enumerate() {
        let item = lookup(name).ok_or_else(|| {
            ApiError::bad_field(
                format!("{field}[{i}]"),
                format!("unknown {what} {}; expected one of {}", quoted(name), expected()),
            )
        })?;
        if let Some(first) = list[..i].iter().position(|earlier| earlier == name) {
            return Err(ApiError::bad_field(
                format!("{field}[{i}]"),
                format!("{what} {} is already listed at {field}[{first}]", quoted(name)),
            ));
        }
        resolved.push(item);
    }
    Ok(resolved)
}

fn unfilterable_dimension(field: &str, name: &str) -> ApiError {
    let field = format!("{field}.dimension");
    match lists::dimension(name) {
        Some(_) => ApiError::bad_field(
            field,
            format!(
                "{} cannot be filtered (select times with start and end); filterable dimensions: {}",
                quoted(name),
                lists::filterable_dimension_names()
            ),
        ),
        None => ApiError::bad_field(
            field,
            format!("unknown dimension {}; expected one of {}", quoted(name), lists::filterable_dimension_names()),
        ),
    }
}

/// A filter value: at most [`MAX_FILTER_VALUE_CHARS`] characters and no
/// control, invisible or bidirectional formatting characters (stored
/// dimensions never hold any).
fn check_value(field: &str, value: &str) -> Result<(), ApiError> {
    let chars = value.chars().count();
    if chars > MAX_FILTER_VALUE_CHARS {
        return Err(ApiError::bad_field(
            field,
            format!("{field} is {chars} characters long; at most {MAX_FILTER_VALUE_CHARS} are allowed"),
        ));
    }
    if let Some(c) = value.chars().find(|&c| !events_model::text::is_plain(c)) {
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

fn order_metric(name: &str, metrics: &[&'static MetricDef]) -> Result<&'static MetricDef, ApiError> {
    match metrics.iter().find(|m| m.name == name) {
        Some(metric) => Ok(metric),
        None if lists::metric(name).is_some() => Err(ApiError::bad_field(
            "order_by",
            format!("order_by {} must be one of the requested metrics", quoted(name)),
        )),
        None => Err(ApiError::bad_field(
            "order_by",
            format!("unknown metric {}; order_by names one of the requested metrics", quoted(name)),
        )),
    }
}

/// `start` and `end` (or `now`) parsed, ordered and inside ClickHouse's `DateTime`.
fn time_range(request: &QueryRequest, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let start = parse_time("start", &request.start)?;
    let end = match &request.end {
        Some(end) => parse_time("end", end)?,
        None => now,
    };
    if start.timestamp() < MIN_TIME {
        return Err(ApiError::bad_field("start", "start must not be before 1970-01-01T00:00:00Z"));
    }
    if end.timestamp() > MAX_TIME || (end.timestamp() == MAX_TIME && end.timestamp_subsec_nanos() > 0) {
        return Err(ApiError::bad_field("end", "end must not be after 2100-01-01T00:00:00Z"));
    }
    if end <= start {
        return Err(match request.end {
            Some(_) => ApiError::bad_field("end", "end must be after start"),
            None => ApiError::bad_field("start", "start must be before the current time when end is omitted"),
        });
    }
    Ok((start, end))
}

/// RFC 3339, or `YYYY-MM-DD` as midnight UTC.
fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.to_utc());
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if text.len() == 10 {
            return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
        }
    }
    Err(ApiError::bad_field(
        field,
        format!("{field} must be an RFC 3339 time (2026-11-01T00:00:00Z) or a date (2026-11-01)"),
    ))
}

fn check_range_length(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    granularity: Option<&'static GranularityDef>,
) -> Result<(), ApiError> {
    let length_ms = (end - start).num_milliseconds();
    if length_ms > lists::MAX_RANGE_SECONDS * 1000 {
        return Err(ApiError::bad_field(
            "end",
            format!("the range from start to end may span at most {}", lists::MAX_RANGE_TEXT),
        ));
    }
    if let Some(g) = granularity {
        if length_ms > g.max_range_seconds * 1000 {
            return Err(ApiError::bad_field(
                "granularity",
                format!(
                    "granularity {} allows a range of at most {}; choose a coarser granularity or a shorter range",
                    g.name, g.max_range_text
                ),
            ));
        }
    }
    Ok(())
}
