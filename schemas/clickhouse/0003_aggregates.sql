-- Pre-aggregated tables written by aggregator-cron (docs/metrics.md).
--
-- A job computes one window (an hour for video_metrics, a UTC day for
-- user_engagement_daily) from the deduplicated raw events and inserts every
-- row of that window with a new, larger `version`; ReplacingMergeTree keeps
-- the newest version of each key, and readers use FINAL, so re-running a
-- window replaces it and never adds to it. Once all rows of a run are in, the
-- job appends a row to aggregation_windows, the record readers use to know
-- which windows exist and up to which insert time they are complete.
--
-- Views belong to the window in which their video_start happened. Besides the
-- seed's columns (values for that window alone), each row keeps the per-view
-- facts needed to merge windows exactly: distinct viewers, each view's watch
-- time (percentages use the catalog duration at query time) and each view's
-- startup time (for exact percentiles).

CREATE TABLE IF NOT EXISTS video_metrics
(
    video_id String,
    hour DateTime,                          -- window start, UTC
    date Date,                              -- the seed's column: the day of `hour`
    views UInt32,
    unique_viewers UInt32,                  -- within this hour only; merge `viewers` across hours
    watch_time_seconds Float64,
    avg_watch_percentage Float32,           -- by the events' duration_seconds; the API uses the catalog's
    completion_rate Float32,
    completed_views UInt32,                 -- views with a video_complete
    failed_views UInt32,                    -- views with a fatal video_error
    exits_before_start UInt32,              -- views without video_progress and without a fatal error
    buffer_ms UInt64,                       -- sum of buffer_duration_ms of video_buffer events
    viewers Array(String),                  -- distinct viewer keys: 'u:' || user_id, or 's:' || session_id
    view_watch_seconds Array(Float64),      -- one entry per view
    startup_times_ms Array(UInt64),         -- one entry per view that has a startup time
    duration_seconds Nullable(Float64),     -- largest duration_seconds the player reported
    version UInt64,                         -- run id; the newest wins
    computed_at DateTime
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (video_id, hour);

CREATE TABLE IF NOT EXISTS user_engagement_daily
(
    user_id String,
    date Date,                              -- window: the UTC day
    sessions Array(String),                 -- distinct session_id of the day's views
    views UInt32,
    completed_views UInt32,
    watch_time_seconds Float64,
    view_video_ids Array(String),           -- per view, in the same order in every view_* array
    view_qualities Array(String),           -- last rendition the view reported; '' when none
    view_device_types Array(String),        -- last device_type the view reported; '' when none
    view_hours Array(UInt8),                -- UTC hour of day of the view's start
    view_watch_seconds Array(Float64),
    version UInt64,
    computed_at DateTime
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(date)
ORDER BY (user_id, date);

CREATE TABLE IF NOT EXISTS aggregation_windows
(
    job String,                             -- video_metrics or user_engagement_daily
    window_start DateTime,
    version UInt64,                         -- the run that wrote the window's rows
    covered_until DateTime,                 -- every event row inserted up to here is included
    rows UInt64,
    computed_at DateTime
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (job, window_start);
