//! Scratch servers stop and start again on the same ports with their data:
//! a ClickHouse table keeps its rows, a Kafka topic its messages and a
//! consumer group its committed offset. Dropping one removes its directory.
#![cfg(test)]

use std::time::Duration;

use local_stack::{ScratchClickHouse, ScratchKafka, probe};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, CommitMode, Consumer},
    producer::{FutureProducer, FutureRecord},
};

async fn query(url: &str, sql: &str) -> String {
    let response = reqwest::Client::new().post(url).body(sql.to_string()).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{sql}: HTTP {status}: {text}");
    text.trim().to_string()
}

#[tokio::test]
async fn clickhouse_keeps_its_rows_across_a_restart_and_is_removed_on_drop() {
    let mut clickhouse = ScratchClickHouse::start().await.unwrap();
    let url = clickhouse.url();
    query(&url, "CREATE TABLE default.t (x UInt8) ENGINE = MergeTree ORDER BY x").await;
    query(&url, "INSERT INTO default.t VALUES (1), (2), (3)").await;

    clickhouse.stop().await.unwrap();
    assert_eq!(clickhouse.pid(), None);
    assert!(probe::clickhouse(&url).await.is_err(), "a stopped server does not answer");

    clickhouse.start_again().await.unwrap();
    assert_eq!(clickhouse.url(), url, "same port after a restart");
    assert_eq!(query(&url, "SELECT count() FROM default.t").await, "3");
    assert!(clickhouse.log_tail(50).contains("Ready for connections"), "{}", clickhouse.log_tail(50));

    let dir = clickhouse.dir().to_path_buf();
    drop(clickhouse);
    assert!(!dir.exists(), "{} removed", dir.display());
    assert!(probe::clickhouse(&url).await.is_err(), "a dropped server is gone");
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("socket.timeout.ms", "10000");
    config
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    client_config(bootstrap).set("group.id", "scratch-group").set("enable.auto.commit", "false").create().unwrap()
}

#[tokio::test]
async fn kafka_keeps_topics_messages_and_committed_offsets_across_a_restart() {
    let mut kafka = ScratchKafka::start().await.unwrap();
    let bootstrap = kafka.bootstrap();

    let admin: AdminClient<DefaultClientContext> = client_config(&bootstrap).create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let topic = NewTopic::new("drill", 2, TopicReplication::Fixed(1));
    for created in admin.create_topics(&[topic], &options).await.unwrap() {
        created.unwrap();
    }
    let producer: FutureProducer = client_config(&bootstrap).set("acks", "all").create().unwrap();
    for i in 0..5 {
        let payload = format!("m{i}");
        producer
            .send(FutureRecord::to("drill").key("k").partition(0).payload(&payload), Duration::from_secs(10))
            .await
            .unwrap();
    }
    let group = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset("drill", 0, Offset::Offset(3)).unwrap();
        consumer(&group).commit(&offsets, CommitMode::Sync).unwrap();
    })
    .await
    .unwrap();

    kafka.stop().await.unwrap();
    assert!(probe::kafka(&bootstrap).await.is_err(), "a stopped broker does not answer");
    kafka.start_again().await.unwrap();
    assert_eq!(kafka.bootstrap(), bootstrap, "same port after a restart");

    let (partitions, high, committed) = tokio::task::spawn_blocking(move || {
        let consumer = consumer(&bootstrap);
        let metadata = consumer.fetch_metadata(Some("drill"), Duration::from_secs(10)).unwrap();
        let partitions = metadata.topics()[0].partitions().len();
        let (_, high) = consumer.fetch_watermarks("drill", 0, Duration::from_secs(10)).unwrap();
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition("drill", 0);
        let committed = consumer.committed_offsets(wanted, Duration::from_secs(10)).unwrap();
        (partitions, high, committed.find_partition("drill", 0).unwrap().offset())
    })
    .await
    .unwrap();
    assert_eq!((partitions, high, committed), (2, 5, Offset::Offset(3)));
}
