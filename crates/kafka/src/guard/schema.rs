//! Request body structures, one table per API, written from Kafka's request message schemas
//! (`clients/src/main/resources/common/message/*Request.json`). Field names and version strings
//! follow the schemas: `"N+"` from version N on, `"N-M"` versions N to M, `"N"` only N.
//!
//! The tables are laid out as the schemas nest fields (`#[rustfmt::skip]`: rustfmt would spread
//! each call over several lines).
//!
//! Each table lists the schema's fields, including some outside the versions this listener
//! decodes; the first argument of [`Message::new`] is the range the table was checked against
//! (the version table's range for that API; the tests encode requests of every one of those
//! versions with kafka-protocol and walk them). Extending an API's range in
//! [`crate::versions`] means re-reading its schema for the new versions and widening that range.

use kafka_protocol::messages::ApiKey;

use super::Type::{Array, Bool, Bytes, Int16, Int32, Int64, Int8, Records, Struct, Uuid};
use super::{field, Message, Type};

const STRING: Type = Type::String;

/// The description of `api_key`'s request body, if the listener decodes that API.
pub(crate) fn describe(api_key: ApiKey) -> Option<&'static Message> {
    Some(match api_key {
        ApiKey::Produce => &PRODUCE,
        ApiKey::Fetch => &FETCH,
        ApiKey::ListOffsets => &LIST_OFFSETS,
        ApiKey::Metadata => &METADATA,
        ApiKey::OffsetCommit => &OFFSET_COMMIT,
        ApiKey::OffsetFetch => &OFFSET_FETCH,
        ApiKey::FindCoordinator => &FIND_COORDINATOR,
        ApiKey::JoinGroup => &JOIN_GROUP,
        ApiKey::Heartbeat => &HEARTBEAT,
        ApiKey::LeaveGroup => &LEAVE_GROUP,
        ApiKey::SyncGroup => &SYNC_GROUP,
        ApiKey::DescribeGroups => &DESCRIBE_GROUPS,
        ApiKey::ListGroups => &LIST_GROUPS,
        ApiKey::ApiVersions => &API_VERSIONS,
        ApiKey::CreateTopics => &CREATE_TOPICS,
        ApiKey::DeleteTopics => &DELETE_TOPICS,
        ApiKey::InitProducerId => &INIT_PRODUCER_ID,
        ApiKey::OffsetForLeaderEpoch => &OFFSET_FOR_LEADER_EPOCH,
        ApiKey::DescribeConfigs => &DESCRIBE_CONFIGS,
        ApiKey::DeleteGroups => &DELETE_GROUPS,
        _ => return None,
    })
}

/// ProduceRequest (api key 0).
#[rustfmt::skip]
const PRODUCE: Message = Message::new("3-9", "9+", &[
    field("TransactionalId", STRING, "3+").nullable("3+"),
    field("Acks", Int16, "0+"),
    field("TimeoutMs", Int32, "0+"),
    field("TopicData", Array(&Struct(&[
        field("Name", STRING, "0+"),
        field("PartitionData", Array(&Struct(&[
            field("Index", Int32, "0+"),
            field("Records", Records, "0+").nullable("0+"),
        ])), "0+"),
    ])), "0+"),
]);

/// FetchRequest (api key 1).
#[rustfmt::skip]
const FETCH: Message = Message::new("4-12", "12+", &[
    field("ClusterId", STRING, "12+").nullable("12+").tagged(0),
    field("ReplicaId", Int32, "0-14"),
    field("ReplicaState", Struct(&[
        field("ReplicaId", Int32, "15+"),
        field("ReplicaEpoch", Int64, "15+"),
    ]), "15+").tagged(1),
    field("MaxWaitMs", Int32, "0+"),
    field("MinBytes", Int32, "0+"),
    field("MaxBytes", Int32, "3+"),
    field("IsolationLevel", Int8, "4+"),
    field("SessionId", Int32, "7+"),
    field("SessionEpoch", Int32, "7+"),
    field("Topics", Array(&Struct(&[
        field("Topic", STRING, "0-12"),
        field("TopicId", Uuid, "13+"),
        field("Partitions", Array(&Struct(&[
            field("Partition", Int32, "0+"),
            field("CurrentLeaderEpoch", Int32, "9+"),
            field("FetchOffset", Int64, "0+"),
            field("LastFetchedEpoch", Int32, "12+"),
            field("LogStartOffset", Int64, "5+"),
            field("PartitionMaxBytes", Int32, "0+"),
            field("ReplicaDirectoryId", Uuid, "17+").tagged(0),
        ])), "0+"),
    ])), "0+"),
    field("ForgottenTopicsData", Array(&Struct(&[
        field("Topic", STRING, "7-12"),
        field("TopicId", Uuid, "13+"),
        field("Partitions", Array(&Int32), "7+"),
    ])), "7+"),
    field("RackId", STRING, "11+"),
]);

/// ListOffsetsRequest (api key 2).
#[rustfmt::skip]
const LIST_OFFSETS: Message = Message::new("1-6", "6+", &[
    field("ReplicaId", Int32, "0+"),
    field("IsolationLevel", Int8, "2+"),
    field("Topics", Array(&Struct(&[
        field("Name", STRING, "0+"),
        field("Partitions", Array(&Struct(&[
            field("PartitionIndex", Int32, "0+"),
            field("CurrentLeaderEpoch", Int32, "4+"),
            field("Timestamp", Int64, "0+"),
            field("MaxNumOffsets", Int32, "0"),
        ])), "0+"),
    ])), "0+"),
    field("TimeoutMs", Int32, "10+"),
]);

/// MetadataRequest (api key 3).
#[rustfmt::skip]
const METADATA: Message = Message::new("0-12", "9+", &[
    field("Topics", Array(&Struct(&[
        field("TopicId", Uuid, "10+"),
        field("Name", STRING, "0+").nullable("10+"),
    ])), "0+").nullable("1+"),
    field("AllowAutoTopicCreation", Bool, "4+"),
    field("IncludeClusterAuthorizedOperations", Bool, "8-10"),
    field("IncludeTopicAuthorizedOperations", Bool, "8+"),
]);

/// OffsetCommitRequest (api key 8).
#[rustfmt::skip]
const OFFSET_COMMIT: Message = Message::new("2-8", "8+", &[
    field("GroupId", STRING, "0+"),
    field("GenerationIdOrMemberEpoch", Int32, "1+"),
    field("MemberId", STRING, "1+"),
    field("GroupInstanceId", STRING, "7+").nullable("7+"),
    field("RetentionTimeMs", Int64, "2-4"),
    field("Topics", Array(&Struct(&[
        field("Name", STRING, "0+"),
        field("Partitions", Array(&Struct(&[
            field("PartitionIndex", Int32, "0+"),
            field("CommittedOffset", Int64, "0+"),
            field("CommittedLeaderEpoch", Int32, "6+"),
            field("CommitTimestamp", Int64, "1"),
            field("CommittedMetadata", STRING, "0+").nullable("0+"),
        ])), "0+"),
    ])), "0+"),
]);

/// OffsetFetchRequest (api key 9).
#[rustfmt::skip]
const OFFSET_FETCH: Message = Message::new("1-8", "6+", &[
    field("GroupId", STRING, "0-7"),
    field("Topics", Array(&Struct(&[
        field("Name", STRING, "0-7"),
        field("PartitionIndexes", Array(&Int32), "0-7"),
    ])), "0-7").nullable("2-7"),
    field("Groups", Array(&Struct(&[
        field("GroupId", STRING, "8+"),
        field("MemberId", STRING, "9+").nullable("9+"),
        field("MemberEpoch", Int32, "9+"),
        field("Topics", Array(&Struct(&[
            field("Name", STRING, "8+"),
            field("PartitionIndexes", Array(&Int32), "8+"),
        ])), "8+").nullable("8+"),
    ])), "8+"),
    field("RequireStable", Bool, "7+"),
]);

/// FindCoordinatorRequest (api key 10).
#[rustfmt::skip]
const FIND_COORDINATOR: Message = Message::new("0-4", "3+", &[
    field("Key", STRING, "0-3"),
    field("KeyType", Int8, "1+"),
    field("CoordinatorKeys", Array(&STRING), "4+"),
]);

/// JoinGroupRequest (api key 11).
#[rustfmt::skip]
const JOIN_GROUP: Message = Message::new("0-9", "6+", &[
    field("GroupId", STRING, "0+"),
    field("SessionTimeoutMs", Int32, "0+"),
    field("RebalanceTimeoutMs", Int32, "1+"),
    field("MemberId", STRING, "0+"),
    field("GroupInstanceId", STRING, "5+").nullable("5+"),
    field("ProtocolType", STRING, "0+"),
    field("Protocols", Array(&Struct(&[
        field("Name", STRING, "0+"),
        field("Metadata", Bytes, "0+"),
    ])), "0+"),
    field("Reason", STRING, "8+").nullable("8+"),
]);

/// HeartbeatRequest (api key 12).
#[rustfmt::skip]
const HEARTBEAT: Message = Message::new("0-4", "4+", &[
    field("GroupId", STRING, "0+"),
    field("GenerationId", Int32, "0+"),
    field("MemberId", STRING, "0+"),
    field("GroupInstanceId", STRING, "3+").nullable("3+"),
]);

/// LeaveGroupRequest (api key 13).
#[rustfmt::skip]
const LEAVE_GROUP: Message = Message::new("0-5", "4+", &[
    field("GroupId", STRING, "0+"),
    field("MemberId", STRING, "0-2"),
    field("Members", Array(&Struct(&[
        field("MemberId", STRING, "3+"),
        field("GroupInstanceId", STRING, "3+").nullable("3+"),
        field("Reason", STRING, "5+").nullable("5+"),
    ])), "3+"),
]);

/// SyncGroupRequest (api key 14).
#[rustfmt::skip]
const SYNC_GROUP: Message = Message::new("0-5", "4+", &[
    field("GroupId", STRING, "0+"),
    field("GenerationId", Int32, "0+"),
    field("MemberId", STRING, "0+"),
    field("GroupInstanceId", STRING, "3+").nullable("3+"),
    field("ProtocolType", STRING, "5+").nullable("5+"),
    field("ProtocolName", STRING, "5+").nullable("5+"),
    field("Assignments", Array(&Struct(&[
        field("MemberId", STRING, "0+"),
        field("Assignment", Bytes, "0+"),
    ])), "0+"),
]);

/// DescribeGroupsRequest (api key 15).
#[rustfmt::skip]
const DESCRIBE_GROUPS: Message = Message::new("0-5", "5+", &[
    field("Groups", Array(&STRING), "0+"),
    field("IncludeAuthorizedOperations", Bool, "3+"),
]);

/// ListGroupsRequest (api key 16).
#[rustfmt::skip]
const LIST_GROUPS: Message = Message::new("0-4", "3+", &[
    field("StatesFilter", Array(&STRING), "4+"),
    field("TypesFilter", Array(&STRING), "5+"),
]);

/// ApiVersionsRequest (api key 18).
#[rustfmt::skip]
const API_VERSIONS: Message = Message::new("0-4", "3+", &[
    field("ClientSoftwareName", STRING, "3+"),
    field("ClientSoftwareVersion", STRING, "3+"),
]);

/// CreateTopicsRequest (api key 19).
#[rustfmt::skip]
const CREATE_TOPICS: Message = Message::new("2-6", "5+", &[
    field("Topics", Array(&Struct(&[
        field("Name", STRING, "0+"),
        field("NumPartitions", Int32, "0+"),
        field("ReplicationFactor", Int16, "0+"),
        field("Assignments", Array(&Struct(&[
            field("PartitionIndex", Int32, "0+"),
            field("BrokerIds", Array(&Int32), "0+"),
        ])), "0+"),
        field("Configs", Array(&Struct(&[
            field("Name", STRING, "0+"),
            field("Value", STRING, "0+").nullable("0+"),
        ])), "0+"),
    ])), "0+"),
    field("timeoutMs", Int32, "0+"),
    field("validateOnly", Bool, "1+"),
]);

/// DeleteTopicsRequest (api key 20).
#[rustfmt::skip]
const DELETE_TOPICS: Message = Message::new("1-5", "4+", &[
    field("Topics", Array(&Struct(&[
        field("Name", STRING, "6+").nullable("6+"),
        field("TopicId", Uuid, "6+"),
    ])), "6+"),
    field("TopicNames", Array(&STRING), "0-5"),
    field("TimeoutMs", Int32, "0+"),
]);

/// InitProducerIdRequest (api key 22).
#[rustfmt::skip]
const INIT_PRODUCER_ID: Message = Message::new("0-4", "2+", &[
    field("TransactionalId", STRING, "0+").nullable("0+"),
    field("TransactionTimeoutMs", Int32, "0+"),
    field("ProducerId", Int64, "3+"),
    field("ProducerEpoch", Int16, "3+"),
]);

/// OffsetForLeaderEpochRequest (api key 23).
#[rustfmt::skip]
const OFFSET_FOR_LEADER_EPOCH: Message = Message::new("2-4", "4+", &[
    field("ReplicaId", Int32, "3+"),
    field("Topics", Array(&Struct(&[
        field("Topic", STRING, "0+"),
        field("Partitions", Array(&Struct(&[
            field("Partition", Int32, "0+"),
            field("CurrentLeaderEpoch", Int32, "2+"),
            field("LeaderEpoch", Int32, "0+"),
        ])), "0+"),
    ])), "0+"),
]);

/// DescribeConfigsRequest (api key 32).
#[rustfmt::skip]
const DESCRIBE_CONFIGS: Message = Message::new("1-4", "4+", &[
    field("Resources", Array(&Struct(&[
        field("ResourceType", Int8, "0+"),
        field("ResourceName", STRING, "0+"),
        field("ConfigurationKeys", Array(&STRING), "0+").nullable("0+"),
    ])), "0+"),
    field("IncludeSynonyms", Bool, "1+"),
    field("IncludeDocumentation", Bool, "3+"),
]);

/// DeleteGroupsRequest (api key 42).
#[rustfmt::skip]
const DELETE_GROUPS: Message = Message::new("0-2", "2+", &[
    field("GroupsNames", Array(&STRING), "0+"),
]);
