//! Responses: as handlers build them, and as they go out. A body is whole, or a source pulled
//! for one piece at a time while the connection can take more, so that a long listing never
//! waits in a worker for a slow client. [`Outgoing`] is the sending half of a connection: it
//! writes the head and body into the connection's [`Output`], frames a streamed body as chunks,
//! and says when the response is over; the connection ([`super::conn`]) decides only whether
//! it may stay open.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Status;
use crate::decimal;

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
    pub status: Status,
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
}

impl Response {
    pub fn new(status: Status, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response::with_body(status, content_type, Body::Full(body.into()))
    }

    pub fn stream(
        status: Status,
        content_type: &'static str,
        body: Box<dyn BodySource>,
    ) -> Response {
        Response::with_body(status, content_type, Body::Stream(body))
    }

    fn with_body(status: Status, content_type: &'static str, body: Body) -> Response {
        Response {
            status,
            content_type,
            constant_headers: [("", ""); CONSTANT_HEADERS],
            constant_count: 0,
            headers: Vec::new(),
            body,
            close: false,
        }
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

    /// The value of a header added to this response (not one written as it is sent).
    #[cfg(test)]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.extra_headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
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

/// Bytes on their way to the client, and how many of them have gone.
#[derive(Debug, Default)]
pub struct Output {
    bytes: Vec<u8>,
    sent: usize,
}

impl Output {
    /// What is still to send.
    pub fn unsent(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    /// `n` of the unsent bytes left; whether any did.
    pub fn sent(&mut self, n: usize) -> bool {
        self.sent = (self.sent + n).min(self.bytes.len());
        n > 0
    }

    fn is_empty(&self) -> bool {
        self.sent == self.bytes.len()
    }

    /// Empties the buffer for its next use, keeping its memory only if small.
    pub fn release(&mut self) {
        super::release(&mut self.bytes);
        self.sent = 0;
    }

    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

/// What the connection decided for one response.
#[derive(Clone, Copy, Debug)]
pub struct Terms {
    /// The connection may stay open after it, as far as the request and connection go.
    pub keep_alive: bool,
    /// The client speaks HTTP/1.0: no chunked coding, keep-alive only when said.
    pub http10: bool,
    /// The request was HEAD: the head goes out, the body does not.
    pub head_only: bool,
}

/// Where a response being sent stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Bytes wait in the [`Output`].
    Send,
    /// The response is over: `whole`, or abandoned midway (its source failed), in which case
    /// the connection must close so that the client sees an incomplete response.
    Over { whole: bool },
}

/// Room for a chunk-size line written in front of a piece before its length is known: up to
/// eight hexadecimal digits, right-aligned, then CRLF.
const CHUNK_SIZE_SLOT: &[u8] = b"00000000\r\n";

/// A response being sent.
pub struct Outgoing {
    status: Status,
    /// The rest of a streamed body; `None` once it is over.
    source: Option<Box<dyn BodySource>>,
    chunked: bool,
    body_bytes: u64,
    keep_alive: bool,
    /// The source failed: the response is over, not whole.
    broken: bool,
}

impl Outgoing {
    /// Writes the response's head, and its body if whole, into `output`.
    pub fn start(response: Response, terms: Terms, output: &mut Output) -> Outgoing {
        let stream = matches!(response.body, Body::Stream(_));
        // A stream to an HTTP/1.0 client ends with the connection; what the head says about
        // the connection is what happens to it.
        let keep_alive =
            terms.keep_alive && !response.close && !(stream && terms.http10 && !terms.head_only);
        let delimit = match &response.body {
            Body::Full(body) => Delimit::Length(body.len()),
            Body::Stream(_) if terms.http10 => Delimit::Close,
            Body::Stream(_) => Delimit::Chunked,
        };
        output.bytes.clear();
        output.sent = 0;
        write_head(
            &mut output.bytes,
            &response,
            delimit,
            keep_alive,
            terms.http10,
        );
        let (source, body_bytes) = match response.body {
            Body::Full(body) if !terms.head_only => {
                output.bytes.extend_from_slice(&body);
                (None, body.len() as u64)
            }
            Body::Stream(source) if !terms.head_only => (Some(source), 0),
            _ => (None, 0),
        };
        Outgoing {
            status: response.status,
            source,
            chunked: delimit == Delimit::Chunked,
            body_bytes,
            keep_alive,
            broken: false,
        }
    }

    /// Refills `output` from the body's source once all of it has gone, until the response is
    /// over.
    pub fn progress(&mut self, output: &mut Output) -> Progress {
        loop {
            if !output.is_empty() {
                return Progress::Send;
            }
            let Some(source) = self.source.as_mut() else {
                return Progress::Over {
                    whole: !self.broken,
                };
            };
            match produce(source, self.chunked, output) {
                Ok((piece, more)) => {
                    self.body_bytes += piece as u64;
                    if !more {
                        self.source = None;
                    }
                }
                Err(_) => {
                    self.source = None;
                    self.broken = true;
                }
            }
        }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// Body bytes produced so far.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    /// Whether the connection stays open after this response, as its head said.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }
}

/// Pulls the next piece of a streamed body into `output`, framed as a chunk when `chunked`: the
/// piece's length, and whether more follow. On an error `output` is left empty.
fn produce(
    source: &mut Box<dyn BodySource>,
    chunked: bool,
    output: &mut Output,
) -> io::Result<(usize, bool)> {
    let out = &mut output.bytes;
    out.clear();
    output.sent = 0;
    if chunked {
        out.extend_from_slice(CHUNK_SIZE_SLOT);
    }
    let start = out.len();
    let more = source.fill(out).inspect_err(|_| out.clear())?;
    let piece = out.len() - start;
    if chunked {
        if piece == 0 {
            // A chunk of size zero would end the body.
            out.clear();
        } else {
            let digits = format!("{piece:x}");
            let at = CHUNK_SIZE_SLOT.len() - 2 - digits.len();
            out[at..at + digits.len()].copy_from_slice(digits.as_bytes());
            output.sent = at;
            out.extend_from_slice(b"\r\n");
        }
        if !more {
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
    Ok((piece, more))
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
    decimal::push(out, u64::from(response.status.code()));
    out.push(b' ');
    out.extend_from_slice(response.status.reason().as_bytes());
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
            decimal::push(out, n as u64);
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

/// A body for tests, given in advance piece by piece.
#[cfg(test)]
pub(crate) mod pieces {
    use std::io;

    use super::BodySource;

    /// Pieces of a streamed body; an `Err` piece fails the stream.
    pub struct Pieces(pub Vec<Result<&'static str, ()>>);

    impl BodySource for Pieces {
        fn fill(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
            if self.0.is_empty() {
                return Ok(false);
            }
            match self.0.remove(0) {
                Ok(piece) => out.extend_from_slice(piece.as_bytes()),
                Err(()) => return Err(io::Error::other("broken")),
            }
            Ok(!self.0.is_empty())
        }
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
        let r = Response::new(Status::Ok, "text/plain", "hi").with_header("Vary", "Accept");
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

    use super::pieces::Pieces;

    const KEEP_11: Terms = Terms {
        keep_alive: true,
        http10: false,
        head_only: false,
    };

    /// Sends `response` whole, taking at most `each` bytes at a time: what went out, how it
    /// ended, and the response's record.
    fn send(response: Response, terms: Terms, each: usize) -> (String, bool, Outgoing) {
        let mut output = Output::default();
        let mut outgoing = Outgoing::start(response, terms, &mut output);
        let mut wire = Vec::new();
        loop {
            match outgoing.progress(&mut output) {
                Progress::Send => {
                    let n = output.unsent().len().min(each);
                    wire.extend_from_slice(&output.unsent()[..n]);
                    assert!(output.sent(n));
                }
                Progress::Over { whole } => {
                    return (String::from_utf8(wire).unwrap(), whole, outgoing);
                }
            }
        }
    }

    fn body(wire: &str) -> &str {
        wire.split_once("\r\n\r\n").unwrap().1
    }

    #[test]
    fn a_stream_goes_out_in_chunks_however_little_is_taken_at_a_time() {
        for each in [1, 2, 7, usize::MAX] {
            let pieces = Pieces(vec![Ok("ab"), Ok(""), Ok("cde")]);
            let (wire, whole, outgoing) = send(
                Response::stream(Status::Ok, "text/plain", Box::new(pieces)),
                KEEP_11,
                each,
            );
            assert!(wire.contains("Transfer-Encoding: chunked\r\n"), "{wire}");
            assert_eq!(
                body(&wire),
                "2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n",
                "each {each}"
            );
            assert!(whole && outgoing.keep_alive());
            assert_eq!(outgoing.body_bytes(), 5);
        }
    }

    #[test]
    fn a_stream_that_fails_is_cut_short_and_the_connection_closes() {
        let pieces = Pieces(vec![Ok("ab"), Err(())]);
        let (wire, whole, outgoing) = send(
            Response::stream(Status::Ok, "text/plain", Box::new(pieces)),
            KEEP_11,
            3,
        );
        assert_eq!(body(&wire), "2\r\nab\r\n");
        assert!(!whole);
        assert_eq!(outgoing.body_bytes(), 2);
    }

    #[test]
    fn http10_streams_end_with_the_connection_and_head_sends_no_body() {
        let http10 = Terms {
            http10: true,
            ..KEEP_11
        };
        let stream =
            || Response::stream(Status::Ok, "text/plain", Box::new(Pieces(vec![Ok("abc")])));
        let (wire, whole, outgoing) = send(stream(), http10, usize::MAX);
        assert!(wire.contains("Connection: close\r\n\r\nabc"), "{wire}");
        assert!(!wire.contains("chunked") && whole && !outgoing.keep_alive());
        // HEAD: the head says how the body would be sent; none is, so the connection stays.
        let head = Terms {
            head_only: true,
            ..http10
        };
        let (wire, _, outgoing) = send(stream(), head, usize::MAX);
        assert!(wire.ends_with("Connection: keep-alive\r\n\r\n"), "{wire}");
        assert!(outgoing.keep_alive());
        let (wire, _, outgoing) = send(Response::new(Status::Ok, "text/plain", "hi"), head, 1);
        assert!(wire.ends_with("Content-Length: 2\r\nConnection: keep-alive\r\n\r\n"));
        assert_eq!(outgoing.body_bytes(), 0);
    }

    #[test]
    fn a_response_that_says_close_closes() {
        let mut response = Response::new(Status::ServiceUnavailable, "application/json", "{}");
        response.close = true;
        let (wire, whole, outgoing) = send(response, KEEP_11, usize::MAX);
        assert!(wire.contains("Connection: close\r\n") && wire.ends_with("{}"));
        assert!(whole && !outgoing.keep_alive());
        assert_eq!(
            (outgoing.status(), outgoing.body_bytes()),
            (Status::ServiceUnavailable, 2)
        );
    }
}
