//! Consumer groups: the coordinator side.
//!
//! Offsets live in the internal topic [`OFFSETS_TOPIC`] (a few partitions, replication factor
//! min(3, nodes)). A group's coordinator is the leader of partition `crc32(group) % N`. A commit is
//! a record (key: group, topic, partition; value: offset and metadata) appended to that partition
//! and acknowledged after its Raft commit. The coordinator keeps the latest offsets in memory and
//! rebuilds them by replaying the partition whenever it becomes leader in a new term, so a
//! failover loses no acknowledged commit. Membership (members, generation, assignment) is kept in
//! memory only: after a failover, members find the new coordinator and join again.
//!
//! Two kinds of membership share the offsets: Skein-native groups (server-side assignment,
//! `state.rs`, `service.rs`) and Kafka's classic protocol (client-side assignment,
//! `classic.rs`). A group with members is one or the other; the group timer drives both.
//!
//! Growth of the offsets topic is bounded: when a partition's log grows past a threshold, the
//! coordinator writes the live offsets again and purges the whole segments before them.

pub mod assign;
pub mod classic;
pub mod service;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skein_raft::MetaCommand;
use skein_record::{BatchBuilder, BatchIter};

use crate::broker::{Broker, LocalReplica, Route};
use crate::error::{NodeError, Result};
use state::{OffsetKey, OffsetValue, PartitionState, Phase};

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Its partition count.
pub const OFFSETS_PARTITIONS: u32 = 4;
/// Segment size of the offsets topic (small, so that superseded commits go in whole segments).
const OFFSETS_SEGMENT_BYTES: &str = "4 MiB";
/// Rewrite live offsets and purge when a partition's log is larger than this.
const OFFSETS_COMPACT_BYTES: u64 = 16 << 20;

/// The offsets partition of a group.
pub fn offsets_partition(group: &str) -> u32 {
    crc32fast::hash(group.as_bytes()) % OFFSETS_PARTITIONS
}

/// Checks a group id.
pub fn validate_group_id(group: &str) -> Result<()> {
    if group.is_empty() || group.len() > 255 || group.chars().any(char::is_control) {
        return Err(NodeError::InvalidGroupId(group.chars().take(300).collect()));
    }
    Ok(())
}

type Shared = Arc<tokio::sync::Mutex<PartitionState>>;

/// The coordinator of every group whose offsets partition this node leads.
#[derive(Debug, Default)]
pub struct Coordinator {
    partitions: Mutex<HashMap<u32, Shared>>,
    member_seq: std::sync::atomic::AtomicU64,
}

/// A loaded offsets partition this node leads: its replica and its state (locked).
pub struct Led {
    /// The offsets partition's replica.
    pub replica: LocalReplica,
    /// Its coordinator state.
    pub state: tokio::sync::OwnedMutexGuard<PartitionState>,
}

impl std::fmt::Debug for Led {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Led")
            .field("partition", &self.replica.partition)
            .finish()
    }
}

impl Coordinator {
    /// A fresh member id.
    pub fn new_member_id(&self, client_id: &str, node: u64) -> String {
        let n = self
            .member_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let client = if client_id.is_empty() {
            "consumer"
        } else {
            client_id
        };
        format!("{client}-{node}-{t:x}-{n}")
    }

    fn shared(&self, partition: u32) -> Shared {
        self.partitions
            .lock()
            .expect("invariant: coordinator map lock is never poisoned")
            .entry(partition)
            .or_default()
            .clone()
    }

    /// Every loaded partition state (for metrics, listing and the timer).
    pub fn all(&self) -> Vec<(u32, Shared)> {
        self.partitions
            .lock()
            .expect("invariant: coordinator map lock is never poisoned")
            .iter()
            .map(|(p, s)| (*p, s.clone()))
            .collect()
    }
}

impl Broker {
    /// Creates the offsets topic if it does not exist yet.
    pub async fn ensure_offsets_topic(&self) -> Result<()> {
        if self.metadata().topics.contains_key(OFFSETS_TOPIC) {
            return Ok(());
        }
        let meta = self.metadata();
        let nodes: Vec<u64> = meta.nodes.keys().copied().collect();
        let rf = (nodes.len() as u32).clamp(1, 3);
        let replicas = crate::placement::place(
            &nodes,
            &crate::placement::Load::new(),
            OFFSETS_PARTITIONS,
            rf,
        )?;
        let configs = BTreeMap::from([
            (
                "segment.bytes".to_string(),
                OFFSETS_SEGMENT_BYTES.to_string(),
            ),
            ("retention.ms".to_string(), "-1".to_string()),
            ("flush.policy".to_string(), "every-batch".to_string()),
        ]);
        let cmd = MetaCommand::CreateTopic {
            name: OFFSETS_TOPIC.into(),
            replicas,
            configs,
        };
        self.propose_patiently(&cmd, Duration::from_secs(10))
            .await?;
        Ok(())
    }

    /// The node coordinating `group` (id, client address), as far as this node knows.
    pub async fn find_coordinator(&self, group: &str) -> Result<(u64, String)> {
        validate_group_id(group)?;
        self.ensure_offsets_topic().await?;
        let p = offsets_partition(group);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = match self.route(OFFSETS_TOPIC, p) {
                Ok(Route::Local(r)) => r
                    .group
                    .leader()
                    .and_then(|l| self.client_addr_of(l).map(|a| (l, a))),
                // Only a leader the partition itself reported (not the preferred replica).
                Ok(Route::Remote { .. }) => {
                    let meta = self.metadata();
                    meta.topics
                        .get(OFFSETS_TOPIC)
                        .and_then(|t| t.partitions.get(p as usize))
                        .and_then(|a| meta.leaders.get(&a.group))
                        .and_then(|(l, _)| meta.nodes.get(l).map(|n| (*l, n.client_addr.clone())))
                }
                // Just created: the metadata cache has not caught up yet.
                Err(NodeError::UnknownTopic { .. }) => None,
                Err(e) => return Err(e),
            };
            if let Some(c) = found {
                return Ok(c);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NodeError::CoordinatorNotAvailable(group.into()));
            }
            let notified = self.metadata_changed.notified();
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }

    /// The loaded offsets partition of `group` if this node coordinates it; NOT_COORDINATOR
    /// naming the coordinator otherwise.
    pub async fn coordinate(&self, group: &str) -> Result<Led> {
        validate_group_id(group)?;
        let p = offsets_partition(group);
        let replica = match self.route(OFFSETS_TOPIC, p) {
            Ok(Route::Local(r)) => r,
            Ok(Route::Remote { leader }) => {
                // This node holds a replica that is not open yet, or the leader is elsewhere.
                return Err(match leader {
                    Some((l, _)) if l == self.node_id() => {
                        NodeError::CoordinatorNotAvailable(group.into())
                    }
                    leader => NodeError::NotCoordinator {
                        group: group.into(),
                        coordinator: leader,
                    },
                });
            }
            Err(NodeError::UnknownTopic { .. }) => {
                return Err(NodeError::CoordinatorNotAvailable(group.into()));
            }
            Err(e) => return Err(e),
        };
        let (leader, term) = {
            let m = replica.group.raft().metrics();
            let m = m.borrow();
            (m.current_leader, m.current_term)
        };
        if leader != Some(self.node_id()) {
            return Err(match leader {
                Some(l) => NodeError::NotCoordinator {
                    group: group.into(),
                    coordinator: self.client_addr_of(l).map(|a| (l, a)),
                },
                None => NodeError::CoordinatorNotAvailable(group.into()),
            });
        }
        let mut state = self.coordinator.shared(p).lock_owned().await;
        if state.term != term {
            self.load_offsets(&replica, &mut state, term, group).await?;
        }
        Ok(Led { replica, state })
    }

    /// Rebuilds the committed offsets of an offsets partition by replaying it, as its new
    /// leader in `term`. Membership starts empty (members rejoin).
    async fn load_offsets(
        &self,
        replica: &LocalReplica,
        state: &mut PartitionState,
        term: u64,
        group: &str,
    ) -> Result<()> {
        // Every entry of earlier terms must be applied before the replay reads up to the
        // high watermark.
        replica
            .group
            .raft()
            .ensure_linearizable()
            .await
            .map_err(|_| NodeError::CoordinatorNotAvailable(group.into()))?;
        let hwm = replica.group.high_watermark();
        let mut fresh = PartitionState::default();
        let mut offset = replica.group.with_log(|l| l.log_start_offset()).await;
        let mut records = 0u64;
        while offset < hwm {
            let slice = replica
                .group
                .with_log(|l| l.read_upto(offset, 1 << 20, hwm))
                .await?;
            if slice.bytes.is_empty() {
                break;
            }
            for b in BatchIter::new(slice.bytes.clone()) {
                let b = b?;
                for r in b.records()? {
                    let r = r?;
                    if r.offset < offset {
                        continue;
                    }
                    records += 1;
                    let Some(key) = r
                        .key
                        .as_deref()
                        .and_then(|k| postcard::from_bytes::<OffsetKey>(k).ok())
                    else {
                        tracing::warn!(
                            offset = r.offset,
                            "skipping an undecodable record in {OFFSETS_TOPIC}"
                        );
                        continue;
                    };
                    let value = match r.value.as_deref() {
                        Some(v) => match postcard::from_bytes::<OffsetValue>(v) {
                            Ok(v) => Some(v),
                            Err(_) => {
                                tracing::warn!(
                                    offset = r.offset,
                                    "skipping an undecodable commit in {OFFSETS_TOPIC}"
                                );
                                continue;
                            }
                        },
                        None => None,
                    };
                    fresh.apply(key, value);
                }
            }
            offset = slice.next_offset.max(offset + 1);
        }
        fresh.term = term;
        *state = fresh;
        tracing::info!(
            topic = OFFSETS_TOPIC,
            partition = replica.partition,
            term,
            records,
            groups = state.offsets.len(),
            "loaded committed offsets as coordinator"
        );
        Ok(())
    }

    /// Appends commit records (a `None` value deletes) and waits for the Raft commit.
    pub async fn write_offsets(
        &self,
        replica: &LocalReplica,
        records: &[(OffsetKey, Option<OffsetValue>)],
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let now = crate::groups::now_ms();
        // Keep batches well under the batch limit.
        for chunk in records.chunks(2000) {
            let mut b = BatchBuilder::new(now);
            for (k, v) in chunk {
                let key = postcard::to_allocvec(k)
                    .map_err(|e| NodeError::Internal(format!("encode offset key: {e}")))?;
                let value = match v {
                    Some(v) => Some(
                        postcard::to_allocvec(v)
                            .map_err(|e| NodeError::Internal(format!("encode offset: {e}")))?,
                    ),
                    None => None,
                };
                b.push(now, Some(&key), value.as_deref(), &[]);
            }
            replica
                .group
                .produce(b.finish())
                .await
                .map_err(|e| match e {
                    skein_raft::Error::NotLeader { leader, .. } => NodeError::NotCoordinator {
                        group: String::new(),
                        coordinator: leader.and_then(|l| self.client_addr_of(l).map(|a| (l, a))),
                    },
                    other => self.raft_error(other),
                })?;
        }
        Ok(())
    }

    /// Rewrites the live offsets of an offsets partition and purges the segments before them,
    /// when its log has grown past the threshold.
    pub async fn compact_offsets_if_needed(&self, led: &mut Led) -> Result<()> {
        let size = led.replica.group.with_log(|l| l.size_bytes()).await;
        if size < OFFSETS_COMPACT_BYTES {
            return Ok(());
        }
        let first_index = led.replica.group.with_log(|l| l.next_index()).await;
        let live: Vec<(OffsetKey, Option<OffsetValue>)> = led
            .state
            .offsets
            .iter()
            .flat_map(|(g, m)| {
                m.iter().map(move |((t, p), c)| {
                    (
                        OffsetKey {
                            group: g.clone(),
                            topic: t.clone(),
                            partition: *p,
                        },
                        Some(OffsetValue {
                            offset: c.offset,
                            metadata: c.metadata.clone(),
                            committed_at_ms: now_ms(),
                        }),
                    )
                })
            })
            .collect();
        self.write_offsets(&led.replica, &live).await?;
        if first_index > 0 {
            led.replica
                .group
                .purge_through(first_index - 1)
                .await
                .map_err(|e| self.raft_error(e))?;
        }
        tracing::info!(
            partition = led.replica.partition,
            live = live.len(),
            "compacted committed offsets"
        );
        Ok(())
    }

    /// Expires members that stopped heartbeating and completes rebalances whose deadline
    /// passed. Runs every 100 ms.
    pub async fn group_timer(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if self.stopping.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            for (_, shared) in self.coordinator.all() {
                let Ok(mut state) = shared.try_lock() else {
                    continue;
                };
                if state.term == 0 {
                    continue;
                }
                let now = Instant::now();
                let partitions = self.topic_partition_counts();
                for (name, g) in state.groups.iter_mut() {
                    match g.phase {
                        Phase::Stable => {
                            let before = g.members.len();
                            g.members.retain(|id, m| {
                                let alive = now.duration_since(m.last_seen) <= m.session_timeout;
                                if !alive {
                                    tracing::info!(group = %name, member = %id, "member session expired");
                                }
                                alive
                            });
                            if g.members.len() != before {
                                g.start_rebalance(now);
                                g.try_complete(false, &partitions);
                            }
                        }
                        Phase::PreparingRebalance => {
                            if g.rebalance_deadline.is_some_and(|d| now >= d) {
                                g.try_complete(true, &partitions);
                            } else if g.initial_until.is_some_and(|t| now >= t) {
                                g.try_complete(false, &partitions);
                            }
                        }
                        Phase::Empty => {}
                    }
                }
                let now = tokio::time::Instant::now();
                for g in state.classic.values_mut() {
                    g.tick(now);
                }
                state
                    .classic
                    .retain(|_, g| !(g.is_empty() && g.state == classic::ClassicState::Empty));
            }
        }
    }

    /// Committed offsets (and lag where the partition is local) of the groups this node
    /// coordinates, for `/metrics`.
    pub fn group_gauges(&self) -> Vec<crate::metrics::GroupGauge> {
        let mut out = Vec::new();
        for (_, shared) in self.coordinator.all() {
            let Ok(state) = shared.try_lock() else {
                continue;
            };
            if state.term == 0 {
                continue;
            }
            for (group, offsets) in &state.offsets {
                for ((topic, partition), c) in offsets {
                    let lag = match self.route(topic, *partition) {
                        Ok(Route::Local(r)) => {
                            Some(r.group.high_watermark().saturating_sub(c.offset))
                        }
                        _ => None,
                    };
                    out.push(crate::metrics::GroupGauge {
                        group: group.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        committed: c.offset,
                        lag,
                    });
                }
            }
        }
        out
    }

    /// Partition count of every topic.
    pub fn topic_partition_counts(&self) -> BTreeMap<String, u32> {
        self.metadata()
            .topics
            .iter()
            .map(|(n, t)| (n.clone(), t.partitions.len() as u32))
            .collect()
    }

    /// Log start and high watermark of any partition: from the local replica, or asked of the
    /// partition's leader.
    pub async fn partition_bounds(&self, topic: &str, partition: u32) -> Result<(u64, u64)> {
        if let Route::Local(r) = self.route(topic, partition)? {
            let start = r.group.with_log(|l| l.log_start_offset()).await;
            return Ok((start, r.group.high_watermark()));
        }
        let r = self
            .remote_offsets(topic, partition, skein_proto::v1::OffsetSpec::Latest, 0)
            .await?;
        Ok((r.log_start_offset, r.high_watermark))
    }

    /// The first offset at or after `timestamp_ms` of any partition (the high watermark when
    /// every record is older).
    pub async fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<u64> {
        if let Route::Local(r) = self.route(topic, partition)? {
            let hwm = r.group.high_watermark();
            let found = r
                .group
                .with_log(|l| l.offset_for_timestamp(timestamp_ms))
                .await?;
            return Ok(found.map_or(hwm, |o| o.min(hwm)));
        }
        let r = self
            .remote_offsets(
                topic,
                partition,
                skein_proto::v1::OffsetSpec::Timestamp,
                timestamp_ms,
            )
            .await?;
        Ok(r.offset)
    }

    async fn remote_offsets(
        &self,
        topic: &str,
        partition: u32,
        spec: skein_proto::v1::OffsetSpec,
        timestamp_ms: i64,
    ) -> Result<skein_proto::v1::PartitionOffsetResult> {
        let Route::Remote { leader } = self.route(topic, partition)? else {
            return Err(NodeError::Internal("partition became local".into()));
        };
        let (_, addr) = leader.ok_or_else(|| NodeError::LeaderNotAvailable {
            what: format!("{topic}/{partition}"),
        })?;
        let chan = self.channel(&addr)?;
        let mut c = skein_proto::v1::fetch_service_client::FetchServiceClient::new(chan);
        let r = c
            .list_offsets(skein_proto::v1::ListOffsetsRequest {
                partitions: vec![skein_proto::v1::PartitionOffsetQuery {
                    topic: topic.into(),
                    partition,
                    spec: spec as i32,
                    timestamp_ms,
                }],
            })
            .await
            .map_err(|s| NodeError::LeaderNotAvailable {
                what: format!(
                    "{topic}/{partition} (list offsets on {addr}: {})",
                    s.message()
                ),
            })?
            .into_inner();
        let p = r
            .partitions
            .into_iter()
            .next()
            .ok_or_else(|| NodeError::Internal("empty list-offsets answer".into()))?;
        if let Some(e) = p.error {
            return Err(NodeError::Internal(format!(
                "list offsets of {topic}/{partition}: {}",
                e.message
            )));
        }
        Ok(p)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
