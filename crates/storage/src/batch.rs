//! The record batch: Skein's unit of append, replication, storage and fetch.
//!
//! The format is specified in `docs/design/001-record-batch.md`. In short, a batch is a fixed
//! 72-byte little-endian header followed by the records:
//!
//! ```text
//! pos len field             owner
//!   0   8 base_offset       log (stamped on append)
//!   8   8 raft_term         log (stamped on append)
//!  16   8 raft_index        log (stamped on append)
//!  24   4 batch_len         producer: total bytes, header included
//!  28   4 crc32             producer: CRC-32 (IEEE, crc32fast) of bytes [32, batch_len)
//!  32   1 magic (= 2)
//!  33   1 entry kind        0 data, 1 blank (Raft), 2 membership (Raft)
//!  34   2 attributes        bits 0-2: compression (0 none, 1 lz4, 2 zstd); other bits zero
//!  36   4 record_count      records in the batch (0 for blank and membership entries)
//!  40   8 first_timestamp   ms since the Unix epoch
//!  48   8 max_timestamp
//!  56   8 producer_id       -1 when not idempotent
//!  64   2 producer_epoch
//!  66   2 reserved (zero)
//!  68   4 base_sequence     -1 when not idempotent
//!  72     records (or the entry's payload for non-data kinds)
//! ```
//!
//! The CRC covers everything the broker never rewrites, so a batch keeps the CRC its producer
//! computed from the client to every replica's disk and back to every consumer. The append path
//! checks the CRC and stamps the first 24 bytes; it never looks at individual records.
//!
//! Each record, like Kafka's v2 format, is
//! `length varint | attributes u8 | timestamp_delta varlong | offset_delta varint |
//!  key_len varint (-1 null) | key | value_len varint (-1 null) | value |
//!  header_count varint | (hkey_len varint | hkey | hval_len varint (-1 null) | hval)*`
//! with zig-zag varints.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Result, StorageError};

/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 72;
/// Format version written by this crate.
pub const MAGIC: u8 = 2;
/// The first byte covered by the CRC: everything before it is stamped by the log.
pub const CRC_START: usize = 32;
/// Bytes the log stamps on append (base offset, Raft term, Raft index).
pub const STAMP_LEN: usize = 24;

const BASE_OFFSET: usize = 0;
const RAFT_TERM: usize = 8;
const RAFT_INDEX: usize = 16;
const BATCH_LEN: usize = 24;
const CRC: usize = 28;
const MAGIC_POS: usize = 32;
const KIND: usize = 33;
const ATTRIBUTES: usize = 34;
const RECORD_COUNT: usize = 36;
const FIRST_TIMESTAMP: usize = 40;
const MAX_TIMESTAMP: usize = 48;
const PRODUCER_ID: usize = 56;
const PRODUCER_EPOCH: usize = 64;
const RESERVED: usize = 66;
const BASE_SEQUENCE: usize = 68;

const _: () = assert!(BASE_SEQUENCE + 4 == HEADER_LEN);
const _: () = assert!(STAMP_LEN <= CRC_START && CRC + 4 == CRC_START);

const COMPRESSION_MASK: u16 = 0b111;

/// What a batch carries: records, or one of the Raft entries stored in the same log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    /// Client records; the only kind a consumer sees.
    Data = 0,
    /// A Raft blank entry (written by a new leader); carries no records.
    Blank = 1,
    /// A Raft membership change; its payload is the serialized membership.
    Membership = 2,
}

impl EntryKind {
    fn from_u8(v: u8) -> Result<Self> {
        match v {
            0 => Ok(EntryKind::Data),
            1 => Ok(EntryKind::Blank),
            2 => Ok(EntryKind::Membership),
            _ => Err(StorageError::InvalidBatch {
                reason: "unknown entry kind",
            }),
        }
    }
}

/// Compression codec of a data batch's records (the header is never compressed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u16)]
pub enum Compression {
    /// Records stored as they are.
    #[default]
    None = 0,
    /// LZ4 frame.
    Lz4 = 1,
    /// Zstandard frame.
    Zstd = 2,
}

impl Compression {
    fn from_attributes(attributes: u16) -> Result<Self> {
        match attributes & COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Lz4),
            2 => Ok(Compression::Zstd),
            _ => Err(StorageError::InvalidBatch {
                reason: "unknown compression codec",
            }),
        }
    }
}

/// A parsed batch header (a copy of the fixed fields; the batch bytes stay where they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (stamped by the log).
    pub base_offset: u64,
    /// Raft term of the entry (stamped by the log).
    pub raft_term: u64,
    /// Raft index of the entry (stamped by the log).
    pub raft_index: u64,
    /// Total length of the batch, header included.
    pub batch_len: u32,
    /// CRC-32 of bytes `[CRC_START, batch_len)`.
    pub crc: u32,
    /// Entry kind.
    pub kind: EntryKind,
    /// Raw attributes (compression codec in bits 0-2).
    pub attributes: u16,
    /// Number of records; the batch covers offsets `base_offset .. base_offset + record_count`.
    pub record_count: u32,
    /// Timestamp of the first record, ms since the epoch.
    pub first_timestamp: i64,
    /// Largest record timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
}

impl BatchHeader {
    /// Parses and sanity-checks the header at the start of `buf` without checking the CRC.
    ///
    /// Checks: enough bytes for the header, the magic byte, a `batch_len` of at least the header,
    /// a known entry kind and codec, zero reserved bits.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(StorageError::BatchTooShort {
                len: buf.len(),
                needed: HEADER_LEN,
            });
        }
        let magic = buf[MAGIC_POS];
        if magic != MAGIC {
            return Err(StorageError::BadMagic {
                found: magic,
                expected: MAGIC,
            });
        }
        let batch_len = read_u32(buf, BATCH_LEN);
        if (batch_len as usize) < HEADER_LEN {
            return Err(StorageError::InvalidBatch {
                reason: "batch length shorter than the header",
            });
        }
        let kind = EntryKind::from_u8(buf[KIND])?;
        let attributes = read_u16(buf, ATTRIBUTES);
        Compression::from_attributes(attributes)?;
        if attributes & !COMPRESSION_MASK != 0 || read_u16(buf, RESERVED) != 0 {
            return Err(StorageError::InvalidBatch {
                reason: "reserved bits are set",
            });
        }
        let record_count = read_u32(buf, RECORD_COUNT);
        if kind != EntryKind::Data && record_count != 0 {
            return Err(StorageError::InvalidBatch {
                reason: "a non-data entry must carry zero records",
            });
        }
        Ok(BatchHeader {
            base_offset: read_u64(buf, BASE_OFFSET),
            raft_term: read_u64(buf, RAFT_TERM),
            raft_index: read_u64(buf, RAFT_INDEX),
            batch_len,
            crc: read_u32(buf, CRC),
            kind,
            attributes,
            record_count,
            first_timestamp: read_u64(buf, FIRST_TIMESTAMP) as i64,
            max_timestamp: read_u64(buf, MAX_TIMESTAMP) as i64,
            producer_id: read_u64(buf, PRODUCER_ID) as i64,
            producer_epoch: read_u16(buf, PRODUCER_EPOCH) as i16,
            base_sequence: read_u32(buf, BASE_SEQUENCE) as i32,
        })
    }

    /// The compression codec.
    pub fn compression(&self) -> Compression {
        // `parse` rejected unknown codecs.
        Compression::from_attributes(self.attributes).unwrap_or_default()
    }

    /// One past the last offset the batch covers.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }

    /// Offset of the last record, or `None` for a batch without records.
    pub fn last_offset(&self) -> Option<u64> {
        self.record_count
            .checked_sub(1)
            .map(|d| self.base_offset + u64::from(d))
    }
}

/// Parses the header of `buf` and checks that `buf` is exactly one whole batch with a valid CRC.
///
/// This is what the append path runs on every batch, and what every reader should run on bytes it
/// got from the disk or the network.
pub fn validate(buf: &[u8]) -> Result<BatchHeader> {
    let header = BatchHeader::parse(buf)?;
    if header.batch_len as usize != buf.len() {
        return Err(StorageError::LengthMismatch {
            header: header.batch_len,
            actual: buf.len(),
        });
    }
    let computed = crc32fast::hash(&buf[CRC_START..]);
    if computed != header.crc {
        return Err(StorageError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// The 24 bytes the log writes in front of a batch's CRC-covered part.
pub fn stamp_bytes(base_offset: u64, raft_term: u64, raft_index: u64) -> [u8; STAMP_LEN] {
    let mut out = [0u8; STAMP_LEN];
    out[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_le_bytes());
    out[RAFT_TERM..RAFT_TERM + 8].copy_from_slice(&raft_term.to_le_bytes());
    out[RAFT_INDEX..RAFT_INDEX + 8].copy_from_slice(&raft_index.to_le_bytes());
    out
}

/// Stamps base offset, term and index into a batch held in a mutable buffer.
pub fn stamp(buf: &mut [u8], base_offset: u64, raft_term: u64, raft_index: u64) -> Result<()> {
    if buf.len() < HEADER_LEN {
        return Err(StorageError::BatchTooShort {
            len: buf.len(),
            needed: HEADER_LEN,
        });
    }
    buf[..STAMP_LEN].copy_from_slice(&stamp_bytes(base_offset, raft_term, raft_index));
    Ok(())
}

fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

// ---------------------------------------------------------------------------------------------
// Varints (zig-zag, LEB128), as in Kafka's record format.

fn put_varlong(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

fn varlong_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    let bits = 64 - (z | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads a zig-zag varint from `buf[*pos..]`, advancing `pos`.
fn get_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    let mut shift = 0u32;
    loop {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        if shift == 63 && byte > 1 {
            return None;
        }
        z |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((z >> 1) as i64) ^ -((z & 1) as i64))
}

// ---------------------------------------------------------------------------------------------
// Encoder.

/// Identity of an idempotent producer, stamped in every batch it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    /// Producer id assigned by the cluster.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the batch's first record.
    pub base_sequence: i32,
}

/// A record header (key and optional value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    /// Header key.
    pub key: &'a [u8],
    /// Header value; `None` is a null value.
    pub value: Option<&'a [u8]>,
}

/// Builds a data batch, record by record. Used by clients and tests; the broker never does this.
///
/// ```
/// use skein_storage::batch::{BatchBuilder, validate};
/// let mut b = BatchBuilder::new(1_700_000_000_000);
/// b.push(1_700_000_000_000, Some(b"k"), Some(b"hello"), &[]);
/// let batch = b.finish();
/// assert_eq!(validate(&batch).unwrap().record_count, 1);
/// ```
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    first_timestamp: i64,
    max_timestamp: i64,
    count: u32,
    producer: Option<ProducerStamp>,
}

impl BatchBuilder {
    /// A builder whose timestamp deltas are relative to `first_timestamp` (ms since the epoch).
    pub fn new(first_timestamp: i64) -> Self {
        Self::with_capacity(first_timestamp, 16 * 1024)
    }

    /// Like [`BatchBuilder::new`], reserving `capacity` bytes.
    pub fn with_capacity(first_timestamp: i64, capacity: usize) -> Self {
        let mut buf = BytesMut::with_capacity(capacity.max(HEADER_LEN));
        buf.put_bytes(0, HEADER_LEN);
        BatchBuilder {
            buf,
            first_timestamp,
            max_timestamp: first_timestamp,
            count: 0,
            producer: None,
        }
    }

    /// Marks the batch as sent by an idempotent producer.
    pub fn producer(mut self, stamp: ProducerStamp) -> Self {
        self.producer = Some(stamp);
        self
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// True when no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size in bytes the batch has now.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Bytes a record would add to the batch.
    pub fn record_size(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
    ) -> usize {
        let body = self.body_len(timestamp, key, value, headers);
        varlong_len(body as i64) + body
    }

    fn body_len(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
    ) -> usize {
        let bytes_len = |b: Option<&[u8]>| match b {
            Some(b) => varlong_len(b.len() as i64) + b.len(),
            None => 1,
        };
        let mut n = 1
            + varlong_len(timestamp.wrapping_sub(self.first_timestamp))
            + varlong_len(i64::from(self.count))
            + bytes_len(key)
            + bytes_len(value)
            + varlong_len(headers.len() as i64);
        for h in headers {
            n += bytes_len(Some(h.key)) + bytes_len(h.value);
        }
        n
    }

    /// Appends one record.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
    ) {
        let body = self.body_len(timestamp, key, value, headers);
        self.buf.reserve(body + 10);
        put_varlong(&mut self.buf, body as i64);
        self.buf.put_u8(0); // record attributes (unused)
        put_varlong(&mut self.buf, timestamp.wrapping_sub(self.first_timestamp));
        put_varlong(&mut self.buf, i64::from(self.count));
        put_bytes(&mut self.buf, key);
        put_bytes(&mut self.buf, value);
        put_varlong(&mut self.buf, headers.len() as i64);
        for h in headers {
            put_bytes(&mut self.buf, Some(h.key));
            put_bytes(&mut self.buf, h.value);
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self.count += 1;
    }

    /// The encoded records pushed so far (what a compressing producer compresses).
    pub fn records_bytes(&self) -> &[u8] {
        &self.buf[HEADER_LEN..]
    }

    /// Finishes a batch whose records area is `compressed`, the output of `codec` applied to
    /// [`BatchBuilder::records_bytes`]. The codec itself lives with the producer and consumer;
    /// the broker stores compressed batches as they are.
    pub fn finish_compressed(self, codec: Compression, compressed: &[u8]) -> Bytes {
        let producer = self.producer.unwrap_or(ProducerStamp {
            producer_id: -1,
            producer_epoch: 0,
            base_sequence: -1,
        });
        let mut buf = BytesMut::with_capacity(HEADER_LEN + compressed.len());
        buf.put_bytes(0, HEADER_LEN);
        buf.put_slice(compressed);
        finish_header(
            buf,
            EntryKind::Data,
            codec,
            self.count,
            self.first_timestamp,
            self.max_timestamp,
            producer,
        )
    }

    /// Writes the header and CRC; base offset, term and index are left zero for the log to stamp.
    pub fn finish(self) -> Bytes {
        let producer = self.producer.unwrap_or(ProducerStamp {
            producer_id: -1,
            producer_epoch: 0,
            base_sequence: -1,
        });
        finish_header(
            self.buf,
            EntryKind::Data,
            Compression::None,
            self.count,
            self.first_timestamp,
            self.max_timestamp,
            producer,
        )
    }
}

fn put_bytes(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.put_slice(b);
        }
        None => put_varlong(out, -1),
    }
}

fn finish_header(
    mut buf: BytesMut,
    kind: EntryKind,
    compression: Compression,
    count: u32,
    first_timestamp: i64,
    max_timestamp: i64,
    producer: ProducerStamp,
) -> Bytes {
    let len = buf.len() as u32;
    let h = &mut buf[..HEADER_LEN];
    h[BATCH_LEN..BATCH_LEN + 4].copy_from_slice(&len.to_le_bytes());
    h[MAGIC_POS] = MAGIC;
    h[KIND] = kind as u8;
    h[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&(compression as u16).to_le_bytes());
    h[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&count.to_le_bytes());
    h[FIRST_TIMESTAMP..FIRST_TIMESTAMP + 8].copy_from_slice(&first_timestamp.to_le_bytes());
    h[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_le_bytes());
    h[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&producer.producer_id.to_le_bytes());
    h[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&producer.producer_epoch.to_le_bytes());
    h[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&producer.base_sequence.to_le_bytes());
    let crc = crc32fast::hash(&buf[CRC_START..]);
    buf[CRC..CRC + 4].copy_from_slice(&crc.to_le_bytes());
    buf.freeze()
}

/// Builds a batch of a Raft-internal kind (blank or membership) around an opaque payload.
pub fn control_batch(kind: EntryKind, timestamp: i64, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + payload.len());
    buf.put_bytes(0, HEADER_LEN);
    buf.put_slice(payload);
    finish_header(
        buf,
        kind,
        Compression::None,
        0,
        timestamp,
        timestamp,
        ProducerStamp {
            producer_id: -1,
            producer_epoch: 0,
            base_sequence: -1,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Decoder.

/// One decoded record. Key, value and header bytes are slices of the batch (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset (batch base offset + delta).
    pub offset: u64,
    /// Timestamp, ms since the epoch.
    pub timestamp: i64,
    /// Key, if any.
    pub key: Option<Bytes>,
    /// Value, if any.
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// A validated batch and its bytes.
#[derive(Debug, Clone)]
pub struct Batch {
    header: BatchHeader,
    bytes: Bytes,
}

impl Batch {
    /// Validates `bytes` as exactly one batch (header, length, CRC).
    pub fn new(bytes: Bytes) -> Result<Self> {
        let header = validate(&bytes)?;
        Ok(Batch { header, bytes })
    }

    /// A batch whose bytes were just validated into `header` by the caller.
    pub(crate) fn from_validated(header: BatchHeader, bytes: Bytes) -> Self {
        Batch { header, bytes }
    }

    /// The parsed header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The whole batch.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The bytes after the header: the records, or a control entry's payload.
    pub fn payload(&self) -> Bytes {
        self.bytes.slice(HEADER_LEN..)
    }

    /// Iterates over the records of a data batch whose records area the caller decompressed
    /// (for a batch with [`Compression::None`], [`Batch::records`] does this itself).
    pub fn records_from(&self, decompressed: Bytes) -> Records {
        let count = if self.header.kind == EntryKind::Data {
            self.header.record_count
        } else {
            0
        };
        Records::new(
            decompressed,
            count,
            self.header.base_offset,
            self.header.first_timestamp,
        )
    }

    /// Iterates over the records of a data batch (none for other kinds).
    pub fn records(&self) -> Result<Records> {
        if self.header.compression() != Compression::None {
            return Err(StorageError::UnsupportedCompression {
                codec: self.header.compression() as u16,
            });
        }
        let count = if self.header.kind == EntryKind::Data {
            self.header.record_count
        } else {
            0
        };
        Ok(Records::new(
            self.payload(),
            count,
            self.header.base_offset,
            self.header.first_timestamp,
        ))
    }
}

/// Iterator over the records of an uncompressed batch payload.
#[derive(Debug)]
pub struct Records {
    data: Bytes,
    pos: usize,
    index: u32,
    count: u32,
    base_offset: u64,
    first_timestamp: i64,
}

impl Records {
    /// Decodes `count` records from `data` (the records area of a batch, decompressed).
    pub fn new(data: Bytes, count: u32, base_offset: u64, first_timestamp: i64) -> Self {
        Records {
            data,
            pos: 0,
            index: 0,
            count,
            base_offset,
            first_timestamp,
        }
    }

    fn fail(&mut self, reason: &'static str) -> StorageError {
        let record = self.index;
        self.index = self.count; // stop iterating
        StorageError::InvalidRecord { record, reason }
    }

    fn bytes_field(&mut self, end: usize) -> Result<Option<Bytes>> {
        let len = get_varlong(&self.data[..end], &mut self.pos)
            .ok_or_else(|| self.fail("truncated length"))?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| self.fail("negative length"))?;
        let stop = self
            .pos
            .checked_add(len)
            .filter(|s| *s <= end)
            .ok_or_else(|| self.fail("field runs past the record"))?;
        let b = self.data.slice(self.pos..stop);
        self.pos = stop;
        Ok(Some(b))
    }

    fn decode_one(&mut self) -> Result<Record> {
        let len = get_varlong(&self.data, &mut self.pos)
            .ok_or_else(|| self.fail("truncated record length"))?;
        let len = usize::try_from(len).map_err(|_| self.fail("negative record length"))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| self.fail("record runs past the batch"))?;
        if self.pos >= end {
            return Err(self.fail("empty record"));
        }
        self.pos += 1; // attributes
        let ts_delta = get_varlong(&self.data[..end], &mut self.pos)
            .ok_or_else(|| self.fail("truncated timestamp delta"))?;
        let off_delta = get_varlong(&self.data[..end], &mut self.pos)
            .ok_or_else(|| self.fail("truncated offset delta"))?;
        let off_delta = u64::try_from(off_delta).map_err(|_| self.fail("negative offset delta"))?;
        let key = self.bytes_field(end)?;
        let value = self.bytes_field(end)?;
        let n_headers = get_varlong(&self.data[..end], &mut self.pos)
            .ok_or_else(|| self.fail("truncated header count"))?;
        let n_headers =
            usize::try_from(n_headers).map_err(|_| self.fail("negative header count"))?;
        if n_headers > end - self.pos {
            return Err(self.fail("more headers than bytes"));
        }
        let mut headers = Vec::with_capacity(n_headers);
        for _ in 0..n_headers {
            let hk = self
                .bytes_field(end)?
                .ok_or_else(|| self.fail("null header key"))?;
            let hv = self.bytes_field(end)?;
            headers.push((hk, hv));
        }
        if self.pos != end {
            return Err(self.fail("record length disagrees with its fields"));
        }
        Ok(Record {
            offset: self.base_offset.wrapping_add(off_delta),
            timestamp: self.first_timestamp.wrapping_add(ts_delta),
            key,
            value,
            headers,
        })
    }
}

impl Iterator for Records {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.count {
            return None;
        }
        let r = self.decode_one();
        if r.is_ok() {
            self.index += 1;
        }
        Some(r)
    }
}

/// Splits a buffer of concatenated batches (what a fetch returns) into validated batches.
///
/// Stops with an error at the first batch that is incomplete or fails its CRC.
#[derive(Debug)]
pub struct BatchIter {
    data: Bytes,
    pos: usize,
}

impl BatchIter {
    /// Iterates over the batches in `data`.
    pub fn new(data: Bytes) -> Self {
        BatchIter { data, pos: 0 }
    }
}

impl Iterator for BatchIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.data.len() {
            return None;
        }
        let rest = &self.data[self.pos..];
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => {
                self.pos = self.data.len();
                return Some(Err(e));
            }
        };
        let len = header.batch_len as usize;
        if len > rest.len() {
            self.pos = self.data.len();
            return Some(Err(StorageError::BatchTooShort {
                len: rest.len(),
                needed: len,
            }));
        }
        let bytes = self.data.slice(self.pos..self.pos + len);
        self.pos += len;
        let r = Batch::new(bytes);
        if r.is_err() {
            self.pos = self.data.len();
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_layout_round_trips() {
        let mut b = BatchBuilder::new(1000).producer(ProducerStamp {
            producer_id: 7,
            producer_epoch: 3,
            base_sequence: 42,
        });
        b.push(1000, None, Some(b"a"), &[]);
        b.push(1500, Some(b"k"), None, &[]);
        let bytes = b.finish();
        let mut m = BytesMut::from(&bytes[..]);
        stamp(&mut m, 10, 4, 99).expect("long enough");
        let h = validate(&m).expect("valid after stamping: stamp is outside the CRC");
        assert_eq!(h.base_offset, 10);
        assert_eq!(h.raft_term, 4);
        assert_eq!(h.raft_index, 99);
        assert_eq!(h.record_count, 2);
        assert_eq!(h.first_timestamp, 1000);
        assert_eq!(h.max_timestamp, 1500);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 3, 42)
        );
        assert_eq!(h.next_offset(), 12);
        assert_eq!(h.last_offset(), Some(11));
    }

    #[test]
    fn crc_catches_a_flipped_bit_anywhere_it_covers() {
        let mut b = BatchBuilder::new(0);
        b.push(0, Some(b"key"), Some(b"value"), &[]);
        let bytes = b.finish();
        for i in CRC_START..bytes.len() {
            for bit in 0..8 {
                let mut m = bytes.to_vec();
                m[i] ^= 1 << bit;
                assert!(
                    validate(&m).is_err(),
                    "flip at byte {i} bit {bit} undetected"
                );
            }
        }
    }

    #[test]
    fn rejects_bad_headers_without_panicking() {
        assert!(matches!(
            validate(&[0u8; 10]),
            Err(StorageError::BatchTooShort { .. })
        ));
        let mut b = BatchBuilder::new(0);
        b.push(0, None, Some(b"v"), &[]);
        let bytes = b.finish();
        let mut m = bytes.to_vec();
        m[MAGIC_POS] = 9;
        assert!(matches!(validate(&m), Err(StorageError::BadMagic { .. })));
        let mut m = bytes.to_vec();
        m.push(0);
        assert!(matches!(
            validate(&m),
            Err(StorageError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn control_batches_carry_payload_and_no_records() {
        let b = control_batch(EntryKind::Membership, 5, b"members");
        let batch = Batch::new(b).expect("valid");
        assert_eq!(batch.header().kind, EntryKind::Membership);
        assert_eq!(batch.header().record_count, 0);
        assert_eq!(&batch.payload()[..], b"members");
        assert_eq!(batch.records().expect("uncompressed").count(), 0);
    }

    #[test]
    fn compressed_batches_keep_their_codec_and_records_area() {
        let mut b = BatchBuilder::new(10);
        b.push(10, Some(b"k"), Some(b"v"), &[]);
        let plain = b.records_bytes().to_vec();
        // A stand-in "codec" (reversal) shows the contract: the builder stores what it is given.
        let fake: Vec<u8> = plain.iter().rev().copied().collect();
        let batch = Batch::new(b.finish_compressed(Compression::Zstd, &fake)).expect("valid");
        assert_eq!(batch.header().compression(), Compression::Zstd);
        assert_eq!(&batch.payload()[..], &fake[..]);
        assert!(matches!(
            batch.records(),
            Err(StorageError::UnsupportedCompression { codec: 2 })
        ));
        let back: Vec<Record> = batch
            .records_from(Bytes::from(plain))
            .collect::<Result<_>>()
            .expect("decodes");
        assert_eq!(back[0].value.as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn varint_edges() {
        for v in [0i64, 1, -1, 63, -64, 64, i64::MAX, i64::MIN, 300, -300] {
            let mut b = BytesMut::new();
            put_varlong(&mut b, v);
            assert_eq!(b.len(), varlong_len(v), "len of {v}");
            let mut pos = 0;
            assert_eq!(get_varlong(&b, &mut pos), Some(v));
            assert_eq!(pos, b.len());
        }
        // Eleven continuation bytes is not a varint.
        assert_eq!(get_varlong(&[0xff; 11], &mut 0), None);
    }

    type TestRecord = (
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(Vec<u8>, Option<Vec<u8>>)>,
    );

    fn arb_record() -> impl Strategy<Value = TestRecord> {
        (
            -1_000_000i64..1_000_000,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..10),
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10)),
                ),
                0..3,
            ),
        )
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            base in 0u64..1 << 40,
            first_ts in 0i64..1 << 42,
            records in proptest::collection::vec(arb_record(), 1..50),
        ) {
            let mut b = BatchBuilder::new(first_ts);
            for (dt, k, v, hs) in &records {
                let hrefs: Vec<HeaderRef<'_>> = hs.iter().map(|(k, v)| HeaderRef { key: k, value: v.as_deref() }).collect();
                let before = b.size();
                let predicted = b.record_size(first_ts + dt, k.as_deref(), v.as_deref(), &hrefs);
                b.push(first_ts + dt, k.as_deref(), v.as_deref(), &hrefs);
                prop_assert_eq!(b.size() - before, predicted);
            }
            let mut m = BytesMut::from(&b.finish()[..]);
            stamp(&mut m, base, 1, 1).expect("long enough");
            let batch = Batch::new(m.freeze()).expect("valid");
            prop_assert_eq!(batch.header().record_count as usize, records.len());
            let max_ts = records.iter().map(|r| first_ts + r.0).max().unwrap_or(first_ts).max(first_ts);
            prop_assert_eq!(batch.header().max_timestamp, max_ts);
            let decoded: Vec<Record> = batch.records().expect("uncompressed").collect::<Result<_>>().expect("decodes");
            for (i, (r, (dt, k, v, hs))) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(r.offset, base + i as u64);
                prop_assert_eq!(r.timestamp, first_ts + dt);
                prop_assert_eq!(r.key.as_deref(), k.as_deref());
                prop_assert_eq!(r.value.as_deref(), v.as_deref());
                prop_assert_eq!(r.headers.len(), hs.len());
                for ((rk, rv), (hk, hv)) in r.headers.iter().zip(hs) {
                    prop_assert_eq!(&rk[..], &hk[..]);
                    prop_assert_eq!(rv.as_deref(), hv.as_deref());
                }
            }
        }

        #[test]
        fn decoder_never_panics_on_garbage(data in proptest::collection::vec(any::<u8>(), 0..300), count in 0u32..20) {
            for r in Records::new(Bytes::from(data.clone()), count, 0, 0) {
                let _ = r;
            }
            for b in BatchIter::new(Bytes::from(data)) {
                let _ = b;
            }
        }
    }
}
