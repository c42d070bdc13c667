//! One client connection as a plain value: bytes in, events out, bytes to send. It knows every
//! limit and deadline as data and touches no socket, so the protocol is tested over byte
//! sequences; [`drive`](super::drive) is the one loop that runs it between a transport and the
//! application.
//!
//! [`Conn::poll`] says what to do next. A request comes out of it as a [`Pending`], which holds
//! the request's bytes and is the only way to [`Conn::respond`]; a refusal comes out as a
//! [`Refusal`], answered through [`Conn::refuse`]. Each is handed out once, so a response can
//! be given only to a request that awaits one, and only once. A request's deadline is fixed
//! when its first byte arrives and never moves; the idle timeout runs only between requests; a
//! response's deadline moves only when bytes leave. A body no route reads is thrown away as it
//! arrives, and a connection between requests keeps no buffer over 512 bytes.

use std::mem;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::body::Discard;
use super::request::{self, Head, HeadScanner, Limits, Request, Version};
use super::response::{Outgoing, Output, Progress, Response, Terms};
use super::{Exchange, Rejection};

#[cfg(test)]
mod tests;

/// The limits and timeouts every connection of a server shares.
#[derive(Clone, Debug)]
pub struct Settings {
    pub limits: Limits,
    /// Time a client has to send a whole request from its first byte (and a new connection to
    /// start one).
    pub request_timeout: Duration,
    /// Bytes a second a request must keep up once [`MIN_RATE_GRACE`] has passed since its
    /// first byte, or be answered 408 before its `request_timeout`; 0: no minimum.
    pub min_rate: u32,
    /// Time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time a response may go without a byte leaving.
    pub write_timeout: Duration,
}

/// How long a request may take before [`Settings::min_rate`] applies: a head that comes in a
/// few packets on a slow link is not a trickle.
pub const MIN_RATE_GRACE: Duration = Duration::from_secs(1);

/// What the connection needs next.
#[derive(Debug)]
pub enum Event<'a> {
    /// A whole request: answer it with [`Conn::respond`].
    Request(Pending),
    /// Bytes that cannot be answered as a request: answer with the refusal's response through
    /// [`Conn::refuse`]; the connection closes after it.
    Refuse(Refusal),
    /// Send these bytes, then say how many left with [`Conn::sent`].
    Send(&'a [u8]),
    /// A response is over, sent whole or abandoned midway: record it.
    Answered(Exchange<'a>),
    /// More bytes are needed: read at most [`Conn::read_room`] and pass them to
    /// [`Conn::receive`], or call [`Conn::receive_eof`] at end of file.
    Read,
    /// The request handed out is being answered: nothing to do until its response is given.
    Answering,
    /// Close the connection.
    Close,
}

/// A request handed out to be answered. It carries the request's bytes while it is away from
/// its connection, and gives them back with the response ([`Conn::respond`]).
#[derive(Debug)]
pub struct Pending {
    head: Head,
    /// The connection's input: this request's head first, then whatever the client sent after
    /// it (pipelined requests).
    input: Vec<u8>,
    received: Instant,
    /// The request announced a body that was not waited for (`Expect: 100-continue`), so the
    /// connection cannot be reused.
    unread_body: bool,
}

impl Pending {
    pub fn request(&self) -> Request<'_> {
        self.head.request(&self.input)
    }
}

/// Bytes refused before they made a request, handed out to be answered ([`Conn::refuse`]).
#[derive(Debug)]
pub struct Refusal {
    rejection: Rejection,
    at: Instant,
}

impl Refusal {
    pub fn rejection(&self) -> Rejection {
        self.rejection
    }
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
    /// response is over), then whatever the client sent after it. Lent to the [`Pending`]
    /// while its request is answered.
    input: Vec<u8>,
    state: ConnState,
    output: Output,
    deadline: Instant,
    opened: Instant,
    /// When the request under way sent its first byte, and how many of its bytes (head and
    /// body) have come since: what the minimum rate is held against.
    started: Instant,
    received: usize,
    /// The client has finished sending: close once what it asked is answered.
    peer_done: bool,
    /// Bytes the client sent were left unread when the connection was refused or answered
    /// without its body: closing at once could reset the connection before the client reads
    /// its answer, so the shell closes it lingering.
    unread: bool,
    answered: u64,
}

enum ConnState {
    /// No request under way; `input` is empty.
    Idle,
    /// Part of a head has arrived.
    Head(HeadScanner),
    /// The head is whole; its body is being thrown away.
    Body {
        head: Head,
        body: Discard,
    },
    /// A whole request, to be handed out.
    Ready {
        head: Head,
        received: Instant,
        unread_body: bool,
    },
    /// A refusal, to be handed out.
    Refused(Rejection, Instant),
    /// A request or refusal is out, awaiting its response.
    Answering,
    Sending(Sending),
    /// A response is over and has been reported; `keep`: the connection goes on to the next
    /// request, whose bytes start `consumed` bytes into `input`.
    Finished {
        keep: bool,
        consumed: usize,
    },
    Closing,
}

/// A response on its way, with what it answers.
struct Sending {
    /// The request answered; `None` for a refusal.
    head: Option<Head>,
    received: Instant,
    outgoing: Outgoing,
}

impl Sending {
    fn exchange<'a>(&self, input: &'a [u8], peer: SocketAddr, now: Instant) -> Exchange<'a> {
        let (method, path, trace_id) = match &self.head {
            Some(head) => (
                head.method(input),
                head.path(input),
                head.header(input, "x-amzn-trace-id"),
            ),
            None => ("-", "-", None),
        };
        Exchange {
            method,
            path,
            status: self.outgoing.status(),
            elapsed: now.saturating_duration_since(self.received),
            bytes: self.outgoing.body_bytes(),
            peer,
            trace_id,
        }
    }
}

/// Where [`Conn::advance`] stopped: what the outside world must do.
enum Wants {
    Read,
    Request(Pending),
    Refuse(Refusal),
    Answering,
    Send,
    Answered(Sending),
    Close,
}

/// One move of the state machine.
enum Move {
    /// Go on from this state.
    To(ConnState),
    /// Rest in this state until the outside world has done what the stop says.
    Rest(ConnState, Wants),
}

impl Conn {
    pub fn new(settings: Arc<Settings>, peer: SocketAddr, now: Instant) -> Conn {
        let deadline = now + settings.request_timeout;
        Conn {
            settings,
            peer,
            input: Vec::new(),
            state: ConnState::Idle,
            output: Output::default(),
            deadline,
            opened: now,
            started: now,
            received: 0,
            peer_done: false,
            unread: false,
            answered: 0,
        }
    }

    /// What to do next.
    pub fn poll(&mut self, now: Instant) -> Event<'_> {
        match self.advance(now) {
            Wants::Read => Event::Read,
            Wants::Request(pending) => Event::Request(pending),
            Wants::Refuse(refusal) => Event::Refuse(refusal),
            Wants::Answering => Event::Answering,
            Wants::Send => Event::Send(self.output.unsent()),
            Wants::Answered(sending) => {
                Event::Answered(sending.exchange(&self.input, self.peer, now))
            }
            Wants::Close => Event::Close,
        }
    }

    /// Moves the state on as far as it goes without the outside world.
    fn advance(&mut self, now: Instant) -> Wants {
        loop {
            let state = mem::replace(&mut self.state, ConnState::Closing);
            match self.next(state, now) {
                Move::To(state) => self.state = state,
                Move::Rest(state, stop) => {
                    self.state = state;
                    return stop;
                }
            }
        }
    }

    fn next(&mut self, state: ConnState, now: Instant) -> Move {
        match state {
            ConnState::Idle if !self.input.is_empty() => {
                Move::To(ConnState::Head(HeadScanner::default()))
            }
            ConnState::Idle | ConnState::Body { .. } if self.peer_done => {
                Move::To(ConnState::Closing)
            }
            state @ (ConnState::Idle | ConnState::Body { .. }) => Move::Rest(state, Wants::Read),
            ConnState::Head(mut scanner) => {
                match scanner.scan(&self.input, &self.settings.limits) {
                    Err(rejection) => Move::To(ConnState::Refused(rejection, now)),
                    Ok(None) if self.peer_done => Move::To(ConnState::Closing),
                    Ok(None) => Move::Rest(ConnState::Head(scanner), Wants::Read),
                    Ok(Some(len)) => Move::To(match request::parse(&scanner, &self.input, len) {
                        Err(rejection) => ConnState::Refused(rejection, now),
                        Ok(head) => self.after_head(head, now),
                    }),
                }
            }
            ConnState::Ready {
                head,
                received,
                unread_body,
            } => {
                let pending = Pending {
                    head,
                    input: mem::take(&mut self.input),
                    received,
                    unread_body,
                };
                Move::Rest(ConnState::Answering, Wants::Request(pending))
            }
            ConnState::Refused(rejection, at) => Move::Rest(
                ConnState::Answering,
                Wants::Refuse(Refusal { rejection, at }),
            ),
            ConnState::Answering => Move::Rest(ConnState::Answering, Wants::Answering),
            ConnState::Sending(mut sending) => match sending.outgoing.progress(&mut self.output) {
                Progress::Send => Move::Rest(ConnState::Sending(sending), Wants::Send),
                Progress::Over { whole } => {
                    let finished = ConnState::Finished {
                        keep: whole && sending.outgoing.keep_alive(),
                        consumed: sending.head.as_ref().map_or(0, |head| head.len),
                    };
                    Move::Rest(finished, Wants::Answered(sending))
                }
            },
            ConnState::Finished { keep, consumed } => Move::To(self.finish(keep, consumed, now)),
            ConnState::Closing => Move::Rest(ConnState::Closing, Wants::Close),
        }
    }

    /// A head is whole: wait for its body, or answer at once.
    fn after_head(&mut self, head: Head, now: Instant) -> ConnState {
        let body = match Discard::new(head.framing.body, self.settings.limits.body) {
            Err(rejection) => return ConnState::Refused(rejection, now),
            Ok(None) => {
                return ConnState::Ready {
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
            return ConnState::Ready {
                head,
                received: now,
                unread_body: true,
            };
        }
        let mut body = body;
        match body.feed(&self.input[head.len..]) {
            Err(rejection) => ConnState::Refused(rejection, now),
            Ok((taken, done)) => {
                self.input.drain(head.len..head.len + taken);
                // The read that brought the head may have brought much of the body too: the
                // room it took goes back rather than stay with the connection while it waits.
                if self.input.capacity() > 2 * self.input.len() + super::KEPT_BUFFER {
                    self.input.shrink_to_fit();
                }
                if done {
                    ConnState::Ready {
                        head,
                        received: now,
                        unread_body: false,
                    }
                } else {
                    ConnState::Body { head, body }
                }
            }
        }
    }

    /// A response is over and reported: go on to the next request, or close.
    fn finish(&mut self, keep: bool, consumed: usize, now: Instant) -> ConnState {
        self.answered += 1;
        self.output.release();
        if !keep {
            return ConnState::Closing;
        }
        // The head answered travelled with its own bytes (see `Pending`), so they are there.
        self.input.drain(..consumed);
        if self.input.is_empty() {
            super::release(&mut self.input);
            self.deadline = now + self.settings.idle_timeout;
            ConnState::Idle
        } else {
            // A pipelined request: its deadline starts now, and stays.
            self.deadline = now + self.settings.request_timeout;
            self.started = now;
            self.received = self.input.len();
            ConnState::Head(HeadScanner::default())
        }
    }

    /// How many bytes the connection takes now: none while a request is being answered (the
    /// client waits, or its pipelined requests wait in the socket), never so many that a head
    /// could outgrow its limit.
    pub fn read_room(&self) -> usize {
        match self.state {
            ConnState::Idle | ConnState::Head(_) => {
                (self.settings.limits.head + 1).saturating_sub(self.input.len())
            }
            ConnState::Body { .. } => usize::MAX,
            _ => 0,
        }
    }

    /// Bytes read from the client.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        if bytes.is_empty() {
            return;
        }
        self.received = self.received.saturating_add(bytes.len());
        self.state = match mem::replace(&mut self.state, ConnState::Closing) {
            ConnState::Idle => {
                // The request's deadline starts with its first byte, and stays.
                self.deadline = now + self.settings.request_timeout;
                self.started = now;
                self.received = bytes.len();
                self.input.extend_from_slice(bytes);
                ConnState::Head(HeadScanner::default())
            }
            ConnState::Body { head, mut body } => match body.feed(bytes) {
                Err(rejection) => ConnState::Refused(rejection, now),
                Ok((taken, true)) => {
                    self.input.extend_from_slice(&bytes[taken..]);
                    ConnState::Ready {
                        head,
                        received: now,
                        unread_body: false,
                    }
                }
                Ok(_) => ConnState::Body { head, body },
            },
            state => {
                self.input.extend_from_slice(bytes);
                state
            }
        };
    }

    /// The client will send nothing more.
    pub fn receive_eof(&mut self) {
        self.peer_done = true;
    }

    /// Answers the request `pending` holds. `draining`: the server is shutting down, so the
    /// connection closes after this response.
    pub fn respond(&mut self, pending: Pending, response: Response, now: Instant, draining: bool) {
        debug_assert!(
            matches!(self.state, ConnState::Answering),
            "a Pending of another connection"
        );
        let Pending {
            head,
            mut input,
            received,
            unread_body,
        } = pending;
        // Bytes that came while the request was out (none, when the shell reads only as told)
        // follow the request's own.
        input.append(&mut self.input);
        self.input = input;
        self.unread |= unread_body;
        let terms = Terms {
            keep_alive: head.framing.keep_alive && !draining && !self.peer_done && !unread_body,
            http10: head.version == Version::Http10,
            head_only: head.is_head(&self.input),
        };
        self.send(Some(head), received, response, terms, now);
    }

    /// Answers a refusal; the connection closes after it.
    pub fn refuse(&mut self, refusal: Refusal, response: Response, now: Instant) {
        debug_assert!(
            matches!(self.state, ConnState::Answering),
            "a Refusal of another connection"
        );
        // Whatever follows the refused bytes (the rest of a large head or body) is not read.
        self.unread = true;
        let terms = Terms {
            keep_alive: false,
            http10: false,
            head_only: false,
        };
        self.send(None, refusal.at, response, terms, now);
    }

    fn send(
        &mut self,
        head: Option<Head>,
        received: Instant,
        response: Response,
        terms: Terms,
        now: Instant,
    ) {
        let outgoing = Outgoing::start(response, terms, &mut self.output);
        self.state = ConnState::Sending(Sending {
            head,
            received,
            outgoing,
        });
        self.deadline = now + self.settings.write_timeout;
    }

    /// `n` bytes of the last [`Event::Send`] left; any at all is progress.
    pub fn sent(&mut self, n: usize, now: Instant) {
        if self.output.sent(n) {
            self.deadline = now + self.settings.write_timeout;
        }
    }

    /// The response under way, to record when it is abandoned (the client went away or stopped
    /// reading); `None` when none is.
    pub fn exchange(&self, now: Instant) -> Option<Exchange<'_>> {
        match &self.state {
            ConnState::Sending(sending) => Some(sending.exchange(&self.input, self.peer, now)),
            _ => None,
        }
    }

    /// When the connection must next move, and what it means if it has not. A request under
    /// way must also keep up the minimum rate: past the grace, each `min_rate` bytes it has
    /// sent buy it a second more, up to its own deadline (Apache's `mod_reqtimeout` `MinRate`
    /// works alike).
    pub fn deadline(&self) -> (Instant, Expiry) {
        match self.state {
            ConnState::Head(_) | ConnState::Body { .. } => {
                let rate = u64::from(self.settings.min_rate);
                let at = match rate {
                    0 => self.deadline,
                    rate => {
                        let bought = Duration::from_millis(
                            (self.received as u64).saturating_mul(1000) / rate,
                        );
                        self.deadline.min(self.started + MIN_RATE_GRACE + bought)
                    }
                };
                (at, Expiry::Request)
            }
            ConnState::Sending(_) => (self.deadline, Expiry::Write),
            _ => (self.deadline, Expiry::Idle),
        }
    }

    /// How far a request under way is behind the minimum rate now, counting from its first
    /// byte without the grace: at the connection cap, a request this slow gives way even
    /// within its grace. `None` when nothing is under way, no minimum is set, or it keeps up.
    pub fn behind(&self, now: Instant) -> Option<Duration> {
        let rate = u64::from(self.settings.min_rate);
        if rate == 0 || !matches!(self.state, ConnState::Head(_) | ConnState::Body { .. }) {
            return None;
        }
        let kept_up = Duration::from_millis((self.received as u64).saturating_mul(1000) / rate);
        let behind = now
            .saturating_duration_since(self.started)
            .checked_sub(kept_up)?;
        (!behind.is_zero()).then_some(behind)
    }

    /// Whether closing now could destroy the answer already sent: the client may still be
    /// sending bytes that will not be read (after a refusal, or a request whose body was not
    /// waited for, or a request cut off mid-way), and a close with unread input resets the
    /// connection (RFC 9112 §9.6). Not once the client has ended its side.
    pub fn closes_with_input_unread(&self) -> bool {
        !self.peer_done
            && (self.unread || matches!(self.state, ConnState::Head(_) | ConnState::Body { .. }))
    }

    /// Whether nothing is under way: the connection waits for a request (kept alive, or new).
    pub fn awaits_request(&self) -> bool {
        matches!(self.state, ConnState::Idle)
    }

    /// Whether the connection is kept alive between requests: it answered one and nothing is
    /// under way, so it may be closed to make room (RFC 9112 §9.6). A new connection that has
    /// not sent a request yet is not: its request may be on its way.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, ConnState::Idle) && self.answered > 0
    }

    /// Whether the client has sent nothing at all since the connection opened: at the
    /// connection cap such a client gives way after the idle ones, oldest first, so that
    /// connections that never speak cannot hold the cap.
    pub fn is_silent(&self) -> bool {
        matches!(self.state, ConnState::Idle) && self.answered == 0 && !self.peer_done
    }

    pub fn opened(&self) -> Instant {
        self.opened
    }

    /// Heap bytes held for this connection's buffers (not counting a [`Pending`] that is out).
    pub fn buffered(&self) -> usize {
        let head = match &self.state {
            ConnState::Body { head, .. } | ConnState::Ready { head, .. } => head.heap(),
            ConnState::Sending(sending) => sending.head.as_ref().map_or(0, Head::heap),
            _ => 0,
        };
        self.input.capacity() + self.output.capacity() + head
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}
