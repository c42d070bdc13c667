//! The threads that run handlers which block (a listing streamed from the store, a cluster
//! view that waits for AWS), so that no event-loop worker ever waits on them. A connection is
//! lent to a blocking thread with its request, answered and sent there (waiting on its socket
//! with the write deadline), then handed back to the worker that owns it. The handlers bound
//! how many jobs they hand out; jobs beyond the threads wait their turn here.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
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

#[derive(Default)]
pub(super) struct Pool {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    tasks: VecDeque<Task>,
    closed: bool,
}

impl Pool {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn submit(&self, task: Task) {
        self.state().tasks.push_back(task);
        self.ready.notify_one();
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
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
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
