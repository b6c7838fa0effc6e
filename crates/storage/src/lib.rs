//! Skein's storage engine: the on-disk partition log.
//!
//! A partition log ([`PartitionLog`]) is a directory of segments. Each segment is a `.log` file of
//! record batches (Kafka's RecordBatch v2, [`skein_record`]), a sparse `.index` (offset and Raft index -> file position) and a
//! `.timeindex` (timestamp -> offset), all named by the segment's zero-padded base offset. The
//! active segment is preallocated and written with positioned writes; every segment is read
//! through a memory map, so reads hand out [`bytes::Bytes`] slices that borrow the map.
//!
//! What the log promises:
//! - **Whole batches, stored as they arrived, dense offsets.** `append` takes one whole batch,
//!   checks its CRC-32C once and stamps only the two fields Kafka leaves outside the CRC: the
//!   next record offset (baseOffset) and the Raft term (partitionLeaderEpoch). The Raft index is
//!   kept by the log (each segment's `.index` header holds its base index; entries are counted
//!   from there), not in the batch. Raft-internal entries are batches of a Skein-internal kind
//!   that take no offset and that reads never return. Offsets are dense and increasing, Raft
//!   indexes contiguous, terms non-decreasing.
//! - **Reads do no checksum work.** A read hands out stored bytes as zero-copy slices; CRCs are
//!   checked on append, on recovery, by `verify` and by consumers.
//! - **A format marker** ([`format::check_data_dir`]): a data directory of another on-disk
//!   format is refused, never misread.
//! - **Write, then flush.** Appended bytes are durable only after [`PartitionLog::flush`] (or the
//!   [`FlushPolicy`]) fsyncs them; `flushed_* <= next_*` always. A failed write or fsync poisons
//!   the log: every later call fails until the replica is reopened.
//! - **Recovery on open.** The active segment is scanned from its last valid index entry and every
//!   batch's CRC checked; a torn tail is cut; broken index files are rebuilt. Damage that a torn
//!   write cannot explain (inside a sealed segment, or before a valid batch) is reported as
//!   [`StorageError::CorruptBatch`] naming the segment and position, never skipped or truncated.
//! - **Truncation and retention** work on whole batches ([`PartitionLog::truncate_from_index`])
//!   and whole sealed segments ([`PartitionLog::advance_log_start`],
//!   [`PartitionLog::purge_through_index`], [`PartitionLog::apply_retention`]).
//!
//! Architecture invariant: this crate knows nothing of Raft's types, gRPC or the network; the
//! Raft index and term are just numbers the caller supplies.

mod config;
mod error;
pub mod format;
mod index;
pub mod inspect;
mod log;
mod mmap;
mod segment;

pub use crate::config::{FlushPolicy, LogConfig, Retention, SEGMENT_BYTES_LIMIT};
pub use crate::error::{Result, StorageError};
pub use crate::log::{Clock, FlushTicket, PartitionLog, ReadSlice, Repair, RetentionPoint};
pub use crate::segment::AppendInfo;
