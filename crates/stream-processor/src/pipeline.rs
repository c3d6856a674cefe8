//! The consumer loop: Kafka → batch → ClickHouse → commit.
//!
//! Runs on one blocking thread that owns the consumer. The order of effects
//! is what makes the pipeline lossless:
//!
//! 1. a message becomes an event in the batch, or a dead letter acknowledged by Kafka;
//! 2. the batch is inserted into ClickHouse. A transient failure (the
//!    server's state) is retried with backoff (consumption paused, the group
//!    membership kept alive by polling) until it succeeds; a permanent
//!    refusal (the rows' values: see [`crate::sink::Failure`]) is narrowed
//!    down by bisection ([`Pipeline::isolate`]) so the rows that cause it go
//!    to the dead-letter topic, acknowledged, and the rest is stored;
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

use dlq::{DeadLetter, DeadLetters};
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
    batch::{Batch, Fate},
    context::ProcessorContext,
    partials::PartialsPublisher,
    sink::{ClickHouseSink, Failure, InsertError, Refusal},
};

/// Counts a failed INSERT (the first of a batch, a retry, or one of a bisection) by class.
fn count_failure(error: &InsertError) {
    metrics::counter!("analytics_service_clickhouse_insert_failures_total", "class" => error.class()).increment(1);
}

/// The dead-letter reason of an event ClickHouse refused for good.
pub const REFUSED_REASON: &str = "clickhouse_refused";

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

/// Poll timeout while an insert runs: how late its end may be noticed.
const OVERLAP_POLL: Duration = Duration::from_millis(2);

/// What happened during an insert overlapped with reading.
struct Overlapped {
    inserted: Result<(), InsertError>,
    /// Partitions revoked meanwhile (already dropped from the next batch).
    revoked: Vec<i32>,
    /// `Err` when reading stopped because a dead letter could not be
    /// delivered before shutdown.
    reading: Result<(), Aborted>,
}

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
    ///
    /// Two batches alternate: while one is being inserted, the messages that
    /// follow are read and decoded into the other (see [`Self::flush`]).
    pub fn run(self) -> anyhow::Result<()> {
        self.consumer.subscribe(&[&self.source_topic])?;
        tracing::info!(topic = %self.source_topic, "consuming");
        let new_batch = || Batch::new(self.settings.batch_max_events, self.settings.batch_max_wait);
        let (mut batch, mut next) = (new_batch(), new_batch());

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
            self.forget_revoked(&mut [&mut batch]);
            if batch.is_due() {
                if self.flush(&mut batch, Some(&mut next), None).is_err() {
                    break;
                }
                // What was read during the insert is the batch being built now.
                std::mem::swap(&mut batch, &mut next);
            }
        }

        // `batch` precedes `next` in every partition: store them in that order,
        // and stop at the first that cannot be stored (nothing after it is committed).
        let deadline = Instant::now() + self.settings.shutdown_flush;
        for pending in [&mut batch, &mut next] {
            if pending.is_empty() {
                continue;
            }
            if self.flush(pending, None, Some(deadline)).is_err() {
                tracing::warn!(rows = pending.len(), "final batch not stored; it will be read again after restart");
                break;
            }
            tracing::info!("final batch stored and committed");
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
    ///
    /// With `next`, the messages that follow are read and decoded into it
    /// while the insert runs (decoding is most of the processor's CPU, the
    /// insert mostly waits for ClickHouse); they are committed only with
    /// `next`'s own flush, after this batch's offsets. Without it (final
    /// flushes) nothing more is read.
    fn flush(&self, batch: &mut Batch, mut next: Option<&mut Batch>, deadline: Option<Instant>) -> Result<(), Aborted> {
        let started = Instant::now();
        let (mut attempt, reading) = match next.as_deref_mut() {
            Some(next) => {
                let overlapped = self.insert_while_reading(batch, next);
                // Partitions revoked during the insert leave this batch too:
                // their rows may be stored, but their offsets are not ours to commit.
                self.drop_revoked(batch, &overlapped.revoked);
                (overlapped.inserted, overlapped.reading)
            }
            None => (self.insert_pending(batch), Ok(())),
        };
        let mut backoff = Backoff::new(self.settings.retry_initial, self.settings.retry_max);
        let mut paused: Option<TopicPartitionList> = None;
        let outcome = loop {
            let error = match attempt {
                Ok(()) => break Ok(()),
                Err(error) => error,
            };
            count_failure(&error);
            if let Failure::Permanent(refusal) = error.failure() {
                tracing::warn!(
                    error = %error,
                    rows = batch.pending().len(),
                    "clickhouse refused the batch for good; isolating the rows that cause it"
                );
                match self.isolate(batch, refusal) {
                    // Stored but for the refused rows, or interrupted by a transient failure.
                    Ok(isolated) => {
                        attempt = isolated;
                        continue;
                    }
                    Err(aborted) => break Err(aborted),
                }
            }
            metrics::counter!("analytics_service_clickhouse_insert_retries_total").increment(1);
            tracing::warn!(
                error = %error,
                rows = batch.len(),
                attempt = backoff.attempts() + 1,
                "clickhouse insert failed; retrying with backoff"
            );
            if reading.is_err() {
                break Err(Aborted);
            }
            if paused.is_none() {
                paused = self.pause();
            }
            let delay = backoff.next_delay();
            if let Err(aborted) =
                self.wait_keeping_membership(delay, Some((&mut *batch, next.as_deref_mut())), deadline)
            {
                break Err(aborted);
            }
            if batch.is_empty() {
                break Ok(()); // every partition of the batch was revoked meanwhile
            }
            attempt = self.insert_pending(batch);
        };
        if let Some(partitions) = paused {
            self.resume(&partitions);
        }
        outcome?;

        let rows = batch.len() - batch.dead_lettered();
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
        reading
    }

    /// One INSERT of the batch's events not stored or dead-lettered yet.
    fn insert_pending(&self, batch: &Batch) -> Result<(), InsertError> {
        let pending = batch.pending();
        self.runtime.block_on(self.sink.insert(batch.select(&pending)))
    }

    /// Narrows a permanently refused insert down to the rows that cause it,
    /// by bisection: each refused block is split in two halves inserted on
    /// their own; a half that goes in is stored, a refused half is split
    /// again, and a single refused row is sent to the dead-letter topic with
    /// ClickHouse's code and message. One bad row among n costs about
    /// 2·log2(n) small inserts; a refusal no single row causes (the
    /// partition limit of a block spanning too many months) ends with every
    /// row stored in smaller blocks.
    ///
    /// Returns `Ok(Err(_))` when a transient failure interrupts it: what was
    /// stored or dead-lettered so far stays settled in the batch, and the
    /// caller retries the rest with backoff.
    fn isolate(&self, batch: &mut Batch, refusal: Refusal) -> Result<Result<(), InsertError>, Aborted> {
        let mut refused = vec![(batch.pending(), refusal)];
        while let Some((indices, refusal)) = refused.pop() {
            if let [index] = indices[..] {
                self.dead_letter_refused(batch, index, &refusal)?;
                batch.settle(&[index], Fate::DeadLettered);
                continue;
            }
            let (left, right) = indices.split_at(indices.len() / 2);
            for half in [left, right] {
                match self.runtime.block_on(self.sink.insert(batch.select(half))) {
                    Ok(()) => batch.settle(half, Fate::Stored),
                    Err(error) => {
                        count_failure(&error);
                        match error.failure() {
                            Failure::Permanent(refusal) => refused.push((half.to_vec(), refusal)),
                            Failure::Transient => return Ok(Err(error)),
                        }
                    }
                }
            }
        }
        Ok(Ok(()))
    }

    /// Sends one refused event to the dead-letter topic, as the message it was
    /// read from (its wire form, key and origin), with the refusal as detail.
    fn dead_letter_refused(&self, batch: &Batch, index: usize, refusal: &Refusal) -> Result<(), Aborted> {
        let event = &batch.events()[index];
        let (partition, offset) = batch.origin(index);
        tracing::error!(
            event_id = %event.event_id,
            partition,
            offset,
            code = refusal.code,
            error = %refusal.message,
            "clickhouse refused an event for good"
        );
        let payload = event.to_wire();
        self.dead_letter(&DeadLetter {
            key: Some(event.kafka_key().as_bytes()),
            payload: &payload,
            reason: REFUSED_REASON,
            detail: refusal.describe(),
            source_topic: &self.source_topic,
            partition,
            offset,
        })
    }

    /// Runs the first insert of `batch` on a scoped thread while this one
    /// keeps polling, decoding into `next` (until it is full, shutdown, or
    /// the insert is done).
    fn insert_while_reading(&self, batch: &Batch, next: &mut Batch) -> Overlapped {
        let mut revoked = Vec::new();
        let mut reading = Ok(());
        let inserted = std::thread::scope(|scope| {
            let insert = scope.spawn(|| self.insert_pending(batch));
            while !insert.is_finished() && !next.is_full() && !self.shutdown.is_triggered() {
                if let Some(polled) = self.consumer.poll(OVERLAP_POLL) {
                    match polled {
                        Ok(message) => {
                            if let Err(aborted) = self.handle(&message, next) {
                                reading = Err(aborted);
                                break;
                            }
                        }
                        Err(error) => tracing::warn!(error = %error, "kafka consumer error"),
                    }
                }
                let now_revoked = self.consumer.context().take_revoked();
                self.drop_revoked(next, &now_revoked);
                revoked.extend(now_revoked);
            }
            insert.join().unwrap_or_else(|_| Err(InsertError::Panicked))
        });
        revoked.extend(self.consumer.context().take_revoked());
        self.drop_revoked(next, &revoked);
        Overlapped { inserted, revoked, reading }
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
    /// and giving up on shutdown (or at `deadline`, during the final flush).
    ///
    /// `retrying` is the batch whose insert is being retried and the batch
    /// that receives messages read meanwhile: revoked partitions leave both.
    /// A message read with no batch to receive it (while a dead letter is
    /// retried, or during a final flush) is sought back, to be read again.
    fn wait_keeping_membership(
        &self,
        delay: Duration,
        mut retrying: Option<(&mut Batch, Option<&mut Batch>)>,
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
                // Paused partitions deliver nothing; anything already in flight joins the next batch.
                let receiving = retrying.as_mut().and_then(|(_, next)| next.as_deref_mut());
                match (polled, receiving) {
                    (Ok(message), Some(next)) => self.handle(&message, next)?,
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
            if let Some((batch, next)) = retrying.as_mut() {
                match next.as_deref_mut() {
                    Some(next) => self.forget_revoked(&mut [&mut **batch, next]),
                    None => self.forget_revoked(&mut [&mut **batch]),
                }
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

    /// Drops the partitions revoked since the last call from every batch held.
    fn forget_revoked(&self, batches: &mut [&mut Batch]) {
        let revoked = self.consumer.context().take_revoked();
        for batch in batches {
            self.drop_revoked(batch, &revoked);
        }
    }

    fn drop_revoked(&self, batch: &mut Batch, revoked: &[i32]) {
        let dropped = batch.drop_partitions(revoked);
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
