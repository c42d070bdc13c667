//! The application as the HTTP layer sees it: the `Handler` over the routes' shared
//! [`State`], which routes requests, renders refusals and records each exchange.

use crate::http::{Answer, Context, Exchange, Handler, Rejection, Request, Response};
use crate::logging;
use crate::route::Route;
use crate::routes::{self, ApiError, State};

impl Handler for State {
    fn handle(&self, request: &Request<'_>, context: &Context<'_>) -> Answer {
        routes::dispatch(self, request, context)
    }

    fn reject(&self, rejection: Rejection) -> Response {
        if rejection == Rejection::Internal {
            log::error!("a request handler panicked; answered 500");
        }
        ApiError::from(rejection).into_response()
    }

    fn wake_handled(&self) {
        self.increments.flush();
    }

    fn completed(&self, exchange: &Exchange<'_>) {
        let route = exchange.tag.and_then(Route::from_tag);
        self.metrics.request(
            route.unwrap_or(Route::Other),
            exchange.status,
            exchange.elapsed,
        );
        logging::access(exchange);
    }
}
