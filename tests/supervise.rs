//! Running replicas follow their node and topic (issue 13): a partition replica whose Raft group
//! stops on a fatal storage error is taken out of service, the node reports not-ready naming it,
//! and it is reopened with backoff once the fault is gone, with every acknowledged record intact;
//! a topic's altered settings apply to its running replicas without a restart.

use std::path::PathBuf;
use std::time::Duration;

use skein_proto::v1 as pb;
use skein_record::BatchBuilder;
use skein_tests::{http_get, wait_for, TestCluster};

const WAIT: Duration = Duration::from_secs(30);

/// One record of `len` bytes.
fn big_batch(len: usize) -> bytes::Bytes {
    let mut b = BatchBuilder::new(1);
    b.push(1, None, Some(&vec![b'x'; len]), &[]);
    b.finish()
}

async fn produce(c: &TestCluster, batch: bytes::Bytes) -> Result<u64, String> {
    let mut p = pb::produce_service_client::ProduceServiceClient::new(c.channel(0).await);
    let r = p
        .produce(pb::ProduceRequest {
            acks: 0,
            timeout_ms: 5000,
            partitions: vec![pb::PartitionBatches {
                topic: "z".into(),
                partition: 0,
                batches: vec![batch],
            }],
        })
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    match &r.partitions[0].error {
        Some(e) => Err(format!("{e:?}")),
        None => Ok(r.partitions[0].base_offsets[0]),
    }
}

/// The log directory of the only replica of `z`/0 on node 1.
fn log_dir(c: &TestCluster) -> PathBuf {
    let parts = c.nodes[0].config.data_dir.join("partitions");
    let dir = std::fs::read_dir(&parts)
        .expect("partitions directory")
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("z-0."))
        .expect("the replica's directory");
    dir.path().join("log")
}

async fn sample(c: &TestCluster, line_start: &str) -> u64 {
    let body = http_get(c.nodes[0].config.http_addr, "/metrics")
        .await
        .expect("metrics")
        .1;
    body.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_by_a_storage_error_is_reported_and_reopened() {
    let c = TestCluster::start(1).await;
    let mut m = pb::metadata_service_client::MetadataServiceClient::new(c.channel(0).await);
    m.create_topic(pb::CreateTopicRequest {
        name: "z".into(),
        partitions: 1,
        replication_factor: 1,
        config: [
            ("segment.bytes".to_string(), "128 KiB".to_string()),
            ("max.batch.bytes".to_string(), "100 KiB".to_string()),
        ]
        .into(),
    })
    .await
    .expect("create topic");
    let first = big_batch(80 << 10);
    let acked = wait_for(WAIT, || {
        let b = first.clone();
        let c = &c;
        async move { produce(c, b).await.is_ok() }
    })
    .await;
    assert!(acked.is_some(), "the first batch is acknowledged");
    // The next segment (base offset 1) cannot be created: a directory holds its name. The
    // second batch does not fit the first segment, so its append fails and stops the group.
    let blocker = log_dir(&c).join(format!("{:020}.log", 1));
    std::fs::create_dir(&blocker).expect("block the next segment");
    assert!(produce(&c, big_batch(80 << 10)).await.is_err());
    let reported = wait_for(WAIT, || async {
        let ready = http_get(c.nodes[0].config.http_addr, "/readyz").await;
        let named = ready.is_some_and(|(code, body)| code == 503 && body.contains("z/0"));
        named && sample(&c, "skein_replica_failures_total").await >= 1
    })
    .await;
    assert!(
        reported.is_some(),
        "the node reports the stopped replica as not ready, with a metric"
    );
    assert_eq!(sample(&c, "skein_replicas_down{node=\"1\"}").await, 1);

    std::fs::remove_dir(&blocker).expect("remove the fault");
    c.wait_ready(0).await;
    let next = wait_for(WAIT, || async {
        produce(&c, big_batch(80 << 10)).await.is_ok()
    })
    .await;
    assert!(next.is_some(), "the reopened replica accepts writes");
    assert_eq!(sample(&c, "skein_replicas_down{node=\"1\"}").await, 0);
    // The acknowledged record is still there.
    let mut f = pb::fetch_service_client::FetchServiceClient::new(c.channel(0).await);
    let r = f
        .fetch(pb::FetchRequest {
            partitions: vec![pb::PartitionFetch {
                topic: "z".into(),
                partition: 0,
                offset: 0,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("fetch")
        .into_inner();
    let p = &r.partitions[0];
    assert!(p.error.is_none(), "{p:?}");
    let h = skein_record::BatchHeader::parse(&p.records).expect("a batch");
    assert_eq!((h.base_offset, h.record_count), (0, 1));
}

async fn alter(c: &TestCluster, key: &str, value: &str) {
    let mut m = pb::metadata_service_client::MetadataServiceClient::new(c.channel(0).await);
    m.alter_topic_config(pb::AlterTopicConfigRequest {
        name: "z".into(),
        config: [(key.to_string(), value.to_string())].into(),
    })
    .await
    .expect("alter topic config");
}

fn segments(c: &TestCluster) -> usize {
    std::fs::read_dir(log_dir(c))
        .expect("log directory")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_topic_settings_apply_to_running_replicas() {
    let c = TestCluster::start(1).await;
    skein_tests::create_topic(&c, 0, "z", 1, 1).await;
    let ok = wait_for(WAIT, || async {
        produce(&c, big_batch(40 << 10)).await.is_ok()
    })
    .await;
    assert!(ok.is_some(), "a 40 KiB batch is accepted by default");
    alter(&c, "max.batch.bytes", "16 KiB").await;
    let refused = wait_for(WAIT, || async {
        produce(&c, big_batch(40 << 10))
            .await
            .is_err_and(|e| e.contains("exceeds the maximum of 16384 bytes"))
    })
    .await;
    assert!(refused.is_some(), "the lowered max.batch.bytes refuses it");
    assert_eq!(segments(&c), 1);
    alter(&c, "segment.bytes", "64 KiB").await;
    let rolled = wait_for(WAIT, || async {
        // Batches of 10 KiB: a 64 KiB segment rolls after a few.
        let _ = produce(&c, big_batch(10 << 10)).await;
        segments(&c) > 1
    })
    .await;
    assert!(
        rolled.is_some(),
        "the lowered segment.bytes rolls the active segment"
    );
}
