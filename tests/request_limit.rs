//! Requests within the broker's limit (issue 13): a node with a small `limits.request_bytes_max`
//! advertises it, the Rust client splits its produce requests below it whatever its own
//! `request_bytes_max`, and a request the node still refuses is a typed error on both sides.

use std::collections::BTreeSet;
use std::time::Duration;

use skein_client::{
    Admin, ClientError, ErrorCode, NewTopic, Producer, ProducerConfig, ProducerRecord,
};
use skein_proto::v1 as pb;
use skein_tests::{client, consume_all, TestCluster};

/// The node's limit on one request.
const NODE_LIMIT: usize = 1024 * 1024;
/// Partitions of the topic written: all led by the one node, so that their batches share
/// requests.
const PARTITIONS: u32 = 32;

/// One node whose requests are limited to [`NODE_LIMIT`], with topics of one replica.
async fn small_limit_node() -> (TestCluster, String) {
    let c = TestCluster::start_with(1, |config| {
        config.limits.request_bytes_max = NODE_LIMIT;
        // A topic's batches must fit a request (checked by the configuration's validation).
        config.topic_defaults.log.batch_bytes_max = NODE_LIMIT as u32;
        config.topic_defaults.replication_factor = 1;
    })
    .await;
    let addr = c.nodes[0].client_addr().to_string();
    (c, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_configured_above_the_node_limit_splits_and_loses_no_record() {
    const RECORDS: usize = 8192;
    const VALUE_BYTES: usize = 1000;
    let (_cluster, brokers) = small_limit_node().await;
    Admin::new(client(&brokers))
        .create_topic(
            NewTopic::new("wide")
                .partitions(PARTITIONS)
                .replication_factor(1),
        )
        .await
        .expect("create topic");
    // The node advertises its limit.
    let meta = client(&brokers).metadata(&[]).await.expect("metadata");
    assert_eq!(meta.request_bytes_max, Some(NODE_LIMIT as u64));

    // 64 MiB per request configured, 64 times the node's limit. ~8 MB of records round-robin
    // over 32 partitions through a 4 MiB buffer (backpressure): batches of all partitions fill
    // together and are drained together, ~2 MiB at a time for the one node, which is more than
    // one request may carry.
    let producer = Producer::new(
        client(&brokers),
        ProducerConfig {
            linger: Duration::from_secs(10),
            batch_bytes_max: 64 * 1024,
            buffer_bytes_max: 4 * 1024 * 1024,
            request_bytes_max: 64 * NODE_LIMIT,
            ..ProducerConfig::default()
        },
    )
    .await
    .expect("producer");
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let mut value = format!("{i:08}").into_bytes();
        value.resize(VALUE_BYTES, b'.');
        let partition = i as u32 % PARTITIONS;
        let record = ProducerRecord::new("wide", value).partition(partition);
        deliveries.push(producer.send(record).await.expect("accepted"));
    }
    producer.flush().await.expect("flushed");
    let mut failed = Vec::new();
    for d in deliveries {
        if let Err(e) = d.await {
            failed.push(e);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {RECORDS} records failed, the first with: {}",
        failed.len(),
        failed[0]
    );

    let records = consume_all(&brokers, "wide", PARTITIONS, RECORDS).await;
    assert_eq!(records.len(), RECORDS, "no record read twice");
    let seen: BTreeSet<usize> = records
        .iter()
        .map(|r| {
            let value = r.value.as_deref().expect("a value");
            let i: usize = std::str::from_utf8(&value[..8])
                .expect("ascii")
                .parse()
                .expect("an index");
            assert_eq!(r.partition, i as u32 % PARTITIONS, "record {i}");
            i
        })
        .collect();
    assert_eq!(seen, (0..RECORDS).collect(), "every record read back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_over_the_node_limit_is_request_too_large_with_both_sizes() {
    let (_cluster, brokers) = small_limit_node().await;
    Admin::new(client(&brokers))
        .create_topic(NewTopic::new("big").partitions(1).replication_factor(1))
        .await
        .expect("create topic");

    // On the wire: REQUEST_TOO_LARGE with the sizes, not tonic's bare OUT_OF_RANGE.
    let mut produce = pb::produce_service_client::ProduceServiceClient::new(
        skein_tests::channel(brokers.parse().expect("address")).await,
    );
    let status = produce
        .produce(pb::ProduceRequest {
            acks: pb::Acks::All as i32,
            timeout_ms: 10_000,
            partitions: vec![pb::PartitionBatches {
                topic: "big".into(),
                partition: 0,
                batches: vec![vec![0u8; 2 * NODE_LIMIT].into()],
            }],
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let md = status.metadata();
    let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(get("skein-error-code").as_deref(), Some("17"));
    assert_eq!(get("skein-request-bytes-max"), Some(NODE_LIMIT.to_string()));
    assert!(
        status.message().contains("limits.request_bytes_max"),
        "{}",
        status.message()
    );

    // Through the producer: one record larger than the node's limit (a batch of its own, so
    // no split helps) fails with the typed error, which says what to change.
    let producer = Producer::new(
        client(&brokers),
        ProducerConfig {
            linger: Duration::ZERO,
            batch_bytes_max: 4 * NODE_LIMIT,
            buffer_bytes_max: 8 * NODE_LIMIT,
            request_bytes_max: 4 * NODE_LIMIT,
            ..ProducerConfig::default()
        },
    )
    .await
    .expect("producer");
    let e = producer
        .send_and_wait(ProducerRecord::new(
            "big",
            vec![b'x'; NODE_LIMIT + NODE_LIMIT / 2],
        ))
        .await
        .expect_err("refused");
    match &e {
        ClientError::RequestTooLarge { size, max, .. } => {
            assert_eq!(*max, NODE_LIMIT);
            assert!(*size > NODE_LIMIT, "{size}");
        }
        other => panic!("expected RequestTooLarge, got {other:?}"),
    }
    assert_eq!(e.code(), Some(ErrorCode::RequestTooLarge));
    assert!(e.to_string().contains("request_bytes_max"), "{e}");
    // The producer goes on: a record within the limit is written.
    producer
        .send_and_wait(ProducerRecord::new("big", "small"))
        .await
        .expect("a small record is written");
}
