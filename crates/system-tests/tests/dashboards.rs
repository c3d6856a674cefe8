//! The Grafana dashboards (`deploy/grafana/dashboards/*.json`, the source;
//! each chart ships a copy, `helm/<chart>/dashboards/`):
//!
//! - each is valid dashboard JSON: unique uid and panel ids, panels inside
//!   the 24-column grid, every query on the `${datasource}` variable, the
//!   `namespace` variable (and, per service, the `job` variable) defined,
//!   every variable an expression uses defined;
//! - the charts' copies are identical to the source;
//! - every expression parses (`promtool check rules`, Prometheus' own parser,
//!   on each expression as a recording rule);
//! - every metric an expression names is exported by the real services:
//!   present on `/metrics` of the five services after real traffic (the
//!   same traffic as promtool_metrics), or, for the few written only when
//!   something fails (FAILURE_ONLY, each with its reason), documented in
//!   docs/observability.md and written by a crate; a per-service dashboard
//!   names only that service's metrics and the shared ones.
//!
//! promtool (Debian's `prometheus`) missing fails the tests.
#![cfg(test)]

#[path = "../../realtime-hub/tests/common/mod.rs"]
mod common;
mod observed;
mod pipeline;
mod repo;
mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::Command,
};

use repo::{crate_sources, read, root};
use serde_json::Value;
use service_kit::testing;

/// The dashboards: file stem → the service it shows (`None`: the overview),
/// and the chart that ships it.
const DASHBOARDS: [(&str, Option<&str>, &str); 6] = [
    ("overview", None, "analytics-alerts"),
    ("ingest-gateway", Some("ingest-gateway"), "ingest-gateway"),
    ("stream-processor", Some("stream-processor"), "stream-processor"),
    ("aggregator-cron", Some("aggregator-cron"), "aggregator-cron"),
    ("query-api", Some("query-api"), "query-api"),
    ("realtime-hub", Some("realtime-hub"), "realtime-hub"),
];

/// Metrics a dashboard may show although the traffic of
/// `observed::page_after_traffic` does not make them appear: the services
/// write them only when something goes wrong (or, for retention, on a
/// schedule of days). Each must still be documented and written by a crate.
const FAILURE_ONLY: &[(&str, &str)] = &[
    ("analytics_service_processor_paused", "set only when consumption pauses for ClickHouse (and back to 0 on resume)"),
    ("analytics_service_clickhouse_insert_failures_total", "a failed INSERT"),
    ("analytics_service_clickhouse_insert_retries_total", "a retried INSERT"),
    ("analytics_service_kafka_commit_failures_total", "an offset commit Kafka refused"),
    ("analytics_service_aggregation_window_failures_total", "a failed window run"),
    ("analytics_service_aggregation_late_recomputations_total", "rows arriving for a window already aggregated"),
    ("analytics_service_retention_partitions_dropped_total", "the daily retention run dropping a partition"),
    ("analytics_service_websocket_connections_rejected_total", "hub.max_connections reached"),
    ("analytics_service_rate_limited_total", "a request over a rate or concurrency limit"),
    ("analytics_service_auth_refresh_failures_total", "PostgreSQL failing a key store refresh"),
];

/// Grafana's own variables.
const BUILTIN_VARIABLES: [&str; 3] = ["__rate_interval", "__range", "__interval"];

fn dir() -> PathBuf {
    root().join("deploy/grafana/dashboards")
}

fn dashboard(stem: &str) -> Value {
    let path = dir().join(format!("{stem}.json"));
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// Every panel, rows' collapsed panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// Every PromQL expression: each query's `expr` and each query variable's query.
fn expressions(dashboard: &Value) -> Vec<String> {
    let mut exprs: Vec<String> = panels(dashboard)
        .into_iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .map(|target| target["expr"].as_str().expect("a target without expr").to_owned())
        .collect();
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if variable["type"] == "query" {
            let query = variable["query"]["query"].as_str().or(variable["query"].as_str()).expect("query");
            // label_values(<selector>, label): the selector is the expression.
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.rsplit_once(','))
                .map_or(query, |(selector, _)| selector);
            exprs.push(inner.to_owned());
        }
    }
    exprs
}

/// The variables (`$name`, `${name}`) an expression uses; `$1` (a
/// label_replace replacement) is none.
fn variables_used(expr: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let braced = rest.starts_with('{');
        let name: String =
            rest.trim_start_matches('{').chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            used.insert(name.clone());
        }
        rest = &rest[name.len() + usize::from(braced)..];
    }
    used
}

/// The expression with Grafana's variables replaced by values Prometheus
/// accepts (durations for the interval variables).
fn substituted(expr: &str) -> String {
    let mut out = expr.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$__interval", "1m");
    for name in variables_used(&out) {
        out = out.replace(&format!("${{{name}}}"), &name).replace(&format!("${name}"), &name);
    }
    out
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
const KEYWORDS: &[&str] = &["bool", "and", "or", "unless", "offset", "atan2", "inf", "nan", "start", "end"];

/// The metric names of a PromQL expression: every vector selector's name.
/// Strings, label matchers (`{…}`), ranges (`[…]`), numbers and durations,
/// variables, functions (a name followed by `(`), aggregation operators,
/// keywords and the label lists of `by`/`without`/`on`/`ignoring`/
/// `group_left`/`group_right` are skipped; a selector without a name
/// (`{__name__=~"…"}`) is refused, since its metrics cannot be checked.
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut last_was_name = false;
    let skip_string = |i: &mut usize| {
        let quote = chars[*i];
        *i += 1;
        while *i < chars.len() && chars[*i] != quote {
            if chars[*i] == '\\' && quote != '`' {
                *i += 1;
            }
            *i += 1;
        }
        *i += 1;
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            skip_string(&mut i);
            last_was_name = false;
        } else if c == '{' || c == '[' {
            if c == '{' && !last_was_name {
                return Err(format!("a selector without a metric name in `{expr}`"));
            }
            let close = if c == '{' { '}' } else { ']' };
            i += 1;
            while i < chars.len() && chars[i] != close {
                if chars[i] == '"' || chars[i] == '\'' || chars[i] == '`' {
                    skip_string(&mut i);
                } else {
                    i += 1;
                }
            }
            i += 1;
            last_was_name = false;
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            last_was_name = false;
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            last_was_name = false;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let call = chars.get(next) == Some(&'(');
            if GROUPING.contains(&word.as_str()) {
                if call {
                    // The label list.
                    while i < chars.len() && chars[i] != ')' {
                        i += 1;
                    }
                    i += 1;
                }
                last_was_name = false;
            } else if call || AGGREGATIONS.contains(&word.as_str()) || KEYWORDS.contains(&word.to_lowercase().as_str())
            {
                last_was_name = false;
            } else {
                names.insert(word);
                last_was_name = true;
            }
        } else {
            if !c.is_whitespace() {
                last_was_name = false;
            }
            i += 1;
        }
    }
    Ok(names)
}

#[test]
fn the_extractor_finds_every_selector_and_nothing_else() {
    let names = |expr: &str| metric_names(expr).unwrap().into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, route) (rate(a_seconds_bucket{route!="}x{", job=~"$job"}[$__rate_interval])))"#
        ),
        ["a_seconds_bucket"]
    );
    assert_eq!(
        names("sum without (instance) (x_total offset 5m) / ignoring (status) group_left (svc) y_total > bool 0.5"),
        ["x_total", "y_total"]
    );
    assert_eq!(
        names(r#"max by (aggregation) (label_replace(z{ns="a"}, "aggregation", "$1", "job", "(.*)")) and on () w"#),
        ["w", "z"]
    );
    assert_eq!(names("sum(1 - up_metric) unless count(b) > 1e3"), ["b", "up_metric"]);
    assert!(metric_names(r#"sum(rate({__name__=~"analytics_.*"}[5m]))"#).is_err());
}

#[test]
fn every_dashboard_is_valid_grafana_json_on_the_datasource_variable() {
    let files: BTreeSet<String> =
        std::fs::read_dir(dir()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let expected: BTreeSet<String> = DASHBOARDS.iter().map(|(stem, _, _)| format!("{stem}.json")).collect();
    assert_eq!(files, expected, "the files of deploy/grafana/dashboards");
    let mut uids = BTreeSet::new();
    for (stem, service, _) in DASHBOARDS {
        let board = dashboard(stem);
        let uid = board["uid"].as_str().expect("uid");
        assert!(uids.insert(uid.to_owned()), "{stem}: uid {uid} used twice");
        assert!(!board["title"].as_str().unwrap_or("").is_empty(), "{stem}: no title");
        assert!(
            board["tags"].as_array().is_some_and(|tags| tags.iter().any(|t| t == "video-analytics")),
            "{stem}: the tag video-analytics (the dashboards' links list them by it)"
        );

        let variables: BTreeMap<&str, &Value> = board["templating"]["list"]
            .as_array()
            .expect("templating.list")
            .iter()
            .map(|v| (v["name"].as_str().expect("variable name"), v))
            .collect();
        let datasource = variables.get("datasource").unwrap_or_else(|| panic!("{stem}: no datasource variable"));
        assert_eq!((&datasource["type"], &datasource["query"]), (&"datasource".into(), &"prometheus".into()), "{stem}");
        assert!(variables.contains_key("namespace"), "{stem}: no namespace variable");
        if let Some(service) = service {
            let job = variables.get("job").unwrap_or_else(|| panic!("{stem}: no job variable"));
            assert!(job["regex"].as_str().is_some_and(|r| r.contains(service)), "{stem}: the job variable's regex");
        }
        for variable in variables.values().filter(|v| v["type"] == "query") {
            assert_eq!(variable["datasource"]["uid"], "${datasource}", "{stem}: variable {}", variable["name"]);
        }

        let mut ids = BTreeSet::new();
        let all = panels(&board);
        assert!(all.len() >= 8, "{stem}: {} panels", all.len());
        for panel in &all {
            let id = panel["id"].as_u64().unwrap_or_else(|| panic!("{stem}: a panel without a numeric id"));
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(ids.insert(id), "{stem}: panel id {id} ({title}) used twice");
            let grid = &panel["gridPos"];
            let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
            assert!(x + w <= 24 && grid["h"].as_u64().unwrap() > 0, "{stem}: {title} outside the grid");
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{stem}: panel {title}'s datasource");
            let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("{stem}: {title} has no queries"));
            assert!(!targets.is_empty(), "{stem}: {title} has no queries");
            let mut refs = BTreeSet::new();
            for target in targets {
                assert_eq!(target["datasource"]["uid"], "${datasource}", "{stem}: a query of {title}");
                assert!(refs.insert(target["refId"].as_str().expect("refId")), "{stem}: {title}: refId twice");
            }
        }
        for expr in expressions(&board) {
            for used in variables_used(&expr) {
                assert!(
                    variables.contains_key(used.as_str()) || BUILTIN_VARIABLES.contains(&used.as_str()),
                    "{stem}: `${used}` is no variable of the dashboard, in {expr}"
                );
            }
        }
        // Every panel's query is limited to the chosen namespaces.
        for panel in &all {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(expr.contains("namespace=~\"$namespace\""), "{stem}: not filtered by namespace: {expr}");
            }
        }
    }
}

#[test]
fn the_charts_ship_copies_identical_to_the_source() {
    for (stem, _, chart) in DASHBOARDS {
        let source = dir().join(format!("{stem}.json"));
        let copy = root().join(format!("helm/{chart}/dashboards/{stem}.json"));
        assert!(
            read(&source) == read(&copy),
            "{} differs from its source {}: cp deploy/grafana/dashboards/{stem}.json helm/{chart}/dashboards/",
            copy.display(),
            source.display()
        );
    }
}

/// Prometheus' parser (`promtool check rules`) accepts every expression,
/// its Grafana variables replaced by values.
#[test]
fn promtool_parses_every_expression() {
    let mut rules = String::from("groups:\n");
    for (stem, _, _) in DASHBOARDS {
        rules.push_str(&format!("  - name: {stem}\n    rules:\n"));
        for (i, expr) in expressions(&dashboard(stem)).iter().enumerate() {
            let expr = serde_json::to_string(&substituted(expr)).unwrap();
            rules
                .push_str(&format!("      - record: dashboard:{}:{i}\n        expr: {expr}\n", stem.replace('-', "_")));
        }
    }
    let dir = std::env::temp_dir().join(testing::unique_name("dashboard-rules"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dashboards.yml");
    std::fs::write(&file, &rules).unwrap();
    let output = Command::new("promtool").arg("check").arg("rules").arg(&file).output();
    let _ = std::fs::remove_dir_all(&dir);
    let output = output.expect("cannot run `promtool`: install Debian's `prometheus` package (.ci/run does)");
    assert!(
        output.status.success(),
        "promtool check rules refused a dashboard expression:\n{}\n{}\n--- the rules ---\n{rules}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// promtool finds a broken expression, so the check above is not vacuous.
#[test]
fn promtool_refuses_a_broken_expression() {
    let dir = std::env::temp_dir().join(testing::unique_name("dashboard-rules"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.yml");
    let expr = substituted(r#"sum by (route (rate(x_bucket{job=~"$job"}[$__rate_interval]))"#);
    std::fs::write(&file, format!("groups:\n  - name: b\n    rules:\n      - record: b\n        expr: {expr:?}\n"))
        .unwrap();
    let output = Command::new("promtool").arg("check").arg("rules").arg(&file).output().expect("promtool runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!output.status.success(), "promtool accepted a broken expression");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboards_name_is_exported_by_the_services() {
    let page = observed::page_after_traffic().await;
    let seen = observed::series_names(&page);
    let owners = observed::owners();
    let sources = crate_sources();
    let doc = read(&root().join("docs/observability.md"));
    let failure_only: BTreeMap<&str, &str> = FAILURE_ONLY.iter().copied().collect();
    let mut problems = Vec::new();
    let mut named = BTreeSet::new();
    for (stem, service, _) in DASHBOARDS {
        for expr in expressions(&dashboard(stem)) {
            let names = match metric_names(&expr) {
                Ok(names) => names,
                Err(problem) => {
                    problems.push(format!("{stem}: {problem}"));
                    continue;
                }
            };
            for name in names {
                let base = observed::metric_of(&name).to_owned();
                named.insert(base.clone());
                if !seen.contains(&name) {
                    if failure_only.contains_key(base.as_str()) && name == base {
                        if !doc.contains(&format!("`{base}`")) || !sources.contains(&format!("\"{base}\"")) {
                            problems.push(format!(
                                "{stem}: {base} (FAILURE_ONLY) is not documented in docs/observability.md or written by no crate"
                            ));
                        }
                    } else {
                        problems.push(format!("{stem}: {name} is not on the services' /metrics after traffic"));
                    }
                }
                if let Some(service) = service {
                    let owner = owners.get(&base).map(String::as_str).unwrap_or("no section");
                    if owner != service && owner != "every service" {
                        problems.push(format!(
                            "{stem}: {base} is {owner}'s metric (docs/observability.md), not {service}'s"
                        ));
                    }
                }
            }
        }
    }
    for (name, _) in FAILURE_ONLY {
        assert!(named.contains(*name), "FAILURE_ONLY lists {name}, which no dashboard names");
    }
    assert!(named.len() >= 40, "the dashboards name only {} metrics: {named:?}", named.len());
    assert!(problems.is_empty(), "{}\n--- the page ---\n{page}", problems.join("\n"));
}
