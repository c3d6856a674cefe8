//! `cargo xtask dlq list|replay`: inspect dead letters and send them back through the pipeline.
//!
//! Reading and replaying are the `dlq` crate's; this is the command line.

use std::process::ExitCode;

use ::dlq::{self, Selection, StoredDeadLetter};
use clap::{Args, Subcommand};
use events_model::Topics;
use service_kit::KafkaConfig;

#[derive(Debug, Subcommand)]
pub enum DlqCmd {
    /// List dead letters (newest last) with their reason and origin.
    List {
        #[command(flatten)]
        target: Target,
        /// Print one JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Produce the selected dead letters back to the raw topic (same key, same
    /// payload, so the same event_id: a replay never double-counts).
    Replay {
        #[command(flatten)]
        target: Target,
        /// Replay everything in the topic when no filter is given.
        #[arg(long)]
        all: bool,
        /// Show what would be replayed without producing anything.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
pub struct Target {
    /// Kafka brokers.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Topic prefix of the deployment.
    #[arg(long, env = "KAFKA_TOPIC_PREFIX", default_value = events_model::DEFAULT_TOPIC_PREFIX)]
    topic_prefix: String,
    /// Only dead letters with this reason (e.g. invalid_json, missing, empty_payload).
    #[arg(long)]
    reason: Option<String>,
    /// Only this partition of the dead-letter topic.
    #[arg(long)]
    partition: Option<i32>,
    /// First dead-letter offset to include.
    #[arg(long)]
    from_offset: Option<i64>,
    /// Last dead-letter offset to include.
    #[arg(long)]
    to_offset: Option<i64>,
}

impl Target {
    fn kafka(&self) -> KafkaConfig {
        KafkaConfig {
            brokers: self.brokers.clone(),
            topic_prefix: self.topic_prefix.clone(),
            client_id: "xtask-dlq".into(),
            ..KafkaConfig::default()
        }
    }

    fn selection(&self) -> Selection {
        Selection {
            reason: self.reason.clone(),
            partition: self.partition,
            from_offset: self.from_offset,
            to_offset: self.to_offset,
        }
    }

    fn is_filtered(&self) -> bool {
        self.reason.is_some() || self.partition.is_some() || self.from_offset.is_some() || self.to_offset.is_some()
    }

    async fn read(&self) -> anyhow::Result<(Topics, Vec<StoredDeadLetter>)> {
        let (kafka, selection) = (self.kafka(), self.selection());
        let topics = Topics::new(&kafka.topic_prefix);
        let topic = topics.dead_letters.clone();
        let letters = tokio::task::spawn_blocking(move || dlq::read(&kafka, &topic, &selection)).await??;
        Ok((topics, letters))
    }
}

pub async fn run(command: DlqCmd) -> anyhow::Result<ExitCode> {
    match command {
        DlqCmd::List { target, json } => {
            let (topics, letters) = target.read().await?;
            if json {
                for letter in &letters {
                    println!("{}", serde_json::to_string(letter)?);
                }
            } else {
                print_table(&topics.dead_letters, &letters);
            }
        }
        DlqCmd::Replay { target, all, dry_run } => {
            anyhow::ensure!(
                all || target.is_filtered(),
                "say which dead letters to replay: --reason, --partition, --from-offset/--to-offset, or --all"
            );
            let (topics, letters) = target.read().await?;
            print_table(&topics.dead_letters, &letters);
            if dry_run {
                println!("dry run: {} dead letter(s) would be replayed to {}", letters.len(), topics.raw_events);
            } else {
                let sent = dlq::replay(&target.kafka(), &topics.raw_events, &letters).await?;
                println!("replayed {sent} dead letter(s) to {}", topics.raw_events);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(topic: &str, letters: &[StoredDeadLetter]) {
    println!("{} dead letter(s) selected in {topic}", letters.len());
    if letters.is_empty() {
        return;
    }
    println!("{:>9} {:>10}  {:<20} {:<24} {:<30} payload", "partition", "offset", "reason", "failed_at", "source");
    for l in letters {
        let source = format!(
            "{}/{}@{}",
            l.source_topic,
            l.source_partition.map_or("?".into(), |p| p.to_string()),
            l.source_offset.map_or("?".into(), |o| o.to_string())
        );
        let preview: String = l.payload_preview.chars().take(60).collect();
        println!(
            "{:>9} {:>10}  {:<20} {:<24} {:<30} {}",
            l.partition, l.offset, l.reason, l.failed_at, source, preview
        );
    }
}
