//! Request bodies, which no route reads: thrown away as they arrive, never buffered, with their
//! framing (a length, or the chunked coding) followed exactly so that the next request on the
//! connection starts where it should.

use super::request::{is_tchar, BodyLength};
use super::Rejection;

/// Longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 1024;
/// Largest trailer section accepted after the last chunk.
const MAX_TRAILERS: usize = 8 * 1024;

/// A body being thrown away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discard {
    state: DecodeState,
    /// Body bytes (chunk data) seen so far, and the most allowed.
    seen: u64,
    limit: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum DecodeState {
    /// A body of known length: this many bytes to go.
    Length(u64),
    /// In a chunk-size line: the size so far, and the line's length.
    Size {
        size: u64,
        line: usize,
    },
    /// In a chunk-size line past the size: extensions, checked against their grammar and
    /// otherwise ignored.
    Extension {
        size: u64,
        line: usize,
        at: Ext,
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

/// Where a chunk-size line's extensions are in their grammar (RFC 9112 §7.1.1):
/// `*( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`, a name being a token and a
/// value a token or a quoted-string. Whitespace is allowed only before `;` and around `=`, so
/// `5 \r\n` and `5;a \r\n` are malformed, as are an empty name and one that is not a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ext {
    /// Whitespace after the size or a value: a `;` must follow.
    BeforeSemicolon,
    /// After `;`: a name must follow.
    BeforeName,
    Name,
    /// Whitespace after a name: `;` or `=` must follow.
    AfterName,
    /// After `=`: a value must follow.
    BeforeValue,
    Token,
    Quoted,
    /// After a backslash in a quoted-string.
    QuotedPair,
    /// After a quoted-string's closing quote.
    AfterQuoted,
}

impl Ext {
    /// The next place in the grammar, `None` for a byte it does not allow here. The CR that
    /// ends the line is handled by the caller, where [`Ext::ends_line`] allows it.
    fn step(self, b: u8) -> Option<Ext> {
        let ws = matches!(b, b' ' | b'\t');
        let qdtext = matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff);
        Some(match self {
            Ext::BeforeSemicolon if ws => Ext::BeforeSemicolon,
            Ext::BeforeName if ws => Ext::BeforeName,
            Ext::BeforeValue if ws => Ext::BeforeValue,
            Ext::Name | Ext::AfterName if ws => Ext::AfterName,
            Ext::Token | Ext::AfterQuoted if ws => Ext::BeforeSemicolon,
            Ext::BeforeSemicolon | Ext::Name | Ext::AfterName | Ext::Token | Ext::AfterQuoted
                if b == b';' =>
            {
                Ext::BeforeName
            }
            Ext::Name | Ext::AfterName if b == b'=' => Ext::BeforeValue,
            Ext::BeforeName | Ext::Name if is_tchar(b) => Ext::Name,
            Ext::BeforeValue | Ext::Token if is_tchar(b) => Ext::Token,
            Ext::BeforeValue if b == b'"' => Ext::Quoted,
            Ext::Quoted if b == b'"' => Ext::AfterQuoted,
            Ext::Quoted if b == b'\\' => Ext::QuotedPair,
            Ext::Quoted if qdtext => Ext::Quoted,
            // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            Ext::QuotedPair if qdtext || matches!(b, b'"' | b'\\') => Ext::Quoted,
            _ => return None,
        })
    }

    /// Whether the line may end here.
    fn ends_line(self) -> bool {
        matches!(self, Ext::Name | Ext::Token | Ext::AfterQuoted)
    }
}

impl Discard {
    /// `None` when the request has no body. A declared length over `limit` is refused at once.
    pub fn new(length: BodyLength, limit: u64) -> Result<Option<Discard>, Rejection> {
        let state = match length {
            BodyLength::None => return Ok(None),
            BodyLength::Length(n) if n > limit => return Err(Rejection::PayloadTooLarge),
            BodyLength::Length(n) => DecodeState::Length(n),
            BodyLength::Chunked => DecodeState::Size { size: 0, line: 0 },
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
        while at < bytes.len() && self.state != DecodeState::Done {
            match &mut self.state {
                DecodeState::Length(left) | DecodeState::Data(left) => {
                    let take = (*left).min((bytes.len() - at) as u64);
                    *left -= take;
                    at += take as usize;
                    if *left == 0 {
                        self.state = match self.state {
                            DecodeState::Length(_) => DecodeState::Done,
                            _ => DecodeState::DataCr,
                        };
                    }
                }
                _ => {
                    self.step(bytes[at])?;
                    at += 1;
                }
            }
        }
        Ok((at, self.state == DecodeState::Done))
    }

    /// One byte of the chunked coding's framing.
    fn step(&mut self, b: u8) -> Result<(), Rejection> {
        let malformed = Rejection::BadRequest("malformed chunked request body");
        self.state = match self.state {
            DecodeState::Size { size, line } => {
                let line = line + 1;
                if line > MAX_CHUNK_LINE {
                    return Err(malformed);
                }
                match (b as char).to_digit(16) {
                    // A size that does not fit 64 bits (17 significant hex digits) is
                    // malformed, not merely too large: 400, not 413.
                    Some(d) => DecodeState::Size {
                        size: size
                            .checked_mul(16)
                            .map(|s| s + u64::from(d))
                            .ok_or(Rejection::BadRequest("chunk size out of range"))?,
                        line,
                    },
                    None if line == 1 => return Err(malformed),
                    None => {
                        // The size is whole: now it can be weighed against the limit.
                        if self.seen.saturating_add(size) > self.limit {
                            return Err(Rejection::PayloadTooLarge);
                        }
                        match b {
                            b'\r' => DecodeState::SizeLf { size },
                            b';' => DecodeState::Extension {
                                size,
                                line,
                                at: Ext::BeforeName,
                            },
                            b' ' | b'\t' => DecodeState::Extension {
                                size,
                                line,
                                at: Ext::BeforeSemicolon,
                            },
                            _ => return Err(malformed),
                        }
                    }
                }
            }
            DecodeState::Extension { size, line, at } => {
                let line = line + 1;
                if line > MAX_CHUNK_LINE {
                    return Err(malformed);
                }
                match b {
                    b'\r' if at.ends_line() => DecodeState::SizeLf { size },
                    _ => DecodeState::Extension {
                        size,
                        line,
                        at: at.step(b).ok_or(malformed)?,
                    },
                }
            }
            DecodeState::SizeLf { size } => match b {
                b'\n' if size == 0 => DecodeState::Trailers { line: 0, total: 0 },
                b'\n' => {
                    self.seen += size;
                    DecodeState::Data(size)
                }
                _ => return Err(malformed),
            },
            DecodeState::DataCr => match b {
                b'\r' => DecodeState::DataLf,
                _ => return Err(malformed),
            },
            DecodeState::DataLf => match b {
                b'\n' => DecodeState::Size { size: 0, line: 0 },
                _ => return Err(malformed),
            },
            DecodeState::Trailers { line, total } => {
                let total = total + 1;
                if total > MAX_TRAILERS {
                    return Err(Rejection::BadRequest("trailer section too large"));
                }
                match b {
                    b'\n' if line == 0 => DecodeState::Done,
                    b'\n' => DecodeState::Trailers { line: 0, total },
                    b'\r' => DecodeState::Trailers { line, total },
                    _ => DecodeState::Trailers {
                        line: line + 1,
                        total,
                    },
                }
            }
            DecodeState::Length(_) | DecodeState::Data(_) | DecodeState::Done => self.state.clone(),
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
    }

    #[test]
    fn a_size_past_64_bits_is_malformed_not_too_large() {
        let out_of_range = Err(Rejection::BadRequest("chunk size out of range"));
        assert_eq!(chunked().feed(b"ffffffffffffffffffffff\r\n"), out_of_range);
        assert_eq!(chunked().feed(b"10000000000000000\r\n"), out_of_range);
        // Refused at the 17th significant digit, before the line ends.
        assert_eq!(chunked().feed(b"10000000000000000"), out_of_range);
        // Sixteen digits fit: too large, but a size.
        assert_eq!(
            chunked().feed(b"ffffffffffffffff\r\n"),
            Err(Rejection::PayloadTooLarge)
        );
        // Leading zeros are not significant (`chunk-size = 1*HEXDIG`).
        let zeros = b"000000000000000000005\r\nhello\r\n0\r\n\r\n";
        assert_eq!(chunked().feed(zeros), Ok((zeros.len(), true)));
    }

    #[test]
    fn chunk_extensions_follow_their_grammar() {
        // RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
        for good in [
            &b"5;a\r\n"[..],
            b"5;a=b\r\n",
            b"5 ;a\r\n",
            b"5\t; a = b ;c\r\n",
            b"5;a=b;c=\"d e\"\r\n",
            b"5;a=\"q\\\"uote\\\\\"\r\n",
            b"5;a=\"\"\r\n",
            b"5;a=\"\xc3\xa9\"\r\n",
            b"5;!#$%&'*+-.^_`|~=x\r\n",
            b"5;a;b;c\r\n",
            b"5;a=\"x\" ;b\r\n",
        ] {
            let mut body = good.to_vec();
            body.extend_from_slice(b"hello\r\n0\r\n\r\n");
            assert_eq!(
                chunked().feed(&body),
                Ok((body.len(), true)),
                "{}",
                String::from_utf8_lossy(good)
            );
        }
        for bad in [
            &b"5 \r\n"[..],
            b"5\t\r\n",
            b"5;\r\n",
            b"5; \r\n",
            b"5;;a\r\n",
            b"5;bad[=x\r\n",
            b"5;a \r\n",
            b"5;a=\r\n",
            b"5;a=b \r\n",
            b"5;a=\"b\r\n",
            b"5;a=\"b\" \r\n",
            b"5;a=\"b\"c\r\n",
            b"5;a=b=c\r\n",
            b"5;a=b\"c\"\r\n",
            b"5;a=\"\x01\"\r\n",
            b"5;=x\r\n",
            b"5 a\r\n",
            b"5;a\n",
            b"5;a=\"\\\x7f\"\r\n",
        ] {
            assert_eq!(
                chunked().feed(bad),
                Err(Rejection::BadRequest("malformed chunked request body")),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
