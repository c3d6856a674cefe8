//! The generator against a real ingest-gateway (in-process, on the local
//! stack's Kafka with a topic prefix of its own): every event it sends is
//! accepted, none rejected.
#![cfg(test)]

use std::time::Duration;

use ingest_gateway::{Config, IngestConfig};
use loadgen::{CancellationToken, Options, SimConfig};
use service_kit::{
    HttpConfig,
    testing::{self, InProcess},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generated_event_is_accepted_by_the_gateway() {
    let config = Config {
        http: HttpConfig { workers: 1, probe_timeout: Duration::from_millis(500), ..HttpConfig::default() },
        kafka: testing::kafka_config(),
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
        ..Options::default()
    };
    let summary = loadgen::run(options, CancellationToken::new()).await.expect("run");
    assert!(summary.is_clean(), "{summary:#?}");
    assert_eq!(summary.rejected, 0, "{:?}", summary.rejection_reasons);
    assert_eq!(summary.accepted, summary.generated);
    assert!(summary.accepted > 800, "{summary:#?}");
    assert!(summary.latency_p50_ms.is_some());
    gateway.stop().await.expect("gateway stops");
}
