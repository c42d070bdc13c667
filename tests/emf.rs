//! The real binary's CloudWatch embedded-metric-format lines: on standard output, one per
//! interval, each a valid EMF document, and together counting exactly what was answered over
//! real HTTP; a last line for the partial interval at SIGTERM; off by default, on under ECS.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use common::{wait_until, Redis, Service, Signal};

/// The complete lines printed so far, parsed.
fn lines(service: &Service) -> Vec<Value> {
    let out = service.stdout();
    let complete = out.rsplit_once('\n').map_or("", |(lines, _)| lines);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Checks one line's shape as CloudWatch reads it and returns its metrics by name.
fn metrics(line: &Value, namespace: &str) -> BTreeMap<String, f64> {
    let aws = &line["_aws"];
    let timestamp = aws["Timestamp"]
        .as_u64()
        .expect("Timestamp in milliseconds");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(timestamp <= now && now - timestamp < 600_000, "{timestamp}");
    let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
    assert_eq!(directives.len(), 1);
    assert_eq!(directives[0]["Namespace"], namespace);
    assert_eq!(directives[0]["Dimensions"], serde_json::json!([[]]));
    let definitions = directives[0]["Metrics"].as_array().expect("definitions");
    assert!(!definitions.is_empty() && definitions.len() <= 100);
    definitions
        .iter()
        .map(|d| {
            let name = d["Name"].as_str().expect("a name").to_owned();
            let value = line[name.as_str()]
                .as_f64()
                .unwrap_or_else(|| panic!("{name} is not a numeric member of {line}"));
            (name, value)
        })
        .collect()
}

fn sums(lines: &[Value], namespace: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for line in lines {
        for (name, value) in metrics(line, namespace) {
            *sums.entry(name).or_insert(0.0) += value;
        }
    }
    sums
}

#[test]
fn lines_on_stdout_count_what_was_answered() {
    let mut redis = Redis::start();
    let s = Service::on_redis(
        &redis,
        &[
            ("METRICS_EMF", "true"),
            ("METRICS_EMF_NAMESPACE", "hello-test"),
            ("METRICS_EMF_INTERVAL_MS", "200"),
        ],
    );
    for _ in 0..3 {
        assert_eq!(s.get("/hello/Emf").status, 200);
    }
    assert_eq!(s.get("/nope").status, 404);
    redis.kill();
    s.get("/hello/Down").assert_error(503, "store_unavailable");

    let expected = [
        ("Hello2xx", 3.0),
        ("Hello5xx", 1.0),
        ("Other4xx", 1.0),
        ("StoreUnavailable", 1.0),
        ("Increments", 3.0),
    ];
    wait_until(
        "the requests in the metric lines",
        Duration::from_secs(10),
        || {
            let sums = sums(&lines(&s), "hello-test");
            expected.iter().all(|(name, n)| sums.get(*name) == Some(n))
        },
    );
    let lines = lines(&s);
    let sums = sums(&lines, "hello-test");
    println!("{} lines; sums {sums:?}", lines.len());
    assert_eq!(sums["Requests"], 5.0);
    assert_eq!(sums["Hello4xx"], 0.0);
    assert!(sums["HelloLatencyP99"] > 0.0);
    // Every line carries the service-wide numbers; a route only while it has requests.
    for line in &lines {
        let m = metrics(line, "hello-test");
        assert!(m.contains_key("StoreUnavailable") && m.contains_key("ConnectionsOpen"));
        // The two the alarms on a full store read, zeros included.
        assert_eq!((m["NamesRefused"], m["StoreFull"]), (0.0, 0.0));
        assert_eq!(
            m.contains_key("HelloLatencyP50"),
            m.contains_key("Hello2xx")
        );
    }
    assert!(!s.logs().contains("_aws"), "metric lines go to stdout only");
}

#[test]
fn sigterm_prints_the_last_partial_interval() {
    let mut s = Service::start(&[
        ("METRICS_EMF", "true"),
        ("METRICS_EMF_INTERVAL_MS", "3600000"),
    ]);
    assert_eq!(s.get("/hello/Last").status, 200);
    assert_eq!(s.get("/counts").status, 200);
    s.signal(Signal::TERM);
    let status = s.wait(Duration::from_secs(15)).expect("exit after SIGTERM");
    assert!(status.success());
    let lines = lines(&s);
    assert_eq!(lines.len(), 1, "{}", s.stdout());
    let m = metrics(&lines[0], "hello");
    assert_eq!(m["Hello2xx"], 1.0);
    assert_eq!(m["Counts2xx"], 1.0);
    assert_eq!(m["Increments"], 1.0);
    assert!(!m.contains_key("Health2xx"));
}

#[test]
fn off_by_default_and_on_under_ecs() {
    for (env, printed) in [
        (vec![], false),
        (
            vec![(
                "ECS_CONTAINER_METADATA_URI_V4",
                "http://169.254.170.2/v4/test",
            )],
            true,
        ),
        (
            vec![
                (
                    "ECS_CONTAINER_METADATA_URI_V4",
                    "http://169.254.170.2/v4/test",
                ),
                ("METRICS_EMF", "false"),
            ],
            false,
        ),
    ] {
        let mut s = Service::start(&env);
        assert_eq!(s.get("/").status, 200);
        s.signal(Signal::TERM);
        assert!(s.wait(Duration::from_secs(15)).expect("exit").success());
        assert_eq!(lines(&s).len(), usize::from(printed), "{env:?}");
    }
}
