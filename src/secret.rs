//! A string that must never be shown: `Debug` prints `<redacted>`, there is no `Display`, and
//! the value's own buffer is zeroed (with `zeroize`, whole capacity included) when it is
//! dropped.
//!
//! Zeroing covers that one buffer and nothing else. Not zeroed: where the value came from (the
//! process environment, the `REDIS_URL` string, the credentials document an AWS endpoint
//! answered with, the buffers of the HTTP client that read it), and the copies made to use it:
//! the `AWS4…` key input and the session-token header values in `aws::sigv4`, the `AUTH`
//! command in a Redis connection's output buffer (`store::connection`), and what TLS and the
//! kernel keep of the bytes sent. So it narrows what a later read of freed memory could find;
//! it does not promise that no copy outlives the `Secret`. The promise that holds everywhere is
//! the other one: a secret is never logged or answered.

use std::fmt;

use zeroize::Zeroizing;

/// A clone is a second zeroized buffer, not a shared one: each copy is wiped when dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(value.into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_debug_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2");
    }
}
