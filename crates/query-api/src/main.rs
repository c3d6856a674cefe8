//! query-api: REST query API over ClickHouse, PostgreSQL and Redis.
//! Configuration: defaults < `config/query-api.toml` (or `--config PATH`) < environment.

fn main() -> anyhow::Result<()> {
    service_kit::run_main(query_api::SERVICE, query_api::run)
}
