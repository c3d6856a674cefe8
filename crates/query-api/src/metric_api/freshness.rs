//! Which windows of a range the aggregated tables answer and which must be
//! computed from the raw events (docs/metrics.md, "Pre-aggregated tables and
//! freshness").

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use metrics_sql::{
    rows::{self, LastInsertedRow, MarkerRow},
    views::{self, Scope},
    windows::{self, Job, Marker, Split},
};

use crate::error::ApiError;

/// Splits `windows` (ascending, of `job`'s grain) for `scope` at `now`.
///
/// Windows that ended more than `lateness` ago are final: aggregated if the
/// aggregator recorded them, raw otherwise. Younger windows are aggregated
/// only when none of their views received a row after the aggregator's mark.
pub async fn split(
    client: &clickhouse::Client,
    job: Job,
    scope: Scope<'_>,
    windows: &[u32],
    now: DateTime<Utc>,
    lateness: std::time::Duration,
) -> Result<Split, ApiError> {
    let (Some(&first), Some(&last)) = (windows.first(), windows.last()) else {
        return Ok(Split::default());
    };
    let grain = job.grain();
    let markers: BTreeMap<u32, Marker> = rows::markers(job, first, last + 1)
        .query(client)
        .fetch_all::<MarkerRow>()
        .await?
        .into_iter()
        .map(|m| (m.window, Marker { covered_until: m.covered_until, version: m.version }))
        .collect();
    // One window of slack below the lateness keeps the horizon conservative.
    let now_secs = now.timestamp().max(0) as u64;
    let horizon = grain.index_of(now_secs.saturating_sub(lateness.as_secs())).saturating_sub(1);
    let mut last_inserted = BTreeMap::new();
    let needs_check = windows.iter().any(|w| *w >= horizon && markers.contains_key(w));
    if needs_check {
        let horizon_ms = grain.start_of(horizon) * 1000;
        last_inserted = views::last_inserted_by_window(scope, grain, horizon_ms)
            .query(client)
            .fetch_all::<LastInsertedRow>()
            .await?
            .into_iter()
            .map(|r| (r.window, r.last_inserted))
            .collect();
    }
    Ok(windows::split(windows, &markers, &last_inserted, horizon))
}
