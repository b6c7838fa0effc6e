//! The Skein broker (`skein-node`).
//!
//! - [`config`]: settings from a commented TOML file, `SKEIN_*` variables and flags;
//! - [`broker`]: the node's state: Raft registry, metadata group, local replicas, and the tasks
//!   that keep the replicas in line with the metadata;
//! - [`core`]: the transport-neutral broker core (metadata, topics, produce, fetch, offsets);
//! - [`service`]: the client gRPC API and [`kafka`]: the Kafka listener's backend, two thin
//!   front ends over [`core`]; [`internal`]: node-to-node control calls;
//! - [`server`]: binding, serving and graceful shutdown ([`run`]);
//! - [`http`] and [`metrics`]: `/healthz`, `/readyz`, `/metrics`;
//! - [`groups`]: consumer-group coordination and committed offsets;
//! - [`topics`]: topic names and per-topic settings; [`placement`]: replica placement;
//!   [`retention`]: the task that deletes old segments by time and size;
//! - [`error`]: the broker's error type and its one mapping to gRPC statuses;
//! - [`debug`]: the offline inspector (`skein-node debug ...`);
//! - [`cli`]: the `skein-node` command line (the binary is a thin shell over it).

pub mod broker;
pub mod cli;
pub mod config;
pub mod core;
pub mod debug;
pub mod error;
pub mod groups;
pub mod http;
pub mod internal;
pub mod kafka;
pub mod metrics;
pub mod placement;
pub mod retention;
pub mod server;
pub mod service;
mod supervise;
pub mod topics;

pub use crate::server::{init_tracing, run, shutdown_signal, Listeners};
