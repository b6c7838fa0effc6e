//! The record accumulator: per-partition batches waiting to be sent, with the rules for when a
//! batch is full, when it has lingered long enough, which keyless partition is sticky, and
//! which sequence numbers a batch gets. Pure logic (time is passed in), so it is tested without
//! a network.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use skein_record::{BatchBuilder, HeaderRef};
use tokio::sync::Semaphore;

use super::delivery::{Completion, DeliveryFuture};
use crate::error::ClientError;
use crate::fxhash::FxHashMap;
use crate::partitioner::{next_sticky, XorShift};
use crate::record::TopicPartition;

/// A partition as the accumulator keys it: the topic name is shared with the records, so a
/// lookup per record allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PartitionKey {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
}

impl PartitionKey {
    pub(crate) fn new(topic: Arc<str>, partition: u32) -> Self {
        PartitionKey { topic, partition }
    }

    pub(crate) fn to_topic_partition(&self) -> TopicPartition {
        TopicPartition::new(&*self.topic, self.partition)
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.topic, self.partition)
    }
}

/// Buffer space (permits of the producer's buffer semaphore, taken with `forget`) held by a
/// batch's records; given back when the batch is dropped, i.e. once it is resolved.
#[derive(Debug)]
pub(crate) struct BufferSpace {
    buffer: Arc<Semaphore>,
    permits: usize,
}

impl BufferSpace {
    pub(crate) fn new(buffer: Arc<Semaphore>) -> Self {
        BufferSpace { buffer, permits: 0 }
    }
}

impl Drop for BufferSpace {
    fn drop(&mut self) {
        if self.permits > 0 {
            self.buffer.add_permits(self.permits);
        }
    }
}

/// A batch still accepting records.
#[derive(Debug)]
pub(crate) struct OpenBatch {
    pub(crate) builder: BatchBuilder,
    pub(crate) created: Instant,
    /// Resolves the records' [`DeliveryFuture`]s.
    pub(crate) completion: Completion,
    /// Buffer space held by the batch's records; released when the batch completes.
    pub(crate) space: BufferSpace,
}

/// An encoded batch, stamped with its sequence: retried byte for byte, so the broker can
/// recognise a duplicate.
#[derive(Debug)]
pub(crate) struct SealedBatch {
    pub(crate) bytes: Bytes,
    /// Records in the batch.
    pub(crate) records: usize,
    pub(crate) completion: Completion,
    /// Held, never read: dropping the batch releases its buffer space.
    #[allow(dead_code)]
    pub(crate) space: BufferSpace,
    /// Failed attempts so far.
    pub(crate) attempts: u32,
}

impl SealedBatch {
    /// Resolves every record of the batch, whose first record landed at `base_offset`.
    pub(crate) fn complete(self, base_offset: u64) -> usize {
        self.completion.complete(base_offset);
        self.records
    }

    /// Fails every record of the batch with `err`.
    pub(crate) fn fail(self, err: &ClientError) -> usize {
        self.completion.fail(err);
        self.records
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

/// Protobuf framing a produce request adds around each batch (field tag and length).
pub(crate) const BATCH_FRAMING: usize = 6;
/// Framing a produce request adds per partition, besides the topic name and the batches.
pub(crate) const PARTITION_FRAMING: usize = 16;
/// A produce request's own fields (acks, timeout) and slack.
pub(crate) const REQUEST_FRAMING: usize = 64;

/// Bytes `tp`'s entry takes in a produce request besides its batches.
pub(crate) fn partition_framing(topic: &str) -> usize {
    topic.len() + PARTITION_FRAMING
}

/// One record for [`Accumulator::append`].
#[derive(Debug)]
pub(crate) struct NewRecord<'a> {
    pub(crate) timestamp: i64,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) headers: &'a [HeaderRef<'a>],
    /// Buffer permits already taken (and forgotten) for the record.
    pub(crate) permits: usize,
}

/// Per-partition batches of a producer.
#[derive(Debug)]
pub(crate) struct Accumulator {
    batch_bytes_max: usize,
    linger: Duration,
    /// The producer's buffer, whose permits batches give back when they are dropped.
    buffer: Arc<Semaphore>,
    partitions: FxHashMap<PartitionKey, PartitionQueue>,
    /// Next idempotent sequence per partition; kept while the partition's queue comes and goes.
    sequences: FxHashMap<PartitionKey, i32>,
    sticky: FxHashMap<Arc<str>, u32>,
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
    pub(crate) fn new(batch_bytes_max: usize, linger: Duration, buffer: Arc<Semaphore>) -> Self {
        Accumulator {
            batch_bytes_max,
            linger,
            buffer,
            partitions: FxHashMap::default(),
            sequences: FxHashMap::default(),
            sticky: FxHashMap::default(),
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
    /// among the partitions `available()` returns (those with a leader; only asked for when a
    /// new choice is made).
    pub(crate) fn sticky_partition(
        &mut self,
        topic: &Arc<str>,
        partitions: u32,
        available: impl FnOnce() -> Vec<u32>,
    ) -> u32 {
        let previous = self.sticky.get(&**topic).copied();
        if let Some(p) = previous {
            if p < partitions {
                return p;
            }
        }
        let p = next_sticky(&mut self.rng, partitions, &available(), previous);
        self.sticky.insert(topic.clone(), p);
        p
    }

    /// After a batch of `tp` is closed or sent, keyless records move on to another partition.
    fn unstick(&mut self, tp: &PartitionKey) {
        if let Some(p) = self.sticky.get_mut(&*tp.topic) {
            if *p == tp.partition {
                // Keep the entry so the next choice can avoid this partition.
                *p = u32::MAX;
            }
        }
    }

    /// Appends a record to `tp`'s open batch, closing it first when the record would not fit.
    /// Returns the record's delivery future, and true when the sender should wake up: a batch
    /// became ready, or a new batch started lingering.
    pub(crate) fn append(
        &mut self,
        tp: &PartitionKey,
        record: NewRecord<'_>,
        now: impl FnOnce() -> Instant,
    ) -> (DeliveryFuture, bool) {
        let NewRecord {
            timestamp,
            key,
            value,
            headers,
            permits,
        } = record;
        let batch_bytes_max = self.batch_bytes_max;
        // Look up before inserting: the key is cloned only for a partition's first record.
        let q = match self.partitions.get_mut(tp) {
            Some(q) => q,
            None => self.partitions.entry(tp.clone()).or_default(),
        };
        let mut closed_one = false;
        if let Some(open) = &q.open {
            // The exact size is only needed near the limit.
            let bound = open.builder.size() + Self::record_size(key, value, headers);
            if bound > batch_bytes_max && !open.builder.is_empty() {
                let size =
                    open.builder.size() + open.builder.record_size(timestamp, key, value, headers);
                if size > batch_bytes_max {
                    if let Some(full) = q.open.take() {
                        q.closed.push_back(full);
                        closed_one = true;
                    }
                }
            }
        }
        let opened = q.open.is_none();
        let open = match &mut q.open {
            Some(o) => o,
            None => q.open.insert(OpenBatch {
                builder: BatchBuilder::with_capacity(timestamp, batch_bytes_max.min(64 * 1024)),
                created: now(),
                completion: Completion::new(tp.topic.clone(), tp.partition),
                space: BufferSpace::new(self.buffer.clone()),
            }),
        };
        let delivery = open.completion.future(open.builder.len(), timestamp);
        open.builder.push(timestamp, key, value, headers);
        open.space.permits += permits;
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
        let wake = closed_one || opened || self.linger.is_zero() || self.flushing > 0;
        (delivery, wake)
    }

    /// Bytes a record takes in a batch, at most (what it holds of the buffer): the record's
    /// fields with the longest varint for every length and delta.
    pub(crate) fn record_size(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
    ) -> usize {
        // A zigzag varint of a length or count below 2^31 takes at most 5 bytes; the
        // timestamp delta is any i64 (10 bytes).
        const LEN_MAX: usize = 5;
        let bytes = |b: Option<&[u8]>| b.map_or(0, <[u8]>::len) + LEN_MAX;
        // Length, attributes, timestamp delta, offset delta, key, value, header count.
        let mut n = LEN_MAX + 1 + 10 + LEN_MAX + bytes(key) + bytes(value) + LEN_MAX;
        for h in headers {
            n += bytes(Some(h.key)) + bytes(h.value);
        }
        n
    }

    /// Takes the work that is due at `now` for partitions with no request in flight, marking
    /// them in flight. A partition's work fits one produce request of `request_bytes_max`
    /// (framing included), unless its first batch alone is larger. Returns the work and the next instant at which more work falls due.
    pub(crate) fn drain(
        &mut self,
        now: Instant,
        request_bytes_max: usize,
    ) -> (Vec<(PartitionKey, Work)>, Option<Instant>) {
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
                        let mut bytes = REQUEST_FRAMING + partition_framing(&tp.topic);
                        let mut batches = Vec::new();
                        while let Some(b) = q.retry.front() {
                            let size = b.bytes.len() + BATCH_FRAMING;
                            if !batches.is_empty() && bytes + size > request_bytes_max {
                                break;
                            }
                            bytes += size;
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
            let mut bytes = REQUEST_FRAMING + partition_framing(&tp.topic);
            while let Some(b) = q.closed.front() {
                let size = b.builder.size() + BATCH_FRAMING;
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
                    batches.is_empty()
                        || bytes + o.builder.size() + BATCH_FRAMING <= request_bytes_max
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
                        let next = match self.sequences.get_mut(tp) {
                            Some(n) => n,
                            None => self.sequences.entry(tp.clone()).or_insert(0),
                        };
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
        tp: &PartitionKey,
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
                b.completion.fail(err);
                failed += b.builder.len() as usize;
            }
            self.unfinished = self.unfinished.saturating_sub(failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Result;
    use crate::record::RecordMetadata;
    use futures_util::FutureExt as _;

    fn tp(topic: &str, partition: u32) -> PartitionKey {
        PartitionKey::new(topic.into(), partition)
    }

    fn acc_with(sem: &Arc<Semaphore>, batch_bytes_max: usize, linger: Duration) -> Accumulator {
        Accumulator::new(batch_bytes_max, linger, sem.clone())
    }

    fn push(
        acc: &mut Accumulator,
        sem: &Arc<Semaphore>,
        tp: &PartitionKey,
        value: &[u8],
        now: Instant,
    ) -> (bool, DeliveryFuture) {
        sem.try_acquire_many(10).expect("enough permits").forget();
        let record = NewRecord {
            timestamp: 1000,
            key: None,
            value: Some(value),
            headers: &[],
            permits: 10,
        };
        let (delivery, woke) = acc.append(tp, record, || now);
        (woke, delivery)
    }

    fn resolved(d: DeliveryFuture) -> Result<RecordMetadata> {
        d.now_or_never().expect("resolved")
    }

    fn seal(d: Drained, attempts: u32) -> SealedBatch {
        let records = d.batch.builder.len() as usize;
        SealedBatch {
            bytes: d.batch.builder.finish(),
            records,
            completion: d.batch.completion,
            space: d.batch.space,
            attempts,
        }
    }

    #[test]
    fn a_batch_lingers_until_its_deadline() {
        let sem = Arc::new(Semaphore::new(1 << 20));
        let mut acc = acc_with(&sem, 16 * 1024, Duration::from_millis(10));
        let tp = tp("t", 0);
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
                assert_eq!(d[0].batch.builder.len(), 2);
                assert_eq!(d[0].base_sequence, None);
            }
            Work::Retry(_) => panic!("nothing to retry"),
        }
    }

    #[test]
    fn a_full_batch_is_closed_and_sent_without_waiting() {
        let sem = Arc::new(Semaphore::new(1 << 20));
        let mut acc = acc_with(&sem, 300, Duration::from_secs(10));
        let tp = tp("t", 0);
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
        assert_eq!(acc.unfinished, 10);
    }

    #[test]
    fn one_request_in_flight_per_partition_and_retries_go_first() {
        let sem = Arc::new(Semaphore::new(1 << 20));
        let mut acc = acc_with(&sem, 16 * 1024, Duration::ZERO);
        acc.identity = Some((5, 0));
        let tp = tp("t", 0);
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
        let sealed = seal(d.remove(0), 1);
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
        assert_eq!(d[0].batch.builder.len(), 2);
    }

    #[test]
    fn sequences_advance_by_record_count_and_reset_with_identity() {
        let sem = Arc::new(Semaphore::new(1 << 20));
        let mut acc = acc_with(&sem, 16 * 1024, Duration::ZERO);
        acc.identity = Some((1, 0));
        let tp = tp("t", 3);
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
            acc_with(&sem, 16 * 1024, Duration::from_millis(10)).with_rng(XorShift::seeded(7));
        let now = Instant::now();
        let t: Arc<str> = "t".into();
        let first = acc.sticky_partition(&t, 8, Vec::new);
        for _ in 0..20 {
            assert_eq!(acc.sticky_partition(&t, 8, Vec::new), first);
            let tp = tp("t", first);
            let _ = push(&mut acc, &sem, &tp, b"v", now);
        }
        let (work, _) = acc.drain(now + Duration::from_millis(10), 1 << 20);
        assert_eq!(work.len(), 1, "all keyless records went to one partition");
        let second = acc.sticky_partition(&t, 8, Vec::new);
        assert_ne!(
            second, first,
            "the sticky partition moves on once its batch is sent"
        );
        assert_eq!(acc.sticky_partition(&t, 8, Vec::new), second);
        // Other topics have their own sticky partition.
        let other = acc.sticky_partition(&"u".into(), 1, Vec::new);
        assert_eq!(other, 0);
    }

    #[test]
    fn flushing_and_closing_skip_the_linger() {
        let sem = Arc::new(Semaphore::new(1 << 20));
        let mut acc = acc_with(&sem, 16 * 1024, Duration::from_secs(60));
        let tp = tp("t", 0);
        let now = Instant::now();
        let _ = push(&mut acc, &sem, &tp, b"v", now);
        assert!(acc.drain(now, 1 << 20).0.is_empty());
        acc.flushing = 1;
        assert_eq!(acc.drain(now, 1 << 20).0.len(), 1);
        let mut acc = acc_with(&sem, 16 * 1024, Duration::from_secs(60));
        let _ = push(&mut acc, &sem, &tp, b"v", now);
        acc.closing = true;
        assert_eq!(acc.drain(now, 1 << 20).0.len(), 1);
    }

    #[test]
    fn completion_resolves_offsets_in_order_and_releases_buffer_space() {
        let sem = Arc::new(Semaphore::new(100));
        let mut acc = acc_with(&sem, 16 * 1024, Duration::ZERO);
        let tp = tp("t", 0);
        let now = Instant::now();
        let (_, rx1) = push(&mut acc, &sem, &tp, b"a", now);
        let (_, rx2) = push(&mut acc, &sem, &tp, b"b", now);
        assert_eq!(sem.available_permits(), 80);
        let (work, _) = acc.drain(now, 1 << 20);
        let Work::New(d) = work.into_iter().next().expect("work").1 else {
            panic!()
        };
        let sealed = seal(d.into_iter().next().expect("batch"), 0);
        let n = sealed.complete(41);
        acc.finish(&tp, Vec::new(), now, n);
        assert_eq!(sem.available_permits(), 100);
        assert!(acc.is_empty());
        assert_eq!(resolved(rx1).expect("ok").offset, 41);
        assert_eq!(resolved(rx2).expect("ok").offset, 42);
    }

    #[test]
    fn fail_all_resolves_every_waiting_record() {
        let sem = Arc::new(Semaphore::new(1000));
        let mut acc = acc_with(&sem, 16 * 1024, Duration::from_secs(1));
        let now = Instant::now();
        let (_, rx) = push(&mut acc, &sem, &tp("t", 0), b"a", now);
        acc.fail_all(&ClientError::ProducerClosed);
        assert!(matches!(resolved(rx), Err(ClientError::ProducerClosed)));
        assert!(acc.is_empty());
    }
}
