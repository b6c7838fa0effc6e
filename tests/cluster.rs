//! Three-node clusters through the Rust client: replication, leader failure, node restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use skein_client::{Admin, NewTopic, Producer, ProducerConfig, ProducerRecord};
use skein_proto::v1 as pb;
use skein_record::BatchIter;
use skein_tests::process::ProcessCluster;
use skein_tests::{channel, client, consume_all, create_topic, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_replicate_100k_records_none_missing_none_duplicated_in_order() {
    let c = TestCluster::start(3).await;
    let brokers = c.all_brokers();
    let admin = Admin::new(client(&brokers));
    let topic = admin
        .create_topic(NewTopic::new("events").partitions(6).replication_factor(3))
        .await
        .expect("create topic");
    assert_eq!(topic.partitions.len(), 6);
    // Replicas and preferred leaders are spread evenly.
    let mut leads: BTreeMap<u64, usize> = BTreeMap::new();
    for p in &topic.partitions {
        assert_eq!(p.replicas.len(), 3);
        *leads.entry(p.replicas[0]).or_default() += 1;
    }
    assert_eq!(leads.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);

    let producer = Producer::new(client(&brokers), ProducerConfig::default())
        .await
        .expect("producer");
    const N: usize = 100_000;
    let mut deliveries = Vec::with_capacity(N);
    for i in 0..N {
        let r = ProducerRecord::new("events", format!("{i}")).key(format!("key-{}", i % 997));
        deliveries.push(producer.send(r).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    let mut acked: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for d in deliveries {
        let m = d.await.expect("acknowledged");
        acked.entry(m.partition).or_default().push(m.offset);
    }
    for offsets in acked.values() {
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..offsets.len() as u64).collect::<Vec<_>>(),
            "offsets are dense"
        );
    }

    let records = consume_all(&brokers, "events", 6, N).await;
    assert_eq!(records.len(), N, "no duplicates");
    let mut seen = BTreeSet::new();
    let mut last_offset: BTreeMap<u32, u64> = BTreeMap::new();
    let mut last_per_key: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for r in &records {
        let v: u64 = std::str::from_utf8(r.value.as_deref().expect("value"))
            .expect("utf8")
            .parse()
            .expect("number");
        assert!(seen.insert(v), "value {v} twice");
        if let Some(prev) = last_offset.insert(r.partition, r.offset) {
            assert!(
                r.offset > prev,
                "offsets increase within partition {}",
                r.partition
            );
        }
        let key = r.key.as_deref().expect("key").to_vec();
        if let Some(prev) = last_per_key.insert(key, v) {
            assert!(v > prev, "per-key order kept");
        }
    }
    assert_eq!(seen.len(), N, "none missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_during_produce_every_acknowledged_record_present_exactly_once() {
    let mut c = ProcessCluster::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_skein-node-under-test")),
        3,
    )
    .await;
    let brokers = c.brokers();
    let admin = Admin::new(client(&brokers));
    admin
        .create_topic(NewTopic::new("pay").partitions(3).replication_factor(3))
        .await
        .expect("create topic");
    let leader = admin
        .describe_topic("pay")
        .await
        .expect("describe")
        .partitions[0]
        .leader
        .expect("partition 0 has a leader");

    let producer = Producer::new(client(&brokers), ProducerConfig::default())
        .await
        .expect("producer");
    let mut acked = BTreeSet::new();
    let mut failed = 0usize;
    let mut killed = false;
    for chunk in 0..40u64 {
        let mut ds = Vec::new();
        for i in 0..250u64 {
            let v = chunk * 250 + i;
            ds.push((
                v,
                producer
                    .send(ProducerRecord::new("pay", format!("{v}")).partition(0))
                    .await
                    .expect("send"),
            ));
        }
        for (v, d) in ds {
            match d.await {
                Ok(_) => {
                    acked.insert(v);
                }
                Err(_) => failed += 1,
            }
        }
        if chunk == 10 {
            c.kill((leader - 1) as usize);
            killed = true;
        }
    }
    assert!(killed);
    assert!(
        acked.len() >= 9000,
        "writes continued after the leader died: {} acked, {failed} failed",
        acked.len()
    );

    c.restart((leader - 1) as usize).await;
    let records = consume_all(&brokers, "pay", 1, acked.len()).await;
    let mut seen = BTreeSet::new();
    for r in &records {
        let v: u64 = std::str::from_utf8(r.value.as_deref().expect("value"))
            .expect("utf8")
            .parse()
            .expect("number");
        assert!(seen.insert(v), "value {v} appears twice");
    }
    for v in &acked {
        assert!(seen.contains(v), "acknowledged value {v} lost");
    }

    // The restarted node caught up and serves fetches from its own replica.
    let restarted = c.nodes[(leader - 1) as usize].client;
    let mut f = pb::fetch_service_client::FetchServiceClient::new(channel(restarted).await);
    let total = records.len() as u64;
    let mut got = 0u64;
    let mut offset = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "restarted node served {got} of {total}"
        );
        let r = f
            .fetch(pb::FetchRequest {
                partitions: vec![pb::PartitionFetch {
                    topic: "pay".into(),
                    partition: 0,
                    offset,
                    max_bytes: 0,
                }],
                max_wait_ms: 200,
                min_bytes: 1,
                max_bytes: 0,
            })
            .await
            .expect("fetch from the restarted node")
            .into_inner();
        let p = &r.partitions[0];
        assert!(p.error.is_none(), "{:?}", p.error);
        for b in BatchIter::new(p.records.clone()) {
            let b = b.expect("batch");
            got += b
                .records()
                .expect("records")
                .filter(|r| r.as_ref().is_ok_and(|r| r.offset >= offset))
                .count() as u64;
        }
        offset = p.next_offset;
    }
    assert_eq!(got, total);
}

/// `(leader, leader_term)` of each partition of `topic` as node `i` describes it (empty when it
/// does not answer).
async fn described_leaders(c: &TestCluster, i: usize, topic: &str) -> Vec<(u64, u64)> {
    let mut m = pb::metadata_service_client::MetadataServiceClient::new(c.channel(i).await);
    let Ok(r) = m
        .metadata(pb::MetadataRequest {
            topics: vec![topic.into()],
        })
        .await
    else {
        return Vec::new();
    };
    r.into_inner()
        .topics
        .first()
        .map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.leader, p.leader_term))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every node describes each of the `partitions` partitions of `topic` with a
/// leader and term that `want(partition, (leader, term))` accepts; returns node 1's view.
async fn wait_for_leaders(
    c: &TestCluster,
    topic: &str,
    partitions: usize,
    want: impl Fn(usize, (u64, u64)) -> bool,
) -> Vec<(u64, u64)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut views = Vec::new();
        for i in 0..c.nodes.len() {
            views.push(described_leaders(c, i, topic).await);
        }
        let agreed = views
            .iter()
            .all(|v| v.len() == partitions && v.iter().enumerate().all(|(p, l)| want(p, *l)));
        if agreed {
            return views.swap_remove(0);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the nodes' views of {topic}'s leaders: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_without_a_replica_learn_every_new_leader_term_from_the_metadata() {
    let mut c = TestCluster::start(3).await;
    // One replica per partition, one partition per node: two nodes of three know each
    // partition's leader only from the leadership reports in the metadata.
    let info = create_topic(&c, 0, "hints", 3, 1).await;
    let holders: Vec<u64> = info.partitions.iter().map(|p| p.replicas[0]).collect();
    let mut sorted = holders.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [1, 2, 3], "one partition per node");
    let before = wait_for_leaders(&c, "hints", 3, |p, (leader, term)| {
        leader == holders[p] && term >= 1
    })
    .await;

    // Partition 0's only replica restarts and leads it again in a newer term.
    let h = holders[0] as usize - 1;
    c.nodes[h].stop().await;
    c.nodes[h].start().await;
    c.wait_ready(h).await;
    let old_term = before[0].1;
    let after = wait_for_leaders(&c, "hints", 3, |p, (leader, term)| {
        leader == holders[p] && (p != 0 || term > old_term)
    })
    .await;
    assert!(after[0].1 > old_term, "{before:?} then {after:?}");
}
