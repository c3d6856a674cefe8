//! stream-processor: Kafka consumer group that stores events in ClickHouse.
//! Configuration: defaults < `config/stream-processor.toml` (or `--config PATH`) < environment.

fn main() -> anyhow::Result<()> {
    service_kit::run_main(stream_processor::SERVICE, stream_processor::run)
}
