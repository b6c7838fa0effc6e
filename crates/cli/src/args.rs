//! The command line: verbs and flags (see "Interfaces users see" in the architecture guide).

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use skein_client::{Acks, Compression, DEFAULT_BROKERS};

use crate::parse::{parse_config_pair, parse_datetime_ms, parse_duration};

/// The Skein command-line tool: manage topics, produce and consume records, inspect the cluster.
#[derive(Debug, Parser)]
#[command(name = "skein", version, propagate_version = true)]
pub struct Cli {
    /// Brokers to contact, HOST:PORT[,HOST:PORT..]; any one reachable node is enough.
    #[arg(
        long,
        env = "SKEIN_BROKERS",
        default_value = DEFAULT_BROKERS,
        global = true,
        value_name = "HOST:PORT[,..]"
    )]
    pub brokers: String,

    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level verbs. (`group` and `consume --group` arrive with consumer groups.)
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Write records to a topic: one record from --value, or one per line of standard input.
    Produce(ProduceArgs),
    /// Read records from a topic and print them.
    Consume(ConsumeArgs),
    /// Inspect the cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

/// `skein topic ...`
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(TopicCreateArgs),
    /// List topics.
    List(OutputArgs),
    /// Show a topic's partitions, leaders, replicas and config.
    Describe {
        /// Topic name.
        name: String,
        /// Output format.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete a topic and its data.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// `skein topic create`
#[derive(Debug, Args)]
pub struct TopicCreateArgs {
    /// Topic name: 1-249 characters of [A-Za-z0-9._-].
    pub name: String,
    /// Number of partitions (default: the cluster's default).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: Option<u32>,
    /// Replicas per partition (default: min(3, nodes)).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub replication_factor: Option<u32>,
    /// A topic setting, KEY=VALUE (repeatable): retention.ms, retention.bytes, segment.bytes,
    /// segment.ms, flush.policy, flush.interval.ms, max.batch.bytes.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config_pair)]
    pub config: Vec<(String, String)>,
}

/// `skein cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Nodes and their health, the metadata leader, and every partition's leader and replicas.
    Status(OutputArgs),
}

/// Output of read verbs.
#[derive(Debug, Args, Clone, Copy)]
pub struct OutputArgs {
    /// `table` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = ReadFormat::Table)]
    pub output: ReadFormat,
}

/// Format of read verbs other than `consume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadFormat {
    /// Aligned columns.
    Table,
    /// One JSON document.
    Json,
}

/// Format of `consume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecordFormat {
    /// One record value per line.
    Text,
    /// One JSON object per record per line (topic, partition, offset, timestamp, key, value,
    /// headers).
    Json,
}

/// `skein produce`
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to write to.
    pub topic: String,
    /// Key of every record (records with the same key go to the same partition).
    #[arg(long)]
    pub key: Option<String>,
    /// Value of a single record; without it, every line of standard input is a record.
    #[arg(long)]
    pub value: Option<String>,
    /// Split each input line at the first SEP into key and value.
    #[arg(long, value_name = "SEP", conflicts_with = "value")]
    pub key_separator: Option<String>,
    /// `all`: acknowledged once committed by a majority (default); `leader`: once the leader has
    /// appended it.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: Acks,
    /// Batch compression: none, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    pub compression: Compression,
    /// Write every record to this partition instead of choosing by key.
    #[arg(long)]
    pub partition: Option<u32>,
}

/// `skein consume`
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Start at the earliest offset still in the log (default: only new records).
    #[arg(long, conflicts_with_all = ["offset", "from_datetime"])]
    pub from_beginning: bool,
    /// Read only this partition (default: all partitions of the topic).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition", conflicts_with = "from_datetime")]
    pub offset: Option<u64>,
    /// Start at the first record at or after this time, RFC 3339 (2024-05-01T12:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_datetime_ms)]
    pub from_datetime: Option<i64>,
    /// Exit after this many records.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Exit after this long without a record (e.g. 500ms, 10s, 1m30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// `text`: one value per line; `json`: one JSON object per line.
    #[arg(long, value_enum, default_value_t = RecordFormat::Text)]
    pub output: RecordFormat,
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    s.parse()
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("skein").chain(args.iter().copied()))
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn brokers_default_and_flag() {
        // The env var may be set in a developer's shell; only check the flag wins.
        let cli = parse(&["--brokers", "a:1,b:2", "topic", "list"]).expect("parses");
        assert_eq!(cli.brokers, "a:1,b:2");
        let cli = parse(&["topic", "list", "--brokers", "c:3"]).expect("global flag after verb");
        assert_eq!(cli.brokers, "c:3");
    }

    #[test]
    fn topic_create_takes_partitions_replication_and_configs() {
        let cli = parse(&[
            "topic",
            "create",
            "orders",
            "--partitions",
            "6",
            "--replication-factor",
            "3",
            "--config",
            "retention.ms=1000",
            "--config",
            "segment.bytes=1048576",
        ])
        .expect("parses");
        let Command::Topic(TopicCommand::Create(a)) = cli.command else {
            panic!("topic create")
        };
        assert_eq!(a.name, "orders");
        assert_eq!(a.partitions, Some(6));
        assert_eq!(a.replication_factor, Some(3));
        assert_eq!(
            a.config,
            vec![
                ("retention.ms".to_string(), "1000".to_string()),
                ("segment.bytes".to_string(), "1048576".to_string())
            ]
        );
        assert!(parse(&["topic", "create", "x", "--partitions", "0"]).is_err());
        assert!(parse(&["topic", "create", "x", "--config", "novalue"]).is_err());
    }

    #[test]
    fn read_verbs_take_output_json() {
        for args in [
            &["topic", "list", "--output", "json"][..],
            &["topic", "describe", "t", "--output", "json"],
            &["cluster", "status", "--output", "json"],
        ] {
            parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        assert!(parse(&["topic", "list", "--output", "yaml"]).is_err());
    }

    #[test]
    fn produce_flags() {
        let cli = parse(&[
            "produce",
            "t",
            "--key",
            "k",
            "--value",
            "v",
            "--acks",
            "leader",
            "--compression",
            "zstd",
        ])
        .expect("parses");
        let Command::Produce(p) = cli.command else {
            panic!("produce")
        };
        assert_eq!(p.acks, Acks::Leader);
        assert_eq!(p.compression, Compression::Zstd);
        assert_eq!(p.value.as_deref(), Some("v"));
        let cli = parse(&["produce", "t", "--key-separator", ":"]).expect("parses");
        let Command::Produce(p) = cli.command else {
            panic!("produce")
        };
        assert_eq!(p.acks, Acks::All, "acks default to all");
        assert_eq!(p.compression, Compression::None);
        assert!(parse(&["produce", "t", "--acks", "2"]).is_err());
        assert!(parse(&["produce", "t", "--compression", "gzip"]).is_err());
        assert!(parse(&["produce", "t", "--value", "v", "--key-separator", ":"]).is_err());
    }

    #[test]
    fn consume_start_positions_are_exclusive() {
        let cli = parse(&[
            "consume",
            "t",
            "--partition",
            "2",
            "--offset",
            "40",
            "--max-messages",
            "5",
            "--idle-timeout",
            "1m30s",
            "--output",
            "json",
        ])
        .expect("parses");
        let Command::Consume(c) = cli.command else {
            panic!("consume")
        };
        assert_eq!((c.partition, c.offset), (Some(2), Some(40)));
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(90)));
        assert_eq!(c.output, RecordFormat::Json);
        assert_eq!(c.max_messages, Some(5));
        assert!(
            parse(&["consume", "t", "--offset", "4"]).is_err(),
            "--offset needs --partition"
        );
        assert!(parse(&[
            "consume",
            "t",
            "--from-beginning",
            "--partition",
            "1",
            "--offset",
            "4"
        ])
        .is_err());
        assert!(parse(&[
            "consume",
            "t",
            "--from-beginning",
            "--from-datetime",
            "2024-01-01T00:00:00Z"
        ])
        .is_err());
        let cli =
            parse(&["consume", "t", "--from-datetime", "1970-01-01T00:00:01Z"]).expect("parses");
        let Command::Consume(c) = cli.command else {
            panic!("consume")
        };
        assert_eq!(c.from_datetime, Some(1000));
        assert!(parse(&["consume", "t", "--from-datetime", "yesterday"]).is_err());
        assert!(parse(&["consume", "t", "--idle-timeout", "soon"]).is_err());
    }
}
