//! Quiescent groups: node-level liveness instead of per-group heartbeats and election timers.
//!
//! Openraft's own heartbeats and election timers are off in every group. Instead, one task per
//! node ([`run`]) does, every `heartbeat_interval`:
//! - **Claims.** It sends each peer node one `NodeHeartbeat` naming every group this node leads
//!   and the term it leads it in. The receiver records when it last heard from the sender and
//!   those claims, and answers with the claimed groups whose local replica does not follow the
//!   sender at that term (a replica that restarted, was wiped, or never heard of the leader); the
//!   leader sends those groups one Raft heartbeat, which teaches them the leader or deposes it.
//! - **Elections.** A group is healthy on this node when this node leads it or a live peer (heard
//!   from within `election_timeout_min + heartbeat_interval`) claims it at a term at least the
//!   local one. A voter of an unhealthy group schedules an election: live voters are ranked by a
//!   hash of group and node (so leadership spreads evenly and two voters do not split the vote),
//!   the first elects at once, the next one a spread later if the group is still unhealthy, and
//!   so on; a failed attempt is retried after every live voter had its turn. Nobody elects
//!   before `election_timeout_min + heartbeat_interval` after start, so peers' claims arrive
//!   first.
//!
//! Writes replicate at once as before (openraft sends entries and the new commit index without
//! heartbeats), so an idle group costs nothing but a few bytes in a node heartbeat. Openraft's
//! leader lease (voters refuse a candidate while they heard from a leader recently) is set to the
//! time after which a silent node counts as dead, so an election that follows a node's death is
//! not refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use openraft::ServerState;
use skein_proto::v1 as pb;
use skein_proto::v1::raft_transport_client::RaftTransportClient;

use crate::config::RaftConfig;
use crate::registry::{GroupRef, Registry, Route};
use crate::types::{GroupId, NodeId};

/// What this node last heard from a peer node.
#[derive(Debug)]
struct Seen {
    at: Instant,
    /// Group -> the term the peer claims to lead it in.
    claims: HashMap<GroupId, u64>,
}

/// An unhealthy group this node will try to elect itself in.
#[derive(Debug)]
struct Pending {
    at: Instant,
    attempts: u32,
    round: u64,
}

/// Node-level liveness state: peers heard from and elections scheduled.
#[derive(Debug)]
pub(crate) struct Liveness {
    node: NodeId,
    started: Instant,
    interval: Duration,
    dead_after: Duration,
    spread: Duration,
    peers: Mutex<HashMap<NodeId, Seen>>,
    pending: Mutex<HashMap<GroupId, Pending>>,
}

/// What one scan found: the claims to send, where to send them, the groups to elect in.
#[derive(Default)]
struct Round {
    claims: pb::RaftNodeHeartbeat,
    peers: HashMap<NodeId, String>,
    elect: Vec<Route>,
}

/// A well-mixed 64-bit value of `a` and `b` (SplitMix64's finalizer), for ranking and jitter.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Liveness {
    pub(crate) fn new(node: NodeId, config: &RaftConfig) -> Self {
        let interval = Duration::from_millis(config.heartbeat_interval_ms);
        let spread = Duration::from_millis(
            (config.election_timeout_max_ms - config.election_timeout_min_ms)
                .max(2 * config.heartbeat_interval_ms),
        );
        Liveness {
            node,
            started: Instant::now(),
            interval,
            dead_after: config.dead_after(),
            spread,
            peers: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn alive(&self, seen: &Seen, now: Instant) -> bool {
        now.saturating_duration_since(seen.at) < self.dead_after
    }

    /// Records a heartbeat from `from` claiming `groups` at `terms`.
    pub(crate) fn receive(&self, from: NodeId, groups: &[u64], terms: &[u64]) {
        let claims = groups.iter().copied().zip(terms.iter().copied()).collect();
        let seen = Seen {
            at: Instant::now(),
            claims,
        };
        self.peers
            .lock()
            .expect("invariant: liveness lock is never poisoned")
            .insert(from, seen);
    }

    /// The peers heard from within the dead-after window.
    pub(crate) fn live_peers(&self) -> Vec<NodeId> {
        let now = Instant::now();
        let peers = self
            .peers
            .lock()
            .expect("invariant: liveness lock is never poisoned");
        let mut live: Vec<_> = peers
            .iter()
            .filter(|(_, s)| self.alive(s, now))
            .map(|(id, _)| *id)
            .collect();
        live.sort_unstable();
        live
    }

    /// This node's place among the live voters of `group` (0 elects first).
    fn rank(&self, group: GroupId, voters: &[NodeId], live: impl Fn(NodeId) -> bool) -> usize {
        let me = mix(group, self.node);
        voters
            .iter()
            .filter(|v| **v != self.node && live(**v) && mix(group, **v) < me)
            .count()
    }

    /// When the first election on this node is due for a group unhealthy `from` on.
    fn first_attempt(&self, group: GroupId, rank: usize, from: Instant) -> Instant {
        let earliest = (self.started + self.dead_after).max(from);
        earliest + self.spread * rank as u32 + self.jitter(group, 0)
    }

    /// A random-looking delay below one heartbeat interval, fixed per group and attempt.
    fn jitter(&self, group: GroupId, attempt: u32) -> Duration {
        let ms = self.interval.as_millis().max(1) as u64;
        Duration::from_millis(mix(group ^ u64::from(attempt), self.node) % ms)
    }

    /// Scans every group of `registry`: collects this node's claims and peers, and the groups
    /// due for an election.
    fn scan(&self, registry: &Registry, round_no: u64) -> Round {
        let now = Instant::now();
        let peers = self
            .peers
            .lock()
            .expect("invariant: liveness lock is never poisoned");
        let mut pending = self
            .pending
            .lock()
            .expect("invariant: liveness lock is never poisoned");
        let mut round = Round::default();
        round.claims.from = self.node;
        registry.for_each_group(|id, group| {
            let m = group.metrics();
            let m = m.borrow();
            for (peer, n) in m.membership_config.nodes() {
                if *peer != self.node && !round.peers.contains_key(peer) {
                    round.peers.insert(*peer, n.addr.clone());
                }
            }
            if m.state == ServerState::Leader {
                round.claims.lead_groups.push(id);
                round.claims.lead_terms.push(m.current_term);
                return;
            }
            let membership = m.membership_config.membership();
            if !membership.voter_ids().any(|v| v == self.node) {
                return;
            }
            let claimed = peers.values().any(|s| {
                self.alive(s, now) && s.claims.get(&id).is_some_and(|t| *t >= m.current_term)
            });
            if claimed {
                return;
            }
            let live = |n: NodeId| peers.get(&n).is_some_and(|s| self.alive(s, now));
            // A leader this replica just learned of (from its AppendEntries) claims the group in
            // its next node heartbeat: give that a dead-after window before doubting it.
            let learned = m.current_leader.is_some_and(|l| l != self.node && live(l));
            let from = if learned { now + self.dead_after } else { now };
            let voters: Vec<NodeId> = membership.voter_ids().collect();
            let p = pending.entry(id).or_insert_with(|| Pending {
                at: self.first_attempt(id, self.rank(id, &voters, live), from),
                attempts: 0,
                round: round_no,
            });
            p.round = round_no;
            if now >= p.at {
                p.attempts += 1;
                let turns = voters
                    .iter()
                    .filter(|v| **v == self.node || live(**v))
                    .count();
                p.at = now + self.spread * turns as u32 + self.jitter(id, p.attempts);
                round.elect.push(group.to_route());
                tracing::info!(
                    node = self.node,
                    group = id,
                    term = m.current_term,
                    attempt = p.attempts,
                    "no live leader: starting an election"
                );
            }
        });
        pending.retain(|_, p| p.round == round_no);
        round
    }
}

/// The groups among `claims` (from node `from`) whose local replica does not follow `from` at
/// the claimed term.
pub(crate) fn stale_claims(
    registry: &Registry,
    from: NodeId,
    groups: &[u64],
    terms: &[u64],
) -> Vec<u64> {
    groups
        .iter()
        .zip(terms)
        .filter(|(g, t)| {
            registry.route(**g).is_some_and(|r| {
                let m = r.as_ref().metrics();
                let m = m.borrow();
                !(m.current_leader == Some(from) && m.current_term == **t)
            })
        })
        .map(|(g, _)| *g)
        .collect()
}

/// The liveness task of `registry`'s node: runs until the registry is shut down or dropped.
pub(crate) async fn run(registry: Weak<Registry>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round_no = 0u64;
    loop {
        ticker.tick().await;
        let Some(reg) = registry.upgrade() else {
            return;
        };
        if reg.is_shut_down() {
            return;
        }
        round_no += 1;
        let round = reg.liveness().scan(&reg, round_no);
        for peer in round.peers {
            let (reg, claims) = (reg.clone(), round.claims.clone());
            tokio::spawn(async move { send(&reg, peer.0, &peer.1, claims).await });
        }
        for r in round.elect {
            if let Err(e) = r.as_ref().elect().await {
                tracing::debug!(error = %e, "triggering an election");
            }
        }
    }
}

/// Sends this node's claims to `peer` and heartbeats the groups it names in its answer.
async fn send(reg: &Arc<Registry>, peer: NodeId, addr: &str, claims: pb::RaftNodeHeartbeat) {
    let ttl = reg.liveness().interval.max(Duration::from_millis(100));
    let Ok(channel) = reg.peers().channel(peer, addr) else {
        return;
    };
    let max = crate::transport::message_bytes_max(reg.config());
    let mut client = RaftTransportClient::new(channel)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let mut req = tonic::Request::new(claims);
    req.set_timeout(ttl);
    let wake = match tokio::time::timeout(ttl, client.node_heartbeat(req)).await {
        Ok(Ok(r)) => r.into_inner().wake,
        Ok(Err(e)) => {
            tracing::debug!(node = reg.node_id(), peer, error = %e, "node heartbeat failed");
            return;
        }
        Err(_) => return,
    };
    for g in wake {
        let Some(r) = reg.route(g) else { continue };
        let r = r.as_ref();
        if r.metrics().borrow().state == ServerState::Leader {
            if let Err(e) = r.heartbeat().await {
                tracing::debug!(group = g, error = %e, "waking a follower");
            }
        }
    }
}

impl GroupRef<'_> {
    /// Starts an election in this group now.
    async fn elect(&self) -> Result<(), openraft::error::Fatal<NodeId>> {
        match self {
            GroupRef::Partition(r) => r.trigger().elect().await,
            GroupRef::Metadata(r) => r.trigger().elect().await,
        }
    }

    /// Sends one Raft heartbeat to every follower of this group now.
    async fn heartbeat(&self) -> Result<(), openraft::error::Fatal<NodeId>> {
        match self {
            GroupRef::Partition(r) => r.trigger().heartbeat().await,
            GroupRef::Metadata(r) => r.trigger().heartbeat().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn liveness(node: NodeId) -> Liveness {
        Liveness::new(node, &RaftConfig::default())
    }

    #[test]
    fn ranks_are_a_permutation_of_the_live_voters() {
        let voters = [1, 2, 3];
        for group in 0..200u64 {
            let mut ranks: Vec<usize> = voters
                .iter()
                .map(|n| liveness(*n).rank(group, &voters, |_| true))
                .collect();
            ranks.sort_unstable();
            assert_eq!(ranks, vec![0, 1, 2], "group {group}");
        }
    }

    #[test]
    fn a_dead_voter_takes_no_rank() {
        let voters = [1, 2, 3];
        for group in 0..200u64 {
            let mut ranks: Vec<usize> = [1, 2]
                .iter()
                .map(|n| liveness(*n).rank(group, &voters, |v| v != 3))
                .collect();
            ranks.sort_unstable();
            assert_eq!(ranks, vec![0, 1], "group {group}");
        }
    }

    #[test]
    fn first_ranks_spread_over_nodes() {
        let voters = [1, 2, 3];
        let firsts = (0..3000u64)
            .filter(|g| liveness(1).rank(*g, &voters, |_| true) == 0)
            .count();
        assert!(
            (800..1200).contains(&firsts),
            "node 1 ranks first in {firsts} of 3000 groups"
        );
    }

    #[test]
    fn nobody_elects_before_the_dead_after_window_from_start() {
        let l = liveness(1);
        let now = Instant::now();
        assert!(l.first_attempt(7, 0, now) >= l.started + l.dead_after);
        let later = l.started + l.dead_after * 3;
        assert!(l.first_attempt(7, 0, later) < later + l.interval);
        assert!(l.first_attempt(7, 1, later) >= later + l.spread);
    }

    #[test]
    fn claims_expire_after_the_dead_after_window() {
        let l = liveness(1);
        l.receive(2, &[10, 11], &[3, 4]);
        assert_eq!(l.live_peers(), vec![2]);
        let peers = l.peers.lock().expect("lock");
        let seen = &peers[&2];
        assert_eq!(seen.claims.get(&11), Some(&4));
        assert!(l.alive(seen, seen.at + l.dead_after - Duration::from_millis(1)));
        assert!(!l.alive(seen, seen.at + l.dead_after));
    }
}
