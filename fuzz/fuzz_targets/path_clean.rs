//! Path cleaning and redirect Locations.
//! Invariants: cleaning is idempotent; a cleaned path starts with `/` and never with `//`; the
//! Location built from it, resolved by WHATWG's rules, never leaves the host, and is itself
//! canonical (following it redirects no more).
//!
//! Input: the path (UTF-8; `/` put in front when missing), then optionally `?` and a query.
#![no_main]

use hello::http::path::{clean, location};
use libfuzzer_sys::fuzz_target;

/// Whether `reference`, resolved against an http(s) base by the WHATWG URL Standard, names
/// another host (or another scheme, which is worse). The steps that decide it: leading and
/// trailing C0 controls and spaces are stripped and every tab and newline removed; then a
/// scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"`) makes it absolute; otherwise two
/// leading characters each `/` or `\` (the same in a special scheme) start an authority.
fn leaves_host(reference: &str) -> bool {
    let trimmed = reference.trim_matches(|c: char| c <= ' ');
    let input: Vec<char> = trimmed
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let slash = |c: Option<&char>| matches!(c, Some('/' | '\\'));
    if slash(input.first()) && slash(input.get(1)) {
        return true;
    }
    if input.first().is_some_and(char::is_ascii_alphabetic) {
        let scheme_end = input
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')));
        return scheme_end.is_some_and(|i| input[i] == ':');
    }
    false
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text, None),
    };
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let cleaned = clean(&path);
    assert!(
        cleaned.starts_with('/') && !cleaned.starts_with("//"),
        "{cleaned:?}"
    );
    assert_eq!(clean(&cleaned), cleaned, "not idempotent");
    let loc = location(&cleaned, query);
    assert!(
        !leaves_host(&loc),
        "{path:?} → Location {loc:?} leaves the host"
    );
    assert!(loc.is_ascii() && !loc.contains('\\'));
    let loc_path = loc.split_once('?').map_or(loc.as_str(), |(p, _)| p);
    assert_eq!(
        clean(loc_path),
        loc_path,
        "following {loc:?} redirects again"
    );
});
