//! The Kafka listener's backend: [`skein_kafka::Backend`] over the broker core, translation only.
//! [`backend_error`] is the one mapping from [`NodeError`] to Kafka's errors.
//!
//! Groups: Kafka's classic membership protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup:
//! client-side assignment) runs on the coordinator's classic state machine
//! (`groups/classic.rs`, via `core/classic.rs`); FindCoordinator, OffsetCommit / OffsetFetch,
//! ListGroups, DescribeGroups and DeleteGroups share the protocol-neutral half with native
//! groups (`core/groups.rs`).

use std::time::Duration;

use bytes::Bytes;
use skein_kafka::backend::{
    Acks, BackendResult, BrokerInfo, ClusterMetadata, CommittedOffset, ConfigEntry, ConfigResource,
    ConfigSource, CreatedTopic, EpochEndOffset, FetchParams, FetchedPartition, GroupDescription,
    GroupMemberDescription, IsolationLevel, JoinGroup, JoinGroupResult, JoinedMember,
    LeavingMember, ListedGroup, ListedOffset, NewTopic, OffsetCommit, OffsetSpec,
    PartitionMetadata, ProduceOutcome, ProducerIdentity, RequestContext, SyncGroup,
    SyncGroupResult, TopicMetadata,
};
use skein_kafka::{Backend, BackendError};

use crate::core::groups::{Committer, OffsetToCommit};
use crate::core::{
    split_batches, BrokerCore, ConfigValue, FetchPart, FetchSpec, OffsetQuery, TopicSpec, TopicView,
};
use crate::error::NodeError;
use crate::groups::assign::Strategy;
use crate::groups::classic::JoinRequest;

/// The broker core as the Kafka listener sees it.
#[derive(Debug, Clone)]
pub struct KafkaBackend {
    core: BrokerCore,
}

impl KafkaBackend {
    /// A backend over `core`.
    pub fn new(core: BrokerCore) -> Self {
        KafkaBackend { core }
    }
}

/// Maps the broker's error to Kafka's, in one place, exhaustively.
pub fn backend_error(e: &NodeError) -> BackendError {
    use skein_raft::Error as R;
    let node = |id: &u64| i32::try_from(*id).ok();
    match e {
        NodeError::Config(m) => BackendError::InvalidConfig(m.clone()),
        NodeError::Storage(s) => storage_error(s),
        NodeError::UnknownTopic { .. } | NodeError::UnknownPartition { .. } => {
            BackendError::UnknownTopicOrPartition
        }
        NodeError::InvalidTopicName { .. } => BackendError::InvalidTopic(e.to_string()),
        NodeError::TopicExists { .. } => BackendError::TopicAlreadyExists,
        NodeError::InvalidPartitions(m) => BackendError::InvalidPartitions(m.clone()),
        NodeError::InvalidReplicationFactor { .. } => {
            BackendError::InvalidReplicationFactor(e.to_string())
        }
        NodeError::InvalidTopicConfig { .. } => BackendError::InvalidConfig(e.to_string()),
        NodeError::NotLeader { leader } => BackendError::NotLeader {
            leader: leader.as_ref().and_then(|(id, _)| node(id)),
        },
        NodeError::LeaderNotAvailable { .. } | NodeError::NotReady(_) => {
            BackendError::LeaderNotAvailable
        }
        NodeError::Timeout { .. } => BackendError::RequestTimedOut,
        NodeError::InvalidRequest(m) => BackendError::InvalidRequest(m.clone()),
        // The gRPC API's refusal; the Kafka listener bounds frames itself (`kafka.frame_bytes_max`).
        NodeError::RequestTooLarge { .. } => BackendError::MessageTooLarge,
        NodeError::OutOfOrderSequence { .. } => BackendError::OutOfOrderSequence,
        NodeError::ProducerFenced { .. } => BackendError::InvalidProducerEpoch,
        NodeError::NotCoordinator { .. } => BackendError::NotCoordinator,
        NodeError::CoordinatorNotAvailable(_) => BackendError::CoordinatorNotAvailable,
        NodeError::RebalanceInProgress(_) => BackendError::RebalanceInProgress,
        NodeError::UnknownMember { .. } => BackendError::UnknownMemberId,
        NodeError::IllegalGeneration { .. } => BackendError::IllegalGeneration,
        NodeError::GroupNotEmpty { .. } => BackendError::NonEmptyGroup,
        NodeError::GroupNotFound(_) => BackendError::GroupIdNotFound,
        NodeError::InvalidGroupId(_) => BackendError::InvalidGroupId,
        NodeError::FencedInstanceId(_) => BackendError::FencedInstanceId,
        NodeError::InvalidSessionTimeout(_) => BackendError::InvalidSessionTimeout,
        NodeError::MemberIdRequired { member_id, .. } => BackendError::MemberIdRequired {
            member_id: member_id.clone(),
        },
        NodeError::InconsistentGroupProtocol { .. } => BackendError::InconsistentGroupProtocol,
        NodeError::GroupMaxSize { .. } => BackendError::GroupMaxSizeReached,
        NodeError::Raft(r) => match r {
            R::Storage(s) | R::InvalidBatch(s) => storage_error(s),
            R::NotDataBatch { .. } => BackendError::CorruptMessage,
            R::TransactionalBatch => BackendError::TransactionsUnsupported,
            R::NotLeader { leader, .. } => BackendError::NotLeader {
                leader: leader.as_ref().and_then(node),
            },
            R::OutOfOrderSequence { .. } => BackendError::OutOfOrderSequence,
            R::ProducerFenced { .. } => BackendError::InvalidProducerEpoch,
            R::Timeout(_) => BackendError::RequestTimedOut,
            R::Stopped { .. } | R::GroupNotFound(_) => BackendError::LeaderNotAvailable,
            R::InvalidConfig(m) => BackendError::InvalidConfig(m.clone()),
            R::Io { .. } => BackendError::Storage(e.to_string()),
            R::Raft { .. } | R::GroupExists(_) | R::Decode { .. } => {
                BackendError::Unknown(e.to_string())
            }
        },
        NodeError::Internal(m) => BackendError::Unknown(m.clone()),
    }
}

fn storage_error(s: &skein_storage::StorageError) -> BackendError {
    use skein_storage::StorageError as S;
    match s {
        S::Record(_) => BackendError::CorruptMessage,
        S::BatchTooLarge { .. } => BackendError::MessageTooLarge,
        S::OffsetOutOfRange { .. } | S::IndexOutOfRange { .. } => BackendError::OffsetOutOfRange,
        S::InvalidConfig(m) => BackendError::InvalidConfig(m.clone()),
        S::NonContiguousIndex { .. }
        | S::TermRegression { .. }
        | S::TermTooLarge { .. }
        | S::Io { .. }
        | S::Poisoned { .. }
        | S::CorruptBatch { .. }
        | S::SegmentGap { .. }
        | S::LostBaseIndex { .. }
        | S::FormatMismatch { .. } => BackendError::Storage(s.to_string()),
    }
}

fn err(e: NodeError) -> BackendError {
    backend_error(&e)
}

/// A partition index from Kafka's i32 (negative ones do not exist).
fn partition_index(p: i32) -> BackendResult<u32> {
    u32::try_from(p).map_err(|_| BackendError::UnknownTopicOrPartition)
}

/// A node id in Kafka's i32 (Skein's ids are u64 from 1; larger ones cannot be named).
fn kafka_id(id: u64) -> i32 {
    i32::try_from(id).unwrap_or(-1)
}

/// `HOST:PORT` split for a Metadata response; `None` when malformed.
fn host_port(addr: &str) -> Option<(String, i32)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), port.parse::<u16>().ok()?.into()))
}

fn partition_metadata(t: &TopicView) -> Vec<PartitionMetadata> {
    t.partitions
        .iter()
        .map(|p| {
            let replicas: Vec<i32> = p.replicas.iter().map(|r| kafka_id(*r)).collect();
            // Replication progress is known on the leader only; elsewhere the leader alone is
            // known to be in sync.
            let isr = match (p.in_sync.is_empty(), p.leader) {
                (false, _) => p.in_sync.iter().map(|r| kafka_id(*r)).collect(),
                (true, 0) => Vec::new(),
                (true, leader) => vec![kafka_id(leader)],
            };
            PartitionMetadata {
                partition: p.partition as i32,
                error: (p.leader == 0).then_some(BackendError::LeaderNotAvailable),
                leader: if p.leader == 0 {
                    -1
                } else {
                    kafka_id(p.leader)
                },
                leader_epoch: i32::try_from(p.leader_term).unwrap_or(-1),
                replicas,
                isr,
                offline_replicas: Vec::new(),
            }
        })
        .collect()
}

fn config_entry(v: ConfigValue, broker: bool) -> ConfigEntry {
    ConfigEntry {
        name: v.name,
        value: Some(v.value),
        read_only: broker,
        source: match (v.overridden, broker) {
            (true, _) => ConfigSource::Topic,
            (false, true) => ConfigSource::StaticBroker,
            (false, false) => ConfigSource::Default,
        },
        sensitive: false,
    }
}

/// Kafka's name of an assignor.
fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::Range => "range",
        Strategy::RoundRobin => "roundrobin",
        Strategy::CooperativeSticky => "cooperative-sticky",
    }
}

impl KafkaBackend {
    fn brokers(&self) -> Vec<BrokerInfo> {
        self.core
            .cluster()
            .nodes
            .into_iter()
            .filter_map(|n| {
                let (host, port) = host_port(&n.kafka_addr)?;
                Some(BrokerInfo {
                    node_id: kafka_id(n.id),
                    host,
                    port,
                    rack: None,
                })
            })
            .collect()
    }

    fn topic_metadata(&self, name: String) -> TopicMetadata {
        match self.core.topic(&name) {
            Ok(t) => TopicMetadata {
                is_internal: name == crate::groups::OFFSETS_TOPIC,
                partitions: partition_metadata(&t),
                error: None,
                name,
            },
            Err(e) => TopicMetadata {
                name,
                error: Some(err(e)),
                is_internal: false,
                partitions: Vec::new(),
            },
        }
    }
}

impl Backend for KafkaBackend {
    async fn metadata(
        &self,
        _ctx: &RequestContext,
        topics: Option<Vec<String>>,
    ) -> BackendResult<ClusterMetadata> {
        let cluster = self.core.cluster();
        let names = topics.unwrap_or_else(|| self.core.topic_names());
        Ok(ClusterMetadata {
            cluster_id: Some(cluster.cluster_id),
            controller_id: if cluster.controller_id == 0 {
                -1
            } else {
                kafka_id(cluster.controller_id)
            },
            brokers: self.brokers(),
            topics: names.into_iter().map(|n| self.topic_metadata(n)).collect(),
        })
    }

    async fn produce(
        &self,
        _ctx: &RequestContext,
        topic: String,
        partition: i32,
        records: Bytes,
        _acks: Acks,
        timeout: Duration,
    ) -> BackendResult<ProduceOutcome> {
        // Every acks level is answered at the Raft commit (docs/ARCHITECTURE.md, Decisions).
        let partition = partition_index(partition)?;
        let batches = split_batches(&records).map_err(err)?;
        let timeout = self
            .core
            .produce_timeout(Some(timeout).filter(|t| !t.is_zero()));
        let mut results = self
            .core
            .produce(vec![(topic, partition, batches)], timeout)
            .await
            .map_err(err)?;
        let r = results.pop().unwrap_or_default();
        if let Some(e) = r.error {
            return Err(err(e));
        }
        let base_offset = r.base_offsets.first().copied().ok_or_else(|| {
            BackendError::InvalidRequest("a produce request without record batches".into())
        })?;
        Ok(ProduceOutcome {
            base_offset: base_offset as i64,
            log_append_time_ms: -1,
            log_start_offset: -1,
        })
    }

    async fn fetch(
        &self,
        _ctx: &RequestContext,
        params: FetchParams,
    ) -> Vec<BackendResult<FetchedPartition>> {
        let n = params.partitions.len();
        let mut parts = Vec::with_capacity(n);
        let mut invalid = vec![None; n];
        for (i, p) in params.partitions.iter().enumerate() {
            match (u32::try_from(p.partition), u64::try_from(p.fetch_offset)) {
                (Ok(partition), Ok(offset)) => parts.push(FetchPart {
                    topic: p.topic.clone(),
                    partition,
                    offset,
                    max_bytes: u32::try_from(p.partition_max_bytes).unwrap_or(0).max(1),
                }),
                (Err(_), _) => invalid[i] = Some(BackendError::UnknownTopicOrPartition),
                (_, Err(_)) => invalid[i] = Some(BackendError::OffsetOutOfRange),
            }
        }
        let spec = FetchSpec {
            partitions: parts,
            max_bytes: u32::try_from(params.max_bytes).unwrap_or(0).max(1),
            max_wait: params.max_wait,
            min_bytes: u32::try_from(params.min_bytes).unwrap_or(0),
        };
        let mut results = match self.core.fetch(&spec).await {
            Ok(r) => r.into_iter(),
            Err(e) => return vec![Err(err(e)); n],
        };
        invalid
            .into_iter()
            .map(|bad| match bad {
                Some(e) => Err(e),
                None => match results.next() {
                    Some(Ok(f)) => Ok(FetchedPartition {
                        high_watermark: f.high_watermark as i64,
                        last_stable_offset: f.high_watermark as i64,
                        log_start_offset: f.log_start_offset as i64,
                        records: vec![f.records],
                    }),
                    Some(Err(e)) => Err(err(e)),
                    None => Err(BackendError::Unknown("fetch result missing".into())),
                },
            })
            .collect()
    }

    async fn list_offsets(
        &self,
        _ctx: &RequestContext,
        topic: String,
        partition: i32,
        spec: OffsetSpec,
        _isolation: IsolationLevel,
    ) -> BackendResult<ListedOffset> {
        // Without transactions the last stable offset is the high watermark.
        let query = match spec {
            OffsetSpec::Earliest => OffsetQuery::Earliest,
            OffsetSpec::Latest => OffsetQuery::Latest,
            OffsetSpec::Timestamp(ts) => OffsetQuery::Timestamp(ts),
        };
        let a = self
            .core
            .list_offset(&topic, partition_index(partition)?, query)
            .await
            .map_err(err)?;
        Ok(ListedOffset {
            offset: a.offset.map_or(-1, |o| o as i64),
            timestamp: a.found.map_or(-1, |(ts, _)| ts),
            leader_epoch: a.found.map_or(-1, |(_, epoch)| epoch),
        })
    }

    async fn offset_for_leader_epoch(
        &self,
        _ctx: &RequestContext,
        topic: String,
        partition: i32,
        _current_leader_epoch: i32,
        leader_epoch: i32,
    ) -> BackendResult<EpochEndOffset> {
        let (epoch, end) = self
            .core
            .epoch_end_offset(&topic, partition_index(partition)?, leader_epoch)
            .await
            .map_err(err)?;
        Ok(EpochEndOffset {
            leader_epoch: epoch,
            end_offset: end as i64,
        })
    }

    async fn create_topic(
        &self,
        _ctx: &RequestContext,
        topic: NewTopic,
        validate_only: bool,
        _timeout: Duration,
    ) -> BackendResult<CreatedTopic> {
        let count = |v: i64, what: &str| -> BackendResult<Option<u32>> {
            match v {
                -1 => Ok(None),
                v => u32::try_from(v).map(Some).map_err(|_| {
                    BackendError::InvalidRequest(format!("{what} {v} is not a count"))
                }),
            }
        };
        let partitions = count(topic.partitions.into(), "partitions")?;
        let replication_factor = count(topic.replication_factor.into(), "replication factor")?;
        let spec = TopicSpec {
            name: topic.name.clone(),
            partitions,
            replication_factor,
            // A `None` value means the default: leave it out.
            configs: topic
                .configs
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
        };
        let t = self
            .core
            .create_topic(spec, validate_only)
            .await
            .map_err(err)?;
        let configs = if validate_only {
            Vec::new()
        } else {
            self.core.topic_configs(&topic.name).map_err(err)?
        };
        Ok(CreatedTopic {
            partitions: t.partitions.len() as i32,
            replication_factor: i16::try_from(t.replication_factor).unwrap_or(i16::MAX),
            configs: configs
                .into_iter()
                .map(|c| config_entry(c, false))
                .collect(),
        })
    }

    async fn delete_topic(
        &self,
        _ctx: &RequestContext,
        name: String,
        _timeout: Duration,
    ) -> BackendResult<()> {
        self.core.delete_topic(&name).await.map_err(err)
    }

    async fn describe_configs(
        &self,
        _ctx: &RequestContext,
        resource: ConfigResource,
        keys: Option<Vec<String>>,
    ) -> BackendResult<Vec<ConfigEntry>> {
        let (values, broker) = match resource {
            ConfigResource::Topic(name) => (self.core.topic_configs(&name).map_err(err)?, false),
            ConfigResource::Broker(id) if i64::from(id) == self.core.node_id() as i64 => {
                (self.core.node_configs(), true)
            }
            ConfigResource::Broker(id) => {
                return Err(BackendError::InvalidRequest(format!(
                    "node {id}'s configuration is described by node {id} itself"
                )))
            }
        };
        // No keys, or an empty list of keys, means all.
        let keys = keys.filter(|k| !k.is_empty());
        Ok(values
            .into_iter()
            .filter(|v| keys.as_ref().is_none_or(|k| k.contains(&v.name)))
            .map(|v| config_entry(v, broker))
            .collect())
    }

    async fn init_producer_id(
        &self,
        _ctx: &RequestContext,
        _current: ProducerIdentity,
    ) -> BackendResult<ProducerIdentity> {
        // A new id at epoch 0 also answers an epoch bump: the producer's old id is then unused.
        let producer_id = self.core.init_producer_id().await.map_err(err)?;
        Ok(ProducerIdentity {
            producer_id,
            producer_epoch: 0,
        })
    }

    async fn find_coordinator(
        &self,
        _ctx: &RequestContext,
        group_id: String,
    ) -> BackendResult<BrokerInfo> {
        let node = self.core.find_coordinator(&group_id).await.map_err(err)?;
        self.brokers()
            .into_iter()
            .find(|b| i64::from(b.node_id) == node as i64)
            .ok_or(BackendError::CoordinatorNotAvailable)
    }

    async fn join_group(
        &self,
        _ctx: &RequestContext,
        join: JoinGroup,
    ) -> BackendResult<JoinGroupResult> {
        let req = JoinRequest {
            member_id: join.member_id,
            instance_id: join.group_instance_id,
            client_id: join.client_id,
            client_host: join.client_host,
            session_timeout: join.session_timeout,
            rebalance_timeout: join.rebalance_timeout,
            protocol_type: join.protocol_type,
            protocols: join
                .protocols
                .into_iter()
                .map(|p| (p.name, p.metadata))
                .collect(),
            require_known_member_id: join.require_known_member_id,
        };
        let j = self
            .core
            .classic_join(&join.group_id, req)
            .await
            .map_err(err)?;
        Ok(JoinGroupResult {
            generation_id: j.generation,
            protocol_type: Some(j.protocol_type),
            protocol_name: Some(j.protocol),
            leader: j.leader,
            member_id: j.member_id,
            members: j
                .members
                .into_iter()
                .map(|(member_id, group_instance_id, metadata)| JoinedMember {
                    member_id,
                    group_instance_id,
                    metadata,
                })
                .collect(),
        })
    }

    async fn sync_group(
        &self,
        _ctx: &RequestContext,
        sync: SyncGroup,
    ) -> BackendResult<SyncGroupResult> {
        let r = self
            .core
            .classic_sync(
                &sync.group_id,
                &sync.member_id,
                sync.group_instance_id.as_deref(),
                sync.generation_id,
                sync.assignments,
            )
            .await
            .map_err(err)?;
        // SyncGroup v5+ names the protocol the member expects: it must be the group's.
        let differs = |asked: &Option<String>, actual: &String| {
            asked.as_ref().is_some_and(|a| !a.is_empty() && a != actual)
        };
        if differs(&sync.protocol_type, &r.protocol_type)
            || differs(&sync.protocol_name, &r.protocol)
        {
            return Err(BackendError::InconsistentGroupProtocol);
        }
        Ok(SyncGroupResult {
            protocol_type: Some(r.protocol_type),
            protocol_name: Some(r.protocol),
            assignment: r.assignment,
        })
    }

    async fn heartbeat(
        &self,
        _ctx: &RequestContext,
        group_id: String,
        generation_id: i32,
        member_id: String,
        group_instance_id: Option<String>,
    ) -> BackendResult<()> {
        self.core
            .classic_heartbeat(
                &group_id,
                &member_id,
                group_instance_id.as_deref(),
                generation_id,
            )
            .await
            .map_err(err)
    }

    async fn leave_group(
        &self,
        _ctx: &RequestContext,
        group_id: String,
        members: Vec<LeavingMember>,
    ) -> BackendResult<Vec<BackendResult<()>>> {
        let members = members
            .into_iter()
            .map(|m| (m.member_id, m.group_instance_id))
            .collect();
        let results = self
            .core
            .classic_leave(&group_id, members)
            .await
            .map_err(err)?;
        Ok(results.into_iter().map(|r| r.map_err(err)).collect())
    }

    async fn offset_commit(
        &self,
        _ctx: &RequestContext,
        commit: OffsetCommit,
    ) -> BackendResult<Vec<BackendResult<()>>> {
        // A member's commit is checked against its group's generation (classic or native);
        // generation -1 with no member id is a commit outside group management.
        let committer = match (commit.generation_id, commit.member_id.is_empty()) {
            (-1, true) => Committer::Standalone,
            (generation, _) => Committer::Member {
                member_id: commit.member_id,
                generation: u64::try_from(generation)
                    .map_err(|_| BackendError::IllegalGeneration)?,
            },
        };
        let mut results: Vec<Option<BackendResult<()>>> = Vec::new();
        let mut offsets = Vec::new();
        for o in commit.offsets {
            match (u32::try_from(o.partition), u64::try_from(o.offset)) {
                (Ok(partition), Ok(offset)) => {
                    results.push(None);
                    offsets.push(OffsetToCommit {
                        topic: o.topic,
                        partition,
                        offset,
                        metadata: o.metadata.unwrap_or_default(),
                    });
                }
                (Err(_), _) => results.push(Some(Err(BackendError::UnknownTopicOrPartition))),
                (_, Err(_)) => results.push(Some(Err(BackendError::InvalidRequest(format!(
                    "offset {} cannot be committed",
                    o.offset
                ))))),
            }
        }
        let committed = self
            .core
            .commit_offsets(&commit.group_id, committer, offsets)
            .await
            .map_err(err)?;
        let mut committed = committed.into_iter();
        Ok(results
            .into_iter()
            .map(|r| match r {
                Some(bad) => bad,
                None => match committed.next() {
                    Some(r) => r.map_err(err),
                    None => Err(BackendError::Unknown("commit result missing".into())),
                },
            })
            .collect())
    }

    async fn offset_fetch(
        &self,
        _ctx: &RequestContext,
        group_id: String,
        partitions: Option<Vec<(String, i32)>>,
        _require_stable: bool,
    ) -> BackendResult<Vec<CommittedOffset>> {
        // Without transactions every committed offset is stable.
        let tps = partitions.map(|ps| {
            ps.into_iter()
                .filter_map(|(t, p)| Some((t, u32::try_from(p).ok()?)))
                .collect()
        });
        let found = self.core.fetch_offsets(&group_id, tps).await.map_err(err)?;
        Ok(found
            .into_iter()
            .map(|c| CommittedOffset {
                topic: c.topic,
                partition: c.partition as i32,
                offset: c.offset.map_or(-1, |o| o as i64),
                leader_epoch: -1,
                metadata: Some(c.metadata),
                error: None,
            })
            .collect())
    }

    async fn list_groups(
        &self,
        _ctx: &RequestContext,
        states: Vec<String>,
    ) -> BackendResult<Vec<ListedGroup>> {
        let groups = self.core.list_groups(false).await.map_err(err)?;
        Ok(groups
            .into_iter()
            .filter(|g| {
                states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(&g.state))
            })
            .map(|g| ListedGroup {
                group_id: g.group,
                // Native Skein groups (server-side assignment) have no Kafka protocol type.
                group_type: if g.protocol_type.is_empty() {
                    "consumer".into()
                } else {
                    "classic".into()
                },
                protocol_type: g.protocol_type,
                state: g.state,
            })
            .collect())
    }

    async fn describe_group(
        &self,
        _ctx: &RequestContext,
        group_id: String,
    ) -> BackendResult<GroupDescription> {
        let g = self.core.describe_group(&group_id).await.map_err(err)?;
        let (protocol_type, protocol) = match g.protocol {
            (t, p) if !t.is_empty() => (t, p),
            _ => (String::new(), g.strategy.map_or("", strategy_name).into()),
        };
        Ok(GroupDescription {
            state: g.state,
            protocol_type,
            protocol,
            // Native members carry no Kafka subscription or assignment bytes (empty here).
            members: g
                .members
                .into_iter()
                .map(|m| GroupMemberDescription {
                    member_id: m.member_id,
                    group_instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    metadata: m.metadata,
                    assignment: m.assignment_bytes,
                })
                .collect(),
        })
    }

    async fn delete_group(&self, _ctx: &RequestContext, group_id: String) -> BackendResult<()> {
        self.core.delete_group(&group_id).await.map_err(err)
    }
}
