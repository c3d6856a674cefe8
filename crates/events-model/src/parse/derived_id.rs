//! The `event_id` of a client event sent without one: a name-based UUID of
//! the event as the client sent it and the key that sent it.
//!
//! # Why
//!
//! The pipeline counts each `event_id` once. A random id per attempt would
//! make every retry of an id-less event a new event: a client that resends a
//! body after a 503 (some of whose events Kafka may already hold) would count
//! those twice. A deterministic id makes resending safe: the same body from
//! the same key yields the same ids, so the stored copies collapse.
//!
//! # What is hashed
//!
//! The canonical form of the *validated client fields*, never a value the
//! server fills in:
//!
//! - the identity of the sender: the API key's id, or a fixed "no key"
//!   marker (authentication off);
//! - `event_type`, `user_id` (absent stays absent), `session_id` (as sent, or
//!   the `user:<user_id>` derived from the user, itself a function of the
//!   client's fields), `video_id`;
//! - `timestamp` *as sent* (as UTC milliseconds, so the same instant in RFC
//!   3339 or epoch milliseconds is the same event); an absent timestamp
//!   stays absent, never replaced by the receive time;
//! - every known property, typed and in a fixed order (so `30` and `30.0`
//!   are the same position, and an empty string property is absent, as the
//!   validator already treats them);
//! - the unknown properties and `metadata` as JSON with the keys of every
//!   object in sorted order, whatever order the client sent them in.
//!
//! `received_at` is not part of it: a retry arrives later.
//!
//! The consequence, documented in the ingest contract: two events without
//! `event_id` and equal in all of the above are *one* event (counted once).
//! A player that can send two identical events on purpose (the same pause
//! at the same position twice, without a timestamp) must send a timestamp
//! or its own `event_id`.
//!
//! # Encoding
//!
//! The fields are fed straight into the hash from the parsed event: no
//! intermediate `serde_json::Value` or text is built (this runs once per
//! ingested event). Every item is tagged and strings carry their length, so
//! the encoding is injective: no two different events produce the same
//! byte stream. A domain prefix with a version (`v1`) names the rule; a
//! change of the canonical form must change that version.
//!
//! # UUID version 8 over SHA-256, not version 5
//!
//! RFC 9562 defines v5 as SHA-1 of a namespace and a name, and shows v8
//! carrying the first 122 bits of a SHA-256 of the same input (its
//! appendix B.2) for exactly this use. We take v8 + SHA-256: `sha2` is
//! already in the workspace (service-kit hashes keys with it) and uses the
//! CPU's SHA instructions where present, while `uuid`'s v5 would add a
//! software SHA-1 and SHA-1 to the code base. The version nibble also tells
//! derived ids (8) apart from ids generated at random (4, 7) when reading
//! stored data. Collision resistance is not a security boundary here: a
//! client can send any `event_id` it likes; the hash only has to keep
//! different events apart, and 122 bits of SHA-256 do.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use uuid::{Builder, Uuid};

use crate::{Event, Properties};

/// Names the rule and its version; part of every hash.
const DOMAIN: &[u8] = b"analytics-service/derived-event-id/v1\0";

/// The id of `event`, which its client sent without one.
///
/// `sent_timestamp` is the client's `timestamp` (`None` when it sent none:
/// `event.timestamp` then holds the receive time, which is not hashed);
/// `key_id` the API key that sent it (`None` with authentication off).
/// `event.event_id` and `event.received_at` are ignored.
pub(crate) fn derived_event_id(event: &Event, sent_timestamp: Option<DateTime<Utc>>, key_id: Option<&str>) -> Uuid {
    let mut canonical = Canonical(Sha256::new());
    canonical.bytes(DOMAIN);
    canonical.option(key_id, |c, id| c.string(id));
    canonical.string(event.event_type.as_str());
    canonical.option(event.user_id.as_deref(), |c, id| c.string(id));
    canonical.string(&event.session_id);
    canonical.string(&event.video_id);
    canonical.option(sent_timestamp, |c, time| c.millis(time));
    canonical.properties(&event.properties);
    canonical.option(event.metadata.as_ref(), |c, map| c.object(map));

    let digest = canonical.0.finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // Sets the version (8) and variant bits; the other 122 bits are the hash's.
    Builder::from_custom_bytes(bytes).into_uuid()
}

/// Tags of the canonical encoding.
mod tag {
    pub(super) const ABSENT: u8 = b'-';
    pub(super) const PRESENT: u8 = b'+';
    pub(super) const STRING: u8 = b's';
    pub(super) const FLOAT: u8 = b'f';
    pub(super) const WHOLE: u8 = b'u';
    pub(super) const TRUE: u8 = b't';
    pub(super) const FALSE: u8 = b'F';
    pub(super) const MILLIS: u8 = b'm';
    pub(super) const NULL: u8 = b'n';
    pub(super) const NUMBER: u8 = b'N';
    pub(super) const ARRAY: u8 = b'a';
    pub(super) const OBJECT: u8 = b'o';
}

/// The canonical encoding, written into the hash as it is produced.
struct Canonical(Sha256);

impl Canonical {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn tag(&mut self, tag: u8) {
        self.0.update([tag]);
    }

    fn length(&mut self, len: usize) {
        self.0.update(u64::try_from(len).unwrap_or(u64::MAX).to_le_bytes());
    }

    fn string(&mut self, text: &str) {
        self.tag(tag::STRING);
        self.length(text.len());
        self.0.update(text.as_bytes());
    }

    fn option<T>(&mut self, value: Option<T>, present: impl FnOnce(&mut Self, T)) {
        match value {
            Some(value) => {
                self.tag(tag::PRESENT);
                present(self, value);
            }
            None => self.tag(tag::ABSENT),
        }
    }

    fn millis(&mut self, time: DateTime<Utc>) {
        self.tag(tag::MILLIS);
        self.0.update(time.timestamp_millis().to_le_bytes());
    }

    fn float(&mut self, value: f64) {
        self.tag(tag::FLOAT);
        self.0.update(value.to_bits().to_le_bytes());
    }

    fn whole(&mut self, value: u32) {
        self.tag(tag::WHOLE);
        self.0.update(value.to_le_bytes());
    }

    fn boolean(&mut self, value: bool) {
        self.tag(if value { tag::TRUE } else { tag::FALSE });
    }

    /// The known properties in declaration order, then the unknown ones.
    fn properties(&mut self, properties: &Properties) {
        // Destructured without `..`: a new property fails to compile here
        // until it is part of the canonical form.
        let Properties {
            position_seconds,
            duration_seconds,
            quality,
            bitrate_kbps,
            buffer_duration_ms,
            startup_time_ms,
            error_code,
            error_message,
            fatal,
            seek_from_seconds,
            seek_to_seconds,
            from_quality,
            to_quality,
            device_type,
            browser,
            os,
            country,
            player,
            cdn,
            extra,
        } = properties;
        for value in [position_seconds, duration_seconds] {
            self.option(*value, Self::float);
        }
        self.option(quality.as_deref(), Self::string);
        for value in [bitrate_kbps, buffer_duration_ms, startup_time_ms] {
            self.option(*value, Self::whole);
        }
        for value in [error_code, error_message] {
            self.option(value.as_deref(), Self::string);
        }
        self.option(*fatal, Self::boolean);
        for value in [seek_from_seconds, seek_to_seconds] {
            self.option(*value, Self::float);
        }
        for value in [from_quality, to_quality, device_type, browser, os, country, player, cdn] {
            self.option(value.as_deref(), Self::string);
        }
        self.object(extra);
    }

    /// An object with its keys in sorted order. `serde_json`'s map is
    /// sorted already unless its `preserve_order` feature is on somewhere in
    /// the build; only then are the keys collected and sorted.
    fn object(&mut self, map: &Map<String, Value>) {
        self.tag(tag::OBJECT);
        self.length(map.len());
        if map.keys().is_sorted() {
            for (key, value) in map {
                self.string(key);
                self.value(value);
            }
        } else {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by_key(|(key, _)| *key);
            for (key, value) in entries {
                self.string(key);
                self.value(value);
            }
        }
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.tag(tag::NULL),
            Value::Bool(flag) => self.boolean(*flag),
            Value::Number(number) => {
                // The number's shortest text (integers as sent, floats in
                // serde_json's round-trip notation), ended by NUL, which no
                // number's text contains.
                self.tag(tag::NUMBER);
                let _ = write!(HashText(&mut self.0), "{number}");
                self.0.update([0]);
            }
            Value::String(text) => self.string(text),
            Value::Array(items) => {
                self.tag(tag::ARRAY);
                self.length(items.len());
                for item in items {
                    self.value(item);
                }
            }
            Value::Object(map) => self.object(map),
        }
    }
}

/// Formats text straight into the hash.
struct HashText<'a>(&'a mut Sha256);

impl std::fmt::Write for HashText<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.update(text.as_bytes());
        Ok(())
    }
}
