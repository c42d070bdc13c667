//! The one error every failure of the API becomes, `{"error": {"status", "code", "message"}}`,
//! with the same status on the response (from the HTTP layer's one status table); and the
//! conversions from each boundary's own error, each written once.

use std::fmt;

use log::Level;
use serde::Serialize;

use super::render::{self, LIVE};
use crate::counts::PagingError;
use crate::hello::NameError;
use crate::http::{Rejection, Response, Status};
use crate::logging::Repeated;
use crate::metrics::{Metrics, StoreOperation};
use crate::store::StoreError;

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

    /// 503 `overloaded`: a lane is full; nothing was done.
    pub fn overloaded(what: &str) -> ApiError {
        ApiError::new(
            Status::ServiceUnavailable,
            "overloaded",
            format!("{what}; try again later"),
        )
    }

    /// A store failure of `operation`, counted in `metrics` and logged (rate-limited: one line
    /// per failed request would flood the log while Redis is away; the metrics count each).
    pub fn from_store(metrics: &Metrics, operation: StoreOperation, e: StoreError) -> ApiError {
        static INCREMENT_FAILED: Repeated =
            Repeated::new(module_path!(), Level::Error, "store increment failed");
        static RANGE_FAILED: Repeated =
            Repeated::new(module_path!(), Level::Error, "store range failed");
        metrics.store_error(operation);
        match e {
            StoreError::Unavailable(_) => metrics.store_unavailable(),
            StoreError::OutcomeUnknown(_) => metrics.store_outcome_unknown(),
            StoreError::Full(_) => metrics.store_full(),
            StoreError::Refused(_) | StoreError::Overloaded | StoreError::NamesFull => {}
        }
        let lines = match operation {
            StoreOperation::Increment => &INCREMENT_FAILED,
            StoreOperation::Range => &RANGE_FAILED,
        };
        if lines.admit() {
            log::error!("store {} failed: {e}", operation.label());
        }
        ApiError::from(e)
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
        let mut response = render::json(self.status, &body).with_header("Cache-Control", LIVE);
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
            StoreError::Overloaded => ApiError::overloaded("too many greetings wait for the store"),
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
            Rejection::Overloaded => ApiError::overloaded("the server has too many connections"),
            Rejection::Internal => {
                ApiError::new(Status::InternalServerError, "internal", "internal error")
            }
        }
    }
}
