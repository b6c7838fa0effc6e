//! Configuration of the client, the producer and the consumer, with defaults and `validate()`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{ClientError, Result};

/// The default broker address: a single local node started with `skein-node` and no arguments.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9650";

/// How to reach the cluster, and how patiently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Bootstrap brokers, `HOST:PORT` each. Any one of them is enough: the rest of the cluster
    /// is learned from metadata.
    pub brokers: Vec<String>,
    /// Limit on one request, not counting a fetch's long-poll wait.
    pub request_timeout: Duration,
    /// Limit on establishing a TCP + HTTP/2 connection to one broker.
    pub connect_timeout: Duration,
    /// First wait before retrying a retryable error; doubled on each further attempt.
    pub retry_backoff_min: Duration,
    /// Longest wait between two attempts.
    pub retry_backoff_max: Duration,
    /// Retries after the first attempt of a request (0 = no retries).
    pub max_retries: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            brokers: vec![DEFAULT_BROKERS.to_string()],
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry_backoff_min: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(2),
            max_retries: 10,
        }
    }
}

impl ClientConfig {
    /// Defaults with the given bootstrap brokers, `HOST:PORT[,HOST:PORT..]`.
    pub fn new(brokers: &str) -> Self {
        ClientConfig {
            brokers: parse_broker_list(brokers),
            ..ClientConfig::default()
        }
    }

    /// Checks every field; the error names the field and what to do.
    pub fn validate(&self) -> Result<()> {
        if self.brokers.is_empty() {
            return Err(invalid(
                "brokers",
                "is empty; give at least one HOST:PORT (default 127.0.0.1:9650)",
            ));
        }
        for b in &self.brokers {
            validate_host_port(b).map_err(|reason| invalid("brokers", reason))?;
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "must be greater than zero"));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect_timeout", "must be greater than zero"));
        }
        if self.retry_backoff_min.is_zero() {
            return Err(invalid("retry_backoff_min", "must be greater than zero"));
        }
        if self.retry_backoff_min > self.retry_backoff_max {
            return Err(invalid(
                "retry_backoff_min",
                format!(
                    "({:?}) must not exceed retry_backoff_max ({:?})",
                    self.retry_backoff_min, self.retry_backoff_max
                ),
            ));
        }
        Ok(())
    }
}

/// Splits `a:1, b:2,,c:3` into `["a:1", "b:2", "c:3"]`.
pub fn parse_broker_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .collect()
}

fn validate_host_port(s: &str) -> std::result::Result<(), String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "entry `{s}` is not HOST:PORT (e.g. 127.0.0.1:9650)"
        ));
    };
    if host.is_empty() || host.contains("://") || s.contains('/') {
        return Err(format!(
            "entry `{s}` is not HOST:PORT (e.g. 127.0.0.1:9650; no scheme)"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(format!("entry `{s}` has an invalid port `{port}`")),
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ClientError {
    ClientError::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

/// When the broker acknowledges a produce request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Once appended by the partition leader (not yet replicated: may be lost on failover).
    Leader,
    /// Once committed by the partition's Raft majority (fsynced on a majority). The default.
    #[default]
    All,
}

impl FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "leader" | "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(format!("unknown acks `{other}`: use `leader` or `all`")),
        }
    }
}

impl fmt::Display for Acks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Acks::Leader => "leader",
            Acks::All => "all",
        })
    }
}

/// Compression codec of the batches a producer sends (the broker stores them as they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy (Kafka's xerial framing).
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard (fastest level).
    Zstd,
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "snappy" => Ok(Compression::Snappy),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!(
                "unknown compression `{other}`: use `none`, `gzip`, `snappy`, `lz4` or `zstd`"
            )),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        })
    }
}

/// Default of [`ProducerConfig::request_bytes_max`]: half the broker's default limit on a
/// request (16 MiB). A broker that advertises a lower limit lowers it further.
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 8 * 1024 * 1024;

/// How a [`crate::Producer`] batches, compresses and acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// When the broker acknowledges.
    pub acks: Acks,
    /// Codec applied to each batch's records.
    pub compression: Compression,
    /// How long a batch may wait for more records before it is sent. Zero sends as soon as the
    /// previous request for the partition has completed.
    pub linger: Duration,
    /// A batch is closed once it reaches this size; a record larger than this alone gets a
    /// batch of its own.
    pub batch_bytes_max: usize,
    /// Limit on the bytes of records buffered and in flight; `send` waits for space
    /// (backpressure) once it is reached.
    pub buffer_bytes_max: usize,
    /// Limit on one produce request to one broker: its batches' bytes plus the framing of
    /// each partition and batch (what the broker's gRPC decoder counts). Partitions led by the
    /// same broker share requests up to this size; more go in further requests. At least
    /// `batch_bytes_max`; a single record larger than that is sent alone.
    ///
    /// Brokers advertise their own limit (`limits.request_bytes_max`, 16 MiB by default) in
    /// their metadata answers, and the producer uses the smaller of this and the smallest
    /// advertised limit less headroom (a sixteenth of it, at most 64 KiB), so a value above
    /// the brokers' limit is harmless. Only a broker that does not advertise its limit (an
    /// older version) relies on this value alone; a request it refuses fails its records with
    /// [`crate::ClientError::RequestTooLarge`].
    pub request_bytes_max: usize,
    /// Idempotence: the producer gets a producer id and stamps sequence numbers, so retries
    /// never write a record twice. On by default.
    pub idempotence: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            compression: Compression::None,
            linger: Duration::from_millis(5),
            batch_bytes_max: 64 * 1024,
            buffer_bytes_max: 32 * 1024 * 1024,
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            idempotence: true,
        }
    }
}

impl ProducerConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.batch_bytes_max < 128 {
            return Err(invalid("batch_bytes_max", "must be at least 128 bytes"));
        }
        if self.buffer_bytes_max < self.batch_bytes_max {
            return Err(invalid(
                "buffer_bytes_max",
                "must be at least batch_bytes_max",
            ));
        }
        if self.request_bytes_max < self.batch_bytes_max {
            return Err(invalid(
                "request_bytes_max",
                format!(
                    "({}) must be at least batch_bytes_max ({})",
                    self.request_bytes_max, self.batch_bytes_max
                ),
            ));
        }
        // The semaphore that bounds the buffer counts permits in u32.
        if self.buffer_bytes_max > u32::MAX as usize / 2 {
            return Err(invalid("buffer_bytes_max", "must be below 2 GiB"));
        }
        if self.linger > Duration::from_secs(60) {
            return Err(invalid("linger", "must be at most 60 s"));
        }
        Ok(())
    }
}

/// Where a consumer starts in a partition it has no position for, or whose position fell out
/// of the log (retention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The log start offset.
    Earliest,
    /// The high watermark: only records produced from now on. The default (like Kafka).
    #[default]
    Latest,
    /// Guess nothing (`none` in the CLI): a partition without a position is
    /// [`ClientError::NoStartPosition`], a position outside the log is
    /// [`ClientError::OffsetOutOfRange`].
    Error,
}

impl FromStr for OffsetReset {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "earliest" => Ok(OffsetReset::Earliest),
            "latest" => Ok(OffsetReset::Latest),
            "none" | "error" => Ok(OffsetReset::Error),
            other => Err(format!(
                "unknown reset policy `{other}`: use `earliest`, `latest` or `none`"
            )),
        }
    }
}

impl fmt::Display for OffsetReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
            OffsetReset::Error => "none",
        })
    }
}

/// How a [`crate::Consumer`] fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Long-poll: how long the broker may wait for `fetch_min_bytes` before answering.
    pub fetch_wait_max: Duration,
    /// The broker answers as soon as this many bytes are available.
    pub fetch_min_bytes: u32,
    /// Limit on one fetch response from one broker.
    pub fetch_bytes_max: u32,
    /// Limit per partition in one fetch (at least one batch is returned anyway).
    pub partition_fetch_bytes_max: u32,
    /// Start position for partitions without one.
    pub offset_reset: OffsetReset,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            fetch_wait_max: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_bytes_max: 16 * 1024 * 1024,
            partition_fetch_bytes_max: 1024 * 1024,
            offset_reset: OffsetReset::Latest,
        }
    }
}

impl ConsumerConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.fetch_wait_max > Duration::from_secs(60) {
            return Err(invalid("fetch_wait_max", "must be at most 60 s"));
        }
        if self.fetch_bytes_max == 0 || self.partition_fetch_bytes_max == 0 {
            return Err(invalid(
                "fetch_bytes_max",
                "fetch limits must be greater than zero",
            ));
        }
        if self.partition_fetch_bytes_max > self.fetch_bytes_max {
            return Err(invalid(
                "partition_fetch_bytes_max",
                "must not exceed fetch_bytes_max",
            ));
        }
        Ok(())
    }
}

/// How the group coordinator divides the subscribed topics' partitions among the members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AssignmentStrategy {
    /// Per topic, consecutive ranges of partitions to the members in order (Kafka's range).
    #[default]
    Range,
    /// All partitions dealt out to the members in turn.
    RoundRobin,
    /// Incremental: members keep the partitions that do not move, so a rebalance revokes only
    /// the partitions that change owner and kept partitions keep their positions.
    CooperativeSticky,
}

impl AssignmentStrategy {
    /// The name the CLI and the docs use.
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentStrategy::Range => "range",
            AssignmentStrategy::RoundRobin => "round-robin",
            AssignmentStrategy::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// True for the incremental strategy (only moved partitions are revoked).
    pub fn is_cooperative(self) -> bool {
        matches!(self, AssignmentStrategy::CooperativeSticky)
    }
}

impl FromStr for AssignmentStrategy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "range" => Ok(AssignmentStrategy::Range),
            "round-robin" | "roundrobin" => Ok(AssignmentStrategy::RoundRobin),
            "cooperative-sticky" | "sticky" => Ok(AssignmentStrategy::CooperativeSticky),
            other => Err(format!(
                "unknown assignment strategy `{other}`: use `range`, `round-robin` or `cooperative-sticky`"
            )),
        }
    }
}

impl fmt::Display for AssignmentStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shortest session timeout the coordinator accepts.
pub const SESSION_TIMEOUT_MIN: Duration = Duration::from_secs(1);
/// Longest session timeout the coordinator accepts.
pub const SESSION_TIMEOUT_MAX: Duration = Duration::from_secs(300);

/// How a [`crate::GroupConsumer`] takes part in its consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConsumerConfig {
    /// The group id (non-empty).
    pub group: String,
    /// Static membership: a stable id (per process instance, e.g. the pod name) that survives
    /// restarts without a rebalance. `None`: a dynamic member.
    pub group_instance_id: Option<String>,
    /// Shown in `skein group describe`.
    pub client_id: String,
    /// The coordinator removes a member that has not heartbeated for this long (1 s..5 min).
    pub session_timeout: Duration,
    /// How long the coordinator waits for every member to join again in a rebalance; members
    /// that have not rejoined by then are removed. A member rejoins from `poll`, so this also
    /// bounds the time between two polls during a rebalance.
    pub rebalance_timeout: Duration,
    /// Time between heartbeats; `None`: a third of the session timeout.
    pub heartbeat_interval: Option<Duration>,
    /// The assignment strategy asked of the coordinator.
    pub strategy: AssignmentStrategy,
    /// Commit the position of every owned partition (the next record not handed out) every
    /// `auto_commit_interval` (from `poll`), before partitions are revoked, and on `close`;
    /// and the start position of a partition the group has no commit for as soon as
    /// `auto_offset_reset` has fixed it, also when no record arrives there.
    pub enable_auto_commit: bool,
    /// Interval of auto-commits.
    pub auto_commit_interval: Duration,
    /// Start position of an assigned partition the group has no commit for (and where to go
    /// when a position falls out of the log): earliest, latest (the default, like Kafka), or
    /// [`OffsetReset::Error`] to refuse such a partition with [`ClientError::NoStartPosition`].
    /// Replaces `fetch.offset_reset`.
    pub auto_offset_reset: OffsetReset,
    /// Send LeaveGroup on close (so the group rebalances at once). `None`: yes for dynamic
    /// members, no for static ones (a static member that restarts within the session timeout
    /// gets its partitions back without a rebalance).
    pub leave_group_on_close: Option<bool>,
    /// How partitions are fetched.
    pub fetch: ConsumerConfig,
}

impl GroupConsumerConfig {
    /// Defaults for `group`.
    pub fn new(group: impl Into<String>) -> Self {
        GroupConsumerConfig {
            group: group.into(),
            group_instance_id: None,
            client_id: "skein-client".to_string(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            heartbeat_interval: None,
            strategy: AssignmentStrategy::default(),
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            auto_offset_reset: OffsetReset::Latest,
            leave_group_on_close: None,
            fetch: ConsumerConfig::default(),
        }
    }

    /// The heartbeat interval in effect.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval.unwrap_or(self.session_timeout / 3)
    }

    /// Whether `close` sends LeaveGroup.
    pub fn leaves_on_close(&self) -> bool {
        self.leave_group_on_close
            .unwrap_or(self.group_instance_id.is_none())
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.group.trim().is_empty() {
            return Err(invalid("group", "is empty; name the consumer group"));
        }
        if self.group_instance_id.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(
                "group_instance_id",
                "is empty; use None for a dynamic member",
            ));
        }
        if !(SESSION_TIMEOUT_MIN..=SESSION_TIMEOUT_MAX).contains(&self.session_timeout) {
            return Err(invalid(
                "session_timeout",
                format!("({:?}) must be between 1 s and 5 min", self.session_timeout),
            ));
        }
        if self.rebalance_timeout.is_zero()
            || self.rebalance_timeout > Duration::from_millis(u64::from(u32::MAX))
        {
            return Err(invalid(
                "rebalance_timeout",
                "must be greater than zero and fit in u32 milliseconds",
            ));
        }
        let hb = self.heartbeat_interval();
        if hb.is_zero() || hb >= self.session_timeout {
            return Err(invalid(
                "heartbeat_interval",
                "must be greater than zero and below session_timeout (a third of it is usual)",
            ));
        }
        if self.enable_auto_commit && self.auto_commit_interval.is_zero() {
            return Err(invalid("auto_commit_interval", "must be greater than zero"));
        }
        self.fetch.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ClientConfig::default().validate().expect("valid");
        ProducerConfig::default().validate().expect("valid");
        ConsumerConfig::default().validate().expect("valid");
        assert_eq!(ClientConfig::default().brokers, vec!["127.0.0.1:9650"]);
    }

    #[test]
    fn broker_lists_are_parsed_and_checked() {
        assert_eq!(
            ClientConfig::new(" a:1, b:2,,").brokers,
            vec!["a:1".to_string(), "b:2".to_string()]
        );
        for bad in ["", "nohost", "http://a:1", "a:port", "a:0", ":9650"] {
            let e = ClientConfig::new(bad).validate().expect_err(bad);
            assert!(e.to_string().contains("brokers"), "{bad}: {e}");
        }
        ClientConfig::new("[::1]:9650").validate().expect("ipv6 ok");
    }

    #[test]
    fn request_bytes_max_must_hold_a_batch() {
        let c = ProducerConfig {
            batch_bytes_max: 1 << 20,
            request_bytes_max: 512 << 10,
            ..ProducerConfig::default()
        };
        let e = c.validate().expect_err("a request smaller than a batch");
        assert!(e.to_string().contains("request_bytes_max"), "{e}");
        assert!(ProducerConfig::default().request_bytes_max < 16 << 20);
    }

    #[test]
    fn backoff_bounds_are_checked() {
        let c = ClientConfig {
            retry_backoff_min: Duration::from_secs(5),
            retry_backoff_max: Duration::from_secs(1),
            ..ClientConfig::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn enums_parse_from_cli_words() {
        assert_eq!("all".parse::<Acks>(), Ok(Acks::All));
        assert_eq!("LEADER".parse::<Acks>(), Ok(Acks::Leader));
        assert!("two".parse::<Acks>().is_err());
        assert_eq!("zstd".parse::<Compression>(), Ok(Compression::Zstd));
        assert_eq!("lz4".parse::<Compression>(), Ok(Compression::Lz4));
        assert_eq!("gzip".parse::<Compression>(), Ok(Compression::Gzip));
        assert_eq!("Snappy".parse::<Compression>(), Ok(Compression::Snappy));
        assert!("brotli".parse::<Compression>().is_err());
        assert_eq!(Compression::Lz4.to_string(), "lz4");
        for (word, strategy) in [
            ("range", AssignmentStrategy::Range),
            ("round-robin", AssignmentStrategy::RoundRobin),
            ("ROUND_ROBIN", AssignmentStrategy::RoundRobin),
            ("cooperative-sticky", AssignmentStrategy::CooperativeSticky),
        ] {
            assert_eq!(word.parse::<AssignmentStrategy>(), Ok(strategy));
        }
        assert!("sticky-ish".parse::<AssignmentStrategy>().is_err());
        for reset in [
            OffsetReset::Earliest,
            OffsetReset::Latest,
            OffsetReset::Error,
        ] {
            assert_eq!(reset.to_string().parse::<OffsetReset>(), Ok(reset));
        }
        assert_eq!("NONE".parse::<OffsetReset>(), Ok(OffsetReset::Error));
        assert!("smallest".parse::<OffsetReset>().is_err());
        assert_eq!(
            AssignmentStrategy::CooperativeSticky.to_string(),
            "cooperative-sticky"
        );
    }

    #[test]
    fn group_config_defaults_and_bounds() {
        let c = GroupConsumerConfig::new("g");
        c.validate().expect("defaults are valid");
        assert_eq!(c.heartbeat_interval(), c.session_timeout / 3);
        assert!(c.leaves_on_close());
        let static_member = GroupConsumerConfig {
            group_instance_id: Some("pod-1".into()),
            ..GroupConsumerConfig::new("g")
        };
        assert!(!static_member.leaves_on_close(), "static members stay");
        for bad in [
            GroupConsumerConfig::new(""),
            GroupConsumerConfig {
                session_timeout: Duration::from_millis(999),
                ..GroupConsumerConfig::new("g")
            },
            GroupConsumerConfig {
                session_timeout: Duration::from_secs(301),
                ..GroupConsumerConfig::new("g")
            },
            GroupConsumerConfig {
                heartbeat_interval: Some(Duration::from_secs(10)),
                ..GroupConsumerConfig::new("g")
            },
            GroupConsumerConfig {
                group_instance_id: Some(String::new()),
                ..GroupConsumerConfig::new("g")
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
