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
