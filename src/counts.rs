//! Listing the counts: paging parameters, how many listings may be open at once, and a listing
//! that streams the whole set in chunks so memory stays bounded however many names there are.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::settings::{number, variables, ConfigError};
use crate::store::{NameCount, Order, Scan, ScanRequest, Store, StoreError};

variables! {
    COUNTS_MAX_LISTINGS = "16",
        "/counts listings open at once, each holding a Redis connection while its client \
              reads; more get 503";
}

/// `COUNTS_MAX_LISTINGS`: the size of the [`Gate`]. `get` returns a variable's value when it is
/// set and not blank.
pub fn max_listings_from_env(get: &impl Fn(&str) -> Option<String>) -> Result<usize, ConfigError> {
    number(get, &COUNTS_MAX_LISTINGS, 1, 10_000)
}

/// Entries fetched from the store per round trip.
const CHUNK: usize = 4096;

/// Which part of the set a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    pub order: Order,
    pub offset: u64,
    /// `None`: every name from `offset` on.
    pub limit: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingError {
    Limit,
    Offset,
    Order,
}

impl fmt::Display for PagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PagingError::Limit => "limit must be a whole number from 1 to 9223372036854775807",
            PagingError::Offset => "offset must be a whole number from 0 to 9223372036854775807",
            PagingError::Order => "order must be asc or desc",
        })
    }
}

impl Paging {
    /// Reads `limit`, `offset` and `order` from a query string; other parameters are ignored.
    /// When a parameter repeats, the first one counts.
    pub fn from_query(query: Option<&str>) -> Result<Paging, PagingError> {
        let mut paging = Paging {
            order: Order::Ascending,
            offset: 0,
            limit: None,
        };
        let (mut seen_limit, mut seen_offset, mut seen_order) = (false, false, false);
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = form_decode(value);
            match key {
                "limit" if !seen_limit => {
                    seen_limit = true;
                    paging.limit = Some(
                        parse_count(&value)
                            .filter(|n| *n >= 1)
                            .ok_or(PagingError::Limit)?,
                    );
                }
                "offset" if !seen_offset => {
                    seen_offset = true;
                    paging.offset = parse_count(&value).ok_or(PagingError::Offset)?;
                }
                "order" if !seen_order => {
                    seen_order = true;
                    paging.order = match value.as_str() {
                        "asc" => Order::Ascending,
                        "desc" => Order::Descending,
                        _ => return Err(PagingError::Order),
                    };
                }
                _ => {}
            }
        }
        Ok(paging)
    }
}

fn form_decode(value: &str) -> String {
    let spaced = value.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// A non-negative integer that fits Redis's signed 64-bit ranks.
fn parse_count(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u64>().ok().filter(|n| *n <= i64::MAX as u64)
}

/// Bounds how many listings are open at once: a listing holds a store connection until its
/// client has read it all, and a client that reads slowly (or not at all) must not be able to
/// take every connection the store will give.
pub struct Gate {
    open: AtomicUsize,
    max: usize,
}

/// One open listing's place at the gate, given back when the listing is dropped.
pub struct Permit(Arc<Gate>);

impl Gate {
    pub fn new(max: usize) -> Arc<Gate> {
        Arc::new(Gate {
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// A place for one more listing, if there is room.
    pub fn enter(self: &Arc<Self>) -> Option<Permit> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit(Arc::clone(self)))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a `HEAD /counts` needs: only whether a `GET` would start, its status. The store is
/// asked how many names it holds (Redis: `ZCARD` of each key, summed), which fails as a listing
/// would (unreachable, a key of the wrong type) and reads no entry.
pub fn check(store: &Arc<dyn Store>) -> Result<(), StoreError> {
    store.names().map(drop)
}

/// A listing written piece by piece as `{"counts":[...]}`. The first chunk is read before
/// anything is written, so that a store failure can still become a clean error response;
/// each later chunk is read as the one before it is written out.
pub struct Listing {
    scan: Box<dyn Scan>,
    /// The entries to write next; empty once the scan is over.
    next: Vec<NameCount>,
    opened: bool,
    /// Whether an entry was written, so the next needs a comma.
    written: bool,
    _permit: Permit,
}

impl Listing {
    pub fn start(
        store: Arc<dyn Store>,
        paging: Paging,
        permit: Permit,
    ) -> Result<Listing, StoreError> {
        let mut scan = store.scan(ScanRequest {
            order: paging.order,
            start: paging.offset,
            limit: paging.limit,
            chunk: CHUNK,
        });
        let next = scan.next_chunk()?;
        Ok(Listing {
            scan,
            next,
            opened: false,
            written: false,
            _permit: permit,
        })
    }

    /// Appends the next piece of the document to `out`; `Ok(false)` once it is complete.
    /// Entries read after the first chunk reflect the set as it is then: a long listing is
    /// not a snapshot.
    pub fn fill(&mut self, out: &mut Vec<u8>) -> Result<bool, StoreError> {
        if !self.opened {
            out.extend_from_slice(b"{\"counts\":[");
            self.opened = true;
        }
        if !self.next.is_empty() {
            for entry in std::mem::take(&mut self.next) {
                if self.written {
                    out.push(b',');
                }
                self.written = true;
                out.extend_from_slice(b"{\"name\":");
                // Writing JSON into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, &entry.name);
                out.extend_from_slice(b",\"count\":\"");
                out.extend_from_slice(entry.score.as_bytes());
                out.extend_from_slice(b"\"}");
            }
            self.next = self.scan.next_chunk()?;
        }
        if self.next.is_empty() {
            out.extend_from_slice(b"]}");
            return Ok(false);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn reads_paging_parameters() {
        let p = Paging::from_query(Some("limit=2&offset=3&order=desc&x=y")).unwrap();
        assert_eq!(
            p,
            Paging {
                order: Order::Descending,
                offset: 3,
                limit: Some(2)
            }
        );
        let p = Paging::from_query(None).unwrap();
        assert_eq!((p.order, p.offset, p.limit), (Order::Ascending, 0, None));
        let p = Paging::from_query(Some("limit=5&limit=x")).unwrap();
        assert_eq!(p.limit, Some(5));
        assert_eq!(Paging::from_query(Some("limit=0")), Err(PagingError::Limit));
        assert_eq!(
            Paging::from_query(Some("limit=-1")),
            Err(PagingError::Limit)
        );
        assert_eq!(Paging::from_query(Some("limit=")), Err(PagingError::Limit));
        assert_eq!(
            Paging::from_query(Some("limit=99999999999999999999")),
            Err(PagingError::Limit)
        );
        assert_eq!(
            Paging::from_query(Some("offset=1.5")),
            Err(PagingError::Offset)
        );
        assert_eq!(
            Paging::from_query(Some("order=up")),
            Err(PagingError::Order)
        );
    }

    fn listing(store: &Arc<dyn Store>, query: &str) -> String {
        let paging = Paging::from_query(Some(query)).unwrap();
        let gate = Gate::new(1);
        let mut listing = Listing::start(Arc::clone(store), paging, gate.enter().unwrap()).unwrap();
        let mut out = Vec::new();
        let mut pieces = 1;
        while listing.fill(&mut out).unwrap() {
            pieces += 1;
        }
        assert!(pieces <= 1 + out.len() / 20 / CHUNK, "{pieces} pieces");
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_gate_lets_in_at_most_its_number() {
        let gate = Gate::new(2);
        let a = gate.enter().unwrap();
        let b = gate.enter().unwrap();
        assert!(gate.enter().is_none());
        drop(a);
        let c = gate.enter().unwrap();
        assert!(gate.enter().is_none());
        drop((b, c));
        let both = (gate.enter(), gate.enter());
        assert!(both.0.is_some() && both.1.is_some());
    }

    #[test]
    fn writes_json_across_chunks() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        assert_eq!(listing(&store, ""), r#"{"counts":[]}"#);
        store.increment("Bill").unwrap();
        store.increment("Bill").unwrap();
        store.increment("Bob \"B\"").unwrap();
        assert_eq!(
            listing(&store, ""),
            r#"{"counts":[{"name":"Bob \"B\"","count":"1"},{"name":"Bill","count":"2"}]}"#
        );
        for i in 0..(CHUNK * 2 + 10) {
            store.increment(&format!("n{i:05}")).unwrap();
        }
        let all: serde_json::Value = serde_json::from_str(&listing(&store, "")).unwrap();
        assert_eq!(all["counts"].as_array().unwrap().len(), CHUNK * 2 + 12);
        let page: serde_json::Value = serde_json::from_str(&listing(
            &store,
            &format!("offset={}&limit={}", CHUNK - 1, CHUNK + 2),
        ))
        .unwrap();
        let page = page["counts"].as_array().unwrap();
        assert_eq!(page.len(), CHUNK + 2);
        assert_eq!(page[0]["name"], format!("n{:05}", CHUNK - 2));
        let top: serde_json::Value =
            serde_json::from_str(&listing(&store, "order=desc&limit=1")).unwrap();
        assert_eq!(top["counts"][0]["name"], "Bill");
    }
}
