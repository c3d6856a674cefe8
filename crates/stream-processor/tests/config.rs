//! The config is a contract: a misspelt key stops the binary before it binds
//! or connects to anything, naming the key (no stack needed).
#![cfg(test)]

#[test]
fn a_misspelt_key_makes_the_binary_exit_non_zero_naming_it() {
    let binary = env!("CARGO_BIN_EXE_stream-processor");
    let stderr = service_kit::testing::assert_config_refused(
        binary,
        "[processor]\nbatch_max_wait = \"200ms\"\nbatch_max_event = 100\n",
        "unknown key `processor.batch_max_event`",
    )
    .unwrap();
    assert!(stderr.contains("did you mean `processor.batch_max_events`?"), "{stderr}");
}
