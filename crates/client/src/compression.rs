//! Batch compression for the producer and decompression for the consumer.
//!
//! The codec applies to a batch's records area only (the header stays readable by the broker,
//! which stores compressed batches as they are). LZ4 uses the LZ4 frame format (`lz4_flex`),
//! zstd a Zstandard frame (`ruzstd`, pure Rust).

use std::io::Read;

use skein_storage::batch::Compression as BatchCompression;

use crate::config::Compression;
use crate::error::{ClientError, Result};

/// Upper bound on a decompressed records area: protects the consumer from a decompression bomb.
pub const DECOMPRESSED_BYTES_MAX: usize = 256 * 1024 * 1024;

pub(crate) fn to_batch_codec(c: Compression) -> BatchCompression {
    match c {
        Compression::None => BatchCompression::None,
        Compression::Lz4 => BatchCompression::Lz4,
        Compression::Zstd => BatchCompression::Zstd,
    }
}

fn codec_name(c: BatchCompression) -> &'static str {
    match c {
        BatchCompression::None => "none",
        BatchCompression::Lz4 => "lz4",
        BatchCompression::Zstd => "zstd",
    }
}

/// Compresses a batch's records area.
pub(crate) fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>> {
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Lz4 => {
            use std::io::Write;
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(data.len() / 2));
            enc.write_all(data)
                .map_err(|e| compression_error("compress batch", "lz4", e))?;
            enc.finish()
                .map_err(|e| compression_error("compress batch", "lz4", e))
        }
        Compression::Zstd => Ok(ruzstd::encoding::compress_to_vec(
            data,
            ruzstd::encoding::CompressionLevel::Fastest,
        )),
    }
}

/// Decompresses a batch's records area, refusing output over [`DECOMPRESSED_BYTES_MAX`].
pub(crate) fn decompress(codec: BatchCompression, data: &[u8]) -> Result<Vec<u8>> {
    let limit = DECOMPRESSED_BYTES_MAX as u64 + 1;
    let mut out = Vec::with_capacity(data.len().saturating_mul(3));
    let read = match codec {
        BatchCompression::None => {
            out.extend_from_slice(data);
            Ok(data.len())
        }
        BatchCompression::Lz4 => lz4_flex::frame::FrameDecoder::new(data)
            .take(limit)
            .read_to_end(&mut out),
        BatchCompression::Zstd => {
            let dec = ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|e| compression_error("decompress batch", "zstd", e))?;
            dec.take(limit).read_to_end(&mut out)
        }
    };
    read.map_err(|e| compression_error("decompress batch", codec_name(codec), e))?;
    if out.len() > DECOMPRESSED_BYTES_MAX {
        return Err(ClientError::Compression {
            what: "decompress batch".into(),
            codec: codec_name(codec),
            reason: format!("output exceeds {DECOMPRESSED_BYTES_MAX} bytes"),
        });
    }
    Ok(out)
}

fn compression_error(what: &str, codec: &'static str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Compression {
        what: what.into(),
        codec,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..2000u32 {
            v.extend_from_slice(format!("record number {i} with some repeated text;").as_bytes());
        }
        v
    }

    #[test]
    fn lz4_and_zstd_round_trip_and_shrink_repetitive_data() {
        let data = sample();
        for (codec, batch_codec) in [
            (Compression::Lz4, BatchCompression::Lz4),
            (Compression::Zstd, BatchCompression::Zstd),
        ] {
            let c = compress(codec, &data).expect("compresses");
            assert!(c.len() < data.len() / 2, "{codec}: {} bytes", c.len());
            assert_eq!(decompress(batch_codec, &c).expect("decompresses"), data);
        }
        assert_eq!(
            decompress(BatchCompression::None, b"abc").expect("copy"),
            b"abc"
        );
    }

    #[test]
    fn empty_input_round_trips() {
        for (codec, batch_codec) in [
            (Compression::Lz4, BatchCompression::Lz4),
            (Compression::Zstd, BatchCompression::Zstd),
        ] {
            let c = compress(codec, b"").expect("compresses");
            assert!(decompress(batch_codec, &c)
                .expect("decompresses")
                .is_empty());
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let garbage = [0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8];
        assert!(decompress(BatchCompression::Lz4, &garbage).is_err());
        assert!(decompress(BatchCompression::Zstd, &garbage).is_err());
    }
}
