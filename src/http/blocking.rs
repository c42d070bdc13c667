//! The threads that run handlers which block (a cluster view that waits for AWS, a listing
//! read from the store), so that no event-loop worker ever waits on them. A job's response
//! goes back to the worker that owns the connection through a [`Reply`](super::Reply), as a
//! greeting's does; only a response streamed from something that blocks takes the connection
//! with it: it is lent to the blocking thread, sent there (waiting on its socket with the
//! write deadline), then handed back, with the next request if the client had already sent
//! one. Threads are started when a job finds none idle, up to the server's
//! `blocking_threads`, and end after a while without work; the handlers bound how many jobs
//! they hand out, so none waits for a thread.

use std::io::{self, Write};
use std::net::TcpStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use super::conn::{Expiry, Pending};
use super::drive::{self, Answer, Application, Budget, Stop, Transport};
use super::shared::{Client, Message, ServerState, Task, Work};
use super::{Exchange, Job, Rejection, Request, Response};

/// Hands `work` to a blocking thread.
pub(super) fn submit(shared: &Arc<ServerState>, work: Work) {
    let thread_shared = Arc::clone(shared);
    let start = move || {
        thread::Builder::new()
            .name("blocking".into())
            .spawn(move || {
                let shared = &*thread_shared;
                shared.blocking.serve(|work| run(shared, work));
            })
            .map(drop)
            .inspect_err(|e| log::error!("cannot start a thread for a blocking handler: {e}"))
    };
    // No thread would ever take them: a reply dropped unsent answers 500; a lent connection
    // is closed.
    for work in shared.blocking.submit(work, start) {
        if let Work::Stream(task) = work {
            shared.close(task.entry);
        }
    }
}

fn run(shared: &ServerState, work: Work) {
    match work {
        Work::Answer(job, reply) => reply.send(answer(shared, job)),
        Work::Stream(task) => stream(shared, *task),
    }
}

/// The job's response; a panic in it is answered as the event loops answer one.
fn answer(shared: &ServerState, job: Job) -> Response {
    panic::catch_unwind(AssertUnwindSafe(job))
        .unwrap_or_else(|_| shared.handler.reject(Rejection::Internal))
}

/// Answers a lent connection's request and sends the response; then the connection goes back
/// to the worker that owns it, or closes.
fn stream(shared: &ServerState, task: Task) {
    let Task {
        owner,
        mut entry,
        pending,
        job,
    } = task;
    let response = answer(shared, job);
    entry
        .conn
        .respond(pending, response, Instant::now(), shared.draining());
    // The connection's own code must not take the thread down, nor leave the connection open
    // and counted.
    match panic::catch_unwind(AssertUnwindSafe(|| send(shared, &mut entry))) {
        Ok(AfterSending::GiveBack(next)) => {
            let inbox = &shared.inboxes[owner % shared.inboxes.len()];
            inbox.send(Message::Adopt(entry, next));
        }
        Ok(AfterSending::Close) | Err(_) => shared.close(entry),
    }
}

/// What becomes of a lent connection once its response is over.
enum AfterSending {
    /// Back to its worker, with the next request if the client had already sent it.
    GiveBack(Option<Pending>),
    Close,
}

/// Sends the response under way, waiting on the socket while the client is slow to take it,
/// until the connection's write deadline.
fn send(shared: &ServerState, entry: &mut Client) -> AfterSending {
    loop {
        let mut socket = LentSocket(&entry.stream);
        // Alone on this thread: no other connection waits for a turn.
        let sender = &mut LentApplication { shared };
        match drive::drive(&mut entry.conn, &mut socket, sender, Budget::UNLIMITED) {
            // Reading is the worker's: a connection that wants input goes back to it.
            Stop::Yield => return AfterSending::GiveBack(None),
            Stop::Park => match entry.conn.deadline() {
                (deadline, Expiry::Write) => {
                    if !writable_before(&entry.stream, deadline) {
                        return AfterSending::Close;
                    }
                }
                _ => return AfterSending::GiveBack(None),
            },
            Stop::Held(next, ()) => return AfterSending::GiveBack(Some(next)),
            Stop::Close => return AfterSending::Close,
        }
    }
}

/// The application on a blocking thread: it records the response it sends, and holds back a
/// pipelined request for the worker, which reads and answers everything else.
struct LentApplication<'a> {
    shared: &'a ServerState,
}

impl Application for LentApplication<'_> {
    type Wait = ();

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn draining(&self) -> bool {
        self.shared.draining()
    }

    fn answer(&mut self, _: &Request<'_>) -> Answer<()> {
        Answer::Later(())
    }

    fn reject(&mut self, rejection: Rejection) -> Response {
        self.shared.handler.reject(rejection)
    }

    fn completed(&mut self, exchange: &Exchange<'_>) {
        self.shared.handler.completed(exchange);
    }
}

/// A lent socket: reading is the worker's, once the connection is back.
struct LentSocket<'a>(&'a TcpStream);

impl Transport for LentSocket<'_> {
    fn read(&mut self, _: usize) -> io::Result<&[u8]> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        (&mut self.0).write(bytes)
    }
}

/// Waits until `stream` can take more bytes; `false` if `deadline` came first.
fn writable_before(stream: &TcpStream, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let timeout = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(stream, PollFlags::OUT)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(Errno::INTR) => {}
            Err(_) => return false,
        }
    }
}
