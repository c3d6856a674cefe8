//! Operational endpoints every binary serves: `GET /health`, `GET /ready`, `GET /metrics`.
//!
//! - `/health` is liveness: 200 while the process can answer at all.
//! - `/ready` runs every dependency probe concurrently, each under a timeout,
//!   and answers 503 when a required one fails or once shutdown has begun (so
//!   a load balancer stops routing before the process exits). An optional
//!   probe (a cache the service can do without) is reported but never makes
//!   it 503.
//! - After the shutdown signal, [`serve`] keeps serving for `http.drain_delay`
//!   with `/ready` at 503 (the drain), then stops the listeners gracefully.
//! - `/metrics` is the Prometheus text exposition of the process-wide recorder.

use std::{
    collections::BTreeMap,
    future::Future,
    net::TcpListener,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{App, HttpResponse, HttpServer, web};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;

use utoipa::openapi::{ContentBuilder, HttpMethod, ObjectBuilder, ResponseBuilder, Type, path::OperationBuilder};

use crate::{config::HttpConfig, routes::Routes, shutdown::Shutdown};

/// The future a [`Probe`] returns: `Err` carries a short reason.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// A readiness check of one dependency (a real request, not a config look-up).
pub trait Probe: Send + Sync {
    /// Bounded, stable name used in JSON and as a metric label (`kafka`, `clickhouse`).
    fn name(&self) -> &'static str;
    fn check(&self) -> ProbeFuture<'_>;
}

impl<P: Probe + ?Sized> Probe for Box<P> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn check(&self) -> ProbeFuture<'_> {
        (**self).check()
    }
}

/// Readiness state of one service: its probes and whether it is shutting down.
pub struct Readiness {
    service: &'static str,
    probes: Vec<Box<dyn Probe>>,
    /// Whether each probe's failure makes the service not ready.
    required: Vec<bool>,
    /// Whether each probe's last check passed (a failure is logged when it starts).
    passing: Vec<AtomicBool>,
    timeout: Duration,
    shutting_down: AtomicBool,
    started: Instant,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    NotReady,
    ShuttingDown,
}

/// The body of `GET /ready`.
#[derive(Debug, Clone, Serialize)]
pub struct ReadyReport {
    pub status: ReadyStatus,
    pub service: &'static str,
    pub checks: BTreeMap<&'static str, CheckResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub ok: bool,
    pub latency_ms: u64,
    /// The dependency is optional: its failure is reported here (and in
    /// `analytics_service_dependency_up`) but does not make `/ready` 503.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    /// Why the probe failed: logged (once per failure spell), never sent, so
    /// `/ready` does not show addresses, user names or driver messages to
    /// whoever can reach it.
    #[serde(skip)]
    pub error: Option<String>,
}

impl Readiness {
    /// The budget of each probe.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn new(service: &'static str, timeout: Duration) -> Self {
        Self {
            service,
            probes: Vec::new(),
            required: Vec::new(),
            passing: Vec::new(),
            timeout,
            shutting_down: AtomicBool::new(false),
            started: Instant::now(),
        }
    }

    pub fn with_probe(mut self, probe: impl Probe + 'static) -> Self {
        self.probes.push(Box::new(probe));
        self.required.push(true);
        self.passing.push(AtomicBool::new(true));
        self
    }

    /// A probe of a dependency the service answers without (a cache): run and
    /// reported like the others, but its failure leaves the service ready.
    pub fn with_optional_probe(mut self, probe: impl Probe + 'static) -> Self {
        self = self.with_probe(probe);
        if let Some(required) = self.required.last_mut() {
            *required = false;
        }
        self
    }

    /// [`Self::with_probe`] for each of `probes` (an `Option` gives none or one).
    pub fn with_probes<P: Probe + 'static>(self, probes: impl IntoIterator<Item = P>) -> Self {
        probes.into_iter().fold(self, Self::with_probe)
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    /// From now on `/ready` answers 503.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Runs every probe concurrently, each bounded by the timeout.
    pub async fn check(&self) -> ReadyReport {
        let runs = self.probes.iter().zip(&self.passing).zip(&self.required).map(|((probe, passing), &required)| async move {
            let started = Instant::now();
            let outcome = match tokio::time::timeout(self.timeout, probe.check()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
            };
            let ok = outcome.is_ok();
            metrics::gauge!("analytics_service_dependency_up", "dependency" => probe.name())
                .set(f64::from(u8::from(ok)));
            let was_ok = passing.swap(ok, Ordering::SeqCst);
            match (&outcome, was_ok) {
                (Err(error), true) => {
                    tracing::warn!(service = self.service, dependency = probe.name(), error = %error, "dependency probe failed")
                }
                (Ok(()), false) => tracing::info!(service = self.service, dependency = probe.name(), "dependency answers again"),
                _ => {}
            }
            let result = CheckResult {
                ok,
                latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                optional: !required,
                error: outcome.err(),
            };
            (probe.name(), result)
        });
        let checks: BTreeMap<_, _> = futures::future::join_all(runs).await.into_iter().collect();
        let status = if self.is_shutting_down() {
            ReadyStatus::ShuttingDown
        } else if checks.values().all(|c| c.ok || c.optional) {
            ReadyStatus::Ready
        } else {
            ReadyStatus::NotReady
        };
        ReadyReport { status, service: self.service, checks }
    }
}

/// Request durations by route and status, written by every HTTP server [`serve`] builds.
pub const HTTP_REQUEST_DURATION: &str = "analytics_service_http_request_duration_seconds";
/// The `route` label of a request no route matched (a 404, or refused before routing).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Buckets of histograms in seconds (`*_seconds`): 0.5 ms to 10 min.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0,
];
/// Buckets of histograms counting rows (`*_rows`, batch sizes): 1 to 50,000.
pub const ROWS_BUCKETS: &[f64] =
    &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 25_000.0, 50_000.0];
/// Buckets of histograms in bytes (`*_bytes`): 256 B to 64 MiB.
pub const BYTES_BUCKETS: &[f64] =
    &[256.0, 1_024.0, 4_096.0, 16_384.0, 65_536.0, 262_144.0, 1_048_576.0, 4_194_304.0, 16_777_216.0, 67_108_864.0];

/// The buckets of every histogram, chosen by the unit its name ends with
/// (`analytics_service_<name>_<unit>`): one table for the whole workspace,
/// since the recorder (and its buckets) is installed once per process.
const BUCKETS_BY_SUFFIX: &[(&str, &[f64])] =
    &[("_seconds", SECONDS_BUCKETS), ("_rows", ROWS_BUCKETS), ("_bytes", BYTES_BUCKETS)];

/// Histograms whose name does not end with their unit. A histogram matched
/// by neither table is exported as a summary (no buckets), which the
/// promtool test of the system tests refuses: add it here or name its unit.
const BUCKETS_BY_NAME: &[(&str, &[f64])] = &[
    // Rows per stored batch (`processor.batch_max_events` at most, 50,000 by default).
    ("analytics_service_processor_batch_size", ROWS_BUCKETS),
];

/// The process-wide Prometheus recorder, installed on first use, with the
/// histogram buckets of [`BUCKETS_BY_SUFFIX`] and the descriptions of the
/// metrics service-kit itself writes.
///
/// Returns `None` when another recorder was installed first (the endpoint then
/// says so instead of serving an empty page).
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for (suffix, buckets) in BUCKETS_BY_SUFFIX {
                builder = builder.set_buckets_for_metric(Matcher::Suffix((*suffix).to_owned()), buckets).ok()?;
            }
            for (name, buckets) in BUCKETS_BY_NAME {
                builder = builder.set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets).ok()?;
            }
            let handle = builder.install_recorder().ok()?;
            describe_shared_metrics();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// The one registration point of a service's metric descriptions: installs
/// the recorder if needed, then runs `describe` (the service's
/// `describe_counter!`/`describe_gauge!`/`describe_histogram!` calls).
///
/// `metrics-exporter-prometheus` prints `# HELP` only for described metrics,
/// and a description given before the recorder exists is lost; so every
/// service calls this first thing in its `run`.
pub fn describe_metrics(describe: impl FnOnce()) {
    metrics_handle();
    describe();
}

/// The metrics written by service-kit (ops, auth, rate limits, the HTTP stack).
fn describe_shared_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("analytics_service_build_info", "1 while the process runs, labelled with its service and version");
    describe_gauge!(
        "analytics_service_dependency_up",
        "result of the last /ready probe of each dependency: 1 answered, 0 failed or timed out"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "time to answer an HTTP request, by matched route pattern (unmatched when none) and status code"
    );
    describe_gauge!("analytics_service_auth_keys", "unrevoked API keys and tokens in the copy loaded from PostgreSQL");
    describe_counter!(
        "analytics_service_auth_refresh_failures_total",
        "refreshes of the key store from PostgreSQL that failed (the last loaded keys stay in use)"
    );
    describe_counter!("analytics_service_auth_failures_total", "requests refused by authentication, by reason");
    describe_counter!(
        "analytics_service_rate_limited_total",
        "requests refused by a rate or concurrency limit, by limit and key name (by_ip for limits per client address)"
    );
}

/// Records [`HTTP_REQUEST_DURATION`] for every request: the route is the
/// matched pattern (`/api/metrics/video/{videoId}`), never the raw path, so
/// the label stays bounded.
async fn observe_request(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = req.match_pattern().unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    let response = next.call(req).await;
    let status = match &response {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    metrics::histogram!(HTTP_REQUEST_DURATION, "route" => route, "status" => status.as_u16().to_string())
        .record(started.elapsed().as_secs_f64());
    response
}

/// Registers `/health`, `/ready` and `/metrics` on an actix-web app.
pub fn routes(readiness: Arc<Readiness>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::from(readiness));
        operational_routes().register(cfg);
    }
}

/// `/health`, `/ready` and `/metrics` with their OpenAPI operations (tag
/// `operations`), for a service's own document; [`serve`] mounts them.
pub fn operational_routes() -> Routes {
    let json = || ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::Object))).build();
    let text = || ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::String))).build();
    let operation = |summary: &str| OperationBuilder::new().summary(Some(summary)).tag("operations");
    let ok = |content_type: &str, content| ResponseBuilder::new().description("ok").content(content_type, content);
    Routes::new()
        .described(
            HttpMethod::Get,
            "/health",
            operation("liveness: 200 while the process answers")
                .response("200", ok("application/json", json()))
                .build(),
            || web::get().to(health),
        )
        .described(
            HttpMethod::Get,
            "/ready",
            operation("readiness: every dependency probed with a real request; 200 when every required one answers")
                .response("200", ok("application/json", json()))
                .response(
                    "503",
                    ResponseBuilder::new()
                        .description("a required dependency is down, or shutdown has begun (the drain)")
                        .content("application/json", json()),
                )
                .build(),
            || web::get().to(ready),
        )
        .described(
            HttpMethod::Get,
            "/metrics",
            operation("Prometheus text exposition").response("200", ok("text/plain", text())).build(),
            || web::get().to(prometheus),
        )
}

async fn health(readiness: web::Data<Readiness>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "service": readiness.service,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": readiness.started.elapsed().as_secs(),
    }))
}

async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let report = readiness.check().await;
    match report.status {
        ReadyStatus::Ready => HttpResponse::Ok().json(report),
        ReadyStatus::NotReady | ReadyStatus::ShuttingDown => HttpResponse::ServiceUnavailable().json(report),
    }
}

async fn prometheus() -> HttpResponse {
    match metrics_handle() {
        Some(handle) => {
            HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(handle.render())
        }
        None => {
            HttpResponse::InternalServerError().body("metrics recorder unavailable: another recorder was installed")
        }
    }
}

/// Binds the configured address (port 0 picks a free port).
pub fn bind(http: &HttpConfig) -> std::io::Result<TcpListener> {
    let addr = crate::config::socket_addr(http)?;
    TcpListener::bind(addr).map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))
}

/// Serves the ops endpoints plus `app`'s routes on `listener` until `shutdown`.
///
/// On shutdown `/ready` turns 503 first; both listeners keep serving for
/// `http.drain_delay` (the drain), then the server stops accepting and gives
/// in-flight requests `http.shutdown_timeout` to finish.
pub async fn serve<F>(
    listener: TcpListener,
    http: &HttpConfig,
    readiness: Arc<Readiness>,
    shutdown: Shutdown,
    app: F,
) -> std::io::Result<()>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    serve_guarded(listener, http, readiness, shutdown, None, app).await
}

/// [`serve`] with `app`'s routes behind `guard` (keys, scopes and request
/// rates, [`crate::auth`]); the ops endpoints stay open.
pub async fn serve_guarded<F>(
    listener: TcpListener,
    http: &HttpConfig,
    readiness: Arc<Readiness>,
    shutdown: Shutdown,
    guard: Option<Arc<crate::auth::Guard>>,
    app: F,
) -> std::io::Result<()>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    metrics_handle();
    metrics::gauge!("analytics_service_build_info", "service" => readiness.service(), "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
    let addr = listener.local_addr()?;
    let ops_listener = match http.separate_ops_port() {
        Some(port) => Some(bind(&HttpConfig { port, ..http.clone() })?),
        None => None,
    };
    let server = build_server(listener, http, readiness.clone(), ops_listener.is_none(), guard, app)?;
    tracing::info!(service = readiness.service(), %addr, "listening");
    let ops_server = match ops_listener {
        Some(listener) => {
            let ops_addr = listener.local_addr()?;
            let server = build_server(listener, http, readiness.clone(), true, None, |_| {})?;
            tracing::info!(service = readiness.service(), addr = %ops_addr, "ops listening");
            Some(server)
        }
        None => None,
    };
    let handles: Vec<_> =
        std::iter::once(server.handle()).chain(ops_server.as_ref().map(actix_web::dev::Server::handle)).collect();
    let drain = http.drain_delay;
    tokio::spawn(async move {
        shutdown.wait().await;
        readiness.begin_shutdown();
        if !drain.is_zero() {
            tracing::info!(
                service = readiness.service(),
                drain_ms = u64::try_from(drain.as_millis()).unwrap_or(u64::MAX),
                "draining: /ready answers 503, requests are still served"
            );
            tokio::time::sleep(drain).await;
        }
        futures::future::join_all(handles.iter().map(|handle| handle.stop(true))).await;
    });
    match ops_server {
        Some(ops) => {
            let (api, ops) = tokio::join!(server, ops);
            api.and(ops)
        }
        None => server.await,
    }
}

/// Builds the actix server outside any `async` block, so the future of
/// [`serve`] holds only the `Send` server handle and can be spawned.
fn build_server<F>(
    listener: TcpListener,
    http: &HttpConfig,
    readiness: Arc<Readiness>,
    with_ops: bool,
    guard: Option<Arc<crate::auth::Guard>>,
    app: F,
) -> std::io::Result<actix_web::dev::Server>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let cors = http.cors_policy();
    let body_timeout = http.request_body_timeout;
    let mut server = HttpServer::new(move || {
        let cors = std::rc::Rc::new(cors.clone());
        let guard = guard.clone().map(std::rc::Rc::new);
        App::new()
            // Innermost: a refusal still passes through CORS, so a web page
            // can read why its request was refused.
            .wrap(actix_web::middleware::Condition::new(
                guard.is_some(),
                actix_web::middleware::from_fn(move |req, next| {
                    crate::auth::middleware(guard.clone().expect("wrapped only with a guard"), req, next)
                }),
            ))
            .wrap(actix_web::middleware::from_fn(move |req, next| crate::deadline::middleware(body_timeout, req, next)))
            .wrap(actix_web::middleware::from_fn(move |req, next| crate::cors::middleware(cors.clone(), req, next)))
            // Outermost: the duration covers every refusal as well.
            .wrap(actix_web::middleware::from_fn(observe_request))
            .configure(|cfg| {
                if with_ops {
                    routes(readiness.clone())(cfg);
                } else {
                    cfg.app_data(web::Data::from(readiness.clone()));
                }
            })
            .configure(app.clone())
    })
    .client_request_timeout(http.request_head_timeout)
    .keep_alive(http.keep_alive)
    .max_connections(http.max_connections_per_worker)
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(http.shutdown_timeout_secs());
    if http.workers > 0 {
        server = server.workers(http.workers);
    }
    Ok(server.run())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, bool);

    impl Probe for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }

        fn check(&self) -> ProbeFuture<'_> {
            let ok = self.1;
            Box::pin(async move { if ok { Ok(()) } else { Err("down".to_owned()) } })
        }
    }

    #[test]
    fn histograms_get_the_buckets_of_their_unit() {
        let handle = metrics_handle().expect("the recorder");
        metrics::histogram!("ops_test_wait_seconds").record(0.2);
        metrics::histogram!("ops_test_batch_rows").record(42.0);
        metrics::histogram!("ops_test_body_bytes").record(1_000.0);
        metrics::histogram!("analytics_service_processor_batch_size").record(50_000.0);
        let page = handle.render();
        for expected in [
            "ops_test_wait_seconds_bucket{le=\"0.0005\"} 0",
            "ops_test_wait_seconds_bucket{le=\"600\"} 1",
            "ops_test_batch_rows_bucket{le=\"50\"} 1",
            "ops_test_batch_rows_bucket{le=\"50000\"} 1",
            "ops_test_body_bytes_bucket{le=\"1024\"} 1",
            "analytics_service_processor_batch_size_bucket{le=\"25000\"} 0",
            "analytics_service_processor_batch_size_bucket{le=\"50000\"} 1",
        ] {
            assert!(page.contains(expected), "{expected} missing:\n{page}");
        }
        assert!(!page.contains("ops_test_batch_rows_bucket{le=\"0.0005\"}"), "rows got seconds buckets:\n{page}");
    }

    #[actix_web::test]
    async fn request_durations_are_labelled_by_route_pattern_and_status() {
        let handle = metrics_handle().expect("the recorder");
        let app = actix_web::test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(observe_request))
                .route("/ops-test/items/{item_id}", web::get().to(HttpResponse::Ok)),
        )
        .await;
        for uri in ["/ops-test/items/1", "/ops-test/items/2", "/ops-test/nothing-here/3"] {
            actix_web::test::call_service(&app, actix_web::test::TestRequest::with_uri(uri).to_request()).await;
        }
        let page = handle.render();
        let count = |labels: &str| {
            let prefix = format!("{HTTP_REQUEST_DURATION}_count{{{labels}}} ");
            page.lines().find_map(|line| line.strip_prefix(&prefix)).map(str::to_owned)
        };
        assert_eq!(count("route=\"/ops-test/items/{item_id}\",status=\"200\""), Some("2".into()), "{page}");
        assert_eq!(count("route=\"unmatched\",status=\"404\""), Some("1".into()), "{page}");
        assert!(!page.contains("/ops-test/items/1"), "a raw path became a label:\n{page}");
        assert!(page.contains(&format!("# HELP {HTTP_REQUEST_DURATION} ")), "{page}");
    }

    #[tokio::test]
    async fn an_optional_probe_is_reported_but_does_not_make_the_service_unready() {
        let readiness = Readiness::new("test", Duration::from_secs(1))
            .with_probe(Fixed("clickhouse", true))
            .with_optional_probe(Fixed("redis", false));
        let report = readiness.check().await;
        assert_eq!(report.status, ReadyStatus::Ready);
        assert!(!report.checks["redis"].ok && report.checks["redis"].optional);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["checks"]["redis"],
            serde_json::json!({"ok": false, "latency_ms": json["checks"]["redis"]["latency_ms"], "optional": true})
        );
        assert!(json["checks"]["clickhouse"].get("optional").is_none(), "{json}");

        let required = Readiness::new("test", Duration::from_secs(1)).with_probe(Fixed("redis", false));
        assert_eq!(required.check().await.status, ReadyStatus::NotReady);
        readiness.begin_shutdown();
        assert_eq!(readiness.check().await.status, ReadyStatus::ShuttingDown);
    }
}
