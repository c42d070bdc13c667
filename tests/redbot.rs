//! REDbot ("lint for HTTP", from PyPI) checks a live server: each route, `/hello` as text and as
//! JSON, an error of each kind, and a redirect. Any finding it rates bad fails the test, and so
//! does any warning: none of the warnings a 4xx commonly draws (about caching an error) applies
//! once every answer says `Cache-Control`, so none is allowed.

mod common;

use std::process::Command;

use common::aws::venv_bin;
use common::{Redis, Service};

/// REDbot's notes on one request: (level, id, summary).
fn lint(url: &str, method: &str, headers: &[&str]) -> (u16, Vec<(String, String, String)>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/redbot_lint.py");
    let out = Command::new(venv_bin("python"))
        .arg(script)
        .arg(url)
        .arg(method)
        .args(headers)
        .output()
        .expect("the test venv's python: run the README's test command, which installs REDbot");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "REDbot printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let notes = report["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .map(|n| {
            let field = |k: &str| n[k].as_str().unwrap_or_default().to_owned();
            (field("level"), field("id"), field("summary"))
        })
        .collect();
    (report["status"].as_u64().unwrap_or(0) as u16, notes)
}

#[test]
fn redbot_finds_nothing_bad_and_warns_of_nothing() {
    let redis = Redis::start();
    let s = Service::with_redis(&redis);
    let cases: [(&str, &str, &[&str], u16); 10] = [
        ("/", "GET", &[], 200),
        ("/hello/Bob", "GET", &[], 200),
        ("/hello/Bob", "GET", &["Accept: application/json"], 200),
        ("/counts", "GET", &[], 200),
        ("/health", "GET", &[], 200),
        ("/health/cluster", "GET", &[], 200),
        ("/metrics", "GET", &[], 200),
        ("/nope", "GET", &[], 404),
        ("/counts", "POST", &[], 405),
        ("//hello/Bob", "GET", &[], 301),
    ];
    let mut findings = Vec::new();
    for (path, method, headers, status) in cases {
        let (got, notes) = lint(&format!("http://{}{path}", s.addr), method, headers);
        assert_eq!(got, status, "{method} {path} {headers:?}");
        println!("{method} {path} {headers:?} → {got}");
        for (level, id, summary) in notes {
            println!("  {level:<4} {id}: {summary}");
            if level == "BAD" || level == "WARN" {
                findings.push(format!(
                    "{method} {path} {headers:?}: {level} {id}: {summary}"
                ));
            }
        }
    }
    assert!(findings.is_empty(), "{findings:#?}");
}
