//! hello: counts how many times it said hello to each name, and reports the health of its node
//! and of its cluster.
//!
//! Requests flow one way: [`http`] (connections, parsing, limits) → [`api`] (method and path
//! to handler, lanes, JSON errors) → the domain ([`hello`], [`counts`], [`health`],
//! [`cluster`]) → the outside world ([`store`], [`aws`]). [`metrics`] counts what was
//! answered, for `/metrics` and, through [`emf`], for CloudWatch.

#![forbid(unsafe_code)]

pub mod api;
pub mod aws;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod counts;
pub mod decimal;
pub mod emf;
pub mod health;
pub mod healthcheck;
pub mod hello;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod route;
pub mod secret;
pub mod settings;
pub mod store;
pub mod sync;
