//! The config is a contract: a misspelt key stops the binary before it binds
//! or connects to anything, naming the key (no stack needed).
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
