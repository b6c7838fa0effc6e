//! The scenarios: producer tasks, consumer tasks, the progress line, and the report they make.

use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use skein_client::{
    Admin, Client, ClientConfig, ClientError, Consumer, ConsumerConfig, DeliveryFuture, NewTopic,
    OffsetReset, OffsetSpec, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};

use crate::args::{Scenario, ScenarioArgs};
use crate::pacer::Pacer;
use crate::report::{Latency, Report, SideReport};

/// How long consumers of an `e2e` run may take to receive the last records once the producers
/// are done.
const E2E_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new topic may take to get a leader for every partition.
const LEADERS_TIMEOUT: Duration = Duration::from_secs(30);

/// Wall-clock nanoseconds derived from one monotonic clock, so that a send time embedded in a
/// record and the receive time compare exactly within this process.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_unix_ns: u64,
}

impl Clock {
    pub fn new() -> Self {
        let base_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Clock {
            base: Instant::now(),
            base_unix_ns,
        }
    }

    /// Unix nanoseconds at `t`.
    pub fn unix_ns_at(&self, t: Instant) -> u64 {
        let since = t.saturating_duration_since(self.base).as_nanos();
        self.base_unix_ns
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }
}

/// Counters the progress line reads.
#[derive(Debug, Default)]
pub struct Stats {
    sent: AtomicU64,
    acked: AtomicU64,
    acked_bytes: AtomicU64,
    failed: AtomicU64,
    consumed: AtomicU64,
    consumed_bytes: AtomicU64,
}

/// The value of every record: random uppercase letters (like `kafka-producer-perf-test`), made
/// once; the first 8 bytes of each record are then replaced by its send time.
fn payload_template(size: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'A' + (x % 26) as u8
        })
        .collect()
}

/// The send time (unix ns) carried by a record's value, when it has 8 bytes.
pub fn embedded_send_ns(value: &[u8]) -> Option<u64> {
    let head: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(head))
}

/// Splits `total` into `parts` shares that differ by at most one.
pub fn split_evenly(total: u64, parts: u32) -> Vec<u64> {
    let parts = u64::from(parts.max(1));
    (0..parts)
        .map(|i| total / parts + u64::from(i < total % parts))
        .collect()
}

/// Partitions `0..partitions` dealt round-robin to `consumers` consumers (empty shares dropped).
pub fn assign_partitions(topic: &str, partitions: u32, consumers: u32) -> Vec<Vec<TopicPartition>> {
    let mut out: Vec<Vec<TopicPartition>> = vec![Vec::new(); consumers.max(1) as usize];
    let n = out.len();
    for p in 0..partitions {
        out[p as usize % n].push(TopicPartition::new(topic, p));
    }
    out.retain(|v| !v.is_empty());
    out
}

/// Runs one scenario against `args.brokers` and returns its report.
pub async fn run(scenario: Scenario, args: ScenarioArgs) -> anyhow::Result<Report> {
    args.validate().map_err(anyhow::Error::msg)?;
    let client_config = ClientConfig::new(&args.brokers);
    client_config
        .validate()
        .with_context(|| format!("--brokers {}", args.brokers))?;
    let admin = Admin::new(Client::new(client_config.clone())?);
    let partitions = ensure_topic(&admin, &args).await?;
    let clock = Clock::new();
    match scenario {
        Scenario::Produce => {
            let stats = Arc::new(Stats::default());
            let progress = spawn_progress(&args, stats.clone(), false);
            let produced = produce(&args, &client_config, &stats, clock, args.record_limit()).await;
            progress.abort();
            let produced = produced?;
            Ok(Report::new(scenario, args, Some(produced), None, None))
        }
        Scenario::Consume => {
            let wanted = args.record_limit();
            let tps: Vec<TopicPartition> = (0..partitions)
                .map(|p| TopicPartition::new(&args.topic, p))
                .collect();
            let (_, available) = available_records(&admin, &tps).await?;
            let needed = wanted.unwrap_or(1_000_000);
            let (starts, available) = if available < needed {
                if args.no_prefill {
                    bail!(
                        "topic {} holds {available} records and --no-prefill forbids producing the {} missing",
                        args.topic,
                        needed - available
                    );
                }
                if !args.quiet {
                    eprintln!(
                        "skein-bench: topic {} holds {available} records; producing {} more first (not measured)",
                        args.topic,
                        needed - available
                    );
                }
                let prefill = ScenarioArgs {
                    rate: None,
                    duration: None,
                    ..args.clone()
                };
                let stats = Arc::new(Stats::default());
                let progress = spawn_progress(&args, stats.clone(), false);
                let r = produce(
                    &prefill,
                    &client_config,
                    &stats,
                    clock,
                    Some(needed - available),
                )
                .await;
                progress.abort();
                let r = r?;
                if r.errors > 0 {
                    bail!("{} records failed while filling the topic", r.errors);
                }
                available_records(&admin, &tps).await?
            } else {
                available_records(&admin, &tps).await?
            };
            let target = match wanted {
                Some(n) => n.min(available),
                None => available,
            };
            let stats = Arc::new(Stats::default());
            let progress = spawn_progress(&args, stats.clone(), true);
            let consumed = consume(
                &args,
                &client_config,
                &stats,
                clock,
                &starts,
                Arc::new(AtomicU64::new(target)),
                Instant::now(),
                false,
            )
            .await;
            progress.abort();
            let (consumed, _) = consumed?;
            Ok(Report::new(scenario, args, None, Some(consumed), None))
        }
        Scenario::E2e => {
            let tps: Vec<TopicPartition> = (0..partitions)
                .map(|p| TopicPartition::new(&args.topic, p))
                .collect();
            let ends = admin
                .list_offsets(
                    &tps.iter()
                        .map(|tp| (tp.clone(), OffsetSpec::Latest))
                        .collect::<Vec<_>>(),
                )
                .await
                .context("look up the end of every partition")?;
            let starts: Vec<(TopicPartition, u64)> =
                ends.into_iter().map(|o| (o.tp, o.offset)).collect();
            let stats = Arc::new(Stats::default());
            let progress = spawn_progress(&args, stats.clone(), true);
            let target = Arc::new(AtomicU64::new(u64::MAX));
            let start = Instant::now();
            let consumers = {
                let args = args.clone();
                let cc = client_config.clone();
                let stats = stats.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    consume(&args, &cc, &stats, clock, &starts, target, start, true).await
                })
            };
            let produced = produce(&args, &client_config, &stats, clock, args.record_limit()).await;
            let produced = match produced {
                Ok(p) => p,
                Err(e) => {
                    consumers.abort();
                    progress.abort();
                    return Err(e);
                }
            };
            target.store(produced.records, Ordering::SeqCst);
            let drained = tokio::time::timeout(E2E_DRAIN_TIMEOUT, consumers).await;
            progress.abort();
            let (consumed, e2e) = match drained {
                Ok(joined) => joined.context("consumer tasks")??,
                Err(_) => bail!(
                    "consumers did not receive all {} acknowledged records within {E2E_DRAIN_TIMEOUT:?} after the producers finished (received {})",
                    produced.records,
                    stats.consumed.load(Ordering::Relaxed)
                ),
            };
            let e2e = e2e.summary();
            Ok(Report::new(
                scenario,
                args,
                Some(produced),
                Some(consumed),
                e2e,
            ))
        }
    }
}

/// Creates the topic when it is missing and waits until every partition has a leader. Returns
/// the partition count.
async fn ensure_topic(admin: &Admin, args: &ScenarioArgs) -> anyhow::Result<u32> {
    match admin.describe_topic(&args.topic).await {
        Ok(t) => {
            if t.partitions.len() != args.partitions as usize && !args.quiet {
                eprintln!(
                    "skein-bench: topic {} exists with {} partitions (--partitions {} applies only to a new topic)",
                    args.topic,
                    t.partitions.len(),
                    args.partitions
                );
            }
        }
        Err(ClientError::UnknownTopicOrPartition { .. }) => {
            let mut new = NewTopic::new(&args.topic).partitions(args.partitions);
            if let Some(rf) = args.replication_factor {
                new = new.replication_factor(rf);
            }
            match admin.create_topic(new).await {
                Ok(_) | Err(ClientError::TopicAlreadyExists { .. }) => {}
                Err(e) => return Err(e).with_context(|| format!("create topic {}", args.topic)),
            }
        }
        Err(e) => return Err(e).with_context(|| format!("describe topic {}", args.topic)),
    }
    let deadline = Instant::now() + LEADERS_TIMEOUT;
    loop {
        let t = admin
            .describe_topic(&args.topic)
            .await
            .with_context(|| format!("describe topic {}", args.topic))?;
        if !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader.is_some()) {
            return u32::try_from(t.partitions.len()).context("partition count");
        }
        if Instant::now() >= deadline {
            bail!(
                "topic {} has partitions without a leader after {LEADERS_TIMEOUT:?}",
                args.topic
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each partition's log start, and the records held over all partitions.
async fn available_records(
    admin: &Admin,
    tps: &[TopicPartition],
) -> anyhow::Result<(Vec<(TopicPartition, u64)>, u64)> {
    let queries: Vec<_> = tps
        .iter()
        .map(|tp| (tp.clone(), OffsetSpec::Earliest))
        .collect();
    let offsets = admin
        .list_offsets(&queries)
        .await
        .context("look up the start of every partition")?;
    let available = offsets
        .iter()
        .map(|o| o.high_watermark.saturating_sub(o.offset))
        .sum();
    Ok((
        offsets.into_iter().map(|o| (o.tp, o.offset)).collect(),
        available,
    ))
}

fn producer_config(args: &ScenarioArgs) -> ProducerConfig {
    ProducerConfig {
        acks: args.acks,
        compression: args.compression,
        linger: args.linger,
        batch_bytes_max: args.batch_bytes,
        buffer_bytes_max: args.buffer_bytes,
        request_bytes_max: ProducerConfig::default()
            .request_bytes_max
            .max(args.batch_bytes),
        idempotence: !args.no_idempotence,
    }
}

/// What one producer task measured.
#[derive(Debug)]
struct Delivered {
    acked: u64,
    bytes: u64,
    failed: u64,
    first_error: Option<String>,
    latency: Latency,
    last_ack: Option<Instant>,
}

/// Runs `args.producers` producers until `records` are sent (or `args.duration` passes) and
/// every record is acknowledged or failed.
async fn produce(
    args: &ScenarioArgs,
    client_config: &ClientConfig,
    stats: &Arc<Stats>,
    clock: Clock,
    records: Option<u64>,
) -> anyhow::Result<SideReport> {
    let config = producer_config(args);
    let mut producers = Vec::new();
    for i in 0..args.producers {
        let client = Client::new(client_config.clone())?;
        let p = Producer::new(client, config.clone())
            .await
            .with_context(|| format!("create producer {i}"))?;
        producers.push(p);
    }
    let shares: Vec<Option<u64>> = match records {
        Some(n) => split_evenly(n, args.producers)
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None; args.producers as usize],
    };
    let keys: Option<Arc<Vec<Bytes>>> = args.keyed.then(|| {
        Arc::new(
            (0..args.key_space)
                .map(|k| Bytes::from(format!("key-{k:010}")))
                .collect(),
        )
    });
    let template: Arc<[u8]> = payload_template(args.record_size).into();
    let start = Instant::now();
    let deadline = args.duration.map(|d| start + d);
    let mut tasks = Vec::new();
    for (i, (producer, share)) in producers.into_iter().zip(shares).enumerate() {
        let job = ProduceJob {
            index: i as u64,
            producers: u64::from(args.producers),
            producer,
            topic: Arc::from(args.topic.as_str()),
            template: template.clone(),
            keys: keys.clone(),
            records: share,
            deadline,
            pacer: args
                .rate
                .map(|r| Pacer::new(start, r / f64::from(args.producers))),
            clock,
            stats: stats.clone(),
        };
        tasks.push(tokio::spawn(job.run()));
    }
    let mut total = Delivered {
        acked: 0,
        bytes: 0,
        failed: 0,
        first_error: None,
        latency: Latency::new(),
        last_ack: None,
    };
    for t in tasks {
        let d = t.await.context("producer task")??;
        total.acked += d.acked;
        total.bytes += d.bytes;
        total.failed += d.failed;
        total.first_error = total.first_error.or(d.first_error);
        total.latency.merge(&d.latency);
        total.last_ack = total.last_ack.max(d.last_ack);
    }
    if let Some(e) = &total.first_error {
        eprintln!(
            "skein-bench: {} records failed; first error: {e}",
            total.failed
        );
    }
    let elapsed = total.last_ack.unwrap_or_else(Instant::now) - start;
    Ok(SideReport::new(
        total.acked,
        total.bytes,
        elapsed,
        &total.latency,
        total.failed,
    ))
}

struct ProduceJob {
    index: u64,
    producers: u64,
    producer: Producer,
    topic: Arc<str>,
    template: Arc<[u8]>,
    keys: Option<Arc<Vec<Bytes>>>,
    records: Option<u64>,
    deadline: Option<Instant>,
    pacer: Option<Pacer>,
    clock: Clock,
    stats: Arc<Stats>,
}

impl ProduceJob {
    async fn run(mut self) -> anyhow::Result<Delivered> {
        let handoff = Arc::new(Handoff::default());
        let collector = tokio::spawn(collect(handoff.clone(), self.stats.clone()));
        let size = self.template.len();
        let chunk_bytes = (size * 1024).max(256 * 1024);
        let mut chunk = BytesMut::new();
        let mut send_error = None;
        let mut i: u64 = 0;
        while self.records.is_none_or(|n| i < n) {
            let now = Instant::now();
            if self.deadline.is_some_and(|d| now >= d) {
                break;
            }
            let at = match self.pacer.as_mut() {
                Some(p) => {
                    let at = p.next_slot();
                    if at > now {
                        tokio::time::sleep_until(at.into()).await;
                    }
                    at
                }
                None => now,
            };
            if chunk.capacity() < size {
                chunk = BytesMut::with_capacity(chunk_bytes);
            }
            chunk.extend_from_slice(&self.template);
            if size >= 8 {
                chunk[..8].copy_from_slice(&self.clock.unix_ns_at(at).to_le_bytes());
            }
            let value = chunk.split().freeze();
            let key = self.keys.as_ref().map(|k| {
                let n = i * self.producers + self.index;
                k[(n % k.len() as u64) as usize].clone()
            });
            let bytes = (value.len() + key.as_ref().map_or(0, Bytes::len)) as u64;
            let record = ProducerRecord {
                topic: self.topic.clone(),
                partition: None,
                key,
                value: Some(value),
                headers: Vec::new(),
                timestamp: None,
            };
            match self.producer.send(record).await {
                Ok(delivery) => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    handoff.push((at, bytes, delivery));
                }
                Err(e) => {
                    // `send` has used up the client's retries: stop this producer.
                    send_error = Some(e);
                    break;
                }
            }
            i += 1;
        }
        handoff.close();
        let flushed = self.producer.flush().await;
        let mut delivered = collector.await.context("delivery collector")?;
        if let Some(e) = send_error {
            delivered.failed += 1;
            delivered.first_error.get_or_insert_with(|| e.to_string());
        }
        if let Err(e) = flushed {
            delivered.first_error.get_or_insert_with(|| e.to_string());
        }
        let _ = self.producer.close().await;
        Ok(delivered)
    }
}

/// A record handed to the collector: its send time, its key and value bytes, its future.
type Delivery = (Instant, u64, DeliveryFuture);

/// Deliveries on their way from a producer task to its collector: a vector under a lock (the
/// collector swaps it out), and a wake-up only when the vector was empty. Not bounded here: the
/// producer's `buffer_bytes_max` bounds the records in flight, hence the deliveries.
#[derive(Debug, Default)]
struct Handoff {
    queue: Mutex<Vec<Delivery>>,
    collector: AtomicWaker,
    closed: AtomicBool,
}

impl Handoff {
    fn push(&self, d: Delivery) {
        let was_empty = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.push(d);
            q.len() == 1
        };
        if was_empty {
            self.collector.wake();
        }
    }

    /// No more deliveries will come.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.collector.wake();
    }
}

/// Awaits every delivery of one producer, timing each from its send.
///
/// Deliveries wait in one queue per partition, in send order, and only the oldest of each is
/// polled: a partition's records are acknowledged in the order they were sent, and the records
/// of a batch share one completion, so one wake-up per batch resolves them all. (One task per
/// record in a `FuturesUnordered` cost more than the producer itself.)
async fn collect(handoff: Arc<Handoff>, stats: Arc<Stats>) -> Delivered {
    let mut d = Delivered {
        acked: 0,
        bytes: 0,
        failed: 0,
        first_error: None,
        latency: Latency::new(),
        last_ack: None,
    };
    let mut queues: Vec<VecDeque<Delivery>> = Vec::new();
    let mut incoming: Vec<Delivery> = Vec::new();
    let mut waiting = 0usize;
    std::future::poll_fn(|cx| {
        handoff.collector.register(cx.waker());
        // Read before taking the queue: every delivery was pushed before `closed` was set.
        let closed = handoff.closed.load(Ordering::Acquire);
        std::mem::swap(
            &mut *handoff.queue.lock().unwrap_or_else(|p| p.into_inner()),
            &mut incoming,
        );
        for delivery in incoming.drain(..) {
            let p = delivery.2.partition() as usize;
            if queues.len() <= p {
                queues.resize_with(p + 1, VecDeque::new);
            }
            queues[p].push_back(delivery);
            waiting += 1;
        }
        let now = Instant::now();
        let (mut acked, mut acked_bytes) = (0u64, 0u64);
        for q in &mut queues {
            while let Some((at, bytes, future)) = q.front_mut() {
                let Poll::Ready(result) = Pin::new(future).poll(cx) else {
                    break;
                };
                match result {
                    Ok(_) => {
                        acked += 1;
                        acked_bytes += *bytes;
                        d.latency.record(now.saturating_duration_since(*at));
                    }
                    Err(e) => {
                        d.failed += 1;
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        d.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
                q.pop_front();
                waiting -= 1;
            }
        }
        if acked > 0 {
            d.acked += acked;
            d.bytes += acked_bytes;
            d.last_ack = Some(now);
            stats.acked.fetch_add(acked, Ordering::Relaxed);
            stats.acked_bytes.fetch_add(acked_bytes, Ordering::Relaxed);
        }
        if closed && waiting == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    d
}

/// Runs `args.consumers` consumers from `starts` until `target` records are received in all
/// (read again after each poll: `e2e` sets it when the producers are done), or `args.duration`
/// passes (`consume` only). Returns the consumers' report and the end-to-end latencies.
#[allow(clippy::too_many_arguments)]
async fn consume(
    args: &ScenarioArgs,
    client_config: &ClientConfig,
    stats: &Arc<Stats>,
    clock: Clock,
    starts: &[(TopicPartition, u64)],
    target: Arc<AtomicU64>,
    start: Instant,
    e2e: bool,
) -> anyhow::Result<(SideReport, Latency)> {
    let config = ConsumerConfig {
        fetch_wait_max: args.fetch_wait,
        fetch_min_bytes: 1,
        partition_fetch_bytes_max: args.partition_fetch_bytes,
        fetch_bytes_max: ConsumerConfig::default()
            .fetch_bytes_max
            .max(args.partition_fetch_bytes),
        offset_reset: OffsetReset::Earliest,
    };
    let partitions = u32::try_from(starts.len()).context("partition count")?;
    let deadline = if e2e {
        None
    } else {
        args.duration.map(|d| start + d)
    };
    let mut tasks = Vec::new();
    for share in assign_partitions(&args.topic, partitions, args.consumers) {
        let mut consumer = Consumer::new(Client::new(client_config.clone())?, config.clone())?;
        consumer.assign(share.iter().cloned());
        for tp in &share {
            if let Some((_, offset)) = starts.iter().find(|(t, _)| t == tp) {
                consumer.seek(tp, *offset)?;
            }
        }
        let stats = stats.clone();
        let target = target.clone();
        let record_size = args.record_size;
        tasks.push(tokio::spawn(async move {
            let mut poll_latency = Latency::new();
            let mut e2e_latency = Latency::new();
            let (mut records, mut bytes, mut errors) = (0u64, 0u64, 0u64);
            let mut last = None;
            loop {
                if stats.consumed.load(Ordering::Relaxed) >= target.load(Ordering::SeqCst)
                    || deadline.is_some_and(|d| Instant::now() >= d)
                {
                    break;
                }
                let t0 = Instant::now();
                let batch = match consumer.poll().await {
                    Ok(b) => b,
                    Err(e) if e.is_retryable() => {
                        errors += 1;
                        continue;
                    }
                    Err(e) => return Err(anyhow::Error::new(e).context("poll")),
                };
                if batch.is_empty() {
                    continue;
                }
                let now = Instant::now();
                poll_latency.record(now - t0);
                let now_ns = clock.unix_ns_at(now);
                let now_ms = i64::try_from(now_ns / 1_000_000).unwrap_or(i64::MAX);
                let mut batch_bytes = 0u64;
                for r in &batch {
                    let v = r.value.as_deref().unwrap_or_default();
                    batch_bytes += (v.len() + r.key.as_ref().map_or(0, Bytes::len)) as u64;
                    if e2e {
                        match embedded_send_ns(v).filter(|_| record_size >= 8) {
                            Some(sent) => e2e_latency.record_us(now_ns.saturating_sub(sent) / 1000),
                            None => e2e_latency
                                .record_us(now_ms.saturating_sub(r.timestamp).max(0) as u64 * 1000),
                        }
                    }
                }
                records += batch.len() as u64;
                bytes += batch_bytes;
                last = Some(now);
                stats
                    .consumed
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                stats
                    .consumed_bytes
                    .fetch_add(batch_bytes, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>((records, bytes, errors, poll_latency, e2e_latency, last))
        }));
    }
    let (mut records, mut bytes, mut errors) = (0u64, 0u64, 0u64);
    let (mut poll_latency, mut e2e_latency) = (Latency::new(), Latency::new());
    let mut last: Option<Instant> = None;
    for t in tasks {
        let (r, b, e, p, l, at) = t.await.context("consumer task")??;
        records += r;
        bytes += b;
        errors += e;
        poll_latency.merge(&p);
        e2e_latency.merge(&l);
        last = last.max(at);
    }
    let elapsed = last.unwrap_or_else(Instant::now) - start;
    Ok((
        SideReport::new(records, bytes, elapsed, &poll_latency, errors),
        e2e_latency,
    ))
}

/// Prints a progress line to stderr once a second until aborted.
fn spawn_progress(
    args: &ScenarioArgs,
    stats: Arc<Stats>,
    consuming: bool,
) -> tokio::task::JoinHandle<()> {
    let quiet = args.quiet;
    tokio::spawn(async move {
        if quiet {
            return;
        }
        let start = Instant::now();
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let (mut acked0, mut acked_b0, mut cons0, mut cons_b0) = (0, 0, 0, 0);
        let mut t0 = start;
        loop {
            tick.tick().await;
            let now = Instant::now();
            let secs = (now - t0).as_secs_f64().max(1e-9);
            let sent = stats.sent.load(Ordering::Relaxed);
            let acked = stats.acked.load(Ordering::Relaxed);
            let acked_b = stats.acked_bytes.load(Ordering::Relaxed);
            let failed = stats.failed.load(Ordering::Relaxed);
            let cons = stats.consumed.load(Ordering::Relaxed);
            let cons_b = stats.consumed_bytes.load(Ordering::Relaxed);
            let mut line = format!("[{:>5.1}s]", (now - start).as_secs_f64());
            if sent > 0 || !consuming {
                line.push_str(&format!(
                    " produce: {sent} sent, {acked} acked ({:.0} rec/s, {:.1} MB/s)",
                    (acked - acked0) as f64 / secs,
                    (acked_b - acked_b0) as f64 / secs / 1e6,
                ));
                if failed > 0 {
                    line.push_str(&format!(", {failed} failed"));
                }
            }
            if consuming {
                line.push_str(&format!(
                    " consume: {cons} ({:.0} rec/s, {:.1} MB/s)",
                    (cons - cons0) as f64 / secs,
                    (cons_b - cons_b0) as f64 / secs / 1e6,
                ));
            }
            eprintln!("{line}");
            (acked0, acked_b0, cons0, cons_b0, t0) = (acked, acked_b, cons, cons_b, now);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        assert_eq!(split_evenly(10, 3), vec![4, 3, 3]);
        assert_eq!(split_evenly(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(split_evenly(2_000_000, 2), vec![1_000_000, 1_000_000]);
    }

    #[test]
    fn partitions_are_dealt_round_robin() {
        let a = assign_partitions("t", 5, 2);
        let nums: Vec<Vec<u32>> = a
            .iter()
            .map(|v| v.iter().map(|tp| tp.partition).collect())
            .collect();
        assert_eq!(nums, vec![vec![0, 2, 4], vec![1, 3]]);
        // More consumers than partitions: the extra ones get nothing and are not started.
        assert_eq!(assign_partitions("t", 2, 4).len(), 2);
    }

    #[test]
    fn send_times_round_trip_through_the_value() {
        let clock = Clock::new();
        let t = Instant::now();
        let ns = clock.unix_ns_at(t);
        let mut v = payload_template(100);
        assert!(v.iter().all(u8::is_ascii_uppercase));
        v[..8].copy_from_slice(&ns.to_le_bytes());
        assert_eq!(embedded_send_ns(&v), Some(ns));
        assert_eq!(embedded_send_ns(&v[..7]), None);
        // The clock is monotonic and close to the wall clock.
        let later = clock.unix_ns_at(t + Duration::from_millis(5));
        assert_eq!(later - ns, 5_000_000);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos() as u64;
        assert!(wall.abs_diff(ns) < 1_000_000_000);
    }
}
