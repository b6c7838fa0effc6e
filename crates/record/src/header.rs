//! The 61-byte RecordBatch v2 header: layout, parsing with every check the header alone
//! allows, whole-batch validation and the log's stamping of its own fields.

use crate::compression::Compression;
use crate::error::{RecordError, Result};

/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 61;
/// The only format version this crate reads and writes (Kafka's RecordBatch v2).
pub const MAGIC: i8 = 2;
/// First byte covered by the CRC: everything before it (offset, length, leader epoch, magic,
/// CRC) is outside it.
pub const CRC_START: usize = ATTRIBUTES_POS;
/// Bytes in front of `batchLength`'s count: `baseOffset` and `batchLength` themselves.
pub const LOG_OVERHEAD: usize = BATCH_LENGTH_POS + 4;
/// Bytes the log writes in front of a producer's batch: base offset, length, leader epoch.
pub const STAMP_PREFIX_LEN: usize = MAGIC_POS;
/// The smallest record: length, attributes, timestamp delta, offset delta, key length, value
/// length and header count, one byte each.
pub const MIN_RECORD_LEN: usize = 7;

/// `baseOffset` (i64), stamped by the log.
pub const BASE_OFFSET_POS: usize = 0;
/// `batchLength` (i32): bytes after this field.
pub const BATCH_LENGTH_POS: usize = 8;
/// `partitionLeaderEpoch` (i32), stamped by the log (Skein writes the Raft term).
pub const LEADER_EPOCH_POS: usize = 12;
/// `magic` (i8).
pub const MAGIC_POS: usize = 16;
/// `crc` (u32): CRC-32C of bytes `[CRC_START, end)`.
pub const CRC_POS: usize = 17;
/// `attributes` (i16).
pub const ATTRIBUTES_POS: usize = 21;
/// `lastOffsetDelta` (i32).
pub const LAST_OFFSET_DELTA_POS: usize = 23;
/// `baseTimestamp` (i64).
pub const BASE_TIMESTAMP_POS: usize = 27;
/// `maxTimestamp` (i64).
pub const MAX_TIMESTAMP_POS: usize = 35;
/// `producerId` (i64).
pub const PRODUCER_ID_POS: usize = 43;
/// `producerEpoch` (i16).
pub const PRODUCER_EPOCH_POS: usize = 51;
/// `baseSequence` (i32).
pub const BASE_SEQUENCE_POS: usize = 53;
/// `recordsCount` (i32).
pub const RECORDS_COUNT_POS: usize = 57;

const _: () = assert!(RECORDS_COUNT_POS + 4 == HEADER_LEN);
const _: () = assert!(CRC_POS + 4 == CRC_START && MAGIC_POS + 1 == CRC_POS);
const _: () = assert!(LEADER_EPOCH_POS + 4 == MAGIC_POS && LOG_OVERHEAD == LEADER_EPOCH_POS);
const _: () = assert!(
    STAMP_PREFIX_LEN <= CRC_START,
    "stamping must not touch the CRC area"
);
const _: () = assert!(LAST_OFFSET_DELTA_POS == ATTRIBUTES_POS + 2);
const _: () = assert!(BASE_TIMESTAMP_POS == LAST_OFFSET_DELTA_POS + 4);
const _: () = assert!(MAX_TIMESTAMP_POS == BASE_TIMESTAMP_POS + 8);
const _: () = assert!(PRODUCER_ID_POS == MAX_TIMESTAMP_POS + 8);
const _: () = assert!(PRODUCER_EPOCH_POS == PRODUCER_ID_POS + 8);
const _: () = assert!(BASE_SEQUENCE_POS == PRODUCER_EPOCH_POS + 2);
const _: () = assert!(RECORDS_COUNT_POS == BASE_SEQUENCE_POS + 4);
// The largest `batchLength` (i32::MAX) plus the overhead still fits `batch_len: u32`.
const _: () = assert!((i32::MAX as u64) + (LOG_OVERHEAD as u64) <= u32::MAX as u64);

/// Attribute bits 0-2: compression codec.
pub const CODEC_MASK: u16 = 0x0007;
/// Attribute bit 3: timestamp type (set: LogAppendTime).
pub const TIMESTAMP_TYPE_BIT: u16 = 0x0008;
/// Attribute bit 4: transactional.
pub const TRANSACTIONAL_BIT: u16 = 0x0010;
/// Attribute bit 5: control batch (Kafka's, and Skein's internal kinds).
pub const CONTROL_BIT: u16 = 0x0020;
/// Attribute bits 8-9: Skein entry kind of a control batch (0 Kafka control, 1 blank,
/// 2 membership, 3 log start).
pub const KIND_MASK: u16 = 0x0300;
const KIND_SHIFT: u32 = 8;
/// Attribute bits that must be zero (6, 7 and 10-15; Skein does not compact, so there is no
/// delete-horizon bit).
pub const RESERVED_MASK: u16 =
    !(CODEC_MASK | TIMESTAMP_TYPE_BIT | TRANSACTIONAL_BIT | CONTROL_BIT | KIND_MASK);

/// What a batch carries: Kafka records, or one of the Raft entries stored in the same log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// An ordinary Kafka batch of client records.
    Data,
    /// A Kafka control batch (transaction markers): control bit set, kind bits 0.
    Control,
    /// A Raft blank entry (written by a new leader); no records, takes no offset.
    Blank,
    /// A Raft membership change; its records area is the serialized membership; takes no offset.
    Membership,
    /// A replicated move of the partition's log start offset (retention); its records area is
    /// the new log start offset (8 bytes, big-endian); takes no offset.
    LogStart,
}

impl EntryKind {
    fn from_attributes(attributes: u16) -> Result<Self> {
        let control = attributes & CONTROL_BIT != 0;
        match ((attributes & KIND_MASK) >> KIND_SHIFT, control) {
            (0, false) => Ok(EntryKind::Data),
            (0, true) => Ok(EntryKind::Control),
            (1, true) => Ok(EntryKind::Blank),
            (2, true) => Ok(EntryKind::Membership),
            (3, true) => Ok(EntryKind::LogStart),
            (_, false) => Err(invalid("entry kind bits set without the control bit")),
            _ => Err(invalid("unknown entry kind")),
        }
    }

    /// The attribute bits (control bit and kind bits) of this kind.
    pub fn attribute_bits(self) -> u16 {
        match self {
            EntryKind::Data => 0,
            EntryKind::Control => CONTROL_BIT,
            EntryKind::Blank => CONTROL_BIT | (1 << KIND_SHIFT),
            EntryKind::Membership => CONTROL_BIT | (2 << KIND_SHIFT),
            EntryKind::LogStart => CONTROL_BIT | (3 << KIND_SHIFT),
        }
    }

    /// True for Skein's own entries (blank, membership, log start).
    pub fn is_internal(self) -> bool {
        matches!(
            self,
            EntryKind::Blank | EntryKind::Membership | EntryKind::LogStart
        )
    }
}

/// The Skein-internal kinds, the only ones [`crate::internal_batch`] builds (so that building
/// a data or control batch that way does not compile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InternalKind {
    /// A Raft blank entry.
    Blank,
    /// A Raft membership change.
    Membership,
    /// A move of the log start offset.
    LogStart,
}

impl From<InternalKind> for EntryKind {
    fn from(k: InternalKind) -> Self {
        match k {
            InternalKind::Blank => EntryKind::Blank,
            InternalKind::Membership => EntryKind::Membership,
            InternalKind::LogStart => EntryKind::LogStart,
        }
    }
}

/// Meaning of the batch's and records' timestamps (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer; each record's is `baseTimestamp + delta`.
    CreateTime,
    /// Set by the broker; every record's timestamp is the batch's `maxTimestamp`.
    LogAppendTime,
}

/// A parsed batch header (a copy of the fixed fields; the batch bytes stay where they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (the raw i64, stamped by the log).
    pub base_offset: u64,
    /// TOTAL length of the batch (`batchLength + 12`): a scanner advances by it.
    pub batch_len: u32,
    /// Partition leader epoch (stamped by the log: the Raft term).
    pub leader_epoch: i32,
    /// Format version (always [`MAGIC`] once parsed).
    pub magic: i8,
    /// CRC-32C of bytes `[CRC_START, batch_len)`.
    pub crc: u32,
    /// Entry kind (from the control bit and bits 8-9).
    pub kind: EntryKind,
    /// Raw attributes.
    pub attributes: u16,
    /// `lastOffsetDelta`: `record_count - 1` for data and control batches, -1 for internal kinds.
    pub last_offset_delta: i32,
    /// Number of records (0 for internal kinds).
    pub record_count: u32,
    /// `baseTimestamp`, ms since the epoch.
    pub first_timestamp: i64,
    /// Largest record timestamp (or the append time under LogAppendTime).
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf` and checks every rule the header alone allows,
    /// without the CRC (see [`validate`]). Never panics, never trusts a field:
    ///
    /// - at least [`HEADER_LEN`] bytes; magic 2; `batchLength >= HEADER_LEN - 12`;
    /// - a known codec and entry kind; reserved attribute bits zero;
    /// - data and control batches: `recordsCount >= 1` and `lastOffsetDelta == recordsCount - 1`
    ///   (offsets are dense: Skein does not compact);
    /// - internal kinds: no records, `lastOffsetDelta == -1`, no codec, no producer, not
    ///   transactional;
    /// - uncompressed batches: `recordsCount * MIN_RECORD_LEN` fits in the records area, so a
    ///   caller may size a buffer by `record_count` (for compressed ones, only once
    ///   [`crate::Batch::records`] succeeded).
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let h = Self::read(buf)?;
        h.check_kind()?;
        h.check_count()?;
        Ok(h)
    }

    fn read(buf: &[u8]) -> Result<Self> {
        let buf: &[u8; HEADER_LEN] = buf
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(RecordError::BatchTooShort {
                len: buf.len(),
                needed: HEADER_LEN,
            })?;
        let magic = buf[MAGIC_POS] as i8;
        if magic != MAGIC {
            return Err(RecordError::BadMagic {
                found: magic,
                expected: MAGIC,
            });
        }
        let batch_length = i32_at(buf, BATCH_LENGTH_POS);
        if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(invalid("batch length shorter than the header"));
        }
        let attributes = u16_at(buf, ATTRIBUTES_POS);
        if attributes & RESERVED_MASK != 0 {
            return Err(invalid("reserved attribute bits are set"));
        }
        Compression::from_id(attributes & CODEC_MASK)
            .ok_or(invalid("unknown compression codec"))?;
        let record_count = u32::try_from(i32_at(buf, RECORDS_COUNT_POS))
            .map_err(|_| invalid("negative record count"))?;
        Ok(BatchHeader {
            base_offset: i64_at(buf, BASE_OFFSET_POS) as u64,
            batch_len: batch_length as u32 + LOG_OVERHEAD as u32,
            leader_epoch: i32_at(buf, LEADER_EPOCH_POS),
            magic,
            crc: i32_at(buf, CRC_POS) as u32,
            kind: EntryKind::from_attributes(attributes)?,
            attributes,
            last_offset_delta: i32_at(buf, LAST_OFFSET_DELTA_POS),
            record_count,
            first_timestamp: i64_at(buf, BASE_TIMESTAMP_POS),
            max_timestamp: i64_at(buf, MAX_TIMESTAMP_POS),
            producer_id: i64_at(buf, PRODUCER_ID_POS),
            producer_epoch: i16_at(buf, PRODUCER_EPOCH_POS),
            base_sequence: i32_at(buf, BASE_SEQUENCE_POS),
        })
    }

    fn check_kind(&self) -> Result<()> {
        if !self.kind.is_internal() {
            if self.record_count == 0 {
                return Err(invalid("a data or control batch without records"));
            }
            if i64::from(self.last_offset_delta) != i64::from(self.record_count) - 1 {
                return Err(invalid("last offset delta is not record count - 1"));
            }
            return Ok(());
        }
        if self.record_count != 0 || self.last_offset_delta != -1 {
            return Err(invalid(
                "an internal entry must carry no records and take no offset",
            ));
        }
        if self.compression() != Compression::None {
            return Err(invalid("an internal entry must not be compressed"));
        }
        if self.producer_id != -1 || self.is_transactional() {
            return Err(invalid("an internal entry must have no producer"));
        }
        Ok(())
    }

    fn check_count(&self) -> Result<()> {
        if self.compression() != Compression::None {
            return Ok(());
        }
        let area = u64::from(self.batch_len) - HEADER_LEN as u64;
        if u64::from(self.record_count) * MIN_RECORD_LEN as u64 > area {
            return Err(invalid("more records than the records area can hold"));
        }
        Ok(())
    }

    /// The compression codec of the records area.
    pub fn compression(&self) -> Compression {
        // `parse` rejected unknown codecs; `None` is only reached for hand-made headers.
        Compression::from_id(self.attributes & CODEC_MASK).unwrap_or_default()
    }

    /// The timestamp type (attribute bit 3).
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// True when the transactional bit is set.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// True when the control bit is set: Kafka control batches and Skein's internal kinds.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// True for Skein's own entries (blank, membership), which take no offset.
    pub fn is_internal(&self) -> bool {
        self.kind.is_internal()
    }

    /// One past the last offset the batch covers (`base_offset` itself for internal kinds).
    pub fn next_offset(&self) -> u64 {
        self.base_offset.wrapping_add(self.offset_count().into())
    }

    /// Offset of the last record, or `None` for an entry that takes no offset.
    pub fn last_offset(&self) -> Option<u64> {
        let delta = u64::try_from(self.last_offset_delta).ok()?;
        Some(self.base_offset.wrapping_add(delta))
    }

    /// Number of offsets the batch takes (`last_offset_delta + 1`; 0 for internal kinds).
    pub fn offset_count(&self) -> u32 {
        u32::try_from(i64::from(self.last_offset_delta) + 1).unwrap_or(0)
    }

    /// Writes every field but the CRC into `out`.
    pub(crate) fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[..STAMP_PREFIX_LEN].copy_from_slice(&stamp_prefix(
            self.base_offset,
            self.batch_len,
            self.leader_epoch,
        ));
        out[MAGIC_POS] = self.magic as u8;
        put(out, ATTRIBUTES_POS, &self.attributes.to_be_bytes());
        put(
            out,
            LAST_OFFSET_DELTA_POS,
            &self.last_offset_delta.to_be_bytes(),
        );
        put(out, BASE_TIMESTAMP_POS, &self.first_timestamp.to_be_bytes());
        put(out, MAX_TIMESTAMP_POS, &self.max_timestamp.to_be_bytes());
        put(out, PRODUCER_ID_POS, &self.producer_id.to_be_bytes());
        put(out, PRODUCER_EPOCH_POS, &self.producer_epoch.to_be_bytes());
        put(out, BASE_SEQUENCE_POS, &self.base_sequence.to_be_bytes());
        put(out, RECORDS_COUNT_POS, &self.record_count.to_be_bytes());
    }
}

/// Parses the header of `buf` and checks that `buf` is exactly one whole batch with a valid
/// CRC-32C. The append path runs this on every batch; every reader should run it on bytes
/// from the disk or the network.
pub fn validate(buf: &[u8]) -> Result<BatchHeader> {
    let header = BatchHeader::parse(buf)?;
    if header.batch_len as usize != buf.len() {
        return Err(RecordError::LengthMismatch {
            header: header.batch_len,
            actual: buf.len(),
        });
    }
    let computed = crc32c::crc32c(&buf[CRC_START..]);
    if computed != header.crc {
        return Err(RecordError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// The first [`STAMP_PREFIX_LEN`] bytes of a batch: `baseOffset`, `batchLength` (from the
/// TOTAL length `batch_len`, as in [`BatchHeader::batch_len`]) and `partitionLeaderEpoch`.
/// The log writes them in front of the producer's bytes from [`MAGIC_POS`] on; the CRC does
/// not cover them.
pub fn stamp_prefix(base_offset: u64, batch_len: u32, leader_epoch: i32) -> [u8; STAMP_PREFIX_LEN] {
    let mut out = [0u8; STAMP_PREFIX_LEN];
    put(&mut out, BASE_OFFSET_POS, &base_offset.to_be_bytes());
    put(
        &mut out,
        BATCH_LENGTH_POS,
        &batch_len.wrapping_sub(LOG_OVERHEAD as u32).to_be_bytes(),
    );
    put(&mut out, LEADER_EPOCH_POS, &leader_epoch.to_be_bytes());
    out
}

/// Stamps the base offset and leader epoch into a batch held in `buf` (the CRC stays valid:
/// both fields are outside it).
pub fn stamp(buf: &mut [u8], base_offset: u64, leader_epoch: i32) -> Result<()> {
    if buf.len() < HEADER_LEN {
        return Err(RecordError::BatchTooShort {
            len: buf.len(),
            needed: HEADER_LEN,
        });
    }
    put(buf, BASE_OFFSET_POS, &base_offset.to_be_bytes());
    put(buf, LEADER_EPOCH_POS, &leader_epoch.to_be_bytes());
    Ok(())
}

/// Computes the CRC-32C of `buf[CRC_START..]` and stores it (`buf` is a whole batch).
pub(crate) fn seal(buf: &mut [u8]) {
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    put(buf, CRC_POS, &crc.to_be_bytes());
}

fn invalid(reason: &'static str) -> RecordError {
    RecordError::InvalidBatch { reason }
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn array<const N: usize>(buf: &[u8; HEADER_LEN], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&buf[at..at + N]);
    a
}

fn u16_at(buf: &[u8; HEADER_LEN], at: usize) -> u16 {
    u16::from_be_bytes(array(buf, at))
}

fn i16_at(buf: &[u8; HEADER_LEN], at: usize) -> i16 {
    i16::from_be_bytes(array(buf, at))
}

fn i32_at(buf: &[u8; HEADER_LEN], at: usize) -> i32 {
    i32::from_be_bytes(array(buf, at))
}

fn i64_at(buf: &[u8; HEADER_LEN], at: usize) -> i64 {
    i64::from_be_bytes(array(buf, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{internal_batch, BatchBuilder, ProducerStamp};

    fn one_record() -> Vec<u8> {
        let mut b = BatchBuilder::new(1000);
        b.push(1000, Some(b"k"), Some(b"v"), &[]);
        b.finish().to_vec()
    }

    /// `buf` with `bytes` written at `at` and the CRC recomputed.
    fn patched(mut buf: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
        buf[at..at + bytes.len()].copy_from_slice(bytes);
        seal(&mut buf);
        buf
    }

    fn reason(buf: &[u8]) -> &'static str {
        match BatchHeader::parse(buf) {
            Err(RecordError::InvalidBatch { reason }) => reason,
            other => panic!("expected InvalidBatch, got {other:?}"),
        }
    }

    #[test]
    fn builder_header_has_kafka_producer_defaults_and_stamps_keep_the_crc() {
        let mut m = one_record();
        stamp(&mut m, 10, 4).expect("long enough");
        let h = validate(&m).expect("stamping is outside the CRC");
        assert_eq!((h.base_offset, h.leader_epoch, h.magic), (10, 4, MAGIC));
        assert_eq!(
            (h.record_count, h.last_offset_delta, h.batch_len as usize),
            (1, 0, m.len())
        );
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (-1, -1, -1)
        );
        assert_eq!(
            (h.next_offset(), h.last_offset(), h.offset_count()),
            (11, Some(10), 1)
        );
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert!(!h.is_control() && !h.is_transactional() && !h.is_internal());
        let prefix = stamp_prefix(10, h.batch_len, 4);
        assert_eq!(&prefix[..], &m[..STAMP_PREFIX_LEN]);
    }

    #[test]
    fn fresh_builder_output_has_offset_zero_and_no_epoch() {
        let h = validate(&one_record()).expect("valid");
        assert_eq!((h.base_offset, h.leader_epoch), (0, -1));
    }

    #[test]
    fn producer_stamp_lands_in_the_header() {
        let stamp = ProducerStamp {
            producer_id: 7,
            producer_epoch: 3,
            base_sequence: 42,
        };
        let mut b = BatchBuilder::new(0).producer(stamp);
        b.push(0, None, None, &[]);
        let h = validate(&b.finish()).expect("valid");
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 3, 42)
        );
    }

    #[test]
    fn rejects_short_buffers_and_bad_magic() {
        assert!(matches!(
            BatchHeader::parse(&[0u8; HEADER_LEN - 1]),
            Err(RecordError::BatchTooShort {
                len: 60,
                needed: HEADER_LEN
            })
        ));
        let m = patched(one_record(), MAGIC_POS, &[1]);
        assert!(matches!(
            BatchHeader::parse(&m),
            Err(RecordError::BadMagic {
                found: 1,
                expected: 2
            })
        ));
    }

    #[test]
    fn rejects_a_batch_length_shorter_than_the_header_or_negative() {
        for len in [0i32, 48, -1, i32::MIN] {
            let m = patched(one_record(), BATCH_LENGTH_POS, &len.to_be_bytes());
            assert_eq!(reason(&m), "batch length shorter than the header", "{len}");
        }
    }

    #[test]
    fn rejects_reserved_bits_unknown_codecs_and_kinds() {
        for bit in [6, 7, 10, 11, 12, 13, 14, 15] {
            let m = patched(one_record(), ATTRIBUTES_POS, &(1u16 << bit).to_be_bytes());
            assert_eq!(reason(&m), "reserved attribute bits are set", "bit {bit}");
        }
        for codec in 5u16..8 {
            let m = patched(one_record(), ATTRIBUTES_POS, &codec.to_be_bytes());
            assert_eq!(reason(&m), "unknown compression codec");
        }
        let m = patched(
            one_record(),
            ATTRIBUTES_POS,
            &(CONTROL_BIT | KIND_MASK).to_be_bytes(),
        );
        // Kind 3 (log start) is internal: it may carry no records.
        assert_eq!(
            reason(&m),
            "an internal entry must carry no records and take no offset"
        );
        let m = patched(one_record(), ATTRIBUTES_POS, &0x0100u16.to_be_bytes());
        assert_eq!(reason(&m), "entry kind bits set without the control bit");
    }

    #[test]
    fn rejects_negative_zero_and_inconsistent_record_counts() {
        let m = patched(one_record(), RECORDS_COUNT_POS, &(-1i32).to_be_bytes());
        assert_eq!(reason(&m), "negative record count");
        let m = patched(one_record(), RECORDS_COUNT_POS, &0i32.to_be_bytes());
        assert_eq!(reason(&m), "a data or control batch without records");
        let m = patched(one_record(), LAST_OFFSET_DELTA_POS, &1i32.to_be_bytes());
        assert_eq!(reason(&m), "last offset delta is not record count - 1");
    }

    #[test]
    fn refuses_a_crc_valid_header_claiming_i32_max_records_uncompressed() {
        let m = one_record();
        let m = patched(m, LAST_OFFSET_DELTA_POS, &(i32::MAX - 1).to_be_bytes());
        let m = patched(m, RECORDS_COUNT_POS, &i32::MAX.to_be_bytes());
        assert_eq!(reason(&m), "more records than the records area can hold");
        assert!(validate(&m).is_err());
    }

    #[test]
    fn internal_kinds_take_no_offset_and_refuse_records_codecs_and_producers() {
        let b = internal_batch(InternalKind::Membership, 5, b"members").to_vec();
        let h = validate(&b).expect("valid");
        assert_eq!(h.kind, EntryKind::Membership);
        assert!(h.is_control() && h.is_internal());
        assert_eq!(
            (h.record_count, h.last_offset_delta, h.offset_count()),
            (0, -1, 0)
        );
        assert_eq!((h.next_offset(), h.last_offset()), (0, None));
        let bits = EntryKind::Blank.attribute_bits();
        let with = |at, bytes: &[u8]| patched(b.clone(), at, bytes);
        assert_eq!(
            reason(&with(RECORDS_COUNT_POS, &1i32.to_be_bytes())),
            "an internal entry must carry no records and take no offset"
        );
        assert_eq!(
            reason(&with(LAST_OFFSET_DELTA_POS, &0i32.to_be_bytes())),
            "an internal entry must carry no records and take no offset"
        );
        assert_eq!(
            reason(&with(ATTRIBUTES_POS, &(bits | 1).to_be_bytes())),
            "an internal entry must not be compressed"
        );
        assert_eq!(
            reason(&with(PRODUCER_ID_POS, &7i64.to_be_bytes())),
            "an internal entry must have no producer"
        );
        assert_eq!(
            reason(&with(
                ATTRIBUTES_POS,
                &(bits | TRANSACTIONAL_BIT).to_be_bytes()
            )),
            "an internal entry must have no producer"
        );
    }

    #[test]
    fn validate_checks_length_and_crc() {
        let mut m = one_record();
        m.push(0);
        assert!(matches!(
            validate(&m),
            Err(RecordError::LengthMismatch { .. })
        ));
        let mut m = one_record();
        m[HEADER_LEN] ^= 1;
        assert!(matches!(validate(&m), Err(RecordError::CrcMismatch { .. })));
        assert!(matches!(
            stamp(&mut [0u8; 3], 0, 0),
            Err(RecordError::BatchTooShort { .. })
        ));
    }

    #[test]
    fn a_flipped_bit_in_magic_crc_or_the_crc_covered_area_fails_validate() {
        let mut b = BatchBuilder::new(0);
        b.push(0, Some(b"key"), Some(b"value"), &[]);
        let bytes = b.finish();
        for i in MAGIC_POS..bytes.len() {
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
}
