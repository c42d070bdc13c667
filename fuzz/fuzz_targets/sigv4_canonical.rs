//! SigV4's canonical URI and query (what a signature covers) over arbitrary text.
//! Invariants: no panic; the URI starts with `/`, has no empty, `.` or `..` segment, and only
//! unreserved characters, `/` and `%XX`; the query is sorted, of the same characters and `=`
//! and `&`, and canonical again when canonicalised again.
#![no_main]

use hello::aws::sigv4::{canonical_query, canonical_uri};
use libfuzzer_sys::fuzz_target;

/// Unreserved characters and percent-escapes (two upper-case hex digits) only, plus `extra`.
fn encoded(text: &str, extra: &[u8]) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: Option<&u8>| {
                    c.is_some_and(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
                };
                if !(hex(b.get(i + 1)) && hex(b.get(i + 2))) {
                    return false;
                }
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || b"-._~".contains(&c) || extra.contains(&c) => i += 1,
            _ => return false,
        }
    }
    true
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let uri = canonical_uri(text);
    assert!(uri.starts_with('/'), "{uri:?}");
    assert!(encoded(&uri, b"/"), "{uri:?}");
    let inner = uri.strip_suffix('/').unwrap_or(&uri);
    if !inner.is_empty() {
        assert!(
            inner[1..]
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."),
            "{uri:?}"
        );
    }
    let query = canonical_query(text);
    assert!(encoded(&query, b"=&"), "{query:?}");
    assert_eq!(canonical_query(&query), query, "not canonical again");
    let pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    let mut sorted = pairs.clone();
    sorted.sort_by_key(|p| p.split_once('=').unwrap_or((*p, "")));
    assert_eq!(pairs, sorted);
});
