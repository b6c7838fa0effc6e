//! The Rust client library for Skein.
//!
//! Producer, consumer and admin APIs over the gRPC services in [`skein_proto`] come with the
//! broker issue. Today the crate exposes the wire types it will be built on.

pub use skein_proto::v1 as proto;
