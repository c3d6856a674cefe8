//! No service crate depends on another, normally, for its tests or its build:
//! tests that need several services live in this crate.
#![cfg(test)]

use std::{path::Path, process::Command};

use system_tests::service_dependencies;

#[test]
fn no_service_crate_depends_on_another() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"])
        .arg(&manifest)
        .output()
        .expect("running cargo metadata");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let names: Vec<&str> =
        metadata["packages"].as_array().expect("packages").iter().filter_map(|p| p["name"].as_str()).collect();
    for service in system_tests::SERVICES {
        assert!(names.contains(&service), "service crate {service} is not in the workspace: {names:?}");
    }
    let offending: Vec<String> = service_dependencies(&metadata).iter().map(ToString::to_string).collect();
    assert!(offending.is_empty(), "service crates depend on other service crates:\n{}", offending.join("\n"));
}
