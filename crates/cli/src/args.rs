//! The command line: verbs and flags (see "Interfaces users see" in the architecture guide).

use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use skein_client::{
    Acks, AssignmentStrategy, Compression, OffsetReset, TopicPartitions, DEFAULT_BROKERS,
};

use crate::parse::{parse_config_pair, parse_datetime_ms, parse_duration, parse_topic_partitions};

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

/// Top-level verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Write records to a topic: one record from --value, or one per line of standard input.
    Produce(ProduceArgs),
    /// Read records from a topic and print them.
    Consume(ConsumeArgs),
    /// Consumer groups: list, describe (lag), delete, reset offsets (replay).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Inspect the cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

/// `skein group ...`
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups.
    List(OutputArgs),
    /// Show a group's members, assignment, and committed offset, end offset and lag per
    /// partition.
    Describe {
        /// Group id.
        group: String,
        /// Output format.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete a group and its committed offsets (the group must have no active members).
    Delete {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets (replay or skip). Prints the plan and changes nothing
    /// unless --execute is given. The group must have no active members.
    Reset(GroupResetArgs),
}

/// `skein group reset`
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .args(["to_earliest", "to_latest", "to_offset", "to_datetime", "by_duration", "shift_by"])
))]
pub struct GroupResetArgs {
    /// Group id.
    pub group: String,
    /// Topic to reset, all its partitions (`orders`) or some (`orders:0,2`); repeatable.
    #[arg(long = "topic", value_name = "TOPIC[:P,P..]", required = true, value_parser = parse_topic_partitions)]
    pub topics: Vec<TopicPartitions>,
    /// To the earliest offset still in the log (replay everything).
    #[arg(long)]
    pub to_earliest: bool,
    /// To the end of the log (skip everything not yet processed).
    #[arg(long)]
    pub to_latest: bool,
    /// To this offset.
    #[arg(long, value_name = "N")]
    pub to_offset: Option<u64>,
    /// To the first record at or after this time, RFC 3339 (2024-05-01T09:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_datetime_ms)]
    pub to_datetime: Option<i64>,
    /// To the first record at or after now minus this (e.g. 1h30m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub by_duration: Option<Duration>,
    /// By N records from the committed offset (negative: back).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// Apply the plan (without it, this is a dry run).
    #[arg(long)]
    pub execute: bool,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
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
    /// Change settings of a topic, e.g. `--config retention.ms=86400000 --config
    /// retention.bytes=1GiB` (-1: no limit). Settings not named keep their values; retention
    /// changes apply at each node's next retention check (`retention_check_interval`).
    AlterConfig(TopicAlterConfigArgs),
}

/// `skein topic alter-config`
#[derive(Debug, Args)]
pub struct TopicAlterConfigArgs {
    /// Topic name.
    pub name: String,
    /// A topic setting to change, KEY=VALUE (repeatable, at least one): retention.ms,
    /// retention.bytes, segment.bytes, segment.ms, flush.policy, flush.interval.ms,
    /// max.batch.bytes.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config_pair, required = true)]
    pub config: Vec<(String, String)>,
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
    /// Batch compression (Kafka's codecs): none, gzip, snappy, lz4 or zstd.
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
    /// Consume as a member of this consumer group: read the partitions the group assigns,
    /// starting at the group's committed offsets, and commit the position (the next record
    /// not printed) of every assigned partition as it goes and on exit, also of partitions
    /// where nothing arrived.
    #[arg(long, value_name = "G", conflicts_with_all = ["partition", "offset", "from_datetime"])]
    pub group: Option<String>,
    /// With --group: the assignment strategy asked of the coordinator.
    #[arg(long, value_name = "STRATEGY", requires = "group", value_parser = parse_strategy)]
    pub strategy: Option<AssignmentStrategy>,
    /// Start at the earliest offset still in the log (default: only new records). With
    /// --group: only for partitions the group has no commit for. Short for --reset earliest.
    #[arg(long, conflicts_with_all = ["offset", "from_datetime", "reset"])]
    pub from_beginning: bool,
    /// Where to start in a partition without a position: with --group, one the group has no
    /// commit for; without, every partition unless --offset or --from-datetime says where.
    /// Also where to go when a position falls out of the log (retention). `earliest`, `latest`
    /// (the default: only new records) or `none` (such a partition is an error).
    #[arg(long, value_name = "earliest|latest|none", value_parser = parse_reset)]
    pub reset: Option<OffsetReset>,
    /// Read only this partition (default: all partitions of the topic).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Start at this offset (needs --partition); it must be in the log, between the log start
    /// offset and the high watermark (see `skein topic describe`).
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

fn parse_strategy(s: &str) -> Result<AssignmentStrategy, String> {
    s.parse()
}

fn parse_reset(s: &str) -> Result<OffsetReset, String> {
    s.parse()
}

impl ConsumeArgs {
    /// The reset policy in effect: `--reset`, or earliest with `--from-beginning`, else latest.
    pub fn reset_policy(&self) -> OffsetReset {
        match (self.reset, self.from_beginning) {
            (Some(r), _) => r,
            (None, true) => OffsetReset::Earliest,
            (None, false) => OffsetReset::Latest,
        }
    }
}

impl GroupResetArgs {
    /// The chosen strategy (clap makes exactly one of the flags present).
    pub fn strategy(&self) -> skein_client::ResetStrategy {
        use skein_client::ResetStrategy as R;
        if let Some(n) = self.to_offset {
            R::ToOffset(n)
        } else if let Some(ms) = self.to_datetime {
            R::ToDatetime(ms)
        } else if let Some(d) = self.by_duration {
            R::ByDuration(d)
        } else if let Some(n) = self.shift_by {
            R::ShiftBy(n)
        } else if self.to_latest {
            R::Latest
        } else {
            R::Earliest
        }
    }
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
    fn topic_alter_config_takes_at_least_one_config() {
        let cli = parse(&[
            "topic",
            "alter-config",
            "orders",
            "--config",
            "retention.ms=60000",
            "--config",
            "retention.bytes=-1",
        ])
        .expect("parses");
        let Command::Topic(TopicCommand::AlterConfig(a)) = cli.command else {
            panic!("topic alter-config")
        };
        assert_eq!(a.name, "orders");
        assert_eq!(
            a.config,
            vec![
                ("retention.ms".to_string(), "60000".to_string()),
                ("retention.bytes".to_string(), "-1".to_string())
            ]
        );
        assert!(parse(&["topic", "alter-config", "orders"]).is_err());
    }

    #[test]
    fn read_verbs_take_output_json() {
        for args in [
            &["topic", "list", "--output", "json"][..],
            &["topic", "describe", "t", "--output", "json"],
            &["cluster", "status", "--output", "json"],
            &["group", "list", "--output", "json"],
            &["group", "describe", "g", "--output", "json"],
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
        assert!(parse(&["produce", "t", "--compression", "brotli"]).is_err());
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

    #[test]
    fn consume_with_a_group() {
        let cli =
            parse(&["consume", "t", "--group", "billing", "--from-beginning"]).expect("parses");
        let Command::Consume(c) = cli.command else {
            panic!("consume")
        };
        assert_eq!(c.group.as_deref(), Some("billing"));
        assert!(c.from_beginning);
        let cli = parse(&[
            "consume",
            "t",
            "--group",
            "g",
            "--strategy",
            "cooperative-sticky",
        ])
        .expect("parses");
        let Command::Consume(c) = cli.command else {
            panic!("consume")
        };
        assert_eq!(c.strategy, Some(AssignmentStrategy::CooperativeSticky));
        assert!(parse(&["consume", "t", "--group", "g", "--partition", "1"]).is_err());
        for (flags, expected) in [
            (&[][..], OffsetReset::Latest),
            (&["--from-beginning"], OffsetReset::Earliest),
            (&["--reset", "earliest"], OffsetReset::Earliest),
            (&["--reset", "latest"], OffsetReset::Latest),
            (&["--reset", "none"], OffsetReset::Error),
        ] {
            let mut args = vec!["consume", "t", "--group", "g"];
            args.extend_from_slice(flags);
            let cli = parse(&args).unwrap_or_else(|e| panic!("{flags:?}: {e}"));
            let Command::Consume(c) = cli.command else {
                panic!("consume")
            };
            assert_eq!(c.reset_policy(), expected, "{flags:?}");
        }
        assert!(parse(&["consume", "t", "--reset", "smallest"]).is_err());
        assert!(
            parse(&["consume", "t", "--from-beginning", "--reset", "none"]).is_err(),
            "--from-beginning is short for --reset earliest"
        );
        assert!(
            parse(&["consume", "t", "--strategy", "range"]).is_err(),
            "needs --group"
        );
    }

    #[test]
    fn group_reset_takes_topics_partitions_and_one_strategy() {
        use skein_client::ResetStrategy;
        let cli = parse(&[
            "group",
            "reset",
            "g",
            "--topic",
            "orders:0,2",
            "--topic",
            "payments",
            "--shift-by",
            "-10",
        ])
        .expect("parses");
        let Command::Group(GroupCommand::Reset(r)) = cli.command else {
            panic!("group reset")
        };
        assert_eq!(r.group, "g");
        assert_eq!(
            r.topics,
            vec![
                TopicPartitions::some("orders", [0, 2]),
                TopicPartitions::all("payments")
            ]
        );
        assert_eq!(r.strategy(), ResetStrategy::ShiftBy(-10));
        assert!(!r.execute, "dry run by default");
        for (flags, expected) in [
            (&["--to-earliest"][..], ResetStrategy::Earliest),
            (&["--to-latest"], ResetStrategy::Latest),
            (&["--to-offset", "42"], ResetStrategy::ToOffset(42)),
            (
                &["--to-datetime", "2024-05-01T12:00:00Z"],
                ResetStrategy::ToDatetime(1_714_564_800_000),
            ),
            (
                &["--by-duration", "1h30m"],
                ResetStrategy::ByDuration(Duration::from_secs(5400)),
            ),
        ] {
            let mut args = vec!["group", "reset", "g", "--topic", "t", "--execute"];
            args.extend_from_slice(flags);
            let cli = parse(&args).unwrap_or_else(|e| panic!("{flags:?}: {e}"));
            let Command::Group(GroupCommand::Reset(r)) = cli.command else {
                panic!("group reset")
            };
            assert_eq!(r.strategy(), expected);
            assert!(r.execute);
        }
        // Exactly one strategy, and a topic.
        assert!(parse(&["group", "reset", "g", "--topic", "t"]).is_err());
        assert!(parse(&[
            "group",
            "reset",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--to-latest"
        ])
        .is_err());
        assert!(parse(&["group", "reset", "g", "--to-earliest"]).is_err());
        assert!(parse(&["group", "reset", "g", "--topic", "t:x", "--to-earliest"]).is_err());
    }
}
