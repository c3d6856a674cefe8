//! A circuit breaker for a dependency the API can answer without (the Redis
//! cache, the catalog in PostgreSQL): after a failure the dependency is left
//! alone for a cool-down, so a dead or unanswering server costs one timeout
//! per cool-down instead of one per request; then a single request tries it
//! again while the others keep going without it.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

pub struct Breaker {
    /// `cache` or `catalog`: the log's `dependency` field.
    dependency: &'static str,
    cooldown: Duration,
    /// While `Some`, the dependency is skipped until that instant.
    open_until: Mutex<Option<Instant>>,
}

impl Breaker {
    pub fn new(dependency: &'static str, cooldown: Duration) -> Self {
        Self { dependency, cooldown, open_until: Mutex::new(None) }
    }

    /// Whether to use the dependency now: yes while it works; no during the
    /// cool-down after a failure; once that ended, yes for one caller (the
    /// trial), whose outcome closes or reopens the breaker.
    pub fn allow(&self) -> bool {
        let mut open_until = self.open_until.lock().unwrap_or_else(|e| e.into_inner());
        match *open_until {
            None => true,
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                *open_until = Some(Instant::now() + self.cooldown);
                true
            }
        }
    }

    /// The dependency answered.
    pub fn succeeded(&self) {
        let mut open_until = self.open_until.lock().unwrap_or_else(|e| e.into_inner());
        if open_until.take().is_some() {
            tracing::info!(dependency = self.dependency, "dependency answers again; used again");
        }
    }

    /// The dependency failed: skip it for the cool-down.
    pub fn failed(&self, error: &str) {
        let mut open_until = self.open_until.lock().unwrap_or_else(|e| e.into_inner());
        if open_until.is_none() {
            tracing::warn!(
                dependency = self.dependency,
                error = %error,
                retry_after_ms = u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX),
                "dependency failed; answering without it"
            );
        }
        *open_until = Some(Instant::now() + self.cooldown);
    }

    /// Whether the dependency is being skipped (failed, cool-down running or trial pending).
    pub fn is_open(&self) -> bool {
        self.open_until.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_skips_the_dependency_until_one_trial_after_the_cooldown() {
        let breaker = Breaker::new("cache", Duration::from_millis(30));
        assert!(breaker.allow() && breaker.allow(), "closed: every call goes through");
        breaker.failed("timeout");
        assert!(!breaker.allow(), "open during the cool-down");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !breaker.allow() {
            assert!(Instant::now() < deadline, "the cool-down never ended");
            std::thread::yield_now();
        }
        assert!(!breaker.allow(), "one trial at a time");
        breaker.succeeded();
        assert!(breaker.allow() && !breaker.is_open());
    }
}
