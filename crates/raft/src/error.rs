//! The replication layer's one error type.

use skein_storage::StorageError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `skein-raft`.
///
/// Retryable conditions (`NotLeader`, `Timeout`, `Unavailable`) are kept apart from the caller's
/// bad input (`InvalidBatch`, `OutOfOrderSequence`, `ProducerFenced`, `InvalidConfig`) and from
/// fatal failures of a replica (`Storage` with a poisoned log, `Stopped`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The partition log failed or refused an operation.
    #[error(transparent)]
    Storage(#[from] StorageError),

    /// The batch offered for replication is not a valid data batch.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[source] StorageError),

    /// The batch offered for replication is not a data batch.
    #[error("only data batches may be produced (got a {kind:?} batch)")]
    NotDataBatch {
        /// The batch's kind.
        kind: skein_record::EntryKind,
    },

    /// A transactional batch: Skein has no transactions yet (no transaction markers, no last
    /// stable offset), so it refuses them rather than expose uncommitted transactions.
    #[error("transactional batches are not supported yet; produce without a transactional.id")]
    TransactionalBatch,

    /// This replica is not the group's leader; retry on `leader` when it is known.
    #[error("group {group} is not led by node {node}; the leader is {leader:?}")]
    NotLeader {
        /// The group.
        group: u64,
        /// This node.
        node: u64,
        /// The leader, if known.
        leader: Option<u64>,
    },

    /// An idempotent producer's batch skips or repeats sequence numbers out of order.
    #[error("producer {producer_id} sent sequence {got} but {expected} was expected next")]
    OutOfOrderSequence {
        /// The producer.
        producer_id: i64,
        /// The next sequence the partition expects.
        expected: i32,
        /// The batch's base sequence.
        got: i32,
    },

    /// An idempotent producer's epoch is older than the one the partition knows.
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current}")]
    ProducerFenced {
        /// The producer.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The newest epoch seen.
        current: i16,
    },

    /// Waiting for a condition took longer than allowed.
    #[error("timed out: {0}")]
    Timeout(String),

    /// The group's Raft node has stopped (shut down or failed fatally).
    #[error("raft group {group} has stopped: {reason}")]
    Stopped {
        /// The group.
        group: u64,
        /// Why.
        reason: String,
    },

    /// A Raft operation failed for a reason other than leadership (e.g. a membership change in
    /// progress); the message is openraft's.
    #[error("raft group {group}: {message}")]
    Raft {
        /// The group.
        group: u64,
        /// Openraft's description.
        message: String,
    },

    /// A group with this id already exists on this node.
    #[error("raft group {0} already exists on this node")]
    GroupExists(u64),

    /// No group with this id exists on this node.
    #[error("raft group {0} does not exist on this node")]
    GroupNotFound(u64),

    /// A small metadata file (vote, purge point, snapshot) could not be read or written.
    #[error("{action}: {source}")]
    Io {
        /// What was being done, e.g. "write vote file /data/p-1/vote".
        action: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A metadata file or message could not be decoded.
    #[error("decode {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The codec's error.
        #[source]
        source: postcard::Error,
    },

    /// The configuration is invalid.
    #[error("invalid raft configuration: {0}")]
    InvalidConfig(String),
}

impl Error {
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            action: action.into(),
            source,
        }
    }

    /// True when the same request may succeed later or elsewhere (another leader, after a wait).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::NotLeader { .. } | Error::Timeout(_) | Error::Raft { .. }
        )
    }
}
