//! Command-line arguments of `skein-bench`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use skein_client::{Acks, Compression};

/// Load generator for Skein, in the spirit of `kafka-producer-perf-test` and `iggy-bench`.
///
/// Produces, consumes, or both (`e2e`) against a running cluster (`--brokers`), or starts a local
/// cluster of `skein-node` processes first (`skein-bench cluster --nodes 3 -- produce ...`).
/// Reports records/s, MB/s and latency percentiles (HDR histograms); a progress line goes to
/// stderr once a second, the report to stdout (`--output json` for one JSON object).
#[derive(Debug, Parser)]
#[command(name = "skein-bench", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Produce records and measure throughput and produce (ack) latency.
    Produce(ScenarioArgs),
    /// Consume records from the beginning of the topic (producing them first if the topic holds
    /// fewer than needed) and measure throughput and fetch latency.
    Consume(ScenarioArgs),
    /// Produce and consume at once; measure both and the end-to-end latency (send to receipt).
    E2e(ScenarioArgs),
    /// Start a local cluster of `skein-node` processes on free 127.0.0.1 ports, run a scenario
    /// against it (`-- produce ...`), stop the cluster and remove its data.
    Cluster(ClusterArgs),
    /// Start a local cluster, create many partitions, and measure what they cost: time until
    /// every partition has a leader, idle CPU, memory, disk and open files per node, then
    /// SIGKILL a node and time the move of its leaderships and its restart.
    Partitions(PartitionsArgs),
}

/// Which scenario a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Produce,
    Consume,
    E2e,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Produce => "produce",
            Scenario::Consume => "consume",
            Scenario::E2e => "e2e",
        }
    }
}

/// Text (a table for people) or JSON (one object on stdout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    Text,
    Json,
}

/// Settings shared by `produce`, `consume` and `e2e`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct ScenarioArgs {
    /// Bootstrap brokers, HOST:PORT[,HOST:PORT..] (set by `cluster`).
    #[arg(long, default_value = "127.0.0.1:9650", env = "SKEIN_BROKERS")]
    pub brokers: String,
    /// Topic; created if missing with --partitions and --replication-factor.
    #[arg(long, default_value = "skein-bench")]
    pub topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 3)]
    pub partitions: u32,
    /// Replication factor of the topic when it is created [default: the broker's default,
    /// 3 capped by the number of nodes].
    #[arg(long)]
    pub replication_factor: Option<u32>,
    /// Bytes of each record's value (the first 8 carry the send time, for e2e latency).
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Records in total (over all producers, or to consume) [default: 1000000 unless
    /// --duration is given].
    #[arg(long, conflicts_with = "duration")]
    pub records: Option<u64>,
    /// Run for this long instead of a number of records ("30s", "2m").
    #[arg(long, value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_opt_duration")]
    pub duration: Option<Duration>,
    /// Concurrent producer tasks, each with its own client connection and Producer.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub producers: u32,
    /// Concurrent consumer tasks, each with its own client connection and Consumer; the
    /// partitions are split between them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub consumers: u32,
    /// The producer's batch_bytes_max: a batch is closed at this size.
    #[arg(long, default_value_t = 64 * 1024)]
    pub batch_bytes: usize,
    /// The producer's linger: how long a batch waits for more records ("5ms", "0ms").
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub linger: Duration,
    /// The producer's buffer_bytes_max (records buffered and in flight, per producer).
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    pub buffer_bytes: usize,
    /// When the broker acknowledges: `leader` or `all` (committed on a majority, fsynced).
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    #[serde(serialize_with = "serialize_display")]
    pub acks: Acks,
    /// Batch compression (Kafka's codecs): none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    #[serde(serialize_with = "serialize_display")]
    pub compression: Compression,
    /// Turn the producer's idempotence off (it is on by default).
    #[arg(long)]
    pub no_idempotence: bool,
    /// Keyed records (keys from a pool of --key-space keys) instead of keyless ones (sticky
    /// partitioning).
    #[arg(long)]
    pub keyed: bool,
    /// Distinct keys with --keyed.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_space: u64,
    /// Target rate in records/s over all producers, paced evenly (not in bursts): for
    /// latency-at-load runs. Latency is then measured from each record's scheduled send time.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Consumers' long-poll wait ("100ms").
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub fetch_wait: Duration,
    /// Consumers' per-partition fetch limit in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub partition_fetch_bytes: u32,
    /// `consume`: fail instead of producing the missing records first.
    #[arg(long)]
    pub no_prefill: bool,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl ScenarioArgs {
    /// Records to send or read; `None` when the run is bounded by --duration.
    pub fn record_limit(&self) -> Option<u64> {
        match (self.records, self.duration) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => Some(1_000_000),
        }
    }

    /// Checks relations clap cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.record_size == 0 {
            return Err("--record-size must be at least 1".into());
        }
        if self.partitions == 0 {
            return Err("--partitions must be at least 1".into());
        }
        if self.records == Some(0) {
            return Err("--records must be at least 1".into());
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err("--duration must be greater than zero".into());
        }
        if self.batch_bytes < 128 {
            return Err("--batch-bytes must be at least 128".into());
        }
        if self.buffer_bytes < self.batch_bytes {
            return Err("--buffer-bytes must be at least --batch-bytes".into());
        }
        Ok(())
    }
}

/// How `cluster` and `partitions` start their local `skein-node` processes.
#[derive(Debug, Clone, Args, Serialize)]
pub struct NodeArgs {
    /// Parent directory of the cluster's data (a fresh subdirectory is made and removed)
    /// [default: $SKEIN_BENCH_DIR, else the system temp directory]. Use a directory on the disk
    /// you want to measure: fsync on a tmpfs costs nothing.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The `skein-node` binary [default: next to this executable].
    #[arg(long, value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
    /// Keep the data directory and node logs instead of removing them.
    #[arg(long)]
    pub keep_data: bool,
    /// Extra environment for every node, KEY=VALUE (e.g. SKEIN_TOPIC_DEFAULTS_FLUSH_POLICY=never);
    /// repeatable.
    #[arg(long = "node-env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub node_env: Vec<(String, String)>,
}

impl NodeArgs {
    /// The directory the cluster's own directory is made in.
    pub fn parent_dir(&self) -> PathBuf {
        match &self.data_dir {
            Some(d) => d.clone(),
            None => std::env::var_os("SKEIN_BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
        }
    }
}

/// `skein-bench cluster`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Nodes to start (1 or 3).
    #[arg(long, default_value_t = 1, value_parser = parse_nodes)]
    pub nodes: u32,
    #[command(flatten)]
    pub node: NodeArgs,
    /// The scenario, after `--`: `produce ...`, `consume ...` or `e2e ...`.
    #[arg(last = true, required = true, value_name = "SCENARIO")]
    pub scenario: Vec<String>,
}

/// `skein-bench partitions`: many idle partitions on a local cluster (issue 15).
#[derive(Debug, Clone, Args, Serialize)]
pub struct PartitionsArgs {
    /// Nodes to start (1 or 3).
    #[arg(long, default_value_t = 3, value_parser = parse_nodes)]
    pub nodes: u32,
    /// Partitions in total, spread evenly over --topics topics.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: u32,
    /// Replicas of every partition (at most --nodes).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub replication_factor: u32,
    /// Topics to spread the partitions over [default: one per 100 partitions].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub topics: Option<u32>,
    /// Names of the topics: PREFIX-00000, PREFIX-00001, ...
    #[arg(long, default_value = "skein-bench-p")]
    pub topic_prefix: String,
    /// Create calls in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub create_concurrency: u32,
    /// `segment.bytes` of every topic ("1MiB"); `max.batch.bytes` is capped to it. Small, so
    /// that thousands of idle replicas do not fill the disk.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub segment_bytes: u64,
    /// Wait after every partition has a leader (or the wait gave up) before the idle window.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub settle: Duration,
    /// Window over which each node's idle CPU is measured.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub idle_window: Duration,
    /// Limit on each phase (creating, waiting for leaders, failover, restart): a phase that
    /// runs out is reported as such and the run goes on (or ends) with what it has.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub phase_timeout: Duration,
    /// After the killed node is ready again, how long to watch for it to lead partitions
    /// again ("0s" skips the watch).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub spread_wait: Duration,
    /// Stop after the idle measurement: no SIGKILL, no restart.
    #[arg(long)]
    pub no_failover: bool,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl PartitionsArgs {
    /// Topics the partitions are spread over.
    pub fn topic_count(&self) -> u32 {
        self.topics
            .unwrap_or_else(|| self.partitions.div_ceil(100))
            .clamp(1, self.partitions)
    }

    /// Checks relations clap cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.replication_factor > self.nodes {
            return Err(format!(
                "--replication-factor {} is more than --nodes {}",
                self.replication_factor, self.nodes
            ));
        }
        if self.topics.is_some_and(|t| t > self.partitions) {
            return Err("--topics must be at most --partitions (no empty topics)".into());
        }
        if self.partitions.div_ceil(self.topic_count()) > 10_000 {
            return Err("at most 10000 partitions per topic: give more --topics".into());
        }
        if self.idle_window.is_zero() {
            return Err("--idle-window must be greater than zero".into());
        }
        if self.phase_timeout.is_zero() {
            return Err("--phase-timeout must be greater than zero".into());
        }
        Ok(())
    }
}

/// The scenario after `cluster ... --`, parsed with the same rules as a top-level one.
#[derive(Debug, Parser)]
#[command(name = "skein-bench cluster --")]
struct InnerCli {
    #[command(subcommand)]
    command: InnerCommand,
}

#[derive(Debug, Subcommand)]
enum InnerCommand {
    Produce(ScenarioArgs),
    Consume(ScenarioArgs),
    E2e(ScenarioArgs),
}

impl ClusterArgs {
    /// Parses the words after `--`.
    pub fn parse_scenario(&self) -> Result<(Scenario, ScenarioArgs), clap::Error> {
        let words = std::iter::once("skein-bench".to_string()).chain(self.scenario.iter().cloned());
        let inner = InnerCli::try_parse_from(words)?;
        Ok(match inner.command {
            InnerCommand::Produce(a) => (Scenario::Produce, a),
            InnerCommand::Consume(a) => (Scenario::Consume, a),
            InnerCommand::E2e(a) => (Scenario::E2e, a),
        })
    }
}

/// A size in bytes with an optional binary unit: "1048576", "64KiB", "1 MiB", "2G".
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(format!("`{s}` is not a size like 1048576, 64KiB or 1MiB")),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{s}` is not a positive size like 1048576, 64KiB or 1MiB"))
}

/// Durations in humantime form ("250ms", "30s", "1m") or plain milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 30s: {e}"))
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    s.parse()
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    s.parse()
}

/// A rate in records/s: a positive number, with an optional k/M suffix ("500k", "1.2M").
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        _ => (t, 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v * mult),
        _ => Err(format!(
            "`{s}` is not a rate: give records/s, e.g. 50000 or 500k"
        )),
    }
}

fn parse_nodes(s: &str) -> Result<u32, String> {
    match s.trim() {
        "1" => Ok(1),
        "3" => Ok(3),
        other => Err(format!("`{other}`: --nodes must be 1 or 3")),
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

fn serialize_opt_duration<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_secs_f64() * 1e3)),
        None => s.serialize_none(),
    }
}

fn serialize_display<T: std::fmt::Display, S: serde::Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("skein-bench").chain(words.iter().copied()))
    }

    fn scenario(words: &[&str]) -> ScenarioArgs {
        match parse(words).expect("parses").command {
            Command::Produce(a) | Command::Consume(a) | Command::E2e(a) => a,
            Command::Cluster(_) | Command::Partitions(_) => panic!("not a scenario"),
        }
    }

    #[test]
    fn defaults() {
        let a = scenario(&["produce"]);
        assert_eq!(a.brokers, "127.0.0.1:9650");
        assert_eq!(a.topic, "skein-bench");
        assert_eq!(a.record_size, 100);
        assert_eq!(a.record_limit(), Some(1_000_000));
        assert_eq!(a.producers, 1);
        assert_eq!(a.acks, Acks::All);
        assert_eq!(a.compression, Compression::None);
        assert_eq!(a.linger, Duration::from_millis(5));
        assert_eq!(a.output, Output::Text);
        assert!(!a.keyed);
        assert!(a.rate.is_none());
        a.validate().expect("defaults are valid");
    }

    #[test]
    fn every_flag() {
        let a = scenario(&[
            "e2e",
            "--brokers",
            "127.0.0.1:1,127.0.0.1:2",
            "--topic",
            "t",
            "--partitions",
            "6",
            "--replication-factor",
            "3",
            "--record-size",
            "1000",
            "--duration",
            "30s",
            "--producers",
            "4",
            "--consumers",
            "2",
            "--batch-bytes",
            "131072",
            "--linger",
            "0",
            "--acks",
            "leader",
            "--compression",
            "zstd",
            "--keyed",
            "--rate",
            "500k",
            "--output",
            "json",
        ]);
        assert_eq!(a.partitions, 6);
        assert_eq!(a.replication_factor, Some(3));
        assert_eq!(a.record_size, 1000);
        assert_eq!(a.duration, Some(Duration::from_secs(30)));
        assert_eq!(a.record_limit(), None);
        assert_eq!((a.producers, a.consumers), (4, 2));
        assert_eq!(a.batch_bytes, 131072);
        assert_eq!(a.linger, Duration::ZERO);
        assert_eq!(a.acks, Acks::Leader);
        assert_eq!(a.compression, Compression::Zstd);
        assert!(a.keyed);
        assert_eq!(a.rate, Some(500_000.0));
        assert_eq!(a.output, Output::Json);
    }

    #[test]
    fn bad_values_are_refused() {
        for words in [
            &["produce", "--acks", "two"][..],
            &["produce", "--compression", "brotli"],
            &["produce", "--rate", "0"],
            &["produce", "--rate", "fast"],
            &["produce", "--producers", "0"],
            &["produce", "--records", "5", "--duration", "5s"],
            &["produce", "--duration", "soon"],
            &["cluster", "--nodes", "2", "--", "produce"],
            &["cluster", "--nodes", "1"],
        ] {
            assert!(parse(words).is_err(), "{words:?} should be refused");
        }
        let mut a = scenario(&["produce", "--record-size", "0"]);
        assert!(a.validate().is_err());
        a.record_size = 10;
        a.batch_bytes = 64;
        assert!(a.validate().is_err());
    }

    #[test]
    fn rates_take_suffixes() {
        assert_eq!(parse_rate("1000"), Ok(1000.0));
        assert_eq!(parse_rate("2.5k"), Ok(2500.0));
        assert_eq!(parse_rate("1M"), Ok(1_000_000.0));
        assert!(parse_rate("-5").is_err());
        assert!(parse_rate("k").is_err());
    }

    #[test]
    fn cluster_takes_a_scenario_after_dashes() {
        let cli = parse(&[
            "cluster",
            "--nodes",
            "3",
            "--data-dir",
            "/var/tmp/x",
            "--node-env",
            "SKEIN_TOPIC_DEFAULTS_FLUSH_POLICY=never",
            "--",
            "produce",
            "--records",
            "20000",
            "--replication-factor",
            "3",
        ])
        .expect("parses");
        let Command::Cluster(c) = cli.command else {
            panic!("not cluster")
        };
        assert_eq!(c.nodes, 3);
        assert_eq!(c.node.data_dir, Some(PathBuf::from("/var/tmp/x")));
        assert_eq!(
            c.node.node_env,
            vec![(
                "SKEIN_TOPIC_DEFAULTS_FLUSH_POLICY".to_string(),
                "never".to_string()
            )]
        );
        let (s, a) = c.parse_scenario().expect("scenario parses");
        assert_eq!(s, Scenario::Produce);
        assert_eq!(a.records, Some(20000));
        assert_eq!(a.replication_factor, Some(3));

        let bad = ClusterArgs {
            scenario: vec!["cluster".into()],
            ..c
        };
        assert!(bad.parse_scenario().is_err());
    }

    fn partitions(words: &[&str]) -> PartitionsArgs {
        let mut all = vec!["partitions"];
        all.extend_from_slice(words);
        match parse(&all).expect("parses").command {
            Command::Partitions(a) => a,
            _ => panic!("not partitions"),
        }
    }

    #[test]
    fn partitions_defaults_and_flags() {
        let a = partitions(&[]);
        assert_eq!((a.nodes, a.partitions, a.replication_factor), (3, 1000, 3));
        assert_eq!(a.topic_count(), 10);
        assert_eq!(a.segment_bytes, 1 << 20);
        assert_eq!(a.idle_window, Duration::from_secs(30));
        assert_eq!(a.phase_timeout, Duration::from_secs(120));
        assert!(!a.no_failover && !a.node.keep_data);
        a.validate().expect("defaults are valid");

        let a = partitions(&[
            "--partitions",
            "10000",
            "--topics",
            "50",
            "--segment-bytes",
            "256KiB",
            "--idle-window",
            "10s",
            "--data-dir",
            "/var/tmp",
            "--node-env",
            "SKEIN_RAFT_HEARTBEAT_INTERVAL=500ms",
            "--output",
            "json",
        ]);
        assert_eq!((a.partitions, a.topic_count()), (10_000, 50));
        assert_eq!(a.segment_bytes, 256 << 10);
        assert_eq!(a.node.data_dir, Some(PathBuf::from("/var/tmp")));
        assert_eq!(a.node.node_env.len(), 1);
        assert_eq!(a.output, Output::Json);
        // 10 001 partitions: the last topic gets one partition more, never none.
        assert_eq!(partitions(&["--partitions", "10001"]).topic_count(), 101);
        assert_eq!(partitions(&["--partitions", "7"]).topic_count(), 1);
    }

    #[test]
    fn partitions_refuses_impossible_layouts() {
        for words in [
            &["--replication-factor", "3", "--nodes", "1"][..],
            &["--partitions", "10", "--topics", "11"],
            &["--partitions", "20001", "--topics", "2"],
            &["--idle-window", "0s"],
        ] {
            assert!(partitions(words).validate().is_err(), "{words:?}");
        }
        for words in [
            &["--partitions", "0"][..],
            &["--nodes", "2"],
            &["--segment-bytes", "0"],
            &["--create-concurrency", "0"],
        ] {
            let mut all = vec!["partitions"];
            all.extend_from_slice(words);
            assert!(parse(&all).is_err(), "{words:?} should be refused");
        }
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        for bad in ["", "MiB", "1.5MiB", "1 MB", "-1", "0", "99999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
