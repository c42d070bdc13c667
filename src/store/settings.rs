//! The store's settings: which store (Redis, named by `REDIS_URL` or `REDIS_CLUSTER_ADDRESS`, or
//! else the in-process one), standalone or cluster, the sorted set's key and its family in a
//! cluster, the timeout, the connection cap and the extra TLS roots, the replicas a greeting
//! waits for, the limits on new names; and the parsing of a Redis URL into a
//! [`RedisEndpoint`], which must never show its password.

use std::path::PathBuf;
use std::time::Duration;

use super::admission::AdmissionLimits;
use super::connection::RedisEndpoint;
use super::memory::DEFAULT_MAX_NAMES;
use crate::secret::Secret;
use crate::settings::{invalid, millis, number, value, variables, ConfigError};

variables! {
    REDIS_URL = "",
        "redis:// or rediss:// URL, with password if any; wins over the address";
    REDIS_CLUSTER_ADDRESS = "",
        "Redis host:port (the original service's variable); neither set: an in-process \
              store whose counts are lost on exit";
    REDIS_KEY = "nytimes.names",
        "sorted-set key (standalone); in cluster mode the base of the keys' names";
    REDIS_MODE = "auto",
        "standalone, cluster (Redis Cluster, ElastiCache cluster mode or Serverless) or auto: \
              asked of Redis (INFO cluster) at first use";
    REDIS_KEY_SHARDS = "64",
        "in cluster mode, the keys the names are spread over (REDIS_KEY:{0} …), 1 to 16384; \
              fixed for the life of the data";
    REDIS_WAIT_REPLICAS = "0",
        "replicas each batch's increments must reach (WAIT) before its greetings are answered \
              200; short of them, 504 (0: no wait)";
    REDIS_TIMEOUT_MS = "1000",
        "deadline of each Redis command (and each page of a listing): connection, name \
              lookup, write and the whole reply";
    REDIS_MAX_CONNECTIONS = "32",
        "Redis connections open at once to each server (each primary of a cluster); must \
              exceed COUNTS_MAX_LISTINGS + 1, so that listings never hold the one greetings need";
    REDIS_TLS_CA_FILE = "",
        "PEM certificates trusted for rediss:// besides the built-in roots";
    STORE_MAX_PENDING = "1024",
        "greetings that may wait for the store (the store lane); more get 503 overloaded";
    STORE_NEW_NAMES_MAX_MEMORY_PERCENT = "90",
        "new names are refused (507 names_full) once Redis's used_memory reaches this \
              percentage of its maxmemory (1 to 100; maxmemory 0: never); known names still count";
    REDIS_DATA_LIMIT_BYTES = "",
        "the memory limit of each primary where Redis states none or a larger one \
              (ElastiCache Serverless: its data-storage maximum), for the rule above";
    NAMES_MAX = "none with Redis, 100000 in-process",
        "most names in the set; past it new names are refused (507 names_full) and known \
              names still count (0: no new names)";
}

/// `STORE_MAX_PENDING`: the size of the store lane's queue ([`super::Increments`]).
pub fn max_pending_from_env(get: &impl Fn(&str) -> Option<String>) -> Result<usize, ConfigError> {
    number(get, &STORE_MAX_PENDING, 1, 1_000_000)
}

#[derive(Debug)]
pub enum StoreSettings {
    /// Neither `REDIS_URL` nor `REDIS_CLUSTER_ADDRESS`: counts live in this process only, at
    /// most `max_names` of them.
    Memory {
        max_names: u64,
    },
    Redis(RedisSettings),
}

#[derive(Debug)]
pub struct RedisSettings {
    /// Shown without credentials by its `Display`.
    pub endpoint: RedisEndpoint,
    pub mode: RedisMode,
    pub key: String,
    /// In cluster mode, the keys the names are spread over.
    pub key_shards: u16,
    pub timeout: Duration,
    /// Connections open at once to each server, idle or in use.
    pub max_connections: usize,
    /// Certificates trusted for `rediss://` besides the built-in roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Replicas a batch's writes must reach before its greetings are answered 200.
    pub wait_replicas: u8,
    /// When new names stop being admitted.
    pub limits: AdmissionLimits,
}

/// Standalone or cluster, as `REDIS_MODE` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisMode {
    /// Asked of Redis at first use (`INFO cluster`).
    Detect,
    Standalone,
    Cluster,
}

impl RedisSettings {
    /// The settings of a store at `endpoint` with every other variable at its default, read
    /// from the same table as the environment's (for tests and tools that make a store).
    pub fn with_defaults(endpoint: RedisEndpoint) -> Result<RedisSettings, ConfigError> {
        let url = |name: &str| (name == REDIS_URL.name).then(|| "redis://localhost".to_owned());
        match StoreSettings::from_env(&url, 0)? {
            StoreSettings::Redis(settings) => Ok(RedisSettings {
                endpoint,
                ..settings
            }),
            StoreSettings::Memory { .. } => Err(invalid(REDIS_URL.name, URL_SHAPE)),
        }
    }
}

impl StoreSettings {
    /// How long a greeting may wait in the store lane: longer than a command may take to be
    /// sent means the store is not keeping up.
    pub fn max_wait(&self) -> Duration {
        match self {
            StoreSettings::Redis(r) => r.timeout,
            StoreSettings::Memory { .. } => Duration::from_secs(1),
        }
    }

    /// `get` returns a variable's value when it is set and not blank. The URL wins over the
    /// address; the other variables are checked even for the in-process store, so that a
    /// mistake shows before it matters. Each of `max_listings` open listings holds a
    /// connection until its client has read it; greetings need one more, and a health check
    /// or a HEAD another, so that listings cannot starve them.
    pub fn from_env(
        get: &impl Fn(&str) -> Option<String>,
        max_listings: usize,
    ) -> Result<StoreSettings, ConfigError> {
        let key = value(get, &REDIS_KEY);
        let mode = match value(get, &REDIS_MODE).trim() {
            "auto" => RedisMode::Detect,
            "standalone" => RedisMode::Standalone,
            "cluster" => RedisMode::Cluster,
            _ => return Err(invalid(REDIS_MODE.name, "auto, standalone or cluster")),
        };
        // A brace in the key would make the cluster keys' hash tags other than their numbers
        // (all keys in one slot, at worst).
        if mode != RedisMode::Standalone && key.contains(['{', '}']) {
            return Err(invalid(
                REDIS_KEY.name,
                "a key without { or } (the hash tags of the cluster's keys), or REDIS_MODE=standalone",
            ));
        }
        let key_shards = number(get, &REDIS_KEY_SHARDS, 1, 16384)?;
        let wait_replicas = number(get, &REDIS_WAIT_REPLICAS, 0, 16)?;
        let timeout = millis(get, &REDIS_TIMEOUT_MS)?;
        let max_connections = number(get, &REDIS_MAX_CONNECTIONS, 2, 10_000)?;
        if max_connections <= max_listings + 1 {
            return Err(invalid(
                REDIS_MAX_CONNECTIONS.name,
                format!(
                    "a whole number above COUNTS_MAX_LISTINGS + 1 ({})",
                    max_listings + 1
                ),
            ));
        }
        let endpoint = match (get(REDIS_URL.name), get(REDIS_CLUSTER_ADDRESS.name)) {
            (Some(url), _) => Some(endpoint_from_url(url.trim())?),
            (None, Some(address)) => Some(endpoint_from_address(address.trim())?),
            (None, None) => None,
        };
        if mode == RedisMode::Cluster && endpoint.as_ref().is_some_and(|e| e.db != 0) {
            return Err(invalid(
                REDIS_URL.name,
                "database 0 in cluster mode (a cluster has no other; value not shown)",
            ));
        }
        let tls_ca_file = get(REDIS_TLS_CA_FILE.name).map(|f| PathBuf::from(f.trim()));
        let max_memory_percent = number(get, &STORE_NEW_NAMES_MAX_MEMORY_PERCENT, 1, 100)?;
        let data_limit = match get(REDIS_DATA_LIMIT_BYTES.name) {
            Some(_) => Some(number(get, &REDIS_DATA_LIMIT_BYTES, 1, u64::MAX)?),
            None => None,
        };
        // Its default depends on the store, so it is not read through the table's default.
        let max_names = match get(NAMES_MAX.name) {
            Some(raw) => Some(raw.trim().parse::<u64>().map_err(|_| {
                invalid(
                    NAMES_MAX.name,
                    "a whole number from 0 to 18446744073709551615",
                )
            })?),
            None => None,
        };
        Ok(match endpoint {
            Some(endpoint) => StoreSettings::Redis(RedisSettings {
                endpoint,
                mode,
                key,
                key_shards,
                timeout,
                max_connections,
                tls_ca_file,
                wait_replicas,
                limits: AdmissionLimits {
                    max_memory_percent,
                    max_names,
                    data_limit,
                },
            }),
            None => StoreSettings::Memory {
                max_names: max_names.unwrap_or(DEFAULT_MAX_NAMES),
            },
        })
    }
}

const URL_SHAPE: &str = "redis://[[user]:password@]host[:port][/db] or rediss://… (value not shown: it may hold a password)";

/// Parses a `redis://` or `rediss://` URL. User and password may be percent-encoded.
fn endpoint_from_url(url: &str) -> Result<RedisEndpoint, ConfigError> {
    let bad = || invalid(REDIS_URL.name, URL_SHAPE);
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
    Ok(RedisEndpoint {
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
fn endpoint_from_address(address: &str) -> Result<RedisEndpoint, ConfigError> {
    let bad = || invalid(REDIS_CLUSTER_ADDRESS.name, "host:port, e.g. localhost:6379");
    if !address.contains(':') {
        return Err(bad());
    }
    let (host, port) = split_host_port(address, 6379).ok_or_else(bad)?;
    Ok(RedisEndpoint {
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
}
