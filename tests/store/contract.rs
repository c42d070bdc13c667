//! The behaviour every `Store` must have, as one check run against each implementation (by
//! `tests/store.rs`: the memory store, and the Redis store against a real server). It panics
//! on the first difference, like any test assertion. Test code only: it lives here, out of the
//! library.

use std::sync::Arc;

use hello::store::{NameCount, Order, ScanRequest, Store, StoreError};

/// Every entry a scan yields, checking that no chunk is larger than asked and that the scan
/// stays over once it has ended.
pub fn scan_all(
    store: &Arc<dyn Store>,
    order: Order,
    start: u64,
    limit: Option<u64>,
    chunk: usize,
) -> Vec<NameCount> {
    let mut scan = Arc::clone(store).scan(ScanRequest {
        order,
        start,
        limit,
        chunk,
    });
    let mut all = Vec::new();
    loop {
        let next = scan.next_chunk().expect("scan chunk");
        assert!(next.len() <= chunk, "a chunk of {} > {chunk}", next.len());
        if next.is_empty() {
            break;
        }
        all.extend(next);
    }
    assert_eq!(scan.next_chunk().expect("after the end"), vec![]);
    all
}

/// Runs the contract against an empty store.
pub fn check(store: Arc<dyn Store>) {
    let store = &store;
    let scan = |order, start, limit, chunk| scan_all(store, order, start, limit, chunk);
    assert!(store.refresh().is_ok());
    assert_eq!(scan(Order::Ascending, 0, None, 10), vec![]);

    assert_eq!(store.increment("Bob").unwrap(), 1);
    for _ in 0..3 {
        store.increment("Bill").unwrap();
    }
    assert_eq!(store.increment("Bob").unwrap(), 2);
    store.increment("Ann").unwrap();
    store.increment("Zoë").unwrap();
    store.increment("Zed").unwrap();
    store.increment("Zed").unwrap();

    let e = |name: &str, count: i64| NameCount {
        name: name.to_owned(),
        score: count.to_string(),
    };
    // Count ascending, then name bytewise ("Z" < "a"; "Zed" < "Zoë").
    let all = vec![
        e("Ann", 1),
        e("Zoë", 1),
        e("Bob", 2),
        e("Zed", 2),
        e("Bill", 3),
    ];
    let mut reversed = all.clone();
    reversed.reverse();
    // Chunks smaller than, equal to and larger than the set; sizes that divide it and not.
    for chunk in [1, 2, 5, 100] {
        assert_eq!(scan(Order::Ascending, 0, None, chunk), all);
        assert_eq!(scan(Order::Descending, 0, None, chunk), reversed);
        assert_eq!(scan(Order::Ascending, 1, Some(2), chunk), all[1..3]);
        assert_eq!(scan(Order::Ascending, 1, Some(3), chunk), all[1..4]);
        assert_eq!(scan(Order::Descending, 4, Some(2), chunk), reversed[4..]);
        assert_eq!(scan(Order::Descending, 2, None, chunk), reversed[2..]);
        assert_eq!(scan(Order::Ascending, 5, Some(2), chunk), vec![]);
        assert_eq!(scan(Order::Ascending, u64::MAX, Some(2), chunk), vec![]);
        assert_eq!(scan(Order::Ascending, i64::MAX as u64, None, chunk), vec![]);
        assert_eq!(scan(Order::Ascending, 0, Some(0), chunk), vec![]);
    }

    // A scan dropped halfway leaves the store fit for use.
    let mut partial = Arc::clone(store).scan(ScanRequest {
        order: Order::Ascending,
        start: 0,
        limit: None,
        chunk: 2,
    });
    assert_eq!(partial.next_chunk().unwrap(), all[..2]);
    drop(partial);
    assert_eq!(store.increment("Ann").unwrap(), 2);
    assert_eq!(scan(Order::Ascending, 0, Some(1), 1), vec![e("Zoë", 1)]);
}

/// Runs the contract of a store that holds at most two names, against an empty one: past its
/// cap, a new name is refused and not stored, and known names count, alone or in a batch.
pub fn check_capped_at_two(store: Arc<dyn Store>) {
    let store = &store;
    assert!(store.refresh().is_ok());
    assert!(store.room().admitting);
    assert_eq!(store.room().names, Some(0));
    assert_eq!(store.increment("Ann").unwrap(), 1);
    assert_eq!(store.increment("Bob").unwrap(), 1);
    assert!(!store.room().admitting);
    assert_eq!(store.room().names, Some(2));
    assert!(matches!(store.increment("Cy"), Err(StoreError::NamesFull)));
    let batch = store.increment_batch(&["Ann", "Cy", "Bob", "Ann"]);
    assert_eq!(batch[0].as_ref().unwrap(), &2);
    assert!(matches!(batch[1], Err(StoreError::NamesFull)));
    assert_eq!(batch[2].as_ref().unwrap(), &2);
    assert_eq!(batch[3].as_ref().unwrap(), &3);
    let e = |name: &str, count: i64| NameCount {
        name: name.to_owned(),
        score: count.to_string(),
    };
    assert_eq!(
        scan_all(store, Order::Ascending, 0, None, 10),
        vec![e("Bob", 2), e("Ann", 3)]
    );
    // Still so after the store is asked again.
    assert!(store.refresh().is_ok());
    assert!(!store.room().admitting);
    assert!(matches!(store.increment("Cy"), Err(StoreError::NamesFull)));
}
