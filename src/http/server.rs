//! The listener, the poller thread and the worker pool.
//!
//! Connections that are idle or still sending their request wait in a table, registered with a
//! readiness poller. The poller thread reads what arrives; when a connection's buffer holds a
//! complete request, the connection goes to the worker queue. A worker answers it (and any
//! requests pipelined behind it) and puts the connection back in the table itself. So a worker
//! is only busy while there is a request to answer, and a burst of connections waits in one
//! fair FIFO queue instead of behind whichever connections reached a thread first.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use polling::{Event, Events, Poller};

use super::request::{frame, with_request, Framing, Limits};
use super::response::{self, Response};
use super::socket::TimedWriter;
use super::{Exchange, Handler, Rejection};

const LISTENER_KEY: usize = 0;
/// Requests one worker answers on a connection before letting others go first.
const MAX_REQUESTS_PER_TURN: usize = 32;
/// How often deadlines are checked.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
const READ_CHUNK: usize = 8 * 1024;

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
    poller: Arc<Poller>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.poller.notify();
    }
}

pub struct Server {
    listener: TcpListener,
    poller: Arc<Poller>,
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
        // SAFETY: the descriptor belongs to `listener` and stays open across the call.
        unsafe { libc::listen(listener.as_raw_fd(), 4096) };
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            poller: Arc::new(Poller::new()?),
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
            poller: Arc::clone(&self.poller),
        }
    }

    /// Serves until shut down and drained (or the drain time is up).
    pub fn run(self, handler: Arc<dyn Handler>) -> io::Result<()> {
        let shared = Arc::new(Shared {
            poller: self.poller,
            table: Mutex::new(HashMap::new()),
            queue: Queue::default(),
            stats: self.stats,
            stopping: self.stopping,
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
        let mut reactor = Reactor {
            refusal: prerender(shared.handler.reject(Rejection::Overloaded)),
            timeout_reply: prerender(shared.handler.reject(Rejection::Timeout)),
            shared: Arc::clone(&shared),
            listener: Some(self.listener),
            next_key: LISTENER_KEY + 1,
            spare_fd: File::open("/dev/null").ok(),
            accept_paused_until: None,
        };
        let drained = reactor.run();
        shared.queue.close();
        if matches!(drained, Ok(true)) {
            for w in workers {
                let _ = w.join();
            }
        }
        drained.map(|_| ())
    }
}

/// A response rendered once, written by the poller thread without blocking.
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
    key: usize,
    deadline: Instant,
}

/// What the poller thread and the workers share.
struct Shared {
    poller: Arc<Poller>,
    /// Connections waiting for bytes, by poller key.
    table: Mutex<HashMap<usize, Conn>>,
    queue: Queue,
    stats: Arc<Stats>,
    stopping: Arc<AtomicBool>,
    config: ServerConfig,
    handler: Arc<dyn Handler>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, HashMap<usize, Conn>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts a connection whose buffer holds no complete request back in the table and re-arms
    /// its readiness (it stays registered with the poller while it is away).
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
        // Re-armed under the lock, so the poller thread cannot see the event before the
        // connection is in the table.
        if self.poller.modify(&conn.stream, Event::readable(key)).is_err() {
            if let Some(conn) = table.remove(&key) {
                drop(table);
                self.close(conn);
            }
        }
    }

    /// Where a connection goes next: the queue, the table, or (refused) nowhere.
    fn route(&self, conn: Conn, eof: bool) {
        match frame(&conn.buf, &self.config.limits) {
            Ok(Framing::Complete { .. }) => self.queue.push(conn),
            Ok(Framing::Partial) if eof => self.close(conn),
            Ok(Framing::Partial) => self.park(conn),
            Err(rejection) => {
                let reply = prerender(self.handler.reject(rejection));
                self.reply_and_close(conn, &reply);
            }
        }
    }

    /// A best-effort answer that never blocks (for the poller thread), then close.
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
        let _ = self.poller.delete(&conn.stream);
        drop(conn);
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The FIFO of connections with a complete request, taken by the workers.
#[derive(Default)]
struct Queue {
    state: Mutex<(VecDeque<Conn>, bool)>,
    ready: Condvar,
}

impl Queue {
    fn push(&self, conn: Conn) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .push_back(conn);
        self.ready.notify_one();
    }

    /// The next connection, or `None` once the queue is closed and empty.
    fn pop(&self) -> Option<Conn> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(conn) = state.0.pop_front() {
                return Some(conn);
            }
            if state.1 {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.ready.notify_all();
    }
}

struct Reactor {
    shared: Arc<Shared>,
    listener: Option<TcpListener>,
    next_key: usize,
    refusal: Prerendered,
    timeout_reply: Prerendered,
    /// Held so that, when descriptors run out, one can be freed to accept and refuse a client
    /// instead of leaving it in the backlog.
    spare_fd: Option<File>,
    accept_paused_until: Option<Instant>,
}

impl Reactor {
    /// Returns whether every connection was drained.
    fn run(&mut self) -> io::Result<bool> {
        let poller = Arc::clone(&self.shared.poller);
        if let Some(l) = &self.listener {
            // SAFETY: the listener is deleted from the poller before it is dropped.
            unsafe { poller.add(l, Event::readable(LISTENER_KEY))? };
        }
        let mut events = Events::new();
        let mut next_sweep = Instant::now() + SWEEP_INTERVAL;
        let mut drain_deadline: Option<Instant> = None;
        loop {
            let wait = next_sweep.saturating_duration_since(Instant::now());
            events.clear();
            match poller.wait(&mut events, Some(wait)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.key == LISTENER_KEY {
                    self.accept();
                } else {
                    self.on_readable(ev.key);
                }
            }
            if self.shared.stopping.load(Ordering::SeqCst) && drain_deadline.is_none() {
                drain_deadline = Some(Instant::now() + self.shared.config.drain_timeout);
                self.begin_shutdown();
            }
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep(now, drain_deadline.is_some());
                next_sweep = now + SWEEP_INTERVAL;
                if self.accept_paused_until.is_some_and(|until| now >= until) {
                    self.accept_paused_until = None;
                    self.rearm_listener();
                }
            }
            if let Some(deadline) = drain_deadline {
                let open = self.shared.stats.open.load(Ordering::SeqCst);
                if open == 0 {
                    return Ok(true);
                }
                if now >= deadline {
                    log::warn!("drain time is up with {open} connection(s) still open");
                    return Ok(false);
                }
            }
        }
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    let open = self.shared.stats.open.load(Ordering::Relaxed);
                    if open >= self.shared.config.max_connections as u64 {
                        self.refuse(stream, "connection cap reached");
                        continue;
                    }
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let key = self.next_key;
                    self.next_key += 1;
                    let conn = Conn {
                        stream,
                        peer,
                        buf: Vec::new(),
                        key,
                        deadline: Instant::now() + self.shared.config.request_timeout,
                    };
                    let mut table = self.shared.table();
                    let conn = table.entry(key).or_insert(conn);
                    // SAFETY: a connection is deleted from the poller before it is dropped
                    // (`Shared::close`).
                    if unsafe { self.shared.poller.add(&conn.stream, Event::readable(key)) }
                        .is_ok()
                    {
                        self.shared.stats.open.fetch_add(1, Ordering::Relaxed);
                    } else {
                        table.remove(&key);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    self.out_of_descriptors();
                    return;
                }
                Err(_) => {}
            }
        }
        self.rearm_listener();
    }

    /// accept(2) failed for want of descriptors: free the spare, take the waiting client and
    /// refuse it, so it hears why at once; then pause accepting briefly.
    fn out_of_descriptors(&mut self) {
        log::warn!("out of file descriptors: refusing new connections until some close");
        self.spare_fd = None;
        if let Some(listener) = &self.listener {
            if let Ok((stream, _)) = listener.accept() {
                self.refuse(stream, "out of file descriptors");
            }
        }
        self.spare_fd = File::open("/dev/null").ok();
        self.accept_paused_until = Some(Instant::now() + SWEEP_INTERVAL);
    }

    fn refuse(&self, stream: TcpStream, why: &str) {
        self.shared.stats.refused.fetch_add(1, Ordering::Relaxed);
        log::warn!("refused a connection: {why}");
        let _ = stream.set_nonblocking(true);
        let _ = (&stream).write(&self.refusal.bytes);
    }

    fn rearm_listener(&self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        if let Some(l) = &self.listener {
            let _ = self.shared.poller.modify(l, Event::readable(LISTENER_KEY));
        }
    }

    fn on_readable(&mut self, key: usize) {
        let Some(mut conn) = self.shared.table().remove(&key) else {
            return;
        };
        let limit = self.shared.config.limits.head + self.shared.config.limits.body;
        let was_empty = conn.buf.is_empty();
        let mut eof = false;
        let mut chunk = [0u8; READ_CHUNK];
        while conn.buf.len() < limit {
            match (&conn.stream).read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.shared.close(conn);
                    return;
                }
            }
        }
        if was_empty && !conn.buf.is_empty() {
            conn.deadline = Instant::now() + self.shared.config.request_timeout;
        }
        self.shared.route(conn, eof);
    }

    /// Closes connections past their deadline (answering 408 to those mid-request) and, while
    /// draining, every idle one.
    fn sweep(&mut self, now: Instant, draining: bool) {
        let expired: Vec<Conn> = {
            let mut table = self.shared.table();
            let keys: Vec<usize> = table
                .iter()
                .filter(|(_, c)| c.deadline <= now || (draining && c.buf.is_empty()))
                .map(|(k, _)| *k)
                .collect();
            keys.iter().filter_map(|k| table.remove(k)).collect()
        };
        for conn in expired {
            if conn.buf.is_empty() {
                self.shared.close(conn);
            } else {
                self.shared.reply_and_close(conn, &self.timeout_reply);
            }
        }
    }

    fn begin_shutdown(&mut self) {
        // Clients already in the backlog completed their handshake and may have sent a
        // request: take them in and answer them rather than reset them.
        self.accept();
        if let Some(l) = self.listener.take() {
            let _ = self.shared.poller.delete(&l);
        }
        log::info!(
            "shutting down: stopped accepting; draining {} open connection(s)",
            self.shared.stats.open.load(Ordering::SeqCst)
        );
        self.sweep(Instant::now(), true);
    }
}

fn worker(shared: &Shared) {
    while let Some(conn) = shared.queue.pop() {
        if let Some(conn) = serve(shared, conn) {
            if shared.stopping.load(Ordering::SeqCst) && conn.buf.is_empty() {
                shared.close(conn);
            } else {
                shared.route(conn, false);
            }
        }
    }
}

/// Answers the complete requests at the front of `conn`'s buffer; gives the connection back if
/// it stays open.
fn serve(shared: &Shared, mut conn: Conn) -> Option<Conn> {
    for _ in 0..MAX_REQUESTS_PER_TURN {
        let (head, body) = match frame(&conn.buf, &shared.config.limits) {
            Ok(Framing::Complete { head, body }) => (head, body),
            Ok(Framing::Partial) => return Some(conn),
            Err(rejection) => {
                answer_rejection(shared, &conn, rejection);
                shared.close(conn);
                return None;
            }
        };
        match answer(shared, &conn, head) {
            Some(true) => {}
            Some(false) | None => {
                shared.close(conn);
                return None;
            }
        }
        conn.buf.drain(..head + body);
    }
    Some(conn)
}

/// Answers the request whose head is `conn.buf[..head]`. `None` when the connection broke;
/// otherwise whether it stays open.
fn answer(shared: &Shared, conn: &Conn, head: usize) -> Option<bool> {
    let mut writer = TimedWriter {
        stream: &conn.stream,
        timeout: shared.config.write_timeout,
    };
    with_request(
        &conn.buf[..head],
        conn.peer,
        Instant::now(),
        |parsed| match parsed {
            Err(rejection) => {
                answer_rejection(shared, conn, rejection);
                None
            }
            Ok(request) => {
                let response =
                    panic::catch_unwind(AssertUnwindSafe(|| shared.handler.handle(request)))
                        .unwrap_or_else(|_| shared.handler.reject(Rejection::Internal));
                let framing = response::Framing {
                    head_only: request.method == "HEAD",
                    keep_alive: request.wants_keep_alive()
                        && !shared.stopping.load(Ordering::SeqCst),
                    http10: request.minor_version == 0,
                };
                let keep = response::keeps_alive(&response, framing);
                let status = response.status;
                let written = response::write(&mut writer, response, framing);
                shared.handler.completed(&Exchange {
                    method: request.method,
                    path: request.path,
                    status,
                    elapsed: request.received.elapsed(),
                    bytes: *written.as_ref().unwrap_or(&0),
                    peer: conn.peer,
                });
                written.ok().map(|_| keep)
            }
        },
    )
}

fn answer_rejection(shared: &Shared, conn: &Conn, rejection: Rejection) {
    let started = Instant::now();
    let mut response = shared.handler.reject(rejection);
    response.close = true;
    let status = response.status;
    let mut writer = TimedWriter {
        stream: &conn.stream,
        timeout: shared.config.write_timeout,
    };
    let framing = response::Framing {
        head_only: false,
        keep_alive: false,
        http10: false,
    };
    let written = response::write(&mut writer, response, framing).unwrap_or(0);
    shared.handler.completed(&Exchange {
        method: "-",
        path: "-",
        status,
        elapsed: started.elapsed(),
        bytes: written,
        peer: conn.peer,
    });
}
