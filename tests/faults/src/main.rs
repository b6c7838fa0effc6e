//! `skein-faults`: Skein's fault-injection suite (see `tests/faults/README.md`).
//!
//! Starts three real `skein-node` processes, each in its own network namespace, runs a workload
//! that records a history (JSON lines), injects faults (kills, pauses, network partitions, disk
//! damage), heals them, reads every partition from every node and checks the history.
//!
//! ```text
//! skein-faults run [--quick | --long 30m] [--seed N] [--node-bin PATH] [--out DIR]
//! skein-faults check HISTORY.jsonl [--max-unavailable-ms MS]
//! ```

mod checker;
mod history;
mod nemesis;
mod net;
mod nodes;
mod rng;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::checker::{check, CheckOptions};
use crate::history::{Op, Recorder};
use crate::nemesis::{Nemesis, Plan};
use crate::net::Net;
use crate::nodes::Nodes;
use crate::workload::{Settings, Workload};

/// Skein's fault-injection suite: real nodes, real faults, a recorded history and its checker.
#[derive(Debug, Parser)]
#[command(name = "skein-faults")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Starts a cluster in network namespaces, runs the workload under faults, checks it.
    Run(RunArgs),
    /// Checks a recorded history again.
    Check {
        /// The history (`history.jsonl` of a run).
        history: PathBuf,
        /// Longest time a partition may go without an acknowledged write while a majority is
        /// up.
        #[arg(long, default_value_t = 6_200)]
        max_unavailable_ms: u64,
    },
}

#[derive(Debug, Parser)]
struct RunArgs {
    /// Every nemesis once (a few minutes): what CI runs.
    #[arg(long, conflicts_with = "long")]
    quick: bool,
    /// Random nemeses for this long (e.g. `30m`, `2h`).
    #[arg(long, value_parser = humantime::parse_duration)]
    long: Option<Duration>,
    /// Seed of every random choice (nemesis order, victims, partitions written).
    #[arg(long)]
    seed: Option<u64>,
    /// The `skein-node` binary.
    #[arg(long, default_value = "target/debug/skein-node")]
    node_bin: PathBuf,
    /// Where the run keeps its history, report and node logs (default
    /// `target/faults/seed-N`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the nodes' data directories even when the run passes.
    #[arg(long)]
    keep_data: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "skein_faults=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Check {
            history,
            max_unavailable_ms,
        } => check_file(&history, max_unavailable_ms),
        Command::Run(args) => run(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("skein-faults: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check_file(path: &Path, max_unavailable_ms: u64) -> anyhow::Result<bool> {
    let events = history::read(path)?;
    let mut nodes: Vec<u64> = events
        .iter()
        .filter_map(|e| match e.op {
            Op::Read { node, .. } => Some(node),
            _ => None,
        })
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    let report = check(
        &events,
        &CheckOptions {
            max_unavailable_ms,
            nodes,
        },
    );
    println!("{report}");
    Ok(report.is_valid())
}

fn run(args: RunArgs) -> anyhow::Result<bool> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            % 1_000_000
    });
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/faults/seed-{seed}")));
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clear {}", out.display()))?;
    }
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let mode = match (args.quick, args.long) {
        (_, Some(d)) => format!("--long {}", humantime::format_duration(d)),
        _ => "--quick".to_owned(),
    };
    let replay = format!("tests/faults/run {mode} --seed {seed}");
    println!("skein-faults: seed {seed}, output in {}", out.display());
    println!("skein-faults: replay with: {replay}");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let outcome = runtime.block_on(run_async(&args, seed, &out));
    runtime.shutdown_timeout(Duration::from_secs(5));
    match outcome {
        Ok(true) => {
            if !args.keep_data {
                for i in 1..=3 {
                    let _ = std::fs::remove_dir_all(out.join(format!("node{i}")));
                }
            }
            println!(
                "skein-faults: PASS (seed {seed}); history in {}",
                out.display()
            );
            Ok(true)
        }
        Ok(false) => {
            println!(
                "skein-faults: FAIL (seed {seed}); history, report and node logs kept in {}\n\
                 skein-faults: replay with: {replay}",
                out.display()
            );
            Ok(false)
        }
        Err(e) => {
            println!(
                "skein-faults: ERROR (seed {seed}): {e:#}\nskein-faults: everything kept in {}\n\
                 skein-faults: replay with: {replay}",
                out.display()
            );
            Err(e)
        }
    }
}

async fn run_async(args: &RunArgs, seed: u64, out: &Path) -> anyhow::Result<bool> {
    let stale = Net::cleanup_stale().context("remove namespaces of earlier runs")?;
    if !stale.is_empty() {
        tracing::info!(?stale, "removed leftovers of an earlier run");
    }
    let tag = format!("{}", std::process::id() % 10_000);
    let net = Net::create(&tag, 3).context("create the network namespaces (needs root)")?;
    let nodes = Nodes::start(&args.node_bin, &net, out, 3, &[]).context("start the nodes")?;
    tokio::task::block_in_place(|| nodes.wait_all_ready(Duration::from_secs(60)))
        .context("nodes ready")?;
    let brokers = nodes.brokers();
    let settings = Settings {
        partitions: 3,
        producers: 3,
        consumers: 2,
        send_interval: Duration::from_millis(4),
        ack_timeout: Duration::from_secs(10),
        seed,
    };
    workload::create_topic(&brokers, settings.partitions).await?;

    let rec = Recorder::create(&out.join("history.jsonl"))?;
    rec.event("nemesis", Op::Health { majority: true });
    let mut load = Workload::start(&brokers, &settings, &rec)?;

    let plan = match args.long {
        Some(d) => Plan::Long(d),
        None => Plan::Quick,
    };
    let mut nemesis = Nemesis::new(&net, &nodes, &rec, &brokers, seed, settings.partitions)?;
    let faults = nemesis.run(plan).await;
    // Whatever happened, heal everything before the final reads.
    let healed = nemesis.heal_all().await;
    let stats = nemesis.stats();
    tracing::info!(?stats, "nemeses done");
    faults.context("nemesis")?;
    healed.context("heal")?;

    // Let the workload run on a healthy cluster for a moment, then stop it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    load.stop_producers().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    load.stop_consumers().await;

    let readers: Vec<(u64, String)> = (1..=3).map(|i| (i as u64, nodes.client_addr(i))).collect();
    let converged =
        workload::wait_converged(&readers, settings.partitions, Duration::from_secs(60)).await;
    if !converged {
        tracing::warn!("replicas did not converge within 60 s; reading them anyway");
    }
    workload::final_reads(&readers, settings.partitions, &rec).await;

    let events = history::read(&out.join("history.jsonl"))?;
    let max_unavailable_ms = 2 * nodes.election_timeout_max().as_millis() as u64 + 5_000;
    let report = check(
        &events,
        &CheckOptions {
            max_unavailable_ms,
            nodes: vec![1, 2, 3],
        },
    );
    println!("{report}");
    println!("skein-faults: nemeses: {stats}");
    std::fs::write(
        out.join("report.txt"),
        format!("{report}\nnemeses: {stats}\n"),
    )?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report).context("report as JSON")?,
    )?;
    Ok(report.is_valid())
}
