//! The config is a contract: a misspelt key stops the binary before it binds
//! or connects to anything, naming the key (no stack needed).
#![cfg(test)]

#[test]
fn a_misspelt_key_makes_the_binary_exit_non_zero_naming_it() {
    let binary = env!("CARGO_BIN_EXE_realtime-hub");
    let stderr = service_kit::testing::assert_config_refused(
        binary,
        "[hub]\nmetrics_intervall = \"1s\"\n",
        "unknown key `hub.metrics_intervall`",
    )
    .unwrap();
    assert!(stderr.contains("did you mean `hub.metrics_interval`?"), "{stderr}");
}

#[test]
fn every_invalid_value_is_listed_and_the_binary_exits_non_zero() {
    let binary = env!("CARGO_BIN_EXE_realtime-hub");
    let config = "[hub]\nmetrics_interval = \"5ms\"\nlookback = \"30s\"\n";
    let stderr = service_kit::testing::assert_config_refused(binary, config, "hub.metrics_interval (5ms)").unwrap();
    assert!(stderr.contains("hub.lookback (30s) must cover hub.window (1m)"), "{stderr}");
}
