//! Prometheus metrics of a node (served on `/metrics` in the text exposition format).
//!
//! Counters and histograms are updated on the request paths (one atomic add per request or
//! batch, never per record); per-partition gauges (leadership, Raft term, commit lag) are read
//! from the replicas when the endpoint is scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A per-partition gauge: name, help, and how to read it.
type Gauge = (&'static str, &'static str, fn(&PartitionGauge) -> u64);

/// One partition replica's state, as shown on `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionGauge {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// Whether this node leads it.
    pub leader: bool,
    /// Current Raft term.
    pub term: u64,
    /// High watermark (committed record offset).
    pub high_watermark: u64,
    /// Log end offset on this replica.
    pub log_end_offset: u64,
    /// Raft entries appended here but not yet committed.
    pub commit_lag: u64,
    /// First offset a consumer may read on this replica (moved by retention).
    pub log_start_offset: u64,
}

/// A consumer group's committed offset on one partition, as shown on `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupGauge {
    /// Group id.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Committed offset.
    pub committed: u64,
    /// High watermark minus committed offset, when the high watermark is known here.
    pub lag: Option<u64>,
}

/// The node's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Produce requests received.
    pub produce_requests: Counter,
    /// Produce requests that failed as a whole or for some partition.
    pub produce_errors: Counter,
    /// Records acknowledged.
    pub produce_records: Counter,
    /// Batch bytes acknowledged.
    pub produce_bytes: Counter,
    /// Time from receiving a produce request to answering it.
    pub produce_latency: Histogram,
    /// Fetch requests received (a stream counts once per response sent).
    pub fetch_requests: Counter,
    /// Bytes of batches returned by fetches.
    pub fetch_bytes: Counter,
    /// Time to answer a fetch (long-poll waits included).
    pub fetch_latency: Histogram,
    /// Requests refused or delayed by limits.
    pub throttled: Counter,
    /// The bounds on groups and peer connections (`docs/reliability.md`, "Bounds").
    pub bounds: Bounds,
    /// Bytes of whole segments deleted on this node's replicas below their log start
    /// (retention).
    pub retention_deleted_bytes: Counter,
    /// Partition replicas of this node whose Raft group stopped on a fatal error or failed to
    /// open (each failure, reopen attempts included).
    pub replica_failures: Counter,
    /// Elections this node started to take back the leadership of partitions it is the
    /// preferred leader of (`broker/rebalance.rs`).
    pub preferred_leader_campaigns: Counter,
    replicas_down: AtomicU64,
    connections: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("skein");
        let latency = || Histogram::new(exponential_buckets(0.000_1, 2.0, 18));
        let m = Metrics {
            produce_requests: Counter::default(),
            produce_errors: Counter::default(),
            produce_records: Counter::default(),
            produce_bytes: Counter::default(),
            produce_latency: latency(),
            fetch_requests: Counter::default(),
            fetch_bytes: Counter::default(),
            fetch_latency: latency(),
            throttled: Counter::default(),
            bounds: Bounds::default(),
            retention_deleted_bytes: Counter::default(),
            replica_failures: Counter::default(),
            preferred_leader_campaigns: Counter::default(),
            replicas_down: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            registry: Registry::default(),
        };
        registry.register(
            "produce_requests",
            "Produce requests received",
            m.produce_requests.clone(),
        );
        registry.register(
            "produce_errors",
            "Produce requests with an error",
            m.produce_errors.clone(),
        );
        registry.register(
            "produce_records",
            "Records acknowledged to producers",
            m.produce_records.clone(),
        );
        registry.register(
            "produce_bytes",
            "Batch bytes acknowledged to producers",
            m.produce_bytes.clone(),
        );
        registry.register(
            "produce_latency_seconds",
            "Time from receiving a produce request to answering it",
            m.produce_latency.clone(),
        );
        registry.register(
            "fetch_requests",
            "Fetch responses sent",
            m.fetch_requests.clone(),
        );
        registry.register(
            "fetch_bytes",
            "Batch bytes returned by fetches",
            m.fetch_bytes.clone(),
        );
        registry.register(
            "fetch_latency_seconds",
            "Time to answer a fetch, long-poll waits included",
            m.fetch_latency.clone(),
        );
        registry.register(
            "throttled_requests",
            "Requests refused or delayed by limits",
            m.throttled.clone(),
        );
        m.register_retention(&mut registry);
        registry.register(
            "replica_failures",
            "Partition replicas that stopped on a fatal error or failed to open (reopened with backoff)",
            m.replica_failures.clone(),
        );
        registry.register(
            "preferred_leader_campaigns",
            "Elections started to take back the leadership of partitions this node is the preferred leader of",
            m.preferred_leader_campaigns.clone(),
        );
        m.bounds.register(&mut registry);
        Metrics { registry, ..m }
    }

    /// Retention's metrics (`crate::retention`).
    fn register_retention(&self, registry: &mut Registry) {
        registry.register(
            "retention_deleted_bytes",
            "Bytes of segments deleted below the log start (retention), on every replica here",
            self.retention_deleted_bytes.clone(),
        );
    }

    /// Partition replicas out of service now (see `crate::supervise`).
    pub fn set_replicas_down(&self, n: usize) {
        self.replicas_down.store(n as u64, Ordering::Relaxed);
    }

    /// A client connection opened.
    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// A client connection closed.
    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Renders every metric, with the per-partition gauges given.
    pub fn render(
        &self,
        node_id: u64,
        partitions: &[PartitionGauge],
        groups: &[GroupGauge],
    ) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        // `encode` ends with "# EOF"; the gauges below go before it.
        if let Some(i) = out.rfind("# EOF") {
            out.truncate(i);
        }
        let w = &mut out;
        let node = format!("node=\"{node_id}\"");
        let connections = self.connections.load(Ordering::Relaxed);
        gauge(
            w,
            "skein_client_connections",
            "Open client connections.",
            [(String::new(), connections)],
        );
        gauge(
            w,
            "skein_partitions",
            "Partition replicas on this node.",
            [(node.clone(), partitions.len() as u64)],
        );
        gauge(
            w,
            "skein_replicas_down",
            "Partition replicas of this node out of service (stopped or failed to open).",
            [(node.clone(), self.replicas_down.load(Ordering::Relaxed))],
        );
        let leaders = partitions.iter().filter(|p| p.leader).count() as u64;
        gauge(
            w,
            "skein_partition_leaders",
            "Partitions this node leads.",
            [(node, leaders)],
        );
        let per_partition: [Gauge; 5] = [
            (
                "skein_partition_leader",
                "1 when this node leads the partition.",
                |p| u64::from(p.leader),
            ),
            (
                "skein_raft_term",
                "Current Raft term of the partition's group.",
                |p| p.term,
            ),
            (
                "skein_partition_high_watermark",
                "Committed record offset (exclusive).",
                |p| p.high_watermark,
            ),
            (
                "skein_partition_log_end_offset",
                "Next offset of this replica's log.",
                |p| p.log_end_offset,
            ),
            (
                "skein_raft_commit_lag",
                "Raft entries appended on this replica but not committed.",
                |p| p.commit_lag,
            ),
        ];
        for (name, help, f) in per_partition {
            let samples = partitions.iter().map(|p| {
                (
                    format!("topic=\"{}\",partition=\"{}\"", p.topic, p.partition),
                    f(p),
                )
            });
            gauge(w, name, help, samples);
        }
        retention_gauges(w, partitions);
        let group_labels = |g: &GroupGauge| {
            format!(
                "group=\"{}\",topic=\"{}\",partition=\"{}\"",
                escape(&g.group),
                g.topic,
                g.partition
            )
        };
        gauge(
            w,
            "skein_group_committed_offset",
            "Committed offset of a consumer group (groups coordinated by this node).",
            groups.iter().map(|g| (group_labels(g), g.committed)),
        );
        gauge(
            w,
            "skein_group_lag",
            "Records between a group's committed offset and the high watermark.",
            groups
                .iter()
                .filter_map(|g| g.lag.map(|l| (group_labels(g), l))),
        );
        out.push_str("# EOF\n");
        out
    }
}

/// Writes one gauge family: its HELP and TYPE lines, then a sample per `(labels, value)`.
fn gauge(w: &mut String, name: &str, help: &str, samples: impl IntoIterator<Item = (String, u64)>) {
    let _ = writeln!(w, "# HELP {name} {help}");
    let _ = writeln!(w, "# TYPE {name} gauge");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(w, "{name} {value}");
        } else {
            let _ = writeln!(w, "{name}{{{labels}}} {value}");
        }
    }
}

/// The per-partition gauges of retention.
fn retention_gauges(w: &mut String, partitions: &[PartitionGauge]) {
    gauge(
        w,
        "skein_log_start_offset",
        "First offset consumers may read on this replica (moved by retention).",
        partitions.iter().map(|p| {
            (
                format!("topic=\"{}\",partition=\"{}\"", p.topic, p.partition),
                p.log_start_offset,
            )
        }),
    );
}

/// Counters and gauges of the node's bounds (each limit's metric; the per-partition producer
/// gauges are rendered by [`Bounds::producer_gauges`]).
#[derive(Debug, Default)]
pub struct Bounds {
    /// Joins refused because the offsets partition has the most groups with members (native
    /// and Kafka classic groups).
    pub groups_refused: Counter,
    /// Joins refused because the group has the most members (native and Kafka classic groups).
    pub members_refused: Counter,
    /// Peer connections closed at accept because `limits.peer_connections_max` were open.
    pub peer_connections_refused: Counter,
    peer_connections: AtomicU64,
}

/// A per-partition producer gauge: name, help, and how to read it.
type ProducerGaugeDef = (&'static str, &'static str, fn(&ProducerGauge) -> u64);

/// A partition replica's idempotent-producer table, as shown on `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerGauge {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// Producer ids remembered.
    pub ids: u64,
    /// Producer ids forgotten after the expiry, since the replica opened.
    pub expired: u64,
    /// Producer ids forgotten beyond the per-partition maximum, since the replica opened.
    pub evicted: u64,
}

impl Bounds {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "groups_refused",
            "Group joins (native or Kafka) refused: the offsets partition has the most groups \
             with members",
            self.groups_refused.clone(),
        );
        registry.register(
            "group_members_refused",
            "Group joins (native or Kafka) refused: the group has the most members",
            self.members_refused.clone(),
        );
        registry.register(
            "peer_connections_refused",
            "Peer connections closed at accept: limits.peer_connections_max were open",
            self.peer_connections_refused.clone(),
        );
    }

    /// A peer connection opened.
    pub fn peer_connection_opened(&self) {
        self.peer_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// A peer connection closed.
    pub fn peer_connection_closed(&self) {
        self.peer_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// The bounds' gauges: open peer connections and each replica's producer table, as text
    /// lines to place before the exposition's `# EOF`.
    pub fn gauges(&self, producers: &[ProducerGauge]) -> String {
        let mut w = String::new();
        gauge(
            &mut w,
            "skein_peer_connections",
            "Open connections on the peer port.",
            [(String::new(), self.peer_connections.load(Ordering::Relaxed))],
        );
        let labels =
            |p: &ProducerGauge| format!("topic=\"{}\",partition=\"{}\"", p.topic, p.partition);
        let per_partition: [ProducerGaugeDef; 3] = [
            (
                "skein_producer_ids",
                "Idempotent producer ids the partition remembers.",
                |p| p.ids,
            ),
            (
                "skein_producer_ids_expired",
                "Producer ids forgotten after limits.producer_id_expiry, since the replica opened.",
                |p| p.expired,
            ),
            (
                "skein_producer_ids_evicted",
                "Producer ids forgotten beyond limits.producer_ids_per_partition_max (least \
                 recently used first), since the replica opened.",
                |p| p.evicted,
            ),
        ];
        for (name, help, f) in per_partition {
            gauge(
                &mut w,
                name,
                help,
                producers.iter().map(|p| (labels(p), f(p))),
            );
        }
        w
    }
}

/// `text` (a rendered exposition) with `lines` placed before its `# EOF`.
pub fn insert_before_eof(mut text: String, lines: &str) -> String {
    let at = text.rfind("# EOF").unwrap_or(text.len());
    text.insert_str(at, lines);
    text
}

/// Escapes a label value (group ids may hold quotes and backslashes).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_partition_gauges() {
        let m = Metrics::new();
        m.produce_requests.inc();
        m.produce_records.inc_by(1000);
        m.produce_latency.observe(0.002);
        let text = m.render(
            3,
            &[PartitionGauge {
                topic: "orders".into(),
                partition: 1,
                leader: true,
                term: 4,
                high_watermark: 10,
                log_end_offset: 12,
                commit_lag: 1,
                log_start_offset: 5,
            }],
            &[GroupGauge {
                group: "billing".into(),
                topic: "orders".into(),
                partition: 1,
                committed: 7,
                lag: Some(3),
            }],
        );
        assert!(
            text.contains("skein_group_lag{group=\"billing\",topic=\"orders\",partition=\"1\"} 3"),
            "{text}"
        );
        assert!(text.contains("skein_produce_requests_total 1"), "{text}");
        assert!(text.contains("skein_produce_records_total 1000"), "{text}");
        assert!(
            text.contains("skein_produce_latency_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains("skein_partition_leaders{node=\"3\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("skein_raft_term{topic=\"orders\",partition=\"1\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("skein_log_start_offset{topic=\"orders\",partition=\"1\"} 5"),
            "{text}"
        );
        m.retention_deleted_bytes.inc_by(4096);
        let text = m.render(3, &[], &[]);
        assert!(
            text.contains("skein_retention_deleted_bytes_total 4096"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn renders_the_bounds() {
        let m = Metrics::new();
        m.bounds.members_refused.inc();
        m.bounds.peer_connection_opened();
        let text = insert_before_eof(
            m.render(1, &[], &[]),
            &m.bounds.gauges(&[ProducerGauge {
                topic: "orders".into(),
                partition: 0,
                ids: 12,
                expired: 3,
                evicted: 1,
            }]),
        );
        for line in [
            "skein_group_members_refused_total 1",
            "skein_peer_connections 1",
            "skein_producer_ids{topic=\"orders\",partition=\"0\"} 12",
            "skein_producer_ids_expired{topic=\"orders\",partition=\"0\"} 3",
            "skein_producer_ids_evicted{topic=\"orders\",partition=\"0\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in {text}");
        }
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
