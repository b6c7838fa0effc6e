//! Fuzz target: the RecordBatch v2 decoder (`skein-record`) must never panic, nor allocate
//! more than the bytes (and the decompression limit) allow, whatever the input.
//!
//! Feeds the input to `BatchHeader::parse`, `validate` and `BatchIter` (iterating every record
//! of every batch). Because a random input almost never has a valid CRC, the input is also
//! wrapped behind a header with a correct CRC-32C (with a record count and codec taken from its
//! first bytes), so that the fuzzer explores record decoding and decompression.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use skein_record::{
    validate, Batch, BatchHeader, BatchIter, ATTRIBUTES_POS, BATCH_LENGTH_POS, CRC_POS, CRC_START,
    HEADER_LEN, LAST_OFFSET_DELTA_POS, LOG_OVERHEAD, MAGIC, MAGIC_POS, RECORDS_COUNT_POS,
};

/// A small decompression limit keeps every iteration cheap and proves the limit holds.
const LIMIT_BYTES: usize = 1 << 20;

/// Checks the decoder's promises on one validated batch.
fn check_batch(b: &Batch) {
    let h = b.header();
    assert_eq!(h.batch_len as usize, b.bytes().len(), "validated length");
    assert_eq!(b.payload().len(), b.bytes().len() - HEADER_LEN);
    let Ok(records) = b.records_with_limit(LIMIT_BYTES) else {
        return;
    };
    let mut ok = 0u64;
    let mut errors = 0;
    for r in records {
        match r {
            Ok(r) => {
                assert_eq!(
                    r.offset,
                    h.base_offset.wrapping_add(ok),
                    "offsets are dense"
                );
                ok += 1;
            }
            Err(_) => errors += 1,
        }
    }
    assert!(
        errors <= 1,
        "the records iterator stops after its first error"
    );
    assert!(
        ok <= u64::from(h.record_count),
        "more records than the header says"
    );
    if h.is_internal() {
        assert_eq!(ok, 0, "internal entries have no records");
    }
}

/// Wraps `payload` in a data-batch header with a correct CRC-32C.
fn wrap(payload: &[u8], record_count: i32, codec: u16) -> Bytes {
    let mut buf = BytesMut::zeroed(HEADER_LEN);
    buf.extend_from_slice(payload);
    let length = (buf.len() - LOG_OVERHEAD) as i32;
    buf[BATCH_LENGTH_POS..][..4].copy_from_slice(&length.to_be_bytes());
    buf[MAGIC_POS] = MAGIC as u8;
    buf[ATTRIBUTES_POS..][..2].copy_from_slice(&codec.to_be_bytes());
    buf[LAST_OFFSET_DELTA_POS..][..4].copy_from_slice(&(record_count - 1).to_be_bytes());
    buf[RECORDS_COUNT_POS..][..4].copy_from_slice(&record_count.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[CRC_POS..][..4].copy_from_slice(&crc.to_be_bytes());
    buf.freeze()
}

fuzz_target!(|data: &[u8]| {
    let _ = BatchHeader::parse(data);
    if let Ok(h) = validate(data) {
        assert_eq!(h.batch_len as usize, data.len());
    }

    // A fetch response: concatenated batches; the iterator yields at most one error.
    let mut seen = 0usize;
    for b in BatchIter::new(Bytes::copy_from_slice(data)) {
        let Ok(b) = b else { break };
        seen += b.bytes().len();
        check_batch(&b);
    }
    assert!(seen <= data.len());

    // Behind a valid header: the first byte picks the codec, the second the record count.
    if let [codec, count, rest @ ..] = data {
        let wrapped = wrap(rest, i32::from(*count).max(1), u16::from(*codec % 5));
        if let Ok(b) = Batch::new(wrapped) {
            check_batch(&b);
        }
    }
});
