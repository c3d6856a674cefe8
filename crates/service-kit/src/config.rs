//! Typed configuration, loaded once at start-up with the `config` crate.
//!
//! Precedence, lowest first:
//! 1. the service's `Default` values,
//! 2. an optional TOML file (`--config PATH`, `CONFIG_FILE`, or `config/<service>.toml`),
//! 3. the seed's well-known environment names (`KAFKA_BROKERS`, `CLICKHOUSE_HOST`, `PORT`, …),
//! 4. the service's own prefixed environment (`INGEST_GATEWAY__HTTP__PORT=3101`).
//!
//! Each service owns a struct that embeds the sections it needs (`http`, `log`,
//! `kafka`, `clickhouse`, `postgres`, `redis`). The file and the service's
//! prefixed environment are a contract: a key the service's defaults do not
//! have is refused, naming the key, where it came from and the nearest valid
//! key. Only the seed's names reach every service, so those a service lacks
//! are ignored.
//!
//! Durations are humantime strings (`"500ms"`, `"30s"`, `"48h"`). For a
//! deprecation period the old integer keys (`produce_timeout_ms = 5000`) are
//! still read, rewritten to the new key and reported as warnings.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use config::{Value, ValueKind};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} not found")]
    MissingFile { path: PathBuf },
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    /// Unknown keys, and legacy keys given together with their new name: every
    /// one of them, each naming the key and where it came from.
    #[error("{}", .0.join("\n"))]
    Keys(Vec<String>),
}

/// The seed's environment names and the config keys they set.
///
/// These work for every service, so a deployment written for the original
/// product keeps working (`KAFKA_BROKERS=kafka:9092`, `CLICKHOUSE_HOST=clickhouse`).
/// A service without the key's section ignores the name.
pub const WELL_KNOWN_ENV: &[(&str, &str)] = &[
    ("PORT", "http.port"),
    ("OPS_PORT", "http.ops_port"),
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

/// The legacy suffixes of duration keys and the humantime unit each stands for.
const LEGACY_DURATION_SUFFIXES: &[(&str, &str)] =
    &[("_ms", "ms"), ("_secs", "s"), ("_minutes", "min"), ("_hours", "h")];

/// A loaded configuration and the warnings about how it was written
/// (deprecated keys), to be logged once logging is set up.
#[derive(Debug)]
pub struct Loaded<T> {
    pub config: T,
    pub warnings: Vec<String>,
}

/// Loads a service's configuration: defaults < file < environment.
///
/// `service` is the binary's name (`ingest-gateway`); its environment prefix is
/// the upper-snake form (`INGEST_GATEWAY`) with `__` between nested keys.
pub fn load<T>(service: &str) -> Result<Loaded<T>, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let file = config_file_from_args().or_else(|| std::env::var_os("CONFIG_FILE").map(PathBuf::from));
    let env: HashMap<String, String> = std::env::vars().collect();
    load_from_with_warnings(service, file.as_deref(), &env)
}

/// [`load`] with the file and environment given explicitly (for tests and
/// tools); deprecation warnings are dropped.
pub fn load_from<T>(service: &str, file: Option<&Path>, env: &HashMap<String, String>) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    load_from_with_warnings(service, file, env).map(|loaded| loaded.config)
}

/// [`load`] with the file and environment given explicitly.
pub fn load_from_with_warnings<T>(
    service: &str,
    file: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<Loaded<T>, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let defaults = config::Config::try_from(&T::default())?;
    // The schema from JSON: the `config` serializer drops empty maps.
    let schema = match serde_json::to_value(T::default()) {
        Ok(serde_json::Value::Object(tree)) => Schema(tree),
        _ => Schema(serde_json::Map::new()),
    };

    let file = match file {
        Some(path) if !path.exists() => return Err(ConfigError::MissingFile { path: path.to_path_buf() }),
        Some(path) => Some(path.to_path_buf()),
        None => Some(PathBuf::from(format!("config/{service}.toml"))).filter(|path| path.exists()),
    };
    let mut given = Vec::new();
    if let Some(path) = &file {
        let collected = config::Source::collect(&config::File::from(path.as_path()))?;
        let origin = format!("in {}", path.display());
        let mut leaves = Vec::new();
        flatten(&collected, "", &mut leaves);
        leaves.sort_by(|a, b| a.0.cmp(&b.0));
        given.extend(leaves.into_iter().map(|(key, value)| Given { key, value, origin: origin.clone() }));
    }
    let file_keys = given.len();

    let prefix = env_prefix(service);
    let prefixed: HashMap<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{prefix}__")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let names: HashMap<String, String> = prefixed
        .keys()
        .map(|name| (name[prefix.len() + 2..].to_lowercase().replace("__", "."), name.clone()))
        .collect();
    let collected = config::Source::collect(&environment(&prefix, prefixed))?;
    let mut env_given: Vec<Given> = collected
        .into_iter()
        .map(|(key, value)| {
            let origin = format!("from {}", names.get(&key).map_or("the environment", String::as_str));
            Given { key, value, origin }
        })
        .collect();
    env_given.sort_by(|a, b| a.origin.cmp(&b.origin));
    given.extend(env_given);

    let warnings = schema.check(&mut given)?;
    let (file_given, env_given) = given.split_at(file_keys);

    // The seed's names, kept to the keys this service has, so that the
    // service's own prefixed variables (added after) still win over them.
    let well_known: HashMap<String, String> = WELL_KNOWN_ENV
        .iter()
        .filter(|(_, key)| schema.knows(key))
        .filter_map(|(name, key)| {
            let value = env.get(*name).filter(|v| !v.is_empty())?;
            Some((format!("WELL_KNOWN__{}", key.replace('.', "__").to_ascii_uppercase()), value.clone()))
        })
        .collect();

    let config = config::Config::builder()
        .add_source(defaults)
        .add_source(Flat::of(file_given))
        .add_source(environment("WELL_KNOWN", well_known))
        .add_source(Flat::of(env_given))
        .build()?
        .try_deserialize()?;
    Ok(Loaded { config, warnings })
}

/// An environment source over `vars`, all starting with `prefix__`.
fn environment(prefix: &str, vars: HashMap<String, String>) -> config::Environment {
    let environment = config::Environment::with_prefix(prefix).prefix_separator("__").separator("__").try_parsing(true);
    // Lists given as one variable, comma-separated (only these keys: other
    // values, such as Kafka's broker list, keep their commas).
    LIST_KEYS
        .iter()
        .fold(environment.list_separator(","), |environment, key| environment.with_list_parse_key(key))
        .source(Some(vars))
}

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &["http.cors_allowed_origins"];

/// One key given by the file or the environment.
#[derive(Debug, Clone)]
struct Given {
    /// Dotted path (`ingest.max_batch_events`).
    key: String,
    value: Value,
    /// Where it came from: `in <file path>` or `from <environment variable>`.
    origin: String,
}

/// The leaves of `table` as dotted keys (an empty table is a leaf).
fn flatten(table: &config::Map<String, Value>, prefix: &str, out: &mut Vec<(String, Value)>) {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match &value.kind {
            ValueKind::Table(inner) if !inner.is_empty() => flatten(inner, &path, out),
            _ => out.push((path, value.clone())),
        }
    }
}

/// Given keys as a source (dotted keys are set as paths).
#[derive(Debug, Clone)]
struct Flat(config::Map<String, Value>);

impl Flat {
    fn of(given: &[Given]) -> Self {
        Self(given.iter().map(|g| (g.key.clone(), g.value.clone())).collect())
    }
}

impl config::Source for Flat {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, Value>, config::ConfigError> {
        Ok(self.0.clone())
    }
}

/// The tree of a service's defaults: every key it has.
struct Schema(serde_json::Map<String, serde_json::Value>);

impl Schema {
    /// Whether `key` is a key of the defaults, or lies under a map that is
    /// empty in the defaults (free-form, like `clickhouse.settings`).
    fn knows(&self, key: &str) -> bool {
        let mut node = &self.0;
        let mut segments = key.split('.').peekable();
        while let Some(segment) = segments.next() {
            let Some(value) = node.get(segment) else { return false };
            match value {
                serde_json::Value::Object(table) if table.is_empty() => return true,
                serde_json::Value::Object(table) => node = table,
                _ => return segments.peek().is_none(),
            }
        }
        true
    }

    /// Whether `key` is a duration: its default is a humantime string.
    fn is_duration(&self, key: &str) -> bool {
        let mut node = &self.0;
        let mut segments = key.split('.').peekable();
        while let Some(segment) = segments.next() {
            let Some(value) = node.get(segment) else { return false };
            match value {
                serde_json::Value::Object(table) => node = table,
                serde_json::Value::String(text) if segments.peek().is_none() => {
                    return humantime_serde::re::humantime::parse_duration(text).is_ok();
                }
                _ => return false,
            }
        }
        false
    }

    /// Every key of the defaults (free-form maps as one key).
    fn keys(&self) -> Vec<String> {
        fn walk(table: &serde_json::Map<String, serde_json::Value>, prefix: &str, out: &mut Vec<String>) {
            for (key, value) in table {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                match value {
                    serde_json::Value::Object(inner) if !inner.is_empty() => walk(inner, &path, out),
                    _ => out.push(path),
                }
            }
        }
        let mut keys = Vec::new();
        walk(&self.0, "", &mut keys);
        keys
    }

    /// The valid key nearest to `key` by edit distance.
    fn nearest(&self, key: &str) -> Option<String> {
        self.keys().into_iter().min_by_key(|candidate| (edit_distance(key, candidate), candidate.clone()))
    }

    /// Rewrites legacy duration keys in `given` and refuses unknown keys;
    /// returns the deprecation warnings.
    fn check(&self, given: &mut [Given]) -> Result<Vec<String>, ConfigError> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let mut new_keys: BTreeMap<String, String> =
            given.iter().filter(|g| self.knows(&g.key)).map(|g| (g.key.clone(), g.origin.clone())).collect();
        for entry in given.iter_mut() {
            if self.knows(&entry.key) {
                continue;
            }
            if let Some((key, value)) = self.legacy(entry) {
                let old = std::mem::replace(&mut entry.key, key.clone());
                if let Some(origin) = new_keys.get(&key) {
                    problems.push(format!(
                        "both `{old}` {} and `{key}` {origin} are given; keep `{key}` only",
                        entry.origin
                    ));
                    continue;
                }
                warnings.push(format!("`{old}` {} is deprecated; write `{key} = \"{value}\"` instead", entry.origin));
                new_keys.insert(key, entry.origin.clone());
                entry.value = Value::new(Some(&entry.origin), ValueKind::String(value));
                continue;
            }
            let mut problem = format!("unknown key `{}` {}", entry.key, entry.origin);
            if let Some(nearest) = self.nearest(&entry.key) {
                problem.push_str(&format!("; did you mean `{nearest}`?"));
            }
            problems.push(problem);
        }
        if problems.is_empty() { Ok(warnings) } else { Err(ConfigError::Keys(problems)) }
    }

    /// The new key and humantime value of a legacy duration key with a whole
    /// number (`produce_timeout_ms = 5000` → `produce_timeout`, `"5000ms"`).
    fn legacy(&self, given: &Given) -> Option<(String, String)> {
        let (key, unit) = LEGACY_DURATION_SUFFIXES
            .iter()
            .find_map(|(suffix, unit)| Some((given.key.strip_suffix(suffix)?, unit)))
            .filter(|(key, _)| self.is_duration(key))?;
        let amount: u64 = match &given.value.kind {
            ValueKind::I64(n) => u64::try_from(*n).ok()?,
            ValueKind::U64(n) => *n,
            ValueKind::I128(n) => u64::try_from(*n).ok()?,
            ValueKind::U128(n) => u64::try_from(*n).ok()?,
            ValueKind::String(text) => text.trim().parse().ok()?,
            _ => return None,
        };
        Some((key.to_owned(), format!("{amount}{unit}")))
    }
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// `Ok` when `problems` is empty: what a `validate` returns.
pub fn problems_to_result(problems: Vec<String>) -> Result<(), Vec<String>> {
    if problems.is_empty() { Ok(()) } else { Err(problems) }
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

/// The API services' `http.drain_delay`: long enough for a load balancer
/// polling `/ready` every few seconds to see the 503.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);

/// The largest `http.drain_delay` accepted.
pub const MAX_DRAIN_DELAY: Duration = Duration::from_secs(60);

/// The HTTP listener every binary has (API port, or ops port for workers).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HttpConfig {
    pub host: String,
    pub port: u16,
    /// The port of `/health`, `/ready` and `/metrics` (same host), so that an
    /// ingress can expose the API port alone. Unset, or equal to `port`: they
    /// are served on `port` with the API (the workers without an API serve
    /// only them). `0` picks a free port (logged as `ops listening`).
    pub ops_port: Option<u16>,
    /// Worker threads of the HTTP server; 0 means one per core.
    pub workers: usize,
    /// How long in-flight requests may take to finish after SIGTERM (`"3s"`;
    /// the server counts whole seconds, so it is rounded up). Counted from
    /// the end of the `drain_delay`.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// After SIGTERM, how long `/ready` answers 503 while both listeners
    /// keep accepting and serving requests, so that load balancers take the
    /// replica out of rotation before its listener closes (`"5s"` for the
    /// API services, [`DEFAULT_DRAIN_DELAY`]; `"0s"` for the workers, whose
    /// port serves only the ops endpoints). Then the server stops as before.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// Budget for each dependency probe of `GET /ready` (`"2s"`).
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// Origins whose web pages may call this service (`crate::cors`): exact
    /// `scheme://host[:port]` origins, or `"*"` for any; empty for none.
    /// From the environment as one comma-separated value.
    pub cors_allowed_origins: Vec<String>,
    /// A client must send a request's head within this time, or gets 408.
    #[serde(with = "humantime_serde")]
    pub request_head_timeout: Duration,
    /// A client must send a request's body within this time of the request
    /// (`crate::deadline`): a body dripping in slower fails its read.
    #[serde(with = "humantime_serde")]
    pub request_body_timeout: Duration,
    /// An idle keep-alive connection is closed after this long.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Open connections per worker thread at most; past it new ones wait to
    /// be accepted (bounds the memory of many slow clients).
    pub max_connections_per_worker: usize,
}

impl HttpConfig {
    /// The CORS policy of `cors_allowed_origins`. The list is checked with
    /// the configuration ([`Self::problems`]); should a caller have skipped
    /// that, an invalid list allows no origin.
    pub fn cors_policy(&self) -> crate::cors::CorsPolicy {
        crate::cors::CorsPolicy::from_config(&self.cors_allowed_origins).unwrap_or(crate::cors::CorsPolicy::None)
    }

    pub fn with_port(port: u16) -> Self {
        Self { port, ..Self::default() }
    }

    /// An API service's listeners: the API on `port`, the ops endpoints on
    /// `ops_port`, and a [`DEFAULT_DRAIN_DELAY`] after SIGTERM.
    pub fn with_ports(port: u16, ops_port: u16) -> Self {
        Self { port, ops_port: Some(ops_port), drain_delay: DEFAULT_DRAIN_DELAY, ..Self::default() }
    }

    /// The ops endpoints' own port, when they have one (not `port`'s listener).
    pub fn separate_ops_port(&self) -> Option<u16> {
        self.ops_port.filter(|ops| *ops != self.port)
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// [`Self::shutdown_timeout`] in whole seconds, rounded up (what the HTTP server takes).
    pub fn shutdown_timeout_secs(&self) -> u64 {
        self.shutdown_timeout.as_secs() + u64::from(self.shutdown_timeout.subsec_nanos() > 0)
    }

    /// The problems of this section, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.probe_timeout.is_zero() {
            problems.push("http.probe_timeout must be above 0".to_owned());
        }
        for (key, value) in
            [("request_head_timeout", self.request_head_timeout), ("request_body_timeout", self.request_body_timeout)]
        {
            if value < Duration::from_millis(100) {
                problems.push(format!("http.{key} must be at least 100ms, got {value:?}"));
            }
        }
        if self.max_connections_per_worker == 0 {
            problems.push("http.max_connections_per_worker must be at least 1".to_owned());
        }
        if self.drain_delay > MAX_DRAIN_DELAY {
            problems.push(format!(
                "http.drain_delay must be at most {}s (the orchestrator kills the process soon after), got {:?}",
                MAX_DRAIN_DELAY.as_secs(),
                self.drain_delay
            ));
        }
        if let Err(cors) = crate::cors::CorsPolicy::from_config(&self.cors_allowed_origins) {
            problems.extend(cors);
        }
        problems
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            ops_port: None,
            workers: 0,
            shutdown_timeout: Duration::from_secs(3),
            drain_delay: Duration::ZERO,
            probe_timeout: Duration::from_secs(2),
            cors_allowed_origins: Vec::new(),
            request_head_timeout: Duration::from_secs(5),
            request_body_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
            max_connections_per_worker: 10_000,
        }
    }
}

/// Who may call a service's API (`crate::auth`) and how fast.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AuthConfig {
    /// Check keys and tokens. Off only when set explicitly, with a warning
    /// logged at start: every route is then open to anyone.
    pub enabled: bool,
    /// How often the key store is read again from PostgreSQL: a revoked key
    /// stops working within this time, a new one works at once (an unknown
    /// key reads the store again, at most once a second).
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Requests per second one key may make to this replica (bursts up to
    /// one second's worth); 0: no limit.
    pub requests_per_second: u32,
    /// Failed authentications one client IP may make per minute before its
    /// further attempts are answered 429; 0: no limit.
    pub failures_per_minute_per_ip: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            refresh_interval: Duration::from_secs(10),
            requests_per_second: 100,
            failures_per_minute_per_ip: 60,
        }
    }
}

impl AuthConfig {
    /// The problems of this section, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(Duration::from_secs(1)..=Duration::from_secs(30)).contains(&self.refresh_interval) {
            problems.push(format!(
                "auth.refresh_interval must be between 1s and 30s (a revoked key must stop working within 30 s), got {:?}",
                self.refresh_interval
            ));
        }
        problems
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
    /// Replicas of every topic this service creates, and the least a topic
    /// it uses must have (checked at start: fewer is a start-up error).
    /// 1 on the local stack's single broker; 3 in production.
    pub replication_factor: i32,
    /// The topics' `min.insync.replicas`: with the producers' `acks=all`,
    /// how many replicas must have an event before Kafka acknowledges it.
    /// Set on the topics this service creates and checked like the
    /// replication factor. 1 locally; 2 in production (so one broker may be
    /// down without refusing writes or losing an acknowledged event).
    pub min_insync_replicas: i32,
    /// librdkafka properties passed to every client of this service
    /// (producers, consumers, admin), after the service's own settings, so
    /// they can override them: e.g. `"security.protocol" = "SASL_SSL"`,
    /// `"ssl.ca.location" = "/etc/kafka/ca.pem"`. Underscores in a name are
    /// read as dots (`KAFKA__PROPERTIES__SECURITY_PROTOCOL=SSL` in the
    /// environment is `security.protocol`); librdkafka's names have none.
    #[serde(deserialize_with = "dotted_properties")]
    pub properties: BTreeMap<String, String>,
}

/// Reads `[kafka.properties]` whether the names arrive flat or nested: the
/// `config` crate splits a key at its dots (`"ssl.ca.location"` becomes
/// `ssl → ca → location`), so nested tables are joined back with dots, and
/// numbers and booleans are taken as their text.
fn dotted_properties<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Node {
        Text(String),
        Integer(i64),
        Float(f64),
        Flag(bool),
        Table(BTreeMap<String, Node>),
    }
    fn flatten(prefix: &str, node: Node, out: &mut BTreeMap<String, String>) {
        let value = match node {
            Node::Text(text) => text,
            Node::Integer(n) => n.to_string(),
            Node::Float(x) => x.to_string(),
            Node::Flag(b) => b.to_string(),
            Node::Table(table) => {
                for (name, child) in table {
                    let path = if prefix.is_empty() { name } else { format!("{prefix}.{name}") };
                    flatten(&path, child, out);
                }
                return;
            }
        };
        out.insert(prefix.to_string(), value);
    }
    let mut out = BTreeMap::new();
    flatten("", Node::Table(BTreeMap::deserialize(deserializer)?), &mut out);
    Ok(out)
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: "analytics.".into(),
            consumer_group: "analytics-stream-processor".into(),
            client_id: "analytics".into(),
            replication_factor: 1,
            min_insync_replicas: 1,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// Problems of the durability settings (start-up validation lists them).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.replication_factor < 1 {
            problems.push(format!("kafka.replication_factor must be at least 1, not {}", self.replication_factor));
        }
        if self.min_insync_replicas < 1 || self.min_insync_replicas > self.replication_factor.max(1) {
            problems.push(format!(
                "kafka.min_insync_replicas ({}) must be between 1 and kafka.replication_factor ({}): a larger one \
                 would refuse every acks=all write",
                self.min_insync_replicas, self.replication_factor
            ));
        }
        problems
    }

    /// [`Self::properties`] with their librdkafka names (underscores as dots).
    pub fn librdkafka_properties(&self) -> impl Iterator<Item = (String, &str)> {
        self.properties.iter().map(|(name, value)| (name.replace('_', "."), value.as_str()))
    }
}

/// Settings every ClickHouse client sends before [`ClickHouseConfig::settings`]
/// (which may override them). They only change statements over `Distributed`
/// tables, so a single server answers exactly as without them; on a cluster
/// (ARCHITECTURE.md, "Cluster mode: where rows live"):
///
/// - `insert_distributed_sync = 1`: an insert into a `Distributed` table
///   returns once every shard stored its rows, so a successful insert is
///   durable there and readable at once, and a retried block reaches the
///   same shards (where replicated block deduplication sees it);
/// - `distributed_product_mode = 'local'`: an `IN (subquery)` over a
///   `Distributed` table inside a distributed query reads each shard's own
///   local table, exact where both sides are sharded by the same key (a
///   view's `(video_id, session_id)` over tables sharded by session); the
///   statements whose sides are not say `GLOBAL IN`;
/// - `load_balancing = 'in_order'`: inserts and reads through a
///   `Distributed` table go to the first replica of each shard that answers
///   (the other only while it does not), so a read sees what an insert just
///   stored there instead of a replica still fetching it;
/// - `max_replica_delay_for_distributed_queries = 2`: a replica more than
///   2 s behind its shard (one that was down and is fetching what it
///   missed) is not read while another is current, so a facts pass or an
///   aggregation run never computes from a replica's partial copy.
pub const CLUSTER_SETTINGS: [(&str, &str); 4] = [
    ("insert_distributed_sync", "1"),
    ("distributed_product_mode", "local"),
    ("load_balancing", "in_order"),
    ("max_replica_delay_for_distributed_queries", "2"),
];

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
    /// PEM file of the CA certificates trusted for an `https://` endpoint,
    /// instead of the system store (a private CA, a managed service's
    /// bundle). The server's certificate must also name the host. Unset:
    /// the system store.
    pub ca_file: Option<PathBuf>,
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
            ca_file: None,
        }
    }
}

impl ClickHouseConfig {
    /// The problems of this section, each naming its key: a CA file that
    /// cannot be read, or one given for a plain `http://` endpoint.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(path) = &self.ca_file {
            if !self.endpoint().starts_with("https://") {
                problems.push(format!(
                    "clickhouse.ca_file is set ({}) but the endpoint {} is not https://",
                    path.display(),
                    self.endpoint()
                ));
            } else if let Err(error) = crate::tls::Roots::from_option(Some(path), "clickhouse.ca_file").load() {
                problems.push(error.to_string());
            }
        }
        problems
    }

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
    ///
    /// An `https://` endpoint is reached over TLS (rustls), trusting
    /// [`Self::ca_file`] or the system store. When those certificates cannot
    /// be read, the error is logged and the client trusts no CA, so every
    /// request fails (the probe reports it) instead of going out unchecked;
    /// [`Self::problems`] reports it at start.
    pub fn server_client(&self) -> clickhouse::Client {
        let endpoint = self.endpoint();
        let base = if endpoint.starts_with("https://") {
            let roots = crate::tls::Roots::from_option(self.ca_file.as_deref(), "clickhouse.ca_file");
            crate::tls::clickhouse::client(&roots).unwrap_or_else(|error| {
                tracing::error!(error = %error, "cannot set up TLS for clickhouse; every request will fail");
                crate::tls::clickhouse::client_trusting_nothing()
            })
        } else {
            clickhouse::Client::default()
        };
        let client = base.with_url(endpoint).with_user(&self.user).with_password(&self.password).with_validation(false);
        let defaults = CLUSTER_SETTINGS.iter().map(|(name, value)| (*name, *value));
        let configured = self.settings.iter().map(|(name, value)| (name.as_str(), value.as_str()));
        defaults.chain(configured).fold(client, |client, (name, value)| client.with_setting(name, value))
    }
}

/// PostgreSQL (metadata: video catalog, job runs, API keys).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PostgresConfig {
    pub url: String,
    /// Connections the pool holds at most.
    pub pool_size: usize,
    /// Budget of connecting, and of waiting for a pooled connection (`"3s"`).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// PEM file of the CA certificates that sign the server's certificate,
    /// for `sslmode=verify-ca`/`verify-full` (and `require`/`prefer`, which
    /// then check the chain as libpq does with a root certificate).
    /// `sslrootcert` in the URL wins; unset: the system store.
    pub ca_file: Option<PathBuf>,
}

impl PostgresConfig {
    /// The problems of this section, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.pool_size == 0 {
            problems.push("postgres.pool_size must be at least 1".to_owned());
        }
        if let Err(error) = crate::tls::postgres::settings(&self.url, self.ca_file.as_deref()) {
            problems.push(format!("postgres.url: {error:#}"));
        }
        problems
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://analytics:analytics@127.0.0.1:5432/analytics".into(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(3),
            ca_file: None,
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
    /// PEM file of the CA certificates trusted for a `rediss://` URL (TLS),
    /// instead of the system store. The server's certificate must name the
    /// host. Unset: the system store.
    pub ca_file: Option<PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self { url: "redis://127.0.0.1:6379".into(), key_prefix: "analytics:".into(), ca_file: None }
    }
}

impl RedisConfig {
    /// Whether the URL asks for TLS (`rediss://`, `valkeys://`).
    pub fn tls(&self) -> bool {
        let scheme = self.url.split("://").next().unwrap_or_default();
        scheme.starts_with("rediss") || scheme.starts_with("valkeys")
    }

    /// The problems of this section, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(path) = &self.ca_file {
            if !self.tls() {
                problems
                    .push(format!("redis.ca_file is set ({}) but redis.url is not rediss:// (TLS)", path.display()));
            } else if let Err(error) = crate::tls::Roots::from_option(Some(path), "redis.ca_file").load() {
                problems.push(error.to_string());
            }
        }
        problems
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
    fn the_ops_port_is_separate_only_when_set_and_different_from_the_api_port() {
        let cfg: Sample = load_from("sample-svc", None, &env_of(&[("PORT", "3001"), ("OPS_PORT", "9103")])).unwrap();
        assert_eq!((cfg.http.port, cfg.http.ops_port), (3001, Some(9103)));
        assert_eq!(cfg.http.separate_ops_port(), Some(9103));
        let cfg: Sample = load_from("sample-svc", None, &env_of(&[("PORT", "0"), ("OPS_PORT", "0")])).unwrap();
        assert_eq!(cfg.http.separate_ops_port(), None, "equal ports: one listener");
        assert_eq!(HttpConfig::with_port(3001).separate_ops_port(), None, "unset: one listener");
        let cfg: Sample = load_from("sample-svc", None, &env_of(&[("SAMPLE_SVC__HTTP__OPS_PORT", "9200")])).unwrap();
        assert_eq!(cfg.http.ops_port, Some(9200));
    }

    #[test]
    fn allowed_origins_come_as_one_comma_separated_variable_and_other_commas_stay() {
        let cfg: Sample = load_from(
            "sample-svc",
            None,
            &env_of(&[
                ("SAMPLE_SVC__HTTP__CORS_ALLOWED_ORIGINS", "https://a.example,https://b.example:8443"),
                ("KAFKA_BROKERS", "k1:9092,k2:9092"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.http.cors_allowed_origins, ["https://a.example", "https://b.example:8443"]);
        assert_eq!(cfg.kafka.brokers, "k1:9092,k2:9092");
        let bad = HttpConfig { cors_allowed_origins: vec!["a.example".into()], ..HttpConfig::default() };
        assert!(bad.problems().iter().any(|p| p.contains("cors_allowed_origins")), "{:?}", bad.problems());
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

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Timed {
        http: HttpConfig,
        ingest: Ingest,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Ingest {
        max_batch_events: usize,
        #[serde(with = "humantime_serde")]
        produce_timeout: Duration,
    }

    impl Default for Ingest {
        fn default() -> Self {
            Self { max_batch_events: 1000, produce_timeout: Duration::from_secs(5) }
        }
    }

    fn file_with(contents: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("svc-kit-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("timed.toml");
        std::fs::write(&path, contents).unwrap();
        (dir, path)
    }

    fn keys_error(err: ConfigError) -> Vec<String> {
        match err {
            ConfigError::Keys(problems) => problems,
            other => panic!("not a key error: {other}"),
        }
    }

    #[test]
    fn unknown_keys_in_the_file_are_all_refused_with_the_nearest_key() {
        let (dir, path) = file_with("[ingest]\nmax_batch_event = 5\n[htp]\nport = 1\n[http]\nport = 2\n");
        let problems = keys_error(load_from::<Timed>("timed-svc", Some(&path), &env_of(&[])).unwrap_err());
        std::fs::remove_dir_all(dir).unwrap();
        let mut problems = problems;
        problems.sort();
        assert_eq!(
            problems,
            [
                format!("unknown key `htp.port` in {}; did you mean `http.port`?", path.display()),
                format!(
                    "unknown key `ingest.max_batch_event` in {}; did you mean `ingest.max_batch_events`?",
                    path.display()
                ),
            ]
        );
    }

    #[test]
    fn unknown_keys_in_the_prefixed_environment_name_the_variable() {
        let err =
            load_from::<Timed>("timed-svc", None, &env_of(&[("TIMED_SVC__INGEST__PRODUCE_TIMOUT", "1s")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown key `ingest.produce_timout` from TIMED_SVC__INGEST__PRODUCE_TIMOUT; \
             did you mean `ingest.produce_timeout`?"
        );
    }

    #[test]
    fn seed_names_of_sections_a_service_lacks_are_ignored() {
        let env = env_of(&[("CLICKHOUSE_HOST", "clickhouse"), ("REDIS_URL", "redis://r:6379"), ("PORT", "4000")]);
        let cfg: Timed = load_from("timed-svc", None, &env).unwrap();
        assert_eq!(cfg.http.port, 4000);
    }

    #[test]
    fn free_form_maps_take_any_key_but_fixed_sections_do_not() {
        let (dir, path) = file_with("[clickhouse.settings]\nlog_queries = \"1\"\n[clickhouse]\nhots = \"x\"\n");
        let problems = keys_error(load_from::<Sample>("sample-svc", Some(&path), &env_of(&[])).unwrap_err());
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("unknown key `clickhouse.hots`"), "{problems:?}");
        assert!(problems[0].ends_with("did you mean `clickhouse.host`?"), "{problems:?}");
    }

    #[test]
    fn durations_are_humantime_strings() {
        let (dir, path) = file_with("[ingest]\nproduce_timeout = \"1m 30s\"\n[http]\nprobe_timeout = \"250ms\"\n");
        let cfg: Timed = load_from("timed-svc", Some(&path), &env_of(&[])).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(cfg.ingest.produce_timeout, Duration::from_secs(90));
        assert_eq!(cfg.http.probe_timeout, Duration::from_millis(250));
        let err = load_from::<Timed>("timed-svc", None, &env_of(&[("TIMED_SVC__INGEST__PRODUCE_TIMEOUT", "500")]))
            .unwrap_err();
        assert!(err.to_string().contains("produce_timeout"), "{err}");
    }

    #[test]
    fn legacy_duration_keys_are_read_with_a_warning() {
        let (dir, path) = file_with("[ingest]\nproduce_timeout_ms = 1500\n[http]\nshutdown_timeout_secs = 7\n");
        let env = env_of(&[("TIMED_SVC__HTTP__PROBE_TIMEOUT_MS", "300")]);
        let loaded = load_from_with_warnings::<Timed>("timed-svc", Some(&path), &env).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(loaded.config.ingest.produce_timeout, Duration::from_millis(1500));
        assert_eq!(loaded.config.http.shutdown_timeout, Duration::from_secs(7));
        assert_eq!(loaded.config.http.probe_timeout, Duration::from_millis(300));
        let mut warnings = loaded.warnings;
        warnings.sort();
        assert_eq!(
            warnings,
            [
                "`http.probe_timeout_ms` from TIMED_SVC__HTTP__PROBE_TIMEOUT_MS is deprecated; write \
                 `http.probe_timeout = \"300ms\"` instead"
                    .to_owned(),
                format!(
                    "`http.shutdown_timeout_secs` in {} is deprecated; write `http.shutdown_timeout = \"7s\"` instead",
                    path.display()
                ),
                format!(
                    "`ingest.produce_timeout_ms` in {} is deprecated; write `ingest.produce_timeout = \"1500ms\"` \
                     instead",
                    path.display()
                ),
            ]
        );
    }

    #[test]
    fn legacy_suffixes_apply_to_duration_keys_only() {
        let err = load_from::<Timed>("timed-svc", None, &env_of(&[("TIMED_SVC__INGEST__MAX_BATCH_EVENTS_MS", "3")]))
            .unwrap_err();
        assert!(err.to_string().starts_with("unknown key `ingest.max_batch_events_ms`"), "{err}");
    }

    #[test]
    fn a_legacy_key_and_its_new_name_together_are_refused_naming_both() {
        let (dir, path) = file_with("[ingest]\nproduce_timeout = \"2s\"\n");
        let env = env_of(&[("TIMED_SVC__INGEST__PRODUCE_TIMEOUT_MS", "1500")]);
        let problems = keys_error(load_from::<Timed>("timed-svc", Some(&path), &env).unwrap_err());
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(
            problems,
            [format!(
                "both `ingest.produce_timeout_ms` from TIMED_SVC__INGEST__PRODUCE_TIMEOUT_MS and \
                 `ingest.produce_timeout` in {} are given; keep `ingest.produce_timeout` only",
                path.display()
            )]
        );
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn env_prefix_is_upper_snake() {
        assert_eq!(env_prefix("ingest-gateway"), "INGEST_GATEWAY");
    }
}
