//! One connection to Redis: TCP, or TLS for `rediss://`, the `AUTH`/`SELECT` handshake, and
//! commands written as pipelines whose replies are read back in order. Every read and write
//! is bounded by the store's timeout.

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustix::io::Errno;
use rustix::net::RecvFlags;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::resp::{self, Reply};
use crate::secret::Secret;

/// Bytes buffered per connection for replies; larger bulk strings are read past it.
const READ_BUFFER: usize = 16 * 1024;

/// Where Redis is and how to log in, as parsed from `REDIS_URL` or `REDIS_CLUSTER_ADDRESS`.
#[derive(Debug)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub db: u32,
}

impl fmt::Display for Endpoint {
    /// The address without credentials, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match self.host.contains(':') {
            true => write!(f, "{scheme}://[{}]:{}", self.host, self.port),
            false => write!(f, "{scheme}://{}:{}", self.host, self.port),
        }
    }
}

/// Makes connections to one endpoint.
pub struct Connector {
    endpoint: Endpoint,
    timeout: Duration,
    tls: Option<Arc<ClientConfig>>,
}

/// Why TLS could not be set up at start.
#[derive(Debug)]
pub struct TlsSetupError(pub String);

impl Connector {
    /// `extra_ca` names a PEM file of certificates trusted besides the built-in Mozilla roots.
    pub fn new(
        endpoint: Endpoint,
        timeout: Duration,
        extra_ca: Option<&Path>,
    ) -> Result<Connector, TlsSetupError> {
        let tls = match endpoint.tls {
            true => Some(Arc::new(tls_config(extra_ca)?)),
            false => None,
        };
        Ok(Connector {
            endpoint,
            timeout,
            tls,
        })
    }

    pub fn connect(&self) -> io::Result<Connection> {
        let tcp = self.connect_tcp()?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(self.timeout))?;
        tcp.set_write_timeout(Some(self.timeout))?;
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some(config) => {
                let name = ServerName::try_from(self.endpoint.host.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let tls =
                    ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
                Stream::Tls(Box::new(StreamOwned::new(tls, tcp)))
            }
        };
        let mut conn = Connection {
            stream: BufReader::with_capacity(READ_BUFFER, stream),
            out: Vec::new(),
        };
        self.handshake(&mut conn)?;
        Ok(conn)
    }

    fn connect_tcp(&self) -> io::Result<TcpStream> {
        let mut last = None;
        for addr in (self.endpoint.host.as_str(), self.endpoint.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, self.timeout) {
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
        let endpoint = &self.endpoint;
        let db = endpoint.db.to_string();
        let mut sent = Vec::new();
        if let Some(password) = &endpoint.password {
            match &endpoint.username {
                Some(user) => conn.queue(&[b"AUTH", user.as_bytes(), password.expose().as_bytes()]),
                None => conn.queue(&[b"AUTH", password.expose().as_bytes()]),
            }
            sent.push("AUTH");
        }
        if endpoint.db != 0 {
            conn.queue(&[b"SELECT", db.as_bytes()]);
            sent.push("SELECT");
        }
        if sent.is_empty() {
            return Ok(());
        }
        conn.send()?;
        for command in sent {
            match conn.receive()? {
                Reply::Status(_) => {}
                Reply::Error(e) => {
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
}

impl Connection {
    /// Adds a command to the next `send`.
    pub fn queue(&mut self, args: &[&[u8]]) {
        resp::write_command(&mut self.out, args);
    }

    /// Writes every queued command at once.
    pub fn send(&mut self) -> io::Result<()> {
        let sent = self.stream.get_mut().write_all(&self.out);
        self.out.clear();
        sent?;
        self.stream.get_mut().flush()
    }

    /// Reads the reply to the oldest command sent and not yet answered.
    pub fn receive(&mut self) -> io::Result<Reply> {
        resp::read_reply(&mut self.stream)
    }

    /// One command, one reply.
    pub fn query(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.queue(args);
        self.send()?;
        self.receive()
    }

    /// Whether this idle connection is known to be dead: the server closed it (as a Redis
    /// restart or failover does) or sent something nobody asked for. Checked without blocking,
    /// so that a pooled connection is not used, and a request failed, after Redis came back.
    pub fn is_stale(&self) -> bool {
        if !self.stream.buffer().is_empty() {
            return true;
        }
        let tcp = match self.stream.get_ref() {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &tls.sock,
        };
        let mut byte = [0u8; 1];
        let flags = RecvFlags::PEEK | RecvFlags::DONTWAIT;
        !matches!(
            rustix::net::recv(tcp, &mut byte[..], flags),
            Err(Errno::AGAIN | Errno::INTR)
        )
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
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
