//! The live traffic of `bench queries` through the real write path: a release
//! ingest-gateway and stream-processor on topics of their own, storing into
//! the bench's database, fed with client JSON batches at `--ingest-rate`
//! (issue 11, part C: "while the gateway ingests 2,000 events/s"). The
//! services' CPU then competes with the queries, as it would on one machine.
//!
//! The events follow the fixture's law (`insert_sql`): sessions of ten events
//! 30 s apart, videos drawn with `u³` popularity, users uniformly; the draws
//! use a hash of their own rather than ClickHouse's `cityHash64`, so the
//! sessions differ from the SQL generator's while the popularity is the same
//! (the hot video is `bv-0` either way).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use anyhow::Result;
use chrono::DateTime;
use events_model::Topics;
use serde_json::{Value, json};
use service_kit::KafkaConfig;

use super::{EVENTS_PER_SESSION, Traffic, USERS, VIDEOS};
use crate::{
    bench::{
        pipeline::gateway::accepted_of,
        target::{WritePathServices, start_write_path},
    },
    layout::Layout,
};

/// Events per posted batch.
const BATCH: usize = 500;

/// A 64-bit mix of `values` (splitmix64 steps), uniform enough for draws.
fn mix(values: &[u64]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15_u64;
    for &v in values {
        h ^= v;
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    h
}

/// Event `n` of `traffic` as client JSON: session `s = n / 10`, event
/// `k = n % 10` at `start + 30 k` (epoch seconds), as `insert_sql` writes it.
pub fn client_event(traffic: Traffic, n: u64, start: u64) -> Value {
    let (s, k) = (n / EVENTS_PER_SESSION, n % EVENTS_PER_SESSION);
    let u = (mix(&[s, traffic.salt]) % 1_000_000) as f64 / 1_000_000.0;
    let video = (u.powi(3) * VIDEOS as f64) as u64;
    let user = mix(&[s, traffic.salt, 1]) % USERS;
    let event_type = match k {
        0 => "video_start",
        9 if s % 3 == 0 => "video_complete",
        8 if s % 7 == 0 => "video_buffer",
        _ => "video_progress",
    };
    let device = ["desktop", "mobile", "tv", "tablet"][(s % 4) as usize];
    let country = ["US", "GB", "DE", "FR", "BR"][(s % 5) as usize];
    let at = DateTime::from_timestamp((start + k * 30) as i64, 0).unwrap_or_default();
    let mut properties = json!({
        "position_seconds": (k * 30) as f64,
        "duration_seconds": 600.0,
        "quality": if s % 2 == 0 { "1080p" } else { "720p" },
        "bitrate_kbps": if s % 2 == 0 { 5000 } else { 2500 },
        "device_type": device,
        "browser": "chrome",
        "os": "linux",
        "country": country,
        "player": "bench/1",
        "cdn": "cdn-a",
    });
    if event_type == "video_buffer" {
        properties["buffer_duration_ms"] = json!(1500);
    }
    if k == 0 {
        properties["startup_time_ms"] = json!(300 + s % 2000);
    }
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "event_type": event_type,
        "user_id": format!("{}-{user}", traffic.users),
        "session_id": format!("{}-{s}", traffic.sessions),
        "video_id": format!("{}-{video}", traffic.videos),
        "timestamp": events_model::format_time(at),
        "properties": properties,
    })
}

/// Events `first..first + count` as batch bodies of [`BATCH`], every session
/// starting 270 s before `now` so its last event is at `now`.
pub fn second_of_traffic(traffic: Traffic, first: u64, count: u64, now: u64) -> Vec<String> {
    let events: Vec<Value> = (first..first + count).map(|n| client_event(traffic, n, now - 9 * 30)).collect();
    events.chunks(BATCH).map(|chunk| Value::Array(chunk.to_vec()).to_string()).collect()
}

/// The gateway and processor of the live traffic, and their topics.
pub struct WritePath {
    /// Stopped when dropped.
    _services: WritePathServices,
    url: String,
    /// The bench's ingest key, sent as `X-API-Key`.
    ingest_key: String,
    kafka: KafkaConfig,
}

impl WritePath {
    /// Starts a release ingest-gateway and stream-processor with `env` (the
    /// bench's database) on topics `bench-queries-<run>.…`.
    pub async fn start(layout: &Layout, env: &[(String, String)], ingest_key: &str, run: &str) -> Result<Self> {
        let kafka = KafkaConfig {
            brokers: crate::stack::KAFKA_ADDR.to_string(),
            topic_prefix: format!("bench-queries-{run}."),
            consumer_group: format!("bench-queries-{run}"),
            client_id: "xtask-bench-queries".to_string(),
            ..KafkaConfig::default()
        };
        let mut env = env.to_vec();
        env.extend([
            ("KAFKA_TOPIC_PREFIX".to_string(), kafka.topic_prefix.clone()),
            ("KAFKA_CONSUMER_GROUP".to_string(), kafka.consumer_group.clone()),
        ]);
        let services = start_write_path(layout, &env, "bench-queries", "live traffic").await?;
        Ok(Self { url: services.batch_url.clone(), _services: services, ingest_key: ingest_key.to_string(), kafka })
    }

    /// Posts `rate` events of `traffic` every second until `stop`, counting
    /// the accepted ones in `inserted`; returns the seconds whose batches
    /// were not all accepted.
    pub fn spawn(
        &self,
        traffic: Traffic,
        rate: u64,
        stop: Arc<AtomicBool>,
        inserted: Arc<AtomicU64>,
    ) -> tokio::task::JoinHandle<u64> {
        let (url, ingest_key) = (self.url.clone(), self.ingest_key.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .default_headers(crate::keys::ingest_headers(&ingest_key).unwrap_or_default())
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let (mut next, mut failed) = (0, 0);
            while !stop.load(Relaxed) {
                tick.tick().await;
                let now = chrono::Utc::now().timestamp() as u64;
                let bodies = second_of_traffic(traffic, next, rate, now);
                let posts = bodies.into_iter().map(|body| {
                    let request = http.post(&url).header("content-type", "application/json").body(body);
                    async move {
                        let response = request.send().await.ok()?;
                        let accepted = response.status() == reqwest::StatusCode::ACCEPTED;
                        accepted.then_some(())?;
                        accepted_of(&response.bytes().await.ok()?)
                    }
                });
                let answers = futures::future::join_all(posts).await;
                let accepted: usize = answers.iter().flatten().sum();
                inserted.fetch_add(accepted as u64, Relaxed);
                if answers.iter().any(Option::is_none) {
                    failed += 1;
                }
                next += rate;
            }
            failed
        })
    }

    /// Deletes the live traffic's topics (the services are stopped when dropped).
    pub async fn delete_topics(&self) {
        let topics = Topics::new(&self.kafka.topic_prefix);
        let names = [topics.raw_events.as_str(), topics.dead_letters.as_str(), topics.realtime_partials.as_str()];
        let _ = service_kit::deps::kafka::delete_topics(&self.kafka, &names).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_events_are_valid_client_events_of_the_fixtures_law() {
        let traffic = super::super::LIVE;
        let bodies = second_of_traffic(traffic, 0, 1_000, chrono::Utc::now().timestamp() as u64);
        assert_eq!(bodies.len(), 2);
        let mut hot = 0;
        for body in &bodies {
            let events: Vec<Value> = serde_json::from_str(body).unwrap();
            for event in events {
                let parsed = events_model::Event::parse_json(event.to_string().as_bytes(), chrono::Utc::now());
                let event = parsed.unwrap_or_else(|e| panic!("{e}: {event}"));
                hot += usize::from(event.video_id == "bv-0");
            }
        }
        // u³ × 20,000 < 1 for u < 0.0368: about 3.7 % of sessions watch bv-0.
        assert!((10..=70).contains(&hot), "{hot} of 1,000 events of bv-0");
    }
}
