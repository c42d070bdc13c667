//! The fast lane's routes: `/`, `/health` and `/metrics` need nothing outside the process, so
//! they are answered at once on the event loop that read them, whatever Redis or AWS do.

use super::render::{self, PROMETHEUS, TEXT};
use super::Api;
use crate::http::{Response, Status};
use crate::metrics::ConnectionGauges;

pub fn root() -> Response {
    Response::new(Status::Ok, TEXT, "Welcome to the Hello Service")
}

pub fn health(api: &Api) -> Response {
    render::json(Status::Ok, &api.monitor.node_health())
}

pub fn metrics(api: &Api) -> Response {
    let gauges = ConnectionGauges::from(&*api.connections);
    Response::new(
        Status::Ok,
        PROMETHEUS,
        api.metrics
            .render(gauges, api.store.room(), api.store.stats()),
    )
}
