//! Realtime window partials against the local stack (each test with its own
//! topics, consumer group and ClickHouse database): every stored event is
//! published once, grouped by source partition and receive-second; two
//! replicas give the same realtime figures as one; partials can be turned off.
#![cfg(test)]

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use events_model::{Event, EventType, PartialEvent, RealtimePartial, Topics};
use rdkafka::{
    Message as _, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer as _},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};
use service_kit::{
    ClickHouseConfig, KafkaConfig,
    deps::kafka,
    testing::{self, InProcess},
};
use uuid::Uuid;

const PARTITIONS: i32 = 3;
const ID_SEED: u128 = 0x9a47_0000_0000_0000_0000_0000_0000_0000;

// ---------------------------------------------------------------- events

/// Playback-like traffic: 60 sessions (every tenth watches two videos), each
/// view starting, progressing with changing bitrates and ending in one of six
/// ways; receipt spread over four seconds from `base`, client clocks a
/// minute behind. Ids are fixed, so two runs carry the same events.
fn scenario(base: DateTime<Utc>) -> Vec<Event> {
    let mut events = Vec::new();
    let mut n: u64 = 0;
    for s in 0..60u64 {
        let videos: Vec<u64> = if s % 10 == 0 { vec![s % 7, (s + 3) % 7] } else { vec![s % 7] };
        for (j, v) in videos.into_iter().enumerate() {
            let client_start = (s * 137 + j as u64 * 29) % 20_000;
            let receive_start = (s * 211 + j as u64 * 53) % 3_000;
            let mut steps: Vec<(&str, u64, Value)> = vec![("video_start", 0, json!({}))];
            for k in 1..=4u64 {
                let bitrate = 800 + 400 * ((s + k) % 6);
                steps.push(("video_progress", k * 1_000, json!({"position_seconds": k, "bitrate_kbps": bitrate})));
            }
            steps.push(match s % 6 {
                0 => ("video_complete", 5_000, json!({})),
                1 => ("video_error", 5_000, json!({"error_code": "MEDIA_ERR_NETWORK"})),
                2 => ("video_error", 5_000, json!({"error_code": "STALL", "fatal": false})),
                3 => ("quality_change", 5_000, json!({"to_quality": "1080p", "bitrate_kbps": 6_000})),
                // Received last but happened before the last progress: the progress stays the latest.
                4 => ("video_complete", 3_500, json!({})),
                // The last progress's client millisecond, received later: the complete is the latest.
                _ => ("video_complete", 4_000, json!({})),
            });
            let last = steps.len() - 1;
            for (i, (event_type, client_offset, properties)) in steps.into_iter().enumerate() {
                n += 1;
                // Every twelfth session: the same client and receive millisecond; the larger event_id wins.
                let step = if s % 12 == 11 && i == last { i - 1 } else { i };
                let received = base + TimeDelta::milliseconds((receive_start + step as u64 * 150) as i64);
                let timestamp =
                    base - TimeDelta::seconds(60) + TimeDelta::milliseconds((client_start + client_offset) as i64);
                let body = json!({
                    "event_id": Uuid::from_u128(ID_SEED + u128::from(n)).to_string(),
                    "event_type": event_type,
                    "user_id": format!("u{}", s % 13),
                    "session_id": format!("s{s}"),
                    "video_id": format!("v{v}"),
                    "timestamp": timestamp.timestamp_millis(),
                    "properties": properties,
                });
                events.push(Event::from_value(body, received).expect("valid scenario event"));
            }
        }
    }
    events
}

fn base_second() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() - TimeDelta::seconds(20)
}

fn wire(events: &[&Event]) -> Vec<(String, Vec<u8>)> {
    events.iter().map(|e| (e.kafka_key().to_string(), e.to_wire())).collect()
}

/// Produces in order and returns the partition of every message.
async fn produce(cfg: &KafkaConfig, topic: &str, payloads: &[(String, Vec<u8>)]) -> Vec<i32> {
    let producer: FutureProducer = kafka::client_config(cfg)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("allow.auto.create.topics", "false")
        .create()
        .unwrap();
    let sends = payloads.iter().map(|(key, payload)| {
        producer.send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(30))
    });
    futures::future::join_all(sends).await.into_iter().map(|r| r.map_err(|(e, _)| e).unwrap().partition).collect()
}

// ---------------------------------------------------------------- services

fn processor_config(kafka: &KafkaConfig, clickhouse: &ClickHouseConfig) -> stream_processor::Config {
    let mut config =
        stream_processor::Config { kafka: kafka.clone(), clickhouse: clickhouse.clone(), ..Default::default() };
    config.processor.session_timeout = Duration::from_secs(6);
    config
}

/// Creates the raw topic with [`PARTITIONS`], as the ingest-gateway would.
async fn ensure_raw_topic(kafka: &KafkaConfig, topics: &Topics) {
    let spec = kafka::TopicSpec { name: topics.raw_events.clone(), partitions: PARTITIONS, retention_ms: None };
    kafka::ensure_topics(kafka, &[spec]).await.unwrap();
}

fn start(config: stream_processor::Config) -> InProcess {
    let _ = service_kit::telemetry::init(&service_kit::LogConfig::default());
    InProcess::spawn(config, stream_processor::run)
}

async fn stored_ids(client: &clickhouse::Client) -> anyhow::Result<HashSet<Uuid>> {
    let ids: Vec<String> = client.query("SELECT DISTINCT toString(event_id) FROM events").fetch_all().await?;
    Ok(ids.iter().map(|id| id.parse()).collect::<Result<_, _>>()?)
}

/// Until the consumer group is stable with `members` members that share all partitions, each holding some.
async fn wait_for_group(cfg: &KafkaConfig, members: usize) {
    testing::eventually(Duration::from_secs(60), || async {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || {
            let admin = kafka::admin(&cfg)?;
            let list = admin.inner().fetch_group_list(Some(&cfg.consumer_group), Duration::from_secs(5))?;
            let group = list.groups().first().context("group not listed")?;
            anyhow::ensure!(group.state() == "Stable", "group is {}", group.state());
            let held: Vec<usize> =
                group.members().iter().map(|m| assigned_partitions(m.assignment().unwrap_or_default())).collect();
            anyhow::ensure!(
                held.len() == members
                    && held.iter().all(|&n| n > 0)
                    && held.iter().sum::<usize>() == PARTITIONS as usize,
                "partitions per member: {held:?}"
            );
            Ok(())
        })
        .await?
    })
    .await
    .expect("consumer group stable");
}

/// Partitions in a consumer-protocol assignment: version (i16), then per topic
/// a name (i16 length + bytes) and partitions (i32 count + i32 each).
fn assigned_partitions(bytes: &[u8]) -> usize {
    let i16_at = |at: usize| bytes.get(at..at + 2).map_or(0, |b| i16::from_be_bytes([b[0], b[1]]).max(0) as usize);
    let i32_at =
        |at: usize| bytes.get(at..at + 4).map_or(0, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]).max(0) as usize);
    let (mut at, mut total) = (2, 0);
    let topics = i32_at(at);
    at += 4;
    for _ in 0..topics {
        at += 2 + i16_at(at);
        let partitions = i32_at(at);
        at += 4 + 4 * partitions;
        total += partitions;
    }
    total
}

// ---------------------------------------------------------------- reading partials

#[derive(Debug, Clone)]
struct Received {
    key: String,
    /// Partition of the partials topic.
    topic_partition: i32,
    /// The message's create time (when the processor produced it), epoch ms.
    created_ms: i64,
    partial: RealtimePartial,
}

/// Reads the partials topic from the beginning of every partition, keeping what it read.
struct PartialsReader {
    consumer: BaseConsumer,
    received: Vec<Received>,
}

impl PartialsReader {
    /// Once `topic` exists with `partitions` partitions.
    async fn open(cfg: &KafkaConfig, topic: &str, partitions: i32) -> Arc<Mutex<PartialsReader>> {
        let consumer: BaseConsumer = kafka::client_config(cfg)
            .set("group.id", format!("{}-partials-reader", cfg.consumer_group))
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "false")
            .create()
            .unwrap();
        let consumer = Arc::new(Mutex::new(Some(consumer)));
        testing::eventually(Duration::from_secs(30), || async {
            let (consumer, topic) = (consumer.clone(), topic.to_string());
            tokio::task::spawn_blocking(move || {
                let guard = consumer.lock().unwrap();
                let metadata = guard.as_ref().unwrap().fetch_metadata(Some(&topic), Duration::from_secs(5))?;
                let found = metadata.topics().iter().find(|t| t.name() == topic && t.error().is_none());
                let count = found.map_or(0, |t| t.partitions().len());
                anyhow::ensure!(count == partitions as usize, "{topic} has {count} partitions");
                Ok(())
            })
            .await?
        })
        .await
        .expect("partials topic created");
        let consumer = consumer.lock().unwrap().take().unwrap();
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
        }
        consumer.assign(&assignment).unwrap();
        Arc::new(Mutex::new(PartialsReader { consumer, received: Vec::new() }))
    }

    /// Reads what is available (for at most a second).
    fn drain(&mut self) -> anyhow::Result<()> {
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            let Some(message) = self.consumer.poll(Duration::from_millis(100)) else { break };
            let message = message?;
            self.received.push(Received {
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                topic_partition: message.partition(),
                created_ms: message.timestamp().to_millis().unwrap_or(0),
                partial: RealtimePartial::from_json(message.payload().unwrap_or_default())?,
            });
        }
        Ok(())
    }
}

/// Reads partials until `check` accepts what was read so far.
async fn read_until(
    reader: &Arc<Mutex<PartialsReader>>,
    deadline: Duration,
    check: impl Fn(&[Received]) -> anyhow::Result<()>,
) -> Vec<Received> {
    testing::eventually(deadline, || async {
        let shared = reader.clone();
        tokio::task::spawn_blocking(move || shared.lock().unwrap().drain()).await??;
        let received = reader.lock().unwrap().received.clone();
        check(&received)?;
        Ok(received)
    })
    .await
    .unwrap()
}

fn covers(ids: &HashSet<Uuid>) -> impl Fn(&[Received]) -> anyhow::Result<()> + '_ {
    move |received| {
        let seen: HashSet<Uuid> = received.iter().flat_map(|r| r.partial.events.iter().map(|f| f.event_id)).collect();
        let missing = ids.difference(&seen).count();
        anyhow::ensure!(missing == 0, "{missing} of {} events not in any partial yet", ids.len());
        Ok(())
    }
}

// ---------------------------------------------------------------- realtime figures

/// One event as the realtime metrics see it.
#[derive(Debug, Clone, PartialEq)]
struct Fact {
    event_id: Uuid,
    view: (String, String),
    event_type: EventType,
    fatal: bool,
    timestamp_ms: u64,
    received_at_ms: u64,
    bitrate_kbps: Option<u32>,
}

fn fact_of(partial: &RealtimePartial, f: &PartialEvent) -> Fact {
    let view = &partial.views[f.view as usize];
    Fact {
        event_id: f.event_id,
        view: (view.session_id.clone(), view.video_id.clone()),
        event_type: f.event_type,
        fatal: f.fatal,
        timestamp_ms: f.timestamp_ms,
        received_at_ms: f.received_at_ms,
        bitrate_kbps: f.bitrate_kbps,
    }
}

fn facts_of_partials(partials: &[RealtimePartial]) -> Vec<Fact> {
    partials.iter().flat_map(|p| p.events.iter().map(|f| fact_of(p, f))).collect()
}

/// The facts of an input event, computed from the event itself.
fn fact_of_event(event: &Event) -> Fact {
    Fact {
        event_id: event.event_id,
        view: (event.session_id.clone(), event.video_id.clone()),
        event_type: event.event_type,
        fatal: event.event_type == EventType::VideoError && event.properties.fatal != Some(false),
        timestamp_ms: event.timestamp.timestamp_millis() as u64,
        received_at_ms: event.received_at.timestamp_millis() as u64,
        bitrate_kbps: event.properties.bitrate_kbps,
    }
}

#[derive(Debug, PartialEq)]
struct Figures {
    concurrent_viewers: usize,
    active_streams: usize,
    bandwidth_gbps: f64,
    events: usize,
    errors: usize,
}

/// The realtime metrics (docs/metrics.md) over a window holding every fact.
fn figures(facts: &[Fact]) -> Figures {
    let mut unique: HashMap<Uuid, &Fact> = HashMap::new();
    for fact in facts {
        unique.entry(fact.event_id).or_insert(fact);
    }
    let order = |f: &Fact| (f.timestamp_ms, f.received_at_ms, f.event_id.to_string());
    let mut latest: HashMap<&(String, String), &Fact> = HashMap::new();
    let mut latest_bitrate: HashMap<&(String, String), &Fact> = HashMap::new();
    for fact in unique.values().copied() {
        let slot = latest.entry(&fact.view).or_insert(fact);
        if order(fact) > order(slot) {
            *slot = fact;
        }
        if fact.bitrate_kbps.is_some() {
            let slot = latest_bitrate.entry(&fact.view).or_insert(fact);
            if order(fact) > order(slot) {
                *slot = fact;
            }
        }
    }
    let watching: Vec<&(String, String)> = latest
        .iter()
        .filter(|(_, f)| {
            f.event_type != EventType::VideoComplete && !(f.event_type == EventType::VideoError && f.fatal)
        })
        .map(|(view, _)| *view)
        .collect();
    let kbps: u64 = watching.iter().filter_map(|v| latest_bitrate.get(v)?.bitrate_kbps).map(u64::from).sum();
    Figures {
        concurrent_viewers: watching.len(),
        active_streams: watching.iter().map(|(_, video)| video).collect::<HashSet<_>>().len(),
        bandwidth_gbps: kbps as f64 / 1e6,
        events: unique.len(),
        errors: unique.values().filter(|f| f.event_type == EventType::VideoError).count(),
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partials_cover_each_stored_event_once_by_partition_and_receive_second() {
    let kafka_cfg = testing::kafka_config();
    let db = testing::TestClickHouse::create().await.unwrap();
    let topics = Topics::new(&kafka_cfg.topic_prefix);
    kafka::ensure_topics(
        &kafka_cfg,
        &[kafka::TopicSpec { name: topics.raw_events.clone(), partitions: PARTITIONS, retention_ms: None }],
    )
    .await
    .unwrap();

    // Everything is in the raw topic before the processor starts, so it is
    // read as one batch; a redelivered copy of one event sits right after it.
    let events = scenario(base_second());
    let mut refs: Vec<&Event> = events.iter().collect();
    refs.insert(4, &events[3]);
    let partitions = produce(&kafka_cfg, &topics.raw_events, &wire(&refs)).await;
    let mut partition_of: HashMap<Uuid, i32> = HashMap::new();
    for (event, &partition) in refs.iter().zip(&partitions) {
        assert_eq!(*partition_of.entry(event.event_id).or_insert(partition), partition);
    }
    let seconds: HashSet<(i32, i64)> =
        events.iter().map(|e| (partition_of[&e.event_id], e.received_at.timestamp())).collect();
    assert!(seconds.len() >= 3 * PARTITIONS as usize, "several receive-seconds per partition: {seconds:?}");

    let mut config = processor_config(&kafka_cfg, &db.config);
    config.processor.batch_max_events = 10_000;
    let processor = start(config);
    let reader = PartialsReader::open(&kafka_cfg, &topics.realtime_partials, 3).await;
    let mut expected: HashSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    read_until(&reader, Duration::from_secs(60), covers(&expected)).await;

    // Live traffic, received now: its partials are produced within a second
    // of receipt (the realtime metrics must show a change within 2 s, and
    // the hub adds up to its 1 s tick).
    let live: Vec<Event> = (0..30)
        .map(|i| {
            let body = json!({"event_type": "video_progress", "session_id": format!("live{i}"), "video_id": "v1",
                              "properties": {"position_seconds": i, "bitrate_kbps": 3_000}});
            Event::from_value(body, Utc::now()).unwrap()
        })
        .collect();
    let live_partitions = produce(&kafka_cfg, &topics.raw_events, &wire(&live.iter().collect::<Vec<_>>())).await;
    for (event, partition) in live.iter().zip(live_partitions) {
        partition_of.insert(event.event_id, partition);
        expected.insert(event.event_id);
    }
    let received = read_until(&reader, Duration::from_secs(30), covers(&expected)).await;

    // ClickHouse holds exactly the events the partials carry.
    let client = db.client();
    let stored = testing::eventually(Duration::from_secs(30), || async {
        let stored = stored_ids(&client).await?;
        anyhow::ensure!(stored.len() == expected.len(), "{} of {} stored", stored.len(), expected.len());
        Ok(stored)
    })
    .await
    .unwrap();
    assert_eq!(stored, expected);

    // Every stored event is in exactly one fact, and the fact matches it.
    let by_id: HashMap<Uuid, &Event> = events.iter().chain(&live).map(|e| (e.event_id, e)).collect();
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    let mut topic_partition_of_source: HashMap<i32, i32> = HashMap::new();
    for r in &received {
        let partial = &r.partial;
        assert_eq!(r.key, partial.partition.to_string(), "keyed by source partition");
        let placed = *topic_partition_of_source.entry(partial.partition).or_insert(r.topic_partition);
        assert_eq!(placed, r.topic_partition, "a source partition's partials share one partials partition");
        let views: HashSet<_> = partial.views.iter().collect();
        assert_eq!(views.len(), partial.views.len(), "views listed once: {:?}", partial.views);
        let mut used = vec![false; partial.views.len()];
        for f in &partial.events {
            *seen.entry(f.event_id).or_default() += 1;
            let event = by_id.get(&f.event_id).unwrap_or_else(|| panic!("unknown event {}", f.event_id));
            assert_eq!(partition_of[&f.event_id], partial.partition, "grouped by source partition");
            assert_eq!(f.received_at_ms / 1000, partial.second, "grouped by receive-second");
            used[f.view as usize] = true;
            let view = &partial.views[f.view as usize];
            assert_eq!((&view.session_id, &view.video_id), (&event.session_id, &event.video_id));
            assert_eq!(fact_of(partial, f), fact_of_event(event));
        }
        assert!(used.iter().all(|&u| u), "every listed view has events");
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeated.is_empty(), "events in more than one fact: {repeated:?}");
    assert_eq!(seen.len(), expected.len());

    // Partials of live traffic were produced within a second of receipt.
    let live_ids: HashSet<Uuid> = live.iter().map(|e| e.event_id).collect();
    for r in received.iter().filter(|r| r.partial.events.iter().any(|f| live_ids.contains(&f.event_id))) {
        let oldest = r.partial.events.iter().map(|f| f.received_at_ms).min().unwrap() as i64;
        let delay = r.created_ms - oldest;
        assert!(delay <= 1_000, "partial produced {delay} ms after its oldest event was received");
    }

    let metrics = reqwest::get(processor.url("/metrics")).await.unwrap().text().await.unwrap();
    let published: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("analytics_service_realtime_partials_published_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("published counter on /metrics");
    assert!(published >= received.len() as f64, "{published} published, {} read", received.len());
    assert!(metrics.contains("analytics_service_realtime_partials_failed_total{reason=\"queue_full\"}"));

    processor.stop().await.unwrap();
    kafka::delete_topics(&kafka_cfg, &[&topics.raw_events, &topics.dead_letters, &topics.realtime_partials])
        .await
        .unwrap();
    db.drop().await.unwrap();
}

/// Runs `events` (in two waves, with a redelivered copy in each) through
/// `replicas` processors of one consumer group, with fresh topics and
/// database, and returns every partial they published.
async fn partials_of_run(events: &[Event], replicas: usize) -> Vec<RealtimePartial> {
    let kafka_cfg = testing::kafka_config();
    let db = testing::TestClickHouse::create().await.unwrap();
    let topics = Topics::new(&kafka_cfg.topic_prefix);
    let mut config = processor_config(&kafka_cfg, &db.config);
    config.processor.batch_max_events = 100;
    config.processor.batch_max_wait = Duration::from_millis(200);
    // The raw topic is the gateway's; here the test creates it.
    ensure_raw_topic(&kafka_cfg, &topics).await;
    let processors: Vec<InProcess> = (0..replicas).map(|_| start(config.clone())).collect();
    let reader = PartialsReader::open(&kafka_cfg, &topics.realtime_partials, 3).await;
    wait_for_group(&kafka_cfg, replicas).await;

    let (first, second) = events.split_at(events.len() / 2);
    let mut wave: Vec<&Event> = first.iter().collect();
    wave.insert(10, &first[9]);
    produce(&kafka_cfg, &topics.raw_events, &wire(&wave)).await;
    read_until(&reader, Duration::from_secs(60), covers(&first.iter().map(|e| e.event_id).collect())).await;
    let mut wave: Vec<&Event> = second.iter().collect();
    wave.push(&first[0]);
    produce(&kafka_cfg, &topics.raw_events, &wire(&wave)).await;
    let all: HashSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    let received = read_until(&reader, Duration::from_secs(60), covers(&all)).await;

    for processor in processors {
        processor.stop().await.unwrap();
    }
    kafka::delete_topics(&kafka_cfg, &[&topics.raw_events, &topics.dead_letters, &topics.realtime_partials])
        .await
        .unwrap();
    db.drop().await.unwrap();
    received.into_iter().map(|r| r.partial).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_give_the_same_realtime_figures_as_one() {
    let events = scenario(base_second());
    let (one, two) = tokio::join!(partials_of_run(&events, 1), partials_of_run(&events, 2));

    let direct = figures(&events.iter().map(fact_of_event).collect::<Vec<_>>());
    assert!(direct.concurrent_viewers > 0 && direct.active_streams > 0 && direct.errors > 0, "{direct:?}");
    assert!(direct.bandwidth_gbps > 0.0 && direct.concurrent_viewers < 66, "{direct:?}");
    assert_eq!(direct.events, events.len());

    let sources = |partials: &[RealtimePartial]| partials.iter().map(|p| p.partition).collect::<HashSet<_>>().len();
    assert_eq!(sources(&one), PARTITIONS as usize);
    assert_eq!(sources(&two), PARTITIONS as usize);
    assert_eq!(figures(&facts_of_partials(&one)), direct, "one replica");
    assert_eq!(figures(&facts_of_partials(&two)), direct, "two replicas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partials_off_publishes_nothing() {
    let kafka_cfg = testing::kafka_config();
    let db = testing::TestClickHouse::create().await.unwrap();
    let topics = Topics::new(&kafka_cfg.topic_prefix);
    // The topic exists (say, from an earlier deployment), so anything published would show.
    kafka::ensure_topics(
        &kafka_cfg,
        &[kafka::TopicSpec { name: topics.realtime_partials.clone(), partitions: 3, retention_ms: None }],
    )
    .await
    .unwrap();
    ensure_raw_topic(&kafka_cfg, &topics).await;
    let mut config = processor_config(&kafka_cfg, &db.config);
    config.processor.realtime_partials = false;
    config.processor.batch_max_events = 100;
    let processor = start(config);

    let events = scenario(base_second());
    testing::eventually(Duration::from_secs(30), || async {
        let (cfg, topic) = (kafka_cfg.clone(), topics.raw_events.clone());
        tokio::task::spawn_blocking(move || {
            let admin = kafka::admin(&cfg)?;
            let metadata = admin.inner().fetch_metadata(Some(&topic), Duration::from_secs(5))?;
            anyhow::ensure!(metadata.topics().iter().any(|t| t.name() == topic && t.error().is_none()), "no raw topic");
            Ok(())
        })
        .await?
    })
    .await
    .unwrap();
    produce(&kafka_cfg, &topics.raw_events, &wire(&events.iter().collect::<Vec<_>>())).await;

    // Stored and committed, then stopped (which would flush any partial).
    let client = db.client();
    testing::eventually(Duration::from_secs(60), || async {
        let stored = stored_ids(&client).await?.len();
        anyhow::ensure!(stored == events.len(), "{stored} of {} stored", events.len());
        let (cfg, topic) = (kafka_cfg.clone(), topics.raw_events.clone());
        let lag = tokio::task::spawn_blocking(move || {
            kafka::consumer_group_lag(&cfg, &cfg.consumer_group, &topic, Duration::from_secs(5))
        })
        .await??;
        anyhow::ensure!(lag == 0, "{lag} messages not committed");
        Ok(())
    })
    .await
    .unwrap();
    processor.stop().await.unwrap();

    let (cfg, topic) = (kafka_cfg.clone(), topics.realtime_partials.clone());
    let published: i64 = tokio::task::spawn_blocking(move || {
        let admin = kafka::admin(&cfg).unwrap();
        (0..3).map(|p| admin.inner().fetch_watermarks(&topic, p, Duration::from_secs(5)).unwrap().1).sum()
    })
    .await
    .unwrap();
    assert_eq!(published, 0, "messages in the partials topic");

    kafka::delete_topics(&kafka_cfg, &[&topics.raw_events, &topics.dead_letters, &topics.realtime_partials])
        .await
        .unwrap();
    db.drop().await.unwrap();
}

#[test]
fn assignment_bytes_decode() {
    // version 1, one topic "t" with partitions 0 and 2, empty user data.
    let bytes = [0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 255, 255, 255, 255];
    assert_eq!(assigned_partitions(&bytes), 2);
    assert_eq!(assigned_partitions(&[0, 1, 0, 0, 0, 0]), 0);
}

#[test]
fn figures_follow_the_latest_event_of_each_view() {
    let events = scenario(base_second());
    let by_view: BTreeMap<(String, String), usize> = events.iter().fold(BTreeMap::new(), |mut acc, e| {
        *acc.entry((e.session_id.clone(), e.video_id.clone())).or_default() += 1;
        acc
    });
    assert_eq!(by_view.len(), 66);
    let f = figures(&events.iter().map(fact_of_event).collect::<Vec<_>>());
    // Sessions by s % 6: 0, 4, 5 complete (4: the complete is not the latest,
    // 5: it is by receive time or id); 1 fatal error; 2 non-fatal; 3 quality change.
    // Watching: s % 6 in {2, 3, 4}, plus the second views of s % 10 == 0 sessions with those endings.
    let watching = (0..60u64).filter(|s| matches!(s % 6, 2..=4)).count()
        + (0..60u64).filter(|s| s % 10 == 0 && matches!(s % 6, 2..=4)).count();
    assert_eq!(f.concurrent_viewers, watching);
    assert_eq!(
        f.errors,
        (0..60u64).map(|s| usize::from(matches!(s % 6, 1 | 2)) * if s % 10 == 0 { 2 } else { 1 }).sum::<usize>()
    );
    assert_eq!(f.events, events.len());
}
