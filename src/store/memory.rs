//! The embedded store: counts in this process's memory, for development without Redis.
//! It keeps Redis's ordering so that both stores pass the same behavioural suite.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::scan::{Scan, ScanRequest, Window};
use super::{Entry, Order, Store, StoreError};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Sets>,
}

#[derive(Default)]
struct Sets {
    counts: HashMap<String, i64>,
    /// (count, name): the same order as a Redis sorted set with integer scores.
    ranked: BTreeSet<(i64, String)>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Sets> {
        // The data stays consistent even if a holder panicked: every update is two
        // infallible collection calls.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn increment(&self, name: &str) -> Result<i64, StoreError> {
        let mut sets = self.lock();
        let old = sets.counts.get(name).copied();
        let new = old.unwrap_or(0) + 1;
        if let Some(old) = old {
            sets.ranked.remove(&(old, name.to_owned()));
        }
        sets.counts.insert(name.to_owned(), new);
        sets.ranked.insert((new, name.to_owned()));
        Ok(new)
    }

    fn scan(self: Arc<Self>, request: ScanRequest) -> Box<dyn Scan> {
        Box::new(MemoryScan {
            window: Window::new(&request),
            order: request.order,
            store: self,
        })
    }

    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

impl MemoryStore {
    fn range(&self, order: Order, start: u64, count: usize) -> Vec<Entry> {
        let sets = self.lock();
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let to_entry = |(count, name): &(i64, String)| Entry {
            name: name.clone(),
            score: count.to_string(),
        };
        match order {
            Order::Ascending => sets
                .ranked
                .iter()
                .skip(start)
                .take(count)
                .map(to_entry)
                .collect(),
            Order::Descending => sets
                .ranked
                .iter()
                .rev()
                .skip(start)
                .take(count)
                .map(to_entry)
                .collect(),
        }
    }
}

struct MemoryScan {
    store: Arc<MemoryStore>,
    order: Order,
    window: Window,
}

impl Scan for MemoryScan {
    fn next_chunk(&mut self) -> Result<Vec<Entry>, StoreError> {
        let Some((start, count)) = self.window.next_request() else {
            return Ok(Vec::new());
        };
        let chunk = self.store.range(self.order, start, count);
        self.window.advance(count, chunk.len());
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_store_contract() {
        crate::store::contract::check(Arc::new(MemoryStore::new()));
    }
}
