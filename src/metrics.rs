//! The service's own counters, kept in fixed tables of atomics indexed by enums (no lock on the
//! request path, and a number of series fixed whatever clients send). They are read two ways:
//! rendered for `/metrics` in the Prometheus text exposition format (version 0.0.4), and taken
//! as [`Totals`] whose differences over an interval the CloudWatch emitter (`emf`) reports.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::http::Stats;
pub use crate::route::Route;
use crate::store::{Room, StoreStats};

/// Upper bounds of the latency histogram, in seconds. The last ones cover `/health/cluster`'s
/// deadline and the request timeout, so that a slow percentile is not capped early.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Store operations whose failures are counted (those requests make; the health sampler's
/// checks are reported by `/health` instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOperation {
    Increment,
    Range,
}

impl StoreOperation {
    const ALL: [StoreOperation; 2] = [StoreOperation::Increment, StoreOperation::Range];

    pub fn label(self) -> &'static str {
        match self {
            StoreOperation::Increment => "increment",
            StoreOperation::Range => "range",
        }
    }
}

/// One counter per status from 100 to 599, and a last one for anything else, so that every
/// status the HTTP layer may ever write has its own series without a list to keep up to date.
const STATUS_SLOTS: usize = 501;

fn status_slot(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status - 100),
        _ => STATUS_SLOTS - 1,
    }
}

/// Gauges owned by the HTTP layer, read when rendering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionGauges {
    pub open: u64,
    pub refused: u64,
    /// Connections closed to make room for new clients at the cap.
    pub reclaimed: u64,
}

impl From<&Stats> for ConnectionGauges {
    fn from(stats: &Stats) -> ConnectionGauges {
        ConnectionGauges {
            open: stats.open.load(Ordering::Relaxed),
            refused: stats.refused.load(Ordering::Relaxed),
            reclaimed: stats.reclaimed.load(Ordering::Relaxed),
        }
    }
}

pub struct Metrics {
    started: Instant,
    requests: [[AtomicU64; STATUS_SLOTS]; Route::ALL.len()],
    latency: [Histogram; Route::ALL.len()],
    store_errors: [AtomicU64; StoreOperation::ALL.len()],
    store_unavailable: AtomicU64,
    store_outcome_unknown: AtomicU64,
    names_refused: AtomicU64,
    store_full: AtomicU64,
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
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: Default::default(),
            store_errors: Default::default(),
            store_unavailable: AtomicU64::new(0),
            store_outcome_unknown: AtomicU64::new(0),
            names_refused: AtomicU64::new(0),
            store_full: AtomicU64::new(0),
            increments: AtomicU64::new(0),
        }
    }

    /// Records one answered request.
    pub fn request(&self, route: Route, status: u16, elapsed: Duration) {
        self.requests[route as usize][status_slot(status)].fetch_add(1, Ordering::Relaxed);
        let h = &self.latency[route as usize];
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            h.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn store_error(&self, operation: StoreOperation) {
        self.store_errors[operation as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A request answered 503 `store_unavailable`: the signal operators page on, counted apart
    /// from the generic 5xx (which also holds `overloaded`, `upstream_error`…).
    pub fn store_unavailable(&self) {
        self.store_unavailable.fetch_add(1, Ordering::Relaxed);
    }

    /// A request answered 504 `store_outcome_unknown`: sent to the store, no reply in time.
    /// Apart from `store_unavailable` (nothing done) because each of these may or may not be
    /// in Redis's count: the number an operator reconciling counts needs.
    pub fn store_outcome_unknown(&self) {
        self.store_outcome_unknown.fetch_add(1, Ordering::Relaxed);
    }

    /// A greeting of a new name answered 507 `names_full`: the store takes no new names now.
    /// Someone is adding names faster than the store has room for, or the room is used up.
    pub fn names_refused(&self) {
        self.names_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A request answered 507 `store_full`: Redis is out of memory and refused a write,
    /// known names' included. Admission is meant to keep this at 0: when it is not, Redis is
    /// full for some other reason, and every greeting fails.
    pub fn store_full(&self) {
        self.store_full.fetch_add(1, Ordering::Relaxed);
    }

    pub fn increment_stored(&self) {
        self.increments.fetch_add(1, Ordering::Relaxed);
    }

    /// Everything counted so far, for reporting differences over an interval.
    pub fn totals(&self, connections: ConnectionGauges) -> Totals {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let routes = std::array::from_fn(|r| {
            let mut classes = [0; 5];
            for (slot, n) in self.requests[r].iter().enumerate().take(STATUS_SLOTS - 1) {
                classes[slot / 100] += load(n);
            }
            let h = &self.latency[r];
            RouteTotals {
                classes,
                latency: LatencyCounts {
                    buckets: h.buckets.each_ref().map(load),
                    count: load(&h.count),
                },
            }
        });
        Totals {
            routes,
            store_unavailable: load(&self.store_unavailable),
            store_outcome_unknown: load(&self.store_outcome_unknown),
            names_refused: load(&self.names_refused),
            store_full: load(&self.store_full),
            increments: load(&self.increments),
            connections,
        }
    }

    /// The exposition, with the HTTP layer's connection gauges and the store's room for new
    /// names and its own counters, as last known.
    pub fn render(&self, connections: ConnectionGauges, room: Room, store: StoreStats) -> String {
        let mut out = Exposition(String::with_capacity(8192));
        self.render_requests(&mut out);
        self.render_store(&mut out, room);
        render_redis(&mut out, store);
        render_connections(&mut out, connections);
        out.single(
            "hello_uptime_seconds",
            "gauge",
            "Seconds since the process started.",
            self.started.elapsed().as_secs_f64(),
        );
        out.0
    }

    /// Requests by route and status, and their latency histogram by route.
    fn render_requests(&self, out: &mut Exposition) {
        out.family(
            "hello_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
        );
        for (route, row) in Route::ALL.iter().zip(&self.requests) {
            for (slot, n) in row.iter().enumerate() {
                let n = load(n);
                if n == 0 {
                    continue;
                }
                let status = match slot {
                    s if s == STATUS_SLOTS - 1 => "other".to_owned(),
                    s => (s + 100).to_string(),
                };
                let labels = format!("route=\"{}\",status=\"{status}\"", route.label());
                out.sample("hello_http_requests_total", &labels, n);
            }
        }
        let name = "hello_http_request_duration_seconds";
        out.family(
            name,
            "histogram",
            "Time from a complete request to its response, by route.",
        );
        for (route, h) in Route::ALL.iter().zip(&self.latency) {
            let route = route.label();
            let count = load(&h.count);
            if count == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (n, bound) in h.buckets.iter().zip(BUCKETS) {
                cumulative += load(n);
                let labels = format!("route=\"{route}\",le=\"{bound}\"");
                out.sample(&format!("{name}_bucket"), &labels, cumulative);
            }
            let labels = format!("route=\"{route}\",le=\"+Inf\"");
            out.sample(&format!("{name}_bucket"), &labels, count);
            let labels = format!("route=\"{route}\"");
            let seconds = load(&h.sum_nanos) as f64 / 1e9;
            out.sample(&format!("{name}_sum"), &labels, seconds);
            out.sample(&format!("{name}_count"), &labels, count);
        }
    }

    /// What the store did for the requests, and its room for new names.
    fn render_store(&self, out: &mut Exposition, room: Room) {
        out.family(
            "hello_store_errors_total",
            "counter",
            "Store operations that failed, by operation.",
        );
        for (op, n) in StoreOperation::ALL.iter().zip(&self.store_errors) {
            let labels = format!("operation=\"{}\"", op.label());
            out.sample("hello_store_errors_total", &labels, load(n));
        }
        for (name, help, value) in [
            (
                "hello_store_unavailable_total",
                "Requests answered 503 store_unavailable: nothing was done.",
                &self.store_unavailable,
            ),
            (
                "hello_store_outcome_unknown_total",
                "Requests answered 504 store_outcome_unknown: sent to Redis, no reply in time.",
                &self.store_outcome_unknown,
            ),
            (
                "hello_store_names_refused_total",
                "Greetings of new names answered 507 names_full: the store takes no new names \
                 now (memory watermark or NAMES_MAX reached); nothing was counted.",
                &self.names_refused,
            ),
            (
                "hello_store_full_total",
                "Requests answered 507 store_full: Redis was out of memory (OOM) and refused \
                 the write; nothing was counted.",
                &self.store_full,
            ),
            (
                "hello_increments_total",
                "Increments the store confirmed.",
                &self.increments,
            ),
        ] {
            out.single(name, "counter", help, load(value));
        }
        out.single(
            "hello_store_admitting_new_names",
            "gauge",
            "1 while new names are counted, 0 while only names already in the store are.",
            u8::from(room.admitting),
        );
        // Only what is known: nothing before the first sample, and no memory for the
        // in-process store.
        for (name, help, value) in [
            (
                "hello_store_names",
                "Names in the store, as last known.",
                room.names,
            ),
            (
                "hello_redis_used_memory_bytes",
                "Redis's used_memory as last sampled (about once a second).",
                room.used_memory,
            ),
            (
                "hello_redis_maxmemory_bytes",
                "Redis's maxmemory as last sampled (0: no limit).",
                room.max_memory,
            ),
        ] {
            if let Some(value) = value {
                out.single(name, "gauge", help, value);
            }
        }
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// The store's connections to Redis and how its batches went, as it counts them.
fn render_redis(out: &mut Exposition, store: StoreStats) {
    let pool = store.pool;
    for (name, kind, help, value) in [
        (
            "hello_redis_connections_opened_total",
            "counter",
            "Connections to Redis opened (each a handshake and a login).",
            pool.opened,
        ),
        (
            "hello_redis_connection_reuses_total",
            "counter",
            "Commands sent on a connection taken idle from the pool, not opened for them.",
            pool.reused,
        ),
        (
            "hello_redis_connections_open",
            "gauge",
            "Connections to Redis open now, idle or in use (at most REDIS_MAX_CONNECTIONS \
             per server).",
            pool.open,
        ),
        (
            "hello_redis_pool_waits_total",
            "counter",
            "Callers that found REDIS_MAX_CONNECTIONS connections in use and waited for one.",
            pool.waited,
        ),
        (
            "hello_store_batches_total",
            "counter",
            "Batches of greetings sent to Redis, each one pipeline per primary: increments \
             over batches is how many greetings a pipeline carries.",
            store.batches,
        ),
        (
            "hello_redis_redirects_total",
            "counter",
            "Commands sent again where a cluster's -MOVED or -ASK said (they had not run).",
            store.redirects,
        ),
        (
            "hello_redis_topology_refreshes_total",
            "counter",
            "Readings of a Redis cluster's slot map (CLUSTER SHARDS).",
            store.topology_refreshes,
        ),
        (
            "hello_store_unreplicated_total",
            "counter",
            "Greetings counted but answered 504 because WAIT did not see them on \
             REDIS_WAIT_REPLICAS replicas in time.",
            store.unreplicated,
        ),
    ] {
        out.single(name, kind, help, value);
    }
    let name = "hello_redis_listings_left_total";
    out.family(
        name,
        "counter",
        "Listings left before their end with a reply on its way, by what became of their \
         connection: drained (the reply read and thrown away by its next user; kept) or \
         closed (the reply could not be read).",
    );
    for (outcome, n) in [("drained", pool.drained), ("closed", pool.abandoned)] {
        out.sample(name, &format!("outcome=\"{outcome}\""), n);
    }
}

/// The HTTP layer's client connections.
fn render_connections(out: &mut Exposition, connections: ConnectionGauges) {
    for (name, kind, help, value) in [
        (
            "hello_http_connections_open",
            "gauge",
            "Client connections currently open.",
            connections.open,
        ),
        (
            "hello_http_connections_refused_total",
            "counter",
            "Connections refused at the connection cap or for lack of descriptors.",
            connections.refused,
        ),
        (
            "hello_http_connections_reclaimed_total",
            "counter",
            "Connections closed to make room for new clients at the cap.",
            connections.reclaimed,
        ),
    ] {
        out.single(name, kind, help, value);
    }
}

/// Prometheus text exposition (version 0.0.4), written line by line.
struct Exposition(String);

impl Exposition {
    /// A metric family's `HELP` and `TYPE` lines, before its samples.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
    }

    /// A family of one sample without labels.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        let _ = writeln!(self.0, "{name} {value}");
    }
}

/// The counters at one instant; [`Totals::since`] turns two of them into one interval's worth.
#[derive(Clone, Debug, PartialEq)]
pub struct Totals {
    /// Indexed by `Route as usize`.
    pub routes: [RouteTotals; Route::ALL.len()],
    pub store_unavailable: u64,
    pub store_outcome_unknown: u64,
    pub names_refused: u64,
    pub store_full: u64,
    pub increments: u64,
    /// `open` is a gauge (its value now); `refused` a counter like the others.
    pub connections: ConnectionGauges,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteTotals {
    /// Requests by status class: `classes[0]` holds 1xx … `classes[4]` holds 5xx.
    pub classes: [u64; 5],
    pub latency: LatencyCounts,
}

/// A latency histogram's counts: per bucket of [`BUCKETS`] (not cumulative), and in all
/// (which also holds those above the last bound).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyCounts {
    pub buckets: [u64; BUCKETS.len()],
    pub count: u64,
}

impl Totals {
    /// What was counted after `earlier` up to `self`; the open-connection gauge is `self`'s.
    pub fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            routes: std::array::from_fn(|r| self.routes[r].since(&earlier.routes[r])),
            store_unavailable: self
                .store_unavailable
                .saturating_sub(earlier.store_unavailable),
            store_outcome_unknown: self
                .store_outcome_unknown
                .saturating_sub(earlier.store_outcome_unknown),
            names_refused: self.names_refused.saturating_sub(earlier.names_refused),
            store_full: self.store_full.saturating_sub(earlier.store_full),
            increments: self.increments.saturating_sub(earlier.increments),
            connections: ConnectionGauges {
                open: self.connections.open,
                refused: self
                    .connections
                    .refused
                    .saturating_sub(earlier.connections.refused),
                reclaimed: self
                    .connections
                    .reclaimed
                    .saturating_sub(earlier.connections.reclaimed),
            },
        }
    }

    pub fn route(&self, route: Route) -> &RouteTotals {
        &self.routes[route as usize]
    }
}

impl RouteTotals {
    fn since(&self, earlier: &RouteTotals) -> RouteTotals {
        RouteTotals {
            classes: std::array::from_fn(|i| self.classes[i].saturating_sub(earlier.classes[i])),
            latency: LatencyCounts {
                buckets: std::array::from_fn(|i| {
                    self.latency.buckets[i].saturating_sub(earlier.latency.buckets[i])
                }),
                count: self.latency.count.saturating_sub(earlier.latency.count),
            },
        }
    }
}

impl LatencyCounts {
    /// Estimates the `q` quantile (0 to 1) in seconds as Prometheus' `histogram_quantile` does:
    /// linearly within the bucket that holds the rank (from 0 in the first); above the last
    /// bound, that bound. `None` without requests. Its error is at most the bucket's width.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let (mut below, mut lower) = (0u64, 0.0);
        for (n, upper) in self.buckets.iter().zip(BUCKETS) {
            if *n > 0 && (below + n) as f64 >= rank {
                return Some(lower + (upper - lower) * (rank - below as f64) / *n as f64);
            }
            below += n;
            lower = upper;
        }
        Some(lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new();
        m.request(Route::Hello, 200, Duration::from_micros(300));
        m.request(Route::Hello, 200, Duration::from_millis(30));
        m.request(Route::Hello, 503, Duration::from_secs(20));
        m.request(Route::Other, 301, Duration::from_secs(1));
        m.request(Route::Other, 999, Duration::from_secs(1));
        let text = m.render(
            ConnectionGauges::default(),
            Room::default(),
            StoreStats::default(),
        );
        assert!(
            text.contains("hello_http_requests_total{route=\"/hello/{name}\",status=\"200\"} 2\n")
        );
        assert!(
            text.contains("hello_http_requests_total{route=\"/hello/{name}\",status=\"503\"} 1\n")
        );
        assert!(text.contains("hello_http_requests_total{route=\"other\",status=\"301\"} 1\n"));
        assert!(text.contains("hello_http_requests_total{route=\"other\",status=\"other\"} 1\n"));
        assert!(text.contains("route=\"/hello/{name}\",le=\"0.0005\"} 1\n"));
        assert!(text.contains("route=\"/hello/{name}\",le=\"0.05\"} 2\n"));
        assert!(text.contains("route=\"/hello/{name}\",le=\"10\"} 2\n"));
        assert!(text.contains("route=\"/hello/{name}\",le=\"+Inf\"} 3\n"));
        assert!(
            text.contains("hello_http_request_duration_seconds_count{route=\"/hello/{name}\"} 3\n")
        );
    }

    #[test]
    fn refusals_for_room_are_counted_apart_and_the_room_is_shown_when_known() {
        let m = Metrics::new();
        m.names_refused();
        m.names_refused();
        m.store_full();
        let unknown = m.render(
            ConnectionGauges::default(),
            Room::default(),
            StoreStats::default(),
        );
        assert!(unknown.contains("\nhello_store_names_refused_total 2\n"));
        assert!(unknown.contains("\nhello_store_full_total 1\n"));
        assert!(unknown.contains("\nhello_store_admitting_new_names 0\n"));
        assert!(!unknown.contains("hello_redis_used_memory_bytes"));
        assert!(!unknown.contains("hello_store_names "));
        let room = Room {
            used_memory: Some(1_043_232),
            max_memory: Some(16_777_216),
            names: Some(40),
            admitting: true,
        };
        let known = m.render(ConnectionGauges::default(), room, StoreStats::default());
        assert!(known.contains("\nhello_store_admitting_new_names 1\n"));
        assert!(known.contains("\nhello_redis_used_memory_bytes 1043232\n"));
        assert!(known.contains("\nhello_redis_maxmemory_bytes 16777216\n"));
        assert!(known.contains("\nhello_store_names 40\n"));
        let totals = m.totals(ConnectionGauges::default());
        assert_eq!((totals.names_refused, totals.store_full), (2, 1));
    }

    #[test]
    fn totals_count_status_classes_and_differences_over_an_interval() {
        let m = Metrics::new();
        let gauges = |open, refused| ConnectionGauges {
            open,
            refused,
            reclaimed: 0,
        };
        m.request(Route::Hello, 200, Duration::from_millis(1));
        m.store_unavailable();
        let before = m.totals(gauges(3, 1));
        m.request(Route::Hello, 200, Duration::from_millis(1));
        m.request(Route::Hello, 404, Duration::from_millis(1));
        m.request(Route::Hello, 503, Duration::from_millis(1));
        m.request(Route::Counts, 301, Duration::from_millis(1));
        // Outside 100–599: in the `other` series of /metrics, in no class.
        m.request(Route::Counts, 999, Duration::from_millis(1));
        m.increment_stored();
        let interval = m.totals(gauges(2, 4)).since(&before);
        assert_eq!(interval.route(Route::Hello).classes, [0, 1, 0, 1, 1]);
        assert_eq!(interval.route(Route::Hello).latency.count, 3);
        assert_eq!(interval.route(Route::Counts).classes, [0, 0, 1, 0, 0]);
        assert_eq!(interval.route(Route::Counts).latency.count, 2);
        assert_eq!(interval.route(Route::Root), &RouteTotals::default());
        assert_eq!(interval.store_unavailable, 0);
        assert_eq!(interval.increments, 1);
        assert_eq!(interval.connections, gauges(2, 3));
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_that_holds_the_rank() {
        let counts = |pairs: &[(usize, u64)], above: u64| {
            let mut c = LatencyCounts::default();
            for (bucket, n) in pairs {
                c.buckets[*bucket] = *n;
            }
            c.count = c.buckets.iter().sum::<u64>() + above;
            c
        };
        assert_eq!(LatencyCounts::default().quantile(0.5), None);
        // 100 requests in (0, 0.5 ms]: the median is estimated at 0.25 ms.
        let fast = counts(&[(0, 100)], 0);
        assert!((fast.quantile(0.5).unwrap() - 0.00025).abs() < 1e-12);
        // 98 fast ones and 2 in (100 ms, 250 ms]: p99 is halfway into the slow bucket.
        let tail = counts(&[(0, 98), (8, 2)], 0);
        assert!((tail.quantile(0.99).unwrap() - 0.175).abs() < 1e-9);
        assert!(tail.quantile(0.5).unwrap() <= 0.0005);
        // Above the last bound, the estimate stays at that bound.
        let beyond = counts(&[(0, 1)], 9);
        assert_eq!(beyond.quantile(0.99), Some(10.0));
    }
}
