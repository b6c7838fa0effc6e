//! Retention: the node task that deletes old records by time (`retention.ms`) and by size
//! (`retention.bytes`), per topic.
//!
//! Every `topic_defaults.retention_check_interval`, for each local replica:
//! - the partition's **leader** computes, with the topic's current settings (read from the
//!   metadata, so `skein topic alter-config` applies at the next check), the prefix of whole
//!   sealed segments retention wants gone: by time when a segment's newest record timestamp is
//!   older than `retention.ms`, by size while the partition is larger than `retention.bytes`. It
//!   proposes moving the log start offset past that prefix as a Raft entry
//!   ([`skein_raft::Group::retention_step`]). Every replica moves its log start to that same
//!   offset when it applies the entry; reads below it fail with OFFSET_OUT_OF_RANGE.
//! - **every replica** then deletes its whole segments below the applied log start the Raft way
//!   ([`skein_raft::Group::purge_below_log_start`]): a snapshot covers them, then the log is
//!   purged through them, so a follower that was down and needs them installs the snapshot and
//!   replicates the entries after it.
//!
//! Work per tick is bounded: per partition at most one Raft entry, one snapshot and one purge.
//! Internal topics (`__consumer_offsets`) are never subject to retention: their log is the
//! group coordinator's state.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use skein_storage::Retention;
use tracing::Instrument;

use crate::broker::{Broker, LocalReplica};
use crate::topics::topic_log_config;

/// Runs retention on the local replicas every `retention_check_interval`, until the node stops.
pub async fn run(broker: Arc<Broker>) {
    let period = broker.config.topic_defaults.retention_check_interval;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if broker.stopping.load(Ordering::Acquire) {
            return;
        }
        check_all(&broker).await;
    }
}

/// One retention pass over every local replica.
pub async fn check_all(broker: &Broker) {
    let meta = broker.metadata();
    let defaults = &broker.config.topic_defaults.log;
    for r in broker.local_replicas() {
        if r.topic.starts_with("__") {
            continue;
        }
        let Some(topic) = meta.topics.get(&r.topic) else {
            continue;
        };
        // Configs in the metadata were validated when they were set.
        let retention =
            topic_log_config(defaults, &topic.configs).map_or(defaults.retention, |c| c.retention);
        let span = tracing::info_span!("retention", topic = %r.topic, partition = r.partition);
        check_partition(broker, &r, retention)
            .instrument(span)
            .await;
    }
}

async fn check_partition(broker: &Broker, r: &LocalReplica, retention: Retention) {
    if r.group.leader() == Some(broker.node_id()) {
        match r.group.retention_step(retention, now_ms()).await {
            Ok(Some(start)) => tracing::info!(log_start = start, "retention moved the log start"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "moving the log start; will retry"),
        }
    }
    match r.group.purge_below_log_start().await {
        Ok(0) => {}
        Ok(bytes) => {
            broker.metrics.retention_deleted_bytes.inc_by(bytes);
            tracing::info!(bytes, "deleted segments below the log start");
        }
        Err(e) => tracing::warn!(error = %e, "deleting segments below the log start; will retry"),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
