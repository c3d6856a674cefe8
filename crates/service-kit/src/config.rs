//! Typed configuration, loaded once at start-up with the `config` crate.
//!
//! Precedence, lowest first:
//! 1. the service's `Default` values,
//! 2. an optional TOML file (`--config PATH`, `CONFIG_FILE`, or `config/<service>.toml`),
//! 3. the seed's well-known environment names (`KAFKA_BROKERS`, `CLICKHOUSE_HOST`, `PORT`, …),
//! 4. the service's own prefixed environment (`INGEST_GATEWAY__HTTP__PORT=3101`).
//!
//! Each service owns a struct that embeds the sections it needs (`http`, `log`,
//! `kafka`, `clickhouse`, `postgres`, `redis`); keys a service lacks are ignored.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::PathBuf,
    time::Duration,
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} not found")]
    MissingFile { path: PathBuf },
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
}

/// The seed's environment names and the config keys they set.
///
/// These work for every service, so a deployment written for the original
/// product keeps working (`KAFKA_BROKERS=kafka:9092`, `CLICKHOUSE_HOST=clickhouse`).
pub const WELL_KNOWN_ENV: &[(&str, &str)] = &[
    ("PORT", "http.port"),
    ("HOST", "http.host"),
    ("LOG_LEVEL", "log.level"),
    ("LOG_FORMAT", "log.format"),
    ("KAFKA_BROKERS", "kafka.brokers"),
    ("KAFKA_TOPIC_PREFIX", "kafka.topic_prefix"),
    ("KAFKA_CONSUMER_GROUP", "kafka.consumer_group"),
    ("CLICKHOUSE_URL", "clickhouse.url"),
    ("CLICKHOUSE_HOST", "clickhouse.host"),
    ("CLICKHOUSE_PORT", "clickhouse.port"),
    ("CLICKHOUSE_DATABASE", "clickhouse.database"),
    ("CLICKHOUSE_USER", "clickhouse.user"),
    ("CLICKHOUSE_PASSWORD", "clickhouse.password"),
    ("DATABASE_URL", "postgres.url"),
    ("POSTGRES_URL", "postgres.url"),
    ("REDIS_URL", "redis.url"),
];

/// Loads a service's configuration: defaults < file < environment.
///
/// `service` is the binary's name (`ingest-gateway`); its environment prefix is
/// the upper-snake form (`INGEST_GATEWAY`) with `__` between nested keys.
pub fn load<T>(service: &str) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let file = config_file_from_args().or_else(|| std::env::var_os("CONFIG_FILE").map(PathBuf::from));
    let env: HashMap<String, String> = std::env::vars().collect();
    load_from(service, file.as_deref(), &env)
}

/// [`load`] with the file and environment given explicitly (for tests).
pub fn load_from<T>(
    service: &str,
    file: Option<&std::path::Path>,
    env: &HashMap<String, String>,
) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut builder = config::Config::builder().add_source(config::Config::try_from(&T::default())?);

    match file {
        Some(path) if !path.exists() => {
            return Err(ConfigError::MissingFile { path: path.to_path_buf() });
        }
        Some(path) => builder = builder.add_source(config::File::from(path)),
        None => {
            let default_path = format!("config/{service}.toml");
            builder = builder.add_source(config::File::with_name(&default_path).required(false));
        }
    }

    // The seed's names, rewritten as one more environment source so that the
    // service's own prefixed variables (added after) still win over them.
    let well_known: HashMap<String, String> = WELL_KNOWN_ENV
        .iter()
        .filter_map(|(name, key)| {
            let value = env.get(*name).filter(|v| !v.is_empty())?;
            Some((format!("WELL_KNOWN__{}", key.replace('.', "__").to_ascii_uppercase()), value.clone()))
        })
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix("WELL_KNOWN")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(well_known)),
    );

    let prefix = env_prefix(service);
    let prefixed: HashMap<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{prefix}__")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix(&prefix)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(prefixed)),
    );

    Ok(builder.build()?.try_deserialize()?)
}

/// `ingest-gateway` → `INGEST_GATEWAY`.
pub fn env_prefix(service: &str) -> String {
    service.replace('-', "_").to_ascii_uppercase()
}

fn config_file_from_args() -> Option<PathBuf> {
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// The HTTP listener every binary has (API port, or ops port for workers).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HttpConfig {
    pub host: String,
    pub port: u16,
    /// Worker threads of the HTTP server; 0 means one per core.
    pub workers: usize,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout_secs: u64,
    /// Budget for each dependency probe of `GET /ready`.
    pub probe_timeout_ms: u64,
}

impl HttpConfig {
    pub fn with_port(port: u16) -> Self {
        Self { port, ..Self::default() }
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    pub fn probe_timeout(&self) -> Duration {
        Duration::from_millis(self.probe_timeout_ms)
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { host: "127.0.0.1".into(), port: 0, workers: 0, shutdown_timeout_secs: 3, probe_timeout_ms: 2000 }
    }
}

/// Log filter and output format.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogConfig {
    /// A level (`info`, `debug`) or a full `tracing` filter (`info,rdkafka=warn`).
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Kafka connection shared by producers and consumers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub brokers: String,
    /// Prepended to every topic name (`analytics.`); tests use a unique one.
    pub topic_prefix: String,
    pub consumer_group: String,
    pub client_id: String,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: "analytics.".into(),
            consumer_group: "analytics-stream-processor".into(),
            client_id: "analytics".into(),
        }
    }
}

/// ClickHouse over HTTP.
///
/// `url` wins when set; otherwise it is built from `host` and `port`, as the
/// seed's `CLICKHOUSE_HOST=clickhouse` expects.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ClickHouseConfig {
    pub url: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
    /// Extra ClickHouse settings sent with every query of this service, e.g.
    /// `log_queries = "1"` to record them in `system.query_log` (benchmarks,
    /// diagnosis). Limits a service sets per query class win over these.
    pub settings: BTreeMap<String, String>,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            host: "127.0.0.1".into(),
            port: 8123,
            database: "analytics".into(),
            user: "default".into(),
            password: String::new(),
            settings: BTreeMap::new(),
        }
    }
}

impl ClickHouseConfig {
    /// The HTTP endpoint, e.g. `http://127.0.0.1:8123`.
    pub fn endpoint(&self) -> String {
        if !self.url.is_empty() {
            return self.url.trim_end_matches('/').to_string();
        }
        if self.host.starts_with("http://") || self.host.starts_with("https://") {
            return self.host.trim_end_matches('/').to_string();
        }
        format!("http://{}:{}", self.host, self.port)
    }

    /// A client bound to [`Self::database`].
    ///
    /// Schema validation is off: ClickHouse 18.16 lacks
    /// `RowBinaryWithNamesAndTypes`, which validation needs.
    pub fn client(&self) -> clickhouse::Client {
        self.server_client().with_database(&self.database)
    }

    /// A client with no database selected (for `CREATE DATABASE`).
    pub fn server_client(&self) -> clickhouse::Client {
        let client = clickhouse::Client::default()
            .with_url(self.endpoint())
            .with_user(&self.user)
            .with_password(&self.password)
            .with_validation(false);
        self.settings.iter().fold(client, |client, (name, value)| client.with_setting(name, value))
    }
}

/// PostgreSQL (metadata: video catalog, job runs, API keys).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PostgresConfig {
    pub url: String,
    pub pool_size: usize,
    pub connect_timeout_ms: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://analytics:analytics@127.0.0.1:5432/analytics".into(),
            pool_size: 8,
            connect_timeout_ms: 3000,
        }
    }
}

/// Redis (query cache, short-lived state).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RedisConfig {
    pub url: String,
    /// Prepended to every key; tests use a unique one.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self { url: "redis://127.0.0.1:6379".into(), key_prefix: "analytics:".into() }
    }
}

/// Resolves `addr` to the socket address to bind.
pub fn socket_addr(http: &HttpConfig) -> std::io::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    http.addr()
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{} resolves to no address", http.addr())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Sample {
        http: HttpConfig,
        log: LogConfig,
        kafka: KafkaConfig,
        clickhouse: ClickHouseConfig,
        batch_size: usize,
    }

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_apply_without_file_or_env() {
        let cfg: Sample = load_from("sample-svc", None, &env_of(&[])).unwrap();
        assert_eq!(cfg, Sample::default());
    }

    #[test]
    fn seed_env_names_override_defaults() {
        let cfg: Sample = load_from(
            "sample-svc",
            None,
            &env_of(&[
                ("KAFKA_BROKERS", "kafka:9092"),
                ("CLICKHOUSE_HOST", "clickhouse"),
                ("PORT", "4000"),
                ("LOG_LEVEL", "debug"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.kafka.brokers, "kafka:9092");
        assert_eq!(cfg.clickhouse.endpoint(), "http://clickhouse:8123");
        assert_eq!(cfg.http.port, 4000);
        assert_eq!(cfg.log.level, "debug");
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let dir = std::env::temp_dir().join(format!("svc-kit-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sample.toml");
        std::fs::write(&path, "batch_size = 7\n[http]\nport = 5000\n[kafka]\nbrokers = \"file:9092\"\n").unwrap();

        let cfg: Sample = load_from("sample-svc", Some(&path), &env_of(&[])).unwrap();
        assert_eq!((cfg.batch_size, cfg.http.port, cfg.kafka.brokers.as_str()), (7, 5000, "file:9092"));

        let cfg: Sample = load_from("sample-svc", Some(&path), &env_of(&[("KAFKA_BROKERS", "env:9092")])).unwrap();
        assert_eq!(cfg.kafka.brokers, "env:9092");
        assert_eq!(cfg.http.port, 5000);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = load_from::<Sample>("sample-svc", Some(std::path::Path::new("/nonexistent/x.toml")), &env_of(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.toml"), "{err}");
    }

    #[test]
    fn wrong_type_in_env_is_a_clear_error() {
        let err = load_from::<Sample>("sample-svc", None, &env_of(&[("PORT", "not-a-port")])).unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
    }

    #[test]
    fn service_prefixed_env_wins_over_seed_names() {
        let cfg: Sample = load_from(
            "sample-svc",
            None,
            &env_of(&[("PORT", "4000"), ("SAMPLE_SVC__HTTP__PORT", "4100"), ("SAMPLE_SVC__BATCH_SIZE", "9")]),
        )
        .unwrap();
        assert_eq!((cfg.http.port, cfg.batch_size), (4100, 9));
    }

    #[test]
    fn extra_clickhouse_settings_come_from_file_or_env() {
        let cfg: Sample =
            load_from("sample-svc", None, &env_of(&[("SAMPLE_SVC__CLICKHOUSE__SETTINGS__LOG_QUERIES", "1")])).unwrap();
        assert_eq!(cfg.clickhouse.settings.get("log_queries").map(String::as_str), Some("1"));
        assert!(Sample::default().clickhouse.settings.is_empty());
    }

    #[test]
    fn env_prefix_is_upper_snake() {
        assert_eq!(env_prefix("ingest-gateway"), "INGEST_GATEWAY");
    }
}
