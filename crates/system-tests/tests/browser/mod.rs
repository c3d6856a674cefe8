//! What the browser tests share: the dashboard's `web/` directory, the
//! workspace's target directory, the tools they need (node, Chromium,
//! playwright-core) and reading a child's output.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt as _;

pub fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../realtime-hub/web")
}

/// The workspace's target directory: `CARGO_TARGET_DIR` (relative to the
/// workspace root when relative), else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    match std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

/// Node, Chromium and playwright-core, or why the test cannot run and how to fix it.
pub struct BrowserTools {
    pub chromium: PathBuf,
}

impl BrowserTools {
    pub fn find() -> Result<Self, String> {
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

/// Reads a pipe to its end, lossily as UTF-8.
pub async fn read_all(mut pipe: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes).await;
    String::from_utf8_lossy(&bytes).into_owned()
}
