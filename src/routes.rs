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
use crate::http::{
    negotiate, path, Answer, BodySource, Context, Rejection, Reply, Request, Response, Stats,
    Status,
};
use crate::logging::Repeated;
use crate::metrics::{ConnectionGauges, Metrics, StoreOperation};
use crate::route::Route;
use crate::store::{CountRequest, Increments, Store, StoreError};

/// What the handlers share, built once at start-up and read by every thread.
///
/// Each route is in one lane, by what it waits on. The fast lane (`/`, `/health`, `/metrics`,
/// redirects and errors) waits on nothing outside the process and is answered on the event
/// loop that read it. The store lane: greetings queue for [`Increments`], bounded by its queue,
/// and listings run on blocking threads, bounded by `listings`. The AWS lane: `/health/cluster`
/// runs on blocking threads, bounded by `cluster_requests`. A full lane answers 503 `overloaded`
/// at once, and no lane can take the event loops, so `/health` answers whatever Redis or AWS do.
pub struct State {
    pub store: Arc<dyn Store>,
    pub increments: Increments<Greeting>,
    /// How many `/counts` listings may be open at once.
    pub listings: Arc<Gate>,
    /// How many `/health/cluster` requests may be answered at once.
    pub cluster_requests: Arc<Gate>,
    pub monitor: Arc<Monitor>,
    pub cluster: Arc<Cluster>,
    pub metrics: Arc<Metrics>,
    pub connections: Arc<Stats>,
}

const JSON: &str = "application/json";
const TEXT_TYPE: &str = "text/plain";
const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a cache may keep what does not change while the process runs: the welcome text,
/// and where a non-canonical path leads.
const STATIC: &str = "max-age=3600";
/// Counts, health and metrics are live; `/hello` changes state; errors are of the moment.
const LIVE: &str = "no-store";

/// Routes a request. Each answer is tagged with its route, which the HTTP layer hands back
/// when the exchange is over, for metrics; a redirect is counted under `Other`.
pub fn dispatch(app: &State, request: &Request<'_>, context: &Context<'_>) -> Answer {
    if let Some((route, response)) = options(request) {
        return Answer::Now(response.with_tag(route.tag()));
    }
    let clean = path::clean(request.path);
    if clean != request.path && matches!(request.method, "GET" | "HEAD") {
        return Answer::Now(redirect(&clean, request.query).with_tag(Route::Other.tag()));
    }
    let (route, segment) = Route::resolve(&clean);
    match handle(app, request, route, segment, context) {
        Ok(Answer::Now(response)) => Answer::Now(finish(route, response)),
        Ok(later) => later,
        Err(e) => Answer::Now(finish(route, e.into_response())),
    }
}

/// What every answer of a route says besides its body, and its tag.
fn finish(route: Route, response: Response) -> Response {
    let response = match route {
        // Errors carry their own `Cache-Control`.
        _ if response.status.is_error() => response,
        // The welcome text never changes while the process runs.
        Route::Root => response.with_header("Cache-Control", STATIC),
        _ => response.with_header("Cache-Control", LIVE),
    };
    let response = response.with_tag(route.tag());
    match route {
        // The answer depends on `Accept`, whatever it is (errors included, for simplicity of
        // caches' keys).
        Route::Hello => response.with_header("Vary", "Accept"),
        _ => response,
    }
}

/// `OPTIONS` (RFC 9110 §9.3.7): for `*`, the methods the server takes anywhere; for a route's
/// path (cleaned first, as for every method but GET and HEAD, which are redirected), the
/// methods that route takes, in `Allow` and in the body. `None` for other methods, and for a
/// path no route serves (its 404 is the usual one).
fn options(request: &Request<'_>) -> Option<(Route, Response)> {
    if request.method != "OPTIONS" {
        return None;
    }
    let (route, allow) = if request.path == "*" {
        (Route::Other, "GET, HEAD, OPTIONS")
    } else {
        match Route::resolve(&path::clean(request.path)).0 {
            Route::Other => return None,
            route => (route, route.allow()),
        }
    };
    let methods: Vec<&str> = allow.split(", ").collect();
    let body = serde_json::json!({ "allow": methods }).to_string();
    Some((
        route,
        Response::new(Status::Ok, JSON, body)
            .with_header("Allow", allow)
            // Answers to OPTIONS are not cacheable (§9.3.7); say so as every answer does.
            .with_header("Cache-Control", LIVE),
    ))
}

/// 301 to the canonical path, with the query kept; nothing else happens. The Location never
/// leads to another host: see [`path::location`].
fn redirect(clean: &str, query: Option<&str>) -> Response {
    let location = path::location(clean, query);
    let body = serde_json::json!({ "location": location }).to_string();
    Response::new(Status::MovedPermanently, JSON, body)
        .with_header("Location", location)
        .with_header("Cache-Control", STATIC)
}

fn handle(
    app: &State,
    request: &Request<'_>,
    route: Route,
    segment: &str,
    context: &Context<'_>,
) -> Result<Answer, ApiError> {
    if route == Route::Other {
        return Err(not_found(request));
    }
    let allowed = match request.method {
        "GET" => true,
        "HEAD" => route != Route::Hello,
        _ => false,
    };
    if !allowed {
        return Err(ApiError {
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
        });
    }
    Ok(match route {
        Route::Root => Answer::Now(Response::new(
            Status::Ok,
            TEXT,
            "Welcome to the Hello Service",
        )),
        Route::Hello => hello(app, segment, request, context)?,
        Route::Counts => counts(app, request)?,
        Route::Health => Answer::Now(json_response(Status::Ok, &app.monitor.node_health())),
        Route::Cluster => cluster(app)?,
        Route::Other => return Err(not_found(request)),
        Route::Metrics => {
            let gauges = ConnectionGauges {
                open: app.connections.open.load(Ordering::Relaxed),
                refused: app.connections.refused.load(Ordering::Relaxed),
                reclaimed: app.connections.reclaimed.load(Ordering::Relaxed),
            };
            Answer::Now(Response::new(
                Status::Ok,
                PROMETHEUS,
                app.metrics
                    .render(gauges, app.store.room(), app.store.stats()),
            ))
        }
    })
}

/// The store lane: the greeting is queued for the next pipeline, and answered from the lane's
/// thread once its own `ZINCRBY` reply is in.
fn hello(
    app: &State,
    segment: &str,
    request: &Request<'_>,
    context: &Context<'_>,
) -> Result<Answer, ApiError> {
    let name = Name::from_segment(segment)?;
    let json = negotiate::choose(request.header_values("accept"), &[TEXT_TYPE, JSON]) == JSON;
    app.increments.submit(Greeting {
        name,
        json,
        reply: context.reply(),
        metrics: Arc::clone(&app.metrics),
    });
    Ok(Answer::Later)
}

/// A greeting waiting in the store lane, with what its answer needs.
pub struct Greeting {
    name: Name,
    json: bool,
    reply: Reply,
    metrics: Arc<Metrics>,
}

impl CountRequest for Greeting {
    fn name(&self) -> &str {
        self.name.as_str()
    }

    fn answer(self, result: Result<i64, StoreError>) {
        let response = match result {
            Ok(count) => {
                self.metrics.increment_stored();
                greeting_response(&self.name, count, self.json)
            }
            // The lane refused it before anything was sent: not a store failure.
            Err(StoreError::Overloaded) => ApiError::from(StoreError::Overloaded).into_response(),
            // A new name while the store takes none: the rule working, not a store failure.
            Err(StoreError::NamesFull) => {
                self.metrics.names_refused();
                ApiError::from(StoreError::NamesFull).into_response()
            }
            Err(e) => store_failure(&self.metrics, StoreOperation::Increment, e).into_response(),
        };
        self.reply.send(finish(Route::Hello, response));
    }
}

fn greeting_response(name: &Name, count: i64, json: bool) -> Response {
    let message = greeting(name);
    if !json {
        return Response::new(Status::Ok, TEXT, message);
    }
    #[derive(Serialize)]
    struct Greeting<'a> {
        message: &'a str,
        name: &'a str,
        count: i64,
    }
    json_response(
        Status::Ok,
        &Greeting {
            message: &message,
            name: name.as_str(),
            count,
        },
    )
}

/// The store lane's listings: on a blocking thread, which streams the listing as the client
/// takes it.
fn counts(app: &State, request: &Request<'_>) -> Result<Answer, ApiError> {
    let paging = Paging::from_query(request.query)?;
    let permit = app
        .listings
        .enter()
        .ok_or_else(|| overloaded("too many listings are being read right now"))?;
    let (store, metrics) = (Arc::clone(&app.store), Arc::clone(&app.metrics));
    if request.method == "HEAD" {
        // The head a GET would have, computed without a listing: no page read and thrown away.
        return Ok(Answer::Blocking(Box::new(move |_| {
            let response = match counts::check(&store) {
                Ok(()) => Response::stream(Status::Ok, JSON, Box::new(HeadOnly)),
                Err(e) => store_failure(&metrics, StoreOperation::Range, e).into_response(),
            };
            drop(permit);
            finish(Route::Counts, response)
        })));
    }
    Ok(Answer::Blocking(Box::new(move |_| {
        let response = match Listing::start(store, paging, permit) {
            Ok(listing) => Response::stream(Status::Ok, JSON, Box::new(ListingBody(listing))),
            Err(e) => store_failure(&metrics, StoreOperation::Range, e).into_response(),
        };
        finish(Route::Counts, response)
    })))
}

/// The AWS lane: the cluster view waits for discovery and the peers on a blocking thread. In
/// local mode it is this node alone, answered at once.
fn cluster(app: &State) -> Result<Answer, ApiError> {
    if let Cluster::Local = app.cluster.as_ref() {
        return Ok(Answer::Now(cluster_view(&app.cluster, &app.monitor)));
    }
    let permit = app
        .cluster_requests
        .enter()
        .ok_or_else(|| overloaded("too many cluster views are being gathered right now"))?;
    let (cluster, monitor) = (Arc::clone(&app.cluster), Arc::clone(&app.monitor));
    Ok(Answer::Blocking(Box::new(move |_| {
        let _permit = permit;
        finish(Route::Cluster, cluster_view(&cluster, &monitor))
    })))
}

fn cluster_view(cluster: &Cluster, monitor: &Monitor) -> Response {
    match cluster.health(monitor) {
        Ok(health) => json_response(Status::Ok, &health),
        Err(e) => {
            log::error!("cluster discovery failed: {e}");
            ApiError::new(Status::BadGateway, "upstream_error", e.to_string()).into_response()
        }
    }
}

fn not_found(request: &Request<'_>) -> ApiError {
    ApiError::new(
        Status::NotFound,
        "not_found",
        format!("no route for {} {}", request.method, request.path),
    )
}

fn overloaded(what: &str) -> ApiError {
    ApiError::new(
        Status::ServiceUnavailable,
        "overloaded",
        format!("{what}; try again later"),
    )
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

fn store_failure(metrics: &Metrics, operation: StoreOperation, e: StoreError) -> ApiError {
    metrics.store_error(operation);
    match e {
        StoreError::Unavailable(_) => metrics.store_unavailable(),
        StoreError::OutcomeUnknown(_) => metrics.store_outcome_unknown(),
        StoreError::Full(_) => metrics.store_full(),
        StoreError::Refused(_) | StoreError::Overloaded | StoreError::NamesFull => {}
    }
    // One line per failed request would flood the log while Redis is away; metrics count
    // every failure.
    if STORE_FAILED[operation as usize].admit() {
        log::error!("store {} failed: {e}", operation.label());
    }
    ApiError::from(e)
}

fn json_response(status: Status, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => Response::new(status, JSON, body),
        Err(e) => {
            log::error!("cannot serialise a response: {e}");
            Response::new(
                Status::InternalServerError,
                JSON,
                r#"{"error":{"status":500,"code":"internal","message":"internal error"}}"#,
            )
        }
    }
}

/// Every error the API answers with: `{"error": {"status", "code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: Status,
    pub code: &'static str,
    pub message: String,
    /// For 405: the methods the route takes.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: Status, code: &'static str, message: impl Into<String>) -> ApiError {
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
                status: self.status.code(),
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = json_response(self.status, &body).with_header("Cache-Control", LIVE);
        if self.status == Status::ServiceUnavailable {
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
        ApiError::new(Status::BadRequest, "invalid_name", e.to_string())
    }
}

impl From<PagingError> for ApiError {
    fn from(e: PagingError) -> ApiError {
        ApiError::new(Status::BadRequest, "invalid_parameter", e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unavailable(_) => ApiError::new(
                Status::ServiceUnavailable,
                "store_unavailable",
                "the count store is unavailable; nothing was done; try again later",
            ),
            // RFC 9110 §15.6.5: a gateway that did not receive a timely response from the
            // upstream server it needed. Unlike 503 it does not say the request was not
            // acted on, and it carries no Retry-After.
            StoreError::OutcomeUnknown(_) => ApiError::new(
                Status::GatewayTimeout,
                "store_outcome_unknown",
                "the count store did not confirm the operation in time; it may have been \
                 carried out (a greeting may have been counted), so do not repeat it blindly",
            ),
            StoreError::Refused(_) => ApiError::new(
                Status::InternalServerError,
                "internal",
                "the count store refused the command",
            ),
            StoreError::Overloaded => overloaded("too many greetings wait for the store"),
            // RFC 4918 §11.5: the server cannot store the representation needed to complete
            // the request. Nothing was done, as with a 503, but trying again at once would be
            // refused the same way: no Retry-After.
            StoreError::Full(_) => ApiError::new(
                Status::InsufficientStorage,
                "store_full",
                "the count store is out of memory and refused the greeting; nothing was counted",
            ),
            StoreError::NamesFull => ApiError::new(
                Status::InsufficientStorage,
                "names_full",
                "this name is new, and the count store takes no new names now; nothing was \
                 counted (names already counted still are)",
            ),
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> ApiError {
        match r {
            Rejection::BadRequest(why) => ApiError::new(Status::BadRequest, "bad_request", why),
            Rejection::Timeout => ApiError::new(
                Status::RequestTimeout,
                "request_timeout",
                "the request was not completed in time",
            ),
            Rejection::UriTooLong => ApiError::new(
                Status::UriTooLong,
                "uri_too_long",
                "the request line is too long",
            ),
            Rejection::HeadersTooLarge => ApiError::new(
                Status::RequestHeaderFieldsTooLarge,
                "headers_too_large",
                "the request headers are too large",
            ),
            Rejection::PayloadTooLarge => ApiError::new(
                Status::ContentTooLarge,
                "payload_too_large",
                "the request body is too large",
            ),
            Rejection::NotImplemented(why) => {
                ApiError::new(Status::NotImplemented, "not_implemented", why)
            }
            Rejection::VersionNotSupported => ApiError::new(
                Status::HttpVersionNotSupported,
                "http_version_not_supported",
                "only HTTP/1.0 and HTTP/1.1 are supported",
            ),
            Rejection::Overloaded => ApiError::new(
                Status::ServiceUnavailable,
                "overloaded",
                "the server has too many connections; try again later",
            ),
            Rejection::Internal => {
                ApiError::new(Status::InternalServerError, "internal", "internal error")
            }
        }
    }
}
