//! `aggregation_runs` in PostgreSQL: every SQL statement the aggregator runs
//! there. One row per attempt of a job on a window, inserted as `running`
//! before the work and finished as `succeeded` or `failed` after it.

use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Pool};

const START: &str = "\
INSERT INTO aggregation_runs (job, window_start, window_end, trigger, status, version)
VALUES ($1, $2, $3, $4, 'running', $5)
RETURNING id";

const FINISH: &str = "\
UPDATE aggregation_runs
SET status = $2, rows = $3, duration_ms = $4, error = $5, finished_at = now()
WHERE id = $1";

const LAST_SUCCEEDED_WINDOW: &str = "\
SELECT max(window_start) FROM aggregation_runs WHERE job = $1 AND status = 'succeeded' AND trigger <> 'open_hour'";

/// Per window of a job whose newest finished run failed: how many runs failed
/// since its last succeeded one.
const FAILING_WINDOWS: &str = "\
SELECT r.window_start, count(*) AS failures
FROM aggregation_runs r
WHERE r.job = $1 AND r.status = 'failed'
  AND r.id > COALESCE((
      SELECT max(s.id) FROM aggregation_runs s
      WHERE s.job = r.job AND s.window_start = r.window_start AND s.status = 'succeeded'
  ), 0)
GROUP BY r.window_start
ORDER BY r.window_start";

const SCHEDULED_RETENTION_DONE: &str = "\
SELECT EXISTS (
    SELECT 1 FROM aggregation_runs
    WHERE job = 'retention' AND trigger = 'schedule' AND status = 'succeeded' AND window_start = $1
)";

const LIST: &str = "\
SELECT id, job, window_start, window_end, trigger, status, rows, duration_ms, error, version, started_at, finished_at
FROM aggregation_runs
WHERE job = $1
ORDER BY id";

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock($1)";
const UNLOCK: &str = "SELECT pg_advisory_unlock($1)";

/// The advisory lock a replica holds while it ticks, so that one replica at a
/// time schedules (the others skip the tick; a crashed holder's lock goes
/// with its connection).
pub const TICK_LOCK_KEY: i64 = 0x6167_6772_5f63_726e;

/// The job name of retention runs.
pub const RETENTION_JOB: &str = "retention";

/// A failed `aggregation_runs` statement. The message carries the server's
/// own (tokio-postgres' `Display` alone says only "db error").
#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error("no postgres connection: {0}")]
    Pool(deadpool_postgres::PoolError),
    #[error("postgres: {}", postgres_message(.0))]
    Query(tokio_postgres::Error),
}

impl From<deadpool_postgres::PoolError> for RunsError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        RunsError::Pool(error)
    }
}

impl From<tokio_postgres::Error> for RunsError {
    fn from(error: tokio_postgres::Error) -> Self {
        RunsError::Query(error)
    }
}

fn postgres_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => {
            let mut message = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            message
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Succeeded,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
    }
}

/// What a run wrote, for [`finish`].
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    pub status: Status,
    pub rows: Option<u64>,
    pub duration_ms: u64,
    pub error: Option<&'a str>,
}

/// Records the start of a run and returns its id.
pub async fn start(
    pool: &Pool,
    job: &str,
    window: (DateTime<Utc>, DateTime<Utc>),
    trigger: &str,
    version: Option<u64>,
) -> Result<i64, RunsError> {
    let client = pool.get().await?;
    let version = version.map(to_i64);
    let row = client.query_one(START, &[&job, &window.0, &window.1, &trigger, &version]).await?;
    Ok(row.get(0))
}

/// Records how run `id` ended.
pub async fn finish(pool: &Pool, id: i64, outcome: Outcome<'_>) -> Result<(), RunsError> {
    let client = pool.get().await?;
    let rows = outcome.rows.map(to_i64);
    let duration = to_i64(outcome.duration_ms);
    client.execute(FINISH, &[&id, &outcome.status.as_str(), &rows, &duration, &outcome.error]).await?;
    Ok(())
}

/// The start of the newest window of `job` with a succeeded run.
pub async fn last_succeeded_window(pool: &Pool, job: &str) -> Result<Option<DateTime<Utc>>, RunsError> {
    let client = pool.get().await?;
    Ok(client.query_one(LAST_SUCCEEDED_WINDOW, &[&job]).await?.get(0))
}

/// The windows of `job` whose latest finished run failed, oldest first, each
/// with the number of runs that failed since its last success.
pub async fn failing_windows(pool: &Pool, job: &str) -> Result<Vec<(DateTime<Utc>, u32)>, RunsError> {
    let client = pool.get().await?;
    let rows = client.query(FAILING_WINDOWS, &[&job]).await?;
    Ok(rows.iter().map(|row| (row.get(0), u32::try_from(row.get::<_, i64>(1)).unwrap_or(u32::MAX))).collect())
}

/// Whether the scheduled retention of the day starting at `day` succeeded.
pub async fn scheduled_retention_done(pool: &Pool, day: DateTime<Utc>) -> Result<bool, RunsError> {
    let client = pool.get().await?;
    Ok(client.query_one(SCHEDULED_RETENTION_DONE, &[&day]).await?.get(0))
}

/// One row of `aggregation_runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: i64,
    pub job: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub trigger: String,
    pub status: String,
    pub rows: Option<i64>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub version: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Every run of `job`, oldest first.
pub async fn list(pool: &Pool, job: &str) -> Result<Vec<RunRecord>, RunsError> {
    let client = pool.get().await?;
    let rows = client.query(LIST, &[&job]).await?;
    Ok(rows
        .iter()
        .map(|row| RunRecord {
            id: row.get(0),
            job: row.get(1),
            window_start: row.get(2),
            window_end: row.get(3),
            trigger: row.get(4),
            status: row.get(5),
            rows: row.get(6),
            duration_ms: row.get(7),
            error: row.get(8),
            version: row.get(9),
            started_at: row.get(10),
            finished_at: row.get(11),
        })
        .collect())
}

/// The advisory lock a replica holds while it runs a facts pass (separate
/// from the tick lock: passes run every few seconds, beside long ticks).
pub const FACTS_LOCK_KEY: i64 = 0x6167_6772_5f66_6374;

/// An advisory lock, held on one pooled connection until [`unlock`].
pub struct TickLock(Object, i64);

/// Takes the tick lock if no other session holds it.
pub async fn try_lock(pool: &Pool) -> Result<Option<TickLock>, RunsError> {
    try_lock_key(pool, TICK_LOCK_KEY).await
}

/// Takes the advisory lock `key` if no other session holds it.
pub async fn try_lock_key(pool: &Pool, key: i64) -> Result<Option<TickLock>, RunsError> {
    let client = pool.get().await?;
    let locked: bool = client.query_one(TRY_LOCK, &[&key]).await?.get(0);
    Ok(locked.then_some(TickLock(client, key)))
}

/// Releases the lock. When that fails the connection is closed rather
/// than returned to the pool, which releases the lock too.
pub async fn unlock(lock: TickLock) {
    if let Err(error) = lock.0.query_one(UNLOCK, &[&lock.1]).await {
        tracing::warn!(error = %error, "cannot release an advisory lock; closing its connection");
        drop(Object::take(lock.0));
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
