//! The config is a contract: a misspelt key stops the binary before it binds
//! or connects to anything, naming the key (no stack needed).
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
