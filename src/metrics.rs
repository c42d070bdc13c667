//! Counters for `/metrics`, kept in fixed tables of atomics (no lock on the request path), and
//! rendered in the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Route labels, in the order of the tables below; `other` is everything unrouted.
pub const ROUTES: [&str; 7] = [
    "/",
    "/hello/{name}",
    "/counts",
    "/health",
    "/health/cluster",
    "/metrics",
    "other",
];

/// Statuses the service answers with; any other is counted as the last.
const STATUSES: [u16; 15] = [
    200, 400, 404, 405, 408, 413, 414, 431, 500, 501, 502, 503, 505, 0, 0,
];

/// Store operations whose failures are counted (those requests make; the health sampler's
/// pings are reported by `/health` instead).
pub const OPERATIONS: [&str; 2] = ["increment", "range"];

/// Gauges owned by the HTTP layer, read when rendering.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectionGauges {
    pub open: u64,
    pub refused: u64,
}

pub struct Metrics {
    started: Instant,
    requests: [[AtomicU64; STATUSES.len()]; ROUTES.len()],
    latency: [Histogram; ROUTES.len()],
    store_errors: [AtomicU64; OPERATIONS.len()],
    increments: AtomicU64,
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
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
            requests: Default::default(),
            latency: Default::default(),
            store_errors: Default::default(),
            increments: AtomicU64::new(0),
        }
    }

    /// Records one answered request. `route` is an index into [`ROUTES`], so the number of
    /// series stays fixed whatever clients send.
    pub fn request(&self, route: usize, status: u16, elapsed: Duration) {
        let route = route.min(ROUTES.len() - 1);
        let status = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len() - 1);
        self.requests[route][status].fetch_add(1, Ordering::Relaxed);
        let h = &self.latency[route];
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            h.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn store_error(&self, operation: &'static str) {
        if let Some(i) = OPERATIONS.iter().position(|o| *o == operation) {
            self.store_errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn increment_stored(&self) {
        self.increments.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, connections: ConnectionGauges) -> String {
        let mut out = String::with_capacity(8192);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        header(
            &mut out,
            "hello_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
        );
        for (route, row) in ROUTES.iter().zip(&self.requests) {
            for (i, n) in row.iter().enumerate() {
                let n = load(n);
                if n == 0 {
                    continue;
                }
                let status = if i == STATUSES.len() - 1 {
                    "other".to_owned()
                } else {
                    STATUSES[i].to_string()
                };
                let _ = writeln!(
                    out,
                    "hello_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        header(
            &mut out,
            "hello_http_request_duration_seconds",
            "histogram",
            "Time from a complete request to its response, by route.",
        );
        for (route, h) in ROUTES.iter().zip(&self.latency) {
            let count = load(&h.count);
            if count == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (n, bound) in h.buckets.iter().zip(BUCKETS) {
                cumulative += load(n);
                let _ = writeln!(
                    out,
                    "hello_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "hello_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "hello_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                load(&h.sum_nanos) as f64 / 1e9
            );
            let _ = writeln!(
                out,
                "hello_http_request_duration_seconds_count{{route=\"{route}\"}} {count}"
            );
        }
        header(
            &mut out,
            "hello_store_errors_total",
            "counter",
            "Store operations that failed, by operation.",
        );
        for (op, n) in OPERATIONS.iter().zip(&self.store_errors) {
            let _ = writeln!(
                out,
                "hello_store_errors_total{{operation=\"{op}\"}} {}",
                load(n)
            );
        }
        header(
            &mut out,
            "hello_increments_total",
            "counter",
            "Increments the store confirmed.",
        );
        let _ = writeln!(out, "hello_increments_total {}", load(&self.increments));
        header(
            &mut out,
            "hello_http_connections_open",
            "gauge",
            "Client connections currently open.",
        );
        let _ = writeln!(out, "hello_http_connections_open {}", connections.open);
        header(
            &mut out,
            "hello_http_connections_refused_total",
            "counter",
            "Connections refused at the connection cap or for lack of descriptors.",
        );
        let _ = writeln!(
            out,
            "hello_http_connections_refused_total {}",
            connections.refused
        );
        header(
            &mut out,
            "hello_uptime_seconds",
            "gauge",
            "Seconds since the process started.",
        );
        let _ = writeln!(
            out,
            "hello_uptime_seconds {}",
            self.started.elapsed().as_secs_f64()
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new();
        m.request(1, 200, Duration::from_micros(300));
        m.request(1, 200, Duration::from_millis(30));
        m.request(1, 503, Duration::from_secs(10));
        m.request(6, 299, Duration::from_secs(1));
        let text = m.render(ConnectionGauges::default());
        assert!(
            text.contains("hello_http_requests_total{route=\"/hello/{name}\",status=\"200\"} 2\n")
        );
        assert!(
            text.contains("hello_http_requests_total{route=\"/hello/{name}\",status=\"503\"} 1\n")
        );
        assert!(text.contains("hello_http_requests_total{route=\"other\",status=\"other\"} 1\n"));
        assert!(text.contains("route=\"/hello/{name}\",le=\"0.0005\"} 1\n"));
        assert!(text.contains("route=\"/hello/{name}\",le=\"0.05\"} 2\n"));
        assert!(text.contains("route=\"/hello/{name}\",le=\"2.5\"} 2\n"));
        assert!(text.contains("route=\"/hello/{name}\",le=\"+Inf\"} 3\n"));
        assert!(
            text.contains("hello_http_request_duration_seconds_count{route=\"/hello/{name}\"} 3\n")
        );
    }
}
