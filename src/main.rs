//! The `hello` binary: configuration in, server up, signals handled.

use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use hello::api::Api;

use hello::aws::imds::Imds;
use hello::aws::instance;
use hello::cluster::Cluster;
use hello::config::{self, Config};
use hello::counts::Gate;
use hello::emf::Emitter;
use hello::health::Monitor;
use hello::http::{Server, ShutdownHandle};
use hello::metrics::{ConnectionGauges, Metrics, Totals};
use hello::store::migrate::{self, MigrateError};
use hello::store::{Increments, MemoryStore, RedisMode, RedisStore, Store, StoreSettings};
use hello::{healthcheck, logging};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("serve") => serve(),
        Some("migrate-keys") => migrate_keys(),
        Some("healthcheck") => match Config::from_env(|k| std::env::var(k).ok()) {
            Ok(config) => match healthcheck::check(config.listen.port()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hello healthcheck: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("hello: {e}");
                ExitCode::from(2)
            }
        },
        Some("-h" | "--help" | "help") => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        Some("-V" | "--version") => {
            println!("hello {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("hello: unknown command {other:?}; see hello --help");
            ExitCode::from(2)
        }
    }
}

fn usage() -> String {
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

/// `hello migrate-keys`: moves `REDIS_KEY`'s counts into the cluster's family of keys, saying
/// how far it got on standard error. Exit 0 when done (or nothing to do), 1 when stopped (run it
/// again: it carries on), 2 for a bad configuration.
fn migrate_keys() -> ExitCode {
    let config = match Config::from_env(|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hello: {e}");
            return ExitCode::from(2);
        }
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

fn serve() -> ExitCode {
    let config = match Config::from_env(|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hello: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(
        config.log_format,
        &config.log_filter,
        config.log_repeat_interval,
    );
    raise_open_file_limit();

    // Waiting longer than a command may take to be sent means the store is not keeping up.
    let max_wait = match &config.store {
        StoreSettings::Redis(r) => r.timeout,
        StoreSettings::Memory { .. } => Duration::from_secs(1),
    };
    let store: Arc<dyn Store> = match config.store {
        StoreSettings::Memory { max_names } => {
            log::warn!(
                "neither REDIS_URL nor REDIS_CLUSTER_ADDRESS is set: counts are kept in memory and lost when the process exits (at most {max_names} names)"
            );
            Arc::new(MemoryStore::new().with_max_names(max_names))
        }
        StoreSettings::Redis(r) => {
            let display = r.endpoint.to_string();
            if r.tls_ca_file.is_some() && !r.endpoint.tls {
                log::warn!(
                    "REDIS_TLS_CA_FILE is ignored: Redis is not reached over TLS (rediss://)"
                );
            }
            let mode = match r.mode {
                RedisMode::Detect => "standalone or cluster, as Redis says at first use",
                RedisMode::Standalone => "standalone (REDIS_MODE)",
                RedisMode::Cluster => "cluster (REDIS_MODE)",
            };
            let limits = r.limits;
            let cap = match limits.max_names {
                Some(max) => format!("and {max} names"),
                None => "with no cap on names".to_owned(),
            };
            let wait = match r.wait_replicas {
                0 => "answered once Redis has them".to_owned(),
                n => format!("answered once {n} replica(s) have them (WAIT)"),
            };
            match RedisStore::new(r) {
                Ok(store) => {
                    log::info!(
                        "counting in Redis at {display}, {mode}; greetings {wait}; new names admitted up to {}% of each primary's memory limit {cap}",
                        limits.max_memory_percent
                    );
                    Arc::new(store)
                }
                Err(e) => {
                    eprintln!("hello: invalid REDIS_TLS_CA_FILE: {}", e.0);
                    return ExitCode::from(2);
                }
            }
        }
    };

    let server = match Server::bind(config.listen, config.http.clone()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    if config.cluster.local {
        log::info!("DEBUG=true: local mode, no AWS calls");
    }
    let monitor = Monitor::start(Arc::clone(&store));
    let imds = config
        .cluster
        .aws
        .imds_endpoint
        .as_deref()
        .map(|e| Arc::new(Imds::new(e)));
    instance::learn_id(
        &config.cluster.aws,
        imds.clone(),
        monitor.instance_id_slot(),
    );
    let cluster = match Cluster::new(&config.cluster, imds) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hello: {e}");
            return ExitCode::from(2);
        }
    };
    let increments = match Increments::start(Arc::clone(&store), config.max_pending, max_wait) {
        Ok(lane) => lane,
        Err(e) => {
            log::error!("cannot start the store lane: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = Arc::new(Api {
        increments,
        listings: Gate::new(config.max_listings),
        cluster_requests: Gate::new(config.cluster.max_requests),
        monitor: Arc::new(monitor),
        cluster: Arc::new(cluster),
        store,
        metrics: Arc::new(Metrics::new()),
        connections: server.stats(),
    });
    if let Err(e) = watch_signals(server.shutdown_handle()) {
        log::error!("cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let emitter = match config.emf {
        Some(settings) => {
            log::info!(
                "CloudWatch metrics: one embedded-metric-format line every {} ms on stdout, namespace {:?}",
                settings.interval.as_millis(),
                settings.namespace
            );
            match Emitter::start(settings, totals(Arc::clone(&app))) {
                Ok(emitter) => Some(emitter),
                Err(e) => {
                    log::error!("cannot start the CloudWatch metrics thread: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    log::info!(
        "hello {} listening on {} with {} workers",
        env!("CARGO_PKG_VERSION"),
        server.local_addr().unwrap_or(config.listen),
        config.http.workers
    );
    let result = server.run(app);
    // After the drain, so that the last line counts the requests answered during it.
    if let Some(emitter) = emitter {
        emitter.stop();
    }
    match result {
        Ok(()) => {
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the application's counters, with the HTTP layer's connection gauges, for the emitter.
fn totals(app: Arc<Api>) -> impl FnMut() -> Totals + Send + 'static {
    move || {
        app.metrics
            .totals(ConnectionGauges::from(&*app.connections))
    }
}

/// First SIGTERM or SIGINT: drain and exit. A second one: exit at once.
fn watch_signals(shutdown: ShutdownHandle) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut received = signals.forever();
            if let Some(signal) = received.next() {
                log::info!("received signal {signal}: draining");
                shutdown.shutdown();
            }
            if let Some(signal) = received.next() {
                log::warn!("received signal {signal} again: exiting without draining");
                std::process::exit(1);
            }
        })?;
    Ok(())
}

/// Raises the soft limit on open files to the hard limit: each connection is a descriptor.
fn raise_open_file_limit() {
    // `None` is unlimited.
    let limit = getrlimit(Resource::Nofile);
    let Some(current) = limit.current else {
        return;
    };
    if limit.maximum.is_some_and(|max| max <= current) {
        return;
    }
    let wanted = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if setrlimit(Resource::Nofile, wanted).is_ok() {
        let to = limit
            .maximum
            .map_or("unlimited".into(), |max| max.to_string());
        log::debug!("raised the open-file limit from {current} to {to}");
    }
}
