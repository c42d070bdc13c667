//! The connection core fed arbitrary bytes in arbitrary pieces, driven as the server drives it.
//! Invariants: it never panics; it never holds more than about a head's worth of memory; it
//! answers each request or refusal exactly once (one status line each, one `Answered` each);
//! after a refusal it only finishes sending and closes.
//!
//! Input: a control byte, then the bytes the client sends. The control byte's bits pick the
//! largest piece a read brings (1 to 64 bytes, or all that fits), whether the client then ends
//! its side, and whether responses are streamed. Small limits let short inputs reach them.
#![no_main]

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hello::http::conn::{Conn, Event, Settings};
use hello::http::{BodySource, Limits, Response};
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

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let piece = match control & 0x3f {
        0 => usize::MAX,
        n => usize::from(n),
    };
    let eof = control & 0x40 != 0;
    let stream = control & 0x80 != 0;

    let settings = Arc::new(Settings {
        limits: LIMITS,
        request_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(10),
    });
    let now = Instant::now();
    let mut conn = Conn::new(settings, "127.0.0.1:1".parse().unwrap(), now);
    let mut pending = input;
    let mut eof_sent = false;
    let (mut asked, mut answered, mut recorded) = (0usize, 0usize, 0usize);
    let mut refused = false;
    let mut out = Vec::new();
    // Each poll either moves the connection on or asks for input, which runs out; the bound
    // only turns a livelock into a finding.
    for _ in 0..100_000 {
        // A head, its parsed fields, a response and a small kept buffer: nothing grows with
        // what the client sends.
        assert!(
            conn.buffered() <= 2 * LIMITS.head + 4096,
            "holds {} bytes",
            conn.buffered()
        );
        let response = match conn.poll(now) {
            Event::Request(_) => {
                assert!(!refused, "a request after a refusal");
                if stream {
                    Response::stream(200, "text/plain", Box::new(Pieces(0)))
                } else {
                    Response::new(200, "text/plain", "ok")
                }
            }
            Event::Refuse(_) => {
                assert!(!refused, "a second refusal");
                refused = true;
                Response::new(400, "text/plain", "no")
            }
            Event::Send(bytes) => {
                assert!(!bytes.is_empty(), "asked to send nothing");
                // Send in two parts, so that partial writes are exercised.
                let n = bytes.len().div_ceil(2);
                out.extend_from_slice(&bytes[..n]);
                conn.sent(n, now);
                continue;
            }
            Event::Answered(_) => {
                recorded += 1;
                assert_eq!(recorded, answered, "an answer recorded twice");
                continue;
            }
            Event::Read => {
                assert!(!refused, "reads on after a refusal");
                if pending.is_empty() {
                    if eof && !eof_sent {
                        eof_sent = true;
                        conn.receive_eof();
                        continue;
                    }
                    break;
                }
                let n = conn.read_room().min(pending.len()).min(piece);
                assert!(n > 0, "asks to read with no room");
                conn.receive(&pending[..n], now);
                pending = &pending[n..];
                continue;
            }
            Event::Close => break,
        };
        asked += 1;
        conn.respond(response, now, false);
        answered += 1;
    }
    assert_eq!(asked, answered);
    // Every status line sent belongs to one answer (a body here never holds "HTTP/1.1 ").
    let lines = out.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
    assert!(
        lines <= answered,
        "{lines} status lines for {answered} answers"
    );
});
