//! The consumer's librdkafka context: rebalance notes and lag from statistics.

use std::sync::{
    Mutex,
    atomic::{AtomicBool, Ordering},
};

use rdkafka::{
    ClientContext, Statistics,
    consumer::{BaseConsumer, ConsumerContext, Rebalance},
};

/// Collects revoked partitions for the consumer loop and publishes consumer lag.
#[derive(Default)]
pub struct ProcessorContext {
    revoked: Mutex<Vec<i32>>,
    /// While consumption is paused the statistics' lag is stale (paused
    /// partitions are not fetched, so their high watermark is not refreshed);
    /// the consumer loop publishes the lag itself then.
    paused: AtomicBool,
}

impl ProcessorContext {
    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<i32> {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ProcessorContext {
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
    }
}

/// Publishes one partition's consumer lag.
pub fn set_lag(topic: &str, partition: i32, lag: i64) {
    metrics::gauge!(
        "analytics_service_kafka_consumer_lag",
        "topic" => topic.to_string(),
        "partition" => partition.to_string()
    )
    .set(lag.max(0) as f64);
}

impl ClientContext for ProcessorContext {
    fn stats(&self, statistics: Statistics) {
        if self.paused.load(Ordering::SeqCst) {
            return;
        }
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // librdkafka reports -1 for the internal UA partition and for unknown lag.
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                set_lag(topic, *partition, p.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for ProcessorContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions revoked");
                self.revoked.lock().unwrap_or_else(|e| e.into_inner()).extend(partitions);
            }
            Rebalance::Assign(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions assigned");
            }
            Rebalance::Error(error) => tracing::warn!(error = %error, "rebalance error"),
        }
    }
}
