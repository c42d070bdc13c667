//! Slow and hostile clients: slowhttptest, malformed and oversized requests, trickled heads and
//! bodies, listings nobody reads, idle connections after large bodies.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::load::{hammer, normal_client, threads_and_rss, trickling_clients, Tally};
use crate::common::{status_line, Conn, Redis, Service};
use crate::KEY;

#[test]
#[ignore]
fn s5_slowloris_and_slow_readers() {
    let s = Service::start(&[]);
    let url = format!("http://{}/", s.addr);
    for (label, mode) in [
        ("slow headers", "-H"),
        ("slow body", "-B"),
        ("slow read", "-X"),
    ] {
        let mut attack = Command::new("slowhttptest")
            .args([
                "-c", "1000", mode, "-i", "5", "-r", "500", "-l", "12", "-u", &url,
            ])
            .args(if mode == "-X" {
                vec!["-k", "3", "-n", "5", "-w", "10", "-y", "20", "-z", "32"]
            } else {
                vec!["-x", "24", "-p", "3"]
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slowhttptest (Debian package) is needed");
        let mut tally = Tally::default();
        let (mut max_threads, mut max_rss) = (0, 0);
        let started = Instant::now();
        let mut conn = Conn::open(s.addr);
        while started.elapsed() < Duration::from_secs(10) {
            let t = Instant::now();
            let status = conn.try_response_to("/health").map(|r| r.status).ok();
            if status.is_none() {
                conn = Conn::open(s.addr);
            }
            tally.record(status, t.elapsed());
            let (threads, rss) = threads_and_rss(s.pid());
            max_threads = max_threads.max(threads);
            max_rss = max_rss.max(rss);
            thread::sleep(Duration::from_millis(50));
        }
        let _ = attack.kill();
        let _ = attack.wait();
        tally.row(
            &format!("5 {label} (1000 conns)"),
            None,
            &format!(
                "/health from a normal client; server threads ≤ {max_threads}, RSS ≤ {} MB",
                max_rss / 1024
            ),
        );
        assert_eq!(tally.ok, tally.sent, "{label}: /health failed meanwhile");
        assert!(
            tally.percentile(0.99) < Duration::from_millis(200),
            "{label}"
        );
        assert!(max_threads < 64, "{label}: {max_threads} threads");
    }
}

#[test]
#[ignore]
fn s6_oversized_and_malformed_requests() {
    let s = Service::start(&[]);
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(100_000));
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "b".repeat(100_000)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("huge request line", long.into_bytes(), "414"),
        ("huge header", huge_header.into_bytes(), "431"),
        (
            "invalid UTF-8 name",
            b"GET /hello/%ff%fe HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "NUL in name",
            b"GET /hello/a%00b HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "bad percent-encoding",
            b"GET /hello/%zz HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "absurd limit",
            b"GET /counts?limit=99999999999999999999999 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "negative offset",
            b"GET /counts?offset=-5 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "unknown method",
            b"BREW /counts HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            "405",
        ),
        ("HTTP/0.9", b"GET /\r\n\r\n".to_vec(), "400"),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            "505",
        ),
        (
            "garbage bytes",
            vec![0x16, 0x03, 0x01, 0xff, 0x00, b'\r', b'\n', b'\r', b'\n'],
            "400",
        ),
        (
            "body on GET",
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            "200",
        ),
        (
            "chunked body",
            b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec(),
            "200",
        ),
        (
            "gzip coding",
            b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(),
            "501",
        ),
        (
            "length and chunked",
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            "400",
        ),
        ("no Host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (
            "two Hosts",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "blank lines, then a long line",
            format!("\r\nGET /hello/{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(12_200)).into_bytes(),
            "414",
        ),
        (
            "two lengths",
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(),
            "400",
        ),
    ];
    let mut tally = Tally::default();
    let mut wrong = Vec::new();
    for (label, bytes, want) in &cases {
        // Ask for the connection to be closed after an answer, so that reading to the end
        // does not wait for the idle timeout.
        let mut bytes = bytes.clone();
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            if bytes.starts_with(b"GET /") || bytes.starts_with(b"BREW") {
                bytes.splice(at + 2..at + 2, b"Connection: close\r\n".iter().copied());
            }
        }
        let started = Instant::now();
        let out = s.raw(&bytes);
        let text = String::from_utf8_lossy(&out);
        let status = text.get(9..12).and_then(|s| s.parse().ok());
        tally.record(status, started.elapsed());
        let json_error = *want == "200" || text.contains("\"error\":{");
        if text.get(9..12) != Some(*want) || !json_error {
            wrong.push(format!("{label}: {}", status_line(&out)));
        }
    }
    tally.row(
        "6 malformed requests",
        None,
        &format!(
            "{} cases, {} answered as expected (4xx/5xx JSON, or 200)",
            cases.len(),
            cases.len() - wrong.len()
        ),
    );
    assert!(wrong.is_empty(), "{wrong:?}");
    assert_eq!(s.get("/").status, 200, "the server survived");
}

/// One trickling scenario: `clients` that send `prefix` at once and `rest` a byte every
/// `every`, against a server with `timeout` as its request timeout, while a normal client asks
/// `/health`. Prints the row; asserts that each was cut off by the deadline plus `margin`, that
/// `/health` never failed, and returns the server's RSS growth in kB.
fn trickle_scenario(
    scenario: &str,
    timeout: Duration,
    clients: usize,
    (prefix, rest): (&[u8], &[u8]),
    every: Duration,
    margin: Duration,
) -> u64 {
    let s = Service::start(&[("HTTP_REQUEST_TIMEOUT_MS", &timeout.as_millis().to_string())]);
    let before = threads_and_rss(s.pid()).1;
    let stop = AtomicBool::new(false);
    let (outcomes, peak, side) = thread::scope(|scope| {
        let side = scope.spawn(|| normal_client(s.addr, "/health", &stop));
        let give_up = timeout + Duration::from_secs(10);
        let (outcomes, peak) = trickling_clients(&s, clients, prefix, rest, every, give_up);
        stop.store(true, Ordering::Relaxed);
        (outcomes, peak, side.join().unwrap())
    });
    let mut tally = Tally::default();
    for (status, after) in &outcomes {
        tally.record(*status, *after);
    }
    tally.row(
        scenario,
        None,
        &format!(
            "latency = cut off after first byte; {} answered 408, {} no answer; RSS {} -> {} MB; meanwhile /health {}/{} ok, p99 {:.2?}",
            outcomes.iter().filter(|o| o.0 == Some(408)).count(),
            outcomes.iter().filter(|o| o.0.is_none()).count(),
            before / 1024,
            peak / 1024,
            side.ok,
            side.sent,
            side.percentile(0.99),
        ),
    );
    assert_eq!(side.ok, side.sent, "{scenario}: /health failed meanwhile");
    for (status, after) in &outcomes {
        assert!(
            *after < timeout + margin,
            "cut off after {after:?} ({status:?})"
        );
    }
    peak.saturating_sub(before)
}

#[test]
#[ignore]
fn t1_trickled_heads() {
    trickle_scenario(
        "t1 trickled heads (200, 2 s)",
        Duration::from_secs(2),
        200,
        (
            b"GET /h",
            b"ello/trickled HTTP/1.1\r\nHost: t\r\nX-Pad: 0123456789\r\n\r\n",
        ),
        Duration::from_millis(500),
        Duration::from_millis(1500),
    );
}

#[test]
#[ignore]
fn t2_trickled_bodies() {
    let mut prefix =
        b"GET /hello/body HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\n\r\n".to_vec();
    prefix.extend_from_slice(&[b'b'; 65_000]);
    let grew = trickle_scenario(
        "t2 trickled bodies (1000, 5 s)",
        Duration::from_secs(5),
        1000,
        (&prefix, &[b'b'; 536]),
        Duration::from_millis(1000),
        Duration::from_secs(2),
    );
    assert!(grew < 64 * 1024, "RSS grew {grew} kB");
}

#[test]
#[ignore]
fn t3_non_reading_listings() {
    let redis = Redis::start();
    redis.add_names(KEY, 200_000);
    let s = Service::with_redis(&redis);
    let stalled: Vec<TcpStream> = (0..64)
        .map(|_| {
            let c = TcpStream::connect(s.addr).unwrap();
            rustix::net::sockopt::set_socket_recv_buffer_size(&c, 4096).unwrap();
            (&c).write_all(b"GET /counts HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            c
        })
        .collect();
    let stop = AtomicBool::new(false);
    let tally = thread::scope(|scope| {
        let load = scope.spawn(|| hammer(s.addr, 4, &stop, "victim"));
        thread::sleep(Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap()
    });
    let (threads, rss) = threads_and_rss(s.pid());
    tally.row(
        "t3 64 non-reading /counts",
        Some(redis.total(KEY) - 200_000),
        &format!(
            "/hello from 4 clients meanwhile; 200,000 names; {threads} threads, RSS {} MB",
            rss / 1024
        ),
    );
    drop(stalled);
    assert_eq!(
        tally.failed + tally.other + tally.unavailable + tally.unknown,
        0
    );
    assert!(tally.percentile(0.99) < Duration::from_millis(100));
}

#[test]
#[ignore]
fn t4_idle_connections_after_large_bodies() {
    let s = Service::start(&[]);
    let mut warm = Conn::open(s.addr);
    assert_eq!(warm.get("/").status, 200);
    let before = threads_and_rss(s.pid()).1;
    let body = vec![b'x'; 64 * 1024];
    let mut tally = Tally::default();
    let conns: Vec<Conn> = (0..1000)
        .map(|_| {
            let mut c = Conn::open(s.addr);
            let t = Instant::now();
            c.send_raw(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\n\r\n");
            c.send_raw(&body);
            tally.record(c.try_response(false).map(|r| r.status).ok(), t.elapsed());
            c
        })
        .collect();
    let after = threads_and_rss(s.pid()).1;
    tally.row(
        "t4 1000 idle after 64 KiB bodies",
        None,
        &format!(
            "RSS {before} kB -> {after} kB: {} B per idle connection",
            after.saturating_sub(before) * 1024 / 1000
        ),
    );
    drop(conns);
    assert_eq!(tally.ok, 1000);
}
