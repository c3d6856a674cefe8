//! The tests that span several services live in `tests/` of this crate, so
//! that no service crate depends on another (not even for its tests). This
//! library only holds what those tests share beyond the in-process starters
//! of `tests/support`: the list of service crates and the check, over
//! `cargo metadata`, that none of them depends on another.

use serde_json::Value;

/// The workspace's service crates: each is a binary that talks to the others
/// only through Kafka topics and ClickHouse tables.
pub const SERVICES: [&str; 5] = ["ingest-gateway", "stream-processor", "aggregator-cron", "query-api", "realtime-hub"];

/// A dependency of one service crate on another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDependency {
    pub from: String,
    pub to: String,
    /// `normal`, `dev` or `build`.
    pub kind: String,
}

impl std::fmt::Display for ServiceDependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {} ({} dependency)", self.from, self.to, self.kind)
    }
}

/// Every dependency (normal, dev or build) of a service crate on another
/// service crate in the output of `cargo metadata --format-version 1`.
pub fn service_dependencies(metadata: &Value) -> Vec<ServiceDependency> {
    let packages = metadata["packages"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut found = Vec::new();
    for package in packages {
        let Some(from) = package["name"].as_str().filter(|name| SERVICES.contains(name)) else { continue };
        let dependencies = package["dependencies"].as_array().map(Vec::as_slice).unwrap_or_default();
        for dependency in dependencies {
            let Some(to) = dependency["name"].as_str().filter(|name| SERVICES.contains(name)) else { continue };
            let kind = dependency["kind"].as_str().unwrap_or("normal");
            found.push(ServiceDependency { from: from.into(), to: to.into(), kind: kind.into() });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_normal_dev_and_build_dependencies_between_services_only() {
        let metadata = json!({"packages": [
            {"name": "query-api", "dependencies": [
                {"name": "service-kit", "kind": null},
                {"name": "ingest-gateway", "kind": "dev"},
            ]},
            {"name": "realtime-hub", "dependencies": [{"name": "query-api", "kind": null}]},
            {"name": "stream-processor", "dependencies": [{"name": "aggregator-cron", "kind": "build"}]},
            {"name": "xtask", "dependencies": [{"name": "stream-processor", "kind": null}]},
        ]});
        let found: Vec<String> = service_dependencies(&metadata).iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "query-api -> ingest-gateway (dev dependency)",
                "realtime-hub -> query-api (normal dependency)",
                "stream-processor -> aggregator-cron (build dependency)",
            ]
        );
    }
}
