//! The production store: a Redis sorted set, reached over a small pool of blocking
//! connections with timeouts on connect, read and write.

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::{Client, Connection, ConnectionLike, RedisError, Value};

use super::batch::Batcher;
use super::{score_to_count, Entry, Order, Store, StoreError};

pub struct RedisStore {
    client: Client,
    key: String,
    timeout: Duration,
    /// Idle connections with the generation they were made in.
    idle: Mutex<Vec<(u64, Connection)>>,
    /// Bumped when a connection fails, so that the other idle connections (most likely broken
    /// the same way, e.g. by a Redis restart) are dropped instead of failing one request each.
    generation: AtomicU64,
    increments: Batcher,
}

impl RedisStore {
    /// `url` is a `redis://` or `rediss://` URL; nothing is connected until first use.
    pub fn new(url: &str, key: String, timeout: Duration) -> Result<RedisStore, RedisError> {
        Ok(RedisStore {
            client: Client::open(url)?,
            key,
            timeout,
            idle: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            increments: Batcher::default(),
        })
    }

    /// Runs `f` on a pooled connection. A connection that saw an error is not returned to the
    /// pool; `f` itself is never run twice.
    fn with_connection<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        let generation = self.generation.load(AtomicOrdering::Acquire);
        let pooled = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            idle.retain(|(g, _)| *g == generation);
            idle.pop()
        };
        let mut conn = match pooled {
            Some((_, conn)) => conn,
            None => self.connect()?,
        };
        match f(&mut conn) {
            Ok(value) => {
                if conn.is_open() {
                    self.idle
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((generation, conn));
                }
                Ok(value)
            }
            Err(e) => {
                if is_server_error(&e) {
                    self.idle
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((generation, conn));
                    Err(StoreError::Refused(e.to_string()))
                } else {
                    self.generation.fetch_add(1, AtomicOrdering::AcqRel);
                    Err(StoreError::Unavailable(e.to_string()))
                }
            }
        }
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let unavailable = |e: RedisError| {
            self.generation.fetch_add(1, AtomicOrdering::AcqRel);
            StoreError::Unavailable(e.to_string())
        };
        let conn = self
            .client
            .get_connection_with_timeout(self.timeout)
            .map_err(unavailable)?;
        conn.set_read_timeout(Some(self.timeout))
            .map_err(unavailable)?;
        conn.set_write_timeout(Some(self.timeout))
            .map_err(unavailable)?;
        Ok(conn)
    }
}

impl RedisStore {
    /// One pipeline of `ZINCRBY`s. A failure fails every increment in it: their outcome is
    /// unknown, and none is retried.
    fn increment_all(&self, names: &[&str]) -> Vec<Result<i64, StoreError>> {
        let mut pipe = redis::pipe();
        // Each reply stands for itself: one refused command must not report the others,
        // which were stored, as failed.
        pipe.ignore_errors();
        for name in names {
            pipe.cmd("ZINCRBY").arg(&self.key).arg(1).arg(*name);
        }
        match self.with_connection(|c| pipe.query::<Vec<Value>>(c)) {
            Ok(replies) => {
                let counts: Vec<_> = replies.into_iter().map(reply_to_count).collect();
                if counts
                    .iter()
                    .any(|c| matches!(c, Err(StoreError::Unavailable(_))))
                {
                    // e.g. READONLY: this connection reaches a replica after a failover.
                    self.generation.fetch_add(1, AtomicOrdering::AcqRel);
                }
                counts
            }
            Err(e) => names.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

fn reply_to_count(reply: Value) -> Result<i64, StoreError> {
    match reply {
        Value::ServerError(e) if matches!(e.code(), "WRONGTYPE" | "ERR") => {
            Err(StoreError::Refused(e.to_string()))
        }
        Value::ServerError(e) => Err(StoreError::Unavailable(e.to_string())),
        other => redis::from_redis_value::<f64>(other)
            .map(score_to_count)
            .map_err(|e| StoreError::Refused(format!("unexpected ZINCRBY reply: {e}"))),
    }
}

/// True when Redis answered with an error about the command itself (a wrong type, a bad
/// argument): retrying will not help and the connection is still in step. Every other failure,
/// including transient server states such as `LOADING` after a restart or `READONLY` on a
/// replica after a failover, makes the store unavailable and the connection is replaced.
fn is_server_error(e: &RedisError) -> bool {
    !(e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal())
        && matches!(e.code(), Some("WRONGTYPE" | "ERR"))
}

impl Store for RedisStore {
    fn increment(&self, name: &str) -> Result<i64, StoreError> {
        self.increments
            .increment(name, &|names| self.increment_all(names))
    }

    fn range(&self, order: Order, start: u64, count: usize) -> Result<Vec<Entry>, StoreError> {
        if count == 0 || start > i64::MAX as u64 {
            return Ok(Vec::new());
        }
        let stop = start.saturating_add(count as u64 - 1).min(i64::MAX as u64);
        let command = match order {
            Order::Ascending => "ZRANGE",
            Order::Descending => "ZREVRANGE",
        };
        let pairs: Vec<(Vec<u8>, f64)> = self.with_connection(|c| {
            redis::cmd(command)
                .arg(&self.key)
                .arg(start)
                .arg(stop)
                .arg("WITHSCORES")
                .query(c)
        })?;
        Ok(pairs
            .into_iter()
            .map(|(name, score)| Entry {
                name: match String::from_utf8(name) {
                    Ok(s) => s,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                },
                count: score_to_count(score),
            })
            .collect())
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.with_connection(|c| redis::cmd("PING").query::<String>(c))
            .map(|_| ())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
