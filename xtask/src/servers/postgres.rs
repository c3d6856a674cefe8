//! Debian's PostgreSQL, run as the `postgres` account when xtask runs as root
//! (PostgreSQL refuses to run as root), data in `.stack/postgres/data`.
//!
//! The cluster is created with `initdb` (trust for the unix socket, which lives
//! in a directory only the cluster owner and root can enter; passwords over
//! TCP), then the `analytics` role and database are created through the socket.
//!
//! When the `postgres` account cannot reach `.stack/` (a clone under a private
//! home such as `/root`), `.stack/postgres` is a symlink to a directory under
//! `/var/tmp` that it can reach.

use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    layout::Layout,
    probe,
    process::{self, Account},
    ui::Step,
};

pub const PORT: u16 = 5432;

/// Where the cluster lives.
pub struct Paths {
    /// `.stack/postgres`, resolved through the symlink when there is one.
    pub base: PathBuf,
    pub data: PathBuf,
    /// `unix_socket_directories`.
    pub sockets: PathBuf,
}

/// `/usr/lib/postgresql/<newest>/bin`, or the directory of `pg_ctl` on PATH.
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    process::find_executable("pg_ctl").and_then(|p| p.parent().map(Path::to_path_buf))
}

fn bin(name: &str) -> Result<PathBuf> {
    let dir = bin_dir().context("PostgreSQL binaries not found (install the postgresql package)")?;
    Ok(dir.join(name))
}

/// The `postgres` account when running as root; `None` runs as ourselves.
fn owner() -> Result<Option<Account>> {
    if !process::is_root() {
        return Ok(None);
    }
    process::lookup_account("postgres")
        .map(Some)
        .context("the `postgres` system account is missing (install the postgresql package)")
}

fn as_owner(cmd: &mut Command, owner: Option<Account>) {
    if let Some(account) = owner {
        cmd.uid(account.uid).gid(account.gid);
    }
}

fn chown(path: &Path, owner: Option<Account>) -> Result<()> {
    if let Some(account) = owner {
        std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid))
            .with_context(|| format!("giving {} to the postgres account", path.display()))?;
    }
    Ok(())
}

/// Whether `account` may enter `dir` (checked by running `test -x` as it).
fn can_enter(dir: &Path, account: Account) -> bool {
    let mut cmd = Command::new("test");
    cmd.arg("-x").arg(dir).current_dir("/");
    as_owner(&mut cmd, Some(account));
    cmd.status().map(|s| s.success()).unwrap_or(false)
}

/// A short stable name for this checkout (for directories outside it).
fn checkout_tag(layout: &Layout) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in layout.root.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", hash as u32)
}

pub fn paths(layout: &Layout) -> Result<Paths> {
    let owner = owner()?;
    let link = layout.state_dir("postgres");
    let base = if link.is_symlink() {
        let target = std::fs::read_link(&link)?;
        std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
        target
    } else if let Some(account) = owner.filter(|a| !link.exists() && !can_enter(&layout.stack, *a)) {
        let target = PathBuf::from(format!("/var/tmp/analytics-stack-{}/postgres", checkout_tag(layout)));
        std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
        if let Some(parent) = target.parent() {
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
        }
        std::os::unix::fs::symlink(&target, &link)
            .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
        chown(&target, Some(account))?;
        target
    } else {
        link
    };
    let data = base.join("data");
    let mut sockets = base.join("run");
    // A unix socket path must fit in 107 bytes.
    if sockets.join(format!(".s.PGSQL.{PORT}.lock")).as_os_str().len() > 100 {
        sockets = PathBuf::from(format!("/tmp/analytics-stack-{}-pg", checkout_tag(layout)));
    }
    Ok(Paths { base, data, sockets })
}

pub fn spawn(layout: &Layout) -> Result<u32> {
    let owner = owner()?;
    let paths = paths(layout)?;
    let log = layout.log("postgres");
    std::fs::create_dir_all(&paths.base).with_context(|| format!("creating {}", paths.base.display()))?;
    chown(&paths.base, owner)?;
    std::fs::create_dir_all(&paths.sockets).with_context(|| format!("creating {}", paths.sockets.display()))?;
    chown(&paths.sockets, owner)?;
    std::fs::set_permissions(&paths.sockets, std::fs::Permissions::from_mode(0o700))?;

    if !paths.data.join("PG_VERSION").exists() {
        let mut initdb = Command::new(bin("initdb")?);
        initdb
            .arg("-D")
            .arg(&paths.data)
            .args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"])
            .current_dir(&paths.base);
        as_owner(&mut initdb, owner);
        process::run_logged(&mut initdb, &log, "initdb (creating the PostgreSQL cluster)").with_context(|| {
            format!("if {} holds a half-created cluster, remove it and rerun", paths.data.display())
        })?;
    }

    let mut cmd = Command::new(bin("postgres")?);
    cmd.arg("-D")
        .arg(&paths.data)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", &format!("port={PORT}")])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", paths.sockets.display()))
        .args(["-c", "max_connections=200", "-c", "log_line_prefix=%m [%p] "])
        .current_dir(&paths.base);
    as_owner(&mut cmd, owner);
    process::spawn_background(&mut cmd, &log)
}

/// Waits until the new cluster accepts the superuser on its socket, then
/// creates the `analytics` role (LOGIN, CREATEDB) and database when missing.
pub async fn bootstrap(layout: &Layout, pid: u32, deadline: Duration, step: &Step) -> Result<()> {
    let paths = paths(layout)?;
    let log = layout.log("postgres");
    let mut config = tokio_postgres::Config::new();
    config.host_path(&paths.sockets).port(PORT).user("postgres").dbname("postgres");
    config.connect_timeout(probe::PROBE_TIMEOUT);

    let started = Instant::now();
    let (client, connection) = loop {
        match config.connect(tokio_postgres::NoTls).await {
            Ok(pair) => break pair,
            Err(err) => {
                let err = probe::pg_error(err);
                if !process::is_running(pid) {
                    bail!(
                        "postgres (pid {pid}) exited during start-up; read {}\n{}",
                        layout.show(&log),
                        process::indent_tail(&log, 30)
                    );
                }
                if started.elapsed() > deadline {
                    bail!(
                        "postgres did not accept connections on {} within {}s ({err:#}); read {}\n{}",
                        paths.sockets.display(),
                        deadline.as_secs(),
                        layout.show(&log),
                        process::indent_tail(&log, 30)
                    );
                }
                step.set_message(format!("waiting for the socket ({err:#})"));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    let task = tokio::spawn(connection);
    step.set_message("creating role and database analytics");
    let context = || format!("creating the analytics role and database; read {}", layout.show(&log));
    client
        .batch_execute(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'analytics') THEN
                 CREATE ROLE analytics LOGIN CREATEDB PASSWORD 'analytics';
               END IF;
             END $$",
        )
        .await
        .map_err(probe::pg_error)
        .with_context(context)?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = 'analytics'", &[])
        .await
        .map_err(probe::pg_error)
        .with_context(context)?
        .is_some();
    if !exists {
        client
            .batch_execute("CREATE DATABASE analytics OWNER analytics")
            .await
            .map_err(probe::pg_error)
            .with_context(context)?;
    }
    drop(client);
    let _ = task.await;
    Ok(())
}

/// `pg_ctl stop -m fast` as the cluster owner; SIGINT (fast shutdown) by pid if
/// that fails.
pub fn stop(layout: &Layout, pid: u32) -> Result<()> {
    let log = layout.log("postgres");
    let stopped = (|| -> Result<()> {
        let paths = paths(layout)?;
        let mut cmd = Command::new(bin("pg_ctl")?);
        cmd.arg("stop").arg("-D").arg(&paths.data).args(["-m", "fast", "-w", "-t", "15"]).current_dir(&paths.base);
        as_owner(&mut cmd, owner()?);
        process::run_logged(&mut cmd, &log, "pg_ctl stop")
    })();
    if let Err(err) = stopped {
        crate::ui::line(format!("  pg_ctl stop failed ({err:#}); signalling pid {pid}"));
        process::terminate(pid, libc::SIGINT, Duration::from_secs(10))?;
    }
    // Reaps it when it is our child (`cargo xtask test`).
    process::wait_exit(pid, Duration::from_secs(5));
    Ok(())
}
