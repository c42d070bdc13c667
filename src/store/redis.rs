//! The production store: Redis sorted sets, one key on standalone Redis and a family of keys
//! spread over a cluster's slots, each command under one deadline. Greetings come from the
//! store lane, one batch at a time: a name greeted several times in a batch is one `ZINCRBY`
//! by that many, sent as `ZINCRBY` while new names are admitted and as `ZADD … XX INCR` (known
//! names only) while they are not (see `admission`), one pipeline per primary, followed by a
//! `WAIT` when greetings must reach replicas before they are answered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::admission::{name_bytes, Admission, Batch, Memory, MemorySample, Room};
use super::connection::{Connector, TlsSetupError};
use super::merge::MergedScan;
use super::nodes::{ClusterNodes, Command, CommandRunner, Delivery, Layout, Mode};
use super::replies::{classify, count_of, memory_from_info, read_failure};
use super::resp::RedisReply;
use super::scan::{RankWindow, Scan, ScanRequest};
use super::settings::{RedisMode, RedisSettings};
use super::single::SingleKeyScan;
use super::slots::KeyFamily;
use super::topology::NodeAddr;
use super::{NameCount, Order, Store, StoreError, StoreStats};

pub struct RedisStore {
    nodes: ClusterNodes,
    /// `REDIS_URL` or `REDIS_CLUSTER_ADDRESS` without credentials, for logs.
    endpoint: String,
    setting: RedisMode,
    /// The one key of standalone Redis, and the family a cluster spreads the names over.
    single: KeyFamily,
    spread: KeyFamily,
    timeout: Duration,
    /// Replicas each batch's writes must reach before its greetings are answered 200.
    wait_replicas: Option<u8>,
    /// Whether new names are admitted, from the samples and what the lane added since.
    admission: Admission,
    /// Set once `INFO` has been refused (an ACL without it), so that it is logged once.
    info_refused: AtomicBool,
    /// Set once the mode found at first use has been logged.
    announced: AtomicBool,
    batches: AtomicU64,
    unreplicated: AtomicU64,
}

/// One name's increments in a batch: the name greeted `times` times, in key `key`.
struct Group<'a> {
    name: &'a str,
    key: usize,
    times: u64,
}

impl RedisStore {
    /// Nothing is connected until first use.
    pub fn new(settings: RedisSettings) -> Result<RedisStore, TlsSetupError> {
        let endpoint = settings.endpoint.to_string();
        let connector = Connector::new(settings.endpoint, settings.tls_ca_file.as_deref())?;
        Ok(RedisStore {
            nodes: ClusterNodes::new(
                settings.mode,
                connector,
                settings.max_connections,
                settings.timeout,
            ),
            endpoint,
            setting: settings.mode,
            single: KeyFamily::single(&settings.key),
            spread: KeyFamily::spread(&settings.key, settings.key_shards),
            timeout: settings.timeout,
            wait_replicas: (settings.wait_replicas > 0).then_some(settings.wait_replicas),
            admission: Admission::new(settings.limits),
            info_refused: AtomicBool::new(false),
            announced: AtomicBool::new(false),
            batches: AtomicU64::new(0),
            unreplicated: AtomicU64::new(0),
        })
    }

    fn family(&self, mode: Mode) -> &KeyFamily {
        match mode {
            Mode::Standalone => &self.single,
            Mode::Cluster => &self.spread,
        }
    }

    /// The servers as known, found out at first use (and said so, once).
    fn layout(&self, deadline: Instant) -> Result<Arc<Layout>, StoreError> {
        let layout = self.nodes.layout(deadline)?;
        if !self.announced.swap(true, Ordering::Relaxed) {
            let how = match self.setting {
                RedisMode::Detect => "asked of Redis",
                RedisMode::Standalone | RedisMode::Cluster => "REDIS_MODE",
            };
            match layout.mode {
                Mode::Standalone => log::info!(
                    "Redis at {} is standalone ({how}): every name in the key {:?}",
                    self.endpoint,
                    self.single.key(0)
                ),
                Mode::Cluster => log::info!(
                    "Redis at {} is a cluster ({how}) of {} primaries: names spread over {} keys, {} … {}",
                    self.endpoint,
                    layout.map.primaries().len(),
                    self.spread.size(),
                    self.spread.key(0),
                    self.spread.key(self.spread.size() - 1)
                ),
            }
        }
        Ok(layout)
    }

    /// One batch of increments: the single place they are sent, and their failures told
    /// apart. Nothing in it is ever retried after it may have run. Each greeting's result is
    /// its own: a name greeted `k` times is one increment by `k`, and its greetings get the
    /// counts up to the new total, in the order they came; a reply that came is a count (or
    /// Redis's refusal), whatever happens to the others; the increments whose replies did not
    /// come have an unknown outcome, unless not one byte of them was sent. With
    /// `REDIS_WAIT_REPLICAS`, a count is a 200 only if its pipeline's `WAIT` says enough
    /// replicas have it; otherwise its outcome is unknown (a failover may lose it).
    fn increments(&self, names: &[&str]) -> Vec<Result<i64, StoreError>> {
        self.batches.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + self.timeout;
        let layout = match self.layout(deadline) {
            Ok(layout) => layout,
            Err(e) => return names.iter().map(|_| Err(e.clone())).collect(),
        };
        let family = self.family(layout.mode);
        let (groups, places) = collapse(family, names);
        // How each key's increments go, as its primary's room says.
        let mut kinds: HashMap<usize, Batch> = HashMap::new();
        for group in &groups {
            kinds.entry(group.key).or_insert_with(|| {
                match layout.map.owner(family.slot(group.key)) {
                    Some(owner) => self.admission.batch(group.key, owner),
                    // Nothing will be sent there: no rule to judge.
                    None => Batch::Unlimited,
                }
            });
        }
        let mut commands: Vec<Command> = groups
            .iter()
            .map(|g| {
                let (key, times) = (family.key(g.key).as_bytes(), g.times.to_string());
                let (name, times) = (g.name.as_bytes(), times.as_bytes());
                let slot = family.slot(g.key);
                match kinds[&g.key] {
                    Batch::KnownOnly => {
                        Command::for_slot(slot, &[b"ZADD", key, b"XX", b"INCR", times, name])
                    }
                    Batch::Unlimited | Batch::Watched => {
                        Command::for_slot(slot, &[b"ZINCRBY", key, times, name])
                    }
                }
            })
            .collect();
        let mut watched: Vec<usize> = kinds
            .iter()
            .filter(|(_, kind)| **kind == Batch::Watched)
            .map(|(key, _)| *key)
            .collect();
        watched.sort_unstable();
        for key in &watched {
            commands.push(Command::for_slot(
                family.slot(*key),
                &[b"ZCARD", family.key(*key).as_bytes()],
            ));
        }
        let mut sent = self
            .nodes
            .run(&layout, &commands, self.wait_replicas, deadline);
        let sizes = sent.split_off(groups.len());
        let (results, created): (Vec<Result<i64, StoreError>>, Vec<bool>) = groups
            .iter()
            .zip(sent)
            .map(|(group, sent)| self.group_result(group, kinds[&group.key], sent))
            .unzip();
        self.reckon(&layout, family, &groups, &created, &watched, sizes);
        places
            .into_iter()
            .map(|(group, behind)| match &results[group] {
                Ok(total) => Ok(total.saturating_sub(behind as i64)),
                Err(e) => Err(e.clone()),
            })
            .collect()
    }

    /// The new total of one name's increments, from what became of its command; and whether
    /// it created the name (whatever its `WAIT` said: the member is there).
    fn group_result(
        &self,
        group: &Group,
        kind: Batch,
        sent: Delivery,
    ) -> (Result<i64, StoreError>, bool) {
        let (reply, replicas) = match sent {
            Delivery::NotSent(e) | Delivery::Unanswered(e) => return (Err(e), false),
            Delivery::Replied {
                reply, replicas, ..
            } => (reply, replicas),
        };
        let count = match count_from(reply, kind) {
            Ok(count) => count,
            Err(e) => return (Err(e), false),
        };
        let created = kind != Batch::KnownOnly && count == group.times as i64;
        let (Some(wanted), Some(replicas)) = (self.wait_replicas, replicas) else {
            return (Ok(count), created);
        };
        let short = match replicas {
            Ok(n) if n >= u64::from(wanted) => return (Ok(count), created),
            Ok(n) => format!("counted, but WAIT saw it on {n} of {wanted} replicas in time"),
            Err(why) => format!("counted, but whether a replica has it is not known: {why}"),
        };
        self.unreplicated.fetch_add(group.times, Ordering::Relaxed);
        (Err(StoreError::OutcomeUnknown(short)), created)
    }

    /// Tells admission what the batch added, key by key: the names it created, and the size
    /// a `ZCARD` gave.
    fn reckon(
        &self,
        layout: &Layout,
        family: &KeyFamily,
        groups: &[Group],
        created: &[bool],
        watched: &[usize],
        sizes: Vec<Delivery>,
    ) {
        let mut added: HashMap<usize, (u64, u64)> = HashMap::new();
        for (group, created) in groups.iter().zip(created) {
            let entry = added.entry(group.key).or_default();
            if *created {
                entry.0 += 1;
                entry.1 += name_bytes(group.name.len());
            }
        }
        let mut sizes: HashMap<usize, (Option<u64>, Option<NodeAddr>)> = watched
            .iter()
            .zip(sizes)
            .map(|(key, sent)| match sent {
                Delivery::Replied {
                    reply: RedisReply::Integer(n),
                    from,
                    ..
                } => (*key, (u64::try_from(n).ok(), Some(from))),
                _ => (*key, (None, None)),
            })
            .collect();
        for (key, (names, bytes)) in added {
            let (size, from) = sizes.remove(&key).unwrap_or((None, None));
            let owner = from.or_else(|| layout.map.owner(family.slot(key)).cloned());
            if let Some(owner) = owner {
                self.admission.added(key, &owner, names, bytes, size);
            }
        }
    }

    /// `ZCARD` of every key of the family, summed.
    fn count_names(&self, deadline: Instant) -> Result<u64, StoreError> {
        let layout = self.layout(deadline)?;
        let family = self.family(layout.mode);
        let commands: Vec<Command> = family
            .keys()
            .enumerate()
            .map(|(i, key)| Command::for_slot(family.slot(i), &[b"ZCARD", key.as_bytes()]))
            .collect();
        let mut total = 0u64;
        for sent in self.nodes.run(&layout, &commands, None, deadline) {
            total = total.saturating_add(size_from(sent)?);
        }
        Ok(total)
    }
}

impl RedisStore {
    /// Standalone or cluster, found out first if it is not known yet.
    pub(super) fn mode(&self, deadline: Instant) -> Result<Mode, StoreError> {
        Ok(self.layout(deadline)?.mode)
    }

    /// Standalone Redis's one key, and the family a cluster spreads the names over.
    pub(super) fn families(&self) -> (&KeyFamily, &KeyFamily) {
        (&self.single, &self.spread)
    }
}

/// The batch's names grouped by name, in the order each first came, and for each greeting its
/// group and how many greetings of that name came after it (its count is the group's new
/// total less that).
fn collapse<'a>(family: &KeyFamily, names: &[&'a str]) -> (Vec<Group<'a>>, Vec<(usize, u64)>) {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(names.len());
    let mut places = Vec::with_capacity(names.len());
    for name in names {
        let group = *index.entry(name).or_insert_with(|| {
            groups.push(Group {
                name,
                key: family.key_of(name.as_bytes()),
                times: 0,
            });
            groups.len() - 1
        });
        groups[group].times += 1;
        places.push((group, groups[group].times));
    }
    let places = places
        .into_iter()
        .map(|(group, nth)| (group, groups[group].times - nth))
        .collect();
    (groups, places)
}

/// An increment's new total from its reply.
fn count_from(reply: RedisReply, batch: Batch) -> Result<i64, StoreError> {
    let command = match batch {
        Batch::KnownOnly => "ZADD XX INCR",
        Batch::Unlimited | Batch::Watched => "ZINCRBY",
    };
    match reply {
        // Redis refused to run it (`OOM`, `READONLY`, `LOADING`, a wrong type): not applied.
        RedisReply::Error(e) => Err(classify(e)),
        RedisReply::Bulk(score) => count_of(&score).ok_or_else(|| {
            StoreError::Refused(format!("{command} answered a score that is not a number"))
        }),
        // `XX`: the name is not in the set, and was not added.
        RedisReply::Nil if batch == Batch::KnownOnly => Err(StoreError::NamesFull),
        other => Err(StoreError::Refused(other.unexpected(command))),
    }
}

/// A key's size from what became of its `ZCARD`.
fn size_from(sent: Delivery) -> Result<u64, StoreError> {
    match sent {
        Delivery::Replied {
            reply: RedisReply::Integer(n),
            ..
        } => Ok(u64::try_from(n).unwrap_or(0)),
        Delivery::Replied {
            reply: RedisReply::Error(e),
            ..
        } => Err(classify(e)),
        Delivery::Replied { reply, .. } => Err(StoreError::Refused(reply.unexpected("ZCARD"))),
        Delivery::NotSent(e) | Delivery::Unanswered(e) => Err(read_failure(e)),
    }
}

impl CommandRunner for RedisStore {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn run(&self, commands: &[Command], deadline: Instant) -> Result<Vec<Delivery>, StoreError> {
        let layout = self.layout(deadline)?;
        Ok(self.nodes.run(&layout, commands, None, deadline))
    }
}

impl Store for RedisStore {
    fn increment(&self, name: &str) -> Result<i64, StoreError> {
        // One name, one result; were it missing, the command may still have been sent.
        self.increments(&[name]).pop().unwrap_or_else(|| {
            Err(StoreError::OutcomeUnknown(
                "no result for an increment".into(),
            ))
        })
    }

    fn increment_batch(&self, names: &[&str]) -> Vec<Result<i64, StoreError>> {
        self.increments(names)
    }

    fn scan(self: Arc<Self>, request: ScanRequest) -> Box<dyn Scan> {
        Box::new(RedisListing::Undecided(self, request))
    }

    fn names(&self) -> Result<u64, StoreError> {
        self.count_names(Instant::now() + self.timeout)
    }

    fn refresh(&self) -> Result<(), StoreError> {
        let deadline = Instant::now() + self.timeout;
        self.nodes.refresh(deadline)?;
        let layout = self.layout(deadline)?;
        let family = self.family(layout.mode);
        // Names the lane adds from now on may or may not be in what Redis answers.
        let mark = self.admission.mark();
        let primaries = layout.map.primaries();
        let mut commands: Vec<Command> = primaries
            .iter()
            .map(|p| Command::for_node(p, &[b"INFO", b"memory"]))
            .collect();
        commands.extend(
            family
                .keys()
                .enumerate()
                .map(|(i, key)| Command::for_slot(family.slot(i), &[b"ZCARD", key.as_bytes()])),
        );
        let mut sent = self.nodes.run(&layout, &commands, None, deadline);
        let sizes = sent.split_off(primaries.len());
        let mut failure = None;
        let mut sample = MemorySample::default();
        for (primary, sent) in primaries.iter().zip(sent) {
            let memory = match sent {
                Delivery::Replied {
                    reply: RedisReply::Bulk(text),
                    ..
                } => memory_from_info(&text).map(|(used, max)| Memory { used, max }),
                Delivery::Replied {
                    reply: RedisReply::Error(e),
                    ..
                } => {
                    if !self.info_refused.swap(true, Ordering::Relaxed) {
                        log::warn!(
                            "Redis refused INFO ({e}): new names are admitted whatever its memory"
                        );
                    }
                    None
                }
                Delivery::Replied { .. } => None,
                Delivery::NotSent(e) | Delivery::Unanswered(e) => {
                    failure.get_or_insert(read_failure(e));
                    None
                }
            };
            sample.memory.push((primary.clone(), memory));
        }
        for (i, sent) in sizes.into_iter().enumerate() {
            let owner = match &sent {
                Delivery::Replied { from, .. } => Some(from.clone()),
                _ => layout.map.owner(family.slot(i)).cloned(),
            };
            let size = match size_from(sent) {
                Ok(size) => Some(size),
                Err(e) => {
                    failure.get_or_insert(e);
                    None
                }
            };
            if let Some(owner) = owner {
                sample.keys.push((i, owner, size));
            }
        }
        self.admission.sampled(&mark, sample);
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn room(&self) -> Room {
        self.admission.room()
    }

    fn stats(&self) -> StoreStats {
        let nodes = self.nodes.stats();
        StoreStats {
            pool: nodes.pool,
            batches: self.batches.load(Ordering::Relaxed),
            redirects: nodes.redirects,
            topology_refreshes: nodes.refreshes,
            unreplicated: self.unreplicated.load(Ordering::Relaxed),
        }
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

/// A listing, decided at its first chunk: standalone Redis's one key read in ranges, or a
/// cluster's keys merged.
enum RedisListing {
    Undecided(Arc<RedisStore>, ScanRequest),
    Single(SingleKeyScan),
    Merged(MergedScan),
    Failed,
}

impl Scan for RedisListing {
    fn next_chunk(&mut self) -> Result<Vec<NameCount>, StoreError> {
        if let RedisListing::Undecided(store, request) = self {
            let (store, request) = (Arc::clone(store), *request);
            let layout = match store.layout(Instant::now() + store.timeout) {
                Ok(layout) => layout,
                Err(e) => {
                    *self = RedisListing::Failed;
                    return Err(e);
                }
            };
            *self = match layout.mode {
                Mode::Standalone => RedisListing::Single(SingleKeyScan::new(
                    store.single.key(0).to_owned(),
                    match request.order {
                        Order::Ascending => "ZRANGE",
                        Order::Descending => "ZREVRANGE",
                    },
                    RankWindow::new(&request),
                    Arc::clone(store.nodes.seed_pool()),
                    store.timeout,
                )),
                Mode::Cluster => {
                    let family = store.spread.clone();
                    RedisListing::Merged(MergedScan::new(store, family, request))
                }
            };
        }
        match self {
            RedisListing::Single(scan) => scan.next_chunk(),
            RedisListing::Merged(scan) => scan.next_chunk(),
            RedisListing::Undecided(..) | RedisListing::Failed => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_collapses_each_name_and_each_greeting_gets_its_own_count() {
        let family = KeyFamily::spread("k", 64);
        let (groups, places) = collapse(&family, &["Bob", "Ann", "Bob", "Bob", "Cy", "Ann"]);
        let named: Vec<(&str, u64)> = groups.iter().map(|g| (g.name, g.times)).collect();
        assert_eq!(named, [("Bob", 3), ("Ann", 2), ("Cy", 1)]);
        assert_eq!(groups[0].key, family.key_of(b"Bob"));
        // Bob's total after `ZINCRBY k 3 Bob` answering 10: his greetings get 8, 9 and 10.
        assert_eq!(places, [(0, 2), (1, 1), (0, 1), (0, 0), (2, 0), (1, 0)]);
    }

    #[test]
    fn increment_replies_by_how_the_batch_was_sent() {
        assert_eq!(
            count_from(RedisReply::bulk("4"), Batch::Watched).unwrap(),
            4
        );
        assert_eq!(
            count_from(RedisReply::bulk("4"), Batch::KnownOnly).unwrap(),
            4
        );
        // `XX`: a name not in the set was left out.
        assert!(matches!(
            count_from(RedisReply::Nil, Batch::KnownOnly),
            Err(StoreError::NamesFull)
        ));
        assert!(matches!(
            count_from(RedisReply::Nil, Batch::Unlimited),
            Err(StoreError::Refused(_))
        ));
        let oom = RedisReply::Error(super::super::resp::ServerError {
            line: "OOM command not allowed".into(),
        });
        assert!(matches!(
            count_from(oom, Batch::KnownOnly),
            Err(StoreError::Full(_))
        ));
    }
}
