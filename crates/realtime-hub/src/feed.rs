//! The live event feed: each raw event once serialised, a client's filter,
//! and the deterministic sampling that keeps a client under its rate.

use std::collections::{HashSet, VecDeque};

use events_model::{Event, EventType};
use uuid::Uuid;

/// One ingested event as every client task receives it.
#[derive(Debug)]
pub struct FeedEvent {
    pub event_id: Uuid,
    pub event_type: EventType,
    pub video_id: String,
    /// The event as JSON (the wire object), serialised once for all clients.
    pub json: String,
}

impl FeedEvent {
    pub fn new(event: &Event) -> Self {
        Self {
            event_id: event.event_id,
            event_type: event.event_type,
            video_id: event.video_id.clone(),
            json: serde_json::to_string(event).unwrap_or_default(),
        }
    }

    /// A stable 64-bit hash of the event id (the same in every replica).
    pub fn id_hash(&self) -> u64 {
        id_hash(self.event_id)
    }
}

/// splitmix64 of the id's two halves: event ids of v7 share their leading
/// time bits, so the bits are mixed before a modulus.
pub fn id_hash(id: Uuid) -> u64 {
    let value = id.as_u128();
    let mut z = (value as u64) ^ ((value >> 64) as u64).rotate_left(29);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The ids of the last `capacity` events forwarded to the feed, so that a
/// client retry the gateway accepted twice (two Kafka messages with one
/// `event_id`) is shown once. Oldest ids are forgotten first; memory is about
/// 40 bytes per id.
#[derive(Debug)]
pub struct RecentIds {
    capacity: usize,
    set: HashSet<Uuid>,
    order: VecDeque<Uuid>,
}

impl RecentIds {
    /// Remembers `capacity` ids; 0 remembers none (every event is new).
    pub fn new(capacity: usize) -> Self {
        Self { capacity, set: HashSet::new(), order: VecDeque::new() }
    }

    /// Records `id`; false when it is among the remembered ids already.
    pub fn first_time(&mut self, id: Uuid) -> bool {
        if self.capacity == 0 {
            return true;
        }
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
        true
    }
}

/// Which events a client wants: `None` means every value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    pub video_ids: Option<HashSet<String>>,
    pub event_types: Option<HashSet<EventType>>,
}

impl Subscription {
    pub fn matches(&self, event: &FeedEvent) -> bool {
        self.video_ids.as_ref().is_none_or(|ids| ids.contains(&event.video_id))
            && self.event_types.as_ref().is_none_or(|types| types.contains(&event.event_type))
    }
}

/// Width of one slot of the sampler's sliding second.
const SLOT_MS: u64 = 100;
const SLOTS: usize = 10;

/// Keeps a client's feed near `limit` events a second with a deterministic
/// sample: `1 in k` events, chosen by the hash of the event id, where `k` is
/// the number of matching events in the last second (a sliding second of ten
/// 100 ms slots, this event included) divided by `limit`, rounded up. Under
/// the limit `k` is 1 and every event passes. When a burst starts, `k` grows
/// with every event; a causal estimate still lets a burst's first second
/// through at about `limit × (1 + ln(burst ÷ limit))`, so deliveries are also
/// capped at `2 × limit` per sliding second (only that ramp ever reaches the
/// cap; in a steady stream about `limit` a second pass).
#[derive(Debug, Clone)]
pub struct Sampler {
    limit: u64,
    /// Matching events per slot.
    seen: [u64; SLOTS],
    /// Events kept per slot.
    kept: [u64; SLOTS],
    /// Index (time ÷ SLOT_MS) of the newest slot.
    newest: u64,
}

impl Sampler {
    /// `limit` events a second; 0 turns sampling off.
    pub fn new(limit: u64) -> Self {
        Self { limit, seen: [0; SLOTS], kept: [0; SLOTS], newest: 0 }
    }

    /// Counts one matching event at `now_ms` (any monotonic clock) and says
    /// whether it is kept and with which sample rate (`1 ÷ k`).
    pub fn sample(&mut self, id_hash: u64, now_ms: u64) -> Option<f64> {
        if self.limit == 0 {
            return Some(1.0);
        }
        let slot = now_ms / SLOT_MS;
        if slot > self.newest {
            let stale = (slot - self.newest).min(SLOTS as u64);
            for step in 1..=stale {
                let index = ((self.newest + step) % SLOTS as u64) as usize;
                self.seen[index] = 0;
                self.kept[index] = 0;
            }
            self.newest = slot;
        }
        // An event stamped before the newest slot (clock jitter) counts in the newest.
        let newest = (self.newest % SLOTS as u64) as usize;
        self.seen[newest] += 1;
        let k = self.k();
        if id_hash % k != 0 || self.kept.iter().sum::<u64>() >= 2 * self.limit {
            return None;
        }
        self.kept[newest] += 1;
        Some(1.0 / k as f64)
    }

    /// The current `k` (1 under the limit).
    pub fn k(&self) -> u64 {
        if self.limit == 0 {
            return 1;
        }
        let seen: u64 = self.seen.iter().sum();
        seen.div_ceil(self.limit).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_event(video_id: &str, event_type: EventType) -> FeedEvent {
        FeedEvent { event_id: Uuid::new_v4(), event_type, video_id: video_id.into(), json: "{}".into() }
    }

    #[test]
    fn a_repeated_id_is_refused_until_it_is_forgotten() {
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        let mut recent = RecentIds::new(2);
        assert!(recent.first_time(ids[0]) && recent.first_time(ids[1]));
        assert!(!recent.first_time(ids[0]), "a retry within the last 2 is refused");
        assert!(recent.first_time(ids[2]), "ids[0] is forgotten now");
        assert!(recent.first_time(ids[0]), "forgotten, so shown again");
        assert!(!recent.first_time(ids[2]));
        assert_eq!((recent.set.len(), recent.order.len()), (2, 2), "bounded");
        let mut off = RecentIds::new(0);
        assert!(off.first_time(ids[3]) && off.first_time(ids[3]));
    }

    #[test]
    fn empty_subscription_matches_everything() {
        let all = Subscription::default();
        assert!(all.matches(&feed_event("v1", EventType::Seek)));
    }

    #[test]
    fn subscription_filters_by_video_and_type() {
        let sub = Subscription {
            video_ids: Some(["v1".to_string(), "v2".to_string()].into()),
            event_types: Some([EventType::VideoStart].into()),
        };
        assert!(sub.matches(&feed_event("v1", EventType::VideoStart)));
        assert!(!sub.matches(&feed_event("v3", EventType::VideoStart)));
        assert!(!sub.matches(&feed_event("v2", EventType::VideoError)));
        let videos_only = Subscription { video_ids: Some(["v3".to_string()].into()), event_types: None };
        assert!(videos_only.matches(&feed_event("v3", EventType::VideoError)));
    }

    #[test]
    fn under_the_limit_every_event_passes_unsampled() {
        let mut sampler = Sampler::new(5);
        // Four events a second for ten seconds.
        for i in 0..40u64 {
            assert_eq!(sampler.sample(id_hash(Uuid::new_v4()), i * 250), Some(1.0));
        }
    }

    #[test]
    fn zero_limit_never_samples() {
        let mut sampler = Sampler::new(0);
        for i in 0..10_000u64 {
            assert_eq!(sampler.sample(id_hash(Uuid::new_v4()), i / 100), Some(1.0));
        }
    }

    #[test]
    fn a_steady_stream_above_the_limit_is_sampled_to_the_limit() {
        let mut sampler = Sampler::new(5);
        // 100 events a second for 20 s: k settles at 20, about 5 kept a second.
        let mut kept = Vec::new();
        for i in 0..2000u64 {
            let now = i * 10;
            if let Some(rate) = sampler.sample(id_hash(Uuid::new_v4()), now) {
                kept.push((now, rate));
            }
        }
        let steady: Vec<_> = kept.iter().filter(|(now, _)| *now >= 1000).collect();
        // The sliding second holds 91 to 100 events: k is 19 or 20.
        assert!(steady.iter().all(|(_, rate)| (1.0 / 20.0..=1.0 / 19.0).contains(rate)), "{steady:?}");
        let per_second = steady.len() as f64 / 19.0;
        assert!((3.0..=7.5).contains(&per_second), "{per_second} a second");
        // The first second's ramp is capped at twice the limit.
        let first = kept.iter().filter(|(now, _)| *now < 1000).count();
        assert!((5..=10).contains(&first), "{first} in the first second");
        assert!(kept.iter().skip(5).all(|(_, rate)| *rate < 1.0));
    }

    #[test]
    fn a_sudden_burst_is_capped_at_twice_the_limit_per_second() {
        let mut sampler = Sampler::new(5);
        let kept = (0..10_000u64).filter(|i| sampler.sample(id_hash(Uuid::new_v4()), i / 100).is_some()).count();
        assert!(kept <= 10, "{kept} of a burst of 10000 within 100 ms");
    }

    #[test]
    fn sampling_is_deterministic_by_event_id() {
        let ids: Vec<Uuid> = (0..500).map(|_| Uuid::new_v4()).collect();
        let run = || {
            let mut sampler = Sampler::new(10);
            ids.iter()
                .enumerate()
                .filter_map(|(i, id)| sampler.sample(id_hash(*id), i as u64).map(|_| *id))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn the_rate_recovers_after_a_burst() {
        let mut sampler = Sampler::new(5);
        for i in 0..500u64 {
            sampler.sample(id_hash(Uuid::new_v4()), i);
        }
        assert_eq!(sampler.k(), 100);
        // A second later the burst has left the sliding second.
        assert_eq!(sampler.sample(id_hash(Uuid::new_v4()), 1600), Some(1.0));
        assert_eq!(sampler.k(), 1);
    }

    #[test]
    fn v7_ids_spread_over_the_modulus() {
        let mut buckets = [0u32; 8];
        for _ in 0..8000 {
            buckets[(id_hash(Uuid::now_v7()) % 8) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| (800..1200).contains(&n)), "{buckets:?}");
    }
}
