//! `promtool check metrics` (Debian's `prometheus` package) finds nothing on
//! the metrics of the five services after real traffic: every series has
//! HELP text, counters end in `_total`, histograms have buckets.
//!
//! The services run in-process (one recorder for the process, so one page
//! holds every service's series); each finding is attributed to the service
//! whose section of docs/observability.md lists the metric. Each service's
//! own page, from its real binary, is checked the same way by its lifecycle
//! test (`service_kit::testing::assert_lifecycle`). A missing promtool fails
//! the test.
#![cfg(test)]

#[path = "../../realtime-hub/tests/common/mod.rs"]
mod common;
mod observed;
mod pipeline;
mod support;

use observed::{metric_of, owners};
use service_kit::testing;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_on_the_services_metrics_after_traffic() {
    let page = observed::page_after_traffic().await;
    let findings = testing::promtool_metric_findings(&page).expect("promtool runs");
    let owners = owners();
    let attributed: Vec<String> = findings
        .iter()
        .map(|finding| {
            let owner = owners.get(metric_of(finding)).map_or("a metric docs/observability.md does not list", |o| o);
            format!("[{owner}] {finding}")
        })
        .collect();
    assert!(
        attributed.is_empty(),
        "promtool check metrics found:\n  {}\n--- the page ---\n{page}",
        attributed.join("\n  ")
    );
}

/// The check is not vacuous: a page with an undescribed counter, a counter
/// without `_total` and a histogram without buckets gives one finding each.
#[test]
fn the_check_reports_missing_help_bad_names_and_bucketless_histograms() {
    let page = "# TYPE analytics_service_x_total counter\nanalytics_service_x_total 1\n\
                # HELP analytics_service_y a counter\n# TYPE analytics_service_y counter\nanalytics_service_y 1\n\
                # HELP analytics_service_z_seconds a summary\n# TYPE analytics_service_z_seconds summary\n\
                analytics_service_z_seconds_sum 1\nanalytics_service_z_seconds_count 1\n";
    let findings = testing::promtool_metric_findings(page).expect("promtool runs");
    let has = |metric: &str, what: &str| findings.iter().any(|f| metric_of(f) == metric && f.contains(what));
    assert!(has("analytics_service_x_total", "no help text"), "{findings:?}");
    assert!(has("analytics_service_y", "_total"), "{findings:?}");
    assert!(has("analytics_service_z_seconds", "without buckets"), "{findings:?}");
    assert!(testing::promtool_check_metrics("a test page", page).is_err());
}
