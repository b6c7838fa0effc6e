//! A partition's Raft group: produce path, high watermark and the idempotent-producer table.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
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
}

/// Result of checking a batch against the producer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The batch is new and continues the producer's sequence.
    New,
    /// The batch repeats one already appended; here is the original's answer.
    Duplicate(ProduceResponse),
}

/// The partition's applied application state: the idempotent-producer table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProducerTable {
    /// Producer id -> its state.
    pub producers: BTreeMap<i64, ProducerState>,
}

impl ProducerTable {
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
        decode("producer table", bytes)
    }
}

type InflightResult = Option<std::result::Result<ProduceResponse, String>>;

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
    inflight: Mutex<Inflight>,
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
            inflight: Mutex::new(Inflight::default()),
            caught_up_term: AtomicU64::new(0),
        }
    }

    /// The high watermark on this replica: the offset up to which (exclusive) records are
    /// committed and applied.
    pub fn high_watermark(&self) -> u64 {
        self.applied_offset()
    }

    /// Appends one data batch through Raft and returns once it is committed (fsynced on a
    /// majority) and applied. A retried batch of an idempotent producer is answered with the
    /// original's offset instead of being appended again.
    pub async fn produce(&self, batch: Bytes) -> Result<ProduceResponse> {
        if batch.len() > self.batch_bytes_max() as usize {
            return Err(Error::InvalidBatch(
                skein_storage::StorageError::BatchTooLarge {
                    size: batch.len(),
                    max: self.batch_bytes_max(),
                },
            ));
        }
        let h = skein_record::validate(&batch).map_err(|e| Error::InvalidBatch(e.into()))?;
        if h.kind != EntryKind::Data {
            return Err(Error::NotDataBatch { kind: h.kind });
        }
        if h.is_transactional() {
            return Err(Error::TransactionalBatch);
        }
        if h.producer_id < 0 {
            return self.write(RecordBatch(batch)).await;
        }
        self.ensure_caught_up().await?;
        let key = (h.producer_id, h.producer_epoch, h.base_sequence);
        enum Next {
            Wait(watch::Receiver<InflightResult>),
            Done(ProduceResponse),
            Write(watch::Sender<InflightResult>),
        }
        let next = {
            let mut inf = self
                .inflight
                .lock()
                .expect("invariant: in-flight lock is never poisoned");
            if let Some(rx) = inf.by_batch.get(&key) {
                Next::Wait(rx.clone())
            } else {
                let tail = inf
                    .tail
                    .get(&h.producer_id)
                    .map(|(epoch, next, _)| (*epoch, *next));
                match self.with_state(|s| s.app.check(&h, tail))? {
                    SequenceCheck::Duplicate(r) => Next::Done(r),
                    SequenceCheck::New => {
                        let (tx, rx) = watch::channel(None);
                        inf.by_batch.insert(key, rx);
                        let next = h.base_sequence.wrapping_add(h.record_count as i32);
                        let t =
                            inf.tail
                                .entry(h.producer_id)
                                .or_insert((h.producer_epoch, next, 0));
                        *t = (h.producer_epoch, next, t.2 + 1);
                        Next::Write(tx)
                    }
                }
            }
        };
        let tx = match next {
            Next::Wait(mut rx) => return wait_inflight(&mut rx, self.id()).await,
            Next::Done(r) => return Ok(r),
            Next::Write(tx) => tx,
        };
        let result = self.write(RecordBatch(batch)).await;
        {
            let mut inf = self
                .inflight
                .lock()
                .expect("invariant: in-flight lock is never poisoned");
            inf.by_batch.remove(&key);
            if let Some(t) = inf.tail.get_mut(&h.producer_id) {
                t.2 -= 1;
                if t.2 == 0 {
                    inf.tail.remove(&h.producer_id);
                }
            }
        }
        // Nobody waiting is fine.
        let _ = tx.send(Some(match &result {
            Ok(r) => Ok(*r),
            Err(e) => Err(e.to_string()),
        }));
        result
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
        let mut b = BatchBuilder::new(0).producer(ProducerStamp {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
        });
        for _ in 0..n {
            b.push(0, None, Some(b"v"), &[]);
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
}
