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
//!
//! With hours from the hourly rollup ([`CompiledQuery::with_rolled`]), each
//! metric is its formula over the sums of its parts
//! ([`lists::PartDef`]), and the parts come from two branches:
//!
//! ```text
//! SELECT g_time, g_<name>, ..., <from_parts> AS m_<name>, ...
//! FROM (SELECT <groups>, <part raw aggregate> AS p_<part>, ... FROM (<deduplicated events of the raw ranges>) GROUP BY ...
//!       UNION ALL
//!       SELECT <groups>, <part over the rollup> AS p_<part>, ... FROM (<metrics_sql::hourly::newest_rows>) GROUP BY ...)
//! GROUP BY g_time, g_<name>, ... ORDER BY ... LIMIT <limit + 1>
//! ```

use std::ops::Range;

use chrono::{DateTime, NaiveDate, Utc};
use clickhouse::{Client, query::Query};
use events_model::EVENTS_TABLE;
use metrics_sql::{
    EVENTS_BY_TIME_TABLE,
    hourly::{self, RolledHour},
    windows::Grain,
};

use super::{
    DEFAULT_LIMIT, MAX_FILTER_VALUE_CHARS, MAX_LIMIT, QueryRequest,
    lists::{self, DimensionDef, GranularityDef, MetricDef, ValueKind},
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
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    plan: Plan,
}

/// What a query asks for, validated: enough to build its SQL over raw events
/// alone or over the hourly rollup and raw events together.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    metrics: Vec<&'static MetricDef>,
    dimensions: Vec<&'static DimensionDef>,
    granularity: Option<&'static GranularityDef>,
    /// Each filter's condition (one `?`) and its value.
    filters: Vec<(String, Param)>,
    /// The dimensions the filters compare.
    filtered: Vec<&'static DimensionDef>,
    order_by: Option<&'static MetricDef>,
    limit: usize,
    start_ms: u64,
    end_ms: u64,
    by_time_from_ms: u64,
}

/// Most runs of consecutive rolled-up hours one statement reads; beyond it
/// the shortest runs are read raw, so a range of scattered stale hours
/// cannot make the SQL grow without bound.
pub const MAX_ROLLED_RUNS: usize = 64;

/// Most rolled-up hours with rows inserted after their run (the current
/// hour, late events) one statement completes from the raw events, the
/// newest first; older ones are read raw whole.
pub const MAX_DELTA_HOURS: usize = 4;

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
        self.plan.limit
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

    /// The whole hours of the range (indexes) the hourly rollup could answer,
    /// or `None` when the query cannot use it: a distinct count, the video
    /// as a dimension or filter, minute buckets, or no whole hour in range.
    pub fn rollup_hours(&self) -> Option<Range<u32>> {
        let plan = &self.plan;
        let rollable =
            |d: &&DimensionDef| d.columns.iter().all(|c| *c == "timestamp" || hourly::DIMENSIONS.contains(c));
        let possible = plan.metrics.iter().all(|m| m.from_parts.is_some())
            && plan.granularity.is_none_or(|g| g.seconds as u64 % Grain::Hour.secs() == 0)
            && plan.dimensions.iter().all(rollable)
            && plan.filtered.iter().all(rollable);
        let hour_ms = Grain::Hour.millis();
        let first = u32::try_from(plan.start_ms.div_ceil(hour_ms)).ok()?;
        let end = u32::try_from(plan.end_ms / hour_ms).ok()?;
        (possible && first < end).then_some(first..end)
    }

    /// The same query with the hours `rolled` (ascending, within
    /// [`Self::rollup_hours`]) read from the hourly rollup, each completed by
    /// the events inserted after its run when there are any (from the
    /// time-clustered copy, which must hold the hour; at most
    /// [`MAX_DELTA_HOURS`]), and the rest of the range raw. The answer is
    /// the same.
    pub fn with_rolled(&self, rolled: &[RolledHour]) -> CompiledQuery {
        debug_assert!(self.rollup_hours().is_some_and(|hours| rolled.iter().all(|r| hours.contains(&r.hour))));
        let holds = |hour: u32| Grain::Hour.start_of(hour) * 1000 >= self.plan.by_time_from_ms;
        let mut deltas: Vec<(u32, u32)> = rolled
            .iter()
            .filter_map(|r| r.rows_after.map(|after| (r.hour, after)))
            .filter(|&(hour, _)| holds(hour))
            .collect();
        deltas.sort_unstable_by_key(|&(hour, _)| std::cmp::Reverse(hour));
        deltas.truncate(MAX_DELTA_HOURS);
        let hours: Vec<u32> = rolled
            .iter()
            .filter(|r| r.rows_after.is_none() || deltas.iter().any(|&(hour, _)| hour == r.hour))
            .map(|r| r.hour)
            .collect();
        let hours = longest_runs(&hours, MAX_ROLLED_RUNS);
        deltas.retain(|(hour, _)| hours.contains(hour));
        deltas.sort_unstable();
        CompiledQuery { statement: build(&self.plan, &hours, &deltas), ..self.clone() }
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

    let mut filters = Vec::new();
    let mut filtered = Vec::new();
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
        filters.push((format!("{}{}{}", op.sql_prefix, dimension.sql, op.sql_suffix), param));
        filtered.push(dimension);
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

    let mut columns = Vec::new();
    if granularity.is_some() {
        columns.push(OutputColumn { name: "time", kind: ValueKind::Time });
    }
    columns.extend(dimensions.iter().map(|d| OutputColumn { name: d.name, kind: d.kind }));
    columns.extend(metrics.iter().map(|m| OutputColumn { name: m.name, kind: m.kind }));
    let plan = Plan {
        metrics,
        dimensions,
        granularity,
        filters,
        filtered,
        order_by,
        limit,
        start_ms: non_negative(start.timestamp_millis()),
        end_ms: non_negative(end.timestamp_millis()),
        by_time_from_ms,
    };
    Ok(CompiledQuery { statement: build(&plan, &[], &[]), columns, start, end, plan })
}

/// The time condition of events with client times in `[from_ms, to_ms)`:
/// `timestamp` (seconds, widened to whole seconds) selects partitions and
/// index ranges; `timestamp_ms` is exact.
fn time_condition(sql: &mut Statement, from_ms: u64, to_ms: u64) {
    sql.sql("timestamp >= toDateTime(").bind(from_ms / 1000).sql(") AND timestamp < toDateTime(");
    sql.bind(to_ms.div_ceil(1000)).sql(") AND timestamp_ms >= ").bind(from_ms).sql(" AND timestamp_ms < ");
    sql.bind(to_ms);
}

/// `cond AND cond …` of the plan's filters, or an empty statement.
fn filter_conditions(plan: &Plan) -> Statement {
    let mut sql = Statement::new("");
    for (i, (condition, param)) in plan.filters.iter().enumerate() {
        if i > 0 {
            sql.sql(" AND ");
        }
        // The condition's one `?` is its value.
        sql.append(&Statement::from_parts(condition.clone(), vec![param.clone()]));
    }
    sql
}

/// The group keys' select list (`<bucket> AS g_time, <dimension> AS g_<name>`)
/// and names, over rows with the events' columns.
fn group_keys(plan: &Plan) -> (Vec<String>, Vec<String>) {
    let mut select = Vec::new();
    let mut keys = Vec::new();
    if let Some(granularity) = plan.granularity {
        select.push(format!("{} AS g_time", granularity.sql));
        keys.push("g_time".to_string());
    }
    for dimension in &plan.dimensions {
        select.push(format!("{} AS g_{}", dimension.sql, dimension.name));
        keys.push(format!("g_{}", dimension.name));
    }
    (select, keys)
}

/// ` GROUP BY …` when there are keys.
fn group_by(keys: &[String]) -> String {
    if keys.is_empty() { String::new() } else { format!(" GROUP BY {}", keys.join(", ")) }
}

/// The statement of `plan` with the hours `rolled` from the hourly rollup,
/// completed for the `(hour, after)` of `deltas` by the events first
/// inserted after `after`: with no hour rolled, one aggregation over the
/// deduplicated events of the range; otherwise each metric from its parts
/// ([`lists::PartDef`]), summed over a raw branch (the rest of the range),
/// a branch per delta and a rollup branch.
fn build(plan: &Plan, rolled: &[u32], deltas: &[(u32, u32)]) -> Statement {
    let (group_select, keys) = group_keys(plan);
    let filters = filter_conditions(plan);
    let mut order = Vec::new();
    if plan.granularity.is_some() {
        order.push("g_time".to_string());
    }
    if let Some(metric) = plan.order_by {
        order.push(format!("m_{} DESC", metric.name));
    }
    order.extend(plan.dimensions.iter().map(|d| format!("g_{}", d.name)));
    let tail = |sql: &mut Statement| {
        sql.sql(&group_by(&keys));
        if !order.is_empty() {
            sql.sql(&format!(" ORDER BY {}", order.join(", ")));
        }
        sql.sql(" LIMIT ").bind(plan.limit as u64 + 1);
    };

    let mut columns_read: Vec<&'static str> = vec!["event_id"];
    let mut read = |columns: &[&'static str]| {
        for column in columns {
            if !columns_read.contains(column) {
                columns_read.push(column);
            }
        }
    };
    plan.filtered.iter().for_each(|d| read(d.columns));
    if plan.granularity.is_some() {
        read(&["timestamp"]);
    }
    plan.dimensions.iter().for_each(|d| read(d.columns));

    let raw_events = |sql: &mut Statement, ranges: &[(u64, u64)], columns: &[&'static str]| {
        let table = match ranges.first() {
            Some(&(from_ms, _)) => metrics_sql::events_table_from(from_ms, Some(plan.by_time_from_ms)),
            None => EVENTS_TABLE,
        };
        // `((range) OR (range) …)`: the filters below are ANDed to the whole.
        let mut filter = Statement::new(if ranges.len() > 1 { "((" } else { "" });
        for (i, &(from_ms, to_ms)) in ranges.iter().enumerate() {
            if i > 0 {
                filter.sql(") OR (");
            }
            time_condition(&mut filter, from_ms, to_ms);
        }
        if ranges.len() > 1 {
            filter.sql("))");
        }
        if !filters.text().is_empty() {
            filter.sql(" AND ").append(&filters);
        }
        sql.append(&Statement::from_parts(
            metrics_sql::first_copies_of_events(table, columns, filter.text()),
            filter.params().to_vec(),
        ));
    };

    if rolled.is_empty() {
        let mut select = group_select.clone();
        for metric in &plan.metrics {
            read(metric.columns);
            select.push(format!("{} AS m_{}", metric.sql, metric.name));
        }
        let mut sql = Statement::new(&format!("SELECT {} FROM (", select.join(", ")));
        raw_events(&mut sql, &[(plan.start_ms, plan.end_ms)], &columns_read);
        sql.sql(")");
        tail(&mut sql);
        return sql;
    }

    let mut parts: Vec<&'static lists::PartDef> = Vec::new();
    for name in plan.metrics.iter().flat_map(|m| m.parts) {
        let part = lists::part(name).expect("metrics name known parts (tested)");
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    let raw_ranges = raw_ranges(plan.start_ms, plan.end_ms, rolled);
    let mut select: Vec<String> = keys.clone();
    select.extend(plan.metrics.iter().map(|m| format!("{} AS m_{}", m.from_parts.expect("rollable"), m.name)));
    let mut sql = Statement::new(&format!("SELECT {} FROM (", select.join(", ")));
    parts.iter().for_each(|p| read(p.columns));
    let mut raw_branch = group_select.clone();
    raw_branch.extend(parts.iter().map(|p| format!("{} AS {}", p.raw, p.name)));
    if !raw_ranges.is_empty() {
        sql.sql(&format!("SELECT {} FROM (", raw_branch.join(", ")));
        raw_events(&mut sql, &raw_ranges, &columns_read);
        sql.sql(&format!("){} UNION ALL ", group_by(&keys)));
    }
    for &(hour, after) in deltas {
        sql.sql(&format!("SELECT {} FROM (", raw_branch.join(", ")));
        sql.append(&hourly::delta_events(EVENTS_BY_TIME_TABLE, &columns_read, hour, after, &filters));
        sql.sql(&format!("){} UNION ALL ", group_by(&keys)));
    }
    let mut stored: Vec<&str> = Vec::new();
    let mut branch = group_select;
    for part in &parts {
        let (aggregate, column) = hourly::rolled_part(part);
        if !stored.contains(&column) {
            stored.push(column);
        }
        branch.push(format!("{aggregate} AS {}", part.name));
    }
    sql.sql(&format!("SELECT {} FROM (", branch.join(", ")));
    sql.append(&hourly::newest_rows(rolled, &stored, &filters));
    sql.sql(&format!("){})", group_by(&keys)));
    tail(&mut sql);
    sql
}

/// `hours` (ascending) with only the [`MAX_ROLLED_RUNS`] longest runs of
/// consecutive hours kept.
fn longest_runs(hours: &[u32], max_runs: usize) -> Vec<u32> {
    let mut runs = metrics_sql::windows::runs(hours);
    if runs.len() > max_runs {
        runs.sort_by_key(|&(first, last)| std::cmp::Reverse(last - first));
        runs.truncate(max_runs);
        runs.sort_unstable();
    }
    runs.into_iter().flat_map(|(first, last)| first..=last).collect()
}

/// The parts of `[start_ms, end_ms)` outside the hours `rolled` (ascending), in order.
fn raw_ranges(start_ms: u64, end_ms: u64, rolled: &[u32]) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let mut from = start_ms;
    for (first, last) in metrics_sql::windows::runs(rolled) {
        let (run_start, run_end) = (Grain::Hour.start_of(first) * 1000, Grain::Hour.start_of(last + 1) * 1000);
        if from < run_start {
            ranges.push((from, run_start));
        }
        from = from.max(run_end);
    }
    if from < end_ms {
        ranges.push((from, end_ms));
    }
    ranges
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
