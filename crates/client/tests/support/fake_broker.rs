//! `FakeBroker`: a test double of `skein-node`'s client API, in-process on `127.0.0.1:0`.
//!
//! It is NOT the broker: no Raft, no disk. It keeps each partition's log as a list of stamped
//! batches in memory, shared by every fake node of a `FakeCluster`, and can be told to answer
//! wrongly on purpose (stale metadata, NOT_LEADER with or without a hint, a lost
//! acknowledgement) so that the client's retry and redirection logic can be checked against
//! real gRPC.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use skein_client::proto as pb;
use skein_client::proto::fetch_service_server::{FetchService, FetchServiceServer};
use skein_client::proto::group_service_server::{GroupService, GroupServiceServer};
use skein_client::proto::metadata_service_server::{MetadataService, MetadataServiceServer};
use skein_client::proto::produce_service_server::{ProduceService, ProduceServiceServer};
use skein_client::ErrorCode;
use skein_record::{self as batch, internal_batch, InternalKind};
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
    /// Group calls answered NOT_COORDINATOR.
    pub not_coordinator: usize,
    pub joins: usize,
    pub syncs: usize,
    pub heartbeats: usize,
    pub commits: usize,
    pub leaves: usize,
    /// The largest sum of batch bytes seen in one produce request.
    pub produce_request_bytes_max: usize,
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
    /// Consumer groups (the coordinator's state; shared, only `group_coordinator` serves it).
    groups: BTreeMap<String, FakeGroup>,
    /// Node that coordinates every group (0: the first node started).
    group_coordinator: u64,
    next_member: u64,
    /// The gRPC decoding limit of nodes started from now on (tonic's 4 MiB when `None`), like
    /// the broker's `limits.request_bytes_max`.
    request_bytes_max: Option<usize>,
    /// Whether metadata answers advertise `request_bytes_max` (as the broker does); an older
    /// broker does not.
    advertise_request_bytes_max: bool,
}

#[derive(Debug, Clone)]
pub struct FakeMember {
    pub instance_id: String,
    pub client_id: String,
    pub topics: Vec<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    last_seen: tokio::time::Instant,
    /// Joined in the current rebalance.
    rejoined: bool,
}

#[derive(Debug, Default)]
pub struct FakeGroup {
    pub generation: u64,
    pub members: BTreeMap<String, FakeMember>,
    pub rebalancing: bool,
    deadline: Option<tokio::time::Instant>,
    pub strategy: i32,
    /// member -> (topic, partition)
    pub assignment: BTreeMap<String, Vec<(String, u32)>>,
    /// (topic, partition) -> (offset, metadata)
    pub committed: BTreeMap<(String, u32), (u64, String)>,
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
        let mut produce = ProduceServiceServer::new(node.clone());
        if let Some(max) = self.lock().request_bytes_max {
            produce = produce.max_decoding_message_size(max);
        }
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(MetadataServiceServer::new(node.clone()))
                .add_service(produce)
                .add_service(FetchServiceServer::new(node.clone()))
                .add_service(GroupServiceServer::new(node))
                .serve_with_incoming(incoming)
                .await;
        });
        addr
    }

    /// Nodes started after this refuse produce requests larger than `max` bytes (gRPC
    /// OUT_OF_RANGE "decoded message length too large", as the broker does).
    pub fn set_request_bytes_max(&self, max: usize) {
        self.lock().request_bytes_max = Some(max);
    }

    /// Metadata answers from now on advertise the limit of [`Self::set_request_bytes_max`], as
    /// the broker does (without this call the nodes behave like an older broker, which does
    /// not).
    pub fn advertise_request_bytes_max(&self) {
        self.lock().advertise_request_bytes_max = true;
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
            not_coordinator: c.not_coordinator,
            joins: c.joins,
            syncs: c.syncs,
            heartbeats: c.heartbeats,
            commits: c.commits,
            leaves: c.leaves,
            produce_request_bytes_max: c.produce_request_bytes_max,
        }
    }

    /// Makes `node` the coordinator of every group.
    pub fn set_group_coordinator(&self, node: u64) {
        self.lock().group_coordinator = node;
    }

    /// Starts a rebalance of `group` (as if a member had joined): heartbeats answer
    /// REBALANCE_IN_PROGRESS until every member has joined again.
    pub fn trigger_rebalance(&self, group: &str) {
        let mut s = self.lock();
        if let Some(g) = s.groups.get_mut(group) {
            start_rebalance(g);
        }
    }

    /// Removes a member as if its session had expired (it gets UNKNOWN_MEMBER_ID next).
    pub fn expire_member(&self, group: &str, member: &str) {
        let mut s = self.lock();
        if let Some(g) = s.groups.get_mut(group) {
            g.members.remove(member);
            g.assignment.remove(member);
            if !g.members.is_empty() {
                start_rebalance(g);
            }
        }
    }

    pub fn generation(&self, group: &str) -> u64 {
        self.lock().groups.get(group).map_or(0, |g| g.generation)
    }

    pub fn members(&self, group: &str) -> Vec<String> {
        self.lock()
            .groups
            .get(group)
            .map(|g| g.members.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Partitions of `topic` assigned to `member`.
    pub fn assigned(&self, group: &str, member: &str) -> Vec<u32> {
        self.lock()
            .groups
            .get(group)
            .and_then(|g| g.assignment.get(member))
            .map(|a| a.iter().map(|(_, p)| *p).collect())
            .unwrap_or_default()
    }

    pub fn committed(&self, group: &str, topic: &str, partition: u32) -> Option<u64> {
        self.lock()
            .groups
            .get(group)
            .and_then(|g| g.committed.get(&(topic.to_string(), partition)))
            .map(|(o, _)| *o)
    }

    pub fn set_committed(&self, group: &str, topic: &str, partition: u32, offset: u64) {
        self.lock()
            .groups
            .entry(group.to_string())
            .or_default()
            .committed
            .insert((topic.to_string(), partition), (offset, String::new()));
    }

    /// The values stored in a partition, in offset order, with their offsets.
    pub fn values(&self, topic: &str, partition: u32) -> Vec<(u64, Vec<u8>)> {
        let s = self.lock();
        let mut out = Vec::new();
        if let Some(log) = s.logs.get(&(topic.to_string(), partition)) {
            for b in &log.batches {
                let batch = batch::Batch::new(b.clone()).expect("stored batches are valid");
                let records: Vec<batch::Record> = batch
                    .records()
                    .expect("decompresses")
                    .collect::<Result<_, _>>()
                    .expect("decodes");
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
        batch::stamp(&mut m, base, 1).expect("stamp");
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
            request_bytes_max: match s.request_bytes_max {
                Some(max) if s.advertise_request_bytes_max => max as u64,
                _ => 0,
            },
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

    async fn alter_topic_config(
        &self,
        _request: Request<pb::AlterTopicConfigRequest>,
    ) -> Result<Response<pb::AlterTopicConfigResponse>, Status> {
        Err(Status::unimplemented(
            "the fake broker does not alter topic configs",
        ))
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
        let bytes: usize = r
            .partitions
            .iter()
            .flat_map(|p| p.batches.iter().map(|b| b.len()))
            .sum();
        let counters = s.counters.entry(self.node_id).or_default();
        counters.produce += 1;
        counters.produce_request_bytes_max = counters.produce_request_bytes_max.max(bytes);
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
                batch::stamp(&mut m, base, 1).expect("stamp");
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
                    let mut blank =
                        BytesMut::from(&internal_batch(InternalKind::Blank, 0, b"")[..]);
                    batch::stamp(&mut blank, h.base_offset, 2).expect("stamp");
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

// ---------------------------------------------------------------------------------------------
// GroupService: a simplified coordinator (in memory, no __consumer_offsets).

fn group_status(code: ErrorCode, message: &str) -> Status {
    let mut st = Status::failed_precondition(message.to_string());
    st.metadata_mut().insert(
        "skein-error-code",
        (code as i32).to_string().parse().expect("ascii"),
    );
    st
}

fn group_error(code: ErrorCode, message: &str) -> Option<pb::Error> {
    partition_error(code, message)
}

fn start_rebalance(g: &mut FakeGroup) {
    g.rebalancing = true;
    let timeout = g
        .members
        .values()
        .map(|m| m.rebalance_timeout)
        .max()
        .unwrap_or(Duration::from_secs(5));
    g.deadline = Some(tokio::time::Instant::now() + timeout);
    for m in g.members.values_mut() {
        m.rejoined = false;
    }
}

fn expire_members(g: &mut FakeGroup) {
    let now = tokio::time::Instant::now();
    let before = g.members.len();
    g.members
        .retain(|_, m| now.duration_since(m.last_seen) <= m.session_timeout);
    if g.members.len() != before {
        let members = g.members.clone();
        g.assignment.retain(|id, _| members.contains_key(id));
        if !g.members.is_empty() && !g.rebalancing {
            start_rebalance(g);
        }
    }
}

/// Completes the rebalance: drops members that did not rejoin, computes the assignment.
fn complete_rebalance(g: &mut FakeGroup, topics: &HashMap<String, Vec<u64>>) {
    g.members.retain(|_, m| m.rejoined);
    let members: Vec<String> = g.members.keys().cloned().collect();
    let mut all: Vec<(String, u32)> = Vec::new();
    let mut subscribed: Vec<String> = g.members.values().flat_map(|m| m.topics.clone()).collect();
    subscribed.sort();
    subscribed.dedup();
    for t in &subscribed {
        if let Some(leaders) = topics.get(t) {
            all.extend((0..leaders.len() as u32).map(|p| (t.clone(), p)));
        }
    }
    let mut next: BTreeMap<String, Vec<(String, u32)>> =
        members.iter().map(|m| (m.clone(), Vec::new())).collect();
    if !members.is_empty() {
        match pb::AssignmentStrategy::try_from(g.strategy).unwrap_or(pb::AssignmentStrategy::Range)
        {
            pb::AssignmentStrategy::RoundRobin => {
                for (i, tp) in all.iter().enumerate() {
                    next.get_mut(&members[i % members.len()])
                        .expect("member")
                        .push(tp.clone());
                }
            }
            pb::AssignmentStrategy::Range => {
                for t in &subscribed {
                    let parts: Vec<&(String, u32)> = all.iter().filter(|(x, _)| x == t).collect();
                    let n = parts.len();
                    let m = members.len();
                    let mut i = 0;
                    for (k, member) in members.iter().enumerate() {
                        let count = n / m + usize::from(k < n % m);
                        for tp in &parts[i..i + count] {
                            next.get_mut(member).expect("member").push((*tp).clone());
                        }
                        i += count;
                    }
                }
            }
            pb::AssignmentStrategy::CooperativeSticky => {
                let n = all.len();
                let m = members.len();
                let quota = |k: usize| n / m + usize::from(k < n % m);
                let mut taken: Vec<(String, u32)> = Vec::new();
                // Keep what each member owned, up to its quota.
                for (k, member) in members.iter().enumerate() {
                    if let Some(prev) = g.assignment.get(member) {
                        for tp in prev {
                            if all.contains(tp)
                                && !taken.contains(tp)
                                && next[member].len() < quota(k)
                            {
                                next.get_mut(member).expect("member").push(tp.clone());
                                taken.push(tp.clone());
                            }
                        }
                    }
                }
                for tp in &all {
                    if taken.contains(tp) {
                        continue;
                    }
                    let (k, member) = members
                        .iter()
                        .enumerate()
                        .filter(|(k, mm)| next[*mm].len() < quota(*k))
                        .min_by_key(|(_, mm)| next[*mm].len())
                        .expect("quota left");
                    let _ = k;
                    next.get_mut(member).expect("member").push(tp.clone());
                }
            }
        }
    }
    for v in next.values_mut() {
        v.sort();
    }
    g.assignment = next;
    g.generation += 1;
    g.rebalancing = false;
    g.deadline = None;
}

impl FakeNode {
    /// Err(NOT_COORDINATOR status naming the coordinator) unless this node coordinates.
    fn check_coordinator(&self, s: &mut ClusterState) -> Result<(), Status> {
        let coordinator = coordinator_of(s);
        if coordinator == self.node_id {
            return Ok(());
        }
        s.counters.entry(self.node_id).or_default().not_coordinator += 1;
        let addr = s
            .nodes
            .iter()
            .find(|(id, _)| *id == coordinator)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        let mut st = group_status(ErrorCode::NotCoordinator, "not the coordinator");
        st.metadata_mut().insert(
            "skein-leader-id",
            coordinator.to_string().parse().expect("ascii"),
        );
        st.metadata_mut()
            .insert("skein-leader-addr", addr.parse().expect("ascii"));
        Err(st)
    }
}

fn coordinator_of(s: &ClusterState) -> u64 {
    if s.group_coordinator != 0 {
        s.group_coordinator
    } else {
        s.nodes.first().map_or(0, |(id, _)| *id)
    }
}

fn group_state(g: &FakeGroup) -> &'static str {
    if g.members.is_empty() {
        "Empty"
    } else if g.rebalancing {
        "PreparingRebalance"
    } else {
        "Stable"
    }
}

fn to_topic_partitions(v: &[(String, u32)]) -> Vec<pb::TopicPartitions> {
    let mut by: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (t, p) in v {
        by.entry(t.clone()).or_default().push(*p);
    }
    by.into_iter()
        .map(|(topic, partitions)| pb::TopicPartitions { topic, partitions })
        .collect()
}

#[tonic::async_trait]
impl GroupService for FakeNode {
    async fn find_coordinator(
        &self,
        _request: Request<pb::FindCoordinatorRequest>,
    ) -> Result<Response<pb::FindCoordinatorResponse>, Status> {
        let s = self.cluster.lock();
        let node_id = coordinator_of(&s);
        let client_addr = s
            .nodes
            .iter()
            .find(|(id, _)| *id == node_id)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        Ok(Response::new(pb::FindCoordinatorResponse {
            node_id,
            client_addr,
        }))
    }

    async fn join_group(
        &self,
        request: Request<pb::JoinGroupRequest>,
    ) -> Result<Response<pb::JoinGroupResponse>, Status> {
        let r = request.into_inner();
        let member_id;
        {
            let mut guard = self.cluster.lock();
            let s = &mut *guard;
            self.check_coordinator(s)?;
            s.counters.entry(self.node_id).or_default().joins += 1;
            if r.group.is_empty() {
                return Ok(Response::new(pb::JoinGroupResponse {
                    error: group_error(ErrorCode::InvalidGroupId, "empty group id"),
                    ..Default::default()
                }));
            }
            if !(1_000..=300_000).contains(&r.session_timeout_ms) {
                return Ok(Response::new(pb::JoinGroupResponse {
                    error: group_error(ErrorCode::InvalidSessionTimeout, "out of range"),
                    ..Default::default()
                }));
            }
            s.next_member += 1;
            let fresh = format!("member-{}", s.next_member);
            let g = s.groups.entry(r.group.clone()).or_default();
            expire_members(g);
            g.strategy = r.strategy;
            let static_id = (!r.group_instance_id.is_empty())
                .then(|| {
                    g.members
                        .iter()
                        .find(|(_, m)| m.instance_id == r.group_instance_id)
                        .map(|(id, _)| id.clone())
                })
                .flatten();
            let id = if r.member_id.is_empty() {
                static_id.clone().unwrap_or(fresh)
            } else if g.members.contains_key(&r.member_id) {
                r.member_id.clone()
            } else {
                return Ok(Response::new(pb::JoinGroupResponse {
                    error: group_error(ErrorCode::UnknownMemberId, "unknown member"),
                    ..Default::default()
                }));
            };
            let now = tokio::time::Instant::now();
            let existing = g.members.get(&id).cloned();
            let unchanged = existing.as_ref().is_some_and(|m| m.topics == r.topics);
            if static_id.is_some() && unchanged && !g.rebalancing {
                // A static member coming back: same id, no rebalance.
                if let Some(m) = g.members.get_mut(&id) {
                    m.last_seen = now;
                }
                return Ok(Response::new(pb::JoinGroupResponse {
                    error: None,
                    generation: g.generation,
                    member_id: id,
                    leader_id: g.members.keys().next().cloned().unwrap_or_default(),
                    strategy: g.strategy,
                }));
            }
            if !g.rebalancing {
                start_rebalance(g);
            }
            g.members.insert(
                id.clone(),
                FakeMember {
                    instance_id: r.group_instance_id.clone(),
                    client_id: r.client_id.clone(),
                    topics: r.topics.clone(),
                    session_timeout: Duration::from_millis(u64::from(r.session_timeout_ms)),
                    rebalance_timeout: Duration::from_millis(u64::from(r.rebalance_timeout_ms)),
                    last_seen: now,
                    rejoined: true,
                },
            );
            member_id = id;
        }
        // Wait until every member has rejoined (or the rebalance timeout), like the real one.
        loop {
            {
                let mut guard = self.cluster.lock();
                let s = &mut *guard;
                let topics = s.topics.clone();
                let Some(g) = s.groups.get_mut(&r.group) else {
                    return Err(Status::internal("group vanished"));
                };
                if !g.members.contains_key(&member_id) {
                    return Ok(Response::new(pb::JoinGroupResponse {
                        error: group_error(ErrorCode::UnknownMemberId, "removed"),
                        ..Default::default()
                    }));
                }
                if g.rebalancing {
                    let all = g.members.values().all(|m| m.rejoined);
                    let late = g.deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
                    if all || late {
                        complete_rebalance(g, &topics);
                    }
                }
                if !g.rebalancing {
                    if let Some(m) = g.members.get_mut(&member_id) {
                        m.last_seen = tokio::time::Instant::now();
                    }
                    return Ok(Response::new(pb::JoinGroupResponse {
                        error: None,
                        generation: g.generation,
                        member_id: member_id.clone(),
                        leader_id: g.members.keys().next().cloned().unwrap_or_default(),
                        strategy: g.strategy,
                    }));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn sync_group(
        &self,
        request: Request<pb::SyncGroupRequest>,
    ) -> Result<Response<pb::SyncGroupResponse>, Status> {
        let r = request.into_inner();
        let mut guard = self.cluster.lock();
        let s = &mut *guard;
        self.check_coordinator(s)?;
        s.counters.entry(self.node_id).or_default().syncs += 1;
        let Some(g) = s.groups.get_mut(&r.group) else {
            return Ok(Response::new(pb::SyncGroupResponse {
                error: group_error(ErrorCode::UnknownMemberId, "no such group"),
                assignment: vec![],
            }));
        };
        let error = if !g.members.contains_key(&r.member_id) {
            group_error(ErrorCode::UnknownMemberId, "unknown member")
        } else if g.rebalancing {
            group_error(ErrorCode::RebalanceInProgress, "rebalancing")
        } else if r.generation != g.generation {
            group_error(ErrorCode::IllegalGeneration, "stale generation")
        } else {
            None
        };
        let assignment = if error.is_none() {
            to_topic_partitions(g.assignment.get(&r.member_id).map_or(&[][..], |v| v))
        } else {
            vec![]
        };
        Ok(Response::new(pb::SyncGroupResponse { error, assignment }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = request.into_inner();
        let mut guard = self.cluster.lock();
        let s = &mut *guard;
        self.check_coordinator(s)?;
        s.counters.entry(self.node_id).or_default().heartbeats += 1;
        let Some(g) = s.groups.get_mut(&r.group) else {
            return Ok(Response::new(pb::HeartbeatResponse {
                error: group_error(ErrorCode::UnknownMemberId, "no such group"),
            }));
        };
        expire_members(g);
        let error = match g.members.get_mut(&r.member_id) {
            None => group_error(ErrorCode::UnknownMemberId, "unknown member"),
            Some(m) => {
                m.last_seen = tokio::time::Instant::now();
                if g.rebalancing {
                    group_error(ErrorCode::RebalanceInProgress, "rebalancing")
                } else if r.generation != g.generation {
                    group_error(ErrorCode::IllegalGeneration, "stale generation")
                } else {
                    None
                }
            }
        };
        Ok(Response::new(pb::HeartbeatResponse { error }))
    }

    async fn leave_group(
        &self,
        request: Request<pb::LeaveGroupRequest>,
    ) -> Result<Response<pb::LeaveGroupResponse>, Status> {
        let r = request.into_inner();
        let mut guard = self.cluster.lock();
        let s = &mut *guard;
        self.check_coordinator(s)?;
        s.counters.entry(self.node_id).or_default().leaves += 1;
        let Some(g) = s.groups.get_mut(&r.group) else {
            return Ok(Response::new(pb::LeaveGroupResponse {
                error: group_error(ErrorCode::UnknownMemberId, "no such group"),
            }));
        };
        if g.members.remove(&r.member_id).is_none() {
            return Ok(Response::new(pb::LeaveGroupResponse {
                error: group_error(ErrorCode::UnknownMemberId, "unknown member"),
            }));
        }
        g.assignment.remove(&r.member_id);
        if !g.members.is_empty() {
            start_rebalance(g);
        }
        Ok(Response::new(pb::LeaveGroupResponse { error: None }))
    }

    async fn commit_offsets(
        &self,
        request: Request<pb::CommitOffsetsRequest>,
    ) -> Result<Response<pb::CommitOffsetsResponse>, Status> {
        let r = request.into_inner();
        let mut guard = self.cluster.lock();
        let s = &mut *guard;
        self.check_coordinator(s)?;
        s.counters.entry(self.node_id).or_default().commits += 1;
        let g = s.groups.entry(r.group.clone()).or_default();
        let error = if r.member_id.is_empty() && r.generation == 0 {
            (!g.members.is_empty())
                .then(|| group_error(ErrorCode::GroupNotEmpty, "the group has members"))
                .flatten()
        } else if !g.members.contains_key(&r.member_id) {
            group_error(ErrorCode::UnknownMemberId, "unknown member")
        } else if r.generation != g.generation {
            group_error(ErrorCode::IllegalGeneration, "stale generation")
        } else {
            None
        };
        if error.is_none() {
            for o in r.offsets {
                g.committed
                    .insert((o.topic, o.partition), (o.offset, o.metadata));
            }
        }
        Ok(Response::new(pb::CommitOffsetsResponse { error }))
    }

    async fn fetch_offsets(
        &self,
        request: Request<pb::FetchOffsetsRequest>,
    ) -> Result<Response<pb::FetchOffsetsResponse>, Status> {
        let r = request.into_inner();
        let mut guard = self.cluster.lock();
        let s = &mut *guard;
        self.check_coordinator(s)?;
        let empty = FakeGroup::default();
        let g = s.groups.get(&r.group).unwrap_or(&empty);
        let offsets = if r.partitions.is_empty() {
            g.committed
                .iter()
                .map(|((t, p), (o, m))| pb::CommittedOffset {
                    topic: t.clone(),
                    partition: *p,
                    committed: true,
                    offset: *o,
                    metadata: m.clone(),
                })
                .collect()
        } else {
            r.partitions
                .iter()
                .flat_map(|tp| tp.partitions.iter().map(move |p| (tp.topic.clone(), *p)))
                .map(|(t, p)| match g.committed.get(&(t.clone(), p)) {
                    Some((o, m)) => pb::CommittedOffset {
                        topic: t,
                        partition: p,
                        committed: true,
                        offset: *o,
                        metadata: m.clone(),
                    },
                    None => pb::CommittedOffset {
                        topic: t,
                        partition: p,
                        ..Default::default()
                    },
                })
                .collect()
        };
        Ok(Response::new(pb::FetchOffsetsResponse {
            error: None,
            offsets,
        }))
    }

    async fn list_groups(
        &self,
        _request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let s = self.cluster.lock();
        let coordinator = coordinator_of(&s);
        Ok(Response::new(pb::ListGroupsResponse {
            groups: s
                .groups
                .iter()
                .map(|(name, g)| pb::GroupListing {
                    group: name.clone(),
                    state: group_state(g).into(),
                    members: g.members.len() as u32,
                    coordinator,
                })
                .collect(),
        }))
    }

    async fn describe_group(
        &self,
        request: Request<pb::DescribeGroupRequest>,
    ) -> Result<Response<pb::DescribeGroupResponse>, Status> {
        let r = request.into_inner();
        let mut guard = self.cluster.lock();
        let s = &mut *guard;
        self.check_coordinator(s)?;
        let coordinator = coordinator_of(s);
        // Like the broker: a group with neither members nor commits is not described (it is
        // listed, as Empty).
        let found = s.groups.get(&r.group);
        let Some(g) = found.filter(|g| !g.members.is_empty() || !g.committed.is_empty()) else {
            return Ok(Response::new(pb::DescribeGroupResponse {
                error: group_error(ErrorCode::GroupNotFound, "no such group"),
                group: r.group,
                ..Default::default()
            }));
        };
        let mut parts: BTreeMap<(String, u32), Option<String>> =
            g.committed.keys().map(|k| (k.clone(), None)).collect();
        for (m, a) in &g.assignment {
            for tp in a {
                parts.insert(tp.clone(), Some(m.clone()));
            }
        }
        let partitions = parts
            .into_iter()
            .map(|((t, p), member)| {
                let end = s.logs.get(&(t.clone(), p)).map_or(0, |l| l.next_offset);
                let committed = g.committed.get(&(t.clone(), p)).map(|(o, _)| *o);
                pb::PartitionLag {
                    topic: t,
                    partition: p,
                    committed: committed.is_some(),
                    committed_offset: committed.unwrap_or(0),
                    end_offset: end,
                    lag: end.saturating_sub(committed.unwrap_or(0)),
                    member_id: member.unwrap_or_default(),
                }
            })
            .collect();
        Ok(Response::new(pb::DescribeGroupResponse {
            error: None,
            group: r.group,
            state: group_state(g).into(),
            generation: g.generation,
            strategy: g.strategy,
            members: g
                .members
                .iter()
                .map(|(id, m)| pb::MemberDescription {
                    member_id: id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    assignment: to_topic_partitions(g.assignment.get(id).map_or(&[][..], |v| v)),
                })
                .collect(),
            partitions,
            coordinator,
        }))
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        let r = request.into_inner();
        let mut guard = self.cluster.lock();
        let s = &mut *guard;
        self.check_coordinator(s)?;
        let error = match s.groups.get(&r.group) {
            None => group_error(ErrorCode::GroupNotFound, "no such group"),
            Some(g) if !g.members.is_empty() => {
                group_error(ErrorCode::GroupNotEmpty, "the group has members")
            }
            Some(_) => {
                s.groups.remove(&r.group);
                None
            }
        };
        Ok(Response::new(pb::DeleteGroupResponse { error }))
    }

    async fn reset_offsets(
        &self,
        request: Request<pb::ResetOffsetsRequest>,
    ) -> Result<Response<pb::ResetOffsetsResponse>, Status> {
        let r = request.into_inner();
        let mut guard = self.cluster.lock();
        let s = &mut *guard;
        self.check_coordinator(s)?;
        let g = s.groups.entry(r.group.clone()).or_default();
        if !g.members.is_empty() {
            return Ok(Response::new(pb::ResetOffsetsResponse {
                error: group_error(
                    ErrorCode::GroupNotEmpty,
                    &format!("group {} has {} active members", r.group, g.members.len()),
                ),
                ..Default::default()
            }));
        }
        let mut plan = Vec::new();
        for tps in &r.partitions {
            let Some(leaders) = s.topics.get(&tps.topic) else {
                return Ok(Response::new(pb::ResetOffsetsResponse {
                    error: group_error(ErrorCode::UnknownTopicOrPartition, "no such topic"),
                    ..Default::default()
                }));
            };
            let ps: Vec<u32> = if tps.partitions.is_empty() {
                (0..leaders.len() as u32).collect()
            } else {
                tps.partitions.clone()
            };
            for p in ps {
                let log = s.logs.get(&(tps.topic.clone(), p));
                let hw = log.map_or(0, |l| l.next_offset);
                let current = g.committed.get(&(tps.topic.clone(), p)).map(|(o, _)| *o);
                let by_time = |ts: i64| -> i64 {
                    log.and_then(|l| {
                        l.batches
                            .iter()
                            .map(|b| batch::BatchHeader::parse(b).expect("valid"))
                            .find(|h| h.max_timestamp >= ts)
                            .map(|h| h.base_offset as i64)
                    })
                    .unwrap_or(hw as i64)
                };
                let requested: i64 = match pb::ResetStrategy::try_from(r.strategy)
                    .unwrap_or(pb::ResetStrategy::ToEarliest)
                {
                    pb::ResetStrategy::ToEarliest => 0,
                    pb::ResetStrategy::ToLatest => hw as i64,
                    pb::ResetStrategy::ToOffset => r.value,
                    pb::ResetStrategy::ShiftBy => current.unwrap_or(0) as i64 + r.value,
                    pb::ResetStrategy::ToDatetime => by_time(r.value),
                    pb::ResetStrategy::ByDuration => {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .expect("clock after 1970")
                            .as_millis() as i64;
                        by_time(now - r.value)
                    }
                };
                let new = requested.clamp(0, hw as i64) as u64;
                plan.push(pb::ResetPlanEntry {
                    topic: tps.topic.clone(),
                    partition: p,
                    had_commit: current.is_some(),
                    current_offset: current.unwrap_or(0),
                    requested_offset: requested,
                    new_offset: new,
                    clamped: new as i64 != requested,
                    log_start_offset: 0,
                    high_watermark: hw,
                });
            }
        }
        if r.execute {
            for e in &plan {
                g.committed.insert(
                    (e.topic.clone(), e.partition),
                    (e.new_offset, String::new()),
                );
            }
        }
        Ok(Response::new(pb::ResetOffsetsResponse {
            error: None,
            plan,
            executed: r.execute,
        }))
    }
}
