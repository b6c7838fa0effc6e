//! Building batches: data batches record by record ([`BatchBuilder`]) and Skein's internal
//! entries ([`internal_batch`]).

use bytes::{BufMut, Bytes, BytesMut};

use crate::compression::{compress, Compression};
use crate::error::Result;
use crate::header::{seal, BatchHeader, EntryKind, InternalKind, HEADER_LEN, MAGIC};
use crate::varint::{put_varint, put_varlong, varint_len, varlong_len};

/// Kafka's "no partition leader epoch", what producers send.
const NO_LEADER_EPOCH: i32 = -1;

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

impl ProducerStamp {
    /// Kafka's values for a producer that is not idempotent: id, epoch and sequence -1.
    pub const NONE: ProducerStamp = ProducerStamp {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// A record header (key and optional value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    /// Header key (Kafka: a UTF-8 string; not checked here).
    pub key: &'a [u8],
    /// Header value; `None` is a null value.
    pub value: Option<&'a [u8]>,
}

/// Builds a data batch, record by record, as a Kafka producer does: base offset 0, leader
/// epoch -1, CreateTime, not transactional, producer -1 unless [`BatchBuilder::producer`].
///
/// ```
/// use skein_record::{validate, BatchBuilder};
/// let mut b = BatchBuilder::new(1_700_000_000_000);
/// b.push(1_700_000_000_000, Some(b"k"), Some(b"hello"), &[]);
/// let batch = b.finish();
/// assert_eq!(validate(&batch).expect("the builder writes valid batches").record_count, 1);
/// ```
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    first_timestamp: i64,
    max_timestamp: i64,
    count: u32,
    producer: ProducerStamp,
}

impl BatchBuilder {
    /// A builder whose `baseTimestamp` is `first_timestamp` (ms since the epoch); records'
    /// timestamps are stored as deltas from it, and `maxTimestamp` is the largest of it and the
    /// records' timestamps.
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
            producer: ProducerStamp::NONE,
        }
    }

    /// Marks the batch as sent by an idempotent producer.
    pub fn producer(mut self, stamp: ProducerStamp) -> Self {
        self.producer = stamp;
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

    /// Size in bytes the uncompressed batch has now, header included.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Bytes a record would add to the (uncompressed) batch.
    pub fn record_size(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
    ) -> usize {
        let body = self.body_len(timestamp, key, value, headers);
        varint_len(len_i32(body)) + body
    }

    fn body_len(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
    ) -> usize {
        let mut n = 1
            + varlong_len(timestamp.wrapping_sub(self.first_timestamp))
            + varint_len(self.offset_delta())
            + bytes_len(key)
            + bytes_len(value)
            + varint_len(len_i32(headers.len()));
        for h in headers {
            n += bytes_len(Some(h.key)) + bytes_len(h.value);
        }
        n
    }

    fn offset_delta(&self) -> i32 {
        // A batch is at most i32::MAX bytes and a record at least 7: the count fits an i32.
        self.count as i32
    }

    /// Appends one record (no allocation beyond growing the batch buffer).
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[HeaderRef<'_>],
    ) {
        let body = self.body_len(timestamp, key, value, headers);
        self.buf.reserve(body + varint_len(len_i32(body)));
        put_varint(&mut self.buf, len_i32(body));
        self.buf.put_u8(0); // record attributes (unused by Kafka)
        put_varlong(&mut self.buf, timestamp.wrapping_sub(self.first_timestamp));
        let offset_delta = self.offset_delta();
        put_varint(&mut self.buf, offset_delta);
        put_bytes(&mut self.buf, key);
        put_bytes(&mut self.buf, value);
        put_varint(&mut self.buf, len_i32(headers.len()));
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

    /// Finishes an uncompressed batch.
    ///
    /// An empty builder gives a batch that [`crate::validate`] refuses (a data batch carries at
    /// least one record): check [`BatchBuilder::is_empty`] first.
    ///
    /// # Panics
    /// If the batch exceeds `i32::MAX` bytes (Kafka's `batchLength` is an i32).
    pub fn finish(self) -> Bytes {
        let header = self.header(Compression::None, self.buf.len());
        finish_buf(self.buf, &header)
    }

    /// Finishes a batch whose records area is `compressed`: the output of `codec` applied to
    /// [`BatchBuilder::records_bytes`] (for example by [`crate::compress`]).
    ///
    /// # Panics
    /// If the batch exceeds `i32::MAX` bytes.
    pub fn finish_compressed(self, codec: Compression, compressed: &[u8]) -> Bytes {
        let header = self.header(codec, HEADER_LEN + compressed.len());
        let mut buf = BytesMut::with_capacity(HEADER_LEN + compressed.len());
        buf.put_bytes(0, HEADER_LEN);
        buf.put_slice(compressed);
        finish_buf(buf, &header)
    }

    /// Finishes the batch, compressing its records with this crate's `codec`.
    ///
    /// # Panics
    /// If the batch exceeds `i32::MAX` bytes.
    pub fn finish_with(self, codec: Compression) -> Result<Bytes> {
        if codec == Compression::None {
            return Ok(self.finish());
        }
        let compressed = compress(codec, self.records_bytes())?;
        Ok(self.finish_compressed(codec, &compressed))
    }

    fn header(&self, codec: Compression, total_len: usize) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_len: total_u32(total_len),
            leader_epoch: NO_LEADER_EPOCH,
            magic: MAGIC,
            crc: 0,
            kind: EntryKind::Data,
            attributes: codec as u16,
            last_offset_delta: self.offset_delta().wrapping_sub(1),
            record_count: self.count,
            first_timestamp: self.first_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer.producer_id,
            producer_epoch: self.producer.producer_epoch,
            base_sequence: self.producer.base_sequence,
        }
    }
}

/// Builds a Skein-internal entry (a Raft blank or membership entry) around an opaque
/// `payload`: control bit and kind bits set, no records, `lastOffsetDelta` -1 (it takes no
/// offset), no producer, uncompressed. The kind is an [`InternalKind`], so data and control
/// batches cannot be built this way.
///
/// # Panics
/// If the payload makes the batch exceed `i32::MAX` bytes.
pub fn internal_batch(kind: InternalKind, timestamp: i64, payload: &[u8]) -> Bytes {
    let kind = EntryKind::from(kind);
    let header = BatchHeader {
        base_offset: 0,
        batch_len: total_u32(HEADER_LEN + payload.len()),
        leader_epoch: NO_LEADER_EPOCH,
        magic: MAGIC,
        crc: 0,
        kind,
        attributes: kind.attribute_bits(),
        last_offset_delta: -1,
        record_count: 0,
        first_timestamp: timestamp,
        max_timestamp: timestamp,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
    let mut buf = BytesMut::with_capacity(HEADER_LEN + payload.len());
    buf.put_bytes(0, HEADER_LEN);
    buf.put_slice(payload);
    finish_buf(buf, &header)
}

fn finish_buf(mut buf: BytesMut, header: &BatchHeader) -> Bytes {
    let head: &mut [u8; HEADER_LEN] = (&mut buf[..HEADER_LEN])
        .try_into()
        .expect("invariant: every builder buffer starts with HEADER_LEN bytes");
    header.write(head);
    seal(&mut buf);
    buf.freeze()
}

/// A batch's total length as the header's u32, within Kafka's i32 `batchLength`.
fn total_u32(len: usize) -> u32 {
    let max = i32::MAX as usize + crate::header::LOG_OVERHEAD;
    assert!(
        len <= max,
        "batch of {len} bytes exceeds Kafka's limit of {max}"
    );
    len as u32
}

/// A length inside a batch as an i32 (a batch is at most i32::MAX bytes).
fn len_i32(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

fn bytes_len(b: Option<&[u8]>) -> usize {
    match b {
        Some(b) => varint_len(len_i32(b.len())) + b.len(),
        None => 1,
    }
}

fn put_bytes(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varint(out, len_i32(b.len()));
            out.put_slice(b);
        }
        None => put_varint(out, -1),
    }
}
