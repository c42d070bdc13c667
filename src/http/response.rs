//! Responses and their serialisation: a head with `Content-Length`, or a chunked stream for
//! bodies produced while they are written.

use std::cell::RefCell;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::clock::Utc;

/// Writes a streamed body; returning an error aborts the connection so the client sees an
/// incomplete response rather than a truncated one that looks whole.
pub type StreamFn = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

pub enum Body {
    Full(Vec<u8>),
    Stream(StreamFn),
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Headers beyond those this module writes itself.
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
    /// Close the connection after this response.
    pub close: bool,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: Body::Full(body.into()),
            close: false,
        }
    }

    pub fn stream(status: u16, content_type: &'static str, body: StreamFn) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: Body::Stream(body),
            close: false,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// How the response is to be framed for this exchange.
#[derive(Clone, Copy, Debug)]
pub struct Framing {
    /// HEAD: the head only.
    pub head_only: bool,
    pub keep_alive: bool,
    /// HTTP/1.0 peers get no chunked encoding: a stream is ended by closing.
    pub http10: bool,
}

/// Writes `response` and returns the number of body bytes sent.
pub fn write(out: &mut impl Write, response: Response, framing: Framing) -> io::Result<u64> {
    let keep_alive = framing.keep_alive && !response.close;
    let mut head = Vec::with_capacity(256);
    write!(
        head,
        "HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: {}\r\n",
        response.status,
        reason(response.status),
        http_date(),
        response.content_type
    )?;
    for (name, value) in &response.headers {
        write!(head, "{name}: {value}\r\n")?;
    }
    match response.body {
        Body::Full(body) => {
            write!(head, "Content-Length: {}\r\n", body.len())?;
            head.extend_from_slice(connection_header(keep_alive, framing.http10));
            head.extend_from_slice(b"\r\n");
            if !framing.head_only {
                head.extend_from_slice(&body);
            }
            out.write_all(&head)?;
            out.flush()?;
            Ok(if framing.head_only {
                0
            } else {
                body.len() as u64
            })
        }
        Body::Stream(produce) => {
            // An HTTP/1.0 client learns where a stream ends when the connection closes.
            let chunked = !framing.http10;
            if chunked {
                head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            }
            head.extend_from_slice(connection_header(keep_alive && chunked, framing.http10));
            head.extend_from_slice(b"\r\n");
            if framing.head_only {
                out.write_all(&head)?;
                out.flush()?;
                return Ok(0);
            }
            let mut buffered = io::BufWriter::with_capacity(64 * 1024, out);
            buffered.write_all(&head)?;
            let sent = if chunked {
                let mut chunks = Chunked {
                    out: &mut buffered,
                    sent: 0,
                };
                {
                    // Producers write in small pieces; gather them so that each chunk is large
                    // and its framing costs nothing.
                    let mut gathered = io::BufWriter::with_capacity(32 * 1024, &mut chunks);
                    produce(&mut gathered)?;
                    gathered.flush()?;
                }
                chunks.out.write_all(b"0\r\n\r\n")?;
                chunks.sent
            } else {
                let mut counting = Counting {
                    out: &mut buffered,
                    sent: 0,
                };
                produce(&mut counting)?;
                counting.sent
            };
            buffered.flush()?;
            Ok(sent)
        }
    }
}

/// Whether the connection stays open after writing `response` this way.
pub fn keeps_alive(response: &Response, framing: Framing) -> bool {
    framing.keep_alive
        && !response.close
        && !(framing.http10 && matches!(response.body, Body::Stream(_)) && !framing.head_only)
}

/// The `Date` header's value, formatted once a second per thread.
fn http_date() -> String {
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
            *cache = (now, Utc::from_unix_millis(now as i64 * 1000).http_date());
        }
        cache.1.clone()
    })
}

fn connection_header(keep_alive: bool, http10: bool) -> &'static [u8] {
    match (keep_alive, http10) {
        (true, true) => b"Connection: keep-alive\r\n",
        (true, false) => b"",
        (false, _) => b"Connection: close\r\n",
    }
}

struct Chunked<'a, W: Write> {
    out: &'a mut W,
    sent: u64,
}

impl<W: Write> Write for Chunked<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        write!(self.out, "{:x}\r\n", buf.len())?;
        self.out.write_all(buf)?;
        self.out.write_all(b"\r\n")?;
        self.sent += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

struct Counting<'a, W: Write> {
    out: &'a mut W,
    sent: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.sent += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
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

    fn render(response: Response, framing: Framing) -> String {
        let mut out = Vec::new();
        write(&mut out, response, framing).unwrap();
        String::from_utf8(out).unwrap()
    }

    const KEEP: Framing = Framing {
        head_only: false,
        keep_alive: true,
        http10: false,
    };

    #[test]
    fn full_bodies_carry_their_length() {
        let text = render(Response::new(200, "text/plain", "hi"), KEEP);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "));
        assert!(text.contains("Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"));
        assert!(!text.contains("Connection"));
        let head = render(
            Response::new(200, "text/plain", "hi"),
            Framing {
                head_only: true,
                ..KEEP
            },
        );
        assert!(head.ends_with("Content-Length: 2\r\n\r\n"));
    }

    #[test]
    fn streams_are_chunked_or_closed() {
        let stream = || {
            Response::stream(
                200,
                "application/json",
                Box::new(|w: &mut dyn Write| {
                    w.write_all(b"ab")?;
                    w.write_all(b"cde")
                }),
            )
        };
        let text = render(stream(), KEEP);
        assert!(text.ends_with("Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n"));
        let old = Framing {
            http10: true,
            ..KEEP
        };
        assert!(!keeps_alive(&stream(), old));
        let text = render(stream(), old);
        assert!(text.ends_with("Connection: close\r\n\r\nabcde"));
    }
}
