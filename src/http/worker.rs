//! An event-loop worker: the thread that owns a share of the connections, with its own epoll
//! (edge-triggered: each connection is registered once, and a request costs no `epoll_ctl`),
//! its own table (no lock) and its own deadlines. It answers requests that need nothing outside
//! the process at once and never waits for anything else: a greeting's answer arrives later in
//! its [`Inbox`] through a [`Reply`], and a blocking handler's connection is lent to the
//! blocking pool and comes back through the inbox when its response is sent.

use std::collections::HashMap;
use std::io::{self, Read};
use std::mem;
use std::net::TcpStream;
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
use super::drive::{self, Application, Stop, Transport};
use super::shared::{Entry, Inbox, Message, Shared, Task};
use super::timers::Timers;
use super::{Answer, Exchange, Job, Rejection, Request, Response};

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
/// While draining, a new connection gets this long to send its first request.
const DRAIN_FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

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
    /// The way to answer this request later (see [`super::Answer::Later`]).
    pub fn reply(&self) -> Reply {
        Reply {
            inbox: Arc::clone(self.inbox),
            key: self.key,
            sent: false,
        }
    }
}

/// A connection the worker owns.
struct Slot {
    entry: Entry,
    /// Its request, while it waits for a [`Reply`]: readiness is ignored and no deadline
    /// applies (the handler's own, e.g. the store's timeout, bounds the wait).
    waiting: Option<Pending>,
    /// The client has ended its side: its end of input is in the socket, and since no edge
    /// will come for it again, reads go on until they find it.
    hangup: bool,
    /// The tick of [`Timers`] its deadline is filed under.
    filed: u64,
}

struct Worker<'a> {
    id: usize,
    shared: &'a Arc<Shared>,
    epoll: OwnedFd,
    inbox: Arc<Inbox>,
    table: HashMap<u64, Slot>,
    timers: Timers,
    next_key: u64,
    scratch: Vec<u8>,
    /// The inbox's other buffer.
    spare: Vec<Message>,
}

/// Runs worker `id` until the server is done.
pub(super) fn run(shared: &Arc<Shared>, id: usize) {
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
    fn new(shared: &'a Arc<Shared>, id: usize) -> std::io::Result<Worker<'a>> {
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
        })
    }

    fn serve(&mut self) {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(EVENTS);
        let mut next_sweep = Instant::now() + SWEEP_INTERVAL;
        while !self.shared.done.load(Ordering::SeqCst) {
            events.clear();
            let timeout = Timespec::try_from(
                next_sweep
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            )
            .unwrap_or_default();
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
                        self.drive(key, None);
                    }
                }
            }
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP_INTERVAL;
            }
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
                Message::MakeRoom(entry, others) => self.make_room(entry, others),
                Message::Done(key, response) => self.done(key, response),
            }
        }
        self.spare = messages;
    }

    fn adopt(&mut self, entry: Entry, pending: Option<Pending>) {
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
            return self.shared.close(entry);
        }
        let filed = self.timers.schedule(key, entry.conn.deadline().0);
        self.table.insert(
            key,
            Slot {
                entry,
                waiting: None,
                hangup: false,
                filed,
            },
        );
        // Edge-triggered: what arrived before registration raises no event.
        self.drive(key, pending);
    }

    fn make_room(&mut self, entry: Entry, others: usize) {
        let reclaimed = self.longest_idle().and_then(|key| self.table.remove(&key));
        match reclaimed {
            Some(slot) => {
                self.shared.stats.reclaimed.fetch_add(1, Ordering::Relaxed);
                self.shared.close(slot.entry);
                self.adopt(entry, None);
            }
            None if others > 0 => {
                let next = (self.id + 1) % self.shared.inboxes.len();
                self.shared.inboxes[next].send(Message::MakeRoom(entry, others - 1));
            }
            None => {
                self.shared.refuse(entry.stream, "connection cap reached");
                self.shared.stats.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// The connection idle the longest, if any: one whose next request has arrived unread
    /// (found with a `peek`) is not idle, and the next one is tried, a few at most.
    fn longest_idle(&self) -> Option<u64> {
        let mut busy = Vec::new();
        for _ in 0..4 {
            let (key, slot) = self
                .table
                .iter()
                .filter(|(key, slot)| {
                    slot.waiting.is_none() && slot.entry.conn.is_idle() && !busy.contains(*key)
                })
                .min_by_key(|(_, slot)| slot.entry.conn.deadline().0)?;
            match slot.entry.stream.peek(&mut [0u8; 1]) {
                Ok(n) if n > 0 => busy.push(*key),
                _ => return Some(*key),
            }
        }
        None
    }

    fn done(&mut self, key: u64, response: Option<Response>) {
        // A reply for a connection that is gone, or was already answered (its handler
        // panicked after handing out the reply), has no one to go to.
        let Some(slot) = self.table.get_mut(&key) else {
            return;
        };
        let Some(pending) = slot.waiting.take() else {
            return;
        };
        let response = response.unwrap_or_else(|| self.shared.handler.reject(Rejection::Internal));
        slot.entry
            .conn
            .respond(pending, response, Instant::now(), self.shared.draining());
        self.drive(key, None);
    }

    /// Drives `key`'s connection as far as it goes, answering `pending` first if given.
    fn drive(&mut self, key: u64, pending: Option<Pending>) {
        let Worker {
            id,
            shared,
            epoll,
            inbox,
            table,
            timers,
            scratch,
            ..
        } = self;
        let Some(slot) = table.get_mut(&key) else {
            return;
        };
        if slot.waiting.is_some() {
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
            Some(pending) => drive::resume(conn, pending, &mut socket, &mut app),
            None => drive::drive(conn, &mut socket, &mut app),
        }));
        match stop {
            Ok(Stop::Park) => {
                // A deadline that came nearer (a request started on an idle connection) is
                // filed again; one that moved away is found so when its old tick comes.
                let at = slot.entry.conn.deadline().0;
                if timers.tick_of(at) < slot.filed {
                    slot.filed = timers.schedule(key, at);
                }
            }
            Ok(Stop::Held(pending, Hold::Reply)) => slot.waiting = Some(pending),
            Ok(Stop::Held(pending, Hold::Blocking(job))) => {
                if let Some(slot) = table.remove(&key) {
                    // The blocking thread waits on the socket itself until it gives it back.
                    let _ = epoll::delete(&*epoll, &slot.entry.stream);
                    blocking::submit(
                        shared,
                        Task {
                            owner: *id,
                            entry: slot.entry,
                            pending,
                            job,
                        },
                    );
                }
            }
            Ok(Stop::Close) => {
                if let Some(slot) = table.remove(&key) {
                    shared.close(slot.entry);
                }
            }
            Err(_) => {
                log::error!("a connection failed inside the server; it was closed");
                if let Some(slot) = table.remove(&key) {
                    shared.close(slot.entry);
                }
            }
        }
    }

    /// Closes connections past their deadline (answering 408 to those mid-request) and, while
    /// draining, every idle one. Only the connections filed under the ticks now due are looked
    /// at; one whose deadline moved is filed again. A new connection that has not sent anything
    /// yet is not idle: its request may be on its way, so while draining it gets a short grace.
    fn sweep(&mut self, now: Instant) {
        let mut due = Vec::new();
        self.timers.due(now, &mut due);
        let mut expired: Vec<(u64, Expiry)> = Vec::new();
        for (key, tick) in due {
            let Some(slot) = self.table.get_mut(&key).filter(|s| s.filed == tick) else {
                // Closed, or filed again under another tick.
                continue;
            };
            let (at, expiry) = slot.entry.conn.deadline();
            if slot.waiting.is_some() {
                slot.filed = self.timers.schedule(key, now + WAITING_RECHECK);
            } else if at <= now {
                expired.push((key, expiry));
            } else {
                slot.filed = self.timers.schedule(key, at);
            }
        }
        if self.shared.draining() {
            expired.extend(
                self.table
                    .iter()
                    .filter(|(_, slot)| {
                        slot.waiting.is_none()
                            && slot
                                .entry
                                .conn
                                .idle_for_drain(now, DRAIN_FIRST_REQUEST_GRACE)
                    })
                    .map(|(key, _)| (*key, Expiry::Idle)),
            );
        }
        for (key, expiry) in expired {
            let Some(slot) = self.table.remove(&key) else {
                continue;
            };
            match expiry {
                Expiry::Request => self
                    .shared
                    .reply_and_close(slot.entry, &self.shared.timeout_reply),
                Expiry::Idle | Expiry::Write => self.shared.close(slot.entry),
            }
        }
    }
}

/// Why the event loop held a request back.
enum Hold {
    /// Its [`Reply`] brings the response.
    Reply,
    /// It is answered on a blocking thread.
    Blocking(Job),
}

/// The application as an event loop sees it: the handler, with the request's [`Context`].
struct EventLoop<'a> {
    shared: &'a Shared,
    context: Context<'a>,
}

impl Application for EventLoop<'_> {
    type Hold = Hold;

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn draining(&self) -> bool {
        self.shared.draining()
    }

    fn answer(&mut self, request: &Request<'_>) -> Result<Response, Hold> {
        let handler = &self.shared.handler;
        match panic::catch_unwind(AssertUnwindSafe(|| handler.handle(request, &self.context))) {
            Ok(Answer::Now(response)) => Ok(response),
            Ok(Answer::Later) => Err(Hold::Reply),
            Ok(Answer::Blocking(job)) => Err(Hold::Blocking(job)),
            Err(_) => Ok(handler.reject(Rejection::Internal)),
        }
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
