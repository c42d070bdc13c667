//! AWS misbehaving under `/health/cluster`: hanging, throttling, and 100 concurrent requests
//! against 16 nodes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::aws::{
    canned_server, node_with_aws, node_with_hung_aws, wait_for_membership, MotoCluster, THROTTLING,
};
use crate::common::load::{peak_threads, Tally};
use crate::common::{free_port, Conn};

#[test]
#[ignore]
fn s10_aws_hangs() {
    // AWS accepts connections and never answers.
    let (s, _hung) = node_with_hung_aws(&[("HTTP_WORKERS", "8")]);
    let deadline = Duration::from_secs(3); // CLUSTER_DEADLINE_MS's default
    let barrier = Barrier::new(13);
    let done = AtomicBool::new(false);
    let peak = AtomicU64::new(0);
    let (cluster, side) = thread::scope(|scope| {
        let side = scope.spawn(|| {
            let mut tally = Tally::default();
            barrier.wait();
            let mut conn = Conn::open(s.addr);
            conn.set_read_timeout(Duration::from_secs(60));
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let status = conn.try_response_to("/").map(|r| r.status).ok();
                tally.record(status, t.elapsed());
                if status.is_none() {
                    conn = Conn::open(s.addr);
                    conn.set_read_timeout(Duration::from_secs(60));
                }
                thread::sleep(Duration::from_millis(20));
            }
            tally
        });
        let sampler = scope.spawn(|| peak.store(peak_threads(s.pid(), &done), Ordering::Relaxed));
        let askers: Vec<_> = (0..12)
            .map(|_| {
                scope.spawn(|| {
                    let mut conn = Conn::open(s.addr);
                    conn.set_read_timeout(Duration::from_secs(60));
                    barrier.wait();
                    let t = Instant::now();
                    let status = conn
                        .try_response_to("/health/cluster")
                        .map(|r| r.status)
                        .ok();
                    (status, t.elapsed())
                })
            })
            .collect();
        let mut cluster = Tally::default();
        for asker in askers {
            let (status, latency) = asker.join().unwrap();
            cluster.record(status, latency);
        }
        done.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        (cluster, side.join().unwrap())
    });
    let slowest = cluster.percentile(1.0);
    cluster.row(
        "10 AWS hangs: 12 /health/cluster",
        None,
        &format!(
            "HTTP_WORKERS=8, deadline 3 s: {} answered 502, slowest {slowest:.2?}; server threads ≤ {}",
            cluster.other,
            peak.load(Ordering::Relaxed)
        ),
    );
    side.row(
        "10   meanwhile GET /",
        None,
        &format!("a normal client; slowest {:.2?}", side.percentile(1.0)),
    );
    assert_eq!(cluster.failed, 0, "a /health/cluster went unanswered");
    assert!(slowest < deadline + Duration::from_secs(1), "{slowest:?}");
    assert_eq!(side.ok, side.sent, "GET / failed meanwhile");
    assert!(side.percentile(1.0) < Duration::from_secs(1));
}

#[test]
#[ignore]
fn s11_aws_throttles() {
    let aws: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (_aws, calls) = canned_server(aws, "400 Bad Request", THROTTLING);
    let s = node_with_aws(&format!("http://{aws}"), &[]);
    let run = Duration::from_secs(5);
    let started = Instant::now();
    let tally = thread::scope(|scope| {
        let clients: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mut tally = Tally::default();
                    let mut conn = Conn::open(s.addr);
                    while started.elapsed() < run {
                        let t = Instant::now();
                        let status = conn.try_response_to("/health/cluster").map(|r| r.status);
                        tally.record(status.as_ref().ok().copied(), t.elapsed());
                        if status.is_err() {
                            conn = Conn::open(s.addr);
                        }
                    }
                    tally
                })
            })
            .collect();
        let mut total = Tally::default();
        for c in clients {
            total.merge(c.join().unwrap());
        }
        total
    });
    let calls = calls.load(std::sync::atomic::Ordering::SeqCst);
    let last = s.get("/health/cluster");
    tally.row(
        "11 AWS throttles (400 Throttling)",
        None,
        &format!(
            "4 clients for {run:?}: {} answered 502; AWS asked {calls} times",
            tally.other
        ),
    );
    last.assert_error(502, "upstream_error");
    assert!(last.text().contains("Throttling"), "{}", last.text());
    assert_eq!(tally.failed, 0);
    assert_eq!(tally.other, tally.sent, "every answer a 502");
    assert!(tally.percentile(0.99) < Duration::from_secs(1));
    assert!(calls <= 10, "AWS was asked {calls} times: no backoff");
}

#[test]
#[ignore]
fn s12_hundred_concurrent_cluster_requests_on_16_nodes() {
    let ips: Vec<String> = (2..=17).map(|i| format!("127.0.0.{i}")).collect();
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    let c = MotoCluster::new(&ips);
    let nodes = c.elb_nodes(&ips);
    let asked = &nodes[0].0;
    wait_for_membership(asked);
    let barrier = Barrier::new(100);
    let done = AtomicBool::new(false);
    let (tally, peak, all_in) = thread::scope(|scope| {
        let sampler = scope.spawn(|| peak_threads(asked.pid(), &done));
        let clients: Vec<_> = (0..100)
            .map(|_| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut conn = Conn::open(asked.addr);
                    conn.set_read_timeout(Duration::from_secs(60));
                    barrier.wait();
                    let t = Instant::now();
                    let answer = conn.try_response_to("/health/cluster");
                    let nodes = answer
                        .as_ref()
                        .ok()
                        .and_then(|r| r.json()["node_healths"].as_array().map(Vec::len));
                    (answer.map(|r| r.status).ok(), t, t.elapsed(), nodes)
                })
            })
            .collect();
        let mut tally = Tally::default();
        let mut complete = 0;
        let (mut first_sent, mut last_answered) = (None::<Instant>, None::<Instant>);
        for client in clients {
            let (status, sent, latency, nodes) = client.join().unwrap();
            tally.record(status, latency);
            complete += usize::from(nodes == Some(16));
            first_sent = Some(first_sent.map_or(sent, |f| f.min(sent)));
            last_answered = Some(last_answered.map_or(sent + latency, |l| l.max(sent + latency)));
        }
        done.store(true, Ordering::Relaxed);
        // The AWS lane answers CLUSTER_MAX_REQUESTS (64) at once; the rest get 503 at once.
        assert_eq!(complete as u64, tally.ok, "answers without all 16 nodes");
        let all_in = last_answered.unwrap() - first_sent.unwrap();
        (tally, sampler.join().unwrap(), all_in)
    });
    tally.row(
        "12 100 × /health/cluster, 16 nodes",
        None,
        &format!(
            "all answered in {all_in:.2?} (past the AWS lane's 64: 503); server threads ≤ {peak}"
        ),
    );
    assert!(tally.ok >= 64, "{} answered", tally.ok);
    assert_eq!(tally.ok + tally.unavailable, 100);
    assert!(all_in < Duration::from_secs(4), "{all_in:?}");
    assert!(peak < 100, "{peak} threads");
}
