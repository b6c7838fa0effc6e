//! Kafka's classic consumer-group protocol on the coordinator: JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup with client-side assignment. The leader member's assignment bytes are stored and
//! handed to each member unread; only `skein group describe` decodes them (defensively, see
//! [`decode_assignment`]).
//!
//! One [`ClassicGroup`] per group id, beside the native groups of the same offsets partition
//! (`PartitionState::classic`). A group with members is either native or classic; a join of the
//! other kind is refused (`INCONSISTENT_GROUP_PROTOCOL`). Membership lives in memory on the
//! coordinator, like native membership: after a coordinator failover, members find the new
//! coordinator and join again (their committed offsets are in `__consumer_offsets`).
//!
//! States, as Kafka names them: `Empty` -> `PreparingRebalance` (waiting until every known
//! member has joined again, or the rebalance timeout: the largest of the members' rebalance
//! timeouts) -> `CompletingRebalance` (generation bumped, protocol chosen, members answered, the
//! leader gets every member's metadata; waiting for the leader's SyncGroup, at most the
//! rebalance timeout) -> `Stable`. A member that misses its session timeout, leaves, joins anew
//! or changes its metadata starts a rebalance. Everything is driven by calls and by
//! [`ClassicGroup::tick`] (the coordinator's group timer); nothing here sleeps.
//!
//! Time is `tokio::time::Instant`, so unit tests run under `tokio::time::pause()`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::assign::Tp;
use crate::error::{NodeError, Result};

/// Most members (joined or holding a member id from MEMBER_ID_REQUIRED) of one classic group.
pub const MEMBERS_MAX: usize = 1000;
/// Most classic groups with members per offsets partition (a node coordinates a few).
pub const GROUPS_MAX: usize = 10_000;
/// Allowed session timeouts (as for native groups).
pub const SESSION_TIMEOUT_MIN: Duration = Duration::from_secs(1);
/// Allowed session timeouts (as for native groups).
pub const SESSION_TIMEOUT_MAX: Duration = Duration::from_secs(300);
/// Longest rebalance timeout honoured (a larger one is capped).
pub const REBALANCE_TIMEOUT_MAX: Duration = Duration::from_secs(300);
/// Most protocols one member may offer.
const PROTOCOLS_MAX: usize = 32;

/// Where a classic group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicState {
    /// No members.
    Empty,
    /// Waiting for the members to join again.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

impl ClassicState {
    /// Kafka's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// A JoinGroup as the coordinator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Member id, empty on a first join.
    pub member_id: String,
    /// `group.instance.id` (static membership).
    pub instance_id: Option<String>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// `consumer` for consumers.
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// Unknown members first get a member id through MEMBER_ID_REQUIRED (JoinGroup v4+).
    pub require_known_member_id: bool,
}

/// What a member learns when a join completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    /// The generation.
    pub generation: i32,
    /// The group's protocol type.
    pub protocol_type: String,
    /// The chosen protocol.
    pub protocol: String,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// (member id, instance id, metadata of the chosen protocol): for the leader only.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// What a synced member learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    /// The group's protocol type.
    pub protocol_type: String,
    /// The chosen protocol.
    pub protocol: String,
    /// The member's assignment, as the leader wrote it.
    pub assignment: Bytes,
}

/// An answer now, or later through a channel (the caller waits without holding the lock).
#[derive(Debug)]
pub enum Reply<T> {
    /// Answered at once.
    Now(Result<T>),
    /// Answered when the rebalance (or sync) completes.
    Later(oneshot::Receiver<Result<T>>),
}

/// One member.
#[derive(Debug)]
pub struct ClassicMember {
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// `client.id`.
    pub client_id: String,
    /// Host as the listener saw it.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// (name, metadata) in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// The assignment of the current generation.
    pub assignment: Bytes,
    /// Last heartbeat (or other call).
    pub last_seen: Instant,
    join_waiter: Option<oneshot::Sender<Result<JoinOutcome>>>,
    sync_waiter: Option<oneshot::Sender<Result<SyncOutcome>>>,
}

impl ClassicMember {
    /// Metadata this member sent for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A classic group's membership.
#[derive(Debug)]
pub struct ClassicGroup {
    name: String,
    /// Where the group is.
    pub state: ClassicState,
    /// Bumped by every completed join phase.
    pub generation: i32,
    /// The members' protocol type (`consumer`).
    pub protocol_type: String,
    /// The chosen protocol of the current generation.
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// Members by id.
    pub members: BTreeMap<String, ClassicMember>,
    /// Member ids handed out by MEMBER_ID_REQUIRED, valid until the instant given.
    pending: BTreeMap<String, Instant>,
    /// Deadline of the phase in progress (join or sync).
    deadline: Option<Instant>,
}

fn unknown(group: &str, member: &str) -> NodeError {
    NodeError::UnknownMember {
        group: group.into(),
        member: member.into(),
    }
}

fn inconsistent(group: &str, reason: impl Into<String>) -> NodeError {
    NodeError::InconsistentGroupProtocol {
        group: group.into(),
        reason: reason.into(),
    }
}

fn send<T>(waiter: Option<oneshot::Sender<Result<T>>>, r: Result<T>) {
    if let Some(w) = waiter {
        // The caller may have gone (client disconnected): nothing to do then.
        let _ = w.send(r);
    }
}

/// Checks a join's timeouts and protocols before it touches any group.
pub fn validate_join(group: &str, req: &JoinRequest) -> Result<()> {
    if !(SESSION_TIMEOUT_MIN..=SESSION_TIMEOUT_MAX).contains(&req.session_timeout) {
        return Err(NodeError::InvalidSessionTimeout(
            req.session_timeout.as_millis() as u64,
        ));
    }
    if req.protocol_type.is_empty() || req.protocols.is_empty() {
        return Err(inconsistent(
            group,
            "a join names no protocol type or protocol",
        ));
    }
    if req.protocols.len() > PROTOCOLS_MAX {
        return Err(NodeError::InvalidRequest(format!(
            "a member may offer at most {PROTOCOLS_MAX} protocols"
        )));
    }
    Ok(())
}

impl ClassicGroup {
    /// A new, empty group.
    pub fn new(name: &str, protocol_type: &str) -> Self {
        ClassicGroup {
            name: name.into(),
            state: ClassicState::Empty,
            generation: 0,
            protocol_type: protocol_type.into(),
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            deadline: None,
        }
    }

    /// True without members or member ids handed out.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    fn member_by_instance(&self, instance: &str) -> Option<String> {
        self.members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance))
            .map(|(id, _)| id.clone())
    }

    /// The member `member_id`, checked against its instance id (a static member replaced by a
    /// newer one is fenced).
    fn check_known(&self, member_id: &str, instance: Option<&str>) -> Result<()> {
        if let Some(i) = instance {
            if let Some(current) = self.member_by_instance(i) {
                if current != member_id {
                    return Err(NodeError::FencedInstanceId(i.into()));
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(unknown(&self.name, member_id));
        }
        Ok(())
    }

    /// The protocols every member (and the joining one) supports.
    fn check_protocols(&self, req: &JoinRequest) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        if req.protocol_type != self.protocol_type {
            return Err(inconsistent(
                &self.name,
                format!(
                    "protocol type `{}` differs from the group's `{}`",
                    req.protocol_type, self.protocol_type
                ),
            ));
        }
        let common = req.protocols.iter().any(|(name, _)| {
            self.members
                .iter()
                .filter(|(id, m)| {
                    // The joining member itself (by id, or a static member by instance id).
                    id.as_str() != req.member_id
                        && !(m.instance_id.is_some() && m.instance_id == req.instance_id)
                })
                .all(|(_, m)| m.protocols.iter().any(|(n, _)| n == name))
        });
        if !common {
            return Err(inconsistent(
                &self.name,
                "no protocol in common with the members",
            ));
        }
        Ok(())
    }

    /// Handles a JoinGroup. `new_id` makes a fresh member id.
    pub fn join(
        &mut self,
        req: JoinRequest,
        now: Instant,
        new_id: impl FnOnce() -> String,
    ) -> Reply<JoinOutcome> {
        if let Err(e) = self.check_protocols(&req) {
            return Reply::Now(Err(e));
        }
        if self.is_empty() {
            self.protocol_type = req.protocol_type.clone();
        }
        if req.member_id.is_empty() {
            return self.join_unknown(req, now, new_id);
        }
        if self.pending.remove(&req.member_id).is_some() {
            return self.join_new(req.member_id.clone(), req, now);
        }
        if let Err(e) = self.check_known(&req.member_id, req.instance_id.as_deref()) {
            return Reply::Now(Err(e));
        }
        self.join_known(req, now)
    }

    fn join_unknown(
        &mut self,
        req: JoinRequest,
        now: Instant,
        new_id: impl FnOnce() -> String,
    ) -> Reply<JoinOutcome> {
        if self.members.len() + self.pending.len() >= MEMBERS_MAX {
            return Reply::Now(Err(NodeError::GroupMaxSize {
                group: self.name.clone(),
                max: MEMBERS_MAX,
            }));
        }
        let id = new_id();
        if let Some(old) = req
            .instance_id
            .as_deref()
            .and_then(|i| self.member_by_instance(i))
        {
            return self.replace_static(old, id, req, now);
        }
        if req.require_known_member_id && req.instance_id.is_none() {
            self.pending.insert(id.clone(), now + req.session_timeout);
            return Reply::Now(Err(NodeError::MemberIdRequired {
                group: self.name.clone(),
                member_id: id,
            }));
        }
        self.join_new(id, req, now)
    }

    /// A static member joins again under a new member id: the old id is fenced. Unchanged
    /// metadata on a stable group: no rebalance, the member keeps its assignment.
    fn replace_static(
        &mut self,
        old: String,
        id: String,
        req: JoinRequest,
        now: Instant,
    ) -> Reply<JoinOutcome> {
        let Some(mut m) = self.members.remove(&old) else {
            return self.join_new(id, req, now);
        };
        let fenced = || NodeError::FencedInstanceId(req.instance_id.clone().unwrap_or_default());
        send(m.join_waiter.take(), Err(fenced()));
        send(m.sync_waiter.take(), Err(fenced()));
        let unchanged = m.protocols == req.protocols;
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.session_timeout = req.session_timeout;
        m.rebalance_timeout = req.rebalance_timeout.min(REBALANCE_TIMEOUT_MAX);
        m.protocols = req.protocols.clone();
        m.last_seen = now;
        self.members.insert(id.clone(), m);
        if self.leader.as_deref() == Some(old.as_str()) {
            self.leader = Some(id.clone());
        }
        tracing::info!(group = %self.name, old = %old, new = %id, "static member replaced");
        if unchanged && self.state == ClassicState::Stable {
            // A returning leader gets the members (as Kafka does), and its SyncGroup the
            // stored assignment: the generation does not change.
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            return Reply::Now(Ok(self.outcome(&id, is_leader)));
        }
        self.rejoin(id, now)
    }

    fn join_new(&mut self, id: String, req: JoinRequest, now: Instant) -> Reply<JoinOutcome> {
        if self.members.len() >= MEMBERS_MAX {
            return Reply::Now(Err(NodeError::GroupMaxSize {
                group: self.name.clone(),
                max: MEMBERS_MAX,
            }));
        }
        let member = ClassicMember {
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout.min(REBALANCE_TIMEOUT_MAX),
            protocols: req.protocols,
            assignment: Bytes::new(),
            last_seen: now,
            join_waiter: None,
            sync_waiter: None,
        };
        tracing::info!(group = %self.name, member = %id, "member joins");
        self.members.insert(id.clone(), member);
        self.rejoin(id, now)
    }

    fn join_known(&mut self, req: JoinRequest, now: Instant) -> Reply<JoinOutcome> {
        let id = req.member_id.clone();
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        let Some(m) = self.members.get_mut(&id) else {
            return Reply::Now(Err(unknown(&self.name, &id)));
        };
        let unchanged = m.protocols == req.protocols;
        m.protocols = req.protocols;
        m.session_timeout = req.session_timeout;
        m.rebalance_timeout = req.rebalance_timeout.min(REBALANCE_TIMEOUT_MAX);
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.last_seen = now;
        // A follower joining again with the same metadata outside a rebalance only wants the
        // current generation (Kafka does the same).
        let settled = matches!(
            self.state,
            ClassicState::Stable | ClassicState::CompletingRebalance
        );
        if unchanged && settled && !(is_leader && self.state == ClassicState::Stable) {
            return Reply::Now(Ok(self.outcome(&id, is_leader)));
        }
        self.rejoin(id, now)
    }

    /// Registers `id` as waiting for the join to complete, starting a rebalance if none runs.
    fn rejoin(&mut self, id: String, now: Instant) -> Reply<JoinOutcome> {
        if self.state != ClassicState::PreparingRebalance {
            self.prepare_rebalance(now, "member joined");
        }
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(&id) {
            // A request this member sent before is answered by this one.
            send(
                m.join_waiter.replace(tx),
                Err(NodeError::RebalanceInProgress(self.name.clone())),
            );
        }
        self.try_complete_join(now, false);
        Reply::Later(rx)
    }

    /// Enters PreparingRebalance: members waiting for a sync are told to join again.
    fn prepare_rebalance(&mut self, now: Instant, why: &str) {
        for m in self.members.values_mut() {
            send(
                m.sync_waiter.take(),
                Err(NodeError::RebalanceInProgress(self.name.clone())),
            );
        }
        if self.members.is_empty() {
            self.become_empty();
            return;
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(REBALANCE_TIMEOUT_MAX);
        tracing::info!(group = %self.name, generation = self.generation, why, "preparing rebalance");
        self.state = ClassicState::PreparingRebalance;
        self.deadline = Some(now + timeout);
    }

    fn become_empty(&mut self) {
        if self.state != ClassicState::Empty {
            self.generation += 1;
        }
        self.state = ClassicState::Empty;
        self.protocol = None;
        self.leader = None;
        self.deadline = None;
    }

    /// Completes the join phase when every member has joined again, or when `force` (the
    /// rebalance timeout passed: members that did not join are removed).
    fn try_complete_join(&mut self, now: Instant, force: bool) {
        if self.state != ClassicState::PreparingRebalance {
            return;
        }
        let all = self.members.values().all(|m| m.join_waiter.is_some());
        if !all && !force {
            return;
        }
        let name = self.name.clone();
        self.members.retain(|id, m| {
            let joined = m.join_waiter.is_some();
            if !joined {
                tracing::info!(group = %name, member = %id, "member did not join in time, removed");
            }
            joined
        });
        if self.members.is_empty() {
            self.become_empty();
            return;
        }
        let Some(protocol) = self.choose_protocol() else {
            // Members joined with protocols in common; keep waiting rather than guess.
            return;
        };
        self.generation += 1;
        self.protocol = Some(protocol);
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = ClassicState::CompletingRebalance;
        let timeout = self.members.values().map(|m| m.rebalance_timeout).max();
        self.deadline = timeout.map(|t| now + t);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            let outcome = self.outcome(&id, is_leader);
            if let Some(m) = self.members.get_mut(&id) {
                m.assignment = Bytes::new();
                m.last_seen = now;
                send(m.join_waiter.take(), Ok(outcome));
            }
        }
        tracing::info!(group = %self.name, generation = self.generation, members = self.members.len(), "join phase complete");
    }

    /// Kafka's vote: among the protocols every member supports, each member votes for its
    /// first choice; most votes wins, ties go to the earlier one in the leader's order.
    fn choose_protocol(&self) -> Option<String> {
        let leader = self.leader.as_ref().and_then(|l| self.members.get(l));
        let first = leader.or_else(|| self.members.values().next())?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let votes = |c: &String| {
            self.members
                .values()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .find(|(p, _)| candidates.contains(&p))
                        .map(|(p, _)| p)
                        == Some(c)
                })
                .count()
        };
        let mut best: Option<(&String, usize)> = None;
        for c in &candidates {
            let v = votes(c);
            if best.is_none_or(|(_, bv)| v > bv) {
                best = Some((c, v));
            }
        }
        best.map(|(c, _)| c.clone())
    }

    fn outcome(&self, id: &str, with_members: bool) -> JoinOutcome {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if with_members {
            self.members
                .iter()
                .map(|(mid, m)| (mid.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol,
            leader: self.leader.clone().unwrap_or_default(),
            member_id: id.into(),
            members,
        }
    }

    fn sync_outcome(&self, assignment: Bytes) -> SyncOutcome {
        SyncOutcome {
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone().unwrap_or_default(),
            assignment,
        }
    }

    /// Checks a member and its generation (Heartbeat, SyncGroup, OffsetCommit); refreshes its
    /// session.
    pub fn check_generation(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<()> {
        self.touch(member_id, instance, now)?;
        self.check_current(generation)
    }

    /// Checks that the member is known (see `check_known`) and refreshes its session.
    fn touch(&mut self, member_id: &str, instance: Option<&str>, now: Instant) -> Result<()> {
        self.check_known(member_id, instance)?;
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_seen = now;
        }
        Ok(())
    }

    /// `IllegalGeneration` unless `generation` is the group's current one.
    fn check_current(&self, generation: i32) -> Result<()> {
        if generation != self.generation {
            return Err(NodeError::IllegalGeneration {
                group: self.name.clone(),
                got: u64::try_from(generation).unwrap_or(0),
                current: u64::try_from(self.generation).unwrap_or(0),
            });
        }
        Ok(())
    }

    /// Handles a SyncGroup: the leader's assignments complete the rebalance.
    pub fn sync(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Reply<SyncOutcome> {
        if let Err(e) = self.check_generation(member_id, instance, generation, now) {
            return Reply::Now(Err(e));
        }
        match self.state {
            ClassicState::Empty | ClassicState::PreparingRebalance => {
                Reply::Now(Err(NodeError::RebalanceInProgress(self.name.clone())))
            }
            ClassicState::Stable => {
                let a = self.members.get(member_id).map(|m| m.assignment.clone());
                Reply::Now(Ok(self.sync_outcome(a.unwrap_or_default())))
            }
            ClassicState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    send(
                        m.sync_waiter.replace(tx),
                        Err(NodeError::RebalanceInProgress(self.name.clone())),
                    );
                }
                if self.leader.as_deref() == Some(member_id) {
                    self.complete_sync(assignments);
                }
                Reply::Later(rx)
            }
        }
    }

    fn complete_sync(&mut self, assignments: Vec<(String, Bytes)>) {
        let mut given: BTreeMap<String, Bytes> = assignments.into_iter().collect();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let a = given.remove(&id).unwrap_or_default();
            let out = self.sync_outcome(a.clone());
            if let Some(m) = self.members.get_mut(&id) {
                m.assignment = a;
                send(m.sync_waiter.take(), Ok(out));
            }
        }
        self.state = ClassicState::Stable;
        self.deadline = None;
        tracing::info!(group = %self.name, generation = self.generation, "group stable");
    }

    /// Handles a Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<()> {
        // The session is refreshed also while the group rebalances.
        self.touch(member_id, instance, now)?;
        if self.state == ClassicState::PreparingRebalance {
            return Err(NodeError::RebalanceInProgress(self.name.clone()));
        }
        self.check_current(generation)
    }

    /// Checks an offset commit of a member (Kafka's rules: refused while the join phase
    /// completes; accepted during PreparingRebalance with the current generation).
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<()> {
        if self.state == ClassicState::CompletingRebalance {
            return Err(NodeError::RebalanceInProgress(self.name.clone()));
        }
        self.check_generation(member_id, instance, generation, now)
    }

    /// Handles one leaving member (by member id, or by instance id alone).
    pub fn leave(&mut self, member_id: &str, instance: Option<&str>, now: Instant) -> Result<()> {
        let id = match (member_id.is_empty(), instance) {
            (true, Some(i)) => self
                .member_by_instance(i)
                .ok_or_else(|| unknown(&self.name, member_id))?,
            _ => {
                if self.pending.remove(member_id).is_some() {
                    return Ok(());
                }
                self.check_known(member_id, instance)?;
                member_id.to_owned()
            }
        };
        self.remove_member(&id, now, "member left");
        Ok(())
    }

    fn remove_member(&mut self, id: &str, now: Instant, why: &str) {
        let Some(mut m) = self.members.remove(id) else {
            return;
        };
        tracing::info!(group = %self.name, member = %id, why, "member removed");
        send(m.join_waiter.take(), Err(unknown(&self.name, id)));
        send(m.sync_waiter.take(), Err(unknown(&self.name, id)));
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                self.prepare_rebalance(now, why)
            }
            ClassicState::PreparingRebalance if self.members.is_empty() => self.become_empty(),
            ClassicState::PreparingRebalance => self.try_complete_join(now, false),
            ClassicState::Empty => {}
        }
    }

    /// Expires sessions and member ids, and ends phases whose deadline passed.
    pub fn tick(&mut self, now: Instant) {
        self.pending.retain(|_, until| *until > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join_waiter.is_none() && m.sync_waiter.is_none())
            .filter(|(_, m)| now.saturating_duration_since(m.last_seen) > m.session_timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove_member(&id, now, "session expired");
        }
        if self.deadline.is_none_or(|d| now < d) {
            return;
        }
        match self.state {
            ClassicState::PreparingRebalance => self.try_complete_join(now, true),
            ClassicState::CompletingRebalance => {
                // The leader did not sync in time: drop the members that never synced (the
                // leader among them) and rebalance.
                let late: Vec<String> = self
                    .members
                    .iter()
                    .filter(|(_, m)| m.sync_waiter.is_none())
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &late {
                    self.members.remove(id);
                }
                tracing::info!(group = %self.name, late = late.len(), "no assignment in time");
                self.prepare_rebalance(now, "no assignment in time");
            }
            ClassicState::Stable | ClassicState::Empty => self.deadline = None,
        }
    }
}

/// The topic partitions of a consumer-protocol assignment (version i16, array of (topic
/// string, array of i32), user data); `None` when the bytes are not one. No count is trusted:
/// each is checked against the bytes left before anything is allocated.
pub fn decode_assignment(bytes: &[u8]) -> Option<Vec<Tp>> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    if version < 0 {
        return None;
    }
    let topics = r.count(2 + 4)?;
    let mut out = Vec::new();
    for _ in 0..topics {
        let len = usize::try_from(r.i16()?).ok()?;
        let topic = std::str::from_utf8(r.take(len)?).ok()?.to_owned();
        let parts = r.count(4)?;
        for _ in 0..parts {
            let p = u32::try_from(r.i32()?).ok()?;
            out.push((topic.clone(), p));
        }
    }
    Some(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    /// An array count, at most what the remaining bytes could hold at `min_item` bytes each
    /// (-1, a null array, is zero).
    fn count(&mut self, min_item: usize) -> Option<usize> {
        let n = self.i32()?;
        if n == -1 {
            return Some(0);
        }
        let n = usize::try_from(n).ok()?;
        (n.checked_mul(min_item)? <= self.0.len()).then_some(n)
    }
}

#[cfg(test)]
mod tests;
