//! Against the local stack: `/api/metrics/health`'s consumer lag comes from
//! one background reader with one long-lived Kafka client. The lag is right
//! (messages on a test raw topic that a test group never committed), it
//! follows new messages, and 100 concurrent health requests create no Kafka
//! client.
//!
//! Its own test binary with one test, so the process-wide count of lag
//! clients is this test's query API's alone.
#![cfg(test)]

use std::time::{Duration, Instant};

use query_api::{Config, state::lag_clients_created};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use reqwest::Client;
use serde_json::Value;
use service_kit::{
    KafkaConfig,
    deps::kafka::{TopicSpec, delete_topics, ensure_topics},
    testing::{self, InProcess, TestPostgres},
};

const REQUESTS: usize = 100;

fn produce(kafka: &KafkaConfig, topic: &str, count: usize) {
    let producer: BaseProducer = service_kit::deps::kafka::client_config(kafka).create().unwrap();
    for i in 0..count {
        let key = format!("session-{i}");
        producer.send(BaseRecord::to(topic).key(&key).payload("{}")).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

async fn health(http: &Client, service: &InProcess) -> Value {
    http.get(service.url("/api/metrics/health")).send().await.unwrap().json().await.unwrap()
}

/// Polls the health report until its consumer lag is `messages` (a refresh every 5 s).
async fn wait_for_lag(http: &Client, service: &InProcess, messages: i64) -> Value {
    testing::eventually(Duration::from_secs(30), || async {
        let body = health(http, service).await;
        anyhow::ensure!(body["consumer_lag"]["messages"] == messages, "{body}");
        Ok(body)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_consumer_lag_is_read_by_one_shared_client() {
    let postgres = TestPostgres::create().await.expect("test postgres database");
    let kafka = testing::kafka_config();
    let topic = events_model::Topics::new(&kafka.topic_prefix).raw_events;
    ensure_topics(&kafka, &[TopicSpec { name: topic.clone(), partitions: 3, retention_ms: None }]).await.unwrap();
    // The test group has committed nothing: every message is lag.
    produce(&kafka, &topic, 7);

    let created_before = lag_clients_created();
    let config = Config {
        postgres: postgres.config.clone(),
        redis: testing::redis_config(),
        clickhouse: testing::clickhouse_config(),
        kafka: kafka.clone(),
        ..Config::default()
    };
    let service = InProcess::spawn(config, query_api::run);
    // No idle keep-alive connections: with them the stop below waits out the
    // server's 3 s shutdown timeout (actix waits for open connections), and
    // once in CI (2026-12-06) it had not returned 15 s after 100 concurrent
    // requests; the cause of that stall is not found.
    let token = format!("Bearer {}", postgres.keys().await.expect("test keys").read);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, token.parse().unwrap());
    let http = Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(0)
        .default_headers(headers)
        .build()
        .unwrap();

    let body = wait_for_lag(&http, &service, 7).await;
    let lag = &body["consumer_lag"];
    assert_eq!(lag["topic"], topic.as_str(), "{body}");
    assert_eq!(lag["group"], kafka.consumer_group.as_str(), "{body}");
    assert!(lag.get("error").is_none(), "{body}");
    let first_as_of = chrono::DateTime::parse_from_rfc3339(lag["as_of"].as_str().unwrap()).unwrap();

    // New messages show at a later refresh, by the same client.
    produce(&kafka, &topic, 5);
    let body = wait_for_lag(&http, &service, 12).await;
    let as_of = chrono::DateTime::parse_from_rfc3339(body["consumer_lag"]["as_of"].as_str().unwrap()).unwrap();
    assert!(as_of > first_as_of, "{first_as_of} then {as_of}");
    assert_eq!(lag_clients_created() - created_before, 1, "one client for the service's life");

    // Concurrent requests read the shared value: no client, no broker round trip.
    let started = Instant::now();
    let answers = futures_join(&http, &service).await;
    let elapsed = started.elapsed();
    for body in &answers {
        assert_eq!(body["consumer_lag"]["messages"], 12, "{body}");
        assert_eq!(body["consumer_lag"]["topic"], topic.as_str(), "{body}");
    }
    assert_eq!(lag_clients_created() - created_before, 1, "{REQUESTS} health requests created no kafka client");
    eprintln!("{REQUESTS} concurrent health requests answered in {elapsed:?}");

    // `run` returns only once the lag reader has stopped.
    service.stop().await.unwrap();
    delete_topics(&kafka, &[&topic]).await.unwrap();
    postgres.drop().await.unwrap();
}

/// `REQUESTS` concurrent health requests, their bodies.
async fn futures_join(http: &Client, service: &InProcess) -> Vec<Value> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..REQUESTS {
        let (http, url) = (http.clone(), service.url("/api/metrics/health"));
        tasks.spawn(async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() });
    }
    tasks.join_all().await
}
