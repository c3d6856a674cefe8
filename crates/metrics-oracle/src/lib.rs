//! Test-only oracle for the read path of the metrics (issue 4).
//!
//! - [`generate`]: deterministic playback sessions with known features, as
//!   ingest JSON;
//! - [`views`], [`metrics`]: an independent, plain-Rust implementation of every
//!   definition in `docs/metrics.md` (no SQL, nothing shared with
//!   `metrics-sql`), over the same JSON events;
//! - [`compare`]: field-by-field comparison of expected and received answers.
//!
//! Realtime metrics are not covered: they depend on server receive times.

pub mod compare;
pub mod event;
pub mod generate;
pub mod metrics;
pub use seeded_rng as rng;
pub mod views;

use serde_json::Value;

pub use event::Event;
pub use metrics::{Catalog, CatalogEntry, Days, TopMetric, TopVideos, UserMetrics, VideoMetrics};
pub use views::{View, Viewer};

/// The answers the definitions give for a set of events and a catalog.
#[derive(Debug, Clone)]
pub struct Oracle {
    pub events: Vec<Event>,
    pub views: Vec<View>,
    pub catalog: Catalog,
}

impl Oracle {
    /// Reads `events` (ingest JSON, duplicates allowed) and builds the views.
    pub fn new(events: &[Value], catalog: Catalog) -> Result<Self, String> {
        let events = events.iter().map(Event::from_json).collect::<Result<Vec<_>, _>>()?;
        let views = views::views(&events);
        Ok(Self { events, views, catalog })
    }

    /// The same oracle with more events (late arrivals, duplicates).
    pub fn with_events(&self, more: &[Value]) -> Result<Self, String> {
        let mut events = self.events.clone();
        for value in more {
            events.push(Event::from_json(value)?);
        }
        let views = views::views(&events);
        Ok(Self { events, views, catalog: self.catalog.clone() })
    }

    pub fn video(&self, video_id: &str, days: Days) -> VideoMetrics {
        metrics::video_metrics(&self.views, &self.catalog, video_id, days)
    }

    pub fn user(&self, user_id: &str, days: Days) -> UserMetrics {
        metrics::user_metrics(&self.views, &self.catalog, user_id, days)
    }

    pub fn top(&self, metric: TopMetric, days: Days, limit: usize) -> TopVideos {
        metrics::top_videos(&self.views, metric, days, limit)
    }

    /// Distinct video ids with at least one view, sorted.
    pub fn video_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.views.iter().map(|v| v.video_id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Distinct user ids with at least one view, sorted.
    pub fn user_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.views.iter().filter_map(|v| v.user_id().map(str::to_owned)).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The view `event` belongs to, if any.
    pub fn view_of(&self, event: &Value) -> Option<&View> {
        let event = Event::from_json(event).ok()?;
        self.views.iter().find(|v| v.contains(&event))
    }

    /// Distinct event ids.
    pub fn distinct_event_ids(&self) -> usize {
        views::dedupe(&self.events).len()
    }
}

#[cfg(test)]
mod tests;
