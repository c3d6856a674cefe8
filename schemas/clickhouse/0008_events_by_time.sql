-- events_by_time: the columns of `events` that view facts are built from,
-- clustered by client time, for the lateness horizon and the day before it
-- (retention.events_by_time_days, 4 by default). `events` is sorted by video,
-- so a time range of it (every video's views of an open hour) prunes little;
-- a rebuild of every video's open windows, and aggregator-cron's facts pass,
-- read a time range of this copy instead (issue 11; ARCHITECTURE.md, "Read
-- path"). Copies of an event are copied too: readers deduplicate by event_id
-- exactly as over `events`.
CREATE TABLE IF NOT EXISTS events_by_time
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
    device_type String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (timestamp, video_id, session_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS events_by_time_mv TO events_by_time
AS SELECT timestamp, timestamp_ms, event_id, event_type, user_id, session_id, video_id, received_at_ms,
    inserted_at, position_seconds, duration_seconds, quality, buffer_duration_ms, startup_time_ms, fatal,
    seek_from_seconds, seek_to_seconds, to_quality, device_type
FROM events;

-- The recent days already stored (the view picks up new inserts only).
INSERT INTO events_by_time
SELECT timestamp, timestamp_ms, event_id, event_type, user_id, session_id, video_id, received_at_ms,
    inserted_at, position_seconds, duration_seconds, quality, buffer_duration_ms, startup_time_ms, fatal,
    seek_from_seconds, seek_to_seconds, to_quality, device_type
FROM events
WHERE timestamp >= toDateTime(today() - 4);
