//! The generator against a real ingest-gateway (in-process, on the local
//! stack's Kafka with a topic prefix of its own, its keys in a PostgreSQL
//! database of its own): every event it sends with an ingest key is
//! accepted, none rejected; with a key the gateway refuses, the run stops.
#![cfg(test)]

use std::time::Duration;

use ingest_gateway::{Config, IngestConfig};
use loadgen::{CancellationToken, Options, SimConfig};
use service_kit::{
    HttpConfig,
    testing::{self, InProcess, TestPostgres},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generated_event_is_accepted_by_the_gateway_and_a_refused_key_stops_the_run() {
    let test_pg = TestPostgres::create().await.expect("a PostgreSQL database for the keys");
    let keys = test_pg.keys().await.expect("keys");
    let config = Config {
        http: HttpConfig { workers: 1, probe_timeout: Duration::from_millis(500), ..HttpConfig::default() },
        kafka: testing::kafka_config(),
        postgres: test_pg.config.clone(),
        ingest: IngestConfig { raw_topic_partitions: 2, ..IngestConfig::default() },
        ..Config::default()
    };
    let gateway = InProcess::spawn(config, ingest_gateway::run);
    let http = reqwest::Client::new();
    let ready = gateway.url("/ready");
    testing::eventually(Duration::from_secs(30), || async {
        let status = http.get(&ready).send().await?.status();
        anyhow::ensure!(status == 200, "/ready answered {status}");
        Ok(())
    })
    .await
    .expect("gateway ready");

    let options = Options {
        sim: SimConfig { rate: 400.0, seed: 5, salt: loadgen::epoch_ms() as u64, ..SimConfig::default() },
        duration: Some(Duration::from_secs(4)),
        gateway: gateway.url(""),
        batch_max: 100,
        batch_interval: Duration::from_millis(50),
        concurrency: 2,
        api_key: Some(keys.ingest.clone()),
        ..Options::default()
    };
    let summary = loadgen::run(options.clone(), CancellationToken::new()).await.expect("run");
    assert!(summary.is_clean(), "{summary:#?}");
    assert_eq!(summary.rejected, 0, "{:?}", summary.rejection_reasons);
    assert_eq!(summary.accepted, summary.generated);
    assert!(summary.accepted > 800, "{summary:#?}");
    assert!(summary.latency_p50_ms.is_some());

    // A read token has no ingest scope (403): the first answer stops a run
    // that would otherwise never end, and nothing is accepted.
    let refused = Options { duration: None, api_key: Some(keys.read.clone()), ..options };
    let summary = tokio::time::timeout(Duration::from_secs(30), loadgen::run(refused, CancellationToken::new()))
        .await
        .expect("a refused key stops the run")
        .expect("run");
    assert_eq!(summary.accepted, 0, "{summary:#?}");
    assert!(summary.rejected > 0, "{summary:#?}");
    assert!(
        summary.rejection_reasons.iter().any(|r| r.contains("HTTP 403") && r.contains(loadgen::KEY_REFUSED)),
        "{:?}",
        summary.rejection_reasons
    );
    gateway.stop().await.expect("gateway stops");
    test_pg.drop().await.expect("drop the test database");
}
