//! One client connection as a plain value: bytes in, events out, bytes to send. It knows every
//! limit and deadline as data and touches no socket, so the protocol is tested over byte
//! sequences; the server is the thin I/O shell that reads, writes and waits for it.
//!
//! The shell calls [`Conn::poll`] until it says to read (then [`Conn::receive`]) or to wait for
//! room to send, and answers the requests it hands out with [`Conn::respond`]. A request's
//! deadline is fixed when its first byte arrives and never moves; the idle timeout runs only
//! between requests; a response's deadline moves only when bytes leave. A body no route reads
//! is thrown away as it arrives, and a connection between requests keeps no buffer over 512
//! bytes.

use std::mem;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::body::Discard;
use super::request::{self, Head, HeadScanner, Limits, Request, Version};
use super::response::{write_head, Body, BodySource, Delimit, Response};
use super::{Exchange, Rejection};

/// The limits and timeouts every connection of a server shares.
#[derive(Clone, Debug)]
pub struct Settings {
    pub limits: Limits,
    /// Time a client has to send a whole request from its first byte (and a new connection to
    /// start one).
    pub request_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time a response may go without a byte leaving.
    pub write_timeout: Duration,
}

/// What the connection needs next.
#[derive(Debug)]
pub enum Event<'a> {
    /// A whole request: answer it with [`Conn::respond`].
    Request(Request<'a>),
    /// Bytes that cannot be answered as a request: answer with the refusal's response through
    /// [`Conn::respond`]; the connection closes after it.
    Refuse(Rejection),
    /// Send these bytes, then say how many left with [`Conn::sent`].
    Send(&'a [u8]),
    /// A response is over, sent whole or abandoned midway: record it.
    Answered(Exchange<'a>),
    /// More bytes are needed: read at most [`Conn::read_room`] and pass them to
    /// [`Conn::receive`], or call [`Conn::receive_eof`] at end of file.
    Read,
    /// Close the connection.
    Close,
}

/// What a passed deadline means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// No request was under way: close quietly.
    Idle,
    /// A request was started and not finished in time: answer 408 and close.
    Request,
    /// The client stopped taking its response: close.
    Write,
}

pub struct Conn {
    settings: Arc<Settings>,
    peer: SocketAddr,
    /// Bytes received and not yet done with: the current request's head (kept until its
    /// response is over), then whatever the client sent after it.
    input: Vec<u8>,
    state: State,
    output: Vec<u8>,
    /// How much of `output` has been sent.
    sent: usize,
    deadline: Instant,
    opened: Instant,
    /// The client has finished sending: close once what it asked is answered.
    peer_done: bool,
    answered: u64,
}

enum State {
    /// No request under way; `input` is empty.
    Idle,
    /// Part of a head has arrived.
    Head(HeadScanner),
    /// The head is whole; its body is being thrown away.
    Body {
        head: Head,
        body: Discard,
    },
    /// A whole request waits for its response. `unread_body`: it announced a body that was not
    /// waited for (`Expect: 100-continue`), so the connection cannot be reused.
    Ready {
        head: Head,
        received: Instant,
        unread_body: bool,
    },
    /// A refusal waits for its response.
    Refused(Rejection, Instant),
    Sending(Sending),
    Closing,
}

struct Sending {
    /// The request answered; `None` for a refusal.
    head: Option<Head>,
    status: u16,
    tag: Option<u8>,
    received: Instant,
    source: Option<Box<dyn BodySource>>,
    chunked: bool,
    body_bytes: u64,
    keep_alive: bool,
    /// Set once the response is over: whether it was sent whole.
    over: Option<bool>,
}

/// Most heap a buffer keeps between requests: enough for a typical head or small response, so
/// that the next one needs no allocation, and little enough that an idle connection stays
/// small.
const KEPT_BUFFER: usize = 512;

/// Empties a buffer, giving its memory back unless it is small.
fn release(buffer: &mut Vec<u8>) {
    if buffer.capacity() > KEPT_BUFFER {
        *buffer = Vec::new();
    } else {
        buffer.clear();
    }
}

/// What [`Conn::step`] arrived at; [`Conn::poll`] turns it into an [`Event`].
enum Step {
    Request,
    Refuse(Rejection),
    Send,
    Answered,
    Read,
    Close,
}

/// Room for a chunk-size line written in front of a piece before its length is known: up to
/// eight hexadecimal digits, right-aligned, then CRLF.
const CHUNK_SIZE_SLOT: &[u8] = b"00000000\r\n";

impl Conn {
    pub fn new(settings: Arc<Settings>, peer: SocketAddr, now: Instant) -> Conn {
        let deadline = now + settings.request_timeout;
        Conn {
            settings,
            peer,
            input: Vec::new(),
            state: State::Idle,
            output: Vec::new(),
            sent: 0,
            deadline,
            opened: now,
            peer_done: false,
            answered: 0,
        }
    }

    /// What to do next.
    pub fn poll(&mut self, now: Instant) -> Event<'_> {
        match self.step(now) {
            Step::Request => match &self.state {
                State::Ready { head, .. } => Event::Request(head.request(&self.input)),
                _ => Event::Close,
            },
            Step::Refuse(rejection) => Event::Refuse(rejection),
            Step::Send => Event::Send(&self.output[self.sent..]),
            Step::Answered => self.exchange(now).map_or(Event::Close, Event::Answered),
            Step::Read => Event::Read,
            Step::Close => Event::Close,
        }
    }

    /// Moves the state on as far as it goes without the outside world.
    fn step(&mut self, now: Instant) -> Step {
        loop {
            match &mut self.state {
                State::Idle if !self.input.is_empty() => {
                    self.state = State::Head(HeadScanner::default())
                }
                State::Idle | State::Body { .. } if self.peer_done => self.state = State::Closing,
                State::Idle | State::Body { .. } => return Step::Read,
                State::Head(scanner) => match scanner.scan(&self.input, &self.settings.limits) {
                    Err(rejection) => self.state = State::Refused(rejection, now),
                    Ok(None) if self.peer_done => self.state = State::Closing,
                    Ok(None) => return Step::Read,
                    Ok(Some(len)) => match request::parse(scanner, &self.input, len) {
                        Err(rejection) => self.state = State::Refused(rejection, now),
                        Ok(head) => self.state = self.after_head(head, now),
                    },
                },
                State::Ready { .. } => return Step::Request,
                State::Refused(rejection, _) => return Step::Refuse(*rejection),
                State::Sending(sending) => {
                    if let Some(whole) = sending.over {
                        self.finish(whole, now);
                    } else if self.sent < self.output.len() {
                        return Step::Send;
                    } else if sending.source.is_some() {
                        self.produce();
                    } else {
                        sending.over = Some(true);
                        return Step::Answered;
                    }
                }
                State::Closing => return Step::Close,
            }
        }
    }

    /// A head is whole: wait for its body, or answer at once.
    fn after_head(&mut self, head: Head, now: Instant) -> State {
        let body = match Discard::new(head.framing.body, self.settings.limits.body) {
            Err(rejection) => return State::Refused(rejection, now),
            Ok(None) => {
                return State::Ready {
                    head,
                    received: now,
                    unread_body: false,
                }
            }
            Ok(Some(body)) => body,
        };
        // A client that expects 100-continue holds its body back; no route reads one, so the
        // final answer goes out at once and the connection closes after it (RFC 9110 §10.1.1).
        if head.framing.expect_continue {
            return State::Ready {
                head,
                received: now,
                unread_body: true,
            };
        }
        let mut body = body;
        match body.feed(&self.input[head.len..]) {
            Err(rejection) => State::Refused(rejection, now),
            Ok((taken, done)) => {
                self.input.drain(head.len..head.len + taken);
                // The read that brought the head may have brought much of the body too: the
                // room it took goes back rather than stay with the connection while it waits.
                if self.input.capacity() > 2 * self.input.len() + 1024 {
                    self.input.shrink_to_fit();
                }
                if done {
                    State::Ready {
                        head,
                        received: now,
                        unread_body: false,
                    }
                } else {
                    State::Body { head, body }
                }
            }
        }
    }

    /// How many bytes the connection takes now: none while a request is being answered (the
    /// client waits, or its pipelined requests wait in the socket), never so many that a head
    /// could outgrow its limit.
    pub fn read_room(&self) -> usize {
        match self.state {
            State::Idle | State::Head(_) => {
                (self.settings.limits.head + 1).saturating_sub(self.input.len())
            }
            State::Body { .. } => usize::MAX,
            _ => 0,
        }
    }

    /// Bytes read from the client.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        if bytes.is_empty() {
            return;
        }
        match &mut self.state {
            State::Idle => {
                // The request's deadline starts with its first byte, and stays.
                self.deadline = now + self.settings.request_timeout;
                self.state = State::Head(HeadScanner::default());
                self.input.extend_from_slice(bytes);
            }
            State::Body { body, .. } => match body.feed(bytes) {
                Err(rejection) => self.state = State::Refused(rejection, now),
                Ok((taken, true)) => {
                    self.input.extend_from_slice(&bytes[taken..]);
                    let State::Body { head, .. } = mem::replace(&mut self.state, State::Closing)
                    else {
                        unreachable!("matched above")
                    };
                    self.state = State::Ready {
                        head,
                        received: now,
                        unread_body: false,
                    };
                }
                Ok(_) => {}
            },
            _ => self.input.extend_from_slice(bytes),
        }
    }

    /// The client will send nothing more.
    pub fn receive_eof(&mut self) {
        self.peer_done = true;
    }

    /// Answers the request (or refusal) the last poll handed out. `draining`: the server is
    /// shutting down, so the connection closes after this response.
    pub fn respond(&mut self, response: Response, now: Instant, draining: bool) {
        let (head, received, unread_body) = match mem::replace(&mut self.state, State::Closing) {
            State::Ready {
                head,
                received,
                unread_body,
            } => (Some(head), received, unread_body),
            State::Refused(_, at) => (None, at, true),
            other => {
                self.state = other;
                return;
            }
        };
        let http10 = head.as_ref().is_some_and(|h| h.version == Version::Http10);
        let head_only = head.as_ref().is_some_and(|h| h.is_head(&self.input));
        let stream = matches!(response.body, Body::Stream(_));
        // What the response says about the connection is what happens to it.
        let keep_alive = head.as_ref().is_some_and(|h| h.framing.keep_alive)
            && !response.close
            && !draining
            && !self.peer_done
            && !unread_body
            && !(stream && http10 && !head_only);
        let delimit = match &response.body {
            Body::Full(body) => Delimit::Length(body.len()),
            Body::Stream(_) if http10 => Delimit::Close,
            Body::Stream(_) => Delimit::Chunked,
        };
        self.output.clear();
        self.sent = 0;
        write_head(&mut self.output, &response, delimit, keep_alive, http10);
        let status = response.status;
        let (source, body_bytes) = match response.body {
            Body::Full(body) if !head_only => {
                self.output.extend_from_slice(&body);
                (None, body.len() as u64)
            }
            Body::Stream(source) if !head_only => (Some(source), 0),
            _ => (None, 0),
        };
        self.state = State::Sending(Sending {
            head,
            status,
            tag: response.tag,
            received,
            source,
            chunked: delimit == Delimit::Chunked,
            body_bytes,
            keep_alive,
            over: None,
        });
        self.deadline = now + self.settings.write_timeout;
    }

    /// `n` bytes of the last [`Event::Send`] left; any at all is progress.
    pub fn sent(&mut self, n: usize, now: Instant) {
        if n > 0 {
            self.sent = (self.sent + n).min(self.output.len());
            self.deadline = now + self.settings.write_timeout;
        }
    }

    /// Pulls the next piece of a streamed body into `output`, framed as a chunk when chunked.
    fn produce(&mut self) {
        let State::Sending(sending) = &mut self.state else {
            return;
        };
        let Some(source) = sending.source.as_mut() else {
            return;
        };
        self.output.clear();
        self.sent = 0;
        if sending.chunked {
            self.output.extend_from_slice(CHUNK_SIZE_SLOT);
        }
        let start = self.output.len();
        let more = match source.fill(&mut self.output) {
            Ok(more) => more,
            Err(_) => {
                self.output.clear();
                sending.source = None;
                sending.over = Some(false);
                return;
            }
        };
        let piece = self.output.len() - start;
        sending.body_bytes += piece as u64;
        if sending.chunked {
            if piece == 0 {
                // A chunk of size zero would end the body.
                self.output.clear();
            } else {
                let digits = format!("{piece:x}");
                let at = CHUNK_SIZE_SLOT.len() - 2 - digits.len();
                self.output[at..at + digits.len()].copy_from_slice(digits.as_bytes());
                self.sent = at;
                self.output.extend_from_slice(b"\r\n");
            }
            if !more {
                self.output.extend_from_slice(b"0\r\n\r\n");
            }
        }
        if !more {
            sending.source = None;
        }
    }

    /// A response is over: go on to the next request, or close.
    fn finish(&mut self, whole: bool, now: Instant) {
        let State::Sending(sending) = mem::replace(&mut self.state, State::Closing) else {
            return;
        };
        self.answered += 1;
        release(&mut self.output);
        self.sent = 0;
        if !whole || !sending.keep_alive {
            return;
        }
        if let Some(head) = &sending.head {
            self.input.drain(..head.len);
        }
        if self.input.is_empty() {
            release(&mut self.input);
            self.state = State::Idle;
            self.deadline = now + self.settings.idle_timeout;
        } else {
            // A pipelined request: its deadline starts now, and stays.
            self.state = State::Head(HeadScanner::default());
            self.deadline = now + self.settings.request_timeout;
        }
    }

    /// The response under way, to record when it is abandoned (the client went away or stopped
    /// reading).
    pub fn exchange(&self, now: Instant) -> Option<Exchange<'_>> {
        let State::Sending(sending) = &self.state else {
            return None;
        };
        let (method, path, trace_id) = match &sending.head {
            Some(head) => (
                head.method(&self.input),
                head.path(&self.input),
                head.header(&self.input, "x-amzn-trace-id"),
            ),
            None => ("-", "-", None),
        };
        Some(Exchange {
            method,
            path,
            status: sending.status,
            elapsed: now.saturating_duration_since(sending.received),
            bytes: sending.body_bytes,
            peer: self.peer,
            tag: sending.tag,
            trace_id,
        })
    }

    /// When the connection must next move, and what it means if it has not.
    pub fn deadline(&self) -> (Instant, Expiry) {
        let expiry = match self.state {
            State::Head(_) | State::Body { .. } => Expiry::Request,
            State::Sending(_) => Expiry::Write,
            _ => Expiry::Idle,
        };
        (self.deadline, expiry)
    }

    /// Whether the connection may be closed at once while the server drains: nothing under
    /// way, and either something was answered on it or it has had `grace` to start a request.
    pub fn idle_for_drain(&self, now: Instant, grace: Duration) -> bool {
        matches!(self.state, State::Idle) && (self.answered > 0 || now - self.opened >= grace)
    }

    /// Whether the connection is kept alive between requests: it answered one and nothing is
    /// under way, so it may be closed to make room (RFC 9112 §9.6). A new connection that has
    /// not sent a request yet is not: its request may be on its way.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle) && self.answered > 0
    }

    /// Heap bytes held for this connection's buffers.
    pub fn buffered(&self) -> usize {
        let head = match &self.state {
            State::Body { head, .. } | State::Ready { head, .. } => head.heap(),
            State::Sending(s) => s.head.as_ref().map_or(0, Head::heap),
            _ => 0,
        };
        self.input.capacity() + self.output.capacity() + head
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    const START: Duration = Duration::ZERO;

    fn settings() -> Arc<Settings> {
        Arc::new(Settings {
            limits: Limits {
                request_line: 64,
                head: 128,
                body: 32,
            },
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(5),
        })
    }

    /// A test clock: `at(s)` is `s` seconds after the connection opened.
    struct Clock(Instant);

    impl Clock {
        fn at(&self, d: Duration) -> Instant {
            self.0 + d
        }
    }

    fn open() -> (Conn, Clock) {
        let t0 = Instant::now();
        (
            Conn::new(settings(), "127.0.0.1:9".parse().unwrap(), t0),
            Clock(t0),
        )
    }

    /// What a client saw: the requests the application got (method and path), the bytes sent
    /// back, and whether the connection closed.
    #[derive(Debug, Default, PartialEq)]
    struct Seen {
        requests: Vec<String>,
        responses: Vec<(u16, String)>,
        out: String,
        closed: bool,
    }

    /// Pieces of a streamed body; an `Err` piece fails the stream.
    struct Pieces(Vec<Result<&'static str, ()>>);

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

    /// Answers every request with its path (or a stream for `/stream`), every refusal with
    /// its status, sending all output at once, until the connection wants bytes it does not
    /// have.
    fn run(conn: &mut Conn, now: Instant, seen: &mut Seen) {
        loop {
            let response = match conn.poll(now) {
                Event::Request(r) => {
                    seen.requests.push(format!("{} {}", r.method, r.path));
                    match r.path {
                        "/stream" => Response::stream(
                            200,
                            "text/plain",
                            Box::new(Pieces(vec![Ok("ab"), Ok(""), Ok("cde")])),
                        ),
                        "/broken" => Response::stream(
                            200,
                            "text/plain",
                            Box::new(Pieces(vec![Ok("ab"), Err(())])),
                        ),
                        path => Response::new(200, "text/plain", path),
                    }
                }
                Event::Refuse(r) => Response::new(status_of(r), "text/plain", "refused"),
                Event::Send(bytes) => {
                    let n = bytes.len();
                    seen.out.push_str(&String::from_utf8_lossy(bytes));
                    conn.sent(n, now);
                    continue;
                }
                Event::Answered(e) => {
                    seen.responses.push((e.status, e.path.to_owned()));
                    continue;
                }
                Event::Read => return,
                Event::Close => {
                    seen.closed = true;
                    return;
                }
            };
            conn.respond(response, now, false);
        }
    }

    fn status_of(r: Rejection) -> u16 {
        match r {
            Rejection::BadRequest(_) => 400,
            Rejection::UriTooLong => 414,
            Rejection::HeadersTooLarge => 431,
            Rejection::PayloadTooLarge => 413,
            Rejection::NotImplemented(_) => 501,
            Rejection::VersionNotSupported => 505,
            _ => 500,
        }
    }

    /// Feeds `bytes` in the given pieces, running the connection after each.
    fn feed(pieces: &[&[u8]]) -> Seen {
        let (mut conn, clock) = open();
        let mut seen = Seen::default();
        for piece in pieces {
            let now = clock.at(START);
            run(&mut conn, now, &mut seen);
            if seen.closed {
                break;
            }
            let room = conn.read_room().min(piece.len());
            assert!(room > 0 || piece.is_empty(), "no room for {piece:?}");
            conn.receive(&piece[..room], now);
            run(&mut conn, now, &mut seen);
        }
        seen
    }

    const GET_A: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";

    #[test]
    fn a_request_split_at_every_offset_is_answered_once() {
        let whole = feed(&[GET_A]);
        assert_eq!(whole.requests, ["GET /a"]);
        assert!(whole.out.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(whole.out.ends_with("Content-Length: 2\r\n\r\n/a"));
        assert!(!whole.closed);
        for cut in 0..=GET_A.len() {
            let split = feed(&[&GET_A[..cut], &GET_A[cut..]]);
            assert_eq!(split.requests, whole.requests, "cut at {cut}");
            assert_eq!(split.responses, whole.responses, "cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = GET_A.chunks(1).collect();
        assert_eq!(feed(&bytewise).requests, ["GET /a"]);
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let mut piped = Vec::new();
        for p in ["/1", "/2", "/3"] {
            piped.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        }
        let seen = feed(&[&piped]);
        assert_eq!(seen.requests, ["GET /1", "GET /2", "GET /3"]);
        for cut in 0..piped.len() {
            let split = feed(&[&piped[..cut], &piped[cut..]]);
            assert_eq!(split.requests, seen.requests, "cut at {cut}");
        }
    }

    #[test]
    fn bodies_are_thrown_away_as_they_arrive_and_the_next_request_follows() {
        let req = b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
        for cut in 0..req.len() {
            let seen = feed(&[&req[..cut], &req[cut..]]);
            assert_eq!(seen.requests, ["GET /a", "GET /b"], "cut at {cut}");
        }
        let chunked = b"GET /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
        for cut in 0..chunked.len() {
            let seen = feed(&[&chunked[..cut], &chunked[cut..]]);
            assert_eq!(seen.requests, ["GET /a", "GET /b"], "cut at {cut}");
        }
        // Body bytes are never held: only the head is, even when much of the body came in the
        // same read as the head.
        let big = Arc::new(Settings {
            limits: Limits::default(),
            ..(*settings()).clone()
        });
        let now = Instant::now();
        let mut conn = Conn::new(big, "127.0.0.1:9".parse().unwrap(), now);
        let mut seen = Seen::default();
        let head = b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 65536\r\n\r\n";
        conn.receive(&[&head[..], &[b'x'; 16_000]].concat(), now);
        run(&mut conn, now, &mut seen);
        assert!(conn.buffered() < 1024, "{}", conn.buffered());
        let (mut conn, clock) = open();
        let mut seen = Seen::default();
        conn.receive(
            b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 30\r\n\r\n",
            clock.at(START),
        );
        run(&mut conn, clock.at(START), &mut seen);
        let held = conn.input.len();
        conn.receive(&[b'x'; 29], clock.at(START));
        run(&mut conn, clock.at(START), &mut seen);
        assert_eq!(conn.input.len(), held);
        assert!(seen.requests.is_empty());
        conn.receive(b"x", clock.at(START));
        run(&mut conn, clock.at(START), &mut seen);
        assert_eq!(seen.requests, ["GET /a"]);
    }

    #[test]
    fn limits_hold_at_n_and_refuse_at_n_plus_one() {
        let line = |len: usize| format!("GET /{} HTTP/1.1\r\n", "a".repeat(len - 16));
        let with_host = |line: String| format!("{line}Host: h\r\n\r\n");
        assert_eq!(feed(&[with_host(line(64)).as_bytes()]).requests.len(), 1);
        let refused = feed(&[with_host(line(65)).as_bytes()]);
        assert!(refused.out.starts_with("HTTP/1.1 414 "), "{}", refused.out);
        assert!(refused.out.contains("Connection: close\r\n") && refused.closed);

        let head = |len: usize| {
            let base = "GET / HTTP/1.1\r\nHost: h\r\nX: \r\n\r\n".len();
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
                "v".repeat(len - base)
            )
        };
        assert_eq!(feed(&[head(128).as_bytes()]).requests.len(), 1);
        assert!(feed(&[head(129).as_bytes()])
            .out
            .starts_with("HTTP/1.1 431 "));
        // However the bytes arrive, no more than the limit and one byte is held.
        let big = head(400);
        let (mut conn, clock) = open();
        let mut seen = Seen::default();
        let mut at = 0;
        while !seen.closed && at < big.len() {
            let room = conn.read_room();
            if room == 0 {
                run(&mut conn, clock.at(START), &mut seen);
                continue;
            }
            let n = room.min(7).min(big.len() - at);
            conn.receive(&big.as_bytes()[at..at + n], clock.at(START));
            at += n;
            assert!(conn.input.len() <= 129);
            run(&mut conn, clock.at(START), &mut seen);
        }
        assert!(seen.out.starts_with("HTTP/1.1 431 "));

        let body = |n: usize| {
            format!(
                "GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: {n}\r\n\r\n{}",
                "b".repeat(n)
            )
        };
        assert_eq!(feed(&[body(32).as_bytes()]).requests, ["GET /a"]);
        assert!(feed(&[body(33).as_bytes()])
            .out
            .starts_with("HTTP/1.1 413 "));
    }

    #[test]
    fn leading_empty_lines_count_toward_the_request_line() {
        let seen = feed(&[b"\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n"]);
        assert_eq!(seen.requests, ["GET /a"]);
        let long = format!(
            "\r\n\r\nGET /{} HTTP/1.1\r\nHost: h\r\n\r\n",
            "a".repeat(46)
        );
        assert!(feed(&[long.as_bytes()]).out.starts_with("HTTP/1.1 414 "));
        let many = [b"\r\n".repeat(9), GET_A.to_vec()].concat();
        let seen = feed(&[&many]);
        assert!(seen.out.starts_with("HTTP/1.1 400 ") && seen.requests.is_empty());
    }

    #[test]
    fn every_connection_form_is_honoured_and_said() {
        let cases: [(&str, bool); 8] = [
            ("GET /a HTTP/1.1\r\nHost: h\r\n\r\n", true),
            (
                "GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                "GET /a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                "GET /a HTTP/1.1\r\nHost: h\r\nConnection: te, Close\r\n\r\n",
                false,
            ),
            ("GET /a HTTP/1.0\r\n\r\n", false),
            ("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            (
                "GET /a HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
                false,
            ),
            ("GET /a HTTP/1.2\r\nHost: h\r\n\r\n", true),
        ];
        for (request, kept) in cases {
            let next = b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
            let seen = feed(&[&[request.as_bytes(), next].concat()]);
            assert_eq!(seen.closed, !kept, "{request:?}");
            assert_eq!(seen.requests.len(), if kept { 2 } else { 1 }, "{request:?}");
            let said_close = seen.out.contains("Connection: close\r\n");
            assert_eq!(said_close, !kept, "{request:?}");
            assert!(seen.out.starts_with("HTTP/1.1 200 OK"), "{request:?}");
        }
    }

    #[test]
    fn streams_are_chunked_or_end_with_the_connection() {
        let seen = feed(&[b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n"]);
        assert!(
            seen.out
                .ends_with("Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
            "{}",
            seen.out
        );
        assert!(!seen.closed);
        assert_eq!(seen.responses, [(200, "/stream".to_owned())]);
        let old = feed(&[b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]);
        assert!(
            old.out.ends_with("Connection: close\r\n\r\nabcde"),
            "{}",
            old.out
        );
        assert!(old.closed);
        // HEAD sends no body, so an HTTP/1.0 keep-alive connection stays, and says so.
        let head = feed(&[
            b"HEAD /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /a HTTP/1.0\r\n\r\n",
        ]);
        assert!(
            head.out
                .contains("Connection: keep-alive\r\n\r\nHTTP/1.1 200 OK"),
            "{}",
            head.out
        );
        assert_eq!(head.requests, ["HEAD /stream", "GET /a"]);
        // A stream that fails midway is cut short: no last chunk, and the connection closes.
        let broken =
            feed(&[b"GET /broken HTTP/1.1\r\nHost: h\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n"]);
        assert!(broken.out.ends_with("2\r\nab\r\n"), "{}", broken.out);
        assert!(broken.closed);
        assert_eq!(broken.requests, ["GET /broken"]);
    }

    #[test]
    fn framing_faults_are_refused_and_close() {
        for (request, status) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], "400"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n0\r\n\r\n", "400"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "501"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "400"),
            (b"GET / HTTP/2.0\r\n\r\n", "505"),
        ] {
            let mut piped = request.to_vec();
            piped.extend_from_slice(GET_A);
            let seen = feed(&[&piped]);
            assert!(seen.out.starts_with(&format!("HTTP/1.1 {status} ")), "{request:?}: {}", seen.out);
            assert!(seen.closed && seen.requests.is_empty(), "{request:?}");
            assert!(seen.out.contains("Connection: close"));
            assert_eq!(seen.responses, [(status.parse().unwrap(), "-".to_owned())]);
        }
    }

    #[test]
    fn expect_100_continue_gets_its_answer_at_once_and_the_connection_closes() {
        let seen = feed(&[
            b"GET /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 20\r\n\r\n",
        ]);
        assert_eq!(seen.requests, ["GET /a"]);
        assert!(seen.out.starts_with("HTTP/1.1 200 OK") && !seen.out.contains("100 Continue"));
        assert!(seen.out.contains("Connection: close") && seen.closed);
        // Without a body there is nothing to wait for: the connection stays.
        let seen = feed(&[b"GET /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n"]);
        assert!(!seen.closed);
    }

    #[test]
    fn the_request_deadline_starts_with_the_first_byte_and_never_moves() {
        let (mut conn, clock) = open();
        let mut seen = Seen::default();
        // A new connection gets the request timeout to start.
        assert_eq!(
            conn.deadline(),
            (clock.at(Duration::from_secs(10)), Expiry::Idle)
        );
        run(&mut conn, clock.at(START), &mut seen);
        conn.receive(b"G", clock.at(Duration::from_secs(3)));
        let deadline = (clock.at(Duration::from_secs(13)), Expiry::Request);
        assert_eq!(conn.deadline(), deadline);
        for (i, byte) in b"ET /a HTTP/1.1\r\nHost: h\r\n".iter().enumerate() {
            let now = clock.at(Duration::from_millis(3_100 + 100 * i as u64));
            conn.receive(&[*byte], now);
            run(&mut conn, now, &mut seen);
            assert_eq!(conn.deadline(), deadline, "after byte {i}");
        }
        // A body trickles under the same deadline.
        conn.receive(
            b"Content-Length: 3\r\n\r\nab",
            clock.at(Duration::from_secs(9)),
        );
        run(&mut conn, clock.at(Duration::from_secs(9)), &mut seen);
        assert_eq!(conn.deadline(), deadline);
        conn.receive(b"c", clock.at(Duration::from_secs(12)));
        run(&mut conn, clock.at(Duration::from_secs(12)), &mut seen);
        assert_eq!(seen.requests, ["GET /a"]);
        // Between requests: the idle timeout, from the end of the response.
        assert_eq!(
            conn.deadline(),
            (clock.at(Duration::from_secs(87)), Expiry::Idle)
        );
    }

    #[test]
    fn a_response_deadline_moves_only_when_bytes_leave() {
        let (mut conn, clock) = open();
        conn.receive(GET_A, clock.at(START));
        let Event::Request(_) = conn.poll(clock.at(START)) else {
            panic!("a request")
        };
        conn.respond(
            Response::new(200, "text/plain", "0123456789"),
            clock.at(START),
            false,
        );
        assert_eq!(
            conn.deadline(),
            (clock.at(Duration::from_secs(5)), Expiry::Write)
        );
        let Event::Send(bytes) = conn.poll(clock.at(START)) else {
            panic!("bytes to send")
        };
        let total = bytes.len();
        conn.sent(0, clock.at(Duration::from_secs(2)));
        assert_eq!(conn.deadline().0, clock.at(Duration::from_secs(5)));
        conn.sent(4, clock.at(Duration::from_secs(3)));
        assert_eq!(conn.deadline().0, clock.at(Duration::from_secs(8)));
        let Event::Send(rest) = conn.poll(clock.at(Duration::from_secs(3))) else {
            panic!("the rest")
        };
        assert_eq!(rest.len(), total - 4);
        // An abandoned response is still recorded.
        let e = conn.exchange(clock.at(Duration::from_secs(4))).unwrap();
        assert_eq!(
            (e.method, e.path, e.status, e.bytes),
            ("GET", "/a", 200, 10)
        );
        assert_eq!(e.elapsed, Duration::from_secs(4));
    }

    #[test]
    fn an_idle_connection_holds_no_large_buffer() {
        let (mut conn, clock) = open();
        let mut seen = Seen::default();
        let body = format!(
            "GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 32\r\n\r\n{}",
            "b".repeat(32)
        );
        conn.receive(body.as_bytes(), clock.at(START));
        run(&mut conn, clock.at(START), &mut seen);
        assert_eq!(seen.requests, ["GET /a"]);
        assert!(conn.buffered() <= 2 * KEPT_BUFFER, "{}", conn.buffered());
        assert!(conn.idle_for_drain(clock.at(START), Duration::from_secs(1)));
    }

    #[test]
    fn end_of_file_closes_after_the_answer_or_at_once() {
        let (mut conn, clock) = open();
        let mut seen = Seen::default();
        conn.receive(GET_A, clock.at(START));
        conn.receive_eof();
        run(&mut conn, clock.at(START), &mut seen);
        assert_eq!(seen.requests, ["GET /a"]);
        assert!(seen.out.contains("Connection: close") && seen.closed);
        let (mut conn, clock) = open();
        let mut seen = Seen::default();
        conn.receive(b"GET /a HT", clock.at(START));
        conn.receive_eof();
        run(&mut conn, clock.at(START), &mut seen);
        assert!(seen.closed && seen.out.is_empty());
    }

    #[test]
    fn draining_answers_with_close() {
        let (mut conn, clock) = open();
        conn.receive(GET_A, clock.at(START));
        let Event::Request(_) = conn.poll(clock.at(START)) else {
            panic!("a request")
        };
        conn.respond(Response::new(200, "text/plain", "x"), clock.at(START), true);
        let Event::Send(bytes) = conn.poll(clock.at(START)) else {
            panic!("bytes")
        };
        assert!(String::from_utf8_lossy(bytes).contains("Connection: close"));
        assert!(!conn.idle_for_drain(clock.at(START), Duration::ZERO));
    }
}
