//! Kafka's record codecs with Kafka's exact framings, pure Rust, with a limit on output.
//!
//! | codec  | id | framing |
//! | ------ | -- | ------- |
//! | gzip   | 1  | gzip member(s) (RFC 1952) |
//! | snappy | 2  | xerial framing on encode (`\x82SNAPPY\0`, version 1, compatible 1, then `[u32 BE length][raw block]` per 32 KiB of input); decode also takes one raw snappy block |
//! | lz4    | 3  | LZ4 frame, independent 64 KiB blocks, no content checksum (what Java's `KafkaLZ4BlockInputStream` reads) |
//! | zstd   | 4  | zstd frame(s) |
//!
//! Decompression refuses to produce more than `limit_bytes` (a compression bomb costs at most
//! the limit), and never reserves memory from sizes the input claims beyond a small multiple of
//! the input, capped by the limit.

use std::io::{Read, Write};

use crate::error::{RecordError, Result};

/// Default limit on the decompressed size of one batch's records.
pub const DECOMPRESSED_BYTES_MAX: usize = 256 << 20;

/// Input bytes per xerial snappy block (xerial's and Kafka's default).
const SNAPPY_BLOCK_BYTES: usize = 32 << 10;
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;
/// Zstd windows up to this size are accepted whatever the limit (the format's recommendation
/// for decoders), larger ones only up to the limit and ruzstd's own default maximum.
const ZSTD_WINDOW_MIN_BYTES: u64 = 8 << 20;
/// Initial output reservation as a multiple of the input size (then capped by the limit).
const RESERVE_RATIO: usize = 4;

/// Compression codec of a batch's records area (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u16)]
pub enum Compression {
    /// Records stored as they are.
    #[default]
    None = 0,
    /// gzip.
    Gzip = 1,
    /// Snappy (xerial framing).
    Snappy = 2,
    /// LZ4 frame.
    Lz4 = 3,
    /// Zstandard frame.
    Zstd = 4,
}

impl Compression {
    /// The codec with Kafka's id `id`, if known.
    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Kafka's name of the codec (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Every codec, `None` first.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
}

/// Compresses `data` with `codec`, in Kafka's framing (`None` copies).
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>> {
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => gzip_compress(data),
        Compression::Snappy => snappy_compress(data),
        Compression::Lz4 => lz4_compress(data),
        Compression::Zstd => Ok(ruzstd::encoding::compress_to_vec(
            data,
            ruzstd::encoding::CompressionLevel::Fastest,
        )),
    }
}

/// Decompresses `data`, refusing to produce more than `limit_bytes`
/// ([`RecordError::DecompressedTooLarge`]).
pub fn decompress(codec: Compression, data: &[u8], limit_bytes: usize) -> Result<Vec<u8>> {
    match codec {
        Compression::None if data.len() > limit_bytes => {
            Err(RecordError::DecompressedTooLarge { limit: limit_bytes })
        }
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => read_limited(
            codec,
            flate2::read::MultiGzDecoder::new(data),
            data.len(),
            limit_bytes,
        ),
        Compression::Snappy => snappy_decompress(data, limit_bytes),
        Compression::Lz4 => lz4_decompress(data, limit_bytes),
        Compression::Zstd => zstd_decompress(data, limit_bytes),
    }
}

fn failed(codec: Compression, e: impl std::fmt::Display) -> RecordError {
    RecordError::Compression {
        codec: codec.name(),
        reason: e.to_string(),
    }
}

fn initial_capacity(input_len: usize, limit_bytes: usize) -> usize {
    input_len.saturating_mul(RESERVE_RATIO).min(limit_bytes)
}

/// Reads all of `reader` through `take(limit + 1)`: one byte past the limit proves it is
/// exceeded without producing the rest.
fn read_limited(
    codec: Compression,
    reader: impl Read,
    input_len: usize,
    limit_bytes: usize,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(initial_capacity(input_len, limit_bytes));
    append_limited(codec, reader, &mut out, limit_bytes)?;
    Ok(out)
}

/// Appends what `reader` yields to `out`, failing once `out` would exceed `limit_bytes`.
fn append_limited(
    codec: Compression,
    reader: impl Read,
    out: &mut Vec<u8>,
    limit_bytes: usize,
) -> Result<()> {
    let room = limit_bytes.saturating_sub(out.len()) as u64;
    reader
        .take(room.saturating_add(1))
        .read_to_end(out)
        .map_err(|e| failed(codec, e))?;
    if out.len() > limit_bytes {
        return Err(RecordError::DecompressedTooLarge { limit: limit_bytes });
    }
    Ok(())
}

fn gzip_compress(data: &[u8]) -> Result<Vec<u8>> {
    let out = Vec::with_capacity(data.len() / 2 + 64);
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    enc.write_all(data)
        .map_err(|e| failed(Compression::Gzip, e))?;
    enc.finish().map_err(|e| failed(Compression::Gzip, e))
}

fn lz4_compress(data: &[u8]) -> Result<Vec<u8>> {
    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
    let info = FrameInfo::new()
        .block_size(BlockSize::Max64KB)
        .block_mode(BlockMode::Independent)
        .block_checksums(false)
        .content_checksum(false);
    let out = Vec::with_capacity(data.len() / 2 + 64);
    let mut enc = FrameEncoder::with_frame_info(info, out);
    enc.write_all(data)
        .map_err(|e| failed(Compression::Lz4, e))?;
    enc.finish().map_err(|e| failed(Compression::Lz4, e))
}

/// Decodes every LZ4 frame in `data`, at least one. Each frame's extent is walked first:
/// lz4_flex's reader takes a frame cut at a block boundary for a complete one.
fn lz4_decompress(data: &[u8], limit_bytes: usize) -> Result<Vec<u8>> {
    let codec = Compression::Lz4;
    if data.is_empty() {
        return Err(failed(codec, "no frame"));
    }
    let mut out = Vec::with_capacity(initial_capacity(data.len(), limit_bytes));
    let mut input = data;
    while !input.is_empty() {
        let len =
            lz4_frame_len(input).ok_or_else(|| failed(codec, "truncated or unknown frame"))?;
        let (frame, rest) = input.split_at(len);
        append_limited(
            codec,
            lz4_flex::frame::FrameDecoder::new(frame),
            &mut out,
            limit_bytes,
        )?;
        input = rest;
    }
    Ok(out)
}

/// Length of the LZ4 frame at the start of `data`, walking its descriptor and block sizes.
fn lz4_frame_len(data: &[u8]) -> Option<usize> {
    const MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();
    const BLOCK_CHECKSUM: u8 = 0x10;
    const CONTENT_SIZE: u8 = 0x08;
    const CONTENT_CHECKSUM: u8 = 0x04;
    const DICT_ID: u8 = 0x01;
    if data.get(..4)? != MAGIC {
        return None;
    }
    let flg = *data.get(4)?;
    let flag_len = |bit: u8, len: usize| if flg & bit != 0 { len } else { 0 };
    // magic, FLG, BD, optional content size and dictionary id, header checksum
    let mut pos = 4 + 2 + flag_len(CONTENT_SIZE, 8) + flag_len(DICT_ID, 4) + 1;
    loop {
        let word = u32::from_le_bytes(*data.get(pos..)?.first_chunk::<4>()?);
        pos += 4;
        if word == 0 {
            pos += flag_len(CONTENT_CHECKSUM, 4);
            return (pos <= data.len()).then_some(pos);
        }
        let block = (word & 0x7FFF_FFFF) as usize;
        pos = pos.checked_add(block + flag_len(BLOCK_CHECKSUM, 4))?;
    }
}

fn snappy_compress(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + data.len() / 2 + 64);
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes()); // version
    out.extend_from_slice(&1i32.to_be_bytes()); // compatible version
    let mut enc = snap::raw::Encoder::new();
    for chunk in data.chunks(SNAPPY_BLOCK_BYTES) {
        let at = out.len();
        let room = snap::raw::max_compress_len(chunk.len());
        out.resize(at + 4 + room, 0);
        let n = enc
            .compress(chunk, &mut out[at + 4..])
            .map_err(|e| failed(Compression::Snappy, e))?;
        // A block compresses at most 32 KiB: its length fits a u32.
        out[at..at + 4].copy_from_slice(&(n as u32).to_be_bytes());
        out.truncate(at + 4 + n);
    }
    Ok(out)
}

fn snappy_decompress(data: &[u8], limit_bytes: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match data.strip_prefix(&XERIAL_MAGIC[..]) {
        Some(rest) if data.len() >= XERIAL_HEADER_LEN => {
            let mut blocks = &rest[XERIAL_HEADER_LEN - XERIAL_MAGIC.len()..];
            while let Some((len, rest)) = blocks.split_first_chunk::<4>() {
                let len = u32::from_be_bytes(*len) as usize;
                let block = rest
                    .get(..len)
                    .ok_or_else(|| failed(Compression::Snappy, "truncated block"))?;
                snappy_block(block, &mut out, limit_bytes)?;
                blocks = &rest[len..];
            }
            if !blocks.is_empty() {
                return Err(failed(Compression::Snappy, "truncated block length"));
            }
        }
        _ => snappy_block(data, &mut out, limit_bytes)?,
    }
    Ok(out)
}

/// Decompresses one raw snappy block onto `out`, checking its claimed length first.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit_bytes: usize) -> Result<()> {
    let n = snap::raw::decompress_len(block).map_err(|e| failed(Compression::Snappy, e))?;
    if n > limit_bytes.saturating_sub(out.len()) {
        return Err(RecordError::DecompressedTooLarge { limit: limit_bytes });
    }
    let at = out.len();
    out.resize(at + n, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[at..])
        .map_err(|e| failed(Compression::Snappy, e))?;
    if written != n {
        return Err(failed(
            Compression::Snappy,
            "block shorter than its claimed length",
        ));
    }
    Ok(())
}

/// Decodes every zstd frame in `data` (skippable frames are skipped), at least one.
fn zstd_decompress(data: &[u8], limit_bytes: usize) -> Result<Vec<u8>> {
    use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
    use ruzstd::decoding::{FrameDecoder, StreamingDecoder, DEFAULT_MAX_WINDOW_SIZE};
    let codec = Compression::Zstd;
    if data.is_empty() {
        return Err(failed(codec, "no frame"));
    }
    let mut frames = FrameDecoder::new();
    let window_max = (limit_bytes as u64).clamp(ZSTD_WINDOW_MIN_BYTES, DEFAULT_MAX_WINDOW_SIZE);
    frames.set_max_window_size(window_max);
    let mut out = Vec::with_capacity(initial_capacity(data.len(), limit_bytes));
    let mut input = data;
    while !input.is_empty() {
        match StreamingDecoder::new_with_decoder(&mut input, &mut frames) {
            Ok(frame) => append_limited(codec, frame, &mut out, limit_bytes)?,
            Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                length,
                ..
            })) => {
                input = input
                    .get(length as usize..)
                    .ok_or_else(|| failed(codec, "truncated skippable frame"))?;
            }
            Err(e) => return Err(failed(codec, e)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..200_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
            .collect()
    }

    #[test]
    fn every_codec_round_trips_and_respects_the_limit() {
        let data = sample();
        for codec in Compression::ALL {
            let c = compress(codec, &data).expect("compresses");
            assert_eq!(
                decompress(codec, &c, data.len()).expect("decompresses"),
                data,
                "{codec:?}"
            );
            assert!(
                matches!(
                    decompress(codec, &c, data.len() - 1),
                    Err(RecordError::DecompressedTooLarge { .. })
                ),
                "{codec:?}"
            );
            let empty = compress(codec, &[]).expect("compresses nothing");
            assert_eq!(
                decompress(codec, &empty, 0).expect("empty"),
                b"",
                "{codec:?}"
            );
        }
    }

    #[test]
    fn snappy_uses_xerial_framing_in_32_kib_blocks_and_also_reads_a_raw_block() {
        let data = sample();
        let c = compress(Compression::Snappy, &data).expect("compresses");
        assert_eq!(&c[..8], &XERIAL_MAGIC);
        assert_eq!(&c[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        let mut blocks = 0;
        let mut rest = &c[16..];
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            rest = &tail[u32::from_be_bytes(*len) as usize..];
            blocks += 1;
        }
        assert_eq!(blocks, data.len().div_ceil(SNAPPY_BLOCK_BYTES));
        let raw = snap::raw::Encoder::new()
            .compress_vec(&data)
            .expect("compresses");
        assert_eq!(
            decompress(Compression::Snappy, &raw, data.len()).expect("raw"),
            data
        );
        // A raw block claiming more than the limit is refused before allocating.
        assert!(matches!(
            decompress(Compression::Snappy, &raw, 10),
            Err(RecordError::DecompressedTooLarge { limit: 10 })
        ));
    }

    #[test]
    fn lz4_frame_has_independent_64_kib_blocks_and_no_content_checksum() {
        let c = compress(Compression::Lz4, b"hello").expect("compresses");
        assert_eq!(&c[..4], &[0x04, 0x22, 0x4d, 0x18]);
        let flg = c[4];
        assert_eq!(flg >> 6, 1, "version 1");
        assert_ne!(flg & 0x20, 0, "block independence");
        assert_eq!(flg & 0x04, 0, "no content checksum");
        assert_eq!(flg & 0x10, 0, "no block checksum");
        assert_eq!((c[5] >> 4) & 0x7, 4, "64 KiB blocks");
    }

    #[test]
    fn zstd_and_gzip_accept_concatenated_frames() {
        for codec in [Compression::Zstd, Compression::Gzip, Compression::Lz4] {
            let mut c = compress(codec, b"abc").expect("compresses");
            c.extend(compress(codec, b"def").expect("compresses"));
            assert_eq!(
                decompress(codec, &c, 100).expect("both frames"),
                b"abcdef",
                "{codec:?}"
            );
        }
    }

    #[test]
    fn truncated_and_garbage_input_is_an_error_not_a_panic() {
        let data = sample();
        for codec in Compression::ALL.into_iter().skip(1) {
            let c = compress(codec, &data).expect("compresses");
            for cut in [1, c.len() / 2, c.len() - 1] {
                assert!(
                    decompress(codec, &c[..cut], 1 << 20).is_err(),
                    "{codec:?} cut at {cut}"
                );
            }
            assert!(
                decompress(codec, &[0xAB; 64], 1 << 20).is_err(),
                "{codec:?} garbage"
            );
        }
    }
}
