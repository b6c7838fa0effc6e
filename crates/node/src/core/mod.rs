//! The transport-neutral broker core: metadata, topics, produce, fetch, list offsets, producer
//! ids, topic configuration and the protocol-neutral half of consumer groups ([`groups`]), in
//! plain Rust types with [`NodeError`] for failures. The gRPC
//! services (`service.rs`) and the Kafka listener (`kafka.rs`) are thin translations over it, so
//! that no feature is implemented twice.

use std::collections::BTreeMap;
use std::future::Future as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{join_all, select_all};
use futures_util::FutureExt;
use skein_raft::{MetaCommand, MetaOutcome, PartitionGroup};
use skein_record::BatchHeader;
use tracing::Instrument;

use crate::broker::{Broker, Route};
use crate::error::{NodeError, Result};
use crate::placement::{place, Load};
use crate::topics::{check_topic_config, topic_log_config, validate_topic_name};

pub mod classic;
pub mod groups;

/// Most partitions a topic may have.
pub const PARTITIONS_MAX: u32 = 10_000;

/// Largest chunk read at once while scanning batch headers (OffsetForLeaderEpoch).
const SCAN_CHUNK_BYTES: u64 = 8 << 20;

/// A node as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Node id.
    pub id: u64,
    /// Advertised client (gRPC) address.
    pub client_addr: String,
    /// Peer (Raft) address.
    pub peer_addr: String,
    /// Advertised Kafka address, empty when the node has none.
    pub kafka_addr: String,
    /// Whether this node says it is ready (other nodes are assumed ready).
    pub ready: bool,
}

/// The cluster: nodes, controller and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// Registered nodes in id order.
    pub nodes: Vec<NodeView>,
    /// The metadata group's leader, 0 when none.
    pub controller_id: u64,
    /// The cluster id.
    pub cluster_id: String,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// Partition index.
    pub partition: u32,
    /// Leader node id, 0 when none is known.
    pub leader: u64,
    /// The leader's Raft term (Kafka's leader epoch), 0 when unknown.
    pub leader_term: u64,
    /// Replica node ids.
    pub replicas: Vec<u64>,
    /// Replicas caught up with the leader (known only on the leader, else empty).
    pub in_sync: Vec<u64>,
}

/// A topic as the metadata holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    /// Topic name.
    pub name: String,
    /// Partitions in index order.
    pub partitions: Vec<PartitionView>,
    /// Replicas per partition.
    pub replication_factor: u32,
    /// Configuration overrides.
    pub configs: BTreeMap<String, String>,
}

/// A topic to create; `None` means the broker default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: Option<u32>,
    /// Replication factor.
    pub replication_factor: Option<u32>,
    /// Configuration overrides.
    pub configs: BTreeMap<String, String>,
}

/// What the writes of one partition's batches came to.
#[derive(Debug, Default)]
pub struct Produced {
    /// Base offset of each batch written, in order, up to the first failure.
    pub base_offsets: Vec<u64>,
    /// The first failure, if any; nothing after it was written.
    pub error: Option<NodeError>,
}

/// One partition of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPart {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// First offset wanted.
    pub offset: u64,
    /// Most bytes from this partition, 0 for no limit of its own.
    pub max_bytes: u32,
}

/// A fetch of several partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSpec {
    /// Partitions in request order.
    pub partitions: Vec<FetchPart>,
    /// Most bytes in all, 0 for the node's limit (never above it).
    pub max_bytes: u32,
    /// Longest wait for `min_bytes` (capped by the node's limit).
    pub max_wait: Duration,
    /// Answer once this many bytes are there (at least 1).
    pub min_bytes: u32,
}

/// What one partition of a fetch returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// High watermark of the replica that answered.
    pub high_watermark: u64,
    /// Log start offset.
    pub log_start_offset: u64,
    /// The offset to fetch next.
    pub next_offset: u64,
    /// Whole data batches, never Raft-internal entries.
    pub records: Bytes,
}

/// Which offset to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    /// The log start offset.
    Earliest,
    /// The high watermark.
    Latest,
    /// The first record with a timestamp >= this (ms).
    Timestamp(i64),
}

/// The answer to an [`OffsetQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAnswer {
    /// The offset; `None` when no record has a timestamp >= the target.
    pub offset: Option<u64>,
    /// By timestamp: the found record's timestamp and its batch's leader epoch (Raft term).
    pub found: Option<(i64, i32)>,
    /// Log start offset.
    pub log_start_offset: u64,
    /// High watermark.
    pub high_watermark: u64,
}

/// A configuration entry as Skein stores it, named as Kafka names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigValue {
    /// Kafka's name (`retention.ms`, ...).
    pub name: String,
    /// The effective value.
    pub value: String,
    /// True when set on the topic, false for the node's default.
    pub overridden: bool,
}

/// The broker core: every client-facing operation, whatever the protocol.
#[derive(Debug, Clone)]
pub struct BrokerCore {
    broker: Arc<Broker>,
}

impl BrokerCore {
    /// The core of `broker`.
    pub fn new(broker: Arc<Broker>) -> Self {
        BrokerCore { broker }
    }

    /// The broker underneath (for group coordination, which has its own front end).
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.broker.node_id()
    }

    /// Fails while the node is shutting down.
    pub fn check_ready(&self) -> Result<()> {
        if self.broker.stopping.load(Ordering::Acquire) {
            return Err(NodeError::NotReady("the node is shutting down".into()));
        }
        Ok(())
    }

    /// Registered nodes, controller and cluster id.
    pub fn cluster(&self) -> ClusterView {
        let meta = self.broker.metadata();
        let me = self.node_id();
        let nodes = meta
            .nodes
            .iter()
            .map(|(id, n)| NodeView {
                id: *id,
                client_addr: n.client_addr.clone(),
                peer_addr: n.peer_addr.clone(),
                kafka_addr: n.kafka_addr.clone(),
                ready: *id != me || self.broker.not_ready_reason().is_none(),
            })
            .collect();
        ClusterView {
            nodes,
            controller_id: self.broker.meta.leader().unwrap_or(0),
            cluster_id: meta.cluster_id(),
        }
    }

    /// The largest client request this node accepts (`limits.request_bytes_max`), which it
    /// tells clients so that they split their requests below it.
    pub fn request_bytes_max(&self) -> usize {
        self.broker.config.limits.request_bytes_max
    }

    /// Names of every topic, internal ones included.
    pub fn topic_names(&self) -> Vec<String> {
        self.broker.metadata().topics.keys().cloned().collect()
    }

    /// A topic with its partitions' leaders (this node's Raft view where it has a replica).
    pub fn topic(&self, name: &str) -> Result<TopicView> {
        let meta = self.broker.metadata();
        let t = meta
            .topics
            .get(name)
            .ok_or_else(|| NodeError::UnknownTopic {
                topic: name.to_owned(),
            })?;
        let partitions = t
            .partitions
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut p = PartitionView {
                    partition: i as u32,
                    leader: 0,
                    leader_term: 0,
                    replicas: a.replicas.clone(),
                    in_sync: Vec::new(),
                };
                if let Some((n, term)) = meta.leaders.get(&a.group) {
                    (p.leader, p.leader_term) = (*n, *term);
                }
                if let Ok(Route::Local(r)) = self.broker.route(name, i as u32) {
                    self.local_leadership(&r.group, &mut p);
                }
                p
            })
            .collect();
        Ok(TopicView {
            name: name.to_owned(),
            partitions,
            replication_factor: t.partitions.first().map_or(0, |p| p.replicas.len() as u32),
            configs: t.configs.clone(),
        })
    }

    /// Fills leader, term and in-sync replicas from a local replica's Raft metrics.
    fn local_leadership(&self, group: &PartitionGroup, p: &mut PartitionView) {
        let me = self.node_id();
        let m = group.raft().metrics().borrow().clone();
        if let Some(l) = m.current_leader {
            (p.leader, p.leader_term) = (l, m.current_term);
        }
        if m.current_leader != Some(me) {
            return;
        }
        let last = m.last_log_index.unwrap_or(0);
        p.in_sync = vec![me];
        if let Some(rep) = &m.replication {
            for (node, matched) in rep {
                if *node != me && matched.is_some_and(|l| l.index + 64 >= last) {
                    p.in_sync.push(*node);
                }
            }
        }
        p.in_sync.sort_unstable();
    }

    /// Checks a topic to create and places its replicas: (partitions, replication factor,
    /// replicas of each partition).
    fn plan_topic(&self, spec: &TopicSpec) -> Result<(u32, u32, Vec<Vec<u64>>)> {
        validate_topic_name(&spec.name)?;
        if spec.name == crate::groups::OFFSETS_TOPIC {
            return Err(NodeError::InvalidTopicName {
                name: spec.name.clone(),
                reason: "the name is reserved for Skein's committed offsets".into(),
            });
        }
        let defaults = &self.broker.config.topic_defaults;
        let partitions = spec.partitions.unwrap_or(defaults.partitions);
        if partitions == 0 || partitions > PARTITIONS_MAX {
            return Err(NodeError::InvalidPartitions(format!(
                "{partitions} partitions requested; from 1 to {PARTITIONS_MAX}"
            )));
        }
        let meta = self.broker.metadata();
        let nodes: Vec<u64> = meta.nodes.keys().copied().collect();
        let rf = spec
            .replication_factor
            .unwrap_or_else(|| defaults.replication_factor.min(nodes.len().max(1) as u32));
        check_topic_config(&self.broker.config, &spec.configs)?;
        if meta.topics.contains_key(&spec.name) {
            return Err(NodeError::TopicExists {
                name: spec.name.clone(),
            });
        }
        let mut load = Load::new();
        for t in meta.topics.values() {
            for a in &t.partitions {
                for (i, n) in a.replicas.iter().enumerate() {
                    let e = load.entry(*n).or_insert((0, 0));
                    e.0 += 1;
                    if i == 0 {
                        e.1 += 1;
                    }
                }
            }
        }
        let replicas = place(&nodes, &load, partitions, rf)?;
        Ok((partitions, rf, replicas))
    }

    /// Creates a topic and waits (up to 10 s) until every partition has a leader. With
    /// `validate_only`, checks everything and returns the topic as it would be, creating nothing.
    pub async fn create_topic(&self, spec: TopicSpec, validate_only: bool) -> Result<TopicView> {
        self.check_ready()?;
        let (partitions, rf, replicas) = self.plan_topic(&spec)?;
        if validate_only {
            return Ok(TopicView {
                name: spec.name,
                partitions: (0..partitions)
                    .zip(replicas)
                    .map(|(i, r)| PartitionView {
                        partition: i,
                        leader: 0,
                        leader_term: 0,
                        replicas: r,
                        in_sync: Vec::new(),
                    })
                    .collect(),
                replication_factor: rf,
                configs: spec.configs,
            });
        }
        let cmd = MetaCommand::CreateTopic {
            name: spec.name.clone(),
            replicas,
            configs: spec.configs,
        };
        match self
            .broker
            .propose_patiently(&cmd, Duration::from_secs(10))
            .await?
        {
            MetaOutcome::TopicCreated { .. } => {}
            MetaOutcome::TopicExists => return Err(NodeError::TopicExists { name: spec.name }),
            other => return Err(outcome_error(other)),
        }
        // Wait (briefly) until every partition has elected a leader, so that producers can
        // start at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.broker.metadata_changed.notified();
            let view = self.topic(&spec.name);
            let led = view
                .as_ref()
                .is_ok_and(|t| t.partitions.iter().all(|p| p.leader != 0));
            if led || Instant::now() >= deadline {
                return view;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    }

    /// Sets configuration overrides of an existing topic (keys not named keep their values).
    /// The merged settings are validated as at creation; retention changes apply at each
    /// replica's next retention check.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicView> {
        self.check_ready()?;
        validate_topic_name(name)?;
        if name == crate::groups::OFFSETS_TOPIC {
            return Err(NodeError::InvalidRequest(format!(
                "{name} is internal; its settings cannot be changed"
            )));
        }
        let meta = self.broker.metadata();
        let Some(topic) = meta.topics.get(name) else {
            return Err(NodeError::UnknownTopic {
                topic: name.to_owned(),
            });
        };
        let mut merged = topic.configs.clone();
        merged.extend(configs.clone());
        check_topic_config(&self.broker.config, &merged)?;
        let cmd = MetaCommand::AlterTopicConfig {
            name: name.to_owned(),
            configs,
        };
        match self
            .broker
            .propose_patiently(&cmd, Duration::from_secs(10))
            .await?
        {
            MetaOutcome::Ok => {}
            MetaOutcome::UnknownTopic => {
                return Err(NodeError::UnknownTopic {
                    topic: name.to_owned(),
                })
            }
            other => return Err(outcome_error(other)),
        }
        // Answer with the settings as applied (this node's metadata may lag a moment).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.broker.metadata_changed.notified();
            let view = self.topic(name)?;
            if view.configs == merged || Instant::now() >= deadline {
                return Ok(view);
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    }

    /// Deletes a topic (not `__consumer_offsets`).
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.check_ready()?;
        validate_topic_name(name)?;
        if name == crate::groups::OFFSETS_TOPIC {
            return Err(NodeError::InvalidRequest(format!("{name} holds consumer groups' committed offsets and cannot be deleted; delete groups with `skein group delete`")));
        }
        let cmd = MetaCommand::DeleteTopic {
            name: name.to_owned(),
        };
        match self
            .broker
            .propose_patiently(&cmd, Duration::from_secs(10))
            .await?
        {
            MetaOutcome::Ok => Ok(()),
            MetaOutcome::UnknownTopic => Err(NodeError::UnknownTopic {
                topic: name.to_owned(),
            }),
            other => Err(outcome_error(other)),
        }
    }

    /// A new idempotent producer id (epoch 0), allocated by the metadata group.
    pub async fn init_producer_id(&self) -> Result<i64> {
        self.check_ready()?;
        match self
            .broker
            .propose_patiently(
                &MetaCommand::AllocateProducerIds { count: 1 },
                Duration::from_secs(10),
            )
            .await?
        {
            MetaOutcome::ProducerIds { first } => Ok(first),
            other => Err(outcome_error(other)),
        }
    }

    /// The replication wait of a produce: `requested` (if any) capped by the node's limit.
    pub fn produce_timeout(&self, requested: Option<Duration>) -> Duration {
        let max = self.broker.config.limits.produce_timeout;
        requested.map_or(max, |t| t.min(max))
    }

    /// Writes whole record batches to partitions (several partitions side by side, the batches
    /// of one partition in order). Answered at the Raft commit whatever the acks: a Raft leader
    /// cannot acknowledge an entry before it commits without risking its loss, and Skein never
    /// acknowledges a write it could lose.
    pub async fn produce(
        &self,
        writes: Vec<(String, u32, Vec<Bytes>)>,
        timeout: Duration,
    ) -> Result<Vec<Produced>> {
        let started = Instant::now();
        let m = &self.broker.metrics;
        m.produce_requests.inc();
        self.check_ready()?;
        let results = join_all(writes.into_iter().map(|(topic, partition, batches)| {
            let span = tracing::debug_span!("produce", %topic, partition);
            self.produce_partition(topic, partition, batches, timeout)
                .instrument(span)
        }))
        .await;
        if results.iter().any(|r| r.error.is_some()) {
            m.produce_errors.inc();
        }
        m.produce_latency.observe(started.elapsed().as_secs_f64());
        Ok(results)
    }

    async fn produce_partition(
        &self,
        topic: String,
        partition: u32,
        batches: Vec<Bytes>,
        timeout: Duration,
    ) -> Produced {
        let mut result = Produced::default();
        let replica = match self.broker.leader_replica(&topic, partition) {
            Ok(r) => r,
            Err(e) => {
                result.error = Some(e);
                return result;
            }
        };
        let mut written = Written::default();
        let write_all = write_partition(&replica.group, batches, &mut written);
        let timed_out = tokio::time::timeout(timeout, write_all).await.is_err();
        let m = &self.broker.metrics;
        // Offsets of the batches written, in order, up to the first failure.
        for (outcome, (records, len)) in written.outcomes.into_iter().zip(written.counts) {
            match outcome {
                Some(Ok(r)) => {
                    result.base_offsets.push(r.base_offset);
                    m.produce_records.inc_by(records);
                    m.produce_bytes.inc_by(len);
                }
                Some(Err(e)) => {
                    result.error = Some(self.broker.raft_error(e));
                    return result;
                }
                None => break,
            }
        }
        if timed_out {
            result.error = Some(NodeError::Timeout {
                what: format!("replication of {topic}/{partition}"),
                ms: timeout.as_millis() as u64,
            });
        } else if let Some(e) = written.invalid {
            result.error = Some(e);
        }
        result
    }

    /// Reads one partition now, at most `max_bytes` (at least one batch when there is one).
    async fn fetch_partition_now(&self, p: &FetchPart, max_bytes: u32) -> Result<Fetched> {
        let r = self.broker.local(&p.topic, p.partition)?;
        let hwm = r.group.high_watermark();
        let limit = if p.max_bytes == 0 {
            max_bytes
        } else {
            p.max_bytes.min(max_bytes)
        };
        let offset = p.offset;
        let read = r.group.with_log(|log| {
            let start = log.log_start_offset();
            if offset < start || offset > hwm {
                return Err(NodeError::from(
                    skein_storage::StorageError::OffsetOutOfRange {
                        requested: offset,
                        start,
                        end: hwm,
                    },
                ));
            }
            let s = log.read_upto(offset, u64::from(limit), hwm)?;
            Ok((s, start))
        });
        let (slice, start) = read.await?;
        Ok(Fetched {
            high_watermark: hwm,
            log_start_offset: start,
            next_offset: slice.next_offset,
            records: slice.bytes,
        })
    }

    /// One fetch round over every partition, within a byte budget: once the budget is spent,
    /// later partitions return no records (only their positions).
    async fn fetch_round(&self, spec: &FetchSpec, max_bytes: u32) -> (Vec<Result<Fetched>>, usize) {
        let mut out = Vec::with_capacity(spec.partitions.len());
        let mut total = 0usize;
        let mut budget = max_bytes;
        for p in &spec.partitions {
            let limit = if budget == 0 { 1 } else { budget };
            let span = tracing::debug_span!("fetch", topic = %p.topic, partition = p.partition);
            let mut r = self.fetch_partition_now(p, limit).instrument(span).await;
            if let Ok(f) = &mut r {
                if budget == 0 && !f.records.is_empty() {
                    f.records = Bytes::new();
                    f.next_offset = p.offset;
                }
                total += f.records.len();
                budget = budget.saturating_sub(f.records.len() as u32);
            }
            out.push(r);
        }
        (out, total)
    }

    /// Reads several partitions: answers at once when `min_bytes` are there or a partition
    /// fails, otherwise waits for the high watermarks to move, up to `max_wait`.
    pub async fn fetch(&self, spec: &FetchSpec) -> Result<Vec<Result<Fetched>>> {
        self.check_ready()?;
        let started = Instant::now();
        let limits = &self.broker.config.limits;
        let max_bytes = if spec.max_bytes == 0 {
            limits.fetch_bytes_max
        } else {
            spec.max_bytes.min(limits.fetch_bytes_max)
        };
        let deadline = tokio::time::Instant::now() + spec.max_wait.min(limits.fetch_wait_max);
        let min_bytes = spec.min_bytes.max(1) as usize;
        // The partitions' Raft metrics, to wait on while there is nothing to return. A receiver
        // cloned from the group's starts "unseen", so `changed()` on a fresh clone returns at
        // once: take them once per request and wait for what matters to a fetch (see `applied`)
        // instead of any metrics change, or the long poll turns into a busy loop (it took ~80 %
        // of a node's CPU with one consumer at the tail).
        let mut watches: Vec<_> = spec
            .partitions
            .iter()
            .filter_map(|p| match self.broker.route(&p.topic, p.partition) {
                Ok(Route::Local(r)) => Some(r.group.raft().metrics()),
                _ => None,
            })
            .collect();
        loop {
            // Seen before reading, so that no commit slips between read and wait.
            let seen: Vec<_> = watches
                .iter_mut()
                .map(|w| applied(&w.borrow_and_update()))
                .collect();
            let (out, total) = self.fetch_round(spec, max_bytes).await;
            let errors = out.iter().any(|r| r.is_err());
            let now = tokio::time::Instant::now();
            if total >= min_bytes || errors || now >= deadline || watches.is_empty() {
                let m = &self.broker.metrics;
                m.fetch_requests.inc();
                m.fetch_bytes.inc_by(total as u64);
                m.fetch_latency.observe(started.elapsed().as_secs_f64());
                return Ok(out);
            }
            let changed = select_all(watches.iter_mut().zip(seen).map(|(w, seen)| {
                async move {
                    // An error means the group stopped: read again (and report it).
                    let _ = w.wait_for(|m| applied(m) != seen).await;
                }
                .boxed()
            }));
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }

    /// The earliest, latest or by-timestamp offset of a partition (any replica answers).
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        query: OffsetQuery,
    ) -> Result<OffsetAnswer> {
        self.check_ready()?;
        let r = self.broker.local(topic, partition)?;
        let hwm = r.group.high_watermark();
        let (start, found) = r
            .group
            .with_log(|log| {
                let found = match query {
                    // A record at or above the high watermark is not visible yet.
                    OffsetQuery::Timestamp(ts) => log
                        .offset_for_timestamp(ts)
                        .map_err(NodeError::from)
                        .and_then(|o| match o.filter(|o| *o < hwm) {
                            Some(o) => Ok(Some((o, record_time(log, o, hwm)?))),
                            None => Ok(None),
                        }),
                    _ => Ok(None),
                };
                (log.log_start_offset(), found)
            })
            .await;
        let found = found?;
        let offset = match query {
            OffsetQuery::Earliest => Some(start),
            OffsetQuery::Latest => Some(hwm),
            OffsetQuery::Timestamp(_) => found.map(|(o, _)| o),
        };
        Ok(OffsetAnswer {
            offset,
            found: found.and_then(|(_, t)| t),
            log_start_offset: start,
            high_watermark: hwm,
        })
    }

    /// The end offset of leader epoch (Raft term) `epoch` on a partition: the base offset of the
    /// first batch written in a later term, or the high watermark. Returns (the largest epoch
    /// <= `epoch` that wrote a batch, or `epoch` when none did; its end offset).
    pub async fn epoch_end_offset(
        &self,
        topic: &str,
        partition: u32,
        epoch: i32,
    ) -> Result<(i32, u64)> {
        self.check_ready()?;
        let r = self.broker.local(topic, partition)?;
        let hwm = r.group.high_watermark();
        let mut offset = r.group.with_log(|l| l.log_start_offset()).await;
        let mut found = None;
        while offset < hwm {
            let slice = r
                .group
                .with_log(|l| l.read_upto(offset, SCAN_CHUNK_BYTES, hwm))
                .await?;
            if slice.bytes.is_empty() {
                break;
            }
            let mut rest = &slice.bytes[..];
            while !rest.is_empty() {
                let h = BatchHeader::parse(rest)?;
                if h.leader_epoch > epoch {
                    return Ok((found.unwrap_or(epoch), h.base_offset));
                }
                found = Some(h.leader_epoch);
                rest = rest.get(h.batch_len as usize..).unwrap_or_default();
            }
            offset = slice.next_offset;
        }
        Ok((found.unwrap_or(epoch), hwm))
    }

    /// A topic's configuration as Skein applies it, under Kafka's names.
    pub fn topic_configs(&self, name: &str) -> Result<Vec<ConfigValue>> {
        let meta = self.broker.metadata();
        let t = meta
            .topics
            .get(name)
            .ok_or_else(|| NodeError::UnknownTopic {
                topic: name.to_owned(),
            })?;
        let log = topic_log_config(&self.broker.config.topic_defaults.log, &t.configs)?;
        let set = |k: &str| t.configs.contains_key(k);
        let ms = |d: Option<Duration>| d.map_or("-1".to_owned(), |d| d.as_millis().to_string());
        let entry = |name: &str, value: String, overridden: bool| ConfigValue {
            name: name.to_owned(),
            value,
            overridden,
        };
        Ok(vec![
            entry("cleanup.policy", "delete".into(), false),
            entry("retention.ms", ms(log.retention.time), set("retention.ms")),
            entry(
                "retention.bytes",
                log.retention.bytes.map_or("-1".into(), |b| b.to_string()),
                set("retention.bytes"),
            ),
            entry(
                "segment.bytes",
                log.segment_bytes_max.to_string(),
                set("segment.bytes"),
            ),
            entry("segment.ms", ms(log.segment_age_max), set("segment.ms")),
            entry(
                "max.message.bytes",
                log.batch_bytes_max.to_string(),
                set("max.batch.bytes"),
            ),
            entry("message.timestamp.type", "CreateTime".into(), false),
        ])
    }

    /// The node-level settings Kafka clients commonly ask about.
    pub fn node_configs(&self) -> Vec<ConfigValue> {
        let c = &self.broker.config;
        let d = &c.topic_defaults;
        let entry = |name: &str, value: String| ConfigValue {
            name: name.to_owned(),
            value,
            overridden: false,
        };
        vec![
            entry("broker.id", c.node_id.to_string()),
            entry("num.partitions", d.partitions.to_string()),
            entry(
                "default.replication.factor",
                d.replication_factor.to_string(),
            ),
            entry(
                "log.retention.ms",
                d.log
                    .retention
                    .time
                    .map_or("-1".into(), |t| t.as_millis().to_string()),
            ),
            entry("log.segment.bytes", d.log.segment_bytes_max.to_string()),
            entry("message.max.bytes", d.log.batch_bytes_max.to_string()),
            entry(
                "socket.request.max.bytes",
                c.kafka.frame_bytes_max.to_string(),
            ),
            entry("auto.create.topics.enable", "false".into()),
        ]
    }
}

/// The timestamp of the record at `offset` and its batch's leader epoch, read from its batch.
fn record_time(
    log: &skein_storage::PartitionLog,
    offset: u64,
    hwm: u64,
) -> Result<Option<(i64, i32)>> {
    let slice = log.read_upto(offset, 1, hwm)?;
    for batch in skein_record::BatchIter::new(slice.bytes) {
        let batch = batch?;
        for record in batch.records()? {
            let record = record?;
            if record.offset == offset {
                return Ok(Some((record.timestamp, batch.header().leader_epoch)));
            }
        }
    }
    Ok(None)
}

/// What a waiting fetch of a replica watches in its Raft metrics: the last applied entry (the
/// high watermark moves only when entries are applied) and the leadership.
fn applied(
    m: &skein_raft::openraft::RaftMetrics<skein_raft::NodeId, skein_raft::Node>,
) -> (Option<u64>, u64, Option<skein_raft::NodeId>) {
    (
        m.last_applied.map(|l| l.index),
        m.current_term,
        m.current_leader,
    )
}

/// Writes one partition's batches in order: all at once when the group has caught up with its
/// term as leader (or none is idempotent), else the first alone and then the rest.
async fn write_partition(group: &Arc<PartitionGroup>, batches: Vec<Bytes>, written: &mut Written) {
    let term = || group.raft().metrics().borrow().current_term;
    // Batches without a producer id are handed to Raft on their first poll, always.
    let plain = batches
        .iter()
        .all(|b| BatchHeader::parse(b).is_ok_and(|h| h.producer_id < 0));
    let mut batches = batches.into_iter();
    let term_before = term();
    if !plain && !group.caught_up_in(term_before) {
        // The group may have to catch up with the new term first: the first batch goes
        // alone (see `write_in_order`); once an idempotent one is written in an unchanged
        // term, the group is caught up and the rest can go together.
        let Some(first) = batches.next() else {
            return;
        };
        write_in_order(group, std::iter::once(first), written).await;
        if !written.all_written() {
            return;
        }
        if !(group.caught_up_in(term_before) && term() == term_before) {
            // Not known to be caught up: one batch at a time.
            for batch in batches {
                write_in_order(group, std::iter::once(batch), written).await;
                if !written.all_written() {
                    return;
                }
            }
            return;
        }
    }
    write_in_order(group, batches, written).await;
}

/// What the writes of one partition's batches came to, in order.
#[derive(Default)]
struct Written {
    /// Records and bytes of each batch started.
    counts: Vec<(u64, u64)>,
    /// Each started batch's result; `None` while it is not finished.
    outcomes: Vec<Option<skein_raft::Result<skein_raft::ProduceResponse>>>,
    /// A batch whose header does not parse; nothing after it was started.
    invalid: Option<NodeError>,
    /// A batch failed: nothing after it is started.
    stopped: bool,
}

impl Written {
    /// Every batch started so far is written.
    fn all_written(&self) -> bool {
        !self.stopped && self.outcomes.iter().all(|o| matches!(o, Some(Ok(_))))
    }
}

/// Writes `batches` to `group` at once: one Raft round and one fsync for all of them instead of
/// one per batch. Order is kept by starting them in order: a batch's write is first polled only
/// after the previous one's, and `PartitionGroup::produce` hands the entry to Raft on its first
/// poll, without yielding, once the group has caught up with its term as leader (the caller
/// makes sure of that: `PartitionGroup::caught_up_in`). A batch that fails at once (invalid, out
/// of sequence, not the leader) stops the batches after it from being started, so nothing after
/// a rejected batch is written. Results go to `out`, so that what finished before a timeout is known.
async fn write_in_order(
    group: &Arc<PartitionGroup>,
    batches: impl Iterator<Item = Bytes>,
    out: &mut Written,
) {
    let mut batches = batches;
    let base = out.outcomes.len();
    let mut writes = Vec::new();
    std::future::poll_fn(|cx| {
        while !out.stopped {
            let Some(batch) = batches.next() else {
                break;
            };
            match BatchHeader::parse(&batch) {
                Ok(h) => out
                    .counts
                    .push((u64::from(h.record_count), batch.len() as u64)),
                Err(e) => {
                    out.invalid = Some(NodeError::from(e));
                    out.stopped = true;
                    break;
                }
            }
            let mut write = Box::pin(group.produce(batch));
            match write.as_mut().poll(cx) {
                Poll::Ready(r) => {
                    out.stopped = r.is_err();
                    out.outcomes.push(Some(r));
                    writes.push(None);
                }
                Poll::Pending => {
                    out.outcomes.push(None);
                    writes.push(Some(write));
                }
            }
        }
        let mut done = true;
        for (slot, outcome) in writes.iter_mut().zip(&mut out.outcomes[base..]) {
            if let Some(w) = slot {
                match w.as_mut().poll(cx) {
                    Poll::Ready(r) => {
                        out.stopped |= r.is_err();
                        *outcome = Some(r);
                        *slot = None;
                    }
                    Poll::Pending => done = false,
                }
            }
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// Splits a produce payload of one or more whole record batches into batches; fails when the
/// bytes do not end at a batch boundary or a header does not parse.
pub fn split_batches(records: &Bytes) -> Result<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < records.len() {
        let h = BatchHeader::parse(&records[at..])?;
        let end = at
            .checked_add(h.batch_len as usize)
            .filter(|e| *e <= records.len())
            .ok_or_else(|| {
                NodeError::InvalidRequest(format!(
                    "a record batch of {} bytes at byte {at} runs past the {} bytes sent",
                    h.batch_len,
                    records.len()
                ))
            })?;
        out.push(records.slice(at..end));
        at = end;
    }
    Ok(out)
}

/// The error for a metadata outcome a caller did not expect: a command the metadata state
/// machine refused (it validates every command it applies) is the client's bad request; anything
/// else is a bug.
fn outcome_error(outcome: MetaOutcome) -> NodeError {
    match outcome {
        MetaOutcome::Refused { reason } => NodeError::InvalidRequest(reason),
        other => NodeError::Internal(format!("unexpected outcome {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_metadata_command_is_the_clients_bad_request() {
        let e = outcome_error(MetaOutcome::Refused {
            reason: "too many partitions".into(),
        });
        assert!(matches!(&e, NodeError::InvalidRequest(r) if r == "too many partitions"));
        assert!(matches!(
            outcome_error(MetaOutcome::TopicExists),
            NodeError::Internal(_)
        ));
    }
}
