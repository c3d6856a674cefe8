//! What the handlers share.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use service_kit::{KafkaConfig, Readiness, Shutdown, deps::kafka::GroupLagReader};

use crate::{cache::QueryCache, catalog::Catalog, config::FreshnessConfig};

/// The handlers' shared state, built once by [`crate::run`].
pub struct AppState {
    pub catalog: Catalog,
    /// ClickHouse, bound to the `analytics` database, with the metric
    /// endpoints' limits (`limits.metrics`).
    pub clickhouse: clickhouse::Client,
    /// The same, with the custom queries' limits (`limits.custom`).
    pub custom_clickhouse: clickhouse::Client,
    /// The result cache of the metric endpoints.
    pub cache: QueryCache,
    pub freshness: FreshnessConfig,
    /// The stream processor's consumer lag, refreshed in the background;
    /// `/api/metrics/health` reads its last value.
    pub consumer_lag: Arc<LagReader>,
    pub readiness: Arc<Readiness>,
    /// `limits.custom_concurrent_per_key`, by key id.
    pub custom_per_key: Arc<service_kit::rate::ConcurrencyLimit<String>>,
}

/// Kafka clients created by every [`LagReader`] of this process.
static CLIENTS_CREATED: AtomicU64 = AtomicU64::new(0);

/// Kafka clients created by every [`LagReader`] of this process so far: one
/// per running query API (requests create none).
pub fn lag_clients_created() -> u64 {
    CLIENTS_CREATED.load(Ordering::Relaxed)
}

/// How often [`LagReader::run`] asks the broker for the consumer lag.
pub const LAG_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// The last consumer lag read, with when and how the last read ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LagReading {
    /// The lag of the last successful read; `None` until one succeeded.
    pub messages: Option<i64>,
    /// When that read was made.
    pub as_of: Option<DateTime<Utc>>,
    /// Why the latest read failed, in words fit for a public answer
    /// ([`LAG_UNREADABLE`]); `None` when it succeeded.
    pub error: Option<String>,
}

/// The public reason of a failed lag read. The driver's own message (broker
/// addresses, internal names) goes to the log once per failure spell, never
/// into `/api/metrics/health` (docs/security.md).
pub const LAG_UNREADABLE: &str = "kafka did not answer the consumer lag read; the service log has the cause";

/// The stream processor's consumer lag on the raw topic (`kafka.topic_prefix`,
/// `kafka.consumer_group`), read by one long-lived Kafka client every
/// [`LAG_REFRESH_INTERVAL`] on a blocking thread, so a request for it costs
/// no Kafka client and no broker round trip.
pub struct LagReader {
    /// The raw events topic.
    pub topic: String,
    /// The stream processor's consumer group.
    pub group: String,
    kafka: KafkaConfig,
    timeout: Duration,
    latest: Mutex<LagReading>,
    /// The driver's message of the current failure spell, to log it once.
    failure: Mutex<Option<String>>,
    reads: AtomicU64,
}

impl LagReader {
    /// A reader that has read nothing yet; `timeout` bounds each broker request.
    pub fn new(kafka: &KafkaConfig, timeout: Duration) -> Self {
        Self {
            topic: events_model::Topics::new(&kafka.topic_prefix).raw_events,
            group: kafka.consumer_group.clone(),
            kafka: kafka.clone(),
            timeout,
            latest: Mutex::new(LagReading {
                error: Some("the consumer lag has not been read yet".into()),
                ..LagReading::default()
            }),
            failure: Mutex::new(None),
            reads: AtomicU64::new(0),
        }
    }

    /// The last reading.
    pub fn latest(&self) -> LagReading {
        self.latest.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads attempted so far (one a refresh).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Refreshes the reading at once and then every `interval` until
    /// `shutdown`. Each read runs on a blocking thread with the client kept
    /// from the previous one; on shutdown this returns at once and a read in
    /// progress ends on its own (within its timeouts), dropping the client.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown, interval: Duration) {
        let mut client = None;
        loop {
            let reader = self.clone();
            let refresh = tokio::task::spawn_blocking(move || reader.refresh(client));
            client = tokio::select! {
                joined = refresh => joined.unwrap_or_else(|error| {
                    tracing::error!(error = %error, "consumer lag read panicked");
                    None
                }),
                () = shutdown.wait() => return,
            };
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown.wait() => return,
            }
        }
    }

    /// One read with `client` (created first if `None`); returns the client to keep.
    fn refresh(&self, client: Option<GroupLagReader>) -> Option<GroupLagReader> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let client = match client {
            Some(client) => client,
            None => match GroupLagReader::new(&self.kafka, &self.group) {
                Ok(client) => {
                    CLIENTS_CREATED.fetch_add(1, Ordering::Relaxed);
                    client
                }
                Err(error) => {
                    self.record(Err(format!("cannot create a kafka client: {error}")));
                    return None;
                }
            },
        };
        self.record(client.lag(&self.topic, self.timeout).map_err(|e| e.to_string()));
        Some(client)
    }

    fn record(&self, outcome: Result<i64, String>) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        // Before the first read, `error` only says nothing was read yet.
        let failing = latest.error.is_some() && self.reads() > 1;
        match outcome {
            Ok(messages) => {
                if failing {
                    tracing::info!(topic = %self.topic, group = %self.group, messages, "consumer lag readable again");
                }
                *latest = LagReading { messages: Some(messages), as_of: Some(Utc::now()), error: None };
                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            Err(error) => {
                let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
                if failure.as_deref() != Some(error.as_str()) {
                    tracing::warn!(topic = %self.topic, group = %self.group, error = %error, "cannot read the consumer lag");
                    *failure = Some(error);
                }
                latest.error = Some(LAG_UNREADABLE.to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_lag_read_answers_a_fixed_reason_not_the_drivers_message() {
        let reader = LagReader::new(&KafkaConfig::default(), Duration::from_secs(1));
        let driver = "KafkaError (Client error: BrokerTransportFailure (10.1.2.3:9092/bootstrap: Connect failed))";
        reader.record(Err(driver.to_owned()));
        let latest = reader.latest();
        assert_eq!(latest.error.as_deref(), Some(LAG_UNREADABLE));
        assert!(!format!("{latest:?}").contains("10.1.2.3"), "{latest:?}");
        reader.record(Ok(7));
        assert_eq!((reader.latest().messages, reader.latest().error), (Some(7), None));
    }
}
