//! `cargo xtask <command>`: the local stack, migrations, the test suite, the load generator and the benchmarks.
//!
//! State lives in `.stack/` at the repository root: `logs/<component>.log`,
//! `pids/<component>.pid` and one data directory per server.

mod bench;
mod chaos;
mod dlq;
mod docker;
mod install;
mod keys;
mod layout;
mod load;
mod servers;
mod services;
mod stack;
mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Local stack, migrations and tests for the analytics service")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install what is missing, start Kafka, ClickHouse, PostgreSQL, Redis and
    /// the five services, apply migrations, print the URLs. Idempotent.
    Up {
        /// Only the four servers and the migrations, not the five binaries.
        #[arg(long)]
        no_services: bool,
        /// Native processes even when a Docker engine answers.
        #[arg(long)]
        native: bool,
        /// Once the services are ready, keep simulated viewers sending events in the
        /// background (`cargo xtask load --duration forever --catalog`, listed as demo-load).
        #[arg(long, conflicts_with = "no_services")]
        demo: bool,
        /// Events per second of the demo traffic.
        #[arg(long, default_value_t = 20.0, requires = "demo")]
        demo_rate: f64,
        /// Cluster mode instead: three Kafka brokers (topics with 3 replicas), ClickHouse as
        /// 2 shards × 2 replicas with ZooKeeper, PostgreSQL and Redis, and the five services
        /// (ports 10000 above the single node's; not with --no-services), on ports of their own
        /// (state in .stack/cluster/); the single-node stack is not touched.
        #[arg(long, conflicts_with = "demo")]
        cluster: bool,
    },
    /// Stop everything `up` started (by pid file), servers last.
    Down {
        /// Also delete the servers' data (databases, topics) for a fresh start; logs stay.
        #[arg(long)]
        purge: bool,
        /// Stop cluster mode's processes (`up --cluster`) instead of the single-node stack.
        #[arg(long)]
        cluster: bool,
    },
    /// Show whether each of the nine components answers; non-zero exit if any does not.
    Status {
        /// Cluster mode's ten processes instead, each ClickHouse server with what it knows of the cluster.
        #[arg(long)]
        cluster: bool,
    },
    /// Apply the ClickHouse and PostgreSQL migrations of schemas/.
    Migrate,
    /// Run `cargo test --workspace` against the stack, starting (and afterwards
    /// stopping) the servers that do not answer.
    Test {
        /// Native processes even when a Docker engine answers.
        #[arg(long)]
        native: bool,
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Send realistic live playback traffic to the ingest-gateway, with a progress bar.
    Load(load::LoadArgs),
    /// Failure drills under live load: kill -9 of each service, servers stopped, a poison batch, a hot
    /// key; one table row per drill, non-zero exit if an event is lost or counted twice (docs/chaos.md).
    Chaos(chaos::ChaosArgs),
    /// The benchmarks behind BENCHMARKS.md (release builds; see BENCHMARKS.md for each method).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCmd,
    },
    /// Create, list and revoke API keys (in the PostgreSQL of DATABASE_URL, else the local stack's).
    Keys {
        #[command(subcommand)]
        command: keys::KeysCmd,
    },
    /// Inspect dead letters, or replay them to the raw topic after a fix.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCmd,
    },
    /// Print the end of a component's log (.stack/logs/<component>.log).
    Logs {
        /// kafka, clickhouse, postgres, redis, a binary's name, install, kafka-download, …
        component: String,
        /// How many lines.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
        /// Keep printing what is appended.
        #[arg(short, long)]
        follow: bool,
        /// A member of cluster mode (.stack/cluster/logs/<member>.log): kafka-1, clickhouse-s2r1, zookeeper, …
        #[arg(long)]
        cluster: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let layout = layout::Layout::discover();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Cmd::Up { cluster: true, no_services, .. } => {
                stack::up_cluster(&layout, no_services).await.map(|_| ExitCode::SUCCESS)
            }
            Cmd::Up { no_services, native, demo, demo_rate, cluster: false } => {
                stack::up(&layout, no_services, native, demo.then_some(demo_rate)).await.map(|_| ExitCode::SUCCESS)
            }
            Cmd::Down { purge, cluster: true } => stack::down_cluster(&layout, purge).await.map(|_| ExitCode::SUCCESS),
            Cmd::Down { purge, cluster: false } => stack::down(&layout, purge).await.map(|_| ExitCode::SUCCESS),
            Cmd::Status { cluster: true } => stack::status_cluster(&layout).await,
            Cmd::Status { cluster: false } => stack::status(&layout).await,
            Cmd::Migrate => stack::migrate(&layout).await.map(|_| ExitCode::SUCCESS),
            Cmd::Test { native, cargo_args } => stack::test(&layout, native, &cargo_args).await,
            Cmd::Load(args) => load::run(&layout, args).await,
            Cmd::Chaos(args) => chaos::run(&layout, args).await,
            Cmd::Bench { command } => bench::run(&layout, command).await,
            Cmd::Keys { command } => keys::run(command).await,
            Cmd::Dlq { command } => dlq::run(command).await,
            Cmd::Logs { component, lines, follow, cluster } => {
                stack::logs(&layout, &component, lines, follow, cluster).map(|_| ExitCode::SUCCESS)
            }
        }
    });
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("\nerror: {err:#}");
            ExitCode::FAILURE
        }
    }
}
