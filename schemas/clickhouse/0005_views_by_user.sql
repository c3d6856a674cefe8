-- Which views (session_id, video_id) each user had, by day.
--
-- `events` is sorted by video, so "the events of user U" would read every
-- part of the range: the cost of one user's metrics would grow with the
-- whole platform's traffic. The query API first reads the user's keys here
-- (a key range of the sorting key), then only those videos' granules of
-- `events`. One row per event with a user_id, copied by the materialized
-- view at insert time; ReplacingMergeTree folds repeats in the background
-- and readers only ask which keys exist, so repeats never count twice.
-- Partitioned like `events`, and dropped with it by retention.
CREATE TABLE IF NOT EXISTS views_by_user
(
    user_id String,
    date Date,                               -- UTC day of the event's client time
    session_id String,
    video_id String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(date)
ORDER BY (user_id, date, session_id, video_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS views_by_user_mv TO views_by_user
AS SELECT assumeNotNull(user_id) AS user_id, toDate(timestamp) AS date, session_id, video_id
FROM events WHERE isNotNull(user_id);

-- The rows stored before this migration (a row inserted meanwhile may be
-- copied twice, which the readers do not see).
INSERT INTO views_by_user (user_id, date, session_id, video_id)
SELECT assumeNotNull(user_id), toDate(timestamp), session_id, video_id FROM events WHERE isNotNull(user_id);
