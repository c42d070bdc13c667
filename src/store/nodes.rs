//! The Redis servers the store talks to, and which one each command goes to. Standalone Redis
//! is one server that serves every key. A cluster is learnt from the configured endpoint
//! (`CLUSTER SHARDS`): one small pool of connections per primary, a map of which primary serves
//! each hash slot, and commands sent where the map says. A command that reached the wrong
//! primary was not run (`-MOVED`: the map is corrected; `-ASK`: a slot on its way, sent there
//! once after `ASKING`), so it is sent again where it belongs, within its deadline. The map is
//! read again after anything that says it changed (a failover, a reshard, a server gone), at
//! most every [`MIN_REFRESH`], and once a second by the health sampler.
//!
//! [`ClusterNodes::run`] is the one place commands go out: a pipeline per server, every pipeline
//! written before any reply is read, and each command's fate reported apart, so that callers
//! can tell "not sent" (certainly not run) from "sent, no reply" (maybe run).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::connection::Connector;
use super::pool::{ConnectionPool, Fate, PoolCounters, PoolStats, Pooled};
use super::replies;
use super::resp::{self, RedisReply};
use super::settings::RedisMode;
use super::topology::{self, NodeAddr, Redirect, SlotMap};
use super::StoreError;
use crate::sync;

/// What sends commands to the servers they go to and brings back what became of each: the
/// Redis store, as the listings that read through it see it (so that they need not know it).
pub(super) trait CommandRunner: Send + Sync {
    /// How long one command may take.
    fn timeout(&self) -> Duration;

    /// Sends `commands`, each to its server, and what became of each, in order.
    fn run(&self, commands: &[Command], deadline: Instant) -> Result<Vec<Delivery>, StoreError>;
}

/// Least time between two readings of the slot map asked for by errors.
const MIN_REFRESH: Duration = Duration::from_millis(100);
/// Most times one command is sent: redirected every time, it is given up (not run), having
/// followed one redirect fewer.
const MAX_REDIRECTS: usize = 5;

/// How the servers are arranged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Standalone,
    Cluster,
}

/// What the store knows of the servers at one time.
#[derive(Clone, Debug)]
pub struct Layout {
    pub mode: Mode,
    pub map: SlotMap,
}

/// A command, written out, and where it goes.
pub struct Command {
    target: CommandTarget,
    written: Vec<u8>,
}

#[derive(Clone)]
enum CommandTarget {
    /// The primary that serves this slot.
    Slot(u16),
    /// This server (`INFO`, for instance, asked of each primary).
    Node(NodeAddr),
}

impl Command {
    /// A command on a key of `slot`.
    pub fn for_slot(slot: u16, args: &[&[u8]]) -> Command {
        Command::new(CommandTarget::Slot(slot), args)
    }

    /// A command for the server `addr` itself.
    pub fn for_node(addr: &NodeAddr, args: &[&[u8]]) -> Command {
        Command::new(CommandTarget::Node(addr.clone()), args)
    }

    fn new(target: CommandTarget, args: &[&[u8]]) -> Command {
        let mut written = Vec::new();
        resp::write_command(&mut written, args);
        Command { target, written }
    }
}

/// What became of one command of [`ClusterNodes::run`].
#[derive(Clone, Debug)]
pub enum Delivery {
    /// Not one byte of it reached a server that would run it: certainly not run.
    NotSent(StoreError),
    /// Sent, and its reply did not come (the deadline, a broken connection): maybe run.
    Unanswered(StoreError),
    /// Its reply, from the primary that ran it (or refused it), and, when a `WAIT` was asked
    /// for, how many replicas had all of its connection's writes when that `WAIT` answered.
    Replied {
        reply: RedisReply,
        from: NodeAddr,
        replicas: Option<Result<u64, String>>,
    },
}

/// Where a command goes in the next round of [`ClusterNodes::run`].
#[derive(Clone)]
enum Destination {
    /// As the map says.
    Map,
    /// Where a `-MOVED` said.
    To(NodeAddr),
    /// Where an `-ASK` said, after `ASKING`.
    Asking(NodeAddr),
}

pub struct ClusterNodes {
    setting: RedisMode,
    /// The configured endpoint: the server of standalone Redis, the first one asked of a
    /// cluster.
    seed: NodeAddr,
    seed_pool: Arc<ConnectionPool>,
    tls: bool,
    max_connections: usize,
    timeout: Duration,
    counters: Arc<PoolCounters>,
    /// The cluster's primaries' pools, by address; kept across readings of the map.
    pools: Mutex<HashMap<NodeAddr, Arc<ConnectionPool>>>,
    layout: RwLock<Option<Arc<Layout>>>,
    /// Something said the map may be out of date.
    stale: AtomicBool,
    /// One reading of the map at a time, and when the last one began.
    refreshing: Mutex<Option<Instant>>,
    /// Whether the mode is being found out; the others wait for it (within their deadline).
    discovering: Mutex<bool>,
    discovered: Condvar,
    /// Which primary the next reading asks first, so that a dead one is not always first.
    next_asked: AtomicUsize,
    redirects: AtomicU64,
    refreshes: AtomicU64,
}

/// What the servers did, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub pool: PoolStats,
    /// Commands sent again where a `-MOVED` or `-ASK` said.
    pub redirects: u64,
    /// Readings of a cluster's slot map.
    pub refreshes: u64,
}

impl ClusterNodes {
    /// Nothing is connected until first use. `connector` reaches the configured endpoint.
    pub fn new(
        setting: RedisMode,
        connector: Connector,
        max_connections: usize,
        timeout: Duration,
    ) -> ClusterNodes {
        let seed = NodeAddr {
            host: connector.host().to_owned(),
            port: connector.port(),
        };
        let tls = connector.tls();
        let counters = Arc::new(PoolCounters::default());
        let seed_pool =
            ConnectionPool::new(connector, max_connections, timeout, Arc::clone(&counters));
        let layout = match setting {
            RedisMode::Standalone => Some(Arc::new(Layout {
                mode: Mode::Standalone,
                map: SlotMap::single(seed.clone()),
            })),
            RedisMode::Detect | RedisMode::Cluster => None,
        };
        ClusterNodes {
            setting,
            seed,
            seed_pool,
            tls,
            max_connections,
            timeout,
            counters,
            pools: Mutex::new(HashMap::new()),
            layout: RwLock::new(layout),
            stale: AtomicBool::new(false),
            refreshing: Mutex::new(None),
            discovering: Mutex::new(false),
            discovered: Condvar::new(),
            next_asked: AtomicUsize::new(0),
            redirects: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> NodeStats {
        NodeStats {
            pool: self.counters.stats(),
            redirects: self.redirects.load(Ordering::Relaxed),
            refreshes: self.refreshes.load(Ordering::Relaxed),
        }
    }

    /// The configured endpoint's pool: standalone Redis's only one.
    pub fn seed_pool(&self) -> &Arc<ConnectionPool> {
        &self.seed_pool
    }

    fn current(&self) -> Option<Arc<Layout>> {
        sync::read(&self.layout).clone()
    }

    /// The servers as known, found out first if they are not yet (whether Redis is a cluster,
    /// and its map), and read again first when something said the map changed; all within
    /// `deadline`. When they cannot be known, nothing can be sent: unavailable.
    pub fn layout(&self, deadline: Instant) -> Result<Arc<Layout>, StoreError> {
        match self.current() {
            Some(layout) => {
                if layout.mode == Mode::Cluster && self.stale.load(Ordering::Acquire) {
                    // Half the time left at most: the command itself needs the rest, and the
                    // map in hand serves meanwhile.
                    let now = Instant::now();
                    let _ =
                        self.refresh_map(now + deadline.saturating_duration_since(now) / 2, false);
                }
                Ok(self.current().unwrap_or(layout))
            }
            None => self.discover(deadline),
        }
    }

    /// Reads a cluster's map again now (the health sampler, once a second); nothing for
    /// standalone Redis.
    pub fn refresh(&self, deadline: Instant) -> Result<(), StoreError> {
        match self.current() {
            Some(layout) if layout.mode == Mode::Cluster => self.refresh_map(deadline, true),
            Some(_) => Ok(()),
            None => self.discover(deadline).map(drop),
        }
    }

    /// Says the map may be out of date: the next command reads it again first.
    pub fn suspect(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// Finds out what Redis is: one server, or a cluster and its map. One thread asks; the
    /// others wait for its answer, within their own deadline.
    fn discover(&self, deadline: Instant) -> Result<Arc<Layout>, StoreError> {
        let mut busy = sync::lock(&self.discovering);
        loop {
            if let Some(layout) = self.current() {
                return Ok(layout);
            }
            if !*busy {
                *busy = true;
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Unavailable(
                    "Redis's topology is still being read; not sent".into(),
                ));
            }
            busy = sync::wait_timeout(&self.discovered, busy, deadline - now).0;
        }
        drop(busy);
        let _turn = DiscoveryTurn(self);
        let found = self.ask_layout(deadline)?;
        *sync::write(&self.layout) = Some(Arc::clone(&found));
        Ok(found)
    }

    fn ask_layout(&self, deadline: Instant) -> Result<Arc<Layout>, StoreError> {
        let pool = Arc::clone(&self.seed_pool);
        let mut pooled = pool.checkout(deadline)?;
        let detected = match self.setting {
            RedisMode::Cluster => Mode::Cluster,
            RedisMode::Standalone => Mode::Standalone,
            RedisMode::Detect => self.detect(&pool, &mut pooled)?,
        };
        let map = match detected {
            Mode::Standalone => SlotMap::single(self.seed.clone()),
            Mode::Cluster => self.read_map(&pool, &mut pooled, &self.seed.host)?,
        };
        pool.checkin(pooled);
        Ok(Arc::new(Layout {
            mode: detected,
            map,
        }))
    }

    /// `INFO cluster`'s `cluster_enabled`, or else whether `CLUSTER SHARDS` is refused for lack
    /// of cluster support (an ACL may deny `INFO`).
    fn detect(&self, pool: &ConnectionPool, pooled: &mut Pooled) -> Result<Mode, StoreError> {
        let info = ask(pool, pooled, &[b"INFO", b"cluster"])?;
        if let RedisReply::Bulk(text) = &info {
            if let Some(enabled) = topology::cluster_enabled(text) {
                return Ok(if enabled {
                    Mode::Cluster
                } else {
                    Mode::Standalone
                });
            }
        }
        match ask(pool, pooled, &[b"CLUSTER", b"SHARDS"])? {
            RedisReply::Array(_) => Ok(Mode::Cluster),
            RedisReply::Error(e) if e.line.contains("cluster support disabled") => {
                Ok(Mode::Standalone)
            }
            other => Err(StoreError::Unavailable(format!(
                "cannot tell whether Redis runs in cluster mode ({}): set REDIS_MODE",
                match other {
                    RedisReply::Error(e) => e.line,
                    other => other.unexpected("CLUSTER SHARDS"),
                }
            ))),
        }
    }

    /// The slot map, as the server on `pooled` says (`CLUSTER SHARDS`, or `CLUSTER SLOTS`
    /// where that is unknown).
    fn read_map(
        &self,
        pool: &ConnectionPool,
        pooled: &mut Pooled,
        asked: &str,
    ) -> Result<SlotMap, StoreError> {
        let refused = |why: String| StoreError::Unavailable(format!("reading the slot map: {why}"));
        match ask(pool, pooled, &[b"CLUSTER", b"SHARDS"])? {
            RedisReply::Error(e) if e.line.contains("unknown subcommand") => {
                match ask(pool, pooled, &[b"CLUSTER", b"SLOTS"])? {
                    RedisReply::Error(e) => Err(refused(e.line)),
                    reply => topology::from_slots(reply, asked).map_err(refused),
                }
            }
            RedisReply::Error(e) => Err(refused(e.line)),
            reply => topology::from_shards(reply, asked, self.tls).map_err(refused),
        }
    }

    /// Reads the map again from the first primary that answers (then the configured
    /// endpoint), each asked for at most half the time left. `forced`: even if read less than
    /// [`MIN_REFRESH`] ago. Another thread reading it meanwhile is enough.
    fn refresh_map(&self, deadline: Instant, forced: bool) -> Result<(), StoreError> {
        let Ok(mut last) = self.refreshing.try_lock() else {
            return Ok(());
        };
        if !forced && last.is_some_and(|at| at.elapsed() < MIN_REFRESH) {
            return Ok(());
        }
        *last = Some(Instant::now());
        drop(last);
        self.stale.store(false, Ordering::Release);
        let Some(before) = self.current() else {
            return Ok(());
        };
        let mut asked: Vec<NodeAddr> = before.map.primaries().to_vec();
        if !asked.is_empty() {
            let first = self.next_asked.fetch_add(1, Ordering::Relaxed) % asked.len();
            asked.rotate_left(first);
        }
        asked.push(self.seed.clone());
        let mut why = String::from("no server to ask");
        for addr in asked {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let until = now + deadline.saturating_duration_since(now) / 2;
            let pool = self.pool(&addr);
            let read = pool.checkout(until).and_then(|mut pooled| {
                let map = self.read_map(&pool, &mut pooled, &addr.host)?;
                pool.checkin(pooled);
                Ok(map)
            });
            match read {
                Ok(map) => {
                    self.refreshes.fetch_add(1, Ordering::Relaxed);
                    self.install(&before, map);
                    return Ok(());
                }
                Err(e) => why = e.to_string(),
            }
        }
        self.suspect();
        Err(StoreError::Unavailable(format!(
            "cannot read the cluster's slot map: {why}"
        )))
    }

    /// A newly read map takes the place of the one in use; pools of servers that are no longer
    /// primaries are let go.
    fn install(&self, before: &Layout, map: SlotMap) {
        if map.primaries() != before.map.primaries() || map.unserved() != before.map.unserved() {
            let mut primaries: Vec<String> =
                map.primaries().iter().map(|p| p.to_string()).collect();
            primaries.sort();
            log::info!(
                "Redis cluster: {} primaries ({}){}",
                primaries.len(),
                primaries.join(", "),
                match map.unserved() {
                    0 => String::new(),
                    n => format!("; {n} slots served by none"),
                }
            );
        }
        sync::lock(&self.pools).retain(|addr, _| map.primaries().contains(addr));
        *sync::write(&self.layout) = Some(Arc::new(Layout {
            mode: before.mode,
            map,
        }));
    }

    /// `slot` is served by `addr` now, as a `-MOVED` said; the rest of the map is read again
    /// soon, since slots seldom move alone.
    fn moved(&self, slot: u16, addr: &NodeAddr) {
        self.suspect();
        let mut layout = sync::write(&self.layout);
        if let Some(current) = layout.as_mut() {
            if current.map.owner(slot) != Some(addr) {
                Arc::make_mut(current).map.moved(slot, addr);
            }
        }
    }

    /// The pool of connections to `addr`, made on first use.
    pub fn pool(&self, addr: &NodeAddr) -> Arc<ConnectionPool> {
        if *addr == self.seed {
            return Arc::clone(&self.seed_pool);
        }
        let mut pools = sync::lock(&self.pools);
        Arc::clone(pools.entry(addr.clone()).or_insert_with(|| {
            ConnectionPool::new(
                self.seed_pool.connector().to_node(&addr.host, addr.port),
                self.max_connections,
                self.timeout,
                Arc::clone(&self.counters),
            )
        }))
    }

    /// Sends `commands` and reads their replies, all within `deadline`: one pipeline per
    /// server, each ending with `WAIT wait …` when `wait` is given, every pipeline written
    /// before any reply is read. In a cluster, commands redirected elsewhere are sent again
    /// there (they were not run). Nothing is ever sent again after it may have been run.
    pub fn run(
        &self,
        layout: &Layout,
        commands: &[Command],
        wait: Option<u8>,
        deadline: Instant,
    ) -> Vec<Delivery> {
        let mut results: Vec<Option<Delivery>> = vec![None; commands.len()];
        let mut routes: Vec<Destination> = vec![Destination::Map; commands.len()];
        let follow = layout.mode == Mode::Cluster;
        for round in 0..=MAX_REDIRECTS {
            let pending: Vec<usize> = (0..commands.len())
                .filter(|i| results[*i].is_none())
                .collect();
            if pending.is_empty() {
                break;
            }
            if round == MAX_REDIRECTS {
                for i in pending {
                    results[i] = Some(Delivery::NotSent(StoreError::Unavailable(format!(
                        "redirected {MAX_REDIRECTS} times; not run"
                    ))));
                }
                break;
            }
            let map = match round {
                0 => None,
                // Redirects since may have corrected it.
                _ => self.current(),
            };
            let map = map.as_ref().map_or(&layout.map, |l| &l.map);
            let mut by_server: BTreeMap<NodeAddr, Vec<(usize, bool)>> = BTreeMap::new();
            for i in pending {
                let (addr, asking) = match (&routes[i], &commands[i].target) {
                    (Destination::To(addr), _) => (Some(addr), false),
                    (Destination::Asking(addr), _) => (Some(addr), true),
                    (Destination::Map, CommandTarget::Node(addr)) => (Some(addr), false),
                    (Destination::Map, CommandTarget::Slot(slot)) => (map.owner(*slot), false),
                };
                match addr {
                    Some(addr) => by_server.entry(addr.clone()).or_default().push((i, asking)),
                    None => {
                        self.suspect();
                        let slot = match &commands[i].target {
                            CommandTarget::Slot(slot) => *slot,
                            CommandTarget::Node(_) => 0,
                        };
                        results[i] = Some(Delivery::NotSent(StoreError::Unavailable(format!(
                            "no Redis primary serves slot {slot}"
                        ))));
                    }
                }
            }
            let sent = self.send_round(by_server, commands, wait, deadline, &mut results, follow);
            for (addr, pool, pooled, items) in sent {
                self.read_round(
                    &addr,
                    &pool,
                    pooled,
                    &items,
                    wait.is_some(),
                    follow,
                    &mut results,
                    &mut routes,
                );
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Delivery::NotSent(StoreError::Unavailable("not sent".into())))
            })
            .collect()
    }

    /// Writes each server's pipeline; those that could not be written are answered here.
    #[allow(clippy::type_complexity)]
    fn send_round(
        &self,
        by_server: BTreeMap<NodeAddr, Vec<(usize, bool)>>,
        commands: &[Command],
        wait: Option<u8>,
        deadline: Instant,
        results: &mut [Option<Delivery>],
        cluster: bool,
    ) -> Vec<(NodeAddr, Arc<ConnectionPool>, Pooled, Vec<(usize, bool)>)> {
        let mut sent = Vec::new();
        for (addr, items) in by_server {
            let pool = self.pool(&addr);
            let mut pooled = match pool.checkout(deadline) {
                Ok(pooled) => pooled,
                Err(e) => {
                    if cluster {
                        self.suspect();
                    }
                    for (i, _) in &items {
                        results[*i] = Some(Delivery::NotSent(e.clone()));
                    }
                    continue;
                }
            };
            for (i, asking) in &items {
                if *asking {
                    pooled.conn.queue(&[b"ASKING"]);
                }
                pooled.conn.queue_written(&commands[*i].written);
            }
            if let Some(replicas) = wait {
                // Its reply must come within the deadline, with room for the trip back.
                let left = deadline.saturating_duration_since(Instant::now());
                let ms = (left.as_millis() * 3 / 4).max(1).to_string();
                pooled
                    .conn
                    .queue(&[b"WAIT", replicas.to_string().as_bytes(), ms.as_bytes()]);
            }
            match pooled.conn.send() {
                Ok(()) => sent.push((addr, pool, pooled, items)),
                Err(e) => {
                    pool.retire();
                    if cluster {
                        self.suspect();
                    }
                    let why = pool.describe(e.error);
                    for (i, _) in &items {
                        results[*i] = Some(match e.reached {
                            true => Delivery::Unanswered(StoreError::OutcomeUnknown(format!(
                                "sent, then {why}"
                            ))),
                            false => Delivery::NotSent(StoreError::Unavailable(why.clone())),
                        });
                    }
                }
            }
        }
        sent
    }

    /// Reads one server's replies in order. A command redirected gets its route for the next
    /// round; one whose reply did not come is answered as maybe run, with every one after it.
    #[allow(clippy::too_many_arguments)]
    fn read_round(
        &self,
        addr: &NodeAddr,
        pool: &ConnectionPool,
        mut pooled: Pooled,
        items: &[(usize, bool)],
        waited: bool,
        follow: bool,
        results: &mut [Option<Delivery>],
        routes: &mut [Destination],
    ) {
        let mut fate = Fate::Keep;
        let mut broken: Option<String> = None;
        let mut replied = Vec::new();
        for &(i, asking) in items {
            if let Some(why) = &broken {
                results[i] = Some(Delivery::Unanswered(StoreError::OutcomeUnknown(format!(
                    "sent, then {why}"
                ))));
                continue;
            }
            // `ASKING` answers `+OK`; the command's own reply says the rest.
            let reply = match asking {
                true => pooled.conn.receive().and_then(|_| pooled.conn.receive()),
                false => pooled.conn.receive(),
            };
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => {
                    let why = pool.describe(e);
                    results[i] = Some(Delivery::Unanswered(StoreError::OutcomeUnknown(format!(
                        "sent, then {why}"
                    ))));
                    broken = Some(why);
                    continue;
                }
            };
            if let RedisReply::Error(e) = &reply {
                if follow {
                    match Redirect::parse(&e.line, &addr.host) {
                        Some(Redirect::Moved { slot, addr: to }) => {
                            self.redirects.fetch_add(1, Ordering::Relaxed);
                            self.moved(slot, &to);
                            routes[i] = Destination::To(to);
                            continue;
                        }
                        Some(Redirect::Ask { addr: to, .. }) => {
                            self.redirects.fetch_add(1, Ordering::Relaxed);
                            routes[i] = Destination::Asking(to);
                            continue;
                        }
                        None => {}
                    }
                    if matches!(
                        e.code(),
                        "CLUSTERDOWN" | "READONLY" | "TRYAGAIN" | "MASTERDOWN"
                    ) {
                        self.suspect();
                    }
                }
                fate = fate.max(replies::fate(e));
            }
            replied.push(i);
            results[i] = Some(Delivery::Replied {
                reply,
                from: addr.clone(),
                replicas: None,
            });
        }
        if waited {
            let replicas = match &broken {
                Some(why) => Err(why.clone()),
                None => match pooled.conn.receive() {
                    Ok(RedisReply::Integer(n)) => Ok(u64::try_from(n).unwrap_or(0)),
                    Ok(RedisReply::Error(e)) => Err(format!("WAIT refused: {e}")),
                    Ok(other) => Err(other.unexpected("WAIT")),
                    Err(e) => {
                        let why = pool.describe(e);
                        broken = Some(why.clone());
                        Err(why)
                    }
                },
            };
            for i in replied {
                if let Some(Delivery::Replied { replicas: r, .. }) = &mut results[i] {
                    *r = Some(replicas.clone());
                }
            }
        }
        match broken {
            Some(_) => {
                pool.retire();
                if follow {
                    self.suspect();
                }
            }
            None => {
                if fate == Fate::Retire && follow {
                    self.suspect();
                }
                pool.dispose(pooled, fate);
            }
        }
    }
}

/// The turn of the thread finding out what Redis is, given up when it is over however it ends,
/// so that the waiting threads try themselves rather than wait for it until their deadline.
struct DiscoveryTurn<'a>(&'a ClusterNodes);

impl Drop for DiscoveryTurn<'_> {
    fn drop(&mut self) {
        *sync::lock(&self.0.discovering) = false;
        self.0.discovered.notify_all();
    }
}

/// One command and its reply on a connection of the caller's, which is dropped when it
/// breaks (a read, safe to ask again: unavailable).
fn ask(
    pool: &ConnectionPool,
    pooled: &mut Pooled,
    args: &[&[u8]],
) -> Result<RedisReply, StoreError> {
    pooled.conn.queue(args);
    pooled
        .conn
        .send()
        .map_err(|e| pool.broken(e.error))
        .and_then(|()| pooled.conn.receive().map_err(|e| pool.broken(e)))
}
