//! B: rows/s the stream-processor stores ÷ a raw insert of the same rows.
//!
//! The fixture's wire messages are produced once (with the gateway's
//! settings) to a raw topic of the benchmark's own. Each processor run is a
//! fresh release process with a fresh consumer group (so it reads from the
//! earliest offset) and a fresh database with the migrations applied; its
//! figure is the rows stored after its first insert ÷ the time from that
//! first insert to the last, polled with `SELECT count()` (the start-up and
//! group join are not throughput). The baseline inserts the same rows
//! (`EventRow`s decoded beforehand) with the `clickhouse` crate (RowBinary,
//! the client configuration the processor uses) in inserts of the
//! processor's `batch_max_events`, one after another, into its own fresh
//! database; measured the same way, from its first acknowledged insert to the
//! last. The materialized views of the migrations run on every insert in both.
//! On the cluster (`--cluster`) a row counts once both replicas of its shard
//! hold it, for the processor and the baseline alike ([`count`]).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use events_model::{EVENTS_TABLE, Event, EventRow, Topics};
use service_kit::{ClickHouseConfig, deps::kafka::TopicSpec};

use local_stack::cluster;

use super::{
    Ctx, Meter, Target, drop_database,
    fixture::{self, Message},
    gateway::{self, Limit},
    report::{Case, Goal, Unit},
};
use crate::{
    bench::target::{Profile, start_service},
    ui::Step,
};

const ON: &str = "B processor, realtime partials on";
const OFF: &str = "B processor, realtime partials off";

pub fn empty_cases(why: &str) -> Vec<Case> {
    [ON, OFF]
        .into_iter()
        .map(|name| {
            let mut case = Case::new(name, Unit::PerSecond, Goal::RatioAtLeast(0.6));
            case.missing = Some(why.to_string());
            case
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    PartialsOn,
    PartialsOff,
    Raw,
}

impl Variant {
    fn tag(self) -> &'static str {
        match self {
            Variant::PartialsOn => "on",
            Variant::PartialsOff => "off",
            Variant::Raw => "raw",
        }
    }
}

/// The order of one round: rotated, so each goes first once in three rounds.
fn round_order(round: usize) -> [Variant; 3] {
    let mut order = [Variant::PartialsOn, Variant::Raw, Variant::PartialsOff];
    order.rotate_left((round.max(1) - 1) % 3);
    order
}

/// Rows/s from `(when, rows stored)` samples: the rows stored after the
/// first sample with any ÷ the time from it to the first with all `total`.
pub fn steady_rate(samples: &[(Instant, u64)], total: u64) -> Option<f64> {
    let (t0, c0) = *samples.iter().find(|(_, c)| *c > 0)?;
    let (t1, c1) = *samples.iter().find(|(_, c)| *c >= total)?;
    let seconds = t1.checked_duration_since(t0)?.as_secs_f64();
    (seconds > 0.0 && c1 > c0).then(|| (c1 - c0) as f64 / seconds)
}

async fn count_table(db: &ClickHouseConfig, table: &str) -> Result<u64> {
    let sql = format!("SELECT count() FROM {table}");
    db.client().query(&sql).fetch_one::<u64>().await.with_context(|| format!("{sql} in {} at {}", db.database, db.url))
}

/// The rows of `events` stored. On the cluster: stored on both replicas of
/// their shard (per shard the smaller of its replicas' `events_local`
/// counts, summed), so a figure includes replication, not only the insert
/// into the first replica that `insert_distributed_sync` waits for.
async fn count(target: Target, db: &ClickHouseConfig) -> Result<u64> {
    match target {
        Target::Single => count_table(db, EVENTS_TABLE).await,
        Target::Cluster => {
            let mut replicas = Vec::with_capacity(cluster::NODES);
            for node in 0..cluster::NODES {
                let at = ClickHouseConfig { url: cluster::Ports::STANDARD.clickhouse_url(node), ..db.clone() };
                let local = service_kit::migrate::cluster::local_name(EVENTS_TABLE);
                replicas.push((cluster::shard_and_replica(node).0, count_table(&at, &local).await?));
            }
            Ok(fully_replicated(&replicas))
        }
    }
}

/// Σ over shards of the smallest count among the shard's replicas, from `(shard, count)` per server.
pub fn fully_replicated(replicas: &[(usize, u64)]) -> u64 {
    let mut shards: std::collections::BTreeMap<usize, u64> = std::collections::BTreeMap::new();
    for (shard, rows) in replicas {
        let least = shards.entry(*shard).or_insert(u64::MAX);
        *least = (*least).min(*rows);
    }
    shards.values().sum()
}

pub async fn measure(ctx: &mut Ctx<'_>) -> Result<Vec<Case>> {
    let plan = ctx.plan.clone();
    let args = ctx.args;
    let kafka = ctx.kafka("b");
    let topics = Topics::new(&kafka.topic_prefix);
    let processor_defaults = stream_processor::Config { kafka: kafka.clone(), ..stream_processor::Config::default() };
    let raw = TopicSpec {
        name: topics.raw_events.clone(),
        partitions: ingest_gateway::IngestConfig::default().raw_topic_partitions,
        retention_ms: None,
    };
    let specs: Vec<TopicSpec> =
        std::iter::once(raw).chain(stream_processor::topic_specs(&processor_defaults)).collect();
    ctx.cleanup.topics.push((kafka.clone(), specs.iter().map(|s| s.name.clone()).collect()));
    service_kit::deps::kafka::ensure_topics(&kafka, &specs).await.context("creating the B topics")?;
    let chunk = processor_defaults.processor.batch_max_events;

    let step = Step::start(format!("B: fixture ({} events, decoded into rows for the baseline)", plan.rows));
    let events = fixture::generate(args.seed + 1, gateway::salt(&ctx.run, 2), 5000.0, plan.rows);
    let mut messages = Vec::with_capacity(events.len());
    let mut rows = Vec::with_capacity(events.len());
    for event in &events {
        let message = Message::of_client_json(&event.to_json())?;
        let decoded = Event::from_wire(&message.payload).map_err(|e| anyhow::anyhow!("a wire message: {e}"))?;
        rows.push(EventRow::from(&decoded));
        messages.push(message);
    }
    drop(events);
    step.ok("");

    let step = Step::start(format!("B: producing the fixture to {}", topics.raw_events));
    let env = ctx.service_env(&kafka, None);
    let producer = gateway::raw_producer(&gateway::gateway_config(&env)?)?;
    let produced = gateway::raw_produce(&producer, &topics.raw_events, &messages, Limit::Once).await?;
    if produced.acked != messages.len() {
        step.fail(format!("{} of {} acknowledged", produced.acked, messages.len()));
        bail!("Kafka acknowledged {} of the {} fixture messages", produced.acked, messages.len());
    }
    step.ok(format!("{:.0} events/s", produced.acked as f64 / produced.seconds));
    drop(messages);
    drop(producer);

    let total = rows.len() as u64;
    let mut on = Case::new(ON, Unit::PerSecond, Goal::RatioAtLeast(0.6));
    let mut off = Case::new(OFF, Unit::PerSecond, Goal::RatioAtLeast(0.6));
    let baseline_name = format!("raw RowBinary insert (clickhouse crate), {chunk}-row inserts");
    on.baseline_name = baseline_name.clone();
    off.baseline_name = baseline_name;
    let mut raw_rates = Vec::new();
    for round in ctx.rounds() {
        for variant in round_order(round) {
            let db = ctx.database(&format!("b{round}_{}", variant.tag())).await?;
            let rate = match variant {
                Variant::Raw => raw_insert(ctx, round, &db, &rows, chunk).await?,
                Variant::PartialsOn | Variant::PartialsOff => {
                    processor_run(ctx, round, variant, &kafka, &db, total).await?
                }
            };
            match variant {
                Variant::PartialsOn => on.ours.push(rate),
                Variant::PartialsOff => off.ours.push(rate),
                Variant::Raw => raw_rates.push(rate),
            }
            if !args.keep {
                drop_database(&db).await?;
            }
        }
    }
    on.baseline = raw_rates.clone();
    off.baseline = raw_rates;
    Ok(vec![on, off])
}

async fn raw_insert(
    ctx: &mut Ctx<'_>,
    round: usize,
    db: &ClickHouseConfig,
    rows: &[EventRow],
    chunk: usize,
) -> Result<f64> {
    let label = format!("B round {round}: raw insert of {} rows", rows.len());
    let step = Step::start(label.clone());
    let client = db.client();
    let meter = Meter::start(ctx.pids(&[]));
    let mut acknowledged = Vec::new();
    for part in rows.chunks(chunk) {
        let mut insert = client.insert::<EventRow>(EVENTS_TABLE).await.context("starting a raw insert")?;
        for row in part {
            insert.write(row).await.context("writing a raw insert")?;
        }
        insert.end().await.context("finishing a raw insert")?;
        acknowledged.push((Instant::now(), part.len() as u64));
    }
    let mut stored = 0;
    let mut samples: Vec<(Instant, u64)> = acknowledged
        .into_iter()
        .map(|(t, n)| {
            stored += n;
            (t, stored)
        })
        .collect();
    if ctx.target == Target::Cluster {
        // Acknowledged means stored on one replica of each shard; the last
        // sample is when both replicas of every shard hold every row.
        let total = rows.len() as u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        loop {
            poll.tick().await;
            if count(ctx.target, db).await? >= total {
                break;
            }
            if Instant::now() > deadline {
                step.fail("not replicated");
                bail!("the second replicas did not hold the raw insert's {total} rows within 60 s");
            }
        }
        if let Some(last) = samples.last_mut() {
            last.0 = Instant::now();
        }
    }
    let stored = count(ctx.target, db).await?;
    if stored != rows.len() as u64 {
        step.fail(format!("{stored} rows stored"));
        bail!("the raw insert stored {stored} of {} rows", rows.len());
    }
    let rate = steady_rate(&samples, rows.len() as u64)
        .context("the raw insert took a single insert; use more --rows than the processor's batch_max_events")?;
    let shown = Unit::PerSecond.show(Some(rate));
    ctx.periods.push(meter.finish(label, shown.clone()));
    step.ok(shown);
    Ok(rate)
}

async fn processor_run(
    ctx: &mut Ctx<'_>,
    round: usize,
    variant: Variant,
    kafka: &service_kit::KafkaConfig,
    db: &ClickHouseConfig,
    total: u64,
) -> Result<f64> {
    let partials = variant == Variant::PartialsOn;
    let mut kafka = kafka.clone();
    kafka.consumer_group = format!("{}-r{round}-{}", kafka.consumer_group, variant.tag());
    let mut env = ctx.service_env(&kafka, Some(db));
    env.push(("STREAM_PROCESSOR__PROCESSOR__REALTIME_PARTIALS".to_string(), partials.to_string()));
    let what = format!("bench pipeline B round {round}, partials {}", variant.tag());
    let (processor, _port) =
        start_service(ctx.layout, "stream-processor", Profile::Release, &env, "bench-pipeline-stream-processor", &what)
            .await?;
    let label = format!("B round {round}: processor, partials {}, {total} rows", variant.tag());
    let step = Step::start(label.clone());
    let meter = Meter::start(ctx.pids(&[&processor]));
    // Stalled: no new row for this long.
    let stall = Duration::from_secs(30);
    let mut samples = Vec::new();
    let mut last_progress = (Instant::now(), 0u64);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    loop {
        poll.tick().await;
        let stored = count(ctx.target, db).await?;
        let now = Instant::now();
        samples.push((now, stored));
        if stored >= total {
            break;
        }
        if stored > last_progress.1 {
            last_progress = (now, stored);
        } else if now.duration_since(last_progress.0) > stall {
            step.fail(format!("{stored} of {total} rows"));
            bail!(
                "the processor stored {stored} of {total} rows and nothing more for {} s; read \
                 .stack/logs/bench-pipeline-stream-processor.log",
                stall.as_secs()
            );
        }
    }
    let rate = steady_rate(&samples, total).context("the processor stored every row in its first insert")?;
    let shown = Unit::PerSecond.show(Some(rate));
    ctx.periods.push(meter.finish(label, shown.clone()));
    ctx.note_peak_rss("stream-processor", processor.pid);
    drop(processor);
    step.ok(shown);
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steady_rate_starts_at_the_first_stored_batch() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let samples = [(at(0), 0), (at(500), 0), (at(1000), 50_000), (at(2000), 100_000), (at(3000), 150_000)];
        assert_eq!(steady_rate(&samples, 150_000), Some(50_000.0));
        assert_eq!(steady_rate(&samples, 200_000), None, "never complete");
        assert_eq!(steady_rate(&samples[..3], 50_000), None, "a single batch has no rate");
        assert_eq!(steady_rate(&[], 1), None);
    }

    #[test]
    fn a_row_counts_once_both_replicas_of_its_shard_hold_it() {
        assert_eq!(fully_replicated(&[(1, 100), (1, 80), (2, 50), (2, 70)]), 130);
        assert_eq!(fully_replicated(&[(1, 10)]), 10);
        assert_eq!(fully_replicated(&[]), 0);
    }

    #[test]
    fn each_variant_goes_first_once_in_three_rounds() {
        let firsts: Vec<Variant> = (1..=3).map(|r| round_order(r)[0]).collect();
        assert_eq!(firsts, [Variant::PartialsOn, Variant::Raw, Variant::PartialsOff]);
        for round in 1..=4 {
            let order = round_order(round);
            assert!(order.contains(&Variant::Raw) && order.contains(&Variant::PartialsOff), "{order:?}");
        }
    }
}
