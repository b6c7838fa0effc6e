//! Shared fixtures for Skein's benchmarks (the benchmarks themselves are in `benches/`).
//!
//! Run them with `cargo bench -p skein-benches --bench storage_append` (or `storage_read`,
//! `hot_paths`); the numbers and the machine they were taken on are in `docs/benchmarks.md`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use skein_record::BatchBuilder;

/// Bytes of each record's value in the standard benchmark batch.
pub const RECORD_VALUE_BYTES: usize = 100;
/// Records in the standard benchmark batch.
pub const RECORDS_PER_BATCH: usize = 1000;
/// A fixed timestamp (ms since the epoch) so that batches are identical run to run.
pub const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// A data batch of `records` records with `value_bytes`-byte values and no key or headers,
/// built with the client-side encoder. Values differ per record so that the bytes are not
/// trivially repetitive.
pub fn make_batch(records: usize, value_bytes: usize) -> Bytes {
    let mut value = vec![0u8; value_bytes];
    let mut b = BatchBuilder::with_capacity(BASE_TIMESTAMP_MS, records * (value_bytes + 16));
    for i in 0..records {
        fill_value(&mut value, i as u64);
        b.push(BASE_TIMESTAMP_MS + i as i64, None, Some(&value), &[]);
    }
    b.finish()
}

/// The standard benchmark batch: 1000 records of 100 bytes.
pub fn standard_batch() -> Bytes {
    make_batch(RECORDS_PER_BATCH, RECORD_VALUE_BYTES)
}

/// Where benchmarks put their temp dirs: `$SKEIN_BENCH_DIR` if set, else the workspace's
/// `target/` directory, which is on the disk (unlike `/tmp`, which may be a tmpfs and would
/// measure memory instead).
pub fn bench_dir() -> PathBuf {
    match std::env::var_os("SKEIN_BENCH_DIR") {
        Some(d) => d.into(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// Fills `value` with bytes derived from `seed` (cheap, deterministic, not constant).
pub fn fill_value(value: &mut [u8], seed: u64) {
    let mut rng = XorShift::new(seed.wrapping_add(1));
    for chunk in value.chunks_mut(8) {
        let r = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
}

/// A tiny deterministic PRNG (xorshift64*) so the benchmarks need no `rand` dependency.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (zero is replaced by a fixed non-zero seed).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `[0, n)` (`n > 0`); the slight modulo bias does not matter here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skein_record as batch;

    #[test]
    fn standard_batch_is_valid() {
        let b = standard_batch();
        let h = batch::validate(&b).expect("the encoder writes valid batches");
        assert_eq!(h.record_count as usize, RECORDS_PER_BATCH);
        assert!(b.len() > RECORDS_PER_BATCH * RECORD_VALUE_BYTES);
    }
}
