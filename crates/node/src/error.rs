//! The broker's one error type, and its one mapping to the wire (`tonic::Status` and the proto's
//! per-partition `Error`), with stable codes.

use skein_proto::v1::{self, ErrorCode};
use skein_storage::StorageError;

/// Result alias for this crate.
pub type Result<T, E = NodeError> = std::result::Result<T, E>;

/// Everything a broker request or the node's startup can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The storage layer failed or refused.
    #[error(transparent)]
    Storage(#[from] StorageError),

    /// No topic by that name.
    #[error("topic `{topic}` does not exist; create it with `skein topic create {topic}`")]
    UnknownTopic {
        /// The name asked for.
        topic: String,
    },

    /// The topic has no such partition.
    #[error("topic `{topic}` has no partition {partition} (it has {partitions})")]
    UnknownPartition {
        /// Topic.
        topic: String,
        /// Partition asked for.
        partition: u32,
        /// Partition count.
        partitions: u32,
    },

    /// A topic name breaks the naming rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The name.
        name: String,
        /// Which rule.
        reason: String,
    },

    /// The topic exists already.
    #[error("topic `{name}` already exists")]
    TopicExists {
        /// The name.
        name: String,
    },

    /// A bad partition count.
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),

    /// More replicas asked for than there are nodes.
    #[error("replication factor {requested} is larger than the {nodes} nodes of the cluster")]
    InvalidReplicationFactor {
        /// Asked for.
        requested: u32,
        /// Nodes available.
        nodes: usize,
    },

    /// A bad per-topic setting.
    #[error("invalid topic setting `{key}`: {reason}")]
    InvalidTopicConfig {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },

    /// This node does not lead the partition (or the metadata group).
    #[error("this node is not the leader{}", leader_text(.leader))]
    NotLeader {
        /// The leader, when known: node id and advertised client address.
        leader: Option<(u64, String)>,
    },

    /// No leader is known right now.
    #[error("no leader is available yet for {what}; retry shortly")]
    LeaderNotAvailable {
        /// What has no leader.
        what: String,
    },

    /// The request waited too long.
    #[error("timed out after {ms} ms waiting for {what}")]
    Timeout {
        /// What it waited for.
        what: String,
        /// How long.
        ms: u64,
    },

    /// The node is starting or stopping.
    #[error("node is not ready: {0}")]
    NotReady(String),

    /// A malformed request.
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// A request larger than `limits.request_bytes_max`; refused before it was decoded.
    #[error(
        "request of {size} bytes is larger than this node's limit of {max} bytes \
         (limits.request_bytes_max); send smaller requests (the Skein client splits its requests \
         below the limit the metadata response advertises) or raise the limit"
    )]
    RequestTooLarge {
        /// The request's size (its protobuf message).
        size: u64,
        /// The node's limit.
        max: u64,
    },

    /// An idempotent producer's batch does not follow its previous one.
    #[error("out-of-order sequence from producer {producer_id}: {detail}")]
    OutOfOrderSequence {
        /// The producer.
        producer_id: i64,
        /// What was expected.
        detail: String,
    },

    /// A newer epoch of this producer exists.
    #[error("producer {producer_id} epoch {epoch} is fenced by a newer epoch")]
    ProducerFenced {
        /// The producer.
        producer_id: i64,
        /// Its stale epoch.
        epoch: i16,
    },

    /// This node does not coordinate the group.
    #[error("this node does not coordinate group `{group}`{}", leader_text(.coordinator))]
    NotCoordinator {
        /// The group.
        group: String,
        /// The coordinator, when known: node id and client address.
        coordinator: Option<(u64, String)>,
    },

    /// The group's coordinator is being elected or is loading its offsets.
    #[error("the coordinator of group `{0}` is not available yet; retry shortly")]
    CoordinatorNotAvailable(String),

    /// The group is rebalancing.
    #[error("group `{0}` is rebalancing: commit what was processed and join again")]
    RebalanceInProgress(String),

    /// The member is not in the group.
    #[error("member `{member}` is not in group `{group}`: join again")]
    UnknownMember {
        /// The group.
        group: String,
        /// The member id given.
        member: String,
    },

    /// A stale generation.
    #[error("generation {got} of group `{group}` is stale (current {current}): join again")]
    IllegalGeneration {
        /// The group.
        group: String,
        /// Generation given.
        got: u64,
        /// Current generation.
        current: u64,
    },

    /// The group has members.
    #[error("group `{group}` has {members} active members; stop them first (see `skein group describe {group}`)")]
    GroupNotEmpty {
        /// The group.
        group: String,
        /// How many members.
        members: usize,
    },

    /// No such group.
    #[error("group `{0}` does not exist")]
    GroupNotFound(String),

    /// A bad group id.
    #[error("invalid group id {0:?}: use 1 to 255 printable characters")]
    InvalidGroupId(String),

    /// Another member took this static instance id.
    #[error("static member `{0}` was replaced by a newer member with the same instance id")]
    FencedInstanceId(String),

    /// A session timeout out of bounds.
    #[error("session timeout {0} ms is out of range [1000, 300000]")]
    InvalidSessionTimeout(u64),

    /// A Kafka member's first join: it must join again with the member id given (Kafka's
    /// MEMBER_ID_REQUIRED).
    #[error("join group `{group}` again with member id `{member_id}`")]
    MemberIdRequired {
        /// The group.
        group: String,
        /// The member id to join with.
        member_id: String,
    },

    /// The join's protocol does not fit the group: a Kafka (classic) member joining a native
    /// group or the reverse, another protocol type, or no protocol in common.
    #[error("cannot join group `{group}`: {reason}")]
    InconsistentGroupProtocol {
        /// The group.
        group: String,
        /// Why.
        reason: String,
    },

    /// The group (or the coordinator) is at its limit.
    #[error("group `{group}` is full: at most {max} members (or groups per coordinator)")]
    GroupMaxSize {
        /// The group.
        group: String,
        /// The limit.
        max: usize,
    },

    /// A Raft group failed or refused.
    #[error(transparent)]
    Raft(#[from] skein_raft::Error),

    /// Something inside the node failed.
    #[error("internal error: {0}")]
    Internal(String),
}

fn leader_text(leader: &Option<(u64, String)>) -> String {
    match leader {
        Some((id, addr)) => format!("; the leader is node {id} at {addr}"),
        None => "; the leader is not known yet, retry shortly".into(),
    }
}

impl NodeError {
    /// The stable code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            NodeError::Config(_) => ErrorCode::InvalidConfig,
            NodeError::Storage(e) => storage_code(e),
            NodeError::UnknownTopic { .. } | NodeError::UnknownPartition { .. } => {
                ErrorCode::UnknownTopicOrPartition
            }
            NodeError::InvalidTopicName { .. } => ErrorCode::InvalidTopicName,
            NodeError::TopicExists { .. } => ErrorCode::TopicAlreadyExists,
            NodeError::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
            NodeError::InvalidReplicationFactor { .. } => ErrorCode::InvalidReplicationFactor,
            NodeError::InvalidTopicConfig { .. } => ErrorCode::InvalidConfig,
            NodeError::NotLeader { .. } => ErrorCode::NotLeader,
            NodeError::LeaderNotAvailable { .. } => ErrorCode::LeaderNotAvailable,
            NodeError::Timeout { .. } => ErrorCode::Timeout,
            NodeError::NotReady(_) => ErrorCode::NodeNotReady,
            NodeError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            NodeError::RequestTooLarge { .. } => ErrorCode::RequestTooLarge,
            NodeError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
            NodeError::ProducerFenced { .. } => ErrorCode::ProducerFenced,
            NodeError::NotCoordinator { .. } => ErrorCode::NotCoordinator,
            NodeError::CoordinatorNotAvailable(_) => ErrorCode::CoordinatorNotAvailable,
            NodeError::RebalanceInProgress(_) => ErrorCode::RebalanceInProgress,
            NodeError::UnknownMember { .. } => ErrorCode::UnknownMemberId,
            NodeError::IllegalGeneration { .. } => ErrorCode::IllegalGeneration,
            NodeError::GroupNotEmpty { .. } => ErrorCode::GroupNotEmpty,
            NodeError::GroupNotFound(_) => ErrorCode::GroupNotFound,
            NodeError::InvalidGroupId(_) => ErrorCode::InvalidGroupId,
            NodeError::FencedInstanceId(_) => ErrorCode::FencedInstanceId,
            NodeError::InvalidSessionTimeout(_) => ErrorCode::InvalidSessionTimeout,
            // Kafka-only situations; the gRPC API has no codes of their own for them.
            NodeError::MemberIdRequired { .. } => ErrorCode::UnknownMemberId,
            NodeError::InconsistentGroupProtocol { .. } | NodeError::GroupMaxSize { .. } => {
                ErrorCode::InvalidRequest
            }
            NodeError::Raft(e) => raft_code(e),
            NodeError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The per-partition form carried inside responses.
    pub fn to_proto(&self) -> v1::Error {
        let leader = match self {
            NodeError::NotLeader {
                leader: Some((id, addr)),
            }
            | NodeError::NotCoordinator {
                coordinator: Some((id, addr)),
                ..
            } => Some(v1::LeaderHint {
                node_id: *id,
                client_addr: addr.clone(),
            }),
            _ => None,
        };
        v1::Error {
            code: self.code() as i32,
            message: self.to_string(),
            leader,
        }
    }

    /// The call-level form: a gRPC status with the code (and the leader) in its metadata.
    pub fn to_status(&self) -> tonic::Status {
        let grpc = match self.code() {
            ErrorCode::None => tonic::Code::Ok,
            ErrorCode::NotLeader
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::NodeNotReady
            | ErrorCode::Throttled
            | ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorNotAvailable => tonic::Code::Unavailable,
            ErrorCode::RebalanceInProgress
            | ErrorCode::UnknownMemberId
            | ErrorCode::IllegalGeneration
            | ErrorCode::GroupNotEmpty
            | ErrorCode::FencedInstanceId => tonic::Code::FailedPrecondition,
            ErrorCode::GroupNotFound => tonic::Code::NotFound,
            ErrorCode::InvalidGroupId | ErrorCode::InvalidSessionTimeout => {
                tonic::Code::InvalidArgument
            }
            ErrorCode::UnknownTopicOrPartition => tonic::Code::NotFound,
            ErrorCode::TopicAlreadyExists => tonic::Code::AlreadyExists,
            ErrorCode::InvalidTopicName
            | ErrorCode::InvalidRequest
            | ErrorCode::InvalidPartitions
            | ErrorCode::InvalidConfig
            | ErrorCode::InvalidReplicationFactor
            | ErrorCode::CorruptBatch => tonic::Code::InvalidArgument,
            ErrorCode::BatchTooLarge | ErrorCode::RequestTooLarge => tonic::Code::ResourceExhausted,
            ErrorCode::OffsetOutOfRange => tonic::Code::OutOfRange,
            ErrorCode::Timeout => tonic::Code::DeadlineExceeded,
            ErrorCode::OutOfOrderSequence | ErrorCode::ProducerFenced => {
                tonic::Code::FailedPrecondition
            }
            ErrorCode::StorageFailed | ErrorCode::Internal => tonic::Code::Internal,
        };
        let mut status = tonic::Status::new(grpc, self.to_string());
        let md = status.metadata_mut();
        if let Ok(v) = (self.code() as i32).to_string().parse() {
            md.insert("skein-error-code", v);
        }
        if let NodeError::RequestTooLarge { size, max } = self {
            if let Ok(v) = size.to_string().parse() {
                md.insert(REQUEST_BYTES_KEY, v);
            }
            if let Ok(v) = max.to_string().parse() {
                md.insert(REQUEST_BYTES_MAX_KEY, v);
            }
        }
        if let NodeError::NotLeader {
            leader: Some((id, addr)),
        }
        | NodeError::NotCoordinator {
            coordinator: Some((id, addr)),
            ..
        } = self
        {
            if let Ok(v) = id.to_string().parse() {
                md.insert("skein-leader-id", v);
            }
            if let Ok(v) = addr.parse() {
                md.insert("skein-leader-addr", v);
            }
        }
        status
    }

    /// The error behind tonic's own refusal of a request over the decoding limit
    /// (`max_decoding_message_size`): OUT_OF_RANGE "Error, decoded message length too large:
    /// found N bytes, the limit is: M bytes", which carries no Skein code. `None` for any other
    /// status.
    pub fn from_decode_limit(status: &tonic::Status) -> Option<NodeError> {
        const PREFIX: &str = "Error, decoded message length too large: found ";
        if status.code() != tonic::Code::OutOfRange {
            return None;
        }
        let rest = status.message().strip_prefix(PREFIX)?;
        let (size, rest) = rest.split_once(" bytes, the limit is: ")?;
        let max = rest.strip_suffix(" bytes")?;
        Some(NodeError::RequestTooLarge {
            size: size.parse().ok()?,
            max: max.parse().ok()?,
        })
    }
}

/// Status metadata key of a REQUEST_TOO_LARGE: the refused request's size in bytes (ASCII).
pub const REQUEST_BYTES_KEY: &str = "skein-request-bytes";
/// Status metadata key of a REQUEST_TOO_LARGE: the node's `limits.request_bytes_max` (ASCII).
pub const REQUEST_BYTES_MAX_KEY: &str = "skein-request-bytes-max";

fn storage_code(e: &StorageError) -> ErrorCode {
    match e {
        StorageError::Record(_) => ErrorCode::CorruptBatch,
        StorageError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
        StorageError::OffsetOutOfRange { .. } | StorageError::IndexOutOfRange { .. } => {
            ErrorCode::OffsetOutOfRange
        }
        StorageError::NonContiguousIndex { .. }
        | StorageError::TermRegression { .. }
        | StorageError::TermTooLarge { .. } => ErrorCode::Internal,
        StorageError::Io { .. }
        | StorageError::Poisoned { .. }
        | StorageError::CorruptBatch { .. }
        | StorageError::SegmentGap { .. }
        | StorageError::LostBaseIndex { .. }
        | StorageError::FormatMismatch { .. } => ErrorCode::StorageFailed,
        StorageError::InvalidConfig(_) => ErrorCode::InvalidConfig,
    }
}

fn raft_code(e: &skein_raft::Error) -> ErrorCode {
    use skein_raft::Error as R;
    match e {
        R::Storage(s) | R::InvalidBatch(s) => storage_code(s),
        R::NotDataBatch { .. } | R::TransactionalBatch => ErrorCode::InvalidRequest,
        R::NotLeader { .. } => ErrorCode::NotLeader,
        R::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
        R::ProducerFenced { .. } => ErrorCode::ProducerFenced,
        R::Timeout(_) => ErrorCode::Timeout,
        R::Stopped { .. } | R::GroupNotFound(_) => ErrorCode::LeaderNotAvailable,
        R::Io { .. } => ErrorCode::StorageFailed,
        R::Raft { .. } | R::GroupExists(_) | R::Decode { .. } => ErrorCode::Internal,
        R::InvalidConfig(_) => ErrorCode::InvalidConfig,
    }
}

impl From<skein_record::RecordError> for NodeError {
    /// A batch that fails to parse or validate is bad input, whichever layer found it.
    fn from(e: skein_record::RecordError) -> Self {
        NodeError::Storage(StorageError::Record(e))
    }
}

impl From<NodeError> for tonic::Status {
    fn from(e: NodeError) -> Self {
        e.to_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_names_the_leader_in_the_status() {
        let s = NodeError::NotLeader {
            leader: Some((2, "10.0.0.2:9650".into())),
        }
        .to_status();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        let md = s.metadata();
        assert_eq!(
            md.get("skein-error-code").and_then(|v| v.to_str().ok()),
            Some("1")
        );
        assert_eq!(
            md.get("skein-leader-id").and_then(|v| v.to_str().ok()),
            Some("2")
        );
        assert_eq!(
            md.get("skein-leader-addr").and_then(|v| v.to_str().ok()),
            Some("10.0.0.2:9650")
        );
    }

    #[test]
    fn tonic_decode_limit_becomes_request_too_large_with_both_sizes() {
        // The text of tonic's decoder (tonic::codec::decode) when a message exceeds
        // `max_decoding_message_size`.
        let raw = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 3145828 bytes, the limit is: \
             2097152 bytes",
        );
        let e = NodeError::from_decode_limit(&raw).expect("recognised");
        assert!(matches!(
            e,
            NodeError::RequestTooLarge {
                size: 3_145_828,
                max: 2_097_152
            }
        ));
        let s = e.to_status();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        let md = s.metadata();
        let get = |k| md.get(k).and_then(|v| v.to_str().ok());
        assert_eq!(get("skein-error-code"), Some("17"));
        assert_eq!(get(REQUEST_BYTES_KEY), Some("3145828"));
        assert_eq!(get(REQUEST_BYTES_MAX_KEY), Some("2097152"));
        assert!(
            s.message().contains("limits.request_bytes_max"),
            "{}",
            s.message()
        );
        // Other OUT_OF_RANGE answers (an offset outside the log) are left alone.
        let offset = NodeError::from(StorageError::OffsetOutOfRange {
            requested: 9,
            start: 0,
            end: 5,
        })
        .to_status();
        assert!(NodeError::from_decode_limit(&offset).is_none());
        let other = tonic::Status::internal(raw.message());
        assert!(NodeError::from_decode_limit(&other).is_none());
    }

    #[test]
    fn storage_errors_get_their_codes() {
        let e = NodeError::from(StorageError::OffsetOutOfRange {
            requested: 9,
            start: 0,
            end: 5,
        });
        assert_eq!(e.code(), ErrorCode::OffsetOutOfRange);
        assert_eq!(e.to_status().code(), tonic::Code::OutOfRange);
        let e = NodeError::from(StorageError::Record(
            skein_record::RecordError::CrcMismatch {
                stored: 1,
                computed: 2,
            },
        ));
        assert_eq!(e.to_proto().code, ErrorCode::CorruptBatch as i32);
    }
}
