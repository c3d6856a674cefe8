//! The events every case sends: realistic playback traffic from the load
//! generator's simulator (`loadgen::Simulator`: sessions of starts,
//! heartbeats, stalls, seeks, quality switches, errors and ends over 200
//! videos and 2,000 users), generated ahead of the measurement on a
//! simulated clock, in the two forms the pipeline carries:
//!
//! - the client JSON the gateway receives (batch bodies, single bodies);
//! - the Kafka message the gateway produces for it: the event parsed and
//!   validated by `events-model` exactly as the gateway does
//!   (`Event::parse_json`) and serialised with `Event::to_wire`, keyed by
//!   `Event::kafka_key`.

use anyhow::{Context, Result};
use chrono::Utc;
use events_model::Event;
use loadgen::{GeneratedEvent, SimConfig, Simulator};

/// One Kafka message as the gateway produces it.
#[derive(Debug, Clone)]
pub struct Message {
    pub key: String,
    pub payload: Vec<u8>,
}

impl Message {
    /// The gateway's message for one client event.
    pub fn of_client_json(json: &[u8]) -> Result<Self> {
        let event = Event::parse_json(json, Utc::now())
            .map_err(|errors| anyhow::anyhow!("a generated event is invalid: {errors}"))?;
        Ok(Self { key: event.kafka_key().to_string(), payload: event.to_wire() })
    }
}

/// `count` events of simulated live traffic at `rate` events/s, starting
/// `count / rate` seconds ago (so every timestamp is in the recent past).
/// `salt` makes the ids of one fixture differ from another's.
pub fn generate(seed: u64, salt: u64, rate: f64, count: usize) -> Vec<GeneratedEvent> {
    let span_ms = (count as f64 / rate * 1000.0) as i64 + 60_000;
    let start_ms = loadgen::epoch_ms() - span_ms;
    let config = SimConfig { seed, salt, rate, ..SimConfig::default() };
    let mut sim = Simulator::new(config, start_ms);
    let mut out = Vec::with_capacity(count);
    let mut now_ms = start_ms;
    while out.len() < count {
        now_ms += 100;
        sim.poll(now_ms, count - out.len(), &mut out);
    }
    out
}

/// Batch bodies (JSON arrays of `batch` events) with the messages of their events.
pub struct Batches {
    pub bodies: Vec<String>,
    pub messages: Vec<Vec<Message>>,
}

impl Batches {
    pub fn build(events: &[GeneratedEvent], batch: usize) -> Result<Self> {
        let mut bodies = Vec::new();
        let mut messages = Vec::new();
        for chunk in events.chunks(batch.max(1)) {
            let mut body = Vec::with_capacity(chunk.len() * 512);
            body.push(b'[');
            let mut chunk_messages = Vec::with_capacity(chunk.len());
            for (i, event) in chunk.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                let json = event.to_json();
                chunk_messages.push(Message::of_client_json(&json)?);
                body.extend_from_slice(&json);
            }
            body.push(b']');
            bodies.push(String::from_utf8(body).context("generated JSON is UTF-8")?);
            messages.push(chunk_messages);
        }
        Ok(Self { bodies, messages })
    }

    pub fn events(&self) -> usize {
        self.messages.iter().map(Vec::len).sum()
    }

    /// Mean size of an event in a body and of its Kafka message, in bytes.
    pub fn mean_sizes(&self) -> (f64, f64) {
        let events = self.events().max(1) as f64;
        let body: usize = self.bodies.iter().map(|b| b.len()).sum();
        let wire: usize = self.messages.iter().flatten().map(|m| m.payload.len()).sum();
        (body as f64 / events, wire as f64 / events)
    }
}

/// Single-event bodies with their messages.
pub struct Singles {
    pub bodies: Vec<String>,
    /// The gateway's message for each body (the raw baseline sends the batches' messages).
    #[cfg_attr(not(test), allow(dead_code))]
    pub messages: Vec<Message>,
}

impl Singles {
    pub fn build(events: &[GeneratedEvent]) -> Result<Self> {
        let mut bodies = Vec::with_capacity(events.len());
        let mut messages = Vec::with_capacity(events.len());
        for event in events {
            let json = event.to_json();
            messages.push(Message::of_client_json(&json)?);
            bodies.push(String::from_utf8(json).context("generated JSON is UTF-8")?);
        }
        Ok(Self { bodies, messages })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_traffic_is_valid_unique_and_batched() {
        let events = generate(7, 1, 5000.0, 1_234);
        assert_eq!(events.len(), 1_234);
        let ids: std::collections::HashSet<_> = events.iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), events.len(), "event ids are unique");
        let kinds: std::collections::HashSet<_> = events.iter().map(|e| e.event_type).collect();
        assert!(kinds.len() >= 2, "a mix of event types: {kinds:?}");

        let batches = Batches::build(&events, 500).unwrap();
        assert_eq!(batches.bodies.len(), 3);
        assert_eq!(batches.events(), 1_234);
        assert_eq!(batches.messages[2].len(), 234);
        let parsed: serde_json::Value = serde_json::from_str(&batches.bodies[0]).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 500);
        // The message is what the gateway produces: the wire form, keyed by session.
        let first = &batches.messages[0][0];
        let event = Event::from_wire(&first.payload).unwrap();
        assert_eq!(event.event_id, events[0].event_id);
        assert_eq!(first.key, events[0].session_id());
        let (body, wire) = batches.mean_sizes();
        assert!(body > 100.0 && wire > body, "{body} {wire}");

        let singles = Singles::build(&events[..3]).unwrap();
        assert_eq!(singles.bodies.len(), 3);
        assert_eq!(Event::from_wire(&singles.messages[2].payload).unwrap().event_id, events[2].event_id);
    }
}
