//! A Redis Cluster of our own: `redis-server --cluster-enabled yes` nodes on free ports (client
//! and bus ports both chosen, never the user's), joined by `redis-cli --cluster create
//! --cluster-replicas 1`, plain or over TLS with a throw-away CA and an ACL user; nodes killed,
//! slots moved with `redis-cli --cluster reshard`, and what each key holds read with another
//! client (`redis-cli`, which speaks TLS too) from whichever primary has it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::redis::{command_calls, make_certificates};
use super::{free_port, wait_until};

/// The ACL user of a TLS cluster, and its password.
pub const USER: &str = "hello-app";
pub const PASSWORD: &str = "cluster p@ss";

pub struct RedisCluster {
    pub nodes: Vec<Node>,
    dir: PathBuf,
    /// Over TLS: every node's port is a TLS port, and its certificate is signed by the CA in
    /// `dir`.
    pub tls: bool,
    /// Replicas of each primary.
    replicas: usize,
    /// One cluster at a time in a test process: six nodes and their load each, and the
    /// failover, reshard and admission tests time what they measure (a replica starved of the
    /// CPU by another test's cluster lags its WAIT, a sampler its memory).
    _alone: MutexGuard<'static, ()>,
}

pub struct Node {
    pub port: u16,
    bus_port: u16,
    child: Option<Child>,
}

impl RedisCluster {
    /// `primaries` primaries with a replica each, on plain TCP.
    pub fn start(primaries: usize) -> RedisCluster {
        RedisCluster::started(primaries, 1, false)
    }

    /// `primaries` primaries alone, for measurements that want every core for the primaries.
    pub fn start_without_replicas(primaries: usize) -> RedisCluster {
        RedisCluster::started(primaries, 0, false)
    }

    /// Three primaries with a replica each, reached over TLS only, logging in as [`USER`].
    pub fn start_tls() -> RedisCluster {
        RedisCluster::started(3, 1, true)
    }

    fn started(primaries: usize, replicas: usize, tls: bool) -> RedisCluster {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        // A test that failed while holding it leaves nothing half-done that matters here.
        let alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let first = free_port();
        let dir =
            std::env::temp_dir().join(format!("hello-cluster-{}-{first}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cluster dir");
        if tls {
            make_certificates(&dir);
        }
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir,
            tls,
            replicas: 0,
            _alone: alone,
        };
        // Two ports a node, none twice (a port just let go may be handed out again).
        let mut ports = vec![first];
        let nodes = primaries * (1 + replicas);
        while ports.len() < nodes * 2 {
            let port = free_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        for i in 0..nodes {
            let mut node = Node {
                port: ports[2 * i],
                bus_port: ports[2 * i + 1],
                child: None,
            };
            cluster.spawn(&mut node);
            cluster.nodes.push(node);
        }
        for node in &cluster.nodes {
            wait_until("a cluster node", Duration::from_secs(10), || {
                cluster.answers(node.port)
            });
        }
        if nodes == 1 {
            // redis-cli makes clusters of three primaries or more: one is given every slot.
            let port = cluster.nodes[0].port;
            assert_eq!(
                cluster.cli(port, &["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]),
                Some("OK".into())
            );
            cluster.wait_until_whole();
            return cluster;
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = cluster.redis_cli();
        create
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        let out = create.output().expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.replicas = replicas;
        cluster.wait_until_whole();
        cluster
    }

    fn spawn(&self, node: &mut Node) {
        let node_dir = self.dir.join(node.port.to_string());
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &node_dir.to_string_lossy()])
            .args(["--logfile", "redis.log"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            // A primary that stops answering is replaced within about two seconds.
            .args(["--cluster-node-timeout", "1000"])
            .args(["--cluster-port", &node.bus_port.to_string()]);
        if self.tls {
            let file = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
            command
                .args(["--port", "0", "--tls-port", &node.port.to_string()])
                .args(["--tls-cert-file", &file("server.crt")])
                .args(["--tls-key-file", &file("server.key")])
                .args(["--tls-ca-cert-file", &file("ca.crt")])
                .args(["--tls-auth-clients", "no"])
                .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
                .args(["--user", "default", "off"])
                .args([
                    "--user",
                    USER,
                    "on",
                    &format!(">{PASSWORD}"),
                    "~*",
                    "&*",
                    "+@all",
                ])
                .args(["--masteruser", USER, "--masterauth", PASSWORD]);
        } else {
            command.args(["--port", &node.port.to_string()]);
        }
        let child = command
            .stdout(Stdio::null())
            .spawn()
            .expect("cannot run redis-server: run the README's test command, which installs it");
        node.child = Some(child);
    }

    /// `redis-cli`, logged in over TLS when the cluster is secured.
    fn redis_cli(&self) -> Command {
        let mut cli = Command::new("redis-cli");
        if self.tls {
            cli.args([
                "--tls",
                "--cacert",
                &self.dir.join("ca.crt").to_string_lossy(),
            ])
            .args(["--user", USER, "--pass", PASSWORD, "--no-auth-warning"]);
        }
        cli
    }

    /// Whether the node on `port` answers.
    fn answers(&self, port: u16) -> bool {
        self.cli(port, &["PING"]).is_some_and(|r| r == "PONG")
    }

    /// `redis-cli -p port command…`'s output, if it ran.
    pub fn cli(&self, port: u16, command: &[&str]) -> Option<String> {
        let out = self
            .redis_cli()
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(command)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The configured endpoint a service is given: the first node's address.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.nodes[0].port)
    }

    /// Every node's `CLUSTER NODES` line, as a live node sees them.
    fn cluster_nodes(&self) -> Option<String> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .find_map(|n| self.cli(n.port, &["CLUSTER", "NODES"]))
    }

    /// The ports of the primaries that serve slots now.
    pub fn primaries(&self) -> Vec<u16> {
        let nodes = self.cluster_nodes().unwrap_or_default();
        let mut ports: Vec<u16> = nodes
            .lines()
            .filter(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                fields.len() > 8 && fields[2].contains("master") && !fields[2].contains("fail")
            })
            .filter_map(|line| port_of(line.split(' ').nth(1)?))
            .collect();
        ports.sort_unstable();
        ports
    }

    /// The node id of the node on `port`.
    pub fn id(&self, port: u16) -> String {
        self.cli(port, &["CLUSTER", "MYID"]).expect("CLUSTER MYID")
    }

    /// The port of the replica of the primary on `port`.
    pub fn replica_of(&self, port: u16) -> u16 {
        let id = self.id(port);
        let nodes = self.cluster_nodes().expect("CLUSTER NODES");
        nodes
            .lines()
            .find(|line| line.split(' ').nth(3) == Some(id.as_str()))
            .and_then(|line| port_of(line.split(' ').nth(1)?))
            .expect("a replica")
    }

    /// Waits until every slot is served, every node agrees, and each primary's replica is in
    /// step with it.
    pub fn wait_until_whole(&self) {
        wait_until("the cluster whole", Duration::from_secs(30), || {
            self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                self.cli(n.port, &["CLUSTER", "INFO"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            }) && self.replicas_in_step()
        });
    }

    /// Whether every primary has its replica connected and caught up.
    fn replicas_in_step(&self) -> bool {
        self.replicas == 0
            || self.primaries().iter().all(|port| {
                self.cli(*port, &["INFO", "replication"])
                    .is_some_and(|info| {
                        info.contains("connected_slaves:1") && info.contains("state=online")
                    })
            })
    }

    /// Where the node on `port` is in `nodes`.
    fn index(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node on that port")
    }

    /// Kills the node on `port` (SIGKILL): its connections drop, its data is gone.
    pub fn kill(&mut self, port: u16) {
        let index = self.index(port);
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node on `port` again, with the cluster configuration it had (and no data):
    /// it rejoins as a replica of whoever serves its slots now, as a replaced node does.
    pub fn restart(&mut self, port: u16) {
        let index = self.index(port);
        let mut node = std::mem::replace(
            &mut self.nodes[index],
            Node {
                port,
                bus_port: 0,
                child: None,
            },
        );
        self.spawn(&mut node);
        self.nodes[index] = node;
    }

    /// Waits until `replica`, the replica of a primary that was killed, serves its slots in
    /// its place, and every node that runs says the cluster is whole.
    pub fn wait_for_failover(&self, replica: u16) {
        wait_until("the failover", Duration::from_secs(30), || {
            self.primaries().contains(&replica)
                && self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                    self.cli(n.port, &["CLUSTER", "INFO"])
                        .is_some_and(|info| info.contains("cluster_state:ok"))
                })
        });
    }

    /// Moves `slots` slots from the primary on `from` to the one on `to`, as an operator does
    /// (`redis-cli --cluster reshard`), a few keys at a time; returns when it is over.
    pub fn reshard(&self, from: u16, to: u16, slots: u32) {
        let out = self
            .redis_cli()
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{from}"))
            .args(["--cluster-from", &self.id(from)])
            .args(["--cluster-to", &self.id(to)])
            .args(["--cluster-slots", &slots.to_string()])
            .args(["--cluster-pipeline", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster reshard");
        assert!(
            out.status.success(),
            "reshard: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every (name, count) of the keys named `keys`, each read from the primary that has it.
    pub fn counts(&self, keys: &[String]) -> HashMap<String, i64> {
        let mut all = HashMap::new();
        for key in keys {
            for port in self.primaries() {
                let Some(out) = self.cli(port, &["ZRANGE", key, "0", "-1", "WITHSCORES"]) else {
                    continue;
                };
                if out.starts_with("MOVED") || out.starts_with("ASK") {
                    continue;
                }
                let lines: Vec<&str> = out.lines().collect();
                for pair in lines.chunks(2) {
                    if let [name, score] = pair {
                        let score = score.parse::<f64>().expect("a score") as i64;
                        assert!(
                            all.insert(name.to_string(), score).is_none(),
                            "{name} in two keys"
                        );
                    }
                }
                break;
            }
        }
        all
    }

    /// Sends `command` to every primary, and returns the first reply that is not a redirect:
    /// the one from the primary that holds the key.
    pub fn on_owner(&self, command: &[&str]) -> String {
        for port in self.primaries() {
            if let Some(out) = self.cli(port, command) {
                if !out.starts_with("MOVED") && !out.starts_with("ASK") {
                    return out;
                }
            }
        }
        panic!("no primary answered {command:?}")
    }

    /// `ZADD key score name …` for `entries`, on the primary that holds `key`, a thousand at a
    /// time.
    pub fn add(&self, key: &str, entries: &[(String, i64)]) {
        for chunk in entries.chunks(1000) {
            let mut command: Vec<String> = vec!["ZADD".into(), key.into()];
            for (name, score) in chunk {
                command.push(score.to_string());
                command.push(name.clone());
            }
            let args: Vec<&str> = command.iter().map(String::as_str).collect();
            let out = self.on_owner(&args);
            assert!(out.parse::<u64>().is_ok(), "ZADD: {out}");
        }
    }

    /// How many times `command` ran on the node on `port` since it started.
    pub fn calls(&self, port: u16, command: &str) -> u64 {
        command_calls(
            &self
                .cli(port, &["INFO", "commandstats"])
                .unwrap_or_default(),
            command,
        )
    }

    /// The process id of the node on `port`.
    pub fn pid(&self, port: u16) -> u32 {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .and_then(|n| n.child.as_ref())
            .expect("a running node")
            .id()
    }

    /// The directory of the throw-away CA (`ca.crt`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
}

fn port_of(address: &str) -> Option<u16> {
    // ip:port@bus-port
    address.split('@').next()?.rsplit_once(':')?.1.parse().ok()
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // HELLO_KEEP_CLUSTER=1 keeps each node's folder (its redis.log) to read after a test.
        if std::env::var_os("HELLO_KEEP_CLUSTER").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
