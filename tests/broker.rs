//! The broker through its gRPC API: topics, produce, fetch, list offsets, bad input.

use std::collections::BTreeMap;

use bytes::Bytes;
use skein_proto::v1 as pb;
use skein_record::{BatchBuilder, BatchIter, ProducerStamp};
use skein_tests::{create_topic, http_get, TestCluster};

fn batch(values: &[String], ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(ts);
    for v in values {
        b.push(ts, None, Some(v.as_bytes()), &[]);
    }
    b.finish()
}

async fn fetch_all(
    c: &TestCluster,
    node: usize,
    topic: &str,
    partition: u32,
) -> Vec<(u64, String)> {
    let mut f = pb::fetch_service_client::FetchServiceClient::new(c.channel(node).await);
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let r = f
            .fetch(pb::FetchRequest {
                partitions: vec![pb::PartitionFetch {
                    topic: topic.into(),
                    partition,
                    offset,
                    max_bytes: 64 * 1024,
                }],
                max_wait_ms: 0,
                min_bytes: 0,
                max_bytes: 0,
            })
            .await
            .expect("fetch")
            .into_inner();
        let p = &r.partitions[0];
        assert!(p.error.is_none(), "fetch error {:?}", p.error);
        if p.records.is_empty() {
            assert_eq!(offset, p.high_watermark);
            return out;
        }
        for b in BatchIter::new(p.records.clone()) {
            let b = b.expect("valid batch");
            for rec in b.records().expect("records") {
                let rec = rec.expect("record");
                if rec.offset >= offset {
                    out.push((
                        rec.offset,
                        String::from_utf8_lossy(rec.value.as_deref().unwrap_or_default()).into(),
                    ));
                }
            }
        }
        offset = p.next_offset;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_node_create_produce_consume_in_order() {
    let c = TestCluster::start(1).await;
    let info = create_topic(&c, 0, "orders", 3, 0).await;
    assert_eq!(info.partitions.len(), 3);
    assert!(info.partitions.iter().all(|p| p.leader == 1), "{info:?}");

    let mut p = pb::produce_service_client::ProduceServiceClient::new(c.channel(0).await);
    let mut expected: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for round in 0..34 {
        let mut parts = Vec::new();
        for partition in 0..3u32 {
            let values: Vec<String> = (0..100)
                .map(|i| format!("r{round}-p{partition}-{i}"))
                .collect();
            expected
                .entry(partition)
                .or_default()
                .extend(values.iter().cloned());
            parts.push(pb::PartitionBatches {
                topic: "orders".into(),
                partition,
                batches: vec![batch(&values, 1_000 + round)],
            });
        }
        let r = p
            .produce(pb::ProduceRequest {
                acks: pb::Acks::All as i32,
                timeout_ms: 0,
                partitions: parts,
            })
            .await
            .expect("produce")
            .into_inner();
        for pr in &r.partitions {
            assert!(pr.error.is_none(), "{:?}", pr.error);
            assert_eq!(pr.base_offsets, vec![round as u64 * 100]);
        }
    }
    for partition in 0..3 {
        let got = fetch_all(&c, 0, "orders", partition).await;
        let want = &expected[&partition];
        assert_eq!(got.len(), want.len());
        for (i, (off, v)) in got.iter().enumerate() {
            assert_eq!(*off, i as u64);
            assert_eq!(v, &want[i]);
        }
    }

    // List offsets: earliest, latest, by timestamp (round 10 has timestamp 1010).
    let mut f = pb::fetch_service_client::FetchServiceClient::new(c.channel(0).await);
    let q = |spec: pb::OffsetSpec, ts: i64| pb::PartitionOffsetQuery {
        topic: "orders".into(),
        partition: 1,
        spec: spec as i32,
        timestamp_ms: ts,
    };
    let r = f
        .list_offsets(pb::ListOffsetsRequest {
            partitions: vec![
                q(pb::OffsetSpec::Earliest, 0),
                q(pb::OffsetSpec::Latest, 0),
                q(pb::OffsetSpec::Timestamp, 1010),
                q(pb::OffsetSpec::Timestamp, 99_999),
            ],
        })
        .await
        .expect("list offsets")
        .into_inner();
    let offsets: Vec<u64> = r.partitions.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, vec![0, 3400, 1000, 3400]);

    // Health, readiness and metrics.
    let http = c.nodes[0].config.http_addr;
    assert_eq!(http_get(http, "/healthz").await.map(|r| r.0), Some(200));
    let (code, body) = http_get(http, "/metrics").await.expect("metrics");
    assert_eq!(code, 200);
    assert!(body.contains("skein_produce_records_total 10200"), "{body}");
    assert!(
        body.contains("skein_partition_leaders{node=\"1\"} 3"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_the_documented_error_and_changes_nothing() {
    let c = TestCluster::start(1).await;
    create_topic(&c, 0, "t", 1, 1).await;
    let mut m = pb::metadata_service_client::MetadataServiceClient::new(c.channel(0).await);
    let long = "x".repeat(250);
    for name in ["", "..", "a/b", long.as_str(), "sp ace"] {
        let e = m
            .create_topic(pb::CreateTopicRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .expect_err("invalid name");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{name:?}: {e}");
        assert_eq!(
            e.metadata()
                .get("skein-error-code")
                .and_then(|v| v.to_str().ok()),
            Some("3"),
            "{name:?}"
        );
    }
    let e = m
        .create_topic(pb::CreateTopicRequest {
            name: "big".into(),
            partitions: 1,
            replication_factor: 3,
            config: Default::default(),
        })
        .await
        .expect_err("rf 3 on one node");
    assert_eq!(
        e.metadata()
            .get("skein-error-code")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    let e = m
        .create_topic(pb::CreateTopicRequest {
            name: "t".into(),
            ..Default::default()
        })
        .await
        .expect_err("exists");
    assert_eq!(e.code(), tonic::Code::AlreadyExists);

    let mut p = pb::produce_service_client::ProduceServiceClient::new(c.channel(0).await);
    let good = batch(&["v".to_string()], 1);
    let mut corrupt = good.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let cases: Vec<(&str, u32, Bytes, i32)> = vec![
        (
            "nope",
            0,
            good.clone(),
            pb::ErrorCode::UnknownTopicOrPartition as i32,
        ),
        (
            "t",
            7,
            good.clone(),
            pb::ErrorCode::UnknownTopicOrPartition as i32,
        ),
        (
            "t",
            0,
            Bytes::from(corrupt),
            pb::ErrorCode::CorruptBatch as i32,
        ),
        (
            "t",
            0,
            Bytes::from_static(b"short"),
            pb::ErrorCode::CorruptBatch as i32,
        ),
    ];
    for (topic, partition, b, code) in cases {
        let r = p
            .produce(pb::ProduceRequest {
                acks: 0,
                timeout_ms: 0,
                partitions: vec![pb::PartitionBatches {
                    topic: topic.into(),
                    partition,
                    batches: vec![b],
                }],
            })
            .await
            .expect("produce call")
            .into_inner();
        let e = r.partitions[0].error.as_ref().expect("an error");
        assert_eq!(e.code, code, "{topic}/{partition}: {}", e.message);
    }
    // Oversized batch: larger than the 4 MiB batch limit.
    let values: Vec<String> = (0..5).map(|_| "x".repeat(1 << 20)).collect();
    let r = p
        .produce(pb::ProduceRequest {
            acks: 0,
            timeout_ms: 0,
            partitions: vec![pb::PartitionBatches {
                topic: "t".into(),
                partition: 0,
                batches: vec![batch(&values, 1)],
            }],
        })
        .await
        .expect("produce call")
        .into_inner();
    assert_eq!(
        r.partitions[0].error.as_ref().map(|e| e.code),
        Some(pb::ErrorCode::BatchTooLarge as i32)
    );

    // Nothing was written; offsets out of range are refused.
    let mut f = pb::fetch_service_client::FetchServiceClient::new(c.channel(0).await);
    let r = f
        .fetch(pb::FetchRequest {
            partitions: vec![pb::PartitionFetch {
                topic: "t".into(),
                partition: 0,
                offset: 5,
                max_bytes: 0,
            }],
            ..Default::default()
        })
        .await
        .expect("fetch")
        .into_inner();
    let pr = &r.partitions[0];
    assert_eq!(pr.high_watermark, 0);
    assert_eq!(
        pr.error.as_ref().map(|e| e.code),
        Some(pb::ErrorCode::OffsetOutOfRange as i32)
    );

    // An idempotent producer id is allocated, and a retried batch is written once.
    let id = p
        .init_producer_id(pb::InitProducerIdRequest {})
        .await
        .expect("init producer id")
        .into_inner();
    assert!(id.producer_id > 0);
    let mut b = BatchBuilder::new(1).producer(ProducerStamp {
        producer_id: id.producer_id,
        producer_epoch: id.producer_epoch as i16,
        base_sequence: 0,
    });
    b.push(1, None, Some(b"once"), &[]);
    let b = b.finish();
    for _ in 0..3 {
        let r = p
            .produce(pb::ProduceRequest {
                acks: 0,
                timeout_ms: 0,
                partitions: vec![pb::PartitionBatches {
                    topic: "t".into(),
                    partition: 0,
                    batches: vec![b.clone()],
                }],
            })
            .await
            .expect("produce")
            .into_inner();
        assert_eq!(r.partitions[0].base_offsets, vec![0]);
    }
    let got = fetch_all(&c, 0, "t", 0).await;
    assert_eq!(got, vec![(0, "once".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_topic_group_commit_interval_near_the_election_timeout_is_refused_at_create_and_alter() {
    let c = TestCluster::start(1).await;
    // Followers acknowledge appends only once fsynced: the interval must stay below half of
    // the shortest election timeout.
    let limit = c.nodes[0].config.raft.election_timeout_min / 2;
    let group_commit = |ms: u128| {
        BTreeMap::from([
            ("flush.policy".to_string(), "group-commit".to_string()),
            ("flush.interval.ms".to_string(), ms.to_string()),
        ])
    };
    let refused = |e: tonic::Status| {
        assert_eq!(
            e.metadata()
                .get("skein-error-code")
                .and_then(|v| v.to_str().ok()),
            Some((pb::ErrorCode::InvalidConfig as i32).to_string().as_str()),
            "{e}"
        );
        assert!(e.message().contains("flush.interval.ms"), "{e}");
        assert!(e.message().contains(&format!("{limit:?}")), "{e}");
    };
    let mut m = pb::metadata_service_client::MetadataServiceClient::new(c.channel(0).await);
    let e = m
        .create_topic(pb::CreateTopicRequest {
            name: "slow".into(),
            partitions: 1,
            replication_factor: 1,
            config: group_commit(limit.as_millis()).into_iter().collect(),
        })
        .await
        .expect_err("an interval of half the election timeout");
    refused(e);
    let all = m
        .metadata(pb::MetadataRequest::default())
        .await
        .expect("metadata")
        .into_inner();
    assert!(all.topics.iter().all(|t| t.name != "slow"), "not created");

    let ok = limit.as_millis() - 1;
    m.create_topic(pb::CreateTopicRequest {
        name: "gc".into(),
        partitions: 1,
        replication_factor: 1,
        config: group_commit(ok).into_iter().collect(),
    })
    .await
    .expect("an interval below the limit");
    let e = m
        .alter_topic_config(pb::AlterTopicConfigRequest {
            name: "gc".into(),
            config: [("flush.interval.ms".to_string(), "10s".to_string())].into(),
        })
        .await
        .expect_err("a longer interval");
    refused(e);
    let t = m
        .metadata(pb::MetadataRequest {
            topics: vec!["gc".into()],
        })
        .await
        .expect("metadata")
        .into_inner();
    assert_eq!(
        t.topics[0].config.get("flush.interval.ms"),
        Some(&ok.to_string()),
        "the topic keeps its setting"
    );
}
