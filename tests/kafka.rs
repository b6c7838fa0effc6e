//! The Kafka listener of real nodes, spoken to with Kafka frames built by kafka-protocol's
//! client-side encoders: metadata names every broker by its Kafka address, produce and fetch
//! round-trip the exact bytes, ListOffsets by timestamp, topic administration, the listener's
//! limits from the node's settings, and Kafka's classic group membership and its bounds.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use skein_record::BatchBuilder;
use skein_tests::TestCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(20);

/// One Kafka client connection.
struct Kafka {
    conn: TcpStream,
    correlation_id: i32,
}

fn frame<Req: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &Req) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("skein-tests")));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, api.request_header_version(version))
        .expect("encode header");
    body.encode(&mut buf, version).expect("encode body");
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    buf
}

impl Kafka {
    async fn connect(addr: SocketAddr) -> Kafka {
        Kafka {
            conn: TcpStream::connect(addr)
                .await
                .expect("connect to the Kafka port"),
            correlation_id: 0,
        }
    }

    /// The next response frame; `None` when the node closed the connection.
    async fn read_frame(&mut self) -> Option<Bytes> {
        let conn = &mut self.conn;
        let read = async {
            let size = conn.read_i32().await.ok()?;
            let mut buf = vec![0; usize::try_from(size).ok()?];
            conn.read_exact(&mut buf).await.ok()?;
            Some(Bytes::from(buf))
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .expect("a response or a close within the deadline")
    }

    async fn call<Req: Encodable, Resp: Decodable + HeaderVersion>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &Req,
    ) -> Resp {
        self.correlation_id += 1;
        let f = frame(api, version, self.correlation_id, body);
        self.conn.write_all(&f).await.expect("write request");
        let mut buf = self.read_frame().await.expect("a response, not a close");
        let header = ResponseHeader::decode(&mut buf, Resp::header_version(version))
            .expect("response header");
        assert_eq!(header.correlation_id, self.correlation_id);
        let body = Resp::decode(&mut buf, version).expect("response body");
        assert!(!buf.has_remaining(), "trailing bytes in the response");
        body
    }

    async fn metadata(&mut self, topics: &[&str]) -> MetadataResponse {
        let named = topics
            .iter()
            .map(|t| metadata_request::MetadataRequestTopic::default().with_name(Some(name(t))))
            .collect();
        let req = MetadataRequest::default().with_topics(Some(named));
        self.call(ApiKey::Metadata, 12, &req).await
    }

    /// Waits until every partition of `topic` has a leader; returns the leaders' node ids.
    async fn leaders(&mut self, topic: &str) -> Vec<i32> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let m = self.metadata(&[topic]).await;
            let t = &m.topics[0];
            let leaders: Vec<i32> = t.partitions.iter().map(|p| p.leader_id.0).collect();
            if t.error_code == 0 && !leaders.is_empty() && leaders.iter().all(|l| *l > 0) {
                return leaders;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no leaders for {topic}"
            );
            tokio::task::yield_now().await;
        }
    }

    async fn create_topic(&mut self, topic: &str, partitions: i32, validate_only: bool) -> i16 {
        let t = create_topics_request::CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)
            .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("3600000")))]);
        let req = CreateTopicsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(10_000)
            .with_validate_only(validate_only);
        let resp: CreateTopicsResponse = self.call(ApiKey::CreateTopics, 6, &req).await;
        resp.topics[0].error_code
    }
}

fn name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_owned()))
}

fn batch(ts: i64, values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(ts);
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{i}");
        b.push(ts + i as i64, Some(key.as_bytes()), Some(v.as_bytes()), &[]);
    }
    b.finish()
}

fn produce_request(topic: &str, partition: i32, records: Bytes) -> ProduceRequest {
    let p = produce_request::PartitionProduceData::default()
        .with_index(partition)
        .with_records(Some(records));
    let t = produce_request::TopicProduceData::default()
        .with_name(name(topic))
        .with_partition_data(vec![p]);
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![t])
}

fn fetch_request(topic: &str, partition: i32, offset: i64) -> FetchRequest {
    let p = fetch_request::FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20);
    let t = fetch_request::FetchTopic::default()
        .with_topic(name(topic))
        .with_partitions(vec![p]);
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![t])
}

fn list_offsets_request(topic: &str, partition: i32, timestamp: i64) -> ListOffsetsRequest {
    let p = list_offsets_request::ListOffsetsPartition::default()
        .with_partition_index(partition)
        .with_timestamp(timestamp);
    let t = list_offsets_request::ListOffsetsTopic::default()
        .with_name(name(topic))
        .with_partitions(vec![p]);
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![t])
}

/// Bytes of a batch that the log does not stamp: everything but baseOffset (0..8) and
/// partitionLeaderEpoch (12..16).
fn unstamped(b: &[u8]) -> (&[u8], &[u8]) {
    (&b[8..12], &b[16..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_names_every_broker_and_leader_by_its_kafka_address() {
    let c = TestCluster::start(3).await;
    let mut k = Kafka::connect(c.nodes[1].kafka_addr()).await;
    assert_eq!(k.create_topic("orders", 3, false).await, 0);
    let leaders = k.leaders("orders").await;
    let m = k.metadata(&["orders"]).await;
    let mut brokers: Vec<(i32, String)> = m
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    brokers.sort();
    let expected: Vec<(i32, String)> = c
        .nodes
        .iter()
        .map(|n| (n.config.node_id as i32, n.kafka_addr().to_string()))
        .collect();
    assert_eq!(
        brokers, expected,
        "every node by its advertised Kafka address"
    );
    for l in leaders {
        assert!(
            brokers.iter().any(|(id, _)| *id == l),
            "leader {l} is a listed broker"
        );
    }
    let p = &m.topics[0].partitions[0];
    assert_eq!(p.replica_nodes.len(), 3);
    assert!(p.leader_epoch >= 1, "the leader epoch is the Raft term");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn produce_then_fetch_round_trips_the_bytes_and_list_offsets_finds_times() {
    let c = TestCluster::start(3).await;
    let mut admin = Kafka::connect(c.nodes[0].kafka_addr()).await;
    assert_eq!(admin.create_topic("events", 1, false).await, 0);
    let leader = admin.leaders("events").await[0];
    let leader_addr = c.nodes[leader as usize - 1].kafka_addr();
    let mut k = Kafka::connect(leader_addr).await;
    let (first, second) = (batch(1_000, &["a", "b", "c"]), batch(5_000, &["d", "e"]));
    let mut sent = BytesMut::from(&first[..]);
    sent.extend_from_slice(&second);
    let resp: ProduceResponse = k
        .call(
            ApiKey::Produce,
            9,
            &produce_request("events", 0, sent.freeze()),
        )
        .await;
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0));

    // Any replica serves fetches below its high watermark: read from a follower too.
    let follower = c.nodes[leader as usize % 3].kafka_addr();
    for addr in [leader_addr, follower] {
        let mut k = Kafka::connect(addr).await;
        let records = fetch_until(&mut k, "events", 5).await;
        assert_eq!(records.len(), first.len() + second.len());
        let (a, b) = records.split_at(first.len());
        assert_eq!(unstamped(a), unstamped(&first), "first batch byte-exact");
        assert_eq!(unstamped(b), unstamped(&second), "second batch byte-exact");
        assert_eq!(i64::from_be_bytes(b[..8].try_into().expect("8 bytes")), 3);
    }

    // Both batches carry the leader's term as partitionLeaderEpoch: that epoch ends at the log
    // end; an earlier epoch ends where the first batch of a later one starts.
    let term = i32::from_be_bytes(records_epoch(&mut k, "events").await);
    assert_eq!(epoch_end(&mut k, "events", term).await, (term, 5, 0));
    assert_eq!(
        epoch_end(&mut k, "events", term - 1).await,
        (term - 1, 0, 0)
    );

    for (ts, want) in [
        (-2, 0),
        (-1, 5),
        (0, 0),
        (1_001, 1),
        (1_003, 3),
        (5_001, 4),
        (9_999, -1),
    ] {
        let resp: ListOffsetsResponse = k
            .call(
                ApiKey::ListOffsets,
                6,
                &list_offsets_request("events", 0, ts),
            )
            .await;
        let p = &resp.topics[0].partitions[0];
        assert_eq!((p.error_code, p.offset), (0, want), "timestamp {ts}");
        let stamps = [1_000, 1_001, 1_002, 5_000, 5_001];
        let found = usize::try_from(want).ok().filter(|_| ts >= 0);
        assert_eq!(
            p.timestamp,
            found.map_or(-1, |o| stamps[o]),
            "timestamp of {ts}"
        );
    }
}

/// The stamped partitionLeaderEpoch bytes of the first batch of `topic`/0.
async fn records_epoch(k: &mut Kafka, topic: &str) -> [u8; 4] {
    let records = fetch_until(k, topic, 5).await;
    records[12..16].try_into().expect("4 bytes")
}

/// OffsetForLeaderEpoch of `topic`/0: (epoch, end offset, error).
async fn epoch_end(k: &mut Kafka, topic: &str, epoch: i32) -> (i32, i64, i16) {
    let p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
        .with_partition(0)
        .with_current_leader_epoch(-1)
        .with_leader_epoch(epoch);
    let t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
        .with_topic(name(topic))
        .with_partitions(vec![p]);
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![t]);
    let resp: OffsetForLeaderEpochResponse = k.call(ApiKey::OffsetForLeaderEpoch, 4, &req).await;
    let e = &resp.topics[0].partitions[0];
    (e.leader_epoch, e.end_offset, e.error_code)
}

/// Fetches `topic`/0 from offset 0 until the high watermark reaches `hwm`; returns the records.
async fn fetch_until(k: &mut Kafka, topic: &str, hwm: i64) -> Bytes {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let resp: FetchResponse = k.call(ApiKey::Fetch, 12, &fetch_request(topic, 0, 0)).await;
        let p = &resp.responses[0].partitions[0];
        if p.error_code == 0 && p.high_watermark == hwm {
            return p.records.clone().unwrap_or_default();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "hwm {hwm} not reached: {p:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_are_created_described_and_deleted_over_kafka() {
    let c = TestCluster::start(1).await;
    let mut k = Kafka::connect(c.nodes[0].kafka_addr()).await;
    assert_eq!(k.create_topic("plan", 2, true).await, 0, "validate only");
    assert_eq!(
        k.metadata(&["plan"]).await.topics[0].error_code,
        3,
        "not created"
    );
    assert_eq!(k.create_topic("plan", 2, false).await, 0);
    assert_eq!(
        k.create_topic("plan", 2, false).await,
        36,
        "TOPIC_ALREADY_EXISTS"
    );
    assert_eq!(
        k.create_topic("bad name", 1, false).await,
        17,
        "INVALID_TOPIC_EXCEPTION"
    );
    assert_eq!(k.leaders("plan").await.len(), 2);

    let resource = describe_configs_request::DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str("plan"))
        .with_configuration_keys(None);
    let req = DescribeConfigsRequest::default().with_resources(vec![resource]);
    let resp: DescribeConfigsResponse = k.call(ApiKey::DescribeConfigs, 4, &req).await;
    let configs = &resp.results[0].configs;
    let get = |key: &str| {
        configs
            .iter()
            .find(|c| c.name.as_str() == key)
            .and_then(|c| c.value.as_ref().map(|v| (v.to_string(), c.config_source)))
    };
    assert_eq!(
        get("retention.ms"),
        Some(("3600000".into(), 1)),
        "set on the topic"
    );
    assert_eq!(get("cleanup.policy"), Some(("delete".into(), 5)));
    assert!(get("segment.bytes").is_some() && get("max.message.bytes").is_some());

    let req = DeleteTopicsRequest::default()
        .with_topic_names(vec![name("plan")])
        .with_timeout_ms(10_000);
    let resp: DeleteTopicsResponse = k.call(ApiKey::DeleteTopics, 5, &req).await;
    assert_eq!(resp.responses[0].error_code, 0);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while k.metadata(&["plan"]).await.topics[0].error_code != 3 {
        assert!(tokio::time::Instant::now() < deadline, "topic not deleted");
    }
    let resp: DeleteTopicsResponse = k.call(ApiKey::DeleteTopics, 5, &req).await;
    assert_eq!(resp.responses[0].error_code, 3, "already gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_kafka_listener_applies_the_nodes_limits() {
    let c = TestCluster::start_with(1, |config| {
        config.kafka.connections_max = 1;
        config.kafka.frame_bytes_max = 1024;
        config.kafka.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let addr = c.nodes[0].kafka_addr();
    let mut first = Kafka::connect(addr).await;
    assert_eq!(first.metadata(&[]).await.brokers.len(), 1);
    // connections_max = 1: a second connection is closed at accept.
    let mut second = Kafka::connect(addr).await;
    assert!(
        second.read_frame().await.is_none(),
        "connection beyond the limit closed"
    );
    // frame_bytes_max = 1024: a larger frame closes the connection.
    let mut big = BytesMut::new();
    big.put_i32(2048);
    big.put_bytes(0, 64);
    first.conn.write_all(&big).await.expect("write");
    assert!(
        first.read_frame().await.is_none(),
        "oversized frame closes the connection"
    );
    // idle_timeout = 300 ms: an idle connection is closed by the node.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut idle = loop {
        // The slot of the closed connection is free once its task has ended: a connection
        // that answers a request holds it.
        let mut k = Kafka::connect(addr).await;
        let req = MetadataRequest::default().with_topics(Some(vec![]));
        let f = frame(ApiKey::Metadata, 12, 1, &req);
        k.conn.write_all(&f).await.expect("write");
        if k.read_frame().await.is_some() {
            break k;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no connection slot freed"
        );
    };
    assert!(idle.read_frame().await.is_none(), "idle connection closed");
}

fn commit_request(
    group: &str,
    member: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    let topics = offsets
        .iter()
        .map(|(t, p, o)| {
            let part = offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_metadata(Some(StrBytes::from_static_str("m")));
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name(t))
                .with_partitions(vec![part])
        })
        .collect();
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(StrBytes::from_string(member.to_owned()))
        .with_topics(topics)
}

/// (topic, partition, offset, error) of every partition in a v8 OffsetFetch of all commits.
async fn committed(k: &mut Kafka, group: &str) -> Vec<(String, i32, i64, i16)> {
    let g = offset_fetch_request::OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_topics(None);
    let req = OffsetFetchRequest::default().with_groups(vec![g]);
    let resp: OffsetFetchResponse = k.call(ApiKey::OffsetFetch, 8, &req).await;
    let g = &resp.groups[0];
    assert_eq!(g.error_code, 0);
    let mut out = Vec::new();
    for t in &g.topics {
        for p in &t.partitions {
            out.push((
                t.name.0.to_string(),
                p.partition_index,
                p.committed_offset,
                p.error_code,
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_commits_and_group_admin_over_kafka() {
    let c = TestCluster::start(3).await;
    let mut k = Kafka::connect(c.nodes[0].kafka_addr()).await;
    assert_eq!(k.create_topic("g", 2, false).await, 0);
    k.leaders("g").await;
    let req = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![StrBytes::from_static_str("kgroup")]);
    let resp: FindCoordinatorResponse = k.call(ApiKey::FindCoordinator, 4, &req).await;
    let co = &resp.coordinators[0];
    assert_eq!(co.error_code, 0);
    let addr = format!("{}:{}", co.host.as_str(), co.port);
    let node = &c.nodes[co.node_id.0 as usize - 1];
    assert_eq!(
        addr,
        node.kafka_addr().to_string(),
        "coordinator by its Kafka address"
    );

    let mut co = Kafka::connect(node.kafka_addr()).await;
    let req = commit_request(
        "kgroup",
        "",
        -1,
        &[("g", 0, 5), ("g", 1, 7), ("nope", 0, 1)],
    );
    let resp: OffsetCommitResponse = co.call(ApiKey::OffsetCommit, 8, &req).await;
    let codes: Vec<i16> = resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect();
    assert_eq!(codes, vec![0, 0, 3], "unknown topic refused per partition");
    let want = vec![("g".to_string(), 0, 5, 0), ("g".to_string(), 1, 7, 0)];
    assert_eq!(committed(&mut co, "kgroup").await, want);
    // A member id that names no member of the group.
    let req = commit_request("kgroup", "m-1", 1, &[("g", 0, 9)]);
    let resp: OffsetCommitResponse = co.call(ApiKey::OffsetCommit, 8, &req).await;
    assert_eq!(
        resp.topics[0].partitions[0].error_code, 25,
        "UNKNOWN_MEMBER_ID"
    );

    // Listing fans out to every coordinator, from any node.
    let resp: ListGroupsResponse = k
        .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
        .await;
    let listed: Vec<(String, String)> = resp
        .groups
        .iter()
        .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
        .collect();
    assert!(
        listed.contains(&("kgroup".into(), "Empty".into())),
        "{listed:?}"
    );
    let describe = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_static_str("kgroup"))]);
    let resp: DescribeGroupsResponse = co.call(ApiKey::DescribeGroups, 5, &describe).await;
    assert_eq!(
        (
            resp.groups[0].error_code,
            resp.groups[0].group_state.as_str()
        ),
        (0, "Empty")
    );

    let req = DeleteGroupsRequest::default()
        .with_groups_names(vec![GroupId(StrBytes::from_static_str("kgroup"))]);
    let resp: DeleteGroupsResponse = co.call(ApiKey::DeleteGroups, 2, &req).await;
    assert_eq!(resp.results[0].error_code, 0);
    assert!(
        committed(&mut co, "kgroup").await.is_empty(),
        "offsets deleted"
    );
    let resp: DescribeGroupsResponse = co.call(ApiKey::DescribeGroups, 5, &describe).await;
    let g = &resp.groups[0];
    assert_eq!(
        (g.error_code, g.group_state.as_str()),
        (0, "Dead"),
        "gone, as Kafka < v6 says"
    );
}

fn group_id(g: &str) -> GroupId {
    GroupId(StrBytes::from_string(g.to_owned()))
}

fn join_request(group: &str, member: &str) -> JoinGroupRequest {
    let p = join_group_request::JoinGroupRequestProtocol::default()
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(Bytes::from_static(b"subscription"));
    JoinGroupRequest::default()
        .with_group_id(group_id(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(StrBytes::from_string(member.to_owned()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![p])
}

fn sync_request(
    group: &str,
    member: &str,
    generation: i32,
    assignments: &[(&str, Bytes)],
) -> SyncGroupRequest {
    let assignments = assignments
        .iter()
        .map(|(m, a)| {
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(m.to_string()))
                .with_assignment(a.clone())
        })
        .collect();
    SyncGroupRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member.to_owned()))
        .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
        .with_protocol_name(Some(StrBytes::from_static_str("range")))
        .with_assignments(assignments)
}

/// A consumer-protocol assignment (v0) of `partitions` of `topic`.
fn consumer_assignment(topic: &str, partitions: &[i32]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(1);
    b.put_i16(topic.len() as i16);
    b.put_slice(topic.as_bytes());
    b.put_i32(partitions.len() as i32);
    for p in partitions {
        b.put_i32(*p);
    }
    b.put_i32(-1);
    b.freeze()
}

/// JoinGroup v5 until it has a member id (MEMBER_ID_REQUIRED first), then the join itself.
async fn join(k: &mut Kafka, group: &str) -> JoinGroupResponse {
    let first: JoinGroupResponse = k.call(ApiKey::JoinGroup, 5, &join_request(group, "")).await;
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    assert!(!first.member_id.is_empty(), "with a member id");
    let req = join_request(group, first.member_id.as_str());
    k.call(ApiKey::JoinGroup, 5, &req).await
}

async fn heartbeat(k: &mut Kafka, group: &str, member: &str, generation: i32) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member.to_owned()));
    let resp: HeartbeatResponse = k.call(ApiKey::Heartbeat, 4, &req).await;
    resp.error_code
}

async fn leave(k: &mut Kafka, group: &str, member: &str) -> (i16, i16) {
    let m = leave_group_request::MemberIdentity::default()
        .with_member_id(StrBytes::from_string(member.to_owned()));
    let req = LeaveGroupRequest::default()
        .with_group_id(group_id(group))
        .with_members(vec![m]);
    let resp: LeaveGroupResponse = k.call(ApiKey::LeaveGroup, 5, &req).await;
    (resp.error_code, resp.members[0].error_code)
}

async fn commit_code(k: &mut Kafka, group: &str, member: &str, generation: i32) -> i16 {
    let req = commit_request(group, member, generation, &[("cg", 0, 3)]);
    let resp: OffsetCommitResponse = k.call(ApiKey::OffsetCommit, 8, &req).await;
    resp.topics[0].partitions[0].error_code
}

/// A second member joins a stable group of one (generation 1): the first learns of the
/// rebalance from its heartbeat and rejoins; the leader's assignments reach the follower.
async fn second_member_rebalances(m1: &mut Kafka, mut m2: Kafka, id1: &str) -> (Kafka, String) {
    let id1 = id1.to_owned();
    // A second member: the first learns of the rebalance from its heartbeat and rejoins.
    let second = tokio::spawn(async move {
        let j = join(&mut m2, "cgroup").await;
        (m2, j)
    });
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while heartbeat(m1, "cgroup", &id1, 1).await != 27 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no REBALANCE_IN_PROGRESS"
        );
        tokio::task::yield_now().await;
    }
    let j1: JoinGroupResponse = m1
        .call(ApiKey::JoinGroup, 5, &join_request("cgroup", &id1))
        .await;
    let (mut m2, j2) = second.await.expect("second member");
    assert_eq!((j1.error_code, j2.error_code), (0, 0));
    assert_eq!((j1.generation_id, j2.generation_id), (2, 2));
    assert_eq!(
        (j1.leader.as_str(), j2.leader.as_str()),
        (id1.as_str(), id1.as_str())
    );
    assert_eq!(
        (j1.members.len(), j2.members.len()),
        (2, 0),
        "metadata to the leader only"
    );
    let id2 = j2.member_id.to_string();
    let follower = tokio::spawn(async move {
        let s: SyncGroupResponse = m2
            .call(ApiKey::SyncGroup, 5, &sync_request("cgroup", &id2, 2, &[]))
            .await;
        (m2, id2, s)
    });
    let (b1, b2) = (
        consumer_assignment("cg", &[0]),
        consumer_assignment("cg", &[1]),
    );
    let req = sync_request(
        "cgroup",
        &id1,
        2,
        &[
            (id1.as_str(), b1.clone()),
            (j2.member_id.as_str(), b2.clone()),
        ],
    );
    let s1: SyncGroupResponse = m1.call(ApiKey::SyncGroup, 5, &req).await;
    let (m2, id2, s2) = follower.await.expect("follower sync");
    assert_eq!((s1.error_code, s2.error_code), (0, 0));
    assert_eq!((s1.assignment, s2.assignment), (b1, b2));
    (m2, id2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn classic_group_join_sync_heartbeat_rebalance_and_leave_over_kafka() {
    let c = TestCluster::start(3).await;
    let mut k = Kafka::connect(c.nodes[0].kafka_addr()).await;
    assert_eq!(k.create_topic("cg", 2, false).await, 0);
    k.leaders("cg").await;
    let req = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("cgroup"));
    let co: FindCoordinatorResponse = k.call(ApiKey::FindCoordinator, 1, &req).await;
    assert_eq!(co.error_code, 0);
    let addr = c.nodes[co.node_id.0 as usize - 1].kafka_addr();
    // One connection per member: a join waits for the rebalance on its connection.
    let (mut m1, m2) = (Kafka::connect(addr).await, Kafka::connect(addr).await);

    let j = join(&mut m1, "cgroup").await;
    assert_eq!((j.error_code, j.generation_id), (0, 1));
    let id1 = j.member_id.to_string();
    assert_eq!(j.leader.as_str(), id1, "the only member leads");
    assert_eq!(j.members.len(), 1);
    assert_eq!(j.members[0].metadata, Bytes::from_static(b"subscription"));
    let a1 = consumer_assignment("cg", &[0, 1]);
    let req = sync_request("cgroup", &id1, 1, &[(id1.as_str(), a1.clone())]);
    let s: SyncGroupResponse = m1.call(ApiKey::SyncGroup, 5, &req).await;
    assert_eq!((s.error_code, s.assignment.clone()), (0, a1.clone()));
    assert_eq!(heartbeat(&mut m1, "cgroup", &id1, 1).await, 0);
    assert_eq!(
        heartbeat(&mut m1, "cgroup", &id1, 0).await,
        22,
        "ILLEGAL_GENERATION"
    );
    assert_eq!(commit_code(&mut m1, "cgroup", &id1, 1).await, 0);
    assert_eq!(
        commit_code(&mut m1, "cgroup", &id1, 7).await,
        22,
        "stale commit"
    );
    assert_eq!(
        commit_code(&mut m1, "cgroup", "", -1).await,
        68,
        "NON_EMPTY_GROUP"
    );

    let describe = DescribeGroupsRequest::default().with_groups(vec![group_id("cgroup")]);
    let d: DescribeGroupsResponse = m1.call(ApiKey::DescribeGroups, 5, &describe).await;
    let g = &d.groups[0];
    assert_eq!(
        (
            g.group_state.as_str(),
            g.protocol_type.as_str(),
            g.protocol_data.as_str()
        ),
        ("Stable", "consumer", "range")
    );
    assert_eq!(
        g.members[0].member_assignment, a1,
        "assignment bytes as written"
    );

    let (mut m2, id2) = second_member_rebalances(&mut m1, m2, &id1).await;
    assert_eq!(heartbeat(&mut m2, "cgroup", &id2, 2).await, 0);

    // The second member leaves (LeaveGroup v3+ batch): the first rejoins alone.
    assert_eq!(leave(&mut m2, "cgroup", &id2).await, (0, 0));
    assert_eq!(heartbeat(&mut m1, "cgroup", &id1, 2).await, 27);
    let j: JoinGroupResponse = m1
        .call(ApiKey::JoinGroup, 5, &join_request("cgroup", &id1))
        .await;
    assert_eq!((j.error_code, j.generation_id, j.members.len()), (0, 3, 1));
    assert_eq!(
        heartbeat(&mut m2, "cgroup", &id2, 3).await,
        25,
        "UNKNOWN_MEMBER_ID"
    );
    assert_eq!(leave(&mut m1, "cgroup", &id1).await, (0, 0));
    let d: DescribeGroupsResponse = m1.call(ApiKey::DescribeGroups, 5, &describe).await;
    assert_eq!(
        d.groups[0].group_state.as_str(),
        "Empty",
        "offsets remain, members gone"
    );
    assert_eq!(
        committed(&mut m1, "cgroup").await,
        vec![("cg".to_string(), 0, 3, 0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_with_members_is_native_or_classic_never_both() {
    use skein_proto::v1 as pb;
    let c = TestCluster::start(1).await;
    let mut k = Kafka::connect(c.nodes[0].kafka_addr()).await;
    assert_eq!(k.create_topic("mx", 1, false).await, 0);
    k.leaders("mx").await;
    let mut native = pb::group_service_client::GroupServiceClient::new(
        skein_tests::channel(c.nodes[0].client_addr()).await,
    );
    let native_join = |group: &str| pb::JoinGroupRequest {
        group: group.into(),
        client_id: "native".into(),
        topics: vec!["mx".into()],
        ..Default::default()
    };
    for group in ["native-g", "classic-g"] {
        let req = pb::FindCoordinatorRequest {
            group: group.into(),
        };
        native.find_coordinator(req).await.expect("the coordinator");
    }
    let r = native
        .join_group(native_join("native-g"))
        .await
        .expect("native join")
        .into_inner();
    assert!(r.error.is_none(), "{:?}", r.error);
    let j: JoinGroupResponse = k
        .call(ApiKey::JoinGroup, 5, &join_request("native-g", ""))
        .await;
    assert_eq!(j.error_code, 23, "INCONSISTENT_GROUP_PROTOCOL");

    let j = join(&mut k, "classic-g").await;
    assert_eq!(j.error_code, 0);
    let r = native
        .join_group(native_join("classic-g"))
        .await
        .expect("native join answers")
        .into_inner();
    let e = r.error.expect("refused");
    assert_eq!(e.code, pb::ErrorCode::InvalidRequest as i32);
    assert!(e.message.contains("Kafka"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_static_member_rejoins_without_a_rebalance_and_fences_its_old_id() {
    let c = TestCluster::start(1).await;
    let mut k = Kafka::connect(c.nodes[0].kafka_addr()).await;
    assert_eq!(k.create_topic("st", 1, false).await, 0);
    k.leaders("st").await;
    let req = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("sgroup"));
    let co: FindCoordinatorResponse = k.call(ApiKey::FindCoordinator, 1, &req).await;
    assert_eq!(co.error_code, 0);
    let stat = join_request("sgroup", "")
        .with_group_instance_id(Some(StrBytes::from_static_str("instance-1")));
    let j: JoinGroupResponse = k.call(ApiKey::JoinGroup, 5, &stat).await;
    assert_eq!(
        (j.error_code, j.generation_id),
        (0, 1),
        "no MEMBER_ID_REQUIRED"
    );
    let old = j.member_id.to_string();
    let a = consumer_assignment("st", &[0]);
    let mut sync = sync_request("sgroup", &old, 1, &[(old.as_str(), a.clone())]);
    sync.group_instance_id = Some(StrBytes::from_static_str("instance-1"));
    let s: SyncGroupResponse = k.call(ApiKey::SyncGroup, 5, &sync).await;
    assert_eq!(s.error_code, 0);
    // The same instance restarts: a new member id, the same generation and assignment.
    let j: JoinGroupResponse = k.call(ApiKey::JoinGroup, 5, &stat).await;
    assert_eq!((j.error_code, j.generation_id), (0, 1), "no rebalance");
    let new = j.member_id.to_string();
    assert_ne!(new, old);
    let mut sync = sync_request("sgroup", &new, 1, &[]);
    sync.group_instance_id = Some(StrBytes::from_static_str("instance-1"));
    let s: SyncGroupResponse = k.call(ApiKey::SyncGroup, 5, &sync).await;
    assert_eq!((s.error_code, s.assignment), (0, a));
    let hb = HeartbeatRequest::default()
        .with_group_id(group_id("sgroup"))
        .with_generation_id(1)
        .with_member_id(StrBytes::from_string(old))
        .with_group_instance_id(Some(StrBytes::from_static_str("instance-1")));
    let resp: HeartbeatResponse = k.call(ApiKey::Heartbeat, 4, &hb).await;
    assert_eq!(resp.error_code, 82, "FENCED_INSTANCE_ID");
}

/// A sample of node 1's `/metrics` (name and labels, then the value).
async fn sample(c: &TestCluster, name: &str) -> Option<u64> {
    let (_, body) = skein_tests::http_get(c.nodes[0].config.http_addr, "/metrics").await?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_classic_group_refuses_a_join_and_counts_it_in_the_bounds_metric() {
    use skein_node::groups::classic::MEMBERS_MAX;
    let c = TestCluster::start(1).await;
    let mut k = Kafka::connect(c.nodes[0].kafka_addr()).await;
    let req = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("fgroup"));
    let co: FindCoordinatorResponse = k.call(ApiKey::FindCoordinator, 1, &req).await;
    assert_eq!(co.error_code, 0);
    let refused = "skein_group_members_refused_total";
    assert_eq!(sample(&c, refused).await, Some(0));
    // Each JoinGroup v5 without a member id is answered MEMBER_ID_REQUIRED and holds the id it
    // hands out (until the session timeout, long enough here): these fill the group.
    let first = join_request("fgroup", "").with_session_timeout_ms(120_000);
    for i in 0..MEMBERS_MAX {
        let j: JoinGroupResponse = k.call(ApiKey::JoinGroup, 5, &first).await;
        assert_eq!(j.error_code, 79, "join {i}: MEMBER_ID_REQUIRED");
    }
    let j: JoinGroupResponse = k.call(ApiKey::JoinGroup, 5, &first).await;
    assert_eq!(j.error_code, 81, "GROUP_MAX_SIZE_REACHED");
    assert_eq!(sample(&c, refused).await, Some(1));
    assert_eq!(sample(&c, "skein_groups_refused_total").await, Some(0));
}
