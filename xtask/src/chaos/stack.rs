//! The system under test: the five binaries from `target/debug`, started here
//! on ports of their own, next to the local stack's four servers but on
//! resources of their own (topics `chaos-<run>.…`, consumer group
//! `chaos-<run>-processor`, ClickHouse database `chaos_<run>`, PostgreSQL
//! database `chaos_<run>` with its own keys, Redis prefix `chaos-<run>:`), so
//! a drill that kills a service never touches `cargo xtask up`'s services
//! or data. Servers are the local stack's: a server drill stops them for
//! everyone. With `--cluster` the servers are those of `cargo xtask up
//! --cluster` (docs/scaling.md), and the services run against them.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, Result, bail};
use events_model::Topics;
use local_stack::probe;
use service_kit::{ClickHouseConfig, KafkaConfig, PostgresConfig};

use crate::{
    bench::target::{self, Profile, Spawned},
    keys::{self, Keys},
    layout::Layout,
    servers::{self, Managed, Server, cluster::Member},
    stack,
    ui::{self, Step},
};

/// The five services in start order: the gateway creates the raw topic the
/// processor waits for; the processor creates the topics the hub reads.
pub const SERVICES: [&str; 5] = ["ingest-gateway", "stream-processor", "aggregator-cron", "query-api", "realtime-hub"];

/// One of the services: where it listens and its process while it runs.
struct Service {
    port: u16,
    /// Environment on top of the stack's (e.g. a ClickHouse proxy for the processor).
    extra_env: Vec<(String, String)>,
    process: Option<Spawned>,
}

/// The chaos run's own services and resources; see the module documentation.
pub struct ChaosStack {
    layout: Layout,
    pub run: String,
    profile: Profile,
    env: Vec<(String, String)>,
    services: BTreeMap<&'static str, Service>,
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
    pub keys: Keys,
    /// Where the run's PostgreSQL database was created (dropped at the end).
    admin: PostgresConfig,
    keep: bool,
}

impl ChaosStack {
    /// Creates the resources and starts the five services (each waits for
    /// its `/ready`). The servers must answer.
    /// With `cluster`, on the servers of `cargo xtask up --cluster` instead
    /// (topics with three replicas, two in sync; the migrations' cluster form).
    pub async fn start(layout: &Layout, run: &str, profile: Profile, keep: bool, cluster: bool) -> Result<Self> {
        if cluster {
            for member in Member::ALL {
                member.probe().await.with_context(|| {
                    format!("{} does not answer; start cluster mode with `cargo xtask up --cluster`", member.name())
                })?;
            }
        } else {
            for server in Server::ALL {
                server.probe().await.with_context(|| {
                    format!("{} does not answer; start the local stack with `cargo xtask up`", server.name())
                })?;
            }
        }
        let name = format!("chaos_{run}");
        let ports = local_stack::cluster::Ports::STANDARD;
        let (brokers, clickhouse_url, postgres_url) = match cluster {
            true => (ports.bootstrap(), ports.clickhouse_url(0), servers::cluster::DATABASE_URL),
            false => (stack::KAFKA_ADDR.to_string(), stack::CLICKHOUSE_URL.to_string(), stack::DATABASE_URL),
        };
        let durability = match cluster {
            true => (local_stack::cluster::REPLICATION_FACTOR, local_stack::cluster::MIN_INSYNC_REPLICAS),
            false => (1, 1),
        };
        let kafka = KafkaConfig {
            brokers,
            topic_prefix: format!("chaos-{run}."),
            consumer_group: format!("chaos-{run}-processor"),
            client_id: "xtask-chaos".to_string(),
            replication_factor: durability.0,
            min_insync_replicas: durability.1,
            ..KafkaConfig::default()
        };
        let clickhouse = ClickHouseConfig { url: clickhouse_url, database: name.clone(), ..Default::default() };
        let admin = PostgresConfig { url: postgres_url.to_string(), ..PostgresConfig::default() };

        let step = Step::start(format!("databases {name} (ClickHouse, PostgreSQL; migrations, keys)"));
        let prepared = async {
            service_kit::migrate::apply_clickhouse(&clickhouse).await.context("migrating ClickHouse")?;
            let postgres = service_kit::deps::postgres::create_database(&admin, &name).await?;
            service_kit::migrate::apply_postgres(&postgres).await.context("migrating PostgreSQL")?;
            let keys = keys::create_bench_keys(&postgres, "chaos").await?;
            Ok::<_, anyhow::Error>((postgres, keys))
        }
        .await;
        let (postgres, keys) = match prepared {
            Ok(prepared) => {
                step.ok("");
                prepared
            }
            Err(err) => {
                step.fail("failed");
                let _ = drop_resources(&kafka, &clickhouse, &admin, &name).await;
                return Err(err.context("preparing the chaos run's databases"));
            }
        };

        let mut env = match cluster {
            true => stack::cluster_service_env(&Member::layout(layout)),
            false => stack::service_env(layout),
        };
        env.retain(|(key, _)| !matches!(key.as_str(), "LOG_LEVEL" | "DATABASE_URL"));
        env.extend([
            ("KAFKA_TOPIC_PREFIX".to_string(), kafka.topic_prefix.clone()),
            ("KAFKA_CONSUMER_GROUP".to_string(), kafka.consumer_group.clone()),
            ("CLICKHOUSE_DATABASE".to_string(), clickhouse.database.clone()),
            ("DATABASE_URL".to_string(), postgres.url.clone()),
            ("QUERY_API__REDIS__KEY_PREFIX".to_string(), format!("chaos-{run}:")),
            ("LOG_LEVEL".to_string(), std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".to_string())),
        ]);
        // One key sends all the drill traffic: no per-key limits.
        env.extend(keys::unlimited_env());

        let mut services = BTreeMap::new();
        for name in SERVICES {
            services.insert(name, Service { port: target::free_port()?, extra_env: Vec::new(), process: None });
        }
        let mut stack = Self {
            layout: layout.clone(),
            run: run.to_string(),
            profile,
            env,
            services,
            kafka,
            clickhouse,
            keys,
            admin,
            keep,
        };
        for name in SERVICES {
            if let Err(err) = stack.start_service(name).await {
                stack.stop().await;
                return Err(err);
            }
        }
        Ok(stack)
    }

    fn service(&self, name: &str) -> &Service {
        self.services.get(name).unwrap_or_else(|| panic!("{name} is one of the five services"))
    }

    fn service_mut(&mut self, name: &str) -> &mut Service {
        self.services.get_mut(name).unwrap_or_else(|| panic!("{name} is one of the five services"))
    }

    pub fn port(&self, name: &str) -> u16 {
        self.service(name).port
    }

    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port("ingest-gateway"))
    }

    pub fn query_api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port("query-api"))
    }

    pub fn topics(&self) -> Topics {
        Topics::new(&self.kafka.topic_prefix)
    }

    /// The log file of a service of this run.
    pub fn log_name(&self, name: &str) -> String {
        format!("chaos-{name}")
    }

    /// Starts `name` (stopped or never started) on its port with its extra
    /// environment and waits for its `/ready` (60 s).
    pub async fn start_service(&mut self, name: &str) -> Result<()> {
        if self.service(name).process.as_ref().is_some_and(|p| local_stack::process::is_running(p.pid)) {
            bail!("{name} is still running");
        }
        let mut env = self.env.clone();
        env.extend(self.service(name).extra_env.iter().cloned());
        let (layout, profile, port, log) = (self.layout.clone(), self.profile, self.port(name), self.log_name(name));
        let what = format!("chaos {}", self.run);
        let process = target::start_service_on(&layout, name, profile, &env, &log, &what, port).await?;
        self.service_mut(name).process = Some(process);
        Ok(())
    }

    /// `kill -9`: no shutdown, no flush, no commit.
    pub fn kill(&mut self, name: &str) -> Result<u32> {
        let process = self.service_mut(name).process.take().with_context(|| format!("{name} is not running"))?;
        let pid = process.pid;
        local_stack::process::log_marker(&self.layout.log(&self.log_name(name)), &format!("chaos: kill -9 {pid}"));
        local_stack::process::terminate(pid, libc::SIGKILL, Duration::from_secs(10))?;
        // Already gone: dropping it sends nothing.
        drop(process);
        Ok(pid)
    }

    /// A graceful stop (SIGTERM; SIGKILL after 10 s).
    pub fn stop_service(&mut self, name: &str) {
        drop(self.service_mut(name).process.take());
    }

    /// Replaces the extra environment of `name` (used from its next start on).
    pub fn set_extra_env(&mut self, name: &str, env: Vec<(String, String)>) {
        self.service_mut(name).extra_env = env;
    }

    /// Every service that does not answer `GET /ready` with 200, with the reason.
    pub async fn not_ready(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in SERVICES {
            if let Err(err) = probe::ready(self.port(name)).await {
                out.push(format!("{name}: {err:#}"));
            }
        }
        out
    }

    /// Stops the services and removes the run's topics and databases (unless kept).
    pub async fn stop(mut self) {
        for name in SERVICES.iter().rev() {
            drop(self.service_mut(name).process.take());
        }
        let name = format!("chaos_{}", self.run);
        if self.keep {
            ui::line(format!(
                "• kept topics {}*, ClickHouse and PostgreSQL databases {name} (logs .stack/logs/chaos-*.log)",
                self.kafka.topic_prefix
            ));
            return;
        }
        if let Err(err) = drop_resources(&self.kafka, &self.clickhouse, &self.admin, &name).await {
            ui::line(format!("✗ removing the chaos run's topics and databases: {err:#}"));
        }
    }
}

async fn drop_resources(
    kafka: &KafkaConfig,
    clickhouse: &ClickHouseConfig,
    admin: &PostgresConfig,
    postgres_name: &str,
) -> Result<()> {
    let topics = Topics::new(&kafka.topic_prefix);
    let names = [&topics.raw_events, &topics.dead_letters, &topics.realtime_partials];
    let mut problems = Vec::new();
    if let Err(err) = service_kit::deps::kafka::delete_topics(kafka, &names.map(String::as_str)).await {
        problems.push(format!("topics {}*: {err:#}", kafka.topic_prefix));
    }
    if let Err(err) = service_kit::migrate::drop_clickhouse_database(clickhouse).await {
        problems.push(format!("ClickHouse database {}: {err:#}", clickhouse.database));
    }
    if let Err(err) = service_kit::deps::postgres::drop_database(admin, postgres_name).await {
        problems.push(format!("PostgreSQL database {postgres_name}: {err:#}"));
    }
    if problems.is_empty() { Ok(()) } else { bail!("{}", problems.join("; ")) }
}
