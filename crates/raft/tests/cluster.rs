//! Three replicas of one partition in one process over real gRPC on loopback.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use skein_raft::storage::Retention;
use skein_raft::{Error, MetaCommand, MetaOutcome, RaftConfig, Registry, METADATA_GROUP_ID};
use tokio::task::JoinSet;

const WAIT: Duration = Duration::from_secs(20);

/// Produces `count` batches through the leader with `parallel` concurrent writers; returns
/// (batch number, base offset, record count) of every acknowledged batch.
async fn produce_many(
    node: &TestNode,
    first: u64,
    count: u64,
    parallel: u64,
) -> Vec<(u64, u64, u32)> {
    let p = node.partition();
    let mut set = JoinSet::new();
    for w in 0..parallel {
        let p = p.clone();
        set.spawn(async move {
            let mut acked = Vec::new();
            let mut n = first + w;
            while n < first + count {
                let r = p.produce(data_batch(n, 4, 100)).await.expect("produce");
                acked.push((n, r.base_offset, r.record_count));
                n += parallel;
            }
            acked
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.expect("writer task"));
    }
    all
}

fn assert_dense(acked: &[(u64, u64, u32)]) {
    let mut by_offset: Vec<_> = acked.iter().map(|(_, o, c)| (*o, *c)).collect();
    by_offset.sort_unstable();
    for w in by_offset.windows(2) {
        assert_eq!(
            w[0].0 + u64::from(w[0].1),
            w[1].0,
            "offsets are dense and increasing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_elect_and_replicate_identical_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(dir.path(), log_config()).await;
    let l = leader(&nodes, &[0, 1, 2], WAIT).await;

    let started = Instant::now();
    let acked = produce_many(&nodes[l], 0, 3000, 32).await;
    let elapsed = started.elapsed();
    eprintln!(
        "replicated 3000 batches of 4 records in {elapsed:?} ({:.0} batches/s, debug build)",
        3000.0 / elapsed.as_secs_f64()
    );
    assert_eq!(acked.len(), 3000);
    assert_dense(&acked);

    let last = nodes[l]
        .partition()
        .raft()
        .metrics()
        .borrow()
        .last_applied
        .expect("applied")
        .index;
    for n in &nodes {
        applied(n, last, WAIT).await;
    }
    let reference = log_summary(&nodes[l]).await;
    assert!(reference.len() > 3000);
    for n in &nodes {
        assert_eq!(log_summary(n).await, reference, "node {} log differs", n.id);
        assert_eq!(
            n.partition().high_watermark(),
            nodes[l].partition().high_watermark()
        );
    }
    assert_eq!(nodes[l].partition().high_watermark(), 3000 * 4);
    for n in &mut nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_stop_elects_new_leader_loses_nothing_and_restarted_replica_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(dir.path(), log_config()).await;
    let old = leader(&nodes, &[0, 1, 2], WAIT).await;
    let mut acked = produce_many(&nodes[old], 0, 200, 8).await;

    let crc_before: BTreeMap<u64, u32> = log_summary(&nodes[old])
        .await
        .into_iter()
        .filter(|e| e.5 == 0)
        .map(|e| (e.3, e.2))
        .collect();

    nodes[old].stop().await;
    let stopped_at = Instant::now();
    let running: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new = leader(&nodes, &running, WAIT).await;
    let took = stopped_at.elapsed();
    // Two election timeouts, plus slack for a loaded 2-core CI machine where the test's own
    // threads compete with the three replicas (seen up to ~5 s under a load average of 8).
    let bound = Duration::from_millis(config().election_timeout_max_ms * 2);
    assert_ne!(new, old);
    assert!(
        took <= bound + Duration::from_secs(8),
        "new leader after {took:?}, bound {bound:?}"
    );

    // Writes continue; nothing acknowledged is lost.
    acked.extend(produce_many(&nodes[new], 200, 200, 8).await);
    assert_dense(&acked);
    let after: BTreeMap<u64, u32> = log_summary(&nodes[new])
        .await
        .into_iter()
        .filter(|e| e.5 == 0)
        .map(|e| (e.3, e.2))
        .collect();
    for (n, offset, _) in &acked {
        assert!(
            after.contains_key(offset),
            "acked batch {n} at {offset} lost"
        );
    }
    for (o, crc) in &crc_before {
        assert_eq!(after.get(o), Some(crc), "batch at offset {o} changed");
    }

    // The stopped replica restarts from its directory and catches up.
    nodes[old].restart(log_config()).await;
    let last = nodes[new]
        .partition()
        .raft()
        .metrics()
        .borrow()
        .last_applied
        .expect("applied")
        .index;
    applied(&nodes[old], last, WAIT).await;
    let reference = log_summary(&nodes[new]).await;
    let restarted = log_summary(&nodes[old]).await;
    assert_eq!(&restarted[..reference.len()], &reference[..]);
    for n in &mut nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_behind_the_retained_log_catches_up_through_a_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = log_config();
    log.retention = Retention {
        time: None,
        bytes: Some(128 << 10),
    };
    let mut nodes = cluster(dir.path(), log.clone()).await;
    let l = leader(&nodes, &[0, 1, 2], WAIT).await;
    let lag = (l + 1) % 3;
    produce_many(&nodes[l], 0, 50, 4).await;
    let behind = nodes[lag]
        .partition()
        .raft()
        .metrics()
        .borrow()
        .last_log_index
        .expect("has log");
    nodes[lag].stop().await;

    produce_many(&nodes[l], 50, 1500, 16).await;
    let purged = nodes[l]
        .partition()
        .enforce_retention()
        .await
        .expect("retention")
        .expect("retention deletes a prefix");
    assert!(
        purged > behind + 10,
        "purged through {purged}, follower at {behind}"
    );
    let first_retained = nodes[l].partition().with_log(|l| l.first_index()).await;
    assert!(
        first_retained > behind,
        "the leader no longer holds the follower's next entry"
    );

    nodes[lag].restart(log).await;
    let last = nodes[l]
        .partition()
        .raft()
        .metrics()
        .borrow()
        .last_applied
        .expect("applied")
        .index;
    applied(&nodes[lag], last, WAIT).await;
    let m = nodes[lag].partition().raft().metrics().borrow().clone();
    assert!(
        m.snapshot.is_some_and(|s| s.index >= purged),
        "follower installed a snapshot: {:?}",
        m.snapshot
    );
    // Writes after the snapshot replicate normally, with the leader's offsets.
    produce_many(&nodes[l], 1550, 50, 4).await;
    let last = nodes[l]
        .partition()
        .raft()
        .metrics()
        .borrow()
        .last_applied
        .expect("applied")
        .index;
    applied(&nodes[lag], last, WAIT).await;
    let leader_log = log_summary(&nodes[l]).await;
    let follower_log = log_summary(&nodes[lag]).await;
    let start = follower_log.first().expect("follower has entries").0;
    let overlap: Vec<_> = leader_log
        .iter()
        .filter(|e| e.0 >= start)
        .cloned()
        .collect();
    assert_eq!(follower_log, overlap);
    assert_eq!(
        nodes[lag].partition().high_watermark(),
        nodes[l].partition().high_watermark()
    );
    for n in &mut nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_idempotent_batch_is_not_appended_twice_even_after_leader_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(dir.path(), log_config()).await;
    let l = leader(&nodes, &[0, 1, 2], WAIT).await;
    let p = nodes[l].partition();
    let first = p
        .produce(idempotent_batch(42, 0, 0, 3))
        .await
        .expect("produce");
    assert!(!first.duplicate);
    let retry = p
        .produce(idempotent_batch(42, 0, 0, 3))
        .await
        .expect("retry");
    assert_eq!(
        (retry.base_offset, retry.duplicate),
        (first.base_offset, true)
    );
    // Concurrent retries of one batch are appended once.
    let (a, b) = tokio::join!(
        p.produce(idempotent_batch(42, 0, 3, 2)),
        p.produce(idempotent_batch(42, 0, 3, 2))
    );
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert_eq!(a.base_offset, b.base_offset);
    assert!(a.duplicate != b.duplicate);
    // A gap in the sequence is refused.
    assert!(matches!(
        p.produce(idempotent_batch(42, 0, 9, 1)).await,
        Err(Error::OutOfOrderSequence { expected: 5, .. })
    ));
    let second = a.base_offset;
    drop(p);

    nodes[l].stop().await;
    let running: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    let new = leader(&nodes, &running, WAIT).await;
    let p = nodes[new].partition();
    let retry = p
        .produce(idempotent_batch(42, 0, 3, 2))
        .await
        .expect("retry on new leader");
    assert_eq!((retry.base_offset, retry.duplicate), (second, true));
    let next = p
        .produce(idempotent_batch(42, 0, 5, 1))
        .await
        .expect("next batch");
    assert!(!next.duplicate);

    let copies = log_summary(&nodes[new])
        .await
        .into_iter()
        .filter(|e| e.5 == 0)
        .count();
    assert_eq!(copies, 3, "each idempotent batch is in the log once");
    for n in &mut nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_dropped_mid_flight_leaves_nothing_behind_and_its_retry_succeeds() {
    use std::future::Future as _;
    use std::task::Poll;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(dir.path(), log_config()).await;
    let l = leader(&nodes, &[0, 1, 2], WAIT).await;
    let p = nodes[l].partition();
    p.produce(idempotent_batch(9, 0, 0, 2))
        .await
        .expect("first batch");
    {
        // Started (handed to Raft on its first poll), then dropped, as a request timeout or a
        // closed connection drops it.
        let mut w = Box::pin(p.produce(idempotent_batch(9, 0, 2, 3)));
        let first = std::future::poll_fn(|cx| Poll::Ready(w.as_mut().poll(cx))).await;
        assert!(
            first.is_pending(),
            "a replicated write cannot finish on its first poll"
        );
    }
    let retry = p
        .produce(idempotent_batch(9, 0, 2, 3))
        .await
        .expect("the retry of a dropped write succeeds");
    let next = p
        .produce(idempotent_batch(9, 0, 5, 1))
        .await
        .expect("the producer's sequence goes on");
    assert!(!next.duplicate);
    assert_eq!(next.base_offset, retry.base_offset + 3);
    let records: u32 = log_summary(&nodes[l])
        .await
        .iter()
        .filter(|e| e.5 == 0)
        .map(|e| e.4)
        .sum();
    assert_eq!(records, 6, "the dropped batch is in the log once");
    drop(p);
    for n in &mut nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_vote_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(dir.path(), log_config()).await;
    let l = leader(&nodes, &[0, 1, 2], WAIT).await;
    produce_many(&nodes[l], 0, 10, 2).await;
    let f = (l + 1) % 3;
    let vote = nodes[f].partition().raft().metrics().borrow().vote;
    assert!(vote.leader_id().get_term() >= 1);
    nodes[f].stop().await;
    // Keep the rest of the cluster quiet so nothing but the disk can restore the vote.
    for i in (0..3).filter(|&i| i != f) {
        nodes[i].stop().await;
    }
    nodes[f].restart(log_config()).await;
    let loaded = nodes[f]
        .partition()
        .raft()
        .with_raft_state(|st| *st.vote_ref())
        .await
        .expect("raft running");
    assert!(
        loaded.leader_id().get_term() >= vote.leader_id().get_term(),
        "vote {loaded:?} after restart regressed from {vote:?}"
    );
    nodes[f].stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_group_replicates_and_snapshots() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let node = TestNode::start(1, &dir.path().join("n"), listener, log_config()).await;
    let meta = node
        .registry
        .create_metadata(METADATA_GROUP_ID, &dir.path().join("meta"), log_config())
        .await
        .expect("metadata group");
    let members = BTreeMap::from([(1, skein_raft::openraft::BasicNode::new(addr.to_string()))]);
    meta.initialize(members).await.expect("initialize");
    meta.raft()
        .wait(Some(WAIT))
        .metrics(|m| m.state.is_leader(), "leads")
        .await
        .expect("leader");
    let r = meta
        .propose(&MetaCommand::RegisterNode {
            id: 1,
            info: skein_raft::NodeInfo {
                peer_addr: addr.to_string(),
                client_addr: addr.to_string(),
                kafka_addr: String::new(),
            },
        })
        .await
        .expect("register");
    assert_eq!(r, MetaOutcome::Ok);
    let r = meta
        .propose(&MetaCommand::CreateTopic {
            name: "orders".into(),
            replicas: vec![vec![1], vec![1]],
            configs: BTreeMap::new(),
        })
        .await
        .expect("create topic");
    assert_eq!(r, MetaOutcome::TopicCreated { groups: vec![1, 2] });
    let applied = meta
        .raft()
        .metrics()
        .borrow()
        .last_applied
        .expect("applied")
        .index;
    meta.purge_through(applied)
        .await
        .expect("snapshot and purge");
    assert_eq!(meta.metadata().topics["orders"].partitions.len(), 2);
    let _ = Registry::new(9, RaftConfig::default()).expect("registry");
    let mut node = node;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn divergent_uncommitted_follower_tail_is_truncated_and_replaced_by_the_leaders_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(dir.path(), log_config()).await;
    let old = leader(&nodes, &[0, 1, 2], WAIT).await;
    let mut acked = produce_many(&nodes[old], 0, 20, 4).await;
    let committed = last_applied(&nodes[old]);
    for n in &nodes {
        applied(n, committed, WAIT).await;
    }
    let old_term = nodes[old]
        .partition()
        .raft()
        .metrics()
        .borrow()
        .current_term;

    // Cut the leader off; it appends writes it cannot commit.
    isolate(&nodes, old);
    let before = last_log_index(&nodes[old]);
    const STUCK: u64 = 5;
    let mut stuck = JoinSet::new();
    for n in 0..STUCK {
        let p = nodes[old].partition();
        stuck.spawn(async move { p.produce(data_batch(1000 + n, 4, 100)).await });
    }
    nodes[old]
        .partition()
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.last_log_index >= Some(before + STUCK),
            "isolated leader appends the writes",
        )
        .await
        .expect("isolated leader appends in time");
    let divergent: Vec<EntrySummary> = log_summary(&nodes[old])
        .await
        .into_iter()
        .filter(|e| e.0 > before)
        .collect();
    assert_eq!(divergent.len() as u64, STUCK);
    assert!(divergent.iter().all(|e| e.1 == old_term && e.5 == 0));

    // The other two elect a new leader and commit different entries at those indexes.
    let running: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new = leader(&nodes, &running, WAIT).await;
    assert_ne!(new, old);
    acked.extend(produce_many(&nodes[new], 2000, 3 * STUCK, 4).await);
    assert_dense(&acked);
    // Nothing the isolated leader holds was acknowledged.
    while let Some(r) = stuck.try_join_next() {
        let r = r.expect("stuck writer task");
        assert!(r.is_err(), "an uncommittable write was acknowledged: {r:?}");
    }

    // Heal: the old leader steps down, its tail is truncated and replaced.
    heal(&nodes, old);
    let last = last_applied(&nodes[new]);
    assert!(
        last > before + STUCK,
        "the new leader's log covers the divergent indexes"
    );
    for n in &nodes {
        caught_up(n, last, WAIT).await;
    }
    let reference = log_summary(&nodes[new]).await;
    for n in &nodes {
        assert_eq!(log_summary(n).await, reference, "node {} log differs", n.id);
        assert_eq!(
            n.partition().high_watermark(),
            nodes[new].partition().high_watermark(),
            "node {} high watermark differs",
            n.id
        );
    }
    for d in &divergent {
        let now = reference
            .iter()
            .find(|e| e.0 == d.0)
            .expect("index still in the log");
        assert!(
            now.1 > old_term && now != d,
            "divergent entry {d:?} replaced"
        );
    }
    let offsets: std::collections::BTreeSet<u64> = reference.iter().map(|e| e.3).collect();
    for (n, offset, _) in &acked {
        assert!(offsets.contains(offset), "acked batch {n} at {offset} lost");
    }
    // The clients of the truncated writes are told to go to the new leader.
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Some(r) = tokio::time::timeout_at(deadline, stuck.join_next())
        .await
        .expect("truncated writes are answered in time")
    {
        let r = r.expect("stuck writer task");
        assert!(
            matches!(r, Err(Error::NotLeader { .. })),
            "truncated write answered with {r:?}"
        );
    }
    for n in &mut nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_replica_restores_its_high_watermark_before_any_new_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(dir.path(), log_config()).await;
    let l = leader(&nodes, &[0, 1, 2], WAIT).await;
    produce_many(&nodes[l], 0, 50, 4).await;
    let last = last_applied(&nodes[l]);
    let hw = nodes[l].partition().high_watermark();
    assert_eq!(hw, 50 * 4);
    for n in &nodes {
        applied(n, last, WAIT).await;
        assert_eq!(n.partition().high_watermark(), hw);
    }
    for n in &mut nodes {
        n.stop().await;
    }
    // Each replica alone: no leader can exist, so only its own disk can restore the watermark.
    for i in [(l + 1) % 3, l] {
        nodes[i].restart(log_config()).await;
        // Openraft re-applies the committed entries before the group starts.
        assert_eq!(
            nodes[i].partition().high_watermark(),
            hw,
            "node {} high watermark after restart",
            nodes[i].id
        );
        let m = nodes[i]
            .partition()
            .raft()
            .wait(Some(WAIT))
            .metrics(|m| m.last_applied.is_some(), "metrics published")
            .await
            .expect("metrics in time");
        assert_eq!(m.last_applied.map(|x| x.index), Some(last));
        nodes[i].stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_damaged_while_down_cuts_its_log_and_gets_the_entries_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(dir.path(), log_config()).await;
    let l = leader(&nodes, &[0, 1, 2], WAIT).await;
    let acked = produce_many(&nodes[l], 0, 400, 8).await;
    assert_dense(&acked);
    let f = (l + 1) % 3;
    let last = last_applied(&nodes[l]);
    applied(&nodes[f], last, WAIT).await;
    nodes[f].stop().await;

    // Flip one payload bit of the third batch of the follower's first (sealed) segment.
    let log_dir = nodes[f].dir.join(format!("group-{GROUP}")).join("log");
    let first = log_dir.join("00000000000000000000.log");
    let mut bytes = std::fs::read(&first).expect("read first segment");
    let mut pos = 0usize;
    for _ in 0..2 {
        let h = skein_raft::record::BatchHeader::parse(&bytes[pos..]).expect("header");
        pos += h.batch_len as usize;
    }
    let at = pos + skein_raft::record::HEADER_LEN + 5;
    assert!(
        at < bytes.len(),
        "the first segment holds more than two batches"
    );
    bytes[at] ^= 0x20;
    std::fs::write(&first, &bytes).expect("write damaged segment");

    // More writes while it is down, then it comes back.
    let more = produce_many(&nodes[l], 400, 100, 8).await;
    nodes[f].restart(log_config()).await;
    assert!(
        log_dir.join("quarantine").is_dir(),
        "the damaged range was moved aside"
    );
    let last = last_applied(&nodes[l]);
    applied(&nodes[f], last, WAIT).await;
    let reference = log_summary(&nodes[l]).await;
    let repaired = log_summary(&nodes[f]).await;
    assert_eq!(
        repaired, reference,
        "the repaired replica equals the leader"
    );
    assert_eq!(
        nodes[f].partition().high_watermark(),
        (acked.len() + more.len()) as u64 * 4
    );
    for n in &mut nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_whole_cluster_restart_is_not_appended_twice() {
    // Found by the fault suite (kill-all): openraft restores a leader that restarts with its own
    // committed vote in the same term; a batch it appended before the restart, uncommitted, was
    // in its log but not in its producer table, and the client's retry was appended again.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(dir.path(), log_config()).await;
    let l = leader(&nodes, &[0, 1, 2], WAIT).await;
    let p = nodes[l].partition();
    p.produce(idempotent_batch(7, 0, 0, 3))
        .await
        .expect("first batch");
    isolate(&nodes, l);
    let stuck = tokio::time::timeout(
        Duration::from_millis(500),
        p.produce(idempotent_batch(7, 0, 3, 2)),
    )
    .await;
    assert!(stuck.is_err(), "an isolated leader cannot commit");
    assert!(last_log_index(&nodes[l]) > last_applied(&nodes[l]));
    drop(p);
    for n in &mut nodes {
        n.stop().await;
    }
    for n in &mut nodes {
        n.restart(log_config()).await;
    }
    let new = leader(&nodes, &[0, 1, 2], WAIT).await;
    let p = nodes[new].partition();
    let retry = p
        .produce(idempotent_batch(7, 0, 3, 2))
        .await
        .expect("retry after the restart");
    let again = p
        .produce(idempotent_batch(7, 0, 3, 2))
        .await
        .expect("second retry");
    assert_eq!(retry.base_offset, again.base_offset);
    let last = last_applied(&nodes[new]);
    for n in &nodes {
        applied(n, last, WAIT).await;
    }
    let copies = log_summary(&nodes[new])
        .await
        .into_iter()
        .filter(|e| e.5 == 0)
        .count();
    assert_eq!(
        copies, 2,
        "each batch is in the log once (leader {new}, was {l})"
    );
    for n in &mut nodes {
        n.stop().await;
    }
}

/// Produces one batch through whichever node leads (leadership may move while the cluster
/// settles); returns how long the accepted write took.
async fn produce_on_leader(nodes: &[TestNode], n: u64) -> Duration {
    let deadline = Instant::now() + WAIT;
    loop {
        let l = leader(nodes, &[0, 1, 2], WAIT).await;
        let started = Instant::now();
        match nodes[l].partition().produce(data_batch(n, 1, 10)).await {
            Ok(_) => return started.elapsed(),
            Err(Error::NotLeader { .. }) if Instant::now() < deadline => continue,
            Err(e) => panic!("write {n}: {e}"),
        }
    }
}

/// The flush policy applies on the replicated path: under group commit an acknowledged write
/// waited for the interval (nothing else was pending to fill `bytes`); with a `bytes` threshold
/// that one batch reaches, it is fsynced at once whatever the interval. (The interval stays well
/// below the RPC and election timeouts: a follower acknowledges an append only once durable.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_commit_interval_and_bytes_apply_to_replicated_writes() {
    use skein_raft::storage::FlushPolicy;
    let short = Duration::from_millis(150);
    let long = Duration::from_secs(60);
    for (interval, bytes) in [(short, 1u64 << 30), (long, 1)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = skein_raft::storage::LogConfig {
            flush: FlushPolicy::GroupCommit { interval, bytes },
            ..log_config()
        };
        let mut nodes = cluster(dir.path(), log).await;
        // The first write also waits for the new leader's own blank entry to become durable.
        produce_on_leader(&nodes, 0).await;
        let took = produce_on_leader(&nodes, 1).await;
        if interval == short {
            assert!(
                took >= short,
                "acknowledged after {took:?}, before the interval"
            );
        } else {
            assert!(
                took < long / 2,
                "took {took:?}: a batch over the bytes threshold must not wait for the interval"
            );
        }
        for n in &mut nodes {
            n.stop().await;
        }
    }
}
