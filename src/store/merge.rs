//! A cluster's listing: the keys of the family each read in ranges, merged into one list in
//! `ZRANGE` order (count, then name bytewise; `ZREVRANGE`'s for descending), so that `offset`
//! and `limit` mean what they mean on one key. A k-way merge: each key holds about a page at a
//! time (read again when a quarter of a page is left), so memory is bounded by the keys times the page, not by the number of names.
//! Entries before the offset are read and passed over: an offset costs what reading that far
//! costs. Each round of pages goes out as one pipeline per primary, for every key that runs
//! low at once, and no connection is held between rounds.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::nodes::{Command, CommandRunner, Delivery};
use super::replies::{classify, name_count, read_failure, score_of, to_pairs};
use super::resp::RedisReply;
use super::scan::{Scan, ScanRequest};
use super::slots::KeyFamily;
use super::{NameCount, Order, StoreError};

/// Fewest entries asked of one key at a time: with many keys, a page per key of the listing's
/// chunk divided among them would make every round trip carry a handful.
const MIN_PAGE: usize = 16;

pub struct MergedScan {
    store: Arc<dyn CommandRunner>,
    family: KeyFamily,
    order: Order,
    /// Entries still to pass over before the first one listed.
    skip: u64,
    /// Entries still to list, when limited.
    remaining: Option<u64>,
    chunk: usize,
    /// Entries asked of one key at a time.
    page: usize,
    keys: Vec<KeyCursor>,
    /// The first entry of each key that has one in hand, best first.
    heads: BinaryHeap<Front>,
    /// Whether the first round has been asked for.
    started: bool,
}

/// What is read of one key.
#[derive(Default)]
struct KeyCursor {
    /// Rank of the next entry to ask for.
    next: u64,
    /// Entries read and not yet merged, after the one among the heads.
    buffer: VecDeque<Member>,
    /// A page came back short: nothing more to ask for.
    ended: bool,
    /// Its head was taken and its buffer is empty: it must be read before the merge goes on.
    wanting: bool,
}

struct Member {
    name: Vec<u8>,
    score: f64,
    text: String,
}

/// A key's first entry, ordered so that the best (the next to list) is the greatest.
struct Front {
    member: Member,
    key: usize,
    descending: bool,
}

impl Front {
    /// Ascending order of the listing: by score, then name bytewise.
    fn listing_order(&self, other: &Front) -> Ordering {
        self.member
            .score
            .total_cmp(&other.member.score)
            .then_with(|| self.member.name.cmp(&other.member.name))
    }
}

impl Ord for Front {
    fn cmp(&self, other: &Front) -> Ordering {
        match self.descending {
            true => self.listing_order(other),
            // The heap gives the greatest first: for ascending order, the smallest is greatest.
            false => other.listing_order(self),
        }
    }
}

impl PartialOrd for Front {
    fn partial_cmp(&self, other: &Front) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Front {
    fn eq(&self, other: &Front) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Front {}

impl MergedScan {
    pub fn new(
        store: Arc<dyn CommandRunner>,
        family: KeyFamily,
        request: ScanRequest,
    ) -> MergedScan {
        let mut page = (request.chunk / family.size().max(1)).max(MIN_PAGE);
        // A short listing asks each key for no more than the listing could take from it.
        if let Some(limit) = request.limit {
            let reach = request.start.saturating_add(limit);
            page = page.min(usize::try_from(reach).unwrap_or(usize::MAX).max(1));
        }
        MergedScan {
            keys: (0..family.size()).map(|_| KeyCursor::default()).collect(),
            store,
            family,
            order: request.order,
            skip: request.start,
            remaining: request.limit,
            chunk: request.chunk,
            page,
            heads: BinaryHeap::new(),
            started: false,
        }
    }

    /// Reads the next page of every key that is wanting, and of those running low with it,
    /// as one pipeline per primary; their heads join the merge.
    fn read_pages(&mut self) -> Result<(), StoreError> {
        let low = (self.page / 4).max(1);
        let asked: Vec<usize> = (0..self.keys.len())
            .filter(|&k| {
                let key = &self.keys[k];
                !key.ended && (!self.started || key.wanting || key.buffer.len() < low)
            })
            .collect();
        self.started = true;
        if asked.is_empty() {
            return Ok(());
        }
        let command: &[u8] = match self.order {
            Order::Ascending => b"ZRANGE",
            Order::Descending => b"ZREVRANGE",
        };
        let commands: Vec<Command> = asked
            .iter()
            .map(|&k| {
                let start = self.keys[k].next;
                let stop = start.saturating_add(self.page as u64 - 1);
                Command::for_slot(
                    self.family.slot(k),
                    &[
                        command,
                        self.family.key(k).as_bytes(),
                        start.to_string().as_bytes(),
                        stop.to_string().as_bytes(),
                        b"WITHSCORES",
                    ],
                )
            })
            .collect();
        let deadline = Instant::now() + self.store.timeout();
        let sent = self.store.run(&commands, deadline)?;
        let name = String::from_utf8_lossy(command).into_owned();
        for (k, sent) in asked.into_iter().zip(sent) {
            let pairs = match sent {
                Delivery::Replied {
                    reply: RedisReply::Error(e),
                    ..
                } => return Err(classify(e)),
                Delivery::Replied { reply, .. } => to_pairs(reply, &name)?,
                // A read is safe to ask again: unavailable, whatever went out.
                Delivery::NotSent(e) | Delivery::Unanswered(e) => return Err(read_failure(e)),
            };
            let key = &mut self.keys[k];
            key.ended = pairs.len() < self.page;
            key.next = key.next.saturating_add(pairs.len() as u64);
            for (name, text) in pairs {
                let score = score_of(&text).unwrap_or(0.0);
                key.buffer.push_back(Member { name, score, text });
            }
            if key.wanting {
                key.wanting = false;
                if let Some(member) = key.buffer.pop_front() {
                    self.heads.push(Front {
                        member,
                        key: k,
                        descending: self.order == Order::Descending,
                    });
                }
            }
        }
        Ok(())
    }
}

impl Scan for MergedScan {
    fn next_chunk(&mut self) -> Result<Vec<NameCount>, StoreError> {
        if !self.started {
            for key in &mut self.keys {
                key.wanting = true;
            }
            self.read_pages()?;
        }
        let mut chunk = Vec::new();
        while chunk.len() < self.chunk && self.remaining != Some(0) {
            // Every key that may hold the next entry has its head among the heads.
            if self.keys.iter().any(|k| k.wanting && !k.ended) {
                self.read_pages()?;
                continue;
            }
            let Some(head) = self.heads.pop() else {
                break;
            };
            let key = &mut self.keys[head.key];
            match key.buffer.pop_front() {
                Some(member) => self.heads.push(Front {
                    member,
                    key: head.key,
                    descending: head.descending,
                }),
                None => key.wanting = !key.ended,
            }
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            if let Some(remaining) = &mut self.remaining {
                *remaining -= 1;
            }
            chunk.push(name_count(head.member.name, head.member.text));
        }
        Ok(chunk)
    }
}
