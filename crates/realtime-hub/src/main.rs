//! realtime-hub: WebSocket fan-out of realtime metrics and the live dashboard.
//! Configuration: defaults < `config/realtime-hub.toml` (or `--config PATH`) < environment.

fn main() -> anyhow::Result<()> {
    service_kit::run_main(realtime_hub::SERVICE, realtime_hub::run)
}
