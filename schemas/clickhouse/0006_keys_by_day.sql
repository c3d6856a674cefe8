-- Per view key (session_id, video_id) and UTC day: what the freshness check
-- of the query API needs, without reading `events`.
--
-- The check (metrics_sql::views::last_inserted_by_window) asks, for each
-- key with events in the lateness horizon, its `video_start` times and the
-- last insert time of its rows and of its `video_start`s. Reading that from
-- `events` grouped every row of the horizon by key: for top videos the whole
-- platform's last 49 hours (3.2 M rows on the bench fixture), for a user the
-- granules of every video the user watched. Here a key has one row per day
-- once merged, sorted by key, so a video's or a user's keys are key ranges,
-- and the platform's are its few daily partitions.
--
-- Filled at insert time by the materialized view below (each insert block
-- adds a partial state per key and day; AggregatingMergeTree merges them in
-- the background and readers merge whatever is left with -Merge). Copies of
-- a redelivered event count here like any insert, as in the check itself.
-- Daily partitions, kept as long as `events` by aggregator-cron's retention.
CREATE TABLE IF NOT EXISTS keys_by_day
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
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS keys_by_day_mv TO keys_by_day
AS SELECT toDate(timestamp) AS date, video_id, session_id,
    groupUniqArrayArrayState(if(event_type = 'video_start', [timestamp_ms], emptyArrayUInt64())) AS start_times,
    maxState(inserted_at) AS inserted_max,
    maxState(if(event_type = 'video_start', inserted_at, toDateTime(0))) AS start_inserted_max
FROM events
GROUP BY date, video_id, session_id;

-- The rows stored before this migration (a row inserted meanwhile may be
-- counted twice, which changes no maximum and no set of start times).
INSERT INTO keys_by_day (date, video_id, session_id, start_times, inserted_max, start_inserted_max)
SELECT toDate(timestamp) AS date, video_id, session_id,
    groupUniqArrayArrayState(if(event_type = 'video_start', [timestamp_ms], emptyArrayUInt64())),
    maxState(inserted_at),
    maxState(if(event_type = 'video_start', inserted_at, toDateTime(0)))
FROM events
GROUP BY date, video_id, session_id;
