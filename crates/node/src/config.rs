//! Node configuration: a commented TOML file, then `SKEIN_*` environment variables, then flags.
//!
//! Top-level settings have flags and variables of their own (`--node-id` / `SKEIN_NODE_ID`).
//! Settings inside a section are set by `SKEIN_<SECTION>_<KEY>`, e.g.
//! `SKEIN_TOPIC_DEFAULTS_RETENTION=3d` or `SKEIN_LIMITS_CONNECTIONS_MAX=200`. Sizes take human
//! units (`"256 MiB"`, `"1GiB"`, `4096`), durations too (`"7d"`, `"1h30m"`, `"2ms"`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use skein_storage::{FlushPolicy, LogConfig};

use crate::error::{NodeError, Result};

/// An example configuration file with every setting, commented (`skein-node --print-config`).
pub const EXAMPLE_TOML: &str = include_str!("../skein-node.example.toml");

/// Sections whose keys can be set with `SKEIN_<SECTION>_<KEY>`.
const SECTIONS: [&str; 4] = ["topic_defaults", "limits", "raft", "kafka"];

/// `SKEIN_*` variables of flags (clap reads them) that look like section variables.
const FLAG_VARIABLES: [&str; 1] = ["kafka_addr"];

/// The node's settings, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// This node's id (>= 1), unique in the cluster.
    pub node_id: u64,
    /// Where partition logs and Raft state live.
    pub data_dir: PathBuf,
    /// Listen address of the client gRPC API.
    pub client_addr: SocketAddr,
    /// Listen address of the peer (Raft) gRPC API.
    pub peer_addr: SocketAddr,
    /// Listen address of the HTTP endpoints (`/metrics`, `/healthz`, `/readyz`).
    pub http_addr: SocketAddr,
    /// The client address other nodes and clients should use to reach this node.
    pub advertised_client_addr: String,
    /// Listen address of the Kafka protocol listener.
    pub kafka_addr: SocketAddr,
    /// The Kafka address Kafka clients are told to use for this node (Metadata responses). A
    /// port of 0 stands for the port the listener was bound to.
    pub advertised_kafka_addr: String,
    /// Limits of the Kafka listener (section `[kafka]`).
    pub kafka: skein_kafka::KafkaConfig,
    /// Every node of the cluster (this one included): node id -> peer address `HOST:PORT`.
    pub peers: BTreeMap<u64, String>,
    /// Defaults for topics created without explicit settings.
    pub topic_defaults: TopicDefaults,
    /// Limits on requests and connections.
    pub limits: Limits,
    /// Raft timing.
    pub raft: RaftTiming,
}

/// Defaults for new topics.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicDefaults {
    /// Partitions of a topic created without a count.
    pub partitions: u32,
    /// Replication factor of a topic created without one (capped by the node count).
    pub replication_factor: u32,
    /// The partition log settings every topic starts from.
    pub log: LogConfig,
    /// How often the node enforces retention on the partitions it leads (and deletes, on every
    /// replica, the segments below the log start).
    pub retention_check_interval: Duration,
}

/// Limits that keep a node's memory bounded under load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest gRPC request accepted.
    pub request_bytes_max: usize,
    /// Requests served at once on the client API; more wait (backpressure).
    pub inflight_requests_max: usize,
    /// Client connections accepted at once.
    pub connections_max: usize,
    /// Largest fetch response.
    pub fetch_bytes_max: u32,
    /// Longest long-poll wait of a fetch.
    pub fetch_wait_max: Duration,
    /// Longest a produce request waits for replication.
    pub produce_timeout: Duration,
    /// A partition forgets an idempotent producer this long (by the log's clock) after its
    /// newest batch.
    pub producer_id_expiry: Duration,
    /// Most idempotent producers a partition remembers (least recently used forgotten first).
    pub producer_ids_per_partition_max: u64,
    /// Connections open at once on the peer port; one more is closed at accept.
    pub peer_connections_max: usize,
}

/// Raft timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTiming {
    /// A peer node silent for this long plus `heartbeat_interval` counts as dead: the groups it
    /// led elect new leaders.
    pub election_timeout_min: Duration,
    /// With `election_timeout_min`, sets the pause between the election attempts of a group's
    /// voters (`max - min`).
    pub election_timeout_max: Duration,
    /// Interval between node heartbeats (one per peer node, for all groups at once).
    pub heartbeat_interval: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        let peer_addr: SocketAddr = ([127, 0, 0, 1], 9651).into();
        NodeConfig {
            node_id: 1,
            data_dir: PathBuf::from("./skein-data"),
            client_addr: ([127, 0, 0, 1], 9650).into(),
            peer_addr,
            http_addr: ([127, 0, 0, 1], 9652).into(),
            advertised_client_addr: "127.0.0.1:9650".into(),
            kafka_addr: ([127, 0, 0, 1], 9092).into(),
            advertised_kafka_addr: "127.0.0.1:9092".into(),
            kafka: skein_kafka::KafkaConfig::default(),
            peers: BTreeMap::from([(1, peer_addr.to_string())]),
            topic_defaults: TopicDefaults {
                partitions: 3,
                replication_factor: 3,
                // fsync as soon as the group's flusher is free: appends that arrive during an
                // fsync share the next one, and no write waits for a timer.
                log: LogConfig {
                    flush: FlushPolicy::EveryBatch,
                    ..LogConfig::default()
                },
                retention_check_interval: Duration::from_secs(300),
            },
            limits: Limits {
                request_bytes_max: 16 << 20,
                inflight_requests_max: 1024,
                connections_max: 1024,
                fetch_bytes_max: 8 << 20,
                fetch_wait_max: Duration::from_secs(30),
                produce_timeout: Duration::from_secs(30),
                producer_id_expiry: Duration::from_secs(7 * 24 * 3600),
                producer_ids_per_partition_max: 10_000,
                peer_connections_max: 256,
            },
            raft: RaftTiming {
                // Groups are quiescent (crates/raft/src/liveness.rs): these set the node
                // heartbeat (one message per peer for all groups, plus a scan of a table of the
                // local groups) and how long a silent node is given (min + heartbeat) before its
                // groups elect elsewhere. Longer values cost less idle CPU with thousands of
                // partitions, at the price of slower failover: see
                // docs/design/003-quiescent-groups.md.
                election_timeout_min: Duration::from_millis(300),
                election_timeout_max: Duration::from_millis(600),
                heartbeat_interval: Duration::from_millis(100),
            },
        }
    }
}

/// Settings given on the command line (or through their `SKEIN_*` variables); `None` = not given.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// `--node-id`.
    pub node_id: Option<u64>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--client-addr`.
    pub client_addr: Option<String>,
    /// `--peer-addr`.
    pub peer_addr: Option<String>,
    /// `--http-addr`.
    pub http_addr: Option<String>,
    /// `--advertised-client-addr`.
    pub advertised_client_addr: Option<String>,
    /// `--kafka-addr`.
    pub kafka_addr: Option<String>,
    /// `--advertised-kafka-addr`.
    pub advertised_kafka_addr: Option<String>,
    /// `--peers 1=HOST:PORT,2=HOST:PORT`.
    pub peers: Option<String>,
}

/// The file form: every field optional, strings for human units.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<u64>,
    data_dir: Option<PathBuf>,
    client_addr: Option<String>,
    peer_addr: Option<String>,
    http_addr: Option<String>,
    advertised_client_addr: Option<String>,
    kafka_addr: Option<String>,
    advertised_kafka_addr: Option<String>,
    peers: Option<PeersValue>,
    #[serde(default)]
    topic_defaults: FileTopicDefaults,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    raft: FileRaft,
    #[serde(default)]
    kafka: FileKafka,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PeersValue {
    List(String),
    Table(BTreeMap<String, String>),
}

/// A size: a number of bytes or a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// A duration: a number of milliseconds or a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Dur {
    Millis(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTopicDefaults {
    partitions: Option<u32>,
    replication_factor: Option<u32>,
    retention: Option<Dur>,
    retention_bytes: Option<Size>,
    retention_check_interval: Option<Dur>,
    segment_bytes: Option<Size>,
    preallocate_step: Option<Size>,
    segment_age: Option<Dur>,
    batch_bytes_max: Option<Size>,
    flush_policy: Option<String>,
    flush_interval: Option<Dur>,
    flush_bytes: Option<Size>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    request_bytes_max: Option<Size>,
    inflight_requests_max: Option<usize>,
    connections_max: Option<usize>,
    fetch_bytes_max: Option<Size>,
    fetch_wait_max: Option<Dur>,
    produce_timeout: Option<Dur>,
    producer_id_expiry: Option<Dur>,
    producer_ids_per_partition_max: Option<u64>,
    peer_connections_max: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKafka {
    connections_max: Option<usize>,
    in_flight_max: Option<usize>,
    frame_bytes_max: Option<Size>,
    idle_timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRaft {
    election_timeout_min: Option<Dur>,
    election_timeout_max: Option<Dur>,
    heartbeat_interval: Option<Dur>,
}

fn invalid(msg: impl Into<String>) -> NodeError {
    NodeError::Config(msg.into())
}

/// Parses `"256 MiB"`, `"1GiB"`, `"10kb"`, `"4096"` into bytes (binary units for both `KiB` and
/// `KB`, as Kafka users expect of memory-like sizes).
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.replace('_', "").parse().map_err(|_| {
        invalid(format!(
            "`{text}` is not a size: expected a number with an optional unit, like \"256 MiB\""
        ))
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(invalid(format!(
                "`{text}`: unknown size unit `{other}` (use B, KiB, MiB, GiB, TiB)"
            )))
        }
    };
    let v = num * mult as f64;
    if !(0.0..=u64::MAX as f64).contains(&v) {
        return Err(invalid(format!("`{text}` is out of range")));
    }
    Ok(v as u64)
}

/// Parses `"7d"`, `"1h30m"`, `"250ms"` (and a bare number of milliseconds).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    humantime::parse_duration(t).map_err(|e| {
        invalid(format!(
            "`{text}` is not a duration ({e}); write it like \"7d\", \"1h30m\" or \"250ms\""
        ))
    })
}

fn size(v: &Option<Size>, key: &str) -> Result<Option<u64>> {
    match v {
        None => Ok(None),
        Some(Size::Bytes(b)) => Ok(Some(*b)),
        Some(Size::Text(t)) => parse_size(t)
            .map(Some)
            .map_err(|e| invalid(format!("{key}: {e}"))),
    }
}

fn dur(v: &Option<Dur>, key: &str) -> Result<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(Dur::Millis(ms)) => Ok(Some(Duration::from_millis(*ms))),
        Some(Dur::Text(t)) => parse_duration(t)
            .map(Some)
            .map_err(|e| invalid(format!("{key}: {e}"))),
    }
}

/// Parses `1=host:9651,2=host:9651`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| invalid(format!("peers: `{part}` should be ID=HOST:PORT")))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| invalid(format!("peers: `{id}` is not a node id")))?;
        if out.insert(id, addr.trim().to_owned()).is_some() {
            return Err(invalid(format!("peers: node {id} is listed twice")));
        }
    }
    Ok(out)
}

fn parse_addr(text: &str, key: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    // An IPv4 address where the name has one (`localhost` may resolve to ::1 first): the
    // defaults of advertised addresses are taken from these.
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map(Iterator::collect)
        .unwrap_or_default();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| {
            invalid(format!(
                "{key}: `{text}` is not an address to listen on (HOST:PORT)"
            ))
        })
}

/// Applies `SKEIN_<SECTION>_<KEY>` variables onto the parsed TOML table.
fn overlay_env(table: &mut toml::Table, vars: impl Iterator<Item = (String, String)>) {
    for (k, v) in vars {
        let Some(rest) = k.strip_prefix("SKEIN_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        // Top-level settings whose variables start like a section (`SKEIN_KAFKA_ADDR` is the
        // `--kafka-addr` flag's, not `[kafka] addr`).
        if FLAG_VARIABLES.contains(&rest.as_str()) {
            continue;
        }
        for section in SECTIONS {
            if let Some(key) = rest.strip_prefix(section).and_then(|r| r.strip_prefix('_')) {
                let value = if let Ok(i) = v.parse::<i64>() {
                    toml::Value::Integer(i)
                } else {
                    toml::Value::String(v.clone())
                };
                let entry = table
                    .entry(section.to_owned())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(t) = entry {
                    t.insert(key.to_owned(), value);
                }
            }
        }
    }
}

impl NodeConfig {
    /// Builds the configuration: defaults, then the file (if any), then `SKEIN_<SECTION>_<KEY>`
    /// variables from `env`, then `overrides` (flags and their top-level variables).
    pub fn load(
        overrides: &Overrides,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut table = match &overrides.config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(format!("cannot read config file {}: {e}", path.display()))
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| invalid(format!("config file {}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        overlay_env(&mut table, env);
        let file: FileConfig = table
            .try_into()
            .map_err(|e| invalid(format!("configuration: {e}")))?;
        let mut c = NodeConfig::default();

        let client = overrides.client_addr.clone().or(file.client_addr);
        let peer = overrides.peer_addr.clone().or(file.peer_addr);
        let http = overrides.http_addr.clone().or(file.http_addr);
        let kafka = overrides.kafka_addr.clone().or(file.kafka_addr.clone());
        if let Some(a) = &client {
            c.client_addr = parse_addr(a, "client_addr")?;
        }
        if let Some(a) = &peer {
            c.peer_addr = parse_addr(a, "peer_addr")?;
        }
        if let Some(a) = &http {
            c.http_addr = parse_addr(a, "http_addr")?;
        }
        let advertised = overrides.advertised_kafka_addr.clone();
        kafka_addresses(&mut c, kafka, advertised.or(file.advertised_kafka_addr))?;
        if let Some(id) = overrides.node_id.or(file.node_id) {
            c.node_id = id;
        }
        if let Some(d) = overrides.data_dir.clone().or(file.data_dir) {
            c.data_dir = d;
        }
        c.advertised_client_addr = match overrides
            .advertised_client_addr
            .clone()
            .or(file.advertised_client_addr)
        {
            Some(a) => a,
            None => client.unwrap_or_else(|| c.client_addr.to_string()),
        };
        let peers = match (&overrides.peers, file.peers) {
            (Some(p), _) => Some(parse_peers(p)?),
            (None, Some(PeersValue::List(p))) => Some(parse_peers(&p)?),
            (None, Some(PeersValue::Table(t))) => {
                let mut out = BTreeMap::new();
                for (k, v) in t {
                    let id = k
                        .parse()
                        .map_err(|_| invalid(format!("peers: `{k}` is not a node id")))?;
                    out.insert(id, v);
                }
                Some(out)
            }
            (None, None) => None,
        };
        c.peers = match peers {
            Some(p) => p,
            // A single-node cluster of this node alone.
            None => BTreeMap::from([(c.node_id, peer.unwrap_or_else(|| c.peer_addr.to_string()))]),
        };

        let td = &file.topic_defaults;
        let d = &mut c.topic_defaults;
        if let Some(p) = td.partitions {
            d.partitions = p;
        }
        if let Some(r) = td.replication_factor {
            d.replication_factor = r;
        }
        if let Some(r) = dur(&td.retention, "topic_defaults.retention")? {
            d.log.retention.time = Some(r);
        }
        if let Some(b) = size(&td.retention_bytes, "topic_defaults.retention_bytes")? {
            d.log.retention.bytes = Some(b);
        }
        if let Some(i) = dur(
            &td.retention_check_interval,
            "topic_defaults.retention_check_interval",
        )? {
            d.retention_check_interval = i;
        }
        if let Some(b) = size(&td.segment_bytes, "topic_defaults.segment_bytes")? {
            d.log.segment_bytes_max = b;
        }
        if let Some(b) = size(&td.preallocate_step, "topic_defaults.preallocate_step")? {
            d.log.preallocate_step_bytes = b;
        }
        if let Some(a) = dur(&td.segment_age, "topic_defaults.segment_age")? {
            d.log.segment_age_max = Some(a);
        }
        if let Some(b) = size(&td.batch_bytes_max, "topic_defaults.batch_bytes_max")? {
            d.log.batch_bytes_max = u32::try_from(b)
                .map_err(|_| invalid("topic_defaults.batch_bytes_max must be below 4 GiB"))?;
        }
        let interval = dur(&td.flush_interval, "topic_defaults.flush_interval")?;
        let bytes = size(&td.flush_bytes, "topic_defaults.flush_bytes")?;
        d.log.flush = flush_policy(td.flush_policy.as_deref(), interval, bytes, d.log.flush)?;

        let l = &file.limits;
        if let Some(b) = size(&l.request_bytes_max, "limits.request_bytes_max")? {
            c.limits.request_bytes_max = b as usize;
        }
        if let Some(n) = l.inflight_requests_max {
            c.limits.inflight_requests_max = n;
        }
        if let Some(n) = l.connections_max {
            c.limits.connections_max = n;
        }
        if let Some(b) = size(&l.fetch_bytes_max, "limits.fetch_bytes_max")? {
            c.limits.fetch_bytes_max = u32::try_from(b)
                .map_err(|_| invalid("limits.fetch_bytes_max must be below 4 GiB"))?;
        }
        if let Some(w) = dur(&l.fetch_wait_max, "limits.fetch_wait_max")? {
            c.limits.fetch_wait_max = w;
        }
        if let Some(w) = dur(&l.produce_timeout, "limits.produce_timeout")? {
            c.limits.produce_timeout = w;
        }
        if let Some(e) = dur(&l.producer_id_expiry, "limits.producer_id_expiry")? {
            c.limits.producer_id_expiry = e;
        }
        if let Some(n) = l.producer_ids_per_partition_max {
            c.limits.producer_ids_per_partition_max = n;
        }
        if let Some(n) = l.peer_connections_max {
            c.limits.peer_connections_max = n;
        }
        kafka_settings(&file.kafka, &mut c.kafka)?;
        let r = &file.raft;
        if let Some(v) = dur(&r.election_timeout_min, "raft.election_timeout_min")? {
            c.raft.election_timeout_min = v;
        }
        if let Some(v) = dur(&r.election_timeout_max, "raft.election_timeout_max")? {
            c.raft.election_timeout_max = v;
        }
        if let Some(v) = dur(&r.heartbeat_interval, "raft.heartbeat_interval")? {
            c.raft.heartbeat_interval = v;
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks the settings and the relations between them.
    pub fn validate(&self) -> Result<()> {
        self.validate_kafka()?;
        self.validate_flush()?;
        if self.node_id == 0 {
            return Err(invalid("node_id must be at least 1"));
        }
        if !self.peers.contains_key(&self.node_id) {
            return Err(invalid(format!(
                "peers must include this node ({}); got {}",
                self.node_id,
                self.peers
                    .keys()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
        if self.peers.contains_key(&0) {
            return Err(invalid("peers: node ids start at 1"));
        }
        for (id, addr) in &self.peers {
            if addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(invalid(format!(
                    "peers: node {id}'s address `{addr}` should be HOST:PORT"
                )));
            }
        }
        if self.advertised_client_addr.rsplit_once(':').is_none() {
            return Err(invalid(format!(
                "advertised_client_addr `{}` should be HOST:PORT",
                self.advertised_client_addr
            )));
        }
        let d = &self.topic_defaults;
        if d.partitions == 0 {
            return Err(invalid("topic_defaults.partitions must be at least 1"));
        }
        if d.retention_check_interval.is_zero() {
            return Err(invalid(
                "topic_defaults.retention_check_interval must be positive",
            ));
        }
        if d.replication_factor == 0 {
            return Err(invalid(
                "topic_defaults.replication_factor must be at least 1",
            ));
        }
        d.log
            .validate()
            .map_err(|e| invalid(format!("topic_defaults: {e}")))?;
        let l = &self.limits;
        if l.inflight_requests_max == 0 || l.connections_max == 0 {
            return Err(invalid(
                "limits: inflight_requests_max and connections_max must be at least 1",
            ));
        }
        if l.producer_id_expiry.is_zero()
            || l.producer_ids_per_partition_max == 0
            || l.peer_connections_max == 0
        {
            return Err(invalid(
                "limits: producer_id_expiry, producer_ids_per_partition_max and \
                 peer_connections_max must be positive",
            ));
        }
        if (l.request_bytes_max as u64) < u64::from(d.log.batch_bytes_max) {
            return Err(invalid(format!(
                "limits.request_bytes_max ({}) must be at least topic_defaults.batch_bytes_max ({})",
                l.request_bytes_max, d.log.batch_bytes_max
            )));
        }
        let r = &self.raft;
        if r.heartbeat_interval.is_zero() || r.heartbeat_interval >= r.election_timeout_min {
            return Err(invalid(
                "raft.heartbeat_interval must be positive and below raft.election_timeout_min",
            ));
        }
        if r.election_timeout_min >= r.election_timeout_max {
            return Err(invalid(
                "raft.election_timeout_min must be below raft.election_timeout_max",
            ));
        }
        Ok(())
    }
}

/// Sets the Kafka listen and advertised addresses. The advertised default is the resolved
/// listen address, not its text: Kafka clients are told an IP, not `localhost` (which some
/// resolve to ::1 first).
fn kafka_addresses(
    c: &mut NodeConfig,
    listen: Option<String>,
    advertised: Option<String>,
) -> Result<()> {
    if let Some(a) = &listen {
        c.kafka_addr = parse_addr(a, "kafka_addr")?;
    }
    c.advertised_kafka_addr = advertised.unwrap_or_else(|| c.kafka_addr.to_string());
    Ok(())
}

/// Applies the `[kafka]` section onto `k`.
fn kafka_settings(f: &FileKafka, k: &mut skein_kafka::KafkaConfig) -> Result<()> {
    if let Some(n) = f.connections_max {
        k.connections_max = n;
    }
    if let Some(n) = f.in_flight_max {
        k.in_flight_max = n;
    }
    if let Some(b) = size(&f.frame_bytes_max, "kafka.frame_bytes_max")? {
        k.frame_bytes_max =
            usize::try_from(b).map_err(|_| invalid("kafka.frame_bytes_max is out of range"))?;
    }
    if let Some(d) = dur(&f.idle_timeout, "kafka.idle_timeout")? {
        k.idle_timeout = d;
    }
    Ok(())
}

impl RaftTiming {
    /// Checks a flush policy against the election timeout: a group-commit interval must stay
    /// below half of `raft.election_timeout_min`. A follower acknowledges an append only once it
    /// is durable, so a longer interval would stall replication and make leaders look dead
    /// while they wait for fsyncs. Node defaults and per-topic settings both go through here;
    /// the error names the limit.
    pub fn check_flush(&self, flush: &FlushPolicy) -> std::result::Result<(), String> {
        if let FlushPolicy::GroupCommit { interval, .. } = *flush {
            if interval.saturating_mul(2) >= self.election_timeout_min {
                return Err(format!(
                    "a group-commit interval of {interval:?} must be below half of \
                     raft.election_timeout_min ({:?}), so below {:?}: followers acknowledge \
                     appends only once fsynced",
                    self.election_timeout_min,
                    self.election_timeout_min / 2
                ));
            }
        }
        Ok(())
    }
}

impl NodeConfig {
    /// Checks the default flush policy against the election timeout
    /// ([`RaftTiming::check_flush`]).
    fn validate_flush(&self) -> Result<()> {
        self.raft
            .check_flush(&self.topic_defaults.log.flush)
            .map_err(|e| invalid(format!("topic_defaults.flush_interval: {e}")))
    }

    /// Checks the Kafka listener's settings: its limits, and an advertised address that a
    /// client can connect to.
    fn validate_kafka(&self) -> Result<()> {
        self.kafka.validate().map_err(|e| invalid(e.to_string()))?;
        let a = &self.advertised_kafka_addr;
        let Some((host, port)) = a.rsplit_once(':') else {
            return Err(invalid(format!(
                "advertised_kafka_addr `{a}` should be HOST:PORT"
            )));
        };
        if port.parse::<u16>().is_err() {
            return Err(invalid(format!(
                "advertised_kafka_addr `{a}`: `{port}` is not a port"
            )));
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
        {
            return Err(invalid(format!(
                "advertised_kafka_addr `{a}` is not an address clients can connect to; set --advertised-kafka-addr when --kafka-addr listens on all interfaces"
            )));
        }
        Ok(())
    }
}

/// Builds a flush policy from its name and parameters.
pub fn flush_policy(
    name: Option<&str>,
    interval: Option<Duration>,
    bytes: Option<u64>,
    current: FlushPolicy,
) -> Result<FlushPolicy> {
    let (cur_interval, cur_bytes) = match current {
        FlushPolicy::GroupCommit { interval, bytes } => (interval, bytes),
        _ => match FlushPolicy::default() {
            FlushPolicy::GroupCommit { interval, bytes } => (interval, bytes),
            _ => (Duration::from_millis(2), 1 << 20),
        },
    };
    let name = match name {
        Some(n) => n,
        None => match current {
            FlushPolicy::EveryBatch => "every-batch",
            FlushPolicy::GroupCommit { .. } => "group-commit",
            FlushPolicy::Never => "never",
        },
    };
    Ok(match name {
        "every-batch" => FlushPolicy::EveryBatch,
        "group-commit" => FlushPolicy::GroupCommit {
            interval: interval.unwrap_or(cur_interval),
            bytes: bytes.unwrap_or(cur_bytes),
        },
        "never" => FlushPolicy::Never,
        other => {
            return Err(invalid(format!(
                "flush policy `{other}` is unknown: use every-batch, group-commit or never"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(o: &Overrides, env: &[(&str, &str)]) -> Result<NodeConfig> {
        NodeConfig::load(o, env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn no_arguments_give_a_single_node_on_localhost() {
        let c = load(&Overrides::default(), &[]).expect("defaults");
        assert_eq!(c, NodeConfig::default());
        assert_eq!(c.client_addr.port(), 9650);
        assert_eq!(c.peer_addr.port(), 9651);
        assert_eq!(c.http_addr.port(), 9652);
        assert_eq!(c.kafka_addr.port(), 9092);
        assert_eq!(c.advertised_kafka_addr, "127.0.0.1:9092");
        assert!(
            EXAMPLE_TOML.contains("kafka_addr = \"127.0.0.1:9092\"")
                && EXAMPLE_TOML.contains("[kafka]")
        );
        assert_eq!(c.data_dir, PathBuf::from("./skein-data"));
        assert_eq!(c.peers, BTreeMap::from([(1, "127.0.0.1:9651".to_string())]));
    }

    #[test]
    fn the_example_file_parses_and_matches_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("skein.toml");
        std::fs::write(&path, EXAMPLE_TOML).expect("write");
        let o = Overrides {
            config_file: Some(path),
            ..Overrides::default()
        };
        let c = load(&o, &[]).expect("example parses");
        assert_eq!(c, NodeConfig::default());
    }

    #[test]
    fn bounds_come_from_the_environment_and_must_be_positive() {
        let c = load(
            &Overrides::default(),
            &[
                ("SKEIN_LIMITS_PRODUCER_ID_EXPIRY", "1h"),
                ("SKEIN_LIMITS_PRODUCER_IDS_PER_PARTITION_MAX", "50"),
                ("SKEIN_LIMITS_PEER_CONNECTIONS_MAX", "8"),
            ],
        )
        .expect("valid");
        assert_eq!(c.limits.producer_id_expiry, Duration::from_secs(3600));
        assert_eq!(c.limits.producer_ids_per_partition_max, 50);
        assert_eq!(c.limits.peer_connections_max, 8);
        for var in [
            "SKEIN_LIMITS_PRODUCER_ID_EXPIRY",
            "SKEIN_LIMITS_PRODUCER_IDS_PER_PARTITION_MAX",
            "SKEIN_LIMITS_PEER_CONNECTIONS_MAX",
        ] {
            assert!(
                matches!(
                    load(&Overrides::default(), &[(var, "0")]),
                    Err(NodeError::Config(_))
                ),
                "{var}=0 accepted"
            );
        }
    }

    #[test]
    fn a_group_commit_interval_near_the_election_timeout_is_refused() {
        let env = [
            ("SKEIN_TOPIC_DEFAULTS_FLUSH_POLICY", "group-commit"),
            ("SKEIN_TOPIC_DEFAULTS_FLUSH_INTERVAL", "200ms"),
        ];
        let e = load(&Overrides::default(), &env).expect_err("interval too long");
        assert!(e.to_string().contains("election_timeout_min"), "{e}");
        let env = [
            ("SKEIN_TOPIC_DEFAULTS_FLUSH_POLICY", "group-commit"),
            ("SKEIN_TOPIC_DEFAULTS_FLUSH_INTERVAL", "5ms"),
        ];
        let c = load(&Overrides::default(), &env).expect("short interval");
        assert!(matches!(
            c.topic_defaults.log.flush,
            FlushPolicy::GroupCommit { interval, .. } if interval == Duration::from_millis(5)
        ));
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("skein.toml");
        std::fs::write(
            &path,
            r#"
node_id = 2
peers = "1=a:9651,2=b:9651,3=c:9651"
[topic_defaults]
partitions = 6
retention = "3d"
retention_check_interval = "30s"
segment_bytes = "64 MiB"
preallocate_step = "1 MiB"
flush_policy = "every-batch"
[limits]
connections_max = 10
"#,
        )
        .expect("write");
        let o = Overrides {
            config_file: Some(path),
            node_id: Some(3),
            ..Overrides::default()
        };
        let c = load(
            &o,
            &[
                ("SKEIN_TOPIC_DEFAULTS_PARTITIONS", "12"),
                ("SKEIN_LIMITS_FETCH_WAIT_MAX", "5s"),
                ("OTHER", "x"),
            ],
        )
        .expect("loads");
        assert_eq!(c.node_id, 3, "flag wins over file");
        assert_eq!(c.topic_defaults.partitions, 12, "env wins over file");
        assert_eq!(
            c.topic_defaults.log.retention.time,
            Some(Duration::from_secs(3 * 86400))
        );
        assert_eq!(c.topic_defaults.log.segment_bytes_max, 64 << 20);
        assert_eq!(
            c.topic_defaults.retention_check_interval,
            Duration::from_secs(30)
        );
        assert_eq!(c.topic_defaults.log.preallocate_step_bytes, 1 << 20);
        assert_eq!(c.topic_defaults.log.flush, FlushPolicy::EveryBatch);
        assert_eq!(c.limits.connections_max, 10);
        assert_eq!(c.limits.fetch_wait_max, Duration::from_secs(5));
        assert_eq!(c.peers.len(), 3);
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        let err =
            |o: Overrides, env: &[(&str, &str)]| load(&o, env).expect_err("invalid").to_string();
        let e = err(
            Overrides {
                node_id: Some(4),
                peers: Some("1=a:1,2=b:2".into()),
                ..Overrides::default()
            },
            &[],
        );
        assert!(e.contains("peers must include this node (4)"), "{e}");
        let e = err(
            Overrides {
                client_addr: Some("nowhere".into()),
                ..Overrides::default()
            },
            &[],
        );
        assert!(e.contains("client_addr"), "{e}");
        let e = err(
            Overrides::default(),
            &[("SKEIN_TOPIC_DEFAULTS_SEGMENT_BYTES", "12 parsecs")],
        );
        assert!(e.contains("unknown size unit"), "{e}");
        let e = err(
            Overrides::default(),
            &[("SKEIN_TOPIC_DEFAULTS_FLUSH_POLICY", "sometimes")],
        );
        assert!(e.contains("every-batch, group-commit or never"), "{e}");
        let e = err(
            Overrides::default(),
            &[("SKEIN_RAFT_HEARTBEAT_INTERVAL", "1s")],
        );
        assert!(e.contains("heartbeat_interval"), "{e}");
        let e = err(
            Overrides {
                peers: Some("x=1".into()),
                ..Overrides::default()
            },
            &[],
        );
        assert!(e.contains("not a node id"), "{e}");
    }

    #[test]
    fn kafka_listener_settings_from_file_env_and_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("skein.toml");
        std::fs::write(
            &path,
            r#"
kafka_addr = "localhost:19092"
[kafka]
connections_max = 7
in_flight_max = 3
frame_bytes_max = "1 MiB"
idle_timeout = "90s"
"#,
        )
        .expect("write");
        let o = Overrides {
            config_file: Some(path),
            ..Overrides::default()
        };
        let c = load(
            &o,
            &[
                ("SKEIN_KAFKA_IN_FLIGHT_MAX", "4"),
                // The --kafka-addr flag's variable (clap reads it), not `[kafka] addr`.
                ("SKEIN_KAFKA_ADDR", "127.0.0.1:1"),
            ],
        )
        .expect("loads");
        assert_eq!(c.kafka_addr, "127.0.0.1:19092".parse().expect("addr"));
        assert_eq!(
            c.advertised_kafka_addr, "127.0.0.1:19092",
            "the advertised default is the resolved IPv4 address, not `localhost`"
        );
        assert_eq!(c.kafka.connections_max, 7);
        assert_eq!(c.kafka.in_flight_max, 4, "env wins over file");
        assert_eq!(c.kafka.frame_bytes_max, 1 << 20);
        assert_eq!(c.kafka.idle_timeout, Duration::from_secs(90));
        let flags = Overrides {
            kafka_addr: Some("0.0.0.0:9092".into()),
            advertised_kafka_addr: Some("10.1.2.3:9092".into()),
            ..Overrides::default()
        };
        let c = load(&flags, &[]).expect("loads");
        assert_eq!(c.kafka_addr.port(), 9092);
        assert_eq!(c.advertised_kafka_addr, "10.1.2.3:9092");
    }

    #[test]
    fn kafka_settings_are_checked() {
        let e = load(
            &Overrides {
                kafka_addr: Some("0.0.0.0:9092".into()),
                ..Overrides::default()
            },
            &[],
        )
        .expect_err("an unspecified address cannot be advertised")
        .to_string();
        assert!(e.contains("--advertised-kafka-addr"), "{e}");
        let e = load(
            &Overrides::default(),
            &[("SKEIN_KAFKA_CONNECTIONS_MAX", "0")],
        )
        .expect_err("zero connections")
        .to_string();
        assert!(e.contains("connections_max"), "{e}");
        let e = load(
            &Overrides {
                advertised_kafka_addr: Some("nohost".into()),
                ..Overrides::default()
            },
            &[],
        )
        .expect_err("no port")
        .to_string();
        assert!(e.contains("HOST:PORT"), "{e}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("256 MiB").expect("size"), 256 << 20);
        assert_eq!(parse_size("1GiB").expect("size"), 1 << 30);
        assert_eq!(parse_size("4096").expect("size"), 4096);
        assert_eq!(parse_size("1.5k").expect("size"), 1536);
        assert!(parse_size("MiB").is_err());
        assert_eq!(
            parse_duration("7d").expect("dur"),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(
            parse_duration("1h30m").expect("dur"),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_duration("250").expect("dur"),
            Duration::from_millis(250)
        );
        assert!(parse_duration("soon").is_err());
    }
}
