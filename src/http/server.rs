//! The listener and the worker threads that share one epoll instance.
//!
//! Every connection that is idle or still sending its request waits in a table, registered
//! with epoll in one-shot mode. Each worker waits on epoll for one ready connection at a time,
//! reads it, answers the complete requests it holds (running blocking handlers), and re-arms
//! it. The kernel's ready list is the queue: connections are served in the order they became
//! ready, no thread is tied to a connection between requests, and there is no hand-off between
//! a poller thread and the workers. A sweeper (the thread that called [`Server::run`]) enforces
//! deadlines and drives shutdown.

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

use super::request::{frame, with_request, Framing, Limits};
use super::response::{self, Response};
use super::socket::TimedWriter;
use super::{Exchange, Handler, Rejection};

const LISTENER_KEY: u64 = 0;
const WAKE_KEY: u64 = u64::MAX;
/// How often deadlines are checked.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
const READ_CHUNK: usize = 8 * 1024;
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
    /// Time a client has to accept more of a response before the connection is dropped.
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

/// A response rendered once, written without blocking.
struct Prerendered {
    status: u16,
    bytes: Vec<u8>,
}

fn prerender(response: Response) -> Prerendered {
    let status = response.status;
    let mut bytes = Vec::new();
    let framing = response::Framing {
        head_only: false,
        keep_alive: false,
        http10: false,
    };
    // Writing into a Vec cannot fail.
    let _ = response::write(&mut bytes, response, framing);
    Prerendered { status, bytes }
}

/// A client connection and what it has sent that is not yet answered.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    buf: Vec<u8>,
    key: u64,
    deadline: Instant,
    accepted: Instant,
    /// Whether a response was sent on it: only then is an empty buffer "idle" rather than
    /// "request still on its way".
    answered: bool,
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
    /// Connections waiting for bytes, by epoll key.
    table: Mutex<HashMap<u64, Conn>>,
    next_key: AtomicU64,
    refusal: Prerendered,
    timeout_reply: Prerendered,
    stats: Arc<Stats>,
    stopping: Arc<AtomicBool>,
    /// Set when the workers are to exit.
    done: AtomicBool,
    config: ServerConfig,
    handler: Arc<dyn Handler>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, HashMap<u64, Conn>> {
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
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
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
        let now = Instant::now();
        let conn = Conn {
            stream,
            peer,
            buf: Vec::new(),
            key,
            deadline: now + self.config.request_timeout,
            accepted: now,
            answered: false,
        };
        let mut table = self.table();
        let conn = table.entry(key).or_insert(conn);
        if epoll::add(
            &self.epoll,
            &conn.stream,
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

    /// Reads what `key`'s connection has sent and answers every complete request in it.
    fn on_readable(&self, key: u64) {
        let Some(mut conn) = self.table().remove(&key) else {
            return;
        };
        let limit = self.config.limits.head + self.config.limits.body;
        let was_empty = conn.buf.is_empty();
        let mut eof = false;
        let mut chunk = [0u8; READ_CHUNK];
        while conn.buf.len() < limit {
            match (&conn.stream).read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    conn.buf.extend_from_slice(&chunk[..n]);
                    // A short read drained the socket: skip the read that would only say
                    // so. Bytes arriving later re-trigger the connection once it is re-armed.
                    if n < chunk.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(conn);
                    return;
                }
            }
        }
        if was_empty && !conn.buf.is_empty() {
            conn.deadline = Instant::now() + self.config.request_timeout;
        }
        let Some(conn) = self.serve(conn) else {
            return;
        };
        if eof || (self.stopping.load(Ordering::SeqCst) && conn.buf.is_empty() && conn.answered) {
            self.close(conn);
        } else {
            self.park(conn);
        }
    }

    /// Answers the complete requests at the front of `conn`'s buffer; gives the connection
    /// back if it stays open.
    fn serve(&self, mut conn: Conn) -> Option<Conn> {
        loop {
            let (head, body) = match frame(&conn.buf, &self.config.limits) {
                Ok(Framing::Complete { head, body }) => (head, body),
                Ok(Framing::Partial) => return Some(conn),
                Err(rejection) => {
                    self.answer_rejection(&conn, rejection);
                    self.close(conn);
                    return None;
                }
            };
            if self.answer(&conn, head) != Some(true) {
                self.close(conn);
                return None;
            }
            conn.answered = true;
            conn.buf.drain(..head + body);
        }
    }

    /// Answers the request whose head is `conn.buf[..head]`. `None` when the connection
    /// broke; otherwise whether it stays open.
    fn answer(&self, conn: &Conn, head: usize) -> Option<bool> {
        let mut writer = TimedWriter {
            stream: &conn.stream,
            timeout: self.config.write_timeout,
        };
        with_request(&conn.buf[..head], conn.peer, Instant::now(), |parsed| {
            let request = match parsed {
                Ok(request) => request,
                Err(rejection) => {
                    self.answer_rejection(conn, rejection);
                    return None;
                }
            };
            let response = panic::catch_unwind(AssertUnwindSafe(|| self.handler.handle(request)))
                .unwrap_or_else(|_| self.handler.reject(Rejection::Internal));
            let framing = response::Framing {
                head_only: request.method == "HEAD",
                keep_alive: request.wants_keep_alive() && !self.stopping.load(Ordering::SeqCst),
                http10: request.minor_version == 0,
            };
            let keep = response::keeps_alive(&response, framing);
            let status = response.status;
            let written = response::write(&mut writer, response, framing);
            self.handler.completed(&Exchange {
                method: request.method,
                path: request.path,
                status,
                elapsed: request.received.elapsed(),
                bytes: *written.as_ref().unwrap_or(&0),
                peer: conn.peer,
            });
            written.ok().map(|_| keep)
        })
    }

    fn answer_rejection(&self, conn: &Conn, rejection: Rejection) {
        let started = Instant::now();
        let mut response = self.handler.reject(rejection);
        response.close = true;
        let status = response.status;
        let mut writer = TimedWriter {
            stream: &conn.stream,
            timeout: self.config.write_timeout,
        };
        let framing = response::Framing {
            head_only: false,
            keep_alive: false,
            http10: false,
        };
        let written = response::write(&mut writer, response, framing).unwrap_or(0);
        self.handler.completed(&Exchange {
            method: "-",
            path: "-",
            status,
            elapsed: started.elapsed(),
            bytes: written,
            peer: conn.peer,
        });
    }

    /// Puts a connection back in the table and re-arms it.
    fn park(&self, mut conn: Conn) {
        conn.deadline = Instant::now()
            + if conn.buf.is_empty() {
                self.config.idle_timeout
            } else {
                self.config.request_timeout
            };
        let key = conn.key;
        let mut table = self.table();
        let conn = table.entry(key).or_insert(conn);
        // Re-armed under the lock, so no worker can take the event before the connection is
        // in the table.
        let armed = epoll::modify(
            &self.epoll,
            &conn.stream,
            EventData::new_u64(key),
            ONE_SHOT_IN,
        );
        if armed.is_err() {
            if let Some(conn) = table.remove(&key) {
                drop(table);
                self.close(conn);
            }
        }
    }

    /// A best-effort answer that never blocks, then close.
    fn reply_and_close(&self, conn: Conn, reply: &Prerendered) {
        let written = (&conn.stream).write(&reply.bytes).unwrap_or(0);
        self.handler.completed(&Exchange {
            method: "-",
            path: "-",
            status: reply.status,
            elapsed: Duration::ZERO,
            bytes: written as u64,
            peer: conn.peer,
        });
        self.close(conn);
    }

    fn close(&self, conn: Conn) {
        let _ = epoll::delete(&self.epoll, &conn.stream);
        drop(conn);
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Closes connections past their deadline (answering 408 to those mid-request) and, while
    /// draining, every idle one. A new connection that has not sent anything yet is not idle:
    /// its request may be on its way, so while draining it gets a short grace.
    fn sweep(&self, now: Instant, draining: bool) {
        let drop_now = |c: &Conn| {
            c.deadline <= now
                || (draining
                    && c.buf.is_empty()
                    && (c.answered || now - c.accepted >= DRAIN_FIRST_REQUEST_GRACE))
        };
        let expired: Vec<Conn> = {
            let mut table = self.table();
            let keys: Vec<u64> = table
                .iter()
                .filter(|(_, c)| drop_now(c))
                .map(|(k, _)| *k)
                .collect();
            keys.iter().filter_map(|k| table.remove(k)).collect()
        };
        for conn in expired {
            if conn.buf.is_empty() {
                self.close(conn);
            } else {
                self.reply_and_close(conn, &self.timeout_reply);
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
                key => shared.on_readable(key),
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
