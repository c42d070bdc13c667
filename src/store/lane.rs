//! The store lane for greetings: one thread that sends every increment queued since its last
//! round trip as one pipeline ([`Store::increment_batch`]) and hands each caller its own
//! result. Callers never wait here: they queue a name with what to do with its result and go
//! on serving. The queue is bounded: a full lane answers at once, with nothing sent.
//!
//! The first greeting queued while the lane sleeps wakes it, and no other does: while a batch
//! is out, greetings only queue, and the lane takes them all when its round trip is over. So
//! under load a wake is rare and a pipeline carries everything that came meanwhile; at rest a
//! greeting goes out as soon as it comes.
//!
//! A greeting that waited in the queue longer than the store's timeout is answered
//! unavailable without being sent (certainly not applied), so a stalled store costs a client at
//! most about two timeouts, and a panic inside a batch fails that batch alone: the lane goes on.

use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::{Store, StoreError};
use crate::sync;

/// Most increments sent in one pipeline.
const MAX_BATCH: usize = 256;

/// One greeting's increment as its caller queues it: the name, and what to do with the result.
/// Kept by value in the queue (no allocation per greeting); `answer` is called on the lane's
/// thread (or, when the queue is full, on the submitter's), so it must not block.
pub trait CountRequest: Send + 'static {
    fn name(&self) -> &str;
    fn answer(self, result: Result<i64, StoreError>);
}

pub struct Increments<R: CountRequest> {
    lane: Arc<Lane<R>>,
}

/// What the submitters and the lane's thread share.
struct Lane<R> {
    queue: Mutex<Queue<R>>,
    ready: Condvar,
    capacity: usize,
    /// How long a greeting may wait to be sent.
    max_wait: Duration,
}

struct Queue<R> {
    waiting: VecDeque<Queued<R>>,
    /// The thread sleeps and nobody has woken it yet: the next submitter does.
    asleep: bool,
    closed: bool,
}

struct Queued<R> {
    queued: Instant,
    request: R,
}

impl<R: CountRequest> Increments<R> {
    /// Starts the lane's thread. `capacity`: greetings that may wait to be sent; `max_wait`:
    /// how long one may wait.
    pub fn start(
        store: Arc<dyn Store>,
        capacity: usize,
        max_wait: Duration,
    ) -> io::Result<Increments<R>> {
        let lane = Arc::new(Lane {
            queue: Mutex::new(Queue {
                waiting: VecDeque::new(),
                asleep: false,
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
            max_wait,
        });
        let serving = Arc::clone(&lane);
        thread::Builder::new()
            .name("store-lane".into())
            .spawn(move || serving.serve(&*store))?;
        Ok(Increments { lane })
    }

    /// Queues an increment of `request`'s name; `request` gets its result. A full lane gives
    /// [`StoreError::Overloaded`] at once. A lane asleep is woken by the first request after it
    /// fell asleep; one at work takes this request with the next batch.
    pub fn submit(&self, request: R) {
        let mut queue = self.lane.queue();
        if queue.waiting.len() >= self.lane.capacity {
            drop(queue);
            return request.answer(Err(StoreError::Overloaded));
        }
        queue.waiting.push_back(Queued {
            queued: Instant::now(),
            request,
        });
        let wake = std::mem::take(&mut queue.asleep);
        // Notified after the lock is let go, so the thread does not wake only to wait for it.
        drop(queue);
        if wake {
            self.lane.ready.notify_one();
        }
    }
}

impl<R: CountRequest> Drop for Increments<R> {
    fn drop(&mut self) {
        self.lane.queue().closed = true;
        self.lane.ready.notify_one();
    }
}

impl<R: CountRequest> Lane<R> {
    fn queue(&self) -> MutexGuard<'_, Queue<R>> {
        sync::lock(&self.queue)
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
    fn next_batch(&self, batch: &mut Vec<Queued<R>>) -> bool {
        let mut queue = self.queue();
        while queue.waiting.is_empty() {
            if queue.closed {
                return false;
            }
            queue.asleep = true;
            queue = sync::wait(&self.ready, queue);
        }
        // Awake, whoever woke it: the next submitter need not.
        queue.asleep = false;
        let take = queue.waiting.len().min(MAX_BATCH);
        batch.extend(queue.waiting.drain(..take));
        true
    }

    /// Sends `batch` as one pipeline and answers each greeting, leaving `batch` empty; those that
    /// waited too long are answered first, unsent.
    fn run(&self, store: &dyn Store, batch: &mut Vec<Queued<R>>) {
        let now = Instant::now();
        let late = |q: &mut Queued<R>| now.saturating_duration_since(q.queued) > self.max_wait;
        for queued in batch.extract_if(.., late) {
            let late = Err(StoreError::Unavailable(format!(
                "waited over {} ms for the store; not sent",
                self.max_wait.as_millis()
            )));
            finish(queued, late);
        }
        if batch.is_empty() {
            return;
        }
        let names: Vec<&str> = batch.iter().map(|q| q.request.name()).collect();
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
        for (queued, result) in batch.drain(..).zip(results) {
            finish(queued, result);
        }
    }
}

/// A caller's `answer` that panics must not take the lane down with it.
fn finish<R: CountRequest>(queued: Queued<R>, result: Result<i64, StoreError>) {
    let request = queued.request;
    if panic::catch_unwind(AssertUnwindSafe(move || request.answer(result))).is_err() {
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

        fn names(&self) -> Result<u64, StoreError> {
            Ok(self.counts.lock().unwrap().len() as u64)
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

    impl CountRequest for Sent {
        fn name(&self) -> &str {
            &self.0
        }

        fn answer(self, result: Result<i64, StoreError>) {
            let _ = self.1.send(result);
        }
    }

    fn submit(lane: &Increments<Sent>, name: &str) -> mpsc::Receiver<Result<i64, StoreError>> {
        let (tx, rx) = mpsc::channel();
        lane.submit(Sent(name.into(), tx));
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
        while !lane.lane.queue().waiting.is_empty() {
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
        while lane.lane.queue().waiting.len() == 1 {
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
        while lane.lane.queue().waiting.len() == 1 {
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
