//! A topic's log settings changed on running replicas (`Group::set_log_config`).

mod common;

use std::time::Duration;

use common::*;
use skein_raft::storage::{LogConfig, StorageError};
use skein_raft::Error;

const WAIT: Duration = Duration::from_secs(20);

/// A batch of about 4 KiB: under [`log_config`]'s 16 KiB limit, over 1 KiB.
fn four_kib_batch(n: u64) -> bytes::Bytes {
    data_batch(n, 4, 1000)
}

fn lowered() -> LogConfig {
    LogConfig {
        batch_bytes_max: 1024,
        segment_bytes_max: 32 << 10,
        ..log_config()
    }
}

/// Produces `batch` through whichever node leads; returns the Raft index it was applied at on
/// that node.
async fn produce_on_leader(nodes: &[TestNode], batch: bytes::Bytes) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let l = leader(nodes, &[0, 1, 2], WAIT).await;
        let p = nodes[l].partition();
        match tokio::time::timeout(WAIT, p.produce(batch.clone())).await {
            Ok(Ok(_)) => return last_applied(&nodes[l]),
            Ok(Err(Error::NotLeader { .. })) if tokio::time::Instant::now() < deadline => {}
            Ok(Err(e)) => panic!("produce: {e}"),
            Err(_) => panic!("produce not acknowledged within {WAIT:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_max_batch_bytes_refuses_a_batch_accepted_before_and_a_raised_one_accepts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(dir.path(), log_config()).await;
    produce_on_leader(&nodes, four_kib_batch(0)).await;

    for n in &nodes {
        n.partition()
            .set_log_config(lowered())
            .await
            .expect("lower max.batch.bytes and segment.bytes");
    }
    let l = leader(&nodes, &[0, 1, 2], WAIT).await;
    let p = nodes[l].partition();
    assert_eq!(p.batch_bytes_max(), 1024);
    let refused = p.produce(four_kib_batch(1)).await;
    assert!(
        matches!(
            refused,
            Err(Error::InvalidBatch(StorageError::BatchTooLarge {
                max: 1024,
                ..
            }))
        ),
        "{refused:?}"
    );
    let segment = p.with_log(|log| log.config().segment_bytes_max).await;
    assert_eq!(segment, 32 << 10, "the other settings reached the log");

    for n in &nodes {
        n.partition()
            .set_log_config(log_config())
            .await
            .expect("raise max.batch.bytes");
    }
    produce_on_leader(&nodes, four_kib_batch(2)).await;
    for n in &mut nodes {
        n.stop().await;
    }
}

/// Replicas take a change one by one. Followers that lowered the limit first still take the
/// batches their leader accepted under the old one: their logs must not refuse an entry that is
/// already in Raft (that would stop their group and, here, leave the leader without a majority).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_that_lowered_max_batch_bytes_still_take_what_their_leader_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(dir.path(), log_config()).await;
    let l = leader(&nodes, &[0, 1, 2], WAIT).await;
    for (i, n) in nodes.iter().enumerate() {
        if i != l {
            n.partition()
                .set_log_config(lowered())
                .await
                .expect("lower max.batch.bytes on a follower");
            assert_eq!(n.partition().batch_bytes_max(), 1024);
        }
    }
    let index = produce_on_leader(&nodes, four_kib_batch(0)).await;
    for n in &nodes {
        applied(n, index, WAIT).await;
    }
    // A follower may apply an entry before its own flush of it completes (see log_store.rs),
    // and a read of its log shows it only then: wait until every log holds the same entries.
    // A follower whose log refused the batch stops its group and never gets there.
    let l = leader(&nodes, &[0, 1, 2], WAIT).await;
    let reference = log_summary(&nodes[l]).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    for n in &nodes {
        while log_summary(n).await != reference {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {} log differs: {:?} vs {reference:?}",
                n.id,
                log_summary(n).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for n in &mut nodes {
        n.stop().await;
    }
}
