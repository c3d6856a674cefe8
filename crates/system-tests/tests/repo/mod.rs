//! The repository's own files, for the checks that read them (alerts,
//! dashboards, configuration): paths, the crates' sources, helm.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `.rs` file under `crates/*/src`, concatenated: a metric a crate
/// writes appears in it as a string literal.
pub fn crate_sources() -> String {
    let mut sources = String::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let mut stack = vec![entry.unwrap().path().join("src")];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    sources.push_str(&read(&path));
                }
            }
        }
    }
    sources
}

/// `$HELM` (set by `cargo xtask test` and .ci/run), else helm on PATH, else `~/go/bin/helm`.
pub fn helm() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let candidates = [std::env::var_os("HELM").map(PathBuf::from), Some("helm".into()), Some(home.join("go/bin/helm"))];
    candidates
        .into_iter()
        .flatten()
        .find(|candidate| Command::new(candidate).arg("version").output().is_ok_and(|o| o.status.success()))
        .expect("helm not found on PATH or in ~/go/bin: `go install helm.sh/helm/v4/cmd/helm@v4.3.2` (.ci/run does)")
}
