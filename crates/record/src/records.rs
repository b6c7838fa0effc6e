//! Reading batches: [`Batch`] (one validated batch), [`Records`] (its records, zero-copy) and
//! [`BatchIter`] (concatenated batches, as a fetch returns them).

use bytes::Bytes;

use crate::compression::{decompress, Compression, DECOMPRESSED_BYTES_MAX};
use crate::error::{RecordError, Result};
use crate::header::{validate, BatchHeader, TimestampType, HEADER_LEN, MIN_RECORD_LEN};
use crate::varint::{get_varint, get_varlong};

/// One decoded record. Key, value and header bytes are slices of the batch (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset (batch base offset + index).
    pub offset: u64,
    /// Timestamp, ms since the epoch (the batch's `max_timestamp` under LogAppendTime).
    pub timestamp: i64,
    /// Key, if any.
    pub key: Option<Bytes>,
    /// Value, if any.
    pub value: Option<Bytes>,
    /// Headers in order (keys may repeat); an empty `Vec` that never allocated when none.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// A validated batch and its bytes.
#[derive(Debug, Clone)]
pub struct Batch {
    header: BatchHeader,
    bytes: Bytes,
}

impl Batch {
    /// Validates `bytes` as exactly one batch (header rules, length, CRC).
    pub fn new(bytes: Bytes) -> Result<Self> {
        let header = validate(&bytes)?;
        Ok(Batch { header, bytes })
    }

    /// A batch whose `bytes` the caller just validated into `header` (with [`validate`]).
    pub fn from_validated(header: BatchHeader, bytes: Bytes) -> Self {
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

    /// The whole batch, by value.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The bytes after the header: the (possibly compressed) records, or an internal entry's
    /// payload.
    pub fn payload(&self) -> Bytes {
        self.bytes.slice(HEADER_LEN.min(self.bytes.len())..)
    }

    /// The records, decompressing with the default limit ([`DECOMPRESSED_BYTES_MAX`]).
    /// Internal kinds yield none.
    pub fn records(&self) -> Result<Records> {
        self.records_with_limit(DECOMPRESSED_BYTES_MAX)
    }

    /// The records, refusing to decompress more than `limit_bytes`.
    pub fn records_with_limit(&self, limit_bytes: usize) -> Result<Records> {
        match self.header.compression() {
            Compression::None => self.records_from(self.payload()),
            codec => {
                let plain = decompress(codec, &self.payload(), limit_bytes)?;
                self.records_from(Bytes::from(plain))
            }
        }
    }

    /// The records of a batch whose records area the caller decompressed (or, uncompressed,
    /// the [`Batch::payload`]). Checks `record_count` against the bytes first.
    pub fn records_from(&self, decompressed: Bytes) -> Result<Records> {
        Records::new(decompressed, &self.header)
    }
}

/// Iterator over the records of a batch's (decompressed) records area.
///
/// Checks every record against the bytes present and yields at most one error, after which it
/// stops: lengths and counts within the record, varints of at most 5 (10) bytes, fields ending
/// exactly at the record's length, no null header key, offset delta equal to the record's index,
/// and no bytes after the last record.
#[derive(Debug)]
pub struct Records {
    data: Bytes,
    pos: usize,
    index: u32,
    count: u32,
    base_offset: u64,
    first_timestamp: i64,
    /// `Some(max_timestamp)` under LogAppendTime.
    append_time: Option<i64>,
    done: bool,
}

impl Records {
    /// The records of the batch with `header`, from its (decompressed) records area `data`.
    /// Internal kinds have none. Fails when `record_count` records cannot fit in `data`.
    pub fn new(data: Bytes, header: &BatchHeader) -> Result<Self> {
        let count = if header.is_internal() {
            0
        } else {
            header.record_count
        };
        if u64::from(count) * MIN_RECORD_LEN as u64 > data.len() as u64 {
            return Err(RecordError::InvalidBatch {
                reason: "more records than the decompressed records area can hold",
            });
        }
        let append_time = match header.timestamp_type() {
            TimestampType::LogAppendTime => Some(header.max_timestamp),
            TimestampType::CreateTime => None,
        };
        Ok(Records {
            data,
            pos: 0,
            index: 0,
            count,
            base_offset: header.base_offset,
            first_timestamp: header.first_timestamp,
            append_time,
            // An internal entry's records area is its payload: nothing to iterate.
            done: header.is_internal(),
        })
    }

    fn fail(&mut self, reason: &'static str) -> RecordError {
        self.done = true;
        RecordError::InvalidRecord {
            record: self.index,
            reason,
        }
    }

    fn varint(&mut self, end: usize, what: &'static str) -> Result<i32> {
        get_varint(&self.data[..end], &mut self.pos).ok_or_else(|| self.fail(what))
    }

    fn bytes_field(&mut self, end: usize) -> Result<Option<Bytes>> {
        let len = self.varint(end, "truncated or overlong length")?;
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

    fn headers(&mut self, end: usize) -> Result<Vec<(Bytes, Option<Bytes>)>> {
        let n = self.varint(end, "truncated header count")?;
        let n = usize::try_from(n).map_err(|_| self.fail("negative header count"))?;
        // Each header takes at least two bytes (key length, value length).
        if n > (end - self.pos) / 2 {
            return Err(self.fail("more headers than bytes"));
        }
        let mut headers = Vec::with_capacity(n);
        for _ in 0..n {
            let key = self
                .bytes_field(end)?
                .ok_or_else(|| self.fail("null header key"))?;
            headers.push((key, self.bytes_field(end)?));
        }
        Ok(headers)
    }

    fn decode_one(&mut self) -> Result<Record> {
        let len = self.varint(self.data.len(), "truncated record length")?;
        let len = usize::try_from(len).map_err(|_| self.fail("negative record length"))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| self.fail("record runs past the records area"))?;
        if self.pos >= end {
            return Err(self.fail("empty record"));
        }
        self.pos += 1; // attributes: unused by Kafka
        let ts_delta = get_varlong(&self.data[..end], &mut self.pos)
            .ok_or_else(|| self.fail("truncated timestamp delta"))?;
        let off_delta = self.varint(end, "truncated offset delta")?;
        if i64::from(off_delta) != i64::from(self.index) {
            return Err(self.fail("offset delta is not the record's index"));
        }
        let key = self.bytes_field(end)?;
        let value = self.bytes_field(end)?;
        let headers = self.headers(end)?;
        if self.pos != end {
            return Err(self.fail("record length disagrees with its fields"));
        }
        Ok(Record {
            offset: self.base_offset.wrapping_add(u64::from(self.index)),
            timestamp: self
                .append_time
                .unwrap_or(self.first_timestamp.wrapping_add(ts_delta)),
            key,
            value,
            headers,
        })
    }
}

impl Iterator for Records {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.index >= self.count {
            self.done = true;
            if self.pos != self.data.len() {
                return Some(Err(RecordError::InvalidRecord {
                    record: self.count,
                    reason: "trailing bytes after the last record",
                }));
            }
            return None;
        }
        let r = self.decode_one();
        if r.is_ok() {
            self.index += 1;
        }
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        // One more for a possible trailing-bytes error.
        (0, Some((self.count - self.index) as usize + 1))
    }
}

/// Splits a buffer of concatenated batches (what a fetch returns) into validated batches.
///
/// Yields at most one error, then stops. A truncated last batch yields
/// [`RecordError::BatchTooShort`]: after at least one good batch, a consumer takes that as
/// "fetch the rest later", as Kafka consumers do.
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

    fn next_batch(&mut self) -> Result<Batch> {
        let rest = &self.data[self.pos..];
        let header = BatchHeader::parse(rest)?;
        let len = header.batch_len as usize;
        if len > rest.len() {
            return Err(RecordError::BatchTooShort {
                len: rest.len(),
                needed: len,
            });
        }
        let batch = Batch::new(self.data.slice(self.pos..self.pos + len))?;
        self.pos += len;
        Ok(batch)
    }
}

impl Iterator for BatchIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.data.len() {
            return None;
        }
        let r = self.next_batch();
        if r.is_err() {
            self.pos = self.data.len();
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{
        seal, LAST_OFFSET_DELTA_POS, MAX_TIMESTAMP_POS, RECORDS_COUNT_POS, TIMESTAMP_TYPE_BIT,
    };
    use crate::varint::put_varint;
    use crate::{internal_batch, stamp, BatchBuilder, HeaderRef, InternalKind, ATTRIBUTES_POS};
    use bytes::BytesMut;
    use proptest::prelude::*;

    /// A data batch whose records area is `records` (raw bytes), claiming `count` records.
    fn raw_batch(records: &[u8], count: i32) -> Bytes {
        let mut b = BatchBuilder::new(100);
        b.push(100, None, None, &[]);
        let mut m = b.finish().to_vec();
        m.truncate(HEADER_LEN);
        m.extend_from_slice(records);
        let len = (m.len() - crate::LOG_OVERHEAD) as i32;
        m[crate::BATCH_LENGTH_POS..][..4].copy_from_slice(&len.to_be_bytes());
        m[RECORDS_COUNT_POS..][..4].copy_from_slice(&count.to_be_bytes());
        m[LAST_OFFSET_DELTA_POS..][..4].copy_from_slice(&(count - 1).to_be_bytes());
        seal(&mut m);
        Bytes::from(m)
    }

    /// A record with the given fields, encoded by hand.
    fn record(offset_delta: i32, body_tail: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8]; // attributes
        put_varint(&mut body, 0); // timestamp delta (a varlong; 0 is one byte either way)
        put_varint(&mut body, offset_delta);
        body.extend_from_slice(body_tail);
        let mut out = Vec::new();
        put_varint(&mut out, body.len() as i32);
        out.extend_from_slice(&body);
        out
    }

    /// key null, value null, no headers.
    const EMPTY_TAIL: &[u8] = &[1, 1, 0];

    fn first_error(batch: Bytes) -> RecordError {
        let batch = Batch::new(batch).expect("valid header and CRC");
        let mut records = batch.records().expect("count fits");
        let err = records.find_map(|r| r.err()).expect("an error");
        assert!(records.next().is_none(), "stops after the first error");
        err
    }

    fn reason(batch: Bytes) -> &'static str {
        match first_error(batch) {
            RecordError::InvalidRecord { reason, .. } => reason,
            e => panic!("expected InvalidRecord, got {e:?}"),
        }
    }

    #[test]
    fn well_formed_raw_records_decode() {
        let mut area = record(0, EMPTY_TAIL);
        area.extend(record(1, EMPTY_TAIL));
        let batch = Batch::new(raw_batch(&area, 2)).expect("valid");
        let records: Vec<Record> = batch
            .records()
            .expect("fits")
            .collect::<Result<_>>()
            .expect("valid");
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn record_rejections() {
        let mut two = record(0, EMPTY_TAIL);
        two.extend(record(0, EMPTY_TAIL));
        assert_eq!(
            reason(raw_batch(&two, 2)),
            "offset delta is not the record's index"
        );
        let mut trailing = record(0, EMPTY_TAIL);
        trailing.extend([0u8; 7]);
        assert!(matches!(
            first_error(raw_batch(&trailing, 1)),
            RecordError::InvalidRecord {
                record: 1,
                reason: "trailing bytes after the last record"
            }
        ));
        let cases: &[(&[u8], &str)] = &[
            (&[1, 1, 2], "more headers than bytes"),
            (&[1, 1, 2, 1, 1, 1, 1], "null header key"),
            (&[1, 1, 1], "negative header count"),
            (&[3, 1, 0], "negative length"),
            (&[20, 1, 0, 0, 0, 0], "field runs past the record"),
            (&[1, 1, 0, 0], "record length disagrees with its fields"),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 0],
                "truncated or overlong length",
            ),
        ];
        for (tail, why) in cases {
            let mut area = record(0, tail);
            area.resize(area.len().max(7), 0);
            let got = reason(raw_batch(&area, 1));
            assert_eq!(got, *why, "tail {tail:?}");
        }
        assert_eq!(
            reason(raw_batch(&[0x7e, 0, 0, 0, 0, 0, 0], 1)),
            "record runs past the records area"
        );
        assert_eq!(
            reason(raw_batch(&[0x01, 0, 0, 0, 0, 0, 0], 1)),
            "negative record length"
        );
        assert_eq!(
            reason(raw_batch(&[0x00, 0, 0, 0, 0, 0, 0], 1)),
            "empty record"
        );
    }

    #[test]
    fn log_append_time_gives_every_record_the_max_timestamp() {
        let mut b = BatchBuilder::new(100);
        b.push(100, None, Some(b"a"), &[]);
        b.push(90, None, Some(b"b"), &[]);
        let mut m = b.finish().to_vec();
        m[ATTRIBUTES_POS..][..2].copy_from_slice(&TIMESTAMP_TYPE_BIT.to_be_bytes());
        m[MAX_TIMESTAMP_POS..][..8].copy_from_slice(&5000i64.to_be_bytes());
        seal(&mut m);
        let batch = Batch::new(Bytes::from(m)).expect("valid");
        let ts: Vec<i64> = batch
            .records()
            .expect("fits")
            .map(|r| r.expect("ok").timestamp)
            .collect();
        assert_eq!(ts, [5000, 5000]);
    }

    #[test]
    fn internal_kinds_yield_their_payload_and_no_records() {
        let batch =
            Batch::new(internal_batch(InternalKind::Membership, 5, b"members")).expect("valid");
        assert_eq!(&batch.payload()[..], b"members");
        assert_eq!(batch.records().expect("no records").count(), 0);
        let blank = Batch::new(internal_batch(InternalKind::Blank, 0, b"")).expect("valid");
        assert_eq!(blank.records().expect("none").count(), 0);
    }

    #[test]
    fn compressed_batch_claiming_i32_max_records_is_refused_before_iterating() {
        let mut b = BatchBuilder::new(0);
        b.push(0, None, Some(b"v"), &[]);
        let plain = b.records_bytes().to_vec();
        let compressed = crate::compress(Compression::Zstd, &plain).expect("compresses");
        let mut m = b.finish_compressed(Compression::Zstd, &compressed).to_vec();
        m[RECORDS_COUNT_POS..][..4].copy_from_slice(&i32::MAX.to_be_bytes());
        m[LAST_OFFSET_DELTA_POS..][..4].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        seal(&mut m);
        let batch = Batch::new(Bytes::from(m)).expect("the header alone cannot tell");
        assert!(matches!(
            batch.records(),
            Err(RecordError::InvalidBatch { .. })
        ));
    }

    #[test]
    fn decompression_limit_is_enforced() {
        let mut b = BatchBuilder::new(0);
        b.push(0, None, Some(&[7u8; 10_000]), &[]);
        let batch = Batch::new(b.finish_with(Compression::Lz4).expect("ok")).expect("valid");
        assert!(matches!(
            batch.records_with_limit(1000),
            Err(RecordError::DecompressedTooLarge { limit: 1000 })
        ));
        assert_eq!(batch.records_with_limit(20_000).expect("fits").count(), 1);
    }

    #[test]
    fn batch_iter_splits_and_reports_a_truncated_tail_once() {
        let mut b = BatchBuilder::new(0);
        b.push(0, Some(b"k"), Some(b"v"), &[]);
        let one = b.finish();
        let mut all = BytesMut::new();
        all.extend_from_slice(&one);
        all.extend_from_slice(&internal_batch(InternalKind::Blank, 0, b""));
        all.extend_from_slice(&one[..one.len() - 1]);
        let got: Vec<_> = BatchIter::new(all.freeze()).collect();
        assert_eq!(got.len(), 3);
        assert!(got[0].is_ok() && got[1].is_ok());
        assert!(matches!(got[2], Err(RecordError::BatchTooShort { .. })));
        let short: Vec<_> = BatchIter::new(one.slice(..10)).collect();
        assert!(matches!(
            short[..],
            [Err(RecordError::BatchTooShort { len: 10, .. })]
        ));
    }

    type TestRecord = (
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(Vec<u8>, Option<Vec<u8>>)>,
    );

    fn arb_record() -> impl Strategy<Value = TestRecord> {
        let bytes = |n| proptest::collection::vec(any::<u8>(), 0..n);
        (
            -1_000_000i64..1_000_000,
            proptest::option::of(bytes(40)),
            proptest::option::of(bytes(200)),
            // Keys from a small set, so that keys repeat.
            proptest::collection::vec(
                (
                    proptest::collection::vec(0u8..2, 0..2),
                    proptest::option::of(bytes(10)),
                ),
                0..4,
            ),
        )
    }

    fn codec() -> impl Strategy<Value = Compression> {
        proptest::sample::select(Compression::ALL.to_vec())
    }

    fn build(first_ts: i64, records: &[TestRecord], codec: Compression) -> Bytes {
        let mut b = BatchBuilder::new(first_ts);
        for (dt, k, v, hs) in records {
            let hrefs: Vec<HeaderRef<'_>> = hs
                .iter()
                .map(|(k, v)| HeaderRef {
                    key: k,
                    value: v.as_deref(),
                })
                .collect();
            let before = b.size();
            let predicted = b.record_size(first_ts + dt, k.as_deref(), v.as_deref(), &hrefs);
            b.push(first_ts + dt, k.as_deref(), v.as_deref(), &hrefs);
            assert_eq!(b.size() - before, predicted);
        }
        b.finish_with(codec).expect("compresses")
    }

    proptest! {
        #[test]
        fn builder_validate_records_round_trip(
            base in 0u64..1 << 40,
            first_ts in 0i64..1 << 42,
            codec in codec(),
            records in proptest::collection::vec(arb_record(), 1..50),
        ) {
            let mut m = BytesMut::from(&build(first_ts, &records, codec)[..]);
            stamp(&mut m, base, 3).expect("long enough");
            let batch = Batch::new(m.freeze()).expect("valid");
            let h = *batch.header();
            prop_assert_eq!(h.compression(), codec);
            prop_assert_eq!(h.record_count as usize, records.len());
            prop_assert_eq!(h.next_offset(), base + records.len() as u64);
            let max_ts = records.iter().map(|r| first_ts + r.0).max().unwrap_or(first_ts);
            prop_assert_eq!(h.max_timestamp, max_ts.max(first_ts));
            let decoded: Vec<Record> =
                batch.records().expect("fits").collect::<Result<_>>().expect("decodes");
            prop_assert_eq!(decoded.len(), records.len());
            for (i, (r, (dt, k, v, hs))) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(r.offset, base + i as u64);
                prop_assert_eq!(r.timestamp, first_ts + dt);
                prop_assert_eq!(r.key.as_deref(), k.as_deref());
                prop_assert_eq!(r.value.as_deref(), v.as_deref());
                let got: Vec<(&[u8], Option<&[u8]>)> =
                    r.headers.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
                let want: Vec<(&[u8], Option<&[u8]>)> =
                    hs.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
                prop_assert_eq!(got, want);
            }
        }

        #[test]
        fn decoders_never_panic_on_garbage(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            for b in BatchIter::new(Bytes::from(data.clone())) {
                let Ok(b) = b else { break };
                for r in b.records_with_limit(1 << 16).into_iter().flatten() {
                    let _ = r;
                }
            }
            // Behind a valid header, so that the CRC does not hide the records decoder.
            let count = data.first().copied().unwrap_or(1).max(1);
            if let Ok(batch) = Batch::new(raw_batch(&data, i32::from(count))) {
                for r in batch.records().into_iter().flatten() {
                    let _ = r;
                }
            }
        }
    }
}
