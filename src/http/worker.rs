//! An event-loop worker: the thread that owns a share of the connections, with its own epoll
//! (edge-triggered: each connection is registered once, and a request costs no `epoll_ctl`),
//! its own table (no lock) and its own deadlines. It answers requests that need nothing outside
//! the process at once and never waits for anything else: a greeting's answer arrives later in
//! its [`Inbox`] through a [`Reply`], and a blocking handler's connection is lent to the
//! blocking pool and comes back through the inbox when its response is sent.
//!
//! Fairness: a connection is served for at most [`PER_WAKE`] at a time; one with more to do
//! waits at the back of a ready list, which the worker serves after each look at epoll (as
//! nginx serves its posted events), so a client that keeps its socket full cannot keep the
//! worker from its other connections. A connection closed with the client's bytes unread
//! lingers (its write side shut, the rest read and thrown away, for a bounded time) so that
//! the answer is not destroyed by a reset.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::mem;
use std::net::{Shutdown, TcpStream};
use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::Timespec;

use super::blocking;
use super::conn::{Expiry, Pending};
use super::drive::{self, Application, Budget, Stop, Transport};
use super::shared::{Client, Inbox, Message, ServerState, Task, Work};
use super::timers::Timers;
use super::{Answer, Exchange, Rejection, Request, Response, Wait};

/// The inbox's epoll key; connections count up from 1.
const INBOX_KEY: u64 = 0;
/// How often deadlines are checked.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes read from a socket at a time, into a buffer the worker owns.
const READ_CHUNK: usize = 16 * 1024;
/// Readiness events taken from epoll in one wake.
const EVENTS: usize = 256;
/// Sweep intervals the timer wheel tells apart: 102 s, past the default idle timeout.
const WHEEL_SLOTS: usize = 1024;
/// How often a connection that waits for its reply is looked at.
const WAITING_RECHECK: Duration = Duration::from_secs(1);
/// What one connection may do before the worker turns to the others: measured with one client
/// pipelining 4 KB requests against a neighbour's `/health` (README, Resilience), and large
/// enough that a normal pipeline (a few requests) is served in one go.
const PER_WAKE: Budget = Budget {
    requests: 16,
    bytes: 64 * 1024,
};
/// Stale timer entries a worker lets stand before it drops them (see `compact_timers`).
const TIMERS_SLACK: usize = 4096;
/// How many connections a worker looks at with a `peek` when it makes room, before it gives up
/// on its own kind (each `peek` is a system call; a few found busy means most are).
const PEEK_TRIES: usize = 4;
/// How long a connection closed with input unread keeps reading it, and how much it reads,
/// before it is closed anyway.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 * 1024;

/// What a connection is told about: input, room to send, or the peer gone. Registered once.
const CONNECTION_EVENTS: EventFlags = EventFlags::IN
    .union(EventFlags::OUT)
    .union(EventFlags::RDHUP)
    .union(EventFlags::ET);

/// Where a handler sends a response that it could not give at once. Sent from any thread, it
/// wakes the worker that owns the connection. Dropped unsent, the request is answered 500, so a
/// lost reply never leaves a client waiting.
pub struct Reply {
    inbox: Arc<Inbox>,
    key: u64,
    sent: bool,
}

impl Reply {
    fn new(inbox: &Arc<Inbox>, key: u64) -> Reply {
        Reply {
            inbox: Arc::clone(inbox),
            key,
            sent: false,
        }
    }

    pub fn send(mut self, response: Response) {
        self.sent = true;
        self.inbox.send(Message::Done(self.key, Some(response)));
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.sent {
            self.inbox.send(Message::Done(self.key, None));
        }
    }
}

/// What a handler may take with a request besides the request itself.
pub struct Context<'a> {
    inbox: &'a Arc<Inbox>,
    key: u64,
}

impl Context<'_> {
    /// The way to answer this request later (see [`super::Wait::Reply`]).
    pub fn reply(&self) -> Reply {
        Reply::new(self.inbox, self.key)
    }
}

/// A connection the worker owns.
struct Slot {
    entry: Client,
    phase: Phase,
    /// The client has ended its side: its end of input is in the socket, and since no edge
    /// will come for it again, reads go on until they find it.
    hangup: bool,
    /// In the ready list: it spent its budget with more to do.
    queued: bool,
    /// The tick of [`Timers`] its deadline is filed under.
    filed: u64,
}

/// Where a connection the worker owns stands.
enum Phase {
    /// Driven by its readiness and its deadlines.
    Open,
    /// Its request waits for a [`Reply`]: readiness is ignored and no deadline applies (the
    /// handler's own, e.g. the store's timeout, bounds the wait).
    Waiting(Pending),
    /// Answered and over, with the client's bytes unread: the write side is shut, and what
    /// arrives is read and thrown away until the client closes, `until` passes or
    /// [`LINGER_BYTES`] have been read; then it closes without a reset.
    Lingering { until: Instant, discarded: usize },
}

/// Which connections a worker closes to make room for a new one at the cap, in turn: each
/// kind is asked of every worker before the next kind is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reclaim {
    /// Connections lingering after their answer, then idle keep-alive ones.
    Idle,
    /// Connections that have sent nothing since they were accepted, oldest first.
    Silent,
    /// Requests under way slower than the minimum rate, even within their grace, the furthest
    /// behind first: answered 408.
    Slow,
}

impl Reclaim {
    /// The kinds in the order they are asked for.
    const ORDER: [Reclaim; 3] = [Reclaim::Idle, Reclaim::Silent, Reclaim::Slow];
}

struct Worker<'a> {
    id: usize,
    shared: &'a Arc<ServerState>,
    epoll: OwnedFd,
    inbox: Arc<Inbox>,
    table: HashMap<u64, Slot>,
    timers: Timers,
    next_key: u64,
    scratch: Vec<u8>,
    /// The inbox's other buffer.
    spare: Vec<Message>,
    /// Connections that spent their budget with input still to read: edge-triggered epoll
    /// will not tell of it again, so they are served from here.
    ready: VecDeque<u64>,
    /// When this worker first saw the drain begin.
    drain_began: Option<Instant>,
}

/// Runs worker `id` until the server is done.
pub(super) fn run(shared: &Arc<ServerState>, id: usize) {
    let mut worker = match Worker::new(shared, id) {
        Ok(worker) => worker,
        Err(e) => {
            log::error!("worker {id} cannot start its event loop: {e}");
            return;
        }
    };
    worker.serve();
}

impl<'a> Worker<'a> {
    fn new(shared: &'a Arc<ServerState>, id: usize) -> std::io::Result<Worker<'a>> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let inbox = Arc::clone(&shared.inboxes[id]);
        // Level-triggered: the worker reads the eventfd back to zero when it wakes.
        epoll::add(
            &epoll,
            &inbox.wake,
            EventData::new_u64(INBOX_KEY),
            EventFlags::IN,
        )?;
        Ok(Worker {
            id,
            shared,
            epoll,
            inbox,
            table: HashMap::new(),
            timers: Timers::new(Instant::now(), SWEEP_INTERVAL, WHEEL_SLOTS),
            next_key: INBOX_KEY + 1,
            scratch: vec![0; READ_CHUNK],
            spare: Vec::new(),
            ready: VecDeque::new(),
            drain_began: None,
        })
    }

    fn serve(&mut self) {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(EVENTS);
        let mut next_sweep = Instant::now() + SWEEP_INTERVAL;
        while !self.shared.done.load(Ordering::SeqCst) {
            events.clear();
            // With connections ready to go on, only look at what else has happened.
            let wait = match self.ready.is_empty() {
                true => next_sweep
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
                false => Duration::ZERO,
            };
            let timeout = Timespec::try_from(wait).unwrap_or_default();
            match epoll::wait(&self.epoll, spare_capacity(&mut events), Some(&timeout)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    log::error!("epoll_wait failed: {e}; worker {} exits", self.id);
                    return;
                }
            }
            for event in &events {
                match event.data.u64() {
                    INBOX_KEY => self.read_inbox(),
                    key => {
                        let flags = { event.flags };
                        if flags.intersects(EventFlags::RDHUP | EventFlags::HUP) {
                            if let Some(slot) = self.table.get_mut(&key) {
                                slot.hangup = true;
                            }
                        }
                        self.ready_event(key);
                    }
                }
            }
            // Each connection that was waiting its turn gets one more budget; those that spend
            // it again go to the back, behind what the next look at epoll brings.
            for _ in 0..self.ready.len() {
                let Some(key) = self.ready.pop_front() else {
                    break;
                };
                if let Some(slot) = self.table.get_mut(&key) {
                    slot.queued = false;
                    self.drive(key, None);
                }
            }
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP_INTERVAL;
            }
        }
    }

    /// A connection's socket is ready for something.
    fn ready_event(&mut self, key: u64) {
        match self.table.get(&key).map(|slot| &slot.phase) {
            Some(Phase::Lingering { .. }) => self.discard(key),
            Some(_) => self.drive(key, None),
            None => {}
        }
    }

    fn read_inbox(&mut self) {
        let mut count = [0u8; 8];
        let _ = rustix::io::read(&self.inbox.wake, &mut count);
        // Two buffers take turns, so that neither the senders nor the worker allocate.
        let mut messages = mem::take(&mut self.spare);
        mem::swap(&mut messages, &mut *self.inbox.messages());
        for message in messages.drain(..) {
            match message {
                Message::Adopt(entry, pending) => self.adopt(entry, pending),
                Message::MakeRoom(entry, tries) => self.make_room(entry, tries),
                Message::Done(key, response) => self.done(key, response),
            }
        }
        self.spare = messages;
    }

    fn adopt(&mut self, entry: Client, pending: Option<Pending>) {
        let Some(key) = self.register(entry) else {
            return;
        };
        // Edge-triggered: what arrived before registration raises no event.
        self.drive(key, pending);
    }

    /// Puts a connection in this worker's epoll and table, driven by its deadline; `None` if
    /// epoll would not take it (it is closed).
    fn register(&mut self, entry: Client) -> Option<u64> {
        let key = self.next_key;
        self.next_key += 1;
        if epoll::add(
            &self.epoll,
            &entry.stream,
            EventData::new_u64(key),
            CONNECTION_EVENTS,
        )
        .is_err()
        {
            self.shared.close(entry);
            return None;
        }
        let filed = self.timers.schedule(key, entry.conn.deadline().0);
        self.compact_timers();
        self.table.insert(
            key,
            Slot {
                entry,
                phase: Phase::Open,
                hangup: false,
                queued: false,
                filed,
            },
        );
        Some(key)
    }

    /// A new connection over the cap: this worker closes one of its own for it, of the kind
    /// this round asks for, or passes it on; `tries` counts down the asks left, round by round
    /// ([`Reclaim::ORDER`]) around the workers. Past them all it is refused.
    fn make_room(&mut self, entry: Client, tries: usize) {
        let workers = self.shared.inboxes.len();
        let rounds = Reclaim::ORDER.len();
        let round = rounds - 1 - (tries / workers).min(rounds - 1);
        let reclaim = Reclaim::ORDER[round];
        match self.reclaimable(reclaim) {
            Some(key) => {
                self.shared.stats.reclaimed.fetch_add(1, Ordering::Relaxed);
                self.give_up(key, reclaim == Reclaim::Slow);
                self.adopt(entry, None);
            }
            None if tries > 0 => {
                let next = (self.id + 1) % workers;
                self.shared.inboxes[next].send(Message::MakeRoom(entry, tries - 1));
            }
            None => {
                self.shared.refuse(&entry.stream, "connection cap reached");
                // Its request is probably on its way: a lingering close lets the client read
                // the 503 instead of a reset.
                if let Some(key) = self.register(entry) {
                    self.linger(key);
                }
            }
        }
    }

    /// The connection to close for a newcomer, of the kind `reclaim` names.
    fn reclaimable(&self, reclaim: Reclaim) -> Option<u64> {
        let open = || {
            self.table
                .iter()
                .filter(|(_, slot)| matches!(slot.phase, Phase::Open))
        };
        match reclaim {
            // A lingering connection is over: it goes first. Then the one idle the longest.
            Reclaim::Idle => self
                .table
                .iter()
                .find(|(_, slot)| matches!(slot.phase, Phase::Lingering { .. }))
                .map(|(key, _)| *key)
                .or_else(|| {
                    self.quiet_first(
                        open().filter(|(_, slot)| slot.entry.conn.is_idle()),
                        |slot| slot.entry.conn.deadline().0,
                    )
                }),
            Reclaim::Silent => self.quiet_first(
                open().filter(|(_, slot)| slot.entry.conn.is_silent()),
                |slot| slot.entry.conn.opened(),
            ),
            Reclaim::Slow => {
                let now = Instant::now();
                open()
                    .filter_map(|(key, slot)| Some((*key, slot.entry.conn.behind(now)?)))
                    .max_by_key(|(_, behind)| *behind)
                    .map(|(key, _)| key)
            }
        }
    }

    /// Of `candidates`, the first by `order` whose client has sent nothing that is still
    /// unread: one whose next bytes have arrived (found with a `peek`) is neither idle nor
    /// silent any more, and the next is tried, a few at most.
    fn quiet_first<'s, K: Ord>(
        &self,
        candidates: impl Iterator<Item = (&'s u64, &'s Slot)> + Clone,
        order: impl Fn(&Slot) -> K,
    ) -> Option<u64> {
        let mut busy = Vec::new();
        for _ in 0..PEEK_TRIES {
            let (key, slot) = candidates
                .clone()
                .filter(|(key, _)| !busy.contains(*key))
                .min_by_key(|(_, slot)| order(slot))?;
            match slot.entry.stream.peek(&mut [0u8; 1]) {
                Ok(n) if n > 0 => busy.push(*key),
                _ => return Some(*key),
            }
        }
        None
    }

    /// Shuts the write side of `key`'s connection (its answer is sent, or as much as would go)
    /// and reads what the client still sends until it closes, for a bounded time and amount.
    fn linger(&mut self, key: u64) {
        let Some(slot) = self.table.get_mut(&key) else {
            return;
        };
        let until = Instant::now() + LINGER_TIME;
        let _ = slot.entry.stream.shutdown(Shutdown::Write);
        slot.phase = Phase::Lingering {
            until,
            discarded: 0,
        };
        slot.filed = self.timers.schedule(key, until);
        // Edge-triggered: what is already in the socket raises no event.
        self.discard(key);
    }

    /// Reads and throws away what a lingering connection's client sends; closes it at the
    /// client's end of input, on an error, or past [`LINGER_BYTES`].
    fn discard(&mut self, key: u64) {
        let Some(slot) = self.table.get_mut(&key) else {
            return;
        };
        let Phase::Lingering { discarded, .. } = &mut slot.phase else {
            return;
        };
        let over = loop {
            match (&slot.entry.stream).read(&mut self.scratch) {
                Ok(0) => break true,
                Ok(n) => {
                    *discarded += n;
                    if *discarded >= LINGER_BYTES {
                        break true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        if over {
            if let Some(slot) = self.table.remove(&key) {
                self.shared.close(slot.entry);
            }
        }
    }

    /// Ends a connection the worker will not wait for any longer. One with a request under way
    /// (`answering_408`) gets its 408 first, and lingers if it is still sending; any other is
    /// closed at once, with nothing to say.
    fn give_up(&mut self, key: u64, answering_408: bool) {
        if answering_408 {
            if let Some(slot) = self.table.get(&key) {
                self.shared.reply(&slot.entry, &self.shared.timeout_reply);
            }
            self.close(key);
        } else if let Some(slot) = self.table.remove(&key) {
            self.shared.close(slot.entry);
        }
    }

    /// Closes `key`'s connection: lingering if the client's bytes would be left unread.
    fn close(&mut self, key: u64) {
        let unread = self
            .table
            .get(&key)
            .is_some_and(|slot| slot.entry.conn.closes_with_input_unread());
        if unread {
            self.linger(key);
        } else if let Some(slot) = self.table.remove(&key) {
            self.shared.close(slot.entry);
        }
    }

    fn done(&mut self, key: u64, response: Option<Response>) {
        // A reply for a connection that is gone, or was already answered (its handler
        // panicked after handing out the reply), has no one to go to.
        let Some(slot) = self.table.get_mut(&key) else {
            return;
        };
        let Phase::Waiting(pending) = mem::replace(&mut slot.phase, Phase::Open) else {
            return;
        };
        let response = response.unwrap_or_else(|| self.shared.handler.reject(Rejection::Internal));
        slot.entry
            .conn
            .respond(pending, response, Instant::now(), self.shared.draining());
        self.drive(key, None);
    }

    /// Drives `key`'s connection as far as its budget goes, answering `pending` first if
    /// given.
    fn drive(&mut self, key: u64, pending: Option<Pending>) {
        let Worker {
            shared,
            inbox,
            table,
            scratch,
            ..
        } = self;
        let Some(slot) = table.get_mut(&key) else {
            return;
        };
        if !matches!(slot.phase, Phase::Open) {
            return;
        }
        let mut app = EventLoop {
            shared,
            context: Context { inbox, key },
        };
        let mut socket = Socket {
            stream: &slot.entry.stream,
            scratch,
            drained: false,
            hangup: slot.hangup,
        };
        let conn = &mut slot.entry.conn;
        // The connection's own code must not take the worker down with it; handlers' panics
        // are already answered with 500.
        let stop = panic::catch_unwind(AssertUnwindSafe(|| match pending {
            Some(pending) => drive::resume(conn, pending, &mut socket, &mut app, PER_WAKE),
            None => drive::drive(conn, &mut socket, &mut app, PER_WAKE),
        }));
        match stop {
            Ok(Stop::Park) => self.refile(key),
            Ok(Stop::Yield) => {
                self.refile(key);
                if let Some(slot) = self.table.get_mut(&key).filter(|slot| !slot.queued) {
                    slot.queued = true;
                    self.ready.push_back(key);
                }
            }
            Ok(Stop::Held(pending, wait)) => self.wait(key, pending, wait),
            Ok(Stop::Close) => self.close(key),
            Err(_) => {
                log::error!("a connection failed inside the server; it was closed");
                if let Some(slot) = self.table.remove(&key) {
                    self.shared.close(slot.entry);
                }
            }
        }
    }

    /// Drops the wheel's stale entries (for connections closed or lent, or filed again since)
    /// once they outnumber the live ones: every connection adopted, re-adopted after a blocking
    /// thread or refiled adds one, and each would otherwise stay until its tick, up to the idle
    /// timeout later. Amortised: a compaction follows at least as many filings as it keeps.
    fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.table.len() + TIMERS_SLACK {
            return;
        }
        let table = &self.table;
        self.timers
            .retain(|key, tick| table.get(&key).is_some_and(|slot| slot.filed == tick));
    }

    /// `key`'s request is answered later: the connection waits for its [`Reply`], for a job on
    /// a blocking thread to bring its response the same way, or lent to one that streams it.
    fn wait(&mut self, key: u64, pending: Pending, wait: Wait) {
        let job = match wait {
            Wait::Reply => None,
            Wait::Pool(job) => Some(job),
            Wait::Stream(job) => {
                if let Some(slot) = self.table.remove(&key) {
                    // The blocking thread waits on the socket itself until it gives it back.
                    let _ = epoll::delete(&self.epoll, &slot.entry.stream);
                    let task = Task {
                        owner: self.id,
                        entry: slot.entry,
                        pending,
                        job,
                    };
                    blocking::submit(self.shared, Work::Stream(Box::new(task)));
                }
                return;
            }
        };
        if let Some(slot) = self.table.get_mut(&key) {
            slot.phase = Phase::Waiting(pending);
        }
        if let Some(job) = job {
            blocking::submit(self.shared, Work::Answer(job, Reply::new(&self.inbox, key)));
        }
    }

    /// Files `key`'s deadline again if it came nearer (a request started on an idle
    /// connection); one that moved away is found so when its old tick comes.
    fn refile(&mut self, key: u64) {
        if let Some(slot) = self.table.get_mut(&key) {
            let at = slot.entry.conn.deadline().0;
            if self.timers.tick_of(at) < slot.filed {
                slot.filed = self.timers.schedule(key, at);
                self.compact_timers();
            }
        }
    }

    /// Closes connections past their deadline (answering 408 to those mid-request, lingering
    /// for the rest of their bytes) and those whose lingering is over. While draining, idle
    /// connections are closed once the drain has run for the idle grace: until then, a request
    /// that arrives on one is answered (with `Connection: close`) instead of meeting a close.
    /// Only the connections filed under the ticks now due are looked at; one whose deadline
    /// moved is filed again.
    fn sweep(&mut self, now: Instant) {
        let mut due = Vec::new();
        self.timers.due(now, &mut due);
        let mut expired: Vec<(u64, Expiry)> = Vec::new();
        for (key, tick) in due {
            let Some(slot) = self.table.get_mut(&key).filter(|s| s.filed == tick) else {
                // Closed, or filed again under another tick.
                continue;
            };
            let (at, expiry) = match slot.phase {
                Phase::Open => slot.entry.conn.deadline(),
                Phase::Lingering { until, .. } => (until, Expiry::Idle),
                Phase::Waiting(_) => {
                    slot.filed = self.timers.schedule(key, now + WAITING_RECHECK);
                    continue;
                }
            };
            if at <= now {
                expired.push((key, expiry));
            } else {
                slot.filed = self.timers.schedule(key, at);
            }
        }
        if self.shared.draining() {
            let began = *self.drain_began.get_or_insert(now);
            if now >= began + self.shared.drain_idle_grace {
                expired.extend(
                    self.table
                        .iter()
                        .filter(|(_, slot)| {
                            matches!(slot.phase, Phase::Open) && slot.entry.conn.awaits_request()
                        })
                        .map(|(key, _)| (*key, Expiry::Idle)),
                );
            }
        }
        for (key, expiry) in expired {
            self.give_up(key, expiry == Expiry::Request);
        }
    }
}

/// The application as an event loop sees it: the handler, with the request's [`Context`].
struct EventLoop<'a> {
    shared: &'a ServerState,
    context: Context<'a>,
}

impl Application for EventLoop<'_> {
    type Wait = Wait;

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn draining(&self) -> bool {
        self.shared.draining()
    }

    fn answer(&mut self, request: &Request<'_>) -> Answer<Wait> {
        let handler = &self.shared.handler;
        panic::catch_unwind(AssertUnwindSafe(|| handler.handle(request, &self.context)))
            .unwrap_or_else(|_| Answer::Now(handler.reject(Rejection::Internal)))
    }

    fn reject(&mut self, rejection: Rejection) -> Response {
        self.shared.handler.reject(rejection)
    }

    fn completed(&mut self, exchange: &Exchange<'_>) {
        self.shared.handler.completed(exchange);
    }
}

/// A non-blocking socket read into the worker's buffer.
struct Socket<'a> {
    stream: &'a TcpStream,
    scratch: &'a mut [u8],
    /// The last read came back short, so the socket is empty: edge-triggered, the worker hears
    /// of the next bytes, and a read now would only say that there are none.
    drained: bool,
    /// See [`Slot::hangup`]: a short read does not mean the end of input was read.
    hangup: bool,
}

impl Transport for Socket<'_> {
    fn read(&mut self, most: usize) -> io::Result<&[u8]> {
        if self.drained {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let room = most.min(self.scratch.len());
        let n = self.stream.read(&mut self.scratch[..room])?;
        self.drained = n < room && !self.hangup;
        Ok(&self.scratch[..n])
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        io::Write::write(&mut self.stream, bytes)
    }
}
