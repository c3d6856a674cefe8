//! The query API's routes table: every endpoint once, with the
//! `#[utoipa::path]` description its route and its OpenAPI operation are
//! both made from ([`service_kit::routes::Routes`]). `/health`, `/ready`
//! and `/metrics` come from `service_kit::ops`.

use std::sync::OnceLock;

use actix_web::{HttpResponse, web};
use service_kit::routes::{Routes, not_found};
use utoipa::openapi::OpenApi as Document;

use crate::{custom_query, error::ApiError, handlers, metric_api, openapi, state::AppState};

/// Largest JSON request body accepted.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// Every API route of the service.
pub fn routes() -> Routes {
    Routes::new()
        .handler::<metric_api::__path_get_video_metrics, _, _>(metric_api::get_video_metrics)
        .handler::<metric_api::__path_get_user_metrics, _, _>(metric_api::get_user_metrics)
        .handler::<metric_api::__path_get_top_videos, _, _>(metric_api::get_top_videos)
        .handler::<metric_api::__path_get_realtime, _, _>(metric_api::get_realtime)
        .handler::<custom_query::__path_post_query, _, _>(custom_query::post_query)
        .handler::<handlers::__path_put_video, _, _>(handlers::put_video)
        .handler::<handlers::__path_get_video, _, _>(handlers::get_video)
        .handler::<handlers::__path_metrics_health, _, _>(handlers::metrics_health)
        .handler::<__path_openapi_document, _, _>(openapi_document)
}

/// Registers [`routes`], JSON error answers for unreadable bodies and a
/// JSON 404 for unknown paths.
pub fn configure(state: web::Data<AppState>) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    let routes = routes();
    move |cfg| {
        let json = web::JsonConfig::default()
            .limit(MAX_JSON_BYTES)
            .error_handler(|error, _req| ApiError::from_json_payload(&error).into());
        cfg.app_data(state.clone()).app_data(json);
        routes.register(cfg);
        cfg.default_service(web::to(not_found));
    }
}

/// The OpenAPI document of [`routes`] and the operational endpoints, built once.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(|| openapi::build(&routes().merge(service_kit::ops::operational_routes())))
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "operations",
    responses((status = 200, description = "the OpenAPI 3 document of this service", content_type = "application/json"))
)]
pub async fn openapi_document() -> HttpResponse {
    HttpResponse::Ok().json(document())
}
