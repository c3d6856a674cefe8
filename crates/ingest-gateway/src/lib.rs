//! ingest-gateway: accepts playback events over HTTP and produces them to Kafka.
//!
//! - `POST /api/events`: one event (JSON object).
//! - `POST /api/events/batch`: a JSON array, or NDJSON (`application/x-ndjson`).
//!
//! Both accept gzip bodies and answer 202 only once Kafka acknowledged every
//! accepted event. See `README.md` beside this crate for the response shapes.
//!
//! This crate holds everything testable; `main.rs` only calls [`run`].

mod body;
mod config;
mod error;
mod handlers;
mod metrics;
pub mod openapi;
mod producer;
mod report;
mod topic;

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::web;
use anyhow::Context as _;
use events_model::Topics;
use service_kit::{
    Readiness, Shutdown,
    auth::{Credential, Guard, Scope},
    deps::kafka::{KafkaProbe, TopicSpec},
    rate::KeyedLimit,
};

pub use config::{Config, DEFAULT_PORT, IngestConfig};
pub use handlers::routes;
pub use producer::producer_config;

pub const SERVICE: &str = "ingest-gateway";

/// How long queued events may take to reach Kafka once the server has stopped.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where players may put their ingest key: a header, or the URL for
/// `navigator.sendBeacon`, which cannot set headers.
const CREDENTIALS: &[Credential] = &[Credential::ApiKeyHeader, Credential::Bearer, Credential::Query("api_key")];

/// Sending events needs an `ingest` key; the document and the ops routes are open.
fn rules(_method: &actix_web::http::Method, path: &str) -> Option<Scope> {
    path.starts_with("/api/events").then_some(Scope::Ingest)
}

/// Serves until `shutdown`; ready while Kafka answers and the raw topic exists.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    service_kit::ops::describe_metrics(metrics::describe);
    let raw_topic = Topics::new(&config.kafka.topic_prefix).raw_events;
    let producer = producer::EventProducer::new(&config.kafka, &config.ingest, raw_topic.clone())
        .context("cannot create the kafka producer")?;

    let topic_state = Arc::new(topic::TopicState::default());
    let spec =
        TopicSpec { name: raw_topic.clone(), partitions: config.ingest.raw_topic_partitions, retention_ms: None };
    let ensure_topic =
        tokio::spawn(topic::ensure_raw_topic(config.kafka.clone(), spec, topic_state.clone(), shutdown.clone()));

    let timeout = config.http.probe_timeout;
    let (guard, keys_probe) = Guard::start(&config.auth, &config.postgres, &shutdown, CREDENTIALS, rules)?;
    let readiness = Readiness::new(SERVICE, timeout)
        .with_probe(KafkaProbe::new(&config.kafka, timeout)?)
        .with_probe(topic::TopicProbe { state: topic_state, topic: raw_topic.clone() })
        .with_probes(keys_probe);

    let ingest = &config.ingest;
    tracing::info!(
        topic = %raw_topic,
        max_batch_events = ingest.max_batch_events,
        max_body_bytes = ingest.max_body_bytes,
        produce_timeout = ?ingest.produce_timeout,
        linger = ?ingest.linger,
        "ingest configured"
    );
    let state = web::Data::new(handlers::AppState {
        producer,
        limits: config.ingest.clone(),
        body_timeout: config.http.request_body_timeout,
        events_per_key: KeyedLimit::per_second(
            "events_per_second",
            config.ingest.events_per_second_per_key,
            config.ingest.events_per_second_per_key,
        ),
    });
    let served = service_kit::ops::serve_guarded(
        listener,
        &config.http,
        Arc::new(readiness),
        shutdown.clone(),
        Some(guard),
        handlers::configure(state.clone()),
    )
    .await;

    // Stops the topic task too when the server ended on an error.
    shutdown.trigger();
    ensure_topic.await.context("raw topic task panicked")??;
    let state = state.into_inner();
    let flushed = tokio::task::spawn_blocking(move || state.producer.flush(FLUSH_TIMEOUT)).await;
    match flushed {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(error = %error, "events still queued for kafka at exit"),
        Err(error) => tracing::warn!(error = %error, "producer flush task failed"),
    }
    served.context("http server failed")?;
    Ok(())
}
