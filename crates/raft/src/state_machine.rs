//! The state machine shared by every group kind: last applied log id, membership, the record
//! offset after the last applied entry, and an application part ([`Applier`]) that is the
//! partition's producer table or the cluster metadata.
//!
//! The state lives in memory and is persisted as snapshots: a snapshot file (written atomically)
//! holds the snapshot meta and the encoded state. On open the latest snapshot is loaded and
//! openraft re-applies the committed entries after it. Installing a snapshot whose last entry the
//! local log does not hold repositions the log ([`PartitionLog::reset`]) at the snapshot's next
//! offset and index, so the entries replicated after it get the same offsets as on the leader.
//!
//! [`PartitionLog::reset`]: skein_storage::PartitionLog::reset

use std::fmt::Debug;
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, RaftSnapshotBuilder, Snapshot, StorageError, StorageIOError,
};
use serde::{Deserialize, Serialize};
use skein_record::{EntryKind, InternalKind};
use skein_storage::LogConfig;

use crate::blocking::debug_assert_may_block;
use crate::error::Result;
use crate::log_store::{read_meta, write_meta, LogInner, LogShared};
use crate::types::{
    decode, encode, GroupId, LogId, NodeId, RecordBatch, SkeinTypes, SnapshotMeta, StoredMembership,
};

type StoreError = StorageError<NodeId>;

/// The application part of a group's state machine.
pub trait Applier<C: SkeinTypes>: Clone + Debug + Default + Send + Sync + 'static {
    /// Applies a committed data batch, read back from the log (base offset, term and index are
    /// stamped). Must be deterministic: every replica applies the same batches in the same order.
    fn apply(&mut self, log_id: &LogId, batch: &RecordBatch) -> C::R;

    /// The response to a blank or membership entry.
    fn control_response(&self) -> C::R;

    /// Encodes the state for a snapshot (compactly; no JSON).
    fn encode(&self) -> Vec<u8>;

    /// Decodes a state written by [`Applier::encode`].
    fn decode(bytes: &[u8]) -> Result<Self>;

    /// Takes this node's settings (called when the group opens, before anything is applied).
    fn configure(&mut self, _config: &crate::config::RaftConfig) {}

    /// Keeps this node's settings from `previous`, the state an installed snapshot replaces
    /// (settings are not part of a snapshot).
    fn keep_settings(&mut self, _previous: &Self) {}
}

/// A group's applied state.
#[derive(Debug, Clone, Default)]
pub struct AppliedState<A> {
    /// The last applied log id.
    pub last_applied: Option<LogId>,
    /// The last applied membership.
    pub membership: StoredMembership,
    /// The record offset after the last applied entry: for a partition, its high watermark.
    pub next_offset: u64,
    /// The application state.
    pub app: A,
}

#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    next_offset: u64,
    log_start_offset: u64,
    app: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotFile {
    pub(crate) meta: SnapshotMeta,
    pub(crate) data: Vec<u8>,
}

/// Repositions the log for a snapshot whose last entry is `last` with next record offset
/// `next_offset`: unless the log holds that very entry, it is discarded and restarted empty right
/// after it. Returns whether the log was reset.
pub(crate) fn reposition_log(
    inner: &mut LogInner,
    shared: &LogShared,
    last: LogId,
    next_offset: u64,
) -> Result<bool> {
    debug_assert_may_block("reposition log");
    let log = &inner.log;
    let holds = last.index >= log.first_index()
        && last.index < log.next_index()
        && log.term_at(last.index)? == last.leader_id.term;
    if holds {
        return Ok(false);
    }
    tracing::info!(
        group = shared.group,
        node = shared.node,
        index = last.index + 1,
        offset = next_offset,
        "reset log after snapshot"
    );
    inner.set_purged(&shared.paths, last)?;
    inner.log.reset(next_offset, last.index + 1)?;
    Ok(true)
}

/// A group's log, opened, with the applied state and the snapshot file it was loaded from.
pub(crate) type OpenedReplica<A> = (Arc<LogShared>, AppliedState<A>, Option<SnapshotFile>);

/// Opens the log of group `group` in `dir` and loads its snapshot, on tokio's blocking pool:
/// opening reads and CRC-checks the whole log, and the snapshot may reposition it.
pub(crate) async fn open_replica<C: SkeinTypes, A: Applier<C>>(
    group: GroupId,
    node: NodeId,
    dir: &Path,
    config: LogConfig,
) -> Result<OpenedReplica<A>> {
    let dir = dir.to_path_buf();
    crate::blocking::run("open group replica", move || {
        let shared = LogShared::open(group, node, &dir, config)?;
        let (state, snapshot) = load_snapshot::<C, A>(&shared, &mut shared.inner.blocking_lock())?;
        Ok((shared, state, snapshot))
    })
    .await
}

/// Loads the group's snapshot, if any, and repositions the log for it (see [`reposition_log`]).
fn load_snapshot<C: SkeinTypes, A: Applier<C>>(
    shared: &LogShared,
    inner: &mut LogInner,
) -> Result<(AppliedState<A>, Option<SnapshotFile>)> {
    let Some(file) = read_meta::<SnapshotFile>(&shared.paths.snapshot, "snapshot file")? else {
        return Ok((AppliedState::default(), None));
    };
    let body: SnapshotBody = decode("snapshot", &file.data)?;
    let state = AppliedState {
        last_applied: file.meta.last_log_id,
        membership: file.meta.last_membership.clone(),
        next_offset: body.next_offset,
        app: A::decode(&body.app)?,
    };
    if let Some(last) = file.meta.last_log_id {
        reposition_log(inner, shared, last, body.next_offset)?;
    }
    inner.log.raise_log_start(body.log_start_offset);
    Ok((state, Some(file)))
}

/// The payload of a log start entry: the new log start offset (8 bytes, big-endian).
pub(crate) fn log_start_batch(offset: u64) -> bytes::Bytes {
    skein_record::internal_batch(InternalKind::LogStart, 0, &offset.to_be_bytes())
}

/// The offset a log start entry carries, if it is well formed.
fn log_start_of(batch: &RecordBatch) -> Option<u64> {
    let b = skein_record::Batch::new(batch.0.clone()).ok()?;
    let bytes: [u8; 8] = b.payload().as_ref().try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

fn sm_err(e: impl std::error::Error + 'static) -> StoreError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snap_err(e: impl std::error::Error + 'static) -> StoreError {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

/// Openraft's state machine for one group.
#[derive(Debug)]
pub struct StateMachine<C: SkeinTypes, A: Applier<C>> {
    shared: Arc<LogShared>,
    state: Arc<RwLock<AppliedState<A>>>,
    current: Arc<tokio::sync::Mutex<Option<SnapshotFile>>>,
    _types: std::marker::PhantomData<C>,
}

impl<C: SkeinTypes, A: Applier<C>> StateMachine<C, A> {
    pub(crate) fn new(
        shared: Arc<LogShared>,
        state: Arc<RwLock<AppliedState<A>>>,
        current: Option<SnapshotFile>,
    ) -> Self {
        StateMachine {
            shared,
            state,
            current: Arc::new(tokio::sync::Mutex::new(current)),
            _types: std::marker::PhantomData,
        }
    }

    /// Another handle on the same state, to move into work on a blocking thread.
    fn handle(&self) -> Self {
        StateMachine {
            shared: self.shared.clone(),
            state: self.state.clone(),
            current: self.current.clone(),
            _types: std::marker::PhantomData,
        }
    }

    /// Makes the received snapshot `file` durable and current: writes it, repositions the log
    /// for it, and replaces the applied state by `app` (whose record offset after its last entry
    /// is `next_offset`). Blocks on file I/O: run it through [`crate::blocking::run`]. Disk and
    /// memory change together, so a caller that stops waiting leaves them consistent.
    fn install_now(&self, file: SnapshotFile, next_offset: u64, mut app: A) -> Result<()> {
        write_meta(&self.shared.paths.snapshot, &file)?;
        let meta = &file.meta;
        if let Some(last) = meta.last_log_id {
            let mut g = self.shared.inner.blocking_lock();
            reposition_log(&mut g, &self.shared, last, next_offset)?;
        }
        self.shared.reset.notify_waiters();
        {
            let mut s = self
                .state
                .write()
                .expect("invariant: state-machine lock is never poisoned");
            app.keep_settings(&s.app);
            *s = AppliedState {
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
                next_offset,
                app,
            };
        }
        tracing::info!(
            group = self.shared.group,
            node = self.shared.node,
            snapshot = %meta,
            "installed snapshot"
        );
        *self.current.blocking_lock() = Some(file);
        Ok(())
    }

    /// Moves the log's start offset for an applied log start entry (if any).
    async fn raise_log_start(&self, log_start: Option<u64>) {
        if let Some(offset) = log_start {
            // Every replica refuses reads below the new start from here on; the segments below
            // it go with the next snapshot and purge (`Group::purge_below_log_start`).
            let start = self.shared.inner.lock().await.log.raise_log_start(offset);
            tracing::debug!(
                group = self.shared.group,
                node = self.shared.node,
                log_start = start,
                "applied log start"
            );
        }
    }
}

impl std::fmt::Debug for SnapshotFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotFile({}, {} bytes)", self.meta, self.data.len())
    }
}

/// Builds snapshots from a copy of the applied state.
#[derive(Debug)]
pub struct SnapshotBuilder<C: SkeinTypes, A: Applier<C>> {
    shared: Arc<LogShared>,
    state: AppliedState<A>,
    current: Arc<tokio::sync::Mutex<Option<SnapshotFile>>>,
    _types: std::marker::PhantomData<C>,
}

impl<C: SkeinTypes, A: Applier<C>> RaftSnapshotBuilder<C> for SnapshotBuilder<C, A> {
    async fn build_snapshot(&mut self) -> std::result::Result<Snapshot<C>, StoreError> {
        let log_start_offset = self.shared.inner.lock().await.log.log_start_offset();
        let body = SnapshotBody {
            next_offset: self.state.next_offset,
            log_start_offset,
            app: self.state.app.encode(),
        };
        let data = encode(&body);
        let snapshot_id = match self.state.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, data.len()),
            None => format!("none-{}", data.len()),
        };
        let meta = SnapshotMeta {
            last_log_id: self.state.last_applied,
            last_membership: self.state.membership.clone(),
            snapshot_id,
        };
        let file = SnapshotFile {
            meta: meta.clone(),
            data: data.clone(),
        };
        let (shared, current) = (self.shared.clone(), self.current.clone());
        // The file and the current snapshot change together, even if this future is dropped.
        crate::blocking::run("write snapshot", move || {
            write_meta(&shared.paths.snapshot, &file)?;
            tracing::debug!(
                group = shared.group,
                node = shared.node,
                snapshot = %file.meta,
                "built snapshot"
            );
            *current.blocking_lock() = Some(file);
            Ok(())
        })
        .await
        .map_err(snap_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<C: SkeinTypes, A: Applier<C>> RaftStateMachine<C> for StateMachine<C, A>
where
    C::R: Default,
{
    type SnapshotBuilder = SnapshotBuilder<C, A>;

    async fn applied_state(
        &mut self,
    ) -> std::result::Result<(Option<LogId>, StoredMembership), StoreError> {
        let s = self
            .state
            .read()
            .expect("invariant: state-machine lock is never poisoned");
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> std::result::Result<Vec<C::R>, StoreError>
    where
        I: IntoIterator<Item = openraft::Entry<C>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let mut log_start = None;
        {
            let mut s = self
                .state
                .write()
                .expect("invariant: state-machine lock is never poisoned");
            for e in entries {
                s.last_applied = Some(e.log_id);
                let r = match &e.payload {
                    EntryPayload::Blank => s.app.control_response(),
                    EntryPayload::Normal(batch) => match skein_record::BatchHeader::parse(&batch.0)
                    {
                        Ok(h) if h.kind == EntryKind::LogStart => {
                            log_start = log_start.max(log_start_of(batch));
                            s.app.control_response()
                        }
                        h => {
                            if let Ok(h) = h {
                                s.next_offset = h.next_offset();
                            }
                            s.app.apply(&e.log_id, batch)
                        }
                    },
                    EntryPayload::Membership(m) => {
                        s.membership = StoredMembership::new(Some(e.log_id), m.clone());
                        s.app.control_response()
                    }
                };
                out.push(r);
            }
        }
        self.raise_log_start(log_start).await;
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let state = self
            .state
            .read()
            .expect("invariant: state-machine lock is never poisoned")
            .clone();
        SnapshotBuilder {
            shared: self.shared.clone(),
            state,
            current: self.current.clone(),
            _types: std::marker::PhantomData,
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> std::result::Result<Box<Cursor<Vec<u8>>>, StoreError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> std::result::Result<(), StoreError> {
        let data = snapshot.into_inner();
        let body: SnapshotBody = decode("snapshot", &data).map_err(sm_err)?;
        let app = A::decode(&body.app).map_err(sm_err)?;
        let file = SnapshotFile {
            meta: meta.clone(),
            data,
        };
        let sm = self.handle();
        crate::blocking::run("install snapshot", move || {
            sm.install_now(file, body.next_offset, app)
        })
        .await
        .map_err(|e| {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)).into()
        })
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> std::result::Result<Option<Snapshot<C>>, StoreError> {
        Ok(self.current.lock().await.as_ref().map(|f| Snapshot {
            meta: f.meta.clone(),
            snapshot: Box::new(Cursor::new(f.data.clone())),
        }))
    }
}
