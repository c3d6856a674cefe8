//! When windows are due and which ones a tick runs: pure functions of the
//! clock, the recorded runs and the ClickHouse freshness records, so the
//! scheduler's decisions are tested without a database or a sleep.

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Range,
};

use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeZone as _, Utc};
use metrics_sql::windows::Grain;

use crate::Trigger;

/// Epoch seconds of `time` (0 for instants before the epoch).
pub fn epoch_secs(time: DateTime<Utc>) -> u64 {
    u64::try_from(time.timestamp()).unwrap_or(0)
}

/// The instant `secs` after the epoch.
pub fn instant(secs: u64) -> DateTime<Utc> {
    Utc.timestamp_opt(i64::try_from(secs).unwrap_or(i64::MAX), 0).single().unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The start of `window` of `grain`.
pub fn window_start(grain: Grain, window: u32) -> DateTime<Utc> {
    instant(grain.start_of(window))
}

/// The newest window of `grain` that is due at `now`: closed, and `offset_secs`
/// past its end. `None` before the epoch's first window is due.
pub fn last_due_window(grain: Grain, offset_secs: u64, now: u64) -> Option<u32> {
    let shifted = now.checked_sub(offset_secs)?;
    grain.index_of(shifted).checked_sub(1)
}

/// The first instant after `now` at which another window of `grain` becomes due.
pub fn next_due_at(grain: Grain, offset_secs: u64, now: u64) -> u64 {
    let len = grain.secs();
    match now.checked_sub(offset_secs) {
        Some(shifted) => (shifted / len + 1) * len + offset_secs,
        None => offset_secs,
    }
}

/// The first instant after `now` at `time` of day (UTC).
pub fn next_daily_at(time: NaiveTime, now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now.date_naive().and_time(time).and_utc();
    if today > now { today } else { today + chrono::Duration::days(1) }
}

/// Today's (UTC) instant at `time` of day.
pub fn today_at(time: NaiveTime, now: DateTime<Utc>) -> DateTime<Utc> {
    now.date_naive().and_time(time).and_utc()
}

/// The start of the UTC day of `now`.
pub fn day_start(now: DateTime<Utc>) -> DateTime<Utc> {
    today_at(NaiveTime::MIN, now)
}

/// The windows a tick catches up, oldest first: every due window after the
/// last succeeded one (`frontier`), or from `lookback_start` without history,
/// up to `last_due`.
pub fn catch_up_range(frontier: Option<u32>, lookback_start: u32, last_due: u32) -> Range<u32> {
    let start = frontier.map_or(lookback_start, |f| f.saturating_add(1));
    start..last_due.saturating_add(1).max(start)
}

/// The trigger of the windows of a catch-up: `schedule` when the scheduler is
/// on time (only the window that just became due), `catch_up` when it is behind.
pub fn catch_up_trigger(range: &Range<u32>) -> Trigger {
    if range.len() == 1 { Trigger::Schedule } else { Trigger::CatchUp }
}

/// How long a window that failed `failures` times in a row waits before its
/// next attempt: `base`, doubled with each further failure, at most `max`.
pub fn retry_delay(failures: u32, base: Duration, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    base.saturating_mul(1 << doublings).min(max)
}

/// What the freshness records say about the windows within the lateness horizon.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freshness {
    /// Per window with views, the latest insert time (epoch seconds) among its views' rows.
    pub last_inserted: BTreeMap<u32, u32>,
    /// Per aggregated window, its record's `covered_until` (epoch seconds).
    pub covered_until: BTreeMap<u32, u32>,
}

/// Which windows a tick may run after catching up.
#[derive(Debug, Clone, Default)]
pub struct LatePlan {
    /// The last due window: later ones are not considered.
    pub last_due: u32,
    /// Windows whose last run failed and whose retry is not due yet: they
    /// wait for it (later windows do not).
    pub waiting: BTreeSet<u32>,
    /// Windows already run in this tick.
    pub already_run: BTreeSet<u32>,
    /// A stale window is recomputed only when its record's `covered_until`
    /// is at or before this time (epoch seconds): the tick's time minus the
    /// minimum recompute interval. Windows with views still in progress get
    /// rows at every tick; this caps how often each is recomputed.
    pub recompute_before: u32,
}

/// The windows to recompute, oldest first, and how many stale windows wait
/// for their recompute interval:
///
/// - a window whose views received rows after its record's `covered_until`
///   is stale (`late_events`), recomputed once its record is older than the
///   interval;
/// - a window with views but no record is missing (`catch_up`), run at once.
///
/// Only due windows are considered; windows waiting for a retry and windows
/// already run in this tick are left out.
pub fn late_windows(freshness: &Freshness, plan: &LatePlan) -> (Vec<(u32, Trigger)>, u64) {
    let mut deferred = 0;
    let windows = freshness
        .last_inserted
        .iter()
        .filter(|&(&window, _)| window <= plan.last_due)
        .filter(|&(window, _)| !plan.already_run.contains(window) && !plan.waiting.contains(window))
        .filter_map(|(&window, &last)| match freshness.covered_until.get(&window) {
            Some(&covered) if covered < last && covered <= plan.recompute_before => Some((window, Trigger::LateEvents)),
            Some(&covered) if covered < last => {
                deferred += 1;
                None
            }
            Some(_) => None,
            None => Some((window, Trigger::CatchUp)),
        })
        .collect();
    (windows, deferred)
}

/// The windows of a backfill over `[from, to)` (epoch seconds): every window
/// that overlaps the range, and among them the ones closed at `now` (the
/// others are not run).
pub fn backfill_windows(grain: Grain, from: u64, to: u64, now: u64) -> (Range<u32>, Range<u32>) {
    let first = grain.index_of(from);
    let end = if to <= from { first } else { grain.index_of(to - 1).saturating_add(1) };
    let all = first..end.max(first);
    let closed_end = grain.index_of(now).clamp(all.start, all.end);
    (all.clone(), all.start..closed_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-11-24T16:00:00Z, the start of hour window H.
    const H_START: u64 = 1_764_000_000;
    const H: u32 = (H_START / 3600) as u32;

    #[test]
    fn an_hour_is_due_five_minutes_after_it_ends() {
        let offset = 300;
        assert_eq!(last_due_window(Grain::Hour, offset, H_START + 3600 + 299), Some(H - 1));
        assert_eq!(last_due_window(Grain::Hour, offset, H_START + 3600 + 300), Some(H));
        assert_eq!(next_due_at(Grain::Hour, offset, H_START + 3600 + 299), H_START + 3600 + 300);
        assert_eq!(next_due_at(Grain::Hour, offset, H_START + 3600 + 300), H_START + 7200 + 300);
    }

    #[test]
    fn a_day_is_due_at_quarter_past_midnight() {
        let day_start = 1_763_942_400; // 2025-11-24T00:00:00Z
        let day = (day_start / 86_400) as u32;
        let offset = 15 * 60;
        assert_eq!(last_due_window(Grain::Day, offset, day_start + 86_400 + offset - 1), Some(day - 1));
        assert_eq!(last_due_window(Grain::Day, offset, day_start + 86_400 + offset), Some(day));
        assert_eq!(next_due_at(Grain::Day, offset, day_start + 3600), day_start + 86_400 + offset);
    }

    #[test]
    fn retention_time_is_today_or_tomorrow() {
        let at = NaiveTime::from_hms_opt(0, 30, 0).unwrap();
        let now = instant(1_763_942_400 + 600); // 00:10
        assert_eq!(next_daily_at(at, now), instant(1_763_942_400 + 1800));
        let now = instant(1_763_942_400 + 1800);
        assert_eq!(next_daily_at(at, now), instant(1_763_942_400 + 86_400 + 1800));
        assert_eq!(today_at(at, now), instant(1_763_942_400 + 1800));
        assert_eq!(day_start(now), instant(1_763_942_400));
    }

    #[test]
    fn catch_up_resumes_after_the_last_success_or_from_the_lookback() {
        assert_eq!(catch_up_range(Some(H), H - 48, H + 4), H + 1..H + 5);
        assert_eq!(catch_up_range(None, H - 48, H + 4), H - 48..H + 5);
        assert_eq!(catch_up_range(Some(H + 4), H - 48, H + 4), H + 5..H + 5);
        assert!(catch_up_range(Some(H + 9), H, H + 4).is_empty(), "a frontier ahead of the clock runs nothing");
        assert_eq!(catch_up_trigger(&(H + 4..H + 5)), Trigger::Schedule);
        assert_eq!(catch_up_trigger(&(H + 1..H + 5)), Trigger::CatchUp);
    }

    #[test]
    fn stale_and_missing_windows_are_recomputed_in_order() {
        let freshness = Freshness {
            last_inserted: BTreeMap::from([(H, 100), (H + 1, 200), (H + 2, 300), (H + 3, 50), (H + 9, 999)]),
            covered_until: BTreeMap::from([(H, 100), (H + 1, 150), (H + 3, 10)]),
        };
        // H is fresh; H+1 got a row after its record; H+2 has views but no record; H+3 is stale;
        // H+9 is not due yet.
        let plan = LatePlan { last_due: H + 5, recompute_before: 1000, ..LatePlan::default() };
        let got = late_windows(&freshness, &plan);
        assert_eq!(
            got,
            (vec![(H + 1, Trigger::LateEvents), (H + 2, Trigger::CatchUp), (H + 3, Trigger::LateEvents)], 0)
        );
        // H+2 waits for its retry, H+1 just ran: only H+3 is left; a failure
        // holds up no later window.
        let waiting =
            LatePlan { waiting: BTreeSet::from([H + 2]), already_run: BTreeSet::from([H + 1]), ..plan.clone() };
        assert_eq!(late_windows(&freshness, &waiting), (vec![(H + 3, Trigger::LateEvents)], 0));
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let (base, max) = (Duration::from_secs(30), Duration::from_secs(900));
        let delays: Vec<u64> = (1..=7).map(|n| retry_delay(n, base, max).as_secs()).collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 900, 900]);
        assert_eq!(retry_delay(0, base, max), base);
        assert_eq!(retry_delay(u32::MAX, base, max), max);
    }

    #[test]
    fn a_stale_window_waits_for_its_recompute_interval_and_a_missing_one_does_not() {
        let freshness = Freshness {
            last_inserted: BTreeMap::from([(H, 500), (H + 1, 500), (H + 2, 500)]),
            covered_until: BTreeMap::from([(H, 100), (H + 1, 400)]),
        };
        // Records older than 300 are due again: H (covered until 100) is, H+1 (400) waits.
        let plan = LatePlan { last_due: H + 5, recompute_before: 300, ..LatePlan::default() };
        assert_eq!(late_windows(&freshness, &plan), (vec![(H, Trigger::LateEvents), (H + 2, Trigger::CatchUp)], 1));
        // At the boundary, and once the interval passed, it is recomputed.
        let later = LatePlan { recompute_before: 400, ..plan };
        assert_eq!(
            late_windows(&freshness, &later),
            (vec![(H, Trigger::LateEvents), (H + 1, Trigger::LateEvents), (H + 2, Trigger::CatchUp)], 0)
        );
    }

    #[test]
    fn backfill_takes_the_windows_overlapping_the_range_and_runs_the_closed_ones() {
        let (all, closed) = backfill_windows(Grain::Hour, H_START, H_START + 3 * 3600, H_START + 10 * 3600);
        assert_eq!((all.clone(), closed), (H..H + 3, H..H + 3));
        // Unaligned bounds take the windows they touch.
        let (all, _) = backfill_windows(Grain::Hour, H_START + 1800, H_START + 3600 + 1, H_START + 10 * 3600);
        assert_eq!(all, H..H + 2);
        // The window in progress and later ones are not run.
        let (all, closed) = backfill_windows(Grain::Hour, H_START, H_START + 5 * 3600, H_START + 2 * 3600 + 10);
        assert_eq!((all, closed), (H..H + 5, H..H + 2));
        let (all, closed) = backfill_windows(Grain::Day, H_START, H_START, H_START);
        assert!(all.is_empty() && closed.is_empty());
    }
}
