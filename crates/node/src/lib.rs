//! The Skein broker (`skein-node`).
//!
//! Today this crate holds the offline inspector ([`debug`]); the broker's gRPC services, cluster
//! metadata and replica management are built on `skein-raft` next.

pub mod debug;
