//! A small HTTP/1.1 client over plain sockets: one keep-alive connection at a time, and bursts
//! of many opened at once. Every kind of exchange it sees is noted down ([`observed`]) for
//! tests/spec.rs, which holds them against docs/openapi.yaml.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// The first line of raw bytes read back: a response's status line, or `(closed)` if none came.
pub fn status_line(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .next()
        .unwrap_or("(closed)")
        .to_owned()
}

/// An HTTP response as received.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }

    /// A greeting's count, from its JSON answer.
    pub fn count(&self) -> i64 {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        self.json()["count"].as_i64().expect("a count")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the status of an answer without a body (to HEAD), and that it says it is an
    /// error's head: JSON, not to be stored.
    pub fn assert_status_only(&self, status: u16) {
        assert_eq!(self.status, status);
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(self.header("cache-control"), Some("no-store"));
    }

    /// Asserts this is the API's JSON error with `status` and `code`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        assert_eq!(body["error"]["status"], status);
        assert_eq!(body["error"]["code"], code);
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
}

/// A keep-alive client connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    /// The method and target of each request sent and not yet answered, in order.
    unanswered: VecDeque<(String, String)>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        Conn::try_open(addr).expect("connect")
    }

    /// A connection, or why none could be opened (e.g. refused while the server restarts).
    pub fn try_open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        Ok(Conn {
            reader: BufReader::new(stream),
            unanswered: VecDeque::new(),
        })
    }

    /// How long a response may take before reading it fails (15 s unless changed).
    pub fn set_read_timeout(&self, timeout: Duration) {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .expect("timeout");
    }

    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send_raw(req.as_bytes());
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.unanswered.extend(observed::request_lines(bytes));
        self.reader.get_mut().write_all(bytes).expect("send");
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.send("GET", path, &[]);
        self.response(false)
    }

    pub fn try_response(&mut self, head_only: bool) -> std::io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let request = self.unanswered.pop_front();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').expect("header");
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only {
            observed::note(request, &line, &response);
            return Ok(response);
        }
        if let Some(len) = response.header("content-length") {
            let mut body = vec![0; len.parse().expect("length")];
            self.reader.read_exact(&mut body)?;
            response.body = body;
        } else if response.header("transfer-encoding") == Some("chunked") {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size)?;
                let size = usize::from_str_radix(size.trim(), 16).map_err(std::io::Error::other)?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                response.body.extend_from_slice(&chunk[..size]);
            }
        } else {
            self.reader.read_to_end(&mut response.body)?;
        }
        observed::note(request, &line, &response);
        Ok(response)
    }

    /// Sends `GET path` on this connection and reads the answer.
    pub fn try_response_to(&mut self, path: &str) -> std::io::Result<Response> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.reader.get_mut().write_all(req.as_bytes())?;
        self.unanswered
            .push_back(("GET".to_owned(), path.to_owned()));
        self.try_response(false)
    }

    pub fn response(&mut self, head_only: bool) -> Response {
        self.try_response(head_only).expect("response")
    }

    /// True when the server has already closed the connection; does not wait.
    pub fn is_closed_now(&mut self) -> bool {
        let stream = self.reader.get_ref();
        stream.set_nonblocking(true).expect("non-blocking");
        let mut b = [0u8; 1];
        let closed = match self.reader.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        };
        self.reader
            .get_ref()
            .set_nonblocking(false)
            .expect("blocking");
        closed
    }

    /// True when the server closed the connection (read returns end of file).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }
}

/// How a refused client's reading ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The whole answer (as its Content-Length says), then end of file.
    WholeThenEnd,
    /// The whole answer, then a reset instead of end of file.
    WholeThenReset,
    /// A reset (or another error) before the answer was whole.
    Cut,
}

/// What a refused client read, and how its reading ended.
pub struct RefusedRead {
    pub text: String,
    pub end: Refused,
}

/// One client sending `head`, then `more` 4 KB writes the server will not read (until it stops
/// taking them), as an uploading client would; reads what comes back until end of file or an
/// error.
pub fn refused_client(addr: SocketAddr, head: &[u8], more: usize) -> RefusedRead {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return RefusedRead {
            text: String::new(),
            end: Refused::Cut,
        };
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let _ = stream.write_all(head);
    for _ in 0..more {
        if stream.write_all(&[b'y'; 4096]).is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let ended = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&out).into_owned();
    let whole = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
        head.lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>())
            })
            .and_then(Result::ok)
            .is_some_and(|len| body.len() >= len)
    });
    let end = match (whole, ended) {
        (true, true) => Refused::WholeThenEnd,
        (true, false) => Refused::WholeThenReset,
        (false, _) => Refused::Cut,
    };
    RefusedRead { text, end }
}

/// Opens `connections` keep-alive connections, releases them all at once, and on each sends
/// `GET path(i)` while `more(answered so far, time since release)` holds. Each connection's
/// time to its first `200` and number of `200`s; any other answer fails the test.
pub fn burst(
    addr: SocketAddr,
    connections: usize,
    path: impl Fn(usize) -> String + Sync,
    more: impl Fn(usize, Duration) -> bool + Sync,
) -> Vec<(Duration, usize)> {
    let barrier = std::sync::Barrier::new(connections);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|i| {
                let (barrier, path, more) = (&barrier, &path, &more);
                thread::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn_scoped(scope, move || {
                        let mut conn = Conn::open(addr);
                        let path = path(i);
                        barrier.wait();
                        let start = Instant::now();
                        let mut first = None;
                        let mut answered = 0;
                        while answered == 0 || more(answered, start.elapsed()) {
                            assert_eq!(conn.get(&path).status, 200);
                            first.get_or_insert(start.elapsed());
                            answered += 1;
                        }
                        (first.unwrap_or_default(), answered)
                    })
                    .expect("spawn a client")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    })
}

/// What the suites saw the service answer, for tests/spec.rs: each distinct (method, target,
/// status line, error code) once per test process, one tab-separated line each in a file of
/// the process's own under the target's temporary directory. scripts/test.sh empties the
/// folder before the suites run.
pub mod observed {
    use std::collections::HashSet;
    use std::fs::{self, OpenOptions};
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::Mutex;

    use super::Response;

    pub fn folder() -> PathBuf {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("observed")
    }

    /// The method and target of each request in `bytes`, in order: a test's pipelined
    /// requests, their bodies skipped by `Content-Length` or chunked framing. Stops at bytes
    /// that do not make a request line (what the server refuses is answered without one).
    pub fn request_lines(bytes: &[u8]) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let mut rest = bytes;
        loop {
            while let Some(after) = rest.strip_prefix(b"\r\n") {
                rest = after;
            }
            let Some(end) = find(rest, b"\r\n\r\n") else {
                break;
            };
            let head = String::from_utf8_lossy(&rest[..end]).into_owned();
            rest = &rest[end + 4..];
            let mut lines = head.split("\r\n");
            let mut parts = lines.next().unwrap_or("").split(' ');
            let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
                break;
            };
            let token = !method.is_empty() && method.bytes().all(|b| b.is_ascii_graphic());
            if !token || !parts.next().is_some_and(|v| v.starts_with("HTTP/")) {
                break;
            }
            found.push((method.to_owned(), target.to_owned()));
            let field = |name: &str| {
                head.split("\r\n").skip(1).find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_owned())
                })
            };
            if field("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
                rest = skip_chunks(rest);
            } else if let Some(n) = field("content-length").and_then(|v| v.parse().ok()) {
                rest = &rest[rest.len().min(n)..];
            }
        }
        found
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    /// What follows a chunked body (its chunks, the last one, trailers and the empty line).
    fn skip_chunks(mut rest: &[u8]) -> &[u8] {
        loop {
            let Some(end) = find(rest, b"\r\n") else {
                return &[];
            };
            let line = String::from_utf8_lossy(&rest[..end]);
            let size = line.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(size, 16) else {
                return &[];
            };
            rest = &rest[end + 2..];
            if size == 0 {
                // Trailers, then the empty line.
                return match find(rest, b"\r\n\r\n") {
                    Some(i) if !rest.starts_with(b"\r\n") => &rest[i + 4..],
                    _ => rest.get(2..).unwrap_or(&[]),
                };
            }
            rest = size
                .checked_add(2)
                .and_then(|end| rest.get(end..))
                .unwrap_or(&[]);
        }
    }

    /// Notes the answers in `out`, all a connection sent back for `sent`, paired in order with
    /// the requests in `sent`.
    pub fn note_raw(sent: &[u8], out: &[u8]) {
        let text = String::from_utf8_lossy(out);
        let mut requests = request_lines(sent).into_iter();
        // A status line: `HTTP/1.x` and three digits (a body may name the protocol too).
        let status_line_at = |i: usize| {
            let b = text.as_bytes();
            b.len() >= i + 13 && b[i + 8] == b' ' && b[i + 9..i + 12].iter().all(u8::is_ascii_digit)
        };
        let starts: Vec<usize> = text
            .match_indices("HTTP/1.")
            .map(|(i, _)| i)
            .filter(|i| status_line_at(*i))
            .collect();
        for (n, start) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(text.len());
            let answer = &text[*start..end];
            let status_line = answer.lines().next().unwrap_or("");
            let code = answer
                .split("\"code\":\"")
                .nth(1)
                .and_then(|c| c.split('"').next())
                .unwrap_or("-");
            write(requests.next(), status_line, code);
        }
    }

    pub fn note(request: Option<(String, String)>, status_line: &str, response: &Response) {
        let code = response
            .header("content-type")
            .filter(|t| *t == "application/json")
            .and_then(|_| serde_json::from_slice::<serde_json::Value>(&response.body).ok())
            .and_then(|body| body["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "-".to_owned());
        write(request, status_line, &code);
    }

    fn write(request: Option<(String, String)>, status_line: &str, code: &str) {
        static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
        let (method, target) = request.unwrap_or_else(|| ("-".to_owned(), "-".to_owned()));
        let clean = |s: &str| s.replace(['\t', '\r', '\n'], " ");
        let line = format!(
            "{}\t{}\t{}\t{}\n",
            clean(&method),
            clean(&target),
            status_line.trim_end(),
            code
        );
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.get_or_insert_with(HashSet::new).insert(line.clone()) {
            return;
        }
        let folder = folder();
        let _ = fs::create_dir_all(&folder);
        let file = folder.join(format!("{}.tsv", std::process::id()));
        if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(file) {
            let _ = file.write_all(line.as_bytes());
        }
    }
}
