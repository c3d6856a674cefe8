//! Exponential backoff with full jitter and a capped interval.

use std::time::Duration;

use seeded_rng::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    /// Seeded per process, so replicas draw different jitter.
    rng: Rng,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let seed = u64::from(std::process::id())
            ^ (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos().into()));
        Self { initial, max: max.max(initial), attempt: 0, rng: Rng::new(seed) }
    }

    /// The ceiling of the next wait: `initial × 2^attempt`, capped at `max`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next wait, uniformly drawn in [ceiling/2, ceiling] so replicas do not retry in step.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_micros(self.rng.below(spread))
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_then_caps() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let ceilings: Vec<_> = (0..7)
            .map(|_| {
                let c = backoff.ceiling();
                backoff.next_delay();
                c.as_millis()
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn jittered_delay_stays_within_half_to_full_ceiling() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for _ in 0..50 {
            let ceiling = backoff.ceiling();
            let delay = backoff.next_delay();
            assert!(delay >= ceiling / 2 && delay <= ceiling, "{delay:?} outside [{:?}, {ceiling:?}]", ceiling / 2);
        }
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_millis(100));
        assert_eq!(backoff.attempts(), 0);
    }
}
