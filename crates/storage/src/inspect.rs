//! Offline inspection of log files, read-only: what `skein-node debug dump-segment` and
//! `skein-node debug verify` print.

use std::fs::File;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::{Result, StorageError};
use crate::index::{OffsetIndex, TimeIndex};
use crate::mmap;
use crate::segment;
use skein_record::{self as batch, BatchHeader, HEADER_LEN};

/// One batch found in a segment file.
#[derive(Debug, Clone)]
pub struct BatchSummary {
    /// Byte position in the file.
    pub position: u64,
    /// The parsed header (its leader epoch is the entry's Raft term).
    pub header: BatchHeader,
    /// The entry's Raft index: the segment's base index (from its `.index` header) plus the
    /// batch's position in the file; `None` when the `.index` file is unreadable.
    pub raft_index: Option<u64>,
    /// Whether the CRC matched.
    pub crc_ok: bool,
}

/// How a scan of a segment file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// At the end of the file.
    EndOfFile,
    /// At zeroed (preallocated) space, `bytes` long.
    Preallocated {
        /// Where the zeros start.
        position: u64,
        /// How many bytes remain in the file.
        bytes: u64,
    },
    /// At bytes that are not a batch.
    Invalid {
        /// Where.
        position: u64,
        /// Why.
        reason: String,
    },
}

/// The batches of one segment file.
#[derive(Debug, Clone)]
pub struct SegmentDump {
    /// The file.
    pub path: PathBuf,
    /// Batches in file order (a batch with a bad CRC is listed and the scan goes on after it).
    pub batches: Vec<BatchSummary>,
    /// Where the scan stopped.
    pub end: ScanEnd,
}

fn map_file(path: &Path) -> Result<Bytes> {
    let f =
        File::open(path).map_err(|e| StorageError::io(format!("open {}", path.display()), e))?;
    let len = f
        .metadata()
        .map_err(|e| StorageError::io(format!("stat {}", path.display()), e))?
        .len();
    mmap::map_bytes(&f, len).map_err(|e| StorageError::io(format!("map {}", path.display()), e))
}

/// Lists every batch of a `.log` file without changing it.
pub fn dump_segment(path: impl AsRef<Path>) -> Result<SegmentDump> {
    let path = path.as_ref();
    let data = map_file(path)?;
    let base_index = map_file(&path.with_extension("index"))
        .ok()
        .and_then(|b| OffsetIndex::parse(b, true).ok())
        .map(|i| i.base_index());
    let mut pos = 0usize;
    let mut batches = Vec::new();
    let end = loop {
        if pos >= data.len() {
            break ScanEnd::EndOfFile;
        }
        let rest = &data[pos..];
        if rest[..rest.len().min(HEADER_LEN)].iter().all(|b| *b == 0) {
            break ScanEnd::Preallocated {
                position: pos as u64,
                bytes: rest.len() as u64,
            };
        }
        let h = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => {
                break ScanEnd::Invalid {
                    position: pos as u64,
                    reason: e.to_string(),
                }
            }
        };
        let len = h.batch_len as usize;
        if len > rest.len() {
            break ScanEnd::Invalid {
                position: pos as u64,
                reason: format!("batch of {len} bytes runs past the end of the file"),
            };
        }
        let crc_ok = batch::validate(&rest[..len]).is_ok();
        batches.push(BatchSummary {
            position: pos as u64,
            header: h,
            raft_index: base_index.map(|b| b + batches.len() as u64),
            crc_ok,
        });
        pos += len;
    };
    Ok(SegmentDump {
        path: path.to_path_buf(),
        batches,
        end,
    })
}

/// The result of verifying one partition log directory.
#[derive(Debug, Clone, Default)]
pub struct LogReport {
    /// The directory.
    pub dir: PathBuf,
    /// Segments checked.
    pub segments: usize,
    /// Batches checked.
    pub batches: u64,
    /// Records in those batches.
    pub records: u64,
    /// Index entries checked.
    pub index_entries: u64,
    /// Everything found wrong, each naming the file and position.
    pub problems: Vec<String>,
    /// Notes that are not problems (a torn tail that recovery will cut, for instance).
    pub notes: Vec<String>,
}

/// Verifies every partition log under `data_dir` (any directory holding `.log` segments).
pub fn verify_tree(data_dir: impl AsRef<Path>) -> Result<Vec<LogReport>> {
    let mut dirs = Vec::new();
    collect_log_dirs(data_dir.as_ref(), &mut dirs)?;
    dirs.sort();
    dirs.iter().map(verify_log_dir).collect()
}

fn collect_log_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
    let mut has_log = false;
    for entry in rd {
        let entry = entry.map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
        let p = entry.path();
        let ft = entry
            .file_type()
            .map_err(|e| StorageError::io(format!("stat {}", p.display()), e))?;
        if ft.is_dir() {
            collect_log_dirs(&p, out)?;
        } else if entry
            .file_name()
            .to_str()
            .and_then(segment::parse_file_name)
            .is_some_and(|(_, ext)| ext == "log")
        {
            has_log = true;
        }
    }
    if has_log {
        out.push(dir.to_path_buf());
    }
    Ok(())
}

/// Verifies one partition log directory: every batch's CRC, the offset and Raft index sequence
/// across segments, and every index entry against the batch it points at.
pub fn verify_log_dir(dir: &PathBuf) -> Result<LogReport> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(segment::parse_file_name)
                .filter(|(_, ext)| *ext == "log")
                .map(|(b, _)| b)
        })
        .collect();
    bases.sort_unstable();
    let mut report = LogReport {
        dir: dir.clone(),
        ..LogReport::default()
    };
    let mut expected: Option<(u64, u64)> = None;
    for (i, base) in bases.iter().enumerate() {
        let last = i + 1 == bases.len();
        let path = dir.join(segment::file_name(*base, "log"));
        let dump = dump_segment(&path)?;
        report.segments += 1;
        let name = path.display().to_string();
        let mut next = expected;
        if dump
            .batches
            .first()
            .is_some_and(|b| b.header.base_offset != *base)
        {
            report.problems.push(format!(
                "{name}: first batch has base offset {} but the file is named {base}",
                dump.batches[0].header.base_offset
            ));
        }
        let mut max_ts_before: Vec<(u64, i64)> = Vec::with_capacity(dump.batches.len());
        let mut running = i64::MIN;
        for b in &dump.batches {
            let h = &b.header;
            report.batches += 1;
            report.records += u64::from(h.record_count);
            if !b.crc_ok {
                report.problems.push(format!(
                    "{name}: CRC mismatch in batch at position {}",
                    b.position
                ));
            }
            if let Some((o, ix)) = next {
                let index = b.raft_index.unwrap_or(ix);
                if h.base_offset != o || index != ix {
                    report.problems.push(format!(
                        "{name}: batch at position {} has offset {} / raft index {index}, expected {o} / {ix}",
                        b.position, h.base_offset
                    ));
                }
            }
            if h.leader_epoch < 0 {
                report.problems.push(format!(
                    "{name}: batch at position {} has a negative leader epoch {}",
                    b.position, h.leader_epoch
                ));
            }
            max_ts_before.push((h.base_offset, running));
            running = running.max(h.max_timestamp);
            let index = b.raft_index.or(next.map(|(_, ix)| ix)).unwrap_or(0);
            next = Some((h.next_offset(), index + 1));
        }
        match &dump.end {
            ScanEnd::EndOfFile => {}
            ScanEnd::Preallocated { position, bytes } => {
                if !last {
                    report.problems.push(format!(
                        "{name}: sealed segment has {bytes} zero bytes at position {position}"
                    ));
                }
            }
            ScanEnd::Invalid { position, reason } => {
                if last {
                    report.notes.push(format!(
                        "{name}: torn tail at position {position} ({reason}); recovery cuts it"
                    ));
                } else {
                    report.problems.push(format!(
                        "{name}: invalid bytes at position {position}: {reason}"
                    ));
                }
            }
        }
        // Index entries must point at batch starts with matching offset and index.
        let index_path = dir.join(segment::file_name(*base, "index"));
        match map_file(&index_path).map(|b| OffsetIndex::parse(b, true)) {
            Ok(Ok(idx)) => {
                if let Some((_, ix)) = expected.filter(|_| !dump.batches.is_empty()) {
                    if idx.base_index() != ix {
                        report.problems.push(format!(
                            "{}: base raft index {} but the previous segment ends at {ix}",
                            index_path.display(),
                            idx.base_index(),
                        ));
                    }
                }
                for k in 0..idx.len() {
                    let e = idx.get(k);
                    report.index_entries += 1;
                    let hit = dump
                        .batches
                        .binary_search_by_key(&u64::from(e.position), |b| b.position)
                        .ok()
                        .map(|j| (j, &dump.batches[j].header));
                    let ok = hit.is_some_and(|(j, h)| {
                        h.base_offset == base + u64::from(e.rel_offset) && j == e.rel_index as usize
                    });
                    if !ok {
                        report.problems.push(format!(
                            "{}: entry {k} points at position {} which is not the batch it names",
                            index_path.display(),
                            e.position
                        ));
                    }
                }
            }
            Ok(Err(why)) => report.problems.push(format!(
                "{}: unreadable ({why:?}); opening the log rebuilds it",
                index_path.display()
            )),
            Err(e) => report
                .problems
                .push(format!("{}: {e}", index_path.display())),
        }
        let time_path = dir.join(segment::file_name(*base, "timeindex"));
        match map_file(&time_path).map(|b| TimeIndex::parse(b, true)) {
            Ok(Ok(t)) => {
                for k in 0..t.len() {
                    let e = t.get(k);
                    let o = base + u64::from(e.rel_offset);
                    // Every batch before `o` must have a max timestamp <= e.timestamp.
                    let j = max_ts_before.partition_point(|(bo, _)| *bo < o);
                    let before = max_ts_before.get(j).map_or(running, |(_, m)| *m);
                    if before > e.timestamp {
                        report.problems.push(format!(
                            "{}: entry {k} claims max timestamp {} before offset {o}, but a batch has {before}",
                            time_path.display(),
                            e.timestamp
                        ));
                    }
                }
            }
            Ok(Err(why)) => report.problems.push(format!(
                "{}: unreadable ({why:?}); opening the log rebuilds it",
                time_path.display()
            )),
            Err(e) => report
                .problems
                .push(format!("{}: {e}", time_path.display())),
        }
        expected = next;
    }
    Ok(report)
}
