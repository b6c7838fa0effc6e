//! The producer: batches records per partition, compresses, sends and retries them in order.
//!
//! `send` puts a record into its partition's open batch (waiting for buffer space when the
//! producer's buffer is full) and hands back a [`DeliveryFuture`]. One background task, the
//! sender, takes batches that are full or have lingered long enough, seals them (assigns the
//! idempotent sequence, encodes, compresses), groups them by partition leader into one produce
//! request per broker, and resolves every record's future with its offset when the broker
//! acknowledges. A partition has at most one request in flight, and a failed batch goes back to
//! the front of its partition's queue, so records of a partition are written in `send` order.

mod accumulator;
mod delivery;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use skein_proto::v1 as pb;
use skein_proto::v1::produce_service_client::ProduceServiceClient;
use skein_record::{HeaderRef, ProducerStamp};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::Instant;

use crate::cluster::{timed, Client};
use crate::compression::{compress, to_batch_codec};
use crate::config::{Acks, Compression, ProducerConfig};
use crate::error::{ClientError, Result};
use crate::fxhash::FxHashMap;
use crate::partitioner::partition_for_key;
use crate::record::{now_ms, ProducerRecord, RecordMetadata, TopicPartition};

use accumulator::{
    partition_framing, Accumulator, NewRecord, PartitionKey, SealedBatch, Work, BATCH_FRAMING,
    REQUEST_FRAMING,
};
pub use delivery::DeliveryFuture;

#[derive(Debug)]
struct Shared {
    client: Client,
    config: ProducerConfig,
    acc: Mutex<Accumulator>,
    /// Wakes the sender: a batch is ready, a flush started, the producer is closing.
    wake: Notify,
    /// Wakes `flush` waiters: records were resolved.
    progress: Notify,
    /// Buffer space in bytes (backpressure).
    buffer: Arc<Semaphore>,
}

impl Shared {
    fn acc(&self) -> MutexGuard<'_, Accumulator> {
        self.acc.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Closes the producer when the last handle is dropped: the sender sends what is buffered,
/// then stops.
#[derive(Debug)]
struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.acc().closing = true;
        self.0.wake.notify_one();
    }
}

/// Sends records to a Skein cluster. Cheap to clone; clones share batches and the sender task.
///
/// See the crate documentation for an example.
#[derive(Debug, Clone)]
pub struct Producer {
    shared: Arc<Shared>,
    _close: Arc<CloseOnDrop>,
    sender: Arc<tokio::task::JoinHandle<()>>,
}

impl Producer {
    /// A producer on `client`. With idempotence (the default) it first asks the cluster for a
    /// producer id, so an unreachable cluster is reported here.
    pub async fn new(client: Client, config: ProducerConfig) -> Result<Self> {
        config.validate()?;
        let identity = if config.idempotence {
            Some(init_producer_id(&client).await?)
        } else {
            None
        };
        let buffer = Arc::new(Semaphore::new(config.buffer_bytes_max));
        let mut acc = Accumulator::new(config.batch_bytes_max, config.linger, buffer.clone());
        acc.identity = identity;
        let shared = Arc::new(Shared {
            client,
            config,
            acc: Mutex::new(acc),
            wake: Notify::new(),
            progress: Notify::new(),
            buffer,
        });
        let sender = tokio::spawn(run_sender(shared.clone()));
        Ok(Producer {
            _close: Arc::new(CloseOnDrop(shared.clone())),
            shared,
            sender: Arc::new(sender),
        })
    }

    /// The producer's configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// Queues `record` for sending and returns a future that resolves when its batch is
    /// acknowledged.
    ///
    /// Awaiting `send` itself only waits for the record to be accepted: for metadata of a topic
    /// seen for the first time, and for buffer space when `buffer_bytes_max` is reached
    /// (backpressure). Queue many records before awaiting their [`DeliveryFuture`]s, so that
    /// they share batches.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let client = &self.shared.client;
        let topic = client.retry(None, || client.topic(&record.topic)).await?;
        let partitions = topic.partitions.len() as u32;
        if partitions == 0 {
            return Err(ClientError::LeaderNotAvailable {
                what: format!("topic {} (no partitions yet)", record.topic),
            });
        }
        let headers: Vec<HeaderRef<'_>> = record
            .headers
            .iter()
            .map(|h| HeaderRef {
                key: h.key.as_bytes(),
                value: h.value.as_deref(),
            })
            .collect();
        let key = record.key.as_deref();
        let value = record.value.as_deref();
        let size = Accumulator::record_size(key, value, &headers);
        if size > self.shared.config.buffer_bytes_max {
            return Err(ClientError::RecordTooLarge {
                size,
                max: self.shared.config.buffer_bytes_max,
            });
        }
        let explicit = match (record.partition, key) {
            (Some(p), _) if p < partitions => Some(p),
            (Some(p), _) => {
                return Err(ClientError::UnknownTopicOrPartition {
                    what: format!(
                        "partition {} (topic {} has {partitions} partitions)",
                        TopicPartition::new(&*record.topic, p),
                        record.topic
                    ),
                })
            }
            (None, Some(k)) => Some(partition_for_key(k, partitions)),
            (None, None) => None,
        };
        // Buffer space first (backpressure), taken without a waiter when it is free. The
        // permits are forgotten here and given back by the batch when it is resolved.
        let permits = u32::try_from(size).map_err(|_| ClientError::RecordTooLarge {
            size,
            max: self.shared.config.buffer_bytes_max,
        })?;
        match self.shared.buffer.try_acquire_many(permits) {
            Ok(p) => p.forget(),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(ClientError::ProducerClosed),
            Err(tokio::sync::TryAcquireError::NoPermits) => self
                .shared
                .buffer
                .acquire_many(permits)
                .await
                .map_err(|_| ClientError::ProducerClosed)?
                .forget(),
        }
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let (delivery, wake_sender) = {
            let mut acc = self.shared.acc();
            if acc.closing {
                drop(acc);
                self.shared.buffer.add_permits(size);
                return Err(ClientError::ProducerClosed);
            }
            // Keyless records: the sticky partition, chosen under the same lock as the append
            // so that a batch closed by another sender moves this record on too.
            let partition = match explicit {
                Some(p) => p,
                None => acc.sticky_partition(&record.topic, partitions, || {
                    topic
                        .partitions
                        .iter()
                        .filter(|p| p.leader.is_some())
                        .map(|p| p.partition)
                        .collect()
                }),
            };
            let tp = PartitionKey::new(record.topic.clone(), partition);
            acc.append(
                &tp,
                NewRecord {
                    timestamp,
                    key,
                    value,
                    headers: &headers,
                    permits: size,
                },
                || Instant::now().into_std(),
            )
        };
        if wake_sender {
            self.shared.wake.notify_one();
        }
        Ok(delivery)
    }

    /// Sends one record and waits for its acknowledgement.
    pub async fn send_and_wait(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.send(record).await?.await
    }

    /// Sends every buffered record now (ignoring `linger`) and waits until all records sent so
    /// far are acknowledged or failed.
    pub async fn flush(&self) -> Result<()> {
        struct FlushGuard<'a>(&'a Shared);
        impl Drop for FlushGuard<'_> {
            fn drop(&mut self) {
                let mut acc = self.0.acc();
                acc.flushing = acc.flushing.saturating_sub(1);
            }
        }
        self.shared.acc().flushing += 1;
        let _guard = FlushGuard(&self.shared);
        self.shared.wake.notify_one();
        loop {
            let progressed = self.shared.progress.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            if self.shared.acc().is_empty() {
                return Ok(());
            }
            if self.sender.is_finished() {
                return Err(ClientError::ProducerClosed);
            }
            progressed.await;
        }
    }

    /// Flushes, then stops the sender. Further sends fail with
    /// [`ClientError::ProducerClosed`] (also through clones of this producer).
    pub async fn close(self) -> Result<()> {
        self.flush().await?;
        self.shared.acc().closing = true;
        self.shared.wake.notify_one();
        Ok(())
    }
}

async fn init_producer_id(client: &Client) -> Result<(i64, i16)> {
    let timeout = client.config().request_timeout;
    client
        .retry(None, || {
            client.call_any("init producer id", |channel, addr| async move {
                let mut c = ProduceServiceClient::new(channel);
                timed(
                    "init producer id",
                    &addr,
                    timeout,
                    c.init_producer_id(pb::InitProducerIdRequest {}),
                )
                .await
            })
        })
        .await
        .map(|r| (r.producer_id, r.producer_epoch as i16))
}

/// One partition's share of a produce request.
#[derive(Debug)]
struct InFlight {
    key: PartitionKey,
    /// The same partition, for the metadata cache and error messages.
    tp: TopicPartition,
    batches: Vec<SealedBatch>,
}

#[derive(Debug)]
struct Outcome {
    addr: String,
    sent: Vec<InFlight>,
    result: Result<pb::ProduceResponse>,
}

/// The sender task: drains due batches, sends them, handles answers; exits once the producer
/// is closing and everything is resolved.
async fn run_sender(shared: Arc<Shared>) {
    // Bounded: there is at most one request per partition in flight, and this loop always
    // drains it.
    let (done_tx, mut done_rx) = mpsc::channel::<Outcome>(64);
    let mut requests_in_flight = 0usize;
    let mut renew_identity = false;
    loop {
        if renew_identity && shared.config.idempotence {
            match init_producer_id(&shared.client).await {
                Ok(id) => {
                    shared.acc().reset_sequences(Some(id));
                    renew_identity = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot get a new producer id; failing buffered records");
                    shared.acc().fail_all(&e);
                    shared.progress.notify_waiters();
                }
            }
        }
        // Known by now: `send` looked its topic up in the metadata before buffering a record.
        let request_max = request_bytes_max(
            shared.config.request_bytes_max,
            shared.client.broker_request_bytes_max(),
        );
        let (work, next_due, done) = {
            let mut acc = shared.acc();
            let (work, next) = acc.drain(Instant::now().into_std(), request_max);
            let done = acc.closing && acc.is_empty() && requests_in_flight == 0;
            (work, next, done)
        };
        if done {
            break;
        }
        if !work.is_empty() {
            let sent = seal_all(&shared, work);
            requests_in_flight += dispatch(&shared, sent, request_max, &done_tx).await;
            // Records may have failed without a request (no leader, retries used up).
            shared.progress.notify_waiters();
        }
        let sleep_until = next_due
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = shared.wake.notified() => {}
            Some(outcome) = done_rx.recv() => {
                requests_in_flight = requests_in_flight.saturating_sub(1);
                renew_identity |= handle_outcome(&shared, outcome);
                // Take every other finished request too before draining again.
                while let Ok(outcome) = done_rx.try_recv() {
                    requests_in_flight = requests_in_flight.saturating_sub(1);
                    renew_identity |= handle_outcome(&shared, outcome);
                }
                shared.progress.notify_waiters();
            }
            _ = tokio::time::sleep_until(sleep_until) => {}
        }
    }
    shared.progress.notify_waiters();
}

/// How far below a broker's advertised request limit the producer stays at most. The producer's
/// count of a request's bytes is already an upper bound of its protobuf encoding; the headroom
/// (a sixteenth of the limit, at most this) covers fields that a newer protocol may add.
const BROKER_LIMIT_HEADROOM_MAX: usize = 64 * 1024;

/// The largest produce request to build: the configured `request_bytes_max`, or the broker's
/// advertised limit less headroom when that is smaller (`None`: no broker said).
fn request_bytes_max(configured: usize, broker: Option<usize>) -> usize {
    match broker {
        Some(limit) => configured.min(limit - (limit / 16).min(BROKER_LIMIT_HEADROOM_MAX)),
        None => configured,
    }
}

/// Encodes and compresses new batches, stamping the producer identity and sequence.
fn seal_all(shared: &Shared, work: Vec<(PartitionKey, Work)>) -> Vec<InFlight> {
    let identity = shared.acc().identity;
    let codec = shared.config.compression;
    let mut out = Vec::with_capacity(work.len());
    for (key, w) in work {
        let batches = match w {
            Work::Retry(b) => b,
            Work::New(drained) => {
                let mut sealed = Vec::with_capacity(drained.len());
                for d in drained {
                    let mut builder = d.batch.builder;
                    let records = builder.len() as usize;
                    if let (Some((producer_id, producer_epoch)), Some(base_sequence)) =
                        (identity, d.base_sequence)
                    {
                        builder = builder.producer(ProducerStamp {
                            producer_id,
                            producer_epoch,
                            base_sequence,
                        });
                    }
                    let bytes = seal(builder, codec);
                    sealed.push(SealedBatch {
                        bytes,
                        records,
                        completion: d.batch.completion,
                        space: d.batch.space,
                        attempts: 0,
                    });
                }
                sealed
            }
        };
        let tp = key.to_topic_partition();
        out.push(InFlight { key, tp, batches });
    }
    out
}

fn seal(builder: skein_record::BatchBuilder, codec: Compression) -> Bytes {
    if codec == Compression::None {
        return builder.finish();
    }
    match compress(codec, builder.records_bytes()) {
        Ok(c) => builder.finish_compressed(to_batch_codec(codec), &c),
        Err(e) => {
            // Compression of an in-memory buffer does not fail in practice; send uncompressed
            // rather than lose the records.
            tracing::warn!(error = %e, "compression failed; sending the batch uncompressed");
            builder.finish()
        }
    }
}

/// Groups partitions by leader and starts requests to each broker, as many as it takes to
/// keep every request within `request_max` bytes. Partitions whose leader is unknown are
/// handled as failed attempts. Returns the number of requests started.
async fn dispatch(
    shared: &Arc<Shared>,
    sent: Vec<InFlight>,
    request_max: usize,
    done_tx: &mpsc::Sender<Outcome>,
) -> usize {
    let mut by_leader: HashMap<String, Vec<InFlight>> = HashMap::new();
    for inflight in sent {
        match shared.client.leader(&inflight.tp).await {
            Ok((_, addr)) => by_leader.entry(addr).or_default().push(inflight),
            Err(e) => {
                // Counts as a failed attempt of each batch (retried with backoff).
                settle_failure(shared, inflight, 0, &e);
            }
        }
    }
    let mut started = 0;
    for (addr, group) in by_leader {
        let channel = match shared.client.channel(&addr) {
            Ok(c) => c,
            Err(e) => {
                for f in group {
                    settle_failure(shared, f, 0, &e);
                }
                continue;
            }
        };
        for part in pack_requests(group, request_max) {
            start_request(shared, channel.clone(), addr.clone(), part, done_tx.clone());
            started += 1;
        }
    }
    started
}

/// Bytes a partition's share adds to a produce request on the wire: its batches plus the
/// protobuf framing of the partition entry and of each batch.
fn request_bytes(f: &InFlight) -> usize {
    partition_framing(&f.tp.topic)
        + f.batches
            .iter()
            .map(|b| b.bytes.len() + BATCH_FRAMING)
            .sum::<usize>()
}

/// Splits one broker's partitions into requests of at most `max` bytes each (in order). A
/// partition's batches stay in one request (the accumulator drained them within the same
/// limit); a partition larger than `max` on its own (one oversized record) goes alone.
fn pack_requests(group: Vec<InFlight>, max: usize) -> Vec<Vec<InFlight>> {
    let mut out: Vec<Vec<InFlight>> = Vec::new();
    let mut current: Vec<InFlight> = Vec::new();
    let mut bytes = REQUEST_FRAMING;
    for f in group {
        let size = request_bytes(&f);
        if !current.is_empty() && bytes + size > max {
            out.push(std::mem::take(&mut current));
            bytes = REQUEST_FRAMING;
        }
        bytes += size;
        current.push(f);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Sends one produce request from a task of its own; its outcome goes to `done_tx`.
fn start_request(
    shared: &Shared,
    channel: tonic::transport::Channel,
    addr: String,
    group: Vec<InFlight>,
    done_tx: mpsc::Sender<Outcome>,
) {
    let request = pb::ProduceRequest {
        acks: match shared.config.acks {
            Acks::All => pb::Acks::All as i32,
            Acks::Leader => pb::Acks::Leader as i32,
        },
        timeout_ms: u32::try_from(shared.client.config().request_timeout.as_millis())
            .unwrap_or(u32::MAX),
        partitions: group
            .iter()
            .map(|f| pb::PartitionBatches {
                topic: f.tp.topic.clone(),
                partition: f.tp.partition,
                batches: f.batches.iter().map(|b| b.bytes.clone()).collect(),
            })
            .collect(),
    };
    // The broker's replication wait plus slack for the network.
    let limit = shared.client.config().request_timeout + Duration::from_secs(5);
    tokio::spawn(async move {
        let mut c = ProduceServiceClient::new(channel)
            .max_decoding_message_size(crate::cluster::RESPONSE_BYTES_MAX)
            .max_encoding_message_size(usize::MAX);
        let result = timed("produce", &addr, limit, c.produce(request)).await;
        // The sender outlives every request it started (it waits for their outcomes).
        let _ = done_tx
            .send(Outcome {
                addr,
                sent: group,
                result,
            })
            .await;
    });
}

/// Applies a produce answer. Returns true when a batch failed for good under idempotence, so
/// the producer must start a new identity (its sequences have a gap now).
fn handle_outcome(shared: &Shared, outcome: Outcome) -> bool {
    let mut renew = false;
    match outcome.result {
        Err(e) => {
            for f in outcome.sent {
                renew |= settle_failure(shared, f, 0, &e);
            }
        }
        Ok(response) => {
            let mut results: FxHashMap<(String, u32), pb::PartitionProduceResult> = response
                .partitions
                .into_iter()
                .map(|r| ((r.topic.clone(), r.partition), r))
                .collect();
            for f in outcome.sent {
                let Some(r) = results.remove(&(f.tp.topic.clone(), f.tp.partition)) else {
                    let e = ClientError::CorruptResponse {
                        what: format!("produce to {} (broker {})", f.tp, outcome.addr),
                        reason: "the response has no result for the partition".into(),
                    };
                    renew |= settle_failure(shared, f, 0, &e);
                    continue;
                };
                let error = r.error.as_ref().and_then(|e| {
                    ClientError::from_partition_error(&format!("produce to {}", f.tp), Some(e))
                });
                let acked = r.base_offsets.len().min(f.batches.len());
                let error = match error {
                    Some(e) => Some(e),
                    None if acked < f.batches.len() => Some(ClientError::CorruptResponse {
                        what: format!("produce to {}", f.tp),
                        reason: format!(
                            "{} batches sent, {} offsets returned and no error",
                            f.batches.len(),
                            r.base_offsets.len()
                        ),
                    }),
                    None => None,
                };
                let mut batches = f.batches;
                let rest = batches.split_off(acked);
                let mut resolved = 0;
                for (b, base) in batches.into_iter().zip(r.base_offsets) {
                    resolved += b.complete(base);
                }
                match error {
                    Some(e) => {
                        shared.acc().finish(
                            &f.key,
                            Vec::new(),
                            Instant::now().into_std(),
                            resolved,
                        );
                        // `finish` cleared in-flight; settle_failure re-marks it by requeueing.
                        renew |= settle_rest(shared, &f.key, &f.tp, rest, &e);
                    }
                    None => {
                        shared.acc().finish(
                            &f.key,
                            Vec::new(),
                            Instant::now().into_std(),
                            resolved,
                        );
                    }
                }
            }
        }
    }
    renew
}

fn settle_failure(shared: &Shared, f: InFlight, resolved: usize, e: &ClientError) -> bool {
    shared
        .acc()
        .finish(&f.key, Vec::new(), Instant::now().into_std(), resolved);
    settle_rest(shared, &f.key, &f.tp, f.batches, e)
}

/// Requeues `batches` of `tp` for a retry, or fails them when `e` is final or their retries
/// are used up. Returns true when batches failed for good under idempotence.
fn settle_rest(
    shared: &Shared,
    key: &PartitionKey,
    tp: &TopicPartition,
    batches: Vec<SealedBatch>,
    e: &ClientError,
) -> bool {
    if batches.is_empty() {
        return false;
    }
    let attempts = batches.iter().map(|b| b.attempts).max().unwrap_or(0);
    let client = &shared.client;
    if e.is_retryable() && attempts < client.config().max_retries {
        client.on_error(Some(tp), e);
        let redirected = matches!(
            e,
            ClientError::NotLeader { leader: Some(h), .. } if !h.client_addr.is_empty()
        );
        let wait = if redirected && attempts == 0 {
            Duration::ZERO
        } else {
            client.backoff(attempts)
        };
        tracing::debug!(%tp, attempts, error = %e, "produce failed; retrying");
        let batches = batches
            .into_iter()
            .map(|mut b| {
                b.attempts += 1;
                b
            })
            .collect();
        shared
            .acc()
            .finish(key, batches, (Instant::now() + wait).into_std(), 0);
        shared.wake.notify_one();
        false
    } else {
        let mut failed = 0;
        for b in batches {
            failed += b.fail(e);
        }
        shared
            .acc()
            .finish(key, Vec::new(), Instant::now().into_std(), failed);
        tracing::warn!(%tp, error = %e, "produce failed; records reported to their senders");
        shared.config.idempotence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accumulator::BufferSpace;
    use delivery::Completion;

    fn inflight(partition: u32, batch_sizes: &[usize]) -> InFlight {
        let key = PartitionKey::new("topic".into(), partition);
        let sem = Arc::new(Semaphore::new(0));
        let batches = batch_sizes
            .iter()
            .map(|n| SealedBatch {
                bytes: Bytes::from(vec![0u8; *n]),
                records: 1,
                completion: Completion::new(key.topic.clone(), partition),
                space: BufferSpace::new(sem.clone()),
                attempts: 0,
            })
            .collect();
        InFlight {
            tp: key.to_topic_partition(),
            key,
            batches,
        }
    }

    fn partitions(requests: &[Vec<InFlight>]) -> Vec<Vec<u32>> {
        requests
            .iter()
            .map(|r| r.iter().map(|f| f.tp.partition).collect())
            .collect()
    }

    #[test]
    fn a_smaller_broker_limit_lowers_the_request_size() {
        const MIB: usize = 1024 * 1024;
        // No broker said (an older one): the configuration alone.
        assert_eq!(request_bytes_max(8 * MIB, None), 8 * MIB);
        // The broker's default limit is above the default configuration.
        assert_eq!(request_bytes_max(8 * MIB, Some(16 * MIB)), 8 * MIB);
        // A configuration above the broker's limit: the limit less 64 KiB.
        assert_eq!(request_bytes_max(64 * MIB, Some(MIB)), MIB - 64 * 1024);
        assert_eq!(
            request_bytes_max(64 * MIB, Some(2 * MIB)),
            2 * MIB - 64 * 1024
        );
        // A small limit keeps fifteen sixteenths of itself.
        assert_eq!(request_bytes_max(MIB, Some(256 * 1024)), 240 * 1024);
        assert_eq!(request_bytes_max(MIB, Some(0)), 0);
    }

    #[test]
    fn requests_to_one_broker_are_split_at_request_bytes_max() {
        const MAX: usize = 10_000;
        // Six partitions of ~4 KB each: two fit a request, a third would not.
        let group: Vec<InFlight> = (0..6).map(|p| inflight(p, &[2000, 2000])).collect();
        let requests = pack_requests(group, MAX);
        assert_eq!(
            partitions(&requests),
            vec![vec![0, 1], vec![2, 3], vec![4, 5]]
        );
        for r in &requests {
            let bytes = REQUEST_FRAMING + r.iter().map(request_bytes).sum::<usize>();
            assert!(bytes <= MAX, "{bytes} > {MAX}");
        }
        // A partition larger than the limit on its own goes alone, in order.
        let group = vec![
            inflight(0, &[100]),
            inflight(1, &[20_000]),
            inflight(2, &[100]),
        ];
        assert_eq!(
            partitions(&pack_requests(group, MAX)),
            vec![vec![0], vec![1], vec![2]]
        );
        // Everything fits: one request.
        let group: Vec<InFlight> = (0..6).map(|p| inflight(p, &[100])).collect();
        assert_eq!(pack_requests(group, MAX).len(), 1);
    }
}
