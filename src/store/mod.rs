//! Where counts live: the `Store` trait the handlers use, with Redis sorted sets behind it in
//! production (one key on standalone Redis, a family of keys spread over a cluster) and an
//! in-process store for development. Both are bounded: a new name is counted only while the
//! store has room for it (see `admission` and `memory`).
//!
//! The rooms: `settings` (the variables); `lane` (greetings batched into pipelines); `redis`
//! (the Redis store: increments, listings, samples), over `nodes` (which server each command
//! goes to, a cluster's map, redirects), `pool` (each server's connections), `connection` (one
//! connection, TCP or TLS, and its login), `resolve` (name lookups bounded in time) and `resp`
//! (the wire protocol); `topology`, `slots` and `replies` read what Redis says, as pure
//! functions; `single` lists standalone Redis's one key and `merge` a cluster's keys as one; `admission` decides about new names;
//! `migrate` moves the one key's counts into a cluster's family; `memory` is the in-process
//! store.

mod admission;
mod connection;
mod lane;
mod memory;
mod merge;
pub mod migrate;
mod nodes;
mod pool;
mod redis;
mod replies;
mod resolve;
pub mod resp;
mod scan;
mod settings;
mod single;
mod slots;
mod topology;

pub use self::admission::{AdmissionLimits, Room};
pub use self::connection::{RedisEndpoint, TlsSetupError};
pub use self::lane::{CountRequest, Increments};
pub use self::memory::MemoryStore;
pub use self::pool::PoolStats;
pub use self::redis::RedisStore;
pub use self::scan::{Scan, ScanRequest};
pub use self::settings::{
    max_pending_from_env, RedisMode, RedisSettings, StoreSettings, VARIABLES,
};
pub use self::slots::{key_slot, KeyFamily};

use std::fmt;
use std::sync::Arc;

/// One name and how many times it was greeted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameCount {
    pub name: String,
    /// The score as Redis writes it: `3` for the counts this service and the original write,
    /// and whatever others wrote passed through as it is (`1.5`, `1e+20`, `inf`).
    pub score: String,
}

/// What a store did, for `/metrics`: fed to it, never read from a global.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Its connections to Redis (all zero for the in-process store).
    pub pool: PoolStats,
    /// Batches of greetings sent (each one pipeline per primary): increments per batch is how
    /// well the lane batches.
    pub batches: u64,
    /// Commands sent again where a cluster's `-MOVED` or `-ASK` said.
    pub redirects: u64,
    /// Readings of a cluster's slot map.
    pub topology_refreshes: u64,
    /// Greetings counted but answered 504 because `WAIT` did not see them on enough replicas.
    pub unreplicated: u64,
}

/// The order of a listing. `Ascending` is Redis `ZRANGE` order: count, then name bytewise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Ascending,
    Descending,
}

/// Why the store could not do what was asked. For an increment the first two differ in what
/// the client may do: after `Unavailable` nothing was done and trying again is safe; after
/// `OutcomeUnknown` the increment may have been counted, and trying again may count it twice.
/// After `Full` and `NamesFull` nothing was done either, but trying again at once will not
/// help.
#[derive(Clone, Debug)]
pub enum StoreError {
    /// Certainly not applied: no connection could be had (Redis unreachable, refused, at its
    /// `maxclients`, no free connection in time), nothing of the command was sent, or Redis
    /// answered with a state of its own (`LOADING`, `READONLY`) instead of running it.
    Unavailable(String),
    /// The command was sent (wholly or in part) and its reply did not come: the deadline
    /// passed, the connection broke, or the answer was not Redis. Redis may have run it.
    OutcomeUnknown(String),
    /// The store answered with an error of its own (e.g. the key holds another type).
    Refused(String),
    /// The store lane was full: nothing was sent, and the caller may try again.
    Overloaded,
    /// Redis is out of memory (`OOM`: `maxmemory` reached under `noeviction`) and refused the
    /// write: not applied, known names' increments included.
    Full(String),
    /// The name is new and the store takes no new names now (past its memory watermark or its
    /// cap on names): not stored, not counted. Names already in the store still count.
    NamesFull,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "store unavailable: {why}"),
            StoreError::OutcomeUnknown(why) => write!(f, "store outcome unknown: {why}"),
            StoreError::Refused(why) => write!(f, "store refused the command: {why}"),
            StoreError::Overloaded => f.write_str("too many greetings wait for the store"),
            StoreError::Full(why) => write!(f, "store full: {why}"),
            StoreError::NamesFull => f.write_str("the store takes no new names now"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A set of names with counts. Implementations are shared by the threads that use the store:
/// the store lane, the blocking threads' listings and the health sampler.
///
/// A new name is counted only while the store admits new names; past that, an increment of a
/// name the store does not hold answers [`StoreError::NamesFull`] and stores nothing.
pub trait Store: Send + Sync {
    /// Adds one to `name`'s count and returns the new count. Called once per request, never
    /// retried: after `OutcomeUnknown` the name may have been counted already.
    fn increment(&self, name: &str) -> Result<i64, StoreError>;

    /// Adds one to each name, in order, as one round trip where the store allows it; one
    /// result per name, each standing for its own increment.
    fn increment_batch(&self, names: &[&str]) -> Vec<Result<i64, StoreError>> {
        names.iter().map(|name| self.increment(name)).collect()
    }

    /// Starts reading the entries `request` names. Nothing may be read until the first chunk
    /// is asked for.
    fn scan(self: Arc<Self>, request: ScanRequest) -> Box<dyn Scan>;

    /// How many names the store holds (Redis: the sum of the keys' `ZCARD`s), asked now.
    fn names(&self) -> Result<u64, StoreError>;

    /// Checks that the store answers, and refreshes what it knows of its room for new names
    /// (Redis: a cluster's map, `INFO memory` of each primary and `ZCARD` of each key, within
    /// one timeout). Called about once a second by the health sampler, never on a request's
    /// path.
    fn refresh(&self) -> Result<(), StoreError>;

    /// The store's room for new names as last known, without asking the store.
    fn room(&self) -> Room;

    /// What the store did so far.
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }

    /// A short word for logs and `/health`: `redis` or `memory`.
    fn kind(&self) -> &'static str;
}

/// The store `settings` name, opened (Redis is connected at first use), with a line that says
/// what it is and what it promises; the error names `REDIS_TLS_CA_FILE`, the one setting that
/// is read only now.
pub fn open(settings: StoreSettings) -> Result<Arc<dyn Store>, TlsSetupError> {
    let r = match settings {
        StoreSettings::Memory { max_names } => {
            log::warn!(
                "neither REDIS_URL nor REDIS_CLUSTER_ADDRESS is set: counts are kept in memory and lost when the process exits (at most {max_names} names)"
            );
            return Ok(Arc::new(MemoryStore::new().with_max_names(max_names)));
        }
        StoreSettings::Redis(r) => r,
    };
    let display = r.endpoint.to_string();
    if r.tls_ca_file.is_some() && !r.endpoint.tls {
        log::warn!("REDIS_TLS_CA_FILE is ignored: Redis is not reached over TLS (rediss://)");
    }
    let mode = match r.mode {
        RedisMode::Detect => "standalone or cluster, as Redis says at first use",
        RedisMode::Standalone => "standalone (REDIS_MODE)",
        RedisMode::Cluster => "cluster (REDIS_MODE)",
    };
    let limits = r.limits;
    let cap = match limits.max_names {
        Some(max) => format!("and {max} names"),
        None => "with no cap on names".to_owned(),
    };
    let wait = match r.wait_replicas {
        0 => "answered once Redis has them".to_owned(),
        n => format!("answered once {n} replica(s) have them (WAIT)"),
    };
    let store = RedisStore::new(r)?;
    log::info!(
        "counting in Redis at {display}, {mode}; greetings {wait}; new names admitted up to {}% of each primary's memory limit {cap}",
        limits.max_memory_percent
    );
    Ok(Arc::new(store))
}
