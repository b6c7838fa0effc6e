//! What an open partition log costs the process besides disk: file descriptors and memory maps.
//! A node holds thousands of replicas, so both must not grow with the number of segments.
//!
//! Tests run in parallel threads of one process, so every count is restricted to the files of the
//! test's own log directory: the descriptors in `/proc/self/fd` whose link points into it and
//! the lines of `/proc/self/maps` that name a file in it.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use skein_record::BatchBuilder;
use skein_storage::{FlushPolicy, LogConfig, PartitionLog, Retention};

/// The files inside `dir` that this process holds open, one entry per descriptor.
fn open_files_in(dir: &Path) -> Vec<PathBuf> {
    let dir = dir.canonicalize().expect("canonical log directory");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("list /proc/self/fd") {
        // Another thread may close a descriptor between the listing and the readlink.
        let Ok(entry) = entry else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.starts_with(&dir) {
            out.push(target);
        }
    }
    out.sort();
    out
}

/// The memory maps of files inside `dir`, as the file each one maps (one entry per map).
fn maps_in(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().expect("canonical log directory");
    let prefix = format!("{}/", dir.display());
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    let mut out: Vec<String> = maps
        .lines()
        .filter_map(|l| l.find(&prefix).map(|at| l[at + prefix.len()..].to_owned()))
        .collect();
    out.sort();
    out
}

fn batch(value_len: usize, ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(ts);
    b.push(ts, Some(b"k"), Some(&vec![b'v'; value_len]), &[]);
    b.finish()
}

/// Small segments with several index entries each.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 16 * 1024,
        batch_bytes_max: 8 * 1024,
        index_interval_bytes: 512,
        flush: FlushPolicy::Never,
        retention: Retention::default(),
        segment_age_max: None,
        preallocate: true,
        preallocate_step_bytes: 4 * 1024,
        verify_on_open: true,
    }
}

const SEALED: usize = 5;

/// A log in `dir` with `SEALED` sealed segments and a few batches in the active one, flushed.
fn log_with_sealed_segments(dir: &Path) -> PartitionLog {
    let mut log = PartitionLog::open(dir, config()).expect("open");
    let mut ts = 1_000;
    while log.segment_count() < SEALED + 1 {
        log.append(&batch(1000, ts)).expect("append");
        ts += 1;
    }
    for _ in 0..3 {
        log.append(&batch(1000, ts)).expect("append");
        ts += 1;
    }
    log.flush().expect("flush");
    log
}

fn active_log_file(dir: &Path, log: &PartitionLog) -> PathBuf {
    let last = log.segment_count() - 1;
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs[last].canonicalize().expect("canonical")
}

/// Prints what the log holds and checks the bounds: one descriptor (the active segment's
/// `.log`), and one map per segment (its `.log`; indexes of small sealed segments are read
/// into memory, not mapped).
fn check_idle_costs(dir: &Path, log: &PartitionLog, when: &str) {
    let fds = open_files_in(dir);
    let maps = maps_in(dir);
    eprintln!(
        "{when}: {} segments, {} descriptors {fds:?}, {} maps {maps:?}",
        log.segment_count(),
        fds.len(),
        maps.len()
    );
    assert_eq!(fds, vec![active_log_file(dir, log)], "{when}: descriptors");
    assert!(
        maps.len() <= log.segment_count(),
        "{when}: {} maps for {} segments",
        maps.len(),
        log.segment_count()
    );
    assert!(maps.iter().all(|m| m.ends_with(".log")), "{when}: {maps:?}");
}

#[test]
fn an_idle_log_holds_one_descriptor_and_one_map_per_segment_however_many_are_sealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = log_with_sealed_segments(dir.path());
    check_idle_costs(dir.path(), &log, "after rolling");
    // A copy: a slice would keep the map, and count against the reopened log.
    let before = log.read(0, 1 << 20).expect("read").bytes.to_vec();
    drop(log);
    assert!(
        open_files_in(dir.path()).is_empty(),
        "closed log holds no descriptor"
    );

    for round in ["first reopen", "second reopen"] {
        let log = PartitionLog::open(dir.path(), config()).expect("reopen");
        assert_eq!(log.segment_count(), SEALED + 1);
        check_idle_costs(dir.path(), &log, round);
        // Sealed segments are read through their maps alone.
        assert_eq!(log.read(0, 1 << 20).expect("read").bytes, before);
        assert_eq!(
            log.entries(0, log.next_index(), u64::MAX)
                .expect("entries")
                .len() as u64,
            log.next_index()
        );
    }
}

#[test]
fn large_indexes_of_sealed_segments_are_mapped_and_read_without_their_descriptors() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An index entry for every batch: each sealed segment's `.index` is larger than a page.
    let config = LogConfig {
        segment_bytes_max: 64 * 1024,
        index_interval_bytes: 1,
        ..config()
    };
    let mut log = PartitionLog::open(dir.path(), config.clone()).expect("open");
    let mut ts = 1_000;
    while log.segment_count() < 3 {
        log.append(&batch(10, ts)).expect("append");
        ts += 1;
    }
    log.flush().expect("flush");
    let expected = log.read(0, 1 << 20).expect("read").bytes.to_vec();
    let (next_offset, next_index) = (log.next_offset(), log.next_index());
    drop(log);

    let log = PartitionLog::open(dir.path(), config).expect("reopen");
    let maps = maps_in(dir.path());
    let index_maps = maps.iter().filter(|m| m.ends_with(".index")).count();
    assert_eq!(
        index_maps, 2,
        "each sealed segment's large .index is mapped: {maps:?}"
    );
    assert_eq!(
        open_files_in(dir.path()),
        vec![active_log_file(dir.path(), &log)]
    );
    // Lookups through the mapped indexes, at every offset.
    assert_eq!(log.read(0, 1 << 20).expect("read").bytes, expected);
    for offset in (0..next_offset).step_by(7) {
        let slice = log.read(offset, 1).expect("read one batch");
        assert!(slice.next_offset > offset, "no batch for offset {offset}");
    }
    let entries = log.entries(0, next_index, u64::MAX).expect("entries");
    assert_eq!(entries.len() as u64, next_index);
    assert_eq!(log.offset_for_timestamp(1_010).expect("ts"), Some(10));
}

#[test]
fn truncation_retention_and_reset_leave_one_descriptor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = log_with_sealed_segments(dir.path());
    // Into the middle of a sealed segment: it is opened again and becomes the active one.
    let mid = log
        .entries(0, log.next_index(), u64::MAX)
        .expect("entries")
        .len() as u64
        / 2;
    log.truncate_from_index(mid)
        .expect("truncate into a sealed segment");
    assert!(log.segment_count() < SEALED + 1);
    check_idle_costs(dir.path(), &log, "after truncating into a sealed segment");
    let term = log.last_entry().map_or(0, |(t, _)| t);
    log.append_entry(&batch(1000, 9_000), term + 1, mid)
        .expect("append after truncation");
    log.flush().expect("flush");
    check_idle_costs(dir.path(), &log, "after appending to the reopened segment");

    // Exactly at a segment's end: the previous segment is reopened for appends.
    let segments = log.segment_count();
    while log.segment_count() == segments {
        log.append(&batch(1000, 9_001)).expect("append");
    }
    let boundary = log.next_index() - 1; // the first entry of the new segment
    log.truncate_from_index(boundary)
        .expect("truncate at the boundary");
    assert_eq!(log.segment_count(), segments);
    check_idle_costs(dir.path(), &log, "after truncating at a segment boundary");
    log.append(&batch(1000, 9_002)).expect("append");
    log.flush().expect("flush");

    let start = log.next_offset() - 1;
    log.advance_log_start(start).expect("delete a prefix");
    check_idle_costs(dir.path(), &log, "after deleting a prefix");
    log.reset(1_000, 2_000).expect("reset");
    check_idle_costs(dir.path(), &log, "after a reset");
    drop(log);
    let log = PartitionLog::open(dir.path(), config()).expect("reopen");
    assert_eq!((log.next_offset(), log.next_index()), (1_000, 2_000));
}
