//! Installing what the native stack needs: Debian packages (as root), chDB
//! for the migration tests, the Kafka jars (cached outside the checkout), and
//! the dashboard's npm packages for its browser test.

use std::{path::PathBuf, process::Command};

use anyhow::{Result, bail};
use local_stack::{
    process,
    servers::{kafka::Jars, postgres, zookeeper},
};

use crate::{layout::Layout, ui::Step};

/// A Debian package and how to tell it is present.
struct Requirement {
    package: &'static str,
    present: fn() -> bool,
}

const REQUIREMENTS: &[Requirement] = &[
    Requirement { package: "clickhouse-server", present: || process::find_executable("clickhouse-server").is_some() },
    Requirement { package: "clickhouse-client", present: || process::find_executable("clickhouse-client").is_some() },
    // Cluster mode (`up --cluster`): ClickHouse 18.16's replication and ON CLUSTER DDL need ZooKeeper.
    Requirement { package: "zookeeper", present: zookeeper::installed },
    Requirement { package: "redis-server", present: || process::find_executable("redis-server").is_some() },
    Requirement { package: "postgresql", present: || postgres::bin_dir().is_some() },
    Requirement { package: "maven", present: || process::find_executable("mvn").is_some() },
    Requirement { package: "default-jre-headless", present: || process::find_executable("java").is_some() },
    Requirement { package: "python3", present: || process::find_executable("python3").is_some() },
    Requirement { package: "python3-pip", present: pip_present },
    // The dashboard's browser test (crates/system-tests/tests/dashboard_browser.rs): headless Chromium and playwright-core.
    Requirement { package: "chromium", present: || process::find_executable("chromium").is_some() },
    Requirement { package: "nodejs", present: || process::find_executable("node").is_some() },
    Requirement { package: "npm", present: || process::find_executable("npm").is_some() },
    // promtool (crates/system-tests/tests/{promtool_metrics,alerts}.rs and every lifecycle test).
    Requirement { package: "prometheus", present: || process::find_executable("promtool").is_some() },
];

fn pip_present() -> bool {
    Command::new("python3").args(["-m", "pip", "--version"]).output().map(|o| o.status.success()).unwrap_or(false)
}

pub fn missing_packages() -> Vec<&'static str> {
    REQUIREMENTS.iter().filter(|r| !(r.present)()).map(|r| r.package).collect()
}

/// Installs the missing Debian packages with apt-get when running as root;
/// otherwise prints the command to run and fails.
pub fn ensure_packages(layout: &Layout) -> Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !process::is_root() {
        bail!(
            "missing Debian packages: {list}\n\
             xtask installs them only when run as root; run:\n\n    \
             sudo apt-get update && sudo apt-get install -y {list}\n\n\
             then rerun this command"
        );
    }
    if process::find_executable("apt-get").is_none() {
        bail!("missing packages ({list}) and no apt-get on this machine: install their equivalents by hand");
    }
    let log = layout.log("install");
    let step = Step::start(format!("installing {list}"));
    let _guard = NoServiceStarts::install();
    let result = (|| {
        step.set_message("apt-get update");
        let mut update = Command::new("apt-get");
        update.args(["update"]).env("DEBIAN_FRONTEND", "noninteractive");
        process::run_logged(&mut update, &log, "apt-get update")?;
        step.set_message("apt-get install");
        let mut install = Command::new("apt-get");
        install.args(["install", "-y"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive");
        process::run_logged(&mut install, &log, &format!("apt-get install -y {list}"))
    })();
    match result {
        Ok(()) => step.ok(format!("(log: {})", layout.show(&log))),
        Err(err) => {
            step.fail("failed");
            return Err(err);
        }
    }
    let still = missing_packages();
    if !still.is_empty() {
        bail!("after apt-get install these are still missing: {}; read {}", still.join(" "), layout.show(&log));
    }
    Ok(())
}

/// While apt-get runs, a `policy-rc.d` that forbids starting services, so the
/// packages' own PostgreSQL/Redis/ClickHouse services do not take our ports.
/// Only created when the machine has none; removed afterwards.
struct NoServiceStarts(Option<PathBuf>);

impl NoServiceStarts {
    fn install() -> Self {
        let path = PathBuf::from("/usr/sbin/policy-rc.d");
        if path.exists() {
            return Self(None);
        }
        let written = std::fs::write(
            &path,
            "#!/bin/sh\n# Temporary, written by cargo xtask while installing packages.\nexit 101\n",
        )
        .and_then(|_| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        });
        Self(written.ok().map(|_| path))
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub fn chdb_present() -> bool {
    Command::new("python3").args(["-c", "import chdb"]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// `pip install chdb-core` when `import chdb` fails (needed by the migration tests).
pub fn ensure_chdb(layout: &Layout) -> Result<()> {
    if chdb_present() {
        return Ok(());
    }
    let log = layout.log("install");
    let step = Step::start("installing chdb-core (pip)");
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "install", "--quiet", "chdb-core"]);
    let mut result = process::run_logged(&mut pip, &log, "pip install chdb-core");
    if result.is_err() && std::fs::read_to_string(&log).unwrap_or_default().contains("externally-managed-environment") {
        // Debian's system Python (PEP 668); pyenv/venv Pythons never get here.
        let mut pip = Command::new("python3");
        pip.args(["-m", "pip", "install", "--quiet", "--break-system-packages"]);
        if !process::is_root() {
            pip.arg("--user");
        }
        pip.arg("chdb-core");
        result = process::run_logged(&mut pip, &log, "pip install --break-system-packages chdb-core");
    }
    match result {
        Ok(()) if chdb_present() => {
            step.ok("");
            Ok(())
        }
        Ok(()) => {
            step.fail("installed but `import chdb` still fails");
            bail!("pip installed chdb-core but `python3 -c 'import chdb'` fails; read {}", layout.show(&log))
        }
        Err(err) => {
            step.fail("failed");
            Err(err)
        }
    }
}

/// `npm ci` in `crates/realtime-hub/web` when playwright-core is missing there
/// (node_modules is git-ignored), for the dashboard's browser test. Without
/// npm, or when it fails, says so and goes on: that test then fails with the fix.
pub fn ensure_web_modules(layout: &Layout) {
    let web = layout.root.join("crates/realtime-hub/web");
    if web.join("node_modules/playwright-core/package.json").is_file() {
        return;
    }
    let step = Step::start("npm ci in crates/realtime-hub/web (playwright-core for the browser test)");
    if process::find_executable("npm").is_none() {
        step.fail("npm not found: install Debian's nodejs, npm and chromium");
        return;
    }
    let log = layout.log("install");
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund"]).current_dir(&web);
    match process::run_logged(&mut npm, &log, "npm ci") {
        Ok(()) => step.ok(""),
        Err(err) => step.fail(format!("{err:#}")),
    }
}

/// `~/.cache/analytics-stack/kafka-<version>/libs`, downloaded with Maven on
/// first use (every clone of the repository shares it).
pub fn kafka_jars(layout: &Layout) -> Result<PathBuf> {
    let jars = Jars::new(&layout.root.join("deploy/native/kafka/pom.xml"), &layout.cache_dir()?)?;
    if jars.is_complete() {
        return Ok(jars.libs);
    }
    let step = Step::start(format!("downloading Kafka {} jars from Maven Central", jars.version));
    match jars.ensure(&layout.log("kafka-download")) {
        Ok(libs) => {
            step.ok(format!("into {}", libs.display()));
            Ok(libs.to_path_buf())
        }
        Err(err) => {
            step.fail("failed");
            Err(err)
        }
    }
}

/// The helm the chart checks use (`helm/tests`, `crates/chart-tests`): built
/// from its Go module, as the project's tools brief says.
pub const HELM_MODULE: &str = "helm.sh/helm/v4/cmd/helm";
pub const HELM_VERSION: &str = "v4.3.2";

/// `go` on PATH, else the official tarball's /usr/local/go/bin/go.
pub fn go_binary() -> Option<PathBuf> {
    process::find_executable("go").or_else(|| Some(PathBuf::from("/usr/local/go/bin/go")).filter(|p| p.is_file()))
}

/// Where `go install` puts binaries: `go env GOBIN`, else `$(go env GOPATH)/bin`.
fn go_bin_dir(go: &std::path::Path) -> Option<PathBuf> {
    let env = |name: &str| {
        Command::new(go)
            .args(["env", name])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    env("GOBIN").map(PathBuf::from).or_else(|| env("GOPATH").map(|p| PathBuf::from(p).join("bin")))
}

/// The helm module version a binary was built from (`go version -m`; `helm
/// version` says only `v4.3` for a `go install` build).
fn helm_version(go: &std::path::Path, helm: &std::path::Path) -> Option<String> {
    if !helm.is_file() {
        return None;
    }
    let out = Command::new(go).args(["version", "-m"]).arg(helm).output().ok().filter(|o| o.status.success())?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next() == Some("mod") && fields.next() == Some("helm.sh/helm/v4"))
            .then(|| fields.next())?
            .map(str::to_owned)
    })
}

/// helm [`HELM_VERSION`]: `$HELM`, else the one `go install` put in Go's bin
/// directory, else `go install helm.sh/helm/v4/cmd/helm@v4.3.2` (a few
/// minutes the first time; modules are cached in ~/go). Returns its path and
/// the Go binary's (the chart tests run `go test` too).
pub fn ensure_helm(layout: &Layout) -> Result<(PathBuf, PathBuf)> {
    let Some(go) = go_binary() else {
        bail!(
            "Go not found (PATH or /usr/local/go/bin/go): the chart checks need it to build helm \
             ({HELM_MODULE}@{HELM_VERSION}) and to run helm/tests"
        );
    };
    if let Some(helm) = std::env::var_os("HELM").map(PathBuf::from) {
        return Ok((helm, go));
    }
    let Some(bin) = go_bin_dir(&go) else { bail!("`{} env GOPATH` answered nothing", go.display()) };
    let helm = bin.join("helm");
    if helm_version(&go, &helm).as_deref() == Some(HELM_VERSION) {
        return Ok((helm, go));
    }
    let log = layout.log("install");
    let step = Step::start(format!("go install {HELM_MODULE}@{HELM_VERSION} (the chart checks)"));
    let mut install = Command::new(&go);
    install.args(["install", &format!("{HELM_MODULE}@{HELM_VERSION}")]);
    match process::run_logged(&mut install, &log, &format!("go install {HELM_MODULE}@{HELM_VERSION}")) {
        Ok(()) => match helm_version(&go, &helm) {
            Some(version) if version == HELM_VERSION => {
                step.ok(format!("{} ({version})", helm.display()));
                Ok((helm, go))
            }
            other => {
                step.fail("installed but not runnable");
                bail!("go install put no runnable helm {HELM_VERSION} at {} ({other:?})", helm.display())
            }
        },
        Err(err) => {
            step.fail("failed");
            Err(err.context(format!("installing helm; read {}", layout.show(&log))))
        }
    }
}
