//! `skein-node` processes, one per network namespace of a [`Net`], and the faults done to them:
//! SIGKILL, SIGSTOP/SIGCONT, restarts from the same data directory, and damage to the partition
//! logs of a node that is down (a torn tail, a flipped bit in a sealed segment).
//!
//! Node `i` (from 1) runs as `ip netns exec skf-{tag}-{i} skein-node --node-id i --data-dir
//! DIR/node{i} --client-addr IP:9650 --peer-addr IP:9651 --http-addr IP:9652 --peers
//! 1=IP1:9651,..`. `ip netns exec` enters the namespace and then execs the program, so the child
//! process *is* the node: its pid is the node's pid and signals reach the node itself.
//! Output goes to `DIR/node{i}.log`, appended across restarts, each start marked by a line
//! beginning with `==== skein-faults:`.
//!
//! Inherited `SKEIN_*` and `RUST_LOG` variables are not passed on: a node is configured only by
//! its flags, `NO_COLOR=1` (plain log files) and the `extra_env` given to [`Nodes::start`]
//! (where `SKEIN_RAFT_*` set the Raft timing; the defaults are an election timeout of
//! 300-600 ms and node heartbeats every 100 ms).
//!
//! Every method takes `&self` (each node's process is behind its own lock), so one `Nodes` can
//! be shared by the nemesis and the observers. The calls block (they are short, except
//! [`Nodes::wait_ready`]); from async code call them through `tokio::task::spawn_blocking` or
//! `block_in_place`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use skein_node::config::{NodeConfig, Overrides, RaftTiming};
use skein_record::HEADER_LEN;
use skein_storage::inspect::{dump_segment, BatchSummary};

use crate::net::{command_line, Net};

/// Client gRPC port of every node (each node has an address of its own).
pub const CLIENT_PORT: u16 = 9650;
/// Peer (Raft) gRPC port.
pub const PEER_PORT: u16 = 9651;
/// HTTP port (`/readyz`, `/metrics`).
pub const HTTP_PORT: u16 = 9652;

/// How often `wait_ready` and friends look again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Longest a readiness probe waits to connect, and then for the answer.
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const PROBE_IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest `pause`/`resume` wait for the process to show the new state.
const STATE_CHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest HTTP response a probe reads.
const PROBE_RESPONSE_BYTES_MAX: u64 = 64 << 10;
/// The first bytes of every marker line written to a node's log.
pub const START_MARKER: &str = "==== skein-faults:";
/// The topic-name prefix of internal topics (`__consumer_offsets`).
const INTERNAL_TOPIC_PREFIX: &str = "__";

/// Sends signal `sig` to process `pid` (which must be positive: `kill(0, ..)` and
/// `kill(-1, ..)` would signal whole process groups).
pub(crate) fn signal(pid: i32, sig: libc::c_int) -> std::io::Result<()> {
    if pid <= 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("refusing to signal pid {pid}"),
        ));
    }
    // SAFETY: kill(2) takes two integers and reads or writes no memory of this process; a
    // bad pid or signal number comes back as -1 with errno, which is checked below.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The state letter of process `pid` (`R`, `S`, `T` stopped, `Z` zombie..), from
/// `/proc/PID/stat`.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// What one node is: its namespace, address and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Node id, from 1.
    pub id: u64,
    /// Its network namespace.
    pub ns: String,
    /// Its address in that namespace.
    pub ip: Ipv4Addr,
    /// `DIR/node{id}`.
    pub data_dir: PathBuf,
    /// `DIR/node{id}.log`: stdout and stderr of every start.
    pub log_path: PathBuf,
}

impl NodeSpec {
    /// Client gRPC address.
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, CLIENT_PORT))
    }

    /// Peer (Raft) address.
    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, PEER_PORT))
    }

    /// HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, HTTP_PORT))
    }
}

/// One node's process, if it runs.
#[derive(Debug, Default)]
struct Proc {
    child: Option<Child>,
    /// SIGSTOPped and not yet SIGCONTed.
    paused: bool,
    /// Starts so far (1 after the first).
    starts: u32,
    /// How the last process ended, once reaped.
    last_exit: Option<ExitStatus>,
}

impl Proc {
    /// Reaps the child if it has exited; true while it runs (paused included).
    fn reap(&mut self) -> bool {
        let Some(c) = self.child.as_mut() else {
            return false;
        };
        match c.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.last_exit = Some(status);
                self.child = None;
                self.paused = false;
                false
            }
            // Cannot tell: treat it as running; kill/wait will sort it out.
            Err(_) => true,
        }
    }

    /// SIGKILLs the process (after SIGCONT if paused) and reaps it. No-op when not running.
    fn kill9(&mut self) -> anyhow::Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        let pid = c.id() as i32;
        if self.paused {
            let _ = signal(pid, libc::SIGCONT);
        }
        self.paused = false;
        // The child is not reaped yet, so its pid cannot have been reused.
        let sent = signal(pid, libc::SIGKILL);
        let status = c
            .wait()
            .map_err(|e| anyhow::anyhow!("wait for process {pid}: {e}"))?;
        if let Err(e) = sent {
            // ESRCH only if it had already exited; then `wait` above reaped it.
            if e.raw_os_error() != Some(libc::ESRCH) {
                anyhow::bail!("SIGKILL process {pid}: {e}");
            }
        }
        self.last_exit = Some(status);
        Ok(())
    }
}

/// The partition log directory of one replica of a user topic on one node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartitionLogDir {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Raft group id of the partition.
    pub group: u64,
    /// `DATA/partitions/{topic}-{partition}.g{group}/log`, holding the segment files.
    pub path: PathBuf,
}

/// Node processes in the namespaces of a [`Net`]; dropping it kills them all.
#[derive(Debug)]
pub struct Nodes {
    bin: PathBuf,
    specs: Vec<NodeSpec>,
    /// `1=IP1:9651,2=IP2:9651,..`.
    peers: String,
    /// Variables given to every node.
    env: Vec<(String, String)>,
    /// The Raft timing the nodes run with.
    raft: RaftTiming,
    /// Node `i`'s process at index `i - 1`.
    procs: Vec<Mutex<Proc>>,
}

impl Nodes {
    /// Starts nodes `1..=n`, node `i` in namespace `net.ns(i)` with its data in `dir/node{i}`,
    /// and returns without waiting for them to be ready (see [`Nodes::wait_all_ready`]).
    /// `extra_env` is added to every node's environment (`SKEIN_RAFT_ELECTION_TIMEOUT_MAX=..`,
    /// `SKEIN_TOPIC_DEFAULTS_SEGMENT_BYTES=..`, `RUST_LOG=..`); the configuration it makes is
    /// checked here, before any process starts.
    pub fn start(
        bin: &Path,
        net: &Net,
        dir: &Path,
        n: usize,
        extra_env: &[(String, String)],
    ) -> anyhow::Result<Nodes> {
        if n == 0 || n > net.len() {
            anyhow::bail!("cannot start {n} nodes in a network of {}", net.len());
        }
        if !bin.is_file() {
            anyhow::bail!(
                "node binary {} does not exist (cargo build -p skein-node)",
                bin.display()
            );
        }
        // `ip netns exec` resolves the program in the namespace's mount view: pass it whole.
        let bin = std::fs::canonicalize(bin)
            .map_err(|e| anyhow::anyhow!("resolve {}: {e}", bin.display()))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("create {}: {e}", dir.display()))?;
        let specs: Vec<NodeSpec> = (1..=n)
            .map(|i| NodeSpec {
                id: i as u64,
                ns: net.ns(i).to_owned(),
                ip: net.addr(i),
                data_dir: dir.join(format!("node{i}")),
                log_path: dir.join(format!("node{i}.log")),
            })
            .collect();
        let peers = specs
            .iter()
            .map(|s| format!("{}={}", s.id, s.peer_addr()))
            .collect::<Vec<_>>()
            .join(",");
        let raft = effective_config(&specs[0], &peers, extra_env)?.raft;
        let nodes = Nodes {
            bin,
            specs,
            peers,
            env: extra_env.to_vec(),
            raft,
            procs: (0..n).map(|_| Mutex::new(Proc::default())).collect(),
        };
        // A failure here drops `nodes`, killing the ones already started.
        for i in 1..=n {
            let mut p = nodes.proc(i);
            nodes.spawn(i, &mut p)?;
        }
        Ok(nodes)
    }

    fn index(&self, i: usize) -> usize {
        assert!(
            (1..=self.specs.len()).contains(&i),
            "node {i} does not exist (nodes are 1..={})",
            self.specs.len()
        );
        i - 1
    }

    fn proc(&self, i: usize) -> MutexGuard<'_, Proc> {
        // A panic while holding the lock leaves `Proc` consistent (plain fields): go on.
        self.procs[self.index(i)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Starts node `i`'s process (the caller holds its lock and has checked it is down).
    fn spawn(&self, i: usize, p: &mut Proc) -> anyhow::Result<()> {
        let s = &self.specs[self.index(i)];
        std::fs::create_dir_all(&s.data_dir)
            .map_err(|e| anyhow::anyhow!("create {}: {e}", s.data_dir.display()))?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log_path)
            .map_err(|e| anyhow::anyhow!("open {}: {e}", s.log_path.display()))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &s.ns])
            .arg(&self.bin)
            .arg("--node-id")
            .arg(s.id.to_string())
            .arg("--data-dir")
            .arg(&s.data_dir)
            .arg("--client-addr")
            .arg(s.client_addr().to_string())
            .arg("--peer-addr")
            .arg(s.peer_addr().to_string())
            .arg("--http-addr")
            .arg(s.http_addr().to_string())
            .arg("--peers")
            .arg(&self.peers);
        for (k, _) in std::env::vars_os() {
            if k.to_str()
                .is_some_and(|k| k.starts_with("SKEIN_") || k == "RUST_LOG")
            {
                cmd.env_remove(&k);
            }
        }
        // Plain text in log files (tracing-subscriber colours its output unless told not to).
        cmd.env("NO_COLOR", "1");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let env_note = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v} "))
            .collect::<String>();
        let start = p.starts + 1;
        writeln!(
            log,
            "{START_MARKER} node {i} start #{start} at unix {} ms: {env_note}{} ====",
            unix_ms(),
            command_line(&cmd)
        )
        .map_err(|e| anyhow::anyhow!("write {}: {e}", s.log_path.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| anyhow::anyhow!("dup {}: {e}", s.log_path.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| anyhow::anyhow!("start node {i}: `{}`: {e}", command_line(&cmd)))?;
        p.child = Some(child);
        p.paused = false;
        p.starts = start;
        Ok(())
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Node `i`'s description.
    pub fn spec(&self, i: usize) -> &NodeSpec {
        &self.specs[self.index(i)]
    }

    /// The Raft timing every node runs with (defaults, or as `extra_env` set it).
    #[cfg(test)]
    pub fn raft_timing(&self) -> &RaftTiming {
        &self.raft
    }

    /// The upper bound of the nodes' randomized election timeout: after a leader stops, a new
    /// one should be elected within about this (plus a round of voting).
    pub fn election_timeout_max(&self) -> Duration {
        self.raft.election_timeout_max
    }

    /// Node `i`'s client address, `IP:9650`.
    pub fn client_addr(&self, i: usize) -> String {
        self.spec(i).client_addr().to_string()
    }

    /// Every node's client address, comma-separated (for `--brokers`).
    pub fn brokers(&self) -> String {
        self.specs
            .iter()
            .map(|s| s.client_addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s HTTP address.
    pub fn http_addr(&self, i: usize) -> SocketAddr {
        self.spec(i).http_addr()
    }

    /// Node `i`'s log file.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.spec(i).log_path.clone()
    }

    /// Node `i`'s pid while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        let mut p = self.proc(i);
        if p.reap() {
            p.child.as_ref().map(Child::id)
        } else {
            None
        }
    }

    /// Whether node `i`'s process runs (a paused one does). Reaps it if it has exited.
    pub fn is_running(&self, i: usize) -> bool {
        self.proc(i).reap()
    }

    /// Whether node `i` is paused (SIGSTOPped by [`Nodes::pause`]).
    pub fn is_paused(&self, i: usize) -> bool {
        let mut p = self.proc(i);
        p.reap() && p.paused
    }

    /// How node `i`'s last process ended (`None` while the first one runs).
    pub fn last_exit(&self, i: usize) -> Option<ExitStatus> {
        let mut p = self.proc(i);
        p.reap();
        p.last_exit
    }

    /// SIGKILLs node `i` and reaps it. No-op if it is down.
    pub fn kill9(&self, i: usize) -> anyhow::Result<()> {
        self.proc(i)
            .kill9()
            .map_err(|e| anyhow::anyhow!("kill node {i}: {e}"))
    }

    /// SIGKILLs every node (each as soon as possible; no node outlives another by more than a
    /// signal delivery) and reaps them.
    pub fn kill_all9(&self) -> anyhow::Result<()> {
        // Hold every lock and send every signal before waiting on any process.
        let mut guards: Vec<MutexGuard<'_, Proc>> =
            (1..=self.len()).map(|i| self.proc(i)).collect();
        for g in guards.iter_mut() {
            if let Some(c) = g.child.as_ref() {
                let pid = c.id() as i32;
                if g.paused {
                    let _ = signal(pid, libc::SIGCONT);
                }
                let _ = signal(pid, libc::SIGKILL);
            }
        }
        let mut errors = Vec::new();
        for (k, g) in guards.iter_mut().enumerate() {
            if let Err(e) = g.kill9() {
                errors.push(format!("node {}: {e}", k + 1));
            }
        }
        if !errors.is_empty() {
            anyhow::bail!("kill all nodes: {}", errors.join("; "));
        }
        Ok(())
    }

    /// Waits until process `pid` is (`stopped`) or is not (`!stopped`) in the stopped state.
    fn wait_stopped(pid: u32, stopped: bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + STATE_CHANGE_TIMEOUT;
        loop {
            let state = proc_state(pid);
            // `T` stopped by a signal; `t` by a tracer; `Z`/gone: it died meanwhile.
            let is_stopped = matches!(state, Some('T' | 't'));
            if is_stopped == stopped || matches!(state, None | Some('Z')) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "process {pid} is still in state {state:?} {STATE_CHANGE_TIMEOUT:?} after the signal"
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGSTOPs node `i` and waits until the kernel shows it stopped.
    pub fn pause(&self, i: usize) -> anyhow::Result<()> {
        let mut p = self.proc(i);
        if !p.reap() {
            anyhow::bail!("pause node {i}: it is not running");
        }
        let pid = p.child.as_ref().map_or(0, Child::id);
        signal(pid as i32, libc::SIGSTOP)
            .map_err(|e| anyhow::anyhow!("SIGSTOP node {i} (pid {pid}): {e}"))?;
        p.paused = true;
        Self::wait_stopped(pid, true).map_err(|e| anyhow::anyhow!("pause node {i}: {e}"))
    }

    /// SIGCONTs node `i` (no-op if it is not running).
    pub fn resume(&self, i: usize) -> anyhow::Result<()> {
        let mut p = self.proc(i);
        if !p.reap() {
            return Ok(());
        }
        let pid = p.child.as_ref().map_or(0, Child::id);
        signal(pid as i32, libc::SIGCONT)
            .map_err(|e| anyhow::anyhow!("SIGCONT node {i} (pid {pid}): {e}"))?;
        p.paused = false;
        Self::wait_stopped(pid, false).map_err(|e| anyhow::anyhow!("resume node {i}: {e}"))
    }

    /// Starts node `i` again from its data directory, with the same flags and environment.
    /// Fails if it runs. Does not wait for it to be ready.
    pub fn restart(&self, i: usize) -> anyhow::Result<()> {
        let mut p = self.proc(i);
        if p.reap() {
            anyhow::bail!("restart node {i}: it is still running (kill9 it first)");
        }
        self.spawn(i, &mut p)
    }

    /// One probe of node `i`'s `/readyz` from the root namespace: the HTTP status, or `None`
    /// when there is no answer (down, paused, unreachable).
    #[cfg(test)]
    pub fn ready_status(&self, i: usize) -> Option<u16> {
        http_get(self.http_addr(i), "/readyz").map(|(code, _)| code)
    }

    /// Polls node `i`'s `/readyz` until it answers 200; fails when the process exits or after
    /// `timeout`, with the end of the node's log.
    pub fn wait_ready(&self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last: Option<(u16, String)> = None;
        loop {
            if !self.is_running(i) {
                anyhow::bail!(
                    "node {i} exited ({}) before it was ready; the end of its log:\n{}",
                    self.last_exit(i)
                        .map_or_else(|| "not started".to_owned(), |s| s.to_string()),
                    self.log_tail(i, 30)
                );
            }
            match http_get(self.http_addr(i), "/readyz") {
                Some((200, _)) => return Ok(()),
                other => last = other.or(last),
            }
            if Instant::now() >= deadline {
                let answer = last.map_or_else(
                    || "no answer".to_owned(),
                    |(code, body)| format!("last answer {code} {}", body.trim()),
                );
                anyhow::bail!(
                    "node {i} was not ready after {timeout:?} ({answer}); the end of its log:\n{}",
                    self.log_tail(i, 30)
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// [`Nodes::wait_ready`] for every running node, within one overall `timeout`.
    pub fn wait_all_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for i in 1..=self.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_ready(i, left)?;
        }
        Ok(())
    }

    /// The last `lines` lines of node `i`'s log (empty if there is none).
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        tail_lines(&self.spec(i).log_path, lines).unwrap_or_default()
    }

    /// Node `i`'s partition log directories of user topics (not `__consumer_offsets`), sorted.
    /// Damage them only while the node is down.
    pub fn partition_log_dirs(&self, i: usize) -> anyhow::Result<Vec<PartitionLogDir>> {
        partition_log_dirs_in(&self.spec(i).data_dir)
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (k, p) in self.procs.iter().enumerate() {
            let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = p.kill9() {
                eprintln!("skein-faults: stopping node {}: {e}", k + 1);
            }
        }
    }
}

/// The configuration node `spec` will run with: checks `extra_env` and tells the Raft timing.
fn effective_config(
    spec: &NodeSpec,
    peers: &str,
    extra_env: &[(String, String)],
) -> anyhow::Result<NodeConfig> {
    let overrides = Overrides {
        config_file: extra_env
            .iter()
            .find(|(k, _)| k == "SKEIN_CONFIG")
            .map(|(_, v)| PathBuf::from(v)),
        node_id: Some(spec.id),
        data_dir: Some(spec.data_dir.clone()),
        client_addr: Some(spec.client_addr().to_string()),
        peer_addr: Some(spec.peer_addr().to_string()),
        http_addr: Some(spec.http_addr().to_string()),
        advertised_client_addr: None,
        kafka_addr: None,
        advertised_kafka_addr: None,
        peers: Some(peers.to_owned()),
    };
    NodeConfig::load(&overrides, extra_env.iter().cloned())
        .map_err(|e| anyhow::anyhow!("node configuration from {extra_env:?}: {e}"))
}

/// `GET path` over HTTP/1.0 from the root namespace: status and body, or `None` when there is
/// no (parsable) answer within the probe timeouts.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, PROBE_CONNECT_TIMEOUT).ok()?;
    s.set_read_timeout(Some(PROBE_IO_TIMEOUT)).ok()?;
    s.set_write_timeout(Some(PROBE_IO_TIMEOUT)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = Vec::new();
    s.take(PROBE_RESPONSE_BYTES_MAX)
        .read_to_end(&mut buf)
        .ok()?;
    parse_http_response(&buf)
}

/// Status code and body of an HTTP/1.x response.
fn parse_http_response(buf: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(buf);
    let status_line = text.lines().next()?;
    let mut words = status_line.split_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = words.next()?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// The last `lines` lines of the file at `path`, reading only as much of its end as needed.
fn tail_lines(path: &Path, lines: usize) -> std::io::Result<String> {
    const CHUNK: u64 = 16 << 10;
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    // Read backwards until the tail holds `lines` line breaks before its last line.
    while start > 0 && buf.iter().filter(|b| **b == b'\n').count() <= lines {
        let step = CHUNK.min(start);
        start -= step;
        let mut chunk = vec![0u8; step as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..].join("\n"))
}

/// Parses a partition directory name, `{topic}-{partition}.g{group}`. Topics may hold `-` and
/// `.`, so both splits are from the right.
fn parse_partition_dir_name(name: &str) -> Option<(String, u32, u64)> {
    let (topic_partition, group) = name.rsplit_once(".g")?;
    let group = group.parse().ok()?;
    let (topic, partition) = topic_partition.rsplit_once('-')?;
    if topic.is_empty() {
        return None;
    }
    Some((topic.to_owned(), partition.parse().ok()?, group))
}

/// The partition log directories of user topics under a node's data directory:
/// `DATA/partitions/{topic}-{partition}.g{group}/log` (see `partition_dir` in
/// `crates/node/src/broker.rs` and `GroupPaths` in `crates/raft/src/log_store.rs`), sorted.
pub fn partition_log_dirs_in(data_dir: &Path) -> anyhow::Result<Vec<PartitionLogDir>> {
    let root = data_dir.join("partitions");
    let rd = match std::fs::read_dir(&root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => anyhow::bail!("list {}: {e}", root.display()),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| anyhow::anyhow!("list {}: {e}", root.display()))?;
        let name = entry.file_name();
        let Some((topic, partition, group)) = name.to_str().and_then(parse_partition_dir_name)
        else {
            continue;
        };
        let path = entry.path().join("log");
        if topic.starts_with(INTERNAL_TOPIC_PREFIX) || !path.is_dir() {
            continue;
        }
        out.push(PartitionLogDir {
            topic,
            partition,
            group,
            path,
        });
    }
    out.sort();
    Ok(out)
}

/// The `.log` segment files of a partition log directory, by base offset.
fn segments(log_dir: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let rd = std::fs::read_dir(log_dir)
        .map_err(|e| anyhow::anyhow!("list {}: {e}", log_dir.display()))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| anyhow::anyhow!("list {}: {e}", log_dir.display()))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        // `{base_offset:020}.log`.
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(base) = stem.parse() {
            out.push((base, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The batches of a segment file, parsed with `skein_storage::inspect`.
fn batches(path: &Path) -> anyhow::Result<Vec<BatchSummary>> {
    Ok(dump_segment(path)
        .map_err(|e| anyhow::anyhow!("read {}: {e}", path.display()))?
        .batches)
}

fn open_for_damage(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("open {} for writing: {e}", path.display()))
}

/// Tears the last batch of the active (last) segment of the log in `log_dir`, as a crash in the
/// middle of writing it would: the second half of the batch becomes zeros (the file keeps its
/// length, as a preallocated segment does). On reopen the log should cut that batch and keep
/// everything before it. The node must be down. Returns what was done.
pub fn tear_tail(log_dir: &Path) -> anyhow::Result<String> {
    let segs = segments(log_dir)?;
    let (_, path) = segs
        .last()
        .ok_or_else(|| anyhow::anyhow!("{} holds no segment", log_dir.display()))?;
    let all = batches(path)?;
    let last = all.last().ok_or_else(|| {
        anyhow::anyhow!(
            "active segment {} holds no batch (just rolled): nothing to tear",
            path.display()
        )
    })?;
    let h = last.header;
    let raft_index = last
        .raft_index
        .map_or_else(|| "?".to_owned(), |i| i.to_string());
    let len = u64::from(h.batch_len);
    let cut = last.position + len / 2;
    let end = last.position + len;
    let f = open_for_damage(path)?;
    f.write_all_at(&vec![0u8; (end - cut) as usize], cut)
        .and_then(|()| f.sync_all())
        .map_err(|e| anyhow::anyhow!("zero bytes {cut}..{end} of {}: {e}", path.display()))?;
    Ok(format!(
        "{}: zeroed bytes {cut}..{end}, the second half of the last of {} batches (position {}, \
         {len} bytes, offsets {}..{}, raft index {}, term {}); recovery should end the log at \
         offset {} / raft index {}",
        path.display(),
        all.len(),
        last.position,
        h.base_offset,
        h.next_offset(),
        raft_index,
        h.leader_epoch,
        h.base_offset,
        raft_index
    ))
}

/// A small deterministic generator (SplitMix64), so that a seed names the damage.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Flips one bit in the records area (after the 72-byte header) of one batch of a sealed
/// segment (any but the last) of the log in `log_dir`: bit rot the batch CRC must catch. The
/// segment, batch, byte and bit follow from `seed`. `None` when no sealed segment has a batch
/// with a records area. The node must be down. Returns what was done.
pub fn flip_bit_in_sealed(log_dir: &Path, seed: u64) -> anyhow::Result<Option<String>> {
    let segs = segments(log_dir)?;
    let Some((_, sealed)) = segs.split_last() else {
        return Ok(None);
    };
    if sealed.is_empty() {
        return Ok(None);
    }
    let mut rng = SplitMix64(seed);
    let first = rng.below(sealed.len() as u64) as usize;
    for k in 0..sealed.len() {
        let (_, path) = &sealed[(first + k) % sealed.len()];
        let all = batches(path)?;
        let candidates: Vec<&BatchSummary> = all
            .iter()
            .filter(|b| b.header.batch_len as usize > HEADER_LEN)
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let b = candidates[rng.below(candidates.len() as u64) as usize];
        let payload_len = u64::from(b.header.batch_len) - HEADER_LEN as u64;
        let at = rng.below(payload_len);
        let pos = b.position + HEADER_LEN as u64 + at;
        let bit = rng.below(8) as u8;
        let f = open_for_damage(path)?;
        let mut byte = [0u8; 1];
        f.read_exact_at(&mut byte, pos)
            .map_err(|e| anyhow::anyhow!("read byte {pos} of {}: {e}", path.display()))?;
        let before = byte[0];
        byte[0] ^= 1 << bit;
        f.write_all_at(&byte, pos)
            .and_then(|()| f.sync_all())
            .map_err(|e| anyhow::anyhow!("write byte {pos} of {}: {e}", path.display()))?;
        return Ok(Some(format!(
            "{}: flipped bit {bit} of byte {pos} ({before:#04x} -> {:#04x}), records byte {at} \
             of {payload_len} of the batch at position {} (offsets {}..{}, raft index {})",
            path.display(),
            byte[0],
            b.position,
            b.header.base_offset,
            b.header.next_offset(),
            b.raft_index
                .map_or_else(|| "?".to_owned(), |i| i.to_string())
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skein_record::BatchBuilder;
    use skein_storage::{FlushPolicy, LogConfig, PartitionLog, StorageError};

    fn now_ms() -> i64 {
        unix_ms() as i64
    }

    fn small_segments() -> LogConfig {
        LogConfig {
            segment_bytes_max: 4096,
            batch_bytes_max: 1024,
            index_interval_bytes: 512,
            flush: FlushPolicy::EveryBatch,
            ..LogConfig::default()
        }
    }

    /// Writes `batches` batches of 3 records (about 250 bytes each) into a new log in `dir`;
    /// returns the number of records.
    fn write_log(dir: &Path, batches: u64) -> u64 {
        let mut log = PartitionLog::open(dir, small_segments()).expect("open new log");
        let ts = now_ms();
        for b in 0..batches {
            let mut builder = BatchBuilder::new(ts);
            for r in 0..3 {
                let value = format!("value-{b}-{r}-{}", "x".repeat(50));
                builder.push(ts, Some(b"key"), Some(value.as_bytes()), &[]);
            }
            log.append(&builder.finish()).expect("append");
        }
        log.flush().expect("flush");
        batches * 3
    }

    /// Reads every batch of the log from its start; the first error, if any.
    fn read_all(log: &PartitionLog) -> Result<u64, StorageError> {
        let mut at = log.log_start_offset();
        while at < log.next_offset() {
            let slice = log.read(at, 1 << 20)?;
            assert!(slice.next_offset > at, "reads make progress");
            at = slice.next_offset;
        }
        Ok(at)
    }

    #[test]
    fn tear_tail_cuts_the_last_batch_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = write_log(dir.path(), 40);
        let segs = segments(dir.path()).expect("segments");
        assert!(segs.len() >= 3, "small segments roll: {segs:?}");
        let what = tear_tail(dir.path()).expect("tear");
        assert!(what.contains("zeroed bytes"), "{what}");
        let log = PartitionLog::open(dir.path(), small_segments()).expect("a torn tail recovers");
        assert_eq!(
            log.next_offset(),
            records - 3,
            "exactly the last batch is cut"
        );
        assert_eq!(log.next_index(), 39);
        assert_eq!(read_all(&log).expect("the rest reads"), records - 3);
        drop(log);
        // Tearing again takes the next one.
        tear_tail(dir.path()).expect("tear again");
        let log = PartitionLog::open(dir.path(), small_segments()).expect("recovers");
        assert_eq!(log.next_offset(), records - 6);
    }

    #[test]
    fn tear_tail_of_an_empty_active_segment_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(PartitionLog::open(dir.path(), small_segments()).expect("open"));
        let e = tear_tail(dir.path()).expect_err("nothing to tear");
        assert!(e.to_string().contains("holds no batch"), "{e}");
    }

    #[test]
    fn flip_bit_in_sealed_is_found_as_corruption() {
        for seed in 0..8u64 {
            let dir = tempfile::tempdir().expect("tempdir");
            write_log(dir.path(), 40);
            let what = flip_bit_in_sealed(dir.path(), seed)
                .expect("flip")
                .expect("there are sealed segments");
            let last = segments(dir.path())
                .expect("segments")
                .pop()
                .expect("a segment");
            assert!(
                !what.starts_with(&last.1.display().to_string()),
                "the active segment is left alone: {what}"
            );
            // The offline verifier sees it.
            let report =
                skein_storage::inspect::verify_log_dir(&dir.path().to_path_buf()).expect("verify");
            assert!(
                report.problems.iter().any(|p| p.contains("CRC mismatch")),
                "seed {seed}: {what}: {:?}",
                report.problems
            );
            // And the log reports it, when opened or when the batch is read; never skips it.
            match PartitionLog::open(dir.path(), small_segments()) {
                Err(e) => assert!(e.is_corruption(), "seed {seed}: {e}"),
                Ok(log) => {
                    let e = read_all(&log).expect_err("reading over the flipped bit fails");
                    assert!(e.is_corruption(), "seed {seed}: {e}");
                }
            }
        }
    }

    #[test]
    fn flip_bit_in_sealed_needs_a_sealed_segment_and_follows_the_seed() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_log(dir.path(), 2);
        assert_eq!(segments(dir.path()).expect("segments").len(), 1);
        assert_eq!(flip_bit_in_sealed(dir.path(), 1).expect("flip"), None);

        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        write_log(a.path(), 40);
        write_log(b.path(), 40);
        let da = flip_bit_in_sealed(a.path(), 42)
            .expect("flip")
            .expect("flipped");
        let db = flip_bit_in_sealed(b.path(), 42)
            .expect("flip")
            .expect("flipped");
        let strip = |s: &str, d: &Path| s.replace(&d.display().to_string(), "DIR");
        assert_eq!(
            strip(&da, a.path()),
            strip(&db, b.path()),
            "same seed, same damage"
        );
    }

    #[test]
    fn partition_dirs_are_parsed_and_internal_topics_skipped() {
        assert_eq!(
            parse_partition_dir_name("my-topic.v2-3.g17"),
            Some(("my-topic.v2".to_owned(), 3, 17))
        );
        assert_eq!(
            parse_partition_dir_name("faults-0.g4"),
            Some(("faults".to_owned(), 0, 4))
        );
        assert_eq!(parse_partition_dir_name("metadata"), None);
        assert_eq!(parse_partition_dir_name("-1.g2"), None);
        assert_eq!(parse_partition_dir_name("t-x.g2"), None);

        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(partition_log_dirs_in(dir.path()).expect("none yet"), vec![]);
        for d in [
            "faults-1.g5",
            "faults-0.g4",
            "__consumer_offsets-0.g2",
            "junk",
        ] {
            std::fs::create_dir_all(dir.path().join("partitions").join(d).join("log"))
                .expect("mkdir");
        }
        let found = partition_log_dirs_in(dir.path()).expect("list");
        let names: Vec<(String, u32, u64)> = found
            .iter()
            .map(|d| (d.topic.clone(), d.partition, d.group))
            .collect();
        assert_eq!(
            names,
            vec![("faults".to_owned(), 0, 4), ("faults".to_owned(), 1, 5)]
        );
        assert!(found[0].path.ends_with("partitions/faults-0.g4/log"));
    }

    #[test]
    fn tails_and_http_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("node1.log");
        let text: String = (0..5000).map(|k| format!("line {k}\n")).collect();
        std::fs::write(&p, text).expect("write");
        assert_eq!(
            tail_lines(&p, 3).expect("tail"),
            "line 4997\nline 4998\nline 4999"
        );
        assert_eq!(tail_lines(&p, 0).expect("tail"), "");
        std::fs::write(&p, "only\n").expect("write");
        assert_eq!(tail_lines(&p, 10).expect("tail"), "only");

        assert_eq!(
            parse_http_response(b"HTTP/1.0 200 OK\r\ncontent-length: 6\r\n\r\nready\n"),
            Some((200, "ready\n".to_owned()))
        );
        assert_eq!(
            parse_http_response(b"HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready: x\n")
                .map(|(c, _)| c),
            Some(503)
        );
        assert_eq!(parse_http_response(b"garbage"), None);
        assert_eq!(parse_http_response(b""), None);
    }

    #[test]
    fn signal_refuses_group_pids() {
        assert!(signal(0, 0).is_err());
        assert!(signal(-1, 0).is_err());
        signal(std::process::id() as i32, 0).expect("signal 0 to self");
    }

    #[test]
    fn bad_extra_env_is_caught_before_start() {
        let spec = NodeSpec {
            id: 1,
            ns: "skf-x-1".into(),
            ip: Ipv4Addr::new(10, 231, 1, 1),
            data_dir: PathBuf::from("/nonexistent/node1"),
            log_path: PathBuf::from("/nonexistent/node1.log"),
        };
        let peers = "1=10.231.1.1:9651";
        let c = effective_config(&spec, peers, &[]).expect("defaults");
        assert_eq!(c.raft.election_timeout_max, Duration::from_millis(600));
        let env = [
            (
                "SKEIN_RAFT_ELECTION_TIMEOUT_MIN".to_owned(),
                "150ms".to_owned(),
            ),
            (
                "SKEIN_RAFT_ELECTION_TIMEOUT_MAX".to_owned(),
                "300ms".to_owned(),
            ),
            (
                "SKEIN_RAFT_HEARTBEAT_INTERVAL".to_owned(),
                "50ms".to_owned(),
            ),
        ];
        let c = effective_config(&spec, peers, &env).expect("short timing");
        assert_eq!(c.raft.election_timeout_max, Duration::from_millis(300));
        let bad = [("SKEIN_RAFT_HEARTBEAT_INTERVAL".to_owned(), "1s".to_owned())];
        let e = effective_config(&spec, peers, &bad).expect_err("invalid");
        assert!(e.to_string().contains("heartbeat_interval"), "{e}");
    }

    /// Produces one batch of `count` records to `topic`/`partition`, trying every node until one
    /// acknowledges it (`acks=all`) or `timeout` passes. Returns the base offset.
    async fn produce_one(
        nodes: &Nodes,
        topic: &str,
        partition: u32,
        count: usize,
        timeout: Duration,
    ) -> Option<u64> {
        use skein_proto::v1 as pb;
        let ts = now_ms();
        let mut b = BatchBuilder::new(ts);
        for r in 0..count {
            let v = format!("{partition}-{r}-{}", "v".repeat(40));
            b.push(ts, None, Some(v.as_bytes()), &[]);
        }
        let batch = b.finish();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for i in 1..=nodes.len() {
                let Ok(mut c) = pb::produce_service_client::ProduceServiceClient::connect(format!(
                    "http://{}",
                    nodes.client_addr(i)
                ))
                .await
                else {
                    continue;
                };
                let req = pb::ProduceRequest {
                    acks: pb::Acks::All as i32,
                    timeout_ms: 2000,
                    partitions: vec![pb::PartitionBatches {
                        topic: topic.to_owned(),
                        partition,
                        batches: vec![batch.clone()],
                    }],
                };
                let Ok(Ok(resp)) =
                    tokio::time::timeout(Duration::from_secs(3), c.produce(req)).await
                else {
                    continue;
                };
                let r = &resp.get_ref().partitions[0];
                if r.error.as_ref().is_none_or(|e| e.code == 0) {
                    if let Some(o) = r.base_offsets.first() {
                        return Some(*o);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Manual check of [`Nodes`] with the real `skein-node` (`cargo build -p skein-node`, or
    /// `SKEIN_NODE_BIN=PATH`) in real namespaces. Needs root, hence ignored; run it with
    /// `cargo test -p skein-tests --bin skein-faults nodes_smoke -- --ignored --nocapture`.
    ///
    /// Starts 3 nodes, checks that each child pid is the node itself inside its namespace,
    /// writes to a topic with small segments, isolates a node, pauses and resumes one, kills
    /// all, damages node 1's logs (a torn tail, a flipped bit), restarts them and reports how
    /// node 1 takes the damage.
    #[test]
    #[ignore = "needs root and a built skein-node: creates network namespaces"]
    fn nodes_smoke() {
        use skein_proto::v1 as pb;
        let bin = std::env::var_os("SKEIN_NODE_BIN").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/skein-node"),
            PathBuf::from,
        );
        Net::cleanup_stale().expect("cleanup_stale");
        let tag = format!("nsmoke{}", std::process::id() % 100_000);
        let net = Net::create(&tag, 3).expect("network");
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 = Instant::now();
        let nodes = Nodes::start(&bin, &net, dir.path(), 3, &[]).expect("start");
        println!("brokers {}", nodes.brokers());
        println!("raft timing {:?}", nodes.raft_timing());
        nodes
            .wait_all_ready(Duration::from_secs(60))
            .expect("all ready");
        println!("all ready after {:?}", t0.elapsed());

        // `ip netns exec` execs: the child pid is skein-node, inside the node's namespace.
        let real_bin = std::fs::canonicalize(&bin).expect("bin");
        for i in 1..=3 {
            let pid = nodes.pid(i).expect("running");
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
            assert_eq!(exe, real_bin, "node {i}: pid {pid} is the node");
            let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("netns");
            let want = std::fs::metadata(format!("/run/netns/{}", net.ns(i)))
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .expect("netns file");
            assert_eq!(
                ns.to_string_lossy(),
                format!("net:[{want}]"),
                "node {i}'s netns"
            );
            assert_eq!(
                std::fs::read_to_string(nodes.log_path(i))
                    .expect("log")
                    .matches(START_MARKER)
                    .count(),
                1
            );
        }

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let mut m = pb::metadata_service_client::MetadataServiceClient::connect(format!(
                    "http://{}",
                    nodes.client_addr(1)
                ))
                .await
                .expect("connect");
                let r = m
                    .create_topic(pb::CreateTopicRequest {
                        name: "smoke".into(),
                        partitions: 2,
                        replication_factor: 3,
                        config: [
                            ("segment.bytes".to_owned(), "8192".to_owned()),
                            ("max.batch.bytes".to_owned(), "2048".to_owned()),
                            ("flush.policy".to_owned(), "every-batch".to_owned()),
                        ]
                        .into(),
                    })
                    .await;
                match r {
                    Ok(_) => break,
                    Err(e) if Instant::now() < deadline => {
                        println!("create topic: {e}; again");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("create topic: {e}"),
                }
            }
            for p in 0..2 {
                for _ in 0..60 {
                    produce_one(&nodes, "smoke", p, 3, Duration::from_secs(20))
                        .await
                        .expect("produce");
                }
            }
            println!("produced 2 x 60 batches after {:?}", t0.elapsed());
            // Node 3 cut off: the other two still make progress.
            net.isolate(3).expect("isolate");
            let t = Instant::now();
            for _ in 0..10 {
                produce_one(&nodes, "smoke", 0, 3, Duration::from_secs(20))
                    .await
                    .expect("produce while node 3 is isolated");
            }
            println!("10 batches with node 3 isolated in {:?}", t.elapsed());
            net.heal().expect("heal");
        });

        nodes.pause(2).expect("pause");
        assert!(nodes.is_paused(2) && nodes.is_running(2));
        assert_eq!(nodes.ready_status(2), None, "a paused node does not answer");
        nodes.resume(2).expect("resume");
        nodes
            .wait_ready(2, Duration::from_secs(30))
            .expect("ready after resume");

        nodes.kill_all9().expect("kill all");
        assert!((1..=3).all(|i| !nodes.is_running(i)));
        let dirs = nodes.partition_log_dirs(1).expect("dirs");
        println!("node 1's partition logs: {dirs:#?}");
        assert_eq!(dirs.len(), 2, "{dirs:?}");
        let torn = tear_tail(&dirs[0].path).expect("tear");
        println!("tear_tail: {torn}");
        let flipped = flip_bit_in_sealed(&dirs[1].path, 7)
            .expect("flip")
            .expect("sealed segments exist with 8 KiB segments");
        println!("flip_bit_in_sealed: {flipped}");

        for i in 1..=3 {
            nodes.restart(i).expect("restart");
        }
        for i in 2..=3 {
            nodes
                .wait_ready(i, Duration::from_secs(60))
                .expect("undamaged nodes come back");
        }
        match nodes.wait_ready(1, Duration::from_secs(30)) {
            Ok(()) => println!("node 1 is ready after the damage"),
            Err(e) => println!("node 1 after the damage: {e}"),
        }
        let log = std::fs::read_to_string(nodes.log_path(1)).expect("log");
        let after = &log[log.rfind(START_MARKER).expect("a restart marker")..];
        println!(
            "node 1's log lines about the damage:\n{}",
            after
                .lines()
                .filter(|l| ["corrupt", "repair", "torn", "CRC", "ERROR", "WARN"]
                    .iter()
                    .any(|w| l.contains(w)))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(!log.contains("\x1b["), "no colour codes in the log");
        assert_eq!(
            std::fs::read_to_string(nodes.log_path(2))
                .expect("log")
                .matches(START_MARKER)
                .count(),
            2
        );
        drop(nodes);
        drop(net);
        let left = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        let left = String::from_utf8_lossy(&left.stdout);
        assert!(!left.contains(&tag), "{left}");
    }
}
