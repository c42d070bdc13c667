//! The `hello` binary as a real process: started with an environment, waited for until it
//! serves, signalled, its logs and standard output read; or run until it exits by itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use super::{free_port, observed, send_signal, wait_until, Conn, Redis, Response, Signal};

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
        Service::on_redis(redis, &[])
    }

    /// Starts `hello` counting in `redis`, with `env` added.
    pub fn on_redis(redis: &Redis, env: &[(&str, &str)]) -> Service {
        let address = redis.address();
        let mut all = vec![("REDIS_CLUSTER_ADDRESS", address.as_str())];
        all.extend_from_slice(env);
        Service::start(&all)
    }

    pub fn start_on(host: &str, env: &[(&str, &str)]) -> Service {
        let port = free_port();
        Service::start_at(format!("{host}:{port}").parse().expect("address"), env)
    }

    pub fn start_at(addr: SocketAddr, env: &[(&str, &str)]) -> Service {
        let (host, port) = (addr.ip().to_string(), addr.port());
        // Named by address, not port alone: a cluster's nodes share a port on 127.0.0.x, and
        // two processes writing one file overwrite each other's lines.
        let log = std::env::temp_dir().join(format!(
            "hello-test-{}-{host}-{port}.log",
            std::process::id()
        ));
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

    /// Greets `name`, asking for JSON.
    pub fn greet(&self, name: &str) -> Response {
        self.request(
            "GET",
            &format!("/hello/{name}"),
            &[("Accept", "application/json")],
        )
    }

    /// The value of an unlabelled sample in `/metrics`, if there is one.
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.get("/metrics")
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
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
        observed::note_raw(bytes, &out);
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
