-- Raw playback events, one row per accepted event (the seed's `events` table
-- with the known properties of brief §4 promoted to typed columns).
--
-- Unqualified on purpose: the migration runner selects the database.
-- Monthly partitions let retention drop whole months cheaply.
CREATE TABLE IF NOT EXISTS events
(
    event_id UUID,                           -- client-supplied or server-assigned id; the deduplication key
    event_type String,                       -- one of the nine event types (video_start, seek, ...)
    user_id Nullable(String),                -- viewer id; NULL for anonymous viewers
    session_id String,                       -- player session; a view is (session_id, video_id)
    video_id String,                         -- the video played
    timestamp DateTime,                      -- client time of the event, UTC, second precision
    timestamp_ms UInt64,                     -- the same client time in epoch milliseconds
    received_at_ms UInt64,                   -- server receive time in epoch milliseconds
    position_seconds Nullable(Float64),      -- playhead position when the event happened
    duration_seconds Nullable(Float64),      -- content duration as reported by the player
    quality String,                          -- rendition label such as 720p; empty when unknown
    bitrate_kbps Nullable(UInt32),           -- current rendition bitrate
    buffer_duration_ms Nullable(UInt32),     -- stall length of a video_buffer event
    startup_time_ms Nullable(UInt32),        -- player-measured time to first frame
    error_code String,                       -- player error code of a video_error; empty otherwise
    error_message String,                    -- human-readable error text; empty otherwise
    fatal UInt8,                             -- 1 when the error ended playback (default for video_error)
    seek_from_seconds Nullable(Float64),     -- playhead before a seek
    seek_to_seconds Nullable(Float64),       -- playhead after a seek
    from_quality String,                     -- rendition before a quality_change
    to_quality String,                       -- rendition after a quality_change
    device_type String,                      -- desktop, mobile, tv, ...
    browser String,                          -- user agent family
    os String,                               -- operating system
    country String,                          -- ISO 3166-1 alpha-2 country code
    player String,                           -- player name and version
    cdn String,                              -- CDN that served the segment
    properties String,                       -- unknown properties as a JSON object string
    metadata Nullable(String)                -- the envelope's optional metadata object as JSON
)
-- ReplacingMergeTree: a redelivered or retried event (same event_id, same day)
-- shares the sorting key with its first copy and is merged away in the
-- background. Merges are eventual, so exact queries still deduplicate by
-- event_id; the engine only keeps the table from growing with duplicates.
-- The day rather than the timestamp is in the key so that a client retry
-- without its own timestamp (stamped anew on receipt) still collapses.
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(timestamp)
ORDER BY (video_id, toDate(timestamp), session_id, event_id);
