//! ingest-gateway: HTTP ingest of playback events into Kafka.
//! Configuration: defaults < `config/ingest-gateway.toml` (or `--config PATH`) < environment.

fn main() -> anyhow::Result<()> {
    service_kit::run_main(ingest_gateway::SERVICE, ingest_gateway::run)
}
