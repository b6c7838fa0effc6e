//! Group administration: list, describe (with lag), delete, fetch committed offsets, commit
//! from outside the group, and offset reset plans.

use std::collections::BTreeMap;
use std::time::Duration;

use skein_proto::v1 as pb;
use skein_proto::v1::group_service_client::GroupServiceClient;

use super::coordinator::{check, Coordinator};
use super::{strategy_from_proto, topic_partitions_from_proto, topic_partitions_to_proto};
use crate::admin::Admin;
use crate::cluster::timed;
use crate::config::AssignmentStrategy;
use crate::error::{ClientError, ErrorCode, Result};
use crate::record::TopicPartition;

/// A group as `list_groups` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group: String,
    /// Empty, PreparingRebalance, CompletingRebalance, Stable or Dead.
    pub state: String,
    /// Number of members.
    pub members: u32,
    /// Node id of the coordinator.
    pub coordinator: u64,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Member id given by the coordinator.
    pub member_id: String,
    /// Static membership id, if the member has one.
    pub group_instance_id: Option<String>,
    /// The client id the member gave.
    pub client_id: String,
    /// Partitions assigned to the member, sorted.
    pub assignment: Vec<TopicPartition>,
}

/// Committed offset, end and lag of one partition of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub tp: TopicPartition,
    /// The committed offset (the next record to process), `None` without a commit.
    pub committed_offset: Option<u64>,
    /// The partition's high watermark.
    pub end_offset: u64,
    /// Records not yet processed: end offset - committed offset.
    pub lag: u64,
    /// Member currently assigned the partition.
    pub member_id: Option<String>,
}

/// What `describe_group` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group: String,
    /// Empty, PreparingRebalance, CompletingRebalance, Stable or Dead.
    pub state: String,
    /// Current generation.
    pub generation: u64,
    /// Assignment strategy in use.
    pub strategy: AssignmentStrategy,
    /// Members, sorted by id.
    pub members: Vec<GroupMember>,
    /// Partitions the group has committed or is assigned, sorted.
    pub partitions: Vec<PartitionLag>,
    /// Node id of the coordinator.
    pub coordinator: u64,
}

impl GroupDescription {
    /// Sum of the lag of every partition.
    pub fn total_lag(&self) -> u64 {
        self.partitions.iter().map(|p| p.lag).sum()
    }
}

/// A committed offset with its metadata string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    /// The offset of the next record to process.
    pub offset: u64,
    /// Free text stored with the commit.
    pub metadata: String,
}

impl OffsetAndMetadata {
    /// An offset without metadata.
    pub fn new(offset: u64) -> Self {
        OffsetAndMetadata {
            offset,
            metadata: String::new(),
        }
    }
}

/// Partitions of one topic; an empty list means every partition of the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    /// Topic name.
    pub topic: String,
    /// Partitions; empty: all.
    pub partitions: Vec<u32>,
}

impl TopicPartitions {
    /// Every partition of `topic`.
    pub fn all(topic: impl Into<String>) -> Self {
        TopicPartitions {
            topic: topic.into(),
            partitions: Vec::new(),
        }
    }

    /// The listed partitions of `topic`.
    pub fn some(topic: impl Into<String>, partitions: impl IntoIterator<Item = u32>) -> Self {
        TopicPartitions {
            topic: topic.into(),
            partitions: partitions.into_iter().collect(),
        }
    }
}

/// Where `reset_offsets` moves a group's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetStrategy {
    /// The log start offset.
    Earliest,
    /// The high watermark (skip everything).
    Latest,
    /// This offset.
    ToOffset(u64),
    /// The first record at or after this time (ms since the epoch).
    ToDatetime(i64),
    /// The first record at or after now minus this duration.
    ByDuration(Duration),
    /// The current committed offset plus this (negative: back).
    ShiftBy(i64),
}

impl ResetStrategy {
    fn to_proto(self) -> Result<(pb::ResetStrategy, i64)> {
        let too_large = |field: &'static str| ClientError::InvalidConfig {
            field,
            reason: "is too large".into(),
        };
        Ok(match self {
            ResetStrategy::Earliest => (pb::ResetStrategy::ToEarliest, 0),
            ResetStrategy::Latest => (pb::ResetStrategy::ToLatest, 0),
            ResetStrategy::ToOffset(o) => (
                pb::ResetStrategy::ToOffset,
                i64::try_from(o).map_err(|_| too_large("offset"))?,
            ),
            ResetStrategy::ToDatetime(ms) => (pb::ResetStrategy::ToDatetime, ms),
            ResetStrategy::ByDuration(d) => (
                pb::ResetStrategy::ByDuration,
                i64::try_from(d.as_millis()).map_err(|_| too_large("duration"))?,
            ),
            ResetStrategy::ShiftBy(n) => (pb::ResetStrategy::ShiftBy, n),
        })
    }

    /// Not safe to send twice with `execute` (a retried shift would shift twice).
    fn is_relative(self) -> bool {
        matches!(self, ResetStrategy::ShiftBy(_))
    }
}

/// One partition of a reset plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetPlanEntry {
    /// The partition.
    pub tp: TopicPartition,
    /// The committed offset before the reset (`None`: no commit).
    pub current_offset: Option<u64>,
    /// Where the strategy pointed before clamping.
    pub requested_offset: i64,
    /// The offset after the reset.
    pub new_offset: u64,
    /// True when `requested_offset` was outside [log start, high watermark] and was clamped.
    pub clamped: bool,
    /// The partition's log start offset.
    pub log_start_offset: u64,
    /// The partition's high watermark.
    pub high_watermark: u64,
}

/// What `reset_offsets` planned (and did, when `executed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetPlan {
    /// Group id.
    pub group: String,
    /// False for a dry run: nothing was changed.
    pub executed: bool,
    /// Per partition, sorted.
    pub entries: Vec<ResetPlanEntry>,
}

fn convert_description(r: pb::DescribeGroupResponse) -> GroupDescription {
    let mut members: Vec<GroupMember> = r
        .members
        .into_iter()
        .map(|m| {
            let mut assignment = topic_partitions_from_proto(m.assignment);
            assignment.sort();
            GroupMember {
                member_id: m.member_id,
                group_instance_id: (!m.group_instance_id.is_empty()).then_some(m.group_instance_id),
                client_id: m.client_id,
                assignment,
            }
        })
        .collect();
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    let mut partitions: Vec<PartitionLag> = r
        .partitions
        .into_iter()
        .map(|p| PartitionLag {
            tp: TopicPartition::new(p.topic, p.partition),
            committed_offset: p.committed.then_some(p.committed_offset),
            end_offset: p.end_offset,
            lag: p.lag,
            member_id: (!p.member_id.is_empty()).then_some(p.member_id),
        })
        .collect();
    partitions.sort_by(|a, b| a.tp.cmp(&b.tp));
    GroupDescription {
        group: r.group,
        state: r.state,
        generation: r.generation,
        strategy: strategy_from_proto(r.strategy),
        members,
        partitions,
        coordinator: r.coordinator,
    }
}

/// What is known of a group that only the listing shows: its state, no members, no commits.
fn described_from_listing(l: GroupListing) -> GroupDescription {
    GroupDescription {
        group: l.group,
        state: l.state,
        generation: 0,
        strategy: AssignmentStrategy::default(),
        members: Vec::new(),
        partitions: Vec::new(),
        coordinator: l.coordinator,
    }
}

fn convert_plan(group: &str, r: pb::ResetOffsetsResponse) -> ResetPlan {
    let mut entries: Vec<ResetPlanEntry> = r
        .plan
        .into_iter()
        .map(|e| ResetPlanEntry {
            tp: TopicPartition::new(e.topic, e.partition),
            current_offset: e.had_commit.then_some(e.current_offset),
            requested_offset: e.requested_offset,
            new_offset: e.new_offset,
            clamped: e.clamped,
            log_start_offset: e.log_start_offset,
            high_watermark: e.high_watermark,
        })
        .collect();
    entries.sort_by(|a, b| a.tp.cmp(&b.tp));
    ResetPlan {
        group: group.to_string(),
        executed: r.executed,
        entries,
    }
}

/// FetchOffsets through `coordinator`: the committed offsets of `partitions` (every committed
/// partition when empty). Partitions without a commit are left out.
pub(crate) async fn fetch_offsets(
    coordinator: &Coordinator,
    partitions: &[TopicPartition],
) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>> {
    let group = coordinator.group().to_string();
    let what = format!("fetch committed offsets of group {group}");
    let timeout = coordinator.timeout();
    let request = pb::FetchOffsetsRequest {
        group,
        partitions: topic_partitions_to_proto(partitions),
    };
    let r = coordinator
        .call(&what, coordinator.retries(), |mut c, addr| {
            let request = request.clone();
            let what = what.clone();
            async move {
                let r = timed(&what, &addr, timeout, c.fetch_offsets(request)).await?;
                check(&what, r.error.as_ref())?;
                Ok(r)
            }
        })
        .await?;
    Ok(r.offsets
        .into_iter()
        .filter(|o| o.committed)
        .map(|o| {
            (
                TopicPartition::new(o.topic, o.partition),
                OffsetAndMetadata {
                    offset: o.offset,
                    metadata: o.metadata,
                },
            )
        })
        .collect())
}

/// CommitOffsets through `coordinator` as `member_id` of `generation` (empty and 0: from
/// outside the group).
pub(crate) async fn commit_offsets(
    coordinator: &Coordinator,
    member_id: &str,
    generation: u64,
    offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    retries: u32,
) -> Result<()> {
    let group = coordinator.group().to_string();
    let what = format!("commit offsets of group {group}");
    let timeout = coordinator.timeout();
    let request = pb::CommitOffsetsRequest {
        group,
        member_id: member_id.to_string(),
        generation,
        offsets: offsets
            .iter()
            .map(|(tp, o)| pb::PartitionOffset {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: o.offset,
                metadata: o.metadata.clone(),
            })
            .collect(),
    };
    // Committing the same offsets twice is harmless: retries are safe.
    coordinator
        .call(&what, retries, |mut c, addr| {
            let request = request.clone();
            let what = what.clone();
            async move {
                let r = timed(&what, &addr, timeout, c.commit_offsets(request)).await?;
                check(&what, r.error.as_ref())
            }
        })
        .await
}

impl Admin {
    /// Every consumer group of the cluster, sorted by id. Every ready node is asked (a node may
    /// know only the groups it coordinates) and the answers are merged.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let client = self.client();
        let meta = client.retry(None, || client.metadata(&[])).await?;
        let mut addrs: Vec<String> = meta
            .nodes
            .iter()
            .filter(|n| n.ready && !n.client_addr.is_empty())
            .map(|n| n.client_addr.clone())
            .collect();
        if addrs.is_empty() {
            addrs = client.config().brokers.clone();
        }
        let timeout = client.config().request_timeout;
        let calls = addrs.iter().map(|addr| async move {
            let channel = client.channel(addr)?;
            let mut c = GroupServiceClient::new(channel);
            timed(
                "list groups",
                addr,
                timeout,
                c.list_groups(pb::ListGroupsRequest {}),
            )
            .await
        });
        let results = futures_util::future::join_all(calls).await;
        let mut merged: BTreeMap<String, GroupListing> = BTreeMap::new();
        let mut answered = false;
        let mut last_error = None;
        for r in results {
            match r {
                Ok(r) => {
                    answered = true;
                    for g in r.groups {
                        let listing = GroupListing {
                            group: g.group,
                            state: g.state,
                            members: g.members,
                            coordinator: g.coordinator,
                        };
                        merged.entry(listing.group.clone()).or_insert(listing);
                    }
                }
                Err(e) => last_error = Some(e),
            }
        }
        match (answered, last_error) {
            (false, Some(e)) => Err(e),
            _ => Ok(merged.into_values().collect()),
        }
    }

    /// A group's state, members, assignment, and committed offset, end offset and lag per
    /// partition. Every group that [`Admin::list_groups`] shows can be described: a group the
    /// coordinator's describe call does not know (it has neither members nor commits, e.g.
    /// its members left before committing) is described from its listing, as Empty.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        match self.describe_group_call(group).await {
            Err(e) if e.code() == Some(ErrorCode::GroupNotFound) => {
                let listed = self.list_groups().await?;
                match listed.into_iter().find(|l| l.group == group) {
                    Some(l) => Ok(described_from_listing(l)),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    async fn describe_group_call(&self, group: &str) -> Result<GroupDescription> {
        let coordinator = Coordinator::new(self.client().clone(), group);
        let what = format!("describe group {group}");
        let timeout = coordinator.timeout();
        let request = pb::DescribeGroupRequest {
            group: group.to_string(),
        };
        let r = coordinator
            .call(&what, coordinator.retries(), |mut c, addr| {
                let request = request.clone();
                let what = what.clone();
                async move {
                    let r = timed(&what, &addr, timeout, c.describe_group(request)).await?;
                    check(&what, r.error.as_ref())?;
                    Ok(r)
                }
            })
            .await?;
        Ok(convert_description(r))
    }

    /// Deletes a group and its committed offsets. Refused (GROUP_NOT_EMPTY) while it has
    /// members.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let coordinator = Coordinator::new(self.client().clone(), group);
        let what = format!("delete group {group}");
        let timeout = coordinator.timeout();
        let request = pb::DeleteGroupRequest {
            group: group.to_string(),
        };
        coordinator
            .call(&what, coordinator.retries(), |mut c, addr| {
                let request = request.clone();
                let what = what.clone();
                async move {
                    let r = timed(&what, &addr, timeout, c.delete_group(request)).await?;
                    check(&what, r.error.as_ref())
                }
            })
            .await
    }

    /// The committed offsets of `group` for `partitions` (every committed partition when
    /// empty). Partitions without a commit are left out.
    pub async fn fetch_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>> {
        fetch_offsets(&Coordinator::new(self.client().clone(), group), partitions).await
    }

    /// Commits offsets for `group` from outside the group (allowed only while the group has no
    /// members). Acknowledged once replicated.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> Result<()> {
        let coordinator = Coordinator::new(self.client().clone(), group);
        let retries = coordinator.retries();
        commit_offsets(&coordinator, "", 0, offsets, retries).await
    }

    /// Plans (and with `execute`, applies) moving the committed offsets of `group` on
    /// `partitions` as `strategy` says. Without `execute` nothing changes (a dry run). Refused
    /// (GROUP_NOT_EMPTY) while the group has members. Targets are clamped into [log start,
    /// high watermark]; the plan says which were.
    pub async fn reset_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartitions],
        strategy: ResetStrategy,
        execute: bool,
    ) -> Result<ResetPlan> {
        let coordinator = Coordinator::new(self.client().clone(), group);
        let what = format!(
            "{} offsets of group {group}",
            if execute { "reset" } else { "plan a reset of" }
        );
        let timeout = coordinator.timeout();
        let (proto_strategy, value) = strategy.to_proto()?;
        let request = pb::ResetOffsetsRequest {
            group: group.to_string(),
            partitions: partitions
                .iter()
                .map(|t| pb::TopicPartitions {
                    topic: t.topic.clone(),
                    partitions: t.partitions.clone(),
                })
                .collect(),
            strategy: proto_strategy as i32,
            value,
            execute,
        };
        // A shift applied twice moves twice: do not resend it after an ambiguous failure.
        let idempotent = !(execute && strategy.is_relative());
        let r = coordinator
            .call_with(&what, coordinator.retries(), idempotent, |mut c, addr| {
                let request = request.clone();
                let what = what.clone();
                async move {
                    let r = timed(&what, &addr, timeout, c.reset_offsets(request)).await?;
                    check(&what, r.error.as_ref())?;
                    Ok(r)
                }
            })
            .await?;
        Ok(convert_plan(group, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_strategies_map_to_the_protocol() {
        assert_eq!(
            ResetStrategy::ByDuration(Duration::from_secs(5400))
                .to_proto()
                .expect("fits"),
            (pb::ResetStrategy::ByDuration, 5_400_000)
        );
        assert_eq!(
            ResetStrategy::ShiftBy(-3).to_proto().expect("fits"),
            (pb::ResetStrategy::ShiftBy, -3)
        );
        assert_eq!(
            ResetStrategy::ToDatetime(1_714_564_800_000)
                .to_proto()
                .expect("fits"),
            (pb::ResetStrategy::ToDatetime, 1_714_564_800_000)
        );
        assert!(ResetStrategy::ToOffset(u64::MAX).to_proto().is_err());
        assert!(ResetStrategy::ShiftBy(1).is_relative());
        assert!(!ResetStrategy::ToOffset(1).is_relative());
    }

    #[test]
    fn descriptions_are_sorted_and_optional_fields_are_options() {
        let d = convert_description(pb::DescribeGroupResponse {
            error: None,
            group: "g".into(),
            state: "Stable".into(),
            generation: 4,
            strategy: pb::AssignmentStrategy::CooperativeSticky as i32,
            members: vec![pb::MemberDescription {
                member_id: "m-1".into(),
                group_instance_id: String::new(),
                client_id: "c".into(),
                assignment: vec![pb::TopicPartitions {
                    topic: "t".into(),
                    partitions: vec![2, 0],
                }],
            }],
            partitions: vec![
                pb::PartitionLag {
                    topic: "t".into(),
                    partition: 2,
                    committed: false,
                    committed_offset: 0,
                    end_offset: 9,
                    lag: 9,
                    member_id: "m-1".into(),
                },
                pb::PartitionLag {
                    topic: "t".into(),
                    partition: 0,
                    committed: true,
                    committed_offset: 5,
                    end_offset: 7,
                    lag: 2,
                    member_id: String::new(),
                },
            ],
            coordinator: 1,
        });
        assert_eq!(d.strategy, AssignmentStrategy::CooperativeSticky);
        assert_eq!(d.members[0].group_instance_id, None);
        assert_eq!(
            d.members[0].assignment,
            vec![TopicPartition::new("t", 0), TopicPartition::new("t", 2)]
        );
        assert_eq!(d.partitions[0].tp.partition, 0);
        assert_eq!(d.partitions[0].committed_offset, Some(5));
        assert_eq!(d.partitions[0].member_id, None);
        assert_eq!(d.partitions[1].committed_offset, None);
        assert_eq!(d.total_lag(), 11);
    }
}
