//! A gateway started in-process against the local stack's Kafka, with a topic
//! prefix of its own, and a way to read back what it produced.
#![allow(dead_code)]

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use events_model::{Event, Topics};
use flate2::{Compression, write::GzEncoder};
use ingest_gateway::{Config, IngestConfig};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::Headers,
};
use serde_json::Value;
use service_kit::{
    HttpConfig, KafkaConfig,
    deps::kafka,
    testing::{self, InProcess, TestKeys, TestPostgres},
};

pub const JSON: &str = "application/json";
pub const NDJSON: &str = "application/x-ndjson";

pub struct Gateway {
    pub kafka: KafkaConfig,
    pub topic: String,
    /// Sends the ingest key (`X-API-Key`) with every request.
    pub http: reqwest::Client,
    /// One key per scope in the gateway's own PostgreSQL database.
    pub keys: TestKeys,
    pub postgres: TestPostgres,
    service: InProcess,
}

/// An answer: status, `Retry-After` header, and the body as JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Value,
}

/// One message read back from the raw topic.
#[derive(Debug)]
pub struct Stored {
    pub key: String,
    pub partition: i32,
    pub headers: Vec<(String, Vec<u8>)>,
    pub event: Event,
}

impl Gateway {
    /// Starts a gateway on the local stack and waits until it is ready (the raw topic exists).
    pub async fn start(ingest: IngestConfig) -> Self {
        Self::start_ready(testing::kafka_config(), ingest).await
    }

    /// [`Self::start`] on `kafka` (e.g. a prefix whose raw topic the test created).
    pub async fn start_ready(kafka: KafkaConfig, ingest: IngestConfig) -> Self {
        let gateway = Self::start_with(kafka, ingest).await;
        let http = gateway.http.clone();
        let ready = gateway.url("/ready");
        testing::eventually(Duration::from_secs(30), || async {
            let answer = http.get(&ready).send().await?;
            let status = answer.status();
            anyhow::ensure!(status == 200, "/ready answered {status}: {}", answer.text().await?);
            Ok(())
        })
        .await
        .expect("gateway ready");
        gateway
    }

    /// Starts a gateway on `kafka` and waits only until it answers `/health`.
    pub async fn start_with(kafka: KafkaConfig, ingest: IngestConfig) -> Self {
        Self::start_with_http(kafka, ingest, |_| {}).await
    }

    /// [`Self::start_with`], the test's HTTP settings changed by `http`.
    pub async fn start_with_http(kafka: KafkaConfig, ingest: IngestConfig, http: impl FnOnce(&mut HttpConfig)) -> Self {
        Self::start_configured(kafka, ingest, |config| http(&mut config.http)).await
    }

    /// [`Self::start_with`], the test's configuration changed by `change`.
    /// Keys live in a PostgreSQL database of the gateway's own.
    pub async fn start_configured(kafka: KafkaConfig, ingest: IngestConfig, change: impl FnOnce(&mut Config)) -> Self {
        let postgres = TestPostgres::create().await.expect("test database");
        let keys = postgres.keys().await.expect("test keys");
        let mut config = Config {
            http: HttpConfig {
                workers: 1,
                probe_timeout: Duration::from_millis(500),
                cors_allowed_origins: Config::default().http.cors_allowed_origins,
                ..HttpConfig::default()
            },
            kafka: kafka.clone(),
            postgres: postgres.config.clone(),
            ingest,
            ..Config::default()
        };
        change(&mut config);
        let service = InProcess::spawn(config, ingest_gateway::run);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-api-key", keys.ingest.parse().unwrap());
        // No idle keep-alive connections, which would hold up the graceful stop.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(0)
            .default_headers(headers)
            .build()
            .unwrap();
        let gateway = Self { topic: Topics::new(&kafka.topic_prefix).raw_events, kafka, http, keys, postgres, service };
        let health = gateway.url("/health");
        testing::eventually(Duration::from_secs(10), || async {
            let status = gateway.http.get(&health).send().await?.status();
            anyhow::ensure!(status == 200, "/health answered {status}");
            Ok(())
        })
        .await
        .expect("gateway alive");
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        self.service.url(path)
    }

    /// POSTs `body` with a content type and optional extra headers.
    pub async fn post(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.http.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("answer {status} is not json ({e}; content-type {content_type:?}): {text}"));
        Answer { status, retry_after, body }
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Answer {
        self.post(path, Some(JSON), serde_json::to_vec(body).unwrap(), &[]).await
    }

    /// Number of messages in the raw topic (sum of the partitions' high watermarks).
    pub async fn stored_count(&self) -> i64 {
        let consumer = self.consumer();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            partitions(&consumer, &topic)
                .into_iter()
                .map(|p| consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)).unwrap().1)
                .sum()
        })
        .await
        .unwrap()
    }

    /// Every message of the raw topic, after checking there are exactly `expected`.
    ///
    /// A 202 means Kafka acknowledged the events, so they must already be
    /// there; the count is checked before reading, so extras are caught too.
    pub async fn stored(&self, expected: usize) -> Vec<Stored> {
        let count = self.stored_count().await;
        assert_eq!(count, i64::try_from(expected).unwrap(), "messages in {}", self.topic);
        let consumer = self.consumer();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let mut assignment = TopicPartitionList::new();
            for partition in partitions(&consumer, &topic) {
                assignment.add_partition_offset(&topic, partition, Offset::Beginning).unwrap();
            }
            consumer.assign(&assignment).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut stored = Vec::new();
            while stored.len() < expected {
                assert!(Instant::now() < deadline, "read {} of {expected} messages in time", stored.len());
                let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
                let message = message.unwrap();
                let headers = message
                    .headers()
                    .map(|h| {
                        (0..h.count())
                            .map(|i| {
                                let header = h.get(i);
                                (header.key.to_string(), header.value.unwrap_or_default().to_vec())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let payload = message.payload().expect("payload");
                let event = Event::from_wire(payload)
                    .unwrap_or_else(|e| panic!("stored message is not a valid event ({e}): {payload:?}"));
                stored.push(Stored {
                    key: String::from_utf8(message.key().expect("key").to_vec()).unwrap(),
                    partition: message.partition(),
                    headers,
                    event,
                });
            }
            stored
        })
        .await
        .unwrap()
    }

    /// Every message of the raw topic, however many there are.
    pub async fn stored_all(&self) -> Vec<Stored> {
        let count = self.stored_count().await;
        self.stored(usize::try_from(count).unwrap()).await
    }

    fn consumer(&self) -> BaseConsumer {
        kafka::client_config(&self.kafka)
            .set("group.id", &self.kafka.consumer_group)
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "20")
            .create()
            .unwrap()
    }

    /// Stops the gateway (it must exit cleanly) and deletes its topic.
    pub async fn stop(self) {
        self.service.stop().await.expect("gateway stops in time and exits cleanly");
        if testing::kafka_config().brokers == self.kafka.brokers {
            kafka::delete_topics(&self.kafka, &[&self.topic]).await.unwrap();
        }
        self.postgres.drop().await.unwrap();
    }
}

fn partitions(consumer: &BaseConsumer, topic: &str) -> Vec<i32> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
    assert!(!partitions.is_empty(), "topic {topic} has partitions");
    partitions
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A valid `video_progress` event.
pub fn progress(session: &str, position: f64) -> Value {
    serde_json::json!({
        "event_type": "video_progress",
        "user_id": "user-1",
        "session_id": session,
        "video_id": "video-1",
        // A minute ago, well inside the lateness horizon.
        "timestamp": (chrono::Utc::now() - chrono::TimeDelta::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "properties": {"position_seconds": position, "quality": "720p", "ab_variant": "b"},
        "metadata": {"player_version": "1.2.3"},
    })
}

/// What the gateway should have stored for `sent`: the same event validated
/// with the stored `received_at` and the id the gateway answered.
pub fn expected(mut sent: Value, event_id: &str, stored: &Event) -> Event {
    sent["event_id"] = Value::String(event_id.to_string());
    Event::from_value(sent, stored.received_at).expect("sent event is valid")
}

/// `ids` of a 2xx answer as strings.
pub fn event_ids(answer: &Answer) -> Vec<String> {
    answer.body["event_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}
