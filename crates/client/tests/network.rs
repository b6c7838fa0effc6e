//! The client's network behaviour (redirection, metadata refresh, retries without duplicates,
//! fetch decoding, admin calls) against `FakeBroker`, an in-process test double of the broker's
//! gRPC API on `127.0.0.1:0`. The end-to-end tests against the real `skein-node` live with the
//! broker.

mod support;

use std::time::Duration;

use skein_client::partitioner::partition_for_key;
use skein_client::{
    Acks, Admin, Client, ClientConfig, ClientError, Compression, Consumer, ConsumerConfig,
    NewTopic, OffsetReset, OffsetSpec, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use support::fake_broker::{FakeCluster, Faults};

fn client(brokers: &str) -> Client {
    Client::new(ClientConfig {
        retry_backoff_min: Duration::from_millis(5),
        retry_backoff_max: Duration::from_millis(50),
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::new(brokers)
    })
    .expect("valid config")
}

fn quick_producer_config() -> ProducerConfig {
    ProducerConfig {
        linger: Duration::from_millis(1),
        ..ProducerConfig::default()
    }
}

#[tokio::test]
async fn produce_follows_a_not_leader_hint_to_the_named_leader() {
    let cluster = FakeCluster::default();
    let a = cluster.start_node(1).await;
    let _b = cluster.start_node(2).await;
    cluster.create_topic("t", &[2]);
    // Node 1 claims to lead everything in its first metadata answer: the client's view is stale.
    cluster.set_faults(
        1,
        Faults {
            hint_leader: true,
            stale_metadata_answers: 1,
            ..Faults::default()
        },
    );
    let producer = Producer::new(client(&a), quick_producer_config())
        .await
        .expect("producer");
    let meta = producer
        .send_and_wait(ProducerRecord::new("t", "hello"))
        .await
        .expect("acknowledged");
    assert_eq!((meta.partition, meta.offset), (0, 0));
    assert_eq!(
        cluster.counters(1).produce,
        1,
        "first try at the stale leader"
    );
    assert_eq!(
        cluster.counters(2).produce,
        1,
        "then straight to the named leader"
    );
    assert_eq!(
        cluster.counters(1).metadata + cluster.counters(2).metadata,
        1,
        "the hint is followed without a metadata refresh"
    );
    assert_eq!(cluster.values("t", 0), vec![(0, b"hello".to_vec())]);
}

#[tokio::test]
async fn not_leader_without_a_hint_refreshes_metadata() {
    let cluster = FakeCluster::default();
    let a = cluster.start_node(1).await;
    let _b = cluster.start_node(2).await;
    cluster.create_topic("t", &[2, 2]);
    cluster.set_faults(
        1,
        Faults {
            hint_leader: false,
            stale_metadata_answers: 1,
            ..Faults::default()
        },
    );
    let producer = Producer::new(client(&a), quick_producer_config())
        .await
        .expect("producer");
    let meta = producer
        .send_and_wait(ProducerRecord::new("t", "v").partition(1))
        .await
        .expect("acknowledged after a refresh");
    assert_eq!(meta.partition, 1);
    let refreshes = cluster.counters(1).metadata + cluster.counters(2).metadata;
    assert!(refreshes >= 2, "metadata was fetched again ({refreshes})");
    assert_eq!(cluster.values("t", 1), vec![(0, b"v".to_vec())]);
}

#[tokio::test]
async fn a_retried_batch_after_a_lost_ack_is_written_once() {
    let cluster = FakeCluster::default();
    let a = cluster.start_node(1).await;
    cluster.create_topic("t", &[1]);
    cluster.set_faults(
        1,
        Faults {
            hint_leader: true,
            lose_produce_acks: 1,
            ..Faults::default()
        },
    );
    let producer = Producer::new(client(&a), quick_producer_config())
        .await
        .expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..50 {
        deliveries.push(
            producer
                .send(ProducerRecord::new("t", format!("r{i}")).partition(0))
                .await
                .expect("queued"),
        );
    }
    let mut offsets = Vec::new();
    for d in deliveries {
        offsets.push(d.await.expect("acknowledged").offset);
    }
    assert_eq!(
        offsets,
        (0..50).collect::<Vec<u64>>(),
        "dense, in send order"
    );
    assert!(
        cluster.counters(1).deduplicated >= 1,
        "the retry was recognised"
    );
    let stored = cluster.values("t", 0);
    assert_eq!(stored.len(), 50, "no duplicates");
    for (i, (off, v)) in stored.iter().enumerate() {
        assert_eq!(*off, i as u64);
        assert_eq!(v, format!("r{i}").as_bytes());
    }
}

#[tokio::test]
async fn keyed_records_land_on_kafka_partitions_in_order() {
    let cluster = FakeCluster::default();
    let a = cluster.start_node(1).await;
    cluster.create_topic("t", &[1, 1, 1, 1, 1, 1]);
    let producer = Producer::new(
        client(&a),
        ProducerConfig {
            acks: Acks::Leader,
            ..quick_producer_config()
        },
    )
    .await
    .expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..30 {
        let key = format!("key-{}", i % 3);
        deliveries.push((
            key.clone(),
            producer
                .send(ProducerRecord::new("t", format!("{i}")).key(key))
                .await
                .expect("queued"),
        ));
    }
    for (key, d) in deliveries {
        let meta = d.await.expect("acknowledged");
        assert_eq!(meta.partition, partition_for_key(key.as_bytes(), 6));
    }
    for p in 0..6 {
        let values: Vec<u32> = cluster
            .values("t", p)
            .iter()
            .map(|(_, v)| String::from_utf8_lossy(v).parse().expect("number"))
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "partition {p} in order: {values:?}"
        );
    }
}

#[tokio::test]
async fn keyless_records_share_a_sticky_partition_per_batch() {
    let cluster = FakeCluster::default();
    let a = cluster.start_node(1).await;
    cluster.create_topic("t", &[1, 1, 1, 1]);
    let producer = Producer::new(
        client(&a),
        ProducerConfig {
            linger: Duration::from_millis(50),
            ..ProducerConfig::default()
        },
    )
    .await
    .expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..20 {
        deliveries.push(
            producer
                .send(ProducerRecord::new("t", format!("{i}")))
                .await
                .expect("queued"),
        );
    }
    producer.flush().await.expect("flushed");
    let mut partitions = Vec::new();
    for d in deliveries {
        partitions.push(d.await.expect("acknowledged").partition);
    }
    assert!(
        partitions.windows(2).all(|w| w[0] == w[1]),
        "one lingering batch, one partition: {partitions:?}"
    );
}

#[tokio::test]
async fn compressed_batches_round_trip_through_the_consumer() {
    for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let cluster = FakeCluster::default();
        let a = cluster.start_node(1).await;
        cluster.create_topic("t", &[1]);
        let c = client(&a);
        let producer = Producer::new(
            c.clone(),
            ProducerConfig {
                compression: codec,
                ..quick_producer_config()
            },
        )
        .await
        .expect("producer");
        let mut deliveries = Vec::new();
        for i in 0..100 {
            deliveries.push(
                producer
                    .send(
                        ProducerRecord::new("t", format!("value {i} {}", "x".repeat(50)))
                            .header("n", format!("{i}")),
                    )
                    .await
                    .expect("queued"),
            );
        }
        for d in deliveries {
            d.await.expect("acknowledged");
        }
        let mut consumer = Consumer::new(c, ConsumerConfig::default()).expect("consumer");
        consumer.assign([TopicPartition::new("t", 0)]);
        consumer.seek_to_beginning(&[]).await.expect("seek");
        let mut got = Vec::new();
        while got.len() < 100 {
            got.extend(consumer.poll().await.expect("poll"));
        }
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.offset, i as u64, "{codec}");
            assert_eq!(
                r.value.as_deref(),
                Some(format!("value {i} {}", "x".repeat(50)).as_bytes()),
                "{codec}"
            );
            assert_eq!(r.headers[0].key, "n");
        }
    }
}

#[tokio::test]
async fn consumer_follows_a_status_level_not_leader_and_skips_control_batches() {
    let cluster = FakeCluster::default();
    let a = cluster.start_node(1).await;
    let _b = cluster.start_node(2).await;
    cluster.create_topic("t", &[2]);
    let c = client(&a);
    let producer = Producer::new(c.clone(), quick_producer_config())
        .await
        .expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..10 {
        deliveries.push(
            producer
                .send(ProducerRecord::new("t", format!("{i}")))
                .await
                .expect("queued"),
        );
    }
    for d in deliveries {
        d.await.expect("acknowledged");
    }
    // The client's view goes stale: node 1 claims the partition and answers fetches with a
    // NOT_LEADER status naming node 2; node 2 mixes blank batches into its answers.
    cluster.set_faults(
        1,
        Faults {
            hint_leader: true,
            not_leader_as_status: true,
            stale_metadata_answers: 1,
            ..Faults::default()
        },
    );
    cluster.set_faults(
        2,
        Faults {
            hint_leader: true,
            blank_batches_in_fetch: true,
            ..Faults::default()
        },
    );
    let fresh = client(&a);
    let mut consumer = Consumer::new(fresh, ConsumerConfig::default()).expect("consumer");
    let tp = TopicPartition::new("t", 0);
    consumer.assign([tp.clone()]);
    consumer.seek(&tp, 3).expect("assigned");
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < 7 && tokio::time::Instant::now() < deadline {
        got.extend(consumer.poll().await.expect("poll"));
    }
    let offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (3..10).collect::<Vec<u64>>());
    assert!(cluster.counters(2).fetch >= 1);
    assert_eq!(consumer.position(&tp), Some(10));
    assert_eq!(consumer.high_watermark(&tp), Some(10));
}

#[tokio::test]
async fn consumer_pause_resume_and_seek_to_timestamp() {
    let cluster = FakeCluster::default();
    let a = cluster.start_node(1).await;
    cluster.create_topic("t", &[1, 1]);
    let c = client(&a);
    let producer = Producer::new(c.clone(), quick_producer_config())
        .await
        .expect("producer");
    for (p, ts) in [(0u32, 1_000i64), (0, 2_000), (1, 1_500), (1, 3_000)] {
        producer
            .send_and_wait(
                ProducerRecord::new("t", format!("{p}@{ts}"))
                    .partition(p)
                    .timestamp(ts),
            )
            .await
            .expect("acknowledged");
    }
    let mut consumer = Consumer::new(
        c,
        ConsumerConfig {
            fetch_wait_max: Duration::from_millis(50),
            offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .expect("consumer");
    let p0 = TopicPartition::new("t", 0);
    let p1 = TopicPartition::new("t", 1);
    consumer.assign([p0.clone(), p1.clone()]);
    consumer.seek_to_timestamp(&[], 1_800).await.expect("seek");
    assert_eq!(consumer.position(&p0), Some(1));
    assert_eq!(consumer.position(&p1), Some(1));
    consumer.pause(std::slice::from_ref(&p1)).expect("assigned");
    let got = consumer.poll().await.expect("poll");
    assert!(
        got.iter().all(|r| r.partition == 0),
        "paused partition not fetched"
    );
    assert_eq!(got.len(), 1);
    consumer
        .resume(std::slice::from_ref(&p1))
        .expect("assigned");
    let got = consumer.poll().await.expect("poll");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value.as_deref(), Some(&b"1@3000"[..]));
    assert!(matches!(
        consumer.seek(&TopicPartition::new("t", 9), 0),
        Err(ClientError::NotAssigned { .. })
    ));
}

#[tokio::test]
async fn admin_manages_topics_and_reads_offsets() {
    let cluster = FakeCluster::default();
    let a = cluster.start_node(1).await;
    let _b = cluster.start_node(2).await;
    let admin = Admin::new(client(&a));
    let t = admin
        .create_topic(
            NewTopic::new("orders")
                .partitions(4)
                .config("retention.ms", "1000"),
        )
        .await
        .expect("created");
    assert_eq!(t.partitions.len(), 4);
    let e = admin
        .create_topic(NewTopic::new("orders"))
        .await
        .expect_err("exists");
    assert!(matches!(e, ClientError::TopicAlreadyExists { .. }), "{e}");
    let topics = admin.list_topics().await.expect("listed");
    assert_eq!(
        topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["orders"]
    );
    let d = admin.describe_topic("orders").await.expect("described");
    assert_eq!(
        d.config.get("retention.ms").map(String::as_str),
        Some("1000")
    );
    assert!(matches!(
        admin.describe_topic("nope").await,
        Err(ClientError::UnknownTopicOrPartition { .. })
    ));
    let cluster_desc = admin.describe_cluster().await.expect("cluster");
    assert_eq!(cluster_desc.nodes.len(), 2);
    assert_eq!(cluster_desc.controller_id, Some(1));
    // Partitions 1 and 3 are led by node 2: list_offsets must ask it.
    let producer = Producer::new(admin.client().clone(), quick_producer_config())
        .await
        .expect("producer");
    producer
        .send_and_wait(ProducerRecord::new("orders", "x").partition(1))
        .await
        .expect("acknowledged");
    let offsets = admin
        .list_offsets(&[
            (TopicPartition::new("orders", 1), OffsetSpec::Latest),
            (TopicPartition::new("orders", 0), OffsetSpec::Earliest),
        ])
        .await
        .expect("offsets");
    assert_eq!(offsets[0].offset, 1);
    assert_eq!(offsets[0].high_watermark, 1);
    assert_eq!(offsets[1].offset, 0);
    admin.delete_topic("orders").await.expect("deleted");
    assert!(matches!(
        admin.delete_topic("orders").await,
        Err(ClientError::UnknownTopicOrPartition { .. })
    ));
}

#[tokio::test]
async fn sending_to_a_missing_topic_fails_with_a_clear_error() {
    let cluster = FakeCluster::default();
    let a = cluster.start_node(1).await;
    let c = Client::new(ClientConfig {
        max_retries: 1,
        retry_backoff_min: Duration::from_millis(5),
        retry_backoff_max: Duration::from_millis(5),
        ..ClientConfig::new(&a)
    })
    .expect("valid");
    let producer = Producer::new(c, quick_producer_config())
        .await
        .expect("producer");
    let e = producer
        .send(ProducerRecord::new("missing", "v"))
        .await
        .expect_err("no such topic");
    assert!(
        matches!(e, ClientError::UnknownTopicOrPartition { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("skein topic create"), "{e}");
}

#[tokio::test]
async fn an_unreachable_cluster_says_what_to_do() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let c = client("127.0.0.1:1");
    let e = Admin::new(c.clone())
        .list_topics()
        .await
        .expect_err("unreachable");
    assert!(matches!(e, ClientError::NoBrokerReachable { .. }), "{e}");
    let s = e.to_string();
    assert!(s.contains("cannot reach any broker at 127.0.0.1:1"), "{s}");
    assert!(s.contains("cargo run --release --bin skein-node"), "{s}");
    let e = Producer::new(c, ProducerConfig::default())
        .await
        .expect_err("unreachable");
    assert!(matches!(e, ClientError::NoBrokerReachable { .. }), "{e}");
}

#[tokio::test]
async fn dropping_the_producer_still_delivers_buffered_records() {
    let cluster = FakeCluster::default();
    let a = cluster.start_node(1).await;
    cluster.create_topic("t", &[1]);
    let producer = Producer::new(
        client(&a),
        ProducerConfig {
            linger: Duration::from_secs(30),
            ..ProducerConfig::default()
        },
    )
    .await
    .expect("producer");
    let d = producer
        .send(ProducerRecord::new("t", "last words"))
        .await
        .expect("queued");
    drop(producer);
    let meta = tokio::time::timeout(Duration::from_secs(5), d)
        .await
        .expect("sent on close, not after the 30 s linger")
        .expect("acknowledged");
    assert_eq!(meta.offset, 0);
}

/// Sends `partitions * per_partition` records of 300 bytes, keyed across `partitions`
/// partitions of one fake node that refuses produce requests over 256 KiB (and says so in its
/// metadata when `advertised`), through a producer with `request_bytes_max` and a 1 MiB buffer
/// (backpressure: the records are ~3x that), and returns (acknowledged, the failures, the
/// largest request's batch bytes).
async fn produce_under_a_request_limit(
    request_bytes_max: usize,
    per_partition: usize,
    advertised: bool,
) -> (usize, Vec<ClientError>, usize) {
    const PARTITIONS: u32 = 24;
    let cluster = FakeCluster::default();
    cluster.set_request_bytes_max(BROKER_LIMIT);
    if advertised {
        cluster.advertise_request_bytes_max();
    }
    let addr = cluster.start_node(1).await;
    cluster.create_topic("wide", &[1; PARTITIONS as usize]);
    let producer = Producer::new(
        client(&addr),
        ProducerConfig {
            // Long linger: batches fill up on every partition while requests are in flight,
            // and `flush` drains them all at once.
            linger: Duration::from_secs(10),
            batch_bytes_max: 32 * 1024,
            buffer_bytes_max: 1024 * 1024,
            request_bytes_max,
            ..ProducerConfig::default()
        },
    )
    .await
    .expect("producer");
    let value = vec![b'v'; 300];
    let mut deliveries = Vec::new();
    for i in 0..PARTITIONS as usize * per_partition {
        let p = (i % PARTITIONS as usize) as u32;
        let record = ProducerRecord::new("wide", value.clone()).partition(p);
        deliveries.push(producer.send(record).await.expect("accepted"));
    }
    producer.flush().await.expect("flushed");
    let (mut ok, mut failed) = (0, Vec::new());
    for d in deliveries {
        match d.await {
            Ok(_) => ok += 1,
            Err(e) => failed.push(e),
        }
    }
    (ok, failed, cluster.counters(1).produce_request_bytes_max)
}

/// The fake node's limit on a produce request in [`produce_under_a_request_limit`].
const BROKER_LIMIT: usize = 256 * 1024;

#[tokio::test]
async fn many_partitions_under_backpressure_fail_no_record_within_the_request_limit() {
    let max = 128 * 1024;
    // ~3 MB of records through a 1 MiB buffer into 24 partitions.
    let (ok, failed, largest) = produce_under_a_request_limit(max, 400, false).await;
    assert_eq!(
        (ok, failed.len()),
        (24 * 400, 0),
        "every record acknowledged"
    );
    assert!(largest <= max, "a request of {largest} batch bytes > {max}");
}

#[tokio::test]
async fn request_bytes_max_decides_what_the_broker_accepts() {
    // 24 partitions x ~30 KB drained by one flush: one request of ~700 KB with a limit above
    // the broker's 256 KiB, which a broker that does not advertise its limit refuses; a limit
    // below it splits the same records.
    let (ok, failed, _) = produce_under_a_request_limit(1024 * 1024, 100, false).await;
    assert!(
        !failed.is_empty(),
        "the broker refused the oversized request ({ok} ok)"
    );
    for e in &failed {
        // A typed error naming the broker's limit, not a raw gRPC status.
        assert!(
            matches!(e, ClientError::RequestTooLarge { size, max, .. } if *max == BROKER_LIMIT && *size > *max),
            "{e:?}"
        );
        assert!(e.to_string().contains("request_bytes_max"), "{e}");
    }
    let (ok, failed, largest) = produce_under_a_request_limit(200 * 1024, 100, false).await;
    assert_eq!((ok, failed.len()), (2400, 0));
    assert!(largest <= 200 * 1024, "{largest}");
}

#[tokio::test]
async fn an_advertised_broker_limit_caps_a_larger_request_bytes_max() {
    // The same records and configuration that the broker refuses above: a broker that
    // advertises its limit gets requests below it, and no record fails.
    let (ok, failed, largest) = produce_under_a_request_limit(1024 * 1024, 100, true).await;
    assert_eq!((ok, failed.len()), (2400, 0), "{:?}", failed.first());
    assert!(largest <= BROKER_LIMIT, "{largest} > {BROKER_LIMIT}");
}

#[tokio::test]
async fn an_explicit_offset_outside_the_log_names_both_bounds() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;
    cluster.create_topic("short", &[1]);
    let producer = Producer::new(client(&addr), quick_producer_config())
        .await
        .expect("producer");
    for i in 0..5 {
        producer
            .send_and_wait(ProducerRecord::new("short", format!("r{i}")))
            .await
            .expect("acknowledged");
    }
    let mut consumer = Consumer::new(client(&addr), ConsumerConfig::default()).expect("consumer");
    let tp = TopicPartition::new("short", 0);
    consumer.assign([tp.clone()]);
    let e = consumer
        .seek_in_range(&tp, 999_999)
        .await
        .expect_err("past the end");
    assert!(matches!(e, ClientError::OffsetOutOfRange { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("999999") && text.contains("from 0") && text.contains("to 5"),
        "{text}"
    );
    // The high watermark itself is a valid position (the next record written).
    consumer.seek_in_range(&tp, 5).await.expect("at the end");
    consumer.seek_in_range(&tp, 3).await.expect("inside");
    let records = consumer.poll().await.expect("poll");
    assert_eq!(records.first().map(|r| r.offset), Some(3));
}

#[tokio::test]
async fn reset_none_refuses_a_partition_without_a_position() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;
    cluster.create_topic("t", &[1]);
    let mut consumer = Consumer::new(
        client(&addr),
        ConsumerConfig {
            offset_reset: OffsetReset::Error,
            ..ConsumerConfig::default()
        },
    )
    .expect("consumer");
    consumer.assign([TopicPartition::new("t", 0)]);
    let e = consumer.poll().await.expect_err("no start position");
    assert!(matches!(e, ClientError::NoStartPosition { .. }), "{e:?}");
    assert!(e.to_string().contains("skein group reset"), "{e}");
}
