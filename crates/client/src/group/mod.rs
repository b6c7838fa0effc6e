//! Consumer groups: the [`GroupConsumer`], the group admin calls on [`crate::Admin`], and the
//! routing of group calls to the group's coordinator.
//!
//! The pure parts (what a new assignment revokes and adds, which positions need a commit) live
//! here, beside their tests; the network parts in `coordinator`, `consumer` and `admin`.

pub(crate) mod admin;
pub(crate) mod consumer;
pub(crate) mod coordinator;

use std::collections::{BTreeMap, BTreeSet};

use skein_proto::v1 as pb;

use crate::config::AssignmentStrategy;
use crate::record::TopicPartition;

pub(crate) fn strategy_to_proto(s: AssignmentStrategy) -> pb::AssignmentStrategy {
    match s {
        AssignmentStrategy::Range => pb::AssignmentStrategy::Range,
        AssignmentStrategy::RoundRobin => pb::AssignmentStrategy::RoundRobin,
        AssignmentStrategy::CooperativeSticky => pb::AssignmentStrategy::CooperativeSticky,
    }
}

pub(crate) fn strategy_from_proto(n: i32) -> AssignmentStrategy {
    match pb::AssignmentStrategy::try_from(n) {
        Ok(pb::AssignmentStrategy::RoundRobin) => AssignmentStrategy::RoundRobin,
        Ok(pb::AssignmentStrategy::CooperativeSticky) => AssignmentStrategy::CooperativeSticky,
        // An unknown future strategy is shown as the default.
        Ok(pb::AssignmentStrategy::Range) | Err(_) => AssignmentStrategy::Range,
    }
}

/// Flattens the wire form (topic -> partitions) into partitions.
pub(crate) fn topic_partitions_from_proto(v: Vec<pb::TopicPartitions>) -> Vec<TopicPartition> {
    v.into_iter()
        .flat_map(|t| {
            let topic = t.topic;
            t.partitions
                .into_iter()
                .map(move |p| TopicPartition::new(topic.clone(), p))
        })
        .collect()
}

/// Groups partitions by topic for the wire.
pub(crate) fn topic_partitions_to_proto(tps: &[TopicPartition]) -> Vec<pb::TopicPartitions> {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for tp in tps {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    by_topic
        .into_iter()
        .map(|(topic, mut partitions)| {
            partitions.sort_unstable();
            partitions.dedup();
            pb::TopicPartitions {
                topic: topic.to_string(),
                partitions,
            }
        })
        .collect()
}

/// How a new assignment changes what a member owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AssignmentChange {
    /// Owned before, not any more: revoke (commit first).
    pub revoked: Vec<TopicPartition>,
    /// New: start at the committed offset (or the reset policy).
    pub added: Vec<TopicPartition>,
    /// Owned before and after: keep the position.
    pub kept: Vec<TopicPartition>,
}

pub(crate) fn diff(
    owned: &BTreeSet<TopicPartition>,
    next: &BTreeSet<TopicPartition>,
) -> AssignmentChange {
    AssignmentChange {
        revoked: owned.difference(next).cloned().collect(),
        added: next.difference(owned).cloned().collect(),
        kept: owned.intersection(next).cloned().collect(),
    }
}

/// What a member gives up when a rebalance starts, before it joins again: everything with the
/// eager strategies (range, round-robin), nothing with cooperative-sticky (it learns after the
/// rebalance which partitions move, and gives up only those).
pub(crate) fn revoke_before_join(
    strategy: AssignmentStrategy,
    owned: &BTreeSet<TopicPartition>,
) -> Vec<TopicPartition> {
    if strategy.is_cooperative() {
        Vec::new()
    } else {
        owned.iter().cloned().collect()
    }
}

/// The positions that differ from what the group has committed (what a commit must send).
pub(crate) fn uncommitted(
    positions: &BTreeMap<TopicPartition, u64>,
    committed: &BTreeMap<TopicPartition, u64>,
) -> BTreeMap<TopicPartition, u64> {
    positions
        .iter()
        .filter(|(tp, p)| committed.get(*tp) != Some(*p))
        .map(|(tp, p)| (tp.clone(), *p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ps: &[u32]) -> BTreeSet<TopicPartition> {
        ps.iter().map(|p| TopicPartition::new("t", *p)).collect()
    }

    fn tps(ps: &[u32]) -> Vec<TopicPartition> {
        ps.iter().map(|p| TopicPartition::new("t", *p)).collect()
    }

    #[test]
    fn diff_splits_revoked_added_and_kept() {
        let c = diff(&set(&[0, 1, 2]), &set(&[1, 2, 3]));
        assert_eq!(c.revoked, tps(&[0]));
        assert_eq!(c.added, tps(&[3]));
        assert_eq!(c.kept, tps(&[1, 2]));
        let c = diff(&set(&[]), &set(&[4]));
        assert_eq!((c.revoked, c.added, c.kept), (vec![], tps(&[4]), vec![]));
    }

    #[test]
    fn eager_revokes_all_before_joining_cooperative_only_what_moves() {
        let owned = set(&[0, 1, 2]);
        assert_eq!(
            revoke_before_join(AssignmentStrategy::Range, &owned),
            tps(&[0, 1, 2])
        );
        assert_eq!(
            revoke_before_join(AssignmentStrategy::RoundRobin, &owned),
            tps(&[0, 1, 2])
        );
        assert!(revoke_before_join(AssignmentStrategy::CooperativeSticky, &owned).is_empty());
        // Eager: after revoking everything the new assignment is all "added" (callbacks see
        // every partition); cooperative: only the moved partition is revoked, 1 and 2 keep
        // their positions.
        let eager = diff(&BTreeSet::new(), &set(&[1, 2]));
        assert_eq!(eager.added, tps(&[1, 2]));
        let coop = diff(&owned, &set(&[1, 2]));
        assert_eq!((coop.revoked, coop.kept), (tps(&[0]), tps(&[1, 2])));
        assert!(coop.added.is_empty());
    }

    #[test]
    fn only_moved_positions_are_committed() {
        let positions: BTreeMap<TopicPartition, u64> = [
            (TopicPartition::new("t", 0), 5),
            (TopicPartition::new("t", 1), 9),
        ]
        .into();
        let committed: BTreeMap<TopicPartition, u64> = [
            (TopicPartition::new("t", 0), 5),
            (TopicPartition::new("t", 1), 7),
        ]
        .into();
        let c = uncommitted(&positions, &committed);
        assert_eq!(c, [(TopicPartition::new("t", 1), 9)].into());
        assert_eq!(uncommitted(&positions, &BTreeMap::new()), positions);
    }

    #[test]
    fn wire_partitions_round_trip_grouped_by_topic() {
        let input = vec![
            TopicPartition::new("b", 1),
            TopicPartition::new("a", 2),
            TopicPartition::new("b", 0),
            TopicPartition::new("b", 1),
        ];
        let wire = topic_partitions_to_proto(&input);
        assert_eq!(wire.len(), 2);
        assert_eq!(
            (wire[1].topic.as_str(), wire[1].partitions.clone()),
            ("b", vec![0, 1])
        );
        let back = topic_partitions_from_proto(wire);
        assert_eq!(
            back,
            vec![
                TopicPartition::new("a", 2),
                TopicPartition::new("b", 0),
                TopicPartition::new("b", 1)
            ]
        );
        for s in [
            AssignmentStrategy::Range,
            AssignmentStrategy::RoundRobin,
            AssignmentStrategy::CooperativeSticky,
        ] {
            assert_eq!(strategy_from_proto(strategy_to_proto(s) as i32), s);
        }
        assert_eq!(strategy_from_proto(99), AssignmentStrategy::Range);
    }
}
