//! The behaviour every `Store` must have, as one check that each implementation's tests run
//! (the memory store's beside it, the Redis store's in `tests/store.rs` against a real server).
//! It panics on the first difference, like any test assertion.

use super::{Entry, Order, Store};

/// Runs the contract against an empty store.
pub fn check(store: &dyn Store) {
    assert!(store.ping().is_ok());
    assert_eq!(store.range(Order::Ascending, 0, 10).unwrap(), vec![]);

    assert_eq!(store.increment("Bob").unwrap(), 1);
    for _ in 0..3 {
        store.increment("Bill").unwrap();
    }
    assert_eq!(store.increment("Bob").unwrap(), 2);
    store.increment("Ann").unwrap();
    store.increment("Zoë").unwrap();
    store.increment("Zed").unwrap();
    store.increment("Zed").unwrap();

    let e = |name: &str, count| Entry {
        name: name.to_owned(),
        count,
    };
    // Count ascending, then name bytewise ("Z" < "a"; "Zed" < "Zoë").
    let all = vec![
        e("Ann", 1),
        e("Zoë", 1),
        e("Bob", 2),
        e("Zed", 2),
        e("Bill", 3),
    ];
    assert_eq!(store.range(Order::Ascending, 0, 100).unwrap(), all);
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(store.range(Order::Descending, 0, 100).unwrap(), reversed);
    assert_eq!(store.range(Order::Ascending, 1, 2).unwrap(), all[1..3]);
    assert_eq!(store.range(Order::Descending, 4, 2).unwrap(), reversed[4..]);
    assert_eq!(store.range(Order::Ascending, 5, 2).unwrap(), vec![]);
    assert_eq!(store.range(Order::Ascending, u64::MAX, 2).unwrap(), vec![]);
    assert_eq!(store.range(Order::Ascending, 0, 0).unwrap(), vec![]);
}
