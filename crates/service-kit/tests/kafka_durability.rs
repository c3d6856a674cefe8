//! Kafka durability settings against the local stack's broker: topics are
//! created with the configured replication factor and `min.insync.replicas`,
//! a topic less durable than configured is a clear error (never retried, so
//! services stop at start), and librdkafka properties pass through.
#![cfg(test)]

use service_kit::{
    KafkaConfig,
    deps::kafka::{self, DurabilityError, TopicDurability, TopicSpec},
    testing,
};

fn spec(cfg: &KafkaConfig, name: &str) -> TopicSpec {
    TopicSpec { name: format!("{}{name}", cfg.topic_prefix), partitions: 2, retention_ms: None }
}

#[tokio::test]
async fn topics_get_the_configured_durability_and_are_checked_against_it() {
    let cfg = testing::kafka_config();
    let topic = spec(&cfg, "durable");
    kafka::ensure_topics(&cfg, std::slice::from_ref(&topic)).await.unwrap();
    let admin = kafka::admin(&cfg).unwrap();
    let found = kafka::topic_durability(&admin, &[&topic.name]).await.unwrap();
    assert_eq!(found, [TopicDurability { replication_factor: 1, min_insync_replicas: 1 }]);

    // An operator who expects three replicas, or two in sync, on a topic
    // that has one: a start-up error naming the topic, the setting and both values.
    let wants_replicas = KafkaConfig { replication_factor: 3, min_insync_replicas: 2, ..cfg.clone() };
    let error = kafka::ensure_topics(&wants_replicas, std::slice::from_ref(&topic)).await.unwrap_err();
    assert!(DurabilityError::is_cause_of(&error), "{error:#}");
    let message = format!("{error:#}");
    assert!(message.contains(&format!("topic {} has 1 replicas, kafka.replication_factor requires 3", topic.name)));
    assert!(message.contains("has min.insync.replicas=1, kafka.min_insync_replicas requires 2"), "{message}");

    // More durable than configured is fine.
    let relaxed = KafkaConfig { replication_factor: 1, min_insync_replicas: 1, ..cfg.clone() };
    kafka::check_durability(&admin, &relaxed, &[&topic.name]).await.unwrap();

    // A replication factor the single broker cannot give is refused when creating, not retried.
    let missing = spec(&cfg, "too-many-replicas");
    let error = kafka::ensure_topics(&wants_replicas, std::slice::from_ref(&missing)).await.unwrap_err();
    assert!(DurabilityError::is_cause_of(&error), "{error:#}");
    assert!(format!("{error:#}").contains("kafka.replication_factor"), "{error:#}");

    kafka::delete_topics(&cfg, &[&topic.name]).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_broker_is_not_a_durability_error() {
    let dead = testing::ClosedPort::new();
    let cfg = KafkaConfig { brokers: dead.addr(), ..testing::kafka_config() };
    let cfg = KafkaConfig { properties: [("socket_timeout_ms".into(), "2000".into())].into(), ..cfg };
    let error = kafka::ensure_topics(&cfg, &[spec(&cfg, "nowhere")]).await.unwrap_err();
    assert!(!DurabilityError::is_cause_of(&error), "retried, not fatal: {error:#}");
}

#[test]
fn librdkafka_properties_pass_through_with_underscores_as_dots() {
    let cfg = KafkaConfig {
        properties: [
            ("socket_timeout_ms".to_string(), "1234".to_string()),
            ("security.protocol".to_string(), "plaintext".to_string()),
        ]
        .into(),
        ..KafkaConfig::default()
    };
    let client = kafka::client_config(&cfg);
    assert_eq!(client.get("socket.timeout.ms"), Some("1234"), "overrides the service's own setting");
    assert_eq!(client.get("security.protocol"), Some("plaintext"));
    // librdkafka itself judges them: an unknown property fails client creation.
    let wrong = KafkaConfig { properties: [("no_such_property".into(), "1".into())].into(), ..KafkaConfig::default() };
    let Err(error) = kafka::admin(&wrong) else { panic!("an unknown property is refused") };
    let error = error.to_string();
    assert!(error.contains("no.such.property"), "{error}");
}

#[test]
fn durability_settings_are_validated() {
    assert!(KafkaConfig::default().problems().is_empty());
    let production = KafkaConfig { replication_factor: 3, min_insync_replicas: 2, ..KafkaConfig::default() };
    assert!(production.problems().is_empty());
    let impossible = KafkaConfig { replication_factor: 1, min_insync_replicas: 2, ..KafkaConfig::default() };
    assert!(impossible.problems()[0].contains("kafka.min_insync_replicas (2)"), "{:?}", impossible.problems());
    let zero = KafkaConfig { replication_factor: 0, ..KafkaConfig::default() };
    assert!(zero.problems()[0].contains("kafka.replication_factor must be at least 1"));
}

/// `[kafka.properties]` takes any librdkafka name from a file (quoted, with
/// dots) and from the environment (underscores), without tripping the
/// unknown-key check.
#[test]
fn properties_load_from_a_file_and_from_the_environment() {
    #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
    #[serde(default)]
    struct Service {
        kafka: KafkaConfig,
    }
    let dir = std::env::temp_dir().join(testing::unique_name("kafka-properties"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("service.toml");
    std::fs::write(
        &file,
        "[kafka]\nreplication_factor = 3\n\n[kafka.properties]\n\"ssl.ca.location\" = \"/etc/ca.pem\"\n",
    )
    .unwrap();
    let env = std::collections::HashMap::from([(
        "SOME_SERVICE__KAFKA__PROPERTIES__SECURITY_PROTOCOL".to_string(),
        "SASL_SSL".to_string(),
    )]);
    let loaded: Service = service_kit::config::load_from("some-service", Some(&file), &env).unwrap();
    assert_eq!(loaded.kafka.replication_factor, 3);
    let client = kafka::client_config(&loaded.kafka);
    assert_eq!(client.get("ssl.ca.location"), Some("/etc/ca.pem"));
    assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
    std::fs::remove_dir_all(&dir).ok();
}
