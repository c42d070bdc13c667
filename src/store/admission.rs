//! Admission of new names into Redis: whether the set may take a name it does not hold yet.
//! Names already in the set always count; a new one is admitted only while its primary is below
//! its memory watermark (`STORE_NEW_NAMES_MAX_MEMORY_PERCENT` of its `maxmemory`, or of
//! `REDIS_DATA_LIMIT_BYTES` where Redis has no `maxmemory` of its own, as ElastiCache Serverless
//! has none) and the names below their cap (`NAMES_MAX`). Every new name is a member kept for
//! good, so without this rule any client could fill Redis, after which Redis refuses every
//! write, known names' included.
//!
//! A cluster fills shard by shard: each primary's memory is judged on its own, so a new name
//! whose key lives on a full primary is refused while one that hashes elsewhere is counted.
//! Standalone Redis is the one primary with the one key.
//!
//! The rule reads the last sample (`INFO memory` of each primary and `ZCARD` of each key, taken
//! about once a second by the health sampler, off the request path) plus what has been added
//! since: the names this task's store lane created (a `ZINCRBY` that answered exactly the
//! increment), at their own size, and the names other tasks created, seen by the `ZCARD` of
//! each key a batch touched while a limit applies, at the largest a name may be. So the rule
//! closes within one lane batch per task of the line, not one sample interval after it. Once a
//! primary is closed by memory, it opens again only when its reckoning is a hundredth of the
//! watermark below it: the reckoning errs high, so without that margin each sample would reopen
//! it for a batch or two while Redis sits just under the line, and a client would see the same
//! new name refused, then counted. Pure state: the Redis store feeds it and asks it.

use std::sync::{Mutex, MutexGuard};

use super::topology::NodeAddr;
use crate::hello::MAX_NAME_BYTES;
use crate::sync;

/// The limits on new names, from `STORE_NEW_NAMES_MAX_MEMORY_PERCENT`, `NAMES_MAX` and
/// `REDIS_DATA_LIMIT_BYTES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// New names stop once used memory reaches this percentage of the memory limit (1 to 100).
    pub max_memory_percent: u8,
    /// Most names in the set, when capped.
    pub max_names: Option<u64>,
    /// A primary's memory limit where Redis states none (`maxmemory` 0), or a lower one than
    /// it states: the data-storage maximum of ElastiCache Serverless.
    pub data_limit: Option<u64>,
}

impl Default for AdmissionLimits {
    /// The settings' defaults: 90% of `maxmemory`, no cap on names, no limit of our own.
    fn default() -> AdmissionLimits {
        AdmissionLimits {
            max_memory_percent: 90,
            max_names: None,
            data_limit: None,
        }
    }
}

/// What the store knows of its room for new names, for `/health` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Room {
    /// Redis's `used_memory` as last sampled, in bytes, of the primary nearest its watermark;
    /// `None` for the in-process store or before the first sample.
    pub used_memory: Option<u64>,
    /// That primary's memory limit as last sampled, in bytes (0: no limit, as Redis writes
    /// it).
    pub max_memory: Option<u64>,
    /// Names in the set, as last known.
    pub names: Option<u64>,
    /// Whether a new name would be counted now, whichever key it belongs to.
    pub admitting: bool,
}

/// How the next batch's increments of one key are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    /// New names are counted and no limit can close (no memory limit known, no cap).
    Unlimited,
    /// New names are counted, and the key's size is asked after the batch (`ZCARD`), so that
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

/// The largest a new member is reckoned to take: what names others added count for.
fn worst_name_bytes() -> u64 {
    name_bytes(MAX_NAME_BYTES)
}

/// Where the counts of names added stood when a sample was asked for: what was added after it
/// is not in the sample.
#[derive(Clone, Debug)]
pub struct Mark {
    /// (names, bytes) added to each key so far.
    added: Vec<(u64, u64)>,
}

/// One primary's memory, as sampled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub used: u64,
    /// `maxmemory`; 0 is none.
    pub max: u64,
}

/// A sample: each primary's memory (when `INFO` answered it), and each key's size and the
/// primary that holds it (when `ZCARD` answered), by the key's index in the family: a key
/// whose slot no primary serves is left out, and the keys after it keep their own places.
#[derive(Clone, Debug, Default)]
pub struct MemorySample {
    pub memory: Vec<(NodeAddr, Option<Memory>)>,
    pub keys: Vec<(usize, NodeAddr, Option<u64>)>,
}

/// The rule and its state, shared by the store lane (which asks it before each batch and tells
/// it what the batch added) and the health sampler (which gives it each sample).
pub struct Admission {
    limits: AdmissionLimits,
    state: Mutex<Reckoning>,
}

#[derive(Debug, Default)]
struct Reckoning {
    keys: Vec<KeyReckoning>,
    shards: Vec<ShardReckoning>,
}

/// What is known of one key's size.
#[derive(Clone, Debug, Default)]
struct KeyReckoning {
    /// The primary that holds it, as an index into the shards.
    shard: usize,
    /// Its size in the last sample.
    sampled: Option<u64>,
    /// Its size as last known: the sample's, or a later batch's `ZCARD`.
    known: Option<u64>,
    /// Names this task created in it since the sample, and their reckoned bytes.
    added: u64,
    added_bytes: u64,
}

/// What is known of one primary's memory.
#[derive(Clone, Debug)]
struct ShardReckoning {
    addr: NodeAddr,
    memory: Option<Memory>,
    /// The memory rule refuses new names in its keys.
    closed: bool,
}

impl Reckoning {
    fn shard(&mut self, addr: &NodeAddr) -> usize {
        match self.shards.iter().position(|s| s.addr == *addr) {
            Some(i) => i,
            None => {
                self.shards.push(ShardReckoning {
                    addr: addr.clone(),
                    memory: None,
                    closed: false,
                });
                self.shards.len() - 1
            }
        }
    }

    fn key(&mut self, key: usize, addr: &NodeAddr) -> &mut KeyReckoning {
        let shard = self.shard(addr);
        if self.keys.len() <= key {
            self.keys.resize(key + 1, KeyReckoning::default());
        }
        let reckoning = &mut self.keys[key];
        reckoning.shard = shard;
        reckoning
    }

    /// A shard's memory limit: its `maxmemory`, or the data limit where that is lower or
    /// Redis states none.
    fn limit(&self, shard: usize, data_limit: Option<u64>) -> Option<u64> {
        let max = self.shards[shard].memory.map(|m| m.max).filter(|m| *m > 0);
        match (max, data_limit) {
            (Some(max), Some(limit)) => Some(max.min(limit)),
            (max, limit) => max.or(limit),
        }
    }

    /// A shard's used memory now, reckoned from the sample: this task's new names at their own
    /// size, the others' (the keys' growth beyond ours) at the largest a name may be. Without a
    /// sampled `used_memory` (a Redis that does not write it), its names at the largest size.
    fn used_now(&self, shard: usize) -> u64 {
        let keys = self.keys.iter().filter(|k| k.shard == shard);
        let sampled = match self.shards[shard].memory {
            Some(memory) => memory.used,
            None => keys
                .clone()
                .map(|k| k.sampled.unwrap_or(0))
                .sum::<u64>()
                .saturating_mul(worst_name_bytes()),
        };
        let mut used = sampled;
        for key in keys {
            let grown = match (key.known, key.sampled) {
                (Some(now), Some(then)) => now.saturating_sub(then),
                _ => 0,
            };
            let others = grown.saturating_sub(key.added);
            used = used
                .saturating_add(key.added_bytes)
                .saturating_add(others.saturating_mul(worst_name_bytes()));
        }
        used
    }

    /// Judges each shard's memory rule again after a sample or a batch: it closes when the
    /// reckoning reaches the watermark, and once closed opens when it is a hundredth of it
    /// below.
    fn judge(&mut self, limits: &AdmissionLimits) {
        for shard in 0..self.shards.len() {
            let closed = match self.limit(shard, limits.data_limit) {
                Some(limit) => {
                    let used = self.used_now(shard);
                    let line =
                        (u128::from(limit) * u128::from(limits.max_memory_percent) / 100) as u64;
                    match self.shards[shard].closed {
                        true => used.saturating_add(line / 100) >= line,
                        false => used >= line,
                    }
                }
                // No limit, or not known: nothing to measure against.
                None => false,
            };
            self.shards[shard].closed = closed;
        }
    }

    fn forget_empty_shards(&mut self) {
        let held: Vec<bool> = (0..self.shards.len())
            .map(|i| self.keys.iter().any(|k| k.shard == i))
            .collect();
        let mut new_index = Vec::with_capacity(held.len());
        let mut next = 0;
        for held in &held {
            new_index.push(next);
            next += usize::from(*held);
        }
        let mut i = 0;
        self.shards.retain(|_| {
            i += 1;
            held[i - 1]
        });
        for key in &mut self.keys {
            key.shard = new_index[key.shard];
        }
    }

    /// Names in the set as last known; `None` before any key's size is.
    fn names(&self) -> Option<u64> {
        self.keys
            .iter()
            .filter_map(|k| k.known)
            .fold(None, |sum, n| Some(sum.unwrap_or(0) + n))
    }

    fn below_name_cap(&self, max_names: Option<u64>) -> bool {
        match (max_names, self.names()) {
            (Some(max), Some(names)) => names < max,
            // Not known yet: the first batch's `ZCARD` tells, one batch late at most.
            _ => true,
        }
    }
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Admission {
        Admission {
            limits,
            state: Mutex::new(Reckoning::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, Reckoning> {
        // Every update is a few plain assignments: the state is whole even after a panic.
        sync::lock(&self.state)
    }

    /// How the next batch's increments of `key`, held by the primary `shard`, go.
    pub fn batch(&self, key: usize, shard: &NodeAddr) -> Batch {
        let mut state = self.state();
        let index = state.key(key, shard).shard;
        if !state.below_name_cap(self.limits.max_names) || state.shards[index].closed {
            return Batch::KnownOnly;
        }
        let memory_limited = state.limit(index, self.limits.data_limit).is_some();
        match memory_limited || self.limits.max_names.is_some() {
            true => Batch::Watched,
            false => Batch::Unlimited,
        }
    }

    /// A batch created `added` new names of `added_bytes` reckoned bytes in `key`, held by
    /// `shard`; `size`: the key's size after it, when asked.
    pub fn added(
        &self,
        key: usize,
        shard: &NodeAddr,
        added: u64,
        added_bytes: u64,
        size: Option<u64>,
    ) {
        let mut state = self.state();
        let reckoning = state.key(key, shard);
        reckoning.added = reckoning.added.saturating_add(added);
        reckoning.added_bytes = reckoning.added_bytes.saturating_add(added_bytes);
        if size.is_some() {
            reckoning.known = size;
        }
        state.judge(&self.limits);
    }

    /// Marks the start of a sample: names added from now on may or may not be in it.
    pub fn mark(&self) -> Mark {
        Mark {
            added: self
                .state()
                .keys
                .iter()
                .map(|k| (k.added, k.added_bytes))
                .collect(),
        }
    }

    /// A new sample, asked for at `mark`. What was added after the mark stays reckoned on top
    /// of it (if the sample already holds some of it, the rule errs on the side of closing).
    pub fn sampled(&self, mark: &Mark, sample: MemorySample) {
        let mut state = self.state();
        for (addr, memory) in &sample.memory {
            let shard = state.shard(addr);
            state.shards[shard].memory = *memory;
        }
        for (key, addr, size) in &sample.keys {
            let (before, before_bytes) = mark.added.get(*key).copied().unwrap_or((0, 0));
            let reckoning = state.key(*key, addr);
            if size.is_some() {
                reckoning.sampled = *size;
                reckoning.known = *size;
            }
            reckoning.added = reckoning.added.saturating_sub(before);
            reckoning.added_bytes = reckoning.added_bytes.saturating_sub(before_bytes);
        }
        // Primaries that hold no key any more (a failover replaced them) are forgotten.
        state.forget_empty_shards();
        state.judge(&self.limits);
    }

    pub fn room(&self) -> Room {
        let state = self.state();
        let admitting =
            state.below_name_cap(self.limits.max_names) && !state.shards.iter().any(|s| s.closed);
        // The primary nearest its watermark stands for the store's memory.
        let fullest = (0..state.shards.len())
            .filter_map(|i| {
                let memory = state.shards[i].memory?;
                let limit = state.limit(i, self.limits.data_limit);
                let ratio = match limit {
                    Some(limit) => memory.used as f64 / limit as f64,
                    None => 0.0,
                };
                Some((ratio, memory, limit))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        Room {
            used_memory: fullest.map(|(_, m, _)| m.used),
            max_memory: fullest.map(|(_, m, limit)| limit.unwrap_or(m.max)),
            names: state.names(),
            admitting,
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn node(name: &str) -> NodeAddr {
        NodeAddr {
            host: name.into(),
            port: 6379,
        }
    }

    /// Standalone Redis: one primary holding the one key.
    struct One(Admission);

    impl One {
        fn batch(&self) -> Batch {
            self.0.batch(0, &node("a"))
        }

        fn added(&self, added: u64, bytes: u64, size: Option<u64>) {
            self.0.added(0, &node("a"), added, bytes, size);
        }

        /// A sample asked for at `mark`: `memory` as (used, max).
        fn sampled_at(&self, mark: &Mark, memory: Option<(u64, u64)>, names: u64) {
            self.0.sampled(
                mark,
                MemorySample {
                    memory: vec![(node("a"), memory.map(|(used, max)| Memory { used, max }))],
                    keys: vec![(0, node("a"), Some(names))],
                },
            );
        }

        fn sampled(&self, memory: Option<(u64, u64)>, names: u64) {
            self.sampled_at(&self.0.mark(), memory, names);
        }

        fn room(&self) -> Room {
            self.0.room()
        }
    }

    fn admission(max_memory_percent: u8, max_names: Option<u64>) -> One {
        One(Admission::new(AdmissionLimits {
            max_memory_percent,
            max_names,
            data_limit: None,
        }))
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
        a.sampled(Some((u64::MAX / 2, 0)), 10);
        assert_eq!(a.batch(), Batch::Unlimited);
        // A cap not known to be reached yet: admitted, and watched.
        assert_eq!(admission(90, Some(5)).batch(), Batch::Watched);
    }

    #[test]
    fn the_memory_watermark_closes_at_its_percentage_of_maxmemory() {
        let a = admission(90, None);
        a.sampled(Some((89 * MB, 100 * MB)), 0);
        assert_eq!(a.batch(), Batch::Watched);
        a.sampled(Some((90 * MB, 100 * MB)), 0);
        assert_eq!(a.batch(), Batch::KnownOnly);
        assert!(!a.room().admitting);
        // Room again (maxmemory raised, or names removed): open at the next sample.
        a.sampled(Some((90 * MB, 200 * MB)), 0);
        assert_eq!(a.batch(), Batch::Watched);
        assert!(a.room().admitting);
        let full = admission(100, None);
        full.sampled(Some((100 * MB - 1, 100 * MB)), 0);
        assert_eq!(full.batch(), Batch::Watched);
    }

    #[test]
    fn once_closed_by_memory_it_opens_a_hundredth_of_the_watermark_below_it() {
        let a = admission(90, None);
        let max = 100 * MB;
        let line = 90 * MB;
        a.sampled(Some((line, max)), 0);
        assert_eq!(a.batch(), Batch::KnownOnly);
        // Just under the line, within the margin: still closed.
        a.sampled(Some((line - line / 100, max)), 0);
        assert_eq!(a.batch(), Batch::KnownOnly);
        a.sampled(Some((line - line / 100 - 1, max)), 0);
        assert_eq!(a.batch(), Batch::Watched);
        // Open, the margin does not apply: it closes at the line itself.
        a.sampled(Some((line - 1, max)), 0);
        assert_eq!(a.batch(), Batch::Watched);
        // An unknown memory (INFO refused) or no limit opens it.
        a.sampled(Some((line, max)), 0);
        a.sampled(None, 0);
        assert_eq!(a.batch(), Batch::Unlimited);
    }

    #[test]
    fn names_this_task_adds_close_the_rule_before_the_next_sample() {
        let a = admission(90, None);
        a.sampled(Some((80 * MB, 100 * MB)), 1000);
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
        a.sampled(Some((80 * MB, 100 * MB)), 0);
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
        a.sampled(None, 99);
        assert_eq!(a.batch(), Batch::Watched);
        a.added(1, name_bytes(5), Some(100));
        assert_eq!(a.batch(), Batch::KnownOnly);
        assert_eq!(a.room().names, Some(100));
        let frozen = admission(90, Some(0));
        frozen.sampled(None, 0);
        assert_eq!(frozen.batch(), Batch::KnownOnly);
    }

    #[test]
    fn names_added_while_a_sample_is_taken_stay_reckoned_after_it() {
        let a = admission(90, None);
        a.sampled(Some((80 * MB, 100 * MB)), 0);
        a.added(3, 3000, Some(3));
        let mark = a.0.mark();
        // Added after the mark: maybe not in the sample.
        a.added(2, 2000, Some(5));
        a.sampled_at(&mark, Some((81 * MB, 100 * MB)), 4);
        let state = a.0.state();
        assert_eq!((state.keys[0].added, state.keys[0].added_bytes), (2, 2000));
        assert_eq!(state.used_now(0), 81 * MB + 2000);
    }

    /// A cluster of two primaries, `a` holding keys 0 and 1, `b` holding key 2.
    fn two_shards(limits: AdmissionLimits, used: (u64, u64), sizes: [u64; 3]) -> Admission {
        let a = Admission::new(limits);
        a.sampled(
            &a.mark(),
            MemorySample {
                memory: vec![
                    (
                        node("a"),
                        Some(Memory {
                            used: used.0,
                            max: 100 * MB,
                        }),
                    ),
                    (
                        node("b"),
                        Some(Memory {
                            used: used.1,
                            max: 100 * MB,
                        }),
                    ),
                ],
                keys: vec![
                    (0, node("a"), Some(sizes[0])),
                    (1, node("a"), Some(sizes[1])),
                    (2, node("b"), Some(sizes[2])),
                ],
            },
        );
        a
    }

    #[test]
    fn each_primary_is_judged_on_its_own_memory() {
        let a = two_shards(AdmissionLimits::default(), (95 * MB, 50 * MB), [10, 20, 30]);
        assert_eq!(a.batch(0, &node("a")), Batch::KnownOnly);
        assert_eq!(a.batch(1, &node("a")), Batch::KnownOnly);
        assert_eq!(a.batch(2, &node("b")), Batch::Watched);
        // Not every new name is counted: the store does not say it admits.
        let room = a.room();
        assert!(!room.admitting);
        assert_eq!(room.names, Some(60));
        // The fullest primary stands for the memory.
        assert_eq!(
            (room.used_memory, room.max_memory),
            (Some(95 * MB), Some(100 * MB))
        );
        // What the lane adds to b's key closes b alone.
        let each = name_bytes(MAX_NAME_BYTES);
        let n = 41 * MB / each;
        a.added(2, &node("b"), n, n * each, Some(30 + n));
        assert_eq!(a.batch(2, &node("b")), Batch::KnownOnly);
    }

    #[test]
    fn the_names_cap_counts_every_key() {
        let limits = AdmissionLimits {
            max_names: Some(60),
            ..AdmissionLimits::default()
        };
        let a = two_shards(limits, (MB, MB), [10, 20, 29]);
        assert_eq!(a.batch(2, &node("b")), Batch::Watched);
        a.added(0, &node("a"), 1, name_bytes(3), Some(11));
        assert_eq!(a.batch(2, &node("b")), Batch::KnownOnly);
    }

    #[test]
    fn a_key_that_moved_is_reckoned_with_its_new_primary_and_gone_primaries_are_forgotten() {
        let a = two_shards(AdmissionLimits::default(), (95 * MB, 50 * MB), [10, 20, 30]);
        // Key 1 now lives on b (a reshard), and a sample no longer sees a.
        assert_eq!(a.batch(1, &node("b")), Batch::Watched);
        a.sampled(
            &a.mark(),
            MemorySample {
                memory: vec![(
                    node("b"),
                    Some(Memory {
                        used: 50 * MB,
                        max: 100 * MB,
                    }),
                )],
                keys: vec![
                    (0, node("b"), Some(10)),
                    (1, node("b"), Some(20)),
                    (2, node("b"), Some(30)),
                ],
            },
        );
        assert!(a.room().admitting);
        assert_eq!(a.state().shards.len(), 1);
    }

    #[test]
    fn a_key_no_primary_serves_leaves_the_others_in_their_places() {
        let a = two_shards(AdmissionLimits::default(), (50 * MB, 50 * MB), [10, 20, 30]);
        // Key 1's slot has no primary during this sample: it is left out, and key 2 is still
        // key 2, on b, with its new size.
        a.sampled(
            &a.mark(),
            MemorySample {
                memory: vec![],
                keys: vec![(0, node("a"), Some(11)), (2, node("b"), Some(31))],
            },
        );
        let state = a.state();
        let on = |key: usize| &state.shards[state.keys[key].shard].addr;
        assert_eq!((on(1), state.keys[1].known), (&node("a"), Some(20)));
        assert_eq!((on(2), state.keys[2].known), (&node("b"), Some(31)));
    }

    #[test]
    fn a_data_limit_stands_in_for_a_maxmemory_redis_does_not_state() {
        let limits = AdmissionLimits {
            data_limit: Some(100 * MB),
            ..AdmissionLimits::default()
        };
        let a = One(Admission::new(limits));
        a.sampled(Some((89 * MB, 0)), 0);
        assert_eq!(a.batch(), Batch::Watched);
        a.sampled(Some((90 * MB, 0)), 0);
        assert_eq!(a.batch(), Batch::KnownOnly);
        assert_eq!(a.room().max_memory, Some(100 * MB));
        // A lower maxmemory than the limit is the one that holds.
        a.sampled(Some((45 * MB, 50 * MB)), 0);
        assert_eq!(a.batch(), Batch::KnownOnly);
        // No used_memory at all: the names are reckoned at the largest size.
        let worst = name_bytes(MAX_NAME_BYTES);
        let line = 90 * MB / worst;
        a.sampled(None, 0);
        assert_eq!(a.batch(), Batch::Watched);
        a.sampled(None, line - 1);
        assert_eq!(a.batch(), Batch::Watched);
        a.sampled(None, line + 1);
        assert_eq!(a.batch(), Batch::KnownOnly);
    }
}
