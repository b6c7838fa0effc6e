//! The nemeses: the faults a run injects into the cluster, each recorded in the history when it
//! starts and when it is healed.
//!
//! | name | what |
//! | --- | --- |
//! | `kill-leader` | `kill -9` of a partition's leader, restarted, then the new leader killed: chased |
//! | `pause-leader` | `SIGSTOP` of a leader for several election timeouts, then `SIGCONT` |
//! | `isolate-leader` | iptables in the leader's namespace drop everything to and from its peers |
//! | `asymmetric` | the followers drop what the leader sends; the leader still hears them |
//! | `kill-all` | every node `kill -9`ed at once, then all restarted |
//! | `corrupt-follower` | a follower killed, a flipped bit in a sealed segment of one partition and a torn tail in another, restarted: it must cut the damage and get the data again |

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use skein_client::Admin;

use crate::history::{Op, Recorder};
use crate::net::Net;
use crate::nodes::{self, Nodes};
use crate::rng::Rng;
use crate::workload::{self, TOPIC};

/// What the run does.
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// Every nemesis once (the leader kill chased three times).
    Quick,
    /// Random nemeses until this much time has passed.
    Long(Duration),
}

const KINDS: [&str; 6] = [
    "kill-leader",
    "pause-leader",
    "isolate-leader",
    "asymmetric",
    "kill-all",
    "corrupt-follower",
];

/// The line a node logs when it opens a damaged replica log (see `skein-raft`'s log store).
const REPAIR_LOG_LINE: &str = "replica log was damaged";

/// Counts of what was done, for the report.
#[derive(Debug, Clone, Default)]
pub struct Stats(BTreeMap<String, u64>);

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// Injects faults into a running cluster.
#[derive(Debug)]
pub struct Nemesis<'a> {
    net: &'a Net,
    nodes: &'a Nodes,
    rec: &'a Recorder,
    admin: Admin,
    rng: Rng,
    partitions: u32,
    stats: Stats,
    /// How long a fault is held: several election timeouts.
    hold: Duration,
    /// Quiet time between faults.
    settle: Duration,
}

impl<'a> Nemesis<'a> {
    /// A nemesis for the cluster of `nodes` in `net`.
    pub fn new(
        net: &'a Net,
        nodes: &'a Nodes,
        rec: &'a Recorder,
        brokers: &str,
        seed: u64,
        partitions: u32,
    ) -> anyhow::Result<Nemesis<'a>> {
        let hold = (nodes.election_timeout_max() * 5).max(Duration::from_secs(3));
        Ok(Nemesis {
            net,
            nodes,
            rec,
            admin: Admin::new(workload::client(brokers)?),
            rng: Rng::new(seed),
            partitions,
            stats: Stats::default(),
            hold,
            settle: Duration::from_secs(3),
        })
    }

    /// What was done so far.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    fn start(&mut self, name: &str, detail: String) {
        tracing::info!(nemesis = name, %detail, "fault");
        *self.stats.0.entry(name.to_owned()).or_default() += 1;
        self.rec.event(
            "nemesis",
            Op::Nemesis {
                name: name.to_owned(),
                detail,
            },
        );
    }

    fn healed(&self, name: &str, detail: String) {
        tracing::info!(nemesis = name, %detail, "healed");
        self.rec.event(
            "nemesis",
            Op::Nemesis {
                name: format!("{name}:heal"),
                detail,
            },
        );
    }

    /// Runs the plan.
    pub async fn run(&mut self, plan: Plan) -> anyhow::Result<()> {
        match plan {
            Plan::Quick => {
                for kind in KINDS {
                    tokio::time::sleep(self.settle).await;
                    self.one(kind).await?;
                }
            }
            Plan::Long(total) => {
                let began = Instant::now();
                while began.elapsed() < total {
                    tokio::time::sleep(self.settle).await;
                    let kind = KINDS[self.rng.below(KINDS.len() as u64) as usize];
                    self.one(kind).await?;
                    tracing::info!(
                        elapsed = ?began.elapsed(),
                        total = ?total,
                        stats = %self.stats,
                        "long run progress"
                    );
                }
            }
        }
        tokio::time::sleep(self.settle).await;
        Ok(())
    }

    async fn one(&mut self, kind: &str) -> anyhow::Result<()> {
        match kind {
            "kill-leader" => self.kill_leader(3).await,
            "pause-leader" => self.pause_leader().await,
            "isolate-leader" => self.isolate_leader().await,
            "asymmetric" => self.asymmetric().await,
            "kill-all" => self.kill_all().await,
            _ => self.corrupt_follower().await,
        }
        .with_context(|| format!("nemesis {kind}"))
    }

    fn random_partition(&mut self) -> u32 {
        self.rng.below(u64::from(self.partitions)) as u32
    }

    /// The leader of `partition` as the cluster reports it, other than `not` (a node just
    /// killed may still be named for a moment).
    async fn leader(&self, partition: u32, not: Option<u64>) -> anyhow::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = workload::leader_of(&self.admin, partition).await {
                let i = l as usize;
                if Some(l) != not && (1..=self.nodes.len()).contains(&i) && self.nodes.is_running(i)
                {
                    return Ok(i);
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no leader of {TOPIC}/{partition} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn wait_ready(&self, i: usize) -> anyhow::Result<()> {
        tokio::task::block_in_place(|| self.nodes.wait_ready(i, Duration::from_secs(90)))
    }

    fn others(&self, i: usize) -> Vec<usize> {
        (1..=self.nodes.len()).filter(|&j| j != i).collect()
    }

    async fn kill_leader(&mut self, rounds: u32) -> anyhow::Result<()> {
        let p = self.random_partition();
        for round in 0..rounds {
            let l = self.leader(p, None).await?;
            let pid = self
                .nodes
                .pid(l)
                .map_or_else(|| "?".to_owned(), |p| p.to_string());
            self.start(
                "kill-leader",
                format!(
                    "kill -9 node {l} (pid {pid}), leader of {TOPIC}/{p} (round {})",
                    round + 1
                ),
            );
            self.nodes.kill9(l)?;
            // Chase: wait for the next leader before bringing the victim back.
            let next = self.leader(p, Some(l as u64)).await?;
            self.nodes.restart(l)?;
            self.wait_ready(l)?;
            self.healed(
                "kill-leader",
                format!("node {l} restarted; node {next} leads {TOPIC}/{p}"),
            );
            tokio::time::sleep(self.hold / 2).await;
        }
        Ok(())
    }

    async fn pause_leader(&mut self) -> anyhow::Result<()> {
        let p = self.random_partition();
        let l = self.leader(p, None).await?;
        self.start(
            "pause-leader",
            format!(
                "SIGSTOP node {l}, leader of {TOPIC}/{p}, for {:?}",
                self.hold
            ),
        );
        self.nodes.pause(l)?;
        tokio::time::sleep(self.hold).await;
        self.nodes.resume(l)?;
        self.healed("pause-leader", format!("SIGCONT node {l}"));
        Ok(())
    }

    async fn isolate_leader(&mut self) -> anyhow::Result<()> {
        let p = self.random_partition();
        let l = self.leader(p, None).await?;
        self.start(
            "isolate-leader",
            format!(
                "node {l} (leader of {TOPIC}/{p}) cut off from nodes {:?} for {:?}",
                self.others(l),
                self.hold
            ),
        );
        self.net.isolate(l)?;
        tracing::info!(node = l, rules = %self.net.rules(l)?, "isolated");
        tokio::time::sleep(self.hold).await;
        self.net.heal()?;
        self.healed("isolate-leader", format!("node {l} reconnected"));
        Ok(())
    }

    async fn asymmetric(&mut self) -> anyhow::Result<()> {
        let p = self.random_partition();
        let l = self.leader(p, None).await?;
        let followers = self.others(l);
        self.start(
            "asymmetric",
            format!(
                "nodes {followers:?} drop packets from node {l} (leader of {TOPIC}/{p}); node {l} \
                 still hears them, for {:?}",
                self.hold
            ),
        );
        for &f in &followers {
            self.net.drop_inbound(f, l)?;
        }
        tokio::time::sleep(self.hold).await;
        self.net.heal()?;
        self.healed("asymmetric", format!("node {l} heard again"));
        Ok(())
    }

    async fn kill_all(&mut self) -> anyhow::Result<()> {
        self.start("kill-all", "kill -9 every node at once".into());
        self.rec.event("nemesis", Op::Health { majority: false });
        self.nodes.kill_all9()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        for i in 1..=self.nodes.len() {
            self.nodes.restart(i)?;
        }
        tokio::task::block_in_place(|| self.nodes.wait_all_ready(Duration::from_secs(120)))?;
        self.rec.event("nemesis", Op::Health { majority: true });
        self.healed("kill-all", "every node restarted and ready".into());
        Ok(())
    }

    async fn corrupt_follower(&mut self) -> anyhow::Result<()> {
        let p = self.random_partition();
        let l = self.leader(p, None).await?;
        let others = self.others(l);
        let f = others[self.rng.below(others.len() as u64) as usize];
        let seed = self.rng.next_u64();
        // The torn tail goes to a partition the victim follows too: a follower's torn tail is what
        // a crash can leave. (Tearing fsynced, acknowledged entries off a *leader* is a disk that
        // lied; see docs/reliability.md.)
        let mut q = None;
        for k in 1..=self.partitions {
            let cand = (p + k) % self.partitions;
            let leader = workload::leader_of(&self.admin, cand).await;
            if leader.is_some_and(|l| l != f as u64) {
                q = Some(cand);
                break;
            }
        }
        self.nodes.kill9(f)?;
        let dirs = self.nodes.partition_log_dirs(f)?;
        let dir_of = |q: u32| {
            dirs.iter()
                .find(|d| d.topic == TOPIC && d.partition == q)
                .map(|d| d.path.clone())
                .with_context(|| format!("node {f} has no log of {TOPIC}/{q}"))
        };
        let flipped = nodes::flip_bit_in_sealed(&dir_of(p)?, seed)?;
        // An active segment that has just rolled holds nothing to tear.
        let torn = match q {
            Some(q) => format!(
                "{TOPIC}/{q}: {}",
                nodes::tear_tail(&dir_of(q)?).unwrap_or_else(|e| format!("no torn tail ({e:#})"))
            ),
            None => "no partition it follows to tear".to_owned(),
        };
        self.start(
            "corrupt-follower",
            format!(
                "node {f} (follower of {TOPIC}/{p}) killed; {TOPIC}/{p}: {}; {torn}",
                flipped.as_deref().unwrap_or("no sealed segment to damage")
            ),
        );
        self.nodes.restart(f)?;
        self.wait_ready(f)?;
        if flipped.is_some() {
            let log = std::fs::read_to_string(self.nodes.log_path(f)).unwrap_or_default();
            let this_start = log
                .rfind(nodes::START_MARKER)
                .map_or(&log[..], |at| &log[at..]);
            anyhow::ensure!(
                this_start.contains(REPAIR_LOG_LINE),
                "node {f} started on a flipped bit without reporting it (no '{REPAIR_LOG_LINE}' \
                 in {})",
                self.nodes.log_path(f).display()
            );
        }
        self.healed(
            "corrupt-follower",
            format!("node {f} restarted, cut the damage and is catching up from the leader"),
        );
        Ok(())
    }

    /// Undoes every fault: rules removed, paused nodes resumed, dead nodes restarted, all ready.
    pub async fn heal_all(&mut self) -> anyhow::Result<()> {
        self.net.heal()?;
        for i in 1..=self.nodes.len() {
            if self.nodes.is_paused(i) {
                self.nodes.resume(i)?;
            }
            if !self.nodes.is_running(i) {
                self.nodes.restart(i)?;
            }
        }
        tokio::task::block_in_place(|| self.nodes.wait_all_ready(Duration::from_secs(120)))?;
        self.rec.event("nemesis", Op::Health { majority: true });
        Ok(())
    }
}
