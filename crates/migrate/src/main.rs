//! `migrate`: applies the ClickHouse and PostgreSQL migrations embedded from
//! `schemas/` (the same `service_kit::migrate` that `cargo xtask migrate` uses),
//! then exits. It is the image's migration step: the Helm charts run it as a
//! pre-install/pre-upgrade hook Job (`helm/analytics-common`, `migrations.enabled`
//! in the query-api chart), before any service of a release starts.
//!
//! Configuration is loaded like every service's: defaults < TOML file
//! (`--config PATH` or `CONFIG_FILE`) < the seed's names (`CLICKHOUSE_URL`,
//! `CLICKHOUSE_HOST`, `CLICKHOUSE_PORT`, `CLICKHOUSE_DATABASE`, `CLICKHOUSE_USER`,
//! `CLICKHOUSE_PASSWORD`, `DATABASE_URL`, `POSTGRES_URL`) < `MIGRATE__SECTION__KEY`.
//! Exit status: 0 applied or already up to date; 1 a migration or a connection
//! failed; 2 bad arguments or configuration.

use std::{collections::HashMap, path::PathBuf, process::ExitCode};

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};
use service_kit::{
    ClickHouseConfig, PostgresConfig,
    migrate::{self, MigrateError, Report},
};

/// The name of the configuration: `MIGRATE__CLICKHOUSE__URL=…`, `config/migrate.toml`.
const NAME: &str = "migrate";

#[derive(Debug, Parser)]
#[command(
    name = "migrate",
    version,
    about = "Apply the ClickHouse and PostgreSQL migrations built into this binary (schemas/), then exit",
    long_about = None,
    after_help = "Configuration: defaults < TOML file (--config or CONFIG_FILE; sections [clickhouse] and [postgres]) \
                  < CLICKHOUSE_URL / CLICKHOUSE_HOST / CLICKHOUSE_PORT / CLICKHOUSE_DATABASE / CLICKHOUSE_USER / \
                  CLICKHOUSE_PASSWORD / DATABASE_URL (or POSTGRES_URL) < MIGRATE__CLICKHOUSE__URL etc.\n\
                  Exit status: 0 done (or nothing to do), 1 a migration or connection failed, 2 bad arguments or \
                  configuration. Applying is idempotent; an applied migration that was edited is refused."
)]
struct Cli {
    /// TOML file with [clickhouse] and [postgres] sections (also: CONFIG_FILE).
    #[arg(long, value_name = "PATH", env = "CONFIG_FILE")]
    config: Option<PathBuf>,
    /// Only this engine (default: ClickHouse, then PostgreSQL).
    #[arg(long, value_enum)]
    only: Option<Engine>,
    /// Print the migrations built into this binary and exit (no connection).
    #[arg(long)]
    list: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Engine {
    Clickhouse,
    Postgres,
}

/// The two databases, configured as in every service.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Databases {
    clickhouse: ClickHouseConfig,
    postgres: PostgresConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list {
        for (engine, list) in
            [("clickhouse", migrate::clickhouse_migrations()), ("postgres", migrate::postgres_migrations())]
        {
            for migration in list {
                println!("{engine}\t{}\t{}\t{}", migration.version, migration.name, migration.checksum());
            }
        }
        return ExitCode::SUCCESS;
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let databases: Databases = match service_kit::config::load_from(NAME, cli.config.as_deref(), &env) {
        Ok(databases) => databases,
        Err(err) => {
            eprintln!("migrate: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("migrate: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&databases, cli.only)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("migrate: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(databases: &Databases, only: Option<Engine>) -> anyhow::Result<()> {
    if only != Some(Engine::Postgres) {
        let cfg = &databases.clickhouse;
        let what = format!("ClickHouse migrations ({}, database {})", cfg.endpoint(), cfg.database);
        let report = migrate::apply_clickhouse(cfg).await.map_err(|err| failure(err, &what))?;
        println!("{what}: {}", describe(&report));
    }
    if only != Some(Engine::Clickhouse) {
        // The URL carries the password: never printed.
        let what = "PostgreSQL migrations".to_owned();
        let report = migrate::apply_postgres(&databases.postgres).await.map_err(|err| failure(err, &what))?;
        println!("{what}: {}", describe(&report));
    }
    Ok(())
}

fn failure(err: MigrateError, what: &str) -> anyhow::Error {
    let hint = if matches!(err, MigrateError::ChecksumMismatch { .. }) {
        " (migrations are append-only: deploy an image whose schemas/ matches what was applied)"
    } else {
        ""
    };
    anyhow::Error::new(err).context(format!("applying {what}{hint}"))
}

fn describe(report: &Report) -> String {
    if report.applied.is_empty() {
        return format!("up to date ({} already applied)", report.already);
    }
    let names: Vec<&str> = report.applied.iter().map(|(_, name)| name.as_str()).collect();
    format!("applied {} ({} already applied)", names.join(", "), report.already)
}
