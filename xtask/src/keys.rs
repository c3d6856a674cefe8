//! API keys: `cargo xtask keys create|list|revoke`, the local stack's three
//! keys in `.stack/credentials.env` (written by `cargo xtask up`), and the
//! keys every client of xtask sends.
//!
//! The file holds `INGEST_API_KEY` (scope `ingest`, key `local-ingest`),
//! `QUERY_API_TOKEN` (`read`, `local-read`) and `ADMIN_TOKEN` (`admin`,
//! `local-admin`), one `NAME=value` a line; other lines are kept as they are.
//! PostgreSQL keeps only the keys' hashes, so the file is the one place the
//! secrets live: it is written with mode 0600.

use std::{collections::HashMap, io::Write as _, os::unix::fs::OpenOptionsExt as _, path::Path, time::Duration};

use anyhow::{Context, Result, bail};
use service_kit::{
    PostgresConfig,
    auth::{self, Scope},
};

use crate::{layout::Layout, stack, ui};

/// The ingest key's variable (scope `ingest`).
pub const INGEST_VAR: &str = "INGEST_API_KEY";
/// The read token's variable (scope `read`: query-api and realtime-hub).
pub const READ_VAR: &str = "QUERY_API_TOKEN";
/// The admin token's variable (scope `admin`: catalog writes).
pub const ADMIN_VAR: &str = "ADMIN_TOKEN";

/// The local stack's keys: (variable, key name, scope).
pub const STACK_KEYS: [(&str, &str, Scope); 3] = [
    (INGEST_VAR, "local-ingest", Scope::Ingest),
    (READ_VAR, "local-read", Scope::Read),
    (ADMIN_VAR, "local-admin", Scope::Admin),
];

/// How to load the file into a shell, as printed by `up` and `keys create`.
pub const SOURCE_HINT: &str = "set -a; . .stack/credentials.env; set +a";

// ------------------------------------------------------------- the file ---

/// `NAME=value` of one line of an env file (blank lines and `#` comments
/// are none); the value without surrounding quotes.
pub fn parse_line(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, value) = line.split_once('=')?;
    Some((name.trim(), value.trim().trim_matches('"')))
}

/// The lines of `.stack/credentials.env`, kept in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialsFile {
    lines: Vec<String>,
}

impl CredentialsFile {
    pub fn parse(text: &str) -> Self {
        Self { lines: text.lines().map(str::to_owned).collect() }
    }

    /// The file at `path`; empty when there is none.
    pub fn read(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The value of `name` (the last line setting it wins, as in a shell);
    /// `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.lines
            .iter()
            .filter_map(|line| parse_line(line))
            .filter(|(n, _)| *n == name)
            .map(|(_, value)| value)
            .next_back()
            .filter(|value| !value.is_empty())
    }

    /// Sets `name` to `value`: the first line setting it is replaced, any
    /// later one removed; appended when none does. Other lines stay.
    pub fn set(&mut self, name: &str, value: &str) {
        let mut replaced = false;
        self.lines.retain_mut(|line| {
            if parse_line(line).is_none_or(|(n, _)| n != name) {
                return true;
            }
            if replaced {
                return false;
            }
            replaced = true;
            *line = format!("{name}={value}");
            true
        });
        if !replaced {
            self.lines.push(format!("{name}={value}"));
        }
    }

    pub fn render(&self) -> String {
        let mut text = self.lines.join("\n");
        text.push('\n');
        text
    }

    /// Writes the file with mode 0600 (a new file, renamed over the old one,
    /// so no moment exposes it with wider permissions).
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let temporary = path.with_extension(format!("env.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&temporary);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(self.render().as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&temporary, path));
        if let Err(err) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(err).with_context(|| format!("writing {}", path.display()));
        }
        Ok(())
    }
}

/// The stack keys of `file` that need a new key: absent, or not `active`.
pub fn missing_stack_keys(
    file: &CredentialsFile,
    active: &HashMap<&str, bool>,
) -> Vec<(&'static str, &'static str, Scope)> {
    STACK_KEYS
        .into_iter()
        .filter(|(var, _, _)| file.get(var).is_none() || !active.get(var).copied().unwrap_or(false))
        .collect()
}

// ------------------------------------------------------- the database ---

/// `DATABASE_URL` when set, else the local stack's.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty()).unwrap_or_else(|| stack::DATABASE_URL.to_string())
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let Some(at) = url[scheme_end..].find('@').map(|i| scheme_end + i) else { return url.to_string() };
    match url[scheme_end..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end], &url[at..]),
        None => url.to_string(),
    }
}

/// A connection to the PostgreSQL at `url` with its migrations applied.
pub async fn connect(url: &str) -> Result<deadpool_postgres::Object> {
    let config =
        PostgresConfig { url: url.to_string(), pool_size: 1, connect_timeout: Duration::from_secs(3), ca_file: None };
    let pool = service_kit::deps::postgres::pool(&config)?;
    let client = pool.get().await.map_err(|err| {
        // The pool's message alone ("error connecting to server") hides the cause.
        let mut why = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !why.contains(&text) {
                why.push_str(": ");
                why.push_str(&text);
            }
            source = cause.source();
        }
        anyhow::anyhow!(
            "PostgreSQL does not answer at {} ({why}); start the local stack with `cargo xtask up` \
             (or `cargo xtask up --no-services`), or set DATABASE_URL",
            redact(url)
        )
    })?;
    service_kit::migrate::apply_postgres(&config)
        .await
        .with_context(|| format!("applying the PostgreSQL migrations (schemas/postgres) at {}", redact(url)))?;
    Ok(client)
}

/// Makes `layout`'s credentials file hold an active key for each of
/// [`STACK_KEYS`] in the database `client` reaches, creating only the
/// missing or revoked ones; returns the names of the keys created.
pub async fn ensure_file(client: &tokio_postgres::Client, path: &Path) -> Result<Vec<&'static str>> {
    let mut file = CredentialsFile::read(path)?;
    let mut active = HashMap::new();
    for (var, _, _) in STACK_KEYS {
        if let Some(secret) = file.get(var) {
            active.insert(var, auth::is_active(client, secret).await.context("checking a key in PostgreSQL")?);
        }
    }
    let mut created = Vec::new();
    for (var, name, scope) in missing_stack_keys(&file, &active) {
        let key =
            auth::create_key(client, name, &[scope], &[]).await.with_context(|| format!("creating key {name}"))?;
        file.set(var, &key.secret);
        created.push(name);
    }
    // Written every time: that also restores the mode of a file copied around.
    file.write(path)?;
    Ok(created)
}

/// `cargo xtask up`: the local stack's three keys, in `.stack/credentials.env`.
pub async fn ensure_stack(layout: &Layout) -> Result<Keys> {
    ensure_stack_at(layout, stack::DATABASE_URL).await
}

/// The three keys in the PostgreSQL at `database_url`, in `layout`'s
/// credentials file (cluster mode: `.stack/cluster/credentials.env`).
pub async fn ensure_stack_at(layout: &Layout, database_url: &str) -> Result<Keys> {
    let path = layout.credentials_file();
    let step = ui::Step::start(format!("API keys ({})", layout.show(&path)));
    let outcome = async {
        let client = connect(database_url).await?;
        ensure_file(&client, &path).await
    }
    .await;
    match outcome {
        Ok(created) if created.is_empty() => step.ok("the three keys are active"),
        Ok(created) => step.ok(format!("created {}", created.join(", "))),
        Err(err) => {
            step.fail("failed");
            return Err(err);
        }
    }
    Credentials::of_file(&CredentialsFile::read(&path)?)
        .complete()
        .with_context(|| format!("{} was just written", layout.show(&path)))
}

// ------------------------------------------------------------ clients ---

/// The keys a client of the local stack sends: from the environment, else
/// from `.stack/credentials.env`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub ingest: Option<String>,
    pub read: Option<String>,
    pub admin: Option<String>,
}

/// The three keys, all present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub ingest: String,
    pub read: String,
    pub admin: String,
}

impl Credentials {
    pub fn of_file(file: &CredentialsFile) -> Self {
        Self {
            ingest: file.get(INGEST_VAR).map(str::to_owned),
            read: file.get(READ_VAR).map(str::to_owned),
            admin: file.get(ADMIN_VAR).map(str::to_owned),
        }
    }

    /// Each key from `env` when set there, else from `file`.
    pub fn of(env: &HashMap<String, String>, file: &CredentialsFile) -> Self {
        let pick = |var: &str| {
            env.get(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .or_else(|| file.get(var).map(str::to_owned))
        };
        Self { ingest: pick(INGEST_VAR), read: pick(READ_VAR), admin: pick(ADMIN_VAR) }
    }

    /// From this process's environment and `layout`'s credentials file.
    pub fn load(layout: &Layout) -> Result<Self> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Ok(Self::of(&env, &CredentialsFile::read(&layout.credentials_file())?))
    }

    pub fn ingest(&self) -> Result<&str> {
        needed(self.ingest.as_deref(), INGEST_VAR)
    }

    pub fn read(&self) -> Result<&str> {
        needed(self.read.as_deref(), READ_VAR)
    }

    pub fn admin(&self) -> Result<&str> {
        needed(self.admin.as_deref(), ADMIN_VAR)
    }

    pub fn complete(&self) -> Result<Keys> {
        Ok(Keys { ingest: self.ingest()?.to_owned(), read: self.read()?.to_owned(), admin: self.admin()?.to_owned() })
    }
}

fn needed<'a>(value: Option<&'a str>, var: &str) -> Result<&'a str> {
    value.ok_or_else(|| anyhow::anyhow!("no {var}: run `cargo xtask up` (it writes .stack/credentials.env)"))
}

/// Headers sending `key` as the ingest-gateway takes it (`X-API-Key`).
pub fn ingest_headers(key: &str) -> Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", header_value(key)?);
    Ok(headers)
}

/// Headers sending `token` as query-api and realtime-hub take it
/// (`Authorization: Bearer`).
pub fn bearer_headers(token: &str) -> Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, header_value(&format!("Bearer {token}"))?);
    Ok(headers)
}

fn header_value(text: &str) -> Result<reqwest::header::HeaderValue> {
    let mut value = reqwest::header::HeaderValue::from_str(text)
        .map_err(|_| anyhow::anyhow!("a key must be printable ASCII (is the credentials file damaged?)"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Environment for services a benchmark starts: no per-key rate limit
/// (requests per second on the three services with keys, events per second
/// on the gateway), since a benchmark's one key sends far more than a client
/// would and the benchmark measures the service, not its limit.
pub fn unlimited_env() -> Vec<(String, String)> {
    ["INGEST_GATEWAY__AUTH__REQUESTS_PER_SECOND", "INGEST_GATEWAY__INGEST__EVENTS_PER_SECOND_PER_KEY"]
        .into_iter()
        .chain(["QUERY_API__AUTH__REQUESTS_PER_SECOND", "REALTIME_HUB__AUTH__REQUESTS_PER_SECOND"])
        .map(|name| (name.to_string(), "0".to_string()))
        .collect()
}

/// An ingest and a read key in the database `postgres` (a benchmark's own),
/// named `<prefix>-ingest` and `<prefix>-read`.
pub async fn create_bench_keys(postgres: &PostgresConfig, prefix: &str) -> Result<Keys> {
    let client = connect(&postgres.url).await?;
    let make = async |scope: Scope| -> Result<String> {
        let name = format!("{prefix}-{scope}");
        Ok(auth::create_key(&client, &name, &[scope], &[])
            .await
            .with_context(|| format!("creating key {name}"))?
            .secret)
    };
    Ok(Keys { ingest: make(Scope::Ingest).await?, read: make(Scope::Read).await?, admin: make(Scope::Admin).await? })
}

// ------------------------------------------------------------ the CLI ---

#[derive(Debug, clap::Subcommand)]
pub enum KeysCmd {
    /// Create a key and print it (the only time it is shown: PostgreSQL keeps its hash).
    Create {
        /// ingest (send events), read (query API and realtime hub) or admin (read, catalog writes, key
        /// management); repeat or separate with commas for several.
        #[arg(long = "scope", required = true, value_delimiter = ',')]
        scopes: Vec<Scope>,
        /// What the key is for (listed, and usable to revoke it).
        #[arg(long)]
        name: String,
        /// An origin browsers may send the key from (`https://player.example`); repeat for several.
        /// None: any origin.
        #[arg(long = "origin")]
        origins: Vec<String>,
    },
    /// Every key, revoked ones too: id, name, scopes, origins, created, revoked (never a secret).
    List,
    /// Revoke the keys whose id or name is given (the services stop accepting them within 30 s).
    Revoke {
        /// A key's id (`ak_…`, 11 characters) or name.
        id_or_name: String,
    },
}

pub async fn run(command: KeysCmd) -> Result<std::process::ExitCode> {
    let client = connect(&database_url()).await?;
    let said = execute(&client, command).await?;
    ui::out(said.out);
    if let Some(note) = said.note {
        eprintln!("{note}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// What a `keys` command says: `out` on stdout (for `create`, the secret
/// alone, so `KEY=$(cargo xtask keys create …)` works), `note` on stderr.
#[derive(Debug)]
pub struct Said {
    pub out: String,
    pub note: Option<String>,
}

pub async fn execute(client: &tokio_postgres::Client, command: KeysCmd) -> Result<Said> {
    match command {
        KeysCmd::Create { scopes, name, origins } => {
            let key = auth::create_key(client, &name, &scopes, &origins).await.map_err(|err| match err {
                auth::KeyError::Invalid(why) => anyhow::anyhow!("{why}"),
                other => anyhow::Error::new(other).context("storing the key"),
            })?;
            Ok(Said { out: key.secret.clone(), note: Some(describe_created(&name, &scopes, &origins, &key.id)) })
        }
        KeysCmd::List => {
            let keys = auth::list_keys(client).await.context("listing the keys")?;
            Ok(Said { out: table(&keys), note: None })
        }
        KeysCmd::Revoke { id_or_name } => {
            let revoked = auth::revoke_key(client, &id_or_name).await.context("revoking")?;
            if revoked == 0 {
                bail!(
                    "no active key has the id or name {id_or_name:?} (already revoked, or never created); \
                     `cargo xtask keys list` shows them"
                );
            }
            let out = format!(
                "revoked {revoked} key{} with the id or name {id_or_name:?}; the services stop accepting {} within 30 s",
                if revoked == 1 { "" } else { "s" },
                if revoked == 1 { "it" } else { "them" }
            );
            Ok(Said { out, note: None })
        }
    }
}

/// The lines after a new key: its id, name, scopes and origins, and how to send it.
fn describe_created(name: &str, scopes: &[Scope], origins: &[String], id: &str) -> String {
    let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let origins = if origins.is_empty() { "any origin".to_string() } else { origins.join(", ") };
    let mut uses = Vec::new();
    if scopes.contains(&Scope::Ingest) {
        uses.push("to the ingest-gateway as `X-API-Key: <key>` (or `?api_key=<key>`, e.g. from sendBeacon)");
    }
    if scopes.iter().any(|s| s.grants(Scope::Read)) {
        uses.push(
            "to query-api and realtime-hub as `Authorization: Bearer <key>` (`/ws?token=<key>` for the WebSocket)",
        );
    }
    format!(
        "key {id} ({name:?}; scopes {}; {origins}) created. It is shown only this once (PostgreSQL keeps its hash): \
         store it now.\nSend it {}.",
        names.join(", "),
        uses.join("; and ")
    )
}

/// `keys list`: one aligned row per key.
pub fn table(keys: &[auth::KeyInfo]) -> String {
    if keys.is_empty() {
        return "no keys yet; create one with `cargo xtask keys create --scope … --name …` (`cargo xtask up` creates \
                the local stack's)"
            .to_string();
    }
    let header = ["ID", "NAME", "SCOPES", "ORIGINS", "CREATED", "REVOKED"].map(str::to_string);
    let rows: Vec<[String; 6]> = keys
        .iter()
        .map(|key| {
            [
                key.id.clone(),
                key.name.clone(),
                key.scopes.join(","),
                if key.origins.is_empty() { "*".to_string() } else { key.origins.join(",") },
                key.created_at.clone(),
                key.revoked_at.clone().unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(pairs: &[(&'static str, bool)]) -> HashMap<&'static str, bool> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn env_lines_are_parsed_like_the_services_get_them() {
        assert_eq!(parse_line("A=b"), Some(("A", "b")));
        assert_eq!(parse_line("  A = \"b c\" "), Some(("A", "b c")));
        assert_eq!(parse_line("# A=b"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("no equals sign"), None);
        assert_eq!(parse_line("A=b=c"), Some(("A", "b=c")));
    }

    #[test]
    fn setting_a_name_keeps_other_lines_and_replaces_every_old_one() {
        let mut file = CredentialsFile::parse(
            "# my notes\nOTHER=1\nINGEST_API_KEY=ak_old\n\nQUERY_API_TOKEN=ak_read\nINGEST_API_KEY=ak_older\nLAST=2",
        );
        assert_eq!(file.get(INGEST_VAR), Some("ak_older"), "the last assignment wins, as in a shell");
        file.set(INGEST_VAR, "ak_new");
        assert_eq!(
            file.render(),
            "# my notes\nOTHER=1\nINGEST_API_KEY=ak_new\n\nQUERY_API_TOKEN=ak_read\nLAST=2\n",
            "replaced in place, the duplicate removed, the rest untouched"
        );
        file.set(ADMIN_VAR, "ak_admin");
        assert!(file.render().ends_with("LAST=2\nADMIN_TOKEN=ak_admin\n"), "{}", file.render());
        assert_eq!(file.get(ADMIN_VAR), Some("ak_admin"));
        assert_eq!(CredentialsFile::parse("INGEST_API_KEY=").get(INGEST_VAR), None, "empty is absent");
    }

    #[test]
    fn only_absent_or_inactive_keys_are_replaced() {
        let file = CredentialsFile::parse("INGEST_API_KEY=ak_a\nQUERY_API_TOKEN=ak_b\nOTHER=x");
        let names = |missing: Vec<(&'static str, &'static str, Scope)>| {
            missing.into_iter().map(|(var, _, _)| var).collect::<Vec<_>>()
        };
        // Both present and active: only the admin token (absent) is missing.
        let all_active = active(&[(INGEST_VAR, true), (READ_VAR, true)]);
        assert_eq!(names(missing_stack_keys(&file, &all_active)), [ADMIN_VAR]);
        // The read token was revoked: replaced too.
        let revoked = active(&[(INGEST_VAR, true), (READ_VAR, false)]);
        assert_eq!(names(missing_stack_keys(&file, &revoked)), [READ_VAR, ADMIN_VAR]);
        // An empty file: all three, with their names and scopes.
        assert_eq!(missing_stack_keys(&CredentialsFile::default(), &HashMap::new()), STACK_KEYS.to_vec());
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-keys-{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_file_is_written_with_mode_0600_over_a_wider_one() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = scratch("mode");
        let path = dir.join("credentials.env");
        std::fs::write(&path, "OTHER=1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut file = CredentialsFile::read(&path).unwrap();
        file.set(INGEST_VAR, "ak_x");
        file.write(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "OTHER=1\nINGEST_API_KEY=ak_x\n");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left");
        assert_eq!(CredentialsFile::read(&dir.join("absent.env")).unwrap(), CredentialsFile::default());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn clients_take_the_environment_over_the_file_and_say_what_is_missing() {
        let file = CredentialsFile::parse("INGEST_API_KEY=ak_file\nQUERY_API_TOKEN=ak_read");
        let env: HashMap<String, String> =
            [(INGEST_VAR.to_string(), "ak_env".to_string()), (ADMIN_VAR.to_string(), " ".to_string())].into();
        let credentials = Credentials::of(&env, &file);
        assert_eq!(credentials.ingest().unwrap(), "ak_env");
        assert_eq!(credentials.read().unwrap(), "ak_read");
        let err = credentials.admin().unwrap_err().to_string();
        assert_eq!(err, "no ADMIN_TOKEN: run `cargo xtask up` (it writes .stack/credentials.env)");
        assert!(credentials.complete().is_err());
        assert_eq!(
            Credentials::of(&HashMap::new(), &CredentialsFile::default()).ingest().unwrap_err().to_string(),
            "no INGEST_API_KEY: run `cargo xtask up` (it writes .stack/credentials.env)"
        );
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("postgres://analytics:analytics@127.0.0.1:5432/analytics"),
            "postgres://analytics:***@127.0.0.1:5432/analytics"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("host=x"), "host=x");
    }

    #[test]
    fn the_list_is_an_aligned_table_without_secrets() {
        let keys = vec![
            auth::KeyInfo {
                id: "ak_12345678".into(),
                name: "web-player".into(),
                scopes: vec!["ingest".into()],
                origins: vec!["https://player.example".into()],
                created_at: "2026-01-02T03:04:05Z".into(),
                revoked_at: None,
            },
            auth::KeyInfo {
                id: "ak_abcdef01".into(),
                name: "ops".into(),
                scopes: vec!["admin".into(), "read".into()],
                origins: vec![],
                created_at: "2026-01-01T00:00:00Z".into(),
                revoked_at: Some("2026-01-03T00:00:00Z".into()),
            },
        ];
        let text = table(&keys);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID           NAME        SCOPES      ORIGINS"), "{text}");
        assert!(lines[1].contains("web-player  ingest      https://player.example  2026-01-02T03:04:05Z  -"), "{text}");
        assert!(lines[2].contains("ops         admin,read  *"), "{text}");
        assert!(lines[2].ends_with("2026-01-03T00:00:00Z"), "{text}");
        assert!(table(&[]).contains("no keys yet"));
    }

    #[test]
    fn the_cli_takes_repeated_or_comma_separated_scopes() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            keys: KeysCmd,
        }
        let parsed = Cli::try_parse_from([
            "keys",
            "create",
            "--scope",
            "ingest",
            "--scope",
            "read,admin",
            "--name",
            "n",
            "--origin",
            "https://a.example",
        ])
        .unwrap();
        match parsed.keys {
            KeysCmd::Create { scopes, name, origins } => {
                assert_eq!(scopes, [Scope::Ingest, Scope::Read, Scope::Admin]);
                assert_eq!(name, "n");
                assert_eq!(origins, ["https://a.example"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["keys", "create", "--name", "n"]).is_err(), "a scope is required");
        let err = Cli::try_parse_from(["keys", "create", "--scope", "root", "--name", "n"]).err().unwrap().to_string();
        assert!(err.contains("ingest, read and admin"), "{err}");
        assert!(matches!(
            Cli::try_parse_from(["keys", "revoke", "web-player"]).unwrap().keys,
            KeysCmd::Revoke { id_or_name } if id_or_name == "web-player"
        ));
    }

    /// Needs the local stack's PostgreSQL (`cargo xtask up --no-services`).
    #[tokio::test]
    async fn up_creates_the_three_keys_once_and_replaces_only_revoked_ones() {
        let pg = service_kit::testing::TestPostgres::create().await.expect("a test database");
        let pool = pg.pool().unwrap();
        let client = pool.get().await.unwrap();
        let dir = scratch("ensure");
        let path = dir.join("credentials.env");
        std::fs::write(&path, "# my own settings\nLOG_LEVEL=debug\n").unwrap();

        let created = ensure_file(&client, &path).await.unwrap();
        assert_eq!(created, ["local-ingest", "local-read", "local-admin"]);
        let first = CredentialsFile::read(&path).unwrap();
        let text = first.render();
        assert!(text.starts_with("# my own settings\nLOG_LEVEL=debug\n"), "{text}");
        for var in [INGEST_VAR, READ_VAR, ADMIN_VAR] {
            assert_eq!(text.matches(&format!("{var}=")).count(), 1, "{text}");
            assert!(auth::is_active(&client, first.get(var).unwrap()).await.unwrap(), "{var}");
        }
        let listed = auth::list_keys(&client).await.unwrap();
        let scopes_of = |name: &str| listed.iter().find(|k| k.name == name).map(|k| k.scopes.clone());
        assert_eq!(scopes_of("local-ingest"), Some(vec!["ingest".to_string()]));
        assert_eq!(scopes_of("local-read"), Some(vec!["read".to_string()]));
        assert_eq!(scopes_of("local-admin"), Some(vec!["admin".to_string()]));

        // Again: the keys are active, nothing is created, the file is the same.
        assert!(ensure_file(&client, &path).await.unwrap().is_empty());
        assert_eq!(CredentialsFile::read(&path).unwrap(), first);
        assert_eq!(auth::list_keys(&client).await.unwrap().len(), 3);

        // The read token revoked: only it is replaced.
        assert_eq!(auth::revoke_key(&client, "local-read").await.unwrap(), 1);
        assert_eq!(ensure_file(&client, &path).await.unwrap(), ["local-read"]);
        let second = CredentialsFile::read(&path).unwrap();
        assert_eq!(second.get(INGEST_VAR), first.get(INGEST_VAR));
        assert_eq!(second.get(ADMIN_VAR), first.get(ADMIN_VAR));
        assert_ne!(second.get(READ_VAR), first.get(READ_VAR));
        assert!(auth::is_active(&client, second.get(READ_VAR).unwrap()).await.unwrap());
        assert!(second.render().starts_with("# my own settings\nLOG_LEVEL=debug\n"));

        // A key of another database (the file outlived a purge): replaced.
        let mut stale = second.clone();
        stale.set(ADMIN_VAR, &auth::generate_secret());
        stale.write(&path).unwrap();
        assert_eq!(ensure_file(&client, &path).await.unwrap(), ["local-admin"]);

        drop(client);
        std::fs::remove_dir_all(dir).unwrap();
        pg.drop().await.unwrap();
    }

    /// Needs the local stack's PostgreSQL (`cargo xtask up --no-services`).
    #[tokio::test]
    async fn keys_are_created_listed_without_secrets_and_revoked() {
        let pg = service_kit::testing::TestPostgres::create().await.expect("a test database");
        let pool = pg.pool().unwrap();
        let client = pool.get().await.unwrap();
        let create = KeysCmd::Create {
            scopes: vec![Scope::Ingest],
            name: "web-player".into(),
            origins: vec!["https://player.example".into()],
        };
        let said = execute(&client, create).await.unwrap();
        let secret = said.out.clone();
        assert!(secret.starts_with("ak_") && !secret.contains(char::is_whitespace), "only the key on stdout: {secret}");
        assert!(auth::is_active(&client, &secret).await.unwrap());
        let note = said.note.unwrap();
        assert!(note.contains(&secret[..11]) && !note.contains(&secret), "the id, not the secret: {note}");
        assert!(note.contains("X-API-Key") && note.contains("shown only this once"), "{note}");

        let said = execute(&client, KeysCmd::List).await.unwrap();
        assert!(said.out.contains("web-player") && said.out.contains("https://player.example"), "{}", said.out);
        assert!(!said.out.contains(&secret), "a listing never shows a secret");

        let said = execute(&client, KeysCmd::Revoke { id_or_name: "web-player".into() }).await.unwrap();
        assert!(said.out.starts_with("revoked 1 key "), "{}", said.out);
        assert!(!auth::is_active(&client, &secret).await.unwrap());
        let err = execute(&client, KeysCmd::Revoke { id_or_name: "web-player".into() }).await.unwrap_err();
        assert!(err.to_string().contains("no active key has the id or name \"web-player\""), "{err}");

        let bad = KeysCmd::Create { scopes: vec![Scope::Read], name: " ".into(), origins: vec![] };
        assert!(execute(&client, bad).await.unwrap_err().to_string().contains("name"));

        drop(client);
        pg.drop().await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_postgres_is_a_clear_error() {
        let err = connect("postgres://analytics:secret@127.0.0.1:1/analytics").await.unwrap_err().to_string();
        assert!(err.contains("PostgreSQL does not answer at postgres://analytics:***@127.0.0.1:1/analytics"), "{err}");
        assert!(err.contains("cargo xtask up"), "{err}");
    }

    #[test]
    fn benchmarks_lift_the_gateways_rate_limits_by_keys_it_knows() {
        let env: HashMap<String, String> = unlimited_env().into_iter().collect();
        let config: ingest_gateway::Config =
            service_kit::config::load_from(ingest_gateway::SERVICE, None, &env).expect("known keys");
        assert_eq!(config.auth.requests_per_second, 0);
        assert_eq!(config.ingest.events_per_second_per_key, 0);
    }
}
