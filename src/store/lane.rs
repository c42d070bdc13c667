//! The store lane for greetings: one thread that sends every increment queued since its last
//! round trip as one pipeline ([`Store::increment_batch`]) and hands each caller its own
//! result. Callers never wait here: they queue a name with what to do with its result and go
//! on serving. The queue is bounded: a full lane answers at once, with nothing sent.
//!
//! A greeting that waited in the queue longer than the store's timeout is answered
//! unavailable without being sent (certainly not applied), so a stalled store costs a client at
//! most about two timeouts, and a panic inside a batch fails that batch alone: the lane goes on.

use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::{Store, StoreError};

/// Most increments sent in one pipeline.
const MAX_BATCH: usize = 256;

/// One increment as its caller queues it: the name, and what to do with the result. Kept by
/// value in the queue (no allocation per greeting); `done` is called on the lane's thread (or,
/// when the queue is full, on the submitter's), so it must not block.
pub trait Done: Send + 'static {
    fn name(&self) -> &str;
    fn done(self, result: Result<i64, StoreError>);
}

pub struct Increments<D: Done> {
    shared: Arc<Shared<D>>,
}

struct Shared<D> {
    queue: Mutex<Queue<D>>,
    ready: Condvar,
    capacity: usize,
    /// How long a greeting may wait to be sent.
    max_wait: Duration,
}

struct Queue<D> {
    pending: VecDeque<Pending<D>>,
    /// The thread waits for work: the next caller wakes it.
    asleep: bool,
    closed: bool,
}

struct Pending<D> {
    queued: Instant,
    done: D,
}

impl<D: Done> Increments<D> {
    /// Starts the lane's thread. `capacity`: greetings that may wait to be sent; `max_wait`:
    /// how long one may wait.
    pub fn start(
        store: Arc<dyn Store>,
        capacity: usize,
        max_wait: Duration,
    ) -> io::Result<Increments<D>> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                asleep: false,
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
            max_wait,
        });
        let lane = Arc::clone(&shared);
        thread::Builder::new()
            .name("store-lane".into())
            .spawn(move || lane.serve(&*store))?;
        Ok(Increments { shared })
    }

    /// Queues an increment of `done`'s name; `done` gets its result. A full lane gives
    /// [`StoreError::Overloaded`] at once. The lane starts on it at [`Increments::flush`] or
    /// when it finishes the batch in flight, whichever comes first: the caller flushes when it
    /// has queued what it had at hand, so that those go as one pipeline.
    pub fn submit(&self, done: D) {
        let mut queue = self.shared.queue();
        if queue.pending.len() >= self.shared.capacity {
            drop(queue);
            return done.done(Err(StoreError::Overloaded));
        }
        queue.pending.push_back(Pending {
            queued: Instant::now(),
            done,
        });
    }

    /// Wakes the lane if greetings wait and it sleeps.
    pub fn flush(&self) {
        let wake = {
            let queue = self.shared.queue();
            queue.asleep && !queue.pending.is_empty()
        };
        if wake {
            self.shared.ready.notify_one();
        }
    }
}

impl<D: Done> Drop for Increments<D> {
    fn drop(&mut self) {
        self.shared.queue().closed = true;
        self.shared.ready.notify_one();
    }
}

impl<D: Done> Shared<D> {
    fn queue(&self) -> MutexGuard<'_, Queue<D>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn serve(&self, store: &dyn Store) {
        // Kept from batch to batch, so that a batch allocates little.
        let mut batch = Vec::new();
        while self.next_batch(&mut batch) {
            self.run(store, &mut batch);
        }
    }

    /// Moves everything queued (up to a batch) into `batch`, waiting for some if none is;
    /// `false` once closed.
    fn next_batch(&self, batch: &mut Vec<Pending<D>>) -> bool {
        let mut queue = self.queue();
        while queue.pending.is_empty() {
            if queue.closed {
                return false;
            }
            queue.asleep = true;
            queue = self
                .ready
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
            queue.asleep = false;
        }
        let take = queue.pending.len().min(MAX_BATCH);
        batch.extend(queue.pending.drain(..take));
        true
    }

    /// Sends `batch` as one pipeline and answers each greeting, leaving `batch` empty; those that
    /// waited too long are answered first, unsent.
    fn run(&self, store: &dyn Store, batch: &mut Vec<Pending<D>>) {
        let now = Instant::now();
        let late = |p: &mut Pending<D>| now.saturating_duration_since(p.queued) > self.max_wait;
        for pending in batch.extract_if(.., late) {
            let late = Err(StoreError::Unavailable(format!(
                "waited over {} ms for the store; not sent",
                self.max_wait.as_millis()
            )));
            finish(pending, late);
        }
        if batch.is_empty() {
            return;
        }
        let names: Vec<&str> = batch.iter().map(|p| p.done.name()).collect();
        let mut results = panic::catch_unwind(AssertUnwindSafe(|| store.increment_batch(&names)))
            .unwrap_or_else(|_| {
                log::error!("an increment batch panicked; its greetings were answered 500");
                names
                    .iter()
                    .map(|_| {
                        Err(StoreError::Refused(
                            "the batch failed inside the service".into(),
                        ))
                    })
                    .collect()
            });
        // A store that answered fewer than it was sent: the rest may have been applied.
        results.resize_with(batch.len(), || {
            Err(StoreError::OutcomeUnknown(
                "no reply for a pipelined increment".into(),
            ))
        });
        for (pending, result) in batch.drain(..).zip(results) {
            finish(pending, result);
        }
    }
}

/// A caller's `done` that panics must not take the lane down with it.
fn finish<D: Done>(pending: Pending<D>, result: Result<i64, StoreError>) {
    let done = pending.done;
    if panic::catch_unwind(AssertUnwindSafe(move || done.done(result))).is_err() {
        log::error!("a greeting's answer panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    /// A store that counts in memory, records its batches, can be held still, and panics on
    /// the name `boom`.
    #[derive(Default)]
    struct Recording {
        counts: Mutex<HashMap<String, i64>>,
        batches: AtomicUsize,
        largest: AtomicUsize,
        gate: Mutex<()>,
    }

    impl Store for Recording {
        fn increment(&self, name: &str) -> Result<i64, StoreError> {
            let mut counts = self.counts.lock().unwrap();
            let c = counts.entry(name.to_owned()).or_insert(0);
            *c += 1;
            Ok(*c)
        }

        fn increment_batch(&self, names: &[&str]) -> Vec<Result<i64, StoreError>> {
            assert!(!names.contains(&"boom"), "boom");
            let _held = self.gate.lock().unwrap();
            self.batches.fetch_add(1, Ordering::SeqCst);
            self.largest.fetch_max(names.len(), Ordering::SeqCst);
            names.iter().map(|n| self.increment(n)).collect()
        }

        fn scan(
            self: Arc<Self>,
            request: crate::store::ScanRequest,
        ) -> Box<dyn crate::store::Scan> {
            Arc::new(MemoryStore::new()).scan(request)
        }

        fn refresh(&self) -> Result<(), StoreError> {
            Ok(())
        }

        fn room(&self) -> crate::store::Room {
            crate::store::Room::default()
        }

        fn kind(&self) -> &'static str {
            "recording"
        }
    }

    /// A name whose result goes to a channel.
    struct Sent(String, mpsc::Sender<Result<i64, StoreError>>);

    impl Done for Sent {
        fn name(&self) -> &str {
            &self.0
        }

        fn done(self, result: Result<i64, StoreError>) {
            let _ = self.1.send(result);
        }
    }

    fn submit(lane: &Increments<Sent>, name: &str) -> mpsc::Receiver<Result<i64, StoreError>> {
        let (tx, rx) = mpsc::channel();
        lane.submit(Sent(name.into(), tx));
        lane.flush();
        rx
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn greetings_queued_meanwhile_go_as_one_batch_and_each_gets_its_own_count() {
        let store = Arc::new(Recording::default());
        let lane = Increments::start(store.clone(), 1024, WAIT).unwrap();
        // Hold the store still while 100 greetings queue behind the first.
        let held = store.gate.lock().unwrap();
        let first = submit(&lane, "a");
        // Wait until the lane's thread has taken "a" and is held inside the store.
        while !lane.shared.queue().pending.is_empty() {
            thread::yield_now();
        }
        let rest: Vec<_> = (0..100)
            .map(|i| submit(&lane, &format!("n{}", i % 10)))
            .collect();
        drop(held);
        assert_eq!(first.recv_timeout(WAIT).unwrap().unwrap(), 1);
        let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
        for (i, rx) in rest.into_iter().enumerate() {
            let count = rx.recv_timeout(WAIT).unwrap().unwrap();
            seen.entry(format!("n{}", i % 10)).or_default().push(count);
        }
        // Each name was queued ten times, in order: its counts are 1..=10 in that order.
        for counts in seen.values() {
            assert_eq!(counts, &(1..=10).collect::<Vec<i64>>());
        }
        assert!(store.batches.load(Ordering::SeqCst) <= 3);
        assert_eq!(store.largest.load(Ordering::SeqCst), 100);
    }

    #[test]
    fn a_full_lane_refuses_at_once_and_sends_nothing() {
        let store = Arc::new(Recording::default());
        let lane = Increments::start(store.clone(), 2, WAIT).unwrap();
        let held = store.gate.lock().unwrap();
        let in_flight = submit(&lane, "a");
        // Wait until the lane's thread has taken "a" and is held inside the store.
        while lane.shared.queue().pending.len() == 1 {
            thread::yield_now();
        }
        let queued: Vec<_> = (0..2).map(|_| submit(&lane, "b")).collect();
        let refused = submit(&lane, "c");
        assert!(matches!(
            refused.recv_timeout(WAIT).unwrap(),
            Err(StoreError::Overloaded)
        ));
        drop(held);
        assert_eq!(in_flight.recv_timeout(WAIT).unwrap().unwrap(), 1);
        for rx in queued {
            assert!(rx.recv_timeout(WAIT).unwrap().is_ok());
        }
        assert_eq!(store.counts.lock().unwrap().get("c"), None);
    }

    #[test]
    fn a_greeting_that_waited_past_the_timeout_is_not_sent() {
        let store = Arc::new(Recording::default());
        let lane = Increments::start(store.clone(), 16, Duration::from_millis(50)).unwrap();
        let held = store.gate.lock().unwrap();
        let first = submit(&lane, "a");
        while lane.shared.queue().pending.len() == 1 {
            thread::yield_now();
        }
        let late = submit(&lane, "late");
        thread::sleep(Duration::from_millis(100));
        drop(held);
        assert!(first.recv_timeout(WAIT).unwrap().is_ok());
        assert!(matches!(
            late.recv_timeout(WAIT).unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(store.counts.lock().unwrap().get("late"), None);
    }

    #[test]
    fn a_batch_that_panics_fails_alone_and_the_next_greeting_is_answered() {
        let store = Arc::new(Recording::default());
        let lane = Increments::start(store.clone(), 16, WAIT).unwrap();
        let boom = submit(&lane, "boom");
        assert!(matches!(
            boom.recv_timeout(WAIT).unwrap(),
            Err(StoreError::Refused(_))
        ));
        assert_eq!(
            submit(&lane, "after").recv_timeout(WAIT).unwrap().unwrap(),
            1
        );
    }
}
