//! The bodies of successful answers, and of a batch whose events were all invalid.

use events_model::ValidationErrors;
use serde::Serialize;
use uuid::Uuid;

/// `202` for `POST /api/events`: `{"accepted":1,"event_ids":[id]}`.
#[derive(Debug, Clone, Serialize)]
pub struct SingleAccepted {
    pub accepted: usize,
    pub event_ids: [Uuid; 1],
}

/// `202` for `POST /api/events/batch` (and, with every event rejected, the
/// fields of its `400`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchReport {
    /// Events now in Kafka.
    pub accepted: usize,
    /// Their ids, in the order they were sent.
    pub event_ids: Vec<Uuid>,
    /// The invalid events by position, the first ones only: at most
    /// [`MAX_LISTED_PROBLEMS`] problems in all (a batch of thousands of bad
    /// events answers a bounded report).
    pub rejected: Vec<Rejection>,
    /// Every invalid event, listed or not.
    pub rejected_count: usize,
}

/// Problems one answer lists at most; past it invalid events are counted
/// (`rejected_count`), not listed.
pub const MAX_LISTED_PROBLEMS: usize = 100;

/// The invalid events of a batch as they are found, listed up to
/// [`MAX_LISTED_PROBLEMS`] problems.
#[derive(Debug, Default)]
pub struct Rejections {
    listed: Vec<Rejection>,
    problems: usize,
    count: usize,
}

impl Rejections {
    pub fn push(&mut self, index: usize, mut errors: ValidationErrors) {
        self.count += 1;
        let room = MAX_LISTED_PROBLEMS - self.problems;
        if room > 0 {
            errors.0.truncate(room);
            self.problems += errors.len();
            self.listed.push(Rejection { index, errors });
        }
    }

    /// The answer for `event_ids` accepted besides these.
    pub fn report(self, event_ids: Vec<Uuid>) -> BatchReport {
        BatchReport { accepted: event_ids.len(), event_ids, rejected: self.listed, rejected_count: self.count }
    }
}

/// One invalid event of a batch.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rejection {
    /// 0-based position: the array index, or the event's line among the
    /// non-blank lines of an NDJSON body.
    pub index: usize,
    /// Every problem found, each naming its field.
    pub errors: ValidationErrors,
}

#[cfg(test)]
mod tests {
    use events_model::{ErrorCode, ValidationError};

    use super::*;

    fn problems(n: usize) -> ValidationErrors {
        ValidationErrors((0..n).map(|i| ValidationError::new(format!("f{i}"), ErrorCode::UnknownField, "x")).collect())
    }

    #[test]
    fn a_report_lists_at_most_the_first_hundred_problems_and_counts_every_event() {
        let mut rejections = Rejections::default();
        for index in 0..1000 {
            rejections.push(index, problems(3));
        }
        let report = rejections.report(vec![Uuid::nil()]);
        assert_eq!(report.accepted, 1);
        assert_eq!(report.rejected_count, 1000);
        let listed: usize = report.rejected.iter().map(|r| r.errors.len()).sum();
        assert_eq!(listed, MAX_LISTED_PROBLEMS);
        assert_eq!(report.rejected.len(), 34, "33 events of 3 and the first problem of the 34th");
        assert_eq!(report.rejected[33].index, 33);

        let mut few = Rejections::default();
        few.push(4, problems(2));
        let report = few.report(Vec::new());
        assert_eq!((report.rejected.len(), report.rejected_count), (1, 1));
    }
}
