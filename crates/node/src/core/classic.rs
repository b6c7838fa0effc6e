//! Kafka's classic group membership over the coordinator (`groups/classic.rs` holds the state
//! machine): find the group's offsets partition, refuse a group of the other kind, apply the
//! call under the partition's lock, then wait for the rebalance without holding the lock, for a
//! bounded time.

use std::time::Duration;

use tokio::time::Instant;

use super::BrokerCore;
use crate::error::{NodeError, Result};
use crate::groups::classic::{
    validate_join, ClassicGroup, ClassicState, JoinOutcome, JoinRequest, Reply, SyncOutcome,
    GROUPS_MAX, REBALANCE_TIMEOUT_MAX,
};
use crate::groups::Led;

/// How long past its own rebalance timeout a join or sync waits before it answers
/// REBALANCE_IN_PROGRESS (the group timer completes phases at their deadline, every 100 ms).
const WAIT_SLACK: Duration = Duration::from_secs(5);

/// Waits for a deferred answer, at most `bound`; a dropped or late answer means "join again".
async fn settle<T>(reply: Reply<T>, bound: Duration, group: &str) -> Result<T> {
    match reply {
        Reply::Now(r) => r,
        Reply::Later(rx) => match tokio::time::timeout(bound, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) | Err(_) => Err(NodeError::RebalanceInProgress(group.into())),
        },
    }
}

/// Forgets a classic group once it has neither members nor member ids handed out.
fn prune(led: &mut Led, group: &str) {
    if led
        .state
        .classic
        .get(group)
        .is_some_and(|g| g.is_empty() && g.state == ClassicState::Empty)
    {
        led.state.classic.remove(group);
    }
}

/// The classic group `group`, or UNKNOWN_MEMBER_ID for `member`.
fn classic<'a>(led: &'a mut Led, group: &str, member: &str) -> Result<&'a mut ClassicGroup> {
    led.state
        .classic
        .get_mut(group)
        .ok_or_else(|| NodeError::UnknownMember {
            group: group.into(),
            member: member.into(),
        })
}

/// The longest a member of `g` waits for a phase to complete.
fn wait_bound(g: &ClassicGroup) -> Duration {
    let longest = g.members.values().map(|m| m.rebalance_timeout).max();
    longest.unwrap_or(REBALANCE_TIMEOUT_MAX) + WAIT_SLACK
}

impl BrokerCore {
    /// JoinGroup of Kafka's classic protocol; completes when the join phase does.
    pub async fn classic_join(&self, group: &str, req: JoinRequest) -> Result<JoinOutcome> {
        validate_join(group, &req)?;
        let mut led = self.broker.coordinate(group).await?;
        if led
            .state
            .groups
            .get(group)
            .is_some_and(|g| !g.members.is_empty())
        {
            return Err(NodeError::InconsistentGroupProtocol {
                group: group.into(),
                reason: "the group has Skein-native members (server-side assignment)".into(),
            });
        }
        if !led.state.classic.contains_key(group) && led.state.classic.len() >= GROUPS_MAX {
            self.broker.metrics.bounds.groups_refused.inc();
            return Err(NodeError::GroupMaxSize {
                group: group.into(),
                max: GROUPS_MAX,
            });
        }
        let coordinator = &self.broker.coordinator;
        let node = self.node_id();
        let client_id = req.client_id.clone();
        let g = led
            .state
            .classic
            .entry(group.to_owned())
            .or_insert_with(|| ClassicGroup::new(group, &req.protocol_type));
        let bound = req.rebalance_timeout.min(REBALANCE_TIMEOUT_MAX) + WAIT_SLACK;
        let reply = g.join(req, Instant::now(), || {
            coordinator.new_member_id(&client_id, node)
        });
        // A join refuses GROUP_MAX_SIZE only for the members bound (MEMBERS_MAX).
        if matches!(reply, Reply::Now(Err(NodeError::GroupMaxSize { .. }))) {
            self.broker.metrics.bounds.members_refused.inc();
        }
        prune(&mut led, group);
        drop(led);
        settle(reply, bound, group).await
    }

    /// SyncGroup: the leader brings the assignments; every member gets its own.
    pub async fn classic_sync(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, bytes::Bytes)>,
    ) -> Result<SyncOutcome> {
        let mut led = self.broker.coordinate(group).await?;
        let g = classic(&mut led, group, member_id)?;
        let bound = wait_bound(g);
        let reply = g.sync(
            member_id,
            instance_id,
            generation,
            assignments,
            Instant::now(),
        );
        drop(led);
        settle(reply, bound, group).await
    }

    /// Heartbeat.
    pub async fn classic_heartbeat(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<()> {
        let mut led = self.broker.coordinate(group).await?;
        classic(&mut led, group, member_id)?.heartbeat(
            member_id,
            instance_id,
            generation,
            Instant::now(),
        )
    }

    /// LeaveGroup: one result per (member id, instance id), in order.
    pub async fn classic_leave(
        &self,
        group: &str,
        members: Vec<(String, Option<String>)>,
    ) -> Result<Vec<Result<()>>> {
        let mut led = self.broker.coordinate(group).await?;
        let now = Instant::now();
        let results = members
            .iter()
            .map(|(id, instance)| {
                classic(&mut led, group, id).and_then(|g| g.leave(id, instance.as_deref(), now))
            })
            .collect();
        prune(&mut led, group);
        Ok(results)
    }
}
