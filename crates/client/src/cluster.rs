//! [`Client`]: connections to brokers, the metadata cache and the retry policy that the
//! producer, the consumer and the admin API share.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use skein_proto::v1 as pb;
use skein_proto::v1::metadata_service_client::MetadataServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::config::ClientConfig;
use crate::error::{ClientError, LeaderHint, Result};
use crate::fxhash::{FxHashMap, FxHashSet};
use crate::record::TopicPartition;

/// Largest gRPC message the client accepts (fetch responses are bounded by the consumer's
/// `fetch_bytes_max`, which this must exceed).
pub(crate) const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// A node of the cluster as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDescription {
    /// Node id.
    pub node_id: u64,
    /// Advertised client address, `HOST:PORT`.
    pub client_addr: String,
    /// Peer (Raft) address.
    pub peer_addr: String,
    /// Whether the node has joined the metadata group and opened its replicas (as seen by the
    /// node that answered).
    pub ready: bool,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// Partition number.
    pub partition: u32,
    /// Leader node, `None` while no leader is known.
    pub leader: Option<u64>,
    /// Replica nodes.
    pub replicas: Vec<u64>,
    /// Replicas in sync with the leader.
    pub in_sync: Vec<u64>,
    /// Raft term of the current leader.
    pub leader_term: u64,
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Topic name.
    pub name: String,
    /// Partitions, sorted by number.
    pub partitions: Vec<PartitionDescription>,
    /// Replication factor.
    pub replication_factor: u32,
    /// Per-topic configuration.
    pub config: BTreeMap<String, String>,
}

/// What a metadata request returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterMetadata {
    /// Cluster id.
    pub cluster_id: String,
    /// Leader of the metadata group, `None` when there is none.
    pub controller_id: Option<u64>,
    /// Nodes, sorted by id.
    pub nodes: Vec<NodeDescription>,
    /// Topics, sorted by name.
    pub topics: Vec<TopicDescription>,
    /// The largest request the answering broker accepts (its `limits.request_bytes_max`);
    /// `None` from a broker that does not say.
    pub request_bytes_max: Option<u64>,
}

#[derive(Debug, Default)]
struct MetadataCache {
    nodes: FxHashMap<u64, NodeDescription>,
    /// Shared, so that a lookup on the produce path is a reference-count increment, not a copy.
    /// FxHash: `Producer::send` looks a topic up here for every record.
    topics: FxHashMap<String, Arc<TopicDescription>>,
    /// Topics whose leaders are known to be stale (a NOT_LEADER without hint, a dead broker).
    stale: FxHashSet<String>,
    /// Each broker's request limit, by the address that answered its metadata request; a
    /// broker that does not advertise one is absent.
    request_limits: HashMap<String, u64>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    channels: Mutex<HashMap<String, Channel>>,
    metadata: RwLock<MetadataCache>,
    /// Bumped on every completed refresh, so concurrent refreshers can coalesce.
    generation: AtomicU64,
    refresh_lock: tokio::sync::Mutex<()>,
    /// The broker that answered last: tried first next time.
    last_good: Mutex<Option<String>>,
}

/// A handle on a Skein cluster: one HTTP/2 connection per broker, reused by every request, and
/// a metadata cache (topics, partition leaders, node addresses) refreshed when a broker says it
/// is stale. Cheap to clone; clones share connections and cache.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// A client for the cluster reachable at `config.brokers`. Connects lazily: the first
    /// request opens the connections.
    pub fn new(config: ClientConfig) -> Result<Self> {
        config.validate()?;
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                channels: Mutex::new(HashMap::new()),
                metadata: RwLock::new(MetadataCache::default()),
                generation: AtomicU64::new(0),
                refresh_lock: tokio::sync::Mutex::new(()),
                last_good: Mutex::new(None),
            }),
        })
    }

    /// Like [`Client::new`], then fetches the cluster's metadata once, so that an unreachable
    /// cluster is reported here rather than at the first send.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        let client = Client::new(config)?;
        client.metadata(&[]).await?;
        Ok(client)
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Fetches fresh metadata for `topics` (all topics when empty) and updates the cache.
    /// A topic that does not exist is left out of the answer (and out of the cache).
    pub async fn metadata(&self, topics: &[String]) -> Result<ClusterMetadata> {
        let _guard = self.inner.refresh_lock.lock().await;
        self.fetch_metadata(topics).await
    }

    async fn fetch_metadata(&self, topics: &[String]) -> Result<ClusterMetadata> {
        let request = pb::MetadataRequest {
            topics: topics.to_vec(),
        };
        let timeout = self.config().request_timeout;
        let (response, addr) = self
            .call_any("metadata", |channel, addr| {
                let request = request.clone();
                async move {
                    let mut client = MetadataServiceClient::new(channel);
                    let response = timed("metadata", &addr, timeout, client.metadata(request));
                    Ok((response.await?, addr))
                }
            })
            .await?;
        let meta = convert_metadata(response);
        self.update_cache(&meta, topics, addr);
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        Ok(meta)
    }

    /// Takes `meta`, as answered by the broker at `addr`, into the cache.
    fn update_cache(&self, meta: &ClusterMetadata, asked: &[String], addr: String) {
        let mut cache = write_lock(&self.inner.metadata);
        match meta.request_bytes_max {
            Some(limit) => cache.request_limits.insert(addr, limit),
            None => cache.request_limits.remove(&addr),
        };
        if !meta.nodes.is_empty() {
            cache.nodes = meta.nodes.iter().map(|n| (n.node_id, n.clone())).collect();
        }
        if asked.is_empty() {
            cache.topics.clear();
            cache.stale.clear();
        }
        for t in asked {
            // Asked for and not returned: it does not exist (any more).
            cache.topics.remove(t);
            cache.stale.remove(t);
        }
        for t in &meta.topics {
            cache.stale.remove(&t.name);
            cache.topics.insert(t.name.clone(), Arc::new(t.clone()));
        }
    }

    /// Refreshes metadata for `topic` unless another task refreshed it since `seen_generation`.
    async fn refresh_topic(&self, topic: &str, seen_generation: u64) -> Result<()> {
        let _guard = self.inner.refresh_lock.lock().await;
        if self.inner.generation.load(Ordering::Acquire) != seen_generation {
            let cache = read_lock(&self.inner.metadata);
            if cache.topics.contains_key(topic) && !cache.stale.contains(topic) {
                return Ok(());
            }
        }
        self.fetch_metadata(&[topic.to_string()]).await.map(|_| ())
    }

    /// The smallest request limit advertised by the brokers that answered metadata requests;
    /// `None` until one has (or when none advertises a limit). Requests go to many brokers and
    /// a cluster's nodes normally share their limits, so the smallest one holds for all.
    pub(crate) fn broker_request_bytes_max(&self) -> Option<usize> {
        read_lock(&self.inner.metadata)
            .request_limits
            .values()
            .min()
            .map(|&l| usize::try_from(l).unwrap_or(usize::MAX))
    }

    /// The topic's metadata, from the cache or, when missing or stale, from a broker.
    pub(crate) async fn topic(&self, topic: &str) -> Result<Arc<TopicDescription>> {
        let generation = self.inner.generation.load(Ordering::Acquire);
        {
            let cache = read_lock(&self.inner.metadata);
            if let Some(t) = cache.topics.get(topic) {
                if cache.stale.is_empty() || !cache.stale.contains(topic) {
                    return Ok(t.clone());
                }
            }
        }
        self.refresh_topic(topic, generation).await?;
        read_lock(&self.inner.metadata)
            .topics
            .get(topic)
            .cloned()
            .ok_or_else(|| ClientError::UnknownTopicOrPartition {
                what: format!("topic {topic}"),
            })
    }

    /// Node id and client address of the partition's leader, refreshing metadata when the cache
    /// has none.
    pub(crate) async fn leader(&self, tp: &TopicPartition) -> Result<(u64, String)> {
        let topic = self.topic(&tp.topic).await?;
        let part = topic
            .partitions
            .iter()
            .find(|p| p.partition == tp.partition)
            .ok_or_else(|| ClientError::UnknownTopicOrPartition {
                what: format!("partition {tp} (the topic has {})", topic.partitions.len()),
            })?;
        let Some(leader) = part.leader else {
            self.mark_stale(&tp.topic);
            return Err(ClientError::LeaderNotAvailable {
                what: format!("partition {tp}"),
            });
        };
        let addr = read_lock(&self.inner.metadata)
            .nodes
            .get(&leader)
            .map(|n| n.client_addr.clone())
            .filter(|a| !a.is_empty());
        match addr {
            Some(addr) => Ok((leader, addr)),
            None => {
                self.mark_stale(&tp.topic);
                Err(ClientError::LeaderNotAvailable {
                    what: format!("partition {tp} (leader node {leader} has no known address)"),
                })
            }
        }
    }

    /// The cached leader node of a partition, if any.
    #[cfg(test)]
    pub(crate) fn cached_leader(&self, tp: &TopicPartition) -> Option<u64> {
        read_lock(&self.inner.metadata)
            .topics
            .get(&tp.topic)?
            .partitions
            .iter()
            .find(|p| p.partition == tp.partition)?
            .leader
    }

    fn mark_stale(&self, topic: &str) {
        write_lock(&self.inner.metadata)
            .stale
            .insert(topic.to_string());
    }

    /// Updates the cache after `err` concerning `tp`: follows a leader hint at once, or marks
    /// the topic stale so the next lookup refreshes it.
    pub(crate) fn on_error(&self, tp: Option<&TopicPartition>, err: &ClientError) {
        if let (
            Some(tp),
            ClientError::NotLeader {
                leader: Some(h), ..
            },
        ) = (tp, err)
        {
            if self.apply_leader_hint(tp, h) {
                return;
            }
        }
        if err.needs_metadata_refresh() {
            let mut cache = write_lock(&self.inner.metadata);
            match tp {
                Some(tp) => {
                    cache.stale.insert(tp.topic.clone());
                }
                // A broker went away: any leader may have moved. (Other errors without a
                // partition, e.g. an unknown topic, refresh that topic when it is looked up.)
                None if matches!(
                    err,
                    ClientError::Transport { .. } | ClientError::NoBrokerReachable { .. }
                ) =>
                {
                    let all: Vec<String> = cache.topics.keys().cloned().collect();
                    cache.stale.extend(all);
                }
                None => {}
            }
        }
    }

    /// Records that `hint` leads `tp`. Returns false when the hint has no address and the node
    /// is unknown (a metadata refresh is needed then).
    pub(crate) fn apply_leader_hint(&self, tp: &TopicPartition, hint: &LeaderHint) -> bool {
        let mut cache = write_lock(&self.inner.metadata);
        if !hint.client_addr.is_empty() {
            let node = cache
                .nodes
                .entry(hint.node_id)
                .or_insert_with(|| NodeDescription {
                    node_id: hint.node_id,
                    client_addr: String::new(),
                    peer_addr: String::new(),
                    ready: true,
                });
            node.client_addr = hint.client_addr.clone();
        } else if !cache.nodes.contains_key(&hint.node_id) {
            return false;
        }
        let Some(topic) = cache.topics.get_mut(&tp.topic) else {
            return false;
        };
        match Arc::make_mut(topic)
            .partitions
            .iter_mut()
            .find(|p| p.partition == tp.partition)
        {
            Some(p) => {
                p.leader = Some(hint.node_id);
                true
            }
            None => false,
        }
    }

    /// The connection to `addr`, created on first use and reused afterwards. tonic reconnects
    /// it by itself after a failure.
    pub(crate) fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| ClientError::InvalidConfig {
                field: "brokers",
                reason: format!("`{addr}` is not a valid HOST:PORT: {e}"),
            })?
            .connect_timeout(self.config().connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(false);
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Addresses to try for a request any broker can answer: the last one that answered, the
    /// known ready nodes, then the bootstrap list.
    fn candidate_addrs(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |a: &str| {
            if !a.is_empty() && !out.iter().any(|x| x == a) {
                out.push(a.to_string());
            }
        };
        if let Some(a) = self
            .inner
            .last_good
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
        {
            push(a);
        }
        {
            let cache = read_lock(&self.inner.metadata);
            let mut nodes: Vec<&NodeDescription> = cache.nodes.values().collect();
            nodes.sort_by_key(|n| (!n.ready, n.node_id));
            for n in nodes {
                push(&n.client_addr);
            }
        }
        for b in &self.config().brokers {
            push(b);
        }
        out
    }

    /// Runs `call` against one broker after another until one answers; connection failures move
    /// on to the next, any other answer (success or broker error) is returned.
    pub(crate) async fn call_any<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T>
    where
        F: FnMut(Channel, String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let addrs = self.candidate_addrs();
        let mut last: Option<ClientError> = None;
        for addr in &addrs {
            let channel = self.channel(addr)?;
            match call(channel, addr.clone()).await {
                Ok(v) => {
                    *self
                        .inner
                        .last_good
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(addr.clone());
                    return Ok(v);
                }
                Err(e @ (ClientError::Transport { .. } | ClientError::Timeout { .. })) => {
                    tracing::debug!(%addr, error = %e, "{what}: broker did not answer, trying the next");
                    last = Some(e);
                }
                Err(ClientError::Broker {
                    code: crate::ErrorCode::NodeNotReady,
                    ..
                }) if addrs.len() > 1 => {
                    // Another node may be ready.
                    last = Some(ClientError::Broker {
                        code: crate::ErrorCode::NodeNotReady,
                        what: what.to_string(),
                        message: format!("node at {addr} is not ready"),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        match last {
            Some(ClientError::Broker {
                code,
                what,
                message,
            }) => Err(ClientError::Broker {
                code,
                what,
                message,
            }),
            Some(e) => Err(ClientError::NoBrokerReachable {
                brokers: addrs.join(","),
                detail: e.to_string(),
            }),
            None => Err(ClientError::NoBrokerReachable {
                brokers: addrs.join(","),
                detail: "no broker address known".into(),
            }),
        }
    }

    /// How long to wait before retry number `attempt` (0-based): exponential from
    /// `retry_backoff_min`, capped at `retry_backoff_max`, with +-20% jitter.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        backoff(
            self.config().retry_backoff_min,
            self.config().retry_backoff_max,
            attempt,
            jitter_permille(),
        )
    }

    /// Runs `op` until it succeeds, fails with an error that is not retryable, or
    /// `max_retries` retries are used up; between attempts it updates metadata (see
    /// [`Client::on_error`]) and backs off. A NOT_LEADER that names the leader is retried at
    /// once, against that leader.
    pub(crate) async fn retry<T, F, Fut>(&self, tp: Option<&TopicPartition>, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let max = self.config().max_retries;
        let mut attempt = 0u32;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let unreachable = matches!(e, ClientError::NoBrokerReachable { .. });
                    // Every broker was already tried: give up sooner than for other errors.
                    let limit = if unreachable { max.min(2) } else { max };
                    if !e.is_retryable() || attempt >= limit {
                        return Err(e);
                    }
                    self.on_error(tp, &e);
                    let redirected = matches!(
                        &e,
                        ClientError::NotLeader { leader: Some(h), .. } if !h.client_addr.is_empty()
                    );
                    if !redirected || attempt > 0 {
                        tokio::time::sleep(self.backoff(attempt)).await;
                    }
                    tracing::debug!(attempt, error = %e, "retrying");
                    attempt += 1;
                }
            }
        }
    }
}

pub(crate) fn backoff(
    min: Duration,
    max: Duration,
    attempt: u32,
    jitter_permille: i64,
) -> Duration {
    let factor = 1u32 << attempt.min(16);
    let base = min.saturating_mul(factor).min(max);
    let ms = base.as_millis() as i64;
    let jittered = ms + ms * jitter_permille / 1000;
    Duration::from_millis(jittered.max(1) as u64).min(max)
}

/// A pseudo-random value in -200..=200 (per mille).
fn jitter_permille() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    (h.finish() % 401) as i64 - 200
}

/// Awaits a tonic call with a client-side deadline and maps its failure.
pub(crate) async fn timed<T>(
    what: &str,
    addr: &str,
    limit: Duration,
    call: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(ClientError::from_status(what, addr, &status)),
        Err(_) => Err(ClientError::Timeout {
            what: format!("{what} (broker {addr})"),
            after: limit,
        }),
    }
}

fn convert_metadata(r: pb::MetadataResponse) -> ClusterMetadata {
    let mut nodes: Vec<NodeDescription> = r.nodes.into_iter().map(convert_node).collect();
    nodes.sort_by_key(|n| n.node_id);
    let mut topics: Vec<TopicDescription> = r
        .topics
        .into_iter()
        .filter(|t| ClientError::from_partition_error(&t.name, t.error.as_ref()).is_none())
        .map(convert_topic)
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    ClusterMetadata {
        cluster_id: r.cluster_id,
        controller_id: (r.controller_id != 0).then_some(r.controller_id),
        nodes,
        topics,
        request_bytes_max: (r.request_bytes_max != 0).then_some(r.request_bytes_max),
    }
}

pub(crate) fn convert_node(n: pb::NodeInfo) -> NodeDescription {
    NodeDescription {
        node_id: n.node_id,
        client_addr: n.client_addr,
        peer_addr: n.peer_addr,
        ready: n.ready,
    }
}

pub(crate) fn convert_topic(t: pb::TopicInfo) -> TopicDescription {
    let mut partitions: Vec<PartitionDescription> = t
        .partitions
        .into_iter()
        .map(|p| PartitionDescription {
            partition: p.partition,
            leader: (p.leader != 0).then_some(p.leader),
            replicas: p.replicas,
            in_sync: p.in_sync,
            leader_term: p.leader_term,
        })
        .collect();
    partitions.sort_by_key(|p| p.partition);
    TopicDescription {
        name: t.name,
        partitions,
        replication_factor: t.replication_factor,
        config: t.config.into_iter().collect(),
    }
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        assert_eq!(backoff(min, max, 0, 0), Duration::from_millis(100));
        assert_eq!(backoff(min, max, 1, 0), Duration::from_millis(200));
        assert_eq!(backoff(min, max, 3, 0), Duration::from_millis(800));
        assert_eq!(backoff(min, max, 10, 0), max);
        assert_eq!(backoff(min, max, 1000, 0), max);
        assert_eq!(backoff(min, max, 0, 200), Duration::from_millis(120));
        assert_eq!(backoff(min, max, 0, -200), Duration::from_millis(80));
        assert!(backoff(min, max, 10, 200) <= max);
        let j = jitter_permille();
        assert!((-200..=200).contains(&j));
    }

    fn topic_info(name: &str, leaders: &[u64]) -> pb::TopicInfo {
        pb::TopicInfo {
            name: name.into(),
            partitions: leaders
                .iter()
                .enumerate()
                .map(|(i, l)| pb::PartitionInfo {
                    partition: i as u32,
                    leader: *l,
                    replicas: vec![1, 2],
                    in_sync: vec![1],
                    leader_term: 3,
                })
                .rev()
                .collect(),
            replication_factor: 2,
            config: Default::default(),
            error: None,
        }
    }

    #[test]
    fn metadata_conversion_sorts_and_drops_missing_topics() {
        let mut missing = topic_info("gone", &[]);
        missing.error = Some(pb::Error {
            code: crate::ErrorCode::UnknownTopicOrPartition as i32,
            message: "no such topic".into(),
            leader: None,
        });
        let meta = convert_metadata(pb::MetadataResponse {
            nodes: vec![
                pb::NodeInfo {
                    node_id: 2,
                    client_addr: "b:1".into(),
                    peer_addr: "b:2".into(),
                    ready: true,
                },
                pb::NodeInfo {
                    node_id: 1,
                    client_addr: "a:1".into(),
                    peer_addr: "a:2".into(),
                    ready: false,
                },
            ],
            topics: vec![topic_info("t", &[1, 0]), missing],
            controller_id: 0,
            cluster_id: "c".into(),
            request_bytes_max: 0,
        });
        assert_eq!(meta.controller_id, None);
        assert_eq!(
            meta.request_bytes_max, None,
            "0 means the broker does not say"
        );
        assert_eq!(meta.nodes[0].node_id, 1);
        assert_eq!(meta.topics.len(), 1);
        let t = &meta.topics[0];
        assert_eq!(t.partitions[0].partition, 0);
        assert_eq!(t.partitions[0].leader, Some(1));
        assert_eq!(t.partitions[1].leader, None);
    }

    #[tokio::test]
    async fn leader_hints_update_the_cache_without_a_round_trip() {
        let client = Client::new(ClientConfig::new("127.0.0.1:1")).expect("valid");
        let meta = convert_metadata(pb::MetadataResponse {
            nodes: vec![pb::NodeInfo {
                node_id: 1,
                client_addr: "a:1".into(),
                peer_addr: String::new(),
                ready: true,
            }],
            topics: vec![topic_info("t", &[1, 1])],
            controller_id: 1,
            cluster_id: "c".into(),
            request_bytes_max: 0,
        });
        client.update_cache(&meta, &[], "a:1".into());
        let tp = TopicPartition::new("t", 1);
        assert_eq!(client.leader(&tp).await.expect("cached"), (1, "a:1".into()));
        client.on_error(
            Some(&tp),
            &ClientError::NotLeader {
                what: "t:1".into(),
                leader: Some(LeaderHint {
                    node_id: 7,
                    client_addr: "g:7".into(),
                }),
            },
        );
        assert_eq!(client.leader(&tp).await.expect("cached"), (7, "g:7".into()));
        // Partition 0 keeps its leader.
        assert_eq!(client.cached_leader(&TopicPartition::new("t", 0)), Some(1));
        // A partition the topic does not have is reported as unknown, from the cache.
        let e = client
            .leader(&TopicPartition::new("t", 9))
            .await
            .expect_err("no partition 9");
        assert!(matches!(e, ClientError::UnknownTopicOrPartition { .. }));
    }

    #[test]
    fn the_smallest_advertised_request_limit_holds() {
        let client = Client::new(ClientConfig::new("127.0.0.1:1")).expect("valid");
        let answer = |limit: u64| ClusterMetadata {
            request_bytes_max: (limit != 0).then_some(limit),
            ..ClusterMetadata::default()
        };
        assert_eq!(client.broker_request_bytes_max(), None, "no metadata yet");
        client.update_cache(&answer(0), &[], "old:1".into());
        assert_eq!(
            client.broker_request_bytes_max(),
            None,
            "an old broker says nothing"
        );
        client.update_cache(&answer(16 << 20), &[], "a:1".into());
        client.update_cache(&answer(2 << 20), &[], "b:1".into());
        assert_eq!(client.broker_request_bytes_max(), Some(2 << 20));
        // Broker b raised its limit (restarted with another configuration).
        client.update_cache(&answer(32 << 20), &[], "b:1".into());
        assert_eq!(client.broker_request_bytes_max(), Some(16 << 20));
        // Broker a was replaced by one that does not advertise a limit.
        client.update_cache(&answer(0), &[], "a:1".into());
        assert_eq!(client.broker_request_bytes_max(), Some(32 << 20));
    }
}
