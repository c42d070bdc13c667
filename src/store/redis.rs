//! The production store: a Redis sorted set, reached over a capped pool of connections, each
//! command under one deadline. Greetings come from the store lane, one pipeline at a time, sent
//! as `ZINCRBY` while new names are admitted and as `ZADD … XX INCR` (known names only) while
//! they are not (see `admission`).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::admission::{name_bytes, Admission, Batch, Limits, Room};
use super::connection::{Connection, Connector, Endpoint, TlsSetupError};
use super::resp::{Reply, ServerError};
use super::scan::{Scan, ScanRequest, Window};
use super::{Entry, Order, Store, StoreError};

pub struct RedisStore {
    connector: Connector,
    key: String,
    timeout: Duration,
    pool: Arc<Pool>,
    /// Most connections open at once (idle or in use).
    max_connections: usize,
    /// Bumped when a connection fails, so that the other idle connections (most likely broken
    /// the same way, e.g. by a Redis restart) are dropped instead of failing one request each.
    generation: AtomicU64,
    /// Whether new names are admitted, from the samples and what the lane added since.
    admission: Admission,
    /// Set once `INFO` has been refused (an ACL without it), so that it is logged once.
    info_refused: AtomicBool,
}

/// Connections to Redis: those idle, and how many are open.
struct Pool {
    state: Mutex<PoolState>,
    /// Signalled when a connection comes back or closes, for callers waiting at the cap.
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Pooled>,
    open: usize,
}

impl Pool {
    fn state(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection closed, or one never made: its place is free.
    fn release(&self) {
        self.state().open -= 1;
        POOL_COUNTERS.open.fetch_sub(1, AtomicOrdering::Relaxed);
        self.freed.notify_one();
    }
}

/// What the pools of this process did, for `/metrics`: how often a connection was reused
/// rather than opened, and what became of those a listing left with a reply on its way.
pub struct PoolCounters {
    /// Connections opened (each a TCP, maybe TLS, handshake and a login).
    pub opened: AtomicU64,
    /// Commands sent on an idle connection taken from the pool.
    pub reused: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Callers that found every connection in use and waited for one.
    pub waited: AtomicU64,
    /// Replies of listings left before their end, read and thrown away by the connection's
    /// next user, which kept the connection.
    pub drained: AtomicU64,
    /// Such replies that could not be read (late, or the connection broken): closed.
    pub abandoned: AtomicU64,
}

pub static POOL_COUNTERS: PoolCounters = PoolCounters {
    opened: AtomicU64::new(0),
    reused: AtomicU64::new(0),
    open: AtomicU64::new(0),
    waited: AtomicU64::new(0),
    drained: AtomicU64::new(0),
    abandoned: AtomicU64::new(0),
};

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, AtomicOrdering::Relaxed);
}

/// A connection out of the pool, with the generation it belongs to. Dropping it closes the
/// connection and frees its place in the pool.
struct Pooled {
    generation: u64,
    conn: Connection,
    pool: Arc<Pool>,
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.release();
    }
}

/// Connections a store may open when not told otherwise (`REDIS_MAX_CONNECTIONS`'s default).
const DEFAULT_MAX_CONNECTIONS: usize = 32;

impl RedisStore {
    /// Nothing is connected until first use. `extra_ca` adds trusted certificates for TLS.
    pub fn new(
        endpoint: Endpoint,
        key: String,
        timeout: Duration,
        extra_ca: Option<&Path>,
    ) -> Result<RedisStore, TlsSetupError> {
        Ok(RedisStore {
            connector: Connector::new(endpoint, extra_ca)?,
            key,
            timeout,
            pool: Arc::new(Pool {
                state: Mutex::new(PoolState {
                    idle: Vec::new(),
                    open: 0,
                }),
                freed: Condvar::new(),
            }),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            generation: AtomicU64::new(0),
            admission: Admission::new(Limits::default()),
            info_refused: AtomicBool::new(false),
        })
    }

    /// New names are admitted within `limits` (the settings' defaults when not told); set
    /// before first use.
    pub fn with_limits(mut self, limits: Limits) -> RedisStore {
        self.admission = Admission::new(limits);
        self
    }

    /// At most `max` connections open at once (at least one); set before first use.
    pub fn with_max_connections(mut self, max: usize) -> RedisStore {
        self.max_connections = max.max(1);
        self
    }

    /// An idle connection of the current generation, or a new one while fewer than the cap
    /// are open, or else the first to come back within the timeout (if none does: unavailable,
    /// nothing having been sent). An idle connection the server has closed starts a new
    /// generation: its siblings most likely went the same way.
    ///
    /// `deadline` is the command's: waiting for a connection, making one, reading a reply owed
    /// to nobody, then the command itself, all share it. The connection returned has it set.
    fn checkout(&self, deadline: Instant) -> Result<Pooled, StoreError> {
        let mut waited = false;
        loop {
            // Reading replies owed to nobody may have used up the caller's time: then it gets
            // no connection, rather than fail the next ones it would try (and, connecting too
            // late, retire the whole pool).
            if Instant::now() >= deadline {
                return Err(self.no_connection_in_time(waited));
            }
            let generation = self.generation.load(AtomicOrdering::Acquire);
            let mut state = self.pool.state();
            // Closing a connection takes the lock again: the old ones are dropped after it.
            let (current, old): (Vec<Pooled>, Vec<Pooled>) = std::mem::take(&mut state.idle)
                .into_iter()
                .partition(|p| p.generation == generation);
            state.idle = current;
            if !old.is_empty() {
                drop(state);
                drop(old);
                continue;
            }
            // A connection with no reply to throw away first, if there is one.
            let settled = state.idle.iter().rposition(|p| p.conn.abandoned() == 0);
            let taken = match settled {
                Some(i) => Some(state.idle.swap_remove(i)),
                None => state.idle.pop(),
            };
            if let Some(mut pooled) = taken {
                drop(state);
                pooled.conn.set_deadline(deadline);
                if pooled.conn.abandoned() > 0 {
                    if pooled.conn.settle().is_err() {
                        // Out of step: closed (and counted), nothing of the caller's sent.
                        count(&POOL_COUNTERS.abandoned);
                        continue;
                    }
                    count(&POOL_COUNTERS.drained);
                }
                if pooled.conn.is_stale() {
                    let _ = self.generation.compare_exchange(
                        generation,
                        generation + 1,
                        AtomicOrdering::AcqRel,
                        AtomicOrdering::Acquire,
                    );
                    continue;
                }
                count(&POOL_COUNTERS.reused);
                return Ok(pooled);
            }
            if state.open < self.max_connections {
                state.open += 1;
                drop(state);
                count(&POOL_COUNTERS.open);
                // The place is taken before connecting (without the lock held), and given
                // back if connecting fails; a connection made frees it when dropped.
                return match self.connector.connect(deadline) {
                    Ok(conn) => {
                        count(&POOL_COUNTERS.opened);
                        Ok(Pooled {
                            generation,
                            conn,
                            pool: Arc::clone(&self.pool),
                        })
                    }
                    Err(e) => {
                        self.pool.release();
                        Err(self.broken(e))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.no_connection_in_time(true));
            }
            if !waited {
                waited = true;
                count(&POOL_COUNTERS.waited);
            }
            drop(
                self.pool
                    .freed
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner),
            );
        }
    }

    /// No connection came within the command's time; `waited`: because all were in use.
    fn no_connection_in_time(&self, waited: bool) -> StoreError {
        let ms = self.timeout.as_millis();
        StoreError::Unavailable(match waited {
            true => format!(
                "all {} connections to Redis stayed in use for {ms} ms",
                self.max_connections
            ),
            false => format!("no connection to Redis ready within {ms} ms"),
        })
    }

    /// Takes back a connection that is in step: every command sent has been answered, or its
    /// reply is recorded as owed to nobody (and read by the next user before its own).
    fn checkin(&self, pooled: Pooled) {
        self.pool.state().idle.push(pooled);
        self.pool.freed.notify_one();
    }

    /// Called with the error that made a connection unusable (it is dropped, not checked in).
    /// For commands that are safe to repeat, so that not knowing their outcome does not matter.
    fn broken(&self, e: io::Error) -> StoreError {
        self.retire();
        self.unavailable(e)
    }

    /// Starts a new generation: the idle connections, most likely broken the same way as the
    /// one that just failed, are dropped instead of failing one request each.
    fn retire(&self) {
        self.generation.fetch_add(1, AtomicOrdering::AcqRel);
    }

    /// Gives back a connection whose replies have all been read, as its error replies say:
    /// kept, closed, or closed with every idle connection.
    fn dispose(&self, pooled: Pooled, fate: Fate) {
        match fate {
            Fate::Keep => self.checkin(pooled),
            Fate::Close => drop(pooled),
            Fate::Retire => {
                self.retire();
                drop(pooled);
            }
        }
    }

    fn unavailable(&self, e: io::Error) -> StoreError {
        StoreError::Unavailable(self.describe(e))
    }

    fn describe(&self, e: io::Error) -> String {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                format!("no answer within {} ms", self.timeout.as_millis())
            }
            io::ErrorKind::UnexpectedEof => "Redis closed the connection".to_owned(),
            _ => e.to_string(),
        }
    }

    /// One pipeline of increments: the single place they are sent, and their failures told
    /// apart. Nothing in it is ever retried. Each name's result is its own: a reply that came
    /// is a count (or Redis's refusal), whatever happens to the replies after it; the
    /// increments whose replies did not come have an unknown outcome, unless not one byte of
    /// the pipeline was sent. While new names are admitted each is a `ZINCRBY` (a reply of
    /// exactly 1 created a member), followed by a `ZCARD` when a limit applies; while they are
    /// not, a `ZADD … XX INCR`, which counts a known name and leaves a new one out (nil).
    fn pipeline_increments(&self, names: &[&str]) -> Vec<Result<i64, StoreError>> {
        let failed = |e: StoreError| names.iter().map(|_| Err(e.clone())).collect();
        // One deadline for the whole pipeline: a connection, the writes, every reply.
        let mut pooled = match self.checkout(Instant::now() + self.timeout) {
            Ok(pooled) => pooled,
            Err(e) => return failed(e),
        };
        let batch = self.admission.batch();
        let key = self.key.as_bytes();
        for name in names {
            let name = name.as_bytes();
            match batch {
                Batch::KnownOnly => pooled
                    .conn
                    .queue(&[b"ZADD", key, b"XX", b"INCR", b"1", name]),
                Batch::Unlimited | Batch::Watched => {
                    pooled.conn.queue(&[b"ZINCRBY", key, b"1", name])
                }
            }
        }
        if batch == Batch::Watched {
            pooled.conn.queue(&[b"ZCARD", key]);
        }
        if let Err(e) = pooled.conn.send() {
            self.retire();
            let why = self.describe(e.error);
            return failed(match e.reached {
                true => StoreError::OutcomeUnknown(format!("sent, then {why}")),
                false => StoreError::Unavailable(why),
            });
        }
        let mut results = Vec::with_capacity(names.len());
        let (mut added, mut added_bytes) = (0, 0);
        let mut fate = Fate::Keep;
        for name in names {
            let reply = match pooled.conn.receive() {
                Ok(reply) => reply,
                Err(e) => {
                    self.retire();
                    self.admission.added(added, added_bytes, None);
                    let e = StoreError::OutcomeUnknown(format!("sent, then {}", self.describe(e)));
                    results.resize(names.len(), Err(e));
                    return results;
                }
            };
            if batch != Batch::KnownOnly && matches!(&reply, Reply::Bulk(score) if score == b"1") {
                added += 1;
                added_bytes += name_bytes(name.len());
            }
            let (result, its_fate) = count_from(reply, batch);
            fate = fate.max(its_fate);
            results.push(result);
        }
        let size = match batch {
            Batch::Watched => match pooled.conn.receive() {
                Ok(Reply::Integer(n)) => u64::try_from(n).ok(),
                Ok(Reply::Error(e)) => {
                    fate = fate.max(classify(e).1);
                    None
                }
                Ok(_) => None,
                // Every count is in; only the connection is lost.
                Err(_) => {
                    fate = Fate::Retire;
                    None
                }
            },
            Batch::Unlimited | Batch::KnownOnly => None,
        };
        self.admission.added(added, added_bytes, size);
        self.dispose(pooled, fate);
        results
    }
}

/// An increment's result from its reply, and what the reply leaves of the connection.
fn count_from(reply: Reply, batch: Batch) -> (Result<i64, StoreError>, Fate) {
    let command = match batch {
        Batch::KnownOnly => "ZADD XX INCR",
        Batch::Unlimited | Batch::Watched => "ZINCRBY",
    };
    let result = match reply {
        // Redis refused to run it (`OOM`, `READONLY`, `LOADING`, a wrong type): not applied.
        Reply::Error(e) => {
            let (error, fate) = classify(e);
            return (Err(error), fate);
        }
        Reply::Bulk(score) => count_of(&score).ok_or_else(|| {
            StoreError::Refused(format!("{command} answered a score that is not a number"))
        }),
        // `XX`: the name is not in the set, and was not added.
        Reply::Nil if batch == Batch::KnownOnly => Err(StoreError::NamesFull),
        other => Err(StoreError::Refused(other.unexpected(command))),
    };
    (result, Fate::Keep)
}

/// What an error reply leaves of the connection it came on, from the mildest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    /// In step: every command had its reply. Back to the pool.
    Keep,
    /// Redis closes it after this reply: dropped.
    Close,
    /// Its server is not the one to write to any more (a failover made it a replica), and
    /// neither is the server of the pool's other connections: all dropped.
    Retire,
}

/// What an error reply means for the command and for its connection. An error reply is not a
/// broken connection: it came whole and in order, so the connection stays in the pool unless
/// the server changed role (`READONLY`) or is about to close it (`max number of clients`).
/// `OOM` (Redis at `maxmemory` under `noeviction`) is `Full`: nothing done, and nothing to
/// try again at once. An error about the command itself (a wrong type, a bad argument) is
/// `Refused`: retrying will not help. Every other error reply is a transient state of the
/// server (`LOADING`, `BUSY`, `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `NOSCRIPT`, `MISCONF`…):
/// `Unavailable`, certainly not applied.
fn classify(e: ServerError) -> (StoreError, Fate) {
    match e.code() {
        "OOM" => (StoreError::Full(e.line), Fate::Keep),
        "READONLY" => (StoreError::Unavailable(e.line), Fate::Retire),
        "ERR" if e.line.starts_with("ERR max number of clients reached") => {
            (StoreError::Unavailable(e.line), Fate::Close)
        }
        "WRONGTYPE" | "ERR" => (StoreError::Refused(e.line), Fate::Keep),
        _ => (StoreError::Unavailable(e.line), Fate::Keep),
    }
}

/// `used_memory` and `maxmemory` from an `INFO memory` reply (`field:value` lines).
fn memory_from_info(text: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(text).ok()?;
    let field = |name: &str| {
        text.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(':')?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some((field("used_memory")?, field("maxmemory")?))
}

/// The count in a `ZINCRBY` reply. Redis writes whole scores as integers; a fractional score
/// someone else wrote is truncated towards zero (and `inf` saturates).
fn count_of(score: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(score).ok()?;
    text.parse::<i64>()
        .ok()
        .or_else(|| text.parse::<f64>().ok().map(|f| f as i64))
}

/// Whether `text` is a score as Redis writes one: a number, possibly `inf` or `-inf`.
fn is_score(text: &str) -> bool {
    text.parse::<f64>().is_ok_and(|f| !f.is_nan())
}

fn to_entries(reply: Reply, command: &str) -> Result<Vec<Entry>, StoreError> {
    let refused = |why: String| StoreError::Refused(format!("{command}: {why}"));
    let items = match reply {
        Reply::Array(items) if items.len() % 2 == 0 => items,
        other => return Err(refused(other.unexpected(command))),
    };
    let mut entries = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(name), Some(score)) = (items.next(), items.next()) {
        let (Reply::Bulk(name), Reply::Bulk(score)) = (name, score) else {
            return Err(refused("a name or score is not a bulk string".into()));
        };
        let score = String::from_utf8(score)
            .ok()
            .filter(|s| is_score(s))
            .ok_or_else(|| refused("a score is not a number".into()))?;
        entries.push(Entry {
            name: match String::from_utf8(name) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            },
            score,
        });
    }
    Ok(entries)
}

impl Store for RedisStore {
    fn increment(&self, name: &str) -> Result<i64, StoreError> {
        // One name, one result; were it missing, the command may still have been sent.
        self.pipeline_increments(&[name]).pop().unwrap_or_else(|| {
            Err(StoreError::OutcomeUnknown(
                "no result for an increment".into(),
            ))
        })
    }

    fn increment_batch(&self, names: &[&str]) -> Vec<Result<i64, StoreError>> {
        self.pipeline_increments(names)
    }

    fn scan(self: Arc<Self>, request: ScanRequest) -> Box<dyn Scan> {
        Box::new(RedisScan {
            window: Window::new(&request),
            command: match request.order {
                Order::Ascending => "ZRANGE",
                Order::Descending => "ZREVRANGE",
            },
            store: self,
            conn: None,
            asked: None,
        })
    }

    fn refresh(&self) -> Result<(), StoreError> {
        // Names the lane adds from now on may or may not be in what Redis answers.
        let mark = self.admission.mark();
        let mut pooled = self.checkout(Instant::now() + self.timeout)?;
        let key = self.key.as_bytes();
        pooled.conn.queue(&[b"INFO", b"memory"]);
        pooled.conn.queue(&[b"ZCARD", key]);
        // Both are reads, safe to ask again: any failure is unavailable.
        pooled.conn.send().map_err(|e| self.broken(e.error))?;
        let info = pooled.conn.receive().map_err(|e| self.broken(e))?;
        let size = pooled.conn.receive().map_err(|e| self.broken(e))?;
        let memory = match info {
            Reply::Bulk(text) => memory_from_info(&text),
            Reply::Error(e) => {
                if !self.info_refused.swap(true, AtomicOrdering::Relaxed) {
                    log::warn!(
                        "Redis refused INFO ({e}): new names are admitted whatever its memory"
                    );
                }
                None
            }
            _ => None,
        };
        let names = match size {
            Reply::Integer(n) => u64::try_from(n).ok(),
            Reply::Error(e) => {
                let (error, fate) = classify(e);
                self.dispose(pooled, fate);
                return Err(error);
            }
            _ => None,
        };
        self.checkin(pooled);
        let names = names.ok_or_else(|| StoreError::Refused("ZCARD answered no size".into()))?;
        self.admission.sampled(mark, memory, names);
        Ok(())
    }

    fn room(&self) -> Room {
        self.admission.room()
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

/// A scan that asks for the next chunk as soon as it has read one, so that Redis prepares it
/// while the caller writes out the last: one connection is held for the whole scan.
struct RedisScan {
    store: Arc<RedisStore>,
    command: &'static str,
    window: Window,
    conn: Option<Pooled>,
    /// The size of the chunk asked for and not yet read.
    asked: Option<usize>,
}

impl RedisScan {
    /// Sends the request for the next chunk, if any remains. A failed send drops the
    /// connection; the request is sent again (a read is safe to repeat) on the next call.
    fn request(&mut self, deadline: Instant) -> Result<bool, StoreError> {
        let Some((start, count)) = self.window.next_request() else {
            return Ok(false);
        };
        let mut pooled = match self.conn.take() {
            Some(mut pooled) => {
                pooled.conn.set_deadline(deadline);
                pooled
            }
            None => self.store.checkout(deadline)?,
        };
        let stop = start.saturating_add(count as u64 - 1).to_string();
        let start = start.to_string();
        let key = self.store.key.as_bytes();
        let args: [&[u8]; 5] = [
            self.command.as_bytes(),
            key,
            start.as_bytes(),
            stop.as_bytes(),
            b"WITHSCORES",
        ];
        pooled.conn.queue(&args);
        // A range is safe to ask again: a failed send is unavailable, whatever went out.
        pooled.conn.send().map_err(|e| self.store.broken(e.error))?;
        self.conn = Some(pooled);
        self.asked = Some(count);
        Ok(true)
    }
}

impl Scan for RedisScan {
    fn next_chunk(&mut self) -> Result<Vec<Entry>, StoreError> {
        // Each page has its deadline, from when it is waited for: a page asked for ahead was
        // sent under a deadline of its own, and the time the client took to read the page
        // before it is not Redis's.
        let deadline = Instant::now() + self.store.timeout;
        if self.asked.is_none() && !self.request(deadline)? {
            return Ok(Vec::new());
        }
        let (Some(asked), Some(mut pooled)) = (self.asked.take(), self.conn.take()) else {
            return Err(StoreError::Unavailable("scan lost its connection".into()));
        };
        pooled.conn.set_deadline(deadline);
        let reply = pooled.conn.receive().map_err(|e| self.store.broken(e))?;
        let chunk = match reply {
            Reply::Error(e) => {
                let (error, fate) = classify(e);
                self.store.dispose(pooled, fate);
                return Err(error);
            }
            reply => to_entries(reply, self.command),
        };
        self.conn = Some(pooled);
        let chunk = chunk?;
        self.window.advance(asked, chunk.len());
        // An error here is met again, and reported, by the next call.
        if !matches!(self.request(Instant::now() + self.store.timeout), Ok(true)) {
            if let Some(pooled) = self.conn.take() {
                self.store.checkin(pooled);
            }
        }
        Ok(chunk)
    }
}

impl Drop for RedisScan {
    fn drop(&mut self) {
        let Some(mut pooled) = self.conn.take() else {
            return;
        };
        if self.asked.is_some() {
            // Left before its end (a client gone) with the next chunk asked for. Its reply
            // is most likely not here yet: waiting for it would hold this thread, and closing
            // would cost a new connection later. It is read and thrown away by the connection's
            // next user, after the wait a trip through the pool gives it.
            pooled.conn.abandon_reply();
        }
        self.store.checkin(pooled);
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        // Idle connections hold the pool they belong to; taken out, they close.
        let idle = std::mem::take(&mut self.pool.state().idle);
        drop(idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn increment_replies_are_read_as_counts() {
        assert_eq!(count_of(b"12"), Some(12));
        assert_eq!(count_of(b"-3"), Some(-3));
        assert_eq!(count_of(b"2.75"), Some(2));
        assert_eq!(count_of(b"1e3"), Some(1000));
        assert_eq!(count_of(b"inf"), Some(i64::MAX));
        assert_eq!(count_of(b"x"), None);
        assert_eq!(count_of(b"\xff"), None);
    }

    #[test]
    fn listed_scores_keep_redis_text() {
        let reply = Reply::Array(vec![
            bulk("a"),
            bulk("1.5"),
            bulk("b"),
            bulk("1e+20"),
            bulk("c"),
            bulk("inf"),
        ]);
        let scores: Vec<String> = to_entries(reply, "ZRANGE")
            .unwrap()
            .into_iter()
            .map(|e| e.score)
            .collect();
        assert_eq!(scores, ["1.5", "1e+20", "inf"]);
        let nan = Reply::Array(vec![bulk("a"), bulk("nan")]);
        assert!(to_entries(nan, "ZRANGE").is_err());
    }

    #[test]
    fn range_replies_become_entries() {
        let reply = Reply::Array(vec![bulk("Ann"), bulk("1"), bulk("Bob"), bulk("7")]);
        let entries = to_entries(reply, "ZRANGE").unwrap();
        assert_eq!(
            entries,
            vec![
                Entry {
                    name: "Ann".into(),
                    score: "1".into()
                },
                Entry {
                    name: "Bob".into(),
                    score: "7".into()
                },
            ]
        );
        let lossy = Reply::Array(vec![Reply::Bulk(b"a\xffb".to_vec()), bulk("1")]);
        assert_eq!(to_entries(lossy, "ZRANGE").unwrap()[0].name, "a\u{fffd}b");
    }

    #[test]
    fn malformed_range_replies_are_refused() {
        for reply in [
            Reply::Array(vec![bulk("Ann")]),
            Reply::Array(vec![bulk("Ann"), bulk("many")]),
            Reply::Array(vec![Reply::Integer(1), bulk("1")]),
            Reply::Nil,
        ] {
            assert!(matches!(
                to_entries(reply, "ZRANGE"),
                Err(StoreError::Refused(_))
            ));
        }
    }

    #[test]
    fn each_error_reply_is_classified_and_only_a_role_change_or_a_parting_server_drops_it() {
        #[derive(Debug, PartialEq)]
        enum Kind {
            Refused,
            Unavailable,
            Full,
        }
        let kind = |e: &StoreError| match e {
            StoreError::Refused(_) => Kind::Refused,
            StoreError::Unavailable(_) => Kind::Unavailable,
            StoreError::Full(_) => Kind::Full,
            other => panic!("not from an error reply: {other:?}"),
        };
        for (line, want, fate) in [
            (
                "WRONGTYPE Operation against a key",
                Kind::Refused,
                Fate::Keep,
            ),
            ("ERR syntax error", Kind::Refused, Fate::Keep),
            (
                "OOM command not allowed when used memory > 'maxmemory'.",
                Kind::Full,
                Fate::Keep,
            ),
            ("LOADING Redis is loading", Kind::Unavailable, Fate::Keep),
            (
                "BUSY Redis is busy running a script",
                Kind::Unavailable,
                Fate::Keep,
            ),
            ("NOSCRIPT No matching script", Kind::Unavailable, Fate::Keep),
            (
                "TRYAGAIN Multiple keys request",
                Kind::Unavailable,
                Fate::Keep,
            ),
            (
                "CLUSTERDOWN The cluster is down",
                Kind::Unavailable,
                Fate::Keep,
            ),
            (
                "MASTERDOWN Link with MASTER is down",
                Kind::Unavailable,
                Fate::Keep,
            ),
            (
                "MISCONF Redis is configured to save",
                Kind::Unavailable,
                Fate::Keep,
            ),
            ("READONLY You can't write", Kind::Unavailable, Fate::Retire),
            (
                "ERR max number of clients reached",
                Kind::Unavailable,
                Fate::Close,
            ),
        ] {
            let (error, its_fate) = classify(ServerError { line: line.into() });
            assert_eq!((kind(&error), its_fate), (want, fate), "{line}");
            assert!(error.to_string().contains(line), "{error}");
        }
    }

    #[test]
    fn increment_replies_by_how_the_batch_was_sent() {
        let count = |reply, batch| count_from(reply, batch).0;
        assert_eq!(count(bulk("4"), Batch::Watched).unwrap(), 4);
        assert_eq!(count(bulk("4"), Batch::KnownOnly).unwrap(), 4);
        // `XX`: a name not in the set was left out.
        assert!(matches!(
            count(Reply::Nil, Batch::KnownOnly),
            Err(StoreError::NamesFull)
        ));
        assert!(matches!(
            count(Reply::Nil, Batch::Unlimited),
            Err(StoreError::Refused(_))
        ));
        let oom = Reply::Error(ServerError {
            line: "OOM command not allowed".into(),
        });
        assert!(matches!(
            count_from(oom, Batch::KnownOnly),
            (Err(StoreError::Full(_)), Fate::Keep)
        ));
    }

    #[test]
    fn info_memory_gives_used_and_max_memory() {
        let info = b"# Memory\r\nused_memory:1043232\r\nused_memory_human:1018.78K\r\n\
                     used_memory_rss:7000000\r\nmaxmemory:16777216\r\nmaxmemory_human:16.00M\r\n\
                     maxmemory_policy:noeviction\r\n";
        assert_eq!(memory_from_info(info), Some((1_043_232, 16_777_216)));
        assert_eq!(memory_from_info(b"used_memory:5\r\n"), None);
        assert_eq!(
            memory_from_info(b"used_memory_rss:9\r\nused_memory:5\r\nmaxmemory:0\r\n"),
            Some((5, 0))
        );
    }
}
