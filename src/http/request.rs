//! Recognising a complete request in a connection's buffer, under size limits, and the view of
//! it that handlers get.

use std::net::SocketAddr;
use std::time::Instant;

use super::Rejection;

/// Most headers a request may have.
const MAX_HEADERS: usize = 64;

/// Size limits on what a client may send.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest request line (method, target, version).
    pub request_line: usize,
    /// Largest request head: request line and headers.
    pub head: usize,
    /// Largest body; the service has no route that reads one, so this only bounds what it
    /// skips.
    pub body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: 8 * 1024,
            head: 16 * 1024,
            body: 64 * 1024,
        }
    }
}

/// How far a buffer holds a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// More bytes are needed.
    Partial,
    /// The first `head + body` bytes are one request.
    Complete { head: usize, body: usize },
}

/// Finds the first request in `buf`, or says why it can never be one.
pub fn frame(buf: &[u8], limits: &Limits) -> Result<Framing, Rejection> {
    let line_end = buf.iter().position(|&b| b == b'\n');
    if line_end.map_or(buf.len(), |p| p + 1) > limits.request_line {
        return Err(Rejection::UriTooLong);
    }
    let Some(head) = head_end(buf) else {
        return if buf.len() >= limits.head {
            Err(Rejection::HeadersTooLarge)
        } else {
            Ok(Framing::Partial)
        };
    };
    if head > limits.head {
        return Err(Rejection::HeadersTooLarge);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..head]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(Rejection::BadRequest("malformed request head"))
        }
        Err(e) => return Err(parse_error(e)),
    }
    let body = body_length(req.headers, limits)?;
    if buf.len() < head + body {
        return Ok(Framing::Partial);
    }
    Ok(Framing::Complete { head, body })
}

/// The length of the head (through the blank line), if the buffer holds all of it.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => {}
        }
        i = nl + 1;
    }
    None
}

fn parse_error(e: httparse::Error) -> Rejection {
    match e {
        httparse::Error::TooManyHeaders => Rejection::HeadersTooLarge,
        httparse::Error::Version => Rejection::VersionNotSupported,
        httparse::Error::HeaderName | httparse::Error::HeaderValue => {
            Rejection::BadRequest("malformed header")
        }
        httparse::Error::Token => Rejection::BadRequest("malformed method"),
        _ => Rejection::BadRequest("malformed request line"),
    }
}

fn body_length(headers: &[httparse::Header<'_>], limits: &Limits) -> Result<usize, Rejection> {
    let mut length: Option<usize> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Rejection::NotImplemented(
                "request bodies with Transfer-Encoding are not supported",
            ));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(Rejection::BadRequest("invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Rejection::BadRequest("conflicting Content-Length headers"));
            }
            length = Some(n);
        }
    }
    let n = length.unwrap_or(0);
    if n > limits.body {
        return Err(Rejection::PayloadTooLarge);
    }
    Ok(n)
}

/// A parsed request, borrowing the connection's buffer.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path part of the target, still percent-encoded.
    pub path: &'a str,
    /// The query string without `?`, if any.
    pub query: Option<&'a str>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: &'a [httparse::Header<'a>],
    pub peer: SocketAddr,
    /// When the request was complete: the start of its latency.
    pub received: Instant,
}

impl Request<'_> {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Whether the client wants the connection kept open after this exchange.
    pub fn wants_keep_alive(&self) -> bool {
        let connection = self.header("connection").unwrap_or_default();
        let has = |token: &str| {
            connection
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        };
        if self.minor_version == 0 {
            has("keep-alive")
        } else {
            !has("close")
        }
    }
}

/// Parses a head that [`frame`] accepted, calling `f` with the request view.
pub fn with_request<R>(
    head: &[u8],
    peer: SocketAddr,
    received: Instant,
    f: impl FnOnce(Result<&Request<'_>, Rejection>) -> R,
) -> R {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return f(Err(Rejection::BadRequest("malformed request head")))
        }
        Err(e) => return f(Err(parse_error(e))),
    }
    let (Some(method), Some(target), Some(minor_version)) =
        (parsed.method, parsed.path, parsed.version)
    else {
        return f(Err(Rejection::BadRequest("malformed request line")));
    };
    if !target.starts_with('/') {
        return f(Err(Rejection::BadRequest(
            "request target must be an absolute path",
        )));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let request = Request {
        method,
        path,
        query,
        minor_version,
        headers: parsed.headers,
        peer,
        received,
    };
    f(Ok(&request))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(buf: &[u8]) -> Result<Framing, Rejection> {
        frame(buf, &Limits::default())
    }

    #[test]
    fn frames_complete_and_partial_requests() {
        assert_eq!(framing(b""), Ok(Framing::Partial));
        assert_eq!(
            framing(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Ok(Framing::Partial)
        );
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            framing(req),
            Ok(Framing::Complete {
                head: req.len(),
                body: 0
            })
        );
        let piped = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        assert_eq!(framing(piped), Ok(Framing::Complete { head: 19, body: 0 }));
        assert_eq!(
            framing(b"GET / HTTP/1.1\nHost: x\n\n"),
            Ok(Framing::Complete { head: 24, body: 0 })
        );
    }

    #[test]
    fn waits_for_a_declared_body() {
        let head = b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(framing(head), Ok(Framing::Partial));
        let mut full = head.to_vec();
        full.extend_from_slice(b"hello");
        assert_eq!(
            framing(&full),
            Ok(Framing::Complete {
                head: head.len(),
                body: 5
            })
        );
    }

    #[test]
    fn refuses_oversized_and_malformed_requests() {
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
        assert_eq!(framing(long_line.as_bytes()), Err(Rejection::UriTooLong));
        // Even before the line ends.
        assert_eq!(framing(&[b'a'; 9000]), Err(Rejection::UriTooLong));
        let big_headers = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(17000));
        assert_eq!(
            framing(big_headers.as_bytes()),
            Err(Rejection::HeadersTooLarge)
        );
        let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            framing(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Err(Rejection::HeadersTooLarge)
        );
        assert_eq!(
            framing(b"GET / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            Err(Rejection::PayloadTooLarge)
        );
        assert_eq!(
            framing(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            Err(Rejection::BadRequest("invalid Content-Length"))
        );
        assert_eq!(
            framing(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(Rejection::BadRequest("conflicting Content-Length headers"))
        );
        assert!(matches!(
            framing(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(Rejection::NotImplemented(_))
        ));
        assert_eq!(
            framing(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Err(Rejection::VersionNotSupported)
        );
        assert!(matches!(
            framing(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
            Err(Rejection::BadRequest(_))
        ));
    }

    #[test]
    fn splits_path_and_query_and_reads_keep_alive() {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let head = b"GET /counts?limit=2 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
        with_request(head, peer, Instant::now(), |r| {
            let r = r.unwrap();
            assert_eq!(r.method, "GET");
            assert_eq!(r.path, "/counts");
            assert_eq!(r.query, Some("limit=2"));
            assert!(r.wants_keep_alive());
        });
        with_request(b"GET / HTTP/1.0\r\n\r\n", peer, Instant::now(), |r| {
            assert!(!r.unwrap().wants_keep_alive());
        });
        with_request(
            b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n",
            peer,
            Instant::now(),
            |r| assert!(!r.unwrap().wants_keep_alive()),
        );
        with_request(b"GET * HTTP/1.1\r\n\r\n", peer, Instant::now(), |r| {
            assert!(r.is_err());
        });
    }
}
