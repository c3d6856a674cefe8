//! The config is a contract: a misspelt key stops the binary before it binds
//! or connects to anything, naming the key (no stack needed); so does a
//! TLS CA file that cannot be read (not only a failing readiness check later).
#![cfg(test)]

#[test]
fn a_misspelt_key_makes_the_binary_exit_non_zero_naming_it() {
    let binary = env!("CARGO_BIN_EXE_aggregator-cron");
    let stderr = service_kit::testing::assert_config_refused(
        binary,
        "[aggregation]\nlatenes = \"72h\"\n",
        "unknown key `aggregation.latenes`",
    )
    .unwrap();
    assert!(stderr.contains("did you mean `aggregation.lateness`?"), "{stderr}");
}

#[test]
fn an_unreadable_clickhouse_ca_file_stops_start_up_naming_the_key() {
    service_kit::testing::assert_unreadable_clickhouse_ca_file_refused(env!("CARGO_BIN_EXE_aggregator-cron")).unwrap();
}

#[test]
fn a_clickhouse_ca_file_for_a_plain_http_endpoint_stops_start_up() {
    service_kit::testing::assert_clickhouse_ca_file_for_http_refused(env!("CARGO_BIN_EXE_aggregator-cron")).unwrap();
}
