//! Kafka stopped while clients keep POSTing batches: the ingest-gateway answers
//! 503 with `Retry-After` (never 202) while Kafka is down; after Kafka returns,
//! every event it answered 202 for is stored, exactly once.
//!
//! Kafka is a scratch server of this test (the shared one stays up for the
//! other tests); the gateway and the processor run in-process against it, and
//! ClickHouse is the shared stack's, with a database of our own. The clients
//! behave as the API asks: a batch answered 503 is sent again, with the same
//! event ids, once its `Retry-After` has passed.
#![cfg(test)]

// Shared with the stream-processor's ClickHouse outage drill.
#[path = "../../stream-processor/tests/drill/mod.rs"]
mod drill;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use events_model::Topics;
use local_stack::ScratchKafka;
use serde_json::Value;
use service_kit::{
    HttpConfig, KafkaConfig, Shutdown,
    deps::kafka::{self, TopicSpec},
    testing::{self, InProcess, eventually},
};
use uuid::Uuid;

const CLIENTS: usize = 3;
const BATCH: usize = 20;
/// Each client sends at most one batch per pace.
const PACE: Duration = Duration::from_millis(100);
/// A bound on the load whatever happens: requests per client.
const MAX_REQUESTS: usize = 1_500;

/// One request and its answer.
#[derive(Debug, Clone)]
struct Exchange {
    started: Instant,
    finished: Instant,
    /// The HTTP status, or the transport error.
    status: Result<u16, String>,
    retry_after: Option<String>,
    /// The ids the gateway reported for a 202.
    answered_ids: Vec<String>,
    ids: Vec<String>,
}

#[derive(Default)]
struct Record {
    exchanges: Vec<Exchange>,
    /// Per client, the batches refused and not accepted since.
    refused: [usize; CLIENTS],
}

/// Clients POSTing batches of fresh events, and again the batches refused.
struct Clients {
    record: Arc<Mutex<Record>>,
    stop: Shutdown,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Clients {
    fn start(batch_url: String) -> Self {
        let record = Arc::new(Mutex::new(Record::default()));
        let stop = Shutdown::new();
        let tasks = (0..CLIENTS)
            .map(|client| tokio::spawn(client_loop(client, batch_url.clone(), record.clone(), stop.clone())))
            .collect();
        Self { record, stop, tasks }
    }

    fn exchanges(&self) -> Vec<Exchange> {
        self.record.lock().unwrap().exchanges.clone()
    }

    fn unsettled(&self) -> usize {
        self.record.lock().unwrap().refused.iter().sum()
    }

    /// Stops sending (requests in flight finish) and returns every exchange.
    async fn finish(self) -> Vec<Exchange> {
        self.stop.trigger();
        for task in self.tasks {
            task.await.expect("client task");
        }
        Arc::try_unwrap(self.record).ok().expect("clients finished").into_inner().unwrap().exchanges
    }
}

async fn client_loop(client: usize, url: String, record: Arc<Mutex<Record>>, stop: Shutdown) {
    let http = drill::client();
    let mut refused: VecDeque<(Instant, Vec<Value>)> = VecDeque::new();
    let mut pace = tokio::time::interval(PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for request in 0..MAX_REQUESTS {
        tokio::select! {
            () = stop.wait() => return,
            _ = pace.tick() => {}
        }
        // A refused batch whose Retry-After has passed goes first, else a fresh one.
        let batch = match refused.front() {
            Some((due, _)) if *due <= Instant::now() => refused.pop_front().map(|(_, batch)| batch).unwrap(),
            _ => (0..BATCH)
                .map(|i| drill::event_json(Uuid::new_v4(), (client * MAX_REQUESTS + request) * BATCH + i))
                .collect(),
        };
        let ids: Vec<String> = batch.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
        let started = Instant::now();
        let (status, retry_after, answered_ids) = match http.post(&url).json(&batch).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let answered = body["event_ids"].as_array().into_iter().flatten();
                (Ok(status), retry_after, answered.map(|id| id.as_str().unwrap_or_default().to_string()).collect())
            }
            Err(error) => (Err(format!("{error:#}")), None, Vec::new()),
        };
        let finished = Instant::now();
        if status != Ok(202) {
            let wait = retry_after.as_deref().and_then(|s| s.parse().ok()).unwrap_or(1);
            refused.push_back((finished + Duration::from_secs(wait), batch));
        }
        let mut record = record.lock().unwrap();
        record.refused[client] = refused.len();
        record.exchanges.push(Exchange { started, finished, status, retry_after, answered_ids, ids });
    }
}

/// Every `event_id` in the table with how many rows `FINAL` keeps for it.
async fn stored_ids(client: &clickhouse::Client) -> anyhow::Result<HashMap<String, u64>> {
    let rows: Vec<(String, u64)> =
        client.query("SELECT toString(event_id) AS id, count() FROM events FINAL GROUP BY id").fetch_all().await?;
    Ok(rows.into_iter().collect())
}

fn count<'a>(exchanges: impl IntoIterator<Item = &'a Exchange>, status: u16) -> usize {
    exchanges.into_iter().filter(|e| e.status == Ok(status)).count()
}

/// The ingest-gateway, once its `/ready` answers 200 (Kafka reachable, raw topic there).
async fn start_gateway(config: ingest_gateway::Config) -> InProcess {
    let _ = service_kit::telemetry::init(&service_kit::LogConfig::default());
    let config = ingest_gateway::Config {
        http: HttpConfig { workers: 2, probe_timeout: Duration::from_millis(500), ..HttpConfig::default() },
        ..config
    };
    let gateway = InProcess::spawn(config, ingest_gateway::run);
    gateway.wait_ready(Duration::from_secs(30)).await.expect("gateway ready");
    gateway
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_outage_answers_503_and_loses_nothing_answered_202() {
    let began = Instant::now();
    let mut scratch = ScratchKafka::start().await.unwrap();
    let kafka_cfg = KafkaConfig { brokers: scratch.bootstrap(), ..testing::kafka_config() };
    let topics = Topics::new(&kafka_cfg.topic_prefix);
    kafka::ensure_topics(
        &kafka_cfg,
        &[
            TopicSpec { name: topics.raw_events.clone(), partitions: 3, retention_ms: None },
            TopicSpec { name: topics.dead_letters.clone(), partitions: 1, retention_ms: None },
        ],
    )
    .await
    .unwrap();
    let db = testing::TestClickHouse::create().await.unwrap();
    let postgres = testing::TestPostgres::create().await.unwrap();
    let keys = postgres.keys().await.unwrap();

    let mut ingest = ingest_gateway::IngestConfig { produce_timeout: Duration::from_secs(2), ..Default::default() };
    ingest.raw_topic_partitions = 3;
    let gateway = start_gateway(ingest_gateway::Config {
        kafka: kafka_cfg.clone(),
        postgres: postgres.config.clone(),
        ingest,
        ..Default::default()
    })
    .await;
    let mut config =
        stream_processor::Config { kafka: kafka_cfg.clone(), clickhouse: db.config.clone(), ..Default::default() };
    let p = &mut config.processor;
    (p.batch_max_events, p.batch_max_wait, p.retry_max, p.session_timeout) =
        (2_000, Duration::from_millis(200), Duration::from_secs(1), Duration::from_secs(6));
    let processor = drill::start_processor(config);

    // Kafka up: batches are accepted.
    // The key in the URL: the drill's clients set no headers.
    let clients = Clients::start(gateway.url(&format!("/api/events/batch?api_key={}", keys.ingest)));
    eventually(Duration::from_secs(30), || async {
        let accepted = count(&clients.exchanges(), 202);
        anyhow::ensure!(accepted >= 20, "{accepted} batches accepted so far");
        Ok(())
    })
    .await
    .unwrap();

    // Kafka down: requests are refused with 503 and Retry-After.
    scratch.stop().await.unwrap();
    let down_since = Instant::now();
    eventually(Duration::from_secs(30), || async {
        let exchanges = clients.exchanges();
        let refused = count(exchanges.iter().filter(|e| e.started >= down_since), 503);
        anyhow::ensure!(refused >= 3 * CLIENTS, "{refused} requests refused since Kafka stopped");
        Ok(())
    })
    .await
    .unwrap();

    // Kafka back: the refused batches are sent again and accepted, as are new ones.
    let restarting_at = Instant::now();
    scratch.start_again().await.unwrap();
    eventually(Duration::from_secs(45), || async {
        let exchanges = clients.exchanges();
        let accepted = count(exchanges.iter().filter(|e| e.started >= restarting_at), 202);
        let unsettled = clients.unsettled();
        anyhow::ensure!(
            accepted >= 20 && unsettled == 0,
            "{accepted} accepted since the restart, {unsettled} unsettled"
        );
        Ok(())
    })
    .await
    .unwrap();
    let exchanges = clients.finish().await;
    let back_after = restarting_at.elapsed();

    // What the clients saw.
    let outage = |e: &&Exchange| e.started >= down_since && e.finished <= restarting_at;
    let during: Vec<&Exchange> = exchanges.iter().filter(outage).collect();
    eprintln!(
        "{} requests ({} answered 202, {} answered 503); {} started and ended while Kafka was down; \
         Kafka down {:?}, answering again {back_after:?} after the restart began",
        exchanges.len(),
        count(&exchanges, 202),
        count(&exchanges, 503),
        during.len(),
        restarting_at - down_since,
    );
    assert!(!during.is_empty());
    for exchange in &during {
        assert_eq!(exchange.status, Ok(503), "while Kafka was down: {exchange:?}");
    }
    for exchange in &exchanges {
        match exchange.status {
            Ok(202) => assert_eq!(exchange.answered_ids, exchange.ids, "a 202 reports the ids sent"),
            Ok(503) => assert!(exchange.retry_after.is_some(), "a 503 without Retry-After: {exchange:?}"),
            _ => panic!("neither 202 nor 503: {exchange:?}"),
        }
    }

    // What was stored: every event answered 202 (and, since every refused
    // batch was sent again until accepted, every event sent), each once.
    let accepted: HashSet<&String> =
        exchanges.iter().filter(|e| e.status == Ok(202)).flat_map(|e| e.ids.iter()).collect();
    let sent: HashSet<&String> = exchanges.iter().flat_map(|e| e.ids.iter()).collect();
    assert_eq!(accepted, sent, "every batch was eventually accepted");
    let client = db.client();
    let stored = eventually(Duration::from_secs(60), || async {
        let stored = stored_ids(&client).await?;
        let missing = accepted.iter().filter(|id| !stored.contains_key(id.as_str())).count();
        anyhow::ensure!(missing == 0, "{missing} of {} accepted events not stored yet", accepted.len());
        Ok(stored)
    })
    .await
    .unwrap();
    let extra: Vec<&String> = stored.keys().filter(|id| !sent.contains(id)).collect();
    assert!(extra.is_empty(), "stored events nobody sent: {extra:?}");
    let twice: Vec<(&String, &u64)> = stored.iter().filter(|(_, rows)| **rows != 1).collect();
    assert!(twice.is_empty(), "events counted more than once by FINAL: {twice:?}");
    let (distinct, deduplicated): (u64, u64) = client
        .query("SELECT uniqExact(event_id), (SELECT count() FROM events FINAL) FROM events")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((distinct, deduplicated), (accepted.len() as u64, accepted.len() as u64));

    processor.stop().await.unwrap();
    gateway.stop().await.unwrap();
    db.drop().await.unwrap();
    postgres.drop().await.unwrap();
    eprintln!("Kafka outage drill took {:?}", began.elapsed());
}
