//! A running Raft group on this node: openraft, its log store on the partition log, its state
//! machine and its network clients.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use skein_storage::{LogConfig, PartitionLog, Retention};
use tracing::Instrument;

use crate::config::RaftConfig;
use crate::error::{Error, Result};
use crate::log_store::{LogShared, LogStore};
use crate::state_machine::{log_start_batch, open_replica, AppliedState, Applier, StateMachine};
use crate::transport::{NetworkFactory, PeerPool};
use crate::types::{GroupId, Node, NodeId, RecordBatch, SkeinTypes};

/// One Raft group replica on this node.
pub struct Group<C: SkeinTypes, A: Applier<C>> {
    id: GroupId,
    node: NodeId,
    raft: Raft<C>,
    state: Arc<RwLock<AppliedState<A>>>,
    shared: Arc<LogShared>,
    config: RaftConfig,
    /// The topic's largest accepted batch: checked before a batch is proposed, because a batch
    /// the log refuses after it is in Raft would stop the group. Changed by
    /// [`Group::set_log_config`] (shared with the blocking task that applies a change, so that a
    /// dropped caller leaves the log and this check in step).
    batch_bytes_max: Arc<AtomicU32>,
}

impl<C: SkeinTypes, A: Applier<C>> std::fmt::Debug for Group<C, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("id", &self.id)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The configuration a replica's log runs with for its topic's `topic` one: the same, except
/// that the log takes any batch that fits a segment. The topic's `max.batch.bytes` is checked
/// when a batch is proposed ([`Group::batch_bytes_max`]), never again when an entry reaches a
/// log: the log refusing an entry that is in Raft would stop the group, and such entries exist
/// (one proposed before the limit was lowered, one from a leader that took a raised limit first,
/// older entries a replica reopened with a lower limit catches up on).
fn replica_log_config(topic: LogConfig) -> LogConfig {
    let segment_cap = u32::try_from(topic.segment_bytes_max).unwrap_or(u32::MAX);
    LogConfig {
        batch_bytes_max: topic.batch_bytes_max.max(segment_cap),
        ..topic
    }
}

impl<C: SkeinTypes, A: Applier<C>> Group<C, A>
where
    C::R: Default,
{
    /// Opens (or creates) the group's replica in `dir` and starts its Raft node.
    pub(crate) async fn open(
        id: GroupId,
        node: NodeId,
        dir: &Path,
        log_config: LogConfig,
        config: &RaftConfig,
        pool: PeerPool,
    ) -> Result<Self> {
        let span = tracing::info_span!("raft_group", node, group = id);
        async move {
            let batch_bytes_max = log_config.batch_bytes_max;
            // Opening reads and checks the whole log: on the blocking pool, not a worker.
            let (shared, mut state, snapshot) =
                open_replica::<C, A>(id, node, dir, replica_log_config(log_config)).await?;
            state.app.configure(config);
            let state = Arc::new(RwLock::new(state));
            let log_store = LogStore::<C>::new(shared.clone(), config.append_bytes_max);
            let sm = StateMachine::<C, A>::new(shared.clone(), state.clone(), snapshot);
            let raft_config = Arc::new(config.openraft_config(format!("skein-group-{id}"))?);
            let raft = Raft::new(
                node,
                raft_config,
                NetworkFactory::new(id, pool),
                log_store,
                sm,
            )
            .await
            .map_err(|e| Error::Stopped {
                group: id,
                reason: e.to_string(),
            })?;
            tracing::info!("started raft group");
            Ok(Group {
                id,
                node,
                raft,
                state,
                shared,
                config: config.clone(),
                batch_bytes_max: Arc::new(AtomicU32::new(batch_bytes_max)),
            })
        }
        .instrument(span)
        .await
    }

    /// The Raft settings the group runs with.
    pub(crate) fn raft_config(&self) -> &RaftConfig {
        &self.config
    }

    /// The largest batch this group accepts from a producer (the topic's `max.batch.bytes`).
    pub fn batch_bytes_max(&self) -> u32 {
        self.batch_bytes_max.load(Ordering::Acquire)
    }

    /// Applies a changed topic configuration to this running replica: its log takes `config`
    /// ([`PartitionLog::set_config`]: segment size and age, flush policy, retention, ...) and
    /// batches proposed from now on are checked against `config.batch_bytes_max`. An invalid
    /// `config` is refused and nothing changes. Runs on the blocking pool (a changed flush
    /// policy fsyncs what is pending); once started it completes even if the caller is dropped.
    ///
    /// The log itself takes any batch that fits a segment (see `replica_log_config`).
    pub async fn set_log_config(&self, config: LogConfig) -> Result<()> {
        config.validate()?;
        let shared = self.shared.clone();
        let checked = self.batch_bytes_max.clone();
        crate::blocking::run("set log config", move || {
            let mut g = shared.inner.blocking_lock();
            let batch_bytes_max = config.batch_bytes_max;
            let for_log = replica_log_config(config);
            g.log.set_config(for_log)?;
            // After the log: a raised limit is proposed only once the log takes it.
            checked.store(batch_bytes_max, Ordering::Release);
            Ok(())
        })
        .await
    }

    /// The group's id.
    pub fn id(&self) -> GroupId {
        self.id
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// The openraft handle (metrics, waits, membership changes).
    pub fn raft(&self) -> &Raft<C> {
        &self.raft
    }

    /// Initializes a new group with `members` (call on one node only, once).
    pub async fn initialize(&self, members: BTreeMap<NodeId, Node>) -> Result<()> {
        self.raft
            .initialize(members)
            .await
            .map_err(|e| self.raft_error(e))
    }

    /// The leader this replica knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Starts an election on this replica now and returns at once (a leader ignores it).
    ///
    /// The replica wins only if its log is at least as up to date as a majority's and those
    /// voters' leader lease has expired: openraft's lease is `election_timeout_min +
    /// heartbeat_interval` since a voter last heard from its leader, so a group that replicated
    /// within that window refuses the candidate. A failed attempt leaves this replica at a
    /// higher term, which deposes the current leader the next time it hears from this replica
    /// (and the group elects again); call it only on groups that are idle and caught up.
    pub async fn campaign(&self) -> Result<()> {
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Error::Stopped {
                group: self.id,
                reason: e.to_string(),
            })
    }

    /// Reads the applied state.
    pub fn with_state<R>(&self, f: impl FnOnce(&AppliedState<A>) -> R) -> R {
        f(&self
            .state
            .read()
            .expect("invariant: state-machine lock is never poisoned"))
    }

    /// Reads the partition log (e.g. to serve a fetch below the high watermark).
    pub async fn with_log<R>(&self, f: impl FnOnce(&PartitionLog) -> R) -> R {
        f(&self.shared.inner.lock().await.log)
    }

    /// The record offset up to which (exclusive) entries are committed and applied on this
    /// replica: the high watermark when this replica is the leader.
    pub fn applied_offset(&self) -> u64 {
        self.with_state(|s| s.next_offset)
    }

    fn raft_error<E: std::error::Error>(&self, e: RaftError<NodeId, E>) -> Error {
        match e {
            RaftError::Fatal(f) => Error::Stopped {
                group: self.id,
                reason: f.to_string(),
            },
            RaftError::APIError(e) => Error::Raft {
                group: self.id,
                message: e.to_string(),
            },
        }
    }

    /// Proposes `batch` and waits until it is committed and applied.
    pub(crate) async fn write(&self, batch: RecordBatch) -> Result<C::R> {
        match self.raft.client_write(batch).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Error::NotLeader {
                    group: self.id,
                    node: self.node,
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(self.raft_error(e)),
        }
    }

    /// Makes sure a snapshot covers Raft index `index`, then purges the log through it: whole
    /// sealed segments at or below `index` are deleted. Waits up to two election timeouts.
    pub async fn purge_through(&self, index: u64) -> Result<()> {
        let timeout = Some(self.config.election_timeout_max() * 2 + Duration::from_secs(5));
        let covered =
            |m: &openraft::RaftMetrics<NodeId, Node>| m.snapshot.is_some_and(|s| s.index >= index);
        if !covered(&self.raft.metrics().borrow()) {
            self.raft
                .trigger()
                .snapshot()
                .await
                .map_err(|e| Error::Stopped {
                    group: self.id,
                    reason: e.to_string(),
                })?;
            self.raft
                .wait(timeout)
                .metrics(covered, "snapshot covers the purge point")
                .await
                .map_err(|e| Error::Timeout(e.to_string()))?;
        }
        self.raft
            .trigger()
            .purge_log(index)
            .await
            .map_err(|e| Error::Stopped {
                group: self.id,
                reason: e.to_string(),
            })?;
        self.raft
            .wait(timeout)
            .metrics(|m| m.purged.is_some_and(|p| p.index >= index), "log purged")
            .await
            .map_err(|e| Error::Timeout(e.to_string()))?;
        Ok(())
    }

    /// Applies the log's retention policy the Raft way: the applied prefix that retention wants
    /// gone is covered by a snapshot and then purged, so Raft and retention agree on where the
    /// log starts. Returns the Raft index purged through, if any.
    pub async fn enforce_retention(&self) -> Result<Option<u64>> {
        let point = self.shared.inner.lock().await.log.retention_point(now_ms());
        let Some(point) = point else { return Ok(None) };
        let applied = self.with_state(|s| s.last_applied.map(|l| l.index));
        let Some(applied) = applied else {
            return Ok(None);
        };
        let target = point.last_index.min(applied);
        self.purge_through(target).await?;
        Ok(Some(target))
    }

    /// One retention step, on the leader: when the retention policy `retention` wants a prefix
    /// of whole sealed segments gone at `now_ms`, proposes moving the log start offset past it
    /// through Raft, so that every replica moves its log start to the same offset when it
    /// applies the entry. Returns the new log start offset, if it moved. The segments themselves
    /// go with [`Group::purge_below_log_start`] on each replica.
    pub async fn retention_step(&self, retention: Retention, now_ms: i64) -> Result<Option<u64>> {
        let (point, start) = {
            let g = self.shared.inner.lock().await;
            (
                g.log.retention_point_with(retention, now_ms),
                g.log.log_start_offset(),
            )
        };
        let Some(point) = point else { return Ok(None) };
        let target = point.offset.min(self.applied_offset());
        if target <= start {
            return Ok(None);
        }
        self.write(RecordBatch(log_start_batch(target))).await?;
        Ok(Some(target))
    }

    /// Deletes this replica's whole sealed segments below its (applied) log start offset the
    /// Raft way: a snapshot covers them, then openraft purges through their last entry, so a
    /// follower that needs them later installs the snapshot instead. Returns the bytes deleted.
    pub async fn purge_below_log_start(&self) -> Result<u64> {
        let (through, size) = {
            let g = self.shared.inner.lock().await;
            (
                g.log.last_index_below(g.log.log_start_offset()),
                g.log.size_bytes(),
            )
        };
        let applied = self.with_state(|s| s.last_applied.map(|l| l.index));
        let (Some(through), Some(applied)) = (through, applied) else {
            return Ok(0);
        };
        let through = through.min(applied);
        let purged = self.raft.metrics().borrow().purged.map(|p| p.index);
        if purged.is_some_and(|p| p >= through) {
            return Ok(0);
        }
        self.purge_through(through).await?;
        let after = self.shared.inner.lock().await.log.size_bytes();
        Ok(size.saturating_sub(after))
    }

    /// Stops the group's Raft node. The files stay; opening the group again resumes it.
    pub async fn shutdown(&self) -> Result<()> {
        self.raft.shutdown().await.map_err(|e| Error::Stopped {
            group: self.id,
            reason: e.to_string(),
        })?;
        // Make everything written durable before the replica is reopened.
        let shared = self.shared.clone();
        crate::blocking::run("flush at shutdown", move || {
            shared.inner.blocking_lock().log.flush()?;
            shared.sync_committed()
        })
        .await
    }
}
