//! D: POST → queryable latency at `--rate` events/s.
//!
//! A gateway and a processor (release, default settings) on topics and a
//! database of their own. Batches of `--batch` events are posted on a fixed
//! schedule (`rate / batch` a second, each request on its own task, at most
//! [`IN_FLIGHT`] outstanding); two events of every batch are probes. A
//! probe's latency runs from its request's 202 to the start of the first
//! `SELECT … WHERE event_id IN (…)` that returns it; the poller asks for
//! every outstanding probe every [`POLL`] (so a figure overstates by at most
//! one poll interval plus the query's own time), and a probe not seen within
//! [`DEADLINE`] counts as lost. The first `warmup` of traffic is not measured.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use events_model::{EVENTS_TABLE, Topics};
use tokio::sync::{Semaphore, mpsc};
use uuid::Uuid;

use super::{
    Ctx, Meter,
    fixture::{self, Batches},
    gateway::{accepted_of, salt},
    report::{Case, Goal, Unit},
};
use crate::{
    bench::{
        report::ms,
        stats::percentile,
        target::{WritePathServices, start_write_path},
    },
    ui::Step,
};

const IN_FLIGHT: usize = 32;
const POLL: Duration = Duration::from_millis(50);
const DEADLINE: Duration = Duration::from_secs(10);
const P50: &str = "D POST → queryable p50";
const P99: &str = "D POST → queryable p99";

pub fn empty_cases(why: &str) -> Vec<Case> {
    let mut p50 = Case::new(P50, Unit::Milliseconds, Goal::None);
    let mut p99 = Case::new(P99, Unit::Milliseconds, Goal::AtMostMs(1000.0));
    p50.missing = Some(why.to_string());
    p99.missing = Some(why.to_string());
    vec![p50, p99]
}

/// One accepted probe.
struct Sent {
    id: Uuid,
    returned: Instant,
    measured: bool,
}

/// The probes of one batch: its first and middle events.
pub fn probe_indices(len: usize) -> Vec<usize> {
    match len {
        0 => vec![],
        1 => vec![0],
        n => vec![0, n / 2],
    }
}

/// The poller's query for `ids`.
pub fn visible_sql(ids: &[Uuid]) -> String {
    let list: Vec<String> = ids.iter().map(|id| format!("toUUID('{id}')")).collect();
    format!("SELECT toString(event_id) FROM {EVENTS_TABLE} WHERE event_id IN ({})", list.join(", "))
}

/// The latencies (ms) of the probes seen, with the lost ones as infinite (so
/// they count against the p99).
pub fn latencies(sent: &[(Instant, bool)], seen: &HashMap<usize, Instant>) -> (Vec<f64>, usize) {
    let mut out = Vec::new();
    let mut lost = 0;
    for (i, (returned, measured)) in sent.iter().enumerate() {
        if !measured {
            continue;
        }
        match seen.get(&i) {
            Some(at) => out.push(at.saturating_duration_since(*returned).as_secs_f64() * 1e3),
            None => {
                lost += 1;
                out.push(f64::INFINITY);
            }
        }
    }
    (out, lost)
}

pub async fn measure(ctx: &mut Ctx<'_>) -> Result<(Vec<Case>, Vec<f64>)> {
    let plan = ctx.plan.clone();
    let args = ctx.args;
    let kafka = ctx.kafka("d");
    let topics = Topics::new(&kafka.topic_prefix);
    ctx.cleanup.topics.push((
        kafka.clone(),
        vec![topics.raw_events.clone(), topics.dead_letters.clone(), topics.realtime_partials.clone()],
    ));
    let db = ctx.database("d").await?;
    let env = ctx.service_env(&kafka, Some(&db));

    let seconds = (plan.warmup + plan.visible).as_secs_f64();
    let count = (args.rate * seconds) as usize + args.batch;
    let step = Step::start(format!("D: fixture ({count} events)"));
    let events = fixture::generate(args.seed + 2, salt(&ctx.run, 3), args.rate, count);
    let batches = Batches::build(&events, args.batch)?;
    let probes: Vec<Vec<Uuid>> = events
        .chunks(args.batch)
        .map(|chunk| probe_indices(chunk.len()).into_iter().map(|i| chunk[i].event_id).collect())
        .collect();
    drop(events);
    step.ok("");

    let WritePathServices { gateway, processor, batch_url: url } =
        start_write_path(ctx.layout, &env, "bench-pipeline-d", "bench pipeline D").await?;
    let http = ctx
        .gateway_client()?
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(IN_FLIGHT + 4)
        .build()
        .context("building the HTTP client")?;

    let step = Step::start(format!(
        "D: {} events/s for {} s ({} s warm-up), probing 2 events per batch",
        args.rate,
        plan.visible.as_secs(),
        plan.warmup.as_secs()
    ));
    let (tx, mut rx) = mpsc::unbounded_channel::<Sent>();
    let interval = Duration::from_secs_f64(args.batch as f64 / args.rate);
    let started = Instant::now();
    let measure_from = started + plan.warmup;
    let send_until = measure_from + plan.visible;
    let sender = {
        let (http, url, tx) = (http.clone(), url.clone(), tx);
        let bodies = Arc::new(batches.bodies);
        let probes = Arc::new(probes);
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..bodies.len() {
                tick.tick().await;
                if Instant::now() >= send_until {
                    break;
                }
                let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
                let (http, url, bodies, probes, tx) =
                    (http.clone(), url.clone(), bodies.clone(), probes.clone(), tx.clone());
                let measured = Instant::now() >= measure_from;
                tasks.spawn(async move {
                    let _permit = permit;
                    let answer =
                        http.post(&url).header("content-type", "application/json").body(bodies[i].clone()).send().await;
                    let outcome = match answer {
                        Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                            r.bytes().await.ok().and_then(|b| accepted_of(&b))
                        }
                        _ => None,
                    };
                    let returned = Instant::now();
                    if outcome.is_some() {
                        for id in &probes[i] {
                            let _ = tx.send(Sent { id: *id, returned, measured });
                        }
                    }
                    outcome
                });
            }
            let mut accepted = 0usize;
            let mut failed = 0usize;
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok(Some(n)) => accepted += n,
                    _ => failed += 1,
                }
            }
            (accepted, failed, started.elapsed().as_secs_f64())
        })
    };

    // The poller: every POLL, the outstanding probes.
    let client = db.client();
    let meter = Meter::start(ctx.pids(&[&gateway, &processor]));
    let mut sent: Vec<(Instant, bool)> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    let mut seen: HashMap<usize, Instant> = HashMap::new();
    let mut poll = tokio::time::interval(POLL);
    let mut poll_ms = Vec::new();
    let mut first_error: Option<String> = None;
    loop {
        poll.tick().await;
        while let Ok(probe) = rx.try_recv() {
            index.insert(probe.id, sent.len());
            sent.push((probe.returned, probe.measured));
        }
        let now = Instant::now();
        let pending: Vec<Uuid> = index
            .iter()
            .filter(|(_, i)| !seen.contains_key(*i) && now.duration_since(sent[**i].0) < DEADLINE)
            .map(|(id, _)| *id)
            .collect();
        if pending.is_empty() {
            if sender.is_finished() && rx.is_empty() {
                break;
            }
            continue;
        }
        let asked = Instant::now();
        match client.query(&visible_sql(&pending)).fetch_all::<String>().await {
            Ok(found) => {
                poll_ms.push(asked.elapsed().as_secs_f64() * 1e3);
                for id in found {
                    if let Some(i) = id.parse::<Uuid>().ok().and_then(|id| index.get(&id)) {
                        seen.entry(*i).or_insert(asked);
                    }
                }
            }
            Err(err) => {
                first_error.get_or_insert(format!("{err}"));
            }
        }
    }
    let (accepted, failed, sent_seconds) = sender.await.context("the sender task panicked")?;
    let (samples, lost) = latencies(&sent, &seen);
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&sorted, 0.5), percentile(&sorted, 0.99));
    let achieved = accepted as f64 / sent_seconds.max(1e-9);
    let shown = format!("p50 {} p99 {}", ms(p50.filter(|v| v.is_finite())), ms(p99.filter(|v| v.is_finite())));
    ctx.periods.push(meter.finish("D: POST → queryable".to_string(), shown.clone()));
    ctx.note_peak_rss("ingest-gateway", gateway.pid);
    ctx.note_peak_rss("stream-processor", processor.pid);
    if samples.is_empty() {
        step.fail("no probe measured");
        bail!(
            "no probe was accepted during the measured period ({failed} failed requests{}); read \
             .stack/logs/bench-pipeline-d-ingest-gateway.log",
            first_error.map(|e| format!("; ClickHouse: {e}")).unwrap_or_default()
        );
    }
    step.ok(format!(
        "{shown}, {} probes, {lost} lost; {accepted} events accepted ({achieved:.0}/s incl. warm-up), {failed} requests failed",
        samples.len()
    ));
    let poll_mean = poll_ms.iter().sum::<f64>() / poll_ms.len().max(1) as f64;
    ctx.notes.push(format!(
        "D: {} probes (2 per batch of {}), {lost} not visible within {} s; {accepted} events accepted over {sent_seconds:.0} s \
         ({achieved:.0}/s including the warm-up), {failed} requests failed; a poll every {} ms took {poll_mean:.1} ms on \
         average (a figure overstates by up to one poll).",
        samples.len(),
        args.batch,
        DEADLINE.as_secs(),
        POLL.as_millis()
    ));
    if let Some(err) = first_error {
        ctx.notes.push(format!("D: a poll failed: {err}"));
    }
    let mut c50 = Case::new(P50, Unit::Milliseconds, Goal::None);
    let mut c99 = Case::new(P99, Unit::Milliseconds, Goal::AtMostMs(1000.0));
    c50.ours = p50.filter(|v| v.is_finite()).into_iter().collect();
    c99.ours = p99.into_iter().collect();
    if lost > 0 && !p99.is_some_and(f64::is_finite) {
        c99.ours.clear();
        c99.missing = Some(format!("{lost} probes lost"));
    }
    let finite: Vec<f64> = samples.into_iter().filter(|v| v.is_finite()).collect();
    drop(gateway);
    drop(processor);
    Ok((vec![c50, c99], finite))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_and_queries() {
        assert_eq!(probe_indices(500), vec![0, 250]);
        assert_eq!(probe_indices(1), vec![0]);
        assert!(probe_indices(0).is_empty());
        let id = Uuid::nil();
        assert_eq!(
            visible_sql(&[id]),
            "SELECT toString(event_id) FROM events WHERE event_id IN (toUUID('00000000-0000-0000-0000-000000000000'))"
        );
    }

    #[test]
    fn latencies_skip_the_warm_up_and_count_lost_probes() {
        let t = Instant::now();
        let sent = [(t, false), (t, true), (t, true)];
        let seen = HashMap::from([(0, t + Duration::from_millis(5)), (1, t + Duration::from_millis(250))]);
        let (samples, lost) = latencies(&sent, &seen);
        assert_eq!(lost, 1);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0], 250.0);
        assert!(samples[1].is_infinite(), "a lost probe counts against the p99");
    }
}
