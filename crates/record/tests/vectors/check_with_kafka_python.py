#!/usr/bin/env python3
"""Decodes the batches skein-record built (`skein/<codec>.bin`) with kafka-python's
DefaultRecordBatch and checks them against `skein/<codec>.json`. Exits non-zero on any
mismatch. Needs the same packages as gen_kafka_python.py (see README.md).
"""

import json
import os
import sys

from kafka.record.default_records import DefaultRecordBatch

HERE = os.path.dirname(os.path.abspath(__file__))
DIR = os.path.join(HERE, "skein")
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def json_bytes(v):
    """null, a hex string, or {"repeat": hex, "times": n}."""
    if v is None:
        return None
    if isinstance(v, dict):
        return bytes.fromhex(v["repeat"]) * v["times"]
    return bytes.fromhex(v)


def check(name, codec_id):
    """Returns a list of mismatches for one codec."""
    with open(os.path.join(DIR, name + ".bin"), "rb") as f:
        data = f.read()
    with open(os.path.join(DIR, name + ".json")) as f:
        want = json.load(f)
    b = DefaultRecordBatch(data)
    errors = []

    def expect(what, got, exp):
        if got != exp:
            errors.append("%s: %s: got %r, want %r" % (name, what, got, exp))

    expect("crc valid", b.validate_crc(), True)
    expect("size", b.size_in_bytes, len(data))
    expect("magic", b.magic, 2)
    expect("codec", b.compression_type, codec_id)
    for field in ("base_offset", "leader_epoch", "first_timestamp", "max_timestamp",
                  "producer_id", "producer_epoch", "base_sequence", "record_count"):
        got = b.records_count if field == "record_count" else getattr(b, field)
        expect(field, got, want[field])
    expect("next_offset", b.next_offset, want["base_offset"] + want["record_count"])
    try:
        records = list(b)
    except Exception as e:  # kafka-python raises CorruptRecordError and others
        return errors + ["%s: iterating records failed: %r" % (name, e)]
    expect("number of records", len(records), len(want["records"]))
    for i, (r, w) in enumerate(zip(records, want["records"])):
        what = "record %d" % i
        expect(what + " offset", r.offset, w["offset"])
        expect(what + " timestamp", r.timestamp, w["timestamp"])
        expect(what + " key", r.key, json_bytes(w["key"]))
        expect(what + " value", r.value, json_bytes(w["value"]))
        got_headers = [(k.encode("utf-8"), v) for k, v in r.headers]
        want_headers = [(json_bytes(k), json_bytes(v)) for k, v in w["headers"]]
        expect(what + " headers", got_headers, want_headers)
    return errors


def main():
    errors = []
    for name, codec_id in CODECS.items():
        errs = check(name, codec_id)
        print("%s: %s" % (name, "ok" if not errs else "MISMATCH"))
        errors += errs
    for e in errors:
        print(e, file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
