//! `skein-bench partitions`: what many idle partitions cost (issue 15).
//!
//! Starts a local cluster, creates the partitions (spread over topics, a few create calls at a
//! time), then measures in phases, each with a limit so that the run always ends with a report:
//! time until every partition has a leader; each node's CPU over an idle window, memory, open
//! files and disk; time until a SIGKILLed node's leaderships have moved to the others; time
//! until that node, restarted, answers `/readyz` with 200, and whether it leads again.
//!
//! Leaders are read from the metadata of the node the client bootstraps from (node 1, never
//! the one killed): with every replica on every node (RF = nodes), that node's own replica of
//! each partition says who leads it.

mod report;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use skein_client::{Admin, Client, ClientConfig, NewTopic, TopicDescription};

use crate::args::{Output, PartitionsArgs};
use crate::cluster::{self, LocalCluster};
use crate::procfs;
use report::{
    CreatePhase, FailoverPhase, IdlePhase, LeaderPhase, LeadersPerNode, NodeSample,
    PartitionsReport, RestartPhase,
};

/// The default `max.batch.bytes` of a node; smaller segments need a smaller one.
const NODE_BATCH_BYTES_DEFAULT: u64 = 4 << 20;
/// How often the metadata is read while waiting for leaders (each read costs the node CPU).
const LEADERS_POLL: Duration = Duration::from_millis(250);
/// How often the metadata is read after the SIGKILL (the resolution of the failover time).
const FAILOVER_POLL: Duration = Duration::from_millis(100);

/// Runs the scenario and prints its report; fails (after printing) when the run ended early.
pub async fn run_cli(args: PartitionsArgs) -> anyhow::Result<()> {
    args.validate().map_err(anyhow::Error::msg)?;
    let output = args.output;
    let report = tokio::select! {
        r = run(args) => r?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    };
    match output {
        Output::Json => println!("{}", report.to_json()),
        Output::Text => print!("{}", report.to_text()),
    }
    match &report.error {
        Some(e) => anyhow::bail!("the run ended early: {e}"),
        None => Ok(()),
    }
}

/// Starts the cluster, runs every phase, stops the cluster. An error after the cluster started
/// ends the run but still gives a report (with `error` set).
async fn run(args: PartitionsArgs) -> anyhow::Result<PartitionsReport> {
    let bin = cluster::find_node_bin(args.node.node_bin.as_deref())?;
    let parent = args.node.parent_dir();
    let progress = Progress::new(args.quiet);
    progress.say(&format!(
        "starting {} node(s) of {} under {}",
        args.nodes,
        bin.display(),
        parent.display()
    ));
    let mut report = PartitionsReport::new(args.clone());
    let started = Instant::now();
    let mut cluster = LocalCluster::start(&bin, args.nodes, &parent, &args.node.node_env)
        .await
        .context("start the local cluster")?;
    report.cluster_start_secs = secs(started.elapsed());
    report.data_dir = cluster.path().display().to_string();
    if let Err(e) = measure(&mut cluster, &args, &mut report, progress).await {
        report.error = Some(format!("{e:#}"));
    }
    report.bench_cpu_secs = procfs::process_cpu_secs(std::process::id()).unwrap_or(0.0);
    if let Some(dir) = cluster.stop(args.node.keep_data) {
        eprintln!(
            "skein-bench: kept the cluster's data and logs in {}",
            dir.display()
        );
    }
    report.check_targets();
    Ok(report)
}

async fn measure(
    cluster: &mut LocalCluster,
    args: &PartitionsArgs,
    report: &mut PartitionsReport,
    mut progress: Progress,
) -> anyhow::Result<()> {
    // Only node 1: the client then asks it for every metadata read, and it is never killed.
    let bootstrap = cluster.client_addr(0).to_string();
    let admin = Admin::new(Client::new(ClientConfig::new(&bootstrap))?);
    let layout = topic_layout(&args.topic_prefix, args.partitions, args.topic_count());
    let cpu_before = cluster.cpu_secs();
    let first_call = Instant::now();
    report.create = create_topics(&admin, &layout, args, &mut progress).await;
    let created = Instant::now();
    let names: HashSet<String> = layout.into_iter().map(|(name, _)| name).collect();
    report.leaders = wait_for_leaders(
        &admin,
        &names,
        report.create.partitions_created,
        created + args.phase_timeout,
        &mut progress,
    )
    .await;
    report.leaders.secs_after_first_create = report
        .leaders
        .secs_after_create
        .map(|s| s + secs(created - first_call));
    report.leaders.node_cpu_secs = cluster
        .cpu_secs()
        .iter()
        .zip(&cpu_before)
        .map(|(after, before)| round2(after - before))
        .collect();

    report.idle = Some(measure_idle(cluster, args, &progress).await);
    report.nodes = (0..args.nodes as usize)
        .map(|i| sample_node(cluster, i))
        .collect();

    let all_led =
        report.leaders.secs_after_create.is_some() && report.create.partitions_created > 0;
    report.failover_skipped = if args.no_failover {
        Some("--no-failover".into())
    } else if args.nodes < 2 {
        Some("one node: nowhere for leaderships to move".into())
    } else if !all_led {
        Some("not every partition had a leader".into())
    } else {
        None
    };
    if report.failover_skipped.is_some() {
        return Ok(());
    }
    let (victim, failover) = failover(cluster, &admin, &names, args, &mut progress).await?;
    report.failover = Some(failover);
    report.restart = Some(restart(cluster, &admin, &names, victim, args, &mut progress).await?);
    Ok(())
}

/// `(name, partitions)` of every topic: `prefix-00000`, ... with the partitions spread evenly.
pub fn topic_layout(prefix: &str, partitions: u32, topics: u32) -> Vec<(String, u32)> {
    let topics = topics.clamp(1, partitions.max(1));
    (0..topics)
        .map(|i| {
            let n = partitions / topics + u32::from(i < partitions % topics);
            (format!("{prefix}-{i:05}"), n)
        })
        .collect()
}

async fn create_topics(
    admin: &Admin,
    layout: &[(String, u32)],
    args: &PartitionsArgs,
    progress: &mut Progress,
) -> CreatePhase {
    let started = Instant::now();
    let deadline = started + args.phase_timeout;
    let segment = args.segment_bytes;
    let rf = args.replication_factor;
    let mut calls = futures_util::stream::iter(layout.iter().cloned())
        .map(|(name, partitions)| {
            let admin = admin.clone();
            async move {
                let mut topic = NewTopic::new(&name)
                    .partitions(partitions)
                    .replication_factor(rf)
                    .config("segment.bytes", segment.to_string());
                if segment < NODE_BATCH_BYTES_DEFAULT {
                    topic = topic.config("max.batch.bytes", segment.to_string());
                }
                let result = admin.create_topic(topic).await;
                (name, partitions, result)
            }
        })
        .buffer_unordered(args.create_concurrency as usize);
    let mut phase = CreatePhase::default();
    loop {
        match tokio::time::timeout_at(deadline.into(), calls.next()).await {
            Ok(Some((_, partitions, Ok(_)))) => {
                phase.topics_created += 1;
                phase.partitions_created += partitions;
            }
            Ok(Some((name, _, Err(e)))) => {
                phase.topics_failed += 1;
                phase
                    .first_error
                    .get_or_insert_with(|| format!("create topic {name}: {e}"));
            }
            Ok(None) => break,
            Err(_) => {
                phase.timed_out = true;
                break;
            }
        }
        progress.tick(|| {
            format!(
                "create: {} of {} topics ({} partitions)",
                phase.topics_created,
                layout.len(),
                phase.partitions_created
            )
        });
    }
    phase.secs = secs(started.elapsed());
    progress.say(&format!(
        "created {} topics ({} partitions) in {:.1} s",
        phase.topics_created, phase.partitions_created, phase.secs
    ));
    phase
}

/// Partitions of the topics named in `names`: how many, how many led, and by whom.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leadership {
    pub partitions: u32,
    pub led: u32,
    pub per_node: LeadersPerNode,
}

pub fn leadership(topics: &[TopicDescription], names: &HashSet<String>) -> Leadership {
    let mut l = Leadership::default();
    for p in topics
        .iter()
        .filter(|t| names.contains(&t.name))
        .flat_map(|t| &t.partitions)
    {
        l.partitions += 1;
        if let Some(n) = p.leader {
            l.led += 1;
            *l.per_node.entry(n).or_default() += 1;
        }
    }
    l
}

async fn wait_for_leaders(
    admin: &Admin,
    names: &HashSet<String>,
    expected: u32,
    deadline: Instant,
    progress: &mut Progress,
) -> LeaderPhase {
    let started = Instant::now();
    let mut phase = LeaderPhase::default();
    let mut first = true;
    loop {
        match admin.metadata().await {
            Ok(meta) => {
                let l = leadership(&meta.topics, names);
                if first {
                    phase.led_when_created = l.led;
                    first = false;
                }
                (phase.partitions, phase.led) = (l.partitions, l.led);
                phase.leaders_per_node = l.per_node;
                if l.partitions >= expected && l.led == l.partitions {
                    phase.secs_after_create = Some(secs(started.elapsed()));
                    progress.say(&format!(
                        "every partition ({}) led {:.1} s after the create calls returned",
                        l.partitions,
                        started.elapsed().as_secs_f64()
                    ));
                    return phase;
                }
            }
            Err(_) => phase.metadata_errors += 1,
        }
        if Instant::now() >= deadline {
            progress.say(&format!(
                "gave up waiting for leaders: {} of {} partitions led",
                phase.led, phase.partitions
            ));
            return phase;
        }
        progress.tick(|| {
            format!(
                "leaders: {} of {} partitions led",
                phase.led, phase.partitions
            )
        });
        tokio::time::sleep(LEADERS_POLL).await;
    }
}

/// Settles, then measures every node's CPU over the idle window without sending a request.
async fn measure_idle(
    cluster: &LocalCluster,
    args: &PartitionsArgs,
    progress: &Progress,
) -> IdlePhase {
    progress.say(&format!(
        "settling {:.0} s, then measuring idle CPU over {:.0} s",
        args.settle.as_secs_f64(),
        args.idle_window.as_secs_f64()
    ));
    tokio::time::sleep(args.settle).await;
    let me = std::process::id();
    let load_average_before = procfs::load_average();
    let (cpu0, bench0, t0) = (
        cluster.cpu_secs(),
        procfs::process_cpu_secs(me).unwrap_or(0.0),
        Instant::now(),
    );
    tokio::time::sleep(args.idle_window).await;
    let (cpu1, bench1, window) = (
        cluster.cpu_secs(),
        procfs::process_cpu_secs(me).unwrap_or(0.0),
        t0.elapsed().as_secs_f64(),
    );
    let node_cpu_secs: Vec<f64> = cpu1.iter().zip(&cpu0).map(|(b, a)| b - a).collect();
    let total: f64 = node_cpu_secs.iter().sum();
    IdlePhase {
        window_secs: round2(window),
        node_cpu_percent: node_cpu_secs
            .iter()
            .map(|&c| round2(procfs::cpu_percent_of_core(c, window)))
            .collect(),
        node_cpu_secs: node_cpu_secs.into_iter().map(round2).collect(),
        total_cpu_percent: round2(procfs::cpu_percent_of_core(total, window)),
        bench_cpu_percent: round2(procfs::cpu_percent_of_core(bench1 - bench0, window)),
        load_average_before,
        load_average_after: procfs::load_average(),
    }
}

fn sample_node(cluster: &LocalCluster, i: usize) -> NodeSample {
    let pid = cluster.pids()[i];
    let mem = pid.and_then(procfs::memory).unwrap_or_default();
    let mib = |kib: u64| round2(kib as f64 / 1024.0);
    NodeSample {
        node_id: cluster.node_id(i),
        pid,
        rss_mib: mib(mem.rss_kib),
        rss_anon_mib: mib(mem.rss_anon_kib),
        rss_peak_mib: mib(mem.rss_peak_kib),
        threads: mem.threads,
        open_fds: pid.and_then(procfs::open_fds).unwrap_or(0),
        disk: procfs::disk_usage(cluster.data_dir(i)),
    }
}

/// The node to kill: of `candidates`, the one leading the most partitions (the lowest id on a
/// tie).
pub fn choose_victim(per_node: &LeadersPerNode, candidates: &[u64]) -> Option<u64> {
    candidates
        .iter()
        .copied()
        .max_by_key(|n| (per_node.get(n).copied().unwrap_or(0), std::cmp::Reverse(*n)))
}

/// Of the partitions `(topic, partition)` in `watched`, those not yet led by a node other than
/// `gone`: still led by it, leaderless, or missing from the answer.
pub fn unmoved(topics: &[TopicDescription], watched: &HashSet<(String, u32)>, gone: u64) -> u32 {
    let moved = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
        .filter(|(t, p)| {
            p.leader.is_some_and(|l| l != gone) && watched.contains(&(t.name.clone(), p.partition))
        })
        .count();
    (watched.len() - moved) as u32
}

/// SIGKILLs the non-bootstrap node leading the most partitions and waits until those
/// partitions are led elsewhere. Returns the killed node's index.
async fn failover(
    cluster: &mut LocalCluster,
    admin: &Admin,
    names: &HashSet<String>,
    args: &PartitionsArgs,
    progress: &mut Progress,
) -> anyhow::Result<(usize, FailoverPhase)> {
    let meta = admin
        .metadata()
        .await
        .context("read the metadata before the SIGKILL")?;
    let before = leadership(&meta.topics, names);
    let candidates: Vec<u64> = (1..args.nodes as usize)
        .map(|i| u64::from(cluster.node_id(i)))
        .collect();
    let victim = choose_victim(&before.per_node, &candidates)
        .context("a node other than the bootstrap node")?;
    let index = (0..args.nodes as usize)
        .find(|&i| u64::from(cluster.node_id(i)) == victim)
        .context("the victim's index")?;
    let watched: HashSet<(String, u32)> = meta
        .topics
        .iter()
        .filter(|t| names.contains(&t.name))
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.leader == Some(victim))
                .map(|p| (t.name.clone(), p.partition))
        })
        .collect();
    let mut phase = FailoverPhase {
        killed_node_id: cluster.node_id(index),
        killed_node_leaderships: watched.len() as u32,
        leaders_per_node_before: before.per_node,
        ..FailoverPhase::default()
    };
    progress.say(&format!(
        "SIGKILL node {victim} (it leads {} partitions)",
        watched.len()
    ));
    cluster.kill(index)?;
    wait_until_moved(admin, names, &watched, victim, args, &mut phase, progress).await;
    Ok((index, phase))
}

/// Reads the metadata until no partition of `watched` is leaderless or led by `victim`, or the
/// phase limit passes; fills the rest of `phase`.
async fn wait_until_moved(
    admin: &Admin,
    names: &HashSet<String>,
    watched: &HashSet<(String, u32)>,
    victim: u64,
    args: &PartitionsArgs,
    phase: &mut FailoverPhase,
    progress: &mut Progress,
) {
    let killed = Instant::now();
    let deadline = killed + args.phase_timeout;
    loop {
        match admin.metadata().await {
            Ok(meta) => {
                phase.unmoved_at_end = unmoved(&meta.topics, watched, victim);
                phase.leaders_per_node_after = leadership(&meta.topics, names).per_node;
                if phase.unmoved_at_end == 0 {
                    phase.secs = Some(secs(killed.elapsed()));
                    progress.say(&format!(
                        "node {victim}'s leaderships moved in {:.2} s",
                        killed.elapsed().as_secs_f64()
                    ));
                    return;
                }
            }
            Err(_) => phase.metadata_errors += 1,
        }
        if Instant::now() >= deadline {
            progress.say(&format!(
                "gave up: {} of node {victim}'s partitions still without another leader",
                phase.unmoved_at_end
            ));
            return;
        }
        progress.tick(|| {
            format!(
                "failover: {} of {} partitions not moved yet",
                phase.unmoved_at_end,
                watched.len()
            )
        });
        tokio::time::sleep(FAILOVER_POLL).await;
    }
}

/// Restarts the killed node, waits until it is ready, then watches for it to lead again.
async fn restart(
    cluster: &mut LocalCluster,
    admin: &Admin,
    names: &HashSet<String>,
    index: usize,
    args: &PartitionsArgs,
    progress: &mut Progress,
) -> anyhow::Result<RestartPhase> {
    let node = u64::from(cluster.node_id(index));
    progress.say(&format!("restarting node {node}"));
    cluster.restart(index)?;
    let restarted = Instant::now();
    let mut phase = RestartPhase {
        node_id: cluster.node_id(index),
        spread_wait_secs: args.spread_wait.as_secs_f64(),
        ..RestartPhase::default()
    };
    match cluster
        .wait_ready(index, restarted + args.phase_timeout)
        .await
    {
        Ok(waited_on) => {
            phase.ready_secs = Some(secs(restarted.elapsed()));
            phase.waited_on = waited_on;
            progress.say(&format!(
                "node {node} ready {:.2} s after its restart",
                restarted.elapsed().as_secs_f64()
            ));
        }
        Err(e) => {
            let why = error_headline(&format!("{e:#}"));
            progress.say(&format!(
                "node {node} not ready: {why} (its log: {}/node{node}.log)",
                cluster.path().display()
            ));
            phase.not_ready = Some(why);
            return Ok(phase);
        }
    }
    phase.sample = Some(sample_node(cluster, index));
    let deadline = Instant::now() + args.spread_wait;
    loop {
        if let Ok(meta) = admin.metadata().await {
            phase.leaders_per_node_after = leadership(&meta.topics, names).per_node;
            if phase
                .leaders_per_node_after
                .get(&node)
                .is_some_and(|&n| n > 0)
            {
                phase.first_leadership_secs = Some(secs(restarted.elapsed()));
                break;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        progress.tick(|| format!("restart: waiting for node {node} to lead a partition"));
        tokio::time::sleep(LEADERS_POLL).await;
    }
    Ok(phase)
}

/// The first line of a node error, without the log tail that follows it (the log stays in
/// the node's log file).
fn error_headline(error: &str) -> String {
    let first = error.lines().next().unwrap_or_default();
    first
        .strip_suffix(':')
        .and_then(|f| f.strip_suffix("; its log"))
        .unwrap_or(first)
        .to_string()
}

fn secs(d: Duration) -> f64 {
    round2(d.as_secs_f64())
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Progress lines on stderr: `say` always, `tick` at most once a second.
struct Progress {
    quiet: bool,
    start: Instant,
    last: Instant,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        let now = Instant::now();
        Progress {
            quiet,
            start: now,
            last: now,
        }
    }

    fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("[{:>6.1}s] {line}", self.start.elapsed().as_secs_f64());
        }
    }

    fn tick(&mut self, line: impl FnOnce() -> String) {
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            self.say(&line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skein_client::PartitionDescription;

    fn topic(name: &str, leaders: &[Option<u64>]) -> TopicDescription {
        TopicDescription {
            name: name.into(),
            partitions: leaders
                .iter()
                .enumerate()
                .map(|(i, &leader)| PartitionDescription {
                    partition: i as u32,
                    leader,
                    replicas: vec![1, 2, 3],
                    in_sync: Vec::new(),
                    leader_term: 1,
                })
                .collect(),
            replication_factor: 3,
            config: Default::default(),
        }
    }

    fn names(n: &[&str]) -> HashSet<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_node_error_is_cut_before_its_log_tail() {
        let e = "node 3 did not answer /readyz with 200 within 120.2 s (last answer: 503 not \
                 ready: the metadata group has no leader yet); its log:\nline 1\nline 2";
        assert_eq!(
            error_headline(e),
            "node 3 did not answer /readyz with 200 within 120.2 s (last answer: 503 not \
             ready: the metadata group has no leader yet)"
        );
        assert_eq!(error_headline("exited"), "exited");
        assert_eq!(error_headline(""), "");
    }

    #[test]
    fn layout_spreads_partitions_evenly_and_names_topics_in_order() {
        let l = topic_layout("p", 1000, 10);
        assert_eq!(l.len(), 10);
        assert!(l.iter().all(|(_, n)| *n == 100));
        assert_eq!(l[0].0, "p-00000");
        assert_eq!(l[9].0, "p-00009");
        let l = topic_layout("p", 10, 3);
        assert_eq!(l.iter().map(|(_, n)| *n).collect::<Vec<_>>(), vec![4, 3, 3]);
        // Never an empty topic.
        assert_eq!(topic_layout("p", 2, 5).len(), 2);
    }

    #[test]
    fn leadership_counts_only_our_topics() {
        let topics = vec![
            topic("p-00000", &[Some(1), Some(2), None]),
            topic("p-00001", &[Some(2), Some(2)]),
            topic("__consumer_offsets", &[Some(3); 50]),
        ];
        let l = leadership(&topics, &names(&["p-00000", "p-00001"]));
        assert_eq!((l.partitions, l.led), (5, 4));
        assert_eq!(l.per_node, LeadersPerNode::from([(1, 1), (2, 3)]));
        assert_eq!(leadership(&topics, &names(&[])), Leadership::default());
    }

    #[test]
    fn the_victim_leads_the_most_and_is_never_the_bootstrap_node() {
        let per_node = LeadersPerNode::from([(1, 900), (2, 50), (3, 50)]);
        assert_eq!(choose_victim(&per_node, &[2, 3]), Some(2));
        let per_node = LeadersPerNode::from([(1, 10), (3, 7)]);
        assert_eq!(choose_victim(&per_node, &[2, 3]), Some(3));
        assert_eq!(choose_victim(&LeadersPerNode::new(), &[2, 3]), Some(2));
        assert_eq!(choose_victim(&per_node, &[]), None);
    }

    #[test]
    fn unmoved_counts_partitions_still_on_the_dead_node_or_leaderless_or_missing() {
        let watched: HashSet<(String, u32)> = [
            ("a".to_string(), 0),
            ("a".to_string(), 1),
            ("a".to_string(), 2),
            ("b".to_string(), 0),
        ]
        .into_iter()
        .collect();
        let topics = vec![
            topic("a", &[Some(2), None, Some(3)]),
            topic("c", &[Some(2)]), // not watched
        ];
        // a-0 still on 2, a-1 leaderless, b-0 missing; a-2 moved.
        assert_eq!(unmoved(&topics, &watched, 2), 3);
        let topics = vec![
            topic("a", &[Some(1), Some(3), Some(3)]),
            topic("b", &[Some(1)]),
        ];
        assert_eq!(unmoved(&topics, &watched, 2), 0);
    }
}
