//! Request paths in canonical form: no empty segments and no dot segments, also when the dots
//! are percent-encoded, as the original service's router cleaned them (Go's `path.Clean`, with a
//! trailing slash kept). Segments stay percent-encoded, so `%2F` inside one stays part of it.

use std::borrow::Cow;

/// The canonical form of `path` (which starts with `/`): borrowed when it already is.
pub fn clean(path: &str) -> Cow<'_, str> {
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
    // A trailing slash is kept (the split above sees it as an empty last segment).
    let trailing = path.len() > 1 && path.ends_with('/');
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

    /// Measured from the original service: each non-canonical path and where it redirected.
    const ORIGINAL: [(&str, &str); 9] = [
        ("//hello/Bob", "/hello/Bob"),
        ("/hello//Bob", "/hello/Bob"),
        ("/hello/./Bob", "/hello/Bob"),
        ("/hello/a/../Bob", "/hello/Bob"),
        ("/hello/../counts", "/counts"),
        ("/hello/..", "/"),
        ("/hello/.", "/hello"),
        ("/hello/%2E%2E", "/"),
        ("/hello/Bob//", "/hello/Bob/"),
    ];

    #[test]
    fn cleans_as_the_original_router_did() {
        for (path, want) in ORIGINAL {
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
