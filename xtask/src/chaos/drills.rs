//! The drills: what each breaks, and how it is broken and healed.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use loadgen::CancellationToken;
use serde_json::Value;

use super::{
    Ctx,
    stack::SERVICES,
    traffic::{self, LiveView, Traffic},
    verify,
};
use crate::servers::{self, Managed, Server, cluster::Member};

/// What a drill does to the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of one of the five services, started again after `--down`.
    Kill(&'static str),
    /// One of the local stack's servers stopped for `--outage`, then started again.
    Stop(Server),
    /// A batch with one row a current ClickHouse refuses for good (code 252),
    /// through a fault-injecting proxy in front of ClickHouse 18.16.
    Poison,
    /// One session sending `--hot-factor` times a partition's share of the load.
    HotKey,
    /// A member of `up --cluster` killed (SIGKILL; ZooKeeper stopped) for
    /// `--outage`, then started again.
    Member(Member),
}

#[derive(Debug, Clone, Copy)]
pub struct Drill {
    pub name: &'static str,
    pub fault: Fault,
    /// One line for `--list`.
    pub about: &'static str,
}

/// Every drill, in the order the suite runs them.
pub fn all() -> Vec<Drill> {
    let mut drills: Vec<Drill> = SERVICES
        .iter()
        .map(|&service| Drill {
            name: kill_name(service),
            fault: Fault::Kill(service),
            about: "kill -9 mid-load, started again after --down; clients retry",
        })
        .collect();
    drills.extend([
        Drill {
            name: "poison-batch",
            fault: Fault::Poison,
            about: "one row ClickHouse refuses (code 252): that row to the DLQ, the rest stored",
        },
        Drill {
            name: "hot-key",
            fault: Fault::HotKey,
            about: "one session floods its partition at 10x the others; latency per partition reported",
        },
        Drill {
            name: "stop-kafka",
            fault: Fault::Stop(Server::Kafka),
            about: "Kafka stopped for --outage: the gateway answers 503, clients retry",
        },
        Drill {
            name: "stop-clickhouse",
            fault: Fault::Stop(Server::ClickHouse),
            about: "ClickHouse stopped for --outage: the processor pauses and catches up",
        },
        Drill {
            name: "stop-postgres",
            fault: Fault::Stop(Server::Postgres),
            about: "PostgreSQL stopped for --outage: aggregation pauses, metrics still answer",
        },
        Drill {
            name: "stop-redis",
            fault: Fault::Stop(Server::Redis),
            about: "Redis stopped: query-api stays ready, answers exact while it is down",
        },
    ]);
    drills
}

/// The drills of `cargo xtask chaos --cluster`, on the servers of `cargo
/// xtask up --cluster`.
pub fn cluster_all() -> Vec<Drill> {
    vec![
        Drill {
            name: "kill-kafka-broker",
            fault: Fault::Member(Member::Kafka(1)),
            about: "kafka-2 killed for --outage: producers and consumers go on with the other two brokers",
        },
        Drill {
            name: "kill-clickhouse-replica",
            fault: Fault::Member(Member::ClickHouse(2)),
            about: "clickhouse-s2r1 killed for --outage: inserts go to s2r2, queries answer; s2r1 catches up after",
        },
        Drill {
            name: "stop-zookeeper",
            fault: Fault::Member(Member::ZooKeeper),
            about: "ZooKeeper stopped for --outage: replicated inserts fail, the processor retries and resumes",
        },
    ]
}

fn kill_name(service: &str) -> &'static str {
    match service {
        "ingest-gateway" => "kill-ingest-gateway",
        "stream-processor" => "kill-stream-processor",
        "aggregator-cron" => "kill-aggregator-cron",
        "query-api" => "kill-query-api",
        _ => "kill-realtime-hub",
    }
}

impl Drill {
    /// Whether it stops one of the shared servers (everyone using the local stack notices).
    pub fn stops_a_server(&self) -> bool {
        matches!(self.fault, Fault::Stop(_) | Fault::Member(_))
    }
}

/// What happened while the fault was on.
#[derive(Debug, Default)]
pub struct Exercised {
    /// When the fault ended (the service or server was started again, the flood stopped).
    pub healed_at: Option<Instant>,
    pub notes: Vec<String>,
    pub problems: Vec<String>,
    /// Accepted events that must end in the dead-letter topic, not in storage.
    pub dead_letters: BTreeSet<String>,
    /// The hot session's flood window (epoch ms), for the latency report.
    pub flood: Option<(String, i64, i64)>,
}

/// Sets up what the drill needs before its traffic starts.
pub async fn prepare(ctx: &mut Ctx, drill: &Drill) -> Result<()> {
    if drill.fault == Fault::Poison {
        let marker = poison_marker(&ctx.stack.run);
        let proxy =
            clickhouse_faults::ClickHouseFaults::refusing_rows_containing(&ctx.stack.clickhouse.url, marker.as_bytes())
                .context("starting the fault-injecting ClickHouse proxy")?;
        ctx.stack.stop_service("stream-processor");
        ctx.stack.set_extra_env("stream-processor", vec![("CLICKHOUSE_URL".to_string(), proxy.url().to_string())]);
        ctx.proxy = Some(proxy);
        ctx.stack.start_service("stream-processor").await?;
    }
    Ok(())
}

/// Undoes [`prepare`].
pub async fn restore(ctx: &mut Ctx, drill: &Drill) -> Result<()> {
    if drill.fault == Fault::Poison {
        ctx.stack.stop_service("stream-processor");
        ctx.stack.set_extra_env("stream-processor", Vec::new());
        ctx.stack.start_service("stream-processor").await?;
        ctx.proxy = None;
    }
    Ok(())
}

/// The bytes the proxy looks for: in the one refused event only (its `player`).
pub fn poison_marker(run: &str) -> String {
    format!("poison-marker-{run}")
}

/// Breaks the system under `traffic`, waits, heals it.
pub async fn exercise(ctx: &mut Ctx, drill: &Drill, traffic: &mut Traffic) -> Result<Exercised> {
    let mut out = Exercised::default();
    match drill.fault {
        Fault::Kill(service) => {
            let pid = ctx.stack.kill(service)?;
            out.notes.push(format!("killed {service} (pid {pid}) with SIGKILL"));
            tokio::time::sleep(ctx.settings.down).await;
            out.healed_at = Some(Instant::now());
            ctx.stack.start_service(service).await?;
        }
        Fault::Stop(server) => stop_server(ctx, server, traffic, &mut out).await?,
        Fault::Member(member) => stop_member(ctx, member, traffic, &mut out).await?,
        Fault::Poison => {
            let mut view =
                LiveView::new(format!("chaos-view-{}", ctx.stack.run), format!("{}view", traffic.video_prefix));
            let marker = poison_marker(&ctx.stack.run);
            let batch: Vec<Value> = (0..20).map(|i| view.next(if i == 10 { &marker } else { "chaos" })).collect();
            let marked = batch[10]["event_id"].as_str().context("an event id")?.to_string();
            let accepted = traffic::post_until_accepted(
                &ctx.http,
                &ctx.stack.gateway_url(),
                &ctx.stack.keys.ingest,
                &batch,
                Duration::from_secs(60),
            )
            .await?;
            traffic.extra().lock().expect("extra lock").extend(accepted);
            out.notes.push(format!("a batch of 20 events with one marked row ({marked}) accepted"));
            out.dead_letters.insert(marked);
            out.healed_at = Some(Instant::now());
        }
        Fault::HotKey => {
            let partitions = ingest_gateway::IngestConfig::default().raw_topic_partitions.max(1);
            let rate = ctx.settings.hot_factor * ctx.settings.load.rate / f64::from(partitions);
            let session = format!("chaos-hot-{}", ctx.stack.run);
            let view = LiveView::new(session.clone(), format!("{}hot", traffic.video_prefix));
            let stop = CancellationToken::new();
            let from = loadgen::epoch_ms();
            let flood = tokio::spawn(traffic::flood(
                ctx.http.clone(),
                ctx.stack.gateway_url(),
                ctx.stack.keys.ingest.clone(),
                view,
                rate,
                traffic.extra(),
                stop.clone(),
            ));
            tokio::time::sleep(ctx.settings.hot_for).await;
            stop.cancel();
            let sent = flood.await.context("the hot session's client")??;
            let to = loadgen::epoch_ms();
            out.notes.push(format!(
                "session {session} sent {sent} events in {:.0} s ({rate:.0}/s, {}x a partition's share of {}/s over {partitions})",
                (to - from) as f64 / 1000.0,
                ctx.settings.hot_factor,
                ctx.settings.load.rate
            ));
            out.flood = Some((session, from, to));
            out.healed_at = Some(Instant::now());
        }
    }
    Ok(out)
}

async fn stop_server(ctx: &mut Ctx, server: Server, traffic: &mut Traffic, out: &mut Exercised) -> Result<()> {
    let Some(pid) = servers::stop(&ctx.layout, server)? else {
        anyhow::bail!(
            "{} was not started by `cargo xtask up` (no live pid file): this drill stops only servers xtask runs",
            server.name()
        );
    };
    let stopped = Instant::now();
    out.notes.push(format!("stopped {} (pid {pid}) for {:?}", server.name(), ctx.settings.outage));
    let probe_video = format!("{}video_0001", traffic.video_prefix);
    match server {
        Server::Postgres | Server::Redis => {
            // Half-way through: query-api stays ready and a metric endpoint answers.
            tokio::time::sleep(ctx.settings.outage / 2).await;
            degraded_answers(ctx, server, &probe_video, out).await;
        }
        _ => {}
    }
    if server == Server::Redis {
        // Exact while Redis is down: stop the load, let it be stored, compare.
        tokio::time::sleep(ctx.settings.outage.saturating_sub(stopped.elapsed())).await;
        traffic.stop().await?;
        let accepted = traffic.accepted()?;
        let expected: BTreeSet<String> = ids(&accepted);
        let clickhouse = ctx.stack.clickhouse.client();
        let (caught, _, waiting) =
            verify::wait_caught_up(&clickhouse, &traffic.video_prefix, &expected, ctx.settings.catch_up, || async {
                Vec::new()
            })
            .await;
        if caught.is_none() {
            out.problems.push(format!("with Redis down, not every accepted event was stored in time: {waiting:?}"));
        }
        let (videos, differences) =
            verify::compare_with_oracle(&ctx.http, &ctx.stack.query_api_url(), &ctx.stack.keys.read, &accepted).await?;
        out.notes.push(format!(
            "with Redis down: {videos} videos compared with the oracle, {} differences",
            differences.len()
        ));
        out.problems.extend(differences.into_iter().take(5).map(|d| format!("with Redis down: {d}")));
    } else {
        tokio::time::sleep(ctx.settings.outage.saturating_sub(stopped.elapsed())).await;
    }
    out.healed_at = Some(Instant::now());
    let mut started = Vec::new();
    servers::start_missing(&ctx.layout, &[server], &mut started).await?;
    Ok(())
}

/// A member of the cluster down for `--outage` under load: a broker or a
/// ClickHouse server killed, ZooKeeper stopped (SIGTERM: its clients see
/// the same). Half-way, a video's metrics must answer; after a ClickHouse
/// server's restart, its replicas must have caught up (empty replication
/// queue) within `--catch-up`.
async fn stop_member(ctx: &mut Ctx, member: Member, traffic: &mut Traffic, out: &mut Exercised) -> Result<()> {
    let cluster_layout = Member::layout(&ctx.layout);
    let Some(pid) = member.live_pid(&cluster_layout) else {
        anyhow::bail!("{} was not started by `cargo xtask up --cluster` (no live pid file)", member.name());
    };
    let signal = match member {
        Member::ZooKeeper => libc::SIGTERM,
        _ => libc::SIGKILL,
    };
    local_stack::process::log_marker(&cluster_layout.log(member.name()), &format!("chaos: signal {signal} to {pid}"));
    local_stack::process::terminate(pid, signal, Duration::from_secs(10))?;
    let stopped = Instant::now();
    out.notes.push(format!("{} (pid {pid}) down for {:?} (signal {signal})", member.name(), ctx.settings.outage));
    tokio::time::sleep(ctx.settings.outage / 2).await;
    let video = format!("{}video_0001", traffic.video_prefix);
    match video_answers(ctx, &video).await {
        Ok(()) => out.notes.push(format!("with {} down, GET /api/metrics/video/{video} answered 200", member.name())),
        Err(err) => {
            out.problems.push(format!("with {} down, a video's metrics did not answer: {err:#}", member.name()))
        }
    }
    tokio::time::sleep(ctx.settings.outage.saturating_sub(stopped.elapsed())).await;
    out.healed_at = Some(Instant::now());
    let mut started = Vec::new();
    servers::start_missing(&cluster_layout, &[member], &mut started).await?;
    if let Member::ClickHouse(node) = member {
        let url = local_stack::cluster::Ports::STANDARD.clickhouse_url(node);
        let sql = format!(
            "SELECT toUInt64(sum(queue_size)), toUInt64(max(absolute_delay)) FROM system.replicas WHERE database = '{}'",
            ctx.stack.clickhouse.database
        );
        let began = Instant::now();
        match local_stack::probe::clickhouse_until(&url, &sql, "0\t0", ctx.settings.catch_up).await {
            Ok(()) => out.notes.push(format!(
                "{} caught up (empty replication queue) {:.0} s after its start",
                member.name(),
                began.elapsed().as_secs_f64()
            )),
            Err(err) => out.problems.push(format!(
                "{} did not catch up within {:?}: {err:#}",
                member.name(),
                ctx.settings.catch_up
            )),
        }
    }
    Ok(())
}

/// `GET /api/metrics/video/{video}` answers 200.
async fn video_answers(ctx: &Ctx, video: &str) -> Result<()> {
    let url = format!("{}/api/metrics/video/{video}", ctx.stack.query_api_url());
    let answer = ctx.http.get(&url).bearer_auth(&ctx.stack.keys.read).send().await?;
    anyhow::ensure!(answer.status().is_success(), "{} {}", answer.status(), answer.text().await.unwrap_or_default());
    Ok(())
}

/// query-api's `/ready` and one metric endpoint while `server` is down.
async fn degraded_answers(ctx: &Ctx, server: Server, video: &str, out: &mut Exercised) {
    let ops = ctx.stack.port("query-api");
    match local_stack::probe::ready(ops).await {
        Ok(_) => out.notes.push(format!("query-api ready with {} down", server.name())),
        Err(err) => out.problems.push(format!("query-api not ready with {} down: {err:#}", server.name())),
    }
    let today = chrono::Utc::now().date_naive();
    let url = format!("{}/api/metrics/video/{video}?startDate={today}&endDate={today}", ctx.stack.query_api_url());
    match ctx.http.get(&url).bearer_auth(&ctx.stack.keys.read).send().await {
        Ok(answer) if answer.status().is_success() => {
            out.notes.push(format!("video metrics answered {} with {} down", answer.status(), server.name()))
        }
        Ok(answer) => out.problems.push(format!(
            "video metrics answered {} with {} down: {}",
            answer.status(),
            server.name(),
            answer.text().await.unwrap_or_default()
        )),
        Err(err) => out.problems.push(format!("video metrics with {} down: {err}", server.name())),
    }
}

/// The `event_id`s of `events`.
pub fn ids(events: &[Value]) -> BTreeSet<String> {
    events.iter().filter_map(|e| e["event_id"].as_str().map(str::to_owned)).collect()
}

/// Dead letters in the run's topic, as (event id, reason, detail).
pub async fn dead_letters(ctx: &Ctx) -> Result<Vec<(String, String, String)>> {
    let (kafka, topic) = (ctx.stack.kafka.clone(), ctx.stack.topics().dead_letters);
    let letters = tokio::task::spawn_blocking(move || dlq::read(&kafka, &topic, &dlq::Selection::default()))
        .await
        .context("the dead-letter reader")??;
    Ok(letters
        .into_iter()
        .map(|letter| {
            let id = serde_json::from_slice::<Value>(&letter.payload)
                .ok()
                .and_then(|v| v["event_id"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("<unreadable at offset {}>", letter.offset));
            (id, letter.reason, letter.detail)
        })
        .collect())
}

/// Whether a current ClickHouse (chDB) refuses our `events` INSERT spanning
/// 120 monthly partitions with code 252, the refusal the proxy imitates.
/// `None` when chDB cannot be run here.
pub fn chdb_refuses_120_months(root: &std::path::Path) -> Option<Result<(), String>> {
    let insert = "INSERT INTO events (event_id, event_type, session_id, video_id, timestamp, timestamp_ms) \
                  SELECT generateUUIDv4(), 'video_progress', 's', 'v', toDateTime('2000-01-01 00:00:00') + toIntervalMonth(number), 0 \
                  FROM numbers(120)";
    let file = std::env::temp_dir().join(format!("chaos-chdb-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, serde_json::to_string(&[insert]).ok()?).ok()?;
    let output = std::process::Command::new("python3")
        .arg(root.join("schemas/check_chdb.py"))
        .arg("--queries-json")
        .arg(&file)
        .output();
    let _ = std::fs::remove_file(&file);
    let output = output.ok()?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if text.contains("No module named") {
        return None;
    }
    if output.status.success() {
        return Some(Err("chDB accepted the 120-month block".to_string()));
    }
    if text.contains("Code: 252") && text.contains(&clickhouse_faults::PARTITION_LIMIT_EXCEPTION[..60]) {
        Some(Ok(()))
    } else {
        Some(Err(format!("chDB refused it otherwise: {}", text.chars().take(400).collect::<String>())))
    }
}
