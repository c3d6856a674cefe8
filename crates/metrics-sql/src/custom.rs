//! The fixed vocabulary of custom queries: metrics, dimensions, granularities
//! and filter operators, each with the static SQL it compiles to.
//!
//! These tables are the only source of identifiers and expressions in the
//! SQL that query-api's custom query compiles. The OpenAPI schema, the 400 messages and `docs/custom-query.md`
//! list the same names; a unit test keeps the document in step.

/// How a result column comes back from ClickHouse and goes out as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A string column, sent as is.
    Text,
    /// A non-negative integer (ClickHouse `UInt*`; 18.16 quotes 64-bit ones in JSON), sent as a number.
    Count,
    /// A `Float64` that is never null, sent as a number.
    Ratio,
    /// A `Nullable(Float64)` mean, sent as a number or `null` when nothing was averaged.
    Mean,
    /// Epoch seconds of a UTC day (`intDiv(epoch, 86400)` days), sent as `YYYY-MM-DD`.
    Day,
    /// Epoch seconds of a bucket start, sent as an RFC 3339 UTC time.
    Time,
}

/// One metric: its name in requests and answers, its ClickHouse aggregate
/// over deduplicated events, and the event columns that aggregate reads.
#[derive(Debug, PartialEq, Eq)]
pub struct MetricDef {
    pub name: &'static str,
    pub sql: &'static str,
    pub columns: &'static [&'static str],
    pub kind: ValueKind,
    /// One line for the OpenAPI document and error messages.
    pub doc: &'static str,
    /// The [`PARTS`] that [`Self::from_parts`] adds up.
    pub parts: &'static [&'static str],
    /// The metric from the sums of its parts over rows that each hold a
    /// part's value for a group (`sum(p_events)`), so that it can be computed
    /// from the hourly rollup and raw events together; `None` for the
    /// distinct counts, which do not add up across hours or combinations.
    pub from_parts: Option<&'static str>,
}

/// Every metric a custom query may ask for.
pub const METRICS: &[MetricDef] = &[
    MetricDef {
        name: "event_count",
        sql: "count()",
        columns: &[],
        kind: ValueKind::Count,
        doc: "events",
        parts: &["p_events"],
        from_parts: Some("sum(p_events)"),
    },
    MetricDef {
        name: "unique_users",
        sql: "ifNull(uniqExact(user_id), 0)",
        columns: &["user_id"],
        kind: ValueKind::Count,
        doc: "distinct user_id (events without one are not counted)",
        parts: &[],
        from_parts: None,
    },
    MetricDef {
        name: "unique_sessions",
        sql: "uniqExact(session_id)",
        columns: &["session_id"],
        kind: ValueKind::Count,
        doc: "distinct session_id",
        parts: &[],
        from_parts: None,
    },
    MetricDef {
        name: "unique_videos",
        sql: "uniqExact(video_id)",
        columns: &["video_id"],
        kind: ValueKind::Count,
        doc: "distinct video_id",
        parts: &[],
        from_parts: None,
    },
    MetricDef {
        name: "views",
        sql: "countIf(event_type = 'video_start')",
        columns: &["event_type"],
        kind: ValueKind::Count,
        doc: "video_start events (each opens one view)",
        parts: &["p_starts"],
        from_parts: Some("sum(p_starts)"),
    },
    MetricDef {
        name: "errors",
        sql: "countIf(event_type = 'video_error')",
        columns: &["event_type"],
        kind: ValueKind::Count,
        doc: "video_error events",
        parts: &["p_errors"],
        from_parts: Some("sum(p_errors)"),
    },
    MetricDef {
        name: "fatal_errors",
        sql: "countIf(event_type = 'video_error' AND fatal = 1)",
        columns: &["event_type", "fatal"],
        kind: ValueKind::Count,
        doc: "video_error events that ended playback",
        parts: &["p_fatal"],
        from_parts: Some("sum(p_fatal)"),
    },
    MetricDef {
        name: "error_rate",
        sql: "if(count() = 0, 0, countIf(event_type = 'video_error') / count())",
        columns: &["event_type"],
        kind: ValueKind::Ratio,
        doc: "errors / event_count, 0..1 (0 when there are no events)",
        parts: &["p_events", "p_errors"],
        from_parts: Some("if(sum(p_events) = 0, 0, sum(p_errors) / sum(p_events))"),
    },
    MetricDef {
        name: "buffer_events",
        sql: "countIf(event_type = 'video_buffer')",
        columns: &["event_type"],
        kind: ValueKind::Count,
        doc: "video_buffer events",
        parts: &["p_buffers"],
        from_parts: Some("sum(p_buffers)"),
    },
    MetricDef {
        name: "buffer_duration_ms",
        sql: "sum(ifNull(buffer_duration_ms, 0))",
        columns: &["buffer_duration_ms"],
        kind: ValueKind::Count,
        doc: "sum of buffer_duration_ms",
        parts: &["p_buffer_ms"],
        from_parts: Some("sum(p_buffer_ms)"),
    },
    MetricDef {
        name: "avg_bitrate_kbps",
        sql: "avg(bitrate_kbps)",
        columns: &["bitrate_kbps"],
        kind: ValueKind::Mean,
        doc: "mean bitrate_kbps of the events that report one; null when none does",
        parts: &["p_bitrate_sum", "p_bitrate_n"],
        from_parts: Some("if(sum(p_bitrate_n) = 0, NULL, sum(p_bitrate_sum) / sum(p_bitrate_n))"),
    },
    MetricDef {
        name: "avg_startup_time_ms",
        sql: "avg(startup_time_ms)",
        columns: &["startup_time_ms"],
        kind: ValueKind::Mean,
        doc: "mean startup_time_ms of the events that report one; null when none does",
        parts: &["p_startup_sum", "p_startup_n"],
        from_parts: Some("if(sum(p_startup_n) = 0, NULL, sum(p_startup_sum) / sum(p_startup_n))"),
    },
    MetricDef {
        name: "seeks",
        sql: "countIf(event_type = 'seek')",
        columns: &["event_type"],
        kind: ValueKind::Count,
        doc: "seek events",
        parts: &["p_seeks"],
        from_parts: Some("sum(p_seeks)"),
    },
    MetricDef {
        name: "quality_changes",
        sql: "countIf(event_type = 'quality_change')",
        columns: &["event_type"],
        kind: ValueKind::Count,
        doc: "quality_change events",
        parts: &["p_quality_changes"],
        from_parts: Some("sum(p_quality_changes)"),
    },
    MetricDef {
        name: "completions",
        sql: "countIf(event_type = 'video_complete')",
        columns: &["event_type"],
        kind: ValueKind::Count,
        doc: "video_complete events",
        parts: &["p_completions"],
        from_parts: Some("sum(p_completions)"),
    },
];

/// Where a part's value per group comes from in the hourly rollup
/// ([`crate::hourly::EVENTS_HOURLY_TABLE`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Rolled {
    /// A column of the rollup holding the part's value for its combination,
    /// computed by [`PartDef::raw`] when the hour is rolled up.
    Column(&'static str),
    /// The `event_count` of the combinations of this `event_type` (the
    /// part is `countIf(event_type = '…')` over the raw events).
    EventsOfType(&'static str),
}

/// One additive part of the metrics: a value per group that adds up across
/// hours and dimension combinations, computed over deduplicated events
/// (`raw`) or over the hourly rollup's rows ([`Rolled`]).
#[derive(Debug, PartialEq, Eq)]
pub struct PartDef {
    pub name: &'static str,
    /// The aggregate over deduplicated events (a `UInt64`).
    pub raw: &'static str,
    /// The event columns `raw` reads.
    pub columns: &'static [&'static str],
    pub rolled: Rolled,
}

/// Every part a metric's [`MetricDef::from_parts`] may add up.
pub const PARTS: &[PartDef] = &[
    PartDef { name: "p_events", raw: "count()", columns: &[], rolled: Rolled::Column("event_count") },
    PartDef {
        name: "p_starts",
        raw: "countIf(event_type = 'video_start')",
        columns: &["event_type"],
        rolled: Rolled::EventsOfType("video_start"),
    },
    PartDef {
        name: "p_errors",
        raw: "countIf(event_type = 'video_error')",
        columns: &["event_type"],
        rolled: Rolled::EventsOfType("video_error"),
    },
    PartDef {
        name: "p_fatal",
        raw: "countIf(event_type = 'video_error' AND fatal = 1)",
        columns: &["event_type", "fatal"],
        rolled: Rolled::Column("fatal_errors"),
    },
    PartDef {
        name: "p_buffers",
        raw: "countIf(event_type = 'video_buffer')",
        columns: &["event_type"],
        rolled: Rolled::EventsOfType("video_buffer"),
    },
    PartDef {
        name: "p_buffer_ms",
        raw: "sum(toUInt64(ifNull(buffer_duration_ms, 0)))",
        columns: &["buffer_duration_ms"],
        rolled: Rolled::Column("buffer_ms_sum"),
    },
    PartDef {
        name: "p_bitrate_sum",
        raw: "sum(toUInt64(ifNull(bitrate_kbps, 0)))",
        columns: &["bitrate_kbps"],
        rolled: Rolled::Column("bitrate_sum"),
    },
    PartDef {
        name: "p_bitrate_n",
        raw: "toUInt64(count(bitrate_kbps))",
        columns: &["bitrate_kbps"],
        rolled: Rolled::Column("bitrate_count"),
    },
    PartDef {
        name: "p_startup_sum",
        raw: "sum(toUInt64(ifNull(startup_time_ms, 0)))",
        columns: &["startup_time_ms"],
        rolled: Rolled::Column("startup_sum"),
    },
    PartDef {
        name: "p_startup_n",
        raw: "toUInt64(count(startup_time_ms))",
        columns: &["startup_time_ms"],
        rolled: Rolled::Column("startup_count"),
    },
    PartDef {
        name: "p_seeks",
        raw: "countIf(event_type = 'seek')",
        columns: &["event_type"],
        rolled: Rolled::EventsOfType("seek"),
    },
    PartDef {
        name: "p_quality_changes",
        raw: "countIf(event_type = 'quality_change')",
        columns: &["event_type"],
        rolled: Rolled::EventsOfType("quality_change"),
    },
    PartDef {
        name: "p_completions",
        raw: "countIf(event_type = 'video_complete')",
        columns: &["event_type"],
        rolled: Rolled::EventsOfType("video_complete"),
    },
];

pub fn part(name: &str) -> Option<&'static PartDef> {
    PARTS.iter().find(|p| p.name == name)
}

/// One dimension: a name to group (and maybe filter) by and its SQL.
#[derive(Debug, PartialEq, Eq)]
pub struct DimensionDef {
    pub name: &'static str,
    pub sql: &'static str,
    pub columns: &'static [&'static str],
    pub kind: ValueKind,
    /// `false` for the derived time dimensions (`hour`, `day`): select times with `start`/`end`.
    pub filterable: bool,
    pub doc: &'static str,
}

const fn column(name: &'static str, columns: &'static [&'static str], doc: &'static str) -> DimensionDef {
    DimensionDef { name, sql: name, columns, kind: ValueKind::Text, filterable: true, doc }
}

/// Every dimension a custom query may group by; the filterable ones may be filtered on.
///
/// `hour` and `day` are computed from the epoch seconds, not with `toHour` /
/// `toDate`, so that they are UTC whatever the server's time zone.
pub const DIMENSIONS: &[DimensionDef] = &[
    column("event_type", &["event_type"], "one of the nine event types"),
    column("video_id", &["video_id"], "the video"),
    column("device_type", &["device_type"], "desktop, mobile, tv, ... ('' when not reported)"),
    column("browser", &["browser"], "user agent family ('' when not reported)"),
    column("os", &["os"], "operating system ('' when not reported)"),
    column("country", &["country"], "ISO 3166-1 alpha-2 code ('' when not reported)"),
    column("quality", &["quality"], "rendition label such as 720p ('' when not reported)"),
    column("cdn", &["cdn"], "CDN that served the segment ('' when not reported)"),
    DimensionDef {
        name: "hour",
        sql: "toUInt8(intDiv(toUInt32(timestamp) % 86400, 3600))",
        columns: &["timestamp"],
        kind: ValueKind::Count,
        filterable: false,
        doc: "hour of day in UTC, 0-23 (group by only)",
    },
    DimensionDef {
        name: "day",
        sql: "intDiv(toUInt32(timestamp), 86400)",
        columns: &["timestamp"],
        kind: ValueKind::Day,
        filterable: false,
        doc: "calendar date in UTC, YYYY-MM-DD (group by only)",
    },
];

/// A time bucket size.
#[derive(Debug, PartialEq, Eq)]
pub struct GranularityDef {
    pub name: &'static str,
    /// The bucket start: epoch seconds rounded down to `seconds`.
    pub sql: &'static str,
    pub seconds: i64,
    /// Longest `end - start` allowed with this granularity, in seconds.
    pub max_range_seconds: i64,
    pub max_range_text: &'static str,
}

const DAY_SECONDS: i64 = 86_400;

/// Longest range without a granularity (and with `day`).
pub const MAX_RANGE_SECONDS: i64 = 366 * DAY_SECONDS;
pub const MAX_RANGE_TEXT: &str = "366 days";

pub const GRANULARITIES: &[GranularityDef] = &[
    GranularityDef {
        name: "minute",
        sql: "intDiv(toUInt32(timestamp), 60) * 60",
        seconds: 60,
        max_range_seconds: DAY_SECONDS,
        max_range_text: "24 hours",
    },
    GranularityDef {
        name: "hour",
        sql: "intDiv(toUInt32(timestamp), 3600) * 3600",
        seconds: 3600,
        max_range_seconds: 31 * DAY_SECONDS,
        max_range_text: "31 days",
    },
    GranularityDef {
        name: "day",
        sql: "intDiv(toUInt32(timestamp), 86400) * 86400",
        seconds: DAY_SECONDS,
        max_range_seconds: MAX_RANGE_SECONDS,
        max_range_text: MAX_RANGE_TEXT,
    },
];

/// A filter comparison: `{sql_prefix}{column}{sql_suffix}`, whose one `?` is
/// the bound value (a string, or an array of strings for the list ops).
#[derive(Debug, PartialEq, Eq)]
pub struct OpDef {
    pub name: &'static str,
    pub sql_prefix: &'static str,
    pub sql_suffix: &'static str,
    /// `true` when the filter takes `values` (a list), `false` for `value`.
    pub takes_list: bool,
    pub doc: &'static str,
}

/// `has(?, column)` rather than `column IN ?`: ClickHouse 18.16 cannot bind an
/// array to `IN`, and `has` behaves the same on both versions.
pub const OPS: &[OpDef] = &[
    OpDef { name: "eq", sql_prefix: "", sql_suffix: " = ?", takes_list: false, doc: "the dimension equals `value`" },
    OpDef {
        name: "neq",
        sql_prefix: "",
        sql_suffix: " != ?",
        takes_list: false,
        doc: "the dimension differs from `value`",
    },
    OpDef {
        name: "in",
        sql_prefix: "has(?, ",
        sql_suffix: ")",
        takes_list: true,
        doc: "the dimension is one of `values`",
    },
    OpDef {
        name: "not_in",
        sql_prefix: "NOT has(?, ",
        sql_suffix: ")",
        takes_list: true,
        doc: "the dimension is none of `values`",
    },
];

pub fn metric(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.name == name)
}

pub fn dimension(name: &str) -> Option<&'static DimensionDef> {
    DIMENSIONS.iter().find(|d| d.name == name)
}

pub fn granularity(name: &str) -> Option<&'static GranularityDef> {
    GRANULARITIES.iter().find(|g| g.name == name)
}

pub fn op(name: &str) -> Option<&'static OpDef> {
    OPS.iter().find(|o| o.name == name)
}

/// `a, b, c` of the names of a table, for messages.
pub fn names<T>(table: &[T], name: impl Fn(&T) -> &'static str) -> String {
    table.iter().map(name).collect::<Vec<_>>().join(", ")
}

pub fn metric_names() -> String {
    names(METRICS, |m| m.name)
}

pub fn dimension_names() -> String {
    names(DIMENSIONS, |d| d.name)
}

pub fn filterable_dimension_names() -> String {
    DIMENSIONS.iter().filter(|d| d.filterable).map(|d| d.name).collect::<Vec<_>>().join(", ")
}

pub fn granularity_names() -> String {
    names(GRANULARITIES, |g| g.name)
}

pub fn op_names() -> String {
    names(OPS, |o| o.name)
}
