//! The aggregator: one window run, a scheduler tick, backfill and retention.
//!
//! Every metric statement comes from `metrics_sql`; this module decides what
//! to run, in which order, and records it (ClickHouse marker after the rows,
//! `aggregation_runs` in PostgreSQL around the work).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ops::Range,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use chrono::{DateTime, NaiveTime, Utc};
use deadpool_postgres::Pool;
use metrics_sql::{
    days, hourly, rows,
    views::{self, Scope},
    windows::{self, Grain, Job},
};
use service_kit::{Shutdown, migrate::Topology};

use crate::{
    config::{AggregationConfig, Config, FactsConfig, RetentionConfig},
    metrics,
    retention::{self, PartitionDrop, PartitionRow},
    runs::{self, RETENTION_JOB, RunsError, Status},
    schedule::{self, Freshness, LatePlan, epoch_secs, window_start},
};

/// Why a run was started; stored in `aggregation_runs.trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// The window that just became due, run on time.
    Schedule,
    /// A due window run late (the service was down or behind), or a window
    /// within the lateness horizon that has views but no record.
    CatchUp,
    /// A window recomputed because its views received rows after it was aggregated.
    LateEvents,
    /// A window whose previous run failed, tried again after its backoff.
    Retry,
    /// `aggregator-cron run` over a range.
    Backfill,
    /// Run by hand (library call or `aggregator-cron retention`).
    Manual,
    /// The custom query's rollup of the current hour, not closed yet (every
    /// `aggregation.open_hour_interval`); it does not count as the hour's
    /// scheduled run, which follows once the hour is due.
    OpenHour,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch_up",
            Trigger::LateEvents => "late_events",
            Trigger::Retry => "retry",
            Trigger::Backfill => "backfill",
            Trigger::Manual => "manual",
            Trigger::OpenHour => "open_hour",
        }
    }
}

/// What a succeeded window run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRun {
    pub job: Job,
    pub window: u32,
    pub trigger: Trigger,
    /// The `version` of the rows and of the window's record.
    pub version: u64,
    /// Rows written for the window.
    pub rows: u64,
    /// Every event row inserted up to this time (epoch seconds) is in the rows.
    pub covered_until: u32,
    pub duration: Duration,
}

/// Why a window run failed. The run is recorded as failed whenever PostgreSQL
/// allows. Each message carries its cause (so the variants have no `source`).
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error("cannot record the run: {0}")]
    Runs(RunsError),
    #[error("clickhouse failed to {step}: {error}")]
    ClickHouse { step: &'static str, error: clickhouse::error::Error },
    #[error("interrupted by shutdown")]
    Interrupted,
}

impl From<RunsError> for AggregateError {
    fn from(error: RunsError) -> Self {
        AggregateError::Runs(error)
    }
}

fn clickhouse_step(step: &'static str) -> impl FnOnce(clickhouse::error::Error) -> AggregateError {
    move |error| AggregateError::ClickHouse { step, error }
}

/// One window a tick ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickRun {
    pub job: Job,
    pub window: u32,
    pub trigger: Trigger,
    /// The run, or the error it failed with (also in `aggregation_runs`).
    pub result: Result<WindowRun, String>,
}

/// What a tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Another replica held the tick lock, so this one did nothing.
    pub skipped: bool,
    /// The windows run, in the order they ran.
    pub runs: Vec<TickRun>,
    /// Per job, due windows not aggregated after the catch-up (0 when up to
    /// date): the failing ones and those left by a shutdown.
    pub windows_behind: BTreeMap<Job, u64>,
    /// Per job, the windows whose latest run failed after this tick, each
    /// with when its next attempt is due (the tick's clock).
    pub failing: BTreeMap<Job, BTreeMap<u32, DateTime<Utc>>>,
    /// Per job, stale windows left for a later tick because they were
    /// recomputed less than `min_recompute_interval` ago.
    pub deferred: BTreeMap<Job, u64>,
    /// Retention, when it was due: the partitions dropped, or why it failed.
    pub retention: Option<Result<Vec<PartitionDrop>, String>>,
    /// The final days rolled up into `video_day_totals`, in order.
    pub rollups: Vec<DayRollup>,
}

/// One day rolled up into `video_day_totals` ([`metrics_sql::days`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRollup {
    /// The UTC day (days since the epoch).
    pub day: u32,
    /// The newest hour run it was computed from.
    pub source_version: u64,
    /// Rows with views written, or why the rollup failed.
    pub result: Result<u64, String>,
}

impl TickReport {
    /// The windows of `job` run with `trigger`, in order.
    pub fn windows(&self, job: Job, trigger: Trigger) -> Vec<u32> {
        self.runs.iter().filter(|r| r.job == job && r.trigger == trigger).map(|r| r.window).collect()
    }

    /// The runs that failed.
    pub fn failures(&self) -> impl Iterator<Item = &TickRun> {
        self.runs.iter().filter(|r| r.result.is_err())
    }
}

/// The windows of a backfill, planned before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillPlan {
    pub job: Job,
    /// The closed windows overlapping the range, in order: these run.
    pub windows: Range<u32>,
    /// Windows of the range not closed yet: not run.
    pub open: u64,
}

impl BackfillPlan {
    /// The windows of `job` overlapping `[from, to)`; those not closed at `now` are left out.
    pub fn new(job: Job, from: DateTime<Utc>, to: DateTime<Utc>, now: DateTime<Utc>) -> anyhow::Result<Self> {
        anyhow::ensure!(from < to, "the range is empty: --from {from} is not before --to {to}");
        let (all, closed) = schedule::backfill_windows(job.grain(), epoch_secs(from), epoch_secs(to), epoch_secs(now));
        Ok(Self { job, open: (all.len() - closed.len()) as u64, windows: closed })
    }

    pub fn total(&self) -> u64 {
        self.windows.len() as u64
    }
}

/// Progress of a backfill, reported after each window.
#[derive(Debug)]
pub struct BackfillProgress<'a> {
    pub done: u64,
    pub total: u64,
    pub window: u32,
    pub result: &'a Result<WindowRun, AggregateError>,
}

/// How a backfill went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillReport {
    pub job: Job,
    /// Windows planned (closed windows of the range).
    pub total: u64,
    pub succeeded: u64,
    pub rows: u64,
    /// Windows that failed, with the error.
    pub failed: Vec<(u32, String)>,
    /// Windows not attempted because the backfill was interrupted.
    pub not_run: u64,
    /// Windows of the range left out because they are not closed yet.
    pub open: u64,
    /// For `video_metrics`, the final days of the range rolled up afterwards
    /// (or why rolling them up could not be planned).
    pub rollups: Result<Vec<DayRollup>, String>,
    pub duration: Duration,
}

impl BackfillReport {
    /// Every planned window succeeded, and so did the day rollups.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
            && self.not_run == 0
            && self.rollups.as_ref().is_ok_and(|days| days.iter().all(|d| d.result.is_ok()))
    }
}

/// Builds the aggregate tables, catches up, folds in late events and applies retention.
pub struct Aggregator {
    clickhouse: clickhouse::Client,
    postgres: Pool,
    aggregation: AggregationConfig,
    facts: FactsConfig,
    retention: RetentionConfig,
    /// The ClickHouse database (named in `ON CLUSTER` statements).
    database: String,
    retention_time: NaiveTime,
    last_version: AtomicU64,
    /// When the next attempt of each failing window is due (the ticks'
    /// clock). Which windows fail is read from `aggregation_runs`; a window
    /// failing there but not here (after a restart) is due at once.
    retry_at: Mutex<HashMap<(Job, u32), DateTime<Utc>>>,
}

impl Aggregator {
    /// Creates the clients (the configuration is validated before, by
    /// `service_kit::load_valid`). Connections are
    /// made on first use, so this succeeds while a database is down.
    pub async fn connect(config: &Config) -> anyhow::Result<Aggregator> {
        Ok(Aggregator {
            clickhouse: config.aggregation.spilling(config.clickhouse.client()),
            postgres: service_kit::deps::postgres::pool(&config.postgres)?,
            aggregation: config.aggregation.clone(),
            facts: config.facts.clone(),
            retention: config.retention.clone(),
            database: config.clickhouse.database.clone(),
            retention_time: config.retention.time_of_day()?,
            last_version: AtomicU64::new(0),
            retry_at: Mutex::new(HashMap::new()),
        })
    }

    /// The PostgreSQL pool (`aggregation_runs`).
    pub fn postgres(&self) -> &Pool {
        &self.postgres
    }

    /// The ClickHouse client, bound to the configured database.
    pub fn clickhouse(&self) -> &clickhouse::Client {
        &self.clickhouse
    }

    /// `[facts]` of the configuration.
    pub(crate) fn facts_config(&self) -> &FactsConfig {
        &self.facts
    }

    /// How long after its end a window still receives late events.
    pub(crate) fn lateness(&self) -> Duration {
        self.aggregation.lateness
    }

    /// A version larger than any this process handed out: the current epoch
    /// microseconds, or the previous version + 1.
    pub(crate) fn next_version(&self) -> u64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
        let now = u64::try_from(now).unwrap_or(u64::MAX);
        let previous = self
            .last_version
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last + 1)))
            .unwrap_or_else(|last| last);
        now.max(previous + 1)
    }

    /// Recomputes `window` of `job` from the raw events, replacing its rows,
    /// and records it (ClickHouse marker after the rows; `aggregation_runs`).
    pub async fn run_window(&self, job: Job, window: u32, trigger: Trigger) -> Result<WindowRun, AggregateError> {
        self.run_window_until(job, window, trigger, None).await
    }

    /// [`Self::run_window`]; with `stop`, the work is abandoned (recorded as
    /// failed) when shutdown was requested and the grace period passed.
    async fn run_window_until(
        &self,
        job: Job,
        window: u32,
        trigger: Trigger,
        stop: Option<&Shutdown>,
    ) -> Result<WindowRun, AggregateError> {
        let started = Instant::now();
        let grain = job.grain();
        let (start, end) = (window_start(grain, window), window_start(grain, window + 1));
        let version = self.next_version();
        let id = match runs::start(&self.postgres, job.name(), (start, end), trigger.as_str(), Some(version)).await {
            Ok(id) => id,
            Err(error) => {
                tracing::error!(job = job.name(), window_start = %start, trigger = trigger.as_str(), error = %error,
                    "cannot record the start of a window run");
                metrics::run(job.name(), false, started.elapsed(), 0);
                return Err(error.into());
            }
        };

        let work = self.compute_window(job, window, version);
        let outcome = match stop {
            None => work.await,
            Some(stop) => {
                let grace = self.aggregation.shutdown_grace;
                tokio::select! {
                    outcome = work => outcome,
                    () = async { stop.wait().await; tokio::time::sleep(grace).await } => Err(AggregateError::Interrupted),
                }
            }
        };
        let duration = started.elapsed();
        let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);

        let error_text = outcome.as_ref().err().map(ToString::to_string);
        let recorded = runs::finish(
            &self.postgres,
            id,
            runs::Outcome {
                status: if outcome.is_ok() { Status::Succeeded } else { Status::Failed },
                rows: outcome.as_ref().ok().map(|(rows, _)| *rows),
                duration_ms,
                error: error_text.as_deref(),
            },
        )
        .await;
        let outcome = match (outcome, recorded) {
            (Ok(done), Ok(())) => Ok(done),
            (Ok(_), Err(error)) => Err(AggregateError::Runs(error)),
            (Err(error), recorded) => {
                if let Err(record_error) = recorded {
                    tracing::error!(job = job.name(), window_start = %start, error = %record_error,
                        "cannot record a failed window run");
                }
                Err(error)
            }
        };
        match outcome {
            Ok((rows, covered_until)) => {
                metrics::run(job.name(), true, duration, rows);
                tracing::info!(job = job.name(), window_start = %start, trigger = trigger.as_str(), version, rows,
                    covered_until, duration_ms, "window aggregated");
                Ok(WindowRun { job, window, trigger, version, rows, covered_until, duration })
            }
            Err(error) => {
                metrics::run(job.name(), false, duration, 0);
                tracing::error!(job = job.name(), window_start = %start, trigger = trigger.as_str(), version,
                    duration_ms, error = %error, "window aggregation failed");
                Err(error)
            }
        }
    }

    /// ClickHouse's clock (epoch seconds): the clock of `inserted_at` and of the records.
    pub(crate) async fn server_clock(&self) -> Result<u32, clickhouse::error::Error> {
        self.clickhouse.query("SELECT toUInt32(now())").fetch_one().await
    }

    /// The client time (epoch ms) from which the time-clustered copy of
    /// `events` holds every row, at the server time `server_now` (seconds).
    fn by_time_from_ms(&self, server_now: u32) -> u64 {
        let lateness_ms = u64::try_from(self.aggregation.lateness.as_millis()).unwrap_or(u64::MAX);
        metrics_sql::by_time_holds_from_ms(u64::from(server_now) * 1000, lateness_ms)
    }

    fn margin_secs(&self) -> u32 {
        u32::try_from(self.aggregation.safety_margin.as_secs()).unwrap_or(u32::MAX)
    }

    /// The ClickHouse part of a run: rows, empty rows for keys whose views left
    /// the window, their count, then the record.
    async fn compute_window(&self, job: Job, window: u32, version: u64) -> Result<(u64, u32), AggregateError> {
        let server_now = self.server_clock().await.map_err(clickhouse_step("read the server clock"))?;
        let covered_until = server_now.saturating_sub(self.margin_secs());
        let insert = match job {
            // The rows inserted up to the record; the time-clustered copy
            // holds the recent hours, a key range there.
            Job::EventsHourly => {
                hourly::insert_hour(window, version, Some(self.by_time_from_ms(server_now)), covered_until)
            }
            _ => rows::insert_window(job, window, version),
        };
        insert.query(&self.clickhouse).execute().await.map_err(clickhouse_step("insert the window's rows"))?;
        rows::retire_vanished_rows(job, window, version)
            .query(&self.clickhouse)
            .execute()
            .await
            .map_err(clickhouse_step("retire the rows of views that left the window"))?;
        let rows: u64 = rows::count_window_rows(job, window, version)
            .query(&self.clickhouse)
            .fetch_one()
            .await
            .map_err(clickhouse_step("count the window's rows"))?;
        rows::insert_marker(job, window, version, covered_until, rows)
            .query(&self.clickhouse)
            .execute()
            .await
            .map_err(clickhouse_step("record the window"))?;
        Ok((rows, covered_until))
    }

    /// One scheduler step at `now`: for each job, catch up the due windows in
    /// order, then recompute the windows within the lateness horizon that are
    /// stale or missing; then retention when due. Window failures are recorded
    /// and in the report (retried at the next tick); an `Err` means the tick
    /// could not find out what to run.
    pub async fn tick(&self, now: DateTime<Utc>) -> anyhow::Result<TickReport> {
        self.tick_until(now, &Shutdown::new()).await
    }

    /// [`Self::tick`], stopping between windows once `stop` is triggered.
    pub async fn tick_until(&self, now: DateTime<Utc>, stop: &Shutdown) -> anyhow::Result<TickReport> {
        let Some(lock) = runs::try_lock(&self.postgres).await.context("cannot take the tick lock")? else {
            tracing::info!("another replica holds the tick lock; tick skipped");
            return Ok(TickReport { skipped: true, ..TickReport::default() });
        };
        let outcome = self.tick_locked(now, stop).await;
        runs::unlock(lock).await;
        outcome
    }

    async fn tick_locked(&self, now: DateTime<Utc>, stop: &Shutdown) -> anyhow::Result<TickReport> {
        let mut report = TickReport::default();
        let mut problems = Vec::new();
        for job in Job::ALL {
            if let Err(error) = self.tick_job(job, now, stop, &mut report).await {
                tracing::error!(job = job.name(), error = %format!("{error:#}"), "cannot plan the job's windows");
                problems.push(format!("{}: {error:#}", job.name()));
            }
        }
        if !stop.is_triggered() {
            let now_secs = epoch_secs(now);
            let from = Grain::Day.index_of(now_secs.saturating_sub(self.aggregation.rollup_lookback.as_secs()));
            let horizon = windows::horizon(Grain::Hour, now_secs, self.aggregation.lateness.as_secs());
            match self.roll_up_days(from..Grain::Day.index_of(now_secs) + 1, horizon, stop).await {
                Ok(rollups) => report.rollups = rollups,
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "cannot plan the day rollups");
                    problems.push(format!("day rollups: {error:#}"));
                }
            }
        }
        if self.retention.enabled && !stop.is_triggered() {
            match self.retention_due(now).await {
                Ok(false) => {}
                Ok(true) => {
                    let outcome = self.retention_with(now, false, Trigger::Schedule).await;
                    report.retention = Some(outcome.map_err(|e| format!("{e:#}")));
                }
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "cannot tell whether retention is due");
                    problems.push(format!("retention: {error:#}"));
                }
            }
        }
        if problems.is_empty() { Ok(report) } else { Err(anyhow::anyhow!(problems.join("; "))) }
    }

    async fn tick_job(
        &self,
        job: Job,
        now: DateTime<Utc>,
        stop: &Shutdown,
        report: &mut TickReport,
    ) -> anyhow::Result<()> {
        let grain = job.grain();
        let now_secs = epoch_secs(now);
        let Some(last_due) = schedule::last_due_window(grain, self.aggregation.offset(job).as_secs(), now_secs) else {
            return Ok(());
        };

        // (a) Catch up, in order: the due windows after the last succeeded
        // one, and the failing windows whose retry is due. A window that
        // fails is retried after its backoff; later windows do not wait for
        // it (readers decide per window: one without a record is read raw).
        let frontier = runs::last_succeeded_window(&self.postgres, job.name())
            .await
            .context("cannot read the last succeeded window")?
            .map(|start| grain.index_of(epoch_secs(start)));
        let failing: BTreeMap<u32, u32> = runs::failing_windows(&self.postgres, job.name())
            .await
            .context("cannot read the failing windows")?
            .into_iter()
            .map(|(start, failures)| (grain.index_of(epoch_secs(start)), failures))
            .filter(|&(window, _)| window <= last_due)
            .collect();
        let lookback_start = grain.index_of(now_secs.saturating_sub(self.aggregation.initial_lookback.as_secs()));
        let range = schedule::catch_up_range(frontier, lookback_start, last_due);
        let trigger = schedule::catch_up_trigger(&range);
        let mut retry_at = self.retry_at.lock().unwrap_or_else(|e| e.into_inner()).clone();
        retry_at.retain(|(j, window), _| *j != job || failing.contains_key(window));
        let waiting: BTreeSet<u32> =
            failing.keys().copied().filter(|w| retry_at.get(&(job, *w)).is_some_and(|at| *at > now)).collect();
        let mut work: BTreeMap<u32, Trigger> =
            failing.keys().filter(|w| !waiting.contains(w)).map(|&w| (w, Trigger::Retry)).collect();
        for window in range {
            work.entry(window).or_insert(trigger);
        }
        work.retain(|window, _| !waiting.contains(window));
        let mut ran = BTreeSet::new();
        let mut not_run = 0u64;
        for (&window, &trigger) in &work {
            if stop.is_triggered() {
                not_run += 1;
                continue;
            }
            let result = self.run_window_until(job, window, trigger, Some(stop)).await;
            ran.insert(window);
            match &result {
                Ok(_) => {
                    retry_at.remove(&(job, window));
                }
                Err(AggregateError::Interrupted) => {}
                Err(error) => {
                    let failures = failing.get(&window).copied().unwrap_or(0).saturating_add(1);
                    let delay = schedule::retry_delay(
                        failures,
                        self.aggregation.retry_backoff,
                        self.aggregation.retry_backoff_max,
                    );
                    let at = now + delay;
                    retry_at.insert((job, window), at);
                    metrics::window_failure(job.name());
                    tracing::warn!(job = job.name(), window_start = %window_start(grain, window), failures,
                        retry_in_secs = delay.as_secs(), error = %error, "window failed; retrying it later, later windows go on");
                }
            }
            report.runs.push(TickRun { job, window, trigger, result: result.map_err(|e| e.to_string()) });
        }
        let still_failing: BTreeMap<u32, DateTime<Utc>> =
            retry_at.iter().filter(|((j, _), _)| *j == job).map(|(&(_, window), &at)| (window, at)).collect();
        *self.retry_at.lock().unwrap_or_else(|e| e.into_inner()) = retry_at;
        let behind = still_failing.len() as u64 + not_run;
        metrics::windows_behind(job.name(), behind);
        metrics::windows_failing(job.name(), still_failing.len() as u64);
        report.windows_behind.insert(job, behind);
        let waiting_now: BTreeSet<u32> = still_failing.keys().copied().collect();
        report.failing.insert(job, still_failing);

        // (b) Late and missing windows within the lateness horizon.
        if stop.is_triggered() {
            return Ok(());
        }
        let horizon = windows::horizon(grain, now_secs, self.aggregation.lateness.as_secs());
        let freshness = self.freshness(job, horizon, last_due).await?;
        // Records carry the server clock minus the margin, so the interval is
        // measured on the same clock.
        let server_now = self.server_clock().await.context("cannot read the server clock")?;
        let interval = u32::try_from(self.aggregation.min_recompute_interval.as_secs()).unwrap_or(u32::MAX);
        let plan = LatePlan {
            last_due,
            waiting: waiting_now,
            already_run: ran,
            recompute_before: server_now.saturating_sub(self.margin_secs()).saturating_sub(interval),
        };
        let (mut late, deferred) = schedule::late_windows(&freshness, &plan);
        metrics::recomputes_deferred(job.name(), deferred);
        report.deferred.insert(job, deferred);

        // (c) The custom query's rollup of the current hour, so that a read
        // of it completes the rollup with the minutes since, not the hour.
        let interval = u32::try_from(self.aggregation.open_hour_interval.as_secs()).unwrap_or(u32::MAX);
        if job == Job::EventsHourly && interval > 0 {
            let current = grain.index_of(now_secs);
            if current > last_due {
                let markers = rows::fetch_markers(&self.clickhouse, job, current, current + 1)
                    .await
                    .context("cannot read the current hour's record")?;
                // A tenth of the interval early: ticks come every
                // `tick_interval`, and this job's step within a tick moves
                // with the work before it.
                let newest_due = server_now.saturating_sub(self.margin_secs()).saturating_sub(interval - interval / 10);
                if markers.get(&current).is_none_or(|m| m.covered_until <= newest_due) {
                    late.push((current, Trigger::OpenHour));
                }
            }
        }
        for (window, trigger) in late {
            if stop.is_triggered() {
                break;
            }
            let result = self.run_window_until(job, window, trigger, Some(stop)).await;
            if result.is_ok() && trigger == Trigger::LateEvents {
                metrics::late_recomputation(job.name());
            }
            report.runs.push(TickRun { job, window, trigger, result: result.map_err(|e| e.to_string()) });
        }
        Ok(())
    }

    /// Rolls up into `video_day_totals` every day of `days` whose 24 hours are
    /// aggregated and before the hour `horizon`, unless it is already rolled
    /// up at its hours' newest run ([`days::due`]). Carries on past a failed
    /// day (it is due again at the next tick); `Err` when the plan cannot be read.
    pub async fn roll_up_days(
        &self,
        days: Range<u32>,
        horizon: u32,
        stop: &Shutdown,
    ) -> anyhow::Result<Vec<DayRollup>> {
        let hours = days::hours_of(days.start).start..days::hours_of(days.end).start;
        let markers = rows::fetch_markers(&self.clickhouse, Job::VideoMetrics, hours.start, hours.end)
            .await
            .context("cannot read the hours' records")?;
        let recorded = days::fetch_records(&self.clickhouse, days.start, days.end)
            .await
            .context("cannot read the days' rollup records")?;
        let all: Vec<u32> = days.collect();
        let mut done = Vec::new();
        for (day, source_version) in days::due(&all, &markers, &recorded, horizon) {
            if stop.is_triggered() {
                break;
            }
            let started = Instant::now();
            let version = self.next_version();
            let result = days::run_rollup(&self.clickhouse, day, source_version, version).await;
            let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let date = window_start(Grain::Day, day).date_naive();
            metrics::run(days::DAY_TOTALS_TABLE, result.is_ok(), started.elapsed(), *result.as_ref().unwrap_or(&0));
            let result = match result {
                Ok(rows) => {
                    tracing::info!(%date, version, source_version, rows, duration_ms, "day rolled up");
                    Ok(rows)
                }
                Err((step, error)) => {
                    tracing::error!(%date, version, step, duration_ms, error = %error, "day rollup failed");
                    Err(format!("cannot {step}: {error}"))
                }
            };
            done.push(DayRollup { day, source_version, result });
        }
        Ok(done)
    }

    /// Last insert times and records of the windows of `job` in `[horizon, last_due]`.
    async fn freshness(&self, job: Job, horizon: u32, last_due: u32) -> anyhow::Result<Freshness> {
        let last_inserted = match job {
            // By the hour of the events' own time, not of their views' start.
            Job::EventsHourly => hourly::fetch_last_inserts(&self.clickhouse, horizon..last_due + 1).await,
            _ => views::fetch_last_inserted(&self.clickhouse, Scope::All, job.grain(), horizon).await,
        }
        .context("cannot read the windows' last insert times")?;
        let markers = rows::fetch_markers(&self.clickhouse, job, horizon, last_due + 1)
            .await
            .context("cannot read the windows' records")?;
        Ok(Freshness {
            last_inserted,
            covered_until: markers.into_iter().map(|(window, m)| (window, m.covered_until)).collect(),
        })
    }

    /// When the scheduler should look again after `now`: the next due time of
    /// a window or of retention, or the tick interval, whichever comes first.
    pub fn next_wake(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let now_secs = epoch_secs(now);
        let mut next = now + self.aggregation.tick_interval;
        for job in Job::ALL {
            let due = schedule::next_due_at(job.grain(), self.aggregation.offset(job).as_secs(), now_secs);
            next = next.min(schedule::instant(due));
        }
        if self.retention.enabled {
            next = next.min(schedule::next_daily_at(self.retention_time, now));
        }
        if let Some(retry) = self.retry_at.lock().unwrap_or_else(|e| e.into_inner()).values().min() {
            next = next.min((*retry).max(now));
        }
        // A second late rather than a hair early, whatever the clocks do.
        next + Duration::from_secs(1)
    }

    /// Recomputes the windows of `job` overlapping `[from, to)`, each once, in
    /// order, carrying on past failures. Windows not closed yet are left out.
    pub async fn backfill(
        &self,
        job: Job,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        on_window: impl FnMut(&BackfillProgress<'_>),
    ) -> anyhow::Result<BackfillReport> {
        let plan = BackfillPlan::new(job, from, to, Utc::now())?;
        Ok(self.run_backfill(&plan, &Shutdown::new(), on_window).await)
    }

    /// Runs a planned backfill; once `stop` is triggered no further window starts.
    pub async fn run_backfill(
        &self,
        plan: &BackfillPlan,
        stop: &Shutdown,
        mut on_window: impl FnMut(&BackfillProgress<'_>),
    ) -> BackfillReport {
        let started = Instant::now();
        let mut report = BackfillReport {
            job: plan.job,
            total: plan.total(),
            succeeded: 0,
            rows: 0,
            failed: Vec::new(),
            not_run: 0,
            open: plan.open,
            rollups: Ok(Vec::new()),
            duration: Duration::ZERO,
        };
        for (index, window) in (0u64..).zip(plan.windows.clone()) {
            if stop.is_triggered() {
                report.not_run = plan.total() - index;
                break;
            }
            let result = self.run_window_until(plan.job, window, Trigger::Backfill, Some(stop)).await;
            let done = index + 1;
            match &result {
                Ok(run) => {
                    report.succeeded += 1;
                    report.rows += run.rows;
                }
                Err(error) => report.failed.push((window, error.to_string())),
            }
            on_window(&BackfillProgress { done, total: plan.total(), window, result: &result });
        }
        if plan.job == Job::VideoMetrics && !plan.windows.is_empty() && !stop.is_triggered() {
            // The hours run again changed their days' source version: roll them up again.
            let horizon = windows::horizon(Grain::Hour, epoch_secs(Utc::now()), self.aggregation.lateness.as_secs());
            let rollups = self.roll_up_days(days::days_of(plan.windows.clone()), horizon, stop).await;
            report.rollups = rollups.map_err(|e| format!("{e:#}"));
        }
        report.duration = started.elapsed();
        report
    }

    /// Drops the monthly (daily) partitions past their table's retention at `now`
    /// (or, with `dry_run`, only lists them). A real run is recorded in
    /// `aggregation_runs` (job `retention`); a failed drop makes it `Err`.
    pub async fn retention(&self, now: DateTime<Utc>, dry_run: bool) -> anyhow::Result<Vec<PartitionDrop>> {
        self.retention_with(now, dry_run, Trigger::Manual).await
    }

    /// Whether the scheduled retention of `now`'s day is due and not done.
    async fn retention_due(&self, now: DateTime<Utc>) -> anyhow::Result<bool> {
        if now < schedule::today_at(self.retention_time, now) {
            return Ok(false);
        }
        Ok(!runs::scheduled_retention_done(&self.postgres, schedule::day_start(now)).await?)
    }

    async fn retention_with(
        &self,
        now: DateTime<Utc>,
        dry_run: bool,
        trigger: Trigger,
    ) -> anyhow::Result<Vec<PartitionDrop>> {
        let started = Instant::now();
        // On a cluster, sharded tables' partitions are listed and dropped on every shard.
        let topology = service_kit::migrate::server_topology(&self.clickhouse)
            .await
            .context("cannot read the server's macros (system.macros)")?;
        let cluster = match &topology {
            Topology::Single => None,
            Topology::Cluster(name) => Some((name.as_str(), self.database.as_str())),
        };
        let listed: Vec<PartitionRow> = self
            .clickhouse
            .query(&retention::partitions_sql(cluster))
            .fetch_all()
            .await
            .context("cannot list partitions from system.parts")?;
        let plan = retention::plan(
            &listed,
            now,
            |table| self.retention.days(table),
            |row| {
                tracing::warn!(table = %row.table, partition = %row.partition_id,
                    "partition id is not a YYYYMM month; left alone");
            },
        );
        if dry_run {
            for drop in &plan {
                tracing::info!(table = drop.table.name(), partition = drop.partition, rows = drop.rows,
                    bytes = drop.bytes, cutoff = %drop.cutoff, "would drop partition");
            }
            return Ok(plan);
        }

        let day = schedule::day_start(now);
        let id =
            runs::start(&self.postgres, RETENTION_JOB, (day, day + chrono::Duration::days(1)), trigger.as_str(), None)
                .await
                .context("cannot record the retention run")?;
        let mut dropped = Vec::new();
        let mut errors = Vec::new();
        for drop in plan {
            let sql = retention::drop_partition_sql(drop.table, drop.partition, cluster);
            match self.clickhouse.query(&sql).execute().await {
                Ok(()) => {
                    metrics::partition_dropped(drop.table.name());
                    tracing::info!(table = drop.table.name(), partition = drop.partition, rows = drop.rows,
                        bytes = drop.bytes, cutoff = %drop.cutoff, "dropped partition");
                    dropped.push(drop);
                }
                Err(error) => {
                    tracing::error!(table = drop.table.name(), partition = drop.partition, error = %error,
                        "cannot drop partition");
                    errors.push(format!("{} {}: {error}", drop.table.name(), drop.partition));
                }
            }
        }
        let rows: u64 = dropped.iter().map(|d| d.rows).sum();
        let duration = started.elapsed();
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        let recorded = runs::finish(
            &self.postgres,
            id,
            runs::Outcome {
                status: if error.is_none() { Status::Succeeded } else { Status::Failed },
                rows: Some(rows),
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                error: error.as_deref(),
            },
        )
        .await;
        metrics::run(RETENTION_JOB, error.is_none(), duration, rows);
        tracing::info!(
            partitions = dropped.len(),
            rows,
            failed = errors.len(),
            trigger = trigger.as_str(),
            "retention done"
        );
        if let Some(error) = error {
            anyhow::bail!("retention could not drop every partition: {error}");
        }
        recorded.context("cannot record the end of the retention run")?;
        Ok(dropped)
    }
}
