//! Every route and error over real sockets, with counts in a real Redis.

mod common;

use std::time::Duration;

use common::{Conn, Redis, Service};

const KEY: &str = "nytimes.names";

#[test]
fn root_welcomes() {
    let s = Service::start(&[]);
    let r = s.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.text(), "Welcome to the Hello Service");
}

#[test]
fn hello_counts_in_redis_then_greets() {
    let redis = Redis::start();
    let s = Service::with_redis(&redis);
    let r = s.get("/hello/Bob");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.text(), r#"Hello, "Bob""#);
    s.get("/hello/Bob");
    s.get("/hello/Bill");
    assert_eq!(
        redis.counts(KEY),
        vec![("Bill".to_string(), 1), ("Bob".to_string(), 2)]
    );

    let r = s.request(
        "GET",
        "/hello/Bob",
        &[("Accept", "text/html, application/json;q=0.9")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.text(),
        r#"{"message":"Hello, \"Bob\"","name":"Bob","count":3}"#
    );
}

#[test]
fn hello_quotes_names_as_go_does() {
    let s = Service::start(&[]);
    let cases = [
        (
            "Bob%20%22the%22%20Builder",
            r#"Hello, "Bob \"the\" Builder""#,
        ),
        ("back%5Cslash", r#"Hello, "back\\slash""#),
        ("Zo%C3%AB", r#"Hello, "Zoë""#),
        ("%E6%97%A5%E6%9C%AC", r#"Hello, "日本""#),
        ("a%E2%80%8Bb", r#"Hello, "a\u200bb""#),
        ("nb%C2%A0sp", r#"Hello, "nb\u00a0sp""#),
        ("a%2Fb", r#"Hello, "a/b""#),
    ];
    for (segment, want) in cases {
        let r = s.get(&format!("/hello/{segment}"));
        assert_eq!(r.status, 200, "{segment}");
        assert_eq!(r.text(), want, "{segment}");
    }
}

#[test]
fn hello_refuses_bad_names_and_counts_nothing() {
    let redis = Redis::start();
    let s = Service::with_redis(&redis);
    for segment in ["", "%ff", "a%00b", "tab%09", "%zz", "%", &"x".repeat(257)] {
        let r = s.get(&format!("/hello/{segment}"));
        r.assert_error(400, "invalid_name");
    }
    assert!(s.get(&format!("/hello/{}", "x".repeat(256))).status == 200);
    assert_eq!(redis.counts(KEY).len(), 1);
}

#[test]
fn counts_lists_in_zrange_order_with_paging() {
    let redis = Redis::start();
    let s = Service::with_redis(&redis);
    let r = s.get("/counts");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), r#"{"counts":[]}"#);

    for name in ["Bill", "Bill", "Bill", "Bob", "Ann", "Zed", "Zed"] {
        assert_eq!(s.get(&format!("/hello/{name}")).status, 200);
    }
    let r = s.get("/counts");
    assert_eq!(
        r.text(),
        r#"{"counts":[{"name":"Ann","count":"1"},{"name":"Bob","count":"1"},{"name":"Zed","count":"2"},{"name":"Bill","count":"3"}]}"#
    );
    let names = |path: &str| -> Vec<String> {
        s.get(path).json()["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("/counts?order=desc"), ["Bill", "Zed", "Bob", "Ann"]);
    assert_eq!(names("/counts?limit=2&offset=1"), ["Bob", "Zed"]);
    assert_eq!(names("/counts?order=desc&limit=1"), ["Bill"]);
    assert_eq!(names("/counts?offset=10"), Vec::<String>::new());
    assert_eq!(names("/counts?unknown=1&limit=1"), ["Ann"]);
    for bad in [
        "limit=0",
        "limit=x",
        "offset=-1",
        "order=sideways",
        "limit=1e3",
    ] {
        s.get(&format!("/counts?{bad}"))
            .assert_error(400, "invalid_parameter");
    }
}

#[test]
fn counts_reads_data_written_by_the_original_service() {
    let redis = Redis::start();
    let _: () = redis::cmd("ZADD")
        .arg(KEY)
        .arg(5)
        .arg("legacy")
        .arg(2)
        .arg(b"\xffraw".as_slice())
        .query(&mut redis.connection())
        .unwrap();
    let s = Service::with_redis(&redis);
    let body = s.get("/counts").json();
    assert_eq!(body["counts"][0]["name"], "\u{fffd}raw");
    assert_eq!(
        body["counts"][1],
        serde_json::json!({"name": "legacy", "count": "5"})
    );
    assert_eq!(s.get("/hello/legacy").text(), r#"Hello, "legacy""#);
    assert_eq!(redis.counts(KEY)[1], ("legacy".to_string(), 6));
}

#[test]
fn redis_key_is_configurable() {
    let redis = Redis::start();
    let s = Service::start(&[("REDIS_URL", &redis.url()), ("REDIS_KEY", "other.key")]);
    s.get("/hello/Kim");
    assert_eq!(redis.counts("other.key"), vec![("Kim".to_string(), 1)]);
    assert!(redis.counts(KEY).is_empty());
}

#[test]
fn rediss_with_a_user_password_and_database_counts_there_and_never_logs_the_password() {
    let redis = Redis::start_secure();
    let secure = redis.secure.as_ref().unwrap();
    let encode = |s: &str| {
        s.replace('%', "%25")
            .replace('@', "%40")
            .replace(':', "%3A")
    };
    let url = format!(
        "rediss://{}:{}@localhost:{}/3",
        secure.user,
        encode(secure.password)
            .replace('/', "%2F")
            .replace(' ', "%20"),
        secure.tls_port
    );
    let ca = secure.ca_file();
    let s = Service::start(&[
        ("REDIS_URL", &url),
        ("REDIS_TLS_CA_FILE", ca.to_str().unwrap()),
        ("RUST_LOG", "debug"),
    ]);
    assert_eq!(s.get("/hello/Tess").status, 200);
    assert_eq!(s.get("/health").json()["store"]["reachable"], true);
    let mut c = redis.connection();
    let _: () = redis::cmd("SELECT").arg(3).query(&mut c).unwrap();
    let tess: i64 = redis::cmd("ZSCORE")
        .arg(KEY)
        .arg("Tess")
        .query(&mut c)
        .unwrap();
    assert_eq!(tess, 1);
    let logs = s.logs();
    assert!(
        logs.contains(&format!("rediss://localhost:{}", secure.tls_port)),
        "{logs}"
    );
    assert!(
        !logs.contains("odd chars") && !logs.contains("odd%20chars"),
        "{logs}"
    );
}

#[test]
fn health_reports_this_node() {
    let redis = Redis::start();
    let s = Service::with_redis(&redis);
    let r = s.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let h = r.json();
    assert_eq!(h["ec2_instance_id"], "local");
    assert!(h["uptime"].as_u64().unwrap() > 0);
    let disk = h["disk_utilization_percent"].as_f64().unwrap();
    assert!(disk > 0.0 && disk <= 100.0);
    let cpu = h["cpu_utilization_percent"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&cpu));
    assert!(h["total_ram_bytes_used"].as_u64().unwrap() > 0);
    assert!(h["total_ram_bytes_available"].as_u64().unwrap() > 0);
    assert_eq!(h["store"]["kind"], "redis");
    assert_eq!(h["store"]["reachable"], true);
    // Its room for new names, as sampled before the first request: Redis without maxmemory.
    assert_eq!(h["store"]["admitting_new_names"], true);
    assert!(h["store"]["used_memory"].as_u64().is_some_and(|u| u > 0));
    assert_eq!(h["store"]["maxmemory"], 0);
    assert_eq!(h["store"]["names"], 0);

    let c = s.get("/health/cluster").json();
    let nodes = c["node_healths"].as_array().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["ec2_instance_id"], "local");
}

#[test]
fn head_works_on_read_only_routes_only() {
    let redis = Redis::start();
    let s = Service::with_redis(&redis);
    for path in ["/", "/counts", "/health", "/health/cluster", "/metrics"] {
        let mut conn = Conn::open(s.addr);
        conn.send("HEAD", path, &[]);
        let r = conn.response(true);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.body.is_empty());
        // The connection is still usable: nothing but the head was sent.
        assert_eq!(conn.get("/").text(), "Welcome to the Hello Service");
    }
    let r = s.request("HEAD", "/hello/Bob", &[]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, OPTIONS"));
    assert!(redis.counts(KEY).is_empty());
}

/// The value of an unlabelled sample in a `/metrics` text.
fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

#[test]
fn head_counts_and_abandoned_listings_reuse_one_redis_connection() {
    let redis = Redis::start();
    redis.add_names(KEY, 10_000);
    let s = Service::with_redis(&redis);
    let mut c = Conn::open(s.addr);
    for _ in 0..50 {
        c.send("HEAD", "/counts?order=desc", &[]);
        let r = c.response(true);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    // Clients that take the head and the first chunk of a listing, and go.
    for _ in 0..20 {
        let mut gone = Conn::open(s.addr);
        gone.send("GET", "/counts", &[]);
        assert_eq!(gone.response(true).status, 200);
    }
    // The service notices each client gone when it next writes to it.
    std::thread::sleep(Duration::from_millis(300));
    let metrics = s.get("/metrics").text();
    // A few connections serve them all in turn (a listing is held until the service notices
    // its client gone; the health sampler checks Redis): not one per request, as before.
    assert!(
        sample(&metrics, "hello_redis_connections_opened_total") <= 8,
        "{metrics}"
    );
    assert!(
        sample(&metrics, "hello_redis_connection_reuses_total") >= 60,
        "{metrics}"
    );
    assert!(metrics.contains("hello_redis_listings_left_total{outcome=\"closed\"} 0\n"));
}

#[test]
fn errors_are_json_with_the_right_status() {
    let s = Service::start(&[]);
    let r = s.get("/nope");
    r.assert_error(404, "not_found");
    assert_eq!(r.json()["error"]["message"], "no route for GET /nope");
    s.get("/hello/a/b").assert_error(404, "not_found");

    let r = s.request("POST", "/counts", &[("Content-Length", "0")]);
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    let r = s.request("DELETE", "/hello/Bob", &[]);
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, OPTIONS"));
}

#[test]
fn oversized_and_malformed_requests_are_refused() {
    let s = Service::start(&[]);
    let long = format!("/hello/{}", "a".repeat(9000));
    s.get(&long).assert_error(414, "uri_too_long");
    let big = "b".repeat(20_000);
    s.request("GET", "/", &[("X-Big", &big)])
        .assert_error(431, "headers_too_large");
    let many: Vec<(String, String)> = (0..100).map(|i| (format!("X-{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    s.request("GET", "/", &many)
        .assert_error(431, "headers_too_large");

    let garbage = s.raw(b"\x16\x03\x01garbage\r\n\r\n");
    assert!(String::from_utf8_lossy(&garbage).starts_with("HTTP/1.1 400 "));
    let h2 = s.raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert!(String::from_utf8_lossy(&h2).starts_with("HTTP/1.1 505 "));
    let gzip = s.raw(b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert!(String::from_utf8_lossy(&gzip).starts_with("HTTP/1.1 501 "));
    let huge_body = s.raw(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n");
    assert!(String::from_utf8_lossy(&huge_body).starts_with("HTTP/1.1 413 "));
    // The server is still fine.
    assert_eq!(s.get("/").status, 200);
}

#[test]
fn bodies_of_either_framing_are_read_and_skipped() {
    let s = Service::start(&[]);
    let mut conn = Conn::open(s.addr);
    conn.send_raw(
        b"GET /hello/Body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
          POST /hello/Chunks HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;x=y\r\nhello\r\n0\r\nTrailer: 1\r\n\r\n\
          GET / HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(conn.response(false).text(), r#"Hello, "Body""#);
    conn.response(false).assert_error(405, "method_not_allowed");
    assert_eq!(conn.response(false).text(), "Welcome to the Hello Service");
}

#[test]
fn slow_request_heads_time_out_with_408() {
    let s = Service::start(&[("HTTP_REQUEST_TIMEOUT_MS", "300")]);
    let started = std::time::Instant::now();
    let out = s.raw(b"GET / HTTP/1.1\r\nHost: x\r\n");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains(r#""code":"request_timeout""#));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let s = Service::start(&[("HTTP_IDLE_TIMEOUT_MS", "300")]);
    let mut conn = Conn::open(s.addr);
    assert_eq!(conn.get("/").status, 200);
    let idle = std::time::Instant::now();
    // Reading blocks until the server closes the connection.
    assert!(conn.is_closed());
    let after = idle.elapsed();
    assert!(
        after >= std::time::Duration::from_millis(250),
        "closed after {after:?}"
    );
    assert!(
        after < std::time::Duration::from_secs(5),
        "closed after {after:?}"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = Service::start(&[]);
    let mut conn = Conn::open(s.addr);
    let mut burst = String::new();
    for i in 0..50 {
        burst.push_str(&format!("GET /hello/p{i} HTTP/1.1\r\nHost: x\r\n\r\n"));
    }
    conn.send_raw(burst.as_bytes());
    for i in 0..50 {
        assert_eq!(conn.response(false).text(), format!(r#"Hello, "p{i}""#));
    }
}

#[test]
fn pipelined_requests_across_lanes_are_answered_in_order() {
    // A listing is answered on a blocking thread, which finds the next requests already sent
    // and hands them back with the connection; a greeting waits for the store lane; the rest
    // are answered on the event loop. One burst, every answer in its place.
    let s = Service::start(&[]);
    let mut conn = Conn::open(s.addr);
    let targets = [
        "/hello/first",
        "/counts",
        "/",
        "/counts?limit=1",
        "/hello/second",
        "/counts",
        "/nowhere",
    ];
    let mut burst = String::new();
    for target in targets {
        burst.push_str(&format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"));
    }
    conn.send_raw(burst.as_bytes());
    assert_eq!(conn.response(false).text(), r#"Hello, "first""#);
    assert_eq!(
        conn.response(false).json()["counts"],
        serde_json::json!([{"name": "first", "count": "1"}])
    );
    assert_eq!(conn.response(false).status, 200);
    assert_eq!(
        conn.response(false).json()["counts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(conn.response(false).text(), r#"Hello, "second""#);
    assert_eq!(
        conn.response(false).json()["counts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(conn.response(false).status, 404);
    // And the connection goes on.
    assert_eq!(conn.get("/hello/third").text(), r#"Hello, "third""#);
}

#[test]
fn a_client_that_ends_its_side_after_its_request_is_answered_and_let_go() {
    // The request and the client's FIN may come in one read's worth: the end of input must
    // still be seen, or the connection would sit open until the idle timeout.
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};
    let s = Service::start(&[("HTTP_IDLE_TIMEOUT_MS", "60000")]);
    for _ in 0..2000 {
        let mut stream = TcpStream::connect(s.addr).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut out = Vec::new();
        let ended = stream.read_to_end(&mut out);
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(ended.is_ok(), "still open after 10 s: {ended:?}");
    }
}

#[test]
fn connection_close_and_http10_are_honoured() {
    let s = Service::start(&[]);
    let mut conn = Conn::open(s.addr);
    conn.send("GET", "/", &[("Connection", "close")]);
    let r = conn.response(false);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(conn.is_closed());

    let out = s.raw(b"GET /counts HTTP/1.0\r\n\r\n");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(!text.contains("chunked"));
    assert!(text.ends_with(r#"{"counts":[]}"#));

    let mut conn = Conn::open(s.addr);
    conn.send_raw(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(
        conn.response(false).header("connection"),
        Some("keep-alive")
    );
    assert_eq!(conn.get("/").status, 200);
}

#[test]
fn logs_have_an_access_line_and_json_mode_is_one_object_per_line() {
    let redis = Redis::start();
    let url = format!("redis://:hunter2secret@127.0.0.1:{}", redis.port);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("hunter2secret")
        .query(&mut redis.connection())
        .unwrap();
    let s = Service::start(&[("REDIS_URL", &url), ("LOG_FORMAT", "json")]);
    assert_eq!(s.get("/hello/Logged").status, 200);
    common::wait_until("the access line", std::time::Duration::from_secs(5), || {
        s.logs().contains("/hello/Logged")
    });
    let logs = s.logs();
    assert!(!logs.contains("hunter2secret"), "{logs}");
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(lines.iter().any(|l| l["msg"]
        .as_str()
        .is_some_and(|m| m.contains("listening on"))));
    let access = lines
        .iter()
        .find(|l| l["path"] == "/hello/Logged")
        .expect("access line");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["status"], 200);
    assert!(access["duration_ms"].as_f64().is_some());
}

#[test]
fn the_date_header_is_an_http_date_of_now() {
    let s = Service::start(&[]);
    let before = std::time::SystemTime::now();
    let r = s.get("/");
    let after = std::time::SystemTime::now();
    let date = r.header("Date").expect("a Date header");
    let date = httpdate::parse_http_date(date).unwrap_or_else(|e| panic!("{date:?}: {e}"));
    // The header has whole seconds, so it may be up to a second before the request.
    let second = std::time::Duration::from_secs(1);
    assert!(before - second <= date && date <= after, "{date:?}");
}
