//! Request heads: finding where one ends as its bytes arrive (under the size limits), parsing it
//! once into spans over the connection's buffer, and deciding from its fields what RFC 9112
//! says about its framing. The request line is parsed here, strictly, so that each fault is
//! named; the header fields are parsed by `httparse`.

use std::ops::Range;

use super::Rejection;

/// Most header fields a request may have.
const MAX_HEADERS: usize = 64;
/// Empty lines tolerated before a request line (RFC 9112 §2.2 asks for at least one).
const MAX_LEADING_EMPTY_LINES: usize = 4;
/// Longest method answered by a route (405 when the route does not take it). Longer ones are
/// 501 as soon as their bytes are in (RFC 9112 §3: a method longer than any implemented SHOULD
/// be 501), rather than 414 once the whole line is: a refusal that names what is wrong. Every
/// registered method (IANA's list; the longest, `UPDATEREDIRECTREF`, has 17 bytes) fits.
const MAX_METHOD: usize = 32;

/// Size limits on what a client may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, counted from the first byte of the request, so empty lines before
    /// it count too.
    pub request_line: usize,
    /// Largest request head: request line and header fields.
    pub head: usize,
    /// Largest body; no route reads one, so this only bounds what is thrown away.
    pub body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: 8 * 1024,
            head: 16 * 1024,
            body: 64 * 1024,
        }
    }
}

/// Finds the end of a head in a buffer that grows as bytes arrive, looking at each byte a
/// constant number of times however the head is split.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeadScanner {
    /// Bytes already searched for the end of the head.
    scanned: usize,
    /// Where the request line starts, once the empty lines before it are behind.
    line_start: Option<usize>,
    /// Where the request line ends (just past its LF), once seen.
    line_end: Option<usize>,
}

impl HeadScanner {
    /// The length of the head at the front of `buf` once it is all there; `None` while more
    /// bytes are needed; an error as soon as the bytes can no longer be a head within limits.
    pub fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, Rejection> {
        let line_start = match self.line_start {
            Some(s) => s,
            None => match leading_empty_lines(buf)? {
                Some(s) => *self.line_start.insert(s),
                None => return Ok(None),
            },
        };
        let line_end = match self.line_end {
            Some(e) => e,
            None => {
                // However the line is split, a method too long is named as such.
                let method = &buf[line_start..buf.len().min(line_start + MAX_METHOD + 1)];
                if method.len() > MAX_METHOD && !method.iter().any(|&b| b == b' ' || b == b'\n') {
                    return Err(Rejection::NotImplemented("the method is too long"));
                }
                match buf[line_start..].iter().position(|&b| b == b'\n') {
                    Some(p) => *self.line_end.insert(line_start + p + 1),
                    None if buf.len() > limits.request_line => return Err(Rejection::UriTooLong),
                    None => return Ok(None),
                }
            }
        };
        if line_end > limits.request_line {
            return Err(Rejection::UriTooLong);
        }
        // The head ends at the first empty line after the request line: LF then (CR)LF.
        let from = self.scanned.saturating_sub(2).max(line_end - 1);
        let mut end = None;
        let mut i = from;
        while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
            let nl = i + p;
            match buf.get(nl + 1) {
                Some(b'\n') => {
                    end = Some(nl + 2);
                    break;
                }
                Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => {
                    end = Some(nl + 3);
                    break;
                }
                _ => i = nl + 1,
            }
        }
        match end {
            Some(end) if end > limits.head => Err(Rejection::HeadersTooLarge),
            Some(end) => Ok(Some(end)),
            None if buf.len() > limits.head => Err(Rejection::HeadersTooLarge),
            None => {
                self.scanned = buf.len();
                Ok(None)
            }
        }
    }
}

/// Where the request line starts, past at most a few empty lines; `None` while that is unknown.
fn leading_empty_lines(buf: &[u8]) -> Result<Option<usize>, Rejection> {
    let mut at = 0;
    for _ in 0..MAX_LEADING_EMPTY_LINES {
        match &buf[at..] {
            [] | [b'\r'] => return Ok(None),
            [b'\r', b'\n', ..] => at += 2,
            [b'\n', ..] => at += 1,
            _ => return Ok(Some(at)),
        }
    }
    match &buf[at..] {
        [] | [b'\r'] => Ok(None),
        [b'\r', b'\n', ..] | [b'\n', ..] => Err(Rejection::BadRequest(
            "too many empty lines before the request line",
        )),
        _ => Ok(Some(at)),
    }
}

/// The HTTP version a request is answered as. A higher 1.x minor version is answered as 1.1
/// (RFC 9110 §2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the body of a request is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLength {
    None,
    Length(u64),
    Chunked,
}

/// What the header fields say about the message around the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    pub body: BodyLength,
    /// Whether the client asked to keep the connection open (HTTP/1.1 by default, HTTP/1.0
    /// with `keep-alive`; `close` anywhere in any `Connection` field wins).
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client may hold its body back until it hears from us.
    pub expect_continue: bool,
}

/// A byte range of the head.
type Span = Range<u32>;

/// A parsed head: spans over the bytes it was parsed from, and its framing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Bytes from the start of the buffer through the empty line that ends the head.
    pub len: usize,
    method: Span,
    /// `None` for an absolute-form target with an empty path, which means `/`.
    path: Option<Span>,
    query: Option<Span>,
    pub version: Version,
    headers: Vec<(Span, Span)>,
    pub framing: Framing,
}

impl Head {
    /// The request view over `buf`, the bytes this head was parsed from.
    pub fn request<'a>(&'a self, buf: &'a [u8]) -> Request<'a> {
        Request {
            method: text(buf, &self.method),
            path: self.path(buf),
            query: self.query.as_ref().map(|q| text(buf, q)),
            headers: Headers {
                buf,
                spans: &self.headers,
            },
        }
    }

    pub fn method<'a>(&self, buf: &'a [u8]) -> &'a str {
        text(buf, &self.method)
    }

    pub fn path<'a>(&self, buf: &'a [u8]) -> &'a str {
        self.path.as_ref().map_or("/", |p| text(buf, p))
    }

    /// The first value of the header field `name` (case-insensitive).
    pub fn header<'a>(&self, buf: &'a [u8], name: &str) -> Option<&'a [u8]> {
        values(buf, &self.headers, name).next()
    }

    /// Heap bytes held by the parsed fields.
    pub fn heap(&self) -> usize {
        self.headers.capacity() * std::mem::size_of::<(Span, Span)>()
    }

    pub fn is_head(&self, buf: &[u8]) -> bool {
        self.method(buf) == "HEAD"
    }
}

fn text<'a>(buf: &'a [u8], span: &Span) -> &'a str {
    // Spans only ever cover bytes checked to be ASCII (method) or UTF-8 (target) when parsed.
    std::str::from_utf8(&buf[span.start as usize..span.end as usize]).unwrap_or("")
}

fn span(buf: &[u8], part: &[u8]) -> Span {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start as u32..(start + part.len()) as u32
}

/// Parses the head that `scanner` found at the front of `buf` (`buf[..len]`), from the request
/// line it already located.
pub fn parse(scanner: &HeadScanner, buf: &[u8], len: usize) -> Result<Head, Rejection> {
    let head = &buf[..len];
    // Where the scanner found the request line.
    let (Some(line_start), Some(fields_start)) = (scanner.line_start, scanner.line_end) else {
        return Err(Rejection::BadRequest("malformed request line"));
    };
    let line = &head[line_start..fields_start - 1];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (method, target, version) = request_line(line)?;

    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let parsed = match httparse::parse_headers(&head[fields_start..], &mut fields) {
        Ok(httparse::Status::Complete((_, parsed))) => parsed,
        Ok(httparse::Status::Partial) => return Err(Rejection::BadRequest("malformed header")),
        Err(httparse::Error::TooManyHeaders) => return Err(Rejection::HeadersTooLarge),
        Err(_) => return Err(Rejection::BadRequest("malformed header")),
    };
    let framing = framing(parsed, version)?;
    let headers = parsed
        .iter()
        .map(|h| (span(buf, h.name.as_bytes()), span(buf, h.value)))
        .collect();
    let (path, query) = target;
    Ok(Head {
        len,
        method: span(buf, method),
        path: path.map(|p| span(buf, p)),
        query: query.map(|q| span(buf, q)),
        version,
        headers,
        framing,
    })
}

type Target<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// `method SP request-target SP HTTP-version`, each part checked on its own so that the
/// refusal names the part at fault.
fn request_line(line: &[u8]) -> Result<(&[u8], Target<'_>, Version), Rejection> {
    let malformed = Rejection::BadRequest("malformed request line");
    let first = line.iter().position(|&b| b == b' ').ok_or(malformed)?;
    let last = line.iter().rposition(|&b| b == b' ').ok_or(malformed)?;
    if first == last {
        return Err(malformed);
    }
    let (method, target, version) = (&line[..first], &line[first + 1..last], &line[last + 1..]);
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(Rejection::BadRequest("malformed method"));
    }
    let version = http_version(version)?;
    // Asterisk-form asks about the server as a whole, and only OPTIONS may (RFC 9112 §3.2.4).
    if target == b"*" && method == b"OPTIONS" {
        return Ok((method, (Some(target), None), version));
    }
    Ok((method, request_target(target)?, version))
}

fn http_version(v: &[u8]) -> Result<Version, Rejection> {
    match v {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            match (major, minor) {
                (b'1', b'0') => Ok(Version::Http10),
                (b'1', _) => Ok(Version::Http11),
                _ => Err(Rejection::VersionNotSupported),
            }
        }
        _ => Err(Rejection::BadRequest("malformed HTTP version")),
    }
}

/// The path and query of an origin-form (`/path?query`) or absolute-form
/// (`http://authority/path?query`) target. The authority of an absolute-form target takes the
/// place of `Host` (RFC 9112 §3.2.2), and no route depends on it.
fn request_target(target: &[u8]) -> Result<Target<'_>, Rejection> {
    let malformed = Rejection::BadRequest("malformed request target");
    let visible = |b: &u8| b.is_ascii_graphic() || *b >= 0x80;
    if target.is_empty() || !target.iter().all(visible) || std::str::from_utf8(target).is_err() {
        return Err(malformed);
    }
    // A fragment is the client's own business and never part of a request target (RFC 9112
    // §3.2); routed as a path, `/#x` would be a 404 that hides what the client did wrong.
    if target.contains(&b'#') {
        return Err(Rejection::BadRequest(
            "a request target has no fragment (#)",
        ));
    }
    let rest = if target.starts_with(b"/") {
        target
    } else {
        let scheme_end =
            target
                .windows(3)
                .position(|w| w == b"://")
                .ok_or(Rejection::BadRequest(
                    "request target must be a path or an http(s) URL",
                ))?;
        let scheme = &target[..scheme_end];
        if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
            return Err(Rejection::BadRequest(
                "request target must be a path or an http(s) URL",
            ));
        }
        let after = &target[scheme_end + 3..];
        let authority_len = after
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(after.len());
        let authority = &after[..authority_len];
        if authority.is_empty() || authority.contains(&b'@') || !valid_authority(authority) {
            return Err(Rejection::BadRequest(
                "malformed authority in request target",
            ));
        }
        &after[authority_len..]
    };
    let (path, query) = match rest.iter().position(|&b| b == b'?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    Ok(((!path.is_empty()).then_some(path), query))
}

/// `uri-host [":" port]`: registered-name characters, an IP literal in brackets, a port.
fn valid_authority(value: &[u8]) -> bool {
    value.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
            )
    })
}

/// A token character (RFC 9110 §5.6.2): what methods, field names and chunk extensions are
/// made of.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Reads the fields that decide framing, refusing what RFC 9112 tells a server to refuse.
fn framing(fields: &[httparse::Header<'_>], version: Version) -> Result<Framing, Rejection> {
    let mut hosts = 0;
    let mut length: Option<u64> = None;
    let mut codings: Vec<&[u8]> = Vec::new();
    let mut transfer_encoding = false;
    let (mut close, mut keep_alive, mut expect_continue) = (false, false, false);
    for field in fields {
        let name = field.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if !valid_authority(field.value.trim_ascii()) {
                return Err(Rejection::BadRequest("invalid Host header"));
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            // `Content-Length = 1*DIGIT` (RFC 9110 §8.6): an empty value, or an empty member
            // of a repeated one (`5,,5`), is no length at all, not an absent one.
            for value in field.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                let n = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(Rejection::BadRequest("invalid Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(Rejection::BadRequest("conflicting Content-Length headers"));
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Present, even empty, it says the body is coded; then chunked must come last
            // (RFC 9112 §6.3), and no coding at all is not chunked.
            transfer_encoding = true;
            codings.extend(list(field.value));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in list(field.value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= list(field.value).any(|t| t.eq_ignore_ascii_case(b"100-continue"));
        }
    }
    match hosts {
        0 if version == Version::Http11 => {
            return Err(Rejection::BadRequest(
                "an HTTP/1.1 request needs a Host header",
            ))
        }
        0 | 1 => {}
        _ => return Err(Rejection::BadRequest("more than one Host header")),
    }
    let body = if !transfer_encoding {
        match length {
            None | Some(0) => BodyLength::None,
            Some(n) => BodyLength::Length(n),
        }
    } else {
        if length.is_some() {
            return Err(Rejection::BadRequest(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        if version == Version::Http10 {
            return Err(Rejection::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if !codings
            .last()
            .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
        {
            return Err(Rejection::BadRequest(
                "a request body's last transfer coding must be chunked",
            ));
        }
        if codings.len() > 1 {
            return Err(Rejection::NotImplemented(
                "transfer codings other than chunked are not supported",
            ));
        }
        BodyLength::Chunked
    };
    Ok(Framing {
        body,
        keep_alive: !close && (version == Version::Http11 || keep_alive),
        expect_continue,
    })
}

/// The members of a comma-separated field value, trimmed, empty ones skipped.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// A request as handlers see it, borrowing the connection's buffer.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path of the target, still percent-encoded; `/` for `http://host`; `*` for
    /// `OPTIONS *` (asterisk-form, the only target that does not start with `/`).
    pub path: &'a str,
    /// The query string without `?`, if any.
    pub query: Option<&'a str>,
    pub headers: Headers<'a>,
}

impl Request<'_> {
    /// The values of every field with this name (case-insensitive), in order.
    pub fn header_values<'b>(&'b self, name: &'b str) -> impl Iterator<Item = &'b [u8]> + 'b {
        self.headers.all(name)
    }
}

/// The header fields of a request.
#[derive(Clone, Copy, Debug)]
pub struct Headers<'a> {
    buf: &'a [u8],
    spans: &'a [(Span, Span)],
}

impl<'a> Headers<'a> {
    /// The values of every field with this name (case-insensitive), in order.
    pub fn all<'b>(&'b self, name: &'b str) -> impl Iterator<Item = &'a [u8]> + 'b {
        values(self.buf, self.spans, name)
    }
}

/// The values of every field named `name` (case-insensitive) among `spans` over `buf`.
fn values<'a: 'b, 'b>(
    buf: &'a [u8],
    spans: &'b [(Span, Span)],
    name: &'b str,
) -> impl Iterator<Item = &'a [u8]> + 'b {
    spans
        .iter()
        .filter(move |(n, _)| {
            buf[n.start as usize..n.end as usize].eq_ignore_ascii_case(name.as_bytes())
        })
        .map(move |(_, v)| &buf[v.start as usize..v.end as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_whole(buf: &[u8]) -> Result<Option<usize>, Rejection> {
        HeadScanner::default().scan(buf, &Limits::default())
    }

    fn head(buf: &[u8]) -> Result<Head, Rejection> {
        let mut scanner = HeadScanner::default();
        let len = scanner
            .scan(buf, &Limits::default())?
            .expect("a whole head");
        parse(&scanner, buf, len)
    }

    fn request(buf: &[u8]) -> (String, String, Option<String>, Version) {
        let h = head(buf).unwrap();
        let r = h.request(buf);
        (
            r.method.to_owned(),
            r.path.to_owned(),
            r.query.map(str::to_owned),
            h.version,
        )
    }

    #[test]
    fn finds_the_end_of_a_head_however_it_is_split() {
        let req = b"GET /a HTTP/1.1\r\nHost: x\r\nX-Y: z\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let whole = 36;
        for cut in 0..req.len() {
            let mut scanner = HeadScanner::default();
            let first = scanner.scan(&req[..cut], &Limits::default()).unwrap();
            if cut < whole {
                assert_eq!(first, None, "cut at {cut}");
            }
            assert_eq!(scanner.scan(req, &Limits::default()), Ok(Some(whole)));
        }
        assert_eq!(scan_whole(b"GET / HTTP/1.1\nHost: x\n\n"), Ok(Some(24)));
        assert_eq!(scan_whole(b"GET / HTTP/1.0\r\n\r\n"), Ok(Some(18)));
    }

    #[test]
    fn byte_by_byte_scanning_agrees_with_whole_scanning() {
        let req = b"\r\nGET /x HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n";
        let mut scanner = HeadScanner::default();
        let mut found = None;
        for n in 1..=req.len() {
            found = scanner.scan(&req[..n], &Limits::default()).unwrap();
            if n < req.len() {
                assert_eq!(found, None);
            }
        }
        assert_eq!(found, Some(req.len()));
    }

    #[test]
    fn limits_hold_at_n_and_refuse_at_n_plus_one() {
        let limits = Limits {
            request_line: 32,
            head: 64,
            body: 10,
        };
        let line = |len: usize| {
            let mut l = format!("GET /{} HTTP/1.1\r\n", "a".repeat(len - 16));
            assert_eq!(l.len(), len);
            l.push_str("\r\n");
            l
        };
        let scan = |buf: &[u8]| HeadScanner::default().scan(buf, &limits);
        assert!(matches!(scan(line(32).as_bytes()), Ok(Some(_))));
        assert_eq!(scan(line(33).as_bytes()), Err(Rejection::UriTooLong));
        // Before the line ends, too.
        let unended = |len: usize| format!("GET /{}", "a".repeat(len - 5));
        assert_eq!(scan(unended(33).as_bytes()), Err(Rejection::UriTooLong));
        assert_eq!(scan(unended(32).as_bytes()), Ok(None));
        // Empty lines before the request line count toward its limit.
        let mut led = b"\r\n".to_vec();
        led.extend_from_slice(line(31).as_bytes());
        assert_eq!(scan(&led), Err(Rejection::UriTooLong));
        let mut led = b"\r\n".to_vec();
        led.extend_from_slice(line(30).as_bytes());
        assert!(matches!(scan(&led), Ok(Some(_))));

        let with_field = |len: usize| {
            let base = "GET / HTTP/1.1\r\nX: \r\n\r\n".len();
            format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(len - base))
        };
        assert_eq!(scan(with_field(64).as_bytes()), Ok(Some(64)));
        assert_eq!(
            scan(with_field(65).as_bytes()),
            Err(Rejection::HeadersTooLarge)
        );
        // An unfinished head is refused once it is past the limit, not before.
        let unfinished = with_field(70);
        assert_eq!(scan(&unfinished.as_bytes()[..64]), Ok(None));
        assert_eq!(
            scan(&unfinished.as_bytes()[..65]),
            Err(Rejection::HeadersTooLarge)
        );
    }

    #[test]
    fn a_few_leading_empty_lines_are_skipped_and_more_refused() {
        let req = b"\r\n\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(request(req).1, "/x");
        let mut many = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES + 1);
        many.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert!(matches!(scan_whole(&many), Err(Rejection::BadRequest(_))));
        assert_eq!(scan_whole(b"\r\n\r"), Ok(None));
    }

    #[test]
    fn request_lines_name_the_part_at_fault() {
        let refusal = |line: &[u8]| {
            let mut req = line.to_vec();
            req.extend_from_slice(b"\r\nHost: h\r\n\r\n");
            head(&req).unwrap_err()
        };
        let bad = Rejection::BadRequest;
        assert_eq!(
            refusal(b"GET /a\xffb HTTP/1.1"),
            bad("malformed request target")
        );
        assert_eq!(
            refusal(b"GET /a\tb HTTP/1.1"),
            bad("malformed request target")
        );
        assert_eq!(
            refusal(b"GET /a  HTTP/1.1"),
            bad("malformed request target")
        );
        assert_eq!(
            refusal(b"GET  /a HTTP/1.1"),
            bad("malformed request target")
        );
        assert_eq!(
            refusal(b"GET /a b HTTP/1.1"),
            bad("malformed request target")
        );
        assert_eq!(refusal(b"G(T /a HTTP/1.1"), bad("malformed method"));
        assert_eq!(refusal(b"GET /a HTTP/1"), bad("malformed HTTP version"));
        assert_eq!(refusal(b"GET /a http/1.1"), bad("malformed HTTP version"));
        assert_eq!(refusal(b"GET /"), bad("malformed request line"));
        assert_eq!(refusal(b"GET /a HTTP/2.0"), Rejection::VersionNotSupported);
        assert_eq!(refusal(b"GET /a HTTP/0.9"), Rejection::VersionNotSupported);
        assert_eq!(refusal(b"PRI * HTTP/2.0"), Rejection::VersionNotSupported);
        assert_eq!(
            refusal(b"GET * HTTP/1.1"),
            bad("request target must be a path or an http(s) URL")
        );
        assert_eq!(
            refusal(b"GET ftp://h/x HTTP/1.1"),
            bad("request target must be a path or an http(s) URL")
        );
        assert_eq!(
            refusal(b"GET http://u@h/x HTTP/1.1"),
            bad("malformed authority in request target")
        );
        assert_eq!(
            refusal(b"GET http:///x HTTP/1.1"),
            bad("malformed authority in request target")
        );
    }

    #[test]
    fn higher_minor_versions_are_answered_as_1_1() {
        let req = |v: &str| format!("GET / {v}\r\nHost: h\r\n\r\n");
        assert_eq!(request(req("HTTP/1.2").as_bytes()).3, Version::Http11);
        assert_eq!(request(req("HTTP/1.9").as_bytes()).3, Version::Http11);
        assert_eq!(request(req("HTTP/1.0").as_bytes()).3, Version::Http10);
    }

    #[test]
    fn targets_in_origin_and_absolute_form() {
        let get =
            |target: &str| request(format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        assert_eq!(get("/counts?limit=2").1, "/counts");
        assert_eq!(get("/counts?limit=2").2.as_deref(), Some("limit=2"));
        assert_eq!(get("/x?").2.as_deref(), Some(""));
        assert_eq!(get("/hello/Zo%C3%AB").1, "/hello/Zo%C3%AB");
        assert_eq!(get("/hello/Zoë").1, "/hello/Zoë");
        let abs = get("http://127.0.0.1:8080/hello/Abs?x=1");
        assert_eq!(
            (abs.1.as_str(), abs.2.as_deref()),
            ("/hello/Abs", Some("x=1"))
        );
        assert_eq!(get("HTTPS://[::1]/counts").1, "/counts");
        assert_eq!(get("http://h").1, "/");
        assert_eq!(get("http://h?q").2.as_deref(), Some("q"));
    }

    #[test]
    fn host_must_be_there_once_in_http_1_1() {
        let bad = |r: &[u8]| head(r).unwrap_err();
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\n\r\n"),
            Rejection::BadRequest("an HTTP/1.1 request needs a Host header")
        );
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
            Rejection::BadRequest("more than one Host header")
        );
        assert_eq!(
            bad(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
            Rejection::BadRequest("more than one Host header")
        );
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            Rejection::BadRequest("invalid Host header")
        );
        assert!(head(b"GET / HTTP/1.0\r\n\r\n").is_ok());
        assert!(head(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").is_ok());
        assert!(head(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").is_ok());
        assert!(head(b"GET http://x/ HTTP/1.1\r\nHost: other\r\n\r\n").is_ok());
    }

    fn framing_of(fields: &str, version: &str) -> Result<Framing, Rejection> {
        let req = format!("GET / {version}\r\nHost: h\r\n{fields}\r\n");
        head(req.as_bytes()).map(|h| h.framing)
    }

    #[test]
    fn connection_is_a_list_that_may_repeat_and_close_wins() {
        let keep = |fields: &str, version: &str| framing_of(fields, version).unwrap().keep_alive;
        assert!(keep("", "HTTP/1.1"));
        assert!(!keep("", "HTTP/1.0"));
        assert!(keep("Connection: keep-alive\r\n", "HTTP/1.0"));
        assert!(keep("Connection: Keep-Alive\r\n", "HTTP/1.0"));
        assert!(!keep("Connection: close\r\n", "HTTP/1.1"));
        assert!(!keep("Connection: foo, CLOSE\r\n", "HTTP/1.1"));
        assert!(!keep(
            "Connection: keep-alive\r\nConnection: close\r\n",
            "HTTP/1.1"
        ));
        assert!(!keep(
            "Connection: keep-alive\r\nConnection: close\r\n",
            "HTTP/1.0"
        ));
        assert!(!keep("Connection: close, keep-alive\r\n", "HTTP/1.0"));
        assert!(keep(
            "Connection: upgrade\r\nConnection: keep-alive\r\n",
            "HTTP/1.0"
        ));
        assert!(keep("Connection: ,, \r\n", "HTTP/1.1"));
        assert!(keep("Connection: closed\r\n", "HTTP/1.1"));
    }

    #[test]
    fn body_framing_follows_rfc_9112() {
        let body = |fields: &str| framing_of(fields, "HTTP/1.1").map(|f| f.body);
        assert_eq!(body(""), Ok(BodyLength::None));
        assert_eq!(body("Content-Length: 0\r\n"), Ok(BodyLength::None));
        assert_eq!(body("Content-Length: 5\r\n"), Ok(BodyLength::Length(5)));
        assert_eq!(
            body("Content-Length: 5, 5\r\nContent-Length: 5\r\n"),
            Ok(BodyLength::Length(5))
        );
        assert_eq!(
            body("Content-Length: 5, 6\r\n"),
            Err(Rejection::BadRequest("conflicting Content-Length headers"))
        );
        assert_eq!(
            body("Content-Length: -1\r\n"),
            Err(Rejection::BadRequest("invalid Content-Length"))
        );
        assert_eq!(
            body("Content-Length: 99999999999999999999999\r\n"),
            Err(Rejection::BadRequest("invalid Content-Length"))
        );
        assert_eq!(
            body("Transfer-Encoding: chunked\r\n"),
            Ok(BodyLength::Chunked)
        );
        assert_eq!(
            body("Transfer-Encoding: Chunked\r\n"),
            Ok(BodyLength::Chunked)
        );
        assert_eq!(
            body("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"),
            Err(Rejection::BadRequest(
                "both Transfer-Encoding and Content-Length"
            ))
        );
        assert!(matches!(
            body("Transfer-Encoding: gzip, chunked\r\n"),
            Err(Rejection::NotImplemented(_))
        ));
        assert!(matches!(
            body("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"),
            Err(Rejection::NotImplemented(_))
        ));
        assert!(matches!(
            body("Transfer-Encoding: chunked, gzip\r\n"),
            Err(Rejection::BadRequest(_))
        ));
        assert!(matches!(
            framing_of("Transfer-Encoding: chunked\r\n", "HTTP/1.0"),
            Err(Rejection::BadRequest(_))
        ));
        let expect = framing_of("Expect: 100-continue\r\nContent-Length: 9\r\n", "HTTP/1.1");
        assert!(expect.unwrap().expect_continue);
    }

    #[test]
    fn too_many_or_malformed_fields_are_refused() {
        let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            framing_of(&many, "HTTP/1.1"),
            Err(Rejection::HeadersTooLarge)
        );
        assert_eq!(
            framing_of("Bad Name: x\r\n", "HTTP/1.1"),
            Err(Rejection::BadRequest("malformed header"))
        );
    }

    #[test]
    fn asterisk_form_is_for_options_alone() {
        let req = b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(request(req).1, "*");
        assert_eq!(request(req).2, None);
        for refused in [
            &b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"HEAD * HTTP/1.1\r\nHost: h\r\n\r\n",
            b"OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n",
            b"OPTIONS ** HTTP/1.1\r\nHost: h\r\n\r\n",
            b"options * HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert!(
                matches!(head(refused), Err(Rejection::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
    }

    #[test]
    fn a_target_with_a_fragment_is_refused() {
        for target in [
            "/#frag",
            "/hello/Bob#x",
            "/counts?limit=1#x",
            "http://h/#",
            "/%23ok#",
        ] {
            let req = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(
                head(req.as_bytes()).unwrap_err(),
                Rejection::BadRequest("a request target has no fragment (#)"),
                "{target}"
            );
        }
        // Percent-encoded, `#` is data.
        assert_eq!(
            request(b"GET /hello/%23 HTTP/1.1\r\nHost: h\r\n\r\n").1,
            "/hello/%23"
        );
    }

    #[test]
    fn empty_content_length_and_transfer_encoding_are_refused_not_ignored() {
        let body = |fields: &str| framing_of(fields, "HTTP/1.1").map(|f| f.body);
        let no_length = Err(Rejection::BadRequest("invalid Content-Length"));
        assert_eq!(body("Content-Length:\r\n"), no_length);
        assert_eq!(body("Content-Length:  \r\n"), no_length);
        assert_eq!(body("Content-Length: 5,,5\r\n"), no_length);
        assert_eq!(body("Content-Length: 5,\r\n"), no_length);
        assert_eq!(body("Content-Length: 5\r\nContent-Length:\r\n"), no_length);
        let not_chunked = Err(Rejection::BadRequest(
            "a request body's last transfer coding must be chunked",
        ));
        assert_eq!(body("Transfer-Encoding:\r\n"), not_chunked);
        assert_eq!(body("Transfer-Encoding: , \r\n"), not_chunked);
        // An empty member beside chunked is still a list with chunked last (RFC 9110 §5.6.1).
        assert_eq!(
            body("Transfer-Encoding: ,chunked\r\n"),
            Ok(BodyLength::Chunked)
        );
        assert_eq!(
            body("Transfer-Encoding:\r\nContent-Length: 1\r\n"),
            Err(Rejection::BadRequest(
                "both Transfer-Encoding and Content-Length"
            ))
        );
    }

    #[test]
    fn a_method_longer_than_any_route_takes_is_501_however_it_arrives() {
        let too_long = Rejection::NotImplemented("the method is too long");
        let longest = format!("{} / HTTP/1.1\r\nHost: h\r\n\r\n", "M".repeat(MAX_METHOD));
        assert_eq!(request(longest.as_bytes()).0, "M".repeat(MAX_METHOD));
        let over = format!(
            "{} / HTTP/1.1\r\nHost: h\r\n\r\n",
            "M".repeat(MAX_METHOD + 1)
        );
        for cut in 0..over.len() {
            let mut scanner = HeadScanner::default();
            let first = scanner.scan(&over.as_bytes()[..cut], &Limits::default());
            if cut <= MAX_METHOD {
                assert_eq!(first, Ok(None), "cut at {cut}");
            } else {
                assert_eq!(first, Err(too_long), "cut at {cut}");
            }
        }
        // A 100,000-byte method is not "URI too long".
        assert_eq!(scan_whole("M".repeat(100_000).as_bytes()), Err(too_long));
        // After empty lines, counted from the method's first byte.
        let led = format!("\r\n\r\n{}", "M".repeat(MAX_METHOD + 1));
        assert_eq!(scan_whole(led.as_bytes()), Err(too_long));
        // A short line without a space is malformed, not a long method.
        let short = b"GARBAGE\r\nHost: h\r\n\r\n";
        assert_eq!(
            head(short),
            Err(Rejection::BadRequest("malformed request line"))
        );
    }

    #[test]
    fn headers_are_read_by_name_in_order() {
        let req = b"GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\naccept: b\r\n\r\n";
        let h = head(req).unwrap();
        let r = h.request(req);
        let accept: Vec<&[u8]> = r.header_values("ACCEPT").collect();
        assert_eq!(accept, [b"a".as_slice(), b"b"]);
        assert_eq!(r.header_values("missing").count(), 0);
    }
}
