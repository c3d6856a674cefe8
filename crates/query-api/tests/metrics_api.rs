//! The metric endpoints served in-process against the local stack (own
//! ClickHouse and PostgreSQL databases, own Redis prefix), with events
//! written straight into ClickHouse: answers from raw events, from the
//! aggregated tables and from a mix are the same; a late event shows at once;
//! bad parameters are 400s naming the parameter; the health report carries
//! the consumer lag.
#![cfg(test)]

use std::time::Duration;

use events_model::EventRow;
use metrics_sql::{
    days, facts, rows,
    windows::{self, Grain, Job},
};
use query_api::{CacheConfig, Config};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use reqwest::Client;
use serde_json::{Value, json};
use service_kit::{
    KafkaConfig,
    deps::kafka::{TopicSpec, ensure_topics},
    testing::{self, InProcess, TestClickHouse, TestKeys, TestPostgres},
};

/// 2025-11-24: long past, so its windows are final.
const DAY: &str = "2025-11-24";
const DAY_MS: u64 = 1_763_942_400_000;
const HOUR_MS: u64 = 3_600_000;

struct Api {
    service: InProcess,
    clickhouse: TestClickHouse,
    postgres: TestPostgres,
    kafka: KafkaConfig,
    http: Client,
}

impl Api {
    async fn start(cache: CacheConfig, redis_url: Option<&str>) -> Self {
        Self::start_tuned(cache, redis_url, |_| {}).await
    }

    /// [`Api::start`] with the configuration changed by `tune` last.
    async fn start_tuned(cache: CacheConfig, redis_url: Option<&str>, tune: impl FnOnce(&mut Config)) -> Self {
        let clickhouse = TestClickHouse::create().await.expect("test clickhouse database");
        let postgres = TestPostgres::create().await.expect("test postgres database");
        let mut redis = testing::redis_config();
        if let Some(url) = redis_url {
            redis.url = url.to_string();
        }
        let config = Config {
            postgres: postgres.config.clone(),
            clickhouse: clickhouse.config.clone(),
            redis,
            cache,
            kafka: testing::kafka_config(),
            ..Config::default()
        };
        let mut config = config;
        tune(&mut config);
        let kafka = config.kafka.clone();
        let service = InProcess::spawn(config, query_api::run);
        // admin: the catalog writes too (it includes read).
        let http = TestKeys::client(&postgres.keys().await.expect("test keys").admin);
        Self { service, clickhouse, postgres, kafka, http }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.service.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: not json: {text}")))
    }

    async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    async fn insert(&self, rows: &[EventRow]) {
        let client = self.clickhouse.client();
        let mut insert = client.insert::<EventRow>("events").await.unwrap();
        for row in rows {
            insert.write(row).await.unwrap();
        }
        insert.end().await.unwrap();
    }

    /// Aggregates `window` of `job` the way aggregator-cron does, marking it
    /// complete for every row inserted before the current second (inserted_at
    /// has second precision, so it first waits for the server's clock to pass
    /// the second of the last insert).
    async fn aggregate(&self, job: Job, window: u32) {
        let client = self.clickhouse.client();
        let now = self.clock_past_last_insert().await;
        let version = u64::from(now) * 1000 + u64::from(window % 1000);
        rows::insert_window(job, window, version).query(&client).execute().await.unwrap();
        rows::retire_vanished_rows(job, window, version).query(&client).execute().await.unwrap();
        let count: u64 = rows::count_window_rows(job, window, version).query(&client).fetch_one().await.unwrap();
        rows::insert_marker(job, window, version, now - 1, count).query(&client).execute().await.unwrap();
    }

    /// Waits for the server's clock to pass the second of the last insert
    /// (inserted_at has second precision) and returns it, epoch seconds.
    async fn clock_past_last_insert(&self) -> u32 {
        let client = self.clickhouse.client();
        testing::eventually(Duration::from_secs(5), || async {
            let passed: u8 = client.query("SELECT now() > (SELECT max(inserted_at) FROM events)").fetch_one().await?;
            anyhow::ensure!(passed == 1, "the server clock is still in the second of the last insert");
            Ok(())
        })
        .await
        .unwrap();
        client.query("SELECT toUInt32(now())").fetch_one().await.unwrap()
    }

    async fn put_video(&self, id: &str, body: Value) {
        let response = self.http.put(self.service.url(&format!("/api/videos/{id}"))).json(&body).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }

    async fn stop(self) {
        self.service.stop().await.unwrap();
        self.clickhouse.drop().await.unwrap();
        self.postgres.drop().await.unwrap();
    }
}

fn no_cache() -> CacheConfig {
    CacheConfig { enabled: false, ..CacheConfig::default() }
}

fn event(event_type: &str, session: &str, user: &str, video: &str, at_ms: u64, position: Option<f64>) -> EventRow {
    let mut row = EventRow::new(event_type, session, video, at_ms);
    row.user_id = Some(user.to_string());
    row.position_seconds = position;
    row
}

/// On DAY: view A (u1, v1, 10:00) watches 20 s of a 40 s video and
/// completes, startup 400 ms reported, on a tv; view B (u2, v1, 11:00)
/// starts in 2 s, watches 2 s, stalls 1.5 s and is abandoned; view C (u1,
/// v2, 12:00) fails at once.
fn day_scenario() -> Vec<EventRow> {
    scenario(DAY_MS)
}

/// [`day_scenario`] on the day starting at `base_ms`.
fn scenario(base_ms: u64) -> Vec<EventRow> {
    let (a, b, c) = (base_ms + 10 * HOUR_MS, base_ms + 11 * HOUR_MS, base_ms + 12 * HOUR_MS);
    let mut a_start = event("video_start", "s1", "u1", "v1", a, Some(0.0));
    a_start.startup_time_ms = Some(400);
    a_start.duration_seconds = Some(40.0);
    a_start.device_type = "tv".into();
    let mut b_buffer = event("video_buffer", "s2", "u2", "v1", b + 3_000, Some(2.0));
    b_buffer.buffer_duration_ms = Some(1_500);
    vec![
        a_start,
        event("video_progress", "s1", "u1", "v1", a + 10_000, Some(10.0)),
        event("video_complete", "s1", "u1", "v1", a + 20_000, Some(20.0)),
        event("video_start", "s2", "u2", "v1", b, Some(0.0)),
        event("video_progress", "s2", "u2", "v1", b + 2_000, Some(2.0)),
        b_buffer,
        event("video_start", "s3", "u1", "v2", c, Some(0.0)),
        event("video_error", "s3", "u1", "v2", c + 1_000, Some(0.0)),
    ]
}

/// Inserts [`scenario`] 13 hours back (its views 3, 2 and 1 hours before
/// the current hour, all still open to late events) and returns its base
/// (epoch ms) and the range `startDate=<yesterday>&endDate=<today>` holding it.
async fn insert_recent_scenario(api: &Api) -> (u64, String) {
    let now_ms = chrono::Utc::now().timestamp_millis() as u64;
    let base = (now_ms / HOUR_MS - 13) * HOUR_MS;
    api.insert(&scenario(base)).await;
    let today = chrono::Utc::now().date_naive();
    (base, format!("startDate={}&endDate={today}", today.pred_opt().unwrap()))
}

/// `(video_id, views)` of a top-videos answer, in its order.
fn top_views(top: &Value) -> Vec<(&str, u64)> {
    let videos = top["videos"].as_array().unwrap_or_else(|| panic!("no videos in {top}"));
    videos.iter().map(|v| (v["video_id"].as_str().unwrap(), v["views"].as_u64().unwrap())).collect()
}

fn assert_close(got: &Value, expected: f64, what: &str) {
    let got = got.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {got}"));
    assert!((got - expected).abs() <= 1e-9 * expected.abs().max(1.0), "{what}: got {got}, expected {expected}");
}

fn check_video_v1(body: &Value, avg_watch_percentage: f64, duration: f64, source: &str) {
    assert_eq!(body["video_id"], "v1");
    assert_eq!((body["start_date"].as_str(), body["end_date"].as_str()), (Some(DAY), Some(DAY)));
    assert_eq!(body["views"], 2);
    assert_eq!(body["unique_viewers"], 2);
    assert_close(&body["watch_time_seconds"], 22.0, "watch_time_seconds");
    assert_close(&body["avg_watch_percentage"], avg_watch_percentage, "avg_watch_percentage");
    assert_close(&body["completion_rate"], 0.5, "completion_rate");
    assert_eq!(body["startup_time_ms"], json!({"median": 400, "p95": 2000}));
    let rebuffer = 1_500.0 / 22_000.0 * 100.0;
    assert_close(&body["rebuffer_percentage"], rebuffer, "rebuffer_percentage");
    assert_close(&body["playback_failure_percentage"], 0.0, "playback_failure_percentage");
    assert_close(&body["exits_before_video_start_percentage"], 0.0, "exits");
    let score = 10.0 * (0.4 * avg_watch_percentage / 100.0 + 0.3 * 0.5 + 0.2 * (1.0 - rebuffer / 10.0));
    assert_close(&body["engagement_score"], (score * 100.0).round() / 100.0, "engagement_score");
    assert_close(&body["duration_seconds"], duration, "duration_seconds");
    assert_eq!(body["duration_source"], source);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_user_and_top_answers_are_the_same_from_raw_and_aggregated_windows() {
    let api = Api::start(no_cache(), None).await;
    api.insert(&day_scenario()).await;
    let range = format!("startDate={DAY}&endDate={DAY}");

    let raw = api.ok(&format!("/api/metrics/video/v1?{range}")).await;
    check_video_v1(&raw, (50.0 + 5.0) / 2.0, 40.0, "events");
    assert_eq!(raw["freshness"], json!({"aggregated_windows": 0, "raw_windows": 24}));

    let first_hour = (DAY_MS / HOUR_MS) as u32;
    for hour in first_hour + 10..first_hour + 13 {
        api.aggregate(Job::VideoMetrics, hour).await;
    }
    api.aggregate(Job::UserEngagementDaily, (DAY_MS / 86_400_000) as u32).await;
    let aggregated = api.ok(&format!("/api/metrics/video/v1?{range}")).await;
    check_video_v1(&aggregated, (50.0 + 5.0) / 2.0, 40.0, "events");
    assert_eq!(aggregated["freshness"], json!({"aggregated_windows": 3, "raw_windows": 21}));

    // The catalog's duration wins: A watched all of 20 s, B a tenth.
    api.put_video("v1", json!({"title": "One", "duration_seconds": 20.0, "category": "drama"})).await;
    let with_catalog = api.ok(&format!("/api/metrics/video/v1?{range}")).await;
    check_video_v1(&with_catalog, (100.0 + 10.0) / 2.0, 20.0, "catalog");

    let user = api.ok(&format!("/api/metrics/user/u1?{range}")).await;
    assert_eq!(user["sessions"], 2);
    assert_eq!(user["views"], 2);
    assert_close(&user["watch_time_seconds"], 20.0, "user watch time");
    assert_close(&user["completion_rate"], 0.5, "user completion");
    assert_eq!(
        user["preferences"],
        json!({"quality": null, "device_type": "tv", "category": "drama", "hour_of_day": 10})
    );
    assert_eq!(user["freshness"], json!({"aggregated_windows": 1, "raw_windows": 0}));

    let top = api.ok(&format!("/api/metrics/videos/top?metric=views&{range}")).await;
    assert_eq!(top_views(&top), vec![("v1", 2), ("v2", 1)]);
    let top = api.ok(&format!("/api/metrics/videos/top?metric=completion_rate&limit=1&{range}")).await;
    assert_eq!(top["videos"].as_array().unwrap().len(), 1);
    assert_eq!(top["videos"][0]["video_id"], "v1");
    assert_close(&top["videos"][0]["completion_rate"], 0.5, "top completion_rate");

    let empty = api.ok(&format!("/api/metrics/video/nobody-watched?{range}")).await;
    assert_eq!((empty["views"].as_u64(), empty["startup_time_ms"]["median"].is_null()), (Some(0), true));
    api.stop().await;
}

/// A whole final day is read from its rollup, and only while the rollup is of
/// the day's newest hour runs: the answer never differs from the hours'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_videos_read_whole_final_days_from_their_rollup_while_it_is_current() {
    let api = Api::start(no_cache(), None).await;
    let day = (DAY_MS / 86_400_000) as u32;
    let mut next_day = scenario(DAY_MS + 86_400_000);
    next_day.iter_mut().for_each(|row| row.session_id.push_str("-next"));
    api.insert(&[scenario(DAY_MS), next_day].concat()).await;
    let hours: Vec<u32> = (days::hours_of(day).start..days::hours_of(day + 1).end).collect();
    for &hour in &hours {
        api.aggregate(Job::VideoMetrics, hour).await;
    }
    let client = api.clickhouse.client();
    let markers = rows::fetch_markers(&client, Job::VideoMetrics, hours[0], hours[47] + 1).await.unwrap();
    let source = days::source_version(&markers, day).unwrap();
    days::run_rollup(&client, day, source, source + 1).await.unwrap_or_else(|(step, e)| panic!("{step}: {e}"));
    let path = "/api/metrics/videos/top?metric=views&startDate=2025-11-24&endDate=2025-11-25";
    let top = api.ok(path).await;
    assert_eq!(top_views(&top), vec![("v1", 4), ("v2", 2)]);
    assert_eq!((&top["freshness"]["aggregated_windows"], &top["freshness"]["raw_windows"]), (&json!(48), &json!(0)));

    // The answer comes from the rollup: a newer row there shows.
    client
        .query("INSERT INTO video_day_totals (date, video_id, views, version) VALUES ('2025-11-24', 'v2', 10, ?)")
        .bind(source + 2)
        .execute()
        .await
        .unwrap();
    assert_eq!(top_views(&api.ok(path).await), vec![("v2", 11), ("v1", 4)]);
    // One hour of the day run again: the rollup is behind it, so the hours answer.
    api.aggregate(Job::VideoMetrics, hours[3]).await;
    assert_eq!(top_views(&api.ok(path).await), vec![("v1", 4), ("v2", 2)]);
    api.stop().await;
}

/// Windows still open to late events where no view of the scope starts (the
/// open hour of most videos) are read as nothing, not rebuilt: the answers
/// stay those of the views that exist, and such windows still count as raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_windows_without_views_are_answered_without_a_rebuild() {
    let api = Api::start(no_cache(), None).await;
    let (base, range) = insert_recent_scenario(&api).await;
    let (a_hour, b_hour) = ((base / HOUR_MS) as u32 + 10, (base / HOUR_MS) as u32 + 11);

    for phase in ["raw", "aggregated"] {
        let video = api.ok(&format!("/api/metrics/video/v1?{range}")).await;
        assert_eq!((video["views"].as_u64(), video["unique_viewers"].as_u64()), (Some(2), Some(2)), "{phase}: {video}");
        assert_close(&video["watch_time_seconds"], 22.0, phase);
        assert_eq!(video["startup_time_ms"], json!({"median": 400, "p95": 2000}), "{phase}");
        let aggregated = if phase == "raw" { 0 } else { 2 };
        assert_eq!(
            video["freshness"],
            json!({"aggregated_windows": aggregated, "raw_windows": 48 - aggregated}),
            "{phase}: windows without views count as raw"
        );

        let user = api.ok(&format!("/api/metrics/user/u1?{range}")).await;
        assert_eq!((user["sessions"].as_u64(), user["views"].as_u64()), (Some(2), Some(2)), "{phase}: {user}");
        assert_close(&user["watch_time_seconds"], 20.0, phase);

        let top = api.ok(&format!("/api/metrics/videos/top?{range}")).await;
        assert_eq!(top_views(&top), vec![("v1", 2), ("v2", 1)], "{phase}");

        // Nobody watched it: every window is empty, nothing is read.
        let nobody = api.ok(&format!("/api/metrics/video/nobody-watched?{range}")).await;
        assert_eq!((nobody["views"].as_u64(), nobody["watch_time_seconds"].as_f64()), (Some(0), Some(0.0)));
        assert_eq!(nobody["startup_time_ms"], json!({"median": null, "p95": null}));
        assert_eq!(nobody["freshness"], video["freshness"], "{phase}: the aggregated hours are the same");
        let stranger = api.ok(&format!("/api/metrics/user/stranger?{range}")).await;
        assert_eq!((stranger["views"].as_u64(), stranger["sessions"].as_u64()), (Some(0), Some(0)), "{stranger}");

        api.aggregate(Job::VideoMetrics, a_hour).await;
        api.aggregate(Job::VideoMetrics, b_hour).await;
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_for_an_aggregated_hour_shows_at_once() {
    let api = Api::start(no_cache(), None).await;
    // A view two hours ago, aggregated.
    let now_ms = chrono::Utc::now().timestamp_millis() as u64;
    let start = (now_ms / HOUR_MS - 2) * HOUR_MS + 60_000;
    api.insert(&[
        event("video_start", "s1", "u1", "v1", start, Some(0.0)),
        event("video_progress", "s1", "u1", "v1", start + 10_000, Some(10.0)),
    ])
    .await;
    let hour = (start / HOUR_MS) as u32;
    api.aggregate(Job::VideoMetrics, hour).await;
    let before = api.ok("/api/metrics/video/v1").await;
    assert_close(&before["watch_time_seconds"], 10.0, "before");
    assert_eq!(before["freshness"]["aggregated_windows"], 1, "{before}");

    // The same view goes on for 5 s more; the aggregator has not run again.
    api.insert(&[event("video_progress", "s1", "u1", "v1", start + 15_000, Some(15.0))]).await;
    let after = api.ok("/api/metrics/video/v1").await;
    assert_close(&after["watch_time_seconds"], 15.0, "after the late event");
    assert_eq!(after["freshness"]["aggregated_windows"], 0, "the changed hour is read raw: {after}");

    // Once re-aggregated, the hour is served from the table again, same numbers.
    api.aggregate(Job::VideoMetrics, hour).await;
    let again = api.ok("/api/metrics/video/v1").await;
    assert_close(&again["watch_time_seconds"], 15.0, "re-aggregated");
    assert_eq!(again["freshness"]["aggregated_windows"], 1, "{again}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_400s_naming_the_parameter() {
    let api = Api::start(no_cache(), None).await;
    let cases = [
        ("/api/metrics/video/v1?startDate=2024-13-01", "startDate"),
        ("/api/metrics/video/v1?startDate=24-01-01", "startDate"),
        ("/api/metrics/video/v1?endDate=2024-01-01%27%3B%20DROP%20TABLE%20events", "endDate"),
        ("/api/metrics/video/v1?startDate=2024-02-01&endDate=2024-01-01", "startDate"),
        ("/api/metrics/video/v1?startDate=2020-01-01&endDate=2024-01-01", "endDate"),
        ("/api/metrics/video/v1?start=2024-01-01", "start"),
        ("/api/metrics/video/v1?startDate=2024-01-01&startDate=2024-01-02", "startDate"),
        ("/api/metrics/video/a%0Ab", "videoId"),
        ("/api/metrics/user/a%00b", "userId"),
        ("/api/metrics/user/u1?endDate=tomorrow", "endDate"),
        ("/api/metrics/videos/top?metric=likes", "metric"),
        ("/api/metrics/videos/top?limit=0", "limit"),
        ("/api/metrics/videos/top?limit=101", "limit"),
        ("/api/metrics/videos/top?limit=abc", "limit"),
        ("/api/metrics/realtime?window=5", "window"),
    ];
    for (path, field) in cases {
        let (status, body) = api.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"], "bad_request", "{path}");
        assert_eq!(body["field"], field, "{path}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}");
    }
    let (status, body) = api.get("/api/metrics/nothing-here").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_counts_the_last_minute() {
    let api = Api::start(no_cache(), None).await;
    let now_ms = chrono::Utc::now().timestamp_millis() as u64;
    let mut watching = event("video_progress", "s1", "u1", "v1", now_ms - 5_000, Some(30.0));
    watching.bitrate_kbps = Some(2_500);
    let mut other = event("video_start", "s2", "u2", "v2", now_ms - 4_000, Some(0.0));
    other.bitrate_kbps = Some(1_500);
    let done = event("video_complete", "s3", "u3", "v1", now_ms - 3_000, Some(90.0));
    let error = event("video_error", "s4", "u4", "v3", now_ms - 2_000, Some(1.0));
    let old = event("video_start", "s5", "u5", "v5", now_ms - 600_000, Some(0.0));
    api.insert(&[watching.clone(), watching, other, done, error, old]).await;
    let body = api.ok("/api/metrics/realtime").await;
    assert_eq!(body["concurrent_viewers"], 2, "{body}");
    assert_eq!(body["active_streams"], 2);
    assert_close(&body["bandwidth_gbps"], 4_000.0 / 1_000_000.0, "bandwidth");
    assert_close(&body["events_per_second"], 4.0 / 60.0, "events/s (the duplicate counts once)");
    assert_close(&body["error_rate"], 0.25, "error rate");
    assert_eq!(body["window_seconds"], 60);
    api.stop().await;
}

const GUESS_HELD: &str = r#"analytics_service_query_settled_guesses_total{outcome="held"}"#;
const GUESS_MISSED: &str = r#"analytics_service_query_settled_guesses_total{outcome="missed"}"#;

fn counter(name: &str) -> f64 {
    service_kit::testing::metric_value(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_cached_and_redis_down_still_answers() {
    let api = Api::start(CacheConfig::default(), None).await;
    api.insert(&day_scenario()).await;
    let path = format!("/api/metrics/video/v1?startDate={DAY}&endDate={DAY}");
    let hits = counter("analytics_service_query_cache_hits_total");
    let first = api.ok(&path).await;
    let second = api.ok(&format!("/api/metrics/video/v1?endDate={DAY}&startDate={DAY}")).await;
    assert_eq!(first, second);
    assert!(counter("analytics_service_query_cache_hits_total") > hits, "the reordered query hit the cache");
    api.stop().await;

    let closed = service_kit::testing::ClosedPort::new();
    let api = Api::start(CacheConfig::default(), Some(&format!("redis://{}", closed.addr()))).await;
    api.insert(&day_scenario()).await;
    let body = api.ok(&path).await;
    assert_eq!(body["views"], 2, "answered uncached without redis");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_report_carries_the_consumer_lag() {
    let api = Api::start(no_cache(), None).await;
    let (_, body) = api.get("/api/metrics/health").await;
    assert!(body["consumer_lag"]["messages"].is_null(), "no raw topic yet: {body}");
    assert!(body["consumer_lag"]["error"].is_string(), "{body}");

    // Three messages on the raw topic that no processor has consumed.
    let topic = events_model::Topics::new(&api.kafka.topic_prefix).raw_events;
    ensure_topics(&api.kafka, &[TopicSpec { name: topic.clone(), partitions: 2, retention_ms: None }]).await.unwrap();
    let producer: BaseProducer = service_kit::deps::kafka::client_config(&api.kafka).create().unwrap();
    for key in ["a", "b", "c"] {
        producer.send(BaseRecord::to(&topic).key(key).payload("{}")).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    // Read in the background every 5 s: shown within one refresh or two.
    let body = testing::eventually(Duration::from_secs(20), || async {
        let (_, body) = api.get("/api/metrics/health").await;
        anyhow::ensure!(body["consumer_lag"]["messages"] == 3, "{body}");
        Ok(body)
    })
    .await
    .unwrap();
    assert_eq!(body["consumer_lag"]["topic"], topic.as_str());
    assert!(body["consumer_lag"]["as_of"].is_string(), "{body}");
    assert!(body["consumer_lag"].get("error").is_none(), "{body}");
    service_kit::deps::kafka::delete_topics(&api.kafka, &[&topic]).await.unwrap();
    api.stop().await;
}

/// A facts pass the way aggregator-cron runs one (full, over the lateness
/// horizon), covering every row inserted before the current second.
async fn facts_pass(api: &Api) -> facts::PassRecord {
    let now = api.clock_past_last_insert().await;
    let client = api.clickhouse.client();
    let lateness = events_model::limits::DEFAULT_LATENESS.as_secs();
    let from_ms = Grain::Hour.start_of(windows::horizon(Grain::Hour, u64::from(now), lateness)) * 1000;
    let plan = facts::PassPlan { version: u64::from(now) * 1000, from_ms, since: None, covered_until: now - 1 };
    facts::run_pass(&client, plan).await.unwrap_or_else(|(step, e)| panic!("{step}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_videos_read_the_stored_facts_and_rebuild_only_the_views_touched_since() {
    let api = Api::start(no_cache(), None).await;
    let (base, range) = insert_recent_scenario(&api).await;
    let top_path = format!("/api/metrics/videos/top?{range}");
    assert_eq!(top_views(&api.ok(&top_path).await), vec![("v1", 2), ("v2", 1)], "raw");

    facts_pass(&api).await;
    let top = api.ok(&top_path).await;
    assert_eq!(top_views(&top), vec![("v1", 2), ("v2", 1)], "from the stored facts");
    assert!(top["freshness"].get("as_of").is_none(), "a small platform's top videos are exact at once: {top}");
    // A stored view without events shows: the answer does come from the stored facts.
    let start = base + 11 * HOUR_MS;
    api.clickhouse
        .client()
        .query(
            "INSERT INTO view_facts_v2 (date, video_id, session_id, start_ms, is_view, viewer, version) \
             VALUES (toDate(toDateTime(intDiv(?, 1000))), 'v9', 'stored-only', ?, 1, 's:stored-only', 1)",
        )
        .bind(start)
        .bind(start)
        .execute()
        .await
        .unwrap();
    assert_eq!(top_views(&api.ok(&top_path).await), vec![("v1", 2), ("v2", 1), ("v9", 1)], "stored view");

    // After the pass: a new view of v2, and one more event of a stored view of
    // v1. Once past the read margin (1 s), the new view counts, and v1's
    // touched view is rebuilt rather than counted twice.
    api.insert(&[
        event("video_start", "s4", "u4", "v2", base + 12 * HOUR_MS + 60_000, Some(0.0)),
        event("video_progress", "s1", "u1", "v1", base + 10 * HOUR_MS + 15_000, Some(15.0)),
    ])
    .await;
    testing::eventually(Duration::from_secs(10), || async {
        let top = api.ok(&top_path).await;
        anyhow::ensure!(top_views(&top) == vec![("v1", 2), ("v2", 2), ("v9", 1)], "{top}");
        Ok(())
    })
    .await
    .unwrap();
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_videos_of_a_busy_platform_answer_the_open_hours_as_of_the_newest_pass() {
    // Every platform counts as busy here.
    let api = Api::start_tuned(no_cache(), None, |c| c.freshness.top_from_pass_min_views = 0).await;
    let (base, range) = insert_recent_scenario(&api).await;
    let top_path = format!("/api/metrics/videos/top?{range}&metric=watch_time");
    let exact = api.ok(&top_path).await;
    assert_eq!(top_views(&exact), vec![("v1", 2), ("v2", 1)], "no pass yet: exact");
    assert!(exact["freshness"].get("pass_windows").is_none(), "{exact}");

    let pass = facts_pass(&api).await;
    let answer = api.ok(&top_path).await;
    assert_eq!(answer["videos"], exact["videos"], "the pass's totals answer like the rebuild");
    // The range's 48 hours are all open to late events (48 h lateness).
    let as_of = chrono::DateTime::from_timestamp(i64::from(pass.covered_until), 0).unwrap();
    assert_eq!(answer["freshness"]["pass_windows"], 48, "{answer}");
    assert_eq!(answer["freshness"]["aggregated_windows"], 0, "{answer}");
    assert_eq!(
        answer["freshness"]["as_of"].as_str(),
        Some(as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).as_str()),
        "{answer}"
    );

    // A view stored after the pass is not in the answer until the next pass.
    api.insert(&[event("video_start", "s4", "u4", "v2", base + 12 * HOUR_MS + 60_000, Some(0.0))]).await;
    api.clock_past_last_insert().await;
    assert_eq!(top_views(&api.ok(&top_path).await), vec![("v1", 2), ("v2", 1)], "as of the pass");
    facts_pass(&api).await;
    let after = api.ok(&top_path).await;
    assert_eq!(top_views(&after), vec![("v1", 2), ("v2", 2)], "{after}");
    assert_ne!(after["freshness"]["as_of"], answer["freshness"]["as_of"], "{after}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_video_answers_its_open_hours_as_of_the_newest_pass() {
    // v1 (two views) counts as busy, v2 (one) does not.
    let api = Api::start_tuned(no_cache(), None, |c| c.freshness.video_from_pass_min_views = 2).await;
    let (base, range) = insert_recent_scenario(&api).await;
    let (busy, quiet) = (format!("/api/metrics/video/v1?{range}"), format!("/api/metrics/video/v2?{range}"));
    let (exact_busy, exact_quiet) = (api.ok(&busy).await, api.ok(&quiet).await);
    assert_eq!((exact_busy["views"].as_u64(), exact_quiet["views"].as_u64()), (Some(2), Some(1)), "no pass yet");
    assert!(exact_busy["freshness"].get("as_of").is_none(), "{exact_busy}");

    let pass = facts_pass(&api).await;
    let answer = api.ok(&busy).await;
    let as_of = chrono::DateTime::from_timestamp(i64::from(pass.covered_until), 0).unwrap();
    assert_eq!(
        answer["freshness"]["as_of"].as_str(),
        Some(as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).as_str()),
        "{answer}"
    );
    assert_eq!(answer["freshness"]["pass_windows"], 48, "{answer}");
    let without_freshness = |mut v: Value| {
        v.as_object_mut().unwrap().remove("freshness");
        v
    };
    assert_eq!(
        without_freshness(answer.clone()),
        without_freshness(exact_busy.clone()),
        "the pass's hour rows answer like the rebuild"
    );
    assert_eq!(api.ok(&quiet).await, exact_quiet, "a quiet video stays exact at once");

    // New views stored after the pass: the quiet video counts its own at
    // once; the busy video's answer stays as of the pass until the next one.
    api.insert(&[
        event("video_start", "s6", "u6", "v1", base + 12 * HOUR_MS + 60_000, Some(0.0)),
        event("video_start", "s7", "u7", "v2", base + 12 * HOUR_MS + 60_000, Some(0.0)),
    ])
    .await;
    api.clock_past_last_insert().await;
    assert_eq!(api.ok(&busy).await["views"], 2, "as of the pass");
    assert_eq!(api.ok(&quiet).await["views"], 2, "exact at once");
    facts_pass(&api).await;
    let after = api.ok(&busy).await;
    assert_eq!(after["views"], 3, "{after}");
    assert_ne!(after["freshness"]["as_of"], answer["freshness"]["as_of"], "{after}");
    api.stop().await;
}

/// Overwrites the stored facts of `session`'s view of `video_id` starting at
/// `start_ms` (a view of `user`) with a watch time of 1,000 s, under a version
/// above any pass's: an answer that shows it was read from the stored facts.
async fn tamper_stored_view(api: &Api, video_id: &str, session: &str, user: &str, start_ms: u64) {
    api.clickhouse
        .client()
        .query(
            "INSERT INTO view_facts_v2 (date, video_id, session_id, start_ms, is_view, watch_seconds, viewer, view_user, \
             version) VALUES (toDate(toDateTime(intDiv(?, 1000))), ?, ?, ?, 1, 1000, ?, ?, ?)",
        )
        .bind(start_ms)
        .bind(video_id)
        .bind(session)
        .bind(start_ms)
        .bind(format!("u:{user}"))
        .bind(user)
        .bind(1u64 << 62)
        .execute()
        .await
        .unwrap();
}

fn watch_time(answer: &Value) -> f64 {
    answer["watch_time_seconds"].as_f64().unwrap_or_else(|| panic!("no watch time in {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_and_user_reads_take_the_pass_facts_and_rebuild_only_the_keys_touched_since_exact_at_once() {
    // The defaults: video and user reads take their open windows from the
    // newest pass's stored facts and rebuild the keys touched since it.
    let api = Api::start(no_cache(), None).await;
    let (base, range) = insert_recent_scenario(&api).await;
    let (video, user) = (format!("/api/metrics/video/v1?{range}"), format!("/api/metrics/user/u1?{range}"));
    let (exact_video, exact_user) = (api.ok(&video).await, api.ok(&user).await);
    assert_eq!((exact_video["views"].as_u64(), exact_user["views"].as_u64()), (Some(2), Some(2)), "no pass yet");

    facts_pass(&api).await;
    assert_eq!(api.ok(&video).await, exact_video, "the pass's stored facts answer like the rebuild");
    assert_eq!(api.ok(&user).await, exact_user, "the pass's stored facts answer like the rebuild");
    // A tampered stored view shows: these answers do come from the stored
    // facts alone (no key of theirs is rebuilt).
    // Both run on the settled guess beside their freshness check, which
    // confirms it (freshness.settled_guess).
    tamper_stored_view(&api, "v1", "s1", "u1", base + 10 * HOUR_MS).await;
    let held = counter(GUESS_HELD);
    assert!(watch_time(&api.ok(&video).await) >= 1000.0, "video from the stored facts");
    assert!(watch_time(&api.ok(&user).await) >= 1000.0, "user from the stored facts");
    assert!(counter(GUESS_HELD) >= held + 2.0, "both guesses held");

    // One new view of v1 by u1: the very next read counts it, without any
    // read margin. The freshness check sees a row younger than the pass, so
    // the read lists the keys touched since it (s5 alone) and rebuilds them
    // from the raw events; s1 is still read as stored (tampered).
    // The settled guesses miss (the check finds the younger row) and are
    // dropped for those exact reads.
    api.insert(&[event("video_start", "s5", "u1", "v1", base + 12 * HOUR_MS + 5_000, Some(0.0))]).await;
    let missed = counter(GUESS_MISSED);
    let (video_now, user_now) = (api.ok(&video).await, api.ok(&user).await);
    assert_eq!(video_now["views"], 3, "the new view at once: {video_now}");
    assert_eq!(user_now["views"], 3, "the new view at once: {user_now}");
    assert!(counter(GUESS_MISSED) >= missed + 2.0, "both guesses missed");
    assert!(watch_time(&video_now) >= 1000.0, "untouched s1 still from the stored facts: {video_now}");
    assert!(watch_time(&user_now) >= 1000.0, "untouched s1 still from the stored facts: {user_now}");
    // A redelivered copy of one of s1's events (same event_id: nothing
    // changes but the key is touched): s1 is rebuilt too, at once, and its
    // tampered row is no longer read.
    let s1_start = scenario(base).into_iter().find(|e| e.session_id == "s1" && e.event_type == "video_start");
    api.insert(&[s1_start.expect("the scenario starts s1")]).await;
    let (video_now, user_now) = (api.ok(&video).await, api.ok(&user).await);
    assert_eq!((video_now["views"].as_u64(), user_now["views"].as_u64()), (Some(3), Some(3)), "{video_now}");
    assert_eq!(watch_time(&video_now), watch_time(&exact_video), "rebuilt: {video_now}");
    assert_eq!(watch_time(&user_now), watch_time(&exact_user), "rebuilt: {user_now}");
    // After the next pass, settled again: the stored facts (the new view
    // included, the tampered row still the newest of its start).
    facts_pass(&api).await;
    let settled = api.ok(&video).await;
    assert_eq!(settled["views"], 3, "{settled}");
    assert!(watch_time(&settled) >= 1000.0, "{settled}");
    api.stop().await;
}
