//! The storage layer's one error type.

use std::io;
use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Everything that can go wrong in `skein-storage`.
///
/// Variants fall in three groups, and callers should treat them differently:
/// - **bad input** (`Record`, `BatchTooLarge`, ..., `OffsetOutOfRange`): the
///   caller sent something invalid; nothing was changed and the log stays usable;
/// - **corruption** (`CorruptBatch`, `SegmentGap`, `LostBaseIndex`; broken index files are rebuilt, not reported): bytes on disk are not what the
///   log wrote; the log refuses to serve the damaged range and never skips or truncates it;
/// - **fatal** (`Poisoned`, and `Io` during a write or flush, which poisons the log): the log can no
///   longer promise durability and every later call fails.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed. `action` reads as the operation that failed.
    #[error("{action}: {source}")]
    Io {
        /// What the log was doing, e.g. "open segment 00000000000000001234.log".
        action: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// An earlier write or fsync failed, so the log's durable state is unknown. Restart the
    /// replica; recovery on open finds what actually reached the disk.
    #[error("partition log is poisoned after an earlier failure ({cause}); restart the replica to recover")]
    Poisoned {
        /// The failure that poisoned the log.
        cause: String,
    },

    /// A batch failed to parse or validate (Kafka's RecordBatch v2, see `skein-record`).
    #[error(transparent)]
    Record(#[from] skein_record::RecordError),

    /// The batch is larger than the configured maximum.
    #[error(
        "batch of {size} bytes exceeds the maximum of {max} bytes; split it into smaller batches"
    )]
    BatchTooLarge {
        /// Size of the batch.
        size: usize,
        /// `batch_bytes_max`.
        max: u32,
    },

    /// A read asked for an offset outside `[log start, log end]`.
    #[error("offset {requested} is out of range [{start}, {end}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: u64,
        /// Log start offset.
        start: u64,
        /// Log end offset (the next offset to be assigned).
        end: u64,
    },

    /// A read or truncation asked for a Raft index outside the log.
    #[error("raft index {requested} is out of range [{first}, {next})")]
    IndexOutOfRange {
        /// The index asked for.
        requested: u64,
        /// First index still in the log.
        first: u64,
        /// Next index to be appended.
        next: u64,
    },

    /// An append would leave a gap in, or rewrite, the Raft index sequence.
    #[error(
        "append of raft index {got} would leave a gap or overwrite: the next index is {expected}"
    )]
    NonContiguousIndex {
        /// The index the log expects next.
        expected: u64,
        /// The index given.
        got: u64,
    },

    /// An append carries a term lower than the last entry's.
    #[error("append of term {got} after term {last}: terms never decrease along a log")]
    TermRegression {
        /// Term of the last entry.
        last: u64,
        /// Term given.
        got: u64,
    },

    /// A batch on disk failed validation where no torn write can explain it.
    #[error("corrupt batch in segment {segment} at position {position}: {reason}")]
    CorruptBatch {
        /// The segment file.
        segment: PathBuf,
        /// Byte position inside the file.
        position: u64,
        /// What failed (CRC, length, sequence).
        reason: String,
    },

    /// Two neighbouring segments do not join up.
    #[error("segment {segment} starts at offset {found} / raft index {found_index}, but the previous segment ends at {expected} / {expected_index}")]
    SegmentGap {
        /// The later segment's file.
        segment: PathBuf,
        /// Its base offset.
        found: u64,
        /// Where the previous one ends.
        expected: u64,
        /// Its base raft index.
        found_index: u64,
        /// The previous segment's next raft index.
        expected_index: u64,
    },

    /// A Raft term does not fit Kafka's 32-bit partitionLeaderEpoch field, where it is stored.
    #[error("term {term} does not fit a batch's 32-bit leader epoch")]
    TermTooLarge {
        /// The term.
        term: u64,
    },

    /// The `.index` file of a log's first segment, the only record of its base Raft index
    /// (batches do not carry their Raft index), is missing or damaged.
    #[error("the base Raft index of segment {segment} is lost ({reason}); this replica must be rebuilt from its peers: stop the node, delete the partition directory and restart it")]
    LostBaseIndex {
        /// The segment's `.log` file.
        segment: PathBuf,
        /// What is wrong with the index file.
        reason: String,
    },

    /// The data directory was written by another version of Skein's on-disk format.
    #[error("{dir} holds {found}, but this build reads Skein on-disk format {expected}; {hint}")]
    FormatMismatch {
        /// The data directory.
        dir: PathBuf,
        /// What the directory holds.
        found: String,
        /// The format this build writes.
        expected: u32,
        /// What to do.
        hint: &'static str,
    },

    /// The configuration is invalid.
    #[error("invalid storage configuration: {0}")]
    InvalidConfig(String),
}

impl StorageError {
    /// Builds an [`StorageError::Io`] with the action that failed.
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Self {
        StorageError::Io {
            action: action.into(),
            source,
        }
    }

    /// True for errors caused by the caller's input, after which the log is unchanged.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            StorageError::Record(_)
                | StorageError::BatchTooLarge { .. }
                | StorageError::TermTooLarge { .. }
                | StorageError::OffsetOutOfRange { .. }
                | StorageError::IndexOutOfRange { .. }
                | StorageError::NonContiguousIndex { .. }
                | StorageError::TermRegression { .. }
        )
    }

    /// True when bytes on disk are damaged.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            StorageError::CorruptBatch { .. }
                | StorageError::SegmentGap { .. }
                | StorageError::LostBaseIndex { .. }
        )
    }
}
