//! Listing the counts: paging parameters, and a listing that streams the whole set in chunks so
//! memory stays bounded however many names there are.

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

use crate::store::{Entry, Order, Scan, ScanRequest, Store, StoreError};

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

/// A listing whose first chunk is already read (so that a store failure can still become a
/// clean error response) and whose other chunks are read while it is written.
pub struct Listing {
    scan: Box<dyn Scan>,
    first: Vec<Entry>,
}

impl Listing {
    pub fn start(store: Arc<dyn Store>, paging: Paging) -> Result<Listing, StoreError> {
        let mut scan = store.scan(ScanRequest {
            order: paging.order,
            start: paging.offset,
            limit: paging.limit,
            chunk: CHUNK,
        });
        let first = scan.next_chunk()?;
        Ok(Listing { scan, first })
    }

    /// Writes `{"counts":[...]}`. Entries read later than the first chunk reflect the set as
    /// it is then: a long listing is not a snapshot.
    pub fn write_json(mut self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(b"{\"counts\":[")?;
        let mut chunk = std::mem::take(&mut self.first);
        let mut text = Vec::new();
        let mut first = true;
        while !chunk.is_empty() {
            text.clear();
            for entry in &chunk {
                if !first {
                    text.push(b',');
                }
                first = false;
                text.extend_from_slice(b"{\"name\":");
                serde_json::to_writer(&mut text, &entry.name)?;
                text.extend_from_slice(b",\"count\":\"");
                write!(text, "{}\"}}", entry.count)?;
            }
            out.write_all(&text)?;
            chunk = self.scan.next_chunk().map_err(io::Error::other)?;
        }
        out.write_all(b"]}")
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
        let mut out = Vec::new();
        Listing::start(Arc::clone(store), paging)
            .unwrap()
            .write_json(&mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
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
