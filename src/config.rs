//! Configuration: the environment, read once at start-up into a validated `Config`; nothing
//! else reads it. A bad value is refused with one line naming the variable and what it expects.
//! Each module owns its variables (a table of [`Variable`]s, with the parsing beside them,
//! through `settings`); this module only composes them and renders the tables for
//! `hello --help`.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use crate::cluster::ClusterSettings;
use crate::http::ServerConfig;
use crate::logging::{Filter, Format};
use crate::settings::{ConfigError, Variable};
use crate::store::StoreSettings;
use crate::{aws, cluster, counts, emf, http, logging, store};

#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub store: StoreSettings,
    pub log_format: Format,
    pub log_filter: Filter,
    /// How often a repeated kind of log line is summed up.
    pub log_repeat_interval: Duration,
    pub http: ServerConfig,
    /// `/counts` listings open at once; more are refused with 503 `overloaded`.
    pub max_listings: usize,
    /// Greetings that may wait for the store.
    pub max_pending: usize,
    /// `/health/cluster`: discovery through a load balancer, and the AWS APIs it calls.
    pub cluster: ClusterSettings,
    /// `None` unless CloudWatch embedded-metric lines are wanted (`METRICS_EMF`).
    pub emf: Option<emf::Settings>,
}

/// Every variable the service reads, module by module, in the order `hello --help` lists them.
pub const VARIABLES: &[&[Variable]] = &[
    http::VARIABLES,
    store::VARIABLES,
    logging::VARIABLES,
    counts::VARIABLES,
    emf::VARIABLES,
    cluster::VARIABLES,
    aws::VARIABLES,
];

/// The variables for `hello --help`: one per entry, its meaning wrapped under it when the name
/// is long, and its default at the end.
pub fn help() -> String {
    const NAME: usize = 25;
    const WIDTH: usize = 98;
    let mut out = String::new();
    for v in VARIABLES.iter().flat_map(|m| m.iter()) {
        let mut text = v.meaning.to_owned();
        if !v.default.is_empty() {
            let _ = write!(text, " (default {})", v.default);
        }
        let mut line = format!("  {:<NAME$}", v.name);
        if v.name.len() >= NAME {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(NAME + 2);
        }
        let mut empty = true;
        for word in text.split_whitespace() {
            if !empty && line.len() + 1 + word.len() > WIDTH {
                out.push_str(&line);
                out.push('\n');
                line = " ".repeat(NAME + 2);
                empty = true;
            }
            if !empty {
                line.push(' ');
            }
            line.push_str(word);
            empty = false;
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

impl Config {
    /// Reads the configuration through `var`, which returns a variable's value if it is set.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        // An empty variable counts as unset, as shells and task definitions often leave them.
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());

        let listen = http::listen_from_env(&get)?;
        let (log_format, log_filter) = logging::settings_from_env(&get)?;
        let log_repeat_interval = logging::repeat_interval_from_env(&get)?;
        let mut http = ServerConfig::from_env(&get)?;
        let max_listings = counts::max_listings_from_env(&get)?;
        let store = StoreSettings::from_env(&get, max_listings)?;
        let max_pending = store::max_pending_from_env(&get)?;
        let cluster = ClusterSettings::from_env(&get)?;
        // The routes that block: each open listing and each cluster request has a thread.
        http.blocking_threads = max_listings + cluster.max_requests;
        let emf = emf::Settings::from_env(&get)?;
        Ok(Config {
            listen,
            store,
            log_format,
            log_filter,
            log_repeat_interval,
            http,
            max_listings,
            max_pending,
            cluster,
            emf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::endpoint::ServiceEndpoint;
    use crate::cluster::Discovery;
    use crate::secret::Secret;
    use std::collections::{BTreeMap, HashMap};
    use std::time::Duration;

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
        assert!(matches!(
            c.store,
            StoreSettings::Memory { max_names: 100_000 }
        ));
        assert!(!c.cluster.local);
        assert_eq!(c.http.connection.idle_timeout, Duration::from_secs(75));
    }

    #[test]
    fn redis_url_wins_and_never_shows_its_password() {
        let c = config(&[
            ("REDIS_URL", "rediss://:s3cret@cache.example:6380/0"),
            ("REDIS_CLUSTER_ADDRESS", "other:6379"),
        ])
        .unwrap();
        let StoreSettings::Redis(r) = &c.store else {
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
        let url = |e: &Option<ServiceEndpoint>| e.as_ref().map(|e| e.url.clone());
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
        // The one boolean parser: `1` and `yes` as `DEBUG` takes them.
        let c = config(&[("AWS_EC2_METADATA_DISABLED", "yes")]).unwrap();
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
    fn new_names_are_limited_by_memory_with_redis_and_by_number_in_process() {
        let redis = ("REDIS_CLUSTER_ADDRESS", "redis:6379");
        let limits = |vars: &[(&str, &str)]| match config(vars).unwrap().store {
            StoreSettings::Redis(r) => r.limits,
            StoreSettings::Memory { .. } => panic!("expected redis"),
        };
        assert_eq!(limits(&[redis]), store::AdmissionLimits::default());
        assert_eq!(
            limits(&[
                redis,
                ("NAMES_MAX", "5000"),
                ("STORE_NEW_NAMES_MAX_MEMORY_PERCENT", "100")
            ]),
            store::AdmissionLimits {
                max_memory_percent: 100,
                max_names: Some(5000),
                data_limit: None,
            }
        );
        assert_eq!(
            limits(&[redis, ("REDIS_DATA_LIMIT_BYTES", "1000000000")]).data_limit,
            Some(1_000_000_000)
        );
        let c = config(&[("NAMES_MAX", "0")]).unwrap();
        assert!(matches!(c.store, StoreSettings::Memory { max_names: 0 }));
    }

    #[test]
    fn redis_mode_keys_and_replicas() {
        let redis = |vars: &[(&str, &str)]| {
            let mut all = vec![("REDIS_URL", "rediss://cfg.example:6379")];
            all.extend_from_slice(vars);
            match config(&all).unwrap().store {
                StoreSettings::Redis(r) => r,
                StoreSettings::Memory { .. } => panic!("expected redis"),
            }
        };
        let r = redis(&[]);
        assert_eq!(
            (r.mode, r.key_shards, r.wait_replicas),
            (store::RedisMode::Detect, 64, 0)
        );
        let r = redis(&[
            ("REDIS_MODE", "cluster"),
            ("REDIS_KEY_SHARDS", "16"),
            ("REDIS_WAIT_REPLICAS", "1"),
        ]);
        assert_eq!(
            (r.mode, r.key_shards, r.wait_replicas),
            (store::RedisMode::Cluster, 16, 1)
        );
        // A standalone key may hold braces; a cluster's keys are tagged after it.
        assert_eq!(
            redis(&[("REDIS_MODE", "standalone"), ("REDIS_KEY", "{app}names")]).key,
            "{app}names"
        );
    }

    #[test]
    fn seed_address_variable_still_works() {
        let c = config(&[
            ("REDIS_CLUSTER_ADDRESS", "10.0.0.5:6379"),
            ("REDIS_KEY", "k"),
        ])
        .unwrap();
        let StoreSettings::Redis(r) = &c.store else {
            panic!("expected redis")
        };
        assert_eq!(r.endpoint.to_string(), "redis://10.0.0.5:6379");
        assert!(!r.endpoint.tls && r.endpoint.password.is_none());
        assert_eq!(r.key, "k");
    }

    /// The README's Configuration tables, as (variable, default) pairs: each row's backquoted
    /// names, and its default with the backquotes taken off; a row naming several variables
    /// with as many comma-separated defaults gives one to each.
    fn readme_defaults() -> BTreeMap<String, String> {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let start = readme
            .find("\n## Configuration")
            .expect("a Configuration section");
        let end = start
            + readme[start..]
                .find("\n## Architecture")
                .expect("then Architecture");
        let mut found = BTreeMap::new();
        for row in readme[start..end].lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let names: Vec<&str> = cells[1]
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|n| {
                    n.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                })
                .collect();
            let default = cells[2].replace('`', "");
            let parts: Vec<&str> = default.split(", ").collect();
            for (i, name) in names.iter().enumerate() {
                let default = if names.len() > 1 && parts.len() == names.len() {
                    parts[i].to_owned()
                } else {
                    default.clone()
                };
                assert!(
                    found.insert(name.to_string(), default).is_none(),
                    "{name} twice"
                );
            }
        }
        found
    }

    #[test]
    fn help_lists_the_readme_variables_with_the_same_defaults() {
        let table: BTreeMap<String, String> = VARIABLES
            .iter()
            .flat_map(|m| m.iter())
            .map(|v| (v.name.to_owned(), v.default.to_owned()))
            .collect();
        let readme = readme_defaults();
        assert!(readme.len() > 30, "README tables not found: {readme:?}");
        for (name, default) in &table {
            assert_eq!(readme.get(name), Some(default), "{name}: README vs --help");
        }
        for name in readme.keys() {
            assert!(
                table.contains_key(name),
                "{name} is in the README, not in --help"
            );
        }
        let help = help();
        for name in table.keys() {
            assert!(
                help.contains(&format!("  {name} ")) || help.contains(&format!("  {name}\n")),
                "{name}"
            );
        }
    }

    #[test]
    fn the_defaults_in_the_table_are_what_is_parsed() {
        // Every default is read through the same parsers as a value that was set: none fails,
        // and setting each to its own default changes nothing.
        let c = config(&[]).unwrap();
        let defaults: Vec<(&str, &str)> = VARIABLES
            .iter()
            .flat_map(|m| m.iter())
            .filter(|v| {
                v.default.bytes().all(|b| !b.is_ascii_whitespace()) && !v.default.is_empty()
            })
            .map(|v| (v.name, v.default))
            .collect();
        let d = config(&defaults).unwrap();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let var = |vars: &[(&str, &str)]| config(vars).unwrap_err().variable;
        assert_eq!(var(&[("PORT", "http")]), "PORT");
        // Listings must leave the greetings a connection.
        let redis = ("REDIS_CLUSTER_ADDRESS", "redis:6379");
        let pool = |n| {
            [
                redis,
                ("REDIS_MAX_CONNECTIONS", n),
                ("COUNTS_MAX_LISTINGS", "16"),
            ]
        };
        assert_eq!(var(&pool("17")), "REDIS_MAX_CONNECTIONS");
        assert!(config(&pool("18")).is_ok());
        assert_eq!(
            var(&[("REDIS_MAX_CONNECTIONS", "2")]),
            "REDIS_MAX_CONNECTIONS",
            "checked without Redis too, so that the mistake shows before Redis is configured"
        );
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
        for bad in ["0", "101", "ninety"] {
            assert_eq!(
                var(&[("STORE_NEW_NAMES_MAX_MEMORY_PERCENT", bad)]),
                "STORE_NEW_NAMES_MAX_MEMORY_PERCENT"
            );
        }
        for bad in ["-1", "lots", "1e6"] {
            assert_eq!(var(&[("NAMES_MAX", bad)]), "NAMES_MAX");
        }
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
        for (name, bad) in [
            ("REDIS_MODE", "sharded"),
            ("REDIS_KEY_SHARDS", "0"),
            ("REDIS_KEY_SHARDS", "16385"),
            ("REDIS_WAIT_REPLICAS", "-1"),
            ("REDIS_WAIT_REPLICAS", "17"),
            ("REDIS_DATA_LIMIT_BYTES", "0"),
            ("REDIS_DATA_LIMIT_BYTES", "5GB"),
            ("REDIS_KEY", "{app}names"),
        ] {
            assert_eq!(var(&[(name, bad)]), name, "{name}={bad}");
        }
        // A cluster has database 0 only; the URL is not shown.
        let e = config(&[
            ("REDIS_URL", "redis://:secret@h:1/2"),
            ("REDIS_MODE", "cluster"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "REDIS_URL");
        assert!(!e.to_string().contains("secret"));
        let e = config(&[("REDIS_URL", "redis://:pw-in-url@")]).unwrap_err();
        assert!(!e.to_string().contains("pw-in-url"));
    }
}
