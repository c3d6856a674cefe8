//! Video, user and top-video metrics (docs/metrics.md) from the views.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::views::{DAY_MS, View, Viewer};

/// What the catalog (PostgreSQL `videos`) says about a video.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CatalogEntry {
    pub title: String,
    pub duration_seconds: Option<f64>,
    pub category: Option<String>,
}

pub type Catalog = BTreeMap<String, CatalogEntry>;

/// Inclusive range of UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Days {
    pub fn new(from: NaiveDate, to: NaiveDate) -> Self {
        Self { from, to }
    }

    /// One day.
    pub fn day(day: NaiveDate) -> Self {
        Self { from: day, to: day }
    }

    pub fn contains_view(&self, view: &View) -> bool {
        let day = epoch_day(self.from)..=epoch_day(self.to);
        day.contains(&view.day())
    }

    /// `startDate=…&endDate=…`.
    pub fn query(&self) -> String {
        format!("startDate={}&endDate={}", self.from.format("%Y-%m-%d"), self.to.format("%Y-%m-%d"))
    }
}

/// Days since 1970-01-01.
pub fn epoch_day(date: NaiveDate) -> i64 {
    date.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch is a date")).num_days()
}

/// The UTC date of epoch milliseconds.
pub fn date_of_ms(ms: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch is a date") + chrono::Duration::days(ms.div_euclid(DAY_MS))
}

/// Where a video's duration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationSource {
    Catalog,
    Events,
}

/// `GET /api/metrics/video/{id}` as the definitions say it must be.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoMetrics {
    pub video_id: String,
    pub days: Days,
    pub views: u64,
    pub unique_viewers: u64,
    pub watch_time_seconds: f64,
    pub avg_watch_percentage: f64,
    pub completion_rate: f64,
    pub engagement_score: f64,
    /// Before rounding to 2 decimals.
    pub engagement_score_exact: f64,
    pub startup_median_ms: Option<u64>,
    pub startup_p95_ms: Option<u64>,
    pub rebuffer_percentage: f64,
    pub playback_failure_percentage: f64,
    pub exits_before_video_start_percentage: f64,
    pub duration_seconds: Option<f64>,
    pub duration_source: Option<DurationSource>,
}

impl VideoMetrics {
    /// The expected response body, without `freshness` (which depends on the aggregator, not the definitions).
    pub fn to_json(&self) -> Value {
        json!({
            "video_id": self.video_id,
            "start_date": self.days.from.format("%Y-%m-%d").to_string(),
            "end_date": self.days.to.format("%Y-%m-%d").to_string(),
            "views": self.views,
            "unique_viewers": self.unique_viewers,
            "watch_time_seconds": self.watch_time_seconds,
            "avg_watch_percentage": self.avg_watch_percentage,
            "completion_rate": self.completion_rate,
            "engagement_score": self.engagement_score,
            "startup_time_ms": {"median": self.startup_median_ms, "p95": self.startup_p95_ms},
            "rebuffer_percentage": self.rebuffer_percentage,
            "playback_failure_percentage": self.playback_failure_percentage,
            "exits_before_video_start_percentage": self.exits_before_video_start_percentage,
            "duration_seconds": self.duration_seconds,
            "duration_source": self.duration_source.map(|s| match s {
                DurationSource::Catalog => "catalog",
                DurationSource::Events => "events",
            }),
        })
    }

    /// Differences between `got` (a response body) and these numbers; empty when they agree.
    ///
    /// `engagement_score` is rounded to 2 decimals, so a value whose exact
    /// score lies within 1e-9 of a rounding boundary may be off by 0.01.
    pub fn check(&self, got: &Value) -> Vec<String> {
        let mut expected = self.to_json();
        if let Some(score) = got.get("engagement_score").and_then(Value::as_f64) {
            let scaled = self.engagement_score_exact * 100.0;
            let near_boundary = (scaled - scaled.trunc() - 0.5).abs() < 1e-7 * scaled.abs().max(1.0);
            if near_boundary && (score - self.engagement_score).abs() <= 0.010_000_1 {
                expected["engagement_score"] = json!(score);
            }
        }
        crate::compare::differences(&expected, got)
    }
}

/// `GET /api/metrics/user/{id}` as the definitions say it must be.
#[derive(Debug, Clone, PartialEq)]
pub struct UserMetrics {
    pub user_id: String,
    pub days: Days,
    pub sessions: u64,
    pub views: u64,
    pub watch_time_seconds: f64,
    pub completion_rate: f64,
    pub quality: Option<String>,
    pub device_type: Option<String>,
    pub category: Option<String>,
    pub hour_of_day: Option<u32>,
}

impl UserMetrics {
    pub fn to_json(&self) -> Value {
        json!({
            "user_id": self.user_id,
            "start_date": self.days.from.format("%Y-%m-%d").to_string(),
            "end_date": self.days.to.format("%Y-%m-%d").to_string(),
            "sessions": self.sessions,
            "views": self.views,
            "watch_time_seconds": self.watch_time_seconds,
            "completion_rate": self.completion_rate,
            "preferences": {
                "quality": self.quality,
                "device_type": self.device_type,
                "category": self.category,
                "hour_of_day": self.hour_of_day,
            },
        })
    }

    pub fn check(&self, got: &Value) -> Vec<String> {
        crate::compare::differences(&self.to_json(), got)
    }
}

/// The rankings of `GET /api/metrics/videos/top`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopMetric {
    Views,
    WatchTime,
    CompletionRate,
}

impl TopMetric {
    pub const ALL: [TopMetric; 3] = [TopMetric::Views, TopMetric::WatchTime, TopMetric::CompletionRate];

    /// The `metric` query parameter.
    pub fn name(self) -> &'static str {
        match self {
            TopMetric::Views => "views",
            TopMetric::WatchTime => "watch_time",
            TopMetric::CompletionRate => "completion_rate",
        }
    }
}

/// One entry of the top list.
#[derive(Debug, Clone, PartialEq)]
pub struct TopVideo {
    pub video_id: String,
    pub views: u64,
    pub watch_time_seconds: f64,
    pub completion_rate: f64,
}

/// The top list as the definitions say it must be.
#[derive(Debug, Clone, PartialEq)]
pub struct TopVideos {
    pub metric: TopMetric,
    pub days: Days,
    pub limit: usize,
    pub videos: Vec<TopVideo>,
}

impl TopVideos {
    pub fn to_json(&self) -> Value {
        json!({
            "metric": self.metric.name(),
            "start_date": self.days.from.format("%Y-%m-%d").to_string(),
            "end_date": self.days.to.format("%Y-%m-%d").to_string(),
            "limit": self.limit,
            "videos": self.videos.iter().map(|v| json!({
                "video_id": v.video_id,
                "views": v.views,
                "watch_time_seconds": v.watch_time_seconds,
                "completion_rate": v.completion_rate,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn check(&self, got: &Value) -> Vec<String> {
        crate::compare::differences(&self.to_json(), got)
    }
}

/// The value at 1-based rank `intDiv(n × p + 99, 100)` of the sorted values.
pub fn nearest_rank(sorted: &[u64], percent: usize) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // intDiv(n × p + 99, 100)
    let rank = (n * percent).div_ceil(100);
    Some(sorted[rank.max(1) - 1])
}

/// `a ÷ b`, 0 when `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// Rounds to 2 decimals, halves away from zero.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The metrics of one video over `days`.
pub fn video_metrics(views: &[View], catalog: &Catalog, video_id: &str, days: Days) -> VideoMetrics {
    let selected: Vec<&View> = views.iter().filter(|v| v.video_id == video_id && days.contains_view(v)).collect();
    let n = selected.len() as f64;
    let unique: BTreeSet<&Viewer> = selected.iter().map(|v| &v.viewer).collect();
    let watch: f64 = selected.iter().map(|v| v.watch_seconds).sum();
    let (duration, source) = match catalog.get(video_id).and_then(|c| c.duration_seconds) {
        Some(d) => (Some(d), Some(DurationSource::Catalog)),
        None => match selected.iter().filter_map(|v| v.duration).reduce(f64::max) {
            Some(d) => (Some(d), Some(DurationSource::Events)),
            None => (None, None),
        },
    };
    let avg_watch_percentage = match duration {
        Some(d) if d > 0.0 && !selected.is_empty() => {
            selected.iter().map(|v| (100.0 * v.watch_seconds / d).min(100.0)).sum::<f64>() / n
        }
        _ => 0.0,
    };
    let count = |f: fn(&View) -> bool| selected.iter().filter(|v| f(v)).count() as f64;
    let completion_rate = ratio(count(|v| v.completed), n);
    let buffer: u64 = selected.iter().map(|v| v.buffer_ms).sum();
    let rebuffer_percentage = ratio(buffer as f64, 1000.0 * watch) * 100.0;
    let mut startups: Vec<u64> = selected.iter().filter_map(|v| v.startup_ms).collect();
    startups.sort_unstable();
    let engagement = if selected.is_empty() {
        0.0
    } else {
        let w = avg_watch_percentage / 100.0;
        let r = (rebuffer_percentage / 10.0).min(1.0);
        let p = (n - unique.len() as f64) / n;
        10.0 * (0.4 * w + 0.3 * completion_rate + 0.2 * (1.0 - r) + 0.1 * p)
    };
    VideoMetrics {
        video_id: video_id.to_owned(),
        days,
        views: selected.len() as u64,
        unique_viewers: unique.len() as u64,
        watch_time_seconds: watch,
        avg_watch_percentage,
        completion_rate,
        engagement_score: round2(engagement),
        engagement_score_exact: engagement,
        startup_median_ms: nearest_rank(&startups, 50),
        startup_p95_ms: nearest_rank(&startups, 95),
        rebuffer_percentage,
        playback_failure_percentage: ratio(count(|v| v.failed), n) * 100.0,
        exits_before_video_start_percentage: ratio(count(|v| v.exited_before_start), n) * 100.0,
        duration_seconds: duration,
        duration_source: source,
    }
}

/// The value with the largest summed weight; ties go to the smallest value.
fn preferred<K: Ord + Clone>(weighted: impl Iterator<Item = (K, f64)>) -> Option<K> {
    let mut sums: BTreeMap<K, f64> = BTreeMap::new();
    for (key, weight) in weighted {
        *sums.entry(key).or_default() += weight;
    }
    // Ascending keys; a later key wins only when strictly larger.
    let mut best: Option<(K, f64)> = None;
    for (key, sum) in sums {
        if best.as_ref().is_none_or(|(_, b)| sum > *b) {
            best = Some((key, sum));
        }
    }
    best.map(|(key, _)| key)
}

/// The metrics of one user over `days`.
pub fn user_metrics(views: &[View], catalog: &Catalog, user_id: &str, days: Days) -> UserMetrics {
    let selected: Vec<&View> = views.iter().filter(|v| v.user_id() == Some(user_id) && days.contains_view(v)).collect();
    let sessions: BTreeSet<&str> = selected.iter().map(|v| v.session_id.as_str()).collect();
    let completed = selected.iter().filter(|v| v.completed).count() as f64;
    UserMetrics {
        user_id: user_id.to_owned(),
        days,
        sessions: sessions.len() as u64,
        views: selected.len() as u64,
        watch_time_seconds: selected.iter().map(|v| v.watch_seconds).sum(),
        completion_rate: ratio(completed, selected.len() as f64),
        quality: preferred(selected.iter().filter_map(|v| Some((v.quality.clone()?, v.watch_seconds)))),
        device_type: preferred(selected.iter().filter_map(|v| Some((v.device_type.clone()?, v.watch_seconds)))),
        category: preferred(
            selected.iter().filter_map(|v| Some((catalog.get(&v.video_id)?.category.clone()?, v.watch_seconds))),
        ),
        hour_of_day: preferred(selected.iter().map(|v| (v.hour_of_day(), v.watch_seconds))),
    }
}

/// The top `limit` videos by `metric` over `days`.
pub fn top_videos(views: &[View], metric: TopMetric, days: Days, limit: usize) -> TopVideos {
    let mut per_video: HashMap<&str, (u64, u64, f64)> = HashMap::new();
    for view in views.iter().filter(|v| days.contains_view(v)) {
        let entry = per_video.entry(&view.video_id).or_default();
        entry.0 += 1;
        entry.1 += u64::from(view.completed);
        entry.2 += view.watch_seconds;
    }
    let mut videos: Vec<TopVideo> = per_video
        .into_iter()
        .map(|(video_id, (views, completed, watch))| TopVideo {
            video_id: video_id.to_owned(),
            views,
            watch_time_seconds: watch,
            completion_rate: completed as f64 / views as f64,
        })
        .collect();
    videos.sort_by(|a, b| {
        let primary = match metric {
            TopMetric::Views => b.views.cmp(&a.views),
            TopMetric::WatchTime => b.watch_time_seconds.total_cmp(&a.watch_time_seconds),
            TopMetric::CompletionRate => {
                b.completion_rate.total_cmp(&a.completion_rate).then_with(|| b.views.cmp(&a.views))
            }
        };
        primary.then_with(|| a.video_id.cmp(&b.video_id))
    });
    videos.truncate(limit);
    TopVideos { metric, days, limit, videos }
}
