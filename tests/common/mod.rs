//! The shared test harness, by concern: a private `redis-server` on a free port (`redis`), the
//! `hello` binary as a real process (`service`), a small HTTP/1.1 client over plain sockets
//! (`client`), AWS stand-ins (`aws`), load and what it measured (`load`: the resilience
//! suite's table rows), and the helpers below that they all use.

// Each suite compiles the harness anew and uses a different part of it, so every item is unused
// in some suite; none is unused in all of them (checked by building without this).
#![allow(dead_code)]

pub mod aws;
mod client;
pub mod load;
mod nginx;
mod redis;
mod redis_cluster;
mod service;

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

// Re-exported so that every suite's `use common::{…}` reads the same, whichever file the item
// lives in; a suite need not use them all.
#[allow(unused_imports)]
pub use self::client::{
    burst, observed, refused_client, status_line, Conn, Refused, RefusedRead, Response,
};
#[allow(unused_imports)]
pub use self::nginx::Nginx;
#[allow(unused_imports)]
pub use self::redis::{plain_endpoint, trickling_proxy, Redis};
#[allow(unused_imports)]
pub use self::redis_cluster::{RedisCluster, PASSWORD as CLUSTER_PASSWORD, USER as CLUSTER_USER};
#[allow(unused_imports)]
pub use self::service::{binary, run_to_exit, Service};
pub use rustix::process::Signal;
use rustix::process::{kill_process, Pid};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Polls `ready` every 20 ms until it holds; fails the test after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < timeout,
            "{what} not ready after {timeout:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` to the process `pid` (a child of the test, or of one of its children).
pub fn send_signal(pid: u32, signal: Signal) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .expect("a process id");
    kill_process(pid, signal).expect("signal sent");
}
