//! The history a fault run records: one JSON object per line, Jepsen style. Every operation
//! writes an `invoke` line when it starts and one completion line with the same `id` when it
//! ends: `ok` (it happened), `fail` (it certainly did not happen) or `info` (indeterminate: a
//! timeout or a lost connection, it may or may not have happened). Nemesis and health events are
//! single `info` lines.
//!
//! ```text
//! {"time_ms":812,"id":7,"process":"producer-1","type":"invoke","f":"produce","partition":2,"producer":1,"seq":40,"value":"1-2-40"}
//! {"time_ms":815,"id":7,"process":"producer-1","type":"ok","f":"produce","partition":2,"producer":1,"seq":40,"value":"1-2-40","offset":133}
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// What a line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The operation starts.
    Invoke,
    /// It happened.
    Ok,
    /// It certainly did not happen.
    Fail,
    /// Indeterminate, or a standalone event (nemesis, health).
    Info,
}

/// One record as a reader saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: u64,
    /// The record's value (UTF-8; the workload writes `"{producer}-{partition}-{seq}"`).
    pub value: String,
}

/// The operation and its fields. On an `invoke` line the result fields (`offset`, `records`..)
/// are absent; on the completion line they are filled where the outcome is `ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Op {
    /// An idempotent producer writes one unique value to one partition and waits for the ack.
    Produce {
        /// Partition written to.
        partition: u32,
        /// The producer instance: workload producer N's G-th instance is `N * 1000 + G` (a
        /// producer that saw a failed write is replaced by a new one).
        producer: u32,
        /// Per (producer, partition), 0, 1, 2..: invoked in this order, each after the previous
        /// one's send was queued (one producer instance keeps them in order).
        seq: u64,
        /// Unique value, `"{producer}-{partition}-{seq}"`.
        value: String,
        /// The acknowledged offset (on `ok`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    /// A group consumer's poll: the records it was handed (on `ok`).
    Poll {
        /// Consumer group.
        group: String,
        /// Records delivered, in delivery order.
        #[serde(default)]
        records: Vec<Seen>,
    },
    /// A group consumer commits the offsets of the next records to process.
    Commit {
        /// Consumer group.
        group: String,
        /// Partition -> next offset (in JSON: `[[partition, offset], ..]`).
        #[serde(with = "pairs")]
        offsets: BTreeMap<u32, u64>,
    },
    /// The group's committed offsets as the coordinator reported them (on `ok`).
    Committed {
        /// Consumer group.
        group: String,
        /// Partition -> committed offset (in JSON: `[[partition, offset], ..]`).
        #[serde(default, with = "pairs")]
        offsets: BTreeMap<u32, u64>,
    },
    /// After every fault is healed: one node's whole copy of one partition, read from its log
    /// start up to its high watermark, directly from that node.
    Read {
        /// Node read from.
        node: u64,
        /// Partition.
        partition: u32,
        /// The node's log start offset (on `ok`).
        #[serde(default)]
        log_start: u64,
        /// The node's high watermark (on `ok`); `records` ends right before it.
        #[serde(default)]
        high_watermark: u64,
        /// Every record from `log_start` to `high_watermark` (on `ok`).
        #[serde(default)]
        records: Vec<Seen>,
    },
    /// A fault starts (`info`, `detail` says what) or ends (`info`, name ends in `:heal`).
    Nemesis {
        /// `kill-leader`, `pause-leader`, `isolate-leader`, `asymmetric`, `kill-all`,
        /// `corrupt-follower`, and `NAME:heal` when it is undone.
        name: String,
        /// Which nodes, which partition, which files.
        detail: String,
    },
    /// Whether a majority of the nodes is up and connected, written whenever it changes
    /// (`info`). Availability is only judged while it is true.
    Health {
        /// A majority is up, running and connected.
        majority: bool,
    },
}

/// A partition -> offset map as a list of pairs: JSON object keys are strings, and serde's
/// `flatten` (used by [`Event`]) does not turn them back into numbers.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        m: &BTreeMap<u32, u64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let v: Vec<(u32, u64)> = m.iter().map(|(k, v)| (*k, *v)).collect();
        v.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<u32, u64>, D::Error> {
        Ok(Vec::<(u32, u64)>::deserialize(d)?.into_iter().collect())
    }
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the run started.
    pub time_ms: u64,
    /// Pairs an `invoke` with its completion; unique per operation.
    pub id: u64,
    /// Who did it: `producer-N`, `consumer-N`, `observer`, `reader`, `nemesis`.
    pub process: String,
    /// Invoke or outcome.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The operation.
    #[serde(flatten)]
    pub op: Op,
    /// Why it failed or is indeterminate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads a history file.
pub fn read(path: &Path) -> anyhow::Result<Vec<Event>> {
    let f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("open history {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let e: Event = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
        out.push(e);
    }
    Ok(out)
}

/// Appends events to a history file, shared by every task of a run. Each line is written and
/// flushed as it happens, so a crashed run leaves its history behind.
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<Mutex<RecorderInner>>,
    start: Instant,
}

#[derive(Debug)]
struct RecorderInner {
    out: std::io::BufWriter<std::fs::File>,
    next_id: u64,
}

impl Recorder {
    /// Creates (truncates) the history file.
    pub fn create(path: &Path) -> anyhow::Result<Recorder> {
        let f = std::fs::File::create(path)
            .map_err(|e| anyhow::anyhow!("create history {}: {e}", path.display()))?;
        Ok(Recorder {
            inner: Arc::new(Mutex::new(RecorderInner {
                out: std::io::BufWriter::new(f),
                next_id: 0,
            })),
            start: Instant::now(),
        })
    }

    /// Milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Writes one line; `id` is the operation's, or a new one when `None`. Returns the id.
    fn line(
        &self,
        id: Option<u64>,
        process: &str,
        kind: Kind,
        op: Op,
        error: Option<String>,
    ) -> u64 {
        let mut inner = self.inner.lock().expect("invariant: recorder lock");
        let id = id.unwrap_or_else(|| {
            inner.next_id += 1;
            inner.next_id - 1
        });
        let e = Event {
            time_ms: self.now_ms(),
            id,
            process: process.to_owned(),
            kind,
            op,
            error,
        };
        // A history that cannot be written is a broken run: fail loudly.
        let line = serde_json::to_string(&e).expect("invariant: events serialize");
        writeln!(inner.out, "{line}")
            .and_then(|()| inner.out.flush())
            .expect("write history line");
        id
    }

    /// Records the start of `op`; returns the id to complete it with.
    pub fn invoke(&self, process: &str, op: &Op) -> u64 {
        self.line(None, process, Kind::Invoke, op.clone(), None)
    }

    /// Records the outcome of operation `id`.
    pub fn complete(&self, id: u64, process: &str, kind: Kind, op: Op, error: Option<String>) {
        self.line(Some(id), process, kind, op, error);
    }

    /// Records a standalone `info` event (nemesis, health).
    pub fn event(&self, process: &str, op: Op) {
        self.line(None, process, Kind::Info, op, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.jsonl");
        let r = Recorder::create(&path).expect("create");
        let op = Op::Produce {
            partition: 2,
            producer: 1,
            seq: 40,
            value: "1-2-40".into(),
            offset: None,
        };
        let id = r.invoke("producer-1", &op);
        r.complete(
            id,
            "producer-1",
            Kind::Ok,
            Op::Produce {
                partition: 2,
                producer: 1,
                seq: 40,
                value: "1-2-40".into(),
                offset: Some(133),
            },
            None,
        );
        r.event("nemesis", Op::Health { majority: false });
        let commit = Op::Commit {
            group: "g".into(),
            offsets: [(0, 5), (2, 7)].into_iter().collect(),
        };
        r.event("consumer-0", commit.clone());
        let events = read(&path).expect("read");
        assert_eq!(events.len(), 4);
        assert_eq!(events[3].op, commit);
        assert_eq!(events[0].kind, Kind::Invoke);
        assert_eq!(events[1].id, id);
        assert!(matches!(
            events[1].op,
            Op::Produce {
                offset: Some(133),
                ..
            }
        ));
        assert_eq!(events[2].op, Op::Health { majority: false });
        let text = std::fs::read_to_string(&path).expect("text");
        assert!(text.contains(r#""type":"ok","f":"produce""#) || text.contains(r#""f":"produce""#));
    }
}
