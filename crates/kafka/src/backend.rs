//! The broker as the Kafka listener sees it. `node` implements [`Backend`] over its
//! transport-neutral broker core; the types here are plain Rust, so `node` needs no Kafka codec.
//!
//! Contract for implementers:
//! - Every method may be dropped before it completes (the client disconnected): it must leave
//!   no state behind that a completed call would not (spawn the work, or use drop guards).
//! - Group coordination (generations, rebalances, session and rebalance timeouts, static
//!   membership, native vs classic groups) lives behind the trait; this crate only translates.
//! - Errors are [`BackendError`]s; their Kafka codes are chosen in one place, `BackendError::code`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::BackendError;

/// Who asked, for logging and (later) authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// The client's `client.id`, if it sent one.
    pub client_id: Option<String>,
    /// The client's address.
    pub peer: SocketAddr,
    /// Kafka api key of the request.
    pub api_key: i16,
    /// Version of the request.
    pub api_version: i16,
}

/// A node as clients should reach it over Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub node_id: i32,
    /// Advertised Kafka host.
    pub host: String,
    /// Advertised Kafka port.
    pub port: i32,
    /// Rack, if configured.
    pub rack: Option<String>,
}

/// The cluster as a Metadata response shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Cluster id, if the cluster has one.
    pub cluster_id: Option<String>,
    /// Node id of the controller (metadata group leader), -1 when unknown.
    pub controller_id: i32,
    /// Every live node with its advertised Kafka address.
    pub brokers: Vec<BrokerInfo>,
    /// The requested topics (or all, internal ones included, when none were named).
    pub topics: Vec<TopicMetadata>,
}

/// One topic of [`ClusterMetadata`]. A named topic that does not exist is returned with
/// `error: Some(UnknownTopicOrPartition)` and no partitions (topics are never auto-created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Why the topic can't be described, if so.
    pub error: Option<BackendError>,
    /// True for `__consumer_offsets` and other internal topics.
    pub is_internal: bool,
    /// Partitions in index order.
    pub partitions: Vec<PartitionMetadata>,
}

/// One partition of a [`TopicMetadata`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Set when the partition has no leader (`LeaderNotAvailable`) and the like.
    pub error: Option<BackendError>,
    /// Node id of the leader, -1 when none.
    pub leader: i32,
    /// The leader's epoch (Raft term), -1 when unknown.
    pub leader_epoch: i32,
    /// Node ids of all replicas.
    pub replicas: Vec<i32>,
    /// Node ids of the in-sync replicas.
    pub isr: Vec<i32>,
    /// Replicas on nodes that are down.
    pub offline_replicas: Vec<i32>,
}

/// Kafka's `acks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: the client wants no response; the write is still attempted.
    None,
    /// acks=1: answer once the leader has the batch.
    Leader,
    /// acks=all (-1): answer once the batch is committed.
    All,
}

/// A successful produce to one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceOutcome {
    /// Offset given to the first record of the batch.
    pub base_offset: i64,
    /// Broker append time when the topic uses LogAppendTime, else -1.
    pub log_append_time_ms: i64,
    /// The partition's log start offset.
    pub log_start_offset: i64,
}

/// Read committed or uncommitted data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    /// Everything up to the high watermark.
    ReadUncommitted,
    /// Up to the last stable offset (equal to the high watermark without transactions).
    ReadCommitted,
}

/// One partition of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionRequest {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// First offset wanted.
    pub fetch_offset: i64,
    /// Leader epoch the client believes current, -1 when it does not say.
    pub current_leader_epoch: i32,
    /// Most record bytes wanted from this partition (but see [`Backend::fetch`]).
    pub partition_max_bytes: i32,
}

/// A whole Fetch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchParams {
    /// Partitions in request order.
    pub partitions: Vec<FetchPartitionRequest>,
    /// Longest wait for `min_bytes` to be available.
    pub max_wait: Duration,
    /// Answer as soon as this many record bytes are available.
    pub min_bytes: i32,
    /// Most record bytes in the whole response (but see [`Backend::fetch`]).
    pub max_bytes: i32,
    /// Which offsets are visible.
    pub isolation: IsolationLevel,
}

/// What one partition of a fetch returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPartition {
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset.
    pub last_stable_offset: i64,
    /// Log start offset.
    pub log_start_offset: i64,
    /// Whole record batches (Kafka RecordBatch v2), in offset order, no internal entries.
    /// Chunks are written one after another on the wire.
    pub records: Vec<Bytes>,
}

/// Which offset ListOffsets asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (or last stable offset under read committed).
    Latest,
    /// The first record whose timestamp is >= this (ms), exact inside compressed batches.
    Timestamp(i64),
}

/// The answer to ListOffsets for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset, -1 when no record has a timestamp >= the target.
    pub offset: i64,
    /// That record's timestamp, -1 for Earliest/Latest or when none.
    pub timestamp: i64,
    /// Leader epoch of the batch holding the offset, -1 when unknown.
    pub leader_epoch: i32,
}

/// The answer to OffsetForLeaderEpoch for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    /// The largest epoch <= the requested one.
    pub leader_epoch: i32,
    /// The end offset of that epoch.
    pub end_offset: i64,
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Partition count, -1 for the broker default.
    pub partitions: i32,
    /// Replication factor, -1 for the broker default.
    pub replication_factor: i16,
    /// Topic configs (`retention.ms`, ...); a `None` value means the default.
    pub configs: Vec<(String, Option<String>)>,
}

/// A topic as created (or as it would be, under validate-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTopic {
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i16,
    /// The topic's effective configuration.
    pub configs: Vec<ConfigEntry>,
}

/// The subject of DescribeConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    /// A topic by name.
    Topic(String),
    /// A node by id.
    Broker(i32),
}

/// Where a config value comes from (Kafka's `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    Topic,
    /// Set for this node at runtime.
    DynamicBroker,
    /// Set for all nodes at runtime.
    DynamicDefaultBroker,
    /// From the node's configuration file.
    StaticBroker,
    /// Built-in default.
    Default,
}

impl ConfigSource {
    /// Kafka's numeric value.
    pub fn code(self) -> i8 {
        match self {
            Self::Topic => 1,
            Self::DynamicBroker => 2,
            Self::DynamicDefaultBroker => 3,
            Self::StaticBroker => 4,
            Self::Default => 5,
        }
    }
}

/// One configuration entry, named as Kafka names it (`retention.ms`, `cleanup.policy`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Kafka's config name.
    pub name: String,
    /// The value, `None` when sensitive or unset.
    pub value: Option<String>,
    /// True when it can't be changed at runtime.
    pub read_only: bool,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// True for secrets (the value is then `None`).
    pub sensitive: bool,
}

/// An idempotent producer's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    /// Producer id; -1 in a request means "new producer".
    pub producer_id: i64,
    /// Producer epoch; -1 in a request means "new producer".
    pub producer_epoch: i16,
}

/// A protocol a joining member supports (for consumers: an assignor and its subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupProtocol {
    /// Protocol name (`range`, `cooperative-sticky`, ...).
    pub name: String,
    /// Opaque metadata, passed to the leader unread.
    pub metadata: Bytes,
}

/// A JoinGroup request of the classic protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroup {
    /// Group id.
    pub group_id: String,
    /// Member id, empty on a first join.
    pub member_id: String,
    /// `group.instance.id` for static membership.
    pub group_instance_id: Option<String>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's host (its address as this listener sees it).
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout (JoinGroup v0 has none: the session timeout is used).
    pub rebalance_timeout: Duration,
    /// `consumer` for consumers.
    pub protocol_type: String,
    /// Protocols in the member's order of preference.
    pub protocols: Vec<GroupProtocol>,
    /// True when an unknown member must first get a member id via `MemberIdRequired`
    /// (JoinGroup v4+ without `group.instance.id`, as Kafka does).
    pub require_known_member_id: bool,
    /// Why the member joins (v8+), for logs.
    pub reason: Option<String>,
}

/// A member as the group leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Its `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// The metadata of the group's chosen protocol, as the member sent it.
    pub metadata: Bytes,
}

/// A completed join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResult {
    /// The new generation.
    pub generation_id: i32,
    /// `consumer` for consumers.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// All members with metadata, for the leader only; empty for followers.
    pub members: Vec<JoinedMember>,
}

/// A SyncGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroup {
    /// Group id.
    pub group_id: String,
    /// The member's generation.
    pub generation_id: i32,
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// Protocol type the member expects (v5+), checked against the group's.
    pub protocol_type: Option<String>,
    /// Protocol name the member expects (v5+), checked against the group's.
    pub protocol_name: Option<String>,
    /// From the leader only: each member's assignment, opaque.
    pub assignments: Vec<(String, Bytes)>,
}

/// A completed sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupResult {
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The group's protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment, as the leader wrote it.
    pub assignment: Bytes,
}

/// A member leaving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingMember {
    /// Member id (may be empty for a static member identified by instance id).
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// Why it leaves, for logs.
    pub reason: Option<String>,
}

/// One partition of an OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOffset {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The committed offset (the next record to consume).
    pub offset: i64,
    /// Leader epoch of the last consumed record, -1 when unknown.
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: Option<String>,
}

/// An OffsetCommit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    /// Group id.
    pub group_id: String,
    /// Generation, -1 for a commit outside group management (admin tools, `assign()`).
    pub generation_id: i32,
    /// Member id, empty outside group management.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// Partitions in request order.
    pub offsets: Vec<CommitOffset>,
}

/// A committed offset as OffsetFetch returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The offset, -1 when none is committed.
    pub offset: i64,
    /// Leader epoch stored with it, -1 when unknown.
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: Option<String>,
    /// Per-partition error (e.g. `UnknownTopicOrPartition`).
    pub error: Option<BackendError>,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// Group id.
    pub group_id: String,
    /// `consumer` for consumer groups; empty for native Skein groups.
    pub protocol_type: String,
    /// State: `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable`, `Dead`.
    pub state: String,
    /// `classic` or `consumer` (native groups are reported as `consumer`).
    pub group_type: String,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// State, as in [`ListedGroup::state`].
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// The chosen protocol (assignor), empty when not stable.
    pub protocol: String,
    /// Members.
    pub members: Vec<GroupMemberDescription>,
}

/// One member of a [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberDescription {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The member's host.
    pub client_host: String,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
    /// Its current assignment.
    pub assignment: Bytes,
}

/// Shorthand for the futures the trait returns.
pub type BackendResult<T> = Result<T, BackendError>;

/// The broker behind the Kafka listener. Every method takes the [`RequestContext`] of the
/// request it serves.
pub trait Backend: Send + Sync + 'static {
    /// Brokers, controller and topics. `topics: None` means all topics, internal ones included.
    fn metadata(
        &self,
        ctx: &RequestContext,
        topics: Option<Vec<String>>,
    ) -> impl Future<Output = BackendResult<ClusterMetadata>> + Send;

    /// Appends `records` (one or more whole record batches, v2, as the client sent them) to a
    /// partition. Idempotent producers are deduplicated as on the gRPC path. Under `Acks::None`
    /// the result is only logged.
    fn produce(
        &self,
        ctx: &RequestContext,
        topic: String,
        partition: i32,
        records: Bytes,
        acks: Acks,
        timeout: Duration,
    ) -> impl Future<Output = BackendResult<ProduceOutcome>> + Send;

    /// Reads from several partitions, waiting up to `max_wait` until `min_bytes` are available.
    /// Returns one entry per requested partition, in request order. Returns whole batches only,
    /// never internal entries; respects `partition_max_bytes` and `max_bytes` except that the
    /// first partition with data returns at least its first batch even when it is larger, as
    /// Kafka does, so that a consumer always makes progress.
    fn fetch(
        &self,
        ctx: &RequestContext,
        params: FetchParams,
    ) -> impl Future<Output = Vec<BackendResult<FetchedPartition>>> + Send;

    /// Earliest, latest or by-timestamp offset of a partition.
    fn list_offsets(
        &self,
        ctx: &RequestContext,
        topic: String,
        partition: i32,
        spec: OffsetSpec,
        isolation: IsolationLevel,
    ) -> impl Future<Output = BackendResult<ListedOffset>> + Send;

    /// The end offset of `leader_epoch` (largest epoch <= it) on a partition.
    fn offset_for_leader_epoch(
        &self,
        ctx: &RequestContext,
        topic: String,
        partition: i32,
        current_leader_epoch: i32,
        leader_epoch: i32,
    ) -> impl Future<Output = BackendResult<EpochEndOffset>> + Send;

    /// Creates a topic, or only validates the request when `validate_only`.
    fn create_topic(
        &self,
        ctx: &RequestContext,
        topic: NewTopic,
        validate_only: bool,
        timeout: Duration,
    ) -> impl Future<Output = BackendResult<CreatedTopic>> + Send;

    /// Deletes a topic.
    fn delete_topic(
        &self,
        ctx: &RequestContext,
        name: String,
        timeout: Duration,
    ) -> impl Future<Output = BackendResult<()>> + Send;

    /// Configuration of a topic or node; `keys: None` means all.
    fn describe_configs(
        &self,
        ctx: &RequestContext,
        resource: ConfigResource,
        keys: Option<Vec<String>>,
    ) -> impl Future<Output = BackendResult<Vec<ConfigEntry>>> + Send;

    /// A producer id and epoch for an idempotent producer. `current` is the client's identity
    /// when it asks for an epoch bump (InitProducerId v3+), else -1/-1.
    fn init_producer_id(
        &self,
        ctx: &RequestContext,
        current: ProducerIdentity,
    ) -> impl Future<Output = BackendResult<ProducerIdentity>> + Send;

    /// The node coordinating `group_id`.
    fn find_coordinator(
        &self,
        ctx: &RequestContext,
        group_id: String,
    ) -> impl Future<Output = BackendResult<BrokerInfo>> + Send;

    /// Joins a classic group; completes when the rebalance does (or times out).
    fn join_group(
        &self,
        ctx: &RequestContext,
        join: JoinGroup,
    ) -> impl Future<Output = BackendResult<JoinGroupResult>> + Send;

    /// Syncs a classic group; the leader brings the assignments.
    fn sync_group(
        &self,
        ctx: &RequestContext,
        sync: SyncGroup,
    ) -> impl Future<Output = BackendResult<SyncGroupResult>> + Send;

    /// A member's heartbeat.
    fn heartbeat(
        &self,
        ctx: &RequestContext,
        group_id: String,
        generation_id: i32,
        member_id: String,
        group_instance_id: Option<String>,
    ) -> impl Future<Output = BackendResult<()>> + Send;

    /// Members leaving; one result per member, in request order.
    fn leave_group(
        &self,
        ctx: &RequestContext,
        group_id: String,
        members: Vec<LeavingMember>,
    ) -> impl Future<Output = BackendResult<Vec<BackendResult<()>>>> + Send;

    /// Commits offsets to `__consumer_offsets`; one result per partition, in request order.
    fn offset_commit(
        &self,
        ctx: &RequestContext,
        commit: OffsetCommit,
    ) -> impl Future<Output = BackendResult<Vec<BackendResult<()>>>> + Send;

    /// Committed offsets of a group: of the given partitions (one entry each, in order, offset -1
    /// when none), or of every partition with a commit when `partitions` is `None`.
    fn offset_fetch(
        &self,
        ctx: &RequestContext,
        group_id: String,
        partitions: Option<Vec<(String, i32)>>,
        require_stable: bool,
    ) -> impl Future<Output = BackendResult<Vec<CommittedOffset>>> + Send;

    /// All groups, optionally only those in one of `states` (empty: all).
    fn list_groups(
        &self,
        ctx: &RequestContext,
        states: Vec<String>,
    ) -> impl Future<Output = BackendResult<Vec<ListedGroup>>> + Send;

    /// One group's state and members; `GroupIdNotFound` when it does not exist.
    fn describe_group(
        &self,
        ctx: &RequestContext,
        group_id: String,
    ) -> impl Future<Output = BackendResult<GroupDescription>> + Send;

    /// Deletes an empty group and its offsets.
    fn delete_group(
        &self,
        ctx: &RequestContext,
        group_id: String,
    ) -> impl Future<Output = BackendResult<()>> + Send;
}
