//! Replication settings shared by every group on a node.

use std::time::Duration;

use crate::error::{Error, Result};

/// Settings of the Raft groups on a node. [`RaftConfig::validate`] checks the relations between
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    /// Shortest election timeout: a node that hears nothing from a peer node for
    /// `election_timeout_min_ms + heartbeat_interval_ms` counts it as dead, and the groups it led
    /// elect new leaders (see `liveness.rs`).
    pub election_timeout_min_ms: u64,
    /// Longest election timeout: together with the shortest, sets the spread between the
    /// election attempts of a group's voters (`max - min`, at least two heartbeat intervals).
    pub election_timeout_max_ms: u64,
    /// Interval between node heartbeats (one message per peer node for all groups; groups send
    /// no heartbeats of their own).
    pub heartbeat_interval_ms: u64,
    /// Most entries sent in one AppendEntries request.
    pub append_entries_max: u64,
    /// Most bytes of entries read for one AppendEntries request (at least one entry is sent).
    pub append_bytes_max: u64,
    /// Build a snapshot after this many entries were applied since the last one.
    pub snapshot_entries_interval: u64,
    /// Timeout of one AppendEntries or Vote call (openraft may lower it per call).
    pub rpc_timeout_ms: u64,
    /// Timeout of one snapshot transfer.
    pub snapshot_timeout_ms: u64,
    /// Timeout of establishing a connection to a peer.
    pub connect_timeout_ms: u64,
    /// Pause before retrying a peer that could not be reached, doubling up to
    /// `reconnect_backoff_max_ms`.
    pub reconnect_backoff_min_ms: u64,
    /// Longest pause between reconnection attempts.
    pub reconnect_backoff_max_ms: u64,
    /// A partition forgets an idempotent producer whose newest batch is this much older than
    /// the newest batch timestamp the partition applied (Kafka's `producer.id.expiration.ms`).
    pub producer_id_expiry_ms: u64,
    /// Most idempotent producers a partition remembers; beyond it the least recently used one
    /// (oldest newest-batch timestamp) is forgotten.
    pub producer_ids_per_partition_max: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            heartbeat_interval_ms: 250,
            append_entries_max: 1024,
            append_bytes_max: 8 << 20,
            snapshot_entries_interval: 100_000,
            rpc_timeout_ms: 2000,
            snapshot_timeout_ms: 30_000,
            connect_timeout_ms: 1000,
            reconnect_backoff_min_ms: 50,
            reconnect_backoff_max_ms: 2000,
            producer_id_expiry_ms: 7 * 24 * 3600 * 1000,
            producer_ids_per_partition_max: 10_000,
        }
    }
}

impl RaftConfig {
    /// Checks every setting and the relations between them.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(Error::InvalidConfig(m));
        if self.heartbeat_interval_ms == 0 {
            return fail("heartbeat_interval_ms must be positive".into());
        }
        if self.election_timeout_min_ms <= self.heartbeat_interval_ms {
            return fail(format!(
                "election_timeout_min_ms {} must exceed heartbeat_interval_ms {}: followers would \
                 start elections between heartbeats",
                self.election_timeout_min_ms, self.heartbeat_interval_ms
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return fail(format!(
                "election_timeout_max_ms {} must exceed election_timeout_min_ms {}",
                self.election_timeout_max_ms, self.election_timeout_min_ms
            ));
        }
        if self.append_entries_max == 0 || self.append_bytes_max == 0 {
            return fail("append_entries_max and append_bytes_max must be positive".into());
        }
        if self.snapshot_entries_interval == 0 {
            return fail("snapshot_entries_interval must be positive".into());
        }
        if self.rpc_timeout_ms == 0 || self.snapshot_timeout_ms == 0 || self.connect_timeout_ms == 0
        {
            return fail("timeouts must be positive".into());
        }
        if self.reconnect_backoff_min_ms == 0
            || self.reconnect_backoff_max_ms < self.reconnect_backoff_min_ms
        {
            return fail(format!(
                "reconnect backoff must satisfy 0 < min ({}) <= max ({})",
                self.reconnect_backoff_min_ms, self.reconnect_backoff_max_ms
            ));
        }
        if self.producer_id_expiry_ms == 0 || self.producer_ids_per_partition_max == 0 {
            return fail(
                "producer_id_expiry_ms and producer_ids_per_partition_max must be positive".into(),
            );
        }
        Ok(())
    }

    /// How long a peer node may stay silent before this node counts it as dead.
    pub(crate) fn dead_after(&self) -> Duration {
        Duration::from_millis(self.election_timeout_min_ms + self.heartbeat_interval_ms)
    }

    /// Openraft's configuration for a group named `cluster_name`.
    ///
    /// Openraft's heartbeats and elections are off (node-level liveness drives them, see
    /// `liveness.rs`), so its timers only set two things: its leader lease (a voter refuses a
    /// candidate while it heard from its leader within `election_timeout_max`), which is the
    /// dead-after window so that an election after a node's death is never refused; and how
    /// often each group's idle tick task wakes (1.5 x `heartbeat_interval`; ticks are off, but the
    /// task still sleeps and wakes), kept just below the lease so that idle groups wake rarely.
    /// `heartbeat_interval` is also openraft's timeout of one AppendEntries or Vote call.
    pub(crate) fn openraft_config(&self, cluster_name: String) -> Result<openraft::Config> {
        let lease = self.dead_after().as_millis() as u64;
        let c = openraft::Config {
            cluster_name,
            election_timeout_min: lease - 1,
            election_timeout_max: lease,
            heartbeat_interval: lease - 2,
            enable_heartbeat: false,
            enable_elect: false,
            // The tick only drives those two and a leader's step-down after a membership change
            // that removes it (Skein changes no group's membership): without it an idle group's
            // core never wakes.
            enable_tick: false,
            install_snapshot_timeout: self.snapshot_timeout_ms,
            max_payload_entries: self.append_entries_max,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(
                self.snapshot_entries_interval,
            ),
            // Raft never deletes log on its own: the partition log is the data consumers read,
            // so only retention decides what goes (see `Group::enforce_retention`).
            max_in_snapshot_log_to_keep: u64::MAX,
            ..Default::default()
        };
        c.validate()
            .map_err(|e| Error::InvalidConfig(format!("openraft rejects the configuration: {e}")))
    }

    pub(crate) fn election_timeout_max(&self) -> Duration {
        Duration::from_millis(self.election_timeout_max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        RaftConfig::default()
            .validate()
            .expect("defaults are valid");
        RaftConfig::default()
            .openraft_config("t".into())
            .expect("openraft accepts the defaults");
    }

    #[test]
    fn rejects_election_timeout_below_heartbeat() {
        let c = RaftConfig {
            election_timeout_min_ms: 100,
            heartbeat_interval_ms: 100,
            ..RaftConfig::default()
        };
        assert!(matches!(c.validate(), Err(Error::InvalidConfig(_))));
    }

    #[test]
    fn rejects_empty_election_range() {
        let c = RaftConfig {
            election_timeout_max_ms: 1000,
            election_timeout_min_ms: 1000,
            ..RaftConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
