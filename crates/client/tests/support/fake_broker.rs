//! `FakeBroker`: a test double of `skein-node`'s client API, in-process on `127.0.0.1:0`.
//!
//! It is NOT the broker: no Raft, no disk. It keeps each partition's log as a list of stamped
//! batches in memory, shared by every fake node of a `FakeCluster`, and can be told to answer
//! wrongly on purpose (stale metadata, NOT_LEADER with or without a hint, a lost
//! acknowledgement) so that the client's retry and redirection logic can be checked against
//! real gRPC.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use skein_client::proto as pb;
use skein_client::proto::fetch_service_server::{FetchService, FetchServiceServer};
use skein_client::proto::metadata_service_server::{MetadataService, MetadataServiceServer};
use skein_client::proto::produce_service_server::{ProduceService, ProduceServiceServer};
use skein_client::ErrorCode;
use skein_storage::batch::{self, control_batch, EntryKind};
use tonic::{Request, Response, Status};

/// Injected misbehaviour of one fake node.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// NOT_LEADER answers name the leader (true) or not (false).
    pub hint_leader: bool,
    /// The first N metadata answers claim this node leads every partition (a stale view).
    pub stale_metadata_answers: usize,
    /// Produce: write the batches, then answer TIMEOUT this many times (a lost ack).
    pub lose_produce_acks: usize,
    /// Answer NOT_LEADER at the call level (gRPC status with metadata keys) instead of per
    /// partition.
    pub not_leader_as_status: bool,
    /// Insert a blank (Raft-internal) batch before every data batch in fetch answers.
    pub blank_batches_in_fetch: bool,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub metadata: usize,
    pub produce: usize,
    pub fetch: usize,
    pub list_offsets: usize,
    /// Produce batches answered from the idempotence table instead of being appended.
    pub deduplicated: usize,
}

#[derive(Debug, Default)]
struct PartitionLog {
    batches: Vec<Bytes>,
    next_offset: u64,
}

#[derive(Debug, Default)]
struct ClusterState {
    /// node id -> client address
    nodes: Vec<(u64, String)>,
    /// topic -> leader node of each partition
    topics: HashMap<String, Vec<u64>>,
    configs: HashMap<String, HashMap<String, String>>,
    logs: HashMap<(String, u32), PartitionLog>,
    /// (producer id, topic, partition, base sequence) -> base offset
    idempotence: HashMap<(i64, String, u32, i32), u64>,
    next_producer_id: i64,
    faults: HashMap<u64, Faults>,
    counters: HashMap<u64, Counters>,
}

/// A set of fake nodes sharing topics and logs.
#[derive(Debug, Clone, Default)]
pub struct FakeCluster {
    state: Arc<Mutex<ClusterState>>,
}

impl FakeCluster {
    fn lock(&self) -> MutexGuard<'_, ClusterState> {
        self.state.lock().expect("fake cluster lock")
    }

    /// Starts a fake node with id `node_id` on `127.0.0.1:0` and returns its address.
    pub async fn start_node(&self, node_id: u64) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr: SocketAddr = listener.local_addr().expect("local addr");
        let addr = addr.to_string();
        {
            let mut s = self.lock();
            s.nodes.push((node_id, addr.clone()));
            s.faults.entry(node_id).or_insert(Faults {
                hint_leader: true,
                ..Faults::default()
            });
            s.counters.entry(node_id).or_default();
        }
        let node = FakeNode {
            node_id,
            cluster: self.clone(),
        };
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(MetadataServiceServer::new(node.clone()))
                .add_service(ProduceServiceServer::new(node.clone()))
                .add_service(FetchServiceServer::new(node))
                .serve_with_incoming(incoming)
                .await;
        });
        addr
    }

    pub fn create_topic(&self, name: &str, leaders: &[u64]) {
        let mut s = self.lock();
        s.topics.insert(name.to_string(), leaders.to_vec());
        for p in 0..leaders.len() as u32 {
            s.logs.entry((name.to_string(), p)).or_default();
        }
    }

    pub fn set_leader(&self, topic: &str, partition: u32, node: u64) {
        let mut s = self.lock();
        if let Some(l) = s.topics.get_mut(topic) {
            l[partition as usize] = node;
        }
    }

    pub fn set_faults(&self, node: u64, faults: Faults) {
        self.lock().faults.insert(node, faults);
    }

    pub fn counters(&self, node: u64) -> Counters {
        let s = self.lock();
        let c = &s.counters[&node];
        Counters {
            metadata: c.metadata,
            produce: c.produce,
            fetch: c.fetch,
            list_offsets: c.list_offsets,
            deduplicated: c.deduplicated,
        }
    }

    /// The values stored in a partition, in offset order, with their offsets.
    pub fn values(&self, topic: &str, partition: u32) -> Vec<(u64, Vec<u8>)> {
        let s = self.lock();
        let mut out = Vec::new();
        if let Some(log) = s.logs.get(&(topic.to_string(), partition)) {
            for b in &log.batches {
                let batch = batch::Batch::new(b.clone()).expect("stored batches are valid");
                let records: Vec<batch::Record> = match batch.header().compression() {
                    batch::Compression::None => batch
                        .records()
                        .expect("uncompressed")
                        .collect::<Result<_, _>>()
                        .expect("decodes"),
                    // The fake does not decompress; tests that compress read back with the
                    // consumer instead.
                    _ => Vec::new(),
                };
                for r in records {
                    out.push((r.offset, r.value.map(|v| v.to_vec()).unwrap_or_default()));
                }
            }
        }
        out
    }

    /// Appends data directly (as if another producer had written it).
    pub fn append_raw(&self, topic: &str, partition: u32, unstamped: Bytes) -> u64 {
        let mut s = self.lock();
        let log = s
            .logs
            .get_mut(&(topic.to_string(), partition))
            .expect("topic exists");
        let header = batch::validate(&unstamped).expect("valid batch");
        let base = log.next_offset;
        let mut m = BytesMut::from(&unstamped[..]);
        batch::stamp(&mut m, base, 1, log.batches.len() as u64 + 1).expect("stamp");
        log.batches.push(m.freeze());
        log.next_offset += u64::from(header.record_count);
        base
    }

    pub fn high_watermark(&self, topic: &str, partition: u32) -> u64 {
        self.lock()
            .logs
            .get(&(topic.to_string(), partition))
            .map_or(0, |l| l.next_offset)
    }
}

#[derive(Debug, Clone)]
struct FakeNode {
    node_id: u64,
    cluster: FakeCluster,
}

fn not_leader_error(s: &ClusterState, leader: u64, hint: bool) -> pb::Error {
    let addr = s
        .nodes
        .iter()
        .find(|(id, _)| *id == leader)
        .map(|(_, a)| a.clone())
        .unwrap_or_default();
    pb::Error {
        code: ErrorCode::NotLeader as i32,
        message: format!("node {leader} leads this partition"),
        leader: hint.then_some(pb::LeaderHint {
            node_id: leader,
            client_addr: addr,
        }),
    }
}

fn not_leader_status(s: &ClusterState, leader: u64, hint: bool) -> Status {
    let mut st = Status::unavailable("not the leader");
    st.metadata_mut().insert(
        "skein-error-code",
        (ErrorCode::NotLeader as i32)
            .to_string()
            .parse()
            .expect("ascii"),
    );
    if hint {
        let addr = s
            .nodes
            .iter()
            .find(|(id, _)| *id == leader)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        st.metadata_mut().insert(
            "skein-leader-id",
            leader.to_string().parse().expect("ascii"),
        );
        st.metadata_mut()
            .insert("skein-leader-addr", addr.parse().expect("ascii"));
    }
    st
}

fn partition_error(code: ErrorCode, message: &str) -> Option<pb::Error> {
    Some(pb::Error {
        code: code as i32,
        message: message.into(),
        leader: None,
    })
}

#[tonic::async_trait]
impl MetadataService for FakeNode {
    async fn metadata(
        &self,
        request: Request<pb::MetadataRequest>,
    ) -> Result<Response<pb::MetadataResponse>, Status> {
        let mut s = self.cluster.lock();
        let stale = {
            let f = s.faults.entry(self.node_id).or_default();
            if f.stale_metadata_answers > 0 {
                f.stale_metadata_answers -= 1;
                true
            } else {
                false
            }
        };
        s.counters.entry(self.node_id).or_default().metadata += 1;
        let asked = request.into_inner().topics;
        let names: Vec<String> = if asked.is_empty() {
            s.topics.keys().cloned().collect()
        } else {
            asked
        };
        let topics = names
            .into_iter()
            .map(|name| match s.topics.get(&name) {
                Some(leaders) => pb::TopicInfo {
                    name: name.clone(),
                    partitions: leaders
                        .iter()
                        .enumerate()
                        .map(|(p, l)| pb::PartitionInfo {
                            partition: p as u32,
                            leader: if stale { self.node_id } else { *l },
                            replicas: s.nodes.iter().map(|(id, _)| *id).collect(),
                            in_sync: s.nodes.iter().map(|(id, _)| *id).collect(),
                            leader_term: 1,
                        })
                        .collect(),
                    replication_factor: s.nodes.len() as u32,
                    config: s.configs.get(&name).cloned().unwrap_or_default(),
                    error: None,
                },
                None => pb::TopicInfo {
                    name,
                    error: partition_error(ErrorCode::UnknownTopicOrPartition, "no such topic"),
                    ..Default::default()
                },
            })
            .collect();
        Ok(Response::new(pb::MetadataResponse {
            nodes: s
                .nodes
                .iter()
                .map(|(id, addr)| pb::NodeInfo {
                    node_id: *id,
                    client_addr: addr.clone(),
                    peer_addr: String::new(),
                    ready: true,
                })
                .collect(),
            topics,
            controller_id: 1,
            cluster_id: "fake".into(),
        }))
    }

    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let r = request.into_inner();
        let mut s = self.cluster.lock();
        if s.topics.contains_key(&r.name) {
            let mut st = Status::already_exists("topic exists");
            st.metadata_mut().insert(
                "skein-error-code",
                (ErrorCode::TopicAlreadyExists as i32)
                    .to_string()
                    .parse()
                    .expect("ascii"),
            );
            return Err(st);
        }
        let n = if r.partitions == 0 { 3 } else { r.partitions };
        let node_ids: Vec<u64> = s.nodes.iter().map(|(id, _)| *id).collect();
        let leaders: Vec<u64> = (0..n as usize)
            .map(|p| node_ids[p % node_ids.len()])
            .collect();
        s.topics.insert(r.name.clone(), leaders.clone());
        s.configs.insert(r.name.clone(), r.config.clone());
        for p in 0..n {
            s.logs.entry((r.name.clone(), p)).or_default();
        }
        Ok(Response::new(pb::CreateTopicResponse {
            topic: Some(pb::TopicInfo {
                name: r.name,
                partitions: leaders
                    .iter()
                    .enumerate()
                    .map(|(p, l)| pb::PartitionInfo {
                        partition: p as u32,
                        leader: *l,
                        replicas: vec![*l],
                        in_sync: vec![*l],
                        leader_term: 1,
                    })
                    .collect(),
                replication_factor: 1,
                config: r.config,
                error: None,
            }),
        }))
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let name = request.into_inner().name;
        let mut s = self.cluster.lock();
        if s.topics.remove(&name).is_none() {
            let mut st = Status::not_found("no such topic");
            st.metadata_mut().insert(
                "skein-error-code",
                (ErrorCode::UnknownTopicOrPartition as i32)
                    .to_string()
                    .parse()
                    .expect("ascii"),
            );
            return Err(st);
        }
        s.logs.retain(|(t, _), _| *t != name);
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }

    async fn describe_cluster(
        &self,
        _request: Request<pb::DescribeClusterRequest>,
    ) -> Result<Response<pb::DescribeClusterResponse>, Status> {
        let s = self.cluster.lock();
        Ok(Response::new(pb::DescribeClusterResponse {
            nodes: s
                .nodes
                .iter()
                .map(|(id, addr)| pb::NodeInfo {
                    node_id: *id,
                    client_addr: addr.clone(),
                    peer_addr: format!("peer-{id}"),
                    ready: true,
                })
                .collect(),
            controller_id: 1,
            cluster_id: "fake".into(),
            answered_by: self.node_id,
        }))
    }
}

#[tonic::async_trait]
impl ProduceService for FakeNode {
    async fn produce(
        &self,
        request: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let r = request.into_inner();
        let mut s = self.cluster.lock();
        s.counters.entry(self.node_id).or_default().produce += 1;
        let faults = s.faults.get(&self.node_id).cloned().unwrap_or_default();
        let mut results = Vec::new();
        let mut lose_ack = false;
        for part in r.partitions {
            let leader = s
                .topics
                .get(&part.topic)
                .and_then(|l| l.get(part.partition as usize))
                .copied();
            let Some(leader) = leader else {
                results.push(pb::PartitionProduceResult {
                    topic: part.topic,
                    partition: part.partition,
                    error: partition_error(ErrorCode::UnknownTopicOrPartition, "no such partition"),
                    base_offsets: vec![],
                });
                continue;
            };
            if leader != self.node_id {
                if faults.not_leader_as_status {
                    return Err(not_leader_status(&s, leader, faults.hint_leader));
                }
                let error = Some(not_leader_error(&s, leader, faults.hint_leader));
                results.push(pb::PartitionProduceResult {
                    topic: part.topic,
                    partition: part.partition,
                    error,
                    base_offsets: vec![],
                });
                continue;
            }
            let mut offsets = Vec::new();
            let mut error = None;
            for b in part.batches {
                let header = match batch::validate(&b) {
                    Ok(h) => h,
                    Err(e) => {
                        error = partition_error(ErrorCode::CorruptBatch, &e.to_string());
                        break;
                    }
                };
                let key = (
                    header.producer_id,
                    part.topic.clone(),
                    part.partition,
                    header.base_sequence,
                );
                if header.producer_id >= 0 {
                    if let Some(off) = s.idempotence.get(&key).copied() {
                        s.counters.entry(self.node_id).or_default().deduplicated += 1;
                        offsets.push(off);
                        continue;
                    }
                }
                let log = s
                    .logs
                    .entry((part.topic.clone(), part.partition))
                    .or_default();
                let base = log.next_offset;
                let mut m = BytesMut::from(&b[..]);
                batch::stamp(&mut m, base, 1, log.batches.len() as u64 + 1).expect("stamp");
                log.batches.push(m.freeze());
                log.next_offset += u64::from(header.record_count);
                if header.producer_id >= 0 {
                    s.idempotence.insert(key, base);
                }
                offsets.push(base);
            }
            results.push(pb::PartitionProduceResult {
                topic: part.topic,
                partition: part.partition,
                error,
                base_offsets: offsets,
            });
            if faults.lose_produce_acks > 0 {
                lose_ack = true;
            }
        }
        if lose_ack {
            if let Some(f) = s.faults.get_mut(&self.node_id) {
                f.lose_produce_acks -= 1;
            }
            let mut st = Status::unavailable("replication timed out");
            st.metadata_mut().insert(
                "skein-error-code",
                (ErrorCode::Timeout as i32)
                    .to_string()
                    .parse()
                    .expect("ascii"),
            );
            return Err(st);
        }
        Ok(Response::new(pb::ProduceResponse {
            partitions: results,
        }))
    }

    async fn init_producer_id(
        &self,
        _request: Request<pb::InitProducerIdRequest>,
    ) -> Result<Response<pb::InitProducerIdResponse>, Status> {
        let mut s = self.cluster.lock();
        s.next_producer_id += 1;
        Ok(Response::new(pb::InitProducerIdResponse {
            producer_id: 1000 + s.next_producer_id,
            producer_epoch: 0,
        }))
    }
}

type FetchStream = Pin<Box<dyn Stream<Item = Result<pb::FetchResponse, Status>> + Send>>;

impl FakeNode {
    fn fetch_now(&self, r: &pb::FetchRequest) -> Result<(pb::FetchResponse, usize), Status> {
        let mut s = self.cluster.lock();
        s.counters.entry(self.node_id).or_default().fetch += 1;
        let faults = s.faults.get(&self.node_id).cloned().unwrap_or_default();
        let mut total = 0;
        let mut out = Vec::new();
        for p in &r.partitions {
            let leader = s
                .topics
                .get(&p.topic)
                .and_then(|l| l.get(p.partition as usize))
                .copied();
            let Some(leader) = leader else {
                out.push(pb::PartitionFetchResult {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    error: partition_error(ErrorCode::UnknownTopicOrPartition, "no such partition"),
                    ..Default::default()
                });
                continue;
            };
            if leader != self.node_id {
                if faults.not_leader_as_status {
                    return Err(not_leader_status(&s, leader, faults.hint_leader));
                }
                out.push(pb::PartitionFetchResult {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    error: Some(not_leader_error(&s, leader, faults.hint_leader)),
                    ..Default::default()
                });
                continue;
            }
            let log = s
                .logs
                .get(&(p.topic.clone(), p.partition))
                .expect("log exists");
            if p.offset > log.next_offset {
                out.push(pb::PartitionFetchResult {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    error: partition_error(ErrorCode::OffsetOutOfRange, "above the high watermark"),
                    high_watermark: log.next_offset,
                    ..Default::default()
                });
                continue;
            }
            let mut records = BytesMut::new();
            let mut next = p.offset;
            for b in &log.batches {
                let h = batch::BatchHeader::parse(b).expect("valid");
                if h.next_offset() <= p.offset {
                    continue;
                }
                if faults.blank_batches_in_fetch {
                    let mut blank = BytesMut::from(&control_batch(EntryKind::Blank, 0, b"")[..]);
                    batch::stamp(&mut blank, h.base_offset, 2, 0).expect("stamp");
                    records.extend_from_slice(&blank);
                }
                records.extend_from_slice(b);
                next = h.next_offset();
            }
            total += records.len();
            out.push(pb::PartitionFetchResult {
                topic: p.topic.clone(),
                partition: p.partition,
                error: None,
                high_watermark: log.next_offset,
                log_start_offset: 0,
                next_offset: next,
                records: records.freeze(),
            });
        }
        Ok((pb::FetchResponse { partitions: out }, total))
    }
}

#[tonic::async_trait]
impl FetchService for FakeNode {
    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let r = request.into_inner();
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(u64::from(r.max_wait_ms).min(2_000));
        loop {
            let (response, bytes) = self.fetch_now(&r)?;
            if bytes > 0 || tokio::time::Instant::now() >= deadline {
                return Ok(Response::new(response));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    type FetchStreamStream = FetchStream;

    async fn fetch_stream(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<Self::FetchStreamStream>, Status> {
        let (response, _) = self.fetch_now(&request.into_inner())?;
        Ok(Response::new(Box::pin(futures_util::stream::iter(vec![
            Ok(response),
        ]))))
    }

    async fn list_offsets(
        &self,
        request: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        let r = request.into_inner();
        let mut s = self.cluster.lock();
        s.counters.entry(self.node_id).or_default().list_offsets += 1;
        let faults = s.faults.get(&self.node_id).cloned().unwrap_or_default();
        let mut out = Vec::new();
        for q in r.partitions {
            let leader = s
                .topics
                .get(&q.topic)
                .and_then(|l| l.get(q.partition as usize))
                .copied();
            let Some(leader) = leader else {
                out.push(pb::PartitionOffsetResult {
                    topic: q.topic,
                    partition: q.partition,
                    error: partition_error(ErrorCode::UnknownTopicOrPartition, "no such partition"),
                    ..Default::default()
                });
                continue;
            };
            if leader != self.node_id {
                out.push(pb::PartitionOffsetResult {
                    topic: q.topic,
                    partition: q.partition,
                    error: Some(not_leader_error(&s, leader, faults.hint_leader)),
                    ..Default::default()
                });
                continue;
            }
            let log = s
                .logs
                .get(&(q.topic.clone(), q.partition))
                .expect("log exists");
            let hw = log.next_offset;
            let offset = match pb::OffsetSpec::try_from(q.spec).unwrap_or(pb::OffsetSpec::Latest) {
                pb::OffsetSpec::Earliest => 0,
                pb::OffsetSpec::Latest => hw,
                pb::OffsetSpec::Timestamp => log
                    .batches
                    .iter()
                    .map(|b| batch::BatchHeader::parse(b).expect("valid"))
                    .find(|h| h.max_timestamp >= q.timestamp_ms)
                    .map_or(hw, |h| h.base_offset),
            };
            out.push(pb::PartitionOffsetResult {
                topic: q.topic,
                partition: q.partition,
                error: None,
                offset,
                log_start_offset: 0,
                high_watermark: hw,
            });
        }
        Ok(Response::new(pb::ListOffsetsResponse { partitions: out }))
    }
}
