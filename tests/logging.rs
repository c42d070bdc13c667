//! Logs as an operator meets them: `RUST_LOG` directives choose lines by target (the service's
//! own `hello…` lines, the `access` line, the `ureq` and `rustls` dependencies), the text line
//! names its target and escapes what the client sent, each JSON line is one object in the shape
//! CloudWatch reads, and a `RUST_LOG` that cannot be read stops start-up.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use common::{run_to_exit, wait_until, Service, Signal};

/// An instance-metadata endpoint at an `https://` URL that is a plain TCP listener, so that the
/// service's metadata client, at start-up, connects (`ureq` logs that at debug) and begins a TLS
/// handshake (`rustls` logs that at debug, before its ClientHello) until the listener hangs up.
/// The flag is set once a ClientHello byte has arrived: by then both lines were written.
fn fake_metadata() -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("address"));
    let hello_sent = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&hello_sent);
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            if matches!(stream.read(&mut [0u8; 1]), Ok(1)) {
                flag.store(true, Ordering::SeqCst);
            }
        }
    });
    (url, hello_sent)
}

/// Runs the service with `RUST_LOG=filter` in JSON until its metadata client has begun its
/// TLS handshake and one request was answered, stops it, and returns every log line.
fn json_logs_with(filter: &str) -> Vec<Value> {
    let (url, hello_sent) = fake_metadata();
    let mut s = Service::start(&[
        ("RUST_LOG", filter),
        ("LOG_FORMAT", "json"),
        ("DEBUG", "false"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &url),
    ]);
    wait_until(
        "the metadata client's ClientHello",
        Duration::from_secs(10),
        || hello_sent.load(Ordering::SeqCst),
    );
    assert_eq!(s.get("/").status, 200, "RUST_LOG={filter}");
    s.signal(Signal::TERM);
    let status = s.wait(Duration::from_secs(15)).expect("exit after SIGTERM");
    assert!(status.success(), "RUST_LOG={filter}: {status:?}");
    s.logs()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Where the lines came from: `hello`, `access`, `ureq` (also `ureq_proto`), `rustls`, or the
/// target itself for anything else.
fn sources(lines: &[Value]) -> BTreeSet<String> {
    lines
        .iter()
        .map(|l| {
            let target = l["target"].as_str().expect("a target");
            ["hello", "access", "ureq", "rustls"]
                .into_iter()
                .find(|source| target.starts_with(source))
                .unwrap_or(target)
                .to_owned()
        })
        .collect()
}

#[test]
fn rust_log_directives_choose_lines_by_target() {
    let cases: [(&str, &[&str]); 7] = [
        ("debug", &["access", "hello", "rustls", "ureq"]),
        ("info", &["access", "hello"]),
        ("ureq=debug", &["ureq"]),
        ("hello=debug", &["hello"]),
        ("debug,rustls=warn", &["access", "hello", "ureq"]),
        ("info,rustls=warn", &["access", "hello"]),
        ("info,access=off", &["hello"]),
    ];
    for (filter, expected) in cases {
        let lines = json_logs_with(filter);
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(sources(&lines), expected, "RUST_LOG={filter}: {lines:#?}");
    }
}

#[test]
fn json_lines_are_objects_in_the_shape_cloudwatch_reads() {
    let lines = json_logs_with("info");
    for line in &lines {
        let ts = line["ts"].as_str().expect("ts");
        assert!(humantime::parse_rfc3339(ts).is_ok(), "{line}");
        assert!(ts.ends_with('Z') && ts.len() == "2026-11-26T12:04:36.123Z".len());
        assert!(["error", "warn", "info"].contains(&line["level"].as_str().expect("level")));
        assert!(line["msg"].is_string(), "{line}");
    }
    let access = lines
        .iter()
        .find(|l| l["target"] == "access")
        .expect("an access line");
    assert_eq!(access["msg"], "request");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["path"], "/");
    assert_eq!(access["status"], 200);
    assert!(access["bytes"].as_u64().is_some_and(|b| b > 0), "{access}");
    assert!(access["duration_ms"].as_f64().is_some(), "{access}");
    let peer = access["peer"].as_str().expect("peer");
    assert!(peer.starts_with("127.0.0.1:"), "{access}");
}

#[test]
fn text_lines_name_their_target_and_escape_the_client_s_bytes() {
    let mut s = Service::start(&[]);
    let mut stream = TcpStream::connect(s.addr).expect("connect");
    stream
        .write_all(b"GET /hello/a\"b\\c\xc3\xa9 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("answer");
    assert!(answer.starts_with(b"HTTP/1.1 200 "));
    s.signal(Signal::TERM);
    s.wait(Duration::from_secs(15)).expect("exit after SIGTERM");
    let logs = s.logs();
    let line = |needle: &str| {
        logs.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{logs}"))
    };
    let listening = line(" listening on ");
    assert!(listening.contains(" INFO  hello hello "), "{listening}");
    let access = line(" access ");
    assert!(access.contains(" INFO  access 127.0.0.1:"), "{access}");
    assert!(
        access.contains(r#" "GET /hello/a\"b\\c\u{e9}" 200 "#),
        "{access}"
    );
    let ts = listening.split(' ').next().expect("a time");
    assert!(humantime::parse_rfc3339(ts).is_ok(), "{listening}");
}

/// Splits `text` into lines as Python's `str.splitlines()` does (on `\n`, `\r`, `\v`, `\f`,
/// `\x1c`–`\x1e`, U+0085, U+2028 and U+2029), by asking Python itself.
fn python_splitlines(text: &str) -> Vec<String> {
    let mut python = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json; print(json.dumps(sys.stdin.buffer.read().decode('utf-8').splitlines()))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (the README's test command installs it)");
    python
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("to python");
    let out = python.wait_with_output().expect("python's answer");
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("a JSON list of lines")
}

#[test]
fn json_lines_stay_whole_for_any_line_splitter() {
    let mut s = Service::start(&[("LOG_FORMAT", "json")]);
    // Raw in the request target: what a client can put into the access line's path.
    let paths = [
        "/a\u{2028}b",
        "/a\u{2029}b",
        "/a\u{85}b",
        "/a\u{9b}b\u{7f}",
        "/a\u{202e}b\u{2066}",
        "/hello/x\u{2028}\u{2029}\u{85}",
        "/\u{1c}\u{1d}\u{1e}",
        "/a\u{b}\u{c}",
        "/plain",
        "/hello/Zo\u{eb}",
    ];
    for path in paths {
        let mut stream = TcpStream::connect(s.addr).expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("answer");
        assert!(answer.starts_with(b"HTTP/1.1 "), "{path:?}");
    }
    s.signal(Signal::TERM);
    s.wait(Duration::from_secs(15)).expect("exit after SIGTERM");
    let logs = s.logs();
    let lines = python_splitlines(&logs);
    assert_eq!(lines.len(), logs.lines().count(), "{logs}");
    let records: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    let mut logged: Vec<&str> = records
        .iter()
        .filter(|r| r["target"] == "access")
        .filter_map(|r| r["path"].as_str())
        .collect();
    // One access line per request, its path read back whole; a target with ASCII controls is
    // refused (400) before it is taken as a path, and logged as `-`.
    let mut expected: Vec<&str> = paths
        .iter()
        .map(|p| match p.contains(|c: char| c.is_ascii_control()) {
            true => "-",
            false => p,
        })
        .collect();
    // Workers may write the lines of two requests in either order.
    logged.sort_unstable();
    expected.sort_unstable();
    assert_eq!(logged, expected, "{logs}");
}

#[test]
fn a_failure_per_request_is_written_once_then_summed_up_with_a_count() {
    let mut redis = common::Redis::start();
    let s = Service::on_redis(&redis, &[("LOG_REPEAT_INTERVAL_MS", "500")]);
    redis.kill();
    let mut conn = common::Conn::open(s.addr);
    let mut failed = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1200) {
        let r = conn.get("/hello/down");
        assert_eq!(r.status, 503);
        failed += 1;
    }
    let summed_up = |logs: &str| -> u64 {
        logs.lines()
            .filter_map(|l| l.split("store increment failed: ").nth(1))
            .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    // The last summary comes at most an interval and a quarter after the last failure.
    wait_until("the last summary", Duration::from_secs(5), || {
        1 + summed_up(&s.logs()) == failed
    });
    let logs = s.logs();
    let written = logs
        .lines()
        .filter(|l| l.contains("store increment failed: store"))
        .count();
    let summaries = logs
        .lines()
        .filter(|l| l.contains("store increment failed: "))
        .count()
        - written;
    assert_eq!(written, 1, "{logs}");
    // One per interval of 500 ms over 1.2 s of failures, and no more.
    assert!(
        (1..=4).contains(&summaries),
        "{summaries} summaries for {failed}:\n{logs}"
    );
    assert!(failed > 20, "{failed}");
    let metrics = s.get("/metrics").text();
    assert!(
        metrics.contains(&format!(
            "hello_store_errors_total{{operation=\"increment\"}} {failed}\n"
        )),
        "{metrics}"
    );
}

#[test]
fn an_unreadable_rust_log_stops_start_up() {
    for filter in ["hello=loud", "info,ureq=sometimes", "info/a/b"] {
        let (status, stderr) = run_to_exit(&[("RUST_LOG", filter)]);
        assert_eq!(status.code(), Some(2), "{filter}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{filter}: {stderr}");
        assert!(stderr.starts_with("hello: invalid RUST_LOG: "), "{stderr}");
    }
}

#[test]
fn access_lines_carry_the_albs_trace_id_and_nothing_else_from_that_header() {
    const TRACE: &str = "Root=1-67891233-abcdef012345678912345678;Sampled=1";
    for format in ["text", "json"] {
        let mut s = Service::start(&[("LOG_FORMAT", format)]);
        for trace in [TRACE, "Root=1-x\"\u{2028}forged"] {
            let r = s.request("GET", "/health", &[("X-Amzn-Trace-Id", trace)]);
            assert_eq!(r.status, 200);
        }
        s.signal(Signal::TERM);
        s.wait(Duration::from_secs(15)).expect("exit after SIGTERM");
        let logs = s.logs();
        let access: Vec<&str> = logs.lines().filter(|l| l.contains("access")).collect();
        assert_eq!(access.len(), 2, "{logs}");
        // Two connections, answered by whichever workers: the lines may come in either order.
        match format {
            "text" => {
                let with: Vec<_> = access.iter().filter(|l| l.ends_with(TRACE)).collect();
                assert_eq!(with.len(), 1, "{logs}");
                assert!(access.iter().any(|l| l.ends_with("ms")), "{logs}");
            }
            _ => {
                let traces: Vec<Value> = access
                    .iter()
                    .map(|l| serde_json::from_str::<Value>(l).expect("JSON")["trace_id"].clone())
                    .collect();
                assert!(traces.contains(&Value::from(TRACE)), "{logs}");
                assert!(traces.contains(&Value::Null), "{logs}");
            }
        }
        assert!(!logs.contains("forged"), "{logs}");
    }
}
