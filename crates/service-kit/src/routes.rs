//! One table of a service's HTTP routes, from which both the actix routes
//! and the OpenAPI paths are made, so the served API and its document
//! cannot disagree.
//!
//! A handler enters the table with its `#[utoipa::path]` description
//! ([`Routes::handler`]): the path and method come from that attribute, the
//! actix route is built from them. Every path answers the methods it does not
//! serve with 405 and an `Allow` header listing those it does, and
//! [`not_found`] answers unknown paths with a JSON 404. The operational
//! endpoints (`/health`, `/ready`, `/metrics`) are in [`crate::ops::routes`],
//! described the same way.

use std::{collections::BTreeMap, sync::Arc};

use actix_web::{
    FromRequest, Handler, HttpRequest, HttpResponse, Responder, Route,
    http::{Method, header},
    web,
};
use utoipa::openapi::{HttpMethod, Paths, path::Operation};

type MakeRoute = Arc<dyn Fn() -> Route + Send + Sync>;

struct Entry {
    method: HttpMethod,
    path: String,
    operation: Operation,
    route: MakeRoute,
}

/// A service's routes and their OpenAPI operations; see the module docs.
#[derive(Clone, Default)]
pub struct Routes {
    entries: Vec<Arc<Entry>>,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `handler`, described by `P`, the struct `#[utoipa::path]` makes
    /// for it (`__path_<handler>`): its path and methods route the handler.
    ///
    /// # Panics
    ///
    /// When the description names no method, or when a path and method is
    /// already in the table.
    pub fn handler<P, F, Args>(self, handler: F) -> Self
    where
        P: utoipa::Path,
        F: Handler<Args> + Send + Sync,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let methods = P::methods();
        assert!(!methods.is_empty(), "{} has no method", P::path());
        let mut routes = self;
        for method in methods {
            let handler = handler.clone();
            let actix_method = actix_method(&method);
            let make: MakeRoute = Arc::new(move || web::method(actix_method.clone()).to(handler.clone()));
            routes = routes.push(method, &P::path(), P::operation(), make);
        }
        routes
    }

    /// Adds a route described by hand (`operation`), e.g. one whose answer
    /// is not JSON.
    pub fn described(
        self,
        method: HttpMethod,
        path: &str,
        operation: Operation,
        route: impl Fn() -> Route + Send + Sync + 'static,
    ) -> Self {
        self.push(method, path, operation, Arc::new(route))
    }

    /// Every route of `other` after those of `self`.
    pub fn merge(mut self, other: Routes) -> Self {
        for entry in other.entries {
            self.check_new(&entry.method, &entry.path);
            self.entries.push(entry);
        }
        self
    }

    fn push(mut self, method: HttpMethod, path: &str, operation: Operation, route: MakeRoute) -> Self {
        self.check_new(&method, path);
        self.entries.push(Arc::new(Entry { method, path: path.to_owned(), operation, route }));
        self
    }

    fn check_new(&self, method: &HttpMethod, path: &str) {
        let duplicate = self.entries.iter().any(|e| e.path == path && &e.method == method);
        assert!(!duplicate, "{} {path} is in the routes table twice", method_name(method));
    }

    /// `(method, path)` of every route, in table order (method in lower
    /// case, path in OpenAPI syntax, which is also actix's).
    pub fn table(&self) -> Vec<(String, String)> {
        self.entries.iter().map(|e| (method_name(&e.method).to_ascii_lowercase(), e.path.clone())).collect()
    }

    /// The OpenAPI paths of the table.
    pub fn paths(&self) -> Paths {
        let mut paths = Paths::new();
        for entry in &self.entries {
            paths.add_path_operation(&entry.path, vec![entry.method.clone()], entry.operation.clone());
        }
        paths
    }

    /// Registers one actix resource per path: its routes, and a 405 with
    /// `Allow` for any other method.
    pub fn register(&self, cfg: &mut web::ServiceConfig) {
        let mut by_path: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
        for entry in &self.entries {
            by_path.entry(entry.path.as_str()).or_default().push(entry);
        }
        for (path, entries) in by_path {
            let allow = entries.iter().map(|e| method_name(&e.method)).collect::<Vec<_>>().join(", ");
            let mut resource = web::resource(path);
            for entry in entries {
                resource = resource.route((entry.route)());
            }
            resource = resource.default_service(web::to(move |req: HttpRequest| {
                let allow = allow.clone();
                async move { method_not_allowed(&req, &allow) }
            }));
            cfg.service(resource);
        }
    }
}

/// 405 for `req`, with `Allow: allow` and a JSON body
/// `{"error": "method_not_allowed", "message": …}`.
pub fn method_not_allowed(req: &HttpRequest, allow: &str) -> HttpResponse {
    HttpResponse::MethodNotAllowed().insert_header((header::ALLOW, allow.to_owned())).json(serde_json::json!({
        "error": "method_not_allowed",
        "message": format!("{} is not allowed on {}; allowed: {allow}", req.method(), req.path()),
    }))
}

/// The JSON 404 of a path no route serves: `{"error": "not_found", "message": …}`.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({
        "error": "not_found",
        "message": format!("no route for {} {}", req.method(), req.path()),
    }))
}

fn actix_method(method: &HttpMethod) -> Method {
    Method::from_bytes(method_name(method).as_bytes()).expect("HTTP method names are valid")
}

fn method_name(method: &HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Head => "HEAD",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Trace => "TRACE",
    }
}

#[cfg(test)]
mod tests {
    use actix_web::{App, test as actix_test};
    use utoipa::openapi::path::OperationBuilder;

    use super::*;

    fn table() -> Routes {
        let op = || OperationBuilder::new().build();
        Routes::new()
            .described(HttpMethod::Get, "/things/{id}", op(), || web::get().to(|| async { "got" }))
            .described(HttpMethod::Put, "/things/{id}", op(), || web::put().to(|| async { "put" }))
            .described(HttpMethod::Post, "/other", op(), || web::post().to(|| async { "posted" }))
    }

    #[actix_web::test]
    async fn served_methods_answer_and_others_get_405_with_allow() {
        let routes = table();
        let app = actix_test::init_service(
            App::new().configure(|cfg| routes.register(cfg)).default_service(web::to(not_found)),
        )
        .await;
        let get = actix_test::call_service(&app, actix_test::TestRequest::get().uri("/things/1").to_request()).await;
        assert_eq!(get.status(), 200);
        let trace = actix_test::call_service(
            &app,
            actix_test::TestRequest::default().method(Method::TRACE).uri("/things/1").to_request(),
        )
        .await;
        assert_eq!(trace.status(), 405);
        assert_eq!(trace.headers().get(header::ALLOW).unwrap(), "GET, PUT");
        let body: serde_json::Value = actix_test::read_body_json(trace).await;
        assert_eq!(body["error"], "method_not_allowed");
        let delete = actix_test::call_service(&app, actix_test::TestRequest::delete().uri("/other").to_request()).await;
        assert_eq!(
            (delete.status().as_u16(), delete.headers().get(header::ALLOW).unwrap().to_str().unwrap()),
            (405, "POST")
        );
        let unknown = actix_test::call_service(&app, actix_test::TestRequest::get().uri("/nope").to_request()).await;
        assert_eq!(unknown.status(), 404);
        let body: serde_json::Value = actix_test::read_body_json(unknown).await;
        assert_eq!(body["error"], "not_found");
    }

    #[test]
    fn the_document_paths_are_the_table() {
        let routes = table();
        assert_eq!(
            routes.table(),
            [("get", "/things/{id}"), ("put", "/things/{id}"), ("post", "/other")]
                .map(|(m, p)| (m.to_string(), p.to_string()))
        );
        let json = serde_json::to_value(routes.paths()).unwrap();
        let described: Vec<(String, String)> = json
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone())))
            .collect();
        assert_eq!(described.len(), 3, "{json}");
    }

    #[test]
    #[should_panic(expected = "twice")]
    fn a_route_cannot_be_listed_twice() {
        let op = || OperationBuilder::new().build();
        let _ = table().described(HttpMethod::Post, "/other", op(), || web::post().to(|| async { "again" }));
    }
}
