//! The service against a Redis Cluster the tests start themselves: six `redis-server
//! --cluster-enabled yes` nodes joined by `redis-cli --cluster create --cluster-replicas 1`, on
//! free ports. Names spread over the family of keys and listed as one list, exact against a
//! single Redis holding the same greetings; the store contract; a primary killed under load
//! (with `REDIS_WAIT_REPLICAS=1` every 200 is stored, without it the loss is counted); a
//! reshard under load (`MOVED` and `ASK` followed, nothing lost or counted twice); TLS with an
//! ACL user; each primary's memory judged on its own; and the migration from the one key to
//! the family, exact, resumable and safe to run twice.

mod common;
#[path = "store/contract.rs"]
mod contract;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::load::greet_all;
use common::{plain_endpoint, wait_until, Conn, Redis, RedisCluster, Service};
use hello::store::{KeyFamily, RedisSettings, RedisStore};

const KEY: &str = "nytimes.names";
/// Greetings in flight on each connection of [`greet_all`].
const DEPTH: usize = 32;

/// The family of keys a cluster spreads `base` over: `base:{0}` … `base:{63}`, as the README
/// documents it.
fn family(base: &str) -> Vec<String> {
    (0..64).map(|i| format!("{base}:{{{i}}}")).collect()
}

fn service(cluster: &RedisCluster, env: &[(&str, &str)]) -> Service {
    let address = cluster.address();
    let mut all = vec![("REDIS_CLUSTER_ADDRESS", address.as_str())];
    all.extend_from_slice(env);
    let s = Service::start(&all);
    // A cluster just made may still tell its nodes apart for a moment (a slot not yet known
    // everywhere): the service answers 503 until it has read a whole map. HEAD /counts reads
    // every key's size through the map and counts nothing.
    wait_until(
        "the service reading the cluster",
        Duration::from_secs(20),
        || s.request("HEAD", "/counts", &[]).status == 200,
    );
    s
}

#[test]
fn greetings_and_listings_on_three_primaries_match_a_single_redis() {
    let cluster = RedisCluster::start(3);
    let single = Redis::start();
    let s = service(&cluster, &[]);
    let reference = Service::with_redis(&single);
    // 5,000 names, some greeted two or three times in a row (so in one batch, often).
    let mut names = Vec::new();
    for i in 0..5000 {
        let times = match i {
            _ if i % 7 == 0 => 3,
            _ if i % 13 == 0 => 2,
            _ => 1,
        };
        names.extend(std::iter::repeat_n(format!("n{i:05}"), times));
    }
    for service in [&s, &reference] {
        for r in greet_all(service, &names, 4, DEPTH) {
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
    }
    // One name greeted 200 times at once: every greeting its own count, 1 to 200.
    let hot: Vec<String> = std::iter::repeat_n("hot".to_owned(), 200).collect();
    let counts: BTreeSet<i64> = greet_all(&s, &hot, 8, DEPTH)
        .iter()
        .map(|r| r.count())
        .collect();
    assert_eq!(counts, (1..=200).collect());
    greet_all(&reference, &hot, 8, DEPTH);
    // Stored as the single Redis stores them, over the family of keys, on every primary.
    let stored = cluster.counts(&family(KEY));
    let expected: HashMap<String, i64> = single.counts(KEY).into_iter().collect();
    assert_eq!(stored.len(), 5001);
    assert_eq!(stored, expected);
    for port in cluster.primaries() {
        let keys: u64 = cluster.cli(port, &["DBSIZE"]).unwrap().parse().unwrap();
        assert!(keys > 10, "{keys} keys on the primary at {port}");
    }
    assert_eq!(cluster.on_owner(&["EXISTS", KEY]), "0");
    // Listings: the same bytes as the single Redis's, whatever the page.
    for query in [
        "",
        "?order=desc",
        "?limit=10",
        "?order=desc&limit=10",
        "?offset=4090&limit=20",
        "?offset=4995&limit=10",
        "?offset=3&order=desc",
        "?offset=2500&limit=1&order=desc",
        "?offset=100000",
    ] {
        let (merged, one) = (
            s.get(&format!("/counts{query}")),
            reference.get(&format!("/counts{query}")),
        );
        assert_eq!(merged.status, 200, "{query}");
        assert_eq!(merged.text(), one.text(), "/counts{query}");
    }
    let head = s.request("HEAD", "/counts", &[]);
    assert_eq!(head.status, 200);
    wait_until("the names sampled", Duration::from_secs(10), || {
        s.get("/health").json()["store"]["names"] == 5001
    });
    // Batches carried more than one greeting on average (at most one per connection: a
    // connection has one request at the store at a time, however many it pipelines).
    let batches = s.metric("hello_store_batches_total").unwrap();
    let increments = s.metric("hello_increments_total").unwrap();
    assert!(
        increments > batches,
        "{increments} increments in {batches} batches"
    );
}

#[test]
fn the_store_contract_holds_on_a_cluster() {
    let cluster = RedisCluster::start(3);
    let port = cluster.nodes[0].port;
    let settings = |max_names| RedisSettings {
        key: "contract".into(),
        timeout: Duration::from_millis(1000),
        limits: hello::store::AdmissionLimits {
            max_names,
            ..Default::default()
        },
        ..RedisSettings::with_defaults(plain_endpoint(port)).unwrap()
    };
    contract::check(Arc::new(RedisStore::new(settings(None)).unwrap()));
    let capped = RedisSettings {
        key: "capped".into(),
        ..settings(Some(2))
    };
    contract::check_capped_at_two(Arc::new(RedisStore::new(capped).unwrap()));
}

/// What one greeting of the load saw: its name, when it was sent, and its status (`None`: the
/// connection broke).
struct Seen {
    name: String,
    sent: Instant,
    answered: Instant,
    status: Option<u16>,
}

/// Clients greeting unique names (`c{client}-{n}`) on keep-alive connections until `stop`; a
/// 503 makes a client pause a little, as a client told to retry would.
fn load(s: &Service, clients: usize, stop: &AtomicBool, answered: &AtomicU64) -> Vec<Seen> {
    thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|client| {
                scope.spawn(move || {
                    let mut seen = Vec::new();
                    let mut conn: Option<Conn> = None;
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let c = match conn.as_mut() {
                            Some(c) => c,
                            None => match Conn::try_open(s.addr) {
                                Ok(c) => conn.insert(c),
                                Err(_) => {
                                    thread::sleep(Duration::from_millis(5));
                                    continue;
                                }
                            },
                        };
                        n += 1;
                        let name = format!("c{client}-{n}");
                        let sent = Instant::now();
                        let status = c
                            .try_response_to(&format!("/hello/{name}"))
                            .map(|r| r.status)
                            .ok();
                        let answered_at = Instant::now();
                        if status.is_none() {
                            conn = None;
                        }
                        answered.fetch_add(1, Ordering::Relaxed);
                        if status == Some(503) {
                            thread::sleep(Duration::from_millis(5));
                        }
                        seen.push(Seen {
                            name,
                            sent,
                            answered: answered_at,
                            status,
                        });
                    }
                    seen
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a client"))
            .collect()
    })
}

/// What became of the greetings of a load against what the cluster stored.
#[derive(Debug, Default)]
struct Reckoning {
    ok: usize,
    ok_lost: usize,
    unavailable: usize,
    unavailable_stored: usize,
    unknown: usize,
    other: usize,
}

fn reckon(seen: &[Seen], stored: &HashMap<String, i64>) -> Reckoning {
    let mut r = Reckoning::default();
    for s in seen {
        let count = stored.get(&s.name).copied().unwrap_or(0);
        assert!(count <= 1, "{} counted {count} times", s.name);
        match s.status {
            Some(200) => {
                r.ok += 1;
                r.ok_lost += usize::from(count == 0);
            }
            Some(503) => {
                r.unavailable += 1;
                r.unavailable_stored += usize::from(count == 1);
            }
            Some(504) => r.unknown += 1,
            _ => r.other += 1,
        }
    }
    r
}

/// `REDIS_TIMEOUT_MS` in the failover tests. Outside the failover a 504 means a replica did not
/// acknowledge a `WAIT` in this time: with 128 clients, six nodes and the service on two cores,
/// 1 s was once too short for a replica starved of CPU (a 504 before the kill, in CI).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(3);

/// A primary killed (SIGKILL) under 128 greeting clients: its replica is promoted and
/// greetings to its keys resume; then the killed node comes back as the new primary's replica,
/// as ElastiCache replaces a node. Returns what the greetings saw, with the times of the kill
/// and of the replica back in step.
fn failover_under_load(wait_replicas: &str) -> (Reckoning, Vec<Seen>, Instant, Instant) {
    let mut cluster = RedisCluster::start(3);
    let s = service(
        &cluster,
        &[
            ("REDIS_WAIT_REPLICAS", wait_replicas),
            (
                "REDIS_TIMEOUT_MS",
                &FAILOVER_TIMEOUT.as_millis().to_string(),
            ),
        ],
    );
    assert_eq!(s.greet("warm").count(), 1);
    let victim = cluster.primaries()[1];
    let heir = cluster.replica_of(victim);
    let stop = AtomicBool::new(false);
    let answered = AtomicU64::new(0);
    let times = Mutex::new(None);
    let seen = thread::scope(|scope| {
        let load = scope.spawn(|| load(&s, 128, &stop, &answered));
        wait_until("greetings under way", Duration::from_secs(30), || {
            answered.load(Ordering::Relaxed) > 3000
        });
        let killed = Instant::now();
        cluster.kill(victim);
        cluster.wait_for_failover(heir);
        cluster.restart(victim);
        cluster.wait_until_whole();
        let whole = Instant::now();
        // Then a while of greetings with every shard whole again.
        wait_for_more(&answered, 3000, "greetings after the failover");
        stop.store(true, Ordering::Relaxed);
        *times.lock().unwrap() = Some((killed, whole));
        load.join().expect("the load")
    });
    let (killed, whole) = times.into_inner().unwrap().unwrap();
    let stored = cluster.counts(&family(KEY));
    (reckon(&seen, &stored), seen, killed, whole)
}

/// Prints what a failover under load did, and holds what every setting promises: greetings
/// went on, no 503 was counted, and nothing but 200, 503 and 504 was answered.
fn said_and_sound(wait_replicas: &str, r: &Reckoning, back_in_step: Duration) {
    println!(
        "REDIS_WAIT_REPLICAS={wait_replicas}, a primary killed under 128 clients: {r:?}; \
         failover and replica back in step after {back_in_step:?}"
    );
    assert!(r.ok > 3000, "{r:?}");
    assert_eq!(r.unavailable_stored, 0, "a 503 was counted: {r:?}");
    assert_eq!(r.other, 0, "{r:?}");
}

#[test]
fn with_wait_every_200_survives_a_primary_killed_under_load() {
    let (r, seen, killed, whole) = failover_under_load("1");
    said_and_sound("1", &r, whole - killed);
    assert_eq!(r.ok_lost, 0, "acknowledged greetings lost: {r:?}");
    // A 504 only from the kill until the shard had a replica in step again, give or take the
    // timeout; sent at most two timeouts before the kill (the lane's queue, then its batch).
    let timeout = FAILOVER_TIMEOUT;
    for s in &seen {
        if s.status == Some(504) {
            let at = |t: Instant| match s.answered > t {
                true => format!("+{:?}", s.answered - t),
                false => format!("-{:?}", t - s.answered),
            };
            assert!(
                s.answered >= killed
                    && s.answered <= whole + timeout
                    && s.sent + 2 * timeout >= killed,
                "a 504 answered at {} from the kill, {} from the replica back in step",
                at(killed),
                at(whole)
            );
        }
    }
    // After it, every greeting is a 200 again.
    let after = whole + timeout;
    assert!(seen
        .iter()
        .filter(|s| s.sent > after)
        .all(|s| s.status == Some(200)));
}

#[test]
fn without_wait_a_failover_may_lose_acknowledged_greetings() {
    let (r, _, killed, whole) = failover_under_load("0");
    said_and_sound("0", &r, whole - killed);
}

#[test]
fn a_reshard_under_load_follows_moved_and_ask_and_counts_each_greeting_once() {
    let cluster = RedisCluster::start(3);
    let s = service(&cluster, &[]);
    let primaries = cluster.primaries();
    let stop = AtomicBool::new(false);
    let answered = AtomicU64::new(0);
    let seen = thread::scope(|scope| {
        let load = scope.spawn(|| load(&s, 32, &stop, &answered));
        wait_until("greetings under way", Duration::from_secs(30), || {
            answered.load(Ordering::Relaxed) > 1000
        });
        // A third of the slots from one primary to another, key by key.
        cluster.reshard(primaries[0], primaries[1], 3000);
        wait_for_more(&answered, 1000, "greetings after the reshard");
        stop.store(true, Ordering::Relaxed);
        load.join().expect("the load")
    });
    let stored = cluster.counts(&family(KEY));
    let r = reckon(&seen, &stored);
    println!("reshard of 3000 slots under 32 clients: {r:?}");
    assert_eq!(r.ok, seen.len(), "every greeting answered 200: {r:?}");
    assert_eq!(r.ok_lost, 0, "{r:?}");
    assert_eq!(stored.len(), seen.len(), "nothing stored but the greetings");
    let redirects = s.metric("hello_redis_redirects_total").unwrap();
    assert!(redirects > 0, "no MOVED or ASK followed");
}

#[test]
fn a_tls_cluster_with_an_acl_user_counts_and_lists() {
    let cluster = RedisCluster::start_tls();
    let port = cluster.nodes[0].port;
    let url = format!(
        "rediss://{}:{}@localhost:{port}",
        common::CLUSTER_USER,
        common::CLUSTER_PASSWORD
            .replace(' ', "%20")
            .replace('@', "%40")
    );
    let ca = cluster.ca_file();
    let s = Service::start(&[
        ("REDIS_URL", url.as_str()),
        ("REDIS_TLS_CA_FILE", &ca.to_string_lossy()),
    ]);
    let names: Vec<String> = (0..300).map(|i| format!("tls{i:03}")).collect();
    for r in greet_all(&s, &names, 2, DEPTH) {
        assert_eq!(r.count(), 1);
    }
    assert_eq!(s.greet("tls000").count(), 2);
    let listed = s.get("/counts?order=desc&limit=2").json();
    assert_eq!(listed["counts"][0]["name"], "tls000");
    assert_eq!(listed["counts"][0]["count"], "2");
    assert_eq!(s.request("HEAD", "/counts", &[]).status, 200);
    let stored = cluster.counts(&family(KEY));
    assert_eq!(stored.len(), 300);
    assert!(s.logs().contains("is a cluster"), "{}", s.logs());
}

#[test]
fn each_primary_is_judged_on_its_own_memory() {
    let cluster = RedisCluster::start(3);
    // New names stop at half of a primary's maxmemory, so that the full one below is well past
    // the line and well short of Redis's own limit (-OOM, a 507 store_full) alike.
    let s = service(&cluster, &[("STORE_NEW_NAMES_MAX_MEMORY_PERCENT", "50")]);
    let spread = KeyFamily::spread(KEY, 64);
    // Every key made, so that each primary holds some.
    let first: Vec<String> = (0..640).map(|i| format!("first{i}")).collect();
    greet_all(&s, &first, 2, DEPTH);
    // One primary at 75% of a maxmemory of its own; the others without a limit. (At 97%, a
    // few clients' buffers under load took a primary of a couple of MB past its limit in CI.)
    let full = cluster.primaries()[0];
    let used: u64 = cluster
        .cli(full, &["INFO", "memory"])
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok())
        .unwrap();
    let max = (used * 100 / 75).to_string();
    cluster
        .cli(full, &["CONFIG", "SET", "maxmemory", &max])
        .unwrap();
    wait_until("the full primary sampled", Duration::from_secs(10), || {
        s.get("/health").json()["store"]["admitting_new_names"] == false
    });
    // Which names live on that primary: those whose key it holds.
    let keys_on_full: BTreeSet<usize> = (0..spread.size())
        .filter(|k| owner(&cluster, spread.key(*k)) == full)
        .collect();
    let on_full = |name: &str| keys_on_full.contains(&spread.key_of(name.as_bytes()));
    let fresh: Vec<String> = (0..300).map(|i| format!("fresh{i}")).collect();
    let answers = greet_all(&s, &fresh, 2, DEPTH);
    let (mut refused, mut counted) = (0, 0);
    for (name, r) in fresh.iter().zip(&answers) {
        match on_full(name) {
            true => {
                r.assert_error(507, "names_full");
                refused += 1;
            }
            false => {
                assert_eq!(r.count(), 1, "{name}");
                counted += 1;
            }
        }
    }
    assert!(
        refused > 20 && counted > 100,
        "{refused} refused, {counted} counted"
    );
    // Known names on the full primary still count.
    let known = first
        .iter()
        .find(|n| on_full(n))
        .expect("a name on the full primary");
    assert_eq!(s.greet(known).count(), 2);
    cluster
        .cli(full, &["CONFIG", "SET", "maxmemory", "0"])
        .unwrap();
}

/// The port of the primary that holds `key`.
fn owner(cluster: &RedisCluster, key: &str) -> u16 {
    cluster
        .primaries()
        .into_iter()
        .find(|port| {
            cluster
                .cli(*port, &["EXISTS", key])
                .is_some_and(|r| r == "1" || r == "0")
        })
        .expect("an owner")
}

/// Runs `hello migrate-keys` against the cluster; its exit status and its standard error.
fn migrate(cluster: &RedisCluster) -> (bool, String) {
    let out = Command::new(common::binary())
        .arg("migrate-keys")
        .env_clear()
        .env("REDIS_CLUSTER_ADDRESS", cluster.address())
        .output()
        .expect("hello migrate-keys");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_one_key_moves_into_the_family_exactly_resumably_and_once() {
    let cluster = RedisCluster::start(3);
    // The one key, as a standalone Redis restored into the cluster holds it: 120,000 names,
    // scores as the original wrote them and one someone else wrote.
    let original: Vec<(String, i64)> = (0..120_000)
        .map(|i| (format!("old{i:06}"), i % 97 + 1))
        .collect();
    cluster.add(KEY, &original);
    // Greetings counted in cluster mode before the migration add to what it moves.
    let s = service(&cluster, &[]);
    assert_eq!(s.greet("old000007").count(), 1);
    drop(s);
    // The first run is stopped half-way (SIGKILL once it says it moved some).
    let mut first = Command::new(common::binary())
        .arg("migrate-keys")
        .env_clear()
        .env("REDIS_CLUSTER_ADDRESS", cluster.address())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hello migrate-keys");
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    let progress = lines
        .find_map(|line| {
            let line = line.ok()?;
            // hello migrate-keys: 12000 of 120000 names moved
            let moved: u64 = line.split(' ').nth(2)?.parse().ok()?;
            (moved > 0).then_some(line)
        })
        .expect("progress");
    let _ = first.kill();
    let _ = first.wait();
    let frozen = format!("{{{KEY}}}:migrating");
    assert_eq!(
        cluster.on_owner(&["EXISTS", &frozen]),
        "1",
        "the first run ended before it was stopped ({progress})"
    );
    // Run again: it carries on, and every count is where the service reads it.
    let (ok, log) = migrate(&cluster);
    assert!(ok, "{log}");
    assert!(log.contains("carrying on"), "{log}");
    let mut expected: HashMap<String, i64> = original.into_iter().collect();
    *expected.get_mut("old000007").unwrap() += 1;
    let moved = cluster.counts(&family(KEY));
    assert_eq!(moved.len(), expected.len());
    assert!(moved == expected, "counts differ after the migration");
    assert_eq!(cluster.on_owner(&["EXISTS", KEY]), "0");
    assert_eq!(cluster.on_owner(&["EXISTS", &frozen]), "0");
    for cursor in family(KEY).iter().map(|k| format!("{k}:migrated")) {
        assert_eq!(cluster.on_owner(&["EXISTS", &cursor]), "0", "{cursor}");
    }
    // A second run finds nothing to move and changes nothing.
    let (ok, log) = migrate(&cluster);
    assert!(ok && log.contains("nothing to move"), "{log}");
    assert!(cluster.counts(&family(KEY)) == expected);
    // The service lists them.
    let s = service(&cluster, &[]);
    let top = s.get("/counts?order=desc&limit=1").json();
    assert_eq!(top["counts"][0]["count"], "97");
}

/// What a closed-loop load measured.
struct Drove {
    greetings: u64,
    failed: u64,
    seconds: f64,
    latencies: Vec<Duration>,
}

impl Drove {
    fn rate(&self) -> f64 {
        self.greetings as f64 / self.seconds
    }

    fn percentile(&mut self, q: f64) -> Duration {
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }
}

/// `clients` keep-alive connections, one greeting in flight each (as `wrk -c`), for
/// `duration`; `pick(client, n)` names the n-th greeting of a client.
fn drive(
    s: &Service,
    clients: usize,
    duration: Duration,
    pick: &(dyn Fn(usize, u64) -> String + Sync),
) -> Drove {
    let started = Instant::now();
    let runs: Vec<(u64, u64, Vec<Duration>)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|client| {
                scope.spawn(move || {
                    let mut conn = Conn::open(s.addr);
                    let (mut ok, mut failed, mut latencies) = (0, 0, Vec::new());
                    let mut n = 0;
                    while started.elapsed() < duration {
                        n += 1;
                        let asked = Instant::now();
                        match conn.try_response_to(&format!("/hello/{}", pick(client, n))) {
                            Ok(r) if r.status == 200 => ok += 1,
                            Ok(_) => failed += 1,
                            Err(_) => {
                                failed += 1;
                                conn = Conn::open(s.addr);
                            }
                        }
                        latencies.push(asked.elapsed());
                    }
                    (ok, failed, latencies)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut drove = Drove {
        greetings: 0,
        failed: 0,
        seconds,
        latencies: Vec::new(),
    };
    for (ok, failed, latencies) in runs {
        drove.greetings += ok;
        drove.failed += failed;
        drove.latencies.extend(latencies);
    }
    drove
}

/// Distinct names: each greeting its own.
fn distinct(client: usize, n: u64) -> String {
    format!("d{client}-{n}")
}

/// CPU microseconds per greeting, from clock ticks (hundredths of a second).
fn micros(ticks: u64, greetings: u64) -> f64 {
    ticks as f64 * 10_000.0 / greetings.max(1) as f64
}

const LOAD: Duration = Duration::from_secs(3);

/// The price of `REDIS_WAIT_REPLICAS`: the same load (64 connections, one greeting in flight
/// each, distinct names, 3 s) against a primary with one replica, without WAIT and with WAIT 1.
/// `HELLO_BIN=<release build> cargo test --release --test redis_cluster measure -- --ignored
/// --nocapture --test-threads 1`.
#[test]
#[ignore]
fn measure_the_cost_of_wait() {
    let primary = Redis::start();
    let replica = Redis::start_replica_of(&primary);
    // Connected, then synchronised (a first full copy waits five seconds for others).
    wait_until("the replica in step", Duration::from_secs(30), || {
        redis::cmd("INFO")
            .arg("replication")
            .query::<String>(&mut primary.connection())
            .is_ok_and(|info| info.contains("state=online"))
    });
    println!(
        "\n{:<22} {:>12} {:>9} {:>9} {:>14} {:>15}",
        "REDIS_WAIT_REPLICAS", "greetings/s", "p50", "p99", "per pipeline", "primary CPU"
    );
    for wait in ["0", "1"] {
        let s = Service::start(&[
            ("REDIS_CLUSTER_ADDRESS", &primary.address()),
            ("REDIS_WAIT_REPLICAS", wait),
        ]);
        assert_eq!(s.greet("warm").status, 200);
        let (cpu, calls) = (
            common::load::cpu_ticks(primary.pid()),
            primary.calls("ZINCRBY"),
        );
        let batches = s.metric("hello_store_batches_total").unwrap();
        let mut drove = drive(&s, 64, LOAD, &distinct);
        let batches = s.metric("hello_store_batches_total").unwrap() - batches;
        assert_eq!(drove.failed, 0);
        println!(
            "{wait:<22} {:>12.0} {:>9.2?} {:>9.2?} {:>14.1} {:>13.1}us",
            drove.rate(),
            drove.percentile(0.5),
            drove.percentile(0.99),
            (primary.calls("ZINCRBY") - calls) as f64 / batches.max(1) as f64,
            micros(
                common::load::cpu_ticks(primary.pid()) - cpu,
                drove.greetings
            ),
        );
    }
    drop(replica);
}

/// The same load on one Redis and on clusters of one and three primaries (no replicas): the
/// greetings each served, and the Redis CPU a greeting costs its shard. On two shared cores
/// the shards share them with the service and the clients; the per-shard figure is what a
/// shard of its own core would spend.
#[test]
#[ignore]
fn measure_one_and_three_primaries() {
    println!(
        "\n{:<26} {:>12} {:>9} {:>9}  Redis CPU per greeting, by shard",
        "store", "greetings/s", "p50", "p99"
    );
    let single = Redis::start();
    let s = Service::with_redis(&single);
    let cpu = common::load::cpu_ticks(single.pid());
    let mut drove = drive(&s, 64, LOAD, &distinct);
    println!(
        "{:<26} {:>12.0} {:>9.2?} {:>9.2?}  {:.1}us",
        "standalone",
        drove.rate(),
        drove.percentile(0.5),
        drove.percentile(0.99),
        micros(common::load::cpu_ticks(single.pid()) - cpu, drove.greetings)
    );
    drop(s);
    for primaries in [1, 3] {
        let cluster = RedisCluster::start_without_replicas(primaries);
        let s = service(&cluster, &[]);
        let ports = cluster.primaries();
        let before: Vec<(u64, u64)> = ports
            .iter()
            .map(|p| {
                (
                    common::load::cpu_ticks(cluster.pid(*p)),
                    cluster.calls(*p, "ZINCRBY"),
                )
            })
            .collect();
        let mut drove = drive(&s, 64, LOAD, &distinct);
        let shards: Vec<String> = ports
            .iter()
            .zip(before)
            .map(|(p, (cpu, calls))| {
                let served = cluster.calls(*p, "ZINCRBY") - calls;
                format!(
                    "{:.1}us ({} greetings)",
                    micros(common::load::cpu_ticks(cluster.pid(*p)) - cpu, served),
                    served
                )
            })
            .collect();
        println!(
            "{:<26} {:>12.0} {:>9.2?} {:>9.2?}  {}",
            format!("cluster of {primaries}"),
            drove.rate(),
            drove.percentile(0.5),
            drove.percentile(0.99),
            shards.join(", ")
        );
    }
}

/// Names drawn from a Zipf law (exponent 1), as greetings of a popular few come: the same
/// name greeted several times in one batch is one `ZINCRBY` by that many. Redis's commands and
/// CPU per greeting, against distinct names and one name greeted by everyone, under 64
/// connections with one greeting in flight each (a connection has one greeting at the store at
/// a time, pipelined or not, so a batch holds at most one greeting a connection).
#[test]
#[ignore]
fn measure_hot_names_on_a_zipf_load() {
    let zipf_over = |names: usize| {
        let total: f64 = (1..=names).map(|rank| 1.0 / rank as f64).sum();
        let mut cumulative = Vec::with_capacity(names);
        let mut sum = 0.0;
        for rank in 1..=names {
            sum += 1.0 / rank as f64 / total;
            cumulative.push(sum);
        }
        // A xorshift draw per greeting, seeded by client and number: the same each run.
        move |client: usize, n: u64| {
            let mut x = (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            format!("z{}", cumulative.partition_point(|c| *c < u))
        }
    };
    let (zipf_10k, zipf_1k) = (zipf_over(10_000), zipf_over(1_000));
    let redis = Redis::start();
    let s = Service::with_redis(&redis);
    let one = |_: usize, _: u64| "everyone".to_owned();
    println!(
        "\n{:<14} {:>12} {:>18} {:>20}",
        "names", "greetings/s", "ZINCRBY/greeting", "Redis CPU/greeting"
    );
    for (label, pick) in [
        (
            "distinct",
            &distinct as &(dyn Fn(usize, u64) -> String + Sync),
        ),
        ("Zipf, 10,000", &zipf_10k),
        ("Zipf, 1,000", &zipf_1k),
        ("one name", &one),
    ] {
        let (cpu, calls) = (common::load::cpu_ticks(redis.pid()), redis.calls("ZINCRBY"));
        let drove = drive(&s, 64, LOAD, pick);
        println!(
            "{label:<14} {:>12.0} {:>18.3} {:>18.1}us",
            drove.rate(),
            (redis.calls("ZINCRBY") - calls) as f64 / drove.greetings as f64,
            micros(common::load::cpu_ticks(redis.pid()) - cpu, drove.greetings)
        );
    }
}

/// A slot half-way through a move, as `redis-cli --cluster reshard` leaves it between keys: the
/// key is already on the new primary, the old one answers `-ASK`, and the greeting goes there
/// once after `ASKING` (the map unchanged); once the slot is the new primary's, `-MOVED`
/// corrects the map.
#[test]
fn a_greeting_follows_ask_to_a_key_already_moved_then_moved() {
    let cluster = RedisCluster::start(3);
    let s = service(&cluster, &[]);
    let spread = KeyFamily::spread(KEY, 64);
    assert_eq!(s.greet("asked").count(), 1);
    let key = spread.key(spread.key_of(b"asked")).to_owned();
    let slot = hello::store::key_slot(key.as_bytes()).to_string();
    let from = owner(&cluster, &key);
    let to = cluster
        .primaries()
        .into_iter()
        .find(|p| *p != from)
        .expect("another primary");
    let (from_id, to_id) = (cluster.id(from), cluster.id(to));
    let ok = |reply: Option<String>| assert_eq!(reply.as_deref(), Some("OK"));
    ok(cluster.cli(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]));
    ok(cluster.cli(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]));
    ok(cluster.cli(
        from,
        &[
            "MIGRATE",
            "127.0.0.1",
            &to.to_string(),
            "",
            "0",
            "5000",
            "KEYS",
            &key,
        ],
    ));
    let redirects = s.metric("hello_redis_redirects_total").unwrap();
    assert_eq!(s.greet("asked").count(), 2);
    assert_eq!(s.greet("asked").count(), 3);
    // Two -ASK, each followed once.
    assert_eq!(
        s.metric("hello_redis_redirects_total").unwrap(),
        redirects + 2
    );
    // The slot becomes the new primary's everywhere: the old one answers -MOVED once (unless
    // the health sampler, reading the map once a second, learnt it first), and the map then
    // sends the next greeting there directly.
    for port in cluster.primaries() {
        ok(cluster.cli(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]));
    }
    assert_eq!(s.greet("asked").count(), 4);
    let after_moved = s.metric("hello_redis_redirects_total").unwrap();
    assert!((redirects + 2..=redirects + 3).contains(&after_moved));
    assert_eq!(s.greet("asked").count(), 5);
    assert_eq!(
        s.metric("hello_redis_redirects_total").unwrap(),
        after_moved
    );
    assert_eq!(owner(&cluster, &key), to);
    assert_eq!(cluster.counts(&[key])["asked"], 5);
}

/// Waits (at most 30 s) until the load has had `more` greetings answered from now on.
fn wait_for_more(answered: &AtomicU64, more: u64, what: &str) {
    let before = answered.load(Ordering::Relaxed);
    wait_until(what, Duration::from_secs(30), || {
        answered.load(Ordering::Relaxed) > before + more
    });
}
