//! The protocol-neutral half of consumer groups: finding a group's coordinator, committed
//! offsets (commit, fetch), listing, describing and deleting groups. Membership (join, sync,
//! heartbeat, leave) and offset resets are Skein-native and live in `groups/service.rs`.

use std::collections::{BTreeMap, BTreeSet};

use skein_proto::v1 as pb;
use tonic::transport::Channel;

use super::BrokerCore;
use crate::error::{NodeError, Result};
use crate::groups::assign::{Strategy, Tp};
use crate::groups::state::{OffsetKey, OffsetValue, Phase};
use crate::groups::{now_ms, offsets_partition, Led, OFFSETS_PARTITIONS};

/// Request metadata marking a forwarded ListGroups (answer from local partitions only).
pub const LOCAL_ONLY: &str = "skein-local-only";

/// Who commits: a member of the group's current generation, or a tool / `assign()` consumer
/// outside group management (accepted only while the group has no members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committer {
    /// Outside group management.
    Standalone,
    /// A member and its generation.
    Member {
        /// Member id.
        member_id: String,
        /// Its generation.
        generation: u64,
    },
}

/// One partition's offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetToCommit {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The next offset to consume.
    pub offset: u64,
    /// Client metadata.
    pub metadata: String,
}

/// A committed offset (or none) of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedView {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The committed offset, `None` when nothing is committed.
    pub offset: Option<u64>,
    /// Client metadata stored with it.
    pub metadata: String,
}

/// A group as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    /// Group id.
    pub group: String,
    /// State name (`Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable`).
    pub state: String,
    /// Member count.
    pub members: u32,
    /// Coordinating node.
    pub coordinator: u64,
    /// Kafka's protocol type: `consumer` for a classic group this node coordinates, empty for
    /// native groups (and groups listed by another node).
    pub protocol_type: String,
}

/// A group as this node, its coordinator, lists it.
fn summary(led: &Led, group: &str, me: u64) -> GroupSummary {
    let classic = led
        .state
        .classic
        .get(group)
        .filter(|g| !g.members.is_empty());
    let native = led.state.groups.get(group);
    let (state, members, protocol_type) = match (classic, native) {
        (Some(c), _) => (c.state.name(), c.members.len(), c.protocol_type.clone()),
        (None, Some(g)) => (g.phase.name(), g.members.len(), String::new()),
        (None, None) => ("Empty", 0, String::new()),
    };
    GroupSummary {
        group: group.into(),
        state: state.into(),
        members: members as u32,
        coordinator: me,
        protocol_type,
    }
}

/// A member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Assigned partitions (of a classic member: decoded from its consumer-protocol
    /// assignment, empty when that does not decode).
    pub assignment: Vec<Tp>,
    /// The client's host (classic members only).
    pub client_host: String,
    /// Kafka member metadata of the chosen protocol (classic members only).
    pub metadata: bytes::Bytes,
    /// Kafka assignment bytes as the leader wrote them (classic members only).
    pub assignment_bytes: bytes::Bytes,
}

/// Committed offset and lag of one partition of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLagView {
    /// Topic and partition.
    pub tp: Tp,
    /// Committed offset, if any.
    pub committed: Option<u64>,
    /// High watermark.
    pub end_offset: u64,
    /// Owning member, empty when unassigned.
    pub member_id: String,
}

/// A described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// State name.
    pub state: String,
    /// Generation.
    pub generation: u64,
    /// Assignment strategy, `None` for a group with committed offsets only.
    pub strategy: Option<Strategy>,
    /// Members.
    pub members: Vec<MemberView>,
    /// Committed and assigned partitions.
    pub partitions: Vec<PartitionLagView>,
    /// Coordinating node.
    pub coordinator: u64,
    /// Kafka protocol type (`consumer`) and chosen protocol (assignor) of a classic group;
    /// empty for native groups.
    pub protocol: (String, String),
}

impl BrokerCore {
    /// The node coordinating `group`.
    pub async fn find_coordinator(&self, group: &str) -> Result<u64> {
        Ok(self.broker.find_coordinator(group).await?.0)
    }

    /// Commits offsets of `group`. The outer error is the group's (coordinator, membership);
    /// each partition then has its own result (unknown topic or partition), in order. Offsets
    /// never go backwards through commits; `ResetOffsets` moves them.
    pub async fn commit_offsets(
        &self,
        group: &str,
        committer: Committer,
        offsets: Vec<OffsetToCommit>,
    ) -> Result<Vec<Result<()>>> {
        let mut led = self.broker.coordinate(group).await?;
        check_committer(&mut led, group, &committer)?;
        let meta = self.broker.metadata();
        let current = led.state.offsets.get(group);
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(offsets.len());
        for o in offsets {
            let known = match meta.topics.get(&o.topic) {
                None => Err(NodeError::UnknownTopic {
                    topic: o.topic.clone(),
                }),
                Some(t) if o.partition as usize >= t.partitions.len() => {
                    Err(NodeError::UnknownPartition {
                        topic: o.topic.clone(),
                        partition: o.partition,
                        partitions: t.partitions.len() as u32,
                    })
                }
                Some(_) => Ok(()),
            };
            let prev = current.and_then(|c| c.get(&(o.topic.clone(), o.partition)));
            if known.is_ok() && prev.is_none_or(|p| p.offset <= o.offset) {
                records.push((
                    OffsetKey {
                        group: group.into(),
                        topic: o.topic,
                        partition: o.partition,
                    },
                    Some(OffsetValue {
                        offset: o.offset,
                        metadata: o.metadata,
                        committed_at_ms: now_ms(),
                    }),
                ));
            }
            results.push(known);
        }
        apply_commits(self, &mut led, records).await?;
        self.broker.compact_offsets_if_needed(&mut led).await?;
        Ok(results)
    }

    /// Committed offsets of `group`: of the given partitions (one entry each, in order), or of
    /// every partition with a commit when `partitions` is `None`.
    pub async fn fetch_offsets(
        &self,
        group: &str,
        partitions: Option<Vec<Tp>>,
    ) -> Result<Vec<CommittedView>> {
        let led = self.broker.coordinate(group).await?;
        let all = led.state.offsets.get(group).cloned().unwrap_or_default();
        drop(led);
        let view = |(t, p): Tp| {
            let c = all.get(&(t.clone(), p));
            CommittedView {
                offset: c.map(|c| c.offset),
                metadata: c.map(|c| c.metadata.clone()).unwrap_or_default(),
                topic: t,
                partition: p,
            }
        };
        Ok(match partitions {
            None => all.keys().cloned().map(view).collect(),
            Some(tps) => tps.into_iter().map(view).collect(),
        })
    }

    /// Every group, from the coordinator of each offsets partition (this node, or another one
    /// asked over the client API). With `local_only`, only this node's partitions answer.
    pub async fn list_groups(&self, local_only: bool) -> Result<Vec<GroupSummary>> {
        let mut groups = BTreeMap::new();
        for p in 0..OFFSETS_PARTITIONS {
            let probe = probe_group_for(p);
            match self.broker.coordinate(&probe).await {
                Ok(led) => {
                    let me = self.node_id();
                    let mut names: BTreeSet<&String> = led.state.offsets.keys().collect();
                    names.extend(led.state.groups.keys());
                    names.extend(led.state.classic.keys());
                    for n in names {
                        groups.insert(n.clone(), summary(&led, n, me));
                    }
                }
                Err(NodeError::NotCoordinator {
                    coordinator: Some((_, addr)),
                    ..
                }) if !local_only => {
                    let chan = self.broker.channel(&addr)?;
                    for l in remote_list(chan, &addr, p).await? {
                        groups.insert(l.group.clone(), l);
                    }
                }
                Err(NodeError::NotCoordinator { .. })
                | Err(NodeError::CoordinatorNotAvailable(_))
                | Err(NodeError::UnknownTopic { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(groups.into_values().collect())
    }

    /// A group's state, members, committed offsets and lag; `GroupNotFound` when it has
    /// neither members nor commits.
    pub async fn describe_group(&self, group: &str) -> Result<GroupView> {
        let led = self.broker.coordinate(group).await?;
        let offsets = led.state.offsets.get(group).cloned().unwrap_or_default();
        // A group the coordinator knows (listed as Empty) is described even without members or
        // commits; only a group it has never heard of is not found.
        let known = led.state.groups.contains_key(group) || led.state.classic.contains_key(group);
        if !known && led.state.active_members(group) == 0 && offsets.is_empty() {
            return Err(NodeError::GroupNotFound(group.into()));
        }
        let mut view = match led
            .state
            .classic
            .get(group)
            .filter(|c| !c.members.is_empty())
        {
            Some(c) => classic_view(c),
            None => native_view(led.state.groups.get(group)),
        };
        view.coordinator = self.node_id();
        drop(led);
        let owner: BTreeMap<Tp, String> = view
            .members
            .iter()
            .flat_map(|m| {
                m.assignment
                    .iter()
                    .map(|tp| (tp.clone(), m.member_id.clone()))
            })
            .collect();
        let mut tps: BTreeSet<Tp> = offsets.keys().cloned().collect();
        tps.extend(owner.keys().cloned());
        for tp in tps {
            let end = self
                .broker
                .partition_bounds(&tp.0, tp.1)
                .await
                .map_or(0, |(_, h)| h);
            view.partitions.push(PartitionLagView {
                committed: offsets.get(&tp).map(|c| c.offset),
                end_offset: end,
                member_id: owner.get(&tp).cloned().unwrap_or_default(),
                tp,
            });
        }
        Ok(view)
    }

    /// Deletes a group without members, and its committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let mut led = self.broker.coordinate(group).await?;
        let members = led.state.active_members(group);
        if members > 0 {
            return Err(NodeError::GroupNotEmpty {
                group: group.into(),
                members,
            });
        }
        let Some(offsets) = led.state.offsets.get(group).cloned() else {
            if led.state.groups.remove(group).is_some() {
                return Ok(());
            }
            return Err(NodeError::GroupNotFound(group.into()));
        };
        let tombstones = offsets
            .keys()
            .map(|(t, p)| {
                let key = OffsetKey {
                    group: group.into(),
                    topic: t.clone(),
                    partition: *p,
                };
                (key, None)
            })
            .collect();
        apply_commits(self, &mut led, tombstones).await?;
        led.state.groups.remove(group);
        tracing::info!(%group, "group deleted");
        Ok(())
    }
}

/// Whether `committer` may commit offsets of `group` now: a member of its current generation
/// (classic or native group), or anyone outside group management while the group has no
/// members.
fn check_committer(led: &mut Led, group: &str, committer: &Committer) -> Result<()> {
    match committer {
        Committer::Standalone => {
            let members = led.state.active_members(group);
            if members > 0 {
                return Err(NodeError::GroupNotEmpty {
                    group: group.into(),
                    members,
                });
            }
        }
        // Commits with the current generation are accepted during a rebalance, so that
        // members can commit before they join again.
        Committer::Member {
            member_id,
            generation,
        } if led.state.classic.contains_key(group) => {
            let g = led
                .state
                .classic
                .get_mut(group)
                .expect("invariant: checked above");
            let generation = i32::try_from(*generation).unwrap_or(-1);
            g.check_commit(member_id, None, generation, tokio::time::Instant::now())?;
        }
        Committer::Member {
            member_id,
            generation,
        } => {
            led.state
                .check_member(group, member_id, Some(*generation))?;
        }
    }
    Ok(())
}

/// Writes offset records to the group's offsets partition, then applies them to its state.
pub(crate) async fn apply_commits(
    core: &BrokerCore,
    led: &mut Led,
    records: Vec<(OffsetKey, Option<OffsetValue>)>,
) -> Result<()> {
    core.broker.write_offsets(&led.replica, &records).await?;
    for (k, v) in records {
        led.state.apply(k, v);
    }
    Ok(())
}

/// A native group's members and state (no partitions yet).
fn native_view(g: Option<&crate::groups::state::Group>) -> GroupView {
    let members = g
        .map(|g| {
            g.members
                .iter()
                .map(|(id, m)| MemberView {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    assignment: g.assignment.get(id).cloned().unwrap_or_default(),
                    client_host: String::new(),
                    metadata: bytes::Bytes::new(),
                    assignment_bytes: bytes::Bytes::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    let (state, generation, strategy) = match g {
        Some(g) => (g.phase.name(), g.generation, Some(g.strategy)),
        None => (Phase::Empty.name(), 0, None),
    };
    GroupView {
        state: state.into(),
        generation,
        strategy,
        members,
        partitions: Vec::new(),
        coordinator: 0,
        protocol: (String::new(), String::new()),
    }
}

/// A classic group's members (assignments decoded from Kafka's consumer protocol) and state.
fn classic_view(c: &crate::groups::classic::ClassicGroup) -> GroupView {
    let protocol = c.protocol.clone().unwrap_or_default();
    let members = c
        .members
        .iter()
        .map(|(id, m)| MemberView {
            member_id: id.clone(),
            instance_id: m.instance_id.clone(),
            client_id: m.client_id.clone(),
            assignment: crate::groups::classic::decode_assignment(&m.assignment)
                .unwrap_or_default(),
            client_host: m.client_host.clone(),
            metadata: m.metadata(&protocol),
            assignment_bytes: m.assignment.clone(),
        })
        .collect();
    GroupView {
        state: c.state.name().into(),
        generation: u64::try_from(c.generation).unwrap_or(0),
        strategy: None,
        members,
        partitions: Vec::new(),
        coordinator: 0,
        protocol: (c.protocol_type.clone(), protocol),
    }
}

/// A group id that hashes to offsets partition `p` (to address that partition's coordinator).
fn probe_group_for(p: u32) -> String {
    (0u64..)
        .map(|i| format!("__probe-{i}"))
        .find(|g| offsets_partition(g) == p)
        .expect("invariant: some probe name hashes to every partition")
}

/// The groups of offsets partition `p` as listed by its coordinator at `addr`.
async fn remote_list(chan: Channel, addr: &str, p: u32) -> Result<Vec<GroupSummary>> {
    let mut c =
        pb::group_service_client::GroupServiceClient::new(chan).max_decoding_message_size(64 << 20);
    let mut req = tonic::Request::new(pb::ListGroupsRequest {});
    req.metadata_mut()
        .insert(LOCAL_ONLY, tonic::metadata::MetadataValue::from_static("1"));
    let r = c
        .list_groups(req)
        .await
        .map_err(|s| NodeError::Internal(format!("list groups on {addr}: {}", s.message())))?
        .into_inner();
    Ok(r.groups
        .into_iter()
        .filter(|g| offsets_partition(&g.group) == p)
        .map(|g| GroupSummary {
            group: g.group,
            state: g.state,
            members: g.members,
            coordinator: g.coordinator,
            protocol_type: String::new(),
        })
        .collect())
}
