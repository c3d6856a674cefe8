-- events_hourly: custom queries' exact hourly rollup of the deduplicated
-- events by every dimension but the video (ARCHITECTURE.md, "Read path",
-- 11). aggregator-cron's `events_hourly` job writes one row per UTC hour of
-- client time and combination of the dimensions that occurs in it, with the
-- additive parts of every custom metric except the distinct counts, under
-- the run's version, and records the hour in `aggregation_windows` like its
-- other windows. A custom query reads the hours whose record is newer than
-- their last insert from here, and every other part of its range raw, so
-- a day's answer costs the day's combinations, not its events.
--
-- `event_type` is a dimension, so the per-type counts (views, errors,
-- seeks, ...) are sums of `event_count` over the matching rows. Sums of
-- integer columns and their counts give the means exactly as `avg` does.
CREATE TABLE IF NOT EXISTS events_hourly
(
    hour DateTime,                          -- the UTC hour of the events' client time
    event_type String,
    device_type String,
    browser String,
    os String,
    country String,
    quality String,
    cdn String,
    event_count UInt64,                     -- deduplicated events of the combination
    fatal_errors UInt64,                    -- video_error events with fatal = 1
    buffer_ms_sum UInt64,                   -- sum of buffer_duration_ms (NULL as 0)
    bitrate_sum UInt64,                     -- sum of bitrate_kbps over the events reporting one
    bitrate_count UInt64,                   -- events reporting a bitrate_kbps
    startup_sum UInt64,                     -- sum of startup_time_ms over the events reporting one
    startup_count UInt64,                   -- events reporting a startup_time_ms
    version UInt64,                         -- the run that wrote the row
    computed_at DateTime
)
-- A run writes every combination of its hour under a version larger than
-- every earlier run's (and an empty row for a combination it no longer
-- finds); readers take each combination's newest version.
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, event_type, device_type, browser, os, country, quality, cdn);

-- The last insert time of any event row per UTC hour of client time, so that
-- a reader can tell an hour whose rollup is older than its newest row (a
-- late event) and read that hour raw instead. One row per hour and insert
-- block, collapsed by merges; readers take the maximum.
CREATE TABLE IF NOT EXISTS event_hour_inserts
(
    hour DateTime,
    last_inserted_at DateTime
)
ENGINE = ReplacingMergeTree(last_inserted_at)
PARTITION BY toYYYYMM(hour)
ORDER BY hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS event_hour_inserts_mv TO event_hour_inserts
AS SELECT toDateTime(intDiv(toUInt32(timestamp), 3600) * 3600) AS hour, max(inserted_at) AS last_inserted_at
FROM events
GROUP BY hour;

-- Every hour already stored (the view picks up new inserts only).
INSERT INTO event_hour_inserts
SELECT toDateTime(intDiv(toUInt32(timestamp), 3600) * 3600) AS hour, max(inserted_at) AS last_inserted_at
FROM events
GROUP BY hour;
