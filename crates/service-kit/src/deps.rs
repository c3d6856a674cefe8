//! Clients for the four servers and the readiness probes that use them.
//!
//! Every probe makes a real request: Kafka metadata, ClickHouse `SELECT 1`,
//! PostgreSQL `SELECT 1`, Redis `PING`.

use std::time::Duration;

use crate::{
    config::{ClickHouseConfig, KafkaConfig, PostgresConfig, RedisConfig},
    ops::{Probe, ProbeFuture},
};

/// `error` and its sources, `: `-separated: a failed TLS handshake says
/// why (`invalid peer certificate: UnknownIssuer`) only in a source.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub mod kafka {
    use super::*;
    use rdkafka::{
        ClientConfig,
        admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
        client::DefaultClientContext,
        types::RDKafkaErrorCode,
    };

    /// Base librdkafka settings shared by producers, consumers and admin clients.
    pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &cfg.brokers)
            .set("client.id", &cfg.client_id)
            .set("socket.timeout.ms", "10000")
            .set("log_level", "4");
        for (name, value) in cfg.librdkafka_properties() {
            config.set(name, value);
        }
        config
    }

    pub fn admin(cfg: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>, rdkafka::error::KafkaError> {
        client_config(cfg).create()
    }

    /// Messages of `topic` not yet committed by consumer `group`: Σ over its
    /// partitions of high watermark − committed offset (the low watermark when
    /// the group has committed nothing). Asked of the broker, without joining
    /// the group. Blocking: call it from `spawn_blocking`. Creates a client
    /// for this one call; to ask repeatedly, keep a [`GroupLagReader`].
    pub fn consumer_group_lag(
        cfg: &KafkaConfig,
        group: &str,
        topic: &str,
        timeout: std::time::Duration,
    ) -> Result<i64, rdkafka::error::KafkaError> {
        GroupLagReader::new(cfg, group)?.lag(topic, timeout)
    }

    /// One long-lived client that asks the broker for a consumer group's lag
    /// (see [`consumer_group_lag`]) as often as needed. It never subscribes,
    /// so it consumes no message and joins no group; it only reads metadata,
    /// committed offsets and watermarks. Blocking: use it from a thread of
    /// its own or `spawn_blocking`.
    pub struct GroupLagReader {
        consumer: rdkafka::consumer::BaseConsumer,
    }

    impl GroupLagReader {
        /// Creates the client (librdkafka connects lazily: this does not
        /// wait for the broker).
        pub fn new(cfg: &KafkaConfig, group: &str) -> Result<Self, rdkafka::error::KafkaError> {
            let consumer = client_config(cfg)
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("allow.auto.create.topics", "false")
                .create()?;
            Ok(Self { consumer })
        }

        /// Messages of `topic` not yet committed by the group: Σ over its
        /// partitions of high watermark − committed offset (the low watermark
        /// when the group has committed nothing). Each broker request waits
        /// at most `timeout`.
        pub fn lag(&self, topic: &str, timeout: std::time::Duration) -> Result<i64, rdkafka::error::KafkaError> {
            use rdkafka::{Offset, TopicPartitionList, consumer::Consumer as _};
            let consumer = &self.consumer;
            // Error events queued by librdkafka (a broker down, say) are
            // read and dropped, so a long-lived client does not accumulate
            // them; no message can come, nothing is assigned.
            for _ in 0..1000 {
                match consumer.poll(Duration::ZERO) {
                    None => break,
                    Some(Err(error)) => tracing::debug!(error = %error, "kafka client event while reading lag"),
                    Some(Ok(_)) => {}
                }
            }
            let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
            let mut partitions = TopicPartitionList::new();
            for t in metadata.topics().iter().filter(|t| t.name() == topic && t.error().is_none()) {
                for p in t.partitions() {
                    partitions.add_partition(topic, p.id());
                }
            }
            if partitions.count() == 0 {
                return Err(rdkafka::error::KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition));
            }
            let committed = consumer.committed_offsets(partitions, timeout)?;
            let mut lag = 0;
            for element in committed.elements() {
                let (low, high) = consumer.fetch_watermarks(topic, element.partition(), timeout)?;
                let from = match element.offset() {
                    Offset::Offset(offset) => offset,
                    _ => low,
                };
                lag += (high - from).max(0);
            }
            Ok(lag)
        }
    }

    /// A topic to create if it does not exist.
    #[derive(Debug, Clone)]
    pub struct TopicSpec {
        pub name: String,
        pub partitions: i32,
        /// Retention in milliseconds; `None` keeps the broker default. The
        /// topic's segments roll at the same interval, since Kafka only
        /// deletes whole closed segments (the default roll is 7 days).
        pub retention_ms: Option<i64>,
    }

    /// Creates the topics that are missing, with `cfg`'s replication factor
    /// and `min.insync.replicas`, then checks every one of them (existing
    /// ones included) against those settings ([`check_durability`]).
    pub async fn ensure_topics(cfg: &KafkaConfig, topics: &[TopicSpec]) -> anyhow::Result<()> {
        let admin = admin(cfg)?;
        let retention: Vec<Option<String>> = topics.iter().map(|t| t.retention_ms.map(|ms| ms.to_string())).collect();
        let min_insync = cfg.min_insync_replicas.to_string();
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .zip(&retention)
            .map(|(t, retention)| {
                let topic = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(cfg.replication_factor))
                    .set("min.insync.replicas", &min_insync);
                match retention {
                    Some(ms) => topic.set("retention.ms", ms).set("segment.ms", ms),
                    None => topic,
                }
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics(&new_topics, &options).await? {
            match result {
                Ok(name) => tracing::info!(
                    topic = %name,
                    replication_factor = cfg.replication_factor,
                    min_insync_replicas = cfg.min_insync_replicas,
                    "created kafka topic"
                ),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                    return Err(DurabilityError(format!(
                        "cannot create kafka topic {name} with {} replicas: the cluster has fewer brokers \
                         (kafka.replication_factor)",
                        cfg.replication_factor
                    ))
                    .into());
                }
                Err((name, code)) => anyhow::bail!("cannot create kafka topic {name}: {code}"),
            }
        }
        let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        check_durability(&admin, cfg, &names).await
    }

    /// How durable a topic is on the broker.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct TopicDurability {
        /// The fewest replicas of any of its partitions.
        pub replication_factor: i32,
        pub min_insync_replicas: i32,
    }

    /// Reads each topic's replicas and `min.insync.replicas` from the broker
    /// and fails, naming the topic, the setting and both values, when a
    /// topic is less durable than `cfg` requires: an event acknowledged with
    /// `acks=all` would then be on fewer brokers than the operator expects,
    /// which is silent loss when a broker fails. More durable is fine.
    pub async fn check_durability(
        admin: &AdminClient<DefaultClientContext>,
        cfg: &KafkaConfig,
        topics: &[&str],
    ) -> anyhow::Result<()> {
        // A topic created a moment ago may not be in every broker's metadata
        // yet (no partitions, no leader): ask again for a while.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let durability = loop {
            match topic_durability(admin, topics).await {
                Ok(durability) => break durability,
                Err(error) if std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %format!("{error:#}"), "topic metadata not complete yet; asking again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(error) => return Err(error),
            }
        };
        let mut problems = Vec::new();
        for (topic, found) in topics.iter().zip(&durability) {
            if found.replication_factor < cfg.replication_factor {
                problems.push(format!(
                    "topic {topic} has {} replicas, kafka.replication_factor requires {}",
                    found.replication_factor, cfg.replication_factor
                ));
            }
            if found.min_insync_replicas < cfg.min_insync_replicas {
                problems.push(format!(
                    "topic {topic} has min.insync.replicas={}, kafka.min_insync_replicas requires {}",
                    found.min_insync_replicas, cfg.min_insync_replicas
                ));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(DurabilityError(format!(
            "kafka topics are less durable than configured: {} (raise them with kafka-topics.sh / \
             kafka-configs.sh --alter, or lower the settings knowingly)",
            problems.join("; ")
        ))
        .into())
    }

    /// Topics less durable than configured, or a replication factor the
    /// cluster cannot give: no retry fixes it, so services stop at start
    /// instead of retrying (`anyhow::Error::downcast_ref` tells it apart from
    /// Kafka being unreachable, which is retried).
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct DurabilityError(pub String);

    impl DurabilityError {
        /// Whether `error` is (or wraps) a durability error.
        pub fn is_cause_of(error: &anyhow::Error) -> bool {
            error.chain().any(|cause| cause.is::<Self>())
        }
    }

    /// Each topic's [`TopicDurability`], in the order given.
    pub async fn topic_durability(
        admin: &AdminClient<DefaultClientContext>,
        topics: &[&str],
    ) -> anyhow::Result<Vec<TopicDurability>> {
        use rdkafka::admin::ResourceSpecifier;
        let timeout = Duration::from_secs(10);
        let inner = admin.inner();
        let mut replicas = Vec::with_capacity(topics.len());
        for topic in topics {
            let metadata = inner.fetch_metadata(Some(topic), timeout)?;
            let found = metadata
                .topics()
                .iter()
                .find(|t| t.name() == *topic && t.error().is_none())
                .ok_or_else(|| anyhow::anyhow!("kafka topic {topic} does not exist"))?;
            let partitions = found.partitions();
            anyhow::ensure!(
                !partitions.is_empty() && partitions.iter().all(|p| p.error().is_none() && p.leader() >= 0),
                "kafka topic {topic} has no leader for every partition yet"
            );
            replicas.push(partitions.iter().map(|p| p.replicas().len()).min().unwrap_or(0));
        }
        let specifiers: Vec<_> = topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
        let options = AdminOptions::new().request_timeout(Some(timeout));
        let configs = admin.describe_configs(&specifiers, &options).await?;
        topics
            .iter()
            .zip(replicas)
            .zip(configs)
            .map(|((topic, replicas), config)| {
                let config =
                    config.map_err(|code| anyhow::anyhow!("cannot read the config of topic {topic}: {code}"))?;
                let min_insync = config
                    .get("min.insync.replicas")
                    .and_then(|entry| entry.value.as_deref())
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("topic {topic} reports no min.insync.replicas"))?;
                Ok(TopicDurability {
                    replication_factor: i32::try_from(replicas).unwrap_or(i32::MAX),
                    min_insync_replicas: min_insync,
                })
            })
            .collect()
    }

    /// Deletes topics (tests clean up after themselves).
    pub async fn delete_topics(cfg: &KafkaConfig, names: &[&str]) -> anyhow::Result<()> {
        let admin = admin(cfg)?;
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.delete_topics(names, &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((name, code)) => anyhow::bail!("cannot delete kafka topic {name}: {code}"),
            }
        }
        Ok(())
    }

    /// Readiness: a metadata request answered by a broker.
    pub struct KafkaProbe {
        admin: std::sync::Arc<AdminClient<DefaultClientContext>>,
        timeout: Duration,
    }

    impl KafkaProbe {
        pub fn new(cfg: &KafkaConfig, timeout: Duration) -> Result<Self, rdkafka::error::KafkaError> {
            Ok(Self { admin: std::sync::Arc::new(admin(cfg)?), timeout })
        }
    }

    impl Probe for KafkaProbe {
        fn name(&self) -> &'static str {
            "kafka"
        }

        fn check(&self) -> ProbeFuture<'_> {
            let admin = self.admin.clone();
            let timeout = self.timeout;
            Box::pin(async move {
                let metadata = tokio::task::spawn_blocking(move || {
                    admin.inner().fetch_metadata(None, timeout).map(|m| m.brokers().len())
                })
                .await
                .map_err(|e| format!("probe task failed: {e}"))?;
                match metadata {
                    Ok(0) => Err("metadata lists no broker".into()),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            })
        }
    }
}

pub mod clickhouse {
    use super::*;

    /// Readiness: `SELECT 1` through the official client.
    pub struct ClickHouseProbe {
        client: ::clickhouse::Client,
    }

    impl ClickHouseProbe {
        pub fn new(cfg: &ClickHouseConfig) -> Self {
            Self { client: cfg.server_client() }
        }
    }

    impl Probe for ClickHouseProbe {
        fn name(&self) -> &'static str {
            "clickhouse"
        }

        fn check(&self) -> ProbeFuture<'_> {
            Box::pin(async move {
                let one: u8 = self.client.query("SELECT 1").fetch_one().await.map_err(|e| error_chain(&e))?;
                if one == 1 { Ok(()) } else { Err(format!("SELECT 1 returned {one}")) }
            })
        }
    }
}

pub mod postgres {
    use super::*;
    use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

    /// A connection pool. Connections are made lazily, so this succeeds while
    /// PostgreSQL is down; the probe and the first query tell. TLS as the
    /// URL's `sslmode` says ([`crate::tls::postgres::settings`]).
    pub fn pool(cfg: &PostgresConfig) -> anyhow::Result<Pool> {
        let (pg, tls) = connect_config(cfg)?;
        let manager = Manager::from_config(pg, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        Ok(Pool::builder(manager)
            .max_size(cfg.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(cfg.connect_timeout))
            .create_timeout(Some(cfg.connect_timeout))
            .build()?)
    }

    /// The connection settings of `cfg` (its URL with `sslmode`,
    /// `sslrootcert`, … taken out, and `connect_timeout`) and the TLS
    /// connector to use with them.
    pub fn connect_config(
        cfg: &PostgresConfig,
    ) -> anyhow::Result<(tokio_postgres::Config, crate::tls::postgres::PgTls)> {
        let settings = crate::tls::postgres::settings(&cfg.url, cfg.ca_file.as_deref())?;
        let mut pg = settings.config;
        pg.connect_timeout(cfg.connect_timeout);
        Ok((pg, settings.tls))
    }

    /// Opens one connection as `cfg` says (TLS included) and drives it on a
    /// task of its own; the task ends when the client is dropped.
    pub async fn connect(cfg: &PostgresConfig) -> anyhow::Result<tokio_postgres::Client> {
        let (pg, tls) = connect_config(cfg)?;
        let (client, connection) = pg.connect(tls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "postgres connection ended");
            }
        });
        Ok(client)
    }

    /// `cfg` pointed at database `name` on the same server: the database of
    /// its `postgres://user:pass@host:port/db?params` URL swapped.
    pub fn with_database(cfg: &PostgresConfig, name: &str) -> PostgresConfig {
        let url = &cfg.url;
        let (without_query, query) = match url.split_once('?') {
            Some((u, q)) => (u, format!("?{q}")),
            None => (url.as_str(), String::new()),
        };
        let scheme_end = without_query.find("://").map_or(0, |i| i + 3);
        let head = match without_query[scheme_end..].rfind('/') {
            Some(slash) => &without_query[..scheme_end + slash],
            None => without_query,
        };
        PostgresConfig { url: format!("{head}/{name}{query}"), ..cfg.clone() }
    }

    /// Creates database `name` (an identifier chosen by the caller, not by a
    /// request) as `admin`'s role; returns the configuration that reaches it.
    pub async fn create_database(admin: &PostgresConfig, name: &str) -> anyhow::Result<PostgresConfig> {
        pool(admin)?.get().await?.batch_execute(&format!("CREATE DATABASE {name}")).await?;
        Ok(with_database(admin, name))
    }

    /// Drops database `name` if it exists, closing its connections.
    ///
    /// `WITH (FORCE)` refuses (insufficient privilege) while a backend that
    /// `admin`'s role may not terminate is connected: an autovacuum worker
    /// that started on the new database. It finishes on its own within
    /// moments, so that refusal is retried for up to 10 s.
    pub async fn drop_database(admin: &PostgresConfig, name: &str) -> anyhow::Result<()> {
        let client = pool(admin)?.get().await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await {
                Ok(()) => return Ok(()),
                Err(error)
                    if error.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
                        && std::time::Instant::now() < deadline =>
                {
                    tracing::debug!(database = name, error = %error, "database still in use by another role, retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Readiness: `SELECT 1` on a pooled connection.
    pub struct PostgresProbe {
        pool: Pool,
    }

    impl PostgresProbe {
        pub fn new(pool: Pool) -> Self {
            Self { pool }
        }
    }

    impl Probe for PostgresProbe {
        fn name(&self) -> &'static str {
            "postgres"
        }

        fn check(&self) -> ProbeFuture<'_> {
            Box::pin(async move {
                let client = self.pool.get().await.map_err(|e| error_chain(&e))?;
                client.simple_query("SELECT 1").await.map_err(|e| error_chain(&e))?;
                Ok(())
            })
        }
    }
}

pub mod redis {
    use super::*;
    use fred::prelude::{ClientLike, Config, ReconnectPolicy};

    /// A Redis client that connects in the background and reconnects forever,
    /// so the service starts (unready) while Redis is down. A `rediss://`
    /// URL connects over TLS (rustls), trusting `redis.ca_file` or the
    /// system store and checking that the certificate names the host.
    pub fn client(cfg: &RedisConfig) -> anyhow::Result<fred::clients::Client> {
        let mut config = Config::from_url(&cfg.url).map_err(|e| anyhow::anyhow!("invalid redis url: {e}"))?;
        if let Some(path) = &cfg.ca_file {
            anyhow::ensure!(
                cfg.tls(),
                "redis.ca_file is set ({}) but redis.url is not rediss:// (TLS)",
                path.display()
            );
        }
        if config.tls.is_some() {
            let roots = crate::tls::Roots::from_option(cfg.ca_file.as_deref(), "redis.ca_file");
            let tls = crate::tls::client_config(&roots, crate::tls::Verify::Full, None)?;
            config.tls = Some(fred::prelude::TlsConnector::from(tls).into());
        }
        let client = fred::types::Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(2))
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()?;
        client.connect();
        Ok(client)
    }

    /// Readiness: `PING` answered with `PONG`.
    pub struct RedisProbe {
        client: fred::clients::Client,
    }

    impl RedisProbe {
        pub fn new(client: fred::clients::Client) -> Self {
            Self { client }
        }
    }

    impl Probe for RedisProbe {
        fn name(&self) -> &'static str {
            "redis"
        }

        fn check(&self) -> ProbeFuture<'_> {
            Box::pin(async move {
                use fred::interfaces::ClientLike as _;
                let pong: String = self.client.ping(None).await.map_err(|e| e.to_string())?;
                if pong.eq_ignore_ascii_case("PONG") { Ok(()) } else { Err(format!("PING answered {pong:?}")) }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_database_of_a_postgres_url() {
        let cfg = PostgresConfig {
            url: "postgres://a:b@127.0.0.1:5432/analytics?sslmode=disable".into(),
            ..PostgresConfig::default()
        };
        assert_eq!(postgres::with_database(&cfg, "other").url, "postgres://a:b@127.0.0.1:5432/other?sslmode=disable");
        let bare = PostgresConfig { url: "postgres://127.0.0.1:5432".into(), ..PostgresConfig::default() };
        assert_eq!(postgres::with_database(&bare, "other").url, "postgres://127.0.0.1:5432/other");
    }
}
