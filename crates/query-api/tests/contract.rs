//! The API contract: schemathesis, every check, against the document this
//! query-api serves (`tests/contract/` at the workspace root holds its
//! settings and the hooks for the rules JSON Schema cannot state). Needs
//! `st` (PyPI `schemathesis`) and the local stack.
#![cfg(test)]

use std::time::Duration;

use chrono::Datelike as _;

use query_api::Config;
use service_kit::testing::{self, InProcess, TestClickHouse, TestPostgres};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_api_keeps_its_openapi_document() {
    let postgres = TestPostgres::create().await.expect("test postgres database");
    let keys = postgres.keys().await.expect("test keys");
    let clickhouse = TestClickHouse::create().await.expect("test clickhouse database");
    let config = Config {
        postgres: postgres.config.clone(),
        redis: testing::redis_config(),
        clickhouse: clickhouse.config.clone(),
        ..Config::default()
    };
    let service = InProcess::spawn(config, query_api::run);
    service.wait_ready(Duration::from_secs(30)).await.expect("query-api ready");
    let url = service.url("/api/openapi.json");
    let outcome = tokio::task::spawn_blocking(move || {
        // admin: every operation, the catalog writes included.
        testing::schemathesis(&url, &[("Authorization", &format!("Bearer {}", keys.admin))])
    })
    .await
    .unwrap();
    service.stop().await.unwrap();
    postgres.drop().await.unwrap();
    clickhouse.drop().await.unwrap();
    outcome.unwrap();
}

/// The contract's hooks restate the cross-field rules in Python; they must
/// say what the server enforces.
#[test]
fn the_hooks_state_the_servers_limits() {
    let hooks = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/contract/hooks.py")).unwrap();
    let expect = |line: String| assert!(hooks.contains(&line), "hooks.py should say `{line}`");
    expect(format!("MAX_RANGE_DAYS = {}", query_api::metric_api::params::MAX_RANGE_DAYS));
    expect(format!("DEFAULT_RANGE_DAYS = {}", query_api::metric_api::params::DEFAULT_RANGE_DAYS));
    let (min_day, max_day) = (query_api::metric_api::params::MIN_DAY, query_api::metric_api::params::MAX_DAY);
    expect(format!("MIN_METRIC_DAY = date({}, {}, {})", min_day.year(), min_day.month(), min_day.day()));
    expect(format!("MAX_METRIC_DAY = date({}, {}, {})", max_day.year(), max_day.month(), max_day.day()));
    assert_eq!(metrics_sql::custom::MAX_RANGE_SECONDS, 366 * 86_400);
    expect("MAX_RANGE_SECONDS = 366 * DAY_SECONDS".to_owned());
    for g in metrics_sql::custom::GRANULARITIES {
        let days = g.max_range_seconds / 86_400;
        let python = match days {
            1 => "DAY_SECONDS".to_owned(),
            366 => "MAX_RANGE_SECONDS".to_owned(),
            n => format!("{n} * DAY_SECONDS"),
        };
        expect(format!("\"{}\": {python}", g.name));
    }
    assert_eq!(events_model::limits::MAX_FUTURE_SKEW.num_hours(), 24);
    expect("MIN_EVENT_TIME = datetime(2000, 1, 1".to_owned());
    let lateness_hours = events_model::limits::DEFAULT_LATENESS.as_secs() / 3600;
    expect(format!("LATENESS = timedelta(hours={lateness_hours})"));
    assert_eq!(events_model::limits::MIN_TIMESTAMP_MS, 946_684_800_000);
}
