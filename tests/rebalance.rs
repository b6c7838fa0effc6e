//! Preferred leaders take their partitions back (Kafka's `auto.leader.rebalance.enable`): after
//! a node restarts, leadership spreads back across the nodes, and nothing written is lost.

use std::collections::BTreeMap;
use std::time::Duration;

use skein_client::{Producer, ProducerConfig, ProducerRecord};
use skein_proto::v1 as pb;
use skein_tests::{client, consume_all, create_topic, wait_for, TestCluster};

const TOPIC: &str = "spread";
const PARTITIONS: u32 = 6;

/// The leader of each partition of [`TOPIC`] as node `i` describes it (0: none known), or
/// `None` when it does not answer.
async fn leaders(c: &TestCluster, i: usize) -> Option<Vec<u64>> {
    let mut m = pb::metadata_service_client::MetadataServiceClient::new(c.channel(i).await);
    let r = m
        .metadata(pb::MetadataRequest {
            topics: vec![TOPIC.into()],
        })
        .await
        .ok()?
        .into_inner();
    let t = r.topics.first()?;
    Some(t.partitions.iter().map(|p| p.leader).collect())
}

/// Waits up to `timeout` until each of `nodes` describes every partition's leader as `want`
/// accepts it (partition, leader); panics naming `what` and the last views otherwise.
async fn wait_for_leaders(
    c: &TestCluster,
    nodes: &[usize],
    timeout: Duration,
    what: &str,
    want: impl Fn(usize, u64) -> bool,
) {
    let last = std::cell::RefCell::new(Vec::new());
    let (last_ref, want) = (&last, &want);
    let ok = wait_for(timeout, || async move {
        let mut views = Vec::new();
        for i in nodes {
            views.push(leaders(c, *i).await.unwrap_or_default());
        }
        let agreed = views.iter().all(|v| {
            v.len() == PARTITIONS as usize && v.iter().enumerate().all(|(p, l)| want(p, *l))
        });
        *last_ref.borrow_mut() = views;
        agreed
    })
    .await;
    let last = last.into_inner();
    assert!(ok.is_some(), "{what}; the nodes' views: {last:?}");
}

/// Produces one record `value` to each partition; the offsets acknowledged by partition.
async fn write_each(producer: &Producer, round: u32) -> BTreeMap<u32, u64> {
    let mut deliveries = Vec::new();
    for p in 0..PARTITIONS {
        let r = ProducerRecord::new(TOPIC, format!("p{p}-r{round}")).partition(p);
        deliveries.push(producer.send(r).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    let mut acked = BTreeMap::new();
    for d in deliveries {
        let m = d.await.expect("acknowledged");
        acked.insert(m.partition, m.offset);
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_leads_its_preferred_partitions_again_and_no_record_is_lost() {
    let mut c = TestCluster::start(3).await;
    let brokers = c.all_brokers();
    let info = create_topic(&c, 0, TOPIC, PARTITIONS, 3).await;
    let preferred: Vec<u64> = info.partitions.iter().map(|p| p.replicas[0]).collect();
    for node in 1..=3 {
        let n = preferred.iter().filter(|p| **p == node).count();
        assert_eq!(
            n, 2,
            "node {node} is preferred for two partitions: {preferred:?}"
        );
    }
    let all = [0, 1, 2];
    let every_partition_led = "every partition has a leader";
    wait_for_leaders(
        &c,
        &all,
        Duration::from_secs(20),
        every_partition_led,
        |_, l| l != 0,
    )
    .await;

    let producer = Producer::new(client(&brokers), ProducerConfig::default())
        .await
        .expect("producer");
    let first = write_each(&producer, 0).await;
    assert_eq!(first.len(), PARTITIONS as usize);

    // Node 3 goes away: the survivors lead everything.
    c.nodes[2].stop().await;
    let survivors = [0, 1];
    let failed_over = "the survivors lead every partition";
    wait_for_leaders(
        &c,
        &survivors,
        Duration::from_secs(20),
        failed_over,
        |_, l| l != 0 && l != 3,
    )
    .await;

    // Node 3 comes back and takes back the partitions it is the preferred leader of.
    c.nodes[2].start().await;
    c.wait_ready(2).await;
    let rebalanced = "node 3 leads its preferred partitions again";
    wait_for_leaders(&c, &all, Duration::from_secs(60), rebalanced, |p, l| {
        l != 0 && (preferred[p] != 3 || l == 3)
    })
    .await;

    // Nothing written before is lost, and every partition takes a write.
    let records = consume_all(&brokers, TOPIC, PARTITIONS, PARTITIONS as usize).await;
    let mut found: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    for r in &records {
        let v = std::str::from_utf8(r.value.as_deref().expect("value")).expect("utf8");
        found
            .entry(r.partition)
            .or_default()
            .push((r.offset, v.to_owned()));
    }
    for (p, offset) in &first {
        let want = vec![(*offset, format!("p{p}-r0"))];
        assert_eq!(found.get(p), Some(&want), "partition {p} kept its record");
    }
    let second = write_each(&producer, 1).await;
    for (p, offset) in &second {
        assert_eq!(*offset, first[p] + 1, "partition {p}: offsets stay dense");
    }
}
