//! The crate's one error type.

/// What was wrong with a batch, a record or a compressed records area.
///
/// Every variant is about the bytes (from a client, a peer or the disk), never about this
/// crate's state: decoding never panics on bad data, it returns one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than the header (or the header's `batch_len`) needs; for the last batch of a
    /// fetch this means "truncated: fetch the rest later".
    #[error("batch too short: {len} bytes, {needed} needed")]
    BatchTooShort {
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// Not a RecordBatch v2.
    #[error("bad magic byte {found} (expected {expected})")]
    BadMagic {
        /// Magic byte found.
        found: i8,
        /// The only magic this crate reads.
        expected: i8,
    },
    /// A header field breaks a rule of the format.
    #[error("invalid batch: {reason}")]
    InvalidBatch {
        /// The rule that was broken.
        reason: &'static str,
    },
    /// The buffer is not exactly as long as the header says.
    #[error("batch length {header} in the header, {actual} bytes present")]
    LengthMismatch {
        /// Total length from the header (`batchLength + 12`).
        header: u32,
        /// Bytes present.
        actual: usize,
    },
    /// The CRC-32C of bytes `[CRC_START, end)` is not the stored one.
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// A record inside a (CRC-valid) batch is malformed.
    #[error("invalid record {record}: {reason}")]
    InvalidRecord {
        /// Index of the record in its batch (`record_count` for trailing bytes).
        record: u32,
        /// What was wrong.
        reason: &'static str,
    },
    /// A codec failed to compress or decompress.
    #[error("{codec} compression: {reason}")]
    Compression {
        /// Codec name (`"gzip"`, `"snappy"`, `"lz4"`, `"zstd"`).
        codec: &'static str,
        /// The codec's own message.
        reason: String,
    },
    /// Decompressing would produce more than the limit (a compression bomb, or a limit too low).
    #[error("decompressed records exceed the limit of {limit} bytes")]
    DecompressedTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// Result with [`RecordError`].
pub type Result<T> = std::result::Result<T, RecordError>;
