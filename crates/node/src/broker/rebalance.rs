//! Preferred leaders: after a node failure, leadership moves to the survivors and stays there
//! when the node comes back. Like Kafka's `auto.leader.rebalance.enable`, each node takes back
//! the partitions it is the *preferred* leader of (the first node of the partition's replica
//! list in the cluster metadata), so that leadership spreads back across the nodes.
//!
//! One task per node ([`run`]) looks over the local replicas every [`PERIOD_LEASES`] leader
//! leases (`election_timeout_min + heartbeat_interval`). It starts an election
//! ([`skein_raft::Group::campaign`]) in a group when this node is its preferred leader, another
//! node leads it, and it is idle and caught up here: its last log index did not change since the
//! previous pass (the pass is longer than the lease, so the voters' leases have expired and they
//! grant the vote) and every entry of it is applied (this replica heard the commit of its last
//! entry, so its log is as long as the leader's as far as a follower can tell). A busy group is
//! left with its current leader until it pauses. At most [`CAMPAIGNS_PER_PASS_MAX`] elections
//! start per pass, so a restarted node with thousands of preferred partitions takes them back
//! gradually instead of in an election storm; a group campaigned for must be idle over a whole
//! pass again before the next attempt. Nothing starts while the node is not ready or stopping.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use skein_raft::{ClusterMetadata, GroupId, NodeId};

use super::{Broker, LocalReplica};
use crate::config::RaftTiming;

/// Pass period in leader leases (`election_timeout_min + heartbeat_interval`): above one, so
/// that a group idle over a whole pass has let its voters' leases expire, and a few more so
/// that a group written now and then is not mistaken for an idle one.
const PERIOD_LEASES: u32 = 4;
/// Most elections one pass starts. Each election costs a vote round, a blank entry (an fsync on
/// every replica) and a leadership report; 64 per pass moves 1,000 partitions back within 16
/// passes (80 s with the default timing) while keeping the burst far below what a node failure
/// causes anyway.
const CAMPAIGNS_PER_PASS_MAX: usize = 64;

const _: () = assert!(PERIOD_LEASES > 1 && CAMPAIGNS_PER_PASS_MAX > 0);

/// How often the rebalancer looks over the local replicas.
fn pass_period(raft: &RaftTiming) -> Duration {
    (raft.election_timeout_min + raft.heartbeat_interval) * PERIOD_LEASES
}

/// Takes back preferred leaderships until the broker stops or is dropped (holds the broker only
/// during a pass).
pub(super) async fn run(broker: Weak<Broker>) {
    let Some(period) = broker.upgrade().map(|b| pass_period(&b.config.raft)) else {
        return;
    };
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once: no pass right after start.
    ticker.tick().await;
    let mut rebalancer = Rebalancer::new();
    loop {
        ticker.tick().await;
        let Some(b) = broker.upgrade() else { return };
        if b.stopping.load(Ordering::Acquire) {
            return;
        }
        if b.not_ready_reason().is_some() {
            // Observe again from scratch once ready: a whole idle pass before any election.
            rebalancer.forget();
            continue;
        }
        let due = rebalancer.pass(&b);
        campaign(&b, &due).await;
    }
}

/// What the rebalancer needs to know of one local replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    /// The preferred leader in the metadata (first replica), if the partition is known.
    preferred: Option<NodeId>,
    /// The leader this replica knows of.
    leader: Option<NodeId>,
    /// Index of the last entry in this replica's log.
    last_log_index: Option<u64>,
    /// Index of the last entry this replica applied (committed).
    last_applied: Option<u64>,
}

/// The view of replica `r`, whose preferred leader `meta` names.
fn view(r: &LocalReplica, meta: &ClusterMetadata) -> View {
    let preferred = meta
        .topics
        .get(&r.topic)
        .and_then(|t| t.partitions.get(r.partition as usize))
        .and_then(|a| a.replicas.first().copied());
    let m = r.group.raft().metrics();
    let m = m.borrow();
    View {
        preferred,
        leader: m.current_leader,
        last_log_index: m.last_log_index,
        last_applied: m.last_applied.map(|l| l.index),
    }
}

/// The rebalancer's memory between passes.
#[derive(Debug, Default)]
struct Rebalancer {
    /// The last log index of each preferred replica on the previous pass.
    seen: HashMap<GroupId, Option<u64>>,
    /// The same, being filled by this pass (kept to reuse its buffer).
    next: HashMap<GroupId, Option<u64>>,
}

impl Rebalancer {
    fn new() -> Self {
        Self::default()
    }

    /// Forgets every observation: each group must be idle over a whole pass again.
    fn forget(&mut self) {
        self.seen.clear();
    }

    /// One pass over `broker`'s local replicas: the replicas to campaign in now.
    fn pass(&mut self, broker: &Broker) -> Vec<LocalReplica> {
        let meta = broker.metadata();
        let me = broker.node_id();
        broker.with_replicas(|replicas| {
            let due = self.select(me, replicas.iter().map(|(g, r)| (*g, r)), |r| {
                view(r, &meta)
            });
            due.into_iter().cloned().collect()
        })
    }

    /// Observes every replica of one pass (`view` tells what it knows); the replicas due for an
    /// election, at most [`CAMPAIGNS_PER_PASS_MAX`] (the others stay due for the next pass).
    fn select<'a, R>(
        &mut self,
        me: NodeId,
        replicas: impl Iterator<Item = (GroupId, &'a R)>,
        view: impl Fn(&R) -> View,
    ) -> Vec<&'a R> {
        let mut due = Vec::new();
        for (g, r) in replicas {
            if self.observe(me, g, view(r)) && due.len() < CAMPAIGNS_PER_PASS_MAX {
                // Campaigned for: idle over a whole pass again before the next attempt.
                self.next.remove(&g);
                due.push(r);
            }
        }
        std::mem::swap(&mut self.seen, &mut self.next);
        self.next.clear();
        due
    }

    /// Records `group`'s view `v` for the next pass; whether node `me` should campaign in it:
    /// `me` is its preferred leader, another node leads it, and it is idle and caught up here.
    fn observe(&mut self, me: NodeId, group: GroupId, v: View) -> bool {
        if v.preferred != Some(me) {
            return false;
        }
        self.next.insert(group, v.last_log_index);
        let led_elsewhere = v.leader.is_some_and(|l| l != me);
        let idle = self.seen.get(&group) == Some(&v.last_log_index);
        let caught_up = v.last_log_index.is_some() && v.last_applied == v.last_log_index;
        led_elsewhere && idle && caught_up
    }
}

/// Starts an election in each of `due` (stops early when the broker stops).
async fn campaign(broker: &Broker, due: &[LocalReplica]) {
    if due.is_empty() {
        return;
    }
    let mut started = 0usize;
    for r in due {
        if broker.stopping.load(Ordering::Acquire) {
            return;
        }
        let leader = r.group.leader();
        match r.group.campaign().await {
            Ok(()) => {
                started += 1;
                tracing::debug!(topic = %r.topic, partition = r.partition, group = r.group.id(), ?leader, "campaigning to lead a preferred partition");
            }
            Err(e) => {
                // The group stopped: the reconciler retires and reopens it.
                tracing::debug!(topic = %r.topic, partition = r.partition, group = r.group.id(), error = %e, "campaigning to lead a preferred partition");
            }
        }
    }
    broker
        .metrics
        .preferred_leader_campaigns
        .inc_by(started as u64);
    tracing::info!(
        campaigns = started,
        limit = CAMPAIGNS_PER_PASS_MAX,
        "campaigned to lead partitions this node is the preferred leader of"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(preferred: NodeId, leader: Option<NodeId>, last: u64, applied: u64) -> View {
        View {
            preferred: Some(preferred),
            leader,
            last_log_index: Some(last),
            last_applied: Some(applied),
        }
    }

    /// One pass of node 1 over `views`; the groups due.
    fn pass(r: &mut Rebalancer, views: &[(GroupId, View)]) -> Vec<GroupId> {
        let due = r.select(1, views.iter().map(|(g, v)| (*g, v)), |v| *v);
        let mut groups: Vec<GroupId> = views
            .iter()
            .filter(|(_, v)| due.iter().any(|d| std::ptr::eq(*d, v)))
            .map(|(g, _)| *g)
            .collect();
        groups.sort_unstable();
        groups
    }

    #[test]
    fn campaigns_only_in_idle_caught_up_preferred_groups_led_elsewhere() {
        let mut r = Rebalancer::new();
        let views = [
            (1, v(1, Some(2), 5, 5)), // due after one idle pass
            (2, v(2, Some(3), 5, 5)), // another node is preferred
            (3, v(1, Some(1), 5, 5)), // led here already
            (4, v(1, None, 5, 5)),    // no leader: liveness elects
            (5, v(1, Some(2), 6, 5)), // an entry not committed here yet
        ];
        assert!(pass(&mut r, &views).is_empty(), "never on the first pass");
        assert_eq!(pass(&mut r, &views), [1]);
    }

    #[test]
    fn a_group_written_during_the_pass_is_not_idle() {
        let mut r = Rebalancer::new();
        assert!(pass(&mut r, &[(1, v(1, Some(2), 5, 5))]).is_empty());
        assert!(pass(&mut r, &[(1, v(1, Some(2), 7, 7))]).is_empty());
        assert_eq!(pass(&mut r, &[(1, v(1, Some(2), 7, 7))]), [1]);
    }

    #[test]
    fn forgetting_needs_a_whole_idle_pass_again() {
        let mut r = Rebalancer::new();
        let views = [(1, v(1, Some(2), 5, 5))];
        pass(&mut r, &views);
        r.forget();
        assert!(pass(&mut r, &views).is_empty());
        assert_eq!(pass(&mut r, &views), [1]);
    }

    #[test]
    fn a_group_campaigned_for_waits_a_whole_idle_pass_again() {
        let mut r = Rebalancer::new();
        let views = [(1, v(1, Some(2), 5, 5))];
        pass(&mut r, &views);
        assert_eq!(pass(&mut r, &views), [1]);
        assert!(
            pass(&mut r, &views).is_empty(),
            "the election may be under way"
        );
        assert_eq!(pass(&mut r, &views), [1], "it failed: try again");
    }

    #[test]
    fn at_most_the_limit_per_pass_and_the_rest_on_the_next() {
        let mut r = Rebalancer::new();
        let n = CAMPAIGNS_PER_PASS_MAX as u64 + 10;
        let views: Vec<_> = (0..n).map(|g| (g, v(1, Some(2), 5, 5))).collect();
        pass(&mut r, &views);
        let first = pass(&mut r, &views);
        assert_eq!(first.len(), CAMPAIGNS_PER_PASS_MAX);
        let second = pass(&mut r, &views);
        assert_eq!(second.len(), 10);
        assert!(second.iter().all(|g| !first.contains(g)));
    }

    #[test]
    fn replicas_gone_are_forgotten() {
        let mut r = Rebalancer::new();
        pass(
            &mut r,
            &[(1, v(1, Some(2), 5, 5)), (2, v(1, Some(1), 5, 5))],
        );
        pass(&mut r, &[(2, v(1, Some(1), 5, 5))]);
        assert!(!r.seen.contains_key(&1));
        assert!(r.seen.contains_key(&2));
    }

    #[test]
    fn the_period_is_several_leases() {
        let t = RaftTiming {
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            heartbeat_interval: Duration::from_millis(250),
        };
        assert_eq!(pass_period(&t), Duration::from_millis(5000));
    }
}
