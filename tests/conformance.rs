//! RFC 9110/9112 edge cases against the real binary, each a requirement a third-party
//! conformance suite or a browser checks, and the open redirect a browser's URL rules made of a
//! cleaned path: every `Location` the service sends, resolved by node's WHATWG `URL`, stays on
//! the service's host and leads to a canonical path.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{status_line, Conn, Service};

/// Resolves each of `locations` against `base` with node's `URL` (the WHATWG URL Standard, as
/// browsers apply it to a `Location`): the host and the path-and-query a browser would ask for.
fn resolve_in_node(base: &str, locations: &[String]) -> Vec<(String, String)> {
    let script = r#"
        const base = process.argv[1];
        const lines = require("fs").readFileSync(0, "utf8").split("\n").filter(l => l !== "");
        for (const l of lines) {
            const u = new URL(JSON.parse(l), base);
            console.log(JSON.stringify([u.host, u.pathname + u.search]));
        }
    "#;
    let mut child = Command::new("node")
        .args(["-e", script, base])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run node (Debian's nodejs): scripts/test.sh installs it");
    let input: String = locations
        .iter()
        .map(|l| serde_json::to_string(l).unwrap() + "\n")
        .collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "node failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn no_location_resolves_to_another_host_under_whatwg_rules() {
    let s = Service::start(&[]);
    // Target, then the Location the service must send. `\` is data in a segment (curl sends it
    // as it is), and `%5C` in a Location, where a browser would read a bare one as `/`.
    let table = [
        ("/./\\evil.example/login", "/%5Cevil.example/login"),
        ("//\\evil.example", "/%5Cevil.example"),
        ("//\\evil.example/", "/%5Cevil.example/"),
        ("/.//evil.example", "/evil.example"),
        ("///evil.example", "/evil.example"),
        ("/..//\\evil.example", "/%5Cevil.example"),
        ("/%2e/\\evil.example", "/%5Cevil.example"),
        ("/.%2E/\\\\evil.example", "/%5C%5Cevil.example"),
        ("/./\\/evil.example", "/%5C/evil.example"),
        ("/./\\/\\/evil.example", "/%5C/%5C/evil.example"),
        (
            "/hello/../\\evil.example?next=//evil.example",
            "/%5Cevil.example?next=//evil.example",
        ),
        ("/./%5Cevil.example", "/%5Cevil.example"),
        ("/./%2F%2Fevil.example", "/%2F%2Fevil.example"),
        ("/./%2f\\evil.example", "/%2f%5Cevil.example"),
        ("/./evil.example\\", "/evil.example%5C"),
        ("/./\\x/../\\evil.example", "/%5Cevil.example"),
        ("//evil.example@x", "/evil.example@x"),
        ("/./:evil.example", "/:evil.example"),
        ("/./http:\\\\evil.example", "/http:%5C%5Cevil.example"),
        ("/.//\\?a=\\", "/%5C?a=%5C"),
        ("/hello/./Zoë", "/hello/Zo%C3%AB"),
        ("//hello/café/", "/hello/caf%C3%A9/"),
    ];
    let mut locations = Vec::new();
    for (target, want) in table {
        for method in ["GET", "HEAD"] {
            let r = s.request(method, target, &[]);
            assert_eq!(r.status, 301, "{method} {target}");
            assert_eq!(r.header("location"), Some(want), "{method} {target}");
        }
        locations.push(want.to_owned());
    }
    // A path that is canonical already is answered, not redirected, backslash and all.
    for target in ["/\\evil.example", "/\\/evil.example", "/.\\evil.example"] {
        let r = s.get(target);
        assert_eq!(r.status, 404, "{target}");
        assert_eq!(r.header("location"), None);
    }

    let base = "http://service.example:8080/some/page";
    let resolved = resolve_in_node(base, &locations);
    assert_eq!(resolved.len(), locations.len());
    for (location, (host, path)) in locations.iter().zip(&resolved) {
        assert_eq!(host, "service.example:8080", "{location} left the host");
        // Following it, a browser meets a canonical path: no second redirect, no loop.
        let r = s.get(path);
        assert_ne!(r.status, 301, "{location} → {path} redirects again");
    }
    // The resolver is a real one: it does take a bare backslash for a slash.
    let evil = resolve_in_node(base, &["/\\evil.example/login".to_owned()]);
    assert_eq!(evil[0].0, "evil.example");
}

#[test]
fn a_backslash_name_counts_as_sent_and_its_redirect_leads_back_to_it() {
    let s = Service::start(&[]);
    assert_eq!(s.get("/hello/a\\b").text(), r#"Hello, "a\\b""#);
    let r = s.get("//hello/a\\b");
    assert_eq!(r.header("location"), Some("/hello/a%5Cb"));
    assert_eq!(s.get("/hello/a%5Cb").text(), r#"Hello, "a\\b""#);
    let counts = s.get("/counts").json();
    assert_eq!(counts["counts"][0]["name"], "a\\b");
    assert_eq!(counts["counts"][0]["count"], "2");
}

/// RFC 9112 §7.1.1: `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`
/// and `chunk-size = 1*HEXDIG`; a size that fits no integer is malformed (400), not too large.
#[test]
fn chunked_framing_is_held_to_its_grammar() {
    let s = Service::start(&[]);
    let send = |size_line: &str| {
        s.raw(
            format!(
                "POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{size_line}\r\nhello\r\n0\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    for bad in [
        "5;",
        "5;bad[=x",
        "5 ",
        "5\t",
        "5;a ",
        "5;a=",
        "5;=x",
        "5;a=\"open",
        "10000000000000000",
        "fffffffffffffffffffff",
    ] {
        let out = send(bad);
        assert!(
            status_line(&out).starts_with("HTTP/1.1 400 "),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out)
        );
    }
    // Well-formed extensions are skipped; the request is answered (405: `/` takes no POST).
    for good in ["5", "5;a", "5 ; a = b", "5;a=\"x y\";b", "000005"] {
        let out = send(good);
        assert!(
            status_line(&out).starts_with("HTTP/1.1 405 "),
            "{good:?}: {}",
            String::from_utf8_lossy(&out)
        );
    }
    // Sixteen hex digits fit an integer: too large, not malformed.
    let out = send("ffffffffffffffff");
    assert!(status_line(&out).starts_with("HTTP/1.1 413 "));
}

/// RFC 9110 §8.6: `Content-Length = 1*DIGIT`; RFC 9112 §6.3: a `Transfer-Encoding` whose last
/// coding is not chunked (here: none) is a 400. Empty is not absent.
#[test]
fn empty_content_length_or_transfer_encoding_is_400_and_closes() {
    let s = Service::start(&[]);
    for field in [
        "Content-Length:",
        "Content-Length: ",
        "Content-Length: 5,,5",
        "Transfer-Encoding:",
        "Transfer-Encoding: ,",
    ] {
        let out = s.raw(
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\n{field}\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .as_bytes(),
        );
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400 "), "{field}: {text}");
        // One answer, then the connection closes: the second request is not read.
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{field}: {text}");
    }
}

/// RFC 9112 §3.2.4 (asterisk-form) and RFC 9110 §9.3.7 (OPTIONS).
#[test]
fn options_answers_for_the_server_and_for_each_route() {
    let s = Service::start(&[]);
    let r = s.request("OPTIONS", "*", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(
        r.json()["allow"],
        serde_json::json!(["GET", "HEAD", "OPTIONS"])
    );
    for (path, allow) in [
        ("/", "GET, HEAD, OPTIONS"),
        ("/counts", "GET, HEAD, OPTIONS"),
        ("/health/cluster", "GET, HEAD, OPTIONS"),
        ("/hello/Bob", "GET, OPTIONS"),
        // Non-canonical paths are answered for their clean path, as other methods are.
        ("//counts", "GET, HEAD, OPTIONS"),
    ] {
        let r = s.request("OPTIONS", path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("allow"), Some(allow), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
    }
    // OPTIONS greets nobody.
    assert_eq!(s.get("/counts").text(), r#"{"counts":[]}"#);
    s.request("OPTIONS", "/nope", &[])
        .assert_error(404, "not_found");
    // The 405 lists OPTIONS among what the route takes.
    let r = s.request("DELETE", "/", &[]);
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    // Asterisk-form is for OPTIONS alone.
    for method in ["GET", "HEAD", "DELETE"] {
        let out = s.raw(format!("{method} * HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert!(status_line(&out).starts_with("HTTP/1.1 400 "), "{method} *");
    }
    // And it keeps the connection open, as any 200 does.
    let mut conn = Conn::open(s.addr);
    conn.send("OPTIONS", "*", &[]);
    assert_eq!(conn.response(false).status, 200);
    assert_eq!(conn.get("/").status, 200);
}

/// RFC 9112 §3.2: origin-form is `absolute-path [ "?" query ]`; a fragment is never sent.
#[test]
fn a_fragment_in_the_target_is_a_400_not_a_path() {
    let s = Service::start(&[]);
    for target in ["/#frag", "/hello/Bob#x", "/counts?limit=1#top"] {
        let r = s.get(target);
        r.assert_error(400, "bad_request");
        assert!(r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fragment"));
    }
    assert_eq!(s.get("/counts").text(), r#"{"counts":[]}"#);
}

/// RFC 9112 §3: a method longer than any the server implements SHOULD be a 501, not a 414.
#[test]
fn a_huge_method_is_501_not_uri_too_long() {
    let s = Service::start(&[]);
    let mut request = "M".repeat(100_000).into_bytes();
    request.extend_from_slice(b" / HTTP/1.1\r\nHost: t\r\n\r\n");
    let out = s.raw(&request);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 501 "), "{text}");
    assert!(text.contains("method is too long"), "{text}");
    // A method of ordinary length the route does not take is still a 405 with Allow.
    let r = s.request("PROPFIND", "/", &[]);
    r.assert_error(405, "method_not_allowed");
}

/// The leniencies kept on purpose (README, "HTTP edge cases"): each still answers as before.
#[test]
fn documented_leniencies_hold() {
    let s = Service::start(&[]);
    // Raw UTF-8 in the target, as curl sends it.
    let out = s.raw("GET /hello/café HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".as_bytes());
    assert!(String::from_utf8_lossy(&out).ends_with(r#"Hello, "café""#));
    // An empty Host: valid when the target has no authority (RFC 9112 §3.2).
    let out = s.raw(b"GET / HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n");
    assert!(status_line(&out).starts_with("HTTP/1.1 200 "));
    // A declared length past the limit is 413, whatever its size.
    let out = s.raw(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\n");
    assert!(status_line(&out).starts_with("HTTP/1.1 413 "));
}
