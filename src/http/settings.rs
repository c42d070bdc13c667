//! The server's settings: where it listens, how many threads and connections it keeps, and its
//! timeouts, read from the environment.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::thread;

use super::conn::Settings;
use super::request::Limits;
use super::server::ServerConfig;
use crate::settings::{invalid, millis, number, value, variables, ConfigError};

variables! {
    PORT = "8080",
        "port to listen on";
    HOST = "0.0.0.0",
        "address to listen on";
    HTTP_WORKERS = "",
        "event-loop threads owning the connections; unset: one per core";
    HTTP_MAX_CONNECTIONS = "10000",
        "open connections before new ones are refused";
    HTTP_REQUEST_TIMEOUT_MS = "10000",
        "time to send a whole request once started";
    HTTP_REQUEST_MIN_RATE = "500",
        "bytes a second a request must keep up after its first second, or 408; 0: no minimum";
    HTTP_IDLE_TIMEOUT_MS = "75000",
        "keep-alive idle time, above an ALB's 60 s";
    HTTP_WRITE_TIMEOUT_MS = "10000",
        "time a response may go without a byte taken by the client";
    SHUTDOWN_TIMEOUT_MS = "10000",
        "time in-flight requests get after SIGTERM";
    SHUTDOWN_IDLE_GRACE_MS = "1000",
        "time idle keep-alive connections stay open after SIGTERM, answering what arrives \
              with Connection: close; below SHUTDOWN_TIMEOUT_MS";
}

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
        let drain_timeout = millis(get, &SHUTDOWN_TIMEOUT_MS)?;
        let drain_idle_grace = millis(get, &SHUTDOWN_IDLE_GRACE_MS)?;
        if drain_idle_grace >= drain_timeout {
            return Err(invalid(
                SHUTDOWN_IDLE_GRACE_MS.name,
                "milliseconds below SHUTDOWN_TIMEOUT_MS",
            ));
        }
        Ok(ServerConfig {
            workers: match get(HTTP_WORKERS.name) {
                Some(_) => number(get, &HTTP_WORKERS, 1, 1024)?,
                None => thread::available_parallelism().map_or(1, usize::from),
            },
            // What the routes that block need: `config` composes it from their lanes.
            blocking_threads: 0,
            max_connections: number(get, &HTTP_MAX_CONNECTIONS, 1, 1_000_000)?,
            connection: Settings {
                request_timeout: millis(get, &HTTP_REQUEST_TIMEOUT_MS)?,
                min_rate: number(get, &HTTP_REQUEST_MIN_RATE, 0, u32::MAX)?,
                idle_timeout: millis(get, &HTTP_IDLE_TIMEOUT_MS)?,
                write_timeout: millis(get, &HTTP_WRITE_TIMEOUT_MS)?,
                limits: Limits::default(),
            },
            drain_timeout,
            drain_idle_grace,
        })
    }
}
