//! Request bodies, which no route reads: thrown away as they arrive, never buffered, with their
//! framing (a length, or the chunked coding) followed exactly so that the next request on the
//! connection starts where it should.

use super::request::BodyLength;
use super::Rejection;

/// Longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 1024;
/// Largest trailer section accepted after the last chunk.
const MAX_TRAILERS: usize = 8 * 1024;

/// A body being thrown away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discard {
    state: State,
    /// Body bytes (chunk data) seen so far, and the most allowed.
    seen: u64,
    limit: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// A body of known length: this many bytes to go.
    Length(u64),
    /// In a chunk-size line: the size so far, and the line's length.
    Size {
        size: u64,
        line: usize,
    },
    /// In a chunk-size line past the size: extensions, skipped to the end of the line.
    Extension {
        size: u64,
        line: usize,
    },
    /// A CR ended the chunk-size line; its LF must follow.
    SizeLf {
        size: u64,
    },
    /// Chunk data still to come.
    Data(u64),
    /// After chunk data: its CRLF.
    DataCr,
    DataLf,
    /// In the trailer section: the length of the current line, and of the section.
    Trailers {
        line: usize,
        total: usize,
    },
    Done,
}

impl Discard {
    /// `None` when the request has no body. A declared length over `limit` is refused at once.
    pub fn new(length: BodyLength, limit: u64) -> Result<Option<Discard>, Rejection> {
        let state = match length {
            BodyLength::None => return Ok(None),
            BodyLength::Length(n) if n > limit => return Err(Rejection::PayloadTooLarge),
            BodyLength::Length(n) => State::Length(n),
            BodyLength::Chunked => State::Size { size: 0, line: 0 },
        };
        Ok(Some(Discard {
            state,
            seen: 0,
            limit,
        }))
    }

    /// Takes body bytes from the front of `bytes`. Returns how many belonged to the body, and
    /// whether the body is now over (the rest of `bytes` is then the next request).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(usize, bool), Rejection> {
        let mut at = 0;
        while at < bytes.len() && self.state != State::Done {
            match &mut self.state {
                State::Length(left) | State::Data(left) => {
                    let take = (*left).min((bytes.len() - at) as u64);
                    *left -= take;
                    at += take as usize;
                    if *left == 0 {
                        self.state = match self.state {
                            State::Length(_) => State::Done,
                            _ => State::DataCr,
                        };
                    }
                }
                _ => {
                    self.step(bytes[at])?;
                    at += 1;
                }
            }
        }
        Ok((at, self.state == State::Done))
    }

    /// One byte of the chunked coding's framing.
    fn step(&mut self, b: u8) -> Result<(), Rejection> {
        let malformed = Rejection::BadRequest("malformed chunked request body");
        self.state = match self.state {
            State::Size { size, line } => {
                let line = line + 1;
                if line > MAX_CHUNK_LINE {
                    return Err(malformed);
                }
                match (b as char).to_digit(16) {
                    Some(d) => {
                        let size = size * 16 + u64::from(d);
                        if self.seen + size > self.limit {
                            return Err(Rejection::PayloadTooLarge);
                        }
                        State::Size { size, line }
                    }
                    None if line == 1 => return Err(malformed),
                    None => match b {
                        b'\r' => State::SizeLf { size },
                        b';' | b' ' | b'\t' => State::Extension { size, line },
                        _ => return Err(malformed),
                    },
                }
            }
            State::Extension { size, line } => {
                let line = line + 1;
                match b {
                    _ if line > MAX_CHUNK_LINE => return Err(malformed),
                    b'\r' => State::SizeLf { size },
                    b'\n' => return Err(malformed),
                    b'\t' => State::Extension { size, line },
                    b if b.is_ascii_control() => return Err(malformed),
                    _ => State::Extension { size, line },
                }
            }
            State::SizeLf { size } => match b {
                b'\n' if size == 0 => State::Trailers { line: 0, total: 0 },
                b'\n' => {
                    self.seen += size;
                    State::Data(size)
                }
                _ => return Err(malformed),
            },
            State::DataCr => match b {
                b'\r' => State::DataLf,
                _ => return Err(malformed),
            },
            State::DataLf => match b {
                b'\n' => State::Size { size: 0, line: 0 },
                _ => return Err(malformed),
            },
            State::Trailers { line, total } => {
                let total = total + 1;
                if total > MAX_TRAILERS {
                    return Err(Rejection::BadRequest("trailer section too large"));
                }
                match b {
                    b'\n' if line == 0 => State::Done,
                    b'\n' => State::Trailers { line: 0, total },
                    b'\r' => State::Trailers { line, total },
                    _ => State::Trailers {
                        line: line + 1,
                        total,
                    },
                }
            }
            State::Length(_) | State::Data(_) | State::Done => self.state.clone(),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked() -> Discard {
        Discard::new(BodyLength::Chunked, 64).unwrap().unwrap()
    }

    /// Feeds `bytes` in pieces of `step`; returns the body's length and whether it ended.
    fn feed_in_steps(
        mut d: Discard,
        bytes: &[u8],
        step: usize,
    ) -> Result<(usize, bool), Rejection> {
        let mut taken = 0;
        for piece in bytes.chunks(step.max(1)) {
            let (n, done) = d.feed(piece)?;
            taken += n;
            if done {
                return Ok((taken, true));
            }
        }
        Ok((taken, false))
    }

    #[test]
    fn a_length_is_counted_down() {
        assert_eq!(Discard::new(BodyLength::None, 10), Ok(None));
        assert_eq!(
            Discard::new(BodyLength::Length(11), 10),
            Err(Rejection::PayloadTooLarge)
        );
        let mut d = Discard::new(BodyLength::Length(10), 10).unwrap().unwrap();
        assert_eq!(d.feed(b"0123"), Ok((4, false)));
        assert_eq!(d.feed(b"456789GET /"), Ok((6, true)));
    }

    #[test]
    fn chunked_bodies_end_exactly_however_they_are_split() {
        let body = b"5\r\nhello\r\n3;ext=1;q=\"a b\"\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
        let mut stream = body.to_vec();
        stream.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        for step in 1..=stream.len() {
            assert_eq!(
                feed_in_steps(chunked(), &stream, step),
                Ok((body.len(), true)),
                "pieces of {step}"
            );
        }
        assert_eq!(chunked().feed(b"0\r\n\r\n"), Ok((5, true)));
        assert_eq!(chunked().feed(b"00A\r\n"), Ok((5, false)));
    }

    #[test]
    fn chunked_framing_faults_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello\r\n",
            b"5\r\nhelloX",
            b"5\r\nhello\rX",
            b"5 \n",
            b"5;a\nb",
            b"\r\n",
        ] {
            assert!(
                matches!(chunked().feed(bad), Err(Rejection::BadRequest(_))),
                "{bad:?}"
            );
        }
        let long_line = [b"1;".as_slice(), &[b'x'; MAX_CHUNK_LINE]].concat();
        assert!(chunked().feed(&long_line).is_err());
        let long_trailer = [b"0\r\n".as_slice(), &[b'x'; MAX_TRAILERS + 1]].concat();
        assert!(chunked().feed(&long_trailer).is_err());
    }

    #[test]
    fn chunked_data_counts_toward_the_body_limit_at_n_and_n_plus_one() {
        let at_limit = [b"40\r\n".as_slice(), &[b'a'; 64], b"\r\n0\r\n\r\n"].concat();
        assert_eq!(chunked().feed(&at_limit), Ok((at_limit.len(), true)));
        assert_eq!(chunked().feed(b"41\r\n"), Err(Rejection::PayloadTooLarge));
        let split = [b"20\r\n".as_slice(), &[b'a'; 32], b"\r\n21\r\n"].concat();
        assert_eq!(chunked().feed(&split), Err(Rejection::PayloadTooLarge));
        // A size too large for any integer is refused before it can overflow.
        assert_eq!(
            chunked().feed(b"ffffffffffffffffffffff\r\n"),
            Err(Rejection::PayloadTooLarge)
        );
    }
}
