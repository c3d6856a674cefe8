//! Redis cache of query results.
//!
//! A key is `redis.key_prefix + cache.key_prefix + endpoint + "?" + the query
//! parameters decoded and sorted`, so two requests asking the same thing in a
//! different parameter order or encoding share an entry. Values are the JSON
//! of the answer. Redis is an optimisation only: when it is down, slow or
//! holds something unreadable, the answer is computed and returned uncached,
//! and `analytics_service_query_cache_errors_total` counts it. Each command
//! waits at most `cache.timeout`; after a failure Redis is left alone for
//! `cache.retry_after` ([`Breaker`]): requests meanwhile are answered
//! uncached at once (`analytics_service_query_cache_bypassed_total`), so a
//! Redis that is stopped or does not answer costs one timeout per
//! `retry_after`, not one per request. A degraded answer (a dependency such
//! as the catalog was down) is never stored.

use std::{
    collections::HashMap,
    future::Future,
    ops::Range,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Datelike as _, NaiveDate, TimeZone as _, Timelike as _, Utc};
use fred::{
    clients::Client,
    interfaces::{ClientLike as _, KeysInterface as _},
    types::Expiration,
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{breaker::Breaker, config::CacheConfig};

const HITS: &str = "analytics_service_query_cache_hits_total";
const MISSES: &str = "analytics_service_query_cache_misses_total";
const ERRORS: &str = "analytics_service_query_cache_errors_total";
const BYPASSED: &str = "analytics_service_query_cache_bypassed_total";

/// Registers the counters' descriptions (and makes them appear at 0).
pub fn describe_metrics() {
    metrics::describe_counter!(HITS, "query answers served from the redis cache");
    metrics::describe_counter!(MISSES, "query answers computed because the cache held none");
    metrics::describe_counter!(ERRORS, "redis cache reads or writes that failed; the answer was computed uncached");
    metrics::describe_counter!(
        BYPASSED,
        "query answers computed without asking redis, because it failed less than cache.retry_after ago"
    );
    for name in [HITS, MISSES, ERRORS, BYPASSED] {
        metrics::counter!(name).increment(0);
    }
}

/// The normalised cache key of a query: `endpoint?k1=v1&k2=v2` with the
/// parameters percent-decoded, then sorted by name and value, and `%`, `&`,
/// `=` re-escaped so that distinct queries never collide.
pub fn query_key(endpoint: &str, query_string: &str) -> Result<String, actix_web::error::QueryPayloadError> {
    let mut pairs = actix_web::web::Query::<Vec<(String, String)>>::from_query(query_string)?.into_inner();
    pairs.sort();
    let mut key = String::with_capacity(endpoint.len() + query_string.len() + 1);
    key.push_str(endpoint);
    key.push('?');
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            key.push('&');
        }
        escape_into(&mut key, name);
        key.push('=');
        escape_into(&mut key, value);
    }
    Ok(key)
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '&' => out.push_str("%26"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
}

/// How long an answer about `range` may be cached at `now`: the short TTL
/// while the range still changes, the long TTL once it cannot.
///
/// A range changes while it reaches into the current hour, and also while
/// late events may still be folded into it: until `lateness` after its end
/// (docs/metrics.md, "Pre-aggregated tables and freshness").
pub fn ttl_for_range(
    range: &Range<DateTime<Utc>>,
    now: DateTime<Utc>,
    lateness: Duration,
    config: &CacheConfig,
) -> Duration {
    let hour_start = now.with_minute(0).and_then(|t| t.with_second(0)).and_then(|t| t.with_nanosecond(0));
    let settled = chrono::Duration::from_std(lateness).ok().and_then(|l| range.end.checked_add_signed(l));
    match (hour_start, settled) {
        (Some(hour_start), Some(settled)) if range.end <= hour_start && settled <= now => config.long_ttl,
        _ => config.short_ttl,
    }
}

/// [`ttl_for_range`] for inclusive UTC days (`startDate`..=`endDate`).
pub fn ttl_for_days(
    start: NaiveDate,
    end: NaiveDate,
    now: DateTime<Utc>,
    lateness: Duration,
    config: &CacheConfig,
) -> Duration {
    let midnight = |d: NaiveDate| Utc.with_ymd_and_hms(d.year(), d.month(), d.day(), 0, 0, 0).single();
    match (midnight(start), end.succ_opt().and_then(midnight)) {
        (Some(from), Some(to)) => ttl_for_range(&(from..to), now, lateness, config),
        _ => config.short_ttl,
    }
}

/// The cache: a Redis client (shared with the readiness probe) and its settings.
#[derive(Clone)]
pub struct QueryCache {
    client: Client,
    prefix: String,
    config: CacheConfig,
    flights: Flights,
    breaker: Arc<Breaker>,
}

/// The keys being computed in this process, each with the gate that its
/// concurrent requests queue on (single flight): the first computes and
/// stores, the others then read what it stored.
#[derive(Clone, Default)]
struct Flights(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl Flights {
    fn gate(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.0.lock().expect("flights lock").entry(key.to_owned()).or_default().clone()
    }

    /// Forgets `key`'s gate once no request holds it but this one.
    fn release(&self, key: &str, gate: Arc<tokio::sync::Mutex<()>>) {
        let mut flights = self.0.lock().expect("flights lock");
        if Arc::strong_count(&gate) <= 2 {
            flights.remove(key);
        }
    }

    fn waiting(&self, key: &str) -> usize {
        self.0.lock().expect("flights lock").get(key).map_or(0, |gate| Arc::strong_count(gate) - 1)
    }
}

impl QueryCache {
    /// `redis_prefix` is `redis.key_prefix` (isolates environments and tests).
    pub fn new(client: Client, redis_prefix: &str, config: CacheConfig) -> Self {
        let prefix = format!("{redis_prefix}{}", config.key_prefix);
        let breaker = Arc::new(Breaker::new("redis", config.retry_after));
        Self { client, prefix, config, flights: Flights::default(), breaker }
    }

    /// Whether Redis is being bypassed after a failure (see the module doc).
    pub fn is_bypassed(&self) -> bool {
        self.breaker.is_open()
    }

    /// How many requests of this process are computing or waiting for `key`
    /// (a query key, without the prefix).
    pub fn in_flight(&self, key: &str) -> usize {
        self.flights.waiting(&format!("{}{key}", self.prefix))
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// The cached answer of `key` if Redis holds one, else `compute()`'s,
    /// stored for `ttl` when it succeeded. Errors of `compute` are returned
    /// and never cached; Redis failures never fail the call.
    ///
    /// Concurrent misses of one key in this process compute once: the others
    /// wait for it and read its stored answer (or compute in turn when it
    /// failed).
    pub async fn get_or_compute<T, E, F, Fut>(&self, key: &str, ttl: Duration, compute: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.get_or_compute_if(key, ttl, compute, |_| true).await
    }

    /// [`Self::get_or_compute`], storing a computed answer only when
    /// `cacheable` says so (a degraded answer is returned, never stored).
    pub async fn get_or_compute_if<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        compute: F,
        cacheable: impl FnOnce(&T) -> bool,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if !self.config.enabled {
            return compute().await;
        }
        if !self.breaker.allow() {
            metrics::counter!(BYPASSED).increment(1);
            return compute().await;
        }
        let full_key = format!("{}{key}", self.prefix);
        if !self.client.is_connected() {
            // Nothing to share an answer through: waiting would only queue.
            return self.read_or_compute(&full_key, ttl, compute, cacheable).await;
        }
        let gate = self.flights.gate(&full_key);
        let answer = {
            let _turn = gate.lock().await;
            self.read_or_compute(&full_key, ttl, compute, cacheable).await
        };
        self.flights.release(&full_key, gate);
        answer
    }

    async fn read_or_compute<T, E, F, Fut>(
        &self,
        full_key: &str,
        ttl: Duration,
        compute: F,
        cacheable: impl FnOnce(&T) -> bool,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let usable = match self.read(full_key).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<T>(&bytes) {
                Ok(value) => {
                    metrics::counter!(HITS).increment(1);
                    return Ok(value);
                }
                Err(error) => {
                    metrics::counter!(ERRORS).increment(1);
                    tracing::warn!(key = %full_key, error = %error, "unreadable cache entry, recomputing");
                    true
                }
            },
            Ok(None) => true,
            Err(error) => {
                metrics::counter!(ERRORS).increment(1);
                tracing::debug!(error = %error, "cache read failed, answering uncached");
                self.breaker.failed(&error);
                false
            }
        };
        if usable {
            self.breaker.succeeded();
        }
        metrics::counter!(MISSES).increment(1);
        let value = compute().await?;
        if usable && cacheable(&value) {
            if let Err(error) = self.write(full_key, &value, ttl).await {
                metrics::counter!(ERRORS).increment(1);
                tracing::debug!(key = %full_key, error = %error, "cache write failed");
                self.breaker.failed(&error);
            }
        }
        Ok(value)
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        if !self.client.is_connected() {
            return Err("redis is not connected".into());
        }
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, self.client.get::<Option<Vec<u8>>, _>(key)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("redis did not answer within {} ms", timeout.as_millis())),
        }
    }

    async fn write<T: Serialize>(&self, key: &str, value: &T, ttl: Duration) -> Result<(), String> {
        let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let timeout = self.config.timeout;
        let set = self.client.set::<(), _, _>(key, bytes, Some(Expiration::EX(seconds)), None, false);
        match tokio::time::timeout(timeout, set).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("redis did not answer within {} ms", timeout.as_millis())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn keys_ignore_parameter_order_and_encoding() {
        let a = query_key("/api/metrics/video/v1", "startDate=2024-01-01&endDate=2024-01-31").unwrap();
        let b = query_key("/api/metrics/video/v1", "endDate=2024-01-31&startDate=2024%2D01%2D01").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, "/api/metrics/video/v1?endDate=2024-01-31&startDate=2024-01-01");
    }

    #[test]
    fn keys_of_different_queries_differ() {
        let split = query_key("/e", "a=1%262&b=3").unwrap();
        let joined = query_key("/e", "a=1&2&b=3").unwrap();
        assert_ne!(split, joined);
        assert_ne!(query_key("/e", "a=1").unwrap(), query_key("/f", "a=1").unwrap());
        assert_ne!(query_key("/e", "a=1&a=2").unwrap(), query_key("/e", "a=1").unwrap());
        assert_eq!(query_key("/e", "").unwrap(), "/e?");
    }

    #[test]
    fn ranges_still_open_to_changes_get_the_short_ttl() {
        let config = CacheConfig {
            short_ttl: Duration::from_secs(10),
            long_ttl: Duration::from_secs(3600),
            ..CacheConfig::default()
        };
        let now = at("2024-05-10T14:25:00Z");
        let (short, long) = (Duration::from_secs(10), Duration::from_secs(3600));
        let none = Duration::ZERO;
        let from = at("2024-05-01T00:00:00Z");
        assert_eq!(
            ttl_for_range(&(from..at("2024-05-10T14:00:00Z")), now, none, &config),
            long,
            "ends as the hour begins"
        );
        assert_eq!(ttl_for_range(&(from..at("2024-05-10T14:00:01Z")), now, none, &config), short);
        assert_eq!(ttl_for_range(&(from..at("2024-06-01T00:00:00Z")), now, none, &config), short, "future end");

        let lateness = Duration::from_secs(48 * 3600);
        assert_eq!(ttl_for_range(&(from..at("2024-05-08T14:25:00Z")), now, lateness, &config), long, "settled");
        assert_eq!(
            ttl_for_range(&(from..at("2024-05-08T14:25:01Z")), now, lateness, &config),
            short,
            "late events may come"
        );

        assert_eq!(ttl_for_days(day("2024-05-01"), day("2024-05-09"), now, none, &config), long);
        assert_eq!(ttl_for_days(day("2024-05-01"), day("2024-05-09"), now, lateness, &config), short);
        assert_eq!(ttl_for_days(day("2024-05-01"), day("2024-05-07"), now, lateness, &config), long);
        assert_eq!(ttl_for_days(day("2024-05-01"), day("2024-05-10"), now, none, &config), short, "today included");
        assert_eq!(ttl_for_days(day("2024-05-10"), day("2024-05-10"), now, none, &config), short);
        let just_after_midnight = at("2024-05-10T00:00:00Z");
        assert_eq!(ttl_for_days(day("2024-05-09"), day("2024-05-09"), just_after_midnight, none, &config), long);
    }
}
