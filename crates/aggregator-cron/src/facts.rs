//! The facts pass (`metrics_sql::facts`): every `facts.interval`, the view
//! keys that received rows since the previous pass are rebuilt from their
//! events and their facts stored, so that the query API rebuilds only the
//! views touched since, not every view of a window still open to late events.
//!
//! A pass is full (every view starting within the lateness horizon) when
//! there is no recent pass to continue from. One replica at a time runs
//! passes (a PostgreSQL advisory lock of their own).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use metrics_sql::{
    facts,
    windows::{self, Grain},
};
use service_kit::Shutdown;

use crate::{AggregateError, Aggregator, metrics, runs};

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactsPass {
    /// What the pass recorded: its version, whether it was full (every view
    /// key of the horizon rebuilt), `covered_until`, `from_ms`, rows written
    /// and the open hours' views.
    pub record: facts::PassRecord,
    pub duration: Duration,
}

impl FactsPass {
    pub fn kind(&self) -> &'static str {
        if self.record.full { "full" } else { "incremental" }
    }
}

fn step(step: &'static str) -> impl FnOnce(clickhouse::error::Error) -> AggregateError {
    move |error| AggregateError::ClickHouse { step, error }
}

impl Aggregator {
    /// Runs one facts pass now; `None` when another replica holds the facts lock.
    pub async fn facts_pass(&self) -> Result<Option<FactsPass>, AggregateError> {
        let Some(lock) = runs::try_lock_key(self.postgres(), runs::FACTS_LOCK_KEY).await? else {
            return Ok(None);
        };
        let outcome = self.facts_pass_locked().await;
        runs::unlock(lock).await;
        outcome.map(Some)
    }

    async fn facts_pass_locked(&self) -> Result<FactsPass, AggregateError> {
        let started = Instant::now();
        let config = self.facts_config();
        let client = self.clickhouse();
        let newest = facts::fetch_newest_pass(client).await.map_err(step("read the newest facts pass"))?;
        let now = match newest {
            Some(pass) => pass.now,
            None => self.server_clock().await.map_err(step("read the server clock"))?,
        };
        let margin = u32::try_from(config.margin.as_secs()).unwrap_or(u32::MAX);
        let covered_until = now.saturating_sub(margin);
        let horizon = windows::horizon(Grain::Hour, u64::from(now), self.lateness().as_secs());
        let from_ms = Grain::Hour.start_of(horizon) * 1000;
        let full_after = u32::try_from(config.full_after.as_secs()).unwrap_or(u32::MAX);
        // Continue from the newest pass when it is recent and covers at least
        // this pass's horizon; otherwise rebuild everything.
        let since = newest
            .filter(|pass| pass.covered_until.saturating_add(full_after) >= now && pass.from_ms <= from_ms)
            .map(|pass| pass.covered_until.saturating_sub(margin));
        let plan = facts::PassPlan { version: self.next_version(), from_ms, since, covered_until };
        let record =
            facts::run_pass(client, plan).await.map_err(|(step, error)| AggregateError::ClickHouse { step, error })?;
        Ok(FactsPass { record, duration: started.elapsed() })
    }
}

/// Runs a pass every `facts.interval` until `shutdown`. A pass in progress is
/// abandoned on shutdown (the next start continues from the last recorded one).
pub async fn run(aggregator: Arc<Aggregator>, shutdown: Shutdown) {
    let interval = aggregator.facts_config().interval;
    tracing::info!(interval = ?interval, "facts passes started");
    while !shutdown.is_triggered() {
        let outcome = tokio::select! {
            outcome = aggregator.facts_pass() => outcome,
            () = shutdown.wait() => break,
        };
        match outcome {
            Ok(None) => {}
            Ok(Some(pass)) => {
                let record = pass.record;
                metrics::facts_pass(pass.kind(), true, pass.duration, record.rows);
                let duration_ms = pass.duration.as_millis() as u64;
                if record.full {
                    tracing::info!(
                        version = record.version,
                        rows = record.rows,
                        open_views = record.open_views,
                        covered_until = record.covered_until,
                        from_ms = record.from_ms,
                        duration_ms,
                        "full facts pass done"
                    );
                } else {
                    tracing::debug!(
                        version = record.version,
                        rows = record.rows,
                        open_views = record.open_views,
                        covered_until = record.covered_until,
                        duration_ms,
                        "facts pass done"
                    );
                }
            }
            Err(error) => {
                metrics::facts_pass("unknown", false, Duration::ZERO, 0);
                tracing::error!(error = %error, "facts pass failed; reads rebuild open windows from the raw events until one succeeds");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.wait() => {}
        }
    }
    tracing::info!("facts passes stopped");
}
