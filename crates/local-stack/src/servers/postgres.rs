//! Debian's PostgreSQL, run as the `postgres` account when started by root
//! (PostgreSQL refuses to run as root), data in `<dir>/data`.
//!
//! The cluster is created with `initdb` (trust for the unix socket, which lives
//! in a directory only the cluster owner and root can enter; passwords over
//! TCP), then the `analytics` role and database are created through the socket.
//!
//! When the `postgres` account cannot reach the parent of the state directory
//! (a clone under a private home such as `/root`), the state directory is a
//! symlink to a directory under `/var/tmp` that it can reach.

use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{Kind, NativeServer};
use crate::{
    probe,
    process::{self, Account},
};

pub const PORT: u16 = 5432;

/// One PostgreSQL cluster on loopback with the `analytics` role and database.
#[derive(Debug, Clone)]
pub struct Postgres {
    /// The cluster's directory (`data/`, `run/`), or a symlink to one outside.
    pub dir: PathBuf,
    pub log: PathBuf,
    pub port: u16,
    /// A short name unique to this installation, for the directories that
    /// have to live outside `dir` (under `/var/tmp` and `/tmp`); see [`short_hash`].
    pub tag: String,
}

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

/// A short stable name for `path` (eight hex digits), e.g. a checkout's tag.
pub fn short_hash(path: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", hash as u32)
}

impl Postgres {
    /// `postgres://analytics:analytics@127.0.0.1:<port>/analytics`
    pub fn url(&self) -> String {
        format!("postgres://analytics:analytics@127.0.0.1:{}/analytics", self.port)
    }

    pub fn paths(&self) -> Result<Paths> {
        let owner = owner()?;
        let link = &self.dir;
        let parent = link.parent().unwrap_or(Path::new("/"));
        let base = if link.is_symlink() {
            let target = std::fs::read_link(link)?;
            std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
            target
        } else if let Some(account) = owner.filter(|a| !link.exists() && !can_enter(parent, *a)) {
            let target = PathBuf::from(format!("/var/tmp/analytics-stack-{}/postgres", self.tag));
            std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
            if let Some(parent) = target.parent() {
                std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
            }
            std::os::unix::fs::symlink(&target, link)
                .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
            chown(&target, Some(account))?;
            target
        } else {
            link.clone()
        };
        let data = base.join("data");
        let mut sockets = base.join("run");
        // A unix socket path must fit in 107 bytes.
        if sockets.join(format!(".s.PGSQL.{}.lock", self.port)).as_os_str().len() > 100 {
            sockets = PathBuf::from(format!("/tmp/analytics-stack-{}-pg", self.tag));
        }
        Ok(Paths { base, data, sockets })
    }

    /// Waits until the new cluster accepts the superuser on its socket, then
    /// creates the `analytics` role (LOGIN, CREATEDB) and database when missing;
    /// `waiting` sees progress messages.
    pub async fn bootstrap(&self, pid: u32, deadline: Duration, waiting: impl Fn(String)) -> Result<()> {
        let paths = self.paths()?;
        let log = &self.log;
        let mut config = tokio_postgres::Config::new();
        config.host_path(&paths.sockets).port(self.port).user("postgres").dbname("postgres");
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
                            log.display(),
                            process::indent_tail(log, 30)
                        );
                    }
                    if started.elapsed() > deadline {
                        bail!(
                            "postgres did not accept connections on {} within {}s ({err:#}); read {}\n{}",
                            paths.sockets.display(),
                            deadline.as_secs(),
                            log.display(),
                            process::indent_tail(log, 30)
                        );
                    }
                    waiting(format!("waiting for the socket ({err:#})"));
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        };
        let task = tokio::spawn(connection);
        waiting("creating role and database analytics".to_string());
        let context = || format!("creating the analytics role and database; read {}", log.display());
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

    /// `pg_ctl stop -m fast -w` as the cluster owner (a fast shutdown, waited for up to 15 s).
    pub fn pg_ctl_stop(&self) -> Result<()> {
        let paths = self.paths()?;
        let mut cmd = Command::new(bin("pg_ctl")?);
        cmd.arg("stop").arg("-D").arg(&paths.data).args(["-m", "fast", "-w", "-t", "15"]).current_dir(&paths.base);
        as_owner(&mut cmd, owner()?);
        process::run_logged(&mut cmd, &self.log, "pg_ctl stop")
    }
}

impl NativeServer for Postgres {
    const KIND: Kind = Kind { name: "postgres", marker: "postgres", request: "a PostgreSQL query as analytics" };

    fn ports(&self) -> Vec<u16> {
        vec![self.port]
    }

    fn log(&self) -> &Path {
        &self.log
    }

    /// Creates the cluster with `initdb` on first use, then returns the server's command.
    fn command(&self) -> Result<Command> {
        let owner = owner()?;
        let paths = self.paths()?;
        let log = &self.log;
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
            process::run_logged(&mut initdb, log, "initdb (creating the PostgreSQL cluster)").with_context(|| {
                format!("if {} holds a half-created cluster, remove it and rerun", paths.data.display())
            })?;
        }

        let mut cmd = Command::new(bin("postgres")?);
        cmd.arg("-D")
            .arg(&paths.data)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", &format!("port={}", self.port)])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", paths.sockets.display()))
            .args(["-c", "max_connections=200", "-c", "log_line_prefix=%m [%p] "])
            .current_dir(&paths.base);
        as_owner(&mut cmd, owner);
        Ok(cmd)
    }

    async fn probe(&self) -> Result<String> {
        probe::postgres(&self.url()).await
    }
}

/// A [`Postgres`] with extra server settings (`-c name=value`), and files
/// copied into its directory, owned by the cluster's account with mode 0600
/// (a TLS key must be): a scratch server with `ssl=on`, say.
#[derive(Debug, Clone)]
pub struct Configured {
    pub postgres: Postgres,
    /// `name=value` settings; a value may name a copied file as `{dir}/<name>`.
    pub settings: Vec<(String, String)>,
    /// Files to copy into the cluster's directory: (source, file name).
    pub files: Vec<(PathBuf, String)>,
}

impl Configured {
    /// Settings that turn TLS on with this certificate (chain) and key.
    pub fn tls(postgres: Postgres, cert: &Path, key: &Path) -> Self {
        Self {
            postgres,
            settings: vec![
                ("ssl".into(), "on".into()),
                ("ssl_cert_file".into(), "{dir}/server.crt".into()),
                ("ssl_key_file".into(), "{dir}/server.key".into()),
            ],
            files: vec![(cert.to_path_buf(), "server.crt".into()), (key.to_path_buf(), "server.key".into())],
        }
    }
}

impl NativeServer for Configured {
    const KIND: Kind = Postgres::KIND;

    fn ports(&self) -> Vec<u16> {
        self.postgres.ports()
    }

    fn log(&self) -> &Path {
        self.postgres.log()
    }

    fn command(&self) -> Result<Command> {
        let mut cmd = self.postgres.command()?;
        let owner = owner()?;
        let base = self.postgres.paths()?.base;
        for (source, name) in &self.files {
            let target = base.join(name);
            std::fs::copy(source, &target)
                .with_context(|| format!("copying {} to {}", source.display(), target.display()))?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))?;
            chown(&target, owner)?;
        }
        for (name, value) in &self.settings {
            cmd.arg("-c").arg(format!("{name}={}", value.replace("{dir}", &base.to_string_lossy())));
        }
        Ok(cmd)
    }

    async fn probe(&self) -> Result<String> {
        self.postgres.probe().await
    }

    async fn prepare(&self, pid: u32, deadline: Duration) -> Result<()> {
        self.postgres.bootstrap(pid, deadline, |_| {}).await
    }
}
