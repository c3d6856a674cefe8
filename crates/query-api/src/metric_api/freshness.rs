//! Which windows of a range the aggregated tables answer and which must be
//! computed from the raw events (docs/metrics.md, "Pre-aggregated tables and
//! freshness").

use chrono::{DateTime, Utc};
use metrics_sql::{
    rows,
    views::{self, Scope},
    windows::{self, Job, Split},
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
    let horizon = windows::horizon(grain, now.timestamp().max(0) as u64, lateness.as_secs());
    let markers = rows::fetch_markers(client, job, first, last + 1);
    if last < horizon {
        // Every window is final: the markers alone decide.
        return Ok(windows::split(windows, &markers.await?, None, horizon));
    }
    // Some window is still open to late events: its check runs beside the
    // markers' read (one round trip of latency, not two in a row). It decides
    // whether an aggregated window is still exact, and which open windows
    // hold no view of the scope at all (the open hour of most videos), which
    // a read then skips.
    let (markers, last_inserted) = tokio::join!(markers, views::fetch_last_inserted(client, scope, grain, horizon));
    Ok(windows::split(windows, &markers?, Some(&last_inserted?), horizon))
}
