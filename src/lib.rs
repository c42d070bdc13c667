//! hello: counts how many times it said hello to each name, and reports the health of its node
//! and of its cluster.
//!
//! Requests flow one way: [`http`] (connections, parsing, limits) → [`routes`] (method and
//! path to handler, JSON errors) → the domain ([`hello`], [`counts`], [`health`],
//! [`cluster`]) → the outside world ([`store`]). [`metrics`] counts what was answered, for
//! `/metrics` and, through [`emf`], for CloudWatch.

pub mod app;
pub mod aws;
pub mod cluster;
pub mod config;
pub mod counts;
pub mod emf;
pub mod health;
pub mod healthcheck;
pub mod hello;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod route;
pub mod routes;
pub mod secret;
pub mod settings;
pub mod store;
