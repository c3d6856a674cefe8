//! The batch being built: rows to insert and the Kafka offsets they cover.
//!
//! Pure bookkeeping, no I/O: the consumer loop feeds it messages, flushes it
//! when [`Batch::is_due`], and commits [`Batch::commit_offsets`] only after
//! the rows are durable in ClickHouse.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use events_model::EventRow;

/// Next offset to consume (last handled + 1) for each partition of the batch.
pub type Offsets = BTreeMap<i32, i64>;

#[derive(Debug)]
pub struct Batch {
    rows: Vec<EventRow>,
    /// Rows per partition, so a revoked partition's rows can be dropped.
    partition_of_row: Vec<i32>,
    next_offsets: Offsets,
    started: Option<Instant>,
    max_events: usize,
    max_wait: Duration,
}

impl Batch {
    pub fn new(max_events: usize, max_wait: Duration) -> Self {
        Self {
            rows: Vec::with_capacity(max_events.min(65_536)),
            partition_of_row: Vec::with_capacity(max_events.min(65_536)),
            next_offsets: Offsets::new(),
            started: None,
            max_events: max_events.max(1),
            max_wait,
        }
    }

    /// Adds a stored row read at `offset` of `partition`.
    pub fn push(&mut self, partition: i32, offset: i64, row: EventRow) {
        self.rows.push(row);
        self.partition_of_row.push(partition);
        self.advance(partition, offset);
    }

    /// Records a message handled without a row (dead-lettered), so its offset is committed too.
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
        let before = self.rows.len();
        let mut keep = self.partition_of_row.iter().map(|p| !partitions.contains(p));
        self.rows.retain(|_| keep.next().unwrap_or(true));
        self.partition_of_row.retain(|p| !partitions.contains(p));
        self.next_offsets.retain(|p, _| !partitions.contains(p));
        if self.next_offsets.is_empty() {
            self.started = None;
        }
        before - self.rows.len()
    }

    pub fn rows(&self) -> &[EventRow] {
        &self.rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.next_offsets.is_empty()
    }

    pub fn commit_offsets(&self) -> &Offsets {
        &self.next_offsets
    }

    /// Full, or the oldest message has waited `max_wait`.
    pub fn is_due(&self) -> bool {
        self.rows.len() >= self.max_events || self.started.is_some_and(|s| s.elapsed() >= self.max_wait)
    }

    /// Time until the batch becomes due by age (for the poll timeout).
    pub fn time_left(&self) -> Option<Duration> {
        self.started.map(|s| self.max_wait.saturating_sub(s.elapsed()))
    }

    /// Empties the batch after a flush and commit.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.partition_of_row.clear();
        self.next_offsets.clear();
        self.started = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use events_model::Event;

    fn row(session: &str) -> EventRow {
        let body = format!(r#"{{"event_type":"video_start","session_id":"{session}","video_id":"v"}}"#);
        EventRow::from(&Event::parse_json(body.as_bytes(), Utc::now()).unwrap())
    }

    #[test]
    fn commit_offsets_are_one_past_the_highest_offset_per_partition() {
        let mut batch = Batch::new(10, Duration::from_secs(1));
        batch.push(0, 5, row("a"));
        batch.push(1, 9, row("b"));
        batch.skip(0, 6);
        batch.push(0, 7, row("c"));
        assert_eq!(batch.commit_offsets(), &Offsets::from([(0, 8), (1, 10)]));
        assert_eq!(batch.len(), 3);
    }

    #[test]
    fn due_when_full() {
        let mut batch = Batch::new(2, Duration::from_secs(3600));
        batch.push(0, 0, row("a"));
        assert!(!batch.is_due());
        batch.push(0, 1, row("b"));
        assert!(batch.is_due());
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
        batch.push(0, 0, row("a"));
        batch.push(1, 0, row("b"));
        batch.push(0, 1, row("c"));
        assert_eq!(batch.drop_partitions(&[0]), 2);
        assert_eq!(batch.rows().iter().map(|r| r.session_id.as_str()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(batch.commit_offsets(), &Offsets::from([(1, 1)]));
        assert_eq!(batch.drop_partitions(&[1]), 1);
        assert!(batch.is_empty());
        assert_eq!(batch.time_left(), None);
    }

    #[test]
    fn clear_resets_everything() {
        let mut batch = Batch::new(10, Duration::from_secs(1));
        batch.push(0, 0, row("a"));
        batch.clear();
        assert!(batch.is_empty() && batch.rows().is_empty() && !batch.is_due());
    }
}
