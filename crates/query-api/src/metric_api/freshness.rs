//! Which windows of a range the aggregated tables answer and which must be
//! computed from the raw events (docs/metrics.md, "Pre-aggregated tables and
//! freshness").

use std::{collections::BTreeMap, future::Future};

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

const GUESSES: &str = "analytics_service_query_settled_guesses_total";

/// Registers the counter's description (and makes its outcomes appear at 0).
pub fn describe_metrics() {
    metrics::describe_counter!(
        GUESSES,
        "video and user reads run on the guess that nothing of theirs is newer than the aggregates and the \
         newest facts pass, beside the freshness check (freshness.settled_guess); outcome held = the check \
         confirmed it and the answer was used, missed = read again exactly"
    );
    for outcome in ["held", "missed"] {
        metrics::counter!(GUESSES, "outcome" => outcome).increment(0);
    }
}

/// Splits `windows` (ascending hours) of a read of every video (top videos)
/// at `now`.
///
/// Windows that ended more than `lateness` ago are final: aggregated if the
/// aggregator recorded them, raw otherwise. Younger windows are aggregated
/// only when none of their views received a row after the aggregator's mark;
/// the others are read from the newest facts pass: as of it on a busy
/// platform, else its stored facts plus the views touched since it.
pub async fn split_all(
    client: &clickhouse::Client,
    windows: &[u32],
    now: DateTime<Utc>,
    config: &FreshnessConfig,
) -> Result<Split, ApiError> {
    if windows.is_empty() {
        return Ok(Split::default());
    }
    let horizon = windows::horizon(Grain::Hour, now.timestamp().max(0) as u64, config.lateness.as_secs());
    top_videos_split(client, windows, horizon, config).await
}

/// A video's or a user's answer over `windows` (ascending, of `job`'s
/// grain) at `now`, computed by `read` from the split of the windows, which
/// is returned beside it (the answer's `freshness`).
///
/// The split follows the rules of [`split_all`], for `scope`'s views only:
/// a busy video answers its open hours as of the newest pass; otherwise the
/// freshness check (the last inserts of the scope's views per open window)
/// decides which open windows are still aggregated, which are raw and which
/// hold no view of the scope, and the raw windows are read from the newest
/// pass's stored facts, settled or with the keys touched since it rebuilt.
///
/// Most videos and users have nothing newer than their windows' runs and
/// the newest pass, a few seconds old. With `freshness.settled_guess` the
/// read therefore runs on that guess ([`settled_guess`]) *beside* the check
/// instead of after it, and the check then confirms the guess
/// ([`guess_holds`]: the answer is the one the exact read gives) or the read
/// runs again on the exact split: one statement's latency less for most
/// reads, a second read for the others. A video's guess also skips the open
/// hours where the newest pass stored no start of the video
/// ([`facts::VideoPassHours`]), as the exact read skips those where the check
/// finds none: most open hours of a small video.
pub async fn read_scoped<T, F, Fut>(
    client: &clickhouse::Client,
    job: Job,
    scope: Scope<'_>,
    windows: &[u32],
    now: DateTime<Utc>,
    config: &FreshnessConfig,
    read: F,
) -> Result<(Split, T), ApiError>
where
    F: Fn(Split) -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    debug_assert!(scope != Scope::All, "top videos: split_all");
    let (Some(&first), Some(&last)) = (windows.first(), windows.last()) else {
        return answer(Split::default(), &read).await;
    };
    let grain = job.grain();
    let horizon = windows::horizon(grain, now.timestamp().max(0) as u64, config.lateness.as_secs());
    let markers = async { Ok::<_, ApiError>(rows::fetch_markers(client, job, first, last + 1).await?) };
    if last < horizon {
        // Every window is final: the markers alone decide.
        return answer(windows::split(windows, &markers.await?, None, horizon), &read).await;
    }
    let stored = config.stored_facts != StoredFactsUse::Off;
    let scoped = Scoped { client, windows, grain, horizon, config, scope };
    if let (Scope::Video(video_id), true) = (scope, stored) {
        // A busy video answers its open hours as of the newest pass; the
        // others check their views' last inserts after (a busy video's check
        // would cost more than its whole read).
        let (markers, pass, views) = tokio::join!(
            markers,
            facts::fetch_newest_pass(client),
            facts::fetch_video_pass_views(client, video_id, grain.start_of(horizon))
        );
        let (markers, pass, stored_hours) = (markers?, pass?, views?);
        if let Some(pass) = &pass
            && video_answers_from_pass(pass, stored_hours.views, config)
            && let Some(split) = windows::split_as_of_pass(windows, &markers, horizon, pass.from_ms, pass.covered_until)
        {
            return answer(split, &read).await;
        }
        let guess = match config.settled_guess {
            true => Guess::StartsIn(stored_hours.hours),
            false => Guess::No,
        };
        return scoped.read_checked(async { Ok((markers, pass)) }, guess, &read).await;
    }
    // The check runs beside the markers' and the pass's reads (one round
    // trip of latency, not two in a row).
    let pass = async {
        match stored {
            true => Ok::<_, ApiError>(facts::fetch_newest_pass(client).await?),
            false => Ok(None),
        }
    };
    let first_reads = async {
        let (markers, pass) = tokio::join!(markers, pass);
        Ok((markers?, pass?))
    };
    let guess = match config.settled_guess {
        true => Guess::Unmarked,
        false => Guess::No,
    };
    scoped.read_checked(first_reads, guess, &read).await
}

/// Whether a read runs on the settled guess ([`settled_guess`]), and which
/// of its open windows without a marker it guesses to hold starts of its
/// scope.
enum Guess {
    No,
    /// All of them (a user: finding out costs about what the check does).
    Unmarked,
    /// Those among these windows, ascending (a video: the hours where the
    /// newest pass stored a start of it, [`facts::VideoPassHours`]); the
    /// others empty.
    StartsIn(Vec<u32>),
}

/// `read` on `split`, and the split.
async fn answer<T, F, Fut>(split: Split, read: &F) -> Result<(Split, T), ApiError>
where
    F: Fn(Split) -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let answer = read(split.clone()).await?;
    Ok((split, answer))
}

/// What a video's or a user's read with open windows decides its split by.
struct Scoped<'a> {
    client: &'a clickhouse::Client,
    windows: &'a [u32],
    grain: Grain,
    horizon: u32,
    config: &'a FreshnessConfig,
    scope: Scope<'a>,
}

impl Scoped<'_> {
    /// [`read_scoped`] once `first_reads` (the markers and the newest pass)
    /// are under way: the freshness check beside them, and beside it the read
    /// on the settled `guess` when there is one.
    async fn read_checked<T, F, Fut>(
        &self,
        first_reads: impl Future<Output = Result<(BTreeMap<u32, Marker>, Option<PassRow>), ApiError>>,
        guess: Guess,
        read: &F,
    ) -> Result<(Split, T), ApiError>
    where
        F: Fn(Split) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let check = views::fetch_last_inserted(self.client, self.scope, self.grain, self.horizon);
        let guessed = async {
            let (markers, pass) = first_reads.await?;
            let guess = match (&pass, guess) {
                (Some(pass), Guess::Unmarked) => {
                    settled_guess(self.windows, &markers, pass, self.grain, self.horizon, None)
                }
                (Some(pass), Guess::StartsIn(starts)) => {
                    settled_guess(self.windows, &markers, pass, self.grain, self.horizon, Some(&starts))
                }
                _ => None,
            };
            let answered = match &guess {
                Some(split) => Some(read(split.clone()).await),
                None => None,
            };
            Ok::<_, ApiError>((markers, pass, guess, answered))
        };
        let (last_inserted, guessed) = tokio::join!(check, guessed);
        let (markers, pass, guess, guessed_answer) = guessed?;
        let last_inserted = last_inserted?;
        if let (Some(guess), Some(guessed_answer), Some(pass)) = (guess, guessed_answer, &pass) {
            if guess_holds(&guess, &markers, &last_inserted, pass.covered_until) {
                metrics::counter!(GUESSES, "outcome" => "held").increment(1);
                return Ok((guess, guessed_answer?));
            }
            metrics::counter!(GUESSES, "outcome" => "missed").increment(1);
        }
        let split = self.exact(&markers, &last_inserted, pass).await?;
        answer(split, read).await
    }

    /// The exact split: the markers and the open windows' last inserts
    /// decide, and the raw windows use the newest `pass`'s stored facts when
    /// they can ([`scoped_facts`]).
    async fn exact(
        &self,
        markers: &BTreeMap<u32, Marker>,
        last_inserted: &BTreeMap<u32, u32>,
        pass: Option<PassRow>,
    ) -> Result<Split, ApiError> {
        let mut split = exact_split(self.windows, markers, last_inserted, self.grain, self.horizon, None);
        if let Some(pass) = pass {
            split.facts =
                scoped_facts(self.client, &split, last_inserted, self.grain, &pass, self.config, self.scope).await?;
        }
        Ok(split)
    }
}

/// The split of a video's or a user's read if nothing of its scope was
/// inserted after its open windows' runs nor after `pass`: the windows with
/// a marker aggregated, the others raw and read from the pass's stored facts
/// alone (settled), except the open windows outside `starts` (ascending,
/// when given), guessed to hold no start of the scope (empty). `None` when the pass's
/// facts do not begin by the first raw window (a final window never
/// aggregated, a pass that has not yet covered the horizon): such a read
/// rebuilds views whatever the check says.
fn settled_guess(
    windows: &[u32],
    markers: &BTreeMap<u32, Marker>,
    pass: &PassRow,
    grain: Grain,
    horizon: u32,
    starts: Option<&[u32]>,
) -> Option<Split> {
    // As if the check had found a row, older than every run, in each open
    // window with starts.
    let quiet: BTreeMap<u32, u32> = windows
        .iter()
        .filter(|&&w| w >= horizon && starts.is_none_or(|starts| starts.binary_search(&w).is_ok()))
        .map(|&w| (w, 0))
        .collect();
    let mut split = exact_split(windows, markers, &quiet, grain, horizon, None);
    if !split.raw.is_empty() {
        let settled = StoredFacts::settled(pass.covered_until, pass.from_ms);
        if !settled.covers(grain, &split.raw) {
            return None;
        }
        split.facts = Some(settled);
    }
    Some(split)
}

/// Whether the freshness check's `last_inserted` confirms `guess`
/// ([`settled_guess`] with a pass that covered inserts up to
/// `pass_covered_until`): each window it reads from the aggregates got no
/// row after its marker's run, each it reads settled got none after the
/// pass, and each it skips as empty has no start of the scope. The exact
/// split then reads the same windows the same way, except windows where the
/// check found no `video_start` of the scope, which it skips and the guess
/// may read from stored facts that hold no start there either: the answers
/// are equal.
fn guess_holds(
    guess: &Split,
    markers: &BTreeMap<u32, Marker>,
    last_inserted: &BTreeMap<u32, u32>,
    pass_covered_until: u32,
) -> bool {
    let quiet_until = |window: &u32, until: Option<u32>| {
        last_inserted.get(window).is_none_or(|&last| until.is_some_and(|until| last <= until))
    };
    guess.aggregated.iter().all(|w| quiet_until(w, markers.get(w).map(|m| m.covered_until)))
        && guess.raw.iter().all(|w| quiet_until(w, Some(pass_covered_until)))
        && guess.empty.iter().all(|w| !last_inserted.contains_key(w))
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
    fn the_settled_guess_reads_marked_windows_aggregated_and_the_others_from_the_pass() {
        let marker = |covered_until| Marker { covered_until, version: 1 };
        // Hours 8..=13, the horizon at 10: 8 and 11 aggregated, 12 and 13
        // never (the current hours), 9 final and never aggregated.
        let markers = BTreeMap::from([(8, marker(100)), (10, marker(100)), (11, marker(200))]);
        let pass = PassRow { version: 1, covered_until: 1_000, from_ms: 10 * 3_600_000, open_views: 0, now: 1_005 };
        let open: Vec<u32> = (10..=13).collect();
        let guess = settled_guess(&open, &markers, &pass, Grain::Hour, 10, None).unwrap();
        assert_eq!(
            (guess.aggregated.clone(), guess.raw.clone(), guess.empty.clone()),
            (vec![10, 11], vec![12, 13], vec![])
        );
        assert_eq!(guess.facts, Some(StoredFacts::settled(1_000, pass.from_ms)));
        assert_eq!(
            guess.by_time_from_ms,
            exact_split(&open, &markers, &BTreeMap::new(), Grain::Hour, 10, None).by_time_from_ms
        );
        // Only aggregated windows: no facts, as the exact split has none.
        let marked = settled_guess(&[10, 11], &markers, &pass, Grain::Hour, 10, None).unwrap();
        assert_eq!((marked.aggregated, marked.raw, marked.facts), (vec![10, 11], vec![], None));
        // A raw window before the pass's facts (9: final, never aggregated)
        // is rebuilt whatever the check says: no guess.
        assert_eq!(settled_guess(&[8, 9, 10, 12], &markers, &pass, Grain::Hour, 10, None), None);

        let holds = |last: &[(u32, u32)]| guess_holds(&guess, &markers, &last.iter().copied().collect(), 1_000);
        // Nothing of the scope in the open windows, or nothing newer than
        // each window's run and the pass: the exact read reads the same.
        assert!(holds(&[]));
        assert!(holds(&[(10, 100), (11, 200), (12, 1_000), (13, 3)]));
        // A row after an aggregated hour's run, or after the pass in a raw
        // hour: the exact read differs, the guess is dropped.
        assert!(!holds(&[(10, 101)]));
        assert!(!holds(&[(11, 201), (12, 5)]));
        assert!(!holds(&[(13, 1_001)]));
        // Where the guess holds, the exact split reads the same windows the
        // same way, skipping only the windows without a start of the scope.
        let last = BTreeMap::from([(10, 100), (12, 999)]);
        let exact = exact_split(&open, &markers, &last, Grain::Hour, 10, None);
        assert_eq!(
            (exact.aggregated.clone(), exact.raw.clone(), exact.empty.clone()),
            (guess.aggregated.clone(), vec![12], vec![13])
        );
        assert_eq!(settled_facts(&Split { raw: vec![12], ..Split::default() }, &last, Grain::Hour, &pass), guess.facts);

        // A video's guess: the open hours where the pass stored no start of
        // it (13) are guessed empty, as the exact split makes them, and the
        // guess then reads what the exact read does.
        let video = settled_guess(&open, &markers, &pass, Grain::Hour, 10, Some(&[10, 12])).unwrap();
        assert_eq!(
            (video.aggregated.clone(), video.raw.clone(), video.empty.clone()),
            (vec![10, 11], vec![12], vec![13])
        );
        assert!(guess_holds(&video, &markers, &last, 1_000));
        assert_eq!((exact.raw, exact.empty), (video.raw.clone(), video.empty.clone()));
        // A start in a window guessed empty (inserted after the pass, or
        // before the pass began storing them) drops the guess.
        assert!(!guess_holds(&video, &markers, &BTreeMap::from([(13, 3)]), 1_000));
        // No starts anywhere: everything unmarked is empty, nothing settled.
        let none = settled_guess(&open, &markers, &pass, Grain::Hour, 10, Some(&[])).unwrap();
        assert_eq!((none.raw, none.empty, none.facts), (vec![], vec![12, 13], None));
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
