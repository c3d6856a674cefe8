//! aggregator-cron: builds the hourly `video_metrics` and daily
//! `user_engagement_daily` tables, keeps them up to date with late events,
//! applies retention, and backfills on demand.
//!
//! - [`Aggregator`]: one window run, a scheduler tick, backfill, retention;
//! - [`scheduler`]: the loop the service runs;
//! - [`facts`]: the facts pass that keeps open windows' view facts stored;
//! - [`runs`]: `aggregation_runs` in PostgreSQL;
//! - [`retention`]: monthly (daily) partitions past their retention;
//! - [`schedule`]: the window arithmetic, pure;
//! - [`cli`]: the `run` (backfill) and `retention` commands.
//!
//! This crate holds everything testable; `main.rs` only dispatches.

mod aggregator;
pub mod cli;
pub mod config;
pub mod facts;
pub mod metrics;
pub mod retention;
pub mod runs;
pub mod schedule;
pub mod scheduler;

use std::{net::TcpListener, sync::Arc};

use service_kit::{
    Readiness, Shutdown,
    deps::{clickhouse::ClickHouseProbe, postgres::PostgresProbe},
};

pub use aggregator::{
    AggregateError, Aggregator, BackfillPlan, BackfillProgress, BackfillReport, DayRollup, TickReport, TickRun,
    Trigger, WindowRun,
};
pub use config::{AggregationConfig, Config, DEFAULT_PORT, FactsConfig, RetentionConfig};
pub use retention::{PartitionDrop, RetentionTable};

pub const SERVICE: &str = "aggregator-cron";

/// Serves the ops endpoints and runs the scheduler until `shutdown`; ready
/// while ClickHouse and PostgreSQL answer.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    service_kit::ops::describe_metrics(metrics::describe);
    let aggregator = Arc::new(Aggregator::connect(&config).await?);
    let readiness = Readiness::new(SERVICE, config.http.probe_timeout)
        .with_probe(ClickHouseProbe::new(&config.clickhouse))
        .with_probe(PostgresProbe::new(aggregator.postgres().clone()));
    tracing::info!(
        scheduler = config.aggregation.enabled,
        retention = config.retention.enabled,
        lateness = ?config.aggregation.lateness,
        tick_interval = ?config.aggregation.tick_interval,
        facts = config.facts.enabled,
        "aggregator configured"
    );

    let facts = config.facts.enabled.then(|| tokio::spawn(facts::run(aggregator.clone(), shutdown.clone())));
    let scheduler = config.aggregation.enabled.then(|| tokio::spawn(scheduler::run(aggregator, shutdown.clone())));
    let served = service_kit::ops::serve(listener, &config.http, Arc::new(readiness), shutdown.clone(), |_| {}).await;
    // The server stopped, on a signal or on an error: the scheduler stops too.
    shutdown.trigger();
    if let Some(scheduler) = scheduler {
        scheduler.await?;
    }
    if let Some(facts) = facts {
        facts.await?;
    }
    served?;
    Ok(())
}
