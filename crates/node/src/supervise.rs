//! Replicas this node should serve but cannot: a Raft group that stopped on a fatal error (a
//! storage error, a panic in its core) or that failed to open. The reconciler takes such a
//! replica out of service, reopens it with exponential backoff, and the node reports not-ready
//! with the reason until every one is back (`docs/reliability.md`, "No zombie replicas").

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use skein_raft::GroupId;

/// First wait before reopening a replica that failed; doubled on every further failure.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between reopen attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Down replicas named in the not-ready reason (the rest are counted).
const REASONS_SHOWN: usize = 3;

/// One replica out of service.
#[derive(Debug, Clone)]
struct Down {
    topic: String,
    partition: u32,
    reason: String,
    failures: u32,
    retry_at: Instant,
}

/// The replicas of this node that are out of service, keyed by Raft group.
#[derive(Debug, Default)]
pub(crate) struct DownReplicas {
    inner: Mutex<HashMap<GroupId, Down>>,
}

/// How long to wait after the `failures`-th failure in a row.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_FIRST
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX)
}

impl DownReplicas {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GroupId, Down>> {
        self.inner
            .lock()
            .expect("invariant: down-replica lock is never poisoned")
    }

    /// Records that `group` (`topic`/`partition`) failed with `reason`; returns how long until
    /// it is tried again.
    pub(crate) fn record(
        &self,
        group: GroupId,
        topic: &str,
        partition: u32,
        reason: String,
    ) -> Duration {
        let mut m = self.lock();
        let failures = m.get(&group).map_or(0, |d| d.failures) + 1;
        let wait = backoff(failures);
        m.insert(
            group,
            Down {
                topic: topic.to_owned(),
                partition,
                reason,
                failures,
                retry_at: Instant::now() + wait,
            },
        );
        wait
    }

    /// Whether `group` may be (re)opened now: it is not down, or its backoff has passed.
    pub(crate) fn may_open(&self, group: GroupId, now: Instant) -> bool {
        self.lock().get(&group).is_none_or(|d| d.retry_at <= now)
    }

    /// `group` is serving again.
    pub(crate) fn clear(&self, group: GroupId) {
        self.lock().remove(&group);
    }

    /// Forgets replicas this node no longer has to serve.
    pub(crate) fn retain(&self, wanted: impl Fn(GroupId) -> bool) {
        self.lock().retain(|g, _| wanted(*g));
    }

    /// Why `group` is down, if it is.
    pub(crate) fn reason(&self, group: GroupId) -> Option<String> {
        self.lock().get(&group).map(|d| d.reason.clone())
    }

    /// How many replicas are down.
    pub(crate) fn count(&self) -> usize {
        self.lock().len()
    }

    /// A not-ready reason naming the down replicas, or `None` when there are none.
    pub(crate) fn summary(&self) -> Option<String> {
        let m = self.lock();
        if m.is_empty() {
            return None;
        }
        let mut downs: Vec<&Down> = m.values().collect();
        downs.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let named: Vec<String> = downs
            .iter()
            .take(REASONS_SHOWN)
            .map(|d| {
                format!(
                    "{}/{} ({} failures, retried in {} s): {}",
                    d.topic,
                    d.partition,
                    d.failures,
                    d.retry_at
                        .saturating_duration_since(Instant::now())
                        .as_secs(),
                    d.reason
                )
            })
            .collect();
        let more = downs.len().saturating_sub(REASONS_SHOWN);
        let tail = if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        };
        Some(format!(
            "{} partition replica(s) out of service, reopened with backoff (see the node's log): {}{tail}",
            downs.len(),
            named.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let waits: Vec<u64> = (1..=8).map(|f| backoff(f).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn a_down_replica_waits_its_backoff_and_is_named_until_cleared() {
        let d = DownReplicas::default();
        let now = Instant::now();
        assert!(d.may_open(7, now));
        assert_eq!(d.summary(), None);
        assert_eq!(d.record(7, "orders", 2, "disk error".into()), BACKOFF_FIRST);
        assert_eq!(
            d.record(7, "orders", 2, "disk error".into()),
            BACKOFF_FIRST * 2
        );
        assert!(!d.may_open(7, now));
        assert!(d.may_open(7, now + BACKOFF_MAX));
        let s = d.summary().expect("a reason");
        assert!(s.contains("orders/2 (2 failures"), "{s}");
        assert!(s.contains("disk error"), "{s}");
        for g in 10..15 {
            d.record(g, "t", g as u32, "x".into());
        }
        let s = d.summary().expect("a reason");
        assert!(s.starts_with("6 partition replica(s)"), "{s}");
        assert!(s.ends_with("and 3 more"), "{s}");
        d.retain(|g| g == 7);
        assert_eq!(d.count(), 1);
        d.clear(7);
        assert_eq!(d.reason(7), None);
        assert_eq!(d.summary(), None);
    }
}
