//! The config is a contract: a misspelt key stops the binary before it binds
//! or connects to anything, naming the key (no stack needed); so does a
//! TLS CA file that cannot be read (not only a failing readiness check later).
#![cfg(test)]

#[test]
fn a_misspelt_key_makes_the_binary_exit_non_zero_naming_it() {
    let binary = env!("CARGO_BIN_EXE_query-api");
    let stderr = service_kit::testing::assert_config_refused(
        binary,
        "[cache]\nshort_ttl = \"5s\"\nlong_tll = \"1h\"\n",
        "unknown key `cache.long_tll`",
    )
    .unwrap();
    assert!(stderr.contains("did you mean `cache.long_ttl`?"), "{stderr}");
}

#[test]
fn an_unreadable_clickhouse_ca_file_stops_start_up_naming_the_key() {
    service_kit::testing::assert_unreadable_clickhouse_ca_file_refused(env!("CARGO_BIN_EXE_query-api")).unwrap();
}

#[test]
fn a_clickhouse_ca_file_for_a_plain_http_endpoint_stops_start_up() {
    service_kit::testing::assert_clickhouse_ca_file_for_http_refused(env!("CARGO_BIN_EXE_query-api")).unwrap();
}

#[test]
fn an_unreadable_redis_ca_file_stops_start_up_naming_the_key() {
    let binary = env!("CARGO_BIN_EXE_query-api");
    let stderr = service_kit::testing::assert_config_refused(
        binary,
        "[redis]\nurl = \"rediss://cache.example.com:6380\"\nca_file = \"/nonexistent/redis-ca.pem\"\n",
        "redis.ca_file",
    )
    .unwrap();
    assert!(stderr.contains("/nonexistent/redis-ca.pem"), "{stderr}");
}
