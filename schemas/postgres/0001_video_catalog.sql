-- Video catalog: metadata the query API joins with ClickHouse metrics.
-- duration_seconds, when known, is the denominator of avg_watch_percentage.
CREATE TABLE IF NOT EXISTS videos (
    video_id         TEXT PRIMARY KEY,
    title            TEXT NOT NULL,
    duration_seconds DOUBLE PRECISION CHECK (duration_seconds > 0),
    category         TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
