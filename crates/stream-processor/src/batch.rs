//! The batch being built: the parsed events to store and the Kafka offsets
//! they cover.
//!
//! Pure bookkeeping, no I/O: the consumer loop feeds it messages, flushes it
//! when [`Batch::is_due`], and commits [`Batch::commit_offsets`] only after
//! the events are durable in ClickHouse. The batch keeps the parsed
//! [`Event`]s (each becomes an `EventRow` as it is written to ClickHouse, so
//! nothing is held twice) because the realtime partials are built from them
//! after the commit ([`Batch::events_by_partition`]).

use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};

use events_model::Event;

/// Next offset to consume (last handled + 1) for each partition of the batch.
pub type Offsets = BTreeMap<i32, i64>;

/// Where an event of the batch stands in its flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Not stored yet.
    Pending,
    /// Acknowledged by ClickHouse (a part of the batch stored on its own
    /// while a refused block was being narrowed down).
    Stored,
    /// Refused by ClickHouse for good and sent to the dead-letter topic: not
    /// stored, not in the realtime partials, its offset still committed.
    DeadLettered,
}

#[derive(Debug)]
pub struct Batch {
    events: Vec<Event>,
    /// The partition of each event, so a revoked partition's events can be
    /// dropped and the partials grouped.
    partition_of_event: Vec<i32>,
    /// The offset each event was read at (for its dead letter, if any).
    offset_of_event: Vec<i64>,
    fate_of_event: Vec<Fate>,
    next_offsets: Offsets,
    started: Option<Instant>,
    max_events: usize,
    max_wait: Duration,
}

impl Batch {
    pub fn new(max_events: usize, max_wait: Duration) -> Self {
        Self {
            events: Vec::with_capacity(max_events.min(65_536)),
            partition_of_event: Vec::with_capacity(max_events.min(65_536)),
            offset_of_event: Vec::with_capacity(max_events.min(65_536)),
            fate_of_event: Vec::with_capacity(max_events.min(65_536)),
            next_offsets: Offsets::new(),
            started: None,
            max_events: max_events.max(1),
            max_wait,
        }
    }

    /// Adds a valid event read at `offset` of `partition`.
    pub fn push(&mut self, partition: i32, offset: i64, event: Event) {
        self.events.push(event);
        self.partition_of_event.push(partition);
        self.offset_of_event.push(offset);
        self.fate_of_event.push(Fate::Pending);
        self.advance(partition, offset);
    }

    /// Records a message handled without an event (dead-lettered), so its offset is committed too.
    pub fn skip(&mut self, partition: i32, offset: i64) {
        self.advance(partition, offset);
    }

    fn advance(&mut self, partition: i32, offset: i64) {
        self.started.get_or_insert_with(Instant::now);
        let next = self.next_offsets.entry(partition).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
    }

    /// Forgets everything read from `partitions` (they were revoked: their
    /// new owner re-reads them from the last committed offset).
    pub fn drop_partitions(&mut self, partitions: &[i32]) -> usize {
        if partitions.is_empty() {
            return 0;
        }
        let before = self.events.len();
        let kept: Vec<bool> = self.partition_of_event.iter().map(|p| !partitions.contains(p)).collect();
        retain_by(&mut self.events, &kept);
        retain_by(&mut self.offset_of_event, &kept);
        retain_by(&mut self.fate_of_event, &kept);
        self.partition_of_event.retain(|p| !partitions.contains(p));
        self.next_offsets.retain(|p, _| !partitions.contains(p));
        if self.next_offsets.is_empty() {
            self.started = None;
        }
        before - self.events.len()
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The indices of the events not stored or dead-lettered yet, in order.
    pub fn pending(&self) -> Vec<usize> {
        (0..self.events.len()).filter(|&i| self.fate_of_event[i] == Fate::Pending).collect()
    }

    /// The events at `indices` (indices from [`Self::pending`]).
    pub fn select<'a>(&'a self, indices: &'a [usize]) -> impl Iterator<Item = &'a Event> + 'a {
        indices.iter().map(|&i| &self.events[i])
    }

    /// The partition and offset an event was read at.
    pub fn origin(&self, index: usize) -> (i32, i64) {
        (self.partition_of_event[index], self.offset_of_event[index])
    }

    pub fn settle(&mut self, indices: &[usize], fate: Fate) {
        for &i in indices {
            self.fate_of_event[i] = fate;
        }
    }

    /// How many events were dead-lettered during this flush.
    pub fn dead_lettered(&self) -> usize {
        self.fate_of_event.iter().filter(|&&f| f == Fate::DeadLettered).count()
    }

    /// The events of each partition, in offset order, each `event_id` once
    /// (the first copy; a redelivered or retried copy in the same batch is
    /// the same event). Copies of an event share its Kafka key, so they are
    /// always in the same partition.
    pub fn events_by_partition(&self) -> BTreeMap<i32, Vec<&Event>> {
        let mut grouped: BTreeMap<i32, Vec<&Event>> = BTreeMap::new();
        let mut seen = HashSet::with_capacity(self.events.len());
        let events = self.events.iter().zip(&self.partition_of_event).zip(&self.fate_of_event);
        for ((event, &partition), &fate) in events {
            if fate != Fate::DeadLettered && seen.insert(event.event_id) {
                grouped.entry(partition).or_default().push(event);
            }
        }
        grouped
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.next_offsets.is_empty()
    }

    pub fn commit_offsets(&self) -> &Offsets {
        &self.next_offsets
    }

    /// Holds `max_events` events.
    pub fn is_full(&self) -> bool {
        self.events.len() >= self.max_events
    }

    /// Full, or the oldest message has waited `max_wait`.
    pub fn is_due(&self) -> bool {
        self.is_full() || self.started.is_some_and(|s| s.elapsed() >= self.max_wait)
    }

    /// Time until the batch becomes due by age (for the poll timeout).
    pub fn time_left(&self) -> Option<Duration> {
        self.started.map(|s| self.max_wait.saturating_sub(s.elapsed()))
    }

    /// Empties the batch after a flush and commit.
    pub fn clear(&mut self) {
        self.events.clear();
        self.partition_of_event.clear();
        self.offset_of_event.clear();
        self.fate_of_event.clear();
        self.next_offsets.clear();
        self.started = None;
    }
}

/// Keeps the items whose flag in `kept` is true.
fn retain_by<T>(items: &mut Vec<T>, kept: &[bool]) {
    let mut flags = kept.iter();
    items.retain(|_| flags.next().copied().unwrap_or(true));
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use events_model::Event;

    fn event(session: &str) -> Event {
        let body = format!(r#"{{"event_type":"video_start","session_id":"{session}","video_id":"v"}}"#);
        Event::parse_json(body.as_bytes(), Utc::now()).unwrap()
    }

    #[test]
    fn commit_offsets_are_one_past_the_highest_offset_per_partition() {
        let mut batch = Batch::new(10, Duration::from_secs(1));
        batch.push(0, 5, event("a"));
        batch.push(1, 9, event("b"));
        batch.skip(0, 6);
        batch.push(0, 7, event("c"));
        assert_eq!(batch.commit_offsets(), &Offsets::from([(0, 8), (1, 10)]));
        assert_eq!(batch.len(), 3);
    }

    #[test]
    fn due_when_full() {
        let mut batch = Batch::new(2, Duration::from_secs(3600));
        batch.push(0, 0, event("a"));
        assert!(!batch.is_due());
        assert!(!batch.is_full());
        batch.push(0, 1, event("b"));
        assert!(batch.is_due() && batch.is_full());
    }

    #[test]
    fn due_when_old_even_if_only_skips() {
        let mut batch = Batch::new(100, Duration::ZERO);
        assert!(!batch.is_due(), "an empty batch is never due");
        batch.skip(3, 0);
        assert!(batch.is_due());
        assert!(!batch.is_empty());
    }

    #[test]
    fn revoked_partitions_leave_the_batch() {
        let mut batch = Batch::new(10, Duration::from_secs(1));
        batch.push(0, 0, event("a"));
        batch.push(1, 0, event("b"));
        batch.push(0, 1, event("c"));
        assert_eq!(batch.drop_partitions(&[0]), 2);
        assert_eq!(batch.events().iter().map(|r| r.session_id.as_str()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(batch.commit_offsets(), &Offsets::from([(1, 1)]));
        assert_eq!(batch.drop_partitions(&[1]), 1);
        assert!(batch.is_empty());
        assert_eq!(batch.time_left(), None);
    }

    #[test]
    fn clear_resets_everything() {
        let mut batch = Batch::new(10, Duration::from_secs(1));
        batch.push(0, 0, event("a"));
        batch.clear();
        assert!(batch.is_empty() && batch.events().is_empty() && !batch.is_due());
        assert!(batch.events_by_partition().is_empty());
    }

    #[test]
    fn events_by_partition_keep_offset_order_and_each_id_once() {
        let mut batch = Batch::new(10, Duration::from_secs(1));
        let (a, b, c) = (event("a"), event("b"), event("c"));
        batch.push(0, 0, a.clone());
        batch.push(1, 0, b.clone());
        batch.push(0, 1, c.clone());
        batch.push(0, 2, a.clone()); // a redelivered copy
        let grouped = batch.events_by_partition();
        let ids = |p: i32| grouped[&p].iter().map(|e| e.event_id).collect::<Vec<_>>();
        assert_eq!(ids(0), [a.event_id, c.event_id]);
        assert_eq!(ids(1), [b.event_id]);
        assert_eq!(batch.len(), 4, "every copy is still stored");
    }

    #[test]
    fn settled_events_leave_the_pending_ones_and_dead_letters_the_partials() {
        let mut batch = Batch::new(10, Duration::from_secs(1));
        let (a, b, c) = (event("a"), event("b"), event("c"));
        batch.push(0, 3, a.clone());
        batch.push(1, 8, b.clone());
        batch.push(0, 4, c.clone());
        batch.settle(&[0], Fate::Stored);
        batch.settle(&[2], Fate::DeadLettered);
        assert_eq!(batch.pending(), [1]);
        assert_eq!(batch.select(&[1, 2]).map(|e| e.event_id).collect::<Vec<_>>(), [b.event_id, c.event_id]);
        assert_eq!(batch.origin(2), (0, 4));
        assert_eq!(batch.dead_lettered(), 1);
        let grouped = batch.events_by_partition();
        assert_eq!(grouped[&0].iter().map(|e| e.event_id).collect::<Vec<_>>(), [a.event_id]);
        assert_eq!(batch.commit_offsets(), &Offsets::from([(0, 5), (1, 9)]), "a dead letter's offset is committed");
        // Revoking partition 0 keeps each remaining event's fate and origin.
        batch.drop_partitions(&[0]);
        assert_eq!((batch.pending(), batch.origin(0)), (vec![0], (1, 8)));
    }
}
