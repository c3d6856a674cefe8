-- Per-view facts kept up to date by aggregator-cron's facts pass (issue 11;
-- ARCHITECTURE.md, "Read path"), so that a read of a window still open to late
-- events rebuilds only the views whose keys received rows since the last pass
-- instead of every view of the window.
--
-- keys_by_insert: which view keys received rows, by insert time. One row per
-- key per inserted block, sorted by `inserted_at`, so "the keys touched since
-- T" reads a few granules whatever the table's size.
CREATE TABLE IF NOT EXISTS keys_by_insert
(
    inserted_at DateTime,                    -- the events rows' inserted_at
    video_id String,
    session_id String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(inserted_at)
ORDER BY inserted_at;

CREATE MATERIALIZED VIEW IF NOT EXISTS keys_by_insert_mv TO keys_by_insert
AS SELECT inserted_at, video_id, session_id
FROM events
GROUP BY inserted_at, video_id, session_id;

-- view_facts: one row per distinct video_start time of a key, for the starts
-- at or after a pass's horizon: the facts of the view it opens (`is_view` = 1),
-- or a tombstone (`is_view` = 0) when a start no longer opens a view (an
-- earlier video_start arrived late). A pass writes every start of each key it
-- rebuilds under one `version`, larger than any earlier pass's, so the newest
-- row of a (video_id, session_id, start_ms) is the current one. The column
-- types are those of the view facts computed from `events`
-- (crates/metrics-sql/src/views.rs).
CREATE TABLE IF NOT EXISTS view_facts
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
ORDER BY (video_id, session_id, start_ms);

-- view_facts_passes: one row per facts pass. `covered_until`: every events row
-- inserted up to this time (inclusive) is in the facts of the views starting at
-- or after `from_ms`.
CREATE TABLE IF NOT EXISTS view_facts_passes
(
    version UInt64,
    covered_until DateTime,
    from_ms UInt64,
    full_pass UInt8,                         -- 1 when the pass rebuilt every key of its range
    rows UInt64,                             -- view_facts rows written
    computed_at DateTime
)
ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(computed_at)
ORDER BY version;
