//! The client gRPC services: metadata and topic administration, produce, fetch, list offsets.

use std::collections::BTreeMap;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::future::{join_all, select_all};
use futures_util::{FutureExt, Stream};
use skein_proto::v1 as pb;
use skein_raft::{MetaCommand, MetaOutcome, PartitionGroup};
use skein_record::BatchHeader;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::broker::{Broker, Route};
use crate::error::{NodeError, Result};
use crate::placement::{place, Load};
use crate::topics::{topic_log_config, validate_topic_name};

/// Most partitions a topic may have.
pub const PARTITIONS_MAX: u32 = 10_000;

/// The client API of a node.
#[derive(Debug, Clone)]
pub struct ClientApi {
    broker: Arc<Broker>,
}

impl ClientApi {
    /// Serves the client API of `broker`.
    pub fn new(broker: Arc<Broker>) -> Self {
        ClientApi { broker }
    }

    fn check_ready(&self) -> Result<()> {
        if self
            .broker
            .stopping
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(NodeError::NotReady("the node is shutting down".into()));
        }
        Ok(())
    }

    fn topic_info(&self, name: &str) -> pb::TopicInfo {
        let meta = self.broker.metadata();
        let Some(t) = meta.topics.get(name) else {
            return pb::TopicInfo {
                name: name.to_owned(),
                error: Some(
                    NodeError::UnknownTopic {
                        topic: name.to_owned(),
                    }
                    .to_proto(),
                ),
                ..Default::default()
            };
        };
        let me = self.broker.node_id();
        let partitions = t
            .partitions
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut info = pb::PartitionInfo {
                    partition: i as u32,
                    replicas: a.replicas.clone(),
                    ..Default::default()
                };
                if let Some((n, term)) = meta.leaders.get(&a.group) {
                    info.leader = *n;
                    info.leader_term = *term;
                }
                if let Ok(Route::Local(r)) = self.broker.route(name, i as u32) {
                    let m = r.group.raft().metrics().borrow().clone();
                    if let Some(l) = m.current_leader {
                        info.leader = l;
                        info.leader_term = m.current_term;
                    }
                    if m.current_leader == Some(me) {
                        let last = m.last_log_index.unwrap_or(0);
                        info.in_sync = vec![me];
                        if let Some(rep) = &m.replication {
                            for (node, matched) in rep {
                                let caught_up = matched.is_some_and(|l| l.index + 64 >= last);
                                if *node != me && caught_up {
                                    info.in_sync.push(*node);
                                }
                            }
                        }
                        info.in_sync.sort_unstable();
                    }
                }
                info
            })
            .collect();
        pb::TopicInfo {
            name: name.to_owned(),
            partitions,
            replication_factor: t.partitions.first().map_or(0, |p| p.replicas.len() as u32),
            config: t.configs.clone().into_iter().collect(),
            error: None,
        }
    }

    async fn create_topic_inner(&self, req: pb::CreateTopicRequest) -> Result<pb::TopicInfo> {
        self.check_ready()?;
        validate_topic_name(&req.name)?;
        if req.name == crate::groups::OFFSETS_TOPIC {
            return Err(NodeError::InvalidTopicName {
                name: req.name,
                reason: "the name is reserved for Skein's committed offsets".into(),
            });
        }
        let defaults = &self.broker.config.topic_defaults;
        let partitions = if req.partitions == 0 {
            defaults.partitions
        } else {
            req.partitions
        };
        if partitions > PARTITIONS_MAX {
            return Err(NodeError::InvalidPartitions(format!(
                "{partitions} partitions requested; at most {PARTITIONS_MAX}"
            )));
        }
        let meta = self.broker.metadata();
        let nodes: Vec<u64> = meta.nodes.keys().copied().collect();
        let rf = if req.replication_factor == 0 {
            defaults.replication_factor.min(nodes.len().max(1) as u32)
        } else {
            req.replication_factor
        };
        let configs: BTreeMap<String, String> = req.config.into_iter().collect();
        topic_log_config(&defaults.log, &configs)?;
        if meta.topics.contains_key(&req.name) {
            return Err(NodeError::TopicExists { name: req.name });
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
        let cmd = MetaCommand::CreateTopic {
            name: req.name.clone(),
            replicas,
            configs,
        };
        match self
            .broker
            .propose_patiently(&cmd, Duration::from_secs(10))
            .await?
        {
            MetaOutcome::TopicCreated { .. } => {}
            MetaOutcome::TopicExists => return Err(NodeError::TopicExists { name: req.name }),
            other => return Err(NodeError::Internal(format!("unexpected outcome {other:?}"))),
        }
        // Wait (briefly) until every partition has elected a leader, so that producers can
        // start at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info = self.topic_info(&req.name);
            let led = info.error.is_none() && info.partitions.iter().all(|p| p.leader != 0);
            if led || Instant::now() >= deadline {
                return Ok(info);
            }
            let notified = self.broker.metadata_changed.notified();
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    }

    async fn produce_partition(
        &self,
        p: pb::PartitionBatches,
        timeout: Duration,
    ) -> pb::PartitionProduceResult {
        let mut result = pb::PartitionProduceResult {
            topic: p.topic.clone(),
            partition: p.partition,
            ..Default::default()
        };
        let replica = match self.broker.leader_replica(&p.topic, p.partition) {
            Ok(r) => r,
            Err(e) => {
                result.error = Some(e.to_proto());
                return result;
            }
        };
        let m = &self.broker.metrics;
        let group = &replica.group;
        let term = || group.raft().metrics().borrow().current_term;
        let mut written = Written::default();
        let write_all = async {
            // Batches without a producer id are handed to Raft on their first poll, always.
            let plain = p
                .batches
                .iter()
                .all(|b| BatchHeader::parse(b).is_ok_and(|h| h.producer_id < 0));
            let mut batches = p.batches.into_iter();
            let term_before = term();
            if !plain && !group.caught_up_in(term_before) {
                // The group may have to catch up with the new term first: the first batch goes
                // alone (see `write_in_order`); once an idempotent one is written in an
                // unchanged term, the group is caught up and the rest can go together.
                let Some(first) = batches.next() else {
                    return;
                };
                write_in_order(group, std::iter::once(first), &mut written).await;
                if !written.all_written() {
                    return;
                }
                if !(group.caught_up_in(term_before) && term() == term_before) {
                    // Not known to be caught up: one batch at a time, as before.
                    for batch in batches {
                        write_in_order(group, std::iter::once(batch), &mut written).await;
                        if !written.all_written() {
                            return;
                        }
                    }
                    return;
                }
            }
            write_in_order(group, batches, &mut written).await;
        };
        let timed_out = tokio::time::timeout(timeout, write_all).await.is_err();
        // Offsets of the batches written, in order, up to the first failure.
        for (outcome, (records, len)) in written.outcomes.into_iter().zip(written.counts) {
            match outcome {
                Some(Ok(r)) => {
                    result.base_offsets.push(r.base_offset);
                    m.produce_records.inc_by(records);
                    m.produce_bytes.inc_by(len);
                }
                Some(Err(e)) => {
                    result.error = Some(self.broker.raft_error(e).to_proto());
                    return result;
                }
                None => break,
            }
        }
        if timed_out {
            result.error = Some(
                NodeError::Timeout {
                    what: format!("replication of {}/{}", p.topic, p.partition),
                    ms: timeout.as_millis() as u64,
                }
                .to_proto(),
            );
        } else if let Some(e) = written.invalid {
            result.error = Some(e.to_proto());
        }
        result
    }

    async fn fetch_partition_now(
        &self,
        p: &pb::PartitionFetch,
        max_bytes: u32,
    ) -> Result<pb::PartitionFetchResult> {
        let r = self.broker.local(&p.topic, p.partition)?;
        let hwm = r.group.high_watermark();
        let limit = if p.max_bytes == 0 {
            max_bytes
        } else {
            p.max_bytes.min(max_bytes)
        };
        let read = r.group.with_log(|log| {
            let start = log.log_start_offset();
            if p.offset < start || p.offset > hwm {
                return Err(NodeError::from(
                    skein_storage::StorageError::OffsetOutOfRange {
                        requested: p.offset,
                        start,
                        end: hwm,
                    },
                ));
            }
            let s = log.read_upto(p.offset, u64::from(limit), hwm)?;
            Ok((s, start))
        });
        let (slice, start) = read.await?;
        Ok(pb::PartitionFetchResult {
            topic: p.topic.clone(),
            partition: p.partition,
            error: None,
            high_watermark: hwm,
            log_start_offset: start,
            next_offset: slice.next_offset,
            records: slice.bytes,
        })
    }

    /// One fetch round: answers at once when any partition has data (or `min_bytes` are there),
    /// otherwise waits for the high watermarks to move, up to `max_wait`.
    async fn fetch_inner(&self, req: &pb::FetchRequest) -> Result<pb::FetchResponse> {
        self.check_ready()?;
        let limits = &self.broker.config.limits;
        let max_bytes = if req.max_bytes == 0 {
            limits.fetch_bytes_max
        } else {
            req.max_bytes.min(limits.fetch_bytes_max)
        };
        let wait = Duration::from_millis(u64::from(req.max_wait_ms)).min(limits.fetch_wait_max);
        let deadline = tokio::time::Instant::now() + wait;
        let min_bytes = req.min_bytes.max(1) as usize;
        // The partitions' Raft metrics, to wait on while there is nothing to return. A receiver
        // cloned from the group's starts "unseen", so `changed()` on a fresh clone returns at
        // once: take them once per request and wait for what matters to a fetch (see `applied`)
        // instead of any metrics change, or the long poll turns into a busy loop (it took ~80 %
        // of a node's CPU with one consumer at the tail).
        let mut watches: Vec<_> = req
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
            let mut out = Vec::with_capacity(req.partitions.len());
            let mut total = 0usize;
            let mut budget = max_bytes;
            let mut errors = false;
            for p in &req.partitions {
                match self.fetch_partition_now(p, budget.max(1)).await {
                    Ok(r) => {
                        total += r.records.len();
                        budget = budget.saturating_sub(r.records.len() as u32);
                        out.push(r);
                    }
                    Err(e) => {
                        errors = true;
                        out.push(pb::PartitionFetchResult {
                            topic: p.topic.clone(),
                            partition: p.partition,
                            error: Some(e.to_proto()),
                            next_offset: p.offset,
                            ..Default::default()
                        });
                    }
                }
            }
            let now = tokio::time::Instant::now();
            if total >= min_bytes || errors || now >= deadline || watches.is_empty() {
                self.broker.metrics.fetch_bytes.inc_by(total as u64);
                return Ok(pb::FetchResponse { partitions: out });
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

    async fn list_offset(&self, q: &pb::PartitionOffsetQuery) -> Result<pb::PartitionOffsetResult> {
        let r = self.broker.local(&q.topic, q.partition)?;
        let hwm = r.group.high_watermark();
        let spec = pb::OffsetSpec::try_from(q.spec)
            .map_err(|_| NodeError::InvalidRequest(format!("unknown offset spec {}", q.spec)))?;
        let ts = q.timestamp_ms;
        let (start, found) = r
            .group
            .with_log(|log| {
                let start = log.log_start_offset();
                let found = match spec {
                    pb::OffsetSpec::Timestamp => log.offset_for_timestamp(ts).map(Some),
                    _ => Ok(None),
                };
                (start, found)
            })
            .await;
        let offset = match spec {
            pb::OffsetSpec::Earliest => start,
            pb::OffsetSpec::Latest => hwm,
            pb::OffsetSpec::Timestamp => found?.flatten().map_or(hwm, |o| o.min(hwm)),
        };
        Ok(pb::PartitionOffsetResult {
            topic: q.topic.clone(),
            partition: q.partition,
            error: None,
            offset,
            log_start_offset: start,
            high_watermark: hwm,
        })
    }
}

#[tonic::async_trait]
impl pb::metadata_service_server::MetadataService for ClientApi {
    async fn metadata(
        &self,
        req: Request<pb::MetadataRequest>,
    ) -> Result<Response<pb::MetadataResponse>, Status> {
        let req = req.into_inner();
        let meta = self.broker.metadata();
        let names: Vec<String> = if req.topics.is_empty() {
            meta.topics.keys().cloned().collect()
        } else {
            req.topics
        };
        let me = self.broker.node_id();
        let nodes = meta
            .nodes
            .iter()
            .map(|(id, n)| pb::NodeInfo {
                node_id: *id,
                client_addr: n.client_addr.clone(),
                peer_addr: n.peer_addr.clone(),
                ready: if *id == me {
                    self.broker.not_ready_reason().is_none()
                } else {
                    true
                },
            })
            .collect();
        Ok(Response::new(pb::MetadataResponse {
            nodes,
            topics: names.iter().map(|n| self.topic_info(n)).collect(),
            controller_id: self.broker.meta.leader().unwrap_or(0),
            cluster_id: meta.cluster_id(),
        }))
    }

    async fn create_topic(
        &self,
        req: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let topic = self.create_topic_inner(req.into_inner()).await?;
        Ok(Response::new(pb::CreateTopicResponse {
            topic: Some(topic),
        }))
    }

    async fn delete_topic(
        &self,
        req: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        self.check_ready()?;
        let name = req.into_inner().name;
        validate_topic_name(&name)?;
        if name == crate::groups::OFFSETS_TOPIC {
            return Err(NodeError::InvalidRequest(format!("{name} holds consumer groups' committed offsets and cannot be deleted; delete groups with `skein group delete`")).into());
        }
        let cmd = MetaCommand::DeleteTopic { name: name.clone() };
        match self
            .broker
            .propose_patiently(&cmd, Duration::from_secs(10))
            .await?
        {
            MetaOutcome::Ok => Ok(Response::new(pb::DeleteTopicResponse {})),
            MetaOutcome::UnknownTopic => Err(NodeError::UnknownTopic { topic: name }.into()),
            other => Err(NodeError::Internal(format!("unexpected outcome {other:?}")).into()),
        }
    }

    async fn describe_cluster(
        &self,
        _req: Request<pb::DescribeClusterRequest>,
    ) -> Result<Response<pb::DescribeClusterResponse>, Status> {
        let meta = self.broker.metadata();
        let me = self.broker.node_id();
        let statuses = join_all(meta.nodes.keys().map(|id| self.broker.node_status(*id))).await;
        let nodes = meta
            .nodes
            .iter()
            .zip(statuses)
            .map(|((id, n), st)| pb::NodeInfo {
                node_id: *id,
                client_addr: n.client_addr.clone(),
                peer_addr: n.peer_addr.clone(),
                ready: st.is_some_and(|s| s.ready),
            })
            .collect();
        Ok(Response::new(pb::DescribeClusterResponse {
            nodes,
            controller_id: self.broker.meta.leader().unwrap_or(0),
            cluster_id: meta.cluster_id(),
            answered_by: me,
        }))
    }
}

#[tonic::async_trait]
impl pb::produce_service_server::ProduceService for ClientApi {
    async fn produce(
        &self,
        req: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let started = Instant::now();
        let m = &self.broker.metrics;
        m.produce_requests.inc();
        self.check_ready()?;
        let req = req.into_inner();
        let timeout = if req.timeout_ms == 0 {
            self.broker.config.limits.produce_timeout
        } else {
            Duration::from_millis(u64::from(req.timeout_ms))
                .min(self.broker.config.limits.produce_timeout)
        };
        // Acks: `all` waits for the Raft commit (fsynced on a majority). `leader` is answered
        // at the same point: a Raft leader cannot acknowledge an entry before it commits without
        // risking its loss, and Skein never acknowledges a write it could lose.
        let results = join_all(
            req.partitions
                .into_iter()
                .map(|p| self.produce_partition(p, timeout)),
        )
        .await;
        if results.iter().any(|r| r.error.is_some()) {
            m.produce_errors.inc();
        }
        m.produce_latency.observe(started.elapsed().as_secs_f64());
        Ok(Response::new(pb::ProduceResponse {
            partitions: results,
        }))
    }

    async fn init_producer_id(
        &self,
        _req: Request<pb::InitProducerIdRequest>,
    ) -> Result<Response<pb::InitProducerIdResponse>, Status> {
        self.check_ready()?;
        match self
            .broker
            .propose_patiently(
                &MetaCommand::AllocateProducerIds { count: 1 },
                Duration::from_secs(10),
            )
            .await?
        {
            MetaOutcome::ProducerIds { first } => Ok(Response::new(pb::InitProducerIdResponse {
                producer_id: first,
                producer_epoch: 0,
            })),
            other => Err(NodeError::Internal(format!("unexpected outcome {other:?}")).into()),
        }
    }
}

type FetchStream = Pin<Box<dyn Stream<Item = Result<pb::FetchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::fetch_service_server::FetchService for ClientApi {
    async fn fetch(
        &self,
        req: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let started = Instant::now();
        self.broker.metrics.fetch_requests.inc();
        let r = self.fetch_inner(&req.into_inner()).await;
        self.broker
            .metrics
            .fetch_latency
            .observe(started.elapsed().as_secs_f64());
        Ok(Response::new(r?))
    }

    type FetchStreamStream = FetchStream;

    async fn fetch_stream(
        &self,
        req: Request<pb::FetchRequest>,
    ) -> Result<Response<Self::FetchStreamStream>, Status> {
        self.check_ready()?;
        let mut req = req.into_inner();
        if req.max_wait_ms == 0 {
            req.max_wait_ms = 500;
        }
        let (tx, rx) = mpsc::channel::<Result<pb::FetchResponse, Status>>(4);
        let api = self.clone();
        tokio::spawn(async move {
            loop {
                let r = api.fetch_inner(&req).await;
                let resp = match r {
                    Ok(resp) => resp,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                // Advance each partition past what was sent.
                let mut any = false;
                for (p, r) in req.partitions.iter_mut().zip(&resp.partitions) {
                    if r.error.is_none() && r.next_offset > p.offset {
                        p.offset = r.next_offset;
                    }
                    any |= !r.records.is_empty() || r.error.is_some();
                }
                api.broker.metrics.fetch_requests.inc();
                if any && tx.send(Ok(resp)).await.is_err() {
                    return;
                }
                if tx.is_closed()
                    || api
                        .broker
                        .stopping
                        .load(std::sync::atomic::Ordering::Acquire)
                {
                    return;
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_offsets(
        &self,
        req: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        self.check_ready()?;
        let req = req.into_inner();
        let mut out = Vec::with_capacity(req.partitions.len());
        for q in &req.partitions {
            out.push(match self.list_offset(q).await {
                Ok(r) => r,
                Err(e) => pb::PartitionOffsetResult {
                    topic: q.topic.clone(),
                    partition: q.partition,
                    error: Some(e.to_proto()),
                    ..Default::default()
                },
            });
        }
        Ok(Response::new(pb::ListOffsetsResponse { partitions: out }))
    }
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
    group: &PartitionGroup,
    batches: impl Iterator<Item = bytes::Bytes>,
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
