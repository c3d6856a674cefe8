//! Creating the raw events topic at start-up, in the background, retrying
//! while Kafka is down, and a readiness probe that passes once it exists.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use service_kit::{
    KafkaConfig, Probe, Shutdown,
    deps::kafka::{DurabilityError, TopicSpec, ensure_topics},
    ops::ProbeFuture,
};

const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(10);

/// Whether the raw topic is known to exist.
#[derive(Debug, Default)]
pub struct TopicState {
    ready: AtomicBool,
}

impl TopicState {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn mark_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }
}

/// Creates `spec` unless it exists, retrying with exponential backoff until it
/// succeeds or shutdown begins. A topic less durable than configured is not
/// retried: it triggers shutdown and is returned, so the service exits with it.
pub async fn ensure_raw_topic(
    kafka: KafkaConfig,
    spec: TopicSpec,
    state: Arc<TopicState>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut pause = FIRST_RETRY;
    let mut attempt: u32 = 1;
    loop {
        let outcome = tokio::select! {
            () = shutdown.wait() => return Ok(()),
            outcome = ensure_topics(&kafka, std::slice::from_ref(&spec)) => outcome,
        };
        match outcome {
            Ok(()) => {
                state.mark_ready();
                tracing::info!(topic = %spec.name, partitions = spec.partitions, "raw events topic ready");
                return Ok(());
            }
            Err(error) if DurabilityError::is_cause_of(&error) => {
                tracing::error!(topic = %spec.name, error = %format!("{error:#}"), "the raw events topic is unusable");
                shutdown.trigger();
                return Err(error);
            }
            Err(error) => {
                tracing::warn!(
                    topic = %spec.name,
                    attempt,
                    retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                    error = %format!("{error:#}"),
                    "cannot ensure the raw events topic; retrying"
                );
            }
        }
        tokio::select! {
            () = shutdown.wait() => return Ok(()),
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_RETRY);
        attempt = attempt.saturating_add(1);
    }
}

/// Readiness: fails until the raw topic has been created or found.
pub struct TopicProbe {
    pub state: Arc<TopicState>,
    pub topic: String,
}

impl Probe for TopicProbe {
    fn name(&self) -> &'static str {
        "raw_topic"
    }

    fn check(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            if self.state.is_ready() { Ok(()) } else { Err(format!("topic {} not created yet", self.topic)) }
        })
    }
}
