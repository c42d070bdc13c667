//! AWS Signature Version 4, as pure functions of the request, the credentials and the time.
//! Paths are normalised and each segment encoded once more, as every service but S3 expects.

use std::time::{SystemTime, UNIX_EPOCH};

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::{digest, hmac};

use super::credentials::Credentials;

/// RFC 3986 unreserved characters are the only ones left unencoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What is signed: the request as it will be sent.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent (percent-encoded where the URL needs it).
    pub path: &'a str,
    /// The query string as sent, without `?`.
    pub query: &'a str,
    /// Every header to sign, `host` included; names in any case.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Where and when the signature is made.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
    pub time: SystemTime,
}

/// The signature and the steps that made it (kept for tests and debugging).
#[derive(Debug)]
pub struct Signature {
    /// Headers to add to the request: `x-amz-date`, `x-amz-security-token` when there is a
    /// session token, and `authorization`.
    pub headers: Vec<(&'static str, String)>,
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signature: String,
}

pub fn sign(request: &Request<'_>, credentials: &Credentials, scope: Scope<'_>) -> Signature {
    // `20150830T123600Z`: RFC 3339 without its separators. A time before 1970 (which the system
    // clock never shows) counts as 1970, as it did before.
    let amz_date = humantime::format_rfc3339_seconds(scope.time.max(UNIX_EPOCH))
        .to_string()
        .replace(['-', ':'], "");
    let date = &amz_date[..8];

    let mut headers: Vec<(String, String)> = request.headers.to_vec();
    headers.push(("x-amz-date".into(), amz_date.clone()));
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token".into(), token.expose().to_owned()));
    }
    let (canonical_headers, signed_headers) = canonical_headers(&headers);
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        canonical_uri(request.path),
        canonical_query(request.query),
        canonical_headers,
        signed_headers,
        hex(digest::digest(&digest::SHA256, request.body).as_ref())
    );
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{credential_scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    );
    let key = signing_key(
        credentials.secret_access_key.expose(),
        date,
        scope.region,
        scope.service,
    );
    let signature = hex(hmac::sign(&key, string_to_sign.as_bytes()).as_ref());
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{credential_scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    );
    let mut added = vec![("x-amz-date", amz_date)];
    if let Some(token) = &credentials.session_token {
        added.push(("x-amz-security-token", token.expose().to_owned()));
    }
    added.push(("authorization", authorization));
    Signature {
        headers: added,
        canonical_request,
        string_to_sign,
        signature,
    }
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let step = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
    };
    let k_date = step(format!("AWS4{secret}").as_bytes(), date);
    let k_region = step(k_date.as_ref(), region);
    let k_service = step(k_region.as_ref(), service);
    let k_signing = step(k_service.as_ref(), "aws4_request");
    hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref())
}

/// The path without empty, `.` and `..` segments, each segment encoded (again).
pub fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 8);
    for s in &segments {
        out.push('/');
        out.extend(utf8_percent_encode(s, UNRESERVED));
    }
    // As RFC 3986 removes dot segments: a path ending in `/`, `/.` or `/..` keeps a trailing
    // slash.
    let last = path.rsplit('/').next().unwrap_or("");
    if segments.is_empty() || matches!(last, "" | "." | "..") {
        out.push('/');
    }
    out
}

/// Parameters decoded, re-encoded with the unreserved set, and sorted by name then value.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(k)), encode(&decode(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Lower-case names, sorted; values trimmed with inner whitespace runs collapsed; repeated
/// headers joined with commas in the order they came. Returns the block and the name list.
pub fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut merged: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => merged.push((name, value)),
        }
    }
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let block: String = merged.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let names = merged
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (block, names)
}

/// Form-encodes parameters for a Query API body, in the order given.
pub fn form_encode(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::time::{Duration, UNIX_EPOCH};

    fn example_credentials() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: None,
            expires_at: None,
        }
    }

    /// The classic documented example (AWS's 2015 test suite, `post-x-www-form-urlencoded`).
    #[test]
    fn documented_form_post_example() {
        let headers = vec![
            (
                "Content-Type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("Host".to_string(), "example.amazonaws.com".to_string()),
        ];
        let request = Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: b"Param1=value1",
        };
        let scope = Scope {
            region: "us-east-1",
            service: "service",
            time: UNIX_EPOCH + Duration::from_secs(1_440_938_160),
        };
        let signed = sign(&request, &example_credentials(), scope);
        let authorization = &signed.headers.last().unwrap().1;
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        );
    }

    #[test]
    fn canonical_pieces() {
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("//example//"), "/example/");
        assert_eq!(canonical_uri("/example/.."), "/");
        assert_eq!(canonical_uri("/./example"), "/example");
        assert_eq!(canonical_uri("/a/."), "/a/");
        assert_eq!(canonical_uri("/a/b/.."), "/a/");
        assert_eq!(canonical_uri("/a b/ሴ"), "/a%20b/%E1%88%B4");
        assert_eq!(canonical_uri("/x%3D"), "/x%253D");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("Param1"), "Param1=");
        assert_eq!(
            canonical_query("%E1%88%B4=x&k=a%20b"),
            "%E1%88%B4=x&k=a%20b"
        );
        let (block, names) = canonical_headers(&[
            ("My-Header1".into(), "  a   b  ".into()),
            ("Host".into(), "h".into()),
            ("my-header1".into(), "c".into()),
        ]);
        assert_eq!(block, "host:h\nmy-header1:a b,c\n");
        assert_eq!(names, "host;my-header1");
        assert_eq!(
            form_encode(&[
                ("Action", "DescribeInstances"),
                ("Filter.1.Value.1", "a b/c")
            ]),
            "Action=DescribeInstances&Filter.1.Value.1=a%20b%2Fc"
        );
    }

    #[test]
    fn session_token_is_signed_and_sent() {
        let mut creds = example_credentials();
        creds.session_token = Some(Secret::new("TOKEN"));
        let headers = vec![("host".to_string(), "h".to_string())];
        let request = Request {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            body: b"",
        };
        let scope = Scope {
            region: "r",
            service: "s",
            time: UNIX_EPOCH,
        };
        let signed = sign(&request, &creds, scope);
        assert!(signed
            .canonical_request
            .contains("x-amz-security-token:TOKEN\n"));
        assert!(signed
            .headers
            .contains(&("x-amz-security-token", "TOKEN".to_string())));
        assert!(!format!("{:?}", creds).contains("wJalr"));
    }
}
