//! Which windows of a range the aggregated tables answer and which must be
//! computed from the raw events (docs/metrics.md, "Pre-aggregated tables and
//! freshness").

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use metrics_sql::{
    days,
    facts::{self, PassRow, StoredFacts, Touched},
    rows,
    views::{self, Scope},
    windows::{self, Grain, Job, Marker, Split, VIEW_SPAN_MS},
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
    if job == Job::VideoMetrics && scope == Scope::All {
        return top_videos_split(client, windows, horizon, config).await;
    }
    let markers = rows::fetch_markers(client, job, first, last + 1);
    if last < horizon {
        // Every window is final: the markers alone decide.
        return Ok(windows::split(windows, &markers.await?, None, horizon));
    }
    if let (Scope::Video(video_id), true) = (scope, config.stored_facts != StoredFactsUse::Off) {
        // A busy video answers its open hours as of the newest pass; the
        // others read exactly, checking their views' last inserts after.
        let from = grain.start_of(horizon);
        let (markers, pass, views) = tokio::join!(
            markers,
            facts::fetch_newest_pass(client),
            facts::fetch_video_pass_views(client, video_id, from)
        );
        let (markers, pass) = (markers?, pass?);
        if let Some(pass) = &pass
            && video_answers_from_pass(pass, views?, config)
            && let Some(split) = windows::split_as_of_pass(windows, &markers, horizon, pass.from_ms, pass.covered_until)
        {
            return Ok(split);
        }
        let last_inserted = views::fetch_last_inserted(client, scope, grain, horizon).await?;
        return exact_scoped_split(client, windows, &markers, &last_inserted, pass, grain, horizon, config, scope)
            .await;
    }
    // Some window is still open to late events: its check runs beside the
    // markers' read (one round trip of latency, not two in a row). It decides
    // whether an aggregated window is still exact, and which open windows
    // hold no view of the scope at all (the open hour of most videos), which
    // a read then skips.
    let pass = async {
        match config.stored_facts {
            StoredFactsUse::Off => Ok(None),
            _ => facts::fetch_newest_pass(client).await,
        }
    };
    let (markers, last_inserted, pass) =
        tokio::join!(markers, views::fetch_last_inserted(client, scope, grain, horizon), pass);
    exact_scoped_split(client, windows, &markers?, &last_inserted?, pass?, grain, horizon, config, scope).await
}

/// The exact split of a video or user read: the markers and the open windows'
/// last inserts decide, and the raw windows use the newest `pass`'s stored
/// facts when they can ([`scoped_facts`]).
#[allow(clippy::too_many_arguments)]
async fn exact_scoped_split(
    client: &clickhouse::Client,
    windows: &[u32],
    markers: &BTreeMap<u32, Marker>,
    last_inserted: &BTreeMap<u32, u32>,
    pass: Option<PassRow>,
    grain: Grain,
    horizon: u32,
    config: &FreshnessConfig,
    scope: Scope<'_>,
) -> Result<Split, ApiError> {
    let mut split = exact_split(windows, markers, last_inserted, grain, horizon, None);
    if let Some(pass) = pass {
        split.facts = scoped_facts(client, &split, last_inserted, grain, &pass, config, scope).await?;
    }
    Ok(split)
}

/// Whether a video's read answers its open hours from `pass`'s hour rows of
/// the video: the pass is recent enough and they count enough of its views
/// (`video_from_pass_min_views`, `video_from_pass_max_lag`).
fn video_answers_from_pass(pass: &PassRow, views: u64, config: &FreshnessConfig) -> bool {
    let max_lag = secs(config.video_from_pass_max_lag);
    views >= config.video_from_pass_min_views && pass.covered_until.saturating_add(max_lag) >= pass.now
}

/// How a video or user read takes its raw windows from the newest facts
/// `pass`, if at all:
///
/// - settled ([`settled_facts`]): from the stored facts alone;
/// - otherwise, with a recent pass: the stored facts of the keys not touched
///   since it, and a rebuild of the touched keys, listed once here (at most
///   `facts_listed_keys_max`; [`Touched::Listed`]). Exact at once too: a
///   busy video rebuilds its last seconds' views, not its open hour;
/// - more keys than that: with `stored_facts = "all"` the keys touched up
///   to the read margin ([`Touched::Before`]), else the whole rebuild.
async fn scoped_facts(
    client: &clickhouse::Client,
    split: &Split,
    last_inserted: &BTreeMap<u32, u32>,
    grain: Grain,
    pass: &PassRow,
    config: &FreshnessConfig,
    scope: Scope<'_>,
) -> Result<Option<StoredFacts>, ApiError> {
    if let Some(settled) = settled_facts(split, last_inserted, grain, pass) {
        return Ok(Some(settled));
    }
    let pass_facts = StoredFacts::settled(pass.covered_until, pass.from_ms);
    if !(recent(pass, config) && pass_facts.covers(grain, &split.raw)) {
        return Ok(None);
    }
    let from = grain.start_of(split.raw[0]);
    let limit = config.facts_listed_keys_max;
    Ok(match facts::fetch_touched_keys(client, scope, pass.covered_until, from, limit).await? {
        Some(keys) => Some(StoredFacts { touched: Touched::Listed(keys), ..pass_facts }),
        None => stored_facts(pass, config, scope),
    })
}

/// The stored facts alone, when nothing of the split's raw windows was
/// inserted after `pass` (by the freshness check's `last_inserted`, per
/// window) and the pass stored facts for all of them: exact at once, and no
/// view rebuild (one costs 18.16 tens of milliseconds even when it finds
/// little). Most videos and users have no view with a row younger than the
/// last pass, a few seconds old.
fn settled_facts(
    split: &Split,
    last_inserted: &BTreeMap<u32, u32>,
    grain: Grain,
    pass: &PassRow,
) -> Option<StoredFacts> {
    let settled = StoredFacts::settled(pass.covered_until, pass.from_ms);
    let untouched = split.raw.iter().all(|w| last_inserted.get(w).is_some_and(|&t| t <= pass.covered_until));
    (untouched && settled.covers(grain, &split.raw)).then_some(settled)
}

/// [`split`] for top videos (`windows` ascending hours, not empty).
///
/// The newest facts pass is read first when a window is open: on a busy
/// platform its per-video totals answer the open hours (as of the pass);
/// otherwise the exact read, which the pass's stored facts speed up. Whole
/// days answered from `video_metrics` are then read from their rollup when
/// it is of the day's newest hour runs ([`days::use_rollups`]).
async fn top_videos_split(
    client: &clickhouse::Client,
    windows: &[u32],
    horizon: u32,
    config: &FreshnessConfig,
) -> Result<Split, ApiError> {
    let (first, last) = (windows[0], windows[windows.len() - 1]);
    let open = last >= horizon;
    let pass = async {
        match open {
            true => facts::fetch_newest_pass(client).await,
            false => Ok(None),
        }
    };
    let span = days::days_of(first..last + 1);
    let (markers, pass, rollups) = tokio::join!(
        rows::fetch_markers(client, Job::VideoMetrics, first, last + 1),
        pass,
        days::fetch_records(client, span.start, span.end)
    );
    let (markers, pass, rollups) = (markers?, pass?, rollups?);
    let as_of_pass = pass
        .filter(|pass| answers_from_pass(pass, config))
        .and_then(|pass| windows::split_as_of_pass(windows, &markers, horizon, pass.from_ms, pass.covered_until));
    let mut split = match (open, as_of_pass) {
        (false, _) => windows::split(windows, &markers, None, horizon),
        (true, Some(split)) => split,
        (true, None) => {
            let last_inserted = views::fetch_last_inserted(client, Scope::All, Grain::Hour, horizon).await?;
            let stored = pass.and_then(|pass| stored_facts(&pass, config, Scope::All));
            exact_split(windows, &markers, &last_inserted, Grain::Hour, horizon, stored)
        }
    };
    days::use_rollups(&mut split, &markers, &rollups);
    Ok(split)
}

/// The split of an exact read: the markers and the open windows' last
/// inserts decide, the raw windows use the `stored` facts when given.
fn exact_split(
    windows: &[u32],
    markers: &BTreeMap<u32, Marker>,
    last_inserted: &BTreeMap<u32, u32>,
    grain: Grain,
    horizon: u32,
    stored: Option<StoredFacts>,
) -> Split {
    let mut split = windows::split(windows, markers, Some(last_inserted), horizon);
    split.facts = stored;
    // aggregator-cron keeps the time-clustered copy for at least the lateness
    // plus two days (retention.events_by_time_days), so it holds everything a
    // rebuild of windows from the horizon on reads (they look back one day).
    split.by_time_from_ms = Some(grain.start_of(horizon).saturating_sub(VIEW_SPAN_MS / 1000) * 1000);
    split
}

/// Whether top videos answers the open hours from `pass`'s totals: the pass
/// is recent enough and counted enough views in its newest hours
/// (`top_from_pass_min_views`, `top_from_pass_max_lag`).
fn answers_from_pass(pass: &PassRow, config: &FreshnessConfig) -> bool {
    let max_lag = secs(config.top_from_pass_max_lag);
    pass.open_views >= config.top_from_pass_min_views && pass.covered_until.saturating_add(max_lag) >= pass.now
}

/// The newest facts pass as a read that rebuilds the keys touched up to the
/// read margin uses it, when stored facts are enabled (`"top"` or `"all"`;
/// video and user reads list their keys first, see [`scoped_facts`]) and
/// the pass covers inserts up to `facts_max_staleness` ago. The touched keys
/// are those inserted after the pass and before ClickHouse's clock when the
/// pass was read, less `facts_read_margin` ([`Touched::Before`]).
fn stored_facts(pass: &PassRow, config: &FreshnessConfig, scope: Scope<'_>) -> Option<StoredFacts> {
    let margin = secs(config.facts_read_margin);
    let enabled = match config.stored_facts {
        StoredFactsUse::Off => false,
        StoredFactsUse::Top => scope == Scope::All,
        StoredFactsUse::All => true,
    };
    (enabled && recent(pass, config)).then(|| StoredFacts {
        covered_until: pass.covered_until,
        from_ms: pass.from_ms,
        touched: Touched::Before(pass.now.saturating_sub(margin)),
    })
}

/// Whether stored facts are enabled and `pass` covers inserts up to
/// `facts_max_staleness` ago (older, the aggregator is behind or down, and
/// the keys touched since would cost more than a rebuild).
fn recent(pass: &PassRow, config: &FreshnessConfig) -> bool {
    config.stored_facts != StoredFactsUse::Off
        && pass.covered_until.saturating_add(secs(config.facts_max_staleness)) >= pass.now
}

fn secs(duration: std::time::Duration) -> u32 {
    u32::try_from(duration.as_secs()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_windows_with_nothing_inserted_after_the_pass_read_its_facts_alone() {
        let pass = PassRow { version: 1, covered_until: 1_000, from_ms: 10 * 3_600_000, open_views: 0, now: 5_000 };
        let split = |raw: Vec<u32>| Split { raw, ..Split::default() };
        let settled = |raw: Vec<u32>, last: &[(u32, u32)]| {
            settled_facts(&split(raw), &last.iter().copied().collect(), Grain::Hour, &pass)
        };
        assert_eq!(settled(vec![10, 12], &[(10, 999), (12, 1_000)]), Some(StoredFacts::settled(1_000, pass.from_ms)));
        // One window with a younger row keeps the whole rebuild…
        assert_eq!(settled(vec![10, 12], &[(10, 999), (12, 1_001)]), None);
        // …and so do a window the check did not cover (before the horizon)
        // and a window before the pass's facts begin.
        assert_eq!(settled(vec![10, 12], &[(12, 3)]), None);
        assert_eq!(settled(vec![9, 12], &[(9, 3), (12, 3)]), None);
        assert_eq!(settled(vec![], &[]), None);
    }

    #[test]
    fn top_videos_answer_as_of_a_pass_only_when_it_is_busy_and_recent() {
        let config = FreshnessConfig::default(); // 20,000 views, 30 s
        let pass = |open_views: u64, lag: u32| PassRow {
            version: 1,
            covered_until: 1_000,
            from_ms: 0,
            open_views,
            now: 1_000 + lag,
        };
        assert!(answers_from_pass(&pass(20_000, 30), &config));
        assert!(!answers_from_pass(&pass(19_999, 0), &config), "a quiet platform reads exactly");
        assert!(!answers_from_pass(&pass(1_000_000, 31), &config), "a pass too far behind");
        let always = FreshnessConfig { top_from_pass_min_views: 0, ..FreshnessConfig::default() };
        assert!(answers_from_pass(&pass(0, 5), &always));
    }

    #[test]
    fn a_video_answers_as_of_a_pass_only_when_busy_and_the_pass_recent() {
        let config = FreshnessConfig::default(); // 5,000 views, 30 s
        let pass = |lag: u32| PassRow { version: 1, covered_until: 1_000, from_ms: 0, open_views: 0, now: 1_000 + lag };
        assert!(video_answers_from_pass(&pass(30), 5_000, &config));
        assert!(!video_answers_from_pass(&pass(0), 4_999, &config), "a quiet video reads exactly");
        assert!(!video_answers_from_pass(&pass(31), 1_000_000, &config), "a pass too far behind");
        let never = FreshnessConfig { video_from_pass_min_views: 1_000_000_000_000, ..FreshnessConfig::default() };
        assert!(!video_answers_from_pass(&pass(0), 1_000_000, &never));
    }
}
