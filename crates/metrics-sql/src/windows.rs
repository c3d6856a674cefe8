//! Aggregation windows: the jobs, their grain, and which windows of a range
//! the pre-aggregated tables can answer.

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};

use crate::Statement;

/// Milliseconds after its `video_start` during which events still belong to a
/// view (docs/metrics.md, "Views"). Later events of the same key are ignored.
pub const VIEW_SPAN_MS: u64 = 24 * 3600 * 1000;

/// The pre-aggregating jobs of aggregator-cron.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Job {
    /// `video_metrics`: per video and hour of view start.
    VideoMetrics,
    /// `user_engagement_daily`: per user and UTC day of view start.
    UserEngagementDaily,
    /// `events_hourly`: the custom query's rollup per UTC hour of event
    /// client time and dimension combination ([`crate::hourly`]).
    EventsHourly,
}

impl Job {
    pub const ALL: [Job; 3] = [Job::VideoMetrics, Job::UserEngagementDaily, Job::EventsHourly];

    /// The job's name, which is also its table's name.
    pub fn name(self) -> &'static str {
        match self {
            Job::VideoMetrics => "video_metrics",
            Job::UserEngagementDaily => "user_engagement_daily",
            Job::EventsHourly => crate::hourly::EVENTS_HOURLY_TABLE,
        }
    }

    pub fn from_name(name: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|job| job.name() == name)
    }

    pub fn grain(self) -> Grain {
        match self {
            Job::VideoMetrics | Job::EventsHourly => Grain::Hour,
            Job::UserEngagementDaily => Grain::Day,
        }
    }
}

/// The length of a window. Windows are aligned to the Unix epoch, so they are
/// UTC hours and UTC days; a window is named by its index, `start / length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grain {
    Hour,
    Day,
}

impl Grain {
    pub fn secs(self) -> u64 {
        match self {
            Grain::Hour => 3600,
            Grain::Day => 86_400,
        }
    }

    pub fn millis(self) -> u64 {
        self.secs() * 1000
    }

    /// The window containing `epoch_secs`.
    pub fn index_of(self, epoch_secs: u64) -> u32 {
        u32::try_from(epoch_secs / self.secs()).expect("windows of this grain fit in u32 until year 2400")
    }

    /// Epoch seconds at which window `index` starts.
    pub fn start_of(self, index: u32) -> u64 {
        u64::from(index) * self.secs()
    }
}

/// Inclusive UTC days `start..=end`: the range of the range endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl DayRange {
    /// Epoch seconds of the range's first instant and of the instant after its last.
    pub fn epoch_bounds(&self) -> (u64, u64) {
        let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp();
        let after = self.end.checked_add_days(Days::new(1)).expect("validated range ends before year 262143");
        (midnight(self.start).max(0) as u64, midnight(after).max(0) as u64)
    }

    /// The window indexes of `grain` in the range, ascending.
    pub fn windows(&self, grain: Grain) -> Vec<u32> {
        let (from, to) = self.epoch_bounds();
        (grain.index_of(from)..grain.index_of(to)).collect()
    }
}

/// The oldest window of `grain` still open to late events at `now_secs`: the
/// one containing `now − lateness`, less one window of slack. Windows before
/// it are final once aggregated. aggregator-cron and query-api both use it.
pub fn horizon(grain: Grain, now_secs: u64, lateness_secs: u64) -> u32 {
    grain.index_of(now_secs.saturating_sub(lateness_secs)).saturating_sub(1)
}

/// The runs of consecutive windows of `windows` (ascending), as
/// `(first, last)` pairs.
pub fn runs(windows: &[u32]) -> Vec<(u32, u32)> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &window in windows {
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(window) => *last = window,
            _ => runs.push((window, window)),
        }
    }
    runs
}

/// How a column holds a time, for [`in_windows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeColumn {
    /// A `DateTime`.
    DateTime,
    /// A `Date` (day windows only).
    Date,
    /// Epoch milliseconds (`UInt64`).
    Millis,
}

/// Appends `(column >= start AND column < end OR …)`, one range per run of
/// consecutive `windows` (ascending indexes of `grain`): whether the time in
/// `column` lies in one of the windows. A range is a pair of comparisons
/// the primary key can use; `has([w1, w2, …], window of column)` compared
/// every row with every window, and with a week of hours (168) it was half
/// of a small video's aggregated read on 18.16 (23 → 12 ms, BENCHMARKS.md).
pub fn in_windows(sql: &mut Statement, column: &str, time: TimeColumn, grain: Grain, windows: &[u32]) {
    if windows.is_empty() {
        sql.sql("0");
        return;
    }
    let bound = |sql: &mut Statement, epoch_secs: u64| match time {
        TimeColumn::DateTime => {
            sql.sql("toDateTime(").bind(epoch_secs).sql(")");
        }
        TimeColumn::Date => {
            sql.sql("toDate(toDateTime(").bind(epoch_secs).sql("))");
        }
        TimeColumn::Millis => {
            sql.bind(epoch_secs * 1000);
        }
    };
    sql.sql("(");
    for (i, (first, last)) in runs(windows).into_iter().enumerate() {
        if i > 0 {
            sql.sql(" OR ");
        }
        sql.sql(&format!("{column} >= "));
        bound(sql, grain.start_of(first));
        sql.sql(&format!(" AND {column} < "));
        bound(sql, grain.start_of(last) + grain.secs());
    }
    sql.sql(")");
}

/// What the aggregator recorded for one window (`aggregation_windows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Every event row inserted up to this time (epoch seconds, inclusive) is in the window's rows.
    pub covered_until: u32,
    pub version: u64,
}

/// Which windows of a range come from the pre-aggregated table and which
/// from the raw events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    pub aggregated: Vec<u32>,
    pub raw: Vec<u32>,
    /// Windows the raw events show to hold no view of the scope: not
    /// aggregated, still open to late events, and without a `video_start` of
    /// the scope in the freshness check. They count as raw windows (the
    /// answer for them comes from the raw events) but a read skips them: a
    /// view rebuild that finds nothing still costs ClickHouse 18.16 tens of
    /// milliseconds of analysis.
    pub empty: Vec<u32>,
    /// The newest facts pass, when the raw windows may be read from its
    /// stored facts (and the touched keys rebuilt): see [`crate::facts`].
    pub facts: Option<crate::facts::StoredFacts>,
    /// [`crate::EVENTS_BY_TIME_TABLE`] holds every event row from this client
    /// time on (epoch ms): a rebuild of every video's views that starts no
    /// earlier reads that time-clustered copy instead of `events`.
    pub by_time_from_ms: Option<u64>,
    /// Hours answered from the newest facts pass's per-video totals
    /// ([`crate::facts::pass_totals`]; top videos on a busy platform).
    pub from_pass: Vec<u32>,
    /// UTC days answered from their rollup ([`crate::days`]; top videos):
    /// their hours are in none of the lists above.
    pub days: Vec<u32>,
    /// When windows come from a pass: its `covered_until` (epoch seconds).
    /// The answer holds every row inserted up to then, and perhaps later
    /// ones, but not necessarily all of them.
    pub as_of: Option<u32>,
}

impl Split {
    /// Where the raw windows' view facts may come from besides `events`.
    pub fn sources(&self) -> crate::rows::Sources<'_> {
        crate::rows::Sources { stored: self.facts.as_ref(), by_time_from_ms: self.by_time_from_ms }
    }

    /// Windows to read from the aggregated table or rebuild from the raw
    /// events (besides any from a pass).
    pub fn reads_tables(&self) -> bool {
        !(self.aggregated.is_empty() && self.raw.is_empty())
    }

    /// No window to read at all: the answer is that of no views.
    pub fn reads_nothing(&self) -> bool {
        !self.reads_tables() && self.from_pass.is_empty() && self.days.is_empty()
    }
}

/// Splits `windows` (ascending hours) for a read of every video as of a facts
/// pass that covers the views starting at or after `from_ms` (epoch ms) with
/// every row inserted up to `covered_until`: windows before `horizon` are
/// final (aggregated when recorded, raw otherwise), the others come from the
/// pass's totals. `None` when the pass does not cover every window from the
/// horizon on.
pub fn split_as_of_pass(
    windows: &[u32],
    markers: &BTreeMap<u32, Marker>,
    horizon: u32,
    from_ms: u64,
    covered_until: u32,
) -> Option<Split> {
    let mut split = split(windows, markers, None, horizon);
    let open: Vec<u32> = windows.iter().copied().filter(|&w| w >= horizon).collect();
    if open.first().is_some_and(|&w| Grain::Hour.start_of(w) * 1000 < from_ms) {
        return None;
    }
    split.aggregated.retain(|&w| w < horizon);
    split.raw.retain(|&w| w < horizon);
    split.as_of = (!open.is_empty()).then_some(covered_until);
    split.from_pass = open;
    Some(split)
}

/// Splits `windows` (ascending) into those the aggregated table answers
/// exactly, those to compute from the raw events, and those without views.
///
/// A window is answered from the table when it has a marker and none of its
/// views received a row after the marker's `covered_until`. `last_inserted`
/// holds, per window at or after `horizon` (the oldest window still open to
/// late events), the latest insert time among its views' rows, and has an
/// entry for every such window where a `video_start` of the scope is stored
/// ([`crate::views::last_inserted_by_window`]); `None` when it was not read
/// (every window is before the horizon). Windows before the horizon are
/// final once aggregated.
pub fn split(
    windows: &[u32],
    markers: &BTreeMap<u32, Marker>,
    last_inserted: Option<&BTreeMap<u32, u32>>,
    horizon: u32,
) -> Split {
    let mut split = Split::default();
    for &window in windows {
        let last = last_inserted.filter(|_| window >= horizon).map(|by_window| by_window.get(&window));
        match (markers.get(&window), last) {
            (Some(_), None) => split.aggregated.push(window),
            (Some(marker), Some(last)) if last.is_none_or(|&last| last <= marker.covered_until) => {
                split.aggregated.push(window)
            }
            (None, Some(None)) => split.empty.push(window),
            _ => split.raw.push(window),
        }
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_answers_the_open_hours_it_covers_and_the_markers_the_final_ones() {
        let markers: BTreeMap<u32, Marker> =
            [(8, Marker { covered_until: 1, version: 1 }), (11, Marker { covered_until: 1, version: 2 })].into();
        let split = split_as_of_pass(&[8, 9, 10, 11, 12], &markers, 10, 10 * 3_600_000, 77).unwrap();
        assert_eq!((split.aggregated, split.raw, split.from_pass), (vec![8], vec![9], vec![10, 11, 12]));
        assert_eq!(split.as_of, Some(77));
        assert!(split_as_of_pass(&[8, 9, 10, 11], &markers, 10, 10 * 3_600_000 + 1, 77).is_none());
        let closed = split_as_of_pass(&[8, 9], &markers, 10, 10 * 3_600_000 + 1, 77).unwrap();
        assert_eq!((closed.from_pass.len(), closed.as_of), (0, None));
    }

    #[test]
    fn windows_are_matched_by_one_range_per_run() {
        assert_eq!(runs(&[3, 4, 5, 9, 11, 12]), vec![(3, 5), (9, 9), (11, 12)]);
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[u32::MAX - 1, u32::MAX]), vec![(u32::MAX - 1, u32::MAX)]);
        let mut sql = Statement::default();
        in_windows(&mut sql, "hour", TimeColumn::DateTime, Grain::Hour, &[1, 2, 4]);
        assert_eq!(
            sql.render(),
            "(hour >= toDateTime(3600) AND hour < toDateTime(10800) OR hour >= toDateTime(14400) AND hour < toDateTime(18000))"
        );
        let mut sql = Statement::default();
        in_windows(&mut sql, "start_ms", TimeColumn::Millis, Grain::Day, &[1]);
        assert_eq!(sql.render(), "(start_ms >= 86400000 AND start_ms < 172800000)");
        let mut sql = Statement::default();
        in_windows(&mut sql, "date", TimeColumn::Date, Grain::Day, &[2]);
        assert_eq!(sql.render(), "(date >= toDate(toDateTime(172800)) AND date < toDate(toDateTime(259200)))");
        let mut sql = Statement::default();
        in_windows(&mut sql, "hour", TimeColumn::DateTime, Grain::Hour, &[]);
        assert_eq!(sql.render(), "0");
    }

    #[test]
    fn windows_are_utc_hours_and_days() {
        // 2025-11-24T16:00:00Z
        assert_eq!(Grain::Hour.start_of(Grain::Hour.index_of(1_764_000_000 + 3599)), 1_764_000_000);
        assert_eq!(Grain::Day.start_of(Grain::Day.index_of(1_764_000_000)), 1_763_942_400);
    }

    #[test]
    fn a_window_is_aggregated_only_with_a_marker_and_no_later_insert() {
        let marker = |covered_until| Marker { covered_until, version: 1 };
        let markers = BTreeMap::from([(10, marker(500)), (11, marker(500)), (12, marker(500)), (3, marker(1))]);
        // 11's views got a row after the marker; 12's did not; 13 was never aggregated.
        let last = BTreeMap::from([(11, 501), (12, 500), (13, 900), (3, 999)]);
        let got = split(&[3, 10, 11, 12, 13], &markers, Some(&last), 5);
        assert_eq!(got, Split { aggregated: vec![3, 10, 12], raw: vec![11, 13], ..Split::default() });
        // Before the horizon a window without a marker is raw; after it, one
        // where no view starts (14) holds nothing, and without the check
        // (None) every unmarked window is raw.
        let got = split(&[2, 10, 13, 14], &markers, Some(&last), 5);
        assert_eq!(got, Split { aggregated: vec![10], raw: vec![2, 13], empty: vec![14], ..Split::default() });
        let got = split(&[2, 3, 14], &markers, None, 5);
        assert_eq!(got, Split { aggregated: vec![3], raw: vec![2, 14], ..Split::default() });
    }

    #[test]
    fn the_horizon_is_one_window_before_the_window_of_now_minus_lateness() {
        // 2025-11-24T16:30:00Z with 48 h of lateness: 2025-11-22T16:30 is in hour H − 48, so H − 49.
        let h = Grain::Hour.index_of(1_764_000_000);
        assert_eq!(horizon(Grain::Hour, 1_764_000_000 + 1_800, 48 * 3600), h - 49);
        assert_eq!(horizon(Grain::Day, 1_764_000_000, 48 * 3600), Grain::Day.index_of(1_764_000_000) - 3);
    }

    #[test]
    fn a_single_day_is_24_hours_from_midnight_utc() {
        let range = DayRange { start: "2025-11-24".parse().unwrap(), end: "2025-11-24".parse().unwrap() };
        assert_eq!(range.epoch_bounds(), (1_763_942_400, 1_763_942_400 + 86_400));
        assert_eq!(range.windows(Grain::Hour).len(), 24);
        assert_eq!(range.windows(Grain::Day), [Grain::Day.index_of(1_763_942_400)]);
    }

    #[test]
    fn job_names_round_trip() {
        for job in Job::ALL {
            assert_eq!(Job::from_name(job.name()), Some(job));
        }
        assert_eq!(Job::from_name("nope"), None);
    }
}
