-- One row per attempt of an aggregator-cron job on one window: what ran, when,
-- how it ended. The scheduler resumes from here: the windows after the last
-- succeeded one are caught up in order.
CREATE TABLE IF NOT EXISTS aggregation_runs (
    id            BIGSERIAL PRIMARY KEY,
    job           TEXT NOT NULL,               -- video_metrics, user_engagement_daily, retention
    window_start  TIMESTAMPTZ NOT NULL,
    window_end    TIMESTAMPTZ NOT NULL,
    trigger       TEXT NOT NULL,               -- schedule, catch_up, late_events, backfill, manual
    status        TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    rows          BIGINT,
    duration_ms   BIGINT,
    error         TEXT,
    version       BIGINT,                      -- the ClickHouse version written
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at   TIMESTAMPTZ
);

CREATE INDEX IF NOT EXISTS aggregation_runs_job_window ON aggregation_runs (job, window_start);
