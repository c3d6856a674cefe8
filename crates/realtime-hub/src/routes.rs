//! The hub's routes table besides `/health`, `/ready` and `/metrics`:
//! `GET /ws` (WebSocket), `GET /api/metrics/realtime`, the dashboard
//! (`GET /` and `/assets/*`, embedded in the binary) and `GET
//! /api/openapi.json` ([`crate::openapi`]). Undeclared methods answer 405
//! with `Allow`, unknown paths a JSON 404.

use std::sync::{Arc, LazyLock};

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{self, HeaderValue},
    web,
};
use serde_json::json;
use service_kit::{
    auth::Caller,
    cors::CorsPolicy,
    rate::{ConcurrencyLimit, Permit},
    routes::Routes,
};
use utoipa::openapi::HttpMethod;

use crate::{
    HubConfig, client, consumer::now_ms, hub::Hub, openapi, protocol::MAX_CLIENT_MESSAGE_BYTES, window::RealtimeMetrics,
};

pub const WS_PATH: &str = "/ws";
pub const REALTIME_PATH: &str = "/api/metrics/realtime";
pub const OPENAPI_PATH: &str = "/api/openapi.json";

/// A file of the dashboard, built by `web/` (see the crate README).
pub struct Asset {
    pub path: &'static str,
    pub body: &'static [u8],
    pub content_type: &'static str,
    pub cache_control: &'static str,
}

const REVALIDATE: &str = "no-cache";
const SHORT: &str = "public, max-age=300, must-revalidate";

pub static ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        body: include_bytes!("../assets/index.html"),
        content_type: "text/html; charset=utf-8",
        cache_control: REVALIDATE,
    },
    Asset {
        path: "/assets/app.js",
        body: include_bytes!("../assets/app.js"),
        content_type: "text/javascript; charset=utf-8",
        cache_control: SHORT,
    },
    Asset {
        path: "/assets/app.css",
        body: include_bytes!("../assets/app.css"),
        content_type: "text/css; charset=utf-8",
        cache_control: SHORT,
    },
    Asset {
        path: "/assets/uPlot.iife.min.js",
        body: include_bytes!("../assets/uPlot.iife.min.js"),
        content_type: "text/javascript; charset=utf-8",
        cache_control: SHORT,
    },
    Asset {
        path: "/assets/uPlot.min.css",
        body: include_bytes!("../assets/uPlot.min.css"),
        content_type: "text/css; charset=utf-8",
        cache_control: SHORT,
    },
    Asset {
        path: "/assets/uPlot.LICENSE.txt",
        body: include_bytes!("../assets/uPlot.LICENSE.txt"),
        content_type: "text/plain; charset=utf-8",
        cache_control: SHORT,
    },
    Asset {
        path: "/assets/favicon.svg",
        body: include_bytes!("../assets/favicon.svg"),
        content_type: "image/svg+xml",
        cache_control: SHORT,
    },
];

/// One strong ETag per asset: FNV-1a of its bytes.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let hash = asset
                .body
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
            format!("\"{hash:016x}\"")
        })
        .collect()
});

/// The Content-Security-Policy of the dashboard: no inline script or style,
/// nothing from elsewhere; WebSocket to this host only.
pub fn content_security_policy(host: Option<&str>) -> String {
    // 'self' covers ws(s) to the same host in current browsers; the explicit
    // sources serve the others. The Host header is used only if it is a plain host[:port].
    let socket = host
        .filter(|h| {
            !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map(|h| format!(" ws://{h} wss://{h}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; \
         connect-src 'self'{socket}; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// The hub's routes table: each route with its OpenAPI operation.
pub fn routes(config: &HubConfig) -> Routes {
    let mut routes = Routes::new()
        .described(HttpMethod::Get, WS_PATH, openapi::websocket(config), || web::get().to(websocket))
        .described(HttpMethod::Get, REALTIME_PATH, openapi::realtime(), || web::get().to(realtime))
        .described(HttpMethod::Get, OPENAPI_PATH, openapi::get_document(), || web::get().to(openapi_document));
    for (index, asset) in ASSETS.iter().enumerate() {
        let operation = openapi::asset(asset.path, asset.content_type, asset.cache_control);
        routes = routes.described(HttpMethod::Get, asset.path, operation, move || {
            web::get().to(move |req: HttpRequest| async move { serve_asset(index, &req) })
        });
    }
    routes
}

/// The served document, built once from the routes and the configuration.
struct Document(serde_json::Value);

/// Mounts [`routes`] and a JSON 404 for unknown paths.
///
/// `origins` are the web origins besides the hub's own whose pages may open
/// `/ws` (`http.cors_allowed_origins`; see [`origin_allowed`]).
pub fn configure(hub: Arc<Hub>, origins: CorsPolicy) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    let routes = routes(&hub.config);
    let document = openapi::document(&routes.clone().merge(service_kit::ops::operational_routes()), &hub.config);
    let document = web::Data::new(Document(document));
    let origins = web::Data::new(WsOrigins(origins));
    let limits = web::Data::new(WsLimits {
        per_token: ConcurrencyLimit::new("connections_per_token", hub.config.max_connections_per_token),
        per_ip: ConcurrencyLimit::new("connections_per_ip", hub.config.max_connections_per_ip),
    });
    move |cfg| {
        cfg.app_data(web::Data::from(hub.clone()))
            .app_data(document.clone())
            .app_data(origins.clone())
            .app_data(limits.clone());
        routes.register(cfg);
        cfg.default_service(web::to(service_kit::routes::not_found));
    }
}

async fn openapi_document(document: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok().json(&document.0)
}

/// The origins whose pages may open `/ws` besides the hub's own.
struct WsOrigins(CorsPolicy);

/// The places one socket holds while open: its token's and its address's.
type WsPermits = (Option<Permit<String>>, Option<Permit<std::net::IpAddr>>);

/// Open WebSocket connections per token and per client IP.
struct WsLimits {
    per_token: Arc<ConcurrencyLimit<String>>,
    per_ip: Arc<ConcurrencyLimit<std::net::IpAddr>>,
}

impl WsLimits {
    /// The places a new connection of `req` holds while open, or the 429.
    #[allow(clippy::result_large_err)]
    fn admit(&self, req: &HttpRequest) -> Result<WsPermits, HttpResponse> {
        let token = match Caller::of(req) {
            Some(caller) => Some(self.per_token.try_acquire(&caller.id, &caller.name).map_err(|l| l.response())?),
            None => None,
        };
        let ip = match req.peer_addr() {
            Some(addr) => Some(self.per_ip.try_acquire(&addr.ip(), "by_ip").map_err(|l| l.response())?),
            None => None,
        };
        Ok((token, ip))
    }
}

/// Whether a handshake's `Origin` may open a socket: no `Origin` (not a
/// browser: players, tools, other services), the hub's own origin (the
/// dashboard it serves: `Origin`'s host and port equal the `Host` header), or
/// an origin of `allowed`. Browsers send `Origin` on every WebSocket
/// handshake and CORS does not apply to WebSockets, so without this check
/// any web page could read the live feed through its visitors' browsers.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &CorsPolicy) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let authority = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
    let same_origin = matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h));
    same_origin || allowed.allows(origin)
}

/// `GET /ws`: upgrades to a WebSocket; 403 for a page of a foreign origin,
/// 503 when `max_connections` are open.
async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    hub: web::Data<Hub>,
    origins: web::Data<WsOrigins>,
    limits: web::Data<WsLimits>,
) -> actix_web::Result<HttpResponse> {
    let origin = req.headers().get(header::ORIGIN).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok());
    if !origin_allowed(origin.as_deref(), host, &origins.0) {
        let origin = origin.unwrap_or_default();
        tracing::info!(origin = %origin.chars().take(128).collect::<String>(), "websocket refused: origin not allowed");
        return Ok(HttpResponse::Forbidden().json(json!({
            "error": "origin_not_allowed",
            "message": "pages of this origin may not open the live feed; add the origin to the hub's \
                        http.cors_allowed_origins to allow it",
        })));
    }
    let permits = match limits.admit(&req) {
        Ok(permits) => permits,
        Err(refusal) => return Ok(refusal),
    };
    let hub = hub.into_inner();
    let Some(slot) = hub.try_connect() else {
        tracing::warn!(max_connections = hub.config.max_connections, "websocket connection refused: server full");
        return Ok(HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .json(json!({"error": "too many websocket connections; retry later"})));
    };
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream.max_frame_size(MAX_CLIENT_MESSAGE_BYTES);
    actix_web::rt::spawn(async move {
        let _permits = permits;
        client::serve(hub, slot, session, stream).await;
    });
    Ok(response)
}

/// `GET /api/metrics/realtime`: the figures of the window at the last tick,
/// the same object (and bytes) as the last pushed `realtime_metrics`
/// payload, so at most one `metrics_interval` old; a request computes
/// nothing. Only before the first tick is the window computed for the
/// request. Like query-api's, it takes no query parameters and answers 400
/// to any.
async fn realtime(req: HttpRequest, hub: web::Data<Hub>) -> actix_web::Result<HttpResponse> {
    if let Some(refusal) = refuse_query_parameters(req.query_string()) {
        return Ok(refusal);
    }
    if let Some(body) = hub.realtime_body() {
        return Ok(HttpResponse::Ok().insert_header(header::ContentType::json()).body(body));
    }
    let figures = web::block(move || hub.figures(now_ms())).await?;
    let metrics: RealtimeMetrics = figures.metrics;
    Ok(HttpResponse::Ok().json(metrics))
}

/// A 400 in query-api's error shape naming the first parameter, for an
/// endpoint that takes none; `None` for an empty query string.
fn refuse_query_parameters(query_string: &str) -> Option<HttpResponse> {
    if query_string.is_empty() {
        return None;
    }
    let bad_request = |message: String, field: Option<String>| {
        let mut body = json!({ "error": "bad_request", "message": message });
        if let Some(field) = field {
            body["field"] = json!(field);
        }
        HttpResponse::BadRequest().json(body)
    };
    let pairs = match web::Query::<Vec<(String, String)>>::from_query(query_string) {
        Ok(pairs) => pairs.into_inner(),
        Err(error) => return Some(bad_request(format!("unreadable query string: {error}"), None)),
    };
    // `token` carries the credential (`service_kit::auth`).
    let (name, _) = pairs.into_iter().find(|(name, _)| name != "token")?;
    let name: String = name.chars().take(64).collect();
    let message = format!("unknown query parameter {name:?}; this endpoint takes none");
    Some(bad_request(message, Some(name)))
}

fn serve_asset(index: usize, req: &HttpRequest) -> HttpResponse {
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut response = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header((header::CONTENT_TYPE, asset.content_type))
        .insert_header((header::CACHE_CONTROL, asset.cache_control))
        .insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if asset.content_type.starts_with("text/html") {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
        if let Ok(csp) = HeaderValue::from_str(&content_security_policy(host)) {
            response.insert_header((header::CONTENT_SECURITY_POLICY, csp));
        }
    }
    if fresh { response.finish() } else { response.body(asset.body) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_assets() {
        let index = std::str::from_utf8(ASSETS[0].body).unwrap();
        for path in ["/assets/app.js", "/assets/app.css", "/assets/uPlot.iife.min.js", "/assets/uPlot.min.css"] {
            assert!(index.contains(&format!("\"{path}\"")), "index.html lacks {path}");
            assert!(ASSETS.iter().any(|a| a.path == path));
        }
        assert!(!index.contains("<script>"), "no inline script");
        assert!(!index.contains("style="), "no inline style");
        assert!(!index.contains("http://") && !index.contains("https://"), "nothing from elsewhere");
        for id in [
            "concurrent-viewers",
            "events-per-second",
            "error-rate",
            "bandwidth",
            "active-streams",
            "event-feed",
            "connection-state",
            "top-videos",
            "filter-video-ids",
            "filter-event-types",
            "filter-apply",
        ] {
            assert!(index.contains(&format!("id=\"{id}\"")), "index.html lacks #{id}");
        }
        let license =
            std::str::from_utf8(ASSETS.iter().find(|a| a.path.ends_with("LICENSE.txt")).unwrap().body).unwrap();
        assert!(license.contains("MIT"));
    }

    #[test]
    fn csp_forbids_inline_code_and_names_the_socket_host() {
        let csp = content_security_policy(Some("hub.example:3002"));
        assert!(csp.contains("script-src 'self';"));
        assert!(!csp.contains("unsafe"));
        assert!(csp.contains("connect-src 'self' ws://hub.example:3002 wss://hub.example:3002;"));
        let hostile = content_security_policy(Some("x; script-src *"));
        assert!(hostile.contains("connect-src 'self';"), "{hostile}");
    }

    #[test]
    fn etags_are_stable_and_distinct() {
        assert_eq!(ETAGS.len(), ASSETS.len());
        let distinct: std::collections::HashSet<_> = ETAGS.iter().collect();
        assert_eq!(distinct.len(), ASSETS.len());
    }

    #[test]
    fn a_websocket_origin_must_be_the_hubs_own_or_listed() {
        let none = CorsPolicy::None;
        let host = Some("hub.example:3002");
        assert!(origin_allowed(None, host, &none), "no Origin: not a browser");
        assert!(origin_allowed(Some("http://hub.example:3002"), host, &none), "the dashboard");
        assert!(origin_allowed(Some("https://HUB.example:3002"), host, &none));
        assert!(!origin_allowed(Some("http://hub.example:3003"), host, &none), "another port is another origin");
        assert!(!origin_allowed(Some("https://evil.example"), host, &none));
        assert!(!origin_allowed(Some("null"), host, &none));
        assert!(!origin_allowed(Some("http://hub.example:3002"), None, &none));
        let listed = CorsPolicy::from_config(&["https://ops.example".to_owned()]).unwrap();
        assert!(origin_allowed(Some("https://ops.example"), host, &listed));
        assert!(!origin_allowed(Some("https://evil.example"), host, &listed));
    }
}
