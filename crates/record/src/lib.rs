//! Kafka's RecordBatch v2, exactly as Kafka defines it: the unit Skein appends, replicates,
//! stores and serves. This crate builds batches, validates them without trusting a byte,
//! iterates their records zero-copy and runs Kafka's compression codecs. It does no I/O.
//!
//! # Layout
//!
//! A batch is a 61-byte big-endian header followed by the records area:
//!
//! ```text
//! pos len field                 owner
//!   0   8 baseOffset            log (stamped on append), outside the CRC
//!   8   4 batchLength           bytes after this field (total length - 12)
//!  12   4 partitionLeaderEpoch  log (stamped on append: the Raft term), outside the CRC
//!  16   1 magic (= 2)
//!  17   4 crc                   CRC-32C (Castagnoli) of bytes [21, end)
//!  21   2 attributes            bits 0-2 codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd),
//!                               3 LogAppendTime, 4 transactional, 5 control,
//!                               8-9 Skein entry kind (0 Kafka, 1 blank, 2 membership);
//!                               bits 6, 7 and 10-15 zero
//!  23   4 lastOffsetDelta       recordsCount - 1 (-1 for internal kinds)
//!  27   8 baseTimestamp
//!  35   8 maxTimestamp
//!  43   8 producerId            -1 when not idempotent
//!  51   2 producerEpoch         -1 when not idempotent
//!  53   4 baseSequence          -1 when not idempotent
//!  57   4 recordsCount
//!  61     records (compressed as a whole when the codec is not 0)
//! ```
//!
//! Each record is `length varint | attributes i8 | timestampDelta varlong | offsetDelta varint |
//! keyLength varint (-1 null) | key | valueLength varint (-1 null) | value | headerCount varint |
//! (headerKeyLength varint | headerKey | headerValueLength varint (-1 null) | headerValue)*`,
//! with zig-zag varints.
//!
//! # What it promises
//!
//! - **The CRC covers everything the broker never rewrites** (bytes 21 to the end), so a batch
//!   keeps its producer's CRC from the client to every replica's disk and back to every
//!   consumer. The log stamps only `baseOffset` and `partitionLeaderEpoch` ([`stamp`],
//!   [`stamp_prefix`]); both are outside the CRC.
//! - **No count is trusted.** [`BatchHeader::parse`] checks every header field it can from the
//!   header alone; for uncompressed batches `recordsCount` is checked against the records
//!   area, and for compressed ones against the decompressed bytes before iterating.
//!   Decompression has a limit ([`DECOMPRESSED_BYTES_MAX`] by default). Nothing allocates from a
//!   count or length before it was checked against the bytes present; decoding never panics.
//! - **Offsets are dense**: a data or control batch has `lastOffsetDelta == recordsCount - 1`
//!   and each record's offset delta is its index (Skein does not compact).
//! - **Internal kinds.** Raft's own entries live in the same log as control batches with kind
//!   bits 1 (blank) or 2 (membership): no records, `lastOffsetDelta` -1, so they take no
//!   offset (`next_offset() == base_offset`); their records area is an opaque payload
//!   ([`internal_batch`], [`Batch::payload`]). Kafka clients skip them as control batches.

pub mod builder;
pub mod compression;
pub mod error;
pub mod header;
pub mod records;
pub mod varint;

pub use builder::{internal_batch, BatchBuilder, HeaderRef, ProducerStamp};
pub use compression::{compress, decompress, Compression, DECOMPRESSED_BYTES_MAX};
pub use error::{RecordError, Result};
pub use header::{
    stamp, stamp_prefix, validate, BatchHeader, EntryKind, InternalKind, TimestampType,
    ATTRIBUTES_POS, BASE_OFFSET_POS, BASE_SEQUENCE_POS, BASE_TIMESTAMP_POS, BATCH_LENGTH_POS,
    CODEC_MASK, CONTROL_BIT, CRC_POS, CRC_START, HEADER_LEN, KIND_MASK, LAST_OFFSET_DELTA_POS,
    LEADER_EPOCH_POS, LOG_OVERHEAD, MAGIC, MAGIC_POS, MAX_TIMESTAMP_POS, MIN_RECORD_LEN,
    PRODUCER_EPOCH_POS, PRODUCER_ID_POS, RECORDS_COUNT_POS, RESERVED_MASK, STAMP_PREFIX_LEN,
    TIMESTAMP_TYPE_BIT, TRANSACTIONAL_BIT,
};
pub use records::{Batch, BatchIter, Record, Records};
pub use varint::{get_varint, get_varlong, put_varint, put_varlong, varint_len, varlong_len};
