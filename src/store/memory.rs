//! The embedded store: counts in this process's memory, for development without Redis.
//! It keeps Redis's ordering so that both stores pass the same behavioural suite, and it is
//! bounded like Redis: past its cap on names, a new name is refused and known names count.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::scan::{RankWindow, Scan, ScanRequest};
use super::{NameCount, Order, Room, Store, StoreError};
use crate::sync;

/// Names the in-process store holds at most unless told otherwise (`NAMES_MAX`'s default
/// without Redis). Each name is kept twice (by name, and in count order), about 650 bytes for
/// a name of the longest, 256 bytes: at most about 65 MB in all, which a laptop or a small
/// container can spare, while no client can make the process grow without end.
pub const DEFAULT_MAX_NAMES: u64 = 100_000;

pub struct MemoryStore {
    inner: Mutex<Sets>,
    max_names: u64,
}

#[derive(Default)]
struct Sets {
    counts: HashMap<String, i64>,
    /// (count, name): the same order as a Redis sorted set with integer scores.
    ranked: BTreeSet<(i64, String)>,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore {
            inner: Mutex::default(),
            max_names: DEFAULT_MAX_NAMES,
        }
    }

    /// At most `max` names (0: none but those already counted, i.e. none).
    pub fn with_max_names(mut self, max: u64) -> MemoryStore {
        self.max_names = max;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Sets> {
        // The data stays consistent even if a holder panicked: every update is two
        // infallible collection calls.
        sync::lock(&self.inner)
    }
}

impl Store for MemoryStore {
    fn increment(&self, name: &str) -> Result<i64, StoreError> {
        let mut sets = self.lock();
        let old = sets.counts.get(name).copied();
        if old.is_none() && sets.counts.len() as u64 >= self.max_names {
            return Err(StoreError::NamesFull);
        }
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
            window: RankWindow::new(&request),
            order: request.order,
            store: self,
        })
    }

    fn names(&self) -> Result<u64, StoreError> {
        Ok(self.lock().counts.len() as u64)
    }

    fn refresh(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn room(&self) -> Room {
        let names = self.lock().counts.len() as u64;
        Room {
            used_memory: None,
            max_memory: None,
            names: Some(names),
            admitting: names < self.max_names,
        }
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

impl MemoryStore {
    fn range(&self, order: Order, start: u64, count: usize) -> Vec<NameCount> {
        let sets = self.lock();
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let to_entry = |(count, name): &(i64, String)| NameCount {
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
    window: RankWindow,
}

impl Scan for MemoryScan {
    fn next_chunk(&mut self) -> Result<Vec<NameCount>, StoreError> {
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
    fn past_its_cap_new_names_are_refused_and_known_ones_count() {
        let store = MemoryStore::new().with_max_names(2);
        assert_eq!(store.increment("a").unwrap(), 1);
        assert!(store.room().admitting);
        assert_eq!(store.increment("b").unwrap(), 1);
        assert!(matches!(store.increment("c"), Err(StoreError::NamesFull)));
        assert_eq!(store.increment("a").unwrap(), 2);
        assert_eq!(
            store.room(),
            Room {
                used_memory: None,
                max_memory: None,
                names: Some(2),
                admitting: false,
            }
        );
        let frozen = MemoryStore::new().with_max_names(0);
        assert!(matches!(frozen.increment("a"), Err(StoreError::NamesFull)));
        assert_eq!(frozen.room().names, Some(0));
    }
}
