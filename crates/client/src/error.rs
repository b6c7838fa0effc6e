//! The client's one error type, and the only place where gRPC statuses and per-partition
//! protocol errors become [`ClientError`]s.

use std::time::Duration;

use skein_proto::v1 as pb;
pub use skein_proto::v1::ErrorCode;

/// Result alias for the client.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Metadata key carrying the stable [`ErrorCode`] number (ASCII) on a failed call.
pub const ERROR_CODE_KEY: &str = "skein-error-code";
/// Metadata key carrying the leader's node id on a NOT_LEADER failure.
pub const LEADER_ID_KEY: &str = "skein-leader-id";
/// Metadata key carrying the leader's advertised client address on a NOT_LEADER failure.
pub const LEADER_ADDR_KEY: &str = "skein-leader-addr";
/// Metadata key carrying the refused request's size in bytes on a REQUEST_TOO_LARGE failure.
pub const REQUEST_BYTES_KEY: &str = "skein-request-bytes";
/// Metadata key carrying the broker's `limits.request_bytes_max` on a REQUEST_TOO_LARGE failure.
pub const REQUEST_BYTES_MAX_KEY: &str = "skein-request-bytes-max";

/// Where the leader of a partition is, as named by a broker that is not the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHint {
    /// Node id of the leader.
    pub node_id: u64,
    /// Advertised client address of the leader, `HOST:PORT` (empty when unknown).
    pub client_addr: String,
}

/// Everything that can go wrong in the client.
///
/// Variants that come from the broker carry its stable [`ErrorCode`] (see [`ClientError::code`]);
/// [`ClientError::is_retryable`] says whether trying again (after a metadata refresh) can help.
/// The client already retries retryable errors up to [`crate::ClientConfig::max_retries`] times,
/// so a retryable error seen by the caller means those retries were used up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// A configuration value is out of range.
    #[error("invalid client configuration: {field} {reason}")]
    InvalidConfig {
        /// The setting, as named in the config struct.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// No broker in the bootstrap list (or known from metadata) answered.
    #[error(
        "cannot reach any broker at {brokers}: is skein-node running? start one with \
         `cargo run --release --bin skein-node`, or point --brokers / SKEIN_BROKERS at a running \
         node ({detail})"
    )]
    NoBrokerReachable {
        /// The addresses tried, comma-separated.
        brokers: String,
        /// The last connection error.
        detail: String,
    },

    /// The connection to one broker failed (refused, reset, unreachable). Retryable: the client
    /// refreshes metadata and tries again.
    #[error("connection to broker {addr} failed: {detail}")]
    Transport {
        /// The broker's address.
        addr: String,
        /// What the transport reported.
        detail: String,
    },

    /// A call did not complete in time on the client side.
    #[error("{what} timed out after {after:?}; the cluster may be overloaded or electing leaders, retry or raise the request timeout")]
    Timeout {
        /// What timed out.
        what: String,
        /// The limit that passed.
        after: Duration,
    },

    /// The broker asked is not the leader of the partition. Retryable: the client goes to the
    /// named leader (or refreshes metadata when none is named).
    #[error("{what}: broker is not the leader{}", leader_text(.leader))]
    NotLeader {
        /// The partition or call concerned.
        what: String,
        /// The leader, when the broker knows it.
        leader: Option<LeaderHint>,
    },

    /// No leader is known for the partition yet (an election is running). Retryable.
    #[error("{what}: no leader available yet (an election may be running); retry shortly")]
    LeaderNotAvailable {
        /// The partition or call concerned.
        what: String,
    },

    /// The node asked does not coordinate the consumer group. Retryable: the client goes to
    /// the named coordinator (or finds it again when none is named).
    #[error("{what}: node is not the group's coordinator{}", coordinator_text(.coordinator))]
    NotCoordinator {
        /// The group call concerned.
        what: String,
        /// The coordinator, when the node knows it.
        coordinator: Option<LeaderHint>,
    },

    /// The group's coordinator is loading its offsets or not elected yet. Retryable.
    #[error("{what}: the group coordinator is not available yet (it may be loading offsets or electing a leader); retry shortly")]
    CoordinatorNotAvailable {
        /// The group call concerned.
        what: String,
    },

    /// The topic or partition does not exist.
    #[error("{what}: unknown topic or partition; list topics with `skein topic list` or create it with `skein topic create`")]
    UnknownTopicOrPartition {
        /// The topic or partition named.
        what: String,
    },

    /// A topic of that name exists already.
    #[error("topic {topic} already exists; describe it with `skein topic describe {topic}`")]
    TopicAlreadyExists {
        /// The topic.
        topic: String,
    },

    /// The offset asked for is outside the partition's log.
    #[error("{what}: offset out of range ({message}); seek to the beginning or the end instead")]
    OffsetOutOfRange {
        /// The partition concerned.
        what: String,
        /// The broker's explanation.
        message: String,
    },

    /// A partition has no start position: no committed offset (or no seek), and the reset
    /// policy is [`crate::OffsetReset::Error`] (`--reset none`), which forbids guessing one.
    #[error(
        "{what}: no committed offset to start from and the reset policy is none; commit a \
         position first (`skein group reset GROUP --topic TOPIC:PARTITION --to-earliest \
         --execute`), seek explicitly, or choose the reset policy earliest or latest"
    )]
    NoStartPosition {
        /// The partition (and group) concerned.
        what: String,
    },

    /// Any other error the broker reported, with its stable code.
    #[error("{what}: broker error {}: {message}{}", code.as_str_name(), code_advice(*.code))]
    Broker {
        /// The stable code.
        code: ErrorCode,
        /// The partition or call concerned.
        what: String,
        /// The broker's message.
        message: String,
    },

    /// A gRPC failure that carries no Skein error code (e.g. a proxy, or an unimplemented
    /// method on an older broker).
    #[error("{what}: gRPC error {code:?}: {message}")]
    Rpc {
        /// The partition or call concerned.
        what: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },

    /// The broker answered with something this client cannot decode.
    #[error("{what}: malformed response from broker: {reason}")]
    CorruptResponse {
        /// The partition or call concerned.
        what: String,
        /// What is wrong.
        reason: String,
    },

    /// A record is larger than anything the producer may buffer.
    #[error("record of {size} bytes exceeds the producer's limit of {max} bytes; raise buffer_bytes_max or send smaller records")]
    RecordTooLarge {
        /// Encoded size of the record.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// The broker refused a request larger than its `limits.request_bytes_max`, before reading
    /// it: nothing of it was written. The producer keeps its requests below the limit a broker
    /// advertises in its metadata; this happens with a broker that does not advertise one, or
    /// with a single batch larger than the limit.
    #[error(
        "{what}: request of {size} bytes is larger than the broker's limit of {max} bytes \
         (its limits.request_bytes_max); set the producer's request_bytes_max and \
         batch_bytes_max below {max}, send smaller records, or raise the broker's limit"
    )]
    RequestTooLarge {
        /// The call concerned.
        what: String,
        /// The request's size as the broker counted it (its protobuf message).
        size: usize,
        /// The broker's limit.
        max: usize,
    },

    /// The producer was closed, or its background task stopped.
    #[error("the producer is closed; create a new one")]
    ProducerClosed,

    /// The group consumer was closed (or failed fatally, e.g. it was fenced); create a new one.
    #[error("the group consumer is closed; create a new one")]
    ConsumerClosed,

    /// A partition the consumer was asked about is not assigned to it.
    #[error("{what} is not assigned to this consumer; call assign() first")]
    NotAssigned {
        /// The partition.
        what: String,
    },

    /// A record batch could not be compressed or decompressed.
    #[error("{what}: {codec} compression failed: {reason}")]
    Compression {
        /// What was being done.
        what: String,
        /// The codec.
        codec: &'static str,
        /// What went wrong.
        reason: String,
    },
}

fn leader_text(leader: &Option<LeaderHint>) -> String {
    match leader {
        Some(h) if !h.client_addr.is_empty() => {
            format!(" (leader is node {} at {})", h.node_id, h.client_addr)
        }
        Some(h) => format!(" (leader is node {})", h.node_id),
        None => " (leader unknown)".to_string(),
    }
}

fn coordinator_text(c: &Option<LeaderHint>) -> String {
    match c {
        Some(h) if !h.client_addr.is_empty() => {
            format!(" (coordinator is node {} at {})", h.node_id, h.client_addr)
        }
        Some(h) => format!(" (coordinator is node {})", h.node_id),
        None => " (coordinator unknown)".to_string(),
    }
}

fn code_advice(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::None => "",
        ErrorCode::NotLeader | ErrorCode::LeaderNotAvailable => "; retry shortly",
        ErrorCode::UnknownTopicOrPartition => "; check the topic name with `skein topic list`",
        ErrorCode::InvalidTopicName => {
            "; topic names are 1-249 characters of [A-Za-z0-9._-], not `.` or `..`"
        }
        ErrorCode::OffsetOutOfRange => "; seek to the beginning or the end instead",
        ErrorCode::CorruptBatch => "; the batch failed its CRC check on the way, retry",
        ErrorCode::BatchTooLarge => "; lower the producer's batch_bytes_max or send smaller records",
        ErrorCode::RequestTooLarge => {
            "; lower the producer's request_bytes_max and batch_bytes_max or send smaller records"
        }
        ErrorCode::InvalidReplicationFactor => {
            "; the replication factor cannot exceed the number of nodes (see `skein cluster status`)"
        }
        ErrorCode::StorageFailed => "; check the broker's disk and logs",
        ErrorCode::Timeout => "; the cluster may be overloaded or electing leaders, retry",
        ErrorCode::TopicAlreadyExists => "; choose another name or delete the topic first",
        ErrorCode::InvalidRequest => "; check the arguments",
        ErrorCode::InvalidPartitions => "; the partition count must be at least 1",
        ErrorCode::InvalidConfig => "; see the topic config keys in the documentation",
        ErrorCode::OutOfOrderSequence => "; the producer restarts its sequence, retry",
        ErrorCode::ProducerFenced => "; another producer with a newer epoch took over",
        ErrorCode::Throttled => "; the broker is at its limit, retry later",
        ErrorCode::NodeNotReady => "; the node is starting or stopping, retry shortly",
        ErrorCode::Internal => "; check the broker's logs",
        ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => "; retry shortly",
        ErrorCode::RebalanceInProgress => {
            "; the group is rebalancing: commit what was processed and join again"
        }
        ErrorCode::UnknownMemberId => {
            "; the member is no longer in the group (session timed out?): join again"
        }
        ErrorCode::IllegalGeneration => {
            "; the member missed a rebalance (stale generation): join again"
        }
        ErrorCode::GroupNotEmpty => {
            "; the group has active members: stop them first (see `skein group describe`)"
        }
        ErrorCode::GroupNotFound => "; list groups with `skein group list`",
        ErrorCode::InvalidGroupId => "; a group id is a non-empty name",
        ErrorCode::FencedInstanceId => {
            "; another consumer runs with the same group instance id: give each its own"
        }
        ErrorCode::InvalidSessionTimeout => {
            "; the session timeout must be between 1 s and 5 min"
        }
    }
}

impl ClientError {
    /// The stable broker error code, for errors that came from a broker.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::NotLeader { .. } => Some(ErrorCode::NotLeader),
            ClientError::LeaderNotAvailable { .. } => Some(ErrorCode::LeaderNotAvailable),
            ClientError::NotCoordinator { .. } => Some(ErrorCode::NotCoordinator),
            ClientError::CoordinatorNotAvailable { .. } => Some(ErrorCode::CoordinatorNotAvailable),
            ClientError::UnknownTopicOrPartition { .. } => Some(ErrorCode::UnknownTopicOrPartition),
            ClientError::TopicAlreadyExists { .. } => Some(ErrorCode::TopicAlreadyExists),
            ClientError::OffsetOutOfRange { .. } => Some(ErrorCode::OffsetOutOfRange),
            ClientError::RequestTooLarge { .. } => Some(ErrorCode::RequestTooLarge),
            ClientError::Broker { code, .. } => Some(*code),
            ClientError::InvalidConfig { .. }
            | ClientError::NoBrokerReachable { .. }
            | ClientError::Transport { .. }
            | ClientError::Timeout { .. }
            | ClientError::Rpc { .. }
            | ClientError::CorruptResponse { .. }
            | ClientError::RecordTooLarge { .. }
            | ClientError::ProducerClosed
            | ClientError::ConsumerClosed
            | ClientError::NotAssigned { .. }
            | ClientError::NoStartPosition { .. }
            | ClientError::Compression { .. } => None,
        }
    }

    /// True when the same request may succeed if tried again (after refreshing metadata).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::NoBrokerReachable { .. }
            | ClientError::Transport { .. }
            | ClientError::Timeout { .. }
            | ClientError::NotLeader { .. }
            | ClientError::LeaderNotAvailable { .. }
            | ClientError::NotCoordinator { .. }
            | ClientError::CoordinatorNotAvailable { .. }
            // A topic just created may not have reached every node's metadata yet.
            | ClientError::UnknownTopicOrPartition { .. } => true,
            ClientError::Broker { code, .. } => code_is_retryable(*code),
            ClientError::Rpc { code, .. } => matches!(
                code,
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::ResourceExhausted
            ),
            ClientError::InvalidConfig { .. }
            | ClientError::TopicAlreadyExists { .. }
            | ClientError::OffsetOutOfRange { .. }
            | ClientError::CorruptResponse { .. }
            | ClientError::RecordTooLarge { .. }
            | ClientError::RequestTooLarge { .. }
            | ClientError::ProducerClosed
            | ClientError::ConsumerClosed
            | ClientError::NotAssigned { .. }
            | ClientError::NoStartPosition { .. }
            | ClientError::Compression { .. } => false,
        }
    }

    /// True when cached metadata should be refreshed before the retry: the error says the
    /// client's picture of leaders or topics is stale, or a broker went away.
    pub fn needs_metadata_refresh(&self) -> bool {
        matches!(
            self,
            ClientError::NoBrokerReachable { .. }
                | ClientError::Transport { .. }
                | ClientError::NotLeader { .. }
                | ClientError::LeaderNotAvailable { .. }
                | ClientError::UnknownTopicOrPartition { .. }
        ) || matches!(
            self,
            ClientError::Broker {
                code: ErrorCode::NodeNotReady,
                ..
            }
        )
    }

    /// Maps a per-partition protocol `Error` to a client error; `None` when it says "no error".
    pub fn from_partition_error(what: &str, error: Option<&pb::Error>) -> Option<ClientError> {
        let error = error?;
        let code = ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Internal);
        let leader = error
            .leader
            .as_ref()
            .filter(|l| l.node_id != 0)
            .map(|l| LeaderHint {
                node_id: l.node_id,
                client_addr: l.client_addr.clone(),
            });
        from_code(what, code, error.message.clone(), leader)
    }

    /// Maps a failed gRPC call to a client error. `addr` is the broker that was called.
    pub fn from_status(what: &str, addr: &str, status: &tonic::Status) -> ClientError {
        if let Some(e) = request_too_large(what, status) {
            return e;
        }
        let meta = status.metadata();
        let code = meta
            .get(ERROR_CODE_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<i32>().ok())
            .map(|n| ErrorCode::try_from(n).unwrap_or(ErrorCode::Internal));
        if let Some(code) = code {
            let leader = meta
                .get(LEADER_ID_KEY)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
                .filter(|id| *id != 0)
                .map(|node_id| LeaderHint {
                    node_id,
                    client_addr: meta
                        .get(LEADER_ADDR_KEY)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string(),
                });
            if let Some(e) = from_code(what, code, status.message().to_string(), leader) {
                return e;
            }
        }
        match status.code() {
            // tonic reports connection failures as UNAVAILABLE (or UNKNOWN with a transport
            // source) without Skein metadata.
            tonic::Code::Unavailable => ClientError::Transport {
                addr: addr.to_string(),
                detail: status.message().to_string(),
            },
            tonic::Code::Unknown if is_transport_failure(status) => ClientError::Transport {
                addr: addr.to_string(),
                detail: status.message().to_string(),
            },
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => ClientError::Timeout {
                what: what.to_string(),
                after: Duration::ZERO,
            },
            code => ClientError::Rpc {
                what: what.to_string(),
                code,
                message: status.message().to_string(),
            },
        }
    }
}

/// A refusal of an oversized request: the broker's REQUEST_TOO_LARGE with both sizes in the
/// metadata, or (from a broker that does not map it) tonic's own OUT_OF_RANGE "Error, decoded
/// message length too large: found N bytes, the limit is: M bytes".
fn request_too_large(what: &str, status: &tonic::Status) -> Option<ClientError> {
    let meta = status.metadata();
    let number = |key: &str| {
        meta.get(key)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<usize>().ok())
    };
    let coded = number(ERROR_CODE_KEY) == Some(ErrorCode::RequestTooLarge as usize);
    let (size, max) = if coded {
        (number(REQUEST_BYTES_KEY)?, number(REQUEST_BYTES_MAX_KEY)?)
    } else if status.code() == tonic::Code::OutOfRange && meta.get(ERROR_CODE_KEY).is_none() {
        let rest = status
            .message()
            .strip_prefix("Error, decoded message length too large: found ")?;
        let (size, rest) = rest.split_once(" bytes, the limit is: ")?;
        let max = rest.strip_suffix(" bytes")?;
        (size.parse().ok()?, max.parse().ok()?)
    } else {
        return None;
    };
    Some(ClientError::RequestTooLarge {
        what: what.to_string(),
        size,
        max,
    })
}

fn is_transport_failure(status: &tonic::Status) -> bool {
    use std::error::Error as _;
    let mut source = status.source();
    while let Some(s) = source {
        if s.is::<tonic::transport::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// True for the codes the protocol documents as retryable (plus TIMEOUT and CORRUPT_BATCH,
/// which are safe to retry for an idempotent producer and for reads).
pub fn code_is_retryable(code: ErrorCode) -> bool {
    match code {
        ErrorCode::NotLeader
        | ErrorCode::LeaderNotAvailable
        | ErrorCode::Throttled
        | ErrorCode::NodeNotReady
        | ErrorCode::Timeout
        | ErrorCode::CorruptBatch
        | ErrorCode::UnknownTopicOrPartition
        | ErrorCode::NotCoordinator
        | ErrorCode::CoordinatorNotAvailable => true,
        ErrorCode::None
        | ErrorCode::InvalidTopicName
        | ErrorCode::OffsetOutOfRange
        | ErrorCode::BatchTooLarge
        | ErrorCode::InvalidReplicationFactor
        | ErrorCode::StorageFailed
        | ErrorCode::TopicAlreadyExists
        | ErrorCode::InvalidRequest
        | ErrorCode::InvalidPartitions
        | ErrorCode::InvalidConfig
        | ErrorCode::OutOfOrderSequence
        | ErrorCode::ProducerFenced
        | ErrorCode::RequestTooLarge
        | ErrorCode::Internal
        // Group-level answers: the group consumer handles each (join again, fail), they are not
        // "send the same request again".
        | ErrorCode::RebalanceInProgress
        | ErrorCode::UnknownMemberId
        | ErrorCode::IllegalGeneration
        | ErrorCode::GroupNotEmpty
        | ErrorCode::GroupNotFound
        | ErrorCode::InvalidGroupId
        | ErrorCode::FencedInstanceId
        | ErrorCode::InvalidSessionTimeout => false,
    }
}

fn from_code(
    what: &str,
    code: ErrorCode,
    message: String,
    leader: Option<LeaderHint>,
) -> Option<ClientError> {
    let what = what.to_string();
    Some(match code {
        ErrorCode::None => return None,
        ErrorCode::NotLeader => ClientError::NotLeader { what, leader },
        ErrorCode::LeaderNotAvailable => ClientError::LeaderNotAvailable { what },
        ErrorCode::NotCoordinator => ClientError::NotCoordinator {
            what,
            coordinator: leader,
        },
        ErrorCode::CoordinatorNotAvailable => ClientError::CoordinatorNotAvailable { what },
        ErrorCode::UnknownTopicOrPartition => ClientError::UnknownTopicOrPartition { what },
        ErrorCode::TopicAlreadyExists => ClientError::TopicAlreadyExists { topic: what },
        ErrorCode::OffsetOutOfRange => ClientError::OffsetOutOfRange { what, message },
        ErrorCode::InvalidTopicName
        | ErrorCode::CorruptBatch
        | ErrorCode::BatchTooLarge
        | ErrorCode::InvalidReplicationFactor
        | ErrorCode::StorageFailed
        | ErrorCode::Timeout
        | ErrorCode::InvalidRequest
        | ErrorCode::InvalidPartitions
        | ErrorCode::InvalidConfig
        | ErrorCode::OutOfOrderSequence
        | ErrorCode::ProducerFenced
        | ErrorCode::RequestTooLarge
        | ErrorCode::Throttled
        | ErrorCode::NodeNotReady
        | ErrorCode::Internal
        | ErrorCode::RebalanceInProgress
        | ErrorCode::UnknownMemberId
        | ErrorCode::IllegalGeneration
        | ErrorCode::GroupNotEmpty
        | ErrorCode::GroupNotFound
        | ErrorCode::InvalidGroupId
        | ErrorCode::FencedInstanceId
        | ErrorCode::InvalidSessionTimeout => ClientError::Broker {
            code,
            what,
            message,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_with(code: &str, leader: Option<(&str, &str)>) -> tonic::Status {
        let mut s = tonic::Status::unavailable("not the leader");
        s.metadata_mut()
            .insert(ERROR_CODE_KEY, code.parse().expect("ascii"));
        if let Some((id, addr)) = leader {
            s.metadata_mut()
                .insert(LEADER_ID_KEY, id.parse().expect("ascii"));
            s.metadata_mut()
                .insert(LEADER_ADDR_KEY, addr.parse().expect("ascii"));
        }
        s
    }

    #[test]
    fn status_with_not_leader_metadata_names_the_leader() {
        let e = ClientError::from_status(
            "t-0",
            "a:1",
            &status_with("1", Some(("3", "10.0.0.3:9650"))),
        );
        match &e {
            ClientError::NotLeader {
                leader: Some(h), ..
            } => {
                assert_eq!(h.node_id, 3);
                assert_eq!(h.client_addr, "10.0.0.3:9650");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(e.is_retryable());
        assert!(e.needs_metadata_refresh());
        assert_eq!(e.code(), Some(ErrorCode::NotLeader));
        assert!(e.to_string().contains("node 3 at 10.0.0.3:9650"), "{e}");
    }

    #[test]
    fn status_codes_map_to_typed_variants() {
        let e = ClientError::from_status("topic x", "a:1", &status_with("10", None));
        assert!(matches!(e, ClientError::TopicAlreadyExists { .. }));
        assert!(!e.is_retryable());
        let e = ClientError::from_status("t", "a:1", &status_with("7", None));
        assert_eq!(e.code(), Some(ErrorCode::InvalidReplicationFactor));
        assert!(e.to_string().contains("skein cluster status"), "{e}");
        let e = ClientError::from_status("t", "a:1", &status_with("19", None));
        assert!(e.is_retryable());
        // An unknown future code is not a panic: it is reported as INTERNAL.
        let e = ClientError::from_status("t", "a:1", &status_with("999", None));
        assert_eq!(e.code(), Some(ErrorCode::Internal));
    }

    #[test]
    fn status_without_skein_code_is_transport_or_rpc() {
        let e = ClientError::from_status("t", "a:1", &tonic::Status::unavailable("refused"));
        assert!(matches!(e, ClientError::Transport { .. }));
        assert!(e.is_retryable());
        let e = ClientError::from_status("t", "a:1", &tonic::Status::unimplemented("no"));
        assert!(matches!(
            e,
            ClientError::Rpc {
                code: tonic::Code::Unimplemented,
                ..
            }
        ));
        assert!(!e.is_retryable());
    }

    #[test]
    fn an_oversized_request_is_a_typed_error_that_names_both_limits() {
        // A broker that maps the refusal: REQUEST_TOO_LARGE with both sizes in the metadata.
        let mut coded = tonic::Status::resource_exhausted("request of 3145828 bytes is larger");
        for (k, v) in [
            (ERROR_CODE_KEY, "17"),
            (REQUEST_BYTES_KEY, "3145828"),
            (REQUEST_BYTES_MAX_KEY, "2097152"),
        ] {
            coded.metadata_mut().insert(k, v.parse().expect("ascii"));
        }
        // An older broker: tonic's own refusal, OUT_OF_RANGE without a Skein code.
        let raw = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 3145828 bytes, the limit is: \
             2097152 bytes",
        );
        for status in [coded, raw] {
            let e = ClientError::from_status("produce", "a:1", &status);
            match &e {
                ClientError::RequestTooLarge { what, size, max } => {
                    assert_eq!(
                        (what.as_str(), *size, *max),
                        ("produce", 3_145_828, 2_097_152)
                    );
                }
                other => panic!("unexpected {other:?} from {status:?}"),
            }
            assert_eq!(e.code(), Some(ErrorCode::RequestTooLarge));
            assert!(!e.is_retryable(), "the same request is refused again");
            assert!(!e.needs_metadata_refresh());
            let text = e.to_string();
            assert!(
                text.contains("request_bytes_max and batch_bytes_max below 2097152"),
                "{text}"
            );
        }
        // The code without the sizes is still the broker's code.
        let e = ClientError::from_status("produce", "a:1", &status_with("17", None));
        assert!(
            matches!(
                e,
                ClientError::Broker {
                    code: ErrorCode::RequestTooLarge,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("request_bytes_max"), "{e}");
        // Other OUT_OF_RANGE answers keep their meaning.
        let mut offset = tonic::Status::out_of_range("offset 9 is past the end 5");
        offset
            .metadata_mut()
            .insert(ERROR_CODE_KEY, "4".parse().expect("ascii"));
        let e = ClientError::from_status("fetch", "a:1", &offset);
        assert!(matches!(e, ClientError::OffsetOutOfRange { .. }), "{e:?}");
        let e = ClientError::from_status("t", "a:1", &tonic::Status::out_of_range("other"));
        assert!(
            matches!(
                e,
                ClientError::Rpc {
                    code: tonic::Code::OutOfRange,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn partition_errors_map_with_leader_hint() {
        assert!(ClientError::from_partition_error("t-0", None).is_none());
        let none = pb::Error {
            code: ErrorCode::None as i32,
            message: String::new(),
            leader: None,
        };
        assert!(ClientError::from_partition_error("t-0", Some(&none)).is_none());
        let nl = pb::Error {
            code: ErrorCode::NotLeader as i32,
            message: "moved".into(),
            leader: Some(pb::LeaderHint {
                node_id: 2,
                client_addr: "h:2".into(),
            }),
        };
        let e = ClientError::from_partition_error("t-0", Some(&nl)).expect("an error");
        assert!(matches!(
            e,
            ClientError::NotLeader {
                leader: Some(LeaderHint { node_id: 2, .. }),
                ..
            }
        ));
        let oor = pb::Error {
            code: ErrorCode::OffsetOutOfRange as i32,
            message: "below start 5".into(),
            leader: None,
        };
        let e = ClientError::from_partition_error("t-0", Some(&oor)).expect("an error");
        assert!(matches!(e, ClientError::OffsetOutOfRange { .. }));
        assert!(!e.is_retryable());
    }

    #[test]
    fn group_codes_map_and_say_what_to_do() {
        let e = ClientError::from_status(
            "join group g",
            "a:1",
            &status_with("21", Some(("2", "10.0.0.2:9650"))),
        );
        match &e {
            ClientError::NotCoordinator {
                coordinator: Some(h),
                ..
            } => assert_eq!((h.node_id, h.client_addr.as_str()), (2, "10.0.0.2:9650")),
            other => panic!("unexpected {other:?}"),
        }
        assert!(e.is_retryable());
        assert!(!e.needs_metadata_refresh(), "topic metadata is not stale");
        assert!(e.to_string().contains("coordinator is node 2"), "{e}");
        let e = ClientError::from_status("g", "a:1", &status_with("22", None));
        assert!(matches!(e, ClientError::CoordinatorNotAvailable { .. }));
        assert!(e.is_retryable());
        for (code, advice) in [
            (ErrorCode::RebalanceInProgress, "join again"),
            (ErrorCode::UnknownMemberId, "join again"),
            (ErrorCode::IllegalGeneration, "stale generation"),
            (ErrorCode::GroupNotEmpty, "skein group describe"),
            (ErrorCode::GroupNotFound, "skein group list"),
            (ErrorCode::InvalidGroupId, "non-empty"),
            (ErrorCode::FencedInstanceId, "instance id"),
            (ErrorCode::InvalidSessionTimeout, "1 s and 5 min"),
        ] {
            let err = pb::Error {
                code: code as i32,
                message: "m".into(),
                leader: None,
            };
            let e = ClientError::from_partition_error("g", Some(&err)).expect("an error");
            assert_eq!(e.code(), Some(code));
            assert!(!e.is_retryable(), "{code:?}");
            assert!(e.to_string().contains(advice), "{code:?}: {e}");
        }
    }

    #[test]
    fn unreachable_message_says_what_to_do() {
        let e = ClientError::NoBrokerReachable {
            brokers: "127.0.0.1:9650".into(),
            detail: "connection refused".into(),
        };
        let s = e.to_string();
        assert!(
            s.contains("cannot reach any broker at 127.0.0.1:9650"),
            "{s}"
        );
        assert!(s.contains("cargo run --release --bin skein-node"), "{s}");
    }
}
