//! Property tests over the pure parts that see untrusted input: the connection core, the name
//! decoder and Go quoting, the AWS XML parsers, the SigV4 canonicaliser and the Redis reply
//! reader. `make fuzz` runs
//! them with many more cases (PROPTEST_CASES); a failure is kept in
//! `tests/properties.proptest-regressions` and replayed on every run.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use hello::aws::sigv4::{canonical_query, canonical_uri};
use hello::aws::{ec2, elb, xml};
use hello::hello::{go_quote, Name, MAX_NAME_BYTES};
use hello::http::conn::{Conn, Settings};
use hello::http::drive::{drive, Answer, Application, Budget, Script, Stop};
use hello::http::{Exchange, Limits, Rejection, Request, Response, Status};
use hello::store::resp::{read_reply, RedisReply, ServerError};

fn limits() -> Limits {
    Limits::default()
}

/// Answers every request with 200, noting its path.
struct Paths(Vec<String>, Instant);

impl Application for Paths {
    type Wait = Infallible;

    fn now(&self) -> Instant {
        self.1
    }

    fn draining(&self) -> bool {
        false
    }

    fn answer(&mut self, request: &Request<'_>) -> Answer<Infallible> {
        self.0.push(request.path.to_owned());
        Answer::Now(Response::new(Status::Ok, "text/plain", "ok"))
    }

    fn reject(&mut self, _: Rejection) -> Response {
        Response::new(Status::BadRequest, "text/plain", "no")
    }

    fn completed(&mut self, _: &Exchange<'_>) {}
}

/// Drives a connection over `pieces` through the server's loop, one read at a time; returns
/// the paths requested, the bytes sent back, and the most heap it held between reads.
fn converse(pieces: &[&[u8]]) -> (Vec<String>, Vec<u8>, usize) {
    let settings = Arc::new(Settings {
        limits: limits(),
        request_timeout: Duration::from_secs(10),
        min_rate: 0,
        idle_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(10),
    });
    let now = Instant::now();
    let mut conn = Conn::new(settings, "127.0.0.1:1".parse().unwrap(), now);
    let mut app = Paths(Vec::new(), now);
    let mut script = Script::new(&[]);
    let mut most = 0;
    for piece in pieces {
        let mut rest = *piece;
        while !rest.is_empty() {
            let n = conn.read_room().min(rest.len());
            if n == 0 {
                // It takes no more input, so nothing more will happen.
                return (app.0, script.out, most);
            }
            script.push(&rest[..n]);
            rest = &rest[n..];
            let stop = drive(&mut conn, &mut script, &mut app, Budget::UNLIMITED);
            most = most.max(conn.buffered());
            if matches!(stop, Stop::Close) {
                return (app.0, script.out, most);
            }
        }
    }
    (app.0, script.out, most)
}

proptest! {
    #[test]
    fn connections_never_panic_nor_hold_more_than_a_head(
        bytes in proptest::collection::vec(any::<u8>(), 0..20_000),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        at.sort();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in at {
            pieces.push(&bytes[from..cut]);
            from = cut;
        }
        pieces.push(&bytes[from..]);
        let (_, _, most) = converse(&pieces);
        prop_assert!(most <= 2 * limits().head + 4096, "held {} bytes", most);
    }

    #[test]
    fn a_request_split_anywhere_is_answered_once(
        path in "/[a-zA-Z0-9%._~-]{0,40}",
        headers in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,30}"), 0..8),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        chunked in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n");
        for (n, v) in &headers {
            let framing = ["content-length", "transfer-encoding", "host", "connection", "expect"];
            if framing.iter().any(|f| n.eq_ignore_ascii_case(f)) {
                continue;
            }
            request.push_str(&format!("{n}: {}\r\n", v.trim()));
        }
        let mut bytes = if chunked {
            request.push_str("Transfer-Encoding: chunked\r\n\r\n");
            let mut b = request.into_bytes();
            for piece in body.chunks(7) {
                b.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                b.extend_from_slice(piece);
                b.extend_from_slice(b"\r\n");
            }
            b.extend_from_slice(b"0\r\n\r\n");
            b
        } else {
            request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            let mut b = request.into_bytes();
            b.extend_from_slice(&body);
            b
        };
        bytes.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: test\r\n\r\n");
        let cut = cut.index(bytes.len());
        let (paths, out, _) = converse(&[&bytes[..cut], &bytes[cut..]]);
        prop_assert_eq!(paths, vec![path.clone(), "/next".to_owned()]);
        let text = String::from_utf8_lossy(&out);
        prop_assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2);
    }

    #[test]
    fn name_decoding_never_panics_and_keeps_its_promises(segment in "[ -~]{0,300}|(%[0-9a-fA-F]{2}){0,100}") {
        if let Ok(name) = Name::from_segment(&segment) {
            let s = name.as_str();
            prop_assert!(!s.is_empty() && s.len() <= MAX_NAME_BYTES);
            prop_assert!(!s.chars().any(char::is_control));
        }
    }

    #[test]
    fn any_valid_name_round_trips_through_percent_encoding(name in "\\PC{1,60}") {
        prop_assume!(name.len() <= MAX_NAME_BYTES);
        let encoded: String = name.bytes().map(|b| format!("%{b:02X}")).collect();
        let decoded = Name::from_segment(&encoded).unwrap();
        prop_assert_eq!(decoded.as_str(), name.as_str());
    }

    #[test]
    fn go_quoting_escapes_every_quote_backslash_and_control(s in any::<String>()) {
        let q = go_quote(&s);
        prop_assert!(q.starts_with('"') && q.ends_with('"') && q.len() >= 2);
        let inner = &q[1..q.len() - 1];
        prop_assert!(!inner.chars().any(char::is_control), "raw control in {:?}", q);
        // Every quote inside is escaped: no unescaped `"` after removing `\\` pairs.
        let without_escapes = inner.replace("\\\\", "");
        prop_assert!(!without_escapes.replace("\\\"", "").contains('"'));
    }

    #[test]
    fn xml_parsers_never_panic(text in "\\PC{0,400}") {
        let _ = elb::in_service(&text);
        let _ = elb::instance_port(&text);
        let _ = elb::parse_target_health(&text);
        let _ = ec2::parse_instances(&text);
        let _ = xml::error(400, &text);
    }

    #[test]
    fn target_health_is_read_whatever_the_element_order(
        members in proptest::collection::vec((any::<bool>(), 1u16.., 1u32..999_999, any::<bool>()), 0..10),
    ) {
        let mut doc = String::from("<DescribeTargetHealthResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\"><DescribeTargetHealthResult><TargetHealthDescriptions>");
        let mut expected = Vec::new();
        for (healthy, port, id, flip) in &members {
            let target = format!("<Target><Id>i-{id:06x}</Id><Port>{port}</Port></Target>");
            let health = format!("<TargetHealth><State>{}</State></TargetHealth>", if *healthy { "healthy" } else { "unhealthy" });
            let inner = if *flip { format!("{health}\n {target}") } else { format!("{target}<HealthCheckPort>{port}</HealthCheckPort>{health}") };
            doc.push_str(&format!("<member>{inner}</member>"));
            if *healthy {
                expected.push(elb::Target { id: elb::TargetId::Instance(format!("i-{id:06x}")), port: *port });
            }
        }
        doc.push_str("</TargetHealthDescriptions></DescribeTargetHealthResult></DescribeTargetHealthResponse>");
        let (targets, next) = elb::parse_target_health(&doc).unwrap();
        prop_assert_eq!(targets, expected);
        prop_assert_eq!(next, None);
    }

    #[test]
    fn canonical_uri_is_normalised_and_encoded(path in "[ -~ሴé]{0,80}") {
        let c = canonical_uri(&path);
        prop_assert!(c.starts_with('/'));
        prop_assert!(!c.contains("//"));
        prop_assert!(c.split('/').all(|seg| seg != "." && seg != ".."));
        prop_assert!(c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~%/".contains(&b)));
        // Normalising twice changes nothing but the (now doubled) encoding.
        let again = canonical_uri(&c);
        prop_assert_eq!(again.matches('/').count(), c.matches('/').count());
    }

    #[test]
    fn canonical_query_is_sorted_and_idempotent(query in "[a-zA-Z0-9=&%._~+ -]{0,80}") {
        let c = canonical_query(&query);
        prop_assert_eq!(canonical_query(&c), c.clone());
        let pairs: Vec<&str> = if c.is_empty() { vec![] } else { c.split('&').collect() };
        let mut sorted: Vec<(&str, &str)> = pairs.iter().map(|p| p.split_once('=').unwrap()).collect();
        let original = sorted.clone();
        sorted.sort();
        prop_assert_eq!(sorted, original);
    }
}

/// Replies as Redis sends them, nested up to three levels.
fn reply() -> impl Strategy<Value = RedisReply> {
    let leaf = prop_oneof![
        "[ -~]{0,20}".prop_map(RedisReply::Status),
        "[A-Z]{1,10}( [ -~]{0,20})?".prop_map(|line| RedisReply::Error(ServerError { line })),
        any::<i64>().prop_map(RedisReply::Integer),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(RedisReply::Bulk),
        Just(RedisReply::Nil),
    ];
    leaf.prop_recursive(3, 64, 8, |inner| {
        proptest::collection::vec(inner, 0..8).prop_map(RedisReply::Array)
    })
}

fn encode(reply: &RedisReply, out: &mut Vec<u8>) {
    match reply {
        RedisReply::Status(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
        RedisReply::Error(e) => out.extend_from_slice(format!("-{}\r\n", e.line).as_bytes()),
        RedisReply::Integer(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
        RedisReply::Bulk(b) => {
            out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        RedisReply::Array(items) => {
            out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            for item in items {
                encode(item, out);
            }
        }
        RedisReply::Nil => out.extend_from_slice(b"$-1\r\n"),
    }
}

proptest! {
    #[test]
    fn redis_replies_never_panic_the_reader(bytes in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        let mut stream = &bytes[..];
        while read_reply(&mut stream).is_ok() && !stream.is_empty() {}
    }

    #[test]
    fn redis_replies_read_back_whole_however_the_bytes_arrive(
        replies in proptest::collection::vec(reply(), 1..6),
        buffer in 1usize..64,
    ) {
        let mut bytes = Vec::new();
        for r in &replies {
            encode(r, &mut bytes);
        }
        // A tiny buffer makes lines and bulk strings straddle reads.
        let mut stream = std::io::BufReader::with_capacity(buffer, &bytes[..]);
        for r in &replies {
            prop_assert_eq!(&read_reply(&mut stream).unwrap(), r);
        }
        prop_assert!(read_reply(&mut stream).is_err());
    }
}
