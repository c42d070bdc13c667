//! The one loop that runs a connection ([`Conn`]) between a [`Transport`] (a socket, or bytes
//! given in advance) and an [`Application`] (the server's handler, or a test's): it reads when
//! the connection asks, writes what it hands out, answers its requests and records its
//! exchanges, until the transport would block, the application holds a request back, the
//! connection is over, or it has used its [`Budget`] (so that one busy client cannot keep an
//! event loop from its other connections). The event-loop workers, the blocking threads, the
//! connection's unit tests, the property tests and the fuzz target all drive connections
//! through it.

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use super::conn::{Conn, Event, Pending};
use super::{Exchange, Rejection, Request, Response};

/// Where a connection's bytes come from and go to.
pub trait Transport {
    /// Up to `most` bytes from the client (`most` is at least 1): empty at end of input, a
    /// `WouldBlock` error when there are none now.
    fn read(&mut self, most: usize) -> io::Result<&[u8]>;

    /// Sends a prefix of `bytes`; how much. A `WouldBlock` error when none can go now.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize>;
}

/// How a request is answered: now, or later, with what the connection waits for.
// Most answers are `Now`, moved once from the application into the connection: boxing the
// response to even the variants out would cost every answer an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Answer<W> {
    Now(Response),
    Later(W),
}

/// What answers a connection's requests.
pub trait Application {
    /// What a request answered later waits for.
    type Wait;

    fn now(&self) -> Instant;

    /// The server is shutting down: connections close after their response.
    fn draining(&self) -> bool;

    /// The response to `request`, or what its response waits for.
    fn answer(&mut self, request: &Request<'_>) -> Answer<Self::Wait>;

    /// The response to bytes refused before they made a request.
    fn reject(&mut self, rejection: Rejection) -> Response;

    /// A response is over, sent whole or abandoned midway.
    fn completed(&mut self, exchange: &Exchange<'_>);
}

/// How much one call of [`drive`] may do for its connection before it gives way: requests
/// answered and bytes read. Past the first, the connection stops once its last answer is
/// over; past the second, where it next wants input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub requests: u32,
    pub bytes: usize,
}

impl Budget {
    /// For a transport that serves one connection alone (a test's script, a blocking thread).
    pub const UNLIMITED: Budget = Budget {
        requests: u32::MAX,
        bytes: usize::MAX,
    };
}

/// Why [`drive`] returned.
pub enum Stop<W> {
    /// Nothing to do until the transport is ready again (or, had a request been held back,
    /// until its response is given).
    Park,
    /// The budget is spent with more to do, or input that may be there already: drive it
    /// again after the others have had their turn.
    Yield,
    /// The application answers this request later; its connection waits for what `W` says.
    Held(Pending, W),
    /// The connection is over: close it.
    Close,
}

/// Drives `conn` as far as it goes within `budget`.
pub fn drive<T: Transport, A: Application>(
    conn: &mut Conn,
    transport: &mut T,
    app: &mut A,
    budget: Budget,
) -> Stop<A::Wait> {
    let mut left = budget;
    loop {
        let now = app.now();
        match conn.poll(now) {
            Event::Read => {
                if left.bytes == 0 {
                    return Stop::Yield;
                }
                // Never zero, which a socket would answer as if the client were done.
                let most = conn.read_room().max(1).min(left.bytes);
                match transport.read(most) {
                    Ok([]) => conn.receive_eof(),
                    Ok(bytes) => {
                        left.bytes = left.bytes.saturating_sub(bytes.len());
                        conn.receive(bytes, now);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Stop::Park,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Stop::Close,
                }
            }
            Event::Send(bytes) => match transport.write(bytes) {
                // A transport that takes nothing of what there is to send would be asked again
                // for ever.
                Ok(0) => return Stop::Close,
                Ok(n) => conn.sent(n, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Stop::Park,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Stop::Close,
            },
            Event::Answered(exchange) => {
                app.completed(&exchange);
                // Between two requests: the next may already be read, so the turn ends here
                // rather than where input is wanted.
                if left.requests == 0 {
                    return Stop::Yield;
                }
            }
            Event::Request(pending) => {
                left.requests = left.requests.saturating_sub(1);
                if let Some(held) = answer(conn, pending, app) {
                    return held;
                }
            }
            Event::Refuse(refusal) => {
                let response = app.reject(refusal.rejection());
                conn.refuse(refusal, response, app.now());
            }
            Event::Answering => return Stop::Park,
            Event::Close => return Stop::Close,
        }
    }
}

/// Answers a request that was held back elsewhere and came back with its connection, then
/// drives on within `budget`.
pub fn resume<T: Transport, A: Application>(
    conn: &mut Conn,
    pending: Pending,
    transport: &mut T,
    app: &mut A,
    budget: Budget,
) -> Stop<A::Wait> {
    answer(conn, pending, app).unwrap_or_else(|| drive(conn, transport, app, budget))
}

/// Answers `pending` through the application; the stop if it answers later.
fn answer<A: Application>(conn: &mut Conn, pending: Pending, app: &mut A) -> Option<Stop<A::Wait>> {
    match app.answer(&pending.request()) {
        Answer::Now(response) => {
            conn.respond(pending, response, app.now(), app.draining());
            None
        }
        Answer::Later(wait) => Some(Stop::Held(pending, wait)),
    }
}

/// A transport over bytes given in advance, for tests and fuzzing. A read brings at most
/// `read_most` bytes and never runs from one piece into the next, so a test chooses where the
/// client's bytes are split; once the pieces are read, reads would block, or end the input if
/// `eof` is set. A write takes at most `write_most` bytes into `out`.
#[derive(Debug)]
pub struct Script<'a> {
    pieces: VecDeque<&'a [u8]>,
    pub read_most: usize,
    pub write_most: usize,
    pub eof: bool,
    pub out: Vec<u8>,
}

impl<'a> Script<'a> {
    pub fn new(pieces: &[&'a [u8]]) -> Script<'a> {
        Script {
            pieces: pieces.iter().copied().collect(),
            read_most: usize::MAX,
            write_most: usize::MAX,
            eof: false,
            out: Vec::new(),
        }
    }

    /// More bytes from the client, read after those given before.
    pub fn push(&mut self, piece: &'a [u8]) {
        self.pieces.push_back(piece);
    }
}

impl<'a> Transport for Script<'a> {
    fn read(&mut self, most: usize) -> io::Result<&[u8]> {
        while let Some(piece) = self.pieces.front_mut() {
            if piece.is_empty() {
                self.pieces.pop_front();
                continue;
            }
            let whole: &'a [u8] = piece;
            let (now, rest) = whole.split_at(most.min(self.read_most).min(whole.len()));
            *piece = rest;
            return Ok(now);
        }
        if self.eof {
            Ok(&[])
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = bytes.len().min(self.write_most);
        self.out.extend_from_slice(&bytes[..n]);
        Ok(n)
    }
}
