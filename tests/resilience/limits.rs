//! Running out of room: a burst of keep-alive connections, and the open-file limit.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::load::Tally;
use crate::common::{self, burst, free_port, Conn, Redis, Service};
use crate::KEY;

#[test]
#[ignore]
fn s4_burst_of_256_keep_alive_connections() {
    let redis = Redis::start();
    let s = Service::with_redis(&redis);
    let results = burst(
        s.addr,
        256,
        |_| "/hello/burst".into(),
        |answered, _| answered < 21,
    );
    // `burst` fails the test on any answer but a 200, so each one it counts is a 200. The
    // latencies are each connection's first response, one per connection.
    let answered: u64 = results.iter().map(|(_, n)| *n as u64).sum();
    let tally = Tally {
        sent: answered,
        ok: answered,
        latencies: results.iter().map(|(first, _)| *first).collect(),
        ..Tally::default()
    };
    let stored = redis.total(KEY);
    tally.row(
        "4 burst: 256 connections",
        Some(stored),
        &format!(
            "latency = first response of each of {} connections; {}–{} requests each",
            results.len(),
            results.iter().map(|(_, n)| n).min().unwrap_or(&0),
            results.iter().map(|(_, n)| n).max().unwrap_or(&0),
        ),
    );
    assert_eq!(answered, 256 * 21);
    assert_eq!(stored, 256 * 21);
}

#[test]
#[ignore]
fn s9_open_file_exhaustion() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = std::env::temp_dir().join(format!("hello-nofile-{port}.log"));
    let mut child = Command::new("prlimit")
        .args(["--nofile=48:48", "--", &common::binary()])
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("HTTP_WORKERS", "4")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("prlimit (util-linux)");
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10));
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(200));
    // Each connection is held open while answered 200; a refused one is answered 503, or reset
    // when the server closes it before reading the request (counted as failed: no answer).
    let mut full = Tally::default();
    let mut held = Vec::new();
    for _ in 0..80 {
        let mut conn = Conn::open(addr);
        let t = Instant::now();
        let status = conn.try_response_to("/").map(|r| r.status).ok();
        full.record(status, t.elapsed());
        if status == Some(200) {
            held.push(conn);
        }
    }
    drop(held);
    thread::sleep(Duration::from_millis(500));
    let mut after = Tally::default();
    for _ in 0..20 {
        let t = Instant::now();
        let r = Conn::open(addr).get("/");
        after.record(Some(r.status), t.elapsed());
    }
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&log);
    full.row(
        "9 open files limited to 48",
        None,
        &format!(
            "{} held, {} refused with 503, {} reset unanswered; then {}/{} served",
            full.ok, full.unavailable, full.failed, after.ok, after.sent
        ),
    );
    assert!(full.unavailable + full.failed > 0, "none refused");
    assert_eq!(full.other, 0, "an answer other than 200 or 503");
    assert!(logged.contains("out of file descriptors"), "{logged}");
    assert_eq!(after.ok, 20);
}
