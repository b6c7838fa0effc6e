//! Replicated appends: a partition group of three replicas in this process, each node with its
//! own registry and Raft gRPC server on `127.0.0.1:0` (real loopback gRPC), next to a one-replica
//! group measured in the same run.
//!
//! Every write is `PartitionGroup::produce` of the standard batch (1000 records x 100 B, built once
//! with `BatchBuilder`) on the leader, which returns once the batch is committed (fsynced on a
//! majority) and applied. `WRITERS` tasks write concurrently so that appends, replication and
//! fsyncs pipeline. Logs use the default `LogConfig` (the flusher fsyncs once for every append
//! queued since its last fsync: group commit). The two setups alternate which goes first in each
//! run; the median over the runs is printed with the ratio replicated/single.
//!
//! Servers are built as a node should build them: `RaftService::server_builder` (HTTP/2 windows
//! for a whole AppendEntries, 1 MiB frames) on `RaftService::incoming` (`TCP_NODELAY`).
//!
//! `cargo bench -p skein-benches --bench replication` (plain `main`, not criterion: one
//! iteration is seconds of a running cluster). Settings through the environment:
//! `SKEIN_BENCH_RUNS` (3), `SKEIN_BENCH_SECONDS` (5 measured, after 1 s of warm-up),
//! `SKEIN_BENCH_WRITERS` (16), `SKEIN_BENCH_FLUSH=never` (no fsync at all, to separate the
//! CPU's cost from the disk's). `-- idle` instead measures the CPU that idle groups cost:
//! `SKEIN_BENCH_GROUPS` (200) groups of three replicas on three nodes, no writes.
//!
//! Logs go under `target/` (or `$SKEIN_BENCH_DIR`) and are deleted after each run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use skein_benches::{bench_dir, standard_batch};
use skein_raft::openraft::BasicNode;
use skein_raft::storage::LogConfig;
use skein_raft::{GroupId, NodeId, PartitionGroup, RaftConfig, RaftService, Registry};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const GROUP: GroupId = 1;
const LEADER_WAIT: Duration = Duration::from_secs(20);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One node: its registry and its Raft gRPC server.
struct BenchNode {
    registry: Arc<Registry>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl BenchNode {
    async fn start(id: NodeId, listener: TcpListener) -> Result<BenchNode, BoxError> {
        let config = RaftConfig::default();
        let registry = Registry::new(id, config.clone())?;
        let (stop, stopped) = oneshot::channel::<()>();
        let svc = RaftService::new(registry.clone()).into_server();
        let server = tokio::spawn(async move {
            let incoming = RaftService::incoming(listener);
            let r = RaftService::server_builder(&config)
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = r {
                eprintln!("raft server failed: {e}");
            }
        });
        Ok(BenchNode {
            registry,
            stop: Some(stop),
            server: Some(server),
        })
    }

    async fn stop(&mut self) -> Result<(), BoxError> {
        self.registry.shutdown().await?;
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            h.await?;
        }
        Ok(())
    }
}

/// `replicas` nodes with groups `1..=groups` each, initialized from node 1 with every node as a
/// voter.
struct Cluster {
    nodes: Vec<BenchNode>,
}

impl Cluster {
    async fn start(
        dir: &Path,
        replicas: u64,
        groups: u64,
        log: &LogConfig,
    ) -> Result<Cluster, BoxError> {
        let mut listeners = Vec::new();
        let mut members = BTreeMap::new();
        for id in 1..=replicas {
            let l = TcpListener::bind("127.0.0.1:0").await?;
            members.insert(id, BasicNode::new(l.local_addr()?.to_string()));
            listeners.push(l);
        }
        let mut nodes = Vec::new();
        for (id, l) in (1..=replicas).zip(listeners) {
            let node = BenchNode::start(id, l).await?;
            for g in 1..=groups {
                let d = dir.join(format!("node-{id}/group-{g}"));
                node.registry.create_partition(g, &d, log.clone()).await?;
            }
            nodes.push(node);
        }
        for g in 1..=groups {
            let p = nodes[0].registry.partition(g).ok_or("group just created")?;
            p.initialize(members.clone()).await?;
        }
        Ok(Cluster { nodes })
    }

    /// Waits until group `g` has a leader that knows it leads; returns its replica.
    async fn leader(&self, g: GroupId) -> Result<Arc<PartitionGroup>, BoxError> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let first = self.nodes[0].registry.partition(g).ok_or("no such group")?;
        let mut rx = first.raft().metrics();
        loop {
            for n in &self.nodes {
                let p = n.registry.partition(g).ok_or("no such group")?;
                if p.raft().metrics().borrow().state.is_leader() {
                    return Ok(p);
                }
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(format!("no leader of group {g} within {LEADER_WAIT:?}").into());
            }
        }
    }

    async fn stop(mut self) -> Result<(), BoxError> {
        for n in &mut self.nodes {
            n.stop().await?;
        }
        Ok(())
    }
}

/// What one measured interval produced.
#[derive(Debug, Clone, Copy)]
struct Sample {
    batches: u64,
    records_per_s: f64,
    mb_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU time of the whole process (every replica) per second of the measured interval.
    cores: f64,
}

/// `writers` tasks produce `batch` to `p` for `warmup`, then for `measure`; the sample covers
/// the writes that began during `measure`.
async fn load(
    p: Arc<PartitionGroup>,
    batch: Bytes,
    writers: usize,
    warmup: Duration,
    measure: Duration,
) -> Result<Sample, BoxError> {
    let start = Instant::now() + warmup;
    let end = start + measure;
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let p = p.clone();
        let batch = batch.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies_us: Vec<u32> = Vec::with_capacity(1 << 14);
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                p.produce(batch.clone()).await?;
                if t0 >= start {
                    let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
                    latencies_us.push(us);
                }
            }
            Ok::<_, skein_raft::Error>(latencies_us)
        }));
    }
    tokio::time::sleep_until(start.into()).await;
    let cpu0 = cpu_time()?;
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    // Writes that began before `end` may finish a little after it.
    let elapsed = start.elapsed().as_secs_f64();
    let cores = (cpu_time()? - cpu0).as_secs_f64() / elapsed;
    all.sort_unstable();
    let pct = |q: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        let i = ((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1;
        f64::from(all[i]) / 1000.0
    };
    let batches = all.len() as u64;
    let records = batches as f64 * skein_benches::RECORDS_PER_BATCH as f64;
    Ok(Sample {
        batches,
        records_per_s: records / elapsed,
        mb_per_s: batches as f64 * batch.len() as f64 / elapsed / 1e6,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        cores,
    })
}

/// One setup, start to finish, in a fresh directory.
async fn run_setup(
    replicas: u64,
    batch: &Bytes,
    writers: usize,
    measure: Duration,
) -> Result<Sample, BoxError> {
    std::fs::create_dir_all(bench_dir())?;
    let dir = tempfile::Builder::new()
        .prefix("skein-bench-replication-")
        .tempdir_in(bench_dir())?;
    let mut log = LogConfig::default();
    if std::env::var("SKEIN_BENCH_FLUSH").is_ok_and(|v| v == "never") {
        log.flush = skein_raft::storage::FlushPolicy::Never;
    }
    let cluster = Cluster::start(dir.path(), replicas, 1, &log).await?;
    let leader = cluster.leader(GROUP).await?;
    let s = load(
        leader,
        batch.clone(),
        writers,
        Duration::from_secs(1),
        measure,
    )
    .await?;
    cluster.stop().await?;
    Ok(s)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn print_sample(run: usize, name: &str, s: &Sample) {
    println!(
        "run {run} {name:<10} {:>7} batches {:>12.0} records/s {:>8.1} MB/s  p50 {:>7.2} ms  \
         p99 {:>7.2} ms  CPU {:.2} cores",
        s.batches, s.records_per_s, s.mb_per_s, s.p50_ms, s.p99_ms, s.cores
    );
}

async fn throughput() -> Result<(), BoxError> {
    let runs: usize = env_or("SKEIN_BENCH_RUNS", 3);
    let seconds: u64 = env_or("SKEIN_BENCH_SECONDS", 5);
    let writers: usize = env_or("SKEIN_BENCH_WRITERS", 16);
    let batch = standard_batch();
    let flush = if std::env::var("SKEIN_BENCH_FLUSH").is_ok_and(|v| v == "never") {
        "FlushPolicy::Never (no fsync)"
    } else {
        "default LogConfig (group commit)"
    };
    println!(
        "replicated append: batches of {} records x {} B ({} bytes), {writers} writers, {runs} runs \
         of 1 s warm-up + {seconds} s, {flush}, default RaftConfig",
        skein_benches::RECORDS_PER_BATCH,
        skein_benches::RECORD_VALUE_BYTES,
        batch.len()
    );
    let mut single = Vec::new();
    let mut replicated = Vec::new();
    for run in 1..=runs {
        // Alternate the order: this disk's speed drifts.
        let order: [u64; 2] = if run % 2 == 1 { [1, 3] } else { [3, 1] };
        for replicas in order {
            let s = run_setup(replicas, &batch, writers, Duration::from_secs(seconds)).await?;
            if replicas == 1 {
                print_sample(run, "single", &s);
                single.push(s);
            } else {
                print_sample(run, "replicated", &s);
                replicated.push(s);
            }
        }
    }
    let med = |v: &[Sample], f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
    println!();
    println!("| setup | records/s | MB/s | p50 commit latency | p99 commit latency |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, v) in [
        ("single replica (1-node group)", &single),
        ("three replicas", &replicated),
    ] {
        println!(
            "| {name} | {:.0} | {:.1} | {:.2} ms | {:.2} ms |",
            med(v, |s| s.records_per_s),
            med(v, |s| s.mb_per_s),
            med(v, |s| s.p50_ms),
            med(v, |s| s.p99_ms),
        );
    }
    let ratios: Vec<f64> = single
        .iter()
        .zip(&replicated)
        .map(|(s, r)| r.records_per_s / s.records_per_s)
        .collect();
    println!(
        "\nreplicated/single records/s: median of medians {:.2}; per run {:?}",
        med(&replicated, |s| s.records_per_s) / med(&single, |s| s.records_per_s),
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>()
    );
    Ok(())
}

/// CPU time (user + system) this process has used, from `/proc/self/stat`.
fn cpu_time() -> Result<Duration, BoxError> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name (field 2) may hold spaces; the fields after it are space-separated.
    let rest = stat
        .rsplit_once(')')
        .ok_or("unexpected /proc/self/stat format")?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the command name.
    let ticks: u64 = fields
        .get(11)
        .ok_or("no utime")?
        .parse::<u64>()?
        .checked_add(fields.get(12).ok_or("no stime")?.parse::<u64>()?)
        .ok_or("cpu time overflows")?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    Ok(Duration::from_millis(ticks * 10))
}

async fn idle() -> Result<(), BoxError> {
    let groups: u64 = env_or("SKEIN_BENCH_GROUPS", 200);
    let seconds: u64 = env_or("SKEIN_BENCH_SECONDS", 10);
    std::fs::create_dir_all(bench_dir())?;
    let dir = tempfile::Builder::new()
        .prefix("skein-bench-idle-")
        .tempdir_in(bench_dir())?;
    // Small, not preallocated segments: 3 x `groups` logs that never hold data.
    let log = LogConfig {
        segment_bytes_max: 8 << 20,
        preallocate: false,
        ..LogConfig::default()
    };
    let t0 = Instant::now();
    let cluster = Cluster::start(dir.path(), 3, groups, &log).await?;
    for g in 1..=groups {
        cluster.leader(g).await?;
    }
    println!(
        "{groups} groups x 3 replicas on 3 nodes started and led in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // Let the initial elections and membership commits settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c0 = cpu_time()?;
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = cpu_time()? - c0;
    let wall = w0.elapsed();
    let hb = RaftConfig::default().heartbeat_interval_ms;
    println!(
        "idle for {:.1} s: {:.2} s of CPU = {:.1} % of one core for 3 nodes ({:.1} % per node); \
         heartbeat every {hb} ms = {:.0} AppendEntries/s in total",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64() / 3.0,
        groups as f64 * 2.0 * 1000.0 / hb as f64,
    );
    cluster.stop().await?;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // `cargo bench` passes `--bench`; other arguments select the mode.
    let idle_mode = std::env::args().skip(1).any(|a| a == "idle");
    rt.block_on(async {
        if idle_mode {
            idle().await
        } else {
            throughput().await
        }
    })
}
