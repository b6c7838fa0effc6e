//! Micro-benchmarks of the storage hot paths: batch encode, CRC validation, record decode, and
//! index lookup through `PartitionLog::read` at random offsets.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use skein_benches::{
    bench_dir, fill_value, make_batch, standard_batch, XorShift, BASE_TIMESTAMP_MS,
    RECORDS_PER_BATCH, RECORD_VALUE_BYTES,
};
use skein_record::{self as batch, Batch, BatchBuilder};
use skein_storage::{FlushPolicy, LogConfig, PartitionLog};

fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

/// BatchBuilder: 1000 pushes of a 100-byte value, then `finish` (header + CRC).
fn encode(c: &mut Criterion) {
    let mut values = vec![vec![0u8; RECORD_VALUE_BYTES]; 16];
    for (i, v) in values.iter_mut().enumerate() {
        fill_value(v, i as u64);
    }
    let len = standard_batch().len();
    let mut group = configure(c, "batch");
    group.throughput(Throughput::Bytes(len as u64));
    group.bench_function("encode_1000x100B", |b| {
        b.iter(|| {
            let mut builder = BatchBuilder::with_capacity(BASE_TIMESTAMP_MS, len);
            for i in 0..RECORDS_PER_BATCH {
                let v = &values[i % values.len()];
                builder.push(BASE_TIMESTAMP_MS + i as i64, None, Some(v), &[]);
            }
            builder.finish()
        })
    });

    // What the append path runs on every batch: header checks and CRC-32 over the batch.
    let batch = standard_batch();
    group.bench_function("validate_1000x100B", |b| {
        b.iter(|| batch::validate(black_box(&batch)).expect("valid batch"))
    });

    // What a consumer runs: CRC check (Batch::new) and decoding every record.
    let mut stamped = BytesMut::from(&batch[..]);
    batch::stamp(&mut stamped, 1_000_000, 1).expect("batch is longer than its header");
    let stamped: Bytes = stamped.freeze();
    let decoded = Batch::new(stamped.clone()).expect("valid batch");
    group.throughput(Throughput::Elements(RECORDS_PER_BATCH as u64));
    group.bench_function("decode_records_1000x100B", |b| {
        b.iter(|| {
            let mut sum = 0usize;
            for r in decoded.records().expect("uncompressed batch") {
                let r = r.expect("valid record");
                sum += r.value.map_or(0, |v| v.len());
            }
            sum
        })
    });
    group.bench_function("validate_and_decode_1000x100B", |b| {
        b.iter(|| {
            let batch = Batch::new(black_box(stamped.clone())).expect("valid batch");
            let mut sum = 0usize;
            for r in batch.records().expect("uncompressed batch") {
                sum += r.expect("valid record").value.map_or(0, |v| v.len());
            }
            sum
        })
    });
    group.finish();
}

/// `PartitionLog::read(offset, 1)` at random offsets: segment search, sparse-index binary
/// search, a header walk to the batch, and the CRC check of the one batch returned.
fn index_lookup(c: &mut Criterion) {
    let mut group = configure(c, "index_lookup");
    group.throughput(Throughput::Elements(1));
    // Small batches (index entry every ~4 batches) measure the lookup itself; the standard
    // batches show what a single-batch read costs when the batch is 108 KB (mostly its CRC).
    for (name, records, batches) in [
        ("batch_10x100B", 10usize, 60_000usize),
        ("batch_1000x100B", RECORDS_PER_BATCH, 600),
    ] {
        let dir = tempfile::Builder::new()
            .prefix("skein-bench-lookup-")
            .tempdir_in(bench_dir())
            .expect("create a temp dir");
        let config = LogConfig {
            segment_bytes_max: 16 << 20,
            flush: FlushPolicy::Never,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(dir.path(), config).expect("open the benchmark log");
        let batch = make_batch(records, RECORD_VALUE_BYTES);
        for _ in 0..batches {
            log.append(&batch).expect("append to the benchmark log");
        }
        log.flush().expect("flush the benchmark log");
        let end = log.next_offset();
        let mut rng = XorShift::new(42);
        let offsets: Vec<u64> = (0..4096).map(|_| rng.below(end)).collect();
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("read_random_offset", name), |b| {
            b.iter(|| {
                let o = offsets[i % offsets.len()];
                i += 1;
                let slice = log.read(o, 1).expect("read at a valid offset");
                debug_assert!(slice.next_offset > o);
                slice.next_offset
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode, index_lookup);
criterion_main!(benches);
