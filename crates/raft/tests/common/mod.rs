//! A cluster of Skein nodes in one process, each with its own Raft gRPC server on
//! `127.0.0.1:0`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use skein_raft::openraft::BasicNode;
use skein_raft::record::{BatchBuilder, ProducerStamp};
use skein_raft::storage::LogConfig;
use skein_raft::{NodeId, PartitionGroup, RaftConfig, RaftService, Registry};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const GROUP: u64 = 1;

pub fn config() -> RaftConfig {
    RaftConfig {
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        heartbeat_interval_ms: 60,
        rpc_timeout_ms: 500,
        connect_timeout_ms: 200,
        reconnect_backoff_min_ms: 20,
        reconnect_backoff_max_ms: 200,
        ..RaftConfig::default()
    }
}

pub fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 64 << 10,
        batch_bytes_max: 16 << 10,
        preallocate: false,
        verify_on_open: true,
        // As the node's default: fsync as soon as the flusher is free (group commit with an
        // interval is tested on its own).
        flush: skein_raft::storage::FlushPolicy::EveryBatch,
        ..LogConfig::default()
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A running node: its registry, its gRPC server and where its data lives.
pub struct TestNode {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub registry: Arc<Registry>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl TestNode {
    /// Starts node `id` with data in `dir`, listening on `listener`.
    pub async fn start(id: NodeId, dir: &Path, listener: TcpListener, log: LogConfig) -> TestNode {
        let addr = listener.local_addr().expect("local addr");
        let registry = Registry::new(id, config()).expect("valid config");
        registry
            .create_partition(GROUP, &dir.join(format!("group-{GROUP}")), log)
            .await
            .expect("open partition group");
        let (stop, stopped) = oneshot::channel::<()>();
        let svc = RaftService::new(registry.clone()).into_server();
        let server = tokio::spawn(async move {
            let incoming = RaftService::incoming(listener);
            let r = RaftService::server_builder(&config())
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "raft server failed");
            }
        });
        TestNode {
            id,
            addr,
            dir: dir.to_path_buf(),
            registry,
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub fn partition(&self) -> Arc<PartitionGroup> {
        self.registry.partition(GROUP).expect("partition group")
    }

    /// Stops the node's groups and its server.
    pub async fn stop(&mut self) {
        self.registry.shutdown().await.expect("clean shutdown");
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            h.await.expect("server task");
        }
    }

    /// Starts the node again from its directory on its old address.
    pub async fn restart(&mut self, log: LogConfig) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("rebind old address");
        *self = TestNode::start(self.id, &self.dir.clone(), listener, log).await;
    }
}

/// Three nodes, group [`GROUP`] initialized with all of them as voters.
pub async fn cluster(base: &Path, log: LogConfig) -> Vec<TestNode> {
    init_tracing();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    let mut members = BTreeMap::new();
    for (i, l) in listeners.iter().enumerate() {
        let addr = l.local_addr().expect("addr");
        members.insert(i as u64 + 1, BasicNode::new(addr.to_string()));
    }
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        nodes.push(TestNode::start(id, &base.join(format!("node-{id}")), l, log.clone()).await);
    }
    nodes[0]
        .partition()
        .initialize(members)
        .await
        .expect("initialize group");
    nodes
}

/// Waits until every running node in `nodes` agrees on one leader; returns its position.
pub async fn leader(nodes: &[TestNode], running: &[usize], timeout: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let leaders: Vec<Option<NodeId>> = running
            .iter()
            .map(|&i| {
                nodes[i]
                    .partition()
                    .raft()
                    .metrics()
                    .borrow()
                    .current_leader
            })
            .collect();
        if let Some(Some(l)) = leaders.first() {
            if leaders.iter().all(|x| *x == Some(*l)) && running.iter().any(|&i| nodes[i].id == *l)
            {
                let pos = nodes
                    .iter()
                    .position(|n| n.id == *l)
                    .expect("leader is a node");
                // The leader must know it is leader too.
                let m = nodes[pos].partition().raft().metrics().borrow().clone();
                if m.state.is_leader() {
                    return pos;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agreed leader within {timeout:?}: {leaders:?}"
        );
        let mut rx = nodes[running[0]].partition().raft().metrics();
        let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
    }
}

/// Waits until `node` has applied Raft index `index`.
pub async fn applied(node: &TestNode, index: u64, timeout: Duration) {
    node.partition()
        .raft()
        .wait(Some(timeout))
        .metrics(
            |m| m.last_applied.is_some_and(|l| l.index >= index),
            format!("node {} applies index {index}", node.id),
        )
        .await
        .expect("applied in time");
}

/// A data batch of `records` records of `value_len` bytes.
pub fn data_batch(n: u64, records: u32, value_len: usize) -> Bytes {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    let value = vec![b'x'; value_len];
    for r in 0..records {
        let key = format!("k{n}-{r}");
        b.push(1_700_000_000_000, Some(key.as_bytes()), Some(&value), &[]);
    }
    b.finish()
}

/// A batch of an idempotent producer.
pub fn idempotent_batch(pid: i64, epoch: i16, seq: i32, records: u32) -> Bytes {
    let mut b = BatchBuilder::new(1_700_000_000_000).producer(ProducerStamp {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
    });
    for r in 0..records {
        b.push(
            1_700_000_000_000,
            None,
            Some(format!("v{seq}-{r}").as_bytes()),
            &[],
        );
    }
    b.finish()
}

/// (raft index, term, crc, base offset, record count, kind) of every entry in the node's log.
pub type EntrySummary = (u64, u64, u32, u64, u32, u8);

pub async fn log_summary(node: &TestNode) -> Vec<EntrySummary> {
    node.partition()
        .with_log(|l| {
            let first = l.first_index();
            l.entries(first, l.next_index(), u64::MAX)
                .expect("read log")
                .into_iter()
                .zip(first..)
                .map(|(b, index)| {
                    let h = b.header();
                    (
                        index,
                        h.leader_epoch as u64,
                        h.crc,
                        h.base_offset,
                        h.record_count,
                        h.attributes as u8,
                    )
                })
                .collect()
        })
        .await
}

/// Partitions `nodes[i]` from every other node: calls in both directions fail as unreachable,
/// for every group (see `PeerPool::cut`).
pub fn isolate(nodes: &[TestNode], i: usize) {
    for (j, other) in nodes.iter().enumerate() {
        if j != i {
            nodes[i].registry.peers().cut(other.id);
            other.registry.peers().cut(nodes[i].id);
        }
    }
}

/// Undoes [`isolate`].
pub fn heal(nodes: &[TestNode], i: usize) {
    for (j, other) in nodes.iter().enumerate() {
        if j != i {
            nodes[i].registry.peers().heal(other.id);
            other.registry.peers().heal(nodes[i].id);
        }
    }
}

/// The last Raft index in the node's log.
pub fn last_log_index(node: &TestNode) -> u64 {
    node.partition()
        .raft()
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or(0)
}

/// The last Raft index the node has applied.
pub fn last_applied(node: &TestNode) -> u64 {
    node.partition()
        .raft()
        .metrics()
        .borrow()
        .last_applied
        .map_or(0, |l| l.index)
}

/// Waits until `node`'s log ends at `index` and it has applied all of it.
pub async fn caught_up(node: &TestNode, index: u64, timeout: Duration) {
    node.partition()
        .raft()
        .wait(Some(timeout))
        .metrics(
            |m| m.last_log_index == Some(index) && m.last_applied.is_some_and(|l| l.index == index),
            format!(
                "node {} holds and applies exactly the log through {index}",
                node.id
            ),
        )
        .await
        .expect("caught up in time");
}
