//! A partition's Raft group: produce path, high watermark and the idempotent-producer table.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{CheckIsLeaderError, RaftError};
use serde::{Deserialize, Serialize};
use skein_record::{BatchHeader, EntryKind};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::group::Group;
use crate::state_machine::Applier;
use crate::types::{decode, encode, LogId, PartitionTypes, ProduceResponse, RecordBatch};

/// How many of a producer's latest batches are remembered for deduplication (as Kafka).
pub const PRODUCER_BATCHES_KEPT: usize = 5;

/// One remembered batch of an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducedBatch {
    /// Sequence number of its first record.
    pub base_sequence: i32,
    /// Records it holds.
    pub record_count: u32,
    /// Offset its first record got.
    pub base_offset: u64,
}

impl ProducedBatch {
    fn next_sequence(&self) -> i32 {
        self.base_sequence.wrapping_add(self.record_count as i32)
    }
}

/// What the partition remembers of one idempotent producer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProducerState {
    /// The newest epoch seen.
    pub epoch: i16,
    /// Its latest batches, oldest first, at most [`PRODUCER_BATCHES_KEPT`].
    pub batches: VecDeque<ProducedBatch>,
    /// The largest `max_timestamp` of its batches: when it was last used, by the log's clock.
    pub last_timestamp_ms: i64,
}

/// Result of checking a batch against the producer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The batch is new and continues the producer's sequence.
    New,
    /// The batch repeats one already appended; here is the original's answer.
    Duplicate(ProduceResponse),
}

/// How long, and how many, idempotent producers a partition remembers (this node's settings;
/// not part of a snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerLimits {
    /// A producer is forgotten once the log's clock is this far past its newest batch.
    pub expiry_ms: i64,
    /// Most producers remembered; beyond it the least recently used one is forgotten.
    pub ids_max: usize,
}

impl Default for ProducerLimits {
    fn default() -> Self {
        let c = crate::config::RaftConfig::default();
        ProducerLimits::of(&c)
    }
}

impl ProducerLimits {
    fn of(c: &crate::config::RaftConfig) -> Self {
        ProducerLimits {
            expiry_ms: i64::try_from(c.producer_id_expiry_ms).unwrap_or(i64::MAX),
            ids_max: usize::try_from(c.producer_ids_per_partition_max).unwrap_or(usize::MAX),
        }
    }
}

/// A replica's idempotent-producer counts (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProducerStats {
    /// Producers remembered.
    pub ids: usize,
    /// Producers forgotten after `expiry_ms` without a batch, since this replica started.
    pub expired: u64,
    /// Producers forgotten beyond `ids_max`, since this replica started.
    pub evicted: u64,
}

/// The partition's applied application state: the idempotent-producer table.
///
/// Producers expire by the log's clock, never the wall clock, so that every replica forgets the
/// same producers at the same entry: the clock is the largest batch `max_timestamp` applied so
/// far. A producer whose newest batch is more than `expiry_ms` behind that clock is forgotten;
/// when more than `ids_max` producers are remembered, the one whose newest batch is oldest
/// (ties: the lowest id) is forgotten. A forgotten producer that writes again is taken as new,
/// as Kafka does since KIP-360: its next batch is accepted whatever its sequence.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProducerTable {
    /// Producer id -> its state.
    pub producers: BTreeMap<i64, ProducerState>,
    /// The log's clock: the largest batch `max_timestamp` applied.
    pub clock_ms: i64,
    /// (last timestamp, producer id) of every producer, oldest first (derived from
    /// `producers`).
    #[serde(skip)]
    by_age: BTreeSet<(i64, i64)>,
    /// Producers forgotten on this replica since it started (expired, evicted): for metrics.
    #[serde(skip)]
    forgotten: (u64, u64),
    #[serde(skip)]
    limits: ProducerLimits,
}

/// Equal replicated state (settings and this replica's counters aside).
impl PartialEq for ProducerTable {
    fn eq(&self, other: &Self) -> bool {
        self.producers == other.producers && self.clock_ms == other.clock_ms
    }
}

impl Eq for ProducerTable {}

impl ProducerTable {
    /// An empty table with these limits.
    pub fn with_limits(limits: ProducerLimits) -> Self {
        ProducerTable {
            limits,
            ..ProducerTable::default()
        }
    }

    /// Producers expired and producers evicted (over the maximum) on this replica since it
    /// started.
    pub fn forgotten(&self) -> (u64, u64) {
        self.forgotten
    }

    fn duplicate_of(&self, h: &BatchHeader) -> Option<ProducedBatch> {
        let p = self.producers.get(&h.producer_id)?;
        if p.epoch != h.producer_epoch {
            return None;
        }
        p.batches
            .iter()
            .find(|b| b.base_sequence == h.base_sequence && b.record_count == h.record_count)
            .copied()
    }

    /// Checks an idempotent batch (`producer_id >= 0`): a duplicate of a remembered batch, a new
    /// batch continuing the sequence (`next_expected` overrides the table's expectation for
    /// batches still in flight), or an error (fenced epoch, sequence gap).
    pub fn check(
        &self,
        h: &BatchHeader,
        next_expected: Option<(i16, i32)>,
    ) -> Result<SequenceCheck> {
        if let Some(d) = self.duplicate_of(h) {
            return Ok(SequenceCheck::Duplicate(ProduceResponse {
                base_offset: d.base_offset,
                record_count: d.record_count,
                duplicate: true,
            }));
        }
        let known = self.producers.get(&h.producer_id);
        let current = next_expected.or_else(|| {
            known.map(|p| (p.epoch, p.batches.back().map_or(0, |b| b.next_sequence())))
        });
        let Some((epoch, expected)) = current else {
            return Ok(SequenceCheck::New);
        };
        if h.producer_epoch < epoch {
            return Err(Error::ProducerFenced {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: epoch,
            });
        }
        let expected = if h.producer_epoch > epoch {
            0
        } else {
            expected
        };
        if h.base_sequence != expected {
            return Err(Error::OutOfOrderSequence {
                producer_id: h.producer_id,
                expected,
                got: h.base_sequence,
            });
        }
        Ok(SequenceCheck::New)
    }

    fn record(&mut self, h: &BatchHeader) {
        let p = self.producers.entry(h.producer_id).or_default();
        self.by_age.remove(&(p.last_timestamp_ms, h.producer_id));
        p.last_timestamp_ms = p.last_timestamp_ms.max(h.max_timestamp);
        self.by_age.insert((p.last_timestamp_ms, h.producer_id));
        if h.producer_epoch != p.epoch {
            p.epoch = h.producer_epoch;
            p.batches.clear();
        }
        p.batches.push_back(ProducedBatch {
            base_sequence: h.base_sequence,
            record_count: h.record_count,
            base_offset: h.base_offset,
        });
        while p.batches.len() > PRODUCER_BATCHES_KEPT {
            p.batches.pop_front();
        }
    }

    /// Forgets producers past the expiry and beyond the maximum (see the type's docs).
    fn forget_old(&mut self) {
        while let Some(&(ts, pid)) = self.by_age.first() {
            if self.clock_ms.saturating_sub(ts) <= self.limits.expiry_ms {
                break;
            }
            self.by_age.pop_first();
            self.producers.remove(&pid);
            self.forgotten.0 += 1;
        }
        while self.producers.len() > self.limits.ids_max {
            let Some((_, pid)) = self.by_age.pop_first() else {
                break;
            };
            self.producers.remove(&pid);
            self.forgotten.1 += 1;
        }
    }

    fn rebuild_index(&mut self) {
        self.by_age = self
            .producers
            .iter()
            .map(|(pid, p)| (p.last_timestamp_ms, *pid))
            .collect();
    }
}

impl Applier<PartitionTypes> for ProducerTable {
    fn apply(&mut self, _log_id: &LogId, batch: &RecordBatch) -> ProduceResponse {
        // The batch was validated when it was appended and read back CRC-checked.
        let Ok(h) = BatchHeader::parse(&batch.0) else {
            return ProduceResponse::default();
        };
        if h.producer_id >= 0 {
            // Normally caught at the leader; a duplicate that slipped in (e.g. proposed by a
            // deposed leader) is answered with the original's offset and not remembered twice.
            if let Some(d) = self.duplicate_of(&h) {
                return ProduceResponse {
                    base_offset: d.base_offset,
                    record_count: d.record_count,
                    duplicate: true,
                };
            }
            self.record(&h);
        }
        self.clock_ms = self.clock_ms.max(h.max_timestamp);
        self.forget_old();
        ProduceResponse {
            base_offset: h.base_offset,
            record_count: h.record_count,
            duplicate: false,
        }
    }

    fn control_response(&self) -> ProduceResponse {
        ProduceResponse::default()
    }

    fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut t: ProducerTable = decode("producer table", bytes)?;
        t.rebuild_index();
        Ok(t)
    }

    fn configure(&mut self, config: &crate::config::RaftConfig) {
        self.limits = ProducerLimits::of(config);
    }

    fn keep_settings(&mut self, previous: &Self) {
        self.limits = previous.limits;
        self.forgotten = previous.forgotten;
    }
}

type InflightResult = Option<std::result::Result<ProduceResponse, String>>;

/// What `produce` does with an idempotent batch.
enum Begin {
    Wait(watch::Receiver<InflightResult>),
    Done(ProduceResponse),
    Write(watch::Sender<InflightResult>),
}

/// An idempotent batch's in-flight entry; dropping it (when its write has an answer, or its
/// task ended some other way) clears the entry.
struct InflightGuard {
    inflight: Arc<Mutex<Inflight>>,
    key: (i64, i16, i32),
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut inf = self
            .inflight
            .lock()
            .expect("invariant: in-flight lock is never poisoned");
        inf.by_batch.remove(&self.key);
        if let Some(t) = inf.tail.get_mut(&self.key.0) {
            t.2 -= 1;
            if t.2 == 0 {
                inf.tail.remove(&self.key.0);
            }
        }
    }
}

/// Runs `fut` to the end even if the caller stops waiting: polled once here, in the caller's
/// order, then (when not finished) in a task of its own that the caller awaits.
async fn finish_detached<T: Send + 'static>(
    fut: impl Future<Output = T> + Send + 'static,
) -> std::result::Result<T, tokio::task::JoinError> {
    let mut fut = Box::pin(fut);
    match std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => tokio::spawn(fut).await,
    }
}

#[derive(Debug, Default)]
struct Inflight {
    by_batch: HashMap<(i64, i16, i32), watch::Receiver<InflightResult>>,
    /// Producer id -> (epoch, next expected sequence, batches in flight).
    tail: HashMap<i64, (i16, i32, usize)>,
}

/// A partition's replica: a Raft group whose log is the partition log.
#[derive(Debug)]
pub struct PartitionGroup {
    group: Group<PartitionTypes, ProducerTable>,
    inflight: Arc<Mutex<Inflight>>,
    /// The term in which this replica, as leader, last confirmed it has applied every entry of
    /// earlier terms (so its producer table is complete).
    caught_up_term: AtomicU64,
}

impl Deref for PartitionGroup {
    type Target = Group<PartitionTypes, ProducerTable>;
    fn deref(&self) -> &Self::Target {
        &self.group
    }
}

impl PartitionGroup {
    pub(crate) fn new(group: Group<PartitionTypes, ProducerTable>) -> Self {
        PartitionGroup {
            group,
            inflight: Arc::new(Mutex::new(Inflight::default())),
            caught_up_term: AtomicU64::new(0),
        }
    }

    /// The idempotent producers this replica remembers and those it forgot since it started.
    pub fn producer_stats(&self) -> ProducerStats {
        self.with_state(|s| ProducerStats {
            ids: s.app.producers.len(),
            expired: s.app.forgotten.0,
            evicted: s.app.forgotten.1,
        })
    }

    /// The high watermark on this replica: the offset up to which (exclusive) records are
    /// committed and applied.
    pub fn high_watermark(&self) -> u64 {
        self.applied_offset()
    }

    /// Appends one data batch through Raft and returns once it is committed (fsynced on a
    /// majority) and applied. A retried batch of an idempotent producer is answered with the
    /// original's offset instead of being appended again.
    ///
    /// Cancel-safe: the batch is handed to Raft on the first poll (so batches started in order
    /// are appended in order), and an idempotent write whose caller stops waiting (a request
    /// timeout, a dropped connection) runs on in its own task until Raft answers, then clears
    /// its in-flight entry. A retry meanwhile waits for that answer instead of failing or being
    /// appended a second time.
    pub async fn produce(self: &Arc<Self>, batch: Bytes) -> Result<ProduceResponse> {
        let h = self.check_batch(&batch)?;
        if h.producer_id < 0 {
            return self.write(RecordBatch(batch)).await;
        }
        self.ensure_caught_up().await?;
        let tx = match self.begin_idempotent(&h)? {
            Begin::Wait(mut rx) => return wait_inflight(&mut rx, self.id()).await,
            Begin::Done(r) => return Ok(r),
            Begin::Write(tx) => tx,
        };
        let guard = InflightGuard {
            inflight: self.inflight.clone(),
            key: (h.producer_id, h.producer_epoch, h.base_sequence),
        };
        let me = Arc::clone(self);
        let write = async move {
            let result = me.write(RecordBatch(batch)).await;
            // Nobody waiting is fine.
            let _ = tx.send(Some(match &result {
                Ok(r) => Ok(*r),
                Err(e) => Err(e.to_string()),
            }));
            drop(guard);
            result
        };
        finish_detached(write).await.unwrap_or_else(|e| {
            Err(Error::Raft {
                group: self.id(),
                message: format!("the write of this batch failed: {e}"),
            })
        })
    }

    /// Checks a batch before it goes to Raft: size, format, a data batch, not transactional.
    fn check_batch(&self, batch: &Bytes) -> Result<BatchHeader> {
        if batch.len() > self.batch_bytes_max() as usize {
            return Err(Error::InvalidBatch(
                skein_storage::StorageError::BatchTooLarge {
                    size: batch.len(),
                    max: self.batch_bytes_max(),
                },
            ));
        }
        let h = skein_record::validate(batch).map_err(|e| Error::InvalidBatch(e.into()))?;
        if h.kind != EntryKind::Data {
            return Err(Error::NotDataBatch { kind: h.kind });
        }
        if h.is_transactional() {
            return Err(Error::TransactionalBatch);
        }
        Ok(h)
    }

    /// Decides what to do with an idempotent batch: wait for the same batch already in flight,
    /// answer a duplicate of an applied one, or write it (registered as in flight, continuing
    /// its producer's sequence).
    fn begin_idempotent(&self, h: &BatchHeader) -> Result<Begin> {
        let key = (h.producer_id, h.producer_epoch, h.base_sequence);
        let mut inf = self
            .inflight
            .lock()
            .expect("invariant: in-flight lock is never poisoned");
        if let Some(rx) = inf.by_batch.get(&key) {
            return Ok(Begin::Wait(rx.clone()));
        }
        let tail = inf
            .tail
            .get(&h.producer_id)
            .map(|(epoch, next, _)| (*epoch, *next));
        match self.with_state(|s| s.app.check(h, tail))? {
            SequenceCheck::Duplicate(r) => Ok(Begin::Done(r)),
            SequenceCheck::New => {
                let (tx, rx) = watch::channel(None);
                inf.by_batch.insert(key, rx);
                let next = h.base_sequence.wrapping_add(h.record_count as i32);
                let t = inf
                    .tail
                    .entry(h.producer_id)
                    .or_insert((h.producer_epoch, next, 0));
                *t = (h.producer_epoch, next, t.2 + 1);
                Ok(Begin::Write(tx))
            }
        }
    }

    /// Whether this replica, as leader, has confirmed in `term` that its producer table covers
    /// its whole log (see `ensure_caught_up`): from then on `produce` hands an idempotent batch
    /// to Raft on its first poll, so batches started in order are appended in order.
    pub fn caught_up_in(&self, term: u64) -> bool {
        self.caught_up_term.load(Ordering::Acquire) == term
    }

    /// As a new leader, waits once per term (and once per process) until every entry its log
    /// held when it started leading is applied, so that a retry of a batch appended before is
    /// recognised by the producer table. Entries of earlier terms are not enough: openraft
    /// restores a leader that restarts with its own committed vote in the same term, and the
    /// batches it appended in that term before the restart are in its log, uncommitted, known
    /// to no in-flight table (the fault suite found the duplicate this let in).
    async fn ensure_caught_up(&self) -> Result<()> {
        let (term, last_index) = {
            let m = self.raft().metrics();
            let m = m.borrow();
            (m.current_term, m.last_log_index)
        };
        if self.caught_up_in(term) {
            return Ok(());
        }
        match self.raft().ensure_linearizable().await {
            Ok(_) => {
                let timeout =
                    self.raft_config().election_timeout_max() * 2 + Duration::from_secs(5);
                if let Err(e) = self
                    .raft()
                    .wait(Some(timeout))
                    .applied_index_at_least(last_index, "the leader's earlier entries applied")
                    .await
                {
                    tracing::warn!(group = self.id(), error = %e, "leader not caught up yet");
                    // Retryable, like not being the leader yet.
                    return Err(Error::NotLeader {
                        group: self.id(),
                        node: self.node_id(),
                        leader: None,
                    });
                }
                self.caught_up_term.store(term, Ordering::Release);
                Ok(())
            }
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(Error::NotLeader {
                    group: self.id(),
                    node: self.node_id(),
                    leader: f.leader_id,
                })
            }
            // The leader could not confirm a quorum in time (a partition, or a loaded machine):
            // retryable, like not being the leader.
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                Err(Error::NotLeader {
                    group: self.id(),
                    node: self.node_id(),
                    leader: None,
                })
            }
            Err(RaftError::Fatal(f)) => Err(Error::Stopped {
                group: self.id(),
                reason: f.to_string(),
            }),
        }
    }
}

async fn wait_inflight(
    rx: &mut watch::Receiver<InflightResult>,
    group: u64,
) -> Result<ProduceResponse> {
    let r = rx
        .wait_for(|r| r.is_some())
        .await
        .map_err(|_| Error::Raft {
            group,
            message: "the original write of this batch was abandoned".into(),
        })?
        .clone();
    match r {
        Some(Ok(mut resp)) => {
            resp.duplicate = true;
            Ok(resp)
        }
        Some(Err(message)) => Err(Error::Raft { group, message }),
        None => Err(Error::Raft {
            group,
            message: "the original write of this batch has no result".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skein_record::{BatchBuilder, ProducerStamp};

    fn batch(pid: i64, epoch: i16, seq: i32, n: u32, base_offset: u64) -> RecordBatch {
        batch_at(pid, epoch, seq, n, base_offset, 0)
    }

    fn batch_at(pid: i64, epoch: i16, seq: i32, n: u32, base_offset: u64, ts: i64) -> RecordBatch {
        let mut b = BatchBuilder::new(ts).producer(ProducerStamp {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
        });
        for _ in 0..n {
            b.push(ts, None, Some(b"v"), &[]);
        }
        let mut m = bytes::BytesMut::from(&b.finish()[..]);
        skein_record::stamp(&mut m, base_offset, 1).expect("long enough");
        RecordBatch(m.freeze())
    }

    #[test]
    fn duplicate_is_answered_with_the_original_offset() {
        let mut t = ProducerTable::default();
        let lid = crate::log_store::log_id(1, 1);
        let r = t.apply(&lid, &batch(7, 0, 0, 3, 100));
        assert_eq!((r.base_offset, r.duplicate), (100, false));
        let r = t.apply(&lid, &batch(7, 0, 0, 3, 200));
        assert_eq!((r.base_offset, r.duplicate), (100, true));
        let h = BatchHeader::parse(&batch(7, 0, 3, 1, 0).0).expect("valid");
        assert_eq!(t.check(&h, None).expect("in order"), SequenceCheck::New);
        let h = BatchHeader::parse(&batch(7, 0, 5, 1, 0).0).expect("valid");
        assert!(matches!(
            t.check(&h, None),
            Err(Error::OutOfOrderSequence { expected: 3, .. })
        ));
    }

    #[test]
    fn keeps_only_the_latest_batches_and_fences_old_epochs() {
        let mut t = ProducerTable::default();
        let lid = crate::log_store::log_id(1, 1);
        for i in 0..8 {
            t.apply(&lid, &batch(1, 2, i, 1, u64::from(i as u32)));
        }
        assert_eq!(t.producers[&1].batches.len(), PRODUCER_BATCHES_KEPT);
        let h = BatchHeader::parse(&batch(1, 1, 8, 1, 0).0).expect("valid");
        assert!(matches!(
            t.check(&h, None),
            Err(Error::ProducerFenced { .. })
        ));
        let round_trip =
            <ProducerTable as Applier<PartitionTypes>>::decode(&<ProducerTable as Applier<
                PartitionTypes,
            >>::encode(&t))
            .expect("decodes");
        assert_eq!(round_trip, t);
    }

    fn limits(expiry_ms: i64, ids_max: usize) -> ProducerTable {
        ProducerTable::with_limits(ProducerLimits { expiry_ms, ids_max })
    }

    fn header(b: &RecordBatch) -> BatchHeader {
        BatchHeader::parse(&b.0).expect("valid")
    }

    #[test]
    fn producers_expire_by_the_logs_clock_and_come_back_as_new() {
        let mut t = limits(1000, 100);
        let lid = crate::log_store::log_id(1, 1);
        t.apply(&lid, &batch_at(1, 0, 0, 1, 0, 10_000));
        t.apply(&lid, &batch_at(2, 0, 0, 1, 1, 10_500));
        // Within the expiry of the newest timestamp: both remembered.
        t.apply(&lid, &batch_at(2, 0, 1, 1, 2, 11_000));
        assert_eq!(t.producers.keys().copied().collect::<Vec<_>>(), [1, 2]);
        // The clock (any batch's timestamp, idempotent or not) passes 1's expiry only.
        t.apply(&lid, &batch_at(-1, -1, -1, 1, 3, 11_001));
        assert_eq!(t.producers.keys().copied().collect::<Vec<_>>(), [2]);
        assert_eq!(t.forgotten(), (1, 0));
        // Producer 1 continues at sequence 1: an unknown producer is accepted as new (Kafka
        // since KIP-360), where the remembered one would have been told its sequence is wrong.
        let next = header(&batch_at(1, 0, 1, 1, 0, 11_001));
        assert_eq!(t.check(&next, None).expect("new"), SequenceCheck::New);
        let gap = header(&batch_at(2, 0, 5, 1, 0, 11_001));
        assert!(matches!(
            t.check(&gap, None),
            Err(Error::OutOfOrderSequence { expected: 2, .. })
        ));
    }

    #[test]
    fn expiry_setting_changes_what_is_remembered() {
        let lid = crate::log_store::log_id(1, 1);
        let week = 7 * 24 * 3600 * 1000;
        for (expiry, kept) in [(week, 2), (1000, 1)] {
            let mut t = limits(expiry, 100);
            t.apply(&lid, &batch_at(1, 0, 0, 1, 0, 0));
            t.apply(&lid, &batch_at(2, 0, 0, 1, 1, 5000));
            assert_eq!(t.producers.len(), kept, "expiry {expiry} ms");
        }
    }

    #[test]
    fn the_least_recently_used_producer_is_evicted_beyond_the_maximum() {
        let mut t = limits(i64::MAX, 3);
        let lid = crate::log_store::log_id(1, 1);
        for (i, pid) in [10, 11, 12].into_iter().enumerate() {
            t.apply(&lid, &batch_at(pid, 0, 0, 1, i as u64, 100 + i as i64));
        }
        // 10 writes again: now 11 is the least recently used.
        t.apply(&lid, &batch_at(10, 0, 1, 1, 3, 200));
        t.apply(&lid, &batch_at(13, 0, 0, 1, 4, 201));
        assert_eq!(
            t.producers.keys().copied().collect::<Vec<_>>(),
            [10, 12, 13]
        );
        assert_eq!(t.forgotten(), (0, 1));
        // Deterministic: a replica restored from a snapshot and applying the same batch agrees.
        let mut copy =
            <ProducerTable as Applier<PartitionTypes>>::decode(&<ProducerTable as Applier<
                PartitionTypes,
            >>::encode(&t))
            .expect("decodes");
        copy.keep_settings(&t);
        t.apply(&lid, &batch_at(14, 0, 0, 1, 5, 202));
        copy.apply(&lid, &batch_at(14, 0, 0, 1, 5, 202));
        assert_eq!(copy, t);
        assert_eq!(
            t.producers.keys().copied().collect::<Vec<_>>(),
            [10, 13, 14]
        );
    }

    #[test]
    fn configure_takes_the_nodes_settings() {
        let mut t = ProducerTable::default();
        let c = crate::config::RaftConfig {
            producer_ids_per_partition_max: 1,
            ..crate::config::RaftConfig::default()
        };
        <ProducerTable as Applier<PartitionTypes>>::configure(&mut t, &c);
        let lid = crate::log_store::log_id(1, 1);
        t.apply(&lid, &batch_at(1, 0, 0, 1, 0, 1));
        t.apply(&lid, &batch_at(2, 0, 0, 1, 1, 2));
        assert_eq!(t.producers.keys().copied().collect::<Vec<_>>(), [2]);
    }
}
