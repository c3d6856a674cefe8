-- video_hour_totals: per video and hour of view starts from the facts pass's
-- horizon on, the totals top videos ranks by (views, completed views, watch
-- time), as of a facts pass (issue 11; ARCHITECTURE.md, "Read path").
--
-- After storing its view facts, a pass rewrites the totals of every (video,
-- hour) it wrote a start for, from the newest stored row of each start, under
-- its own version (a pair whose views all moved away gets zeros). So the
-- newest row of every pair holds the pair's views as of the newest pass:
-- top videos reads the open windows of a busy platform from here instead of
-- rebuilding their views (query-api `freshness.top_from_pass_min_views`),
-- answering as of that pass.
CREATE TABLE IF NOT EXISTS video_hour_totals
(
    hour DateTime,
    video_id String,
    views UInt64,
    completed_views UInt64,
    watch_time_seconds Float64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(hour)
ORDER BY (hour, video_id);
