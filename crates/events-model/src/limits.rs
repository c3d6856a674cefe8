//! Every bound the validator enforces, in one place.
//!
//! Services may use these to size buffers, document the API or pre-check
//! input, but the validator in this crate is the authority.

use chrono::TimeDelta;

/// Largest accepted client event, in bytes of JSON.
///
/// [`Event::parse_json`](crate::Event::parse_json) checks the raw body;
/// [`Event::from_value`](crate::Event::from_value) checks the compact
/// serialisation of the value.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;

/// Largest accepted wire (Kafka) message, in bytes.
///
/// Larger than [`MAX_EVENT_BYTES`] because normalisation adds the server's
/// fields (`event_id`, `timestamp`, `received_at`) and may lengthen numbers,
/// so a client event just under the client limit still fits.
pub const MAX_WIRE_EVENT_BYTES: usize = 2 * MAX_EVENT_BYTES;

/// Largest compact JSON serialisation of the unknown (extra) properties.
pub const MAX_EXTRA_PROPERTIES_BYTES: usize = 8 * 1024;

/// Largest compact JSON serialisation of `metadata`.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

/// Longest `user_id`, `session_id` or `video_id`, in characters.
pub const MAX_ID_CHARS: usize = 256;

/// Longest string dimension property (`quality`, `device_type`, `browser`,
/// `os`, `country`, `player`, `cdn`, `from_quality`, `to_quality`,
/// `error_code`), in characters.
pub const MAX_DIMENSION_CHARS: usize = 128;

/// Longest `error_message` property, in characters.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 2048;

/// Largest value of a property measured in seconds (positions, durations):
/// about 115 days.
pub const MAX_SECONDS: f64 = 10_000_000.0;

/// Largest `bitrate_kbps` (1 Tbit/s is far beyond any video stream).
pub const MAX_BITRATE_KBPS: u32 = 1_000_000;

/// Largest property measured in milliseconds (`buffer_duration_ms`,
/// `startup_time_ms`): one day.
pub const MAX_DURATION_MS: u32 = 86_400_000;

/// How far a client timestamp may lie after the server's receive time.
pub const MAX_FUTURE_SKEW: TimeDelta = TimeDelta::hours(24);

/// Earliest accepted timestamp: 2000-01-01T00:00:00Z, in epoch milliseconds.
///
/// Anything earlier is almost always epoch seconds sent where milliseconds
/// were expected.
pub const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;

/// Latest accepted `received_at` on the wire: 2100-01-01T00:00:00Z, in epoch
/// milliseconds. Keeps every stored time inside ClickHouse's `DateTime`
/// (unsigned 32-bit seconds) range.
pub const MAX_TIMESTAMP_MS: i64 = 4_102_444_800_000;

/// At most this many problems are reported for one event; the rest are
/// dropped so that a hostile body cannot produce a huge error response.
pub const MAX_REPORTED_ERRORS: usize = 64;

/// How long after a window ends late events may still change it: the
/// default of aggregator-cron's `aggregation.lateness`, query-api's
/// `freshness.lateness` and the ingest-gateway's `ingest.lateness`, which
/// refuses older timestamps (`too_late`) so that no accepted event is ignored
/// by the aggregated tables. A deployment that changes one changes all three.
pub const DEFAULT_LATENESS: std::time::Duration = std::time::Duration::from_secs(48 * 3600);
