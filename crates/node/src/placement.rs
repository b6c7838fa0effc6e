//! Replica placement: which nodes hold each partition, spreading replicas and leaders evenly.
//!
//! The first replica of a partition is its preferred leader. Placement is round-robin over the
//! nodes sorted by how many replicas (then preferred leaderships) they already hold, so that a
//! new topic evens out the load the existing ones left.

use std::collections::BTreeMap;

use crate::error::{NodeError, Result};

/// Load of a node: (replicas held, preferred leaderships held).
pub type Load = BTreeMap<u64, (usize, usize)>;

/// Chooses replicas for `partitions` partitions with `replication_factor` replicas each over
/// `nodes`, given the current `load`. Replica `0` of each partition is its preferred leader.
pub fn place(
    nodes: &[u64],
    load: &Load,
    partitions: u32,
    replication_factor: u32,
) -> Result<Vec<Vec<u64>>> {
    let rf = replication_factor as usize;
    if rf == 0 || rf > nodes.len() {
        return Err(NodeError::InvalidReplicationFactor {
            requested: replication_factor,
            nodes: nodes.len(),
        });
    }
    let mut load: Load = nodes
        .iter()
        .map(|n| (*n, load.get(n).copied().unwrap_or((0, 0))))
        .collect();
    // Phase 1: preferred leaders, each to the node leading the fewest (then holding the fewest
    // replicas); counted as replicas at once.
    let mut leaders = Vec::with_capacity(partitions as usize);
    for _ in 0..partitions {
        let leader = *load
            .iter()
            .min_by_key(|(id, (r, l))| (*l, *r, **id))
            .map(|(id, _)| id)
            .expect("invariant: at least one node (rf >= 1 and rf <= nodes)");
        let e = load
            .get_mut(&leader)
            .expect("invariant: the leader is a node");
        e.0 += 1;
        e.1 += 1;
        leaders.push(leader);
    }
    // Phase 2: followers, each to the nodes holding the fewest replicas.
    let mut out = Vec::with_capacity(partitions as usize);
    for leader in leaders {
        let mut others: Vec<(u64, usize)> = load
            .iter()
            .filter(|(id, _)| **id != leader)
            .map(|(id, (r, _))| (*id, *r))
            .collect();
        others.sort_by_key(|(id, r)| (*r, *id));
        let mut replicas = vec![leader];
        for (id, _) in others.into_iter().take(rf - 1) {
            load.get_mut(&id).expect("invariant: followers are nodes").0 += 1;
            replicas.push(id);
        }
        out.push(replicas);
    }
    // Fix-up: move follower replicas from the most to the least loaded node while that helps.
    // Each move lowers the spread, so this ends; leaders never move.
    loop {
        let (max_id, max_r) = load
            .iter()
            .max_by_key(|(id, (r, _))| (*r, std::cmp::Reverse(**id)))
            .map(|(id, (r, _))| (*id, *r))
            .expect("invariant: at least one node");
        let (min_id, min_r) = load
            .iter()
            .min_by_key(|(id, (r, _))| (*r, **id))
            .map(|(id, (r, _))| (*id, *r))
            .expect("invariant: at least one node");
        if max_r <= min_r + 1 {
            break;
        }
        let Some(part) = out
            .iter_mut()
            .find(|r| r[1..].contains(&max_id) && !r.contains(&min_id))
        else {
            break;
        };
        for x in part.iter_mut().skip(1) {
            if *x == max_id {
                *x = min_id;
            }
        }
        load.get_mut(&max_id).expect("invariant: a node").0 -= 1;
        load.get_mut(&min_id).expect("invariant: a node").0 += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn six_partitions_on_three_nodes_spread_evenly() {
        let p = place(&[1, 2, 3], &Load::new(), 6, 3).expect("place");
        let mut leaders = BTreeMap::new();
        for r in &p {
            assert_eq!(r.len(), 3);
            *leaders.entry(r[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    }

    #[test]
    fn too_many_replicas_is_refused() {
        assert!(matches!(
            place(&[1, 2], &Load::new(), 1, 3),
            Err(NodeError::InvalidReplicationFactor {
                requested: 3,
                nodes: 2
            })
        ));
    }

    proptest! {
        #[test]
        fn replicas_are_distinct_and_load_is_balanced(n in 1usize..7, parts in 1u32..40, rf_seed in 0u32..10) {
            let nodes: Vec<u64> = (1..=n as u64).collect();
            let rf = 1 + rf_seed % n as u32;
            let p = place(&nodes, &Load::new(), parts, rf).expect("place");
            let mut replicas = BTreeMap::new();
            let mut leaders = BTreeMap::new();
            for r in &p {
                let mut s = r.clone();
                s.sort_unstable();
                s.dedup();
                prop_assert_eq!(s.len(), rf as usize);
                for x in r { *replicas.entry(*x).or_insert(0usize) += 1; }
                *leaders.entry(r[0]).or_insert(0usize) += 1;
            }
            let max = replicas.values().max().copied().unwrap_or(0);
            let min = nodes.iter().map(|x| replicas.get(x).copied().unwrap_or(0)).min().unwrap_or(0);
            prop_assert!(max - min <= 1, "replicas {:?}", replicas);
            let lmax = leaders.values().max().copied().unwrap_or(0);
            let lmin = nodes.iter().map(|x| leaders.get(x).copied().unwrap_or(0)).min().unwrap_or(0);
            prop_assert!(lmax - lmin <= 1, "leaders {:?}", leaders);
        }
    }
}
