//! Asking every peer's `/health`, bounded: a fixed pool of threads does the asking (not a
//! thread per peer per request), and concurrent requests share one round of it. A round's
//! answers are reused for about a second; a request that finds a round under way waits for it
//! rather than starting another.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::discovery::Peer;
use super::membership::Membership;
use super::Unreachable;
use crate::aws::within;
use crate::sync;

/// Threads asking peers. A round with more peers than this queues the rest, each still asked
/// only while the round's deadline allows.
pub const PEER_THREADS: usize = 16;
/// How long a round's answers are reused for the same membership.
const REUSE: Duration = Duration::from_secs(1);
/// Most bytes read of a peer's `/health`.
const HEALTH_LIMIT: u64 = 64 * 1024;

/// The peers' part of a `/health/cluster` answer.
#[derive(Debug)]
pub struct Answers {
    pub node_healths: Vec<Value>,
    pub unreachable: Vec<Unreachable>,
}

pub struct FanOut {
    jobs: Sender<Job>,
    rounds: Mutex<Rounds>,
    /// Signalled when a round ends.
    ended: Condvar,
}

/// One peer to ask, and where its answer goes.
struct Job {
    peer: Peer,
    deadline: Instant,
    index: usize,
    reply: Sender<(usize, Result<Value, Unreachable>)>,
}

#[derive(Default)]
struct Rounds {
    last: Option<Round>,
    /// A round is under way.
    running: bool,
}

struct Round {
    version: u64,
    ended: Instant,
    answers: Arc<Answers>,
}

/// Marks the round under way as ended when dropped, even if the leader unwinds.
struct Leading<'a>(&'a FanOut);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.rounds().running = false;
        self.0.ended.notify_all();
    }
}

impl FanOut {
    /// Starts the pool; `agent` asks each peer within `peer_timeout`.
    pub fn start(agent: ureq::Agent, peer_timeout: Duration) -> std::io::Result<FanOut> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..PEER_THREADS {
            let (queue, agent) = (Arc::clone(&queue), agent.clone());
            thread::Builder::new()
                .name(format!("peers-{n}"))
                .spawn(move || serve(&queue, &agent, peer_timeout))?;
        }
        Ok(FanOut {
            jobs,
            rounds: Mutex::new(Rounds::default()),
            ended: Condvar::new(),
        })
    }

    /// The answers of `membership`'s peers: a round's of less than `REUSE` ago for the same
    /// (or a newer) membership, the round under way's, or a new round's. This node (`own_id`)
    /// is answered by `own`, from memory. Returns by `deadline` (and a scheduling moment).
    pub fn answers(
        &self,
        membership: &Membership,
        own_id: &str,
        own: impl Fn() -> Value,
        deadline: Instant,
    ) -> Arc<Answers> {
        let mut rounds = self.rounds();
        loop {
            if let Some(last) = &rounds.last {
                if last.version >= membership.version && last.ended.elapsed() < REUSE {
                    return Arc::clone(&last.answers);
                }
            }
            if !rounds.running {
                break;
            }
            // A round under way started before this request, so it ends before its deadline.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Arc::new(unasked(membership, own_id, own));
            }
            rounds = sync::wait_timeout(&self.ended, rounds, left).0;
        }
        rounds.running = true;
        drop(rounds);
        let leading = Leading(self);
        let answers = Arc::new(self.round(membership, own_id, own, deadline));
        self.rounds().last = Some(Round {
            version: membership.version,
            ended: Instant::now(),
            answers: Arc::clone(&answers),
        });
        drop(leading);
        answers
    }

    /// Asks every peer through the pool, waiting for their answers until `deadline`.
    fn round(
        &self,
        membership: &Membership,
        own_id: &str,
        own: impl Fn() -> Value,
        deadline: Instant,
    ) -> Answers {
        let peers = &membership.nodes.peers;
        let mut results: Vec<Option<Result<Value, Unreachable>>> = vec![None; peers.len()];
        let (reply, replies) = mpsc::channel();
        let mut asked = 0;
        for (index, peer) in peers.iter().enumerate() {
            if peer.instance_id.as_deref() == Some(own_id) {
                // This node: from memory, not over the network.
                results[index] = Some(Ok(own()));
                continue;
            }
            let job = Job {
                peer: peer.clone(),
                deadline,
                index,
                reply: reply.clone(),
            };
            match self.jobs.send(job) {
                Ok(()) => asked += 1,
                Err(_) => results[index] = Some(Err(unreachable(peer, "no thread left to ask it"))),
            }
        }
        for _ in 0..asked {
            // Each ask ends by the deadline, and so does the wait for them.
            let left = deadline.saturating_duration_since(Instant::now());
            match replies.recv_timeout(left) {
                Ok((index, result)) => results[index] = Some(result),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let mut answers = Answers {
            node_healths: Vec::new(),
            unreachable: membership.nodes.unaddressed.clone(),
        };
        for (peer, result) in peers.iter().zip(results) {
            match result.unwrap_or_else(|| Err(unreachable(peer, "no answer before the deadline")))
            {
                Ok(health) => answers.node_healths.push(health),
                Err(u) => answers.unreachable.push(u),
            }
        }
        answers
    }

    fn rounds(&self) -> MutexGuard<'_, Rounds> {
        sync::lock(&self.rounds)
    }
}

/// A pool thread: asks the peers it is given until the pool is dropped.
fn serve(queue: &Mutex<Receiver<Job>>, agent: &ureq::Agent, peer_timeout: Duration) {
    loop {
        let job = match sync::lock(queue).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let result = ask(agent, &job.peer, job.deadline, peer_timeout);
        // The round may have stopped waiting: then nobody needs the answer.
        let _ = job.reply.send((job.index, result));
    }
}

/// One peer's `/health`, within its own timeout and the round's deadline.
fn ask(
    agent: &ureq::Agent,
    peer: &Peer,
    deadline: Instant,
    peer_timeout: Duration,
) -> Result<Value, Unreachable> {
    let fail = |why: String| unreachable(peer, &why);
    let request = agent.get(format!("http://{}/health", peer.address));
    let response = within(request, deadline, peer_timeout, "/health")
        .map_err(|_| fail("deadline passed before it could be asked".into()))?
        .call()
        .map_err(|e| fail(e.to_string()))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(fail(format!("/health answered {status}")));
    }
    let body = response
        .into_body()
        .with_config()
        .limit(HEALTH_LIMIT)
        .read_to_string()
        .map_err(|e| fail(e.to_string()))?;
    let value: Value =
        serde_json::from_str(&body).map_err(|e| fail(format!("/health is not JSON: {e}")))?;
    if !value.get("ec2_instance_id").is_some_and(Value::is_string) {
        return Err(fail("/health has no ec2_instance_id".into()));
    }
    Ok(value)
}

fn unreachable(peer: &Peer, error: &str) -> Unreachable {
    Unreachable {
        ec2_instance_id: peer.instance_id.clone(),
        address: Some(peer.address.to_string()),
        error: error.to_owned(),
    }
}

/// The answers when a round under way did not end in time: this node from memory, every
/// other one listed as not asked.
fn unasked(membership: &Membership, own_id: &str, own: impl Fn() -> Value) -> Answers {
    let mut answers = Answers {
        node_healths: Vec::new(),
        unreachable: membership.nodes.unaddressed.clone(),
    };
    for peer in &membership.nodes.peers {
        match peer.instance_id.as_deref() == Some(own_id) {
            true => answers.node_healths.push(own()),
            false => answers.unreachable.push(unreachable(
                peer,
                "not asked: a round asking the peers did not end in time",
            )),
        }
    }
    answers
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::cluster::discovery::Nodes;

    /// A peer on 127.0.0.1 answering `/health` as `id` (or never, if `hung`); counts requests.
    fn peer(id: &str, hung: bool) -> (Peer, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let asked = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&asked);
        let body = format!(r#"{{"ec2_instance_id":"{id}"}}"#);
        thread::spawn(move || {
            let mut held = Vec::new();
            for mut stream in listener.incoming().flatten() {
                counted.fetch_add(1, Ordering::SeqCst);
                if hung {
                    held.push(stream);
                    continue;
                }
                let _ = stream.read(&mut [0; 1024]);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let peer = Peer {
            instance_id: Some(id.to_owned()),
            address,
        };
        (peer, asked)
    }

    fn membership(peers: Vec<Peer>, version: u64) -> Membership {
        Membership {
            nodes: Arc::new(Nodes {
                peers,
                unaddressed: Vec::new(),
            }),
            version,
            stale: None,
        }
    }

    fn fan_out() -> FanOut {
        let agent = crate::aws::agent(Duration::from_secs(1));
        FanOut::start(agent, Duration::from_millis(500)).unwrap()
    }

    fn own() -> Value {
        serde_json::json!({"ec2_instance_id": "i-self"})
    }

    #[test]
    fn concurrent_requests_share_one_round() {
        let (a, asked_a) = peer("i-a", false);
        let (b, asked_b) = peer("i-b", false);
        let self_peer = Peer {
            instance_id: Some("i-self".into()),
            address: SocketAddr::from(([127, 0, 0, 1], 9)),
        };
        let m = membership(vec![a, self_peer, b], 1);
        let fan_out = fan_out();
        let deadline = Instant::now() + Duration::from_secs(3);
        thread::scope(|scope| {
            let requests: Vec<_> = (0..20)
                .map(|_| scope.spawn(|| fan_out.answers(&m, "i-self", own, deadline)))
                .collect();
            for r in requests {
                let answers = r.join().unwrap();
                let ids: Vec<&str> = answers
                    .node_healths
                    .iter()
                    .map(|h| h["ec2_instance_id"].as_str().unwrap())
                    .collect();
                assert_eq!(ids, ["i-a", "i-self", "i-b"]);
                assert!(answers.unreachable.is_empty());
            }
        });
        assert_eq!(asked_a.load(Ordering::SeqCst), 1);
        assert_eq!(asked_b.load(Ordering::SeqCst), 1);
        // A newer membership is asked afresh.
        fan_out.answers(
            &membership(m.nodes.peers.clone(), 2),
            "i-self",
            own,
            deadline,
        );
        assert_eq!(asked_a.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn more_peers_than_threads_with_some_hung_are_answered_by_the_deadline() {
        let mut peers = Vec::new();
        for n in 0..PEER_THREADS + 4 {
            peers.push(peer(&format!("i-{n}"), n % 5 == 0).0);
        }
        let fan_out = fan_out();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(1500);
        let answers = fan_out.answers(&membership(peers, 1), "i-self", own, deadline);
        let took = started.elapsed();
        assert_eq!(answers.node_healths.len(), PEER_THREADS + 4 - 4);
        assert_eq!(answers.unreachable.len(), 4);
        assert!(took < Duration::from_millis(2500), "{took:?}");
    }
}
