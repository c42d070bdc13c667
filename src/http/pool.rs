//! A queue of tasks and the threads that take them: started when a task finds none idle, up to
//! a bound, and ended after a while without a task (a burst's threads do not stay for good),
//! or when the pool is closed. It knows nothing of what the tasks are.

use crate::sync;
use std::collections::VecDeque;
use std::io;
use std::mem;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

pub(super) struct ThreadPool<T> {
    state: Mutex<Tasks<T>>,
    ready: Condvar,
    max_threads: usize,
    /// How long a thread waits for a task before it ends.
    idle_for: Duration,
}

struct Tasks<T> {
    tasks: VecDeque<T>,
    closed: bool,
    threads: usize,
    idle: usize,
}

impl<T> ThreadPool<T> {
    pub fn new(max_threads: usize, idle_for: Duration) -> ThreadPool<T> {
        ThreadPool {
            state: Mutex::new(Tasks {
                tasks: VecDeque::new(),
                closed: false,
                threads: 0,
                idle: 0,
            }),
            ready: Condvar::new(),
            max_threads,
            idle_for,
        }
    }

    fn state(&self) -> MutexGuard<'_, Tasks<T>> {
        sync::lock(&self.state)
    }

    /// Queues `task`. When no thread is idle and the bound allows one more, `start` is called to
    /// start a thread that calls [`ThreadPool::serve`]. If it fails and no thread is left to take the
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

    /// A pool thread: runs tasks until the pool is closed, or until it has waited its idle
    /// time with none to run.
    pub fn serve(&self, mut run: impl FnMut(T)) {
        while let Some(task) = self.next() {
            run(task);
        }
    }

    /// The next task; `None` when the thread is to end: the pool is closed, or no task came
    /// for `idle_for` (the thread is then no longer counted, so a later task starts another).
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
            let (next, waited) = sync::wait_timeout(&self.ready, state, self.idle_for);
            state = next;
            state.idle -= 1;
            if waited.timed_out() && state.tasks.is_empty() {
                state.threads -= 1;
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn threads_start_up_to_the_bound_and_every_task_runs() {
        let pool = Arc::new(ThreadPool::new(2, Duration::from_secs(60)));
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
        let pool = ThreadPool::new(2, Duration::from_secs(60));
        let failed = || Err(io::Error::other("no threads today"));
        assert_eq!(pool.submit(1, failed), [1]);
        assert_eq!(pool.submit(2, failed), [2]);
    }

    #[test]
    fn a_thread_without_work_ends_and_the_next_task_starts_another() {
        let pool = Arc::new(ThreadPool::new(1, Duration::from_millis(50)));
        let (done, results) = mpsc::channel();
        let run = |n: i32| {
            let (pool2, done) = (Arc::clone(&pool), done.clone());
            pool.submit(n, move || {
                thread::spawn(move || pool2.serve(|n| done.send(n).unwrap()));
                Ok(())
            })
        };
        assert!(run(1).is_empty());
        assert_eq!(results.recv_timeout(Duration::from_secs(10)), Ok(1));
        // The one thread ends once it has waited its while for more.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pool.state().threads > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the idle thread never ended"
            );
            thread::sleep(Duration::from_millis(10));
        }
        // A task after that starts a new one, and runs.
        assert!(run(2).is_empty());
        assert_eq!(results.recv_timeout(Duration::from_secs(10)), Ok(2));
        pool.close();
    }
}
