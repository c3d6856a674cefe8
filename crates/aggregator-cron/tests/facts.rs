//! Facts passes against the local stack's ClickHouse 18.16 and PostgreSQL,
//! each test in databases of its own. Passes take their horizon from the
//! server clock, so the views here are placed relative to the real now.
#![cfg(test)]

mod common;

use std::{sync::Arc, time::Duration};

use aggregator_cron::{Aggregator, facts, runs::FACTS_LOCK_KEY};
use common::*;
use metrics_sql::{
    facts::{StoredFacts, Touched},
    read::{self, TopMetric, TopVideoRow, VideoSummaryRow},
    views::Scope,
    windows::Split,
};
use serde::Deserialize;
use service_kit::{Shutdown, testing::eventually};

#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
struct StoredRow {
    session_id: String,
    start_ms: u64,
    is_view: u8,
    version: u64,
}

async fn stored(env: &Env) -> Vec<StoredRow> {
    env.clickhouse
        .client()
        .query(
            "SELECT session_id, start_ms, is_view, version FROM view_facts_v2 ORDER BY session_id, start_ms, version",
        )
        .fetch_all()
        .await
        .unwrap()
}

/// Waits until the server clock is past the last insert plus one second (the tests' margin).
async fn wait_margin(env: &Env) {
    eventually(Duration::from_secs(10), || async {
        let (now, last): (u32, u32) = env
            .clickhouse
            .client()
            .query("SELECT toUInt32(now()), (SELECT toUInt32(max(inserted_at)) FROM events)")
            .fetch_one()
            .await?;
        anyhow::ensure!(now > last + 1, "server clock {now}, last insert {last}");
        Ok(())
    })
    .await
    .unwrap();
}

async fn summary(env: &Env, split: &Split) -> VideoSummaryRow {
    read::video_summary("v1", split, None).query(&env.clickhouse.client()).fetch_one().await.unwrap()
}

async fn top(env: &Env, split: &Split) -> Vec<TopVideoRow> {
    read::top_videos(split, TopMetric::WatchTime, 10).query(&env.clickhouse.client()).fetch_all().await.unwrap()
}

/// After `pass`: top videos of `hours` from its totals equals the exact
/// rebuild, and its `open_views` counts the views of `starts` from the hour
/// before its `covered_until`'s on.
async fn check_totals(env: &Env, pass: &facts::FactsPass, hours: &[u32], starts: &[u64]) {
    let exact = top(env, &Split { raw: hours.to_vec(), ..Split::default() }).await;
    let as_of_pass = Split { from_pass: hours.to_vec(), as_of: Some(pass.record.covered_until), ..Split::default() };
    assert_eq!(top(env, &as_of_pass).await, exact, "{pass:?}");
    let open_from = (u64::from(pass.record.covered_until) / 3600 - 1) * HOUR_MS;
    let open = starts.iter().filter(|&&start| start >= open_from).count() as u64;
    assert_eq!(pass.record.open_views, open, "{pass:?}");
}

/// An environment with only facts passes in mind (no scheduler, no
/// retention), `[facts]` set by `tune`.
async fn facts_env(tune: impl FnOnce(&mut aggregator_cron::FactsConfig)) -> Env {
    Env::new(|c| {
        c.aggregation.enabled = false;
        c.retention.enabled = false;
        tune(&mut c.facts);
    })
    .await
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis() as u64
}

#[tokio::test]
async fn a_full_pass_then_passes_of_the_touched_keys_keep_the_facts_exact() {
    let env = facts_env(|f| f.margin = Duration::from_secs(1)).await;
    let now = now_ms();
    let (s1, s2) = (now - 2 * HOUR_MS, now - 30 * MINUTE);
    let mut rows = view("s1", s1);
    rows.extend(view("s2", s2));
    rows.extend(view("old", now - 4 * 24 * HOUR_MS)); // before the lateness horizon: not stored
    env.insert(&rows).await;
    wait_margin(&env).await;

    let first = env.aggregator.facts_pass().await.unwrap().expect("the lock is free");
    assert!(first.record.full, "{first:?}");
    assert_eq!(first.record.rows, 2, "{first:?}");
    let got = stored(&env).await;
    assert_eq!(
        got.iter().map(|r| (r.session_id.as_str(), r.start_ms, r.is_view)).collect::<Vec<_>>(),
        vec![("s1", s1, 1), ("s2", s2, 1)]
    );
    let hours: Vec<u32> = ((now - 3 * HOUR_MS) / HOUR_MS..=now / HOUR_MS).map(|h| h as u32).collect();
    check_totals(&env, &first, &hours, &[s1, s2]).await;

    // A late video_start ten minutes before s2's: the view now starts there
    // and the later start is retired; s1 is not touched, so not rewritten.
    let earlier = s2 - 10 * MINUTE;
    env.insert_after(first.record.covered_until, &[at("video_start", earlier, "s2", Some("user-s2"), 0.0)]).await;
    let raw = Split { raw: hours.clone(), ..Split::default() };
    let expected = summary(&env, &raw).await;
    assert_eq!(expected.views, 2);
    // Before the next pass, the touched key is rebuilt and the rest read as stored.
    let server_now = env.server_now().await;
    let read = |touched| Split {
        raw: hours.clone(),
        facts: Some(StoredFacts { covered_until: first.record.covered_until, from_ms: first.record.from_ms, touched }),
        ..Split::default()
    };
    assert_eq!(summary(&env, &read(Touched::Before(server_now + 1))).await, expected);
    // As query-api lists them after its freshness check: s2 alone, of v1.
    let from = (first.record.from_ms / 1000).max(earlier / 1000);
    let client = env.clickhouse.client();
    let after = first.record.covered_until;
    let listed = metrics_sql::facts::fetch_touched_keys(&client, Scope::Video("v1"), after, from, 10).await.unwrap();
    let listed = listed.expect("one key is within the limit");
    assert_eq!(listed, [("v1".to_string(), "s2".to_string())]);
    assert_eq!(summary(&env, &read(Touched::Listed(listed))).await, expected);
    for scope in [Scope::Video("v1"), Scope::User("user-s2")] {
        let none = metrics_sql::facts::fetch_touched_keys(&client, scope, after, from, 0).await.unwrap();
        assert_eq!(none, None, "more keys than the limit: {scope:?}");
    }
    let of_user = metrics_sql::facts::fetch_touched_keys(&client, Scope::User("user-s2"), after, from, 10).await;
    assert_eq!(of_user.unwrap().unwrap(), [("v1".to_string(), "s2".to_string())]);

    wait_margin(&env).await;
    let second = env.aggregator.facts_pass().await.unwrap().expect("the lock is free");
    assert!(!second.record.full, "{second:?}");
    assert_eq!(second.record.rows, 2, "s2's two starts only: {second:?}");
    let got = stored(&env).await;
    let newest: Vec<_> = got
        .iter()
        .filter(|r| r.version == second.record.version)
        .map(|r| (r.session_id.as_str(), r.start_ms, r.is_view))
        .collect();
    assert_eq!(newest, vec![("s2", earlier, 1), ("s2", s2, 0)]);
    check_totals(&env, &second, &hours, &[s1, earlier]).await;
    // Read from the stored facts alone (nothing touched since): the same answer.
    let server_now = env.server_now().await;
    let split = Split {
        raw: hours.clone(),
        facts: Some(StoredFacts {
            covered_until: second.record.covered_until.max(server_now),
            from_ms: second.record.from_ms,
            touched: Touched::Before(server_now + 1),
        }),
        ..Split::default()
    };
    assert_eq!(summary(&env, &split).await, expected);
    // What query-api reads once its freshness check finds no row of the
    // video inserted after the pass: the stored rows alone, no rebuild.
    let settled = StoredFacts::settled(second.record.covered_until, second.record.from_ms);
    assert_eq!(summary(&env, &Split { raw: hours.clone(), facts: Some(settled), ..Split::default() }).await, expected);

    // Another replica holding the facts lock: this one skips its pass.
    let other = env.postgres.pool().unwrap().get().await.unwrap();
    other.query_one("SELECT pg_advisory_lock($1)", &[&FACTS_LOCK_KEY]).await.unwrap();
    assert_eq!(env.aggregator.facts_pass().await.unwrap(), None);
    other.query_one("SELECT pg_advisory_unlock($1)", &[&FACTS_LOCK_KEY]).await.unwrap();
    drop(other);
    env.drop().await;
}

#[tokio::test]
async fn the_facts_loop_records_passes_and_stops_on_shutdown() {
    let env = facts_env(|f| f.interval = Duration::from_millis(200)).await;
    env.insert(&view("s1", now_ms() - HOUR_MS)).await;
    let aggregator = Arc::new(Aggregator::connect(&env.config).await.unwrap());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(facts::run(aggregator, shutdown.clone()));
    let client = env.clickhouse.client();
    eventually(Duration::from_secs(20), || async {
        let (passes, full): (u64, u64) =
            client.query("SELECT count(), countIf(full_pass = 1) FROM view_facts_passes").fetch_one().await?;
        anyhow::ensure!(passes >= 2 && full == 1, "{passes} passes, {full} full");
        Ok(())
    })
    .await
    .unwrap();
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("the loop stops within 5 s").unwrap();
    env.drop().await;
}
