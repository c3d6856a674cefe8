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

/// At most `max` things at once per key (custom queries in flight,
/// WebSocket connections); 0: no limit. A [`Permit`] frees its place when dropped.
pub struct ConcurrencyLimit<K: Hash + Eq + Clone> {
    name: &'static str,
    max: usize,
    held: std::sync::Mutex<std::collections::HashMap<K, usize>>,
}

/// One place of a [`ConcurrencyLimit`], given back on drop.
pub struct Permit<K: Hash + Eq + Clone> {
    limit: std::sync::Arc<ConcurrencyLimit<K>>,
    key: Option<K>,
}

impl<K: Hash + Eq + Clone> ConcurrencyLimit<K> {
    pub fn new(name: &'static str, max: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self { name, max, held: std::sync::Mutex::new(std::collections::HashMap::new()) })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<K, usize>> {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for `key`, or a refusal (retry after a second) when it holds
    /// `max` already. `label` names the key in the metric (never an IP).
    pub fn try_acquire(self: &std::sync::Arc<Self>, key: &K, label: &str) -> Result<Permit<K>, Limited> {
        if self.max == 0 {
            return Ok(Permit { limit: self.clone(), key: None });
        }
        let mut held = self.held();
        let count = held.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            drop(held);
            metrics::counter!("analytics_service_rate_limited_total", "limit" => self.name, "key" => label.to_owned())
                .increment(1);
            return Err(Limited { limit: self.name, retry_after: Duration::from_secs(1) });
        }
        *count += 1;
        Ok(Permit { limit: self.clone(), key: Some(key.clone()) })
    }

    /// Places `key` holds now.
    pub fn held_by(&self, key: &K) -> usize {
        self.held().get(key).copied().unwrap_or(0)
    }
}

impl<K: Hash + Eq + Clone> Drop for Permit<K> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut held = self.limit.held();
        if let Some(count) = held.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&key);
            }
        }
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
    fn a_key_holds_at_most_max_places_and_a_dropped_permit_frees_one() {
        let limit = ConcurrencyLimit::new("concurrent_custom_queries", 2);
        let a = limit.try_acquire(&"k", "k").unwrap();
        let _b = limit.try_acquire(&"k", "k").unwrap();
        assert_eq!(limit.try_acquire(&"k", "k").err().map(|l| l.limit), Some("concurrent_custom_queries"));
        let _other = limit.try_acquire(&"j", "j").unwrap();
        drop(a);
        assert_eq!(limit.held_by(&"k"), 1);
        let _c = limit.try_acquire(&"k", "k").unwrap();
        let open = ConcurrencyLimit::new("connections", 0);
        let permits: Vec<_> = (0..100).map(|_| open.try_acquire(&"k", "k").unwrap()).collect();
        assert_eq!(permits.len(), 100);
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
