//! The listener and the threads around the connection core ([`super::conn`]): the thin I/O
//! shell.
//!
//! The thread that calls [`Server::run`] accepts connections and deals them out in turn to the
//! event-loop workers ([`super::worker`]), each of which owns its connections from then on: its
//! own epoll, edge-triggered, so a request costs no `epoll_ctl` and no shared lock. A worker
//! answers what needs nothing outside the process at once; a greeting waits for its [`Reply`]
//! without holding a thread; a handler that blocks runs on the bounded pool of
//! [`super::blocking`] threads, which hand the connection back once its response is sent. At
//! the connection cap, a connection is closed to make room: one lingering after its answer,
//! else the longest-idle keep-alive one, else the oldest that has sent nothing; a new client is
//! refused only when every connection is inside a request.
//!
//! [`Reply`]: super::worker::Reply

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use super::conn::{Conn, Settings};
use super::pool::ThreadPool;
use super::shared::{prerender, Client, Inbox, Message, ServerState, Stats};
use super::worker;
use super::{Handler, Rejection};

/// How often the acceptor looks at the shutdown flag and the drain while no client connects.
const TICK: Duration = Duration::from_millis(100);
/// New connections the kernel may hold before they are accepted: std listens with 128, and a
/// burst of new connections deserves more, or the kernel drops SYNs and clients wait a full
/// second to retry (capped by net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 4096;
/// Connections accepted in one go before the acceptor looks at the shutdown flag again.
const ACCEPT_BATCH: usize = 256;
/// How long a blocking thread waits for another job before it ends: a steady stream of
/// listings keeps its threads, and a burst's threads (and their stacks) do not stay for good.
const BLOCKING_THREAD_IDLE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Event-loop threads, each owning its share of the connections.
    pub workers: usize,
    /// Most threads for handlers that block ([`Answer::Blocking`]), started as needed.
    pub blocking_threads: usize,
    pub max_connections: usize,
    /// Time in-flight requests have to finish after shutdown begins.
    pub drain_timeout: Duration,
    /// Time idle connections stay open after shutdown begins, answering what arrives with
    /// `Connection: close`: a request already on its way meets an answer, not a close.
    pub drain_idle_grace: Duration,
    /// What every connection is held to: limits and timeouts.
    pub connection: Settings,
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
        // Calling listen(2) again on a listening socket only changes the backlog.
        rustix::net::listen(&listener, LISTEN_BACKLOG)?;
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
        let inboxes = (0..self.config.workers.max(1))
            .map(|_| Inbox::new().map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let shared = Arc::new(ServerState {
            settings: Arc::new(self.config.connection.clone()),
            drain_idle_grace: self.config.drain_idle_grace,
            refusal: prerender(handler.reject(Rejection::Overloaded)),
            timeout_reply: prerender(handler.reject(Rejection::Timeout)),
            stats: self.stats,
            stopping: self.stopping,
            done: AtomicBool::new(false),
            inboxes,
            blocking: ThreadPool::new(self.config.blocking_threads, BLOCKING_THREAD_IDLE),
            handler,
        });
        let mut threads = Vec::new();
        for i in 0..shared.inboxes.len() {
            let shared = Arc::clone(&shared);
            threads.push(
                thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || worker::run(&shared, i))?,
            );
        }
        let mut acceptor = Acceptor {
            shared: &shared,
            listener: Some(self.listener),
            max_connections: self.config.max_connections as u64,
            next_worker: 0,
            spare_fd: File::open("/dev/null").ok(),
        };
        let drained = acceptor.run(self.config.drain_timeout);
        shared.done.store(true, Ordering::SeqCst);
        shared.blocking.close();
        for inbox in &shared.inboxes {
            inbox.wake();
        }
        if drained {
            for t in threads {
                let _ = t.join();
            }
        }
        Ok(())
    }
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(Errno::from_io_error(e), Some(Errno::MFILE | Errno::NFILE))
}

/// The thread that takes new connections and deals them out to the workers, then drives the
/// shutdown.
struct Acceptor<'a> {
    shared: &'a ServerState,
    /// `None` once shutdown has begun.
    listener: Option<TcpListener>,
    max_connections: u64,
    next_worker: usize,
    /// Held so that, when descriptors run out, one can be freed to accept and refuse a client
    /// instead of leaving it in the backlog.
    spare_fd: Option<File>,
}

impl Acceptor<'_> {
    /// Accepts until shutdown, then waits for the drain; returns whether every connection
    /// closed in time.
    fn run(&mut self, drain_timeout: Duration) -> bool {
        while !self.shared.draining() {
            if self.wait_for_clients() {
                self.accept();
            }
        }
        if let Some(listener) = self.listener.take() {
            // Clients already in the backlog completed their handshake and may have sent a
            // request: take them in and answer them rather than reset them.
            while let Ok((stream, peer)) = listener.accept() {
                self.admit(stream, peer);
            }
        }
        let open = self.shared.stats.open.load(Ordering::SeqCst);
        log::info!("shutting down: stopped accepting; draining {open} open connection(s)");
        // The workers see the flag and close their idle connections at their next tick.
        let deadline = Instant::now() + drain_timeout;
        loop {
            let open = self.shared.stats.open.load(Ordering::SeqCst);
            if open == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                log::warn!("drain time is up with {open} connection(s) still open");
                return false;
            }
            thread::sleep(TICK.min(deadline.saturating_duration_since(Instant::now())));
        }
    }

    /// Waits up to a tick for the listener to have a client.
    fn wait_for_clients(&self) -> bool {
        let Some(listener) = &self.listener else {
            return false;
        };
        let mut fds = [PollFd::new(listener, PollFlags::IN)];
        let tick = Timespec::try_from(TICK).unwrap_or_default();
        matches!(poll(&mut fds, Some(&tick)), Ok(n) if n > 0)
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if out_of_descriptors(&e) => return self.out_of_descriptors(),
                Err(_) => {}
            }
        }
    }

    /// Deals a new connection to the next worker in turn. Over the cap, the workers are asked
    /// in turn, three times round (for a lingering or idle connection, then a silent one, then
    /// a request slower than the minimum rate), to close one for it; the last one refuses it
    /// if none could.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let entry = Client {
            stream,
            conn: Conn::new(Arc::clone(&self.shared.settings), peer, Instant::now()),
        };
        let workers = self.shared.inboxes.len();
        let worker = self.next_worker;
        self.next_worker = (worker + 1) % workers;
        let open = self.shared.stats.open.fetch_add(1, Ordering::Relaxed) + 1;
        let message = match open > self.max_connections {
            true => Message::MakeRoom(entry, 3 * workers - 1),
            false => Message::Adopt(entry, None),
        };
        self.shared.inboxes[worker].send(message);
    }

    /// accept(2) failed for want of descriptors: free the spare, take the waiting client and
    /// refuse it, so it hears why at once; then wait a tick for connections to close.
    fn out_of_descriptors(&mut self) {
        log::warn!("out of file descriptors: refusing new connections until some close");
        self.spare_fd = None;
        if let Some(listener) = &self.listener {
            if let Ok((stream, _)) = listener.accept() {
                // No descriptor to spare for a lingering close: closed at once.
                self.shared.refuse(&stream, "out of file descriptors");
            }
        }
        self.spare_fd = File::open("/dev/null").ok();
        thread::sleep(TICK);
    }
}
