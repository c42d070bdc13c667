//! Request heads: finding their end as bytes arrive, and parsing them.
//! Invariants: no panic; scanning in two pieces finds what scanning at once finds; a head found
//! lies within the bytes; a parsed target is `*` (OPTIONS alone) or a path starting with `/`,
//! with no fragment; the request view reads back every field.
//!
//! Input: a byte saying where to split, then the bytes.
#![no_main]

use hello::http::request::{parse, HeadScanner};
use hello::http::Limits;
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    request_line: 128,
    head: 512,
    body: 1024,
};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, buf)) = data.split_first() else {
        return;
    };
    let mut once = HeadScanner::default();
    let whole = once.scan(buf, &LIMITS);
    let cut = usize::from(cut).min(buf.len());
    let mut scanner = HeadScanner::default();
    let first = scanner.scan(&buf[..cut], &LIMITS);
    let split = match first {
        Ok(None) => scanner.scan(buf, &LIMITS),
        // Found or refused already: the whole must agree where the head ends or that it is bad.
        other => other,
    };
    assert_eq!(whole, split, "cut at {cut}");
    let Ok(Some(len)) = whole else {
        return;
    };
    assert!(len <= buf.len() && len <= LIMITS.head);
    let Ok(head) = parse(&once, buf, len) else {
        return;
    };
    let request = head.request(buf);
    if request.path == "*" {
        assert_eq!(request.method, "OPTIONS");
        assert_eq!(request.query, None);
    } else {
        assert!(request.path.starts_with('/'), "path {:?}", request.path);
    }
    assert!(!request.path.contains('#') && !request.query.is_some_and(|q| q.contains('#')));
    assert!(!request.method.is_empty() && request.method.len() <= 32);
    for value in request.header_values("host") {
        assert!(value.len() < len);
    }
});
