//! Many clients at once: exact counts under concurrency, a fair answer to a burst of
//! keep-alive connections (the connection cap is in lanes.rs).

mod common;

use std::thread;
use std::time::Duration;

use common::{burst, Conn, Redis, Service};

#[test]
fn concurrent_increments_are_counted_exactly() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 250;
    let redis = Redis::start();
    let s = Service::with_redis(&redis);
    let names = ["Ann", "Bob", "Cy"];
    thread::scope(|scope| {
        for t in 0..THREADS {
            let addr = s.addr;
            scope.spawn(move || {
                let mut conn = Conn::open(addr);
                for i in 0..PER_THREAD {
                    let r = conn.get(&format!("/hello/{}", names[(t + i) % names.len()]));
                    assert_eq!(r.status, 200);
                }
            });
        }
    });
    let counts = redis.counts("nytimes.names");
    let total: i64 = counts.iter().map(|(_, c)| c).sum();
    assert_eq!(total, (THREADS * PER_THREAD) as i64);
    for (name, count) in counts {
        let expected = (0..THREADS)
            .flat_map(|t| (0..PER_THREAD).map(move |i| names[(t + i) % names.len()]))
            .filter(|n| *n == name)
            .count();
        assert_eq!(count, expected as i64, "{name}");
    }
}

#[test]
fn a_burst_of_keep_alive_connections_is_served_fairly() {
    const CONNECTIONS: usize = 256;
    let redis = Redis::start();
    let s = Service::on_redis(&redis, &[("HTTP_WORKERS", "16")]);
    let run_for = Duration::from_secs(3);
    let results = burst(
        s.addr,
        CONNECTIONS,
        |i| format!("/hello/burst{}", i % 8),
        |_, elapsed| elapsed < run_for,
    );
    let mut firsts: Vec<Duration> = results.iter().map(|(f, _)| *f).collect();
    firsts.sort();
    let served: usize = results.iter().map(|(_, n)| n).sum();
    let p = |q: f64| firsts[((firsts.len() as f64 * q) as usize).min(firsts.len() - 1)];
    println!(
        "burst of {CONNECTIONS}: first response p50 {:?}, p99 {:?}, max {:?}; {served} requests in {run_for:?}",
        p(0.5),
        p(0.99),
        firsts[firsts.len() - 1]
    );
    assert!(results.iter().all(|(_, n)| *n > 0));
    // Every connection had its first answer long before the run was over (tiny_http left some
    // connections unanswered for the whole run).
    assert!(firsts[firsts.len() - 1] < run_for / 2);
    assert_eq!(redis.total("nytimes.names"), served as i64);
}
