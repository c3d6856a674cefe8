//! Cross-origin requests from browsers (CORS), the same way in every service.
//!
//! `[http] cors_allowed_origins` lists the origins a web page may call this
//! service from: exact origins (`https://player.example`, scheme and host and
//! an optional port, no path) or `"*"` for any. The ingest-gateway allows any
//! by default (players are embedded everywhere); query-api and realtime-hub
//! allow none (their answers are for internal users).
//!
//! For an allowed origin a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered `204` with the origin, the
//! requested method, the headers clients send (`content-type`,
//! `content-encoding`, `authorization`, `x-api-key`) and a one-hour max-age;
//! every other answer to that origin carries `Access-Control-Allow-Origin`
//! (the origin itself, never `*`, with `Vary: Origin`) and exposes
//! `Retry-After`. For any other origin nothing is added: the preflight gets
//! the route's own answer (405 for `OPTIONS`) and the browser refuses the
//! call. CORS decides what a browser lets a page read; it is not
//! authentication.

use std::{rc::Rc, sync::Arc};

use actix_web::{
    Error, HttpResponse,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        Method,
        header::{self, HeaderValue},
    },
    middleware::Next,
};

/// Request headers a page may send (answered to every allowed preflight).
pub const ALLOWED_HEADERS: &str = "content-type, content-encoding, authorization, x-api-key";
/// Methods a preflight may ask for; the route itself still answers 405 to the others.
pub const ALLOWED_METHODS: [Method; 4] = [Method::GET, Method::POST, Method::PUT, Method::DELETE];
/// How long a browser may reuse a preflight answer, in seconds.
pub const MAX_AGE_SECS: u32 = 3600;

/// Which origins may call a service from a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsPolicy {
    /// No origin: no CORS header is ever added.
    None,
    /// Any origin (`"*"`).
    Any,
    /// These exact origins (lower-case `scheme://host[:port]`).
    Origins(Arc<[String]>),
}

impl CorsPolicy {
    /// The policy of a configured list (see the module docs); each problem
    /// names the entry.
    pub fn from_config(origins: &[String]) -> Result<Self, Vec<String>> {
        if origins.is_empty() {
            return Ok(Self::None);
        }
        let mut problems = Vec::new();
        let mut exact = Vec::new();
        let mut any = false;
        for origin in origins {
            if origin == "*" {
                any = true;
            } else if let Err(problem) = check_origin(origin) {
                problems.push(format!("http.cors_allowed_origins: {origin:?} {problem}"));
            } else {
                exact.push(origin.to_ascii_lowercase());
            }
        }
        match (problems.is_empty(), any) {
            (false, _) => Err(problems),
            (true, true) => Ok(Self::Any),
            (true, false) => Ok(Self::Origins(exact.into())),
        }
    }

    /// Whether a page of `origin` may read this service's answers.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            Self::None => false,
            Self::Any => true,
            Self::Origins(list) => list.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin)),
        }
    }
}

/// `scheme://host[:port]` with an http(s) scheme and nothing after the host.
fn check_origin(origin: &str) -> Result<(), &'static str> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or("is not an origin: it must start with http:// or https://")?;
    if rest.contains(['/', '?', '#', ' ', '@']) {
        return Err("is not an origin: scheme://host[:port], without a path");
    }
    // The last colon starts a port unless it is inside an IPv6 literal (`[::1]`).
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if port.is_some_and(|port| port.parse::<u16>().is_err()) {
        return Err("has an invalid port");
    }
    Ok(())
}

/// The middleware of [`CorsPolicy`] (`actix_web::middleware::from_fn`).
pub async fn middleware(
    policy: Rc<CorsPolicy>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|value| value.to_str().is_ok_and(|origin| policy.allows(origin)))
        .cloned();
    let Some(origin) = origin else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if req.method() == Method::OPTIONS
        && let Some(requested) = req.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD)
        && let Some(method) = ALLOWED_METHODS.iter().find(|m| m.as_str().as_bytes() == requested.as_bytes())
    {
        let response = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, method.as_str()))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_SECS))
            .insert_header((header::VARY, "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"))
            .finish();
        return Ok(req.into_response(response));
    }
    let mut response = next.call(req).await?.map_into_boxed_body();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("retry-after"));
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn policies_come_from_the_configured_list() {
        assert_eq!(CorsPolicy::from_config(&[]).unwrap(), CorsPolicy::None);
        assert_eq!(CorsPolicy::from_config(&list(&["*"])).unwrap(), CorsPolicy::Any);
        let policy = CorsPolicy::from_config(&list(&["https://Player.example", "http://localhost:8080"])).unwrap();
        assert!(policy.allows("https://player.example"));
        assert!(policy.allows("http://localhost:8080"));
        assert!(!policy.allows("http://localhost:8081"));
        assert!(!policy.allows("https://player.example.evil"));
        assert!(!CorsPolicy::None.allows("https://player.example"));
        assert!(CorsPolicy::Any.allows("null"));
    }

    /// A service with one GET route behind the policy of `origins`.
    macro_rules! service {
        ($origins:expr) => {{
            let policy = Rc::new(CorsPolicy::from_config(&list($origins)).unwrap());
            actix_web::test::init_service(
                actix_web::App::new()
                    .wrap(actix_web::middleware::from_fn(move |req, next| middleware(policy.clone(), req, next)))
                    .route("/api/x", actix_web::web::get().to(|| async { HttpResponse::Ok().body("x") })),
            )
            .await
        }};
    }

    fn preflight(origin: &str) -> actix_web::test::TestRequest {
        actix_web::test::TestRequest::with_uri("/api/x")
            .method(Method::OPTIONS)
            .insert_header((header::ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "GET"))
    }

    #[actix_web::test]
    async fn an_allow_list_answers_its_origins_and_only_them() {
        let app = service!(&["https://dash.example"]);
        let ok = actix_web::test::call_service(&app, preflight("https://dash.example").to_request()).await;
        assert_eq!(ok.status(), 204);
        assert_eq!(ok.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(), "https://dash.example");
        assert_eq!(ok.headers().get(header::ACCESS_CONTROL_ALLOW_METHODS).unwrap(), "GET");

        let foreign = actix_web::test::call_service(&app, preflight("https://evil.example").to_request()).await;
        assert_ne!(foreign.status(), 204, "no preflight answer for another origin");
        assert!(!foreign.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));

        let get = |origin: &str| {
            actix_web::test::TestRequest::get().uri("/api/x").insert_header((header::ORIGIN, origin)).to_request()
        };
        let read = actix_web::test::call_service(&app, get("https://dash.example")).await;
        assert_eq!(read.status(), 200);
        assert_eq!(read.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(), "https://dash.example");
        assert_eq!(read.headers().get(header::ACCESS_CONTROL_EXPOSE_HEADERS).unwrap(), "retry-after");
        let other = actix_web::test::call_service(&app, get("https://evil.example")).await;
        assert_eq!(other.status(), 200, "CORS is not authentication: the browser refuses the read");
        assert!(!other.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    }

    #[actix_web::test]
    async fn no_origin_by_default_adds_nothing() {
        let app = service!(&[]);
        let answer = actix_web::test::call_service(&app, preflight("https://dash.example").to_request()).await;
        assert_eq!(answer.status(), 404, "the route's own answer to OPTIONS");
        assert!(!answer.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    }

    #[test]
    fn entries_that_are_not_origins_are_refused_by_name() {
        for bad in [
            "player.example",
            "https://player.example/",
            "https://x.example/path",
            "ftp://x.example",
            "https://:80",
            "https://x.example:http",
        ] {
            let problems = CorsPolicy::from_config(&list(&[bad])).unwrap_err();
            assert_eq!(problems.len(), 1, "{bad}");
            assert!(problems[0].contains("http.cors_allowed_origins") && problems[0].contains(bad), "{problems:?}");
        }
    }
}
