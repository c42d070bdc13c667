//! RESP2, the Redis wire protocol: commands out, replies in. Pure functions over byte buffers
//! and readers, so the codec is tested without a server.
//!
//! Only what our commands need: every RESP2 reply type, arrays nested a few levels deep.

use crate::decimal;
use std::fmt;
use std::io::{self, BufRead, Read};

/// Deepest array nesting accepted; our deepest reply, `CLUSTER SHARDS`, nests three levels
/// (shards, their nodes, a node's fields).
const MAX_DEPTH: usize = 4;
/// Largest bulk string Redis itself allows (`proto-max-bulk-len`).
const MAX_BULK: usize = 512 * 1024 * 1024;
/// Most elements in one array: far above the 8,192 of a listing chunk, far below what would
/// let a broken stream fill memory.
const MAX_ARRAY: usize = 1 << 20;
/// Elements reserved up front for an array, whatever length it announces.
const RESERVE: usize = 1024;
/// Longest line (type byte, status or error text, CRLF) read before the stream is judged not to
/// be Redis: a server that never ends its line must not make us buffer without end.
const MAX_LINE: u64 = 64 * 1024;

/// Appends one command, as an array of bulk strings, to `out`.
pub fn write_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_number(out, args.len());
    for arg in args {
        out.push(b'$');
        push_number(out, arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_number(out: &mut Vec<u8>, n: usize) {
    decimal::push(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

/// One reply. `Nil` covers both the null bulk string and the null array.
#[derive(Clone, Debug, PartialEq)]
pub enum RedisReply {
    Status(String),
    Error(ServerError),
    Integer(i64),
    Bulk(Vec<u8>),
    Array(Vec<RedisReply>),
    Nil,
}

impl RedisReply {
    /// Says that this reply was not what `command` should have answered, naming only its type
    /// (its contents may be large, or someone else's data).
    pub fn unexpected(&self, command: &str) -> String {
        let kind = match self {
            RedisReply::Status(_) => "status",
            RedisReply::Error(_) => "error",
            RedisReply::Integer(_) => "integer",
            RedisReply::Bulk(_) => "bulk string",
            RedisReply::Array(_) => "array",
            RedisReply::Nil => "nil",
        };
        format!("unexpected {kind} reply to {command}")
    }

    /// A bulk string of text, as the store's tests write replies.
    #[cfg(test)]
    pub fn bulk(text: &str) -> RedisReply {
        RedisReply::Bulk(text.as_bytes().to_vec())
    }

    /// An array of bulk strings, as `ZRANGE` and `CLUSTER SHARDS` answer.
    #[cfg(test)]
    pub fn bulks(texts: &[&str]) -> RedisReply {
        RedisReply::Array(texts.iter().map(|t| RedisReply::bulk(t)).collect())
    }
}

/// An error reply: its first word (`ERR`, `WRONGTYPE`, `LOADING`, …) and the whole line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerError {
    pub line: String,
}

impl ServerError {
    pub fn code(&self) -> &str {
        self.line.split(' ').next().unwrap_or("")
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

/// Reads one whole reply. A stream that breaks the protocol yields `InvalidData`; after any
/// error the stream is out of step and must be dropped.
pub fn read_reply(r: &mut impl BufRead) -> io::Result<RedisReply> {
    read_at(r, 0, &mut Vec::with_capacity(32))
}

/// `line` is scratch space, shared by the elements of an array so that they cost no
/// allocation of their own.
fn read_at(r: &mut impl BufRead, depth: usize, line: &mut Vec<u8>) -> io::Result<RedisReply> {
    line.clear();
    read_line(r, line)?;
    let (kind, rest) = line.split_first().ok_or_else(|| invalid("empty line"))?;
    match kind {
        b'+' => Ok(RedisReply::Status(text(rest))),
        b'-' => Ok(RedisReply::Error(ServerError { line: text(rest) })),
        b':' => parse_integer(rest).map(RedisReply::Integer),
        b'$' => match parse_length(rest, MAX_BULK)? {
            None => Ok(RedisReply::Nil),
            Some(len) => read_bulk(r, len).map(RedisReply::Bulk),
        },
        b'*' => match parse_length(rest, MAX_ARRAY)? {
            None => Ok(RedisReply::Nil),
            Some(_) if depth >= MAX_DEPTH => Err(invalid("arrays nested too deep")),
            Some(len) => {
                let mut items = Vec::with_capacity(len.min(RESERVE));
                for _ in 0..len {
                    items.push(read_at(r, depth + 1, line)?);
                }
                Ok(RedisReply::Array(items))
            }
        },
        _ => Err(invalid("unknown reply type")),
    }
}

/// A line without its CRLF.
fn read_line(r: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<()> {
    let read = r.take(MAX_LINE).read_until(b'\n', line)?;
    if line.pop() != Some(b'\n') {
        return Err(match read as u64 {
            MAX_LINE => invalid("line too long"),
            _ => io::ErrorKind::UnexpectedEof.into(),
        });
    }
    if line.pop() != Some(b'\r') {
        return Err(invalid("line not ended by CRLF"));
    }
    Ok(())
}

fn read_bulk(r: &mut impl BufRead, len: usize) -> io::Result<Vec<u8>> {
    let buffered = r.fill_buf()?;
    if let Some(whole) = buffered.get(..len + 2) {
        if !whole.ends_with(b"\r\n") {
            return Err(invalid("bulk string not ended by CRLF"));
        }
        let bulk = whole[..len].to_vec();
        r.consume(len + 2);
        return Ok(bulk);
    }
    // Longer than what is buffered: grows as bytes arrive rather than trusting the announced length with an allocation.
    let mut bulk = Vec::with_capacity(len.min(64 * 1024) + 2);
    r.take(len as u64 + 2).read_to_end(&mut bulk)?;
    if bulk.len() < len + 2 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if bulk.split_off(len) != b"\r\n" {
        return Err(invalid("bulk string not ended by CRLF"));
    }
    Ok(bulk)
}

fn parse_integer(digits: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad integer"))
}

/// A length, or `None` for the null value (`-1`).
fn parse_length(digits: &[u8], max: usize) -> io::Result<Option<usize>> {
    match parse_integer(digits)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .ok()
            .filter(|n| *n <= max)
            .map(Some)
            .ok_or_else(|| invalid("bad length")),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("Redis protocol: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> io::Result<RedisReply> {
        read_reply(&mut &bytes[..])
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        write_command(&mut out, &[b"ZINCRBY", b"k", b"1", "é".as_bytes()]);
        write_command(&mut out, &[b"PING"]);
        assert_eq!(
            out,
            b"*4\r\n$7\r\nZINCRBY\r\n$1\r\nk\r\n$1\r\n1\r\n$2\r\n\xc3\xa9\r\n*1\r\n$4\r\nPING\r\n"
        );
    }

    #[test]
    fn every_reply_type() {
        assert_eq!(
            read(b"+PONG\r\n").unwrap(),
            RedisReply::Status("PONG".into())
        );
        assert_eq!(read(b":-42\r\n").unwrap(), RedisReply::Integer(-42));
        assert_eq!(
            read(b"$3\r\na\r\n\r\n").unwrap(),
            RedisReply::Bulk(b"a\r\n".to_vec())
        );
        assert_eq!(read(b"$0\r\n\r\n").unwrap(), RedisReply::Bulk(Vec::new()));
        assert_eq!(read(b"$-1\r\n").unwrap(), RedisReply::Nil);
        assert_eq!(read(b"*-1\r\n").unwrap(), RedisReply::Nil);
        assert_eq!(read(b"*0\r\n").unwrap(), RedisReply::Array(Vec::new()));
        assert_eq!(
            read(b"*3\r\n$4\r\nname\r\n$2\r\n12\r\n*1\r\n:1\r\n").unwrap(),
            RedisReply::Array(vec![
                RedisReply::Bulk(b"name".to_vec()),
                RedisReply::Bulk(b"12".to_vec()),
                RedisReply::Array(vec![RedisReply::Integer(1)]),
            ])
        );
        let RedisReply::Error(e) = read(b"-WRONGTYPE Operation against a key\r\n").unwrap() else {
            panic!("expected an error reply")
        };
        assert_eq!(e.code(), "WRONGTYPE");
        assert_eq!(e.to_string(), "WRONGTYPE Operation against a key");
    }

    #[test]
    fn replies_are_read_one_at_a_time() {
        let mut stream: &[u8] = b":1\r\n$1\r\nx\r\n+OK\r\n";
        assert_eq!(read_reply(&mut stream).unwrap(), RedisReply::Integer(1));
        assert_eq!(
            read_reply(&mut stream).unwrap(),
            RedisReply::Bulk(b"x".to_vec())
        );
        assert_eq!(
            read_reply(&mut stream).unwrap(),
            RedisReply::Status("OK".into())
        );
        assert!(stream.is_empty());
    }

    #[test]
    fn truncated_replies_are_eof() {
        for cut in [
            &b""[..],
            b":1",
            b":1\r",
            b"$5\r\nab",
            b"$2\r\nab",
            b"*2\r\n:1\r\n",
        ] {
            let e = read(cut).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{cut:?}");
        }
    }

    #[test]
    fn protocol_violations_are_invalid_data() {
        let nested = b"*1\r\n".repeat(MAX_DEPTH + 1);
        for bad in [
            &b"?x\r\n"[..],
            b"\r\n",
            b":1\n",
            b":x\r\n",
            b"$-2\r\n",
            b"$2\r\nabcd",
            b"*-5\r\n",
            b"$99999999999999999999\r\n",
            &nested,
        ] {
            let e = read(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
    }

    #[test]
    fn a_line_without_end_is_refused_at_its_limit() {
        let mut endless = b"+".to_vec();
        endless.extend(std::iter::repeat_n(b'x', MAX_LINE as usize + 10));
        let e = read(&endless).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let mut longest = b"+".to_vec();
        longest.extend(std::iter::repeat_n(b'x', MAX_LINE as usize - 3));
        longest.extend_from_slice(b"\r\n");
        assert!(
            matches!(read(&longest).unwrap(), RedisReply::Status(s) if s.len() == MAX_LINE as usize - 3)
        );
    }

    #[test]
    fn an_announced_length_is_not_trusted_with_memory() {
        let e = read(b"$536870912\r\nab").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e = read(b"*1048576\r\n:1\r\n").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e = read(b"*1048577\r\n:1\r\n").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
