//! A: events/s the ingest-gateway accepts ÷ a raw producer.
//!
//! One gateway (release) on topics of its own; the raw baseline is a
//! `FutureProducer` built from `ingest_gateway::producer_config` with the
//! gateway's configuration as the spawned gateway loads it (same environment),
//! sending the same wire messages (same keys, same schema-version header) to
//! the same topic, with at most [`RAW_WINDOW`] deliveries outstanding. Both
//! count an event once Kafka acknowledged it (the gateway answers 202 only
//! then). The bodies are built before the measurement and sent again in a
//! cycle (the gateway does not deduplicate; nothing consumes this topic).

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use events_model::{SCHEMA_VERSION_HEADER, Topics, WIRE_SCHEMA_VERSION};
use rdkafka::{
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{DeliveryFuture, FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
};
use service_kit::KafkaConfig;

use super::{
    Ctx, Meter,
    fixture::{self, Batches, Message, Singles},
    report::{Case, Goal, Unit},
};
use crate::{
    bench::target::{Profile, start_service},
    ui::Step,
};

/// Deliveries the raw producer keeps outstanding at most (the gateway's
/// queue holds 100,000; this keeps the baseline's memory bounded).
pub const RAW_WINDOW: usize = 50_000;

const BATCH: &str = "A gateway batch endpoint";
const SINGLE: &str = "A gateway single-event endpoint";
const RAW: &str = "raw rdkafka producer, gateway settings";

pub fn empty_cases(why: &str) -> Vec<Case> {
    [BATCH, SINGLE]
        .into_iter()
        .map(|name| {
            let mut case = Case::new(name, Unit::PerSecond, Goal::RatioAtLeast(0.5));
            if name == SINGLE {
                case.goal = Goal::None;
            }
            case.missing = Some(why.to_string());
            case
        })
        .collect()
}

/// The gateway's configuration as a gateway started with `env` loads it.
pub fn gateway_config(env: &[(String, String)]) -> Result<ingest_gateway::Config> {
    let env: HashMap<String, String> = env.iter().cloned().collect();
    service_kit::config::load_from(ingest_gateway::SERVICE, None, &env)
        .context("loading the ingest-gateway's configuration for the raw producer")
}

/// The raw baseline's producer: the gateway's settings.
pub fn raw_producer(config: &ingest_gateway::Config) -> Result<FutureProducer> {
    ingest_gateway::producer_config(&config.kafka, &config.ingest).create().context("creating the raw producer")
}

/// How long a raw produce runs.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// Sends (cycling through the messages) until then.
    Until(Instant),
    /// Sends every message once.
    Once,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Produced {
    pub acked: usize,
    pub failed: usize,
    /// From the first send to the last acknowledgement.
    pub seconds: f64,
}

/// Sends `messages` to `topic` as the gateway does (key, payload, schema
/// header) and waits for every acknowledgement.
pub async fn raw_produce(
    producer: &FutureProducer,
    topic: &str,
    messages: &[Message],
    limit: Limit,
) -> Result<Produced> {
    if messages.is_empty() {
        bail!("no messages to produce");
    }
    let version = WIRE_SCHEMA_VERSION.to_string();
    let headers =
        OwnedHeaders::new_with_capacity(1).insert(Header { key: SCHEMA_VERSION_HEADER, value: Some(&version) });
    let started = Instant::now();
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::with_capacity(RAW_WINDOW);
    let mut out = Produced::default();
    let mut i = 0usize;
    loop {
        let more = match limit {
            Limit::Until(until) => i % 1024 != 0 || Instant::now() < until,
            Limit::Once => i < messages.len(),
        };
        if !more {
            break;
        }
        let message = &messages[i % messages.len()];
        let record = FutureRecord::to(topic).key(&message.key).payload(&message.payload).headers(headers.clone());
        match producer.send_result(record) {
            Ok(delivery) => {
                pending.push_back(delivery);
                i += 1;
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => match pending.pop_front() {
                Some(delivery) => settle(delivery.await, &mut out),
                None => tokio::task::yield_now().await,
            },
            Err((error, _)) => return Err(anyhow::Error::new(error).context(format!("producing to {topic}"))),
        }
        if pending.len() >= RAW_WINDOW {
            if let Some(delivery) = pending.pop_front() {
                settle(delivery.await, &mut out);
            }
        }
    }
    while let Some(delivery) = pending.pop_front() {
        settle(delivery.await, &mut out);
    }
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// Counts one delivery report.
fn settle<T, E, C>(result: Result<Result<T, E>, C>, out: &mut Produced) {
    match result {
        Ok(Ok(_)) => out.acked += 1,
        _ => out.failed += 1,
    }
}

/// What a closed-loop HTTP client achieved.
#[derive(Debug, Clone, Default)]
pub struct Driven {
    pub accepted: usize,
    pub requests: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub seconds: f64,
}

impl Driven {
    pub fn rate(&self) -> f64 {
        self.accepted as f64 / self.seconds.max(1e-9)
    }
}

/// `"accepted":N` of a gateway answer, without parsing the rest (the ids).
pub fn accepted_of(body: &[u8]) -> Option<usize> {
    const KEY: &[u8] = b"\"accepted\":";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &body[at..];
    let rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// `concurrency` keep-alive clients posting `bodies` (in a cycle) to `url`
/// until `until`; an event counts when its request answered 202.
pub async fn drive(
    http: &reqwest::Client,
    url: &str,
    bodies: Arc<Vec<String>>,
    content_type: &'static str,
    concurrency: usize,
    until: Instant,
) -> Result<Driven> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, url, bodies, next) = (http.clone(), url.to_string(), bodies.clone(), next.clone());
        tasks.spawn(async move {
            let mut out = Driven::default();
            while Instant::now() < until {
                let body = bodies[next.fetch_add(1, Relaxed) % bodies.len()].clone();
                out.requests += 1;
                let answer = http.post(&url).header("content-type", content_type).body(body).send().await;
                let error = match answer {
                    Ok(response) if response.status() == reqwest::StatusCode::ACCEPTED => {
                        match response.bytes().await {
                            Ok(bytes) => match accepted_of(&bytes) {
                                Some(n) => {
                                    out.accepted += n;
                                    continue;
                                }
                                None => "a 202 without an accepted count".to_string(),
                            },
                            Err(err) => format!("reading the answer: {err}"),
                        }
                    }
                    Ok(response) => {
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        format!("{status}: {}", text.chars().take(200).collect::<String>())
                    }
                    Err(err) => format!("{err}"),
                };
                out.errors += 1;
                out.first_error.get_or_insert(error);
            }
            out
        });
    }
    let mut total = Driven::default();
    while let Some(joined) = tasks.join_next().await {
        let out = joined.context("a client task panicked")?;
        total.accepted += out.accepted;
        total.requests += out.requests;
        total.errors += out.errors;
        if total.first_error.is_none() {
            total.first_error = out.first_error;
        }
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

/// Which figure a measurement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Batch,
    Raw,
    Single,
}

/// The order of one round: ours and the baseline alternate which goes first.
fn round_order(round: usize) -> [Which; 3] {
    if round % 2 == 1 { [Which::Batch, Which::Raw, Which::Single] } else { [Which::Single, Which::Raw, Which::Batch] }
}

pub async fn measure(ctx: &mut Ctx<'_>) -> Result<Vec<Case>> {
    let plan = ctx.plan.clone();
    let args = ctx.args;
    let kafka: KafkaConfig = ctx.kafka("a");
    let topics = Topics::new(&kafka.topic_prefix);
    ctx.cleanup.topics.push((kafka.clone(), vec![topics.raw_events.clone()]));

    let step = Step::start("A: fixture (simulated playback traffic)");
    let count = if args.quick { 30_000 } else { 100_000 };
    let events = fixture::generate(args.seed, salt(&ctx.run, 1), 5000.0, count);
    let batches = Batches::build(&events, args.batch)?;
    let singles = Singles::build(&events[..events.len().min(20_000)])?;
    let messages: Vec<Message> = batches.messages.iter().flatten().cloned().collect();
    let (body_size, wire_size) = batches.mean_sizes();
    step.ok(format!(
        "{} events in {} bodies; {body_size:.0} bytes per event in a body, {wire_size:.0} on the wire",
        messages.len(),
        batches.bodies.len()
    ));
    drop(events);

    let env = ctx.service_env(&kafka, None);
    let config = gateway_config(&env)?;
    let (gateway, port) = start_service(
        ctx.layout,
        "ingest-gateway",
        Profile::Release,
        &env,
        "bench-pipeline-ingest-gateway",
        "bench pipeline A",
    )
    .await?;
    let producer = raw_producer(&config)?;
    let http = ctx
        .gateway_client()?
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.single_concurrency.max(args.concurrency) + 4)
        .build()
        .context("building the HTTP client")?;
    let batch_url = format!("http://127.0.0.1:{port}/api/events/batch");
    let single_url = format!("http://127.0.0.1:{port}/api/events");
    let batch_bodies = Arc::new(batches.bodies);
    let single_bodies = Arc::new(singles.bodies);

    let step = Step::start("A: warm-up (gateway batch and raw producer, not counted)");
    let warm = plan.warmup.min(Duration::from_secs(3));
    let warmed =
        drive(&http, &batch_url, batch_bodies.clone(), "application/json", args.concurrency, Instant::now() + warm)
            .await?;
    if warmed.accepted == 0 {
        step.fail("nothing accepted");
        bail!(
            "the gateway accepted no event during the warm-up ({}); read .stack/logs/bench-pipeline-ingest-gateway.log",
            warmed.first_error.unwrap_or_default()
        );
    }
    let raw = raw_produce(&producer, &topics.raw_events, &messages, Limit::Until(Instant::now() + warm)).await?;
    step.ok(format!("{:.0} and {:.0} events/s", warmed.rate(), raw.acked as f64 / raw.seconds));

    let mut batch = Case::new(BATCH, Unit::PerSecond, Goal::RatioAtLeast(0.5));
    let mut single = Case::new(SINGLE, Unit::PerSecond, Goal::None);
    batch.baseline_name = RAW.to_string();
    single.baseline_name = RAW.to_string();
    let mut raw_rates = Vec::new();
    let mut errors = Vec::new();
    for round in ctx.rounds() {
        for which in round_order(round) {
            let label = match which {
                Which::Batch => {
                    format!("batch endpoint, {} events per body, concurrency {}", args.batch, args.concurrency)
                }
                Which::Raw => "raw producer".to_string(),
                Which::Single => format!("single-event endpoint, concurrency {}", args.single_concurrency),
            };
            let step = Step::start(format!("A round {round}: {label}, {} s", plan.duration.as_secs()));
            let meter = Meter::start(ctx.pids(&[&gateway]));
            let until = Instant::now() + plan.duration;
            let (rate, detail) = match which {
                Which::Raw => {
                    let out = raw_produce(&producer, &topics.raw_events, &messages, Limit::Until(until)).await?;
                    if out.failed > 0 {
                        errors.push(format!("round {round}: the raw producer had {} failed deliveries", out.failed));
                    }
                    (out.acked as f64 / out.seconds.max(1e-9), format!("{} acknowledged", out.acked))
                }
                Which::Batch | Which::Single => {
                    let (url, bodies, concurrency, content_type) = if which == Which::Batch {
                        (&batch_url, batch_bodies.clone(), args.concurrency, "application/json")
                    } else {
                        (&single_url, single_bodies.clone(), args.single_concurrency, "application/json")
                    };
                    let out = drive(&http, url, bodies, content_type, concurrency, until).await?;
                    if out.errors > 0 {
                        errors.push(format!(
                            "round {round}, {label}: {} of {} requests failed (first: {})",
                            out.errors,
                            out.requests,
                            out.first_error.clone().unwrap_or_default()
                        ));
                    }
                    (
                        out.rate(),
                        format!("{} accepted in {} requests, {} failed", out.accepted, out.requests, out.errors),
                    )
                }
            };
            let shown = Unit::PerSecond.show(Some(rate));
            ctx.periods.push(meter.finish(format!("A round {round}: {label}"), shown.clone()));
            step.ok(format!("{shown} ({detail})"));
            match which {
                Which::Batch => batch.ours.push(rate),
                Which::Single => single.ours.push(rate),
                Which::Raw => raw_rates.push(rate),
            }
        }
    }
    batch.baseline = raw_rates.clone();
    single.baseline = raw_rates;
    ctx.note_peak_rss("ingest-gateway", gateway.pid);
    ctx.notes.extend(errors.into_iter().take(5).map(|e| format!("A {e}")));
    let step = Step::start("A: stopping the gateway");
    drop(gateway);
    step.ok("");
    Ok(vec![batch, single])
}

/// A salt for the fixture's event ids, distinct per run and part.
pub fn salt(run: &str, part: u64) -> u64 {
    u64::from_str_radix(run, 16).unwrap_or(1).wrapping_mul(31).wrapping_add(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accepted_count_is_read_from_the_answer() {
        assert_eq!(accepted_of(br#"{"accepted":500,"event_ids":["a"]}"#), Some(500));
        assert_eq!(accepted_of(br#"{"event_ids":[], "accepted": 3}"#), Some(3));
        assert_eq!(accepted_of(br#"{"accepted":"x"}"#), None);
        assert_eq!(accepted_of(b"nothing"), None);
    }

    #[test]
    fn rounds_alternate_which_goes_first_and_salts_differ() {
        assert_eq!(round_order(1)[0], Which::Batch);
        assert_eq!(round_order(2)[0], Which::Single);
        assert!(round_order(3).contains(&Which::Raw));
        assert_ne!(salt("0123abcd", 1), salt("0123abcd", 2));
        assert_ne!(salt("0123abcd", 1), salt("0123abce", 1));
    }
}
