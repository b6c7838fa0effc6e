//! Real `GroupConsumer`s sharing a topic on a real node: a consumer dies, its partitions move,
//! every record is processed at least once and none is skipped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skein_client::{
    Admin, Client, ClientConfig, ConsumerConfig, GroupConsumer, GroupConsumerConfig, NewTopic,
    OffsetReset, Producer, ProducerConfig, ProducerRecord,
};
use skein_tests::TestCluster;

type Seen = Arc<Mutex<Vec<(u32, u64)>>>;

fn consumer_config() -> GroupConsumerConfig {
    let mut c = GroupConsumerConfig::new("workers");
    c.session_timeout = Duration::from_secs(2);
    c.enable_auto_commit = false;
    c.auto_offset_reset = OffsetReset::Earliest;
    c.fetch = ConsumerConfig {
        fetch_wait_max: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    c
}

/// Consumes and commits after processing, until `stop` is set.
async fn work(brokers: String, seen: Seen, stop: Arc<std::sync::atomic::AtomicBool>) {
    let client = Client::new(ClientConfig::new(&brokers)).expect("client");
    let mut c = GroupConsumer::new(client, consumer_config()).expect("consumer");
    c.subscribe(["work"]);
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        let records = match c.poll().await {
            Ok(r) => r,
            Err(e) if e.is_retryable() => continue,
            Err(e) => panic!("poll: {e}"),
        };
        if records.is_empty() {
            continue;
        }
        seen.lock()
            .expect("lock")
            .extend(records.iter().map(|r| (r.partition, r.offset)));
        if let Err(e) = c.commit().await {
            // A commit refused after a rebalance is fine: those records are processed again.
            assert!(e.is_retryable() || e.code().is_some(), "commit: {e}");
        }
    }
    let _ = c.close().await;
}

#[test]
fn a_dead_consumers_partitions_move_and_nothing_is_skipped() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()
        .expect("runtime");
    let (cluster, brokers) = rt.block_on(async {
        let c = TestCluster::start(1).await;
        let brokers = c.nodes[0].client_addr().to_string();
        let admin = Admin::new(Client::new(ClientConfig::new(&brokers)).expect("client"));
        admin
            .create_topic(NewTopic::new("work").partitions(6).replication_factor(1))
            .await
            .expect("topic");
        let p = Producer::new(
            Client::new(ClientConfig::new(&brokers)).expect("client"),
            ProducerConfig::default(),
        )
        .await
        .expect("producer");
        let mut ds = Vec::new();
        for i in 0..6000u32 {
            ds.push(
                p.send(ProducerRecord::new("work", format!("{i}")).key(format!("k{i}")))
                    .await
                    .expect("send"),
            );
        }
        for d in ds {
            d.await.expect("ack");
        }
        (c, brokers)
    });
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Two consumers on the main runtime, one on a runtime of its own that is torn down to kill it.
    let a = rt.spawn(work(brokers.clone(), seen.clone(), stop.clone()));
    let b = rt.spawn(work(brokers.clone(), seen.clone(), stop.clone()));
    let doomed_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    doomed_rt.spawn(work(
        brokers.clone(),
        seen.clone(),
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    ));
    // Let it take part, then kill it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.lock().expect("lock").len() < 500 {
        assert!(
            std::time::Instant::now() < deadline,
            "consumers made no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    doomed_rt.shutdown_background();
    // Everything is processed at least once, by the survivors, within a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let per_partition: BTreeMap<u32, std::collections::BTreeSet<u64>> = seen
            .lock()
            .expect("lock")
            .iter()
            .fold(BTreeMap::new(), |mut m, (p, o)| {
                m.entry(*p).or_default().insert(*o);
                m
            });
        let distinct: usize = per_partition.values().map(|s| s.len()).sum();
        if distinct == 6000 {
            // No offset was skipped in any partition.
            for (p, offs) in &per_partition {
                let max = *offs.iter().next_back().expect("some");
                assert_eq!(
                    offs.len() as u64,
                    max + 1,
                    "partition {p} skipped an offset"
                );
            }
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {distinct} of 6000 records processed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(10), a).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), b).await;
    });
    let total = seen.lock().expect("lock").len();
    // Duplicates come only from the uncommitted window of the killed consumer and rebalances.
    assert!(total - 6000 <= 3000, "{} duplicates", total - 6000);
    drop(cluster);
}
