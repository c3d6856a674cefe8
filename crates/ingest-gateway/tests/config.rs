//! The config is a contract: a misspelt key stops the binary before it binds
//! or connects to anything, naming the key (no stack needed).
#![cfg(test)]

#[test]
fn a_misspelt_key_makes_the_binary_exit_non_zero_naming_it() {
    let binary = env!("CARGO_BIN_EXE_ingest-gateway");
    let stderr = service_kit::testing::assert_config_refused(
        binary,
        "[ingest]\nmax_batch_event = 500\n",
        "unknown key `ingest.max_batch_event`",
    )
    .unwrap();
    assert!(stderr.contains("did you mean `ingest.max_batch_events`?"), "{stderr}");
}
