//! The connection core fed arbitrary bytes in arbitrary pieces, driven by the server's own loop.
//! Invariants: it never panics; it never holds more than about a head's worth of memory; it
//! answers each request or refusal exactly once (one status line each, one record each); after
//! a refusal it only finishes sending and closes.
//!
//! Input: a control byte, then the bytes the client sends. The control byte's bits pick the
//! largest piece a read brings and a write takes (1 to 64 bytes, or all that fits), whether the
//! client then ends its side, and whether responses are streamed. Small limits let short inputs
//! reach them.
#![no_main]

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hello::http::conn::{Conn, Settings};
use hello::http::drive::{drive, Answer, Application, Budget, Script, Stop};
use hello::http::{BodySource, Exchange, Limits, Rejection, Request, Response, Status};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    request_line: 64,
    head: 256,
    body: 512,
};

/// A body sent in three small pieces, as a listing is.
struct Pieces(u8);

impl BodySource for Pieces {
    fn fill(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        out.extend_from_slice(b"piece");
        self.0 += 1;
        Ok(self.0 < 3)
    }
}

/// Answers everything at once, counting answers and records.
struct Counted {
    now: Instant,
    stream: bool,
    refused: bool,
    answered: usize,
    recorded: usize,
}

impl Application for Counted {
    type Wait = Infallible;

    fn now(&self) -> Instant {
        self.now
    }

    fn draining(&self) -> bool {
        false
    }

    fn answer(&mut self, _: &Request<'_>) -> Answer<Infallible> {
        assert!(!self.refused, "a request after a refusal");
        self.answered += 1;
        Answer::Now(if self.stream {
            Response::stream(Status::Ok, "text/plain", Box::new(Pieces(0)))
        } else {
            Response::new(Status::Ok, "text/plain", "ok")
        })
    }

    fn reject(&mut self, _: Rejection) -> Response {
        assert!(!self.refused, "a second refusal");
        self.refused = true;
        self.answered += 1;
        Response::new(Status::BadRequest, "text/plain", "no")
    }

    fn completed(&mut self, _: &Exchange<'_>) {
        self.recorded += 1;
        assert_eq!(self.recorded, self.answered, "an answer recorded twice");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let piece = match control & 0x3f {
        0 => usize::MAX,
        n => usize::from(n),
    };
    let eof = control & 0x40 != 0;

    let settings = Arc::new(Settings {
        limits: LIMITS,
        request_timeout: Duration::from_secs(10),
        min_rate: 0,
        idle_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(10),
    });
    let now = Instant::now();
    let mut conn = Conn::new(settings, "127.0.0.1:1".parse().unwrap(), now);
    let mut app = Counted {
        now,
        stream: control & 0x80 != 0,
        refused: false,
        answered: 0,
        recorded: 0,
    };
    let mut script = Script::new(&[]);
    script.write_most = piece;
    let mut pending = input;
    loop {
        // A head, its parsed fields, a response and a small kept buffer: nothing grows with
        // what the client sends.
        assert!(
            conn.buffered() <= 2 * LIMITS.head + 4096,
            "holds {} bytes",
            conn.buffered()
        );
        if pending.is_empty() {
            if !eof || script.eof {
                break;
            }
            script.eof = true;
        } else {
            let n = conn.read_room().min(pending.len()).min(piece);
            assert!(n > 0, "asks to read with no room");
            script.push(&pending[..n]);
            pending = &pending[n..];
        }
        // A small budget, so that the worker's way of taking turns is fuzzed too: a yield is
        // followed by more driving, as the worker's ready list does.
        match drive(&mut conn, &mut script, &mut app, Budget { requests: 2, bytes: 512 }) {
            Stop::Close => break,
            Stop::Park | Stop::Yield => assert!(!app.refused, "reads on after a refusal"),
            Stop::Held(_, never) => match never {},
        }
    }
    // Every status line sent belongs to one answer (a body here never holds "HTTP/1.1 ").
    let lines = script.out.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
    assert!(
        lines <= app.answered,
        "{lines} status lines for {} answers",
        app.answered
    );
});
