//! Harness for multi-node tests: real `skein-node` instances in this process, each on its own
//! ports on 127.0.0.1, with real gRPC between them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use skein_node::config::NodeConfig;
use skein_node::Listeners;
use skein_proto::v1 as pb;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub mod process;

/// One running node.
#[derive(Debug)]
pub struct TestNode {
    /// Its configuration (with the real bound addresses).
    pub config: NodeConfig,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), skein_node::error::NodeError>>>,
}

impl TestNode {
    /// The client API address.
    pub fn client_addr(&self) -> SocketAddr {
        self.config.client_addr
    }

    /// The Kafka listener's address.
    pub fn kafka_addr(&self) -> SocketAddr {
        self.config.kafka_addr
    }

    /// Stops the node gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("node {} stopped with an error: {e}", self.config.node_id),
                Err(e) => panic!("node {} panicked: {e}", self.config.node_id),
            }
        }
    }

    /// Stops the node abruptly: its task is aborted (no graceful shutdown, no final flush).
    pub fn kill(&mut self) {
        self.stop.take();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Starts (or restarts) the node from its configuration and data directory.
    pub async fn start(&mut self) {
        assert!(
            self.task.is_none(),
            "node {} is running",
            self.config.node_id
        );
        let listeners = rebind(&self.config).await;
        let (tx, rx) = oneshot::channel();
        let config = self.config.clone();
        self.task = Some(tokio::spawn(skein_node::run(
            listeners,
            config,
            async move {
                let _ = rx.await;
            },
        )));
        self.stop = Some(tx);
    }
}

async fn rebind(config: &NodeConfig) -> Listeners {
    // The ports were free when first bound; after a stop they are free again, but the kernel
    // may take a moment to release them.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Listeners::bind(config).await {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("rebinding node {}: {e}", config.node_id),
        }
    }
}

/// A cluster of `n` nodes in temporary directories.
#[derive(Debug)]
pub struct TestCluster {
    /// The nodes, node `i + 1` at index `i`.
    pub nodes: Vec<TestNode>,
    /// Keeps the data directories alive.
    pub dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `n` nodes and waits until every one is ready.
    pub async fn start(n: u64) -> TestCluster {
        Self::start_with(n, |_| {}).await
    }

    /// Starts `n` nodes whose configurations `adjust` changes, and waits until every one is
    /// ready.
    pub async fn start_with(n: u64, adjust: impl Fn(&mut NodeConfig)) -> TestCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bound = Vec::new();
        for _ in 0..n {
            let l = Listeners::bind_ephemeral().await.expect("bind");
            bound.push(l);
        }
        let peers: BTreeMap<u64, String> = bound
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.addrs().expect("addrs").1.to_string()))
            .collect();
        let mut nodes = Vec::new();
        for (i, l) in bound.into_iter().enumerate() {
            let (client, peer, http) = l.addrs().expect("addrs");
            let kafka = l.kafka_addr().expect("kafka addr");
            let mut config = NodeConfig {
                kafka_addr: kafka,
                advertised_kafka_addr: kafka.to_string(),
                node_id: i as u64 + 1,
                data_dir: dir.path().join(format!("node{}", i + 1)),
                client_addr: client,
                peer_addr: peer,
                http_addr: http,
                advertised_client_addr: client.to_string(),
                peers: peers.clone(),
                ..NodeConfig::default()
            };
            config.raft.election_timeout_min = Duration::from_millis(150);
            config.raft.election_timeout_max = Duration::from_millis(300);
            config.raft.heartbeat_interval = Duration::from_millis(50);
            adjust(&mut config);
            config.validate().expect("valid test config");
            let (tx, rx) = oneshot::channel();
            let task = tokio::spawn(skein_node::run(l, config.clone(), async move {
                let _ = rx.await;
            }));
            nodes.push(TestNode {
                config,
                stop: Some(tx),
                task: Some(task),
            });
        }
        let c = TestCluster { nodes, dir };
        for i in 0..n as usize {
            c.wait_ready(i).await;
        }
        c
    }

    /// The client addresses of nodes `nodes` (indexes), comma-separated: a client's brokers.
    pub fn brokers(&self, nodes: &[usize]) -> String {
        nodes
            .iter()
            .map(|&i| self.nodes[i].client_addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client addresses of every node, comma-separated.
    pub fn all_brokers(&self) -> String {
        self.brokers(&(0..self.nodes.len()).collect::<Vec<_>>())
    }

    /// Waits until node `i` reports ready in `DescribeCluster`'s own view of itself.
    pub async fn wait_ready(&self, i: usize) {
        let http = self.nodes[i].config.http_addr;
        wait_for(Duration::from_secs(20), || async move {
            http_get(http, "/readyz")
                .await
                .is_some_and(|(code, _)| code == 200)
        })
        .await
        .unwrap_or_else(|| panic!("node {} did not become ready", i + 1));
    }

    /// A channel to node `i`'s client API.
    pub async fn channel(&self, i: usize) -> Channel {
        channel(self.nodes[i].client_addr()).await
    }
}

/// A channel to a client address.
pub async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

/// Polls `f` until it returns true or `timeout` passes (then `None`).
pub async fn wait_for<F, Fut>(timeout: Duration, mut f: F) -> Option<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if f().await {
            return Some(());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.1 GET: (status, body), or `None` when the node does not answer.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// Creates a topic through node `i`.
pub async fn create_topic(
    c: &TestCluster,
    i: usize,
    name: &str,
    partitions: u32,
    rf: u32,
) -> pb::TopicInfo {
    let mut m = pb::metadata_service_client::MetadataServiceClient::new(c.channel(i).await);
    m.create_topic(pb::CreateTopicRequest {
        name: name.into(),
        partitions,
        replication_factor: rf,
        config: Default::default(),
    })
    .await
    .expect("create topic")
    .into_inner()
    .topic
    .expect("topic info")
}

/// A client of `brokers` that retries patiently (leaders move in these tests).
pub fn client(brokers: &str) -> skein_client::Client {
    let mut c = skein_client::ClientConfig::new(brokers);
    c.max_retries = 50;
    skein_client::Client::new(c).expect("client")
}

/// Reads every record of partitions `0..partitions` of `topic` from the beginning until
/// `expected` records are in (or a minute passes).
pub async fn consume_all(
    brokers: &str,
    topic: &str,
    partitions: u32,
    expected: usize,
) -> Vec<skein_client::ConsumerRecord> {
    use skein_client::{Consumer, ConsumerConfig, OffsetReset, TopicPartition};
    let config = ConsumerConfig {
        offset_reset: OffsetReset::Earliest,
        fetch_wait_max: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client(brokers), config).expect("consumer");
    consumer.assign((0..partitions).map(|p| TopicPartition::new(topic, p)));
    consumer.seek_to_beginning(&[]).await.expect("seek");
    let mut out = Vec::with_capacity(expected);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while out.len() < expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "consumed {} of {expected}",
            out.len()
        );
        out.extend(consumer.poll().await.expect("poll"));
    }
    out
}
