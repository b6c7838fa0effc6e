//! The `GroupService` gRPC API.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skein_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::assign::{Strategy, Tp};
use super::classic::{GROUPS_MAX, MEMBERS_MAX};
use super::state::{Committed, Group, Member, OffsetKey, OffsetValue, Phase};
use super::{now_ms, Led};
use crate::broker::Broker;
use crate::core::groups::{Committer, OffsetToCommit, LOCAL_ONLY};
use crate::core::BrokerCore;
use crate::error::{NodeError, Result};

/// Allowed session timeouts.
const SESSION_TIMEOUT_MIN: Duration = Duration::from_secs(1);
const SESSION_TIMEOUT_MAX: Duration = Duration::from_secs(300);
const SESSION_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
const REBALANCE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

fn strategy_of(s: i32) -> Strategy {
    match pb::AssignmentStrategy::try_from(s) {
        Ok(pb::AssignmentStrategy::RoundRobin) => Strategy::RoundRobin,
        Ok(pb::AssignmentStrategy::CooperativeSticky) => Strategy::CooperativeSticky,
        _ => Strategy::Range,
    }
}

fn strategy_pb(s: Strategy) -> i32 {
    (match s {
        Strategy::Range => pb::AssignmentStrategy::Range,
        Strategy::RoundRobin => pb::AssignmentStrategy::RoundRobin,
        Strategy::CooperativeSticky => pb::AssignmentStrategy::CooperativeSticky,
    }) as i32
}

fn to_topic_partitions(tps: &[Tp]) -> Vec<pb::TopicPartitions> {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (t, p) in tps {
        by_topic.entry(t).or_default().push(*p);
    }
    by_topic
        .into_iter()
        .map(|(t, ps)| pb::TopicPartitions {
            topic: t.to_owned(),
            partitions: ps,
        })
        .collect()
}

fn err(e: NodeError) -> Option<pb::Error> {
    Some(e.to_proto())
}

/// The group API of a node.
#[derive(Debug, Clone)]
pub struct GroupApi {
    broker: Arc<Broker>,
    core: BrokerCore,
}

impl GroupApi {
    /// Serves `broker`'s group API.
    pub fn new(broker: Arc<Broker>) -> Self {
        GroupApi {
            core: BrokerCore::new(broker.clone()),
            broker,
        }
    }

    async fn join(&self, req: pb::JoinGroupRequest) -> Result<pb::JoinGroupResponse> {
        let session = match req.session_timeout_ms {
            0 => SESSION_TIMEOUT_DEFAULT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        if !(SESSION_TIMEOUT_MIN..=SESSION_TIMEOUT_MAX).contains(&session) {
            return Err(NodeError::InvalidSessionTimeout(session.as_millis() as u64));
        }
        let rebalance = match req.rebalance_timeout_ms {
            0 => REBALANCE_TIMEOUT_DEFAULT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        let topics: BTreeSet<String> = req.topics.iter().cloned().collect();
        let meta = self.broker.metadata();
        for t in &topics {
            if !meta.topics.contains_key(t) {
                return Err(NodeError::UnknownTopic { topic: t.clone() });
            }
        }
        let mut led = self.broker.coordinate(&req.group).await?;
        if led
            .state
            .classic
            .get(&req.group)
            .is_some_and(|g| !g.members.is_empty())
        {
            return Err(NodeError::InconsistentGroupProtocol {
                group: req.group.clone(),
                reason: "the group has Kafka (classic protocol) members".into(),
            });
        }
        // Bounds, as for classic groups: groups with members per offsets partition.
        let active = |g: &Group| !g.members.is_empty();
        if !led.state.groups.get(&req.group).is_some_and(active)
            && led.state.groups.values().filter(|g| active(g)).count() >= GROUPS_MAX
        {
            self.broker.metrics.bounds.groups_refused.inc();
            return Err(NodeError::GroupMaxSize {
                group: req.group.clone(),
                max: GROUPS_MAX,
            });
        }
        let partitions = self.broker.topic_partition_counts();
        let now = Instant::now();
        let instance = (!req.group_instance_id.is_empty()).then(|| req.group_instance_id.clone());
        let group = led
            .state
            .groups
            .entry(req.group.clone())
            .or_insert_with(|| Group::new(strategy_of(req.strategy)));
        if group.members.is_empty() {
            group.strategy = strategy_of(req.strategy);
        }
        // Resolve the member id: given, a static member's, or new.
        let static_id = instance.as_ref().and_then(|i| {
            group
                .members
                .iter()
                .find(|(_, m)| m.instance_id.as_deref() == Some(i.as_str()))
                .map(|(id, _)| id.clone())
        });
        let member_id = if !req.member_id.is_empty() {
            if !group.members.contains_key(&req.member_id) {
                return Err(NodeError::UnknownMember {
                    group: req.group.clone(),
                    member: req.member_id.clone(),
                });
            }
            req.member_id.clone()
        } else if let Some(id) = static_id.clone() {
            id
        } else {
            self.broker
                .coordinator
                .new_member_id(&req.client_id, self.broker.node_id())
        };
        // Bounds, as for classic groups: members per group.
        if !group.members.contains_key(&member_id) && group.members.len() >= MEMBERS_MAX {
            self.broker.metrics.bounds.members_refused.inc();
            return Err(NodeError::GroupMaxSize {
                group: req.group.clone(),
                max: MEMBERS_MAX,
            });
        }
        let known = group.members.get(&member_id).map(|m| m.topics.clone());
        let member = Member {
            instance_id: instance.clone(),
            client_id: req.client_id.clone(),
            topics: topics.clone(),
            session_timeout: session,
            rebalance_timeout: rebalance,
            last_seen: now,
            joined: true,
        };
        // A static member coming back with the same subscription to a stable group: no
        // rebalance, it gets its previous assignment.
        let static_return =
            static_id.is_some() && known.as_ref() == Some(&topics) && group.phase == Phase::Stable;
        group.members.insert(member_id.clone(), member);
        if static_return {
            let generation = group.generation;
            let leader = group.members.keys().next().cloned().unwrap_or_default();
            return Ok(pb::JoinGroupResponse {
                error: None,
                generation,
                member_id,
                leader_id: leader,
                strategy: strategy_pb(group.strategy),
            });
        }
        let mut done = group.completed.subscribe();
        done.borrow_and_update();
        let new_member = known.is_none();
        let changed = known.as_ref().is_some_and(|k| *k != topics);
        if group.phase != Phase::PreparingRebalance
            && (new_member || changed || group.phase == Phase::Empty)
        {
            group.start_rebalance(now);
        } else if group.phase == Phase::Stable {
            // A known member re-joining a stable group (it saw a rebalance signal we already
            // completed, or it restarted): rebalance so it gets a fresh generation.
            group.start_rebalance(now);
        }
        if let Some(m) = group.members.get_mut(&member_id) {
            m.joined = true;
        }
        group.try_complete(false, &partitions);
        let deadline = group.rebalance_deadline.unwrap_or(now + rebalance);
        let group_name = req.group.clone();
        drop(led);
        // Wait for the rebalance to complete (the timer completes it at its deadline).
        if tokio::time::timeout_at(deadline.into(), done.changed())
            .await
            .is_err()
        {
            // The timer will complete it momentarily; wait a little longer.
            let _ = tokio::time::timeout(Duration::from_millis(500), done.changed()).await;
        }
        let led = self.broker.coordinate(&group_name).await?;
        let group = led
            .state
            .groups
            .get(&group_name)
            .ok_or_else(|| NodeError::GroupNotFound(group_name.clone()))?;
        if !group.members.contains_key(&member_id) {
            return Err(NodeError::UnknownMember {
                group: group_name,
                member: member_id,
            });
        }
        if group.phase != Phase::Stable {
            return Err(NodeError::RebalanceInProgress(group_name));
        }
        Ok(pb::JoinGroupResponse {
            error: None,
            generation: group.generation,
            member_id,
            leader_id: group.members.keys().next().cloned().unwrap_or_default(),
            strategy: strategy_pb(group.strategy),
        })
    }

    async fn commit(&self, req: pb::CommitOffsetsRequest) -> Result<()> {
        let committer = if req.member_id.is_empty() && req.generation == 0 {
            Committer::Standalone
        } else {
            Committer::Member {
                member_id: req.member_id,
                generation: req.generation,
            }
        };
        let offsets = req
            .offsets
            .into_iter()
            .map(|o| OffsetToCommit {
                topic: o.topic,
                partition: o.partition,
                offset: o.offset,
                metadata: o.metadata,
            })
            .collect();
        let results = self
            .core
            .commit_offsets(&req.group, committer, offsets)
            .await?;
        results.into_iter().collect()
    }

    async fn apply_commits(
        &self,
        led: &mut Led,
        records: Vec<(OffsetKey, Option<OffsetValue>)>,
    ) -> Result<()> {
        crate::core::groups::apply_commits(&self.core, led, records).await
    }

    async fn describe(&self, group: &str) -> Result<pb::DescribeGroupResponse> {
        let g = self.core.describe_group(group).await?;
        let members = g
            .members
            .into_iter()
            .map(|m| pb::MemberDescription {
                member_id: m.member_id,
                group_instance_id: m.instance_id.unwrap_or_default(),
                client_id: m.client_id,
                assignment: to_topic_partitions(&m.assignment),
            })
            .collect();
        let partitions = g
            .partitions
            .into_iter()
            .map(|p| {
                let committed = p.committed.unwrap_or(0);
                pb::PartitionLag {
                    topic: p.tp.0,
                    partition: p.tp.1,
                    committed: p.committed.is_some(),
                    committed_offset: committed,
                    end_offset: p.end_offset,
                    lag: p.end_offset.saturating_sub(committed),
                    member_id: p.member_id,
                }
            })
            .collect();
        Ok(pb::DescribeGroupResponse {
            error: None,
            group: group.into(),
            state: g.state,
            generation: g.generation,
            strategy: g.strategy.map_or(0, strategy_pb),
            members,
            partitions,
            coordinator: g.coordinator,
        })
    }

    async fn reset(&self, req: pb::ResetOffsetsRequest) -> Result<pb::ResetOffsetsResponse> {
        let strategy = pb::ResetStrategy::try_from(req.strategy).map_err(|_| {
            NodeError::InvalidRequest(format!("unknown reset strategy {}", req.strategy))
        })?;
        if req.partitions.is_empty() {
            return Err(NodeError::InvalidRequest(
                "name at least one topic to reset".into(),
            ));
        }
        let meta = self.broker.metadata();
        let mut tps: Vec<Tp> = Vec::new();
        for t in &req.partitions {
            let info = meta
                .topics
                .get(&t.topic)
                .ok_or_else(|| NodeError::UnknownTopic {
                    topic: t.topic.clone(),
                })?;
            let n = info.partitions.len() as u32;
            if t.partitions.is_empty() {
                tps.extend((0..n).map(|p| (t.topic.clone(), p)));
            } else {
                for p in &t.partitions {
                    if *p >= n {
                        return Err(NodeError::UnknownPartition {
                            topic: t.topic.clone(),
                            partition: *p,
                            partitions: n,
                        });
                    }
                    tps.push((t.topic.clone(), *p));
                }
            }
        }
        let led = self.broker.coordinate(&req.group).await?;
        let members = led.state.active_members(&req.group);
        if members > 0 {
            return Err(NodeError::GroupNotEmpty {
                group: req.group,
                members,
            });
        }
        let current: BTreeMap<Tp, Committed> = led
            .state
            .offsets
            .get(&req.group)
            .cloned()
            .unwrap_or_default();
        drop(led);
        let mut plan = Vec::with_capacity(tps.len());
        for tp in tps {
            let (start, hwm) = self.broker.partition_bounds(&tp.0, tp.1).await?;
            let cur = current.get(&tp);
            let cur_off = cur.map(|c| c.offset);
            let requested: i64 = match strategy {
                pb::ResetStrategy::ToEarliest => start as i64,
                pb::ResetStrategy::ToLatest => hwm as i64,
                pb::ResetStrategy::ToOffset => req.value,
                pb::ResetStrategy::ToDatetime => {
                    self.broker.offset_for_time(&tp.0, tp.1, req.value).await? as i64
                }
                pb::ResetStrategy::ByDuration => {
                    let at = now_ms().saturating_sub(req.value.max(0));
                    self.broker.offset_for_time(&tp.0, tp.1, at).await? as i64
                }
                pb::ResetStrategy::ShiftBy => {
                    (cur_off.unwrap_or(start) as i64).saturating_add(req.value)
                }
            };
            let new = requested.clamp(start as i64, hwm as i64) as u64;
            plan.push(pb::ResetPlanEntry {
                topic: tp.0.clone(),
                partition: tp.1,
                had_commit: cur.is_some(),
                current_offset: cur_off.unwrap_or(0),
                requested_offset: requested,
                new_offset: new,
                clamped: requested != new as i64,
                log_start_offset: start,
                high_watermark: hwm,
            });
        }
        if req.execute {
            let mut led = self.broker.coordinate(&req.group).await?;
            let members = led.state.active_members(&req.group);
            if members > 0 {
                return Err(NodeError::GroupNotEmpty {
                    group: req.group,
                    members,
                });
            }
            let records = plan
                .iter()
                .map(|p| {
                    (
                        OffsetKey {
                            group: req.group.clone(),
                            topic: p.topic.clone(),
                            partition: p.partition,
                        },
                        Some(OffsetValue {
                            offset: p.new_offset,
                            metadata: "reset".into(),
                            committed_at_ms: now_ms(),
                        }),
                    )
                })
                .collect();
            self.apply_commits(&mut led, records).await?;
            tracing::info!(group = %req.group, partitions = plan.len(), "offsets reset");
        }
        Ok(pb::ResetOffsetsResponse {
            error: None,
            plan,
            executed: req.execute,
        })
    }
}

fn status(e: NodeError) -> Status {
    e.to_status()
}

/// The one rule for answering a group call: errors about where the coordinator is go back as a
/// call-level status (the client finds the coordinator again); every other error goes in the
/// response's own `Error` field, built by `with_error`.
fn answer<T>(r: Result<T>, with_error: impl FnOnce(pb::Error) -> T) -> Result<Response<T>, Status> {
    match r {
        Ok(v) => Ok(Response::new(v)),
        Err(e @ (NodeError::NotCoordinator { .. } | NodeError::CoordinatorNotAvailable(_))) => {
            Err(status(e))
        }
        Err(e) => Ok(Response::new(with_error(e.to_proto()))),
    }
}

#[tonic::async_trait]
impl pb::group_service_server::GroupService for GroupApi {
    async fn find_coordinator(
        &self,
        req: Request<pb::FindCoordinatorRequest>,
    ) -> Result<Response<pb::FindCoordinatorResponse>, Status> {
        let (node_id, client_addr) = self
            .broker
            .find_coordinator(&req.into_inner().group)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::FindCoordinatorResponse {
            node_id,
            client_addr,
        }))
    }

    async fn join_group(
        &self,
        req: Request<pb::JoinGroupRequest>,
    ) -> Result<Response<pb::JoinGroupResponse>, Status> {
        let req = req.into_inner();
        answer(self.join(req).await, |e| pb::JoinGroupResponse {
            error: Some(e),
            ..Default::default()
        })
    }

    async fn sync_group(
        &self,
        req: Request<pb::SyncGroupRequest>,
    ) -> Result<Response<pb::SyncGroupResponse>, Status> {
        let req = req.into_inner();
        let mut led = self.broker.coordinate(&req.group).await.map_err(status)?;
        let r = led
            .state
            .check_member(&req.group, &req.member_id, Some(req.generation))
            .and_then(|g| {
                if g.phase == Phase::PreparingRebalance {
                    return Err(NodeError::RebalanceInProgress(req.group.clone()));
                }
                Ok(to_topic_partitions(
                    g.assignment
                        .get(&req.member_id)
                        .map_or(&[][..], Vec::as_slice),
                ))
            });
        Ok(Response::new(match r {
            Ok(assignment) => pb::SyncGroupResponse {
                error: None,
                assignment,
            },
            Err(e) => pb::SyncGroupResponse {
                error: err(e),
                assignment: Vec::new(),
            },
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = req.into_inner();
        let mut led = self.broker.coordinate(&req.group).await.map_err(status)?;
        let r = led
            .state
            .check_member(&req.group, &req.member_id, None)
            .and_then(|g| {
                if g.phase == Phase::PreparingRebalance {
                    return Err(NodeError::RebalanceInProgress(req.group.clone()));
                }
                if req.generation != g.generation {
                    return Err(NodeError::IllegalGeneration {
                        group: req.group.clone(),
                        got: req.generation,
                        current: g.generation,
                    });
                }
                Ok(())
            });
        Ok(Response::new(pb::HeartbeatResponse {
            error: r.err().and_then(err),
        }))
    }

    async fn leave_group(
        &self,
        req: Request<pb::LeaveGroupRequest>,
    ) -> Result<Response<pb::LeaveGroupResponse>, Status> {
        let req = req.into_inner();
        let mut led = self.broker.coordinate(&req.group).await.map_err(status)?;
        let partitions = self.broker.topic_partition_counts();
        let left = match led.state.groups.get_mut(&req.group) {
            Some(g) => {
                let removed = g.members.remove(&req.member_id).is_some();
                if removed {
                    tracing::info!(group = %req.group, member = %req.member_id, "member left");
                    g.start_rebalance(Instant::now());
                    g.try_complete(false, &partitions);
                }
                removed
            }
            None => false,
        };
        let r = if left {
            None
        } else {
            err(NodeError::UnknownMember {
                group: req.group.clone(),
                member: req.member_id.clone(),
            })
        };
        Ok(Response::new(pb::LeaveGroupResponse { error: r }))
    }

    async fn commit_offsets(
        &self,
        req: Request<pb::CommitOffsetsRequest>,
    ) -> Result<Response<pb::CommitOffsetsResponse>, Status> {
        let r = self.commit(req.into_inner()).await;
        answer(r.map(|()| pb::CommitOffsetsResponse { error: None }), |e| {
            pb::CommitOffsetsResponse { error: Some(e) }
        })
    }

    async fn fetch_offsets(
        &self,
        req: Request<pb::FetchOffsetsRequest>,
    ) -> Result<Response<pb::FetchOffsetsResponse>, Status> {
        let req = req.into_inner();
        let partitions = (!req.partitions.is_empty()).then(|| {
            let meta = self.broker.metadata();
            let mut tps = Vec::new();
            for tp in &req.partitions {
                if tp.partitions.is_empty() {
                    let n = meta
                        .topics
                        .get(&tp.topic)
                        .map_or(0, |t| t.partitions.len() as u32);
                    tps.extend((0..n).map(|p| (tp.topic.clone(), p)));
                } else {
                    tps.extend(tp.partitions.iter().map(|p| (tp.topic.clone(), *p)));
                }
            }
            tps
        });
        let offsets = self
            .core
            .fetch_offsets(&req.group, partitions)
            .await
            .map_err(status)?
            .into_iter()
            .map(|c| pb::CommittedOffset {
                topic: c.topic,
                partition: c.partition,
                committed: c.offset.is_some(),
                offset: c.offset.unwrap_or(0),
                metadata: c.metadata,
            })
            .collect();
        Ok(Response::new(pb::FetchOffsetsResponse {
            error: None,
            offsets,
        }))
    }

    async fn list_groups(
        &self,
        req: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        // Ask the coordinator of every offsets partition (this node or another; a forwarded
        // request is answered from this node's partitions only).
        let local_only = req.metadata().contains_key(LOCAL_ONLY);
        let groups = self
            .core
            .list_groups(local_only)
            .await
            .map_err(status)?
            .into_iter()
            .map(|g| pb::GroupListing {
                group: g.group,
                state: g.state,
                members: g.members,
                coordinator: g.coordinator,
            })
            .collect();
        Ok(Response::new(pb::ListGroupsResponse { groups }))
    }

    async fn describe_group(
        &self,
        req: Request<pb::DescribeGroupRequest>,
    ) -> Result<Response<pb::DescribeGroupResponse>, Status> {
        let group = req.into_inner().group;
        let r = self.describe(&group).await;
        answer(r, |e| pb::DescribeGroupResponse {
            error: Some(e),
            group,
            ..Default::default()
        })
    }

    async fn delete_group(
        &self,
        req: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        let group = req.into_inner().group;
        let error = match self.core.delete_group(&group).await {
            Ok(()) => None,
            Err(e @ (NodeError::NotCoordinator { .. } | NodeError::CoordinatorNotAvailable(_))) => {
                return Err(status(e))
            }
            Err(e) => err(e),
        };
        Ok(Response::new(pb::DeleteGroupResponse { error }))
    }

    async fn reset_offsets(
        &self,
        req: Request<pb::ResetOffsetsRequest>,
    ) -> Result<Response<pb::ResetOffsetsResponse>, Status> {
        answer(self.reset(req.into_inner()).await, |e| {
            pb::ResetOffsetsResponse {
                error: Some(e),
                ..Default::default()
            }
        })
    }
}
