//! Real `skein-node` processes on 127.0.0.1, for tests that kill nodes (SIGKILL) and restart them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{http_get, wait_for};

/// One node process.
#[derive(Debug)]
pub struct ProcNode {
    /// Node id.
    pub id: u64,
    /// Client API address.
    pub client: SocketAddr,
    /// Peer address.
    pub peer: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    child: Option<Child>,
}

/// A cluster of node processes; every process is killed when it is dropped.
#[derive(Debug)]
pub struct ProcessCluster {
    bin: PathBuf,
    peers: String,
    /// The nodes, node `i + 1` at index `i`.
    pub nodes: Vec<ProcNode>,
    /// Keeps data directories and logs.
    pub dir: tempfile::TempDir,
}

fn free_addr() -> SocketAddr {
    // Bound on port 0 and released; the process binds it again a moment later.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}

impl ProcessCluster {
    /// Starts `n` processes of `bin` (a `skein-node`) and waits until all are ready.
    pub async fn start(bin: &Path, n: u64) -> ProcessCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes: Vec<ProcNode> = (1..=n)
            .map(|id| ProcNode {
                id,
                client: free_addr(),
                peer: free_addr(),
                http: free_addr(),
                data_dir: dir.path().join(format!("node{id}")),
                child: None,
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = ProcessCluster {
            bin: bin.to_path_buf(),
            peers,
            nodes,
            dir,
        };
        for i in 0..n as usize {
            c.spawn(i);
        }
        for i in 0..n as usize {
            c.wait_ready(i).await;
        }
        c
    }

    fn spawn(&mut self, i: usize) {
        let n = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node{}.log", n.id)))
            .expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(&self.bin)
            .arg("--node-id")
            .arg(n.id.to_string())
            .arg("--data-dir")
            .arg(&n.data_dir)
            .arg("--client-addr")
            .arg(n.client.to_string())
            .arg("--peer-addr")
            .arg(n.peer.to_string())
            .arg("--http-addr")
            .arg(n.http.to_string())
            // A free port of the kernel's choice, advertised as bound.
            .arg("--kafka-addr")
            .arg("127.0.0.1:0")
            .arg("--peers")
            .arg(&self.peers)
            .env("SKEIN_RAFT_ELECTION_TIMEOUT_MIN", "150ms")
            .env("SKEIN_RAFT_ELECTION_TIMEOUT_MAX", "300ms")
            .env("SKEIN_RAFT_HEARTBEAT_INTERVAL", "50ms")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn skein-node");
        self.nodes[i].child = Some(child);
    }

    /// Waits until node `i` answers `/readyz` with 200.
    pub async fn wait_ready(&self, i: usize) {
        let http = self.nodes[i].http;
        if wait_for(Duration::from_secs(30), || async move {
            http_get(http, "/readyz")
                .await
                .is_some_and(|(c, _)| c == 200)
        })
        .await
        .is_none()
        {
            panic!(
                "node {} did not become ready; its log:\n{}",
                i + 1,
                self.log(i)
            );
        }
    }

    /// The log of node `i`.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{}.log", i + 1)))
            .unwrap_or_default()
    }

    /// SIGKILLs node `i` and waits for it to die.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` again from its data directory and waits until it is ready.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "node {} is running", i + 1);
        self.spawn(i);
        self.wait_ready(i).await;
    }

    /// `HOST:PORT,..` of every node's client API.
    pub fn brokers(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.client.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
