-- view_facts_v2: `view_facts` (0007) in granules of 256 rows instead of
-- 8,192.
--
-- A user's settled read takes the newest stored row of each start of the
-- user's view keys, and each key costs a whole granule in every part it has
-- rows in. The facts pass adds a part every few seconds, so at the turn of
-- an hour (a full pass, many unmerged parts) the bench's median user read
-- 451,448 rows for about ten keys (BENCHMARKS.md); a small video's key range
-- likewise cost a granule per part. The table holds the lateness horizon's
-- views only (`retention.facts_days`), so the larger primary index stays
-- small.
--
-- A new table: the granularity of an existing one cannot change. The view
-- below starts first, so a pass of the previous release that stores its
-- facts while this runs reaches both tables; then every stored row is
-- copied (a row both copied and seen by the view is stored twice with the
-- same version and content, and readers take one row per start by
-- `argMax(…, version)`, so the copy changes no answer). The view and the old
-- table are dropped at the end: a previous release's pass that writes after
-- that fails and is not recorded, so the next pass covers its keys again.
CREATE TABLE IF NOT EXISTS view_facts_v2
(
    date Date,                               -- UTC day of the start
    video_id String,
    session_id String,
    start_ms UInt64,                         -- client time of the video_start
    is_view UInt8,
    watch_seconds Float64,
    completed UInt8,
    failed UInt8,
    exited_before_start UInt8,
    startup_ms Int64,                        -- -1 when unknown
    view_buffer_ms UInt64,
    view_duration Nullable(Float64),
    view_quality String,
    view_device String,
    view_user Nullable(String),
    viewer String,
    last_inserted DateTime,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(date)
ORDER BY (video_id, session_id, start_ms)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS view_facts_v2_mv TO view_facts_v2
AS SELECT date, video_id, session_id, start_ms, is_view, watch_seconds, completed, failed, exited_before_start,
    startup_ms, view_buffer_ms, view_duration, view_quality, view_device, view_user, viewer, last_inserted, version
FROM view_facts;

INSERT INTO view_facts_v2
SELECT date, video_id, session_id, start_ms, is_view, watch_seconds, completed, failed, exited_before_start,
    startup_ms, view_buffer_ms, view_duration, view_quality, view_device, view_user, viewer, last_inserted, version
FROM view_facts;

DROP TABLE IF EXISTS view_facts_v2_mv;
DROP TABLE IF EXISTS view_facts;
