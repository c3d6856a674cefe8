//! Running a [`CompiledQuery`] on ClickHouse and shaping its answer.
//!
//! Results come back as `JSONCompact` (rows as arrays, in the compiled
//! column order), which ClickHouse 18.16 and current releases both write.
//! 18.16 quotes 64-bit integers (`"12"`) and current releases may not, so
//! each value is normalised by its column's [`ValueKind`].

use std::{borrow::Cow, time::Instant};

use anyhow::{Context as _, anyhow, bail};
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta};
use clickhouse::Client;
use metrics_sql::{hourly, rows, windows::Job};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use utoipa::ToSchema;

use super::{
    compile::{CompiledQuery, OutputColumn},
    lists::ValueKind,
};
use crate::error::ApiError;

/// The answer of `POST /api/metrics/query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueryResponse {
    /// Column names in order: `time` (with a granularity), the `group_by` dimensions, the metrics.
    pub columns: Vec<String>,
    /// One object per row, keyed by column name. `time` is an RFC 3339 UTC time, `day` a
    /// `YYYY-MM-DD` date, `hour` and counts integers, `error_rate` a number, the `avg_*`
    /// metrics numbers or null.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Value>>,
    /// `true` when more than `limit` rows matched; `rows` holds the first `limit`.
    pub truncated: bool,
    /// How long ClickHouse took to answer, in milliseconds.
    pub sql_ms: u64,
}

/// Runs `compiled`; ClickHouse out of reach is `Unavailable`, anything else
/// `Internal`. With `rollup`, the whole hours the hourly rollup holds are
/// read from it ([`hourly::rolled_hours`]), with the rows inserted after
/// their run from the raw events.
pub async fn run(client: &Client, compiled: &CompiledQuery, rollup: bool) -> Result<QueryResponse, ApiError> {
    let started = Instant::now();
    let rolled = match compiled.rollup_hours().filter(|_| rollup) {
        Some(hours) => {
            let (markers, last_inserted) = tokio::try_join!(
                rows::fetch_markers(client, Job::EventsHourly, hours.start, hours.end),
                hourly::fetch_last_inserts(client, hours.clone()),
            )?;
            hourly::rolled_hours(hours, &markers, &last_inserted)
        }
        None => Vec::new(),
    };
    let compiled = if rolled.is_empty() { Cow::Borrowed(compiled) } else { Cow::Owned(compiled.with_rolled(&rolled)) };
    tracing::debug!(
        rolled_hours = rolled.len(),
        completed_hours = rolled.iter().filter(|r| r.rows_after.is_some()).count(),
        "custom query planned"
    );
    let mut cursor = compiled.query(client).fetch_bytes("JSONCompact")?;
    let body = cursor.collect().await?;
    let sql_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    shape(&compiled, &body, sql_ms).map_err(|e| ApiError::Internal(e.context("reading the clickhouse answer")))
}

#[derive(Deserialize)]
struct JsonCompact {
    data: Vec<Vec<Value>>,
}

/// The answer from a `JSONCompact` body of `compiled`'s SQL (from ClickHouse
/// 18.16 or a current release). Public for the tests that run the SQL elsewhere.
pub fn shape(compiled: &CompiledQuery, body: &[u8], sql_ms: u64) -> anyhow::Result<QueryResponse> {
    let parsed: JsonCompact = serde_json::from_slice(body).context("not JSONCompact")?;
    let columns = compiled.columns();
    let truncated = parsed.data.len() > compiled.limit();
    let rows = parsed
        .data
        .into_iter()
        .take(compiled.limit())
        .enumerate()
        .map(|(i, row)| {
            if row.len() != columns.len() {
                bail!("row {i} has {} values for {} columns", row.len(), columns.len());
            }
            columns
                .iter()
                .zip(row)
                .map(|(column, value)| {
                    let normalised = normalise(column, value).with_context(|| format!("row {i}"))?;
                    Ok((column.name.to_string(), normalised))
                })
                .collect()
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(QueryResponse { columns: columns.iter().map(|c| c.name.to_string()).collect(), rows, truncated, sql_ms })
}

fn normalise(column: &OutputColumn, value: Value) -> anyhow::Result<Value> {
    let unexpected = |value: &Value| anyhow!("column {}: unexpected value {value} for {:?}", column.name, column.kind);
    Ok(match column.kind {
        ValueKind::Text => match value {
            Value::String(_) => value,
            other => return Err(unexpected(&other)),
        },
        ValueKind::Count => Value::Number(integer(&value).ok_or_else(|| unexpected(&value))?.into()),
        ValueKind::Ratio => Value::Number(float(&value).ok_or_else(|| unexpected(&value))?),
        ValueKind::Mean => match value {
            Value::Null => Value::Null,
            other => Value::Number(float(&other).ok_or_else(|| unexpected(&other))?),
        },
        ValueKind::Day => {
            let days = integer(&value).ok_or_else(|| unexpected(&value))?;
            let date = i64::try_from(days)
                .ok()
                .and_then(TimeDelta::try_days)
                .and_then(|offset| NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(offset))
                .ok_or_else(|| unexpected(&value))?;
            Value::String(date.format("%Y-%m-%d").to_string())
        }
        ValueKind::Time => {
            let seconds = integer(&value).ok_or_else(|| unexpected(&value))?;
            let time = i64::try_from(seconds)
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .ok_or_else(|| unexpected(&value))?;
            Value::String(time.to_rfc3339_opts(SecondsFormat::Secs, true))
        }
    })
}

/// A non-negative integer, as a JSON number or a quoted one.
fn integer(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A finite number, as a JSON number or a quoted one.
fn float(value: &Value) -> Option<Number> {
    let f = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    Number::from_f64(f)
}
