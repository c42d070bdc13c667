//! Standalone Redis's listing: its one key read in ranges, the next asked for as soon as one
//! is read, so that Redis prepares it while the caller writes out the last. One connection is
//! held for the whole scan; a scan left with a reply on its way gives the connection back owing
//! it, and its next user reads it first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pool::{ConnectionPool, Pooled};
use super::replies::{self, classify, to_entries};
use super::resp::RedisReply;
use super::scan::{RankWindow, Scan};
use super::{NameCount, StoreError};

pub struct SingleKeyScan {
    key: String,
    command: &'static str,
    window: RankWindow,
    pool: Arc<ConnectionPool>,
    timeout: Duration,
    conn: Option<Pooled>,
    /// The size of the chunk asked for and not yet read.
    asked: Option<usize>,
}

impl SingleKeyScan {
    /// A scan of `key` with `command` (`ZRANGE` or `ZREVRANGE`) over `window`.
    pub fn new(
        key: String,
        command: &'static str,
        window: RankWindow,
        pool: Arc<ConnectionPool>,
        timeout: Duration,
    ) -> SingleKeyScan {
        SingleKeyScan {
            key,
            command,
            window,
            pool,
            timeout,
            conn: None,
            asked: None,
        }
    }

    /// Sends the request for the next chunk, if any remains. A failed send drops the
    /// connection; the request is sent again (a read is safe to repeat) on the next call.
    fn request(&mut self, deadline: Instant) -> Result<bool, StoreError> {
        let Some((start, count)) = self.window.next_request() else {
            return Ok(false);
        };
        let mut pooled = match self.conn.take() {
            Some(mut pooled) => {
                pooled.conn.set_deadline(deadline);
                pooled
            }
            None => self.pool.checkout(deadline)?,
        };
        let stop = start.saturating_add(count as u64 - 1).to_string();
        let start = start.to_string();
        let args: [&[u8]; 5] = [
            self.command.as_bytes(),
            self.key.as_bytes(),
            start.as_bytes(),
            stop.as_bytes(),
            b"WITHSCORES",
        ];
        pooled.conn.queue(&args);
        // A range is safe to ask again: a failed send is unavailable, whatever went out.
        pooled.conn.send().map_err(|e| self.pool.broken(e.error))?;
        self.conn = Some(pooled);
        self.asked = Some(count);
        Ok(true)
    }
}

impl Scan for SingleKeyScan {
    fn next_chunk(&mut self) -> Result<Vec<NameCount>, StoreError> {
        // Each page has its deadline, from when it is waited for: a page asked for ahead was
        // sent under a deadline of its own, and the time the client took to read the page
        // before it is not Redis's.
        let deadline = Instant::now() + self.timeout;
        if self.asked.is_none() && !self.request(deadline)? {
            return Ok(Vec::new());
        }
        let (Some(asked), Some(mut pooled)) = (self.asked.take(), self.conn.take()) else {
            return Err(StoreError::Unavailable("scan lost its connection".into()));
        };
        pooled.conn.set_deadline(deadline);
        let reply = pooled.conn.receive().map_err(|e| self.pool.broken(e))?;
        let chunk = match reply {
            RedisReply::Error(e) => {
                let fate = replies::fate(&e);
                self.pool.dispose(pooled, fate);
                return Err(classify(e));
            }
            reply => to_entries(reply, self.command),
        };
        self.conn = Some(pooled);
        let chunk = chunk?;
        self.window.advance(asked, chunk.len());
        // An error here is met again, and reported, by the next call.
        if !matches!(self.request(Instant::now() + self.timeout), Ok(true)) {
            if let Some(pooled) = self.conn.take() {
                self.pool.checkin(pooled);
            }
        }
        Ok(chunk)
    }
}

impl Drop for SingleKeyScan {
    fn drop(&mut self) {
        let Some(mut pooled) = self.conn.take() else {
            return;
        };
        if self.asked.is_some() {
            // Left before its end (a client gone) with the next chunk asked for. Its reply
            // is most likely not here yet: waiting for it would hold this thread, and closing
            // would cost a new connection later. It is read and thrown away by the connection's
            // next user, after the wait a trip through the pool gives it.
            pooled.conn.abandon_reply();
        }
        self.pool.checkin(pooled);
    }
}
