//! `/hello/{name}`, in the store lane: the greeting is queued for the lane's next pipeline and
//! answered from the lane's thread once its own `ZINCRBY` reply is in, never before.

use std::sync::Arc;

use serde::Serialize;

use super::error::ApiError;
use super::render::{self, finish, JSON, TEXT, TEXT_TYPE};
use super::Api;
use crate::hello::{greeting, Name};
use crate::http::{negotiate, Answer, Context, Reply, Request, Response, Status, Wait};
use crate::metrics::{Metrics, StoreOperation};
use crate::route::Route;
use crate::store::{CountRequest, StoreError};

pub fn greet(
    api: &Api,
    segment: &str,
    request: &Request<'_>,
    context: &Context<'_>,
) -> Result<Answer<Wait>, ApiError> {
    let name = Name::from_segment(segment)?;
    let json = negotiate::choose(request.header_values("accept"), &[TEXT_TYPE, JSON]) == JSON;
    api.increments.submit(Greeting {
        name,
        json,
        reply: context.reply(),
        metrics: Arc::clone(&api.metrics),
    });
    Ok(Answer::Later(Wait::Reply))
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
            Err(e) => {
                ApiError::from_store(&self.metrics, StoreOperation::Increment, e).into_response()
            }
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
    render::json(
        Status::Ok,
        &Greeting {
            message: &message,
            name: name.as_str(),
            count,
        },
    )
}
