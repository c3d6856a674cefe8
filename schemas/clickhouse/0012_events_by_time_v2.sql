-- events_by_time_v2: the time-clustered copy of `events` (0008) with the
-- columns custom queries group, filter and aggregate by (bitrate_kbps,
-- browser, os, country, cdn) besides those view facts are built from, so
-- that a custom query over a recent range reads that range's rows
-- (ARCHITECTURE.md, "Read path") instead of most of `events`, which is
-- sorted by video: at 100 M events a one-day query read 96 M rows there.
--
-- A new table rather than columns added to events_by_time: the rows stored
-- before such a change would hold defaults in the new columns, and a reader
-- could not tell them from real empty values. Here the view starts first and
-- the backfill copies the recent days after it, so every event of those days
-- is in the copy with every column; an event both copied and backfilled is
-- stored twice with the same content, which readers collapse by event_id as
-- they collapse any copy. The old table and its view are dropped at the end
-- (readers of this release use the new one).
CREATE TABLE IF NOT EXISTS events_by_time_v2
(
    timestamp DateTime,
    timestamp_ms UInt64,
    event_id UUID,
    event_type String,
    user_id Nullable(String),
    session_id String,
    video_id String,
    received_at_ms UInt64,
    inserted_at DateTime,
    position_seconds Nullable(Float64),
    duration_seconds Nullable(Float64),
    quality String,
    buffer_duration_ms Nullable(UInt32),
    startup_time_ms Nullable(UInt32),
    fatal UInt8,
    seek_from_seconds Nullable(Float64),
    seek_to_seconds Nullable(Float64),
    to_quality String,
    device_type String,
    bitrate_kbps Nullable(UInt32),
    browser String,
    os String,
    country String,
    cdn String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (timestamp, video_id, session_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS events_by_time_v2_mv TO events_by_time_v2
AS SELECT timestamp, timestamp_ms, event_id, event_type, user_id, session_id, video_id, received_at_ms,
    inserted_at, position_seconds, duration_seconds, quality, buffer_duration_ms, startup_time_ms, fatal,
    seek_from_seconds, seek_to_seconds, to_quality, device_type, bitrate_kbps, browser, os, country, cdn
FROM events;

-- The recent days already stored (the view picks up new inserts only).
INSERT INTO events_by_time_v2
SELECT timestamp, timestamp_ms, event_id, event_type, user_id, session_id, video_id, received_at_ms,
    inserted_at, position_seconds, duration_seconds, quality, buffer_duration_ms, startup_time_ms, fatal,
    seek_from_seconds, seek_to_seconds, to_quality, device_type, bitrate_kbps, browser, os, country, cdn
FROM events
WHERE timestamp >= toDateTime(today() - 4);

DROP TABLE IF EXISTS events_by_time_mv;
DROP TABLE IF EXISTS events_by_time;
