//! Retention on a three-node cluster: by size and by time, the log start moves on every replica
//! (through Raft), the whole segments below it are deleted on every replica, consumers below
//! the log start are told and reset as their policy says, and a follower that was down catches
//! up past the deleted segments through a snapshot.

use std::path::PathBuf;
use std::time::Duration;

use skein_client::{
    Admin, ClientError, Consumer, ConsumerConfig, NewTopic, OffsetReset, OffsetSpec, Producer,
    ProducerConfig, ProducerRecord, TopicPartition,
};
use skein_tests::{client, http_get, wait_for, TestCluster};

const WAIT: Duration = Duration::from_secs(30);

/// A cluster whose nodes check retention every 100 ms.
async fn cluster() -> TestCluster {
    TestCluster::start_with(3, |c| {
        c.topic_defaults.retention_check_interval = Duration::from_millis(100);
    })
    .await
}

/// Small segments (a few KB roll one) and small batches.
fn small_segments(t: NewTopic) -> NewTopic {
    t.partitions(1)
        .replication_factor(3)
        .config("segment.bytes", "4096")
        .config("max.batch.bytes", "1024")
}

/// Produces `n` records of about 100 bytes each, in batches of at most 1 KiB; returns the
/// offset after the last one.
async fn produce(brokers: &str, topic: &str, from: usize, n: usize) -> u64 {
    let config = ProducerConfig {
        batch_bytes_max: 1000,
        linger: Duration::from_millis(1),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client(brokers), config)
        .await
        .expect("producer");
    let mut deliveries = Vec::with_capacity(n);
    for i in from..from + n {
        let r = ProducerRecord::new(topic, format!("{i:0100}"));
        deliveries.push(producer.send(r).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    let mut end = 0;
    for d in deliveries {
        end = end.max(d.await.expect("acknowledged").offset + 1);
    }
    end
}

/// The partition directory of `topic`-0 on node `i`.
fn partition_dir(c: &TestCluster, i: usize, topic: &str) -> PathBuf {
    let parts = c.nodes[i].config.data_dir.join("partitions");
    std::fs::read_dir(&parts)
        .expect("partitions dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{topic}-0.")))
        })
        .unwrap_or_else(|| panic!("no directory of {topic}-0 on node {}", i + 1))
}

/// Base offsets of the segments of `topic`-0 on node `i`, from the `.log` file names.
fn segments(c: &TestCluster, i: usize, topic: &str) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(partition_dir(c, i, topic).join("log"))
        .expect("read partition dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    v.sort_unstable();
    v
}

/// Node `i`'s `/metrics` sample of `name` for `topic`-0, if present.
async fn partition_metric(c: &TestCluster, i: usize, name: &str, topic: &str) -> Option<u64> {
    let (_, body) = http_get(c.nodes[i].config.http_addr, "/metrics").await?;
    let prefix = format!("{name}{{topic=\"{topic}\",partition=\"0\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until every node in `nodes` reports a log start of at least `min` for `topic`-0, and
/// returns the smallest one.
async fn wait_log_start(c: &TestCluster, nodes: &[usize], topic: &str, min: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut starts = Vec::with_capacity(nodes.len());
        for &i in nodes {
            let s = partition_metric(c, i, "skein_log_start_offset", topic).await;
            starts.push(s.unwrap_or(0));
        }
        if starts.iter().all(|&s| s >= min) {
            return starts.into_iter().min().unwrap_or(0);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "log start of {topic}-0 on nodes {nodes:?}: {starts:?}, expected >= {min}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no segment of `topic`-0 on node `i` lies entirely below `start`.
async fn wait_segments_deleted(c: &TestCluster, i: usize, topic: &str, start: u64) {
    let ok = wait_for(WAIT, || async {
        let s = segments(c, i, topic);
        // The first segment holds `start` (or is the only one): everything before is gone.
        !s.is_empty() && s.get(1).is_none_or(|&second| second > start) && s[0] > 0
    })
    .await;
    assert!(
        ok.is_some(),
        "node {}: segments {:?} with log start {start}",
        i + 1,
        segments(c, i, topic)
    );
}

/// Node `i`'s `skein_retention_deleted_bytes_total`.
async fn deleted_bytes(c: &TestCluster, i: usize) -> u64 {
    let Some((_, body)) = http_get(c.nodes[i].config.http_addr, "/metrics").await else {
        return 0;
    };
    body.lines()
        .find_map(|l| l.strip_prefix("skein_retention_deleted_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn leader_of(admin: &Admin, topic: &str) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leader = admin
            .describe_topic(topic)
            .await
            .ok()
            .and_then(|t| t.partitions[0].leader);
        if let Some(l) = leader {
            return l as usize - 1;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader of {topic}-0"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_by_size_moves_the_log_start_on_every_replica_and_a_stopped_follower_catches_up()
{
    let mut c = cluster().await;
    let all = c.brokers(&[0, 1, 2]);
    let admin = Admin::new(client(&all));
    admin
        .create_topic(small_segments(NewTopic::new("sized")).config("retention.bytes", "16384"))
        .await
        .expect("create topic");
    let leader = leader_of(&admin, "sized").await;
    let down = (leader + 1) % 3;
    let up: Vec<usize> = (0..3).filter(|&i| i != down).collect();
    produce(&all, "sized", 0, 20).await;
    c.nodes[down].stop().await;

    // About 50 KB: a dozen segments, of which retention keeps about 16 KB.
    let running = c.brokers(&up);
    let end = produce(&running, "sized", 20, 500).await;
    // About 60 KB were written and retention keeps about 16 KB: wait until the leader has
    // deleted most of the rest (retention runs every 100 ms, a prefix at a time).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let deleted = deleted_bytes(&c, leader).await;
        if deleted >= 30_000 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leader deleted only {deleted} bytes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader_start = wait_log_start(&c, &[leader], "sized", 1).await;
    // Every running replica moves its log start to the same offset (through Raft) and deletes
    // its segments below it.
    let start = wait_log_start(&c, &up, "sized", leader_start).await;
    assert!(start < end, "log start {start} below the end {end}");
    for &i in &up {
        wait_segments_deleted(&c, i, "sized", start).await;
        assert!(
            deleted_bytes(&c, i).await > 0,
            "node {} deleted segments",
            i + 1
        );
    }

    // The earliest offset clients see is the new log start.
    let tp = TopicPartition::new("sized", 0);
    let earliest = admin
        .list_offsets(&[(tp.clone(), OffsetSpec::Earliest)])
        .await
        .expect("list offsets");
    assert!(earliest[0].offset >= start, "{earliest:?}");

    // A consumer at offset 0 with reset `none` is told, with both bounds.
    let strict = ConsumerConfig {
        offset_reset: OffsetReset::Error,
        fetch_wait_max: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client(&running), strict).expect("consumer");
    consumer.assign([tp.clone()]);
    consumer.seek(&tp, 0).expect("seek");
    let err = loop {
        match consumer.poll().await {
            Err(e) => break e,
            Ok(records) => assert!(records.is_empty(), "records below the log start"),
        }
    };
    match &err {
        ClientError::OffsetOutOfRange { message, .. } => {
            assert!(message.contains("offset 0"), "{message}");
            assert!(message.contains("(log start)"), "{message}");
            assert!(message.contains("(high watermark"), "{message}");
        }
        other => panic!("expected OffsetOutOfRange, got {other}"),
    }

    // With reset `earliest` it moves to the log start and reads from there.
    let lenient = ConsumerConfig {
        offset_reset: OffsetReset::Earliest,
        fetch_wait_max: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client(&running), lenient).expect("consumer");
    consumer.assign([tp.clone()]);
    consumer.seek(&tp, 0).expect("seek");
    let first = tokio::time::timeout(WAIT, consumer.next_record())
        .await
        .expect("a record in time")
        .expect("a record");
    assert!(first.offset >= start, "first record at {}", first.offset);

    // The stopped follower comes back: the leader no longer holds what it missed, so it installs
    // a snapshot, continues after it, and ends with the same log start and no older segments.
    c.nodes[down].start().await;
    c.wait_ready(down).await;
    let end = produce(&all, "sized", 520, 20).await;
    let ok = wait_for(WAIT, || async {
        partition_metric(&c, down, "skein_partition_high_watermark", "sized")
            .await
            .is_some_and(|h| h >= end)
    })
    .await;
    assert!(ok.is_some(), "the restarted follower caught up to {end}");
    let restarted = wait_log_start(&c, &[down], "sized", start).await;
    assert!(restarted >= start);
    assert!(
        segments(&c, down, "sized")[0] >= start,
        "no segment of the restarted follower starts below the log start: {:?}",
        segments(&c, down, "sized")
    );
    // And it serves the retained records itself.
    let config = ConsumerConfig {
        offset_reset: OffsetReset::Earliest,
        fetch_wait_max: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client(&all), config).expect("consumer");
    consumer.assign([tp.clone()]);
    consumer.seek(&tp, end - 1).expect("seek");
    let last = tokio::time::timeout(WAIT, consumer.next_record())
        .await
        .expect("a record in time")
        .expect("a record");
    assert_eq!(last.offset, end - 1);
    for n in &mut c.nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_by_time_deletes_old_segments_on_every_replica_after_alter_config() {
    let mut c = cluster().await;
    let all = c.brokers(&[0, 1, 2]);
    let admin = Admin::new(client(&all));
    admin
        .create_topic(small_segments(NewTopic::new("timed")))
        .await
        .expect("create topic");
    let end = produce(&all, "timed", 0, 200).await;
    // No retention yet: every replica keeps everything.
    for i in 0..3 {
        assert_eq!(
            partition_metric(&c, i, "skein_log_start_offset", "timed").await,
            Some(0)
        );
    }

    admin
        .alter_topic_config(
            "timed",
            [("retention.ms".to_string(), "1".to_string())].into(),
        )
        .await
        .expect("alter config");
    let described = admin.describe_topic("timed").await.expect("describe");
    assert_eq!(
        described.config.get("retention.ms").map(String::as_str),
        Some("1")
    );
    let start = wait_log_start(&c, &[0, 1, 2], "timed", 1).await;
    assert!(start <= end);
    for i in 0..3 {
        wait_segments_deleted(&c, i, "timed", start).await;
    }
    // Bad values are refused, and the topic keeps its setting.
    let err = admin
        .alter_topic_config(
            "timed",
            [("retention.ms".to_string(), "soon".to_string())].into(),
        )
        .await
        .expect_err("an invalid value");
    assert!(err.to_string().contains("retention.ms"), "{err}");
    for n in &mut c.nodes {
        n.stop().await;
    }
}
