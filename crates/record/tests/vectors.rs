//! Cross-library vectors, both ways.
//!
//! - `vectors/kafka-python/<codec>.bin`: batches built by kafka-python's
//!   `DefaultRecordBatchBuilder` (`vectors/gen_kafka_python.py`); this test decodes each and
//!   compares it with `<codec>.json`.
//! - `vectors/skein/<codec>.bin`: batches built by skein-record; this test checks that the
//!   builder still produces exactly these bytes (`SKEIN_WRITE_VECTORS=1` rewrites them), and
//!   `vectors/check_with_kafka_python.py` decodes them with kafka-python.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};
use skein_record::{
    stamp, Batch, BatchBuilder, Compression, HeaderRef, ProducerStamp, Record, TimestampType,
};

const CODECS: [(&str, Compression); 5] = [
    ("none", Compression::None),
    ("gzip", Compression::Gzip),
    ("snappy", Compression::Snappy),
    ("lz4", Compression::Lz4),
    ("zstd", Compression::Zstd),
];

fn dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(sub)
}

fn read_json(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path:?}: {e}"))
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// JSON bytes: null, a hex string, or `{"repeat": hex, "times": n}`.
fn json_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(unhex(s)),
        Value::Object(o) => {
            let unit = unhex(o["repeat"].as_str().expect("repeat is hex"));
            Some(unit.repeat(o["times"].as_u64().expect("times") as usize))
        }
        other => panic!("not a bytes value: {other}"),
    }
}

fn int(v: &Value, field: &str) -> i64 {
    v[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} is not an integer"))
}

fn check_record(r: &Record, want: &Value, what: &str) {
    assert_eq!(r.offset as i64, int(want, "offset"), "{what} offset");
    assert_eq!(r.timestamp, int(want, "timestamp"), "{what} timestamp");
    assert_eq!(
        r.key.as_deref(),
        json_bytes(&want["key"]).as_deref(),
        "{what} key"
    );
    assert_eq!(
        r.value.as_deref(),
        json_bytes(&want["value"]).as_deref(),
        "{what} value"
    );
    let hs = want["headers"].as_array().expect("headers");
    assert_eq!(r.headers.len(), hs.len(), "{what} header count");
    for ((k, v), h) in r.headers.iter().zip(hs) {
        assert_eq!(
            Some(&k[..]),
            json_bytes(&h[0]).as_deref(),
            "{what} header key"
        );
        assert_eq!(
            v.as_deref(),
            json_bytes(&h[1]).as_deref(),
            "{what} header value"
        );
    }
}

/// Decodes `bytes` and compares it with the expectations in `want`.
fn check_batch(bytes: Bytes, want: &Value, codec: Compression, what: &str) {
    let batch = Batch::new(bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
    let h = *batch.header();
    assert_eq!(h.compression(), codec, "{what} codec");
    assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
    assert_eq!(h.base_offset as i64, int(want, "base_offset"), "{what}");
    assert_eq!(
        i64::from(h.record_count),
        int(want, "record_count"),
        "{what}"
    );
    assert_eq!(i64::from(h.batch_len), int(want, "batch_len"), "{what}");
    assert_eq!(h.first_timestamp, int(want, "first_timestamp"), "{what}");
    assert_eq!(h.max_timestamp, int(want, "max_timestamp"), "{what}");
    assert_eq!(h.producer_id, int(want, "producer_id"), "{what}");
    assert_eq!(
        i64::from(h.producer_epoch),
        int(want, "producer_epoch"),
        "{what}"
    );
    assert_eq!(
        i64::from(h.base_sequence),
        int(want, "base_sequence"),
        "{what}"
    );
    let records: Vec<Record> = batch
        .records()
        .and_then(|rs| rs.collect())
        .unwrap_or_else(|e| panic!("{what} records: {e}"));
    let wants = want["records"].as_array().expect("records");
    assert_eq!(records.len(), wants.len(), "{what} record count");
    for (i, (r, w)) in records.iter().zip(wants).enumerate() {
        check_record(r, w, &format!("{what} record {i}"));
    }
}

#[test]
fn kafka_python_batches_decode_to_their_json() {
    for (name, codec) in CODECS {
        let bin = dir("kafka-python").join(format!("{name}.bin"));
        let bytes = std::fs::read(&bin).unwrap_or_else(|e| panic!("read {bin:?}: {e}"));
        let want = read_json(&dir("kafka-python").join(format!("{name}.json")));
        check_batch(
            Bytes::from(bytes.clone()),
            &want,
            codec,
            &format!("kafka-python {name}"),
        );
        // Stamped by a log: offsets move, the CRC stays valid.
        let mut m = BytesMut::from(&bytes[..]);
        stamp(&mut m, 1000, 9).expect("long enough");
        let batch = Batch::new(m.freeze()).expect("still valid");
        let first = batch
            .records()
            .expect("records")
            .next()
            .expect("one")
            .expect("valid");
        assert_eq!(first.offset, 1000);
    }
}

const T0: i64 = 1_700_000_000_000;
const SKEIN_BASE_OFFSET: u64 = 42;
const SKEIN_LEADER_EPOCH: i32 = 5;
const SKEIN_PRODUCER: ProducerStamp = ProducerStamp {
    producer_id: 987_654_321,
    producer_epoch: 3,
    base_sequence: 77,
};
const LONG_UNIT: &[u8] = b"skein-batch ";
const LONG_TIMES: usize = 6000;

type Headers = Vec<(&'static str, Option<Vec<u8>>)>;
type TestRecord = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Headers);

/// The records of the Skein vectors (header keys are UTF-8: kafka-python decodes them so).
fn skein_records() -> Vec<TestRecord> {
    vec![
        (
            T0 + 10,
            Some(b"k0".to_vec()),
            Some(b"first".to_vec()),
            vec![],
        ),
        (
            T0,
            None,
            Some(b"null key, timestamp delta -10".to_vec()),
            vec![("a", Some(b"1".to_vec()))],
        ),
        (
            T0 + 20,
            Some(b"k2".to_vec()),
            None,
            vec![
                ("dup", Some(b"x".to_vec())),
                ("dup", Some(b"y".to_vec())),
                ("nul", None),
            ],
        ),
        (
            T0 + 30,
            Some(vec![]),
            Some(LONG_UNIT.repeat(LONG_TIMES)),
            vec![("\u{e9}", Some(vec![0, 255]))],
        ),
        (T0 + 15, None, None, vec![]),
    ]
}

fn json_of(b: &Option<Vec<u8>>) -> Value {
    match b {
        None => Value::Null,
        Some(v) if v.len() > 256 && *v == LONG_UNIT.repeat(LONG_TIMES) => {
            json!({"repeat": hex(LONG_UNIT), "times": LONG_TIMES})
        }
        Some(v) => Value::String(hex(v)),
    }
}

fn skein_batch(codec: Compression) -> Bytes {
    let mut b = BatchBuilder::new(T0 + 10).producer(SKEIN_PRODUCER);
    for (ts, k, v, hs) in skein_records() {
        let hrefs: Vec<HeaderRef<'_>> = hs
            .iter()
            .map(|(k, v)| HeaderRef {
                key: k.as_bytes(),
                value: v.as_deref(),
            })
            .collect();
        b.push(ts, k.as_deref(), v.as_deref(), &hrefs);
    }
    let mut m = BytesMut::from(&b.finish_with(codec).expect("compresses")[..]);
    stamp(&mut m, SKEIN_BASE_OFFSET, SKEIN_LEADER_EPOCH).expect("long enough");
    m.freeze()
}

fn skein_json(name: &str, batch: &Bytes) -> Value {
    let rs = skein_records();
    let records: Vec<Value> = rs
        .iter()
        .enumerate()
        .map(|(i, (ts, k, v, hs))| {
            let hs: Vec<Value> = hs
                .iter()
                .map(|(k, v)| json!([hex(k.as_bytes()), json_of(v)]))
                .collect();
            json!({
                "offset": SKEIN_BASE_OFFSET + i as u64, "timestamp": ts,
                "key": json_of(k), "value": json_of(v), "headers": hs,
            })
        })
        .collect();
    json!({
        "producer": "skein-record", "codec": name, "base_offset": SKEIN_BASE_OFFSET,
        "leader_epoch": SKEIN_LEADER_EPOCH, "record_count": rs.len(),
        "first_timestamp": T0 + 10, "max_timestamp": rs.iter().map(|r| r.0).max(),
        "producer_id": SKEIN_PRODUCER.producer_id, "producer_epoch": SKEIN_PRODUCER.producer_epoch,
        "base_sequence": SKEIN_PRODUCER.base_sequence, "batch_len": batch.len(), "records": records,
    })
}

#[test]
fn skein_batches_match_the_committed_vectors() {
    let write = std::env::var_os("SKEIN_WRITE_VECTORS").is_some_and(|v| v == "1");
    for (name, codec) in CODECS {
        let batch = skein_batch(codec);
        let want = skein_json(name, &batch);
        let bin = dir("skein").join(format!("{name}.bin"));
        let json_path = dir("skein").join(format!("{name}.json"));
        if write {
            std::fs::create_dir_all(dir("skein")).expect("create vectors/skein");
            std::fs::write(&bin, &batch).expect("write .bin");
            let text = serde_json::to_string_pretty(&want).expect("serializes") + "\n";
            std::fs::write(&json_path, text).expect("write .json");
        }
        let committed = std::fs::read(&bin).unwrap_or_else(|e| panic!("read {bin:?}: {e}"));
        assert!(
            committed == batch[..],
            "skein/{name}.bin differs from what the builder produces now \
             (rerun with SKEIN_WRITE_VECTORS=1 if the change is intended)"
        );
        assert_eq!(read_json(&json_path), want, "skein/{name}.json is stale");
        check_batch(batch, &want, codec, &format!("skein {name}"));
    }
}
