//! The dashboard in a real browser: headless Chromium driven by playwright-core
//! (`web/tests/dashboard.mjs`) against the real ingest-gateway, stream-processor
//! and realtime-hub, run in-process on topics and a ClickHouse database of
//! their own. The script opens the dashboard, posts events to the gateway,
//! waits until the totals, the top videos and the feed show them, filters the
//! feed by video, and saves a full-page screenshot to `target/dashboard.png`.
//!
//! Needs `node` (>= 18), `/usr/bin/chromium` (or `CHROMIUM_PATH`) and
//! `npm ci` run in `crates/realtime-hub/web`; `.ci/run` installs all three. A
//! missing one fails the test with the command that fixes it.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use common::Stack;
use realtime_hub::HubConfig;
use service_kit::testing::TestClickHouse;

/// The whole script, as a last resort (each of its waits has a 20 s deadline).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// The workspace's target directory: `CARGO_TARGET_DIR` (relative to the
/// workspace root when relative), else `<workspace>/target`.
fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    match std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

/// Node, Chromium and playwright-core, or why the test cannot run and how to fix it.
struct BrowserTools {
    chromium: PathBuf,
}

impl BrowserTools {
    fn find() -> Result<Self, String> {
        let fix = "`bash .ci/run` installs them; by hand, as root: \
                   `apt-get install -y nodejs npm chromium && (cd crates/realtime-hub/web && npm ci)`";
        let mut problems = Vec::new();
        match std::process::Command::new("node").arg("--version").output() {
            Ok(output) if output.status.success() => {
                let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
                let major: Option<u32> = version.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok());
                if major.is_none_or(|major| major < 18) {
                    problems.push(format!("node {version} is too old: playwright-core needs node >= 18"));
                }
            }
            Ok(output) => {
                problems.push(format!("`node --version` failed: {}", String::from_utf8_lossy(&output.stderr)))
            }
            Err(error) => problems.push(format!("`node` cannot be run ({error}): install Debian's `nodejs`")),
        }
        let chromium = std::env::var_os("CHROMIUM_PATH")
            .filter(|path| !path.is_empty())
            .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
        if !chromium.is_file() {
            problems.push(format!("no Chromium at {}: install Debian's `chromium`", chromium.display()));
        }
        let playwright = web_dir().join("node_modules/playwright-core/package.json");
        if !playwright.is_file() {
            problems.push(format!(
                "playwright-core is not installed ({} missing): run `npm ci` in {}",
                playwright.display(),
                web_dir().display()
            ));
        }
        if problems.is_empty() {
            Ok(Self { chromium })
        } else {
            Err(format!("the browser test cannot run:\n  - {}\n{fix}", problems.join("\n  - ")))
        }
    }
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
    let gateway = common::start_gateway(&stack.kafka).await;
    let processor = common::start_processor(&stack.kafka, &db.config).await;
    // No feed sampling: the script checks that every posted event is shown.
    let hub = stack.start_hub(HubConfig { client_max_events_per_sec: 0, ..HubConfig::default() }).await;

    let script = web_dir().join("tests/dashboard.mjs");
    let started = Instant::now();
    let mut node = tokio::process::Command::new("node");
    node.arg(&script)
        .current_dir(web_dir())
        .env("HUB_URL", hub.url(""))
        .env("GATEWAY_URL", gateway.url(""))
        .env("CHROMIUM_PATH", &tools.chromium)
        .env("SCREENSHOT_PATH", &screenshot)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let outcome = tokio::time::timeout(SCRIPT_TIMEOUT, node.output()).await;
    let took = started.elapsed();

    hub.stop().await.unwrap();
    processor.stop().await.unwrap();
    gateway.stop().await.unwrap();
    let dead_letters = stack.topics.dead_letters.clone();
    let _ = service_kit::deps::kafka::delete_topics(&stack.kafka, &[&dead_letters]).await;
    stack.cleanup().await;
    db.drop().await.unwrap();

    let output = match outcome {
        Ok(output) => output.unwrap_or_else(|error| panic!("cannot run node {}: {error}", script.display())),
        Err(_) => panic!("node {} still running after {SCRIPT_TIMEOUT:?}; killed", script.display()),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("--- node {} ({took:.1?}) stdout:\n{stdout}--- stderr:\n{stderr}---", script.display());
    assert!(output.status.success(), "the dashboard script failed ({}):\n{stderr}", output.status);

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
