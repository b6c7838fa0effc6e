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

/// `skein-bench cluster`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Nodes to start (1 or 3).
    #[arg(long, default_value_t = 1, value_parser = parse_nodes)]
    pub nodes: u32,
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
    /// The scenario, after `--`: `produce ...`, `consume ...` or `e2e ...`.
    #[arg(last = true, required = true, value_name = "SCENARIO")]
    pub scenario: Vec<String>,
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
            Command::Cluster(_) => panic!("not a scenario"),
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
        assert_eq!(c.data_dir, Some(PathBuf::from("/var/tmp/x")));
        assert_eq!(
            c.node_env,
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
}
