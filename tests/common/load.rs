//! What the resilience scenarios share: the `Tally` of what a scenario sent and saw, printed
//! as one table row, and the clients that load a server (keep-alive greeters, a normal client,
//! trickling clients) with the process figures sampled meanwhile.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use super::{Conn, Service};

/// What a scenario saw.
#[derive(Default)]
pub struct Tally {
    pub sent: u64,
    pub ok: u64,
    pub unavailable: u64,
    /// 504 `store_outcome_unknown`: sent to Redis, no reply in time; maybe counted.
    pub unknown: u64,
    pub other: u64,
    pub failed: u64,
    pub latencies: Vec<Duration>,
}

impl Tally {
    pub fn record(&mut self, status: Option<u16>, latency: Duration) {
        self.sent += 1;
        match status {
            Some(200) => self.ok += 1,
            Some(503) => self.unavailable += 1,
            Some(504) => self.unknown += 1,
            Some(_) => self.other += 1,
            None => self.failed += 1,
        }
        self.latencies.push(latency);
    }

    pub fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.unavailable += other.unavailable;
        self.unknown += other.unknown;
        self.other += other.other;
        self.failed += other.failed;
        self.latencies.extend(other.latencies);
    }

    pub fn percentile(&self, q: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }

    /// Prints the scenario's row, after the table's header if no row was printed before it (so
    /// the table has its header whichever scenarios run, and in whatever order).
    pub fn row(&self, scenario: &str, stored: Option<i64>, note: &str) {
        static HEADER: Once = Once::new();
        HEADER.call_once(header);
        // A line of its own: the test runner may have printed the test's name without one.
        println!(
            "\n| {scenario:<28} | {:>7} | {:>7} | {:>5} | {:>5} | {:>5} | {:>6} | {:>8} | {:>9.2?} | {:>9.2?} | {note}",
            self.sent,
            self.ok,
            self.unavailable,
            self.unknown,
            self.other,
            self.failed,
            stored.map_or("-".to_string(), |s| s.to_string()),
            self.percentile(0.5),
            self.percentile(0.99),
        );
    }
}

fn header() {
    println!(
        "\n| {:<28} | {:>7} | {:>7} | {:>5} | {:>5} | {:>5} | {:>6} | {:>8} | {:>9} | {:>9} | notes",
        "scenario", "sent", "200", "503", "504", "other", "failed", "stored", "p50", "p99"
    );
}

/// Greets each of `names` once, over `connections` keep-alive connections with up to `depth`
/// greetings in flight on each, asking for JSON; the answers in the order of `names`.
pub fn greet_all(
    s: &Service,
    names: &[String],
    connections: usize,
    depth: usize,
) -> Vec<super::Response> {
    let per_connection = names.len().div_ceil(connections.max(1)).max(1);
    thread::scope(|scope| {
        let clients: Vec<_> = names
            .chunks(per_connection)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut conn = Conn::open(s.addr);
                    let mut answers = Vec::with_capacity(chunk.len());
                    for group in chunk.chunks(depth.max(1)) {
                        let burst: String = group
                            .iter()
                            .map(|n| {
                                format!(
                                    "GET /hello/{n} HTTP/1.1\r\nHost: t\r\n\
                                     Accept: application/json\r\n\r\n"
                                )
                            })
                            .collect();
                        conn.send_raw(burst.as_bytes());
                        answers.extend(group.iter().map(|_| conn.response(false)));
                    }
                    answers
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("a client"))
            .collect()
    })
}

/// Keep-alive clients sending `/hello/{name}` until `stop`; a broken connection is reopened.
pub fn hammer(addr: SocketAddr, clients: usize, stop: &AtomicBool, name: &str) -> Tally {
    thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(move || {
                    let path = format!("/hello/{name}");
                    let mut tally = Tally::default();
                    let mut conn: Option<Conn> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let c = match conn.as_mut() {
                            Some(c) => c,
                            None => match Conn::try_open(addr) {
                                Ok(c) => conn.insert(c),
                                // Refused: nothing was sent, so nothing to count.
                                Err(_) => {
                                    thread::sleep(Duration::from_millis(5));
                                    continue;
                                }
                            },
                        };
                        let started = Instant::now();
                        match c.try_response_to(&path) {
                            Ok(r) => {
                                tally.record(Some(r.status), started.elapsed());
                                if r.header("connection") == Some("close") {
                                    conn = None;
                                }
                            }
                            Err(_) => {
                                tally.record(None, started.elapsed());
                                conn = None;
                            }
                        }
                    }
                    tally
                })
            })
            .collect();
        let mut total = Tally::default();
        for h in handles {
            total.merge(h.join().unwrap());
        }
        total
    })
}

/// A normal client asking `path` on one keep-alive connection until `stop`.
pub fn normal_client(addr: SocketAddr, path: &str, stop: &AtomicBool) -> Tally {
    let mut tally = Tally::default();
    let mut conn = Conn::open(addr);
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let status = conn.try_response_to(path).map(|r| r.status).ok();
        if status.is_none() {
            conn = Conn::open(addr);
        }
        tally.record(status, t.elapsed());
        thread::sleep(Duration::from_millis(10));
    }
    tally
}

pub fn threads_and_rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:"))
}

/// The most threads `pid` had while `done` was unset, sampled every millisecond.
pub fn peak_threads(pid: u32, done: &AtomicBool) -> u64 {
    let mut peak = 0;
    while !done.load(Ordering::Relaxed) {
        peak = peak.max(threads_and_rss(pid).0);
        thread::sleep(Duration::from_millis(1));
    }
    peak
}

/// A trickling client: its connection, when it started, how much of the rest it sent, and the
/// status and time it was answered (or cut off) after.
type Trickler = (TcpStream, Instant, usize, Option<(Option<u16>, Duration)>);

/// Clients that each send `prefix` at once, then the rest of a request a byte every `every`,
/// until the server answers or closes, or `give_up` has passed. Returns, per client, the status
/// answered (if any) and the time from its first byte; and the server's peak RSS meanwhile.
pub fn trickling_clients(
    s: &Service,
    clients: usize,
    prefix: &[u8],
    rest: &[u8],
    every: Duration,
    give_up: Duration,
) -> (Vec<(Option<u16>, Duration)>, u64) {
    let mut conns: Vec<Trickler> = (0..clients)
        .map(|_| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            let started = Instant::now();
            c.write_all(prefix).unwrap();
            c.set_nonblocking(true).unwrap();
            (c, started, 0, None)
        })
        .collect();
    let mut peak_rss = 0;
    let mut last_byte = Instant::now();
    let began = Instant::now();
    while conns.iter().any(|c| c.3.is_none()) && began.elapsed() < give_up {
        let send = last_byte.elapsed() >= every;
        if send {
            last_byte = Instant::now();
        }
        for (c, started, sent, outcome) in conns.iter_mut().filter(|c| c.3.is_none()) {
            let mut head = [0u8; 12];
            match c.read(&mut head) {
                Ok(0) => *outcome = Some((None, started.elapsed())),
                Ok(n) => {
                    let status = std::str::from_utf8(head.get(9..12.min(n)).unwrap_or_default())
                        .ok()
                        .and_then(|s| s.parse().ok());
                    *outcome = Some((status, started.elapsed()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if send && *sent < rest.len() {
                        if c.write_all(&rest[*sent..*sent + 1]).is_err() {
                            *outcome = Some((None, started.elapsed()));
                        }
                        *sent += 1;
                    }
                }
                Err(_) => *outcome = Some((None, started.elapsed())),
            }
        }
        peak_rss = peak_rss.max(threads_and_rss(s.pid()).1);
        thread::sleep(Duration::from_millis(20));
    }
    let outcomes = conns
        .into_iter()
        .map(|c| c.3.unwrap_or((None, c.1.elapsed())))
        .collect();
    (outcomes, peak_rss)
}

/// Context switches of every thread of `pid` so far, voluntary or not.
pub fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// CPU time (user and system) `pid` has used so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command's name in parentheses: utime and stime are the 12th and 13th fields.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}
