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
use crate::metadata::METADATA_GROUP_ID;
use crate::registry::{GroupRef, Registry};
use crate::types::{GroupId, NodeId};

/// What this node last heard from a peer node.
#[derive(Debug)]
struct Seen {
    at: Instant,
    /// Group -> the term the peer claims to lead it in.
    claims: HashMap<GroupId, u64>,
    /// Group -> the index of the peer's last log entry, for the groups it is about to elect in.
    candidates: HashMap<GroupId, u64>,
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
    views: Arc<Mutex<Views>>,
    /// The index of the last local log entry of each leaderless group, as of the last round.
    my_logs: Mutex<HashMap<GroupId, u64>>,
}

/// What liveness needs of one local group, kept up to date by a task per group that wakes only
/// when the group's server state, vote or membership changes ([`watch_group`]): a round reads
/// this compact table instead of every group's openraft metrics (thousands of cold cache lines).
#[derive(Debug)]
struct View {
    leads: bool,
    term: u64,
    leader: Option<NodeId>,
    /// The voters, when this node is one of them (else empty).
    voters: Vec<NodeId>,
    /// Which watcher wrote this view (a reopened group gets a new one).
    generation: u64,
    /// When this replica was opened (its first view).
    since: Instant,
}

/// The views of the local groups and the addresses of the peers in their memberships.
#[derive(Debug, Default)]
struct Views {
    groups: HashMap<GroupId, View>,
    peer_addrs: HashMap<NodeId, String>,
    next_generation: u64,
}

/// What one scan found: the claims to send, where to send them, the groups to elect in.
#[derive(Default)]
struct Round {
    claims: pb::RaftNodeHeartbeat,
    peers: HashMap<NodeId, String>,
    elect: Vec<GroupId>,
    /// The groups with no live leader (elections due or scheduled).
    leaderless: Vec<GroupId>,
}

/// Most elections one node starts in one round (the metadata group's is always started). A dead
/// node leaves thousands of groups leaderless at once; each election costs vote fsyncs on every
/// voter, and starting them all at once queued them behind each other in the blocking pool for
/// minutes (10,000 partitions, `skein-bench partitions`). Due elections left over start in the
/// next rounds.
const ELECTIONS_PER_ROUND_MAX: usize = 64;

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
            views: Arc::new(Mutex::new(Views::default())),
            my_logs: Mutex::new(HashMap::new()),
        }
    }

    fn alive(&self, seen: &Seen, now: Instant) -> bool {
        now.saturating_duration_since(seen.at) < self.dead_after
    }

    /// Takes a node heartbeat: records when `heartbeat.from` was heard from and what it claims
    /// of this node's groups (claims of groups this node has no replica of are dropped, so the
    /// table stays as large as the local groups, whatever a peer sends), and returns the claimed
    /// groups whose local replica does not follow the sender at the claimed term. Refuses a
    /// heartbeat whose paired lists differ in length or that names this node as its sender.
    pub(crate) fn receive(&self, heartbeat: &pb::RaftNodeHeartbeat) -> Result<Vec<u64>, String> {
        let h = heartbeat;
        if h.from == self.node {
            return Err(format!(
                "node heartbeat claims to come from this node ({}): two nodes share an id",
                h.from
            ));
        }
        let claims = paired(&h.lead_groups, &h.lead_terms, "groups", "terms", h.from)?;
        let candidates = paired(
            &h.candidate_groups,
            &h.candidate_last_index,
            "candidate groups",
            "log indexes",
            h.from,
        )?;
        let views = self
            .views
            .lock()
            .expect("invariant: liveness lock is never poisoned");
        let local = |(g, _): &(u64, u64)| views.groups.contains_key(g);
        let wake = claims
            .clone()
            .filter(|(g, t)| {
                views
                    .groups
                    .get(g)
                    .is_some_and(|v| !(v.leader == Some(h.from) && v.term == *t))
            })
            .map(|(g, _)| g)
            .collect();
        let seen = Seen {
            at: Instant::now(),
            claims: claims.filter(local).collect(),
            candidates: candidates.filter(local).collect(),
        };
        drop(views);
        self.peers
            .lock()
            .expect("invariant: liveness lock is never poisoned")
            .insert(h.from, seen);
        Ok(wake)
    }

    /// The peers heard from within the dead-after window.
    #[cfg(test)]
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
        earliest + self.spread * rank as u32 + self.jitter(group)
    }

    /// A random-looking delay below one heartbeat interval, fixed per group and node.
    fn jitter(&self, group: GroupId) -> Duration {
        let ms = self.interval.as_millis().max(1) as u64;
        Duration::from_millis(mix(group, self.node) % ms)
    }

    /// The pause before this node's next attempt in `group` after a failed one: the `turns` of
    /// the live voters, plus a random part as long again. Without the random part, the first
    /// ranked voter can take every new term first and lose it every time (its log is shorter
    /// than a survivor's, which refuses it), while the survivor's attempts always land in a term
    /// the first one already voted itself in: a livelock seen with 2,000 partitions.
    fn retry_after(&self, group: GroupId, turns: usize, now: Instant) -> Duration {
        let base = self.spread * turns.max(1) as u32;
        let nanos = now.saturating_duration_since(self.started).as_nanos() as u64;
        let ms = base.as_millis().max(1) as u64;
        base + Duration::from_millis(mix(group ^ nanos, self.node) % ms)
    }

    /// Reads every local group's view: collects this node's claims and peers, and the groups
    /// due for an election.
    fn scan(&self, round_no: u64) -> Round {
        let now = Instant::now();
        let peers = self
            .peers
            .lock()
            .expect("invariant: liveness lock is never poisoned");
        let mut pending = self
            .pending
            .lock()
            .expect("invariant: liveness lock is never poisoned");
        let views = self
            .views
            .lock()
            .expect("invariant: liveness lock is never poisoned");
        let mut round = Round::default();
        round.claims.from = self.node;
        round.peers.clone_from(&views.peer_addrs);
        let live_claims: Vec<&HashMap<GroupId, u64>> = peers
            .values()
            .filter(|s| self.alive(s, now))
            .map(|s| &s.claims)
            .collect();
        let live = |n: NodeId| peers.get(&n).is_some_and(|s| self.alive(s, now));
        let my_logs = self
            .my_logs
            .lock()
            .expect("invariant: liveness lock is never poisoned");
        for (id, v) in &views.groups {
            if v.leads {
                round.claims.lead_groups.push(*id);
                round.claims.lead_terms.push(v.term);
                continue;
            }
            let claimed = || {
                live_claims
                    .iter()
                    .any(|c| c.get(id).is_some_and(|t| *t >= v.term))
            };
            // A replica opened within the dead-after window waits for its leader's first claim
            // (a new group's first leader, elected by the replica that formed it).
            let young = now < v.since + self.dead_after;
            if v.voters.is_empty() || young || claimed() {
                continue;
            }
            // A leader this replica just learned of (from its AppendEntries) claims the group in
            // its next node heartbeat: give that a dead-after window before doubting it.
            let learned = v.leader.is_some_and(|l| l != self.node && live(l));
            let from = if learned { now + self.dead_after } else { now };
            let p = pending.entry(*id).or_insert_with(|| Pending {
                at: self.first_attempt(*id, self.rank(*id, &v.voters, live), from),
                attempts: 0,
                round: round_no,
            });
            p.round = round_no;
            round.leaderless.push(*id);
            let room = round.elect.len() < ELECTIONS_PER_ROUND_MAX || *id == METADATA_GROUP_ID;
            let mine = my_logs.get(id).copied().unwrap_or(0);
            let longer = peers
                .values()
                .any(|s| self.alive(s, now) && s.candidates.get(id).is_some_and(|i| *i > mine));
            if now >= p.at && room && longer {
                // A live voter with a longer log is about to elect: it wins where this node
                // would lose, so let it go first.
                p.at = now + self.spread;
            } else if now >= p.at && room {
                p.attempts += 1;
                let turns = v
                    .voters
                    .iter()
                    .filter(|n| **n == self.node || live(**n))
                    .count();
                p.at = now + self.retry_after(*id, turns, now);
                round.elect.push(*id);
                tracing::info!(
                    node = self.node,
                    group = id,
                    term = v.term,
                    attempt = p.attempts,
                    "no live leader: starting an election"
                );
            }
        }
        pending.retain(|_, p| p.round == round_no);
        round
    }

    /// Records the last log index of each leaderless group, and puts it in the round's
    /// heartbeat. Reads those groups' openraft metrics: only leaderless groups, a few.
    fn note_candidates(&self, registry: &Registry, round: &mut Round) {
        let mut logs = HashMap::with_capacity(round.leaderless.len());
        for id in &round.leaderless {
            let Some(r) = registry.route(*id) else {
                continue;
            };
            let last = r.as_ref().last_log_index();
            logs.insert(*id, last);
            round.claims.candidate_groups.push(*id);
            round.claims.candidate_last_index.push(last);
        }
        *self
            .my_logs
            .lock()
            .expect("invariant: liveness lock is never poisoned") = logs;
    }

    /// Every local group's leader as this replica knows it, and its term (from the views: no
    /// group's openraft state is read).
    pub(crate) fn leaderships(&self) -> HashMap<GroupId, (Option<NodeId>, u64)> {
        self.views
            .lock()
            .expect("invariant: liveness lock is never poisoned")
            .groups
            .iter()
            .map(|(g, v)| (*g, (v.leader, v.term)))
            .collect()
    }

    /// Whether this node leads `group` (as its view last recorded).
    fn leads(&self, group: GroupId) -> bool {
        self.views
            .lock()
            .expect("invariant: liveness lock is never poisoned")
            .groups
            .get(&group)
            .is_some_and(|v| v.leads)
    }

    /// Starts the task that keeps `group`'s view up to date from its openraft server metrics,
    /// until the group stops.
    pub(crate) fn watch_group(&self, group: GroupId, rx: ServerMetricsRx) {
        let generation = {
            let mut v = self
                .views
                .lock()
                .expect("invariant: liveness lock is never poisoned");
            v.next_generation += 1;
            v.next_generation
        };
        let views = self.views.clone();
        let node = self.node;
        tokio::spawn(watch(views, node, group, generation, rx));
    }
}

type ServerMetricsRx =
    tokio::sync::watch::Receiver<openraft::metrics::RaftServerMetrics<NodeId, crate::types::Node>>;

/// The body of [`Liveness::watch_group`]'s task.
async fn watch(
    views: Arc<Mutex<Views>>,
    node: NodeId,
    group: GroupId,
    generation: u64,
    mut rx: ServerMetricsRx,
) {
    loop {
        {
            let m = rx.borrow_and_update();
            let membership = m.membership_config.membership();
            let voter = membership
                .get_joint_config()
                .iter()
                .any(|c| c.contains(&node));
            let mut v = views
                .lock()
                .expect("invariant: liveness lock is never poisoned");
            let since = v
                .groups
                .get(&group)
                .filter(|g| g.generation == generation)
                .map_or_else(Instant::now, |g| g.since);
            let view = View {
                since,
                leads: m.state == ServerState::Leader,
                term: m.vote.leader_id().get_term(),
                leader: m.current_leader,
                voters: if voter {
                    membership.voter_ids().collect()
                } else {
                    Vec::new()
                },
                generation,
            };
            for (peer, n) in m.membership_config.nodes() {
                if *peer != node && v.peer_addrs.get(peer) != Some(&n.addr) {
                    v.peer_addrs.insert(*peer, n.addr.clone());
                }
            }
            v.groups.insert(group, view);
        }
        if rx.changed().await.is_err() {
            let mut v = views
                .lock()
                .expect("invariant: liveness lock is never poisoned");
            if v.groups
                .get(&group)
                .is_some_and(|g| g.generation == generation)
            {
                v.groups.remove(&group);
            }
            return;
        }
    }
}

/// Pairs two lists of a node heartbeat that must be as long as each other.
fn paired<'a>(
    keys: &'a [u64],
    values: &'a [u64],
    what: &str,
    of: &str,
    from: NodeId,
) -> Result<impl Iterator<Item = (u64, u64)> + Clone + 'a, String> {
    if keys.len() != values.len() {
        return Err(format!(
            "node heartbeat from node {from} names {} {what} but {} {of}",
            keys.len(),
            values.len()
        ));
    }
    Ok(keys.iter().copied().zip(values.iter().copied()))
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
        let mut round = reg.liveness().scan(round_no);
        reg.liveness().note_candidates(&reg, &mut round);
        for peer in round.peers {
            let (reg, claims) = (reg.clone(), round.claims.clone());
            tokio::spawn(async move { send(&reg, peer.0, &peer.1, claims).await });
        }
        for id in round.elect {
            let Some(r) = reg.route(id) else { continue };
            if let Err(e) = r.as_ref().elect().await {
                tracing::debug!(group = id, error = %e, "triggering an election");
            }
        }
    }
}

/// Sends this node's claims to `peer` and heartbeats the groups it names in its answer.
async fn send(reg: &Arc<Registry>, peer: NodeId, addr: &str, claims: pb::RaftNodeHeartbeat) {
    // As long as the receiver would wait before counting this node dead: a busy peer that
    // answers late must still count this heartbeat (a timeout of one interval cancelled
    // heartbeats of loaded nodes and made their peers elect over live leaders).
    let ttl = reg.liveness().dead_after;
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
        if !reg.liveness().leads(g) {
            continue;
        }
        let Some(r) = reg.route(g) else { continue };
        {
            if let Err(e) = r.as_ref().heartbeat().await {
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

    /// The index of the last entry of this replica's log (0 when empty).
    fn last_log_index(&self) -> u64 {
        match self {
            GroupRef::Partition(r) => r.metrics().borrow().last_log_index.unwrap_or(0),
            GroupRef::Metadata(r) => r.metrics().borrow().last_log_index.unwrap_or(0),
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
    fn retries_wait_the_voters_turns_and_a_random_part() {
        let l = liveness(1);
        let waits: Vec<Duration> = (0..50u32)
            .map(|i| l.retry_after(9, 2, l.started + Duration::from_millis(u64::from(i) * 7919)))
            .collect();
        assert!(waits
            .iter()
            .all(|w| *w >= l.spread * 2 && *w < l.spread * 4));
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(
            distinct.len() > 10,
            "retries must not all wait the same: {waits:?}"
        );
    }

    fn heard(l: &Liveness, last_index: u64) {
        l.receive(&pb::RaftNodeHeartbeat {
            from: 2,
            candidate_groups: vec![7],
            candidate_last_index: vec![last_index],
            ..Default::default()
        })
        .expect("a well-formed heartbeat");
    }

    #[test]
    fn malformed_heartbeats_are_refused() {
        let l = liveness(1);
        let uneven = pb::RaftNodeHeartbeat {
            from: 2,
            lead_groups: vec![1, 2],
            lead_terms: vec![3],
            ..Default::default()
        };
        assert!(l.receive(&uneven).is_err());
        let uneven = pb::RaftNodeHeartbeat {
            from: 2,
            candidate_groups: vec![1],
            ..Default::default()
        };
        assert!(l.receive(&uneven).is_err());
        let me = pb::RaftNodeHeartbeat {
            from: 1,
            ..Default::default()
        };
        assert!(l.receive(&me).is_err());
        assert!(l.peers.lock().expect("lock").is_empty());
    }

    fn due_now(l: &Liveness) {
        let past = Instant::now() - Duration::from_secs(1);
        for p in l.pending.lock().expect("lock").values_mut() {
            p.at = past;
        }
    }

    #[test]
    fn a_voter_with_a_shorter_log_lets_a_longer_one_elect_first() {
        let long_ago = Instant::now() - Duration::from_secs(60);
        let l = Liveness {
            started: long_ago,
            ..liveness(1)
        };
        let view = View {
            leads: false,
            term: 3,
            leader: None,
            voters: vec![1, 2, 3],
            generation: 1,
            since: long_ago,
        };
        l.views.lock().expect("lock").groups.insert(7, view);
        l.my_logs.lock().expect("lock").insert(7, 10);
        heard(&l, 11);
        l.scan(1);
        due_now(&l);
        assert!(l.scan(2).elect.is_empty(), "node 2's log is longer");
        heard(&l, 9);
        due_now(&l);
        let round = l.scan(3);
        assert_eq!(round.elect, vec![7], "node 2's log is shorter");
        assert_eq!(round.leaderless, vec![7]);
    }

    #[test]
    fn claims_expire_after_the_dead_after_window() {
        let l = liveness(1);
        for g in [10, 11] {
            let view = View {
                leads: false,
                term: 3,
                leader: Some(2),
                voters: vec![1, 2, 3],
                generation: 1,
                since: Instant::now(),
            };
            l.views.lock().expect("lock").groups.insert(g, view);
        }
        let wake = l
            .receive(&pb::RaftNodeHeartbeat {
                from: 2,
                lead_groups: vec![10, 11, 12],
                lead_terms: vec![3, 4, 5],
                ..Default::default()
            })
            .expect("a well-formed heartbeat");
        assert_eq!(
            wake,
            vec![11],
            "group 11 follows node 2 at term 3, not 4; 12 is not local"
        );
        assert!(!l.peers.lock().expect("lock")[&2].claims.contains_key(&12));
        assert_eq!(l.live_peers(), vec![2]);
        let peers = l.peers.lock().expect("lock");
        let seen = &peers[&2];
        assert_eq!(seen.claims.get(&11), Some(&4));
        assert!(l.alive(seen, seen.at + l.dead_after - Duration::from_millis(1)));
        assert!(!l.alive(seen, seen.at + l.dead_after));
    }
}
