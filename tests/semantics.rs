//! HTTP and API semantics as real clients meet them, each item against the real binary over
//! sockets: RFC 9112's MUSTs (Host, absolute-form, versions), named faults, the original's path
//! cleaning, content negotiation, caching headers, scores written by others, and Redis refusing
//! clients.

mod common;

use std::time::Duration;

use common::{send_signal, status_line, wait_until, Conn, Redis, Service, Signal};

const KEY: &str = "nytimes.names";

#[test]
fn host_is_needed_exactly_once_in_http_1_1() {
    let redis = Redis::start();
    let s = Service::with_redis(&redis);
    for (request, why) in [
        (
            &b"GET /hello/nohost HTTP/1.1\r\n\r\n"[..],
            "an HTTP/1.1 request needs a Host header",
        ),
        (
            b"GET /hello/twohosts HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            "more than one Host header",
        ),
        (
            b"GET /hello/twohosts HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
            "more than one Host header",
        ),
    ] {
        let out = s.raw(request);
        assert!(status_line(&out).starts_with("HTTP/1.1 400 "), "{out:?}");
        assert!(String::from_utf8_lossy(&out).contains(why));
    }
    let old = s.raw(b"GET /hello/old HTTP/1.0\r\n\r\n");
    assert!(status_line(&old).starts_with("HTTP/1.1 200 "));
    assert_eq!(redis.counts(KEY), vec![("old".to_string(), 1)]);
}

#[test]
fn absolute_form_targets_are_served_from_their_path() {
    let redis = Redis::start();
    let s = Service::with_redis(&redis);
    let out = s.raw(
        b"GET http://127.0.0.1/hello/Abs HTTP/1.1\r\nHost: elsewhere\r\nConnection: close\r\n\r\n",
    );
    assert!(String::from_utf8_lossy(&out).ends_with(r#"Hello, "Abs""#));
    let out =
        s.raw(b"GET http://h:1/counts?limit=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert!(String::from_utf8_lossy(&out).contains(r#"{"counts":[{"name":"Abs","count":"1"}]}"#));
    assert_eq!(redis.counts(KEY), vec![("Abs".to_string(), 1)]);
}

#[test]
fn higher_1_x_versions_are_answered_as_1_1_and_other_majors_refused() {
    let s = Service::start(&[]);
    let out = s.raw(b"GET / HTTP/1.2\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(status_line(&out).starts_with("HTTP/1.1 200 "));
    for version in ["HTTP/2.0", "HTTP/3.0", "HTTP/0.9"] {
        let out = s.raw(format!("GET / {version}\r\nHost: t\r\n\r\n").as_bytes());
        assert!(status_line(&out).starts_with("HTTP/1.1 505 "), "{version}");
    }
}

#[test]
fn a_fault_in_the_target_is_named_as_such() {
    let s = Service::start(&[]);
    for request in [
        &b"GET /hello/\xff HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"GET /hello/a\tb HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /hello/a b HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET  /hello/a HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let out = s.raw(request);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
        assert!(
            text.contains("malformed request target"),
            "{request:?}: {text}"
        );
    }
}

/// Measured from the original service: each non-canonical path and where it sent clients.
fn cleaned_paths() -> Vec<(String, String)> {
    let table = include_str!("data/cleaned-paths.txt");
    table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split_once('\t'))
        .map(|(p, l)| (p.to_owned(), l.to_owned()))
        .collect()
}

#[test]
fn non_canonical_paths_redirect_as_the_original_did_and_count_nothing() {
    let redis = Redis::start();
    let s = Service::with_redis(&redis);
    let table = cleaned_paths();
    assert_eq!(table.len(), 9);
    for (path, location) in &table {
        for method in ["GET", "HEAD"] {
            let r = s.request(method, path, &[]);
            assert_eq!(r.status, 301, "{method} {path}");
            assert_eq!(
                r.header("location"),
                Some(location.as_str()),
                "{method} {path}"
            );
        }
    }
    let r = s.get("/hello/./Bob?x=1&y=2");
    assert_eq!(r.header("location"), Some("/hello/Bob?x=1&y=2"));
    // Other methods are answered for the clean path, and never greet a dot segment.
    let r = s.request("POST", "//counts", &[("Content-Length", "0")]);
    r.assert_error(405, "method_not_allowed");
    s.request("DELETE", "/hello/.", &[])
        .assert_error(404, "not_found");
    s.request("DELETE", "/hello/..", &[])
        .assert_error(405, "method_not_allowed");
    assert!(redis.counts(KEY).is_empty());
    // `%2F` inside a segment is part of the name, not a separator.
    assert_eq!(s.get("/hello/a%2F..%2Fb").text(), r#"Hello, "a/../b""#);
    assert_eq!(redis.counts(KEY), vec![("a/../b".to_string(), 1)]);
}

#[test]
fn hello_negotiates_with_q_values_and_says_it_varies() {
    let s = Service::start(&[]);
    let cases: [(&[(&str, &str)], &str); 7] = [
        (&[], "text/plain; charset=utf-8"),
        (&[("Accept", "application/json")], "application/json"),
        (
            &[("Accept", "application/json;q=0, text/plain")],
            "text/plain; charset=utf-8",
        ),
        (&[("Accept", "application/*")], "application/json"),
        (&[("Accept", "*/*")], "text/plain; charset=utf-8"),
        (
            &[("Accept", "application/json, text/plain")],
            "text/plain; charset=utf-8",
        ),
        (&[("Accept", "image/png")], "text/plain; charset=utf-8"),
    ];
    for (headers, content_type) in cases {
        let r = s.request("GET", "/hello/Neg", headers);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(content_type), "{headers:?}");
        assert_eq!(r.header("vary"), Some("Accept"), "{headers:?}");
    }
    // Every /hello answer, errors included.
    assert_eq!(s.get("/hello/%ff").header("vary"), Some("Accept"));
    assert_eq!(
        s.request("HEAD", "/hello/x", &[]).header("vary"),
        Some("Accept")
    );
    assert_eq!(s.get("/counts").header("vary"), None);
}

#[test]
fn every_answer_says_how_caches_may_keep_it() {
    let redis = Redis::start();
    let s = Service::on_redis(&redis, &[("HTTP_REQUEST_TIMEOUT_MS", "300")]);
    for (path, cache) in [
        ("/", "max-age=3600"),
        ("/hello/Cache", "no-store"),
        ("/counts", "no-store"),
        ("/health", "no-store"),
        ("/health/cluster", "no-store"),
        ("/metrics", "no-store"),
        ("/nope", "no-store"),
        ("/hello/%ff", "no-store"),
        ("//hello/x", "max-age=3600"),
    ] {
        assert_eq!(s.get(path).header("cache-control"), Some(cache), "{path}");
    }
    let r = s.request("POST", "/", &[("Content-Length", "0")]);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // Refusals from the HTTP layer and timeouts too.
    let out = String::from_utf8_lossy(&s.raw(b"GET / HTTP/1.1\r\n\r\n")).into_owned();
    assert!(out.contains("Cache-Control: no-store\r\n"), "{out}");
    let out = String::from_utf8_lossy(&s.raw(b"GET / HTTP/1.1\r\nHost: t\r\n")).into_owned();
    assert!(out.starts_with("HTTP/1.1 408 ") && out.contains("Cache-Control: no-store\r\n"));
}

#[test]
fn counts_pass_scores_written_by_others_as_redis_writes_them() {
    let redis = Redis::start();
    let mut c = redis.connection();
    let _: () = redis::cmd("ZADD")
        .arg(KEY)
        .arg("1.5")
        .arg("half")
        .arg("1e20")
        .arg("big")
        .arg("inf")
        .arg("endless")
        .arg(3)
        .arg("three")
        .query(&mut c)
        .unwrap();
    // Redis's own text for each score, read by another client.
    let texts: Vec<String> = redis::cmd("ZRANGE")
        .arg(KEY)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut c)
        .unwrap();
    let s = Service::with_redis(&redis);
    let body = s.get("/counts").json();
    let ours: Vec<String> = body["counts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| {
            [
                e["name"].as_str().unwrap().to_owned(),
                e["count"].as_str().unwrap().to_owned(),
            ]
        })
        .collect();
    assert_eq!(ours, texts);
    assert_eq!(
        body["counts"][0],
        serde_json::json!({"name": "half", "count": "1.5"})
    );
    assert_eq!(body["counts"][1]["count"], "3");
}

#[test]
fn redis_refusing_clients_is_a_passing_503_that_heals() {
    let redis = Redis::start();
    let mut admin = redis.connection();
    let s = Service::with_redis(&redis);
    assert_eq!(s.get("/hello/before").status, 200);
    // Only the connections already open may stay; the service's pool is told to go.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(1)
        .query(&mut admin)
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut admin)
        .unwrap();
    let r = s.get("/hello/refused");
    r.assert_error(503, "store_unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(1000)
        .query(&mut admin)
        .unwrap();
    assert_eq!(s.get("/hello/after").status, 200);
    let names: Vec<String> = redis.counts(KEY).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["after", "before"]);
}

#[test]
fn a_greeting_sent_and_not_answered_in_time_is_a_504_that_invites_no_repeat() {
    let redis = Redis::start();
    let s = Service::on_redis(&redis, &[("REDIS_TIMEOUT_MS", "300")]);
    assert_eq!(s.get("/hello/late").status, 200);
    send_signal(redis.pid(), Signal::STOP);
    let r = s.get("/hello/late");
    send_signal(redis.pid(), Signal::CONT);
    r.assert_error(504, "store_outcome_unknown");
    assert_eq!(r.header("retry-after"), None);
    assert!(r.json()["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("may have been")));
    // It was counted after all, once Redis resumed: a client that repeated it would count twice.
    wait_until("the late increment to land", Duration::from_secs(5), || {
        redis.counts(KEY) == [("late".to_owned(), 2)]
    });
    let metrics = s.get("/metrics").text();
    assert!(
        metrics.contains("\nhello_store_outcome_unknown_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nhello_store_unavailable_total 0\n"),
        "{metrics}"
    );
}

#[test]
fn make_run_serves_in_local_mode() {
    let dry = std::process::Command::new("make")
        .args(["-n", "run"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DEBUG")
        .output()
        .expect("make");
    let recipe = String::from_utf8_lossy(&dry.stdout);
    assert!(
        recipe.contains("DEBUG=${DEBUG:-true} cargo run"),
        "{recipe}"
    );
    // And local mode is what DEBUG=true means: instance id `local`, no AWS call.
    let s = Service::start(&[("DEBUG", "true")]);
    let mut conn = Conn::open(s.addr);
    assert_eq!(conn.get("/health").json()["ec2_instance_id"], "local");
}
