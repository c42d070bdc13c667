//! Method and path to handler, over the [`State`] the handlers share, and the one JSON error
//! type every failure becomes. Non-canonical paths are redirected to their clean form, as the
//! original's router did; every answer says how caches may keep it. `app` plugs this into the
//! HTTP layer.

use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use log::Level;
use serde::Serialize;

use crate::cluster::Cluster;
use crate::counts::{self, Gate, Listing, Paging, PagingError};
use crate::health::Monitor;
use crate::hello::{greeting, Name, NameError};
use crate::http::{negotiate, path, BodySource, Rejection, Request, Response, Stats};
use crate::logging::Repeated;
use crate::metrics::{self, ConnectionGauges, Metrics, StoreOperation};
use crate::store::{Store, StoreError};

/// What the handlers share, built once at start-up and read by every worker thread.
pub struct State {
    pub store: Arc<dyn Store>,
    /// How many `/counts` listings may be open at once.
    pub listings: Arc<Gate>,
    pub monitor: Monitor,
    pub cluster: Cluster,
    pub metrics: Metrics,
    pub connections: Arc<Stats>,
}

const JSON: &str = "application/json";
const TEXT_TYPE: &str = "text/plain";
const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Root,
    Hello,
    Counts,
    Health,
    Cluster,
    Metrics,
}

impl Route {
    /// What the route's requests are counted under.
    fn metric(self) -> metrics::Route {
        match self {
            Route::Root => metrics::Route::Root,
            Route::Hello => metrics::Route::Hello,
            Route::Counts => metrics::Route::Counts,
            Route::Health => metrics::Route::Health,
            Route::Cluster => metrics::Route::Cluster,
            Route::Metrics => metrics::Route::Metrics,
        }
    }

    /// The route's pattern, also its metrics label.
    pub fn label(self) -> &'static str {
        self.metric().label()
    }

    /// `/hello` changes state, so it does not answer HEAD.
    fn allow(self) -> &'static str {
        match self {
            Route::Hello => "GET",
            _ => "GET, HEAD",
        }
    }
}

/// The route for a path, with the raw `{name}` segment for `/hello/{name}`.
pub fn resolve(path: &str) -> Option<(Route, &str)> {
    let route = match path {
        "/" => Route::Root,
        "/counts" => Route::Counts,
        "/health" => Route::Health,
        "/health/cluster" => Route::Cluster,
        "/metrics" => Route::Metrics,
        _ => {
            let segment = path.strip_prefix("/hello/")?;
            if segment.contains('/') {
                return None;
            }
            return Some((Route::Hello, segment));
        }
    };
    Some((route, ""))
}

/// What a request to `path` is counted under.
pub fn metrics_route(path: &str) -> metrics::Route {
    resolve(path).map_or(metrics::Route::Other, |(route, _)| route.metric())
}

/// How long a cache may keep what does not change while the process runs: the welcome text,
/// and where a non-canonical path leads.
const STATIC: &str = "max-age=3600";
/// Counts, health and metrics are live; `/hello` changes state; errors are of the moment.
const LIVE: &str = "no-store";

pub fn dispatch(app: &State, request: &Request<'_>) -> Response {
    let clean = path::clean(request.path);
    if clean != request.path && matches!(request.method, "GET" | "HEAD") {
        return redirect(&clean, request.query);
    }
    let route = resolve(&clean);
    let response = handle(app, request, route).unwrap_or_else(ApiError::into_response);
    match route {
        // The answer depends on `Accept`, whatever it is (errors included, for simplicity of
        // caches' keys).
        Some((Route::Hello, _)) => response.with_header("Vary", "Accept"),
        _ => response,
    }
}

/// 301 to the canonical path, with the query kept; nothing else happens.
fn redirect(clean: &str, query: Option<&str>) -> Response {
    let location = match query {
        Some(q) => format!("{clean}?{q}"),
        None => clean.to_owned(),
    };
    let body = serde_json::json!({ "location": location }).to_string();
    Response::new(301, JSON, body)
        .with_header("Location", location)
        .with_header("Cache-Control", STATIC)
}

fn handle(
    app: &State,
    request: &Request<'_>,
    route: Option<(Route, &str)>,
) -> Result<Response, ApiError> {
    let Some((route, segment)) = route else {
        return Err(ApiError::new(
            404,
            "not_found",
            format!("no route for {} {}", request.method, request.path),
        ));
    };
    let allowed = match request.method {
        "GET" => true,
        "HEAD" => route != Route::Hello,
        _ => false,
    };
    if !allowed {
        return Err(ApiError {
            allow: Some(route.allow()),
            ..ApiError::new(
                405,
                "method_not_allowed",
                format!(
                    "method {} is not allowed for {}; allowed: {}",
                    request.method,
                    route.label(),
                    route.allow()
                ),
            )
        });
    }
    let response = match route {
        Route::Root => Response::new(200, TEXT, "Welcome to the Hello Service")
            .with_header("Cache-Control", STATIC),
        Route::Hello => hello(app, segment, request)?,
        Route::Counts => counts(app, request)?,
        Route::Health => json_response(200, &app.monitor.node_health()),
        Route::Cluster => {
            let health = app.cluster.health(&app.monitor).map_err(|e| {
                log::error!("cluster discovery failed: {e}");
                ApiError::new(502, "upstream_error", e.to_string())
            })?;
            json_response(200, &health)
        }
        Route::Metrics => {
            let gauges = ConnectionGauges {
                open: app.connections.open.load(Ordering::Relaxed),
                refused: app.connections.refused.load(Ordering::Relaxed),
            };
            Response::new(200, PROMETHEUS, app.metrics.render(gauges))
        }
    };
    Ok(match route {
        Route::Root => response,
        _ => response.with_header("Cache-Control", LIVE),
    })
}

fn hello(app: &State, segment: &str, request: &Request<'_>) -> Result<Response, ApiError> {
    let name = Name::from_segment(segment)?;
    let count = app
        .store
        .increment(name.as_str())
        .map_err(|e| store_failure(app, StoreOperation::Increment, e))?;
    app.metrics.increment_stored();
    let message = greeting(&name);
    if negotiate::choose(request.header_values("accept"), &[TEXT_TYPE, JSON]) == JSON {
        #[derive(Serialize)]
        struct Greeting<'a> {
            message: &'a str,
            name: &'a str,
            count: i64,
        }
        Ok(json_response(
            200,
            &Greeting {
                message: &message,
                name: name.as_str(),
                count,
            },
        ))
    } else {
        Ok(Response::new(200, TEXT, message))
    }
}

fn counts(app: &State, request: &Request<'_>) -> Result<Response, ApiError> {
    let paging = Paging::from_query(request.query)?;
    if request.method == "HEAD" {
        // The head a GET would have, computed without a listing: no page read and thrown away.
        counts::check(&app.store, paging)
            .map_err(|e| store_failure(app, StoreOperation::Range, e))?;
        return Ok(Response::stream(200, JSON, Box::new(HeadOnly)));
    }
    let permit = app.listings.enter().ok_or_else(|| {
        ApiError::new(
            503,
            "overloaded",
            "too many listings are being read right now; try again later",
        )
    })?;
    let listing = Listing::start(Arc::clone(&app.store), paging, permit)
        .map_err(|e| store_failure(app, StoreOperation::Range, e))?;
    Ok(Response::stream(200, JSON, Box::new(ListingBody(listing))))
}

/// The body of a HEAD answer that a GET would stream: never sent, so never read.
struct HeadOnly;

impl BodySource for HeadOnly {
    fn fill(&mut self, _out: &mut Vec<u8>) -> io::Result<bool> {
        Ok(false)
    }
}

/// A listing as a response body.
struct ListingBody(Listing);

impl BodySource for ListingBody {
    fn fill(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        self.0.fill(out).map_err(|e| {
            log::error!("counts listing aborted mid-response: {e}");
            io::Error::other(e)
        })
    }
}

/// Store failures as log lines, by operation (`StoreOperation as usize`).
static STORE_FAILED: [Repeated; 2] = [
    Repeated::new(module_path!(), Level::Error, "store increment failed"),
    Repeated::new(module_path!(), Level::Error, "store range failed"),
];

fn store_failure(app: &State, operation: StoreOperation, e: StoreError) -> ApiError {
    app.metrics.store_error(operation);
    match e {
        StoreError::Unavailable(_) => app.metrics.store_unavailable(),
        StoreError::OutcomeUnknown(_) => app.metrics.store_outcome_unknown(),
        StoreError::Refused(_) => {}
    }
    // One line per failed request would flood the log while Redis is away; metrics count
    // every failure.
    if STORE_FAILED[operation as usize].admit() {
        log::error!("store {} failed: {e}", operation.label());
    }
    ApiError::from(e)
}

fn json_response(status: u16, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => Response::new(status, JSON, body),
        Err(e) => {
            log::error!("cannot serialise a response: {e}");
            Response::new(
                500,
                JSON,
                r#"{"error":{"status":500,"code":"internal","message":"internal error"}}"#,
            )
        }
    }
}

/// Every error the API answers with: `{"error": {"status", "code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// For 405: the methods the route takes.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            allow: None,
        }
    }

    pub fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Fields<'a>,
        }
        #[derive(Serialize)]
        struct Fields<'a> {
            status: u16,
            code: &'a str,
            message: &'a str,
        }
        let body = Body {
            error: Fields {
                status: self.status,
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = json_response(self.status, &body).with_header("Cache-Control", LIVE);
        if self.status == 503 {
            // Overload and an unreachable store pass; a second is a sensible first wait. Only
            // 503s say it: every one of them means nothing was done. A 504 (an increment
            // whose outcome is unknown) must not invite a repeat that may count twice.
            response = response.with_header("Retry-After", "1");
        }
        if let Some(allow) = self.allow {
            response = response.with_header("Allow", allow);
        }
        response
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> ApiError {
        ApiError::new(400, "invalid_name", e.to_string())
    }
}

impl From<PagingError> for ApiError {
    fn from(e: PagingError) -> ApiError {
        ApiError::new(400, "invalid_parameter", e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unavailable(_) => ApiError::new(
                503,
                "store_unavailable",
                "the count store is unavailable; nothing was done; try again later",
            ),
            // RFC 9110 §15.6.5: a gateway that did not receive a timely response from the
            // upstream server it needed. Unlike 503 it does not say the request was not
            // acted on, and it carries no Retry-After.
            StoreError::OutcomeUnknown(_) => ApiError::new(
                504,
                "store_outcome_unknown",
                "the count store did not confirm the operation in time; it may have been \
                 carried out (a greeting may have been counted), so do not repeat it blindly",
            ),
            StoreError::Refused(_) => {
                ApiError::new(500, "internal", "the count store refused the command")
            }
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> ApiError {
        match r {
            Rejection::BadRequest(why) => ApiError::new(400, "bad_request", why),
            Rejection::Timeout => ApiError::new(
                408,
                "request_timeout",
                "the request was not completed in time",
            ),
            Rejection::UriTooLong => {
                ApiError::new(414, "uri_too_long", "the request line is too long")
            }
            Rejection::HeadersTooLarge => ApiError::new(
                431,
                "headers_too_large",
                "the request headers are too large",
            ),
            Rejection::PayloadTooLarge => {
                ApiError::new(413, "payload_too_large", "the request body is too large")
            }
            Rejection::NotImplemented(why) => ApiError::new(501, "not_implemented", why),
            Rejection::VersionNotSupported => ApiError::new(
                505,
                "http_version_not_supported",
                "only HTTP/1.0 and HTTP/1.1 are supported",
            ),
            Rejection::Overloaded => ApiError::new(
                503,
                "overloaded",
                "the server has too many connections; try again later",
            ),
            Rejection::Internal => ApiError::new(500, "internal", "internal error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_routes_and_segments() {
        assert_eq!(resolve("/"), Some((Route::Root, "")));
        assert_eq!(resolve("/hello/Bob"), Some((Route::Hello, "Bob")));
        assert_eq!(resolve("/hello/"), Some((Route::Hello, "")));
        assert_eq!(resolve("/hello/a/b"), None);
        assert_eq!(resolve("/hello"), None);
        assert_eq!(resolve("/health/cluster"), Some((Route::Cluster, "")));
        assert_eq!(resolve("/counts/"), None);
        assert_eq!(metrics_route("/hello/anything"), metrics::Route::Hello);
        assert_eq!(metrics_route("/health/cluster"), metrics::Route::Cluster);
        assert_eq!(metrics_route("/"), metrics::Route::Root);
        assert_eq!(metrics_route("/metrics"), metrics::Route::Metrics);
        assert_eq!(metrics_route("/counts"), metrics::Route::Counts);
        assert_eq!(metrics_route("/nope"), metrics::Route::Other);
        assert_eq!(Route::Cluster.label(), "/health/cluster");
    }
}
