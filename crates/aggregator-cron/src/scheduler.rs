//! The scheduler task: a tick on start and at every due time (and at least
//! every `tick_interval`, for late windows), until shutdown.

use std::sync::Arc;

use chrono::Utc;
use service_kit::Shutdown;

use crate::Aggregator;

/// Ticks until `shutdown`. A tick in progress stops between windows; a window
/// in progress gets the configured grace period.
pub async fn run(aggregator: Arc<Aggregator>, shutdown: Shutdown) {
    tracing::info!("scheduler started");
    while !shutdown.is_triggered() {
        match aggregator.tick_until(Utc::now(), &shutdown).await {
            Ok(report) if report.skipped => {}
            Ok(report) => {
                let failed = report.failures().count();
                if !report.runs.is_empty() || report.retention.is_some() {
                    tracing::info!(
                        windows = report.runs.len(),
                        failed,
                        retention = report.retention.is_some(),
                        "tick done"
                    );
                }
            }
            Err(error) => tracing::error!(error = %format!("{error:#}"), "tick failed; retrying at the next tick"),
        }
        let now = Utc::now();
        let wait = (aggregator.next_wake(now) - now).to_std().unwrap_or_default();
        tracing::debug!(wait_secs = wait.as_secs(), "scheduler sleeping");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.wait() => {}
        }
    }
    tracing::info!("scheduler stopped");
}
