//! The broker's state: the Raft registry, the metadata group and its cached view, the local
//! replicas, and the tasks that keep them in line with the metadata.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use skein_proto::v1 as pb;
use skein_raft::{
    ClusterMetadata, GroupId, MetaCommand, MetaOutcome, MetadataGroup, NodeId, PartitionGroup,
    Registry, METADATA_GROUP_ID,
};
use skein_storage::LogConfig;
use tokio::sync::Notify;
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument;

use crate::config::NodeConfig;
use crate::error::{NodeError, Result};
use crate::metrics::{Metrics, PartitionGauge};
use crate::supervise::DownReplicas;
use crate::topics::topic_log_config;

mod leadership;
mod rebalance;

/// A local partition replica and where it belongs.
#[derive(Debug, Clone)]
pub struct LocalReplica {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// The Raft group.
    pub group: Arc<PartitionGroup>,
    /// Its directory.
    pub dir: PathBuf,
    /// The log settings last applied to it (the topic's configuration over the defaults).
    pub log: LogConfig,
}

/// What a client request resolves a partition to.
#[derive(Debug, Clone)]
pub enum Route {
    /// This node has a replica.
    Local(LocalReplica),
    /// Another node has it; the leader as far as the metadata knows.
    Remote {
        /// Leader hint: node id and advertised client address.
        leader: Option<(u64, String)>,
    },
}

/// The broker.
#[derive(Debug)]
pub struct Broker {
    pub(crate) config: NodeConfig,
    pub(crate) registry: Arc<Registry>,
    pub(crate) meta: Arc<MetadataGroup>,
    cache: RwLock<Arc<ClusterMetadata>>,
    replicas: RwLock<HashMap<GroupId, LocalReplica>>,
    /// Woken whenever the applied metadata changes.
    pub(crate) metadata_changed: Notify,
    /// Wakes the leadership reporter before its next pass is due.
    leadership_wake: Notify,
    pub(crate) metrics: Metrics,
    registered: AtomicBool,
    reconciled: AtomicBool,
    pub(crate) stopping: AtomicBool,
    /// Channels to other nodes by address, reused by every forwarded call.
    channels: Mutex<HashMap<String, Channel>>,
    /// Consumer-group coordination for the offsets partitions this node leads.
    pub(crate) coordinator: crate::groups::Coordinator,
    /// Replicas out of service (stopped on a fatal error or failed to open), reopened with
    /// backoff by the reconciler.
    down: DownReplicas,
}

/// What [`Broker::ensure_replica`] did to a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ensured {
    /// Opened it (it was not open).
    Opened,
    /// Left it as it is, or applied its topic's changed settings.
    Kept,
    /// It refuses its topic's changed settings: tried again on the next pass.
    Retry,
}

/// What the metadata asks of this node for one partition group.
struct Wanted {
    topic: String,
    partition: u32,
    replicas: Vec<NodeId>,
    log: LogConfig,
}

/// Why a Raft group stopped, if it did (a storage error, a panic, or a shutdown).
fn stopped_reason<C: skein_raft::openraft::RaftTypeConfig>(
    raft: &skein_raft::openraft::Raft<C>,
) -> Option<String> {
    match &raft.metrics().borrow().running_state {
        Ok(()) => None,
        Err(fatal) => Some(fatal.to_string()),
    }
}

/// Directory of the metadata group.
fn metadata_dir(config: &NodeConfig) -> PathBuf {
    config.data_dir.join("metadata")
}

/// Directory of a partition replica.
fn partition_dir(config: &NodeConfig, topic: &str, partition: u32, group: GroupId) -> PathBuf {
    config
        .data_dir
        .join("partitions")
        .join(format!("{topic}-{partition}.g{group}"))
}

/// Largest metadata command batch.
const METADATA_BATCH_BYTES_MAX: u32 = 4 << 20;

// A full leadership report fits a batch: three varints of at most 10 bytes per entry.
const _: () =
    assert!(MetaCommand::LEADERS_PER_COMMAND_MAX * 30 + 1024 <= METADATA_BATCH_BYTES_MAX as usize);

/// Log settings of the metadata group: small segments, fsync of every batch (metadata writes
/// are rare and must not be lost).
fn metadata_log_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 16 << 20,
        batch_bytes_max: METADATA_BATCH_BYTES_MAX,
        flush: skein_storage::FlushPolicy::EveryBatch,
        retention: skein_storage::Retention::default(),
        segment_age_max: None,
        ..LogConfig::default()
    }
}

impl Broker {
    /// Opens the node's Raft registry and metadata group replica.
    pub async fn open(config: NodeConfig) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            NodeError::Config(format!(
                "cannot create data directory {}: {e}",
                config.data_dir.display()
            ))
        })?;
        // A directory of another on-disk format is refused, never misread.
        skein_storage::format::check_data_dir(&config.data_dir)?;
        let raft_config = skein_raft::RaftConfig {
            election_timeout_min_ms: config.raft.election_timeout_min.as_millis() as u64,
            election_timeout_max_ms: config.raft.election_timeout_max.as_millis() as u64,
            heartbeat_interval_ms: config.raft.heartbeat_interval.as_millis() as u64,
            producer_id_expiry_ms: config.limits.producer_id_expiry.as_millis() as u64,
            producer_ids_per_partition_max: config.limits.producer_ids_per_partition_max,
            ..skein_raft::RaftConfig::default()
        };
        let registry = Registry::new(config.node_id, raft_config)?;
        let meta = registry
            .create_metadata(
                METADATA_GROUP_ID,
                &metadata_dir(&config),
                metadata_log_config(),
            )
            .await?;
        let cache = Arc::new(meta.metadata());
        Ok(Arc::new(Broker {
            config,
            registry,
            meta,
            cache: RwLock::new(cache),
            replicas: RwLock::new(HashMap::new()),
            metadata_changed: Notify::new(),
            leadership_wake: Notify::new(),
            metrics: Metrics::new(),
            registered: AtomicBool::new(false),
            reconciled: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            channels: Mutex::new(HashMap::new()),
            coordinator: crate::groups::Coordinator::default(),
            down: DownReplicas::default(),
        }))
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    /// The applied cluster metadata (a cheap shared snapshot).
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.cache
            .read()
            .expect("invariant: metadata cache lock is never poisoned")
            .clone()
    }

    fn refresh_cache(&self) -> bool {
        let fresh = self.meta.metadata();
        let mut c = self
            .cache
            .write()
            .expect("invariant: metadata cache lock is never poisoned");
        if **c == fresh {
            return false;
        }
        *c = Arc::new(fresh);
        true
    }

    /// `None` when ready, otherwise why not.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.stopping.load(Ordering::Acquire) {
            return Some("shutting down".into());
        }
        if self.meta.leader().is_none() {
            return Some("the metadata group has no leader yet".into());
        }
        if !self.registered.load(Ordering::Acquire) {
            return Some("this node has not registered in the cluster metadata yet".into());
        }
        if !self.reconciled.load(Ordering::Acquire) {
            return Some("local replicas are being opened".into());
        }
        if let Some(why) = stopped_reason(self.meta.raft()) {
            return Some(format!(
                "the metadata group's replica stopped ({why}); restart the node"
            ));
        }
        self.down.summary()
    }

    /// The advertised client address of a node, from the metadata.
    pub fn client_addr_of(&self, node: NodeId) -> Option<String> {
        self.metadata()
            .nodes
            .get(&node)
            .map(|n| n.client_addr.clone())
    }

    /// A NOT_LEADER error naming `leader` (with its address when known).
    pub fn not_leader(&self, leader: Option<NodeId>) -> NodeError {
        NodeError::NotLeader {
            leader: leader.and_then(|id| self.client_addr_of(id).map(|a| (id, a))),
        }
    }

    /// Maps an error from a partition or metadata group, resolving leader hints.
    pub fn raft_error(&self, e: skein_raft::Error) -> NodeError {
        match e {
            skein_raft::Error::NotLeader { leader, .. } => self.not_leader(leader),
            other => NodeError::from(other),
        }
    }

    /// Finds where `topic`/`partition` lives.
    pub fn route(&self, topic: &str, partition: u32) -> Result<Route> {
        let meta = self.metadata();
        let t = meta
            .topics
            .get(topic)
            .ok_or_else(|| NodeError::UnknownTopic {
                topic: topic.to_owned(),
            })?;
        let a =
            t.partitions
                .get(partition as usize)
                .ok_or_else(|| NodeError::UnknownPartition {
                    topic: topic.to_owned(),
                    partition,
                    partitions: t.partitions.len() as u32,
                })?;
        if let Some(r) = self
            .replicas
            .read()
            .expect("invariant: replica map lock is never poisoned")
            .get(&a.group)
        {
            return Ok(Route::Local(r.clone()));
        }
        let leader = meta
            .leaders
            .get(&a.group)
            .map(|(n, _)| *n)
            .or_else(|| a.replicas.first().copied());
        if let Some(why) = self.down.reason(a.group) {
            if leader.is_none_or(|l| l == self.node_id()) {
                return Err(NodeError::LeaderNotAvailable {
                    what: format!("{topic}/{partition} (this node's replica is down: {why})"),
                });
            }
        }
        Ok(Route::Remote {
            leader: leader.and_then(|id| meta.nodes.get(&id).map(|n| (id, n.client_addr.clone()))),
        })
    }

    /// The local replica of a partition, or NOT_LEADER naming who has it.
    pub fn local(&self, topic: &str, partition: u32) -> Result<LocalReplica> {
        match self.route(topic, partition)? {
            Route::Local(r) => Ok(r),
            Route::Remote { leader } => Err(NodeError::NotLeader { leader }),
        }
    }

    /// The local replica of a partition if this node leads it, or NOT_LEADER naming the leader.
    pub fn leader_replica(&self, topic: &str, partition: u32) -> Result<LocalReplica> {
        let r = self.local(topic, partition)?;
        match r.group.leader() {
            Some(l) if l == self.node_id() => Ok(r),
            Some(l) => Err(self.not_leader(Some(l))),
            None => Err(NodeError::LeaderNotAvailable {
                what: format!("{topic}/{partition}"),
            }),
        }
    }

    /// Runs `f` over the local replicas under the map's read lock, without copying them (`f`
    /// must be quick: the reconciler waits for the lock to open or retire a replica).
    fn with_replicas<R>(&self, f: impl FnOnce(&HashMap<GroupId, LocalReplica>) -> R) -> R {
        f(&self
            .replicas
            .read()
            .expect("invariant: replica map lock is never poisoned"))
    }

    /// Has the leadership reporter look over the local replicas now, and again soon while some
    /// has no leader yet (after replicas were opened).
    fn wake_leadership_reporter(&self) {
        self.leadership_wake.notify_one();
    }

    /// Local replicas, for metrics and status.
    pub fn local_replicas(&self) -> Vec<LocalReplica> {
        self.replicas
            .read()
            .expect("invariant: replica map lock is never poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// The per-partition gauges for `/metrics`.
    pub async fn partition_gauges(&self) -> Vec<PartitionGauge> {
        let mut out = Vec::new();
        for r in self.local_replicas() {
            let m = r.group.raft().metrics().borrow().clone();
            let hwm = r.group.high_watermark();
            let (end, last_index, start) = r
                .group
                .with_log(|l| (l.next_offset(), l.next_index(), l.log_start_offset()))
                .await;
            let committed = m.last_applied.map_or(0, |l| l.index + 1);
            out.push(PartitionGauge {
                topic: r.topic.clone(),
                partition: r.partition,
                leader: m.current_leader == Some(self.node_id()),
                term: m.current_term,
                high_watermark: hwm,
                log_end_offset: end,
                commit_lag: last_index.saturating_sub(committed),
                log_start_offset: start,
            });
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        out
    }

    /// This node's status, as `NodeControl.NodeStatus` reports it.
    pub fn local_status(&self) -> pb::NodeStatusResponse {
        let reason = self.not_ready_reason();
        let replicas = self.local_replicas();
        let me = self.node_id();
        pb::NodeStatusResponse {
            node_id: me,
            ready: reason.is_none(),
            reason: reason.unwrap_or_default(),
            replicas: replicas.len() as u32,
            leaderships: replicas
                .iter()
                .filter(|r| r.group.leader() == Some(me))
                .count() as u32,
        }
    }

    /// A node's status: this node's own, or asked of the node (`None` when it does not answer
    /// within a second).
    pub async fn node_status(&self, node: NodeId) -> Option<pb::NodeStatusResponse> {
        if node == self.node_id() {
            return Some(self.local_status());
        }
        let chan = self.peer_channel(node).ok()?;
        let mut client = pb::node_control_client::NodeControlClient::new(chan);
        let call = client.node_status(pb::NodeStatusRequest {});
        match tokio::time::timeout(Duration::from_secs(1), call).await {
            Ok(Ok(r)) => Some(r.into_inner()),
            _ => None,
        }
    }

    /// A channel to a node's peer port (for node-control calls).
    fn peer_channel(&self, node: NodeId) -> Result<Channel> {
        let addr = self.config.peers.get(&node).ok_or_else(|| {
            NodeError::Internal(format!("node {node} is not among the configured peers"))
        })?;
        self.channel(addr)
    }

    /// A channel to another node's port at `addr` (peer or client API), connected lazily and
    /// kept for reuse, so that forwarded calls do not open a connection each.
    pub(crate) fn channel(&self, addr: &str) -> Result<Channel> {
        let mut chans = self
            .channels
            .lock()
            .expect("invariant: channel cache lock is never poisoned");
        if let Some(c) = chans.get(addr) {
            return Ok(c.clone());
        }
        let ep = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| NodeError::Internal(format!("node address {addr}: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .tcp_nodelay(true);
        let c = ep.connect_lazy();
        chans.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    /// Proposes a metadata command on the metadata leader, wherever it is.
    pub async fn propose(&self, cmd: &MetaCommand) -> Result<MetaOutcome> {
        let leader = self
            .meta
            .leader()
            .ok_or_else(|| NodeError::LeaderNotAvailable {
                what: "the cluster metadata".into(),
            })?;
        if leader == self.node_id() {
            return self.meta.propose(cmd).await.map_err(|e| self.raft_error(e));
        }
        let bytes = postcard::to_allocvec(cmd)
            .map_err(|e| NodeError::Internal(format!("encode metadata command: {e}")))?;
        let mut client =
            pb::node_control_client::NodeControlClient::new(self.peer_channel(leader)?);
        let resp = client
            .propose_metadata(pb::ProposeMetadataRequest {
                command: bytes.into(),
            })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::FailedPrecondition | tonic::Code::Unavailable => {
                    NodeError::LeaderNotAvailable {
                        what: format!("the cluster metadata ({})", s.message()),
                    }
                }
                _ => NodeError::Internal(format!(
                    "forward to metadata leader {leader}: {}",
                    s.message()
                )),
            })?;
        postcard::from_bytes(&resp.into_inner().outcome)
            .map_err(|e| NodeError::Internal(format!("decode metadata outcome: {e}")))
    }

    /// Proposes with retries while the metadata group elects a leader, up to `patience`.
    pub async fn propose_patiently(
        &self,
        cmd: &MetaCommand,
        patience: Duration,
    ) -> Result<MetaOutcome> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut backoff = Duration::from_millis(20);
        loop {
            match self.propose(cmd).await {
                Err(NodeError::LeaderNotAvailable { .. } | NodeError::NotLeader { .. })
                    if tokio::time::Instant::now() + backoff < deadline =>
                {
                    let mut m = self.meta.raft().metrics();
                    let _ = tokio::time::timeout(backoff, m.changed()).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// Forms the metadata group (lowest configured node id only, once) and registers this node.
    pub async fn bootstrap(self: &Arc<Self>) -> Result<()> {
        let lowest = self.config.peers.keys().next().copied();
        if lowest == Some(self.node_id()) {
            let members: BTreeMap<NodeId, skein_raft::Node> = self
                .config
                .peers
                .iter()
                .map(|(id, addr)| (*id, skein_raft::Node { addr: addr.clone() }))
                .collect();
            // Refused (harmlessly) when the group was formed before: restarts are safe.
            if let Err(e) = self.meta.initialize(members).await {
                tracing::debug!(error = %e, "metadata group already initialized");
            }
        }
        let info = skein_raft::NodeInfo {
            peer_addr: self
                .config
                .peers
                .get(&self.node_id())
                .cloned()
                .unwrap_or_else(|| self.config.peer_addr.to_string()),
            client_addr: self.config.advertised_client_addr.clone(),
            kafka_addr: self.config.advertised_kafka_addr.clone(),
        };
        let cmd = MetaCommand::RegisterNode {
            id: self.node_id(),
            info: info.clone(),
        };
        loop {
            if self.metadata().nodes.get(&self.node_id()) == Some(&info) {
                break;
            }
            match self.propose_patiently(&cmd, Duration::from_secs(5)).await {
                Ok(MetaOutcome::Refused { reason }) => {
                    return Err(NodeError::Config(format!(
                        "the cluster metadata refuses to register node {}: {reason}",
                        self.node_id()
                    )));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::info!(error = %e, "registering in the cluster metadata; retrying");
                    // Not a busy loop when the leader refuses (e.g. on the peer port).
                    let _ = tokio::time::timeout(
                        Duration::from_millis(200),
                        self.metadata_changed.notified(),
                    )
                    .await;
                }
            }
            if self.stopping.load(Ordering::Acquire) {
                return Ok(());
            }
            self.refresh_cache();
        }
        self.registered.store(true, Ordering::Release);
        tracing::info!(node = self.node_id(), "registered in the cluster metadata");
        Ok(())
    }

    /// Follows the metadata group: refreshes the cache and wakes the reconciler on change.
    pub async fn watch_metadata(self: Arc<Self>) {
        let mut m = self.meta.raft().metrics();
        loop {
            if self.refresh_cache() {
                self.metadata_changed.notify_waiters();
                self.metadata_changed.notify_one();
            }
            if m.changed().await.is_err() || self.stopping.load(Ordering::Acquire) {
                return;
            }
        }
    }

    /// Starts and stops local replicas as the metadata says, until the broker stops; starts the
    /// task that reports this node's leaderships (`broker/leadership.rs`) and the one that takes
    /// back the partitions this node is the preferred leader of (`broker/rebalance.rs`).
    ///
    /// A pass runs on every metadata change and once a second: it opens the replicas the
    /// metadata places here, applies changed topic settings, removes the replicas of deleted
    /// topics, retires replicas whose group stopped and reopens down ones after their backoff.
    /// A timed pass is skipped while the metadata is the one a pass settled (nothing left to
    /// retry: no replica down, every setting applied, every group formed) and no replica stopped
    /// since: it would find nothing to do.
    pub async fn reconcile_loop(self: Arc<Self>) {
        let span = tracing::info_span!("leadership", node = self.node_id());
        tokio::spawn(leadership::run(self.clone()).instrument(span));
        let span = tracing::info_span!("rebalance", node = self.node_id());
        tokio::spawn(rebalance::run(Arc::downgrade(&self)).instrument(span));
        // The metadata of the last pass that left nothing to retry.
        let mut settled: Option<Arc<ClusterMetadata>> = None;
        loop {
            let notified = self.metadata_changed.notified();
            let meta = self.metadata();
            let unchanged = settled.as_ref().is_some_and(|s| Arc::ptr_eq(s, &meta));
            if !(unchanged && self.none_stopped().await) {
                settled = None;
                match self.reconcile(&meta).await {
                    Ok(true) => settled = Some(meta),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "reconciling local replicas; will retry");
                        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
                        continue;
                    }
                }
            }
            if self.registered.load(Ordering::Acquire) {
                self.reconciled.store(true, Ordering::Release);
            }
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            // Wake on a change, and now and then to retry initializations that failed.
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    }

    /// Retires the replicas whose group stopped; whether none is down now.
    async fn none_stopped(&self) -> bool {
        self.retire_stopped().await;
        self.down.count() == 0
    }

    /// One pass; whether it settled `meta` (nothing left to retry until the metadata changes or
    /// a replica stops).
    async fn reconcile(&self, meta: &ClusterMetadata) -> Result<bool> {
        let wanted = self.wanted(meta);
        self.remove_gone(&wanted).await;
        self.retire_stopped().await;
        self.down.retain(|g| wanted.contains_key(&g));
        let now = std::time::Instant::now();
        let (mut settled, mut opened) = (true, false);
        for (gid, w) in wanted {
            if !self.down.may_open(gid, now) {
                continue;
            }
            match self.ensure_replica(gid, &w).await {
                Ok((replica, ensured)) => {
                    self.down.clear(gid);
                    opened |= ensured == Ensured::Opened;
                    settled &= ensured != Ensured::Retry;
                    settled &= self.form_group(&replica, &w, meta).await;
                }
                Err(e) => self.mark_down(gid, &w.topic, w.partition, e.to_string()),
            }
        }
        let down = self.down.count();
        self.metrics.set_replicas_down(down);
        if opened {
            self.wake_leadership_reporter();
        }
        Ok(settled && down == 0)
    }

    /// The partition groups the metadata places on this node.
    fn wanted(&self, meta: &ClusterMetadata) -> HashMap<GroupId, Wanted> {
        let me = self.node_id();
        let mut wanted = HashMap::new();
        for (name, t) in &meta.topics {
            let log = topic_log_config(&self.config.topic_defaults.log, &t.configs)
                .unwrap_or_else(|_| self.config.topic_defaults.log.clone());
            for (i, a) in t.partitions.iter().enumerate() {
                if a.replicas.contains(&me) {
                    let w = Wanted {
                        topic: name.clone(),
                        partition: i as u32,
                        replicas: a.replicas.clone(),
                        log: log.clone(),
                    };
                    wanted.insert(a.group, w);
                }
            }
        }
        wanted
    }

    /// Stops and deletes the replicas of topics that are gone.
    async fn remove_gone(&self, wanted: &HashMap<GroupId, Wanted>) {
        let gone: Vec<LocalReplica> = self
            .replicas
            .read()
            .expect("invariant: replica map lock is never poisoned")
            .iter()
            .filter(|(g, _)| !wanted.contains_key(g))
            .map(|(_, r)| r.clone())
            .collect();
        for r in gone {
            let gid = r.group.id();
            self.replicas
                .write()
                .expect("invariant: replica map lock is never poisoned")
                .remove(&gid);
            if let Err(e) = self.registry.remove_partition(gid).await {
                tracing::warn!(group = gid, error = %e, "stopping a deleted partition's replica");
            }
            if let Err(e) = std::fs::remove_dir_all(&r.dir) {
                tracing::warn!(dir = %r.dir.display(), error = %e, "removing a deleted partition's data");
            }
            tracing::info!(topic = %r.topic, partition = r.partition, "removed replica of deleted topic");
        }
    }

    /// Takes replicas whose Raft group stopped on a fatal error out of service (no zombie keeps
    /// answering as if it were alive); the loop reopens them after a backoff.
    async fn retire_stopped(&self) {
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        let stopped: Vec<(LocalReplica, String)> = self
            .replicas
            .read()
            .expect("invariant: replica map lock is never poisoned")
            .values()
            .filter_map(|r| stopped_reason(r.group.raft()).map(|why| (r.clone(), why)))
            .collect();
        for (r, why) in stopped {
            let gid = r.group.id();
            self.replicas
                .write()
                .expect("invariant: replica map lock is never poisoned")
                .remove(&gid);
            // The group is stopped already; this releases it and flushes what it can.
            if let Err(e) = self.registry.remove_partition(gid).await {
                tracing::debug!(group = gid, error = %e, "releasing a stopped replica");
            }
            self.mark_down(
                gid,
                &r.topic,
                r.partition,
                format!("raft group stopped: {why}"),
            );
        }
    }

    fn mark_down(&self, gid: GroupId, topic: &str, partition: u32, reason: String) {
        let wait = self.down.record(gid, topic, partition, reason.clone());
        self.metrics.replica_failures.inc();
        tracing::error!(
            node = self.node_id(),
            %topic,
            partition,
            group = gid,
            error = %reason,
            retry_in_s = wait.as_secs(),
            "partition replica out of service; will reopen it"
        );
    }

    /// The local replica of `gid`, opened (or created) when this node has none yet.
    async fn ensure_replica(&self, gid: GroupId, w: &Wanted) -> Result<(LocalReplica, Ensured)> {
        let existing = self
            .replicas
            .read()
            .expect("invariant: replica map lock is never poisoned")
            .get(&gid)
            .cloned();
        if let Some(r) = existing {
            return Ok(self.reconfigure(r, w).await);
        }
        let dir = partition_dir(&self.config, &w.topic, w.partition, gid);
        let group = match self.registry.partition(gid) {
            Some(g) => g,
            None => {
                self.registry
                    .create_partition(gid, &dir, w.log.clone())
                    .await?
            }
        };
        let r = LocalReplica {
            topic: w.topic.clone(),
            partition: w.partition,
            group,
            dir,
            log: w.log.clone(),
        };
        self.replicas
            .write()
            .expect("invariant: replica map lock is never poisoned")
            .insert(gid, r.clone());
        tracing::info!(topic = %w.topic, partition = w.partition, group = gid, "opened replica");
        Ok((r, Ensured::Opened))
    }

    /// Applies a topic's changed log settings (`skein topic alter-config`) to its running
    /// replica; a replica that refuses them keeps its settings (tried again on the next pass).
    async fn reconfigure(&self, mut r: LocalReplica, w: &Wanted) -> (LocalReplica, Ensured) {
        if r.log == w.log {
            return (r, Ensured::Kept);
        }
        if let Err(e) = r.group.set_log_config(w.log.clone()).await {
            tracing::warn!(topic = %w.topic, partition = w.partition, error = %e, "applying the topic's changed settings; will retry");
            return (r, Ensured::Retry);
        }
        tracing::info!(topic = %w.topic, partition = w.partition, "applied the topic's changed settings");
        r.log = w.log.clone();
        self.replicas
            .write()
            .expect("invariant: replica map lock is never poisoned")
            .insert(r.group.id(), r.clone());
        (r, Ensured::Kept)
    }

    /// The preferred leader (first replica) forms a new group with its replicas; whether nothing
    /// is left to try (formed, or not this node's to form).
    async fn form_group(&self, replica: &LocalReplica, w: &Wanted, meta: &ClusterMetadata) -> bool {
        if w.replicas.first() != Some(&self.node_id()) || replica.group.leader().is_some() {
            return true;
        }
        match replica.group.raft().is_initialized().await {
            Ok(true) => return true,
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(topic = %w.topic, partition = w.partition, error = %e, "checking whether a partition group is formed; will retry");
                return false;
            }
        }
        let members: BTreeMap<NodeId, skein_raft::Node> = w
            .replicas
            .iter()
            .filter_map(|id| {
                self.config
                    .peers
                    .get(id)
                    .or_else(|| meta.nodes.get(id).map(|n| &n.peer_addr))
                    .map(|a| (*id, skein_raft::Node { addr: a.clone() }))
            })
            .collect();
        if let Err(e) = replica.group.initialize(members).await {
            // Formed meanwhile, or failed: the next pass looks again.
            tracing::debug!(topic = %w.topic, partition = w.partition, error = %e, "forming a partition group");
            return false;
        }
        true
    }

    /// Stops accepting work and closes every group (flushing logs).
    pub async fn shutdown(&self) -> Result<()> {
        self.stopping.store(true, Ordering::Release);
        self.metadata_changed.notify_waiters();
        self.wake_leadership_reporter();
        self.registry.shutdown().await.map_err(NodeError::from)
    }
}
