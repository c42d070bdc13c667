//! Admission of new names into Redis: whether the set may take a name it does not hold yet.
//! Names already in the set always count; a new one is admitted only while Redis is below its
//! memory watermark (`STORE_NEW_NAMES_MAX_MEMORY_PERCENT` of `maxmemory`) and the set below its
//! cap (`NAMES_MAX`). Every new name is a member kept for good, so without this rule any client
//! could fill Redis, after which Redis refuses every write, known names' included.
//!
//! The rule reads the last sample (`INFO memory` and `ZCARD`, taken about once a second by the
//! health sampler, off the request path) plus what has been added since: the names this task's
//! store lane created (a `ZINCRBY` that answered exactly 1), at their own size, and the names
//! other tasks created, seen by the `ZCARD` that ends each batch while a limit applies, at the
//! largest a name may be. So the rule closes within one lane batch per task of the line, not
//! one sample interval after it. Once closed by memory, it opens again only when the reckoning
//! is a hundredth of the watermark below it: the reckoning errs high, so without that margin
//! each sample would reopen it for a batch or two while Redis sits just under the line, and a
//! client would see the same new name refused, then counted. Pure state: the Redis store feeds
//! it and asks it.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::hello::MAX_NAME_BYTES;

/// The limits on new names, from `STORE_NEW_NAMES_MAX_MEMORY_PERCENT` and `NAMES_MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// New names stop once used memory reaches this percentage of `maxmemory` (1 to 100).
    pub max_memory_percent: u8,
    /// Most names in the set, when capped.
    pub max_names: Option<u64>,
}

impl Default for Limits {
    /// The settings' defaults: 90% of `maxmemory`, no cap on names.
    fn default() -> Limits {
        Limits {
            max_memory_percent: 90,
            max_names: None,
        }
    }
}

/// What the store knows of its room for new names, for `/health` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Room {
    /// Redis's `used_memory` as last sampled, in bytes; `None` for the in-process store or
    /// before the first sample.
    pub used_memory: Option<u64>,
    /// Redis's `maxmemory` as last sampled, in bytes (0: no limit, as Redis writes it).
    pub max_memory: Option<u64>,
    /// Names in the set, as last known.
    pub names: Option<u64>,
    /// Whether a new name would be counted now.
    pub admitting: bool,
}

/// How the next batch of increments is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    /// New names are counted and no limit can close (`maxmemory` 0 or not known, no cap).
    Unlimited,
    /// New names are counted, and the set's size is asked after the batch (`ZCARD`), so that
    /// the limits see what every task added.
    Watched,
    /// Only names already in the set are counted (`ZADD XX INCR`): a new one is not stored.
    KnownOnly,
}

/// Bytes a new member of the sorted set is reckoned to take in Redis, its name being `len`
/// bytes: the name, rounded up as the allocator does, and the skiplist's and dictionary's
/// share. Measured on Redis 7.0 (`used_memory` over 20,000 new members): 121 B for 10-byte
/// names, 185 B for 64, 331 B for 200, 425 B for 256; this gives 140, 208, 378 and 448.
pub fn name_bytes(len: usize) -> u64 {
    (len + len / 4 + 128) as u64
}

/// Where the counts of names added stood when a sample was asked for: what was added after it
/// is not in the sample.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    added: u64,
    added_bytes: u64,
}

/// The rule and its state, shared by the store lane (which asks it before each batch and tells
/// it what the batch added) and the health sampler (which gives it each sample).
pub struct Admission {
    limits: Limits,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    used_memory: Option<u64>,
    max_memory: Option<u64>,
    /// The set's size in the last sample.
    sampled_names: Option<u64>,
    /// The set's size as last known: the sample's, or a later batch's `ZCARD`.
    names: Option<u64>,
    /// Names this task created since the sample, and their reckoned bytes.
    added: u64,
    added_bytes: u64,
    /// The memory rule refuses new names.
    memory_closed: bool,
}

impl State {
    /// Used memory now, reckoned from the sample: this task's new names at their own size, the
    /// others' (the set's growth beyond ours) at the largest a name may be.
    fn used_memory_now(&self) -> Option<u64> {
        let used = self.used_memory?;
        let grown = match (self.names, self.sampled_names) {
            (Some(now), Some(then)) => now.saturating_sub(then),
            _ => 0,
        };
        let others = grown.saturating_sub(self.added);
        Some(
            used.saturating_add(self.added_bytes)
                .saturating_add(others.saturating_mul(name_bytes(MAX_NAME_BYTES))),
        )
    }

    /// Judges the memory rule again after a sample or a batch: it closes when the reckoning
    /// reaches the watermark, and once closed opens when it is a hundredth of it below.
    fn judge_memory(&mut self, percent: u8) {
        let line = match self.max_memory {
            Some(max) if max > 0 => (u128::from(max) * u128::from(percent) / 100) as u64,
            // No limit, or not known: nothing to measure against.
            _ => {
                self.memory_closed = false;
                return;
            }
        };
        let Some(used) = self.used_memory_now() else {
            self.memory_closed = false;
            return;
        };
        self.memory_closed = match self.memory_closed {
            true => used.saturating_add(line / 100) >= line,
            false => used >= line,
        };
    }

    fn below_name_cap(&self, max_names: Option<u64>) -> bool {
        match (max_names, self.names) {
            (Some(max), Some(names)) => names < max,
            // Not known yet: the first batch's `ZCARD` tells, one batch late at most.
            _ => true,
        }
    }
}

impl Admission {
    pub fn new(limits: Limits) -> Admission {
        Admission {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update is a few plain assignments: the state is whole even after a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admits(&self, state: &State) -> bool {
        !state.memory_closed && state.below_name_cap(self.limits.max_names)
    }

    /// How the next batch goes.
    pub fn batch(&self) -> Batch {
        let state = self.state();
        if !self.admits(&state) {
            return Batch::KnownOnly;
        }
        let memory_limited = state.max_memory.is_some_and(|max| max > 0);
        match memory_limited || self.limits.max_names.is_some() {
            true => Batch::Watched,
            false => Batch::Unlimited,
        }
    }

    /// A batch created `added` new names of `added_bytes` reckoned bytes; `names`: the set's
    /// size after it, when asked.
    pub fn added(&self, added: u64, added_bytes: u64, names: Option<u64>) {
        let mut state = self.state();
        state.added = state.added.saturating_add(added);
        state.added_bytes = state.added_bytes.saturating_add(added_bytes);
        if names.is_some() {
            state.names = names;
        }
        state.judge_memory(self.limits.max_memory_percent);
    }

    /// Marks the start of a sample: names added from now on may or may not be in it.
    pub fn mark(&self) -> Mark {
        let state = self.state();
        Mark {
            added: state.added,
            added_bytes: state.added_bytes,
        }
    }

    /// A new sample, asked for at `mark`: `memory` is (`used_memory`, `maxmemory`) when known.
    /// What was added after the mark stays reckoned on top of it (if the sample already holds
    /// some of it, the rule errs on the side of closing).
    pub fn sampled(&self, mark: Mark, memory: Option<(u64, u64)>, names: u64) {
        let mut state = self.state();
        state.used_memory = memory.map(|(used, _)| used);
        state.max_memory = memory.map(|(_, max)| max);
        state.sampled_names = Some(names);
        state.names = Some(names);
        state.added = state.added.saturating_sub(mark.added);
        state.added_bytes = state.added_bytes.saturating_sub(mark.added_bytes);
        state.judge_memory(self.limits.max_memory_percent);
    }

    pub fn room(&self) -> Room {
        let state = self.state();
        Room {
            used_memory: state.used_memory,
            max_memory: state.max_memory,
            names: state.names,
            admitting: self.admits(&state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn admission(max_memory_percent: u8, max_names: Option<u64>) -> Admission {
        Admission::new(Limits {
            max_memory_percent,
            max_names,
        })
    }

    #[test]
    fn before_any_sample_and_without_limits_every_name_is_admitted() {
        let a = admission(90, None);
        assert_eq!(a.batch(), Batch::Unlimited);
        assert_eq!(
            a.room(),
            Room {
                admitting: true,
                ..Room::default()
            }
        );
        // maxmemory 0 is no limit, however much is used.
        a.sampled(a.mark(), Some((u64::MAX / 2, 0)), 10);
        assert_eq!(a.batch(), Batch::Unlimited);
        // A cap not known to be reached yet: admitted, and watched.
        assert_eq!(admission(90, Some(5)).batch(), Batch::Watched);
    }

    #[test]
    fn the_memory_watermark_closes_at_its_percentage_of_maxmemory() {
        let a = admission(90, None);
        a.sampled(a.mark(), Some((89 * MB, 100 * MB)), 0);
        assert_eq!(a.batch(), Batch::Watched);
        a.sampled(a.mark(), Some((90 * MB, 100 * MB)), 0);
        assert_eq!(a.batch(), Batch::KnownOnly);
        assert!(!a.room().admitting);
        // Room again (maxmemory raised, or names removed): open at the next sample.
        a.sampled(a.mark(), Some((90 * MB, 200 * MB)), 0);
        assert_eq!(a.batch(), Batch::Watched);
        assert!(a.room().admitting);
        let full = admission(100, None);
        full.sampled(full.mark(), Some((100 * MB - 1, 100 * MB)), 0);
        assert_eq!(full.batch(), Batch::Watched);
    }

    #[test]
    fn once_closed_by_memory_it_opens_a_hundredth_of_the_watermark_below_it() {
        let a = admission(90, None);
        let max = 100 * MB;
        let line = 90 * MB;
        a.sampled(a.mark(), Some((line, max)), 0);
        assert_eq!(a.batch(), Batch::KnownOnly);
        // Just under the line, within the margin: still closed.
        a.sampled(a.mark(), Some((line - line / 100, max)), 0);
        assert_eq!(a.batch(), Batch::KnownOnly);
        a.sampled(a.mark(), Some((line - line / 100 - 1, max)), 0);
        assert_eq!(a.batch(), Batch::Watched);
        // Open, the margin does not apply: it closes at the line itself.
        a.sampled(a.mark(), Some((line - 1, max)), 0);
        assert_eq!(a.batch(), Batch::Watched);
        // An unknown memory (INFO refused) or no limit opens it.
        a.sampled(a.mark(), Some((line, max)), 0);
        a.sampled(a.mark(), None, 0);
        assert_eq!(a.batch(), Batch::Unlimited);
    }

    #[test]
    fn names_this_task_adds_close_the_rule_before_the_next_sample() {
        let a = admission(90, None);
        a.sampled(a.mark(), Some((80 * MB, 100 * MB)), 1000);
        // Just under 10 MB of new names, each reckoned at its size, then one more.
        let each = name_bytes(200);
        let n = 10 * MB / each;
        a.added(n, n * each, Some(1000 + n));
        assert_eq!(a.batch(), Batch::Watched);
        a.added(1, each, Some(1001 + n));
        assert_eq!(a.batch(), Batch::KnownOnly);
    }

    #[test]
    fn names_other_tasks_add_count_at_the_largest_size() {
        let a = admission(90, None);
        a.sampled(a.mark(), Some((80 * MB, 100 * MB)), 0);
        let worst = name_bytes(MAX_NAME_BYTES);
        // The set grew by this many names, none of them ours.
        let others = 10 * MB / worst;
        a.added(0, 0, Some(others - 1));
        assert_eq!(a.batch(), Batch::Watched);
        a.added(0, 0, Some(others + 1));
        assert_eq!(a.batch(), Batch::KnownOnly);
    }

    #[test]
    fn the_name_cap_closes_at_the_cap_and_zero_admits_none() {
        let a = admission(90, Some(100));
        a.sampled(a.mark(), None, 99);
        assert_eq!(a.batch(), Batch::Watched);
        a.added(1, name_bytes(5), Some(100));
        assert_eq!(a.batch(), Batch::KnownOnly);
        assert_eq!(a.room().names, Some(100));
        let frozen = admission(90, Some(0));
        frozen.sampled(frozen.mark(), None, 0);
        assert_eq!(frozen.batch(), Batch::KnownOnly);
    }

    #[test]
    fn names_added_while_a_sample_is_taken_stay_reckoned_after_it() {
        let a = admission(90, None);
        a.sampled(a.mark(), Some((80 * MB, 100 * MB)), 0);
        a.added(3, 3000, Some(3));
        let mark = a.mark();
        // Added after the mark: maybe not in the sample.
        a.added(2, 2000, Some(5));
        a.sampled(mark, Some((81 * MB, 100 * MB)), 4);
        let state = a.state();
        assert_eq!((state.added, state.added_bytes), (2, 2000));
        assert_eq!(state.used_memory_now(), Some(81 * MB + 2000));
    }
}
