//! The resilience suite (`make resilience`): the release binary against a real redis-server,
//! under failure, on 127.0.0.0/8 only, each scenario bounded in time. Every scenario prints one
//! row: what was sent, what came back, what was stored, latency percentiles. The scenarios are
//! `#[ignore]`d so that `cargo test` stays quick; `make resilience` runs them. One file per
//! concern; what they share (the `Tally` and its row, the clients that load a server) is in
//! `tests/common/load.rs`.

#[path = "../common/mod.rs"]
mod common;

mod aws;
mod fairness;
mod hostile;
mod lifecycle;
mod limits;
mod redis;
mod store;

/// The sorted set the service counts in (its default `REDIS_KEY`).
const KEY: &str = "nytimes.names";
