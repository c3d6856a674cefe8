-- video_hour_metrics: per video and hour of view starts from the facts pass's
-- horizon on, the hour's whole video_metrics row (the same columns and types,
-- arrays included) as of a facts pass (issue 11; ARCHITECTURE.md, "Read
-- path").
--
-- After storing its view facts, a pass rewrites the row of every (video,
-- hour) it wrote a start for, from the newest stored row of each start of the
-- pair, under its own version (a pair whose views all moved away gets a row of
-- zeros and empty arrays). So the newest row of every pair holds the hour as
-- of the newest pass that touched it: a busy video's metrics read their open
-- hours from here, one row per hour, instead of grouping tens of thousands of
-- stored view facts and rebuilding the views touched since the pass
-- (query-api `freshness.video_from_pass_min_views`), answering as of that
-- pass. video_hour_totals, which top videos reads across every video, is
-- copied from these rows.
--
-- Sorted by video first: a read asks for one video's hours. Small granules:
-- every pass adds a part, and a key range costs a granule of each part it
-- lies in (8,192 rows by default: 41,000 rows read for one small video's
-- views on the bench's fixture, for the few rows it needed).
CREATE TABLE IF NOT EXISTS video_hour_metrics
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
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(hour)
ORDER BY (video_id, hour)
SETTINGS index_granularity = 256;
