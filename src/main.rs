//! The `hello` binary: configuration in, server up, signals handled. The subcommands live in
//! `hello::commands`.

use std::process::ExitCode;
use std::sync::Arc;
use std::thread;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use hello::api::Api;
use hello::aws::imds::Imds;
use hello::aws::instance;
use hello::cluster::Cluster;
use hello::commands;
use hello::counts::Gate;
use hello::emf::Emitter;
use hello::health::Monitor;
use hello::http::{Server, ShutdownHandle};
use hello::logging;
use hello::metrics::{ConnectionGauges, Metrics, Totals};
use hello::store::{self, Increments};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("serve") => serve(),
        Some("migrate-keys") => commands::migrate_keys(),
        Some("healthcheck") => commands::healthcheck(),
        Some("-h" | "--help" | "help") => {
            print!("{}", commands::usage());
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

fn serve() -> ExitCode {
    let config = match commands::config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    logging::init(
        config.log_format,
        &config.log_filter,
        config.log_repeat_interval,
    );
    raise_open_file_limit();
    let max_wait = config.store.max_wait();
    let store = match store::open(config.store) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("hello: invalid REDIS_TLS_CA_FILE: {}", e.0);
            return ExitCode::from(2);
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
    let aws = &config.cluster.aws;
    let imds = aws.imds_endpoint.as_deref().map(|e| Arc::new(Imds::new(e)));
    instance::learn_id(aws, imds.clone(), monitor.instance_id_slot());
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
    let emitter = match config
        .emf
        .map(|settings| Emitter::start(settings, totals(Arc::clone(&app))))
    {
        None => None,
        Some(Ok(emitter)) => Some(emitter),
        Some(Err(e)) => {
            log::error!("cannot start the CloudWatch metrics thread: {e}");
            return ExitCode::FAILURE;
        }
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
