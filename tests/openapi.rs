//! `docs/openapi.yaml` is true: it lists exactly the routes the router serves, and schemathesis,
//! generating requests from it against a live server with a real Redis, finds no 5xx and no
//! response that breaks the schema.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::aws::venv_bin;
use common::{Redis, Service};
use hello::metrics::Route;

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
