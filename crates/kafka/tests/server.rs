//! End-to-end tests: `serve` on 127.0.0.1:0 over an in-memory fake backend, spoken to with real
//! Kafka frames built by kafka-protocol's client-side encoders.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use skein_kafka::backend::*;
use skein_kafka::{Backend, BackendError, KafkaConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};

const DEADLINE: Duration = Duration::from_secs(10);

// ---- fake backend ----------------------------------------------------------------------------

struct Fake {
    logs: Mutex<HashMap<(String, i32), Vec<Bytes>>>,
    /// Fetches of topic "slow" wait for a permit here.
    gate: Arc<Semaphore>,
    /// Fetches of topic "slow" started so far.
    slow_started: Arc<AtomicUsize>,
}

impl Default for Fake {
    fn default() -> Self {
        Fake {
            logs: Mutex::default(),
            gate: Arc::new(Semaphore::new(0)),
            slow_started: Arc::default(),
        }
    }
}

type R<T> = Result<T, BackendError>;

fn ready<T: Send>(v: T) -> impl Future<Output = T> + Send {
    std::future::ready(v)
}

impl Fake {
    fn known(topic: &str) -> bool {
        matches!(topic, "t" | "slow" | "__consumer_offsets")
    }
}

impl Backend for Fake {
    fn metadata(
        &self,
        _: &RequestContext,
        topics: Option<Vec<String>>,
    ) -> impl Future<Output = R<ClusterMetadata>> + Send {
        let names = topics.unwrap_or_else(|| vec!["t".into(), "__consumer_offsets".into()]);
        let topics = names
            .into_iter()
            .map(|name| {
                let known = Fake::known(&name);
                TopicMetadata {
                    is_internal: name == "__consumer_offsets",
                    error: (!known).then_some(BackendError::UnknownTopicOrPartition),
                    partitions: if known {
                        vec![PartitionMetadata {
                            partition: 0,
                            error: None,
                            leader: 1,
                            leader_epoch: 3,
                            replicas: vec![1],
                            isr: vec![1],
                            offline_replicas: vec![],
                        }]
                    } else {
                        vec![]
                    },
                    name,
                }
            })
            .collect();
        let broker = BrokerInfo {
            node_id: 1,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
        };
        ready(Ok(ClusterMetadata {
            cluster_id: Some("skein".into()),
            controller_id: 1,
            brokers: vec![broker],
            topics,
        }))
    }

    fn produce(
        &self,
        _: &RequestContext,
        topic: String,
        partition: i32,
        records: Bytes,
        _: Acks,
        _: Duration,
    ) -> impl Future<Output = R<ProduceOutcome>> + Send {
        let result = if Fake::known(&topic) {
            let mut logs = self.logs.lock().expect("fake lock");
            let log = logs.entry((topic, partition)).or_default();
            log.push(records);
            Ok(ProduceOutcome {
                base_offset: log.len() as i64 - 1,
                log_append_time_ms: -1,
                log_start_offset: 0,
            })
        } else {
            Err(BackendError::UnknownTopicOrPartition)
        };
        ready(result)
    }

    fn fetch(
        &self,
        _: &RequestContext,
        params: FetchParams,
    ) -> impl Future<Output = Vec<R<FetchedPartition>>> + Send {
        let slow = params.partitions.iter().any(|p| p.topic == "slow");
        let results: Vec<_> = params
            .partitions
            .iter()
            .map(|p| {
                let logs = self.logs.lock().expect("fake lock");
                let log = logs
                    .get(&(p.topic.clone(), p.partition))
                    .cloned()
                    .unwrap_or_default();
                let from = usize::try_from(p.fetch_offset).unwrap_or(0).min(log.len());
                Ok(FetchedPartition {
                    high_watermark: log.len() as i64,
                    last_stable_offset: log.len() as i64,
                    log_start_offset: 0,
                    records: log[from..].to_vec(),
                })
            })
            .collect();
        let gate = Arc::clone(&self.gate);
        let started = Arc::clone(&self.slow_started);
        async move {
            if slow {
                started.fetch_add(1, Ordering::SeqCst);
                // Counted through the gate so the test can see how many run at once.
                let permit = gate.acquire().await.expect("gate open");
                permit.forget();
            }
            results
        }
    }

    fn list_offsets(
        &self,
        _: &RequestContext,
        _: String,
        _: i32,
        spec: OffsetSpec,
        _: IsolationLevel,
    ) -> impl Future<Output = R<ListedOffset>> + Send {
        let offset = match spec {
            OffsetSpec::Earliest => 0,
            OffsetSpec::Latest => 5,
            OffsetSpec::Timestamp(_) => -1,
        };
        ready(Ok(ListedOffset {
            offset,
            timestamp: -1,
            leader_epoch: 3,
        }))
    }

    fn offset_for_leader_epoch(
        &self,
        _: &RequestContext,
        _: String,
        _: i32,
        _: i32,
        epoch: i32,
    ) -> impl Future<Output = R<EpochEndOffset>> + Send {
        ready(Ok(EpochEndOffset {
            leader_epoch: epoch,
            end_offset: 5,
        }))
    }

    fn create_topic(
        &self,
        _: &RequestContext,
        t: NewTopic,
        _: bool,
        _: Duration,
    ) -> impl Future<Output = R<CreatedTopic>> + Send {
        let result = if Fake::known(&t.name) {
            Err(BackendError::TopicAlreadyExists)
        } else {
            Ok(CreatedTopic {
                partitions: t.partitions.max(1),
                replication_factor: 1,
                configs: vec![config_entry()],
            })
        };
        ready(result)
    }

    fn delete_topic(
        &self,
        _: &RequestContext,
        name: String,
        _: Duration,
    ) -> impl Future<Output = R<()>> + Send {
        ready(if Fake::known(&name) {
            Ok(())
        } else {
            Err(BackendError::UnknownTopicOrPartition)
        })
    }

    fn describe_configs(
        &self,
        _: &RequestContext,
        _: ConfigResource,
        _: Option<Vec<String>>,
    ) -> impl Future<Output = R<Vec<ConfigEntry>>> + Send {
        ready(Ok(vec![config_entry()]))
    }

    fn init_producer_id(
        &self,
        _: &RequestContext,
        _: ProducerIdentity,
    ) -> impl Future<Output = R<ProducerIdentity>> + Send {
        ready(Ok(ProducerIdentity {
            producer_id: 7,
            producer_epoch: 0,
        }))
    }

    fn find_coordinator(
        &self,
        _: &RequestContext,
        _: String,
    ) -> impl Future<Output = R<BrokerInfo>> + Send {
        ready(Ok(BrokerInfo {
            node_id: 1,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
        }))
    }

    fn join_group(
        &self,
        _: &RequestContext,
        join: JoinGroup,
    ) -> impl Future<Output = R<JoinGroupResult>> + Send {
        let result = if join.member_id.is_empty() && join.require_known_member_id {
            Err(BackendError::MemberIdRequired {
                member_id: "m-1".into(),
            })
        } else {
            let member_id = if join.member_id.is_empty() {
                "m-1".to_string()
            } else {
                join.member_id
            };
            Ok(JoinGroupResult {
                generation_id: 1,
                protocol_type: Some(join.protocol_type),
                protocol_name: join.protocols.first().map(|p| p.name.clone()),
                leader: member_id.clone(),
                members: vec![JoinedMember {
                    member_id: member_id.clone(),
                    group_instance_id: join.group_instance_id,
                    metadata: join
                        .protocols
                        .first()
                        .map(|p| p.metadata.clone())
                        .unwrap_or_default(),
                }],
                member_id,
            })
        };
        ready(result)
    }

    fn sync_group(
        &self,
        _: &RequestContext,
        sync: SyncGroup,
    ) -> impl Future<Output = R<SyncGroupResult>> + Send {
        let assignment = sync
            .assignments
            .into_iter()
            .find(|(m, _)| *m == sync.member_id)
            .map(|(_, a)| a)
            .unwrap_or_default();
        ready(Ok(SyncGroupResult {
            protocol_type: sync.protocol_type,
            protocol_name: sync.protocol_name,
            assignment,
        }))
    }

    fn heartbeat(
        &self,
        _: &RequestContext,
        _: String,
        generation: i32,
        _: String,
        _: Option<String>,
    ) -> impl Future<Output = R<()>> + Send {
        ready(if generation == 1 {
            Ok(())
        } else {
            Err(BackendError::IllegalGeneration)
        })
    }

    fn leave_group(
        &self,
        _: &RequestContext,
        _: String,
        members: Vec<LeavingMember>,
    ) -> impl Future<Output = R<Vec<R<()>>>> + Send {
        ready(Ok(members.iter().map(|_| Ok(())).collect()))
    }

    fn offset_commit(
        &self,
        _: &RequestContext,
        commit: OffsetCommit,
    ) -> impl Future<Output = R<Vec<R<()>>>> + Send {
        ready(Ok(commit.offsets.iter().map(|_| Ok(())).collect()))
    }

    fn offset_fetch(
        &self,
        _: &RequestContext,
        _: String,
        partitions: Option<Vec<(String, i32)>>,
        _: bool,
    ) -> impl Future<Output = R<Vec<CommittedOffset>>> + Send {
        let partitions = partitions.unwrap_or_else(|| vec![("t".into(), 0)]);
        let offsets = partitions
            .into_iter()
            .map(|(topic, partition)| CommittedOffset {
                topic,
                partition,
                offset: -1,
                leader_epoch: -1,
                metadata: None,
                error: None,
            })
            .collect();
        ready(Ok(offsets))
    }

    fn list_groups(
        &self,
        _: &RequestContext,
        _: Vec<String>,
    ) -> impl Future<Output = R<Vec<ListedGroup>>> + Send {
        let group = ListedGroup {
            group_id: "g".into(),
            protocol_type: "consumer".into(),
            state: "Stable".into(),
            group_type: "classic".into(),
        };
        ready(Ok(vec![group]))
    }

    fn describe_group(
        &self,
        _: &RequestContext,
        group_id: String,
    ) -> impl Future<Output = R<GroupDescription>> + Send {
        let result = if group_id == "g" {
            Ok(GroupDescription {
                state: "Stable".into(),
                protocol_type: "consumer".into(),
                protocol: "range".into(),
                members: vec![GroupMemberDescription {
                    member_id: "m-1".into(),
                    group_instance_id: Some("i-1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    metadata: Bytes::from_static(b"meta"),
                    assignment: Bytes::from_static(b"assign"),
                }],
            })
        } else {
            Err(BackendError::GroupIdNotFound)
        };
        ready(result)
    }

    fn delete_group(&self, _: &RequestContext, _: String) -> impl Future<Output = R<()>> + Send {
        ready(Err(BackendError::NonEmptyGroup))
    }
}

fn config_entry() -> ConfigEntry {
    ConfigEntry {
        name: "retention.ms".into(),
        value: Some("604800000".into()),
        read_only: false,
        source: ConfigSource::Default,
        sensitive: false,
    }
}

// ---- harness ---------------------------------------------------------------------------------

struct Server {
    addr: std::net::SocketAddr,
    backend: Arc<Fake>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(config: KafkaConfig) -> Server {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("skein_kafka=debug")
            .try_init();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let backend = Arc::new(Fake::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let served = Arc::clone(&backend);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            skein_kafka::serve(listener, served, config, shutdown)
                .await
                .expect("valid config");
        });
        Server {
            addr,
            backend,
            stop: Some(stop),
            task,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.expect("connect")
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task");
    }
}

fn frame<Req: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &Req) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("test")));
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

async fn send<Req: Encodable>(
    conn: &mut TcpStream,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &Req,
) {
    conn.write_all(&frame(api, version, correlation_id, body))
        .await
        .expect("write request");
}

/// Reads one response frame; `None` when the server closed the connection.
async fn read_frame(conn: &mut TcpStream) -> Option<Bytes> {
    let read = async {
        let size = conn.read_i32().await.ok()?;
        let mut buf = vec![0; size as usize];
        conn.read_exact(&mut buf).await.ok()?;
        Some(Bytes::from(buf))
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("response or close within the deadline")
}

async fn recv<Resp: Decodable + HeaderVersion>(conn: &mut TcpStream, version: i16) -> (i32, Resp) {
    let mut buf = read_frame(conn)
        .await
        .expect("a response, not a closed connection");
    let header =
        ResponseHeader::decode(&mut buf, Resp::header_version(version)).expect("response header");
    let body = Resp::decode(&mut buf, version).expect("response body");
    assert!(
        !buf.has_remaining(),
        "response has {} trailing bytes",
        buf.remaining()
    );
    (header.correlation_id, body)
}

async fn call<Req: Encodable, Resp: Decodable + HeaderVersion>(
    conn: &mut TcpStream,
    api: ApiKey,
    version: i16,
    body: &Req,
) -> Resp {
    send(conn, api, version, 42, body).await;
    let (correlation_id, resp) = recv(conn, version).await;
    assert_eq!(correlation_id, 42);
    resp
}

async fn assert_closed(conn: &mut TcpStream) {
    assert!(
        read_frame(conn).await.is_none(),
        "the server should close the connection"
    );
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::task::yield_now().await;
    }
}

fn topic(name: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(name))
}

fn produce_request(acks: i16, records: &'static [u8]) -> ProduceRequest {
    let partition = produce_request::PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(Bytes::from_static(records)));
    let data = produce_request::TopicProduceData::default()
        .with_name(topic("t"))
        .with_partition_data(vec![partition]);
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(1000)
        .with_topic_data(vec![data])
}

fn fetch_request(name: &'static str) -> FetchRequest {
    let partition = fetch_request::FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(0)
        .with_partition_max_bytes(1 << 20);
    let t = fetch_request::FetchTopic::default()
        .with_topic(topic(name))
        .with_partitions(vec![partition]);
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_max_bytes(1 << 20)
        .with_topics(vec![t])
}

// ---- tests -----------------------------------------------------------------------------------

#[tokio::test]
async fn api_versions_answers_supported_and_unsupported_versions() {
    let server = Server::start(KafkaConfig::default()).await;
    let mut conn = server.connect().await;
    let resp: ApiVersionsResponse = call(
        &mut conn,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    )
    .await;
    assert_eq!(resp.error_code, 0);
    let produce = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .expect("produce listed");
    assert_eq!((produce.min_version, produce.max_version), (0, 9));
    assert!(resp
        .api_keys
        .iter()
        .all(|k| k.api_key != ApiKey::SaslHandshake as i16));

    // A version from the future: header v0, body v0 with UNSUPPORTED_VERSION and the table.
    let mut raw = BytesMut::new();
    raw.put_i32(8 + 2 + 4);
    raw.put_i16(ApiKey::ApiVersions as i16);
    raw.put_i16(99);
    raw.put_i32(7);
    raw.put_i16(4);
    raw.put_slice(b"test");
    conn.write_all(&raw).await.expect("write");
    let (correlation_id, resp): (i32, ApiVersionsResponse) = recv(&mut conn, 0).await;
    assert_eq!((correlation_id, resp.error_code), (7, 35));
    assert!(resp
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Fetch as i16 && k.max_version == 12));
    server.shutdown().await;
}

#[tokio::test]
async fn metadata_lists_brokers_and_internal_topics() {
    let server = Server::start(KafkaConfig::default()).await;
    let mut conn = server.connect().await;
    for version in [0, 1, 4, 9, 12] {
        let all = if version == 0 { Some(vec![]) } else { None };
        let req = MetadataRequest::default().with_topics(all);
        let resp: MetadataResponse = call(&mut conn, ApiKey::Metadata, version, &req).await;
        assert_eq!(resp.brokers.len(), 1, "v{version}");
        assert_eq!(resp.brokers[0].port, 9092);
        let internal = resp.topics.iter().find(|t| {
            t.name
                .as_ref()
                .is_some_and(|n| n.0.as_str() == "__consumer_offsets")
        });
        assert_eq!(
            internal.expect("internal topic listed").is_internal,
            version >= 1
        );
    }
    let named =
        vec![metadata_request::MetadataRequestTopic::default().with_name(Some(topic("missing")))];
    let resp: MetadataResponse = call(
        &mut conn,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(named)),
    )
    .await;
    assert_eq!(resp.topics[0].error_code, 3);
    server.shutdown().await;
}

#[tokio::test]
async fn produce_acks_1_then_fetch_returns_the_same_bytes() {
    let server = Server::start(KafkaConfig::default()).await;
    let mut conn = server.connect().await;
    for version in [3, 9] {
        let resp: ProduceResponse = call(
            &mut conn,
            ApiKey::Produce,
            version,
            &produce_request(1, b"batch-bytes"),
        )
        .await;
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0);
    }
    for version in [4, 12] {
        let resp: FetchResponse =
            call(&mut conn, ApiKey::Fetch, version, &fetch_request("t")).await;
        let p = &resp.responses[0].partitions[0];
        assert_eq!((p.error_code, p.high_watermark), (0, 2));
        assert_eq!(p.records.as_deref(), Some(&b"batch-bytesbatch-bytes"[..]));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn produce_acks_0_gets_no_response_and_the_next_response_still_arrives() {
    let server = Server::start(KafkaConfig::default()).await;
    let mut conn = server.connect().await;
    send(
        &mut conn,
        ApiKey::Produce,
        9,
        1,
        &produce_request(0, b"fire-and-forget"),
    )
    .await;
    send(
        &mut conn,
        ApiKey::ApiVersions,
        3,
        2,
        &ApiVersionsRequest::default(),
    )
    .await;
    let (correlation_id, _): (i32, ApiVersionsResponse) = recv(&mut conn, 3).await;
    assert_eq!(correlation_id, 2, "no response for the acks=0 produce");
    let stored = server
        .backend
        .logs
        .lock()
        .expect("lock")
        .get(&("t".to_string(), 0))
        .map(Vec::len);
    assert_eq!(
        stored,
        Some(1),
        "the acks=0 write happened before the next request was answered"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(KafkaConfig::default()).await;
    let mut conn = server.connect().await;
    // A slow fetch first: the fast requests behind it run meanwhile but are answered after it.
    let mut burst = frame(ApiKey::Fetch, 12, 1, &fetch_request("slow"));
    burst.extend_from_slice(&frame(ApiKey::Metadata, 12, 2, &MetadataRequest::default()));
    burst.extend_from_slice(&frame(
        ApiKey::ApiVersions,
        3,
        3,
        &ApiVersionsRequest::default(),
    ));
    burst.extend_from_slice(&frame(ApiKey::Produce, 9, 4, &produce_request(1, b"x")));
    burst.extend_from_slice(&frame(
        ApiKey::ListOffsets,
        6,
        5,
        &ListOffsetsRequest::default(),
    ));
    conn.write_all(&burst).await.expect("write burst");
    server.backend.gate.add_permits(1);
    let (c1, _): (i32, FetchResponse) = recv(&mut conn, 12).await;
    let (c2, _): (i32, MetadataResponse) = recv(&mut conn, 12).await;
    let (c3, _): (i32, ApiVersionsResponse) = recv(&mut conn, 3).await;
    let (c4, _): (i32, ProduceResponse) = recv(&mut conn, 9).await;
    let (c5, _): (i32, ListOffsetsResponse) = recv(&mut conn, 6).await;
    assert_eq!([c1, c2, c3, c4, c5], [1, 2, 3, 4, 5]);
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_frame_closes_the_connection_before_allocating() {
    let config = KafkaConfig {
        frame_bytes_max: 1024,
        ..KafkaConfig::default()
    };
    let server = Server::start(config).await;
    let mut conn = server.connect().await;
    // Under the limit: answered.
    let _: ApiVersionsResponse = call(
        &mut conn,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    )
    .await;
    // Announce 1 GiB and send nothing more: the server must close rather than wait for it.
    conn.write_all(&(1i32 << 30).to_be_bytes())
        .await
        .expect("write size");
    assert_closed(&mut conn).await;
    // A produce just over the limit is refused too.
    let mut conn = server.connect().await;
    let big = produce_request(1, &[0u8; 2048]);
    send(&mut conn, ApiKey::Produce, 9, 1, &big).await;
    assert_closed(&mut conn).await;
    server.shutdown().await;
}

#[tokio::test]
async fn garbage_truncated_and_unsupported_requests_close_the_connection() {
    let server = Server::start(KafkaConfig::default()).await;
    let cases: Vec<Vec<u8>> = vec![
        // Unknown api key.
        [
            &12i32.to_be_bytes()[..],
            &9999i16.to_be_bytes(),
            &0i16.to_be_bytes(),
            &1i32.to_be_bytes(),
            &[0, 0, 0, 0],
        ]
        .concat(),
        // Known but unimplemented API (SaslHandshake).
        frame(
            ApiKey::SaslHandshake,
            1,
            1,
            &SaslHandshakeRequest::default(),
        )
        .to_vec(),
        // Produce v0: advertised for librdkafka, never decoded.
        [
            &8i32.to_be_bytes()[..],
            &0i16.to_be_bytes(),
            &0i16.to_be_bytes(),
            &1i32.to_be_bytes(),
        ]
        .concat(),
        // Metadata v12 whose body is cut short.
        {
            let mut f = frame(ApiKey::Metadata, 12, 1, &MetadataRequest::default()).to_vec();
            f.truncate(f.len() - 2);
            let size = (f.len() - 4) as i32;
            f[..4].copy_from_slice(&size.to_be_bytes());
            f
        },
        // A frame shorter than a request header.
        [&4i32.to_be_bytes()[..], &[0, 18, 0, 3]].concat(),
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut conn = server.connect().await;
        conn.write_all(case).await.expect("write");
        assert!(
            read_frame(&mut conn).await.is_none(),
            "case {i} should close the connection"
        );
    }
    // A frame cut off by the client closing its side.
    let mut conn = server.connect().await;
    conn.write_all(&frame(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default())[..6])
        .await
        .expect("write");
    conn.shutdown().await.expect("half close");
    assert_closed(&mut conn).await;
    server.shutdown().await;
}

#[tokio::test]
async fn connection_limit_closes_connections_beyond_it() {
    let config = KafkaConfig {
        connections_max: 1,
        ..KafkaConfig::default()
    };
    let server = Server::start(config).await;
    let mut first = server.connect().await;
    let _: ApiVersionsResponse = call(
        &mut first,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    )
    .await;
    let mut second = server.connect().await;
    send(
        &mut second,
        ApiKey::ApiVersions,
        3,
        1,
        &ApiVersionsRequest::default(),
    )
    .await;
    assert_closed(&mut second).await;
    drop(first);
    // The slot frees once the server notices the close; retry until a connection is served.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut conn = server.connect().await;
        send(
            &mut conn,
            ApiKey::ApiVersions,
            3,
            1,
            &ApiVersionsRequest::default(),
        )
        .await;
        if read_frame(&mut conn).await.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn in_flight_limit_bounds_concurrent_requests_per_connection() {
    let config = KafkaConfig {
        in_flight_max: 2,
        ..KafkaConfig::default()
    };
    let server = Server::start(config).await;
    let mut conn = server.connect().await;
    let mut burst = BytesMut::new();
    for c in 1..=3 {
        burst.extend_from_slice(&frame(ApiKey::Fetch, 12, c, &fetch_request("slow")));
    }
    burst.extend_from_slice(&frame(
        ApiKey::ApiVersions,
        3,
        4,
        &ApiVersionsRequest::default(),
    ));
    conn.write_all(&burst).await.expect("write burst");
    // Two slow fetches are in flight; nothing else is read, so not even ApiVersions is answered.
    let started = Arc::clone(&server.backend.slow_started);
    wait_until("two fetches waiting at the gate", || {
        started.load(Ordering::SeqCst) == 2
    })
    .await;
    let nothing = tokio::time::timeout(Duration::from_millis(200), conn.read_u8()).await;
    assert!(
        nothing.is_err(),
        "no response while both in-flight slots hold blocked fetches"
    );
    assert_eq!(
        started.load(Ordering::SeqCst),
        2,
        "the third fetch waits for a slot"
    );
    server.backend.gate.add_permits(3);
    for expected in 1..=3 {
        let (c, _): (i32, FetchResponse) = recv(&mut conn, 12).await;
        assert_eq!(c, expected);
    }
    let (c, _): (i32, ApiVersionsResponse) = recv(&mut conn, 3).await;
    assert_eq!(c, 4);
    server.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let config = KafkaConfig {
        idle_timeout: Duration::from_millis(100),
        ..KafkaConfig::default()
    };
    let server = Server::start(config).await;
    let mut conn = server.connect().await;
    let _: ApiVersionsResponse = call(
        &mut conn,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    )
    .await;
    assert_closed(&mut conn).await;
    server.shutdown().await;
}

#[tokio::test]
async fn every_api_encodes_at_its_lowest_and_highest_version() {
    let server = Server::start(KafkaConfig::default()).await;
    let mut conn = server.connect().await;
    for r in skein_kafka::versions::SUPPORTED {
        for version in [r.min, r.max] {
            exercise(&mut conn, r.key, version).await;
        }
    }
    server.shutdown().await;
}

async fn exercise(conn: &mut TcpStream, api: ApiKey, v: i16) {
    let g = || GroupId(StrBytes::from_static_str("g"));
    let m = || StrBytes::from_static_str("m-1");
    match api {
        ApiKey::Produce => {
            drop(call::<_, ProduceResponse>(conn, api, v, &produce_request(-1, b"r")).await)
        }
        ApiKey::Fetch => drop(call::<_, FetchResponse>(conn, api, v, &fetch_request("t")).await),
        ApiKey::ListOffsets => {
            let p = list_offsets_request::ListOffsetsPartition::default().with_timestamp(-2);
            let t = list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![p]);
            let resp: ListOffsetsResponse = call(
                conn,
                api,
                v,
                &ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![t]),
            )
            .await;
            assert_eq!(resp.topics[0].partitions[0].offset, 0);
        }
        ApiKey::Metadata => drop(
            call::<_, MetadataResponse>(
                conn,
                api,
                v,
                &MetadataRequest::default().with_topics(Some(vec![])),
            )
            .await,
        ),
        ApiKey::OffsetCommit => {
            let p = offset_commit_request::OffsetCommitRequestPartition::default()
                .with_committed_offset(3);
            let t = offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![p]);
            let resp: OffsetCommitResponse = call(
                conn,
                api,
                v,
                &OffsetCommitRequest::default()
                    .with_group_id(g())
                    .with_topics(vec![t]),
            )
            .await;
            assert_eq!(resp.topics[0].partitions[0].error_code, 0);
        }
        ApiKey::OffsetFetch => {
            let req = if v >= 8 {
                OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default().with_group_id(g()),
                ])
            } else {
                let t = offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(topic("t"))
                    .with_partition_indexes(vec![0]);
                OffsetFetchRequest::default()
                    .with_group_id(g())
                    .with_topics(Some(vec![t]))
            };
            drop(call::<_, OffsetFetchResponse>(conn, api, v, &req).await)
        }
        ApiKey::FindCoordinator => {
            let req = if v >= 4 {
                FindCoordinatorRequest::default()
                    .with_coordinator_keys(vec![StrBytes::from_static_str("g")])
            } else {
                FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"))
            };
            drop(call::<_, FindCoordinatorResponse>(conn, api, v, &req).await)
        }
        ApiKey::JoinGroup => {
            let p = join_group_request::JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"sub"));
            let req = JoinGroupRequest::default()
                .with_group_id(g())
                .with_session_timeout_ms(10_000)
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![p]);
            let resp: JoinGroupResponse = call(conn, api, v, &req).await;
            if v >= 4 {
                assert_eq!(
                    (resp.error_code, resp.member_id.as_str()),
                    (79, "m-1"),
                    "MEMBER_ID_REQUIRED"
                );
            } else {
                assert_eq!((resp.error_code, resp.members.len()), (0, 1));
            }
        }
        ApiKey::Heartbeat => {
            let resp: HeartbeatResponse = call(
                conn,
                api,
                v,
                &HeartbeatRequest::default()
                    .with_group_id(g())
                    .with_generation_id(2)
                    .with_member_id(m()),
            )
            .await;
            assert_eq!(resp.error_code, 22);
        }
        ApiKey::LeaveGroup => {
            let req = if v >= 3 {
                LeaveGroupRequest::default()
                    .with_group_id(g())
                    .with_members(vec![
                        leave_group_request::MemberIdentity::default().with_member_id(m())
                    ])
            } else {
                LeaveGroupRequest::default()
                    .with_group_id(g())
                    .with_member_id(m())
            };
            drop(call::<_, LeaveGroupResponse>(conn, api, v, &req).await)
        }
        ApiKey::SyncGroup => {
            let a = sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(m())
                .with_assignment(Bytes::from_static(b"a"));
            let mut req = SyncGroupRequest::default()
                .with_group_id(g())
                .with_generation_id(1)
                .with_member_id(m())
                .with_assignments(vec![a]);
            if v >= 5 {
                req = req
                    .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                    .with_protocol_name(Some(StrBytes::from_static_str("range")));
            }
            let resp: SyncGroupResponse = call(conn, api, v, &req).await;
            assert_eq!(&resp.assignment[..], b"a");
        }
        ApiKey::DescribeGroups => {
            let req = DescribeGroupsRequest::default()
                .with_groups(vec![g(), GroupId(StrBytes::from_static_str("none"))]);
            let resp: DescribeGroupsResponse = call(conn, api, v, &req).await;
            assert_eq!(resp.groups[1].group_state.as_str(), "Dead");
        }
        ApiKey::ListGroups => {
            drop(call::<_, ListGroupsResponse>(conn, api, v, &ListGroupsRequest::default()).await)
        }
        ApiKey::ApiVersions => {
            drop(call::<_, ApiVersionsResponse>(conn, api, v, &ApiVersionsRequest::default()).await)
        }
        ApiKey::CreateTopics => {
            let t = create_topics_request::CreatableTopic::default()
                .with_name(topic("new"))
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            let resp: CreateTopicsResponse = call(
                conn,
                api,
                v,
                &CreateTopicsRequest::default()
                    .with_topics(vec![t])
                    .with_validate_only(true),
            )
            .await;
            assert_eq!(resp.topics[0].error_code, 0);
        }
        ApiKey::DeleteTopics => {
            let resp: DeleteTopicsResponse = call(
                conn,
                api,
                v,
                &DeleteTopicsRequest::default().with_topic_names(vec![topic("nope")]),
            )
            .await;
            assert_eq!(resp.responses[0].error_code, 3);
        }
        ApiKey::InitProducerId => {
            let resp: InitProducerIdResponse = call(
                conn,
                api,
                v,
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(1000),
            )
            .await;
            assert_eq!(resp.producer_id.0, 7);
        }
        ApiKey::OffsetForLeaderEpoch => {
            let p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                .with_leader_epoch(3);
            let t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(topic("t"))
                .with_partitions(vec![p]);
            drop(
                call::<_, OffsetForLeaderEpochResponse>(
                    conn,
                    api,
                    v,
                    &OffsetForLeaderEpochRequest::default().with_topics(vec![t]),
                )
                .await,
            )
        }
        ApiKey::DescribeConfigs => {
            let r = describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"));
            let resp: DescribeConfigsResponse = call(
                conn,
                api,
                v,
                &DescribeConfigsRequest::default().with_resources(vec![r]),
            )
            .await;
            assert_eq!(resp.results[0].configs[0].name.as_str(), "retention.ms");
        }
        ApiKey::DeleteGroups => {
            let resp: DeleteGroupsResponse = call(
                conn,
                api,
                v,
                &DeleteGroupsRequest::default().with_groups_names(vec![g()]),
            )
            .await;
            assert_eq!(resp.results[0].error_code, 68);
        }
        other => panic!("no exercise for {other:?}"),
    }
}
