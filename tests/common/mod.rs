//! The shared test harness: a private `redis-server` on a free port, the `hello` binary as a
//! real process, and a small HTTP/1.1 client over plain sockets.
#![allow(dead_code)] // Each suite uses a different part of the harness.

pub mod aws;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub use rustix::process::Signal;
use rustix::process::{kill_process, Pid};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Polls `ready` every 20 ms until it holds; fails the test after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < timeout,
            "{what} not ready after {timeout:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` to the process `pid` (a child of the test, or of one of its children).
pub fn send_signal(pid: u32, signal: Signal) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .expect("a process id");
    kill_process(pid, signal).expect("signal sent");
}

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
        };
        redis.spawn();
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

    fn spawn(&mut self) {
        let (appendonly, dir) = match &self.durable_dir {
            Some(dir) => ("yes", dir.clone()),
            None => ("no", std::env::temp_dir()),
        };
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", appendonly, "--appendfsync", "always"])
            .args(["--dir", &dir.to_string_lossy()]);
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
        let child = command
            .stdout(Stdio::null())
            .spawn()
            .expect("cannot run redis-server: run the README's test command, which installs it");
        self.child = Some(child);
        wait_until("redis-server", Duration::from_secs(10), || {
            self.client()
                .get_connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
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
        self.spawn();
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
}

/// A CA and a server certificate it signed, for `localhost` and 127.0.0.1.
fn make_certificates(dir: &std::path::Path) {
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
        if let Some(dir) = &self.durable_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(secure) = &self.secure {
            let _ = std::fs::remove_dir_all(&secure.dir);
        }
    }
}

/// The binary under test: this build's, or the one `HELLO_BIN` names (to measure another build
/// with the same scenarios, e.g. before and after a change).
pub fn binary() -> String {
    std::env::var("HELLO_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_hello").to_owned())
}

/// The `hello` binary, running.
pub struct Service {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Its standard error (the logs).
    log: PathBuf,
    /// Its standard output (CloudWatch metric lines, when on).
    out: PathBuf,
}

impl Service {
    /// Starts `hello` on 127.0.0.1 and a free port with `env` added, and waits until it serves.
    pub fn start(env: &[(&str, &str)]) -> Service {
        Service::start_on("127.0.0.1", env)
    }

    pub fn with_redis(redis: &Redis) -> Service {
        Service::start(&[("REDIS_CLUSTER_ADDRESS", &redis.address())])
    }

    pub fn start_on(host: &str, env: &[(&str, &str)]) -> Service {
        let port = free_port();
        Service::start_at(format!("{host}:{port}").parse().expect("address"), env)
    }

    pub fn start_at(addr: SocketAddr, env: &[(&str, &str)]) -> Service {
        let (host, port) = (addr.ip().to_string(), addr.port());
        let log =
            std::env::temp_dir().join(format!("hello-test-{}-{port}.log", std::process::id()));
        let out = log.with_extension("out");
        let child = Command::new(binary())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", &host)
            .env("PORT", port.to_string())
            .env("DEBUG", "true")
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start hello");
        let service = Service {
            child: Some(child),
            addr,
            log,
            out,
        };
        wait_until("hello", Duration::from_secs(10), || {
            TcpStream::connect(addr).is_ok()
        });
        service
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[])
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut conn = Conn::open(self.addr);
        conn.send(method, path, headers);
        conn.response(method == "HEAD")
    }

    /// Sends raw bytes on a new connection and returns everything read until it closes.
    pub fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let _ = stream.write_all(bytes);
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        out
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("not running").id()
    }

    pub fn signal(&self, signal: Signal) {
        send_signal(self.pid(), signal);
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if start.elapsed() > timeout {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(&self.out);
    }
}

/// Runs `hello` with `env` until it exits by itself (for start-up errors); returns its exit
/// status and standard error.
pub fn run_to_exit(env: &[(&str, &str)]) -> (ExitStatus, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hello"))
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run hello");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An HTTP response as received.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts this is the API's JSON error with `status` and `code`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        assert_eq!(body["error"]["status"], status);
        assert_eq!(body["error"]["code"], code);
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
}

/// A keep-alive client connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        Conn {
            reader: BufReader::new(stream),
        }
    }

    /// How long a response may take before reading it fails (15 s unless changed).
    pub fn set_read_timeout(&self, timeout: Duration) {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .expect("timeout");
    }

    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send_raw(req.as_bytes());
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("send");
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.send("GET", path, &[]);
        self.response(false)
    }

    pub fn try_response(&mut self, head_only: bool) -> std::io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').expect("header");
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only {
            return Ok(response);
        }
        if let Some(len) = response.header("content-length") {
            let mut body = vec![0; len.parse().expect("length")];
            self.reader.read_exact(&mut body)?;
            response.body = body;
        } else if response.header("transfer-encoding") == Some("chunked") {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size)?;
                let size = usize::from_str_radix(size.trim(), 16).map_err(std::io::Error::other)?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                response.body.extend_from_slice(&chunk[..size]);
            }
        } else {
            self.reader.read_to_end(&mut response.body)?;
        }
        Ok(response)
    }

    /// Sends `GET path` on this connection and reads the answer.
    pub fn try_response_to(&mut self, path: &str) -> std::io::Result<Response> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.reader.get_mut().write_all(req.as_bytes())?;
        self.try_response(false)
    }

    pub fn response(&mut self, head_only: bool) -> Response {
        self.try_response(head_only).expect("response")
    }

    /// True when the server closed the connection (read returns end of file).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }
}

/// Opens `connections` keep-alive connections, releases them all at once, and on each sends
/// `GET path(i)` while `more(answered so far, time since release)` holds. Each connection's
/// time to its first `200` and number of `200`s; any other answer fails the test.
pub fn burst(
    addr: SocketAddr,
    connections: usize,
    path: impl Fn(usize) -> String + Sync,
    more: impl Fn(usize, Duration) -> bool + Sync,
) -> Vec<(Duration, usize)> {
    let barrier = std::sync::Barrier::new(connections);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|i| {
                let (barrier, path, more) = (&barrier, &path, &more);
                thread::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn_scoped(scope, move || {
                        let mut conn = Conn::open(addr);
                        let path = path(i);
                        barrier.wait();
                        let start = Instant::now();
                        let mut first = None;
                        let mut answered = 0;
                        while answered == 0 || more(answered, start.elapsed()) {
                            assert_eq!(conn.get(&path).status, 200);
                            first.get_or_insert(start.elapsed());
                            answered += 1;
                        }
                        (first.unwrap_or_default(), answered)
                    })
                    .expect("spawn a client")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    })
}
