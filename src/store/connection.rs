//! One connection to Redis: TCP, or TLS for `rediss://`, the `AUTH`/`SELECT` handshake, and
//! commands written as pipelines whose replies are read back in order. Each command has one
//! deadline (the store's timeout from its start) that bounds all of it: making the connection
//! (name lookup included), writing it, and reading its whole reply.

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::RecvFlags;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::resolve::{system_resolve, Resolver};
use super::resp::{self, RedisReply};
use crate::secret::Secret;

/// Bytes buffered per connection for replies; larger bulk strings are read past it.
const READ_BUFFER: usize = 16 * 1024;

/// Where Redis is and how to log in, as parsed from `REDIS_URL` or `REDIS_CLUSTER_ADDRESS`.
#[derive(Debug)]
pub struct RedisEndpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub db: u32,
}

impl fmt::Display for RedisEndpoint {
    /// The address without credentials, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match self.host.contains(':') {
            true => write!(f, "{scheme}://[{}]:{}", self.host, self.port),
            false => write!(f, "{scheme}://{}:{}", self.host, self.port),
        }
    }
}

/// Makes connections to one server: its address, and what every connection to the same Redis
/// shares (the TLS trust, the login).
pub struct Connector {
    host: String,
    port: u16,
    login: Arc<Login>,
    tls: Option<Arc<ClientConfig>>,
    resolver: Resolver,
}

/// Who the connections log in as, and the database they use.
struct Login {
    username: Option<String>,
    password: Option<Secret>,
    db: u32,
}

/// Why TLS could not be set up at start.
#[derive(Debug)]
pub struct TlsSetupError(pub String);

impl Connector {
    /// `extra_ca` names a PEM file of certificates trusted besides the built-in Mozilla roots.
    pub fn new(
        endpoint: RedisEndpoint,
        extra_ca: Option<&Path>,
    ) -> Result<Connector, TlsSetupError> {
        let tls = match endpoint.tls {
            true => Some(Arc::new(tls_config(extra_ca)?)),
            false => None,
        };
        Ok(Connector {
            host: endpoint.host,
            port: endpoint.port,
            login: Arc::new(Login {
                username: endpoint.username,
                password: endpoint.password,
                db: endpoint.db,
            }),
            tls,
            resolver: Resolver::new(Arc::new(system_resolve)),
        })
    }

    /// Connections to another node of the same cluster: the same trust and login, with a
    /// name lookup of its own. A cluster has database 0 only, which is what they use.
    pub fn to_node(&self, host: &str, port: u16) -> Connector {
        Connector {
            host: host.to_owned(),
            port,
            login: Arc::clone(&self.login),
            tls: self.tls.clone(),
            resolver: Resolver::new(Arc::new(system_resolve)),
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A new connection, logged in, all within `deadline`: name lookup, TCP connect, TLS
    /// handshake and login.
    pub fn connect(&self, deadline: Instant) -> io::Result<Connection> {
        let tcp = self.connect_tcp(deadline)?;
        tcp.set_nodelay(true)?;
        let timed = Timed { tcp, deadline };
        let stream = match &self.tls {
            None => Stream::Plain(timed),
            Some(config) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let tls =
                    ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
                Stream::Tls(Box::new(StreamOwned::new(tls, timed)))
            }
        };
        let mut conn = Connection {
            stream: BufReader::with_capacity(READ_BUFFER, stream),
            out: Vec::new(),
            abandoned: 0,
        };
        self.handshake(&mut conn)?;
        Ok(conn)
    }

    fn connect_tcp(&self, deadline: Instant) -> io::Result<TcpStream> {
        let mut last = None;
        // Half the time left at most for the lookup: when it hangs, the last addresses found
        // stand in, and connecting to them needs the other half.
        let lookup = left(deadline)? / 2;
        let addresses = self.resolver.addresses(&self.host, self.port, lookup)?;
        for addr in addresses {
            match TcpStream::connect_timeout(&addr, left(deadline)?) {
                Ok(tcp) => return Ok(tcp),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "the host name has no address")
        }))
    }

    /// Logs in and selects the database in one round trip.
    fn handshake(&self, conn: &mut Connection) -> io::Result<()> {
        let login = &*self.login;
        let db = login.db.to_string();
        let mut sent = Vec::new();
        if let Some(password) = &login.password {
            match &login.username {
                Some(user) => conn.queue(&[b"AUTH", user.as_bytes(), password.expose().as_bytes()]),
                None => conn.queue(&[b"AUTH", password.expose().as_bytes()]),
            }
            sent.push("AUTH");
        }
        if login.db != 0 {
            conn.queue(&[b"SELECT", db.as_bytes()]);
            sent.push("SELECT");
        }
        if sent.is_empty() {
            return Ok(());
        }
        conn.send().map_err(|e| e.error)?;
        for command in sent {
            match conn.receive()? {
                RedisReply::Status(_) => {}
                RedisReply::Error(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("{command} refused: {e}"),
                    ))
                }
                other => {
                    let why = other.unexpected(command);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, why));
                }
            }
        }
        Ok(())
    }
}

fn tls_config(extra_ca: Option<&Path>) -> Result<ClientConfig, TlsSetupError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path)
            .map_err(|e| TlsSetupError(format!("cannot read {}: {e}", path.display())))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| TlsSetupError(format!("not PEM certificates: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| TlsSetupError(format!("unusable certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsSetupError("no certificate in the file".to_owned()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

pub struct Connection {
    stream: BufReader<Stream>,
    /// Commands queued and not yet sent.
    out: Vec<u8>,
    /// Replies on their way that nobody will read (see [`Connection::abandon_reply`]).
    abandoned: usize,
}

impl Connection {
    /// Adds a command to the next `send`.
    pub fn queue(&mut self, args: &[&[u8]]) {
        resp::write_command(&mut self.out, args);
    }

    /// Adds a command already written out ([`resp::write_command`]) to the next `send`.
    pub fn queue_written(&mut self, command: &[u8]) {
        self.out.extend_from_slice(command);
    }

    /// Writes every queued command at once. On failure, says whether any byte of them went
    /// out: if none did, the server cannot have run any of them.
    pub fn send(&mut self) -> Result<(), SendError> {
        let out = std::mem::take(&mut self.out);
        let mut written = 0;
        let sent = loop {
            let stream = self.stream.get_mut();
            if written == out.len() {
                break stream.flush();
            }
            match stream.write(&out[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        // The buffer is kept for the next commands.
        self.out = out;
        self.out.clear();
        sent.map_err(|error| SendError {
            error,
            reached: written > 0,
        })
    }

    /// Reads the reply to the oldest command sent and not yet answered.
    pub fn receive(&mut self) -> io::Result<RedisReply> {
        resp::read_reply(&mut self.stream)
    }

    /// Records that the oldest command sent and not yet answered will never be read by the
    /// one who sent it: its reply is thrown away by [`Connection::settle`] before the next
    /// user's.
    pub fn abandon_reply(&mut self) {
        self.abandoned += 1;
    }

    /// Replies owed to nobody, still to be read before this connection is in step.
    pub fn abandoned(&self) -> usize {
        self.abandoned
    }

    /// Reads and throws away the replies owed to nobody. On error the connection is out of
    /// step and must be dropped.
    pub fn settle(&mut self) -> io::Result<()> {
        while self.abandoned > 0 {
            self.receive()?;
            self.abandoned -= 1;
        }
        Ok(())
    }

    /// Sets the deadline of the command under way: every read and write from now on waits at
    /// most until it, so a server that trickles its reply byte by byte cannot stretch one
    /// command past it.
    pub fn set_deadline(&mut self, deadline: Instant) {
        match self.stream.get_mut() {
            Stream::Plain(timed) => timed.deadline = deadline,
            Stream::Tls(tls) => tls.sock.deadline = deadline,
        }
    }

    fn tcp(&self) -> &TcpStream {
        match self.stream.get_ref() {
            Stream::Plain(timed) => &timed.tcp,
            Stream::Tls(tls) => &tls.sock.tcp,
        }
    }

    /// Whether this idle connection is known to be dead: the server closed it (as a Redis
    /// restart or failover does) or sent something nobody asked for. Checked without blocking,
    /// so that a pooled connection is not used, and a request failed, after Redis came back.
    pub fn is_stale(&self) -> bool {
        if !self.stream.buffer().is_empty() {
            return true;
        }
        let tcp = self.tcp();
        let mut byte = [0u8; 1];
        let flags = RecvFlags::PEEK | RecvFlags::DONTWAIT;
        !matches!(
            rustix::net::recv(tcp, &mut byte[..], flags),
            Err(Errno::AGAIN | Errno::INTR)
        )
    }
}

/// A failed [`Connection::send`].
#[derive(Debug)]
pub struct SendError {
    pub error: io::Error,
    /// Whether any byte was written: then the server may have received, and run, a command.
    /// (Over TLS, a byte rustls took counts as written, though it may not have left.)
    pub reached: bool,
}

/// Time left until `deadline`; none left is a timeout.
fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    match left.is_zero() {
        true => Err(io::ErrorKind::TimedOut.into()),
        false => Ok(left),
    }
}

/// The socket under the deadline of the command under way. Each read and write is given only
/// the time left, so the deadline bounds the whole command, not each read of it (a server that
/// sends a byte just within every timeout would otherwise hold a command without end).
struct Timed {
    tcp: TcpStream,
    deadline: Instant,
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.set_read_timeout(Some(left(self.deadline)?))?;
        self.tcp.read(buf)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.set_write_timeout(Some(left(self.deadline)?))?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

enum Stream {
    Plain(Timed),
    Tls(Box<StreamOwned<ClientConnection, Timed>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpListener};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Mutex};
    use std::time::Instant;

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(300);

    /// A connector to `redis.test` whose lookups go to `resolve`.
    fn connector(
        resolve: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> Connector {
        Connector {
            host: "redis.test".into(),
            port: 6379,
            login: Arc::new(Login {
                username: None,
                password: None,
                db: 0,
            }),
            tls: None,
            resolver: Resolver::new(Arc::new(resolve)),
        }
    }

    /// A resolver that answers its first `answers` lookups with `address` and hangs on every
    /// later one (until the returned sender is dropped); counts lookups.
    fn hangs_after(
        answers: usize,
        address: SocketAddr,
    ) -> (Connector, Arc<AtomicUsize>, mpsc::Sender<()>) {
        let lookups = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&lookups);
        let (release, hung) = mpsc::channel::<()>();
        let hung = Mutex::new(hung);
        let connector = connector(move |_, _| {
            if counted.fetch_add(1, Ordering::SeqCst) >= answers {
                let _ = hung.lock().unwrap().recv();
                return Err(io::Error::other("released"));
            }
            Ok(vec![address])
        });
        (connector, lookups, release)
    }

    #[test]
    fn a_hanging_resolver_costs_a_connection_attempt_half_its_deadline_and_no_more() {
        let nowhere = SocketAddr::from(([127, 0, 0, 1], 9));
        let (connector, lookups, _release) = hangs_after(0, nowhere);
        for _ in 0..3 {
            let started = Instant::now();
            let error = connector.connect(Instant::now() + TIMEOUT).err().unwrap();
            let took = started.elapsed();
            assert!(
                took >= TIMEOUT / 2 && took < TIMEOUT + Duration::from_secs(1),
                "{took:?}"
            );
            // The time left of the connection's deadline, a little under the timeout.
            let error = error.to_string();
            assert!(
                error.starts_with("cannot resolve the Redis host redis.test: no answer within "),
                "{error}"
            );
        }
        // One lookup thread, however many attempts wait for it.
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_last_address_found_serves_reconnects_while_the_resolver_hangs() {
        let redis = TcpListener::bind("127.0.0.1:0").unwrap();
        let (connector, lookups, _release) = hangs_after(1, redis.local_addr().unwrap());
        assert!(connector.connect(Instant::now() + TIMEOUT).is_ok());
        let started = Instant::now();
        assert!(
            connector.connect(Instant::now() + TIMEOUT).is_ok(),
            "reconnect with the last address"
        );
        assert!(started.elapsed() < TIMEOUT + Duration::from_secs(1));
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
        redis.set_nonblocking(true).unwrap();
        let accepted = std::iter::from_fn(|| redis.accept().ok()).count();
        assert_eq!(accepted, 2);
    }
}
