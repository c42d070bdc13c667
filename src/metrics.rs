//! Counters for `/metrics`, kept in atomics and a small map, and rendered in the Prometheus
//! text exposition format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Gauges owned by the HTTP layer, read when rendering.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectionGauges {
    pub open: u64,
    pub refused: u64,
}

pub struct Metrics {
    started: Instant,
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    store_errors: Mutex<BTreeMap<&'static str, u64>>,
    increments: AtomicU64,
}

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            started: Instant::now(),
            requests: Mutex::new(BTreeMap::new()),
            latency: Mutex::new(BTreeMap::new()),
            store_errors: Mutex::new(BTreeMap::new()),
            increments: AtomicU64::new(0),
        }
    }

    /// Records one answered request. `route` is the route's pattern, not the raw path, so the
    /// number of series stays fixed whatever clients send.
    pub fn request(&self, route: &'static str, status: u16, elapsed: Duration) {
        *lock(&self.requests).entry((route, status)).or_insert(0) += 1;
        let seconds = elapsed.as_secs_f64();
        let mut latency = lock(&self.latency);
        let h = latency.entry(route).or_default();
        for (bucket, bound) in h.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        h.count += 1;
        h.sum_seconds += seconds;
    }

    pub fn store_error(&self, operation: &'static str) {
        *lock(&self.store_errors).entry(operation).or_insert(0) += 1;
    }

    pub fn increment_stored(&self) {
        self.increments.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, connections: ConnectionGauges) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP hello_http_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE hello_http_requests_total counter\n");
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "hello_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP hello_http_request_duration_seconds Time from a complete request to its response, by route.\n");
        out.push_str("# TYPE hello_http_request_duration_seconds histogram\n");
        for (route, h) in lock(&self.latency).iter() {
            for (n, bound) in h.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "hello_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "hello_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "hello_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum_seconds
            );
            let _ = writeln!(
                out,
                "hello_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        out.push_str(
            "# HELP hello_store_errors_total Store operations that failed, by operation.\n",
        );
        out.push_str("# TYPE hello_store_errors_total counter\n");
        for (op, n) in lock(&self.store_errors).iter() {
            let _ = writeln!(out, "hello_store_errors_total{{operation=\"{op}\"}} {n}");
        }
        out.push_str("# HELP hello_increments_total Increments the store confirmed.\n");
        out.push_str("# TYPE hello_increments_total counter\n");
        let _ = writeln!(
            out,
            "hello_increments_total {}",
            self.increments.load(Ordering::Relaxed)
        );
        out.push_str("# HELP hello_http_connections_open Client connections currently open.\n");
        out.push_str("# TYPE hello_http_connections_open gauge\n");
        let _ = writeln!(out, "hello_http_connections_open {}", connections.open);
        out.push_str("# HELP hello_http_connections_refused_total Connections refused at the connection cap or for lack of descriptors.\n");
        out.push_str("# TYPE hello_http_connections_refused_total counter\n");
        let _ = writeln!(
            out,
            "hello_http_connections_refused_total {}",
            connections.refused
        );
        out.push_str("# HELP hello_uptime_seconds Seconds since the process started.\n");
        out.push_str("# TYPE hello_uptime_seconds gauge\n");
        let _ = writeln!(
            out,
            "hello_uptime_seconds {}",
            self.started.elapsed().as_secs_f64()
        );
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new();
        m.request("/hello/{name}", 200, Duration::from_micros(300));
        m.request("/hello/{name}", 200, Duration::from_millis(30));
        m.request("/hello/{name}", 503, Duration::from_secs(10));
        let text = m.render(ConnectionGauges::default());
        assert!(
            text.contains("hello_http_requests_total{route=\"/hello/{name}\",status=\"200\"} 2\n")
        );
        assert!(
            text.contains("hello_http_requests_total{route=\"/hello/{name}\",status=\"503\"} 1\n")
        );
        assert!(text.contains("le=\"0.0005\"} 1\n"));
        assert!(text.contains("le=\"0.05\"} 2\n"));
        assert!(text.contains("le=\"2.5\"} 2\n"));
        assert!(text.contains("le=\"+Inf\"} 3\n"));
        assert!(
            text.contains("hello_http_request_duration_seconds_count{route=\"/hello/{name}\"} 3\n")
        );
    }
}
