//! The metadata group: the cluster's state (nodes, topics, partition assignments, configs),
//! replicated by its own Raft group over the same log machinery as partitions. A command is a
//! data batch of one record whose value is the postcard-encoded [`MetaCommand`].

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use skein_record::BatchBuilder;

use crate::error::Result;
use crate::group::Group;
use crate::state_machine::Applier;
use crate::types::{decode, encode, GroupId, LogId, MetaResponse, MetaTypes, NodeId, RecordBatch};

/// A node of the cluster as the metadata knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Peer (Raft) address.
    pub peer_addr: String,
    /// Client API address.
    pub client_addr: String,
    /// Advertised Kafka listener address (`HOST:PORT`); empty when the node has no Kafka
    /// listener.
    #[serde(default)]
    pub kafka_addr: String,
}

/// Where one partition lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    /// The partition's Raft group.
    pub group: GroupId,
    /// Nodes holding a replica.
    pub replicas: Vec<NodeId>,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// Partitions in order (partition `i` is `partitions[i]`).
    pub partitions: Vec<PartitionAssignment>,
    /// Topic-level configuration overrides.
    pub configs: BTreeMap<String, String>,
}

/// A change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Adds or updates a node.
    RegisterNode {
        /// Its id.
        id: NodeId,
        /// Its addresses.
        info: NodeInfo,
    },
    /// Creates a topic; partition `i` is replicated on `replicas[i]`.
    CreateTopic {
        /// Topic name.
        name: String,
        /// Replica nodes of each partition.
        replicas: Vec<Vec<NodeId>>,
        /// Configuration overrides.
        configs: BTreeMap<String, String>,
    },
    /// Deletes a topic.
    DeleteTopic {
        /// Topic name.
        name: String,
    },
    /// Records that `leader` leads partition group `group` in `term` (a hint for clients of
    /// nodes without a replica; ignored unless `term` is newer than the one recorded).
    SetLeader {
        /// The partition group.
        group: GroupId,
        /// The leader.
        leader: NodeId,
        /// Its term.
        term: u64,
    },
    /// Allocates `count` cluster-unique idempotent-producer ids.
    AllocateProducerIds {
        /// How many.
        count: u32,
    },
    /// Sets configuration overrides of a topic (each key given replaces its value; other keys
    /// stay). The values are validated before the command is proposed.
    AlterTopicConfig {
        /// Topic name.
        name: String,
        /// The overrides to set.
        configs: BTreeMap<String, String>,
    },
    /// Records the leaders of several partition groups at once, each entry as
    /// [`MetaCommand::SetLeader`] does: recorded when its term is newer than the one recorded,
    /// ignored when its group is unknown. From 1 to [`MetaCommand::LEADERS_PER_COMMAND_MAX`]
    /// entries. (Appended last: the variants' order is their encoding in existing logs.)
    SetLeaders {
        /// `(group, leader, term)` of each partition group.
        leaders: Vec<(GroupId, NodeId, u64)>,
    },
}

/// What applying a [`MetaCommand`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaOutcome {
    /// Done.
    Ok,
    /// The topic was created with these partition groups.
    TopicCreated {
        /// Group id of each partition.
        groups: Vec<GroupId>,
    },
    /// Producer ids `first .. first + count` are allocated.
    ProducerIds {
        /// The first id.
        first: i64,
    },
    /// A topic with this name exists.
    TopicExists,
    /// No topic with this name exists.
    UnknownTopic,
    /// The entry did not hold a decodable command.
    Invalid,
    /// The command breaks a rule of the metadata ([`MetaCommand::validate`]) and changed
    /// nothing.
    Refused {
        /// Which rule, for people.
        reason: String,
    },
}

/// The cluster metadata: the metadata group's applied state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClusterMetadata {
    /// Nodes by id.
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicInfo>,
    /// The group id the next partition gets (partition groups start at 1; the metadata group
    /// uses [`METADATA_GROUP_ID`]).
    pub next_group: GroupId,
    /// Commands applied so far.
    pub commands_applied: u64,
    /// Last known leader and its term of each partition group.
    pub leaders: BTreeMap<GroupId, (NodeId, u64)>,
    /// The next idempotent-producer id to hand out.
    pub next_producer_id: i64,
}

/// Group id of the metadata group.
pub const METADATA_GROUP_ID: GroupId = 0;

/// The topic of consumer groups' committed offsets: created by the nodes, never deleted.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Longest topic name (Kafka's limit).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Most partitions of one topic.
pub const TOPIC_PARTITIONS_MAX: usize = 10_000;
/// Most replicas of one partition.
pub const REPLICATION_FACTOR_MAX: usize = 16;
/// Most configuration overrides of one topic, and the longest key and value.
pub const TOPIC_CONFIGS_MAX: usize = 64;
/// Longest configuration key or value of a topic.
pub const TOPIC_CONFIG_BYTES_MAX: usize = 1024;
/// Most nodes in the metadata.
pub const NODES_MAX: usize = 1024;
/// Longest node address (`HOST:PORT`).
pub const ADDR_BYTES_MAX: usize = 255;
/// Most producer ids allocated by one command.
pub const PRODUCER_IDS_ALLOCATION_MAX: u32 = 1000;

impl MetaCommand {
    /// Most entries of one [`MetaCommand::SetLeaders`]; a larger report is split.
    pub const LEADERS_PER_COMMAND_MAX: usize = 1000;

    /// Checks the command against the rules of the metadata `m` it would apply to: names and
    /// addresses well formed, counts within limits, replicas on registered nodes, a leader among
    /// its partition's replicas, a node's peer address fixed once registered and owned by one
    /// node. Deterministic: every replica refuses the same commands.
    pub fn validate(&self, m: &ClusterMetadata) -> std::result::Result<(), String> {
        match self {
            MetaCommand::RegisterNode { id, info } => validate_node(m, *id, info),
            MetaCommand::CreateTopic {
                name,
                replicas,
                configs,
            } => {
                validate_topic_name(name)?;
                validate_replicas(m, replicas)?;
                validate_configs(configs)
            }
            MetaCommand::DeleteTopic { name } => {
                validate_topic_name(name)?;
                if name == OFFSETS_TOPIC {
                    return Err(format!("{OFFSETS_TOPIC} cannot be deleted"));
                }
                Ok(())
            }
            MetaCommand::SetLeader {
                group,
                leader,
                term,
            } => validate_leaders(m, &[(*group, *leader, *term)]),
            MetaCommand::SetLeaders { leaders } => {
                if leaders.is_empty() || leaders.len() > Self::LEADERS_PER_COMMAND_MAX {
                    return Err(format!(
                        "{} leaders in one command; from 1 to {}",
                        leaders.len(),
                        Self::LEADERS_PER_COMMAND_MAX
                    ));
                }
                validate_leaders(m, leaders)
            }
            MetaCommand::AllocateProducerIds { count } => {
                if *count == 0 || *count > PRODUCER_IDS_ALLOCATION_MAX {
                    return Err(format!(
                        "allocate from 1 to {PRODUCER_IDS_ALLOCATION_MAX} producer ids, not {count}"
                    ));
                }
                if m.next_producer_id
                    .max(1)
                    .checked_add(i64::from(*count))
                    .is_none()
                {
                    return Err("producer ids are exhausted".into());
                }
                Ok(())
            }
            MetaCommand::AlterTopicConfig { name, configs } => {
                validate_topic_name(name)?;
                if name == OFFSETS_TOPIC {
                    return Err(format!("{OFFSETS_TOPIC}'s settings cannot be changed"));
                }
                // A missing topic is answered UnknownTopic when applied.
                let mut merged = m
                    .topics
                    .get(name)
                    .map(|t| t.configs.clone())
                    .unwrap_or_default();
                merged.extend(configs.iter().map(|(k, v)| (k.clone(), v.clone())));
                validate_configs(&merged)
            }
        }
    }
}

/// Each leader holds a replica of its partition group, in a term of at least 1. Groups the
/// metadata does not know (a topic deleted meanwhile) are harmless: ignored when applied.
fn validate_leaders(
    m: &ClusterMetadata,
    leaders: &[(GroupId, NodeId, u64)],
) -> std::result::Result<(), String> {
    let replicas = replicas_of(&m.topics, leaders.iter().map(|(g, _, _)| *g));
    for (group, leader, term) in leaders {
        let Some(r) = replicas.get(group) else {
            continue;
        };
        if *term == 0 {
            return Err(format!(
                "a leader's term is at least 1 (partition group {group})"
            ));
        }
        if !r.contains(leader) {
            return Err(format!(
                "node {leader} holds no replica of partition group {group}"
            ));
        }
    }
    Ok(())
}

/// The replicas of each of `groups` that a topic has, found in one pass over the partitions.
fn replicas_of(
    topics: &BTreeMap<String, TopicInfo>,
    groups: impl Iterator<Item = GroupId>,
) -> BTreeMap<GroupId, &[NodeId]> {
    let wanted: BTreeSet<GroupId> = groups.collect();
    let mut found = BTreeMap::new();
    for p in topics.values().flat_map(|t| t.partitions.iter()) {
        if found.len() == wanted.len() {
            break;
        }
        if wanted.contains(&p.group) {
            found.insert(p.group, p.replicas.as_slice());
        }
    }
    found
}

/// Records `leader` of `group` in `term` unless a term at least as new is recorded.
fn record_leader(
    leaders: &mut BTreeMap<GroupId, (NodeId, u64)>,
    group: GroupId,
    leader: NodeId,
    term: u64,
) {
    if leaders.get(&group).is_none_or(|(_, t)| term > *t) {
        leaders.insert(group, (leader, term));
    }
}

fn validate_topic_name(name: &str) -> std::result::Result<(), String> {
    let shown: String = name.chars().take(64).collect();
    if name.is_empty() || name == "." || name == ".." || name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!(
            "topic name `{shown}` is empty, `.`, `..` or longer than {TOPIC_NAME_BYTES_MAX}"
        ));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "topic name `{shown}` has characters other than letters, digits, `.`, `_`, `-`"
        ));
    }
    Ok(())
}

fn validate_replicas(
    m: &ClusterMetadata,
    replicas: &[Vec<NodeId>],
) -> std::result::Result<(), String> {
    if replicas.is_empty() || replicas.len() > TOPIC_PARTITIONS_MAX {
        return Err(format!(
            "{} partitions; a topic has from 1 to {TOPIC_PARTITIONS_MAX}",
            replicas.len()
        ));
    }
    let rf = replicas[0].len();
    if rf == 0 || rf > REPLICATION_FACTOR_MAX {
        return Err(format!(
            "replication factor {rf}; from 1 to {REPLICATION_FACTOR_MAX}"
        ));
    }
    for (i, r) in replicas.iter().enumerate() {
        if r.len() != rf {
            return Err(format!(
                "partition {i} has {} replicas, partition 0 has {rf}",
                r.len()
            ));
        }
        for (j, n) in r.iter().enumerate() {
            if !m.nodes.contains_key(n) {
                return Err(format!("partition {i}: node {n} is not registered"));
            }
            if r[..j].contains(n) {
                return Err(format!("partition {i}: node {n} is named twice"));
            }
        }
    }
    Ok(())
}

fn validate_configs(configs: &BTreeMap<String, String>) -> std::result::Result<(), String> {
    if configs.len() > TOPIC_CONFIGS_MAX {
        return Err(format!(
            "{} configuration overrides; at most {TOPIC_CONFIGS_MAX}",
            configs.len()
        ));
    }
    if configs.iter().any(|(k, v)| {
        k.is_empty() || k.len() > TOPIC_CONFIG_BYTES_MAX || v.len() > TOPIC_CONFIG_BYTES_MAX
    }) {
        return Err(format!(
            "a configuration key is empty, or a key or value is longer than {TOPIC_CONFIG_BYTES_MAX}"
        ));
    }
    Ok(())
}

fn validate_node(
    m: &ClusterMetadata,
    id: NodeId,
    info: &NodeInfo,
) -> std::result::Result<(), String> {
    if id == 0 {
        return Err("node ids start at 1".into());
    }
    validate_addr("peer", &info.peer_addr)?;
    validate_addr("client", &info.client_addr)?;
    if !info.kafka_addr.is_empty() {
        validate_addr("Kafka", &info.kafka_addr)?;
    }
    match m.nodes.get(&id) {
        Some(known) if known.peer_addr != info.peer_addr => {
            return Err(format!(
                "node {id} is registered with peer address {}; a node's peer address is its \
                 identity in the Raft groups and cannot change",
                known.peer_addr
            ))
        }
        Some(_) => {}
        None if m.nodes.len() >= NODES_MAX => {
            return Err(format!(
                "the cluster has {NODES_MAX} nodes, the most it can have"
            ))
        }
        None => {}
    }
    if let Some((other, _)) = m
        .nodes
        .iter()
        .find(|(n, known)| **n != id && known.peer_addr == info.peer_addr)
    {
        return Err(format!(
            "peer address {} belongs to node {other}",
            info.peer_addr
        ));
    }
    Ok(())
}

/// `HOST:PORT` with a port from 1 to 65535 and a host of letters, digits, `.`, `-`, `_`, or an
/// IPv6 address in brackets.
fn validate_addr(what: &str, addr: &str) -> std::result::Result<(), String> {
    let shown: String = addr.chars().take(64).collect();
    let bad = || Err(format!("{what} address `{shown}` is not HOST:PORT"));
    if addr.len() > ADDR_BYTES_MAX {
        return bad();
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return bad();
    };
    if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
        return bad();
    }
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        }
    };
    if !host_ok {
        return bad();
    }
    Ok(())
}

impl ClusterMetadata {
    /// A stable id of the cluster: derived from the lowest node id and its peer address, which
    /// the first registration fixes.
    pub fn cluster_id(&self) -> String {
        match self.nodes.iter().next() {
            Some((id, n)) => {
                let h = crc32fast::hash(format!("{id}@{}", n.peer_addr).as_bytes());
                format!("skein-{h:08x}")
            }
            None => String::new(),
        }
    }

    fn execute(&mut self, cmd: MetaCommand) -> MetaOutcome {
        if let Err(reason) = cmd.validate(self) {
            return MetaOutcome::Refused { reason };
        }
        match cmd {
            MetaCommand::RegisterNode { id, info } => {
                self.nodes.insert(id, info);
                MetaOutcome::Ok
            }
            MetaCommand::CreateTopic {
                name,
                replicas,
                configs,
            } => {
                if self.topics.contains_key(&name) {
                    return MetaOutcome::TopicExists;
                }
                let mut groups = Vec::with_capacity(replicas.len());
                let partitions = replicas
                    .into_iter()
                    .map(|replicas| {
                        self.next_group = self.next_group.max(METADATA_GROUP_ID + 1);
                        let group = self.next_group;
                        self.next_group += 1;
                        groups.push(group);
                        PartitionAssignment { group, replicas }
                    })
                    .collect();
                self.topics.insert(
                    name,
                    TopicInfo {
                        partitions,
                        configs,
                    },
                );
                MetaOutcome::TopicCreated { groups }
            }
            MetaCommand::DeleteTopic { name } => match self.topics.remove(&name) {
                Some(t) => {
                    for p in &t.partitions {
                        self.leaders.remove(&p.group);
                    }
                    MetaOutcome::Ok
                }
                None => MetaOutcome::UnknownTopic,
            },
            MetaCommand::SetLeader {
                group,
                leader,
                term,
            } => {
                let exists = self
                    .topics
                    .values()
                    .any(|t| t.partitions.iter().any(|p| p.group == group));
                if exists {
                    record_leader(&mut self.leaders, group, leader, term);
                }
                MetaOutcome::Ok
            }
            MetaCommand::SetLeaders { leaders } => {
                let known = replicas_of(&self.topics, leaders.iter().map(|(g, _, _)| *g));
                for (group, leader, term) in leaders {
                    if known.contains_key(&group) {
                        record_leader(&mut self.leaders, group, leader, term);
                    }
                }
                MetaOutcome::Ok
            }
            MetaCommand::AllocateProducerIds { count } => {
                // Ids start at 1; 0 and negatives are never handed out.
                let first = self.next_producer_id.max(1);
                // `validate` checked that this does not overflow.
                self.next_producer_id = first + i64::from(count);
                MetaOutcome::ProducerIds { first }
            }
            MetaCommand::AlterTopicConfig { name, configs } => match self.topics.get_mut(&name) {
                Some(t) => {
                    t.configs.extend(configs);
                    MetaOutcome::Ok
                }
                None => MetaOutcome::UnknownTopic,
            },
        }
    }
}

fn command_of(batch: &RecordBatch) -> Option<MetaCommand> {
    let b = skein_record::Batch::new(batch.0.clone()).ok()?;
    let record = b.records().ok()?.next()?.ok()?;
    decode("metadata command", &record.value?).ok()
}

impl Applier<MetaTypes> for ClusterMetadata {
    fn apply(&mut self, _log_id: &LogId, batch: &RecordBatch) -> MetaResponse {
        self.commands_applied += 1;
        let outcome = match command_of(batch) {
            Some(cmd) => self.execute(cmd),
            None => MetaOutcome::Invalid,
        };
        MetaResponse(encode(&outcome))
    }

    fn control_response(&self) -> MetaResponse {
        MetaResponse::default()
    }

    fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        decode("cluster metadata", bytes)
    }
}

/// The metadata group's replica on this node.
#[derive(Debug)]
pub struct MetadataGroup {
    group: Group<MetaTypes, ClusterMetadata>,
}

impl Deref for MetadataGroup {
    type Target = Group<MetaTypes, ClusterMetadata>;
    fn deref(&self) -> &Self::Target {
        &self.group
    }
}

impl MetadataGroup {
    pub(crate) fn new(group: Group<MetaTypes, ClusterMetadata>) -> Self {
        MetadataGroup { group }
    }

    /// Replicates `cmd` and returns what applying it did.
    pub async fn propose(&self, cmd: &MetaCommand) -> Result<MetaOutcome> {
        let mut b = BatchBuilder::new(0);
        b.push(0, None, Some(&encode(cmd)), &[]);
        let r = self.write(RecordBatch(b.finish())).await?;
        decode("metadata outcome", &r.0)
    }

    /// A copy of the applied cluster metadata.
    pub fn metadata(&self) -> ClusterMetadata {
        self.with_state(|s| s.app.clone())
    }
}

/// Encodes a command as the batch the metadata group replicates (for tools and tests).
pub fn command_batch(cmd: &MetaCommand) -> Bytes {
    let mut b = BatchBuilder::new(0);
    b.push(0, None, Some(&encode(cmd)), &[]);
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_get_distinct_groups_and_survive_a_snapshot() {
        let mut m = with_nodes(3);
        let lid = crate::log_store::log_id(1, 1);
        let create = MetaCommand::CreateTopic {
            name: "t".into(),
            replicas: vec![vec![1, 2, 3], vec![2, 3, 1]],
            configs: BTreeMap::new(),
        };
        let r = m.apply(&lid, &RecordBatch(command_batch(&create)));
        assert_eq!(
            decode::<MetaOutcome>("o", &r.0).expect("decodes"),
            MetaOutcome::TopicCreated { groups: vec![1, 2] }
        );
        let r = m.apply(&lid, &RecordBatch(command_batch(&create)));
        assert_eq!(
            decode::<MetaOutcome>("o", &r.0).expect("decodes"),
            MetaOutcome::TopicExists
        );
        let back =
            <ClusterMetadata as Applier<MetaTypes>>::decode(&Applier::<MetaTypes>::encode(&m))
                .expect("decodes");
        assert_eq!(back, m);
    }

    fn apply(m: &mut ClusterMetadata, cmd: &MetaCommand) -> MetaOutcome {
        let lid = crate::log_store::log_id(1, 1);
        let r = m.apply(&lid, &RecordBatch(command_batch(cmd)));
        decode::<MetaOutcome>("o", &r.0).expect("decodes")
    }

    fn register(id: NodeId, peer: &str) -> MetaCommand {
        MetaCommand::RegisterNode {
            id,
            info: NodeInfo {
                peer_addr: peer.into(),
                client_addr: format!("client-{id}:9650"),
                kafka_addr: String::new(),
            },
        }
    }

    fn with_nodes(n: NodeId) -> ClusterMetadata {
        let mut m = ClusterMetadata::default();
        for id in 1..=n {
            assert_eq!(
                apply(&mut m, &register(id, &format!("10.0.0.{id}:9651"))),
                MetaOutcome::Ok
            );
        }
        m
    }

    fn refused(o: MetaOutcome, containing: &str) {
        match o {
            MetaOutcome::Refused { reason } => {
                assert!(
                    reason.contains(containing),
                    "{reason:?} lacks {containing:?}"
                )
            }
            other => panic!("expected a refusal ({containing}), got {other:?}"),
        }
    }

    #[test]
    fn invalid_commands_are_refused_and_change_nothing() {
        let mut m = with_nodes(3);
        let create = |name: &str, replicas: Vec<Vec<NodeId>>| MetaCommand::CreateTopic {
            name: name.into(),
            replicas,
            configs: BTreeMap::new(),
        };
        let before = m.clone();
        refused(apply(&mut m, &create("a/b", vec![vec![1]])), "characters");
        refused(apply(&mut m, &create("..", vec![vec![1]])), "topic name");
        refused(
            apply(&mut m, &create(&"x".repeat(250), vec![vec![1]])),
            "longer",
        );
        refused(apply(&mut m, &create("t", vec![])), "partitions");
        refused(
            apply(
                &mut m,
                &create("t", vec![vec![1]; TOPIC_PARTITIONS_MAX + 1]),
            ),
            "partitions",
        );
        refused(
            apply(&mut m, &create("t", vec![vec![]])),
            "replication factor",
        );
        refused(apply(&mut m, &create("t", vec![vec![1, 1]])), "twice");
        refused(
            apply(&mut m, &create("t", vec![vec![1, 9]])),
            "not registered",
        );
        refused(
            apply(&mut m, &create("t", vec![vec![1, 2], vec![3]])),
            "replicas",
        );
        let configs = (0..=TOPIC_CONFIGS_MAX)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        refused(
            apply(
                &mut m,
                &MetaCommand::CreateTopic {
                    name: "t".into(),
                    replicas: vec![vec![1]],
                    configs,
                },
            ),
            "overrides",
        );
        refused(
            apply(
                &mut m,
                &MetaCommand::DeleteTopic {
                    name: OFFSETS_TOPIC.into(),
                },
            ),
            "cannot be deleted",
        );
        refused(
            apply(&mut m, &MetaCommand::AllocateProducerIds { count: 0 }),
            "producer ids",
        );
        refused(
            apply(
                &mut m,
                &MetaCommand::AllocateProducerIds {
                    count: PRODUCER_IDS_ALLOCATION_MAX + 1,
                },
            ),
            "producer ids",
        );
        // Applied (counted) but nothing else changed.
        assert_eq!(m.commands_applied, before.commands_applied + 13);
        assert_eq!(
            (&m.nodes, &m.topics, m.next_group, m.next_producer_id),
            (
                &before.nodes,
                &before.topics,
                before.next_group,
                before.next_producer_id
            )
        );
    }

    #[test]
    fn nodes_keep_their_peer_address_and_addresses_are_well_formed() {
        let mut m = with_nodes(2);
        refused(apply(&mut m, &register(0, "10.0.0.9:9651")), "start at 1");
        refused(apply(&mut m, &register(3, "10.0.0.9")), "HOST:PORT");
        refused(apply(&mut m, &register(3, "10.0.0.9:0")), "HOST:PORT");
        refused(apply(&mut m, &register(3, "bad host:1")), "HOST:PORT");
        // Another node's id with a different peer address, and another node's peer address.
        refused(
            apply(&mut m, &register(2, "10.6.6.6:9651")),
            "cannot change",
        );
        refused(
            apply(&mut m, &register(3, "10.0.0.1:9651")),
            "belongs to node 1",
        );
        assert_eq!(apply(&mut m, &register(3, "[::1]:9651")), MetaOutcome::Ok);
        // The same peer address with new client/Kafka addresses: a restart with a new config.
        let mut again = register(2, "10.0.0.2:9651");
        if let MetaCommand::RegisterNode { info, .. } = &mut again {
            info.client_addr = "elsewhere:1".into();
            info.kafka_addr = "elsewhere:9092".into();
        }
        assert_eq!(apply(&mut m, &again), MetaOutcome::Ok);
        assert_eq!(m.nodes[&2].client_addr, "elsewhere:1");
        assert_eq!(m.nodes[&1].peer_addr, "10.0.0.1:9651");
    }

    #[test]
    fn a_leader_must_hold_a_replica() {
        let mut m = with_nodes(3);
        let created = apply(
            &mut m,
            &MetaCommand::CreateTopic {
                name: "t".into(),
                replicas: vec![vec![1, 2]],
                configs: BTreeMap::new(),
            },
        );
        assert_eq!(created, MetaOutcome::TopicCreated { groups: vec![1] });
        let set = |leader, term| MetaCommand::SetLeader {
            group: 1,
            leader,
            term,
        };
        refused(apply(&mut m, &set(3, 5)), "no replica");
        refused(apply(&mut m, &set(2, 0)), "term");
        assert_eq!(apply(&mut m, &set(2, 5)), MetaOutcome::Ok);
        assert_eq!(m.leaders[&1], (2, 5));
        // An unknown group is ignored, as before.
        assert_eq!(
            apply(
                &mut m,
                &MetaCommand::SetLeader {
                    group: 77,
                    leader: 9,
                    term: 1
                }
            ),
            MetaOutcome::Ok
        );
        assert!(!m.leaders.contains_key(&77));
    }

    #[test]
    fn set_leaders_records_each_newer_term_and_ignores_older_ones() {
        let mut m = with_nodes(3);
        let created = apply(
            &mut m,
            &MetaCommand::CreateTopic {
                name: "t".into(),
                replicas: vec![vec![1, 2, 3]; 3],
                configs: BTreeMap::new(),
            },
        );
        assert_eq!(
            created,
            MetaOutcome::TopicCreated {
                groups: vec![1, 2, 3]
            }
        );
        // An old log's single report still applies.
        let old = MetaCommand::SetLeader {
            group: 1,
            leader: 1,
            term: 5,
        };
        assert_eq!(apply(&mut m, &old), MetaOutcome::Ok);
        let batch = MetaCommand::SetLeaders {
            leaders: vec![
                // Older than the recorded term 5: ignored.
                (1, 2, 4),
                (2, 3, 2),
                // A later entry of the same group with a newer term wins; an older one does not.
                (2, 1, 3),
                (2, 2, 1),
                (3, 2, 7),
                // A group of a deleted topic: ignored.
                (99, 1, 1),
            ],
        };
        assert_eq!(apply(&mut m, &batch), MetaOutcome::Ok);
        assert_eq!(
            m.leaders,
            BTreeMap::from([(1, (1, 5)), (2, (1, 3)), (3, (2, 7))])
        );
        // The same term again changes nothing; a newer one replaces.
        let again = MetaCommand::SetLeaders {
            leaders: vec![(3, 3, 7), (1, 3, 6)],
        };
        assert_eq!(apply(&mut m, &again), MetaOutcome::Ok);
        assert_eq!(
            m.leaders,
            BTreeMap::from([(1, (3, 6)), (2, (1, 3)), (3, (2, 7))])
        );
    }

    #[test]
    fn set_leaders_with_one_bad_entry_or_too_many_changes_nothing() {
        let mut m = with_nodes(3);
        apply(
            &mut m,
            &MetaCommand::CreateTopic {
                name: "t".into(),
                replicas: vec![vec![1, 2], vec![2, 3]],
                configs: BTreeMap::new(),
            },
        );
        let set = |leaders: Vec<(GroupId, NodeId, u64)>| MetaCommand::SetLeaders { leaders };
        let before = m.leaders.clone();
        refused(
            apply(&mut m, &set(vec![(1, 1, 2), (2, 1, 2)])),
            "no replica",
        );
        refused(apply(&mut m, &set(vec![(1, 1, 2), (2, 2, 0)])), "term");
        refused(apply(&mut m, &set(vec![])), "leaders in one command");
        let too_many = vec![(1, 1, 2); MetaCommand::LEADERS_PER_COMMAND_MAX + 1];
        refused(apply(&mut m, &set(too_many)), "leaders in one command");
        assert_eq!(m.leaders, before);
        let most = vec![(1, 2, 2); MetaCommand::LEADERS_PER_COMMAND_MAX];
        assert_eq!(apply(&mut m, &set(most)), MetaOutcome::Ok);
        assert_eq!(m.leaders[&1], (2, 2));
    }

    #[test]
    fn existing_commands_keep_their_encoding() {
        // Logs hold postcard-encoded commands: a variant's index is its first byte, so new
        // variants go last and old ones never move.
        let old = MetaCommand::SetLeader {
            group: 1,
            leader: 2,
            term: 3,
        };
        assert_eq!(encode(&old), [3, 1, 2, 3]);
        assert_eq!(
            encode(&MetaCommand::AlterTopicConfig {
                name: "t".into(),
                configs: BTreeMap::new()
            })[0],
            5
        );
        let new = MetaCommand::SetLeaders {
            leaders: vec![(1, 2, 3)],
        };
        assert_eq!(encode(&new), [6, 1, 1, 2, 3]);
        assert_eq!(
            decode::<MetaCommand>("c", &encode(&new)).expect("decodes"),
            new
        );
    }

    #[test]
    fn an_undecodable_entry_is_invalid_not_a_panic() {
        let mut m = ClusterMetadata::default();
        let lid = crate::log_store::log_id(1, 1);
        let mut b = BatchBuilder::new(0);
        b.push(0, None, Some(&[0xff, 0xff, 0xff]), &[]);
        let r = m.apply(&lid, &RecordBatch(b.finish()));
        assert_eq!(
            decode::<MetaOutcome>("o", &r.0).expect("decodes"),
            MetaOutcome::Invalid
        );
    }
}
