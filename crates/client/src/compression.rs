//! Batch compression for the producer, with Kafka's codecs from `skein-record`.
//!
//! The codec applies to a batch's records area only (the header stays readable by the broker,
//! which stores compressed batches as they are). Decompression happens where records are decoded
//! (`skein_record::Batch::records`, bounded against decompression bombs).

use skein_record::Compression as BatchCompression;

use crate::config::Compression;
use crate::error::{ClientError, Result};

pub(crate) fn to_batch_codec(c: Compression) -> BatchCompression {
    match c {
        Compression::None => BatchCompression::None,
        Compression::Gzip => BatchCompression::Gzip,
        Compression::Snappy => BatchCompression::Snappy,
        Compression::Lz4 => BatchCompression::Lz4,
        Compression::Zstd => BatchCompression::Zstd,
    }
}

/// Compresses a batch's records area.
pub(crate) fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>> {
    let c = to_batch_codec(codec);
    skein_record::compress(c, data).map_err(|e| ClientError::Compression {
        what: "compress batch".into(),
        codec: c.name(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_shrinks_repetitive_data() {
        let mut data = Vec::new();
        for i in 0..2000u32 {
            data.extend_from_slice(
                format!("record number {i} with some repeated text;").as_bytes(),
            );
        }
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let c = compress(codec, &data).expect("compresses");
            assert!(c.len() < data.len() / 2, "{codec}: {} bytes", c.len());
            let back =
                skein_record::decompress(to_batch_codec(codec), &c, 1 << 20).expect("decompresses");
            assert_eq!(back, data);
        }
    }
}
