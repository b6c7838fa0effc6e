//! Turning a fetch result's `records` (concatenated whole batches) into consumer records.
//!
//! The bytes may hold batches of Raft-internal kinds, which are skipped, and may start with a
//! batch that begins before the offset asked for, whose earlier records are skipped. Every
//! batch's CRC is checked before anything in it is used; compressed batches are decompressed.

use std::sync::Arc;

use bytes::Bytes;
use skein_record::{BatchIter, EntryKind, RecordError};

use crate::error::{ClientError, Result};
use crate::record::{ConsumerRecord, Header, TopicPartition};

/// What one partition's fetched bytes decoded to.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    /// Data records at or after the requested offset, in offset order.
    pub(crate) records: Vec<ConsumerRecord>,
    /// One past the last offset covered by any complete batch seen (data or not).
    pub(crate) next_offset: Option<u64>,
}

/// Decodes `data` fetched for `tp` from offset `from`.
pub(crate) fn decode_fetched(tp: &TopicPartition, data: Bytes, from: u64) -> Result<Decoded> {
    let mut out = Decoded::default();
    // One name for every record of the fetch.
    let topic: Arc<str> = Arc::from(tp.topic.as_str());
    let corrupt = |reason: String| ClientError::CorruptResponse {
        what: format!("fetch from {tp}"),
        reason,
    };
    let data_len = data.len();
    for (batches_seen, batch) in BatchIter::new(data).enumerate() {
        let batch = match batch {
            Ok(b) => b,
            // A truncated last batch: use what came before it and fetch the rest next time.
            Err(RecordError::BatchTooShort { .. }) if batches_seen > 0 => break,
            Err(e) => return Err(corrupt(e.to_string())),
        };
        let header = *batch.header();
        let end = header.next_offset();
        out.next_offset = Some(out.next_offset.map_or(end, |n| n.max(end)));
        if header.kind != EntryKind::Data || end <= from {
            continue;
        }
        let records = batch
            .records()
            .map_err(|e| corrupt(format!("batch at offset {}: {e}", header.base_offset)))?;
        if out.records.capacity() == 0 {
            // Room for the whole fetch, estimated from its first data batch (the vector then
            // grows at most a few times instead of with every batch).
            let per_batch = header.record_count as usize;
            let batch_len = batch.bytes().len().max(1);
            out.records
                .reserve(per_batch.max(per_batch.saturating_mul(data_len / batch_len)));
        }
        for r in records {
            let r =
                r.map_err(|e| corrupt(format!("batch at offset {}: {e}", header.base_offset)))?;
            if r.offset < from {
                continue;
            }
            out.records.push(ConsumerRecord {
                topic: topic.clone(),
                partition: tp.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: if r.headers.is_empty() {
                    Vec::new()
                } else {
                    r.headers
                        .into_iter()
                        .map(|(k, v)| Header {
                            key: String::from_utf8_lossy(&k).into_owned(),
                            value: v,
                        })
                        .collect()
                },
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::compression::{compress, to_batch_codec};
    use crate::config::Compression;
    use bytes::BytesMut;
    use skein_record::{internal_batch, stamp, BatchBuilder, HeaderRef, InternalKind};

    /// A data batch of `values` stamped at `base_offset`, as a broker would return it.
    pub(crate) fn data_batch(base_offset: u64, values: &[&str], codec: Compression) -> Bytes {
        let mut b = BatchBuilder::new(1_000);
        for (i, v) in values.iter().enumerate() {
            let key = format!("k{i}");
            b.push(
                1_000 + i as i64,
                Some(key.as_bytes()),
                Some(v.as_bytes()),
                &[HeaderRef {
                    key: b"h",
                    value: Some(b"hv"),
                }],
            );
        }
        let bytes = match codec {
            Compression::None => b.finish(),
            c => {
                let z = compress(c, b.records_bytes()).expect("compresses");
                b.finish_compressed(to_batch_codec(c), &z)
            }
        };
        let mut m = BytesMut::from(&bytes[..]);
        stamp(&mut m, base_offset, 1).expect("header fits");
        m.freeze()
    }

    fn blank(at: u64) -> Bytes {
        let mut m = BytesMut::from(&internal_batch(InternalKind::Blank, 5, b"")[..]);
        stamp(&mut m, at, 2).expect("header fits");
        m.freeze()
    }

    fn concat(parts: &[Bytes]) -> Bytes {
        let mut m = BytesMut::new();
        for p in parts {
            m.extend_from_slice(p);
        }
        m.freeze()
    }

    fn values(d: &Decoded) -> Vec<(u64, String)> {
        d.records
            .iter()
            .map(|r| {
                (
                    r.offset,
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn skips_non_data_batches_and_records_below_the_requested_offset() {
        let tp = TopicPartition::new("t", 0);
        let data = concat(&[
            data_batch(10, &["a", "b", "c"], Compression::None),
            blank(13),
            data_batch(13, &["d", "e"], Compression::None),
        ]);
        let d = decode_fetched(&tp, data, 11).expect("decodes");
        assert_eq!(
            values(&d),
            vec![
                (11, "b".into()),
                (12, "c".into()),
                (13, "d".into()),
                (14, "e".into())
            ]
        );
        assert_eq!(d.next_offset, Some(15));
        let r = &d.records[0];
        assert_eq!((&*r.topic, r.partition), ("t", 0));
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r.timestamp, 1_001);
        assert_eq!(r.headers[0].key, "h");
        assert_eq!(r.headers[0].value.as_deref(), Some(&b"hv"[..]));
    }

    #[test]
    fn only_control_batches_advance_nothing_but_report_their_end() {
        let tp = TopicPartition::new("t", 0);
        let d = decode_fetched(&tp, concat(&[blank(7), blank(7)]), 7).expect("decodes");
        assert!(d.records.is_empty());
        assert_eq!(d.next_offset, Some(7));
        let d = decode_fetched(&tp, Bytes::new(), 7).expect("empty is fine");
        assert!(d.records.is_empty());
        assert_eq!(d.next_offset, None);
    }

    #[test]
    fn decompresses_every_kafka_codec() {
        let tp = TopicPartition::new("t", 2);
        let data = concat(&[
            data_batch(0, &["x", "y"], Compression::Lz4),
            data_batch(2, &["z"], Compression::Zstd),
            data_batch(3, &["g"], Compression::Gzip),
            data_batch(4, &["s"], Compression::Snappy),
        ]);
        let d = decode_fetched(&tp, data, 0).expect("decodes");
        assert_eq!(
            values(&d),
            vec![
                (0, "x".into()),
                (1, "y".into()),
                (2, "z".into()),
                (3, "g".into()),
                (4, "s".into())
            ]
        );
    }

    #[test]
    fn a_truncated_tail_is_left_for_the_next_fetch() {
        let tp = TopicPartition::new("t", 0);
        let second = data_batch(1, &["b"], Compression::None);
        let data = concat(&[
            data_batch(0, &["a"], Compression::None),
            second.slice(..second.len() - 3),
        ]);
        let d = decode_fetched(&tp, data, 0).expect("decodes the complete batch");
        assert_eq!(values(&d), vec![(0, "a".into())]);
        assert_eq!(d.next_offset, Some(1));
    }

    #[test]
    fn a_corrupt_batch_is_an_error() {
        let tp = TopicPartition::new("t", 0);
        let mut m = BytesMut::from(&data_batch(0, &["a"], Compression::None)[..]);
        let last = m.len() - 1;
        m[last] ^= 0xff;
        let e = decode_fetched(&tp, m.freeze(), 0).expect_err("crc mismatch");
        assert!(matches!(e, ClientError::CorruptResponse { .. }), "{e}");
        let e = decode_fetched(&tp, Bytes::from_static(&[1, 2, 3]), 0).expect_err("garbage");
        assert!(matches!(e, ClientError::CorruptResponse { .. }));
    }
}
