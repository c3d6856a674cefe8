//! docs/configuration.md against the services' real `Config` structs, and
//! the example files of deploy/config/ against the services' real loader.
//!
//! - Each service's table (between `<!-- keys of SERVICE -->` and
//!   `<!-- end keys -->`) lists exactly the keys of its `Config`, derived
//!   from `Config::default()` serialized and flattened (a free-form map such
//!   as `kafka.properties` is one key), each with its type, default and
//!   environment names (the prefixed one and the seed's well-known one).
//!   These columns are generated from the structs: `UPDATE_CONFIG_DOC=1
//!   cargo test -p chart-tests --test configuration` rewrites them in place;
//!   the descriptions are written by hand in the `| key | meaning |` tables,
//!   which must describe every key of every service and no other.
//! - `deploy/config/<service>.toml` loads with `service_kit::config::load_from`
//!   (unknown keys refused, as at start-up) and passes the service's
//!   `validate`.
#![cfg(test)]

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use service_kit::{
    ClickHouseConfig, PostgresConfig, ServiceConfig,
    config::{WELL_KNOWN_ENV, env_prefix},
};

/// The `migrate` binary's configuration (crates/migrate/src/main.rs
/// `Databases`, private to the binary): its two sections, loaded with the
/// same loader under the name `migrate`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct MigrateConfig {
    clickhouse: ClickHouseConfig,
    postgres: PostgresConfig,
}

/// Each configuration: its name (file and environment prefix) and its defaults as JSON.
fn configs() -> Vec<(&'static str, Value)> {
    fn json<T: Serialize>(value: T) -> Value {
        serde_json::to_value(value).unwrap()
    }
    vec![
        ("ingest-gateway", json(ingest_gateway::Config::default())),
        ("stream-processor", json(stream_processor::Config::default())),
        ("aggregator-cron", json(aggregator_cron::Config::default())),
        ("query-api", json(query_api::Config::default())),
        ("realtime-hub", json(realtime_hub::Config::default())),
        ("migrate", json(MigrateConfig::default())),
    ]
}

/// Every key of a configuration's defaults with its default value (an
/// empty map is one key, as the loader treats it).
fn keys(value: &Value) -> BTreeMap<String, Value> {
    fn walk(table: &serde_json::Map<String, Value>, prefix: &str, out: &mut BTreeMap<String, Value>) {
        for (key, value) in table {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            match value {
                Value::Object(inner) if !inner.is_empty() => walk(inner, &path, out),
                _ => {
                    out.insert(path, value.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(value.as_object().expect("a table"), "", &mut out);
    out
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A humantime duration as the services write their defaults (`"5s"`,
/// `"1m 30s"`, `"500ms"`): digits and unit letters.
fn is_duration(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_digit())
        && text.chars().any(|c| c.is_ascii_alphabetic())
        && text.chars().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase() || c == ' ')
}

/// The type column: what the default's JSON says (`None` for an unset
/// default, whose type the document states by hand as `optional …`).
fn type_of(value: &Value) -> Option<String> {
    Some(match value {
        Value::Bool(_) => "bool".into(),
        Value::Number(n) if n.is_f64() => "number".into(),
        Value::Number(_) => "integer".into(),
        Value::String(text) if is_duration(text) => "duration".into(),
        Value::String(_) => "string".into(),
        Value::Array(_) => "list of strings".into(),
        Value::Object(_) => "table of strings".into(),
        Value::Null => return None,
    })
}

/// The default column, TOML-like.
fn default_of(value: &Value) -> String {
    match value {
        Value::Null => "unset".into(),
        Value::Object(_) => "`{}`".into(),
        other => format!("`{}`", other.to_string().replace('|', "\\|")),
    }
}

/// The environment column: the prefixed name, then the seed's names of the key.
fn env_of(service: &str, key: &str, value: &Value) -> String {
    let mut name = format!("{}__{}", env_prefix(service), key.replace('.', "__").to_uppercase());
    if value.is_object() {
        name.push_str("__<NAME>");
    }
    let mut names = vec![format!("`{name}`")];
    names.extend(WELL_KNOWN_ENV.iter().filter(|(_, k)| *k == key).map(|(n, _)| format!("`{n}`")));
    names.join(", ")
}

/// The cells of a Markdown table row.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => cell.push_str("\\|"),
            '|' => out.push(std::mem::take(&mut cell).trim().to_owned()),
            _ => cell.push(c),
        }
        if c == '\\' && chars.peek() == Some(&'|') {
            chars.next();
        }
    }
    out.push(cell.trim().to_owned());
    out
}

fn doc_path() -> PathBuf {
    root().join("docs/configuration.md")
}

const HEADER: &str = "| key | type | default | environment |\n|---|---|---|---|\n";

/// The generated table of a service; `documented` gives the type cell of
/// the keys whose default is unset (kept as written).
fn table(service: &str, defaults: &Value, documented: &BTreeMap<String, Vec<String>>) -> String {
    let mut out = String::from(HEADER);
    for (key, value) in keys(defaults) {
        let kind = type_of(&value).unwrap_or_else(|| {
            documented.get(&key).map(|row| row[1].clone()).unwrap_or_else(|| "optional ?".to_owned())
        });
        out.push_str(&format!("| `{key}` | {kind} | {} | {} |\n", default_of(&value), env_of(service, &key, &value)));
    }
    out
}

/// The rows of the generated table of `service` in the document, by key.
fn documented_rows(doc: &str, service: &str) -> Option<(usize, usize, BTreeMap<String, Vec<String>>)> {
    let start_marker = format!("<!-- keys of {service} -->\n");
    let start = doc.find(&start_marker)? + start_marker.len();
    let end = start + doc[start..].find("<!-- end keys -->")?;
    let rows = doc[start..end]
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let row = cells(line);
            (row[0].trim_matches('`').to_owned(), row)
        })
        .collect();
    Some((start, end, rows))
}

/// The keys of the `| key | meaning |` tables and their descriptions.
fn descriptions(doc: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut in_table = false;
    for line in doc.lines() {
        if line.starts_with("| key | meaning |") {
            in_table = true;
        } else if !line.starts_with('|') {
            in_table = false;
        } else if in_table && line.starts_with("| `") {
            let row = cells(line);
            let previous = out.insert(row[0].trim_matches('`').to_owned(), row.get(1).cloned().unwrap_or_default());
            assert!(previous.is_none(), "docs/configuration.md describes {} twice", row[0]);
        }
    }
    out
}

#[test]
fn the_document_lists_every_key_of_every_config_with_its_type_default_and_environment() {
    let mut doc = read(&doc_path());
    let update = std::env::var_os("UPDATE_CONFIG_DOC").is_some();
    let mut problems = Vec::new();
    let mut all_keys = BTreeSet::new();
    for (service, defaults) in configs() {
        let Some((start, end, rows)) = documented_rows(&doc, service) else {
            problems.push(format!("no table between `<!-- keys of {service} -->` and `<!-- end keys -->`"));
            continue;
        };
        let actual = keys(&defaults);
        all_keys.extend(actual.keys().cloned());
        let expected = table(service, &defaults, &rows);
        if update {
            doc.replace_range(start..end, &expected);
            continue;
        }
        for key in actual.keys().filter(|key| !rows.contains_key(*key)) {
            problems.push(format!("{service}: `{key}` is missing"));
        }
        for key in rows.keys().filter(|key| !actual.contains_key(*key)) {
            problems.push(format!("{service}: `{key}` is no key of its Config"));
        }
        for line in expected.lines().skip(2) {
            let row = cells(line);
            let key = row[0].trim_matches('`');
            let Some(written) = rows.get(key) else { continue };
            if written != &row {
                problems.push(format!(
                    "{service}: `{key}` is documented as\n    {written:?}\n  the struct says\n    {row:?}"
                ));
            }
            if row[1] == "optional ?" || (actual[key].is_null() && !row[1].starts_with("optional ")) {
                problems.push(format!("{service}: `{key}` is unset by default: write its type as `optional <type>`"));
            }
        }
    }
    if update {
        std::fs::write(doc_path(), &doc).unwrap();
        return;
    }
    let described = descriptions(&doc);
    for key in all_keys.iter().filter(|key| !described.contains_key(*key)) {
        problems.push(format!("`{key}` has no description in a `| key | meaning |` table"));
    }
    for (key, text) in &described {
        if !all_keys.contains(key) {
            problems.push(format!("`{key}` is described but is no key of any Config"));
        }
        if text.trim().is_empty() {
            problems.push(format!("`{key}` has an empty description"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/configuration.md and the Config structs differ (UPDATE_CONFIG_DOC=1 rewrites the generated tables; \
         descriptions are written by hand):\n{}",
        problems.join("\n")
    );
}

/// The check is not vacuous: flattening finds nested keys and keeps an
/// empty map as one key, and a row the struct does not have is noticed.
#[test]
fn keys_are_flattened_with_free_form_maps_as_one_key() {
    let value = serde_json::json!({"http": {"port": 1, "ops_port": null}, "kafka": {"properties": {}}, "top": "5s"});
    let found: Vec<String> = keys(&value).into_keys().collect();
    assert_eq!(found, ["http.ops_port", "http.port", "kafka.properties", "top"]);
    assert_eq!(type_of(&value["top"]).as_deref(), Some("duration"));
    assert_eq!(env_of("ingest-gateway", "http.port", &value["http"]["port"]), "`INGEST_GATEWAY__HTTP__PORT`, `PORT`");
    assert_eq!(
        env_of("query-api", "kafka.properties", &value["kafka"]["properties"]),
        "`QUERY_API__KAFKA__PROPERTIES__<NAME>`"
    );
    let doc = "<!-- keys of x -->\n| key | type | default | environment |\n|---|---|---|---|\n\
               | `a.b` | integer | `1` | `X__A__B` |\n<!-- end keys -->\n";
    let (_, _, rows) = documented_rows(doc, "x").unwrap();
    assert_eq!(rows.keys().collect::<Vec<_>>(), ["a.b"]);
    assert_eq!(cells("| `a` | x \\| y | `\"\"` |"), ["`a`", "x \\| y", "`\"\"`"]);
}

fn load_example<C: ServiceConfig>(service: &str) -> C {
    let path = root().join(format!("deploy/config/{service}.toml"));
    let config: C = service_kit::config::load_from(service, Some(&path), &HashMap::new())
        .unwrap_or_else(|err| panic!("{} does not load: {err}", path.display()));
    if let Err(problems) = config.validate() {
        panic!("{} is invalid: {problems:?}", path.display());
    }
    config
}

#[test]
fn the_example_files_load_with_the_services_loaders() {
    let gateway: ingest_gateway::Config = load_example("ingest-gateway");
    assert_eq!(gateway.kafka.replication_factor, 3, "production-like: 3 replicas");
    assert_eq!(
        gateway.kafka.properties.get("security.protocol").map(String::as_str),
        Some("SASL_SSL"),
        "a librdkafka property with dots in its name: {:?}",
        gateway.kafka.properties
    );
    let processor: stream_processor::Config = load_example("stream-processor");
    assert_eq!(processor.kafka.min_insync_replicas, 2);
    let _: aggregator_cron::Config = load_example("aggregator-cron");
    let _: query_api::Config = load_example("query-api");
    let _: realtime_hub::Config = load_example("realtime-hub");
    let path = root().join("deploy/config/migrate.toml");
    let _: MigrateConfig = service_kit::config::load_from("migrate", Some(&path), &HashMap::new())
        .unwrap_or_else(|err| panic!("{} does not load: {err}", path.display()));
    let files: BTreeSet<String> = std::fs::read_dir(root().join("deploy/config"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = configs().into_iter().map(|(name, _)| format!("{name}.toml")).collect();
    assert_eq!(files, expected, "one example per configuration in deploy/config/");
}

/// An example with a misspelt key would be refused: the loader is strict.
#[test]
fn a_misspelt_key_in_an_example_is_refused() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("config-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("query-api.toml");
    let text = read(&root().join("deploy/config/query-api.toml")).replacen("[cache]", "[cache]\nttl_secondz = 1", 1);
    std::fs::write(&path, text).unwrap();
    let outcome = service_kit::config::load_from::<query_api::Config>("query-api", Some(&path), &HashMap::new());
    let _ = std::fs::remove_dir_all(&dir);
    let err = outcome.expect_err("a misspelt key loads");
    assert!(err.to_string().contains("unknown key `cache.ttl_secondz`"), "{err}");
}
