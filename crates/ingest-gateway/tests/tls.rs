//! The gateway against TLS-only dependencies: a scratch Kafka reached on its
//! `SSL` listener (librdkafka with `ssl.ca.location`) and a scratch
//! PostgreSQL with `ssl=on` reached with `sslmode=verify-full`, both with a
//! CA the test made. It becomes ready and stores an event; told to trust an
//! unrelated CA, it stays unready with both checks failing (why is in its
//! log; `service-kit/tests/tls.rs` asserts the clients' error texts).

use std::time::Duration;

use ingest_gateway::{Config, IngestConfig};
use local_stack::{ScratchKafka, ScratchPostgres, TestPki};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use serde_json::{Value, json};
use service_kit::{
    HttpConfig, KafkaConfig, PostgresConfig,
    deps::{kafka, postgres},
    testing::{self, InProcess},
};

fn config(kafka: KafkaConfig, postgres: PostgresConfig) -> Config {
    Config {
        http: HttpConfig { workers: 1, probe_timeout: Duration::from_secs(2), ..HttpConfig::default() },
        kafka,
        postgres,
        ingest: IngestConfig { raw_topic_partitions: 1, ..IngestConfig::default() },
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_is_ready_and_stores_over_tls_and_refuses_an_untrusted_ca() {
    let dir = std::env::temp_dir().join(testing::unique_name("gateway-tls"));
    let pki = TestPki::create(&dir).expect("test certificates");
    let (broker, database) = tokio::join!(ScratchKafka::start_tls(&pki, &[]), ScratchPostgres::start_tls(&pki));
    let (broker, database) = (broker.expect("scratch kafka with TLS"), database.expect("scratch postgres with TLS"));

    let kafka_with = |ca: &std::path::Path| {
        let mut cfg = KafkaConfig {
            brokers: broker.ssl_bootstrap().unwrap(),
            topic_prefix: testing::unique_name("tls."),
            ..KafkaConfig::default()
        };
        cfg.properties.insert("security.protocol".into(), "SSL".into());
        cfg.properties.insert("ssl.ca.location".into(), ca.display().to_string());
        cfg
    };
    let postgres_with = |ca: &std::path::Path| PostgresConfig {
        url: format!("{}?sslmode=verify-full", database.url()),
        ca_file: Some(ca.to_path_buf()),
        ..PostgresConfig::default()
    };

    // The key store's tables and one ingest key, written over TLS.
    let trusted_pg = postgres_with(&pki.ca_cert);
    service_kit::migrate::apply_postgres(&trusted_pg).await.expect("migrations over TLS");
    let client = postgres::connect(&trusted_pg).await.expect("connected with verify-full");
    let key = service_kit::auth::create_key(&client, "tls-ingest", &[service_kit::auth::Scope::Ingest], &[])
        .await
        .expect("ingest key")
        .secret;
    drop(client);

    let trusted_kafka = kafka_with(&pki.ca_cert);
    let gateway = InProcess::spawn(config(trusted_kafka.clone(), trusted_pg), ingest_gateway::run);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).pool_max_idle_per_host(0).build().unwrap();
    let ready = gateway.url("/ready");
    testing::eventually(Duration::from_secs(60), || async {
        let answer = http.get(&ready).send().await?;
        let status = answer.status();
        anyhow::ensure!(status == 200, "/ready answered {status}: {}", answer.text().await?);
        Ok(())
    })
    .await
    .expect("gateway ready against TLS Kafka and TLS PostgreSQL");

    let event = json!({
        "event_type": "video_start",
        "user_id": "user-tls",
        "session_id": "session-tls",
        "video_id": "video-tls",
        "properties": {"startup_time_ms": 500},
    });
    let answer = http.post(gateway.url("/api/events")).header("x-api-key", &key).json(&event).send().await.unwrap();
    let status = answer.status();
    let body: Value = answer.json().await.unwrap();
    assert_eq!(status, 202, "{body}");

    // Kafka acknowledged it: the raw topic holds it (read over TLS).
    let topic = events_model::Topics::new(&trusted_kafka.topic_prefix).raw_events;
    let consumer: BaseConsumer = kafka::client_config(&trusted_kafka).set("group.id", "tls-check").create().unwrap();
    let (low, high) =
        tokio::task::spawn_blocking(move || consumer.fetch_watermarks(&topic, 0, Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("watermarks over TLS");
    assert_eq!(high - low, 1, "one message in the raw topic");
    gateway.stop().await.expect("gateway stops cleanly");

    // Trusting an unrelated CA: it starts but stays unready, the Kafka and
    // key-store (PostgreSQL) checks failing.
    let untrusted = config(kafka_with(&pki.untrusted_ca_cert), postgres_with(&pki.untrusted_ca_cert));
    let gateway = InProcess::spawn(untrusted, ingest_gateway::run);
    let ready = gateway.url("/ready");
    let checks = testing::eventually(Duration::from_secs(30), || async {
        let answer = http.get(&ready).send().await?;
        let status = answer.status();
        let body: Value = answer.json().await?;
        anyhow::ensure!(status == 503, "/ready answered {status}: {body}");
        Ok(body["checks"].clone())
    })
    .await
    .expect("unready");
    for check in ["kafka", "api_keys"] {
        assert_eq!(checks[check]["ok"], false, "{check}: {checks}");
    }
    // It never turns ready while it trusts the wrong CA.
    for _ in 0..3 {
        assert_eq!(http.get(&ready).send().await.unwrap().status(), 503);
    }
    gateway.stop().await.expect("gateway stops cleanly");

    drop((broker, database));
    let _ = std::fs::remove_dir_all(dir);
}
