//! Stopping under load: SIGTERM with requests in flight, and a rolling restart of three nodes
//! behind nginx, with nothing lost.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::load::{hammer, Tally};
use crate::common::{free_port, Nginx, Redis, Service, Signal};
use crate::KEY;

#[test]
#[ignore]
fn s3_sigterm_under_load() {
    let redis = Redis::start();
    let mut s = Service::with_redis(&redis);
    let addr = s.addr;
    let stop = AtomicBool::new(false);
    let (tally, exit_after) = thread::scope(|scope| {
        let load: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut stream) = TcpStream::connect(addr) else {
                            continue; // refused: the listener is closed, nothing was sent
                        };
                        let started = Instant::now();
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        if stream
                            .write_all(
                                b"GET /hello/term HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                            )
                            .is_err()
                        {
                            tally.record(None, started.elapsed());
                            continue;
                        }
                        let mut out = Vec::new();
                        let _ = stream.read_to_end(&mut out);
                        let status = std::str::from_utf8(out.get(9..12).unwrap_or_default())
                            .ok()
                            .and_then(|s| s.parse().ok());
                        tally.record(status, started.elapsed());
                    }
                    tally
                })
            })
            .collect();
        thread::sleep(Duration::from_secs(1));
        s.signal(Signal::TERM);
        let signalled = Instant::now();
        let status = s.wait(Duration::from_secs(15));
        let exit_after = signalled.elapsed();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(status.and_then(|s| s.code()), Some(0));
        let mut total = Tally::default();
        for h in load {
            total.merge(h.join().unwrap());
        }
        (total, exit_after)
    });
    let stored = redis.total(KEY);
    tally.row(
        "3 SIGTERM under load",
        Some(stored),
        &format!("exit 0 after {exit_after:?}"),
    );
    assert_eq!(
        tally.failed + tally.other + tally.unknown,
        0,
        "requests sent but not answered"
    );
    assert_eq!(stored, tally.ok as i64);
}

#[test]
#[ignore]
fn s8_rolling_restart_behind_nginx() {
    let redis = Redis::start();
    let port = free_port();
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let env = [("REDIS_CLUSTER_ADDRESS", redis.address())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let addr = |ip: &str| -> SocketAddr { format!("{ip}:{port}").parse().unwrap() };
    let mut nodes: Vec<Service> = ips
        .iter()
        .map(|ip| Service::start_at(addr(ip), &env))
        .collect();

    let upstreams: String = ips
        .iter()
        .map(|ip| format!("server {ip}:{port} max_fails=0;\n"))
        .collect();
    let nginx = Nginx::start(
        &format!("upstream nodes {{ {upstreams} keepalive 16; }}"),
        "location / { proxy_pass http://nodes; proxy_http_version 1.1;
           proxy_set_header Connection \"\"; proxy_next_upstream error; proxy_next_upstream_tries 3; }",
    );
    let front = nginx.addr;

    let stop = AtomicBool::new(false);
    let mut restarts = Vec::new();
    let tally = thread::scope(|scope| {
        let load = scope.spawn(|| hammer(front, 8, &stop, "rolling"));
        thread::sleep(Duration::from_millis(500));
        for (i, ip) in ips.iter().enumerate() {
            nodes[i].signal(Signal::TERM);
            let t = Instant::now();
            assert_eq!(
                nodes[i]
                    .wait(Duration::from_secs(15))
                    .and_then(|s| s.code()),
                Some(0)
            );
            restarts.push(t.elapsed());
            nodes[i] = Service::start_at(addr(ip), &env);
            thread::sleep(Duration::from_millis(500));
        }
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap()
    });
    drop(nginx);
    let stored = redis.total(KEY);
    tally.row(
        "8 rolling restart via nginx",
        Some(stored),
        &format!("3 nodes, drain times {restarts:?}"),
    );
    assert_eq!(
        tally.failed + tally.other + tally.unavailable + tally.unknown,
        0
    );
    assert_eq!(stored, tally.ok as i64);
}
