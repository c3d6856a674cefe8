//! realtime-hub: WebSocket fan-out of realtime metrics and events, and the live dashboard.
//!
//! - [`consumer`]: every partition of the raw events and realtime partials
//!   topics, read on dedicated threads;
//! - [`window`]: the partials merged into the realtime metrics of
//!   docs/metrics.md over the last 60 s (deduplicated by event id);
//! - [`hub`]: the shared state, the per-second ticker and the history;
//! - [`client`], [`outbox`], [`feed`], [`protocol`]: one task pair per
//!   WebSocket client with its filter, sampling and bounded queue;
//! - [`routes`]: `/ws`, `GET /api/metrics/realtime` and the dashboard page,
//!   one routes table; [`openapi`]: its document, with the WebSocket protocol.
//!
//! This crate holds everything testable; `main.rs` only calls [`run`].

pub mod client;
mod config;
pub mod consumer;
pub mod feed;
pub mod hub;
pub mod openapi;
pub mod outbox;
pub mod protocol;
pub mod routes;
pub mod telemetry;
pub mod window;

use std::{net::TcpListener, sync::Arc};

use anyhow::Context as _;
use events_model::Topics;
use rdkafka::Message as _;
use service_kit::{
    Readiness, Shutdown,
    auth::{Credential, Guard, Scope},
    deps::kafka::KafkaProbe,
};

pub use config::{Config, DEFAULT_PORT, HubConfig};

pub const SERVICE: &str = "realtime-hub";

/// Where clients put their token: the URL for WebSocket clients (browsers
/// cannot set headers on a WebSocket), or a Bearer header.
pub const CREDENTIALS: &[Credential] = &[Credential::Query("token"), Credential::Bearer];

/// The live feed and the metrics need a `read` token; the dashboard page,
/// the document and the ops routes are open (the page asks for a token).
/// Other methods on those paths read nothing: they get their 405.
pub fn rules(method: &actix_web::http::Method, path: &str) -> Option<Scope> {
    let read = *method == actix_web::http::Method::GET || *method == actix_web::http::Method::HEAD;
    (read && (path == routes::WS_PATH || path == routes::REALTIME_PATH)).then_some(Scope::Read)
}

/// Serves until `shutdown`; ready while Kafka answers and the window is loaded.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    service_kit::ops::describe_metrics(telemetry::describe);
    let topics = Topics::new(&config.kafka.topic_prefix);
    let refresh = config.hub.metadata_refresh;
    let raw = consumer::TopicReader::new(&config.kafka, "raw", topics.raw_events, consumer::Start::End, refresh)?;
    let partials = consumer::TopicReader::new(
        &config.kafka,
        "partials",
        topics.realtime_partials,
        consumer::Start::Lookback(config.hub.lookback),
        refresh,
    )?;
    let hub =
        Arc::new(hub::Hub::new(config.hub.clone(), shutdown.clone(), raw.status.clone(), partials.status.clone()));
    tracing::info!(
        raw_topic = %raw.topic,
        partials_topic = %partials.topic,
        window = ?config.hub.window,
        client_max_events_per_sec = config.hub.client_max_events_per_sec,
        client_queue_size = config.hub.client_queue_size,
        max_connections = config.hub.max_connections,
        "realtime hub configured"
    );

    let timeout = config.http.probe_timeout;
    let (guard, keys_probe) = Guard::start(&config.auth, &config.postgres, &shutdown, CREDENTIALS, rules)?;
    let readiness = Readiness::new(SERVICE, timeout)
        .with_probe(KafkaProbe::new(&config.kafka, timeout)?)
        .with_probe(hub.data_probe())
        .with_probes(keys_probe);

    let readers = [
        spawn_reader(raw, &shutdown, {
            let hub = hub.clone();
            move |payload| hub.publish_event(payload)
        })?,
        spawn_reader(partials, &shutdown, {
            let hub = hub.clone();
            move |payload| hub.merge_partial(payload)
        })?,
    ];
    let ticker = tokio::spawn(hub::run_ticker(hub.clone()));
    let origins = config.http.cors_policy();

    let served = service_kit::ops::serve_guarded(
        listener,
        &config.http,
        Arc::new(readiness),
        shutdown.clone(),
        Some(guard),
        routes::configure(hub, origins),
    )
    .await;
    // However serving ended, the readers and the ticker stop with it.
    shutdown.trigger();
    ticker.await.context("metrics ticker panicked")?;
    for reader in readers {
        tokio::task::spawn_blocking(move || reader.join())
            .await
            .context("cannot join a kafka reader")?
            .map_err(|_| anyhow::anyhow!("a kafka reader thread panicked"))?;
    }
    served?;
    Ok(())
}

fn spawn_reader(
    reader: consumer::TopicReader,
    shutdown: &Shutdown,
    mut handle: impl FnMut(&[u8]) + Send + 'static,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let shutdown = shutdown.clone();
    std::thread::Builder::new()
        .name(format!("kafka-{}", reader.name))
        .spawn(move || reader.run(&shutdown, |message| handle(message.payload().unwrap_or_default())))
        .context("cannot start a kafka reader thread")
}
