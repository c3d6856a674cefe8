//! The charts against the services: `helm/tests` (Go) lints, renders and
//! strictly decodes every chart with its defaults and each `ci/*-values.yaml`
//! and writes the decoded manifests as JSON; this test loads each rendered
//! TOML ConfigMap with the service's own `Config` (unknown keys and invalid
//! values refused, as at start-up) and checks that the Deployment agrees with
//! it: ports, probe paths and timeouts, user id, termination grace, replicas.
//!
//! Needs `go` (PATH, `$GO` or /usr/local/go/bin/go) and `helm` (`$HELM`, PATH
//! or ~/go/bin/helm); `cargo xtask test` and `.ci/run` install helm.

#![cfg(test)]

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use service_kit::{ClickHouseConfig, HttpConfig, PostgresConfig, ServiceConfig};

/// The image's numeric user: docker/Dockerfile's `USER`.
const IMAGE_USER: i64 = 10001;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn go() -> PathBuf {
    if let Some(path) = std::env::var_os("GO") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("go"))
        .find(|path| path.is_file());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/local/go/bin/go"))
}

/// Runs the Go chart checks once per test binary; the directory of their JSON renders.
fn rendered() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("helm-rendered-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let go = go();
        // -count=1: never a cached result (it would not write the renders).
        let output = Command::new(&go)
            .args(["test", "-count=1", "./..."])
            .current_dir(root().join("helm/tests"))
            .env("RENDERED_OUT", &out)
            .output()
            .unwrap_or_else(|err| {
                panic!("running {} test in helm/tests: {err} (install Go, or set GO to its binary)", go.display())
            });
        assert!(
            output.status.success(),
            "helm/tests failed (helm lint --strict / helm template / strict decoding / rules):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        out
    })
}

/// One `helm template` of a chart with one values file.
struct Render {
    label: String,
    objects: Vec<Value>,
}

impl Render {
    fn all(chart: &str) -> Vec<Render> {
        let mut renders: Vec<Render> = std::fs::read_dir(rendered())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter_map(|path| {
                let stem = path.file_stem()?.to_str()?.to_owned();
                let label = stem.strip_prefix(&format!("{chart}__"))?.to_owned();
                let objects = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                Some(Render { label, objects })
            })
            .collect();
        renders.sort_by(|a, b| a.label.cmp(&b.label));
        assert!(renders.iter().any(|r| r.label == "default"), "no default render of {chart}");
        renders
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let found = self.of_kind(kind);
        assert_eq!(found.len(), 1, "{}: expected one {kind}, found {}", self.label, found.len());
        found[0]
    }

    /// The service's Deployment (not the migration Job).
    fn deployment(&self) -> &Value {
        self.one("Deployment")
    }

    fn container(&self) -> &Value {
        &self.deployment()["spec"]["template"]["spec"]["containers"][0]
    }

    fn config_toml(&self, binary: &str) -> String {
        let key = format!("{binary}.toml");
        let maps = self.of_kind("ConfigMap");
        let map =
            maps.iter().find(|m| m["data"].get(&key).is_some()).unwrap_or_else(|| panic!("no ConfigMap with {key}"));
        map["data"][&key].as_str().unwrap().to_owned()
    }

    /// The container's plain environment, as the service would see it
    /// (Secrets aside), with the files of the `tls` mount present: see
    /// [`with_tls_files`].
    fn env(&self) -> HashMap<String, String> {
        with_tls_files(&self.label, self.container())
    }

    fn container_port(&self, name: &str) -> Option<u16> {
        self.container()["ports"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| u16::try_from(p["containerPort"].as_u64().unwrap()).unwrap())
    }

    fn service_port(&self, name: &str) -> Option<u16> {
        self.one("Service")["spec"]["ports"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| u16::try_from(p["port"].as_u64().unwrap()).unwrap())
    }

    fn hpa_max(&self) -> Option<u64> {
        self.of_kind("HorizontalPodAutoscaler").first().map(|h| h["spec"]["maxReplicas"].as_u64().unwrap())
    }
}

/// A container's plain `env` entries (name and value; CONFIG_FILE aside).
fn plain_env(container: &Value) -> HashMap<String, String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["name"] != "CONFIG_FILE")
        .filter_map(|e| Some((e["name"].as_str()?.to_owned(), e["value"].as_str()?.to_owned())))
        .collect()
}

/// Where a container mounts the chart's `tls` volume, if it does.
fn tls_mount(container: &Value) -> Option<String> {
    container["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == "tls")
        .map(|m| m["mountPath"].as_str().unwrap().trim_end_matches('/').to_owned())
}

/// A throwaway CA certificate (PEM), made once per test binary with openssl.
fn test_ca_pem() -> &'static [u8] {
    static PEM: OnceLock<Vec<u8>> = OnceLock::new();
    PEM.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chart-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let output = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=chart-tests CA", "-keyout"])
            .arg(dir.join("ca.key"))
            .arg("-out")
            .arg(dir.join("ca.pem"))
            .output()
            .expect("running openssl (the TLS tests need it: apt-get install openssl)");
        assert!(output.status.success(), "openssl req: {}", String::from_utf8_lossy(&output.stderr));
        std::fs::read(dir.join("ca.pem")).unwrap()
    })
}

/// The scratch directory standing for the `tls` volume of renders labelled `label`.
fn tls_scratch(label: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chart-tls-{}-{label}", std::process::id()))
}

/// [`plain_env`] as the pod would see it with its `tls` Secret/ConfigMap
/// mounted: each value naming a file under the mount path is moved to a
/// scratch directory holding a real CA certificate under that name, so
/// the service's start-up checks (which read every configured CA file)
/// judge the chart's settings rather than this machine's /etc.
fn with_tls_files(label: &str, container: &Value) -> HashMap<String, String> {
    let mut env = plain_env(container);
    let Some(mount) = tls_mount(container) else { return env };
    let scratch = tls_scratch(label).join(mount.trim_start_matches('/'));
    for value in env.values_mut() {
        let Some(file) = value.strip_prefix(&format!("{mount}/")) else { continue };
        let path = scratch.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Tests run in parallel threads: write aside, then rename (atomic), so no reader sees half a file.
        let partial = path.with_extension(format!("partial-{:?}", std::thread::current().id()).replace(['(', ')'], ""));
        std::fs::write(&partial, test_ca_pem()).unwrap();
        std::fs::rename(&partial, &path).unwrap();
        *value = path.to_str().unwrap().to_owned();
    }
    env
}

/// Writes `toml` to a file and loads it as `service` does at start-up.
fn load<C: ServiceConfig>(service: &str, label: &str, toml: &str, env: &HashMap<String, String>) -> C {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chart-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{service}-{label}.toml"));
    std::fs::write(&path, toml).unwrap();
    let config: C = service_kit::config::load_from(service, Some(&path), env)
        .unwrap_or_else(|err| panic!("{service} ({label}) refuses the chart's configuration: {err}\n{toml}"));
    if let Err(problems) = config.validate() {
        panic!("{service} ({label}): the chart's configuration is invalid: {problems:?}\n{toml}");
    }
    config
}

fn secs(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("not a number of seconds: {value}"))
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// What every service's Deployment must agree on with the configuration it loads.
fn check_deployment(binary: &str, render: &Render, http: &HttpConfig, defaults: &HttpConfig, extra_shutdown: Duration) {
    let at = format!("{binary} ({})", render.label);
    let has_api = defaults.separate_ops_port().is_some();
    let ops = http.ops_port.unwrap_or(http.port);
    assert_eq!(render.container_port("ops"), Some(ops), "{at}: container port ops vs http.ops_port");
    assert_eq!(render.service_port("ops"), Some(ops), "{at}: Service port ops");
    if has_api {
        assert_eq!(render.container_port("http"), Some(http.port), "{at}: container port http vs http.port");
        assert_eq!(render.service_port("http"), Some(http.port), "{at}: Service port http");
        assert_ne!(http.port, ops, "{at}: the API and ops ports must differ (the Ingress routes the API alone)");
    } else {
        assert_eq!(render.container_port("http"), None, "{at}: a worker has no API port");
    }
    if render.label == "default" {
        assert_eq!(http.port, defaults.port, "{at}: the chart's http.port is not the service's default");
        assert_eq!(http.ops_port, defaults.ops_port, "{at}: the chart's http.ops_port is not the service's default");
        assert_eq!(http.drain_delay, defaults.drain_delay, "{at}: http.drain_delay differs from the service's default");
        assert_eq!(
            http.shutdown_timeout, defaults.shutdown_timeout,
            "{at}: http.shutdown_timeout differs from the default"
        );
        assert_eq!(http.probe_timeout, defaults.probe_timeout, "{at}: http.probe_timeout differs from the default");
    }

    let container = render.container();
    for (probe, path) in [("livenessProbe", "/health"), ("readinessProbe", "/ready"), ("startupProbe", "/health")] {
        let spec = &container[probe];
        if probe == "startupProbe" && spec.is_null() {
            continue;
        }
        assert_eq!(spec["httpGet"]["path"], path, "{at}: {probe} path");
        assert_eq!(spec["httpGet"]["port"], "ops", "{at}: {probe} port");
        let timeout = secs(&spec["timeoutSeconds"]);
        assert!(
            Duration::from_secs(timeout) > http.probe_timeout,
            "{at}: {probe}.timeoutSeconds {timeout} must be above http.probe_timeout {:?} (/ready waits that long)",
            http.probe_timeout
        );
    }

    let pod = &render.deployment()["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"].as_i64(), Some(IMAGE_USER), "{at}: pod runAsUser");
    assert_eq!(container["securityContext"]["runAsUser"].as_i64(), Some(IMAGE_USER), "{at}: container runAsUser");
    assert_eq!(pod["enableServiceLinks"], false, "{at}: enableServiceLinks");

    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap_or(0);
    let grace = secs(&pod["terminationGracePeriodSeconds"]);
    let needed = pre_stop + ceil_secs(http.drain_delay) + ceil_secs(http.shutdown_timeout) + ceil_secs(extra_shutdown);
    assert!(
        grace >= needed,
        "{at}: terminationGracePeriodSeconds {grace} < preStop {pre_stop} + drain_delay {:?} + shutdown_timeout {:?} + {:?}",
        http.drain_delay,
        http.shutdown_timeout,
        extra_shutdown
    );

    for ingress in render.of_kind("Ingress") {
        assert!(has_api, "{at}: a worker has no Ingress");
        for rule in ingress["spec"]["rules"].as_array().unwrap() {
            for path in rule["http"]["paths"].as_array().unwrap() {
                let port = &path["backend"]["service"]["port"];
                assert_eq!(port["name"], "http", "{at}: Ingress path {} must go to the API port", path["path"]);
                assert!(port.get("number").is_none(), "{at}: Ingress by port number");
            }
        }
    }
}

fn replicas(render: &Render) -> u64 {
    render.deployment()["spec"]["replicas"].as_u64().unwrap_or(0)
}

#[test]
fn every_chart_lints_renders_and_decodes_strictly() {
    let files = std::fs::read_dir(rendered()).unwrap().count();
    assert!(files >= 5, "only {files} renders in {}", rendered().display());
}

#[test]
fn query_api_chart_matches_its_configuration() {
    let defaults = query_api::Config::default();
    for render in Render::all("query-api") {
        let config: query_api::Config =
            load("query-api", &render.label, &render.config_toml("query-api"), &render.env());
        check_deployment("query-api", &render, &config.http, &defaults.http, Duration::ZERO);
        assert!(render.hpa_max().is_some() || replicas(&render) >= 2, "query-api ({}): one replica", render.label);
    }
}

#[test]
fn ingest_gateway_chart_matches_its_configuration() {
    let defaults = ingest_gateway::Config::default();
    for render in Render::all("ingest-gateway") {
        let config: ingest_gateway::Config =
            load("ingest-gateway", &render.label, &render.config_toml("ingest-gateway"), &render.env());
        check_deployment("ingest-gateway", &render, &config.http, &defaults.http, Duration::ZERO);
        for ingress in render.of_kind("Ingress") {
            let paths: Vec<&str> = ingress["spec"]["rules"][0]["http"]["paths"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["path"].as_str().unwrap())
                .collect();
            assert_eq!(paths, ["/api/events"], "the gateway's Ingress routes the ingest endpoints only");
        }
    }
}

#[test]
fn realtime_hub_chart_matches_its_configuration_and_waits_for_the_window_refill() {
    let defaults = realtime_hub::Config::default();
    for render in Render::all("realtime-hub") {
        let config: realtime_hub::Config =
            load("realtime-hub", &render.label, &render.config_toml("realtime-hub"), &render.env());
        check_deployment("realtime-hub", &render, &config.http, &defaults.http, Duration::ZERO);
        let startup = &render.container()["startupProbe"];
        let budget = secs(&startup["periodSeconds"]) * secs(&startup["failureThreshold"]);
        assert!(
            Duration::from_secs(budget) >= config.hub.lookback,
            "realtime-hub ({}): the startup probe allows {budget} s, the hub re-reads hub.lookback {:?} at start",
            render.label,
            config.hub.lookback
        );
    }
}

#[test]
fn stream_processor_chart_matches_its_configuration_and_never_outnumbers_the_partitions() {
    let defaults = stream_processor::Config::default();
    let gateway_partitions: HashMap<String, i32> = Render::all("ingest-gateway")
        .into_iter()
        .map(|render| {
            let config: ingest_gateway::Config =
                load("ingest-gateway", &render.label, &render.config_toml("ingest-gateway"), &render.env());
            (render.label, config.ingest.raw_topic_partitions)
        })
        .collect();
    for render in Render::all("stream-processor") {
        let config: stream_processor::Config =
            load("stream-processor", &render.label, &render.config_toml("stream-processor"), &render.env());
        check_deployment("stream-processor", &render, &config.http, &defaults.http, config.processor.shutdown_flush);
        // The raw topic's partitions: the gateway's setting in the same CI scenario, else its default.
        let partitions = gateway_partitions
            .get(&render.label)
            .copied()
            .unwrap_or(ingest_gateway::Config::default().ingest.raw_topic_partitions);
        let most = render.hpa_max().unwrap_or_else(|| replicas(&render));
        assert!(
            most <= u64::try_from(partitions).unwrap(),
            "stream-processor ({}): up to {most} consumers for {partitions} raw partitions",
            render.label
        );
    }
}

#[test]
fn aggregator_cron_chart_matches_its_configuration_and_runs_one_replica() {
    let defaults = aggregator_cron::Config::default();
    for render in Render::all("aggregator-cron") {
        let config: aggregator_cron::Config =
            load("aggregator-cron", &render.label, &render.config_toml("aggregator-cron"), &render.env());
        check_deployment("aggregator-cron", &render, &config.http, &defaults.http, Duration::ZERO);
        assert_eq!(replicas(&render), 1, "aggregator-cron ({}): exactly one replica", render.label);
        assert!(render.hpa_max().is_none(), "aggregator-cron ({}): no autoscaler", render.label);
        assert!(render.of_kind("Ingress").is_empty(), "aggregator-cron has no API");
    }
}

/// What `migrate` reads (crates/migrate: the same two sections).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Databases {
    clickhouse: ClickHouseConfig,
    postgres: PostgresConfig,
}

#[test]
fn the_migration_hook_runs_migrate_before_install_and_upgrade_in_the_query_api_chart_only() {
    let mut seen = false;
    for chart in ["query-api", "ingest-gateway", "realtime-hub", "stream-processor", "aggregator-cron"] {
        for render in Render::all(chart) {
            let jobs = render.of_kind("Job");
            if chart != "query-api" {
                assert!(jobs.is_empty(), "{chart} ({}) renders a Job", render.label);
                continue;
            }
            let Some(job) = jobs.first() else { continue };
            seen = true;
            let hooks = job["metadata"]["annotations"]["helm.sh/hook"].as_str().unwrap();
            assert_eq!(hooks, "pre-install,pre-upgrade");
            let container = &job["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(container["command"][0], "/usr/local/bin/migrate");
            assert_eq!(container["image"], render.container()["image"], "the Job migrates with the service's image");
            let toml = render.config_toml("migrate");
            let env = with_tls_files(&render.label, container);
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
            let path = dir.join(format!("migrate-{}-{}.toml", render.label, std::process::id()));
            std::fs::write(&path, &toml).unwrap();
            let databases: Databases = service_kit::config::load_from("migrate", Some(&path), &env)
                .unwrap_or_else(|err| panic!("migrate refuses the hook's configuration: {err}\n{toml}"));
            let service: query_api::Config =
                load("query-api", &render.label, &render.config_toml("query-api"), &render.env());
            assert_eq!(databases.clickhouse, service.clickhouse, "the hook migrates the ClickHouse the service reads");
            assert_eq!(databases.postgres.url, service.postgres.url, "the hook migrates the service's PostgreSQL");
            assert_eq!(
                databases.postgres.ca_file, service.postgres.ca_file,
                "{}: the hook trusts the PostgreSQL CA the service trusts",
                render.label
            );
        }
    }
    assert!(seen, "the query-api chart renders no migration Job by default");
}

/// Each CA setting of `chart`'s service as its `Config` loads it (`None`:
/// unset, the system store), by key, and its start-up problems.
fn ca_settings(
    chart: &str,
    render: &Render,
    env: &HashMap<String, String>,
) -> (BTreeMap<String, Option<String>>, Vec<String>) {
    fn path(p: &Option<PathBuf>) -> Option<String> {
        p.as_ref().map(|p| p.display().to_string())
    }
    fn kafka(k: &service_kit::KafkaConfig) -> Option<String> {
        k.librdkafka_properties().find(|(name, _)| name == "ssl.ca.location").map(|(_, v)| v.to_owned())
    }
    fn loaded<C: ServiceConfig + serde::de::DeserializeOwned>(
        chart: &str,
        render: &Render,
        env: &HashMap<String, String>,
    ) -> (C, Vec<String>) {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chart-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{chart}-{}-ca.toml", render.label));
        std::fs::write(&file, render.config_toml(chart)).unwrap();
        let config: C = service_kit::config::load_from(chart, Some(&file), env)
            .unwrap_or_else(|err| panic!("{chart} ({}) refuses the chart's configuration: {err}", render.label));
        let problems = config.validate().err().unwrap_or_default();
        (config, problems)
    }
    let mut cas = BTreeMap::new();
    let problems = match chart {
        "query-api" => {
            let (c, problems) = loaded::<query_api::Config>(chart, render, env);
            cas.insert("clickhouse.ca_file".to_owned(), path(&c.clickhouse.ca_file));
            cas.insert("postgres.ca_file".to_owned(), path(&c.postgres.ca_file));
            cas.insert("redis.ca_file".to_owned(), path(&c.redis.ca_file));
            cas.insert("kafka.properties.ssl.ca.location".to_owned(), kafka(&c.kafka));
            problems
        }
        "ingest-gateway" => {
            let (c, problems) = loaded::<ingest_gateway::Config>(chart, render, env);
            cas.insert("postgres.ca_file".to_owned(), path(&c.postgres.ca_file));
            cas.insert("kafka.properties.ssl.ca.location".to_owned(), kafka(&c.kafka));
            problems
        }
        "realtime-hub" => {
            let (c, problems) = loaded::<realtime_hub::Config>(chart, render, env);
            cas.insert("postgres.ca_file".to_owned(), path(&c.postgres.ca_file));
            cas.insert("kafka.properties.ssl.ca.location".to_owned(), kafka(&c.kafka));
            problems
        }
        "stream-processor" => {
            let (c, problems) = loaded::<stream_processor::Config>(chart, render, env);
            cas.insert("clickhouse.ca_file".to_owned(), path(&c.clickhouse.ca_file));
            cas.insert("kafka.properties.ssl.ca.location".to_owned(), kafka(&c.kafka));
            problems
        }
        "aggregator-cron" => {
            let (c, problems) = loaded::<aggregator_cron::Config>(chart, render, env);
            cas.insert("clickhouse.ca_file".to_owned(), path(&c.clickhouse.ca_file));
            cas.insert("postgres.ca_file".to_owned(), path(&c.postgres.ca_file));
            problems
        }
        other => panic!("unknown chart {other}"),
    };
    (cas, problems)
}

/// With `ci/tls-values.yaml` every CA setting of every service points at a
/// file of the mounted `tls` volume and the service accepts it (a real
/// certificate there); with those files absent (a Secret lacking a key) each
/// `*.ca_file` is a start-up error naming its key, not only a failing
/// readiness check later; with the defaults every client trusts the system
/// store.
#[test]
fn with_tls_values_every_client_trusts_the_mounted_files_and_start_up_checks_them() {
    for chart in ["query-api", "ingest-gateway", "realtime-hub", "stream-processor", "aggregator-cron"] {
        let renders = Render::all(chart);
        let tls = renders
            .iter()
            .find(|r| r.label == "tls")
            .unwrap_or_else(|| panic!("{chart}: no render of ci/tls-values.yaml"));
        let mount =
            tls_mount(tls.container()).unwrap_or_else(|| panic!("{chart} (tls): the container mounts no tls volume"));
        let scratch = tls_scratch(&tls.label).join(mount.trim_start_matches('/'));
        let (cas, problems) = ca_settings(chart, tls, &tls.env());
        assert!(problems.is_empty(), "{chart} (tls): the service refuses its CA files: {problems:?}");
        for (key, file) in &cas {
            let file = file.as_deref().unwrap_or_else(|| panic!("{chart} (tls): {key} is not set"));
            assert!(
                Path::new(file).starts_with(&scratch) && Path::new(file).is_file(),
                "{chart} (tls): {key} = {file}, not a file of the tls mount {mount}"
            );
        }

        let raw = plain_env(tls.container());
        let (raw_cas, problems) = ca_settings(chart, tls, &raw);
        for (key, file) in &raw_cas {
            let file = file.as_deref().unwrap();
            assert!(file.starts_with(&format!("{mount}/")), "{chart} (tls): {key} = {file}, outside the mount {mount}");
            if key.ends_with(".ca_file") && !Path::new(file).exists() {
                assert!(
                    problems.iter().any(|p| p.contains(key.as_str()) && p.contains(file)),
                    "{chart} (tls): a missing {key} ({file}) must be a start-up problem naming it: {problems:?}"
                );
            }
        }

        for render in renders.iter().filter(|r| tls_mount(r.container()).is_none()) {
            let (cas, _) = ca_settings(chart, render, &render.env());
            for (key, file) in cas {
                assert_eq!(file, None, "{chart} ({}): {key} set without tls values", render.label);
            }
        }
    }
}

#[test]
fn the_image_runs_as_the_charts_numeric_user() {
    let dockerfile = std::fs::read_to_string(root().join("docker/Dockerfile")).unwrap();
    let users: Vec<&str> =
        dockerfile.lines().filter_map(|line| line.trim().strip_prefix("USER ")).map(str::trim).collect();
    assert_eq!(users, [format!("{IMAGE_USER}:{IMAGE_USER}")], "docker/Dockerfile's USER lines");
}

/// Each chart ships its Grafana dashboard as a ConfigMap labelled for the
/// Grafana sidecar (`grafana_dashboard: "1"`): the rendered JSON is exactly
/// deploy/grafana/dashboards/<file> (the source), and nothing is rendered
/// where the values turn it off.
#[test]
fn each_chart_ships_its_dashboard_for_the_grafana_sidecar() {
    let charts = [
        ("ingest-gateway", "ingest-gateway.json"),
        ("stream-processor", "stream-processor.json"),
        ("aggregator-cron", "aggregator-cron.json"),
        ("query-api", "query-api.json"),
        ("realtime-hub", "realtime-hub.json"),
        ("analytics-alerts", "overview.json"),
    ];
    // The ci values that set `dashboards.enabled: false`.
    let disabled = [("ingest-gateway", "existing-secret"), ("analytics-alerts", "disabled")];
    for (chart, file) in charts {
        let path = root().join("deploy/grafana/dashboards").join(file);
        let source: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        for render in Render::all(chart) {
            let maps: Vec<&Value> = render
                .of_kind("ConfigMap")
                .into_iter()
                .filter(|m| m["metadata"]["labels"]["grafana_dashboard"] == "1")
                .collect();
            if disabled.contains(&(chart, render.label.as_str())) {
                assert!(maps.is_empty(), "{chart}/{}: a dashboard ConfigMap although disabled", render.label);
                continue;
            }
            assert_eq!(maps.len(), 1, "{chart}/{}: one ConfigMap labelled grafana_dashboard=1", render.label);
            let data = maps[0]["data"].as_object().unwrap();
            assert_eq!(data.keys().collect::<Vec<_>>(), [file], "{chart}/{}: the ConfigMap's keys", render.label);
            let rendered: Value = serde_json::from_str(data[file].as_str().unwrap())
                .unwrap_or_else(|e| panic!("{chart}/{}: the rendered dashboard is not JSON: {e}", render.label));
            assert!(
                rendered == source,
                "{chart}/{}: the rendered dashboard differs from {}",
                render.label,
                path.display()
            );
            if render.label == "full" || render.label == "custom" {
                assert_eq!(
                    maps[0]["metadata"]["annotations"]["grafana_folder"], "Video analytics",
                    "{chart}/{}: dashboards.annotations",
                    render.label
                );
            }
        }
    }
}
