//! Fuzz target: the record batch decoder must never panic, whatever the bytes.
//!
//! Feeds the input to every entry point that decodes untrusted batch bytes (from the network or
//! the disk): `batch::validate`, `BatchHeader::parse`, `Batch::new` + `Batch::records`, and
//! `BatchIter` over concatenated batches. Because a random input almost never has a valid CRC,
//! the records decoder is also run directly on the input (`Records::new`), and on the input
//! wrapped in a header with a correct CRC, so that the fuzzer explores record decoding instead of
//! stopping at the checksum.

#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use skein_storage::batch::{self, Batch, BatchHeader, BatchIter, Records, CRC_START, HEADER_LEN};

/// Checks the decoder's promises on one successfully validated batch.
fn check_batch(b: &Batch) {
    let h = b.header();
    assert_eq!(h.batch_len as usize, b.bytes().len(), "validated length");
    assert_eq!(b.payload().len(), b.bytes().len() - HEADER_LEN);
    if let Ok(records) = b.records() {
        let mut n = 0u64;
        for r in records {
            match r {
                Ok(r) => {
                    // Offsets are base + delta; they need not be dense in hostile input, but
                    // decoding must stop after `record_count` records.
                    let _ = (r.offset, r.timestamp, r.key, r.value, r.headers.len());
                    n += 1;
                }
                Err(_) => break,
            }
        }
        assert!(
            n <= u64::from(h.record_count),
            "more records than the header says"
        );
    }
}

/// Wraps `payload` in a data-batch header with a correct CRC and the given record count.
fn wrap(payload: &[u8], record_count: u32) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + payload.len());
    buf.put_bytes(0, HEADER_LEN);
    buf.put_slice(payload);
    let len = buf.len() as u32;
    buf[24..28].copy_from_slice(&len.to_le_bytes()); // batch_len
    buf[32] = batch::MAGIC;
    buf[33] = 0; // data
    buf[36..40].copy_from_slice(&record_count.to_le_bytes());
    let crc = crc32(&buf[CRC_START..]);
    buf[28..32].copy_from_slice(&crc.to_le_bytes());
    buf.freeze()
}

/// CRC-32 (IEEE), bitwise; the fuzz crate keeps its dependencies to the minimum.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fuzz_target!(|data: &[u8]| {
    // Header parsing and whole-batch validation on the raw input.
    let _ = BatchHeader::parse(data);
    if let Ok(h) = batch::validate(data) {
        assert_eq!(h.batch_len as usize, data.len());
    }

    let bytes = Bytes::copy_from_slice(data);
    if let Ok(b) = Batch::new(bytes.clone()) {
        check_batch(&b);
    }

    // A fetch response: concatenated batches; the iterator stops at the first bad one.
    let mut seen = 0usize;
    for b in BatchIter::new(bytes.clone()) {
        match b {
            Ok(b) => {
                seen += b.bytes().len();
                check_batch(&b);
            }
            Err(_) => break,
        }
    }
    assert!(seen <= data.len());

    // The records decoder directly, with a record count taken from the input.
    if let Some((&first, rest)) = data.split_first() {
        let count = u32::from(first);
        let rest = Bytes::copy_from_slice(rest);
        for r in Records::new(rest.clone(), count, u64::from(first) << 56, i64::MIN) {
            if r.is_err() {
                break;
            }
        }
        // And behind a valid header, so the CRC does not hide the records decoder.
        let wrapped = wrap(&rest, count);
        let b = Batch::new(wrapped).expect("a correctly wrapped payload validates");
        check_batch(&b);
    }
});
