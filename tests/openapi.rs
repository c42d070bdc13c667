//! `docs/openapi.yaml` is true: it lists exactly the routes the router serves; schemathesis,
//! generating requests from it against a live server with a real Redis, finds no 5xx and no
//! response that breaks the schema; and every answer the other suites saw (route, method,
//! status) is one the spec lists, with its standard reason phrase, and the other way round
//! (`observed_answers_and_the_spec_agree`, which scripts/test.sh runs after them).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::aws::venv_bin;
use common::{observed, Redis, Service};
use hello::http::path;
use hello::metrics::Route;
use serde_json::Value;

fn spec_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.yaml")
}

#[test]
fn the_description_lists_exactly_the_served_routes() {
    let text = std::fs::read_to_string(spec_path()).unwrap();
    let documented: BTreeSet<&str> = text
        .lines()
        .skip_while(|l| *l != "paths:")
        .take_while(|l| *l != "components:")
        .filter(|l| l.starts_with("  /") && l.ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':'))
        .collect();
    let served: BTreeSet<&str> = Route::ALL
        .iter()
        .filter(|r| **r != Route::Other)
        .map(|r| r.label())
        .collect();
    assert_eq!(documented, served);
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let redis = Redis::start();
    let service = Service::with_redis(&redis);
    let out = Command::new(venv_bin("schemathesis"))
        .arg("run")
        .arg(spec_path())
        .args(["--url", &format!("http://{}", service.addr)])
        .args([
            "--checks",
            "all",
            "--max-examples",
            "40",
            "--generation-database",
            "none",
        ])
        // The service accepts more than a schema can say (names of up to 256 bytes, unknown
        // query parameters), so "invalid" requests that it answers are not failures.
        .args(["--exclude-checks", "negative_data_rejection"])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("run .venv/bin/schemathesis: the README's test command installs it");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("generated") || l.contains("passed") || l.contains("fail"))
        .collect();
    println!("schemathesis: {}", summary.join(" | "));
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The spec as JSON, read by the test peers' Python (PyYAML comes with schemathesis).
fn spec() -> Value {
    let out = Command::new(venv_bin("python"))
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(spec_path())
        .output()
        .expect("run .venv/bin/python: the README's test command makes it");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the spec as JSON")
}

/// RFC 9110 §15's reason phrases, written out here apart from the service's own table.
fn standard_reason(status: u16) -> Option<&'static str> {
    Some(match status {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => return None,
    })
}

/// Where an answer belongs in the spec: `(place, status)`, a place being `METHOD template`
/// for an operation or a path's other methods, or one of `x-outside-paths`' keys. An answer its
/// route does not list, with the code of one of the HTTP layer's refusals, is that refusal.
fn place(
    spec: &Value,
    listed: &BTreeSet<(String, u16)>,
    method: &str,
    target: &str,
    status: u16,
    code: &str,
) -> String {
    let routed = routed_place(spec, method, target);
    let refused = &spec["x-outside-paths"]["refused"][status.to_string()];
    if !listed.contains(&(routed.clone(), status)) && refused["code"].as_str() == Some(code) {
        return "refused".to_owned();
    }
    routed
}

/// The place of a request by its method and target alone.
fn routed_place(spec: &Value, method: &str, target: &str) -> String {
    if target == "*" {
        return "asterisk".to_owned();
    }
    // Absolute form: the path starts after the authority.
    let target = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let raw = target.split('?').next().unwrap_or(target);
    let clean = path::clean(raw);
    let route = Route::resolve(&clean).0;
    if route == Route::Other {
        return "unrouted".to_owned();
    }
    let template = route.label();
    let method = method.to_ascii_lowercase();
    if spec["paths"][template].get(&method).is_some() {
        format!("{method} {template}")
    } else {
        format!("x-other-methods {template}")
    }
}

/// Every (place, status) the spec lists.
fn listed(spec: &Value) -> BTreeSet<(String, u16)> {
    let statuses = |responses: &Value| -> Vec<u16> {
        responses
            .as_object()
            .map(|m| m.keys().filter_map(|k| k.parse().ok()).collect())
            .unwrap_or_default()
    };
    let mut listed = BTreeSet::new();
    for (template, item) in spec["paths"].as_object().expect("paths") {
        for (key, operation) in item.as_object().expect("a path item") {
            let (place, responses) = match key.as_str() {
                "parameters" => continue,
                "x-other-methods" => (format!("x-other-methods {template}"), operation),
                method => (format!("{method} {template}"), &operation["responses"]),
            };
            for status in statuses(responses) {
                listed.insert((place.clone(), status));
            }
        }
    }
    for (place, responses) in spec["x-outside-paths"]
        .as_object()
        .expect("x-outside-paths")
    {
        for status in statuses(responses) {
            listed.insert((place.clone(), status));
        }
    }
    listed
}

/// Holds what tests/common/client.rs noted down against the spec: every answer seen is listed
/// there, with the reason phrase RFC 9110 gives its status, and everything listed was seen.
/// Run by scripts/test.sh after every other suite (it reads their notes), and so ignored in a
/// plain `cargo test`, where it would run beside them.
#[test]
#[ignore = "reads what the other suites saw: scripts/test.sh runs it after them"]
fn observed_answers_and_the_spec_agree() {
    let spec = spec();
    let listed = listed(&spec);
    let mut seen: BTreeMap<(String, u16), String> = BTreeMap::new();
    let mut problems = Vec::new();
    let notes = std::fs::read_dir(observed::folder())
        .expect("no notes: run the other suites first (scripts/test.sh does)");
    for note in notes {
        let text = std::fs::read_to_string(note.expect("a note").path()).expect("a note");
        for line in text.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            let [method, target, status_line, code] = fields[..] else {
                panic!("a note line of four fields: {line:?}");
            };
            let mut parts = status_line.splitn(3, ' ');
            let (_, status, reason) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
            let status: u16 = status.and_then(|s| s.parse().ok()).expect("a status");
            if standard_reason(status) != Some(reason) {
                problems.push(format!(
                    "{status_line:?} (to {method} {target}): not the standard reason phrase"
                ));
            }
            let place = place(&spec, &listed, method, target, status, code);
            if !listed.contains(&(place.clone(), status)) {
                problems.push(format!(
                    "{method} {target} → {status} {code}: not in the spec under {place}"
                ));
            }
            seen.entry((place, status))
                .or_insert_with(|| format!("{method} {target}"));
        }
    }
    assert!(
        seen.len() > 20,
        "too few answers noted ({}): did the suites run?",
        seen.len()
    );
    for (place, status) in &listed {
        if !seen.contains_key(&(place.clone(), *status)) {
            problems.push(format!(
                "{place} {status}: in the spec, but no suite saw it"
            ));
        }
    }
    println!(
        "{} kinds of answer seen, {} listed",
        seen.len(),
        listed.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
