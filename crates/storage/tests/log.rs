//! Behaviour of the partition log through its public API: append, read, roll-over, recovery,
//! truncation, retention and bad input.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use skein_record::{self as batch, BatchBuilder, BatchIter, EntryKind, InternalKind, RecordError};
use skein_storage::{FlushPolicy, LogConfig, PartitionLog, Retention, StorageError};

fn batch_of(records: usize, value_len: usize, ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(ts);
    let value = vec![b'v'; value_len];
    for i in 0..records {
        let key = format!("k{i}");
        b.push(ts + i as i64, Some(key.as_bytes()), Some(&value), &[]);
    }
    b.finish()
}

/// A batch whose last byte is not zero (the last record ends with a header value), so that
/// cutting any suffix of it and filling with zeros really changes it.
fn batch_ending_nonzero(records: usize, ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(ts);
    for i in 0..records {
        let h = [batch::HeaderRef {
            key: b"h",
            value: Some(b"x"),
        }];
        b.push(ts + i as i64, Some(b"key"), Some(&[b'v'; 40]), &h);
    }
    let out = b.finish();
    assert_ne!(out[out.len() - 1], 0);
    out
}

fn small_config() -> LogConfig {
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

/// Every record of the log, read through `read`, as (offset, value length).
fn all_offsets(log: &PartitionLog) -> Vec<u64> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.next_offset() {
        let slice = log.read(at, 4096).expect("read");
        assert!(!slice.bytes.is_empty(), "empty read at {at} below the end");
        for b in BatchIter::new(slice.bytes.clone()) {
            let b = b.expect("valid batch");
            for r in b.records().expect("records") {
                let r = r.expect("record");
                if r.offset >= at {
                    out.push(r.offset);
                }
            }
        }
        assert!(slice.next_offset > at, "no progress at {at}");
        at = slice.next_offset;
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

#[test]
fn offsets_are_dense_across_segment_rolls_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    let mut expected_next = 0;
    for i in 0..200 {
        let n = 1 + i % 7;
        let info = log
            .append(&batch_of(n, 100, 1_000 + i as i64))
            .expect("append");
        assert_eq!(info.base_offset, expected_next);
        assert_eq!(info.raft_index, i as u64);
        expected_next += n as u64;
        assert_eq!(info.next_offset, expected_next);
    }
    log.flush().expect("flush");
    assert!(
        log.segment_count() > 5,
        "segments rolled: {}",
        log.segment_count()
    );
    let offsets = all_offsets(&log);
    assert_eq!(offsets, (0..expected_next).collect::<Vec<_>>());
    let last = log.last_entry();
    drop(log);

    let log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.next_offset(), expected_next);
    assert_eq!(log.next_index(), 200);
    assert_eq!(log.last_entry(), last);
    assert_eq!(all_offsets(&log), (0..expected_next).collect::<Vec<_>>());
    // Entries by Raft index cross segments and come back stamped.
    let entries = log.entries(0, 200, u64::MAX).expect("entries");
    assert_eq!(entries.len(), 200);
    for (i, e) in entries.iter().enumerate() {
        let term = log.term_at(i as u64).expect("term");
        assert_eq!(
            i64::from(e.header().leader_epoch),
            term as i64,
            "the term is the epoch"
        );
    }
    // Batches do not carry their Raft index; the log knows it across segments.
    let from_57 = log.entries(57, 58, u64::MAX).expect("entry 57");
    assert_eq!(
        from_57[0].header().base_offset,
        entries[57].header().base_offset
    );
    // A small byte budget still returns at least one entry.
    assert_eq!(log.entries(57, 200, 1).expect("entries").len(), 1);
}

#[test]
fn reads_are_bounded_and_return_whole_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    for _ in 0..10 {
        log.append(&batch_of(10, 50, 5)).expect("append");
    }
    // Offset 25 is inside the third batch [20, 30): the read starts with that whole batch.
    let s = log.read(25, 1).expect("read");
    let batches: Vec<_> = BatchIter::new(s.bytes.clone())
        .collect::<Result<_, _>>()
        .expect("valid");
    assert_eq!(batches.len(), 1, "max_bytes 1 still returns one batch");
    assert_eq!(batches[0].header().base_offset, 20);
    assert_eq!(s.next_offset, 30);
    // The upper bound (a high watermark) is respected on batch boundaries.
    let s = log.read_upto(0, u64::MAX, 40).expect("read");
    assert_eq!(s.next_offset, 40);
    let s = log.read_upto(40, u64::MAX, 40).expect("read");
    assert!(s.bytes.is_empty());
    assert_eq!(s.next_offset, 40);
    // Reading at the end is empty; past the end is an error.
    assert!(log.read(100, 100).expect("read").bytes.is_empty());
    assert!(matches!(
        log.read(101, 100),
        Err(StorageError::OffsetOutOfRange {
            requested: 101,
            start: 0,
            end: 100
        })
    ));
}

#[test]
fn bad_input_is_rejected_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    log.append(&batch_of(3, 10, 1)).expect("append");

    let huge = batch_of(100, 100, 1);
    assert!(matches!(
        log.append(&huge),
        Err(StorageError::BatchTooLarge { .. })
    ));

    let mut corrupt = batch_of(2, 10, 1).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x40;
    assert!(matches!(
        log.append(&corrupt),
        Err(StorageError::Record(RecordError::CrcMismatch { .. }))
    ));

    assert!(matches!(
        log.append(&[1, 2, 3]),
        Err(StorageError::Record(RecordError::BatchTooShort { .. }))
    ));

    let ok = batch_of(1, 10, 1);
    assert!(matches!(
        log.append_entry(&ok, 0, 5),
        Err(StorageError::NonContiguousIndex {
            expected: 1,
            got: 5
        })
    ));
    log.append_entry(&ok, 3, 1).expect("term 3");
    assert!(matches!(
        log.append_entry(&ok, 2, 2),
        Err(StorageError::TermRegression { last: 3, got: 2 })
    ));
    assert_eq!(log.next_offset(), 4);
    assert_eq!(log.next_index(), 2);
    assert!(!log.is_poisoned());
    assert_eq!(all_offsets(&log), vec![0, 1, 2, 3]);
}

#[test]
fn raft_entries_of_other_kinds_take_no_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    log.append_entry(
        &batch::internal_batch(InternalKind::Membership, 1, b"m"),
        1,
        0,
    )
    .expect("membership");
    log.append_entry(&batch_of(2, 5, 1), 1, 1).expect("data");
    log.append_entry(&batch::internal_batch(InternalKind::Blank, 2, b""), 2, 2)
        .expect("blank");
    let info = log.append_entry(&batch_of(2, 5, 1), 2, 3).expect("data");
    assert_eq!(info.base_offset, 2);
    assert_eq!(log.next_offset(), 4);
    assert_eq!(all_offsets(&log), vec![0, 1, 2, 3]);
    let e = log.entry(2).expect("entry 2");
    assert_eq!(e.header().kind, EntryKind::Blank);
    assert_eq!(e.header().leader_epoch, 2);
    assert_eq!(log.term_at(2).expect("term"), 2);
    assert_eq!(log.last_entry(), Some((2, 3)));
    // Reads never hand out internal entries: from offset 0, the membership entry is skipped
    // and the read ends before the blank one; the next read skips it.
    let first = log.read(0, u64::MAX).expect("read");
    let kinds: Vec<_> = BatchIter::new(first.bytes.clone())
        .map(|b| b.expect("valid").header().kind)
        .collect();
    assert_eq!(kinds, vec![EntryKind::Data]);
    assert_eq!(first.next_offset, 2);
    let second = log.read(2, u64::MAX).expect("read");
    let kinds: Vec<_> = BatchIter::new(second.bytes)
        .map(|b| b.expect("valid").header().kind)
        .collect();
    assert_eq!(kinds, vec![EntryKind::Data]);
    assert_eq!(second.next_offset, 4);
}

#[test]
fn a_term_beyond_the_leader_epoch_field_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    let term = i32::MAX as u64 + 1;
    assert!(matches!(
        log.append_entry(&batch_of(2, 5, 1), term, 0),
        Err(StorageError::TermTooLarge { .. })
    ));
    assert_eq!(log.next_index(), 0, "nothing was written");
}

#[test]
fn the_base_index_lives_in_the_index_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
        log.reset(0, 40).expect("start at raft index 40");
        for i in 0..60 {
            log.append_entry(&batch_of(5, 200, 1), 1, 40 + i)
                .expect("append");
        }
        log.flush().expect("flush");
        assert!(log.segment_count() > 2);
    }
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .filter(|n| n.ends_with(".index"))
        .collect();
    names.sort();
    // A damaged index of a later segment is rebuilt from the previous segment's end.
    let second = dir.path().join(&names[1]);
    std::fs::write(&second, b"garbage").expect("damage");
    let log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!((log.first_index(), log.next_index()), (40, 100));
    assert_eq!(log.entries(40, 100, u64::MAX).expect("entries").len(), 60);
    drop(log);
    // The first segment's base index has no other witness: refused, never guessed.
    let first = dir.path().join(&names[0]);
    let mut bytes = std::fs::read(&first).expect("read");
    bytes[9] ^= 1;
    std::fs::write(&first, &bytes).expect("damage");
    let err = PartitionLog::open(dir.path(), small_config()).expect_err("lost base index");
    assert!(matches!(err, StorageError::LostBaseIndex { .. }), "{err}");
}

#[test]
fn torn_tail_cut_at_every_byte_recovers_exactly_the_complete_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("base");
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        ..small_config()
    };
    let (tail_start, tail_end, next_before) = {
        let mut log = PartitionLog::open(&base, config.clone()).expect("open");
        for i in 0..20 {
            log.append(&batch_of(3, 40, i)).expect("append");
        }
        let next_before = log.next_offset();
        let last = batch_ending_nonzero(4, 99);
        log.append(&last).expect("append last");
        log.flush().expect("flush");
        let end = log.size_bytes();
        (end - last.len() as u64, end, next_before)
    };
    let log_file = base.join("00000000000000000000.log");
    for cut in tail_start..tail_end {
        for zero_instead in [false, true] {
            let case = dir.path().join(format!("cut-{cut}-{zero_instead}"));
            copy_dir(&base, &case);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(case.join(log_file.file_name().expect("name")))
                .expect("open copy");
            if zero_instead {
                // The tail of the last write never reached the disk: zeros, size unchanged.
                use std::os::unix::fs::FileExt;
                let zeros = vec![0u8; (tail_end - cut) as usize];
                f.write_all_at(&zeros, cut).expect("zero");
            } else {
                f.set_len(cut).expect("cut");
            }
            drop(f);
            let mut log = PartitionLog::open(&case, config.clone())
                .unwrap_or_else(|e| panic!("reopen after cut at {cut}: {e}"));
            assert_eq!(log.next_offset(), next_before, "cut at {cut}");
            assert_eq!(log.next_index(), 20, "cut at {cut}");
            assert_eq!(all_offsets(&log), (0..next_before).collect::<Vec<_>>());
            // The log is usable: the lost batch can be appended again, and survives a reopen.
            log.append(&batch_ending_nonzero(4, 99))
                .expect("append after recovery");
            log.flush().expect("flush");
            drop(log);
            let log = PartitionLog::open(&case, config.clone()).expect("second reopen");
            assert_eq!(log.next_offset(), next_before + 4);
            std::fs::remove_dir_all(&case).expect("cleanup");
        }
    }
}

#[test]
fn corruption_in_a_sealed_segment_is_reported_with_segment_and_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
        for i in 0..100 {
            log.append(&batch_of(5, 60, i)).expect("append");
        }
        log.flush().expect("flush");
        assert!(log.segment_count() >= 3);
    }
    // Flip one bit in the middle of the last batch of the first (sealed) segment: the part of the
    // segment that recovery checks (from its last index entry on).
    let first = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&first).expect("read");
    let at = bytes.len() - 20;
    bytes[at] ^= 0x01;
    std::fs::write(&first, &bytes).expect("write");
    match PartitionLog::open(dir.path(), small_config()) {
        Err(StorageError::CorruptBatch {
            segment, position, ..
        }) => {
            assert_eq!(segment, first);
            assert!(position <= at as u64);
        }
        other => panic!("expected CorruptBatch, got {other:?}"),
    }
}

#[test]
fn corruption_in_a_sealed_segment_is_found_when_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
        for i in 0..100 {
            log.append(&batch_of(5, 60, i)).expect("append");
        }
        log.flush().expect("flush");
    }
    // A flipped bit early in a sealed segment (before its last index entry) is not seen at an
    // unverified open. Reads do no checksum work (consumers check every batch's CRC, as Kafka
    // clients do), but the Raft path, which would copy the bytes to other replicas, refuses.
    let first = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&first).expect("read");
    bytes[200] ^= 0x10;
    std::fs::write(&first, &bytes).expect("write");
    let unverified = LogConfig {
        verify_on_open: false,
        ..small_config()
    };
    let log = PartitionLog::open(dir.path(), unverified).expect("open");
    let read = log.read(0, 1 << 20).expect("read");
    let checked: Result<Vec<_>, _> = BatchIter::new(read.bytes).collect();
    assert!(
        matches!(checked, Err(RecordError::CrcMismatch { .. })),
        "the consumer's check finds it"
    );
    match log.entries(0, 3, u64::MAX) {
        Err(StorageError::CorruptBatch {
            segment, position, ..
        }) => {
            assert_eq!(segment, first);
            assert!(position <= 200);
        }
        other => panic!("expected CorruptBatch, got {:?}", other.map(|v| v.len())),
    }
}

#[test]
fn an_early_flipped_bit_in_a_sealed_segment_is_found_at_open_when_verifying() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
        for i in 0..100 {
            log.append(&batch_of(5, 60, i)).expect("append");
        }
        log.flush().expect("flush");
    }
    let first = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&first).expect("read");
    bytes[200] ^= 0x10;
    std::fs::write(&first, &bytes).expect("write");
    match PartitionLog::open(dir.path(), small_config()) {
        Err(StorageError::CorruptBatch {
            segment, position, ..
        }) => {
            assert_eq!(segment, first);
            assert!(position <= 200);
        }
        other => panic!("expected CorruptBatch, got {other:?}"),
    }
}

/// Writes 100 batches of 5 records (offsets 5i..5i+5, Raft index i) over several segments.
fn hundred_batches(dir: &Path) -> Vec<(u64, u64)> {
    let mut log = PartitionLog::open(dir, small_config()).expect("open");
    for i in 0..100 {
        log.append(&batch_of(5, 60, i)).expect("append");
    }
    log.flush().expect("flush");
    assert!(log.segment_count() >= 3);
    (0..100).map(|i| (i * 5, i)).collect()
}

/// Byte positions of the batches of a segment file.
fn batch_positions(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + batch::HEADER_LEN <= bytes.len() {
        let Ok(h) = batch::BatchHeader::parse(&bytes[pos..]) else {
            break;
        };
        if h.batch_len == 0 {
            break;
        }
        out.push(pos);
        pos += h.batch_len as usize;
    }
    out
}

#[test]
fn open_repairing_cuts_the_log_before_a_flipped_bit_and_quarantines_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    hundred_batches(dir.path());
    let segments_before = std::fs::read_dir(dir.path())
        .expect("list")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".log"))
        })
        .count();
    // Flip a bit in the payload of the third batch of the first (sealed) segment.
    let first = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&first).expect("read");
    let positions = batch_positions(&bytes);
    assert!(positions.len() > 4);
    let at = positions[2] + batch::HEADER_LEN + 10;
    bytes[at] ^= 0x04;
    std::fs::write(&first, &bytes).expect("write");

    let (mut log, repairs) =
        PartitionLog::open_repairing(dir.path(), small_config()).expect("open repairing");
    assert_eq!(repairs.len(), 1, "{repairs:?}");
    assert_eq!(repairs[0].segment, first);
    assert_eq!(repairs[0].position, positions[2] as u64);
    // The log ends right before the damaged batch: batches 0 and 1 (offsets 0..10) remain.
    assert_eq!(log.next_offset(), 10);
    assert_eq!(log.next_index(), 2);
    assert_eq!(all_offsets(&log), (0..10).collect::<Vec<_>>());
    // The damaged bytes and every later segment are kept aside, not in the log.
    let quarantined: Vec<String> = std::fs::read_dir(&repairs[0].quarantine)
        .expect("list quarantine")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(quarantined
        .iter()
        .any(|n| n.starts_with("00000000000000000000.log.from-")));
    assert_eq!(
        quarantined.iter().filter(|n| n.ends_with(".log")).count(),
        segments_before - 1,
        "{quarantined:?}"
    );
    // The log goes on from the cut: the same offsets and indexes are written again.
    let info = log.append(&batch_of(5, 60, 2)).expect("append");
    assert_eq!((info.base_offset, info.raft_index), (10, 2));
    log.flush().expect("flush");
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).expect("reopen strict");
    assert_eq!(log.next_offset(), 15);
}

#[test]
fn open_repairing_handles_a_damaged_first_batch_and_a_torn_tail() {
    // Damage at the very first batch leaves an empty log at the same position.
    let dir = tempfile::tempdir().expect("tempdir");
    hundred_batches(dir.path());
    let first = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&first).expect("read");
    bytes[batch::HEADER_LEN + 3] ^= 0x80;
    std::fs::write(&first, &bytes).expect("write");
    let (log, repairs) =
        PartitionLog::open_repairing(dir.path(), small_config()).expect("open repairing");
    assert_eq!(repairs.len(), 1);
    assert_eq!((log.next_offset(), log.next_index()), (0, 0));

    // A torn tail needs no repair: recovery cuts it as always.
    let dir = tempfile::tempdir().expect("tempdir");
    hundred_batches(dir.path());
    let mut last = None;
    for e in std::fs::read_dir(dir.path()).expect("list") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "log") && last.as_ref().is_none_or(|l| &p > l) {
            last = Some(p);
        }
    }
    let last = last.expect("a segment");
    let bytes = std::fs::read(&last).expect("read");
    let positions = batch_positions(&bytes);
    let cut = positions[positions.len() - 1] + 30;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .expect("open");
    f.set_len(cut as u64).expect("truncate");
    drop(f);
    let (log, repairs) =
        PartitionLog::open_repairing(dir.path(), small_config()).expect("open repairing");
    assert!(repairs.is_empty());
    assert_eq!((log.next_offset(), log.next_index()), (495, 99));
}

#[test]
fn corruption_before_a_valid_batch_in_the_active_segment_is_not_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        ..small_config()
    };
    let second_batch_pos;
    {
        let mut log = PartitionLog::open(dir.path(), config.clone()).expect("open");
        let b = batch_of(3, 40, 1);
        second_batch_pos = b.len();
        for _ in 0..3 {
            log.append(&b).expect("append");
        }
        log.flush().expect("flush");
    }
    let path = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[second_batch_pos + 100] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");
    match PartitionLog::open(dir.path(), config) {
        Err(StorageError::CorruptBatch { position, .. }) => {
            assert_eq!(position, second_batch_pos as u64)
        }
        other => panic!("expected CorruptBatch, got {other:?}"),
    }
}

#[test]
fn missing_or_broken_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected;
    {
        let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
        for i in 0..60 {
            log.append(&batch_of(4, 50, i * 10)).expect("append");
        }
        log.flush().expect("flush");
        expected = all_offsets(&log);
    }
    // Every index but the first segment's (the only record of the log's first Raft index, see
    // `the_base_index_lives_in_the_index_header`).
    for e in std::fs::read_dir(dir.path()).expect("ls") {
        let p = e.expect("entry").path();
        let first = p.file_stem().is_some_and(|s| s == "00000000000000000000");
        match p.extension().and_then(|x| x.to_str()) {
            Some("index") if !first => std::fs::remove_file(&p).expect("rm"),
            Some("timeindex") => std::fs::write(&p, b"garbage").expect("write"),
            _ => {}
        }
    }
    let log = PartitionLog::open(dir.path(), small_config()).expect("open rebuilds");
    assert_eq!(all_offsets(&log), expected);
    assert_eq!(log.offset_for_timestamp(300).expect("ts"), Some(120));
    let report = skein_storage::inspect::verify_tree(dir.path()).expect("verify");
    assert_eq!(report.len(), 1);
    assert!(report[0].problems.is_empty(), "{:?}", report[0].problems);
    assert_eq!(report[0].records, 240);
}

#[test]
fn timestamp_lookup_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    // Batch i holds 4 records with timestamps 1000*i + {0,1,2,3}.
    for i in 0..50i64 {
        log.append(&batch_of(4, 50, 1000 * i)).expect("append");
    }
    assert_eq!(log.offset_for_timestamp(0).expect("ts"), Some(0));
    assert_eq!(log.offset_for_timestamp(7002).expect("ts"), Some(30));
    assert_eq!(log.offset_for_timestamp(7004).expect("ts"), Some(32));
    assert_eq!(log.offset_for_timestamp(49_003).expect("ts"), Some(199));
    assert_eq!(log.offset_for_timestamp(49_004).expect("ts"), None);
}

#[test]
fn truncation_removes_the_tail_for_good_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    for i in 0..100 {
        log.append_entry(&batch_of(2, 80, i), 1, i as u64)
            .expect("append");
    }
    log.flush().expect("flush");
    let segments_before = log.segment_count();
    log.truncate_from_index(30).expect("truncate");
    assert!(log.segment_count() < segments_before);
    assert_eq!(log.next_index(), 30);
    assert_eq!(log.next_offset(), 60);
    assert_eq!(log.last_entry(), Some((1, 29)));
    // A new leader's entries (higher term, different sizes) follow.
    for i in 30..40 {
        log.append_entry(&batch_of(1, 10, 0), 2, i).expect("append");
    }
    log.flush().expect("flush");
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.next_index(), 40);
    assert_eq!(log.next_offset(), 70);
    assert_eq!(all_offsets(&log), (0..70).collect::<Vec<_>>());
    assert_eq!(log.entry(35).expect("entry").header().leader_epoch, 2);
}

#[test]
fn truncation_at_a_segment_boundary_reopens_the_previous_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    let mut boundary = None;
    for i in 0..100u64 {
        let before = log.segment_count();
        log.append_entry(&batch_of(2, 80, 0), 1, i).expect("append");
        if boundary.is_none() && log.segment_count() > before {
            boundary = Some(i);
        }
    }
    let boundary = boundary.expect("a roll happened");
    log.truncate_from_index(boundary)
        .expect("truncate at boundary");
    assert_eq!(log.next_index(), boundary);
    assert_eq!(log.segment_count(), 1);
    log.append_entry(&batch_of(2, 80, 0), 2, boundary)
        .expect("append");
    log.flush().expect("flush");
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.next_index(), boundary + 1);
    assert_eq!(log.entry(boundary).expect("entry").header().leader_epoch, 2);
}

#[test]
fn retention_by_size_and_time_deletes_whole_sealed_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Arc::new(AtomicI64::new(1_000_000));
    let clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let config = LogConfig {
        retention: Retention {
            time: Some(Duration::from_secs(60)),
            bytes: Some(40 * 1024),
        },
        ..small_config()
    };
    let mut log = PartitionLog::open_with_clock(dir.path(), config, clock).expect("open");
    for i in 0..200i64 {
        log.append(&batch_of(2, 200, 1_000_000 + i))
            .expect("append");
    }
    log.flush().expect("flush");
    let size_before = log.size_bytes();
    let deleted = log.apply_retention().expect("retention");
    assert!(deleted > 0);
    assert!(
        log.size_bytes() <= 40 * 1024 + 16 * 1024,
        "size {}",
        log.size_bytes()
    );
    assert!(log.size_bytes() < size_before);
    let start = log.log_start_offset();
    assert!(start > 0);
    assert!(matches!(
        log.read(0, 100),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(all_offsets(&log), (start..400).collect::<Vec<_>>());

    // Two minutes later every sealed segment is too old; the active one stays.
    now.fetch_add(120_000, Ordering::SeqCst);
    log.apply_retention().expect("retention");
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.next_offset(), 400);
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.next_offset(), 400);
    assert_eq!(
        log.log_start_offset(),
        log.entries(log.first_index(), log.first_index() + 1, 0)
            .expect("first")[0]
            .header()
            .base_offset
    );
}

#[test]
fn reset_starts_an_empty_log_at_a_given_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("open");
    for i in 0..10 {
        log.append(&batch_of(2, 10, 0)).expect("append");
        let _ = i;
    }
    log.reset(5000, 700).expect("reset");
    assert_eq!(log.next_offset(), 5000);
    assert_eq!(log.next_index(), 700);
    assert_eq!(log.log_start_offset(), 5000);
    assert_eq!(log.last_entry(), None);
    drop(log);
    // The base Raft index of an empty segment survives a reopen (it is in the .index header).
    let mut log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.next_offset(), 5000);
    assert_eq!(log.next_index(), 700);
    let info = log
        .append_entry(&batch_of(1, 1, 0), 9, 700)
        .expect("append");
    assert_eq!(info.base_offset, 5000);
}

#[test]
fn group_commit_flushes_on_its_schedule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        flush: FlushPolicy::GroupCommit {
            interval: Duration::from_millis(50),
            bytes: 2000,
        },
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path(), config).expect("open");
    log.append(&batch_of(1, 10, 0)).expect("append");
    assert_eq!(log.flushed_offset(), 0);
    let deadline = log.flush_deadline().expect("pending");
    assert!(!log
        .flush_if_due(deadline - Duration::from_millis(1))
        .expect("not due"));
    assert!(log.flush_if_due(deadline).expect("due"));
    assert_eq!(log.flushed_offset(), 1);
    assert!(log.flush_deadline().is_none());
    // Enough pending bytes make a flush due at once.
    log.append(&batch_of(20, 100, 0)).expect("append");
    let d = log.flush_deadline().expect("pending");
    assert!(log.flush_if_due(d).expect("due"));
    assert_eq!(log.flushed_offset(), log.next_offset());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random batch sizes roll segments at random points; every offset is readable, through the
    /// index, before and after a reopen, and retention by size keeps the bound.
    #[test]
    fn roll_over_read_and_retention(
        sizes in proptest::collection::vec((1usize..20, 1usize..300), 1..120),
        probes in proptest::collection::vec(any::<prop::sample::Index>(), 10),
        keep_bytes in 8_000u64..60_000,
        step in prop::sample::select(vec![4096u64, 12 * 1024, 1 << 20]),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig { segment_bytes_max: 8 * 1024, batch_bytes_max: 8 * 1024, index_interval_bytes: 256, preallocate_step_bytes: step, ..small_config() };
        let mut log = PartitionLog::open(dir.path(), config.clone()).expect("open");
        let mut bounds = Vec::new();
        for (n, v) in &sizes {
            let n = (*n).min(7000 / (v + 20)).max(1);
            let info = log.append(&batch_of(n, *v, 0)).expect("append");
            bounds.push((info.base_offset, info.next_offset));
            prop_assert!(active_log_len(dir.path()) <= 8 * 1024, "a file grew past the segment size");
        }
        let end = log.next_offset();
        for _pass in 0..2 {
            for p in &probes {
                let o = p.index(end as usize) as u64;
                let s = log.read(o, 1).expect("read");
                let b = BatchIter::new(s.bytes).next().expect("a batch").expect("valid");
                let h = b.header();
                prop_assert!(h.base_offset <= o && o < h.next_offset());
                prop_assert!(bounds.contains(&(h.base_offset, h.next_offset())));
            }
            log.flush().expect("flush");
            drop(log);
            log = PartitionLog::open(dir.path(), config.clone()).expect("reopen");
            prop_assert_eq!(log.next_offset(), end);
        }
        let mut c = config.clone();
        c.retention.bytes = Some(keep_bytes);
        drop(log);
        let mut log = PartitionLog::open(dir.path(), c).expect("reopen");
        log.apply_retention().expect("retention");
        let active = 8 * 1024;
        prop_assert!(log.size_bytes() <= keep_bytes + active);
        let start = log.log_start_offset();
        prop_assert_eq!(all_offsets(&log), (start..end).collect::<Vec<_>>());
    }
}

#[test]
fn segments_roll_by_age_but_never_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Arc::new(AtomicI64::new(10_000_000));
    let clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        segment_age_max: Some(Duration::from_secs(60)),
        ..small_config()
    };
    let mut log = PartitionLog::open_with_clock(dir.path(), config, clock).expect("open");
    log.append(&batch_of(1, 10, 10_000_000)).expect("append");
    log.append(&batch_of(1, 10, 10_000_000)).expect("append");
    assert_eq!(log.segment_count(), 1);
    now.fetch_add(61_000, Ordering::SeqCst);
    let info = log.append(&batch_of(1, 10, 10_061_000)).expect("append");
    assert_eq!(log.segment_count(), 2, "an old segment rolls");
    assert_eq!(info.base_offset, 2);
    assert!(dir.path().join("00000000000000000002.log").exists());
    // Raft entries without records do not make a segment rollable: no two segments share a name.
    now.fetch_add(61_000, Ordering::SeqCst);
    let idx = log.next_index();
    log.append_entry(&batch::internal_batch(InternalKind::Blank, 0, b""), 1, idx)
        .expect("blank");
    assert_eq!(
        log.segment_count(),
        3,
        "the old segment with a record rolled"
    );
    now.fetch_add(61_000, Ordering::SeqCst);
    log.append_entry(
        &batch::internal_batch(InternalKind::Blank, 0, b""),
        1,
        idx + 1,
    )
    .expect("blank");
    assert_eq!(
        log.segment_count(),
        3,
        "a segment without records does not roll"
    );
    log.append(&batch_of(1, 10, 0)).expect("append");
    assert_eq!(log.next_offset(), 4);
    log.flush().expect("flush");
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config()).expect("reopen");
    assert_eq!(log.segment_count(), 3);
    assert_eq!(log.next_index(), idx + 3);
    assert_eq!(all_offsets(&log), vec![0, 1, 2, 3]);
}

/// Disk blocks allocated to the files of `dir` (not their apparent lengths), in bytes.
fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").metadata().expect("stat"))
        .filter(|m| m.is_file())
        .map(|m| m.blocks() * 512)
        .sum()
}

fn active_log_len(dir: &Path) -> u64 {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    std::fs::metadata(logs.last().expect("a segment"))
        .expect("stat")
        .len()
}

#[test]
fn an_empty_log_takes_well_under_a_mebibyte_of_disk_blocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig::default();
    assert_eq!(config.segment_bytes_max, 256 << 20, "the default segment");
    let mut log = PartitionLog::open(dir.path(), config.clone()).expect("open");
    let empty = allocated_bytes(dir.path());
    assert!(empty <= 16 << 10, "an empty log allocates {empty} bytes");
    assert_eq!(active_log_len(dir.path()), 0, "nothing preallocated yet");
    drop(log);
    log = PartitionLog::open(dir.path(), config.clone()).expect("reopen");
    assert!(allocated_bytes(dir.path()) <= 16 << 10);

    // What a new Raft replica holds before any record: a membership and a blank entry.
    log.append_entry(
        &batch::internal_batch(InternalKind::Membership, 0, b"{}"),
        1,
        0,
    )
    .expect("membership");
    log.append_entry(&batch::internal_batch(InternalKind::Blank, 0, b""), 1, 1)
        .expect("blank");
    log.flush().expect("flush");
    let few = allocated_bytes(dir.path());
    assert!(
        few <= skein_storage::PREALLOCATE_FIRST_STEP_BYTES + (16 << 10),
        "a log of two Raft entries allocates {few} bytes"
    );
    assert!(few < 1 << 20);
}

#[test]
fn the_active_segment_grows_in_steps_and_reads_survive_every_remap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let step = 16 << 10;
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        preallocate_step_bytes: step,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path(), config.clone()).expect("open");
    let first = batch_of(3, 300, 7);
    log.append(&first).expect("append");
    // Bytes handed out before any remap keep the old map alive.
    let early = log.read(0, 1).expect("read").bytes;
    let mut lens = vec![active_log_len(dir.path())];
    while log.size_bytes() < 200 << 10 {
        log.append(&batch_of(3, 300, 7)).expect("append");
        let len = active_log_len(dir.path());
        let size = log.size_bytes();
        assert!(len >= size, "the file holds the data");
        assert!(
            len < size + step,
            "at most one step ahead: {len} for {size}"
        );
        assert!(len.is_multiple_of(step), "grown in whole steps");
        if lens.last() != Some(&len) {
            lens.push(len);
        }
    }
    assert_eq!(log.segment_count(), 1);
    assert!(lens.len() > 10, "grew in steps: {lens:?}");
    assert!(lens.windows(2).all(|w| w[1] == w[0] + step), "{lens:?}");
    // Data written before and after each remap reads back, old slices unchanged.
    assert_eq!(&early[16..], &first[16..]);
    let end = log.next_offset();
    assert_eq!(all_offsets(&log), (0..end).collect::<Vec<_>>());
    assert_eq!(
        log.entries(0, log.next_index(), u64::MAX)
            .expect("entries")
            .len() as u64,
        end / 3
    );
    // Preallocated: the steps' blocks are reserved.
    let allocated = allocated_bytes(dir.path());
    assert!(
        allocated >= active_log_len(dir.path()),
        "{allocated} allocated"
    );
    log.flush().expect("flush");
    drop(log);
    let log = PartitionLog::open(dir.path(), config).expect("reopen");
    assert_eq!(all_offsets(&log), (0..end).collect::<Vec<_>>());
    assert_eq!(
        active_log_len(dir.path()),
        log.size_bytes(),
        "recovery trims to the data"
    );
}

#[test]
fn without_preallocation_steps_extend_the_file_but_reserve_no_blocks() {
    let step = 1 << 20;
    let allocated = |preallocate: bool| {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            segment_bytes_max: 8 << 20,
            preallocate,
            preallocate_step_bytes: step,
            ..small_config()
        };
        let mut log = PartitionLog::open(dir.path(), config).expect("open");
        for _ in 0..100 {
            log.append(&batch_of(2, 2000, 0)).expect("append");
        }
        log.flush().expect("flush");
        let len = active_log_len(dir.path());
        assert!(len > log.size_bytes(), "the file was extended by a step");
        assert_eq!(log.segment_count(), 1);
        (allocated_bytes(dir.path()), len, log.size_bytes())
    };
    let (with, len, size) = allocated(true);
    assert!(
        with >= len,
        "preallocated: {with} bytes allocated for {len}"
    );
    let (without, len, size2) = allocated(false);
    assert_eq!(size, size2);
    assert!(
        without < size + (64 << 10) && without < len,
        "sparse: {without} bytes allocated for {size} of data in a {len}-byte file"
    );
}

#[test]
fn a_crash_in_the_middle_of_a_step_loses_no_complete_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("base");
    let step = 8 << 10;
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        preallocate_step_bytes: step,
        ..small_config()
    };
    let mut log = PartitionLog::open(&base, config.clone()).expect("open");
    for i in 0..30 {
        log.append(&batch_of(3, 100, i)).expect("append");
    }
    log.flush().expect("flush");
    // The last batch crosses into a new step and is not flushed.
    let len_before = active_log_len(&base);
    let mut last = batch_ending_nonzero(4, 99);
    while log.size_bytes() + last.len() as u64 <= len_before {
        log.append(&batch_of(3, 100, 0)).expect("append");
        last = batch_ending_nonzero(4, 99);
    }
    let next_before = log.next_offset();
    let start = log.size_bytes();
    log.append(&last).expect("append across the step");
    let end = log.size_bytes();
    let len_after = active_log_len(&base);
    assert!(len_after > len_before && len_after.is_multiple_of(step));
    assert!(
        start < len_before && end > len_before,
        "the batch spans the step boundary"
    );
    let name = "00000000000000000000.log";
    // What the disk may hold after a crash: everything; the new step but a torn batch; or the
    // old size (the step's length never committed) with the batch cut there or before it.
    // (case, zeros from this position to the batch's end, the file cut at this length)
    let cases = [
        ("whole", None, None),
        ("torn within the step", Some(len_before - 10), None),
        ("old length", None, Some(len_before)),
        ("cut before the batch", None, Some(start)),
    ];
    for (what, zero_from, cut_at) in cases {
        let case = dir.path().join(what.replace(' ', "-"));
        copy_dir(&base, &case);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(case.join(name))
            .expect("open copy");
        if let Some(from) = zero_from {
            use std::os::unix::fs::FileExt;
            let zeros = vec![0u8; (end - from) as usize];
            f.write_all_at(&zeros, from).expect("zero");
        }
        if let Some(len) = cut_at {
            f.set_len(len).expect("cut");
        }
        drop(f);
        let mut log = PartitionLog::open(&case, config.clone())
            .unwrap_or_else(|e| panic!("reopen ({what}): {e}"));
        let expected = if what == "whole" {
            next_before + 4
        } else {
            next_before
        };
        assert_eq!(log.next_offset(), expected, "{what}");
        assert_eq!(
            all_offsets(&log),
            (0..expected).collect::<Vec<_>>(),
            "{what}"
        );
        assert_eq!(
            active_log_len(&case),
            log.size_bytes(),
            "{what}: trimmed to the data"
        );
        // Appends grow the file again and survive another reopen.
        for _ in 0..20 {
            log.append(&batch_of(3, 100, 0))
                .expect("append after recovery");
        }
        log.flush().expect("flush");
        drop(log);
        let log = PartitionLog::open(&case, config.clone()).expect("second reopen");
        assert_eq!(
            all_offsets(&log),
            (0..expected + 60).collect::<Vec<_>>(),
            "{what}"
        );
    }
}

#[test]
fn an_old_fully_preallocated_segment_opens_and_shrinks_to_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes_max: 8 << 20,
        ..small_config()
    };
    let size = {
        let mut log = PartitionLog::open(dir.path(), config.clone()).expect("open");
        for i in 0..10 {
            log.append(&batch_of(2, 50, i)).expect("append");
        }
        log.flush().expect("flush");
        log.size_bytes()
    };
    // What earlier versions left: the active segment allocated to the full segment size, zeros
    // after the data.
    let path = dir.path().join("00000000000000000000.log");
    let mut full = std::fs::read(&path).expect("read");
    assert!(full.len() as u64 > size && full[size as usize..].iter().all(|b| *b == 0));
    full.resize(8 << 20, 0);
    std::fs::write(&path, &full).expect("write");
    assert!(allocated_bytes(dir.path()) >= 8 << 20);
    let mut log = PartitionLog::open(dir.path(), config.clone()).expect("reopen");
    assert_eq!(log.next_offset(), 20);
    assert_eq!(log.size_bytes(), size);
    assert_eq!(active_log_len(dir.path()), size);
    assert!(
        allocated_bytes(dir.path()) < 1 << 20,
        "the preallocated tail is released"
    );
    log.append(&batch_of(2, 50, 0)).expect("append");
    log.flush().expect("flush");
    drop(log);
    let log = PartitionLog::open(dir.path(), config).expect("reopen");
    assert_eq!(all_offsets(&log), (0..22).collect::<Vec<_>>());
}

#[test]
fn segments_roll_at_segment_bytes_max_whatever_the_step() {
    for step in [4 << 10, 12 << 10, 64 << 10, 1 << 20] {
        let dir = tempfile::tempdir().expect("tempdir");
        let segment = 64 << 10;
        let config = LogConfig {
            segment_bytes_max: segment,
            preallocate_step_bytes: step,
            ..small_config()
        };
        let mut log = PartitionLog::open(dir.path(), config).expect("open");
        let b = batch_of(4, 200, 0);
        for _ in 0..300 {
            log.append(&b).expect("append");
            assert!(active_log_len(dir.path()) <= segment, "step {step}");
        }
        log.flush().expect("flush");
        assert!(log.segment_count() > 3);
        let per_segment = segment / b.len() as u64 * b.len() as u64;
        let mut logs: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        logs.pop();
        for p in logs {
            let len = std::fs::metadata(&p).expect("stat").len();
            assert_eq!(
                len,
                per_segment,
                "step {step}: sealed {} holds as many batches as fit",
                p.display()
            );
        }
    }
}
