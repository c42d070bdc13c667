//! The ground the server's threads stand on, kept below the acceptor ([`super::server`]), the
//! workers ([`super::worker`]) and the blocking threads ([`super::blocking`]) so that none of
//! them imports another's: what they pass between them (connection entries, the workers'
//! inboxes and their messages, the blocking pool's tasks) and the few acts any of them may do
//! to a connection (close it, answer it once without blocking, refuse a new one).

use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::Level;
use rustix::event::{eventfd, EventfdFlags};

use super::conn::{Conn, Pending, Settings};
use super::pool::ThreadPool;
use super::response::{self, Delimit, Response};
use super::{Exchange, Handler, Job, Reply, Status};
use crate::logging::Repeated;
use crate::sync;

/// Live numbers about connections, shared with whoever renders metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub open: AtomicU64,
    pub refused: AtomicU64,
    /// Idle keep-alive connections closed to make room for new clients at the cap.
    pub reclaimed: AtomicU64,
}

/// A response rendered once, written without blocking.
pub(super) struct Prerendered {
    status: Status,
    bytes: Vec<u8>,
}

pub(super) fn prerender(response: Response) -> Prerendered {
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

/// A connection: its socket and its state.
pub(super) struct Client {
    pub stream: TcpStream,
    pub conn: Conn,
}

/// What every thread of the server shares.
pub(super) struct ServerState {
    pub settings: Arc<Settings>,
    /// How long idle connections stay open once the drain begins, answering what arrives.
    pub drain_idle_grace: Duration,
    pub refusal: Prerendered,
    pub timeout_reply: Prerendered,
    pub stats: Arc<Stats>,
    /// Set when shutdown begins: answer what is under way, take nothing new.
    pub stopping: Arc<AtomicBool>,
    /// Set when the threads are to exit.
    pub done: AtomicBool,
    /// One per worker, by worker index.
    pub inboxes: Vec<Arc<Inbox>>,
    pub blocking: ThreadPool<Work>,
    pub handler: Arc<dyn Handler>,
}

impl ServerState {
    pub fn draining(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Closes a connection, recording the response it was sending, if any, as abandoned.
    /// Closing the socket also takes it out of its worker's epoll.
    pub fn close(&self, entry: Client) {
        if let Some(exchange) = entry.conn.exchange(Instant::now()) {
            self.handler.completed(&exchange);
        }
        drop(entry);
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A best-effort answer that never blocks; the caller closes the connection.
    pub fn reply(&self, entry: &Client, reply: &Prerendered) {
        let written = (&entry.stream).write(&reply.bytes).unwrap_or(0);
        self.handler.completed(&Exchange {
            method: "-",
            path: "-",
            status: reply.status,
            elapsed: Duration::ZERO,
            bytes: written as u64,
            peer: entry.conn.peer(),
            trace_id: None,
        });
    }

    /// Turns a new client away with a 503, without blocking; the caller closes the connection.
    pub fn refuse(&self, stream: &TcpStream, why: &str) {
        // A client that reconnects at once would write a line per try: the first goes out, the
        // rest are summed up once per interval. The metric counts each.
        static REFUSED: Repeated =
            Repeated::new(module_path!(), Level::Warn, "refused a connection");
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        if REFUSED.admit() {
            log::warn!("refused a connection: {why}");
        }
        let _ = stream.set_nonblocking(true);
        let _ = (&*stream).write(&self.refusal.bytes);
    }
}

/// What other threads send a worker.
pub(super) enum Message {
    /// A connection to own: new from the acceptor, or back from a blocking thread (with the
    /// pipelined request it found after its response, if any).
    Adopt(Client, Option<Pending>),
    /// A new connection over the cap: close a connection that can give way to make room for
    /// it, or pass it on to the next worker (this many more may be asked), or refuse it.
    MakeRoom(Client, usize),
    /// The response for the connection under this key, `None` if its
    /// [`Reply`](super::worker::Reply) was dropped unsent.
    Done(u64, Option<Response>),
}

/// A worker's mailbox: messages, and an eventfd in the worker's epoll that wakes it.
pub(super) struct Inbox {
    messages: Mutex<Vec<Message>>,
    /// The eventfd, in the owning worker's epoll.
    pub wake: OwnedFd,
}

impl Inbox {
    pub fn new() -> io::Result<Inbox> {
        Ok(Inbox {
            messages: Mutex::new(Vec::new()),
            wake: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
        })
    }

    pub fn messages(&self) -> MutexGuard<'_, Vec<Message>> {
        sync::lock(&self.messages)
    }

    /// Only the first message after the worker emptied its inbox wakes it: one wake carries
    /// every reply of a batch.
    pub fn send(&self, message: Message) {
        let first = {
            let mut messages = self.messages();
            messages.push(message);
            messages.len() == 1
        };
        if first {
            self.wake();
        }
    }

    pub fn wake(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }
}

/// What a blocking thread is given to do.
pub(super) enum Work {
    /// Run the job; its response goes back through the reply, to the worker that owns the
    /// connection, which sends it.
    Answer(Job, Reply),
    /// Run the job and send its (streamed) response on the lent connection.
    Stream(Box<Task>),
}

/// A connection lent with the job that answers its request.
pub(super) struct Task {
    /// The worker that owns the connection and takes it back.
    pub owner: usize,
    pub entry: Client,
    /// The request the job answers.
    pub pending: Pending,
    pub job: Job,
}
