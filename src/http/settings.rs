//! The server's settings: where it listens, how many threads and connections it keeps, and its
//! timeouts, read from the environment.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::thread;

use super::request::Limits;
use super::server::ServerConfig;
use crate::settings::{invalid, millis, number, value, ConfigError, Variable};

const PORT: Variable = Variable {
    name: "PORT",
    default: "8080",
    meaning: "port to listen on",
};
const HOST: Variable = Variable {
    name: "HOST",
    default: "0.0.0.0",
    meaning: "address to listen on",
};
const HTTP_WORKERS: Variable = Variable {
    name: "HTTP_WORKERS",
    default: "",
    meaning: "event-loop threads owning the connections; unset: one per core",
};
const HTTP_MAX_CONNECTIONS: Variable = Variable {
    name: "HTTP_MAX_CONNECTIONS",
    default: "10000",
    meaning: "open connections before new ones are refused",
};
const HTTP_REQUEST_TIMEOUT_MS: Variable = Variable {
    name: "HTTP_REQUEST_TIMEOUT_MS",
    default: "10000",
    meaning: "time to send a whole request once started",
};
const HTTP_IDLE_TIMEOUT_MS: Variable = Variable {
    name: "HTTP_IDLE_TIMEOUT_MS",
    default: "75000",
    meaning: "keep-alive idle time, above an ALB's 60 s",
};
const HTTP_WRITE_TIMEOUT_MS: Variable = Variable {
    name: "HTTP_WRITE_TIMEOUT_MS",
    default: "10000",
    meaning: "time a response may go without a byte taken by the client",
};
const SHUTDOWN_TIMEOUT_MS: Variable = Variable {
    name: "SHUTDOWN_TIMEOUT_MS",
    default: "10000",
    meaning: "time in-flight requests get after SIGTERM",
};

/// The variables read here, for `hello --help`.
pub const VARIABLES: &[Variable] = &[
    PORT,
    HOST,
    HTTP_WORKERS,
    HTTP_MAX_CONNECTIONS,
    HTTP_REQUEST_TIMEOUT_MS,
    HTTP_IDLE_TIMEOUT_MS,
    HTTP_WRITE_TIMEOUT_MS,
    SHUTDOWN_TIMEOUT_MS,
];

/// `PORT` and `HOST`. `get` returns a variable's value when it is set and not blank.
pub fn listen_from_env(get: &impl Fn(&str) -> Option<String>) -> Result<SocketAddr, ConfigError> {
    let port: u16 = number(get, &PORT, 1, u16::MAX)?;
    let host = IpAddr::from_str(value(get, &HOST).trim())
        .map_err(|_| invalid(HOST.name, "an IP address such as 0.0.0.0 or 127.0.0.2"))?;
    Ok(SocketAddr::new(host, port))
}

impl ServerConfig {
    /// The `HTTP_*` variables and `SHUTDOWN_TIMEOUT_MS`; the request limits are fixed, and the
    /// blocking threads are left for the caller to size.
    pub fn from_env(get: &impl Fn(&str) -> Option<String>) -> Result<ServerConfig, ConfigError> {
        Ok(ServerConfig {
            workers: match get(HTTP_WORKERS.name) {
                Some(_) => number(get, &HTTP_WORKERS, 1, 1024)?,
                None => thread::available_parallelism().map_or(1, usize::from),
            },
            // What the routes that block need: `config` composes it from their lanes.
            blocking_threads: 0,
            max_connections: number(get, &HTTP_MAX_CONNECTIONS, 1, 1_000_000)?,
            request_timeout: millis(get, &HTTP_REQUEST_TIMEOUT_MS)?,
            idle_timeout: millis(get, &HTTP_IDLE_TIMEOUT_MS)?,
            write_timeout: millis(get, &HTTP_WRITE_TIMEOUT_MS)?,
            drain_timeout: millis(get, &SHUTDOWN_TIMEOUT_MS)?,
            limits: Limits::default(),
        })
    }
}
