//! Leadership reports: which node leads each partition, recorded in the cluster metadata as a
//! hint for nodes without a replica (client routing, Kafka `Metadata`, group coordinators).
//!
//! One task per node (not one per replica) looks over the local replicas once a second, and
//! reports those this node leads at a term newer than the metadata records, in
//! [`MetaCommand::SetLeaders`] batches of at most [`MetaCommand::LEADERS_PER_COMMAND_MAX`]. An
//! idle node does one pass a second that allocates nothing; after a node failure thousands of
//! leaderships move with a few metadata writes (each write makes every node reconcile). A report
//! that fails is made again on the next pass.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use skein_raft::{GroupId, MetaCommand, MetaOutcome, NodeId, METADATA_GROUP_ID};

use super::Broker;

/// How often the local replicas are looked over.
const SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// After a wake-up (the reconciler opened replicas), how soon to look again while some replica
/// has no leader yet: new groups elect within a few election timeouts.
const FOLLOW_UP_INTERVAL: Duration = Duration::from_millis(100);
/// Most such quick looks after one wake-up.
const FOLLOW_UPS_MAX: u32 = 20;
/// How long one report waits for the metadata group to have a leader.
const PROPOSE_PATIENCE: Duration = Duration::from_secs(5);

const _: () = assert!(FOLLOW_UP_INTERVAL.as_millis() * 2 <= SCAN_INTERVAL.as_millis());

/// What a replica knows of its group's leadership: the leader (if any) and the current term.
type Leadership = (Option<NodeId>, u64);

/// Reports this node's leaderships until the broker stops. Woken early by
/// [`Broker::wake_leadership_reporter`].
pub(super) async fn run(broker: Arc<Broker>) {
    let mut reporter = Reporter::new(broker.node_id());
    let mut follow_ups = 0u32;
    loop {
        let woken = broker.leadership_wake.notified();
        if broker.stopping.load(Ordering::Acquire) {
            return;
        }
        let meta = broker.metadata();
        // The registry's table of leaderships, not each replica's openraft metrics: reading
        // 10,000 groups' metrics every second was a third of an idle node's CPU.
        let mut local = broker.registry.leaderships();
        local.retain(|g, _| *g != METADATA_GROUP_ID);
        let leaderless = reporter.select(
            local.iter().map(|(g, l)| (*g, *l)),
            |g| local.get(&g).copied(),
            &meta.leaders,
        );
        drop(meta);
        reporter.report(&broker).await;
        let wait = if leaderless && follow_ups > 0 {
            follow_ups -= 1;
            FOLLOW_UP_INTERVAL
        } else {
            SCAN_INTERVAL
        };
        if tokio::time::timeout(wait, woken).await.is_ok() {
            follow_ups = FOLLOW_UPS_MAX;
        }
    }
}

/// The reporter's memory between passes.
#[derive(Debug)]
struct Reporter {
    me: NodeId,
    /// Leaderships reported whose term the applied metadata does not show yet: not reported
    /// again in the same term (the cache may lag; a refused report would repeat forever).
    proposed: HashMap<GroupId, u64>,
    /// `(group, leader, term)` to report on this pass (kept to reuse its buffer).
    pending: Vec<(GroupId, NodeId, u64)>,
}

impl Reporter {
    fn new(me: NodeId) -> Self {
        Reporter {
            me,
            proposed: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// Fills `pending` with the groups of `replicas` this node leads at a term newer than
    /// `recorded`, not reported in that term yet; `lookup` finds one local replica's view.
    /// Returns whether some replica knows no leader.
    fn select(
        &mut self,
        replicas: impl Iterator<Item = (GroupId, Leadership)>,
        lookup: impl Fn(GroupId) -> Option<Leadership>,
        recorded: &BTreeMap<GroupId, (NodeId, u64)>,
    ) -> bool {
        let me = self.me;
        let unrecorded = |g: GroupId, term: u64| recorded.get(&g).is_none_or(|(_, t)| term > *t);
        if !self.proposed.is_empty() {
            // Forget what the metadata shows, and leaderships lost or replicas gone since.
            self.proposed
                .retain(|g, t| unrecorded(*g, *t) && lookup(*g) == Some((Some(me), *t)));
        }
        self.pending.clear();
        let mut leaderless = false;
        for (group, (leader, term)) in replicas {
            leaderless |= leader.is_none();
            if leader == Some(me)
                && unrecorded(group, term)
                && self.proposed.get(&group) != Some(&term)
            {
                self.pending.push((group, me, term));
            }
        }
        leaderless
    }

    /// Proposes `pending` in batches; stops at the first failure (the next pass retries).
    async fn report(&mut self, broker: &Broker) {
        for chunk in self.pending.chunks(MetaCommand::LEADERS_PER_COMMAND_MAX) {
            let cmd = MetaCommand::SetLeaders {
                leaders: chunk.to_vec(),
            };
            match broker.propose_patiently(&cmd, PROPOSE_PATIENCE).await {
                Ok(outcome) => {
                    if outcome == MetaOutcome::Ok {
                        tracing::debug!(leaderships = chunk.len(), "reported leaderships");
                    } else {
                        tracing::warn!(leaderships = chunk.len(), ?outcome, "the metadata did not take a leadership report; not repeated in these terms");
                    }
                    self.proposed
                        .extend(chunk.iter().map(|(g, _, term)| (*g, *term)));
                }
                Err(e) => {
                    tracing::debug!(leaderships = chunk.len(), error = %e, "reporting leaderships; will retry");
                    return;
                }
            }
            if broker.stopping.load(Ordering::Acquire) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(
        r: &mut Reporter,
        local: &BTreeMap<GroupId, Leadership>,
        recorded: &BTreeMap<GroupId, (NodeId, u64)>,
    ) -> bool {
        r.select(
            local.iter().map(|(g, l)| (*g, *l)),
            |g| local.get(&g).copied(),
            recorded,
        )
    }

    #[test]
    fn reports_leaderships_newer_than_recorded_once_per_term() {
        let mut r = Reporter::new(1);
        let mut local = BTreeMap::from([
            (1, (Some(1), 3)), // led here, not recorded
            (2, (Some(1), 2)), // led here, recorded in this term
            (3, (Some(1), 5)), // led here, recorded in an older term
            (4, (Some(2), 4)), // led elsewhere
            (5, (Some(1), 1)), // led here, a newer term is recorded (this view is stale)
        ]);
        let mut recorded = BTreeMap::from([(2, (1, 2)), (3, (2, 4)), (5, (3, 2))]);
        assert!(!select(&mut r, &local, &recorded));
        assert_eq!(r.pending, [(1, 1, 3), (3, 1, 5)]);

        // Reported but the metadata does not show it yet: not reported again in that term.
        r.proposed.extend([(1, 3), (3, 5)]);
        assert!(!select(&mut r, &local, &recorded));
        assert!(r.pending.is_empty());

        // A new term is reported again; what the metadata shows is forgotten.
        local.insert(1, (Some(1), 4));
        recorded.insert(3, (1, 5));
        local.insert(6, (None, 1));
        assert!(select(&mut r, &local, &recorded), "group 6 has no leader");
        assert_eq!(r.pending, [(1, 1, 4)]);
        assert!(r.proposed.is_empty(), "{:?}", r.proposed);
    }

    #[test]
    fn forgets_reports_of_replicas_gone_or_lost() {
        let mut r = Reporter::new(1);
        let mut local = BTreeMap::from([(1, (Some(1), 3)), (2, (Some(1), 3))]);
        let recorded = BTreeMap::new();
        r.proposed.extend([(1, 3), (2, 3)]);
        local.remove(&1);
        local.insert(2, (Some(2), 4));
        select(&mut r, &local, &recorded);
        assert!(r.proposed.is_empty());
        assert!(r.pending.is_empty());
    }
}
