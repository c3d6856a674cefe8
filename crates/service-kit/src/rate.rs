//! Rate limits keyed by API key or client IP (`governor`'s GCRA).
//!
//! Each limit is per replica: with N replicas behind a load balancer a key
//! gets up to N times the configured rate (`docs/security.md`). A refusal
//! carries how long to wait, sent as `Retry-After` (whole seconds, at least
//! 1) and counted in `analytics_service_rate_limited_total{limit, key}`.

use std::{
    hash::Hash,
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use actix_web::{HttpResponse, http::header};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
};

/// Checks between two sweeps of keys whose state is back at rest, which
/// bounds the memory of limits keyed by client IP.
const SWEEP_EVERY: u64 = 4096;

/// One limit (a rate with a burst) per key; `None` inside means no limit.
pub struct KeyedLimit<K: Hash + Eq + Clone> {
    name: &'static str,
    limiter: Option<DefaultKeyedRateLimiter<K>>,
    clock: DefaultClock,
    checks: AtomicU64,
}

/// A refused request: wait this long before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub limit: &'static str,
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        (self.retry_after.as_millis().div_ceil(1000) as u64).max(1)
    }

    /// The 429 answer: `{"error": "rate_limited", "message", "limit", "retry_after_seconds"}`.
    pub fn response(&self) -> HttpResponse {
        let secs = self.retry_after_secs();
        HttpResponse::TooManyRequests().insert_header((header::RETRY_AFTER, secs.to_string())).json(serde_json::json!({
            "error": "rate_limited",
            "message": format!("over the {} limit; retry after {secs} s", self.limit.replace('_', " ")),
            "limit": self.limit,
            "retry_after_seconds": secs,
        }))
    }
}

impl<K: Hash + Eq + Clone> KeyedLimit<K> {
    /// `per_second` events per second with bursts of `burst` (0 rate: no limit).
    pub fn per_second(name: &'static str, per_second: u32, burst: u32) -> Self {
        let quota = NonZeroU32::new(per_second)
            .map(|rate| Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate)));
        Self::with_quota(name, quota)
    }

    /// `per_minute` events per minute, all of them available at once (0: no limit).
    pub fn per_minute(name: &'static str, per_minute: u32) -> Self {
        Self::with_quota(name, NonZeroU32::new(per_minute).map(Quota::per_minute))
    }

    fn with_quota(name: &'static str, quota: Option<Quota>) -> Self {
        Self { name, limiter: quota.map(RateLimiter::keyed), clock: DefaultClock::default(), checks: AtomicU64::new(0) }
    }

    /// Takes `n` units for `key`, or says how long to wait. More units than
    /// the burst can never pass: they are refused with a one-second wait.
    /// `label` is the key's bounded name for the metric (a key's name, never
    /// an IP address).
    pub fn check(&self, key: &K, n: u32, label: &str) -> Result<(), Limited> {
        let (Some(limiter), Some(n)) = (&self.limiter, NonZeroU32::new(n)) else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        let retry_after = match limiter.check_key_n(key, n) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(not_until)) => not_until.wait_time_from(self.clock.now()),
            Err(_insufficient_capacity) => Duration::from_secs(1),
        };
        metrics::counter!("analytics_service_rate_limited_total", "limit" => self.name, "key" => label.to_owned())
            .increment(1);
        Err(Limited { limit: self.name, retry_after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_waits_and_other_keys_are_untouched() {
        let limit = KeyedLimit::per_second("requests_per_second", 2, 3);
        for _ in 0..3 {
            limit.check(&"a", 1, "a").unwrap();
        }
        let refused = limit.check(&"a", 1, "a").unwrap_err();
        assert_eq!(refused.limit, "requests_per_second");
        assert!(refused.retry_after <= Duration::from_millis(500), "{refused:?}");
        assert_eq!(refused.retry_after_secs(), 1);
        limit.check(&"b", 3, "b").unwrap();
    }

    #[test]
    fn more_units_than_the_burst_are_refused_and_zero_means_no_limit() {
        let limit = KeyedLimit::per_second("events_per_second", 10, 10);
        assert!(limit.check(&"a", 11, "a").is_err());
        limit.check(&"a", 10, "a").unwrap();
        let open = KeyedLimit::per_second("events_per_second", 0, 0);
        for _ in 0..10_000 {
            open.check(&"a", 1_000, "a").unwrap();
        }
    }

    #[test]
    fn a_per_minute_limit_says_how_long_to_wait_in_whole_seconds() {
        let limit = KeyedLimit::per_minute("auth_failures_per_minute", 2);
        limit.check(&1u8, 1, "by_ip").unwrap();
        limit.check(&1u8, 1, "by_ip").unwrap();
        let refused = limit.check(&1u8, 1, "by_ip").unwrap_err();
        assert!((29..=30).contains(&refused.retry_after_secs()), "{refused:?}");
        let response = refused.response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers().get("retry-after").unwrap(), &refused.retry_after_secs().to_string());
    }
}
