//! `/counts`, in the store lane: a listing is read from the store on a blocking thread and
//! streamed as the client takes it (the connection is lent to that thread); `HEAD` computes
//! the head a `GET` would have without a listing, and its answer comes back as a pool job's.
//! At most `COUNTS_MAX_LISTINGS` are open at once.

use std::io;
use std::sync::Arc;

use super::error::ApiError;
use super::Api;
use crate::counts::{self, Listing, Paging};
use crate::http::{Answer, BodySource, Request, Response, Status, Wait};
use crate::metrics::StoreOperation;
use crate::route::Route;

use super::render::{finish, JSON};

pub fn list(api: &Api, request: &Request<'_>) -> Result<Answer<Wait>, ApiError> {
    let paging = Paging::from_query(request.query)?;
    let permit = api
        .listings
        .enter()
        .ok_or_else(|| ApiError::overloaded("too many listings are being read right now"))?;
    let (store, metrics) = (Arc::clone(&api.store), Arc::clone(&api.metrics));
    if request.method == "HEAD" {
        return Ok(Answer::Later(Wait::Pool(Box::new(move || {
            let response = match counts::check(&store) {
                Ok(()) => Response::stream(Status::Ok, JSON, Box::new(HeadOnly)),
                Err(e) => ApiError::from_store(&metrics, StoreOperation::Range, e).into_response(),
            };
            drop(permit);
            finish(Route::Counts, response)
        }))));
    }
    Ok(Answer::Later(Wait::Stream(Box::new(move || {
        let response = match Listing::start(store, paging, permit) {
            Ok(listing) => Response::stream(Status::Ok, JSON, Box::new(ListingBody(listing))),
            Err(e) => ApiError::from_store(&metrics, StoreOperation::Range, e).into_response(),
        };
        finish(Route::Counts, response)
    }))))
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
