//! The realtime window's two costs (`cargo xtask bench window`, or
//! `cargo bench -p realtime-hub --bench window`):
//!
//! - `merge`: one second of traffic (its partials, as the stream-processor
//!   publishes them: one per partition) merged into a full 60 s window, and
//!   what left the window evicted: the steady state of the partials reader.
//!   `decode` is the JSON parsing of the same partials, which the reader does
//!   first.
//! - `figures`: the per-tick computation of the realtime metrics over a
//!   full window, at 1,000, 5,000 and 20,000 events/s (60 k, 300 k and 1.2 M
//!   facts).
//!
//! The traffic is synthetic but shaped like `loadgen`'s: about 9.5 viewers
//! per event/s (a view sends ~0.105 events/s), 200 videos with skewed
//! popularity, mostly heartbeats carrying a bitrate, a few starts, quality
//! changes, pauses, completions and errors, six partitions keyed by session.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use events_model::{EventType, PartialEvent, PartialView, RealtimePartial};
use realtime_hub::window::Window;
use seeded_rng::Rng;
use uuid::Uuid;

const WINDOW_SECS: u64 = 60;
const PARTITIONS: u64 = 6;
/// Epoch second the synthetic traffic starts at.
const START: u64 = 1_750_000_000;

/// Seconds of traffic at a fixed rate, deterministic.
struct Traffic {
    rate: usize,
    views: usize,
    second: u64,
    rng: Rng,
}

impl Traffic {
    fn new(rate: usize) -> Self {
        Self { rate, views: rate * 95 / 10, second: START, rng: Rng::new(0x9E37_79B9_7F4A_7C15 ^ rate as u64) }
    }

    fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }

    /// The partials of the next second, one per partition.
    fn next_second(&mut self) -> Vec<RealtimePartial> {
        let second = self.second;
        self.second += 1;
        let mut partials: Vec<RealtimePartial> = (0..PARTITIONS)
            .map(|p| RealtimePartial { partition: p as i32, second, views: Vec::new(), events: Vec::new() })
            .collect();
        let mut interned: Vec<std::collections::HashMap<u64, u32>> = vec![Default::default(); PARTITIONS as usize];
        for _ in 0..self.rate {
            let view = self.below(self.views as u64);
            let partition = (view % PARTITIONS) as usize;
            let partial = &mut partials[partition];
            let index = *interned[partition].entry(view).or_insert_with(|| {
                partial.views.push(PartialView {
                    session_id: format!("session-{view:08}"),
                    video_id: format!("video_{:04}", video_of(view)),
                });
                (partial.views.len() - 1) as u32
            });
            let roll = self.below(1000);
            let (event_type, bitrate) = match roll {
                0..850 => (EventType::VideoProgress, Some(1_000 + 500 * (view % 8) as u32)),
                850..900 => (EventType::VideoStart, Some(2_500)),
                900..930 => (EventType::QualityChange, Some(4_000)),
                930..950 => (EventType::VideoPause, None),
                950..970 => (EventType::VideoResume, None),
                970..980 => (EventType::VideoBuffer, None),
                980..990 => (EventType::Seek, None),
                990..997 => (EventType::VideoComplete, None),
                _ => (EventType::VideoError, None),
            };
            let received_at_ms = second * 1000 + self.below(1000);
            partial.events.push(PartialEvent {
                event_id: Uuid::from_u64_pair(self.next_u64(), self.next_u64()),
                view: index,
                event_type,
                fatal: event_type == EventType::VideoError && roll == 999,
                timestamp_ms: received_at_ms - 40,
                received_at_ms,
                bitrate_kbps: bitrate,
            });
        }
        partials
    }

    /// The moment the last second generated ends.
    fn now_ms(&self) -> u64 {
        self.second * 1000
    }
}

/// The video a view watches, 1..=200, popularity falling like 1/k (Zipf 1).
fn video_of(view: u64) -> u64 {
    let mut z = view.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
    (200f64.powf(u) as u64).clamp(1, 200)
}

/// A window holding the last 60 s of `traffic`.
fn full_window(traffic: &mut Traffic) -> Window {
    let mut window = Window::new(WINDOW_SECS, 10_000_000, 10);
    for _ in 0..WINDOW_SECS {
        for partial in traffic.next_second() {
            window.merge(&partial, traffic.now_ms());
        }
    }
    window
}

fn merge(c: &mut Criterion) {
    let mut group = c.benchmark_group("merge");
    let rate = 5_000;
    group.throughput(Throughput::Elements(rate as u64));
    group.bench_function(BenchmarkId::new("one_second_into_full_window", rate), |b| {
        let mut traffic = Traffic::new(rate);
        let mut window = full_window(&mut traffic);
        b.iter_custom(|iterations| {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                let partials = traffic.next_second();
                let now_ms = traffic.now_ms();
                let started = Instant::now();
                for partial in &partials {
                    black_box(window.merge(partial, now_ms));
                }
                window.evict(now_ms);
                spent += started.elapsed();
            }
            spent
        });
    });
    group.bench_function(BenchmarkId::new("decode_one_second", rate), |b| {
        let mut traffic = Traffic::new(rate);
        let messages: Vec<Vec<u8>> = traffic.next_second().iter().map(RealtimePartial::to_json).collect();
        b.iter(|| {
            for message in &messages {
                black_box(RealtimePartial::from_json(message).expect("bench partials decode"));
            }
        });
    });
    group.finish();
}

fn figures(c: &mut Criterion) {
    let mut group = c.benchmark_group("figures");
    group.sample_size(20);
    for rate in [1_000usize, 5_000, 20_000] {
        let mut traffic = Traffic::new(rate);
        let mut window = full_window(&mut traffic);
        let now_ms = traffic.now_ms();
        group.throughput(Throughput::Elements(window.len() as u64));
        group.bench_function(BenchmarkId::new("full_window_facts", window.len()), |b| {
            b.iter(|| black_box(window.figures(now_ms)));
        });
    }
    // The same window after the hub has rolled it for ten minutes.
    let rate = 5_000;
    let mut traffic = Traffic::new(rate);
    let mut window = full_window(&mut traffic);
    for _ in 0..600 {
        for partial in traffic.next_second() {
            window.merge(&partial, traffic.now_ms());
        }
        window.evict(traffic.now_ms());
    }
    let now_ms = traffic.now_ms();
    group.throughput(Throughput::Elements(window.len() as u64));
    group.bench_function(BenchmarkId::new("aged_full_window_facts", window.len()), |b| {
        b.iter(|| black_box(window.figures(now_ms)));
    });
    group.finish();
}

criterion_group!(benches, merge, figures);
criterion_main!(benches);
