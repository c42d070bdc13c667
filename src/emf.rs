//! The service's own numbers in CloudWatch without an agent or an SDK: every interval, one line
//! on standard output in CloudWatch's embedded metric format (EMF), which the ECS `awslogs`
//! driver ships to CloudWatch Logs and CloudWatch Logs turns into metrics. [`document`] is a
//! pure function of one interval's [`Totals`]; [`Emitter`] is the thread that prints it.
//!
//! A line holds one metric directive with no dimensions (the namespace names the stack), so that
//! one line carries every route: per route `<Route>2xx` … `<Route>5xx` and
//! `<Route>LatencyP50`/`P99`, and the service-wide numbers below.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::metrics::{Route, Totals};
use crate::settings::{flag, invalid, number, value, variables, ConfigError};
use crate::sync;

variables! {
    METRICS_EMF = "true on ECS, else false",
        "true: one CloudWatch embedded-metric-format line per interval on stdout (on ECS: \
              when ECS_CONTAINER_METADATA_URI_V4 is set)";
    METRICS_EMF_NAMESPACE = "hello",
        "CloudWatch namespace of those metrics";
    METRICS_EMF_INTERVAL_MS = "60000",
        "time between two lines";
}

/// What `METRICS_EMF_NAMESPACE` and `METRICS_EMF_INTERVAL_MS` chose, when `METRICS_EMF` is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub namespace: String,
    pub interval: Duration,
}

impl Settings {
    /// `None` unless the lines are wanted. On by default only on ECS, where the `awslogs` driver
    /// ships standard output to CloudWatch; elsewhere nothing would turn the lines into metrics.
    /// The other two variables are checked even when it is off, so that a mistake shows before
    /// it matters. `get` returns a variable's value when it is set and not blank.
    pub fn from_env(
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, ConfigError> {
        let on_ecs = get("ECS_CONTAINER_METADATA_URI_V4").is_some();
        let enabled = flag(get, METRICS_EMF.name)?.unwrap_or(on_ecs);
        let namespace = value(get, &METRICS_EMF_NAMESPACE).trim().to_owned();
        // CloudWatch's rules for a namespace: 1 to 255 of these characters, and `AWS/` is
        // reserved.
        let valid = namespace.len() <= 255
            && !namespace.starts_with("AWS/")
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._#:/-".contains(&b));
        if !valid {
            return Err(invalid(
                METRICS_EMF_NAMESPACE.name,
                "up to 255 letters, digits and . _ # : / -, not starting with AWS/",
            ));
        }
        let interval = number(get, &METRICS_EMF_INTERVAL_MS, 100, 3_600_000)?;
        Ok(enabled.then(|| Settings {
            namespace,
            interval: Duration::from_millis(interval),
        }))
    }
}

/// Service-wide metrics, in every line (zeros included, so that alarms see 0 rather than no
/// data while tasks run).
const SERVICE: [&str; 8] = [
    "Requests",
    "StoreUnavailable",
    "StoreOutcomeUnknown",
    "NamesRefused",
    "StoreFull",
    "Increments",
    "ConnectionsOpen",
    "ConnectionsRefused",
];

/// Status classes reported per route (the server never answers with a 1xx status).
const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Latency percentiles reported per route, with the quantile each estimates.
const PERCENTILES: [(&str, f64); 2] = [("LatencyP50", 0.5), ("LatencyP99", 0.99)];

// The EMF specification allows at most 100 metrics in one directive.
const _: () =
    assert!(SERVICE.len() + Route::ALL.len() * (CLASSES.len() + PERCENTILES.len()) <= 100);

/// Every metric name a line may carry, for the deployment's dashboard and alarms to be checked
/// against.
pub fn metric_names() -> Vec<String> {
    let per_route = CLASSES
        .iter()
        .copied()
        .chain(PERCENTILES.iter().map(|(name, _)| *name));
    let routes = Route::ALL.iter().flat_map(|route| {
        per_route
            .clone()
            .map(move |suffix| format!("{}{suffix}", route.metric_name()))
    });
    SERVICE
        .iter()
        .map(|s| s.to_string())
        .chain(routes)
        .collect()
}

/// The EMF document for one interval ending at `timestamp_ms` (milliseconds since the Unix
/// epoch). Routes without requests in the interval are left out: a metric costs only in the
/// hours it is sent, and an idle route has no latency to report.
pub fn document(namespace: &str, timestamp_ms: u64, interval: &Totals) -> String {
    let mut members = Map::new();
    let mut definitions = Vec::new();
    let mut put = |name: String, unit: &str, value: Value| {
        definitions.push(json!({"Name": name, "Unit": unit}));
        members.insert(name, value);
    };
    let requests: u64 = interval.routes.iter().map(|r| r.latency.count).sum();
    let service = [
        requests,
        interval.store_unavailable,
        interval.store_outcome_unknown,
        interval.names_refused,
        interval.store_full,
        interval.increments,
        interval.connections.open,
        interval.connections.refused,
    ];
    for (name, value) in SERVICE.iter().zip(service) {
        put(name.to_string(), "Count", value.into());
    }
    for route in Route::ALL {
        let totals = interval.route(route);
        if totals.latency.count == 0 {
            continue;
        }
        let prefix = route.metric_name();
        for (class, n) in CLASSES.iter().zip(&totals.classes[1..]) {
            put(format!("{prefix}{class}"), "Count", (*n).into());
        }
        for (name, q) in PERCENTILES {
            if let Some(seconds) = totals.latency.quantile(q) {
                // Microsecond precision is all the histogram has, and keeps the line short.
                let millis = (seconds * 1e6).round() / 1e3;
                put(format!("{prefix}{name}"), "Milliseconds", millis.into());
            }
        }
    }
    members.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[]],
                "Metrics": definitions,
            }],
        }),
    );
    Value::Object(members).to_string()
}

/// The thread that prints one line per interval, and a last one for the partial interval when
/// stopped (so that a task's final requests, drained after SIGTERM, are not lost).
pub struct Emitter {
    stop: Arc<StopSignal>,
    thread: thread::JoinHandle<()>,
}

#[derive(Default)]
struct StopSignal {
    requested: Mutex<bool>,
    changed: Condvar,
}

impl StopSignal {
    /// Waits until `deadline` or a stop request, whichever comes first; true for the latter.
    fn wait_until(&self, deadline: Instant) -> bool {
        let mut requested = sync::lock(&self.requested);
        loop {
            let now = Instant::now();
            if *requested || now >= deadline {
                return *requested;
            }
            requested = sync::wait_timeout(&self.changed, requested, deadline - now).0;
        }
    }
}

impl Emitter {
    /// Starts printing; `sample` reads the counters, now and at the end of every interval.
    pub fn start<F>(settings: Settings, mut sample: F) -> std::io::Result<Emitter>
    where
        F: FnMut() -> Totals + Send + 'static,
    {
        log::info!(
            "CloudWatch metrics: one embedded-metric-format line every {} ms on stdout, namespace {:?}",
            settings.interval.as_millis(),
            settings.namespace
        );
        let stop = Arc::new(StopSignal::default());
        let stopped = Arc::clone(&stop);
        // The first interval starts now, before the server answers anything: sampled in the
        // thread, it would start whenever the thread first runs, and miss what came before.
        let mut last = sample();
        let thread = thread::Builder::new().name("emf".into()).spawn(move || {
            let Settings {
                namespace,
                interval,
            } = settings;
            let mut next = Instant::now() + interval;
            let mut failed = false;
            loop {
                let stopping = stopped.wait_until(next);
                let now = sample();
                let mut line = document(&namespace, unix_millis(), &now.since(&last));
                line.push('\n');
                let written = std::io::stdout().lock().write_all(line.as_bytes());
                if let (Err(e), false) = (written, failed) {
                    log::warn!("cannot write metrics to standard output: {e}");
                    failed = true;
                }
                if stopping {
                    return;
                }
                last = now;
                // Ticks missed while the process was stopped are skipped, not caught up.
                next = (next + interval).max(Instant::now());
            }
        })?;
        Ok(Emitter { stop, thread })
    }

    /// Prints the last, partial interval and waits until it is written.
    pub fn stop(self) {
        *sync::lock(&self.stop.requested) = true;
        self.stop.changed.notify_all();
        let _ = self.thread.join();
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ConnectionGauges, Metrics};
    use std::collections::BTreeSet;

    /// Units the specification's schema accepts (CloudWatch's `MetricDatum` units).
    const UNITS: [&str; 27] = [
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];

    /// Checks `line` against the EMF specification's rules and returns its metrics by name.
    /// The specification's objects take no members beyond those it defines; the root takes any.
    fn check(line: &str) -> Map<String, Value> {
        assert!(!line.contains('\n'), "one line: {line}");
        let root: Map<String, Value> = serde_json::from_str(line).expect("a JSON object");
        let aws = root["_aws"].as_object().expect("_aws is an object");
        assert_eq!(
            aws.keys().collect::<BTreeSet<_>>(),
            BTreeSet::from([&"CloudWatchMetrics".to_owned(), &"Timestamp".to_owned()])
        );
        assert!(aws["Timestamp"].is_u64(), "Timestamp: integer milliseconds");
        let directives = aws["CloudWatchMetrics"].as_array().expect("an array");
        assert!(!directives.is_empty());
        let mut metrics = Map::new();
        for directive in directives {
            let directive = directive.as_object().expect("a MetricDirective object");
            assert_eq!(directive.len(), 3, "Namespace, Dimensions, Metrics only");
            let namespace = directive["Namespace"].as_str().expect("a string");
            assert!((1..=255).contains(&namespace.len()));
            let sets = directive["Dimensions"].as_array().expect("DimensionSets");
            assert!(!sets.is_empty());
            for set in sets {
                let keys = set.as_array().expect("a DimensionSet is an array");
                assert!(keys.len() <= 30);
                for key in keys {
                    let key = key.as_str().expect("a dimension key");
                    assert!(root[key].is_string(), "dimension {key} is a string member");
                }
            }
            let definitions = directive["Metrics"].as_array().expect("MetricDefinitions");
            assert!(definitions.len() <= 100);
            for definition in definitions {
                let definition = definition.as_object().expect("a MetricDefinition");
                assert!(definition
                    .keys()
                    .all(|k| ["Name", "Unit", "StorageResolution"].contains(&k.as_str())));
                let name = definition["Name"].as_str().expect("a metric name");
                if let Some(unit) = definition.get("Unit") {
                    assert!(UNITS.contains(&unit.as_str().expect("a unit")), "{unit}");
                }
                let value = &root[name];
                let numeric = value.is_number()
                    || value
                        .as_array()
                        .is_some_and(|a| a.len() <= 100 && a.iter().all(Value::is_number));
                assert!(numeric, "metric {name} is a numeric member: {value}");
                metrics.insert(name.to_owned(), value.clone());
            }
        }
        metrics
    }

    fn busy_interval() -> Totals {
        let m = Metrics::new();
        let gauges = ConnectionGauges {
            open: 4,
            refused: 0,
            reclaimed: 0,
        };
        let before = m.totals(gauges);
        for route in Route::ALL {
            m.request(route, 200, Duration::from_micros(200));
        }
        m.request(Route::Hello, 503, Duration::from_millis(2));
        m.store_unavailable();
        m.store_outcome_unknown();
        m.store_outcome_unknown();
        m.names_refused();
        m.store_full();
        m.store_full();
        m.increment_stored();
        m.request(Route::Other, 404, Duration::from_micros(100));
        m.totals(gauges).since(&before)
    }

    #[test]
    fn a_busy_interval_names_every_metric_and_meets_the_specification() {
        let line = document("hello", 1_764_000_000_123, &busy_interval());
        let metrics = check(&line);
        let root: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(root["_aws"]["Timestamp"], 1_764_000_000_123u64);
        let directive = &root["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "hello");
        assert_eq!(directive["Dimensions"], json!([[]]));
        let names: BTreeSet<String> = metrics.keys().cloned().collect();
        assert_eq!(names, metric_names().into_iter().collect());
        assert_eq!(metrics["Requests"], 9);
        assert_eq!(metrics["Hello2xx"], 1);
        assert_eq!(metrics["Hello5xx"], 1);
        assert_eq!(metrics["Other4xx"], 1);
        assert_eq!(metrics["Other2xx"], 1);
        assert_eq!(metrics["HealthCluster2xx"], 1);
        assert_eq!(metrics["StoreUnavailable"], 1);
        assert_eq!(metrics["StoreOutcomeUnknown"], 2);
        assert_eq!(metrics["NamesRefused"], 1);
        assert_eq!(metrics["StoreFull"], 2);
        assert_eq!(metrics["Increments"], 1);
        assert_eq!(metrics["ConnectionsOpen"], 4);
        // 1 request ≤ 0.5 ms and 1 in (1 ms, 2.5 ms]: the median is the top of the first.
        assert_eq!(metrics["HelloLatencyP50"], 0.5);
        let p99 = metrics["HelloLatencyP99"].as_f64().unwrap();
        assert!((1.0..=2.5).contains(&p99), "{p99}");
        let units = &directive["Metrics"];
        assert!(units.as_array().unwrap().iter().all(|d| d["Unit"]
            == if d["Name"].as_str().unwrap().contains("Latency") {
                "Milliseconds"
            } else {
                "Count"
            }));
    }

    #[test]
    fn an_idle_interval_reports_the_service_numbers_as_zeros() {
        let m = Metrics::new();
        let idle = m.totals(ConnectionGauges::default());
        let line = document("hello-staging", 1, &idle.since(&idle));
        let metrics = check(&line);
        assert_eq!(
            metrics.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            BTreeSet::from(SERVICE)
        );
        assert!(metrics.values().all(|v| v == 0));
    }

    #[test]
    fn metric_names_are_unique_and_fit_one_directive() {
        let names = metric_names();
        assert_eq!(names.len(), names.iter().collect::<BTreeSet<_>>().len());
        assert!(names.len() <= 100);
        assert!(names
            .iter()
            .all(|n| n.bytes().all(|b| b.is_ascii_alphanumeric())));
    }
}
