//! From an HTTP request body to raw events: media type, content encoding,
//! size limits (before and after decompression), UTF-8 and JSON / NDJSON.
//!
//! Nothing here knows the event schema; validation is `events-model`'s job
//! ([`RawEvent::validate`]).

use std::{fmt, io::Read as _};

use actix_web::{
    error::PayloadError,
    mime::{self, Mime},
    web::{Bytes, BytesMut},
};
use events_model::{Arrival, ErrorCode, Event, ValidationErrors};
use flate2::read::MultiGzDecoder;
use futures::{Stream, StreamExt as _};
use serde::de::{self, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde_json::{Value, error::Category};

use crate::error::IngestError;

/// How the events of a body are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json`: one object (single endpoint) or an array (batch).
    Json,
    /// `application/x-ndjson`: one event object per line (batch only).
    Ndjson,
}

/// Media types accepted for NDJSON bodies.
const NDJSON_TYPES: [&str; 2] = ["application/x-ndjson", "application/ndjson"];

/// Reads the `Content-Type` header. JSON is always accepted (with an optional
/// `charset=utf-8`), also sent as `text/plain`: `navigator.sendBeacon` and
/// other CORS-safelisted requests cannot send `application/json` without a
/// preflight, so a beacon's JSON body arrives as text; NDJSON only where
/// `allow_ndjson`.
pub fn body_format(content_type: Option<&str>, allow_ndjson: bool) -> Result<BodyFormat, IngestError> {
    let expected = if allow_ndjson {
        "send application/json (an array of events) or application/x-ndjson (one event per line)"
    } else {
        "send application/json (one event object); batches of JSON or NDJSON go to /api/events/batch"
    };
    let Some(raw) = content_type.map(str::trim).filter(|v| !v.is_empty()) else {
        return Err(IngestError::UnsupportedMediaType(format!("content-type header is missing; {expected}")));
    };
    let unsupported = || IngestError::UnsupportedMediaType(format!("content-type {raw:?} is not accepted; {expected}"));
    let media: Mime = raw.parse().map_err(|_| unsupported())?;
    if let Some(charset) = media.get_param(mime::CHARSET) {
        let charset = charset.as_str();
        if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
            return Err(IngestError::UnsupportedMediaType(format!(
                "charset {charset:?} is not accepted; bodies must be utf-8"
            )));
        }
    }
    let essence = media.essence_str();
    if essence.eq_ignore_ascii_case("application/json") || essence.eq_ignore_ascii_case("text/plain") {
        Ok(BodyFormat::Json)
    } else if allow_ndjson && NDJSON_TYPES.iter().any(|t| essence.eq_ignore_ascii_case(t)) {
        Ok(BodyFormat::Ndjson)
    } else {
        Err(unsupported())
    }
}

/// The `Content-Encoding` of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

/// Reads the `Content-Encoding` header: none, `identity` or `gzip`.
pub fn content_encoding(value: Option<&str>) -> Result<Encoding, IngestError> {
    match value.map(str::trim) {
        None | Some("") => Ok(Encoding::Identity),
        Some(v) if v.eq_ignore_ascii_case("identity") => Ok(Encoding::Identity),
        Some(v) if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") => Ok(Encoding::Gzip),
        Some(v) => Err(IngestError::UnsupportedEncoding(v.to_string())),
    }
}

/// The body buffer's first allocation; it grows as bytes arrive.
const INITIAL_BODY_CAPACITY: usize = 16 * 1024;

/// Collects a body of at most `limit` bytes, refusing early when the
/// declared `Content-Length` is already larger.
///
/// A body that stops arriving fails its read at the server's body deadline
/// (`service_kit::deadline`, `http.request_body_timeout`): 408.
pub async fn read_limited<S>(
    mut stream: S,
    declared_len: Option<u64>,
    limit: usize,
    body_timeout: std::time::Duration,
) -> Result<Bytes, IngestError>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let too_large = IngestError::PayloadTooLarge { limit, decompressed: false };
    let declared = declared_len.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large);
    }
    // Room for what arrives, not for what is announced: a client announcing
    // a megabyte and sending a byte a second would otherwise hold a megabyte
    // per connection (2,000 such connections: 2 GiB).
    let mut body = BytesMut::with_capacity(declared.map_or(INITIAL_BODY_CAPACITY, |n| n.min(INITIAL_BODY_CAPACITY)));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if service_kit::deadline::is_timeout(&e) {
                IngestError::BodyTimeout(body_timeout)
            } else {
                IngestError::InvalidBody(e.to_string())
            }
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Undoes the content encoding; a gzip body may expand to at most `limit` bytes.
pub fn decode(body: Bytes, encoding: Encoding, limit: usize) -> Result<Bytes, IngestError> {
    match encoding {
        Encoding::Identity => Ok(body),
        Encoding::Gzip => gunzip(&body, limit).map(Bytes::from),
    }
}

/// Decompresses gzip (one or more members), stopping one byte past `limit`,
/// so a small "zip bomb" costs at most `limit` bytes of memory.
fn gunzip(compressed: &[u8], limit: usize) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    MultiGzDecoder::new(compressed)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::InvalidGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(IngestError::PayloadTooLarge { limit, decompressed: true });
    }
    Ok(out)
}

/// A body as UTF-8 text.
fn utf8(body: &[u8]) -> Result<&str, IngestError> {
    std::str::from_utf8(body).map_err(|e| IngestError::InvalidUtf8 { valid_up_to: e.valid_up_to() })
}

/// The body of `POST /api/events`: one JSON value (validation says whether it
/// is an acceptable event).
pub fn single(body: &[u8]) -> Result<Value, IngestError> {
    serde_json::from_str(utf8(body)?).map_err(|e| IngestError::InvalidJson(e.to_string()))
}

/// One event of a batch before validation.
#[derive(Debug, PartialEq)]
pub enum RawEvent<'a> {
    /// An element of a JSON array.
    Value(Value),
    /// A line of an NDJSON body, parsed during validation so that a broken
    /// line is reported on its own index.
    Line(&'a [u8]),
}

impl RawEvent<'_> {
    /// Validates with `events-model`, stamping `received_at` and deriving
    /// a missing `event_id` from the event and the key.
    pub fn validate(self, arrival: Arrival<'_>) -> Result<Event, ValidationErrors> {
        match self {
            RawEvent::Value(value) => Event::from_client_value(value, arrival),
            RawEvent::Line(line) => Event::parse_client_json(line, arrival),
        }
    }
}

/// Refuses an event whose `timestamp` lies more than `lateness` before its
/// arrival (`too_late`): its windows are no longer recomputed, so it would
/// count nowhere, and refusing it keeps any batch inside a few monthly
/// partitions.
pub fn within_lateness(event: Event, lateness: std::time::Duration) -> Result<Event, ValidationErrors> {
    let horizon = chrono::TimeDelta::from_std(lateness).ok().and_then(|l| event.received_at.checked_sub_signed(l));
    match horizon {
        Some(horizon) if event.timestamp < horizon => Err(ValidationErrors::single(
            "timestamp",
            ErrorCode::TooLate,
            format!(
                "{} is older than the lateness horizon of {} (before {}): windows that old are no longer \
                 recomputed, so the event would count nowhere",
                event.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                humantime_serde::re::humantime::format_duration(lateness),
                horizon.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
        )),
        _ => Ok(event),
    }
}

/// The events of a `POST /api/events/batch` body, at most `max_events`.
pub fn batch(body: &[u8], format: BodyFormat, max_events: usize) -> Result<Vec<RawEvent<'_>>, IngestError> {
    let events = match format {
        BodyFormat::Json => json_array(body, max_events)?,
        BodyFormat::Ndjson => ndjson_lines(body, max_events)?,
    };
    if events.is_empty() {
        return Err(IngestError::EmptyBatch);
    }
    Ok(events)
}

fn json_array(body: &[u8], max_events: usize) -> Result<Vec<RawEvent<'_>>, IngestError> {
    let mut deserializer = serde_json::Deserializer::from_str(utf8(body)?);
    let parsed = BoundedArray { max: max_events }.deserialize(&mut deserializer).and_then(|parsed| {
        deserializer.end()?;
        Ok(parsed)
    });
    match parsed {
        Ok(BoundedItems::Within(values)) => Ok(values.into_iter().map(RawEvent::Value).collect()),
        Ok(BoundedItems::TooMany(count)) => Err(IngestError::TooManyEvents { count, limit: max_events }),
        Err(e) if e.classify() == Category::Data => Err(IngestError::InvalidBatch(format!(
            "a batch must be a json array of event objects ({e}); send application/x-ndjson for one event per line"
        ))),
        Err(e) => Err(IngestError::InvalidJson(e.to_string())),
    }
}

/// Non-blank lines (LF or CRLF endings); a line's index counts only those.
fn ndjson_lines(body: &[u8], max_events: usize) -> Result<Vec<RawEvent<'_>>, IngestError> {
    let lines: Vec<&[u8]> = body
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .collect();
    if lines.len() > max_events {
        return Err(IngestError::TooManyEvents { count: lines.len(), limit: max_events });
    }
    Ok(lines.into_iter().map(RawEvent::Line).collect())
}

/// Array elements, or how many there were when more than the limit.
enum BoundedItems {
    Within(Vec<Value>),
    TooMany(usize),
}

/// Deserialises an array keeping at most `max` elements; the rest are only
/// counted (syntax-checked without being built), so an oversized batch costs
/// no more memory than an allowed one.
struct BoundedArray {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for BoundedArray {
    type Value = BoundedItems;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BoundedArray {
    type Value = BoundedItems;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max));
        while values.len() < self.max {
            match seq.next_element::<Value>()? {
                Some(value) => values.push(value),
                None => return Ok(BoundedItems::Within(values)),
            }
        }
        let mut count = values.len();
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok(if count > self.max { BoundedItems::TooMany(count) } else { BoundedItems::Within(values) })
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Write as _, time::Duration};

    use chrono::{DateTime, Utc};
    use events_model::ErrorCode;
    use flate2::{Compression, write::GzEncoder};
    use serde_json::json;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn code<T: fmt::Debug>(result: Result<T, IngestError>) -> &'static str {
        result.unwrap_err().code()
    }

    #[test]
    fn json_is_accepted_with_or_without_a_utf8_charset() {
        for value in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "text/plain",
            "text/plain;charset=UTF-8",
        ] {
            assert_eq!(body_format(Some(value), false).unwrap(), BodyFormat::Json, "{value}");
            assert_eq!(body_format(Some(value), true).unwrap(), BodyFormat::Json, "{value}");
        }
    }

    #[test]
    fn ndjson_is_accepted_only_where_allowed() {
        assert_eq!(body_format(Some("application/x-ndjson"), true).unwrap(), BodyFormat::Ndjson);
        assert_eq!(body_format(Some("application/ndjson; charset=utf-8"), true).unwrap(), BodyFormat::Ndjson);
        let error = body_format(Some("application/x-ndjson"), false).unwrap_err();
        assert_eq!(error.code(), "unsupported_media_type");
        assert!(error.to_string().contains("/api/events/batch"), "{error}");
    }

    #[test]
    fn other_media_types_and_charsets_are_unsupported() {
        for value in [None, Some(""), Some("text/html"), Some("application/xml"), Some("not a type"), Some("json")] {
            assert_eq!(code(body_format(value, true)), "unsupported_media_type", "{value:?}");
        }
        let error = body_format(Some("application/json; charset=latin1"), true).unwrap_err();
        assert!(error.to_string().contains("latin1"), "{error}");
    }

    #[test]
    fn content_encodings() {
        assert_eq!(content_encoding(None).unwrap(), Encoding::Identity);
        assert_eq!(content_encoding(Some("identity")).unwrap(), Encoding::Identity);
        assert_eq!(content_encoding(Some("GZIP")).unwrap(), Encoding::Gzip);
        assert_eq!(content_encoding(Some("x-gzip")).unwrap(), Encoding::Gzip);
        for value in ["br", "deflate", "gzip, br"] {
            assert_eq!(code(content_encoding(Some(value))), "unsupported_encoding", "{value}");
        }
    }

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, PayloadError>> + Unpin {
        futures::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>())
    }

    #[test]
    fn an_event_older_than_the_lateness_is_too_late() {
        let received: DateTime<Utc> = "2026-12-06T12:00:00Z".parse().unwrap();
        let at = |timestamp: &str| {
            let value = serde_json::json!({
                "event_type": "video_start", "session_id": "s", "video_id": "v", "timestamp": timestamp,
            });
            within_lateness(Event::from_value(value, received).unwrap(), Duration::from_secs(48 * 3600))
        };
        assert!(at("2026-12-04T12:00:00Z").is_ok(), "exactly 48 h old");
        assert!(at("2026-12-06T11:59:59Z").is_ok());
        let errors = at("2026-12-04T11:59:59.999Z").unwrap_err();
        assert!(errors.has("timestamp", ErrorCode::TooLate), "{errors}");
        let message = &errors.as_slice()[0].message;
        assert!(message.contains("2026-12-04T11:59:59.999Z") && message.contains("2days"), "{message}");
        assert!(at("2001-01-01T00:00:00Z").unwrap_err().has("timestamp", ErrorCode::TooLate));
    }

    #[test]
    fn reading_stops_at_the_limit() {
        let read = |parts: &[&'static [u8]], declared, limit| {
            futures::executor::block_on(read_limited(chunks(parts), declared, limit, Duration::from_secs(10)))
        };
        assert_eq!(read(&[b"abc", b"def"], None, 6).unwrap(), Bytes::from_static(b"abcdef"));
        assert_eq!(code(read(&[b"abc", b"defg"], None, 6)), "payload_too_large");
        // The declared length alone is enough to refuse.
        assert_eq!(code(read(&[], Some(7), 6)), "payload_too_large");
        let failing = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"a")),
            Err(PayloadError::Io(std::io::Error::other("connection reset"))),
        ]);
        let error = futures::executor::block_on(read_limited(failing, None, 10, Duration::from_secs(10))).unwrap_err();
        assert_eq!(error.code(), "invalid_body");
        assert!(error.to_string().contains("connection reset"));
        let timed_out = futures::stream::iter(vec![Err(PayloadError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "request body not received within the body timeout",
        )))]);
        let error =
            futures::executor::block_on(read_limited(timed_out, None, 10, Duration::from_secs(10))).unwrap_err();
        assert_eq!(error.code(), "request_timeout");
    }

    #[test]
    fn gzip_bodies_are_decoded_within_the_limit() {
        let text = br#"[{"event_type":"video_start"}]"#;
        let decoded = decode(Bytes::from(gzip(text)), Encoding::Gzip, 1024).unwrap();
        assert_eq!(&decoded[..], text);
        // Concatenated members are one stream.
        let mut two = gzip(b"ab");
        two.extend(gzip(b"cd"));
        assert_eq!(&decode(Bytes::from(two), Encoding::Gzip, 1024).unwrap()[..], b"abcd");
        // Exactly at the limit is fine.
        assert_eq!(decode(Bytes::from(gzip(&[b' '; 100])), Encoding::Gzip, 100).unwrap().len(), 100);
    }

    #[test]
    fn a_gzip_bomb_is_refused_after_the_limit() {
        let bomb = gzip(&vec![0_u8; 20 * 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024, "compresses well: {}", bomb.len());
        let error = decode(Bytes::from(bomb), Encoding::Gzip, 1024 * 1024).unwrap_err();
        assert_eq!(error.code(), "payload_too_large");
        assert!(error.to_string().contains("decompressed"), "{error}");
    }

    #[test]
    fn corrupt_gzip_is_a_client_error() {
        assert_eq!(code(decode(Bytes::from_static(b"not gzip at all"), Encoding::Gzip, 1024)), "invalid_gzip");
        let mut truncated = gzip(b"{\"a\":1}");
        truncated.truncate(truncated.len() - 4);
        assert_eq!(code(decode(Bytes::from(truncated), Encoding::Gzip, 1024)), "invalid_gzip");
    }

    #[test]
    fn single_body_must_be_utf8_json() {
        assert_eq!(single(br#"{"a": "\u00e9"}"#).unwrap(), json!({"a": "é"}));
        assert_eq!(code(single(b"{\"a\": \"\xff\"}")), "invalid_utf8");
        assert_eq!(code(single(b"{\"a\": ")), "invalid_json");
        assert_eq!(code(single(b"")), "invalid_json");
        let error = single(b"{\"a\":1} x").unwrap_err();
        assert!(error.to_string().contains("trailing"), "{error}");
    }

    #[test]
    fn json_batches_keep_every_element_in_order() {
        let events = batch(br#"[{"a":1}, 2, "x", null]"#, BodyFormat::Json, 4).unwrap();
        assert_eq!(
            events,
            vec![
                RawEvent::Value(json!({"a": 1})),
                RawEvent::Value(json!(2)),
                RawEvent::Value(json!("x")),
                RawEvent::Value(Value::Null),
            ]
        );
    }

    #[test]
    fn json_batches_over_the_limit_are_counted_not_kept() {
        let error = batch(b"[1,2,3,4,5]", BodyFormat::Json, 3).unwrap_err();
        assert!(matches!(error, IngestError::TooManyEvents { count: 5, limit: 3 }), "{error:?}");
        // A malformed tail after the limit is still a syntax error.
        assert_eq!(code(batch(b"[1,2,3,4,", BodyFormat::Json, 3)), "invalid_json");
    }

    #[test]
    fn json_batch_errors() {
        assert_eq!(code(batch(b"[]", BodyFormat::Json, 10)), "empty_batch");
        assert_eq!(code(batch(br#"{"event_type":"video_start"}"#, BodyFormat::Json, 10)), "invalid_batch");
        assert_eq!(code(batch(b"[{\"a\":1},", BodyFormat::Json, 10)), "invalid_json");
        assert_eq!(code(batch(b"[1] [2]", BodyFormat::Json, 10)), "invalid_json");
        assert_eq!(code(batch(b"[\"\xc3\x28\"]", BodyFormat::Json, 10)), "invalid_utf8");
        let deep = format!("[{}{}]", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(code(batch(deep.as_bytes(), BodyFormat::Json, 10)), "invalid_json");
    }

    #[test]
    fn ndjson_lines_skip_blank_lines_and_keep_broken_ones() {
        let body = b"{\"a\":1}\r\n\n   \n{broken\n\xff\n{\"b\":2}";
        let events = batch(body, BodyFormat::Ndjson, 10).unwrap();
        assert_eq!(
            events,
            vec![
                RawEvent::Line(b"{\"a\":1}"),
                RawEvent::Line(b"{broken"),
                RawEvent::Line(b"\xff"),
                RawEvent::Line(b"{\"b\":2}"),
            ]
        );
        assert_eq!(code(batch(b"\n \r\n", BodyFormat::Ndjson, 10)), "empty_batch");
        let error = batch(b"1\n2\n3\n", BodyFormat::Ndjson, 2).unwrap_err();
        assert!(matches!(error, IngestError::TooManyEvents { count: 3, limit: 2 }), "{error:?}");
    }

    #[test]
    fn broken_ndjson_lines_fail_validation_on_their_own() {
        let now = Arrival { received_at: Utc::now(), key_id: Some("ak_00000000") };
        let good = RawEvent::Line(br#"{"event_type":"video_start","session_id":"s","video_id":"v"}"#);
        let from_line = good.validate(now).unwrap();
        // An NDJSON line and an array element: the same event, the same derived id.
        let element = json!({"video_id": "v", "session_id": "s", "event_type": "video_start"});
        assert_eq!(RawEvent::Value(element).validate(now).unwrap().event_id, from_line.event_id);
        assert!(RawEvent::Line(b"{broken").validate(now).unwrap_err().has("$", ErrorCode::InvalidJson));
        assert!(RawEvent::Line(b"\xff").validate(now).unwrap_err().has("$", ErrorCode::InvalidUtf8));
        assert!(RawEvent::Value(json!(2)).validate(now).unwrap_err().has("$", ErrorCode::NotAnObject));
    }
}
