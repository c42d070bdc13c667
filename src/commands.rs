//! The subcommands besides serving: `hello healthcheck` (for container health checks in images
//! without a shell) and `hello migrate-keys` (counts from one key into a cluster's keys), and
//! the usage text. Each reads the configuration as serving does and exits 0, 1 (it failed or
//! stopped) or 2 (a bad configuration).

use std::process::ExitCode;

use crate::config::{self, Config};
use crate::healthcheck;
use crate::store::migrate::{self, MigrateError};
use crate::store::{RedisStore, StoreSettings};

pub fn usage() -> String {
    format!(
        "hello {}: counts hellos in Redis and reports node and cluster health.\n\n\
         Usage:\n  hello              serve HTTP (the default)\n  \
         hello healthcheck  exit 0 if this host's server answers GET /health with 200\n  \
         hello migrate-keys move REDIS_KEY's counts into a Redis cluster's keys (idempotent,\n                     \
         resumable; see the README)\n  \
         hello --version    print the version\n\n\
         Environment:\n{}",
        env!("CARGO_PKG_VERSION"),
        config::help()
    )
}

/// The configuration, or exit 2 with the line that names the variable at fault.
pub fn config() -> Result<Config, ExitCode> {
    Config::from_env(|k| std::env::var(k).ok()).map_err(|e| {
        eprintln!("hello: {e}");
        ExitCode::from(2)
    })
}

/// `hello healthcheck`: exit 0 if this host's server answers `GET /health` with 200.
pub fn healthcheck() -> ExitCode {
    let config = match config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    match healthcheck::check(config.listen.port()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `hello migrate-keys`: moves `REDIS_KEY`'s counts into the cluster's family of keys, saying
/// how far it got on standard error. Exit 0 when done (or nothing to do), 1 when stopped (run it
/// again: it carries on), 2 for a bad configuration.
pub fn migrate_keys() -> ExitCode {
    let config = match config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    let StoreSettings::Redis(settings) = config.store else {
        eprintln!("hello migrate-keys: no Redis configured (REDIS_URL or REDIS_CLUSTER_ADDRESS)");
        return ExitCode::from(2);
    };
    let display = settings.endpoint.to_string();
    let store = match RedisStore::new(settings) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("hello: invalid REDIS_TLS_CA_FILE: {}", e.0);
            return ExitCode::from(2);
        }
    };
    let mut shown = None;
    let mut progress = |moved: u64, total: u64| {
        // A line per tenth, and the last.
        let tenth = (moved * 10).checked_div(total).unwrap_or(10);
        if shown != Some(tenth) {
            shown = Some(tenth);
            eprintln!("hello migrate-keys: {moved} of {total} names moved");
        }
    };
    match migrate::migrate(&store, &mut progress) {
        Ok(done) => {
            match (done.names, done.resumed) {
                (0, _) => eprintln!("hello migrate-keys: nothing to move at {display}"),
                (n, false) => eprintln!("hello migrate-keys: {n} names moved at {display}"),
                (n, true) => eprintln!(
                    "hello migrate-keys: {n} names moved at {display}, carrying on from a run that stopped"
                ),
            }
            if done.written_meanwhile {
                eprintln!(
                    "hello migrate-keys: something wrote the old key meanwhile: run it again to move those names"
                );
            }
            ExitCode::SUCCESS
        }
        Err(MigrateError::NotACluster) => {
            eprintln!("hello migrate-keys: {}", MigrateError::NotACluster);
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("hello migrate-keys: stopped: {e}");
            ExitCode::FAILURE
        }
    }
}
