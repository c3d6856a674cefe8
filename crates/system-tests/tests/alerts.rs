//! The Prometheus alert rules (`helm/analytics-alerts/files/alerts.yml`, the
//! one copy) checked with the real tools, without a stack:
//!
//! - `promtool check rules` accepts them and `promtool test rules` passes
//!   their unit tests (`alerts.test.yml`), which give every alert a case
//!   where it fires and one where it must not;
//! - every alert links its runbook in docs/observability.md, and every
//!   metric an expression names is one the services export (documented and
//!   written in a crate's source);
//! - the chart's PrometheusRule (`helm template`) holds the same rules: its
//!   groups pass the same unit tests.
//!
//! promtool (Debian's `prometheus`) and helm missing fail the tests.
#![cfg(test)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

mod repo;

use repo::{crate_sources, helm, read, root};
use service_kit::testing;

fn chart() -> PathBuf {
    root().join("helm/analytics-alerts")
}

fn rules_file() -> PathBuf {
    chart().join("files/alerts.yml")
}

fn tests_file() -> PathBuf {
    chart().join("files/alerts.test.yml")
}

/// The alert names of a rules file, in order.
fn alerts(rules: &str) -> Vec<String> {
    rules.lines().filter_map(|line| line.trim().strip_prefix("- alert:")).map(|name| name.trim().to_owned()).collect()
}

/// `promtool check rules` and `promtool test rules` on `dir`'s `alerts.yml`
/// and `alerts.test.yml`; `Err` holds promtool's report.
fn promtool_rules(dir: &Path) -> anyhow::Result<()> {
    for args in [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]] {
        let dir = dir.to_string_lossy().into_owned();
        let output = Command::new("promtool").args(args).current_dir(&dir).output().map_err(|e| {
            anyhow::anyhow!(
                "cannot run `promtool` ({e}): install Debian's `prometheus` package (.ci/run and `cargo xtask up` do)"
            )
        })?;
        anyhow::ensure!(
            output.status.success(),
            "promtool {} in {dir} failed ({}):\n{}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

#[test]
fn promtool_checks_the_rules_and_passes_their_unit_tests() {
    promtool_rules(&chart().join("files")).unwrap();
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_unit_test() {
    let tests = read(&tests_file());
    // alert name → (cases where it fires, cases where it must not)
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("alertname:") else { continue };
        let expected =
            lines[i + 1..].iter().find(|l| l.starts_with("exp_alerts:")).expect("exp_alerts after alertname");
        let entry = cases.entry(name.trim().to_owned()).or_default();
        if expected.trim_end() == "exp_alerts: []" {
            entry.1 += 1;
        } else {
            entry.0 += 1;
        }
    }
    let names = alerts(&read(&rules_file()));
    assert!(names.len() >= 8, "alerts: {names:?}");
    for name in &names {
        let (fires, quiet) = cases.get(name).copied().unwrap_or_default();
        assert!(fires > 0, "{name}: no unit test where it fires in alerts.test.yml");
        assert!(quiet > 0, "{name}: no unit test where it must not fire (exp_alerts: []) in alerts.test.yml");
    }
    let unknown: Vec<_> = cases.keys().filter(|name| !names.contains(name)).collect();
    assert!(unknown.is_empty(), "alerts.test.yml tests alerts that do not exist: {unknown:?}");
}

#[test]
fn every_alert_links_its_runbook() {
    let rules = read(&rules_file());
    let doc = read(&root().join("docs/observability.md"));
    let headings: BTreeSet<&str> = doc.lines().filter_map(|line| line.strip_prefix("### ")).map(str::trim).collect();
    let runbooks: Vec<&str> =
        rules.lines().filter_map(|line| line.trim().strip_prefix("runbook_url:")).map(str::trim).collect();
    let names = alerts(&rules);
    assert_eq!(runbooks.len(), names.len(), "one runbook_url per alert");
    for (name, url) in names.iter().zip(&runbooks) {
        assert_eq!(*url, format!("docs/observability.md#{}", name.to_lowercase()), "{name}'s runbook_url");
        assert!(headings.contains(name.as_str()), "docs/observability.md has no runbook heading `### {name}`");
    }
}

/// Every `analytics_service_*` name in the rules is documented in
/// docs/observability.md and written by a crate (a string in its source).
#[test]
fn the_rules_name_metrics_the_services_export() {
    let rules = read(&rules_file());
    let doc = read(&root().join("docs/observability.md"));
    let sources = crate_sources();
    let names: BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("analytics_service_"))
        .collect();
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        assert!(doc.contains(&format!("`{name}`")), "{name} is not documented in docs/observability.md");
        assert!(sources.contains(&format!("\"{name}\"")), "no crate writes {name}");
    }
}

#[test]
fn the_chart_renders_the_same_rules() {
    let output = Command::new(helm())
        .args(["template", "alerts"])
        .arg(chart())
        .args(["--show-only", "templates/prometheusrule.yaml"])
        .output()
        .unwrap();
    let manifest = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "helm template failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(manifest.contains("kind: PrometheusRule"), "{manifest}");
    // `spec:` holds `groups:`, indented by two: unindented, it is a rules file.
    let groups: String = manifest
        .lines()
        .skip_while(|line| *line != "spec:")
        .skip(1)
        .map(|line| format!("{}\n", line.strip_prefix("  ").unwrap_or(line)))
        .collect();
    assert!(groups.starts_with("groups:"), "{manifest}");
    assert_eq!(alerts(&groups), alerts(&read(&rules_file())), "the rendered alerts");

    let dir = std::env::temp_dir().join(testing::unique_name("rendered-alerts"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("alerts.yml"), groups).unwrap();
    std::fs::copy(tests_file(), dir.join("alerts.test.yml")).unwrap();
    let outcome = promtool_rules(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    outcome.unwrap();
}
