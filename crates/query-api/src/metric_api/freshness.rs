//! Which windows of a range the aggregated tables answer and which must be
//! computed from the raw events (docs/metrics.md, "Pre-aggregated tables and
//! freshness").

use chrono::{DateTime, Utc};
use metrics_sql::{
    facts::{self, StoredFacts},
    rows,
    views::{self, Scope},
    windows::{self, Job, Split, VIEW_SPAN_MS},
};

use crate::{
    config::{FreshnessConfig, StoredFactsUse},
    error::ApiError,
};

/// Splits `windows` (ascending, of `job`'s grain) for `scope` at `now`.
///
/// Windows that ended more than `lateness` ago are final: aggregated if the
/// aggregator recorded them, raw otherwise. Younger windows are aggregated
/// only when none of their views received a row after the aggregator's mark;
/// the others are read from the newest facts pass (when enabled and recent)
/// plus the views touched since it.
pub async fn split(
    client: &clickhouse::Client,
    job: Job,
    scope: Scope<'_>,
    windows: &[u32],
    now: DateTime<Utc>,
    config: &FreshnessConfig,
) -> Result<Split, ApiError> {
    let lateness = config.lateness;
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
    let (markers, last_inserted, pass) = tokio::join!(
        markers,
        views::fetch_last_inserted(client, scope, grain, horizon),
        newest_pass(client, config, scope)
    );
    let mut split = windows::split(windows, &markers?, Some(&last_inserted?), horizon);
    split.facts = pass?;
    // aggregator-cron keeps the time-clustered copy for at least the lateness
    // plus two days (retention.events_by_time_days), so it holds everything a
    // rebuild of windows from the horizon on reads (they look back one day).
    split.by_time_from_ms = Some(grain.start_of(horizon).saturating_sub(VIEW_SPAN_MS / 1000) * 1000);
    Ok(split)
}

/// The newest facts pass as a read of `scope` uses it, when stored facts are
/// enabled for the scope and the pass covers inserts up to
/// `facts_max_staleness` ago. The touched keys a read rebuilds are those
/// inserted after the pass and before ClickHouse's clock when this ran, less
/// `facts_read_margin` (see [`StoredFacts::read_until`]).
async fn newest_pass(
    client: &clickhouse::Client,
    config: &FreshnessConfig,
    scope: Scope<'_>,
) -> Result<Option<StoredFacts>, ApiError> {
    let used = match config.stored_facts {
        StoredFactsUse::Off => false,
        StoredFactsUse::Top => scope == Scope::All,
        StoredFactsUse::All => true,
    };
    if !used {
        return Ok(None);
    }
    let secs = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    let (staleness, margin) = (secs(config.facts_max_staleness), secs(config.facts_read_margin));
    let pass = facts::fetch_newest_pass(client).await?;
    Ok(pass.filter(|pass| pass.covered_until.saturating_add(staleness) >= pass.now).map(|pass| StoredFacts {
        covered_until: pass.covered_until,
        from_ms: pass.from_ms,
        read_until: pass.now.saturating_sub(margin),
    }))
}
