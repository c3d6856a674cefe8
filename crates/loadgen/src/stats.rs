//! Counters shared by the generator's tasks, the snapshots a progress display
//! reads, and the end-of-run summary.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use serde::Serialize;

/// How many rejection reasons are kept (a rejection is a generator bug; the
/// first few tell what it is).
pub const MAX_REJECTION_REASONS: usize = 5;

/// POST latencies in logarithmic buckets 2 % wide: bounded memory for runs of
/// any length, percentiles within 2 %.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
    max_us: u64,
}

/// Bucket width ratio.
const GROWTH: f64 = 1.02;
/// Buckets up to 1.02^1100 µs ≈ 50 minutes; longer goes in the last one.
const BUCKETS: usize = 1100;

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self { buckets: vec![0; BUCKETS], count: 0, max_us: 0 }
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, latency: Duration) {
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        let index = if us <= 1 { 0 } else { ((us as f64).ln() / GROWTH.ln()).ceil() as usize };
        self.buckets[index.min(BUCKETS - 1)] += 1;
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The latency below which a share `q` (0..=1) of the samples fall: the
    /// upper bound of its bucket, never above the largest sample.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                if index == BUCKETS - 1 {
                    break;
                }
                let upper = GROWTH.powi(index as i32).round() as u64;
                return Some(Duration::from_micros(upper.min(self.max_us)));
            }
        }
        Some(Duration::from_micros(self.max_us))
    }

    pub fn max(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.max_us))
    }
}

/// Live counters, updated by the simulator loop and the senders.
#[derive(Debug)]
pub struct Stats {
    /// When the traffic began (after the catalog upload).
    traffic_started: Mutex<Option<Instant>>,
    /// Events the simulator produced.
    pub generated: AtomicU64,
    /// Events handed to a sender (counted once, however often retried).
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    /// Events given up on: still unacknowledged when the run was aborted.
    pub failed: AtomicU64,
    /// Requests repeated after a 503, another 5xx, 429 or a connection error.
    pub retries: AtomicU64,
    /// HTTP exchanges that got an answer.
    pub requests: AtomicU64,
    pub batches_in_flight: AtomicU64,
    pub active_sessions: AtomicU64,
    pub sessions_started: AtomicU64,
    /// Age of the oldest event of the batch last handed to a sender: how far
    /// the generator runs behind the wall clock.
    pub lag_ms: AtomicI64,
    pub max_lag_ms: AtomicI64,
    /// Videos stored in the query API's catalog before the traffic began.
    pub catalog_videos: AtomicU64,
    latency: Mutex<LatencyHistogram>,
    rejections: Mutex<Vec<String>>,
    last_retry_reason: Mutex<Option<String>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            traffic_started: Mutex::new(None),
            generated: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            batches_in_flight: AtomicU64::new(0),
            active_sessions: AtomicU64::new(0),
            sessions_started: AtomicU64::new(0),
            lag_ms: AtomicI64::new(0),
            max_lag_ms: AtomicI64::new(0),
            catalog_videos: AtomicU64::new(0),
            latency: Mutex::new(LatencyHistogram::default()),
            rejections: Mutex::new(Vec::new()),
            last_retry_reason: Mutex::new(None),
        }
    }
}

impl Stats {
    pub fn record_latency(&self, latency: Duration) {
        self.requests.fetch_add(1, Relaxed);
        lock(&self.latency).record(latency);
    }

    pub fn latency(&self) -> LatencyHistogram {
        lock(&self.latency).clone()
    }

    /// Keeps the first [`MAX_REJECTION_REASONS`] reasons.
    pub fn record_rejection_reason(&self, reason: String) {
        let mut reasons = lock(&self.rejections);
        if reasons.len() < MAX_REJECTION_REASONS {
            reasons.push(reason);
        }
    }

    pub fn record_retry(&self, reason: String) {
        self.retries.fetch_add(1, Relaxed);
        *lock(&self.last_retry_reason) = Some(reason);
    }

    pub fn record_lag(&self, lag_ms: i64) {
        self.lag_ms.store(lag_ms, Relaxed);
        self.max_lag_ms.fetch_max(lag_ms, Relaxed);
    }

    /// Marks the start of the traffic: [`Snapshot::elapsed`] counts from here.
    pub fn mark_traffic_start(&self) {
        *lock(&self.traffic_started) = Some(Instant::now());
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            elapsed: lock(&self.traffic_started).map(|t| t.elapsed()).unwrap_or_default(),
            generated: self.generated.load(Relaxed),
            sent: self.sent.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            failed: self.failed.load(Relaxed),
            retries: self.retries.load(Relaxed),
            requests: self.requests.load(Relaxed),
            batches_in_flight: self.batches_in_flight.load(Relaxed),
            active_sessions: self.active_sessions.load(Relaxed),
            sessions_started: self.sessions_started.load(Relaxed),
            lag_ms: self.lag_ms.load(Relaxed),
            rejection_reasons: lock(&self.rejections).clone(),
            last_retry_reason: lock(&self.last_retry_reason).clone(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data stays consistent even if a holder panicked (plain counters).
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The counters at one moment, for a progress display.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Since the traffic began (zero during the catalog upload).
    pub elapsed: Duration,
    pub generated: u64,
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub failed: u64,
    pub retries: u64,
    pub requests: u64,
    pub batches_in_flight: u64,
    pub active_sessions: u64,
    pub sessions_started: u64,
    pub lag_ms: i64,
    /// The first rejection reasons (at most [`MAX_REJECTION_REASONS`]).
    pub rejection_reasons: Vec<String>,
    /// Why the last retry happened.
    pub last_retry_reason: Option<String>,
}

/// The end-of-run report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub salt: u64,
    pub target_rate: f64,
    /// Seconds of traffic (from the first session to the stop).
    pub duration_seconds: f64,
    pub generated: u64,
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Given up: unacknowledged when the run was aborted.
    pub failed: u64,
    /// Generated but never handed to a sender (the run was aborted first).
    pub unsent: u64,
    pub retries: u64,
    pub requests: u64,
    /// Accepted events per second of traffic.
    pub achieved_rate: f64,
    pub sessions_started: u64,
    pub sessions_active_at_end: u64,
    pub catalog_videos: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    /// Largest age of a batch's oldest event when it was handed to a sender.
    pub max_lag_ms: i64,
    /// Events generated by type.
    pub events_by_type: BTreeMap<String, u64>,
    pub rejection_reasons: Vec<String>,
}

impl Summary {
    /// Whether every event sent was accepted and none were lost.
    pub fn is_clean(&self) -> bool {
        self.rejected == 0 && self.failed == 0 && self.unsent == 0 && self.accepted == self.sent
    }
}

pub(crate) fn millis(duration: Option<Duration>) -> Option<f64> {
    duration.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_two_percent() {
        let mut histogram = LatencyHistogram::default();
        assert_eq!(histogram.quantile(0.5), None);
        for ms in 1..=1000u64 {
            histogram.record(Duration::from_millis(ms));
        }
        let p50 = histogram.quantile(0.5).unwrap().as_secs_f64() * 1e3;
        let p99 = histogram.quantile(0.99).unwrap().as_secs_f64() * 1e3;
        assert!((500.0..=510.0).contains(&p50), "{p50}");
        assert!((990.0..=1000.0).contains(&p99), "{p99}");
        assert_eq!(histogram.quantile(1.0), Some(Duration::from_millis(1000)));
        assert_eq!(histogram.max(), Some(Duration::from_millis(1000)));
        assert_eq!(histogram.count(), 1000);
    }

    #[test]
    fn histogram_takes_extremes() {
        let mut histogram = LatencyHistogram::default();
        histogram.record(Duration::ZERO);
        histogram.record(Duration::from_secs(100_000));
        assert_eq!(histogram.quantile(0.0).unwrap(), Duration::from_micros(1));
        assert_eq!(histogram.quantile(1.0).unwrap(), Duration::from_secs(100_000));
    }

    #[test]
    fn only_the_first_rejection_reasons_are_kept() {
        let stats = Stats::default();
        for i in 0..20 {
            stats.record_rejection_reason(format!("reason {i}"));
        }
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.rejection_reasons.len(), MAX_REJECTION_REASONS);
        assert_eq!(snapshot.rejection_reasons[0], "reason 0");
    }
}
