//! The finishing formulas of docs/metrics.md: what is computed after a read's
//! SQL returns, from its rows ([`crate::read`]) to the answer
//! ([`crate::responses`]). query-api and realtime-hub call these and compute
//! no metric of their own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::{
    read::{RealtimeRow, TopMetric, TopVideoRow, UserDayRow, VideoSummaryRow},
    responses::{
        CatalogStatus, Freshness, Preferences, RealtimeMetrics, StartupTime, TopVideo, TopVideos, UserMetrics,
        VideoMetrics,
    },
    windows::{DayRange, Split},
};

/// Seconds of the realtime window (docs/metrics.md, "Realtime metrics").
pub const REALTIME_WINDOW_SECS: u64 = 60;

/// The 0–10 engagement score of docs/metrics.md, rounded to 2 decimals.
pub fn engagement_score(
    views: u64,
    unique_viewers: u64,
    avg_watch_percentage: f64,
    completion_rate: f64,
    rebuffer_percentage: f64,
) -> f64 {
    if views == 0 {
        return 0.0;
    }
    let watched = avg_watch_percentage / 100.0;
    let rebuffering = (rebuffer_percentage / 10.0).min(1.0);
    let repeat = views.saturating_sub(unique_viewers) as f64 / views as f64;
    let score = 10.0 * (0.4 * watched + 0.3 * completion_rate + 0.2 * (1.0 - rebuffering) + 0.1 * repeat);
    (score * 100.0).round() / 100.0
}

/// `part ÷ whole`, 0 when `whole` is 0 (every ratio of docs/metrics.md).
pub fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// How many windows of `split` came from each source.
pub fn freshness(split: &Split) -> Freshness {
    Freshness {
        aggregated_windows: split.aggregated.len() + split.days.len() * crate::days::HOURS_PER_DAY as usize,
        raw_windows: split.raw.len() + split.empty.len(),
        pass_windows: (!split.from_pass.is_empty()).then_some(split.from_pass.len()),
        as_of: split.as_of.and_then(|secs| DateTime::from_timestamp(i64::from(secs), 0)),
    }
}

/// The video fields from a summary row ([`crate::read::video_summary`]) and
/// the catalog's duration, when it has one.
pub fn video_metrics(
    video_id: &str,
    range: DayRange,
    row: &VideoSummaryRow,
    catalog_duration: Option<f64>,
    freshness: Freshness,
) -> VideoMetrics {
    let (duration_seconds, duration_source) = match (catalog_duration, row.events_duration) {
        (Some(d), _) => (Some(d), Some("catalog".to_string())),
        (None, Some(d)) if d > 0.0 => (Some(d), Some("events".to_string())),
        _ => (None, None),
    };
    let views = row.views;
    let avg_watch_percentage =
        if views > 0 && duration_seconds.is_some() { row.watch_percentage_sum / views as f64 } else { 0.0 };
    let completion_rate = ratio(row.completed_views, views);
    let rebuffer_percentage = if row.watch_time_seconds > 0.0 {
        row.buffer_ms as f64 / (1000.0 * row.watch_time_seconds) * 100.0
    } else {
        0.0
    };
    let startup = |v: u64| (row.startup_count > 0).then_some(v);
    VideoMetrics {
        video_id: video_id.to_string(),
        start_date: range.start,
        end_date: range.end,
        views,
        unique_viewers: row.unique_viewers,
        watch_time_seconds: row.watch_time_seconds,
        avg_watch_percentage: Some(avg_watch_percentage),
        completion_rate,
        engagement_score: Some(engagement_score(
            views,
            row.unique_viewers,
            avg_watch_percentage,
            completion_rate,
            rebuffer_percentage,
        )),
        startup_time_ms: StartupTime { median: startup(row.startup_median_ms), p95: startup(row.startup_p95_ms) },
        rebuffer_percentage,
        playback_failure_percentage: ratio(row.failed_views, views) * 100.0,
        exits_before_video_start_percentage: ratio(row.exits_before_start, views) * 100.0,
        duration_seconds,
        duration_source,
        freshness,
        catalog: CatalogStatus::Available,
        unavailable_fields: Vec::new(),
    }
}

/// The fields of a video answer that depend on the catalog: its duration
/// (which takes precedence over the players' one, so without the catalog the
/// duration is unknown) and the figures dividing by it. Completion
/// (`video_complete`) and every other field come from the events alone.
pub const VIDEO_CATALOG_FIELDS: &[&str] =
    &["duration_seconds", "duration_source", "avg_watch_percentage", "engagement_score"];

/// The fields of a user answer that depend on the catalog.
pub const USER_CATALOG_FIELDS: &[&str] = &["preferences.category"];

/// [`video_metrics`] when the catalog could not be read: the summary row
/// must have been read without a catalog duration; the
/// [`VIDEO_CATALOG_FIELDS`] are null and listed, the rest is exact.
pub fn video_metrics_without_catalog(
    video_id: &str,
    range: DayRange,
    row: &VideoSummaryRow,
    freshness: Freshness,
) -> VideoMetrics {
    VideoMetrics {
        duration_seconds: None,
        duration_source: None,
        avg_watch_percentage: None,
        engagement_score: None,
        catalog: CatalogStatus::Unavailable,
        unavailable_fields: VIDEO_CATALOG_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
        ..video_metrics(video_id, range, row, None, freshness)
    }
}

/// The value with the largest total watch time; ties go to the smallest value.
fn favourite<K: Ord + Clone>(watch: &BTreeMap<K, f64>) -> Option<K> {
    let mut best: Option<(&K, f64)> = None;
    for (key, &seconds) in watch {
        if best.is_none_or(|(_, most)| seconds > most) {
            best = Some((key, seconds));
        }
    }
    best.map(|(key, _)| key.clone())
}

/// The user fields from the user's day rows ([`crate::read::user_days`]) and
/// the catalog categories of their videos (video id → category).
pub fn user_metrics(
    user_id: &str,
    range: DayRange,
    days: &[UserDayRow],
    categories: &HashMap<String, String>,
    freshness: Freshness,
) -> UserMetrics {
    let mut sessions = BTreeSet::new();
    let (mut views, mut completed, mut watch) = (0u64, 0u64, 0.0);
    let mut quality = BTreeMap::<String, f64>::new();
    let mut device = BTreeMap::<String, f64>::new();
    let mut category = BTreeMap::<String, f64>::new();
    let mut hour = BTreeMap::<u8, f64>::new();
    for day in days {
        sessions.extend(day.sessions.iter().cloned());
        views += u64::from(day.views);
        completed += u64::from(day.completed_views);
        watch += day.watch_time_seconds;
        for (i, &seconds) in day.view_watch_seconds.iter().enumerate() {
            if let Some(q) = day.view_qualities.get(i).filter(|q| !q.is_empty()) {
                *quality.entry(q.clone()).or_default() += seconds;
            }
            if let Some(d) = day.view_device_types.get(i).filter(|d| !d.is_empty()) {
                *device.entry(d.clone()).or_default() += seconds;
            }
            if let Some(c) = day.view_video_ids.get(i).and_then(|v| categories.get(v)) {
                *category.entry(c.clone()).or_default() += seconds;
            }
            if let Some(&h) = day.view_hours.get(i) {
                *hour.entry(h).or_default() += seconds;
            }
        }
    }
    UserMetrics {
        user_id: user_id.to_string(),
        start_date: range.start,
        end_date: range.end,
        sessions: sessions.len() as u64,
        views,
        watch_time_seconds: watch,
        completion_rate: ratio(completed, views),
        preferences: Preferences {
            quality: favourite(&quality),
            device_type: favourite(&device),
            category: favourite(&category),
            hour_of_day: favourite(&hour),
        },
        freshness,
        catalog: CatalogStatus::Available,
        unavailable_fields: Vec::new(),
    }
}

/// [`user_metrics`] when the catalog could not be read: the
/// [`USER_CATALOG_FIELDS`] are null and listed, the rest is exact.
pub fn user_metrics_without_catalog(
    user_id: &str,
    range: DayRange,
    days: &[UserDayRow],
    freshness: Freshness,
) -> UserMetrics {
    UserMetrics {
        catalog: CatalogStatus::Unavailable,
        unavailable_fields: USER_CATALOG_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
        ..user_metrics(user_id, range, days, &HashMap::new(), freshness)
    }
}

/// The top list from the rows of [`crate::read::top_videos`], in their order.
pub fn top_videos(
    metric: TopMetric,
    range: DayRange,
    limit: u32,
    rows: &[TopVideoRow],
    freshness: Freshness,
) -> TopVideos {
    let videos = rows
        .iter()
        .map(|r| TopVideo {
            video_id: r.video_id.clone(),
            views: r.views,
            watch_time_seconds: r.watch_time_seconds,
            completion_rate: ratio(r.completed_views, r.views),
        })
        .collect();
    TopVideos {
        metric: metric.name().to_string(),
        start_date: range.start,
        end_date: range.end,
        limit,
        videos,
        freshness,
    }
}

/// The realtime figures from a window's counts: the row of
/// [`crate::read::realtime`] (query-api) or the same counts taken from the
/// processor's partials (realtime-hub), over `window_seconds` ending at `as_of`.
pub fn realtime_metrics(counts: &RealtimeRow, window_seconds: u64, as_of: DateTime<Utc>) -> RealtimeMetrics {
    RealtimeMetrics {
        concurrent_viewers: counts.concurrent_viewers,
        active_streams: counts.active_streams,
        bandwidth_gbps: counts.bandwidth_kbps as f64 / 1_000_000.0,
        events_per_second: counts.events as f64 / window_seconds as f64,
        error_rate: ratio(counts.errors, counts.events),
        window_seconds,
        as_of,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_day() -> DayRange {
        DayRange { start: "2025-11-24".parse().unwrap(), end: "2025-11-24".parse().unwrap() }
    }

    #[test]
    fn engagement_weighs_watch_completion_rebuffering_and_repeat_viewing() {
        assert_eq!(engagement_score(0, 0, 0.0, 0.0, 0.0), 0.0);
        // Everything watched and completed, no rebuffering, nobody came back: 10 × (0.4 + 0.3 + 0.2).
        assert_eq!(engagement_score(4, 4, 100.0, 1.0, 0.0), 9.0);
        // Half watched, no completion, 5 % rebuffering, 1 of 4 views a repeat.
        assert_eq!(engagement_score(4, 3, 50.0, 0.0, 5.0), 3.25);
        // Rebuffering beyond 10 % costs no more than 10 %.
        assert_eq!(engagement_score(1, 1, 0.0, 0.0, 50.0), engagement_score(1, 1, 0.0, 0.0, 10.0));
    }

    #[test]
    fn video_fields_follow_the_definitions() {
        let row = VideoSummaryRow {
            views: 3,
            unique_viewers: 2,
            completed_views: 1,
            failed_views: 1,
            exits_before_start: 1,
            buffer_ms: 700,
            startup_count: 2,
            watch_time_seconds: 66.0,
            watch_percentage_sum: 66.0,
            events_duration: Some(100.0),
            startup_median_ms: 800,
            startup_p95_ms: 1500,
        };
        let fresh = Freshness { aggregated_windows: 0, raw_windows: 24, pass_windows: None, as_of: None };
        let m = video_metrics("v1", one_day(), &row, None, fresh.clone());
        assert_eq!(m.avg_watch_percentage, Some(22.0));
        assert_eq!(m.completion_rate, 1.0 / 3.0);
        assert_eq!(m.rebuffer_percentage, 700.0 / 66_000.0 * 100.0);
        assert_eq!(m.playback_failure_percentage, 1.0 / 3.0 * 100.0);
        assert_eq!(m.exits_before_video_start_percentage, 1.0 / 3.0 * 100.0);
        assert_eq!(m.startup_time_ms, StartupTime { median: Some(800), p95: Some(1500) });
        assert_eq!((m.duration_seconds, m.duration_source.as_deref()), (Some(100.0), Some("events")));
        let m = video_metrics("v1", one_day(), &row, Some(50.0), fresh.clone());
        assert_eq!(m.duration_source.as_deref(), Some("catalog"));
        assert_eq!((m.catalog, m.unavailable_fields.len()), (CatalogStatus::Available, 0));

        let degraded = video_metrics_without_catalog("v1", one_day(), &row, fresh.clone());
        assert_eq!(degraded.catalog, CatalogStatus::Unavailable);
        assert_eq!(degraded.unavailable_fields, VIDEO_CATALOG_FIELDS);
        assert_eq!((degraded.avg_watch_percentage, degraded.engagement_score), (None, None));
        assert_eq!((degraded.duration_seconds, degraded.duration_source.as_deref()), (None, None));
        let exact = video_metrics("v1", one_day(), &row, None, fresh.clone());
        assert_eq!(
            (degraded.views, degraded.completion_rate, degraded.rebuffer_percentage, &degraded.startup_time_ms),
            (exact.views, exact.completion_rate, exact.rebuffer_percentage, &exact.startup_time_ms),
            "the fields from the events stay exact"
        );
        let json = serde_json::to_value(&degraded).unwrap();
        assert_eq!(json["catalog"], "unavailable");
        assert!(json["avg_watch_percentage"].is_null() && json["engagement_score"].is_null(), "{json}");
        let json = serde_json::to_value(&exact).unwrap();
        assert_eq!(json["catalog"], "available");
        assert!(json.get("unavailable_fields").is_none(), "{json}");

        let empty = VideoSummaryRow {
            views: 0,
            unique_viewers: 0,
            completed_views: 0,
            failed_views: 0,
            exits_before_start: 0,
            buffer_ms: 0,
            startup_count: 0,
            watch_time_seconds: 0.0,
            watch_percentage_sum: 0.0,
            events_duration: None,
            startup_median_ms: 0,
            startup_p95_ms: 0,
        };
        let m = video_metrics("v1", one_day(), &empty, None, fresh);
        assert_eq!((m.views, m.completion_rate, m.engagement_score), (0, 0.0, Some(0.0)));
        assert_eq!(m.startup_time_ms, StartupTime { median: None, p95: None });
        assert_eq!(m.duration_source, None);
    }

    #[test]
    fn preferences_go_to_the_most_watched_value_ties_to_the_smallest() {
        let day = UserDayRow {
            sessions: vec!["s1".into(), "s2".into()],
            views: 3,
            completed_views: 1,
            watch_time_seconds: 70.0,
            view_video_ids: vec!["a".into(), "b".into(), "c".into()],
            view_qualities: vec!["720p".into(), "1080p".into(), String::new()],
            view_device_types: vec!["tv".into(), "mobile".into(), "mobile".into()],
            view_hours: vec![20, 8, 9],
            view_watch_seconds: vec![30.0, 30.0, 10.0],
        };
        let categories = [("a".to_string(), "news".to_string()), ("c".to_string(), "sport".to_string())].into();
        let fresh = Freshness { aggregated_windows: 1, raw_windows: 0, pass_windows: None, as_of: None };
        let days = [day.clone(), day];
        let degraded = user_metrics_without_catalog("u1", one_day(), &days, fresh.clone());
        let m = user_metrics("u1", one_day(), &days, &categories, fresh);
        assert_eq!(degraded.preferences, Preferences { category: None, ..m.preferences.clone() });
        assert_eq!((degraded.views, degraded.watch_time_seconds), (m.views, m.watch_time_seconds));
        assert_eq!(degraded.unavailable_fields, USER_CATALOG_FIELDS);
        assert_eq!((m.sessions, m.views, m.watch_time_seconds), (2, 6, 140.0));
        assert_eq!(m.completion_rate, 2.0 / 6.0);
        assert_eq!(
            m.preferences,
            Preferences {
                quality: Some("1080p".into()),      // tie 60/60: smallest string
                device_type: Some("mobile".into()), // 80 against 60
                category: Some("news".into()),
                hour_of_day: Some(8), // tie 60/60 with 20: smallest hour
            }
        );
    }

    #[test]
    fn top_entries_carry_their_completion_rate_in_order() {
        let rows = [
            TopVideoRow { video_id: "b".into(), views: 4, completed_views: 1, watch_time_seconds: 9.5 },
            TopVideoRow { video_id: "a".into(), views: 0, completed_views: 0, watch_time_seconds: 0.0 },
        ];
        let top = top_videos(
            TopMetric::WatchTime,
            one_day(),
            2,
            &rows,
            Freshness { aggregated_windows: 1, raw_windows: 0, pass_windows: None, as_of: None },
        );
        assert_eq!(top.metric, "watch_time");
        for metric in TopMetric::ALL {
            assert_eq!(TopMetric::from_name(metric.name()), Some(metric));
        }
        assert_eq!(top.videos.iter().map(|v| v.video_id.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!((top.videos[0].completion_rate, top.videos[1].completion_rate), (0.25, 0.0));
    }

    #[test]
    fn realtime_figures_from_counts() {
        let counts =
            RealtimeRow { events: 6, errors: 1, concurrent_viewers: 2, active_streams: 1, bandwidth_kbps: 3000 };
        let m = realtime_metrics(&counts, REALTIME_WINDOW_SECS, DateTime::UNIX_EPOCH);
        assert_eq!((m.bandwidth_gbps, m.events_per_second, m.error_rate), (3000.0 / 1e6, 0.1, 1.0 / 6.0));
        let empty = RealtimeRow { events: 0, errors: 0, concurrent_viewers: 0, active_streams: 0, bandwidth_kbps: 0 };
        assert_eq!(realtime_metrics(&empty, 60, DateTime::UNIX_EPOCH).error_rate, 0.0);
    }
}
