//! Connections to one Redis server, kept for reuse. At most `max` are open at once, idle or in
//! use; a caller that finds them all in use waits for one within its command's deadline. A
//! connection found broken retires its idle siblings (they most likely broke the same way, by a
//! restart or a failover), so that each does not fail a request of its own. What the pools of a
//! store did is counted in [`PoolCounters`], which the store owns and `/metrics` is given.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::connection::{Connection, Connector};
use super::StoreError;
use crate::sync;

pub struct ConnectionPool {
    connector: Connector,
    max: usize,
    /// The store's timeout, for what a caller is told when none came in time.
    timeout: Duration,
    state: Mutex<Places>,
    /// Signalled when a connection comes back or closes, for callers waiting at the cap.
    freed: Condvar,
    /// Bumped when a connection fails: idle connections of an older generation are closed
    /// instead of being used.
    generation: AtomicU64,
    counters: Arc<PoolCounters>,
}

/// The idle connections, and how many are open (idle or in use).
struct Places {
    idle: Vec<Idle>,
    open: usize,
}

struct Idle {
    generation: u64,
    conn: Connection,
}

/// A connection out of the pool. Given back with [`ConnectionPool::checkin`] when it is in
/// step; dropped, it closes and frees its place.
pub struct Pooled {
    generation: u64,
    pub conn: Connection,
    lease: Lease,
}

/// A place in the pool, freed when dropped unless the connection went back idle.
struct Lease {
    pool: Arc<ConnectionPool>,
    returned: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.returned {
            self.pool.release(1);
        }
    }
}

/// What the pools of one store did, for `/metrics`: how often a connection was reused rather
/// than opened, and what became of those a listing left with a reply on its way.
#[derive(Default)]
pub struct PoolCounters {
    opened: AtomicU64,
    reused: AtomicU64,
    open: AtomicU64,
    waited: AtomicU64,
    drained: AtomicU64,
    abandoned: AtomicU64,
}

/// [`PoolCounters`] as read at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections opened (each a TCP, maybe TLS, handshake and a login).
    pub opened: u64,
    /// Commands sent on an idle connection taken from the pool.
    pub reused: u64,
    /// Connections open now.
    pub open: u64,
    /// Callers that found every connection in use and waited for one.
    pub waited: u64,
    /// Replies of listings left before their end, read and thrown away by the connection's
    /// next user, which kept the connection.
    pub drained: u64,
    /// Such replies that could not be read (late, or the connection broken): closed.
    pub abandoned: u64,
}

impl PoolCounters {
    pub fn stats(&self) -> PoolStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PoolStats {
            opened: load(&self.opened),
            reused: load(&self.reused),
            open: load(&self.open),
            waited: load(&self.waited),
            drained: load(&self.drained),
            abandoned: load(&self.abandoned),
        }
    }
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What an answer leaves of the connection it came on, from the mildest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fate {
    /// In step: every command had its reply. Back to the pool.
    Keep,
    /// The server closes it after this reply: dropped.
    Close,
    /// Its server is not the one to write to any more (a failover made it a replica), and
    /// neither is the server of the pool's other connections: all dropped.
    Retire,
}

impl ConnectionPool {
    pub fn new(
        connector: Connector,
        max: usize,
        timeout: Duration,
        counters: Arc<PoolCounters>,
    ) -> Arc<ConnectionPool> {
        Arc::new(ConnectionPool {
            connector,
            max: max.max(1),
            timeout,
            state: Mutex::new(Places {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            generation: AtomicU64::new(0),
            counters,
        })
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    fn state(&self) -> MutexGuard<'_, Places> {
        sync::lock(&self.state)
    }

    /// `n` connections closed, or never made: their places are free.
    fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.state().open -= n;
        self.counters.open.fetch_sub(n as u64, Ordering::Relaxed);
        self.freed.notify_all();
    }

    /// A connection for a command that must be over by `deadline`, which the connection
    /// returned has set: an idle one, or a new one while fewer than the cap are open, or else
    /// the first to come back in time. When none comes, nothing has been sent: unavailable.
    pub fn checkout(self: &Arc<Self>, deadline: Instant) -> Result<Pooled, StoreError> {
        let mut waited = false;
        loop {
            // Reading replies owed to nobody may have used up the caller's time: then it gets
            // no connection, rather than fail the next ones it would try (and, connecting too
            // late, retire the whole pool).
            if Instant::now() >= deadline {
                return Err(self.no_connection_in_time(waited));
            }
            let generation = self.generation.load(Ordering::Acquire);
            if let Some(idle) = self.take_idle(generation) {
                match self.ready(idle, deadline) {
                    Some(pooled) => return Ok(pooled),
                    None => continue,
                }
            }
            if let Some(opened) = self.open_new(generation, deadline) {
                return opened;
            }
            if !self.wait_for_one(deadline, &mut waited) {
                return Err(self.no_connection_in_time(true));
            }
        }
    }

    /// An idle connection of `generation`, those owing no reply first; the older generations'
    /// are closed on the way.
    fn take_idle(&self, generation: u64) -> Option<Idle> {
        let mut state = self.state();
        // Closing a connection takes the lock again: the old ones are dropped after it.
        let (current, old): (Vec<Idle>, Vec<Idle>) = std::mem::take(&mut state.idle)
            .into_iter()
            .partition(|i| i.generation == generation);
        state.idle = current;
        let settled = state.idle.iter().rposition(|i| i.conn.abandoned() == 0);
        let taken = match settled {
            Some(i) => Some(state.idle.swap_remove(i)),
            None => state.idle.pop(),
        };
        drop(state);
        let closed = old.len();
        drop(old);
        self.release(closed);
        taken
    }

    /// Makes an idle connection ready for a command: its owed replies read and thrown away, and
    /// known to be open. `None` when it was not fit (closed, and counted): try another.
    fn ready(self: &Arc<Self>, idle: Idle, deadline: Instant) -> Option<Pooled> {
        let mut pooled = Pooled {
            generation: idle.generation,
            conn: idle.conn,
            lease: Lease {
                pool: Arc::clone(self),
                returned: false,
            },
        };
        pooled.conn.set_deadline(deadline);
        if pooled.conn.abandoned() > 0 {
            if pooled.conn.settle().is_err() {
                // Out of step: closed, nothing of the caller's sent.
                count(&self.counters.abandoned);
                return None;
            }
            count(&self.counters.drained);
        }
        if pooled.conn.is_stale() {
            // The server closed it while idle: its siblings most likely went the same way.
            let _ = self.generation.compare_exchange(
                pooled.generation,
                pooled.generation + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            return None;
        }
        count(&self.counters.reused);
        Some(pooled)
    }

    /// A new connection while fewer than the cap are open; `None` at the cap. The place is
    /// taken before connecting (without the lock held), and given back if connecting fails.
    fn open_new(
        self: &Arc<Self>,
        generation: u64,
        deadline: Instant,
    ) -> Option<Result<Pooled, StoreError>> {
        {
            let mut state = self.state();
            if state.open >= self.max {
                return None;
            }
            state.open += 1;
        }
        count(&self.counters.open);
        let lease = Lease {
            pool: Arc::clone(self),
            returned: false,
        };
        Some(match self.connector.connect(deadline) {
            Ok(conn) => {
                count(&self.counters.opened);
                Ok(Pooled {
                    generation,
                    conn,
                    lease,
                })
            }
            // The lease, dropped, frees the place.
            Err(e) => Err(self.broken(e)),
        })
    }

    /// Waits at the cap for a connection to come back or close, until `deadline`; `false`
    /// when the time is up.
    fn wait_for_one(&self, deadline: Instant, waited: &mut bool) -> bool {
        let state = self.state();
        if state.open < self.max || !state.idle.is_empty() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        if !*waited {
            *waited = true;
            count(&self.counters.waited);
        }
        drop(sync::wait_timeout(&self.freed, state, deadline - now));
        true
    }

    /// No connection came within the command's time; `waited`: because all were in use.
    fn no_connection_in_time(&self, waited: bool) -> StoreError {
        let ms = self.timeout.as_millis();
        StoreError::Unavailable(match waited {
            true => format!(
                "all {} connections to Redis at {} stayed in use for {ms} ms",
                self.max,
                self.connector.host()
            ),
            false => format!("no connection to Redis ready within {ms} ms"),
        })
    }

    /// Takes back a connection that is in step: every command sent has been answered, or its
    /// reply is recorded as owed to nobody (and read by the next user before its own).
    pub fn checkin(&self, pooled: Pooled) {
        let Pooled {
            generation,
            conn,
            mut lease,
        } = pooled;
        lease.returned = true;
        self.state().idle.push(Idle { generation, conn });
        self.freed.notify_one();
    }

    /// Gives back a connection whose replies have all been read, as its answers say: kept,
    /// closed, or closed with every idle connection.
    pub fn dispose(&self, pooled: Pooled, fate: Fate) {
        match fate {
            Fate::Keep => self.checkin(pooled),
            Fate::Close => drop(pooled),
            Fate::Retire => {
                self.retire();
                drop(pooled);
            }
        }
    }

    /// Starts a new generation: the idle connections, most likely broken the same way as the
    /// one that just failed, are closed instead of failing one request each.
    pub fn retire(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Called with the error that made a connection unusable (it is dropped, not checked in),
    /// for commands that are safe to repeat, so that not knowing their outcome does not matter.
    pub fn broken(&self, e: io::Error) -> StoreError {
        self.retire();
        StoreError::Unavailable(self.describe(e))
    }

    /// An I/O error as a client may read it: a timeout says how long was waited.
    pub fn describe(&self, e: io::Error) -> String {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                format!("no answer within {} ms", self.timeout.as_millis())
            }
            io::ErrorKind::UnexpectedEof => "Redis closed the connection".to_owned(),
            _ => e.to_string(),
        }
    }
}

impl Drop for ConnectionPool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.state().idle);
        self.counters
            .open
            .fetch_sub(idle.len() as u64, Ordering::Relaxed);
    }
}
