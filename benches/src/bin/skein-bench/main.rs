//! `skein-bench`: Skein's load generator. See `benches/README.md` for usage.
//!
//! `produce`, `consume` and `e2e` drive a running cluster through `skein-client`; `cluster`
//! starts local `skein-node` processes first and stops them (and removes their data) after;
//! `partitions` starts its own cluster and measures what many idle partitions cost.

mod args;
mod cluster;
mod pacer;
mod partitions;
mod procfs;
mod report;
mod run;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;

use crate::args::{Cli, ClusterArgs, Command, Output, Scenario, ScenarioArgs};
use crate::cluster::LocalCluster;
use crate::report::{ClusterReport, Report};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("skein-bench")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skein-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_cli(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skein-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_cli(cli: Cli) -> anyhow::Result<()> {
    let (scenario, args) = match cli.command {
        Command::Produce(a) => (Scenario::Produce, a),
        Command::Consume(a) => (Scenario::Consume, a),
        Command::E2e(a) => (Scenario::E2e, a),
        Command::Cluster(c) => return run_cluster(c).await,
        Command::Partitions(p) => return partitions::run_cli(p).await,
    };
    let output = args.output;
    let mut report = tokio::select! {
        r = run::run(scenario, args) => r?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    };
    report.bench_cpu_secs = self_cpu_secs();
    print_report(&report, output);
    Ok(())
}

fn print_report(report: &Report, output: Output) {
    match output {
        Output::Json => println!("{}", report.to_json()),
        Output::Text => print!("{}", report.to_text()),
    }
}

fn self_cpu_secs() -> f64 {
    let secs = procfs::process_cpu_secs(std::process::id()).unwrap_or(0.0);
    (secs * 100.0).round() / 100.0
}

async fn run_cluster(c: ClusterArgs) -> anyhow::Result<()> {
    let (scenario, mut args): (Scenario, ScenarioArgs) = match c.parse_scenario() {
        Ok(s) => s,
        Err(e) => e.exit(),
    };
    let bin = cluster::find_node_bin(c.node.node_bin.as_deref())?;
    let parent = c.node.parent_dir();
    if !args.quiet {
        eprintln!(
            "skein-bench: starting {} node(s) of {} under {}",
            c.nodes,
            bin.display(),
            parent.display()
        );
    }
    let mut cluster = LocalCluster::start(&bin, c.nodes, &parent, &c.node.node_env)
        .await
        .context("start the local cluster")?;
    args.brokers = cluster.brokers();
    if !args.quiet {
        eprintln!(
            "skein-bench: cluster ready at {} (data in {})",
            args.brokers,
            cluster.path().display()
        );
    }
    let output = args.output;
    // Peak anonymous memory of each node, sampled every 100 ms (`VmHWM` also counts the pages
    // of the log segments the node maps).
    let pids = cluster.pids();
    let anon_peak: Arc<Vec<AtomicU64>> = Arc::new(pids.iter().map(|_| AtomicU64::new(0)).collect());
    let sampler = {
        let anon_peak = anon_peak.clone();
        tokio::spawn(async move {
            loop {
                for (pid, peak) in pids.iter().zip(anon_peak.iter()) {
                    if let Some(kib) = pid.and_then(procfs::rss_anon_kib) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let result = tokio::select! {
        r = run::run(scenario, args) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    sampler.abort();
    let rss_anon: Vec<f64> = anon_peak
        .iter()
        .map(|k| (k.load(Ordering::Relaxed) as f64 / 1024.0 * 10.0).round() / 10.0)
        .collect();
    let rss = cluster.rss_peak_mib();
    let cpu = cluster.cpu_secs();
    let bench_cpu = self_cpu_secs();
    let data_dir = cluster.path().display().to_string();
    let kept = cluster.stop(c.node.keep_data);
    if let Some(dir) = kept {
        eprintln!(
            "skein-bench: kept the cluster's data and logs in {}",
            dir.display()
        );
    }
    let mut report = result?;
    report.bench_cpu_secs = bench_cpu;
    report.cluster = Some(ClusterReport {
        nodes: c.nodes,
        data_dir,
        node_rss_peak_mib: rss,
        node_rss_anon_peak_mib: rss_anon,
        node_cpu_secs: cpu,
    });
    print_report(&report, output);
    Ok(())
}
