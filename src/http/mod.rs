//! The HTTP/1.1 front: a sans-I/O connection core ([`conn`], over [`request`] heads and
//! [`body`] framing) and the server that drives it from a bounded pool of worker threads, which
//! run blocking handlers on whole requests, configured from the environment (`settings`). It
//! knows nothing of the routes; the application plugs in through [`Handler`].

pub mod body;
pub mod conn;
pub mod negotiate;
pub mod path;
pub mod request;
mod response;
mod server;
mod settings;

pub use request::{Limits, Request, Version};
pub use response::{Body, BodySource, Response};
pub use server::{Server, ServerConfig, ShutdownHandle, Stats};
pub use settings::{listen_from_env, VARIABLES};

use std::net::SocketAddr;
use std::time::Duration;

/// What the application does with requests.
pub trait Handler: Send + Sync + 'static {
    /// Answers one complete request. Panics are caught and answered with `reject(Internal)`.
    fn handle(&self, request: &Request<'_>) -> Response;

    /// Renders a request the HTTP layer refused before it reached a route.
    fn reject(&self, rejection: Rejection) -> Response;

    /// Called when each response (or refusal) is over, sent whole or abandoned, for access
    /// logs and metrics.
    fn completed(&self, exchange: &Exchange<'_>);
}

/// Requests refused by the HTTP layer itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Malformed request; the text says what was wrong.
    BadRequest(&'static str),
    /// The client did not send a complete request in time.
    Timeout,
    /// The request line is longer than the limit.
    UriTooLong,
    /// The request head (line and headers) is larger than the limit, or has too many headers.
    HeadersTooLarge,
    /// The declared body is larger than the limit.
    PayloadTooLarge,
    /// A feature of HTTP this server does not implement (e.g. a transfer coding other than
    /// chunked).
    NotImplemented(&'static str),
    /// An HTTP major version other than 1.
    VersionNotSupported,
    /// Too many open connections, or no file descriptors left.
    Overloaded,
    /// The handler panicked.
    Internal,
}

/// One answered request, as logged.
#[derive(Debug)]
pub struct Exchange<'a> {
    /// `-` when the request was refused before its method was known.
    pub method: &'a str,
    /// The request target's path, `-` when unknown.
    pub path: &'a str,
    pub status: u16,
    pub elapsed: Duration,
    pub bytes: u64,
    pub peer: SocketAddr,
}
