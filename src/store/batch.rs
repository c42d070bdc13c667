//! Group commit for increments: concurrent `increment` calls are sent to Redis as one pipeline
//! per round trip instead of one round trip each.
//!
//! Callers queue their name. If no batch is in flight, the caller becomes the leader: it takes
//! everything queued, sends it as one pipeline, hands each caller its own reply, and passes the
//! lead to the first caller that queued meanwhile. So every caller waits for at most the
//! batch in flight and its own, and each reply is exactly one stored increment.

use std::mem;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::StoreError;

/// Most increments sent in one pipeline.
const MAX_BATCH: usize = 256;

/// Runs a batch of names through the store, returning one result per name, in order.
pub type RunBatch<'a> = dyn Fn(&[&str]) -> Vec<Result<i64, StoreError>> + 'a;

#[derive(Default)]
pub struct Batcher {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: Vec<Arc<Slot>>,
    leading: bool,
}

struct Slot {
    name: String,
    outcome: Mutex<Outcome>,
    changed: Condvar,
}

enum Outcome {
    Waiting,
    /// This caller is to lead the next batch.
    Lead,
    Done(Result<i64, StoreError>),
}

impl Batcher {
    pub fn increment(&self, name: &str, run: &RunBatch<'_>) -> Result<i64, StoreError> {
        let slot = Arc::new(Slot {
            name: name.to_owned(),
            outcome: Mutex::new(Outcome::Waiting),
            changed: Condvar::new(),
        });
        {
            let mut state = self.state();
            state.queue.push(Arc::clone(&slot));
            if state.leading {
                drop(state);
                if let Some(done) = slot.wait() {
                    return done;
                }
            } else {
                state.leading = true;
            }
        }
        // Leading: run one batch (which holds this caller's own name), then pass the lead on.
        let batch: Vec<Arc<Slot>> = {
            let mut state = self.state();
            let take = state.queue.len().min(MAX_BATCH);
            state.queue.drain(..take).collect()
        };
        let names: Vec<&str> = batch.iter().map(|s| s.name.as_str()).collect();
        let mut results = run(&names);
        results.resize_with(batch.len(), || {
            Err(StoreError::Unavailable(
                "no reply for a pipelined increment".into(),
            ))
        });
        let mut own = None;
        for (s, result) in batch.iter().zip(results) {
            if Arc::ptr_eq(s, &slot) {
                own = Some(result);
            } else {
                s.finish(Outcome::Done(result));
            }
        }
        {
            let mut state = self.state();
            match state.queue.first() {
                Some(next) => next.finish(Outcome::Lead),
                None => state.leading = false,
            }
        }
        own.unwrap_or_else(|| Err(StoreError::Unavailable("increment lost its batch".into())))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Slot {
    /// Waits until this caller's result arrives (`Some`) or it is asked to lead (`None`).
    fn wait(&self) -> Option<Result<i64, StoreError>> {
        let mut outcome = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match mem::replace(&mut *outcome, Outcome::Waiting) {
                Outcome::Waiting => {
                    outcome = self
                        .changed
                        .wait(outcome)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Outcome::Lead => return None,
                Outcome::Done(result) => return Some(result),
            }
        }
    }

    fn finish(&self, outcome: Outcome) {
        *self.outcome.lock().unwrap_or_else(PoisonError::into_inner) = outcome;
        self.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;
    use std::time::Duration;

    #[test]
    fn every_caller_gets_its_own_reply_and_batches_form_under_contention() {
        let batcher = Batcher::default();
        let counts = Mutex::new(HashMap::<String, i64>::new());
        let batches = AtomicUsize::new(0);
        let largest = AtomicUsize::new(0);
        let run = |names: &[&str]| {
            batches.fetch_add(1, Ordering::SeqCst);
            largest.fetch_max(names.len(), Ordering::SeqCst);
            // A slow store, so that callers pile up behind the batch in flight.
            thread::sleep(Duration::from_millis(2));
            let mut counts = counts.lock().unwrap();
            names
                .iter()
                .map(|n| {
                    let c = counts.entry(n.to_string()).or_insert(0);
                    *c += 1;
                    Ok(*c)
                })
                .collect()
        };
        let seen: Vec<Vec<i64>> = thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|t| {
                    let (batcher, run) = (&batcher, &run);
                    scope.spawn(move || {
                        (0..50)
                            .map(|_| batcher.increment(&format!("n{t}"), run).unwrap())
                            .collect::<Vec<i64>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // Each thread owns its name, so its replies must be exactly 1..=50 in order.
        for replies in seen {
            assert_eq!(replies, (1..=50).collect::<Vec<i64>>());
        }
        assert!(batches.load(Ordering::SeqCst) < 16 * 50);
        assert!(largest.load(Ordering::SeqCst) > 1);
    }

    #[test]
    fn a_failed_batch_fails_each_of_its_callers_once() {
        let batcher = Batcher::default();
        let run = |names: &[&str]| {
            names
                .iter()
                .map(|_| Err(StoreError::Unavailable("down".into())))
                .collect()
        };
        assert!(matches!(
            batcher.increment("a", &run),
            Err(StoreError::Unavailable(_))
        ));
        // The lead was released: a later call runs too.
        assert!(batcher.increment("b", &run).is_err());
    }
}
