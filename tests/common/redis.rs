//! A `redis-server` of our own on a free port: plain, durable, a read-only replica, with TLS
//! and an ACL user, or with settings of the test's (e.g. `maxmemory`); stopped, restarted and
//! killed as the resilience scenarios need.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_until};

/// A `redis-server` of our own, never the user's.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    /// Set when every write is fsynced to an append-only file in this folder, so that counts
    /// survive a SIGKILL and a restart.
    durable_dir: Option<PathBuf>,
    pub secure: Option<Secure>,
    /// The port of the primary this server replicates, which makes it read-only.
    replica_of: Option<u16>,
    /// More `redis-server` arguments, e.g. `--maxmemory 16mb`.
    extra: Vec<String>,
}

/// A server that also listens with TLS and lets in one ACL user by password only.
pub struct Secure {
    pub tls_port: u16,
    pub user: &'static str,
    pub password: &'static str,
    /// Holds `ca.crt` (to trust) and the server's certificate for `localhost` and 127.0.0.1.
    pub dir: PathBuf,
}

impl Secure {
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
}

impl Redis {
    pub fn start() -> Redis {
        Redis::spawned(free_port(), None, None, None)
    }

    /// A plain server with more arguments, e.g. `["--maxmemory", "16mb"]`.
    pub fn start_with(args: &[&str]) -> Redis {
        let mut redis = Redis {
            child: None,
            port: free_port(),
            durable_dir: None,
            secure: None,
            replica_of: None,
            extra: args.iter().map(|a| a.to_string()).collect(),
        };
        redis.spawn_trying(3);
        redis
    }

    /// A read-only replica of `primary`, as a client meets one after a failover points it at
    /// the old primary.
    pub fn start_replica_of(primary: &Redis) -> Redis {
        Redis::spawned(free_port(), None, None, Some(primary.port))
    }

    fn spawned(
        port: u16,
        durable_dir: Option<PathBuf>,
        secure: Option<Secure>,
        replica_of: Option<u16>,
    ) -> Redis {
        let mut redis = Redis {
            child: None,
            port,
            durable_dir,
            secure,
            replica_of,
            extra: Vec::new(),
        };
        redis.spawn_trying(3);
        redis
    }

    /// TLS on `secure.tls_port` (plain TCP stays on `port` for checks) with a certificate from
    /// a throw-away CA made by `openssl`; the default user is off, so every client must log in.
    pub fn start_secure() -> Redis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("hello-tls-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tls dir");
        make_certificates(&dir);
        let secure = Secure {
            tls_port: free_port(),
            user: "hello-app",
            password: "p@ss:word/with%odd chars",
            dir,
        };
        Redis::spawned(port, None, Some(secure), None)
    }

    pub fn start_durable() -> Redis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("hello-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        Redis::spawned(port, Some(dir), None, None)
    }

    /// The folder of a server that keeps nothing.
    fn scratch_dir(&self) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "hello-redis-scratch-{}-{}",
            std::process::id(),
            self.port
        ))
    }

    /// Starts the server; `tries` more times on new ports if its port was taken meanwhile
    /// (0 where the port must stay, as on a restart).
    fn spawn_trying(&mut self, tries: u32) {
        let (appendonly, dir) = match &self.durable_dir {
            Some(dir) => ("yes", dir.clone()),
            // A folder of its own, empty: a server loads whatever dump file its folder holds,
            // and a shared one (the temporary folder) may hold another server's.
            None => {
                let dir = self.scratch_dir();
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("a folder for redis-server");
                ("no", dir)
            }
        };
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", appendonly, "--appendfsync", "always"])
            .args(["--dir", &dir.to_string_lossy()]);
        command.args(&self.extra);
        if let Some(primary) = self.replica_of {
            command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        if let Some(secure) = &self.secure {
            let file = |name: &str| secure.dir.join(name).to_string_lossy().into_owned();
            command
                .args(["--tls-port", &secure.tls_port.to_string()])
                .args(["--tls-cert-file", &file("server.crt")])
                .args(["--tls-key-file", &file("server.key")])
                .args(["--tls-ca-cert-file", &file("ca.crt")])
                .args(["--tls-auth-clients", "no"])
                .args(["--user", "default", "off"])
                .args([
                    "--user",
                    secure.user,
                    "on",
                    &format!(">{}", secure.password),
                    "~*",
                    "+@all",
                ]);
        }
        let mut child = command
            .stdout(Stdio::null())
            .spawn()
            .expect("cannot run redis-server: run the README's test command, which installs it");
        // A free port is free only when asked: another test (or process) may take it before
        // this server binds it, and then the server exits while the other answers PING. So
        // the server that answers must be this one, by its process id; if this one died, the
        // port is taken and another is tried.
        let pid = child.id();
        let mut exited = false;
        wait_until("redis-server", Duration::from_secs(10), || {
            if child.try_wait().ok().flatten().is_some() {
                exited = true;
                return true;
            }
            self.client()
                .get_connection()
                .and_then(|mut c| redis::cmd("INFO").arg("server").query::<String>(&mut c))
                .is_ok_and(|info| info.contains(&format!("process_id:{pid}\r\n")))
        });
        if exited {
            assert!(
                tries > 0,
                "redis-server could not listen on port {}",
                self.port
            );
            self.port = free_port();
            if let Some(secure) = &mut self.secure {
                secure.tls_port = free_port();
            }
            return self.spawn_trying(tries - 1);
        }
        self.child = Some(child);
    }

    /// A client for the plain port, logged in when the server is secured.
    fn client(&self) -> redis::Client {
        use redis::IntoConnectionInfo;
        let mut info = redis::ConnectionAddr::Tcp("127.0.0.1".into(), self.port)
            .into_connection_info()
            .expect("redis address");
        if let Some(secure) = &self.secure {
            info = info.set_redis_settings(
                redis::RedisConnectionInfo::default()
                    .set_username(secure.user)
                    .set_password(secure.password),
            );
        }
        redis::Client::open(info).expect("redis client")
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): connections drop, data is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn_trying(0);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis is not running").id()
    }

    /// A direct connection, to check what the service stored.
    pub fn connection(&self) -> redis::Connection {
        self.client()
            .get_connection()
            .expect("connect to test redis")
    }

    /// Every (name, count) in `key`, in ZRANGE order.
    pub fn counts(&self, key: &str) -> Vec<(String, i64)> {
        let raw: Vec<(Vec<u8>, i64)> = redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(&mut self.connection())
            .expect("ZRANGE");
        raw.into_iter()
            .map(|(name, count)| (String::from_utf8_lossy(&name).into_owned(), count))
            .collect()
    }

    /// Adds `n` names (`name-000000` …), each with a count of 1, in one command.
    pub fn add_names(&self, key: &str, n: usize) {
        let mut add = redis::cmd("ZADD");
        add.arg(key);
        for i in 0..n {
            add.arg(1).arg(format!("name-{i:06}"));
        }
        let _: () = add.query(&mut self.connection()).expect("ZADD");
    }

    pub fn total(&self, key: &str) -> i64 {
        self.counts(key).iter().map(|(_, c)| c).sum()
    }

    /// Names in `key`.
    pub fn names(&self, key: &str) -> u64 {
        redis::cmd("ZCARD")
            .arg(key)
            .query(&mut self.connection())
            .expect("ZCARD")
    }

    /// `name`'s count in `key`, if it is there.
    pub fn score(&self, key: &str, name: &str) -> Option<i64> {
        redis::cmd("ZSCORE")
            .arg(key)
            .arg(name)
            .query(&mut self.connection())
            .expect("ZSCORE")
    }

    /// A numeric field of `INFO section` (e.g. `used_memory` in `memory`), or `None` when the
    /// server does not write it.
    pub fn info(&self, section: &str, field: &str) -> Option<u64> {
        let info: String = redis::cmd("INFO")
            .arg(section)
            .query(&mut self.connection())
            .expect("INFO");
        info.lines().find_map(|line| {
            line.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .parse()
                .ok()
        })
    }

    /// How many times `command` ran since the server started (`INFO commandstats`).
    pub fn calls(&self, command: &str) -> u64 {
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.connection())
            .expect("INFO commandstats");
        command_calls(&stats, command)
    }

    /// How many times Redis answered `-OOM` since it started (`INFO errorstats`).
    pub fn oom_replies(&self) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("errorstats")
            .query(&mut self.connection())
            .expect("INFO errorstats");
        info.lines()
            .find_map(|line| {
                line.strip_prefix("errorstat_OOM:count=")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// `CONFIG SET parameter value`.
    pub fn config_set(&self, parameter: &str, value: &str) {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(parameter)
            .arg(value)
            .query(&mut self.connection())
            .expect("CONFIG SET");
    }
}

/// `command`'s calls in an `INFO commandstats` text (`cmdstat_zincrby:calls=12,usec=…`).
pub fn command_calls(stats: &str, command: &str) -> u64 {
    let prefix = format!("cmdstat_{}:calls=", command.to_ascii_lowercase());
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// A real TCP proxy in front of a real Redis that passes commands through at once and replies
/// slowly: the first `fast` bytes Redis sends on a connection at once, then one byte every
/// `every`. For a Redis that answers, but too slowly, byte by byte.
pub fn trickling_proxy(redis_port: u16, fast: usize, every: Duration) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let addr = listener.local_addr().expect("proxy address");
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)) else {
                continue;
            };
            let (mut from_client, mut to_server) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_client, &mut to_server);
                let _ = to_server.shutdown(std::net::Shutdown::Write);
            });
            let (mut from_server, mut to_client) = (server, client);
            std::thread::spawn(move || {
                let mut passed = 0;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match from_server.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    for &byte in &buf[..n] {
                        if passed >= fast {
                            std::thread::sleep(every);
                        }
                        if to_client.write_all(&[byte]).is_err() {
                            return;
                        }
                        passed += 1;
                    }
                }
            });
        }
    });
    addr
}

/// A CA and a server certificate it signed, for `localhost` and 127.0.0.1.
pub(super) fn make_certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .status()
            .expect("cannot run openssl: run the README's test command, which installs it");
        assert!(status.success(), "openssl {args:?} failed");
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509", "-days", "2", "-subj", "/CN=hello test CA"][..],
            &key[..],
            &["-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("san.ext");
    openssl(
        &[
            &["req"][..],
            &key[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let dir = self
            .durable_dir
            .clone()
            .unwrap_or_else(|| self.scratch_dir());
        let _ = std::fs::remove_dir_all(dir);
        if let Some(secure) = &self.secure {
            let _ = std::fs::remove_dir_all(&secure.dir);
        }
    }
}

/// Plain TCP to 127.0.0.1:`port`, no login: how the suites reach the servers they start.
pub fn plain_endpoint(port: u16) -> hello::store::RedisEndpoint {
    hello::store::RedisEndpoint {
        host: "127.0.0.1".into(),
        port,
        tls: false,
        username: None,
        password: None,
        db: 0,
    }
}
