-- video_day_totals: per UTC day and video, the views, completed views and
-- watch time of the day's 24 hours of video_metrics, rolled up by
-- aggregator-cron once the day is final (every hour aggregated and past the
-- lateness horizon). Top videos reads a whole day here instead of 24 rows
-- per video from video_metrics (issue 11; ARCHITECTURE.md, "Read path").
--
-- A rollup writes every video of the day's hours under a new version (zeros
-- for a video whose views left the day: its hours' newest rows are retired
-- rows of zeros), so the newest row of every (date, video_id) is the day's
-- total; then it
-- appends a row to video_day_rollups with the newest hour marker it saw
-- (source_version). Readers use a day only when that source version is
-- still the newest marker of the day's hours (metrics_sql::days).
CREATE TABLE IF NOT EXISTS video_day_totals
(
    date Date,
    video_id String,
    views UInt64,
    completed_views UInt64,
    watch_time_seconds Float64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(date)
ORDER BY (date, video_id);

CREATE TABLE IF NOT EXISTS video_day_rollups
(
    date Date,
    source_version UInt64,                  -- newest aggregation_windows version among the day's hours
    version UInt64,                         -- the rollup's version in video_day_totals
    rows UInt64,                            -- rows with views it wrote
    computed_at DateTime
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(date)
ORDER BY date;
