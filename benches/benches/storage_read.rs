//! Sequential read throughput from the page cache, next to a raw `read(2)` baseline in the same run.
//!
//! Setup (untimed): a log of about 256 MiB of batches of 1000 records x 100 B in 64 MiB segments,
//! flushed, then read once so that every page is in the page cache (and mapped).
//!
//! - `log`: a consumer's scan, `PartitionLog::read(offset, 1 MiB)` from the log start, following
//!   `next_offset` to the log end. Each read finds its segment and index entry, CRC-checks every
//!   batch it returns, and returns a zero-copy slice of the segment's map.
//! - `raw`: the same segment files read front to back with `read(2)` into a 1 MiB buffer (which
//!   copies every byte once, and checks nothing).

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use skein_benches::{bench_dir, standard_batch};
use skein_storage::{FlushPolicy, LogConfig, PartitionLog};

const LOG_BYTES: u64 = 256 << 20;
const SEGMENT_BYTES_MAX: u64 = 64 << 20;
/// Bytes per read call, for the log and the baseline alike (Kafka's default per-partition fetch).
const READ_BYTES_MAX: u64 = 1 << 20;

fn build_log(dir: &Path) -> PartitionLog {
    let config = LogConfig {
        segment_bytes_max: SEGMENT_BYTES_MAX,
        flush: FlushPolicy::Never,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir, config).expect("open the benchmark log");
    let batch = standard_batch();
    while log.size_bytes() + batch.len() as u64 <= LOG_BYTES {
        log.append(&batch).expect("append to the benchmark log");
    }
    log.flush().expect("flush the benchmark log");
    log
}

/// Scans the whole log as a consumer would; returns the bytes read.
fn scan_log(log: &PartitionLog) -> u64 {
    let end = log.next_offset();
    let mut offset = log.log_start_offset();
    let mut total = 0u64;
    while offset < end {
        let slice = log.read(offset, READ_BYTES_MAX).expect("read the log");
        total += slice.bytes.len() as u64;
        black_box(&slice.bytes);
        offset = slice.next_offset;
    }
    total
}

/// The segment files in order, each with the number of data bytes it holds.
fn segment_files(dir: &Path, total: u64) -> Vec<(File, u64)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list the log directory")
        .map(|e| e.expect("read a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    paths.sort();
    let mut left = total;
    let mut out = Vec::new();
    for p in paths {
        let file = File::open(&p).expect("open a segment file");
        // Sealed segments are trimmed to their data; the active one is preallocated, so only its
        // first `left` bytes are data.
        let len = file
            .metadata()
            .expect("stat a segment file")
            .len()
            .min(left);
        left -= len;
        out.push((file, len));
    }
    assert_eq!(left, 0, "the segment files hold the whole log");
    out
}

/// Reads every data byte of the segment files with `read(2)`; returns the bytes read.
fn scan_raw(files: &mut [(File, u64)], buf: &mut [u8]) -> u64 {
    let mut total = 0u64;
    for (file, len) in files.iter_mut() {
        file.seek(SeekFrom::Start(0))
            .expect("rewind a segment file");
        let mut left = *len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = file.read(&mut buf[..want]).expect("read a segment file");
            assert!(n > 0, "segment file shorter than its data");
            black_box(&buf[..n]);
            left -= n as u64;
            total += n as u64;
        }
    }
    total
}

fn sequential_read(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("skein-bench-read-")
        .tempdir_in(bench_dir())
        .expect("create a temp dir");
    let log = build_log(dir.path());
    let total = log.size_bytes();
    assert_eq!(scan_log(&log), total, "a scan reads the whole log");
    let mut files = segment_files(dir.path(), total);
    let mut buf = vec![0u8; READ_BYTES_MAX as usize];
    assert_eq!(scan_raw(&mut files, &mut buf), total);

    let mut group = c.benchmark_group("read_seq_256MiB");
    group
        .throughput(Throughput::Bytes(total))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function(BenchmarkId::new("page_cache", "log"), |b| {
        b.iter(|| scan_log(&log))
    });
    group.bench_function(BenchmarkId::new("page_cache", "raw"), |b| {
        b.iter(|| scan_raw(&mut files, &mut buf))
    });
    group.finish();
}

criterion_group!(benches, sequential_read);
criterion_main!(benches);
