-- keys_by_day_v2: `keys_by_day` (0006) in granules of 128 rows instead of
-- 1,024, kept for the recent days only.
--
-- A video's or a user's freshness check reads its view keys' rows here by
-- key, and each key costs a whole granule in every part it has rows in:
-- while the processor inserts every half second a daily partition holds
-- tens of parts, so with 1,024-row granules the bench's median user read
-- 141,000 rows for about ten keys (ARCHITECTURE.md, "What still grows").
-- Readers only ask for the days from the lateness horizon's day on (and the
-- facts pass for the day before it), so the table is kept as long as
-- `events_by_time_v2` (aggregator-cron's `retention.events_by_time_days`),
-- which bounds the larger primary index the smaller granules cost.
--
-- A new table: the granularity of an existing one cannot change. The view
-- starts first and the recent days' states are copied after it; a row both
-- copied and counted by the view is merged twice into the same maximum and
-- set of start times, which changes neither. The old table and its view are
-- dropped at the end (readers of this release use the new one).
CREATE TABLE IF NOT EXISTS keys_by_day_v2
(
    date Date,                                                        -- UTC day of the events' client time
    video_id String,
    session_id String,
    start_times AggregateFunction(groupUniqArrayArray, Array(UInt64)), -- timestamp_ms of its video_starts
    inserted_max AggregateFunction(max, DateTime),                     -- last inserted_at of its rows
    start_inserted_max AggregateFunction(max, DateTime)                -- last inserted_at of its video_starts
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(date)
ORDER BY (video_id, session_id, date)
SETTINGS index_granularity = 128;

CREATE MATERIALIZED VIEW IF NOT EXISTS keys_by_day_v2_mv TO keys_by_day_v2
AS SELECT toDate(timestamp) AS date, video_id, session_id,
    groupUniqArrayArrayState(if(event_type = 'video_start', [timestamp_ms], emptyArrayUInt64())) AS start_times,
    maxState(inserted_at) AS inserted_max,
    maxState(if(event_type = 'video_start', inserted_at, toDateTime(0))) AS start_inserted_max
FROM events
GROUP BY date, video_id, session_id;

-- The recent days already stored (the view picks up new inserts only).
INSERT INTO keys_by_day_v2 (date, video_id, session_id, start_times, inserted_max, start_inserted_max)
SELECT date, video_id, session_id, start_times, inserted_max, start_inserted_max
FROM keys_by_day
WHERE date >= today() - 4;

DROP TABLE IF EXISTS keys_by_day_mv;
DROP TABLE IF EXISTS keys_by_day;
