//! `hello migrate-keys`: the counts of the one key standalone Redis kept (`REDIS_KEY`, e.g.
//! restored into a cluster from a standalone snapshot) moved into the cluster's family of keys,
//! where the service in cluster mode reads and counts them. Safe to run twice and to run again
//! after it stopped half-way, and while the service counts.
//!
//! How it keeps each count moved exactly once:
//! 1. The key is renamed out of the way first (`RENAME nytimes.names {nytimes.names}:migrating`,
//!    the same slot), so that what is moved does not change while it moves, and a writer that
//!    still uses the old key cannot slip names in behind it.
//! 2. The frozen key is read in pages of [`PAGE`] by rank. Each family key gets each page's
//!    names in one script (`EVAL`), which adds them (`ZINCRBY`: counts the service made
//!    meanwhile stay) and moves that key's cursor (`nytimes.names:{7}:migrated`, in the key's
//!    own slot) past the page, atomically: a page a key already has is passed over.
//! 3. When every cursor has reached the end, the frozen key is deleted, then the cursors.
//!
//! A run that stops anywhere leaves the frozen key and the cursors; the next run carries on from
//! the lowest cursor. Until the end, the set is in Redis twice: the cluster needs room for it.

use std::time::Instant;

use super::nodes::{Command, CommandRunner, Delivery, Mode};
use super::redis::RedisStore;
use super::replies::{classify, to_pairs};
use super::resp::RedisReply;
use super::slots::{key_slot, KeyFamily};
use super::StoreError;

/// Names read from the frozen key at a time.
pub const PAGE: u64 = 1000;

/// Adds a page's names to a family key and moves its cursor past the page, unless the cursor is
/// past it already. `KEYS`: the family key and its cursor; `ARGV`: the page's first rank, the
/// rank after it, then names and scores.
const MOVE_PAGE: &str = "\
local done = tonumber(redis.call('GET', KEYS[2]) or '0')
local first, after = tonumber(ARGV[1]), tonumber(ARGV[2])
if done >= after then return 0 end
if done ~= first then
  return redis.error_reply('ERR migration cursor ' .. done .. ' is not at page ' .. first)
end
for i = 3, #ARGV, 2 do redis.call('ZINCRBY', KEYS[1], ARGV[i + 1], ARGV[i]) end
redis.call('SET', KEYS[2], after)
return 1";

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migrated {
    /// Names moved into the family (0: there was nothing to move).
    pub names: u64,
    /// Whether this run carried on from one that stopped.
    pub resumed: bool,
    /// `REDIS_KEY` holds names again (something still writes it): run again to move them.
    pub written_meanwhile: bool,
}

/// Why a run stopped. It can be run again: it carries on where it stopped.
#[derive(Debug)]
pub enum MigrateError {
    /// Redis is not a cluster: standalone keeps the one key, and there is nothing to move.
    NotACluster,
    Store(StoreError),
}

impl std::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrateError::NotACluster => f.write_str(
                "Redis is standalone: it keeps every name in REDIS_KEY, and there is nothing to move",
            ),
            MigrateError::Store(e) => write!(f, "{e}; run it again to carry on"),
        }
    }
}

impl From<StoreError> for MigrateError {
    fn from(e: StoreError) -> MigrateError {
        MigrateError::Store(e)
    }
}

/// The keys a run works on.
struct Keys<'a> {
    frozen: String,
    family: &'a KeyFamily,
    cursors: Vec<String>,
}

/// Moves `REDIS_KEY`'s counts into the family; `progress` is told the names moved so far and
/// how many there are.
pub fn migrate(
    store: &RedisStore,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Migrated, MigrateError> {
    if store.mode(deadline(store))? != Mode::Cluster {
        return Err(MigrateError::NotACluster);
    }
    let (single, family) = store.families();
    let source = single.key(0);
    let keys = Keys {
        // The same hash tag as the key itself (which holds no brace), so RENAME stays in its
        // slot.
        frozen: format!("{{{source}}}:migrating"),
        family,
        cursors: family.keys().map(|k| format!("{k}:migrated")).collect(),
    };
    let resumed = match exists(store, &keys.frozen)? {
        true => true,
        false => {
            // No run under way: cursors left by one that ended before deleting them are stale.
            delete(store, keys.family, &keys.cursors)?;
            if !exists(store, source)? {
                return Ok(Migrated {
                    names: 0,
                    resumed: false,
                    written_meanwhile: false,
                });
            }
            let renamed = one(
                store,
                Command::for_slot(
                    key_slot(source.as_bytes()),
                    &[b"RENAME", source.as_bytes(), keys.frozen.as_bytes()],
                ),
            )?;
            if let RedisReply::Error(e) = renamed {
                return Err(classify(e).into());
            }
            false
        }
    };
    let total = size(store, &keys.frozen)?;
    let mut next = cursors(store, &keys)?.into_iter().min().unwrap_or(0);
    progress(next.min(total), total);
    while next < total {
        next = move_page(store, &keys, next)?;
        progress(next, total);
    }
    // Every key has every page: the frozen copy goes, then the cursors.
    if cursors(store, &keys)?.into_iter().any(|c| c < total) {
        return Err(
            StoreError::Refused("a cursor is behind the end after the last page".into()).into(),
        );
    }
    delete(
        store,
        &KeyFamily::single(&keys.frozen),
        std::slice::from_ref(&keys.frozen),
    )?;
    delete(store, keys.family, &keys.cursors)?;
    Ok(Migrated {
        names: total,
        resumed,
        written_meanwhile: exists(store, source)?,
    })
}

/// Moves the page that starts at rank `first`; returns the rank after it.
fn move_page(store: &RedisStore, keys: &Keys, first: u64) -> Result<u64, MigrateError> {
    let last = (first + PAGE - 1).to_string();
    let page = one(
        store,
        Command::for_slot(
            key_slot(keys.frozen.as_bytes()),
            &[
                b"ZRANGE",
                keys.frozen.as_bytes(),
                first.to_string().as_bytes(),
                last.as_bytes(),
                b"WITHSCORES",
            ],
        ),
    )?;
    let pairs = match page {
        RedisReply::Error(e) => return Err(classify(e).into()),
        reply => to_pairs(reply, "ZRANGE")?,
    };
    if pairs.is_empty() {
        return Err(
            StoreError::Refused(format!("the frozen key ended before rank {first}")).into(),
        );
    }
    let after = first + pairs.len() as u64;
    let mut per_key: Vec<Vec<&[u8]>> = vec![Vec::new(); keys.family.size()];
    for (name, score) in &pairs {
        per_key[keys.family.key_of(name)].extend([name.as_slice(), score.as_bytes()]);
    }
    let (first, after_text) = (first.to_string(), after.to_string());
    let commands: Vec<Command> = per_key
        .iter()
        .enumerate()
        .map(|(k, members)| {
            let mut args: Vec<&[u8]> = vec![
                b"EVAL",
                MOVE_PAGE.as_bytes(),
                b"2",
                keys.family.key(k).as_bytes(),
                keys.cursors[k].as_bytes(),
                first.as_bytes(),
                after_text.as_bytes(),
            ];
            args.extend(members);
            Command::for_slot(keys.family.slot(k), &args)
        })
        .collect();
    for sent in run(store, &commands)? {
        if let RedisReply::Error(e) = sent {
            return Err(classify(e).into());
        }
    }
    Ok(after)
}

/// Each family key's cursor: the rank of the frozen key its pages reach.
fn cursors(store: &RedisStore, keys: &Keys) -> Result<Vec<u64>, MigrateError> {
    let commands: Vec<Command> = keys
        .cursors
        .iter()
        .enumerate()
        .map(|(k, cursor)| Command::for_slot(keys.family.slot(k), &[b"GET", cursor.as_bytes()]))
        .collect();
    run(store, &commands)?
        .into_iter()
        .map(|reply| match reply {
            RedisReply::Nil => Ok(0),
            RedisReply::Bulk(text) => std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| {
                    StoreError::Refused("a migration cursor is not a number".into()).into()
                }),
            RedisReply::Error(e) => Err(classify(e).into()),
            other => Err(StoreError::Refused(other.unexpected("GET")).into()),
        })
        .collect()
}

fn exists(store: &RedisStore, key: &str) -> Result<bool, MigrateError> {
    match one(
        store,
        Command::for_slot(key_slot(key.as_bytes()), &[b"EXISTS", key.as_bytes()]),
    )? {
        RedisReply::Integer(n) => Ok(n > 0),
        RedisReply::Error(e) => Err(classify(e).into()),
        other => Err(StoreError::Refused(other.unexpected("EXISTS")).into()),
    }
}

fn size(store: &RedisStore, key: &str) -> Result<u64, MigrateError> {
    match one(
        store,
        Command::for_slot(key_slot(key.as_bytes()), &[b"ZCARD", key.as_bytes()]),
    )? {
        RedisReply::Integer(n) => Ok(u64::try_from(n).unwrap_or(0)),
        RedisReply::Error(e) => Err(classify(e).into()),
        other => Err(StoreError::Refused(other.unexpected("ZCARD")).into()),
    }
}

/// Deletes `names`, the i-th in the slot of `family`'s i-th key.
fn delete(store: &RedisStore, family: &KeyFamily, names: &[String]) -> Result<(), MigrateError> {
    let commands: Vec<Command> = names
        .iter()
        .enumerate()
        .map(|(k, name)| Command::for_slot(family.slot(k), &[b"DEL", name.as_bytes()]))
        .collect();
    for reply in run(store, &commands)? {
        if let RedisReply::Error(e) = reply {
            return Err(classify(e).into());
        }
    }
    Ok(())
}

fn deadline(store: &RedisStore) -> Instant {
    Instant::now() + store.timeout()
}

fn one(store: &RedisStore, command: Command) -> Result<RedisReply, MigrateError> {
    run(store, std::slice::from_ref(&command))?
        .pop()
        .ok_or_else(|| StoreError::Unavailable("no reply".into()).into())
}

/// The replies of `commands`, each under the store's timeout; one not sent or not answered
/// stops the run (it is safe to run again: every step is).
fn run(store: &RedisStore, commands: &[Command]) -> Result<Vec<RedisReply>, MigrateError> {
    store
        .run(commands, deadline(store))?
        .into_iter()
        .map(|sent| match sent {
            Delivery::Replied { reply, .. } => Ok(reply),
            Delivery::NotSent(e) | Delivery::Unanswered(e) => Err(e.into()),
        })
        .collect()
}
