//! Our SigV4 signer against AWS's own signing test suite (shipped in the `aws-sigv4` package)
//! and, differentially, against the `aws-sigv4` signer itself on generated requests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use hello::aws::credentials::Credentials;
use hello::aws::sigv4::{self, Scope};
use hello::clock::parse_rfc3339_utc;
use hello::secret::Secret;

/// The directory of the `aws-sigv4` package, found through `cargo metadata`.
fn reference_package() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Resolved for this platform only, so that no other platform's crates must be fetched.
    let platform = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &platform,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "cargo metadata: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "aws-sigv4")
        .expect("aws-sigv4 among the packages")["manifest_path"]
        .as_str()
        .unwrap()
        .to_owned();
    Path::new(&manifest).parent().unwrap().to_path_buf()
}

/// A request in the suite's `request.txt` form: request line, headers (continuation lines
/// start with whitespace), blank line, body.
struct SuiteRequest {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn parse_request(text: &str) -> SuiteRequest {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().unwrap();
    let mut parts = request_line.splitn(2, ' ');
    let method = parts.next().unwrap().to_owned();
    let target = parts.next().unwrap().rsplit_once(' ').unwrap().0;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            let last = headers.last_mut().unwrap();
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else if let Some((n, v)) = line.split_once(':') {
            headers.push((n.to_owned(), v.to_owned()));
        }
    }
    SuiteRequest {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn matches_the_aws_signing_test_suite() {
    let suite = reference_package().join("aws-signing-test-suite/v4");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&suite).expect("suite folder") {
        let dir = entry.unwrap().path();
        let Ok(context) = std::fs::read_to_string(dir.join("context.json")) else {
            continue;
        };
        let context: serde_json::Value = serde_json::from_str(&context).unwrap();
        // Cases for S3-style signing (no path normalisation, single encoding) and for a token
        // added after signing are not how ELB and EC2 are signed.
        if context["normalize"] == false || context["omit_session_token"] == true {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        // Expects single encoding of an already-encoded path; the reference signer skips it
        // for the same reason.
        if name == "get-space-normalized" {
            continue;
        }
        let mut request = parse_request(&std::fs::read_to_string(dir.join("request.txt")).unwrap());
        // The signer adds X-Amz-Date itself.
        request
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("x-amz-date"));
        if context["sign_body"] == true {
            let hash = ring::digest::digest(&ring::digest::SHA256, &request.body);
            let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            request.headers.push(("x-amz-content-sha256".into(), hex));
        }
        let creds = &context["credentials"];
        let credentials = Credentials {
            access_key_id: creds["access_key_id"].as_str().unwrap().into(),
            secret_access_key: Secret::new(creds["secret_access_key"].as_str().unwrap()),
            session_token: creds["token"].as_str().map(Secret::new),
            expires_at: None,
        };
        let scope = Scope {
            region: context["region"].as_str().unwrap(),
            service: context["service"].as_str().unwrap(),
            time: parse_rfc3339_utc(context["timestamp"].as_str().unwrap()).unwrap(),
        };
        let signed = sigv4::sign(
            &sigv4::Request {
                method: &request.method,
                path: &request.path,
                query: &request.query,
                headers: &request.headers,
                body: &request.body,
            },
            &credentials,
            scope,
        );
        let expect = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
        assert_eq!(
            signed.canonical_request,
            expect("header-canonical-request.txt"),
            "{name}"
        );
        assert_eq!(
            signed.string_to_sign,
            expect("header-string-to-sign.txt"),
            "{name}"
        );
        assert_eq!(
            signed.signature,
            expect("header-signature.txt").trim(),
            "{name}"
        );
        checked.push(name);
    }
    println!("{} suite cases match: {checked:?}", checked.len());
    assert!(checked.len() >= 25, "only {} cases checked", checked.len());
    assert!(checked.iter().any(|c| c == "post-x-www-form-urlencoded"));
    assert!(checked
        .iter()
        .any(|c| c == "get-vanilla-with-session-token"));
}

/// A small deterministic generator, so a failure names a reproducible case.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64)]
    }
    fn word(&mut self, alphabet: &[&str], max: u64) -> String {
        (0..=self.below(max)).map(|_| self.pick(alphabet)).collect()
    }
}

#[test]
fn agrees_with_the_reference_signer_on_generated_requests() {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;

    let path_chars = [
        "a",
        "Z",
        "0",
        "-",
        "_",
        ".",
        "~",
        "%20",
        "%2F",
        "%E1%88%B4",
        "@",
        "!",
        "$",
        "=",
        "ሴ",
    ];
    let query_chars = [
        "a",
        "B",
        "9",
        "-",
        "_",
        ".",
        "~",
        "%20",
        "%3D",
        "%26",
        "%2B",
        "%E1%88%B4",
    ];
    let value_chars = ["a", " ", "  ", "x", "Y", "1", "/", ",", ";", "\"", "é"];
    let mut rng = Lcg(0x5eed);
    for case in 0..500 {
        let method = rng.pick(&["GET", "POST", "PUT", "DELETE", "HEAD"]);
        let segments = rng.below(4);
        let mut path: String = (0..segments)
            .map(|_| {
                let seg = match rng.below(8) {
                    0 => ".".to_owned(),
                    1 => "..".to_owned(),
                    2 => String::new(),
                    _ => rng.word(&path_chars, 6),
                };
                format!("/{seg}")
            })
            .collect();
        if path.is_empty() || rng.below(3) == 0 {
            path.push('/');
        }
        let query: Vec<String> = (0..rng.below(4))
            .map(|_| {
                format!(
                    "{}={}",
                    rng.word(&query_chars, 4),
                    rng.word(&query_chars, 4)
                )
            })
            .collect();
        let query = query.join("&");
        let mut headers = vec![("host".to_owned(), "ec2.us-east-1.amazonaws.com".to_owned())];
        for _ in 0..rng.below(4) {
            let name = format!("x-test-{}", rng.pick(&["a", "b", "c"]));
            headers.push((name, rng.word(&value_chars, 8).trim().to_owned()));
        }
        let body: Vec<u8> = (0..rng.below(40)).map(|_| rng.below(256) as u8).collect();
        let token = (rng.below(2) == 0).then(|| format!("token{}", rng.next()));
        let time = UNIX_EPOCH + Duration::from_secs(1_400_000_000 + rng.next() % 400_000_000);

        let ours = sigv4::sign(
            &sigv4::Request {
                method,
                path: &path,
                query: &query,
                headers: &headers,
                body: &body,
            },
            &Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                session_token: token.clone().map(Secret::new),
                expires_at: None,
            },
            Scope {
                region: "us-east-1",
                service: "ec2",
                time,
            },
        );

        let identity = aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.clone(),
            None,
            "test",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("ec2")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let uri = if query.is_empty() {
            format!("https://ec2.us-east-1.amazonaws.com{path}")
        } else {
            format!("https://ec2.us-east-1.amazonaws.com{path}?{query}")
        };
        let request = SignableRequest::new(
            method,
            uri.as_str(),
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            SignableBody::Bytes(&body),
        )
        .unwrap();
        let (_, reference) = sign(request, &params).unwrap().into_parts();
        assert_eq!(
            ours.signature, reference,
            "case {case}: {method} {path}?{query} {headers:?} token={token:?}\n{}",
            ours.canonical_request
        );
    }
}

/// The `Host` we sign for an endpoint URL is the one the reference signer derives from it:
/// default ports left out, others kept, IPv6 literals in brackets.
#[test]
fn endpoint_host_headers_agree_with_the_reference_signer() {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    use hello::aws::endpoint::Endpoint;

    let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    let body = b"Action=DescribeInstances&Version=2016-11-15";
    for url in [
        "http://127.0.0.9:80",
        "http://127.0.0.9:443",
        "https://ec2.us-east-1.amazonaws.com:443",
        "https://vpce-1.ec2.us-east-1.vpce.amazonaws.com:8443",
        "http://localhost:5000",
        "https://ec2.us-east-1.amazonaws.com",
        "http://[::1]:80",
        "http://[::1]:5000",
        "https://[fd00:ec2::254]:443",
    ] {
        let endpoint = Endpoint::parse(url).unwrap();
        let headers = vec![
            (
                "content-type".to_owned(),
                "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
            ),
            ("host".to_owned(), endpoint.host.clone()),
        ];
        let ours = sigv4::sign(
            &sigv4::Request {
                method: "POST",
                path: &endpoint.path,
                query: "",
                headers: &headers,
                body,
            },
            &Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                session_token: None,
                expires_at: None,
            },
            Scope {
                region: "us-east-1",
                service: "ec2",
                time,
            },
        );
        let identity = aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("ec2")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        // No Host header: the reference signer derives it from the URL, as the SDKs send it.
        let request = SignableRequest::new(
            "POST",
            endpoint.url.as_str(),
            headers[..1].iter().map(|(n, v)| (n.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (_, reference) = sign(request, &params).unwrap().into_parts();
        assert_eq!(ours.signature, reference, "{url}: Host {}", endpoint.host);
        println!("{url:<55} Host: {:<48} {}", endpoint.host, ours.signature);
    }
}
