//! Checks a recorded history (see `history.rs`) for what a replicated log must never do, and
//! reports per partition what it found.
//!
//! The final log of a partition is what the `read` operations saw after every fault was healed:
//! each node's last successful read of its whole copy. Where nodes disagree, a value counts as
//! "in the final log" at an offset if any node holds it there, and the disagreement itself is
//! reported as divergence. Offsets below every node's log start cannot be judged and are
//! skipped.
//!
//! Pure: [`check`] takes the events and returns a [`Report`]; it does no I/O. Operations that
//! ended `info` (or never ended) are indeterminate: they may or may not have happened, and
//! either is accepted.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::mem::discriminant;

use serde::Serialize;

use crate::history::{Event, Kind, Op, Seen};

/// At most this many examples are kept per anomaly kind and partition.
const EXAMPLES_MAX: usize = 5;

/// What the checker expects of the run.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// The longest a partition may go without an acknowledged produce while a majority of the
    /// nodes is up.
    pub max_unavailable_ms: u64,
    /// The nodes whose final reads are expected, for every partition.
    pub nodes: Vec<u64>,
}

/// The kinds of anomaly the checker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnomalyKind {
    /// An acknowledged produce whose value is not in the final log at its acknowledged offset.
    LostWrite,
    /// One value at two offsets of the final log.
    Duplicate,
    /// Two values at one offset (node against node, or a poll against the final log), or
    /// nodes whose final high watermarks differ.
    Divergence,
    /// A final read whose offsets are not dense from log start to high watermark, or a poll
    /// whose offsets for a partition do not increase.
    GapOrReorder,
    /// A producer's later value sits at a lower offset than its earlier one.
    ProducerOrder,
    /// A produce that failed (certainly not written) whose value is in the final log.
    FailedWriteVisible,
    /// A consumer was handed a value that is not in the final log at that offset.
    UncommittedRead,
    /// A value in the final log or a poll that no produce to that partition ever wrote.
    Phantom,
    /// A group's committed offset went backwards.
    CommittedRegression,
    /// Offsets below a committed offset that no poll of the group ever delivered.
    SkippedRecords,
    /// Longer than allowed without an acknowledged produce while a majority was up.
    Unavailable,
    /// An expected final read is missing.
    MissingRead,
    /// The history itself is inconsistent (an id used twice, a completion without invoke..).
    MalformedHistory,
}

impl AnomalyKind {
    /// The name used in the report and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::LostWrite => "lost-write",
            AnomalyKind::Duplicate => "duplicate",
            AnomalyKind::Divergence => "divergence",
            AnomalyKind::GapOrReorder => "gap-or-reorder",
            AnomalyKind::ProducerOrder => "producer-order",
            AnomalyKind::FailedWriteVisible => "failed-write-visible",
            AnomalyKind::UncommittedRead => "uncommitted-read",
            AnomalyKind::Phantom => "phantom",
            AnomalyKind::CommittedRegression => "committed-regression",
            AnomalyKind::SkippedRecords => "skipped-records",
            AnomalyKind::Unavailable => "unavailable",
            AnomalyKind::MissingRead => "missing-read",
            AnomalyKind::MalformedHistory => "malformed-history",
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How many of one kind of anomaly were found, with the first few as examples.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Findings {
    /// Number of instances (for skipped records: offsets).
    pub count: u64,
    /// Up to five human-readable examples, first found first.
    pub examples: Vec<String>,
}

impl Findings {
    fn add(&mut self, instances: u64, example: impl FnOnce() -> String) {
        self.count += instances;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(example());
        }
    }
}

/// Anomalies by kind; a kind is present only if it was found.
pub type Anomalies = BTreeMap<AnomalyKind, Findings>;

fn note(anomalies: &mut Anomalies, kind: AnomalyKind, example: impl FnOnce() -> String) {
    anomalies.entry(kind).or_default().add(1, example);
}

/// How the operations of one kind ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    /// Completed `ok`.
    pub ok: u64,
    /// Completed `fail`.
    pub fail: u64,
    /// Completed `info` (indeterminate).
    pub info: u64,
    /// Never completed.
    pub pending: u64,
}

impl Outcomes {
    fn count(&mut self, done: Option<Kind>) {
        match done {
            Some(Kind::Ok) => self.ok += 1,
            Some(Kind::Fail) => self.fail += 1,
            Some(Kind::Info) => self.info += 1,
            // A completion is never an invoke (`parse` sees to it).
            Some(Kind::Invoke) | None => self.pending += 1,
        }
    }
}

impl fmt::Display for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ok {}, fail {}, info {}", self.ok, self.fail, self.info)?;
        if self.pending > 0 {
            write!(f, ", pending {}", self.pending)?;
        }
        Ok(())
    }
}

/// One node's final copy of a partition, as its last successful read saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeLog {
    /// The node.
    pub node: u64,
    /// Its log start offset.
    pub log_start: u64,
    /// Its high watermark.
    pub high_watermark: u64,
}

/// The longest stretch without an acknowledged produce while a majority was up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// Its length.
    pub ms: u64,
    /// Where it started (a produce ack, the run start, or a majority coming back).
    pub from_ms: u64,
    /// Where it ended (a produce ack, the majority going away, or the end of the workload).
    pub to_ms: u64,
}

/// What the checker found for one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionReport {
    /// How the produces to this partition ended.
    pub produces: Outcomes,
    /// Acknowledged produces whose offset is below every node's log start: not judged.
    pub acked_below_log_start: u64,
    /// The final reads, one per node.
    pub final_logs: Vec<NodeLog>,
    /// Records of this partition handed to consumers (counting redeliveries).
    pub polled_records: u64,
    /// The longest stretch without an acknowledged produce while a majority was up, if the
    /// partition was produced to.
    pub longest_gap: Option<Gap>,
    /// What went wrong.
    pub anomalies: Anomalies,
}

/// The result of [`check`]: per partition, what was seen and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// No anomaly anywhere.
    pub valid: bool,
    /// Lines in the history.
    pub events: usize,
    /// Nemesis events by name (`kill-leader`, `kill-leader:heal`, ..).
    pub nemeses: BTreeMap<String, u64>,
    /// How often the majority of nodes was lost.
    pub majority_lost: u64,
    /// Operation outcomes by operation (`produce`, `poll`, ..).
    pub operations: BTreeMap<&'static str, Outcomes>,
    /// The availability limit the run was checked against.
    pub max_unavailable_ms: u64,
    /// Anomalies that belong to no partition (a malformed history).
    pub anomalies: Anomalies,
    /// Per partition.
    pub partitions: BTreeMap<u32, PartitionReport>,
}

impl Report {
    /// Whether the history shows no anomaly at all.
    pub fn is_valid(&self) -> bool {
        self.valid
    }

    /// Total instances per anomaly kind over the whole report.
    pub fn totals(&self) -> BTreeMap<AnomalyKind, u64> {
        let mut totals = BTreeMap::new();
        let all =
            std::iter::once(&self.anomalies).chain(self.partitions.values().map(|p| &p.anomalies));
        for anomalies in all {
            for (kind, findings) in anomalies {
                *totals.entry(*kind).or_insert(0) += findings.count;
            }
        }
        totals
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn write_anomalies(f: &mut fmt::Formatter<'_>, anomalies: &Anomalies) -> fmt::Result {
    for (kind, findings) in anomalies {
        writeln!(f, "  {kind}: {}", findings.count)?;
        for example in &findings.examples {
            writeln!(f, "    - {example}")?;
        }
        let shown = findings.examples.len() as u64;
        if findings.count > shown && findings.examples.len() == EXAMPLES_MAX {
            writeln!(f, "    - ... ({} in all)", findings.count)?;
        }
    }
    Ok(())
}

fn write_final_logs(f: &mut fmt::Formatter<'_>, logs: &[NodeLog]) -> fmt::Result {
    let Some(first) = logs.first() else {
        return write!(f, "no final read");
    };
    let agree = logs
        .iter()
        .all(|l| l.log_start == first.log_start && l.high_watermark == first.high_watermark);
    if agree {
        let nodes: Vec<String> = logs.iter().map(|l| l.node.to_string()).collect();
        return write!(
            f,
            "final log [{}, {}) on nodes {}",
            first.log_start,
            first.high_watermark,
            nodes.join(", ")
        );
    }
    let each: Vec<String> = logs
        .iter()
        .map(|l| format!("node {} [{}, {})", l.node, l.log_start, l.high_watermark))
        .collect();
    write!(f, "final logs {}", each.join(", "))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "history: {} events", self.events)?;
        if self.nemeses.is_empty() {
            writeln!(f, "; no nemesis")?;
        } else {
            let names: Vec<String> = self
                .nemeses
                .iter()
                .map(|(name, n)| format!("{name} x{n}"))
                .collect();
            writeln!(f, "; nemeses: {}", names.join(", "))?;
        }
        writeln!(
            f,
            "majority lost {}",
            plural(self.majority_lost, "time", "times")
        )?;
        for (op, outcomes) in &self.operations {
            writeln!(f, "{op}: {outcomes}")?;
        }
        if !self.anomalies.is_empty() {
            writeln!(f, "history problems:")?;
            write_anomalies(f, &self.anomalies)?;
        }
        for (partition, p) in &self.partitions {
            write!(f, "partition {partition}: produce {}; ", p.produces)?;
            write_final_logs(f, &p.final_logs)?;
            write!(f, "; {} records polled", p.polled_records)?;
            if let Some(gap) = p.longest_gap {
                write!(
                    f,
                    "; longest gap without an ack {} ms (t={}..{} ms, limit {} ms)",
                    gap.ms, gap.from_ms, gap.to_ms, self.max_unavailable_ms
                )?;
            }
            if p.acked_below_log_start > 0 {
                let acks = plural(p.acked_below_log_start, "ack", "acks");
                write!(f, "; {acks} below every log start not judged")?;
            }
            if p.anomalies.is_empty() {
                writeln!(f, "; ok")?;
            } else {
                writeln!(f)?;
                write_anomalies(f, &p.anomalies)?;
            }
        }
        let totals = self.totals();
        if totals.is_empty() {
            let partitions = plural(self.partitions.len() as u64, "partition", "partitions");
            write!(f, "VALID: no anomalies in {partitions}")
        } else {
            let kinds: Vec<String> = totals.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let all = plural(totals.values().sum(), "anomaly", "anomalies");
            write!(f, "INVALID: {all} ({})", kinds.join(", "))
        }
    }
}

/// Checks a history. `events` may be in any order; they are taken in `time_ms` order, ties in
/// the order given.
pub fn check(events: &[Event], opts: &CheckOptions) -> Report {
    let parsed = parse(events);
    let mut partitions = BTreeSet::new();
    partitions.extend(parsed.produces.iter().map(|p| p.partition));
    partitions.extend(
        parsed
            .polls
            .iter()
            .flat_map(|p| p.records.iter().map(|r| r.partition)),
    );
    partitions.extend(parsed.offsets.iter().map(|o| o.partition));
    partitions.extend(parsed.reads.keys().map(|(partition, _)| *partition));

    let mut produced_to: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for p in &parsed.produces {
        produced_to.entry(p.value).or_default().insert(p.partition);
    }
    let ctx = Context {
        parsed: &parsed,
        opts,
        produced_to,
    };
    let partitions: BTreeMap<u32, PartitionReport> = partitions
        .into_iter()
        .map(|partition| (partition, ctx.check_partition(partition)))
        .collect();
    let mut anomalies = parsed.malformed.clone();
    if parsed.produces.is_empty() {
        note(&mut anomalies, AnomalyKind::MalformedHistory, || {
            "no produce in the history: nothing to check".to_owned()
        });
    }
    let valid = anomalies.is_empty() && partitions.values().all(|p| p.anomalies.is_empty());
    let majority_lost = parsed
        .health
        .windows(2)
        .filter(|w| w[0].1 && !w[1].1)
        .count() as u64
        + u64::from(parsed.health.first().is_some_and(|(_, up)| !up));
    Report {
        valid,
        events: events.len(),
        nemeses: parsed.nemeses.clone(),
        majority_lost,
        operations: parsed.operations.clone(),
        max_unavailable_ms: opts.max_unavailable_ms,
        anomalies,
        partitions,
    }
}

/// One operation's invoke and completion lines; at least one of them is present.
#[derive(Debug, Default)]
struct Pair<'a> {
    invoke: Option<&'a Event>,
    done: Option<&'a Event>,
}

impl<'a> Pair<'a> {
    fn first(&self) -> Option<&'a Event> {
        self.invoke.or(self.done)
    }

    fn invoke_ms(&self) -> u64 {
        self.first().map_or(0, |e| e.time_ms)
    }

    fn process(&self) -> &'a str {
        self.first().map_or("", |e| e.process.as_str())
    }

    /// The completion, if it is `ok`.
    fn ok(&self) -> Option<&'a Event> {
        self.done.filter(|e| e.kind == Kind::Ok)
    }
}

#[derive(Debug, Clone, Copy)]
enum Outcome<'a> {
    Ok { offset: Option<u64>, at_ms: u64 },
    Fail { error: Option<&'a str> },
    Info,
    Pending,
}

#[derive(Debug)]
struct Produce<'a> {
    id: u64,
    partition: u32,
    producer: u32,
    seq: u64,
    value: &'a str,
    invoke_ms: u64,
    outcome: Outcome<'a>,
}

#[derive(Debug)]
struct Poll<'a> {
    id: u64,
    process: &'a str,
    group: &'a str,
    at_ms: u64,
    records: &'a [Seen],
}

impl Poll<'_> {
    fn describe(&self) -> String {
        format!(
            "{} (group {}, op {}, t={} ms)",
            self.process, self.group, self.id, self.at_ms
        )
    }
}

/// A committed offset seen by a `commit` (written) or `committed` (observed) `ok`.
#[derive(Debug)]
struct OffsetObs<'a> {
    id: u64,
    process: &'a str,
    what: &'static str,
    group: &'a str,
    partition: u32,
    offset: u64,
    invoke_ms: u64,
    done_ms: u64,
}

impl OffsetObs<'_> {
    fn describe(&self) -> String {
        format!(
            "{} {} by {} (op {}, t={}..{} ms)",
            self.what, self.offset, self.process, self.id, self.invoke_ms, self.done_ms
        )
    }
}

#[derive(Debug)]
struct ReadView<'a> {
    id: u64,
    node: u64,
    at_ms: u64,
    log_start: u64,
    high_watermark: u64,
    records: &'a [Seen],
}

/// The history, paired up and sorted out by operation.
#[derive(Debug, Default)]
struct Parsed<'a> {
    nemeses: BTreeMap<String, u64>,
    /// Majority up or not, in time order.
    health: Vec<(u64, bool)>,
    produces: Vec<Produce<'a>>,
    polls: Vec<Poll<'a>>,
    offsets: Vec<OffsetObs<'a>>,
    /// The last successful read per (partition, node).
    reads: BTreeMap<(u32, u64), ReadView<'a>>,
    /// When the final reads started.
    first_read_ms: Option<u64>,
    operations: BTreeMap<&'static str, Outcomes>,
    malformed: Anomalies,
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Produce { .. } => "produce",
        Op::Poll { .. } => "poll",
        Op::Commit { .. } => "commit",
        Op::Committed { .. } => "committed",
        Op::Read { .. } => "read",
        Op::Nemesis { .. } => "nemesis",
        Op::Health { .. } => "health",
    }
}

fn parse(events: &[Event]) -> Parsed<'_> {
    let mut out = Parsed::default();
    let mut order: Vec<&Event> = events.iter().collect();
    order.sort_by_key(|e| e.time_ms);
    let mut pairs: BTreeMap<u64, Pair<'_>> = BTreeMap::new();
    for e in order {
        match &e.op {
            Op::Nemesis { name, .. } => {
                *out.nemeses.entry(name.clone()).or_default() += 1;
                continue;
            }
            Op::Health { majority } => {
                out.health.push((e.time_ms, *majority));
                continue;
            }
            Op::Produce { .. }
            | Op::Poll { .. }
            | Op::Commit { .. }
            | Op::Committed { .. }
            | Op::Read { .. } => {}
        }
        let pair = pairs.entry(e.id).or_default();
        let malformed = &mut out.malformed;
        let bad = |why: &'static str| {
            move || {
                format!(
                    "op {} ({}, t={} ms): {why}",
                    e.id,
                    op_name(&e.op),
                    e.time_ms
                )
            }
        };
        if e.kind == Kind::Invoke {
            if pair.invoke.is_some() || pair.done.is_some() {
                note(
                    malformed,
                    AnomalyKind::MalformedHistory,
                    bad("id invoked twice or after its completion"),
                );
                continue;
            }
            pair.invoke = Some(e);
            continue;
        }
        if pair.done.is_some() {
            note(
                malformed,
                AnomalyKind::MalformedHistory,
                bad("completed twice"),
            );
            continue;
        }
        match pair.invoke {
            Some(invoke) if discriminant(&invoke.op) != discriminant(&e.op) => {
                note(
                    malformed,
                    AnomalyKind::MalformedHistory,
                    bad("completion is a different operation than its invoke"),
                );
                continue;
            }
            Some(_) => {}
            None => note(
                malformed,
                AnomalyKind::MalformedHistory,
                bad("completion without invoke"),
            ),
        }
        pair.done = Some(e);
    }

    for (&id, pair) in &pairs {
        let Some(first) = pair.first() else {
            continue;
        };
        out.operations
            .entry(op_name(&first.op))
            .or_default()
            .count(pair.done.map(|e| e.kind));
        match &first.op {
            Op::Produce {
                partition,
                producer,
                seq,
                value,
                ..
            } => {
                let outcome = match pair.done {
                    Some(done) if done.kind == Kind::Ok => {
                        let offset = match &done.op {
                            Op::Produce { offset, .. } => *offset,
                            _ => None,
                        };
                        if offset.is_none() {
                            note(&mut out.malformed, AnomalyKind::MalformedHistory, || {
                                format!("op {id} (produce {value:?}): ok without an offset")
                            });
                        }
                        Outcome::Ok {
                            offset,
                            at_ms: done.time_ms,
                        }
                    }
                    Some(done) if done.kind == Kind::Fail => Outcome::Fail {
                        error: done.error.as_deref(),
                    },
                    Some(_) => Outcome::Info,
                    None => Outcome::Pending,
                };
                out.produces.push(Produce {
                    id,
                    partition: *partition,
                    producer: *producer,
                    seq: *seq,
                    value,
                    invoke_ms: pair.invoke_ms(),
                    outcome,
                });
            }
            Op::Poll { group, .. } => {
                if let Some(Event {
                    op: Op::Poll { records, .. },
                    time_ms,
                    ..
                }) = pair.ok()
                {
                    out.polls.push(Poll {
                        id,
                        process: pair.process(),
                        group,
                        at_ms: *time_ms,
                        records,
                    });
                }
            }
            Op::Commit { group, offsets } => {
                if let Some(done) = pair.ok() {
                    for (&partition, &offset) in offsets {
                        out.offsets.push(OffsetObs {
                            id,
                            process: pair.process(),
                            what: "commit",
                            group,
                            partition,
                            offset,
                            invoke_ms: pair.invoke_ms(),
                            done_ms: done.time_ms,
                        });
                    }
                }
            }
            Op::Committed { group, .. } => {
                if let Some(Event {
                    op: Op::Committed { offsets, .. },
                    time_ms,
                    ..
                }) = pair.ok()
                {
                    for (&partition, &offset) in offsets {
                        out.offsets.push(OffsetObs {
                            id,
                            process: pair.process(),
                            what: "committed",
                            group,
                            partition,
                            offset,
                            invoke_ms: pair.invoke_ms(),
                            done_ms: *time_ms,
                        });
                    }
                }
            }
            Op::Read { .. } => {
                let invoke_ms = pair.invoke_ms();
                out.first_read_ms = Some(out.first_read_ms.map_or(invoke_ms, |t| t.min(invoke_ms)));
                if let Some(Event {
                    op:
                        Op::Read {
                            node,
                            partition,
                            log_start,
                            high_watermark,
                            records,
                        },
                    time_ms,
                    ..
                }) = pair.ok()
                {
                    let view = ReadView {
                        id,
                        node: *node,
                        at_ms: *time_ms,
                        log_start: *log_start,
                        high_watermark: *high_watermark,
                        records,
                    };
                    match out.reads.entry((*partition, *node)) {
                        Entry::Vacant(v) => {
                            v.insert(view);
                        }
                        Entry::Occupied(mut o) => {
                            if (view.at_ms, view.id) > (o.get().at_ms, o.get().id) {
                                o.insert(view);
                            }
                        }
                    }
                }
            }
            Op::Nemesis { .. } | Op::Health { .. } => {}
        }
    }
    out
}

/// A partition's final log as the nodes' last reads saw it.
#[derive(Debug, Default)]
struct FinalLog<'a> {
    /// Offset -> value -> the nodes holding it there.
    by_offset: BTreeMap<u64, BTreeMap<&'a str, Vec<u64>>>,
    /// Value -> the offsets where some node holds it.
    by_value: BTreeMap<&'a str, BTreeSet<u64>>,
    /// Lowest log start over the nodes read; `None` when no node was read.
    log_start_min: Option<u64>,
    /// Highest log start over the nodes read.
    log_start_max: u64,
}

impl<'a> FinalLog<'a> {
    fn build(reads: &[&ReadView<'a>]) -> FinalLog<'a> {
        let mut log = FinalLog::default();
        for read in reads {
            log.log_start_min = Some(
                log.log_start_min
                    .map_or(read.log_start, |s| s.min(read.log_start)),
            );
            log.log_start_max = log.log_start_max.max(read.log_start);
            for r in read.records {
                log.by_offset
                    .entry(r.offset)
                    .or_default()
                    .entry(r.value.as_str())
                    .or_default()
                    .push(read.node);
                log.by_value
                    .entry(r.value.as_str())
                    .or_default()
                    .insert(r.offset);
            }
        }
        log
    }

    fn holds(&self, offset: u64, value: &str) -> bool {
        self.by_offset
            .get(&offset)
            .is_some_and(|values| values.contains_key(value))
    }

    /// Whether some node's copy could hold `offset`, so its absence means something.
    fn judges(&self, offset: u64) -> bool {
        self.log_start_min.is_some_and(|start| offset >= start)
    }

    fn lowest_offset(&self, value: &str) -> Option<u64> {
        self.by_value
            .get(value)
            .and_then(|offsets| offsets.first().copied())
    }

    fn describe_offset(&self, offset: u64) -> String {
        match self.by_offset.get(&offset) {
            None => format!("no record at offset {offset}"),
            Some(values) => {
                let each: Vec<String> = values
                    .iter()
                    .map(|(v, nodes)| format!("{v:?} on nodes {nodes:?}"))
                    .collect();
                format!("offset {offset} holds {}", each.join(", "))
            }
        }
    }
}

struct Context<'p, 'a> {
    parsed: &'p Parsed<'a>,
    opts: &'p CheckOptions,
    /// Value -> the partitions some produce wrote it to.
    produced_to: BTreeMap<&'a str, BTreeSet<u32>>,
}

/// Turns a sorted set of offsets into half-open ranges of consecutive offsets.
fn ranges(offsets: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &o in offsets {
        match out.last_mut() {
            Some((_, end)) if *end == o => *end = o + 1,
            _ => out.push((o, o + 1)),
        }
    }
    out
}

impl<'a> Context<'_, 'a> {
    fn check_partition(&self, partition: u32) -> PartitionReport {
        let mut report = PartitionReport::default();
        let produces: Vec<&Produce<'a>> = self
            .parsed
            .produces
            .iter()
            .filter(|p| p.partition == partition)
            .collect();
        for p in &produces {
            match p.outcome {
                Outcome::Ok { .. } => report.produces.ok += 1,
                Outcome::Fail { .. } => report.produces.fail += 1,
                Outcome::Info => report.produces.info += 1,
                Outcome::Pending => report.produces.pending += 1,
            }
        }
        let reads: Vec<&ReadView<'a>> = self
            .parsed
            .reads
            .range((partition, 0)..=(partition, u64::MAX))
            .map(|(_, r)| r)
            .collect();
        report.final_logs = reads
            .iter()
            .map(|r| NodeLog {
                node: r.node,
                log_start: r.log_start,
                high_watermark: r.high_watermark,
            })
            .collect();
        let polled: Vec<(&Poll<'a>, &'a Seen)> = self
            .parsed
            .polls
            .iter()
            .flat_map(|p| p.records.iter().map(move |r| (p, r)))
            .filter(|(_, r)| r.partition == partition)
            .collect();
        report.polled_records = polled.len() as u64;
        let log = FinalLog::build(&reads);

        let a = &mut report.anomalies;
        self.check_reads_present(partition, &reads, !produces.is_empty(), a);
        check_final_reads(partition, &reads, &log, a);
        report.acked_below_log_start = check_lost_writes(&produces, &log, a);
        check_failed_writes(&produces, &log, a);
        check_producer_order(&produces, &log, a);
        self.check_phantoms_in_log(partition, &log, a);
        self.check_polls(partition, &polled, &log, a);
        self.check_committed(partition, &polled, &log, a);
        report.longest_gap = self.check_availability(&produces, a);
        report
    }

    /// Every expected node must have read the partition; a produced-to partition needs at
    /// least one read whatever the options say.
    fn check_reads_present(
        &self,
        partition: u32,
        reads: &[&ReadView<'a>],
        produced: bool,
        a: &mut Anomalies,
    ) {
        let read: BTreeSet<u64> = reads.iter().map(|r| r.node).collect();
        for node in &self.opts.nodes {
            if !read.contains(node) {
                note(a, AnomalyKind::MissingRead, || {
                    format!("node {node}: no successful final read of partition {partition}")
                });
            }
        }
        if reads.is_empty() && self.opts.nodes.is_empty() && produced {
            note(a, AnomalyKind::MissingRead, || {
                format!("partition {partition} was produced to but no node's final read succeeded")
            });
        }
    }

    /// Values in the final log that no produce to this partition wrote.
    fn check_phantoms_in_log(&self, partition: u32, log: &FinalLog<'a>, a: &mut Anomalies) {
        for (value, offsets) in &log.by_value {
            if !self.was_produced(value, partition) {
                note(a, AnomalyKind::Phantom, || {
                    format!(
                        "{value:?} at offsets {offsets:?} of the final log: {}",
                        self.describe_origin(value)
                    )
                });
            }
        }
    }

    fn was_produced(&self, value: &str, partition: u32) -> bool {
        self.produced_to
            .get(value)
            .is_some_and(|partitions| partitions.contains(&partition))
    }

    fn describe_origin(&self, value: &str) -> String {
        match self.produced_to.get(value) {
            None => "no produce ever wrote it".to_owned(),
            Some(partitions) => format!("it was produced to partitions {partitions:?} only"),
        }
    }

    /// Polls against the final log, and the order within each poll.
    fn check_polls(
        &self,
        partition: u32,
        polled: &[(&Poll<'a>, &'a Seen)],
        log: &FinalLog<'a>,
        a: &mut Anomalies,
    ) {
        let mut previous: Option<(u64, u64)> = None;
        let mut first_seen: BTreeMap<(u64, &'a str), &Poll<'a>> = BTreeMap::new();
        for &(poll, record) in polled {
            if let Some((id, offset)) = previous {
                if id == poll.id && record.offset <= offset {
                    note(a, AnomalyKind::GapOrReorder, || {
                        format!(
                            "poll by {}: offset {} delivered after offset {offset}",
                            poll.describe(),
                            record.offset
                        )
                    });
                }
            }
            previous = Some((poll.id, record.offset));
            first_seen
                .entry((record.offset, record.value.as_str()))
                .or_insert(poll);
        }
        for (&(offset, value), poll) in &first_seen {
            if !self.was_produced(value, partition) {
                note(a, AnomalyKind::Phantom, || {
                    format!(
                        "{} was handed {value:?} at offset {offset}: {}",
                        poll.describe(),
                        self.describe_origin(value)
                    )
                });
            } else if !log.judges(offset) || log.holds(offset, value) {
                // Fine, or below every node's log start (or no final read): cannot judge.
            } else if log.by_offset.contains_key(&offset) {
                note(a, AnomalyKind::Divergence, || {
                    format!(
                        "{} was handed {value:?} at offset {offset}, but the final log's {}",
                        poll.describe(),
                        log.describe_offset(offset)
                    )
                });
            } else {
                note(a, AnomalyKind::UncommittedRead, || {
                    let elsewhere = match log.by_value.get(value) {
                        Some(offsets) => format!(" (the value is at offsets {offsets:?})"),
                        None => String::new(),
                    };
                    format!(
                        "{} was handed {value:?} at offset {offset}; the final log has no \
                         record there{elsewhere}",
                        poll.describe()
                    )
                });
            }
        }
    }

    /// Committed group offsets: never backwards, and nothing below them left unpolled.
    fn check_committed(
        &self,
        partition: u32,
        polled: &[(&Poll<'a>, &'a Seen)],
        log: &FinalLog<'a>,
        a: &mut Anomalies,
    ) {
        let mut by_group: BTreeMap<&str, Vec<&OffsetObs<'a>>> = BTreeMap::new();
        for o in self
            .parsed
            .offsets
            .iter()
            .filter(|o| o.partition == partition)
        {
            by_group.entry(o.group).or_default().push(o);
        }
        for (group, obs) in &by_group {
            check_commit_order(group, obs, a);
        }

        if log.log_start_min.is_none() {
            return;
        }
        let mut delivered: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
        for (poll, record) in polled {
            delivered
                .entry(poll.group)
                .or_default()
                .insert(record.offset);
        }
        let empty = BTreeSet::new();
        for (group, obs) in &by_group {
            let highest = obs
                .iter()
                .filter(|o| o.what == "committed")
                .max_by_key(|o| (o.offset, std::cmp::Reverse(o.done_ms)));
            let Some(highest) = highest else {
                continue;
            };
            if highest.offset <= log.log_start_max {
                continue;
            }
            let delivered = delivered.get(group).unwrap_or(&empty);
            let missing: Vec<u64> = log
                .by_offset
                .range(log.log_start_max..highest.offset)
                .map(|(o, _)| *o)
                .filter(|o| !delivered.contains(o))
                .collect();
            for (from, to) in ranges(&missing) {
                a.entry(AnomalyKind::SkippedRecords)
                    .or_default()
                    .add(to - from, || {
                        format!(
                            "group {group}: offsets [{from}, {to}) never polled, below {}",
                            highest.describe()
                        )
                    });
            }
        }
    }

    /// The longest stretch without an acknowledged produce while a majority was up, from the
    /// first produce invoke to the last one before the final reads.
    fn check_availability(&self, produces: &[&Produce<'a>], a: &mut Anomalies) -> Option<Gap> {
        let start = produces.iter().map(|p| p.invoke_ms).min()?;
        let end = produces
            .iter()
            .map(|p| p.invoke_ms)
            .filter(|t| self.parsed.first_read_ms.is_none_or(|r| *t < r))
            .max()?;
        enum Mark {
            Majority(bool),
            Ack,
        }
        let mut marks: Vec<(u64, Mark)> = self
            .parsed
            .health
            .iter()
            .map(|&(t, up)| (t, Mark::Majority(up)))
            .collect();
        marks.extend(produces.iter().filter_map(|p| match p.outcome {
            Outcome::Ok { at_ms, .. } => Some((at_ms, Mark::Ack)),
            _ => None,
        }));
        // Stable: at equal times a health change counts before an ack.
        marks.sort_by_key(|(t, _)| *t);

        let mut longest: Option<Gap> = None;
        let mut consider = |from_ms: u64, to_ms: u64| {
            let ms = to_ms - from_ms;
            if longest.is_none_or(|g| ms > g.ms) {
                longest = Some(Gap { ms, from_ms, to_ms });
            }
        };
        let mut up = true;
        let mut since = start;
        for (t, mark) in marks {
            if t > end {
                break;
            }
            match mark {
                Mark::Majority(now_up) if t < start => up = now_up,
                Mark::Majority(true) => {
                    if !up {
                        since = t;
                    }
                    up = true;
                }
                Mark::Majority(false) => {
                    if up {
                        consider(since, t);
                    }
                    up = false;
                }
                Mark::Ack => {
                    if up {
                        consider(since, t);
                    }
                    since = t;
                }
            }
        }
        if up {
            consider(since, end);
        }
        if let Some(gap) = longest {
            if gap.ms > self.opts.max_unavailable_ms {
                note(a, AnomalyKind::Unavailable, || {
                    format!(
                        "no acknowledged produce for {} ms (t={}..{} ms) while a majority was up; \
                         limit {} ms",
                        gap.ms, gap.from_ms, gap.to_ms, self.opts.max_unavailable_ms
                    )
                });
            }
        }
        longest
    }
}

/// Each read dense and increasing; nodes agreeing on every shared offset, on the high
/// watermark, and on one offset per value.
fn check_final_reads(
    partition: u32,
    reads: &[&ReadView<'_>],
    log: &FinalLog<'_>,
    a: &mut Anomalies,
) {
    for read in reads {
        let node = read.node;
        let mut expected = read.log_start;
        for r in read.records {
            if r.partition != partition {
                note(a, AnomalyKind::GapOrReorder, || {
                    format!(
                        "node {node}: read of partition {partition} returned offset {} of \
                         partition {}",
                        r.offset, r.partition
                    )
                });
            }
            if r.offset > expected {
                note(a, AnomalyKind::GapOrReorder, || {
                    format!(
                        "node {node}: offsets [{expected}, {}) missing from its read [{}, {})",
                        r.offset, read.log_start, read.high_watermark
                    )
                });
                expected = r.offset + 1;
            } else if r.offset < expected {
                note(a, AnomalyKind::GapOrReorder, || {
                    format!(
                        "node {node}: offset {} after offset {} in its read",
                        r.offset,
                        expected - 1
                    )
                });
            } else {
                expected += 1;
            }
        }
        if expected != read.high_watermark {
            note(a, AnomalyKind::GapOrReorder, || {
                format!(
                    "node {node}: its read ends before offset {expected} but its high \
                     watermark is {}",
                    read.high_watermark
                )
            });
        }
    }

    for (offset, values) in &log.by_offset {
        if values.len() > 1 {
            note(a, AnomalyKind::Divergence, || log.describe_offset(*offset));
        }
    }
    let watermarks: BTreeSet<u64> = reads.iter().map(|r| r.high_watermark).collect();
    if watermarks.len() > 1 {
        note(a, AnomalyKind::Divergence, || {
            let each: Vec<String> = reads
                .iter()
                .map(|r| format!("node {}: {}", r.node, r.high_watermark))
                .collect();
            format!("high watermarks differ after healing: {}", each.join(", "))
        });
    }
    for (value, offsets) in &log.by_value {
        if offsets.len() > 1 {
            note(a, AnomalyKind::Duplicate, || {
                let each: Vec<String> = offsets
                    .iter()
                    .map(|o| {
                        let nodes = log
                            .by_offset
                            .get(o)
                            .and_then(|values| values.get(value))
                            .map_or_else(Vec::new, Clone::clone);
                        format!("{o} (nodes {nodes:?})")
                    })
                    .collect();
                format!("{value:?} at offsets {}", each.join(", "))
            });
        }
    }
}

/// Every acknowledged value at its acknowledged offset. Returns how many acks were below every
/// node's log start and could not be judged.
fn check_lost_writes(produces: &[&Produce<'_>], log: &FinalLog<'_>, a: &mut Anomalies) -> u64 {
    if log.log_start_min.is_none() {
        // No final read: reported as missing reads, not as every write lost.
        return 0;
    }
    let mut below = 0;
    for p in produces {
        let Outcome::Ok { offset, at_ms } = p.outcome else {
            continue;
        };
        let value = p.value;
        let found = log.by_value.get(value);
        let acked = match offset {
            Some(o) if log.holds(o, value) => continue,
            None if found.is_some() => continue,
            Some(o) if found.is_none() && !log.judges(o) => {
                below += 1;
                continue;
            }
            Some(o) => format!("acked at offset {o}"),
            None => "acked".to_owned(),
        };
        note(a, AnomalyKind::LostWrite, || {
            let now = match (found, offset) {
                (Some(offsets), _) => format!("found at offsets {offsets:?} instead"),
                (None, Some(o)) => format!("not in the final log ({})", log.describe_offset(o)),
                (None, None) => "not in the final log".to_owned(),
            };
            format!(
                "{value:?} (producer {} seq {}, op {}) {acked} at t={at_ms} ms: {now}",
                p.producer, p.seq, p.id
            )
        });
    }
    below
}

/// A value whose every produce failed must not be in the final log.
fn check_failed_writes(produces: &[&Produce<'_>], log: &FinalLog<'_>, a: &mut Anomalies) {
    let mut by_value: BTreeMap<&str, Vec<&Produce<'_>>> = BTreeMap::new();
    for p in produces {
        by_value.entry(p.value).or_default().push(p);
    }
    for (value, attempts) in &by_value {
        let Some(offsets) = log.by_value.get(value) else {
            continue;
        };
        if !attempts
            .iter()
            .all(|p| matches!(p.outcome, Outcome::Fail { .. }))
        {
            continue;
        }
        note(a, AnomalyKind::FailedWriteVisible, || {
            let errors: Vec<String> = attempts
                .iter()
                .map(|p| match p.outcome {
                    Outcome::Fail { error: Some(e) } => format!("op {}: {e}", p.id),
                    _ => format!("op {}", p.id),
                })
                .collect();
            format!(
                "{value:?} failed ({}) but is at offsets {offsets:?}",
                errors.join("; ")
            )
        });
    }
}

/// Per producer, values present in the final log sit in `seq` order.
fn check_producer_order(produces: &[&Produce<'_>], log: &FinalLog<'_>, a: &mut Anomalies) {
    let mut by_producer: BTreeMap<u32, BTreeMap<u64, (&str, u64)>> = BTreeMap::new();
    for p in produces {
        if let Some(offset) = log.lowest_offset(p.value) {
            by_producer
                .entry(p.producer)
                .or_default()
                .entry(p.seq)
                .or_insert((p.value, offset));
        }
    }
    for (producer, by_seq) in &by_producer {
        let in_order: Vec<(&u64, &(&str, u64))> = by_seq.iter().collect();
        for pair in in_order.windows(2) {
            let (seq_a, &(value_a, offset_a)) = pair[0];
            let (seq_b, &(value_b, offset_b)) = pair[1];
            if offset_a >= offset_b {
                note(a, AnomalyKind::ProducerOrder, || {
                    format!(
                        "producer {producer}: seq {seq_a} ({value_a:?}) at offset {offset_a} but \
                         seq {seq_b} ({value_b:?}) at offset {offset_b}"
                    )
                });
            }
        }
    }
}

/// A later-invoked commit or observation must not see a lower offset than one that completed
/// before it was invoked (overlapping ones may land in either order).
fn check_commit_order(group: &str, obs: &[&OffsetObs<'_>], a: &mut Anomalies) {
    let mut by_done = obs.to_vec();
    by_done.sort_by_key(|o| (o.done_ms, o.id));
    let mut by_invoke = obs.to_vec();
    by_invoke.sort_by_key(|o| (o.invoke_ms, o.id));
    let mut next = 0;
    let mut highest: Option<&OffsetObs<'_>> = None;
    for b in by_invoke {
        while let Some(done) = by_done.get(next).filter(|o| o.done_ms < b.invoke_ms) {
            if highest.is_none_or(|h| done.offset > h.offset) {
                highest = Some(done);
            }
            next += 1;
        }
        // Only what the coordinator *reports* can go backwards: a commit below the current
        // offset is answered OK and changes nothing (committed offsets move back only through
        // a reset), so a lower commit is not itself a regression; a later report below it is.
        if b.what != "committed" {
            continue;
        }
        if let Some(h) = highest {
            if b.offset < h.offset {
                note(a, AnomalyKind::CommittedRegression, || {
                    format!("group {group}: {} after {}", b.describe(), h.describe())
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Recorder;

    /// Builds histories: every line one millisecond after the previous unless moved with `at`.
    struct H {
        events: Vec<Event>,
        next_id: u64,
        now: u64,
    }

    fn value(producer: u32, partition: u32, seq: u64) -> String {
        format!("{producer}-{partition}-{seq}")
    }

    impl H {
        fn new() -> H {
            H {
                events: Vec::new(),
                next_id: 0,
                now: 0,
            }
        }

        fn at(&mut self, ms: u64) -> &mut H {
            self.now = ms;
            self
        }

        fn line(&mut self, id: u64, process: &str, kind: Kind, op: Op, error: Option<&str>) {
            self.events.push(Event {
                time_ms: self.now,
                id,
                process: process.to_owned(),
                kind,
                op,
                error: error.map(str::to_owned),
            });
            self.now += 1;
        }

        fn invoke(&mut self, process: &str, op: Op) -> u64 {
            let id = self.next_id;
            self.next_id += 1;
            self.line(id, process, Kind::Invoke, op, None);
            id
        }

        fn produce_op(partition: u32, producer: u32, seq: u64, offset: Option<u64>) -> Op {
            Op::Produce {
                partition,
                producer,
                seq,
                value: value(producer, partition, seq),
                offset,
            }
        }

        /// A produce that ends with `kind` (`ok` at `offset`); `None` leaves it pending.
        fn produce(
            &mut self,
            partition: u32,
            producer: u32,
            seq: u64,
            outcome: Option<Kind>,
            offset: Option<u64>,
        ) -> &mut H {
            let process = format!("producer-{producer}");
            let id = self.invoke(&process, H::produce_op(partition, producer, seq, None));
            if let Some(kind) = outcome {
                let error = (kind != Kind::Ok).then_some("timed out");
                let op = H::produce_op(partition, producer, seq, offset);
                self.line(id, &process, kind, op, error);
            }
            self
        }

        fn ok(&mut self, partition: u32, producer: u32, seq: u64, offset: u64) -> &mut H {
            self.produce(partition, producer, seq, Some(Kind::Ok), Some(offset))
        }

        fn poll(&mut self, consumer: &str, group: &str, records: &[(u32, u64, &str)]) -> &mut H {
            let id = self.invoke(
                consumer,
                Op::Poll {
                    group: group.into(),
                    records: Vec::new(),
                },
            );
            let records = records
                .iter()
                .map(|&(partition, offset, value)| Seen {
                    partition,
                    offset,
                    value: value.into(),
                })
                .collect();
            let op = Op::Poll {
                group: group.into(),
                records,
            };
            self.line(id, consumer, Kind::Ok, op, None);
            self
        }

        fn commit_op(group: &str, offsets: &[(u32, u64)]) -> Op {
            Op::Commit {
                group: group.into(),
                offsets: offsets.iter().copied().collect(),
            }
        }

        fn commit(&mut self, consumer: &str, group: &str, offsets: &[(u32, u64)]) -> &mut H {
            let id = self.invoke(consumer, H::commit_op(group, offsets));
            self.line(id, consumer, Kind::Ok, H::commit_op(group, offsets), None);
            self
        }

        fn committed(&mut self, group: &str, offsets: &[(u32, u64)]) -> &mut H {
            let id = self.invoke(
                "observer",
                Op::Committed {
                    group: group.into(),
                    offsets: BTreeMap::new(),
                },
            );
            let op = Op::Committed {
                group: group.into(),
                offsets: offsets.iter().copied().collect(),
            };
            self.line(id, "observer", Kind::Ok, op, None);
            self
        }

        fn read(
            &mut self,
            node: u64,
            partition: u32,
            log_start: u64,
            high_watermark: u64,
            records: &[(u64, &str)],
        ) -> &mut H {
            let id = self.invoke(
                "reader",
                Op::Read {
                    node,
                    partition,
                    log_start: 0,
                    high_watermark: 0,
                    records: Vec::new(),
                },
            );
            let records = records
                .iter()
                .map(|&(offset, value)| Seen {
                    partition,
                    offset,
                    value: value.into(),
                })
                .collect();
            let op = Op::Read {
                node,
                partition,
                log_start,
                high_watermark,
                records,
            };
            self.line(id, "reader", Kind::Ok, op, None);
            self
        }

        /// Every node in `nodes` reads the same dense log from offset 0.
        fn read_all(&mut self, nodes: &[u64], partition: u32, values: &[&str]) -> &mut H {
            let records: Vec<(u64, &str)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u64, *v))
                .collect();
            for &node in nodes {
                self.read(node, partition, 0, values.len() as u64, &records);
            }
            self
        }

        fn standalone(&mut self, process: &str, op: Op) -> &mut H {
            let id = self.next_id;
            self.next_id += 1;
            self.line(id, process, Kind::Info, op, None);
            self
        }

        fn health(&mut self, majority: bool) -> &mut H {
            self.standalone("nemesis", Op::Health { majority })
        }

        fn nemesis(&mut self, name: &str) -> &mut H {
            self.standalone(
                "nemesis",
                Op::Nemesis {
                    name: name.into(),
                    detail: "node 1".into(),
                },
            )
        }
    }

    fn opts(nodes: &[u64]) -> CheckOptions {
        CheckOptions {
            max_unavailable_ms: 1_000,
            nodes: nodes.to_vec(),
        }
    }

    fn kinds(report: &Report) -> Vec<AnomalyKind> {
        report.totals().into_keys().collect()
    }

    /// Checks `h` against nodes 1 and 2 and expects exactly `expected` anomaly kinds.
    fn expect_only(h: &H, expected: &[AnomalyKind]) -> Report {
        let report = check(&h.events, &opts(&[1, 2]));
        assert_eq!(kinds(&report), expected, "{report}");
        assert_eq!(report.is_valid(), expected.is_empty(), "{report}");
        report
    }

    /// Two producers on partition 0, one on partition 1, a nemesis with the majority lost and
    /// regained, a consumer group that polls and commits everything, and indeterminate and
    /// failed produces that are (info) or are not (info, fail, pending) in the final log.
    fn clean() -> H {
        let mut h = H::new();
        let (a, b, c, d) = (
            value(1, 0, 0),
            value(2, 0, 0),
            value(1, 0, 1),
            value(1, 0, 2),
        );
        let e = value(3, 1, 0);
        h.ok(0, 1, 0, 0).ok(0, 2, 0, 1).ok(1, 3, 0, 0);
        h.nemesis("kill-leader").health(false);
        h.produce(0, 1, 1, Some(Kind::Info), None); // written after all, at 2
        h.produce(0, 2, 1, Some(Kind::Fail), None); // certainly not written
        h.produce(1, 3, 1, Some(Kind::Info), None); // not written
        h.health(true).nemesis("kill-leader:heal");
        h.ok(0, 1, 2, 3);
        h.produce(1, 3, 2, None, None); // never completed, not written
        h.poll("consumer-1", "g", &[(0, 0, &a), (0, 1, &b), (1, 0, &e)]);
        h.commit("consumer-1", "g", &[(0, 2), (1, 1)]);
        h.committed("g", &[(0, 2), (1, 1)]);
        h.poll("consumer-1", "g", &[(0, 2, &c), (0, 3, &d)]);
        h.commit("consumer-1", "g", &[(0, 4)]);
        h.committed("g", &[(0, 4), (1, 1)]);
        h.read_all(&[1, 2], 0, &[&a, &b, &c, &d]);
        h.read_all(&[1, 2], 1, &[&e]);
        h
    }

    #[test]
    fn clean_history_is_valid() {
        let h = clean();
        let report = expect_only(&h, &[]);
        assert_eq!(report.events, h.events.len());
        assert_eq!(report.nemeses.get("kill-leader"), Some(&1));
        assert_eq!(report.nemeses.get("kill-leader:heal"), Some(&1));
        assert_eq!(report.majority_lost, 1);
        let p0 = &report.partitions[&0];
        assert_eq!(
            p0.produces,
            Outcomes {
                ok: 3,
                fail: 1,
                info: 1,
                pending: 0
            }
        );
        assert_eq!(p0.polled_records, 4);
        assert_eq!(p0.final_logs.len(), 2);
        assert_eq!(report.partitions[&1].produces.pending, 1);
        assert_eq!(report.operations["produce"].ok, 4);
        let text = report.to_string();
        assert!(
            text.ends_with("VALID: no anomalies in 2 partitions"),
            "{text}"
        );
        assert!(text.contains("kill-leader x1"), "{text}");
        assert!(text.contains("final log [0, 4) on nodes 1, 2"), "{text}");
    }

    #[test]
    fn acked_write_missing_from_the_final_log_is_lost() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0).ok(0, 1, 1, 1);
        h.read_all(&[1, 2], 0, &[&value(1, 0, 0)]);
        // The high watermark is 1 on both nodes: only the lost write is wrong.
        let report = expect_only(&h, &[AnomalyKind::LostWrite]);
        let lost = &report.partitions[&0].anomalies[&AnomalyKind::LostWrite];
        assert_eq!(lost.count, 1);
        assert!(lost.examples[0].contains("\"1-0-1\""), "{lost:?}");
        assert!(report.to_string().contains("INVALID"));
    }

    #[test]
    fn acked_write_at_another_offset_is_lost() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0).ok(0, 2, 0, 1);
        h.produce(0, 3, 0, Some(Kind::Info), None);
        // 2-0-0 was acknowledged at 1 but sits at 2, behind an indeterminate write.
        h.read_all(&[1, 2], 0, &["1-0-0", "3-0-0", "2-0-0"]);
        let report = expect_only(&h, &[AnomalyKind::LostWrite]);
        let lost = &report.partitions[&0].anomalies[&AnomalyKind::LostWrite];
        assert!(
            lost.examples[0].contains("found at offsets {2}"),
            "{lost:?}"
        );
    }

    #[test]
    fn acks_below_every_log_start_are_not_judged() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0).ok(0, 1, 1, 1);
        h.read(1, 0, 1, 2, &[(1, "1-0-1")]);
        h.read(2, 0, 1, 2, &[(1, "1-0-1")]);
        let report = expect_only(&h, &[]);
        assert_eq!(report.partitions[&0].acked_below_log_start, 1);
    }

    #[test]
    fn value_at_two_offsets_is_a_duplicate() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0).ok(0, 1, 1, 1);
        h.read_all(&[1, 2], 0, &["1-0-0", "1-0-1", "1-0-0"]);
        expect_only(&h, &[AnomalyKind::Duplicate]);
    }

    #[test]
    fn nodes_with_different_values_at_one_offset_diverge() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0);
        h.produce(0, 2, 0, Some(Kind::Info), None);
        h.produce(0, 3, 0, Some(Kind::Info), None);
        h.read(1, 0, 0, 2, &[(0, "1-0-0"), (1, "2-0-0")]);
        h.read(2, 0, 0, 2, &[(0, "1-0-0"), (1, "3-0-0")]);
        let report = expect_only(&h, &[AnomalyKind::Divergence]);
        let found = &report.partitions[&0].anomalies[&AnomalyKind::Divergence];
        assert_eq!(found.count, 1);
        assert!(found.examples[0].contains("offset 1"), "{found:?}");
    }

    #[test]
    fn nodes_with_different_high_watermarks_diverge() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0);
        h.produce(0, 1, 1, Some(Kind::Info), None);
        h.read(1, 0, 0, 2, &[(0, "1-0-0"), (1, "1-0-1")]);
        h.read(2, 0, 0, 1, &[(0, "1-0-0")]);
        let report = expect_only(&h, &[AnomalyKind::Divergence]);
        let found = &report.partitions[&0].anomalies[&AnomalyKind::Divergence];
        assert!(
            found.examples[0].contains("high watermarks differ"),
            "{found:?}"
        );
        assert!(report.to_string().contains("node 1 [0, 2), node 2 [0, 1)"));
    }

    #[test]
    fn poll_with_another_value_than_the_final_log_diverges() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0);
        h.produce(0, 2, 0, Some(Kind::Info), None);
        h.produce(0, 3, 0, Some(Kind::Info), None);
        h.poll("consumer-1", "g", &[(0, 0, "1-0-0"), (0, 1, "3-0-0")]);
        h.read_all(&[1, 2], 0, &["1-0-0", "2-0-0"]);
        expect_only(&h, &[AnomalyKind::Divergence]);
    }

    #[test]
    fn hole_in_a_final_read_is_a_gap() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0).ok(0, 1, 1, 1).ok(0, 1, 2, 2);
        let all = [(0, "1-0-0"), (1, "1-0-1"), (2, "1-0-2")];
        h.read(1, 0, 0, 3, &all);
        h.read(2, 0, 0, 3, &[all[0], all[2]]);
        let report = expect_only(&h, &[AnomalyKind::GapOrReorder]);
        let found = &report.partitions[&0].anomalies[&AnomalyKind::GapOrReorder];
        assert!(found.examples[0].contains("[1, 2) missing"), "{found:?}");
    }

    #[test]
    fn final_read_out_of_order_or_short_of_its_watermark_is_reported() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0).ok(0, 2, 0, 1);
        h.read(1, 0, 0, 2, &[(1, "2-0-0"), (0, "1-0-0")]);
        h.read(2, 0, 0, 3, &[(0, "1-0-0"), (1, "2-0-0")]);
        let report = check(&h.events, &opts(&[1, 2]));
        let found = &report.partitions[&0].anomalies[&AnomalyKind::GapOrReorder];
        // Node 1: a gap [0, 1), then 0 after 1. Node 2: ends at 2 with a watermark of 3.
        assert_eq!(found.count, 3, "{report}");
    }

    #[test]
    fn poll_offsets_going_down_within_one_poll_are_reordered() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0).ok(0, 1, 1, 1);
        h.poll("consumer-1", "g", &[(0, 1, "1-0-1"), (0, 0, "1-0-0")]);
        // The same offsets in separate polls are redeliveries, not reordering.
        h.poll("consumer-1", "g", &[(0, 1, "1-0-1")]);
        h.poll("consumer-1", "g", &[(0, 0, "1-0-0")]);
        h.read_all(&[1, 2], 0, &["1-0-0", "1-0-1"]);
        let report = expect_only(&h, &[AnomalyKind::GapOrReorder]);
        assert_eq!(
            report.partitions[&0].anomalies[&AnomalyKind::GapOrReorder].count,
            1
        );
    }

    #[test]
    fn producer_values_out_of_seq_order_are_reported() {
        let mut h = H::new();
        // Indeterminate, so only their order is judged.
        h.produce(0, 1, 0, Some(Kind::Info), None);
        h.produce(0, 1, 1, Some(Kind::Info), None);
        h.ok(0, 2, 0, 0);
        h.read_all(&[1, 2], 0, &["2-0-0", "1-0-1", "1-0-0"]);
        let report = expect_only(&h, &[AnomalyKind::ProducerOrder]);
        let found = &report.partitions[&0].anomalies[&AnomalyKind::ProducerOrder];
        assert!(
            found.examples[0].starts_with("producer 1: seq 0"),
            "{found:?}"
        );
    }

    #[test]
    fn failed_write_in_the_final_log_is_reported() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0);
        h.produce(0, 1, 1, Some(Kind::Fail), None);
        h.read_all(&[1, 2], 0, &["1-0-0", "1-0-1"]);
        let report = expect_only(&h, &[AnomalyKind::FailedWriteVisible]);
        let found = &report.partitions[&0].anomalies[&AnomalyKind::FailedWriteVisible];
        assert!(found.examples[0].contains("timed out"), "{found:?}");
    }

    #[test]
    fn polled_value_that_vanished_is_an_uncommitted_read() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0);
        h.produce(0, 1, 1, Some(Kind::Info), None);
        h.poll("consumer-1", "g", &[(0, 0, "1-0-0"), (0, 1, "1-0-1")]);
        h.read_all(&[1, 2], 0, &["1-0-0"]);
        expect_only(&h, &[AnomalyKind::UncommittedRead]);
    }

    #[test]
    fn values_nobody_produced_are_phantoms() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0).ok(1, 1, 0, 0);
        // In the log: never produced. In a poll: produced, but to partition 1.
        h.poll("consumer-1", "g", &[(0, 0, "1-1-0")]);
        h.read_all(&[1, 2], 0, &["1-0-0", "9-0-9"]);
        h.read_all(&[1, 2], 1, &["1-1-0"]);
        let report = expect_only(&h, &[AnomalyKind::Phantom]);
        let found = &report.partitions[&0].anomalies[&AnomalyKind::Phantom];
        assert_eq!(found.count, 2);
        let text = found.examples.join("\n");
        assert!(text.contains("no produce ever wrote it"), "{text}");
        assert!(text.contains("produced to partitions {1} only"), "{text}");
    }

    #[test]
    fn committed_offset_going_backwards_is_reported() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0).ok(0, 1, 1, 1);
        h.poll("consumer-1", "g", &[(0, 0, "1-0-0"), (0, 1, "1-0-1")]);
        h.commit("consumer-1", "g", &[(0, 2)]);
        h.committed("g", &[(0, 1)]);
        h.read_all(&[1, 2], 0, &["1-0-0", "1-0-1"]);
        let report = expect_only(&h, &[AnomalyKind::CommittedRegression]);
        let found = &report.partitions[&0].anomalies[&AnomalyKind::CommittedRegression];
        assert!(
            found.examples[0].starts_with("group g: committed 1"),
            "{found:?}"
        );
    }

    #[test]
    fn a_lower_commit_is_ignored_by_the_coordinator_not_a_regression() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0).ok(0, 1, 1, 1);
        h.poll("consumer-1", "g", &[(0, 0, "1-0-0"), (0, 1, "1-0-1")]);
        h.commit("consumer-1", "g", &[(0, 2)]);
        h.commit("consumer-2", "g", &[(0, 1)]);
        h.committed("g", &[(0, 2)]);
        h.read_all(&[1, 2], 0, &["1-0-0", "1-0-1"]);
        expect_only(&h, &[]);
    }

    #[test]
    fn overlapping_commits_may_complete_in_either_order() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0).ok(0, 1, 1, 1);
        h.poll("consumer-1", "g", &[(0, 0, "1-0-0"), (0, 1, "1-0-1")]);
        // Commit 2 is invoked before commit 1 completes: either may land last.
        let first = h.invoke("consumer-1", H::commit_op("g", &[(0, 1)]));
        let second = h.invoke("consumer-2", H::commit_op("g", &[(0, 2)]));
        h.line(
            second,
            "consumer-2",
            Kind::Ok,
            H::commit_op("g", &[(0, 2)]),
            None,
        );
        h.line(
            first,
            "consumer-1",
            Kind::Ok,
            H::commit_op("g", &[(0, 1)]),
            None,
        );
        // A failed commit of a lower offset is no regression either.
        let failed = h.invoke("consumer-1", H::commit_op("g", &[(0, 0)]));
        h.line(
            failed,
            "consumer-1",
            Kind::Fail,
            H::commit_op("g", &[(0, 0)]),
            None,
        );
        h.read_all(&[1, 2], 0, &["1-0-0", "1-0-1"]);
        expect_only(&h, &[]);
    }

    #[test]
    fn committed_offset_over_unpolled_records_skips_them() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0)
            .ok(0, 1, 1, 1)
            .ok(0, 1, 2, 2)
            .ok(0, 1, 3, 3);
        h.poll("consumer-1", "g", &[(0, 0, "1-0-0"), (0, 3, "1-0-3")]);
        // Another group's polls do not count for g.
        h.poll("consumer-9", "other", &[(0, 1, "1-0-1"), (0, 2, "1-0-2")]);
        h.committed("g", &[(0, 4)]);
        h.read_all(&[1, 2], 0, &["1-0-0", "1-0-1", "1-0-2", "1-0-3"]);
        let report = expect_only(&h, &[AnomalyKind::SkippedRecords]);
        let found = &report.partitions[&0].anomalies[&AnomalyKind::SkippedRecords];
        assert_eq!(found.count, 2);
        assert!(
            found.examples[0].contains("offsets [1, 3) never polled"),
            "{found:?}"
        );
    }

    #[test]
    fn long_stretch_without_acks_while_a_majority_is_up_is_unavailable() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0);
        h.produce(0, 1, 1, Some(Kind::Info), None);
        h.at(5_000).ok(0, 1, 2, 1);
        h.read_all(&[1, 2], 0, &["1-0-0", "1-0-2"]);
        let report = expect_only(&h, &[AnomalyKind::Unavailable]);
        let gap = report.partitions[&0].longest_gap.expect("gap");
        // From the first ack (t=1) to the last produce invoke (t=5000; acked at 5001).
        assert_eq!((gap.from_ms, gap.to_ms, gap.ms), (1, 5_000, 4_999));
    }

    #[test]
    fn unavailability_without_a_majority_is_not_counted() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0);
        h.at(500).health(false);
        h.produce(0, 1, 1, Some(Kind::Info), None);
        // The clock restarts when the majority comes back.
        h.at(8_000).health(true);
        h.at(8_600).ok(0, 1, 2, 1);
        h.read_all(&[1, 2], 0, &["1-0-0", "1-0-2"]);
        let report = expect_only(&h, &[]);
        let gap = report.partitions[&0].longest_gap.expect("gap");
        // To the last produce invoke; its ack at 8601 is past the end of the workload.
        assert_eq!((gap.from_ms, gap.to_ms), (8_000, 8_600));
    }

    #[test]
    fn unavailability_counts_up_to_the_last_produce_before_the_final_reads() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0);
        // Stuck from t=2 until the workload stops producing at t=3000.
        h.produce(0, 1, 1, Some(Kind::Info), None);
        h.at(3_000).produce(0, 1, 2, Some(Kind::Info), None);
        h.at(9_000).read_all(&[1, 2], 0, &["1-0-0"]);
        let report = expect_only(&h, &[AnomalyKind::Unavailable]);
        let gap = report.partitions[&0].longest_gap.expect("gap");
        assert_eq!((gap.from_ms, gap.to_ms), (1, 3_000));
    }

    #[test]
    fn missing_final_read_of_an_expected_node_is_reported() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0);
        h.read(1, 0, 0, 1, &[(0, "1-0-0")]);
        let report = expect_only(&h, &[AnomalyKind::MissingRead]);
        let found = &report.partitions[&0].anomalies[&AnomalyKind::MissingRead];
        assert!(found.examples[0].starts_with("node 2:"), "{found:?}");
        // Without expected nodes, a produced-to partition with no read at all is still missing.
        let mut h = H::new();
        h.ok(0, 1, 0, 0);
        let report = check(&h.events, &opts(&[]));
        assert_eq!(kinds(&report), [AnomalyKind::MissingRead], "{report}");
    }

    #[test]
    fn last_read_of_a_node_wins() {
        let mut h = H::new();
        h.ok(0, 1, 0, 0).ok(0, 1, 1, 1);
        // Node 2's first read, before it caught up, is superseded.
        h.read(2, 0, 0, 1, &[(0, "1-0-0")]);
        h.read_all(&[1, 2], 0, &["1-0-0", "1-0-1"]);
        expect_only(&h, &[]);
    }

    #[test]
    fn malformed_history_is_invalid() {
        let mut h = clean();
        h.line(
            999,
            "producer-1",
            Kind::Ok,
            H::produce_op(0, 1, 0, Some(0)),
            None,
        );
        let report = check(&h.events, &opts(&[1, 2]));
        assert!(!report.is_valid());
        assert_eq!(kinds(&report), [AnomalyKind::MalformedHistory], "{report}");
        assert!(report.to_string().contains("history problems:"));
    }

    #[test]
    fn history_without_produces_is_invalid() {
        let report = check(&[], &opts(&[1, 2]));
        assert_eq!(kinds(&report), [AnomalyKind::MalformedHistory], "{report}");
        assert!(report
            .to_string()
            .ends_with("INVALID: 1 anomaly (malformed-history 1)"));
    }

    #[test]
    fn examples_are_capped_and_the_report_serializes() {
        let mut h = H::new();
        for seq in 0..8 {
            h.ok(0, 1, seq, seq);
        }
        h.read_all(&[1, 2], 0, &[]);
        let report = expect_only(&h, &[AnomalyKind::LostWrite]);
        let lost = &report.partitions[&0].anomalies[&AnomalyKind::LostWrite];
        assert_eq!((lost.count, lost.examples.len()), (8, EXAMPLES_MAX));
        assert!(report.to_string().contains("... (8 in all)"));
        let json = serde_json::to_value(&report).expect("serialize");
        assert_eq!(json["valid"], false);
        assert_eq!(
            json["partitions"]["0"]["anomalies"]["lost-write"]["count"],
            8
        );
    }

    #[test]
    fn history_recorded_to_a_file_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        let recorder = Recorder::create(&path).expect("create");
        recorder.event(
            "nemesis",
            Op::Nemesis {
                name: "pause-leader".into(),
                detail: "node 2".into(),
            },
        );
        let mut values = Vec::new();
        for seq in 0..3 {
            let id = recorder.invoke("producer-1", &H::produce_op(0, 1, seq, None));
            let op = H::produce_op(0, 1, seq, Some(seq));
            recorder.complete(id, "producer-1", Kind::Ok, op, None);
            values.push(value(1, 0, seq));
        }
        let records: Vec<Seen> = values
            .iter()
            .enumerate()
            .map(|(offset, value)| Seen {
                partition: 0,
                offset: offset as u64,
                value: value.clone(),
            })
            .collect();
        for node in [1, 2, 3] {
            let read = |records: Vec<Seen>| Op::Read {
                node,
                partition: 0,
                log_start: 0,
                high_watermark: records.len() as u64,
                records,
            };
            let id = recorder.invoke("reader", &read(Vec::new()));
            let records = if node == 3 {
                records[..2].to_vec() // node 3 lost its last record
            } else {
                records.clone()
            };
            recorder.complete(id, "reader", Kind::Ok, read(records), None);
        }
        let events = crate::history::read(&path).expect("read");
        let report = check(&events, &opts(&[1, 2, 3]));
        assert_eq!(kinds(&report), [AnomalyKind::Divergence], "{report}");
        assert_eq!(report.nemeses.get("pause-leader"), Some(&1));
        let report = check(&events, &opts(&[1, 2]));
        assert!(
            !report.is_valid(),
            "node 3's read is checked even if not expected"
        );
    }
}
