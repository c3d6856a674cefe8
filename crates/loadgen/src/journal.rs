//! What the gateway answered for each event, kept for a caller that checks
//! the pipeline afterwards (`cargo xtask chaos` compares what was stored and
//! what the query API answers with the events the gateway accepted).

use std::sync::Mutex;

/// The events of a run by outcome, each as the JSON object that was sent.
/// Give one to [`crate::Options::journal`]; memory grows with the run (about
/// 400 bytes an event), so keep runs that use it short.
#[derive(Debug, Default)]
pub struct Journal {
    accepted: Mutex<Vec<Vec<u8>>>,
    unresolved: Mutex<Vec<Vec<u8>>>,
}

impl Journal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Events the gateway answered 202 for (a retried batch counts once: it
    /// is recorded when its answer came).
    pub fn accepted(&self) -> Vec<Vec<u8>> {
        self.accepted.lock().expect("journal lock").clone()
    }

    /// Events sent without an answer deciding them (the run stopped while
    /// their batch was still being retried): they may or may not have
    /// reached Kafka.
    pub fn unresolved(&self) -> Vec<Vec<u8>> {
        self.unresolved.lock().expect("journal lock").clone()
    }

    /// The first `n` events accepted (in the order their answers came).
    pub fn accepted_prefix(&self, n: usize) -> Vec<Vec<u8>> {
        let accepted = self.accepted.lock().expect("journal lock");
        accepted[..n.min(accepted.len())].to_vec()
    }

    /// How many events were accepted so far.
    pub fn accepted_count(&self) -> usize {
        self.accepted.lock().expect("journal lock").len()
    }

    pub(crate) fn record_accepted(&self, events: impl IntoIterator<Item = Vec<u8>>) {
        self.accepted.lock().expect("journal lock").extend(events);
    }

    pub(crate) fn record_unresolved(&self, events: impl IntoIterator<Item = Vec<u8>>) {
        self.unresolved.lock().expect("journal lock").extend(events);
    }
}
