//! The metadata group: the cluster's state (nodes, topics, partition assignments, configs),
//! replicated by its own Raft group over the same log machinery as partitions. A command is a
//! data batch of one record whose value is the postcard-encoded [`MetaCommand`].

use std::collections::BTreeMap;
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
                let newer = self.leaders.get(&group).is_none_or(|(_, t)| term > *t);
                if exists && newer {
                    self.leaders.insert(group, (leader, term));
                }
                MetaOutcome::Ok
            }
            MetaCommand::AllocateProducerIds { count } => {
                // Ids start at 1; 0 and negatives are never handed out.
                let first = self.next_producer_id.max(1);
                self.next_producer_id = first + i64::from(count.max(1));
                MetaOutcome::ProducerIds { first }
            }
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
        let mut m = ClusterMetadata::default();
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
}
