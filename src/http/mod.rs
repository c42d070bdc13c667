//! The HTTP/1.1 front: a sans-I/O connection core ([`conn`], over [`request`] heads, [`body`]
//! framing and the sending half in `response`), the one loop that drives it ([`drive`]), and
//! the server around that loop: event-loop workers that own their connections and answer what
//! needs nothing outside the process at once, a [`Reply`] for answers that come later from
//! another thread, and a bounded pool of threads for handlers that block ([`Wait::Pool`],
//! [`Wait::Stream`]). Configured from the environment (`settings`). It knows nothing of
//! the routes; the application plugs in through [`Handler`].

mod blocking;
pub mod body;
pub mod conn;
pub mod drive;
pub mod negotiate;
pub mod path;
mod pool;
pub mod request;
mod response;
mod server;
mod settings;
mod shared;
mod status;
mod timers;
mod worker;

pub use drive::Answer;
pub use request::{Limits, Request, Version};
pub use response::{Body, BodySource, Response};
pub use server::{Server, ServerConfig, ShutdownHandle};
pub use settings::{listen_from_env, VARIABLES};
pub use shared::Stats;
pub use status::Status;
pub use worker::{Context, Reply};

use std::net::SocketAddr;
use std::time::Duration;

/// Most heap a connection's input or output buffer keeps between requests: enough for a
/// typical head or response, so that the next needs no allocation, and little enough that an
/// idle connection stays small.
const KEPT_BUFFER: usize = 512;

/// Empties a buffer, giving its memory back unless it is small.
fn release(buffer: &mut Vec<u8>) {
    if buffer.capacity() > KEPT_BUFFER {
        *buffer = Vec::new();
    } else {
        buffer.clear();
    }
}

/// What the application does with requests.
pub trait Handler: Send + Sync + 'static {
    /// Answers one complete request, on the event loop that read it: it must not wait for
    /// anything outside the process. What must wait is answered later ([`Wait`]). Panics are
    /// caught and answered with `reject(Internal)`.
    fn handle(&self, request: &Request<'_>, context: &Context<'_>) -> Answer<Wait>;

    /// Renders a request the HTTP layer refused before it reached a route.
    fn reject(&self, rejection: Rejection) -> Response;

    /// Called when each response (or refusal) is over, sent whole or abandoned, for access
    /// logs and metrics.
    fn completed(&self, exchange: &Exchange<'_>);
}

/// What a request answered later waits for. Whichever it is, the connection waits without a
/// thread of its own until its response is given, and no other request of it is read.
pub enum Wait {
    /// The [`Reply`] taken from the request's [`Context`]. Dropping it unsent answers 500.
    Reply,
    /// `Job`, run on one of the server's blocking threads; its response comes back as a
    /// `Reply` would bring it. The handler bounds how many it hands out: no more than the
    /// server's `blocking_threads` run at once, and the rest wait for a thread.
    Pool(Job),
    /// `Job` run on a blocking thread as for `Pool`, for a response whose body is streamed from
    /// something that blocks (a listing read from the store as the client takes it): that
    /// thread sends it, waiting on the socket, and the connection is lent to it meanwhile.
    Stream(Job),
}

/// A handler's work that may block, run on a blocking thread.
pub type Job = Box<dyn FnOnce() -> Response + Send>;

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
    pub status: Status,
    pub elapsed: Duration,
    pub bytes: u64,
    pub peer: SocketAddr,
    /// The request's `X-Amzn-Trace-Id` as the client sent it (the load balancer adds one to
    /// every request), for the access line to carry once checked.
    pub trace_id: Option<&'a [u8]>,
}
