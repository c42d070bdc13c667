//! The cluster's membership, off the request path: a snapshot of the nodes in service that one
//! background thread keeps, so that no request ever calls AWS or holds a lock while AWS is
//! asked.
//!
//! A request that finds the snapshot older than its TTL asks the thread for a discovery and
//! waits for it, but only until its own time is up, only while AWS has been answering, and only
//! if few other requests already wait (the rest of the AWS lane stays free to answer with the
//! list in hand; the event loops never wait here).
//! Otherwise it is answered at once: with the list in hand while AWS has not failed, else with
//! the last list found marked stale, or the last error.
//! A failed discovery is remembered: the next one waits for a backoff, exponential with jitter
//! for errors worth retrying soon (`Throttling`, `RequestLimitExceeded`, 5xx, no answer).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use super::discovery::Nodes;
use super::StaleMembership;
use crate::aws::AwsError;
use crate::sync;

/// How long the last list found may stand in when AWS fails.
const FALLBACK: Duration = Duration::from_secs(300);
/// The backoff after the first failure worth retrying soon; it doubles with each failure in a
/// row, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff, and the one after an error that retrying soon will not cure (a refused
/// signature, a missing permission, an answer that cannot be read).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The membership a request works with.
#[derive(Debug)]
pub struct Membership {
    pub nodes: Arc<Nodes>,
    /// Which discovery found `nodes`: one more for each successful one.
    pub version: u64,
    /// Set when AWS could not confirm the list in time, and why.
    pub stale: Option<StaleMembership>,
}

/// Hands out the membership snapshot and has it refreshed in the background.
pub struct Tracker {
    shared: Arc<TrackerShared>,
    /// How long a snapshot is used without asking for a newer one.
    ttl: Duration,
    /// Most requests waiting for a discovery at once.
    max_waiting: usize,
}

struct TrackerShared {
    state: Mutex<TrackerState>,
    /// Signalled when a discovery is wanted, ends, or the tracker closes.
    changed: Condvar,
}

#[derive(Default)]
struct TrackerState {
    snapshot: Option<Snapshot>,
    /// Set while the last discovery failed.
    failure: Option<Failure>,
    /// A request asked for a discovery that has not started yet.
    wanted: bool,
    /// When the discovery in flight started.
    running: Option<Instant>,
    /// Discoveries ended, successful or not.
    ended: u64,
    /// Requests waiting for a discovery.
    waiting: usize,
    closed: bool,
}

struct Snapshot {
    nodes: Arc<Nodes>,
    found: Instant,
    version: u64,
}

struct Failure {
    error: AwsError,
    /// Failures in a row.
    count: u32,
    /// No discovery starts before this.
    retry_at: Instant,
}

impl Tracker {
    /// Starts the thread that runs `discover` (given each discovery's deadline, `budget` from
    /// its start); the first discovery starts at once.
    pub fn start(
        discover: impl FnMut(Instant) -> Result<Nodes, AwsError> + Send + 'static,
        budget: Duration,
        ttl: Duration,
        max_waiting: usize,
    ) -> std::io::Result<Tracker> {
        let shared = Arc::new(TrackerShared {
            state: Mutex::new(TrackerState {
                wanted: true,
                ..TrackerState::default()
            }),
            changed: Condvar::new(),
        });
        let refreshing = Arc::clone(&shared);
        thread::Builder::new()
            .name("membership".into())
            .spawn(move || refresh(&refreshing, discover, budget))?;
        Ok(Tracker {
            shared,
            ttl,
            max_waiting: max_waiting.max(1),
        })
    }

    /// The membership: the snapshot while it is within its TTL; otherwise a new discovery,
    /// waited for until `wait_until` at most; otherwise the last list found (stale) or the last
    /// error.
    pub fn current(&self, wait_until: Instant) -> Result<Membership, AwsError> {
        let mut state = self.shared.lock();
        // How many discoveries had ended when this request first asked for one.
        let mut asked: Option<u64> = None;
        loop {
            let now = Instant::now();
            if let Some(s) = &state.snapshot {
                if now.saturating_duration_since(s.found) < self.ttl {
                    return Ok(s.membership(None));
                }
            }
            if asked.is_some_and(|ended| state.ended > ended) {
                // The discovery this request waited for has ended.
                return state.answer(now, None);
            }
            if let Some(f) = &state.failure {
                // AWS is failing: answer now, and have it asked again once the backoff is over.
                if now >= f.retry_at && state.running.is_none() && !state.wanted {
                    state.wanted = true;
                    self.shared.changed.notify_all();
                }
                return state.answer(now, None);
            }
            if state.running.is_none() && !state.wanted {
                state.wanted = true;
                self.shared.changed.notify_all();
            }
            let first_ask = asked.is_none();
            asked.get_or_insert(state.ended);
            let crowded = first_ask && state.waiting >= self.max_waiting;
            if crowded {
                // Enough requests wait already. While AWS has not failed, the list in hand is
                // as current as anyone knows.
                if let Some(s) = state.snapshot.as_ref().filter(|s| s.found + FALLBACK > now) {
                    return Ok(s.membership(None));
                }
            }
            if crowded || now >= wait_until {
                let why = match state.running {
                    Some(started) => format!(
                        "cluster discovery has not finished after {} ms",
                        now.saturating_duration_since(started).as_millis()
                    ),
                    None => "cluster discovery has not started yet".to_owned(),
                };
                return state.answer(now, Some(AwsError::Transport(why)));
            }
            state.waiting += 1;
            state = sync::wait_timeout(&self.shared.changed, state, wait_until - now).0;
            state.waiting -= 1;
        }
    }
}

impl Drop for Tracker {
    /// Ends the thread once its discovery in flight, if any, is over.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_all();
    }
}

impl TrackerShared {
    fn lock(&self) -> MutexGuard<'_, TrackerState> {
        sync::lock(&self.state)
    }
}

impl Snapshot {
    fn membership(&self, stale: Option<StaleMembership>) -> Membership {
        Membership {
            nodes: Arc::clone(&self.nodes),
            version: self.version,
            stale,
        }
    }
}

impl TrackerState {
    /// The answer for a request that waits no longer: the snapshot, as found by the last
    /// discovery when it succeeded, or marked stale with why (`pending`, else the last
    /// failure) while it is young enough to stand in; otherwise the error.
    fn answer(&self, now: Instant, pending: Option<AwsError>) -> Result<Membership, AwsError> {
        let error = match (pending, &self.failure) {
            (Some(e), _) => e,
            (None, Some(f)) => f.error.clone(),
            (None, None) => {
                return match &self.snapshot {
                    Some(s) => Ok(s.membership(None)),
                    None => Err(AwsError::Transport("no cluster discovery yet".into())),
                }
            }
        };
        match &self.snapshot {
            Some(s) if now.saturating_duration_since(s.found) < FALLBACK => {
                Ok(s.membership(Some(StaleMembership {
                    age_seconds: now.saturating_duration_since(s.found).as_secs(),
                    error: error.to_string(),
                })))
            }
            _ => Err(error),
        }
    }
}

/// The refresher thread: a discovery each time one is wanted, with no lock held meanwhile.
fn refresh(
    shared: &TrackerShared,
    mut discover: impl FnMut(Instant) -> Result<Nodes, AwsError>,
    budget: Duration,
) {
    let random = SystemRandom::new();
    loop {
        {
            let mut state = shared.lock();
            while !state.wanted && !state.closed {
                state = sync::wait(&shared.changed, state);
            }
            if state.closed {
                return;
            }
            state.wanted = false;
            state.running = Some(Instant::now());
        }
        let result = discover(Instant::now() + budget);
        let mut state = shared.lock();
        state.running = None;
        state.ended += 1;
        match result {
            Ok(nodes) => {
                if let Some(f) = state.failure.take() {
                    log::info!("cluster discovery works again after {} failures", f.count);
                }
                if state.snapshot.as_ref().is_none_or(|s| *s.nodes != nodes) {
                    log::info!(
                        "cluster membership: {} nodes in service, {} of them with no address",
                        nodes.peers.len() + nodes.unaddressed.len(),
                        nodes.unaddressed.len()
                    );
                }
                let version = state.snapshot.as_ref().map_or(1, |s| s.version + 1);
                state.snapshot = Some(Snapshot {
                    nodes: Arc::new(nodes),
                    found: Instant::now(),
                    version,
                });
            }
            Err(error) => {
                let count = state.failure.as_ref().map_or(1, |f| f.count + 1);
                let wait = backoff(count, error.is_retry_later(), jitter(&random));
                log::warn!(
                    "cluster discovery failed ({count} in a row; next attempt in {:.1} s at the earliest): {error}",
                    wait.as_secs_f64()
                );
                state.failure = Some(Failure {
                    error,
                    count,
                    retry_at: Instant::now() + wait,
                });
            }
        }
        shared.changed.notify_all();
    }
}

/// How long to wait before the next discovery after `failures` in a row: for errors worth
/// retrying soon, `FIRST_BACKOFF` doubled with each failure up to `MAX_BACKOFF`; for others,
/// `MAX_BACKOFF`. `jitter` (0 to 1) picks the wait between half that and all of it, so that
/// nodes that failed together do not retry together.
pub fn backoff(failures: u32, retry_later: bool, jitter: f64) -> Duration {
    let ceiling = match retry_later {
        true => FIRST_BACKOFF
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(MAX_BACKOFF),
        false => MAX_BACKOFF,
    };
    ceiling / 2 + (ceiling / 2).mul_f64(jitter.clamp(0.0, 1.0))
}

/// A number from 0 to 1 from the system's random source (0.5 if it fails).
fn jitter(random: &SystemRandom) -> f64 {
    let mut bytes = [0u8; 4];
    match random.fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::{channel, Sender};

    use super::*;
    use crate::cluster::discovery::Peer;

    /// A tracker whose discoveries end when the test sends their result; counts them.
    fn tracker(
        ttl: Duration,
        max_waiting: usize,
    ) -> (Tracker, Sender<Result<Nodes, AwsError>>, Arc<AtomicUsize>) {
        let (results, next) = channel();
        let started = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&started);
        let tracker = Tracker::start(
            move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
                next.recv()
                    .unwrap_or_else(|_| Err(AwsError::Transport("test over".into())))
            },
            Duration::from_secs(10),
            ttl,
            max_waiting,
        )
        .unwrap();
        (tracker, results, started)
    }

    fn nodes(port: u16) -> Nodes {
        Nodes {
            peers: vec![Peer {
                instance_id: Some("i-1".into()),
                address: SocketAddr::from(([10, 0, 0, 1], port)),
            }],
            unaddressed: Vec::new(),
        }
    }

    fn throttled() -> AwsError {
        AwsError::Api {
            status: 400,
            code: "Throttling".into(),
            message: "Rate exceeded".into(),
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// Polls `done` until it holds, for at most 5 s.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(5), "{what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_a_ceiling() {
        let s = Duration::from_secs;
        assert_eq!(backoff(1, true, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(1, true, 1.0), s(1));
        assert_eq!(backoff(2, true, 1.0), s(2));
        assert_eq!(backoff(3, true, 0.0), s(2));
        assert_eq!(backoff(3, true, 0.5), s(3));
        assert_eq!(backoff(6, true, 1.0), s(32));
        assert_eq!(backoff(7, true, 1.0), s(60));
        assert_eq!(backoff(u32::MAX, true, 1.0), s(60));
        // Not worth retrying soon: the longest wait at once.
        assert_eq!(backoff(1, false, 0.0), s(30));
        assert_eq!(backoff(1, false, 1.0), s(60));
    }

    #[test]
    fn concurrent_requests_share_one_discovery_and_reuse_it() {
        let (tracker, results, discoveries) = tracker(Duration::from_secs(60), 16);
        thread::scope(|scope| {
            let waiters: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| tracker.current(soon())))
                .collect();
            eventually("all waiting", || tracker.shared.lock().waiting == 8);
            results.send(Ok(nodes(1))).unwrap();
            for w in waiters {
                let m = w.join().unwrap().unwrap();
                assert_eq!(*m.nodes, nodes(1));
                assert!(m.stale.is_none());
            }
        });
        assert_eq!(*tracker.current(soon()).unwrap().nodes, nodes(1));
        assert_eq!(discoveries.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_request_waits_for_a_hung_discovery_only_until_its_own_time() {
        let (tracker, _results, _) = tracker(Duration::ZERO, 16);
        let started = Instant::now();
        let error = tracker
            .current(started + Duration::from_millis(300))
            .unwrap_err();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_millis(1300), "{took:?}");
        assert!(
            error
                .to_string()
                .contains("cluster discovery has not finished after"),
            "{error}"
        );
    }

    #[test]
    fn beyond_the_waiting_limit_requests_are_answered_at_once() {
        let (tracker, results, _) = tracker(Duration::ZERO, 2);
        thread::scope(|scope| {
            let waiters: Vec<_> = (0..2)
                .map(|_| scope.spawn(|| tracker.current(soon())))
                .collect();
            eventually("two waiting", || tracker.shared.lock().waiting == 2);
            let started = Instant::now();
            let error = tracker.current(soon()).unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(2));
            assert!(error.to_string().contains("has not finished"), "{error}");
            results.send(Ok(nodes(1))).unwrap();
            for w in waiters {
                assert!(w.join().unwrap().is_ok());
            }
        });
        // With a list, and AWS not failing: that list, not marked stale.
        thread::scope(|scope| {
            let waiters: Vec<_> = (0..2)
                .map(|_| scope.spawn(|| tracker.current(soon())))
                .collect();
            eventually("two waiting", || tracker.shared.lock().waiting == 2);
            let m = tracker.current(soon()).unwrap();
            assert_eq!((*m.nodes == nodes(1), m.stale), (true, None));
            results.send(Ok(nodes(2))).unwrap();
            for w in waiters {
                assert_eq!(*w.join().unwrap().unwrap().nodes, nodes(2));
            }
        });
    }

    #[test]
    fn a_failure_is_remembered_and_retried_after_a_backoff() {
        let (tracker, results, discoveries) = tracker(Duration::from_secs(60), 16);
        results.send(Err(throttled())).unwrap();
        assert_eq!(tracker.current(soon()).unwrap_err(), throttled());
        // Within the backoff (at least half a second), no discovery, no waiting.
        let started = Instant::now();
        for _ in 0..10 {
            assert_eq!(tracker.current(soon()).unwrap_err(), throttled());
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        if started.elapsed() < Duration::from_millis(400) {
            assert_eq!(discoveries.load(Ordering::SeqCst), 1);
        }
        // Once it is over, a request has AWS asked again (and is answered at once meanwhile).
        eventually("a second discovery", || {
            let _ = tracker.current(soon());
            discoveries.load(Ordering::SeqCst) == 2
        });
        results.send(Ok(nodes(2))).unwrap();
        eventually("the new list", || {
            tracker
                .current(soon())
                .is_ok_and(|m| *m.nodes == nodes(2) && m.stale.is_none())
        });
    }

    #[test]
    fn the_last_list_stands_in_marked_stale_while_aws_fails() {
        let (tracker, results, _) = tracker(Duration::ZERO, 16);
        // The first discovery finds a list; the next one (TTL 0: every request asks for one)
        // fails. Whether a request comes before or after the first has ended, it is answered
        // with that list, and once the failure is in, marked stale with why.
        results.send(Ok(nodes(1))).unwrap();
        results.send(Err(throttled())).unwrap();
        eventually("the list marked stale", || {
            let m = tracker.current(soon()).unwrap();
            assert_eq!(*m.nodes, nodes(1));
            m.stale.is_some_and(|stale| {
                stale.error == "AWS answered 400 Throttling: Rate exceeded"
                    && stale.age_seconds <= 1
            })
        });
    }
}
