//! Method and path to what answers them: `OPTIONS`, a redirect of a non-canonical path (as the
//! original's router did), 404, 405, or a route's handler; and what every answer of a route
//! says besides its body (how caches may keep it, what it varies on).

use super::error::ApiError;
use super::render::{self, finish, JSON, LIVE, STATIC};
use super::{cluster, counts, fast, hello, Api};
use crate::http::{path, Answer, Context, Request, Response, Status, Wait};
use crate::route::Route;

/// The methods the server takes anywhere, for `OPTIONS *`.
const SERVER_ALLOW: &str = "GET, HEAD, OPTIONS";

/// What a request's method and path come to, before any handler runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<'r> {
    /// `OPTIONS` of a route's path (cleaned first), or of `*` (`Route::Other`): the methods
    /// it takes.
    Options(Route),
    /// A GET or HEAD of a non-canonical path: 301 to this `Location`, nothing else done.
    Redirect(String),
    NotFound,
    MethodNotAllowed(Route),
    /// The route's handler, with the raw `{name}` segment for `/hello/{name}`.
    Handle(Route, &'r str),
}

/// Decides what answers `method` on `path`. Only GET and HEAD reach a handler, and only for a
/// canonical path (any other is redirected), so a handler's segment is the request's own.
pub fn decide<'r>(method: &str, path: &'r str, query: Option<&str>) -> Decision<'r> {
    if method == "OPTIONS" && path == "*" {
        return Decision::Options(Route::Other);
    }
    let clean = path::clean(path);
    if method == "OPTIONS" {
        match Route::resolve(&clean).0 {
            // A path no route serves: its 404 is the usual one.
            Route::Other => {}
            route => return Decision::Options(route),
        }
    }
    if clean != path && matches!(method, "GET" | "HEAD") {
        return Decision::Redirect(path::location(&clean, query));
    }
    let route = Route::resolve(&clean).0;
    if route == Route::Other {
        return Decision::NotFound;
    }
    let allowed = match method {
        "GET" => true,
        // `/hello` changes state, so it takes no HEAD.
        "HEAD" => route != Route::Hello,
        _ => false,
    };
    if !allowed {
        return Decision::MethodNotAllowed(route);
    }
    Decision::Handle(route, Route::resolve(path).1)
}

/// Answers a request: at once, or later through the lane its route is in.
pub fn dispatch(api: &Api, request: &Request<'_>, context: &Context<'_>) -> Answer<Wait> {
    let (route, answer) = match decide(request.method, request.path, request.query) {
        Decision::Options(route) => return Answer::Now(options(route)),
        Decision::Redirect(location) => return Answer::Now(redirect(location)),
        Decision::NotFound => (Route::Other, Err(not_found(request))),
        Decision::MethodNotAllowed(route) => (route, Err(method_not_allowed(route, request))),
        Decision::Handle(route, segment) => (route, handle(api, route, segment, request, context)),
    };
    match answer {
        Ok(Answer::Now(response)) => Answer::Now(finish(route, response)),
        Ok(later) => later,
        Err(e) => Answer::Now(finish(route, e.into_response())),
    }
}

fn handle(
    api: &Api,
    route: Route,
    segment: &str,
    request: &Request<'_>,
    context: &Context<'_>,
) -> Result<Answer<Wait>, ApiError> {
    Ok(match route {
        Route::Root => Answer::Now(fast::root()),
        Route::Hello => hello::greet(api, segment, request, context)?,
        Route::Counts => counts::list(api, request)?,
        Route::Health => Answer::Now(fast::health(api)),
        Route::Cluster => cluster::view(api)?,
        Route::Metrics => Answer::Now(fast::metrics(api)),
        // `decide` answers a path no route serves itself.
        Route::Other => return Err(not_found(request)),
    })
}

/// `OPTIONS` (RFC 9110 §9.3.7): the methods `route` takes (for `Route::Other`, `*`: those the
/// server takes anywhere), in `Allow` and in the body.
fn options(route: Route) -> Response {
    let allow = match route {
        Route::Other => SERVER_ALLOW,
        route => route.allow(),
    };
    let methods: Vec<&str> = allow.split(", ").collect();
    render::json(Status::Ok, &serde_json::json!({ "allow": methods }))
        .with_header("Allow", allow)
        // Answers to OPTIONS are not cacheable (§9.3.7); say so as every answer does.
        .with_header("Cache-Control", LIVE)
}

/// 301 to the canonical path, with the query kept; nothing else happens. The Location never
/// leads to another host: see [`path::location`].
fn redirect(location: String) -> Response {
    let body = serde_json::json!({ "location": location }).to_string();
    Response::new(Status::MovedPermanently, JSON, body)
        .with_header("Location", location)
        .with_header("Cache-Control", STATIC)
}

fn not_found(request: &Request<'_>) -> ApiError {
    ApiError::new(
        Status::NotFound,
        "not_found",
        format!("no route for {} {}", request.method, request.path),
    )
}

fn method_not_allowed(route: Route, request: &Request<'_>) -> ApiError {
    ApiError {
        allow: Some(route.allow()),
        ..ApiError::new(
            Status::MethodNotAllowed,
            "method_not_allowed",
            format!(
                "method {} is not allowed for {}; allowed: {}",
                request.method,
                route.label(),
                route.allow()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_and_path_comes_to_one_decision() {
        use Decision::*;
        let cases: &[(&str, &str, Decision<'_>)] = &[
            ("GET", "/", Handle(Route::Root, "")),
            ("HEAD", "/counts", Handle(Route::Counts, "")),
            ("GET", "/hello/Bob", Handle(Route::Hello, "Bob")),
            // The segment as sent, percent-encoding and all: the handler decodes it.
            ("GET", "/hello/Zo%C3%AB", Handle(Route::Hello, "Zo%C3%AB")),
            ("GET", "/hello/a%2Fb", Handle(Route::Hello, "a%2Fb")),
            ("HEAD", "/hello/Bob", MethodNotAllowed(Route::Hello)),
            ("POST", "/counts", MethodNotAllowed(Route::Counts)),
            (
                "DELETE",
                "/health/cluster",
                MethodNotAllowed(Route::Cluster),
            ),
            ("GET", "/nope", NotFound),
            ("POST", "/nope", NotFound),
            ("GET", "/hello/a/b", NotFound),
            ("OPTIONS", "*", Options(Route::Other)),
            ("OPTIONS", "/metrics", Options(Route::Metrics)),
            // Other methods than GET and HEAD are answered for the cleaned path.
            ("OPTIONS", "//hello/./Bob", Options(Route::Hello)),
            ("POST", "/./counts", MethodNotAllowed(Route::Counts)),
            ("OPTIONS", "/nope", NotFound),
        ];
        for (method, path, expected) in cases {
            assert_eq!(&decide(method, path, None), expected, "{method} {path}");
        }
    }

    #[test]
    fn get_and_head_of_another_spelling_are_redirected_with_the_query_kept() {
        for (path, location) in [
            ("//hello/Bob", "/hello/Bob"),
            ("/hello/./Bob", "/hello/Bob"),
            ("/hello/%2E%2E", "/"),
            ("/./nope", "/nope"),
        ] {
            for method in ["GET", "HEAD"] {
                assert_eq!(
                    decide(method, path, None),
                    Decision::Redirect(location.to_owned()),
                    "{method} {path}"
                );
            }
        }
        assert_eq!(
            decide("GET", "//counts", Some("limit=1")),
            Decision::Redirect("/counts?limit=1".to_owned())
        );
    }

    #[test]
    fn every_route_s_answers_say_how_caches_keep_them() {
        let ok = || Response::new(Status::Ok, "text/plain", "x");
        let root = finish(Route::Root, ok());
        assert_eq!(root.header("Cache-Control"), Some(STATIC));
        let hello = finish(Route::Hello, ok());
        assert_eq!(hello.header("Cache-Control"), Some(LIVE));
        assert_eq!(hello.header("Vary"), Some("Accept"));
        let error = ApiError::new(Status::NotFound, "not_found", "x").into_response();
        let error = finish(Route::Counts, error);
        assert_eq!(error.header("Cache-Control"), Some(LIVE));
        assert_eq!(error.header("Vary"), None);
    }
}
