//! What the simulated viewers watch and with what: the video catalog with its
//! Zipf-like popularity, the users, and the platforms, countries, CDNs and
//! quality ladder sessions draw from.

use serde::Serialize;

use crate::event::VideoId;
use crate::rng::{Rng, mix};

/// One video of the generated catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Video {
    /// `video_0001`, `video_0002`, …: `video_0001` is the most popular.
    pub video_id: String,
    pub title: String,
    /// Whole seconds, 60 to 3600.
    pub duration_seconds: f64,
    pub category: &'static str,
}

/// Samples ranks `0..n` with probability proportional to `1 / (rank + 1)^s`.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        assert!(n > 0, "Zipf over no items");
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                total += (k as f64).powf(-s);
                total
            })
            .collect();
        for c in &mut cdf {
            *c /= total;
        }
        Self { cdf }
    }

    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    /// Probability of `rank`.
    pub fn probability(&self, rank: usize) -> f64 {
        self.cdf[rank] - if rank == 0 { 0.0 } else { self.cdf[rank - 1] }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|c| *c <= u).min(self.cdf.len() - 1)
    }
}

/// Zipf exponent of video popularity (1.0: the classic long tail).
const VIDEO_ZIPF: f64 = 1.0;
/// Zipf exponent of user activity (heavy viewers watch more, mildly).
const USER_ZIPF: f64 = 0.6;

/// The videos and users of one run, derived from the seed alone.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub videos: Vec<Video>,
    video_popularity: Zipf,
    users: usize,
    user_activity: Zipf,
    seed: u64,
}

impl Catalog {
    /// `videos` and `users` at least 1.
    pub fn new(seed: u64, videos: usize, users: usize) -> Self {
        let mut rng = Rng::new(mix(seed ^ 0x5649_4445_4F53)); // "VIDEOS"
        let videos = (0..videos.max(1)).map(|index| generate_video(index, &mut rng)).collect::<Vec<_>>();
        let users = users.max(1);
        Self {
            video_popularity: Zipf::new(videos.len(), VIDEO_ZIPF),
            videos,
            users,
            user_activity: Zipf::new(users, USER_ZIPF),
            seed,
        }
    }

    pub fn users(&self) -> usize {
        self.users
    }

    /// A video index, by popularity.
    pub fn pick_video(&self, rng: &mut Rng) -> u32 {
        self.video_popularity.sample(rng) as u32
    }

    /// A user index, by activity.
    pub fn pick_user(&self, rng: &mut Rng) -> u32 {
        self.user_activity.sample(rng) as u32
    }

    pub fn video(&self, index: u32) -> &Video {
        &self.videos[index as usize]
    }

    /// A user's stable traits: their country and usual platform.
    pub fn user_profile(&self, user: u32) -> UserProfile {
        let mut rng = Rng::new(mix(self.seed ^ mix(u64::from(user) ^ 0x5553_4552))); // "USER"
        UserProfile { country: rng.weighted(&COUNTRY_WEIGHTS) as u8, platform: rng.weighted(&PLATFORM_WEIGHTS) as u8 }
    }
}

/// Traits a user keeps from session to session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserProfile {
    pub country: u8,
    pub platform: u8,
}

fn generate_video(index: usize, rng: &mut Rng) -> Video {
    // Short clips, episodes, feature-length.
    let duration = match rng.weighted(&[40, 40, 20]) {
        0 => rng.between(60.0, 300.0),
        1 => rng.between(300.0, 1500.0),
        _ => rng.between(1500.0, 3601.0),
    }
    .floor()
    .clamp(60.0, 3600.0);
    let title = format!(
        "{} {} {}",
        ADJECTIVES[rng.below(ADJECTIVES.len() as u64) as usize],
        NOUNS[rng.below(NOUNS.len() as u64) as usize],
        index + 1
    );
    Video {
        video_id: VideoId(index as u32).to_string(),
        title,
        duration_seconds: duration,
        category: CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize],
    }
}

const ADJECTIVES: [&str; 12] =
    ["Hidden", "Silent", "Golden", "Wild", "Lost", "Midnight", "Electric", "Frozen", "Secret", "Last", "Urban", "Deep"];
const NOUNS: [&str; 12] = [
    "Coast", "Kitchen", "Frontier", "Orbit", "Garden", "Highway", "Harbour", "Signal", "Summit", "Archive", "Forest",
    "Arena",
];
pub const CATEGORIES: [&str; 9] =
    ["tutorial", "documentary", "sports", "music", "news", "comedy", "drama", "kids", "gaming"];

/// A device class with its operating system, browser (none for native apps),
/// player, and the highest rendition it plays.
#[derive(Debug, Clone, Copy)]
pub struct Platform {
    pub device_type: &'static str,
    pub os: &'static str,
    pub browser: Option<&'static str>,
    pub player: &'static str,
    /// Index into [`LADDER`] of the best rendition.
    pub max_rung: u8,
}

const fn platform(
    device_type: &'static str,
    os: &'static str,
    browser: Option<&'static str>,
    player: &'static str,
    max_rung: u8,
) -> Platform {
    Platform { device_type, os, browser, player, max_rung }
}

pub const PLATFORMS: [Platform; 18] = [
    platform("desktop", "Windows", Some("Chrome"), "web-player/4.2.0", 4),
    platform("desktop", "Windows", Some("Edge"), "web-player/4.2.0", 4),
    platform("desktop", "Windows", Some("Firefox"), "web-player/4.2.0", 4),
    platform("desktop", "macOS", Some("Safari"), "web-player/4.2.0", 5),
    platform("desktop", "macOS", Some("Chrome"), "web-player/4.2.0", 5),
    platform("desktop", "Linux", Some("Firefox"), "web-player/4.2.0", 4),
    platform("mobile", "iOS", None, "ios-app/5.4.1", 4),
    platform("mobile", "Android", None, "android-app/5.3.0", 4),
    platform("mobile", "Android", Some("Chrome Mobile"), "web-player/4.2.0", 3),
    platform("mobile", "iOS", Some("Mobile Safari"), "web-player/4.2.0", 3),
    platform("tablet", "iPadOS", None, "ios-app/5.4.1", 4),
    platform("tablet", "Android", None, "android-app/5.3.0", 4),
    platform("tv", "tvOS", None, "tvos-app/2.1.0", 6),
    platform("tv", "Android TV", None, "androidtv-app/2.0.3", 6),
    platform("tv", "Tizen", None, "tizen-app/1.9.0", 6),
    platform("tv", "webOS", None, "webos-app/1.8.2", 6),
    platform("tv", "Roku OS", None, "roku-app/3.0.1", 5),
    platform("desktop", "ChromeOS", Some("Chrome"), "web-player/4.2.0", 4),
];
pub const PLATFORM_WEIGHTS: [u32; 18] = [20, 6, 4, 6, 6, 2, 14, 16, 5, 4, 5, 3, 3, 3, 2, 2, 3, 1];

pub const COUNTRIES: [&str; 22] = [
    "US", "IN", "BR", "GB", "DE", "FR", "JP", "CA", "MX", "AU", "ES", "IT", "KR", "NL", "SE", "PL", "TR", "ID", "PH",
    "NG", "ZA", "AR",
];
pub const COUNTRY_WEIGHTS: [u32; 22] = [30, 10, 8, 7, 6, 5, 5, 4, 4, 3, 3, 3, 3, 2, 2, 2, 2, 3, 2, 1, 1, 2];

pub const CDNS: [&str; 4] = ["fastly", "cloudfront", "akamai", "cloudflare"];
pub const CDN_WEIGHTS: [u32; 4] = [35, 30, 25, 10];

/// Renditions, lowest first: name and nominal bitrate (kbit/s).
pub const LADDER: [(&str, u32); 7] = [
    ("240p", 400),
    ("360p", 800),
    ("480p", 1_400),
    ("720p", 2_800),
    ("1080p", 5_000),
    ("1440p", 9_000),
    ("2160p", 16_000),
];

/// Errors the player recovers from: code and message.
pub const RECOVERABLE_ERRORS: [(&str, &str); 4] = [
    ("NETWORK_TIMEOUT_RETRY", "segment request timed out; retrying"),
    ("SEGMENT_HTTP_404", "segment not found on the edge; fetched from another CDN node"),
    ("DRM_LICENSE_RENEWED", "license expired and was renewed"),
    ("DECODER_RESET", "decoder stalled and was reset"),
];

/// Errors that end playback: code and message.
pub const FATAL_ERRORS: [(&str, &str); 5] = [
    ("MEDIA_ERR_NETWORK", "network error while loading media"),
    ("MEDIA_ERR_DECODE", "the media could not be decoded"),
    ("MEDIA_ERR_SRC_NOT_SUPPORTED", "no supported source was found"),
    ("DRM_LICENSE_DENIED", "the license server refused the request"),
    ("MANIFEST_LOAD_FAILED", "the manifest could not be loaded"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_probabilities_fall_with_rank_and_sum_to_one() {
        let zipf = Zipf::new(200, 1.0);
        let total: f64 = (0..200).map(|r| zipf.probability(r)).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert!((zipf.probability(0) / zipf.probability(1) - 2.0).abs() < 1e-9);
        let mut rng = Rng::new(5);
        let mut counts = vec![0u32; 200];
        for _ in 0..100_000 {
            counts[zipf.sample(&mut rng)] += 1;
        }
        let top = f64::from(counts[0]) / 100_000.0;
        assert!((top - zipf.probability(0)).abs() < 0.01, "{top}");
        assert!(counts[0] > counts[9] && counts[9] > counts[99]);
    }

    #[test]
    fn the_catalog_depends_only_on_the_seed() {
        let a = Catalog::new(42, 200, 2000);
        let b = Catalog::new(42, 200, 2000);
        assert_eq!(a.videos, b.videos);
        assert_ne!(a.videos, Catalog::new(43, 200, 2000).videos);
        assert_eq!(a.user_profile(17), b.user_profile(17));
        assert_eq!(a.videos[0].video_id, "video_0001");
        assert_eq!(a.videos[199].video_id, "video_0200");
        for video in &a.videos {
            assert!((60.0..=3600.0).contains(&video.duration_seconds), "{video:?}");
            assert_eq!(video.duration_seconds.fract(), 0.0);
            assert!(!video.title.is_empty());
        }
    }

    #[test]
    fn tables_agree() {
        assert_eq!(PLATFORMS.len(), PLATFORM_WEIGHTS.len());
        assert_eq!(COUNTRIES.len(), COUNTRY_WEIGHTS.len());
        assert_eq!(CDNS.len(), CDN_WEIGHTS.len());
        assert!(PLATFORMS.iter().all(|p| usize::from(p.max_rung) < LADDER.len() && p.max_rung >= 3));
        assert!(LADDER.windows(2).all(|w| w[0].1 < w[1].1));
    }
}
