//! Shared by the hub's integration tests: isolated topics on the local Kafka,
//! the hub run in-process, a real WebSocket client, partials and events
//! produced straight to the topics, and an independent computation of the
//! realtime figures.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use chrono::{TimeZone as _, Utc};
use events_model::{Event, EventType, PartialEvent, PartialView, RealtimePartial, Topics};
use futures::{SinkExt as _, StreamExt as _};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use realtime_hub::{Config, HubConfig};
use serde_json::Value;
use service_kit::{
    HttpConfig, KafkaConfig,
    deps::kafka::{TopicSpec, delete_topics, ensure_topics},
    testing::{InProcess, TestKeys, TestPostgres, kafka_config},
};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};
use uuid::Uuid;

pub const PARTITIONS: i32 = 3;

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Topics of their own on the local Kafka and a producer for them.
pub struct Stack {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    /// The keys' database of the services this stack starts.
    pub postgres: TestPostgres,
    /// One key per scope in `postgres`.
    pub keys: TestKeys,
    producer: BaseProducer,
}

impl Stack {
    pub async fn new() -> Self {
        let kafka = kafka_config();
        let topics = Topics::new(&kafka.topic_prefix);
        let specs = [&topics.raw_events, &topics.realtime_partials].map(|name| TopicSpec {
            name: name.clone(),
            partitions: PARTITIONS,
            retention_ms: None,
        });
        ensure_topics(&kafka, &specs).await.expect("create test topics");
        let producer: BaseProducer = service_kit::deps::kafka::client_config(&kafka)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .create()
            .expect("kafka producer");
        let postgres = TestPostgres::create().await.expect("test postgres database");
        let keys = postgres.keys().await.expect("test keys");
        Self { kafka, topics, postgres, keys, producer }
    }

    /// The hub's configuration on these topics (HTTP settings are the test's).
    pub fn config(&self, hub: HubConfig) -> Config {
        Config {
            http: HttpConfig { workers: 1, shutdown_timeout: Duration::from_secs(2), ..HttpConfig::default() },
            kafka: self.kafka.clone(),
            postgres: self.postgres.config.clone(),
            hub,
            ..Config::default()
        }
    }

    /// Starts a hub in-process and waits until it is ready (window loaded).
    pub async fn start_hub(&self, hub: HubConfig) -> InProcess {
        self.start_hub_on(std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"), hub).await
    }

    /// Starts a hub in-process on `listener` and waits until it is ready.
    pub async fn start_hub_on(&self, listener: std::net::TcpListener, hub: HubConfig) -> InProcess {
        let service = InProcess::spawn_on(listener, self.config(hub), realtime_hub::run);
        service.wait_ready(Duration::from_secs(30)).await.expect("hub ready");
        service
    }

    /// Produces the [`scenario`] of now; what the hub should show for it.
    pub fn produce_scenario(&self) -> Expected {
        let partials = scenario(now_ms());
        self.produce_partials(&partials);
        Expected::of(&partials, now_ms())
    }

    pub fn produce_partials(&self, partials: &[RealtimePartial]) {
        for partial in partials {
            let key = partial.partition.to_string();
            let payload = partial.to_json();
            self.send(&self.topics.realtime_partials, &key, &payload);
        }
        self.producer.flush(Duration::from_secs(10)).expect("flush partials");
    }

    pub fn produce_events(&self, events: &[Event]) {
        for event in events {
            self.send(&self.topics.raw_events, event.kafka_key(), &event.to_wire());
        }
        self.producer.flush(Duration::from_secs(30)).expect("flush events");
    }

    fn send(&self, topic: &str, key: &str, payload: &[u8]) {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    self.producer.poll(Duration::from_millis(50));
                    record = r;
                }
                Err((error, _)) => panic!("produce to {topic}: {error}"),
            }
        }
    }

    pub async fn cleanup(self) {
        let _ = delete_topics(&self.kafka, &[&self.topics.raw_events, &self.topics.realtime_partials]).await;
        self.postgres.drop().await.expect("test postgres database dropped");
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// Reads one metric's value (summed over its label sets that contain `labels`) from Prometheus text.
pub async fn scrape(service: &InProcess, name: &str, labels: &str) -> f64 {
    let text = http().get(service.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let matches = series == name || (series.starts_with(&format!("{name}{{")) && series.contains(labels));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A WebSocket client of the hub.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Opens `/ws` with `token` (a `read` key) in the URL.
    pub async fn connect(service: &InProcess, token: &str) -> Self {
        let url = format!("ws://{}/ws?token={token}", service.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connect");
        Self { ws }
    }

    pub async fn send(&mut self, message: Value) {
        self.ws.send(Message::Text(message.to_string().into())).await.expect("websocket send");
    }

    /// The next JSON text message within `timeout`; `Err` on timeout or close.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow::anyhow!("no message within {timeout:?}"))?;
            match frame {
                Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(text.as_str())?),
                Some(Ok(Message::Close(reason))) => anyhow::bail!("closed by the server: {reason:?}"),
                Some(Ok(_)) => continue,
                Some(Err(error)) => anyhow::bail!("websocket error: {error}"),
                None => anyhow::bail!("connection ended"),
            }
        }
    }

    /// Messages until one satisfies `wanted` (returned), within `timeout`.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut wanted: impl FnMut(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self.next(left).await.map_err(|e| e.context(format!("last message: {last:?}")))?;
            if wanted(&message) {
                return Ok(message);
            }
            last = Some(message);
        }
    }

    /// The next message of `kind`.
    pub async fn next_of(&mut self, kind: &str, timeout: Duration) -> anyhow::Result<Value> {
        self.wait_for(timeout, |m| m["type"] == kind).await
    }
}

/// The realtime figures the definitions give for `partials` over
/// `(to_ms − 60 s, to_ms]`, computed plainly: `(events, errors, viewers,
/// active_streams, bandwidth_kbps, top videos)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub events: u64,
    pub errors: u64,
    pub viewers: u64,
    pub streams: u64,
    pub bandwidth_kbps: u64,
    pub top: Vec<(String, u64)>,
}

impl Expected {
    pub fn of(partials: &[RealtimePartial], to_ms: u64) -> Self {
        let from_ms = to_ms - 60_000;
        // Copies of one id: the earliest received inside the window counts.
        let mut facts: HashMap<Uuid, (PartialEvent, PartialView)> = HashMap::new();
        for partial in partials {
            for event in &partial.events {
                if event.received_at_ms <= from_ms || event.received_at_ms > to_ms {
                    continue;
                }
                let view = partial.views[event.view as usize].clone();
                let keep =
                    facts.get(&event.event_id).is_none_or(|(held, _)| event.received_at_ms < held.received_at_ms);
                if keep {
                    facts.insert(event.event_id, (event.clone(), view));
                }
            }
        }
        let events = facts.len() as u64;
        let errors = facts.values().filter(|(e, _)| e.event_type == EventType::VideoError).count() as u64;
        let mut by_view: BTreeMap<(String, String), Vec<PartialEvent>> = BTreeMap::new();
        for (event, view) in facts.into_values() {
            by_view.entry((view.session_id, view.video_id)).or_default().push(event);
        }
        let key = |e: &PartialEvent| (e.timestamp_ms, e.received_at_ms, e.event_id.hyphenated().to_string());
        let (mut viewers, mut bandwidth_kbps) = (0, 0);
        let mut per_video: BTreeMap<String, u64> = BTreeMap::new();
        for ((_, video), mut events) in by_view {
            events.sort_by_key(key);
            let last = events.last().unwrap();
            let ended =
                last.event_type == EventType::VideoComplete || (last.event_type == EventType::VideoError && last.fatal);
            if ended {
                continue;
            }
            viewers += 1;
            bandwidth_kbps += events.iter().rev().find_map(|e| e.bitrate_kbps).map_or(0, u64::from);
            *per_video.entry(video).or_default() += 1;
        }
        let streams = per_video.len() as u64;
        let mut top: Vec<(String, u64)> = per_video.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(10);
        Self { events, errors, viewers, streams, bandwidth_kbps, top }
    }

    /// Whether a `realtime_metrics` payload shows these figures.
    pub fn matches(&self, payload: &Value) -> bool {
        payload["concurrent_viewers"] == self.viewers
            && payload["active_streams"] == self.streams
            && payload["bandwidth_gbps"].as_f64() == Some(self.bandwidth_kbps as f64 / 1_000_000.0)
            && payload["events_per_second"].as_f64() == Some(self.events as f64 / 60.0)
            && payload["error_rate"].as_f64()
                == Some(if self.events == 0 { 0.0 } else { self.errors as f64 / self.events as f64 })
            && payload["window_seconds"] == 60
    }

    /// Whether a `top_videos` payload lists these videos.
    pub fn matches_top(&self, payload: &Value) -> bool {
        let listed: Vec<(String, u64)> = payload
            .as_array()
            .map(|videos| {
                videos
                    .iter()
                    .map(|v| {
                        (v["video_id"].as_str().unwrap_or_default().to_string(), v["viewers"].as_u64().unwrap_or(0))
                    })
                    .collect()
            })
            .unwrap_or_default();
        listed == self.top
    }
}

/// Builds partials fact by fact, one partial per (partition, second).
#[derive(Default)]
pub struct PartialsBuilder {
    partials: BTreeMap<(i32, u64), RealtimePartial>,
}

/// One fact: `(session, video, type, fatal, timestamp_ms, received_at_ms, bitrate)`.
pub struct Fact {
    pub id: Uuid,
    pub session: String,
    pub video: String,
    pub event_type: EventType,
    pub fatal: bool,
    pub timestamp_ms: u64,
    pub received_at_ms: u64,
    pub bitrate_kbps: Option<u32>,
}

impl PartialsBuilder {
    pub fn add(&mut self, partition: i32, fact: &Fact) {
        let second = fact.received_at_ms / 1000;
        let partial = self.partials.entry((partition, second)).or_insert_with(|| RealtimePartial {
            partition,
            second,
            views: Vec::new(),
            events: Vec::new(),
        });
        let view = PartialView { session_id: fact.session.clone(), video_id: fact.video.clone() };
        let index = partial.views.iter().position(|v| *v == view).unwrap_or_else(|| {
            partial.views.push(view);
            partial.views.len() - 1
        });
        partial.events.push(PartialEvent {
            event_id: fact.id,
            view: index as u32,
            event_type: fact.event_type,
            fatal: fact.fatal,
            timestamp_ms: fact.timestamp_ms,
            received_at_ms: fact.received_at_ms,
            bitrate_kbps: fact.bitrate_kbps,
        });
    }

    pub fn build(self) -> Vec<RealtimePartial> {
        self.partials.into_values().collect()
    }
}

/// A realistic minute: 12 views over 4 videos, some ended by a complete or a
/// fatal error, a non-fatal error, quality changes, and duplicates (the same
/// fact again in a second partial, and one event received twice). Every
/// receive time lies in the 10 s before `now_ms`, so the figures hold for
/// the next 45 s.
pub fn scenario(now_ms: u64) -> Vec<RealtimePartial> {
    let mut builder = PartialsBuilder::default();
    let base = now_ms - 10_000;
    let mut duplicates = Vec::new();
    for view in 0..12u64 {
        let session = format!("session-{view}");
        let video = format!("video-{}", view % 4);
        let partition = (view % PARTITIONS as u64) as i32;
        let mut at = base + view * 150;
        let fact = |event_type: EventType, fatal: bool, bitrate: Option<u32>, at: u64| Fact {
            id: Uuid::new_v4(),
            session: session.clone(),
            video: video.clone(),
            event_type,
            fatal,
            timestamp_ms: at - 40,
            received_at_ms: at,
            bitrate_kbps: bitrate,
        };
        let start = fact(EventType::VideoStart, false, Some(1500 + 500 * (view as u32 % 3)), at);
        builder.add(partition, &start);
        duplicates.push((partition, start));
        for step in 0..3 {
            at += 700;
            let progress = fact(EventType::VideoProgress, false, None, at);
            builder.add(partition, &progress);
            if step == 1 && view % 2 == 0 {
                duplicates.push((partition, progress));
            }
        }
        at += 500;
        match view % 6 {
            0 => builder.add(partition, &fact(EventType::VideoComplete, false, None, at)),
            1 => builder.add(partition, &fact(EventType::VideoError, true, None, at)),
            2 => builder.add(partition, &fact(EventType::VideoError, false, None, at)),
            3 => builder.add(partition, &fact(EventType::QualityChange, false, Some(6000), at)),
            4 => builder.add(partition, &fact(EventType::VideoBuffer, false, None, at)),
            _ => builder.add(partition, &fact(EventType::VideoPause, false, None, at)),
        }
    }
    let mut partials = builder.build();
    // The same facts again, in partials of their own (a redelivery).
    let mut again = PartialsBuilder::default();
    for (partition, fact) in &duplicates {
        again.add(*partition, fact);
    }
    // And one event received twice by the gateway (a client retry): another receive time.
    let (partition, retried) = &duplicates[1];
    again.add(*partition, &Fact { received_at_ms: retried.received_at_ms + 1200, ..clone_fact(retried) });
    partials.extend(again.build());
    partials
}

fn clone_fact(fact: &Fact) -> Fact {
    Fact {
        id: fact.id,
        session: fact.session.clone(),
        video: fact.video.clone(),
        event_type: fact.event_type,
        fatal: fact.fatal,
        timestamp_ms: fact.timestamp_ms,
        received_at_ms: fact.received_at_ms,
        bitrate_kbps: fact.bitrate_kbps,
    }
}

/// A valid event as the gateway would have produced it.
pub fn event(event_type: EventType, session: &str, video: &str) -> Event {
    let properties = match event_type {
        EventType::VideoProgress => serde_json::json!({"position_seconds": 12.5}),
        EventType::Seek => serde_json::json!({"seek_from_seconds": 1, "seek_to_seconds": 30}),
        EventType::VideoBuffer => serde_json::json!({"buffer_duration_ms": 300}),
        EventType::QualityChange => serde_json::json!({"to_quality": "1080p", "bitrate_kbps": 4500}),
        _ => serde_json::json!({"quality": "720p"}),
    };
    let body = serde_json::json!({
        "event_type": event_type.as_str(),
        "user_id": "user-1",
        "session_id": session,
        "video_id": video,
        "properties": properties,
    });
    let received_at = Utc.timestamp_millis_opt(now_ms() as i64).unwrap();
    Event::from_value(body, received_at).expect("valid test event")
}

/// Waits until a socket with `token` opens (places freed by closed sockets
/// are given back once the hub notices), then closes it.
pub async fn eventually_connects(service: &InProcess, token: &str) {
    let url = format!("ws://{}/ws?token={token}", service.addr);
    let mut socket = service_kit::testing::eventually(Duration::from_secs(10), || async {
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
        Ok(socket)
    })
    .await
    .expect("a socket opens again");
    socket.close(None).await.expect("close");
}
