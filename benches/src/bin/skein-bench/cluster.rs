//! A local cluster of real `skein-node` processes on free 127.0.0.1 ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::procfs;

/// How long a node may take to answer `/readyz` with 200.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Node {
    id: u32,
    client: SocketAddr,
    peer: SocketAddr,
    http: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Running node processes; stopped (and their data removed unless kept) on [`LocalCluster::stop`]
/// or, as a last resort, on drop.
#[derive(Debug)]
pub struct LocalCluster {
    nodes: Vec<Node>,
    /// `None` once kept or removed.
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    /// What every node is started with (again, on [`LocalCluster::restart`]).
    bin: PathBuf,
    peers: String,
    env: Vec<(String, String)>,
}

/// The `skein-node` binary: `explicit`, else next to this executable (or one directory up, for
/// test binaries in `target/*/deps`).
pub fn find_node_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!(
            "--node-bin {}: no such file (build it with `cargo build --release --bin skein-node`)",
            p.display()
        );
    }
    let exe = std::env::current_exe().context("find the skein-bench executable")?;
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join("skein-node"));
        if let Some(up) = dir.parent() {
            candidates.push(up.join("skein-node"));
        }
    }
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    let profile = if exe.components().any(|c| c.as_os_str() == "release") {
        " --release"
    } else {
        ""
    };
    bail!(
        "no skein-node binary next to {} (looked for {}); build it with \
         `cargo build{profile} --bin skein-node`, or pass --node-bin PATH",
        exe.display(),
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A port that was free a moment ago (bound on port 0 and released; the node binds it again).
fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    l.local_addr()
        .context("local address of a 127.0.0.1:0 listener")
}

impl LocalCluster {
    /// Starts `n` nodes with their data in a new directory under `parent` and waits until each
    /// answers `/readyz` with 200.
    pub async fn start(
        bin: &Path,
        n: u32,
        parent: &Path,
        env: &[(String, String)],
    ) -> anyhow::Result<LocalCluster> {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("create data directory {}", parent.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("skein-bench-cluster-")
            .tempdir_in(parent)
            .with_context(|| format!("create a directory in {}", parent.display()))?;
        let path = dir.path().to_path_buf();
        let mut nodes = Vec::new();
        for id in 1..=n {
            nodes.push(Node {
                id,
                client: free_addr()?,
                peer: free_addr()?,
                http: free_addr()?,
                data_dir: path.join(format!("node{id}")),
                log: path.join(format!("node{id}.log")),
                child: None,
            });
        }
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = LocalCluster {
            nodes,
            dir: Some(dir),
            path,
            bin: bin.to_path_buf(),
            peers,
            env: env.to_vec(),
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        for i in 0..cluster.nodes.len() {
            cluster.wait_ready(i, deadline).await?;
        }
        Ok(cluster)
    }

    /// Starts node `i`'s process, its output appended to its log.
    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("open {}", node.log.display()))?;
        let err = log.try_clone().context("clone a log file handle")?;
        let child = Command::new(&self.bin)
            .arg("--node-id")
            .arg(node.id.to_string())
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--client-addr")
            .arg(node.client.to_string())
            .arg("--peer-addr")
            .arg(node.peer.to_string())
            .arg("--http-addr")
            .arg(node.http.to_string())
            // Several nodes on one host: a free Kafka port each, advertised as bound.
            .arg("--kafka-addr")
            .arg("127.0.0.1:0")
            .arg("--peers")
            .arg(&self.peers)
            .env(
                "RUST_LOG",
                std::env::var("SKEIN_BENCH_NODE_LOG").unwrap_or("warn".into()),
            )
            // No backtrace after a startup error (`RUST_BACKTRACE=1` would print one): the
            // error itself must stay in the log tail shown when a node fails to start.
            .env("RUST_LIB_BACKTRACE", "0")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        node.child = Some(child);
        Ok(())
    }

    /// SIGKILLs node `i` (no shutdown of any kind) and reaps it.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let Some(mut child) = node.child.take() else {
            bail!("node {} is not running", node.id);
        };
        child
            .kill()
            .with_context(|| format!("SIGKILL node {}", node.id))?;
        child
            .wait()
            .with_context(|| format!("reap node {}", node.id))?;
        Ok(())
    }

    /// Starts a stopped node `i` again on its data, addresses and settings, without waiting
    /// for it: see [`LocalCluster::wait_ready`].
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.nodes[i].child.is_some() {
            bail!("node {} is still running", self.nodes[i].id);
        }
        self.spawn(i)
    }

    /// Waits until node `i` answers `/readyz` with 200; fails when `deadline` passes (saying
    /// what the node last answered) or the process exits. Returns the answers other than 200
    /// it gave meanwhile (each once, in order, with the seconds since the wait began when it
    /// first gave it): what the node waited on.
    pub async fn wait_ready(
        &mut self,
        i: usize,
        deadline: Instant,
    ) -> anyhow::Result<Vec<(f64, String)>> {
        let started = Instant::now();
        let mut seen: Vec<(f64, String)> = Vec::new();
        loop {
            let node = &mut self.nodes[i];
            if let Some(child) = node.child.as_mut() {
                if let Some(status) = child.try_wait().context("check a node process")? {
                    let id = node.id;
                    let tail = self.log_tail(i);
                    bail!("node {id} exited with {status} before it was ready; its log:\n{tail}");
                }
            }
            match readyz(node.http).await {
                Some((200, _)) => return Ok(seen),
                Some((code, body)) => {
                    let answer = format!("{code} {}", body.trim());
                    if seen.last().is_none_or(|(_, a)| *a != answer) {
                        let at = (started.elapsed().as_secs_f64() * 100.0).round() / 100.0;
                        seen.push((at, answer));
                    }
                }
                None => {}
            }
            if Instant::now() >= deadline {
                let id = node.id;
                let waited = started.elapsed().as_secs_f64();
                let last = seen.last().map_or("none", |(_, a)| a.as_str());
                let tail = self.log_tail(i);
                bail!(
                    "node {id} did not answer /readyz with 200 within {waited:.1} s (last answer: {last}); its log:\n{tail}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of node `i`'s log.
    fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `HOST:PORT,..` of every node's client API.
    pub fn brokers(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.client.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Peak resident set (VmHWM) of each running node, MiB (0 when unreadable).
    pub fn rss_peak_mib(&self) -> Vec<f64> {
        self.nodes
            .iter()
            .map(|n| {
                n.child
                    .as_ref()
                    .and_then(|c| procfs::vm_hwm_kib(c.id()))
                    .map_or(0.0, |kib| (kib as f64 / 1024.0 * 10.0).round() / 10.0)
            })
            .collect()
    }

    /// Process ids of the running nodes.
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.nodes
            .iter()
            .map(|n| n.child.as_ref().map(|c| c.id()))
            .collect()
    }

    /// Node `i`'s id (`i + 1`).
    pub fn node_id(&self, i: usize) -> u32 {
        self.nodes[i].id
    }

    /// Node `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.nodes[i].data_dir
    }

    /// Node `i`'s client API address.
    pub fn client_addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].client
    }

    /// CPU time (user + system) each running node has used so far, seconds (0 when unreadable).
    pub fn cpu_secs(&self) -> Vec<f64> {
        self.nodes
            .iter()
            .map(|n| {
                n.child
                    .as_ref()
                    .and_then(|c| procfs::process_cpu_secs(c.id()))
                    .unwrap_or(0.0)
            })
            .collect()
    }

    /// Stops every node (SIGTERM, SIGKILL after a timeout), then removes the data directory
    /// unless `keep`. Returns the data directory's path when kept.
    pub fn stop(&mut self, keep: bool) -> Option<PathBuf> {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_ref() {
                terminate(child);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for node in &mut self.nodes {
            let Some(mut child) = node.child.take() else {
                continue;
            };
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        eprintln!(
                            "skein-bench: node {} did not stop within {STOP_TIMEOUT:?} of SIGTERM; killing it",
                            node.id
                        );
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        let dir = self.dir.take()?;
        if keep {
            Some(dir.keep())
        } else {
            if let Err(e) = dir.close() {
                eprintln!("skein-bench: could not remove {}: {e}", self.path.display());
            }
            None
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // An error or a panic before `stop`: do not leave node processes behind.
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Sends SIGTERM to a child that has not been reaped yet.
fn terminate(child: &Child) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) takes no pointers. `pid` is our own child, not yet waited for, so the id
    // still names that process (a zombie at worst) and cannot have been reused.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// HTTP status and body of `GET /readyz`, or `None` when the node does not answer (yet).
async fn readyz(addr: SocketAddr) -> Option<(u16, String)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::with_capacity(256);
        // A /readyz answer is one short line; do not read more than a few KiB of anything.
        (&mut s).take(4096).read_to_end(&mut buf).await.ok()?;
        let code = parse_status_line(&buf)?;
        Some((code, response_body(&buf)))
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .ok()
        .flatten()
}

/// The body of an HTTP/1.x response (after the blank line), lossily decoded.
fn response_body(response: &[u8]) -> String {
    let start = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |p| p + 4);
    String::from_utf8_lossy(&response[start..]).into_owned()
}

/// The status code of an HTTP/1.x response.
fn parse_status_line(response: &[u8]) -> Option<u16> {
    let line_end = response.iter().position(|&b| b == b'\r' || b == b'\n')?;
    let line = std::str::from_utf8(&response[..line_end]).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_parsed_defensively() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 200 OK\r\n\r\nready"),
            Some(200)
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status_line(b""), None);
        assert_eq!(parse_status_line(b"HTTP/1.1"), None);
        assert_eq!(parse_status_line(b"SSH-2.0-x\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 abc\r\n"), None);
        assert_eq!(
            response_body(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 9\r\n\r\nnot ready"
            ),
            "not ready"
        );
        assert_eq!(response_body(b"HTTP/1.1 200 OK\r\n"), "");
    }

    #[test]
    fn a_missing_node_binary_says_how_to_build_it() {
        let e = find_node_bin(Some(Path::new("/nonexistent/skein-node"))).expect_err("missing");
        assert!(e.to_string().contains("no such file"), "{e}");
    }
}
