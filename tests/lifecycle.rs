//! Start-up, failure and shutdown: refused configuration, Redis going away under load, and
//! graceful draining on SIGTERM (also as PID 1).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, run_to_exit, send_signal, wait_until, Conn, Redis, Service, Signal};

#[test]
fn bad_configuration_is_refused_with_one_line_naming_the_variable() {
    let cases: [(&str, &str); 5] = [
        ("PORT", "eighty"),
        ("HOST", "not-an-ip"),
        ("REDIS_URL", "http://:topsecret@host"),
        ("REDIS_CLUSTER_ADDRESS", "no-port"),
        ("HTTP_WORKERS", "0"),
    ];
    for (var, value) in cases {
        let (status, stderr) = run_to_exit(&[(var, value)]);
        assert_eq!(status.code(), Some(2), "{var}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{var}: {stderr}");
        assert!(stderr.contains(var), "{var}: {stderr}");
        assert!(!stderr.contains("topsecret"), "{stderr}");
    }
    let (status, stderr) = run_to_exit(&[
        ("REDIS_URL", "rediss://:topsecret@localhost:6380"),
        ("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem"),
    ]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("REDIS_TLS_CA_FILE"), "{stderr}");
    assert!(!stderr.contains("topsecret"), "{stderr}");
}

#[test]
fn an_address_in_use_is_a_clear_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (status, stderr) = run_to_exit(&[("HOST", "127.0.0.1"), ("PORT", &port)]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("cannot listen on 127.0.0.1:"), "{stderr}");
}

/// One `/hello` on a new connection: `Some(status)`, or `None` if the exchange broke after the
/// request was sent.
fn hello_once(addr: SocketAddr, name: &str) -> Result<Option<u16>, ()> {
    let mut stream = TcpStream::connect(addr).map_err(|_| ())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let req = format!("GET /hello/{name} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).is_err() {
        return Ok(None);
    }
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    Ok(text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|s| s.parse().ok()))
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn redis_restart_under_load_gives_503s_then_heals_without_double_counting() {
    let mut redis = Redis::start_durable();
    let s = Service::on_redis(&redis, &[("REDIS_TIMEOUT_MS", "300")]);
    let stop = AtomicBool::new(false);
    let ok = AtomicU64::new(0);
    let unavailable = AtomicU64::new(0);
    let unknown = AtomicU64::new(0);
    let other = AtomicU64::new(0);
    let last_503 = Mutex::new(None::<Instant>);
    let first_ok_after_restart = Mutex::new(None::<Instant>);
    let restarted_at = Mutex::new(None::<Instant>);
    thread::scope(|scope| {
        // The clients stop however this scope ends, a failed assertion included.
        let _stop = StopOnDrop(&stop);
        for _ in 0..4 {
            scope.spawn(|| {
                let mut conn = Conn::open(s.addr);
                while !stop.load(Ordering::Relaxed) {
                    let r = conn.get("/hello/restart");
                    match r.status {
                        200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if restarted_at.lock().unwrap().is_some() {
                                first_ok_after_restart
                                    .lock()
                                    .unwrap()
                                    .get_or_insert(Instant::now());
                            }
                        }
                        503 => {
                            r.assert_error(503, "store_unavailable");
                            unavailable.fetch_add(1, Ordering::Relaxed);
                            *last_503.lock().unwrap() = Some(Instant::now());
                        }
                        // Sent when Redis died: the answer says it may have been counted.
                        504 => {
                            r.assert_error(504, "store_outcome_unknown");
                            unknown.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            other.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        wait_until("200s before the kill", Duration::from_secs(5), || {
            ok.load(Ordering::Relaxed) > 0
        });
        redis.kill();
        wait_until("503s while Redis is down", Duration::from_secs(5), || {
            unavailable.load(Ordering::Relaxed) > 0
        });
        // /health still answers, and says (after its next check) the store is unreachable.
        wait_until(
            "/health to see the store down",
            Duration::from_secs(5),
            || {
                let h = s.get("/health");
                h.status == 200 && h.json()["store"]["reachable"] == false
            },
        );
        redis.restart();
        *restarted_at.lock().unwrap() = Some(Instant::now());
        wait_until("a 200 after the restart", Duration::from_secs(5), || {
            first_ok_after_restart.lock().unwrap().is_some()
        });
        stop.store(true, Ordering::Relaxed);
    });
    let restarted = restarted_at.lock().unwrap().unwrap();
    let healed = first_ok_after_restart
        .lock()
        .unwrap()
        .expect("never healed")
        .duration_since(restarted);
    let ok = ok.load(Ordering::Relaxed) as i64;
    let unavailable = unavailable.load(Ordering::Relaxed) as i64;
    let unknown = unknown.load(Ordering::Relaxed) as i64;
    let stored = redis.total("nytimes.names");
    println!(
        "redis restart: {ok} × 200, {unavailable} × 503 (not counted), {unknown} × 504 (outcome unknown), {} other; stored {stored}; first 200 {healed:?} after restart",
        other.load(Ordering::Relaxed)
    );
    assert_eq!(other.load(Ordering::Relaxed), 0);
    assert!(healed < Duration::from_secs(1), "healed after {healed:?}");
    // Every 200 is stored; a 504 may or may not have been; a 503 was not; nothing twice.
    assert!(
        stored >= ok && stored <= ok + unknown,
        "stored {stored}, ok {ok}, unknown {unknown}"
    );
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let redis = Redis::start();
    let mut s = Service::on_redis(&redis, &[("REDIS_TIMEOUT_MS", "3000")]);
    // An idle keep-alive connection is closed at shutdown, not waited for.
    let mut idle = Conn::open(s.addr);
    assert_eq!(idle.get("/").status, 200);

    // Freeze Redis so that requests are certainly in flight when SIGTERM arrives.
    send_signal(redis.pid(), Signal::STOP);
    let outcomes: Vec<Result<Option<u16>, ()>> = thread::scope(|scope| {
        let clients: Vec<_> = (0..8)
            .map(|i| {
                let addr = s.addr;
                scope.spawn(move || hello_once(addr, &format!("drain{i}")))
            })
            .collect();
        // The 8 clients and the idle connection are open (the 8 requests wait on Redis).
        wait_until("the 8 clients' connections", Duration::from_secs(5), || {
            idle.get("/metrics")
                .text()
                .contains("hello_http_connections_open 9\n")
        });
        s.signal(Signal::TERM);
        // Shutdown has begun once the listener is closed; only then may Redis answer.
        wait_until("the listener to close", Duration::from_secs(5), || {
            TcpStream::connect(s.addr).is_err()
        });
        send_signal(redis.pid(), Signal::CONT);
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let started = Instant::now();
    let status = s.wait(Duration::from_secs(15)).expect("did not exit");
    println!("exited {:?} after SIGTERM", started.elapsed());
    assert_eq!(status.code(), Some(0));
    assert!(outcomes.iter().all(|o| *o == Ok(Some(200))), "{outcomes:?}");
    assert_eq!(redis.total("nytimes.names"), 8);
    assert!(idle.is_closed());
    // No longer listening.
    assert!(TcpStream::connect(s.addr).is_err());
}

#[test]
fn sigterm_as_pid_1_exits_cleanly() {
    let port = free_port();
    let mut child = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--kill-child",
            env!("CARGO_BIN_EXE_hello"),
        ])
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare (util-linux) is needed for this test");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "PID 1 server did not start"
        );
        thread::sleep(Duration::from_millis(20));
    }
    // The server is the child of `unshare`: PID 1 in its namespace.
    let children =
        std::fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id()))
            .unwrap();
    let pid: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let status_file = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status_file
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .unwrap();
    assert!(nspid.trim_end().ends_with("\t1"), "{nspid}");
    send_signal(pid, Signal::TERM);
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            println!("PID 1 exited {:?} after SIGTERM", started.elapsed());
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "PID 1 ignored SIGTERM"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_request_on_an_idle_connection_just_after_sigterm_is_answered_with_close() {
    let mut s = Service::start(&[("SHUTDOWN_IDLE_GRACE_MS", "2000")]);
    let mut conn = Conn::open(s.addr);
    assert_eq!(conn.get("/health").status, 200);
    s.signal(Signal::TERM);
    // The drain has begun (the listener is closed) and the connection is idle: a request sent
    // now meets an answer, not a closed connection.
    wait_until("the listener closed", Duration::from_secs(5), || {
        std::net::TcpStream::connect(s.addr).is_err()
    });
    let r = conn.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(conn.is_closed());
    assert_eq!(
        s.wait(Duration::from_secs(10)).and_then(|e| e.code()),
        Some(0)
    );
}
