//! `skein-node debug ...`: offline inspection of a data directory. Never changes a file.

use std::fmt::Write as _;
use std::path::Path;

use skein_storage::inspect::{self, ScanEnd};

/// Prints every batch of one `.log` file. Returns the text and whether the file is sound (every
/// CRC matches and nothing but zeros follows the last batch).
pub fn dump_segment(path: &Path) -> anyhow::Result<(String, bool)> {
    let dump = inspect::dump_segment(path)?;
    let mut out = String::new();
    let mut sound = true;
    writeln!(out, "segment {}", dump.path.display())?;
    writeln!(
        out,
        "{:>10} {:>12} {:>8} {:>6} {:>10} {:>7} {:>8} {:>14} {:>14} {:>6}",
        "position",
        "base_offset",
        "records",
        "term",
        "raft_index",
        "kind",
        "bytes",
        "first_ts",
        "max_ts",
        "crc"
    )?;
    for b in &dump.batches {
        let h = &b.header;
        sound &= b.crc_ok;
        writeln!(
            out,
            "{:>10} {:>12} {:>8} {:>6} {:>10} {:>7} {:>8} {:>14} {:>14} {:>6}",
            b.position,
            h.base_offset,
            h.record_count,
            h.leader_epoch,
            b.raft_index
                .map_or_else(|| "?".to_owned(), |i| i.to_string()),
            format!("{:?}", h.kind).to_lowercase(),
            h.batch_len,
            h.first_timestamp,
            h.max_timestamp,
            if b.crc_ok { "ok" } else { "BAD" }
        )?;
    }
    let records: u64 = dump
        .batches
        .iter()
        .map(|b| u64::from(b.header.record_count))
        .sum();
    match &dump.end {
        ScanEnd::EndOfFile => writeln!(
            out,
            "end of file after {} batches, {records} records",
            dump.batches.len()
        )?,
        ScanEnd::Preallocated { position, bytes } => writeln!(
            out,
            "{} batches, {records} records; {bytes} preallocated bytes from position {position}",
            dump.batches.len()
        )?,
        ScanEnd::Invalid { position, reason } => {
            sound = false;
            writeln!(
                out,
                "{} batches, {records} records; INVALID bytes at position {position}: {reason}",
                dump.batches.len()
            )?
        }
    }
    Ok((out, sound))
}

/// Verifies every partition log under a data directory. Returns the text and whether no problem
/// was found.
pub fn verify(data_dir: &Path) -> anyhow::Result<(String, bool)> {
    if !data_dir.is_dir() {
        anyhow::bail!(
            "{} is not a directory; pass the node's --data-dir",
            data_dir.display()
        );
    }
    let reports = inspect::verify_tree(data_dir)?;
    let mut out = String::new();
    let mut ok = true;
    for r in &reports {
        let status = if r.problems.is_empty() {
            "ok"
        } else {
            "DAMAGED"
        };
        writeln!(
            out,
            "{status:8} {} ({} segments, {} batches, {} records, {} index entries)",
            r.dir.display(),
            r.segments,
            r.batches,
            r.records,
            r.index_entries
        )?;
        for n in &r.notes {
            writeln!(out, "         note: {n}")?;
        }
        for p in &r.problems {
            writeln!(out, "         problem: {p}")?;
        }
        ok &= r.problems.is_empty();
    }
    writeln!(
        out,
        "{} partition logs checked, {} damaged",
        reports.len(),
        reports.iter().filter(|r| !r.problems.is_empty()).count()
    )?;
    Ok((out, ok))
}
