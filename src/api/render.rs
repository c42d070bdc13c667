//! How the API's answers are written: their content types, how long caches may keep them
//! (and what they vary on), and JSON bodies.

use crate::http::{Response, Status};
use crate::route::Route;

pub const JSON: &str = "application/json";
/// The media type `Accept` negotiation offers for text; answers say their charset too.
pub const TEXT_TYPE: &str = "text/plain";
pub const TEXT: &str = "text/plain; charset=utf-8";
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a cache may keep what does not change while the process runs: the welcome text,
/// and where a non-canonical path leads.
pub const STATIC: &str = "max-age=3600";
/// Counts, health and metrics are live; `/hello` changes state; errors are of the moment.
pub const LIVE: &str = "no-store";

/// `value` as a JSON response; the one failure serde could have here (a map with keys that
/// are not strings) is answered as an internal error, not a panic.
pub fn json(status: Status, value: &impl serde::Serialize) -> Response {
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

/// What every answer of a route says besides its body.
pub fn finish(route: Route, response: Response) -> Response {
    let response = match route {
        // Errors carry their own `Cache-Control`.
        _ if response.status.is_error() => response,
        // The welcome text never changes while the process runs.
        Route::Root => response.with_header("Cache-Control", STATIC),
        _ => response.with_header("Cache-Control", LIVE),
    };
    match route {
        // The answer depends on `Accept`, whatever it is (errors included, for simplicity of
        // caches' keys).
        Route::Hello => response.with_header("Vary", "Accept"),
        _ => response,
    }
}
