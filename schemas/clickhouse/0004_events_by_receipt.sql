-- The columns of the realtime metrics, ordered by server receive time.
--
-- The realtime metrics (docs/metrics.md) cover the events received in the
-- last 60 s. `events` is sorted by video and day, so a receive-time range
-- there reads every part of every partition: the cost of one realtime
-- answer would grow with the whole history. This table holds the same rows,
-- copied by the materialized view below at insert time (the same insert,
-- same deduplication by event_id at read time), sorted by `received_at_ms`,
-- so a 60 s range reads a few granules. Daily partitions let aggregator-cron
-- drop it after a short retention (`retention.events_by_receipt_days`, 2).
--
-- Rows stored before this migration are not copied: for the first minute
-- after an upgrade the realtime figures miss events received before it.
CREATE TABLE IF NOT EXISTS events_by_receipt
(
    received_at_ms UInt64,                   -- server receive time in epoch milliseconds
    event_id UUID,                           -- the deduplication key
    event_type String,
    session_id String,
    video_id String,
    timestamp_ms UInt64,                     -- client time, orders a view's events
    fatal UInt8,
    bitrate_kbps Nullable(UInt32)
)
ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(toDateTime(intDiv(received_at_ms, 1000)))
ORDER BY received_at_ms;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_by_receipt_mv TO events_by_receipt
AS SELECT received_at_ms, event_id, event_type, session_id, video_id, timestamp_ms, fatal, bitrate_kbps
FROM events;
