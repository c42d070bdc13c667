//! Request paths in canonical form: no empty segments and no dot segments, also when the dots
//! are percent-encoded, as the original service's router cleaned them (Go's `path.Clean`, with a
//! trailing slash kept). Segments stay percent-encoded, so `%2F` inside one stays part of it.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The canonical form of `path` (which starts with `/`): borrowed when it already is.
pub fn clean(path: &str) -> Cow<'_, str> {
    // Most paths are clean already: say so without building anything.
    let trailing = path.len() > 1 && path.ends_with('/');
    let body = if trailing {
        &path[..path.len() - 1]
    } else {
        path
    };
    if body == "/" && !trailing
        || body
            .split('/')
            .skip(1)
            .all(|s| !s.is_empty() && dots(s).is_none())
    {
        return Cow::Borrowed(path);
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut changed = false;
    for segment in path.split('/').skip(1) {
        match dots(segment) {
            Some(1) => {
                changed = true;
            }
            Some(2) => {
                changed = true;
                kept.pop();
            }
            _ if segment.is_empty() => changed = true,
            _ => kept.push(segment),
        }
    }
    if !changed {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    }
}

/// The `Location` of a redirect to the canonical `clean` path (from [`clean`]), with the
/// request's query kept. A browser reads it with the WHATWG URL rules, under which `\` is `/`
/// in an http(s) URL: `/\evil.example` (what `/./\evil.example` cleans to) would be
/// `//evil.example`, another host. So a backslash, which a segment keeps as data (curl sends
/// `/hello/a\b` as it is, and the name is `a\b`), is written `%5C` here: the browser then
/// asks for the same name, and no Location can start with two slashes of either kind. Bytes
/// past ASCII are percent-encoded too, so that the header is ASCII whatever the path was.
/// Encoding creates no empty or dot segment, so the Location is canonical: no second redirect.
pub fn location(clean: &str, query: Option<&str>) -> String {
    let mut out = String::with_capacity(clean.len() + query.map_or(0, |q| q.len() + 1));
    encode_into(&mut out, clean);
    if let Some(q) = query {
        out.push('?');
        encode_into(&mut out, q);
    }
    out
}

fn encode_into(out: &mut String, text: &str) {
    for &b in text.as_bytes() {
        // Controls and spaces too, though a request target has none: WHATWG drops a tab or
        // newline anywhere, which would let `/\t/x` read as `//x`.
        if b == b'\\' || b <= b' ' || b >= 0x7f {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
}

/// `Some(1)` for `.`, `Some(2)` for `..`, also percent-encoded (`%2e`, `%2E`); `None` else.
fn dots(segment: &str) -> Option<usize> {
    let mut rest = segment.as_bytes();
    let mut n = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return None,
        };
        n += 1;
    }
    (1..=2).contains(&n).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_as_the_original_router_did() {
        let table = include_str!("../../tests/data/cleaned-paths.txt");
        let rows: Vec<(&str, &str)> = table
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split_once('\t'))
            .collect();
        assert_eq!(rows.len(), 9);
        for (path, want) in rows {
            assert_eq!(clean(path), want, "{path}");
        }
    }

    #[test]
    fn canonical_paths_are_left_alone() {
        for path in [
            "/",
            "/hello/Bob",
            "/hello/Bob/",
            "/counts",
            "/hello/a%2Fb",
            "/hello/a%2F..%2Fb",
            "/hello/...",
            "/hello/.x",
            "/hello/%2E%2E%2E",
            "/hello/%2e%2",
        ] {
            assert!(matches!(clean(path), Cow::Borrowed(_)), "{path}");
        }
    }

    #[test]
    fn a_location_never_starts_with_two_slashes_of_either_kind() {
        // The open redirect: `\` is data in a segment, and `%5C` in a Location.
        assert_eq!(clean("/./\\evil.example/login"), "/\\evil.example/login");
        assert_eq!(
            location(&clean("/./\\evil.example/login"), None),
            "/%5Cevil.example/login"
        );
        assert_eq!(
            location(&clean("//\\evil.example"), None),
            "/%5Cevil.example"
        );
        assert_eq!(location(&clean("/.//\\/x"), None), "/%5C/x");
        assert_eq!(location(&clean("/hello/../\\\\x"), None), "/%5C%5Cx");
        assert_eq!(location("/hello/a\\b", Some("q=\\")), "/hello/a%5Cb?q=%5C");
        // What is already encoded stays as it was.
        assert_eq!(location("/%5C/x", Some("a=%2F")), "/%5C/x?a=%2F");
        // Past ASCII, percent-encoded: the header stays ASCII.
        assert_eq!(
            location("/hello/café", Some("n=é")),
            "/hello/caf%C3%A9?n=%C3%A9"
        );
        assert_eq!(location("/", Some("//evil")), "/?//evil");
        // What the path_clean fuzz target found at once with `\` left bare: `/\` is canonical
        // (no redirect is made of it), but as a Location it would name the host "".
        assert_eq!(location(&clean("/\\"), None), "/%5C");
        assert_eq!(location("/\t/x", Some(" ")), "/%09/x?%20");
    }

    #[test]
    fn more_dot_and_empty_segments() {
        assert_eq!(clean("//"), "/");
        assert_eq!(clean("/.."), "/");
        assert_eq!(clean("/../../x"), "/x");
        assert_eq!(clean("/hello/%2e"), "/hello");
        assert_eq!(clean("/hello/.%2E/x/"), "/x/");
        assert_eq!(clean("/hello/./"), "/hello/");
        assert_eq!(clean("/a/b/../../"), "/");
    }
}
