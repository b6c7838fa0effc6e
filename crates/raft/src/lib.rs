//! Replication of Skein partition logs.
//!
//! Each partition is replicated by its own Raft group whose Raft log *is* the partition log from
//! [`skein_storage`]: a record batch is written to disk once. This crate is being built (see the
//! replication issue); today it only re-exports the storage layer it sits on, so that the
//! workspace's layering (`node -> raft -> storage`) is already in place.

pub use skein_storage as storage;
