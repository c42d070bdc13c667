//! Reading a listing of any length in chunks, so that memory stays bounded: the `Scan` each
//! store hands out, and the `RankWindow` of ranks a scan still has to read.

use super::{NameCount, Order, StoreError};

/// Which part of the set to read, and how much per round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanRequest {
    pub order: Order,
    /// Rank of the first entry.
    pub start: u64,
    /// `None`: every entry from `start` on.
    pub limit: Option<u64>,
    /// Most entries per chunk.
    pub chunk: usize,
}

/// A listing read chunk by chunk. Each chunk reflects the set as it is when read: a long scan
/// is not a snapshot.
pub trait Scan: Send {
    /// The next entries; an empty chunk means the scan is over.
    fn next_chunk(&mut self) -> Result<Vec<NameCount>, StoreError>;
}

/// The ranks a scan has yet to read.
#[derive(Clone, Debug)]
pub struct RankWindow {
    next: u64,
    remaining: Option<u64>,
    chunk: usize,
    ended: bool,
}

impl RankWindow {
    pub fn new(request: &ScanRequest) -> RankWindow {
        RankWindow {
            next: request.start,
            remaining: request.limit,
            chunk: request.chunk,
            ended: false,
        }
    }

    /// The first rank and the number of entries to ask for next, or `None` at the end. Ranks
    /// stop at `i64::MAX`, the largest Redis accepts.
    pub fn next_request(&self) -> Option<(u64, usize)> {
        let count = match self.remaining {
            Some(left) => left.min(self.chunk as u64) as usize,
            None => self.chunk,
        };
        let ahead = (i64::MAX as u64).checked_sub(self.next)?;
        let count = count.min(usize::try_from(ahead.saturating_add(1)).unwrap_or(usize::MAX));
        (!self.ended && count > 0).then_some((self.next, count))
    }

    /// Records that asking for `asked` entries returned `got`; fewer means the set ended.
    pub fn advance(&mut self, asked: usize, got: usize) {
        self.next = self.next.saturating_add(got as u64);
        if let Some(left) = &mut self.remaining {
            *left = left.saturating_sub(got as u64);
        }
        if got < asked {
            self.ended = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: u64, limit: Option<u64>, chunk: usize) -> RankWindow {
        RankWindow::new(&ScanRequest {
            order: Order::Ascending,
            start,
            limit,
            chunk,
        })
    }

    #[test]
    fn walks_the_limit_in_chunks() {
        let mut w = window(10, Some(5), 2);
        assert_eq!(w.next_request(), Some((10, 2)));
        w.advance(2, 2);
        assert_eq!(w.next_request(), Some((12, 2)));
        w.advance(2, 2);
        assert_eq!(w.next_request(), Some((14, 1)));
        w.advance(1, 1);
        assert_eq!(w.next_request(), None);
    }

    #[test]
    fn a_short_chunk_ends_an_unlimited_scan() {
        let mut w = window(0, None, 4);
        w.advance(4, 4);
        assert_eq!(w.next_request(), Some((4, 4)));
        w.advance(4, 3);
        assert_eq!(w.next_request(), None);
    }

    #[test]
    fn ranks_stop_at_the_largest_redis_accepts() {
        let max = i64::MAX as u64;
        assert_eq!(window(max, None, 4).next_request(), Some((max, 1)));
        assert_eq!(window(max - 1, None, 4).next_request(), Some((max - 1, 2)));
        assert_eq!(window(max + 1, None, 4).next_request(), None);
        assert_eq!(window(u64::MAX, Some(3), 4).next_request(), None);
    }
}
