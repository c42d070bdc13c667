//! The listener and the worker threads that share one epoll instance: the thin I/O shell around
//! the connection core ([`super::conn`]).
//!
//! Every connection waiting for its socket (for a request's bytes, or for room to send a
//! response) is parked in a table, registered with epoll in one-shot mode for what it waits
//! for. Each worker waits on epoll for one ready connection at a time, drives it (reads, runs
//! blocking handlers on whole requests, writes) until its socket would block, and parks it
//! again. A client that does not read costs a table entry, not a worker. The kernel's ready
//! list is the queue: connections are served in the order they became ready, and no thread is
//! tied to a connection between events. A sweeper (the thread that called [`Server::run`])
//! enforces the deadlines each connection states, and drives shutdown.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;

use super::conn::{Conn, Event, Expiry, Interest, Settings};
use super::request::{Limits, Request};
use super::response::{self, Delimit, Response};
use super::{Exchange, Handler, Rejection};

const LISTENER_KEY: u64 = 0;
const WAKE_KEY: u64 = u64::MAX;
/// How often deadlines are checked.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes read from a socket at a time, into a buffer each worker owns.
const READ_CHUNK: usize = 16 * 1024;
/// Connections one worker accepts before letting the others at the listener.
const ACCEPT_BATCH: usize = 256;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub workers: usize,
    pub max_connections: usize,
    /// Time a client has to send a complete request once it has started one (and for the
    /// first request on a new connection).
    pub request_timeout: Duration,
    /// Time an idle keep-alive connection is kept.
    pub idle_timeout: Duration,
    /// Time a response may go without a byte leaving before the connection is dropped.
    pub write_timeout: Duration,
    /// Time in-flight requests have to finish after shutdown begins.
    pub drain_timeout: Duration,
    pub limits: Limits,
}

/// Live numbers about connections, shared with whoever renders metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub open: AtomicU64,
    pub refused: AtomicU64,
}

/// Starts a graceful shutdown from any thread (e.g. a signal handler thread).
#[derive(Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }
}

pub struct Server {
    listener: TcpListener,
    config: ServerConfig,
    stats: Arc<Stats>,
    stopping: Arc<AtomicBool>,
}

impl Server {
    pub fn bind(addr: SocketAddr, config: ServerConfig) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        // std listens with a backlog of 128; a burst of new connections deserves more, or the
        // kernel drops SYNs and clients wait a full second to retry. Calling listen(2) again
        // on a listening socket only changes the backlog (capped by net.core.somaxconn).
        rustix::net::listen(&listener, 4096)?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            config,
            stats: Arc::new(Stats::default()),
            stopping: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            flag: Arc::clone(&self.stopping),
        }
    }

    /// Serves until shut down and drained (or the drain time is up).
    pub fn run(self, handler: Arc<dyn Handler>) -> io::Result<()> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        // Level-triggered: once written, it wakes every worker, for good.
        epoll::add(&epoll, &wake, EventData::new_u64(WAKE_KEY), EventFlags::IN)?;
        epoll::add(
            &epoll,
            &self.listener,
            EventData::new_u64(LISTENER_KEY),
            ONE_SHOT_IN,
        )?;
        let shared = Arc::new(Shared {
            epoll,
            listener: RwLock::new(Some(self.listener)),
            accept_paused: AtomicBool::new(false),
            spare_fd: Mutex::new(File::open("/dev/null").ok()),
            table: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(LISTENER_KEY + 1),
            settings: Arc::new(Settings {
                limits: self.config.limits,
                request_timeout: self.config.request_timeout,
                idle_timeout: self.config.idle_timeout,
                write_timeout: self.config.write_timeout,
            }),
            refusal: prerender(handler.reject(Rejection::Overloaded)),
            timeout_reply: prerender(handler.reject(Rejection::Timeout)),
            stats: self.stats,
            stopping: self.stopping,
            done: AtomicBool::new(false),
            config: self.config,
            handler,
        });
        let mut workers = Vec::with_capacity(shared.config.workers);
        for i in 0..shared.config.workers {
            let shared = Arc::clone(&shared);
            workers.push(
                thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || worker(&shared))?,
            );
        }
        let drained = sweeper(&shared);
        shared.done.store(true, Ordering::SeqCst);
        rustix::io::write(&wake, &1u64.to_ne_bytes())?;
        if drained {
            for w in workers {
                let _ = w.join();
            }
        }
        Ok(())
    }
}

const ONE_SHOT_IN: EventFlags = EventFlags::IN.union(EventFlags::ONESHOT);
const ONE_SHOT_OUT: EventFlags = EventFlags::OUT.union(EventFlags::ONESHOT);

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(Errno::from_io_error(e), Some(Errno::MFILE | Errno::NFILE))
}

/// A response rendered once, written without blocking.
struct Prerendered {
    status: u16,
    bytes: Vec<u8>,
}

fn prerender(response: Response) -> Prerendered {
    let status = response.status;
    let mut bytes = Vec::new();
    if let response::Body::Full(body) = &response.body {
        response::write_head(
            &mut bytes,
            &response,
            Delimit::Length(body.len()),
            false,
            false,
        );
        bytes.extend_from_slice(body);
    }
    Prerendered { status, bytes }
}

/// A parked connection: its socket and its state.
struct Entry {
    stream: TcpStream,
    conn: Conn,
}

/// What a worker does with a connection it has driven as far as it goes.
enum Next {
    /// Wait for the socket to be ready for what the connection wants.
    Park,
    Close,
}

/// While draining, a new connection gets this long to send its first request.
const DRAIN_FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// What the workers and the sweeper share.
struct Shared {
    epoll: OwnedFd,
    /// `None` once shutdown has begun.
    listener: RwLock<Option<TcpListener>>,
    /// Set when accepting stopped for want of descriptors; the sweeper resumes it.
    accept_paused: AtomicBool,
    /// Held so that, when descriptors run out, one can be freed to accept and refuse a client
    /// instead of leaving it in the backlog.
    spare_fd: Mutex<Option<File>>,
    /// Connections waiting for their socket, by epoll key.
    table: Mutex<HashMap<u64, Entry>>,
    next_key: AtomicU64,
    refusal: Prerendered,
    timeout_reply: Prerendered,
    stats: Arc<Stats>,
    stopping: Arc<AtomicBool>,
    /// Set when the workers are to exit.
    done: AtomicBool,
    config: ServerConfig,
    settings: Arc<Settings>,
    handler: Arc<dyn Handler>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn accept(&self) {
        let listener = self.listener.read().unwrap_or_else(PoisonError::into_inner);
        let Some(listener) = listener.as_ref() else {
            return;
        };
        for _ in 0..ACCEPT_BATCH {
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if out_of_descriptors(&e) => {
                    self.out_of_descriptors(listener);
                    return;
                }
                Err(_) => {}
            }
        }
        let _ = epoll::modify(
            &self.epoll,
            listener,
            EventData::new_u64(LISTENER_KEY),
            ONE_SHOT_IN,
        );
    }

    fn admit(&self, stream: TcpStream, peer: SocketAddr) {
        if self.stats.open.load(Ordering::Relaxed) >= self.config.max_connections as u64 {
            self.refuse(stream, "connection cap reached");
            return;
        }
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            stream,
            conn: Conn::new(Arc::clone(&self.settings), peer, Instant::now()),
        };
        let mut table = self.table();
        let entry = table.entry(key).or_insert(entry);
        if epoll::add(
            &self.epoll,
            &entry.stream,
            EventData::new_u64(key),
            ONE_SHOT_IN,
        )
        .is_ok()
        {
            self.stats.open.fetch_add(1, Ordering::Relaxed);
        } else {
            table.remove(&key);
        }
    }

    /// accept(2) failed for want of descriptors: free the spare, take the waiting client and
    /// refuse it, so it hears why at once; then leave the listener disarmed until the next
    /// sweep.
    fn out_of_descriptors(&self, listener: &TcpListener) {
        log::warn!("out of file descriptors: refusing new connections until some close");
        let mut spare = self.spare_fd.lock().unwrap_or_else(PoisonError::into_inner);
        *spare = None;
        if let Ok((stream, _)) = listener.accept() {
            self.refuse(stream, "out of file descriptors");
        }
        *spare = File::open("/dev/null").ok();
        self.accept_paused.store(true, Ordering::SeqCst);
    }

    fn refuse(&self, stream: TcpStream, why: &str) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        log::warn!("refused a connection: {why}");
        let _ = stream.set_nonblocking(true);
        let _ = (&stream).write(&self.refusal.bytes);
    }

    fn resume_accepting(&self) {
        if self.accept_paused.swap(false, Ordering::SeqCst) {
            if let Some(l) = self
                .listener
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
            {
                let _ = epoll::modify(
                    &self.epoll,
                    l,
                    EventData::new_u64(LISTENER_KEY),
                    ONE_SHOT_IN,
                );
            }
        }
    }

    /// Drives `key`'s connection as far as its socket lets it, then parks or closes it.
    fn on_ready(&self, key: u64, scratch: &mut [u8]) {
        let Some(mut entry) = self.table().remove(&key) else {
            return;
        };
        // The connection's own code must not take a worker down with it; handlers' panics
        // are already answered with 500 in `answer`.
        let next = panic::catch_unwind(AssertUnwindSafe(|| self.drive(&mut entry, scratch)));
        match next {
            Ok(Next::Park) => self.park(key, entry),
            Ok(Next::Close) => self.close(entry),
            Err(_) => {
                log::error!("a connection failed inside the server; it was closed");
                self.close(entry);
            }
        }
    }

    /// Reads, answers and writes until the socket would block or the connection is over.
    fn drive(&self, entry: &mut Entry, scratch: &mut [u8]) -> Next {
        // Whether the last read emptied the socket: then the next read would only say so.
        let mut drained = false;
        loop {
            let now = Instant::now();
            let response = match entry.conn.poll(now) {
                Event::Read if drained => return Next::Park,
                Event::Read => {
                    let room = entry.conn.read_room().clamp(1, scratch.len());
                    match (&entry.stream).read(&mut scratch[..room]) {
                        Ok(0) => entry.conn.receive_eof(),
                        Ok(n) => {
                            drained = n < room;
                            entry.conn.receive(&scratch[..n], now);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Park,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Next::Close,
                    }
                    continue;
                }
                Event::Send(bytes) => {
                    match (&entry.stream).write(bytes) {
                        Ok(n) => entry.conn.sent(n, now),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Park,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Next::Close,
                    }
                    continue;
                }
                Event::Answered(exchange) => {
                    self.handler.completed(&exchange);
                    continue;
                }
                Event::Close => return Next::Close,
                Event::Request(request) => self.answer(&request),
                Event::Refuse(rejection) => self.handler.reject(rejection),
            };
            let draining = self.stopping.load(Ordering::SeqCst);
            entry.conn.respond(response, Instant::now(), draining);
        }
    }

    fn answer(&self, request: &Request<'_>) -> Response {
        panic::catch_unwind(AssertUnwindSafe(|| self.handler.handle(request)))
            .unwrap_or_else(|_| self.handler.reject(Rejection::Internal))
    }

    /// Puts a connection back in the table and re-arms it for what it waits for.
    fn park(&self, key: u64, entry: Entry) {
        let flags = match entry.conn.interest() {
            Interest::Read => ONE_SHOT_IN,
            Interest::Write => ONE_SHOT_OUT,
        };
        let mut table = self.table();
        let entry = table.entry(key).or_insert(entry);
        // Re-armed under the lock, so no worker can take the event before the connection is
        // in the table.
        if epoll::modify(&self.epoll, &entry.stream, EventData::new_u64(key), flags).is_err() {
            if let Some(entry) = table.remove(&key) {
                drop(table);
                self.close(entry);
            }
        }
    }

    /// Closes a connection, recording the response it was sending, if any, as abandoned.
    fn close(&self, entry: Entry) {
        if let Some(exchange) = entry.conn.exchange(Instant::now()) {
            self.handler.completed(&exchange);
        }
        let _ = epoll::delete(&self.epoll, &entry.stream);
        drop(entry);
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A best-effort answer that never blocks, then close.
    fn reply_and_close(&self, entry: Entry, reply: &Prerendered) {
        let written = (&entry.stream).write(&reply.bytes).unwrap_or(0);
        self.handler.completed(&Exchange {
            method: "-",
            path: "-",
            status: reply.status,
            elapsed: Duration::ZERO,
            bytes: written as u64,
            peer: entry.conn.peer(),
        });
        self.close(entry);
    }

    /// Closes connections past their deadline (answering 408 to those mid-request) and, while
    /// draining, every idle one. A new connection that has not sent anything yet is not idle:
    /// its request may be on its way, so while draining it gets a short grace.
    fn sweep(&self, now: Instant, draining: bool) {
        let expired: Vec<(Entry, Expiry)> = {
            let mut table = self.table();
            let keys: Vec<(u64, Expiry)> = table
                .iter()
                .filter_map(|(k, e)| {
                    let (at, expiry) = e.conn.deadline();
                    if at <= now {
                        Some((*k, expiry))
                    } else if draining && e.conn.idle_for_drain(now, DRAIN_FIRST_REQUEST_GRACE) {
                        Some((*k, Expiry::Idle))
                    } else {
                        None
                    }
                })
                .collect();
            keys.iter()
                .filter_map(|(k, expiry)| table.remove(k).map(|e| (e, *expiry)))
                .collect()
        };
        for (entry, expiry) in expired {
            match expiry {
                Expiry::Request => self.reply_and_close(entry, &self.timeout_reply),
                Expiry::Idle | Expiry::Write => self.close(entry),
            }
        }
    }

    fn begin_shutdown(&self) {
        let mut listener = self
            .listener
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = listener.take() {
            // Clients already in the backlog completed their handshake and may have sent a
            // request: take them in and answer them rather than reset them.
            while let Ok((stream, peer)) = l.accept() {
                self.admit(stream, peer);
            }
            let _ = epoll::delete(&self.epoll, &l);
        }
        drop(listener);
        log::info!(
            "shutting down: stopped accepting; draining {} open connection(s)",
            self.stats.open.load(Ordering::SeqCst)
        );
        self.sweep(Instant::now(), true);
    }
}

fn worker(shared: &Shared) {
    let mut events: Vec<epoll::Event> = Vec::with_capacity(1);
    let mut scratch = vec![0u8; READ_CHUNK];
    while !shared.done.load(Ordering::SeqCst) {
        events.clear();
        match epoll::wait(&shared.epoll, spare_capacity(&mut events), None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                log::error!("epoll_wait failed: {e}; worker exits");
                return;
            }
        }
        for event in &events {
            match event.data.u64() {
                WAKE_KEY => {}
                LISTENER_KEY => shared.accept(),
                key => shared.on_ready(key, &mut scratch),
            }
        }
    }
}

/// Enforces deadlines until shutdown has drained; returns whether every connection closed.
fn sweeper(shared: &Shared) -> bool {
    let mut drain_deadline: Option<Instant> = None;
    loop {
        thread::sleep(SWEEP_INTERVAL);
        let now = Instant::now();
        if shared.stopping.load(Ordering::SeqCst) && drain_deadline.is_none() {
            drain_deadline = Some(now + shared.config.drain_timeout);
            shared.begin_shutdown();
        }
        shared.sweep(now, drain_deadline.is_some());
        shared.resume_accepting();
        if let Some(deadline) = drain_deadline {
            let open = shared.stats.open.load(Ordering::SeqCst);
            if open == 0 {
                return true;
            }
            if now >= deadline {
                log::warn!("drain time is up with {open} connection(s) still open");
                return false;
            }
        }
    }
}
