//! `/metrics` is valid Prometheus text, checked with the reference Python parser
//! (`prometheus_client`, installed in `.venv` by the test command).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use std::time::Duration;

use common::{wait_until, Redis, Service};

const PARSE: &str = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.setdefault(s.name, []).append([s.labels, s.value])
print(json.dumps(out))
"#;

fn parse(text: &str) -> serde_json::Value {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let mut child = Command::new(&python)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{} missing ({e}): run the README's test command, which creates it",
                python.display()
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample(parsed: &serde_json::Value, name: &str, labels: serde_json::Value) -> f64 {
    parsed[name]
        .as_array()
        .unwrap_or_else(|| panic!("no {name}"))
        .iter()
        .find(|s| s[0] == labels)
        .unwrap_or_else(|| panic!("no {name} {labels}"))[1]
        .as_f64()
        .unwrap()
}

#[test]
fn metrics_parse_and_count_requests_latency_and_store_errors() {
    let mut redis = Redis::start();
    let s = Service::with_redis(&redis);
    for _ in 0..3 {
        assert_eq!(s.get("/hello/Metric").status, 200);
    }
    s.get("/nope");
    redis.kill();
    assert_eq!(s.get("/hello/Down").status, 503);

    // An exchange is recorded just after its response is written: wait until the last ones are.
    let recorded = [
        "hello_http_requests_total{route=\"/hello/{name}\",status=\"503\"} 1",
        "hello_http_requests_total{route=\"other\",status=\"404\"} 1",
    ];
    wait_until(
        "the 503 and the 404 in /metrics",
        Duration::from_secs(5),
        || {
            let text = s.get("/metrics").text();
            recorded.iter().all(|line| text.contains(line))
        },
    );
    let r = s.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let m = parse(&r.text());
    let hello = serde_json::json!({"route": "/hello/{name}", "status": "200"});
    assert_eq!(sample(&m, "hello_http_requests_total", hello), 3.0);
    let down = serde_json::json!({"route": "/hello/{name}", "status": "503"});
    assert_eq!(sample(&m, "hello_http_requests_total", down), 1.0);
    let other = serde_json::json!({"route": "other", "status": "404"});
    assert_eq!(sample(&m, "hello_http_requests_total", other), 1.0);
    let count = serde_json::json!({"route": "/hello/{name}"});
    assert_eq!(
        sample(&m, "hello_http_request_duration_seconds_count", count),
        4.0
    );
    let inf = serde_json::json!({"route": "/hello/{name}", "le": "+Inf"});
    assert_eq!(
        sample(&m, "hello_http_request_duration_seconds_bucket", inf),
        4.0
    );
    let increment = serde_json::json!({"operation": "increment"});
    assert_eq!(sample(&m, "hello_store_errors_total", increment), 1.0);
    assert_eq!(
        sample(&m, "hello_store_unavailable_total", serde_json::json!({})),
        1.0
    );
    assert_eq!(
        sample(&m, "hello_increments_total", serde_json::json!({})),
        3.0
    );
    assert!(sample(&m, "hello_uptime_seconds", serde_json::json!({})) > 0.0);
    assert!(sample(&m, "hello_http_connections_open", serde_json::json!({})) >= 1.0);
}
