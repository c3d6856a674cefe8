//! API keys and tokens: scopes, their rows in PostgreSQL, the cached key
//! store every service checks requests against, and the middleware.
//!
//! - A key is a random secret (`ak_` + 48 hex digits, 192 bits) shown once at
//!   creation; PostgreSQL keeps only its SHA-256 (`api_keys`, migration
//!   `0003`). Its `key_id` (the secret's first 11 characters) names it in
//!   listings and logs.
//! - Scopes: `ingest` (send events: public keys built into players), `read`
//!   (query API and realtime hub), `admin` (catalog writes, key management;
//!   includes `read`).
//! - [`KeyStore`] holds every unrevoked key in memory, read again every
//!   `auth.refresh_interval` (≤ 30 s, so a revoked key stops working within
//!   it) and on an unknown key, reads at least a second apart (so a new key
//!   works at once, its first request waiting at most a second). While PostgreSQL is down the last copy keeps serving.
//! - [`Guard`] is the middleware: it finds the credential where the service
//!   accepts it ([`Credential`]), answers 401 (none or unknown), 403 (wrong
//!   scope, or an `Origin` the key does not allow), 429 (over the key's
//!   request rate, or too many failures from one IP) or 503 (no key store
//!   yet), and hands the [`Caller`] to the handlers.

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    rc::Rc,
    str::FromStr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{
    Error, HttpMessage as _, HttpRequest, HttpResponse,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{Method, header},
    middleware::Next,
};
use deadpool_postgres::Pool;
use sha2::{Digest as _, Sha256};

use crate::{
    config::AuthConfig,
    cors::CorsPolicy,
    ops::{Probe, ProbeFuture},
    rate::{KeyedLimit, Limited},
    shutdown::Shutdown,
};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Ingest,
    Read,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Read, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    /// Whether a key with this scope may do what `needed` allows (`admin`
    /// includes `read`).
    pub fn grants(self, needed: Scope) -> bool {
        self == needed || (self == Scope::Admin && needed == Scope::Read)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope {s:?}; the scopes are ingest, read and admin"))
    }
}

/// A key as the services know it (never its secret).
#[derive(Debug, Clone)]
pub struct Key {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Origins a browser may send it from (any when the key lists none).
    pub origins: CorsPolicy,
}

impl Key {
    pub fn grants(&self, needed: Scope) -> bool {
        self.scopes.iter().any(|scope| scope.grants(needed))
    }

    /// The caller of every request while authentication is off.
    fn anonymous() -> Self {
        Self { id: "anonymous".into(), name: "anonymous".into(), scopes: Scope::ALL.to_vec(), origins: CorsPolicy::Any }
    }
}

/// The authenticated caller of a request, in its extensions.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Key>);

impl Caller {
    /// The caller [`Guard`] put on `req`, if the route needed one.
    pub fn of(req: &HttpRequest) -> Option<Arc<Key>> {
        req.extensions().get::<Caller>().map(|caller| caller.0.clone())
    }
}

/// The SHA-256 of a secret, in hex: what `api_keys.secret_sha256` holds.
pub fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

const SECRET_PREFIX: &str = "ak_";
const KEY_ID_LEN: usize = SECRET_PREFIX.len() + 8;

/// A new random secret: `ak_` + 48 hex digits from the OS's random source.
pub fn generate_secret() -> String {
    let random: Vec<u8> =
        uuid::Uuid::new_v4().as_bytes().iter().chain(uuid::Uuid::new_v4().as_bytes()).copied().collect();
    // A v4 UUID has 122 random bits; bytes 6 and 8 hold its version and
    // variant, so only the other 14 bytes of each are taken.
    let bytes: Vec<u8> = random.iter().enumerate().filter(|(i, _)| !matches!(i % 16, 6 | 8)).map(|(_, b)| *b).collect();
    let hex: String = bytes[..24].iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{SECRET_PREFIX}{hex}")
}

/// A key just created: the secret is shown once and stored nowhere.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: String,
    pub secret: String,
}

/// A key as listed (`cargo xtask keys list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub origins: Vec<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// Why a key could not be created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// Stores a new key with `scopes` (at least one) and allowed `origins`
/// (exact `scheme://host[:port]`, or none for any).
pub async fn create_key(
    client: &tokio_postgres::Client,
    name: &str,
    scopes: &[Scope],
    origins: &[String],
) -> Result<NewKey, KeyError> {
    if name.trim().is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(KeyError::Invalid("a key's name must be 1 to 100 printable characters".into()));
    }
    if scopes.is_empty() {
        return Err(KeyError::Invalid("a key needs at least one scope (ingest, read, admin)".into()));
    }
    if let Err(problems) = CorsPolicy::from_config(origins) {
        return Err(KeyError::Invalid(problems.join("; ").replace("http.cors_allowed_origins", "origin")));
    }
    let secret = generate_secret();
    let id = secret[..KEY_ID_LEN].to_owned();
    let mut scopes: Vec<&str> = scopes.iter().map(|scope| scope.as_str()).collect();
    scopes.sort_unstable();
    scopes.dedup();
    client
        .execute(
            "INSERT INTO api_keys (key_id, name, scopes, secret_sha256, allowed_origins) VALUES ($1, $2, $3, $4, $5)",
            &[&id, &name, &scopes, &secret_hash(&secret), &origins],
        )
        .await?;
    Ok(NewKey { id, secret })
}

/// Every key, newest first (revoked ones too).
pub async fn list_keys(client: &tokio_postgres::Client) -> Result<Vec<KeyInfo>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT key_id, name, scopes, allowed_origins, \
                    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                    to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             FROM api_keys ORDER BY created_at DESC, key_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| KeyInfo {
            id: row.get(0),
            name: row.get(1),
            scopes: row.get(2),
            origins: row.get(3),
            created_at: row.get(4),
            revoked_at: row.get(5),
        })
        .collect())
}

/// Revokes the unrevoked keys whose id or name is `id_or_name`; returns how many.
pub async fn revoke_key(client: &tokio_postgres::Client, id_or_name: &str) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL AND (key_id = $1 OR name = $1)",
            &[&id_or_name],
        )
        .await
}

/// Whether `secret` is a key the store knows and has not revoked (for
/// tools that keep keys in a file, like `cargo xtask up`).
pub async fn is_active(client: &tokio_postgres::Client, secret: &str) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt("SELECT 1 FROM api_keys WHERE secret_sha256 = $1 AND revoked_at IS NULL", &[&secret_hash(secret)])
        .await?;
    Ok(row.is_some())
}

/// An unknown key reads the store again at most this often.
const MISS_RELOAD_EVERY: Duration = Duration::from_secs(1);

/// Every unrevoked key by the hash of its secret, read from PostgreSQL and
/// kept in memory (see the module documentation).
pub struct KeyStore {
    pool: Pool,
    keys: RwLock<Arc<HashMap<String, Arc<Key>>>>,
    loaded: AtomicBool,
    /// When the last read began; an unknown key reads again only after
    /// [`MISS_RELOAD_EVERY`].
    last_read: tokio::sync::Mutex<Option<Instant>>,
}

/// Why a request has no caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this route needs a key; send it as {0}")]
    Missing(&'static str),
    #[error("the key is not valid (unknown or revoked)")]
    Unknown,
    #[error("the key does not have the {0} scope this route needs")]
    Forbidden(Scope),
    #[error("the key may not be used from origin {0:?}")]
    OriginNotAllowed(String),
    #[error("keys cannot be checked yet: the key store has not been read from postgres")]
    Unavailable,
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing(_) => "missing_credentials",
            AuthError::Unknown => "invalid_credentials",
            AuthError::Forbidden(_) => "insufficient_scope",
            AuthError::OriginNotAllowed(_) => "origin_not_allowed",
            AuthError::Unavailable => "auth_unavailable",
        }
    }

    /// `{"error": code, "message": …}` with 401, 403 or 503 (and
    /// `WWW-Authenticate` on 401).
    pub fn response(&self) -> HttpResponse {
        let body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        match self {
            AuthError::Missing(_) | AuthError::Unknown => HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"analytics\""))
                .json(body),
            AuthError::Forbidden(_) | AuthError::OriginNotAllowed(_) => HttpResponse::Forbidden().json(body),
            AuthError::Unavailable => {
                HttpResponse::ServiceUnavailable().insert_header((header::RETRY_AFTER, "1")).json(body)
            }
        }
    }
}

impl KeyStore {
    /// An empty store over `pool`; [`Self::reload`] or [`Self::spawn_refresh`] fills it.
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            keys: RwLock::new(Arc::new(HashMap::new())),
            loaded: AtomicBool::new(false),
            last_read: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether the store has been read at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::SeqCst)
    }

    /// Reads every unrevoked key; on failure the previous copy stays.
    pub async fn reload(&self) -> Result<usize, String> {
        *self.last_read.lock().await = Some(Instant::now());
        self.read().await
    }

    async fn read(&self) -> Result<usize, String> {
        let client = self.pool.get().await.map_err(|e| e.to_string())?;
        let rows = client
            .query(
                "SELECT key_id, name, scopes, allowed_origins, secret_sha256 FROM api_keys WHERE revoked_at IS NULL",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut keys = HashMap::with_capacity(rows.len());
        for row in rows {
            let id: String = row.get(0);
            let scopes: Vec<String> = row.get(2);
            let origins: Vec<String> = row.get(3);
            let origins = if origins.is_empty() {
                CorsPolicy::Any
            } else {
                match CorsPolicy::from_config(&origins) {
                    Ok(policy) => policy,
                    Err(problems) => {
                        tracing::warn!(key_id = %id, error = %problems.join("; "), "key skipped: invalid allowed origins");
                        continue;
                    }
                }
            };
            let key = Key {
                id,
                name: row.get(1),
                scopes: scopes.iter().filter_map(|scope| scope.parse().ok()).collect(),
                origins,
            };
            keys.insert(row.get::<_, String>(4), Arc::new(key));
        }
        let count = keys.len();
        *self.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(keys);
        if !self.loaded.swap(true, Ordering::SeqCst) {
            tracing::info!(keys = count, "key store loaded");
        }
        metrics::gauge!("analytics_service_auth_keys").set(count as f64);
        Ok(count)
    }

    fn lookup(&self, hash: &str) -> Option<Arc<Key>> {
        self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(hash).cloned()
    }

    /// The key whose secret is `secret`. An unknown one reads the store
    /// again first (reads at least a second apart, one read for every
    /// request waiting meanwhile), so a key created a moment ago works, and
    /// guessing keys costs a second per attempt.
    pub async fn authenticate(&self, secret: &str) -> Result<Arc<Key>, AuthError> {
        let hash = secret_hash(secret);
        if let Some(key) = self.lookup(&hash) {
            return Ok(key);
        }
        if !secret.starts_with(SECRET_PREFIX) || secret.len() != KEY_ID_LEN + 40 {
            return Err(if self.is_loaded() { AuthError::Unknown } else { AuthError::Unavailable });
        }
        let arrived = Instant::now();
        {
            let mut last_read = self.last_read.lock().await;
            // A read that began after this request arrived already knows
            // every key created before it; otherwise wait out the spacing
            // (the lock queues the other misses meanwhile) and read.
            if last_read.is_none_or(|at| at < arrived) {
                if let Some(at) = *last_read {
                    tokio::time::sleep_until((at + MISS_RELOAD_EVERY).into()).await;
                }
                *last_read = Some(Instant::now());
                if let Err(error) = self.read().await {
                    tracing::warn!(error = %error, "key store read failed");
                }
            }
        }
        match self.lookup(&hash) {
            Some(key) => Ok(key),
            None if self.is_loaded() => Err(AuthError::Unknown),
            None => Err(AuthError::Unavailable),
        }
    }

    /// Reads the store every `interval` until `shutdown` (a failure is
    /// logged once per failure spell and counted).
    pub fn spawn_refresh(self: &Arc<Self>, interval: Duration, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                match store.reload().await {
                    Ok(_) if failing => {
                        failing = false;
                        tracing::info!("key store read again");
                    }
                    Ok(_) => {}
                    Err(error) => {
                        metrics::counter!("analytics_service_auth_refresh_failures_total").increment(1);
                        if !failing {
                            failing = true;
                            tracing::warn!(error = %error, "key store read failed; keys read before keep working");
                        }
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = shutdown.wait() => return,
                }
            }
        })
    }
}

/// Readiness of the key store: ready once read (later PostgreSQL outages
/// do not make a service unready: the copy in memory serves).
pub struct KeyStoreProbe(pub Arc<KeyStore>);

impl Probe for KeyStoreProbe {
    fn name(&self) -> &'static str {
        "api_keys"
    }

    fn check(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            if self.0.is_loaded() { Ok(()) } else { Err("the key store has not been read from postgres yet".into()) }
        })
    }
}

/// Where a service accepts the credential, tried in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `X-API-Key: <key>`.
    ApiKeyHeader,
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// `?<name>=<key>` (for `sendBeacon` and WebSocket clients, which cannot set headers).
    Query(&'static str),
}

impl Credential {
    fn describe(sources: &[Credential]) -> &'static str {
        match sources {
            [Credential::Bearer] => "Authorization: Bearer <key>",
            [Credential::ApiKeyHeader, Credential::Bearer, Credential::Query("api_key")] => {
                "X-API-Key: <key>, Authorization: Bearer <key> or ?api_key=<key>"
            }
            [Credential::Query("token"), Credential::Bearer] => "?token=<key> or Authorization: Bearer <key>",
            _ => "a key",
        }
    }

    fn find(self, req: &ServiceRequest) -> Option<String> {
        match self {
            Credential::ApiKeyHeader => {
                req.headers().get("x-api-key").and_then(|value| value.to_str().ok()).map(|s| s.trim().to_owned())
            }
            Credential::Bearer => req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim().to_owned()),
            Credential::Query(name) => req.query_string().split('&').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                // Keys are plain ASCII: no percent-decoding is needed.
                (key == name).then(|| value.to_owned())
            }),
        }
        .filter(|secret| !secret.is_empty())
    }
}

/// OpenAPI: the `securitySchemes` of `sources` (for `components`).
pub fn openapi_security_schemes(sources: &[Credential]) -> serde_json::Value {
    let mut schemes = serde_json::Map::new();
    for source in sources {
        let (name, scheme) = match source {
            Credential::ApiKeyHeader => {
                ("api_key_header", serde_json::json!({"type": "apiKey", "in": "header", "name": "X-API-Key"}))
            }
            Credential::Bearer => ("bearer", serde_json::json!({"type": "http", "scheme": "bearer"})),
            Credential::Query(param) => {
                ("api_key_query", serde_json::json!({"type": "apiKey", "in": "query", "name": param}))
            }
        };
        schemes.insert(name.to_owned(), scheme);
    }
    serde_json::Value::Object(schemes)
}

/// OpenAPI: an operation's `security` (any one of `sources`).
pub fn openapi_security(sources: &[Credential]) -> serde_json::Value {
    let schemes = openapi_security_schemes(sources);
    let schemes = schemes.as_object().map(|map| map.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    serde_json::Value::Array(schemes.into_iter().map(|name| serde_json::json!({ name: [] })).collect())
}

/// OpenAPI: the answers [`Guard`] may give a protected operation (401, 403,
/// 429, 503), each with `schema` as its JSON body.
pub fn openapi_refusals(schema: &serde_json::Value) -> serde_json::Value {
    let content = serde_json::json!({"application/json": {"schema": schema}});
    let retry_after = serde_json::json!({"Retry-After": {"schema": {"type": "integer"}}});
    serde_json::json!({
        "401": {"description": "no key, or an unknown or revoked one", "content": content},
        "403": {"description": "the key lacks the scope, or may not be used from this origin", "content": content},
        "429": {"description": "over a rate limit; retry after `Retry-After` seconds", "headers": retry_after, "content": content},
        "503": {"description": "unavailable for now; retry after `Retry-After` seconds", "headers": retry_after, "content": content},
    })
}

/// Which scope a request needs (`None`: open to anyone).
pub type Rules = fn(&Method, &str) -> Option<Scope>;

/// The authentication and request-rate middleware of one service.
pub struct Guard {
    /// `None`: authentication is off (every request's caller is anonymous).
    store: Option<Arc<KeyStore>>,
    sources: &'static [Credential],
    rules: Rules,
    requests: KeyedLimit<String>,
    failures: KeyedLimit<IpAddr>,
    anonymous: Arc<Key>,
}

impl Guard {
    /// The guard of a service whose keys live in `postgres`: when
    /// `config.enabled`, a [`KeyStore`] refreshed every
    /// `config.refresh_interval` until `shutdown`, and its readiness probe.
    pub fn start(
        config: &AuthConfig,
        postgres: &crate::PostgresConfig,
        shutdown: &Shutdown,
        sources: &'static [Credential],
        rules: Rules,
    ) -> anyhow::Result<(Arc<Self>, Option<KeyStoreProbe>)> {
        let store = if config.enabled {
            let store = Arc::new(KeyStore::new(crate::deps::postgres::pool(postgres)?));
            store.spawn_refresh(config.refresh_interval, shutdown.clone());
            Some(store)
        } else {
            None
        };
        let probe = store.clone().map(KeyStoreProbe);
        Ok((Arc::new(Self::new(config, store, sources, rules)), probe))
    }

    /// A guard checking `rules` against keys from `store`, or letting every
    /// request through when `config.enabled` is false (logged as a warning).
    pub fn new(
        config: &AuthConfig,
        store: Option<Arc<KeyStore>>,
        sources: &'static [Credential],
        rules: Rules,
    ) -> Self {
        let store = if config.enabled {
            store
        } else {
            tracing::warn!("authentication is off (auth.enabled = false): every route is open to anyone");
            None
        };
        let rate = config.requests_per_second;
        Self {
            store,
            sources,
            rules,
            requests: KeyedLimit::per_second("requests_per_second", rate, rate),
            failures: KeyedLimit::per_minute("auth_failures_per_minute", config.failures_per_minute_per_ip),
            anonymous: Arc::new(Key::anonymous()),
        }
    }

    /// The caller of `req`, or the answer refusing it.
    async fn admit(&self, req: &ServiceRequest, needed: Scope) -> Result<Arc<Key>, HttpResponse> {
        let Some(store) = &self.store else {
            return Ok(self.anonymous.clone());
        };
        let mut found = self.sources.iter().filter_map(|source| source.find(req));
        let first = found.next();
        // Two places holding different keys: refused rather than guessing
        // which one the client meant.
        let conflicting = first.as_ref().is_some_and(|first| found.any(|other| &other != first));
        let outcome = match first {
            None => Err(AuthError::Missing(Credential::describe(self.sources))),
            Some(_) if conflicting => Err(AuthError::Unknown),
            Some(secret) => store.authenticate(&secret).await,
        };
        let key = outcome.and_then(|key| {
            if !key.grants(needed) {
                return Err(AuthError::Forbidden(needed));
            }
            match req.headers().get(header::ORIGIN).and_then(|origin| origin.to_str().ok()) {
                Some(origin) if !key.origins.allows(origin) => Err(AuthError::OriginNotAllowed(origin.to_owned())),
                _ => Ok(key),
            }
        });
        match key {
            Ok(key) => Ok(key),
            Err(error) => {
                metrics::counter!("analytics_service_auth_failures_total", "reason" => error.code()).increment(1);
                if matches!(error, AuthError::Missing(_) | AuthError::Unknown)
                    && let Some(ip) = req.peer_addr().map(|addr| addr.ip())
                    && let Err(limited) = self.failures.check(&ip, 1, "by_ip")
                {
                    return Err(limited.response());
                }
                Err(error.response())
            }
        }
    }

    /// Takes one request of `key`'s rate.
    fn take_request(&self, key: &Key) -> Result<(), Limited> {
        self.requests.check(&key.id, 1, &key.name)
    }
}

/// The middleware of [`Guard`] (`actix_web::middleware::from_fn`).
/// Preflight requests (`OPTIONS`) pass: browsers send no credential with them.
pub async fn middleware(
    guard: Rc<Arc<Guard>>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let needed = if req.method() == Method::OPTIONS { None } else { (guard.rules)(req.method(), req.path()) };
    if let Some(needed) = needed {
        let key = match guard.admit(&req, needed).await {
            Ok(key) => key,
            Err(response) => return Ok(req.into_response(response)),
        };
        if let Err(limited) = guard.take_request(&key) {
            return Ok(req.into_response(limited.response()));
        }
        req.extensions_mut().insert(Caller(key));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_includes_read_and_nothing_else_includes_another_scope() {
        assert!(Scope::Admin.grants(Scope::Read));
        assert!(Scope::Admin.grants(Scope::Admin));
        assert!(!Scope::Admin.grants(Scope::Ingest));
        assert!(!Scope::Read.grants(Scope::Admin));
        assert!(!Scope::Ingest.grants(Scope::Read));
        assert!(!Scope::Read.grants(Scope::Ingest));
        assert_eq!("read".parse::<Scope>().unwrap(), Scope::Read);
        assert!("root".parse::<Scope>().unwrap_err().contains("ingest, read and admin"));
    }

    #[test]
    fn secrets_are_random_hex_with_a_prefix_and_hash_to_sha256_hex() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert_eq!(a.len(), KEY_ID_LEN + 40);
        assert!(a.starts_with("ak_") && a[3..].chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_eq!(
            secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "sha-256 test vector"
        );
    }
}
