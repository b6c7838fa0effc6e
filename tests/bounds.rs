//! Bounds (issue "nothing grows without bound") and the peer port's validation, on real nodes:
//! the peer connection limit, metadata commands refused on the peer port, and the
//! idempotent-producer table's maximum and expiry set in the node configuration.

use std::time::Duration;

use skein_proto::v1 as pb;
use skein_raft::{MetaCommand, MetaOutcome, NodeInfo};
use skein_record::{BatchBuilder, ProducerStamp};
use skein_tests::{channel, create_topic, http_get, wait_for, TestCluster};
use tokio::io::AsyncReadExt;

const WAIT: Duration = Duration::from_secs(10);

async fn metrics(c: &TestCluster) -> String {
    http_get(c.nodes[0].config.http_addr, "/metrics")
        .await
        .expect("metrics")
        .1
}

/// The value of the sample `line_start` (name and labels) on node 1's `/metrics`.
async fn sample(c: &TestCluster, line_start: &str) -> Option<u64> {
    metrics(c)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_port_closes_connections_beyond_its_limit() {
    let c = TestCluster::start_with(1, |n| n.limits.peer_connections_max = 2).await;
    c.wait_ready(0).await;
    let peer = c.nodes[0].config.peer_addr;
    let held = [
        tokio::net::TcpStream::connect(peer).await.expect("connect"),
        tokio::net::TcpStream::connect(peer).await.expect("connect"),
    ];
    // The third is accepted and closed at once: its read ends.
    let mut third = tokio::net::TcpStream::connect(peer).await.expect("connect");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, third.read(&mut buf))
        .await
        .expect("closed before the deadline");
    assert!(matches!(n, Ok(0) | Err(_)), "read {n:?}");
    assert_eq!(
        sample(&c, "skein_peer_connections_refused_total ").await,
        Some(1)
    );
    assert_eq!(sample(&c, "skein_peer_connections ").await, Some(2));

    // Closing one frees a place for a node's own call.
    drop(held);
    let served = wait_for(WAIT, || async {
        let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://{peer}"))
            .expect("endpoint")
            .connect()
            .await
        else {
            return false;
        };
        pb::node_control_client::NodeControlClient::new(ch)
            .node_status(pb::NodeStatusRequest {})
            .await
            .is_ok()
    })
    .await;
    assert!(served.is_some(), "peer port serves again below its limit");
}

async fn propose(
    peer: std::net::SocketAddr,
    cmd: &MetaCommand,
) -> Result<MetaOutcome, tonic::Status> {
    let mut nc = pb::node_control_client::NodeControlClient::new(channel(peer).await);
    let r = nc
        .propose_metadata(pb::ProposeMetadataRequest {
            command: postcard::to_allocvec(cmd).expect("encode").into(),
        })
        .await?;
    Ok(postcard::from_bytes(&r.into_inner().outcome).expect("decode outcome"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_port_refuses_metadata_commands_no_client_or_node_would_send() {
    let c = TestCluster::start(1).await;
    c.wait_ready(0).await;
    create_topic(&c, 0, "orders", 1, 1).await;
    let peer = c.nodes[0].config.peer_addr;
    let registered = NodeInfo {
        peer_addr: peer.to_string(),
        client_addr: c.nodes[0].client_addr().to_string(),
        kafka_addr: c.nodes[0].config.advertised_kafka_addr.clone(),
    };
    let refused = [
        MetaCommand::DeleteTopic {
            name: "__consumer_offsets".into(),
        },
        // Node 1 moved elsewhere by someone else; a node the cluster does not configure.
        MetaCommand::RegisterNode {
            id: 1,
            info: NodeInfo {
                peer_addr: "10.6.6.6:9651".into(),
                ..registered.clone()
            },
        },
        MetaCommand::RegisterNode {
            id: 7,
            info: NodeInfo {
                peer_addr: "10.6.6.7:9651".into(),
                ..registered.clone()
            },
        },
        MetaCommand::AllocateProducerIds { count: 1_000 },
        MetaCommand::SetLeader {
            group: 1,
            leader: 7,
            term: 99,
        },
        MetaCommand::SetLeaders {
            leaders: vec![(1, 1, 99), (1, 7, 99)],
        },
    ];
    for cmd in &refused {
        let e = propose(peer, cmd).await.expect_err("refused");
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{cmd:?}: {e}");
    }
    // What a node sends for a client, or about itself, passes (and the metadata validates it).
    assert!(matches!(
        propose(peer, &MetaCommand::AllocateProducerIds { count: 1 }).await,
        Ok(MetaOutcome::ProducerIds { .. })
    ));
    assert_eq!(
        propose(
            peer,
            &MetaCommand::RegisterNode {
                id: 1,
                info: registered.clone()
            }
        )
        .await
        .expect("a node registers itself"),
        MetaOutcome::Ok
    );
    // Node 1's registration is unchanged and it is still serving.
    let mut nc = pb::node_control_client::NodeControlClient::new(channel(peer).await);
    let status = nc
        .node_status(pb::NodeStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(status.ready);
}

fn idempotent_batch(producer_id: i64, seq: i32, ts: i64) -> bytes::Bytes {
    let mut b = BatchBuilder::new(ts).producer(ProducerStamp {
        producer_id,
        producer_epoch: 0,
        base_sequence: seq,
    });
    b.push(ts, None, Some(b"v"), &[]);
    b.finish()
}

async fn produce(c: &TestCluster, batch: bytes::Bytes) -> u64 {
    let mut p = pb::produce_service_client::ProduceServiceClient::new(c.channel(0).await);
    let r = p
        .produce(pb::ProduceRequest {
            acks: 0,
            timeout_ms: 0,
            partitions: vec![pb::PartitionBatches {
                topic: "t".into(),
                partition: 0,
                batches: vec![batch],
            }],
        })
        .await
        .expect("produce")
        .into_inner();
    assert!(r.partitions[0].error.is_none(), "{r:?}");
    r.partitions[0].base_offsets[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_ids_are_bounded_and_expire_as_the_node_is_configured() {
    let c = TestCluster::start_with(1, |n| {
        n.limits.producer_ids_per_partition_max = 2;
        n.limits.producer_id_expiry = Duration::from_secs(3600);
    })
    .await;
    c.wait_ready(0).await;
    create_topic(&c, 0, "t", 1, 1).await;
    let mut p = pb::produce_service_client::ProduceServiceClient::new(c.channel(0).await);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = p
            .init_producer_id(pb::InitProducerIdRequest {})
            .await
            .expect("producer id")
            .into_inner();
        ids.push(id.producer_id);
    }
    let t0 = 1_700_000_000_000;
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            produce(&c, idempotent_batch(*id, 0, t0 + i as i64)).await,
            i as u64
        );
    }
    let ids_line = "skein_producer_ids{topic=\"t\",partition=\"0\"} ";
    assert_eq!(sample(&c, ids_line).await, Some(2));
    assert_eq!(
        sample(
            &c,
            "skein_producer_ids_evicted{topic=\"t\",partition=\"0\"} "
        )
        .await,
        Some(1)
    );
    // A retry of the second producer's batch is still recognised; the first producer was
    // evicted, so its retry is taken as a new batch (the documented cost of the bound).
    assert_eq!(produce(&c, idempotent_batch(ids[1], 0, t0 + 1)).await, 1);
    assert_eq!(produce(&c, idempotent_batch(ids[0], 0, t0)).await, 3);

    // Two hours later by the log's clock (a plain batch): everyone expired.
    let mut plain = BatchBuilder::new(t0 + 2 * 3600 * 1000);
    plain.push(t0 + 2 * 3600 * 1000, None, Some(b"later"), &[]);
    assert_eq!(produce(&c, plain.finish()).await, 4);
    assert_eq!(sample(&c, ids_line).await, Some(0));
    assert_eq!(
        sample(
            &c,
            "skein_producer_ids_expired{topic=\"t\",partition=\"0\"} "
        )
        .await,
        Some(2)
    );
}
