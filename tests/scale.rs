//! Scale (issues 13 and 15): 2,000 partitions with replication factor 3 on 3 local nodes (6,000
//! Raft groups in one test process) all get a leader, take less than 3 MiB of disk per replica
//! before any record is written, each accept a write, and fail over when a node stops: its
//! partitions get new leaders and accept writes again.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skein_client::{Producer, ProducerConfig, ProducerRecord};
use skein_proto::v1 as pb;
use skein_tests::{client, create_topic, TestCluster};

/// Partitions of the topic created, and their replication factor.
const PARTITIONS: u32 = 2000;
const REPLICATION_FACTOR: u32 = 3;
/// The bound issue 13 set on the disk of all replicas together (3 GiB for 1,000 partitions).
const DISK_BYTES_MAX: u64 = (3 << 30) * PARTITIONS as u64 / 1000;
/// Opening 2,000 replicas per node and electing 2,000 leaders, in a debug build on two cores
/// shared with other work.
const WAIT: Duration = Duration::from_secs(400);
/// How often the leaders are looked up: a Metadata answer describes all 2,000 partitions.
const POLL: Duration = Duration::from_secs(1);
/// The topic.
const TOPIC: &str = "wide";

/// Disk space allocated to a file or directory, and its apparent size.
fn sizes(path: &Path) -> (u64, u64) {
    let m =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.blocks() * 512, m.len())
}

/// Every file and directory under `dir` (itself included).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            let entries = std::fs::read_dir(&out[i])
                .unwrap_or_else(|e| panic!("list {}: {e}", out[i].display()));
            for e in entries {
                out.push(e.expect("directory entry").path());
            }
        }
        i += 1;
    }
    out
}

/// Disk space allocated under `dir` (not the apparent size: the active segment is preallocated,
/// other files are shorter than a block).
fn allocated(dir: &Path) -> u64 {
    walk(dir).iter().map(|p| sizes(p).0).sum()
}

/// The kind of a file, for the breakdown: its extension, or its name when it has none.
fn kind(path: &Path) -> String {
    if path.is_dir() {
        return "(directory)".into();
    }
    match path.extension() {
        Some(e) => format!("*.{}", e.to_string_lossy()),
        None => path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
    }
}

/// Files, allocated bytes and apparent bytes under `dir`, by kind of file.
fn breakdown(dir: &Path) -> BTreeMap<String, [u64; 3]> {
    let mut kinds = BTreeMap::new();
    for p in walk(dir) {
        let (blocks, len) = sizes(&p);
        let e = kinds.entry(kind(&p)).or_insert([0; 3]);
        e[0] += 1;
        e[1] += blocks;
        e[2] += len;
    }
    kinds
}

fn print_breakdown(title: &str, kinds: &BTreeMap<String, [u64; 3]>) {
    println!("{title}: files, KiB allocated, bytes apparent");
    for (k, [files, blocks, len]) in kinds {
        let kib = *blocks as f64 / 1024.0;
        println!("  {k:<14} {files:>6} {kib:>10.1} {len:>10}");
    }
}

/// How many of the topic's partitions node `i` names a leader other than `not` for (0 when it
/// cannot answer).
async fn led(c: &TestCluster, i: usize, topic: &str, not: u64) -> usize {
    let mut m = pb::metadata_service_client::MetadataServiceClient::new(c.channel(i).await);
    let req = pb::MetadataRequest {
        topics: vec![topic.into()],
    };
    let Ok(r) = m.metadata(req).await else {
        return 0;
    };
    r.into_inner().topics.first().map_or(0, |t| {
        t.partitions
            .iter()
            .filter(|p| p.leader != 0 && p.leader != not)
            .count()
    })
}

/// Waits until node `i` names a leader other than node `not` for every partition of `topic`.
async fn wait_all_led(c: &TestCluster, i: usize, topic: &str, not: u64) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    let mut poll = tokio::time::interval(POLL);
    loop {
        poll.tick().await;
        let n = led(c, i, topic, not).await;
        if n == PARTITIONS as usize {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "node {} names a leader for only {n} of {PARTITIONS} partitions after {WAIT:?}",
                i + 1
            ));
        }
    }
}

/// Creates the partitions, waits until each has a leader, and returns the disk space allocated
/// under the nodes' data directories (printing where it goes).
async fn create_and_measure(c: &TestCluster, started: Instant) -> Result<u64, String> {
    let topic = TOPIC;
    let created = create_topic(c, 0, topic, PARTITIONS, REPLICATION_FACTOR).await;
    assert_eq!(created.partitions.len(), PARTITIONS as usize);
    assert!(created
        .partitions
        .iter()
        .all(|p| p.replicas.len() == REPLICATION_FACTOR as usize));
    for i in 0..c.nodes.len() {
        c.wait_ready(i).await;
        wait_all_led(c, i, topic, 0).await?;
    }
    let ready = started.elapsed();

    let replicas = u64::from(PARTITIONS * REPLICATION_FACTOR);
    let mut total = 0;
    for n in &c.nodes {
        let bytes = allocated(&n.config.data_dir);
        let parts = allocated(&n.config.data_dir.join("partitions"));
        println!(
            "node {}: {:.1} MiB allocated, {:.1} MiB of it under partitions/",
            n.config.node_id,
            bytes as f64 / f64::from(1 << 20),
            parts as f64 / f64::from(1 << 20)
        );
        total += bytes;
    }
    println!(
        "{replicas} replicas led after {ready:.1?}: {:.1} MiB allocated in total, {:.1} KiB per \
         replica",
        total as f64 / f64::from(1 << 20),
        total as f64 / replicas as f64 / 1024.0,
    );
    let parts = c.nodes[0].config.data_dir.join("partitions");
    print_breakdown("node 1, partitions/", &breakdown(&parts));
    let one = std::fs::read_dir(&parts)
        .expect("list partitions/")
        .map(|e| e.expect("directory entry").path())
        .min()
        .expect("a replica directory");
    print_breakdown(&format!("one replica, {}", one.display()), &breakdown(&one));
    Ok(total)
}

/// Writes one record to every partition of the topic through `brokers`; returns how long it
/// took, or which partitions refused.
async fn write_every_partition(brokers: &str, value: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let producer = Producer::new(client(brokers), ProducerConfig::default())
        .await
        .map_err(|e| format!("producer: {e}"))?;
    let mut deliveries = Vec::with_capacity(PARTITIONS as usize);
    for p in 0..PARTITIONS {
        let r = ProducerRecord::new(TOPIC, value.to_owned()).partition(p);
        let d = producer
            .send(r)
            .await
            .map_err(|e| format!("send to {p}: {e}"))?;
        deliveries.push((p, d));
    }
    producer.flush().await.map_err(|e| format!("flush: {e}"))?;
    let mut failed = Vec::new();
    for (p, d) in deliveries {
        if let Err(e) = d.await {
            failed.push(format!("{p}: {e}"));
        }
    }
    if !failed.is_empty() {
        return Err(format!(
            "{} of {PARTITIONS} partitions refused a write, e.g. {:?}",
            failed.len(),
            &failed[..failed.len().min(3)]
        ));
    }
    Ok(started.elapsed())
}

/// Every partition accepts a write; node 3 stops; node 1 names new leaders for all of its
/// partitions, and every partition accepts a write again.
async fn write_and_fail_over(c: &mut TestCluster) -> Result<(), String> {
    let took = write_every_partition(&c.all_brokers(), "before").await?;
    println!("one record written to each of {PARTITIONS} partitions in {took:.1?}");
    let node3 = c.nodes[2].config.node_id;
    c.nodes[2].stop().await;
    let stopped = Instant::now();
    wait_all_led(c, 0, TOPIC, node3).await?;
    println!(
        "node {node3} stopped: node 1 names other leaders for all partitions after {:.1?}",
        stopped.elapsed()
    );
    let took = write_every_partition(&c.brokers(&[0, 1]), "after").await?;
    println!("after the failover, one record written to each partition in {took:.1?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_rf3_partitions_on_three_nodes_are_led_take_little_disk_accept_writes_and_fail_over(
) {
    let started = Instant::now();
    // The node defaults' timings; a test cluster's are shorter (50 ms heartbeats), which would
    // scan the 6,000 groups of this process 60 times a second.
    let mut c = TestCluster::start_with(3, |c| {
        c.raft.heartbeat_interval = Duration::from_millis(250);
        c.raft.election_timeout_min = Duration::from_millis(1000);
        c.raft.election_timeout_max = Duration::from_millis(2000);
    })
    .await;
    let measured = create_and_measure(&c, started).await;
    let failover = match measured {
        Ok(_) => write_and_fail_over(&mut c).await,
        Err(_) => Ok(()),
    };
    // The nodes stop before any verdict, so that a failed wait leaves no node writing into a
    // data directory being removed.
    let TestCluster { mut nodes, dir } = c;
    futures_util::future::join_all(nodes.iter_mut().map(|n| n.stop())).await;
    dir.close().expect("remove the data directories");
    println!("test took {:.1?}", started.elapsed());
    let total = measured.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        total < DISK_BYTES_MAX,
        "{total} bytes allocated for empty replicas; the bound is {DISK_BYTES_MAX}"
    );
    failover.unwrap_or_else(|e| panic!("{e}"));
}
