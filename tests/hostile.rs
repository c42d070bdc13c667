//! Slow and hostile clients, each attack over real sockets against the real binary, with the
//! outcome the contract promises: a request meets its deadline from its first byte, a client
//! that does not read costs a table entry and not a worker, idle connections hold no large
//! buffers, and framing tricks are not served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{refused_client, Conn, Redis, Refused, Service};

const KEY: &str = "nytimes.names";

/// Sends `bytes` one at a time, `every` apart, until the server answers or closes; returns
/// what it answered and when, counted from the first byte.
fn trickle(s: &Service, bytes: &[u8], every: Duration) -> (String, Duration) {
    let mut stream = TcpStream::connect(s.addr).unwrap();
    stream.set_nonblocking(true).unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let mut closed = false;
    for b in bytes {
        if stream.write_all(&[*b]).is_err() {
            break;
        }
        closed = read_for(&mut stream, &mut out, every);
        if closed || !out.is_empty() {
            break;
        }
    }
    // All sent and nothing back yet: the answer is on its way (a busy machine may take longer
    // than one interval to send it).
    if !closed && out.is_empty() {
        read_for(&mut stream, &mut out, Duration::from_secs(10));
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

/// Reads what arrives for up to `limit`, stopping once something has; says whether the
/// connection ended.
fn read_for(stream: &mut TcpStream, out: &mut Vec<u8>, limit: Duration) -> bool {
    let waited = Instant::now();
    let mut buf = [0u8; 4096];
    while waited.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !out.is_empty() {
                    return false;
                }
                thread::sleep(Duration::from_millis(10))
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn a_trickled_head_is_cut_off_at_its_deadline_from_the_first_byte() {
    let s = Service::start(&[("HTTP_REQUEST_TIMEOUT_MS", "1000")]);
    let request = b"GET /hello/trickled HTTP/1.1\r\nHost: t\r\nX-Pad: aaaaaaaaaaaaaaaa\r\n\r\n";
    // Sent whole, it would take 6.5 s; the deadline is 1 s after its first byte.
    let (answer, after) = trickle(&s, request, Duration::from_millis(100));
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(
        after < Duration::from_millis(2500),
        "cut off after {after:?}"
    );
    assert_eq!(s.get("/counts").text(), r#"{"counts":[]}"#);
}

#[test]
fn a_trickled_body_is_cut_off_at_the_same_deadline() {
    let s = Service::start(&[("HTTP_REQUEST_TIMEOUT_MS", "1000")]);
    let mut request =
        b"GET /hello/body HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n".to_vec();
    request.extend_from_slice(&[b'b'; 100]);
    let (answer, after) = trickle(&s, &request, Duration::from_millis(25));
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(
        after < Duration::from_millis(2500),
        "cut off after {after:?}"
    );
    assert_eq!(s.get("/counts").text(), r#"{"counts":[]}"#);
}

/// A connection that asks for `path` and never reads, with a small receive buffer so that the
/// server's writes block early.
fn non_reader(s: &Service, path: &str) -> TcpStream {
    let stream = TcpStream::connect(s.addr).unwrap();
    rustix::net::sockopt::set_socket_recv_buffer_size(&stream, 4096).unwrap();
    (&stream)
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    stream
}

/// The status of the response waiting on a connection that has not read it yet.
fn status_waiting(stream: &mut TcpStream) -> Option<u16> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[test]
fn clients_that_never_read_cost_table_entries_not_workers() {
    let redis = Redis::start();
    redis.add_names(KEY, 200_000);
    let s = Service::on_redis(
        &redis,
        &[
            ("HTTP_WORKERS", "4"),
            ("COUNTS_MAX_LISTINGS", "8"),
            ("HTTP_WRITE_TIMEOUT_MS", "3000"),
        ],
    );
    // 64 listings of 200,000 names nobody reads: 16 times the workers.
    let mut stalled: Vec<TcpStream> = (0..64).map(|_| non_reader(&s, "/counts")).collect();
    let started = Instant::now();
    let mut conn = Conn::open(s.addr);
    let mut took: Vec<Duration> = (0..50)
        .map(|i| {
            let t = Instant::now();
            assert_eq!(conn.get(&format!("/hello/victim{i}")).status, 200);
            t.elapsed()
        })
        .collect();
    println!(
        "/hello with 64 non-reading /counts clients: first {:?}",
        took[0]
    );
    took.sort();
    println!("  median {:?}, slowest {:?}", took[25], took[49]);
    // Before, every worker was held by a write for its 10 s timeout. The first request waits
    // its turn behind the 64 listings' requests; the others wait for nothing.
    assert!(took[49] < Duration::from_secs(5), "{took:?}");
    assert!(took[25] < Duration::from_millis(100), "{took:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Only the allowed number of listings were started; the others were refused at once.
    let statuses: Vec<Option<u16>> = stalled.iter_mut().map(status_waiting).collect();
    let ok = statuses.iter().filter(|s| **s == Some(200)).count();
    let refused = statuses.iter().filter(|s| **s == Some(503)).count();
    assert_eq!((ok, refused), (8, 56), "{statuses:?}");
    // Stalled writes are dropped after the write timeout, and their listings with them.
    drop(conn);
    let dropped = Instant::now();
    loop {
        let r = s.get("/counts?limit=1");
        if r.status == 200 {
            break;
        }
        r.assert_error(503, "overloaded");
        assert!(
            dropped.elapsed() < Duration::from_secs(10),
            "listings never freed"
        );
        thread::sleep(Duration::from_millis(100));
    }
    println!(
        "listings freed {:?} after the test stopped reading",
        dropped.elapsed()
    );
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn idle_connections_after_large_bodies_hold_no_large_buffers() {
    const CONNECTIONS: usize = 300;
    let s = Service::start(&[]);
    let mut warm = Conn::open(s.addr);
    assert_eq!(warm.get("/").status, 200);
    let before = rss_kb(s.pid());
    let body = vec![b'x'; 64 * 1024];
    let conns: Vec<Conn> = (0..CONNECTIONS)
        .map(|_| {
            let mut c = Conn::open(s.addr);
            c.send_raw(
                format!(
                    "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            c.send_raw(&body);
            assert_eq!(c.response(false).status, 200);
            c
        })
        .collect();
    let after = rss_kb(s.pid());
    let per_connection = after.saturating_sub(before) * 1024 / CONNECTIONS as u64;
    println!("{CONNECTIONS} idle connections after 64 KiB bodies: RSS {before} kB -> {after} kB, {per_connection} B each");
    assert!(
        per_connection < 16 * 1024,
        "{per_connection} bytes per idle connection"
    );
    drop(conns);
}

#[test]
fn close_in_any_connection_field_wins() {
    let redis = Redis::start();
    let s = Service::with_redis(&redis);
    let out = s.raw(
        b"GET /hello/first HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n\
          GET /hello/after_close HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert!(text.contains("Connection: close\r\n"));
    assert_eq!(redis.counts(KEY), vec![("first".to_string(), 1)]);
}

#[test]
fn head_over_http10_keep_alive_does_what_it_says() {
    let s = Service::start(&[]);
    let mut conn = Conn::open(s.addr);
    conn.send_raw(b"HEAD /counts HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n");
    let head = conn.response(true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("connection"), Some("keep-alive"));
    let next = conn.response(false);
    assert_eq!(next.text(), "Welcome to the Hello Service");
    assert!(conn.is_closed());
}

#[test]
fn empty_lines_before_a_request_line_count_toward_its_limit() {
    let redis = Redis::start();
    let s = Service::with_redis(&redis);
    let long = format!(
        "\r\nGET /hello/{} HTTP/1.1\r\nHost: t\r\n\r\n",
        "a".repeat(12_200)
    );
    let out = s.raw(long.as_bytes());
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 414 "), "{text}");
    assert!(redis.counts(KEY).is_empty());
    let blank_first =
        s.raw(b"\r\n\r\nGET /hello/ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(String::from_utf8_lossy(&blank_first).starts_with("HTTP/1.1 200 "));
}

#[test]
fn expect_100_continue_is_answered_without_waiting_for_the_body() {
    let s = Service::start(&[("HTTP_REQUEST_TIMEOUT_MS", "5000")]);
    let mut conn = Conn::open(s.addr);
    let started = Instant::now();
    conn.send_raw(
        b"GET /hello/expecting HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
    );
    let r = conn.response(false);
    assert_eq!(r.text(), r#"Hello, "expecting""#);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(conn.is_closed());
}

#[test]
fn a_head_slower_than_the_minimum_rate_is_cut_off_before_its_deadline() {
    // The deadline is 10 s; a byte every 100 ms is 10 bytes a second, far below 500.
    let s = Service::start(&[]);
    let request =
        b"GET /hello/slow HTTP/1.1\r\nHost: t\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let (answer, after) = trickle(&s, request, Duration::from_millis(100));
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(after < Duration::from_secs(5), "cut off after {after:?}");
    // Without a minimum, the same head runs to its end and is answered.
    let s = Service::start(&[("HTTP_REQUEST_MIN_RATE", "0")]);
    let (answer, _) = trickle(&s, request, Duration::from_millis(20));
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
}

#[test]
fn one_connection_pipelining_large_requests_does_not_keep_its_worker_from_the_others() {
    let s = Service::start(&[("HTTP_WORKERS", "1")]);
    let mut request = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4000\r\n\r\n".to_vec();
    request.extend_from_slice(&[b'x'; 4000]);
    let batch = request.repeat(16);
    let flood = TcpStream::connect(s.addr).unwrap();
    let mut reader = flood.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let answered_during_flood = thread::scope(|scope| {
        // The flood's answers are read (and thrown away), so its worker never waits to write.
        scope.spawn(|| {
            let mut sink = vec![0u8; 65536];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if matches!(reader.read(&mut sink), Ok(0)) {
                    break;
                }
            }
        });
        let writer = scope.spawn(|| {
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                if (&flood).write_all(&batch).is_err() {
                    break;
                }
            }
        });
        // The flood has the worker first; a neighbour then asks for /health.
        thread::sleep(Duration::from_millis(200));
        let mut conn = Conn::open(s.addr);
        let mut answered = 0;
        while !writer.is_finished() {
            if conn
                .try_response_to("/health")
                .is_ok_and(|r| r.status == 200)
            {
                answered += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = flood.shutdown(std::net::Shutdown::Both);
        answered
    });
    // Before each connection had a budget per turn, none was answered until the flood ended.
    assert!(
        answered_during_flood > 10,
        "{answered_during_flood} answers during the flood"
    );
}

#[test]
fn connections_that_never_send_a_byte_give_way_at_the_cap_oldest_first() {
    let s = Service::start(&[("HTTP_MAX_CONNECTIONS", "10"), ("HTTP_WORKERS", "2")]);
    // Fifteen that never speak, against a cap of ten: each past the cap closes the oldest.
    let silent: Vec<TcpStream> = (0..15)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    // A new client is served all the same.
    for _ in 0..3 {
        let r = s.request("GET", "/health", &[("Connection", "close")]);
        assert_eq!(r.status, 200);
    }
    // The oldest gave way: they read end of file, having had no answer; the newest is open.
    let closed: Vec<bool> = silent
        .iter()
        .map(|mut c| {
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            matches!(c.read(&mut [0u8; 64]), Ok(0))
        })
        .collect();
    let count = closed.iter().filter(|c| **c).count();
    assert!(count >= 5, "{count} silent connections closed: {closed:?}");
    assert!(closed[..5].iter().all(|c| *c), "not the oldest: {closed:?}");
    assert!(!closed[14], "the newest was closed: {closed:?}");
}

#[test]
fn a_refused_client_still_sending_reads_its_whole_answer_then_end_of_file() {
    let s = Service::start(&[]);
    let head = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Pad: {}", "a".repeat(20_000));
    for _ in 0..20 {
        // More of the head follows, which the server will not read.
        let read = refused_client(s.addr, head.as_bytes(), 4);
        assert!(read.text.starts_with("HTTP/1.1 431 "), "{}", read.text);
        // End of file, not a reset: the server read what was left before it closed.
        assert_eq!(read.end, Refused::WholeThenEnd, "{}", read.text);
    }
}
