//! The record accumulator: per-partition batches waiting to be sent, with the rules for when a
//! batch is full, when it has lingered long enough, which keyless partition is sticky, and
//! which sequence numbers a batch gets. Pure logic (time is passed in), so it is tested without
//! a network.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use skein_storage::batch::{BatchBuilder, HeaderRef};
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::error::{ClientError, Result};
use crate::partitioner::{next_sticky, XorShift};
use crate::record::{RecordMetadata, TopicPartition};

/// The answer a record's [`crate::DeliveryFuture`] waits for.
pub(crate) type Delivery = oneshot::Sender<Result<RecordMetadata>>;

/// One record waiting for its batch's acknowledgement.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) tx: Delivery,
    pub(crate) timestamp: i64,
}

/// A batch still accepting records.
#[derive(Debug)]
pub(crate) struct OpenBatch {
    pub(crate) builder: BatchBuilder,
    pub(crate) created: Instant,
    pub(crate) pending: Vec<Pending>,
    /// Buffer space held by the batch's records; released when the batch completes.
    pub(crate) permits: Option<OwnedSemaphorePermit>,
}

/// An encoded batch, stamped with its sequence: retried byte for byte, so the broker can
/// recognise a duplicate.
#[derive(Debug)]
pub(crate) struct SealedBatch {
    pub(crate) bytes: Bytes,
    pub(crate) pending: Vec<Pending>,
    /// Held, never read: dropping the batch releases its buffer space.
    #[allow(dead_code)]
    pub(crate) permits: Option<OwnedSemaphorePermit>,
    /// Failed attempts so far.
    pub(crate) attempts: u32,
}

impl SealedBatch {
    /// Resolves every record of the batch, whose first record landed at `base_offset`.
    pub(crate) fn complete(self, tp: &TopicPartition, base_offset: u64) -> usize {
        let n = self.pending.len();
        for (i, p) in self.pending.into_iter().enumerate() {
            // The receiver may have been dropped: the caller did not want the answer.
            let _ = p.tx.send(Ok(RecordMetadata {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: base_offset + i as u64,
                timestamp: p.timestamp,
            }));
        }
        n
    }

    /// Fails every record of the batch with `err`.
    pub(crate) fn fail(self, err: &ClientError) -> usize {
        let n = self.pending.len();
        for p in self.pending {
            let _ = p.tx.send(Err(err.clone()));
        }
        n
    }
}

/// A batch taken out of the accumulator to be sealed (encoded and compressed) and sent.
#[derive(Debug)]
pub(crate) struct Drained {
    pub(crate) batch: OpenBatch,
    /// Sequence of the batch's first record (`None` without idempotence).
    pub(crate) base_sequence: Option<i32>,
}

/// Work the sender picked for one partition: either batches to retry (already sealed) or new
/// batches to seal.
#[derive(Debug)]
pub(crate) enum Work {
    Retry(Vec<SealedBatch>),
    New(Vec<Drained>),
}

#[derive(Debug, Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    /// Full batches, oldest first.
    closed: VecDeque<OpenBatch>,
    /// Sealed batches that failed and wait for their retry; they go before anything else.
    retry: VecDeque<SealedBatch>,
    retry_at: Option<Instant>,
    in_flight: bool,
}

impl PartitionQueue {
    fn is_idle(&self) -> bool {
        self.open.is_none() && self.closed.is_empty() && self.retry.is_empty() && !self.in_flight
    }
}

/// Per-partition batches of a producer.
#[derive(Debug)]
pub(crate) struct Accumulator {
    batch_bytes_max: usize,
    linger: Duration,
    partitions: HashMap<TopicPartition, PartitionQueue>,
    /// Next idempotent sequence per partition; kept while the partition's queue comes and goes.
    sequences: HashMap<TopicPartition, i32>,
    sticky: HashMap<String, u32>,
    rng: XorShift,
    /// Records accepted and not yet resolved.
    pub(crate) unfinished: usize,
    /// `flush()` calls in progress: while any, batches do not linger.
    pub(crate) flushing: usize,
    /// No more records will come: send everything now, then stop.
    pub(crate) closing: bool,
    /// Stamp batches for an idempotent producer with this id and epoch.
    pub(crate) identity: Option<(i64, i16)>,
}

impl Accumulator {
    pub(crate) fn new(batch_bytes_max: usize, linger: Duration) -> Self {
        Accumulator {
            batch_bytes_max,
            linger,
            partitions: HashMap::new(),
            sequences: HashMap::new(),
            sticky: HashMap::new(),
            rng: XorShift::from_entropy(),
            unfinished: 0,
            flushing: 0,
            closing: false,
            identity: None,
        }
    }

    #[cfg(test)]
    fn with_rng(mut self, rng: XorShift) -> Self {
        self.rng = rng;
        self
    }

    /// The partition for a keyless record of `topic`: the sticky one, or a new random choice
    /// among `available` partitions (those with a leader).
    pub(crate) fn sticky_partition(
        &mut self,
        topic: &str,
        partitions: u32,
        available: &[u32],
    ) -> u32 {
        if let Some(p) = self.sticky.get(topic) {
            if *p < partitions {
                return *p;
            }
        }
        let previous = self.sticky.get(topic).copied();
        let p = next_sticky(&mut self.rng, partitions, available, previous);
        self.sticky.insert(topic.to_string(), p);
        p
    }

    /// After a batch of `tp` is closed or sent, keyless records move on to another partition.
    fn unstick(&mut self, tp: &TopicPartition) {
        if self.sticky.get(&tp.topic) == Some(&tp.partition) {
            // Keep the entry so the next choice can avoid this partition.
            self.sticky.insert(tp.topic.clone(), u32::MAX);
        }
    }

    /// Appends a record to `tp`'s open batch, closing it first when the record would not fit.
    /// Returns true when the sender should wake up: a batch became ready, or a new batch
    /// started lingering.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &mut self,
        tp: &TopicPartition,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
        permits: OwnedSemaphorePermit,
        tx: Delivery,
        now: Instant,
    ) -> bool {
        let batch_bytes_max = self.batch_bytes_max;
        // Look up before inserting: the key is cloned only for a partition's first record.
        if !self.partitions.contains_key(tp) {
            self.partitions
                .insert(tp.clone(), PartitionQueue::default());
        }
        let q = self
            .partitions
            .get_mut(tp)
            .expect("invariant: the queue was inserted just above");
        let mut closed_one = false;
        if let Some(open) = &q.open {
            let size =
                open.builder.size() + open.builder.record_size(timestamp, key, value, headers);
            if size > batch_bytes_max && !open.builder.is_empty() {
                if let Some(full) = q.open.take() {
                    q.closed.push_back(full);
                    closed_one = true;
                }
            }
        }
        let opened = q.open.is_none();
        let open = q.open.get_or_insert_with(|| OpenBatch {
            builder: BatchBuilder::with_capacity(timestamp, batch_bytes_max.min(64 * 1024)),
            created: now,
            pending: Vec::new(),
            permits: None,
        });
        open.builder.push(timestamp, key, value, headers);
        open.pending.push(Pending { tx, timestamp });
        match &mut open.permits {
            Some(p) => p.merge(permits),
            None => open.permits = Some(permits),
        }
        let full_now = open.builder.size() >= batch_bytes_max;
        if full_now {
            if let Some(full) = q.open.take() {
                q.closed.push_back(full);
                closed_one = true;
            }
        }
        self.unfinished += 1;
        if closed_one {
            self.unstick(tp);
        }
        // A new open batch needs the sender to arm its linger timer.
        closed_one || opened || self.linger.is_zero() || self.flushing > 0
    }

    /// Estimated bytes a record takes in a batch (what it holds of the buffer).
    pub(crate) fn record_size(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
    ) -> usize {
        // A fresh builder gives the size for offset delta 0; later deltas add at most a few
        // bytes, covered by the slack.
        let b = BatchBuilder::with_capacity(0, 0);
        b.record_size(0, key, value, headers) + 16
    }

    /// Takes the work that is due at `now` for partitions with no request in flight, marking
    /// them in flight. Returns the work and the next instant at which more work falls due.
    pub(crate) fn drain(
        &mut self,
        now: Instant,
        request_bytes_max: usize,
    ) -> (Vec<(TopicPartition, Work)>, Option<Instant>) {
        let no_linger = self.flushing > 0 || self.closing;
        let mut out = Vec::new();
        let mut next: Option<Instant> = None;
        let mut unstick = Vec::new();
        let mut earliest = |t: Instant| {
            next = Some(next.map_or(t, |n: Instant| n.min(t)));
        };
        for (tp, q) in self.partitions.iter_mut() {
            if q.in_flight {
                continue;
            }
            if !q.retry.is_empty() {
                match q.retry_at {
                    Some(at) if at > now => earliest(at),
                    _ => {
                        let mut bytes = 0;
                        let mut batches = Vec::new();
                        while let Some(b) = q.retry.front() {
                            if !batches.is_empty() && bytes + b.bytes.len() > request_bytes_max {
                                break;
                            }
                            bytes += b.bytes.len();
                            if let Some(b) = q.retry.pop_front() {
                                batches.push(b);
                            }
                        }
                        q.retry_at = None;
                        q.in_flight = true;
                        out.push((tp.clone(), Work::Retry(batches)));
                    }
                }
                continue;
            }
            let open_due = q
                .open
                .as_ref()
                .map(|o| no_linger || o.created + self.linger <= now);
            if q.closed.is_empty() && open_due != Some(true) {
                if let Some(o) = &q.open {
                    earliest(o.created + self.linger);
                }
                continue;
            }
            let mut batches = Vec::new();
            let mut bytes = 0usize;
            while let Some(b) = q.closed.front() {
                let size = b.builder.size();
                if !batches.is_empty() && bytes + size > request_bytes_max {
                    break;
                }
                bytes += size;
                if let Some(b) = q.closed.pop_front() {
                    batches.push(b);
                }
            }
            if q.closed.is_empty() && open_due == Some(true) {
                let fits = q.open.as_ref().is_some_and(|o| {
                    batches.is_empty() || bytes + o.builder.size() <= request_bytes_max
                });
                if fits {
                    if let Some(o) = q.open.take() {
                        batches.push(o);
                        unstick.push(tp.clone());
                    }
                }
            }
            let drained = batches
                .into_iter()
                .map(|batch| {
                    let base_sequence = self.identity.map(|_| {
                        let next = self.sequences.entry(tp.clone()).or_insert(0);
                        let s = *next;
                        *next = next.wrapping_add(batch.builder.len() as i32);
                        if *next < 0 {
                            // Sequences wrap to 0 after i32::MAX, like Kafka's.
                            *next = 0;
                        }
                        s
                    });
                    Drained {
                        batch,
                        base_sequence,
                    }
                })
                .collect::<Vec<_>>();
            q.in_flight = true;
            out.push((tp.clone(), Work::New(drained)));
        }
        for tp in unstick {
            self.unstick(&tp);
        }
        (out, next)
    }

    /// The request for `tp` finished; `requeue` holds batches to retry at `retry_at`, in order.
    /// `resolved` records were completed or failed.
    pub(crate) fn finish(
        &mut self,
        tp: &TopicPartition,
        requeue: Vec<SealedBatch>,
        retry_at: Instant,
        resolved: usize,
    ) {
        self.unfinished = self.unfinished.saturating_sub(resolved);
        let q = if requeue.is_empty() {
            match self.partitions.get_mut(tp) {
                Some(q) => q,
                None => return,
            }
        } else {
            self.partitions.entry(tp.clone()).or_default()
        };
        q.in_flight = false;
        if !requeue.is_empty() {
            for b in requeue.into_iter().rev() {
                q.retry.push_front(b);
            }
            q.retry_at = Some(retry_at);
        }
        if q.is_idle() {
            self.partitions.remove(tp);
        }
    }

    /// Starts sequences over (a new producer identity): every partition's next batch gets
    /// sequence 0.
    pub(crate) fn reset_sequences(&mut self, identity: Option<(i64, i16)>) {
        self.identity = identity;
        self.sequences.clear();
    }

    /// True when nothing is buffered and nothing is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.unfinished == 0
    }

    /// Fails every buffered record (the producer is shutting down after a fatal error).
    pub(crate) fn fail_all(&mut self, err: &ClientError) {
        for (_, mut q) in self.partitions.drain() {
            let mut failed = 0;
            for b in q.retry.drain(..) {
                failed += b.fail(err);
            }
            for b in q.closed.drain(..).chain(q.open.take()) {
                for p in b.pending {
                    let _ = p.tx.send(Err(err.clone()));
                    failed += 1;
                }
            }
            self.unfinished = self.unfinished.saturating_sub(failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    fn permit(sem: &Arc<Semaphore>, n: u32) -> OwnedSemaphorePermit {
        sem.clone()
            .try_acquire_many_owned(n)
            .expect("enough permits")
    }

    fn push(
        acc: &mut Accumulator,
        sem: &Arc<Semaphore>,
        tp: &TopicPartition,
        value: &[u8],
        now: Instant,
    ) -> (bool, oneshot::Receiver<Result<RecordMetadata>>) {
        let (tx, rx) = oneshot::channel();
        let woke = acc.append(tp, 1000, None, Some(value), &[], permit(sem, 10), tx, now);
        (woke, rx)
    }

    #[test]
    fn a_batch_lingers_until_its_deadline() {
        let sem = Arc::new(Semaphore::new(1 << 20));
        let mut acc = Accumulator::new(16 * 1024, Duration::from_millis(10));
        let tp = TopicPartition::new("t", 0);
        let t0 = Instant::now();
        let (woke, _rx) = push(&mut acc, &sem, &tp, b"v", t0);
        assert!(woke, "a new batch wakes the sender to arm its timer");
        let (woke, _rx2) = push(&mut acc, &sem, &tp, b"w", t0);
        assert!(
            !woke,
            "more records for a lingering batch do not wake the sender"
        );
        let (work, next) = acc.drain(t0 + Duration::from_millis(5), 1 << 20);
        assert!(work.is_empty());
        assert_eq!(next, Some(t0 + Duration::from_millis(10)));
        let (work, _) = acc.drain(t0 + Duration::from_millis(10), 1 << 20);
        assert_eq!(work.len(), 1);
        match &work[0].1 {
            Work::New(d) => {
                assert_eq!(d.len(), 1);
                assert_eq!(d[0].batch.pending.len(), 2);
                assert_eq!(d[0].base_sequence, None);
            }
            Work::Retry(_) => panic!("nothing to retry"),
        }
    }

    #[test]
    fn a_full_batch_is_closed_and_sent_without_waiting() {
        let sem = Arc::new(Semaphore::new(1 << 20));
        let mut acc = Accumulator::new(300, Duration::from_secs(10));
        let tp = TopicPartition::new("t", 0);
        let now = Instant::now();
        let mut woke_any = false;
        for _ in 0..10 {
            let (woke, _rx) = push(&mut acc, &sem, &tp, &[7u8; 50], now);
            woke_any |= woke;
        }
        assert!(woke_any, "closing a full batch wakes the sender");
        let (work, _) = acc.drain(now, 1 << 20);
        let Work::New(d) = &work[0].1 else {
            panic!("expected new batches")
        };
        assert!(d.len() >= 2, "10 x 50 bytes do not fit one 300-byte batch");
        for b in d {
            assert!(b.batch.builder.size() <= 300, "{}", b.batch.builder.size());
        }
        // The open (not yet full) batch keeps lingering.
        assert_eq!(
            d.iter().map(|b| b.batch.pending.len()).sum::<usize>(),
            d.iter()
                .map(|b| b.batch.builder.len() as usize)
                .sum::<usize>()
        );
        assert_eq!(acc.unfinished, 10);
    }

    #[test]
    fn one_request_in_flight_per_partition_and_retries_go_first() {
        let sem = Arc::new(Semaphore::new(1 << 20));
        let mut acc = Accumulator::new(16 * 1024, Duration::ZERO);
        acc.identity = Some((5, 0));
        let tp = TopicPartition::new("t", 0);
        let now = Instant::now();
        let (_, _rx1) = push(&mut acc, &sem, &tp, b"a", now);
        let (work, _) = acc.drain(now, 1 << 20);
        assert_eq!(work.len(), 1);
        let Work::New(mut d) = work.into_iter().next().expect("one").1 else {
            panic!("new")
        };
        assert_eq!(d[0].base_sequence, Some(0));
        let (_, _rx2) = push(&mut acc, &sem, &tp, b"b", now);
        let (_, _rx3) = push(&mut acc, &sem, &tp, b"c", now);
        assert!(acc.drain(now, 1 << 20).0.is_empty(), "in flight");
        // The first batch fails retryably and is requeued.
        let first = d.remove(0);
        let sealed = SealedBatch {
            bytes: first.batch.builder.finish(),
            pending: first.batch.pending,
            permits: first.batch.permits,
            attempts: 1,
        };
        acc.finish(&tp, vec![sealed], now + Duration::from_millis(50), 0);
        assert!(acc.drain(now, 1 << 20).0.is_empty(), "backing off");
        let (work, _) = acc.drain(now + Duration::from_millis(50), 1 << 20);
        assert!(matches!(&work[0].1, Work::Retry(b) if b.len() == 1));
        acc.finish(&tp, Vec::new(), now, 1);
        // Then the newer records, with sequence 1 (one record was sealed before).
        let (work, _) = acc.drain(now + Duration::from_millis(50), 1 << 20);
        let Work::New(d) = &work[0].1 else {
            panic!("new")
        };
        assert_eq!(d[0].base_sequence, Some(1));
        assert_eq!(d[0].batch.pending.len(), 2);
    }

    #[test]
    fn sequences_advance_by_record_count_and_reset_with_identity() {
        let sem = Arc::new(Semaphore::new(1 << 20));
        let mut acc = Accumulator::new(16 * 1024, Duration::ZERO);
        acc.identity = Some((1, 0));
        let tp = TopicPartition::new("t", 3);
        let now = Instant::now();
        let mut rxs = Vec::new();
        for _ in 0..3 {
            rxs.push(push(&mut acc, &sem, &tp, b"x", now).1);
        }
        let (work, _) = acc.drain(now, 1 << 20);
        let Work::New(d) = &work[0].1 else { panic!() };
        assert_eq!(d[0].base_sequence, Some(0));
        acc.finish(&tp, Vec::new(), now, 3);
        rxs.push(push(&mut acc, &sem, &tp, b"y", now).1);
        let (work, _) = acc.drain(now, 1 << 20);
        let Work::New(d) = &work[0].1 else { panic!() };
        assert_eq!(d[0].base_sequence, Some(3));
        acc.finish(&tp, Vec::new(), now, 1);
        acc.reset_sequences(Some((2, 0)));
        rxs.push(push(&mut acc, &sem, &tp, b"z", now).1);
        let (work, _) = acc.drain(now, 1 << 20);
        let Work::New(d) = &work[0].1 else { panic!() };
        assert_eq!(d[0].base_sequence, Some(0), "a new identity starts at 0");
    }

    #[test]
    fn keyless_records_stick_to_a_partition_until_its_batch_is_sent() {
        let sem = Arc::new(Semaphore::new(1 << 20));
        let mut acc =
            Accumulator::new(16 * 1024, Duration::from_millis(10)).with_rng(XorShift::seeded(7));
        let now = Instant::now();
        let first = acc.sticky_partition("t", 8, &[]);
        for _ in 0..20 {
            assert_eq!(acc.sticky_partition("t", 8, &[]), first);
            let tp = TopicPartition::new("t", first);
            let _ = push(&mut acc, &sem, &tp, b"v", now);
        }
        let (work, _) = acc.drain(now + Duration::from_millis(10), 1 << 20);
        assert_eq!(work.len(), 1, "all keyless records went to one partition");
        let second = acc.sticky_partition("t", 8, &[]);
        assert_ne!(
            second, first,
            "the sticky partition moves on once its batch is sent"
        );
        assert_eq!(acc.sticky_partition("t", 8, &[]), second);
        // Other topics have their own sticky partition.
        let other = acc.sticky_partition("u", 1, &[]);
        assert_eq!(other, 0);
    }

    #[test]
    fn flushing_and_closing_skip_the_linger() {
        let sem = Arc::new(Semaphore::new(1 << 20));
        let mut acc = Accumulator::new(16 * 1024, Duration::from_secs(60));
        let tp = TopicPartition::new("t", 0);
        let now = Instant::now();
        let _ = push(&mut acc, &sem, &tp, b"v", now);
        assert!(acc.drain(now, 1 << 20).0.is_empty());
        acc.flushing = 1;
        assert_eq!(acc.drain(now, 1 << 20).0.len(), 1);
        let mut acc = Accumulator::new(16 * 1024, Duration::from_secs(60));
        let _ = push(&mut acc, &sem, &tp, b"v", now);
        acc.closing = true;
        assert_eq!(acc.drain(now, 1 << 20).0.len(), 1);
    }

    #[test]
    fn completion_resolves_offsets_in_order_and_releases_buffer_space() {
        let sem = Arc::new(Semaphore::new(100));
        let mut acc = Accumulator::new(16 * 1024, Duration::ZERO);
        let tp = TopicPartition::new("t", 0);
        let now = Instant::now();
        let (_, mut rx1) = push(&mut acc, &sem, &tp, b"a", now);
        let (_, mut rx2) = push(&mut acc, &sem, &tp, b"b", now);
        assert_eq!(sem.available_permits(), 80);
        let (work, _) = acc.drain(now, 1 << 20);
        let Work::New(d) = work.into_iter().next().expect("work").1 else {
            panic!()
        };
        let b = d.into_iter().next().expect("batch").batch;
        let sealed = SealedBatch {
            bytes: b.builder.finish(),
            pending: b.pending,
            permits: b.permits,
            attempts: 0,
        };
        let n = sealed.complete(&tp, 41);
        acc.finish(&tp, Vec::new(), now, n);
        assert_eq!(sem.available_permits(), 100);
        assert!(acc.is_empty());
        assert_eq!(rx1.try_recv().expect("resolved").expect("ok").offset, 41);
        assert_eq!(rx2.try_recv().expect("resolved").expect("ok").offset, 42);
    }

    #[test]
    fn fail_all_resolves_every_waiting_record() {
        let sem = Arc::new(Semaphore::new(1000));
        let mut acc = Accumulator::new(16 * 1024, Duration::from_secs(1));
        let now = Instant::now();
        let (_, mut rx) = push(&mut acc, &sem, &TopicPartition::new("t", 0), b"a", now);
        acc.fail_all(&ClientError::ProducerClosed);
        assert!(matches!(
            rx.try_recv().expect("resolved"),
            Err(ClientError::ProducerClosed)
        ));
        assert!(acc.is_empty());
    }
}
