#!/usr/bin/env python3
"""Writes RecordBatch v2 vectors built by kafka-python, for skein-record's tests.

For every codec (none, gzip, snappy, lz4, zstd) this builds one batch with kafka-python's own
DefaultRecordBatchBuilder and writes `kafka-python/<codec>.bin` (the batch bytes, exactly as
kafka-python produced them) and `kafka-python/<codec>.json` (the records and header fields a
reader must find). Bytes in the JSON are a hex string, or {"repeat": hex, "times": n} for a long repetitive value,
or null.

Needs: kafka-python, python-snappy (or cramjam), lz4, zstandard. See README.md.
"""

import json
import os
import sys

from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "kafka-python")
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
PRODUCER_ID, PRODUCER_EPOCH, BASE_SEQUENCE = 123456789, 7, 1000
T0 = 1700000000000
LONG_UNIT, LONG_TIMES = b"skein-record ", 5500


def records():
    """(timestamp, key, value, headers): null keys and values, repeated header keys, a
    timestamp before the first one, and a value long enough for several codec blocks."""
    long_value = LONG_UNIT * LONG_TIMES  # ~70 KB: two LZ4 blocks, three snappy blocks
    return [
        (T0, b"key-0", b"value-0", []),
        (T0 + 5, None, b"value with a null key", [("h", b"1")]),
        (T0 + 3, b"key-2", None, [("h", b"a"), ("h", b"b"), ("other", None)]),
        (T0 - 100, b"", b"", [("\u00e9t\u00e9", b"\x00\xff")]),
        (T0 + 1000, b"key-4", long_value, [("trace", b"abc" * 10)]),
        (T0 + 7, None, None, []),
    ]


def hexs(b):
    if b is not None and len(b) > 256 and b == LONG_UNIT * LONG_TIMES:
        return {"repeat": LONG_UNIT.hex(), "times": LONG_TIMES}
    return None if b is None else b.hex()


def build(codec_id):
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec_id, is_transactional=False,
        producer_id=PRODUCER_ID, producer_epoch=PRODUCER_EPOCH, base_sequence=BASE_SEQUENCE,
        batch_size=1 << 20)
    for offset, (ts, key, value, headers) in enumerate(records()):
        if builder.append(offset, timestamp=ts, key=key, value=value, headers=headers) is None:
            sys.exit("kafka-python refused a record")
    return bytes(builder.build())


def expected(codec_name, batch):
    rs = records()
    return {
        "producer": "kafka-python",
        "codec": codec_name,
        "base_offset": 0,
        "record_count": len(rs),
        "first_timestamp": rs[0][0],
        "max_timestamp": max(r[0] for r in rs),
        "producer_id": PRODUCER_ID,
        "producer_epoch": PRODUCER_EPOCH,
        "base_sequence": BASE_SEQUENCE,
        "batch_len": len(batch),
        "records": [
            {
                "offset": i,
                "timestamp": ts,
                "key": hexs(key),
                "value": hexs(value),
                "headers": [[k.encode("utf-8").hex(), hexs(v)] for k, v in headers],
            }
            for i, (ts, key, value, headers) in enumerate(rs)
        ],
    }


def self_check(codec_id, batch):
    """kafka-python must read back what it wrote, with the codec really applied."""
    b = DefaultRecordBatch(batch)
    assert b.validate_crc(), "CRC"
    assert b.compression_type == codec_id, "kafka-python fell back to no compression"
    got = [(r.timestamp, r.key, r.value, r.headers) for r in b]
    want = [(ts, k, v, hs) for ts, k, v, hs in records()]
    assert got == want, "kafka-python read back different records"


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, codec_id in CODECS.items():
        batch = build(codec_id)
        self_check(codec_id, batch)
        with open(os.path.join(OUT, name + ".bin"), "wb") as f:
            f.write(batch)
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(expected(name, batch), f, indent=1)
            f.write("\n")
        print("wrote kafka-python/%s.bin (%d bytes)" % (name, len(batch)))


if __name__ == "__main__":
    main()
