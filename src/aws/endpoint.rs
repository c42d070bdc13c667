//! An AWS endpoint URL (`scheme://host[:port][/path]`) and the `Host` header of requests to it.
//! The header is computed once, here, and is both the one signed and the one sent: a port is
//! written only when it is not the scheme's default (as AWS, botocore and ureq write it), and
//! an IPv6 literal keeps its brackets.

/// A parsed endpoint. Pure: no I/O, no resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEndpoint {
    /// `scheme://authority/path`, to send requests to.
    pub url: String,
    /// The `Host` header: the host in lower case, `:port` only for a port that is not the
    /// scheme's default.
    pub host: String,
    /// The path requests are sent to, `/` when the URL has none.
    pub path: String,
}

impl ServiceEndpoint {
    pub fn parse(url: &str) -> Result<ServiceEndpoint, String> {
        let bad = |why: &str| format!("{url:?} {why}");
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("is not an http(s) URL"))?;
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(bad("is not an http(s) URL")),
        };
        if rest.contains(['?', '#']) {
            return Err(bad("has a query or fragment"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(bad("has user information"));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (address, after) = v6
                    .split_once(']')
                    .ok_or_else(|| bad("has an unclosed IPv6 literal"))?;
                address
                    .parse::<std::net::Ipv6Addr>()
                    .map_err(|_| bad("has an invalid IPv6 literal"))?;
                let port = match after {
                    "" => None,
                    _ => Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| bad("has text after its IPv6 literal"))?,
                    ),
                };
                (&authority[..address.len() + 2], port)
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let valid_name = host.starts_with('[')
            || (!host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')));
        if !valid_name {
            return Err(bad("has no valid host"));
        }
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("has an invalid port"))?,
            ),
        };
        let host = host.to_ascii_lowercase();
        let host = match port {
            Some(p) if p != default_port => format!("{host}:{p}"),
            _ => host,
        };
        Ok(ServiceEndpoint {
            url: format!("{scheme}://{authority}{path}"),
            host,
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(url: &str) -> String {
        ServiceEndpoint::parse(url).unwrap().host
    }

    #[test]
    fn default_ports_are_left_out_of_the_host_header_and_others_kept() {
        assert_eq!(host("http://127.0.0.9:80"), "127.0.0.9");
        assert_eq!(
            host("https://ec2.us-east-1.amazonaws.com:443"),
            "ec2.us-east-1.amazonaws.com"
        );
        assert_eq!(host("http://127.0.0.9:443"), "127.0.0.9:443");
        assert_eq!(host("https://vpce.example:80"), "vpce.example:80");
        assert_eq!(host("http://localhost:5000"), "localhost:5000");
        assert_eq!(
            host("https://elasticloadbalancing.eu-west-1.amazonaws.com"),
            "elasticloadbalancing.eu-west-1.amazonaws.com"
        );
        assert_eq!(host("HTTP://Moto.Example:80/"), "moto.example");
    }

    #[test]
    fn ipv6_literals_keep_their_brackets() {
        assert_eq!(host("http://[::1]:80"), "[::1]");
        assert_eq!(host("http://[::1]:5000"), "[::1]:5000");
        assert_eq!(host("https://[fd00:ec2::254]"), "[fd00:ec2::254]");
        assert_eq!(host("https://[FD00:EC2::254]:443/x"), "[fd00:ec2::254]");
    }

    #[test]
    fn url_and_path() {
        let e = ServiceEndpoint::parse("http://127.0.0.9:80").unwrap();
        assert_eq!(
            (e.url.as_str(), e.path.as_str()),
            ("http://127.0.0.9:80/", "/")
        );
        let e = ServiceEndpoint::parse("https://[::1]:8443/api/").unwrap();
        assert_eq!(
            (e.url.as_str(), e.path.as_str()),
            ("https://[::1]:8443/api/", "/api/")
        );
    }

    #[test]
    fn refuses_what_is_not_an_endpoint() {
        for bad in [
            "127.0.0.1:5000",
            "ftp://host",
            "http://",
            "http://:80",
            "http://host:0",
            "http://host:99999",
            "http://host:",
            "http://host:x",
            "http://user:pw@host",
            "http://host/?Action=x",
            "http://[::1",
            "http://[::1]80",
            "http://[not-v6]",
            "http://ho st",
        ] {
            assert!(ServiceEndpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
