//! Lanes and the connection cap, over real sockets against the real binary and a real Redis:
//! routes that need nothing outside the process answer while Redis is stopped, a full store
//! lane answers at once without sending anything, and a table full of idle keep-alive
//! connections makes room for new clients.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::load::{context_switches, cpu_ticks};
use common::{send_signal, wait_until, Conn, Redis, Service, Signal};

const KEY: &str = "nytimes.names";

/// Redis stopped (SIGSTOP) while it is held; resumed when dropped, even if the test fails.
struct Stopped<'a>(&'a Redis);

impl<'a> Stopped<'a> {
    fn new(redis: &'a Redis) -> Stopped<'a> {
        send_signal(redis.pid(), Signal::STOP);
        Stopped(redis)
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        send_signal(self.0.pid(), Signal::CONT);
    }
}

/// Opens `n` connections that each send `GET path` and read nothing back yet.
fn waiting_greetings(s: &Service, n: usize, path: &str) -> Vec<Conn> {
    (0..n)
        .map(|_| {
            let mut c = Conn::open(s.addr);
            c.send("GET", path, &[]);
            c
        })
        .collect()
}

#[test]
fn health_answers_at_once_while_redis_is_stopped_under_greetings() {
    let redis = Redis::start();
    let s = Service::on_redis(
        &redis,
        &[("REDIS_TIMEOUT_MS", "5000"), ("HTTP_WORKERS", "2")],
    );
    assert_eq!(s.get("/hello/warm").status, 200);
    let stopped = Stopped::new(&redis);
    // More greetings than workers, all waiting for Redis.
    let mut greetings = waiting_greetings(&s, 64, "/hello/stalled");
    let mut health = Conn::open(s.addr);
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let asked = Instant::now();
        let r = health.get("/health");
        slowest = slowest.max(asked.elapsed());
        assert_eq!(r.status, 200);
        assert_eq!(health.get("/metrics").status, 200);
        assert_eq!(health.get("/").status, 200);
    }
    // Before the lanes, /health waited for Redis with the workers: about the whole timeout.
    assert!(
        slowest < Duration::from_secs(1),
        "/health took {slowest:?} with Redis stopped"
    );
    drop(stopped);
    let mut counted = 0;
    for g in &mut greetings {
        g.set_read_timeout(Duration::from_secs(20));
        let r = g.response(false);
        if r.status == 200 {
            counted += 1;
        }
    }
    // The greetings sent before the timeout are each counted once, and none twice.
    let stored = redis
        .counts(KEY)
        .into_iter()
        .find(|(n, _)| n == "stalled")
        .map_or(0, |(_, c)| c);
    assert!(stored >= counted, "{stored} stored, {counted} answered 200");
    assert!(stored <= 64);
}

#[test]
fn a_full_store_lane_answers_overloaded_at_once_and_sends_nothing() {
    let redis = Redis::start();
    let s = Service::on_redis(
        &redis,
        &[("REDIS_TIMEOUT_MS", "30000"), ("STORE_MAX_PENDING", "4")],
    );
    assert_eq!(s.get("/hello/warm").status, 200);
    let stopped = Stopped::new(&redis);
    // At most one pipeline is in flight (it took what was queued, at most 4) and 4 more may
    // queue behind it: of 16, at least 8 are refused, each at once. Each connection waits for
    // its answer on a thread of its own, so that the waits overlap.
    let greetings = waiting_greetings(&s, 16, "/hello/crowd");
    let answered: Vec<(Conn, Option<common::Response>)> = thread::scope(|scope| {
        let readers: Vec<_> = greetings
            .into_iter()
            .map(|mut g| {
                scope.spawn(move || {
                    g.set_read_timeout(Duration::from_secs(2));
                    let r = g.try_response(false).ok();
                    (g, r)
                })
            })
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut refused = 0;
    let mut waiting = Vec::new();
    for (g, r) in answered {
        match r {
            Some(r) => {
                r.assert_error(503, "overloaded");
                assert_eq!(r.header("retry-after"), Some("1"));
                refused += 1;
            }
            None => waiting.push(g),
        }
    }
    assert!(
        refused >= 8,
        "{refused} of 16 refused while Redis was stopped"
    );
    drop(stopped);
    for g in &mut waiting {
        g.set_read_timeout(Duration::from_secs(15));
        assert_eq!(g.response(false).status, 200);
    }
    // Exactly the greetings answered 200 were counted: none of the refused was sent.
    let stored = redis
        .counts(KEY)
        .into_iter()
        .find(|(n, _)| n == "crowd")
        .map_or(0, |(_, c)| c);
    assert_eq!(stored, waiting.len() as i64);
}

/// Opens `n` keep-alive connections that each answer one request, then idle.
fn idle_connections(s: &Service, n: usize) -> Vec<Conn> {
    (0..n)
        .map(|_| {
            let mut c = Conn::open(s.addr);
            assert_eq!(c.get("/health").status, 200);
            c
        })
        .collect()
}

fn reclaimed(s: &Service) -> u64 {
    let metrics = s.get("/metrics").text();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("hello_http_connections_reclaimed_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("reclaimed counter")
}

#[test]
fn a_table_full_of_idle_connections_still_serves_new_clients() {
    let s = Service::start(&[("HTTP_MAX_CONNECTIONS", "300")]);
    let mut idle = idle_connections(&s, 300);
    // Before: every new client got 503 for as long as the idle timeout (75 s).
    // Each new client stays connected, so each needs a place of its own.
    let mut new = Vec::new();
    for i in 0..5 {
        let mut c = Conn::open(s.addr);
        let r = c.get(&format!("/hello/new{i}"));
        assert_eq!(r.status, 200, "new client {i}: {}", r.text());
        new.push(c);
    }
    assert!(reclaimed(&s) >= 5);
    // The connections closed for them were idle ones: each sees the close, and no request
    // of theirs was lost.
    let closed = idle
        .iter_mut()
        .map(|c| c.is_closed_now())
        .filter(|c| *c)
        .count();
    assert!(closed >= 5, "{closed} idle connections closed");
}

#[test]
fn at_the_cap_with_every_connection_inside_a_request_a_new_client_is_refused() {
    // No minimum rate: a request under way that keeps up may not be closed to make room.
    let s = Service::start(&[
        ("HTTP_MAX_CONNECTIONS", "8"),
        ("HTTP_REQUEST_MIN_RATE", "0"),
    ]);
    // Each client sends half a head and holds it: inside a request, so none may be closed to
    // make room. Clients are added until one is refused: a connection the test closed just
    // before (the start-up probe) may still be counted for a moment, so the table may take
    // one or two more than eight before it is seen full.
    let mut busy: Vec<Conn> = Vec::new();
    let refusal = loop {
        assert!(busy.len() < 16, "never refused with {} busy", busy.len());
        let mut c = Conn::open(s.addr);
        c.set_read_timeout(Duration::from_millis(300));
        match c.try_response(false) {
            Ok(r) => break r,
            Err(_) => {
                c.send_raw(b"GET /health HTTP/1.1\r\n");
                busy.push(c);
            }
        }
    };
    refusal.assert_error(503, "overloaded");
    assert!(busy.len() >= 8, "refused with {} busy", busy.len());
    drop(busy);
    // Until the server has seen the busy connections close, a probe is refused too.
    let mut probes_refused = 0;
    wait_until(
        "the busy connections' close",
        Duration::from_secs(5),
        || {
            let status = s.get("/").status;
            probes_refused += u64::from(status == 503);
            status == 200
        },
    );
    let metrics = s.get("/metrics").text();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hello_http_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("refused counter");
    assert_eq!(refused, 1 + probes_refused, "{metrics}");
}

/// How well the store lane batches and what a greeting costs in context switches, under two
/// loads of distinct names for 3 s each: 64 connections with one greeting in flight each (as
/// `wrk -c64`), and 8 connections with 32 in flight each. Greetings per pipeline are Redis's
/// `ZINCRBY` calls over the reads it made of its clients; context switches are counted over
/// every thread of the service. Run against a release build, before and after a change:
/// `HELLO_BIN=<binary> cargo test --release --test lanes measure -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_greetings_per_pipeline_and_context_switches() {
    let redis = Redis::start();
    let s = Service::with_redis(&redis);
    assert_eq!(s.get("/hello/warm").status, 200);
    println!(
        "\n{:<22} {:>10} {:>12} {:>13} {:>12} {:>12} {:>12}",
        "load",
        "greetings",
        "greetings/s",
        "per pipeline",
        "cs/greeting",
        "CPU/greeting",
        "Redis CPU"
    );
    for (label, connections, depth) in [
        ("64 conns, 1 in flight", 64, 1),
        ("8 conns, 32 in flight", 8, 32),
    ] {
        let reads = redis.info("stats", "total_reads_processed").unwrap();
        let calls = redis.calls("ZINCRBY");
        let switches = context_switches(s.pid());
        let (cpu, redis_cpu) = (cpu_ticks(s.pid()), cpu_ticks(redis.pid()));
        let started = Instant::now();
        let greetings: u64 = thread::scope(|scope| {
            let clients: Vec<_> = (0..connections)
                .map(|c| {
                    let addr = s.addr;
                    scope.spawn(move || {
                        let mut conn = Conn::open(addr);
                        let mut n = 0u64;
                        while started.elapsed() < Duration::from_secs(3) {
                            let burst: String = (0..depth)
                                .map(|i| {
                                    format!("GET /hello/m{c}-{n}-{i} HTTP/1.1\r\nHost: t\r\n\r\n")
                                })
                                .collect();
                            conn.send_raw(burst.as_bytes());
                            for _ in 0..depth {
                                assert_eq!(conn.response(false).status, 200);
                            }
                            n += depth as u64;
                        }
                        n
                    })
                })
                .collect();
            clients.into_iter().map(|c| c.join().unwrap()).sum()
        });
        let elapsed = started.elapsed().as_secs_f64();
        let pipelines = redis.info("stats", "total_reads_processed").unwrap() - reads;
        let sent = redis.calls("ZINCRBY") - calls;
        let switched = context_switches(s.pid()) - switches;
        // Clock ticks are hundredths of a second on Linux.
        let per_greeting = |ticks: u64| ticks as f64 * 10_000.0 / greetings as f64;
        println!(
            "{label:<22} {greetings:>10} {:>12.0} {:>13.2} {:>12.3} {:>10.1}us {:>10.1}us",
            greetings as f64 / elapsed,
            sent as f64 / pipelines as f64,
            switched as f64 / greetings as f64,
            per_greeting(cpu_ticks(s.pid()) - cpu),
            per_greeting(cpu_ticks(redis.pid()) - redis_cpu),
        );
    }
}
