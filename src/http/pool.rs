//! A queue of tasks and the threads that take them: started when a task finds none idle, up to
//! a bound, and then kept until the pool is closed. It knows nothing of what the tasks are.

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

pub(super) struct Pool<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    max_threads: usize,
}

struct State<T> {
    tasks: VecDeque<T>,
    closed: bool,
    threads: usize,
    idle: usize,
}

impl<T> Pool<T> {
    pub fn new(max_threads: usize) -> Pool<T> {
        Pool {
            state: Mutex::new(State {
                tasks: VecDeque::new(),
                closed: false,
                threads: 0,
                idle: 0,
            }),
            ready: Condvar::new(),
            max_threads,
        }
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `task`. When no thread is idle and the bound allows one more, `start` is called to
    /// start a thread that calls [`Pool::serve`]. If it fails and no thread is left to take the
    /// queue, the queued tasks come back, for the caller to dispose of.
    pub fn submit(&self, task: T, start: impl FnOnce() -> io::Result<()>) -> Vec<T> {
        let start_one = {
            let mut state = self.state();
            state.tasks.push_back(task);
            let start_one = state.idle == 0 && state.threads < self.max_threads;
            state.threads += usize::from(start_one);
            start_one
        };
        if !start_one {
            self.ready.notify_one();
            return Vec::new();
        }
        if start().is_ok() {
            return Vec::new();
        }
        let mut state = self.state();
        state.threads -= 1;
        if state.threads > 0 {
            return Vec::new();
        }
        mem::take(&mut state.tasks).into()
    }

    /// Lets the threads exit once the queue is empty.
    pub fn close(&self) {
        self.state().closed = true;
        self.ready.notify_all();
    }

    /// A pool thread: runs tasks until the pool is closed.
    pub fn serve(&self, mut run: impl FnMut(T)) {
        while let Some(task) = self.next() {
            run(task);
        }
    }

    fn next(&self) -> Option<T> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn threads_start_up_to_the_bound_and_every_task_runs() {
        let pool = Arc::new(Pool::new(2));
        let (done, results) = mpsc::channel();
        let started = Arc::new(Mutex::new(0));
        for n in 0..20 {
            let (pool2, done, started) = (Arc::clone(&pool), done.clone(), Arc::clone(&started));
            let stranded = pool.submit(n, move || {
                *started.lock().unwrap() += 1;
                thread::spawn(move || pool2.serve(|n| done.send(n).unwrap()));
                Ok(())
            });
            assert!(stranded.is_empty());
        }
        let mut seen: Vec<i32> = (0..20)
            .map(|_| {
                results
                    .recv_timeout(Duration::from_secs(10))
                    .expect("a task lost")
            })
            .collect();
        seen.sort();
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
        assert!(*started.lock().unwrap() <= 2);
        pool.close();
    }

    #[test]
    fn tasks_no_thread_can_take_come_back() {
        let pool = Pool::new(2);
        let failed = || Err(io::Error::other("no threads today"));
        assert_eq!(pool.submit(1, failed), [1]);
        assert_eq!(pool.submit(2, failed), [2]);
    }
}
