//! `POST /api/metrics/query` served in-process against the local ClickHouse
//! 18.16 (own database), the same compiled SQL run on chDB (current
//! ClickHouse), and every invalid or hostile body refused with a 400 by a
//! service whose ClickHouse cannot be reached.
//!
//! The expected answers are computed here, from the inserted rows, by a
//! plain Rust evaluation of the request (deduplicate by `event_id`, filter,
//! group, aggregate, order).
#![cfg(test)]

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use chrono::{DateTime, NaiveDate, SecondsFormat};
use events_model::{EVENTS_TABLE, EventRow};
use metrics_sql::{hourly::RolledHour, windows::Job};
use query_api::{
    Config,
    custom_query::{QueryRequest, compile, execute},
};
use reqwest::{Client, RequestBuilder};
use serde_json::{Map, Value, json};
use service_kit::testing::{self, InProcess, TestClickHouse, TestKeys, TestPostgres};

// ------------------------------------------------------------- fixture ---

const DAY_1: i64 = 1_793_491_200; // 2026-11-01T00:00:00Z
const HOSTILE_VIDEO: &str = "o'brien\\'; DROP TABLE events; -- /* ? */";

/// A small deterministic generator (64-bit LCG), so every run sees the same events.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn event(id: u128, event_type: &str, timestamp_ms: i64, rng: &mut Lcg) -> EventRow {
    let bitrate = matches!(event_type, "video_start" | "video_progress" | "quality_change") && rng.below(4) > 0;
    EventRow {
        event_id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + id),
        event_type: event_type.into(),
        user_id: (rng.below(5) > 0).then(|| format!("user-{}", rng.below(15))),
        session_id: format!("session-{}", rng.below(40)),
        video_id: if rng.below(25) == 0 { HOSTILE_VIDEO.into() } else { format!("video-{}", rng.below(6)) },
        timestamp: (timestamp_ms / 1000) as u32,
        timestamp_ms: timestamp_ms as u64,
        received_at_ms: timestamp_ms as u64 + 40,
        position_seconds: Some(rng.below(600) as f64),
        duration_seconds: Some(600.0),
        quality: rng.pick(&["360p", "720p", "1080p"]).into(),
        bitrate_kbps: bitrate.then(|| [800, 2500, 5000, 7333][rng.below(4) as usize]),
        buffer_duration_ms: (event_type == "video_buffer").then(|| 100 + rng.below(5000) as u32),
        startup_time_ms: (event_type == "video_start" && rng.below(10) < 7).then(|| 200 + rng.below(3000) as u32),
        error_code: if event_type == "video_error" { "E1".into() } else { String::new() },
        error_message: String::new(),
        fatal: u8::from(event_type == "video_error" && rng.below(2) == 0),
        seek_from_seconds: None,
        seek_to_seconds: None,
        from_quality: String::new(),
        to_quality: String::new(),
        device_type: rng.pick(&["desktop", "mobile", "tv", ""]).into(),
        browser: rng.pick(&["chrome", "firefox", "safari"]).into(),
        os: rng.pick(&["linux", "ios", "android", "windows"]).into(),
        country: rng.pick(&["DE", "FR", "US", "BR", ""]).into(),
        player: "test-player".into(),
        cdn: rng.pick(&["cdn-a", "cdn-b"]).into(),
        properties: "{}".into(),
        metadata: None,
    }
}

/// 700 events over 2.5 days from 2026-11-01, two on either side of midnight
/// between the first and second day, and a second copy of every 7th event
/// (the same event received again, as after a redelivery).
fn fixture() -> (Vec<EventRow>, Vec<EventRow>) {
    let mut rng = Lcg(42);
    let types = [
        "video_start",
        "video_progress",
        "video_progress",
        "video_progress",
        "video_pause",
        "video_resume",
        "video_complete",
        "video_error",
        "video_buffer",
        "video_buffer",
        "quality_change",
        "seek",
    ];
    let mut originals: Vec<EventRow> = (0..700u128)
        .map(|id| {
            let event_type = types[rng.below(types.len() as u64) as usize];
            let at = DAY_1 * 1000 + rng.below(60 * 3600 * 1000) as i64;
            event(id, event_type, at, &mut rng)
        })
        .collect();
    originals.push(event(1000, "video_start", (DAY_1 + 86_400) * 1000 - 1, &mut rng));
    originals.push(event(1001, "video_error", (DAY_1 + 86_400) * 1000, &mut rng));
    let duplicates = originals
        .iter()
        .step_by(7)
        .map(|row| EventRow { received_at_ms: row.received_at_ms + 5_000, ..row.clone() })
        .collect();
    (originals, duplicates)
}

// --------------------------------------------------- expected answers ---

fn parse_time(text: &str) -> i64 {
    match DateTime::parse_from_rfc3339(text) {
        Ok(time) => time.timestamp_millis(),
        Err(_) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis(),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

fn text_dimension<'a>(row: &'a EventRow, name: &str) -> &'a str {
    match name {
        "event_type" => &row.event_type,
        "video_id" => &row.video_id,
        "device_type" => &row.device_type,
        "browser" => &row.browser,
        "os" => &row.os,
        "country" => &row.country,
        "quality" => &row.quality,
        "cdn" => &row.cdn,
        other => panic!("not a text dimension: {other}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Num(i64),
    Text(String),
}

impl Key {
    fn json(&self, name: &str) -> Value {
        match (self, name) {
            (Key::Num(s), "time") => {
                json!(DateTime::from_timestamp(*s, 0).unwrap().to_rfc3339_opts(SecondsFormat::Secs, true))
            }
            (Key::Num(d), "day") => {
                json!(DateTime::from_timestamp(d * 86_400, 0).unwrap().format("%Y-%m-%d").to_string())
            }
            (Key::Num(n), _) => json!(n),
            (Key::Text(s), _) => json!(s),
        }
    }
}

fn metric(name: &str, group: &[&EventRow]) -> Value {
    let count = |t: &str| group.iter().filter(|r| r.event_type == t).count();
    let distinct =
        |f: &dyn Fn(&EventRow) -> Option<String>| group.iter().filter_map(|r| f(r)).collect::<BTreeSet<_>>().len();
    let mean = |f: &dyn Fn(&EventRow) -> Option<u32>| {
        let values: Vec<f64> = group.iter().filter_map(|r| f(r)).map(f64::from).collect();
        if values.is_empty() { Value::Null } else { json!(values.iter().sum::<f64>() / values.len() as f64) }
    };
    match name {
        "event_count" => json!(group.len()),
        "unique_users" => json!(distinct(&|r| r.user_id.clone())),
        "unique_sessions" => json!(distinct(&|r| Some(r.session_id.clone()))),
        "unique_videos" => json!(distinct(&|r| Some(r.video_id.clone()))),
        "views" => json!(count("video_start")),
        "errors" => json!(count("video_error")),
        "fatal_errors" => json!(group.iter().filter(|r| r.event_type == "video_error" && r.fatal == 1).count()),
        "error_rate" => {
            json!(if group.is_empty() { 0.0 } else { count("video_error") as f64 / group.len() as f64 })
        }
        "buffer_events" => json!(count("video_buffer")),
        "buffer_duration_ms" => json!(group.iter().filter_map(|r| r.buffer_duration_ms).map(u64::from).sum::<u64>()),
        "avg_bitrate_kbps" => mean(&|r| r.bitrate_kbps),
        "avg_startup_time_ms" => mean(&|r| r.startup_time_ms),
        "seeks" => json!(count("seek")),
        "quality_changes" => json!(count("quality_change")),
        "completions" => json!(count("video_complete")),
        other => panic!("unknown metric {other}"),
    }
}

/// The answer `body` should get over `rows`: `(columns, rows, truncated)`.
fn expected(rows: &[EventRow], body: &Value) -> (Vec<String>, Vec<Map<String, Value>>, bool) {
    let mut first: BTreeMap<uuid::Uuid, &EventRow> = BTreeMap::new();
    for row in rows {
        let kept = first.entry(row.event_id).or_insert(row);
        if row.received_at_ms < kept.received_at_ms {
            *kept = row;
        }
    }
    let start = parse_time(body["start"].as_str().unwrap());
    let end = parse_time(body["end"].as_str().unwrap());
    let filters = body["filters"].as_array().cloned().unwrap_or_default();
    let selected = first.values().copied().filter(|row| {
        let in_range = (start..end).contains(&(row.timestamp_ms as i64));
        in_range
            && filters.iter().all(|f| {
                let value = text_dimension(row, f["dimension"].as_str().unwrap());
                match f["op"].as_str().unwrap() {
                    "eq" => value == f["value"].as_str().unwrap(),
                    "neq" => value != f["value"].as_str().unwrap(),
                    "in" => strings(&f["values"]).iter().any(|v| v == value),
                    "not_in" => !strings(&f["values"]).iter().any(|v| v == value),
                    other => panic!("unknown op {other}"),
                }
            })
    });

    let bucket = body["granularity"].as_str().map(|g| match g {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        other => panic!("unknown granularity {other}"),
    });
    let group_by = strings(&body["group_by"]);
    let metrics = strings(&body["metrics"]);
    let mut groups: BTreeMap<Vec<Key>, Vec<&EventRow>> = BTreeMap::new();
    for row in selected {
        let seconds = i64::from(row.timestamp);
        let mut key: Vec<Key> = bucket.map(|b| Key::Num(seconds / b * b)).into_iter().collect();
        key.extend(group_by.iter().map(|d| match d.as_str() {
            "hour" => Key::Num(seconds % 86_400 / 3600),
            "day" => Key::Num(seconds / 86_400),
            text => Key::Text(text_dimension(row, text).to_string()),
        }));
        groups.entry(key).or_default().push(row);
    }
    if bucket.is_none() && group_by.is_empty() && groups.is_empty() {
        groups.insert(Vec::new(), Vec::new()); // an aggregate without GROUP BY is one row
    }

    let mut columns: Vec<String> = bucket.map(|_| "time".to_string()).into_iter().collect();
    columns.extend(group_by.iter().cloned());
    columns.extend(metrics.iter().cloned());
    let mut answer: Vec<(Vec<Key>, Map<String, Value>)> = groups
        .into_iter()
        .map(|(key, group)| {
            let mut out = Map::new();
            for (name, part) in columns.iter().zip(&key) {
                out.insert(name.clone(), part.json(name));
            }
            for name in &metrics {
                out.insert(name.clone(), metric(name, &group));
            }
            (key, out)
        })
        .collect();
    if let Some(order_by) = body["order_by"].as_str() {
        let value = |row: &Map<String, Value>| row[order_by].as_f64().unwrap_or(f64::NEG_INFINITY);
        // Stable: ties keep the dimension order. Within a time bucket when there is one.
        answer.sort_by(|(ka, a), (kb, b)| {
            let time = if bucket.is_some() { ka[0].cmp(&kb[0]) } else { std::cmp::Ordering::Equal };
            time.then(value(b).total_cmp(&value(a)))
        });
    }
    let limit = body["limit"].as_u64().unwrap_or(1000) as usize;
    let truncated = answer.len() > limit;
    (columns, answer.into_iter().take(limit).map(|(_, row)| row).collect(), truncated)
}

fn assert_same_rows(context: &str, got: &[Map<String, Value>], want: &[Map<String, Value>]) {
    assert_eq!(got.len(), want.len(), "{context}: row count\n got: {got:?}\nwant: {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.keys().collect::<Vec<_>>(), w.keys().collect::<Vec<_>>(), "{context}: row {i} columns");
        for (name, want) in w {
            let got = &g[name];
            let same = match (got.as_f64(), want.as_f64()) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                _ => got == want,
            };
            assert!(same, "{context}: row {i} {name}: got {got}, want {want}\n got row: {g:?}\nwant row: {w:?}");
        }
    }
}

/// Requests covering every metric, every dimension, every op and granularity.
fn requests() -> Vec<Value> {
    let all_metrics = [
        "event_count",
        "unique_users",
        "unique_sessions",
        "unique_videos",
        "views",
        "errors",
        "fatal_errors",
        "error_rate",
        "buffer_events",
        "buffer_duration_ms",
        "avg_bitrate_kbps",
        "avg_startup_time_ms",
        "seeks",
        "quality_changes",
        "completions",
    ];
    vec![
        json!({"metrics": all_metrics, "start": "2026-11-01", "end": "2026-11-02"}),
        json!({"metrics": all_metrics, "group_by": ["day"], "start": "2026-11-01", "end": "2026-11-04"}),
        json!({
            "metrics": ["event_count", "unique_users", "views"], "group_by": ["country"],
            "filters": [
                {"dimension": "device_type", "op": "eq", "value": "mobile"},
                {"dimension": "event_type", "op": "in", "values": ["video_start", "seek", "video_progress"]}
            ],
            "start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z", "granularity": "hour",
            "order_by": "event_count"
        }),
        json!({
            "metrics": ["errors", "fatal_errors", "error_rate"], "group_by": ["day", "cdn"],
            "start": "2026-11-01", "end": "2026-11-04", "order_by": "error_rate"
        }),
        json!({
            "metrics": ["avg_bitrate_kbps", "avg_startup_time_ms", "buffer_events", "buffer_duration_ms"],
            "group_by": ["quality", "os"],
            "filters": [
                {"dimension": "country", "op": "not_in", "values": ["DE", ""]},
                {"dimension": "browser", "op": "neq", "value": "safari"}
            ],
            "start": "2026-11-01", "end": "2026-11-03T12:00:00Z", "granularity": "day"
        }),
        json!({
            "metrics": ["unique_sessions", "unique_videos", "seeks", "quality_changes", "completions"],
            "group_by": ["event_type", "video_id", "device_type", "browser"],
            "start": "2026-11-01T06:00:00Z", "end": "2026-11-01T12:00:00Z", "granularity": "minute", "limit": 10
        }),
        json!({"metrics": ["event_count", "views"], "group_by": ["hour"], "start": "2026-11-01", "end": "2026-11-03"}),
        // Every metric the hourly rollup holds, by every dimension it keeps,
        // over a range starting and ending inside hours.
        json!({
            "metrics": [
                "event_count", "views", "errors", "fatal_errors", "error_rate", "buffer_events", "buffer_duration_ms",
                "avg_bitrate_kbps", "avg_startup_time_ms", "seeks", "quality_changes", "completions"
            ],
            "group_by": ["event_type", "device_type", "browser", "os", "country", "quality", "cdn"],
            "start": "2026-11-01T05:30:00Z", "end": "2026-11-02T07:15:00.500Z", "granularity": "hour",
            "order_by": "avg_bitrate_kbps", "limit": 10000
        }),
        json!({
            "metrics": ["avg_startup_time_ms", "views", "error_rate"], "group_by": ["device_type", "day"],
            "filters": [
                {"dimension": "event_type", "op": "in", "values": ["video_start", "video_error"]},
                {"dimension": "cdn", "op": "eq", "value": "cdn-a"}
            ],
            "start": "2026-11-01T00:00:00.250Z", "end": "2026-11-03T23:00:00Z", "order_by": "views"
        }),
        json!({
            "metrics": ["event_count", "unique_sessions"], "group_by": ["video_id"],
            "filters": [{"dimension": "video_id", "op": "in", "values": [HOSTILE_VIDEO, "video-1"]}],
            "start": "2026-11-01", "end": "2026-11-04"
        }),
        // Half-open, millisecond-exact bounds: one event at 23:59:59.999, one at midnight.
        json!({"metrics": ["event_count", "views", "errors"], "start": "2026-11-01T23:59:59.999Z", "end": "2026-11-02T00:00:00Z"}),
        json!({"metrics": ["event_count", "views", "errors"], "start": "2026-11-01T23:59:59.999Z", "end": "2026-11-02T00:00:00.001Z"}),
        // Nothing in range: one row of zeros without grouping, no rows with it.
        json!({"metrics": ["event_count", "error_rate", "avg_bitrate_kbps", "unique_users"], "start": "2026-10-01", "end": "2026-10-02"}),
        json!({"metrics": ["event_count"], "group_by": ["country"], "start": "2026-10-01", "end": "2026-10-02", "granularity": "hour"}),
    ]
}

// ------------------------------------------------------------- service ---

async fn read(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("status {status}, body is not json: {text:?}"));
    (status, body)
}

/// A PostgreSQL database of the test's own and one key per scope.
async fn keyed() -> (TestPostgres, TestKeys) {
    let postgres = TestPostgres::create().await.expect("test postgres database");
    let keys = postgres.keys().await.expect("test keys");
    (postgres, keys)
}

/// A new client (no pooled connection shared with another) sending the `read` token.
fn http(keys: &TestKeys) -> Client {
    TestKeys::client(&keys.read)
}

async fn insert(clickhouse: &clickhouse::Client, rows: &[EventRow]) {
    let mut insert = clickhouse.insert::<EventRow>(EVENTS_TABLE).await.unwrap();
    for row in rows {
        insert.write(row).await.unwrap();
    }
    insert.end().await.unwrap();
}

/// query-api's configuration for `database` on the local stack; `cached` or not.
fn config_for(database: &TestClickHouse, postgres: &TestPostgres, cached: bool) -> Config {
    let mut config = Config {
        clickhouse: database.config.clone(),
        postgres: postgres.config.clone(),
        redis: testing::redis_config(),
        ..Config::default()
    };
    config.cache.enabled = cached;
    config
}

/// The `event_count` of the first row `url` answers `body` with (a 200).
async fn event_count(http: &Client, url: &str, body: Value) -> u64 {
    let (status, answer) = read(http.post(url).json(&body)).await;
    assert_eq!(status, 200, "{answer}");
    answer["rows"][0]["event_count"].as_u64().unwrap_or_else(|| panic!("no event_count: {answer}"))
}

/// Asks `url` every one of [`requests`] and compares each answer with the
/// evaluation of `stored`; the rows compared.
async fn answers_match(http: &Client, url: &str, stored: &[EventRow], context: &str) -> usize {
    let mut compared = 0;
    for body in requests() {
        let (status, answer) = read(http.post(url).json(&body)).await;
        assert_eq!(status, 200, "{context}{body}: {answer}");
        let (columns, rows, truncated) = expected(stored, &body);
        assert_eq!(answer["columns"], json!(columns), "{context}{body}");
        assert_eq!(answer["truncated"], truncated, "{context}{body}");
        assert!(answer["sql_ms"].is_u64(), "{answer}");
        let got: Vec<Map<String, Value>> = serde_json::from_value(answer["rows"].clone()).unwrap();
        assert_same_rows(&format!("{context}{body}"), &got, &rows);
        compared += rows.len();
    }
    compared
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_an_independent_evaluation_on_clickhouse_18() {
    let database = TestClickHouse::create().await.expect("test clickhouse database");
    let (postgres, keys) = keyed().await;
    let http = http(&keys);
    let service = InProcess::spawn(config_for(&database, &postgres, true), query_api::run);
    let (originals, duplicates) = fixture();
    // Two inserts, so the copies sit in other parts than the originals.
    insert(&database.client(), &originals).await;
    insert(&database.client(), &duplicates).await;
    let stored = [originals, duplicates].concat();
    let url = service.url("/api/metrics/query");

    let compared = answers_match(&http, &url, &stored, "").await;
    assert!(compared > 100, "only {compared} rows compared");

    // Hand-checked facts, so the evaluation above is not checked only against itself.
    let count = |body: Value| event_count(&http, &url, body);
    assert_eq!(count(json!({"metrics": ["event_count"], "start": "2026-11-01", "end": "2026-11-04"})).await, 702);
    let boundary = |end: &str| json!({"metrics": ["event_count"], "start": "2026-11-01T23:59:59.999Z", "end": end});
    assert_eq!(count(boundary("2026-11-02T00:00:00Z")).await, 1);
    assert_eq!(count(boundary("2026-11-02T00:00:00.001Z")).await, 2);
    let raw: u64 = database.client().query("SELECT count() FROM events").fetch_one().await.unwrap();
    assert_eq!(raw, 702 + 101, "the copies are stored; the answers above counted each event once");

    let (status, answer) = read(http.post(&url).json(&json!({
        "metrics": ["event_count"], "group_by": ["video_id"], "start": "2026-11-01", "end": "2026-11-04", "limit": 3,
    })))
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["truncated"], true, "7 videos, limit 3: {answer}");
    assert_eq!(answer["rows"].as_array().unwrap().len(), 3);

    // The same requests through the time-clustered copy: with a lateness of
    // 60 days the fixture's days (a month ago) are "recent", so every range
    // reads `events_by_time_v2`, which its materialized view filled.
    let mut recent = config_for(&database, &postgres, false);
    recent.freshness.lateness = Duration::from_secs(60 * 86_400);
    let by_time = InProcess::spawn(recent, query_api::run);
    let by_time_url = by_time.url("/api/metrics/query");
    assert_eq!(answers_match(&http, &by_time_url, &stored, "from the copy: ").await, compared);
    // It did read the copy: a row only the copy holds is counted there alone.
    database
        .client()
        .query(&format!(
            "INSERT INTO {} (timestamp, timestamp_ms, event_id, event_type, session_id, video_id, received_at_ms) \
             VALUES (toDateTime({DAY_1} + 60), {}, '0190ffff-0000-7000-8000-000000000001', 'seek', 's-copy', 'v-copy', {})",
            metrics_sql::EVENTS_BY_TIME_TABLE,
            (DAY_1 + 60) * 1000,
            (DAY_1 + 60) * 1000
        ))
        .execute()
        .await
        .unwrap();
    let range = json!({"metrics": ["event_count"], "start": "2026-11-01", "end": "2026-11-05"});
    let (status, answer) = read(http.post(&by_time_url).json(&range)).await;
    assert_eq!((status, &answer["rows"][0]["event_count"]), (200, &json!(703)), "{answer}");
    assert_eq!(count(range).await, 702, "the default lateness reads events for a month-old range");

    drop(http); // no idle keep-alive connection holds the graceful stop
    service.stop().await.unwrap();
    by_time.stop().await.unwrap();
    database.drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_its_limit_answers_503_naming_the_limit() {
    let database = TestClickHouse::create().await.expect("test clickhouse database");
    let (postgres, keys) = keyed().await;
    let http = http(&keys);
    let mut config = config_for(&database, &postgres, false);
    // Fewer rows than the fixture holds: the custom query class stops at it.
    config.limits.custom.max_rows_to_read = 100;
    let service = InProcess::spawn(config, query_api::run);
    let (originals, _) = fixture();
    insert(&database.client(), &originals).await;

    let body =
        json!({"metrics": ["event_count"], "group_by": ["device_type"], "start": "2026-11-01", "end": "2026-11-04"});
    let (status, answer) = read(http.post(service.url("/api/metrics/query")).json(&body)).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "query_too_expensive", "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("max_rows_to_read") && message.contains("limits.{metrics,custom}"), "{message}");

    // The metric endpoints have their own class, without that row limit.
    let (status, answer) = read(http.get(service.url("/api/metrics/realtime"))).await;
    assert_eq!(status, 200, "{answer}");

    drop(http);
    service.stop().await.unwrap();
    database.drop().await.unwrap();
    postgres.drop().await.unwrap();
}

/// A query whose deduplication outgrows the memory limit answers by spilling
/// its grouping to disk (`limits.custom.spill_bytes`, half the limit by
/// default); with spilling off the same query is the 503 naming the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_query_spills_to_disk_instead_of_failing_at_the_memory_limit() {
    let database = TestClickHouse::create().await.expect("test clickhouse database");
    // Two million distinct events on 2026-11-01, a third of them on a tv.
    database
        .client()
        .query(
            "INSERT INTO events (event_id, event_type, session_id, video_id, timestamp, timestamp_ms, received_at_ms, \
             device_type) SELECT generateUUIDv4(), 'video_progress', concat('s', toString(number % 1000)), 'v1', \
             toDateTime(1793491200 + number % 86400), (1793491200 + number % 86400) * 1000, number, \
             if(number % 3 = 0, 'tv', 'mobile') FROM system.numbers LIMIT 2000000",
        )
        .execute()
        .await
        .unwrap();
    let body =
        json!({"metrics": ["event_count"], "group_by": ["device_type"], "start": "2026-11-01", "end": "2026-11-02"});
    let (postgres, keys) = keyed().await;
    let answer_with = |spill_bytes: Option<u64>| {
        let mut config = config_for(&database, &postgres, false);
        config.limits.custom.max_memory_bytes = 100_000_000;
        config.limits.custom.spill_bytes = spill_bytes;
        let body = body.clone();
        // A client of its own per service: no idle connection holds its stop.
        let http = http(&keys);
        async move {
            let service = InProcess::spawn(config, query_api::run);
            let answer = read(http.post(service.url("/api/metrics/query")).json(&body)).await;
            drop(http);
            service.stop().await.unwrap();
            answer
        }
    };
    let (status, answer) = answer_with(None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["rows"],
        json!([{"device_type": "mobile", "event_count": 1_333_333}, {"device_type": "tv", "event_count": 666_667}])
    );
    let (status, answer) = answer_with(Some(0)).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("max_memory_usage"), "{answer}");
    database.drop().await.unwrap();
    postgres.drop().await.unwrap();
}

// ---------------------------------------------------------------- chDB ---

// -------------------------------------------------------- hourly rollup ---

/// Every hour the fixture's events lie in (three days from [`DAY_1`]).
fn fixture_hours() -> std::ops::Range<u32> {
    let first = (DAY_1 / 3600) as u32;
    first..first + 72
}

/// aggregator-cron's statement rolling up `hour` with `version`.
fn roll_up(hour: u32, version: u64) -> metrics_sql::Statement {
    metrics_sql::rows::insert_window(Job::EventsHourly, hour, version)
}

/// Most of `hours`: every one but each fifth, so that rolled-up runs
/// alternate with raw hours; each seventh ([`completed`]) rolled up with
/// nothing, all its rows inserted after its run.
fn some_hours(hours: std::ops::Range<u32>) -> Vec<RolledHour> {
    hours.filter(|h| h % 5 != 2).map(|hour| RolledHour { hour, rows_after: completed(hour).then_some(0) }).collect()
}

/// Whether [`some_hours`] has `hour` completed from the raw events.
fn completed(hour: u32) -> bool {
    hour % 7 == 3
}

/// Rolls up every hour of the fixture as aggregator-cron does (rows, retired
/// combinations, record) with `covered_until` = the newest insert so far.
async fn roll_up_fixture(clickhouse: &clickhouse::Client, version: u64) -> u32 {
    let covered_until: u32 =
        clickhouse.query("SELECT toUInt32(max(inserted_at)) FROM events").fetch_one().await.unwrap();
    for hour in fixture_hours() {
        for step in [roll_up(hour, version), metrics_sql::rows::retire_vanished_rows(Job::EventsHourly, hour, version)]
        {
            step.query(clickhouse).execute().await.unwrap_or_else(|e| panic!("hour {hour}: {e}"));
        }
        let rows: u64 = metrics_sql::rows::count_window_rows(Job::EventsHourly, hour, version)
            .query(clickhouse)
            .fetch_one()
            .await
            .unwrap();
        metrics_sql::rows::insert_marker(Job::EventsHourly, hour, version, covered_until, rows)
            .query(clickhouse)
            .execute()
            .await
            .unwrap();
    }
    covered_until
}

/// Custom queries over hours aggregator-cron rolled up read them from
/// `events_hourly` and answer exactly what the raw events give; an hour
/// with a row inserted after its run (a late event) is read raw where the
/// time-clustered copy does not hold it, and otherwise from the rollup plus
/// the events inserted since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_up_hours_answer_as_the_raw_events_and_a_late_row_sends_its_hour_back_raw() {
    let database = TestClickHouse::create().await.expect("test clickhouse database");
    let (postgres, keys) = keyed().await;
    let http = http(&keys);
    let clickhouse = database.client();
    let (originals, duplicates) = fixture();
    insert(&clickhouse, &originals).await;
    insert(&clickhouse, &duplicates).await;
    let mut stored = [originals, duplicates].concat();
    let covered_until = roll_up_fixture(&clickhouse, 1).await;
    let service = InProcess::spawn(config_for(&database, &postgres, false), query_api::run);
    let url = service.url("/api/metrics/query");

    assert!(answers_match(&http, &url, &stored, "rolled up: ").await > 100);
    // The rollup was read: a row only it holds (a combination no event has,
    // of 1,000 events) shows in the day's count, until the next run retires it.
    let day = json!({"metrics": ["event_count"], "start": "2026-11-01", "end": "2026-11-02"});
    let count = |body: Value| event_count(&http, &url, body);
    let before = count(day.clone()).await;
    let bumped = format!(
        "INSERT INTO events_hourly (hour, event_type, device_type, browser, os, country, quality, cdn, event_count, version) \
         SELECT hour, event_type, device_type, browser, os, 'ZZ', quality, cdn, 1000, 2 \
         FROM events_hourly WHERE hour = toDateTime({}) AND event_count > 0 LIMIT 1",
        DAY_1 + 3 * 3600
    );
    clickhouse.query(&bumped).execute().await.unwrap();
    assert_eq!(count(day.clone()).await, before + 1000, "the hour was not read from the rollup");
    roll_up_fixture(&clickhouse, 3).await;
    assert_eq!(count(day.clone()).await, before, "a new run retires the combinations it no longer finds");

    // A late event for a rolled-up hour, inserted after the runs' records.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while clickhouse.query("SELECT toUInt32(now())").fetch_one::<u32>().await.unwrap() <= covered_until {
        assert!(std::time::Instant::now() < deadline, "the server clock did not pass {covered_until}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut rng = Lcg(7);
    let late = event(5000, "video_start", (DAY_1 + 3 * 3600 + 120) * 1000, &mut rng);
    insert(&clickhouse, std::slice::from_ref(&late)).await;
    stored.push(late);
    assert_eq!(count(day.clone()).await, before + 1, "the late event's hour is read raw");
    assert!(answers_match(&http, &url, &stored, "a late event: ").await > 100);
    // Where the time-clustered copy holds the hour (a lateness of 60 days
    // makes the fixture's days recent), the rollup of the late event's hour
    // is completed by the events inserted after its run instead.
    let mut recent = config_for(&database, &postgres, false);
    recent.freshness.lateness = Duration::from_secs(60 * 86_400);
    let completing = InProcess::spawn(recent, query_api::run);
    let completing_url = completing.url("/api/metrics/query");
    assert!(answers_match(&http, &completing_url, &stored, "a late event, completed: ").await > 100);
    // It did read the rollup: the bumped combination shows again once its
    // row is the newest (version 4 over the run's 3).
    clickhouse.query(&bumped.replace(", 2 FROM", ", 4 FROM")).execute().await.unwrap();
    assert_eq!(event_count(&http, &completing_url, day).await, before + 1001);

    drop(http);
    service.stop().await.unwrap();
    completing.stop().await.unwrap();
    database.drop().await.unwrap();
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The row as one line of `JSONEachRow` for chDB.
fn json_each_row(row: &EventRow) -> String {
    json!({
        "event_id": row.event_id.to_string(), "event_type": row.event_type, "user_id": row.user_id,
        "session_id": row.session_id, "video_id": row.video_id, "timestamp": row.timestamp,
        "timestamp_ms": row.timestamp_ms, "received_at_ms": row.received_at_ms,
        "position_seconds": row.position_seconds, "duration_seconds": row.duration_seconds, "quality": row.quality,
        "bitrate_kbps": row.bitrate_kbps, "buffer_duration_ms": row.buffer_duration_ms,
        "startup_time_ms": row.startup_time_ms, "error_code": row.error_code, "error_message": row.error_message,
        "fatal": row.fatal, "seek_from_seconds": row.seek_from_seconds, "seek_to_seconds": row.seek_to_seconds,
        "from_quality": row.from_quality, "to_quality": row.to_quality, "device_type": row.device_type,
        "browser": row.browser, "os": row.os, "country": row.country, "player": row.player, "cdn": row.cdn,
        "properties": row.properties, "metadata": row.metadata,
    })
    .to_string()
}

/// The compiled SQL of [`requests`], values substituted the way the client
/// substitutes them, runs on chDB (the current ClickHouse engine) over the
/// same rows and gives the same answers. A missing chdb module fails.
#[test]
fn compiled_sql_runs_on_current_clickhouse_via_chdb() {
    let (originals, duplicates) = fixture();
    let stored = [originals, duplicates].concat();
    let now = DateTime::parse_from_rfc3339("2026-11-15T00:00:00Z").unwrap().to_utc();
    // Each request twice: from `events` and from the time-clustered copy
    // (a copy said to hold everything from the epoch on); and where the
    // hourly rollup can answer, with most of its hours from the rollup.
    let raw: Vec<_> = requests()
        .iter()
        .flat_map(|body| {
            let request = QueryRequest::from_json(body).unwrap();
            [u64::MAX, 0].map(|by_time_from_ms| (body.clone(), compile(&request, now, by_time_from_ms).unwrap()))
        })
        .collect();
    let copies = raw.iter().filter(|(_, q)| q.sql().contains(metrics_sql::EVENTS_BY_TIME_TABLE)).count();
    assert_eq!(copies * 2, raw.len(), "half the queries read the copy");
    let rolled: Vec<_> = raw
        .iter()
        .filter_map(|(body, query)| Some((body.clone(), query.with_rolled(&some_hours(query.rollup_hours()?)))))
        .collect();
    assert!(rolled.len() >= 12, "{} queries read the rollup", rolled.len());
    let completing = rolled.iter().filter(|(_, q)| q.sql().contains("HAVING first_inserted_at")).count();
    assert!(completing >= 6, "{completing} queries complete rolled-up hours from the raw events");
    let compiled = [raw, rolled].concat();
    let input = json!({
        "rows": stored.iter().map(json_each_row).collect::<Vec<_>>().join("\n"),
        "setup": fixture_hours()
            .map(|hour| match completed(hour) {
                // A run that saw nothing: every row of the hour came after it.
                true => metrics_sql::hourly::insert_hour(hour, 1, None, 0).render(),
                false => roll_up(hour, 1).render(),
            })
            .collect::<Vec<_>>(),
        "queries": compiled.iter().map(|(_, query)| query.render_sql()).collect::<Vec<_>>(),
    });

    let script = workspace_root().join("crates/query-api/tests/chdb_queries.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running python3 (is it installed?)");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{} failed ({}):\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<String> = serde_json::from_slice::<Value>(&output.stdout).unwrap()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    assert_eq!(results.len(), compiled.len());
    let mut compared = 0;
    for ((body, query), result) in compiled.iter().zip(&results) {
        let answer = execute::shape(query, result.as_bytes(), 0).unwrap_or_else(|e| panic!("{body}: {e:#}\n{result}"));
        let (columns, rows, truncated) = expected(&stored, body);
        assert_eq!(answer.columns, columns, "{body}");
        assert_eq!(answer.truncated, truncated, "{body}");
        assert_same_rows(&format!("chdb {body}"), &answer.rows, &rows);
        compared += rows.len();
    }
    assert!(compared > 100, "only {compared} rows compared");
}

// ------------------------------------------------------------ refusals ---

/// Sends the head of a `POST /api/metrics/query` announcing `length` bytes of
/// JSON, no body, and reads the answer (the server closes the connection).
async fn announce_body(addr: std::net::SocketAddr, token: &str, length: usize) -> (u16, Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/metrics/query HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no http answer: {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    (status, serde_json::from_str(body).unwrap_or_else(|_| panic!("status {status}, body is not json: {body:?}")))
}

/// Every invalid or hostile body is a 400 naming the field, decided without
/// ClickHouse: this service's ClickHouse is a closed port, where a valid body
/// gets 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_hostile_bodies_are_refused_without_clickhouse() {
    let closed = testing::ClosedPort::new();
    let clickhouse =
        service_kit::ClickHouseConfig { url: format!("http://{}", closed.addr()), ..testing::clickhouse_config() };
    let (postgres, keys) = keyed().await;
    let http = http(&keys);
    let config =
        Config { clickhouse, postgres: postgres.config.clone(), redis: testing::redis_config(), ..Config::default() };
    let service = InProcess::spawn(config, query_api::run);
    let url = service.url("/api/metrics/query");
    let valid = || json!({"metrics": ["event_count"], "start": "2026-11-01", "end": "2026-11-02"});
    let with = |changes: Value| {
        let mut body = valid();
        for (key, value) in changes.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    let drop_table = "'; DROP TABLE events; --";

    let cases: Vec<(Value, &str)> = vec![
        (with(json!({"metrics": ["event_count", "views", drop_table]})), "metrics[2]"),
        (with(json!({"metrics": ["count() FROM system.users --"]})), "metrics[0]"),
        (with(json!({"metrics": ["event_count", "event_count"]})), "metrics[1]"),
        (with(json!({"metrics": []})), "metrics"),
        (with(json!({"metrics": "event_count"})), "metrics"),
        (with(json!({"group_by": ["video_id) OR 1=1"]})), "group_by[0]"),
        (with(json!({"group_by": ["/* */country"]})), "group_by[0]"),
        (with(json!({"group_by": ["country; SELECT 1"]})), "group_by[0]"),
        (with(json!({"group_by": ["pays ✓ 国"]})), "group_by[0]"),
        (
            with(json!({"filters": [{"dimension": "video_id) OR 1=1 --", "op": "eq", "value": "v"}]})),
            "filters[0].dimension",
        ),
        (with(json!({"filters": [{"dimension": "hour", "op": "eq", "value": "3"}]})), "filters[0].dimension"),
        (with(json!({"filters": [{"dimension": "os", "op": "= '' OR 1=1 --", "value": "v"}]})), "filters[0].op"),
        (with(json!({"filters": [{"dimension": "os", "op": "eq", "value": "a\u{0}b"}]})), "filters[0].value"),
        (with(json!({"filters": [{"dimension": "os", "op": "eq", "value": "x".repeat(257)}]})), "filters[0].value"),
        (with(json!({"filters": [{"dimension": "os", "op": "eq", "value": 1}]})), "filters[0].value"),
        (with(json!({"filters": [{"dimension": "os", "op": "in", "values": vec!["v"; 101]}]})), "filters[0].values"),
        (with(json!({"filters": [{"dimension": "os", "op": "in", "values": []}]})), "filters[0].values"),
        (with(json!({"filters": [{"dimension": "os", "op": "eq", "value": "v", "sql": "1=1"}]})), "filters[0].sql"),
        (with(json!({"granularity": "second"})), "granularity"),
        (with(json!({"granularity": "hour; DROP TABLE events"})), "granularity"),
        (with(json!({"start": "2026-11-01'; --"})), "start"),
        (with(json!({"start": 1_793_491_200})), "start"),
        (with(json!({"end": "2026-10-01"})), "end"),
        (with(json!({"start": "1970-01-01", "end": "2100-01-01"})), "end"),
        (with(json!({"start": "2000-01-01", "end": "2026-01-01"})), "end"),
        (with(json!({"granularity": "minute", "end": "2026-11-03"})), "granularity"),
        (with(json!({"granularity": "hour", "start": "2026-01-01", "end": "2026-03-01"})), "granularity"),
        (with(json!({"limit": 1_000_000_000})), "limit"),
        (with(json!({"limit": 0})), "limit"),
        (with(json!({"limit": "10"})), "limit"),
        (with(json!({"order_by": "event_count DESC; --"})), "order_by"),
        (with(json!({"order_by": "views"})), "order_by"),
        (with(json!({"format": "TabSeparated"})), "format"),
    ];
    for (body, field) in &cases {
        let (status, answer) = read(http.post(&url).json(body)).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"], "bad_request", "{answer}");
        assert_eq!(answer["field"], *field, "{body}: {answer}");
    }
    // The unknown name is quoted, JSON-escaped, in the message.
    let (_, answer) = read(http.post(&url).json(&cases[0].0)).await;
    assert!(answer["message"].as_str().unwrap().contains(r#""'; DROP TABLE events; --""#), "{answer}");

    // Unreadable bodies: not JSON, not an object, too large, wrong content type.
    let raw = |content_type: &str, body: String| http.post(&url).header("content-type", content_type).body(body);
    for text in
        ["{\"metrics\": ", "metrics=event_count", "", "[\"event_count\"]", "null", "\"'; DROP TABLE events; --\""]
    {
        let (status, answer) = read(raw("application/json", text.to_string())).await;
        assert_eq!(status, 400, "{text:?}: {answer}");
        assert_eq!(answer["error"], "bad_request");
    }
    // Too large: a 100 KiB metric name is refused before it is read whole,
    // and so is a body announcing 1 MiB (only its head is sent: actix answers
    // before the body and closes, and a client still writing a large body may
    // see a reset instead of the answer).
    let (status, answer) =
        read(raw("application/json", json!({"metrics": ["x".repeat(100 * 1024)]}).to_string())).await;
    assert_eq!((status, answer["error"].as_str()), (413, Some("payload_too_large")), "{answer}");
    let (status, answer) = announce_body(service.addr, &keys.read, 1 << 20).await;
    assert_eq!((status, answer["error"].as_str()), (413, Some("payload_too_large")), "{answer}");
    let (status, answer) = read(raw("text/plain", valid().to_string())).await;
    assert_eq!((status, answer["error"].as_str()), (415, Some("unsupported_media_type")), "{answer}");
    let (status, answer) = read(http.get(&url)).await;
    assert_eq!((status, answer["error"].as_str()), (405, Some("method_not_allowed")), "{answer}");

    // The same service answers 503 as soon as a body is valid: the refusals
    // above never needed ClickHouse.
    let (status, answer) = read(http.post(&url).json(&valid())).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "unavailable");
    assert_eq!(answer["message"], "clickhouse is unavailable");
    drop(http); // no idle keep-alive connection holds the graceful stop
    service.stop().await.unwrap();
    postgres.drop().await.unwrap();
}
