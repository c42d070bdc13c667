//! The Redis store against a real server: the same contract as the memory store, and how it
//! behaves when Redis goes away and comes back.

mod common;

use std::time::Duration;

use common::Redis;
use hello::store::{contract, RedisStore, Store, StoreError};

fn store(redis: &Redis) -> RedisStore {
    RedisStore::new(&redis.url(), "contract".into(), Duration::from_millis(500)).unwrap()
}

#[test]
fn redis_store_passes_the_store_contract() {
    let redis = Redis::start();
    contract::check(&store(&redis));
}

#[test]
fn unavailable_while_down_and_heals_after_restart() {
    let mut redis = Redis::start();
    let s = store(&redis);
    assert_eq!(s.increment("a").unwrap(), 1);
    redis.kill();
    assert!(matches!(s.increment("a"), Err(StoreError::Unavailable(_))));
    assert!(matches!(s.ping(), Err(StoreError::Unavailable(_))));
    redis.restart();
    // The restarted server is empty; the first call after it must already work.
    assert_eq!(s.increment("a").unwrap(), 1);
}

#[test]
fn a_key_of_the_wrong_type_is_refused_not_unavailable() {
    let redis = Redis::start();
    let _: () = redis::cmd("SET")
        .arg("contract")
        .arg("x")
        .query(&mut redis.connection())
        .unwrap();
    assert!(matches!(
        store(&redis).increment("a"),
        Err(StoreError::Refused(_))
    ));
}
