//! A small HTTP/1.1 client over plain sockets: one keep-alive connection at a time, and bursts
//! of many opened at once.

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

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
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
        Ok(response)
    }

    /// Sends `GET path` on this connection and reads the answer.
    pub fn try_response_to(&mut self, path: &str) -> std::io::Result<Response> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.reader.get_mut().write_all(req.as_bytes())?;
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
