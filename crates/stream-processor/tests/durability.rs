//! A processor configured for more Kafka durability than its topics (or
//! the cluster) can give stops at start with the reason, instead of running
//! with weaker guarantees than the operator asked for (against the local
//! stack's single broker).
#![cfg(test)]

use service_kit::testing;

#[test]
fn topics_less_durable_than_configured_stop_the_processor_at_start() {
    let binary = env!("CARGO_BIN_EXE_stream-processor");
    let kafka = testing::kafka_config();
    let contents = format!(
        "[http]\nport = 0\nops_port = 0\n\n[kafka]\nbrokers = \"{}\"\ntopic_prefix = \"{}\"\nreplication_factor = 2\n",
        kafka.brokers, kafka.topic_prefix
    );
    let stderr = testing::assert_config_refused(binary, &contents, "with 2 replicas").unwrap();
    assert!(stderr.contains("kafka.replication_factor"), "{stderr}");
}
