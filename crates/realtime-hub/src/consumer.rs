//! The two Kafka readers: raw events (from the end) and realtime partials
//! (from `lookback` ago by message time), each on a dedicated thread with
//! rdkafka's `BaseConsumer` (a `StreamConsumer` hangs in `Drop` with rdkafka
//! 0.39 here).
//!
//! Every hub replica reads every partition of both topics: partitions are
//! assigned by hand, under a group id of its own, and no offset is ever
//! committed, so replicas never share work and each has the full picture.
//! The partition lists are re-read periodically, so partitions added later
//! (or a topic created after the hub started) are picked up.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use rdkafka::{
    Message as _, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer as _},
    message::BorrowedMessage,
};
use service_kit::{KafkaConfig, Shutdown};

/// Budget of one metadata, watermark or offsets-for-times request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a poll blocks, so shutdown is seen within it.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// How often the partition list is re-read while the topic does not exist.
const MISSING_TOPIC_REFRESH: Duration = Duration::from_secs(1);

/// Where a reader starts in each partition it assigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the end as of the assignment (partitions that appear later: from
    /// a little before they were first seen).
    End,
    /// At the first message not older than this, by message timestamp.
    Lookback(Duration),
}

/// Whether a reader has what it needs to serve: its topic's partitions
/// assigned (or the topic absent) and, for [`Start::Lookback`], everything
/// that was in them at assignment read.
#[derive(Debug, Default)]
pub struct ReaderStatus {
    ready: AtomicBool,
}

impl ReaderStatus {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }
}

/// One topic read from all of its partitions.
pub struct TopicReader {
    /// `raw` or `partials`: the label in logs and metrics.
    pub name: &'static str,
    pub topic: String,
    pub start: Start,
    pub refresh: Duration,
    pub status: Arc<ReaderStatus>,
    consumer: BaseConsumer,
}

impl TopicReader {
    /// Creates the consumer (nothing is fetched until [`TopicReader::run`]).
    pub fn new(
        kafka: &KafkaConfig,
        name: &'static str,
        topic: String,
        start: Start,
        refresh: Duration,
    ) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = service_kit::deps::kafka::client_config(kafka)
            .set("group.id", format!("realtime-hub-{}", uuid::Uuid::new_v4().simple()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("allow.auto.create.topics", "false")
            .set("auto.offset.reset", "latest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "100")
            // The prefetch queue bounds the reader's memory (librdkafka's default is 64 MiB).
            .set("queued.max.messages.kbytes", "16384")
            .create()
            .with_context(|| format!("cannot create the kafka consumer of {topic}"))?;
        Ok(Self { name, topic, start, refresh, status: Arc::new(ReaderStatus::default()), consumer })
    }

    /// Reads until `shutdown`, giving every message to `handle`.
    pub fn run(self, shutdown: &Shutdown, mut handle: impl FnMut(&BorrowedMessage<'_>)) {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        // What was in each partition at the first assignment, until read.
        let mut catching_up: Option<HashMap<i32, i64>> = None;
        let mut first = true;
        let mut refresh_at = Instant::now();
        let mut errors = ErrorLog::default();
        while !shutdown.is_triggered() {
            if Instant::now() >= refresh_at {
                match self.assign_new_partitions(&mut next, first) {
                    Ok(Assigned { exists, targets }) => {
                        if first {
                            first = false;
                            tracing::info!(topic = %self.topic, exists, partitions = next.len(), "kafka topic assigned");
                            catching_up = Some(targets);
                        }
                        refresh_at = Instant::now() + if exists { self.refresh } else { MISSING_TOPIC_REFRESH };
                    }
                    Err(error) => {
                        errors.warn(&self.topic, "cannot assign the kafka topic's partitions; retrying", &error);
                        refresh_at = Instant::now() + MISSING_TOPIC_REFRESH;
                    }
                }
            }
            let polled = self.consumer.poll(POLL_SLICE);
            match polled {
                Some(Ok(message)) => {
                    next.insert(message.partition(), message.offset() + 1);
                    handle(&message);
                    if let Some(targets) = catching_up.as_mut() {
                        if targets.get(&message.partition()).is_some_and(|&end| message.offset() + 1 >= end) {
                            targets.remove(&message.partition());
                        }
                    }
                }
                Some(Err(error)) => {
                    errors.warn(&self.topic, "kafka consumer error", &anyhow::Error::new(error));
                }
                None => {
                    // Idle: the fetch position also moves past gaps (deleted or compacted offsets).
                    if let (Some(targets), Ok(positions)) =
                        (catching_up.as_mut().filter(|t| !t.is_empty()), self.consumer.position())
                    {
                        for element in positions.elements() {
                            if let Offset::Offset(position) = element.offset() {
                                if targets.get(&element.partition()).is_some_and(|&end| position >= end) {
                                    targets.remove(&element.partition());
                                }
                            }
                        }
                    }
                }
            }
            if catching_up.as_ref().is_some_and(HashMap::is_empty) {
                catching_up = None;
                if !self.status.is_ready() {
                    tracing::info!(topic = %self.topic, reader = self.name, "kafka reader caught up");
                    self.status.set_ready();
                }
            }
        }
        tracing::info!(topic = %self.topic, reader = self.name, "kafka reader stopped");
    }

    /// Assigns the partitions not assigned yet, keeping the others where they are.
    fn assign_new_partitions(&self, next: &mut BTreeMap<i32, i64>, first: bool) -> anyhow::Result<Assigned> {
        let metadata = self.consumer.fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)?;
        let Some(topic) = metadata.topics().iter().find(|t| t.name() == self.topic && t.error().is_none()) else {
            return Ok(Assigned { exists: false, targets: HashMap::new() });
        };
        let new: Vec<i32> = topic.partitions().iter().map(|p| p.id()).filter(|id| !next.contains_key(id)).collect();
        let mut targets = HashMap::new();
        if new.is_empty() {
            return Ok(Assigned { exists: true, targets });
        }
        let lookback = match self.start {
            Start::End if first => None,
            Start::End => Some(self.refresh + Duration::from_secs(5)),
            Start::Lookback(lookback) => Some(lookback),
        };
        let mut starts = BTreeMap::new();
        let mut ends = BTreeMap::new();
        for &partition in &new {
            let (_, high) = self.consumer.fetch_watermarks(&self.topic, partition, REQUEST_TIMEOUT)?;
            ends.insert(partition, high);
            starts.insert(partition, high);
        }
        if let Some(lookback) = lookback {
            let since = now_ms().saturating_sub(u64::try_from(lookback.as_millis()).unwrap_or(u64::MAX));
            let mut query = TopicPartitionList::new();
            for &partition in &new {
                query.add_partition_offset(&self.topic, partition, Offset::Offset(since as i64))?;
            }
            for element in self.consumer.offsets_for_times(query, REQUEST_TIMEOUT)?.elements() {
                // No message that recent: start at the end.
                if let Offset::Offset(offset) = element.offset() {
                    starts.insert(element.partition(), offset);
                }
            }
        }
        for (&partition, &start) in &starts {
            let end = ends[&partition];
            if matches!(self.start, Start::Lookback(_)) && start < end {
                targets.insert(partition, end);
            }
        }
        let mut assignment = TopicPartitionList::new();
        for (&partition, &offset) in next.iter().chain(starts.iter()) {
            assignment.add_partition_offset(&self.topic, partition, Offset::Offset(offset))?;
        }
        self.consumer.assign(&assignment)?;
        tracing::info!(
            topic = %self.topic,
            reader = self.name,
            partitions = ?new,
            to_read = targets.values().sum::<i64>() - targets.keys().map(|p| starts[p]).sum::<i64>(),
            "assigned kafka partitions"
        );
        next.extend(starts);
        Ok(Assigned { exists: true, targets })
    }
}

struct Assigned {
    exists: bool,
    /// Per newly assigned partition with something to read: its end.
    targets: HashMap<i32, i64>,
}

/// Logs a repeated error at most every 10 s.
#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn warn(&mut self, topic: &str, message: &'static str, error: &anyhow::Error) {
        if self.last.is_some_and(|last| last.elapsed() < Duration::from_secs(10)) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(topic, error = %format!("{error:#}"), suppressed = self.suppressed, "{message}");
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

/// Milliseconds since the epoch, by the wall clock.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
