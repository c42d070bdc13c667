//! Responses as handlers build them, and their head as it goes on the wire. A body is whole, or
//! a source pulled for one piece at a time while the connection can take more, so that a long
//! listing never waits in a worker for a slow client.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A body produced while it is sent.
pub trait BodySource: Send {
    /// Appends the next piece of the body to `out`. `Ok(false)`: the body is over (anything
    /// appended is its last piece). An error abandons the response: the connection is closed
    /// so that the client sees an incomplete response, not a truncated one that looks whole.
    fn fill(&mut self, out: &mut Vec<u8>) -> io::Result<bool>;
}

pub enum Body {
    Full(Vec<u8>),
    Stream(Box<dyn BodySource>),
}

/// Constant-valued headers a response keeps without allocating.
const CONSTANT_HEADERS: usize = 4;

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Headers beyond those this module writes itself whose values are constants, the usual
    /// case, kept in place: most responses allocate nothing for their headers.
    constant_headers: [(&'static str, &'static str); CONSTANT_HEADERS],
    constant_count: usize,
    /// The others (a `Location`, more constants than fit above).
    headers: Vec<(&'static str, Cow<'static, str>)>,
    pub body: Body,
    /// Close the connection after this response.
    pub close: bool,
    /// The application's word for what was answered (e.g. its route), handed back in the
    /// [`super::Exchange`] when the response is over.
    pub tag: Option<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            constant_headers: [("", ""); CONSTANT_HEADERS],
            constant_count: 0,
            headers: Vec::new(),
            body: Body::Full(body.into()),
            close: false,
            tag: None,
        }
    }

    pub fn stream(status: u16, content_type: &'static str, body: Box<dyn BodySource>) -> Response {
        Response {
            status,
            content_type,
            constant_headers: [("", ""); CONSTANT_HEADERS],
            constant_count: 0,
            headers: Vec::new(),
            body: Body::Stream(body),
            close: false,
            tag: None,
        }
    }

    pub fn with_tag(mut self, tag: u8) -> Response {
        self.tag = Some(tag);
        self
    }

    pub fn with_header(
        mut self,
        name: &'static str,
        value: impl Into<Cow<'static, str>>,
    ) -> Response {
        match value.into() {
            Cow::Borrowed(value) if self.constant_count < CONSTANT_HEADERS => {
                self.constant_headers[self.constant_count] = (name, value);
                self.constant_count += 1;
            }
            value => self.headers.push((name, value)),
        }
        self
    }

    /// Every header added, in the order added among those of each kind.
    fn extra_headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.constant_headers[..self.constant_count]
            .iter()
            .copied()
            .chain(
                self.headers
                    .iter()
                    .map(|(name, value)| (*name, value.as_ref())),
            )
    }
}

/// How a response's body is delimited on this exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delimit {
    /// `Content-Length` (also on HEAD, which sends no body).
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body ends when the connection closes (a stream to an HTTP/1.0 client), or
    /// there is none to send (a stream's head answering HEAD).
    Close,
}

/// Appends the status line and header fields, through the empty line that ends them.
pub fn write_head(
    out: &mut Vec<u8>,
    response: &Response,
    delimit: Delimit,
    keep_alive: bool,
    http10: bool,
) {
    // Pieces appended as they are, without the formatting machinery: this runs for every
    // response, and musl's memcpy makes many small formatted writes show in a profile.
    out.extend_from_slice(b"HTTP/1.1 ");
    push_number(out, u64::from(response.status));
    out.push(b' ');
    out.extend_from_slice(reason(response.status).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    push_date(out);
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(response.content_type.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.extra_headers() {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match delimit {
        Delimit::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_number(out, n as u64);
            out.extend_from_slice(b"\r\n");
        }
        Delimit::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Delimit::Close => {}
    }
    out.extend_from_slice(match (keep_alive, http10) {
        (true, true) => b"Connection: keep-alive\r\n",
        (true, false) => b"",
        (false, _) => b"Connection: close\r\n",
    });
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal.
fn push_number(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends the `Date` header's value, formatted once a second per thread. (The system clock
/// stays within the years `httpdate` formats, 1970 to 9999: Linux keeps it between 1970 and
/// 2262.)
fn push_date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != now {
            *cache = (
                now,
                httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(now)),
            );
        }
        out.extend_from_slice(cache.1.as_bytes());
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(response: &Response, delimit: Delimit, keep_alive: bool, http10: bool) -> String {
        let mut out = Vec::new();
        write_head(&mut out, response, delimit, keep_alive, http10);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn heads_say_how_the_body_ends_and_whether_the_connection_stays() {
        let r = Response::new(200, "text/plain", "hi").with_header("Vary", "Accept");
        let text = head(&r, Delimit::Length(2), true, false);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{text}");
        assert!(
            text.ends_with("Content-Type: text/plain\r\nVary: Accept\r\nContent-Length: 2\r\n\r\n")
        );
        let text = head(&r, Delimit::Chunked, false, false);
        assert!(text.ends_with("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"));
        let text = head(&r, Delimit::Close, true, true);
        assert!(text.ends_with("Vary: Accept\r\nConnection: keep-alive\r\n\r\n"));
        let date = text.lines().nth(1).unwrap();
        assert_eq!(date.len(), "Date: Sun, 06 Nov 1994 08:49:37 GMT".len());
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 404, 65_536, u64::MAX] {
            let mut out = Vec::new();
            push_number(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
