//! Skein's storage engine: the on-disk partition log.
//!
//! A partition log ([`PartitionLog`]) is a directory of segments. Each segment is a `.log` file of
//! record batches (Kafka's RecordBatch v2, [`skein_record`]), a sparse `.index` (offset and Raft index -> file position) and a
//! `.timeindex` (timestamp -> offset), all named by the segment's zero-padded base offset. The
//! active segment is written with positioned writes; every segment is read through a memory map,
//! so reads hand out [`bytes::Bytes`] slices that borrow the map.
//!
//! An open log holds one file descriptor however many segments it has: the active segment's
//! `.log` (sealed segments are read through their maps, which outlive their descriptors; index
//! files are opened only to be read at open or written). It holds one memory map per segment
//! holding data, plus, for a sealed segment opened from disk, one per index file larger than a
//! page (smaller ones are read into memory). A node's limit on descriptors thus bounds its
//! replicas, and `vm.max_map_count` its segments.
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
//!   batch's CRC checked up to a zeroed header or the end of the file, whatever the file's length
//!   (a step boundary, the full segment size of older versions, or less after a crash); a torn
//!   tail is cut and the file trimmed to its valid data; broken index files are rebuilt. Damage
//!   that a torn write cannot explain (inside a sealed segment, or before a valid batch) is
//!   reported as [`StorageError::CorruptBatch`] naming the segment and position, never skipped
//!   or truncated.
//! - **Disk proportional to data.** The active segment's file starts empty and grows in
//!   preallocated steps ([`LogConfig::preallocate_step_bytes`], doubling from
//!   [`PREALLOCATE_FIRST_STEP_BYTES`]), never past `segment_bytes_max` unless a single batch
//!   needs it; sealing and recovery trim a file to its data. An empty log's files take a few KiB
//!   of disk blocks, a log holding a few Raft entries [`PREALLOCATE_FIRST_STEP_BYTES`] more, and
//!   a log at most one step more than its data. Within a step, writes go to allocated blocks
//!   below the file's length, so `fdatasync` commits no size change; the size changes once per
//!   step. Growing maps the file again; slices handed out keep the old map, still valid.
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

pub use crate::config::{
    FlushPolicy, LogConfig, Retention, PREALLOCATE_FIRST_STEP_BYTES, PREALLOCATE_STEP_BYTES_MIN,
    SEGMENT_BYTES_LIMIT,
};
pub use crate::error::{Result, StorageError};
pub use crate::log::{Clock, FlushTicket, PartitionLog, ReadSlice, Repair, RetentionPoint};
pub use crate::segment::AppendInfo;
