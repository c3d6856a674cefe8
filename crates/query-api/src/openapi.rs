//! The OpenAPI 3 document served at `/api/openapi.json`: the paths of the
//! routes table ([`crate::routes`]), each described by its handler's
//! `#[utoipa::path]`, with the schemas, tags and exact parameter schemas
//! ([`crate::contract`]) added here.

use service_kit::routes::Routes;
use utoipa::{
    OpenApi,
    openapi::{ObjectBuilder, OpenApi as Document, RefOr, Schema, Type},
};

use crate::{catalog, contract, custom_query, error, handlers, metric_api};

#[derive(OpenApi)]
#[openapi(
    info(title = "query-api", description = "Analytics queries, the video catalog and operational endpoints."),
    components(schemas(
        catalog::Video,
        catalog::VideoInput,
        error::ErrorBody,
        handlers::MetricsHealth,
        handlers::DependencyHealth,
        handlers::ConsumerLag,
        metrics_sql::responses::VideoMetrics,
        metrics_sql::responses::StartupTime,
        metrics_sql::responses::CatalogStatus,
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

/// The document of `routes`.
pub fn build(routes: &Routes) -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.paths = routes.paths();
    exact_parameters(&mut doc);
    secured(&mut doc);
    doc
}

/// Marks every operation [`crate::rules`] protects with the bearer scheme
/// and the answers of a refused token (401, 403, 429).
fn secured(doc: &mut Document) {
    use utoipa::openapi::{
        ContentBuilder, Ref, ResponseBuilder,
        security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme},
    };
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    let error = || ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    let answers = [
        ("401", "no token, or an unknown or revoked one"),
        ("403", "the token lacks the scope this operation needs (`read`; `admin` for catalog writes)"),
        ("429", "over the token's requests per second or concurrent custom queries; retry after `Retry-After` seconds"),
    ];
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            (actix_web::http::Method::GET, &mut item.get),
            (actix_web::http::Method::PUT, &mut item.put),
            (actix_web::http::Method::POST, &mut item.post),
            (actix_web::http::Method::DELETE, &mut item.delete),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let Some(scope) = crate::rules(&method, path) else { continue };
            operation.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
            for (status, description) in answers {
                let description = if status == "403" {
                    format!("{description}; this one needs `{scope}`")
                } else {
                    description.to_owned()
                };
                let mut answer = ResponseBuilder::new().description(description).content("application/json", error());
                if status == "429" {
                    answer = answer.header(
                        "Retry-After",
                        utoipa::openapi::HeaderBuilder::new()
                            .schema(ObjectBuilder::new().schema_type(Type::Integer))
                            .build(),
                    );
                }
                operation.responses.responses.insert(status.to_owned(), answer.build().into());
            }
        }
    }
}

/// Gives every parameter the exact schema of what the handlers accept
/// ([`contract`]): path ids and days by their names, the top list's
/// `metric` and `limit` by theirs. One place, so an endpoint that takes a
/// `startDate` cannot describe it differently from the others.
fn exact_parameters(doc: &mut Document) {
    for item in doc.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            for parameter in operation.parameters.iter_mut().flatten() {
                let schema: Option<RefOr<Schema>> = match parameter.name.as_str() {
                    "videoId" | "userId" => Some(contract::path_id().into()),
                    "startDate" | "endDate" => Some(contract::day().into()),
                    "metric" => Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(metrics_sql::read::TopMetric::ALL.map(|m| m.name())))
                            .into(),
                    ),
                    "limit" => Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1))
                            .maximum(Some(metric_api::MAX_TOP_LIMIT))
                            .into(),
                    ),
                    _ => None,
                };
                if schema.is_some() {
                    parameter.schema = schema;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::routes::document;

    #[test]
    fn the_document_is_openapi_3_with_its_schemas() {
        let json = serde_json::to_value(document()).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3."), "{}", json["openapi"]);
        for schema in ["Video", "VideoInput", "ErrorBody", "MetricsHealth", "QueryRequest", "Filter", "QueryResponse"] {
            assert!(json["components"]["schemas"].get(schema).is_some(), "missing schema {schema}");
        }
    }

    #[test]
    fn the_document_describes_the_operational_endpoints_too() {
        let json = serde_json::to_value(document()).unwrap();
        for path in ["/health", "/ready", "/metrics", "/api/openapi.json", "/api/metrics/query"] {
            assert!(json["paths"].get(path).is_some(), "missing path {path}");
        }
    }
}
