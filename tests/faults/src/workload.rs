//! The workload of a fault run: idempotent producers writing unique values to every partition,
//! a consumer group polling and committing, an observer of the group's committed offsets, and,
//! once every fault is healed, a read of every partition from every node. Everything it does
//! goes into the [`Recorder`]'s history.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use skein_client::proto as pb;
use skein_client::{
    Admin, Client, ClientConfig, Compression, GroupConsumer, GroupConsumerConfig, NewTopic,
    OffsetReset, Producer, ProducerConfig, ProducerRecord,
};
use skein_record::{BatchIter, EntryKind};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::history::{Kind, Op, Recorder, Seen};
use crate::rng::Rng;

/// The topic every run writes.
pub const TOPIC: &str = "faults";
/// The consumer group of the run.
pub const GROUP: &str = "faults-group";

/// How hard the workload pushes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Partitions of the topic.
    pub partitions: u32,
    /// Producer tasks.
    pub producers: u32,
    /// Group consumers.
    pub consumers: u32,
    /// Pause between two sends of one producer.
    pub send_interval: Duration,
    /// Longest wait for one acknowledgement before the write counts as indeterminate.
    pub ack_timeout: Duration,
    /// Seed of the partition choices.
    pub seed: u64,
}

/// A client for the workload: short timeouts, so that faults show up as indeterminate
/// operations instead of stalls.
pub fn client(brokers: &str) -> anyhow::Result<Client> {
    let config = ClientConfig {
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
        retry_backoff_min: Duration::from_millis(50),
        retry_backoff_max: Duration::from_millis(500),
        max_retries: 10,
        ..ClientConfig::new(brokers)
    };
    Client::new(config).context("client")
}

/// Creates the topic (small segments, so that there are sealed segments to damage) and waits
/// until every partition has a leader.
pub async fn create_topic(brokers: &str, partitions: u32) -> anyhow::Result<()> {
    let admin = Admin::new(client(brokers)?);
    let topic = NewTopic::new(TOPIC)
        .partitions(partitions)
        .replication_factor(3)
        .config("segment.bytes", "65536")
        .config("max.batch.bytes", "32768");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match admin.create_topic(topic.clone()).await {
            Ok(_) => break,
            Err(e) if e.to_string().contains("exists") => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "create topic: retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context("create topic"),
        }
    }
    loop {
        if let Ok(d) = admin.describe_topic(TOPIC).await {
            if d.partitions.iter().all(|p| p.leader.is_some()) {
                return Ok(());
            }
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "topic {TOPIC} has partitions without a leader after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The running workload tasks.
#[derive(Debug)]
pub struct Workload {
    stop_producers: watch::Sender<bool>,
    stop_consumers: watch::Sender<bool>,
    producers: JoinSet<()>,
    consumers: JoinSet<()>,
}

impl Workload {
    /// Starts producers, consumers and the observer.
    pub fn start(brokers: &str, settings: &Settings, rec: &Recorder) -> anyhow::Result<Workload> {
        let (stop_producers, producers_stopped) = watch::channel(false);
        let (stop_consumers, consumers_stopped) = watch::channel(false);
        let mut producers = JoinSet::new();
        let mut consumers = JoinSet::new();
        for n in 0..settings.producers {
            let p = ProducerTask {
                n,
                client: client(brokers)?,
                settings: settings.clone(),
                rec: rec.clone(),
                stop: producers_stopped.clone(),
            };
            producers.spawn(p.run());
        }
        for n in 0..settings.consumers {
            let c = ConsumerTask {
                n,
                brokers: brokers.to_owned(),
                rec: rec.clone(),
                stop: consumers_stopped.clone(),
            };
            consumers.spawn(c.run());
        }
        consumers.spawn(observe(client(brokers)?, rec.clone(), consumers_stopped));
        Ok(Workload {
            stop_producers,
            stop_consumers,
            producers,
            consumers,
        })
    }

    /// Stops the producers and waits for every write in flight to complete.
    pub async fn stop_producers(&mut self) {
        let _ = self.stop_producers.send(true);
        while self.producers.join_next().await.is_some() {}
    }

    /// Stops the consumers (they commit and leave) and the observer.
    pub async fn stop_consumers(&mut self) {
        let _ = self.stop_consumers.send(true);
        while self.consumers.join_next().await.is_some() {}
    }
}

struct ProducerTask {
    n: u32,
    client: Client,
    settings: Settings,
    rec: Recorder,
    stop: watch::Receiver<bool>,
}

fn producer_config() -> ProducerConfig {
    ProducerConfig {
        linger: Duration::from_millis(5),
        batch_bytes_max: 16 << 10,
        compression: Compression::None,
        idempotence: true,
        ..ProducerConfig::default()
    }
}

impl ProducerTask {
    async fn run(mut self) {
        let process = format!("producer-{}", self.n);
        let mut rng = Rng::new(self.settings.seed ^ ((u64::from(self.n) + 1) * 0x9e37_79b9));
        let mut seqs = vec![0u64; self.settings.partitions as usize];
        // At most this many writes of this producer are waiting for their acknowledgement.
        let in_flight = Arc::new(Semaphore::new(64));
        let mut deliveries = JoinSet::new();
        let mut producer: Option<(Producer, Arc<AtomicBool>)> = None;
        let mut generation = 0u32;
        let mut tick = tokio::time::interval(self.settings.send_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.stop.changed() => break,
            }
            if *self.stop.borrow() {
                break;
            }
            // A producer that saw a failed write is replaced: a new producer id starts a fresh
            // sequence, so later writes are not refused as out of order.
            if producer
                .as_ref()
                .is_some_and(|(_, broken)| broken.load(Ordering::Relaxed))
            {
                producer = None;
                // The writes of the old producer may still land after the new one's: each
                // producer instance is a producer of its own in the history, with its own
                // sequence numbers (order is only promised within one).
                generation += 1;
                seqs.iter_mut().for_each(|s| *s = 0);
            }
            let (prod, broken) = match &producer {
                Some(p) => p.clone(),
                None => {
                    match tokio::time::timeout(
                        self.settings.ack_timeout,
                        Producer::new(self.client.clone(), producer_config()),
                    )
                    .await
                    {
                        Ok(Ok(p)) => {
                            producer = Some((p, Arc::new(AtomicBool::new(false))));
                            continue;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%process, error = %e, "new producer");
                            continue;
                        }
                        Err(_) => continue,
                    }
                }
            };
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let partition = rng.below(u64::from(self.settings.partitions)) as u32;
            let seq = seqs[partition as usize];
            seqs[partition as usize] += 1;
            // `producer` in the history: workload producer N's G-th instance is N * 1000 + G.
            let n = self.n * 1000 + generation;
            let value = format!("{n}-{partition}-{seq}");
            let op = move |value: &str, offset: Option<u64>| Op::Produce {
                partition,
                producer: n,
                seq,
                value: value.to_owned(),
                offset,
            };
            let id = self.rec.invoke(&process, &op(&value, None));
            let record =
                ProducerRecord::new(TOPIC, value.clone().into_bytes()).partition(partition);
            let sent = tokio::time::timeout(self.settings.ack_timeout, prod.send(record)).await;
            let delivery = match sent {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => {
                    // Refused before it was queued: certainly not written.
                    let done = op(&value, None);
                    self.rec
                        .complete(id, &process, Kind::Fail, done, Some(e.to_string()));
                    broken.store(true, Ordering::Relaxed);
                    continue;
                }
                Err(_) => {
                    let done = op(&value, None);
                    self.rec.complete(
                        id,
                        &process,
                        Kind::Info,
                        done,
                        Some("send timed out".into()),
                    );
                    broken.store(true, Ordering::Relaxed);
                    continue;
                }
            };
            let rec = self.rec.clone();
            let process = process.clone();
            let ack_timeout = self.settings.ack_timeout;
            deliveries.spawn(async move {
                let _permit = permit;
                let (kind, offset, error) = match tokio::time::timeout(ack_timeout, delivery).await
                {
                    Ok(Ok(meta)) => (Kind::Ok, Some(meta.offset), None),
                    Ok(Err(e)) => (Kind::Info, None, Some(e.to_string())),
                    Err(_) => (Kind::Info, None, Some("ack timed out".to_owned())),
                };
                if kind != Kind::Ok {
                    broken.store(true, Ordering::Relaxed);
                }
                rec.complete(id, &process, kind, op(&value, offset), error);
            });
            // Reap finished deliveries as we go.
            while deliveries.try_join_next().is_some() {}
        }
        while deliveries.join_next().await.is_some() {}
    }
}

struct ConsumerTask {
    n: u32,
    brokers: String,
    rec: Recorder,
    stop: watch::Receiver<bool>,
}

fn group_config(n: u32) -> GroupConsumerConfig {
    GroupConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        enable_auto_commit: false,
        session_timeout: Duration::from_secs(6),
        client_id: format!("faults-consumer-{n}"),
        ..GroupConsumerConfig::new(GROUP)
    }
}

impl ConsumerTask {
    async fn run(mut self) {
        let process = format!("consumer-{}", self.n);
        let mut consumer: Option<GroupConsumer> = None;
        let mut errors = 0u32;
        let mut last_commit = tokio::time::Instant::now();
        while !*self.stop.borrow() {
            let c = match &mut consumer {
                Some(c) => c,
                None => {
                    let made = client(&self.brokers).and_then(|cl| {
                        GroupConsumer::new(cl, group_config(self.n)).context("consumer")
                    });
                    match made {
                        Ok(mut c) => {
                            c.subscribe([TOPIC]);
                            consumer.insert(c)
                        }
                        Err(e) => {
                            tracing::warn!(%process, error = %e, "new consumer");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    }
                }
            };
            let op = |records| Op::Poll {
                group: GROUP.into(),
                records,
            };
            let id = self.rec.invoke(&process, &op(Vec::new()));
            let polled = tokio::select! {
                r = tokio::time::timeout(Duration::from_secs(10), c.poll()) => r,
                _ = self.stop.changed() => {
                    self.rec.complete(id, &process, Kind::Info, op(Vec::new()), Some("stopped".into()));
                    break;
                }
            };
            match polled {
                Ok(Ok(records)) => {
                    errors = 0;
                    let seen = records
                        .iter()
                        .map(|r| Seen {
                            partition: r.partition,
                            offset: r.offset,
                            value: r
                                .value
                                .as_deref()
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                                .unwrap_or_default(),
                        })
                        .collect();
                    self.rec.complete(id, &process, Kind::Ok, op(seen), None);
                }
                Ok(Err(e)) => {
                    errors += 1;
                    self.rec.complete(
                        id,
                        &process,
                        Kind::Info,
                        op(Vec::new()),
                        Some(e.to_string()),
                    );
                }
                Err(_) => {
                    errors += 1;
                    self.rec.complete(
                        id,
                        &process,
                        Kind::Info,
                        op(Vec::new()),
                        Some("poll timed out".into()),
                    );
                }
            }
            if last_commit.elapsed() >= Duration::from_millis(500) {
                last_commit = tokio::time::Instant::now();
                if commit(c, &process, &self.rec).await.is_err() {
                    errors += 1;
                }
            }
            if errors >= 5 {
                // Start over as a new member: the old one may be fenced for good.
                consumer = None;
                errors = 0;
            }
        }
        if let Some(mut c) = consumer {
            let _ = commit(&mut c, &process, &self.rec).await;
            let _ = tokio::time::timeout(Duration::from_secs(10), c.close()).await;
        }
    }
}

/// Commits the consumer's positions (the next offsets to process), recording the commit.
async fn commit(c: &mut GroupConsumer, process: &str, rec: &Recorder) -> anyhow::Result<()> {
    let offsets: BTreeMap<u32, u64> = c
        .assignment()
        .iter()
        .filter_map(|tp| c.position(tp).map(|o| (tp.partition, o)))
        .collect();
    if offsets.is_empty() {
        return Ok(());
    }
    let op = Op::Commit {
        group: GROUP.into(),
        offsets,
    };
    let id = rec.invoke(process, &op);
    match tokio::time::timeout(Duration::from_secs(10), c.commit()).await {
        Ok(Ok(())) => {
            rec.complete(id, process, Kind::Ok, op, None);
            Ok(())
        }
        Ok(Err(e)) => {
            rec.complete(id, process, Kind::Info, op, Some(e.to_string()));
            Err(e.into())
        }
        Err(_) => {
            rec.complete(id, process, Kind::Info, op, Some("commit timed out".into()));
            anyhow::bail!("commit timed out")
        }
    }
}

/// Reads the group's committed offsets every 300 ms.
async fn observe(client: Client, rec: Recorder, mut stop: watch::Receiver<bool>) {
    let admin = Admin::new(client);
    while !*stop.borrow() {
        let op = |offsets| Op::Committed {
            group: GROUP.into(),
            offsets,
        };
        let id = rec.invoke("observer", &op(BTreeMap::new()));
        match tokio::time::timeout(Duration::from_secs(5), admin.fetch_offsets(GROUP, &[])).await {
            Ok(Ok(m)) => {
                let offsets = m
                    .into_iter()
                    .filter(|(tp, _)| tp.topic == TOPIC)
                    .map(|(tp, o)| (tp.partition, o.offset))
                    .collect();
                rec.complete(id, "observer", Kind::Ok, op(offsets), None);
            }
            Ok(Err(e)) => rec.complete(
                id,
                "observer",
                Kind::Info,
                op(BTreeMap::new()),
                Some(e.to_string()),
            ),
            Err(_) => rec.complete(
                id,
                "observer",
                Kind::Info,
                op(BTreeMap::new()),
                Some("timed out".into()),
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// A fetch client straight to one node (not through the leader).
type FetchClient = pb::fetch_service_client::FetchServiceClient<tonic::transport::Channel>;

async fn fetch_client(addr: &str) -> anyhow::Result<FetchClient> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("connect to {addr}"))?;
    Ok(pb::fetch_service_client::FetchServiceClient::new(ch).max_decoding_message_size(64 << 20))
}

/// One fetch from one node: (high watermark, log start, next offset, records).
async fn fetch_once(
    c: &mut FetchClient,
    partition: u32,
    offset: u64,
    max_bytes: u32,
) -> anyhow::Result<(u64, u64, u64, Vec<Seen>)> {
    let r = c
        .fetch(pb::FetchRequest {
            partitions: vec![pb::PartitionFetch {
                topic: TOPIC.into(),
                partition,
                offset,
                max_bytes,
            }],
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes,
        })
        .await?
        .into_inner();
    let p = r
        .partitions
        .into_iter()
        .next()
        .context("fetch answered no partition")?;
    if let Some(e) = p.error {
        anyhow::bail!(
            "fetch {TOPIC}/{partition} at {offset}: {} {}",
            e.code,
            e.message
        );
    }
    let mut seen = Vec::new();
    for b in BatchIter::new(p.records.clone()) {
        let b = b.context("batch from the log")?;
        if b.header().kind != EntryKind::Data {
            continue;
        }
        for r in b.records().context("records")? {
            let r = r.context("record")?;
            if r.offset >= offset && r.offset < p.high_watermark {
                seen.push(Seen {
                    partition,
                    offset: r.offset,
                    value: r
                        .value
                        .as_deref()
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default(),
                });
            }
        }
    }
    Ok((p.high_watermark, p.log_start_offset, p.next_offset, seen))
}

/// The log start named by an OFFSET_OUT_OF_RANGE answer (`... out of range [START, END]`).
fn range_start(message: &str) -> Option<u64> {
    let rest = &message[message.find("out of range [")? + "out of range [".len()..];
    rest[..rest.find(',')?].trim().parse().ok()
}

/// A node's (high watermark, log start) for a partition. A replica whose log was restarted after
/// a snapshot (see `docs/reliability.md`) does not start at 0.
async fn probe(c: &mut FetchClient, partition: u32) -> anyhow::Result<(u64, u64)> {
    match fetch_once(c, partition, 0, 1).await {
        Ok((hwm, start, ..)) => Ok((hwm, start)),
        Err(e) => {
            let Some(start) = range_start(&format!("{e:#}")) else {
                return Err(e);
            };
            let (hwm, start, ..) = fetch_once(c, partition, start, 1).await?;
            Ok((hwm, start))
        }
    }
}

/// Waits (up to `timeout`) until every node reports the same high watermark for every
/// partition; returns whether they converged.
pub async fn wait_converged(nodes: &[(u64, String)], partitions: u32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stable = 0;
    let mut last: Option<Vec<u64>> = None;
    // One connection per node, made again only after it failed.
    let mut clients: Vec<Option<FetchClient>> = nodes.iter().map(|_| None).collect();
    loop {
        // Node-major: the high watermarks of node 1's partitions, then node 2's...
        let mut hwms = Vec::new();
        for ((_, addr), slot) in nodes.iter().zip(clients.iter_mut()) {
            if slot.is_none() {
                *slot = fetch_client(addr).await.ok();
            }
            let Some(c) = slot else { break };
            for p in 0..partitions {
                match probe(c, p).await {
                    Ok((hwm, _)) => hwms.push(hwm),
                    Err(_) => {
                        *slot = None;
                        break;
                    }
                }
            }
        }
        let complete = hwms.len() == nodes.len() * partitions as usize;
        let agree = complete
            && (0..partitions as usize).all(|p| {
                let mut per = hwms.iter().skip(p).step_by(partitions as usize);
                let first = per.next();
                per.all(|h| Some(h) == first)
            });
        if agree && last.as_ref() == Some(&hwms) {
            stable += 1;
            if stable >= 3 {
                return true;
            }
        } else {
            stable = 0;
        }
        last = Some(hwms);
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads every partition from its log start to its high watermark on every node, recording
/// one `read` per node and partition.
pub async fn final_reads(nodes: &[(u64, String)], partitions: u32, rec: &Recorder) {
    for (node, addr) in nodes {
        for partition in 0..partitions {
            let op = |log_start, high_watermark, records| Op::Read {
                node: *node,
                partition,
                log_start,
                high_watermark,
                records,
            };
            let id = rec.invoke("reader", &op(0, 0, Vec::new()));
            match read_partition(addr, partition).await {
                Ok((start, hwm, records)) => {
                    rec.complete(id, "reader", Kind::Ok, op(start, hwm, records), None)
                }
                Err(e) => rec.complete(
                    id,
                    "reader",
                    Kind::Fail,
                    op(0, 0, Vec::new()),
                    Some(format!("{e:#}")),
                ),
            }
        }
    }
}

async fn read_partition(addr: &str, partition: u32) -> anyhow::Result<(u64, u64, Vec<Seen>)> {
    let mut c = fetch_client(addr).await?;
    let (hwm, start) = probe(&mut c, partition).await?;
    let mut records = Vec::new();
    let mut at = start;
    while at < hwm {
        let (_, _, next, mut seen) = fetch_once(&mut c, partition, at, 1 << 20).await?;
        anyhow::ensure!(
            next > at,
            "no progress reading {TOPIC}/{partition} at {at} from {addr}"
        );
        seen.retain(|s| s.offset < hwm);
        records.append(&mut seen);
        at = next;
    }
    Ok((start, hwm, records))
}

/// The leader of a partition as the cluster reports it.
pub async fn leader_of(admin: &Admin, partition: u32) -> Option<u64> {
    let d = tokio::time::timeout(Duration::from_secs(5), admin.describe_topic(TOPIC))
        .await
        .ok()?
        .ok()?;
    d.partitions
        .iter()
        .find(|p| p.partition == partition)
        .and_then(|p| p.leader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_start_is_read_from_an_out_of_range_answer() {
        assert_eq!(
            range_start("fetch faults/0 at 0: 12 offset 0 is out of range [4200, 9000]"),
            Some(4200)
        );
        assert_eq!(range_start("something else"), None);
    }
}
