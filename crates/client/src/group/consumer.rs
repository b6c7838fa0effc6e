//! [`GroupConsumer`]: a consumer that is a member of a consumer group.
//!
//! How it works:
//! - `poll_event` (and `poll`, `next_record`) drive the membership: the first call joins the
//!   group (JoinGroup blocks on the coordinator until the rebalance completes, then SyncGroup
//!   returns this member's assignment), and a rebalance signalled by the heartbeat task is
//!   carried out in the caller's task, between two batches of records.
//! - A background task heartbeats every `heartbeat_interval`; an answer other than "ok"
//!   (REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, FENCED_INSTANCE_ID) is
//!   recorded for the next poll, which wakes up at once.
//! - Another background task sends commits one at a time, in the order they were asked for,
//!   so that an older commit never lands after a newer one. `commit` waits for the coordinator's
//!   acknowledgement (the commit is then replicated); `commit_async` only queues.
//! - Records are fetched by a manual-assignment [`Consumer`], reassigned on every rebalance;
//!   partitions kept across a rebalance keep their positions.
//!
//! Rebalance protocol as seen by the caller of [`GroupConsumer::poll_event`]:
//! - eager strategies (range, round-robin): `Revoked(all owned)` while the old generation is
//!   still current (a commit made now is accepted), then, after the join, `Assigned(all new)`;
//! - cooperative-sticky: the member commits (with auto-commit) and joins without giving
//!   anything up; then `Revoked(moved)` for just the partitions that moved (they are still
//!   assigned, so their positions can be committed), then `Assigned(added)` when it gained some;
//! - `Lost(owned)` when the coordinator no longer knows this member or its generation: the
//!   partitions may already be someone else's and commits would be rejected.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use skein_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::admin::{commit_offsets, fetch_offsets, OffsetAndMetadata};
use super::coordinator::{check, Coordinator};
use super::{
    diff, revoke_before_join, strategy_to_proto, topic_partitions_from_proto, uncommitted,
};
use crate::cluster::{timed, Client};
use crate::config::GroupConsumerConfig;
use crate::consumer::Consumer;
use crate::error::{ClientError, ErrorCode, Result};
use crate::record::{ConsumerRecord, TopicPartition};

/// Commits queued and not yet sent; `commit_async` waits for room beyond this.
const COMMIT_QUEUE_LEN: usize = 64;
/// Join attempts in one `poll` before the error is handed to the caller (who may poll again).
const JOIN_ATTEMPTS_MAX: u32 = 20;

/// What [`GroupConsumer::poll_event`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// Records of the assigned partitions, in offset order per partition (may be empty: nothing
    /// new arrived within the fetch wait).
    Records(Vec<ConsumerRecord>),
    /// These partitions were assigned; fetching starts at the group's committed offset, or at
    /// `auto_offset_reset` without one.
    Assigned(Vec<TopicPartition>),
    /// These partitions are about to be taken away: commit what was processed now (they are
    /// still assigned until the next poll).
    Revoked(Vec<TopicPartition>),
    /// These partitions were taken away without a chance to commit (the session expired or the
    /// member missed a rebalance); their uncommitted records will be processed again elsewhere.
    Lost(Vec<TopicPartition>),
}

/// Why the member must join again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejoin {
    /// The group is rebalancing (heartbeat answered REBALANCE_IN_PROGRESS).
    Rebalance,
    /// The subscription changed.
    Subscription,
    /// The coordinator does not know the member: join with an empty member id.
    UnknownMember,
    /// The member missed a rebalance.
    IllegalGeneration,
    /// Another member took this static instance id: fatal.
    Fenced,
}

impl Rejoin {
    fn from_error(e: &ClientError) -> Option<Rejoin> {
        match e.code()? {
            ErrorCode::RebalanceInProgress => Some(Rejoin::Rebalance),
            ErrorCode::UnknownMemberId => Some(Rejoin::UnknownMember),
            ErrorCode::IllegalGeneration => Some(Rejoin::IllegalGeneration),
            ErrorCode::FencedInstanceId => Some(Rejoin::Fenced),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Membership {
    member_id: String,
    generation: u64,
    /// True between a completed join and the next rejoin: heartbeats and commits are sent.
    joined: bool,
    /// Why to rejoin, and the generation the reason was seen in.
    rejoin: Option<(Rejoin, u64)>,
    /// Offsets the coordinator has acknowledged (or reported as committed).
    committed: BTreeMap<TopicPartition, u64>,
}

#[derive(Debug)]
struct Shared {
    membership: Mutex<Membership>,
    /// Wakes a poll waiting on a fetch when a rejoin is needed.
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Membership> {
        self.membership.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a reason to rejoin seen in `generation` (ignored when the member has moved on).
    fn signal(&self, reason: Rejoin, generation: u64) {
        let mut m = self.lock();
        if m.joined && m.generation == generation {
            // A fatal or "from scratch" reason wins over a plain rebalance.
            let stronger = match m.rejoin {
                None => true,
                Some((Rejoin::Rebalance | Rejoin::Subscription, _)) => true,
                Some(_) => false,
            };
            if stronger {
                m.rejoin = Some((reason, generation));
            }
            drop(m);
            self.wake.notify_one();
        }
    }
}

#[derive(Debug)]
struct CommitJob {
    member_id: String,
    generation: u64,
    offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    reply: Option<oneshot::Sender<Result<()>>>,
}

/// The acknowledgement of a queued commit: await it to learn the outcome, or drop it.
#[derive(Debug)]
pub struct CommitHandle {
    rx: Option<oneshot::Receiver<Result<()>>>,
}

impl Future for CommitHandle {
    type Output = Result<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match self.rx.as_mut() {
            None => Poll::Ready(Ok(())),
            Some(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(ClientError::ConsumerClosed))),
        }
    }
}

/// Aborts a background task when dropped.
#[derive(Debug)]
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug)]
enum Phase {
    /// Join (or join again) on the next poll.
    NotJoined,
    /// Eager rebalance: `Revoked` was returned; commit, give everything up and join.
    Revoking,
    /// A new assignment to take: start the added partitions (at their committed offsets) and
    /// drop the revoked ones.
    Assigning {
        assignment: BTreeSet<TopicPartition>,
        added: Vec<TopicPartition>,
        announce: bool,
    },
    /// Fetching the assignment.
    Stable,
    /// `close` ran, or the member was fenced.
    Closed,
}

/// A member of a consumer group: shares the subscribed topics' partitions with the group's
/// other members, fetches its assignment, commits offsets, heartbeats in the background and
/// follows rebalances. See the module documentation for the rebalance protocol and
/// [`GroupConsumerConfig`] for the settings.
///
/// ```no_run
/// use skein_client::{Client, ClientConfig, GroupConsumer, GroupConsumerConfig, GroupEvent};
///
/// # async fn run() -> Result<(), skein_client::ClientError> {
/// let client = Client::new(ClientConfig::new("127.0.0.1:9650"))?;
/// let mut consumer = GroupConsumer::new(client, GroupConsumerConfig::new("billing"))?;
/// consumer.subscribe(["orders"]);
/// loop {
///     match consumer.poll_event().await? {
///         GroupEvent::Records(records) => {
///             for r in records {
///                 println!("{}:{} @{}", r.topic, r.partition, r.offset);
///             }
///         }
///         // Commit what was processed before the partitions go to another member.
///         GroupEvent::Revoked(_) => consumer.commit().await?,
///         GroupEvent::Assigned(_) | GroupEvent::Lost(_) => {}
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct GroupConsumer {
    inner: Consumer,
    config: GroupConsumerConfig,
    coordinator: Arc<Coordinator>,
    shared: Arc<Shared>,
    topics: Vec<String>,
    owned: BTreeSet<TopicPartition>,
    phase: Phase,
    commits: Option<mpsc::Sender<CommitJob>>,
    commit_task: Option<Task>,
    heartbeat_task: Option<Task>,
    last_auto_commit: Instant,
    max_poll_records: usize,
    /// Owned partitions without a group commit whose start position (from the reset policy)
    /// was queued for commit (with auto-commit), so that it is queued only once.
    start_queued: BTreeSet<TopicPartition>,
}

impl GroupConsumer {
    /// A member of `config.group` on `client`; it joins on the first poll after
    /// [`GroupConsumer::subscribe`].
    pub fn new(client: Client, config: GroupConsumerConfig) -> Result<Self> {
        config.validate()?;
        let mut inner = Consumer::new(client.clone(), config.fetch.clone())?;
        inner.set_offset_reset(config.auto_offset_reset);
        Ok(GroupConsumer {
            inner,
            coordinator: Arc::new(Coordinator::new(client, config.group.clone())),
            shared: Arc::new(Shared {
                membership: Mutex::new(Membership {
                    member_id: String::new(),
                    generation: 0,
                    joined: false,
                    rejoin: None,
                    committed: BTreeMap::new(),
                }),
                wake: Notify::new(),
            }),
            topics: Vec::new(),
            owned: BTreeSet::new(),
            phase: Phase::NotJoined,
            commits: None,
            commit_task: None,
            heartbeat_task: None,
            last_auto_commit: Instant::now(),
            max_poll_records: 500,
            start_queued: BTreeSet::new(),
            config,
        })
    }

    /// Limits the records one poll returns (default 500). The positions committed by
    /// auto-commit are those of handed-out records, so a small limit bounds the records
    /// processed twice after a crash.
    pub fn set_max_poll_records(&mut self, max: usize) {
        self.max_poll_records = max.max(1);
    }

    /// Subscribes to `topics` (replacing the subscription). A member already in the group
    /// joins again with the new topics on its next poll.
    pub fn subscribe<S: Into<String>>(&mut self, topics: impl IntoIterator<Item = S>) {
        let mut topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        topics.sort();
        topics.dedup();
        if topics == self.topics {
            return;
        }
        self.topics = topics;
        let generation = self.shared.lock().generation;
        self.shared.signal(Rejoin::Subscription, generation);
    }

    /// The subscribed topics, sorted.
    pub fn subscription(&self) -> &[String] {
        &self.topics
    }

    /// The group id.
    pub fn group(&self) -> &str {
        &self.config.group
    }

    /// The partitions this member owns now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.owned.iter().cloned().collect()
    }

    /// The member id the coordinator gave, once joined.
    pub fn member_id(&self) -> Option<String> {
        let m = self.shared.lock();
        (!m.member_id.is_empty()).then(|| m.member_id.clone())
    }

    /// The generation of the last completed join.
    pub fn generation(&self) -> Option<u64> {
        let m = self.shared.lock();
        m.joined.then_some(m.generation)
    }

    /// The offset of the next record `poll` returns for `tp` (what a commit would send).
    pub fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.inner.position(tp)
    }

    /// The last offset committed for `tp` that this member knows of.
    pub fn last_committed(&self, tp: &TopicPartition) -> Option<u64> {
        self.shared.lock().committed.get(tp).copied()
    }

    /// The group's committed offsets of `tps` (all committed partitions when empty), asked of
    /// the coordinator.
    pub async fn committed(
        &self,
        tps: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>> {
        fetch_offsets(&self.coordinator, tps).await
    }

    /// The next records of `tp` (an assigned partition) start at `offset`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<()> {
        self.inner.seek(tp, offset)
    }

    /// Moves `tps` (all assigned when empty) to their log start.
    pub async fn seek_to_beginning(&mut self, tps: &[TopicPartition]) -> Result<()> {
        self.inner.seek_to_beginning(tps).await
    }

    /// Moves `tps` (all assigned when empty) to their high watermark.
    pub async fn seek_to_end(&mut self, tps: &[TopicPartition]) -> Result<()> {
        self.inner.seek_to_end(tps).await
    }

    /// Moves `tps` (all assigned when empty) to the first record at or after `timestamp_ms`.
    pub async fn seek_to_timestamp(
        &mut self,
        tps: &[TopicPartition],
        timestamp_ms: i64,
    ) -> Result<()> {
        self.inner.seek_to_timestamp(tps, timestamp_ms).await
    }

    /// Stops fetching `tps` (all assigned when empty) until `resume`; the member keeps them
    /// and keeps heartbeating.
    pub fn pause(&mut self, tps: &[TopicPartition]) -> Result<()> {
        self.inner.pause(tps)
    }

    /// Fetches `tps` (all assigned when empty) again.
    pub fn resume(&mut self, tps: &[TopicPartition]) -> Result<()> {
        self.inner.resume(tps)
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.inner.paused()
    }

    fn ensure_tasks(&mut self) {
        if self.commits.is_none() {
            let (tx, rx) = mpsc::channel(COMMIT_QUEUE_LEN);
            let handle = tokio::spawn(commit_loop(
                self.coordinator.clone(),
                self.shared.clone(),
                rx,
            ));
            self.commits = Some(tx);
            self.commit_task = Some(Task(handle));
        }
        if self.heartbeat_task.is_none() {
            let handle = tokio::spawn(heartbeat_loop(
                self.coordinator.clone(),
                self.shared.clone(),
                self.config.heartbeat_interval(),
            ));
            self.heartbeat_task = Some(Task(handle));
        }
    }

    /// The positions of the owned partitions that differ from the last known commit.
    fn positions_to_commit(&self) -> BTreeMap<TopicPartition, u64> {
        let positions: BTreeMap<TopicPartition, u64> = self
            .owned
            .iter()
            .filter_map(|tp| self.inner.position(tp).map(|p| (tp.clone(), p)))
            .collect();
        uncommitted(&positions, &self.shared.lock().committed)
    }

    async fn enqueue(
        &mut self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> Result<CommitHandle> {
        if matches!(self.phase, Phase::Closed) {
            return Err(ClientError::ConsumerClosed);
        }
        let (member_id, generation, joined) = {
            let m = self.shared.lock();
            (m.member_id.clone(), m.generation, m.joined)
        };
        if !joined && !offsets.is_empty() {
            return Err(ClientError::NotAssigned {
                what: format!(
                    "commit for group {}: the member has not joined (poll first)",
                    self.config.group
                ),
            });
        }
        self.ensure_tasks();
        let (tx, rx) = oneshot::channel();
        let job = CommitJob {
            member_id,
            generation,
            offsets,
            reply: Some(tx),
        };
        let Some(queue) = self.commits.as_ref() else {
            return Err(ClientError::ConsumerClosed);
        };
        queue
            .send(job)
            .await
            .map_err(|_| ClientError::ConsumerClosed)?;
        Ok(CommitHandle { rx: Some(rx) })
    }

    /// Commits the positions of every owned partition (the records handed out so far) and
    /// waits until the coordinator has replicated the commit.
    pub async fn commit(&mut self) -> Result<()> {
        let offsets = to_commit_map(self.positions_to_commit());
        if offsets.is_empty() {
            return self.flush_commits().await;
        }
        self.enqueue(offsets).await?.await
    }

    /// Queues a commit of the positions of every owned partition and returns without waiting
    /// for the acknowledgement (await the handle to get it). Commits are sent one at a time in
    /// the order they were made.
    pub async fn commit_async(&mut self) -> Result<CommitHandle> {
        let offsets = to_commit_map(self.positions_to_commit());
        if offsets.is_empty() {
            return Ok(CommitHandle { rx: None });
        }
        self.enqueue(offsets).await
    }

    /// Commits explicit offsets (each the offset of the NEXT record to process) and waits for
    /// the acknowledgement.
    pub async fn commit_offsets(
        &mut self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> Result<()> {
        if offsets.is_empty() {
            return self.flush_commits().await;
        }
        self.enqueue(offsets).await?.await
    }

    /// Queues a commit of explicit offsets; see [`GroupConsumer::commit_async`].
    pub async fn commit_offsets_async(
        &mut self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> Result<CommitHandle> {
        if offsets.is_empty() {
            return Ok(CommitHandle { rx: None });
        }
        self.enqueue(offsets).await
    }

    /// Waits until every queued commit has been answered.
    pub async fn flush_commits(&mut self) -> Result<()> {
        if self.commits.is_none() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        let job = CommitJob {
            member_id: String::new(),
            generation: 0,
            offsets: BTreeMap::new(),
            reply: Some(tx),
        };
        if let Some(q) = self.commits.as_ref() {
            q.send(job).await.map_err(|_| ClientError::ConsumerClosed)?;
        }
        rx.await.unwrap_or(Err(ClientError::ConsumerClosed))
    }

    /// Before giving partitions up: auto-commit (if enabled), then wait for queued commits.
    /// Failures are logged: the partitions go anyway, and their records after the last commit
    /// are processed again by their next owner.
    async fn commit_before_revoke(&mut self) {
        if self.config.enable_auto_commit && self.shared.lock().joined {
            if let Err(e) = self.commit().await {
                tracing::warn!(group = %self.config.group, error = %e, "commit before revocation failed");
            }
        }
        if let Err(e) = self.flush_commits().await {
            tracing::warn!(group = %self.config.group, error = %e, "queued commits failed before revocation");
        }
    }

    /// With auto-commit: queues a commit of the start position of every owned partition the
    /// group has no commit for, as soon as the reset policy has fixed it (also when no record
    /// arrives there), so that the next owner starts there and skips nothing written since
    /// (Kafka commits the position of every assigned partition).
    async fn commit_start_positions(&mut self) -> Result<()> {
        if !self.config.enable_auto_commit || !self.shared.lock().joined {
            return Ok(());
        }
        let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = {
            let m = self.shared.lock();
            self.owned
                .iter()
                .filter(|tp| !m.committed.contains_key(*tp) && !self.start_queued.contains(*tp))
                .filter_map(|tp| {
                    let p = self.inner.position(tp)?;
                    Some((tp.clone(), OffsetAndMetadata::new(p)))
                })
                .collect()
        };
        if offsets.is_empty() {
            return Ok(());
        }
        let queued: Vec<TopicPartition> = offsets.keys().cloned().collect();
        // The outcome is logged by the commit task; a failure is retried by auto-commit.
        drop(self.enqueue(offsets).await?);
        self.start_queued.extend(queued);
        Ok(())
    }

    async fn maybe_auto_commit(&mut self) -> Result<()> {
        if self.config.enable_auto_commit
            && self.last_auto_commit.elapsed() >= self.config.auto_commit_interval
        {
            self.last_auto_commit = Instant::now();
            // The outcome is logged by the commit task; a failed auto-commit is retried at the
            // next interval.
            drop(self.commit_async().await?);
        }
        Ok(())
    }

    /// The next event: records, or a step of a rebalance. Joins the group on the first call.
    ///
    /// Cancel-safe: a poll dropped midway (e.g. in a `select!`) leaves the member where it
    /// was, and the next poll carries on.
    pub async fn poll_event(&mut self) -> Result<GroupEvent> {
        loop {
            // Look up the committed offsets of newly assigned partitions before leaving the
            // Assigning phase, so that a cancelled poll loses nothing.
            let mut committed = BTreeMap::new();
            if let Phase::Assigning { added, .. } = &self.phase {
                if !added.is_empty() {
                    let added = added.clone();
                    committed = fetch_offsets(&self.coordinator, &added).await?;
                }
            }
            match std::mem::replace(&mut self.phase, Phase::Stable) {
                Phase::Closed => {
                    self.phase = Phase::Closed;
                    return Err(ClientError::ConsumerClosed);
                }
                Phase::NotJoined => {
                    self.phase = Phase::NotJoined;
                    let assignment = self.join_and_sync().await?;
                    let change = diff(&self.owned, &assignment);
                    self.phase = Phase::Assigning {
                        assignment,
                        added: change.added,
                        // Eager members announce every assignment (even an empty one);
                        // cooperative ones only what they gained.
                        announce: !self.config.strategy.is_cooperative(),
                    };
                    if !change.revoked.is_empty() {
                        return Ok(GroupEvent::Revoked(change.revoked));
                    }
                }
                Phase::Revoking => {
                    self.phase = Phase::Revoking;
                    self.commit_before_revoke().await;
                    self.inner.assign([]);
                    self.owned.clear();
                    self.phase = Phase::NotJoined;
                }
                Phase::Assigning {
                    assignment,
                    added,
                    announce,
                } => {
                    self.inner.assign(assignment.iter().cloned());
                    self.start_queued.retain(|tp| assignment.contains(tp));
                    self.owned = assignment;
                    {
                        let mut m = self.shared.lock();
                        for (tp, o) in &committed {
                            m.committed.insert(tp.clone(), o.offset);
                        }
                    }
                    for tp in &added {
                        if let Some(o) = committed.get(tp) {
                            self.inner.seek(tp, o.offset)?;
                        }
                    }
                    self.phase = Phase::Stable;
                    self.last_auto_commit = Instant::now();
                    if announce || !added.is_empty() {
                        return Ok(GroupEvent::Assigned(added));
                    }
                }
                Phase::Stable => {
                    let rejoin = self.shared.lock().rejoin;
                    if let Some((reason, _)) = rejoin {
                        if let Some(event) = self.start_rejoin(reason).await? {
                            return Ok(event);
                        }
                        continue;
                    }
                    self.maybe_auto_commit().await?;
                    if self.inner.has_buffered() {
                        return Ok(GroupEvent::Records(
                            self.inner.take_buffered(self.max_poll_records),
                        ));
                    }
                    let shared = self.shared.clone();
                    tokio::select! {
                        r = self.inner.fill() => r?,
                        _ = shared.wake.notified() => continue,
                    }
                    self.commit_start_positions().await?;
                    return Ok(GroupEvent::Records(
                        self.inner.take_buffered(self.max_poll_records),
                    ));
                }
            }
        }
    }

    /// Reacts to a reason to rejoin (in the Stable phase); may return an event for the caller.
    async fn start_rejoin(&mut self, reason: Rejoin) -> Result<Option<GroupEvent>> {
        tracing::info!(group = %self.config.group, ?reason, "joining the group again");
        match reason {
            Rejoin::Fenced => {
                self.shutdown_tasks();
                self.phase = Phase::Closed;
                Err(ClientError::Broker {
                    code: ErrorCode::FencedInstanceId,
                    what: format!("group {}", self.config.group),
                    message: format!(
                        "another member joined with group instance id {}",
                        self.config.group_instance_id.as_deref().unwrap_or("-")
                    ),
                })
            }
            Rejoin::UnknownMember | Rejoin::IllegalGeneration => {
                {
                    let mut m = self.shared.lock();
                    m.joined = false;
                    m.rejoin = None;
                    if reason == Rejoin::UnknownMember {
                        m.member_id.clear();
                    }
                }
                let lost: Vec<TopicPartition> =
                    std::mem::take(&mut self.owned).into_iter().collect();
                self.inner.assign([]);
                self.phase = Phase::NotJoined;
                Ok((!lost.is_empty()).then_some(GroupEvent::Lost(lost)))
            }
            Rejoin::Rebalance | Rejoin::Subscription => {
                let revoke = revoke_before_join(self.config.strategy, &self.owned);
                if revoke.is_empty() {
                    // Cooperative (or nothing owned): commit, then join keeping the partitions.
                    self.commit_before_revoke().await;
                    self.phase = Phase::NotJoined;
                    Ok(None)
                } else {
                    self.phase = Phase::Revoking;
                    Ok(Some(GroupEvent::Revoked(revoke)))
                }
            }
        }
    }

    /// JoinGroup then SyncGroup until both succeed; returns the assignment.
    async fn join_and_sync(&mut self) -> Result<BTreeSet<TopicPartition>> {
        if self.topics.is_empty() {
            return Err(ClientError::NotAssigned {
                what: format!(
                    "group {}: no subscription (call subscribe first)",
                    self.config.group
                ),
            });
        }
        self.ensure_tasks();
        let group = self.config.group.clone();
        let join_limit = self.config.rebalance_timeout + self.coordinator.timeout();
        let timeout = self.coordinator.timeout();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let member_id = {
                let mut m = self.shared.lock();
                m.joined = false;
                m.rejoin = None;
                m.member_id.clone()
            };
            let request = pb::JoinGroupRequest {
                group: group.clone(),
                member_id,
                group_instance_id: self.config.group_instance_id.clone().unwrap_or_default(),
                client_id: self.config.client_id.clone(),
                session_timeout_ms: millis_u32(self.config.session_timeout),
                rebalance_timeout_ms: millis_u32(self.config.rebalance_timeout),
                topics: self.topics.clone(),
                strategy: strategy_to_proto(self.config.strategy) as i32,
            };
            let what = format!("join group {group}");
            let joined = self
                .coordinator
                .call(&what, self.coordinator.retries(), |mut c, addr| {
                    let request = request.clone();
                    let what = what.clone();
                    async move {
                        let r = timed(&what, &addr, join_limit, c.join_group(request)).await?;
                        check(&what, r.error.as_ref())?;
                        Ok(r)
                    }
                })
                .await;
            let joined = match joined {
                Ok(r) => r,
                Err(e) => {
                    match Rejoin::from_error(&e) {
                        Some(Rejoin::UnknownMember) => self.shared.lock().member_id.clear(),
                        Some(Rejoin::Rebalance | Rejoin::IllegalGeneration) => {}
                        Some(Rejoin::Fenced | Rejoin::Subscription) | None => return Err(e),
                    }
                    if attempt >= JOIN_ATTEMPTS_MAX {
                        return Err(e);
                    }
                    tokio::time::sleep(self.coordinator.client().backoff(attempt.min(4))).await;
                    continue;
                }
            };
            if joined.member_id.is_empty() {
                return Err(ClientError::CorruptResponse {
                    what: format!("join group {group}"),
                    reason: "no member id in the answer".into(),
                });
            }
            {
                let mut m = self.shared.lock();
                m.member_id = joined.member_id.clone();
                m.generation = joined.generation;
            }
            let request = pb::SyncGroupRequest {
                group: group.clone(),
                member_id: joined.member_id.clone(),
                generation: joined.generation,
            };
            let what = format!("sync group {group}");
            let synced = self
                .coordinator
                .call(&what, self.coordinator.retries(), |mut c, addr| {
                    let request = request.clone();
                    let what = what.clone();
                    async move {
                        let r = timed(&what, &addr, timeout, c.sync_group(request)).await?;
                        check(&what, r.error.as_ref())?;
                        Ok(r)
                    }
                })
                .await;
            match synced {
                Ok(r) => {
                    let assignment: BTreeSet<TopicPartition> =
                        topic_partitions_from_proto(r.assignment)
                            .into_iter()
                            .collect();
                    {
                        let mut m = self.shared.lock();
                        m.joined = true;
                        m.rejoin = None;
                    }
                    tracing::info!(
                        %group,
                        member = %joined.member_id,
                        generation = joined.generation,
                        partitions = assignment.len(),
                        "joined the group"
                    );
                    return Ok(assignment);
                }
                Err(e) => {
                    match Rejoin::from_error(&e) {
                        Some(Rejoin::UnknownMember) => self.shared.lock().member_id.clear(),
                        Some(Rejoin::Rebalance | Rejoin::IllegalGeneration) => {}
                        Some(Rejoin::Fenced | Rejoin::Subscription) | None => return Err(e),
                    }
                    if attempt >= JOIN_ATTEMPTS_MAX {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Records (possibly none) from the assigned partitions; rebalance events are handled
    /// without the caller (with auto-commit, positions are committed before revocation).
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>> {
        loop {
            match self.poll_event().await? {
                GroupEvent::Records(r) => return Ok(r),
                other => tracing::debug!(group = %self.config.group, event = ?other, "rebalance"),
            }
        }
    }

    /// The next record, waiting as long as it takes.
    pub async fn next_record(&mut self) -> Result<ConsumerRecord> {
        let saved = self.max_poll_records;
        self.max_poll_records = 1;
        let r = loop {
            match self.poll().await {
                Ok(mut v) if !v.is_empty() => break Ok(v.remove(0)),
                Ok(_) => continue,
                Err(e) => break Err(e),
            }
        };
        self.max_poll_records = saved;
        r
    }

    /// The records as a stream (never ends by itself; errors are items).
    pub fn stream(&mut self) -> impl Stream<Item = Result<ConsumerRecord>> + '_ {
        futures_util::stream::unfold(self, |c| async move {
            let r = c.next_record().await;
            Some((r, c))
        })
    }

    fn shutdown_tasks(&mut self) {
        self.heartbeat_task = None;
        self.commits = None;
        self.commit_task = None;
    }

    /// Leaves the group cleanly: commits the positions (with auto-commit), waits for queued
    /// commits, sends LeaveGroup (unless a static member, see
    /// [`GroupConsumerConfig::leave_group_on_close`]) and stops the background tasks. The first
    /// error is returned after every step has been tried.
    pub async fn close(&mut self) -> Result<()> {
        if matches!(self.phase, Phase::Closed) {
            return Ok(());
        }
        let mut first_error = None;
        let joined = self.shared.lock().joined;
        if joined && self.config.enable_auto_commit {
            if let Err(e) = self.commit().await {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.flush_commits().await {
            first_error.get_or_insert(e);
        }
        self.heartbeat_task = None;
        let member_id = self.shared.lock().member_id.clone();
        if self.config.leaves_on_close() && !member_id.is_empty() {
            if let Err(e) = leave(&self.coordinator, &member_id, 2).await {
                tracing::warn!(group = %self.config.group, error = %e, "leave group failed");
                first_error.get_or_insert(e);
            }
        }
        {
            let mut m = self.shared.lock();
            m.joined = false;
            m.member_id.clear();
        }
        self.shutdown_tasks();
        self.inner.assign([]);
        self.owned.clear();
        self.phase = Phase::Closed;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for GroupConsumer {
    /// Best effort: a member dropped without `close` sends LeaveGroup from a background task
    /// (when a Tokio runtime is running), so the group need not wait for its session timeout.
    fn drop(&mut self) {
        if matches!(self.phase, Phase::Closed) || !self.config.leaves_on_close() {
            return;
        }
        let member_id = self.shared.lock().member_id.clone();
        if member_id.is_empty() {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let coordinator = self.coordinator.clone();
            handle.spawn(async move {
                let _ = leave(&coordinator, &member_id, 0).await;
            });
        }
    }
}

fn to_commit_map(
    positions: BTreeMap<TopicPartition, u64>,
) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
    positions
        .into_iter()
        .map(|(tp, o)| (tp, OffsetAndMetadata::new(o)))
        .collect()
}

fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

async fn leave(coordinator: &Coordinator, member_id: &str, retries: u32) -> Result<()> {
    let what = format!("leave group {}", coordinator.group());
    let timeout = coordinator.timeout().min(Duration::from_secs(5));
    let request = pb::LeaveGroupRequest {
        group: coordinator.group().to_string(),
        member_id: member_id.to_string(),
    };
    coordinator
        .call(&what, retries, |mut c, addr| {
            let request = request.clone();
            let what = what.clone();
            async move {
                let r = timed(&what, &addr, timeout, c.leave_group(request)).await?;
                check(&what, r.error.as_ref())
            }
        })
        .await
}

/// Heartbeats while the member is joined; records the coordinator's reasons to rejoin.
async fn heartbeat_loop(coordinator: Arc<Coordinator>, shared: Arc<Shared>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let what = format!("heartbeat to group {}", coordinator.group());
    loop {
        ticker.tick().await;
        let (member_id, generation) = {
            let m = shared.lock();
            if !m.joined || m.rejoin.is_some() {
                continue;
            }
            (m.member_id.clone(), m.generation)
        };
        let request = pb::HeartbeatRequest {
            group: coordinator.group().to_string(),
            member_id,
            generation,
        };
        // One retry: enough to follow a NOT_COORDINATOR to the named coordinator; anything
        // else is tried again at the next tick.
        let r = coordinator
            .call(&what, 1, |mut c, addr| {
                let request = request.clone();
                let what = what.clone();
                async move {
                    let r = timed(&what, &addr, interval, c.heartbeat(request)).await?;
                    check(&what, r.error.as_ref())
                }
            })
            .await;
        if let Err(e) = r {
            match Rejoin::from_error(&e) {
                Some(reason) => shared.signal(reason, generation),
                None => tracing::debug!(error = %e, "heartbeat failed; trying again"),
            }
        }
    }
}

/// Sends queued commits one at a time, in order.
async fn commit_loop(
    coordinator: Arc<Coordinator>,
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<CommitJob>,
) {
    while let Some(job) = queue.recv().await {
        let r = if job.offsets.is_empty() {
            Ok(())
        } else {
            commit_offsets(
                &coordinator,
                &job.member_id,
                job.generation,
                &job.offsets,
                coordinator.retries(),
            )
            .await
        };
        match &r {
            Ok(()) => {
                let mut m = shared.lock();
                for (tp, o) in &job.offsets {
                    m.committed.insert(tp.clone(), o.offset);
                }
            }
            Err(e) => {
                tracing::warn!(group = %coordinator.group(), error = %e, "commit failed");
                if let Some(reason) = Rejoin::from_error(e) {
                    if reason != Rejoin::Rebalance {
                        shared.signal(reason, job.generation);
                    }
                }
            }
        }
        if let Some(reply) = job.reply {
            let _ = reply.send(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            membership: Mutex::new(Membership {
                member_id: "m".into(),
                generation: 3,
                joined: true,
                rejoin: None,
                committed: BTreeMap::new(),
            }),
            wake: Notify::new(),
        }
    }

    #[test]
    fn rejoin_signals_from_an_old_generation_are_ignored() {
        let s = shared();
        s.signal(Rejoin::Rebalance, 2);
        assert_eq!(s.lock().rejoin, None, "stale heartbeat answer");
        s.signal(Rejoin::Rebalance, 3);
        assert_eq!(s.lock().rejoin, Some((Rejoin::Rebalance, 3)));
        // A stronger reason replaces a plain rebalance, not the other way round.
        s.signal(Rejoin::UnknownMember, 3);
        s.signal(Rejoin::Rebalance, 3);
        assert_eq!(s.lock().rejoin, Some((Rejoin::UnknownMember, 3)));
        s.lock().joined = false;
        s.lock().rejoin = None;
        s.signal(Rejoin::Rebalance, 3);
        assert_eq!(s.lock().rejoin, None, "not joined: nothing to rejoin");
    }

    #[test]
    fn group_error_codes_become_rejoin_reasons() {
        let e = |code: ErrorCode| ClientError::Broker {
            code,
            what: "g".into(),
            message: String::new(),
        };
        assert_eq!(
            Rejoin::from_error(&e(ErrorCode::RebalanceInProgress)),
            Some(Rejoin::Rebalance)
        );
        assert_eq!(
            Rejoin::from_error(&e(ErrorCode::UnknownMemberId)),
            Some(Rejoin::UnknownMember)
        );
        assert_eq!(
            Rejoin::from_error(&e(ErrorCode::IllegalGeneration)),
            Some(Rejoin::IllegalGeneration)
        );
        assert_eq!(
            Rejoin::from_error(&e(ErrorCode::FencedInstanceId)),
            Some(Rejoin::Fenced)
        );
        assert_eq!(Rejoin::from_error(&e(ErrorCode::GroupNotEmpty)), None);
    }

    #[tokio::test]
    async fn a_commit_handle_without_a_commit_is_ready_and_a_dropped_task_is_closed() {
        CommitHandle { rx: None }.await.expect("nothing to commit");
        let (tx, rx) = oneshot::channel::<Result<()>>();
        drop(tx);
        let e = CommitHandle { rx: Some(rx) }.await.expect_err("task gone");
        assert!(matches!(e, ClientError::ConsumerClosed));
    }
}
