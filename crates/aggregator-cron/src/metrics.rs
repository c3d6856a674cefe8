//! The aggregator's Prometheus metrics. Labels are bounded: `job` is one of
//! the two aggregation jobs, `video_day_totals` (day rollups) or `retention`, `status` succeeded/failed,
//! `table` one of the tables under retention, `kind` full/incremental/unknown.

use std::time::Duration;

pub const RUNS: &str = "analytics_service_aggregation_runs_total";
pub const RUN_DURATION: &str = "analytics_service_aggregation_run_duration_seconds";
pub const ROWS_WRITTEN: &str = "analytics_service_aggregation_rows_written_total";
pub const WINDOWS_BEHIND: &str = "analytics_service_aggregation_windows_behind";
pub const WINDOW_FAILURES: &str = "analytics_service_aggregation_window_failures_total";
pub const WINDOWS_FAILING: &str = "analytics_service_aggregation_windows_failing";
pub const LATE_RECOMPUTATIONS: &str = "analytics_service_aggregation_late_recomputations_total";
pub const RECOMPUTES_DEFERRED: &str = "analytics_service_aggregation_recomputes_deferred";
pub const PARTITIONS_DROPPED: &str = "analytics_service_retention_partitions_dropped_total";
pub const FACTS_PASSES: &str = "analytics_service_facts_passes_total";
pub const FACTS_PASS_DURATION: &str = "analytics_service_facts_pass_duration_seconds";
pub const FACTS_ROWS_WRITTEN: &str = "analytics_service_facts_rows_written_total";

/// The descriptions shown as `# HELP` on `/metrics` (through
/// `service_kit::ops::describe_metrics`, first thing in `run`).
pub fn describe() {
    metrics::describe_counter!(RUNS, "aggregation and retention runs by job and how they ended");
    metrics::describe_histogram!(
        RUN_DURATION,
        metrics::Unit::Seconds,
        "time to recompute one window (or run retention), by job"
    );
    metrics::describe_counter!(ROWS_WRITTEN, "rows written to the aggregate tables by succeeded runs, by job");
    metrics::describe_gauge!(
        WINDOWS_BEHIND,
        "due windows not yet aggregated after the last tick, by job (0 when the scheduler is up to date)"
    );
    metrics::describe_counter!(
        WINDOW_FAILURES,
        "window runs of the scheduler that failed, by job; the window is retried with backoff while later windows go on"
    );
    metrics::describe_gauge!(
        WINDOWS_FAILING,
        "windows whose latest run failed and that wait for a retry, after the last tick, by job"
    );
    metrics::describe_counter!(
        LATE_RECOMPUTATIONS,
        "windows recomputed because their views received rows after they were aggregated, by job"
    );
    metrics::describe_gauge!(
        RECOMPUTES_DEFERRED,
        "stale windows left for a later tick at the last tick because they were recomputed less than the \
         minimum recompute interval ago, by job"
    );
    metrics::describe_counter!(
        PARTITIONS_DROPPED,
        "partitions (monthly, or daily for events_by_receipt) dropped by retention, by table"
    );
    metrics::describe_counter!(
        FACTS_PASSES,
        "facts passes by kind (full, incremental; unknown for a pass that failed) and how they ended"
    );
    metrics::describe_histogram!(
        FACTS_PASS_DURATION,
        metrics::Unit::Seconds,
        "time of one succeeded facts pass, by kind"
    );
    metrics::describe_counter!(FACTS_ROWS_WRITTEN, "view_facts rows written by succeeded facts passes, by kind");
}

/// One finished facts pass of `kind` (`full`, `incremental`, `unknown`).
pub fn facts_pass(kind: &'static str, succeeded: bool, duration: Duration, rows: u64) {
    let status = if succeeded { "succeeded" } else { "failed" };
    metrics::counter!(FACTS_PASSES, "kind" => kind, "status" => status).increment(1);
    if succeeded {
        metrics::histogram!(FACTS_PASS_DURATION, "kind" => kind).record(duration.as_secs_f64());
        metrics::counter!(FACTS_ROWS_WRITTEN, "kind" => kind).increment(rows);
    }
}

/// One finished run of `job` (`video_metrics`, `user_engagement_daily`, `video_day_totals`, `retention`).
pub fn run(job: &'static str, succeeded: bool, duration: Duration, rows: u64) {
    let status = if succeeded { "succeeded" } else { "failed" };
    metrics::counter!(RUNS, "job" => job, "status" => status).increment(1);
    metrics::histogram!(RUN_DURATION, "job" => job).record(duration.as_secs_f64());
    if succeeded && job != crate::runs::RETENTION_JOB {
        metrics::counter!(ROWS_WRITTEN, "job" => job).increment(rows);
    }
}

pub fn window_failure(job: &'static str) {
    metrics::counter!(WINDOW_FAILURES, "job" => job).increment(1);
}

pub fn windows_failing(job: &'static str, windows: u64) {
    metrics::gauge!(WINDOWS_FAILING, "job" => job).set(windows as f64);
}

pub fn late_recomputation(job: &'static str) {
    metrics::counter!(LATE_RECOMPUTATIONS, "job" => job).increment(1);
}

pub fn windows_behind(job: &'static str, windows: u64) {
    metrics::gauge!(WINDOWS_BEHIND, "job" => job).set(windows as f64);
}

pub fn recomputes_deferred(job: &'static str, windows: u64) {
    metrics::gauge!(RECOMPUTES_DEFERRED, "job" => job).set(windows as f64);
}

pub fn partition_dropped(table: &'static str) {
    metrics::counter!(PARTITIONS_DROPPED, "table" => table).increment(1);
}
