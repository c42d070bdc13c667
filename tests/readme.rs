//! The README's API examples, run as written against a fresh service (local mode, empty store),
//! so that the docs cannot drift from what the service answers. Each `$ curl …` line of the
//! API section's shell block is run with curl, in order, with `localhost:8080` pointed at the
//! service; the lines under it are what it must print. For `curl -i`, the README shows only
//! some header fields: those must be there (in any order: field order means nothing in HTTP),
//! with the status line and the body.

mod common;

use std::path::Path;
use std::process::Command;

use common::Service;

/// The `$ command` lines of the API section's first shell block, each with its output.
fn examples() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## API\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("an API section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a shell block in the API section");
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in block.lines() {
        match line.strip_prefix("$ ") {
            Some(command) => out.push((command.to_owned(), Vec::new())),
            None => out
                .last_mut()
                .expect("output before any command")
                .1
                .push(line.to_owned()),
        }
    }
    out
}

#[test]
fn every_api_example_in_the_readme_prints_what_it_shows() {
    let examples = examples();
    assert!(examples.len() >= 4, "{examples:?}");
    let s = Service::start(&[]);
    for (command, shown) in examples {
        assert!(command.starts_with("curl "), "{command}");
        let command = command.replace("localhost:8080", &s.addr.to_string());
        let out = Command::new("sh")
            .args(["-c", &format!("{command} --silent --show-error")])
            .output()
            .expect("run sh and curl: scripts/test.sh installs curl");
        assert!(out.status.success(), "{command}: {:?}", out);
        let printed = String::from_utf8(out.stdout).unwrap().replace("\r\n", "\n");
        let printed: Vec<&str> = printed.lines().collect();
        if command.contains(" -i ") {
            // Status line first; the shown fields among the printed ones; the body.
            assert_eq!(
                printed.first().copied(),
                shown.first().map(String::as_str),
                "{command}"
            );
            let blank = |lines: &[&str]| lines.iter().position(|l| l.is_empty()).unwrap();
            let shown: Vec<&str> = shown.iter().map(String::as_str).collect();
            let (shown_head, shown_body) = shown.split_at(blank(&shown));
            let (head, body) = printed.split_at(blank(&printed));
            for field in &shown_head[1..] {
                assert!(
                    head.contains(field),
                    "{command}: {field:?} not among {head:?}"
                );
            }
            assert_eq!(body, shown_body, "{command}");
        } else {
            assert_eq!(printed, shown, "{command}");
        }
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The value of `key` in Cargo.toml's `[section]`, as written.
fn cargo_toml(section: &str, key: &str) -> String {
    let text = read("Cargo.toml");
    let body = text
        .split(&format!("\n[{section}]\n"))
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .unwrap_or_else(|| panic!("Cargo.toml has no [{section}]"));
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("[{section}] has no {key}"))
        .to_owned()
}

#[test]
fn the_release_profile_the_readme_states_is_cargo_toml_s() {
    // Read as prose: a line may break anywhere.
    let readme = read("README.md")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let stated = readme
        .split("The release profile compiles with `opt-level = ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .expect("the README states the release profile's opt-level");
    assert_eq!(stated, cargo_toml("profile.release", "opt-level"));
    let dependencies = readme
        .split("and with `opt-level = ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .expect("the README states the dependencies' opt-level");
    assert_eq!(
        dependencies,
        cargo_toml("profile.release.package.\"*\"", "opt-level")
    );
}

/// A number written with thousands separators, e.g. `3,183,720`.
fn number_after(text: &str, prefix: &str) -> u64 {
    let rest = text
        .split(prefix)
        .nth(1)
        .unwrap_or_else(|| panic!("no {prefix:?}"));
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {prefix:?}"))
}

#[test]
fn the_static_binary_size_in_the_docs_is_the_built_one_s() {
    let stated = number_after(
        &read("docs/benchmarks.md"),
        "- Static binary (x86_64, `make static`): ",
    );
    let binary = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-musl/release/hello");
    let built = std::fs::metadata(&binary)
        .expect("build the static binary first (make static; make test does)")
        .len();
    let off = stated.abs_diff(built) as f64 / built as f64;
    assert!(
        off <= 0.02,
        "docs/benchmarks.md says {stated} bytes, the built binary has {built}: update the docs"
    );
}

#[test]
fn the_resilience_scenarios_the_docs_count_are_the_suite_s() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/resilience");
    let mut scenarios: u64 = 0;
    for file in std::fs::read_dir(folder).expect("tests/resilience") {
        let text = std::fs::read_to_string(file.expect("a file").path()).expect("a file");
        scenarios += text.matches("#[test]\n#[ignore").count() as u64;
    }
    let stated = number_after(&read("docs/resilience.md"), "all ");
    assert_eq!(
        stated, scenarios,
        "docs/resilience.md's latest full run names {stated} scenarios; the suite has {scenarios}"
    );
}
