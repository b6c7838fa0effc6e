//! The `partitions` report: what each phase measured, the targets next to the numbers,
//! as a text summary or one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::args::PartitionsArgs;
use crate::procfs::DiskUsage;

/// Leaderships per node id.
pub type LeadersPerNode = BTreeMap<u64, u32>;

/// Creating the topics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreatePhase {
    pub topics_created: u32,
    pub partitions_created: u32,
    pub topics_failed: u32,
    pub first_error: Option<String>,
    /// From the first create call to the return of the last one.
    pub secs: f64,
    /// The phase limit ran out with calls left.
    pub timed_out: bool,
}

/// Waiting until every created partition has a leader (as the bootstrap node sees them).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LeaderPhase {
    /// Partitions of the created topics that the metadata lists.
    pub partitions: u32,
    /// Of those, partitions with a leader at the end of the wait.
    pub led: u32,
    /// Led at the first look, right after the create calls returned (a create call itself
    /// waits up to 10 s for its partitions' leaders).
    pub led_when_created: u32,
    /// From the return of the last create call until every partition had a leader; `None`
    /// when that did not happen within the phase limit.
    pub secs_after_create: Option<f64>,
    /// The same, from the first create call.
    pub secs_after_first_create: Option<f64>,
    pub leaders_per_node: LeadersPerNode,
    /// CPU seconds of each node from the first create call to the end of this wait.
    pub node_cpu_secs: Vec<f64>,
    /// Metadata requests that failed while waiting.
    pub metadata_errors: u32,
}

/// CPU of each node over the idle window (no client requests at all during it).
#[derive(Debug, Clone, Default, Serialize)]
pub struct IdlePhase {
    pub window_secs: f64,
    pub node_cpu_secs: Vec<f64>,
    /// Per node, in % of one core.
    pub node_cpu_percent: Vec<f64>,
    /// All nodes together, in % of one core.
    pub total_cpu_percent: f64,
    /// This process over the same window, in % of one core.
    pub bench_cpu_percent: f64,
    pub load_average_before: Option<[f64; 3]>,
    pub load_average_after: Option<[f64; 3]>,
}

/// One node process and its data directory at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeSample {
    pub node_id: u32,
    pub pid: Option<u32>,
    /// `VmRSS`, mapped file pages included.
    pub rss_mib: f64,
    /// `RssAnon`: the node's own memory.
    pub rss_anon_mib: f64,
    /// `VmHWM`: the peak of `VmRSS` since the process started.
    pub rss_peak_mib: f64,
    pub threads: u64,
    pub open_fds: u64,
    pub disk: DiskUsage,
}

/// SIGKILLing one node and waiting until its leaderships have moved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FailoverPhase {
    pub killed_node_id: u32,
    /// Partitions the killed node led just before.
    pub killed_node_leaderships: u32,
    pub leaders_per_node_before: LeadersPerNode,
    /// From the SIGKILL until every one of those partitions had a leader on another node;
    /// `None` when that did not happen within the phase limit.
    pub secs: Option<f64>,
    /// Of those partitions, still without a leader on another node at the end.
    pub unmoved_at_end: u32,
    pub leaders_per_node_after: LeadersPerNode,
    pub metadata_errors: u32,
}

/// Restarting the killed node.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestartPhase {
    pub node_id: u32,
    /// From the start of the process until its `/readyz` answered 200; `None` when it did
    /// not within the phase limit.
    pub ready_secs: Option<f64>,
    /// Why it was not ready, when it was not.
    pub not_ready: Option<String>,
    /// What `/readyz` answered until it answered 200: `[seconds after the restart, answer]`,
    /// each answer once, in order.
    pub waited_on: Vec<(f64, String)>,
    /// The node after it was ready.
    pub sample: Option<NodeSample>,
    /// How long the run watched for the node to lead partitions again.
    pub spread_wait_secs: f64,
    /// From the restart until the node led at least one partition again; `None` when it led
    /// none within the watch.
    pub first_leadership_secs: Option<f64>,
    pub leaders_per_node_after: LeadersPerNode,
}

/// One of the targets and where the run stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetCheck {
    pub name: &'static str,
    pub target: &'static str,
    /// `None` when not measured, or when the event did not happen within the phase limit.
    pub measured: Option<f64>,
    pub unit: &'static str,
    /// `None` when the phase did not run.
    pub met: Option<bool>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionsReport {
    pub scenario: &'static str,
    pub settings: PartitionsArgs,
    pub topics: u32,
    pub data_dir: String,
    /// From starting the processes until every node answered `/readyz` with 200.
    pub cluster_start_secs: f64,
    pub create: CreatePhase,
    pub leaders: LeaderPhase,
    pub idle: Option<IdlePhase>,
    /// Every node right after the idle window.
    pub nodes: Vec<NodeSample>,
    pub failover: Option<FailoverPhase>,
    pub restart: Option<RestartPhase>,
    /// Why failover and restart did not run, when they did not.
    pub failover_skipped: Option<String>,
    pub targets: Vec<TargetCheck>,
    /// CPU seconds this process used in all.
    pub bench_cpu_secs: f64,
    /// What ended the run early, if anything did.
    pub error: Option<String>,
}

impl PartitionsReport {
    pub fn new(settings: PartitionsArgs) -> Self {
        PartitionsReport {
            scenario: "partitions",
            topics: settings.topic_count(),
            settings,
            data_dir: String::new(),
            cluster_start_secs: 0.0,
            create: CreatePhase::default(),
            leaders: LeaderPhase::default(),
            idle: None,
            nodes: Vec::new(),
            failover: None,
            restart: None,
            failover_skipped: None,
            targets: Vec::new(),
            bench_cpu_secs: 0.0,
            error: None,
        }
    }

    /// Sets `targets` from the numbers measured.
    pub fn check_targets(&mut self) {
        self.targets = targets(self);
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report of numbers and strings serializes")
    }

    /// A summary for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.text_setup(&mut out);
        self.text_idle(&mut out);
        self.text_nodes(&mut out);
        self.text_failover(&mut out);
        self.text_targets(&mut out);
        if let Some(e) = &self.error {
            let _ = writeln!(out, "error: {e}");
        }
        out
    }

    fn text_setup(&self, out: &mut String) {
        let s = &self.settings;
        let _ = writeln!(
            out,
            "skein-bench partitions: {} node(s), {} partitions in {} topics, replication factor {}, segment.bytes {}",
            s.nodes, s.partitions, self.topics, s.replication_factor, s.segment_bytes
        );
        let _ = writeln!(
            out,
            "cluster: all nodes ready {:.1} s after start, data in {}",
            self.cluster_start_secs, self.data_dir
        );
        let c = &self.create;
        let _ = writeln!(
            out,
            "create: {} topics ({} partitions) in {:.1} s, {} calls at a time; {} failed{}{}",
            c.topics_created,
            c.partitions_created,
            c.secs,
            s.create_concurrency,
            c.topics_failed,
            if c.timed_out {
                "; phase limit reached"
            } else {
                ""
            },
            c.first_error
                .as_ref()
                .map(|e| format!(" (first error: {e})"))
                .unwrap_or_default()
        );
        let l = &self.leaders;
        let when = match (l.secs_after_create, l.secs_after_first_create) {
            (Some(a), Some(b)) => format!(
                "every partition led {a:.1} s after the create calls returned ({b:.1} s after the first call)"
            ),
            _ => format!(
                "NOT every partition led within {:.0} s: {} of {} led",
                s.phase_timeout.as_secs_f64(),
                l.led,
                l.partitions
            ),
        };
        let _ = writeln!(
            out,
            "leaders: {when}; {} led when the calls returned; leaders per node: {}; node CPU s meanwhile: {}",
            l.led_when_created,
            per_node(&l.leaders_per_node),
            list(&l.node_cpu_secs, 1)
        );
    }

    fn text_idle(&self, out: &mut String) {
        let Some(i) = &self.idle else {
            return;
        };
        let load = |l: &Option<[f64; 3]>| l.map_or("?".to_string(), |l| format!("{:.2}", l[0]));
        let _ = writeln!(
            out,
            "idle CPU over {:.1} s (after {:.0} s settling), % of one core: per node {}, all nodes {:.1}; skein-bench {:.1}; load average {} -> {}",
            i.window_secs,
            self.settings.settle.as_secs_f64(),
            list(&i.node_cpu_percent, 1),
            i.total_cpu_percent,
            i.bench_cpu_percent,
            load(&i.load_average_before),
            load(&i.load_average_after)
        );
    }

    fn text_nodes(&self, out: &mut String) {
        if self.nodes.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "{:<6} {:>8} {:>9} {:>9} {:>9} {:>8} {:>7} {:>10} {:>8}",
            "node", "pid", "RSS MiB", "anon MiB", "peak MiB", "threads", "fds", "disk MiB", "files"
        );
        for n in &self.nodes {
            node_row(out, &n.node_id.to_string(), n);
        }
    }

    fn text_failover(&self, out: &mut String) {
        if let Some(why) = &self.failover_skipped {
            let _ = writeln!(out, "failover: skipped ({why})");
        }
        if let Some(f) = &self.failover {
            let moved = match f.secs {
                Some(s) => format!("all moved in {s:.2} s"),
                None => format!(
                    "{} NOT moved within {:.0} s",
                    f.unmoved_at_end,
                    self.settings.phase_timeout.as_secs_f64()
                ),
            };
            let _ = writeln!(
                out,
                "failover: SIGKILLed node {} (led {} partitions): {moved}; leaders per node before: {}, after: {}",
                f.killed_node_id,
                f.killed_node_leaderships,
                per_node(&f.leaders_per_node_before),
                per_node(&f.leaders_per_node_after)
            );
        }
        if let Some(r) = &self.restart {
            let ready = match (r.ready_secs, &r.not_ready) {
                (Some(s), _) => format!("ready {s:.2} s after its restart"),
                (None, why) => format!("NOT ready: {}", why.as_deref().unwrap_or("?")),
            };
            let spread = if r.spread_wait_secs <= 0.0 {
                String::new()
            } else {
                match r.first_leadership_secs {
                    Some(s) => format!("; led a partition again {s:.1} s after its restart"),
                    None => format!(
                        "; led no partition within {:.0} s of being ready",
                        r.spread_wait_secs
                    ),
                }
            };
            let _ = writeln!(
                out,
                "restart: node {} {ready}{spread}; leaders per node: {}",
                r.node_id,
                per_node(&r.leaders_per_node_after)
            );
            for (at, answer) in &r.waited_on {
                let _ = writeln!(out, "  /readyz at {at:>6.2} s: {answer}");
            }
            if let Some(n) = &r.sample {
                node_row(out, &format!("{}*", n.node_id), n);
            }
        }
    }

    fn text_targets(&self, out: &mut String) {
        let _ = writeln!(out, "targets (issue 15):");
        for t in &self.targets {
            let measured = t
                .measured
                .map_or("-".to_string(), |m| format!("{m:.2} {}", t.unit));
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "not measured",
            };
            let _ = writeln!(
                out,
                "  {:<34} {:<10} {:>14}  {verdict}",
                t.name, t.target, measured
            );
        }
        let _ = writeln!(out, "skein-bench CPU: {:.1} s", self.bench_cpu_secs);
    }
}

fn node_row(out: &mut String, name: &str, n: &NodeSample) {
    let _ = writeln!(
        out,
        "{:<6} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>8} {:>7} {:>10.1} {:>8}",
        name,
        n.pid.map_or("-".to_string(), |p| p.to_string()),
        n.rss_mib,
        n.rss_anon_mib,
        n.rss_peak_mib,
        n.threads,
        n.open_fds,
        n.disk.allocated_bytes as f64 / (1 << 20) as f64,
        n.disk.files
    );
}

fn list(v: &[f64], decimals: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn per_node(m: &LeadersPerNode) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(n, c)| format!("{n}={c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The targets (for 10,000 RF 3 partitions on 3 local nodes) against the run.
fn targets(r: &PartitionsReport) -> Vec<TargetCheck> {
    let create_ran = r.create.topics_created > 0;
    let leaders = r.leaders.secs_after_create;
    let mut out = vec![TargetCheck {
        name: "every partition led after create",
        target: "<= 30 s",
        measured: leaders,
        unit: "s",
        met: create_ran.then(|| leaders.is_some_and(|s| s <= 30.0)),
    }];
    let cpu = r.idle.as_ref().map(|i| i.total_cpu_percent);
    out.push(TargetCheck {
        name: "idle CPU, all nodes",
        target: "< 5 %",
        measured: cpu,
        unit: "%",
        met: cpu.map(|c| c < 5.0),
    });
    let rss = r
        .nodes
        .iter()
        .map(|n| n.rss_mib)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    out.push(TargetCheck {
        name: "RSS, largest node",
        target: "< 1024 MiB",
        measured: rss,
        unit: "MiB",
        met: rss.map(|m| m < 1024.0),
    });
    let moved = r.failover.as_ref().map(|f| f.secs);
    out.push(TargetCheck {
        name: "killed node's leaderships moved",
        target: "<= 10 s",
        measured: moved.flatten(),
        unit: "s",
        met: moved.map(|s| s.is_some_and(|s| s <= 10.0)),
    });
    let ready = r.restart.as_ref().map(|r| r.ready_secs);
    out.push(TargetCheck {
        name: "restarted node ready",
        target: "<= 30 s",
        measured: ready.flatten(),
        unit: "s",
        met: ready.map(|s| s.is_some_and(|s| s <= 30.0)),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser as _;

    fn report() -> PartitionsReport {
        let Command::Partitions(a) = Cli::try_parse_from(["skein-bench", "partitions"])
            .expect("parses")
            .command
        else {
            panic!("partitions")
        };
        PartitionsReport::new(a)
    }

    fn sample(id: u32, rss_mib: f64) -> NodeSample {
        NodeSample {
            node_id: id,
            pid: Some(100 + id),
            rss_mib,
            ..NodeSample::default()
        }
    }

    #[test]
    fn nothing_measured_means_nothing_judged() {
        let mut r = report();
        r.check_targets();
        assert_eq!(r.targets.len(), 5);
        assert!(r.targets.iter().all(|t| t.met.is_none()), "{:?}", r.targets);
        let text = r.to_text();
        assert!(text.contains("not measured"), "{text}");
    }

    #[test]
    fn targets_compare_the_numbers_and_count_a_timeout_as_missed() {
        let mut r = report();
        r.create.topics_created = 10;
        r.leaders.secs_after_create = Some(12.0);
        r.idle = Some(IdlePhase {
            total_cpu_percent: 140.0,
            ..IdlePhase::default()
        });
        r.nodes = vec![sample(1, 300.0), sample(2, 1500.0), sample(3, 200.0)];
        r.failover = Some(FailoverPhase {
            secs: None,
            unmoved_at_end: 7,
            ..FailoverPhase::default()
        });
        r.restart = Some(RestartPhase {
            ready_secs: Some(3.0),
            ..RestartPhase::default()
        });
        r.check_targets();
        let met: Vec<Option<bool>> = r.targets.iter().map(|t| t.met).collect();
        assert_eq!(
            met,
            vec![
                Some(true),
                Some(false),
                Some(false),
                Some(false),
                Some(true)
            ]
        );
        assert_eq!(
            r.targets[2].measured,
            Some(1500.0),
            "the largest node counts"
        );
        assert_eq!(r.targets[3].measured, None);

        // Leaders that never all came count as a miss once topics were created.
        r.leaders.secs_after_create = None;
        r.check_targets();
        assert_eq!(r.targets[0].met, Some(false));

        let text = r.to_text();
        for word in ["7 NOT moved", "NOT met", "ready 3.00 s", "idle CPU"] {
            assert!(text.contains(word), "{word}: {text}");
        }
    }

    #[test]
    fn json_has_every_phase() {
        let mut r = report();
        r.leaders.leaders_per_node = LeadersPerNode::from([(1, 400), (2, 600)]);
        r.nodes = vec![sample(1, 10.0)];
        r.check_targets();
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("valid JSON");
        assert_eq!(v["scenario"], "partitions");
        assert_eq!(v["settings"]["partitions"], 1000);
        assert_eq!(v["settings"]["idle_window"].as_f64(), Some(30_000.0));
        assert_eq!(v["topics"], 10);
        assert_eq!(v["leaders"]["leaders_per_node"]["2"], 600);
        assert!(v["leaders"]["secs_after_create"].is_null());
        assert_eq!(v["nodes"][0]["disk"]["allocated_bytes"], 0);
        assert!(v["idle"].is_null() && v["failover"].is_null());
        assert_eq!(v["targets"].as_array().map(Vec::len), Some(5));
    }
}
