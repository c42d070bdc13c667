//! The connection core's tests: bytes split at every offset, limits at N and N+1, deadlines on a
//! test clock, and the order in which requests are handed out and answered. They drive the core
//! through the same loop the server uses ([`drive`]), over a [`Script`].

use std::convert::Infallible;

use super::*;
use crate::http::drive::{drive, resume, Answer, Application, Budget, Script, Stop};
use crate::http::response::pieces::Pieces;
use crate::http::Status;

const START: Duration = Duration::ZERO;

fn settings() -> Arc<Settings> {
    Arc::new(Settings {
        limits: Limits {
            request_line: 64,
            head: 128,
            body: 32,
        },
        request_timeout: Duration::from_secs(10),
        min_rate: 0,
        idle_timeout: Duration::from_secs(75),
        write_timeout: Duration::from_secs(5),
    })
}

/// A test clock: `at(s)` is `s` seconds after the connection opened.
struct Clock(Instant);

impl Clock {
    fn at(&self, d: Duration) -> Instant {
        self.0 + d
    }
}

fn open() -> (Conn, Clock) {
    let t0 = Instant::now();
    (
        Conn::new(settings(), "127.0.0.1:9".parse().unwrap(), t0),
        Clock(t0),
    )
}

/// What a client saw: the requests the application got (method and path), the exchanges
/// recorded (status and path), the bytes sent back, and whether the connection closed.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    requests: Vec<String>,
    responses: Vec<(u16, String)>,
    out: String,
    closed: bool,
}

/// Answers every request with its path (or a stream for `/stream`, one that fails midway for
/// `/broken`) and every refusal with its status, at a fixed time, noting what it saw.
struct Replies<'a> {
    now: Instant,
    seen: &'a mut Seen,
}

impl Application for Replies<'_> {
    type Wait = Infallible;

    fn now(&self) -> Instant {
        self.now
    }

    fn draining(&self) -> bool {
        false
    }

    fn answer(&mut self, r: &Request<'_>) -> Answer<Infallible> {
        self.seen.requests.push(format!("{} {}", r.method, r.path));
        Answer::Now(match r.path {
            "/stream" => Response::stream(
                Status::Ok,
                "text/plain",
                Box::new(Pieces(vec![Ok("ab"), Ok(""), Ok("cde")])),
            ),
            "/broken" => Response::stream(
                Status::Ok,
                "text/plain",
                Box::new(Pieces(vec![Ok("ab"), Err(())])),
            ),
            path => Response::new(Status::Ok, "text/plain", path),
        })
    }

    fn reject(&mut self, r: Rejection) -> Response {
        Response::new(status_of(r), "text/plain", "refused")
    }

    fn completed(&mut self, e: &Exchange<'_>) {
        self.seen
            .responses
            .push((e.status.code(), e.path.to_owned()));
    }
}

fn status_of(r: Rejection) -> Status {
    match r {
        Rejection::BadRequest(_) => Status::BadRequest,
        Rejection::UriTooLong => Status::UriTooLong,
        Rejection::HeadersTooLarge => Status::RequestHeaderFieldsTooLarge,
        Rejection::PayloadTooLarge => Status::ContentTooLarge,
        Rejection::NotImplemented(_) => Status::NotImplemented,
        Rejection::VersionNotSupported => Status::HttpVersionNotSupported,
        _ => Status::InternalServerError,
    }
}

/// Drives the connection over what `script` has to read, until it would block or closes.
fn exchange(conn: &mut Conn, now: Instant, script: &mut Script<'_>, seen: &mut Seen) {
    let stop = drive(conn, script, &mut Replies { now, seen }, Budget::UNLIMITED);
    seen.out
        .push_str(&String::from_utf8_lossy(&mem::take(&mut script.out)));
    seen.closed |= matches!(stop, Stop::Close);
}

/// Drives the connection over the bytes it has already received.
fn run(conn: &mut Conn, now: Instant, seen: &mut Seen) {
    exchange(conn, now, &mut Script::new(&[]), seen);
}

/// A new connection fed `pieces`, each read on its own.
fn feed(pieces: &[&[u8]]) -> Seen {
    let (mut conn, clock) = open();
    let mut seen = Seen::default();
    exchange(
        &mut conn,
        clock.at(START),
        &mut Script::new(pieces),
        &mut seen,
    );
    seen
}

const GET_A: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";

#[test]
fn a_request_split_at_every_offset_is_answered_once() {
    let whole = feed(&[GET_A]);
    assert_eq!(whole.requests, ["GET /a"]);
    assert!(whole.out.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(whole.out.ends_with("Content-Length: 2\r\n\r\n/a"));
    assert!(!whole.closed);
    for cut in 0..=GET_A.len() {
        let split = feed(&[&GET_A[..cut], &GET_A[cut..]]);
        assert_eq!(split.requests, whole.requests, "cut at {cut}");
        assert_eq!(split.responses, whole.responses, "cut at {cut}");
    }
    let bytewise: Vec<&[u8]> = GET_A.chunks(1).collect();
    assert_eq!(feed(&bytewise).requests, ["GET /a"]);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut piped = Vec::new();
    for p in ["/1", "/2", "/3"] {
        piped.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    }
    let seen = feed(&[&piped]);
    assert_eq!(seen.requests, ["GET /1", "GET /2", "GET /3"]);
    for cut in 0..piped.len() {
        let split = feed(&[&piped[..cut], &piped[cut..]]);
        assert_eq!(split.requests, seen.requests, "cut at {cut}");
    }
}

#[test]
fn bodies_are_thrown_away_as_they_arrive_and_the_next_request_follows() {
    let req = b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    for cut in 0..req.len() {
        let seen = feed(&[&req[..cut], &req[cut..]]);
        assert_eq!(seen.requests, ["GET /a", "GET /b"], "cut at {cut}");
    }
    let chunked = b"GET /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    for cut in 0..chunked.len() {
        let seen = feed(&[&chunked[..cut], &chunked[cut..]]);
        assert_eq!(seen.requests, ["GET /a", "GET /b"], "cut at {cut}");
    }
    // Body bytes are never held: only the head is, even when much of the body came in the
    // same read as the head.
    let big = Arc::new(Settings {
        limits: Limits::default(),
        ..(*settings()).clone()
    });
    let now = Instant::now();
    let mut conn = Conn::new(big, "127.0.0.1:9".parse().unwrap(), now);
    let mut seen = Seen::default();
    let head = b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 65536\r\n\r\n";
    conn.receive(&[&head[..], &[b'x'; 16_000]].concat(), now);
    run(&mut conn, now, &mut seen);
    assert!(conn.buffered() < 1024, "{}", conn.buffered());
    let (mut conn, clock) = open();
    let mut seen = Seen::default();
    conn.receive(
        b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 30\r\n\r\n",
        clock.at(START),
    );
    run(&mut conn, clock.at(START), &mut seen);
    let held = conn.input.len();
    conn.receive(&[b'x'; 29], clock.at(START));
    run(&mut conn, clock.at(START), &mut seen);
    assert_eq!(conn.input.len(), held);
    assert!(seen.requests.is_empty());
    conn.receive(b"x", clock.at(START));
    run(&mut conn, clock.at(START), &mut seen);
    assert_eq!(seen.requests, ["GET /a"]);
}

#[test]
fn limits_hold_at_n_and_refuse_at_n_plus_one() {
    let line = |len: usize| format!("GET /{} HTTP/1.1\r\n", "a".repeat(len - 16));
    let with_host = |line: String| format!("{line}Host: h\r\n\r\n");
    assert_eq!(feed(&[with_host(line(64)).as_bytes()]).requests.len(), 1);
    let refused = feed(&[with_host(line(65)).as_bytes()]);
    assert!(refused.out.starts_with("HTTP/1.1 414 "), "{}", refused.out);
    assert!(refused.out.contains("Connection: close\r\n") && refused.closed);

    let head = |len: usize| {
        let base = "GET / HTTP/1.1\r\nHost: h\r\nX: \r\n\r\n".len();
        format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "v".repeat(len - base)
        )
    };
    assert_eq!(feed(&[head(128).as_bytes()]).requests.len(), 1);
    assert!(feed(&[head(129).as_bytes()])
        .out
        .starts_with("HTTP/1.1 431 "));
    // However the bytes arrive, no more than the limit and one byte is held.
    let big = head(400);
    let (mut conn, clock) = open();
    let mut seen = Seen::default();
    let mut script = Script::new(&[]);
    for piece in big.as_bytes().chunks(7) {
        script.push(piece);
        exchange(&mut conn, clock.at(START), &mut script, &mut seen);
        assert!(conn.input.len() <= 129);
        if seen.closed {
            break;
        }
    }
    assert!(seen.out.starts_with("HTTP/1.1 431 "), "{}", seen.out);

    let body = |n: usize| {
        format!(
            "GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: {n}\r\n\r\n{}",
            "b".repeat(n)
        )
    };
    assert_eq!(feed(&[body(32).as_bytes()]).requests, ["GET /a"]);
    assert!(feed(&[body(33).as_bytes()])
        .out
        .starts_with("HTTP/1.1 413 "));
}

#[test]
fn leading_empty_lines_count_toward_the_request_line() {
    let seen = feed(&[b"\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n"]);
    assert_eq!(seen.requests, ["GET /a"]);
    let long = format!(
        "\r\n\r\nGET /{} HTTP/1.1\r\nHost: h\r\n\r\n",
        "a".repeat(46)
    );
    assert!(feed(&[long.as_bytes()]).out.starts_with("HTTP/1.1 414 "));
    let many = [b"\r\n".repeat(9), GET_A.to_vec()].concat();
    let seen = feed(&[&many]);
    assert!(seen.out.starts_with("HTTP/1.1 400 ") && seen.requests.is_empty());
}

#[test]
fn every_connection_form_is_honoured_and_said() {
    let cases: [(&str, bool); 8] = [
        ("GET /a HTTP/1.1\r\nHost: h\r\n\r\n", true),
        (
            "GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            "GET /a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            "GET /a HTTP/1.1\r\nHost: h\r\nConnection: te, Close\r\n\r\n",
            false,
        ),
        ("GET /a HTTP/1.0\r\n\r\n", false),
        ("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (
            "GET /a HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            false,
        ),
        ("GET /a HTTP/1.2\r\nHost: h\r\n\r\n", true),
    ];
    for (request, kept) in cases {
        let next = b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
        let seen = feed(&[&[request.as_bytes(), next].concat()]);
        assert_eq!(seen.closed, !kept, "{request:?}");
        assert_eq!(seen.requests.len(), if kept { 2 } else { 1 }, "{request:?}");
        let said_close = seen.out.contains("Connection: close\r\n");
        assert_eq!(said_close, !kept, "{request:?}");
        assert!(seen.out.starts_with("HTTP/1.1 200 OK"), "{request:?}");
    }
}

#[test]
fn streams_are_chunked_or_end_with_the_connection() {
    let seen = feed(&[b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n"]);
    assert!(
        seen.out
            .ends_with("Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
        "{}",
        seen.out
    );
    assert!(!seen.closed);
    assert_eq!(seen.responses, [(200, "/stream".to_owned())]);
    let old = feed(&[b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]);
    assert!(
        old.out.ends_with("Connection: close\r\n\r\nabcde"),
        "{}",
        old.out
    );
    assert!(old.closed);
    // HEAD sends no body, so an HTTP/1.0 keep-alive connection stays, and says so.
    let head =
        feed(&[b"HEAD /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /a HTTP/1.0\r\n\r\n"]);
    assert!(
        head.out
            .contains("Connection: keep-alive\r\n\r\nHTTP/1.1 200 OK"),
        "{}",
        head.out
    );
    assert_eq!(head.requests, ["HEAD /stream", "GET /a"]);
    // A stream that fails midway is cut short: no last chunk, and the connection closes.
    let broken =
        feed(&[b"GET /broken HTTP/1.1\r\nHost: h\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n"]);
    assert!(broken.out.ends_with("2\r\nab\r\n"), "{}", broken.out);
    assert!(broken.closed);
    assert_eq!(broken.requests, ["GET /broken"]);
    // It is still recorded, with the status its head said and the bytes that went.
    assert_eq!(broken.responses, [(200, "/broken".to_owned())]);
}

#[test]
fn framing_faults_are_refused_and_close() {
    for (request, status) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "400"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n0\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "501"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "400"),
        (b"GET / HTTP/2.0\r\n\r\n", "505"),
    ] {
        let mut piped = request.to_vec();
        piped.extend_from_slice(GET_A);
        let seen = feed(&[&piped]);
        assert!(seen.out.starts_with(&format!("HTTP/1.1 {status} ")), "{request:?}: {}", seen.out);
        assert!(seen.closed && seen.requests.is_empty(), "{request:?}");
        assert!(seen.out.contains("Connection: close"));
        assert_eq!(seen.responses, [(status.parse().unwrap(), "-".to_owned())]);
    }
}

#[test]
fn expect_100_continue_gets_its_answer_at_once_and_the_connection_closes() {
    let seen = feed(&[
        b"GET /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 20\r\n\r\n",
    ]);
    assert_eq!(seen.requests, ["GET /a"]);
    assert!(seen.out.starts_with("HTTP/1.1 200 OK") && !seen.out.contains("100 Continue"));
    assert!(seen.out.contains("Connection: close") && seen.closed);
    // Without a body there is nothing to wait for: the connection stays.
    let seen = feed(&[b"GET /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n"]);
    assert!(!seen.closed);
}

#[test]
fn the_request_deadline_starts_with_the_first_byte_and_never_moves() {
    let (mut conn, clock) = open();
    let mut seen = Seen::default();
    // A new connection gets the request timeout to start.
    assert_eq!(
        conn.deadline(),
        (clock.at(Duration::from_secs(10)), Expiry::Idle)
    );
    run(&mut conn, clock.at(START), &mut seen);
    conn.receive(b"G", clock.at(Duration::from_secs(3)));
    let deadline = (clock.at(Duration::from_secs(13)), Expiry::Request);
    assert_eq!(conn.deadline(), deadline);
    for (i, byte) in b"ET /a HTTP/1.1\r\nHost: h\r\n".iter().enumerate() {
        let now = clock.at(Duration::from_millis(3_100 + 100 * i as u64));
        conn.receive(&[*byte], now);
        run(&mut conn, now, &mut seen);
        assert_eq!(conn.deadline(), deadline, "after byte {i}");
    }
    // A body trickles under the same deadline.
    conn.receive(
        b"Content-Length: 3\r\n\r\nab",
        clock.at(Duration::from_secs(9)),
    );
    run(&mut conn, clock.at(Duration::from_secs(9)), &mut seen);
    assert_eq!(conn.deadline(), deadline);
    conn.receive(b"c", clock.at(Duration::from_secs(12)));
    run(&mut conn, clock.at(Duration::from_secs(12)), &mut seen);
    assert_eq!(seen.requests, ["GET /a"]);
    // Between requests: the idle timeout, from the end of the response.
    assert_eq!(
        conn.deadline(),
        (clock.at(Duration::from_secs(87)), Expiry::Idle)
    );
}

/// A connection that got `GET /a` and, at once, `response` for it.
fn answering(response: Response, draining: bool) -> (Conn, Clock) {
    let (mut conn, clock) = open();
    conn.receive(GET_A, clock.at(START));
    let Event::Request(pending) = conn.poll(clock.at(START)) else {
        panic!("a request")
    };
    conn.respond(pending, response, clock.at(START), draining);
    (conn, clock)
}

#[test]
fn a_response_deadline_moves_only_when_bytes_leave() {
    let (mut conn, clock) = answering(Response::new(Status::Ok, "text/plain", "0123456789"), false);
    assert_eq!(
        conn.deadline(),
        (clock.at(Duration::from_secs(5)), Expiry::Write)
    );
    let Event::Send(bytes) = conn.poll(clock.at(START)) else {
        panic!("bytes to send")
    };
    let total = bytes.len();
    conn.sent(0, clock.at(Duration::from_secs(2)));
    assert_eq!(conn.deadline().0, clock.at(Duration::from_secs(5)));
    conn.sent(4, clock.at(Duration::from_secs(3)));
    assert_eq!(conn.deadline().0, clock.at(Duration::from_secs(8)));
    let Event::Send(rest) = conn.poll(clock.at(Duration::from_secs(3))) else {
        panic!("the rest")
    };
    assert_eq!(rest.len(), total - 4);
    // An abandoned response is still recorded.
    let e = conn.exchange(clock.at(Duration::from_secs(4))).unwrap();
    assert_eq!(
        (e.method, e.path, e.status.code(), e.bytes),
        ("GET", "/a", 200, 10)
    );
    assert_eq!(e.elapsed, Duration::from_secs(4));
}

#[test]
fn an_idle_connection_holds_no_large_buffer() {
    let (mut conn, clock) = open();
    let mut seen = Seen::default();
    let body = format!(
        "GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 32\r\n\r\n{}",
        "b".repeat(32)
    );
    conn.receive(body.as_bytes(), clock.at(START));
    run(&mut conn, clock.at(START), &mut seen);
    assert_eq!(seen.requests, ["GET /a"]);
    assert!(
        conn.buffered() <= 2 * crate::http::KEPT_BUFFER,
        "{}",
        conn.buffered()
    );
    assert!(conn.awaits_request());
}

#[test]
fn end_of_file_closes_after_the_answer_or_at_once() {
    let (mut conn, clock) = open();
    let mut seen = Seen::default();
    conn.receive(GET_A, clock.at(START));
    conn.receive_eof();
    run(&mut conn, clock.at(START), &mut seen);
    assert_eq!(seen.requests, ["GET /a"]);
    assert!(seen.out.contains("Connection: close") && seen.closed);
    let (mut conn, clock) = open();
    let mut seen = Seen::default();
    conn.receive(b"GET /a HT", clock.at(START));
    conn.receive_eof();
    run(&mut conn, clock.at(START), &mut seen);
    assert!(seen.closed && seen.out.is_empty());
}

#[test]
fn draining_answers_with_close() {
    let (mut conn, clock) = answering(Response::new(Status::Ok, "text/plain", "x"), true);
    let Event::Send(bytes) = conn.poll(clock.at(START)) else {
        panic!("bytes")
    };
    assert!(String::from_utf8_lossy(bytes).contains("Connection: close"));
    assert!(!conn.awaits_request());
}

#[test]
fn a_request_is_handed_out_once_and_the_connection_waits_for_its_answer() {
    let (mut conn, clock) = open();
    let now = clock.at(START);
    conn.receive(GET_A, now);
    let Event::Request(pending) = conn.poll(now) else {
        panic!("a request")
    };
    assert_eq!(pending.request().path, "/a");
    // Until it is answered: nothing to hand out again, nothing to read, nothing to send.
    for _ in 0..3 {
        assert!(matches!(conn.poll(now), Event::Answering));
        assert_eq!(conn.read_room(), 0);
        assert!(conn.exchange(now).is_none());
    }
    // Bytes that arrive meanwhile wait behind the request and are answered after it.
    conn.receive(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n", now);
    conn.respond(
        pending,
        Response::new(Status::Ok, "text/plain", "a"),
        now,
        false,
    );
    let mut seen = Seen::default();
    run(&mut conn, now, &mut seen);
    assert_eq!(seen.requests, ["GET /b"]);
    assert_eq!(
        seen.responses,
        [(200, "/a".to_owned()), (200, "/b".to_owned())]
    );
    assert_eq!(seen.out.matches("HTTP/1.1 200 OK").count(), 2);
}

/// Holds back every request, as a blocking thread does with a pipelined one.
struct Holds(Vec<String>);

impl Application for Holds {
    type Wait = ();

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn draining(&self) -> bool {
        false
    }

    fn answer(&mut self, r: &Request<'_>) -> Answer<()> {
        self.0.push(r.path.to_owned());
        Answer::Later(())
    }

    fn reject(&mut self, r: Rejection) -> Response {
        Response::new(status_of(r), "text/plain", "refused")
    }

    fn completed(&mut self, _: &Exchange<'_>) {}
}

#[test]
fn a_held_request_is_answered_when_resumed_and_the_next_ones_follow_in_order() {
    let (mut conn, clock) = open();
    let piped = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut script = Script::new(&[piped]);
    let Stop::Held(pending, ()) = drive(
        &mut conn,
        &mut script,
        &mut Holds(Vec::new()),
        Budget::UNLIMITED,
    ) else {
        panic!("the first request held")
    };
    assert!(script.out.is_empty());
    let mut seen = Seen::default();
    let mut replies = Replies {
        now: clock.at(START),
        seen: &mut seen,
    };
    let stop = resume(
        &mut conn,
        pending,
        &mut script,
        &mut replies,
        Budget::UNLIMITED,
    );
    assert!(matches!(stop, Stop::Park));
    assert_eq!(seen.requests, ["GET /1", "GET /2"]);
    let out = String::from_utf8_lossy(&script.out);
    let first = out.find("\r\n\r\n/1").unwrap();
    let second = out.find("\r\n\r\n/2").unwrap();
    assert!(first < second, "{out}");
}

#[test]
fn a_refusal_is_answered_once_and_closes() {
    let (mut conn, clock) = open();
    let now = clock.at(START);
    conn.receive(
        b"GET / HTTP/2.0\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n",
        now,
    );
    let Event::Refuse(refusal) = conn.poll(now) else {
        panic!("a refusal")
    };
    assert_eq!(refusal.rejection(), Rejection::VersionNotSupported);
    assert!(matches!(conn.poll(now), Event::Answering));
    conn.refuse(
        refusal,
        Response::new(Status::HttpVersionNotSupported, "text/plain", "no"),
        now,
    );
    let mut seen = Seen::default();
    run(&mut conn, now, &mut seen);
    assert!(seen.out.starts_with("HTTP/1.1 505 "), "{}", seen.out);
    assert!(seen.out.contains("Connection: close\r\n") && seen.closed);
    assert!(seen.requests.is_empty());
}

/// A connection held to a minimum rate of 500 bytes a second.
fn open_with_min_rate() -> (Conn, Clock) {
    let t0 = Instant::now();
    let settings = Arc::new(Settings {
        min_rate: 500,
        ..(*settings()).clone()
    });
    (
        Conn::new(settings, "127.0.0.1:9".parse().unwrap(), t0),
        Clock(t0),
    )
}

#[test]
fn a_trickled_request_must_keep_up_the_minimum_rate_after_its_grace() {
    let (mut conn, clock) = open_with_min_rate();
    let mut seen = Seen::default();
    // A new connection that has sent nothing is not held to a rate.
    assert_eq!(
        conn.deadline(),
        (clock.at(Duration::from_secs(10)), Expiry::Idle)
    );
    // The first byte at 2 s: the grace, then a second more for each 500 bytes.
    let first = clock.at(Duration::from_secs(2));
    conn.receive(b"GET /a HTTP/1.1\r\n", first);
    run(&mut conn, first, &mut seen);
    let bought = Duration::from_millis(17 * 1000 / 500);
    assert_eq!(
        conn.deadline(),
        (first + MIN_RATE_GRACE + bought, Expiry::Request)
    );
    // 500 more bytes buy a second more, never past the request's own deadline.
    let later = clock.at(Duration::from_millis(2_500));
    conn.receive(&[b'x'; 500], later);
    assert_eq!(
        conn.deadline(),
        (
            first + MIN_RATE_GRACE + bought + Duration::from_secs(1),
            Expiry::Request
        )
    );
    conn.receive(&[b'x'; 5_000], later);
    assert_eq!(
        conn.deadline(),
        (clock.at(Duration::from_secs(12)), Expiry::Request)
    );
    // Unset, the request's own deadline alone.
    let (mut conn, clock) = open();
    conn.receive(b"G", clock.at(START));
    assert_eq!(
        conn.deadline(),
        (clock.at(Duration::from_secs(10)), Expiry::Request)
    );
}

#[test]
fn a_pipelined_request_is_held_to_the_rate_from_when_it_starts() {
    let (mut conn, clock) = open_with_min_rate();
    let mut seen = Seen::default();
    let now = clock.at(Duration::from_secs(1));
    conn.receive(
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n",
        now,
    );
    run(&mut conn, now, &mut seen);
    assert_eq!(seen.requests, ["GET /a"]);
    // The second request's 17 bytes arrived with the first's; its clock starts when the first
    // is answered, not when the connection opened.
    assert_eq!(
        conn.deadline(),
        (
            now + MIN_RATE_GRACE + Duration::from_millis(17 * 1000 / 500),
            Expiry::Request
        )
    );
}

#[test]
fn connections_say_when_a_close_would_leave_the_client_s_bytes_unread() {
    // Refused with the rest of a large head still coming.
    let (mut conn, clock) = open();
    let now = clock.at(START);
    conn.receive(b"GET / HTTP/2.0\r\n\r\n", now);
    let Event::Refuse(refusal) = conn.poll(now) else {
        panic!("a refusal")
    };
    conn.refuse(
        refusal,
        Response::new(Status::HttpVersionNotSupported, "text/plain", "no"),
        now,
    );
    run(&mut conn, now, &mut Seen::default());
    assert!(conn.closes_with_input_unread());
    // The same after the client ended its side: nothing more can come.
    conn.receive_eof();
    assert!(!conn.closes_with_input_unread());
    // Cut off mid-request (its deadline passed).
    let (mut conn, clock) = open();
    conn.receive(b"GET / HTT", clock.at(START));
    run(&mut conn, clock.at(START), &mut Seen::default());
    assert!(conn.closes_with_input_unread());
    // Answered whole and closed by `Connection: close`: nothing left to read.
    let (mut conn, clock) = open();
    conn.receive(
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        clock.at(START),
    );
    let mut seen = Seen::default();
    run(&mut conn, clock.at(START), &mut seen);
    assert!(seen.closed);
    assert!(!conn.closes_with_input_unread());
}

#[test]
fn only_a_connection_that_never_sent_a_byte_is_silent() {
    let (mut conn, clock) = open();
    assert!(conn.is_silent() && !conn.is_idle());
    conn.receive(b"GET /a HTTP/1.1\r\nHost: h\r\n", clock.at(START));
    run(&mut conn, clock.at(START), &mut Seen::default());
    assert!(!conn.is_silent() && !conn.is_idle());
    conn.receive(b"\r\n", clock.at(START));
    run(&mut conn, clock.at(START), &mut Seen::default());
    // Answered and kept alive: idle, which is not silent.
    assert!(conn.is_idle() && !conn.is_silent());
}

#[test]
fn a_budget_stops_a_busy_connection_where_it_wants_input_and_it_goes_on_from_there() {
    let (mut conn, clock) = open();
    let piped = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n".repeat(5);
    let mut script = Script::new(&[&piped]);
    let mut seen = Seen::default();
    let mut replies = Replies {
        now: clock.at(START),
        seen: &mut seen,
    };
    let two = Budget {
        requests: 2,
        bytes: usize::MAX,
    };
    assert!(matches!(
        drive(&mut conn, &mut script, &mut replies, two),
        Stop::Yield
    ));
    assert_eq!(replies.seen.requests.len(), 2);
    // Each answer went out before the yield.
    assert_eq!(
        String::from_utf8_lossy(&script.out)
            .matches("HTTP/1.1 200")
            .count(),
        2
    );
    assert!(matches!(
        drive(&mut conn, &mut script, &mut replies, two),
        Stop::Yield
    ));
    assert!(matches!(
        drive(&mut conn, &mut script, &mut replies, two),
        Stop::Park
    ));
    assert_eq!(replies.seen.requests.len(), 5);
    // Bytes count too: a budget of 40 bytes reads one 28-byte request and a little more.
    let (mut conn, clock) = open();
    let mut script = Script::new(&[&piped]);
    let mut seen = Seen::default();
    let mut replies = Replies {
        now: clock.at(START),
        seen: &mut seen,
    };
    let bytes = Budget {
        requests: u32::MAX,
        bytes: 40,
    };
    assert!(matches!(
        drive(&mut conn, &mut script, &mut replies, bytes),
        Stop::Yield
    ));
    assert_eq!(replies.seen.requests, ["GET /1"]);
}
