//! Errors of this crate: [`KafkaError`] for framing and decoding (they close the connection) and
//! [`BackendError`], the broker's answer, mapped to Kafka's error codes in one place.

use kafka_protocol::ResponseError as R;

/// Why a connection was closed. Every variant is logged once, at warn, by the connection loop.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The size prefix asks for more than `KafkaConfig::frame_bytes_max`; nothing was allocated.
    #[error("request frame of {size} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The size prefix as sent (may be negative).
        size: i64,
        /// The configured limit.
        max: usize,
    },
    /// The size prefix is smaller than the smallest request header.
    #[error("request frame of {size} bytes is shorter than a request header ({min} bytes)")]
    FrameTooSmall {
        /// The size prefix as sent (may be negative).
        size: i64,
        /// Smallest request header.
        min: usize,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed after {received} of {expected} bytes of a frame")]
    TruncatedFrame {
        /// Bytes of the frame (prefix included) received.
        received: usize,
        /// Bytes of the frame (prefix included) announced.
        expected: usize,
    },
    /// The api key is not one Kafka defines.
    #[error("unknown api key {api_key}")]
    UnknownApiKey {
        /// The api key as sent.
        api_key: i16,
    },
    /// A Kafka API this listener does not implement.
    #[error("api key {api_key} is not supported by this listener")]
    UnsupportedApi {
        /// The api key as sent.
        api_key: i16,
    },
    /// A version outside the listener's range for that API (ApiVersions never gets here).
    #[error("api key {api_key} version {version} is outside the supported range {min}..={max}")]
    UnsupportedVersion {
        /// The api key as sent.
        api_key: i16,
        /// The version as sent.
        version: i16,
        /// Lowest version handled.
        min: i16,
        /// Highest version handled.
        max: i16,
    },
    /// A length or count in the request header or body is not backed by the bytes of the frame
    /// (or the request is otherwise malformed); found by [`crate::guard`] before decoding.
    #[error("refused api key {api_key} version {version} request before decoding: {error}")]
    Unbacked {
        /// The api key as sent.
        api_key: i16,
        /// The version as sent.
        version: i16,
        /// What the guard found, and where.
        error: crate::guard::GuardError,
    },
    /// The request header or body does not decode.
    #[error("malformed api key {api_key} version {version} request: {reason}")]
    Decode {
        /// The api key as sent.
        api_key: i16,
        /// The version as sent.
        version: i16,
        /// What the decoder reported.
        reason: String,
    },
    /// A response could not be encoded for the request's version (a bug in a handler).
    #[error("cannot encode api key {api_key} version {version} response: {reason}")]
    Encode {
        /// The api key of the request.
        api_key: i16,
        /// The version of the request.
        version: i16,
        /// What the encoder reported.
        reason: String,
    },
    /// A Produce with acks=0 failed; closing the connection is how Kafka tells the client.
    #[error("acks=0 produce failed: {error}")]
    UnackedProduceFailed {
        /// The first failure.
        error: String,
    },
    /// Reading from or writing to the socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// What the broker answers when it cannot do what a request asks. The node maps its own error
/// enum into this one in one place; [`BackendError::code`] maps this one to Kafka's codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The topic or partition does not exist (retriable: it may be being created).
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// This node does not lead the partition; `leader` names the leader when known.
    #[error("not the leader (leader hint {leader:?})")]
    NotLeader {
        /// Node id of the current leader, when known.
        leader: Option<i32>,
    },
    /// The partition has no leader right now (election in progress).
    #[error("leader not available")]
    LeaderNotAvailable,
    /// The leader epoch in the request is older than the partition's.
    #[error("fenced leader epoch")]
    FencedLeaderEpoch,
    /// The leader epoch in the request is newer than the partition's.
    #[error("unknown leader epoch")]
    UnknownLeaderEpoch,
    /// This node is not the coordinator of the group.
    #[error("not the coordinator")]
    NotCoordinator,
    /// The coordinator is loading the group's state.
    #[error("coordinator loading")]
    CoordinatorLoading,
    /// No coordinator is available for the group.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    /// The fetch offset is outside [log start, high watermark].
    #[error("offset out of range")]
    OffsetOutOfRange,
    /// A batch failed its CRC or is otherwise corrupt.
    #[error("corrupt message")]
    CorruptMessage,
    /// A batch is larger than the topic's `max.message.bytes`.
    #[error("message too large")]
    MessageTooLarge,
    /// A record violates a topic rule (e.g. no key on a compacted topic).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A batch's timestamp is outside the accepted range.
    #[error("invalid timestamp")]
    InvalidTimestamp,
    /// Idempotent produce: the sequence number skips ahead.
    #[error("out of order sequence number")]
    OutOfOrderSequence,
    /// Idempotent produce: the batch was already written (the client treats it as success).
    #[error("duplicate sequence number")]
    DuplicateSequence,
    /// Idempotent produce: the producer epoch is stale.
    #[error("invalid producer epoch")]
    InvalidProducerEpoch,
    /// Idempotent produce: the broker no longer knows this producer id.
    #[error("unknown producer id")]
    UnknownProducerId,
    /// Transactions are not supported (a transactional id was given).
    #[error("transactions are not supported")]
    TransactionsUnsupported,
    /// The topic exists already.
    #[error("topic already exists")]
    TopicAlreadyExists,
    /// The topic name is not a valid name (or names an internal topic).
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    /// The partition count is not valid.
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    /// The replication factor is not valid (e.g. more than the live nodes).
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    /// Manual replica assignment is not supported or is invalid.
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    /// The request violates a policy of the cluster.
    #[error("policy violation: {0}")]
    PolicyViolation(String),
    /// A topic configuration key or value is not valid.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// The operation did not finish within its timeout.
    #[error("request timed out")]
    RequestTimedOut,
    /// acks=all: too few in-sync replicas.
    #[error("not enough replicas")]
    NotEnoughReplicas,
    /// The member id is not known to the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// First JoinGroup of a member: the coordinator gives it `member_id` and expects a rejoin.
    #[error("member id required (assigned {member_id})")]
    MemberIdRequired {
        /// The member id the client must use when it joins again.
        member_id: String,
    },
    /// The generation is not the group's current one.
    #[error("illegal generation")]
    IllegalGeneration,
    /// The group is rebalancing; the member must rejoin.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// The member's protocols do not match the group's.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// The group is a native Skein group (or the reverse): Kafka and Skein members can't mix.
    #[error("group is of another type (native vs classic)")]
    GroupTypeMismatch,
    /// The session timeout is outside the coordinator's range.
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    /// The group does not exist.
    #[error("group id not found")]
    GroupIdNotFound,
    /// The group has members, so it can't be deleted.
    #[error("group not empty")]
    NonEmptyGroup,
    /// The group id is empty or otherwise not valid.
    #[error("invalid group id")]
    InvalidGroupId,
    /// Another member with the same `group.instance.id` has taken over.
    #[error("fenced instance id")]
    FencedInstanceId,
    /// The group has its maximum number of members.
    #[error("group max size reached")]
    GroupMaxSizeReached,
    /// The commit metadata string is too long.
    #[error("offset metadata too large")]
    OffsetMetadataTooLarge,
    /// The request is valid Kafka but asks for something the record format can't do.
    #[error("unsupported for message format")]
    UnsupportedForMessageFormat,
    /// The request is well formed but its content is not acceptable.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The broker is shutting down or its storage failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// Anything else; reported as UNKNOWN_SERVER_ERROR.
    #[error("{0}")]
    Unknown(String),
}

impl BackendError {
    /// The Kafka error code for this error. The one place where the mapping lives.
    pub fn code(&self) -> i16 {
        let e = match self {
            Self::UnknownTopicOrPartition => R::UnknownTopicOrPartition,
            Self::NotLeader { .. } => R::NotLeaderOrFollower,
            Self::LeaderNotAvailable => R::LeaderNotAvailable,
            Self::FencedLeaderEpoch => R::FencedLeaderEpoch,
            Self::UnknownLeaderEpoch => R::UnknownLeaderEpoch,
            Self::NotCoordinator => R::NotCoordinator,
            Self::CoordinatorLoading => R::CoordinatorLoadInProgress,
            Self::CoordinatorNotAvailable => R::CoordinatorNotAvailable,
            Self::OffsetOutOfRange => R::OffsetOutOfRange,
            Self::CorruptMessage => R::CorruptMessage,
            Self::MessageTooLarge => R::MessageTooLarge,
            Self::InvalidRecord(_) => R::InvalidRecord,
            Self::InvalidTimestamp => R::InvalidTimestamp,
            Self::OutOfOrderSequence => R::OutOfOrderSequenceNumber,
            Self::DuplicateSequence => R::DuplicateSequenceNumber,
            Self::InvalidProducerEpoch => R::InvalidProducerEpoch,
            Self::UnknownProducerId => R::UnknownProducerId,
            Self::TransactionsUnsupported => R::TransactionalIdAuthorizationFailed,
            Self::TopicAlreadyExists => R::TopicAlreadyExists,
            Self::InvalidTopic(_) => R::InvalidTopicException,
            Self::InvalidPartitions(_) => R::InvalidPartitions,
            Self::InvalidReplicationFactor(_) => R::InvalidReplicationFactor,
            Self::InvalidReplicaAssignment(_) => R::InvalidReplicaAssignment,
            Self::PolicyViolation(_) => R::PolicyViolation,
            Self::InvalidConfig(_) => R::InvalidConfig,
            Self::RequestTimedOut => R::RequestTimedOut,
            Self::NotEnoughReplicas => R::NotEnoughReplicas,
            Self::UnknownMemberId => R::UnknownMemberId,
            Self::MemberIdRequired { .. } => R::MemberIdRequired,
            Self::IllegalGeneration => R::IllegalGeneration,
            Self::RebalanceInProgress => R::RebalanceInProgress,
            Self::InconsistentGroupProtocol | Self::GroupTypeMismatch => {
                R::InconsistentGroupProtocol
            }
            Self::InvalidSessionTimeout => R::InvalidSessionTimeout,
            Self::GroupIdNotFound => R::GroupIdNotFound,
            Self::NonEmptyGroup => R::NonEmptyGroup,
            Self::InvalidGroupId => R::InvalidGroupId,
            Self::FencedInstanceId => R::FencedInstanceId,
            Self::GroupMaxSizeReached => R::GroupMaxSizeReached,
            Self::OffsetMetadataTooLarge => R::OffsetMetadataTooLarge,
            Self::UnsupportedForMessageFormat => R::UnsupportedForMessageFormat,
            Self::InvalidRequest(_) => R::InvalidRequest,
            Self::Storage(_) => R::KafkaStorageError,
            Self::Unknown(_) => R::UnknownServerError,
        };
        e.code()
    }

    /// The text Kafka puts in an `error_message` field, where the API has one.
    pub fn message(&self) -> Option<String> {
        match self {
            Self::InvalidRecord(m)
            | Self::InvalidTopic(m)
            | Self::InvalidPartitions(m)
            | Self::InvalidReplicationFactor(m)
            | Self::InvalidReplicaAssignment(m)
            | Self::PolicyViolation(m)
            | Self::InvalidConfig(m)
            | Self::InvalidRequest(m)
            | Self::Storage(m)
            | Self::Unknown(m) => Some(m.clone()),
            _ => None,
        }
    }
}

/// Error code 0: no error.
pub const NONE: i16 = 0;

/// Kafka's code for an api version outside the supported range.
pub const UNSUPPORTED_VERSION: i16 = 35;

/// The code of a backend result: 0 for success.
pub fn code_of<T>(result: &Result<T, BackendError>) -> i16 {
    result.as_ref().err().map_or(NONE, BackendError::code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_kafka() {
        assert_eq!(BackendError::UnknownTopicOrPartition.code(), 3);
        assert_eq!(BackendError::NotLeader { leader: Some(2) }.code(), 6);
        assert_eq!(BackendError::NotCoordinator.code(), 16);
        assert_eq!(BackendError::CoordinatorLoading.code(), 14);
        assert_eq!(BackendError::OffsetOutOfRange.code(), 1);
        assert_eq!(
            BackendError::MemberIdRequired {
                member_id: "m".into()
            }
            .code(),
            79
        );
        assert_eq!(BackendError::RebalanceInProgress.code(), 27);
        assert_eq!(BackendError::GroupTypeMismatch.code(), 23);
        assert_eq!(BackendError::FencedInstanceId.code(), 82);
        assert_eq!(BackendError::DuplicateSequence.code(), 46);
        assert_eq!(BackendError::TopicAlreadyExists.code(), 36);
        assert_eq!(BackendError::Unknown("x".into()).code(), -1);
        assert_eq!(UNSUPPORTED_VERSION, R::UnsupportedVersion.code());
    }

    #[test]
    fn code_of_success_is_zero() {
        assert_eq!(code_of::<()>(&Ok(())), 0);
        assert_eq!(code_of::<()>(&Err(BackendError::NonEmptyGroup)), 68);
    }
}
