"""Real Kafka clients against one skein-node: kcat, confluent-kafka and kafka-python.

Run by tests/kafka/run, which starts the node and sets SKEIN_KAFKA_BOOTSTRAP (HOST:PORT) and
SKEIN_KAFKA_NODE_ID. Every check raises on failure; the script exits non-zero on the first one.

What it checks:
- `kcat -L` lists the broker by its advertised Kafka address;
- for every codec (none, gzip, snappy, lz4, zstd), records with keys, null values, headers and a
  1 MiB value round-trip byte-exact across clients: confluent-kafka (idempotent) -> kafka-python
  and kcat, kafka-python -> confluent-kafka, kcat -> confluent-kafka;
- ListOffsets by timestamp (confluent-kafka `offsets_for_times`, kafka-python too);
- topic creation (also validate-only), deletion and DescribeConfigs through both admin clients;
- commits outside group management (`assign()` consumers) and committed offsets through both
  clients; listing and deleting groups through confluent-kafka's admin client.
"""

import os
import subprocess
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import ConfigResource as KConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient
from kafka.admin import NewTopic as KNewTopic

BOOTSTRAP = os.environ["SKEIN_KAFKA_BOOTSTRAP"]
NODE_ID = int(os.environ.get("SKEIN_KAFKA_NODE_ID", "1"))
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
DEADLINE_S = 30
BIG = 1 << 20
# A 1 MiB value plus framing is above both clients' default request size limits.
REQUEST_BYTES_MAX = 4 * BIG


def records(tag, null_header=True):
    """(key, value, headers) tuples: keys, a null value, headers (one with a null value, which
    kafka-python cannot send), an empty value, 1 MiB."""
    h2 = ("h2", None) if null_header else ("h2", b"")
    big = bytes((i * 7 + len(tag)) % 251 for i in range(BIG))
    return [
        (b"k1", f"{tag}-one".encode(), []),
        (b"k2", None, []),
        (None, f"{tag}-no-key".encode(), [("h1", b"v1"), h2, ("h1", b"again")]),
        (b"k4", b"", [("bin", bytes(range(256)))]),
        (b"big", big, [("size", str(BIG).encode())]),
        (b"\x00\xff", b"\x00binary\xff", []),
    ]


def norm_headers(headers):
    return [(k, v) for k, v in (headers or [])]


def create_topics(admin, names, partitions=1):
    futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    for name, f in futures.items():
        f.result(timeout=DEADLINE_S)


def confluent_produce(topic, codec, recs, idempotent=True):
    p = Producer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "compression.type": codec,
            "enable.idempotence": idempotent,
            "message.max.bytes": REQUEST_BYTES_MAX,
            "linger.ms": 5,
        }
    )
    errors = []

    def report(err, _msg):
        if err is not None:
            errors.append(err)

    for k, v, h in recs:
        p.produce(topic, key=k, value=v, headers=h, partition=0, on_delivery=report)
    left = p.flush(DEADLINE_S)
    assert left == 0 and not errors, f"confluent produce to {topic}: {left} left, {errors}"


def kafka_python_produce(topic, codec, recs):
    p = KafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        compression_type=None if codec == "none" else codec,
        max_request_size=REQUEST_BYTES_MAX,
        linger_ms=5,
    )
    futures = [p.send(topic, key=k, value=v, headers=h, partition=0) for k, v, h in recs]
    for f in futures:
        f.get(timeout=DEADLINE_S)
    p.close()


def kcat_produce(topic, codec, lines):
    data = "".join(f"{k}:{v}\n" for k, v in lines).encode()
    subprocess.run(
        ["kcat", "-b", BOOTSTRAP, "-P", "-t", topic, "-p", "0", "-K", ":", "-z", codec],
        input=data,
        check=True,
        timeout=DEADLINE_S,
    )


def confluent_consume(topic, count):
    c = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            # librdkafka insists on a group id; assign() with explicit offsets never uses it.
            "group.id": "skein-kafka-test-unused",
            "enable.auto.commit": False,
            "fetch.message.max.bytes": REQUEST_BYTES_MAX,
        }
    )
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []
    deadline = time.time() + DEADLINE_S
    while len(got) < count and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        assert m.error() is None, f"confluent consume {topic}: {m.error()}"
        got.append((m.offset(), m.key(), m.value(), norm_headers(m.headers())))
    c.close()
    assert len(got) == count, f"confluent consumed {len(got)} of {count} from {topic}"
    return got


def kafka_python_consume(topic, count):
    c = KafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        enable_auto_commit=False,
        max_partition_fetch_bytes=REQUEST_BYTES_MAX,
    )
    tp = KTopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = []
    deadline = time.time() + DEADLINE_S
    while len(got) < count and time.time() < deadline:
        for msgs in c.poll(timeout_ms=1000).values():
            got.extend((m.offset, m.key, m.value, norm_headers(m.headers)) for m in msgs)
    c.close()
    assert len(got) == count, f"kafka-python consumed {len(got)} of {count} from {topic}"
    return got


def kcat_consume(topic):
    """(key, value) of every record, read with kcat; values must be text without newlines."""
    out = subprocess.run(
        ["kcat", "-b", BOOTSTRAP, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e",
         "-q", "-f", "%k\t%S\n"],
        check=True,
        capture_output=True,
        timeout=DEADLINE_S,
    ).stdout
    return [line.split(b"\t", 1) for line in out.splitlines()]


def expect(got, recs, what):
    want = [(i, k, v, h) for i, (k, v, h) in enumerate(recs)]
    for g, w in zip(got, want):
        assert g == w, f"{what}: record {w[0]} differs (key {g[1]!r} vs {w[1]!r})"
    assert len(got) == len(want), f"{what}: {len(got)} records, expected {len(want)}"


def check_kcat_lists_the_broker():
    out = subprocess.run(
        ["kcat", "-b", BOOTSTRAP, "-L"], check=True, capture_output=True, timeout=DEADLINE_S
    ).stdout.decode()
    want = f"broker {NODE_ID} at {BOOTSTRAP}"
    assert want in out, f"kcat -L does not list `{want}`:\n{out}"


def check_codecs_round_trip(admin):
    topics = [f"{codec}-{src}" for codec in CODECS for src in ("confluent", "kp", "kcat")]
    create_topics(admin, topics)
    for codec in CODECS:
        recs = records(codec)
        t = f"{codec}-confluent"
        confluent_produce(t, codec, recs)
        expect(kafka_python_consume(t, len(recs)), recs, f"{t} read by kafka-python")
        expect(confluent_consume(t, len(recs)), recs, f"{t} read by confluent-kafka")
        sizes = [int(size) for _, size in kcat_consume(t)]
        assert sizes == [-1 if v is None else len(v) for _, v, _ in recs], f"{t} sizes via kcat"

        t = f"{codec}-kp"
        recs = records(codec, null_header=False)
        kafka_python_produce(t, codec, recs)
        expect(confluent_consume(t, len(recs)), recs, f"{t} read by confluent-kafka")

        t = f"{codec}-kcat"
        lines = [(f"key{i}", f"{codec} line {i}") for i in range(20)]
        kcat_produce(t, codec, lines)
        got = confluent_consume(t, len(lines))
        assert [(k.decode(), v.decode()) for _, k, v, _ in got] == lines, f"{t} via kcat"
        print(f"ok: codec {codec}: confluent-kafka, kafka-python and kcat agree byte for byte")


def check_offsets_for_times(admin):
    create_topics(admin, ["times"])
    p = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 0})
    base = 1_700_000_000_000
    for i in range(10):
        p.produce("times", value=f"t{i}".encode(), timestamp=base + 1000 * i, partition=0)
        p.flush(DEADLINE_S)
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "skein-kafka-test-unused"})
    for ts, want in [(base, 0), (base + 1, 1), (base + 4500, 5), (base + 9000, 9),
                     (base + 10_000, -1), (0, 0)]:
        [tp] = c.offsets_for_times([TopicPartition("times", 0, ts)], timeout=DEADLINE_S)
        assert tp.error is None and tp.offset == want, f"offsets_for_times({ts}): {tp}"
    c.close()
    k = KafkaConsumer(bootstrap_servers=BOOTSTRAP)
    tp = KTopicPartition("times", 0)
    found = k.offsets_for_times({tp: base + 2500})[tp]
    assert found is not None and (found.offset, found.timestamp) == (3, base + 3000), found
    assert k.offsets_for_times({tp: base + 99_999})[tp] is None
    k.close()
    print("ok: ListOffsets by timestamp (confluent-kafka and kafka-python)")


def check_admin_clients(admin):
    # confluent-kafka: validate-only, create with configs, describe, delete.
    f = admin.create_topics([NewTopic("adm", 2, 1)], validate_only=True)["adm"]
    f.result(timeout=DEADLINE_S)
    assert "adm" not in admin.list_topics(timeout=DEADLINE_S).topics, "validate-only created"
    topic = NewTopic("adm", 2, 1, config={"retention.ms": "7200000"})
    admin.create_topics([topic])["adm"].result(timeout=DEADLINE_S)
    res = ConfigResource(ConfigResource.Type.TOPIC, "adm")
    configs = admin.describe_configs([res])[res].result(timeout=DEADLINE_S)
    assert configs["retention.ms"].value == "7200000", configs["retention.ms"]
    assert configs["cleanup.policy"].value == "delete"
    assert int(configs["segment.bytes"].value) > 0
    broker = ConfigResource(ConfigResource.Type.BROKER, str(NODE_ID))
    bconf = admin.describe_configs([broker])[broker].result(timeout=DEADLINE_S)
    assert bconf["broker.id"].value == str(NODE_ID)
    admin.delete_topics(["adm"])["adm"].result(timeout=DEADLINE_S)
    deadline = time.time() + DEADLINE_S
    while "adm" in admin.list_topics(timeout=DEADLINE_S).topics:
        assert time.time() < deadline, "adm not deleted"

    # kafka-python's admin client.
    ka = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    ka.create_topics([KNewTopic("adm-kp", 3, 1, topic_configs={"retention.bytes": "1048576"})])
    assert "adm-kp" in ka.list_topics()
    desc = ka.describe_configs([KConfigResource(ConfigResourceType.TOPIC, "adm-kp")])
    text = repr(desc)
    assert "'retention.bytes': {'value': '1048576'" in text, text
    ka.delete_topics(["adm-kp"])
    deadline = time.time() + DEADLINE_S
    while "adm-kp" in ka.list_topics():
        assert time.time() < deadline, "adm-kp not deleted"
    ka.close()
    print("ok: create (validate-only too), describe configs and delete through both admin clients")


def check_standalone_commits(admin):
    """assign() consumers commit outside group management (generation -1): stored in
    __consumer_offsets by Skein's coordinator, read back by both clients, listed, deleted."""
    create_topics(admin, ["commits"], partitions=2)
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "kafka-commits",
                  "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("commits", 0, 3), TopicPartition("commits", 1, 4)],
             asynchronous=False)
    got = c.committed([TopicPartition("commits", 0), TopicPartition("commits", 1)],
                      timeout=DEADLINE_S)
    assert [(tp.partition, tp.offset) for tp in got] == [(0, 3), (1, 4)], got
    c.close()
    k = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id="kafka-commits",
                      enable_auto_commit=False)
    tp = KTopicPartition("commits", 0)
    k.assign([tp])
    assert k.committed(tp) == 3, k.committed(tp)
    from kafka.structs import OffsetAndMetadata
    k.commit({tp: OffsetAndMetadata(6, "", -1)})
    assert k.committed(tp) == 6, k.committed(tp)
    k.close()
    listed = admin.list_consumer_groups().result(timeout=DEADLINE_S)
    assert "kafka-commits" in [g.group_id for g in listed.valid], listed.valid
    [f] = admin.delete_consumer_groups(["kafka-commits"]).values()
    f.result(timeout=DEADLINE_S)
    listed = admin.list_consumer_groups().result(timeout=DEADLINE_S)
    assert "kafka-commits" not in [g.group_id for g in listed.valid], listed.valid
    print("ok: standalone commits (confluent-kafka, kafka-python), list and delete groups")


def main():
    check_kcat_lists_the_broker()
    print("ok: kcat -L lists the broker")
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    check_admin_clients(admin)
    check_offsets_for_times(admin)
    check_standalone_commits(admin)
    check_codecs_round_trip(admin)
    print("all Kafka client checks passed")


if __name__ == "__main__":
    sys.exit(main())
