//! Name lookups of Redis hosts, bounded in time. `getaddrinfo` has no deadline of its own and
//! can hang for as long as a resolver does, so a lookup runs on a thread of its own and a
//! caller waits for it only as long as its command may take; when it is late or fails, the last
//! addresses found stand in, so that a resolver outage does not keep the store from
//! reconnecting to a Redis it knew.

use crate::sync;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// Looks a host name up; the system's resolver in service, one that hangs in tests.
pub type Resolve = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// `getaddrinfo`, which has no time limit of its own.
pub fn system_resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().map(Iterator::collect)
}

/// Name resolution bounded by the store's timeout. A lookup runs on a thread of its own (one at
/// a time: a hung resolver holds one thread, not one per connection attempt); a caller waits
/// for it at most the timeout. When it fails or is late, the last addresses found are used, so
/// that a resolver outage does not keep the store from reconnecting to a Redis it knew.
pub struct Resolver {
    resolve: Arc<Resolve>,
    state: Arc<(Mutex<Lookups>, Condvar)>,
}

#[derive(Default)]
struct Lookups {
    running: bool,
    /// Lookups ended.
    ended: u64,
    /// What the last lookup to end found, or why it found nothing.
    last: Option<Result<Vec<SocketAddr>, String>>,
    /// The addresses of the last lookup that found some.
    last_good: Option<Vec<SocketAddr>>,
}

impl Resolver {
    pub fn new(resolve: Arc<Resolve>) -> Resolver {
        Resolver {
            resolve,
            state: Arc::default(),
        }
    }

    /// A lookup of `host` on a thread of its own, which records what it finds.
    fn start(&self, host: &str, port: u16) -> io::Result<()> {
        let (state, resolve, host) = (
            Arc::clone(&self.state),
            Arc::clone(&self.resolve),
            host.to_owned(),
        );
        thread::Builder::new()
            .name("redis-resolve".into())
            .spawn(move || {
                let found = match resolve(&host, port) {
                    Ok(addresses) if addresses.is_empty() => {
                        Err("the host name has no address".to_owned())
                    }
                    Ok(addresses) => Ok(addresses),
                    Err(e) => Err(e.to_string()),
                };
                let (lock, ended) = &*state;
                let mut lookups = sync::lock(lock);
                lookups.running = false;
                lookups.ended += 1;
                if let Ok(addresses) = &found {
                    lookups.last_good = Some(addresses.clone());
                }
                lookups.last = Some(found);
                ended.notify_all();
            })
            .map(drop)
    }

    /// `host`'s addresses, within `timeout`.
    pub fn addresses(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let (lock, ended) = &*self.state;
        let mut lookups = sync::lock(lock);
        let before = lookups.ended;
        // The lookup thread needs the lock to record its result, so it cannot end before
        // `running` is set.
        if !lookups.running {
            lookups.running = self.start(host, port).is_ok();
        }
        let started = lookups.running;
        let lookups =
            sync::wait_timeout_while(ended, lookups, timeout, |l| started && l.ended == before).0;
        let why = match (&lookups.last, lookups.ended > before) {
            (Some(Ok(addresses)), true) => return Ok(addresses.clone()),
            (Some(Err(why)), true) => why.clone(),
            _ if !started => "cannot start a lookup".to_owned(),
            _ => format!("no answer within {} ms", timeout.as_millis()),
        };
        match &lookups.last_good {
            Some(addresses) => {
                log::warn!(
                    "resolving the Redis host {host} failed ({why}): using the addresses found before"
                );
                Ok(addresses.clone())
            }
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot resolve the Redis host {host}: {why}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(300);

    #[test]
    fn ip_addresses_are_not_looked_up() {
        let lookups = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&lookups);
        let resolver = Resolver::new(Arc::new(move |_: &str, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        }));
        let found = resolver.addresses("::1", 6380, TIMEOUT).unwrap();
        assert_eq!(found, [SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 6380))]);
        assert_eq!(lookups.load(Ordering::SeqCst), 0);
    }
}
