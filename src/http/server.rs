//! The listener, the poller thread and the worker pool.
//!
//! The poller thread owns every connection that is idle or still sending its request. When a
//! connection's buffer holds a complete request it goes to the worker queue; the worker answers
//! it (and any requests pipelined behind it) and hands the connection back. So a worker is only
//! busy while there is a request to answer, and a burst of connections waits in one fair FIFO
//! queue instead of behind whichever connections reached a thread first.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
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
        let (job_tx, job_rx) = mpsc::channel::<Conn>();
        let (back_tx, back_rx) = mpsc::channel::<Option<Conn>>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut workers = Vec::with_capacity(self.config.workers);
        for i in 0..self.config.workers {
            let worker = Worker {
                jobs: Arc::clone(&job_rx),
                back: back_tx.clone(),
                poller: Arc::clone(&self.poller),
                handler: Arc::clone(&handler),
                stopping: Arc::clone(&self.stopping),
                config: self.config.clone(),
            };
            workers.push(
                thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || worker.run())?,
            );
        }
        drop(back_tx);

        let mut reactor = Reactor {
            refusal: prerender(handler.reject(Rejection::Overloaded)),
            timeout_reply: prerender(handler.reject(Rejection::Timeout)),
            handler,
            listener: Some(self.listener),
            poller: self.poller,
            config: self.config,
            stats: self.stats,
            stopping: self.stopping,
            conns: HashMap::new(),
            next_key: LISTENER_KEY + 1,
            out: 0,
            jobs: job_tx,
            spare_fd: File::open("/dev/null").ok(),
            accept_paused_until: None,
        };
        let drained = reactor.run(&back_rx)?;
        drop(reactor);
        if drained {
            for w in workers {
                let _ = w.join();
            }
        }
        Ok(())
    }
}

fn prerender(response: Response) -> Vec<u8> {
    let mut bytes = Vec::new();
    let framing = response::Framing {
        head_only: false,
        keep_alive: false,
        http10: false,
    };
    // Writing into a Vec cannot fail.
    let _ = response::write(&mut bytes, response, framing);
    bytes
}

/// A client connection and what it has sent that is not yet answered.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    buf: Vec<u8>,
    key: usize,
    deadline: Instant,
}

struct Reactor {
    handler: Arc<dyn Handler>,
    listener: Option<TcpListener>,
    poller: Arc<Poller>,
    config: ServerConfig,
    stats: Arc<Stats>,
    stopping: Arc<AtomicBool>,
    conns: HashMap<usize, Conn>,
    next_key: usize,
    /// Connections currently with workers.
    out: usize,
    jobs: Sender<Conn>,
    refusal: Vec<u8>,
    timeout_reply: Vec<u8>,
    /// Held so that, when descriptors run out, one can be freed to accept and refuse a client
    /// instead of leaving it in the backlog.
    spare_fd: Option<File>,
    accept_paused_until: Option<Instant>,
}

enum Readiness {
    Ready,
    Waiting,
    Closed,
}

impl Reactor {
    /// Returns whether every connection was drained.
    fn run(&mut self, back: &Receiver<Option<Conn>>) -> io::Result<bool> {
        if let Some(l) = &self.listener {
            // SAFETY: the listener is deleted from the poller before it is dropped.
            unsafe { self.poller.add(l, Event::readable(LISTENER_KEY))? };
        }
        let mut events = Events::new();
        let mut next_sweep = Instant::now() + SWEEP_INTERVAL;
        let mut drain_deadline: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let wait = next_sweep.saturating_duration_since(now);
            events.clear();
            match self.poller.wait(&mut events, Some(wait)) {
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
            while let Ok(returned) = back.try_recv() {
                self.out -= 1;
                match returned {
                    Some(conn) => self.on_returned(conn),
                    None => self.closed(),
                }
            }
            if self.stopping.load(Ordering::SeqCst) && drain_deadline.is_none() {
                drain_deadline = Some(Instant::now() + self.config.drain_timeout);
                self.begin_shutdown();
            }
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP_INTERVAL;
                if let Some(until) = self.accept_paused_until {
                    if now >= until {
                        self.accept_paused_until = None;
                        self.rearm_listener();
                    }
                }
            }
            if let Some(deadline) = drain_deadline {
                if self.conns.is_empty() && self.out == 0 {
                    return Ok(true);
                }
                if now >= deadline {
                    log::warn!(
                        "drain time is up with {} connection(s) still busy",
                        self.out + self.conns.len()
                    );
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
                    let open = self.conns.len() + self.out;
                    if open >= self.config.max_connections {
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
                        deadline: Instant::now() + self.config.request_timeout,
                    };
                    // SAFETY: connections are deleted from the poller before they leave
                    // the reactor or are dropped.
                    if unsafe { self.poller.add(&conn.stream, Event::readable(key)) }.is_ok() {
                        self.conns.insert(key, conn);
                        self.stats.open.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_out_of_descriptors(&e) => {
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
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        log::warn!("refused a connection: {why}");
        let _ = stream.set_nonblocking(true);
        let _ = (&stream).write(&self.refusal);
    }

    fn rearm_listener(&self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        if let Some(l) = &self.listener {
            let _ = self.poller.modify(l, Event::readable(LISTENER_KEY));
        }
    }

    fn on_readable(&mut self, key: usize) {
        let Some(mut conn) = self.conns.remove(&key) else {
            return;
        };
        let limit = self.config.limits.head + self.config.limits.body;
        let mut eof = false;
        let was_empty = conn.buf.is_empty();
        while conn.buf.len() < limit {
            let len = conn.buf.len();
            conn.buf.resize(len + READ_CHUNK, 0);
            match (&conn.stream).read(&mut conn.buf[len..]) {
                Ok(0) => {
                    conn.buf.truncate(len);
                    eof = true;
                    break;
                }
                Ok(n) => conn.buf.truncate(len + n),
                Err(e) => {
                    conn.buf.truncate(len);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => {}
                        _ => {
                            eof = true;
                            conn.buf.clear();
                            break;
                        }
                    }
                }
            }
        }
        if was_empty && !conn.buf.is_empty() {
            conn.deadline = Instant::now() + self.config.request_timeout;
        }
        match self.readiness(&conn) {
            Readiness::Ready => self.dispatch(conn),
            Readiness::Waiting if eof => self.close(conn),
            Readiness::Waiting => self.rearm(conn),
            Readiness::Closed => {}
        }
    }

    /// Whether `conn` holds a complete request; refuses it (and returns `Closed`) if it can
    /// never become one.
    fn readiness(&self, conn: &Conn) -> Readiness {
        match frame(&conn.buf, &self.config.limits) {
            Ok(Framing::Complete { .. }) => Readiness::Ready,
            Ok(Framing::Partial) => Readiness::Waiting,
            Err(rejection) => {
                let response = prerender(self.handler.reject(rejection));
                self.reply_and_forget(conn, &response);
                Readiness::Closed
            }
        }
    }

    /// Best-effort answer from the poller thread, which must never block on a client.
    fn reply_and_forget(&self, conn: &Conn, bytes: &[u8]) {
        let _ = self.poller.delete(&conn.stream);
        let written = (&conn.stream).write(bytes).unwrap_or(0);
        let status = std::str::from_utf8(bytes.get(9..12).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        self.handler.completed(&Exchange {
            method: "-",
            path: "-",
            status,
            elapsed: Duration::ZERO,
            bytes: written as u64,
            peer: conn.peer,
        });
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }

    fn dispatch(&mut self, conn: Conn) {
        let _ = self.poller.delete(&conn.stream);
        self.out += 1;
        if let Err(mpsc::SendError(conn)) = self.jobs.send(conn) {
            self.out -= 1;
            drop(conn);
            self.closed();
        }
    }

    fn rearm(&mut self, conn: Conn) {
        if self
            .poller
            .modify(&conn.stream, Event::readable(conn.key))
            .is_ok()
        {
            self.conns.insert(conn.key, conn);
        } else {
            self.close(conn);
        }
    }

    fn on_returned(&mut self, mut conn: Conn) {
        if self.stopping.load(Ordering::SeqCst) && conn.buf.is_empty() {
            self.closed();
            return;
        }
        conn.deadline = Instant::now()
            + if conn.buf.is_empty() {
                self.config.idle_timeout
            } else {
                self.config.request_timeout
            };
        match self.readiness(&conn) {
            Readiness::Ready => self.dispatch(conn),
            Readiness::Closed => {}
            Readiness::Waiting => {
                // SAFETY: as in `accept`.
                if unsafe { self.poller.add(&conn.stream, Event::readable(conn.key)) }.is_ok() {
                    self.conns.insert(conn.key, conn);
                } else {
                    self.closed();
                }
            }
        }
    }

    fn close(&mut self, conn: Conn) {
        let _ = self.poller.delete(&conn.stream);
        drop(conn);
        self.closed();
    }

    fn closed(&self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }

    fn sweep(&mut self, now: Instant) {
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            if let Some(conn) = self.conns.remove(&key) {
                if conn.buf.is_empty() {
                    self.close(conn);
                } else {
                    self.reply_and_forget(&conn, &self.timeout_reply);
                }
            }
        }
    }

    fn begin_shutdown(&mut self) {
        // Clients already in the backlog completed their handshake and may have sent a
        // request: take them in and answer them rather than reset them.
        self.accept();
        if let Some(l) = self.listener.take() {
            let _ = self.poller.delete(&l);
        }
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.buf.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for key in idle {
            if let Some(conn) = self.conns.remove(&key) {
                self.close(conn);
            }
        }
        log::info!(
            "shutting down: stopped accepting; {} request(s) in flight, {} connection(s) mid-request",
            self.out,
            self.conns.len()
        );
    }
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

struct Worker {
    jobs: Arc<Mutex<Receiver<Conn>>>,
    back: Sender<Option<Conn>>,
    poller: Arc<Poller>,
    handler: Arc<dyn Handler>,
    stopping: Arc<AtomicBool>,
    config: ServerConfig,
}

impl Worker {
    fn run(self) {
        loop {
            let job = self
                .jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .recv();
            let Ok(conn) = job else {
                return;
            };
            let returned = self.serve(conn);
            if self.back.send(returned).is_err() {
                return;
            }
            let _ = self.poller.notify();
        }
    }

    /// Answers the complete requests at the front of `conn`'s buffer; gives the connection
    /// back if it stays open.
    fn serve(&self, mut conn: Conn) -> Option<Conn> {
        for _ in 0..MAX_REQUESTS_PER_TURN {
            let (head, body) = match frame(&conn.buf, &self.config.limits) {
                Ok(Framing::Complete { head, body }) => (head, body),
                Ok(Framing::Partial) => return Some(conn),
                Err(rejection) => {
                    self.answer_rejection(&conn, rejection);
                    return None;
                }
            };
            let keep = self.answer(&conn, head)?;
            conn.buf.drain(..head + body);
            if !keep {
                return None;
            }
        }
        Some(conn)
    }

    /// Answers the request whose head is `conn.buf[..head]`. `None` when the connection broke;
    /// otherwise whether it stays open.
    fn answer(&self, conn: &Conn, head: usize) -> Option<bool> {
        let mut writer = TimedWriter {
            stream: &conn.stream,
            timeout: self.config.write_timeout,
        };
        with_request(
            &conn.buf[..head],
            conn.peer,
            Instant::now(),
            |parsed| match parsed {
                Err(rejection) => {
                    self.answer_rejection(conn, rejection);
                    None
                }
                Ok(request) => {
                    let response =
                        panic::catch_unwind(AssertUnwindSafe(|| self.handler.handle(request)))
                            .unwrap_or_else(|_| self.handler.reject(Rejection::Internal));
                    let framing = response::Framing {
                        head_only: request.method == "HEAD",
                        keep_alive: request.wants_keep_alive()
                            && !self.stopping.load(Ordering::SeqCst),
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
                }
            },
        )
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
}
