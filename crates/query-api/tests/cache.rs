//! The Redis result cache against the real Redis of the local stack, and
//! against a Redis that is not there.
#![cfg(test)]

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use fred::interfaces::{ClientLike as _, KeysInterface as _};
use query_api::{CacheConfig, cache::QueryCache};
use serde::{Deserialize, Serialize};
use service_kit::{RedisConfig, deps::redis, testing};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Answer {
    views: u64,
    title: String,
}

fn answer() -> Answer {
    Answer { views: 42, title: "quote \" and 'apostrophe' é".into() }
}

fn counter(name: &str) -> f64 {
    service_kit::testing::metric_value(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_computes_and_stores_then_a_hit_skips_the_computation() {
    service_kit::ops::metrics_handle();
    let redis_config = testing::redis_config();
    let client = redis::client(&redis_config).unwrap();
    client.wait_for_connect().await.unwrap();
    let cache = QueryCache::new(client.clone(), &redis_config.key_prefix, CacheConfig::default());
    let key = query_api::cache::query_key("/api/metrics/video/v1", "startDate=2024-01-01&endDate=2024-01-02").unwrap();
    let computed = AtomicUsize::new(0);
    let compute = || async {
        computed.fetch_add(1, Ordering::SeqCst);
        Ok::<_, String>(answer())
    };
    let (hits, misses) =
        (counter("analytics_service_query_cache_hits_total"), counter("analytics_service_query_cache_misses_total"));

    let first = cache.get_or_compute(&key, Duration::from_secs(60), compute).await.unwrap();
    assert_eq!(first, answer());
    assert_eq!(computed.load(Ordering::SeqCst), 1, "a miss computes");
    let second = cache.get_or_compute(&key, Duration::from_secs(60), compute).await.unwrap();
    assert_eq!(second, answer());
    assert_eq!(computed.load(Ordering::SeqCst), 1, "a hit does not compute");

    assert!(counter("analytics_service_query_cache_misses_total") >= misses + 1.0);
    assert!(counter("analytics_service_query_cache_hits_total") >= hits + 1.0);

    let stored_key = format!("{}query:{key}", redis_config.key_prefix);
    let ttl: i64 = client.ttl(&stored_key).await.unwrap();
    assert!((1..=60).contains(&ttl), "entry stored under {stored_key} with its ttl, got {ttl}");
    let _: i64 = client.del(&stored_key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_computations_are_returned_and_not_cached() {
    let redis_config = testing::redis_config();
    let client = redis::client(&redis_config).unwrap();
    client.wait_for_connect().await.unwrap();
    let cache = QueryCache::new(client, &redis_config.key_prefix, CacheConfig::default());
    let failed: Result<Answer, String> =
        cache.get_or_compute("k?", Duration::from_secs(60), || async { Err("clickhouse down".to_string()) }).await;
    assert_eq!(failed, Err("clickhouse down".to_string()));
    let next = cache.get_or_compute("k?", Duration::from_secs(60), || async { Ok::<_, String>(answer()) }).await;
    assert_eq!(next, Ok(answer()), "the failure was not cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_every_call_is_computed_and_counted_as_an_error() {
    service_kit::ops::metrics_handle();
    let dead =
        RedisConfig { url: "redis://127.0.0.1:1".into(), key_prefix: testing::unique_name("dead"), ca_file: None };
    let client = redis::client(&dead).unwrap();
    let cache = QueryCache::new(client, &dead.key_prefix, CacheConfig::default());
    let errors = counter("analytics_service_query_cache_errors_total");
    let bypassed = counter("analytics_service_query_cache_bypassed_total");
    let computed = AtomicUsize::new(0);
    let started = Instant::now();
    for _ in 0..3 {
        let value = cache
            .get_or_compute("/api/x?", Duration::from_secs(60), || async {
                computed.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(answer())
            })
            .await
            .unwrap();
        assert_eq!(value, answer());
    }
    assert_eq!(computed.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "uncached answers must not wait on redis: {:?}",
        started.elapsed()
    );
    // The first call finds Redis unreachable; the others do not ask it
    // again within `cache.retry_after`.
    assert!(counter("analytics_service_query_cache_errors_total") >= errors + 1.0);
    assert!(counter("analytics_service_query_cache_bypassed_total") >= bypassed + 2.0);
    assert!(cache.is_bypassed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_key_compute_once() {
    let redis_config = testing::redis_config();
    let client = redis::client(&redis_config).unwrap();
    client.wait_for_connect().await.unwrap();
    let cache = QueryCache::new(client.clone(), &redis_config.key_prefix, CacheConfig::default());
    let key = query_api::cache::query_key("/api/metrics/videos/top", "single-flight=1").unwrap();
    let computed = std::sync::Arc::new(AtomicUsize::new(0));
    let (release, released) = tokio::sync::watch::channel(false);

    let requests: Vec<_> = (0..4)
        .map(|_| {
            let (cache, key, computed, mut released) = (cache.clone(), key.clone(), computed.clone(), released.clone());
            tokio::spawn(async move {
                cache
                    .get_or_compute(&key, Duration::from_secs(60), || async move {
                        computed.fetch_add(1, Ordering::SeqCst);
                        released.wait_for(|go| *go).await.unwrap();
                        Ok::<_, String>(answer())
                    })
                    .await
            })
        })
        .collect();
    // Poll until all four requests are in flight: one computing, three queued.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.in_flight(&key) < 4 {
        assert!(Instant::now() < deadline, "only {} requests in flight", cache.in_flight(&key));
        tokio::task::yield_now().await;
    }
    release.send(true).unwrap();
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap(), answer());
    }
    assert_eq!(computed.load(Ordering::SeqCst), 1, "the queued requests read the first one's answer");
    assert_eq!(cache.in_flight(&key), 0, "the gate is forgotten afterwards");
    let _: i64 = client.del(format!("{}query:{key}", redis_config.key_prefix)).await.unwrap();
}
