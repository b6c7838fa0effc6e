//! Append throughput of the partition log next to a raw-file baseline measured in the same run.
//!
//! Each iteration appends one batch of 1000 records x 100 B (built once, outside the timing: the
//! producer's encoding is not the log's cost). For every flush policy the log is measured next to
//! a baseline that writes the same bytes to a plain file with `write(2)` and calls `fdatasync` on
//! the same schedule: after every batch (`EveryBatch`), on the group-commit rule (a sync when
//! `bytes` are pending or `interval` has passed since the oldest unsynced write, checked after
//! every write, as the log's `flush_if_due` does), or never (`Never`). The log's ratio to its
//! baseline is what the log costs over the disk: the CRC check, stamping, index upkeep, and segment
//! rolls (the segment size is small enough that several rolls happen in every run).
//!
//! After the criterion measurements, the log and its baseline are also run in alternating short
//! rounds, and the median per-round ratio is printed (`paired rounds`): this disk's speed drifts,
//! and criterion measures one function after the other.
//!
//! Between samples (outside the timing) the log deletes its sealed segments and the raw file is
//! emptied once it is large, so that disk use stays bounded.
//!
//! `fsync_per_append_*` measures what the active segment's growth in preallocation steps costs:
//! appends with an `fdatasync` after each (`EveryBatch`), for steps of 1, 4 and 16 MiB, a step as
//! large as the segment (the closest to preallocating the whole segment at once: the file then
//! doubles from 64 KiB to the segment size), and 4 MiB steps that only extend the file
//! (`preallocate = false`, a sparse file), with the standard batch and with a small one.

use std::fs::File;
use std::hint::black_box;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use skein_benches::{bench_dir, make_batch, standard_batch};
use skein_storage::{FlushPolicy, LogConfig, PartitionLog};

/// Segment size of the benchmarked log: small enough that segments roll during every run.
const SEGMENT_BYTES_MAX: u64 = 32 << 20;
/// Interleaved log/raw rounds after the criterion measurements (`SKEIN_BENCH_PAIRED_ROUNDS`
/// overrides; 0 skips them, e.g. when filtering benchmarks), and batches per round (a round of
/// 100 batches is about 11 MB, a third of a segment).
const PAIRED_ROUNDS: usize = 15;
const PAIRED_BATCHES: u64 = 100;

fn paired_rounds() -> usize {
    std::env::var("SKEIN_BENCH_PAIRED_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PAIRED_ROUNDS)
}
/// The raw file is emptied (between samples) once it holds this much.
const RAW_FILE_BYTES_MAX: u64 = 256 << 20;

fn policies() -> [(&'static str, FlushPolicy); 3] {
    [
        ("every_batch", FlushPolicy::EveryBatch),
        ("group_commit", FlushPolicy::default()),
        ("never", FlushPolicy::Never),
    ]
}

/// The log under test, with a flush policy.
struct LogTarget {
    log: PartitionLog,
    group_commit: bool,
}

impl LogTarget {
    fn open(dir: &Path, flush: FlushPolicy) -> Self {
        let config = LogConfig {
            segment_bytes_max: SEGMENT_BYTES_MAX,
            flush,
            ..LogConfig::default()
        };
        Self::with_config(dir, config)
    }

    fn with_config(dir: &Path, config: LogConfig) -> Self {
        let group_commit = matches!(config.flush, FlushPolicy::GroupCommit { .. });
        let log = PartitionLog::open(dir, config).expect("open the benchmark log");
        LogTarget { log, group_commit }
    }

    /// Appends `iters` batches as a producer loop would, and returns the time taken.
    fn run(&mut self, batch: &Bytes, iters: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            let info = self.log.append(batch).expect("append to the benchmark log");
            black_box(info);
            if self.group_commit {
                self.log
                    .flush_if_due(Instant::now())
                    .expect("group-commit flush");
            }
        }
        if self.group_commit {
            // Every append of the sample acknowledged as durable.
            self.log.flush().expect("final group-commit flush");
        }
        let elapsed = start.elapsed();
        // Untimed: drop the sealed segments so the disk does not fill up.
        let end = self.log.next_offset();
        self.log
            .advance_log_start(end)
            .expect("delete sealed segments");
        elapsed
    }
}

/// The baseline: one plain file, `write` + `fdatasync` on the same schedule as the policy.
struct RawTarget {
    file: File,
    flush: FlushPolicy,
    written: u64,
    unflushed_bytes: u64,
    unflushed_since: Option<Instant>,
}

impl RawTarget {
    fn open(dir: &Path, flush: FlushPolicy) -> Self {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("raw.bin"))
            .expect("create the raw baseline file");
        RawTarget {
            file,
            flush,
            written: 0,
            unflushed_bytes: 0,
            unflushed_since: None,
        }
    }

    fn sync(&mut self) {
        self.file.sync_data().expect("fdatasync the raw file");
        self.unflushed_bytes = 0;
        self.unflushed_since = None;
    }

    fn run(&mut self, batch: &Bytes, iters: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            self.file.write_all(batch).expect("write the raw file");
            self.written += batch.len() as u64;
            self.unflushed_bytes += batch.len() as u64;
            let since = *self.unflushed_since.get_or_insert_with(Instant::now);
            match self.flush {
                FlushPolicy::EveryBatch => self.sync(),
                FlushPolicy::GroupCommit { interval, bytes } => {
                    if self.unflushed_bytes >= bytes || since + interval <= Instant::now() {
                        self.sync();
                    }
                }
                FlushPolicy::Never => {}
            }
        }
        if matches!(self.flush, FlushPolicy::GroupCommit { .. }) && self.unflushed_bytes > 0 {
            self.sync();
        }
        let elapsed = start.elapsed();
        // Untimed: keep the file bounded.
        if self.written >= RAW_FILE_BYTES_MAX {
            self.file.set_len(0).expect("empty the raw file");
            self.file
                .seek(SeekFrom::Start(0))
                .expect("rewind the raw file");
            self.written = 0;
            self.unflushed_bytes = 0;
            self.unflushed_since = None;
        }
        elapsed
    }
}

fn append(c: &mut Criterion) {
    let batch = standard_batch();
    let mut group = c.benchmark_group("append_1000x100B");
    group
        .throughput(Throughput::Bytes(batch.len() as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));
    let mut paired = Vec::new();
    for (name, policy) in policies() {
        let dir = tempfile::Builder::new()
            .prefix("skein-bench-append-")
            .tempdir_in(bench_dir())
            .expect("create a temp dir");
        let mut log = LogTarget::open(&dir.path().join("log"), policy);
        group.bench_function(BenchmarkId::new(name, "log"), |b| {
            b.iter_custom(|iters| log.run(&batch, iters))
        });
        let mut raw = RawTarget::open(dir.path(), policy);
        group.bench_function(BenchmarkId::new(name, "raw"), |b| {
            b.iter_custom(|iters| raw.run(&batch, iters))
        });
        paired.push((name, log, raw, dir));
    }
    group.finish();

    // Criterion measures the log and its baseline one after the other, and this disk's speed
    // drifts by several times within a minute. So also measure them interleaved: short rounds,
    // alternating which goes first, and the median of the per-round ratios.
    let rounds = paired_rounds();
    if rounds == 0 {
        return;
    }
    println!(
        "\npaired rounds ({rounds} x {PAIRED_BATCHES} batches of {} bytes each side):",
        batch.len()
    );
    for (name, mut log, mut raw, _dir) in paired {
        let mut ratios = Vec::with_capacity(rounds);
        let (mut log_time, mut raw_time) = (Duration::ZERO, Duration::ZERO);
        for round in 0..rounds {
            let (l, r) = if round % 2 == 0 {
                let l = log.run(&batch, PAIRED_BATCHES);
                (l, raw.run(&batch, PAIRED_BATCHES))
            } else {
                let r = raw.run(&batch, PAIRED_BATCHES);
                (log.run(&batch, PAIRED_BATCHES), r)
            };
            log_time += l;
            raw_time += r;
            ratios.push(r.as_secs_f64() / l.as_secs_f64());
        }
        ratios.sort_by(f64::total_cmp);
        let bytes = (batch.len() as u64 * PAIRED_BATCHES * rounds as u64) as f64;
        println!(
            "  {name:12} log {:8.1} MB/s  raw {:8.1} MB/s  log/raw median {:.2} (min {:.2}, max {:.2})",
            bytes / log_time.as_secs_f64() / 1e6,
            bytes / raw_time.as_secs_f64() / 1e6,
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
        );
    }
}

/// Growth of the active segment, `fsync_per_append_*`: (name, step, preallocate).
fn growth_variants() -> [(&'static str, u64, bool); 5] {
    [
        ("step_1MiB", 1 << 20, true),
        ("step_4MiB", 4 << 20, true),
        ("step_16MiB", 16 << 20, true),
        ("step_segment", SEGMENT_BYTES_MAX, true),
        ("sparse_step_4MiB", 4 << 20, false),
    ]
}

fn fsync_per_append(c: &mut Criterion) {
    for (batch_name, batch) in [
        ("1000x100B", standard_batch()),
        ("10x100B", make_batch(10, 100)),
    ] {
        let mut group = c.benchmark_group(format!("fsync_per_append_{batch_name}"));
        group
            .throughput(Throughput::Bytes(batch.len() as u64))
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4));
        for (name, step, preallocate) in growth_variants() {
            let dir = tempfile::Builder::new()
                .prefix("skein-bench-step-")
                .tempdir_in(bench_dir())
                .expect("create a temp dir");
            let config = LogConfig {
                segment_bytes_max: SEGMENT_BYTES_MAX,
                flush: FlushPolicy::EveryBatch,
                preallocate,
                preallocate_step_bytes: step,
                ..LogConfig::default()
            };
            let mut log = LogTarget::with_config(&dir.path().join("log"), config);
            group.bench_function(BenchmarkId::new(name, "log"), |b| {
                b.iter_custom(|iters| log.run(&batch, iters))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, append, fsync_per_append);
criterion_main!(benches);
