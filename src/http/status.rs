//! The statuses this server sends, each with its code and reason phrase (RFC 9110 §15; 507 is
//! RFC 4918's, §11.5, in IANA's registry). One table, read by the status line and by the JSON
//! errors alike, so that no status can be sent without its phrase.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Ok,
    MovedPermanently,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    ContentTooLarge,
    UriTooLong,
    RequestHeaderFieldsTooLarge,
    InternalServerError,
    NotImplemented,
    BadGateway,
    ServiceUnavailable,
    GatewayTimeout,
    HttpVersionNotSupported,
    InsufficientStorage,
}

impl Status {
    /// Every status, in code order.
    pub const ALL: [Status; 16] = [
        Status::Ok,
        Status::MovedPermanently,
        Status::BadRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::ContentTooLarge,
        Status::UriTooLong,
        Status::RequestHeaderFieldsTooLarge,
        Status::InternalServerError,
        Status::NotImplemented,
        Status::BadGateway,
        Status::ServiceUnavailable,
        Status::GatewayTimeout,
        Status::HttpVersionNotSupported,
        Status::InsufficientStorage,
    ];

    pub const fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::MovedPermanently => 301,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::ContentTooLarge => 413,
            Status::UriTooLong => 414,
            Status::RequestHeaderFieldsTooLarge => 431,
            Status::InternalServerError => 500,
            Status::NotImplemented => 501,
            Status::BadGateway => 502,
            Status::ServiceUnavailable => 503,
            Status::GatewayTimeout => 504,
            Status::HttpVersionNotSupported => 505,
            Status::InsufficientStorage => 507,
        }
    }

    /// The reason phrase RFC 9110 §15 (or RFC 4918 §11.5) gives the code.
    pub const fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::MovedPermanently => "Moved Permanently",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::ContentTooLarge => "Content Too Large",
            Status::UriTooLong => "URI Too Long",
            Status::RequestHeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::InternalServerError => "Internal Server Error",
            Status::NotImplemented => "Not Implemented",
            Status::BadGateway => "Bad Gateway",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::GatewayTimeout => "Gateway Timeout",
            Status::HttpVersionNotSupported => "HTTP Version Not Supported",
            Status::InsufficientStorage => "Insufficient Storage",
        }
    }

    pub const fn is_error(self) -> bool {
        self.code() >= 400
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_own_code_and_a_reason() {
        let mut codes: Vec<u16> = Status::ALL.iter().map(|s| s.code()).collect();
        assert!(codes.is_sorted(), "ALL is in code order: {codes:?}");
        codes.dedup();
        assert_eq!(codes.len(), Status::ALL.len(), "no code twice");
        for status in Status::ALL {
            assert!((200..600).contains(&status.code()), "{status:?}");
            let reason = status.reason();
            assert!(!reason.is_empty() && reason != "Unknown", "{status:?}");
            // A reason phrase is HTAB, SP or visible characters (RFC 9112 §4).
            assert!(reason.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
        }
    }
}
