//! The store contract against both stores (the memory store, and the Redis store against a
//! real server), capped ones included, and how the Redis store behaves when Redis goes away and
//! comes back, or is full.

mod common;
#[path = "store/contract.rs"]
mod contract;

use std::io::Write;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{plain_endpoint as plain, send_signal, wait_until, Redis, Signal};
use hello::secret::Secret;
use hello::store::{
    AdmissionLimits, MemoryStore, Order, RedisEndpoint, RedisMode, RedisSettings, RedisStore,
    ScanRequest, Store, StoreError,
};

/// The store's defaults (Redis's mode asked of it at first use), on the key `contract` with
/// a 500 ms timeout.
fn settings(endpoint: RedisEndpoint) -> RedisSettings {
    RedisSettings {
        key: "contract".into(),
        timeout: Duration::from_millis(500),
        ..RedisSettings::with_defaults(endpoint).unwrap()
    }
}

fn store(redis: &Redis) -> RedisStore {
    RedisStore::new(settings(plain(redis.port))).unwrap()
}

/// The secured server's TLS port, logged in as its user with `password`, in database 2.
fn tls_store(redis: &Redis, password: &str, trust_test_ca: bool) -> RedisStore {
    let secure = redis.secure.as_ref().expect("a secured redis");
    let endpoint = RedisEndpoint {
        host: "localhost".into(),
        port: secure.tls_port,
        tls: true,
        username: Some(secure.user.into()),
        password: Some(Secret::new(password)),
        db: 2,
    };
    RedisStore::new(RedisSettings {
        tls_ca_file: trust_test_ca.then(|| secure.ca_file()),
        ..settings(endpoint)
    })
    .unwrap()
}

#[test]
fn memory_store_passes_the_store_contract() {
    contract::check(Arc::new(MemoryStore::new()));
}

#[test]
fn redis_store_passes_the_store_contract() {
    let redis = Redis::start();
    contract::check(Arc::new(store(&redis)));
}

/// AdmissionLimits with at most `max_names` names.
fn capped(max_names: u64) -> AdmissionLimits {
    AdmissionLimits {
        max_names: Some(max_names),
        ..AdmissionLimits::default()
    }
}

#[test]
fn a_capped_memory_store_passes_the_capped_contract() {
    contract::check_capped_at_two(Arc::new(MemoryStore::new().with_max_names(2)));
}

#[test]
fn a_capped_redis_store_passes_the_capped_contract_and_opens_when_room_is_made() {
    let redis = Redis::start();
    let s = Arc::new(
        RedisStore::new(RedisSettings {
            limits: capped(2),
            ..settings(plain(redis.port))
        })
        .unwrap(),
    );
    contract::check_capped_at_two(s.clone());
    // Room made by hand: the next sample sees it.
    let _: () = redis::cmd("ZREM")
        .arg("contract")
        .arg("Bob")
        .query(&mut redis.connection())
        .unwrap();
    s.refresh().unwrap();
    assert!(s.room().admitting);
    assert_eq!(s.increment("Cy").unwrap(), 1);
    assert!(!s.room().admitting);
    // What Redis said of its memory, as sampled: no limit here.
    assert!(s.room().used_memory.is_some_and(|used| used > 0));
    assert_eq!(s.room().max_memory, Some(0));
}

#[test]
fn an_oom_reply_is_full_counts_nothing_and_keeps_the_connection() {
    let redis = Redis::start();
    let mut admin = redis.connection();
    let set_maxmemory = |admin: &mut redis::Connection, value: &str| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(value)
            .query(admin)
            .unwrap();
    };
    let received = |admin: &mut redis::Connection| -> u64 {
        let stats: String = redis::cmd("INFO").arg("stats").query(admin).unwrap();
        stats
            .lines()
            .find_map(|l| l.strip_prefix("total_connections_received:")?.parse().ok())
            .expect("total_connections_received")
    };
    let s = store(&redis);
    assert_eq!(s.increment("a").unwrap(), 1);
    let before = received(&mut admin);
    // Below what Redis uses: every write is refused (noeviction, Redis's default policy).
    set_maxmemory(&mut admin, "1");
    for _ in 0..100 {
        let outcome = s.increment("a");
        let Err(StoreError::Full(why)) = outcome else {
            panic!("expected full, got {outcome:?}")
        };
        assert!(why.starts_with("OOM"), "{why}");
    }
    let batch = s.increment_batch(&["a", "b"]);
    assert!(batch.iter().all(|r| matches!(r, Err(StoreError::Full(_)))));
    // Reads still answer; the sample sees Redis past its limit, and new names stop.
    s.refresh().unwrap();
    assert!(!s.room().admitting);
    set_maxmemory(&mut admin, "0");
    assert_eq!(s.increment("a").unwrap(), 2);
    // The store's one connection served it all: Redis received no other.
    assert_eq!(received(&mut admin), before);
    assert_eq!(redis.counts("contract"), [("a".to_owned(), 2)]);
}

#[test]
fn unavailable_while_down_and_heals_after_restart() {
    let mut redis = Redis::start();
    let s = store(&redis);
    assert_eq!(s.increment("a").unwrap(), 1);
    redis.kill();
    assert!(matches!(s.increment("a"), Err(StoreError::Unavailable(_))));
    assert!(matches!(s.refresh(), Err(StoreError::Unavailable(_))));
    redis.restart();
    // The restarted server is empty; the first call after it must already work.
    assert_eq!(s.increment("a").unwrap(), 1);
}

#[test]
fn a_restart_while_idle_costs_no_request() {
    let mut redis = Redis::start();
    let s = store(&redis);
    // Several pooled connections, all of which the restart will close.
    thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| s.refresh().unwrap());
        }
    });
    assert_eq!(s.increment("a").unwrap(), 1);
    redis.restart();
    assert_eq!(s.increment("a").unwrap(), 1);
    assert!(s.refresh().is_ok());
}

#[test]
fn a_server_that_is_not_redis_fails_with_a_clear_reason() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    // Asked whether it is a cluster, it answers garbage: nothing of the increment is sent.
    let s = RedisStore::new(settings(plain(port))).unwrap();
    let outcome = s.increment("a");
    let Err(StoreError::Unavailable(why)) = outcome else {
        panic!("expected unavailable, got {outcome:?}")
    };
    assert!(why.contains("Redis protocol"), "{why}");
    // Told it is standalone Redis: a read is safe to repeat: unavailable. The increment was
    // sent before the garbage came back, so whatever is on the other side may have run it: its
    // outcome is unknown.
    let s = RedisStore::new(RedisSettings {
        mode: RedisMode::Standalone,
        ..settings(plain(port))
    })
    .unwrap();
    let outcome = s.refresh();
    let Err(StoreError::Unavailable(why)) = outcome else {
        panic!("expected unavailable, got {outcome:?}")
    };
    assert!(why.contains("Redis protocol"), "{why}");
    let outcome = s.increment("a");
    let Err(StoreError::OutcomeUnknown(why)) = outcome else {
        panic!("expected an unknown outcome, got {outcome:?}")
    };
    assert!(why.contains("Redis protocol"), "{why}");
}

#[test]
fn an_increment_sent_and_not_answered_in_time_has_an_unknown_outcome() {
    let redis = Redis::start();
    let s = store(&redis);
    assert_eq!(s.increment("late").unwrap(), 1);
    // Stopped, Redis still takes the bytes into its socket buffer: the command is sent and
    // runs when Redis resumes, after the store has given up on it.
    send_signal(redis.pid(), Signal::STOP);
    let outcome = s.increment("late");
    send_signal(redis.pid(), Signal::CONT);
    let Err(StoreError::OutcomeUnknown(why)) = outcome else {
        panic!("expected an unknown outcome, got {outcome:?}")
    };
    assert!(why.contains("no answer within"), "{why}");
    wait_until("the late increment to land", Duration::from_secs(5), || {
        redis.counts("contract") == [("late".to_owned(), 2)]
    });
    // Nothing can be sent to a Redis that is gone: certainly not applied.
    let mut redis = redis;
    redis.kill();
    assert!(matches!(
        s.increment("late"),
        Err(StoreError::Unavailable(_))
    ));
}

#[test]
fn a_replica_is_unavailable_for_increments_until_promoted() {
    let primary = Redis::start();
    let replica = Redis::start_replica_of(&primary);
    let s = store(&replica);
    let Err(StoreError::Unavailable(why)) = s.increment("a") else {
        panic!("a replica must refuse writes as unavailable")
    };
    assert!(why.starts_with("READONLY"), "{why}");
    // Reads still work on a replica.
    assert!(s.refresh().is_ok());
    // Failover: the replica becomes a primary; the next increment is stored there.
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut replica.connection())
        .unwrap();
    assert_eq!(s.increment("a").unwrap(), 1);
    assert_eq!(replica.counts("contract"), vec![("a".to_string(), 1)]);
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

#[test]
fn tls_with_a_user_password_and_database_passes_the_contract() {
    let redis = Redis::start_secure();
    let password = redis.secure.as_ref().unwrap().password;
    contract::check(Arc::new(tls_store(&redis, password, true)));
    // Checked over the plain port with another client: the counts are in database 2.
    let mut c = redis.connection();
    let _: () = redis::cmd("SELECT").arg(2).query(&mut c).unwrap();
    let bob: i64 = redis::cmd("ZSCORE")
        .arg("contract")
        .arg("Bob")
        .query(&mut c)
        .unwrap();
    assert_eq!(bob, 2);
    assert!(
        redis.counts("contract").is_empty(),
        "database 0 was written"
    );
}

#[test]
fn a_wrong_password_or_an_untrusted_certificate_is_unavailable() {
    let redis = Redis::start_secure();
    let Err(StoreError::Unavailable(why)) = tls_store(&redis, "not-the-password", true).refresh()
    else {
        panic!("a wrong password must make the store unavailable")
    };
    assert!(why.contains("AUTH"), "{why}");
    assert!(!why.contains("not-the-password"), "{why}");

    let password = redis.secure.as_ref().unwrap().password;
    let Err(StoreError::Unavailable(why)) = tls_store(&redis, password, false).refresh() else {
        panic!("a certificate from an unknown CA must not be accepted")
    };
    assert!(why.contains("certificate"), "{why}");
}

#[test]
fn the_pool_opens_at_most_its_cap_and_a_caller_at_the_cap_waits_then_is_unavailable() {
    let redis = Redis::start();
    let s: Arc<RedisStore> = Arc::new(
        RedisStore::new(RedisSettings {
            max_connections: 2,
            ..settings(plain(redis.port))
        })
        .unwrap(),
    );
    for name in ["a", "b", "c", "d"] {
        s.increment(name).unwrap();
    }
    // Two listings read one entry each, and each holds its connection for the next.
    let request = ScanRequest {
        order: Order::Ascending,
        start: 0,
        limit: None,
        chunk: 1,
    };
    let mut first = Arc::clone(&s).scan(request);
    let mut second = Arc::clone(&s).scan(request);
    assert_eq!(first.next_chunk().unwrap().len(), 1);
    assert_eq!(second.next_chunk().unwrap().len(), 1);
    let started = std::time::Instant::now();
    let Err(StoreError::Unavailable(why)) = s.increment("e") else {
        panic!("a third connection was opened")
    };
    assert!(why.contains("all 2 connections"), "{why}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    // Not sent: certainly not counted.
    assert!(!redis.counts("contract").iter().any(|(n, _)| n == "e"));
    // A listing left with a reply on its way gives its connection back; its next user reads
    // and throws away that reply first.
    drop(first);
    assert_eq!(s.increment("e").unwrap(), 1);
    assert_eq!(second.next_chunk().unwrap().len(), 1);
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut redis.connection())
        .unwrap();
    // The two of the pool, and the one asking.
    assert_eq!(clients.lines().count(), 3, "{clients}");
}

#[test]
fn the_timeout_bounds_a_whole_command_however_its_reply_trickles() {
    let redis = Redis::start();
    redis.add_names("contract", 3);
    // A byte every 300 ms: each read would be within a 1 s timeout, the reply never is.
    let proxy = common::trickling_proxy(redis.port, 0, Duration::from_millis(300));
    // Standalone, so that the first command is the increment itself.
    let s = Arc::new(
        RedisStore::new(RedisSettings {
            mode: RedisMode::Standalone,
            timeout: Duration::from_secs(1),
            ..settings(plain(proxy.port()))
        })
        .unwrap(),
    );
    let started = std::time::Instant::now();
    let outcome = s.increment("slow");
    let took = started.elapsed();
    assert!(
        matches!(outcome, Err(StoreError::OutcomeUnknown(_))),
        "{outcome:?}"
    );
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    let started = std::time::Instant::now();
    let mut scan = Arc::clone(&s).scan(ScanRequest {
        order: Order::Ascending,
        start: 0,
        limit: Some(2),
        chunk: 2,
    });
    let outcome = scan.next_chunk();
    let took = started.elapsed();
    assert!(
        matches!(outcome, Err(StoreError::Unavailable(_))),
        "{outcome:?}"
    );
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}
