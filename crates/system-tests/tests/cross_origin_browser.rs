//! A web player on another origin, in real headless Chromium driven by
//! playwright-core (`web/tests/cross_origin.mjs`), against the real
//! ingest-gateway and realtime-hub run in-process on topics and a key
//! database of their own. The script serves a player page from an origin of
//! its own (127.0.0.1, another port); from that page it sends events with
//! `fetch` (the ingest key in `X-API-Key`, so a CORS preflight goes first)
//! and with `navigator.sendBeacon` (the key in `?api_key=`), sees a batch
//! with an unknown key refused, and fails to open the hub's `/ws` without a
//! token and, from that foreign origin, with the read token too; a hub
//! started by this harness allowing the page's origin lets the same page
//! open a socket with the token (so the refusals are the hub's, not the
//! page's inability). This test then finds the sent events in the raw topic
//! (exactly once each, the refused batch nowhere) and checks the refused
//! handshakes' answers from that Origin: 401 `missing_credentials` without a
//! token, 403 `origin_not_allowed` with one.
//!
//! Needs `node` (>= 18), `/usr/bin/chromium` (or `CHROMIUM_PATH`) and
//! `npm ci` run in `crates/realtime-hub/web`, like `dashboard_browser.rs`.
#![cfg(test)]

mod browser;
#[path = "../../realtime-hub/tests/common/mod.rs"]
mod common;

use std::{
    collections::HashMap,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use browser::{BrowserTools, read_all, web_dir};
use common::Stack;
use rdkafka::{
    Message as _, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer as _},
    error::KafkaError,
    types::RDKafkaErrorCode,
};
use realtime_hub::HubConfig;
use serde_json::Value;
use service_kit::testing::InProcess;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest as _, http::HeaderValue};

/// The whole script, as a last resort (each of its waits has a 20 s deadline).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);
/// How long the sent events may take to show in the raw topic.
const STORED_WITHIN: Duration = Duration::from_secs(30);

/// What the script reported besides passing.
#[derive(Default)]
struct Reported {
    printed: String,
    page_origin: Option<String>,
    /// Event ids per way of sending: `fetch`, `beacon`, `refused`.
    events: HashMap<String, Vec<String>>,
    /// The hub started for `@allow-origin`.
    allowing_hub: Option<InProcess>,
}

/// Runs the script to its end, answering `@allow-origin <origin>` with a hub
/// whose `http.cors_allowed_origins` is that origin (`hub <url>`).
async fn drive(
    child: &mut tokio::process::Child,
    stack: &Stack,
    reported: &mut Reported,
) -> anyhow::Result<std::process::ExitStatus> {
    let mut stdin = child.stdin.take().context("piped stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("piped stdout")?).lines();
    while let Some(line) = lines.next_line().await? {
        reported.printed.push_str(&line);
        reported.printed.push('\n');
        let line = line.trim();
        if let Some(origin) = line.strip_prefix("@page-origin ") {
            reported.page_origin = Some(origin.to_string());
        } else if let Some(origin) = line.strip_prefix("@allow-origin ") {
            anyhow::ensure!(reported.allowing_hub.is_none(), "@allow-origin twice");
            let mut config = stack.config(HubConfig::default());
            config.http.cors_allowed_origins = vec![origin.to_string()];
            let hub = InProcess::spawn(config, realtime_hub::run);
            hub.wait_ready(Duration::from_secs(30)).await?;
            stdin.write_all(format!("hub {}\n", hub.url("")).as_bytes()).await?;
            reported.allowing_hub = Some(hub);
        } else if let Some(json) = line.strip_prefix("@events ") {
            reported.events = serde_json::from_str(json).with_context(|| format!("@events {json}"))?;
        }
    }
    drop(stdin);
    Ok(child.wait().await?)
}

/// The ingest-gateway as deployed (any origin may call it: its default
/// `http.cors_allowed_origins`), with one worker and the stack's keys, once
/// ready. (`support::start_gateway` replaces the whole `http` section, CORS
/// included.)
async fn start_gateway(stack: &Stack) -> InProcess {
    let defaults = ingest_gateway::Config::default();
    assert!(defaults.http.cors_allowed_origins.iter().any(|origin| origin == "*"), "the gateway allows any origin");
    let config = ingest_gateway::Config {
        http: service_kit::HttpConfig { workers: 1, ..defaults.http.clone() },
        kafka: stack.kafka.clone(),
        postgres: stack.postgres.config.clone(),
        ..defaults
    };
    let gateway = InProcess::spawn(config, ingest_gateway::run);
    gateway.wait_ready(Duration::from_secs(30)).await.expect("ingest-gateway ready");
    gateway
}

/// A `/ws` handshake from a page of `origin` (`None`: not a browser):
/// the answer's status and JSON body (`Null` for a 101).
async fn handshake(hub: &InProcess, token: Option<&str>, origin: Option<&str>) -> (u16, Value) {
    let url = match token {
        Some(token) => format!("ws://{}/ws?token={token}", hub.addr),
        None => format!("ws://{}/ws", hub.addr),
    };
    let mut request = url.into_client_request().expect("a websocket request");
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", HeaderValue::from_str(origin).expect("an origin is ascii"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut socket, response)) => {
            let _ = socket.close(None).await;
            (response.status().as_u16(), Value::Null)
        }
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.into_body().unwrap_or_default();
            (
                status,
                serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into())),
            )
        }
        Err(error) => panic!("/ws handshake (origin {origin:?}): {error}"),
    }
}

/// Every message of the raw topic up to its end, once `wanted` are all there
/// (or `STORED_WITHIN` passed): how often each event id was stored.
fn stored_event_ids(stack: &Stack, wanted: &[String]) -> anyhow::Result<HashMap<String, usize>> {
    let topic = &stack.topics.raw_events;
    let consumer: BaseConsumer = service_kit::deps::kafka::client_config(&stack.kafka)
        .set("group.id", format!("cross-origin-browser-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    let mut counts: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + STORED_WITHIN;
    loop {
        // Read every partition from its beginning to its current end.
        let mut assignment = TopicPartitionList::new();
        for partition in 0..common::PARTITIONS {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        counts.clear();
        let mut at_end = 0;
        while at_end < common::PARTITIONS {
            anyhow::ensure!(
                Instant::now() < deadline,
                "reading {topic}: no end of every partition within {STORED_WITHIN:?}"
            );
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => at_end += 1,
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => {}
                Some(Err(error)) => anyhow::bail!("reading {topic}: {error}"),
                Some(Ok(message)) => {
                    let event: Value = serde_json::from_slice(message.payload().unwrap_or_default())?;
                    let id = event["event_id"].as_str().context("a raw event without event_id")?;
                    *counts.entry(id.to_string()).or_default() += 1;
                }
            }
        }
        if wanted.iter().all(|id| counts.contains_key(id)) || Instant::now() >= deadline {
            return Ok(counts);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_another_origin_sends_events_and_cannot_open_the_feed() {
    let chromium = BrowserTools::find().unwrap_or_else(|why| panic!("{why}")).chromium;
    let stack = Stack::new().await;
    let gateway = start_gateway(&stack).await;
    let hub = stack.start_hub(HubConfig::default()).await;

    let script = web_dir().join("tests/cross_origin.mjs");
    let mut node = tokio::process::Command::new("node");
    node.arg(&script)
        .current_dir(web_dir())
        .env("GATEWAY_URL", gateway.url(""))
        .env("HUB_URL", hub.url(""))
        .env("INGEST_API_KEY", &stack.keys.ingest)
        .env("HUB_TOKEN", &stack.keys.read)
        .env("CHROMIUM_PATH", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = node.spawn().unwrap_or_else(|error| panic!("cannot run node {}: {error}", script.display()));
    let stderr = tokio::spawn(read_all(child.stderr.take().expect("piped stderr")));
    let mut reported = Reported::default();
    let outcome = tokio::time::timeout(SCRIPT_TIMEOUT, drive(&mut child, &stack, &mut reported)).await;
    if !matches!(outcome, Ok(Ok(_))) {
        let _ = child.kill().await;
    }
    let stderr = stderr.await.unwrap_or_default();
    eprintln!("--- node {} stdout:\n{}--- stderr:\n{stderr}---", script.display(), reported.printed);

    // The answers behind the refusals the browser saw (it does not show them
    // to the page), for the page's Origin; and the same token without an
    // Origin (not a browser) or to the hub allowing it is let in.
    let page_origin = reported.page_origin.clone().expect("the script printed its page's origin");
    let without_token = handshake(&hub, None, Some(&page_origin)).await;
    let foreign = handshake(&hub, Some(&stack.keys.read), Some(&page_origin)).await;
    let not_a_browser = handshake(&hub, Some(&stack.keys.read), None).await;
    let allowed = match &reported.allowing_hub {
        Some(allowing) => Some(handshake(allowing, Some(&stack.keys.read), Some(&page_origin)).await),
        None => None,
    };

    let wanted: Vec<String> =
        ["fetch", "beacon"].iter().flat_map(|way| reported.events.get(*way).cloned().unwrap_or_default()).collect();
    let stored = if wanted.is_empty() {
        None
    } else {
        let stack = &stack;
        let wanted = wanted.clone();
        Some(tokio::task::block_in_place(|| stored_event_ids(stack, &wanted)))
    };

    if let Some(allowing) = reported.allowing_hub.take() {
        allowing.stop().await.unwrap();
    }
    hub.stop().await.unwrap();
    gateway.stop().await.unwrap();
    stack.cleanup().await;

    match outcome {
        Ok(Ok(status)) => assert!(status.success(), "the cross-origin script failed ({status}):\n{stderr}"),
        Ok(Err(error)) => panic!("driving node {}: {error:#}\nstderr:\n{stderr}", script.display()),
        Err(_) => panic!("node {} still running after {SCRIPT_TIMEOUT:?}; killed\nstderr:\n{stderr}", script.display()),
    }

    assert_eq!(without_token.0, 401, "no token from {page_origin}: {}", without_token.1);
    assert_eq!(without_token.1["error"], "missing_credentials", "{}", without_token.1);
    assert_eq!(foreign.0, 403, "the read token from {page_origin}: {}", foreign.1);
    assert_eq!(foreign.1["error"], "origin_not_allowed", "{}", foreign.1);
    assert_eq!(not_a_browser.0, 101, "the read token without an Origin: {}", not_a_browser.1);
    let allowed = allowed.expect("the script asked for a hub allowing its origin");
    assert_eq!(allowed.0, 101, "the read token from {page_origin}, allowed: {}", allowed.1);

    for way in ["fetch", "beacon", "refused"] {
        let ids = reported.events.get(way).map_or(0, Vec::len);
        assert!(ids > 0, "the script reported no {way} events: {:?}", reported.events);
    }
    let stored = stored.expect("events to look for").expect("reading the raw topic");
    for way in ["fetch", "beacon"] {
        for id in &reported.events[way] {
            assert_eq!(stored.get(id), Some(&1), "the {way} event {id} is not stored exactly once in the raw topic");
        }
    }
    for id in &reported.events["refused"] {
        assert!(!stored.contains_key(id), "the event {id} sent with an unknown key was stored");
    }
}
