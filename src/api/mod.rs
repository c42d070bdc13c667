//! The API: what each route answers, over the state its handlers share ([`Api`]), plugged into
//! the HTTP layer as its [`Handler`]. Requests flow one way: [`dispatch`] decides what answers
//! a method and path; each route's handler (one file each) answers it at once or hands it to
//! its lane; every failure becomes the one JSON error ([`error`]); and once the exchange is
//! over, [`access`] records it.
//!
//! Each route is in one lane, by what it waits on. The fast lane (`/`, `/health`, `/metrics`,
//! redirects and errors) waits on nothing outside the process and is answered on the event
//! loop that read it. The store lane: greetings queue for [`Increments`], bounded by its queue,
//! and listings run on blocking threads, bounded by `listings`. The AWS lane: `/health/cluster`
//! runs on blocking threads, bounded by `cluster_requests`. A full lane answers 503 `overloaded`
//! at once, and no lane can take the event loops, so `/health` answers whatever Redis or AWS do.

mod access;
mod cluster;
mod counts;
pub mod dispatch;
mod error;
mod fast;
mod hello;
mod render;

pub use self::error::ApiError;
pub use self::hello::Greeting;
pub use crate::route::Route;

use std::sync::Arc;

use crate::cluster::Cluster;
use crate::counts::Gate;
use crate::health::Monitor;
use crate::http::{Answer, Context, Exchange, Handler, Rejection, Request, Response, Stats, Wait};
use crate::metrics::Metrics;
use crate::store::{Increments, Store};

/// What the handlers share, built once at start-up and read by every thread.
pub struct Api {
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

impl Handler for Api {
    fn handle(&self, request: &Request<'_>, context: &Context<'_>) -> Answer<Wait> {
        dispatch::dispatch(self, request, context)
    }

    fn reject(&self, rejection: Rejection) -> Response {
        if rejection == Rejection::Internal {
            log::error!("a request handler panicked or its reply was dropped unsent; answered 500");
        }
        ApiError::from(rejection).into_response()
    }

    fn completed(&self, exchange: &Exchange<'_>) {
        access::record(&self.metrics, exchange);
    }
}
