//! Tests only (`tests/charts.rs`): the Helm charts of `helm/` rendered by the
//! real `helm`, decoded strictly against the Kubernetes API types by the Go
//! test in `helm/tests`, then compared with the services' own configuration:
//! each rendered TOML ConfigMap must load with the service's `Config` (no
//! unknown key), and the container ports, probe paths and timeouts, user id,
//! termination grace and replica rules must agree with what it loads and with
//! the services' defaults.
