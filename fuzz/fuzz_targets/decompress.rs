//! Fuzz target: every codec's decompressor in `skein-record` must never panic, and must never
//! return more than its limit, whatever the input (compression bombs included).

#![no_main]

use libfuzzer_sys::fuzz_target;
use skein_record::{decompress, Compression, RecordError};

/// Small enough that bombs hit it at once; large enough for real frames.
const LIMIT_BYTES: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    for codec in Compression::ALL {
        match decompress(codec, data, LIMIT_BYTES) {
            Ok(out) => assert!(out.len() <= LIMIT_BYTES, "{codec:?} exceeded its limit"),
            Err(RecordError::DecompressedTooLarge { limit }) => assert_eq!(limit, LIMIT_BYTES),
            Err(_) => {}
        }
    }
});
