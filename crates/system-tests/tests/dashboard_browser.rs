//! The dashboard in a real browser: headless Chromium driven by playwright-core
//! (`web/tests/dashboard.mjs`) against the real ingest-gateway, stream-processor
//! and realtime-hub, run in-process on topics, a ClickHouse database and a
//! key database of their own (the script gets a `read` and an `ingest` key).
//! The script opens the dashboard without a token (the sign-in form, no
//! WebSocket), is refused with an unknown token and with the ingest key (no
//! `read` scope), signs in, stays signed in across a reload, signs in a fresh
//! tab through `#token=`; then posts events to the gateway (with the ingest
//! key), waits until the totals, the top videos and the feed show them,
//! filters the feed by video, has this harness stop the hub (the page shows
//! it is reconnecting, with a growing backoff) and start a new one on the
//! same address (the page reconnects by itself, with the same figures and
//! its filter), saves a full-page screenshot to `target/dashboard.png`, and
//! finally has this harness revoke its token and restart the hub (the page
//! forgets the token and asks for another).
//!
//! Needs `node` (>= 18), `/usr/bin/chromium` (or `CHROMIUM_PATH`) and
//! `npm ci` run in `crates/realtime-hub/web`; `.ci/run` installs all three. A
//! missing one fails the test with the command that fixes it.
#![cfg(test)]

// The hub's own test helpers (topics, WebSocket client, expected figures).
mod browser;
#[path = "../../realtime-hub/tests/common/mod.rs"]
mod common;
mod support;

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use browser::{BrowserTools, read_all, target_dir, web_dir};
use common::Stack;
use realtime_hub::HubConfig;
use service_kit::testing::{InProcess, TestClickHouse};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// The whole script, as a last resort (each of its waits has a 20 s deadline).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// Runs the script to its end, carrying out its requests to the harness: a
/// stdout line `@stop-hub` stops the hub (answered `stopped` on its stdin),
/// `@start-hub` starts a new one on the same address (answered `started`),
/// `@revoke-token` stops the hub, revokes the `read` key and starts a new
/// hub on the same address (answered `revoked`; a new hub, so the page's
/// socket closes and its handshakes meet the revocation at once).
/// Returns the exit status and everything the script printed.
async fn drive(
    child: &mut tokio::process::Child,
    stack: &Stack,
    hub: &mut Option<InProcess>,
) -> anyhow::Result<(std::process::ExitStatus, String)> {
    let mut stdin = child.stdin.take().context("piped stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("piped stdout")?).lines();
    let mut printed = String::new();
    let mut addr = None;
    while let Some(line) = lines.next_line().await? {
        printed.push_str(&line);
        printed.push('\n');
        match line.trim() {
            "@stop-hub" => {
                let running = hub.take().context("@stop-hub: no hub is running")?;
                addr = Some(running.addr);
                running.stop().await?;
                stdin.write_all(b"stopped\n").await?;
            }
            "@start-hub" => {
                anyhow::ensure!(hub.is_none(), "@start-hub: a hub is running already");
                let addr = addr.context("@start-hub before @stop-hub")?;
                let listener = std::net::TcpListener::bind(addr).with_context(|| format!("bind {addr} again"))?;
                *hub = Some(stack.start_hub_on(listener, browser_hub_config()).await);
                stdin.write_all(b"started\n").await?;
            }
            "@revoke-token" => {
                let running = hub.take().context("@revoke-token: no hub is running")?;
                let addr = running.addr;
                running.stop().await?;
                let client = stack.postgres.pool()?.get().await?;
                let revoked = service_kit::auth::revoke_key(&client, READ_KEY_NAME).await?;
                anyhow::ensure!(
                    revoked == 1,
                    "@revoke-token: {revoked} keys named {READ_KEY_NAME} revoked, expected 1"
                );
                let listener = std::net::TcpListener::bind(addr).with_context(|| format!("bind {addr} again"))?;
                *hub = Some(stack.start_hub_on(listener, browser_hub_config()).await);
                stdin.write_all(b"revoked\n").await?;
            }
            _ => {}
        }
    }
    drop(stdin);
    Ok((child.wait().await?, printed))
}

/// The name `TestPostgres::keys` gives the `read` key (`stack.keys.read`).
const READ_KEY_NAME: &str = "test-read";

/// No feed sampling: the script checks that every posted event is shown.
fn browser_hub_config() -> HubConfig {
    HubConfig { client_max_events_per_sec: 0, ..HubConfig::default() }
}

/// What a PNG's header says: `(width, height)`, or why it is not a PNG.
fn png_size(bytes: &[u8]) -> Result<(u32, u32), String> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.len() < 24 || &bytes[..8] != SIGNATURE || &bytes[12..16] != b"IHDR" {
        return Err(format!("not a PNG ({} bytes, starts {:?})", bytes.len(), &bytes[..bytes.len().min(16)]));
    }
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    Ok((be(16), be(20)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_posted_events_in_headless_chromium() {
    let tools = BrowserTools::find().unwrap_or_else(|why| panic!("{why}"));
    let screenshot = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);

    let stack = Stack::new().await;
    let db = TestClickHouse::create().await.unwrap();
    let gateway = support::start_gateway(&stack.kafka, &stack.postgres.config, 1).await;
    let processor = support::start_realtime_processor(&stack.kafka, &db.config).await;
    let hub = stack.start_hub(browser_hub_config()).await;

    let script = web_dir().join("tests/dashboard.mjs");
    let started = Instant::now();
    let mut node = tokio::process::Command::new("node");
    node.arg(&script)
        .current_dir(web_dir())
        .env("HUB_URL", hub.url(""))
        .env("GATEWAY_URL", gateway.url(""))
        .env("HUB_TOKEN", &stack.keys.read)
        .env("INGEST_API_KEY", &stack.keys.ingest)
        .env("CHROMIUM_PATH", &tools.chromium)
        .env("SCREENSHOT_PATH", &screenshot)
        .env("HUB_RESTART", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = node.spawn().unwrap_or_else(|error| panic!("cannot run node {}: {error}", script.display()));
    let stderr = tokio::spawn(read_all(child.stderr.take().expect("piped stderr")));
    let mut hub = Some(hub);
    let outcome = tokio::time::timeout(SCRIPT_TIMEOUT, drive(&mut child, &stack, &mut hub)).await;
    let took = started.elapsed();

    if let Some(hub) = hub {
        hub.stop().await.unwrap();
    }
    processor.stop().await.unwrap();
    gateway.stop().await.unwrap();
    let dead_letters = stack.topics.dead_letters.clone();
    let _ = service_kit::deps::kafka::delete_topics(&stack.kafka, &[&dead_letters]).await;
    stack.cleanup().await;
    db.drop().await.unwrap();

    if !matches!(outcome, Ok(Ok(_))) {
        let _ = child.kill().await;
    }
    let stderr = stderr.await.unwrap_or_default();
    let (status, stdout) = match outcome {
        Ok(Ok(done)) => done,
        Ok(Err(error)) => panic!("driving node {}: {error:#}\nstderr:\n{stderr}", script.display()),
        Err(_) => panic!("node {} still running after {SCRIPT_TIMEOUT:?}; killed\nstderr:\n{stderr}", script.display()),
    };
    eprintln!("--- node {} ({took:.1?}) stdout:\n{stdout}--- stderr:\n{stderr}---", script.display());
    assert!(status.success(), "the dashboard script failed ({status}):\n{stderr}");

    let bytes =
        std::fs::read(&screenshot).unwrap_or_else(|error| panic!("no screenshot at {}: {error}", screenshot.display()));
    let (width, height) = png_size(&bytes).unwrap_or_else(|why| panic!("{}: {why}", screenshot.display()));
    assert!(
        bytes.len() > 20_000 && width >= 1_000 && height >= 1_000,
        "{} looks empty: {} bytes, {width}x{height}",
        screenshot.display(),
        bytes.len()
    );
}
