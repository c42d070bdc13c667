//! Configuration: the environment, read once at start-up into a validated `Config`. A bad value
//! is refused with one line naming the variable and what it expects. The server's and the
//! store's settings are read here; the cluster's come from `ClusterSettings`, which owns them.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::cluster::ClusterSettings;
use crate::emf;
use crate::http::{Limits, ServerConfig};
use crate::logging::{Filter, Format};
use crate::secret::Secret;
use crate::settings::{invalid, millis, number, ConfigError};
use crate::store::Endpoint;

#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub store: StoreConfig,
    pub debug: bool,
    pub log_format: Format,
    pub log_filter: Filter,
    pub http: ServerConfig,
    /// `/counts` listings open at once; more are refused with 503 `overloaded`.
    pub max_listings: usize,
    /// `/health/cluster`: discovery through a load balancer, and the AWS APIs it calls.
    pub cluster: ClusterSettings,
    /// `None` unless CloudWatch embedded-metric lines are wanted (`METRICS_EMF`).
    pub emf: Option<emf::Settings>,
}

#[derive(Debug)]
pub enum StoreConfig {
    /// Neither `REDIS_URL` nor `REDIS_CLUSTER_ADDRESS`: counts live in this process only.
    Memory,
    Redis(RedisConfig),
}

#[derive(Debug)]
pub struct RedisConfig {
    /// Shown without credentials by its `Display`.
    pub endpoint: Endpoint,
    pub key: String,
    pub timeout: Duration,
    /// Certificates trusted for `rediss://` besides the built-in roots.
    pub tls_ca_file: Option<PathBuf>,
}

/// Every variable read here, with its default, for `hello --help`.
pub const VARIABLES: &str = "  PORT                     port to listen on (default 8080)
  HOST                     address to listen on (default 0.0.0.0)
  REDIS_URL                redis:// or rediss:// URL, with password if any; wins over the address
  REDIS_CLUSTER_ADDRESS    Redis host:port (the original service's variable)
                           neither set: an in-process store whose counts are lost on exit
  REDIS_KEY                sorted-set key (default nytimes.names)
  REDIS_TIMEOUT_MS         Redis connect, read, write and host name lookup timeout (default 1000)
  REDIS_TLS_CA_FILE        PEM certificates trusted for rediss:// besides the built-in roots
  DEBUG                    true: local mode, no AWS calls (default false)
  LOG_FORMAT               text or json (default text)
  RUST_LOG                 env_logger directives, e.g. info,hello=debug,access=off,rustls=warn
                           (targets: hello, access, ureq, rustls); unreadable: refused (default info)
  HTTP_WORKERS             threads answering requests; at most half wait for AWS (default 32)
  HTTP_MAX_CONNECTIONS     open connections before new ones are refused (default 10000)
  HTTP_REQUEST_TIMEOUT_MS  time to send a whole request once started (default 10000)
  HTTP_IDLE_TIMEOUT_MS     keep-alive idle time, above an ALB's 60 s (default 75000)
  HTTP_WRITE_TIMEOUT_MS    time a response may go without a byte taken by the client (default 10000)
  COUNTS_MAX_LISTINGS      /counts listings open at once, each holding a Redis connection while
                           its client reads; more get 503 (default 16)
  SHUTDOWN_TIMEOUT_MS      time in-flight requests get after SIGTERM (default 10000)
  METRICS_EMF              true: one CloudWatch embedded-metric-format line per interval on
                           stdout (default true on ECS, i.e. when ECS_CONTAINER_METADATA_URI_V4
                           is set, false elsewhere)
  METRICS_EMF_NAMESPACE    CloudWatch namespace of those metrics (default hello)
  METRICS_EMF_INTERVAL_MS  time between two lines (default 60000)
  ELB_NAME                 Classic ELB whose in-service instances form the cluster
  TARGET_GROUP_ARN         or: ALB/NLB target group whose healthy targets form the cluster
  CLUSTER_PEER_TIMEOUT_MS  time each peer's /health may take (default 1500)
  CLUSTER_DEADLINE_MS      time /health/cluster may take in all, and the time the AWS calls
                           of one discovery share (default 3000)
  CLUSTER_MEMBERSHIP_TTL_MS
                           age at which the node list is discovered again (default 5000; 0: on
                           every request)
  AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI, AWS_ENDPOINT_URL[_EC2|_ELASTIC_LOAD_BALANCING],
  AWS_EC2_METADATA_SERVICE_ENDPOINT, AWS_EC2_METADATA_DISABLED: as the AWS SDKs read them
";

impl Config {
    /// Reads the configuration through `var`, which returns a variable's value if it is set.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        // An empty variable counts as unset, as shells and task definitions often leave them.
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());

        let port: u16 = number(&get, "PORT", 8080, 1, u16::MAX)?;
        let host = match get("HOST") {
            Some(h) => IpAddr::from_str(h.trim())
                .map_err(|_| invalid("HOST", "an IP address such as 0.0.0.0 or 127.0.0.2"))?,
            None => IpAddr::from([0, 0, 0, 0]),
        };

        let key = get("REDIS_KEY").unwrap_or_else(|| "nytimes.names".to_owned());
        let timeout = millis(&get, "REDIS_TIMEOUT_MS", 1000)?;
        let endpoint = match (get("REDIS_URL"), get("REDIS_CLUSTER_ADDRESS")) {
            (Some(url), _) => Some(endpoint_from_url(url.trim())?),
            (None, Some(address)) => Some(endpoint_from_address(address.trim())?),
            (None, None) => None,
        };
        let tls_ca_file = get("REDIS_TLS_CA_FILE").map(|f| PathBuf::from(f.trim()));
        let store = match endpoint {
            Some(endpoint) => StoreConfig::Redis(RedisConfig {
                endpoint,
                key,
                timeout,
                tls_ca_file,
            }),
            None => StoreConfig::Memory,
        };

        let debug = match get("DEBUG")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("false" | "0" | "no") => false,
            Some("true" | "1" | "yes") => true,
            Some(_) => return Err(invalid("DEBUG", "true or false")),
        };
        let log_format = match get("LOG_FORMAT")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("text") => Format::Text,
            Some("json") => Format::Json,
            Some(_) => return Err(invalid("LOG_FORMAT", "text or json")),
        };
        let log_filter = match get("RUST_LOG") {
            None => Filter::default(),
            Some(spec) => spec.trim().parse().map_err(|e| {
                invalid(
                    "RUST_LOG",
                    format!("env_logger directives such as info or warn,hello=debug ({e})"),
                )
            })?,
        };

        let http = ServerConfig {
            workers: number(&get, "HTTP_WORKERS", 32, 1, 1024)?,
            max_connections: number(&get, "HTTP_MAX_CONNECTIONS", 10_000, 1, 1_000_000)?,
            request_timeout: millis(&get, "HTTP_REQUEST_TIMEOUT_MS", 10_000)?,
            idle_timeout: millis(&get, "HTTP_IDLE_TIMEOUT_MS", 75_000)?,
            write_timeout: millis(&get, "HTTP_WRITE_TIMEOUT_MS", 10_000)?,
            drain_timeout: millis(&get, "SHUTDOWN_TIMEOUT_MS", 10_000)?,
            limits: Limits::default(),
        };

        let max_listings = number(&get, "COUNTS_MAX_LISTINGS", 16, 1, 10_000)?;
        let cluster = ClusterSettings::from_env(&get, debug)?;
        let emf = emf_settings(&get)?;
        Ok(Config {
            listen: SocketAddr::new(host, port),
            store,
            debug,
            log_format,
            log_filter,
            http,
            max_listings,
            cluster,
            emf,
        })
    }
}

/// On by default only on ECS, where the `awslogs` driver ships standard output to CloudWatch;
/// elsewhere nothing would turn the lines into metrics. The other two variables are checked even
/// when it is off, so that a mistake shows before it matters.
fn emf_settings(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<emf::Settings>, ConfigError> {
    let on_ecs = get("ECS_CONTAINER_METADATA_URI_V4").is_some();
    let enabled = match get("METRICS_EMF")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None => on_ecs,
        Some("true" | "1" | "yes") => true,
        Some("false" | "0" | "no") => false,
        Some(_) => return Err(invalid("METRICS_EMF", "true or false")),
    };
    let namespace =
        get("METRICS_EMF_NAMESPACE").map_or_else(|| "hello".to_owned(), |n| n.trim().to_owned());
    // CloudWatch's rules for a namespace: 1 to 255 of these characters, and `AWS/` is reserved.
    let valid = namespace.len() <= 255
        && !namespace.starts_with("AWS/")
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._#:/-".contains(&b));
    if !valid {
        return Err(invalid(
            "METRICS_EMF_NAMESPACE",
            "up to 255 letters, digits and . _ # : / -, not starting with AWS/",
        ));
    }
    let interval = number(get, "METRICS_EMF_INTERVAL_MS", 60_000, 100, 3_600_000)?;
    Ok(enabled.then(|| emf::Settings {
        namespace,
        interval: Duration::from_millis(interval),
    }))
}

const URL_SHAPE: &str = "redis://[[user]:password@]host[:port][/db] or rediss://… (value not shown: it may hold a password)";

/// Parses a `redis://` or `rediss://` URL. User and password may be percent-encoded.
fn endpoint_from_url(url: &str) -> Result<Endpoint, ConfigError> {
    let bad = || invalid("REDIS_URL", URL_SHAPE);
    let (tls, rest) = match (url.strip_prefix("redis://"), url.strip_prefix("rediss://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(bad()),
    };
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    let db = match db {
        "" => 0,
        digits if digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse().map_err(|_| bad())?
        }
        _ => return Err(bad()),
    };
    let (credentials, address) = match authority.rsplit_once('@') {
        Some((credentials, address)) => (Some(credentials), address),
        None => (None, authority),
    };
    let (username, password) = match credentials {
        None => (None, None),
        Some(credentials) => {
            let (user, password) = credentials.split_once(':').ok_or_else(bad)?;
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|s| s.into_owned())
                    .map_err(|_| bad())
            };
            let user = Some(decode(user)?).filter(|u| !u.is_empty());
            (user, Some(Secret::new(decode(password)?)))
        }
    };
    let (host, port) = split_host_port(address, 6379).ok_or_else(bad)?;
    Ok(Endpoint {
        host,
        port,
        tls,
        username,
        password,
        db,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the port may not be 0.
fn split_host_port(address: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = match address.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':')?)),
            }
        }
        None => match address.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        },
    };
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    valid.then(|| (host.to_owned(), port))
}

/// `host:port`, as the original service took it.
fn endpoint_from_address(address: &str) -> Result<Endpoint, ConfigError> {
    let bad = || invalid("REDIS_CLUSTER_ADDRESS", "host:port, e.g. localhost:6379");
    if !address.contains(':') {
        return Err(bad());
    }
    let (host, port) = split_host_port(address, 6379).ok_or_else(bad)?;
    Ok(Endpoint {
        host,
        port,
        tls: false,
        username: None,
        password: None,
        db: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::endpoint::Endpoint;
    use crate::cluster::Discovery;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_env(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_serve_locally_without_redis() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert!(matches!(c.store, StoreConfig::Memory));
        assert!(!c.debug);
        assert_eq!(c.http.idle_timeout, Duration::from_secs(75));
    }

    #[test]
    fn redis_url_wins_and_never_shows_its_password() {
        let c = config(&[
            ("REDIS_URL", "rediss://:s3cret@cache.example:6380/0"),
            ("REDIS_CLUSTER_ADDRESS", "other:6379"),
        ])
        .unwrap();
        let StoreConfig::Redis(r) = &c.store else {
            panic!("expected redis")
        };
        assert_eq!(r.endpoint.to_string(), "rediss://cache.example:6380");
        assert_eq!(
            r.endpoint.password.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert_eq!(r.endpoint.username, None);
        assert_eq!(r.key, "nytimes.names");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn aws_settings_follow_the_sdk_variables() {
        let c = config(&[
            ("ELB_NAME", "hello-elb"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:5001"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ])
        .unwrap();
        assert_eq!(
            c.cluster.discovery,
            Some(Discovery::ClassicElb("hello-elb".into()))
        );
        let url = |e: &Option<Endpoint>| e.as_ref().map(|e| e.url.clone());
        assert_eq!(
            url(&c.cluster.aws.elb_endpoint).as_deref(),
            Some("http://127.0.0.1:5000/")
        );
        assert_eq!(
            url(&c.cluster.aws.ec2_endpoint).as_deref(),
            Some("http://127.0.0.1:5001/")
        );
        assert_eq!(c.cluster.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.cluster.membership_ttl, Duration::from_secs(5));
        let c = config(&[("CLUSTER_MEMBERSHIP_TTL_MS", "0")]).unwrap();
        assert_eq!(c.cluster.membership_ttl, Duration::ZERO);
        assert_eq!(
            c.cluster.aws.imds_endpoint.as_deref(),
            Some("http://169.254.169.254")
        );
        // DEBUG=true: local mode, no metadata calls, no discovery.
        let c = config(&[("ELB_NAME", "x"), ("DEBUG", "true")]).unwrap();
        assert!(c.cluster.discovery.is_none() && c.cluster.aws.imds_endpoint.is_none());
        let c = config(&[("AWS_EC2_METADATA_DISABLED", "true")]).unwrap();
        assert!(c.cluster.aws.imds_endpoint.is_none());
    }

    #[test]
    fn embedded_metrics_are_on_by_default_only_on_ecs() {
        assert_eq!(config(&[]).unwrap().emf, None);
        let ecs = (
            "ECS_CONTAINER_METADATA_URI_V4",
            "http://169.254.170.2/v4/abc",
        );
        assert_eq!(
            config(&[ecs]).unwrap().emf,
            Some(emf::Settings {
                namespace: "hello".into(),
                interval: Duration::from_secs(60),
            })
        );
        assert_eq!(config(&[ecs, ("METRICS_EMF", "false")]).unwrap().emf, None);
        let c = config(&[
            ("METRICS_EMF", "true"),
            ("METRICS_EMF_NAMESPACE", "hello-staging"),
            ("METRICS_EMF_INTERVAL_MS", "250"),
        ])
        .unwrap();
        assert_eq!(
            c.emf,
            Some(emf::Settings {
                namespace: "hello-staging".into(),
                interval: Duration::from_millis(250),
            })
        );
    }

    #[test]
    fn seed_address_variable_still_works() {
        let c = config(&[
            ("REDIS_CLUSTER_ADDRESS", "10.0.0.5:6379"),
            ("REDIS_KEY", "k"),
        ])
        .unwrap();
        let StoreConfig::Redis(r) = &c.store else {
            panic!("expected redis")
        };
        assert_eq!(r.endpoint.to_string(), "redis://10.0.0.5:6379");
        assert!(!r.endpoint.tls && r.endpoint.password.is_none());
        assert_eq!(r.key, "k");
    }

    #[test]
    fn redis_urls_in_every_shape() {
        let endpoint = |url: &str| endpoint_from_url(url).unwrap();
        let e = endpoint("redis://cache");
        assert_eq!(
            (e.host.as_str(), e.port, e.tls, e.db),
            ("cache", 6379, false, 0)
        );
        let e = endpoint("rediss://app%40team:p%3Ass@cache.example:6380/3");
        assert_eq!(
            (e.host.as_str(), e.port, e.tls, e.db),
            ("cache.example", 6380, true, 3)
        );
        assert_eq!(e.username.as_deref(), Some("app@team"));
        assert_eq!(e.password.as_ref().map(Secret::expose), Some("p:ss"));
        let e = endpoint("redis://[::1]:7000/");
        assert_eq!((e.host.as_str(), e.port), ("::1", 7000));
        assert_eq!(e.to_string(), "redis://[::1]:7000");
        for bad in [
            "redis://",
            "redis://host:0",
            "redis://host:x",
            "redis://host/db",
            "redis://user@host",
            "redis://host?protocol=resp3",
            "redis://[::1",
            "redis://h:1:2",
            "redis://:%ff@host",
            "http://host",
        ] {
            assert!(endpoint_from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        let var = |vars: &[(&str, &str)]| config(vars).unwrap_err().variable;
        assert_eq!(var(&[("PORT", "http")]), "PORT");
        assert_eq!(var(&[("PORT", "0")]), "PORT");
        assert_eq!(var(&[("PORT", "70000")]), "PORT");
        assert_eq!(var(&[("HOST", "localhost:1")]), "HOST");
        assert_eq!(var(&[("REDIS_URL", "http://x")]), "REDIS_URL");
        assert_eq!(var(&[("REDIS_URL", "redis://")]), "REDIS_URL");
        assert_eq!(
            var(&[("REDIS_CLUSTER_ADDRESS", "nohost")]),
            "REDIS_CLUSTER_ADDRESS"
        );
        assert_eq!(
            var(&[("REDIS_CLUSTER_ADDRESS", "h:0")]),
            "REDIS_CLUSTER_ADDRESS"
        );
        assert_eq!(var(&[("DEBUG", "maybe")]), "DEBUG");
        assert_eq!(var(&[("LOG_FORMAT", "xml")]), "LOG_FORMAT");
        assert_eq!(var(&[("RUST_LOG", "hello=loud")]), "RUST_LOG");
        assert_eq!(var(&[("HTTP_WORKERS", "0")]), "HTTP_WORKERS");
        assert_eq!(
            var(&[("CLUSTER_MEMBERSHIP_TTL_MS", "-1")]),
            "CLUSTER_MEMBERSHIP_TTL_MS"
        );
        assert_eq!(var(&[("TARGET_GROUP_ARN", "tg")]), "TARGET_GROUP_ARN");
        assert_eq!(
            var(&[("ELB_NAME", "a"), ("TARGET_GROUP_ARN", "arn:x")]),
            "TARGET_GROUP_ARN"
        );
        assert_eq!(
            var(&[("AWS_ENDPOINT_URL_EC2", "localhost:5000")]),
            "AWS_ENDPOINT_URL_EC2"
        );
        assert_eq!(
            var(&[("AWS_ENDPOINT_URL", "http://host:0")]),
            "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING"
        );
        assert_eq!(
            var(&[("AWS_EC2_METADATA_DISABLED", "yes please")]),
            "AWS_EC2_METADATA_DISABLED"
        );
        assert_eq!(var(&[("METRICS_EMF", "on")]), "METRICS_EMF");
        assert_eq!(
            var(&[("METRICS_EMF_NAMESPACE", "AWS/ApplicationELB")]),
            "METRICS_EMF_NAMESPACE"
        );
        assert_eq!(
            var(&[("METRICS_EMF_NAMESPACE", "my app")]),
            "METRICS_EMF_NAMESPACE"
        );
        assert_eq!(
            var(&[("METRICS_EMF_INTERVAL_MS", "10")]),
            "METRICS_EMF_INTERVAL_MS"
        );
        let e = config(&[("REDIS_URL", "redis://:pw-in-url@")]).unwrap_err();
        assert!(!e.to_string().contains("pw-in-url"));
    }
}
