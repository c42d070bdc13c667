//! The threads that run handlers which block (a listing streamed from the store, a cluster
//! view that waits for AWS), so that no event-loop worker ever waits on them. A connection is
//! lent to a blocking thread with its request, answered and sent there (waiting on its socket
//! with the write deadline), then handed back to the worker that owns it. Threads are started
//! when a job finds none idle, up to the server's `blocking_threads`, and then kept; the
//! handlers bound how many jobs they hand out, so none waits for a thread.

use std::collections::VecDeque;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Instant;

use super::conn::Event;
use super::server::{Entry, Shared};
use super::{Job, Rejection};

/// A connection lent with the job that answers its request.
pub(super) struct Task {
    /// The worker that owns the connection and takes it back.
    pub owner: usize,
    pub entry: Entry,
    pub job: Job,
}

pub(super) struct Pool {
    state: Mutex<State>,
    ready: Condvar,
    max_threads: usize,
}

#[derive(Default)]
struct State {
    tasks: VecDeque<Task>,
    closed: bool,
    threads: usize,
    idle: usize,
}

impl Pool {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn new(max_threads: usize) -> Pool {
        Pool {
            state: Mutex::default(),
            ready: Condvar::new(),
            max_threads,
        }
    }

    pub fn submit(&self, shared: &Arc<Shared>, task: Task) {
        let start = {
            let mut state = self.state();
            state.tasks.push_back(task);
            let start = state.idle == 0 && state.threads < self.max_threads;
            state.threads += usize::from(start);
            start
        };
        if !start {
            self.ready.notify_one();
            return;
        }
        let thread_shared = Arc::clone(shared);
        let started = thread::Builder::new()
            .name("blocking".into())
            .spawn(move || thread_shared.blocking.serve(&thread_shared));
        if let Err(e) = started {
            log::error!("cannot start a thread for a blocking handler: {e}");
            let mut state = self.state();
            state.threads -= 1;
            if state.threads == 0 {
                // No thread would ever take them: close their connections.
                let stranded = mem::take(&mut state.tasks);
                drop(state);
                for task in stranded {
                    shared.close(task.entry);
                }
            }
        }
    }

    /// Lets the threads exit once the queue is empty.
    pub fn close(&self) {
        self.state().closed = true;
        self.ready.notify_all();
    }

    /// One blocking thread: runs tasks until the pool is closed.
    pub fn serve(&self, shared: &Shared) {
        while let Some(task) = self.next() {
            run(shared, task);
        }
    }

    fn next(&self) -> Option<Task> {
        let mut state = self.state();
        loop {
            if let Some(task) = state.tasks.pop_front() {
                return Some(task);
            }
            if state.closed {
                return None;
            }
            state.idle += 1;
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.idle -= 1;
        }
    }
}

fn run(shared: &Shared, task: Task) {
    let Task {
        owner,
        mut entry,
        job,
    } = task;
    let response = match entry.conn.poll(Instant::now()) {
        Event::Request(request) => panic::catch_unwind(AssertUnwindSafe(move || job(&request)))
            .unwrap_or_else(|_| shared.handler.reject(Rejection::Internal)),
        // A worker lends a connection only with a request waiting for its answer.
        _ => return shared.close(entry),
    };
    entry
        .conn
        .respond(response, Instant::now(), shared.draining());
    shared.send_blocking(entry, owner);
}
