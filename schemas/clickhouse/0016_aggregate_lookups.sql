-- video_metrics_lookup and user_engagement_lookup: copies of video_metrics
-- and user_engagement_daily (0003) in granules of 256 rows instead of 8,192,
-- for reads of one video's hours or one user's days.
--
-- A read of one key takes a whole granule of every part the key lies in:
-- with 8,192-row granules, the bench's median video read 56,620 rows of
-- video_metrics for its 168 hours of seven days (twelve parts), and the median
-- user 16,384 rows of user_engagement_daily for seven rows (BENCHMARKS.md).
-- The count follows the parts, not the key's own rows, and grows with the
-- platform's traffic as the parts do. The tables keep their 8,192-row
-- granules for what reads every key (top videos, the aggregator's own
-- windows): index granularity cannot change on an existing table, and the
-- seed names them.
--
-- Filled by the materialized views below on every insert into the source
-- (aggregation runs and their retirements of vanished rows), so a window's
-- rows are in the copy before its marker in aggregation_windows is written.
-- The views start first and the stored rows are copied after them; a row
-- both copied and seen by a view is stored twice with the same version and
-- content, and readers take one row per key by `argMax(…, version)`. Kept
-- as long as the source (`retention.video_metrics_months` and
-- `retention.user_engagement_months`), by the same partitions.
CREATE TABLE IF NOT EXISTS video_metrics_lookup
(
    video_id String,
    hour DateTime,
    date Date,
    views UInt32,
    unique_viewers UInt32,
    watch_time_seconds Float64,
    avg_watch_percentage Float32,
    completion_rate Float32,
    completed_views UInt32,
    failed_views UInt32,
    exits_before_start UInt32,
    buffer_ms UInt64,
    viewers Array(String),
    view_watch_seconds Array(Float64),
    startup_times_ms Array(UInt64),
    duration_seconds Nullable(Float64),
    version UInt64,
    computed_at DateTime
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (video_id, hour)
SETTINGS index_granularity = 256;

CREATE TABLE IF NOT EXISTS user_engagement_lookup
(
    user_id String,
    date Date,
    sessions Array(String),
    views UInt32,
    completed_views UInt32,
    watch_time_seconds Float64,
    view_video_ids Array(String),
    view_qualities Array(String),
    view_device_types Array(String),
    view_hours Array(UInt8),
    view_watch_seconds Array(Float64),
    version UInt64,
    computed_at DateTime
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(date)
ORDER BY (user_id, date)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS video_metrics_lookup_mv TO video_metrics_lookup
AS SELECT video_id, hour, date, views, unique_viewers, watch_time_seconds, avg_watch_percentage, completion_rate,
    completed_views, failed_views, exits_before_start, buffer_ms, viewers, view_watch_seconds, startup_times_ms,
    duration_seconds, version, computed_at
FROM video_metrics;

CREATE MATERIALIZED VIEW IF NOT EXISTS user_engagement_lookup_mv TO user_engagement_lookup
AS SELECT user_id, date, sessions, views, completed_views, watch_time_seconds, view_video_ids, view_qualities,
    view_device_types, view_hours, view_watch_seconds, version, computed_at
FROM user_engagement_daily;

INSERT INTO video_metrics_lookup
SELECT video_id, hour, date, views, unique_viewers, watch_time_seconds, avg_watch_percentage, completion_rate,
    completed_views, failed_views, exits_before_start, buffer_ms, viewers, view_watch_seconds, startup_times_ms,
    duration_seconds, version, computed_at
FROM video_metrics;

INSERT INTO user_engagement_lookup
SELECT user_id, date, sessions, views, completed_views, watch_time_seconds, view_video_ids, view_qualities,
    view_device_types, view_hours, view_watch_seconds, version, computed_at
FROM user_engagement_daily;
