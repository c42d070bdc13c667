//! The application as the HTTP layer sees it: shared state, and the `Handler` that routes
//! requests, renders refusals and records each exchange.

use std::sync::Arc;

use crate::cluster::Cluster;
use crate::counts::Gate;
use crate::health::Monitor;
use crate::http::{Exchange, Handler, Rejection, Request, Response, Stats};
use crate::logging;
use crate::metrics::Metrics;
use crate::routes::{self, ApiError};
use crate::store::Store;

pub struct App {
    pub store: Arc<dyn Store>,
    /// How many `/counts` listings may be open at once.
    pub listings: Arc<Gate>,
    pub monitor: Monitor,
    pub cluster: Cluster,
    pub metrics: Metrics,
    pub connections: Arc<Stats>,
}

impl Handler for App {
    fn handle(&self, request: &Request<'_>) -> Response {
        routes::dispatch(self, request)
    }

    fn reject(&self, rejection: Rejection) -> Response {
        if rejection == Rejection::Internal {
            log::error!("a request handler panicked; answered 500");
        }
        ApiError::from(rejection).into_response()
    }

    fn completed(&self, exchange: &Exchange<'_>) {
        self.metrics.request(
            routes::metrics_route(exchange.path),
            exchange.status,
            exchange.elapsed,
        );
        logging::access(exchange);
    }
}
