//! Openraft's log storage on the partition log: the Raft log *is* the [`PartitionLog`].
//!
//! - Every entry is one batch. Normal entries are the client's data batch; blank and membership
//!   entries are control batches ([`batch::control_batch`]) with timestamp 0, so every replica
//!   writes byte-identical batches. Term and index live in the batch header (stamped by the log).
//! - `append` writes the batches (page cache) and hands the callback to the group's flusher task,
//!   which fsyncs once for every append queued since its last fsync (group commit) and only then
//!   calls the callbacks.
//! - The vote and the purge point live in their own small files, written atomically.
//! - The committed log id is written in place on every commit (one small CRC-checked record, no
//!   fsync; fsynced at shutdown) so that a restarted replica re-applies its committed entries and
//!   restores its high watermark without waiting for a leader. Raft does not need it: a lost or
//!   stale record only means less is re-applied at start, and a record the local log does not
//!   back (a follower commits entries before they are fsynced) is ignored.
//! - `purge` records the purge point first, then deletes whole sealed segments; entries at or below
//!   the purge point that are still on disk are never returned.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, CommittedLeaderId, EntryPayload, LogState, RaftLogReader, StorageError,
    StorageIOError,
};
use serde::{Deserialize, Serialize};
use skein_record::{internal_batch, Batch, BatchHeader, EntryKind, InternalKind};
use skein_storage::{LogConfig, PartitionLog};
use tokio::sync::{mpsc, Mutex, Notify};

use crate::blocking::debug_assert_may_block;
use crate::error::{Error, Result};
use crate::files;
use crate::types::{
    decode, encode, GroupId, LogId, Membership, NodeId, RecordBatch, SkeinTypes, Vote,
};

/// Format version of the vote and purge-point files.
const META_VERSION: u8 = 1;
/// How long an append that continues a just-installed snapshot waits for the state machine to
/// reposition the log (see [`LogStore`]'s `append`).
const RESET_WAIT: Duration = Duration::from_secs(30);

type StoreError = StorageError<NodeId>;

/// Format version of the committed-log-id record.
const COMMITTED_VERSION: u8 = 1;
/// The committed record: version, term and index (little endian), then the CRC-32 of those 17
/// bytes. It is rewritten in place at offset 0, within one disk sector.
const COMMITTED_RECORD_BYTES: usize = 21;
const _: () = assert!(COMMITTED_RECORD_BYTES <= 512);

fn encode_committed(c: LogId) -> [u8; COMMITTED_RECORD_BYTES] {
    let mut b = [0u8; COMMITTED_RECORD_BYTES];
    b[0] = COMMITTED_VERSION;
    b[1..9].copy_from_slice(&c.leader_id.term.to_le_bytes());
    b[9..17].copy_from_slice(&c.index.to_le_bytes());
    let crc = crc32fast::hash(&b[..17]);
    b[17..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes a committed record; `None` for a missing, torn or foreign one.
fn decode_committed(b: &[u8]) -> Option<LogId> {
    let b: &[u8; COMMITTED_RECORD_BYTES] = b.get(..COMMITTED_RECORD_BYTES)?.try_into().ok()?;
    let crc = u32::from_le_bytes(b[17..].try_into().ok()?);
    if b[0] != COMMITTED_VERSION || crc32fast::hash(&b[..17]) != crc {
        return None;
    }
    let term = u64::from_le_bytes(b[1..9].try_into().ok()?);
    let index = u64::from_le_bytes(b[9..17].try_into().ok()?);
    Some(log_id(term, index))
}

/// Creates the committed-record file if it does not exist and makes its directory entry
/// durable. The file is not kept open: a replica holds no descriptor for it (thousands of
/// replicas per node), each write opens it.
fn create_committed(path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    f.sync_all()
        .and_then(|()| {
            std::fs::File::open(path.parent().unwrap_or_else(|| Path::new(".")))?.sync_all()
        })
        .map_err(|e| Error::io(format!("create {}", path.display()), e))
}

/// Opens the committed-record file for reading or writing.
fn open_committed(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
}

/// Where a group keeps its files.
#[derive(Debug, Clone)]
pub(crate) struct GroupPaths {
    pub(crate) log: PathBuf,
    pub(crate) vote: PathBuf,
    pub(crate) purged: PathBuf,
    pub(crate) snapshot: PathBuf,
    pub(crate) committed: PathBuf,
}

impl GroupPaths {
    pub(crate) fn new(dir: &Path) -> Self {
        GroupPaths {
            log: dir.join("log"),
            vote: dir.join("vote"),
            purged: dir.join("purged"),
            snapshot: dir.join("snapshot"),
            committed: dir.join("committed"),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct MetaFile<T> {
    version: u8,
    value: T,
}

pub(crate) fn write_meta<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    files::write_atomic(
        path,
        &encode(&MetaFile {
            version: META_VERSION,
            value,
        }),
    )
}

pub(crate) fn read_meta<T: for<'a> Deserialize<'a>>(
    path: &Path,
    what: &'static str,
) -> Result<Option<T>> {
    let Some(bytes) = files::read_optional(path)? else {
        return Ok(None);
    };
    let f: MetaFile<T> = decode(what, &bytes)?;
    if f.version != META_VERSION {
        return Err(Error::InvalidConfig(format!(
            "{} has format version {}, this build reads {}",
            path.display(),
            f.version,
            META_VERSION
        )));
    }
    Ok(Some(f.value))
}

/// The partition log and the Raft metadata kept beside it, behind one lock.
#[derive(Debug)]
pub(crate) struct LogInner {
    pub(crate) log: PartitionLog,
    pub(crate) vote: Option<Vote>,
    pub(crate) last_purged: Option<LogId>,
}

impl LogInner {
    /// The last log id Raft should see: the last entry, or the purge point when it is later.
    pub(crate) fn last_log_id(&self) -> Option<LogId> {
        let last = self
            .log
            .last_entry()
            .map(|(term, index)| log_id(term, index));
        match (last, self.last_purged) {
            (Some(l), Some(p)) if l.index <= p.index => Some(p),
            (Some(l), _) => Some(l),
            (None, p) => p,
        }
    }

    /// Records the purge point `purged` durably (a later one than the current only).
    pub(crate) fn set_purged(&mut self, paths: &GroupPaths, purged: LogId) -> Result<()> {
        if self.last_purged.is_some_and(|p| p.index >= purged.index) {
            return Ok(());
        }
        write_meta(&paths.purged, &purged)?;
        self.last_purged = Some(purged);
        Ok(())
    }

    /// Makes `vote` durable, then current. The appends made before it are fsynced first, so a
    /// vote write and a log write are never reordered.
    fn save_vote(&mut self, paths: &GroupPaths, vote: Vote) -> Result<()> {
        debug_assert_may_block("save vote");
        self.log.flush()?;
        write_meta(&paths.vote, &vote)?;
        self.vote = Some(vote);
        Ok(())
    }

    /// Removes every entry from Raft index `index` on (a diverging follower's uncommitted tail).
    fn truncate_from(&mut self, index: u64) -> Result<()> {
        debug_assert_may_block("truncate log");
        Ok(self.log.truncate_from_index(index)?)
    }

    /// Records the purge point `purged`, then deletes the whole sealed segments through it.
    /// Returns the number of segments deleted.
    fn purge_through(&mut self, paths: &GroupPaths, purged: LogId) -> Result<usize> {
        debug_assert_may_block("purge log");
        self.set_purged(paths, purged)?;
        Ok(self.log.purge_through_index(purged.index)?)
    }

    /// What an append at Raft index `index` needs before it can write; an error when it would
    /// leave a hole in the log.
    fn positioning(&self, index: u64) -> Result<Positioning> {
        let next = self.log.next_index();
        if next == index {
            return Ok(Positioning::Ready);
        }
        let empty = self.log.first_index() == next;
        if empty && self.last_purged.is_none() && index > next {
            // A log that never held an entry may begin anywhere: openraft appends at
            // last_log_id + 1 and this log has no last log id.
            return Ok(Positioning::Restart);
        }
        if index > next && self.last_purged.is_some_and(|p| p.index + 1 == index) {
            return Ok(Positioning::AwaitSnapshot);
        }
        Err(Error::Storage(
            skein_storage::StorageError::NonContiguousIndex {
                expected: next,
                got: index,
            },
        ))
    }

    /// Restarts the log empty at Raft index `index` if it still is empty and never purged (the
    /// lock was released since [`LogInner::positioning`] said so).
    fn restart_empty_at(&mut self, index: u64) -> Result<()> {
        debug_assert_may_block("restart empty log");
        if let Positioning::Restart = self.positioning(index)? {
            let offset = self.log.next_offset();
            self.log.reset(offset, index)?;
        }
        Ok(())
    }

    /// Fills a hole before Raft index `index` with blank entries of `term` (restarting an empty
    /// log there instead), for openraft's storage suite, which appends with holes.
    #[cfg(test)]
    fn fill_gaps_to(&mut self, index: u64, term: u64) -> Result<()> {
        debug_assert_may_block("fill log gaps");
        let next = self.log.next_index();
        if index <= next {
            return Ok(());
        }
        if self.log.first_index() == next {
            let offset = self.log.next_offset();
            self.log.reset(offset, index)?;
            return Ok(());
        }
        for i in next..index {
            let blank = internal_batch(InternalKind::Blank, 0, &[]);
            self.log.append_entry(&blank, term, i)?;
        }
        Ok(())
    }
}

/// What an append needs before it writes (see [`LogInner::positioning`]).
enum Positioning {
    /// Nothing: the log's next index is the append's.
    Ready,
    /// A restart of the empty, never-purged log at the append's index.
    Restart,
    /// The state machine's repositioning of the log for the snapshot it is installing.
    AwaitSnapshot,
}

/// State shared by a group's log store, log readers, flusher and state machine.
#[derive(Debug)]
pub(crate) struct LogShared {
    pub(crate) group: GroupId,
    pub(crate) node: NodeId,
    pub(crate) paths: GroupPaths,
    pub(crate) inner: Mutex<LogInner>,
    /// Signalled whenever the state machine repositions the log after installing a snapshot.
    pub(crate) reset: Notify,
}

impl LogShared {
    /// Opens the log and the vote and purge-point files of the group in `dir`.
    pub(crate) fn open(
        group: GroupId,
        node: NodeId,
        dir: &Path,
        config: LogConfig,
    ) -> Result<Arc<LogShared>> {
        debug_assert_may_block("open group log");
        let paths = GroupPaths::new(dir);
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create group directory {}", dir.display()), e))?;
        // Damage (a flipped bit, a segment cut short) is cut off rather than refused: the
        // replica's log then ends before it, and the leader sends the rest again.
        let (log, repairs) = PartitionLog::open_repairing(&paths.log, config)?;
        for r in &repairs {
            tracing::error!(
                group,
                node,
                segment = %r.segment.display(),
                position = r.position,
                reason = %r.reason,
                quarantine = %r.quarantine.display(),
                "replica log was damaged: cut before the damage, the leader re-replicates the rest"
            );
        }
        let vote = read_meta::<Vote>(&paths.vote, "vote file")?;
        let last_purged = read_meta::<LogId>(&paths.purged, "purge-point file")?;
        create_committed(&paths.committed)?;
        Ok(Arc::new(LogShared {
            group,
            node,
            paths,
            inner: Mutex::new(LogInner {
                log,
                vote,
                last_purged,
            }),
            reset: Notify::new(),
        }))
    }

    /// Runs `f` on the log, under its lock, on tokio's blocking pool (see [`crate::blocking`]):
    /// for work that fsyncs, truncates or deletes files. The lock is held for all of `f`, which
    /// runs to its end even when the caller's future is dropped.
    pub(crate) async fn run_blocking<R: Send + 'static>(
        self: &Arc<Self>,
        what: &'static str,
        f: impl FnOnce(&mut LogInner, &LogShared) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let shared = Arc::clone(self);
        crate::blocking::run(what, move || {
            let mut g = shared.inner.blocking_lock();
            f(&mut g, &shared)
        })
        .await
    }

    /// Makes the last committed record durable (at shutdown; commits do not fsync it).
    pub(crate) fn sync_committed(&self) -> Result<()> {
        open_committed(&self.paths.committed)
            .and_then(|f| f.sync_data())
            .map_err(|e| Error::io(format!("fsync {}", self.paths.committed.display()), e))
    }

    /// The committed log id recorded on disk, if the local log backs it: the log must hold that
    /// very entry (same index and term). A follower records commits of entries it has accepted
    /// but maybe not yet fsynced, so after a crash the record can be ahead of the log; such a
    /// record, a torn one, or one at or below the purge point (the snapshot covers it) is
    /// ignored and openraft starts from the snapshot's last applied entry. Reads the file: run it
    /// through [`LogShared::run_blocking`].
    fn recorded_committed(&self, g: &LogInner) -> Result<Option<LogId>> {
        use std::os::unix::fs::FileExt;
        debug_assert_may_block("read committed record");
        let mut b = [0u8; COMMITTED_RECORD_BYTES];
        let n = open_committed(&self.paths.committed)
            .and_then(|f| f.read_at(&mut b, 0))
            .map_err(|e| Error::io(format!("read {}", self.paths.committed.display()), e))?;
        let Some(c) = decode_committed(&b[..n]) else {
            if n > 0 {
                tracing::warn!(
                    group = self.group,
                    node = self.node,
                    bytes = n,
                    "ignore unreadable committed record"
                );
            }
            return Ok(None);
        };
        if g.last_purged.is_some_and(|p| c.index <= p.index) {
            return Ok(None);
        }
        let backed = c.index >= g.log.first_index()
            && c.index < g.log.next_index()
            && g.log.term_at(c.index)? == c.leader_id.term;
        if !backed {
            tracing::info!(
                group = self.group,
                node = self.node,
                committed = %c,
                next_index = g.log.next_index(),
                "ignore committed record the local log does not hold"
            );
            return Ok(None);
        }
        Ok(Some(c))
    }
}

/// A log id from a term and an index (a term has exactly one leader, see the crate docs).
/// The vote a replica starts with. A vote that made this node the leader comes back
/// *uncommitted* (the same term, voted for itself): openraft would otherwise restore the node as
/// leader of that term at once, and a leader whose log lost its unsynced tail in the crash (its
/// followers may have committed those entries without it) would then write *different* entries
/// at the same term and index, which Raft assumes never happens. Demoted, it must win an election
/// in a later term, which only a replica holding every committed entry can. (Found by the fault
/// suite: a leader restarted with a torn tail overwrote acknowledged records.)
fn restart_vote(v: Vote, node: NodeId) -> Vote {
    if v.is_committed() && v.leader_id().voted_for() == Some(node) {
        Vote::new(v.leader_id().term, node)
    } else {
        v
    }
}

pub(crate) fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 0), index)
}

fn read_err(e: impl std::error::Error + 'static) -> StoreError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StoreError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

/// Rebuilds openraft's entry `index` from the batch the log holds for it (its leader epoch is
/// the entry's term).
pub(crate) fn entry_from_batch<C: SkeinTypes>(index: u64, b: Batch) -> Result<openraft::Entry<C>> {
    let h = *b.header();
    let term = u64::try_from(h.leader_epoch).unwrap_or(0);
    let payload = match h.kind {
        EntryKind::Data | EntryKind::Control | EntryKind::LogStart => {
            EntryPayload::Normal(RecordBatch(b.bytes().clone()))
        }
        EntryKind::Blank => EntryPayload::Blank,
        EntryKind::Membership => {
            EntryPayload::Membership(decode::<Membership>("membership entry", &b.payload())?)
        }
    };
    Ok(openraft::Entry {
        log_id: log_id(term, index),
        payload,
    })
}

/// Reads entries `[start, end)` that are on disk and not purged, at most `max_bytes` of them (at
/// least one when the range holds any).
pub(crate) async fn read_entries<C: SkeinTypes>(
    shared: &LogShared,
    start: u64,
    end: u64,
    max_bytes: u64,
) -> Result<Vec<openraft::Entry<C>>> {
    let batches = {
        let g = shared.inner.lock().await;
        let floor = g.last_purged.map_or(0, |p| p.index + 1);
        let from = start.max(floor).max(g.log.first_index());
        let to = end.min(g.log.next_index());
        if from >= to {
            return Ok(Vec::new());
        }
        (from, g.log.entries(from, to, max_bytes)?)
    };
    let (from, batches) = batches;
    batches
        .into_iter()
        .zip(from..)
        .map(|(b, index)| entry_from_batch(index, b))
        .collect()
}

fn range_to_bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(x) => *x,
        Bound::Excluded(x) => x.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(x) => x.saturating_add(1),
        Bound::Excluded(x) => *x,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

/// Reads the Raft log for replication and for applying committed entries.
#[derive(Debug)]
pub struct LogReader<C: SkeinTypes> {
    shared: Arc<LogShared>,
    max_read_bytes: u64,
    _types: PhantomData<C>,
}

impl<C: SkeinTypes> RaftLogReader<C> for LogReader<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<openraft::Entry<C>>, StoreError> {
        let (start, end) = range_to_bounds(&range);
        read_entries(&self.shared, start, end, u64::MAX)
            .await
            .map_err(read_err)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> std::result::Result<Vec<openraft::Entry<C>>, StoreError> {
        read_entries(&self.shared, start, end, self.max_read_bytes)
            .await
            .map_err(read_err)
    }
}

type FlushRequest<C> = LogFlushed<C>;

/// Appends waiting for the group's flusher, at most (each one fsync covers all that wait).
const FLUSH_REQUESTS_MAX: usize = 1024;

/// Openraft's log storage for one group, on that group's [`PartitionLog`].
///
/// Appends that follow a snapshot installed beyond the end of the local log wait (up to 30 s)
/// until the state machine has repositioned the log at the snapshot's next offset and index:
/// openraft records the purge point before its state-machine worker installs the snapshot, and
/// only the snapshot knows the record offset the next entry must get.
#[derive(Debug)]
pub struct LogStore<C: SkeinTypes> {
    shared: Arc<LogShared>,
    flush_tx: mpsc::Sender<FlushRequest<C>>,
    max_read_bytes: u64,
    /// openraft's storage suite appends with holes in the index sequence, which a partition log
    /// refuses by design; only the suite's builder fills them with blank entries.
    #[cfg(test)]
    fill_gaps: bool,
}

impl<C: SkeinTypes> LogStore<C> {
    /// A log store on `shared`; spawns the group-commit flusher on the current tokio runtime.
    pub(crate) fn new(shared: Arc<LogShared>, max_read_bytes: u64) -> Self {
        let (flush_tx, flush_rx) = mpsc::channel(FLUSH_REQUESTS_MAX);
        tokio::spawn(run_flusher::<C>(shared.clone(), flush_rx));
        LogStore {
            shared,
            flush_tx,
            max_read_bytes,
            #[cfg(test)]
            fill_gaps: false,
        }
    }

    /// A log store that fills holes with blank entries, for openraft's storage suite only.
    #[cfg(test)]
    pub(crate) fn new_for_suite(shared: Arc<LogShared>, max_read_bytes: u64) -> Self {
        LogStore {
            fill_gaps: true,
            ..Self::new(shared, max_read_bytes)
        }
    }

    /// Waits until the log's next index is `index`, repositioning an empty, never-purged log.
    async fn position_for(&self, index: u64, term: u64) -> Result<()> {
        #[cfg(test)]
        if self.fill_gaps {
            self.shared
                .run_blocking("fill log gaps", move |g, _| g.fill_gaps_to(index, term))
                .await?;
        }
        #[cfg(not(test))]
        let _ = term;
        let deadline = tokio::time::Instant::now() + RESET_WAIT;
        loop {
            let notified = self.shared.reset.notified();
            let positioning = self.shared.inner.lock().await.positioning(index)?;
            match positioning {
                Positioning::Ready => return Ok(()),
                Positioning::Restart => {
                    self.shared
                        .run_blocking("restart empty log", move |g, _| g.restart_empty_at(index))
                        .await?;
                    continue;
                }
                Positioning::AwaitSnapshot => {}
            }
            tracing::debug!(
                group = self.shared.group,
                node = self.shared.node,
                index,
                "append waits for the snapshot install to reposition the log"
            );
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Error::Timeout(format!(
                    "log of group {} was not repositioned at index {index} after a snapshot",
                    self.shared.group
                )));
            }
        }
    }
}

async fn run_flusher<C: SkeinTypes>(
    shared: Arc<LogShared>,
    mut rx: mpsc::Receiver<FlushRequest<C>>,
) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        wait_for_flush_policy(&shared, &mut rx, &mut batch).await;
        let result = flush_unlocked(&shared).await;
        if let Err(e) = &result {
            tracing::error!(
                group = shared.group,
                node = shared.node,
                error = %e,
                "flush partition log"
            );
        }
        for cb in batch.drain(..) {
            cb.log_io_completed(
                result
                    .clone()
                    .map_err(|e| std::io::Error::other(format!("flush partition log: {e}"))),
            );
        }
    }
}

/// Waits until the log's flush policy wants its pending appends fsynced
/// (`PartitionLog::flush_deadline`): at once for `EveryBatch`; for `GroupCommit`, once
/// `interval` has passed since the oldest unflushed append or `bytes` are pending, so that one
/// fsync covers more appends. Appends queued meanwhile join `batch`. `Never` does not wait (its
/// flush is a no-op).
async fn wait_for_flush_policy<C: SkeinTypes>(
    shared: &Arc<LogShared>,
    rx: &mut mpsc::Receiver<FlushRequest<C>>,
    batch: &mut Vec<FlushRequest<C>>,
) {
    loop {
        let deadline = shared.inner.lock().await.log.flush_deadline();
        let Some(deadline) = deadline.filter(|d| *d > std::time::Instant::now()) else {
            return;
        };
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => return,
            more = rx.recv() => match more {
                Some(cb) => batch.push(cb),
                None => return,
            },
        }
    }
}

/// Makes every entry appended so far durable without holding the log's lock during the fsync,
/// so that appends and reads go on meanwhile (the lock is taken only to begin and to complete
/// the flush). With the `Never` flush policy nothing is fsynced (durability is then the OS's).
async fn flush_unlocked(shared: &Arc<LogShared>) -> std::result::Result<(), String> {
    let ticket = {
        let mut g = shared.inner.lock().await;
        if g.log.config().flush == skein_storage::FlushPolicy::Never {
            return Ok(());
        }
        g.log.begin_flush().map_err(|e| e.to_string())?
    };
    let Some(ticket) = ticket else {
        return Ok(());
    };
    let (ticket, outcome) = tokio::task::spawn_blocking(move || {
        let r = ticket.sync();
        (ticket, r)
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut g = shared.inner.lock().await;
    g.log
        .complete_flush(ticket, outcome)
        .map_err(|e| e.to_string())
}

/// Encodes an entry as the batch the log stores for it.
fn entry_batch<C: SkeinTypes>(entry: &openraft::Entry<C>) -> Result<bytes::Bytes> {
    Ok(match &entry.payload {
        EntryPayload::Normal(RecordBatch(b)) => {
            let h = BatchHeader::parse(b).map_err(|e| Error::InvalidBatch(e.into()))?;
            if !matches!(h.kind, EntryKind::Data | EntryKind::LogStart) {
                return Err(Error::NotDataBatch { kind: h.kind });
            }
            b.clone()
        }
        EntryPayload::Blank => internal_batch(InternalKind::Blank, 0, &[]),
        EntryPayload::Membership(m) => internal_batch(InternalKind::Membership, 0, &encode(m)),
    })
}

impl<C: SkeinTypes> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<openraft::Entry<C>>, StoreError> {
        let (start, end) = range_to_bounds(&range);
        read_entries(&self.shared, start, end, u64::MAX)
            .await
            .map_err(read_err)
    }
}

impl<C: SkeinTypes> RaftLogStorage<C> for LogStore<C> {
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> std::result::Result<LogState<C>, StoreError> {
        let g = self.shared.inner.lock().await;
        Ok(LogState {
            last_purged_log_id: g.last_purged,
            last_log_id: g.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            shared: self.shared.clone(),
            max_read_bytes: self.max_read_bytes,
            _types: PhantomData,
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> std::result::Result<(), StoreError> {
        let vote = *vote;
        // Writes are never reordered: appends queued before this vote become durable first.
        self.shared
            .run_blocking("save vote", move |g, s| g.save_vote(&s.paths, vote))
            .await
            .map_err(|e| StoreError::from(StorageIOError::write_vote(AnyError::new(&e))))
    }

    async fn read_vote(&mut self) -> std::result::Result<Option<Vote>, StoreError> {
        let vote = self.shared.inner.lock().await.vote;
        Ok(vote.map(|v| restart_vote(v, self.shared.node)))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> std::result::Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        let Some(c) = committed else {
            return Ok(());
        };
        // A positioned write into the page cache, no fsync: see the module docs.
        open_committed(&self.shared.paths.committed)
            .and_then(|f| f.write_all_at(&encode_committed(c), 0))
            .map_err(|e| StoreError::from(StorageIOError::write(AnyError::new(&e))))
    }

    async fn read_committed(&mut self) -> std::result::Result<Option<LogId>, StoreError> {
        self.shared
            .run_blocking("read committed record", |g, s| s.recorded_committed(g))
            .await
            .map_err(read_err)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> std::result::Result<(), StoreError>
    where
        I: IntoIterator<Item = openraft::Entry<C>> + Send,
        I::IntoIter: Send,
    {
        let mut entries = entries.into_iter().peekable();
        if let Some(first) = entries.peek() {
            self.position_for(first.log_id.index, first.log_id.leader_id.term)
                .await
                .map_err(write_err)?;
        }
        {
            let mut g = self.shared.inner.lock().await;
            for e in entries {
                let bytes = entry_batch(&e).map_err(write_err)?;
                g.log
                    .append_entry(&bytes, e.log_id.leader_id.term, e.log_id.index)
                    .map_err(write_err)?;
            }
        }
        // Bounded: a flusher behind a slow disk makes appends wait instead of queueing without
        // limit.
        self.flush_tx.send(callback).await.map_err(|_| {
            write_err(std::io::Error::other(
                "the group's flusher has stopped; the log cannot be made durable",
            ))
        })?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> std::result::Result<(), StoreError> {
        tracing::debug!(
            group = self.shared.group,
            node = self.shared.node,
            index = log_id.index,
            "truncate log"
        );
        self.shared
            .run_blocking("truncate log", move |g, _| g.truncate_from(log_id.index))
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> std::result::Result<(), StoreError> {
        let deleted = self
            .shared
            .run_blocking("purge log", move |g, s| g.purge_through(&s.paths, log_id))
            .await
            .map_err(write_err)?;
        tracing::debug!(
            group = self.shared.group,
            node = self.shared.node,
            index = log_id.index,
            deleted,
            "purged log"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::storage::RaftLogStorage;

    /// Opens group 1's log on node 3 in `dir`, on the blocking pool as `Group::open` does.
    async fn open_shared(dir: &Path) -> Arc<LogShared> {
        let dir = dir.to_path_buf();
        crate::blocking::run("open", move || {
            LogShared::open(1, 3, &dir, LogConfig::default())
        })
        .await
        .expect("open log")
    }

    #[test]
    fn a_leaders_own_committed_vote_comes_back_uncommitted() {
        let mine = Vote::new_committed(7, 3);
        let back = restart_vote(mine, 3);
        assert!(!back.is_committed());
        assert_eq!(back.leader_id().term, 7);
        assert_eq!(back.leader_id().voted_for(), Some(3));
        // Another node's leadership, or a plain vote, is kept as it was.
        assert_eq!(restart_vote(mine, 2), mine);
        assert_eq!(restart_vote(Vote::new(7, 3), 3), Vote::new(7, 3));
    }

    #[tokio::test]
    async fn vote_and_purge_point_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vote = Vote::new_committed(7, 2);
        {
            let shared = open_shared(dir.path()).await;
            let mut store = LogStore::<crate::PartitionTypes>::new(shared.clone(), 1 << 20);
            store.save_vote(&vote).await.expect("save vote");
            store.purge(log_id(2, 5)).await.expect("purge");
        }
        let shared = open_shared(dir.path()).await;
        let mut store = LogStore::<crate::PartitionTypes>::new(shared, 1 << 20);
        assert_eq!(store.read_vote().await.expect("read vote"), Some(vote));
        let st = store.get_log_state().await.expect("log state");
        assert_eq!(st.last_purged_log_id, Some(log_id(2, 5)));
        assert_eq!(st.last_log_id, Some(log_id(2, 5)));
    }

    /// Runs on the test's current-thread runtime, where `block_in_place` would panic; a debug
    /// build also checks that the file I/O ran on the blocking pool, not on the test's thread.
    #[tokio::test]
    async fn truncate_and_purge_run_off_the_async_worker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = open_shared(dir.path()).await;
        let mut store = LogStore::<crate::PartitionTypes>::new(shared.clone(), 1 << 20);
        append_blanks(&shared, 2, 5).await;
        store.truncate(log_id(2, 3)).await.expect("truncate");
        let st = store.get_log_state().await.expect("log state");
        assert_eq!(st.last_log_id, Some(log_id(2, 2)));
        store.purge(log_id(2, 1)).await.expect("purge");
        let st = store.get_log_state().await.expect("log state");
        assert_eq!(st.last_purged_log_id, Some(log_id(2, 1)));
        assert_eq!(st.last_log_id, Some(log_id(2, 2)));
    }

    /// A vote write whose caller stops waiting runs to its end: memory and disk agree on it.
    #[tokio::test]
    async fn a_save_vote_whose_caller_stops_waiting_still_completes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vote = Vote::new_committed(7, 2);
        {
            let shared = open_shared(dir.path()).await;
            let mut store = LogStore::<crate::PartitionTypes>::new(shared.clone(), 1 << 20);
            // Polled once (the work goes to the blocking pool), then dropped.
            let _ = tokio::time::timeout(Duration::ZERO, store.save_vote(&vote)).await;
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while shared.inner.lock().await.vote != Some(vote) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the dropped vote write did not complete"
                );
                tokio::task::yield_now().await;
            }
        }
        let shared = open_shared(dir.path()).await;
        assert_eq!(shared.inner.lock().await.vote, Some(vote));
    }

    async fn append_blanks(shared: &LogShared, term: u64, n: u64) {
        let mut g = shared.inner.lock().await;
        for i in 0..n {
            let blank = internal_batch(InternalKind::Blank, 0, &[]);
            g.log.append_entry(&blank, term, i).expect("append");
        }
        g.log.flush().expect("flush");
    }

    #[tokio::test]
    async fn committed_record_survives_reopen_only_when_the_log_holds_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let shared = open_shared(dir.path()).await;
            let mut store = LogStore::<crate::PartitionTypes>::new(shared.clone(), 1 << 20);
            assert_eq!(store.read_committed().await.expect("read"), None);
            append_blanks(&shared, 2, 5).await;
            store
                .save_committed(Some(log_id(2, 3)))
                .await
                .expect("save committed");
            shared.sync_committed().expect("sync committed");
        }
        let shared = open_shared(dir.path()).await;
        let mut store = LogStore::<crate::PartitionTypes>::new(shared.clone(), 1 << 20);
        assert_eq!(
            store.read_committed().await.expect("read"),
            Some(log_id(2, 3))
        );
        // Ahead of the log (a follower's commit of entries not yet fsynced): ignored.
        store
            .save_committed(Some(log_id(2, 9)))
            .await
            .expect("save committed");
        assert_eq!(store.read_committed().await.expect("read"), None);
        // Another term at that index (the log was truncated and rewritten): ignored.
        store
            .save_committed(Some(log_id(1, 4)))
            .await
            .expect("save committed");
        assert_eq!(store.read_committed().await.expect("read"), None);
        // A torn record: ignored.
        let mut torn = encode_committed(log_id(2, 4));
        torn[10] ^= 0xff;
        std::fs::write(&shared.paths.committed, torn).expect("write torn record");
        assert_eq!(store.read_committed().await.expect("read"), None);
    }
}
