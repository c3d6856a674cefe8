//! The OpenAPI 3 document served at `/api/openapi.json`.
//!
//! The API's own handlers are described by their `#[utoipa::path]`
//! attributes; `/health`, `/ready` and `/metrics` come from `service_kit::ops`
//! and are described here by hand. [`ROUTES`] lists every route this crate
//! serves; a test keeps it and the document in step.

use std::sync::OnceLock;

use utoipa::{
    OpenApi,
    openapi::{
        ContentBuilder, HttpMethod, ObjectBuilder, OpenApi as Document, ResponseBuilder, Type, path::OperationBuilder,
    },
};

use crate::{catalog, custom_query, error, handlers, metric_api};

/// Every `(method, path)` the service answers, in OpenAPI path syntax.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("get", handlers::METRICS_HEALTH_PATH),
    ("get", metric_api::VIDEO_METRICS_PATH),
    ("get", metric_api::USER_METRICS_PATH),
    ("get", metric_api::TOP_VIDEOS_PATH),
    ("get", metric_api::REALTIME_PATH),
    ("post", handlers::QUERY_PATH),
    ("get", handlers::OPENAPI_PATH),
    ("get", handlers::VIDEO_PATH),
    ("put", handlers::VIDEO_PATH),
];

#[derive(OpenApi)]
#[openapi(
    info(title = "query-api", description = "Analytics queries, the video catalog and operational endpoints."),
    paths(
        handlers::put_video,
        handlers::get_video,
        handlers::metrics_health,
        metric_api::get_video_metrics,
        metric_api::get_user_metrics,
        metric_api::get_top_videos,
        metric_api::get_realtime,
        custom_query::post_query,
        handlers::openapi_document
    ),
    components(schemas(
        catalog::Video,
        catalog::VideoInput,
        error::ErrorBody,
        handlers::MetricsHealth,
        handlers::DependencyHealth,
        handlers::ConsumerLag,
        metrics_sql::responses::VideoMetrics,
        metrics_sql::responses::StartupTime,
        metrics_sql::responses::Freshness,
        metrics_sql::responses::UserMetrics,
        metrics_sql::responses::Preferences,
        metrics_sql::responses::TopVideos,
        metrics_sql::responses::TopVideo,
        metrics_sql::responses::RealtimeMetrics,
        custom_query::QueryRequest,
        custom_query::Filter,
        custom_query::QueryResponse
    )),
    tags(
        (name = "catalog", description = "the video catalog in PostgreSQL"),
        (name = "metrics", description = "analytics over the events in ClickHouse"),
        (name = "operations", description = "liveness, readiness, dependency status, metrics"),
    )
)]
struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

fn build() -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    let json_object = || ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::Object))).build();
    let ops = [
        ("/health", "liveness: 200 while the process answers", "application/json", None),
        (
            "/ready",
            "readiness: every dependency probed with a real request; 200 when all answer",
            "application/json",
            Some("a dependency is down or shutdown has begun"),
        ),
        ("/metrics", "Prometheus text exposition", "text/plain", None),
    ];
    for (path, summary, content_type, unavailable) in ops {
        let content = if content_type == "application/json" {
            json_object()
        } else {
            ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::String))).build()
        };
        let mut operation = OperationBuilder::new()
            .summary(Some(summary))
            .tag("operations")
            .response("200", ResponseBuilder::new().description("ok").content(content_type, content));
        if let Some(description) = unavailable {
            operation = operation
                .response("503", ResponseBuilder::new().description(description).content(content_type, json_object()));
        }
        doc.paths.add_path_operation(path, vec![HttpMethod::Get], operation.build());
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `(method, path)` the document describes.
    fn documented() -> Vec<(String, String)> {
        let json = serde_json::to_value(document()).unwrap();
        let mut found = Vec::new();
        for (path, item) in json["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                found.push((method.clone(), path.clone()));
            }
        }
        found.sort();
        found
    }

    #[test]
    fn the_document_describes_exactly_the_served_routes() {
        let mut served: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        served.sort();
        assert_eq!(documented(), served);
    }

    #[test]
    fn the_document_is_openapi_3_with_its_schemas() {
        let json = serde_json::to_value(document()).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3."), "{}", json["openapi"]);
        for schema in ["Video", "VideoInput", "ErrorBody", "MetricsHealth", "QueryRequest", "Filter", "QueryResponse"] {
            assert!(json["components"]["schemas"].get(schema).is_some(), "missing schema {schema}");
        }
    }
}
