//! Replication of Skein partition logs: one openraft group per partition (plus one metadata
//! group), whose Raft log *is* the partition log from [`skein_storage`]. A record batch is
//! written to disk once.
//!
//! # Design
//! - **Log = partition log.** [`LogStore`] implements openraft's `RaftLogStorage` on
//!   [`skein_storage::PartitionLog`]. A normal entry is the producer's data batch; the log stamps
//!   base offset, term and index into its header (outside the CRC). Blank and membership entries
//!   are control batches of their own kind (membership encoded with postcard, timestamp 0), so
//!   every replica stores byte-identical batches. Reading entries back rebuilds openraft entries
//!   from the batch kind and the header's term and index.
//! - **Leader ids.** Openraft's `single-term-leader` feature is enabled: a term has at most one
//!   leader (standard Raft), so a log id is `(term, index)` and the batch header holds all of it.
//!   The default mode would need the leader's node id per entry, which the header has no room
//!   for. The cost is a somewhat higher chance of split votes, which ranked, randomized election
//!   attempts absorb (see Liveness).
//! - **Liveness is per node, groups are quiescent.** Openraft's heartbeats, election timers and
//!   ticks are off; one task per node sends each peer one heartbeat per interval naming the
//!   groups it leads, and a group elects only when no live node claims it (`liveness.rs`,
//!   `docs/design/003-quiescent-groups.md`). An idle group sends nothing; writes replicate and
//!   commit at once as before.
//! - **Durability.** `append` writes batches (page cache) and queues openraft's callback to the
//!   group's flusher task, which fsyncs once for every append queued since its last fsync (group
//!   commit) and only then calls the callbacks. An fsync failure poisons the log and fails the
//!   callbacks, which stops the group. `save_vote` first flushes queued appends, then writes the
//!   vote file, so log and vote writes are never reordered.
//! - **Small files.** The vote, the purge point (`last_purged_log_id`) and the latest snapshot
//!   live beside the log in the group directory, each written atomically (temporary file, fsync,
//!   rename, fsync of the directory).
//! - **Purge and retention agree.** Openraft never purges on its own (`max_in_snapshot_log_to_keep
//!   = u64::MAX`): the partition log is the data consumers read. The leader decides what
//!   retention removes ([`Group::retention_step`]) and proposes a `LogStart` entry (an internal
//!   control batch carrying the new log start offset); applying it moves the log start on every
//!   replica. Each replica then makes sure a snapshot covers its whole sealed segments below the
//!   log start and has openraft purge through them ([`Group::purge_below_log_start`]); `purge`
//!   records the purge point, then deletes whole sealed segments. Entries at or below the purge
//!   point are never returned, even if still on disk. Snapshots carry the log start.
//!   ([`Group::enforce_retention`] is the local-only variant, used by tests.)
//! - **State machine.** The applied state is the last applied log id, the membership, the record
//!   offset after the last applied entry (the high watermark) and an application part: the
//!   idempotent-producer table for partitions ([`ProducerTable`]), the cluster metadata for the
//!   metadata group ([`ClusterMetadata`]). It lives in memory; snapshots (postcard) persist it.
//! - **Snapshots and lagging followers.** Installing a snapshot whose last entry the local log
//!   lacks resets the log to start right after it (`PartitionLog::reset(next_offset,
//!   next_index)`), so later entries get the leader's offsets. An append that continues such a
//!   snapshot waits until that reset is done.
//! - **Idempotent producers.** The leader deduplicates before proposing (in-flight retries wait
//!   for the original; on becoming leader it first applies every earlier entry), and apply checks
//!   again, answering a duplicate that slipped in with the original offset.
//! - **Transport.** [`RaftService`] is one gRPC service per node for all groups (every message
//!   names its group); [`PeerPool`] keeps one lazily reconnecting channel per peer node. Every
//!   call has a timeout; unreachable peers make openraft back off exponentially.
//!
//! # Invariants
//! - Raft indexes in the log are contiguous; a log never has a hole (`append` refuses one).
//! - `append`'s callback runs only after the entries are fsynced.
//! - The vote is durable before `save_vote` returns.
//! - Record offsets are a function of the log: every replica stamps the same offsets.

mod blocking;
mod config;
mod error;
mod files;
mod group;
mod liveness;
mod log_store;
mod metadata;
mod partition;
mod registry;
mod state_machine;
mod transport;
mod types;

#[cfg(test)]
mod suite_tests;

pub use skein_record as record;
pub use skein_storage as storage;

pub use crate::config::RaftConfig;
pub use crate::error::{Error, Result};
pub use crate::group::Group;
pub use crate::log_store::{LogReader, LogStore};
pub use crate::metadata::{
    command_batch, ClusterMetadata, MetaCommand, MetaOutcome, MetadataGroup, NodeInfo,
    PartitionAssignment, TopicInfo, METADATA_GROUP_ID, OFFSETS_TOPIC, TOPIC_PARTITIONS_MAX,
};
pub use crate::partition::{
    PartitionGroup, ProducedBatch, ProducerLimits, ProducerState, ProducerStats, ProducerTable,
    SequenceCheck, PRODUCER_BATCHES_KEPT,
};
pub use crate::registry::Registry;
pub use crate::state_machine::{AppliedState, Applier, SnapshotBuilder, StateMachine};
pub use crate::transport::{NetworkFactory, PeerClient, PeerPool, RaftService};
pub use crate::types::{
    GroupId, LogId, MetaResponse, MetaTypes, Node, NodeId, PartitionTypes, ProduceResponse,
    RecordBatch, SkeinTypes, Vote,
};
pub use openraft;
