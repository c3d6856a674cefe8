//! The consumer loop: Kafka → batch → ClickHouse → commit.
//!
//! Runs on one blocking thread that owns the consumer. The order of effects
//! is what makes the pipeline lossless:
//!
//! 1. a message becomes an event in the batch, or a dead letter acknowledged by Kafka;
//! 2. the batch is inserted into ClickHouse, retried with backoff (consumption
//!    paused, the group membership kept alive by polling) until it succeeds;
//! 3. only then are the batch's offsets committed;
//! 4. then the batch's realtime partials are handed to the partials producer
//!    (see [`crate::partials`]), which delivers them in the background.
//!
//! A crash anywhere before 3 means the messages are read again by whoever owns
//! the partition next: at-least-once. Rows stored twice that way carry the
//! same `event_id` and are counted once (see ARCHITECTURE.md, "Counted once").
//! Partials come after the commit so that a partition's next owner never
//! republishes them; a crash between 3 and the partials' delivery leaves
//! those events out of the realtime window only (ClickHouse has them).

use std::time::{Duration, Instant};

use events_model::Event;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
    message::BorrowedMessage,
};
use service_kit::Shutdown;
use tokio::runtime::Handle;

use crate::{
    backoff::Backoff,
    batch::Batch,
    context::ProcessorContext,
    dlq::{DeadLetter, DeadLetters},
    partials::PartialsPublisher,
    sink::ClickHouseSink,
};

/// Tuning of the loop (from `ProcessorConfig`).
#[derive(Debug, Clone)]
pub struct LoopSettings {
    pub batch_max_events: usize,
    pub batch_max_wait: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// How long a final flush may keep retrying after shutdown was requested.
    pub shutdown_flush: Duration,
    /// While paused, how often the loop publishes the consumer lag itself.
    pub lag_refresh: Duration,
    /// At shutdown, how long queued realtime partials may take to be delivered.
    pub partials_flush: Duration,
}

/// The flush did not complete because shutdown came first; nothing was committed.
#[derive(Debug)]
struct Aborted;

const POLL_SLICE: Duration = Duration::from_millis(100);

pub struct Pipeline {
    pub consumer: BaseConsumer<ProcessorContext>,
    pub sink: ClickHouseSink,
    pub dead_letters: DeadLetters,
    /// `None` when realtime partials are disabled.
    pub partials: Option<PartialsPublisher>,
    pub source_topic: String,
    pub settings: LoopSettings,
    pub runtime: Handle,
    pub shutdown: Shutdown,
}

impl Pipeline {
    /// Consumes until shutdown, then flushes what it holds (bounded by
    /// `shutdown_flush`) and commits it.
    pub fn run(self) -> anyhow::Result<()> {
        self.consumer.subscribe(&[&self.source_topic])?;
        tracing::info!(topic = %self.source_topic, "consuming");
        let mut batch = Batch::new(self.settings.batch_max_events, self.settings.batch_max_wait);

        while !self.shutdown.is_triggered() {
            let wait = batch.time_left().map_or(POLL_SLICE, |left| left.min(POLL_SLICE));
            if let Some(polled) = self.consumer.poll(wait) {
                match polled {
                    Ok(message) => {
                        if self.handle(&message, &mut batch).is_err() {
                            break;
                        }
                    }
                    Err(error) => tracing::warn!(error = %error, "kafka consumer error"),
                }
            }
            self.forget_revoked(&mut batch);
            if batch.is_due() && self.flush(&mut batch, None).is_err() {
                break;
            }
        }

        if !batch.is_empty() {
            let deadline = Instant::now() + self.settings.shutdown_flush;
            match self.flush(&mut batch, Some(deadline)) {
                Ok(()) => tracing::info!("final batch stored and committed"),
                Err(Aborted) => {
                    tracing::warn!(rows = batch.len(), "final batch not stored; it will be read again after restart")
                }
            }
        }
        if let Some(partials) = &self.partials {
            partials.flush(self.settings.partials_flush);
        }
        Ok(())
    }

    /// Turns one message into a row, or into an acknowledged dead letter.
    fn handle(&self, message: &BorrowedMessage<'_>, batch: &mut Batch) -> Result<(), Aborted> {
        let (partition, offset) = (message.partition(), message.offset());
        let payload = message.payload().unwrap_or_default();
        let failure = if payload.is_empty() {
            Some(("empty_payload".to_string(), "message has no payload".to_string()))
        } else {
            match Event::from_wire(payload) {
                Ok(event) => {
                    batch.push(partition, offset, event);
                    None
                }
                Err(errors) => Some((
                    errors.primary_code().map_or("invalid", |c| c.as_str()).to_string(),
                    serde_json::to_string(&errors).unwrap_or_else(|_| errors.to_string()),
                )),
            }
        };
        if let Some((reason, detail)) = failure {
            let letter = DeadLetter {
                key: message.key(),
                payload,
                reason: &reason,
                detail,
                source_topic: message.topic(),
                partition,
                offset,
            };
            self.dead_letter(&letter)?;
            batch.skip(partition, offset);
        }
        Ok(())
    }

    fn dead_letter(&self, letter: &DeadLetter<'_>) -> Result<(), Aborted> {
        let mut backoff = Backoff::new(self.settings.retry_initial, self.settings.retry_max);
        loop {
            match self.runtime.block_on(self.dead_letters.send(letter)) {
                Ok(()) => {
                    tracing::warn!(
                        reason = letter.reason,
                        partition = letter.partition,
                        offset = letter.offset,
                        "message dead-lettered"
                    );
                    metrics::counter!("analytics_service_dead_letters_total", "reason" => letter.reason.to_string())
                        .increment(1);
                    metrics::counter!("analytics_service_events_processed_total", "outcome" => "dead_lettered")
                        .increment(1);
                    return Ok(());
                }
                Err(error) => {
                    tracing::warn!(error = %error, attempt = backoff.attempts(), "dead letter not acknowledged; retrying");
                    self.wait_keeping_membership(backoff.next_delay(), None, None)?;
                }
            }
        }
    }

    /// Inserts the batch (retrying until it succeeds, shutdown, or `deadline`),
    /// commits its offsets, then publishes its realtime partials.
    fn flush(&self, batch: &mut Batch, deadline: Option<Instant>) -> Result<(), Aborted> {
        let started = Instant::now();
        let mut backoff = Backoff::new(self.settings.retry_initial, self.settings.retry_max);
        let mut paused: Option<TopicPartitionList> = None;
        let outcome = loop {
            match self.runtime.block_on(self.sink.insert(batch.events())) {
                Ok(()) => break Ok(()),
                Err(error) => {
                    metrics::counter!("analytics_service_clickhouse_insert_retries_total").increment(1);
                    tracing::warn!(
                        error = %error,
                        rows = batch.len(),
                        attempt = backoff.attempts() + 1,
                        "clickhouse insert failed; retrying with backoff"
                    );
                    if paused.is_none() {
                        paused = self.pause();
                    }
                    let delay = backoff.next_delay();
                    if let Err(aborted) = self.wait_keeping_membership(delay, Some(&mut *batch), deadline) {
                        break Err(aborted);
                    }
                    if batch.is_empty() {
                        break Ok(()); // every partition of the batch was revoked meanwhile
                    }
                }
            }
        };
        if let Some(partitions) = paused {
            self.resume(&partitions);
        }
        outcome?;

        let rows = batch.len();
        self.commit(batch);
        let elapsed = started.elapsed();
        metrics::counter!("analytics_service_events_processed_total", "outcome" => "stored").increment(rows as u64);
        metrics::histogram!("analytics_service_event_processing_duration_seconds").record(elapsed.as_secs_f64());
        metrics::histogram!("analytics_service_processor_batch_size").record(rows as f64);
        if let Some(oldest) = batch.events().iter().map(|e| e.received_at).min() {
            let age = (chrono::Utc::now() - oldest).to_std().unwrap_or_default();
            metrics::histogram!("analytics_service_event_ingest_to_store_seconds").record(age.as_secs_f64());
        }
        tracing::debug!(rows, elapsed_ms = elapsed.as_millis() as u64, "batch stored");
        self.publish_partials(batch);
        batch.clear();
        Ok(())
    }

    /// Hands the stored batch's partials to the producer, without waiting
    /// for their delivery. Done even when the commit failed: the batch may
    /// then be published again by the partition's next owner, which the
    /// hub's deduplication by `event_id` absorbs, whereas not publishing
    /// would lose the events from the realtime window if the next commit
    /// covers them.
    fn publish_partials(&self, batch: &Batch) {
        let Some(partials) = &self.partials else { return };
        let outcome = partials.publish(&batch.events_by_partition());
        tracing::debug!(queued = outcome.queued, dropped = outcome.dropped, "realtime partials queued");
    }

    fn commit(&self, batch: &Batch) {
        if batch.commit_offsets().is_empty() {
            return;
        }
        let mut offsets = TopicPartitionList::new();
        for (&partition, &next) in batch.commit_offsets() {
            if let Err(error) = offsets.add_partition_offset(&self.source_topic, partition, Offset::Offset(next)) {
                tracing::error!(error = %error, partition, "cannot build the offset list");
            }
        }
        if let Err(error) = self.consumer.commit(&offsets, CommitMode::Sync) {
            // The rows are stored; they will be read and stored again by the
            // partition's next owner, and counted once by event_id.
            metrics::counter!("analytics_service_kafka_commit_failures_total").increment(1);
            tracing::warn!(error = %error, "offset commit failed; the batch may be redelivered");
        }
    }

    /// Waits `delay` in slices, polling so the group membership stays alive,
    /// dropping revoked partitions from `batch`, and giving up on shutdown
    /// (or at `deadline`, during the final flush).
    fn wait_keeping_membership(
        &self,
        delay: Duration,
        mut batch: Option<&mut Batch>,
        deadline: Option<Instant>,
    ) -> Result<(), Aborted> {
        let until = Instant::now() + delay;
        let mut lag_published: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) || (deadline.is_none() && self.shutdown.is_triggered()) {
                return Err(Aborted);
            }
            if now >= until {
                return Ok(());
            }
            if let Some(polled) = self.consumer.poll((until - now).min(POLL_SLICE)) {
                // Paused partitions deliver nothing; anything already in flight joins the batch.
                match (polled, batch.as_deref_mut()) {
                    (Ok(message), Some(batch)) => self.handle(&message, batch)?,
                    (Ok(message), None) => {
                        tracing::debug!(partition = message.partition(), offset = message.offset(), "seeking back");
                        let _ = self.consumer.seek(
                            message.topic(),
                            message.partition(),
                            Offset::Offset(message.offset()),
                            Duration::from_secs(1),
                        );
                    }
                    (Err(error), _) => tracing::warn!(error = %error, "kafka consumer error"),
                }
            }
            if let Some(batch) = batch.as_deref_mut() {
                self.forget_revoked(batch);
                if lag_published.is_none_or(|at| at.elapsed() >= self.settings.lag_refresh) {
                    self.publish_lag_while_paused();
                    lag_published = Some(Instant::now());
                }
            }
        }
    }

    /// Lag = high watermark − committed offset, per assigned partition, asked
    /// of the broker (librdkafka's statistics go stale while paused).
    fn publish_lag_while_paused(&self) {
        let timeout = Duration::from_secs(2);
        let committed = match self.consumer.committed(timeout) {
            Ok(committed) => committed,
            Err(error) => {
                tracing::debug!(error = %error, "cannot read committed offsets for the lag");
                return;
            }
        };
        for element in committed.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let Ok((low, high)) = self.consumer.fetch_watermarks(topic, partition, timeout) else { continue };
            let from = match element.offset() {
                Offset::Offset(offset) => offset,
                _ => low,
            };
            crate::context::set_lag(topic, partition, high - from);
        }
    }

    fn forget_revoked(&self, batch: &mut Batch) {
        let revoked = self.consumer.context().take_revoked();
        let dropped = batch.drop_partitions(&revoked);
        if dropped > 0 {
            tracing::info!(?revoked, rows = dropped, "dropped uncommitted rows of revoked partitions");
        }
    }

    fn pause(&self) -> Option<TopicPartitionList> {
        let assignment = self.consumer.assignment().ok()?;
        match self.consumer.pause(&assignment) {
            Ok(()) => {
                self.consumer.context().set_paused(true);
                metrics::gauge!("analytics_service_processor_paused").set(1.0);
                tracing::info!(partitions = assignment.count(), "consumption paused");
                Some(assignment)
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot pause consumption");
                None
            }
        }
    }

    fn resume(&self, partitions: &TopicPartitionList) {
        // Partitions revoked meanwhile are no longer ours; resume what is still assigned.
        let assigned = self.consumer.assignment().unwrap_or_default();
        let mut still = TopicPartitionList::new();
        for element in partitions.elements() {
            if assigned.find_partition(element.topic(), element.partition()).is_some() {
                still.add_partition(element.topic(), element.partition());
            }
        }
        if let Err(error) = self.consumer.resume(&still) {
            tracing::warn!(error = %error, "cannot resume consumption");
        }
        self.consumer.context().set_paused(false);
        metrics::gauge!("analytics_service_processor_paused").set(0.0);
        tracing::info!("consumption resumed");
    }
}
