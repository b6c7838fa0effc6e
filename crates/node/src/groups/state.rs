//! The coordinator's in-memory state of one `__consumer_offsets` partition: committed offsets
//! (rebuilt from the partition's records) and group membership (kept in memory only: after a
//! coordinator failover, members rejoin).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::assign::{Strategy, Tp};

/// How long a group forming from empty waits for more members before its first assignment.
pub const INITIAL_JOIN_DELAY: Duration = Duration::from_millis(300);

/// The key of a record in `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetKey {
    /// Group id.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
}

/// The value of a commit record; a record without a value deletes the commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetValue {
    /// Offset of the next record to process.
    pub offset: u64,
    /// The committer's metadata string.
    pub metadata: String,
    /// When it was committed (ms since the epoch).
    pub committed_at_ms: i64,
}

/// A committed offset in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Offset of the next record to process.
    pub offset: u64,
    /// Metadata string.
    pub metadata: String,
}

/// Where a group is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Members have their assignment for the current generation.
    Stable,
}

impl Phase {
    /// The name shown to users.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::PreparingRebalance => "PreparingRebalance",
            Phase::Stable => "Stable",
        }
    }
}

/// A member of a group.
#[derive(Debug, Clone)]
pub struct Member {
    /// Static membership id, if any.
    pub instance_id: Option<String>,
    /// The client's id.
    pub client_id: String,
    /// Subscribed topics.
    pub topics: BTreeSet<String>,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// Last sign of life.
    pub last_seen: Instant,
    /// Whether it joined the rebalance in progress.
    pub joined: bool,
}

/// A consumer group's membership.
#[derive(Debug)]
pub struct Group {
    /// Current phase.
    pub phase: Phase,
    /// Generation: bumped by every completed rebalance.
    pub generation: u64,
    /// Assignment strategy.
    pub strategy: Strategy,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// Assignment of the current generation.
    pub assignment: BTreeMap<String, Vec<Tp>>,
    /// When the rebalance in progress gives up on members that did not rejoin.
    pub rebalance_deadline: Option<Instant>,
    /// A group forming from empty waits until then for more members before its first
    /// assignment (so that members starting together share one generation).
    pub initial_until: Option<Instant>,
    /// Publishes the generation each time a rebalance completes.
    pub completed: watch::Sender<u64>,
}

impl Group {
    /// A new, empty group.
    pub fn new(strategy: Strategy) -> Self {
        Group {
            phase: Phase::Empty,
            generation: 0,
            strategy,
            members: BTreeMap::new(),
            assignment: BTreeMap::new(),
            rebalance_deadline: None,
            initial_until: None,
            completed: watch::channel(0).0,
        }
    }

    /// Starts a rebalance: every member must join again.
    pub fn start_rebalance(&mut self, now: Instant) {
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            self.assignment.clear();
            self.rebalance_deadline = None;
            return;
        }
        if self.phase != Phase::PreparingRebalance {
            for m in self.members.values_mut() {
                m.joined = false;
            }
        }
        if self.phase == Phase::Empty {
            self.initial_until = Some(now + INITIAL_JOIN_DELAY);
        }
        self.phase = Phase::PreparingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(30));
        self.rebalance_deadline = Some(now + timeout);
    }

    /// Completes the rebalance in progress if every member has joined, or if `force` (the
    /// deadline passed: members that did not join are removed). Returns whether it completed.
    pub fn try_complete(&mut self, force: bool, partitions: &BTreeMap<String, u32>) -> bool {
        if self.phase != Phase::PreparingRebalance {
            return false;
        }
        let all_joined = self.members.values().all(|m| m.joined);
        let waiting_for_more = self.initial_until.is_some_and(|t| Instant::now() < t);
        if !force && (!all_joined || waiting_for_more) {
            return false;
        }
        self.initial_until = None;
        self.members.retain(|_, m| m.joined);
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            self.assignment.clear();
            self.rebalance_deadline = None;
            self.generation += 1;
            self.completed.send_replace(self.generation);
            return true;
        }
        let subs = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.topics.clone()))
            .collect();
        let wanted: BTreeMap<String, u32> = partitions
            .iter()
            .filter(|(t, _)| self.members.values().any(|m| m.topics.contains(*t)))
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        self.assignment = super::assign::assign(self.strategy, &subs, &wanted, &self.assignment);
        self.generation += 1;
        self.phase = Phase::Stable;
        self.rebalance_deadline = None;
        let now = Instant::now();
        for m in self.members.values_mut() {
            m.last_seen = now;
        }
        self.completed.send_replace(self.generation);
        true
    }
}

/// The coordinator state of one offsets partition.
#[derive(Debug, Default)]
pub struct PartitionState {
    /// The Raft term in which this state was loaded (0: not loaded).
    pub term: u64,
    /// Committed offsets per group.
    pub offsets: BTreeMap<String, BTreeMap<Tp, Committed>>,
    /// Groups with members (or a generation history).
    pub groups: BTreeMap<String, Group>,
    /// Kafka classic-protocol groups with members (removed when empty).
    pub classic: BTreeMap<String, super::classic::ClassicGroup>,
}

impl PartitionState {
    /// The member's native group, checked: the member exists (its last-seen time is refreshed)
    /// and, when given, the generation is current.
    pub(crate) fn check_member(
        &mut self,
        group: &str,
        member: &str,
        generation: Option<u64>,
    ) -> crate::error::Result<&mut Group> {
        use crate::error::NodeError;
        let unknown = || NodeError::UnknownMember {
            group: group.into(),
            member: member.into(),
        };
        let g = self.groups.get_mut(group).ok_or_else(unknown)?;
        let m = g.members.get_mut(member).ok_or_else(unknown)?;
        m.last_seen = Instant::now();
        match generation {
            Some(got) if got != g.generation => Err(NodeError::IllegalGeneration {
                group: group.into(),
                got,
                current: g.generation,
            }),
            _ => Ok(g),
        }
    }

    /// Members of `group`, native or classic (commits outside group management, resets and
    /// deletes need none).
    pub fn active_members(&self, group: &str) -> usize {
        self.groups.get(group).map_or(0, |g| g.members.len())
            + self.classic.get(group).map_or(0, |g| g.members.len())
    }

    /// Applies one record of the offsets partition during a replay.
    pub fn apply(&mut self, key: OffsetKey, value: Option<OffsetValue>) {
        let tp = (key.topic, key.partition);
        match value {
            Some(v) => {
                self.offsets.entry(key.group).or_default().insert(
                    tp,
                    Committed {
                        offset: v.offset,
                        metadata: v.metadata,
                    },
                );
            }
            None => {
                if let Some(g) = self.offsets.get_mut(&key.group) {
                    g.remove(&tp);
                    if g.is_empty() {
                        self.offsets.remove(&key.group);
                    }
                }
            }
        }
    }
}
