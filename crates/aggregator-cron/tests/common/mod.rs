//! Shared by the integration tests: a ClickHouse and a PostgreSQL database of
//! the test's own, an aggregator on them, and an event builder.

#![allow(dead_code)]

use std::collections::BTreeMap;

use aggregator_cron::{Aggregator, Config, runs};
use chrono::{DateTime, Utc};
use events_model::EventRow;
use metrics_sql::{
    rows::{self, MarkerRow},
    windows::Job,
};
use service_kit::testing::{TestClickHouse, TestPostgres};

/// 2025-11-24T16:10:00Z, ten minutes into hour window `H` of day `D`.
pub const T: u64 = 1_764_000_600_000;
pub const H: u32 = (T / 3_600_000) as u32;
pub const D: u32 = (T / 86_400_000) as u32;
pub const MINUTE: u64 = 60_000;
pub const HOUR_MS: u64 = 3_600_000;

pub struct Env {
    pub clickhouse: TestClickHouse,
    pub postgres: TestPostgres,
    pub config: Config,
    pub aggregator: Aggregator,
}

impl Env {
    /// Fresh databases with every migration, and an aggregator configured by `tune`.
    pub async fn new(tune: impl FnOnce(&mut Config)) -> Env {
        let clickhouse = TestClickHouse::create().await.unwrap();
        let postgres = TestPostgres::create().await.unwrap();
        let mut config = Config::default();
        config.clickhouse = clickhouse.config.clone();
        config.postgres = postgres.config.clone();
        tune(&mut config);
        let aggregator = Aggregator::connect(&config).await.unwrap();
        Env { clickhouse, postgres, config, aggregator }
    }

    pub async fn insert(&self, rows: &[EventRow]) {
        let client = self.clickhouse.client();
        let mut insert = client.insert::<EventRow>("events").await.unwrap();
        for row in rows {
            insert.write(row).await.unwrap();
        }
        insert.end().await.unwrap();
    }

    pub async fn runs(&self, job: &str) -> Vec<runs::RunRecord> {
        runs::list(self.aggregator.postgres(), job).await.unwrap()
    }

    /// The newest record of each window of `job` in `[from, to)`.
    pub async fn markers(&self, job: Job, from: u32, to: u32) -> BTreeMap<u32, MarkerRow> {
        let rows: Vec<MarkerRow> =
            rows::markers(job, from, to).query(&self.clickhouse.client()).fetch_all().await.unwrap();
        rows.into_iter().map(|m| (m.window, m)).collect()
    }

    pub async fn server_now(&self) -> u32 {
        self.clickhouse.client().query("SELECT toUInt32(now())").fetch_one().await.unwrap()
    }

    /// Inserts `rows` once the server clock is past `covered` (a window's
    /// `covered_until`), so that their `inserted_at` makes the window stale.
    pub async fn insert_after(&self, covered: u32, rows: &[EventRow]) {
        service_kit::testing::eventually(std::time::Duration::from_secs(5), || async {
            let now = self.server_now().await;
            anyhow::ensure!(now > covered, "server clock {now} not past {covered} yet");
            Ok(())
        })
        .await
        .unwrap();
        self.insert(rows).await;
    }

    /// Environment for the real binary pointing at these databases.
    pub fn binary_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CLICKHOUSE_URL", self.clickhouse.config.endpoint()),
            ("CLICKHOUSE_DATABASE", self.clickhouse.config.database.clone()),
            ("DATABASE_URL", self.postgres.config.url.clone()),
            ("LOG_FORMAT", "json".into()),
            ("LOG_LEVEL", "info".into()),
        ]
    }

    pub async fn drop(self) {
        drop(self.aggregator);
        self.clickhouse.drop().await.unwrap();
        self.postgres.drop().await.unwrap();
    }
}

/// An event of video `v1` at `at_ms`.
pub fn event(event_type: &str, at_ms: u64, session: &str, user: Option<&str>) -> EventRow {
    let mut row = EventRow::new(event_type, session, "v1", at_ms);
    row.user_id = user.map(Into::into);
    row.received_at_ms = at_ms + 5;
    row
}

/// The same with a playhead position.
pub fn at(event_type: &str, at_ms: u64, session: &str, user: Option<&str>, position: f64) -> EventRow {
    let mut row = event(event_type, at_ms, session, user);
    row.position_seconds = Some(position);
    row
}

/// A view of `session` (user `u:<session>`) starting at `start_ms`: a start
/// and one progress a minute later, 60 s watched.
pub fn view(session: &str, start_ms: u64) -> Vec<EventRow> {
    let user = format!("user-{session}");
    let mut start = at("video_start", start_ms, session, Some(&user), 0.0);
    start.duration_seconds = Some(600.0);
    vec![start, at("video_progress", start_ms + MINUTE, session, Some(&user), 60.0)]
}

pub fn instant(epoch_ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::try_from(epoch_ms).unwrap()).unwrap()
}

/// Epoch milliseconds of an RFC 3339 time.
pub fn ms(rfc3339: &str) -> u64 {
    u64::try_from(DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis()).unwrap()
}

/// Start of hour window `window`, in epoch milliseconds.
pub fn hour_ms(window: u32) -> u64 {
    u64::from(window) * HOUR_MS
}
